//! Tests of the rewriter: round trips, rule soundness and the required derivations.

use std::collections::BTreeMap;
use std::sync::Arc;
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

pub(crate) fn passes_objective(rank: &str) -> Objective {
    Objective::Passes {
        rank: rank.into(),
        cost: Arc::new(OpWeights::flops()),
    }
}

// ---------------------------------------------------------------------------------------------
// Rule soundness: both sides of every rule, instantiated with random tensors, evaluate equally.

use egg::{ENodeOrVar, Id, PatternAst};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::lang::Cx;
use super::lift::Builder;
use crate::eval;
use crate::shape::Shape;

/// How a pattern variable is instantiated.
#[derive(Debug, Clone, Copy)]
enum Bind {
    /// A rank variable.
    Rank(&'static str),
    /// An input tensor over these index variables, with values drawn from `Values`.
    Input(&'static str, &'static [&'static str], Values),
}

/// The value domain of an input.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Values {
    /// Finite values in [-2, 2].
    Finite,
    /// Scores: finite, single `-inf` points and whole rows of `-inf` along the first variable.
    Scores,
    /// Values in [0.5, 2]: the rule's domain excludes zero running sums.
    Positive,
}

use Bind::{Input, Rank};
use Values::{Finite, Positive, Scores};

/// The instantiation of each rule (by base name) used by its soundness test.
fn bindings(rule: &str) -> Option<Vec<(&'static str, Bind)>> {
    let m = ("?m", Rank("m"));
    Some(match rule {
        "split-sum" | "split-max" => vec![m, ("?x", Input("X", &["m", "p"], Scores))],
        "split-closed" => vec![m, ("?x", Input("X", &["p"], Finite))],
        // sqrt and recip are pushed structurally; their own domain is positive.
        "split-push-sqrt" | "split-push-recip" => {
            vec![m, ("?a", Input("A", &["m", "p"], Positive))]
        }
        r if r.starts_with("split-push-") => {
            vec![
                m,
                ("?a", Input("A", &["m", "p"], Scores)),
                ("?b", Input("B", &["m"], Finite)),
            ]
        }
        "defer-div-sum" => vec![
            m,
            ("?a", Input("A", &["m", "p"], Finite)),
            ("?d", Input("D", &["p"], Finite)),
            ("?v", Input("V", &["f", "m"], Finite)),
        ],
        "defer-div-sum-bare" => {
            vec![
                m,
                ("?a", Input("A", &["m", "p"], Finite)),
                ("?d", Input("D", &["p"], Finite)),
            ]
        }
        "defer-mul-sum" => {
            vec![
                m,
                ("?d", Input("D", &["p"], Finite)),
                ("?a", Input("A", &["m", "p"], Finite)),
            ]
        }
        "exp-local-max" | "exp-local-max-rev" | "exp-local-max-bare" | "exp-local-max-bare-rev" => {
            vec![
                ("?j", Rank("m")),
                ("?x", Input("X", &["m", "p"], Scores)),
                ("?c", Input("C", &["p"], Finite)),
                ("?v", Input("V", &["f", "m"], Finite)),
            ]
        }
        "assoc-contract" => vec![
            m,
            ("?e", Rank("e")),
            ("?a", Input("A", &["e", "p"], Finite)),
            ("?b", Input("B", &["e", "m"], Finite)),
            ("?c", Input("C", &["f", "m"], Finite)),
        ],
        "rescale-fold-exp" => vec![
            ("?i", Rank("m")),
            ("?y", Input("Y", &["m", "p"], Scores)),
            ("?w", Input("W", &["f", "m"], Finite)),
        ],
        "rescale-fold-lin" => vec![
            ("?i", Rank("k")),
            ("?y", Input("Y", &["k", "p"], Positive)),
            ("?w", Input("W", &["k", "p"], Finite)),
        ],
        _ => return None,
    })
}

/// Builds the term of a pattern with its variables bound.
///
/// With `masked`, score inputs over `[m, p]` are read through the filter `m < p`, so that some
/// points and the whole row `p = 0` are absent.
fn instantiate(ast: &PatternAst<Cx>, binds: &[(&str, Bind)], b: &mut Builder, masked: bool) -> Id {
    let mut ids: Vec<Id> = Vec::new();
    for node in ast.as_ref() {
        let id = match node {
            ENodeOrVar::Var(v) => {
                let name = v.to_string();
                let (_, bind) = binds
                    .iter()
                    .find(|(n, _)| *n == name)
                    .unwrap_or_else(|| panic!("no binding for {name}"));
                match bind {
                    Rank(r) => b.name(r),
                    Input(t, vars, values) => {
                        let mut children = vec![b.name(t)];
                        children.extend(vars.iter().map(|v| b.name(v)));
                        let access = b.add(Cx::At(children.into_boxed_slice()));
                        if masked && *values == Scores && *vars == ["m", "p"] {
                            let mask = b.add(Cx::Mask(lang::Mask(0)));
                            b.add(Cx::Where([mask, access]))
                        } else {
                            access
                        }
                    }
                }
            }
            ENodeOrVar::ENode(n) => b.add(egg::Language::map_children(n.clone(), |c| {
                ids[usize::from(c)]
            })),
        };
        ids.push(id);
    }
    *ids.last().expect("non-empty pattern")
}

/// Lowers one side to a cascade over the bound inputs.
fn side_cascade(
    ast: &PatternAst<Cx>,
    binds: &[(&str, Bind)],
    out_vars: &[String],
    masked: bool,
) -> Cascade {
    let mut b = Builder::default();
    let root = instantiate(ast, binds, &mut b, masked);
    let expr = reorder(&b, root);
    let mut ranks: Vec<String> = Vec::new();
    for (_, bind) in binds {
        let vars: Vec<&str> = match bind {
            Rank(r) => vec![*r],
            Input(_, vars, _) => vars.to_vec(),
        };
        for v in vars {
            let r = v.to_uppercase();
            if !ranks.contains(&r) {
                ranks.push(r);
            }
        }
    }
    let sig = Signature {
        name: "side".into(),
        ranks: ranks.into_iter().map(|r| (r, false)).collect(),
        inputs: binds
            .iter()
            .filter_map(|(_, bind)| match bind {
                Input(t, vars, _) => Some((
                    t.to_string(),
                    vars.iter().map(|v| v.to_uppercase()).collect(),
                )),
                Rank(_) => None,
            })
            .collect(),
        output: ("OUT".into(), out_vars.to_vec()),
        masks: Vec::new(),
    };
    let mut sig = sig;
    let pos = |r: &str| {
        sig.ranks
            .iter()
            .position(|(n, _)| n == r)
            .map(|i| crate::ast::RankId(i as u32))
    };
    if let (Some(m), Some(p)) = (pos("M"), pos("P")) {
        use crate::ast::{Compare, CompareOp, IndexExpr};
        sig.masks = vec![vec![Compare {
            lhs: IndexExpr::Var(m),
            op: CompareOp::Lt,
            rhs: IndexExpr::Var(p),
        }]];
    }
    let names = vec![None; expr.as_ref().len()];
    lower(&expr, &names, &sig).unwrap_or_else(|e| panic!("lowering {expr}: {e}"))
}

fn reorder(b: &Builder, root: Id) -> RecExpr<Cx> {
    let nodes = b.expr.as_ref()[..=usize::from(root)].to_vec();
    nodes.into()
}

/// The free variables of the left-hand side, in sorted order: the output's index variables.
fn free_vars(ast: &PatternAst<Cx>, binds: &[(&str, Bind)]) -> Vec<String> {
    let mut b = Builder::default();
    let root = instantiate(ast, binds, &mut b, false);
    let expr = reorder(&b, root);
    let mut g = lang::CxGraph::default();
    let id = g.add_expr(&expr);
    g[id].data.vars.iter().cloned().collect()
}

/// Random inputs for `cascade`'s inputs with the domains of the bindings.
fn inputs(
    cascade: &Cascade,
    shape: &Shape,
    binds: &[(&str, Bind)],
    seed: u64,
) -> BTreeMap<String, ndarray::ArrayD<f64>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = BTreeMap::new();
    for t in cascade
        .tensors
        .iter()
        .filter(|t| t.kind == crate::ast::TensorKind::Input)
    {
        let dims: Vec<usize> = t.ranks.iter().map(|r| shape.size(*r) as usize).collect();
        let values = binds
            .iter()
            .find_map(|(_, b)| match b {
                Input(n, _, v) if *n == t.name => Some(*v),
                _ => None,
            })
            .expect("bound input");
        let mut a = ndarray::ArrayD::from_shape_simple_fn(ndarray::IxDyn(&dims), || match values {
            Positive => rng.random_range(0.5..2.0),
            _ => rng.random_range(-2.0..2.0),
        });
        if values == Scores && !dims.is_empty() {
            // Single -inf points, and one fiber along the first dimension masked whole.
            for x in a.iter_mut() {
                if rng.random_range(0..6) == 0 {
                    *x = f64::NEG_INFINITY;
                }
            }
            if dims.len() > 1 {
                let col = rng.random_range(0..dims[1]);
                for mut lane in a.lanes_mut(ndarray::Axis(0)).into_iter().skip(col).take(1) {
                    lane.fill(f64::NEG_INFINITY);
                }
            }
        }
        out.insert(t.name.clone(), a);
    }
    out
}

fn close(a: f64, b: f64) -> bool {
    if a.is_infinite() || b.is_infinite() {
        return a == b;
    }
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Evaluates both sides of rule `name` at the given rank sizes and input seed.
fn check_rule(
    rw: &egg::Rewrite<Cx, lang::Scope>,
    sizes_by_rank: &BTreeMap<String, i64>,
    tile: i64,
    seed: u64,
) {
    // Commuted variants (`name/1`) share their base rule's binding.
    let base = rw.name.as_str().split('/').next().expect("name");
    let binds = bindings(base).unwrap_or_else(|| panic!("rule {base} has no soundness binding"));
    let (Some(lhs), Some(rhs)) = rules::sides(rw) else {
        panic!("rule {base} is not pattern-based")
    };
    let out_vars = free_vars(lhs, &binds);
    // Every other case reads the scores through a causal-style filter (absent points and rows).
    let masked = seed.is_multiple_of(2);
    let left = side_cascade(lhs, &binds, &out_vars, masked);
    let right = side_cascade(rhs, &binds, &out_vars, masked);
    let spec = |c: &Cascade| {
        let mut spec = ShapeSpec::default();
        for r in &c.ranks {
            if let Some(n) = sizes_by_rank.get(&r.name) {
                spec.sizes.insert(r.name.clone(), *n);
            }
            if let Some((_, inner)) = r.split {
                spec.sizes.insert(c.rank(inner).name.clone(), tile);
            }
        }
        spec
    };
    let (ls, rs) = (spec(&left), spec(&right));
    let lshape = Shape::resolve(&left, &ls).unwrap_or_else(|e| panic!("{base}: lhs shape: {e:?}"));
    let rshape = Shape::resolve(&right, &rs).unwrap_or_else(|e| panic!("{base}: rhs shape: {e:?}"));
    let li = inputs(&left, &lshape, &binds, seed);
    let ri = inputs(&right, &rshape, &binds, seed);
    assert_eq!(li, ri, "{base}: both sides read the same inputs");
    let lv = eval::evaluate(&left, &lshape, &li)
        .unwrap_or_else(|e| panic!("{base} lhs: {e}\n{}", dsl::print(&left)));
    let rv = eval::evaluate(&right, &rshape, &ri)
        .unwrap_or_else(|e| panic!("{base} rhs: {e}\n{}", dsl::print(&right)));
    let (lo, ro) = (
        lv.output().expect("lhs output"),
        rv.output().expect("rhs output"),
    );
    assert_eq!(
        lo.present,
        ro.present,
        "{base}: presence differs\nlhs:\n{}\nrhs:\n{}",
        dsl::print(&left),
        dsl::print(&right)
    );
    for (a, b) in lo.values.iter().zip(ro.values.iter()) {
        assert!(!a.is_nan() && !b.is_nan(), "{base}: NaN ({a} vs {b})");
        assert!(
            close(*a, *b),
            "{base}: {a} vs {b} at sizes {sizes_by_rank:?} tile {tile} seed {seed}\nlhs:\n{}\nrhs:\n{}",
            dsl::print(&left),
            dsl::print(&right)
        );
    }
}

const ALL_RULES: RuleSets = RuleSets {
    deferral: true,
    iterative: true,
};

#[test]
fn every_rule_has_a_soundness_binding() {
    for rw in rules::all(ALL_RULES) {
        let base = rw
            .name
            .as_str()
            .split('/')
            .next()
            .expect("name")
            .to_string();
        assert!(
            bindings(&base).is_some(),
            "rule {base} has no soundness test binding"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Every rule and each of its commuted variants, at random sizes (1..=4 per rank, tiles 1..=3) and random inputs.
    #[test]
    fn rules_are_sound(m1 in 1i64..=3, tile in 1i64..=3, e in 1i64..=3, f in 1i64..=3, p in 1i64..=3, k in 1i64..=4, seed in any::<u64>()) {
        let sizes: BTreeMap<String, i64> = [("M", m1 * tile), ("E", e), ("F", f), ("P", p), ("K", k)]
            .into_iter().map(|(n, s)| (n.to_string(), s)).collect();
        for rw in rules::all(ALL_RULES) {
            check_rule(&rw, &sizes, tile, seed);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Round trip: cascade -> expression -> cascade, printed through the DSL, interpreter-equal.

/// Library cascades the rewriter takes, and why it refuses the others.
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
fn refused_library_cascades_are_iterative_or_split() {
    let (_, refused) = liftable();
    for name in refused {
        let c = library(name);
        let filtered = c
            .exprs
            .iter()
            .any(|e| matches!(e, crate::ast::Expr::Access(a) if !a.filters.is_empty()));
        let split = c.ranks.iter().any(|r| r.split.is_some());
        assert!(
            !c.iterative_ranks().is_empty() || split || filtered,
            "{name} was refused"
        );
    }
}

#[test]
fn round_trip_through_the_dsl_is_interpreter_equal() {
    let (ok, _) = liftable();
    assert!(ok.len() >= 6, "{ok:?}");
    for name in ok {
        let original = library(name);
        let lifted = lift(&original).expect("lifts");
        let lowered = lower(&lifted.expr, &lifted.names, &lifted.signature).expect("lowers");
        let text = dsl::print(&lowered);
        let reparsed = dsl::check(&text, name)
            .unwrap_or_else(|d| panic!("{name}: {d:?}\n{text}"))
            .cascade;
        assert_eq!(
            lift(&reparsed).expect("lifts again").expr.to_string(),
            lifted.expr.to_string(),
            "{name}"
        );
        let mut spec = ShapeSpec::default();
        for (rank, n) in [("E", 3), ("F", 2), ("M", 5), ("P", 4), ("K", 6), ("W", 2)] {
            if original.rank_by_name(rank).is_some() {
                spec.sizes.insert(rank.to_string(), n);
            }
        }
        let shape = Shape::resolve(&original, &spec).expect("shape");
        let shape2 = Shape::resolve(&reparsed, &spec).expect("shape");
        let inputs = crate::reference::random_inputs(&original, &shape, 11);
        let a = eval::evaluate(&original, &shape, &inputs).expect("original evaluates");
        let b = eval::evaluate(&reparsed, &shape2, &inputs).expect("round trip evaluates");
        let (a, b) = (a.output().expect("output"), b.output().expect("output"));
        assert_eq!(a.present, b.present, "{name}");
        for (x, y) in a.values.iter().zip(b.values.iter()) {
            assert!(close(*x, *y), "{name}: {x} vs {y}");
        }
    }
}

/// What extraction minimises (passes of the term) agrees with the pass analysis of the
/// lowered cascade, for the inputs and the derived cascades.
#[test]
fn term_passes_agree_with_pass_analysis() {
    let cases: [(&str, RuleSets, &str); 4] = [
        ("attention_3pass", ALL_RULES, "M"),
        (
            "attention_3pass",
            RuleSets {
                deferral: true,
                iterative: false,
            },
            "M",
        ),
        (
            "pedagogical_1",
            RuleSets {
                deferral: false,
                iterative: true,
            },
            "K",
        ),
        ("sigmoid_attention", ALL_RULES, "M"),
    ];
    for (name, rules, rank) in cases {
        let c = library(name);
        let sizes = sizes(&[("E", 64), ("F", 64), ("M", 4096), ("P", 4096), ("K", 1024)]);
        let mut spec = ShapeSpec::default();
        for r in &c.ranks {
            spec.sizes.insert(r.name.clone(), sizes.sizes[&r.name]);
        }
        let r =
            rewrite(&c, &config(passes_objective(rank), rules, spec, &[rank])).expect("rewrites");
        let term: RecExpr<Cx> = r.term.parse().expect("term parses");
        assert_eq!(extract::term_passes(&term, rank), r.after.passes, "{name}");
        let input = lift(&c).expect("lifts").expr;
        assert_eq!(
            extract::term_passes(&input, rank),
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
        let objective = Objective::Cost(Arc::new(OpWeights::flops()));
        let (expr, _) = extract::extract(&g, root, &objective, &|_| 8.0).expect("extracts");
        assert_eq!(expr.to_string(), lifted.expr.to_string(), "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// The whole pipeline on random terms: rewrite(c) is interpreter-equal to c.

/// Random attention-like terms over `X[m,p] Y[m,p] D[p] V[f,m] Q[e,p] K[e,m]` with positive
/// values, sums and maxima over `m` and `e`, and the map ops whose rules exist.
fn random_term(rng: &mut ChaCha8Rng, b: &mut Builder, depth: u32) -> Id {
    let access = |b: &mut Builder, t: &str, vars: &[&str]| {
        let mut children = vec![b.name(t)];
        children.extend(vars.iter().map(|v| b.name(v)));
        b.add(Cx::At(children.into_boxed_slice()))
    };
    let choice = if depth == 0 {
        0
    } else {
        rng.random_range(0..10)
    };
    match choice {
        0 | 1 => {
            let inputs: [(&str, &[&str]); 6] = [
                ("X", &["m", "p"]),
                ("Y", &["m", "p"]),
                ("D", &["p"]),
                ("V", &["f", "m"]),
                ("Q", &["e", "p"]),
                ("K", &["e", "m"]),
            ];
            let (t, vars) = inputs[rng.random_range(0..inputs.len())];
            access(b, t, vars)
        }
        2 | 3 => {
            let (r, body) = (
                if rng.random_range(0..4) == 0 {
                    "e"
                } else {
                    "m"
                },
                random_term(rng, b, depth - 1),
            );
            let r = b.name(r);
            b.add(if rng.random_range(0..3) == 0 {
                Cx::RMax([r, body])
            } else {
                Cx::Sum([r, body])
            })
        }
        4 => {
            // The softmax shape: e^(x - max_m x).
            let x = random_term(rng, b, depth - 1);
            let m = b.name("m");
            let g = b.add(Cx::RMax([m, x]));
            b.add(Cx::SubExp([x, g]))
        }
        _ => {
            let (l, r) = (
                random_term(rng, b, depth - 1),
                random_term(rng, b, depth - 1),
            );
            b.add(match rng.random_range(0..5) {
                0 => Cx::Add([l, r]),
                1 | 2 => Cx::Mul([l, r]),
                3 => Cx::Div([l, r]),
                _ => Cx::Max([l, r]),
            })
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn rewriting_random_terms_preserves_meaning(seed in any::<u64>(), m1 in 1i64..=3, tile in 1i64..=3, objective_passes in any::<bool>()) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut b = Builder::default();
        let root = random_term(&mut rng, &mut b, 4);
        let expr = reorder(&b, root);
        let mut g = lang::CxGraph::default();
        let id = g.add_expr(&expr);
        let out_vars: Vec<String> = g[id].data.vars.iter().cloned().collect();
        let sig = Signature {
            name: "random".into(),
            ranks: ["E", "F", "M", "P"].iter().map(|r| (r.to_string(), false)).collect(),
            inputs: [("X", "M P"), ("Y", "M P"), ("D", "P"), ("V", "F M"), ("Q", "E P"), ("K", "E M")]
                .iter()
                .map(|(t, r)| (t.to_string(), r.split(' ').map(str::to_string).collect()))
                .collect(),
            output: ("OUT".into(), out_vars),
            masks: Vec::new(),
        };
        let input = lower(&expr, &vec![None; expr.as_ref().len()], &sig).expect("lowers");
        let objective = if objective_passes { passes_objective("M") } else { Objective::Cost(Arc::new(OpWeights::flops())) };
        let spec = sizes(&[("E", 64), ("F", 64), ("M", 4096), ("P", 4096)]);
        let mut cfg = config(objective, ALL_RULES, spec, &["M"]);
        cfg.limits.nodes = 20_000;
        let r = rewrite(&input, &cfg).expect("rewrites");
        // What extraction minimised agrees with the pass analysis of the lowered cascades.
        let term: RecExpr<Cx> = r.term.parse().expect("term parses");
        prop_assert_eq!(extract::term_passes(&term, "M"), r.after.passes, "{}", dsl::print(&r.cascade));
        prop_assert_eq!(extract::term_passes(&expr, "M"), r.before.passes, "{}", dsl::print(&input));
        let shape_of = |c: &Cascade| {
            let mut spec = sizes(&[("E", 2), ("F", 2), ("M", m1 * tile), ("P", 3)]);
            for rank in &c.ranks {
                if let Some((_, inner)) = rank.split {
                    spec.sizes.insert(c.rank(inner).name.clone(), tile);
                }
            }
            Shape::resolve(c, &spec).expect("shape")
        };
        let (s1, s2) = (shape_of(&input), shape_of(&r.cascade));
        let mut vals = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
        let inputs: BTreeMap<String, ndarray::ArrayD<f64>> = input
            .tensors
            .iter()
            .filter(|t| t.kind == crate::ast::TensorKind::Input)
            .map(|t| {
                let dims: Vec<usize> = t.ranks.iter().map(|x| s1.size(*x) as usize).collect();
                (t.name.clone(), ndarray::ArrayD::from_shape_simple_fn(ndarray::IxDyn(&dims), || vals.random_range(0.5..1.5)))
            })
            .collect();
        let a = eval::evaluate(&input, &s1, &inputs).expect("input evaluates");
        let b2 = eval::evaluate(&r.cascade, &s2, &inputs).unwrap_or_else(|e| panic!("{e}\n{}", dsl::print(&r.cascade)));
        let (a, b2) = (a.output().expect("output"), b2.output().expect("output"));
        prop_assert_eq!(&a.present, &b2.present);
        for (x, y) in a.values.iter().zip(b2.values.iter()) {
            prop_assert!(close(*x, *y), "{} vs {}\ninput:\n{}\nrewritten:\n{}", x, y, dsl::print(&input), dsl::print(&r.cascade));
        }
    }
}
