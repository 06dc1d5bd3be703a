//! Rewrite rules: general algebraic facts about Extended Einsums, one topic per file.
//!
//! # Rules for the rules (after Cranelift's `opts/README.md`)
//!
//! * Every rule is a named, general fact with a one-line math comment, written as one aligned
//!   table entry: `name`, left pattern, right pattern, side conditions.
//!   Names are stable kebab-case strings; explanations and tests refer to them.
//! * No raw commutativity or associativity: they make the e-graph explode.
//!   Operand order is handled where it matters: [`rule`] expands a left-hand side over the
//!   operand orders of its commutative ops (`+ * max min`) into variants named `name`,
//!   `name/1`, …, so a fact is written once and matches either order without adding nodes.
//! * Side conditions are analysis facts ([`super::lang::Facts`]): "`d` does not depend on `m`"
//!   is `Indep("?d", "?m")`, decided from the free index variables of `d`'s e-class.
//!   A class that reads an unbound fold state depends on every rank, conservatively.
//! * A rule is bidirectional only where the reverse is needed to reach a cheaper form and
//!   cannot loop (`exp-local-max` and `exp-local-max-rev`); each direction is its own entry.
//! * Rules that grow the e-graph (splits, folds) are gated by the analysis: only ranks the
//!   caller names are split ([`super::lang::Scope::split`]) or folded
//!   ([`super::lang::Scope::fold`]).
//! * Every rule has a soundness property test (`rewrite::tests`): both sides, instantiated with
//!   random tensors (including `-inf` scores and fully masked rows where the rule's domain
//!   allows them), are lowered to cascades, run by the reference interpreter and compared to
//!   1e-9 relative in f64.
//! * Rule sets compose by concatenation ([`all`]); callers switch topics off (deferral,
//!   iterative rescaling) to ask for cascades without those transformations.
//! * A rule states its domain when it is narrower than "all values": the exp rules hold for
//!   `-inf` scores and fully masked rows (the interpreter's `e^(-inf - c) = 0`); deferral and
//!   associativity are tested on finite values; `rescale-fold-lin` divides by running sums and
//!   is exact only where none of them is 0 (tested on positive values, as FuseMax's Cascade 3).
//! * Rules never look inside an index expression: a split is the let-binding `(split m x)`,
//!   pushed through map ops by `split-push-*`, so every rule stays a plain pattern that egg can
//!   explain step by step.
//!
//! Topics: [`reduction`] (rank splits and the index let-binding `split`), [`deferral`]
//! (division and multiplication past a reduction), [`exp`] (local maxima of exp-shifted
//! sums), [`rescale`] (iterative rescaling: a reduction that needs a global ⊕ becomes a fold
//! with a running ⊕ and a correction factor) and [`assoc`] (associativity of ×-reductions).

pub mod assoc;
pub mod deferral;
pub mod exp;
pub mod reduction;
pub mod rescale;

use egg::{
    ConditionalApplier, ENodeOrVar, Id, Language, Pattern, PatternAst, RecExpr, Rewrite, Subst, Var,
};

use super::lang::{Cx, CxGraph, Scope, facts};

/// The rule sets to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleSets {
    /// Division and multiplication deferral past reductions.
    pub deferral: bool,
    /// Folds over iterative ranks (iterative rescaling).
    pub iterative: bool,
}

/// All rules of the enabled topics, in a fixed order.
pub fn all(sets: RuleSets) -> Vec<Rewrite<Cx, Scope>> {
    let mut rules = [reduction::rules(), exp::rules(), assoc::rules()].concat();
    if sets.deferral {
        rules.extend(deferral::rules());
    }
    if sets.iterative {
        rules.extend(rescale::rules());
    }
    rules
}

/// A side condition of a rule, over its pattern variables.
#[derive(Debug, Clone, Copy)]
pub enum Cond {
    /// The value bound to the first variable does not depend on the rank bound to the second.
    Indep(&'static str, &'static str),
    /// The value bound to the first variable depends on the rank bound to the second.
    Dep(&'static str, &'static str),
    /// The caller allows splitting the rank bound to the variable.
    Splittable(&'static str),
    /// The caller allows folding over the rank bound to the variable.
    Foldable(&'static str),
    /// The value bound to the variable reads no unbound fold state.
    Stateless(&'static str),
    /// `?c` is not `(rmax ?j ?x)` (first, second, third variable): rules out identities.
    NotMaxOf(&'static str, &'static str, &'static str),
}

#[derive(Debug, Clone)]
struct Conds(Vec<Cond>);

fn var(s: &str) -> Var {
    s.parse().expect("pattern variable")
}

impl egg::Condition<Cx, Scope> for Conds {
    fn check(&self, egraph: &mut CxGraph, _eclass: Id, subst: &Subst) -> bool {
        let get = |v: &str| subst[var(v)];
        let rank =
            |egraph: &CxGraph, v: &str| facts(egraph, get(v)).rank.clone().unwrap_or_default();
        self.0.iter().all(|c| match *c {
            Cond::Indep(x, r) => facts(egraph, get(x)).independent_of(&rank(egraph, r)),
            Cond::Dep(x, r) => facts(egraph, get(x)).vars.contains(&rank(egraph, r)),
            Cond::Splittable(r) => egraph.analysis.split.contains(&rank(egraph, r)),
            Cond::Foldable(r) => egraph.analysis.fold.contains(&rank(egraph, r)),
            Cond::Stateless(x) => !facts(egraph, get(x)).state,
            Cond::NotMaxOf(c, j, x) => {
                let node = Cx::RMax([get(j), get(x)]);
                match egraph.lookup(node) {
                    Some(id) => egraph.find(id) != egraph.find(get(c)),
                    None => true,
                }
            }
        })
    }

    fn vars(&self) -> Vec<Var> {
        Vec::new()
    }
}

/// One table entry: a named rewrite `lhs => rhs` under `conds`, expanded over the operand
/// orders of the commutative ops in `lhs`.
pub fn rule(name: &str, lhs: &str, rhs: &str, conds: &[Cond]) -> Vec<Rewrite<Cx, Scope>> {
    let lhs: PatternAst<Cx> = lhs
        .parse()
        .unwrap_or_else(|e| panic!("rule {name}: bad lhs: {e}"));
    let rhs: Pattern<Cx> = rhs
        .parse()
        .unwrap_or_else(|e| panic!("rule {name}: bad rhs: {e}"));
    let mut variants: Vec<PatternAst<Cx>> = Vec::new();
    for v in commuted(&lhs) {
        if !variants.iter().any(|w| w.to_string() == v.to_string()) {
            variants.push(v);
        }
    }
    variants
        .into_iter()
        .enumerate()
        .map(|(k, ast)| {
            let name = if k == 0 {
                name.to_string()
            } else {
                format!("{name}/{k}")
            };
            let applier = ConditionalApplier {
                condition: Conds(conds.to_vec()),
                applier: rhs.clone(),
            };
            Rewrite::new(name.clone(), Pattern::new(ast), applier)
                .unwrap_or_else(|e| panic!("rule {name}: {e}"))
        })
        .collect()
}

/// Whether operand order does not matter for a node (`+ * max min`).
pub fn is_commutative(node: &Cx) -> bool {
    matches!(node, Cx::Add(_) | Cx::Mul(_) | Cx::Max(_) | Cx::Min(_))
}

/// Every operand order of the commutative nodes of `ast`, the written order first.
fn commuted(ast: &PatternAst<Cx>) -> Vec<PatternAst<Cx>> {
    let nodes = ast.as_ref();
    let flippable: Vec<usize> = (0..nodes.len())
        .filter(|i| matches!(&nodes[*i], ENodeOrVar::ENode(n) if is_commutative(n)))
        .collect();
    let mut out = Vec::new();
    for mask in 0u32..(1 << flippable.len()) {
        let mut expr: RecExpr<ENodeOrVar<Cx>> = RecExpr::default();
        for (i, node) in nodes.iter().enumerate() {
            let mut node = node.clone();
            if let Some(bit) = flippable.iter().position(|f| *f == i)
                && mask & (1 << bit) != 0
                && let ENodeOrVar::ENode(n) = &mut node
            {
                n.children_mut().swap(0, 1);
            }
            expr.add(node);
        }
        out.push(expr);
    }
    out
}

/// The left-hand pattern and right-hand pattern of a rewrite, for soundness tests.
pub fn sides(rw: &Rewrite<Cx, Scope>) -> (Option<&PatternAst<Cx>>, Option<&PatternAst<Cx>>) {
    (rw.searcher.get_pattern_ast(), rw.applier.get_pattern_ast())
}
