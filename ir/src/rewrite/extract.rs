//! Extraction: the cheapest term of an e-class under a caller-chosen cost, counted on the DAG.
//!
//! A greedy DAG extractor: each class keeps its best node and the set of classes its term
//! uses, with each class's own cost counted once however often it is shared (the running max
//! feeds many Einsums). Costs are lexicographic: passes over the chosen rank first when the
//! objective asks for it, then the summed cost of ops over their iteration spaces.
//!
//! Only terms that lower to valid cascades are chosen:
//!
//! * no binder of a tile variable `m1`/`m0` encloses a use of `m` inside `(split m …)`
//!   (lowering cannot rename ranks, so the split's substitution would be captured), and every
//!   chosen node reads exactly its class's free variables;
//! * folds iterate one rank variable only. Extraction runs once without folds and once for each
//!   rank variable that some fold iterates, and [`extract_all`] returns every run's result;
//! * in a run with folds over `v`, an Einsum that reduces `v` runs once, before or after the
//!   loop (the loop plan's rule), and an Einsum that runs once per step (its tensor is indexed by `v`) reads a value that does not
//!   vary with `v` only if that value is computed before the loop: its whole term reads no
//!   per-step tensor and no final state. A class read that way is extracted a second time under
//!   that constraint (mode `pre`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use egg::{Id, Language, RecExpr};

use super::lang::{Cx, CxGraph, Tiles, binary_of, binder, facts, node_facts, reduction};
use super::lift::Builder;
use crate::ops::OpKind;

/// Prices ops of each kind. The ir crate knows no hardware: a scheduler implements this for
/// its units; [`OpWeights`] is the plain per-kind table.
pub trait CostModel: fmt::Debug + Send + Sync {
    /// The cost of `count` ops of `kind`.
    fn op_cost(&self, kind: OpKind, count: f64) -> f64;

    /// The cost of `count` ops of `kind` done in `steps` sequential steps (the steps of a
    /// loop) of `count / steps` independent ops each. A model of parallel hardware charges
    /// the steps it cannot fill; by default only the count matters.
    fn op_cost_in_steps(&self, kind: OpKind, count: f64, steps: f64) -> f64 {
        let _ = steps;
        self.op_cost(kind, count)
    }
}

/// A cost linear in op counts, one weight per op kind.
#[derive(Debug, Clone, PartialEq)]
pub struct OpWeights {
    pub weights: BTreeMap<OpKind, f64>,
}

impl OpWeights {
    /// Floating-point operations: a multiply-accumulate is 2, every other op 1.
    pub fn flops() -> OpWeights {
        OpWeights {
            weights: OpKind::ALL
                .iter()
                .map(|k| (*k, if *k == OpKind::Mac { 2.0 } else { 1.0 }))
                .collect(),
        }
    }
}

impl CostModel for OpWeights {
    fn op_cost(&self, kind: OpKind, count: f64) -> f64 {
        self.weights.get(&kind).copied().unwrap_or(1.0) * count
    }
}

/// What extraction minimises.
#[derive(Debug, Clone)]
pub enum Objective {
    /// Fewest passes over `rank` (a rank name, `M`), then the cheapest by `cost`.
    Passes {
        rank: String,
        cost: Arc<dyn CostModel>,
    },
    /// The cheapest by `cost` (`OpWeights::flops()` for the `ops` objective).
    Cost(Arc<dyn CostModel>),
    /// A form that streams over `rank`: a recurrence over the rank or one of its tiles reads
    /// every element (key) in one pass, so no value per element is kept for a later pass (a
    /// second pass over per-tile summaries, as split-K's combine makes, is not one over the
    /// elements); among those the cheapest by `cost`. The design space of FlashAttention and
    /// FlashDecoding, priced by the caller's hardware.
    Streaming {
        rank: String,
        cost: Arc<dyn CostModel>,
    },
}

impl Objective {
    pub fn cost(&self) -> &dyn CostModel {
        match self {
            Objective::Passes { cost, .. }
            | Objective::Cost(cost)
            | Objective::Streaming { cost, .. } => cost.as_ref(),
        }
    }

    /// The rank whose passes the objective counts, if any.
    pub fn rank(&self) -> Option<&str> {
        match self {
            Objective::Passes { rank, .. } | Objective::Streaming { rank, .. } => Some(rank),
            Objective::Cost(_) => None,
        }
    }

    fn streaming(&self) -> bool {
        matches!(self, Objective::Streaming { .. })
    }
}

/// How a class is lowered where it is read: under the split of the loop rank's parent (its
/// tensors are then indexed by the tiles), and whether its value must be ready before the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Mode {
    pre: bool,
    env: bool,
}

const ANY: Mode = Mode {
    pre: false,
    env: false,
};

/// One extraction run: the rank variable that folds may iterate (`None`: no folds).
#[derive(Debug, Clone)]
struct Run {
    var: Option<String>,
    /// The rank variable whose tile `var` is (`m` for `m1`).
    parent: Option<String>,
    /// Whether the run's validity rules apply (off to price a given term as it is).
    checked: bool,
}

impl Run {
    fn modes(&self) -> Vec<Mode> {
        match (&self.var, &self.parent) {
            (None, _) => vec![ANY],
            (Some(_), None) => vec![
                ANY,
                Mode {
                    pre: true,
                    env: false,
                },
            ],
            (Some(_), Some(_)) => [false, true]
                .into_iter()
                .flat_map(|pre| [false, true].map(|env| Mode { pre, env }))
                .collect(),
        }
    }
}

/// The most classes a term lists to count each shared class once; a larger term (a long
/// chain of Einsums) is costed as a tree above them, which keeps extraction linear in the
/// e-graph's size.
const SHARED_TERM_CAP: usize = 128;

/// The cost of a term: passes over the objective's rank and the summed op cost.
#[derive(Debug, Clone)]
struct Best {
    node: Cx,
    passes: u32,
    total: f64,
    /// Classes (in a mode) used by the term, each with its own node's cost; `None` once the
    /// term has more than [`SHARED_TERM_CAP`] classes, whose costs are then in `extra`.
    uses: Option<Rc<BTreeMap<(Id, Mode), f64>>>,
    /// The cost of the parts of the term not listed in `uses`, summed as a tree (a subterm
    /// shared between two large operands is counted twice).
    extra: f64,
    /// Rank variables `m` such that the term binds a tile variable of `m` around a use of `m`.
    captures: Rc<BTreeSet<String>>,
    /// The term lowers to an access with no Einsum of its own (an input, a split input, a
    /// filtered input or a constant).
    leaf: bool,
    /// The term runs a recurrence over the run's loop variable.
    folds: bool,
}

type Bests = HashMap<(Id, Mode), Best>;

/// One extracted term with the e-class of each of its nodes and its cost.
#[derive(Debug, Clone)]
pub struct Extracted {
    pub expr: RecExpr<Cx>,
    pub classes: Vec<Id>,
    /// Passes over the objective's rank (over its elements for [`Objective::Streaming`]).
    pub passes: u32,
    pub total: f64,
    /// The term runs a recurrence over the rank (or a tile of it).
    pub folds: bool,
}

impl Extracted {
    /// The objective's order: for streaming, a term with a recurrence first; then passes,
    /// then cost.
    fn key(&self, streaming: bool) -> (u32, u32, f64) {
        (u32::from(streaming && !self.folds), self.passes, self.total)
    }
}

/// The best term for `root` of every extraction run, cheapest first.
pub fn extract_all(
    egraph: &CxGraph,
    root: Id,
    objective: &Objective,
    size: &dyn Fn(&str) -> f64,
) -> Vec<Extracted> {
    extract_all_until(egraph, root, objective, size, None)
}

/// [`extract_all`] that gives up at `deadline`: the runs finished by then, or none.
pub fn extract_all_until(
    egraph: &CxGraph,
    root: Id,
    objective: &Objective,
    size: &dyn Fn(&str) -> f64,
    deadline: Option<Instant>,
) -> Vec<Extracted> {
    let mut out = Vec::new();
    for run in runs(egraph, true) {
        if deadline.is_some_and(|d| Instant::now() > d) {
            break;
        }
        if let Some(e) = extract_run(egraph, root, objective, size, &run, deadline) {
            out.push(e);
        }
    }
    // Stable: on equal cost the run without folds comes first.
    let streaming = objective.streaming();
    out.sort_by(|a, b| {
        a.key(streaming)
            .partial_cmp(&b.key(streaming))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    out
}

/// Extracts the best term for `root` and the e-class of each node of the result.
pub fn extract(
    egraph: &CxGraph,
    root: Id,
    objective: &Objective,
    size: &dyn Fn(&str) -> f64,
) -> Option<(RecExpr<Cx>, Vec<Id>)> {
    extract_all(egraph, root, objective, size)
        .into_iter()
        .next()
        .map(|e| (e.expr, e.classes))
}

fn extract_run(
    egraph: &CxGraph,
    root: Id,
    objective: &Objective,
    size: &dyn Fn(&str) -> f64,
    run: &Run,
    deadline: Option<Instant>,
) -> Option<Extracted> {
    let tiles = &egraph.analysis.tiles;
    let rank_vars: Vec<String> = match objective.rank() {
        Some(rank) => {
            let v = rank.to_lowercase();
            vec![tiles.outer(&v), tiles.inner(&v), v]
        }
        None => Vec::new(),
    };
    // What counts as traversing the rank: any part of it, or for streaming its elements only
    // (a value indexed by the outer tile alone is a per-tile summary).
    let elements: Vec<String> = match objective {
        Objective::Streaming { .. } => vec![rank_vars[1].clone(), rank_vars[2].clone()],
        _ => rank_vars.clone(),
    };
    let mdep = |id: Id| rank_vars.iter().any(|v| egraph[id].data.vars.contains(v));
    let traverses = |id: Id| elements.iter().any(|v| egraph[id].data.vars.contains(v));
    let cx = Ctx {
        egraph,
        objective,
        size,
        mdep: &mdep,
        traverses: &traverses,
        family: &rank_vars,
        run,
        deadline,
    };
    let mut best = cx.choose()?;
    let root = egraph.find(root);
    cx.reuse_running_states(&mut best, root);
    let top = best.get(&(root, ANY))?;
    let (passes, folds) = (top.passes, top.folds);
    let total = cx.term_cost(&best, root);
    let mut b = Builder::default();
    let mut build = Build {
        cx: &cx,
        best: &best,
        b: &mut b,
        classes: Vec::new(),
        memo: HashMap::new(),
        stack: HashSet::new(),
    };
    build.build(root, ANY)?;
    let classes = build.classes;
    Some(Extracted {
        expr: b.expr,
        classes,
        passes,
        total,
        folds,
    })
}

/// The runs: without folds, then one per rank variable that a fold of the e-graph iterates.
fn runs(egraph: &CxGraph, checked: bool) -> Vec<Run> {
    let tiles = &egraph.analysis.tiles;
    let mut vars = BTreeSet::new();
    for class in egraph.classes() {
        for node in &class.nodes {
            if let Cx::Fold([i, ..]) | Cx::Scan([i, ..]) | Cx::ScanPrev([i, ..]) | Cx::State(i) =
                node
            {
                vars.extend(facts(egraph, *i).rank.clone());
            }
        }
    }
    let mut out = vec![Run {
        var: None,
        parent: None,
        checked,
    }];
    for v in vars {
        let parent = tiles
            .parent_of(&v)
            .filter(|(_, outer)| *outer)
            .map(|(p, _)| p);
        out.push(Run {
            var: Some(v),
            parent,
            checked,
        });
    }
    if !checked {
        // Pricing a given term: one run that takes whatever folds it has.
        out.truncate(1);
    }
    out
}

/// Whether `cand` beats the best so far (for streaming, a term with a recurrence first).
fn better(cand: &Best, old: Option<&Best>, streaming: bool) -> bool {
    let Some(old) = old else {
        return true;
    };
    // Relative slack against float noise; an infinite cost (a kind the model cannot price)
    // yields to any finite one.
    let slack = if old.total.is_finite() {
        1e-9 * old.total.abs()
    } else {
        0.0
    };
    let order = |b: &Best| u32::from(streaming && !b.folds);
    (order(cand), cand.passes, cand.total) < (order(old), old.passes, old.total - slack)
}

/// What a candidate needs to know besides the bests found so far.
struct Ctx<'a> {
    egraph: &'a CxGraph,
    objective: &'a Objective,
    size: &'a dyn Fn(&str) -> f64,
    mdep: &'a dyn Fn(Id) -> bool,
    /// Whether a class traverses the rank (reads it along data a pass goes over).
    traverses: &'a dyn Fn(Id) -> bool,
    /// The objective's rank variable and its tiles (empty for cost objectives).
    family: &'a [String],
    run: &'a Run,
    /// When to give up (checked every few hundred classes).
    deadline: Option<Instant>,
}

impl Ctx<'_> {
    /// The best node of every class in every mode of the run, by greedy fixpoint over DAG
    /// costs; `None` when the deadline passes first.
    fn choose(&self) -> Option<Bests> {
        let egraph = self.egraph;
        let mut ids: Vec<Id> = egraph.classes().map(|c| c.id).collect();
        ids.sort();
        let modes = self.run.modes();
        let mut best: Bests = HashMap::new();
        for _round in 0..64 {
            let mut changed = false;
            for (k, &class) in ids.iter().enumerate() {
                if k % 256 == 0 && self.deadline.is_some_and(|d| Instant::now() > d) {
                    return None;
                }
                for &mode in &modes {
                    if mode.env && !self.under_env(class) {
                        continue;
                    }
                    for node in &egraph[class].nodes {
                        let Some(cand) = self.candidate(class, mode, node, &best) else {
                            continue;
                        };
                        if better(&cand, best.get(&(class, mode)), self.objective.streaming()) {
                            best.insert((class, mode), cand);
                            changed = true;
                        }
                    }
                }
            }
            if !changed {
                break;
            }
        }
        Some(best)
    }

    fn rank(&self, id: Id) -> String {
        facts(self.egraph, id).rank.clone().unwrap_or_default()
    }

    /// Whether a class is lowered under the loop rank's split when its reader is: only where it
    /// reads the split rank.
    fn under_env(&self, class: Id) -> bool {
        self.run
            .parent
            .as_ref()
            .is_some_and(|p| facts(self.egraph, class).vars.contains(p))
    }

    /// Whether the class's tensor, lowered in `mode`, is indexed by the loop variable (or reads
    /// a fold state): an Einsum that runs once per step.
    fn per_step(&self, class: Id, mode: Mode) -> bool {
        let Some(v) = &self.run.var else {
            return false;
        };
        let f = facts(self.egraph, class);
        f.state || f.vars.contains(v) || (mode.env && self.under_env(class))
    }

    /// The mode child `c` of `node` (in `class`, `mode`) is lowered in.
    fn child_mode(&self, class: Id, mode: Mode, node: &Cx, c: Id) -> Mode {
        let splits_parent = matches!(node, Cx::Split([q, _]) | Cx::SplitKey([q, _]) if Some(self.rank(*q)) == self.run.parent);
        let env = (mode.env || splits_parent) && self.under_env(c);
        let child = Mode { pre: false, env };
        let pre = mode.pre || (self.per_step(class, mode) && !self.per_step(c, child));
        Mode { pre, env }
    }

    /// Whether the run allows the node at all (in `mode`, before looking at its children).
    fn allowed(&self, class: Id, mode: Mode, node: &Cx) -> bool {
        if !self.run.checked {
            return true;
        }
        // The node reads exactly its class's free variables (none that a sound merge proved
        // irrelevant): lowering indexes tensors by the variables it reads.
        if node_facts(self.egraph, node).vars != facts(self.egraph, class).vars {
            return false;
        }
        match node {
            Cx::Fold([i, ..]) | Cx::Scan([i, ..]) | Cx::ScanPrev([i, ..]) | Cx::State(i) => {
                // A fold's final value is ready only after the loop.
                Some(self.rank(*i)) == self.run.var && !(mode.pre && matches!(node, Cx::Fold(_)))
            }
            // Lowering splits one rank at a time, and never the rank it iterates.
            Cx::Split([q, _]) | Cx::SplitKey([q, _]) => {
                Some(self.rank(*q)) != self.run.var && !mode.env
            }
            // An Einsum reduces the ranks its operands read: `Σ_e x` with `x` independent of
            // `e` (that is `|E|·x`) has no Einsum. One that reduces the loop's own rank runs
            // once, before the loop or after it (the loop plan's rule), never per step.
            Cx::Sum([r, x]) | Cx::RMax([r, x]) | Cx::RMin([r, x]) | Cx::RProd([r, x]) => {
                facts(self.egraph, *x).vars.contains(&self.rank(*r))
            }
            _ => true,
        }
    }

    /// The mode child `c` is chosen in, as `candidate` looks it up.
    fn mode_of_child(&self, class: Id, mode: Mode, node: &Cx, c: Id) -> Mode {
        if self.run.checked {
            self.child_mode(class, mode, node, c)
        } else {
            ANY
        }
    }

    fn candidate(&self, class: Id, mode: Mode, node: &Cx, best: &Bests) -> Option<Best> {
        let egraph = self.egraph;
        if !self.allowed(class, mode, node) {
            return None;
        }
        let mut uses: Option<BTreeMap<(Id, Mode), f64>> = Some(BTreeMap::new());
        let mut extra = 0.0;
        let mut seen: Vec<(Id, Mode)> = Vec::new();
        let mut captures: BTreeSet<String> = BTreeSet::new();
        let mut passes = 0u32;
        let mut leaf_children = true;
        // Whether the node's value is read along data of the rank (for streaming: its
        // elements); a pass over the rank is counted where such a read follows a completion.
        let me_dep = (self.traverses)(class);
        let value_children = value_children(node);
        let mut folds = match node {
            Cx::Fold([i, ..]) | Cx::Scan([i, ..]) | Cx::ScanPrev([i, ..]) | Cx::State(i) => {
                Some(self.rank(*i)) == self.run.var && self.family.contains(&self.rank(*i))
            }
            _ => false,
        };
        for (k, c) in node.children().iter().enumerate() {
            let c = egraph.find(*c);
            if c == class {
                return None;
            }
            let ckey = (c, self.mode_of_child(class, mode, node, c));
            let cb = best.get(&ckey)?;
            // A term that uses the class itself is a cycle. Large terms keep no list, but costs
            // only grow from operand to node, so greedy improvement never closes a cycle there.
            if cb
                .uses
                .as_ref()
                .is_some_and(|u| u.contains_key(&(class, mode)))
            {
                return None;
            }
            if !seen.contains(&ckey) {
                seen.push(ckey);
                match (&mut uses, &cb.uses) {
                    (Some(mine), Some(theirs)) => {
                        mine.extend(theirs.iter().map(|(k, v)| (*k, *v)));
                        extra += cb.extra;
                    }
                    _ => extra += cb.total,
                }
            }
            captures.extend(cb.captures.iter().cloned());
            folds |= cb.folds;
            if value_children.contains(&k) {
                leaf_children &= cb.leaf;
            }
            // A value that reduced the whole rank (no dependence on it left, computed in some
            // pass), read with data of that rank: one more pass, by the pass analysis' rule.
            let complete = !(self.mdep)(c) && cb.passes >= 1;
            passes = passes.max(crate::passes::pass_after(me_dep, [(cb.passes, complete)]));
        }
        let leaf = match node {
            Cx::At(_)
            | Cx::Lit(_)
            | Cx::Mask(_)
            | Cx::Tri(_)
            | Cx::Name(_)
            | Cx::Outer(_)
            | Cx::Inner(_)
            | Cx::Key(_) => true,
            Cx::Where(_) | Cx::Split(_) | Cx::SplitKey(_) => leaf_children,
            _ => false,
        };
        if self.run.checked {
            if mode.pre && self.per_step(class, mode) && !leaf {
                return None;
            }
            self.capture_check(class, node, &mut captures)?;
        }
        if matches!(node, Cx::At(_) | Cx::State(_)) && (self.mdep)(class) {
            passes = passes.max(1);
        }
        // The final state of a fold over the rank, read along another part of the rank (a state
        // indexed by `m0` or `m`): the read traverses the rank again, after the loop.
        if let Cx::Fold([i, ..]) = node
            && self.family.contains(&self.rank(*i))
            && passes >= 1
        {
            passes = crate::passes::pass_after(me_dep, [(passes, true)]);
        }
        // Non-negative, so that a term never costs less than its operands.
        let own = self.own_cost(class, node, best, mode).max(0.0);
        let total = match &mut uses {
            Some(mine) => {
                mine.insert((class, mode), own);
                let listed: f64 = mine.values().sum();
                if mine.len() > SHARED_TERM_CAP {
                    extra += listed;
                    uses = None;
                    extra
                } else {
                    listed + extra
                }
            }
            None => {
                extra += own;
                extra
            }
        };
        Some(Best {
            node: node.clone(),
            passes,
            total,
            extra,
            uses: uses.map(Rc::new),
            captures: Rc::new(captures),
            leaf,
            folds,
        })
    }

    /// The (class, mode) keys of the term chosen for `root`, each once.
    fn term_keys(&self, best: &Bests, root: Id) -> Vec<(Id, Mode)> {
        let mut seen: HashSet<(Id, Mode)> = HashSet::new();
        let mut order = Vec::new();
        let mut todo = vec![(root, ANY)];
        while let Some(key) = todo.pop() {
            if !seen.insert(key) {
                continue;
            }
            order.push(key);
            let Some(b) = best.get(&key) else { continue };
            for c in b.node.children() {
                let c = self.egraph.find(*c);
                todo.push((c, self.mode_of_child(key.0, key.1, &b.node, c)));
            }
        }
        order
    }

    /// The cost of the chosen term, each class counted once.
    fn term_cost(&self, best: &Bests, root: Id) -> f64 {
        self.term_keys(best, root)
            .into_iter()
            .filter_map(|(class, mode)| {
                let b = best.get(&(class, mode))?;
                Some(self.own_cost(class, &b.node, best, mode).max(0.0))
            })
            .sum()
    }

    /// A reduction whose value is the final state of a recurrence the chosen term already runs
    /// (`max_i y` beside the running max `R[i+1] = max(R[i], y_i)` of an online softmax) is
    /// read from that recurrence: the greedy choice sees the two as equally costly on their
    /// own, but together the recurrence is computed once.
    fn reuse_running_states(&self, best: &mut Bests, root: Id) {
        let keys = self.term_keys(best, root);
        let triple = |node: &Cx| match node {
            Cx::Fold(ch) | Cx::Scan(ch) | Cx::ScanPrev(ch) => Some(ch.map(|c| self.egraph.find(c))),
            _ => None,
        };
        // How many classes of the term read each recurrence (by rank, initial value and step).
        let mut running: HashMap<[Id; 3], usize> = HashMap::new();
        for key in &keys {
            if let Some(t) = best.get(key).and_then(|b| triple(&b.node)) {
                *running.entry(t).or_default() += 1;
            }
        }
        for (class, mode) in keys {
            let Some(old) = best.get(&(class, mode)) else {
                continue;
            };
            // A reduction, or a recurrence no other class reads.
            let alone = match triple(&old.node) {
                Some(t) => running.get(&t) == Some(&1),
                None => reduction(&old.node).is_some(),
            };
            if !alone {
                continue;
            }
            let reuse = self.egraph[class].nodes.iter().find_map(|node| {
                let Cx::Fold(_) = node else { return None };
                let t = triple(node)?;
                if running.get(&t).copied().unwrap_or(0) == 0 || Some(t) == triple(&old.node) {
                    return None;
                }
                let cand = self.candidate(class, mode, node, best)?;
                (cand.passes <= old.passes && cand.folds >= old.folds).then_some((t, cand))
            });
            if let Some((t, cand)) = reuse {
                if let Some(old_t) = triple(&old.node)
                    && let Some(n) = running.get_mut(&old_t)
                {
                    *n -= 1;
                }
                *running.entry(t).or_default() += 1;
                best.insert((class, mode), cand);
            }
        }
    }

    /// Adds what a binder node captures; `None` when a split would capture a tile variable.
    fn capture_check(&self, class: Id, node: &Cx, captures: &mut BTreeSet<String>) -> Option<()> {
        let tiles: &Tiles = &self.egraph.analysis.tiles;
        let Some(r) = binder(node) else {
            return Some(());
        };
        let bound = self.rank(r);
        if let Cx::Split(_) | Cx::SplitKey(_) = node {
            return (!captures.contains(&bound)).then_some(());
        }
        for v in &facts(self.egraph, class).vars {
            if tiles.outer(v) == bound || tiles.inner(v) == bound || tiles.key(v) == bound {
                captures.insert(v.clone());
            }
        }
        Some(())
    }

    /// The cost of the node's own ops over its iteration space.
    fn own_cost(&self, class: Id, node: &Cx, best: &Bests, mode: Mode) -> f64 {
        let egraph = self.egraph;
        // Ops over the iteration space: a reduction's space is its body's, a map's its own.
        let space = match reduction(node) {
            Some((_, body)) => &egraph[body].data.vars,
            None => &egraph[class].data.vars,
        };
        let points: f64 = space.iter().map(|v| (self.size)(v)).product();
        // A node the loop runs once per step does its points in that many sequential steps.
        let steps = match &self.run.var {
            Some(v) if space.contains(v) => (self.size)(v),
            _ => 1.0,
        };
        let cost = self.objective.cost();
        let price = |k: OpKind, n: f64| cost.op_cost_in_steps(k, n, steps);
        let mut own: f64 = node_ops(node).iter().map(|k| price(*k, points)).sum();
        // A sum of products is a multiply-accumulate, as `ops::point_ops` counts it: the sum
        // turns the body's multiply into a MAC instead of adding its own add.
        if let Cx::Sum([_, body]) = node {
            let body = egraph.find(*body);
            let body_mode = self.mode_of_child(class, mode, node, body);
            if matches!(
                best.get(&(body, body_mode)).map(|b| &b.node),
                Some(Cx::Mul(_))
            ) {
                let (mac, mul) = (price(OpKind::Mac, points), price(OpKind::Mul, points));
                // An unpriceable multiply already makes the body infinite; ∞ − ∞ would be NaN.
                own = if mul.is_finite() { mac - mul } else { mac };
            }
        }
        if matches!(node, Cx::Split(_) | Cx::SplitKey(_)) {
            // A split is free, but a direct form is preferred when one exists.
            own += 1e-6;
        }
        own
    }
}

/// The positions of a node's children that are values (not rank or tensor names).
fn value_children(node: &Cx) -> Vec<usize> {
    match node {
        Cx::At(_) | Cx::Outer(_) | Cx::Inner(_) | Cx::Key(_) | Cx::Tri(_) | Cx::State(_) => {
            Vec::new()
        }
        Cx::Where(_) | Cx::Split(_) | Cx::SplitKey(_) | Cx::Join(_) => vec![1],
        _ if binder(node).is_some() => (1..node.children().len()).collect(),
        _ => (0..node.children().len()).collect(),
    }
}

/// Writes the chosen terms into one hash-consed `RecExpr`.
struct Build<'a> {
    cx: &'a Ctx<'a>,
    best: &'a Bests,
    b: &'a mut Builder,
    classes: Vec<Id>,
    memo: HashMap<(Id, Mode), Id>,
    /// The classes being built (expanded, children not yet written): a cycle check.
    stack: HashSet<(Id, Mode)>,
}

impl Build<'_> {
    /// Writes the chosen term of `class` in `mode`, children first, from an explicit stack (a
    /// term as deep as the cascade is long never reaches the call stack); `None` on a cycle.
    fn build(&mut self, class: Id, mode: Mode) -> Option<Id> {
        let egraph = self.cx.egraph;
        let root = (egraph.find(class), mode);
        let mut todo: Vec<((Id, Mode), bool)> = vec![(root, false)];
        while let Some(((class, mode), expanded)) = todo.pop() {
            if self.memo.contains_key(&(class, mode)) {
                continue;
            }
            let node = self.best.get(&(class, mode))?.node.clone();
            let kids: Vec<(Id, Mode)> = node
                .children()
                .iter()
                .map(|c| {
                    let c = egraph.find(*c);
                    (c, self.cx.mode_of_child(class, mode, &node, c))
                })
                .collect();
            if !expanded {
                if self.stack.contains(&(class, mode)) {
                    return None;
                }
                self.stack.insert((class, mode));
                todo.push(((class, mode), true));
                // Reversed, so that operands are written left to right.
                for k in kids.into_iter().rev() {
                    if !self.memo.contains_key(&k) {
                        if self.stack.contains(&k) {
                            return None;
                        }
                        todo.push((k, false));
                    }
                }
                continue;
            }
            let mut ids = Vec::with_capacity(kids.len());
            for k in &kids {
                ids.push(*self.memo.get(k)?);
            }
            let mut it = ids.into_iter();
            let node = node.map_children(|_| it.next().expect("one id per child"));
            let before = self.b.expr.as_ref().len();
            let id = self.b.add(node);
            if self.b.expr.as_ref().len() > before {
                self.classes.push(class);
            }
            self.stack.remove(&(class, mode));
            self.memo.insert((class, mode), id);
        }
        self.memo.get(&root).copied()
    }
}

/// The ops a node performs at each point of its iteration space.
fn node_ops(node: &Cx) -> &'static [OpKind] {
    use crate::ast::BinaryOp;
    if let Some((op, _)) = binary_of(node) {
        // A merge decides which points are computed, not what each costs.
        return match op {
            BinaryOp::Add | BinaryOp::Sub => &[OpKind::Add],
            BinaryOp::Max | BinaryOp::Min => &[OpKind::Max],
            BinaryOp::Mul => &[OpKind::Mul],
            BinaryOp::Div => &[OpKind::Div],
            BinaryOp::SubExp => &[OpKind::Add, OpKind::Exp],
        };
    }
    match node {
        Cx::Sum(_) => &[OpKind::Add],
        Cx::RMax(_) | Cx::RMin(_) => &[OpKind::Max],
        Cx::RProd(_) => &[OpKind::Mul],
        Cx::Unary(op, _) => std::slice::from_ref(&op.info().kind),
        _ => &[],
    }
}

/// Passes over `rank` of a term, by the same rule extraction uses.
pub fn term_passes(expr: &RecExpr<Cx>, rank: &str, tiles: &Tiles) -> u32 {
    let mut g = CxGraph::new(super::lang::Scope {
        tiles: tiles.clone(),
        ..Default::default()
    });
    let root = g.add_expr(expr);
    g.rebuild();
    let objective = Objective::Passes {
        rank: rank.to_string(),
        cost: Arc::new(OpWeights::flops()),
    };
    let run = runs(&g, false).remove(0);
    extract_run(&g, root, &objective, &|_| 1.0, &run, None).map_or(0, |e| e.passes)
}
