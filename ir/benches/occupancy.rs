//! Tile occupancy of masked grids: a 1M × 1M causal grid in 256-wide tiles (4096 rows of
//! tiles, counted by binary search per row), a sliding window and a sinks + window union, from
//! the presence of a parsed cascade.

use cascade_ir::occupancy::{self, Axes, Grid, Region};
use cascade_ir::plan::LoopPlan;
use cascade_ir::presence::presence;
use cascade_ir::{RankId, dsl, library};

fn main() {
    divan::main();
}

/// The region of the score Einsum of a library cascade or variant at 1M tokens.
fn region(name: &str, score: &str) -> Region {
    let src = library::source(name)
        .or_else(|| library::variant_source(name))
        .expect("cascade");
    let c = dsl::parse(src, name).expect("parses").cascade;
    let plan = LoopPlan::new(&c);
    let id = c
        .einsum_ids()
        .find(|&id| c.tensor(c.einsum(id).output.tensor).name == score)
        .expect("score Einsum");
    let dnf = presence(&c, &plan)[id.index()].clone();
    let size = |r: RankId| match c.rank(r).name.as_str() {
        "W" => 4096,
        "S" => 4,
        "M0" => 256,
        "M1" => 4096,
        _ => 1 << 20,
    };
    let axes = Axes {
        key: c.rank_by_name("M").unwrap(),
        query: c.rank_by_name("P").unwrap(),
        size: &size,
    };
    occupancy::region(&c, &dnf, &axes)
}

const GRID: Grid = Grid {
    keys: 1 << 20,
    key_tile: 256,
    columns: 1 << 20,
    query_tile: 256,
    stride: 1,
};

#[divan::bench]
fn causal_1m_grid(bencher: divan::Bencher) {
    let r = region("causal_kv_1pass", "BQK");
    bencher.bench_local(|| occupancy::total(divan::black_box(&r), &GRID));
}

#[divan::bench]
fn window_1m_grid(bencher: divan::Bencher) {
    let r = region("window_kv_1pass", "BQK");
    bencher.bench_local(|| occupancy::total(divan::black_box(&r), &GRID));
}

#[divan::bench]
fn sinks_window_1m_grid(bencher: divan::Bencher) {
    let r = region("sinks_window_kv_1pass", "BQK");
    bencher.bench_local(|| occupancy::total(divan::black_box(&r), &GRID));
}
