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

/// The fused kernel's code rendered from the cascade: the scores on the fast and the general
/// path, each element output's value, and the tile classifier.
fn fused_expressions(source: &str) -> Vec<String> {
    let c = common::parse(source, "test");
    match plan(&c, &schedule(), Target::Cuda).expect("plan").lowering {
        Lowering::Fused(p) => vec![
            p.score_fast.join("\n"),
            p.score_general.join("\n"),
            p.elem_outputs
                .iter()
                .map(|o| o.value.clone())
                .collect::<Vec<_>>()
                .join("\n"),
            p.classify.join("\n"),
        ],
        Lowering::Generic(g) => panic!("not fused: {}", g.why_not_fused),
    }
}

/// The launcher statements that fill the kernel's arguments.
fn launcher_setup(source: &str) -> String {
    let c = common::parse(source, "test");
    match plan(&c, &schedule(), Target::Cuda).expect("plan").lowering {
        Lowering::Fused(p) => p.args_setup.join("\n"),
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
    // Q·K alone: log2(e) is the whole folded scale, set once by the launcher.
    assert_eq!(exprs[0], "sv = qk * a.score_scale;");
    let setup = launcher_setup(&lib("attention_causal_1pass"));
    assert!(
        setup.contains("a.score_scale = 1.4426950408889634f;"),
        "{setup}"
    );
    // The causal filter is atom 0: tested per score only where its tile state is partial.
    assert_eq!(
        exprs[1],
        "const bool a0 = st[0] == TILE_FULL || (st[0] == TILE_PARTIAL && (key <= row_p));\nsv = (key < k_end && a0) ? qk * a.score_scale : -INFINITY;"
    );
    assert!(exprs[3].contains("// m <= p"), "{}", exprs[3]);
    // RNV / RD: one reciprocal per row, 0/0 = 0 kept.
    assert_eq!(
        exprs[2],
        "const float ov = (rowe[r][0] == 0.0f && o_fin == 0.0f) ? 0.0f : o_fin * rowe[r][1];"
    );
    // The 3-pass form of the same attention is the same kernel.
    let three = lib("attention_3pass").replace("K[e,m]", "K[e, m : m <= p]");
    assert_eq!(fused_expressions(&three), exprs);
}

#[test]
fn score_constants_fold_into_one_multiplier_and_other_scores_render_as_written() {
    // 1/sqrt(E) folds with log2(e) into the launcher's constant.
    let scaled = lib("attention_3pass").replace("Q[e,p] * K[e,m]", "Q[e,p] * K[e,m] * 1/sqrt(E)");
    let exprs = fused_expressions(&scaled);
    assert_eq!(exprs[0], "sv = qk * a.score_scale;");
    let setup = launcher_setup(&scaled);
    assert!(
        setup.contains("a.score_scale = (1.0f / sqrtf((float)s_E)) * 1.4426950408889634f;"),
        "{setup}"
    );
    // A per-query temperature is a per-row multiplier.
    let temp = lib("attention_3pass")
        .replace("V[F,M]", "V[F,M] T[P]")
        .replace("Q[e,p] * K[e,m]", "Q[e,p] * K[e,m] * T[p]");
    assert_eq!(fused_expressions(&temp)[0], "sv = qk * rowv[r][1];");
    // Soft-capping is computed per score from the cascade's own expression.
    let capped = lib("attention_3pass")
        .replace(
            "GM[p]   = max(m) QK[m,p]",
            "S[m,p]  = tanh(QK[m,p] / 5.0) * 5.0\nGM[p]   = max(m) S[m,p]",
        )
        .replace("exp(QK[m,p] - GM[p])", "exp(S[m,p] - GM[p])");
    assert_eq!(
        fused_expressions(&capped)[0],
        "sv = ((tanhf(cascade_div(qk, 5.0f)) * 5.0f)) * 1.4426950408889634f;"
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
    assert_eq!(
        fused_expressions(&src),
        fused_expressions(&lib("attention_1pass"))
    );
}

#[test]
fn the_rewriters_one_pass_derivation_fuses() {
    assert_eq!(
        fused_expressions(include_str!("data/attention_rewritten_1pass.cascade")),
        fused_expressions(&lib("attention_1pass"))
    );
}

#[test]
fn an_additive_bias_fuses_into_the_scores() {
    let exprs = fused_expressions(&lib("attention_masked_1pass"));
    assert_eq!(
        exprs[0],
        "sv = ((qk + ((key < a.s_M && row_p < a.s_P) ? to_f(a.in_MASK[bz * (a.s_M * a.s_P) + key + a.s_M * (row_p)]) : 0.0f))) * 1.4426950408889634f;"
    );
    // A bias added with ∪ next to a filter makes the filtered scores present as the bias alone
    // (the masking trap, which lint warns about): the kernel computes exactly that.
    let src = lib("attention_masked_1pass").replace(
        "Q[e,p] * BK[e,m1,m0]",
        "Q[e,p] * BK[e,m1,m0 : m1*M0+m0 <= p]",
    );
    let general = &fused_expressions(&src)[1];
    assert!(
        general.contains("sv = (key < k_end) ? ((a0 ? (qk + ") && general.contains(": (0.0f + "),
        "{general}"
    );
}

#[test]
fn cascades_without_the_online_softmax_structure_use_the_generic_lowering() {
    assert!(
        why_not_fused(&lib("linear_attention")).contains("which is computed"),
        "{}",
        why_not_fused(&lib("linear_attention"))
    );
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
        // An output filter inside the loop: the fused kernel honours filters on the scores
        // and the outputs only.
        (
            one_pass.replace("LM[m1,p]      =", "LM[m1,p : p != 2] ="),
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
            "filters the contracted rank",
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
    let state = p.classify.join("\n");
    // `m != p` fails everywhere only where m - p is 0 over the whole tile, holds everywhere only
    // where the tile's m - p excludes 0: a diagonal tile is partial, never full.
    assert!(
        state.contains(
            "st[0] = (c0_0_lo == 0 && c0_0_hi == 0) ? TILE_SKIP : ((c0_0_lo > 0 || c0_0_hi < 0) ? TILE_FULL : TILE_PARTIAL);"
        ),
        "{state}"
    );
    assert!(
        p.score_general[0].ends_with("(st[0] == TILE_PARTIAL && (key != row_p));"),
        "{:?}",
        p.score_general
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
