//! Direct references, written without the IR: the attention forms of the library computed
//! loop by loop in f64, to check the interpreter (and everything downstream) against.
//!
//! Layout as in the library: `Q[E,P]`, `K[E,M]`, `V[F,M]`, output `AV[F,P]`; `M` is the key
//! rank, `P` the query rank. Also seeded random inputs for any cascade.

use std::collections::BTreeMap;

use ndarray::{Array2, ArrayD, ArrayView1, ArrayView2, IxDyn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::ast::{Cascade, TensorKind};
use crate::shape::Shape;

/// Which keys each query sees, and what is added to the scores.
#[derive(Debug, Clone, Copy)]
pub struct AttentionMask<'a> {
    /// Key `m` is visible to query `p` only when `m <= p`.
    pub causal: bool,
    /// Key `m` is visible to query `p` only when `p - m < w` (combine with `causal`).
    pub window: Option<usize>,
    /// Added to score `[m, p]` after scaling; `-inf` hides the key.
    pub bias: Option<ArrayView2<'a, f64>>,
    /// Multiplies `Qᵀ K` before the bias (1 in the library's softmax cascades).
    pub scale: f64,
}

impl AttentionMask<'_> {
    /// Every key visible, no bias, no scaling.
    pub fn none() -> AttentionMask<'static> {
        AttentionMask {
            causal: false,
            window: None,
            bias: None,
            scale: 1.0,
        }
    }

    fn visible(&self, m: usize, p: usize) -> bool {
        let causal = !self.causal || m <= p;
        let window = self.window.is_none_or(|w| p < m || p - m < w);
        causal && window
    }
}

fn scores(q: ArrayView2<f64>, k: ArrayView2<f64>, p: usize, m: usize) -> f64 {
    q.column(p)
        .iter()
        .zip(k.column(m))
        .map(|(a, b)| a * b)
        .sum()
}

/// `softmax(scale·QᵀK + bias)` over the visible keys, times `V`: `AV[F,P]`.
///
/// A query with no visible key, or whose visible scores are all `-inf`, gets a zero row.
pub fn attention(
    q: ArrayView2<f64>,
    k: ArrayView2<f64>,
    v: ArrayView2<f64>,
    mask: &AttentionMask,
) -> Array2<f64> {
    let (n_m, n_p, n_f) = (k.ncols(), q.ncols(), v.nrows());
    let mut out = Array2::zeros((n_f, n_p));
    let mut row = vec![f64::NEG_INFINITY; n_m];
    for p in 0..n_p {
        for (m, s) in row.iter_mut().enumerate() {
            *s = if mask.visible(m, p) {
                let bias = mask.bias.map_or(0.0, |b| b[[m, p]]);
                mask.scale * scores(q, k, p, m) + bias
            } else {
                f64::NEG_INFINITY
            };
        }
        let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if max == f64::NEG_INFINITY {
            continue;
        }
        let weights: Vec<f64> = row.iter().map(|s| (s - max).exp()).collect();
        let total: f64 = weights.iter().sum();
        for f in 0..n_f {
            let num: f64 = weights.iter().zip(v.row(f)).map(|(w, x)| w * x).sum();
            out[[f, p]] = num / total;
        }
    }
    out
}

/// The pedagogical cascades' `Z = (Σ_k A_k B_k) · (Σ_k A_k)`.
pub fn pedagogical(a: ArrayView1<f64>, b: ArrayView1<f64>) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    dot * a.sum()
}

/// `elu(x) + 1`.
pub fn elu1(x: f64) -> f64 {
    if x > 0.0 { x + 1.0 } else { x.exp() }
}

/// Unnormalised linear attention: `AV[f,p] = Σ_m (Σ_e φ(Q[e,p]) φ(K[e,m])) V[f,m]`, φ = elu+1.
pub fn linear_attention(q: ArrayView2<f64>, k: ArrayView2<f64>, v: ArrayView2<f64>) -> Array2<f64> {
    let (fq, fk) = (q.mapv(elu1), k.mapv(elu1));
    let (n_m, n_p, n_f) = (k.ncols(), q.ncols(), v.nrows());
    let mut out = Array2::zeros((n_f, n_p));
    for p in 0..n_p {
        for m in 0..n_m {
            let s = scores(fq.view(), fk.view(), p, m);
            for f in 0..n_f {
                out[[f, p]] += s * v[[f, m]];
            }
        }
    }
    out
}

/// Sigmoid attention: `AV[f,p] = Σ_m σ(QK[m,p] / sqrt(E)) V[f,m]`.
pub fn sigmoid_attention(
    q: ArrayView2<f64>,
    k: ArrayView2<f64>,
    v: ArrayView2<f64>,
) -> Array2<f64> {
    let scale = 1.0 / (q.nrows() as f64).sqrt();
    let (n_m, n_p, n_f) = (k.ncols(), q.ncols(), v.nrows());
    let mut out = Array2::zeros((n_f, n_p));
    for p in 0..n_p {
        for m in 0..n_m {
            let s = 1.0 / (1.0 + (-scale * scores(q, k, p, m)).exp());
            for f in 0..n_f {
                out[[f, p]] += s * v[[f, m]];
            }
        }
    }
    out
}

/// Uniform values in `[-1, 1)` for every input of `cascade`, drawn in declaration order from
/// one ChaCha8 stream seeded with `seed`, so a (cascade inputs, shape, seed) triple always
/// gives the same tensors.
pub fn random_inputs(cascade: &Cascade, shape: &Shape, seed: u64) -> BTreeMap<String, ArrayD<f64>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut inputs = BTreeMap::new();
    for tensor in cascade
        .tensors
        .iter()
        .filter(|t| t.kind == TensorKind::Input)
    {
        let dims: Vec<usize> = tensor
            .ranks
            .iter()
            .map(|r| shape.size(*r) as usize)
            .collect();
        let array = ArrayD::from_shape_simple_fn(IxDyn(&dims), || rng.random_range(-1.0..1.0));
        inputs.insert(tensor.name.clone(), array);
    }
    inputs
}
