//! Every model variant (`ir/cascades/variants/`), run by the interpreter in f64, matches its
//! direct reference in `cascade_ir::reference::variants` within 1e-10 of the result's size, on
//! random values and several shapes: fewer queries than keys (a KV cache), as many (prefill)
//! and one (decode), with `-inf` blocks in the block mask and a fully masked query. Each is
//! also recognised as its variant by structure alone.

use std::collections::BTreeMap;

use cascade_ir::reference::{self, Form};
use cascade_ir::{Cascade, Shape, ShapeSpec, dsl, eval, library};
use ndarray::ArrayD;

fn load(name: &str) -> Cascade {
    let source = library::variant_source(name).expect("variant");
    dsl::check(source, name)
        .unwrap_or_else(|d| panic!("{name}: {}", d.render(source, name, false)))
        .cascade
}

/// Sizes for every rank a variant may declare; `p` queries against `m1·m0` keys.
fn shape(c: &Cascade, m1: i64, m0: i64, p: i64) -> Shape {
    let mut spec = ShapeSpec::default();
    for (rank, size) in [
        ("E", 3),
        ("F", 2),
        ("M", m1 * m0),
        ("M0", m0),
        ("P", p),
        ("P0", 1),
        ("H", 4),
        ("G", 2),
        ("L", 3),
        ("RP", 2),
        ("W", 4),
        ("S", 2),
    ] {
        if c.rank_by_name(rank).is_some() {
            spec.sizes.insert(rank.into(), size);
        }
    }
    Shape::resolve(c, &spec).unwrap_or_else(|e| panic!("{}: {e:?}", c.name))
}

fn inputs(c: &Cascade, shape: &Shape, seed: u64) -> BTreeMap<String, ArrayD<f64>> {
    let mut ins = reference::random_inputs(c, shape, seed);
    if let Some(bm) = ins.get_mut("BM") {
        // 0 (attend) or -inf per block; the last query block sees nothing.
        let last = bm.shape()[1] - 1;
        for (i, x) in bm.indexed_iter_mut() {
            let skip = i[1] == last || (i[0] + i[1]) % 3 == 1;
            *x = if skip { f64::NEG_INFINITY } else { 0.0 };
        }
    }
    ins
}

#[test]
fn every_variant_matches_its_direct_reference() {
    let mut checked = 0;
    for name in library::variant_names() {
        let form = Form::of_variant(name).unwrap_or_else(|| panic!("{name} has no reference"));
        let c = load(name);
        let known = reference::known_form(&c).expect("recognised by structure");
        assert_eq!(known.form, form, "{name}");
        for (m1, m0, p, seed) in [(4, 3, 5, 1), (3, 2, 6, 2), (5, 2, 1, 3), (2, 3, 6, 4)] {
            // Decode (one query) and a KV cache shorter than the queries only where the
            // shape fits the variant (block masks split P, linear attention has no P).
            if c.rank_by_name("P").is_none() && p != 6 {
                continue;
            }
            let shape = shape(&c, m1, m0, p);
            let ins = inputs(&c, &shape, seed);
            let ev = eval::evaluate::<f64>(&c, &shape, &ins).expect("evaluates");
            let got = &ev.output().expect("an output").values;
            let want = known.compute(&c, &shape, &ins).expect("reference");
            assert_eq!(got.shape(), want.shape(), "{name}");
            let scale = want.iter().fold(1e-3f64, |a, x| a.max(x.abs()));
            for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-10 * scale,
                    "{name} (M1={m1} M0={m0} P={p}): value {i} is {g}, the reference says {w}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 50, "only {checked} cases ran");
}

#[test]
fn every_variant_has_a_reference() {
    let names: Vec<&str> = library::variant_names().collect();
    assert!(names.len() >= 15, "{names:?}");
    for name in names {
        assert!(
            Form::of_variant(name).is_some(),
            "{name} has no direct reference"
        );
        assert!(
            library::source(name).is_none(),
            "{name} is also a library cascade"
        );
    }
}
