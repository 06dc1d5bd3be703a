//! The accelerator-model targets of masks, decode and today's attention (issue 9), each held
//! to a value derived in its comment from the tile grid, the buffer rule or the arch file.

use cascade_ir::Cascade;
use cascade_scheduler::{ArchSpec, Outcome, Problem, Schedule, schedule, shipped};
use cascade_sim::{SimReport, simulate};

fn arch(name: &str) -> ArchSpec {
    shipped::load_arch(name).expect("shipped").expect("valid")
}

/// A library cascade or a model variant.
fn cascade(name: &str) -> Cascade {
    let src = cascade_ir::library::source(name)
        .or_else(|| cascade_ir::library::variant_source(name))
        .expect("library cascade or variant");
    cascade_ir::dsl::parse(src, name).expect("parses").cascade
}

fn bert(seq: u64) -> Problem {
    let w = shipped::load_workloads().expect("valid");
    w.problem(w.model("bert").expect("bert"), seq)
}

fn llm() -> cascade_scheduler::Workloads {
    shipped::load_workload_set("llm")
        .expect("shipped")
        .expect("valid")
}

fn prefill(model: &str, seq: u64) -> Problem {
    let w = llm();
    w.problem(w.model(model).expect("model"), seq)
}

fn decode(model: &str, kv: u64, batch: u64) -> Problem {
    let w = llm();
    w.decode_problem(w.model(model).expect("model"), kv, batch)
}

fn run(a: &ArchSpec, c: &str, p: &Problem) -> (Schedule, SimReport) {
    match schedule(&cascade(c), a, p).expect("sizes") {
        Outcome::Scheduled(s) => {
            let r = simulate(&s, a);
            assert!(r.non_finite().is_empty(), "{c}: {:?}", r.non_finite());
            (*s, r)
        }
        Outcome::Infeasible(why) => panic!("{} {c}: {why}", a.name()),
    }
}

fn unit<'a>(r: &'a SimReport, name: &str) -> &'a cascade_sim::UnitReport {
    r.units.iter().find(|u| u.name == name).expect("unit")
}

#[test]
fn causal_costs_half_of_dense() {
    // BERT at 64K on FuseMax: 256 × 256 tiles of 256 keys × 256 queries per head. A causal
    // mask leaves each query tile j the key tiles 0..=j: n(n+1)/2 = 32,896 of 65,536 tiles
    // (the diagonal ones partial, priced whole), 0.50195 of them. Every per-tile Einsum skips
    // the rest (the running state is unchanged there), both runs are bound by the 1D array,
    // so latency and energy follow the tiles: 0.50–0.55 of dense.
    let a = arch("fusemax");
    let p = bert(1 << 16);
    let (_, dense) = run(&a, "attention_1pass", &p);
    let (s, causal) = run(&a, "attention_causal_1pass", &p);
    let tiles = 256.0 * 257.0 / 2.0 / 65536.0;
    assert_eq!(s.phases[0].occupancy.slots(), 32896);
    assert_eq!(
        (s.phases[0].occupancy.empty, s.phases[0].occupancy.partial),
        (32640, 256)
    );
    let latency = causal.latency_cycles / dense.latency_cycles;
    let energy = causal.energy.total_pj() / dense.energy.total_pj();
    assert!((0.50..=0.55).contains(&latency), "latency ratio {latency}");
    assert!((latency - tiles).abs() < 0.005, "{latency} vs {tiles}");
    assert!((0.45..=0.55).contains(&energy), "energy ratio {energy}");
}

#[test]
fn a_window_of_4k_costs_its_share_of_the_tiles() {
    // W = 4096 at 64K: query tile j sees keys 256j - 4095 ..= 256j + 255, the key tiles
    // j-16 ..= j: 17 per row once j >= 16 and j+1 before, so 256·17 - (272 - 136) = 4,216 of
    // 65,536 tiles, 0.0643; the 1-pass form skips every other tile, so its latency is that
    // share of dense (at most 0.08). The 3-pass form also keeps only the window of each row
    // on chip instead of spilling whole rows, so against dense 3-pass it gains even more.
    let a = arch("fusemax");
    let mut p = bert(1 << 16);
    p.sizes.insert("W".into(), 4096);
    let (_, dense) = run(&a, "attention_1pass", &p);
    let (s, window) = run(&a, "window_kv_1pass", &p);
    assert_eq!(s.phases[0].occupancy.slots(), 256 * 17 - 136);
    let share = 4216.0 / 65536.0;
    let ratio = window.latency_cycles / dense.latency_cycles;
    assert!(ratio <= 0.08, "window 1-pass at {ratio} of dense");
    assert!((ratio - share).abs() < 0.005, "{ratio} vs {share}");
    let (_, dense3) = run(&a, "attention_3pass", &p);
    let (_, window3) = run(&a, "attention_window_3pass", &p);
    let ratio3 = window3.latency_cycles / dense3.latency_cycles;
    assert!(ratio3 <= 0.08, "window 3-pass at {ratio3} of dense 3-pass");
}

/// K and V words read from DRAM over the layer: every DRAM read less the queries (read once,
/// E·P·(heads per instance) words per instance; the cascades read nothing else).
fn kv_words(s: &Schedule, queries_per_instance: f64) -> f64 {
    let n = s.instances() as f64;
    let reads: f64 = s.phases.iter().map(|ph| ph.traffic.dram_read).sum();
    (reads - 128.0 * queries_per_instance) * n
}

#[test]
fn grouped_queries_share_their_keys_in_decode() {
    // Llama-3-70B decodes 64 query heads against 8 key/value heads (G = H/8). One request at
    // 64K: a group's 8 queries (one per head) sit on 8 columns of one query tile, resident in
    // the buffer, so its K and V (2·E·M words) stream once; MHA streams them once per head.
    // K/V traffic is G/H = 1/8 of MHA's.
    let a = arch("fusemax");
    let gqa = decode("llama3-70b", 1 << 16, 1);
    let mut mha = gqa.clone();
    mha.sizes.insert("G".into(), 64);
    let (sg, rg) = run(&a, "gqa_causal_kv_1pass", &gqa);
    let (sm, _) = run(&a, "gqa_causal_kv_1pass", &mha);
    let (e, m) = (128.0, 65536.0);
    // Per instance (a group) the queries are one per head of the group.
    assert_eq!(kv_words(&sg, 8.0), 8.0 * 2.0 * e * m);
    assert_eq!(kv_words(&sm, 1.0), 64.0 * 2.0 * e * m);
    assert!(rg.phases.iter().all(|p| p.bound == "memory"));
}

#[test]
fn grouped_queries_save_less_in_long_prefill_by_the_buffer_rule() {
    // Llama-3-70B prefill at 128K. Per column the buffer holds Q (E = 128), the running max
    // and sum (1 each) and the numerator (F = 128): 258 words, beside one K and one V tile
    // (2·256·128 words), so P1 = ⌊(8 Mi - 64 Ki) / (258·256)⌋ = 126 query tiles are resident.
    // MHA: 128K queries are 512 query tiles, P2 = 5 groups; GQA: a group's 8 heads make
    // 1M columns, 4,096 query tiles, P2 = 33 groups. Each group streams the key tiles its last
    // query needs (causal): ⌊q_last / 256⌋ + 1, capped at 512. The ratio of K/V traffic is
    // G · Σ_GQA / (H · Σ_MHA), well above 1/8: K/V is re-streamed per resident query chunk and
    // a group's queries need 8× the chunks.
    let a = arch("fusemax");
    let gqa = prefill("llama3-70b", 1 << 17);
    let mut mha = gqa.clone();
    mha.sizes.insert("G".into(), 64);
    let (sg, _) = run(&a, "gqa_causal_kv_1pass", &gqa);
    let (sm, _) = run(&a, "gqa_causal_kv_1pass", &mha);
    assert_eq!(sg.phases[0].partition.p1, 126);
    assert_eq!(sm.phases[0].partition.p1, 126);
    // Σ over chunks of the key tiles each streams; columns per query: 8 (GQA) or 1 (MHA).
    let streamed = |columns_per_query: u64| -> u64 {
        let tiles = (1u64 << 17) * columns_per_query / 256;
        let chunks = tiles.div_ceil(126);
        (0..chunks)
            .map(|c| {
                let last_column = ((c + 1) * 126 * 256).min(tiles * 256) - 1;
                let last_query = last_column / columns_per_query;
                (last_query / 256 + 1).min(512)
            })
            .sum()
    };
    let (sum_gqa, sum_mha) = (streamed(8), streamed(1));
    assert_eq!(sum_mha, 126 + 252 + 378 + 504 + 512);
    let tile_words = 2.0 * 256.0 * 128.0;
    let q = (1u64 << 17) as f64;
    let (kv_gqa, kv_mha) = (kv_words(&sg, 8.0 * q), kv_words(&sm, q));
    assert!((kv_gqa / (8.0 * sum_gqa as f64 * tile_words) - 1.0).abs() < 1e-12);
    assert!((kv_mha / (64.0 * sum_mha as f64 * tile_words) - 1.0).abs() < 1e-12);
    let ratio = kv_gqa / kv_mha;
    let derived = 8.0 * sum_gqa as f64 / (64.0 * sum_mha as f64);
    assert!(
        (ratio / derived - 1.0).abs() < 1e-12,
        "{ratio} vs {derived}"
    );
    assert!(ratio > 0.5, "GQA's long-prefill saving is small: {ratio}");
}

#[test]
fn decode_at_batch_one_is_memory_bound() {
    // Llama-3-8B, one request, 64K cached keys, FuseMax. Per KV group: K and V are
    // 2·128·64K words = 32 MiB, at 400 GiB/s over 940 MHz (456.9 B/cycle) 73,443 cycles. The
    // 2D array works E + F + 9 = 265 cycles per key tile (the group's 4 queries fill 4 of 256
    // columns), the 1D array 1 + 7 + 1 + 1 + 2F = 266, over 256 key tiles: ~68,000 cycles.
    // Memory-bound; the 2D array busy 265/287 of the time and 4/256 of its PEs occupied.
    let a = arch("fusemax");
    let p = decode("llama3-8b", 1 << 16, 1);
    let (_, r) = run(&a, "gqa_causal_kv_1pass", &p);
    assert!(r.phases.iter().all(|ph| ph.bound == "memory"));
    let bytes_per_cycle = 400.0 * 1024f64.powi(3) / 940e6;
    let memory = 8.0 * 2.0 * 128.0 * 65536.0 * 2.0 / bytes_per_cycle;
    assert!(
        (r.memory_cycles / memory - 1.0).abs() < 0.01,
        "{} vs {memory}",
        r.memory_cycles
    );
    let two_d = unit(&r, "array2d");
    let expected = 8.0 * 265.0 * 256.0 / r.latency_cycles;
    assert!(
        (two_d.utilisation - expected).abs() < 0.01,
        "{}",
        two_d.utilisation
    );
    assert!(
        (two_d.occupancy - 4.0 / 256.0).abs() < 1e-3,
        "{}",
        two_d.occupancy
    );
}

#[test]
fn split_k_decode_moves_the_combine_off_the_key_loop() {
    // Split-K decode (FlashDecoding) is the library's 2-pass local-max form: each split of
    // 256 keys computes its max, sum and numerator alone, and one combine per split rescales
    // them (the 1D array's CS, SD, SNV: F + 9 per split, against 2F + 10 per key tile for the
    // 1-pass running rescale). On FuseMax's array the columns share one key tile, so a single
    // query fills one column in either form: the 2D array's work and occupancy are the same,
    // both runs are memory-bound on the same K/V bytes, and only the 1D array's work falls.
    // (The hope that split-K raises 2D utilisation at batch 1 needs the splits on the
    // columns, which needs each column to read its own key block: another array.)
    let a = arch("fusemax");
    let p = decode("llama3-8b", 1 << 16, 1);
    let (_, plain) = run(&a, "causal_kv_1pass", &p);
    let (_, split) = run(&a, "attention_2pass_localmax", &p);
    assert!(split.phases.iter().all(|ph| ph.bound == "memory"));
    let busy = |r: &SimReport, u: &str| unit(r, u).busy_cycles;
    let one_d = busy(&split, "array1d") / busy(&plain, "array1d");
    let f = 128.0;
    assert!(
        (one_d - (f + 9.0) / (2.0 * f + 10.0)).abs() < 0.02,
        "{one_d}"
    );
    let two_d = busy(&split, "array2d") / busy(&plain, "array2d");
    assert!((two_d - 1.0).abs() < 0.01, "{two_d}");
    assert_eq!(
        unit(&split, "array2d").occupancy,
        unit(&plain, "array2d").occupancy
    );
}

#[test]
fn key_splits_cannot_take_the_columns_of_an_edge_fed_array() {
    // Why no mapping raises FuseMax's 2D utilisation at batch 1: for one query, q·k uses each
    // key value once. The array takes one key value per row per cycle at its edge (256 values
    // a cycle), so at most 256 of its 65,536 PEs can do useful multiplies each cycle, whatever
    // the form: utilisation over PEs is bounded by 256 / 65,536 = 1/256 while keys stream.
    // Putting the splits on the columns would need 65,536 distinct key values a cycle, so the
    // scheduler refuses that mapping and names the key rank and the reason; the rows keep
    // the key tile, and split-K's saving is the 1D array's (the test above).
    let a = arch("fusemax");
    let p = decode("llama3-8b", 1 << 16, 1);
    let mapping = cascade_scheduler::MappingOverrides::from_toml(
        "[tiles]\nkey_tile = 256\ncolumns = [\"p\", \"m1\"]\n",
    )
    .expect("mapping");
    let c = cascade("attention_2pass_localmax");
    match cascade_scheduler::schedule_with(&c, &a, &p, &mapping).expect("sizes") {
        Outcome::Infeasible(why) => {
            let why = why.to_string();
            assert!(why.contains("`m1`, a part of the key rank M"), "{why}");
            assert!(why.contains("its own key value every cycle"), "{why}");
        }
        Outcome::Scheduled(_) => panic!("key splits on the columns were accepted"),
    }
    // And the plain form's useful-PE share is the one column's: occupancy 1/256 of the array.
    let (_, plain) = run(&a, "causal_kv_1pass", &p);
    let occ = unit(&plain, "array2d").occupancy;
    assert!((occ * 256.0 - 1.0).abs() < 0.01, "{occ}");
}

#[test]
fn pointwise_functions_run_on_the_shipped_arrays() {
    // Soft-capping, sigmoid, ReLU, softplus and linear attention schedule on FuseMax and FLAT
    // (they were infeasible: "no unit executes `other`"). Gemma 2's soft-capped score
    // tanh(s · 0.02) · 50 is two multiplies and a tanh per point: on FuseMax's 2D array 1 + 1 +
    // 13 = 15 cycles (tanh as 1 - 2/(exp(2x) + 1): 6 MACs of exp, an add, 5 MACs of Newton
    // reciprocal, a MAC); FLAT's 2D array only multiplies, so it runs on the 1D array at
    // 1 + 1 + 2 (the exp and the divide on their pipelined units, an add and a MAC).
    for a in ["fusemax", "flat"] {
        let a = arch(a);
        let p = prefill("gemma2-9b-global", 8192);
        for c in [
            "gqa_softcap_causal_kv_1pass",
            "gqa_softcap_window_kv_1pass",
            "sigmoid_causal_kv",
            "sigmoid_attention",
            "relu_causal_kv",
            "softplus_causal_kv",
            "linear_attention",
            "linear_causal_state",
        ] {
            let mut p = p.clone();
            p.sizes.insert("W".into(), 4096);
            let (s, r) = run(&a, c, &p);
            assert!(r.latency_cycles > 0.0 && r.energy.total_pj() > 0.0, "{c}");
            if c == "gqa_softcap_causal_kv_1pass" {
                let e = s.einsums.iter().find(|e| e.name == "BQK").expect("BQK");
                let (unit, cpp) = (a.unit(e.unit).name(), e.cycles_per_point);
                match a.name() {
                    "fusemax" => assert_eq!((unit, cpp), ("array2d", 15)),
                    _ => assert_eq!((unit, cpp), ("array1d", 4)),
                }
            }
        }
    }
}

#[test]
fn a_block_mask_skips_its_masked_blocks() {
    // Block-sparse 2-pass at BERT 4K with 256-key × 256-query blocks: a layout where query
    // block j attends key blocks 0 and j (global + diagonal) leaves 2·16 - 1 = 31 of 256 key
    // tiles alive. Every Einsum over a dead tile sees -inf scores, whose exp is 0 and whose
    // max changes nothing, so the 2D array's work is 31/256 of dense.
    let a = arch("fusemax");
    let mut p = bert(4096);
    let (_, dense) = run(&a, "block_sparse_2pass", &p);
    let bits: Vec<bool> = (0..16u64)
        .flat_map(|kb| (0..16u64).map(move |qb| kb == 0 || kb == qb))
        .collect();
    p.block_masks.insert(
        "BM".into(),
        cascade_scheduler::BlockMask::new(16, 16, bits).expect("16 × 16"),
    );
    let (s, sparse) = run(&a, "block_sparse_2pass", &p);
    assert_eq!(s.phases[0].occupancy.slots(), 31);
    let ratio = unit(&sparse, "array2d").busy_cycles / unit(&dense, "array2d").busy_cycles;
    assert!((ratio - 31.0 / 256.0).abs() < 1e-9, "{ratio}");
    // A mask of the wrong shape is a reason, not a panic.
    p.block_masks.insert(
        "BM".into(),
        cascade_scheduler::BlockMask::new(2, 2, vec![true; 4]).expect("2 × 2"),
    );
    match schedule(&cascade("block_sparse_2pass"), &a, &p).expect("sizes") {
        Outcome::Infeasible(why) => assert!(why.reason.contains("has 2 × 2 blocks"), "{why}"),
        Outcome::Scheduled(_) => panic!("a 2 × 2 mask on 16 × 16 blocks"),
    }
}
