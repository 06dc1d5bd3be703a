//! Scheduler tests: config validation, pass structure, binding, buffer sizing and infeasibility,
//! checked against numbers derived by hand from the FuseMax reference (sections 4–6).

use cascade_ir::Cascade;
use cascade_ir::ops::OpKind;
use cascade_scheduler::shipped::{self, parse_arch};
use cascade_scheduler::{ArchSpec, Outcome, Problem, Residency, Schedule, op_costs, schedule};

fn arch(name: &str) -> ArchSpec {
    shipped::load_arch(name).expect("shipped").expect("valid")
}

fn library(name: &str) -> Cascade {
    let src = cascade_ir::library::source(name).expect("library cascade");
    cascade_ir::dsl::parse(src, name).expect("parses").cascade
}

fn problem(model: &str, seq: u64) -> Problem {
    let w = shipped::load_workloads().expect("valid workloads");
    let m = w.model(model).expect("model").clone();
    w.problem(&m, seq)
}

fn scheduled(arch_name: &str, cascade: &str, model: &str, seq: u64) -> (Schedule, ArchSpec) {
    let a = arch(arch_name);
    match schedule(&library(cascade), &a, &problem(model, seq)).expect("sizes given") {
        Outcome::Scheduled(s) => (*s, a),
        Outcome::Infeasible(why) => panic!("{arch_name}/{cascade}: {why}"),
    }
}

fn unit_of(s: &Schedule, a: &ArchSpec, einsum: &str) -> String {
    let e = s
        .einsums
        .iter()
        .find(|e| e.name == einsum)
        .unwrap_or_else(|| panic!("no {einsum}"));
    a.unit(e.unit).name().to_string()
}

/// Errors of an architecture text with the shipped cost table.
fn arch_errors(text: &str) -> Vec<String> {
    match parse_arch(text, |n| shipped::costs(n).map(str::to_string)) {
        Ok(_) => Vec::new(),
        Err(errs) => errs.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn every_shipped_architecture_validates() {
    for (name, _) in shipped::ARCHS {
        let a = arch(name);
        assert_eq!(a.name(), *name);
        assert!(a.check_binding(&library(a.cascade())).is_empty());
    }
    assert_eq!(shipped::load_workloads().unwrap().models().len(), 4);
}

#[test]
fn passes_follow_the_cascade() {
    // Reference section 3: 3-pass, 2-pass (deferred division and local maxima), 1-pass.
    for (cascade, passes) in [
        ("attention_3pass", 3),
        ("attention_2pass_deferred", 2),
        ("attention_2pass_localmax", 2),
        ("attention_1pass", 1),
    ] {
        let (s, _) = scheduled("fusemax", cascade, "bert", 4096);
        assert_eq!(s.phases[0].passes, passes, "{cascade}");
    }
}

#[test]
fn fusemax_binding_is_the_papers() {
    // Reference section 5.
    let (s, a) = scheduled("fusemax", "attention_1pass", "bert", 4096);
    for e in ["BQK", "LM", "SLN", "SLD", "SLNV"] {
        assert_eq!(unit_of(&s, &a, e), "array2d", "{e}");
    }
    for e in ["RM", "PRM", "SPD", "RD", "SPNV", "RNV", "AV"] {
        assert_eq!(unit_of(&s, &a, e), "array1d", "{e}");
    }
    // The 2D array's epoch starts with SLNV of an older tile interleaved with BQK of the
    // newest: `(SLNV[t-3] | BQK[t]) → LM[t] → SLN[t-2] → SLD[t-2]`.
    let epoch = s.phases[0]
        .epochs
        .iter()
        .find(|e| a.unit(e.unit).name() == "array2d")
        .expect("a 2D-array epoch");
    let first: Vec<(&str, u32)> = epoch.slots[0]
        .iter()
        .map(|i| (i.name.as_str(), i.lag))
        .collect();
    assert_eq!(first, [("SLNV", 3), ("BQK", 0)], "{epoch}");
    assert_eq!(
        epoch.to_string(),
        "(SLNV[t-3] | BQK[t]) → LM[t] → SLN[t-2] → SLD[t-2]"
    );
}

#[test]
fn flat_and_cascade_on_flat_bindings() {
    // Reference section 6: FLAT runs QK and AV on the 2D array and the softmax on the 1D array;
    // +Cascade puts only BQK and SLNV on the 2D array.
    let (s, a) = scheduled("flat", "attention_3pass", "bert", 4096);
    for (e, u) in [
        ("QK", "array2d"),
        ("AV", "array2d"),
        ("GM", "array1d"),
        ("SN", "array1d"),
        ("SD", "array1d"),
        ("A", "array1d"),
    ] {
        assert_eq!(unit_of(&s, &a, e), u, "{e}");
    }
    let (s, a) = scheduled("fusemax-cascade-on-flat", "attention_1pass", "bert", 4096);
    let on_2d: Vec<&str> = s
        .einsums
        .iter()
        .filter(|e| a.unit(e.unit).name() == "array2d")
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(on_2d, ["BQK", "SLNV"]);
    // The unfused baseline: three phases (QK | softmax | AV).
    let (s, _) = scheduled("unfused", "attention_3pass", "bert", 4096);
    let phases: Vec<Vec<&str>> = s
        .phases
        .iter()
        .map(|p| {
            p.einsums
                .iter()
                .map(|&i| s.einsums[i].name.as_str())
                .collect()
        })
        .collect();
    assert_eq!(
        phases,
        [vec!["QK"], vec!["GM", "SN", "SD", "A"], vec!["AV"]]
    );
}

#[test]
fn fusemax_tile_work_matches_the_op_costs() {
    // Per 256×256 tile (reference section 4): 2D = BQK E + LM 1 + SLN 7 + SLD 1 + SLNV F;
    // 1D = RM 1 + PRM 7 + SPD 1 + RD 1 + SPNV F + RNV F.
    for (model, e) in [("bert", 64u64), ("xlm", 128)] {
        let (s, a) = scheduled("fusemax", "attention_1pass", model, 16384);
        let tiles = s.phases[0].partition.tiles();
        let per_tile = |unit: &str| -> u64 {
            s.einsums
                .iter()
                .filter(|x| x.per_key_tile && a.unit(x.unit).name() == unit)
                .map(|x| x.cycles)
                .sum::<u64>()
                / tiles
        };
        assert_eq!(per_tile("array2d"), 2 * e + 9, "{model}");
        assert_eq!(per_tile("array1d"), 2 * e + 10, "{model}");
    }
}

#[test]
fn fusemax_query_tiles_follow_the_buffer() {
    // Reference section 5: per query Q (E), RM, RD (1 each), RNV (F); plus one BK and one BV
    // tile. 16 MiB of 16-bit words, E = F = 64: P1 = floor((8 Mi − 2·256·64) / (130·256)) = 251.
    let (s, _) = scheduled("fusemax", "attention_1pass", "bert", 1 << 20);
    let part = &s.phases[0].partition;
    assert_eq!((part.m0, part.m1, part.p0), (256, 4096, 256));
    assert_eq!(part.p1, 251);
    assert_eq!(part.p2, 4096u64.div_ceil(251));
    let placements = &s.phases[0].placements;
    let k = placements
        .iter()
        .find(|(n, _)| n == "K")
        .map(|(_, r)| r.clone());
    assert_eq!(
        k,
        Some(Residency::Streamed {
            tile_words: 256 * 64,
            times: 17
        })
    );
    // K and V are re-streamed P2 times; Q is read once and the output written once.
    let (m, e) = (1u64 << 20, 64u64);
    let expected = (m * e * 2 * 17 + m * e) as f64;
    assert_eq!(s.phases[0].traffic.dram_read, expected);
}

#[test]
fn fusemax_never_spills_and_its_state_is_length_independent() {
    let mut words = Vec::new();
    for seq in [1u64 << 10, 1 << 12, 1 << 14, 1 << 16, 1 << 18, 1 << 20] {
        let (s, _) = scheduled("fusemax", "attention_1pass", "xlm", seq);
        assert_eq!(s.phases[0].spill, 0.0, "{seq}");
        let per_query: u64 = s.phases[0]
            .placements
            .iter()
            .filter_map(|(_, r)| match r {
                Residency::Buffer { words_per_query } => Some(*words_per_query),
                _ => None,
            })
            .sum();
        words.push(per_query);
    }
    assert!(words.iter().all(|&w| w == 2 * 128 + 2), "{words:?}");
}

#[test]
fn flat_spills_its_rows_at_long_sequences() {
    for seq in [1u64 << 10, 1 << 12, 1 << 14] {
        assert_eq!(
            scheduled("flat", "attention_3pass", "bert", seq).0.phases[0].spill,
            0.0
        );
    }
    // At 256K a query tile needs 256 rows × (Q 64 + GM 1 + SD 1 + AV 64 + the 256-key row of A
    // on its way from the 1D to the 2D array through the buffer + one QK row of 256K) words
    // beside one K and one V tile, in 16 Mi words.
    let (s, _) = scheduled("flat", "attention_3pass", "bert", 1 << 18);
    let avail = (16u64 << 20) - 2 * 256 * 64;
    let need = (130 + 256 + (1u64 << 18)) * 256;
    let expected = (need - avail) as f64 / ((1u64 << 18) * 256) as f64;
    assert!(
        (s.phases[0].spill - expected).abs() < 1e-9,
        "{} vs {expected}",
        s.phases[0].spill
    );
}

#[test]
fn no_interleave_adds_one_drain_per_tile() {
    let (s, _) = scheduled("fusemax-no-interleave", "attention_1pass", "bert", 4096);
    assert_eq!(s.phases[0].stall_per_tile, 256);
    let (s, _) = scheduled("fusemax", "attention_1pass", "bert", 4096);
    assert_eq!(s.phases[0].stall_per_tile, 0);
}

#[test]
fn infeasibility_is_a_value_with_a_reason() {
    // FuseMax without its sigmoid entries: no unit computes one.
    let a = arch("fusemax");
    let text: String = shipped::arch("fusemax")
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("ops.sigmoid "))
        .map(|l| format!("{l}\n"))
        .collect();
    let no_sigmoid = parse_arch(&text, |n| shipped::costs(n).map(str::to_string)).unwrap();
    match schedule(
        &library("sigmoid_attention"),
        &no_sigmoid,
        &problem("bert", 4096),
    )
    .unwrap()
    {
        Outcome::Infeasible(why) => assert!(
            why.reason.contains("`sigmoid`") && why.reason.contains('S'),
            "{why}"
        ),
        Outcome::Scheduled(_) => panic!("sigmoid has no unit"),
    }
    // A buffer too small for one query tile.
    let text = shipped::arch("fusemax")
        .unwrap()
        .replace("capacity_bytes = 16777216", "capacity_bytes = 65536");
    let tiny = parse_arch(&text, |n| shipped::costs(n).map(str::to_string)).unwrap();
    match schedule(&library("attention_1pass"), &tiny, &problem("bert", 4096)).unwrap() {
        Outcome::Infeasible(why) => assert!(why.reason.contains("buffer"), "{why}"),
        Outcome::Scheduled(_) => panic!("64 KiB cannot hold a query tile"),
    }
    // A rank without a size is the caller's error, not infeasibility.
    let err = schedule(
        &library("attention_window_3pass"),
        &a,
        &problem("bert", 4096),
    )
    .unwrap_err();
    assert!(err.to_string().contains("rank W has no size"), "{err}");
}

#[test]
fn config_errors_name_the_field_and_the_fix() {
    let base = shipped::arch("fusemax").unwrap();
    let cases = [
        (
            base.replacen("rows = 256", "rows = 0", 1),
            "`units.array2d.rows`: is 0",
        ),
        (
            base.replace("bandwidth_gib_s = 400.0", "bandwidth_gib_s = -400.0"),
            "`dram.bandwidth_gib_s`: is -400",
        ),
        (
            base.replace("clock_mhz = 940.0", "clock_mhz = 940.0\nclock_ghz = 1.0"),
            "unknown field `clock_ghz`",
        ),
        (
            base.replace("tile = \"array2d\"", "tile = \"array3d\""),
            "`binding.tile`: names unit `array3d`",
        ),
        (
            base.replace(
                "ops.exp = { cycles = 6, actions = { mac = 6 } }",
                "ops.exp = { cycles = 6, actions = { taylor = 6 } }",
            ),
            "`taylor` has no energy",
        ),
    ];
    for (text, expected) in cases {
        let errs = arch_errors(&text);
        assert!(
            errs.iter().any(|e| e.contains(expected)),
            "{expected}: {errs:?}"
        );
    }
    // An Einsum bound to a unit without its op is caught against the cascade.
    let text = base.replacen(
        "[binding]\n",
        "[binding]\neinsums = { AV = \"array2d\" }\n",
        1,
    );
    let a = parse_arch(&text, |n| shipped::costs(n).map(str::to_string)).unwrap();
    let errs: Vec<String> = a
        .check_binding(&library("attention_1pass"))
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("`binding.einsums.AV`") && errs[0].contains("no `div` op"),
        "{errs:?}"
    );
}

#[test]
fn op_costs_price_each_unit() {
    let costs = op_costs(&arch("fusemax"));
    let exp = costs["array2d"][&OpKind::Exp];
    assert_eq!(exp.cycles, 6.0);
    assert!((exp.energy_pj - 6.0 * 17.16).abs() < 1e-9);
    assert!(!costs["array2d"].contains_key(&OpKind::Div));
    let costs = op_costs(&arch("flat"));
    let exp = costs["array1d"][&OpKind::Exp];
    assert_eq!((exp.cycles, exp.unit_cycles), (1.0, 1.0 / 256.0));
    assert!((exp.energy_pj - 94.65).abs() < 1e-9);
}

mod loader_properties {
    use proptest::prelude::*;

    use super::*;

    fn mutate(text: &str, edits: &[(usize, u8, u8)]) -> String {
        let mut bytes = text.as_bytes().to_vec();
        for &(pos, kind, byte) in edits {
            if bytes.is_empty() {
                break;
            }
            let i = pos % bytes.len();
            match kind % 4 {
                0 => bytes[i] = byte,
                1 => {
                    bytes.remove(i);
                }
                2 => bytes.insert(i, byte),
                _ => {
                    // Replace a digit run start with a sign or zero, the likeliest bad values.
                    bytes[i] = if byte % 2 == 0 { b'-' } else { b'0' };
                }
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn mutated_configs_never_panic(
            which in 0usize..5,
            edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6),
        ) {
            let (_, text) = shipped::ARCHS[which];
            let mutated = mutate(text, &edits);
            if let Ok(a) = parse_arch(&mutated, |n| shipped::costs(n).map(str::to_string)) {
                // A valid architecture schedules or explains why not.
                if let Some(c) = cascade_ir::library::source(a.cascade()) {
                    let c = cascade_ir::dsl::parse(c, "x").unwrap().cascade;
                    let _ = a.check_binding(&c);
                    let _ = schedule(&c, &a, &problem("bert", 4096));
                }
            }
        }

        #[test]
        fn numeric_fields_out_of_range_are_reported(value in -1000i64..=0) {
            let text = shipped::arch("flat").unwrap().replacen("cols = 256", &format!("cols = {value}"), 1);
            let errs = arch_errors(&text);
            prop_assert!(errs.iter().any(|e| e.starts_with("`units.array2d.cols`")), "{:?}", errs);
        }
    }

    #[test]
    fn a_config_error_is_not_a_panic_for_missing_sections() {
        let errs = arch_errors("name = \"x\"\n");
        for field in [
            "`cascade`",
            "`clock_mhz`",
            "`units`",
            "`buffer`",
            "`dram`",
            "`binding`",
            "`pipeline`",
        ] {
            assert!(
                errs.iter().any(|e| e.starts_with(field)),
                "{field}: {errs:?}"
            );
        }
    }
}

/// In an epoch a unit works through its items in order, so an Einsum that reads a same-unit
/// producer of the same tile must come after it (or work on an older tile). Interleaving moves
/// the heaviest Einsum to the front, which is where this once went wrong for SLNV.
#[test]
fn epochs_never_run_a_consumer_before_its_producer_of_the_same_tile() {
    let mut checked = 0;
    for (arch_name, _) in shipped::ARCHS {
        let a = arch(arch_name);
        for cascade in cascade_ir::library::names() {
            let Ok(Outcome::Scheduled(s)) = schedule(&library(cascade), &a, &problem("bert", 4096))
            else {
                continue;
            };
            for phase in &s.phases {
                for epoch in &phase.epochs {
                    let order: Vec<usize> = epoch.order().map(|i| i.einsum).collect();
                    let position = |x: usize| order.iter().position(|&y| y == x);
                    for (x, e) in s.einsums.iter().enumerate() {
                        if e.unit != epoch.unit {
                            continue;
                        }
                        for &d in &e.deps {
                            let p = &s.einsums[d];
                            if p.unit != epoch.unit || p.stage != e.stage {
                                continue;
                            }
                            let (Some(pp), Some(ep)) = (position(d), position(x)) else {
                                continue;
                            };
                            checked += 1;
                            assert!(
                                pp < ep,
                                "{arch_name}/{cascade}: {} before its producer {} in `{epoch}`",
                                e.name,
                                p.name
                            );
                        }
                    }
                }
            }
        }
    }
    assert!(
        checked > 20,
        "the check saw the epochs ({checked} same-tile pairs)"
    );
}

#[test]
fn passes_agree_with_the_ir_pass_analysis() {
    // The scheduler finds passes itself (it needs them per phase); the IR's pass analysis is an
    // independent implementation of FuseMax section 2. They must agree Einsum by Einsum.
    let a = arch("fusemax");
    for name in cascade_ir::library::names() {
        let c = library(name);
        let mut p = problem("bert", 4096);
        p.sizes.insert("W".into(), 512);
        p.sizes.insert("K".into(), 4096);
        let Ok(Outcome::Scheduled(s)) = schedule(&c, &a, &p) else {
            // Only sigmoid and linear attention need an op no unit has.
            assert!(
                name.contains("sigmoid") || name.contains("linear"),
                "{name}"
            );
            continue;
        };
        let key = s.phases[0].partition.key_rank.clone();
        let rank = c.rank_by_name(&key).expect("key rank");
        let report = cascade_ir::passes::passes(&c, rank);
        assert_eq!(s.phases[0].passes, report.passes, "{name}");
        for e in &s.einsums {
            let theirs = report
                .einsums
                .iter()
                .find(|x| x.einsum == e.id)
                .expect("every Einsum");
            // The IR numbers passes from 1.
            assert_eq!(e.pass + 1, theirs.pass, "{name}: {}", e.name);
        }
    }
}

/// Inputs that once panicked or wrapped around (issue 12): each is now a value or an error
/// with a reason, and every reported number is finite.
#[test]
fn degenerate_and_huge_inputs_are_values_or_errors() {
    // A cascade without ranks: one point of work, scheduled without a panic.
    let c = cascade_ir::dsl::parse(
        "cascade noranks\ninput A[] B[]\n\nZ[] = A[] * B[]\n\noutput Z\n",
        "noranks",
    )
    .expect("parses")
    .cascade;
    match schedule(&c, &arch("fusemax"), &problem("bert", 1024)).expect("no sizes needed") {
        Outcome::Scheduled(s) => assert_eq!(s.einsums.len(), 1),
        Outcome::Infeasible(why) => panic!("{why}"),
    }
    // Batch × heads beyond 64 bits is too large to count, not latency 0.
    let mut p = problem("bert", 1024);
    p.heads = 1 << 40;
    p.batch = 1 << 40;
    let err = schedule(&library("attention_1pass"), &arch("fusemax"), &p).unwrap_err();
    assert!(err.to_string().contains("too large to count"), "{err}");
    // A clock of 1e308 MHz (1e314 Hz is infinite) and a bandwidth of 1e300 are refused.
    let base = shipped::arch("fusemax").unwrap();
    let errs = arch_errors(&base.replace("clock_mhz = 940.0", "clock_mhz = 1e308"));
    assert!(
        errs.iter()
            .any(|e| e.starts_with("`clock_mhz`: is 1e308 MHz")),
        "{errs:?}"
    );
    let errs = arch_errors(&base.replace("bandwidth_gib_s = 400.0", "bandwidth_gib_s = 1e300"));
    assert!(
        errs.iter().any(|e| e.starts_with("`dram.bandwidth_gib_s`")),
        "{errs:?}"
    );
    // An array side beyond the model's range is refused when a sweep resizes to it.
    let a = arch("fusemax");
    let err = a.resized(1 << 33, 1 << 24).unwrap_err();
    assert!(
        err.to_string().contains("array sides from 1 to 65536"),
        "{err}"
    );
    assert_eq!(
        a.resized(512, 1 << 24).unwrap().unit(a.tile_unit()).pes(),
        512 * 512
    );
}

#[test]
fn workload_values_are_checked_where_they_enter() {
    // Heads beyond the model's range, kv_heads that do not divide the heads, a zero length and
    // an unknown FFN kind are each reported with their field.
    let text = shipped::workload_set("llm")
        .unwrap()
        .replacen("heads = 32\n", "heads = 1099511627776\n", 1)
        .replacen(
            "kv_heads = 8\nE = 128\nF = 128\nD = 8192",
            "kv_heads = 7\nE = 128\nF = 128\nD = 8192",
            1,
        )
        .replacen("seq = [2048,", "seq = [0,", 1)
        .replacen(
            "S = 14336\nffn = \"gated\"",
            "S = 14336\nffn = \"swish\"",
            1,
        );
    let raw = cascade_scheduler::RawWorkloads::from_toml(&text).expect("parses");
    let errs: Vec<String> = cascade_scheduler::Workloads::new(raw)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    for field in [
        "`models.llama3-8b.heads`: is 1099511627776",
        "`models.llama3-70b.kv_heads`: is 7",
        "`seq`: is 0",
        "`models.llama3-8b.ffn`: is `swish`",
    ] {
        assert!(
            errs.iter().any(|e| e.starts_with(field)),
            "{field}: {errs:?}"
        );
    }
    // Every shipped workload set validates, and the LLM set has decode points.
    for (name, _) in shipped::WORKLOAD_SETS {
        let w = shipped::load_workload_set(name).unwrap().unwrap();
        assert!(!w.models().is_empty(), "{name}");
    }
    let llm = shipped::load_workload_set("llm").unwrap().unwrap();
    let d = llm.decode().expect("decode points");
    assert_eq!((d.kv.first(), d.kv.last()), (Some(&4096), Some(&(1 << 20))));
    assert_eq!((d.batch.first(), d.batch.last()), (Some(&1), Some(&256)));
}

/// Words each tensor of one phase moves: (buffer reads, buffer writes, DRAM reads, DRAM writes).
fn moved(s: &Schedule, phase: usize, tensor: &str) -> (f64, f64, f64, f64) {
    let (_, t) = s.phases[phase]
        .traffic_by_tensor
        .iter()
        .find(|(n, _)| n == tensor)
        .unwrap_or_else(|| panic!("phase {phase} moves no {tensor}"));
    (t.buffer_read, t.buffer_write, t.dram_read, t.dram_write)
}

#[test]
fn flat_passes_tiles_between_its_arrays_through_the_buffer() {
    // BERT at 1K on FLAT (`handoff = "buffer"`): A, which the 1D array writes and the 2D array's
    // AV reads in pass 3, is written to the buffer once and read from it once, M·P words per
    // instance, and holds a 256-key row per resident query. SN, written in pass 2, is summed
    // by SD in the same pass on the same unit from the PE's registers and read from the buffer
    // only by A in pass 3; QK is read by GM (pass 1, the other unit: through the buffer) and SN.
    let (s, _) = scheduled("flat", "attention_3pass", "bert", 1 << 10);
    // The schedule's words are one instance's (a head of one batch element).
    let scores = 1024.0 * 1024.0;
    assert_eq!(moved(&s, 0, "A"), (scores, scores, 0.0, 0.0));
    assert_eq!(moved(&s, 0, "SN"), (scores, scores, 0.0, 0.0));
    assert_eq!(moved(&s, 0, "QK"), (2.0 * scores, scores, 0.0, 0.0));
    let a = s.phases[0].placements.iter().find(|(n, _)| n == "A");
    assert_eq!(
        a.map(|(_, r)| r.clone()),
        Some(Residency::Handoff {
            words_per_query: 256
        })
    );
    // On FuseMax the arrays are linked: nothing of the 2D-to-1D tiles goes through the buffer.
    let (f, _) = scheduled("fusemax", "attention_1pass", "bert", 1 << 10);
    for t in ["BQK", "SLN", "SLNV"] {
        assert!(
            f.phases[0].traffic_by_tensor.iter().all(|(n, _)| n != t),
            "{t}"
        );
    }
}

#[test]
fn a_phase_output_the_mapping_sends_to_dram_passes_the_buffer_by() {
    // Unfused at BERT 1K: by default A is staged in the buffer on its way to DRAM (phase 2) and
    // on its way back (phase 3); with `A = "dram"` it goes straight to DRAM and AV reads it
    // from there, the same DRAM words either way (one instance's).
    let a = arch("unfused");
    let p = problem("bert", 1 << 10);
    let scores = 1024.0 * 1024.0;
    let (s, _) = scheduled("unfused", "attention_3pass", "bert", 1 << 10);
    assert_eq!(moved(&s, 1, "A"), (0.0, scores, 0.0, scores));
    assert_eq!(moved(&s, 2, "A"), (scores, scores, scores, 0.0));
    let m = cascade_scheduler::MappingOverrides::from_toml("[residency]\nA = \"dram\"\n").unwrap();
    let s = match cascade_scheduler::schedule_with(&library("attention_3pass"), &a, &p, &m) {
        Ok(Outcome::Scheduled(s)) => s,
        other => panic!("{other:?}"),
    };
    assert_eq!(moved(&s, 1, "A"), (0.0, 0.0, 0.0, scores));
    assert_eq!(moved(&s, 2, "A"), (0.0, 0.0, scores, 0.0));
    assert!(
        s.mapping
            .residency
            .iter()
            .any(|(t, p)| t == "A" && *p == cascade_scheduler::Placement::Dram),
        "the printed mapping keeps the choice"
    );
}

#[test]
fn an_unknown_handoff_is_refused_with_the_choices() {
    let text = shipped::arch("flat")
        .unwrap()
        .replace("handoff = \"buffer\"", "handoff = \"wire\"");
    let errs = arch_errors(&text);
    assert!(
        errs.iter().any(|e| e.contains("pipeline.handoff")
            && e.contains("`link`")
            && e.contains("`buffer`")),
        "{errs:?}"
    );
}

#[test]
fn the_buffer_leakage_is_given_with_each_characterised_size() {
    // The buffer's static energy depends on its size, so the cost table gives it per SRAM size;
    // the old single `leakage_pj_per_cycle.buffer` is refused with where it went.
    let costs = shipped::costs("accelergy-45nm").unwrap().replace(
        "[leakage_pj_per_cycle]\n",
        "[leakage_pj_per_cycle]\nbuffer = 0.844\n",
    );
    let errs = match parse_arch(shipped::arch("fusemax").unwrap(), |_| Some(costs.clone())) {
        Ok(_) => panic!("accepted"),
        Err(errs) => errs.iter().map(ToString::to_string).collect::<Vec<_>>(),
    };
    assert!(
        errs.iter()
            .any(|e| e.contains("leakage_pj_per_cycle.buffer") && e.contains("buffer.sram")),
        "{errs:?}"
    );
    // A shipped buffer at a characterised size costs CACTI's row over its 256 words.
    let a = arch("flat");
    let (read, write) = a.costs().buffer_word_pj(32 << 20, 16);
    assert!((read - 23854.6 / 256.0).abs() < 1e-9 && (write - 27097.5 / 256.0).abs() < 1e-9);
}

#[test]
fn the_unfused_softmax_takes_one_query_row_at_a_time_when_a_tile_would_spill() {
    // BERT at 256K on Unfused: the softmax phase runs on the 1D array alone. A tile of 256
    // queries would hold 256 × (one 256K-key row of QK or SN across a pass barrier + GM + SD)
    // words, 4× the 16 Mi-word buffer; one query's row fits, so the PEs take one query's keys
    // at a time and the buffer holds 16 Mi / (2^18 + 2) = 63 whole rows: nothing spills, QK
    // is read from DRAM once and SN never goes there.
    let (s, _) = scheduled("unfused", "attention_3pass", "bert", 1 << 18);
    let softmax = &s.phases[1];
    assert_eq!(softmax.row_queries, Some((16u64 << 20) / ((1 << 18) + 2)));
    assert_eq!(softmax.row_queries, Some(63));
    assert_eq!(softmax.spill, 0.0);
    let scores = (1u64 << 18) as f64 * (1u64 << 18) as f64;
    assert_eq!(moved(&s, 1, "QK").2, scores);
    assert_eq!(moved(&s, 1, "SN").2, 0.0);
    // The printed mapping (one resident query tile) schedules the same phase again.
    let printed = cascade_scheduler::MappingOverrides::from_toml(&s.mapping.to_string()).unwrap();
    let again = match cascade_scheduler::schedule_with(
        &library("attention_3pass"),
        &arch("unfused"),
        &problem("bert", 1 << 18),
        &printed,
    ) {
        Ok(Outcome::Scheduled(s)) => s,
        other => panic!("{other:?}"),
    };
    assert_eq!(again.phases[1].row_queries, Some(63));
    assert_eq!(again.phases[1].traffic, s.phases[1].traffic);
    // At 1K a tile of queries fits: the phase keeps its query tiles.
    let (s, _) = scheduled("unfused", "attention_3pass", "bert", 1 << 10);
    assert_eq!(s.phases[1].row_queries, None);
    // FLAT fuses the softmax with the 2D array's Einsums, so it keeps its tiles (and spills).
    let (s, _) = scheduled("flat", "attention_3pass", "bert", 1 << 18);
    assert_eq!(s.phases[0].row_queries, None);
    assert!(s.phases[0].spill > 0.0);
}
