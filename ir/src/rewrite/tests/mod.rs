//! Tests of the rewriter: round trips, rule soundness, capture avoidance, explicit merges, loop
//! phases and the whole pipeline on random terms.
//!
//! Every test that rewrites goes through [`super::check::check`]: the result verifies, has
//! unambiguous loop phases and evaluates equal to the input (f64, 1e-9 relative, with `-inf`
//! mask entries and fully masked rows where the trial asks for them).

mod capture;
mod merges;
mod random;
mod rules;

use std::sync::Arc;
use std::time::Duration;

use egg::{Id, RecExpr};

use super::check::{Trial, check, close};
use super::lang::Cx;
use super::lift::Builder;
use super::*;
use crate::dsl;
use crate::eval;
use crate::shape::Shape;

pub(crate) fn library(name: &str) -> Cascade {
    let src = crate::library::source(name).expect("library cascade");
    dsl::parse(src, name).expect("library parses").cascade
}

pub(crate) fn parse(src: &str) -> Cascade {
    dsl::parse(src, "test")
        .unwrap_or_else(|d| panic!("{d:?}\n{src}"))
        .cascade
}

pub(crate) fn sizes(pairs: &[(&str, i64)]) -> ShapeSpec {
    ShapeSpec {
        sizes: pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
    }
}

/// The sizes of `pairs` that name a rank of `c`.
pub(crate) fn sizes_for(c: &Cascade, pairs: &[(&str, i64)]) -> ShapeSpec {
    let mut spec = sizes(pairs);
    spec.sizes.retain(|k, _| c.rank_by_name(k).is_some());
    spec
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

pub(crate) fn passes_objective(rank: &str) -> Objective {
    Objective::Passes {
        rank: rank.into(),
        cost: Arc::new(OpWeights::flops()),
    }
}

pub(crate) fn ops_objective() -> Objective {
    Objective::Cost(Arc::new(OpWeights::flops()))
}

pub(crate) const ALL_RULES: RuleSets = RuleSets {
    deferral: true,
    iterative: true,
};

/// Cost sizes of every rank the tests use.
pub(crate) const BIG: &[(&str, i64)] = &[
    ("E", 64),
    ("F", 64),
    ("M", 4096),
    ("P", 4096),
    ("K", 1024),
    ("W", 16),
];

/// Interpreter sizes: `M` a multiple of the tile 3.
pub(crate) const SMALL: &[(&str, i64)] =
    &[("E", 3), ("F", 2), ("M", 6), ("P", 5), ("K", 6), ("W", 2)];

/// The nodes of `b` up to `root`, as a term rooted at its last node.
pub(crate) fn reorder(b: &Builder, root: Id) -> RecExpr<Cx> {
    let nodes = b.expr.as_ref()[..=usize::from(root)].to_vec();
    nodes.into()
}

// ---------------------------------------------------------------------------------------------
// Round trip: cascade -> expression -> cascade, printed through the DSL, interpreter-equal.

/// Library cascades the rewriter takes: all of them (loops, splits and filters included).
fn liftable() -> (Vec<&'static str>, Vec<&'static str>) {
    let (mut ok, mut refused) = (Vec::new(), Vec::new());
    for name in crate::library::names() {
        match lift(&library(name)) {
            Ok(_) => ok.push(name),
            Err(RewriteError::Unsupported { .. }) => refused.push(name),
            Err(e) => panic!("{name}: {e}"),
        }
    }
    (ok, refused)
}

#[test]
fn every_library_cascade_lifts() {
    let (_, refused) = liftable();
    assert!(refused.is_empty(), "refused: {refused:?}");
}

#[test]
fn round_trip_through_the_dsl_is_interpreter_equal() {
    let (ok, _) = liftable();
    assert!(ok.len() >= 6, "{ok:?}");
    for name in ok {
        let original = library(name);
        let lifted = lift(&original).expect("lifts");
        let lowered = lower(&lifted.expr, &lifted.names, &lifted.signature).expect("lowers");
        check::valid(&lowered).unwrap_or_else(|e| panic!("{name}: {e}"));
        let text = dsl::print(&lowered);
        let reparsed = dsl::check(&text, name)
            .unwrap_or_else(|d| panic!("{name}: {d:?}\n{text}"))
            .cascade;
        // Lowering writes constant scales inside their contraction (its normal form), so the
        // term may change once; after that the round trip is a fixed point.
        let again = lift(&reparsed).expect("lifts again");
        let relowered = lower(&again.expr, &again.names, &again.signature).expect("lowers");
        assert_eq!(
            lift(&relowered).expect("lifts").expr.to_string(),
            again.expr.to_string(),
            "{name}"
        );
        let mut trial = Trial::new(SMALL, 3);
        trial.masks = vec!["MASK".into()];
        check::equal(&original, &reparsed, &trial).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

/// What extraction minimises (passes of the term) agrees with the pass analysis of the
/// lowered cascade, for the inputs and the derived cascades.
#[test]
fn term_passes_agree_with_pass_analysis() {
    let no_iterative = RuleSets {
        deferral: true,
        iterative: false,
    };
    let no_deferral = RuleSets {
        deferral: false,
        iterative: true,
    };
    let cases: [(&str, RuleSets, &str); 4] = [
        ("attention_3pass", ALL_RULES, "M"),
        ("attention_3pass", no_iterative, "M"),
        ("pedagogical_1", no_deferral, "K"),
        ("sigmoid_attention", ALL_RULES, "M"),
    ];
    for (name, rules, rank) in cases {
        let c = library(name);
        let cfg = config(passes_objective(rank), rules, sizes_for(&c, BIG), &[rank]);
        let r = check(&c, &cfg, &Trial::new(SMALL, 3)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let tiles = lang::Tiles::of_cascade(&c);
        let term: RecExpr<Cx> = r.term.parse().expect("term parses");
        assert_eq!(
            extract::term_passes(&term, rank, &tiles),
            r.after.passes,
            "{name}"
        );
        let input = lift(&c).expect("lifts").expr;
        assert_eq!(
            extract::term_passes(&input, rank, &tiles),
            r.before.passes,
            "{name}"
        );
    }
}

/// The round trip through an e-graph without rules extracts the input term unchanged.
#[test]
fn round_trip_through_an_egraph_without_rules() {
    let (ok, _) = liftable();
    for name in ok {
        let lifted = lift(&library(name)).expect("lifts");
        let mut g = lang::CxGraph::default();
        let root = g.add_expr(&lifted.expr);
        g.rebuild();
        let (expr, _) = extract::extract(&g, root, &ops_objective(), &|_| 8.0).expect("extracts");
        assert_eq!(expr.to_string(), lifted.expr.to_string(), "{name}");
    }
}

/// Evaluates a cascade on the trial's first seed (for tests that inspect values).
pub(crate) fn evaluate(c: &Cascade, trial: &Trial) -> eval::TensorValue<f64> {
    let mut spec = ShapeSpec::default();
    for r in &c.ranks {
        if let Some(n) = trial.sizes.get(&r.name) {
            spec.sizes.insert(r.name.clone(), *n);
        }
        if let Some((_, inner)) = r.split {
            spec.sizes.insert(c.rank(inner).name.clone(), trial.tile);
        }
    }
    let shape = Shape::resolve(c, &spec).expect("shape");
    let inputs = check::inputs(c, &shape, trial, trial.seeds[0]);
    eval::evaluate(c, &shape, &inputs)
        .expect("evaluates")
        .output()
        .expect("output")
        .clone()
}

#[test]
fn close_is_relative_and_exact_on_infinities() {
    assert!(close(1.0, 1.0 + 1e-12));
    assert!(!close(1.0, 1.0 + 1e-6));
    assert!(close(f64::NEG_INFINITY, f64::NEG_INFINITY));
    assert!(!close(f64::NEG_INFINITY, -1e300));
}
