//! How parsing, verifying, linting and printing scale with the number of Einsums: what
//! `cascade check` does, on chains of 25,000 to 100,000 Einsums (a masked chain whose every
//! Einsum carries a filter and reads the one before, and a mix of maps, reductions and shifts).
//!
//! Run with `cargo bench -p cascade-ir --bench scale`; medians go to bench/RESULTS.md.

use cascade_ir::{dsl, lint};

fn main() {
    divan::main();
}

/// `n` Einsums: every third one filtered and shifted, the others maps and binary max.
pub fn chain(n: usize) -> String {
    let mut src = String::from("cascade chain\nranks M P\ninput A[M,P]\nT0[m,p] = A[m,p]\n");
    for i in 1..n {
        let prev = i - 1;
        let line = match i % 3 {
            0 => format!("T{i}[m,p : m <= p] = T{prev}[m,p] *{{&}} A[m,p]\n"),
            1 => format!("T{i}[m,p] = max(T{prev}[m,p], A[m,p] * 2)\n"),
            _ => format!("T{i}[m,p] = exp(T{prev}[m,p] - A[m,p]) + 1\n"),
        };
        src.push_str(&line);
    }
    src.push_str(&format!("output T{}\n", n - 1));
    src
}

/// Parse, verify and lint, as `cascade check` does before it prints.
#[divan::bench(args = [25_000, 50_000, 100_000], sample_count = 5)]
fn check(bencher: divan::Bencher, n: usize) {
    let src = chain(n);
    bencher.bench(|| {
        let parsed = dsl::check(&src, "chain.cascade").expect("verifies");
        let warnings = lint::lint(&parsed.cascade);
        (parsed.cascade.einsums.len(), warnings.len())
    });
}

/// The normalised printer on the parsed chain.
#[divan::bench(args = [100_000], sample_count = 5)]
fn print(bencher: divan::Bencher, n: usize) {
    let parsed = dsl::check(&chain(n), "chain.cascade").expect("verifies");
    bencher.bench(|| dsl::print(&parsed.cascade).len());
}
