//! Exp algebra on sums of exp-shifted terms: a shift by any `c` factors through the local max.
//!
//! With `L = max_j x_j`: `e^(x_j − c) = e^(x_j − L) · e^(L − c)`, and `e^(L − c)` leaves the
//! sum over `j` when `c` does not depend on `j`. Forward, this gives each tile its own max
//! (2-pass local-max softmax); backward, it folds a correction factor into the tile's terms
//! again once `c` is a running max (Cascade 5's `SLN = e^(BQK − RM[m1+1])`).

use super::Cond::{Dep, Indep, NotMaxOf};
use super::{Rule, rule};

#[rustfmt::skip]
pub fn rules() -> Vec<Rule> {
    vec![
        // Σ_j e^(x−c)·v = e^(L−c) · Σ_j e^(x−L)·v,  L = max_j x,  c independent of j
        rule("exp-local-max",          "(sum ?j (* (subexp ?x ?c) ?v))",                                 "(* (subexp (rmax ?j ?x) ?c) (sum ?j (* (subexp ?x (rmax ?j ?x)) ?v)))", &[Indep("?c", "?j"), Dep("?x", "?j"), NotMaxOf("?c", "?j", "?x")]),
        // Σ_j e^(x−c) = e^(L−c) · Σ_j e^(x−L),  L = max_j x,  c independent of j
        rule("exp-local-max-bare",     "(sum ?j (subexp ?x ?c))",                                        "(* (subexp (rmax ?j ?x) ?c) (sum ?j (subexp ?x (rmax ?j ?x))))",         &[Indep("?c", "?j"), Dep("?x", "?j"), NotMaxOf("?c", "?j", "?x")]),
        // e^(L−c) · Σ_j e^(x−L)·v = Σ_j e^(x−c)·v,  L = max_j x,  c independent of j
        rule("exp-local-max-rev",      "(* (subexp (rmax ?j ?x) ?c) (sum ?j (* (subexp ?x (rmax ?j ?x)) ?v)))", "(sum ?j (* (subexp ?x ?c) ?v))",                                 &[Indep("?c", "?j")]),
        // e^(L−c) · Σ_j e^(x−L) = Σ_j e^(x−c),  L = max_j x,  c independent of j
        rule("exp-local-max-bare-rev", "(* (subexp (rmax ?j ?x) ?c) (sum ?j (subexp ?x (rmax ?j ?x))))",  "(sum ?j (subexp ?x ?c))",                                                &[Indep("?c", "?j")]),
    ]
}
