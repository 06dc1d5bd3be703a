//! The masking-trap warning: natural spellings of ALiBi, biased sigmoid and soft-capping
//! under a causal mask bring masked scores back; `lint` names the Einsum, the operator and its
//! merge, and the `{&}` spelling is both silent and right. Each warning is backed by the
//! interpreter: the warned cascade really differs from the masked reference, the fixed one
//! does not.

use std::collections::BTreeMap;

use cascade_ir::eval::evaluate;
use cascade_ir::lint::lint;
use cascade_ir::reference::random_inputs;
use cascade_ir::{Cascade, Shape, dsl, library};

fn parse(source: &str) -> Cascade {
    match dsl::parse(source, "test.cascade") {
        Ok(p) => p.cascade,
        Err(d) => panic!("{}", d.render(source, "test.cascade", false)),
    }
}

/// Causal 3-pass attention with `SCORE` between the masked product and the softmax.
fn causal_with(score: &str, extra_inputs: &str) -> String {
    format!(
        "cascade t
ranks E F M P
input Q[E,P] K[E,M] V[F,M]{extra_inputs}
QK[m,p] = Q[e,p] * K[e, m : m <= p]
S[m,p]  = {score}
GM[p]   = max(m) S[m,p]
SN[m,p] = exp(S[m,p] - GM[p])
SD[p]   = SN[m,p]
A[m,p]  = SN[m,p] / SD[p]
AV[f,p] = A[m,p] * V[f,m]
output AV
"
    )
}

/// Whether the output of `src` equals the output computed with the mask applied explicitly
/// (`{&}`), on random inputs.
fn equals_masked(src: &str, masked: &str) -> bool {
    let (a, b) = (parse(src), parse(masked));
    let spec = "E=4,F=3,M=6,P=6".parse().unwrap();
    let shape = Shape::resolve(&a, &spec).unwrap();
    let inputs: BTreeMap<_, _> = random_inputs(&a, &shape, 3);
    let out = |c: &Cascade| {
        evaluate::<f64>(c, &shape, &inputs)
            .unwrap()
            .output()
            .unwrap()
            .values
            .clone()
    };
    let (x, y) = (out(&a), out(&b));
    x.iter().zip(y.iter()).all(|(p, q)| (p - q).abs() < 1e-12)
}

#[test]
fn library_cascades_have_no_masking_warnings() {
    for (name, src) in library::FILES {
        let c = parse(src);
        assert_eq!(lint(&c), vec![], "{name}");
    }
}

#[test]
fn natural_spellings_under_a_causal_mask_warn_and_the_intersection_does_not() {
    let cases = [
        (
            "ALiBi bias",
            "QK[m,p] + B[m,p]",
            "QK[m,p] +{&} B[m,p]",
            " B[M,P]",
            "`+`",
        ),
        (
            "biased sigmoid",
            "sigmoid(QK[m,p] - C[p])",
            "sigmoid(QK[m,p] -{&} C[p])",
            " C[P]",
            "`-`",
        ),
        (
            "soft-capping",
            "tanh(QK[m,p] / 3.0) * 3.0",
            "tanh(QK[m,p] /{&} 3.0) * 3.0",
            "",
            "`/`",
        ),
    ];
    for (what, natural, fixed, inputs, op) in cases {
        let warned = causal_with(natural, inputs);
        let ok = causal_with(fixed, inputs);
        let warnings = lint(&parse(&warned));
        assert!(!warnings.is_empty(), "{what}: no warning");
        let w = &warnings[0];
        assert!(w.message.contains(op), "{what}: {}", w.message);
        assert!(
            w.message.contains("S[m,p] = "),
            "{what} names the Einsum: {}",
            w.message
        );
        assert!(w.hint.contains("{&}"), "{what}: {}", w.hint);
        assert_eq!(
            lint(&parse(&ok)),
            vec![],
            "{what}: the fixed spelling warns"
        );
        // The warning is real: the natural spelling computes something else.
        assert!(
            !equals_masked(&warned, &ok),
            "{what}: no difference to warn about"
        );
    }
}

#[test]
fn masking_by_minus_infinity_warns_only_where_a_function_revives_it() {
    // max(…, -inf) fills masked scores with -inf: exp sends them to 0, which is intended.
    let filled = "max(QK[m,p], -inf)";
    assert_eq!(lint(&parse(&causal_with(filled, ""))), vec![]);
    // tanh(-inf) = -1: soft-capping after -inf masking gives masked keys weight.
    let capped = causal_with("tanh(max(QK[m,p], -inf))", "");
    let warnings = lint(&parse(&capped));
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].message.contains("`tanh`"),
        "{}",
        warnings[0].message
    );
}

#[test]
fn points_revived_as_zero_warn_where_a_max_or_an_exp_first_uses_them() {
    // The library's window attention divides a masked numerator: masked points come back as
    // 0, which the weighted sum ignores: no warning (checked by the library test above).
    // Dividing the masked *score* is soft-capping's trap: exp(0 - max) gives weight.
    // The 0 first does harm in the max, and the warning says where it came from.
    let warned = causal_with("QK[m,p] / 2.0", "");
    let warnings = lint(&parse(&warned));
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    let m = &warnings[0].message;
    assert!(m.contains("`GM[p] = max(m) S[m,p]`"), "{m}");
    assert!(
        m.contains("`S[m,p] = QK[m,p] / 2` (`/` merges with ← {<-})"),
        "{m}"
    );
    assert!(!equals_masked(
        &warned,
        &causal_with("QK[m,p] /{&} 2.0", "")
    ));
}
