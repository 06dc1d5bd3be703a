//! Rank splits: a reduction over `m` is a reduction over tiles `m1` of reductions over `m0`.
//!
//! `(split m x)` is `x` with `m := m1·M0 + m0`; it is pushed through map ops so that later rules
//! see the tile-level structure, and dropped where `x` does not read `m`.

use egg::Rewrite;

use super::Cond::{Dep, Indep, Splittable};
use super::rule;
use crate::rewrite::lang::{BINARY_OPS, Cx, Scope, UNARY_OPS};

#[rustfmt::skip]
pub fn rules() -> Vec<Rewrite<Cx, Scope>> {
    let mut rules = [
        // Σ_m x = Σ_m1 Σ_m0 x[m := m1·M0+m0]
        rule("split-sum",    "(sum ?m ?x)",   "(sum (outer ?m) (sum (inner ?m) (split ?m ?x)))",   &[Splittable("?m"), Dep("?x", "?m")]),
        // max_m x = max_m1 max_m0 x[m := m1·M0+m0]
        rule("split-max",    "(rmax ?m ?x)",  "(rmax (outer ?m) (rmax (inner ?m) (split ?m ?x)))", &[Splittable("?m"), Dep("?x", "?m")]),
        // x[m := …] = x  when x does not read m
        rule("split-closed", "(split ?m ?x)", "?x",                                               &[Indep("?x", "?m")]),
    ]
    .concat();
    // (a ⊙ b)[m := …] = a[m := …] ⊙ b[m := …]  for every map op ⊙
    for op in BINARY_OPS {
        let lhs = format!("(split ?m ({op} ?a ?b))");
        let rhs = format!("({op} (split ?m ?a) (split ?m ?b))");
        rules.extend(rule(&format!("split-push-{op}"), &lhs, &rhs, &[]));
    }
    for op in UNARY_OPS {
        let lhs = format!("(split ?m ({op} ?a))");
        let rhs = format!("({op} (split ?m ?a))");
        rules.extend(rule(&format!("split-push-{op}"), &lhs, &rhs, &[]));
    }
    rules
}
