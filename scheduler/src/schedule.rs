//! The scheduler: binds each Einsum to a unit, partitions the key and query ranks over the
//! array, finds the passes, sizes the buffer and counts the per-tile work and data movement.
//!
//! Nothing here knows which paper configuration it runs: the behaviour comes from the cascade
//! (its ranks, reductions and passes) and the architecture (unit ops, binding policy, buffer,
//! fusion and interleaving). The ranks take roles from the cascade's structure: the *query* rank
//! is the largest rank of the outputs (P), the *key* rank the largest reduced rank (M, possibly
//! split into a temporal outer M1 and a spatial inner M0 with M0 = array rows).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use cascade_ir::LoopPlan;
use cascade_ir::ops::{PointOps, point_ops};
use cascade_ir::{Cascade, EinsumId, Expr, IndexExpr, RankId, Section, TensorId, TensorKind};

use crate::arch::{ArchSpec, Fusion, UnitId};
use crate::workload::Problem;

/// A problem with the caller's input (not with the hardware): a rank without a size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("rank {rank} has no size: the workload gives {given}; add {rank}=N to the shape")]
    MissingSize { rank: String, given: String },
    #[error(
        "the problem {given} is too large to count: the product of all rank sizes must stay below 2^56"
    )]
    TooLarge { given: String },
}

/// Why a cascade cannot run on an architecture. A value, not an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Infeasible {
    pub reason: String,
}

impl fmt::Display for Infeasible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// The result of scheduling: a schedule, or the reason there is none.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Scheduled(Box<Schedule>),
    Infeasible(Infeasible),
}

/// How an Einsum's iteration space relates to the array tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Iterates both the spatial key rank and the query rank: one point per PE of the tile.
    Tile,
    /// Iterates the query rank but not the spatial key rank: per-query (row) work.
    Row,
    /// Iterates the spatial key rank but not the query rank: per-key work.
    Key,
    /// Neither.
    Scalar,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Tile => "tile",
            Level::Row => "row",
            Level::Key => "key",
            Level::Scalar => "scalar",
        })
    }
}

/// How the key rank (M) and query rank (P) are cut over the array and the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub key_rank: String,
    pub query_rank: String,
    /// Whether the cascade itself splits the key rank (M -> M1 M0).
    pub split: bool,
    pub m: u64,
    /// Keys per tile: the array rows.
    pub m0: u64,
    /// Key tiles.
    pub m1: u64,
    pub p: u64,
    /// Queries per tile: the array columns.
    pub p0: u64,
    /// Query tiles resident in the buffer at once.
    pub p1: u64,
    /// Times the key-side inputs are streamed: `ceil(P / (P1·P0))`.
    pub p2: u64,
}

impl Partition {
    /// Key tiles × query tiles.
    pub fn tiles(&self) -> u64 {
        self.m1 * self.p.div_ceil(self.p0)
    }
}

/// One Einsum's placement and work, per attention instance (one batch element, one head).
#[derive(Debug, Clone, PartialEq)]
pub struct EinsumPlan {
    pub id: EinsumId,
    /// The tensor it writes.
    pub name: String,
    pub unit: UnitId,
    pub level: Level,
    /// Pass over the key rank (0-based).
    pub pass: u32,
    /// Tile lag in the pipelined epoch: this Einsum works on tile `t - stage` in epoch `t`.
    pub stage: u32,
    /// Whether it runs once per key tile (inside the key loop) rather than once per query.
    pub per_key_tile: bool,
    pub phase: usize,
    pub ops: PointOps,
    /// Iteration-space points.
    pub points: u64,
    pub cycles_per_point: u64,
    /// Unit cycles: points spread over the PEs the Einsum's spatial ranks occupy.
    pub cycles: u64,
    /// Energy-table actions of the compute.
    pub actions: BTreeMap<String, u64>,
    pub register_reads: u64,
    pub register_writes: u64,
    /// Same-iteration producers (indexes into [`Schedule::einsums`]); loop-carried reads of
    /// the previous iteration's state are not dependencies.
    pub deps: Vec<usize>,
    /// A spatial reduction over the key tile on the tile unit: its result leaves the array only
    /// after the partial sums have drained through the rows.
    pub drains: bool,
}

/// Where a tensor lives while a phase runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Residency {
    /// In PE registers of the unit that produces and consumes it.
    Register,
    /// Passed from one unit to the next over the array edge.
    Link,
    /// Kept in the global buffer for the resident queries (`words_per_query` each).
    Buffer { words_per_query: u64 },
    /// Streamed from DRAM one tile at a time (`tile_words`), `times` times.
    Streamed { tile_words: u64, times: u64 },
    /// Crosses a pass barrier; `spill` of it lives in DRAM, the rest in the buffer.
    PassState { words_per_query: u64, spill: f64 },
    /// Read from or written to DRAM once (a phase boundary or an output).
    Dram,
}

impl fmt::Display for Residency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Residency::Register => write!(f, "registers"),
            Residency::Link => write!(f, "array link"),
            Residency::Buffer { words_per_query } => {
                write!(f, "buffer ({words_per_query} words/query)")
            }
            Residency::Streamed { tile_words, times } => {
                write!(f, "streamed ({tile_words}-word tiles, {times}x)")
            }
            Residency::PassState {
                words_per_query,
                spill,
            } => {
                write!(
                    f,
                    "buffer across passes ({words_per_query} words/query, {:.1}% spilled)",
                    spill * 100.0
                )
            }
            Residency::Dram => write!(f, "DRAM"),
        }
    }
}

/// Words moved per attention instance.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Traffic {
    pub dram_read: f64,
    pub dram_write: f64,
    pub buffer_read: f64,
    pub buffer_write: f64,
}

/// A set of Einsums that run pipelined together; phases run one after another.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    /// Indexes into [`Schedule::einsums`].
    pub einsums: Vec<usize>,
    pub partition: Partition,
    pub passes: u32,
    pub placements: Vec<(String, Residency)>,
    pub traffic: Traffic,
    /// Buffer words the resident queries and streamed tiles need.
    pub buffer_words: u64,
    /// Fraction of the pass-crossing state that does not fit and goes to DRAM.
    pub spill: f64,
    /// Cycles the tile unit stalls per tile waiting for a reduction to drain (no interleaving).
    pub stall_per_tile: u64,
    /// Pipeline depth in tiles (the largest stage).
    pub stages: u32,
    pub loop_order: Vec<String>,
    /// Per unit: the work of one epoch, as text (`(SLNV[t-3] | BQK[t]) → LM[t] → …`).
    pub epochs: Vec<(UnitId, String)>,
}

/// A complete schedule of one cascade on one architecture for one problem.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub cascade: String,
    pub arch: String,
    pub problem: Problem,
    pub einsums: Vec<EinsumPlan>,
    pub phases: Vec<Phase>,
}

impl Schedule {
    pub fn instances(&self) -> u64 {
        self.problem.instances()
    }
}

/// Rank roles derived from the cascade's structure and the problem sizes.
struct Roles {
    sizes: Vec<u64>,
    query: Option<RankId>,
    /// The key rank as declared (M), its temporal part (M1 or M) and spatial part (M0 or M).
    key: Option<RankId>,
    key_temporal: Option<RankId>,
    key_spatial: Option<RankId>,
    split: bool,
    /// Whether the spatial key rank can be spread over PEs: not when state is carried along it.
    key_parallel: bool,
    m: u64,
    m0: u64,
    m_tiles: u64,
    p: u64,
    p0: u64,
    p_tiles: u64,
}

impl Roles {
    /// Ranks whose full reduction is a pass barrier: the key rank and its temporal part, not
    /// the spatial part of a split (one tile of it is held in the array).
    fn barrier(&self, r: RankId) -> bool {
        Some(r) == self.key || Some(r) == self.key_temporal
    }
}

/// Schedules `cascade` on `arch` for `problem`.
pub fn schedule(
    cascade: &Cascade,
    arch: &ArchSpec,
    problem: &Problem,
) -> Result<Outcome, ScheduleError> {
    let tile_unit = arch.unit(arch.tile_unit());
    let roles = resolve_roles(cascade, problem, tile_unit.rows(), tile_unit.cols())?;
    // When each Einsum runs, what it reads and the passes over the key rank are the loop
    // plan's and the pass analysis' (`ir`), not decided here.
    let loop_plan = LoopPlan::new(cascade);
    let body: Vec<EinsumId> = loop_plan.body().collect();
    let alias = layout_aliases(cascade);
    let writer: BTreeMap<TensorId, usize> = body
        .iter()
        .enumerate()
        .map(|(i, &id)| (cascade.einsum(id).output.tensor, i))
        .collect();
    let iterative: BTreeSet<TensorId> = body
        .iter()
        .map(|&id| &cascade.einsum(id).output)
        .filter(|o| o.indices.iter().any(|i| i.shifted_var().is_some()))
        .map(|o| o.tensor)
        .collect();
    // Per body Einsum: each tensor read, and whether the read is loop-carried state (the
    // previous step's value, not a dependency within the step).
    let reads: Vec<Vec<(TensorId, bool)>> = body
        .iter()
        .map(|&id| {
            loop_plan
                .placement(id)
                .reads
                .iter()
                .map(|r| (r.tensor, r.carried))
                .collect()
        })
        .collect();
    let deps: Vec<Vec<usize>> = body
        .iter()
        .enumerate()
        .map(|(x, &id)| {
            let mut d: Vec<usize> = loop_plan
                .placement(id)
                .reads
                .iter()
                .flat_map(|r| r.producers.iter())
                .filter_map(|p| body.iter().position(|b| b == p))
                .filter(|&w| w != x)
                .collect();
            d.sort();
            d.dedup();
            d
        })
        .collect();
    let spaces: Vec<Vec<RankId>> = body
        .iter()
        .map(|&id| loop_plan.placement(id).space.ranks.clone())
        .collect();
    let reduced: Vec<Vec<RankId>> = body
        .iter()
        .map(|&id| loop_plan.placement(id).space.reduced.clone())
        .collect();
    let key_passes = roles.key.map(|k| loop_plan.passes(cascade, k));
    let pass: Vec<u32> = body
        .iter()
        .map(|&id| {
            key_passes
                .as_ref()
                .map_or(0, |r| r.einsums[id.index()].pass.saturating_sub(1))
        })
        .collect();

    // Binding.
    let mut units = Vec::with_capacity(body.len());
    let mut levels = Vec::with_capacity(body.len());
    for (i, &id) in body.iter().enumerate() {
        let name = &cascade.tensor(cascade.einsum(id).output.tensor).name;
        let ops = point_ops(cascade, id);
        let has = |r: Option<RankId>| r.is_some_and(|r| spaces[i].contains(&r));
        let level = match (has(roles.key_spatial), has(roles.query)) {
            (true, true) => Level::Tile,
            (false, true) => Level::Row,
            (true, false) => Level::Key,
            (false, false) => Level::Scalar,
        };
        levels.push(level);
        let unit = if let Some(u) = arch.explicit_binding(name) {
            if let Err(op) = arch.unit(u).cycles_per_point(&ops) {
                return Ok(Outcome::Infeasible(Infeasible {
                    reason: format!(
                        "{name} is bound to {} by the architecture, which has no {op} op",
                        arch.unit(u).name()
                    ),
                }));
            }
            u
        } else {
            let preferred = if level == Level::Tile {
                arch.tile_unit()
            } else {
                arch.row_unit()
            };
            if arch.unit(preferred).cycles_per_point(&ops).is_ok() {
                preferred
            } else {
                let fallback = arch
                    .unit_ids()
                    .filter(|&u| arch.unit(u).cycles_per_point(&ops).is_ok())
                    .max_by_key(|&u| (arch.unit(u).pes(), std::cmp::Reverse(u)));
                match fallback {
                    Some(u) => u,
                    None => {
                        let op = arch.unit(preferred).cycles_per_point(&ops).err();
                        let op = op.map_or_else(String::new, |o| o.to_string());
                        return Ok(Outcome::Infeasible(Infeasible {
                            reason: format!(
                                "no unit of {} executes `{op}`, which {name} needs",
                                arch.name()
                            ),
                        }));
                    }
                }
            }
        };
        units.push(unit);
    }

    // Work per Einsum.
    let size = |r: RankId| roles.sizes[r.index()];
    let mut plans = Vec::with_capacity(body.len());
    for (i, &id) in body.iter().enumerate() {
        let e = cascade.einsum(id);
        let unit = arch.unit(units[i]);
        let ops = point_ops(cascade, id);
        let cpp = unit
            .cycles_per_point(&ops)
            .expect("binding checked the ops");
        // A key rank that carries state from one element to the next runs in time, not space.
        let in_space = roles.key_spatial.is_some_and(|r| spaces[i].contains(&r));
        let has_r = in_space && roles.key_parallel;
        let has_c = roles.query.is_some_and(|r| spaces[i].contains(&r));
        let others: u64 = spaces[i]
            .iter()
            .filter(|&&r| (Some(r) != roles.key_spatial || !has_r) && Some(r) != roles.query)
            .map(|&r| size(r))
            .product();
        let r_size = roles.key_spatial.map_or(1, size);
        let points = others * if has_r { r_size } else { 1 } * if has_c { roles.p } else { 1 };
        let steps = if unit.is_2d() {
            let rows = if has_r {
                r_size.div_ceil(unit.rows())
            } else {
                1
            };
            let cols = if has_c {
                roles.p.div_ceil(unit.cols())
            } else {
                1
            };
            rows * cols * others
        } else {
            match (has_r, has_c) {
                (r, true) => (if r { r_size } else { 1 }) * roles.p.div_ceil(unit.cols()) * others,
                (true, false) => r_size.div_ceil(unit.cols()) * others,
                (false, false) => others,
            }
        };
        let mut actions = BTreeMap::new();
        for (kind, &count) in &ops {
            let imp = unit.op(*kind).expect("binding checked the ops");
            for (action, &n) in imp.actions() {
                let add = points.saturating_mul(u64::from(count)).saturating_mul(n);
                let slot = actions.entry(action.clone()).or_insert(0u64);
                *slot = slot.saturating_add(add);
            }
        }
        let out_points: u64 = e
            .output
            .indices
            .iter()
            .flat_map(|ix| {
                let mut v = Vec::new();
                ix.collect_vars(&mut v);
                v
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(size)
            .product();
        let per_key_tile = roles.key_temporal.is_some_and(|r| spaces[i].contains(&r));
        plans.push(EinsumPlan {
            id,
            name: cascade.tensor(e.output.tensor).name.clone(),
            unit: units[i],
            level: levels[i],
            pass: pass[i],
            stage: 0,
            per_key_tile,
            phase: 0,
            ops,
            points,
            cycles_per_point: cpp,
            cycles: steps.saturating_mul(cpp),
            actions,
            register_reads: 0,
            register_writes: out_points,
            deps: deps[i].clone(),
            drains: units[i] == arch.tile_unit()
                && roles.split
                && roles.key_spatial.is_some_and(|r| reduced[i].contains(&r)),
        });
    }

    // Phases: one fused phase, or runs of consecutive Einsums on one unit.
    let mut phase_members: Vec<Vec<usize>> = Vec::new();
    for i in 0..body.len() {
        let new_phase = match arch.fusion() {
            Fusion::Fused => phase_members.is_empty(),
            Fusion::None => phase_members
                .last()
                .is_none_or(|ph| plans[ph[0]].unit != plans[i].unit),
        };
        if new_phase {
            phase_members.push(Vec::new());
        }
        phase_members.last_mut().expect("pushed above").push(i);
    }
    let mut phases = Vec::new();
    for (k, members) in phase_members.iter().enumerate() {
        for &i in members {
            plans[i].phase = k;
        }
        let ctx = PhaseCtx {
            cascade,
            arch,
            roles: &roles,
            body: &body,
            reads: &reads,
            deps: &deps,
            writer: &writer,
            iterative: &iterative,
            alias: &alias,
            pass: &pass,
            spaces: &spaces,
            reduced: &reduced,
        };
        match plan_phase(&ctx, members, &mut plans) {
            Ok(phase) => phases.push(phase),
            Err(infeasible) => return Ok(Outcome::Infeasible(infeasible)),
        }
    }
    Ok(Outcome::Scheduled(Box::new(Schedule {
        cascade: cascade.name.clone(),
        arch: arch.name().to_string(),
        problem: problem.clone(),
        einsums: plans,
        phases,
    })))
}

/// Whether `tensor` is written shifted along `rank` (so `rank` indexes iterations of it).
fn is_iterated_rank(cascade: &Cascade, tensor: TensorId, rank: RankId) -> bool {
    cascade.einsums.iter().any(|e| {
        e.section == Section::Body
            && e.output.tensor == tensor
            && e.output
                .indices
                .iter()
                .any(|i| i.shifted_var() == Some(rank))
    })
}

/// Init Einsums that only re-index an input (`BK[e,m1,m0] = K[e, m1*M0+m0]`) are layouts of it.
fn layout_aliases(cascade: &Cascade) -> BTreeMap<TensorId, TensorId> {
    let mut alias = BTreeMap::new();
    for e in cascade
        .einsums
        .iter()
        .filter(|e| e.section == Section::Init)
    {
        if let Expr::Access(a) = cascade.expr(e.value)
            && cascade.tensor(a.tensor).kind == TensorKind::Input
        {
            alias.insert(e.output.tensor, a.tensor);
        }
    }
    alias
}

fn resolve_roles(
    cascade: &Cascade,
    problem: &Problem,
    rows: u64,
    cols: u64,
) -> Result<Roles, ScheduleError> {
    let parent: BTreeMap<RankId, RankId> = cascade
        .ranks
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            r.split
                .map(|(a, b)| [(a, RankId(i as u32)), (b, RankId(i as u32))])
        })
        .flatten()
        .collect();
    let base = |r: RankId| parent.get(&r).copied().unwrap_or(r);
    let given = || {
        problem
            .sizes
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut sizes = vec![0u64; cascade.ranks.len()];
    for (i, rank) in cascade.ranks.iter().enumerate() {
        if parent.contains_key(&RankId(i as u32)) {
            continue;
        }
        let needed = !rank.is_param || param_used(cascade, RankId(i as u32));
        match problem.sizes.get(&rank.name) {
            Some(&s) => sizes[i] = s.max(1),
            None if needed => {
                return Err(ScheduleError::MissingSize {
                    rank: rank.name.clone(),
                    given: given(),
                });
            }
            None => sizes[i] = 1,
        }
    }
    let mut split = false;
    let mut key_parts = None;
    for (i, rank) in cascade.ranks.iter().enumerate() {
        if let Some((outer, inner)) = rank.split {
            let whole = sizes[i];
            let inner_size = problem
                .sizes
                .get(&cascade.rank(inner).name)
                .copied()
                .unwrap_or(rows)
                .clamp(1, whole.max(1));
            sizes[inner.index()] = inner_size;
            sizes[outer.index()] = whole.div_ceil(inner_size);
            key_parts.get_or_insert((RankId(i as u32), outer, inner));
        }
    }
    // Query: the largest rank of the outputs; key: the largest other non-parameter rank that an
    // Einsum iterates.
    let out_ranks: BTreeSet<RankId> = cascade
        .outputs
        .iter()
        .flat_map(|&t| cascade.tensor(t).ranks.iter().map(|&r| base(r)))
        .collect();
    let query = out_ranks
        .iter()
        .copied()
        .max_by_key(|&r| (sizes[r.index()], std::cmp::Reverse(r)));
    let iterated: BTreeSet<RankId> = cascade
        .einsum_ids()
        .filter(|&id| cascade.einsum(id).section == Section::Body)
        .flat_map(|id| cascade.iteration_space(id))
        .map(base)
        .collect();
    let key = iterated
        .iter()
        .copied()
        .filter(|r| !out_ranks.contains(r) && !cascade.rank(*r).is_param)
        .max_by_key(|&r| (sizes[r.index()], std::cmp::Reverse(r)));
    let (key_temporal, key_spatial) = match (key, key_parts) {
        (Some(k), Some((whole, outer, inner))) if whole == k => {
            split = true;
            (Some(outer), Some(inner))
        }
        (k, _) => (k, k),
    };
    let m = key.map_or(1, |k| sizes[k.index()]);
    let (m0, m_tiles) = if split {
        (
            sizes[key_spatial.expect("split key").index()],
            sizes[key_temporal.expect("split key").index()],
        )
    } else {
        let m0 = rows.min(m).max(1);
        (m0, m.div_ceil(m0))
    };
    let p = query.map_or(1, |q| sizes[q.index()]);
    let p0 = cols.min(p).max(1);
    let key_parallel = key_spatial.is_none_or(|r| !cascade.iterative_ranks().contains(&r));
    // Every count below is a product of rank sizes; refuse problems whose iteration space
    // cannot be counted in 64 bits rather than overflow.
    let total = cascade
        .ranks
        .iter()
        .enumerate()
        .filter(|(i, _)| !parent.contains_key(&RankId(*i as u32)))
        .try_fold(1u64, |acc, (i, _)| acc.checked_mul(sizes[i]))
        .filter(|&t| t <= 1 << 56);
    if total.is_none() {
        return Err(ScheduleError::TooLarge { given: given() });
    }
    Ok(Roles {
        sizes,
        query,
        key,
        key_temporal,
        key_spatial,
        split,
        key_parallel,
        m,
        m0,
        m_tiles,
        p,
        p0,
        p_tiles: p.div_ceil(p0),
    })
}

fn param_used(cascade: &Cascade, rank: RankId) -> bool {
    let uses = |e: &IndexExpr| {
        fn walk(e: &IndexExpr, r: RankId) -> bool {
            match e {
                IndexExpr::Size(s) => *s == r,
                IndexExpr::Var(v) => *v == r,
                IndexExpr::Lit(_) => false,
                IndexExpr::Add(a, b) | IndexExpr::Sub(a, b) | IndexExpr::Mul(a, b) => {
                    walk(a, r) || walk(b, r)
                }
            }
        }
        walk(e, rank)
    };
    cascade.einsums.iter().any(|e| {
        let mut accesses = cascade.accesses(e.value);
        accesses.push(&e.output);
        accesses.iter().any(|a| {
            a.indices.iter().any(uses)
                || a.filters
                    .iter()
                    .any(|f| f.conds.iter().any(|c| uses(&c.lhs) || uses(&c.rhs)))
        })
    })
}

struct PhaseCtx<'a> {
    cascade: &'a Cascade,
    arch: &'a ArchSpec,
    roles: &'a Roles,
    body: &'a [EinsumId],
    reads: &'a [Vec<(TensorId, bool)>],
    deps: &'a [Vec<usize>],
    writer: &'a BTreeMap<TensorId, usize>,
    iterative: &'a BTreeSet<TensorId>,
    alias: &'a BTreeMap<TensorId, TensorId>,
    pass: &'a [u32],
    spaces: &'a [Vec<RankId>],
    reduced: &'a [Vec<RankId>],
}

/// What a tensor is to one phase.
enum Role {
    /// Comes from DRAM (a cascade input or another phase's output) and has the query rank.
    QueryInput,
    /// Comes from DRAM without the query rank: streamed tile by tile.
    StreamInput,
    /// Comes from DRAM with both the query and key ranks and is read in one pass: streamed
    /// tile by tile, once.
    TileInput,
    /// Loop-carried state with the query rank (written at `r+1`).
    State,
    /// A running reduction over key tiles kept per query.
    Accumulator,
    /// Crosses a pass barrier inside the phase.
    PassState,
    /// Produced and consumed in the same pass.
    Local,
}

fn plan_phase(
    ctx: &PhaseCtx<'_>,
    members: &[usize],
    plans: &mut [EinsumPlan],
) -> Result<Phase, Infeasible> {
    let (cascade, arch, roles) = (ctx.cascade, ctx.arch, ctx.roles);
    let src = |t: TensorId| ctx.alias.get(&t).copied().unwrap_or(t);
    let size = |r: RankId| roles.sizes[r.index()];
    let member: BTreeSet<usize> = members.iter().copied().collect();
    let tensor_words = |t: TensorId| -> u64 {
        cascade
            .tensor(src(t))
            .ranks
            .iter()
            .map(|&r| size(r))
            .product()
    };
    let has_query = |t: TensorId| {
        roles
            .query
            .is_some_and(|q| cascade.tensor(src(t)).ranks.contains(&q))
    };
    let has_key = |t: TensorId| {
        cascade.tensor(src(t)).ranks.iter().any(|&r| {
            Some(r) == roles.key || Some(r) == roles.key_temporal || Some(r) == roles.key_spatial
        })
    };
    let has_barrier = |t: TensorId| {
        cascade
            .tensor(src(t))
            .ranks
            .iter()
            .any(|&r| roles.barrier(r))
    };
    let words_per_query = |t: TensorId| tensor_words(t) / roles.p.max(1);
    let iter_words = |t: TensorId| -> u64 {
        // One iteration's worth of a loop-carried tensor: drop the iterated rank.
        let ranks = &cascade.tensor(t).ranks;
        ranks
            .iter()
            .filter(|&&r| !is_iterated_rank(cascade, t, r))
            .map(|&r| size(r))
            .product()
    };

    // Classify every tensor the phase touches.
    let mut roles_of: BTreeMap<TensorId, Role> = BTreeMap::new();
    let mut reader_passes: BTreeMap<TensorId, BTreeSet<u32>> = BTreeMap::new();
    for &x in members {
        for (t, _) in &ctx.reads[x] {
            reader_passes
                .entry(src(*t))
                .or_default()
                .insert(ctx.pass[x]);
        }
    }
    for &x in members {
        for (t, carried) in &ctx.reads[x] {
            let t = src(*t);
            let producer = ctx.writer.get(&t).copied().filter(|w| member.contains(w));
            let role = match producer {
                None if has_query(t) && has_key(t) && reader_passes[&t].len() == 1 => {
                    Role::TileInput
                }
                None if has_query(t) => Role::QueryInput,
                None => Role::StreamInput,
                Some(_) if ctx.iterative.contains(&t) && (*carried || has_query(t)) => Role::State,
                Some(w) if ctx.pass[w] < ctx.pass[x] && has_barrier(t) => Role::PassState,
                Some(w)
                    if has_query(t)
                        && plans[w].per_key_tile
                        && ctx.reduced[w].iter().any(|&r| roles.barrier(r)) =>
                {
                    Role::Accumulator
                }
                Some(_) => Role::Local,
            };
            let merge = match (roles_of.get(&t), &role) {
                (Some(Role::PassState), _) => continue,
                (_, _) => role,
            };
            roles_of.insert(t, merge);
        }
    }
    // Accumulators are also those written by a key-tile reduction even if read only later.
    for &w in members {
        let t = cascade.einsum(ctx.body[w]).output.tensor;
        if has_query(t)
            && plans[w].per_key_tile
            && ctx.reduced[w].iter().any(|&r| roles.barrier(r))
            && !roles_of.contains_key(&t)
        {
            roles_of.insert(t, Role::Accumulator);
        }
    }

    // Buffer occupancy per query and per streamed tile.
    let mut resident_per_query = 0u64;
    let mut stream_tile_words = 0u64;
    // Pass-crossing state: (words per query, first pass, last pass).
    let mut crossing: Vec<(TensorId, u64, u32, u32)> = Vec::new();
    for (&t, role) in &roles_of {
        let passes = reader_passes.get(&t).cloned().unwrap_or_default();
        match role {
            Role::QueryInput if passes.len() > 1 && has_barrier(t) => {
                let first = *passes.first().expect("read at least once");
                crossing.push((
                    t,
                    words_per_query(t),
                    first,
                    *passes.last().expect("non-empty"),
                ));
            }
            Role::QueryInput => resident_per_query += words_per_query(t),
            Role::StreamInput => {
                stream_tile_words += if has_key(t) {
                    tensor_words(t) / roles.m_tiles.max(1)
                } else {
                    tensor_words(t)
                };
            }
            Role::State => resident_per_query += iter_words(t) / roles.p.max(1),
            Role::Accumulator => resident_per_query += words_per_query(t),
            Role::PassState => {
                let w = ctx.writer[&t];
                crossing.push((
                    t,
                    words_per_query(t),
                    ctx.pass[w],
                    *passes.last().expect("read"),
                ));
            }
            Role::TileInput => {
                stream_tile_words += tensor_words(t) / (roles.m_tiles * roles.p_tiles).max(1)
            }
            Role::Local => {}
        }
    }
    let max_pass = members.iter().map(|&x| ctx.pass[x]).max().unwrap_or(0);
    let min_pass = members.iter().map(|&x| ctx.pass[x]).min().unwrap_or(0);
    let crossing_per_query = (min_pass..max_pass)
        .map(|b| {
            crossing
                .iter()
                .filter(|c| c.2 <= b && b < c.3)
                .map(|c| c.1)
                .sum::<u64>()
        })
        .max()
        .unwrap_or(0);

    let buffer = arch.buffer_words();
    let p0 = roles.p0;
    if stream_tile_words > buffer {
        return Err(Infeasible {
            reason: format!(
                "the {}-word buffer cannot hold one tile of the streamed inputs ({stream_tile_words} words)",
                buffer
            ),
        });
    }
    let avail = buffer - stream_tile_words;
    let need_tile = (resident_per_query + crossing_per_query) * p0;
    let (p1, spill) = if need_tile <= avail {
        let p1 = avail
            .checked_div(need_tile)
            .map_or(roles.p_tiles, |n| n.clamp(1, roles.p_tiles.max(1)));
        (p1, 0.0)
    } else if resident_per_query * p0 <= avail && crossing_per_query > 0 {
        let spill = (need_tile - avail) as f64 / (crossing_per_query * p0) as f64;
        (1, spill.clamp(0.0, 1.0))
    } else {
        return Err(Infeasible {
            reason: format!(
                "the {}-word buffer cannot hold one query tile: {} queries × {} words of state plus {} words of streamed tiles",
                buffer, p0, resident_per_query, stream_tile_words
            ),
        });
    };
    let p2 = roles.p_tiles.div_ceil(p1.max(1));
    let used = (p1 * (resident_per_query + crossing_per_query) * p0).min(avail) + stream_tile_words;

    // Data movement.
    let mut traffic = Traffic::default();
    let reread = |x: usize, t: TensorId| -> f64 {
        // The accessed tensor's own ranks: a layout such as BK[e,m1,m0] covers m1.
        let tdims = &cascade.tensor(t).ranks;
        ctx.spaces[x]
            .iter()
            .filter(|r| !tdims.contains(r))
            .map(|&r| {
                if Some(r) == roles.query {
                    roles.p_tiles as f64
                } else if Some(r) == roles.key_temporal {
                    roles.m_tiles as f64
                } else {
                    1.0
                }
            })
            .product()
    };
    let mut placements = Vec::new();
    for (&t, role) in &roles_of {
        let words = tensor_words(t) as f64;
        let passes = reader_passes.get(&t).map_or(1, |p| p.len()) as f64;
        let name = cascade.tensor(t).name.clone();
        let residency = match role {
            Role::QueryInput if passes > 1.0 && has_barrier(t) => {
                let read = words + spill * words * (passes - 1.0);
                traffic.dram_read += read;
                traffic.buffer_write += read;
                Residency::PassState {
                    words_per_query: words_per_query(t),
                    spill,
                }
            }
            Role::QueryInput => {
                traffic.dram_read += words;
                traffic.buffer_write += words;
                Residency::Buffer {
                    words_per_query: words_per_query(t),
                }
            }
            Role::StreamInput => {
                let times = p2 * passes as u64;
                traffic.dram_read += words * times as f64;
                traffic.buffer_write += words * times as f64;
                let tile = if has_key(t) {
                    tensor_words(t) / roles.m_tiles.max(1)
                } else {
                    tensor_words(t)
                };
                Residency::Streamed {
                    tile_words: tile,
                    times,
                }
            }
            Role::State => {
                // Swapped between the buffer and the row unit once per key tile.
                let per_iter = iter_words(t) as f64 * roles.m_tiles as f64;
                traffic.buffer_write += per_iter;
                Residency::Buffer {
                    words_per_query: iter_words(t) / roles.p.max(1),
                }
            }
            Role::Accumulator => {
                traffic.buffer_write += words * roles.m_tiles as f64;
                Residency::Buffer {
                    words_per_query: words_per_query(t),
                }
            }
            Role::PassState => {
                let later = reader_passes[&t]
                    .iter()
                    .filter(|&&p| p > ctx.pass[ctx.writer[&t]])
                    .count() as f64;
                traffic.dram_write += spill * words;
                traffic.dram_read += spill * words * later;
                traffic.buffer_write += words;
                Residency::PassState {
                    words_per_query: words_per_query(t),
                    spill,
                }
            }
            Role::TileInput => {
                traffic.dram_read += words;
                traffic.buffer_write += words;
                Residency::Streamed {
                    tile_words: tensor_words(t) / (roles.m_tiles * roles.p_tiles).max(1),
                    times: 1,
                }
            }
            Role::Local => {
                let w = ctx.writer[&t];
                let same_unit = ctx
                    .reads
                    .iter()
                    .enumerate()
                    .filter(|(x, rs)| member.contains(x) && rs.iter().any(|(r, _)| src(*r) == t))
                    .all(|(x, _)| plans[x].unit == plans[w].unit);
                if same_unit {
                    Residency::Register
                } else {
                    Residency::Link
                }
            }
        };
        placements.push((name, residency));
    }
    for &x in members {
        let mut reg_reads = 0u64;
        for (accessed, _) in &ctx.reads[x] {
            let t = src(*accessed);
            match roles_of.get(&t) {
                // Same unit: a register read; another unit: passed over the array link.
                Some(Role::Local) if plans[ctx.writer[&t]].unit == plans[x].unit => {
                    reg_reads += plans[x].points;
                }
                Some(Role::Local) => {}
                Some(Role::State) => {
                    let per_iter = iter_words(t) as f64;
                    traffic.buffer_read += if plans[x].per_key_tile {
                        per_iter * roles.m_tiles as f64
                    } else {
                        per_iter
                    };
                }
                Some(_) => traffic.buffer_read += tensor_words(t) as f64 * reread(x, *accessed),
                None => {}
            }
        }
        plans[x].register_reads = reg_reads;
    }
    // Outputs of the phase: read by another phase or by the caller.
    for &w in members {
        let t = cascade.einsum(ctx.body[w]).output.tensor;
        let read_elsewhere = ctx
            .reads
            .iter()
            .enumerate()
            .any(|(x, rs)| !member.contains(&x) && rs.iter().any(|(r, _)| *r == t));
        if read_elsewhere || cascade.outputs.contains(&t) {
            let words = if ctx.iterative.contains(&t) {
                iter_words(t)
            } else {
                tensor_words(t)
            } as f64;
            traffic.dram_write += words;
            traffic.buffer_write += words;
            placements.push((cascade.tensor(t).name.clone(), Residency::Dram));
        }
    }

    // Epochs: a tile's work flows from unit to unit; each hop is one tile of lag.
    let per_tile: Vec<usize> = members
        .iter()
        .copied()
        .filter(|&x| plans[x].per_key_tile)
        .collect();
    let tile_unit = arch.tile_unit();
    // Stage (tile lag) of each per-tile Einsum, at least `floor`: one more tile per hop
    // between units; and the chain of array drains it waits for.
    let assign = |floor: &BTreeMap<usize, u32>| {
        let mut stage: BTreeMap<usize, u32> = BTreeMap::new();
        let mut drains: BTreeMap<usize, u64> = BTreeMap::new();
        for &x in &per_tile {
            let mut s = floor.get(&x).copied().unwrap_or(0);
            let mut d = 0;
            for &dep in &ctx.deps[x] {
                if let (Some(&sd), Some(&dd)) = (stage.get(&dep), drains.get(&dep)) {
                    s = s.max(sd + u32::from(plans[dep].unit != plans[x].unit));
                    // A spatial reduction on the tile unit must drain the array before its
                    // result can be used again on that unit.
                    let drain = plans[dep].unit == tile_unit
                        && roles.split
                        && roles
                            .key_spatial
                            .is_some_and(|r| ctx.reduced[dep].contains(&r));
                    d = d.max(dd + u64::from(drain));
                }
            }
            stage.insert(x, s);
            drains.insert(x, d);
        }
        (stage, drains)
    };
    let (mut stage, mut drains) = assign(&BTreeMap::new());
    // Interleaving runs the heaviest Einsum of the oldest tile first in the tile unit's epoch
    // (FuseMax's `SLNV[b] | BQK[d]`). If it reads a same-unit producer of the same tile, that
    // producer now comes later in the epoch, so the interleaved Einsum works one tile further
    // back (b < c in the reference's epoch), and everything downstream moves with it.
    let interleaved = if arch.interleave() {
        let on_tile: Vec<usize> = per_tile
            .iter()
            .copied()
            .filter(|&x| plans[x].unit == tile_unit)
            .collect();
        let lo = on_tile.iter().map(|x| stage[x]).min();
        let hi = on_tile.iter().map(|x| stage[x]).max();
        on_tile
            .iter()
            .copied()
            .filter(|x| lo != hi && Some(stage[x]) == hi)
            .max_by_key(|&x| (plans[x].cycles, std::cmp::Reverse(x)))
    } else {
        None
    };
    if let Some(heavy) = interleaved {
        let reads_same_tile = ctx.deps[heavy]
            .iter()
            .any(|d| plans[*d].unit == tile_unit && stage.get(d) == Some(&stage[&heavy]));
        if reads_same_tile {
            let floor = BTreeMap::from([(heavy, stage[&heavy] + 1)]);
            (stage, drains) = assign(&floor);
        }
    }
    for (&x, &s) in &stage {
        plans[x].stage = s;
    }
    let drain_count = per_tile
        .iter()
        .filter(|&&x| plans[x].unit == tile_unit)
        .map(|x| drains[x])
        .max()
        .unwrap_or(0);
    let stall_per_tile = if arch.interleave() {
        0
    } else {
        drain_count * arch.unit(tile_unit).rows()
    };
    let stages = stage.values().copied().max().unwrap_or(0);
    let mut epochs = Vec::new();
    let mut unit_ids: Vec<UnitId> = per_tile.iter().map(|&x| plans[x].unit).collect();
    unit_ids.sort();
    unit_ids.dedup();
    for u in unit_ids {
        let mut items: Vec<(u32, usize)> = per_tile
            .iter()
            .filter(|&&x| plans[x].unit == u)
            .map(|&x| (plans[x].stage, x))
            .collect();
        items.sort_by_key(|&(s, x)| (s, x));
        let label = |x: usize| {
            let s = plans[x].stage;
            if s == 0 {
                format!("{}[t]", plans[x].name)
            } else {
                format!("{}[t-{s}]", plans[x].name)
            }
        };
        let mut parts: Vec<String> = items.iter().map(|&(_, x)| label(x)).collect();
        if let Some(heavy) = interleaved.filter(|_| u == tile_unit) {
            // The interleaved Einsum shares the epoch's first slot with the newest tile's work.
            let pos = items.iter().position(|i| i.1 == heavy).expect("present");
            parts.remove(pos);
            let first = parts[0].clone();
            parts[0] = format!("({} | {first})", label(heavy));
        }
        epochs.push((u, parts.join(" → ")));
    }

    let q = cascade
        .rank(roles.query.unwrap_or(RankId(0)))
        .name
        .to_lowercase();
    let kname = roles
        .key
        .map_or_else(|| "m".to_string(), |r| cascade.rank(r).name.to_lowercase());
    let (kt, ks) = if roles.split {
        (
            cascade
                .rank(roles.key_temporal.expect("split"))
                .name
                .to_lowercase(),
            cascade
                .rank(roles.key_spatial.expect("split"))
                .name
                .to_lowercase(),
        )
    } else {
        (format!("{kname}1"), format!("{kname}0"))
    };
    let has_q = roles.query.is_some();
    let mut loop_order = Vec::new();
    if has_q {
        loop_order.push(format!("for {q}2 in 0..{p2}"));
    }
    if max_pass > min_pass {
        if has_q {
            loop_order.push(format!("for {q}1 in 0..{p1}"));
        }
        loop_order.push(format!("for pass in 0..{}", max_pass - min_pass + 1));
        loop_order.push(format!("for {kt} in 0..{}", roles.m_tiles));
    } else {
        loop_order.push(format!("for {kt} in 0..{}", roles.m_tiles));
        if has_q {
            loop_order.push(format!("for {q}1 in 0..{p1}"));
        }
    }
    if has_q {
        loop_order.push(format!("par {q}0 in 0..{p0}"));
    }
    if roles.key_parallel {
        loop_order.push(format!("par {ks} in 0..{}", roles.m0));
    } else {
        loop_order.push(format!("for {ks} in 0..{}", roles.m0));
    }
    let once: Vec<String> = members
        .iter()
        .filter(|&&x| !plans[x].per_key_tile)
        .map(|&x| plans[x].name.clone())
        .collect();
    if !once.is_empty() {
        loop_order.push(format!("then per query tile: {}", once.join(", ")));
    }

    Ok(Phase {
        einsums: members.to_vec(),
        partition: Partition {
            key_rank: roles
                .key
                .map_or_else(String::new, |r| cascade.rank(r).name.clone()),
            query_rank: roles
                .query
                .map_or_else(String::new, |r| cascade.rank(r).name.clone()),
            split: roles.split,
            m: roles.m,
            m0: roles.m0,
            m1: roles.m_tiles,
            p: roles.p,
            p0,
            p1,
            p2,
        },
        passes: max_pass - min_pass + 1,
        placements,
        traffic,
        buffer_words: used,
        spill,
        stall_per_tile,
        stages,
        loop_order,
        epochs,
        // `k` is the phase index; plans carry it.
    })
}
