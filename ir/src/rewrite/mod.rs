//! Equality saturation over cascades: derive cheaper equivalent cascades with `egg`.
//!
//! [`rewrite`] lifts a cascade into one expression ([`lift`]), saturates an e-graph with the
//! rules of [`rules`] under explicit limits, extracts the best term for the caller's
//! [`Objective`] ([`extract`]) and lowers it back into a cascade ([`lower`]). From the 3-pass
//! softmax attention it derives the 2-pass cascade with deferred division and the 1-pass
//! cascade with a running max (FuseMax's Cascade 5), from general facts only.
//!
//! Soundness by construction: every rule that moves a value across a binder states that the
//! value is fresh for it ([`rules::missing_conditions`] checks the table), extraction only
//! chooses terms that lower faithfully, and [`rewrite`] checks the lowered cascade with
//! `verify` and the loop-phase rules before returning it ([`lower_checked`]); a failure there
//! is a [`RewriteError::Internal`], never an invalid cascade. Tests call the rewriter only
//! through [`check::check`], which also compares the result with its input under the
//! interpreter.

pub mod check;
pub mod extract;
pub mod lang;
pub mod lift;
pub mod lower;
pub mod rules;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, Instant};

use egg::{BackoffScheduler, Language as _, RecExpr, Runner};

pub use extract::{CostModel, Objective, OpWeights};
use lang::{Cx, Scope, Tiles};
pub use lift::{Lifted, Signature, lift};
pub use lower::lower;
pub use rules::RuleSets;

use crate::ast::{Cascade, RankId};
use crate::ops::{OpKind, point_ops};
use crate::shape::ShapeSpec;

/// Why the rewriter cannot take a cascade.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    #[error("cascade {cascade}: the rewriter does not support {what}")]
    Unsupported { cascade: String, what: String },
    #[error("rank {rank} has no size: add {rank}=N to the shape used for costs")]
    MissingSize { rank: String },
    #[error("no term could be extracted for the output (the e-graph has no acyclic choice)")]
    Extraction,
    /// A bug: the rewriter produced a cascade that is not valid. It is never handed on.
    #[error("internal error in the rewriter: {0}")]
    Internal(String),
}

/// Bounds on saturation: whichever is reached first stops it. Runs that stop on `iterations`,
/// `nodes` or saturation are deterministic; a run cut by `time` may not be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub iterations: usize,
    pub nodes: usize,
    pub time: Duration,
}

/// Everything the caller decides about one rewrite.
#[derive(Debug, Clone)]
pub struct RewriteConfig {
    pub objective: Objective,
    /// Which topics of rules run (deferral, iterative rescaling).
    pub rules: RuleSets,
    /// Rank sizes for costs, by rank name (`M=4096`); every declared rank needs one.
    pub sizes: ShapeSpec,
    /// Size of the inner rank `M0` of a split introduced by the rewriter.
    pub tile: i64,
    /// Ranks the rewriter may split into tiles and fold over (`M`).
    pub split_ranks: Vec<String>,
    pub limits: Limits,
    /// Record the chain of rules from the input to the result (slower).
    pub explain: bool,
}

/// Why saturation stopped.
#[derive(Debug, Clone, PartialEq)]
pub enum Stop {
    /// No rule can add anything: every reachable equivalent form is in the e-graph.
    Saturated,
    /// The iteration limit (the value) was reached.
    IterationLimit(usize),
    /// The e-graph grew past the e-node limit; the value is its size when it stopped.
    NodeLimit(usize),
    /// The time limit (the value) was reached; results may then differ from run to run.
    TimeLimit(Duration),
    /// Extraction did not finish within half the time limit (the value) after saturation: the
    /// input is returned as it is (lowered back).
    ExtractionTimeLimit(Duration),
    Other(String),
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::Saturated => f.write_str("saturated (no rule applies any more)"),
            Stop::IterationLimit(n) => write!(f, "iteration limit ({n} iterations)"),
            Stop::NodeLimit(n) => write!(f, "e-node limit (stopped at {n} e-nodes)"),
            Stop::TimeLimit(t) => write!(f, "time limit ({:.1} s)", t.as_secs_f64()),
            Stop::ExtractionTimeLimit(t) => write!(
                f,
                "time limit ({:.1} s) reached while extracting: the input is returned unchanged",
                t.as_secs_f64()
            ),
            Stop::Other(s) => write!(f, "stopped: {s}"),
        }
    }
}

/// Passes and op counts of one cascade.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    /// Passes over the objective's rank (or the first declared rank for cost objectives).
    pub passes: u32,
    /// Ops of each kind over the whole cascade at the configured sizes.
    pub ops: BTreeMap<OpKind, f64>,
    /// The objective's cost of the cascade's term.
    pub cost: f64,
}

/// One step of an explanation: a rule applied forward or backward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub rule: String,
    pub forward: bool,
    /// The whole term after the step, as an s-expression.
    pub term: String,
}

/// The result of [`rewrite`].
#[derive(Debug, Clone)]
pub struct Rewritten {
    pub cascade: Cascade,
    pub before: Metrics,
    pub after: Metrics,
    pub stop: Stop,
    pub iterations: usize,
    pub egraph_nodes: usize,
    pub egraph_classes: usize,
    pub elapsed: Duration,
    /// The extracted term as an s-expression.
    pub term: String,
    /// The chain of rules from the input to the extracted term, when asked for.
    pub explanation: Option<Vec<Step>>,
}

/// Derives the cheapest equivalent of `cascade` that the rules reach within the limits:
/// lift, saturate, extract, lower and verify, then measure both cascades.
///
/// Saturation stops at the time limit; extraction may use half of it again, and past that the
/// input is returned unchanged ([`Stop::ExtractionTimeLimit`]), so that the whole rewrite ends
/// within about twice the limit on any input.
pub fn rewrite(cascade: &Cascade, config: &RewriteConfig) -> Result<Rewritten, RewriteError> {
    let start = Instant::now();
    let lifted = lift(cascade)?;
    let sizes = Sizes::new(cascade, config)?;
    let mut runner = saturate(&lifted, config);
    let deadline = start + config.limits.time.mul_f64(1.5);
    let chosen = choose(&runner, &lifted, config, &sizes, deadline)?;
    let pass_rank = pass_rank(cascade, config);
    let before = metrics(cascade, &pass_rank, &sizes, config)?;
    let timed_out = chosen.is_none();
    let (mut out, expr, after) = match chosen {
        Some((expr, names)) => {
            let out = lower_checked(&expr, &names, &lifted.signature)?;
            let after = metrics(&out, &pass_rank, &sizes, config)?;
            (out, expr, after)
        }
        None => (cascade.clone(), lifted.expr.clone(), before.clone()),
    };
    // A derived cascade is a cascade of its own: later stages must not report the input's name.
    out.name = format!("{}_derived", cascade.name);
    let explanation = config.explain.then(|| {
        let mut ex = runner.explain_equivalence(&lifted.expr, &expr);
        ex.get_flat_strings()
            .into_iter()
            .skip(1)
            .map(|s| step(&s))
            .collect()
    });
    let report = runner.report();
    Ok(Rewritten {
        cascade: out,
        before,
        after,
        stop: match report.stop_reason {
            _ if timed_out => Stop::ExtractionTimeLimit(config.limits.time),
            egg::StopReason::Saturated => Stop::Saturated,
            egg::StopReason::IterationLimit(n) => Stop::IterationLimit(n),
            egg::StopReason::NodeLimit(n) => Stop::NodeLimit(n),
            egg::StopReason::TimeLimit(s) => Stop::TimeLimit(Duration::from_secs_f64(s)),
            egg::StopReason::Other(s) => Stop::Other(s),
        },
        iterations: report.iterations,
        egraph_nodes: report.egraph_nodes,
        egraph_classes: report.egraph_classes,
        elapsed: start.elapsed(),
        term: expr.to_string(),
        explanation,
    })
}

/// Equality saturation of the lifted term under the configured rules and limits.
fn saturate(lifted: &Lifted, config: &RewriteConfig) -> Runner<Cx, Scope> {
    let tiles = lifted.signature.tiles.clone();
    let mut split = BTreeSet::new();
    let mut fold = BTreeSet::new();
    for r in &config.split_ranks {
        let v = r.to_lowercase();
        // A fold may run over the rank, its tiles (the 1-pass form) or each tile's elements
        // (split-K: one fold per tile, combined after the loop).
        fold.insert(tiles.outer(&v));
        fold.insert(tiles.inner(&v));
        fold.insert(v.clone());
        split.insert(v);
    }
    let rules = rules::all(config.rules);
    let mut runner = Runner::<Cx, Scope>::new(Scope {
        split,
        fold,
        masks: lifted.signature.mask_vars(),
        tiles,
    })
    .with_iter_limit(config.limits.iterations)
    .with_node_limit(config.limits.nodes)
    .with_time_limit(config.limits.time)
    .with_scheduler(BackoffScheduler::default());
    if config.explain {
        runner = runner.with_explanations_enabled();
    }
    let mut runner = runner.with_expr(&lifted.expr);
    canonical_tiles(&mut runner.egraph, &lifted.signature);
    runner.run(&rules)
}

/// A cascade's own split tiles and causal chunk filter mean what the rules' canonical nodes
/// mean: its `m1`, `m0` and second variable `n0` of `split M -> M1 M0 N0` are `(outer m)`,
/// `(inner m)` and `(key m)`, and a filter `n0 <= m0` is `(tri m)`. Stated once, as e-graph
/// equalities, so that a rule written over the canonical nodes (`scan-chunk-rev`) matches a
/// cascade written in chunks; extraction picks either spelling, and both lower alike.
fn canonical_tiles(egraph: &mut lang::CxGraph, sig: &Signature) {
    let tiles = sig.tiles.clone();
    let name = |egraph: &lang::CxGraph, s: &str| egraph.lookup(Cx::Name(s.into()));
    for (parent, _, _) in &sig.splits {
        let m = parent.to_lowercase();
        let Some(m_id) = name(egraph, &m) else {
            continue;
        };
        let canon = [
            (tiles.outer(&m), Cx::Outer(m_id)),
            (tiles.inner(&m), Cx::Inner(m_id)),
            (tiles.key(&m), Cx::Key(m_id)),
        ];
        for (var, node) in canon {
            if let Some(id) = name(egraph, &var) {
                let c = egraph.add(node);
                egraph.union_trusted(id, c, "cascade-tile");
            }
        }
        let var_is = |e: &crate::ast::IndexExpr, v: &str| {
            matches!(e, crate::ast::IndexExpr::Var(r)
                if sig.ranks.get(r.index()).is_some_and(|(n, _)| n.to_lowercase() == v))
        };
        for (k, conds) in sig.masks.iter().enumerate() {
            let tri = matches!(conds.as_slice(), [c] if c.op == crate::ast::CompareOp::Le
                && var_is(&c.lhs, &tiles.key(&m)) && var_is(&c.rhs, &tiles.inner(&m)));
            if let (true, Some(id)) = (tri, egraph.lookup(Cx::Mask(lang::Mask(k as u32)))) {
                let c = egraph.add(Cx::Tri(m_id));
                egraph.union_trusted(id, c, "cascade-tri");
            }
        }
    }
    egraph.rebuild();
}

/// An extracted term and a name for each of its nodes.
type Chosen = (RecExpr<Cx>, Vec<Option<String>>);

/// The cheapest term for the objective with a name for each node, or `None` when extraction
/// did not finish by `deadline`.
fn choose(
    runner: &Runner<Cx, Scope>,
    lifted: &Lifted,
    config: &RewriteConfig,
    sizes: &Sizes,
    deadline: Instant,
) -> Result<Option<Chosen>, RewriteError> {
    let size = |v: &str| sizes.of_var(v);
    let best = extract::extract_all_until(
        &runner.egraph,
        runner.roots[0],
        &config.objective,
        &size,
        Some(deadline),
    )
    .into_iter()
    .next();
    match best {
        Some(best) => {
            let names = node_names(&runner.egraph, lifted, &best.expr, &best.classes);
            Ok(Some((best.expr, names)))
        }
        None if Instant::now() > deadline => Ok(None),
        None => Err(RewriteError::Extraction),
    }
}

/// Lowers an extracted term and checks the cascade as every later stage will: `verify` finds
/// no problem and the loop phases are unambiguous ([`lower::phase_problems`]). Extraction only
/// chooses terms that lower to such cascades, so a failure here is a bug in the rewriter; it is
/// reported as [`RewriteError::Internal`] instead of handing an invalid cascade on.
pub fn lower_checked(
    expr: &RecExpr<Cx>,
    names: &[Option<String>],
    sig: &Signature,
) -> Result<Cascade, RewriteError> {
    let internal = |what: String| RewriteError::Internal(format!("{what}; the term was {expr}"));
    let out = lower(expr, names, sig).map_err(|e| match e {
        RewriteError::Unsupported { what, .. } => internal(format!("cannot lower {what}")),
        RewriteError::Internal(what) => internal(what),
        other => other,
    })?;
    // `verify` reports the loop plan's ambiguities too ([`lower::phase_problems`]).
    let problems: Vec<String> = crate::verify::verify(&out)
        .iter()
        .map(|e| e.to_string())
        .collect();
    if !problems.is_empty() {
        return Err(internal(format!(
            "the lowered cascade is invalid: {}\n{}",
            problems.join("; "),
            crate::dsl::print(&out)
        )));
    }
    Ok(out)
}

/// A name for each node of the extracted term: the input tensor its e-class computes. A fold
/// that replaces a reduction is the running form of it (`RSD` for `SD`); a fold, scan or
/// scan-prev of the input's own running state keeps the state's name.
fn node_names(
    egraph: &lang::CxGraph,
    lifted: &Lifted,
    expr: &RecExpr<Cx>,
    classes: &[egg::Id],
) -> Vec<Option<String>> {
    let folds = |node: &Cx| matches!(node, Cx::Fold(_) | Cx::Scan(_) | Cx::ScanPrev(_));
    // Names of the original tensors, by e-class, and whether a state's fold carries it.
    let mut class_names: BTreeMap<egg::Id, (String, bool)> = BTreeMap::new();
    // The e-class of every node of the input term, children first (one lookup each).
    let mut class_of: Vec<Option<egg::Id>> = Vec::with_capacity(lifted.expr.as_ref().len());
    for (i, node) in lifted.expr.as_ref().iter().enumerate() {
        let mut missing = false;
        let node = node
            .clone()
            .map_children(|c| match class_of[usize::from(c)] {
                Some(k) => k,
                None => {
                    missing = true;
                    c
                }
            });
        let class = if missing { None } else { egraph.lookup(node) };
        class_of.push(class);
        if let (Some(name), Some(class)) = (&lifted.names[i], class) {
            let state = folds(&lifted.expr[egg::Id::from(i)]);
            class_names
                .entry(egraph.find(class))
                .or_insert_with(|| (name.clone(), state));
        }
    }
    expr.as_ref()
        .iter()
        .zip(classes)
        .map(|(node, c)| {
            let (name, state) = class_names.get(&egraph.find(*c))?;
            match node {
                Cx::Fold(_) if !state => Some(format!("R{name}")),
                _ if folds(node) && !state => None,
                _ => Some(name.clone()),
            }
        })
        .collect()
}

/// One flat explanation line: the rule is written as `(Rewrite=> name …)` or `(Rewrite<= name …)`.
fn step(line: &str) -> Step {
    for (tag, forward) in [("(Rewrite=> ", true), ("(Rewrite<= ", false)] {
        if let Some(pos) = line.find(tag) {
            let rest = &line[pos + tag.len()..];
            let rule = rest
                .split(|c: char| c.is_whitespace() || c == ')')
                .next()
                .unwrap_or("")
                .to_string();
            return Step {
                rule,
                forward,
                term: line.to_string(),
            };
        }
    }
    Step {
        rule: "?".into(),
        forward: true,
        term: line.to_string(),
    }
}

/// The rank whose passes are reported: the objective's, else `M`, else the first rank.
fn pass_rank(cascade: &Cascade, config: &RewriteConfig) -> String {
    match &config.objective {
        Objective::Passes { rank, .. } | Objective::Streaming { rank, .. } => rank.clone(),
        Objective::Cost(_) => config
            .split_ranks
            .first()
            .cloned()
            .or_else(|| {
                cascade
                    .ranks
                    .iter()
                    .find(|r| !r.is_param)
                    .map(|r| r.name.clone())
            })
            .unwrap_or_default(),
    }
}

/// Rank sizes by index variable, with split sub-ranks derived from the tile.
#[derive(Debug, Clone)]
pub struct Sizes {
    by_var: BTreeMap<String, f64>,
}

impl Sizes {
    /// Sizes of every declared rank from `config.sizes`: a part of the cascade's own split
    /// may be left out (it is derived from the other part, or the inner part is the tile), and
    /// the tiles of the ranks the rewriter may split are `config.tile` wide.
    pub fn new(cascade: &Cascade, config: &RewriteConfig) -> Result<Sizes, RewriteError> {
        let tiles = Tiles::of_cascade(cascade);
        let mut sizes: Vec<Option<i64>> = cascade
            .ranks
            .iter()
            .map(|r| config.sizes.sizes.get(&r.name).copied())
            .collect();
        loop {
            let mut changed = false;
            for (p, r) in cascade.ranks.iter().enumerate() {
                let Some((o, i)) = r.split else { continue };
                let (o, i) = (o.index(), i.index());
                let derived = match (sizes[p], sizes[o], sizes[i]) {
                    (Some(n), None, Some(t)) => Some((o, (n + t - 1) / t.max(1))),
                    (Some(n), Some(k), None) => Some((i, (n + k - 1) / k.max(1))),
                    (Some(n), None, None) => Some((i, config.tile.clamp(1, n.max(1)))),
                    (None, Some(k), Some(t)) => Some((p, k * t)),
                    _ => None,
                };
                if let Some((slot, n)) = derived {
                    sizes[slot] = Some(n);
                    changed = true;
                }
            }
            // A split's second variable (`N0`) has its inner part's size, always.
            for (k, r) in cascade.ranks.iter().enumerate() {
                if let Some(i) = r.range_of
                    && sizes[k] != sizes[i.index()]
                    && sizes[i.index()].is_some()
                {
                    sizes[k] = sizes[i.index()];
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let mut by_var = BTreeMap::new();
        for (r, n) in cascade.ranks.iter().zip(&sizes) {
            let Some(n) = *n else {
                return Err(RewriteError::MissingSize {
                    rank: r.name.clone(),
                });
            };
            let v = r.name.to_lowercase();
            if r.split.is_none() {
                let tile = config.tile.clamp(1, n.max(1));
                by_var
                    .entry(tiles.outer(&v))
                    .or_insert((n as f64 / tile as f64).ceil());
                by_var.entry(tiles.inner(&v)).or_insert(tile as f64);
                by_var.entry(tiles.key(&v)).or_insert(tile as f64);
            }
        }
        // Declared ranks last: a cascade's own split parts are its tiles.
        for (r, n) in cascade.ranks.iter().zip(&sizes) {
            by_var.insert(r.name.to_lowercase(), n.unwrap_or(1) as f64);
        }
        Ok(Sizes { by_var })
    }

    pub fn of_var(&self, v: &str) -> f64 {
        self.by_var.get(v).copied().unwrap_or(1.0)
    }

    fn of_rank(&self, cascade: &Cascade, r: RankId) -> f64 {
        self.of_var(&cascade.var_name(r))
    }
}

fn metrics(
    cascade: &Cascade,
    pass_rank: &str,
    sizes: &Sizes,
    config: &RewriteConfig,
) -> Result<Metrics, RewriteError> {
    let ops = op_totals(cascade, sizes);
    let cost = cascade_cost(cascade, sizes, config.objective.cost());
    // The pass analysis of the cascade is authoritative; the term-level count that extraction
    // minimises (`extract::term_passes`) agrees with it, which the tests check.
    let passes = cascade
        .rank_by_name(pass_rank)
        .map_or(0, |r| crate::passes::passes(cascade, r).passes);
    Ok(Metrics { passes, ops, cost })
}

/// The cost of a cascade under `cost`: each Einsum's ops over its iteration space, an Einsum
/// of the loop (its output indexed by the iterative rank) in as many steps as the rank has.
pub fn cascade_cost(cascade: &Cascade, sizes: &Sizes, cost: &dyn CostModel) -> f64 {
    let iterative = cascade.iterative_ranks().first().copied();
    let mut total = 0.0;
    for id in cascade.einsum_ids() {
        let points: f64 = cascade
            .iteration_space(id)
            .iter()
            .map(|r| sizes.of_rank(cascade, *r))
            .product();
        let mut out = Vec::new();
        for idx in &cascade.einsum(id).output.indices {
            idx.collect_vars(&mut out);
        }
        let steps = match iterative {
            Some(r) if out.contains(&r) => sizes.of_rank(cascade, r),
            _ => 1.0,
        };
        for (kind, n) in point_ops(cascade, id) {
            total += cost.op_cost_in_steps(kind, f64::from(n) * points, steps);
        }
    }
    total
}

/// Ops of each kind over a whole cascade: per-point ops times the iteration space.
pub fn op_totals(cascade: &Cascade, sizes: &Sizes) -> BTreeMap<OpKind, f64> {
    let mut total = BTreeMap::new();
    for id in cascade.einsum_ids() {
        let points: f64 = cascade
            .iteration_space(id)
            .iter()
            .map(|r| sizes.of_rank(cascade, *r))
            .product();
        for (kind, n) in point_ops(cascade, id) {
            *total.entry(kind).or_insert(0.0) += f64::from(n) * points;
        }
    }
    total
}

#[cfg(test)]
mod tests;
