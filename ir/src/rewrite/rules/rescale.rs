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
//! Instances: online softmax (`⊕ = max`, `s_i(c) = e^(y_i − c)`, `ρ = e^(R − R')`) and the
//! running product of the pedagogical Cascade 3 (`⊕ = +`, `s(c) = c`, `ρ = R'/R`; exact when
//! no running sum is 0). The folds are gated by [`super::Cond::Foldable`].

use super::Cond::{Foldable, Present, Stateless};
use super::{Cond, Rule, rule};

/// One instance of the generic rescaling fact.
///
/// `lhs` binds `?i`, `?y` and `?w`; `op` is the running ⊕ as a binary map op, `id` its
/// identity (the fold's initial value), and `ratio`/`scale` are patterns over `{R}` (the running
/// value after step i) and `{Rp}` (before step i).
fn rescale_fold(
    name: &str,
    lhs: &str,
    op: &str,
    id: &str,
    ratio: &str,
    scale: &str,
    extra: &[Cond],
) -> Rule {
    let step = format!("({op} (state ?i) ?y)");
    let r = format!("(scan ?i {id} {step})");
    let rp = format!("(scan-prev ?i {id} {step})");
    let ratio = ratio.replace("{Rp}", &rp).replace("{R}", &r);
    let scale = scale.replace("{Rp}", &rp).replace("{R}", &r);
    let rhs = format!("(fold ?i 0 (+ (* (state ?i) {ratio}) (* {scale} ?w)))");
    let mut conds = vec![Foldable("?i"), Stateless("?y"), Stateless("?w")];
    conds.extend_from_slice(extra);
    rule(name, lhs, &rhs, &conds)
}

#[rustfmt::skip]
pub fn rules() -> Vec<Rule> {
    vec![
        // Σ_i e^(y_i − max_i y)·w_i = fold: R' = max(R, y_i), A' = A·e^(R−R') + e^(y_i−R')·w_i
        rescale_fold("rescale-fold-exp", "(sum ?i (* (subexp ?y (rmax ?i ?y)) ?w))", "max", "-inf", "(subexp {Rp} {R})", "(subexp ?y {R})", &[]),
        // Σ_i (Σ_i y)·w_i = fold: R' = R + y_i, A' = A·(R'/R) + R'·w_i   when y is present
        // everywhere (a w_i before the first present y_i would be dropped)
        rescale_fold("rescale-fold-lin", "(sum ?i (* (sum ?i ?y) ?w))",              "+",   "0",    "(/ {R} {Rp})",      "{R}",             &[Present("?y")]),
    ]
}
