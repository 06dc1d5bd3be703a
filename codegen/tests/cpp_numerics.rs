//! The `cpp` target, built with g++, against the reference interpreter on random inputs:
//! every library cascade (fused and generic lowerings), masked and rewritten variants, and
//! each example of the issue "one meaning per cascade in every stage" as its own case.
//! Every kernel that is emitted must match the interpreter; what a lowering cannot handle is
//! refused with a message that names the problem.

mod common;

use std::collections::BTreeMap;

use cascade_ir::reference::{self, AttentionMask};
use cascade_ir::{Cascade, library};
use common::cpp::{Case, Expect, check_all, declared};
use ndarray::{ArrayD, Ix2};

/// The library's sizes: head dims 16, 48 keys in tiles of 16, 40 queries, window 5.
const LIBRARY_SIZES: &str = "E=16,F=16,M=48,P=40,W=5,M0=16,K=48";

/// Ragged sizes: 50 keys and 37 queries are multiples of no kernel tile (16), and the split
/// `M -> M1 M0` is left to the interpreter's default (M0 = gcd(50, 64) = 2).
const RAGGED: &str = "E=16,F=16,M=50,P=37";

fn lib(name: &str) -> String {
    library::source(name).expect("library cascade").to_string()
}

/// `base` with each `(from, to)` edit applied (each must apply) and the cascade renamed.
fn variant(base: &str, name: &str, edits: &[(&str, &str)]) -> Cascade {
    let mut source = base.to_string();
    for (from, to) in edits {
        assert!(
            source.contains(from),
            "{name}: `{from}` is not in the source"
        );
        source = source.replacen(from, to, 1);
    }
    let header = source
        .lines()
        .find(|l| l.starts_with("cascade "))
        .expect("a cascade line")
        .to_string();
    let source = source.replacen(&header, &format!("cascade {name}"), 1);
    common::parse(&source, name)
}

/// The 1-pass cascade with `cond` filtering the keys of the score product.
fn score_filter(name: &str, cond: &str) -> Cascade {
    variant(
        &lib("attention_1pass"),
        name,
        &[(
            "Q[e,p] * BK[e,m1,m0]",
            &format!("Q[e,p] * BK[e,m1,m0 : {cond}]"),
        )],
    )
}

fn causal_reference(inputs: &BTreeMap<String, ArrayD<f64>>) -> ArrayD<f64> {
    let v2 = |n: &str| inputs[n].view().into_dimensionality::<Ix2>().expect("2-D");
    let mask = AttentionMask {
        causal: true,
        ..AttentionMask::none()
    };
    reference::attention(v2("Q"), v2("K"), v2("V"), &mask).into_dyn()
}

#[test]
fn cpp_target_matches_the_interpreter_on_every_library_cascade() {
    // Every attention form fuses (1-pass, 3-pass, deferred, split-K, sigmoid); linear
    // attention and the pedagogical reductions are not attention.
    let generic = [
        "linear_attention",
        "pedagogical_1",
        "pedagogical_2",
        "pedagogical_3",
    ];
    let mut cases: Vec<Case> = common::library()
        .into_iter()
        .map(|c| {
            let expect = if generic.contains(&c.name.as_str()) {
                Expect::Generic
            } else {
                Expect::Fused
            };
            let sizes = declared(&c, LIBRARY_SIZES);
            Case::new(&c.name.clone(), c, &sizes, expect)
        })
        .collect();
    let sizes = |c: &Cascade| declared(c, LIBRARY_SIZES);
    // The causal mask added by the schedule (not written in the cascade), against a direct reference.
    let base = common::parse(&lib("attention_1pass"), "attention_1pass");
    let mut causal = Case::new(
        "attention_1pass+causal",
        base.clone(),
        &sizes(&base),
        Expect::Fused,
    );
    causal.schedule.causal = true;
    causal.reference = Some(causal_reference);
    cases.push(causal);
    // A 1-pass sliding-window variant: the window filter fuses like the causal one.
    let window = common::window_1pass();
    cases.push(Case::new(
        "attention_window_1pass",
        window.clone(),
        &sizes(&window),
        Expect::Fused,
    ));
    // Strictly causal: query 0 sees no key, so its row must be zeros (never NaN).
    let strict = variant(
        &lib("attention_causal_1pass"),
        "attention_strict_causal_1pass",
        &[("m1*M0+m0 <= p]", "m1*M0+m0 < p]")],
    );
    cases.push(Case::new(
        "attention_strict_causal_1pass",
        strict.clone(),
        &sizes(&strict),
        Expect::Fused,
    ));
    // Reordered operands, an inlined rescale product and a 1/sqrt(E) score scale still fuse.
    let scaled = variant(
        &lib("attention_1pass"),
        "attention_scaled_1pass",
        &[
            ("Q[e,p] * BK[e,m1,m0]", "Q[e,p] * BK[e,m1,m0] * 1/sqrt(E)"),
            ("max(RM[m1,p], LM[m1,p])", "max(LM[m1,p], RM[m1,p])"),
            ("SLD[m1,p] + SPD[m1,p]", "RD[m1,p] * PRM[m1,p] + SLD[m1,p]"),
            ("SPD[m1,p]     = RD[m1,p] * PRM[m1,p]\n", ""),
        ],
    );
    cases.push(Case::new(
        "attention_scaled_1pass",
        scaled.clone(),
        &sizes(&scaled),
        Expect::Fused,
    ));
    // -inf in the additive mask, with one query masked entirely: zeros, never NaN.
    let masked = common::parse(&lib("attention_masked_1pass"), "attention_masked_1pass");
    cases.push(
        Case::new(
            "attention_masked_1pass-inf",
            masked.clone(),
            &sizes(&masked),
            Expect::Fused,
        )
        .poison("MASK"),
    );
    // The rewriter's 1-pass derivation of attention_3pass (other names and operand orders).
    let rewritten = common::parse(
        include_str!("data/attention_rewritten_1pass.cascade"),
        "attention_rewritten_1pass",
    );
    cases.push(Case::new(
        "attention_rewritten_1pass",
        rewritten.clone(),
        &sizes(&rewritten),
        Expect::Fused,
    ));
    // exp((a - b)) written as exp of a subtraction keeps the -inf rule on the generic path: with
    // -inf in the bias a row's running max stays -inf while its denominator is a present 0.
    let exp_of_sub = variant(
        &lib("attention_masked_1pass"),
        "attention_exp_of_sub",
        &[("exp(RM[m1,p] - RM[m1+1,p])", "exp((RM[m1,p] - RM[m1+1,p]))")],
    );
    cases.push(
        Case::new(
            "attention_exp_of_sub",
            exp_of_sub.clone(),
            &sizes(&exp_of_sub),
            Expect::Generic,
        )
        .poison("MASK"),
    );
    // The generic lowering of the fused cascades: iterative ranks, filters and -inf on the slow path.
    for (label, c, poison) in [
        ("attention_1pass", base, None),
        (
            "attention_causal_1pass",
            common::parse(&lib("attention_causal_1pass"), "attention_causal_1pass"),
            None,
        ),
        ("attention_window_1pass", window, None),
        ("attention_masked_1pass-inf", masked, Some("MASK")),
    ] {
        let mut case = Case::new(
            &format!("{label}-generic"),
            c.clone(),
            &sizes(&c),
            Expect::Generic,
        )
        .no_fuse();
        case.poison = poison;
        cases.push(case);
    }
    check_all(&cases);
}

/// One case per example of the issue, each compared with the interpreter (or refused).
#[test]
fn issue_examples_match_the_interpreter_or_are_refused() {
    let mut cases = Vec::new();
    let one_pass = lib("attention_1pass");

    // Post-loop order: an Einsum after the loop that reads only post-loop tensors runs after it
    // (the fused kernel inlines it into its epilogue).
    let doubled = variant(
        &one_pass,
        "attention_1pass_doubled",
        &[
            (
                "AV[f,p]       = RNV[f,M1,p] / RD[M1,p]\n",
                "AV[f,p]       = RNV[f,M1,p] / RD[M1,p]\nOUT[f,p]      = AV[f,p] * 2.0\n",
            ),
            ("output AV", "output OUT"),
        ],
    );
    cases.push(Case::new(
        "post_loop_order",
        doubled.clone(),
        RAGGED,
        Expect::Fused,
    ));
    cases.push(Case::new("post_loop_order_generic", doubled, RAGGED, Expect::Generic).no_fuse());

    // A pre-loop full reduction over the iterative rank's parent beside the fold, and a
    // post-loop reduction over the iterative rank itself.
    let beside = variant(
        &one_pass,
        "attention_1pass_beside",
        &[
            (
                "AV[f,p]       = RNV[f,M1,p] / RD[M1,p]\n",
                "AV[f,p]       = RNV[f,M1,p] / RD[M1,p]\nMX[e]         = max(m) K[e,m]\nTOT[p]        = LM[m1,p]\n",
            ),
            ("output AV", "output AV MX TOT"),
        ],
    );
    cases.push(Case::new(
        "pre_loop_max_and_post_loop_sum",
        beside,
        RAGGED,
        Expect::Generic,
    ));

    // GQA: `split H -> G R` takes its sizes from the problem (G = 2 groups of R = 2 heads).
    let gqa = common::parse(GQA_3PASS, "gqa_3pass");
    cases.push(Case::new(
        "gqa_two_groups",
        gqa.clone(),
        "E=16,F=16,M=23,P=9,H=4,G=2",
        Expect::Fused,
    ));
    cases.push(
        Case::new(
            "gqa_two_groups_generic",
            gqa.clone(),
            "E=16,F=16,M=23,P=9,H=4,G=2",
            Expect::Generic,
        )
        .no_fuse(),
    );
    // Only H given: the launcher gets R = 0 and picks gcd(4, 64) = 4, one group, as `eval` does.
    cases.push(Case::new(
        "gqa_default_split",
        gqa,
        "E=16,F=16,M=23,P=9,H=4",
        Expect::Fused,
    ));

    // Filters with == and != on the fused kernel's scores, and filters over m or p alone.
    for (label, cond) in [
        ("fused_m_ne_p", "m1*M0+m0 != p"),
        ("fused_m_ne_5", "m1*M0+m0 != 5"),
        ("fused_m_lt_5_and_ne_2", "m1*M0+m0 < 5 && m1*M0+m0 != 2"),
        ("fused_m_between", "m1*M0+m0 >= 3 && m1*M0+m0 <= 20"),
    ] {
        cases.push(Case::new(
            label,
            score_filter(label, cond),
            RAGGED,
            Expect::Fused,
        ));
    }
    // m == p with more queries than keys: rows 20.. see no key and must be zeros.
    let eq = score_filter("fused_m_eq_p", "m1*M0+m0 == p");
    cases.push(Case::new(
        "fused_m_eq_p",
        eq.clone(),
        "E=16,F=16,M=20,P=37",
        Expect::Fused,
    ));
    cases.push(Case::new("generic_m_eq_p", eq, "E=16,F=16,M=20,P=37", Expect::Generic).no_fuse());
    cases.push(
        Case::new(
            "generic_m_ne_p",
            score_filter("generic_m_ne_p", "m1*M0+m0 != p"),
            RAGGED,
            Expect::Generic,
        )
        .no_fuse(),
    );
    // m0 and m1 on their own follow the cascade's M0 (5 here), not the kernel's 16-key tile.
    for (label, cond) in [("fused_m0_ne_0", "m0 != 0"), ("fused_m1_ne_1", "m1 != 1")] {
        let sizes = "E=16,F=16,M=50,P=37,M0=5";
        cases.push(Case::new(
            label,
            score_filter(label, cond),
            sizes,
            Expect::Fused,
        ));
    }
    cases.push(
        Case::new(
            "generic_m0_ne_0",
            score_filter("generic_m0_ne_0", "m0 != 0"),
            "E=16,F=16,M=50,P=37,M0=5",
            Expect::Generic,
        )
        .no_fuse(),
    );
    // Causal without the diagonal (via !=): query 0 sees no key.
    let no_self = variant(
        &lib("attention_causal_1pass"),
        "attention_causal_no_self",
        &[("m1*M0+m0 <= p]", "m1*M0+m0 <= p && m1*M0+m0 != p]")],
    );
    cases.push(Case::new(
        "fused_causal_ne_p",
        no_self,
        RAGGED,
        Expect::Fused,
    ));
    // A query filter over p alone: query 3 sees nothing.
    let q_filter = variant(
        &one_pass,
        "attention_q_filter",
        &[("Q[e,p] * BK", "Q[e,p : p != 3] * BK")],
    );
    cases.push(Case::new("fused_p_ne_3", q_filter, RAGGED, Expect::Fused));

    // Output filters: absent where they fail; a variable only an output filter uses is reduced.
    let outputs = common::parse(OUTPUT_FILTERS, "output_filters");
    cases.push(Case::new(
        "output_filters",
        outputs,
        "M=7,P=5",
        Expect::Generic,
    ));
    // On the scores the fused kernel honours an output filter as a mask...
    let out_mask = variant(
        &one_pass,
        "attention_out_mask",
        &[("BQK[m1,m0,p]  = Q", "BQK[m1,m0,p : m1*M0+m0 <= p]  = Q")],
    );
    cases.push(Case::new(
        "fused_output_filter_on_scores",
        out_mask,
        RAGGED,
        Expect::Fused,
    ));
    // ...and on the output as a condition of its epilogue (absent rows are written as 0).
    let out_av = variant(
        &one_pass,
        "attention_out_av",
        &[("AV[f,p]       =", "AV[f,p : p != 2] =")],
    );
    cases.push(Case::new(
        "output_filter_on_av",
        out_av.clone(),
        RAGGED,
        Expect::Fused,
    ));
    cases.push(
        Case::new(
            "output_filter_on_av_generic",
            out_av,
            RAGGED,
            Expect::Generic,
        )
        .no_fuse(),
    );

    // Out-of-range reads: refused unless a filter keeps the index inside.
    let shift = |name: &str, value: &str| {
        common::parse(
            &format!("cascade {name}\nranks M\ninput A[M]\nY[m] = {value}\noutput Y\n"),
            name,
        )
    };
    cases.push(Case::new(
        "read_below",
        shift("read_below", "A[m-1]"),
        "M=9",
        Expect::Refused("may be negative"),
    ));
    cases.push(Case::new(
        "read_above",
        shift("read_above", "A[m+1]"),
        "M=9",
        Expect::Refused("may reach the extent"),
    ));
    cases.push(Case::new(
        "read_below_filtered",
        shift("read_below_filtered", "A[m-1 : m >= 1]"),
        "M=9",
        Expect::Generic,
    ));
    cases.push(Case::new(
        "read_above_filtered",
        shift("read_above_filtered", "A[m+1 : m+1 < M]"),
        "M=9",
        Expect::Generic,
    ));
    let diagonal = common::parse(DIAGONAL, "diagonal");
    cases.push(Case::new(
        "read_two_variables_filtered",
        diagonal,
        "M=6,N=4",
        Expect::Generic,
    ));

    // Explicit merges: ∩ after a causal-masked score, fused and generic; every merge generic.
    let and_bias = variant(
        &lib("attention_masked_1pass"),
        "attention_masked_causal_and",
        &[
            (
                "Q[e,p] * BK[e,m1,m0]",
                "Q[e,p] * BK[e,m1,m0 : m1*M0+m0 <= p]",
            ),
            ("BQK[m1,m0,p] + BMASK", "BQK[m1,m0,p] +{&} BMASK"),
        ],
    );
    cases.push(
        Case::new(
            "fused_and_merge_bias",
            and_bias.clone(),
            RAGGED,
            Expect::Fused,
        )
        .poison("MASK"),
    );
    cases.push(
        Case::new("generic_and_merge_bias", and_bias, RAGGED, Expect::Generic)
            .no_fuse()
            .poison("MASK"),
    );
    let and_3pass = variant(
        &lib("attention_masked_3pass"),
        "attention_masked_3pass_and",
        &[
            ("K[e,m]", "K[e,m : m <= p]"),
            ("QK[m,p] + MASK[m,p]", "QK[m,p] +{&} MASK[m,p]"),
        ],
    );
    cases.push(
        Case::new(
            "fused_and_merge_3pass",
            and_3pass.clone(),
            RAGGED,
            Expect::Fused,
        )
        .poison("MASK"),
    );
    cases.push(
        Case::new(
            "generic_and_merge_3pass",
            and_3pass,
            RAGGED,
            Expect::Generic,
        )
        .no_fuse()
        .poison("MASK"),
    );
    // A ∪-added bias beside a causal filter: masked keys come back with the bias alone as
    // their score (the masking trap lint warns about); the fused kernel computes exactly that.
    let union_bias = variant(
        &lib("attention_masked_1pass"),
        "attention_masked_causal_union",
        &[(
            "Q[e,p] * BK[e,m1,m0]",
            "Q[e,p] * BK[e,m1,m0 : m1*M0+m0 <= p]",
        )],
    );
    cases.push(Case::new(
        "fused_union_bias_beside_filter",
        union_bias,
        RAGGED,
        Expect::Fused,
    ));
    // A runtime softmax scale (a scalar input) and a per-query temperature.
    let tau = common::parse(RUNTIME_SCALE, "runtime_scale");
    cases.push(Case::new(
        "fused_runtime_scale",
        tau.clone(),
        RAGGED,
        Expect::Fused,
    ));
    cases.push(Case::new("generic_runtime_scale", tau, RAGGED, Expect::Generic).no_fuse());
    // The running max and sum as outputs beside AV (log-sum-exp = MX + log SM).
    let lse = common::parse(ROW_OUTPUTS, "row_outputs");
    cases.push(Case::new(
        "fused_row_outputs",
        lse.clone(),
        RAGGED,
        Expect::Fused,
    ));
    cases.push(Case::new("generic_row_outputs", lse, RAGGED, Expect::Generic).no_fuse());
    // BSHD: the head varies faster than the position in Q, K, V and the output.
    let bshd = common::parse(BSHD_3PASS, "bshd_3pass");
    cases.push(Case::new(
        "fused_bshd_heads",
        bshd,
        "E=16,F=16,M=23,P=9,H=3",
        Expect::Fused,
    ));
    let merges = common::parse(MERGES, "merges");
    cases.push(Case::new("every_merge", merges, "K=8", Expect::Generic));

    // Ragged lengths and shapes the launcher must reject as the interpreter does.
    let one = common::parse(&one_pass, "attention_1pass");
    cases.push(Case::new(
        "ragged_fused",
        one.clone(),
        RAGGED,
        Expect::Fused,
    ));
    cases.push(Case::new("ragged_generic", one.clone(), RAGGED, Expect::Generic).no_fuse());
    let bad_split = "E=16,F=16,M=48,P=40,M0=7";
    cases.push(Case::new(
        "m0_not_dividing_fused",
        one.clone(),
        bad_split,
        Expect::ShapeError,
    ));
    cases.push(
        Case::new(
            "m0_not_dividing_generic",
            one,
            bad_split,
            Expect::ShapeError,
        )
        .no_fuse(),
    );

    // Refusals: an output point several iteration points write, and an unreachable stop.
    let scatter = common::parse(SCATTER, "scatter");
    cases.push(Case::new(
        "several_writers_of_a_point",
        scatter,
        "M=4,N=3",
        Expect::Refused("may write the same point"),
    ));
    let early = common::parse(EARLY_STOP, "early_stop");
    cases.push(Case::new(
        "stop_before_the_end",
        early,
        "K=8",
        Expect::Refused("may not hold by k = K"),
    ));

    check_all(&cases);
}

/// The interpreter itself fails on the reads the generic lowering refuses: the refusal
/// replaces an error, never a result.
#[test]
fn refused_reads_are_interpreter_errors() {
    for value in ["A[m-1]", "A[m+1]"] {
        let c = common::parse(
            &format!("cascade r\nranks M\ninput A[M]\nY[m] = {value}\noutput Y\n"),
            "r",
        );
        let shape = cascade_ir::Shape::resolve(&c, &"M=9".parse().expect("sizes")).expect("shape");
        let inputs = reference::random_inputs(&c, &shape, 1);
        let err = cascade_ir::eval::evaluate::<f64>(&c, &shape, &inputs).expect_err(value);
        assert!(
            matches!(err, cascade_ir::eval::EvalError::IndexOutOfBounds { .. }),
            "{value}: {err}"
        );
    }
}

/// The scores scaled at run time by a scalar input.
const RUNTIME_SCALE: &str = "cascade runtime_scale
ranks E F M P
input Q[E,P] K[E,M] V[F,M] TAU

QK[m,p] = Q[e,p] * K[e, m : m <= p] * TAU
GM[p]   = max(m) QK[m,p]
SN[m,p] = exp(QK[m,p] - GM[p])
SD[p]   = SN[m,p]
A[m,p]  = SN[m,p] / SD[p]
AV[f,p] = A[m,p] * V[f,m]

output AV
";

/// The 1-pass form with its final max and sum as outputs.
const ROW_OUTPUTS: &str = "cascade row_outputs
ranks E F M P
split M -> M1 M0
input Q[E,P] K[E,M] V[F,M]

init
BK[e,m1,m0] = K[e, m1*M0+m0]
BV[f,m1,m0] = V[f, m1*M0+m0]
RM[0,p]     = -inf
RD[0,p]     = 0
RNV[f,0,p]  = 0

einsums
BQK[m1,m0,p]  = Q[e,p] * BK[e,m1,m0 : m1*M0+m0 <= p] * 1/sqrt(E)
LM[m1,p]      = max(m0) BQK[m1,m0,p]
RM[m1+1,p]    = max(RM[m1,p], LM[m1,p])
SLN[m1,m0,p]  = exp(BQK[m1,m0,p] - RM[m1+1,p])
SLD[m1,p]     = SLN[m1,m0,p]
SLNV[f,m1,p]  = SLN[m1,m0,p] * BV[f,m1,m0]
PRM[m1,p]     = exp(RM[m1,p] - RM[m1+1,p])
SPD[m1,p]     = RD[m1,p] * PRM[m1,p]
RD[m1+1,p]    = SLD[m1,p] + SPD[m1,p]
SPNV[f,m1,p]  = RNV[f,m1,p] * PRM[m1,p]
RNV[f,m1+1,p] = SLNV[f,m1,p] + SPNV[f,m1,p]
AV[f,p]       = RNV[f,M1,p] / RD[M1,p]
MX[p]         = RM[M1,p]
SM[p]         = RD[M1,p]

stop m1 >= M1
output AV MX SM
";

/// Heads between the feature and the position (BSHD).
const BSHD_3PASS: &str = "cascade bshd_3pass
ranks E F M P H
input Q[E,H,P] K[E,H,M] V[F,H,M]

QK[m,p,h] = Q[e,h,p] * K[e,h,m] * 1/sqrt(E)
GM[p,h]   = max(m) QK[m,p,h]
SN[m,p,h] = exp(QK[m,p,h] - GM[p,h])
SD[p,h]   = SN[m,p,h]
A[m,p,h]  = SN[m,p,h] / SD[p,h]
AV[f,h,p] = A[m,p,h] * V[f,h,m]

output AV
";

/// Grouped-query attention: queries `h = g*R + r`, keys and values per group `g`.
const GQA_3PASS: &str = "cascade gqa_3pass
ranks E F M P H
split H -> G R
input Q[E,H,P] K[E,G,M] V[F,G,M]

QK[m,g,r,p]   = Q[e, g*R+r, p] * K[e,g,m]
GM[g,r,p]     = max(m) QK[m,g,r,p]
SN[m,g,r,p]   = exp(QK[m,g,r,p] - GM[g,r,p])
SD[g,r,p]     = SN[m,g,r,p]
A[m,g,r,p]    = SN[m,g,r,p] / SD[g,r,p]
AV[f,g*R+r,p] = A[m,g,r,p] * V[f,g,m]

output AV
";

const OUTPUT_FILTERS: &str = "cascade output_filters
ranks M P
input A[M] B[P]

X[m : m < 2] = A[m]
Y[p : m < 3] = B[p]

output X Y
";

/// `m - n` stays inside `M` only where the filter holds.
const DIAGONAL: &str = "cascade diagonal
ranks M N
input A[M] B[N]

X[m,n] = A[m] * B[n]
Y[m]   = X[m-n, n : m-n >= 0]

output Y
";

/// Every merge on operands with different filters.
const MERGES: &str = "cascade merges
ranks K
input A[K] B[K]

U[k] = A[k : k < 5] +{|} B[k : k > 2]
R[k] = A[k : k < 5] -{<-} B[k : k > 2]
W[k] = A[k : k < 5] *{1} B[k : k > 2]
X[k] = max{|}(A[k : k < 5], B[k : k > 2])
Y[k] = exp{1}(A[k : k < 5] - B[k : k > 2])
Z[k] = A[k : k < 5] /{|} B[k : k > 2]
S[k] = A[k : k < 5] -{|} B[k : k > 2]
T[k] = exp{|}(A[k : k < 5] - B[k : k > 2])

output U R W X Y Z S T
";

/// `Z[m+n]` is written from every `(m, n)` with the same sum.
const SCATTER: &str = "cascade scatter
ranks M N
input A[M] B[N] C[M]

Z[m]   = C[m]
Z[m+n] = A[m] * B[n]

output Z
";

/// Stops at k = 3, which the interpreter cannot reach when K < 3.
const EARLY_STOP: &str = "cascade early_stop
ranks K
input A[K] B[K]

init
RY[0] = 0

einsums
RY[k+1] = RY[k] + A[k] * B[k]
Z       = RY[K]

stop k >= 3
output Z
";
