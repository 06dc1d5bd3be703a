//! The dead-tile claim of `cascade_ir::presence`, checked with the interpreter: where the
//! analysis says a loop state may skip a tile whose scores are all absent or `-inf`, running
//! the step there leaves the state as it was, bit for bit, including queries whose every key
//! is masked (the running max stays `-inf` and `exp(-inf - (-inf))` is 0). Values are compared
//! with absent points as the fill value 0: a state absent before a `-inf` tile may be a present 0
//! after it.

use cascade_ir::plan::LoopPlan;
use cascade_ir::presence::{TileRanks, dead_tile_skips};
use cascade_ir::{Cascade, Shape, ShapeSpec, dsl, eval, library, reference};
use ndarray::ArrayD;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn load(name: &str) -> Cascade {
    dsl::parse(library::source(name).expect("library"), name)
        .expect("parses")
        .cascade
}

/// Evaluates `name` on seeded inputs (MASK: `-inf` on whole key tiles, on one query's every
/// key, and at random points) and checks that on every dead (key tile, query) the states the
/// analysis lets skip are unchanged by the step. Returns how many dead tiles it checked.
fn check(name: &str, masks: &[&str], seed: u64) -> usize {
    let c = load(name);
    let (m1, m0, p) = (6usize, 4usize, 9usize);
    let mut spec = ShapeSpec::default();
    for (r, v) in [
        ("E", 3),
        ("F", 2),
        ("M", (m1 * m0) as i64),
        ("M0", m0 as i64),
        ("P", p as i64),
    ] {
        spec.sizes.insert(r.into(), v);
    }
    let shape = Shape::resolve(&c, &spec).expect("shape");
    let mut inputs = reference::random_inputs(&c, &shape, seed);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    if let Some(mask) = inputs.get_mut("MASK") {
        for ((m, q), x) in mask
            .view_mut()
            .into_dimensionality::<ndarray::Ix2>()
            .unwrap()
            .indexed_iter_mut()
        {
            let tile_dead = (m / m0 + q) % 3 == 0;
            if tile_dead || q == 4 || rng.random_bool(0.2) {
                *x = f64::NEG_INFINITY;
            }
        }
    }
    let ev = eval::evaluate::<f64>(&c, &shape, &inputs).expect("evaluates");
    let plan = LoopPlan::new(&c);
    let key = ["M", "M1", "M0"].map(|n| c.rank_by_name(n).unwrap());
    let query = [c.rank_by_name("P").unwrap()];
    let neginf: Vec<_> = masks.iter().map(|n| c.tensor_by_name(n).unwrap()).collect();
    let tile = TileRanks {
        key: &key,
        query: &query,
    };
    let skip = dead_tile_skips(&c, &plan, tile, &neginf);
    let states: Vec<String> = c
        .einsum_ids()
        .filter(|&id| {
            let e = c.einsum(id);
            skip[id.index()] && e.output.indices.iter().any(|i| i.shifted_var().is_some())
        })
        .map(|id| c.tensor(c.einsum(id).output.tensor).name.clone())
        .collect();
    assert!(
        states.len() >= 3,
        "{name}: the running states may skip: {states:?}"
    );
    // A (key tile, query) is dead when every score of the tile is absent or -inf.
    let scores = ev.tensor("BQK").expect("scores");
    let mask = inputs.get("MASK");
    let dead = |t: usize, q: usize| {
        (0..m0).all(|k| {
            let absent = scores.get(&[t, k, q]).is_none();
            let masked =
                mask.is_some_and(|a: &ArrayD<f64>| a[[t * m0 + k, q]] == f64::NEG_INFINITY);
            absent || masked
        })
    };
    let mut checked = 0;
    for t in 0..m1 {
        for q in 0..p {
            if !dead(t, q) {
                continue;
            }
            checked += 1;
            for s in &states {
                let st = ev.tensor(s).expect("state");
                // State tensors carry the step in the position of the rank M1.
                let before: Vec<Option<f64>> = st_values(&st.values, &st.present, t, q);
                let after: Vec<Option<f64>> = st_values(&st.values, &st.present, t + 1, q);
                // An absent point holds the fill value 0 (the IR's semantics), so a state that
                // was absent and becomes a present 0 is unchanged in value.
                let value = |x: &Option<f64>| x.unwrap_or(0.0).to_bits();
                let same = before.iter().zip(&after).all(|(a, b)| value(a) == value(b));
                assert!(
                    same,
                    "{name}: {s} changes on dead tile {t} for query {q}: {before:?} -> {after:?}"
                );
            }
        }
    }
    checked
}

/// The values of a state `[.., step, query]` (the step is the second-to-last dimension, and
/// any leading dimension is a head dimension such as F).
fn st_values(
    values: &ArrayD<f64>,
    present: &ArrayD<bool>,
    step: usize,
    q: usize,
) -> Vec<Option<f64>> {
    let shape = values.shape().to_vec();
    let lead: usize = shape[..shape.len() - 2].iter().product();
    (0..lead)
        .map(|l| {
            let mut idx = Vec::new();
            let mut rest = l;
            for &d in shape[..shape.len() - 2].iter().rev() {
                idx.push(rest % d);
                rest /= d;
            }
            idx.reverse();
            idx.extend([step, q]);
            let ix = ndarray::IxDyn(&idx);
            present[&ix].then(|| values[&ix])
        })
        .collect()
}

#[test]
fn causal_dead_tiles_leave_the_running_state_unchanged() {
    assert!(check("attention_causal_1pass", &[], 3) > 10);
}

#[test]
fn masked_dead_tiles_leave_the_running_state_unchanged() {
    for seed in 0..8 {
        assert!(check("attention_masked_1pass", &["MASK"], seed) > 10);
    }
}
