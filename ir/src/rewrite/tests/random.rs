//! The whole pipeline on random terms: `rewrite(c)` verifies, has unambiguous loop phases and is
//! interpreter-equal to `c`.
//!
//! The terms are attention-like: sums and maxima over `m`, `e` (and `m1` where the cascade has
//! its own rank `M1`, the name a split of `M` would otherwise give its outer tile), products,
//! quotients, maxima, exponentials, softmax shapes `e^(s − max_m s)` whose scores may carry an
//! additive mask `B` with `-inf` entries and a fully `-inf` row (and may be scaled by another
//! softmax normalizer, which a loop must compute before it), and reads of `X` through the
//! causal filter `m < p` (absent points; query `p = 0` sees no key at all); one binary op in
//! four carries an explicit merge.
//!
//! CI runs 64 cases from its fixed seed; `PROPTEST_CASES=2000` runs more locally.

use std::collections::BTreeSet;

use egg::Id;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{ALL_RULES, config, ops_objective, passes_objective, reorder, sizes};
use crate::ast::{BinaryOp, Cascade, Compare, CompareOp, IndexExpr, Merge, RankId};
use crate::rewrite::check::{self, Trial, check};
use crate::rewrite::extract;
use crate::rewrite::lang::{self, Cx, Mask, Tiles};
use crate::rewrite::lift::Builder;
use crate::rewrite::{RuleSets, Signature, lower};

/// The number of cases: `PROPTEST_CASES` when set (proptest's own variable), else `default`.
pub(crate) fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A random term generator over the inputs of [`signature`].
struct Gen<'a> {
    rng: ChaCha8Rng,
    b: &'a mut Builder,
    /// The cascade declares a rank `M1` of its own, read by `Z[M1,P]`.
    collide: bool,
}

/// A generated term, whether it may evaluate to 0 or be absent (it is then never a divisor:
/// every input is in [0.5, 1.5], so nothing else is 0) and its free
/// index variables (a reduction reduces one of them).
#[derive(Clone)]
struct Term {
    id: Id,
    zero: bool,
    vars: BTreeSet<String>,
}

fn vars(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

impl Gen<'_> {
    fn access(&mut self, t: &str, vars: &[&str]) -> Id {
        let mut children = vec![self.b.name(t)];
        children.extend(vars.iter().map(|v| self.b.name(v)));
        self.b.add(Cx::At(children.into_boxed_slice()))
    }

    fn leaf(&mut self) -> Term {
        let mut inputs: Vec<(&str, &[&str])> = vec![
            ("X", &["m", "p"]),
            ("Y", &["m", "p"]),
            ("D", &["p"]),
            ("V", &["f", "m"]),
            ("Q", &["e", "p"]),
            ("K", &["e", "m"]),
        ];
        if self.collide {
            inputs.push(("Z", &["m1", "p"]));
        }
        let k = self.rng.random_range(0..inputs.len() + 1);
        if k == inputs.len() {
            // X read through the causal filter m < p.
            let x = self.access("X", &["m", "p"]);
            let mask = self.b.add(Cx::Mask(Mask(0)));
            let id = self.b.add(Cx::Where([mask, x]));
            // Absent points: `∅ / d` is 0 under the default merge `←`.
            return Term {
                id,
                zero: true,
                vars: vars(&["m", "p"]),
            };
        }
        let (t, v) = inputs[k];
        let id = self.access(t, v);
        Term {
            id,
            zero: false,
            vars: vars(v),
        }
    }

    fn term(&mut self, depth: u32) -> Term {
        let choice = if depth == 0 {
            0
        } else {
            self.rng.random_range(0..12)
        };
        match choice {
            0 | 1 => self.leaf(),
            2 | 3 => self.reduction(depth),
            4 | 5 => self.softmax(depth),
            6 => {
                // exp of a leaf, or the shift of one leaf by another: e^(x − c).
                // Absent stays absent (`∩`), so a filtered leaf keeps its `zero`.
                let mut x = self.leaf();
                x.id = if self.rng.random_range(0..2) == 0 {
                    self.b.add(Cx::Unary(crate::ast::UnaryOp::Exp, [x.id]))
                } else {
                    let c = self.leaf();
                    x.vars.extend(c.vars);
                    x.zero |= c.zero;
                    self.b.add(Cx::SubExp([x.id, c.id]))
                };
                x
            }
            _ => self.binary(depth),
        }
    }

    fn reduction(&mut self, depth: u32) -> Term {
        let ranks: &[&str] = if self.collide {
            &["m", "m", "e", "m1"]
        } else {
            &["m", "m", "m", "e"]
        };
        let mut body = self.term(depth - 1);
        // A reduction over a variable its body reads (the lifted form of an Einsum).
        let choices: Vec<&str> = ranks
            .iter()
            .copied()
            .filter(|r| body.vars.contains(*r))
            .collect();
        if choices.is_empty() {
            return body;
        }
        let r = choices[self.rng.random_range(0..choices.len())];
        body.vars.remove(r);
        let r = self.b.name(r);
        body.id = self.b.add(if self.rng.random_range(0..3) == 0 {
            Cx::RMax([r, body.id])
        } else {
            Cx::Sum([r, body.id])
        });
        body
    }

    /// `e^(s − max_m s)`, the scores `s` plus the mask `B[m,p]` (with `-inf`) half the time.
    fn softmax(&mut self, depth: u32) -> Term {
        let mut t = self.term(depth - 1);
        if self.rng.random_range(0..3) == 0 {
            // Scores scaled by another normalizer `Σ_m e^(y − max_m y)·w`: both sums fold over
            // the same tiles, and the scores (per step) must not read the other's final state.
            let norm = self.normalizer();
            t.id = self.b.add(Cx::Mul([t.id, norm.id]));
            t.vars.extend(norm.vars);
        }
        let masked = self.rng.random_range(0..2) == 0;
        if masked {
            let bias = self.access("B", &["m", "p"]);
            t.id = self.b.add(Cx::Add([t.id, bias]));
            t.vars.extend(vars(&["m", "p"]));
        }
        if !t.vars.contains("m") {
            return t;
        }
        let m = self.b.name("m");
        let g = self.b.add(Cx::RMax([m, t.id]));
        t.id = self.b.add(Cx::SubExp([t.id, g]));
        // Masked rows give 0; absent scores stay absent.
        t.zero |= masked;
        t
    }

    /// `Σ_m e^(y − max_m y)·w` over leaves `y`, `w` that read `m`.
    fn normalizer(&mut self) -> Term {
        let (y, w) = (self.access("X", &["m", "p"]), self.access("Y", &["m", "p"]));
        let m = self.b.name("m");
        let g = self.b.add(Cx::RMax([m, y]));
        let e = self.b.add(Cx::SubExp([y, g]));
        let ew = self.b.add(Cx::Mul([e, w]));
        let id = self.b.add(Cx::Sum([m, ew]));
        Term {
            id,
            zero: false,
            vars: vars(&["p"]),
        }
    }

    fn binary(&mut self, depth: u32) -> Term {
        let (l, r) = (self.term(depth - 1), self.term(depth - 1));
        let (op, mut zero) = match self.rng.random_range(0..5) {
            0 => (BinaryOp::Add, l.zero && r.zero),
            3 if !r.zero => (BinaryOp::Div, l.zero),
            4 => (BinaryOp::Max, l.zero && r.zero),
            _ => (BinaryOp::Mul, l.zero || r.zero),
        };
        // One op in four with an explicit merge; a quotient only with `{&}`, since `{1}` and
        // `{|}` divide by an absent divisor as by 0 (or take its reciprocal).
        let mut merge = op.default_merge();
        if self.rng.random_range(0..4) == 0 {
            let merges = [Merge::Intersect, Merge::Union, Merge::Right, Merge::All];
            merge = merges[self.rng.random_range(0..merges.len())];
            if op == BinaryOp::Div {
                merge = Merge::Intersect;
            }
            // `{1}` and `←` count an absent operand as 0.
            zero |= merge != Merge::Intersect && (l.zero || r.zero);
        }
        let node = lang::binary_node(op, merge, [l.id, r.id]);
        let mut vars = l.vars;
        vars.extend(r.vars);
        Term {
            id: self.b.add(node),
            zero,
            vars,
        }
    }
}

/// The interface of the random cascades: `X[M,P] Y[M,P] D[P] V[F,M] Q[E,P] K[E,M] B[M,P]`,
/// plus rank `M1` and `Z[M1,P]` when `collide`; mask 0 is `m < p`.
fn signature(collide: bool, out_vars: Vec<String>) -> Signature {
    let mut ranks = vec!["E", "F", "M", "P"];
    let mut inputs = vec![
        ("X", "M P"),
        ("Y", "M P"),
        ("D", "P"),
        ("V", "F M"),
        ("Q", "E P"),
        ("K", "E M"),
        ("B", "M P"),
    ];
    if collide {
        ranks.push("M1");
        inputs.push(("Z", "M1 P"));
    }
    let pos = |r: &str| RankId(ranks.iter().position(|x| *x == r).expect("rank") as u32);
    Signature {
        name: "random".into(),
        ranks: ranks.iter().map(|r| (r.to_string(), false)).collect(),
        splits: Vec::new(),
        inputs: inputs
            .iter()
            .map(|(t, r)| (t.to_string(), r.split(' ').map(str::to_string).collect()))
            .collect(),
        output: ("OUT".into(), out_vars),
        masks: vec![vec![Compare {
            lhs: IndexExpr::Var(pos("M")),
            op: CompareOp::Lt,
            rhs: IndexExpr::Var(pos("P")),
        }]],
        tiles: Tiles::new(ranks.iter().copied(), inputs.iter().map(|(t, _)| *t)),
    }
}

/// A random cascade from `seed`, with the term it was lowered from.
fn random_cascade(seed: u64, collide: bool) -> (Cascade, egg::RecExpr<Cx>) {
    let mut b = Builder::default();
    let mut g = Gen {
        rng: ChaCha8Rng::seed_from_u64(seed),
        b: &mut b,
        collide,
    };
    let depth = 4 + u32::from(g.rng.random_range(0..3) == 0);
    let root = g.term(depth).id;
    let expr = reorder(&b, root);
    let sig0 = signature(collide, Vec::new());
    let mut graph = lang::CxGraph::new(lang::Scope {
        masks: sig0.mask_vars(),
        tiles: sig0.tiles.clone(),
        ..Default::default()
    });
    let id = graph.add_expr(&expr);
    let out_vars: BTreeSet<String> = graph[id].data.vars.clone();
    // Output variables in declaration order, as the cascade's output would list them.
    let order = ["e", "f", "m", "m1", "p"];
    let out_vars: Vec<String> = order
        .iter()
        .filter(|v| out_vars.contains(**v))
        .map(|v| v.to_string())
        .collect();
    let sig = signature(collide, out_vars);
    let input = lower(&expr, &vec![None; expr.as_ref().len()], &sig).expect("lowers");
    (input, expr)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(64), ..ProptestConfig::default() })]

    #[test]
    fn rewriting_random_terms_preserves_meaning(
        seed in any::<u64>(),
        m1 in 1i64..=3,
        tile in 1i64..=3,
        objective_passes in any::<bool>(),
        collide in any::<bool>(),
        sets in 0usize..4,
    ) {
        let (input, expr) = random_cascade(seed, collide);
        check::valid(&input).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let objective = if objective_passes { passes_objective("M") } else { ops_objective() };
        let mut spec = sizes(&[("E", 64), ("F", 64), ("M", 4096), ("P", 4096)]);
        if collide {
            spec.sizes.insert("M1".into(), 64);
        }
        // Mostly every rule; sometimes without deferral or without iterative rescaling.
        let rules = match sets {
            0 => RuleSets { deferral: false, iterative: true },
            1 => RuleSets { deferral: true, iterative: false },
            _ => ALL_RULES,
        };
        let mut cfg = config(objective, rules, spec, &["M"]);
        cfg.limits.nodes = 20_000;
        let mut trial = Trial::new(&[("E", 2), ("F", 2), ("M", m1 * tile), ("P", 3)], tile);
        if collide {
            trial.sizes.insert("M1".into(), 2);
        }
        trial.masks = vec!["B".into()];
        trial.values = (0.5, 1.5);
        trial.seeds = vec![seed ^ 0x5eed];
        let r = check(&input, &cfg, &trial)
            .map_err(|e| TestCaseError::fail(format!("{e}\ninput:\n{}", crate::dsl::print(&input))))?;
        // What extraction minimised agrees with the pass analysis of the lowered cascades.
        let tiles = &signature(collide, Vec::new()).tiles;
        let term: egg::RecExpr<Cx> = r.term.parse().expect("term parses");
        prop_assert_eq!(extract::term_passes(&term, "M", tiles), r.after.passes, "{}", crate::dsl::print(&r.cascade));
        prop_assert_eq!(extract::term_passes(&expr, "M", tiles), r.before.passes, "{}", crate::dsl::print(&input));
    }
}
