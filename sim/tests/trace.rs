//! The cycle engine's trace is the run itself: observing a run changes none of its numbers, and
//! on a run executed to the end the recorded slices add up to the report's totals (each unit's
//! busy and stall cycles, the channel's busy cycles, each phase's latency).

use cascade_ir::Cascade;
use cascade_scheduler::{ArchSpec, Outcome, Schedule, schedule, shipped};
use cascade_sim::cycle::{CycleConfig, Observer, run, run_observed, trace_events_bound};
use cascade_sim::trace::{ItemKind, Trace};

fn setup(arch: &str, cascade: Option<&str>, model: &str, seq: u64) -> (ArchSpec, Schedule) {
    let arch = shipped::load_arch(arch).expect("shipped").expect("valid");
    let name = cascade.unwrap_or(arch.cascade());
    let src = cascade_ir::library::source(name).expect("library cascade");
    let cascade: Cascade = cascade_ir::dsl::parse(src, "library")
        .expect("parses")
        .cascade;
    let w = shipped::load_workloads().expect("valid workloads");
    let problem = w.problem(w.model(model).expect("shipped model"), seq);
    match schedule(&cascade, &arch, &problem).expect("sizes") {
        Outcome::Scheduled(s) => (arch, *s),
        Outcome::Infeasible(why) => panic!("{why}"),
    }
}

fn traced(arch: &ArchSpec, s: &Schedule, config: &CycleConfig) -> (Trace, Vec<(u64, u64)>) {
    let bound = trace_events_bound(s, config);
    let mut trace = Trace::new(usize::try_from(bound).unwrap());
    let mut calls = Vec::new();
    let mut progress = |done: u64, total: u64| calls.push((done, total));
    let report = run_observed(
        s,
        arch,
        config,
        &mut Observer {
            trace: Some(&mut trace),
            progress: &mut progress,
        },
    );
    assert_eq!(report, run(s, arch, config), "observing changes nothing");
    assert!(!trace.truncated, "the bound holds every event");
    assert!(trace.len() as u64 <= bound);
    (trace, calls)
}

/// Sums within 1e-9 of each other (both are sums of the same durations in another order).
fn same(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn a_full_run_s_slices_add_up_to_its_report() {
    // BERT 1K executed to the end: interleaved (DRAM stalls at the start), without
    // interleaving (drain stalls), three passes, and the unfused phases.
    let cases = [
        ("fusemax", None),
        ("fusemax-no-interleave", None),
        ("fusemax", Some("attention_3pass")),
        ("unfused", None),
    ];
    let (mut drains, mut dram_stalls) = (0.0, 0.0);
    for (name, cascade) in cases {
        let (arch, s) = setup(name, cascade, "bert", 1 << 10);
        let config = CycleConfig {
            max_slots: None,
            tile_buffers: 2,
            log_events: 0,
        };
        let report = run(&s, &arch, &config);
        let (trace, calls) = traced(&arch, &s, &config);
        let what = format!("{name} {cascade:?}");
        for (k, unit) in report.units.iter().enumerate() {
            drains += unit.drain_stall_cycles;
            dram_stalls += unit.dram_stall_cycles;
            let sum = |kind: ItemKind| -> f64 {
                trace
                    .items
                    .iter()
                    .filter(|it| it.unit.0 == k && it.kind == kind)
                    .map(|it| it.end - it.start)
                    .sum()
            };
            assert!(
                same(sum(ItemKind::Work), unit.busy_cycles),
                "{what}: {} busy",
                unit.name
            );
            assert!(
                same(sum(ItemKind::DramStall), unit.dram_stall_cycles),
                "{what}: {} DRAM stall",
                unit.name
            );
            assert!(
                same(sum(ItemKind::DrainStall), unit.drain_stall_cycles),
                "{what}: {} drain stall",
                unit.name
            );
        }
        let channel: f64 = trace.dram.iter().map(|d| d.end - d.start).sum();
        assert!(same(channel, report.dram_busy_cycles), "{what}: DRAM busy");
        // Phases follow each other and end where the report's latency does.
        assert_eq!(trace.phases.len(), report.phases.len());
        let mut at = 0.0;
        for (span, phase) in trace.phases.iter().zip(&report.phases) {
            assert!(same(span.start, at), "{what}: phases back to back");
            assert!(same(span.end - span.start, phase.latency_cycles), "{what}");
            assert_eq!(span.end, span.executed_end, "{what}: nothing extrapolated");
            at = span.end;
        }
        assert!(
            same(at, report.latency_cycles),
            "{what}: the last phase ends the layer"
        );
        // Every slice lies within its phase.
        for it in &trace.items {
            let p = &trace.phases[it.phase];
            assert!(
                it.start >= p.start && it.end <= p.end + 1e-9 * p.end,
                "{what}"
            );
        }
        // Progress ends at every slot of the run.
        let total: u64 = report.phases.iter().map(|p| p.executed_slots).sum();
        assert_eq!(calls.last(), Some(&(total, total)), "{what}");
        assert!(
            calls.windows(2).all(|w| w[0].0 <= w[1].0),
            "{what}: progress only grows"
        );
    }
    // The stall sums were not all zero: the cases have both kinds.
    assert!(drains > 0.0 && dram_stalls > 0.0, "{drains} {dram_stalls}");
}

#[test]
fn an_extrapolated_run_traces_only_what_it_executed() {
    let (arch, s) = setup("fusemax", None, "bert", 1 << 14);
    let config = CycleConfig {
        max_slots: Some(64),
        tile_buffers: 2,
        log_events: 0,
    };
    let report = run(&s, &arch, &config);
    assert!(report.extrapolated);
    let (trace, _) = traced(&arch, &s, &config);
    let span = &trace.phases[0];
    assert!(
        span.end > span.executed_end,
        "the extrapolated part is marked"
    );
    let executed = report.phases[0].executed_slots;
    assert!(trace.items.iter().all(|it| it.slot < executed));
    assert!(trace.items.iter().all(|it| it.end <= span.executed_end));
    assert_eq!(
        trace.buffers.len() as u64,
        executed,
        "one buffer hold per executed slot"
    );
}

#[test]
fn counters_by_hand() {
    use cascade_sim::trace::{BufferSpan, DramDirection, DramSlice};
    let mut trace = Trace::new(16);
    let slice = |direction, start: f64, end: f64, bytes: f64| DramSlice {
        phase: 0,
        slot: 0,
        direction,
        start,
        end,
        bytes,
    };
    // A 100-byte read over cycles 0..10 and a 40-byte write over 15..20, in two bins of 10:
    // bin 0 reads 100 B in 10 cycles (10 B/cycle); bin 1 writes 40 B (4 B/cycle).
    trace
        .dram
        .push(slice(DramDirection::Read, 0.0, 10.0, 100.0));
    trace
        .dram
        .push(slice(DramDirection::Write, 15.0, 20.0, 40.0));
    assert_eq!(
        trace.dram_throughput(2),
        vec![(0.0, 10.0, 0.0), (10.0, 0.0, 4.0)]
    );
    // A read across a bin edge is shared by overlap: 60 B over 5..11 in bins of 10 puts
    // 50 B in bin 0 and 10 B in bin 1 (the channel's last slice ends at 20).
    trace.dram.clear();
    trace.dram.push(slice(DramDirection::Read, 5.0, 11.0, 60.0));
    trace
        .dram
        .push(slice(DramDirection::Write, 19.0, 20.0, 0.0));
    assert_eq!(
        trace.dram_throughput(2),
        vec![(0.0, 5.0, 0.0), (10.0, 1.0, 0.0)]
    );
    // Two buffers of 8 B: held over 0..4 and 2..6, and one handed on at once (3..3, not
    // counted). The level is 8 from 0, 16 from 2, 8 from 4, 0 from 6.
    let span = |claimed: f64, released: f64| BufferSpan {
        phase: 0,
        slot: 0,
        claimed,
        released,
        bytes: 8.0,
    };
    trace.buffers = vec![span(0.0, 4.0), span(2.0, 6.0), span(3.0, 3.0)];
    assert_eq!(
        trace.buffer_occupancy(),
        vec![(0.0, 8.0), (2.0, 16.0), (4.0, 8.0), (6.0, 0.0)]
    );
    // A buffer handed on as the next is claimed (release and claim at 4) never counts twice.
    trace.buffers = vec![span(0.0, 4.0), span(4.0, 8.0)];
    assert_eq!(trace.buffer_occupancy(), vec![(0.0, 8.0), (8.0, 0.0)]);
}
