//! Explicit merges (`{&}`, `{|}`, `{<-}`, `{1}`): lifted as their own operators, lowered back
//! with the merge written, and rewritten only by rules that hold for them.

use super::{
    ALL_RULES, BIG, SMALL, config, evaluate, ops_objective, parse, passes_objective, sizes_for,
};
use crate::rewrite::check::{self, Trial, check};
use crate::rewrite::lang::MergedOp;
use crate::rewrite::{lift, lower};

#[test]
fn merged_ops_print_and_parse_one_spelling_each() {
    let all = MergedOp::all();
    // Seven ops, three merges other than the default each.
    assert_eq!(all.len(), 21);
    for op in all {
        let text = op.to_string();
        assert_eq!(text.parse::<MergedOp>(), Ok(op), "{text}");
    }
    // The default merge has no braced spelling.
    assert!("+{|}".parse::<MergedOp>().is_err());
    assert!("*{&}".parse::<MergedOp>().is_err());
    assert!("/{<-}".parse::<MergedOp>().is_err());
    assert!("+{?}".parse::<MergedOp>().is_err());
}

/// Every merge on every op kind, over inputs read through a filter so that absent points
/// meet every merge: lifting and lowering keep each merge and the meaning.
#[test]
fn explicit_merges_round_trip_through_lift_and_lower() {
    let src = "cascade merges
ranks M P
input A[M,P] B[M,P] D[P]
T1[m,p] = A[m : m < p, p] +{&} B[m,p]
T2[m,p] = T1[m,p] -{1} B[m : m > p, p]
T3[m,p] = A[m : m < p, p] *{|} T2[m,p]
T4[m,p] = T3[m,p] /{&} B[m : m != p, p]
T5[m,p] = max{1}(T4[m,p], A[m : m > p, p])
T6[m,p] = exp{|}(T5[m,p] - B[m : m < p, p])
S[p]    = T6[m,p] *{1} D[p]
output S
";
    let input = parse(src);
    let lifted = lift(&input).expect("lifts");
    let term = lifted.expr.to_string();
    for op in [
        "+{&}",
        "-{1}",
        "*{|}",
        "/{&}",
        "max{1}",
        "subexp{|}",
        "*{1}",
    ] {
        assert!(term.contains(op), "{op} missing from {term}");
    }
    let lowered = lower(&lifted.expr, &lifted.names, &lifted.signature).expect("lowers");
    check::valid(&lowered).unwrap_or_else(|e| panic!("{e}"));
    let text = crate::dsl::print(&lowered);
    for op in ["+{&}", "-{1}", "*{|}", "/{&}", "max{1}(", "exp{|}(", "*{1}"] {
        assert!(text.contains(op), "{op} missing from\n{text}");
    }
    let trial = Trial::new(&[("M", 4), ("P", 4)], 2);
    check::equal(&input, &lowered, &trial).unwrap_or_else(|e| panic!("{e}"));
    // Under the rewriter too, with and without splitting M.
    for objective in [ops_objective(), passes_objective("M")] {
        let cfg = config(objective, ALL_RULES, sizes_for(&input, BIG), &["M"]);
        check(&input, &cfg, &trial).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// Causal attention whose masked scores get a bias with `{&}`: a hidden key stays hidden
/// although the bias is present there. The 1-pass derivation goes through the merged op, the
/// result keeps `+{&}`, and it evaluates like the input with `-inf` bias entries, a fully
/// `-inf` bias row and the fully masked query `p = 0`.
#[test]
fn causal_scores_with_an_intersect_bias_rewrite_soundly() {
    let src = |merge: &str| {
        format!(
            "cascade causal_bias
ranks E F M P
input Q[E,P] K[E,M] V[F,M] BIAS[M,P]
QK[m,p] = Q[e,p] * K[e, m : m < p]
S[m,p]  = QK[m,p] +{merge} BIAS[m,p]
GM[p]   = max(m) S[m,p]
SN[m,p] = exp(S[m,p] - GM[p])
SD[p]   = SN[m,p]
A[m,p]  = SN[m,p] / SD[p]
AV[f,p] = A[m,p] * V[f,m]
output AV
"
        )
    };
    let input = parse(&src("{&}"));
    let mut trial = Trial::new(SMALL, 3);
    trial.masks = vec!["BIAS".into()];
    // The merge matters: the default `+` lets the bias through where the score is hidden.
    let union = parse(&src(""));
    assert_ne!(evaluate(&input, &trial), evaluate(&union, &trial));
    let cfg = config(
        passes_objective("M"),
        ALL_RULES,
        sizes_for(&input, BIG),
        &["M"],
    );
    let r = check(&input, &cfg, &trial).unwrap_or_else(|e| panic!("{e}"));
    let text = crate::dsl::print(&r.cascade);
    assert!(text.contains("+{&}"), "{text}");
    assert_eq!((r.before.passes, r.after.passes), (3, 1), "{text}");
    let cfg = config(ops_objective(), ALL_RULES, sizes_for(&input, BIG), &["M"]);
    check(&input, &cfg, &trial).unwrap_or_else(|e| panic!("{e}"));
}

/// `Σ_m a ×{|} d` is not `d ×{|} Σ_m a` (where `a` is absent, the left side adds `d`): the
/// deferral rules, written for `×` with its default `∩`, leave it alone.
#[test]
fn rules_do_not_apply_across_a_non_default_merge() {
    let input = parse(
        "cascade m
ranks M P
input A[M,P] D[P]
S[p] = A[m : m < p, p] *{|} D[p]
output S
",
    );
    let trial = Trial::new(&[("M", 4), ("P", 4)], 2);
    for objective in [ops_objective(), passes_objective("M")] {
        let cfg = config(objective, ALL_RULES, sizes_for(&input, BIG), &["M"]);
        let r = check(&input, &cfg, &trial).unwrap_or_else(|e| panic!("{e}"));
        assert!(r.term.contains("(sum"), "{}", r.term);
        assert!(!r.term.starts_with("(*{|}"), "{}", r.term);
    }
}
