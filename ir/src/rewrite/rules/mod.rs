//! Rewrite rules: general algebraic facts about Extended Einsums, one topic per file.
//!
//! # Rules for the rules (after Cranelift's `opts/README.md`)
//!
//! * Every rule is a named, general fact with a one-line math comment, written as one aligned
//!   table entry ([`Rule`], built by [`rule`]): `name`, left pattern, right pattern, side
//!   conditions. Names are stable kebab-case strings; explanations and tests refer to them.
//! * No raw commutativity or associativity: they make the e-graph explode.
//!   Operand order is handled where it matters: [`Rule::rewrites`] expands a left-hand side
//!   over the operand orders of its commutative ops (`+ * max min`) into variants named `name`,
//!   `name/1`, …, so a fact is written once and matches either order without adding nodes.
//! * Side conditions are analysis facts ([`super::lang::Facts`]): "`d` does not depend on `m`"
//!   is `Indep("?d", "?m")`, decided from the free index variables of `d`'s e-class.
//!   A class that reads an unbound fold state depends on every rank, conservatively.
//! * Rules are capture-avoiding by construction: wherever the right-hand side puts a pattern
//!   variable under a binder that does not enclose it on the left (a new tile variable
//!   `(outer ?m)`, a sum it moves into, a fold's state), or takes it out of one, the rule states
//!   that the variable is fresh for the value (`Fresh`, `Indep`, `Stateless`).
//!   [`missing_conditions`] checks this for every table row, and a test fails on a rule without
//!   it (egg's lambda-calculus test guards the same problem with a capture-avoiding applier).
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
//!   `-inf` scores and fully masked rows (the interpreter's `e^(-inf - c) = 0`); deferral,
//!   associativity and distributivity are tested on finite values; `rescale-fold-lin` divides by running sums and
//!   is exact only where none of them is 0 (tested on positive values, as FuseMax's Cascade 3).
//! * Absent points are part of every rule's domain: the soundness tests read every input over
//!   two or more ranks through a filter in half the cases. Where a rule is exact only on values
//!   present everywhere it says so with `Present` (`defer-div-sum`: `∅/d` is 0, not absent;
//!   `rescale-fold-lin`: a term before the first present running sum would be dropped), decided
//!   by the analysis's presence fact ([`super::lang::Facts::total`]).
//! * Rules are written for the default merges. A binary op with another merge is a different
//!   operator ([`super::lang::MergedOp`]), so no rule applies across a merge whose semantics it
//!   does not preserve; only `split-push-*`, which holds for every pointwise op, is stated for
//!   the merged ops too.
//! * Rules never look inside an index expression: a split is the let-binding `(split m x)`,
//!   pushed through map ops by `split-push-*`, so every rule stays a plain pattern that egg can
//!   explain step by step.
//!
//! Topics: [`reduction`] (rank splits and the index let-binding `split`), [`deferral`]
//! (division and multiplication past a reduction), [`exp`] (local maxima of exp-shifted
//! sums), [`rescale`] (iterative rescaling: a reduction that needs a global ⊕ becomes a fold
//! with a running ⊕ and a correction factor) and [`assoc`] (associativity of ×-reductions and
//! distributivity of a contraction over `+`) and [`scan`] (a running sum as a state per chunk
//! plus a causal product within each chunk).

pub mod assoc;
pub mod deferral;
pub mod exp;
pub mod reduction;
pub mod rescale;
pub mod scan;

use std::collections::{BTreeSet, HashSet};

use egg::{
    ConditionalApplier, ENodeOrVar, Id, Language, Pattern, PatternAst, RecExpr, Rewrite, Subst, Var,
};

use super::lang::{Cx, CxGraph, Scope, binder, facts};

/// The rule sets to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleSets {
    /// Division and multiplication deferral past reductions.
    pub deferral: bool,
    /// Folds over iterative ranks (iterative rescaling).
    pub iterative: bool,
}

/// Every table row of the enabled topics, in a fixed order.
pub fn table(sets: RuleSets) -> Vec<Rule> {
    let mut rules = [
        reduction::rules(),
        exp::rules(),
        assoc::rules(),
        scan::rules(),
    ]
    .concat();
    if sets.deferral {
        rules.extend(deferral::rules());
    }
    if sets.iterative {
        rules.extend(rescale::rules());
    }
    rules
}

/// All rules of the enabled topics as rewrites, in a fixed order.
pub fn all(sets: RuleSets) -> Vec<Rewrite<Cx, Scope>> {
    table(sets).iter().flat_map(Rule::rewrites).collect()
}

/// A side condition of a rule, over its pattern variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    /// The value bound to the first variable does not depend on the rank bound to the second.
    Indep(&'static str, &'static str),
    /// The value bound to the first variable depends on the rank bound to the second.
    Dep(&'static str, &'static str),
    /// The tile variables `(outer r)`, `(inner r)` and `(key r)` of the rank `r` bound to the second
    /// variable are fresh for the value bound to the first: neither is free in it (and it reads
    /// no unbound fold state), so binding them around it captures nothing.
    Fresh(&'static str, &'static str),
    /// The caller allows splitting the rank bound to the variable.
    Splittable(&'static str),
    /// The caller allows folding over the rank bound to the variable.
    Foldable(&'static str),
    /// The value bound to the variable reads no unbound fold state.
    Stateless(&'static str),
    /// The value bound to the variable is present at every point (no filter or merge can
    /// leave a point absent): the rule is exact only where a whole fiber is never absent.
    Present(&'static str),
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
            Cond::Fresh(x, r) => {
                let m = rank(egraph, r);
                let tiles = &egraph.analysis.tiles;
                let x = facts(egraph, get(x));
                x.independent_of(&tiles.outer(&m))
                    && x.independent_of(&tiles.inner(&m))
                    && x.independent_of(&tiles.key(&m))
            }
            Cond::Splittable(r) => egraph.analysis.split.contains(&rank(egraph, r)),
            Cond::Foldable(r) => egraph.analysis.fold.contains(&rank(egraph, r)),
            Cond::Stateless(x) => !facts(egraph, get(x)).state,
            Cond::Present(x) => facts(egraph, get(x)).total,
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

/// One table row: a named rewrite `lhs => rhs` under side conditions.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Stable kebab-case name; commuted variants are `name/1`, `name/2`, ….
    pub name: String,
    pub lhs: String,
    pub rhs: String,
    pub conds: Vec<Cond>,
}

/// One table entry: a named rewrite `lhs => rhs` under `conds`.
pub fn rule(name: &str, lhs: &str, rhs: &str, conds: &[Cond]) -> Rule {
    Rule {
        name: name.to_string(),
        lhs: lhs.to_string(),
        rhs: rhs.to_string(),
        conds: conds.to_vec(),
    }
}

impl Rule {
    fn lhs_ast(&self) -> PatternAst<Cx> {
        self.lhs
            .parse()
            .unwrap_or_else(|e| panic!("rule {}: bad lhs: {e}", self.name))
    }

    fn rhs_ast(&self) -> PatternAst<Cx> {
        self.rhs
            .parse()
            .unwrap_or_else(|e| panic!("rule {}: bad rhs: {e}", self.name))
    }

    /// The rewrites of this row, expanded over the operand orders of the commutative ops in
    /// `lhs`.
    pub fn rewrites(&self) -> Vec<Rewrite<Cx, Scope>> {
        let rhs = Pattern::new(self.rhs_ast());
        // Commuting two equal operands gives the same pattern again: keep each once (by its
        // node list, which is what the matcher sees).
        let mut seen: HashSet<Vec<ENodeOrVar<Cx>>> = HashSet::new();
        let variants: Vec<PatternAst<Cx>> = commuted(&self.lhs_ast())
            .into_iter()
            .filter(|v| seen.insert(v.as_ref().to_vec()))
            .collect();
        variants
            .into_iter()
            .enumerate()
            .map(|(k, ast)| {
                let name = if k == 0 {
                    self.name.clone()
                } else {
                    format!("{}/{k}", self.name)
                };
                let applier = ConditionalApplier {
                    condition: Conds(self.conds.clone()),
                    applier: rhs.clone(),
                };
                Rewrite::new(name.clone(), Pattern::new(ast), applier)
                    .unwrap_or_else(|e| panic!("rule {name}: {e}"))
            })
            .collect()
    }
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

// ---------------------------------------------------------------------------------------------
// Capture avoidance as a property of the table.

/// A binder around a pattern variable: a rank variable (`?m`, `(outer ?m)`, `(inner ?m)`) or
/// the fold state of a rank (`state ?i`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Binder {
    Rank(String),
    Outer(String),
    Inner(String),
    Key(String),
    State(String),
    /// Inside `(join h …)`: a split of `h` there substitutes the tiles back, binding nothing.
    Joined(String),
}

/// The binders around each value occurrence of each pattern variable of `ast`.
fn binder_contexts(ast: &PatternAst<Cx>) -> Vec<(String, BTreeSet<Binder>)> {
    let nodes = ast.as_ref();
    let name = |id: Id| -> Option<Binder> {
        let leaf = |id: Id| match &nodes[usize::from(id)] {
            ENodeOrVar::Var(v) => Some(v.to_string()),
            ENodeOrVar::ENode(Cx::Name(s)) => Some(s.to_string()),
            _ => None,
        };
        match &nodes[usize::from(id)] {
            ENodeOrVar::ENode(Cx::Outer(m)) => leaf(*m).map(Binder::Outer),
            ENodeOrVar::ENode(Cx::Inner(m)) => leaf(*m).map(Binder::Inner),
            ENodeOrVar::ENode(Cx::Key(m)) => leaf(*m).map(Binder::Key),
            _ => leaf(id).map(Binder::Rank),
        }
    };
    let mut out = Vec::new();
    let mut stack: Vec<(Id, BTreeSet<Binder>)> = vec![(Id::from(nodes.len() - 1), BTreeSet::new())];
    while let Some((id, scope)) = stack.pop() {
        let node = match &nodes[usize::from(id)] {
            ENodeOrVar::Var(v) => {
                out.push((v.to_string(), scope));
                continue;
            }
            ENodeOrVar::ENode(n) => n,
        };
        let children = node.children();
        match node {
            // Names of ranks and tensors, not values.
            Cx::Outer(_) | Cx::Inner(_) | Cx::Key(_) | Cx::Tri(_) | Cx::State(_) | Cx::At(_) => {}
            // `(join h x)` binds h's tiles in `x`, which a split of `h` inside substitutes for.
            Cx::Join([h, x]) => {
                let mut inner = scope.clone();
                if let Some(Binder::Rank(r)) = name(*h) {
                    inner.insert(Binder::Joined(r));
                }
                stack.push((*x, inner));
            }
            Cx::Split([m, x]) | Cx::SplitKey([m, x]) if matches!(name(*m), Some(Binder::Rank(r)) if scope.contains(&Binder::Joined(r.clone()))) =>
            {
                stack.push((*x, scope.clone()));
            }
            Cx::Fold([i, init, step])
            | Cx::Scan([i, init, step])
            | Cx::ScanPrev([i, init, step]) => {
                let mut inner = scope.clone();
                // A scan's value at `i` is its step at `i` (the earlier steps are the state):
                // the step's `i` is the scan's own index, not a bound copy; a fold binds it.
                if matches!(node, Cx::Fold(_)) {
                    inner.extend(name(*i));
                }
                stack.push((*init, inner.clone()));
                match name(*i) {
                    Some(Binder::Rank(r)) => {
                        inner.insert(Binder::State(r));
                    }
                    Some(b) => {
                        inner.insert(b);
                    }
                    None => {}
                }
                stack.push((*step, inner));
            }
            _ => match binder(node) {
                Some(r) => {
                    let mut inner = scope.clone();
                    inner.extend(name(r));
                    stack.push((children[1], inner));
                }
                None => stack.extend(children.iter().map(|c| (*c, scope.clone()))),
            },
        }
    }
    out
}

/// Whether `conds` state that the value of `x` may move across `b` without capture.
fn guarded(conds: &[Cond], x: &str, b: &Binder) -> bool {
    conds.iter().any(|c| match (*c, b) {
        (Cond::Indep(v, r), Binder::Rank(m) | Binder::State(m)) => v == x && r == m,
        (Cond::Fresh(v, r), Binder::Outer(m) | Binder::Inner(m) | Binder::Key(m)) => {
            v == x && r == m
        }
        (Cond::Stateless(v), Binder::State(_)) => v == x,
        _ => false,
    })
}

/// The capture-avoiding conditions a rule lacks: for every pattern variable that the right-hand
/// side puts under a binder that does not enclose it on the left, or takes out of one, a
/// condition that the variable's value is independent of that binder (`Fresh` for new tile
/// variables, `Indep` for ranks, `Stateless` for fold states). Empty when the rule is
/// capture-avoiding.
pub fn missing_conditions(rule: &Rule) -> Vec<String> {
    let (lhs, rhs) = (
        binder_contexts(&rule.lhs_ast()),
        binder_contexts(&rule.rhs_ast()),
    );
    let mut missing = Vec::new();
    for (x, right) in &rhs {
        for (_, left) in lhs.iter().filter(|(y, _)| y == x) {
            let moved = right
                .symmetric_difference(left)
                .filter(|b| !matches!(b, Binder::Joined(_)));
            for b in moved {
                let what = format!("{x} crosses {b:?}");
                if !guarded(&rule.conds, x, b) && !missing.contains(&what) {
                    missing.push(what);
                }
            }
        }
    }
    missing
}
