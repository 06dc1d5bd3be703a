//! Scheduler: binds each Einsum of a cascade to a unit of a spatial array, partitions the key
//! and query ranks, finds the passes, sizes the buffer and pipelines the work into epochs.
//!
//! Entry point: [`schedule`]`(&Cascade, &ArchSpec, &Problem) -> Result<Outcome, ScheduleError>`.
//! An infeasible binding or buffer is an [`Outcome::Infeasible`] value with a reason. The
//! architecture and workload descriptions ([`arch`], [`workload`]) are validated data; the
//! shipped files are embedded in [`shipped`] so no caller needs the file system to use them.

pub mod arch;
pub mod cost;
pub mod mapping;
pub mod schedule;
pub mod search;
pub mod shipped;
pub mod system;
pub mod workload;

pub use arch::{
    ArchSpec, ConfigError, CostTable, Fusion, Handoff, PointOp, RawArch, RawCosts, Unit, UnitId,
    einsum_ops,
};
pub use cost::{HardwareCost, KindPrice, Metric, OpCost, op_costs};
pub use mapping::{Mapping, MappingOverrides, Placement, RawMapping};
pub use schedule::{
    EinsumPlan, Epoch, EpochItem, Infeasible, Level, Loop, LoopNest, Occupancy, Outcome, Partition,
    Phase, Residency, RowGroup, Schedule, ScheduleError, TileGrid, Traffic, schedule,
    schedule_with, tile_grid,
};
pub use search::{Search, StopReason};
pub use workload::{BlockMask, MAX_MASK_BLOCKS, Model, Problem, RawWorkloads, Scenario, Workloads};
