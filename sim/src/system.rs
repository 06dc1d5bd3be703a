//! Systems of chips: the analytical cost of a partitioned schedule, and a step-level event
//! simulation of it with the cycle engine's per-chip rate.
//!
//! A chip's compute at a step is its live tiles × the single-chip model's time per live tile on
//! the chip's sub-problem ([`crate::simulate`] of `chip_schedule`, so occupancy, fill and DRAM
//! are the single-chip model's). A block of B bytes over one link takes `α + B/β`. With overlap
//! a chip receives the next step's block while it computes this one, so a step lasts
//! `max(compute, next transfer)` and what exceeds the compute is *exposed*; without overlap the
//! two add. Collectives (all-gather, reduce-scatter, all-to-all: every chip one piece to every
//! other) cost the busiest link's load over the topology: `(N−1)·piece` on a switch,
//! `⌊N²/4⌋/2·piece` per directed ring link, the larger of the two dimensions on a torus, or
//! `N−1` (ring) and `⌈(N−1)/2⌉` (bidirectional ring) neighbour steps. The split-K combine merges
//! each row's partial states on the chip's row unit with the unit's own op prices. Link energy
//! is bytes × hops × 8 × pJ per bit.
//!
//! [`run`] simulates the same steps as events: a block leaves a chip once that chip has
//! received it and the next chip has a free receive buffer (two: double buffering), one block
//! per directed link at a time, and a chip computes a step once its block has arrived, at the
//! cycle engine's time per tile ([`crate::cycle`]). The two models part where the chips couple:
//! a chip that waits for a slower neighbour's block, or a full buffer that holds a sender.

use cascade_scheduler::system::{Exchange, SystemSchedule, SystemSpec, Topology, When};

use crate::cycle::{self, CycleConfig};

/// One chip's share of the time.
#[derive(Debug, Clone, PartialEq)]
pub struct ChipReport {
    pub compute_s: f64,
    /// When the chip's last step ends (before the collectives after it).
    pub finish_s: f64,
    /// Time its steps waited for blocks: `finish − compute`.
    pub exposed_s: f64,
    pub utilisation: f64,
}

/// What the model says about a partitioned schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct SystemReport {
    pub system: String,
    pub chips: u64,
    pub seq: u64,
    pub latency_s: f64,
    pub chip_reports: Vec<ChipReport>,
    /// The busiest chip's compute.
    pub compute_s: f64,
    /// Time on the critical path that is neither compute nor combine: exposed link transfers
    /// and the collectives.
    pub exposed_s: f64,
    pub collectives_s: f64,
    pub combine_s: f64,
    /// Link traffic: bytes × hops.
    pub link_byte_hops: f64,
    pub link_energy_pj: f64,
    pub compute_energy_pj: f64,
    pub combine_energy_pj: f64,
    pub energy_pj: f64,
    /// Energy over the tokens of the batch's sequences.
    pub energy_per_token_pj: f64,
    /// The busiest chip's live tiles over the mean.
    pub balance: f64,
    /// Mean chip utilisation (compute over latency).
    pub utilisation: f64,
    /// Compute of one dense (query chunk, key chunk) block on a chip.
    pub block_compute_s: f64,
    /// One block over one link: `α + B/β` (zero when no block travels).
    pub block_transfer_s: f64,
    /// The median compute of a step that receives blocks (over chips and steps): a dense
    /// step computes `blocks_per_step` dense blocks, a causal one about half as much.
    pub step_compute_s: f64,
    /// The link bandwidth (GB/s) at which the largest block's transfer equals the median
    /// step's compute: `B / (step_compute − α)`, so `B / (blocks_per_step · block_compute − α)`
    /// when every step is dense; `None` without block transfers, infinite when the latency
    /// alone exceeds the compute.
    pub crossover_gb_s: Option<f64>,
}

/// Time and energy per live tile of the chip's sub-problem, by the analytical model.
fn tile_rates(schedule: &SystemSchedule, system: &SystemSpec) -> (f64, f64) {
    let report = crate::simulate(&schedule.chip_schedule, system.chip());
    let tiles = schedule.chip_tiles.max(1) as f64;
    (report.latency_s / tiles, report.energy.total_pj() / tiles)
}

fn transfer_s(system: &SystemSpec, bytes: u64) -> f64 {
    if bytes == 0 {
        0.0
    } else {
        system.link_latency_s() + bytes as f64 / system.link_bytes_per_s()
    }
}

/// `Σ_{k=1}^{n−1} min(k, n−k) = ⌊n²/4⌋`: the hops from one chip to all others on a ring.
fn ring_hops(n: u64) -> f64 {
    (n * n / 4) as f64
}

/// A collective's time and its piece-hops (pieces × links crossed).
fn collective(system: &SystemSpec, piece: u64) -> (f64, f64) {
    let n = system.chips();
    if n <= 1 || piece == 0 {
        return (0.0, 0.0);
    }
    let (alpha, beta) = (system.link_latency_s(), system.link_bytes_per_s());
    let piece_f = piece as f64;
    let neighbour_hops = (n * (n - 1)) as f64;
    match system.exchange() {
        Exchange::Ring => ((n - 1) as f64 * (alpha + piece_f / beta), neighbour_hops),
        Exchange::BidirectionalRing => (
            (n - 1).div_ceil(2) as f64 * (alpha + piece_f / beta),
            neighbour_hops,
        ),
        Exchange::AllToAll => match system.topology() {
            Topology::Switch => (alpha + (n - 1) as f64 * piece_f / beta, neighbour_hops),
            // Per directed link: half of one chip's hops to all others, from each of N chips
            // over 2N links.
            Topology::Ring => (
                (n / 2) as f64 * alpha + ring_hops(n) / 2.0 * piece_f / beta,
                n as f64 * ring_hops(n),
            ),
            Topology::Torus2d => {
                let (r, c) = system.torus_dims();
                // Dimension-ordered: a row ring carries `r` pieces per column offset, a column
                // ring `c` per row offset.
                let load = (r as f64 * ring_hops(c) / 2.0).max(c as f64 * ring_hops(r) / 2.0);
                let hops = c as f64 * ring_hops(r) + r as f64 * ring_hops(c);
                (
                    ((r / 2) + (c / 2)) as f64 * alpha + load * piece_f / beta,
                    n as f64 * hops,
                )
            }
        },
    }
}

/// The split-K combine on each chip: time and energy.
fn combine(schedule: &SystemSchedule, system: &SystemSpec) -> (f64, f64) {
    let Some(c) = &schedule.combine else {
        return (0.0, 0.0);
    };
    let arch = system.chip();
    let unit = arch.unit(arch.row_unit());
    let merges = c.rows as f64 * c.partials.saturating_sub(1) as f64;
    // Every op of a merge is one the row unit prices (validation requires add, mul, max and exp
    // for the cascades it runs); an op it lacks costs nothing here rather than a guess.
    let cycles = unit.cycles_per_point(&c.ops).unwrap_or(0) as f64;
    let per_pe = (merges / unit.pes() as f64).ceil();
    let energy: f64 = c
        .ops
        .iter()
        .filter_map(|(&op, &n)| {
            let imp = unit.resolve(op)?;
            let pj: f64 = imp
                .actions()
                .iter()
                .map(|(a, k)| *k as f64 * arch.costs().energy_pj(a).unwrap_or(0.0))
                .sum();
            Some(f64::from(n) * pj)
        })
        .sum();
    (
        per_pe * cycles / arch.clock_hz(),
        merges * energy * schedule.chips as f64,
    )
}

/// Per chip: (compute, finish) by the analytical step model.
fn chip_times(schedule: &SystemSchedule, system: &SystemSpec, per_tile_s: f64) -> Vec<(f64, f64)> {
    let s = schedule.steps as usize;
    (0..schedule.chips as usize)
        .map(|c| {
            let mut t = 0.0;
            let mut compute = 0.0;
            for step in 0..s {
                let work = schedule.work[c * s + step] as f64 * per_tile_s;
                let next = if step + 1 < s {
                    transfer_s(system, schedule.receive[c * s + step + 1])
                } else {
                    0.0
                };
                compute += work;
                t += if system.overlap() {
                    work.max(next)
                } else {
                    work + next
                };
            }
            (compute, t)
        })
        .collect()
}

/// Prices a partitioned schedule with the analytical model.
pub fn simulate_system(schedule: &SystemSchedule, system: &SystemSpec) -> SystemReport {
    let (per_tile_s, per_tile_pj) = tile_rates(schedule, system);
    let times = chip_times(schedule, system, per_tile_s);
    report(schedule, system, per_tile_s, per_tile_pj, &times)
}

fn report(
    schedule: &SystemSchedule,
    system: &SystemSpec,
    per_tile_s: f64,
    per_tile_pj: f64,
    times: &[(f64, f64)],
) -> SystemReport {
    let n = schedule.chips;
    let (mut before, mut after, mut piece_hops_bytes) = (0.0, 0.0, 0.0);
    for c in &schedule.collectives {
        let (t, hops) = collective(system, c.piece_bytes);
        match c.when {
            When::Before => before += t,
            When::After => after += t,
        }
        piece_hops_bytes += hops * c.piece_bytes as f64;
    }
    let (combine_s, combine_energy_pj) = combine(schedule, system);
    let finish = times.iter().map(|t| t.1).fold(0.0, f64::max);
    let compute_s = times.iter().map(|t| t.0).fold(0.0, f64::max);
    let latency_s = before + finish + after + combine_s;
    let chip_reports: Vec<ChipReport> = times
        .iter()
        .map(|&(compute, fin)| ChipReport {
            compute_s: compute,
            finish_s: before + fin,
            exposed_s: (fin - compute).max(0.0),
            utilisation: if latency_s > 0.0 {
                compute / latency_s
            } else {
                0.0
            },
        })
        .collect();
    let ring_bytes: f64 = schedule.received.iter().map(|&b| b as f64).sum();
    let link_byte_hops = ring_bytes + piece_hops_bytes;
    let link_energy_pj = link_byte_hops * 8.0 * system.link_pj_per_bit();
    let tiles: u64 = schedule.work.iter().sum();
    let compute_energy_pj = tiles as f64 * per_tile_pj;
    let energy_pj = compute_energy_pj + combine_energy_pj + link_energy_pj;
    let tokens = (schedule.problem.queries() * schedule.problem.batch).max(1) as f64;
    let works: Vec<u64> = (0..n).map(|c| schedule.chip_work(c)).collect();
    let mean = works.iter().sum::<u64>() as f64 / n as f64;
    let busiest = works.iter().copied().max().unwrap_or(0) as f64;
    let block_compute_s = schedule.block_tiles as f64 * per_tile_s;
    let block_transfer_s = transfer_s(system, schedule.block_bytes);
    let step_compute_s = median_step(schedule) * per_tile_s;
    let crossover_gb_s = (schedule.block_bytes > 0).then(|| {
        let budget = step_compute_s - system.link_latency_s();
        if budget > 0.0 {
            schedule.block_bytes as f64 / budget / 1e9
        } else {
            f64::INFINITY
        }
    });
    SystemReport {
        system: schedule.system.clone(),
        chips: n,
        seq: schedule.problem.seq,
        latency_s,
        compute_s,
        exposed_s: (latency_s - compute_s - combine_s).max(0.0),
        collectives_s: before + after,
        combine_s,
        link_byte_hops,
        link_energy_pj,
        compute_energy_pj,
        combine_energy_pj,
        energy_pj,
        energy_per_token_pj: energy_pj / tokens,
        balance: if mean > 0.0 { busiest / mean } else { 1.0 },
        utilisation: chip_reports.iter().map(|c| c.utilisation).sum::<f64>() / n as f64,
        chip_reports,
        block_compute_s,
        block_transfer_s,
        step_compute_s,
        crossover_gb_s,
    }
}

/// The median live tiles of the steps that receive a block (0 when none does).
fn median_step(schedule: &SystemSchedule) -> f64 {
    let s = schedule.steps as usize;
    let mut works: Vec<u64> = (0..schedule.work.len())
        .filter(|&cell| cell % s > 0)
        .map(|cell| schedule.work[cell])
        .collect();
    if works.is_empty() {
        return 0.0;
    }
    let mid = works.len() / 2;
    let (_, &mut m, _) = works.select_nth_unstable(mid);
    m as f64
}

/// How [`run`] executes a system.
#[derive(Debug, Clone, PartialEq)]
pub struct SystemCycleConfig {
    /// The per-chip cycle engine's settings (its time per tile prices every step).
    pub chip: CycleConfig,
    /// Receive buffers per chip for key/value blocks (2 = double buffering; at least 1).
    pub buffers: u64,
}

/// Simulates the steps of a partitioned schedule as events (see the module doc); collectives
/// and the combine are priced as in [`simulate_system`].
pub fn run(
    schedule: &SystemSchedule,
    system: &SystemSpec,
    config: &SystemCycleConfig,
) -> SystemReport {
    let chip = cycle::run(&schedule.chip_schedule, system.chip(), &config.chip);
    let tiles = schedule.chip_tiles.max(1) as f64;
    let per_tile_s = chip.latency_s / tiles;
    let per_tile_pj = chip.energy.total_pj() / tiles;
    let times = step_events(schedule, system, per_tile_s, config.buffers.max(1));
    report(schedule, system, per_tile_s, per_tile_pj, &times)
}

/// Per chip: (compute, finish), by events step after step. At step `s` chip `c` holds the block
/// of chip `c − s` (and `c + s` on a bidirectional ring), which the chip before it (after it)
/// held at step `s − 1`.
fn step_events(
    schedule: &SystemSchedule,
    system: &SystemSpec,
    per_tile_s: f64,
    buffers: u64,
) -> Vec<(f64, f64)> {
    let n = schedule.chips as usize;
    let s = schedule.steps as usize;
    let overlap = system.overlap();
    // start[c][step], finish[c][step] of compute, and when the step's blocks arrived.
    let mut start = vec![0.0f64; n * s];
    let mut finish = vec![0.0f64; n * s];
    let mut arrive = vec![0.0f64; n * s];
    // When each chip's incoming link from behind (and from ahead) is next free.
    let mut link_behind = vec![0.0f64; n];
    let mut link_ahead = vec![0.0f64; n];
    let two_way = schedule.blocks_per_step == 2;
    let b = buffers as usize;
    for step in 0..s {
        for c in 0..n {
            let cell = c * s + step;
            if step > 0 {
                let bytes = schedule.receive[cell];
                let dur = transfer_s(system, bytes);
                let mut arrival: f64 = 0.0;
                let senders: &[(usize, bool)] = if two_way {
                    &[((c + n - 1) % n, false), ((c + 1) % n, true)]
                } else {
                    &[((c + n - 1) % n, false)]
                };
                for &(from, ahead) in senders {
                    // The sender has the block once it arrived there (its own at step 0).
                    let has = arrive[from * s + step - 1];
                    // The receiver's buffer of step − b is free once that step was computed.
                    let free = if step >= b { finish[cell - b] } else { 0.0 };
                    let mut go = has.max(free);
                    if !overlap {
                        // Neither end computes while it sends or receives.
                        go = go.max(finish[from * s + step - 1]).max(finish[cell - 1]);
                    }
                    let link = if ahead {
                        &mut link_ahead[c]
                    } else {
                        &mut link_behind[c]
                    };
                    go = go.max(*link);
                    *link = go + bytes as f64 / system.link_bytes_per_s();
                    arrival = arrival.max(go + dur);
                }
                arrive[cell] = arrival;
            }
            let prev = if step > 0 { finish[cell - 1] } else { 0.0 };
            start[cell] = prev.max(arrive[cell]);
            finish[cell] = start[cell] + schedule.work[cell] as f64 * per_tile_s;
        }
    }
    (0..n)
        .map(|c| {
            let compute = schedule.chip_work(c as u64) as f64 * per_tile_s;
            (compute, finish[c * s + s - 1])
        })
        .collect()
}
