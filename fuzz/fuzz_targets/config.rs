//! Fuzzes the configuration loaders: any text as an architecture file (with the shipped cost
//! table, then as its own cost table), as a cost table, as a workload file and as a mapping
//! file, each parsed and validated; an architecture that validates is also checked against
//! every library cascade's bindings, a workload set's prefill and decode problems are formed,
//! and a mapping that validates schedules a 1-pass and a 3-pass cascade (feasible or not); a
//! system file that validates partitions BERT at 64K over its chips and is priced.
//! Invalid files must be errors, never panics.

#![no_main]

use cascade_ir::{dsl, library};
use cascade_scheduler::{
    MappingOverrides, RawCosts, RawWorkloads, Workloads, schedule_with, shipped,
};
use cascade_scheduler::system::{RawSystem, SystemOutcome, SystemSpec, partition};
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
            if let Some(d) = workloads.decode() {
                for (&kv, &b) in d.kv.iter().zip(&d.batch) {
                    let _ = workloads.decode_problem(model, kv, b);
                }
            }
        }
    }
    if let Ok(overrides) = MappingOverrides::from_toml(&text) {
        let arch = shipped::parse_arch(shipped::arch("fusemax").expect("shipped"), shipped_costs)
            .expect("fusemax validates");
        let set = shipped::workload_set("transformers").expect("shipped");
        let workloads =
            Workloads::new(RawWorkloads::from_toml(set).expect("parses")).expect("validates");
        let problem = workloads.problem(&workloads.models()[0], 1024);
        for name in ["attention_1pass", "attention_3pass"] {
            let source = library::source(name).expect("library cascade");
            let c = dsl::parse(source, name).expect("library parses").cascade;
            let _ = schedule_with(&c, &arch, &problem, &overrides);
        }
    }
    if let Ok(raw) = RawSystem::from_toml(&text)
        && let Ok(system) = SystemSpec::new(raw, &shipped::shipped_chip)
    {
        let set = shipped::workload_set("transformers").expect("shipped");
        let workloads =
            Workloads::new(RawWorkloads::from_toml(set).expect("parses")).expect("validates");
        let problem = workloads.problem(&workloads.models()[0], 1 << 16);
        let source = library::source("attention_causal_1pass").expect("library cascade");
        let c = dsl::parse(source, "causal").expect("library parses").cascade;
        // At most 64 chips, so one input stays fast.
        if let Ok(small) = system.with_chips(system.chips().min(64))
            && let Ok(SystemOutcome::Scheduled(s)) = partition(&c, &small, &problem)
        {
            let _ = cascade_sim::system::simulate_system(&s, &small);
        }
    }
});
