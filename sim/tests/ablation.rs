//! The +Architecture ablation (FuseMax without interleaving): why the cycle engine's period per
//! tile is shorter than the artifact's combination of per-Einsum times (reference §9).

use cascade_ir::Cascade;
use cascade_scheduler::{ArchSpec, Outcome, Problem, Schedule, schedule, shipped};
use cascade_sim::cycle::{CycleConfig, run};

fn load(name: &str) -> (ArchSpec, Cascade) {
    let arch = shipped::load_arch(name).expect("shipped").expect("valid");
    let src = cascade_ir::library::source(arch.cascade()).expect("library cascade");
    let cascade = cascade_ir::dsl::parse(src, "library")
        .expect("parses")
        .cascade;
    (arch, cascade)
}

fn sched(arch: &ArchSpec, cascade: &Cascade, p: &Problem) -> Schedule {
    match schedule(cascade, arch, p).expect("sizes") {
        Outcome::Scheduled(s) => *s,
        Outcome::Infeasible(why) => panic!("{}: {why}", arch.name()),
    }
}

/// The cycle engine's events of one phase's first slots.
fn events(arch: &ArchSpec, s: &Schedule) -> Vec<(String, String, u64, f64, f64)> {
    let config = CycleConfig {
        max_slots: Some(256),
        tile_buffers: 2,
        log_events: 2_000,
    };
    run(s, arch, &config)
        .events
        .iter()
        .map(|ev| {
            let e = &s.einsums[ev.einsum];
            let unit = arch.unit(e.unit).name().to_string();
            (e.name.clone(), unit, ev.slot, ev.start, ev.end)
        })
        .collect()
}

#[test]
fn without_interleaving_the_1d_array_hides_its_rescale_in_the_drain() {
    // Per key tile of 256 keys × 256 queries (one point per PE per cycle), from the arch's
    // cycles per point: on the 2D array BQK E, LM 1, SLN 7, SLD 1, SLNV F (2E + 9 with E = F);
    // on the 1D array (a PE per query) RM 1, PRM 7, SPD 1, RD 1, SPNV F, RNV F (2F + 11).
    // Without interleaving each BQK tile drains the 256-deep array before LM: 256 cycles.
    //
    // The artifact's combination (reference §9) puts SPNV and RNV in series after SLNV:
    //   max(BQK + LM, RD + AV) + 256 + RM + max(SLN + SLD, PRM + SPD) + max(SLNV, SPNV + RNV)
    //   = (E + 1) + 256 + 1 + 8 + 2F                      = 458 (E = 64), 650 (E = 128),
    // which gives the published 2D utilisation (2E + 9) / that = 0.299 and 0.408.
    // But RNV[t] needs only SLNV[t] and SPNV[t], and SPNV[t] only PRM[t] and RNV[t - 1]: both
    // are on the 1D array, which is free while the 2D array drains the next BQK. A schedule
    // that respects only the dependencies takes 2D work + drain = 2E + 9 + 256 per tile
    // (393 and 521: 0.349 and 0.509), and the 1D array's 2F + 11 fits beside it. The cycle
    // engine, which starts an item as soon as its unit is free and its producers are done,
    // finds exactly that period, and runs each RNV while no 2D item runs (inside the drain).
    let (arch, cascade) = load("fusemax-no-interleave");
    let w = shipped::load_workloads().expect("valid workloads");
    for (model, e) in [("bert", 64.0), ("xlm", 128.0)] {
        let p = w.problem(w.model(model).expect("model"), 1 << 14);
        let s = sched(&arch, &cascade, &p);
        let two_d = 2.0 * e + 9.0;
        let artifact = (e + 1.0) + 256.0 + 1.0 + 8.0 + 2.0 * e;
        let dependencies = two_d + 256.0;
        let evs = events(&arch, &s);
        let starts: Vec<f64> = evs.iter().filter(|x| x.0 == "BQK").map(|x| x.3).collect();
        assert!(starts.len() > 12, "{model}: {} BQK events", starts.len());
        // Steady state: after the pipeline has filled (the first few tiles).
        for pair in starts[6..].windows(2) {
            let period = pair[1] - pair[0];
            assert!(
                (period - dependencies).abs() < 1.0,
                "{model}: a tile every {period} cycles, not {dependencies}"
            );
            assert!(period < artifact - 1.0, "{model}");
        }
        let two_d_busy: Vec<(f64, f64)> = evs
            .iter()
            .filter(|x| x.1 == "array2d")
            .map(|x| (x.3, x.4))
            .collect();
        let mut hidden = 0;
        for rnv in evs.iter().filter(|x| x.0 == "RNV" && x.2 >= 4) {
            let overlaps = two_d_busy.iter().any(|&(a, b)| a < rnv.4 && rnv.3 < b);
            assert!(
                !overlaps,
                "{model}: RNV of slot {} ran beside 2D work",
                rnv.2
            );
            hidden += 1;
        }
        assert!(hidden > 4, "{model}: {hidden} RNV events checked");
        // The analytical model agrees with the engine; the artifact's combination is longer by
        // (E + 1 + 256 + 9 + 2F) - (2E + 9 + 256) = F + 1 per tile: the RNV it serialises.
        let r = cascade_sim::simulate(&s, &arch);
        let util = r
            .units
            .iter()
            .find(|u| u.name == "array2d")
            .expect("2D array")
            .utilisation;
        let expected = two_d / dependencies;
        assert!(
            (util - expected).abs() / expected < 0.02,
            "{model}: 2D utilisation {util}, expected {expected}"
        );
        assert!((two_d / artifact - if e == 64.0 { 0.299 } else { 0.408 }).abs() < 0.001);
    }
}
