//! The cycle-level simulator: executes a schedule tile by tile instead of summing formulas.
//!
//! Entry point: [`run`]`(&Schedule, &ArchSpec, &CycleConfig) -> CycleReport`. Each phase is a
//! stream of *slots*, one per (instance, query tile, pass, key tile) in the scheduler's loop
//! order. In every slot each per-key-tile Einsum of that pass does its share of work (its
//! cycles over the phase's tiles); Einsums that run once per query tile do theirs after the
//! query tile's last key tile. Units are resources that take their items in the scheduler's
//! epoch order (slot `t - stage` in epoch `t`, oldest heavy item first when the tile unit
//! interleaves). The scheduler already gives an interleaved Einsum that reads a same-tile
//! producer one more tile of lag (the reference's `(SLNV[b] | BQK[d]) → … → SLN[c]`, b < c);
//! should an order still run a consumer before its producer of the same tile, the engine adds
//! that lag itself rather than break the dependency. An item starts
//! when
//! - its unit is free,
//! - every same-phase producer has finished the same tile (a producer from an earlier pass:
//!   that query tile's last key tile, since the pass reduced the whole key rank), plus the
//!   array's row count when the producer is a spatial reduction that must drain,
//! - for items at lag 0, the slot's DRAM reads have arrived.
//!
//! Without interleaving, a draining reduction whose result comes back to the tile unit within
//! the tile (directly or through another unit) also holds the array for the drain: a stall.
//! With interleaving other work fills the drain and only the dependants wait.
//!
//! DRAM is one channel at the arch's bandwidth. A slot's reads (the phase's reads spread evenly
//! over its slots) may start once slot `s - tile_buffers` has been consumed by its lag-0
//! items; reads have priority and a finished slot's writes fill the channel's idle time, the
//! rest draining at the end of the phase. With a slot limit, the phase runs twice (the limit
//! and the limit less a window of whole query groups) and the difference of the two end times
//! is the steady-state period per slot that prices the slots not executed.
//!
//! Energy is not simulated: it is the analytical model's action counts × table.

use std::collections::BTreeMap;

use cascade_scheduler::{ArchSpec, Schedule, UnitId};

use crate::{Energy, simulate};

/// How much to execute. No `Default`: the limit decides how long a run takes.
#[derive(Debug, Clone, PartialEq)]
pub struct CycleConfig {
    /// Slots to execute per phase before extrapolating the rest from the steady-state period
    /// (raised to two query groups, every pass over every key tile of two query tiles, so the
    /// window holds whole ones); `None` executes every slot.
    pub max_slots: Option<u64>,
    /// K/V tile buffers in the global buffer (2 = double buffering).
    pub tile_buffers: u64,
    /// Item events to keep in [`CycleReport::events`] (0 keeps none).
    pub log_events: usize,
}

/// One executed work item.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub phase: usize,
    /// Index into [`Schedule::einsums`].
    pub einsum: usize,
    /// Slot within the phase (for a once-per-query-tile Einsum, its query tile's last slot).
    pub slot: u64,
    pub start: f64,
    pub end: f64,
}

/// One unit's time over the layer.
#[derive(Debug, Clone, PartialEq)]
pub struct CycleUnit {
    pub name: String,
    pub busy_cycles: f64,
    /// Held by a draining reduction (no interleaving).
    pub drain_stall_cycles: f64,
    /// Waiting for DRAM with work ready otherwise.
    pub dram_stall_cycles: f64,
    /// Neither busy nor stalled: waiting for producers or for work.
    pub idle_cycles: f64,
    pub utilisation: f64,
}

/// One phase's execution.
#[derive(Debug, Clone, PartialEq)]
pub struct CyclePhase {
    pub slots: u64,
    pub executed_slots: u64,
    /// Steady-state cycles per slot measured over the window used to extrapolate.
    pub period_cycles: f64,
    pub latency_cycles: f64,
    pub dram_busy_cycles: f64,
}

/// What the cycle-level run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct CycleReport {
    pub latency_cycles: f64,
    pub latency_s: f64,
    pub units: Vec<CycleUnit>,
    /// Busy cycles per Einsum (name, cycles), in schedule order.
    pub einsums: Vec<(String, f64)>,
    pub phases: Vec<CyclePhase>,
    pub dram_busy_cycles: f64,
    /// Cycles any unit waited for DRAM, summed over units.
    pub dram_stall_cycles: f64,
    /// Whether any phase was extrapolated from a steady-state window rather than run to the end.
    pub extrapolated: bool,
    /// The analytical model's energy (action counts × table), not simulated.
    pub energy: Energy,
    pub events: Vec<Event>,
}

/// Per-unit counters.
#[derive(Clone, Default)]
struct Counters {
    busy: f64,
    drain: f64,
    dram: f64,
}

/// The result of executing the first `executed` slots of one phase.
struct PhaseRun {
    cycles: f64,
    units: BTreeMap<UnitId, Counters>,
    einsum_busy: BTreeMap<usize, f64>,
    dram_busy: f64,
    events: Vec<Event>,
}

/// A phase's slot structure.
struct Shape {
    m1: u64,
    q_tiles: u64,
    passes: u64,
    min_pass: u32,
    slots: u64,
}

impl Shape {
    fn of(schedule: &Schedule, k: usize) -> Shape {
        let phase = &schedule.phases[k];
        let part = &phase.partition;
        let m1 = part.m1.max(1);
        let q_tiles = part.p.div_ceil(part.p0.max(1)).max(1);
        let passes = u64::from(phase.passes.max(1));
        let min_pass = phase
            .einsums
            .iter()
            .map(|&x| schedule.einsums[x].pass)
            .min()
            .unwrap_or(0);
        Shape {
            m1,
            q_tiles,
            passes,
            min_pass,
            slots: q_tiles * passes * m1 * schedule.instances(),
        }
    }

    /// Slots of one query tile: every pass over every key tile.
    fn group(&self) -> u64 {
        self.passes * self.m1
    }

    /// The slot of the same query tile at `pass` and key tile `j`.
    fn slot(&self, s: u64, pass: u64, j: u64) -> u64 {
        (s / self.group() * self.passes + pass) * self.m1 + j
    }

    fn pass_of_slot(&self, s: u64) -> u64 {
        s % self.group() / self.m1
    }
}

/// Executes `schedule` on `arch`.
pub fn run(schedule: &Schedule, arch: &ArchSpec, config: &CycleConfig) -> CycleReport {
    let mut totals: BTreeMap<UnitId, Counters> = BTreeMap::new();
    let mut einsum_busy = vec![0.0; schedule.einsums.len()];
    let mut phases = Vec::new();
    let mut events = Vec::new();
    let mut latency = 0.0;
    let mut dram_busy_total = 0.0;
    let mut extrapolated = false;

    for k in 0..schedule.phases.len() {
        let shape = Shape::of(schedule, k);
        let slots = shape.slots;
        // At least two query groups, so the window below covers whole ones.
        let executed = config
            .max_slots
            .map_or(slots, |l| l.max(2 * shape.group()).clamp(1, slots));
        let budget = config.log_events.saturating_sub(events.len());
        let full = exec_phase(schedule, arch, k, &shape, executed, config, budget);
        events.extend(full.events.iter().cloned());
        let (cycles, period) = if executed < slots {
            extrapolated = true;
            // The window: whole query groups from the second half, so once-per-query-tile
            // work and every pass are counted at their rates.
            let window = (executed / 2 / shape.group()).max(1) * shape.group();
            let shorter = exec_phase(schedule, arch, k, &shape, executed - window, config, 0);
            let period = (full.cycles - shorter.cycles) / window as f64;
            let rest = (slots - executed) as f64;
            let scale = rest / window as f64;
            // Counters of the unexecuted slots: the window's, repeated.
            let mut units = full.units.clone();
            for (u, c) in &full.units {
                let s = shorter.units.get(u).cloned().unwrap_or_default();
                let t = units.entry(*u).or_default();
                t.busy += (c.busy - s.busy) * scale;
                t.drain += (c.drain - s.drain) * scale;
                t.dram += (c.dram - s.dram) * scale;
            }
            for (&x, &b) in &full.einsum_busy {
                let s = shorter.einsum_busy.get(&x).copied().unwrap_or(0.0);
                einsum_busy[x] += b + (b - s) * scale;
            }
            dram_busy_total += full.dram_busy + (full.dram_busy - shorter.dram_busy) * scale;
            for (u, c) in units {
                let t = totals.entry(u).or_default();
                t.busy += c.busy;
                t.drain += c.drain;
                t.dram += c.dram;
            }
            (full.cycles + period * rest, period)
        } else {
            for (&x, &b) in &full.einsum_busy {
                einsum_busy[x] += b;
            }
            dram_busy_total += full.dram_busy;
            for (u, c) in &full.units {
                let t = totals.entry(*u).or_default();
                t.busy += c.busy;
                t.drain += c.drain;
                t.dram += c.dram;
            }
            (full.cycles, full.cycles / executed.max(1) as f64)
        };
        latency += cycles;
        phases.push(CyclePhase {
            slots,
            executed_slots: executed,
            period_cycles: period,
            latency_cycles: cycles,
            dram_busy_cycles: full.dram_busy,
        });
    }

    let units: Vec<CycleUnit> = arch
        .unit_ids()
        .map(|u| {
            let c = totals.get(&u).cloned().unwrap_or_default();
            CycleUnit {
                name: arch.unit(u).name().to_string(),
                busy_cycles: c.busy,
                drain_stall_cycles: c.drain,
                dram_stall_cycles: c.dram,
                idle_cycles: (latency - c.busy - c.drain - c.dram).max(0.0),
                utilisation: if latency > 0.0 { c.busy / latency } else { 0.0 },
            }
        })
        .collect();
    let dram_stall = units.iter().map(|u| u.dram_stall_cycles).sum();
    CycleReport {
        latency_cycles: latency,
        latency_s: latency / arch.clock_hz(),
        units,
        einsums: schedule
            .einsums
            .iter()
            .zip(einsum_busy)
            .map(|(e, b)| (e.name.clone(), b))
            .collect(),
        phases,
        dram_busy_cycles: dram_busy_total,
        dram_stall_cycles: dram_stall,
        extrapolated,
        energy: simulate(schedule, arch).energy,
        events,
    }
}

/// DRAM: one channel; reads in issue order with priority, writes filling idle time.
struct Dram {
    /// When the channel finishes the work it has started.
    free: f64,
    /// Writes not yet served: (ready time, cycles left).
    writes: std::collections::VecDeque<(f64, f64)>,
    busy: f64,
}

impl Dram {
    /// Serves pending writes that can start before `until`.
    fn fill(&mut self, until: f64) {
        while let Some(w) = self.writes.front_mut() {
            let start = self.free.max(w.0);
            if start >= until {
                break;
            }
            let amount = w.1.min(until - start);
            self.free = start + amount;
            self.busy += amount;
            w.1 -= amount;
            if w.1 <= 0.0 {
                self.writes.pop_front();
            }
        }
    }

    /// A read requested at `at` taking `cycles`; returns its arrival.
    fn read(&mut self, at: f64, cycles: f64) -> f64 {
        self.fill(at);
        let start = self.free.max(at);
        self.free = start + cycles;
        self.busy += cycles;
        self.free
    }

    fn finish(&mut self) -> f64 {
        self.fill(f64::INFINITY);
        self.free
    }
}

/// Executes the first `executed` slots of phase `k`, starting at cycle 0.
fn exec_phase(
    schedule: &Schedule,
    arch: &ArchSpec,
    k: usize,
    shape: &Shape,
    executed: u64,
    config: &CycleConfig,
    log: usize,
) -> PhaseRun {
    let phase = &schedule.phases[k];
    let n = schedule.instances() as f64;
    let tile_unit = arch.tile_unit();
    let rows = arch.unit(tile_unit).rows() as f64;
    let bytes_per_cycle = arch.dram_bytes_per_cycle();
    let word_bytes = arch.word_bytes() as f64;
    let buffers = config.tile_buffers.max(1);
    let m1 = shape.m1;
    let tiles = (m1 * shape.q_tiles) as f64;
    let slots = shape.slots as f64;
    let member = |x: usize| phase.einsums.contains(&x);
    let pass_of = |x: usize| u64::from(schedule.einsums[x].pass - shape.min_pass);
    let read_cycles = phase.traffic.dram_read * n * word_bytes / slots / bytes_per_cycle;
    let write_cycles = phase.traffic.dram_write * n * word_bytes / slots / bytes_per_cycle;

    let per_tile: Vec<usize> = phase
        .einsums
        .iter()
        .copied()
        .filter(|&x| schedule.einsums[x].per_key_tile)
        .collect();
    let once: Vec<usize> = phase
        .einsums
        .iter()
        .copied()
        .filter(|&x| !schedule.einsums[x].per_key_tile)
        .collect();
    // The per-unit order of one epoch: (stage, index), with the heaviest item of the oldest
    // tile first when the tile unit interleaves, as the scheduler lays epochs out.
    let mut order: BTreeMap<UnitId, Vec<usize>> = BTreeMap::new();
    for &x in &phase.einsums {
        // Every unit of the phase, including those with only once-per-query work.
        let items = order.entry(schedule.einsums[x].unit).or_default();
        if schedule.einsums[x].per_key_tile {
            items.push(x);
        }
    }
    for (&u, items) in order.iter_mut() {
        items.sort_by_key(|&x| (schedule.einsums[x].stage, x));
        let lo = items.first().map(|&x| schedule.einsums[x].stage);
        let hi = items.last().map(|&x| schedule.einsums[x].stage);
        if arch.interleave() && u == tile_unit && lo != hi {
            let heavy = items
                .iter()
                .copied()
                .filter(|&x| Some(schedule.einsums[x].stage) == hi)
                .max_by_key(|&x| (schedule.einsums[x].cycles, std::cmp::Reverse(x)));
            if let Some(h) = heavy {
                items.retain(|&x| x != h);
                items.insert(0, h);
            }
        }
    }
    // The lag each item actually runs at: the scheduler's stage, raised where the epoch order
    // would put a consumer before its producer of the same tile (a later hop on the same unit,
    // or any hop to another unit, takes the next epoch).
    let mut lag: BTreeMap<usize, u64> = BTreeMap::new();
    let position = |x: usize| {
        let u = schedule.einsums[x].unit;
        order[&u].iter().position(|&y| y == x).unwrap_or(0)
    };
    for &x in &per_tile {
        let e = &schedule.einsums[x];
        let mut l = u64::from(e.stage);
        for &d in e.deps.iter().filter(|&&d| lag.contains_key(&d)) {
            let p = &schedule.einsums[d];
            let hop = p.unit != e.unit || position(d) > position(x);
            l = l.max(lag[&d] + u64::from(hop));
        }
        lag.insert(x, l);
    }
    // Once-per-query-tile Einsums run in the epoch after their producers' latest lag.
    let once_stage: BTreeMap<usize, u64> = once
        .iter()
        .map(|&x| {
            let e = &schedule.einsums[x];
            let s = e
                .deps
                .iter()
                .filter_map(|&d| lag.get(&d).map(|&l| (d, l)))
                .map(|(d, l)| l + u64::from(schedule.einsums[d].unit != e.unit))
                .max()
                .unwrap_or(0);
            (x, s)
        })
        .collect();
    let max_stage = lag
        .values()
        .copied()
        .chain(once_stage.values().copied())
        .max()
        .unwrap_or(0);
    // Draining reductions whose result comes back to the tile unit within the tile.
    let feeds_back: Vec<bool> = (0..schedule.einsums.len())
        .map(|x| {
            let e = &schedule.einsums[x];
            e.drains
                && member(x)
                && per_tile.iter().any(|&y| {
                    schedule.einsums[y].unit == tile_unit && depends_on(schedule, y, x, &member)
                })
        })
        .collect();

    let mut finish: BTreeMap<(usize, u64), f64> = BTreeMap::new();
    let mut unit_free: BTreeMap<UnitId, f64> = BTreeMap::new();
    // Per-slot times live in a ring: a slot is forgotten once its last lag has run and its
    // buffer has been handed on, so memory stays bounded however many slots execute.
    let ring = (buffers + max_stage + 2) as usize;
    let at = |s: u64| (s % ring as u64) as usize;
    let mut consumed = vec![0.0; ring];
    let mut arrived = vec![0.0; ring];
    let mut complete = vec![0.0f64; ring];
    let mut units: BTreeMap<UnitId, Counters> = BTreeMap::new();
    let mut einsum_busy: BTreeMap<usize, f64> = BTreeMap::new();
    let mut dram = Dram {
        free: 0.0,
        writes: std::collections::VecDeque::new(),
        busy: 0.0,
    };
    let mut issued = 0u64;
    let mut events = Vec::new();

    for epoch in 0..executed + max_stage {
        // Reads as far ahead as the tile buffers allow.
        while issued < executed && issued <= epoch {
            let free = if issued >= buffers {
                consumed[at(issued - buffers)]
            } else {
                0.0
            };
            let s = at(issued);
            consumed[s] = 0.0;
            complete[s] = 0.0;
            arrived[s] = dram.read(free, read_cycles);
            issued += 1;
        }
        for (&u, items) in &order {
            let mut list: Vec<(usize, u64)> = items
                .iter()
                .filter_map(|&x| {
                    let s = epoch.checked_sub(lag[&x]).filter(|&s| s < executed)?;
                    (shape.pass_of_slot(s) == pass_of(x)).then_some((x, s))
                })
                .collect();
            for &x in &once {
                if schedule.einsums[x].unit != u {
                    continue;
                }
                if let Some(s) = epoch.checked_sub(once_stage[&x]).filter(|&s| s < executed)
                    && s % shape.group() == shape.group() - 1
                {
                    list.push((x, s));
                }
            }
            for (x, s) in list {
                let e = &schedule.einsums[x];
                let dur = if e.per_key_tile {
                    e.cycles as f64 / tiles
                } else {
                    e.cycles as f64 / shape.q_tiles as f64
                };
                let mut ready = 0.0f64;
                for &d in e.deps.iter().filter(|&&d| member(d)) {
                    let p = &schedule.einsums[d];
                    if !p.per_key_tile {
                        continue;
                    }
                    // A producer of an earlier pass, or one feeding once-per-query work,
                    // reduced the whole key rank: wait for the query tile's last key tile.
                    let ds = if pass_of(d) < pass_of(x) || !e.per_key_tile {
                        shape.slot(s, pass_of(d), m1 - 1)
                    } else {
                        shape.slot(s, pass_of(d), s % m1)
                    };
                    // The lags put every producer in an earlier epoch or earlier on this
                    // unit's list, so it has run unless its slot is outside the window.
                    match finish.get(&(d, ds)) {
                        Some(&f) => ready = ready.max(f + if p.drains { rows } else { 0.0 }),
                        None => debug_assert!(ds >= executed, "{} before {}", e.name, p.name),
                    }
                }
                let free = unit_free.get(&u).copied().unwrap_or(0.0);
                let mut start = free.max(ready);
                let c = units.entry(u).or_default();
                if e.per_key_tile && lag[&x] == 0 && arrived[at(s)] > start {
                    c.dram += arrived[at(s)] - start;
                    start = arrived[at(s)];
                }
                let end = start + dur;
                c.busy += dur;
                *einsum_busy.entry(x).or_default() += dur;
                let mut held = end;
                if feeds_back[x] && !arch.interleave() {
                    c.drain += rows;
                    held += rows;
                }
                unit_free.insert(u, held);
                finish.insert((x, s), end);
                if e.per_key_tile && lag[&x] == 0 {
                    consumed[at(s)] = consumed[at(s)].max(end);
                }
                complete[at(s)] = complete[at(s)].max(held);
                if events.len() < log {
                    events.push(Event {
                        phase: k,
                        einsum: x,
                        slot: s,
                        start,
                        end,
                    });
                }
            }
        }
        // A slot whose last stage has run writes its results back.
        if let Some(s) = epoch.checked_sub(max_stage).filter(|&s| s < executed) {
            dram.writes.push_back((complete[at(s)], write_cycles));
        }
        // Forget finish times no later item can ask for.
        let keep = 2 * shape.group() + max_stage + 2;
        if epoch % shape.group() == 0 && epoch > keep {
            finish.retain(|&(_, s), _| s >= epoch - keep);
        }
    }
    let units_end = unit_free.values().copied().fold(0.0, f64::max);
    let end = units_end.max(dram.finish());
    PhaseRun {
        cycles: end,
        units,
        einsum_busy,
        dram_busy: dram.busy,
        events,
    }
}

/// Whether `y` depends on `x` through same-phase producers.
fn depends_on(schedule: &Schedule, y: usize, x: usize, member: &dyn Fn(usize) -> bool) -> bool {
    let mut stack = vec![y];
    let mut seen = vec![false; schedule.einsums.len()];
    while let Some(z) = stack.pop() {
        for &d in &schedule.einsums[z].deps {
            if d == x {
                return true;
            }
            if member(d) && !seen[d] {
                seen[d] = true;
                stack.push(d);
            }
        }
    }
    false
}
