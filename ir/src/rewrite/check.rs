//! Soundness checks of rewritten cascades, for tests: [`check`] is the one path by which the
//! rewriter's tests call [`super::rewrite`].
//!
//! A rewritten cascade must pass `verify`, have unambiguous loop phases
//! ([`super::lower::phase_problems`]), print and parse back to the same text, and evaluate equal to its
//! input under the reference interpreter: in f64, to [`TOLERANCE`] relative, with the same
//! presence, on random inputs in which the additive masks hold `-inf` entries and one fully
//! `-inf` row each. Fully masked rows of filtered cascades come from the sizes the caller picks
//! (a causal `m < p` filter hides every key of query `p = 0`).

use std::collections::BTreeMap;

use ndarray::{ArrayD, Axis, IxDyn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{RewriteConfig, RewriteError, Rewritten, lower, rewrite};
use crate::ast::{Cascade, TensorKind};
use crate::shape::{Shape, ShapeSpec};
use crate::{dsl, eval, verify};

/// Relative tolerance of the interpreter comparison (f64), `max(|a|, |b|, 1)`-scaled.
pub const TOLERANCE: f64 = 1e-9;

/// How a rewritten cascade is compared with its input.
#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    /// Interpreter sizes of the input's ranks, by name; the inner rank of a split gets `tile`
    /// (so each split rank's size must be a multiple of it).
    pub sizes: BTreeMap<String, i64>,
    pub tile: i64,
    /// One comparison per seed.
    pub seeds: Vec<u64>,
    /// Additive-mask inputs (scores, biases): besides finite values they hold `-inf` at about
    /// one point in five and along one whole fiber of their first rank.
    pub masks: Vec<String>,
    /// The range of every other input's values.
    pub values: (f64, f64),
}

impl Trial {
    /// Sizes by name (ranks the cascade lacks are ignored), values in [-1, 1], seeds 0..3.
    pub fn new(sizes: &[(&str, i64)], tile: i64) -> Trial {
        Trial {
            sizes: sizes.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            tile,
            seeds: (0..3).collect(),
            masks: Vec::new(),
            values: (-1.0, 1.0),
        }
    }
}

/// Why a check failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CheckError {
    /// The rewriter refused the input or failed.
    #[error(transparent)]
    Rewrite(#[from] RewriteError),
    /// The result is not a valid cascade.
    #[error("invalid result: {0}")]
    Invalid(String),
    /// The result does not evaluate like the input.
    #[error("not equal to the input: {0}")]
    Unequal(String),
    /// The trial itself does not fit the cascade (sizes, or the input evaluates to NaN).
    #[error("bad trial: {0}")]
    Trial(String),
}

/// Rewrites `input` under `config` and checks the result (see the module documentation).
pub fn check(
    input: &Cascade,
    config: &RewriteConfig,
    trial: &Trial,
) -> Result<Rewritten, CheckError> {
    let r = rewrite(input, config)?;
    valid(&r.cascade)?;
    equal(input, &r.cascade, trial)
        .map_err(|e| with_text(e, &format!("{}\nterm: {}", dsl::print(&r.cascade), r.term)))?;
    Ok(r)
}

fn with_text(e: CheckError, text: &str) -> CheckError {
    match e {
        CheckError::Unequal(s) => CheckError::Unequal(format!("{s}\nresult:\n{text}")),
        other => other,
    }
}

/// `verify` reports nothing, the loop phases are unambiguous and the printed text parses back
/// to a cascade that prints the same.
pub fn valid(c: &Cascade) -> Result<(), CheckError> {
    let text = dsl::print(c);
    let mut problems: Vec<String> = verify::verify(c).iter().map(|e| e.to_string()).collect();
    problems.extend(lower::phase_problems(c));
    match dsl::parse(&text, &c.name) {
        Ok(p) if dsl::print(&p.cascade) == text => {}
        Ok(_) => problems.push("the printed cascade parses to a different one".into()),
        Err(d) => problems.push(format!("the printed cascade does not parse: {d:?}")),
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CheckError::Invalid(format!(
            "{}\n{text}",
            problems.join("; ")
        )))
    }
}

/// The shape of `c` at the trial's sizes.
fn shape(c: &Cascade, trial: &Trial) -> Result<Shape, CheckError> {
    let mut spec = ShapeSpec::default();
    for r in &c.ranks {
        if let Some(n) = trial.sizes.get(&r.name) {
            spec.sizes.insert(r.name.clone(), *n);
        }
        if let Some((_, inner)) = r.split {
            spec.sizes.insert(c.rank(inner).name.clone(), trial.tile);
        }
    }
    Shape::resolve(c, &spec).map_err(|e| CheckError::Trial(format!("{}: {e:?}", c.name)))
}

/// Random inputs for `c` under `trial` (see [`Trial::masks`]).
pub fn inputs(
    c: &Cascade,
    shape: &Shape,
    trial: &Trial,
    seed: u64,
) -> BTreeMap<String, ArrayD<f64>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = BTreeMap::new();
    for t in c.tensors.iter().filter(|t| t.kind == TensorKind::Input) {
        let dims: Vec<usize> = t.ranks.iter().map(|r| shape.size(*r) as usize).collect();
        let (lo, hi) = trial.values;
        let mut a = ArrayD::from_shape_simple_fn(IxDyn(&dims), || rng.random_range(lo..hi));
        if trial.masks.contains(&t.name) && !dims.is_empty() {
            for x in a.iter_mut() {
                if rng.random_range(0..5) == 0 {
                    *x = f64::NEG_INFINITY;
                }
            }
            // One whole fiber of the first rank (a row of keys of one query) hidden.
            let lanes = a.lanes(Axis(0)).into_iter().count();
            let pick = rng.random_range(0..lanes.max(1));
            if let Some(mut lane) = a.lanes_mut(Axis(0)).into_iter().nth(pick) {
                lane.fill(f64::NEG_INFINITY);
            }
        }
        out.insert(t.name.clone(), a);
    }
    out
}

/// Whether two interpreter values agree: infinities exactly, finite values to [`TOLERANCE`].
pub fn close(a: f64, b: f64) -> bool {
    if a.is_infinite() || b.is_infinite() {
        return a == b;
    }
    (a - b).abs() <= TOLERANCE * a.abs().max(b.abs()).max(1.0)
}

/// `b` evaluates like `a` (same output presence, values to [`TOLERANCE`]) on every seed.
pub fn equal(a: &Cascade, b: &Cascade, trial: &Trial) -> Result<(), CheckError> {
    let (sa, sb) = (shape(a, trial)?, shape(b, trial)?);
    for &seed in &trial.seeds {
        let ins = inputs(a, &sa, trial, seed);
        let va = eval::evaluate::<f64>(a, &sa, &ins)
            .map_err(|e| CheckError::Trial(format!("the input does not evaluate: {e}")))?;
        let vb = eval::evaluate::<f64>(b, &sb, &ins)
            .map_err(|e| CheckError::Unequal(format!("the result does not evaluate: {e}")))?;
        let (Some(oa), Some(ob)) = (va.output(), vb.output()) else {
            return Err(CheckError::Unequal("no output".into()));
        };
        let at = |what: String| CheckError::Unequal(format!("seed {seed}: {what}"));
        if oa.values.shape() != ob.values.shape() {
            return Err(at(format!(
                "output shapes {:?} and {:?}",
                oa.values.shape(),
                ob.values.shape()
            )));
        }
        for ((idx, x), (y, (pa, pb))) in oa.values.indexed_iter().zip(
            ob.values
                .iter()
                .zip(oa.present.iter().zip(ob.present.iter())),
        ) {
            if x.is_nan() {
                return Err(CheckError::Trial(format!(
                    "seed {seed}: the input evaluates to NaN at {idx:?}; pick another domain"
                )));
            }
            if pa != pb {
                return Err(at(format!("presence differs at {idx:?} ({pa} vs {pb})")));
            }
            if *pa && !close(*x, *y) {
                return Err(at(format!("{x} vs {y} at {idx:?}")));
            }
        }
    }
    Ok(())
}
