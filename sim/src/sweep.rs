//! Design-space sweeps: the Pareto study of latency against area as the array grows.
//!
//! For each square array size the buffer starts small and doubles while the memory time exceeds
//! the row unit's compute time (the FuseMax paper's rule), up to a cap; the search is the
//! ask/tell [`BufferDoubling`] strategy.

use cascade_ir::Cascade;
use cascade_scheduler::search::BufferDoubling;
use cascade_scheduler::{ArchSpec, Outcome, Problem, Search, StopReason, schedule};

use crate::simulate;

/// One evaluated design.
#[derive(Debug, Clone, PartialEq)]
pub struct DesignPoint {
    pub dim: u64,
    pub buffer_bytes: u64,
    pub latency_s: f64,
    /// The design's energy in joules (the report's pJ × 1e-12), as every output prints it.
    pub energy_j: f64,
    pub area_mm2: f64,
    pub memory_bound: bool,
    /// `None` when feasible, else why not.
    pub infeasible: Option<String>,
    pub stop: StopReason,
    /// On the latency-area Pareto frontier of its sweep (set by [`mark_pareto`]).
    pub pareto: bool,
}

/// Evaluates a `dim × dim` array (and a `dim`-wide row unit), sizing the buffer by doubling from
/// `min_buffer` up to `max_buffer` bytes.
pub fn design_point(
    base: &ArchSpec,
    cascade: &Cascade,
    problem: &Problem,
    dim: u64,
    min_buffer: u64,
    max_buffer: u64,
) -> DesignPoint {
    let mut search = BufferDoubling::new(min_buffer, max_buffer);
    let mut best = None;
    let mut reason = None;
    while let Some(bytes) = search.next() {
        let arch = match base.resized(dim, bytes) {
            Ok(arch) => arch,
            Err(e) => {
                reason = Some(e.to_string());
                break;
            }
        };
        match schedule(cascade, &arch, problem) {
            Ok(Outcome::Scheduled(s)) => {
                let report = simulate(&s, &arch);
                let bad = report.non_finite();
                if !bad.is_empty() {
                    // Validated inputs keep every number finite; this is a bug, refused as one.
                    reason = Some(format!(
                        "internal error: the model produced numbers that are not finite: {}",
                        bad.join(", ")
                    ));
                    break;
                }
                let row = report
                    .units
                    .iter()
                    .find(|u| u.name == arch.unit(arch.row_unit()).name());
                let row_compute = row.map_or(0.0, |u| u.busy_cycles);
                let grow = report.memory_cycles > row_compute;
                best = Some(DesignPoint {
                    dim,
                    buffer_bytes: bytes,
                    latency_s: report.latency_s,
                    energy_j: report.energy.total_pj() * 1e-12,
                    area_mm2: report.area_mm2,
                    memory_bound: grow,
                    infeasible: None,
                    stop: StopReason::Exhausted,
                    pareto: false,
                });
                search.report(&bytes, grow);
            }
            Ok(Outcome::Infeasible(why)) => {
                reason = Some(why.reason);
                search.report(&bytes, true);
            }
            Err(e) => {
                reason = Some(e.to_string());
                break;
            }
        }
    }
    let stop = search.stop_reason();
    match best {
        Some(p) => DesignPoint { stop, ..p },
        None => DesignPoint {
            dim,
            buffer_bytes: max_buffer,
            latency_s: f64::INFINITY,
            energy_j: f64::INFINITY,
            area_mm2: f64::INFINITY,
            memory_bound: false,
            infeasible: Some(reason.unwrap_or_else(|| "no buffer size was tried".into())),
            stop,
            pareto: false,
        },
    }
}

/// Marks the points no other point beats in both latency and area (`sweep` per workload point,
/// `merge-sweep` again over the merged shards).
pub fn mark_pareto(points: &mut [DesignPoint]) {
    let snapshot: Vec<(f64, f64)> = points.iter().map(|p| (p.area_mm2, p.latency_s)).collect();
    for (i, p) in points.iter_mut().enumerate() {
        let (a, l) = snapshot[i];
        p.pareto = p.infeasible.is_none()
            && !snapshot
                .iter()
                .enumerate()
                .any(|(j, &(a2, l2))| j != i && a2 <= a && l2 <= l && (a2 < a || l2 < l));
    }
}
