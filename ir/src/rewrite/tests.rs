//! Tests of the rewriter: round trips, rule soundness and the required derivations.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use super::*;
use crate::dsl;

pub(crate) fn library(name: &str) -> Cascade {
    let src = crate::library::source(name).expect("library cascade");
    dsl::parse(src, name).expect("library parses").cascade
}

pub(crate) fn sizes(pairs: &[(&str, i64)]) -> ShapeSpec {
    ShapeSpec {
        sizes: pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
    }
}

pub(crate) fn config(
    objective: Objective,
    rules: RuleSets,
    spec: ShapeSpec,
    split: &[&str],
) -> RewriteConfig {
    RewriteConfig {
        objective,
        rules,
        sizes: spec,
        tile: 64,
        split_ranks: split.iter().map(|s| s.to_string()).collect(),
        limits: Limits {
            iterations: 30,
            nodes: 200_000,
            time: Duration::from_secs(60),
        },
        explain: false,
    }
}

pub(crate) fn attention_sizes() -> ShapeSpec {
    sizes(&[("E", 64), ("F", 64), ("M", 4096), ("P", 4096)])
}

pub(crate) fn passes_objective(rank: &str) -> Objective {
    Objective::Passes {
        rank: rank.into(),
        cost: Rc::new(OpWeights::flops()),
    }
}

const ALL: RuleSets = RuleSets {
    deferral: true,
    iterative: true,
};

#[test]
fn debug_attention() {
    let c = library("attention_3pass");
    let r = rewrite(
        &c,
        &config(passes_objective("M"), ALL, attention_sizes(), &["M"]),
    )
    .unwrap();
    println!("{}", dsl::print(&r.cascade));
    println!(
        "{:?} {} nodes {} iters; {:?} -> {:?}",
        r.stop, r.egraph_nodes, r.iterations, r.before, r.after
    );
    let _ = BTreeMap::<String, f64>::new();
}

#[test]
fn debug_others() {
    let nodefer = RuleSets {
        deferral: true,
        iterative: false,
    };
    let c = library("attention_3pass");
    let r = rewrite(
        &c,
        &config(passes_objective("M"), nodefer, attention_sizes(), &["M"]),
    )
    .unwrap();
    println!("{}\n{:?} {:?}", dsl::print(&r.cascade), r.before, r.after);
    let ops = Objective::Cost(Rc::new(OpWeights::flops()));
    let c = library("pedagogical_1");
    let r = rewrite(&c, &config(ops.clone(), ALL, sizes(&[("K", 1024)]), &["K"])).unwrap();
    println!("{}\n{:?} {:?}", dsl::print(&r.cascade), r.before, r.after);
    let r = rewrite(
        &c,
        &config(
            passes_objective("K"),
            RuleSets {
                deferral: false,
                iterative: true,
            },
            sizes(&[("K", 1024)]),
            &["K"],
        ),
    )
    .unwrap();
    println!("{}\n{:?} {:?}", dsl::print(&r.cascade), r.before, r.after);
    let c = library("linear_attention");
    let r = rewrite(&c, &config(ops.clone(), ALL, attention_sizes(), &["M"])).unwrap();
    println!("{}\n{:?} {:?}", dsl::print(&r.cascade), r.before, r.after);
    let c = library("sigmoid_attention");
    let r = rewrite(
        &c,
        &config(passes_objective("M"), ALL, attention_sizes(), &["M"]),
    )
    .unwrap();
    println!("{}\n{:?} {:?}", dsl::print(&r.cascade), r.before, r.after);
}
