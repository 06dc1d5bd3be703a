//! The scheduler: binds each Einsum to a unit, partitions the key and query ranks over the
//! array, finds the passes, sizes the buffer, counts the per-tile work and data movement, and
//! lays the work out in pipelined epochs.
//!
//! Nothing here knows which paper configuration it runs: the behaviour comes from the cascade
//! (its ranks, reductions, passes and masks) and the architecture (unit ops, binding policy,
//! buffer, fusion and interleaving). [`schedule_with`] is a straight line of stages, one module
//! each:
//!
//! 1. [`roles`]: the key rank (M, split into a temporal M1 and a spatial M0 on the array's rows),
//!    the query ranks on the array's columns (P, and the heads of a group that share its keys),
//!    every rank's size and the independent instances;
//! 2. [`binding`]: a unit per Einsum;
//! 3. [`work`]: each Einsum's points, cycles and actions, on the tiles it runs on: the tile
//!    occupancy of its presence ([`cascade_ir::occupancy`]) and of the dead tiles it may skip
//!    ([`cascade_ir::presence`]);
//! 4. phases: one fused phase, or a phase per run of Einsums on one unit;
//! 5. per phase, [`buffer`]: what each tensor is to the phase, how many query tiles stay
//!    resident, what spills, and the traffic; then [`epochs`]: the tile lag of each Einsum, the
//!    per-unit epoch and the loop nest.
//!
//! The result's [`Mapping`] is every choice made, in the form a user can write to override it.

mod binding;
mod buffer;
mod epochs;
mod roles;
mod work;

use std::collections::BTreeMap;
use std::fmt;

use cascade_ir::{Cascade, EinsumId, LoopPlan};

use crate::arch::{ArchSpec, Fusion, PointOp, UnitId};
use crate::mapping::{Mapping, MappingOverrides};
use crate::workload::Problem;

pub use epochs::{Epoch, EpochItem, Loop, LoopNest};

/// A problem with the caller's input (not with the hardware): a rank without a size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("rank {rank} has no size: the workload gives {given}; add {rank}=N to the shape")]
    MissingSize { rank: String, given: String },
    #[error(
        "the problem {given} is too large to count: the product of all rank sizes must stay below 2^56 and batch × heads below 2^48"
    )]
    TooLarge { given: String },
}

/// Why a cascade cannot run on an architecture. A value, not an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Infeasible {
    pub reason: String,
}

impl Infeasible {
    pub(crate) fn new(reason: impl Into<String>) -> Infeasible {
        Infeasible {
            reason: reason.into(),
        }
    }
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
    /// Iterates both the spatial key rank and a query rank: one point per PE of the tile.
    Tile,
    /// Iterates a query rank but not the spatial key rank: per-query (row) work.
    Row,
    /// Iterates the spatial key rank but no query rank: per-key work.
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

/// How the key rank (M) and the query columns (P, with the heads that share its keys) are cut
/// over the array and the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub key_rank: String,
    /// The ranks on the array's columns, joined (`P`, `P·R`).
    pub query_rank: String,
    /// Whether the cascade itself splits the key rank (M -> M1 M0).
    pub split: bool,
    pub m: u64,
    /// Keys per tile: the array rows.
    pub m0: u64,
    /// Key tiles.
    pub m1: u64,
    /// Query columns: the product of the query ranks.
    pub p: u64,
    /// Columns per tile.
    pub p0: u64,
    /// Query tiles resident in the buffer at once.
    pub p1: u64,
    /// Times the key-side inputs are streamed: `ceil(query tiles / P1)`.
    pub p2: u64,
}

impl Partition {
    /// Key tiles × query tiles.
    pub fn tiles(&self) -> u64 {
        self.m1 * self.p.div_ceil(self.p0)
    }

    /// Query tiles.
    pub fn query_tiles(&self) -> u64 {
        self.p.div_ceil(self.p0)
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
    /// Ops per point, as the unit prices them.
    pub ops: BTreeMap<PointOp, u32>,
    /// Iteration-space points on the tiles it runs on (masked points of a partial tile
    /// included: they occupy their PEs).
    pub points: u64,
    /// Points present by its presence condition: what a unit that gates masked points spends
    /// energy on.
    pub present_points: u64,
    pub cycles_per_point: u64,
    /// Unit cycles: points spread over the PEs the Einsum's spatial ranks occupy, on the tiles
    /// it runs on.
    pub cycles: u64,
    /// Tiles it runs on (per-key-tile Einsums: key tiles × query tiles less those its
    /// occupancy leaves out; once-per-query Einsums: query tiles).
    pub tiles: u64,
    /// Cycles per tile it runs on.
    pub tile_cycles: f64,
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
    /// Passed from one unit to another through the global buffer (`[pipeline] handoff =
    /// "buffer"`): written once, read by each reader, `words_per_query` held per resident query.
    Handoff { words_per_query: u64 },
    /// Kept in the global buffer for the resident queries (`words_per_query` each).
    Buffer { words_per_query: u64 },
    /// Streamed from DRAM one tile at a time (`tile_words`), `times` times.
    Streamed { tile_words: u64, times: u64 },
    /// Crosses a pass barrier; `spill` of it lives in DRAM, the rest in the buffer.
    PassState { words_per_query: u64, spill: f64 },
    /// Read from or written to DRAM once (a phase boundary or an output).
    Dram,
    /// A tensor the mapping keeps out of the buffer: an input read from DRAM by every tile
    /// that needs it, `times` times over, or (`times` 0) an output written straight to DRAM.
    Bypass { times: u64 },
}

impl fmt::Display for Residency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Residency::Register => write!(f, "registers"),
            Residency::Link => write!(f, "array link"),
            Residency::Handoff { words_per_query } => {
                write!(f, "buffer between units ({words_per_query} words/query)")
            }
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
            Residency::Bypass { times: 0 } => write!(f, "bypasses the buffer (written to DRAM)"),
            Residency::Bypass { times } => {
                write!(f, "bypasses the buffer (read from DRAM {times}x)")
            }
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

/// Which key tiles of each query tile a phase runs, run-length coded over query tiles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occupancy {
    pub rows: Vec<RowGroup>,
    /// Key tiles × query tiles of the grid, empty, partly present and full by the union of the
    /// phase's filters (every tile full without one).
    pub empty: u64,
    pub partial: u64,
    pub full: u64,
}

impl Occupancy {
    /// Slots the phase runs per instance and pass: the sum of every row's slots.
    pub fn slots(&self) -> u64 {
        self.rows.iter().map(|r| r.count * r.slots).sum()
    }
}

/// `count` consecutive query tiles with the same work: `slots` key tiles with work on them,
/// and per member of the phase (in the order of [`Phase::einsums`]) on how many of them it
/// runs (0 for once-per-query Einsums).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowGroup {
    pub count: u64,
    pub slots: u64,
    pub runs: Vec<u64>,
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
    /// Each tensor's part of `traffic` (every word is counted in both), in the order the
    /// phase first touches the tensors.
    pub traffic_by_tensor: Vec<(String, Traffic)>,
    /// Buffer words the resident queries and streamed tiles need.
    pub buffer_words: u64,
    /// Fraction of the pass-crossing state that does not fit and goes to DRAM.
    pub spill: f64,
    /// Set when the phase, on 1D units alone, takes one query row at a time (the PEs across
    /// its keys) because a tile of queries would spill: the whole rows the buffer holds.
    pub row_queries: Option<u64>,
    /// Cycles the tile unit stalls per tile waiting for a reduction to drain (no interleaving).
    pub stall_per_tile: u64,
    /// Pipeline depth in tiles (the largest stage).
    pub stages: u32,
    pub loops: LoopNest,
    /// Per unit with per-tile work: the work of one epoch, in order.
    pub epochs: Vec<Epoch>,
    pub occupancy: Occupancy,
}

/// A complete schedule of one cascade on one architecture for one problem.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub cascade: String,
    pub arch: String,
    pub problem: Problem,
    /// Independent attention instances (batch, and heads unless the cascade has a head rank).
    pub instances: u64,
    pub einsums: Vec<EinsumPlan>,
    pub phases: Vec<Phase>,
    /// Every choice made, in the form of a mapping file.
    pub mapping: Mapping,
}

impl Schedule {
    pub fn instances(&self) -> u64 {
        self.instances
    }
}

/// Schedules `cascade` on `arch` for `problem` with the scheduler's own choices.
pub fn schedule(
    cascade: &Cascade,
    arch: &ArchSpec,
    problem: &Problem,
) -> Result<Outcome, ScheduleError> {
    schedule_with(cascade, arch, problem, &MappingOverrides::default())
}

/// Schedules with a user's mapping: every choice `overrides` makes replaces the scheduler's,
/// and a choice that cannot work is an [`Outcome::Infeasible`] with the reason.
pub fn schedule_with(
    cascade: &Cascade,
    arch: &ArchSpec,
    problem: &Problem,
    overrides: &MappingOverrides,
) -> Result<Outcome, ScheduleError> {
    let roles = match roles::resolve(cascade, arch, problem, overrides)? {
        Ok(roles) => roles,
        Err(why) => return Ok(Outcome::Infeasible(why)),
    };
    // When each Einsum runs, what it reads and the passes over the key rank are the loop
    // plan's and the pass analysis' (`ir`), not decided here.
    let plan = LoopPlan::new(cascade);
    let analysis = roles::Analysis::new(cascade, &plan, &roles);
    let bound = match binding::bind(&analysis, arch, overrides) {
        Ok(b) => b,
        Err(why) => return Ok(Outcome::Infeasible(why)),
    };
    let occupancy = match work::TileWork::new(&analysis, problem) {
        Ok(o) => o,
        Err(why) => return Ok(Outcome::Infeasible(why)),
    };
    let mut plans = match work::plan_einsums(&analysis, arch, &bound, &occupancy) {
        Ok(p) => p,
        Err(()) => return Err(roles.too_large()),
    };
    let groups = phase_members(arch, &plans);
    let mut phases = Vec::with_capacity(groups.len());
    for (k, members) in groups.iter().enumerate() {
        for &i in members {
            plans[i].phase = k;
        }
        let placed = match buffer::place(
            &analysis,
            arch,
            (k, members),
            &mut plans,
            &occupancy,
            overrides,
        ) {
            Ok(placed) => placed,
            Err(why) => return Ok(Outcome::Infeasible(why)),
        };
        let laid = epochs::lay_out(&analysis, arch, members, &mut plans, &placed);
        let rows = occupancy.phase_rows(members, &mut plans);
        phases.push(Phase {
            einsums: members.clone(),
            partition: placed.partition,
            passes: placed.passes,
            placements: placed.placements,
            traffic: placed.traffic,
            traffic_by_tensor: placed.traffic_by_tensor,
            buffer_words: placed.buffer_words,
            spill: placed.spill,
            row_queries: placed.row_queries,
            stall_per_tile: laid.stall_per_tile,
            stages: laid.stages,
            loops: laid.loops,
            epochs: laid.epochs,
            occupancy: rows,
        });
    }
    let columns = roles.columns.iter().map(|&r| analysis.var(r)).collect();
    let mapping = Mapping::of(arch, columns, &plans, &phases);
    if let Some(why) = unused_choice(cascade, overrides, &mapping) {
        return Ok(Outcome::Infeasible(why));
    }
    Ok(Outcome::Scheduled(Box::new(Schedule {
        cascade: cascade.name.clone(),
        arch: arch.name().to_string(),
        problem: problem.clone(),
        instances: roles.instances,
        einsums: plans,
        phases,
        mapping,
    })))
}

/// The key tile × query tile grid a problem runs on and the region of the tile's filters
/// (`None`: every tile is live), as [`schedule`] counts work on it: what a partition over
/// chips needs to count the live tiles of each chip's share ([`crate::system`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TileGrid {
    pub grid: cascade_ir::occupancy::Grid,
    pub region: Option<cascade_ir::occupancy::Region>,
}

/// The tile grid of `problem`: the roles and the tile work of [`schedule`], without binding or
/// buffering. A problem with block masks given as data is refused: a partition would have to
/// split the bitmap too.
pub fn tile_grid(
    cascade: &Cascade,
    arch: &ArchSpec,
    problem: &Problem,
) -> Result<Result<TileGrid, Infeasible>, ScheduleError> {
    if let Some(name) = problem.block_masks.keys().next() {
        return Ok(Err(Infeasible::new(format!(
            "block mask `{name}` is data over the whole grid and is not partitioned over chips; run it on one chip with `simulate`"
        ))));
    }
    // The grid of a problem too large to count point by point is still a grid: the limit on
    // the product of the sizes is the counting's, which the chips' shares meet.
    let overrides = MappingOverrides::default();
    let roles = match roles::resolve_counted(cascade, arch, problem, &overrides, false)? {
        Ok(roles) => roles,
        Err(why) => return Ok(Err(why)),
    };
    let plan = LoopPlan::new(cascade);
    let analysis = roles::Analysis::new(cascade, &plan, &roles);
    let (grid, region) = work::filter_region(&analysis);
    Ok(Ok(TileGrid { grid, region }))
}

/// A choice of the user's mapping that names nothing the schedule has (an Einsum that is not
/// in the body, a tensor that crosses no pass, a phase beyond the last): it would be ignored, so
/// the mapping is refused with the reason instead.
fn unused_choice(
    cascade: &Cascade,
    overrides: &MappingOverrides,
    mapping: &Mapping,
) -> Option<Infeasible> {
    let list = |names: Vec<&str>| {
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    };
    for einsum in overrides.binding.keys() {
        if !mapping.binding.iter().any(|(e, _)| e == einsum) {
            return Some(Infeasible::new(format!(
                "the mapping binds `{einsum}`, which is not an Einsum cascade `{}` schedules; its Einsums: {}",
                cascade.name,
                list(mapping.binding.iter().map(|(e, _)| e.as_str()).collect())
            )));
        }
    }
    for tensor in overrides.residency.keys() {
        let input = cascade
            .tensor_by_name(tensor)
            .is_some_and(|t| cascade.tensor(t).kind == cascade_ir::TensorKind::Input);
        if !input && !mapping.residency.iter().any(|(t, _)| t == tensor) {
            return Some(Infeasible::new(format!(
                "the mapping places `{tensor}`, which is neither an input of cascade `{}`, nor a tensor that crosses its passes, nor one a phase writes to DRAM; those that can be placed: {}",
                cascade.name,
                list(mapping.residency.iter().map(|(t, _)| t.as_str()).collect())
            )));
        }
    }
    if overrides.phases.len() > mapping.phases.len() {
        return Some(Infeasible::new(format!(
            "the mapping has {} [[phases]], but the schedule of cascade `{}` has {}",
            overrides.phases.len(),
            cascade.name,
            mapping.phases.len()
        )));
    }
    None
}

/// Phases: one fused phase, or runs of consecutive Einsums on one unit.
fn phase_members(arch: &ArchSpec, plans: &[EinsumPlan]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, plan) in plans.iter().enumerate() {
        let new_phase = match arch.fusion() {
            Fusion::Fused => groups.is_empty(),
            Fusion::None => groups.last().is_none_or(|g| plans[g[0]].unit != plan.unit),
        };
        if new_phase {
            groups.push(Vec::new());
        }
        groups.last_mut().expect("pushed above").push(i);
    }
    groups
}
