//! The loop plan: the one place that decides when each Einsum runs, over which points, and
//! what it waits for. `eval`, `passes`, `verify`, the scheduler and both code-generation
//! lowerings read it instead of deciding for themselves.
//!
//! The rules (stated normatively in [`crate::ast`]):
//! * `init` Einsums run once, first, in program order ([`Phase::Init`]).
//! * With an iterative rank `R`, an `einsums` Einsum whose *output indices* use `R`'s variable
//!   (`BQK[m1,m0,p]`, `RM[m1+1,p]`) runs once per step `r = 0, 1, …` until the stop condition
//!   holds, in program order within a step ([`Phase::Loop`]).
//! * Every other `einsums` Einsum runs once: after the loop when it reads (directly or through
//!   another such Einsum) a tensor the loop writes ([`Phase::PostLoop`]), before it otherwise
//!   ([`Phase::PreLoop`]). An Einsum that reduces `R` itself (`MX[e] = max(m) K[e,m]` beside a
//!   fold over `m`) therefore reduces the whole rank once; it never runs inside the loop.
//!   Without an iterative rank every `einsums` Einsum is `PreLoop`, in program order.
//! * The plan records the ambiguities `verify` rejects ([`Ambiguity`]): a step that reads a
//!   tensor only complete after the loop, a step that reads a step the loop has not reached, an
//!   `init` Einsum that writes state at `r+k`, and more than one iterative rank.
//!
//! Each Einsum also gets its iteration space and a *guard*: affine conditions that hold at every
//! point where its value can be present, derived from filters through the merges (∩ keeps the
//! conditions of both operands, ∪ only those common to both, ← those of the right operand, `1`
//! none) and through the tensors that carry them (`BQK` filtered by `m <= p` guards `LM`'s
//! points too). A guard is an over-approximation of presence: a point that fails it is absent.

use crate::ast::{
    Access, Cascade, Compare, EinsumId, Expr, ExprId, IndexExpr, Merge, RankId, Section, TensorId,
    Writers,
};
use crate::graph;
use crate::passes::{self, PassReport};

/// When an Einsum runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// The `init` section: once, before everything else.
    Init,
    /// Once, before the iterative loop (every body Einsum when there is no loop).
    PreLoop,
    /// Once per step of the iterative rank.
    Loop,
    /// Once, after the loop has finished.
    PostLoop,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Init => "init",
            Phase::PreLoop => "pre-loop",
            Phase::Loop => "loop",
            Phase::PostLoop => "post-loop",
        }
    }
}

/// The points an Einsum visits: every rank whose variable it uses, split into the output's
/// (free) ranks and the reduced ones, with the guard every present point satisfies.
#[derive(Debug, Clone, PartialEq)]
pub struct IterationSpace {
    /// Every rank variable of the output, the operands and the filters, sorted.
    pub ranks: Vec<RankId>,
    /// The ranks of the output indices, sorted.
    pub free: Vec<RankId>,
    /// `ranks` minus `free`: what the Einsum reduces.
    pub reduced: Vec<RankId>,
    /// Conditions (a conjunction) that hold wherever the Einsum's value can be present.
    pub guard: Vec<Compare>,
}

/// One access of an Einsum's right-hand side and the Einsums that write what it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub tensor: TensorId,
    /// The writers this access depends on within a step, in program order: every writer of
    /// the tensor except those whose value it sees only from an earlier step (the init write
    /// of a state is a producer; its update, read at `r`, is not).
    pub producers: Vec<EinsumId>,
    /// The access sees state an earlier step wrote (`RM[m1,p]` in `RM[m1+1,p] = …`).
    pub carried: bool,
}

/// Where and how one Einsum runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub einsum: EinsumId,
    pub phase: Phase,
    pub space: IterationSpace,
    /// Every access of the right-hand side, left to right (as [`Cascade::accesses`]).
    pub reads: Vec<Read>,
}

/// What the interpreter and the host code of a lowering execute, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// One Einsum over its whole iteration space.
    Run(EinsumId),
    /// The iterative loop: `body` in order, once per step of `rank`, until the stop holds.
    Loop { rank: RankId, body: Vec<EinsumId> },
}

/// A construct whose meaning would depend on who runs it; `verify` reports each one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ambiguity {
    /// A per-step Einsum reads a tensor that exists only once the loop has finished.
    LoopReadsPostLoop {
        einsum: EinsumId,
        access: usize,
        tensor: TensorId,
        /// The post-loop Einsum that writes it.
        writer: EinsumId,
    },
    /// A per-step Einsum reads another step of a tensor the loop writes than the current one,
    /// an earlier one or the state this step has already written (a later step, or the final
    /// state `S[M1]`).
    ReadsOtherStep {
        einsum: EinsumId,
        access: usize,
        tensor: TensorId,
        position: usize,
    },
    /// An `init` Einsum writes state at a shifted index of the iterative rank.
    InitWritesStep { einsum: EinsumId },
    /// More than one rank is iterative.
    SeveralIterativeRanks { ranks: Vec<RankId> },
}

/// The loop plan of one cascade. Build it with [`LoopPlan::new`] on a cascade whose ids are
/// valid; `verify` reports its [`Ambiguity`]s, and stages run only cascades without any.
#[derive(Debug, Clone, PartialEq)]
pub struct LoopPlan {
    /// The iterative rank, if any (the first when there are several, which `verify` rejects).
    pub iterative: Option<RankId>,
    /// One placement per Einsum, indexed by [`EinsumId`].
    pub placements: Vec<Placement>,
    pub steps: Vec<Step>,
    pub ambiguities: Vec<Ambiguity>,
    /// What each tensor's presence guarantees to its readers (see [`guards`]).
    carried: TensorGuards,
}

/// What each tensor's presence guarantees to its readers, without the rest of a plan: what
/// lint compares the operands of a merge by.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorGuards(Vec<Option<TensorGuard>>);

impl TensorGuards {
    pub fn of(c: &Cascade) -> TensorGuards {
        TensorGuards(guards(c).1)
    }

    /// [`LoopPlan::guard_of`] of every node of the expression rooted at `root`, in the order of
    /// [`Cascade::post_order`], computed in one bottom-up pass.
    pub fn node_guards(&self, c: &Cascade, root: ExprId) -> Vec<Vec<Compare>> {
        let mut out = node_domains::<Vec<Compare>>(c, root, &self.0);
        for guard in &mut out {
            dedup_conds(guard);
        }
        out
    }
}

impl LoopPlan {
    pub fn new(c: &Cascade) -> LoopPlan {
        let ranks = c.iterative_ranks();
        let iterative = ranks.first().copied();
        let phases = phases(c, iterative);
        let (guards, carried) = guards(c);
        let writers = c.writers();
        let placements = c
            .einsum_ids()
            .zip(guards)
            .map(|(id, guard)| Placement {
                einsum: id,
                phase: phases[id.index()],
                space: space(c, id, guard),
                reads: reads(c, &writers, id),
            })
            .collect();
        let ambiguities = LoopPlan::ambiguities(c);
        LoopPlan {
            iterative,
            placements,
            steps: steps(c, &phases, iterative),
            ambiguities,
            carried: TensorGuards(carried),
        }
    }

    /// The ambiguities alone (what `verify` needs), without iteration spaces or guards.
    pub fn ambiguities(c: &Cascade) -> Vec<Ambiguity> {
        let ranks = c.iterative_ranks();
        let iterative = ranks.first().copied();
        let phases = phases(c, iterative);
        let mut ambiguities = Vec::new();
        if ranks.len() > 1 {
            ambiguities.push(Ambiguity::SeveralIterativeRanks { ranks });
        }
        if let Some(r) = iterative {
            ambiguities.extend(step_ambiguities(c, &phases, r));
        }
        ambiguities
    }

    /// The guard of one expression node of the cascade: the conditions every point where it
    /// can be present satisfies (the masking check compares an operator's operands by it).
    pub fn guard_of(&self, c: &Cascade, id: ExprId) -> Vec<Compare> {
        let mut g: Vec<Compare> = expr_domain(c, id, &self.carried.0);
        dedup_conds(&mut g);
        g
    }

    /// [`TensorGuards::node_guards`] with this plan's guards.
    pub fn node_guards(&self, c: &Cascade, root: ExprId) -> Vec<Vec<Compare>> {
        self.carried.node_guards(c, root)
    }

    pub fn placement(&self, id: EinsumId) -> &Placement {
        &self.placements[id.index()]
    }

    pub fn phase(&self, id: EinsumId) -> Phase {
        self.placement(id).phase
    }

    /// Einsums of one phase, in program order.
    pub fn in_phase(&self, phase: Phase) -> impl Iterator<Item = EinsumId> + '_ {
        self.placements
            .iter()
            .filter(move |p| p.phase == phase)
            .map(|p| p.einsum)
    }

    /// The body Einsums (everything but `init`), in program order.
    pub fn body(&self) -> impl Iterator<Item = EinsumId> + '_ {
        self.placements
            .iter()
            .filter(|p| p.phase != Phase::Init)
            .map(|p| p.einsum)
    }

    /// Pass analysis over `rank` (and its split parts): the one pass count every stage uses.
    pub fn passes(&self, c: &Cascade, rank: RankId) -> PassReport {
        passes::passes_with(c, self, rank)
    }
}

/// Classifies every Einsum; see the module doc for the rules.
fn phases(c: &Cascade, iterative: Option<RankId>) -> Vec<Phase> {
    let mut loop_dependent = vec![false; c.tensors.len()];
    c.einsum_ids()
        .map(|id| {
            let e = c.einsum(id);
            if e.section == Section::Init {
                return Phase::Init;
            }
            let Some(r) = iterative else {
                return Phase::PreLoop;
            };
            let phase = if writes_step(&e.output, r) {
                Phase::Loop
            } else if c
                .accesses(e.value)
                .iter()
                .any(|a| loop_dependent[a.tensor.index()])
            {
                Phase::PostLoop
            } else {
                Phase::PreLoop
            };
            if phase != Phase::PreLoop {
                loop_dependent[e.output.tensor.index()] = true;
            }
            phase
        })
        .collect()
}

/// Whether an output access indexes some dimension by the iterative variable.
fn writes_step(output: &Access, r: RankId) -> bool {
    let mut vars = Vec::new();
    for idx in &output.indices {
        idx.collect_vars(&mut vars);
    }
    vars.contains(&r)
}

fn steps(c: &Cascade, phases: &[Phase], iterative: Option<RankId>) -> Vec<Step> {
    let of = |phase: Phase| {
        c.einsum_ids()
            .filter(move |id| phases[id.index()] == phase)
            .map(Step::Run)
    };
    let mut steps: Vec<Step> = of(Phase::Init).chain(of(Phase::PreLoop)).collect();
    let body: Vec<EinsumId> = c
        .einsum_ids()
        .filter(|id| phases[id.index()] == Phase::Loop)
        .collect();
    if let Some(rank) = iterative
        && !body.is_empty()
    {
        steps.push(Step::Loop { rank, body });
    }
    steps.extend(of(Phase::PostLoop));
    steps
}

fn space(c: &Cascade, id: EinsumId, guard: Vec<Compare>) -> IterationSpace {
    let ranks = c.iteration_space(id);
    let mut free = Vec::new();
    for idx in &c.einsum(id).output.indices {
        idx.collect_vars(&mut free);
    }
    free.sort();
    let reduced = ranks
        .iter()
        .copied()
        .filter(|r| !free.contains(r))
        .collect();
    IterationSpace {
        ranks,
        free,
        reduced,
        guard,
    }
}

fn reads(c: &Cascade, writers: &Writers, id: EinsumId) -> Vec<Read> {
    c.accesses(c.einsum(id).value)
        .into_iter()
        .map(|a| {
            let mut carried = false;
            let mut producers = Vec::new();
            for &w in writers.of_tensor(a.tensor) {
                if graph::carried_rank(&c.einsum(w).output, a).is_some() {
                    carried = true;
                } else {
                    producers.push(w);
                }
            }
            Read {
                tensor: a.tensor,
                producers,
                carried,
            }
        })
        .collect()
}

/// The ambiguities of per-step Einsums and `init` writes along the iterative rank `r`.
fn step_ambiguities(c: &Cascade, phases: &[Phase], r: RankId) -> Vec<Ambiguity> {
    let mut found = Vec::new();
    // For each tensor the loop writes: the index expression of each dimension its writers
    // step along, and the largest shift written (`S[r+1]` → 1).
    type StepWrite = Option<(IndexExpr, i64)>;
    let mut step_writes: Vec<Option<Vec<StepWrite>>> = vec![None; c.tensors.len()];
    let mut post_writer: Vec<Option<EinsumId>> = vec![None; c.tensors.len()];
    for id in c.einsum_ids() {
        let e = c.einsum(id);
        let t = e.output.tensor.index();
        match phases[id.index()] {
            Phase::Init => {
                if e.output.indices.iter().any(|i| i.shifted_var() == Some(r)) {
                    found.push(Ambiguity::InitWritesStep { einsum: id });
                }
            }
            Phase::Loop => {
                let dims = step_writes[t].get_or_insert_with(|| vec![None; e.output.indices.len()]);
                for (d, idx) in e.output.indices.iter().enumerate() {
                    let mut vars = Vec::new();
                    idx.collect_vars(&mut vars);
                    if !vars.contains(&r) || d >= dims.len() {
                        continue;
                    }
                    let shift = step_offset(idx, r).unwrap_or(0);
                    let keep = dims[d].as_ref().is_none_or(|(_, k)| shift > *k);
                    if keep {
                        dims[d] = Some((idx.clone(), shift));
                    }
                }
            }
            Phase::PostLoop => post_writer[t] = Some(id),
            Phase::PreLoop => {}
        }
    }
    for id in c
        .einsum_ids()
        .filter(|id| phases[id.index()] == Phase::Loop)
    {
        for (n, a) in c.accesses(c.einsum(id).value).into_iter().enumerate() {
            let t = a.tensor.index();
            if let Some(writer) = post_writer[t] {
                found.push(Ambiguity::LoopReadsPostLoop {
                    einsum: id,
                    access: n + 1,
                    tensor: a.tensor,
                    writer,
                });
                continue;
            }
            let Some(dims) = &step_writes[t] else {
                continue;
            };
            for (d, written) in dims.iter().enumerate() {
                let (Some((wexpr, wshift)), Some(ridx)) = (written, a.indices.get(d)) else {
                    continue;
                };
                let ok = match (step_offset(wexpr, r), step_offset(ridx, r)) {
                    // `r + j` read where `r + k` is written: this step or an earlier one.
                    (Some(_), Some(j)) => j <= *wshift,
                    // The initial state of a state tensor.
                    (Some(k), None) => k > 0 && matches!(ridx, IndexExpr::Lit(0)),
                    // A step written as `m1*M0+m0` must be read exactly so.
                    (None, _) => ridx == wexpr,
                };
                if !ok {
                    found.push(Ambiguity::ReadsOtherStep {
                        einsum: id,
                        access: n + 1,
                        tensor: a.tensor,
                        position: d,
                    });
                }
            }
        }
    }
    found
}

/// `Some(k)` when `idx` is `r + k` (`r` gives 0, `r - k` gives `-k`).
fn step_offset(idx: &IndexExpr, r: RankId) -> Option<i64> {
    match graph::offset(idx) {
        Some((v, k)) if v == r => Some(k),
        _ => None,
    }
}

/// A domain of presence: what the present points of a value satisfy, as guard propagation
/// builds it from filters through merges and the tensors that carry them. The loop plan's guard
/// is one conjunction (`Vec<Compare>`, where a `∪` keeps only the conditions common to both
/// operands); [`crate::presence`] keeps a union as a union (a [`crate::presence::Dnf`]). Both
/// are over-approximations of the present points, and both come from [`propagate`], so the
/// rules of propagation are written once.
pub(crate) trait Domain: Clone {
    /// Present where every condition holds (everywhere when there is none).
    fn all_of(conds: Vec<Compare>) -> Self;
    /// `∩`: present where both are.
    fn and(self, other: Self) -> Self;
    /// `∪`: present where either is.
    fn or(self, other: Self) -> Self;
    /// Each conjunction of the domain replaced by `f` of it.
    fn each_conj(&self, f: &dyn Fn(&[Compare]) -> Vec<Compare>) -> Self;
}

/// The loop plan's guard: one conjunction. `and` concatenates (callers deduplicate once, at
/// the end, so that a long chain of `∩` stays linear).
impl Domain for Vec<Compare> {
    fn all_of(conds: Vec<Compare>) -> Self {
        conds
    }
    fn and(mut self, other: Self) -> Self {
        self.extend(other);
        self
    }
    fn or(self, other: Self) -> Self {
        self.into_iter().filter(|k| other.contains(k)).collect()
    }
    fn each_conj(&self, f: &dyn Fn(&[Compare]) -> Vec<Compare>) -> Self {
        f(self)
    }
}

/// What a tensor's single writer guarantees about its present points, in the writer's output
/// variables, and the variable of each dimension.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Carried<D> {
    pub domain: D,
    pub vars: Vec<RankId>,
}

type TensorGuard = Carried<Vec<Compare>>;

/// The presence of every Einsum in domain `D` (each passed through `widen` before a tensor
/// carries it on), and what each tensor carries to its readers. Only tensors with one writer
/// whose output indices are plain variables carry anything; what they carry keeps at most
/// [`MAX_CARRIED_CONDS`] small conditions per conjunction, over the writer's output variables.
pub(crate) fn propagate<D: Domain>(
    c: &Cascade,
    widen: &dyn Fn(EinsumId, D) -> D,
) -> (Vec<D>, Vec<Option<Carried<D>>>) {
    let mut carried: Vec<Option<Carried<D>>> = vec![None; c.tensors.len()];
    let mut writers = vec![0usize; c.tensors.len()];
    for e in &c.einsums {
        writers[e.output.tensor.index()] += 1;
    }
    let mut out = Vec::with_capacity(c.einsums.len());
    for id in c.einsum_ids() {
        let e = c.einsum(id);
        let filters: Vec<Compare> = e
            .output
            .filters
            .iter()
            .flat_map(|f| f.conds.iter().cloned())
            .collect();
        let domain = widen(
            id,
            expr_domain(c, e.value, &carried).and(D::all_of(filters)),
        );
        let vars: Option<Vec<RankId>> = e
            .output
            .indices
            .iter()
            .map(|i| match i {
                IndexExpr::Var(v) => Some(*v),
                _ => None,
            })
            .collect();
        let t = e.output.tensor.index();
        if writers[t] == 1
            && let Some(vars) = vars
        {
            let kept = domain.each_conj(&|conj| {
                let mut kept: Vec<Compare> = Vec::new();
                for k in conj {
                    if kept.len() < MAX_CARRIED_CONDS
                        && uses_only(k, &vars)
                        && carriable(k)
                        && !kept.contains(k)
                    {
                        kept.push(k.clone());
                    }
                }
                kept
            });
            carried[t] = Some(Carried { domain: kept, vars });
        }
        out.push(domain);
    }
    (out, carried)
}

/// The guard of every Einsum, in the Einsum's own variables, and what each tensor carries.
fn guards(c: &Cascade) -> (Vec<Vec<Compare>>, Vec<Option<TensorGuard>>) {
    let (mut out, carried) = propagate::<Vec<Compare>>(c, &|_, g| g);
    for guard in &mut out {
        dedup_conds(guard);
    }
    (out, carried)
}

/// The most conditions a tensor carries to its readers, and the deepest index expression among
/// them. A guard is an over-approximation, so dropping a condition keeps it sound; the caps
/// keep guards from growing along a chain of Einsums that each shift an index.
const MAX_CARRIED_CONDS: usize = 32;
const MAX_CARRIED_DEPTH: usize = 16;

/// The domain of the expression rooted at `id`, computed bottom-up over its post-order with a
/// stack of operand domains (no recursion, whatever the depth).
pub(crate) fn expr_domain<D: Domain>(c: &Cascade, id: ExprId, carried: &[Option<Carried<D>>]) -> D {
    let mut stack: Vec<D> = Vec::new();
    for node in c.post_order(id) {
        let d = combine(c.expr(node), &mut || stack.pop(), carried);
        stack.push(d);
    }
    stack.pop().unwrap_or_else(|| D::all_of(Vec::new()))
}

/// [`expr_domain`] of every node of the expression rooted at `root`, in post-order.
fn node_domains<D: Domain>(c: &Cascade, root: ExprId, carried: &[Option<Carried<D>>]) -> Vec<D> {
    let mut out: Vec<D> = Vec::new();
    // Positions in `out` of the operands not yet taken by their parent.
    let mut stack: Vec<usize> = Vec::new();
    for node in c.post_order(root) {
        let d = combine(
            c.expr(node),
            &mut || stack.pop().map(|i| out[i].clone()),
            carried,
        );
        stack.push(out.len());
        out.push(d);
    }
    out
}

/// The domain of one node from its operands' (taken from `pop`, the right one first): an
/// access is present where its filters and what its tensor carries hold, a function where its
/// operand is, and a merge by its rule (`∩` both, `∪` either, `→` the right, `*` everywhere).
fn combine<D: Domain>(
    node: &Expr,
    pop: &mut dyn FnMut() -> Option<D>,
    carried: &[Option<Carried<D>>],
) -> D {
    let mut operand = || pop().unwrap_or_else(|| D::all_of(Vec::new()));
    match node {
        Expr::Access(a) => {
            let own = D::all_of(a.filters.iter().flat_map(|f| f.conds.clone()).collect());
            match &carried[a.tensor.index()] {
                Some(t) => own.and(t.domain.each_conj(&|conj| {
                    conj.iter()
                        .map(|k| substitute(k, &t.vars, &a.indices))
                        .collect()
                })),
                None => own,
            }
        }
        Expr::Const(_) => D::all_of(Vec::new()),
        Expr::Unary(..) => operand(),
        Expr::Binary { merge, .. } => {
            let r = operand();
            let l = operand();
            match merge {
                Merge::Intersect => l.and(r),
                Merge::Union => l.or(r),
                Merge::Right => r,
                Merge::All => D::all_of(Vec::new()),
            }
        }
    }
}

/// Whether a condition is small enough to carry on to a tensor's readers.
fn carriable(cond: &Compare) -> bool {
    cond.lhs.depth().max(cond.rhs.depth()) <= MAX_CARRIED_DEPTH
}

fn dedup_conds(conds: &mut Vec<Compare>) {
    let mut seen: Vec<Compare> = Vec::with_capacity(conds.len());
    conds.retain(|k| {
        let new = !seen.contains(k);
        if new {
            seen.push(k.clone());
        }
        new
    });
}

fn uses_only(cond: &Compare, vars: &[RankId]) -> bool {
    let mut used = Vec::new();
    cond.lhs.collect_vars(&mut used);
    cond.rhs.collect_vars(&mut used);
    used.iter().all(|v| vars.contains(v))
}

/// `cond` with the writer's variable of each dimension replaced by the reader's index there.
fn substitute(cond: &Compare, vars: &[RankId], indices: &[IndexExpr]) -> Compare {
    let sub = |e: &IndexExpr| substitute_expr(e, vars, indices);
    Compare {
        lhs: sub(&cond.lhs),
        op: cond.op,
        rhs: sub(&cond.rhs),
    }
}

fn substitute_expr(e: &IndexExpr, vars: &[RankId], indices: &[IndexExpr]) -> IndexExpr {
    let sub = |x: &IndexExpr| Box::new(substitute_expr(x, vars, indices));
    match e {
        IndexExpr::Var(v) => match vars.iter().position(|w| w == v) {
            Some(d) if d < indices.len() => indices[d].clone(),
            _ => e.clone(),
        },
        IndexExpr::Size(_) | IndexExpr::Lit(_) => e.clone(),
        IndexExpr::Add(a, b) => IndexExpr::Add(sub(a), sub(b)),
        IndexExpr::Sub(a, b) => IndexExpr::Sub(sub(a), sub(b)),
        IndexExpr::Mul(a, b) => IndexExpr::Mul(sub(a), sub(b)),
    }
}
