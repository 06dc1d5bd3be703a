//! Rule soundness: both sides of every rule, instantiated with random tensors, evaluate
//! equally; and the rule table is capture-avoiding by construction.

use std::collections::BTreeMap;

use super::{ALL_RULES, reorder};
use crate::ast::Cascade;
use crate::dsl;
use crate::rewrite::check::close;
use crate::rewrite::lang::{self, Tiles};
use crate::rewrite::rules::{self, Cond, missing_conditions, rule};
use crate::rewrite::{Signature, lower};
use crate::shape::ShapeSpec;

// ---------------------------------------------------------------------------------------------
// Rule soundness: both sides of every rule, instantiated with random tensors, evaluate equally.

use egg::{ENodeOrVar, Id, PatternAst};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::eval;
use crate::rewrite::lang::Cx;
use crate::rewrite::lift::Builder;
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
        "contract-distribute" => vec![
            ("?e", Rank("e")),
            ("?a", Input("A", &["e", "m"], Finite)),
            ("?b", Input("B", &["e", "m", "p"], Finite)),
            ("?c", Input("C", &["e", "p"], Finite)),
        ],
        "assoc-contract" => vec![
            m,
            ("?e", Rank("e")),
            ("?a", Input("A", &["e", "p"], Finite)),
            ("?b", Input("B", &["e", "m"], Finite)),
            ("?c", Input("C", &["f", "m"], Finite)),
        ],
        "rescale-fold-exp" | "rescale-fold-exp-rev" => vec![
            ("?i", Rank("m")),
            ("?y", Input("Y", &["m", "p"], Scores)),
            ("?w", Input("W", &["f", "m"], Finite)),
        ],
        "rescale-fold-exp-bare" | "fold-max" | "fold-max-present" => {
            vec![("?i", Rank("m")), ("?y", Input("Y", &["m", "p"], Scores))]
        }
        "rescale-fold-lin" => vec![
            ("?i", Rank("k")),
            ("?y", Input("Y", &["k", "p"], Positive)),
            ("?w", Input("W", &["k", "p"], Finite)),
        ],
        "scan-chunk" | "scan-chunk-rev" => vec![
            m,
            ("?e", Rank("e")),
            ("?q", Input("Q", &["e", "m"], Finite)),
            ("?k", Input("K", &["e", "m"], Finite)),
            ("?v", Input("V", &["f", "m"], Finite)),
        ],
        _ => return None,
    })
}

/// The filter each input over two or more variables may be read through, by mask number: a
/// comparison of its first two variables (`m < p` hides every key of query `p = 0`).
fn filterable<'a>(binds: &[(&'a str, Bind)]) -> Vec<(&'a str, [&'static str; 2])> {
    binds
        .iter()
        .filter_map(|(v, b)| match b {
            Input(_, vars, _) if vars.len() >= 2 => Some((*v, [vars[0], vars[1]])),
            _ => None,
        })
        .collect()
}

/// Builds the term of a pattern with its variables bound.
///
/// The pattern variables in `masked` are read through their filter ([`filterable`]), so that
/// some points and whole fibers are absent.
fn instantiate(
    ast: &PatternAst<Cx>,
    binds: &[(&str, Bind)],
    b: &mut Builder,
    masked: &[&str],
) -> Id {
    let filters = filterable(binds);
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
                    Input(t, vars, _) => {
                        let mut children = vec![b.name(t)];
                        children.extend(vars.iter().map(|v| b.name(v)));
                        let access = b.add(Cx::At(children.into_boxed_slice()));
                        match filters.iter().position(|(v, _)| *v == name) {
                            Some(k) if masked.contains(&name.as_str()) => {
                                let mask = b.add(Cx::Mask(lang::Mask(k as u32)));
                                b.add(Cx::Where([mask, access]))
                            }
                            _ => access,
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

/// Lowers one side to a cascade over the bound inputs; the filters are `v0 < v1` and `v0 > v1`
/// alternately over the filterable inputs, swapped with `flip`.
fn side_cascade(
    ast: &PatternAst<Cx>,
    binds: &[(&str, Bind)],
    out_vars: &[String],
    masked: &[&str],
    flip: bool,
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
        splits: Vec::new(),
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
        tiles: Tiles::default(),
    };
    let mut sig = sig;
    let pos = |r: &str| {
        sig.ranks
            .iter()
            .position(|(n, _)| n == r)
            .map(|i| crate::ast::RankId(i as u32))
    };
    use crate::ast::{Compare, CompareOp, IndexExpr};
    sig.masks = filterable(binds)
        .iter()
        .enumerate()
        .map(|(k, (_, [a, b]))| {
            let var = |v: &str| IndexExpr::Var(pos(&v.to_uppercase()).expect("bound rank"));
            // Alternating directions, so that two inputs are absent at different points.
            let op = if (k % 2 == 1) != flip {
                CompareOp::Gt
            } else {
                CompareOp::Lt
            };
            vec![Compare {
                lhs: var(a),
                op,
                rhs: var(b),
            }]
        })
        .collect();
    sig.tiles = Tiles::new(
        sig.ranks.iter().map(|(r, _)| r.as_str()),
        sig.inputs.iter().map(|(t, _)| t.as_str()),
    );
    let names = vec![None; expr.as_ref().len()];
    lower(&expr, &names, &sig).unwrap_or_else(|e| panic!("lowering {expr}: {e}"))
}

/// The free variables of the left-hand side, in sorted order: the output's index variables.
fn free_vars(ast: &PatternAst<Cx>, binds: &[(&str, Bind)]) -> Vec<String> {
    let mut b = Builder::default();
    let root = instantiate(ast, binds, &mut b, &[]);
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

/// Evaluates both sides of one rewrite of table row `row` at the given rank sizes and seed.
fn check_rule(
    row: &rules::Rule,
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
    // Every other case reads each input over two or more variables through a filter (absent
    // points and fibers), except where the rule asks for a value present everywhere.
    let masked: Vec<&str> = filterable(&binds)
        .iter()
        .map(|(v, _)| *v)
        .filter(|v| seed.is_multiple_of(2) && !row.conds.contains(&Cond::Present(v)))
        .collect();
    let flip = seed % 4 == 2;
    let left = side_cascade(lhs, &binds, &out_vars, &masked, flip);
    let right = side_cascade(rhs, &binds, &out_vars, &masked, flip);
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
    #![proptest_config(ProptestConfig { cases: super::random::cases(24), ..ProptestConfig::default() })]

    /// Every rule and each of its commuted variants, at random sizes (1..=4 per rank, tiles 1..=3) and random inputs.
    #[test]
    fn rules_are_sound(m1 in 1i64..=3, tile in 1i64..=3, e in 1i64..=3, f in 1i64..=3, p in 1i64..=3, k in 1i64..=4, seed in any::<u64>()) {
        let sizes: BTreeMap<String, i64> = [("M", m1 * tile), ("E", e), ("F", f), ("P", p), ("K", k)]
            .into_iter().map(|(n, s)| (n.to_string(), s)).collect();
        for row in rules::table(ALL_RULES) {
            for rw in row.rewrites() {
                check_rule(&row, &rw, &sizes, tile, seed);
            }
        }
    }
}

/// `scan-chunk` chunks only a running sum with an absent initial state, read after its step by
/// a query contraction, over a rank the caller lets it split: a constant initial state, a
/// product update, a read of the state before the step and a value that reads the contracted
/// rank are not prefix sums it can chunk, and stay as they are.
#[test]
fn scan_chunk_applies_only_to_running_sums() {
    let chunk: Vec<_> = rules::table(ALL_RULES)
        .into_iter()
        .filter(|r| r.name == "scan-chunk")
        .flat_map(|r| r.rewrites())
        .collect();
    assert!(!chunk.is_empty());
    let chunks = |term: &str, split: &[&str]| {
        let expr: egg::RecExpr<Cx> = term.parse().expect("term");
        let scope = lang::Scope {
            split: split.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let runner = egg::Runner::<Cx, lang::Scope>::new(scope)
            .with_expr(&expr)
            .run(&chunk);
        runner
            .egraph
            .classes()
            .any(|c| c.nodes.iter().any(|n| matches!(n, Cx::Join(_))))
    };
    let kv = "(* (at K e m) (at V f m))";
    let read = |scan: &str| format!("(sum e (* (at Q e m) {scan}))");
    assert!(chunks(
        &read(&format!("(scan m 0 (+ (state m) {kv}))")),
        &["m"]
    ));
    assert!(!chunks(
        &read(&format!("(scan m 0 (+ (state m) {kv}))")),
        &[]
    ));
    assert!(!chunks(
        &read(&format!("(scan m 1 (+ (state m) {kv}))")),
        &["m"]
    ));
    assert!(!chunks(
        &read(&format!("(scan m 0 (* (state m) {kv}))")),
        &["m"]
    ));
    assert!(!chunks(
        &read(&format!("(scan-prev m 0 (+ (state m) {kv}))")),
        &["m"]
    ));
    let ve = "(* (at K e m) (at V e m))";
    assert!(!chunks(
        &read(&format!("(scan m 0 (+ (state m) {ve}))")),
        &["m"]
    ));
}

// ---------------------------------------------------------------------------------------------
// Capture avoidance as a property of the rule table.

/// Every row states the freshness of whatever it moves across a binder.
#[test]
fn every_rule_is_capture_avoiding() {
    let table = rules::table(ALL_RULES);
    assert!(table.len() > 20, "{} rows", table.len());
    for row in &table {
        let missing = missing_conditions(row);
        assert!(missing.is_empty(), "rule {}: {missing:?}", row.name);
    }
}

/// The check fails on the rules as they were before: a split without `Fresh`, a deferral
/// without `Indep`, a fold without `Stateless`.
#[test]
fn the_capture_check_catches_a_rule_without_freshness() {
    let split = rule(
        "split-sum",
        "(sum ?m ?x)",
        "(sum (outer ?m) (sum (inner ?m) (split ?m ?x)))",
        &[Cond::Splittable("?m"), Cond::Dep("?x", "?m")],
    );
    let missing = missing_conditions(&split);
    assert_eq!(missing.len(), 2, "{missing:?}");
    assert!(missing.iter().any(|m| m.contains("Outer")), "{missing:?}");
    let defer = rule("defer", "(sum ?m (* ?d ?a))", "(* ?d (sum ?m ?a))", &[]);
    assert_eq!(missing_conditions(&defer), vec!["?d crosses Rank(\"?m\")"]);
    let into = rule("into", "(* ?c (sum ?j ?v))", "(sum ?j (* ?c ?v))", &[]);
    assert_eq!(missing_conditions(&into), vec!["?c crosses Rank(\"?j\")"]);
    let fold = rule(
        "fold",
        "(sum ?i ?w)",
        "(fold ?i 0 (+ (state ?i) ?w))",
        &[Cond::Foldable("?i")],
    );
    assert_eq!(missing_conditions(&fold), vec!["?w crosses State(\"?i\")"]);
    let fixed = rule(
        "fold",
        "(sum ?i ?w)",
        "(fold ?i 0 (+ (state ?i) ?w))",
        &[Cond::Foldable("?i"), Cond::Stateless("?w")],
    );
    assert!(missing_conditions(&fixed).is_empty());
}

/// The names of the table are stable kebab-case (operators aside) and unique.
#[test]
fn rule_names_are_unique_kebab_case() {
    let table = rules::table(ALL_RULES);
    let mut seen = std::collections::BTreeSet::new();
    for row in &table {
        assert!(seen.insert(row.name.clone()), "{} twice", row.name);
        let word: String = row.name.chars().take_while(|c| *c != '{').collect();
        assert!(
            word.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-+*/".contains(c)),
            "{}",
            row.name
        );
    }
}

/// `scan-chunk-rev` takes a chunked cascade back to the recurrence only through the causal
/// filter `n0 <= m0` (`cascade-tri`): with `n0 < m0` each query misses its own key, the
/// within-chunk product is another sum, and the cascade keeps its chunks. Both rewrite to
/// cascades that evaluate like their inputs.
#[test]
fn scan_chunk_rev_needs_the_causal_filter() {
    use super::{BIG, SMALL, config, ops_objective, parse, sizes_for};
    use crate::rewrite::check::{Trial, check};
    let chunked = |filter: &str| {
        format!(
            "cascade chunked\nranks E F M\nsplit M -> M1 M0 N0\ninput Q[E,M] K[E,M] V[F,M]\n\n\
             init\nST[e,f,0] = 0\n\neinsums\n\
             FK[e,m] = elu1(K[e,m])\nFQ[e,m] = elu1(Q[e,m])\n\
             KV[e,f,m1] = FK[e, m1*M0+m0] * V[f, m1*M0+m0]\n\
             ST[e,f,m1+1] = ST[e,f,m1] + KV[e,f,m1]\n\
             INTER[f,m1,m0] = FQ[e, m1*M0+m0] * ST[e,f,m1]\n\
             SC[m1,m0,n0] = FQ[e, m1*M0+m0] * FK[e, m1*M0+n0 : {filter}]\n\
             INTRA[f,m1,m0] = SC[m1,m0,n0] * V[f, m1*M0+n0]\n\
             OUT[f,m1*M0+m0] = INTER[f,m1,m0] + INTRA[f,m1,m0]\n\n\
             stop m1 >= M1\noutput OUT\n"
        )
    };
    let loops = |filter: &str| -> Vec<String> {
        let c = parse(&chunked(filter));
        let cfg = config(ops_objective(), ALL_RULES, sizes_for(&c, BIG), &["M"]);
        let r = check(&c, &cfg, &Trial::new(SMALL, 3)).unwrap_or_else(|e| panic!("{filter}: {e}"));
        let out = &r.cascade;
        out.iterative_ranks()
            .iter()
            .map(|r| out.rank(*r).name.clone())
            .collect()
    };
    assert_eq!(loops("n0 <= m0"), ["M"]);
    assert_eq!(loops("n0 < m0"), ["M1"]);
}
