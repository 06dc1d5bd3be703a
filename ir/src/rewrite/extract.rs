//! Extraction: the cheapest term of an e-class under a caller-chosen cost, counted on the DAG.
//!
//! A greedy DAG extractor: each class keeps its best node and the set of classes its term
//! uses, with each class's own cost counted once however often it is shared (the running max
//! feeds many Einsums). Costs are lexicographic: passes over the chosen rank first when the
//! objective asks for it, then the summed cost of ops over their iteration spaces.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;

use egg::{Id, Language, RecExpr};

use super::lang::{Cx, CxGraph, inner_name, outer_name, reduction};
use super::lift::Builder;
use crate::ops::OpKind;

/// Prices ops of each kind. The ir crate knows no hardware: a scheduler implements this for
/// its units; [`OpWeights`] is the plain per-kind table.
pub trait CostModel: fmt::Debug + Send + Sync {
    /// The cost of `count` ops of `kind`.
    fn op_cost(&self, kind: OpKind, count: f64) -> f64;
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
}

impl Objective {
    fn cost(&self) -> &dyn CostModel {
        match self {
            Objective::Passes { cost, .. } | Objective::Cost(cost) => cost.as_ref(),
        }
    }
}

/// The cost of a term: passes over the objective's rank and the summed op cost.
#[derive(Debug, Clone)]
struct Best {
    node: Cx,
    passes: u32,
    total: f64,
    /// Classes used by the term, each with its own node's cost.
    uses: Rc<BTreeMap<Id, f64>>,
}

/// Extracts the best term for `root` and the e-class of each node of the result.
pub fn extract(
    egraph: &CxGraph,
    root: Id,
    objective: &Objective,
    size: &dyn Fn(&str) -> f64,
) -> Option<(RecExpr<Cx>, Vec<Id>)> {
    let best = choose(egraph, objective, size);
    let root = egraph.find(root);
    best.get(&root)?;
    let mut b = Builder::default();
    let mut classes = Vec::new();
    let mut memo = HashMap::new();
    build(
        egraph,
        &best,
        root,
        &mut b,
        &mut classes,
        &mut memo,
        &mut Vec::new(),
    )?;
    Some((b.expr, classes))
}

/// The best node of every class, by greedy fixpoint over the DAG costs.
fn choose(
    egraph: &CxGraph,
    objective: &Objective,
    size: &dyn Fn(&str) -> f64,
) -> HashMap<Id, Best> {
    let rank_vars: Vec<String> = match objective {
        Objective::Passes { rank, .. } => {
            let v = rank.to_lowercase();
            vec![outer_name(&v), inner_name(&v), v]
        }
        Objective::Cost(_) => Vec::new(),
    };
    let mdep = |id: Id| rank_vars.iter().any(|v| egraph[id].data.vars.contains(v));
    let mut ids: Vec<Id> = egraph.classes().map(|c| c.id).collect();
    ids.sort();
    let mut best: HashMap<Id, Best> = HashMap::new();
    for _round in 0..64 {
        let mut changed = false;
        for &class in &ids {
            for node in &egraph[class].nodes {
                let Some(cand) = candidate(egraph, class, node, &best, objective, size, &mdep)
                else {
                    continue;
                };
                let better = match best.get(&class) {
                    None => true,
                    Some(old) => {
                        // Relative slack against float noise; an infinite cost (a kind the model
                        // cannot price) yields to any finite one.
                        let slack = if old.total.is_finite() {
                            1e-9 * old.total.abs()
                        } else {
                            0.0
                        };
                        (cand.passes, cand.total) < (old.passes, old.total - slack)
                    }
                };
                if better {
                    best.insert(class, cand);
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    best
}

fn build(
    egraph: &CxGraph,
    best: &HashMap<Id, Best>,
    class: Id,
    b: &mut Builder,
    classes: &mut Vec<Id>,
    memo: &mut HashMap<Id, Id>,
    stack: &mut Vec<Id>,
) -> Option<Id> {
    let class = egraph.find(class);
    if let Some(id) = memo.get(&class) {
        return Some(*id);
    }
    if stack.contains(&class) {
        return None;
    }
    stack.push(class);
    let node = best.get(&class)?.node.clone();
    let mut kids = Vec::new();
    for c in node.children() {
        kids.push(build(egraph, best, *c, b, classes, memo, stack)?);
    }
    let mut k = kids.into_iter();
    let node = node.map_children(|_| k.next().expect("one id per child"));
    let before = b.expr.as_ref().len();
    let id = b.add(node);
    if b.expr.as_ref().len() > before {
        classes.push(class);
    }
    stack.pop();
    memo.insert(class, id);
    Some(id)
}

/// The ops a node performs at each point of its iteration space.
fn node_ops(node: &Cx) -> &'static [OpKind] {
    match node {
        Cx::Sum(_) | Cx::Add(_) | Cx::Sub(_) => &[OpKind::Add],
        Cx::RMax(_) | Cx::RMin(_) | Cx::Max(_) | Cx::Min(_) => &[OpKind::Max],
        Cx::RProd(_) | Cx::Mul(_) => &[OpKind::Mul],
        Cx::Div(_) | Cx::Recip(_) => &[OpKind::Div],
        Cx::SubExp(_) => &[OpKind::Add, OpKind::Exp],
        Cx::Exp(_) => &[OpKind::Exp],
        Cx::Neg(_)
        | Cx::Sqrt(_)
        | Cx::Sigmoid(_)
        | Cx::Softplus(_)
        | Cx::Relu(_)
        | Cx::Elu1(_)
        | Cx::Tanh(_) => &[OpKind::Other],
        _ => &[],
    }
}

fn candidate(
    egraph: &CxGraph,
    class: Id,
    node: &Cx,
    best: &HashMap<Id, Best>,
    objective: &Objective,
    size: &dyn Fn(&str) -> f64,
    mdep: &dyn Fn(Id) -> bool,
) -> Option<Best> {
    let mut uses: BTreeMap<Id, f64> = BTreeMap::new();
    let mut passes = 0u32;
    let me_dep = mdep(class);
    for c in node.children() {
        let c = egraph.find(*c);
        if c == class {
            return None;
        }
        let cb = best.get(&c)?;
        if cb.uses.contains_key(&class) {
            return None;
        }
        for (k, v) in cb.uses.iter() {
            uses.insert(*k, *v);
        }
        // A value that reduced the whole rank, read with data of that rank: one more pass.
        let p = if !mdep(c) && me_dep && cb.passes >= 1 {
            cb.passes + 1
        } else {
            cb.passes
        };
        passes = passes.max(p);
    }
    if matches!(node, Cx::At(_) | Cx::State(_)) && me_dep {
        passes = passes.max(1);
    }
    // Ops over the iteration space: a reduction's space is its body's, a map's its own.
    let space = match reduction(node) {
        Some((_, body)) => &egraph[body].data.vars,
        None => &egraph[class].data.vars,
    };
    let points: f64 = space.iter().map(|v| size(v)).product();
    let cost = objective.cost();
    let mut own: f64 = node_ops(node)
        .iter()
        .map(|k| cost.op_cost(*k, points))
        .sum();
    // A sum of products is a multiply-accumulate, as `ops::point_ops` counts it: the sum turns
    // the body's multiply into a MAC instead of adding its own add.
    if let Cx::Sum([_, body]) = node
        && matches!(
            best.get(&egraph.find(*body)).map(|b| &b.node),
            Some(Cx::Mul(_))
        )
    {
        let (mac, mul) = (
            cost.op_cost(OpKind::Mac, points),
            cost.op_cost(OpKind::Mul, points),
        );
        // An unpriceable multiply already makes the body infinite; ∞ − ∞ would be NaN.
        own = if mul.is_finite() { mac - mul } else { mac };
    }
    if matches!(node, Cx::Split(_)) {
        // A split is free, but a direct form is preferred when one exists.
        own += 1e-6;
    }
    uses.insert(class, own);
    let total = uses.values().sum();
    Some(Best {
        node: node.clone(),
        passes,
        total,
        uses: Rc::new(uses),
    })
}

/// Passes over `rank` of a term, by the same rule extraction uses.
pub fn term_passes(expr: &RecExpr<Cx>, rank: &str) -> u32 {
    let mut g = CxGraph::default();
    let root = g.add_expr(expr);
    g.rebuild();
    let objective = Objective::Passes {
        rank: rank.to_string(),
        cost: Arc::new(OpWeights::flops()),
    };
    let best = choose(&g, &objective, &|_| 1.0);
    best.get(&g.find(root)).map_or(0, |b| b.passes)
}
