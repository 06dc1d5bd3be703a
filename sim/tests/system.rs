//! Systems of chips: the targets (ring attention's crossover bandwidth, causal load
//! balance by assignment, Ulysses' divisibility), the system files' validation, and the
//! step-level event simulation against the analytical model. Expected values are derived in
//! the comments from hand formulas and the single-chip model run on its own.

use cascade_ir::Cascade;
use cascade_scheduler::system::{RawSystem, SystemOutcome, SystemSchedule, SystemSpec, partition};
use cascade_scheduler::{Outcome, Problem, schedule, shipped};
use cascade_sim::cycle::CycleConfig;
use cascade_sim::simulate;
use cascade_sim::system::{SystemCycleConfig, SystemReport, run, simulate_system};

fn cascade(name: &str) -> Cascade {
    let src = cascade_ir::library::source(name).expect("library cascade");
    cascade_ir::dsl::parse(src, "library")
        .expect("parses")
        .cascade
}

fn system(name: &str, chips: u64) -> SystemSpec {
    shipped::load_system(name)
        .expect("shipped")
        .expect("valid")
        .with_chips(chips)
        .expect("chips")
}

fn bert(seq: u64) -> Problem {
    let w = shipped::load_workloads().expect("valid workloads");
    w.problem(w.model("bert").expect("shipped model"), seq)
}

fn scheduled(c: &Cascade, s: &SystemSpec, p: &Problem) -> SystemSchedule {
    match partition(c, s, p).expect("sizes") {
        SystemOutcome::Scheduled(x) => *x,
        SystemOutcome::Infeasible(why) => panic!("{}: {why}", s.name()),
    }
}

fn priced(c: &Cascade, s: &SystemSpec, p: &Problem) -> SystemReport {
    simulate_system(&scheduled(c, s, p), s)
}

/// The single-chip model's latency of a dense `keys × queries` BERT block, run on its own.
fn dense_block_s(keys: u64, queries: u64) -> f64 {
    let arch = shipped::load_arch("fusemax")
        .expect("shipped")
        .expect("valid");
    let mut p = bert(keys);
    p.sizes.insert("M".into(), keys);
    p.sizes.insert("P".into(), queries);
    match schedule(&cascade("attention_1pass"), &arch, &p).expect("sizes") {
        Outcome::Scheduled(s) => simulate(&s, &arch).latency_s,
        Outcome::Infeasible(why) => panic!("{why}"),
    }
}

/// Ring attention of a 1M-token BERT prefill (batch 64, 12 heads, E = F = 64, fp16) on 64
/// FuseMax chips with zig-zag chunks: 1M tokens are 4,096 tiles of 256, 128 chunks of 32 tiles
/// (8,192 tokens), two per chip, so a chip holds 16,384 queries and receives 16,384 keys' K and
/// V per step: B = 16,384 × (64 + 64) × 12 × 64 × 2 bytes = 3,221,225,472 bytes. Its dense
/// block compute c is the single-chip model of a 16,384 × 16,384 problem. A step hides its
/// transfer when α + B/β ≤ c, so the crossover bandwidth is β* = B / (c − α). Above it every
/// step is hidden (exposed = 0); at β*/2 each of the 63 transfers takes x ≈ 2c − α, and a chip
/// takes 63·x + c (the pairing of each transfer with the step computed during it), so the
/// exposed share is 63·(x − c) / (63·x + c) ≈ 63/127 ≈ 0.496.
#[test]
fn ring_attention_hides_communication_above_the_crossover_bandwidth() {
    let c = cascade("attention_1pass");
    let p = bert(1 << 20);
    let base = system("ring-fusemax", 64);
    let bytes = 16_384u64 * (64 + 64) * 12 * 64 * 2;
    assert_eq!(bytes, 3_221_225_472);
    let block_s = dense_block_s(16_384, 16_384);
    let alpha = base.link_latency_s();
    let crossover = bytes as f64 / (block_s - alpha) / 1e9;
    let report = priced(&c, &base, &p);
    let got = report.crossover_gb_s.expect("blocks travel");
    assert!(
        (got - crossover).abs() / crossover < 1e-9,
        "crossover {got} GB/s, closed form {crossover} GB/s"
    );
    assert!((report.block_compute_s - block_s).abs() / block_s < 1e-9);

    let check = |factor: f64, hidden: bool| {
        let s = base.with_link_gb_s(crossover * factor).expect("bandwidth");
        let r = priced(&c, &s, &p);
        let share = r.exposed_s / r.latency_s;
        assert_eq!(
            r.block_compute_s > r.block_transfer_s,
            hidden,
            "at {factor}× the crossover: block compute {} s, transfer {} s",
            r.block_compute_s,
            r.block_transfer_s
        );
        assert_eq!(
            share < 0.05,
            hidden,
            "at {factor}× the crossover: exposed {share}"
        );
        share
    };
    assert_eq!(check(1.05, true), 0.0);
    assert_eq!(check(10.0, true), 0.0);
    let below = check(0.5, false);
    let x = alpha + bytes as f64 / (crossover * 0.5 * 1e9);
    let expected = 63.0 * (x - block_s) / (63.0 * x + block_s);
    assert!(
        (below - expected).abs() < 1e-9,
        "exposed share {below}, closed form {expected}"
    );
    assert!((expected - 63.0 / 127.0).abs() < 0.01);
}

/// A bidirectional ring computes two blocks per step for one transfer time, so its crossover
/// is B / (2c − α): about half ring attention's on the same blocks.
#[test]
fn a_bidirectional_ring_halves_the_crossover_bandwidth() {
    let c = cascade("attention_1pass");
    let p = bert(1 << 18);
    let ring = priced(&c, &system("ring-fusemax", 16), &p);
    let token = priced(&c, &system("tokenring-fusemax", 16), &p);
    let block = ring.block_compute_s;
    let alpha = system("ring-fusemax", 16).link_latency_s();
    let bytes = ring.crossover_gb_s.expect("blocks") * 1e9 * (block - alpha);
    let expected = bytes / (2.0 * block - alpha) / 1e9;
    let got = token.crossover_gb_s.expect("blocks");
    assert!(
        (got - expected).abs() / expected < 1e-9,
        "{got} vs {expected}"
    );
    // 16 chips: ring steps 16, bidirectional ⌊16/2⌋ + 1 = 9.
    assert_eq!(scheduled(&c, &system("ring-fusemax", 16), &p).steps, 16);
    assert_eq!(scheduled(&c, &system("tokenring-fusemax", 16), &p).steps, 9);
}

fn with_assignment(name: &str, chips: u64, assignment: &str) -> SystemSpec {
    let text = shipped::system(name).expect("shipped").replace(
        "assignment = \"zigzag\"",
        &format!("assignment = \"{assignment}\""),
    );
    let raw = RawSystem::from_toml(&text).expect("parses");
    SystemSpec::new(raw, &shipped::shipped_chip)
        .expect("valid")
        .with_chips(chips)
        .expect("chips")
}

/// Causal BERT at 64K tokens (256 tiles of 256 per axis) over 8 chips; a causal row of query
/// tile t has t + 1 live key tiles (t full, the diagonal partial).
/// - Contiguous: 8 chunks of T = 32 tiles; chip c has c full blocks and a diagonal:
///   c·T² + T(T+1)/2. The last has 7·1024 + 528 = 7,696; the mean 3.5·1024 + 528 = 4,112:
///   1.8716 (about 2 − 1/N: twice the average as N grows).
/// - Zig-zag: 16 chunks of 16 tiles; chip i has chunks i and 15 − i, whose rows hold i and
///   15 − i full chunks and a diagonal each: 15·256 + 2·136 = 4,112 for every chip: balance 1.
/// - Striped: chip c has query tiles c + 8k (k < 32): Σ (c + 8k + 1) = 32c + 32 + 3,968; the
///   last 4,224 over the mean 4,112: 1.0272.
#[test]
fn zigzag_balances_a_causal_mask_and_contiguous_does_not() {
    let c = cascade("attention_causal_1pass");
    let p = bert(1 << 16);
    let check = |assignment: &str, busiest: u64, balance: f64| {
        let s = with_assignment("ring-fusemax", 8, assignment);
        let sched = scheduled(&c, &s, &p);
        let works: Vec<u64> = (0..8).map(|k| sched.chip_work(k)).collect();
        assert_eq!(
            works.iter().sum::<u64>(),
            8 * 4_112,
            "{assignment}: {works:?}"
        );
        assert_eq!(sched.total_tiles, 8 * 4_112);
        assert_eq!(*works.iter().max().expect("chips"), busiest, "{assignment}");
        let r = simulate_system(&sched, &s);
        assert!(
            (r.balance - balance).abs() < 1e-4,
            "{assignment}: balance {} vs {balance}",
            r.balance
        );
        r.balance
    };
    // The targets: contiguous leaves the last chip near twice the average, zig-zag
    // (and striped) within 5%.
    assert!(check("contiguous", 7_696, 7_696.0 / 4_112.0) > 1.8);
    assert!(check("zigzag", 4_112, 1.0) < 1.05);
    // A zig-zag pair of different chips holds two full chunk pairs of 16 × 16 tiles and two
    // empty ones: 512 live tiles of the 32 × 32 dense block, so the median receiving step
    // computes half a block and the causal crossover bandwidth is twice the dense one.
    let s = with_assignment("ring-fusemax", 8, "zigzag");
    let r = priced(&c, &s, &p);
    assert!((r.step_compute_s / r.block_compute_s - 0.5).abs() < 1e-12);
    assert!(check("striped", 4_224, 4_224.0 / 4_112.0) < 1.05);
}

/// BERT has 12 heads: a head split over 8 chips is refused with the divisors; over 4 each chip
/// runs 3 heads of the whole sequence, the single-chip model's work on batch × 3 instances.
#[test]
fn ulysses_needs_the_heads_divisible_by_the_chips() {
    let c = cascade("attention_1pass");
    let p = bert(1 << 14);
    match partition(&c, &system("ulysses-fusemax", 8), &p).expect("sizes") {
        SystemOutcome::Infeasible(why) => {
            for part in [
                "12 heads",
                "8 chips",
                "1, 2, 3, 4, 6, 12",
                "split = \"query\"",
            ] {
                assert!(why.reason.contains(part), "{}", why.reason);
            }
        }
        SystemOutcome::Scheduled(_) => panic!("12 heads over 8 chips must be refused"),
    }
    // Llama-3-8B's 32 query and 8 key/value heads over 8 chips (its cascade declares the head
    // rank): 4 query heads and one key/value head each.
    let w = shipped::load_workload_set("llm")
        .expect("shipped")
        .expect("valid");
    let llama = w.problem(w.model("llama3-8b").expect("model"), 1 << 14);
    let gqa = {
        let src = cascade_ir::library::variant_source("gqa_causal_kv_1pass").expect("variant");
        cascade_ir::dsl::parse(src, "variant")
            .expect("parses")
            .cascade
    };
    let sched = scheduled(&gqa, &system("ulysses-fusemax", 8), &llama);
    assert_eq!(sched.chip_schedule.problem.sizes["H"], 4);
    assert_eq!(sched.chip_schedule.problem.sizes["G"], 1);
    let s = system("ulysses-fusemax", 4);
    let sched = scheduled(&c, &s, &p);
    assert_eq!(sched.chip_schedule.instances(), 64 * 3);
    let r = simulate_system(&sched, &s);
    assert_eq!(r.balance, 1.0);
    // Two all-to-alls over a switch: α + 3 pieces / β each. The input piece is a chip's 4,096
    // tokens of one chip's 3 heads of Q, K and V: 4,096 × 3 × (64 + 128) × 64 × 2 bytes; the
    // output piece 4,096 × 3 × 64 × 64 × 2.
    let beta = s.link_bytes_per_s();
    let alpha = s.link_latency_s();
    let qkv = 4_096.0 * 3.0 * 192.0 * 64.0 * 2.0;
    let out = 4_096.0 * 3.0 * 64.0 * 64.0 * 2.0;
    let expected = 2.0 * alpha + 3.0 * (qkv + out) / beta;
    assert!((r.collectives_s - expected).abs() / expected < 1e-9);
}

/// A key split runs every query against its keys, then merges 16 partial states per row.
/// Per chip: ⌈4,096 / 16⌉ = 256 queries × 12 heads × 64 = 196,608 rows, 15 merges each, over
/// the 256 PEs of the 1D array: 11,520 merges per PE. A merge is 1 max, 2 adds, 2 exps and
/// 65 multiplies and 65 MACs on FuseMax's 1D array (exp 6 cycles, div on its own pipeline):
/// 1 + 2 + 12 + 65 + 65 = 145 cycles at 940 MHz.
#[test]
fn a_key_split_pays_the_split_k_combine() {
    let c = cascade("attention_1pass");
    let p = bert(4_096);
    let s = system("splitk-fusemax", 16);
    let r = priced(&c, &s, &p);
    let expected = 11_520.0 * 145.0 / 940e6;
    assert!(
        (r.combine_s - expected).abs() / expected < 1e-9,
        "{} vs {expected}",
        r.combine_s
    );
    assert!(r.combine_energy_pj > 0.0);
    // The collectives on the 4 × 4 torus: every chip one piece to every other, routed row then
    // column; a ring of 4 carries ⌊4²/4⌋ / 2 = 2 pieces per directed link from each of the 4
    // chips of the other dimension, 8 pieces, after 2 + 2 hops of latency. The all-gather's
    // piece is a chip's 256 queries of Q: 256 × 64 × 12 × 64 × 2 = 25,165,824 bytes; the
    // reduce-scatter's its 196,608 rows of (64 + 2) words: 25,952,256 bytes.
    let (alpha, beta) = (s.link_latency_s(), s.link_bytes_per_s());
    let expected = 2.0 * 4.0 * alpha + 8.0 * (25_165_824.0 + 25_952_256.0) / beta;
    assert!(
        (r.collectives_s - expected).abs() / expected < 1e-9,
        "{} vs {expected}",
        r.collectives_s
    );
}

/// One chip is the single-chip model: no transfers, the same latency.
#[test]
fn one_chip_is_the_single_chip_model() {
    let c = cascade("attention_1pass");
    let p = bert(1 << 14);
    let r = priced(&c, &system("ring-fusemax", 1), &p);
    let alone = dense_block_s(1 << 14, 1 << 14);
    assert!((r.latency_s - alone).abs() / alone < 1e-12);
    assert_eq!(r.exposed_s, 0.0);
    assert_eq!(r.link_energy_pj, 0.0);
}

/// The step-level event simulation with the per-chip cycle engine against the analytical
/// model, on systems of up to 16 chips: within 5% in latency where compute hides the links,
/// where it does not, with a causal mask, on a bidirectional ring and without overlap.
#[test]
fn event_simulation_agrees_with_the_analytical_model() {
    let config = SystemCycleConfig {
        chip: CycleConfig {
            max_slots: Some(4096),
            tile_buffers: 2,
            log_events: 0,
        },
        buffers: 2,
    };
    let cases: [(&str, &str, u64, u64, Option<f64>); 6] = [
        ("attention_1pass", "ring-fusemax", 16, 1 << 16, None),
        ("attention_1pass", "ring-fusemax", 16, 1 << 16, Some(1.0)),
        ("attention_causal_1pass", "ring-fusemax", 16, 1 << 16, None),
        (
            "attention_causal_1pass",
            "tokenring-fusemax",
            16,
            1 << 16,
            None,
        ),
        (
            "attention_1pass",
            "tokenring-fusemax",
            8,
            1 << 15,
            Some(2.0),
        ),
        ("attention_1pass", "ulysses-fusemax", 4, 1 << 14, None),
    ];
    for (name, sys, chips, seq, gb_s) in cases {
        let c = cascade(name);
        let mut s = system(sys, chips);
        if let Some(b) = gb_s {
            s = s.with_link_gb_s(b).expect("bandwidth");
        }
        let p = bert(seq);
        let sched = scheduled(&c, &s, &p);
        let model = simulate_system(&sched, &s);
        let events = run(&sched, &s, &config);
        let gap = (events.latency_s - model.latency_s).abs() / model.latency_s;
        assert!(
            gap < 0.05,
            "{name} on {sys} × {chips} at {seq}: events {} s, model {} s ({gap})",
            events.latency_s,
            model.latency_s
        );
    }
}

/// With one receive buffer a chip cannot take the next block until it has computed the one it
/// holds, so nothing overlaps: on a dense ring of N chips with step compute c and transfer x
/// each chip takes N·c + (N − 1)·x, what the analytical model charges without overlap.
#[test]
fn one_receive_buffer_serialises_transfers_and_compute() {
    let c = cascade("attention_1pass");
    let s = system("ring-fusemax", 8);
    let p = bert(1 << 15);
    let sched = scheduled(&c, &s, &p);
    let config = |buffers| SystemCycleConfig {
        chip: CycleConfig {
            max_slots: Some(4096),
            tile_buffers: 2,
            log_events: 0,
        },
        buffers,
    };
    let one = run(&sched, &s, &config(1));
    let two = run(&sched, &s, &config(2));
    let (step, x) = (one.block_compute_s, one.block_transfer_s);
    let expected = 8.0 * step + 7.0 * x;
    assert!(
        (one.latency_s - expected).abs() / expected < 1e-9,
        "{} vs {expected}",
        one.latency_s
    );
    // Double buffering hides the transfers (x < c at 100 GB/s here).
    assert!(x < step);
    assert!((two.latency_s - 8.0 * step).abs() / (8.0 * step) < 1e-9);
}
