//! Deferral (distributivity): a factor that does not depend on the reduced rank leaves the
//! reduction, so it is applied once per output point instead of once per reduced point.

use super::Cond::{Indep, Present};
use super::{Rule, rule};

#[rustfmt::skip]
pub fn rules() -> Vec<Rule> {
    vec![
        // Σ_m (a/d)·v = (Σ_m a·v) / d   when d does not depend on m and v is present everywhere
        // (where v is absent along all of m, the left side is absent and the right side ∅/d = 0)
        rule("defer-div-sum",      "(sum ?m (* (/ ?a ?d) ?v))", "(/ (sum ?m (* ?a ?v)) ?d)", &[Indep("?d", "?m"), Present("?v")]),
        // Σ_m a/d = (Σ_m a) / d         when d does not depend on m
        rule("defer-div-sum-bare", "(sum ?m (/ ?a ?d))",        "(/ (sum ?m ?a) ?d)",        &[Indep("?d", "?m")]),
        // Σ_m d·a = d · Σ_m a           when d does not depend on m
        rule("defer-mul-sum",      "(sum ?m (* ?d ?a))",        "(* ?d (sum ?m ?a))",        &[Indep("?d", "?m")]),
    ]
}
