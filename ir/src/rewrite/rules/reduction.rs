//! Rank splits: a reduction over `m` is a reduction over tiles `m1` of reductions over `m0`.
//!
//! `(split m x)` is `x` with `m := m1·M0 + m0`; it is pushed through map ops so that later rules
//! see the tile-level structure, and dropped where `x` does not read `m`. The tile variables
//! `m1`, `m0` are bound around `x` only where they are fresh for it (`Fresh`): a body that
//! already reads `m1` (a cascade's own rank, or an enclosing tile) would be captured.

use super::Cond::{Dep, Fresh, Indep, Splittable};
use super::{Rule, rule};
use crate::rewrite::lang::{BINARY_OPS, MergedOp, UNARY_OPS};

#[rustfmt::skip]
pub fn rules() -> Vec<Rule> {
    let mut rules = vec![
        // Σ_m x = Σ_m1 Σ_m0 x[m := m1·M0+m0]   when m1, m0 are fresh for x
        rule("split-sum",    "(sum ?m ?x)",   "(sum (outer ?m) (sum (inner ?m) (split ?m ?x)))",   &[Splittable("?m"), Dep("?x", "?m"), Fresh("?x", "?m")]),
        // max_m x = max_m1 max_m0 x[m := m1·M0+m0]   when m1, m0 are fresh for x
        rule("split-max",    "(rmax ?m ?x)",  "(rmax (outer ?m) (rmax (inner ?m) (split ?m ?x)))", &[Splittable("?m"), Dep("?x", "?m"), Fresh("?x", "?m")]),
        // x[m := …] = x  when x does not read m
        rule("split-closed", "(split ?m ?x)", "?x",                                               &[Indep("?x", "?m")]),
    ];
    // (a ⊙ b)[m := …] = a[m := …] ⊙ b[m := …]  for every map op ⊙, with any merge: a merge
    // is pointwise, so the substitution commutes with it
    let merged = MergedOp::all().into_iter().map(|m| m.to_string());
    for op in BINARY_OPS.iter().map(|s| s.to_string()).chain(merged) {
        let lhs = format!("(split ?m ({op} ?a ?b))");
        let rhs = format!("({op} (split ?m ?a) (split ?m ?b))");
        rules.push(rule(&format!("split-push-{op}"), &lhs, &rhs, &[]));
    }
    // (f a)[m := …] = f (a[m := …])  for every unary op f
    for op in UNARY_OPS {
        let lhs = format!("(split ?m ({op} ?a))");
        let rhs = format!("({op} (split ?m ?a))");
        rules.push(rule(&format!("split-push-{op}"), &lhs, &rhs, &[]));
    }
    rules
}
