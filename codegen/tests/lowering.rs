//! Which lowering a cascade gets: the fused kernel is chosen by the Einsums' structure and
//! dataflow (renamed tensors and reordered operands still fuse), anything else is generic.

mod common;

use cascade_codegen::{DType, GpuSchedule, Lowering, Target, plan};
use cascade_ir::library;

fn schedule() -> GpuSchedule {
    GpuSchedule::suggested(Target::Cuda, DType::Bf16, 128)
}

fn lib(name: &str) -> String {
    library::source(name).expect("library cascade").to_string()
}

/// Renames every intermediate tensor of a cascade source (whole words only).
fn rename(source: &str, pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let replaced = pairs
            .iter()
            .find(|(a, _)| a == word)
            .map_or(word.as_str(), |(_, b)| b);
        out.push_str(replaced);
        word.clear();
    };
    for ch in source.chars() {
        if ch.is_ascii_alphanumeric() || ch == '_' {
            word.push(ch);
        } else {
            flush(&mut word, &mut out);
            out.push(ch);
        }
    }
    flush(&mut word, &mut out);
    out
}

fn fused_expressions(source: &str) -> Vec<String> {
    let c = common::parse(source, "test");
    match plan(&c, &schedule(), Target::Cuda).expect("plan").lowering {
        Lowering::Fused(p) => vec![
            p.rm_update,
            p.sln_expr,
            p.prm_expr,
            p.rd_update,
            p.rnv_rescale,
            p.out_expr,
            p.mask_elem,
            p.score_expr,
        ],
        Lowering::Generic(g) => panic!("not fused: {}", g.why_not_fused),
    }
}

fn why_not_fused(source: &str) -> String {
    let c = common::parse(source, "test");
    match plan(&c, &schedule(), Target::Cuda).expect("plan").lowering {
        Lowering::Fused(_) => panic!("fused unexpectedly"),
        Lowering::Generic(g) => g.why_not_fused,
    }
}

#[test]
fn the_fused_kernel_is_rendered_from_the_cascade_expressions() {
    let exprs = fused_expressions(&lib("attention_causal_1pass"));
    assert_eq!(exprs[0], "fmaxf(rm_old, lm)");
    assert_eq!(exprs[1], "cascade_subexp(s_val, rm_new)");
    assert_eq!(exprs[2], "cascade_subexp(rm_old, rm_new)");
    assert_eq!(exprs[3], "(sld + (rd_old * prm))");
    assert_eq!(exprs[4], "(o_old * prm)");
    assert_eq!(exprs[5], "cascade_div(o_fin, rd_fin)");
    assert_eq!(
        exprs[6],
        "(((tile * BLOCK_N) + col) <= row_p) && (((tile * BLOCK_N) + col) < n_keys)"
    );
}

#[test]
fn renamed_tensors_fuse_to_the_same_kernel() {
    let pairs = [
        ("BQK", "S"),
        ("LM", "TileMax"),
        ("RM", "Run"),
        ("SLN", "Num"),
        ("SLD", "Den"),
        ("SLNV", "NumV"),
        ("PRM", "Fix"),
        ("SPD", "D2"),
        ("RD", "Denom"),
        ("SPNV", "N2"),
        ("RNV", "Acc"),
        ("AV", "Out"),
        ("BK", "KT"),
        ("BV", "VT"),
        ("Q", "X"),
        ("K", "Y"),
        ("V", "Z"),
    ];
    let renamed = rename(&lib("attention_causal_1pass"), &pairs);
    assert!(
        renamed.contains("max(m0) S[m1,m0,p]") && !renamed.contains("BQK"),
        "{renamed}"
    );
    assert_eq!(
        fused_expressions(&renamed),
        fused_expressions(&lib("attention_causal_1pass"))
    );
}

#[test]
fn reordered_operands_and_inlined_products_still_fuse() {
    let src = lib("attention_1pass")
        .replace("max(RM[m1,p], LM[m1,p])", "max(LM[m1,p], RM[m1,p])")
        .replace("SLD[m1,p] + SPD[m1,p]", "RD[m1,p] * PRM[m1,p] + SLD[m1,p]")
        .replace("SPD[m1,p]     = RD[m1,p] * PRM[m1,p]\n", "")
        .replace("SLN[m1,m0,p] * BV[f,m1,m0]", "BV[f,m1,m0] * SLN[m1,m0,p]");
    let exprs = fused_expressions(&src);
    assert_eq!(exprs[0], "fmaxf(lm, rm_old)");
    assert_eq!(exprs[3], "((rd_old * prm) + sld)");
}

#[test]
fn the_rewriters_one_pass_derivation_fuses() {
    let exprs = fused_expressions(include_str!("data/attention_rewritten_1pass.cascade"));
    assert_eq!(exprs[3], "((rd_old * prm) + sld)");
    assert_eq!(exprs[4], "(o_old * prm)");
}

#[test]
fn an_additive_bias_fuses_into_the_scores() {
    let exprs = fused_expressions(&lib("attention_masked_1pass"));
    assert_eq!(exprs[7], "(s_qk + bias_val)");
    // A bias added with ∪ next to a filter would make filtered scores present: not fused.
    let src = lib("attention_masked_1pass").replace(
        "Q[e,p] * BK[e,m1,m0]",
        "Q[e,p] * BK[e,m1,m0 : m1*M0+m0 <= p]",
    );
    assert!(
        why_not_fused(&src).contains("bias"),
        "{}",
        why_not_fused(&src)
    );
}

#[test]
fn cascades_without_the_online_softmax_structure_use_the_generic_lowering() {
    assert!(why_not_fused(&lib("attention_3pass")).contains("iterative rank"));
    // An extra Einsum the kernel would not compute blocks fusion rather than being dropped.
    let extra = lib("attention_1pass").replace(
        "AV[f,p]       =",
        "EXTRA[m1,p]   = LM[m1,p] * LM[m1,p]\nAV[f,p]       =",
    );
    assert!(
        why_not_fused(&extra).contains("has no role"),
        "{}",
        why_not_fused(&extra)
    );
    // The running max must be max(RM, LM); min does not fuse.
    let wrong =
        lib("attention_1pass").replace("max(RM[m1,p], LM[m1,p])", "min(RM[m1,p], LM[m1,p])");
    assert!(!why_not_fused(&wrong).is_empty());
}

#[test]
fn schedules_that_do_not_fit_are_errors_naming_the_field() {
    let c = common::parse(&lib("attention_1pass"), "attention_1pass");
    let cases = [
        (
            GpuSchedule {
                block_m: 48,
                ..schedule()
            },
            Target::Cuda,
            "block_m",
        ),
        (
            GpuSchedule {
                stages: 3,
                ..schedule()
            },
            Target::Cuda,
            "stages",
        ),
        (
            GpuSchedule {
                block_n: 24,
                ..schedule()
            },
            Target::Cuda,
            "block_n",
        ),
        // 64 query rows and two 256-key stages at head dim 128 overflow shared memory.
        (
            GpuSchedule {
                block_n: 256,
                ..schedule()
            },
            Target::Cuda,
            "block_n",
        ),
        (
            GpuSchedule {
                block_n: 64,
                ..GpuSchedule::suggested(Target::Hip, DType::Bf16, 128)
            },
            Target::Hip,
            "block_n",
        ),
        (
            GpuSchedule::suggested(Target::Cpp, DType::Bf16, 128),
            Target::Cpp,
            "dtype",
        ),
    ];
    for (s, target, field) in cases {
        let err = plan(&c, &s, target).expect_err(field).to_string();
        assert!(
            err.contains(&format!("schedule field `{field}`")),
            "{field}: {err}"
        );
    }
}

#[test]
fn filters_the_fused_kernel_cannot_honour_send_the_cascade_to_the_generic_lowering() {
    let one_pass = lib("attention_1pass");
    let cases = [
        // An output filter off the scores: the fused kernel would ignore it.
        (
            one_pass.replace("AV[f,p]       =", "AV[f,p : p != 2] ="),
            "filters its output",
        ),
        // A filter on the values drops terms of the numerator only.
        (
            one_pass.replace("* BV[f,m1,m0]", "* BV[f,m1,m0 : m0 != 1]"),
            "the value operand is filtered",
        ),
        // A score filter over the head dimension is not a mask over keys and queries.
        (
            one_pass.replace("Q[e,p] * BK", "Q[e,p : e < 8] * BK"),
            "masks over m1, m0 and p only",
        ),
    ];
    for (source, why) in cases {
        assert!(source != one_pass, "the edit for `{why}` no longer applies");
        let reason = why_not_fused(&source);
        assert!(reason.contains(why), "{why}: {reason}");
    }
}

#[test]
fn tile_classification_is_sound_for_equalities() {
    let src = lib("attention_1pass").replace("* BK[e,m1,m0]\n", "* BK[e,m1,m0 : m1*M0+m0 != p]\n");
    let c = common::parse(&src, "no_self");
    let Lowering::Fused(p) = plan(&c, &schedule(), Target::Cuda).expect("plan").lowering else {
        panic!("not fused");
    };
    let state = p.tile_state.join("\n");
    // `m != p` fails everywhere only where m - p is 0 over the whole tile, holds everywhere only
    // where the tile's m - p excludes 0: a diagonal tile is partial, never full.
    assert!(
        state.contains("if (c0_0_lo == 0 && c0_0_hi == 0) return TILE_SKIP;")
            && state.contains("full = full && (c0_0_lo > 0 || c0_0_hi < 0);"),
        "{state}"
    );
    assert!(
        p.mask_elem
            .starts_with("(((tile * BLOCK_N) + col) != row_p)"),
        "{}",
        p.mask_elem
    );
}

#[test]
fn extreme_schedules_are_errors_not_panics() {
    let c = common::parse(&lib("attention_1pass"), "attention_1pass");
    for target in Target::ALL {
        let base = GpuSchedule::suggested(target, DType::F32, 64);
        let odd = [
            GpuSchedule {
                head_dim: u32::MAX - 15,
                ..base
            },
            GpuSchedule { warps: 0, ..base },
            GpuSchedule {
                warps: u32::MAX,
                block_m: u32::MAX,
                ..base
            },
            GpuSchedule {
                block_n: u32::MAX - 15,
                ..base
            },
        ];
        for s in odd {
            for fuse in [true, false] {
                let s = GpuSchedule { fuse, ..s };
                // Either a plan or an error naming a field; reaching here means no panic.
                if let Err(e) = plan(&c, &s, target) {
                    assert!(e.to_string().contains("schedule field"), "{target}: {e}");
                }
            }
        }
    }
}
