//! Simulator: the analytical cycle, energy and area model of a schedule.
//!
//! Entry point: [`simulate`]`(&Schedule, &ArchSpec) -> SimReport`. Per phase, every unit's busy
//! cycles are the sum of its Einsums' cycles (plus drain stalls when the tile unit does not
//! interleave); units of one phase overlap through pipelining, memory time is DRAM bytes over
//! bandwidth, and a phase lasts max(compute, memory) plus the pipeline fill. Energy is action
//! counts × the cost table; area is PEs × component areas plus the buffer. [`end_to_end`] adds the
//! linear layers of a transformer layer on the tile unit at full utilisation.

pub mod breakdown;
pub mod compare;
pub mod cycle;
pub mod sweep;
pub mod system;
pub mod trace;

use std::collections::BTreeMap;

use cascade_scheduler::{ArchSpec, Schedule, UnitId};

pub use breakdown::{EnergyBreakdown, EnergyItem, EnergyKind, EnergyPart, TensorTraffic};

/// One unit's activity over the whole attention layer.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitReport {
    pub name: String,
    pub pes: u64,
    /// Cycles doing useful work.
    pub busy_cycles: f64,
    /// Cycles stalled waiting for the array to drain.
    pub stall_cycles: f64,
    /// Busy cycles over the layer's latency.
    pub utilisation: f64,
    /// While busy, the fraction of the unit's PEs that hold a present point: 1 for full tiles,
    /// 1/256 for one query on a 256-wide array, about half on a causal diagonal tile.
    pub occupancy: f64,
}

/// One Einsum's share of its unit's busy time.
#[derive(Debug, Clone, PartialEq)]
pub struct EinsumShare {
    pub name: String,
    pub unit: String,
    pub cycles: f64,
    pub share: f64,
}

/// One phase's compute and memory time.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseReport {
    pub einsums: Vec<String>,
    /// Busy plus stall cycles of the slowest unit.
    pub compute_cycles: f64,
    pub memory_cycles: f64,
    pub fill_cycles: f64,
    pub latency_cycles: f64,
    /// What sets the phase's latency: a unit's name or `memory`.
    pub bound: String,
    pub spill: f64,
}

/// Energy by kind of action, in pJ.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Energy {
    pub compute_pj: f64,
    pub register_pj: f64,
    pub buffer_pj: f64,
    pub dram_pj: f64,
    /// Static energy over the latency.
    pub leakage_pj: f64,
}

impl Energy {
    pub fn total_pj(&self) -> f64 {
        self.compute_pj + self.register_pj + self.buffer_pj + self.dram_pj + self.leakage_pj
    }
}

/// The transformer layer: attention plus the linear layers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EndToEnd {
    pub linear_cycles: f64,
    pub linear_energy_pj: f64,
    pub latency_cycles: f64,
    pub energy_pj: f64,
}

/// Everything the model says about one schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct SimReport {
    pub arch: String,
    pub cascade: String,
    pub workload: String,
    pub seq: u64,
    pub latency_cycles: f64,
    pub latency_s: f64,
    pub units: Vec<UnitReport>,
    pub phases: Vec<PhaseReport>,
    pub einsums: Vec<EinsumShare>,
    pub dram_bytes: f64,
    pub memory_cycles: f64,
    /// The four totals: [`SimReport::breakdown`]'s items summed.
    pub energy: Energy,
    /// Every priced action count, per phase, component and Einsum or tensor.
    pub breakdown: EnergyBreakdown,
    /// DRAM bytes and buffer words of each tensor, per phase; they sum to `dram_bytes`.
    pub traffic_by_tensor: Vec<TensorTraffic>,
    /// Energy by (unit, action) of the compute, in pJ.
    pub compute_by_action: BTreeMap<(String, String), f64>,
    /// Share of the total energy spent on MACs of the tile unit.
    pub tile_mac_energy_share: f64,
    pub area_mm2: f64,
    /// The largest fraction of pass-crossing state spilled to DRAM in any phase.
    pub spill: f64,
    pub end_to_end: EndToEnd,
}

/// Runs the analytical model on a schedule.
pub fn simulate(schedule: &Schedule, arch: &ArchSpec) -> SimReport {
    let n = schedule.instances() as f64;
    let word_bytes = arch.word_bytes() as f64;
    let tile_unit = arch.tile_unit();
    let mut busy: BTreeMap<UnitId, f64> = BTreeMap::new();
    let mut stall: BTreeMap<UnitId, f64> = BTreeMap::new();
    let mut phases = Vec::new();
    let mut latency = 0.0;
    let mut memory_total = 0.0;
    let mut dram_words = 0.0;
    for phase in &schedule.phases {
        let mut phase_busy: BTreeMap<UnitId, f64> = BTreeMap::new();
        for &i in &phase.einsums {
            let e = &schedule.einsums[i];
            *phase_busy.entry(e.unit).or_default() += e.cycles as f64 * n;
        }
        // Key tile × query tile slots the phase runs (all of them unless a mask empties some).
        let tiles = phase.occupancy.slots() as f64 * n;
        let phase_stall = phase.stall_per_tile as f64 * tiles;
        if phase_stall > 0.0 {
            *stall.entry(tile_unit).or_default() += phase_stall;
        }
        let occupied = |u: UnitId, b: f64| b + if u == tile_unit { phase_stall } else { 0.0 };
        let (slowest, compute) = phase_busy.iter().map(|(&u, &b)| (u, occupied(u, b))).fold(
            (None, 0.0),
            |acc, (u, c)| if c > acc.1 { (Some(u), c) } else { acc },
        );
        for (&u, &b) in &phase_busy {
            *busy.entry(u).or_default() += b;
        }
        let words = (phase.traffic.dram_read + phase.traffic.dram_write) * n;
        dram_words += words;
        let memory = words * word_bytes / arch.dram_bytes_per_cycle();
        memory_total += memory;
        // The pipeline fills once per phase: one epoch (a tile's work on the slowest unit) per stage.
        let fill = if tiles > 0.0 {
            f64::from(phase.stages) * compute / tiles
        } else {
            0.0
        };
        let phase_latency = compute.max(memory) + fill;
        latency += phase_latency;
        let bound = if memory > compute {
            "memory".to_string()
        } else {
            slowest.map_or_else(|| "none".to_string(), |u| arch.unit(u).name().to_string())
        };
        phases.push(PhaseReport {
            einsums: phase
                .einsums
                .iter()
                .map(|&i| schedule.einsums[i].name.clone())
                .collect(),
            compute_cycles: compute,
            memory_cycles: memory,
            fill_cycles: fill,
            latency_cycles: phase_latency,
            bound,
            spill: phase.spill,
        });
    }
    // PE-cycles spent on present points, per unit.
    let mut useful: BTreeMap<UnitId, f64> = BTreeMap::new();
    for e in &schedule.einsums {
        *useful.entry(e.unit).or_default() +=
            e.present_points as f64 * e.cycles_per_point as f64 * n;
    }
    let units = arch
        .unit_ids()
        .map(|u| {
            let b = busy.get(&u).copied().unwrap_or(0.0);
            let pes = arch.unit(u).pes() as f64;
            let used = useful.get(&u).copied().unwrap_or(0.0);
            UnitReport {
                name: arch.unit(u).name().to_string(),
                pes: arch.unit(u).pes(),
                busy_cycles: b,
                stall_cycles: stall.get(&u).copied().unwrap_or(0.0),
                utilisation: if latency > 0.0 { b / latency } else { 0.0 },
                occupancy: if b > 0.0 {
                    (used / (pes * b)).min(1.0)
                } else {
                    0.0
                },
            }
        })
        .collect();
    let einsums = schedule
        .einsums
        .iter()
        .map(|e| {
            let c = e.cycles as f64 * n;
            let total = busy.get(&e.unit).copied().unwrap_or(0.0);
            EinsumShare {
                name: e.name.clone(),
                unit: arch.unit(e.unit).name().to_string(),
                cycles: c,
                share: if total > 0.0 { c / total } else { 0.0 },
            }
        })
        .collect();

    // Energy: the priced action counts and the leakage over each phase's time, summed.
    let mut breakdown = breakdown::energy_breakdown(schedule, arch);
    let phase_cycles: Vec<f64> = phases.iter().map(|p| p.latency_cycles).collect();
    breakdown::add_leakage(&mut breakdown, arch, &phase_cycles);
    let energy = breakdown.totals();
    let mut compute_by_action: BTreeMap<(String, String), f64> = BTreeMap::new();
    for it in &breakdown.items {
        if it.kind == EnergyKind::Compute {
            *compute_by_action
                .entry((it.component.clone(), it.action.clone()))
                .or_default() += it.pj;
        }
    }
    let tile_name = arch.unit(tile_unit).name().to_string();
    let tile_mac = compute_by_action
        .get(&(tile_name, "mac".to_string()))
        .copied()
        .unwrap_or(0.0);
    let total = energy.total_pj();
    let linear = linear_layers(schedule, arch);
    SimReport {
        arch: schedule.arch.clone(),
        cascade: schedule.cascade.clone(),
        workload: schedule.problem.label.clone(),
        seq: schedule.problem.seq,
        latency_cycles: latency,
        latency_s: latency / arch.clock_hz(),
        units,
        phases,
        einsums,
        dram_bytes: dram_words * word_bytes,
        memory_cycles: memory_total,
        energy,
        traffic_by_tensor: breakdown::traffic_by_tensor(schedule, arch),
        breakdown,
        compute_by_action,
        tile_mac_energy_share: if total > 0.0 { tile_mac / total } else { 0.0 },
        area_mm2: area_mm2(arch),
        spill: schedule.phases.iter().map(|p| p.spill).fold(0.0, f64::max),
        end_to_end: EndToEnd {
            linear_cycles: linear.0,
            linear_energy_pj: linear.1,
            latency_cycles: latency + linear.0,
            energy_pj: total + linear.1,
        },
    }
}

impl SimReport {
    /// Every number of the report that is not finite, by name; empty when all are. Validated
    /// inputs keep every count and price bounded, so a non-finite number is a bug, and the
    /// commands refuse to print one.
    pub fn non_finite(&self) -> Vec<String> {
        let mut bad = Vec::new();
        let mut check = |name: String, v: f64| {
            if !v.is_finite() {
                bad.push(format!("{name} = {v}"));
            }
        };
        check("latency_cycles".into(), self.latency_cycles);
        check("latency_s".into(), self.latency_s);
        check("dram_bytes".into(), self.dram_bytes);
        check("memory_cycles".into(), self.memory_cycles);
        check("energy.compute_pj".into(), self.energy.compute_pj);
        check("energy.register_pj".into(), self.energy.register_pj);
        check("energy.buffer_pj".into(), self.energy.buffer_pj);
        check("energy.dram_pj".into(), self.energy.dram_pj);
        check("energy.leakage_pj".into(), self.energy.leakage_pj);
        check("area_mm2".into(), self.area_mm2);
        check("spill".into(), self.spill);
        check("tile_mac_energy_share".into(), self.tile_mac_energy_share);
        check(
            "end_to_end.latency_cycles".into(),
            self.end_to_end.latency_cycles,
        );
        check("end_to_end.energy_pj".into(), self.end_to_end.energy_pj);
        for u in &self.units {
            check(format!("{}.busy_cycles", u.name), u.busy_cycles);
            check(format!("{}.utilisation", u.name), u.utilisation);
            check(format!("{}.occupancy", u.name), u.occupancy);
        }
        for p in &self.phases {
            check("phase.latency_cycles".into(), p.latency_cycles);
        }
        if self.latency_cycles <= 0.0 && self.energy.total_pj() > 0.0 {
            bad.push("latency 0 with energy spent".into());
        }
        bad
    }
}

/// Chip area: every unit's PEs (components and register file) plus the global buffer.
pub fn area_mm2(arch: &ArchSpec) -> f64 {
    let table = arch.costs();
    let pes: f64 = arch
        .unit_ids()
        .map(|id| {
            let u = arch.unit(id);
            let pe: f64 = u
                .components()
                .iter()
                .map(|(c, &k)| k as f64 * table.area_um2(c).unwrap_or(0.0))
                .sum::<f64>()
                + arch.register_area_um2(id);
            pe * u.pes() as f64
        })
        .sum();
    pes / 1e6 + table.buffer_area_mm2(arch.buffer_bytes())
}

/// Cycles and energy of one layer's linear layers on the tile unit at full utilisation: the
/// workload's matmuls per token (for FuseMax's models the Q, K, V and output projections,
/// B·P × D × H·E each, and the two FFN matmuls, B·P × D × S), over every token the step
/// processes (batch × queries). Each matmul reads its input activations and weights from DRAM
/// and writes its output once; it lasts max(compute, memory).
fn linear_layers(schedule: &Schedule, arch: &ArchSpec) -> (f64, f64) {
    let p = &schedule.problem;
    let rows = p.batch as f64 * p.queries() as f64;
    let matmuls: Vec<(f64, f64)> = p
        .linear
        .iter()
        .map(|&(k, n)| (k as f64, n as f64))
        .collect();
    let unit = arch.unit(arch.tile_unit());
    let (pes, cols, tile_rows) = (unit.pes() as f64, unit.cols() as f64, unit.rows() as f64);
    let table = arch.costs();
    let mac = table.energy_pj("mac").unwrap_or(0.0);
    let (buf_r, buf_w) = table.buffer_word_pj(arch.buffer_bytes(), arch.word_bits());
    let dram_word = table.dram_word_pj(arch.word_bits());
    let bytes_per_cycle = arch.dram_bytes_per_cycle();
    let word_bytes = arch.word_bytes() as f64;
    let (mut cycles, mut energy) = (0.0, 0.0);
    for (k, n) in matmuls {
        let macs = rows * k * n;
        let dram = rows * k + k * n + rows * n;
        // Output-stationary tiles: inputs are re-read per column tile, weights per row tile.
        let buffer_reads = rows * k * (n / cols).ceil() + k * n * (rows / tile_rows).ceil();
        cycles += (macs / pes).max(dram * word_bytes / bytes_per_cycle);
        energy += macs * mac + dram * dram_word + buffer_reads * buf_r + dram * buf_w;
    }
    // The chip leaks while the linear layers run as it does during attention.
    energy += cycles * breakdown::leakage_rate_pj(arch);
    (cycles, energy)
}
