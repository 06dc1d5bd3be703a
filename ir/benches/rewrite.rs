//! Benchmarks of equality saturation plus extraction on the required derivations.
//!
//! Run with `cargo bench -p cascade-ir --bench rewrite`; medians go to bench/RESULTS.md.

use std::sync::Arc;
use std::time::Duration;

use cascade_ir::ShapeSpec;
use cascade_ir::dsl;
use cascade_ir::rewrite::{Limits, Objective, OpWeights, RewriteConfig, RuleSets, rewrite};

fn main() {
    divan::main();
}

fn config(objective: Objective, rules: RuleSets, split: &str) -> RewriteConfig {
    let sizes = [("E", 64), ("F", 64), ("M", 4096), ("P", 4096), ("K", 4096)];
    RewriteConfig {
        objective,
        rules,
        sizes: ShapeSpec {
            sizes: sizes.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        },
        tile: 64,
        split_ranks: vec![split.into()],
        limits: Limits {
            iterations: 30,
            nodes: 200_000,
            time: Duration::from_secs(60),
        },
        explain: false,
    }
}

fn run(name: &str, objective: Objective, rules: RuleSets, split: &str) -> usize {
    let mut cascade = dsl::parse(cascade_ir::library::source(name).expect("library"), name)
        .expect("parses")
        .cascade;
    // Rank sizes are looked up by name; keep only the declared ones.
    let mut cfg = config(objective, rules, split);
    cfg.sizes
        .sizes
        .retain(|k, _| cascade.rank_by_name(k).is_some());
    cascade.name = name.to_string();
    let r = rewrite(&cascade, &cfg).expect("rewrites");
    r.egraph_nodes
}

const ALL: RuleSets = RuleSets {
    deferral: true,
    iterative: true,
};

/// Result 1: Cascade 4 (3-pass) to Cascade 5 (1-pass), objective `passes`.
#[divan::bench]
fn attention_3pass_to_1pass() -> usize {
    let objective = Objective::Passes {
        rank: "M".into(),
        cost: Arc::new(OpWeights::flops()),
    };
    run("attention_3pass", objective, ALL, "M")
}

/// Result 2: Cascade 4 to the 2-pass cascade with deferred division (no iterative ranks).
#[divan::bench]
fn attention_3pass_to_2pass() -> usize {
    let objective = Objective::Passes {
        rank: "M".into(),
        cost: Arc::new(OpWeights::flops()),
    };
    run(
        "attention_3pass",
        objective,
        RuleSets {
            deferral: true,
            iterative: false,
        },
        "M",
    )
}

/// Result 4: linear attention re-associated, objective `ops`.
#[divan::bench]
fn linear_attention_reassociate() -> usize {
    run(
        "linear_attention",
        Objective::Cost(Arc::new(OpWeights::flops())),
        ALL,
        "M",
    )
}
