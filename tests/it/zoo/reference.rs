//! Direct implementations of zoo variants that do not go through the IR: plain loops over the
//! inputs, written from the variant's definition (a mask predicate, a score function, head
//! grouping, a recurrence). They check the interpreter's reading of each cascade, as
//! `ir::reference` does for the library.

use ndarray::{ArrayD, ArrayView2, ArrayViewD, Axis, IxDyn};

use super::{Case, Outcome, compare};

/// The interpreter's output against the direct implementation of the case, when there is one.
pub fn check(case: &Case) -> Outcome {
    let Some(want) = direct(case) else {
        return Outcome::Refused("no direct implementation in tests/it/zoo/reference.rs".into());
    };
    let got: Vec<f64> = case.expected[0].iter().copied().collect();
    match compare(&got, &want, 1e-9) {
        Ok(_) => Outcome::Agrees("direct".into()),
        Err(e) => Outcome::Wrong(format!("interpreter vs direct implementation: {e}")),
    }
}

fn size(case: &Case, rank: &str) -> usize {
    let id = case.cascade.rank_by_name(rank).expect("rank");
    case.shape.size(id) as usize
}

fn param(case: &Case, name: &str) -> i64 {
    case.spec.sizes[name]
}

fn input2<'a>(case: &'a Case, name: &str) -> ArrayView2<'a, f64> {
    case.inputs[name]
        .view()
        .into_dimensionality()
        .expect("2-D input")
}

/// softmax over visible keys of `score(q·k, m, p)`, times V: `out[f,p]`. A query with no
/// visible key gets a zero row.
fn attention(
    q: ArrayView2<f64>,
    k: ArrayView2<f64>,
    v: ArrayView2<f64>,
    visible: impl Fn(i64, i64) -> bool,
    score: impl Fn(f64, usize, usize) -> f64,
) -> ArrayD<f64> {
    let (n_e, n_p) = q.dim();
    let (n_f, n_m) = v.dim();
    let mut out = ArrayD::zeros(IxDyn(&[n_f, n_p]));
    for p in 0..n_p {
        let scores: Vec<Option<f64>> = (0..n_m)
            .map(|m| {
                visible(m as i64, p as i64).then(|| {
                    let dot: f64 = (0..n_e).map(|e| q[[e, p]] * k[[e, m]]).sum();
                    score(dot, m, p)
                })
            })
            .collect();
        let max = scores
            .iter()
            .flatten()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        if max == f64::NEG_INFINITY {
            continue;
        }
        let weights: Vec<f64> = scores
            .iter()
            .map(|s| s.map_or(0.0, |s| (s - max).exp()))
            .collect();
        let total: f64 = weights.iter().sum();
        for f in 0..n_f {
            out[[f, p]] = (0..n_m).map(|m| weights[m] * v[[f, m]]).sum::<f64>() / total;
        }
    }
    out
}

fn plain(case: &Case, visible: impl Fn(i64, i64) -> bool) -> ArrayD<f64> {
    let (q, k, v) = (input2(case, "Q"), input2(case, "K"), input2(case, "V"));
    attention(q, k, v, visible, |s, _, _| s)
}

fn elu1(x: f64) -> f64 {
    if x > 0.0 { x + 1.0 } else { x.exp() }
}

fn direct(case: &Case) -> Option<ArrayD<f64>> {
    let all = |_: i64, _: i64| true;
    Some(match case.name.as_str() {
        "causal_offset_1pass" | "causal_offset_3pass" | "fully_masked_rows_3pass" => {
            let shift = size(case, "M") as i64 - size(case, "P") as i64;
            plain(case, move |m, p| m <= p + shift)
        }
        "window_1pass" => {
            let w = param(case, "W");
            plain(case, move |m, p| m <= p && p - m < w)
        }
        "sinks_window_3pass" => {
            let (s, w) = (param(case, "S"), param(case, "W"));
            plain(case, move |m, p| m <= p && (m < s || p - m < w))
        }
        "prefix_lm_3pass" => {
            let pfx = param(case, "PFX");
            plain(case, move |m, p| m < pfx || m <= p)
        }
        "no_self_1pass" => plain(case, |m, p| m != p),
        "diagonal_only_1pass" => plain(case, |m, p| m == p),
        "skip_one_key_1pass" => plain(case, |m, p| m != 5 && m + 1 > p - 1),
        "decode_1pass"
        | "decode_3pass"
        | "ragged_1pass"
        | "ragged_3pass"
        | "cross_attention_3pass" => plain(case, all),
        "epilogue_after_loop" => plain(case, all).mapv(|x| 2.0 * x),
        "output_filter_1pass" => {
            let mut out = plain(case, all);
            for ((_, p), x) in out
                .view_mut()
                .into_dimensionality::<ndarray::Ix2>()
                .unwrap()
                .indexed_iter_mut()
            {
                if p >= 3 {
                    *x = 0.0;
                }
            }
            out
        }
        "scaled_1pass" | "scaled_3pass" => {
            let scale = 1.0 / (size(case, "E") as f64).sqrt();
            let (q, k, v) = (input2(case, "Q"), input2(case, "K"), input2(case, "V"));
            attention(q, k, v, all, |s, _, _| s * scale)
        }
        "softcap_1pass" => {
            let (q, k, v) = (input2(case, "Q"), input2(case, "K"), input2(case, "V"));
            attention(q, k, v, all, |s, _, _| 4.0 * (s / 4.0).tanh())
        }
        "softcap_causal_3pass" => {
            let (q, k, v) = (input2(case, "Q"), input2(case, "K"), input2(case, "V"));
            attention(q, k, v, |m, p| m <= p, |s, _, _| 5.0 * (s / 5.0).tanh())
        }
        "data_mask_1pass" => {
            let mask = input2(case, "MASK");
            let (q, k, v) = (input2(case, "Q"), input2(case, "K"), input2(case, "V"));
            attention(
                q,
                k,
                v,
                |m, p| mask[[m as usize, p as usize]] != f64::NEG_INFINITY,
                |s, m, p| s + mask[[m, p]],
            )
        }
        "gqa_3pass" | "gqa_1pass" => gqa(case),
        "linear_causal_rnn" => linear_causal(case),
        _ => return None,
    })
}

/// Query head h reads key/value group h / R; the output is `[F, P, H]` (or `[F, P, G, R]`
/// flattened the same way, h = g·R + r).
fn gqa(case: &Case) -> ArrayD<f64> {
    let (q, k, v) = (&case.inputs["Q"], &case.inputs["K"], &case.inputs["V"]);
    let (n_e, n_p, n_h) = (q.shape()[0], q.shape()[1], q.shape()[2]);
    let (n_f, n_m, n_g) = (v.shape()[0], v.shape()[1], v.shape()[2]);
    let r = n_h / n_g;
    let mut out = ArrayD::zeros(IxDyn(&[n_f, n_p, n_h]));
    for h in 0..n_h {
        let g = h / r;
        let qh = q.index_axis(Axis(2), h);
        let kg = k.index_axis(Axis(2), g);
        let vg = v.index_axis(Axis(2), g);
        let (qh, kg, vg) = (two_d(qh), two_d(kg), two_d(vg));
        let o = attention(qh, kg, vg, |_, _| true, |s, _, _| s);
        for f in 0..n_f {
            for p in 0..n_p {
                out[[f, p, h]] = o[[f, p]];
            }
        }
    }
    let _ = n_e;
    let _ = n_m;
    out
}

fn two_d(a: ArrayViewD<'_, f64>) -> ArrayView2<'_, f64> {
    a.into_dimensionality().expect("2-D slice")
}

/// out[f,m] = Σ_{m' ≤ m} (φ(q_m) · φ(k_m')) v[f,m'].
fn linear_causal(case: &Case) -> ArrayD<f64> {
    let (q, k, v) = (input2(case, "Q"), input2(case, "K"), input2(case, "V"));
    let (n_e, n_m) = q.dim();
    let n_f = v.nrows();
    let mut out = ArrayD::zeros(IxDyn(&[n_f, n_m]));
    for m in 0..n_m {
        for j in 0..=m {
            let w: f64 = (0..n_e).map(|e| elu1(q[[e, m]]) * elu1(k[[e, j]])).sum();
            for f in 0..n_f {
                out[[f, m]] += w * v[[f, j]];
            }
        }
    }
    out
}
