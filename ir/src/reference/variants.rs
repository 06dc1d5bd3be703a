//! Direct references for the model variants (`ir/cascades/variants/`), written from each
//! variant's definition (a mask predicate, a score function, head grouping, a recurrence) with
//! plain loops over the inputs, never from its cascade.
//!
//! Heads: a tensor with a head dimension has it last (`Q[E,P,H]`, `K[E,M,G]`); query head `h`
//! of `H` reads key/value head `h / (H / G)` (grouped-query), or the only one (multi-query).
//! A causal mask at the end of a KV cache lets query `p` of `P` see key `m` of `M` when
//! `m <= p + M - P`. A query that sees no key gets a zero row.

use ndarray::{Array3, ArrayD, ArrayView2, ArrayViewD, Axis, Ix2};

use super::{ReferenceError, elu1};

/// The model variants, each with its own direct reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    CausalKv,
    WindowKv,
    SinksWindowKv,
    /// Grouped-query heads, optionally with a window and Gemma 2's soft-cap of 50.
    Gqa {
        window: bool,
        softcap: bool,
    },
    Mqa,
    MlaLatent,
    Alibi,
    Relu,
    Softplus,
    Sigmoid,
    LinearCausal,
    BlockSparse,
}

impl Variant {
    /// The variant a `cascades/variants` file holds, by its name.
    pub fn of(name: &str) -> Option<Variant> {
        Some(match name {
            "causal_kv_1pass" => Variant::CausalKv,
            "window_kv_1pass" => Variant::WindowKv,
            "sinks_window_kv_1pass" => Variant::SinksWindowKv,
            "gqa_causal_kv_1pass" => Variant::Gqa {
                window: false,
                softcap: false,
            },
            "gqa_window_kv_1pass" => Variant::Gqa {
                window: true,
                softcap: false,
            },
            "gqa_softcap_causal_kv_1pass" => Variant::Gqa {
                window: false,
                softcap: true,
            },
            "gqa_softcap_window_kv_1pass" => Variant::Gqa {
                window: true,
                softcap: true,
            },
            "mqa_causal_kv_1pass" => Variant::Mqa,
            "mla_latent_causal_kv_1pass" => Variant::MlaLatent,
            "alibi_causal_kv_1pass" => Variant::Alibi,
            "relu_causal_kv" => Variant::Relu,
            "softplus_causal_kv" => Variant::Softplus,
            "sigmoid_causal_kv" => Variant::Sigmoid,
            "linear_causal_state" => Variant::LinearCausal,
            "block_sparse_2pass" => Variant::BlockSparse,
            _ => return None,
        })
    }

    pub fn describe(self) -> &'static str {
        match self {
            Variant::CausalKv => "softmax(QᵀK)V, causal at the end of a KV cache",
            Variant::WindowKv => "softmax(QᵀK)V, causal window of W keys at the end of a KV cache",
            Variant::SinksWindowKv => "softmax(QᵀK)V, S sinks and a window of W keys",
            Variant::Gqa {
                window: false,
                softcap: false,
            } => "grouped-query softmax, causal",
            Variant::Gqa {
                window: true,
                softcap: false,
            } => "grouped-query softmax, window of W",
            Variant::Gqa {
                window: false,
                softcap: true,
            } => "grouped-query softmax of 50·tanh(s/50), causal",
            Variant::Gqa {
                window: true,
                softcap: true,
            } => "grouped-query softmax of 50·tanh(s/50), window of W",
            Variant::Mqa => "multi-query softmax, causal",
            Variant::MlaLatent => "latent attention over a shared cache C and rope keys KR, causal",
            Variant::Alibi => {
                "softmax with ALiBi bias -SL[h]·(query position - key position), causal"
            }
            Variant::Relu => "Σ relu(qk/√E)/M · V, causal",
            Variant::Softplus => "Σ softplus(qk/√E) V / Σ softplus(qk/√E), causal",
            Variant::Sigmoid => "Σ σ(qk/√E) V, causal",
            Variant::LinearCausal => "causal linear attention with its normaliser (elu+1)",
            Variant::BlockSparse => "softmax(QᵀK + BM per block)V",
        }
    }
}

/// A tensor as `[.., head]` with a head dimension of 1 added when it has none.
fn headed<'a>(
    a: &'a ArrayD<f64>,
    name: &str,
    dims: usize,
) -> Result<ArrayViewD<'a, f64>, ReferenceError> {
    match a.ndim() {
        d if d == dims => Ok(a.view().insert_axis(Axis(dims))),
        d if d == dims + 1 => Ok(a.view()),
        _ => Err(ReferenceError::Input {
            form: "model variant".into(),
            tensor: name.into(),
            dims,
        }),
    }
}

/// `visible(m, p)`: whether query `p` sees key `m`.
type Visible<'a> = &'a dyn Fn(usize, usize) -> bool;
/// `score(dot, m, p, h)`: the score of a visible key from its dot product.
type Score<'a> = &'a dyn Fn(f64, usize, usize, usize) -> f64;

/// What a softmax variant needs: which keys a query sees and each score.
struct Scores<'a> {
    visible: Visible<'a>,
    score: Score<'a>,
}

/// `softmax` over the visible keys of each query and head, times V: `AV[F,P,H]`.
fn softmax_heads(
    q: &ArrayViewD<f64>,
    k: &ArrayViewD<f64>,
    v: &ArrayViewD<f64>,
    s: &Scores<'_>,
) -> Array3<f64> {
    let (n_e, n_p, n_h) = (q.shape()[0], q.shape()[1], q.shape()[2]);
    let (n_m, n_g) = (k.shape()[1], k.shape()[2]);
    let n_f = v.shape()[0];
    let per_group = (n_h / n_g.max(1)).max(1);
    let mut out = Array3::zeros((n_f, n_p, n_h));
    for h in 0..n_h {
        let g = (h / per_group).min(n_g - 1);
        for p in 0..n_p {
            let row: Vec<f64> = (0..n_m)
                .map(|m| {
                    if !(s.visible)(m, p) {
                        return f64::NEG_INFINITY;
                    }
                    let dot: f64 = (0..n_e).map(|e| q[[e, p, h]] * k[[e, m, g]]).sum();
                    (s.score)(dot, m, p, h)
                })
                .collect();
            let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if max == f64::NEG_INFINITY {
                continue;
            }
            let w: Vec<f64> = row.iter().map(|x| (x - max).exp()).collect();
            let total: f64 = w.iter().sum();
            for f in 0..n_f {
                let num: f64 = (0..n_m).map(|m| w[m] * v[[f, m, g]]).sum();
                out[[f, p, h]] = num / total;
            }
        }
    }
    out
}

/// The output in the cascade's layout: `[F,P]` when the queries have no head dimension.
fn unheaded(out: Array3<f64>, headed: bool) -> ArrayD<f64> {
    if headed {
        out.into_dyn()
    } else {
        out.index_axis_move(Axis(2), 0).into_dyn()
    }
}

/// Sizes the references need that the inputs do not show: params and split inner ranks.
#[allow(missing_debug_implementations)] // It holds a closure.
pub struct Params<'a> {
    pub param: &'a dyn Fn(&str) -> Option<usize>,
}

/// The reference output of `variant` from its inputs by name.
pub fn compute<'a>(
    variant: Variant,
    input: &dyn Fn(&str) -> Option<&'a ArrayD<f64>>,
    params: &Params<'_>,
) -> Result<ArrayD<f64>, ReferenceError> {
    let need = |name: &str, dims: usize| {
        input(name).ok_or_else(|| ReferenceError::Input {
            form: variant.describe().into(),
            tensor: name.into(),
            dims,
        })
    };
    let param = |name: &str| {
        (params.param)(name).ok_or_else(|| ReferenceError::Window {
            form: variant.describe().into(),
        })
    };
    let (qn, kn, vn) = match variant {
        Variant::MlaLatent => ("QL", "C", "C"),
        _ => ("Q", "K", "V"),
    };
    let q_raw = need(qn, 2)?;
    let q = headed(q_raw, qn, 2)?;
    let heads = q_raw.ndim() == 3;
    let n_p = q.shape()[1];
    let k = headed(need(kn, 2)?, kn, 2)?;
    let n_m = k.shape()[1];
    let shift = n_m as i64 - n_p as i64;
    let causal = move |m: usize, p: usize| m as i64 <= p as i64 + shift;
    let plain = |m: usize, p: usize| causal(m, p);
    let none = |dot: f64, _: usize, _: usize, _: usize| dot;
    Ok(match variant {
        Variant::CausalKv
        | Variant::Mqa
        | Variant::Gqa {
            window: false,
            softcap: false,
        } => {
            let v = headed(need(vn, 2)?, vn, 2)?;
            let s = Scores {
                visible: &plain,
                score: &none,
            };
            unheaded(softmax_heads(&q, &k, &v, &s), heads)
        }
        Variant::WindowKv | Variant::Gqa { .. } => {
            let windowed = !matches!(variant, Variant::Gqa { window: false, .. });
            let w = if windowed {
                param("W")? as i64
            } else {
                i64::MAX
            };
            let window =
                move |m: usize, p: usize| causal(m, p) && p as i64 + shift - (m as i64) < w;
            let cap = |dot: f64, _: usize, _: usize, _: usize| 50.0 * (dot * 0.02).tanh();
            let v = headed(need(vn, 2)?, vn, 2)?;
            let (visible, score): (Visible<'_>, Score<'_>) = match variant {
                Variant::Gqa {
                    window: true,
                    softcap: true,
                } => (&window, &cap),
                Variant::Gqa {
                    window: false,
                    softcap: true,
                } => (&plain, &cap),
                _ => (&window, &none),
            };
            let s = Scores { visible, score };
            unheaded(softmax_heads(&q, &k, &v, &s), heads)
        }
        Variant::SinksWindowKv => {
            let (sinks, w) = (param("S")? as i64, param("W")? as i64);
            let visible = move |m: usize, p: usize| {
                causal(m, p) && ((m as i64) < sinks || p as i64 + shift - (m as i64) < w)
            };
            let v = headed(need(vn, 2)?, vn, 2)?;
            let s = Scores {
                visible: &visible,
                score: &none,
            };
            unheaded(softmax_heads(&q, &k, &v, &s), heads)
        }
        Variant::MlaLatent => {
            // Scores: latent part plus rope part, both shared by every head.
            let qr = headed(need("QR", 2)?, "QR", 2)?;
            let kr = need("KR", 2)?
                .view()
                .into_dimensionality::<Ix2>()
                .map_err(|_| ReferenceError::Input {
                    form: variant.describe().into(),
                    tensor: "KR".into(),
                    dims: 2,
                })?;
            let n_r = kr.nrows();
            let rope = |_dot: f64, m: usize, p: usize, h: usize| -> f64 {
                (0..n_r).map(|r| qr[[r, p, h]] * kr[[r, m]]).sum::<f64>()
            };
            let score = |dot: f64, m: usize, p: usize, h: usize| dot + rope(dot, m, p, h);
            let s = Scores {
                visible: &plain,
                score: &score,
            };
            unheaded(softmax_heads(&q, &k, &k, &s), heads)
        }
        Variant::Alibi => {
            let slopes = need("SL", 1)?;
            let pos = need("POS", 1)?;
            let score = |dot: f64, m: usize, p: usize, h: usize| {
                // The full ALiBi bias: -slope · (query position - key position).
                dot - slopes[[h]] * ((p as i64 + shift) as f64 - pos[[m]])
            };
            let v = headed(need(vn, 2)?, vn, 2)?;
            let s = Scores {
                visible: &plain,
                score: &score,
            };
            unheaded(softmax_heads(&q, &k, &v, &s), heads)
        }
        Variant::Relu | Variant::Softplus | Variant::Sigmoid => {
            let v = need(vn, 2)?
                .view()
                .into_dimensionality::<Ix2>()
                .map_err(|_| ReferenceError::Input {
                    form: variant.describe().into(),
                    tensor: vn.into(),
                    dims: 2,
                })?;
            let q2 = q
                .index_axis(Axis(2), 0)
                .into_dimensionality::<Ix2>()
                .expect("2-D");
            let k2 = k
                .index_axis(Axis(2), 0)
                .into_dimensionality::<Ix2>()
                .expect("2-D");
            kernel(variant, q2, k2, v, &plain).into_dyn()
        }
        Variant::LinearCausal => {
            let v = need(vn, 2)?;
            linear_causal(
                q.index_axis(Axis(2), 0).into_dimensionality().expect("2-D"),
                k.index_axis(Axis(2), 0).into_dimensionality().expect("2-D"),
                v.view()
                    .into_dimensionality()
                    .map_err(|_| ReferenceError::Input {
                        form: variant.describe().into(),
                        tensor: vn.into(),
                        dims: 2,
                    })?,
            )
        }
        Variant::BlockSparse => {
            let bm = need("BM", 2)?;
            let (m0, p0) = (param("M0")?, param("P0")?);
            let score = |dot: f64, m: usize, p: usize, _: usize| dot + bm[[m / m0, p / p0]];
            let all = |_: usize, _: usize| true;
            let v = headed(need(vn, 2)?, vn, 2)?;
            let s = Scores {
                visible: &all,
                score: &score,
            };
            unheaded(softmax_heads(&q, &k, &v, &s), heads)
        }
    })
}

/// The softmax-free kernels over the visible keys: ReLU scaled by `1/M`, softplus normalised
/// by its row sum, sigmoid unnormalised; scores scaled by `1/sqrt(E)`.
fn kernel(
    variant: Variant,
    q: ndarray::ArrayView2<f64>,
    k: ndarray::ArrayView2<f64>,
    v: ArrayView2<f64>,
    visible: Visible<'_>,
) -> ndarray::Array2<f64> {
    let (n_e, n_p) = q.dim();
    let (n_f, n_m) = v.dim();
    let scale = 1.0 / (n_e as f64).sqrt();
    let mut out = ndarray::Array2::zeros((n_f, n_p));
    for p in 0..n_p {
        let mut total = 0.0;
        let mut any = false;
        let mut num = vec![0.0; n_f];
        for m in (0..n_m).filter(|&m| visible(m, p)) {
            let dot: f64 = (0..n_e).map(|e| q[[e, p]] * k[[e, m]]).sum::<f64>() * scale;
            let w = match variant {
                Variant::Relu => dot.max(0.0) / n_m as f64,
                Variant::Softplus => dot.max(0.0) + (-dot.abs()).exp().ln_1p(),
                _ => 1.0 / (1.0 + (-dot).exp()),
            };
            any = true;
            total += w;
            for f in 0..n_f {
                num[f] += w * v[[f, m]];
            }
        }
        for f in 0..n_f {
            out[[f, p]] = match variant {
                Variant::Softplus if any && total != 0.0 => num[f] / total,
                Variant::Softplus => 0.0,
                _ => num[f],
            };
        }
    }
    out
}

/// Causal linear attention: `OUT[f,m] = Σ_{j≤m} (φq_m·φk_j) V[f,j] / Σ_{j≤m} φq_m·φk_j`.
fn linear_causal(q: ArrayView2<f64>, k: ArrayView2<f64>, v: ArrayView2<f64>) -> ArrayD<f64> {
    let (fq, fk) = (q.mapv(elu1), k.mapv(elu1));
    let (n_e, n_m) = fq.dim();
    let n_f = v.nrows();
    let mut out = ndarray::Array2::zeros((n_f, n_m));
    for m in 0..n_m {
        let weights: Vec<f64> = (0..=m)
            .map(|j| (0..n_e).map(|e| fq[[e, m]] * fk[[e, j]]).sum())
            .collect();
        let den: f64 = weights.iter().sum();
        for f in 0..n_f {
            let num: f64 = weights.iter().enumerate().map(|(j, w)| w * v[[f, j]]).sum();
            out[[f, m]] = num / den;
        }
    }
    out.into_dyn()
}
