//! Iterative rescaling: a reduction whose terms are scaled by a global ⊕-reduction `G` of the
//! same rank becomes one fold over that rank with a running `R` and a correction factor.
//!
//! Generic statement, for a ⊕-reduction `G = ⊕_i y_i` and a scale `s(G)` with a ratio
//! `ρ(R, R') = s(R')/s(R)`:
//!
//! ```text
//! Σ_i s_i(G) · w_i  =  A[I]   where  R[0] = id⊕,  R[i+1] = R[i] ⊕ y_i,
//!                                   A[0] = ∅,    A[i+1] = A[i] · ρ(R[i], R[i+1]) + s_i(R[i+1]) · w_i
//! ```
//!
//! Instances: online softmax (`⊕ = max`, `s_i(c) = e^(y_i − c)`, `ρ = e^(R − R')`), with or
//! without weights `w`, and the running product of the pedagogical Cascade 3 (`⊕ = +`,
//! `s(c) = c`, `ρ = R'/R`; exact when no running sum is 0). The folds are gated by
//! [`super::Cond::Foldable`]. The online-softmax fold also unfolds back into its sum
//! (`rescale-fold-exp-rev`): with the fold over the inner tile `m0` of each outer tile `m1`,
//! that turns the 1-pass form into split-K (FlashDecoding): independent folds over key ranges
//! and a combine that rescales each by `e^(L_s − max_s L_s)`.
//!
//! A ⊕-reduction is also the final state of its own running ⊕ (`fold-max`), which is what lets
//! a normaliser with an extra constant term (a sink logit, softmax₁'s `1`) stay 1-pass: its
//! global max `max(max_i y_i, s)` reads the running max after the loop.

use super::Cond::{Foldable, Present, Stateless};
use super::{Cond, Rule, rule};

/// One instance of the generic rescaling fact.
///
/// `lhs` binds `?i`, `?y` and `?w`; `op` is the running ⊕ as a binary map op, `id` its
/// identity (the fold's initial value), and `ratio`/`scale` are patterns over `{R}` (the running
/// value after step i) and `{Rp}` (before step i); `term` is the step's new term over
/// `{scale}` (`(* {scale} ?w)`).
#[allow(clippy::too_many_arguments)]
fn rescale_fold(
    name: &str,
    lhs: &str,
    op: &str,
    id: &str,
    ratio: &str,
    scale: &str,
    term: &str,
    extra: &[Cond],
) -> Rule {
    let step = format!("({op} (state ?i) ?y)");
    let r = format!("(scan ?i {id} {step})");
    let rp = format!("(scan-prev ?i {id} {step})");
    let ratio = ratio.replace("{Rp}", &rp).replace("{R}", &r);
    let scale = scale.replace("{Rp}", &rp).replace("{R}", &r);
    let term = term.replace("{scale}", &scale);
    let rhs = format!("(fold ?i 0 (+ (* (state ?i) {ratio}) {term}))");
    let mut conds = vec![Foldable("?i"), Stateless("?y")];
    if lhs.contains("?w") {
        conds.push(Stateless("?w"));
    }
    conds.extend_from_slice(extra);
    rule(name, lhs, &rhs, &conds)
}

/// The reverse of a fold rule: the fold back into its sum, where the fold's values read no
/// state of their own (the sum has none to read).
fn unfold(name: &str, fold: &Rule) -> Rule {
    let conds: Vec<Cond> = fold
        .conds
        .iter()
        .copied()
        .filter(|c| matches!(c, Stateless(_)))
        .collect();
    rule(name, &fold.rhs, &fold.lhs, &conds)
}

#[rustfmt::skip]
pub fn rules() -> Vec<Rule> {
    let exp = rescale_fold("rescale-fold-exp", "(sum ?i (* (subexp ?y (rmax ?i ?y)) ?w))", "max", "-inf", "(subexp {Rp} {R})", "(subexp ?y {R})", "(* {scale} ?w)", &[]);
    let bare = rescale_fold("rescale-fold-exp-bare", "(sum ?i (subexp ?y (rmax ?i ?y)))", "max", "-inf", "(subexp {Rp} {R})", "(subexp ?y {R})", "{scale}", &[]);
    vec![
        // Σ_i e^(y_i − max_i y)·w_i = fold: R' = max(R, y_i), A' = A·e^(R−R') + e^(y_i−R')·w_i
        exp.clone(),
        // Σ_i e^(y_i − max_i y) = fold: R' = max(R, y_i), A' = A·e^(R−R') + e^(y_i−R')
        bare,
        // fold: R' = max(R, y_i), A' = A·e^(R−R') + e^(y_i−R')·w_i  =  Σ_i e^(y_i − max_i y)·w_i
        unfold("rescale-fold-exp-rev", &exp),
        // Σ_i (Σ_i y)·w_i = fold: R' = R + y_i, A' = A·(R'/R) + R'·w_i   when y is present
        // everywhere (a w_i before the first present y_i would be dropped)
        rescale_fold("rescale-fold-lin", "(sum ?i (* (sum ?i ?y) ?w))", "+", "0", "(/ {R} {Rp})", "{R}", "(* {scale} ?w)", &[Present("?y")]),
        // max_i y_i = R[I],  R[0] = ∅, R[i+1] = max(R[i], y_i)   (max merges with ∪: absent y_i are skipped)
        rule("fold-max",         "(rmax ?i ?y)", "(fold ?i 0 (max (state ?i) ?y))",    &[Foldable("?i"), Stateless("?y")]),
        // max_i y_i = R[I],  R[0] = −∞, R[i+1] = max(R[i], y_i)   when y is present everywhere
        rule("fold-max-present", "(rmax ?i ?y)", "(fold ?i -inf (max (state ?i) ?y))", &[Foldable("?i"), Stateless("?y"), Present("?y")]),
    ]
}
