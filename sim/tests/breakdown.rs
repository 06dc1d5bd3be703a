//! The energy breakdown and the per-tensor traffic sum to the report's totals, and one point's
//! DRAM bytes per tensor match the shapes by hand.

use cascade_scheduler::{ArchSpec, Outcome, Problem, schedule, shipped};
use cascade_sim::{EnergyKind, SimReport, simulate};

fn run(arch: &ArchSpec, p: &Problem) -> SimReport {
    let src = cascade_ir::library::source(arch.cascade()).expect("library cascade");
    let cascade = cascade_ir::dsl::parse(src, "library")
        .expect("parses")
        .cascade;
    match schedule(&cascade, arch, p).expect("sizes") {
        Outcome::Scheduled(s) => simulate(&s, arch),
        Outcome::Infeasible(why) => panic!("{}: {why}", arch.name()),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(f64::MIN_POSITIVE)
}

#[test]
fn parts_sum_to_the_totals_on_every_shipped_configuration() {
    let w = shipped::load_workloads().expect("valid workloads");
    let points = [
        ("bert", 1024),
        ("xlm", 16384),
        ("t5", 262_144),
        ("trxl", 1 << 20),
    ];
    for (name, _) in shipped::ARCHS {
        let arch = shipped::load_arch(name).expect("shipped").expect("valid");
        for (model, seq) in points {
            let p = w.problem(w.model(model).expect("model"), seq);
            let r = run(&arch, &p);
            let at = format!("{name} {model} {seq}");
            let total = r.energy.total_pj();
            let sum = |parts: &[cascade_sim::EnergyPart]| parts.iter().map(|x| x.pj).sum::<f64>();
            let b = &r.breakdown;
            assert!(close(sum(&b.by_component()), total), "{at}: by component");
            let owners = sum(&b.by_einsum()) + sum(&b.by_tensor()) + sum(&b.leakage());
            assert!(close(owners, total), "{at}: by Einsum, tensor and leakage");
            // Leakage is the chip's static power over each phase's latency.
            let rate: f64 = arch.leakage_pj_per_cycle().iter().map(|x| x.1).sum();
            assert!(rate > 0.0, "{at}: the shipped table leaks");
            assert!(
                close(r.energy.leakage_pj, rate * r.latency_cycles),
                "{at}: leakage {} vs {rate} × {}",
                r.energy.leakage_pj,
                r.latency_cycles
            );
            // Each of the five totals is its kind's items.
            for (kind, want) in [
                (EnergyKind::Compute, r.energy.compute_pj),
                (EnergyKind::Register, r.energy.register_pj),
                (EnergyKind::Buffer, r.energy.buffer_pj),
                (EnergyKind::Dram, r.energy.dram_pj),
                (EnergyKind::Leakage, r.energy.leakage_pj),
            ] {
                let got: f64 = b
                    .items
                    .iter()
                    .filter(|i| i.kind == kind)
                    .map(|i| i.pj)
                    .sum();
                assert!(close(got, want), "{at}: {kind:?} {got} vs {want}");
            }
            // Every item is its count times the table's price.
            for it in &b.items {
                assert!(close(it.pj, it.count * it.pj_per_action), "{at}: {it:?}");
            }
            let bytes: f64 = r
                .traffic_by_tensor
                .iter()
                .map(|t| t.dram_read_bytes + t.dram_write_bytes)
                .sum();
            assert!(
                close(bytes, r.dram_bytes),
                "{at}: {bytes} vs {}",
                r.dram_bytes
            );
            // Per phase too: the phase's memory time is its tensors' bytes over the bandwidth.
            for (k, phase) in r.phases.iter().enumerate() {
                let bytes: f64 = r
                    .traffic_by_tensor
                    .iter()
                    .filter(|t| t.phase == k)
                    .map(|t| t.dram_read_bytes + t.dram_write_bytes)
                    .sum();
                let cycles = bytes / arch.dram_bytes_per_cycle();
                assert!(close(cycles, phase.memory_cycles), "{at}: phase {k}");
            }
        }
    }
}

#[test]
fn fusemax_dram_bytes_per_tensor_by_hand() {
    // BERT at 1K on FuseMax, the 1-pass cascade: 64 batch × 12 heads = 768 instances, each with
    // Q[E,P], K[E,M], V[F,M] and the output AV[F,P], E = F = 64, M = P = 1024, 2-byte words.
    // Per query the buffer keeps Q, RM, RD and RNV (64 + 1 + 1 + 64 words) and one BK and one
    // BV tile (2 × 256 × 64 words): all 4 query tiles fit in 16 MiB, so P2 = 1 and K and V are
    // streamed once. Each of the four tensors then moves 768 × 64 × 1024 × 2 bytes, read for
    // Q, K, V and written for AV, and nothing else touches DRAM.
    let arch = shipped::load_arch("fusemax")
        .expect("shipped")
        .expect("valid");
    let w = shipped::load_workloads().expect("valid workloads");
    let p = w.problem(w.model("bert").expect("model"), 1024);
    let r = run(&arch, &p);
    let each = 768.0 * 64.0 * 1024.0 * 2.0;
    let dram: Vec<(&str, f64, f64)> = r
        .traffic_by_tensor
        .iter()
        .filter(|t| t.dram_read_bytes + t.dram_write_bytes > 0.0)
        .map(|t| (t.tensor.as_str(), t.dram_read_bytes, t.dram_write_bytes))
        .collect();
    assert_eq!(
        dram,
        [
            ("Q", each, 0.0),
            ("K", each, 0.0),
            ("V", each, 0.0),
            ("AV", 0.0, each)
        ],
        "{:#?}",
        r.traffic_by_tensor
    );
    assert!(close(r.dram_bytes, 4.0 * each));
}
