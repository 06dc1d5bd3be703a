//! Every library cascade, run by the interpreter, matches its direct reference in
//! `cascade_ir::reference`: in f64 within 1e-10 and in f32 within 1e-4, relative to the size of
//! the result (see [`assert_close`]), on random shapes and values, including `-inf` scores from
//! masks and queries whose keys are all masked.

use std::collections::BTreeMap;

use cascade_ir::reference::{self, Form};
use cascade_ir::{Cascade, Shape, ShapeSpec, dsl, eval, library};
use ndarray::{ArrayD, Axis};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn load(name: &str) -> Cascade {
    let source = library::source(name).expect("library name");
    dsl::parse(source, name)
        .expect("library cascades parse")
        .cascade
}

/// Sizes for a cascade: `K` (pedagogical) or `M` is `m1·m0`; `M0` and `W` only where declared.
fn shape(c: &Cascade, e: i64, f: i64, m1: i64, m0: i64, p: i64, w: i64) -> Shape {
    let mut spec = ShapeSpec::default();
    for rank in &c.ranks {
        let size = match rank.name.as_str() {
            "E" => e,
            "F" => f,
            "P" => p,
            "M" | "K" => m1 * m0,
            "M0" => m0,
            "W" => w,
            _ => continue,
        };
        spec.sizes.insert(rank.name.clone(), size);
    }
    Shape::resolve(c, &spec).expect("test shapes are valid")
}

/// Random inputs; `MASK` gets `-inf` at about a third of its points and on every key of one
/// query, so that some rows are fully masked.
fn inputs(c: &Cascade, shape: &Shape, seed: u64) -> BTreeMap<String, ArrayD<f64>> {
    let mut inputs = reference::random_inputs(c, shape, seed);
    if let Some(mask) = inputs.get_mut("MASK") {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
        mask.mapv_inplace(|x| {
            if rng.random_bool(1.0 / 3.0) {
                f64::NEG_INFINITY
            } else {
                x
            }
        });
        let p = rng.random_range(0..mask.len_of(Axis(1)));
        mask.index_axis_mut(Axis(1), p).fill(f64::NEG_INFINITY);
    }
    inputs
}

/// The size of the result, for relative tolerances: the same reference on `|V|` (or `|A|`,
/// `|B|`), which bounds every output entry and every partial sum the cascades form.
fn magnitude(
    form: Form,
    c: &Cascade,
    shape: &Shape,
    inputs: &BTreeMap<String, ArrayD<f64>>,
) -> f64 {
    let abs: BTreeMap<String, ArrayD<f64>> = inputs
        .iter()
        .map(|(n, a)| {
            let keep = matches!(n.as_str(), "MASK" | "Q" | "K") && form != Form::Pedagogical;
            (n.clone(), if keep { a.clone() } else { a.mapv(f64::abs) })
        })
        .collect();
    let out = reference::compute(form, c, shape, &abs).expect("reference inputs");
    out.iter().fold(f64::MIN_POSITIVE, |m, x| m.max(x.abs()))
}

/// `|got - want| <= tol · (|want| + scale)` everywhere, and no NaN.
fn assert_close(name: &str, got: &ArrayD<f64>, want: &ArrayD<f64>, scale: f64, tol: f64) {
    assert_eq!(got.shape(), want.shape(), "{name}: output shape");
    for ((idx, g), w) in got.indexed_iter().zip(want.iter()) {
        assert!(!g.is_nan(), "{name}: NaN at {idx:?}");
        let bound = tol * (w.abs() + scale);
        assert!(
            (g - w).abs() <= bound,
            "{name}: at {idx:?} got {g}, want {w} (bound {bound:e})"
        );
    }
}

fn check_all(e: i64, f: i64, m1: i64, m0: i64, p: i64, w: i64, seed: u64) {
    for name in library::names() {
        let c = load(name);
        let form = Form::of_library(name).expect("every library cascade has a reference");
        let shape = shape(&c, e, f, m1, m0, p, w);
        let inputs = inputs(&c, &shape, seed);
        let want = reference::compute(form, &c, &shape, &inputs).expect("reference inputs");
        let scale = magnitude(form, &c, &shape, &inputs);

        let got = eval::evaluate(&c, &shape, &inputs).expect("library cascades evaluate");
        let out = got.output().expect("one output");
        assert_close(name, &out.values, &want, scale, 1e-10);

        let inputs32: BTreeMap<String, ArrayD<f32>> = inputs
            .iter()
            .map(|(n, a)| (n.clone(), a.mapv(|x| x as f32)))
            .collect();
        let got = eval::evaluate(&c, &shape, &inputs32).expect("library cascades evaluate in f32");
        let out = got.output().expect("one output").values.mapv(f64::from);
        assert_close(&format!("{name} (f32)"), &out, &want, scale, 1e-4);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn library_matches_direct_references(
        e in 1i64..=4, f in 1i64..=3, m1 in 1i64..=4, m0 in 1i64..=3, p in 1i64..=5,
        w in 1i64..=4, seed in any::<u64>(),
    ) {
        check_all(e, f, m1, m0, p, w, seed);
    }
}

#[test]
fn every_library_cascade_has_a_reference() {
    for name in library::names() {
        assert!(
            Form::of_library(name).is_some(),
            "{name} has no direct reference"
        );
    }
}

#[test]
fn fully_masked_queries_get_zero_rows() {
    for name in ["attention_masked_3pass", "attention_masked_1pass"] {
        let c = load(name);
        let shape = shape(&c, 3, 2, 3, 2, 4, 1);
        let mut inputs = reference::random_inputs(&c, &shape, 7);
        // Query 1 sees nothing, query 2 sees only key 4 (in the last tile), query 3 sees all.
        let mask = inputs.get_mut("MASK").expect("MASK input");
        mask.index_axis_mut(Axis(1), 1).fill(f64::NEG_INFINITY);
        mask.index_axis_mut(Axis(1), 2).fill(f64::NEG_INFINITY);
        mask[[4, 2]] = 0.0;
        let got = eval::evaluate(&c, &shape, &inputs).expect("evaluates");
        let av = got.output().expect("output");
        for f in 0..2 {
            assert_eq!(
                av.get(&[f, 1]),
                Some(0.0),
                "{name}: masked query gives a present 0"
            );
            let v = inputs["V"][[f, 4]];
            let got = av.get(&[f, 2]).expect("present");
            assert!(
                (got - v).abs() <= 1e-12 * v.abs().max(1.0),
                "{name}: one visible key gives V"
            );
        }
    }
}

#[test]
fn window_queries_past_the_keys_are_absent_and_read_as_zero() {
    // P > M with a window of 1: queries p >= M see no key, so AV is absent there.
    let c = load("attention_window_3pass");
    let shape = shape(&c, 2, 2, 3, 1, 5, 1);
    let inputs = reference::random_inputs(&c, &shape, 3);
    let got = eval::evaluate(&c, &shape, &inputs).expect("evaluates");
    let av = got.output().expect("output");
    for p in 0..5 {
        assert_eq!(av.present[[0, p]], p < 3, "query {p}");
    }
    assert_eq!(av.values[[1, 4]], 0.0);
}

#[test]
fn state_tensors_keep_every_step_and_the_literal_zero_leaves_absent() {
    let c = load("pedagogical_3");
    let shape = shape(&c, 1, 1, 4, 1, 1, 1);
    let inputs = reference::random_inputs(&c, &shape, 11);
    let got = eval::evaluate(&c, &shape, &inputs).expect("evaluates");
    let ry = got.tensor("RY").expect("RY");
    assert_eq!(ry.values.shape(), &[5], "RY has extent K+1");
    assert_eq!(ry.get(&[0]), None, "RY[0] = 0 leaves RY[0] absent");
    let (a, b) = (&inputs["A"], &inputs["B"]);
    let mut dot = 0.0;
    for k in 0..4 {
        dot += a[k] * b[k];
        let got = ry.get(&[k + 1]).expect("present");
        assert!((got - dot).abs() < 1e-12, "RY[{}]", k + 1);
    }
}
