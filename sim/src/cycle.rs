//! The cycle-level simulator: executes a schedule tile by tile instead of summing formulas.
//!
//! Entry point: [`run`]`(&Schedule, &ArchSpec, &CycleConfig) -> CycleReport`. Each phase is a
//! stream of *slots*, one per (instance, query tile, pass, key tile with work) in the
//! scheduler's loop order. A query tile has as many key-tile slots as the phase's occupancy
//! gives it ([`cascade_scheduler::Occupancy`]: a causal mask gives the first query tile one,
//! the last all of them), and a per-key-tile Einsum of that pass does one tile of work on as
//! many of them as it runs on (the first ones); Einsums that run once per query tile do theirs
//! after the query tile's last key tile. Units are resources that take their items in the
//! order of the scheduler's epochs ([`cascade_scheduler::Epoch`]: slot `t - lag` in epoch `t`,
//! the interleaved item of the oldest tile first). The scheduler already gives an interleaved Einsum that reads a same-tile
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
//! rest draining at the end of the phase. With a slot limit, the phase runs twice (whole query
//! tiles up to the limit, and that less a window of whole query tiles); the difference of the
//! two end times over the busiest resource's work in the window is the steady-state time per
//! unit of work, which prices the work not executed at the busiest resource's share of it.
//!
//! Energy is not simulated: it is the analytical model's action counts × table, plus the
//! chip's leakage over this run's latency.

use std::collections::BTreeMap;

use cascade_scheduler::{ArchSpec, RowGroup, Schedule, UnitId};

use crate::trace::{
    BufferSpan, DramDirection, DramSlice, ItemKind, ItemSlice, PhaseSpan, TileIndex, Trace,
};
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

/// A phase's slot structure: per instance, its query tiles in order, each a row of
/// `passes × slots` slots.
struct Layout<'a> {
    rows: &'a [RowGroup],
    passes: u64,
    min_pass: u32,
    /// Slots of one instance.
    per_instance: u64,
    slots: u64,
    query_tiles: u64,
}

/// Where a slot sits: the first slot of its query tile, the tile's key slots per pass, its
/// pass and key slot, and which row group it belongs to.
#[derive(Debug, Clone, Copy, Default)]
struct SlotInfo {
    row_start: u64,
    row_slots: u64,
    pass: u64,
    key: u64,
    group: usize,
    /// The attention instance and the query tile within it (for the trace's tile indices).
    instance: u64,
    query: u64,
}

impl SlotInfo {
    /// Where the slot sits, for the trace.
    fn tile(&self) -> TileIndex {
        TileIndex {
            instance: self.instance,
            query_tile: self.query,
            pass: self.pass,
            key_slot: self.key,
        }
    }

    /// The slot of the same query tile at `pass` and key slot `key`.
    fn at(&self, pass: u64, key: u64) -> u64 {
        self.row_start + pass * self.row_slots + key
    }

    fn last_of_row(&self, passes: u64) -> bool {
        self.pass == passes - 1 && self.key + 1 == self.row_slots
    }
}

impl<'a> Layout<'a> {
    fn of(schedule: &'a Schedule, k: usize) -> Layout<'a> {
        let phase = &schedule.phases[k];
        let rows = &phase.occupancy.rows;
        let passes = u64::from(phase.passes.max(1));
        let min_pass = phase
            .einsums
            .iter()
            .map(|&x| schedule.einsums[x].pass)
            .min()
            .unwrap_or(0);
        let per_instance = passes * rows.iter().map(|r| r.count * r.slots).sum::<u64>();
        Layout {
            rows,
            passes,
            min_pass,
            per_instance,
            slots: per_instance * schedule.instances(),
            query_tiles: rows.iter().map(|r| r.count).sum::<u64>() * schedule.instances(),
        }
    }

    /// Slots in the first `tiles` query tiles (counting over instances).
    fn slots_of_query_tiles(&self, tiles: u64) -> u64 {
        let per = self.rows.iter().map(|r| r.count).sum::<u64>().max(1);
        let (whole, rest) = (tiles / per, tiles % per);
        let mut slots = whole * self.per_instance;
        let mut left = rest;
        for r in self.rows {
            let take = left.min(r.count);
            slots += take * r.slots * self.passes;
            left -= take;
            if left == 0 {
                break;
            }
        }
        slots
    }

    /// The slots a run under `config` executes: every slot, or whole query tiles, at least two,
    /// up to the limit. The fewest tiles whose slots reach the limit is found by bisection
    /// (the slots grow with the tiles), so a huge limit over many tiles costs no time.
    fn executed(&self, config: &CycleConfig) -> u64 {
        let Some(limit) = config.max_slots else {
            return self.slots;
        };
        let (mut lo, mut hi) = (2u64, self.query_tiles.max(2));
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.slots_of_query_tiles(mid) < limit {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        self.slots_of_query_tiles(lo.min(self.query_tiles))
            .clamp(1, self.slots.max(1))
    }

    /// The slots in order, one [`SlotInfo`] each.
    fn cursor(&self) -> impl Iterator<Item = SlotInfo> + '_ {
        let instances = self.slots / self.per_instance.max(1);
        let passes = self.passes;
        (0..instances).flat_map(move |i| {
            let mut start = i * self.per_instance;
            let mut query_base = 0;
            self.rows.iter().enumerate().flat_map(move |(g, r)| {
                let first = start;
                let first_query = query_base;
                start += r.count * r.slots * passes;
                query_base += r.count;
                (0..r.count).flat_map(move |q| {
                    let row_start = first + q * r.slots * passes;
                    (0..passes).flat_map(move |pass| {
                        (0..r.slots).map(move |key| SlotInfo {
                            row_start,
                            row_slots: r.slots,
                            pass,
                            key,
                            group: g,
                            instance: i,
                            query: first_query + q,
                        })
                    })
                })
            })
        })
    }
}

/// The most slots [`run`] executes in one phase of `schedule` under `config` (it runs them up
/// to twice when it extrapolates), so that a caller can refuse a run too long to wait for.
pub fn executed_slots(schedule: &Schedule, config: &CycleConfig) -> u64 {
    (0..schedule.phases.len())
        .map(|k| Layout::of(schedule, k).executed(config))
        .max()
        .unwrap_or(0)
}

/// An upper bound on the events a traced run of `schedule` under `config` records, and on
/// the two flow events (start, end) a viewer draws per producer an item waited for: per
/// executed slot, per member Einsum a slice, a stall and two per same-phase producer; the
/// slot's read, its writes (a write is cut at most once per read, so two pieces a slot over
/// the run), its tile buffer and the second point of that buffer's counter; plus two spans a
/// phase (executed and extrapolated).
pub fn trace_events_bound(schedule: &Schedule, config: &CycleConfig) -> u64 {
    (0..schedule.phases.len())
        .map(|k| {
            let phase = &schedule.phases[k];
            let per_slot: u64 = phase
                .einsums
                .iter()
                .map(|&x| {
                    let producers = schedule.einsums[x]
                        .deps
                        .iter()
                        .filter(|d| phase.einsums.contains(d))
                        .count() as u64;
                    2 + 2 * producers
                })
                .sum::<u64>()
                + 5;
            let executed = Layout::of(schedule, k).executed(config);
            executed.saturating_mul(per_slot).saturating_add(2)
        })
        .fold(0u64, u64::saturating_add)
}

/// What a caller watches of a run.
pub struct Observer<'a> {
    /// Where to record the run's timeline (`None`: record nothing).
    pub trace: Option<&'a mut Trace>,
    /// Called now and then with (slots executed so far, slots the run executes in all).
    pub progress: &'a mut dyn FnMut(u64, u64),
}

impl std::fmt::Debug for Observer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("trace", &self.trace.as_ref().map(|t| t.len()))
            .finish_non_exhaustive()
    }
}

/// What one phase's execution reports to the observer: its start on the layer's timeline and
/// the slots executed before it.
struct Sink<'s, 'a> {
    observer: &'s mut Observer<'a>,
    offset: f64,
    done: u64,
    total: u64,
}

impl Sink<'_, '_> {
    /// The trace, when there is one with room for an event.
    fn trace(&mut self) -> Option<&mut Trace> {
        let trace = self.observer.trace.as_deref_mut()?;
        trace.room().then_some(trace)
    }

    /// Records a work item (times from the phase's start), with the DRAM stall before it
    /// (from `waiting_from`) and the drain that holds its unit after it (until `held`).
    fn item(&mut self, work: ItemSlice, waiting_from: f64, held: f64) {
        let offset = self.offset;
        let Some(trace) = self.trace() else { return };
        let stall = |kind, start: f64, end: f64| ItemSlice {
            kind,
            start: offset + start,
            end: offset + end,
            waited_for: Vec::new(),
            ..work.clone()
        };
        if work.start > waiting_from {
            trace
                .items
                .push(stall(ItemKind::DramStall, waiting_from, work.start));
        }
        if held > work.end {
            trace
                .items
                .push(stall(ItemKind::DrainStall, work.end, held));
        }
        trace.items.push(ItemSlice {
            start: offset + work.start,
            end: offset + work.end,
            ..work
        });
    }

    fn buffer(&mut self, span: BufferSpan) {
        let offset = self.offset;
        if let Some(trace) = self.trace() {
            trace.buffers.push(BufferSpan {
                claimed: offset + span.claimed,
                released: offset + span.released,
                ..span
            });
        }
    }

    /// Records the channel's intervals of phase `k`: (slot, direction, start, end).
    fn dram(&mut self, k: usize, log: Vec<(u64, DramDirection, f64, f64)>, bytes_per_cycle: f64) {
        let offset = self.offset;
        for (slot, direction, start, end) in log {
            let Some(trace) = self.trace() else { return };
            trace.dram.push(DramSlice {
                phase: k,
                slot,
                direction,
                start: offset + start,
                end: offset + end,
                bytes: (end - start) * bytes_per_cycle,
            });
        }
    }

    /// Reports `done` slots of this phase executed.
    /// The end of `epoch`: the buffer span of the slot that just handed its tile buffer on (when
    /// it is one the phase executes), and progress every 1,024 epochs.
    fn epoch_done(&mut self, epoch: u64, executed: u64, span: BufferSpan) {
        if epoch < executed {
            self.buffer(span);
        }
        if epoch.is_multiple_of(1024) {
            self.progress(epoch.min(executed));
        }
    }

    fn progress(&mut self, done: u64) {
        (self.observer.progress)(self.done + done, self.total);
    }
}

/// Executes `schedule` on `arch`.
pub fn run(schedule: &Schedule, arch: &ArchSpec, config: &CycleConfig) -> CycleReport {
    let mut quiet = |_: u64, _: u64| {};
    run_observed(
        schedule,
        arch,
        config,
        &mut Observer {
            trace: None,
            progress: &mut quiet,
        },
    )
}

/// Executes `schedule` on `arch`, recording into `observer.trace` and reporting progress.
pub fn run_observed(
    schedule: &Schedule,
    arch: &ArchSpec,
    config: &CycleConfig,
    observer: &mut Observer<'_>,
) -> CycleReport {
    let total_slots: u64 = (0..schedule.phases.len())
        .map(|k| Layout::of(schedule, k).executed(config))
        .sum();
    let mut done_slots = 0u64;
    let n = schedule.instances() as f64;
    let mut totals: BTreeMap<UnitId, Counters> = BTreeMap::new();
    let mut einsum_busy = vec![0.0; schedule.einsums.len()];
    let mut phases = Vec::new();
    let mut events = Vec::new();
    let mut latency = 0.0;
    let mut dram_busy_total = 0.0;
    let mut extrapolated = false;
    let bytes_per_cycle = arch.dram_bytes_per_cycle();
    let word_bytes = arch.word_bytes() as f64;

    for k in 0..schedule.phases.len() {
        let phase = &schedule.phases[k];
        let layout = Layout::of(schedule, k);
        let slots = layout.slots;
        let executed = layout.executed(config);
        let budget = config.log_events.saturating_sub(events.len());
        let mut sink = Sink {
            observer: &mut *observer,
            offset: latency,
            done: done_slots,
            total: total_slots,
        };
        let full = exec_phase(
            schedule,
            arch,
            k,
            &layout,
            executed,
            config,
            budget,
            Some(&mut sink),
        );
        done_slots += executed;
        events.extend(full.events.iter().cloned());
        // The work of the whole phase per resource: each unit's Einsums, and DRAM.
        let mut total_work: BTreeMap<UnitId, f64> = BTreeMap::new();
        for &x in &phase.einsums {
            let e = &schedule.einsums[x];
            *total_work.entry(e.unit).or_default() += e.cycles as f64 * n;
        }
        let dram_total =
            (phase.traffic.dram_read + phase.traffic.dram_write) * n * word_bytes / bytes_per_cycle;
        let (cycles, period) = if executed < slots {
            extrapolated = true;
            // The window: whole query tiles from the second half of those executed.
            let executed_tiles = (1..=layout.query_tiles)
                .find(|&t| layout.slots_of_query_tiles(t) >= executed)
                .unwrap_or(layout.query_tiles);
            let window_tiles = (executed_tiles / 2).max(1);
            let shorter_slots = layout.slots_of_query_tiles(executed_tiles - window_tiles);
            let shorter = exec_phase(schedule, arch, k, &layout, shorter_slots, config, 0, None);
            let elapsed = full.cycles - shorter.cycles;
            // Work per resource in the window, and what is left after the executed slots.
            let done = |run: &PhaseRun, u: UnitId| run.units.get(&u).map_or(0.0, |c| c.busy);
            let mut window_work: Vec<(f64, f64)> = total_work
                .iter()
                .map(|(&u, &total)| (done(&full, u) - done(&shorter, u), total - done(&full, u)))
                .collect();
            window_work.push((
                full.dram_busy - shorter.dram_busy,
                (dram_total - full.dram_busy).max(0.0),
            ));
            // Steady-state time per unit of the busiest resource's work, times the most work
            // any resource still has.
            let busiest = window_work
                .iter()
                .copied()
                .fold((0.0f64, 0.0f64), |a, w| if w.0 > a.0 { w } else { a });
            let per_work = if busiest.0 > 0.0 {
                elapsed / busiest.0
            } else {
                1.0
            };
            let rest_work = window_work.iter().map(|w| w.1).fold(0.0, f64::max);
            let rest = per_work * rest_work;
            let scale = if elapsed > 0.0 { rest / elapsed } else { 0.0 };
            // Busy time is the work itself; stalls of the unexecuted slots repeat the window's.
            for (&u, &total) in &total_work {
                let t = totals.entry(u).or_default();
                let c = full.units.get(&u).cloned().unwrap_or_default();
                let s = shorter.units.get(&u).cloned().unwrap_or_default();
                t.busy += total;
                t.drain += c.drain + (c.drain - s.drain) * scale;
                t.dram += c.dram + (c.dram - s.dram) * scale;
            }
            for &x in &phase.einsums {
                einsum_busy[x] += schedule.einsums[x].cycles as f64 * n;
            }
            dram_busy_total += full.dram_busy.max(dram_total);
            let period = elapsed / (executed - shorter_slots).max(1) as f64;
            (full.cycles + rest, period)
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
        if let Some(trace) = observer.trace.as_deref_mut() {
            trace.phases.push(PhaseSpan {
                phase: k,
                start: latency,
                executed_end: latency + full.cycles,
                end: latency + cycles,
                slots,
                executed_slots: executed,
            });
        }
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
        energy: {
            // Dynamic energy is the model's action counts; the chip leaks for this run's time.
            let mut e = simulate(schedule, arch).energy;
            e.leakage_pj = latency * crate::breakdown::leakage_rate_pj(arch);
            e
        },
        events,
    }
}

/// DRAM: one channel; reads in issue order with priority, writes filling idle time.
struct Dram {
    /// When the channel finishes the work it has started.
    free: f64,
    /// Writes not yet served: (ready time, cycles left, slot).
    writes: std::collections::VecDeque<(f64, f64, u64)>,
    busy: f64,
    /// The channel's intervals, kept only for a trace: (slot, direction, start, end).
    log: Option<Vec<(u64, DramDirection, f64, f64)>>,
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
            if let Some(log) = &mut self.log {
                log.push((w.2, DramDirection::Write, start, start + amount));
            }
            w.1 -= amount;
            if w.1 <= 0.0 {
                self.writes.pop_front();
            }
        }
    }

    /// A read requested at `at` taking `cycles`; returns its arrival.
    fn read(&mut self, at: f64, cycles: f64, slot: u64) -> f64 {
        self.fill(at);
        let start = self.free.max(at);
        self.free = start + cycles;
        self.busy += cycles;
        if let Some(log) = &mut self.log {
            log.push((slot, DramDirection::Read, start, self.free));
        }
        self.free
    }

    fn finish(&mut self) -> f64 {
        self.fill(f64::INFINITY);
        self.free
    }
}

/// The order and lags of one phase's items, from the scheduler's epochs.
struct Order {
    /// Per unit: its per-key-tile items in epoch order.
    units: BTreeMap<UnitId, Vec<usize>>,
    /// The lag each per-key-tile item runs at.
    lag: BTreeMap<usize, u64>,
    /// The epoch after which each once-per-query item runs.
    once_stage: BTreeMap<usize, u64>,
    once: Vec<usize>,
    max_stage: u64,
    /// Draining reductions whose result comes back to the tile unit within the tile.
    feeds_back: Vec<bool>,
}

impl Order {
    fn of(schedule: &Schedule, arch: &ArchSpec, k: usize) -> Order {
        let phase = &schedule.phases[k];
        let member = |x: usize| phase.einsums.contains(&x);
        let tile_unit = arch.tile_unit();
        let mut units: BTreeMap<UnitId, Vec<usize>> = BTreeMap::new();
        for &x in &phase.einsums {
            // Every unit of the phase, including those with only once-per-query work.
            units.entry(schedule.einsums[x].unit).or_default();
        }
        for epoch in &phase.epochs {
            units
                .entry(epoch.unit)
                .or_default()
                .extend(epoch.order().map(|i| i.einsum));
        }
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
        // The lag each item actually runs at: the scheduler's stage, raised where the epoch
        // order would put a consumer before its producer of the same tile (a later hop on the
        // same unit, or any hop to another unit, takes the next epoch).
        let position = |x: usize| {
            let u = schedule.einsums[x].unit;
            units[&u].iter().position(|&y| y == x).unwrap_or(0)
        };
        let mut lag: BTreeMap<usize, u64> = BTreeMap::new();
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
        let feeds_back = (0..schedule.einsums.len())
            .map(|x| {
                let e = &schedule.einsums[x];
                e.drains
                    && member(x)
                    && per_tile.iter().any(|&y| {
                        schedule.einsums[y].unit == tile_unit && depends_on(schedule, y, x, &member)
                    })
            })
            .collect();
        Order {
            units,
            lag,
            once_stage,
            once,
            max_stage,
            feeds_back,
        }
    }
}

/// Executes the first `executed` slots of phase `k`, starting at cycle 0; records into the
/// sink's trace, if any, at the sink's offset.
/// Per-slot state in a ring: a slot is forgotten once its last lag has run and its buffer has
/// been handed on, so memory stays bounded however many slots execute.
struct Ring {
    len: u64,
    /// When the slot's lag-0 items were done with its tile buffer.
    consumed: Vec<f64>,
    /// When the slot's reads arrived.
    arrived: Vec<f64>,
    /// When the slot's last item let its unit go.
    complete: Vec<f64>,
    info: Vec<SlotInfo>,
    /// When the slot's tile started arriving in its buffer, for the trace.
    claimed: Vec<f64>,
}

impl Ring {
    fn new(len: u64) -> Ring {
        let n = len as usize;
        Ring {
            len,
            consumed: vec![0.0; n],
            arrived: vec![0.0; n],
            complete: vec![0.0; n],
            info: vec![SlotInfo::default(); n],
            claimed: vec![0.0; n],
        }
    }

    /// Issues slot `s`'s reads: once the slot `buffers` back has given its tile buffer up.
    fn issue(&mut self, s: u64, buffers: u64, info: SlotInfo, dram: &mut Dram, read_cycles: f64) {
        let at = |s: u64| (s % self.len) as usize;
        let free = if s >= buffers {
            self.consumed[at(s - buffers)]
        } else {
            0.0
        };
        let k = at(s);
        self.consumed[k] = 0.0;
        self.complete[k] = 0.0;
        self.info[k] = info;
        self.arrived[k] = dram.read(free, read_cycles, s);
        // The tile starts landing in its buffer when the channel starts the read.
        self.claimed[k] = self.arrived[k] - read_cycles;
    }
}

/// Which items each unit takes in one epoch: per-key-tile Einsums on the slot `lag` epochs
/// back (when it is their pass and inside their occupancy), and once-per-query Einsums on a
/// query tile's last slot.
struct Due<'a> {
    schedule: &'a Schedule,
    order: &'a Order,
    epoch: u64,
    executed: u64,
    passes: u64,
    pass_of: &'a dyn Fn(usize) -> u64,
    runs_at: &'a dyn Fn(usize, &SlotInfo) -> bool,
}

impl Due<'_> {
    fn items<'s>(
        &self,
        unit: UnitId,
        items: &[usize],
        info: &dyn Fn(u64) -> &'s SlotInfo,
    ) -> Vec<(usize, u64)> {
        let back = |stage: u64| self.epoch.checked_sub(stage).filter(|&s| s < self.executed);
        let mut list: Vec<(usize, u64)> = items
            .iter()
            .filter_map(|&x| {
                let s = back(self.order.lag[&x])?;
                let si = info(s);
                (si.pass == (self.pass_of)(x) && (self.runs_at)(x, si)).then_some((x, s))
            })
            .collect();
        for &x in &self.order.once {
            if self.schedule.einsums[x].unit != unit {
                continue;
            }
            if let Some(s) = back(self.order.once_stage[&x])
                && info(s).last_of_row(self.passes)
            {
                list.push((x, s));
            }
        }
        list
    }
}

/// When Einsum `x` on slot `si` may start as far as its same-phase producers go (a draining
/// producer adds the array's rows), and, when tracing, the producer tiles it waited for.
#[allow(clippy::too_many_arguments)] // The item and the phase's state it waits on.
fn ready_at(
    schedule: &Schedule,
    x: usize,
    si: &SlotInfo,
    finish: &BTreeMap<(usize, u64), f64>,
    member: &dyn Fn(usize) -> bool,
    pass_of: &dyn Fn(usize) -> u64,
    rows: f64,
    tracing: bool,
) -> (f64, Vec<(usize, u64)>) {
    let e = &schedule.einsums[x];
    let mut ready = 0.0f64;
    let mut waited = Vec::new();
    for &d in e.deps.iter().filter(|&&d| member(d)) {
        let p = &schedule.einsums[d];
        if !p.per_key_tile {
            continue;
        }
        // A producer of an earlier pass, or one feeding once-per-query work, reduced the whole
        // key rank: wait for the query tile's last key slot.
        let ds = if pass_of(d) < pass_of(x) || !e.per_key_tile {
            si.at(pass_of(d), si.row_slots - 1)
        } else {
            si.at(pass_of(d), si.key)
        };
        // The lags put every producer in an earlier epoch or earlier on this unit's list; a
        // producer that does not run on that slot (the tile is outside its occupancy) has
        // nothing to wait for.
        if let Some(&f) = finish.get(&(d, ds)) {
            ready = ready.max(f + if p.drains { rows } else { 0.0 });
            if tracing {
                waited.push((d, ds));
            }
        }
    }
    (ready, waited)
}

#[allow(clippy::too_many_arguments)] // The phase's context, each read once; no struct earns its keep.
fn exec_phase(
    schedule: &Schedule,
    arch: &ArchSpec,
    k: usize,
    layout: &Layout<'_>,
    executed: u64,
    config: &CycleConfig,
    log: usize,
    mut sink: Option<&mut Sink<'_, '_>>,
) -> PhaseRun {
    let phase = &schedule.phases[k];
    let n = schedule.instances() as f64;
    let tile_unit = arch.tile_unit();
    let rows = arch.unit(tile_unit).rows() as f64;
    let bytes_per_cycle = arch.dram_bytes_per_cycle();
    let word_bytes = arch.word_bytes() as f64;
    let buffers = config.tile_buffers.max(1);
    let slots = layout.slots.max(1) as f64;
    let member = |x: usize| phase.einsums.contains(&x);
    let pass_of = |x: usize| u64::from(schedule.einsums[x].pass - layout.min_pass);
    let read_cycles = phase.traffic.dram_read * n * word_bytes / slots / bytes_per_cycle;
    let write_cycles = phase.traffic.dram_write * n * word_bytes / slots / bytes_per_cycle;
    let order = Order::of(schedule, arch, k);
    // Each member's position in the row groups' run lists, by Einsum index.
    let mut run_index = vec![0usize; schedule.einsums.len()];
    for (i, &x) in phase.einsums.iter().enumerate() {
        run_index[x] = i;
    }
    let runs_at = |x: usize, info: &SlotInfo| -> bool {
        let runs = layout.rows[info.group].runs[run_index[x]];
        info.key < runs
    };

    let mut finish: BTreeMap<(usize, u64), f64> = BTreeMap::new();
    let mut unit_free: BTreeMap<UnitId, f64> = BTreeMap::new();
    let mut ring = Ring::new(buffers + order.max_stage + 2);
    let len = ring.len;
    let at = move |s: u64| (s % len) as usize;
    let mut cursor = layout.cursor();
    let mut units: BTreeMap<UnitId, Counters> = BTreeMap::new();
    let mut einsum_busy: BTreeMap<usize, f64> = BTreeMap::new();
    let tracing = sink.as_ref().is_some_and(|s| s.observer.trace.is_some());
    let mut dram = Dram {
        free: 0.0,
        writes: std::collections::VecDeque::new(),
        busy: 0.0,
        log: tracing.then(Vec::new),
    };
    let mut issued = 0u64;
    let mut events = Vec::new();
    // Finish times are kept for about two query tiles of the longest row.
    let longest = layout.rows.iter().map(|r| r.slots).max().unwrap_or(1) * layout.passes;

    for epoch in 0..executed + order.max_stage {
        // Reads as far ahead as the tile buffers allow.
        while issued < executed && issued <= epoch {
            let next = cursor.next().expect("the layout has every slot");
            ring.issue(issued, buffers, next, &mut dram, read_cycles);
            issued += 1;
        }
        for (&u, items) in &order.units {
            let info = &ring.info;
            let slot_info = |s: u64| &info[at(s)];
            let due = Due {
                schedule,
                order: &order,
                epoch,
                executed,
                passes: layout.passes,
                pass_of: &pass_of,
                runs_at: &runs_at,
            };
            for (x, s) in due.items(u, items, &slot_info) {
                let e = &schedule.einsums[x];
                let si = ring.info[at(s)];
                let dur = e.tile_cycles;
                let (ready, waited) =
                    ready_at(schedule, x, &si, &finish, &member, &pass_of, rows, tracing);
                let free = unit_free.get(&u).copied().unwrap_or(0.0);
                let mut start = free.max(ready);
                let waiting_from = start;
                let c = units.entry(u).or_default();
                let arrived = ring.arrived[at(s)];
                if e.per_key_tile && order.lag[&x] == 0 && arrived > start {
                    c.dram += arrived - start;
                    start = arrived;
                }
                let end = start + dur;
                c.busy += dur;
                *einsum_busy.entry(x).or_default() += dur;
                let mut held = end;
                if order.feeds_back[x] && !arch.interleave() {
                    c.drain += rows;
                    held += rows;
                }
                unit_free.insert(u, held);
                finish.insert((x, s), end);
                if e.per_key_tile && order.lag[&x] == 0 {
                    ring.consumed[at(s)] = ring.consumed[at(s)].max(end);
                }
                ring.complete[at(s)] = ring.complete[at(s)].max(held);
                if let Some(sk) = sink.as_deref_mut() {
                    let work = ItemSlice {
                        kind: ItemKind::Work,
                        phase: k,
                        unit: u,
                        einsum: x,
                        slot: s,
                        tile: si.tile(),
                        start,
                        end,
                        waited_for: waited,
                    };
                    sk.item(work, waiting_from, held);
                }
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
        // The slot whose first stage has just run hands its tile buffer on.
        if let Some(sk) = sink.as_deref_mut() {
            let b = at(epoch);
            let span = BufferSpan {
                phase: k,
                slot: epoch,
                claimed: ring.claimed[b],
                released: ring.consumed[b].max(ring.claimed[b]),
                bytes: read_cycles * bytes_per_cycle,
            };
            sk.epoch_done(epoch, executed, span);
        }
        // A slot whose last stage has run writes its results back.
        if let Some(s) = epoch.checked_sub(order.max_stage).filter(|&s| s < executed) {
            dram.writes
                .push_back((ring.complete[at(s)], write_cycles, s));
        }
        // Forget finish times no later item can ask for.
        let keep = 2 * longest + order.max_stage + 2;
        if epoch % longest.max(1) == 0 && epoch > keep {
            finish.retain(|&(_, s), _| s >= epoch - keep);
        }
    }
    let units_end = unit_free.values().copied().fold(0.0, f64::max);
    let end = units_end.max(dram.finish());
    if let Some(sk) = sink {
        sk.dram(k, dram.log.take().unwrap_or_default(), bytes_per_cycle);
        sk.progress(executed);
    }
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
