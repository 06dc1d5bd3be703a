//! The timeline of one cycle-engine run, recorded by the engine as it executes (never derived
//! again from the schedule): every unit's work items, the stalls between them, the DRAM
//! channel's reads and writes and the K/V tile buffers held, all in cycles from the start of
//! the layer.
//!
//! Only executed slots are recorded; a phase extrapolated from its steady state says so in its
//! [`PhaseSpan`]. The recording is bounded by [`Trace::limit`] events, so a caller can size it
//! (and refuse a run) before the engine allocates anything: see
//! [`crate::cycle::trace_events_bound`].

use cascade_scheduler::UnitId;

/// Where a work item sits in the phase's loop nest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileIndex {
    /// The attention instance (batch × heads).
    pub instance: u64,
    /// The query tile within the instance.
    pub query_tile: u64,
    /// The pass over the key rank, from 0 within the phase.
    pub pass: u64,
    /// The key tile's position among its query tile's key tiles with work (under a causal mask
    /// the first query tile has one, the last all).
    pub key_slot: u64,
}

/// What a unit was doing during an [`ItemSlice`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    /// One tile of an Einsum's work.
    Work,
    /// Work was ready but the slot's DRAM reads had not arrived.
    DramStall,
    /// The array held by a reduction draining through its rows (no interleaving).
    DrainStall,
}

/// An interval on one unit's track.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemSlice {
    pub kind: ItemKind,
    pub phase: usize,
    pub unit: UnitId,
    /// Index into the schedule's Einsums: the item's own (a stall: the item that waited or held).
    pub einsum: usize,
    /// Slot within the phase, as [`crate::cycle::Event::slot`].
    pub slot: u64,
    pub tile: TileIndex,
    pub start: f64,
    pub end: f64,
    /// The producers (Einsum, slot of the same phase) whose finish this item waited for.
    pub waited_for: Vec<(usize, u64)>,
}

/// Which way the DRAM channel moved data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DramDirection {
    Read,
    Write,
}

/// An interval the DRAM channel spent on one slot's reads or (part of) its writes.
#[derive(Debug, Clone, PartialEq)]
pub struct DramSlice {
    pub phase: usize,
    pub slot: u64,
    pub direction: DramDirection,
    pub start: f64,
    pub end: f64,
    pub bytes: f64,
}

/// One K/V tile buffer held from the moment its slot's reads started arriving until the slot's
/// first-stage items had consumed it (`released` = `claimed` when the slot has no first-stage
/// item: the engine hands its buffer on at once).
#[derive(Debug, Clone, PartialEq)]
pub struct BufferSpan {
    pub phase: usize,
    pub slot: u64,
    pub claimed: f64,
    pub released: f64,
    pub bytes: f64,
}

/// One phase on the timeline: executed from `start` to `executed_end`, and, when the engine
/// extrapolated the rest, priced up to `end`.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseSpan {
    pub phase: usize,
    pub start: f64,
    pub executed_end: f64,
    pub end: f64,
    pub slots: u64,
    pub executed_slots: u64,
}

/// Everything recorded of one run, times in cycles from the start of the layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// The most items, DRAM slices and buffer spans kept together.
    pub limit: usize,
    /// Whether events were dropped at the limit.
    pub truncated: bool,
    pub items: Vec<ItemSlice>,
    pub dram: Vec<DramSlice>,
    pub buffers: Vec<BufferSpan>,
    pub phases: Vec<PhaseSpan>,
}

impl Trace {
    /// An empty trace that keeps up to `limit` events.
    pub fn new(limit: usize) -> Trace {
        Trace {
            limit,
            truncated: false,
            items: Vec::new(),
            dram: Vec::new(),
            buffers: Vec::new(),
            phases: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.items.len() + self.dram.len() + self.buffers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether one more event fits; marks the trace truncated when it does not.
    pub(crate) fn room(&mut self) -> bool {
        let fits = self.len() < self.limit;
        self.truncated |= !fits;
        fits
    }

    /// Bytes held in the tile buffers over time: (cycle, bytes) at every change, in time order.
    pub fn buffer_occupancy(&self) -> Vec<(f64, f64)> {
        let mut steps: Vec<(f64, f64)> = self
            .buffers
            .iter()
            .filter(|b| b.released > b.claimed)
            .flat_map(|b| [(b.claimed, b.bytes), (b.released, -b.bytes)])
            .collect();
        // Releases before claims at the same cycle, so a handed-on buffer is never counted twice.
        steps.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
        let mut held = 0.0f64;
        let mut out: Vec<(f64, f64)> = Vec::with_capacity(steps.len());
        for (t, delta) in steps {
            held = (held + delta).max(0.0);
            match out.last_mut() {
                Some(last) if last.0 == t => last.1 = held,
                _ => out.push((t, held)),
            }
            // An unchanged level adds nothing to a step function (a release and a claim at
            // one cycle cancel).
            let n = out.len();
            if n >= 2 && out[n - 2].1 == out[n - 1].1 {
                out.pop();
            }
        }
        out
    }

    /// The DRAM channel's throughput in `bins` equal intervals of the executed timeline:
    /// (start cycle, read bytes per cycle, write bytes per cycle) per interval, each slice's
    /// bytes shared among the intervals it overlaps in proportion to the overlap.
    pub fn dram_throughput(&self, bins: usize) -> Vec<(f64, f64, f64)> {
        let end = self.dram.iter().map(|d| d.end).fold(0.0, f64::max);
        if bins == 0 || end <= 0.0 {
            return Vec::new();
        }
        let width = end / bins as f64;
        let mut read = vec![0.0; bins];
        let mut write = vec![0.0; bins];
        for d in &self.dram {
            let length = d.end - d.start;
            if length <= 0.0 {
                continue;
            }
            let first = ((d.start / width) as usize).min(bins - 1);
            let last = ((d.end / width) as usize).min(bins - 1);
            for b in first..=last {
                let (lo, hi) = (b as f64 * width, (b + 1) as f64 * width);
                let overlap = d.end.min(hi) - d.start.max(lo);
                if overlap > 0.0 {
                    let share = d.bytes * overlap / length;
                    match d.direction {
                        DramDirection::Read => read[b] += share,
                        DramDirection::Write => write[b] += share,
                    }
                }
            }
        }
        (0..bins)
            .map(|b| (b as f64 * width, read[b] / width, write[b] / width))
            .collect()
    }
}
