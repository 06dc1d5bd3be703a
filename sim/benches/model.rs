//! Benchmarks of the analytical model: the paper's full comparison (5 configurations × 4 models
//! × 6 lengths, attention and end to end) and a 10,000-point design sweep in parallel; and of
//! the cycle-level engine on the same 5 × 24 points.

use cascade_ir::Cascade;
use cascade_scheduler::{ArchSpec, Outcome, Problem, schedule, shipped};
use cascade_sim::compare::{Config, compare};
use cascade_sim::cycle::{CycleConfig, run};
use cascade_sim::sweep::design_point;
use rayon::prelude::*;

fn main() {
    divan::main();
}

fn load(name: &str) -> (ArchSpec, Cascade) {
    let arch = shipped::load_arch(name).expect("shipped").expect("valid");
    let src = cascade_ir::library::source(arch.cascade()).expect("library");
    let cascade = cascade_ir::dsl::parse(src, "library")
        .expect("parses")
        .cascade;
    (arch, cascade)
}

fn problems(seqs: &[u64]) -> Vec<Problem> {
    let w = shipped::load_workloads().expect("valid");
    w.models()
        .iter()
        .flat_map(|m| seqs.iter().map(|&s| w.problem(m, s)))
        .collect()
}

/// FuseMax against the four other shipped configurations at all 24 points.
#[divan::bench(sample_count = 20)]
fn full_comparison(bencher: divan::Bencher) {
    let subject = load("fusemax");
    let others: Vec<_> = [
        "flat",
        "unfused",
        "fusemax-cascade-on-flat",
        "fusemax-no-interleave",
    ]
    .map(load)
    .into();
    let points = problems(shipped::load_workloads().unwrap().seq());
    bencher.bench_local(|| {
        let configs: Vec<Config<'_>> = others
            .iter()
            .map(|(a, c)| Config {
                arch: a,
                cascade: c,
            })
            .collect();
        compare(
            Config {
                arch: &subject.0,
                cascade: &subject.1,
            },
            &configs,
            &points,
        )
    });
}

/// 10,000 design points: array sides 16..=515 × 4 models × 5 lengths, each sizing its buffer.
#[divan::bench(sample_count = 3, sample_size = 1)]
fn sweep_10000_points(bencher: divan::Bencher) {
    let (arch, cascade) = load("fusemax");
    let points = problems(&[1 << 10, 1 << 12, 1 << 14, 1 << 16, 1 << 18]);
    let jobs: Vec<(usize, u64)> = (0..points.len())
        .flat_map(|p| (16..516).map(move |d| (p, d)))
        .collect();
    assert_eq!(jobs.len(), 10_000);
    bencher.bench_local(|| {
        jobs.par_iter()
            .map(|&(p, d)| {
                design_point(&arch, &cascade, &points[p], d, 64 << 10, 32 << 20).latency_s
            })
            .sum::<f64>()
    });
}

/// The cycle-level engine on the 24 model × length points of all five configurations
/// (schedule + execute, 4096 slots per phase before extrapolating, as the CLI's default).
#[divan::bench(sample_count = 3, sample_size = 1)]
fn cycle_engine_full_comparison(bencher: divan::Bencher) {
    let configs: Vec<_> = [
        "fusemax",
        "flat",
        "unfused",
        "fusemax-cascade-on-flat",
        "fusemax-no-interleave",
    ]
    .map(load)
    .into();
    let points = problems(shipped::load_workloads().unwrap().seq());
    let config = CycleConfig {
        max_slots: Some(4096),
        tile_buffers: 2,
        log_events: 0,
    };
    bencher.bench_local(|| {
        let mut total = 0.0;
        for (arch, cascade) in &configs {
            for p in &points {
                if let Ok(Outcome::Scheduled(s)) = schedule(cascade, arch, p) {
                    total += run(&s, arch, &config).latency_cycles;
                }
            }
        }
        total
    });
}

/// The zoo's work: every library cascade (but the pedagogical ones) and every model variant at
/// the LLM workloads' points, prefill 8K and decode 64K at batch 16 for each of the six
/// models, scheduled and simulated in parallel as `cascade zoo` does (25 × 12 = 300 points).
#[divan::bench(sample_count = 10)]
fn zoo_300_points(bencher: divan::Bencher) {
    let arch = shipped::load_arch("fusemax").unwrap().unwrap();
    let w = shipped::load_workload_set("llm").unwrap().unwrap();
    let names: Vec<&str> = cascade_ir::library::names()
        .filter(|n| !n.starts_with("pedagogical"))
        .chain(cascade_ir::library::variant_names())
        .collect();
    let cascades: Vec<Cascade> = names
        .iter()
        .map(|n| {
            let src = cascade_ir::library::source(n)
                .or_else(|| cascade_ir::library::variant_source(n))
                .unwrap();
            cascade_ir::dsl::parse(src, n).unwrap().cascade
        })
        .collect();
    let mut points: Vec<Problem> = Vec::new();
    for m in w.models() {
        points.push(w.problem(m, 8192));
        points.push(w.decode_problem(m, 65536, 16));
    }
    for p in &mut points {
        for (r, s) in [("W", 4096), ("S", 4), ("L", 512), ("RP", 64)] {
            p.sizes.entry(r.into()).or_insert(s);
        }
    }
    let jobs: Vec<(usize, usize)> = (0..cascades.len())
        .flat_map(|c| (0..points.len()).map(move |p| (c, p)))
        .collect();
    assert!(jobs.len() >= 300, "{} points", jobs.len());
    bencher.bench_local(|| {
        jobs.par_iter()
            .filter(|&&(c, p)| {
                matches!(
                    schedule(&cascades[c], &arch, &points[p]),
                    Ok(Outcome::Scheduled(s)) if cascade_sim::simulate(&s, &arch).latency_cycles > 0.0
                )
            })
            .count()
    });
}
