//! Fuzzes the configuration loaders: any text as an architecture file (with the shipped cost
//! table, then as its own cost table), as a cost table and as a workload file, each parsed and
//! validated; an architecture that validates is also checked against every library cascade's
//! bindings. Invalid files must be errors, never panics.

#![no_main]

use cascade_ir::{dsl, library};
use cascade_scheduler::{RawCosts, RawWorkloads, Workloads, shipped};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let text = String::from_utf8_lossy(bytes);
    let shipped_costs = |name: &str| shipped::costs(name).map(str::to_string);
    if let Ok(arch) = shipped::parse_arch(&text, shipped_costs) {
        for name in library::names() {
            let source = library::source(name).expect("library cascade");
            let c = dsl::parse(source, name).expect("library parses").cascade;
            let _ = arch.check_binding(&c);
        }
    }
    // The same text as its own cost table, for an architecture that names it.
    let _ = shipped::parse_arch(shipped::arch("fusemax").expect("shipped"), |_| {
        Some(text.to_string())
    });
    let _ = RawCosts::from_toml(&text);
    if let Ok(raw) = RawWorkloads::from_toml(&text)
        && let Ok(workloads) = Workloads::new(raw)
    {
        for model in workloads.models() {
            for &seq in workloads.seq() {
                let _ = workloads.problem(model, seq);
            }
        }
    }
});
