//! Direct references, written without the IR: the attention forms of the library computed
//! loop by loop in f64, to check the interpreter (and everything downstream) against.
//!
//! Layout as in the library: `Q[E,P]`, `K[E,M]`, `V[F,M]`, output `AV[F,P]`; `M` is the key
//! rank, `P` the query rank. Also seeded random inputs for any cascade, and [`known_form`],
//! which decides by structure alone (never by name) whether a reference applies.

use std::collections::BTreeMap;
use std::fmt;

use ndarray::{Array2, ArrayD, ArrayView1, ArrayView2, IxDyn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::ast::{Cascade, TensorKind};
use crate::shape::Shape;
use crate::{dsl, library};

pub mod structure;
pub mod variants;

pub use variants::Variant;

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

/// The attention forms computed directly by this module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Form {
    /// `softmax(QᵀK)V` over `Q[E,P] K[E,M] V[F,M]`, optionally causal, with a sliding window of
    /// `W` keys (the size of param `W`), or with an additive bias input `MASK[M,P]`.
    Softmax {
        causal: bool,
        window: bool,
        bias: bool,
    },
    /// `Z = (Σ A·B)(Σ A)` over `A[K] B[K]`.
    Pedagogical,
    /// Unnormalised linear attention with the elu+1 feature map.
    Linear,
    /// Sigmoid attention with scale `1/sqrt(E)`.
    Sigmoid,
    /// A model variant of `ir/cascades/variants/`, with its own reference.
    Variant(Variant),
}

impl Form {
    /// The form of a library cascade, by its name.
    pub fn of_library(name: &str) -> Option<Form> {
        let softmax = |causal, window, bias| {
            Some(Form::Softmax {
                causal,
                window,
                bias,
            })
        };
        match name {
            "attention_1pass"
            | "attention_2pass_deferred"
            | "attention_2pass_localmax"
            | "attention_3pass" => softmax(false, false, false),
            "attention_causal_1pass" => softmax(true, false, false),
            "attention_window_3pass" => softmax(true, true, false),
            "attention_masked_1pass" | "attention_masked_3pass" => softmax(false, false, true),
            "pedagogical_1" | "pedagogical_2" | "pedagogical_3" => Some(Form::Pedagogical),
            "linear_attention" => Some(Form::Linear),
            "sigmoid_attention" => Some(Form::Sigmoid),
            _ => None,
        }
    }

    /// The form of a model variant (`ir/cascades/variants/`), by its name.
    pub fn of_variant(name: &str) -> Option<Form> {
        Variant::of(name).map(Form::Variant)
    }
}

impl fmt::Display for Form {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Form::Softmax {
                causal,
                window,
                bias,
            } => {
                f.write_str("softmax(QᵀK)V")?;
                let mut extras = Vec::new();
                if *causal {
                    extras.push("causal mask");
                }
                if *window {
                    extras.push("sliding window of W keys");
                }
                if *bias {
                    extras.push("additive MASK");
                }
                if !extras.is_empty() {
                    write!(f, " with {}", extras.join(", "))?;
                }
                Ok(())
            }
            Form::Pedagogical => f.write_str("Z = (Σ A·B)(Σ A)"),
            Form::Linear => f.write_str("linear attention (elu+1 feature map, unnormalised)"),
            Form::Sigmoid => f.write_str("sigmoid attention (scale 1/sqrt(E))"),
            Form::Variant(v) => f.write_str(v.describe()),
        }
    }
}

/// A cascade matched to a library form by structure (see [`structure`]).
#[derive(Debug, Clone)]
pub struct Known {
    pub form: Form,
    /// The library cascade it is structurally the same as.
    pub library: &'static str,
    /// For each tensor of the matched cascade (by id), the library tensor that plays its part.
    pub library_names: Vec<String>,
    library_cascade: Cascade,
}

impl Known {
    /// The direct reference for the matched cascade, from its inputs by its own tensor names.
    /// `shape` is resolved for the matched cascade; its ranks are the library's, position by
    /// position.
    pub fn compute(
        &self,
        cascade: &Cascade,
        shape: &Shape,
        inputs: &BTreeMap<String, ArrayD<f64>>,
    ) -> Result<ArrayD<f64>, ReferenceError> {
        let renamed = inputs
            .iter()
            .filter_map(|(name, array)| {
                let id = cascade.tensor_by_name(name)?;
                let library_name = self.library_names.get(id.index())?;
                Some((library_name.clone(), array.clone()))
            })
            .collect();
        compute(self.form, &self.library_cascade, shape, &renamed)
    }
}

/// Recognises a cascade as a library form by structure alone: the same Einsums up to renaming
/// (see [`structure`]). Its name never counts, so an edited copy that keeps the name of a
/// library cascade gets no reference, and a renamed copy still gets one.
pub fn known_form(cascade: &Cascade) -> Option<Known> {
    let library = library::names().map(|n| (n, Form::of_library(n), library::source(n)));
    let variants =
        library::variant_names().map(|n| (n, Form::of_variant(n), library::variant_source(n)));
    library.chain(variants).find_map(|(name, form, source)| {
        let form = form?;
        let library_cascade = dsl::parse(source?, name).ok()?.cascade;
        let map = structure::same_structure(cascade, &library_cascade)?;
        let library_names = map
            .iter()
            .map(|t| library_cascade.tensor(*t).name.clone())
            .collect();
        Some(Known {
            form,
            library: name,
            library_names,
            library_cascade,
        })
    })
}

/// Why a direct reference could not be computed from the given tensors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("the {form} reference needs an input {tensor} with {dims} dimensions")]
    Input {
        form: String,
        tensor: String,
        dims: usize,
    },
    #[error("the {form} reference needs the size of param W")]
    Window { form: String },
}

/// The direct reference output for `form`, from the inputs by name (`Q`, `K`, `V`, `MASK`, or
/// `A`, `B` for the pedagogical form). Returns `AV[F,P]` or the scalar `Z`.
pub fn compute(
    form: Form,
    cascade: &Cascade,
    shape: &Shape,
    inputs: &BTreeMap<String, ArrayD<f64>>,
) -> Result<ArrayD<f64>, ReferenceError> {
    let input2 = |name: &str| {
        inputs
            .get(name)
            .and_then(|a| a.view().into_dimensionality::<ndarray::Ix2>().ok())
            .ok_or_else(|| ReferenceError::Input {
                form: form.to_string(),
                tensor: name.to_string(),
                dims: 2,
            })
    };
    let input1 = |name: &str| {
        inputs
            .get(name)
            .and_then(|a| a.view().into_dimensionality::<ndarray::Ix1>().ok())
            .ok_or_else(|| ReferenceError::Input {
                form: form.to_string(),
                tensor: name.to_string(),
                dims: 1,
            })
    };
    Ok(match form {
        Form::Softmax {
            causal,
            window,
            bias,
        } => {
            let window = if window {
                let w = cascade
                    .rank_by_name("W")
                    .ok_or_else(|| ReferenceError::Window {
                        form: form.to_string(),
                    })?;
                Some(shape.size(w) as usize)
            } else {
                None
            };
            let bias = if bias { Some(input2("MASK")?) } else { None };
            let mask = AttentionMask {
                causal,
                window,
                bias,
                scale: 1.0,
            };
            attention(input2("Q")?, input2("K")?, input2("V")?, &mask).into_dyn()
        }
        Form::Pedagogical => ndarray::arr0(pedagogical(input1("A")?, input1("B")?)).into_dyn(),
        Form::Linear => linear_attention(input2("Q")?, input2("K")?, input2("V")?).into_dyn(),
        Form::Sigmoid => sigmoid_attention(input2("Q")?, input2("K")?, input2("V")?).into_dyn(),
        Form::Variant(v) => {
            let param = |name: &str| cascade.rank_by_name(name).map(|r| shape.size(r) as usize);
            variants::compute(
                v,
                &|name: &str| inputs.get(name),
                &variants::Params { param: &param },
            )?
        }
    })
}

#[cfg(test)]
mod tests {
    use ndarray::{Array1, Array2, array};

    use super::*;

    /// V[f, m] = 10·f + m, so every mean over keys is easy to state.
    fn values(n_f: usize, n_m: usize) -> Array2<f64> {
        Array2::from_shape_fn((n_f, n_m), |(f, m)| (10 * f + m) as f64)
    }

    #[test]
    fn equal_scores_average_the_visible_values() {
        let (q, k, v) = (Array2::zeros((2, 3)), Array2::zeros((2, 4)), values(2, 4));
        let all = attention(q.view(), k.view(), v.view(), &AttentionMask::none());
        // Mean of m over 0..4 is 1.5.
        assert_eq!(all.column(0).to_vec(), [1.5, 11.5]);
        let causal = AttentionMask {
            causal: true,
            ..AttentionMask::none()
        };
        let out = attention(q.view(), k.view(), v.view(), &causal);
        // Query p sees keys 0..=p: means 0, 0.5, 1.
        assert_eq!(out.row(0).to_vec(), [0.0, 0.5, 1.0]);
    }

    #[test]
    fn a_window_of_one_picks_the_diagonal_and_empty_rows_are_zero() {
        let (q, k, v) = (Array2::zeros((1, 5)), Array2::zeros((1, 3)), values(1, 3));
        let mask = AttentionMask {
            causal: true,
            window: Some(1),
            ..AttentionMask::none()
        };
        let out = attention(q.view(), k.view(), v.view(), &mask);
        assert_eq!(out.row(0).to_vec(), [0.0, 1.0, 2.0, 0.0, 0.0]);
    }

    #[test]
    fn a_fully_masked_query_gets_zeros() {
        let (q, k, v) = (Array2::ones((1, 2)), Array2::ones((1, 3)), values(1, 3));
        let mut bias = Array2::zeros((3, 2));
        bias.column_mut(1).fill(f64::NEG_INFINITY);
        bias[[0, 0]] = f64::NEG_INFINITY;
        let mask = AttentionMask {
            bias: Some(bias.view()),
            ..AttentionMask::none()
        };
        let out = attention(q.view(), k.view(), v.view(), &mask);
        assert_eq!(out.column(0).to_vec(), [1.5]);
        assert_eq!(out.column(1).to_vec(), [0.0]);
    }

    #[test]
    fn pedagogical_linear_and_sigmoid_on_hand_checked_inputs() {
        let (a, b): (Array1<f64>, Array1<f64>) = (array![1.0, 2.0], array![3.0, 4.0]);
        assert_eq!(pedagogical(a.view(), b.view()), (3.0 + 8.0) * 3.0);
        let (q, k, v) = (Array2::zeros((2, 1)), Array2::zeros((2, 3)), values(1, 3));
        // φ(0) = 1, so every score is E = 2 and AV = 2·(0 + 1 + 2).
        assert_eq!(linear_attention(q.view(), k.view(), v.view())[[0, 0]], 6.0);
        // σ(0) = 1/2.
        assert_eq!(sigmoid_attention(q.view(), k.view(), v.view())[[0, 0]], 1.5);
    }

    fn parse(source: &str) -> Cascade {
        dsl::parse(source, "test")
            .expect("test cascades parse")
            .cascade
    }

    #[test]
    fn known_form_goes_by_structure_not_by_name() {
        let source = library::source("attention_3pass").expect("library");
        let edited = source.replace(
            "QK[m,p] = Q[e,p] * K[e,m]",
            "QK[m,p] = Q[e,p] * K[e,m] * 1/sqrt(E)",
        );
        assert!(edited.contains("cascade attention_3pass"));
        assert!(known_form(&parse(&edited)).is_none());
        let known = known_form(&parse(source)).expect("the library file itself");
        assert_eq!(known.library, "attention_3pass");
        assert!(
            known_form(&parse(
                "cascade attention_3pass\nranks K\ninput A[K]\nS = A[k]\noutput S\n"
            ))
            .is_none()
        );
    }

    #[test]
    fn a_renamed_copy_gets_the_reference_of_its_library_form() {
        let source = library::source("attention_masked_3pass").expect("library");
        let renamed = source
            .replace("cascade attention_masked_3pass", "cascade mine")
            .replace("Q[", "X[")
            .replace("MASK[", "BIAS[")
            .replace("AV", "OUT");
        let c = parse(&renamed);
        let known = known_form(&c).expect("alpha-equivalent");
        assert_eq!(known.library, "attention_masked_3pass");
        let spec = "E=3,F=2,M=5,P=4".parse().expect("spec");
        let shape = Shape::resolve(&c, &spec).expect("shape");
        let inputs = random_inputs(&c, &shape, 3);
        assert!(inputs.contains_key("X") && inputs.contains_key("BIAS"));
        let got = known.compute(&c, &shape, &inputs).expect("reference");
        let lib = parse(source);
        let by_library_names = inputs
            .iter()
            .map(|(n, a)| {
                let n = match n.as_str() {
                    "X" => "Q",
                    "BIAS" => "MASK",
                    other => other,
                };
                (n.to_string(), a.clone())
            })
            .collect();
        let want = compute(known.form, &lib, &shape, &by_library_names).expect("reference");
        assert_eq!(got, want);
    }
}
