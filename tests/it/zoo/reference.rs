//! Direct implementations of zoo variants that do not go through the IR: plain loops over the
//! inputs, written from the variant's definition (a mask predicate, a score function, head
//! grouping, a recurrence). They check the interpreter's reading of each cascade, as
//! `ir::reference` does for the library.

use ndarray::{ArrayD, ArrayView2, ArrayViewD, Axis, IxDyn};

use super::{Case, Outcome, compare};

/// The interpreter's output against the direct implementation of the case, when there is one.
pub fn check(case: &Case) -> Outcome {
    let Some(want) = direct(case) else {
        return Outcome::Wrong(
            "every zoo cascade needs a direct implementation in tests/it/zoo/reference.rs".into(),
        );
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
        "shifted_diagonal_1pass" => plain(case, |m, p| m == p + 3),
        "skip_one_key_1pass" => plain(case, |m, p| m != 5 && m + 1 > p - 1),
        "skip_key_five_1pass" => plain(case, |m, _| m != 5),
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
        "linear_causal_rnn" | "linear_causal_chunked" => linear_causal(case),
        "causal_2pass_deferred" => plain(case, |m, p| m <= p),
        "window_2pass_localmax" => {
            let w = param(case, "W");
            plain(case, move |m, p| m <= p && p - m < w)
        }
        "split_k_combine" => plain(case, all),
        _ => {
            return heads(case)
                .or_else(|| other_scores(case))
                .or_else(|| recurrences(case));
        }
    })
}

/// Attention per head (and batch entry) over 3-D or 4-D inputs `[E, P, H(, B)]`.
fn heads(case: &Case) -> Option<ArrayD<f64>> {
    let n_h = |name: &str| case.inputs[name].shape()[2];
    let per_head = |q: &str, k: &str, v: &str, score: &dyn Fn(f64, usize, usize, usize) -> f64| {
        let (qa, ka, va) = (&case.inputs[q], &case.inputs[k], &case.inputs[v]);
        let h_count = n_h(q);
        let (n_f, n_p) = (va.shape()[0], qa.shape()[1]);
        let mut out = ArrayD::zeros(IxDyn(&[n_f, n_p, h_count]));
        for h in 0..h_count {
            let (qh, kh, vh) = (head_of(qa, h), head_of(ka, h), head_of(va, h));
            let o = attention(qh, kh, vh, |_, _| true, |s, m, p| score(s, m, p, h));
            for ((f, p), x) in o
                .view()
                .into_dimensionality::<ndarray::Ix2>()
                .unwrap()
                .indexed_iter()
            {
                out[[f, p, h]] = *x;
            }
        }
        out
    };
    Some(match case.name.as_str() {
        "mqa_3pass" => per_head("Q", "K", "V", &|s, _, _, _| s),
        "alibi_causal_3pass" => {
            let (sl, dist) = (&case.inputs["SL"], input2(case, "DIST"));
            per_head("Q", "K", "V", &|s, m, p, h| {
                if m <= p {
                    s - sl[[h]] * dist[[m, p]]
                } else {
                    f64::NEG_INFINITY
                }
            })
        }
        "mixture_of_heads" => {
            let o = per_head("Q", "K", "V", &|s, _, _, _| s);
            let w = input2(case, "W");
            let (n_f, n_p, n_hh) = (o.shape()[0], o.shape()[1], o.shape()[2]);
            let mut out = ArrayD::zeros(IxDyn(&[n_f, n_p]));
            for f in 0..n_f {
                for p in 0..n_p {
                    out[[f, p]] = (0..n_hh).map(|h| w[[h, p]] * o[[f, p, h]]).sum();
                }
            }
            out
        }
        "mla_absorbed_3pass" | "mla_latent_query_3pass" => mla(case),
        "multihead_batch_3pass" => {
            let (q, k, v) = (&case.inputs["Q"], &case.inputs["K"], &case.inputs["V"]);
            let (n_f, n_p, n_hh, n_b) = (v.shape()[0], q.shape()[1], q.shape()[2], q.shape()[3]);
            let mut out = ArrayD::zeros(IxDyn(&[n_f, n_p, n_hh, n_b]));
            for b in 0..n_b {
                for h in 0..n_hh {
                    let (qs, ks, vs) = (slice_hb(q, h, b), slice_hb(k, h, b), slice_hb(v, h, b));
                    let o = attention(two_d(qs), two_d(ks), two_d(vs), |_, _| true, |s, _, _| s);
                    for f in 0..n_f {
                        for p in 0..n_p {
                            out[[f, p, h, b]] = o[[f, p]];
                        }
                    }
                }
            }
            out
        }
        _ => return None,
    })
}

/// Head `h` of a `[_, _, H]` input, or the input itself when it has no head rank.
fn head_of(a: &ArrayD<f64>, h: usize) -> ArrayView2<'_, f64> {
    if a.ndim() == 3 {
        two_d(a.index_axis(Axis(2), h))
    } else {
        two_d(a.view())
    }
}

/// Head `h` of batch entry `b` of a `[_, _, H, B]` input.
fn slice_hb(a: &ArrayD<f64>, h: usize, b: usize) -> ArrayViewD<'_, f64> {
    a.index_axis(Axis(3), b).index_axis_move(Axis(2), h)
}

/// K and V up-projected from the latent cache, then attention per head.
fn mla(case: &Case) -> ArrayD<f64> {
    let (q, c) = (&case.inputs["Q"], input2(case, "C"));
    let (wk, wv) = (&case.inputs["WK"], &case.inputs["WV"]);
    let (n_e, n_p, n_h) = (q.shape()[0], q.shape()[1], q.shape()[2]);
    let (n_f, n_l, n_m) = (wv.shape()[0], c.nrows(), c.ncols());
    let mut out = ArrayD::zeros(IxDyn(&[n_f, n_p, n_h]));
    for h in 0..n_h {
        let k = ndarray::Array2::from_shape_fn((n_e, n_m), |(e, m)| {
            (0..n_l).map(|l| wk[[e, l, h]] * c[[l, m]]).sum()
        });
        let v = ndarray::Array2::from_shape_fn((n_f, n_m), |(f, m)| {
            (0..n_l).map(|l| wv[[f, l, h]] * c[[l, m]]).sum()
        });
        let qh = two_d(q.index_axis(Axis(2), h));
        let o = attention(qh, k.view(), v.view(), |_, _| true, |s, _, _| s);
        for f in 0..n_f {
            for p in 0..n_p {
                out[[f, p, h]] = o[[f, p]];
            }
        }
    }
    out
}

/// Attention-like forms with another score, mask or normaliser over 2-D inputs.
fn other_scores(case: &Case) -> Option<ArrayD<f64>> {
    let two_d_input = |n: &str| case.inputs.get(n).is_some_and(|a| a.ndim() == 2);
    if !two_d_input("Q") || !two_d_input("K") {
        return None;
    }
    let all = |_: i64, _: i64| true;
    let (q, k) = (input2(case, "Q"), input2(case, "K"));
    let dot = |m: usize, p: usize| -> f64 { (0..q.nrows()).map(|e| q[[e, p]] * k[[e, m]]).sum() };
    let (n_p, n_m) = (q.ncols(), k.ncols());
    // Σ_m w(m, p) v[f,m] over keys, optionally divided by Σ_m w(m, p).
    let weighted = |w: &dyn Fn(usize, usize) -> f64, normalise: bool| {
        let v = input2(case, "V");
        let mut out = ArrayD::zeros(IxDyn(&[v.nrows(), n_p]));
        for p in 0..n_p {
            let ws: Vec<f64> = (0..n_m).map(|m| w(m, p)).collect();
            let total: f64 = if normalise { ws.iter().sum() } else { 1.0 };
            for f in 0..v.nrows() {
                out[[f, p]] = (0..n_m).map(|m| ws[m] * v[[f, m]]).sum::<f64>() / total;
            }
        }
        out
    };
    let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
    let scale = 1.0 / (q.nrows() as f64).sqrt();
    Some(match case.name.as_str() {
        "temperature_3pass" => {
            let t = &case.inputs["T"];
            attention(q, k, input2(case, "V"), all, |s, _, p| s * t[[p]])
        }
        "qk_norm_3pass" => {
            let norm = |a: ArrayView2<f64>| {
                let mut n = a.to_owned();
                for mut col in n.columns_mut() {
                    let len = col.iter().map(|x| x * x).sum::<f64>().sqrt();
                    col.mapv_inplace(|x| x / len);
                }
                n
            };
            let (qn, kn) = (norm(q), norm(k));
            attention(qn.view(), kn.view(), input2(case, "V"), all, |s, _, _| {
                4.0 * s
            })
        }
        "tied_kv_3pass" => attention(q, k, k, all, |s, _, _| s),
        "sigmoid_bias" | "sigmoid_bias_causal" => {
            let b = &case.inputs["B"];
            let causal = case.name.ends_with("causal");
            weighted(
                &|m, p| {
                    if causal && m > p {
                        0.0
                    } else {
                        sigmoid(dot(m, p) * scale + b[[p]])
                    }
                },
                false,
            )
        }
        "softplus_attention" => weighted(&|m, p| (1.0 + dot(m, p).exp()).ln(), true),
        "relu_attention" => weighted(
            &|m, p| {
                if m > p {
                    0.0
                } else {
                    dot(m, p).max(0.0) * 0.125
                }
            },
            false,
        ),
        "linear_attention_normalised" | "linear_causal_masked" => {
            let causal = case.name.ends_with("masked");
            let phi = |m: usize, p: usize| -> f64 {
                if causal && m > p {
                    return 0.0;
                }
                (0..q.nrows())
                    .map(|e| elu1(q[[e, p]]) * elu1(k[[e, m]]))
                    .sum()
            };
            weighted(&phi, !causal)
        }
        "sink_logit_1pass" | "sink_logit_3pass" | "softmax1_3pass" => {
            // softmax₁ is a sink logit fixed at 0.
            let sink = |p: usize| case.inputs.get("SINK").map_or(0.0, |s| s[[p]]);
            let v = input2(case, "V");
            let mut out = ArrayD::zeros(IxDyn(&[v.nrows(), n_p]));
            for p in 0..n_p {
                let max = (0..n_m).map(|m| dot(m, p)).fold(sink(p), f64::max);
                let ws: Vec<f64> = (0..n_m).map(|m| (dot(m, p) - max).exp()).collect();
                let den = ws.iter().sum::<f64>() + (sink(p) - max).exp();
                for f in 0..v.nrows() {
                    out[[f, p]] = (0..n_m).map(|m| ws[m] * v[[f, m]]).sum::<f64>() / den;
                }
            }
            out
        }
        "block_sparse_mask" => {
            let bm = input2(case, "BM");
            let (m0, p0) = (param(case, "M0") as usize, param(case, "P0") as usize);
            attention(
                q,
                k,
                input2(case, "V"),
                |m, p| bm[[m as usize / m0, p as usize / p0]] != f64::NEG_INFINITY,
                |s, _, _| s,
            )
        }
        _ => return None,
    })
}

/// Recurrences and other non-attention forms, written as the sums they unroll to.
fn recurrences(case: &Case) -> Option<ArrayD<f64>> {
    Some(match case.name.as_str() {
        "causal_mean_scan" => {
            let v = input2(case, "V");
            let (n_f, n_m) = v.dim();
            let mut out = ArrayD::zeros(IxDyn(&[n_f, n_m]));
            for f in 0..n_f {
                for m in 0..n_m {
                    out[[f, m]] = (0..=m).map(|j| v[[f, j]]).sum::<f64>() / (m + 1) as f64;
                }
            }
            out
        }
        "full_reduction_beside_fold" => {
            let k = input2(case, "K");
            let mut out = ArrayD::zeros(IxDyn(&[k.nrows()]));
            for (e, row) in k.rows().into_iter().enumerate() {
                let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                out[[e]] = row.iter().map(|x| (x - max).exp()).sum();
            }
            out
        }
        "retention_decay_rnn" | "gated_linear_rnn" | "linear_causal_normalised" => decayed(case),
        "differential_attention" => {
            let weights = |qn: &str, kn: &str| {
                let (q, k) = (input2(case, qn), input2(case, kn));
                let ones = ndarray::Array2::from_elem((1, k.ncols()), 1.0);
                // softmax rows as attention of the identity-free values: weight of key m for p.
                let (n_m, n_p) = (k.ncols(), q.ncols());
                let mut w = ndarray::Array2::zeros((n_m, n_p));
                for m in 0..n_m {
                    let mut onehot = ones.clone() * 0.0;
                    onehot[[0, m]] = 1.0;
                    let o = attention(q, k, onehot.view(), |_, _| true, |s, _, _| s);
                    for p in 0..n_p {
                        w[[m, p]] = o[[0, p]];
                    }
                }
                w
            };
            let (w1, w2) = (weights("Q1", "K1"), weights("Q2", "K2"));
            let v = input2(case, "V");
            let a = &w1 - &(0.5 * &w2);
            v.dot(&a).into_dyn()
        }
        "capture_random" => {
            let (x, v, q) = (input2(case, "X"), input2(case, "V"), input2(case, "Q"));
            let (n_e, n_p) = q.dim();
            let (n_f, n_m) = v.dim();
            let mut out = ArrayD::zeros(IxDyn(&[n_e, n_f, n_p]));
            for e in 0..n_e {
                for p in 0..n_p {
                    let s4: f64 = (0..n_m).map(|m| q[[e, p]] * x[[m, p]]).sum();
                    for f in 0..n_f {
                        out[[e, f, p]] = (0..n_m)
                            .map(|m| q[[e, p]] / x[[m, p]] * (x[[m, p]] * v[[f, m]]) * s4)
                            .sum();
                    }
                }
            }
            out
        }
        _ => return None,
    })
}

/// out[f,m] = Σ_{j ≤ m} decay(j, m) (q_m · k_j) v[f,j] (divided by Σ_j decay (q_m · φk_j) for
/// the normalised form, with φ = elu+1 on both).
fn decayed(case: &Case) -> ArrayD<f64> {
    let (q, k, v) = (input2(case, "Q"), input2(case, "K"), input2(case, "V"));
    let (n_e, n_m) = q.dim();
    let n_f = v.nrows();
    let normalised = case.name == "linear_causal_normalised";
    let phi = |x: f64| if normalised { elu1(x) } else { x };
    let decay = |j: usize, m: usize| -> f64 {
        match case.name.as_str() {
            "retention_decay_rnn" => 0.9f64.powi((m - j) as i32),
            "gated_linear_rnn" => {
                let g = &case.inputs["G"];
                (j + 1..=m).map(|i| 1.0 / (1.0 + (-g[[i]]).exp())).product()
            }
            _ => 1.0,
        }
    };
    let mut out = ArrayD::zeros(IxDyn(&[n_f, n_m]));
    for m in 0..n_m {
        let w: Vec<f64> = (0..=m)
            .map(|j| {
                decay(j, m)
                    * (0..n_e)
                        .map(|e| phi(q[[e, m]]) * phi(k[[e, j]]))
                        .sum::<f64>()
            })
            .collect();
        let den: f64 = if normalised { w.iter().sum() } else { 1.0 };
        for f in 0..n_f {
            out[[f, m]] = (0..=m).map(|j| w[j] * v[[f, j]]).sum::<f64>() / den;
        }
    }
    out
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
