//! The FuseMax paper's results as targets for the analytical model (reference section 8).
//!
//! Where the model agrees with the paper the test holds it to 5%. Where it does not, the test
//! states the band the model gives and the comment says why; nothing is tuned to hit a number.

use cascade_ir::Cascade;
use cascade_scheduler::{ArchSpec, Outcome, Problem, schedule, shipped};
use cascade_sim::compare::{Comparison, Config, compare};
use cascade_sim::{SimReport, simulate};

struct Loaded {
    arch: ArchSpec,
    cascade: Cascade,
}

fn load(name: &str) -> Loaded {
    let arch = shipped::load_arch(name).expect("shipped").expect("valid");
    let src = cascade_ir::library::source(arch.cascade()).expect("library cascade");
    let cascade = cascade_ir::dsl::parse(src, "library")
        .expect("parses")
        .cascade;
    Loaded { arch, cascade }
}

fn problems() -> Vec<Problem> {
    let w = shipped::load_workloads().expect("valid workloads");
    w.models()
        .iter()
        .flat_map(|m| w.seq().iter().map(|&s| w.problem(m, s)))
        .collect()
}

fn run(l: &Loaded, p: &Problem) -> SimReport {
    match schedule(&l.cascade, &l.arch, p).expect("sizes") {
        Outcome::Scheduled(s) => simulate(&s, &l.arch),
        Outcome::Infeasible(why) => panic!("{}: {why}", l.arch.name()),
    }
}

fn comparison(baselines: &[&str]) -> Comparison {
    let subject = load("fusemax");
    let bases: Vec<Loaded> = baselines.iter().map(|b| load(b)).collect();
    let configs: Vec<Config<'_>> = bases
        .iter()
        .map(|b| Config {
            arch: &b.arch,
            cascade: &b.cascade,
        })
        .collect();
    compare(
        Config {
            arch: &subject.arch,
            cascade: &subject.cascade,
        },
        &configs,
        &problems(),
    )
}

fn within(value: f64, target: f64, rel: f64) -> bool {
    (value - target).abs() <= rel * target
}

#[test]
fn means_against_flat_match_the_paper() {
    let cmp = comparison(&["flat"]);
    assert_eq!(cmp.rows.len(), 24);
    let a = cmp.mean_attention[0].expect("all feasible");
    let e = cmp.mean_end_to_end[0].expect("all feasible");
    assert!(
        within(a.speedup, 6.7, 0.05),
        "attention speedup {}",
        a.speedup
    );
    // Energy: cascade charges each component's leakage over the latency, which the artifact's
    // counts leave at 0, and FLAT runs 6.6× longer, so its share is larger: ~75% (README, the
    // fidelity section, names this and the buffer-access width).
    assert!(
        within(a.energy, 0.79, 0.07),
        "attention energy {}",
        a.energy
    );
    assert!(
        within(e.speedup, 5.3, 0.05),
        "end-to-end speedup {}",
        e.speedup
    );
    assert!(
        within(e.energy, 0.83, 0.05),
        "end-to-end energy {}",
        e.energy
    );
}

#[test]
fn means_against_unfused_are_in_the_models_band() {
    // The paper reports 10× / 77% (attention) and 7.6× / 82% (end to end). Our unfused baseline
    // stages every phase boundary through the global buffer and DRAM and re-reads QK in each
    // softmax pass once a row no longer fits, where the paper's unfused baseline uses searched
    // (Timeloop-mapper) mappings per phase; so our unfused is slower and spends more energy on
    // buffer and DRAM traffic, and leaks for longer: ~10.6× / ~62% and ~8.2× / ~70%.
    let cmp = comparison(&["unfused"]);
    let a = cmp.mean_attention[0].expect("all feasible");
    let e = cmp.mean_end_to_end[0].expect("all feasible");
    assert!(
        within(a.speedup, 10.0, 0.10),
        "attention speedup {}",
        a.speedup
    );
    assert!(
        (0.58..=0.68).contains(&a.energy),
        "attention energy {}",
        a.energy
    );
    assert!(
        within(e.speedup, 7.6, 0.10),
        "end-to-end speedup {}",
        e.speedup
    );
    assert!(
        (0.66..=0.76).contains(&e.energy),
        "end-to-end energy {}",
        e.energy
    );
}

#[test]
fn fusemax_utilisation_rises_with_length() {
    let fusemax = load("fusemax");
    for p in problems() {
        let r = run(&fusemax, &p);
        let util = |u: &str| {
            r.units
                .iter()
                .find(|x| x.name == u)
                .expect("unit")
                .utilisation
        };
        let (two, one) = (util("array2d"), util("array1d"));
        assert!(one > 0.99, "{} {}: 1D {one}", p.label, p.seq);
        match p.seq {
            1024 => assert!((0.88..=0.90).contains(&two), "{} 1K: 2D {two}", p.label),
            1_048_576 => assert!(two >= 0.99, "{} 1M: 2D {two}", p.label),
            _ => assert!(two > 0.96, "{} {}: 2D {two}", p.label, p.seq),
        }
        // FuseMax needs no spill at any length in 16 MiB.
        assert_eq!(r.spill, 0.0);
    }
}

#[test]
fn fusemax_latency_matches_the_hand_formula() {
    // Per 256-query tile, every key tile costs 2F+10 cycles on the 1D array (the bottleneck,
    // reference section 4), plus F cycles of final division per query tile.
    let fusemax = load("fusemax");
    for p in problems() {
        let (m, f) = (p.seq as f64, p.sizes["F"] as f64);
        let per_query_tile = (m / 256.0) * (2.0 * f + 10.0) + f;
        let expected =
            p.instances().expect("fits") as f64 * (p.seq as f64 / 256.0) * per_query_tile;
        let r = run(&fusemax, &p);
        // The pipeline fill adds a few epochs once per layer.
        assert!(
            within(r.latency_cycles, expected, 0.005),
            "{} {}: {} vs {expected}",
            p.label,
            p.seq,
            r.latency_cycles
        );
    }
}

#[test]
fn flat_is_bound_by_its_1d_array_then_by_memory() {
    let flat = load("flat");
    for p in problems().into_iter().filter(|p| p.sizes["E"] == 64) {
        let r = run(&flat, &p);
        let two = r
            .units
            .iter()
            .find(|u| u.name == "array2d")
            .expect("unit")
            .utilisation;
        if p.seq <= 65536 {
            // QK and AV take 2E/65536 cycles per score, the softmax 4/256: 2D busy 1/8 of the time.
            assert!(within(two, 0.125, 0.01), "{} {}: 2D {two}", p.label, p.seq);
            assert_eq!(r.phases[0].bound, "array1d");
        } else {
            // Rows of 256K keys no longer fit in 32 MiB and most of the scores spill. The paper
            // calls FLAT memory-bound from 256K; in our model memory time reaches 98% of the 1D
            // time at 256K and overtakes it at 1M (where the row state, not K/V, dominates).
            assert!(r.spill > 0.5, "{} {}: spill {}", p.label, p.seq, r.spill);
            assert!(
                r.memory_cycles > 0.95 * r.latency_cycles,
                "{} {}",
                p.label,
                p.seq
            );
            if p.seq >= 1 << 20 {
                assert_eq!(r.phases[0].bound, "memory");
            }
        }
    }
}

#[test]
fn cascade_alone_on_flat_hardware() {
    // The paper finds the 1-pass cascade alone on FLAT hardware slightly slower than FLAT
    // (≈0.9×): on the 1D array it does max, a 2-cycle sub-then-exp and an add per score, plus
    // the per-tile rescaling of F numerators, against FLAT's 4 one-cycle softmax steps. The
    // ablation file prices the sub-then-exp as the reference states (2 cycles).
    let cmp = comparison(&["flat", "fusemax-cascade-on-flat"]);
    let vs_flat = cmp.mean_attention[0].expect("feasible").speedup;
    let vs_cascade = cmp.mean_attention[1].expect("feasible").speedup;
    let cascade_vs_flat = vs_flat / vs_cascade;
    assert!(
        (0.85..=0.95).contains(&cascade_vs_flat),
        "+Cascade vs FLAT {cascade_vs_flat}"
    );
    // Without interleaving every tile drains the 256-deep array: FuseMax is ~2.6× faster.
    let cmp = comparison(&["fusemax-no-interleave"]);
    let gain = cmp.mean_attention[0].expect("feasible").speedup;
    assert!((2.3..=2.9).contains(&gain), "interleaving gain {gain}");
}

#[test]
fn fusemax_energy_is_mostly_2d_macs() {
    // The paper reports ≥95% of FuseMax's energy in 2D-array MACs. We count one buffer access
    // per operand word per tile (Q, BK, BV and the RM/RD/RNV state swapped per tile) at
    // Accelergy's per-word SRAM energy, and one register access per PE operand: 5% and 2% of
    // the total, which leaves 91–93% for the MACs.
    let fusemax = load("fusemax");
    for p in problems() {
        let r = run(&fusemax, &p);
        assert!(
            (0.90..0.95).contains(&r.tile_mac_energy_share),
            "{} {}: {}",
            p.label,
            p.seq,
            r.tile_mac_energy_share
        );
    }
}

#[test]
fn energy_is_action_counts_times_the_table() {
    // BERT at 4K on FuseMax: the 2D MACs are E + 6 + F per score point (BQK, SLN's Taylor exp,
    // SLNV) times M·P points per instance, at 17.16 pJ.
    let fusemax = load("fusemax");
    let w = shipped::load_workloads().unwrap();
    let p = w.problem(w.model("bert").unwrap(), 4096);
    let r = run(&fusemax, &p);
    let macs = p.instances().expect("fits") as f64 * 4096.0 * 4096.0 * (64.0 + 6.0 + 64.0);
    let got = r.compute_by_action[&("array2d".to_string(), "mac".to_string())];
    assert!(within(got, macs * 17.16, 1e-9), "{got} vs {}", macs * 17.16);
}

#[test]
fn area_follows_the_component_table() {
    // FuseMax: 65,536 PEs of MAC + max + its register file (the artifact's 4,256 µm²), 256 PEs
    // adding a divider, 16 MiB of 4096-bit rows (CACTI's 84.201 mm², a characterised size).
    let fusemax = load("fusemax");
    let pe = 1545.0 + 49.0 + 4256.0;
    let expected = (65536.0 * pe + 256.0 * (pe + 23741.0)) / 1e6 + 84.201;
    let got = cascade_sim::area_mm2(&fusemax.arch);
    assert!(within(got, expected, 1e-9), "{got} vs {expected}");
    // FLAT: 65,536 PEs of MAC + its 4 × 64-bit register file (1,838 µm²), 256 PEs of MAC, max,
    // exp unit, divider and a 16 × 16-bit register file (2,145 µm²), 32 MiB (CACTI's
    // 175.717 mm²): the artifact's own component areas.
    let flat_2d = 1545.0 + 1838.0;
    let flat_1d = 1545.0 + 49.0 + 8240.0 + 23741.0 + 2145.0;
    let flat = (65536.0 * flat_2d + 256.0 * flat_1d) / 1e6 + 175.717;
    let flat_got = cascade_sim::area_mm2(&load("flat").arch);
    assert!(within(flat_got, flat, 1e-9), "{flat_got} vs {flat}");
    // By those tables FuseMax's PEs (a register file 2.3× FLAT's) make it larger than FLAT,
    // not the paper's 6.4% smaller: README names this residual.
    assert!(got > flat_got);
}

#[test]
fn unfused_phases_round_trip_through_dram() {
    // BERT at 16K on the unfused baseline: QK | softmax | AV. The QK phase reads Q and K once
    // (P1 covers all queries) and writes the M·P scores: memory-bound at 400 GiB/s.
    let unfused = load("unfused");
    let w = shipped::load_workloads().unwrap();
    let p = w.problem(w.model("bert").unwrap(), 16384);
    let r = run(&unfused, &p);
    let bounds: Vec<&str> = r.phases.iter().map(|x| x.bound.as_str()).collect();
    assert_eq!(bounds, ["memory", "array1d", "memory"]);
    let (m, e) = (16384.0f64, 64.0);
    let words = p.instances().expect("fits") as f64 * (2.0 * m * e + m * m);
    let bytes_per_cycle = 400.0 * 1024f64.powi(3) / 940e6;
    let expected = words * 2.0 / bytes_per_cycle;
    assert!(
        within(r.phases[0].memory_cycles, expected, 1e-9),
        "{} vs {expected}",
        r.phases[0].memory_cycles
    );
    // The softmax phase runs 4 one-cycle ops per score on 256 PEs.
    let softmax = p.instances().expect("fits") as f64 * 4.0 * m * m / 256.0;
    assert!(within(r.phases[1].compute_cycles, softmax, 1e-9));
}

#[test]
fn leakage_is_the_component_tables_static_power_over_the_latency() {
    // Per cycle, from the table's leakage (MAC 0.18 pJ, exp unit 0.997 pJ, the buffer's SRAM
    // 0.4065 pJ at 16 MiB and 0.8132 pJ at 32 MiB; max units and dividers are given none):
    // FuseMax has 65,536 + 256 MACs; FLAT has 65,536 + 256 MACs and 256 exp units. Over a
    // layer the chip leaks that many pJ each cycle.
    let expected = [
        ("fusemax", (65536.0 + 256.0) * 0.18 + 0.4065),
        ("flat", (65536.0 + 256.0) * 0.18 + 256.0 * 0.997 + 0.8132),
    ];
    let w = shipped::load_workloads().unwrap();
    let p = w.problem(w.model("bert").unwrap(), 4096);
    for (name, per_cycle) in expected {
        let l = load(name);
        let r = run(&l, &p);
        let want = per_cycle * r.latency_cycles;
        assert!(
            within(r.energy.leakage_pj, want, 1e-9),
            "{name}: {} vs {want}",
            r.energy.leakage_pj
        );
    }
}
