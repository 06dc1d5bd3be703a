//! The reference interpreter: evaluates a cascade on dense ndarray tensors with EDGE semantics.
//!
//! Every tensor is stored as a flat row-major value buffer plus a presence mask; absent points
//! hold 0, the fill value. Each Einsum is compiled once into a kernel: index expressions become
//! affine counters over the loop variables (strides precomputed), the right-hand side becomes a
//! flat list of nodes evaluated per point, and the loop order puts the variable with the smallest
//! strides innermost. Nothing is allocated per point.
//!
//! Semantic choices the doc of [`crate::ast`] leaves open, fixed here:
//! * `∪` with one operand absent substitutes the op's identity for it: 0 for `+`, `-` and
//!   sub-then-exp, 1 for `×` and `÷`, the present operand itself for `max`/`min`
//!   (so `∅ - b = -b`, `∅ / b = 1/b`, `exp(a - ∅) = exp(a)`).
//! * `←` and `1` count an absent operand as 0 (`←` first requires the right operand present).
//! * The `-inf` rule of sub-then-exp also holds for `exp((a - b))` written as two actions:
//!   it is 0 wherever `a` is `-inf`, so rewriting one form into the other keeps NaN out.
//! * Absent output points read as 0 in [`TensorValue::values`]; [`TensorValue::present`] says
//!   which points hold a value.
//! * Which Einsums run once per step of an iterative rank, and which once before or after the
//!   loop, is [`crate::plan::LoopPlan`]'s decision; the interpreter runs its steps in order.
//!   At most one iterative rank is supported.

use std::collections::BTreeMap;

use ndarray::{ArrayD, IxDyn};
use num_traits::Float;

use crate::ast::{
    Access, BinaryOp, Cascade, CompareOp, Constant, EinsumId, Expr, ExprId, IndexExpr, Merge,
    RankId, ReduceOp, Section, TensorId, TensorKind, UnaryOp,
};
use crate::ops::Element;
use crate::plan::{Ambiguity, LoopPlan, Step};
use crate::shape::Shape;

/// One evaluated tensor: its values (0 where absent) and its presence mask.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorValue<T> {
    pub values: ArrayD<T>,
    pub present: ArrayD<bool>,
}

impl<T: Float> TensorValue<T> {
    /// The value at `index`, `None` where the point is absent or outside the tensor.
    pub fn get(&self, index: &[usize]) -> Option<T> {
        match self.present.get(IxDyn(index)) {
            Some(true) => self.values.get(IxDyn(index)).copied(),
            _ => None,
        }
    }

    /// How many points are present.
    pub fn present_count(&self) -> usize {
        self.present.iter().filter(|p| **p).count()
    }
}

/// The result of [`evaluate`]: every tensor of the cascade (inputs, intermediates, outputs).
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation<T> {
    /// Every tensor by name, with state tensors at their `|R|+1` extent.
    pub tensors: BTreeMap<String, TensorValue<T>>,
    /// The names of the cascade's outputs, in declaration order.
    pub outputs: Vec<String>,
}

impl<T> Evaluation<T> {
    pub fn tensor(&self, name: &str) -> Option<&TensorValue<T>> {
        self.tensors.get(name)
    }

    /// The first declared output.
    pub fn output(&self) -> Option<&TensorValue<T>> {
        self.outputs.first().and_then(|n| self.tensors.get(n))
    }
}

/// Why a cascade could not be evaluated. Each variant names the tensor or Einsum at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error("input {tensor} was not given: pass a tensor of shape {expected:?}")]
    MissingInput {
        tensor: String,
        expected: Vec<usize>,
    },
    #[error("input {tensor} has shape {found:?}, but the shape environment makes it {expected:?}")]
    InputShape {
        tensor: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("{tensor} is not an input of this cascade (its inputs are {inputs})")]
    UnknownInput { tensor: String, inputs: String },
    #[error(
        "{einsum}: index {index} of {tensor} at position {position} is outside 0..{extent} \
         (at {point}); check the index arithmetic or add a filter"
    )]
    IndexOutOfBounds {
        einsum: String,
        tensor: String,
        position: usize,
        index: i64,
        extent: usize,
        point: String,
    },
    #[error(
        "{einsum}: index expression {position} of {tensor} is not affine (a product of two variables)"
    )]
    NonAffineIndex {
        einsum: String,
        tensor: String,
        position: usize,
    },
    #[error(
        "iterative rank {rank} ran {limit} iterations without meeting the stop condition; write `stop {var} >= {rank}`"
    )]
    StopNeverReached {
        rank: String,
        var: String,
        limit: i64,
    },
    #[error("iterative rank {rank} has no stop condition: add `stop {var} >= {rank}`")]
    MissingStop { rank: String, var: String },
    #[error(
        "the tensors up to {tensor} hold more than {limit} points in all; evaluate a smaller shape"
    )]
    TooLarge { tensor: String, limit: usize },
    #[error("the cascade has several iterative ranks ({ranks}); the interpreter supports one")]
    SeveralIterativeRanks { ranks: String },
    #[error(
        "{einsum}: {what} leaves the 64-bit integer range over the iteration space; keep index literals and sizes small enough that every index stays within ±9.2e18"
    )]
    IndexOverflow { einsum: String, what: String },
}

/// The most tensor points one evaluation may hold (8 GiB of f64 values), so that a large
/// shape is an error rather than an allocation failure.
pub const MAX_POINTS: usize = 1 << 30;

/// Evaluates `cascade` on `inputs` (one array per input tensor, dims in declaration order).
///
/// `cascade` must pass `verify` and `shape` must be resolved for it; anything wrong with the
/// inputs, the index arithmetic or the stop condition is an [`EvalError`].
pub fn evaluate<T: Element>(
    cascade: &Cascade,
    shape: &Shape,
    inputs: &BTreeMap<String, ArrayD<T>>,
) -> Result<Evaluation<T>, EvalError> {
    let plan = LoopPlan::new(cascade);
    if let Some(Ambiguity::SeveralIterativeRanks { ranks }) = plan
        .ambiguities
        .iter()
        .find(|a| matches!(a, Ambiguity::SeveralIterativeRanks { .. }))
    {
        let ranks: Vec<&str> = ranks
            .iter()
            .map(|r| cascade.rank(*r).name.as_str())
            .collect();
        return Err(EvalError::SeveralIterativeRanks {
            ranks: ranks.join(", "),
        });
    }
    let mut store = Store::new(cascade, shape)?;
    store.load_inputs(cascade, inputs)?;
    for step in plan.steps {
        match step {
            Step::Run(id) => {
                let kernel = Kernel::compile(cascade, shape, &store, id, None)?;
                kernel.run(cascade, &mut store, 0)?;
            }
            Step::Loop { rank, body } => {
                run_loop(cascade, shape, &mut store, rank, &body)?;
            }
        }
    }
    Ok(store.finish(cascade))
}

fn run_loop<T: Element>(
    cascade: &Cascade,
    shape: &Shape,
    store: &mut Store<T>,
    rank: RankId,
    body: &[EinsumId],
) -> Result<(), EvalError> {
    let var = cascade.var_name(rank);
    let name = cascade.rank(rank).name.clone();
    let Some(stop) = &cascade.stop else {
        return Err(EvalError::MissingStop { rank: name, var });
    };
    let kernels = body
        .iter()
        .map(|&id| Kernel::compile(cascade, shape, store, id, Some(rank)))
        .collect::<Result<Vec<_>, _>>()?;
    let limit = shape.size(rank);
    let size = |r: RankId| shape.size(r);
    let mut r = 0;
    loop {
        let Some(holds) = stop.holds(&|v| if v == rank { r } else { 0 }, &size) else {
            return Err(EvalError::IndexOverflow {
                einsum: format!("the stop condition at {var}={r}"),
                what: "a side of the comparison".into(),
            });
        };
        if holds {
            return Ok(());
        }
        // An iteration at r = |R| would read past every standard use of the rank.
        if r >= limit {
            return Err(EvalError::StopNeverReached {
                rank: name,
                var,
                limit,
            });
        }
        for kernel in &kernels {
            kernel.run(cascade, store, r)?;
        }
        r += 1;
    }
}

/// Flat storage of every tensor.
struct Store<T> {
    values: Vec<Vec<T>>,
    present: Vec<Vec<bool>>,
    extents: Vec<Vec<usize>>,
    /// Row-major strides, in elements.
    strides: Vec<Vec<i64>>,
    /// Inputs are present everywhere, so their loads skip the mask.
    all_present: Vec<bool>,
}

impl<T: Element> Store<T> {
    fn new(cascade: &Cascade, shape: &Shape) -> Result<Store<T>, EvalError> {
        let n = cascade.tensors.len();
        let mut total = 0usize;
        let mut store = Store {
            values: Vec::with_capacity(n),
            present: Vec::with_capacity(n),
            extents: Vec::with_capacity(n),
            strides: Vec::with_capacity(n),
            all_present: Vec::with_capacity(n),
        };
        for (tensor, extents) in cascade.tensors.iter().zip(all_extents(cascade, shape)) {
            let len = extents
                .iter()
                .try_fold(1usize, |acc, e| acc.checked_mul(*e));
            total = len.and_then(|l| total.checked_add(l)).unwrap_or(usize::MAX);
            if total > MAX_POINTS {
                return Err(EvalError::TooLarge {
                    tensor: tensor.name.clone(),
                    limit: MAX_POINTS,
                });
            }
            let len = len.unwrap_or(0);
            let mut strides = vec![1i64; extents.len()];
            for d in (0..extents.len().saturating_sub(1)).rev() {
                strides[d] = strides[d + 1] * extents[d + 1] as i64;
            }
            let input = tensor.kind == TensorKind::Input;
            store.values.push(vec![T::zero(); len]);
            store.present.push(vec![input; len]);
            store.extents.push(extents);
            store.strides.push(strides);
            store.all_present.push(input);
        }
        Ok(store)
    }

    fn load_inputs(
        &mut self,
        cascade: &Cascade,
        inputs: &BTreeMap<String, ArrayD<T>>,
    ) -> Result<(), EvalError> {
        let declared: Vec<&str> = cascade
            .tensors
            .iter()
            .filter(|t| t.kind == TensorKind::Input)
            .map(|t| t.name.as_str())
            .collect();
        for name in inputs.keys() {
            if !declared.contains(&name.as_str()) {
                return Err(EvalError::UnknownInput {
                    tensor: name.clone(),
                    inputs: declared.join(", "),
                });
            }
        }
        for (i, tensor) in cascade.tensors.iter().enumerate() {
            if tensor.kind != TensorKind::Input {
                continue;
            }
            let expected = self.extents[i].clone();
            let Some(array) = inputs.get(&tensor.name) else {
                return Err(EvalError::MissingInput {
                    tensor: tensor.name.clone(),
                    expected,
                });
            };
            if array.shape() != expected.as_slice() {
                return Err(EvalError::InputShape {
                    tensor: tensor.name.clone(),
                    expected,
                    found: array.shape().to_vec(),
                });
            }
            // `iter` walks in logical row-major order whatever the array's memory layout.
            self.values[i] = array.iter().copied().collect();
        }
        Ok(())
    }

    fn finish(self, cascade: &Cascade) -> Evaluation<T> {
        let mut tensors = BTreeMap::new();
        let parts = self.values.into_iter().zip(self.present).zip(self.extents);
        for (tensor, ((values, present), extents)) in cascade.tensors.iter().zip(parts) {
            let dims = IxDyn(&extents);
            let value = TensorValue {
                values: ArrayD::from_shape_vec(dims.clone(), values)
                    .expect("buffer length is the product of the extents"),
                present: ArrayD::from_shape_vec(dims, present)
                    .expect("buffer length is the product of the extents"),
            };
            tensors.insert(tensor.name.clone(), value);
        }
        let outputs = cascade
            .outputs
            .iter()
            .map(|t| cascade.tensor(*t).name.clone())
            .collect();
        Evaluation { tensors, outputs }
    }
}

/// [`tensor_extents`] of every tensor, by id, in one pass over the Einsums.
pub fn all_extents(cascade: &Cascade, shape: &Shape) -> Vec<Vec<usize>> {
    let mut state: Vec<Vec<bool>> = cascade
        .tensors
        .iter()
        .map(|t| vec![false; t.ranks.len()])
        .collect();
    for e in &cascade.einsums {
        let t = e.output.tensor.index();
        for (d, idx) in e.output.indices.iter().enumerate() {
            let rank = cascade.tensors[t].ranks.get(d);
            if rank.is_some() && idx.shifted_var().as_ref() == rank {
                state[t][d] = true;
            }
        }
    }
    cascade
        .tensors
        .iter()
        .zip(state)
        .map(|(t, state)| {
            t.ranks
                .iter()
                .zip(state)
                .map(|(r, s)| shape.size(*r) as usize + usize::from(s))
                .collect()
        })
        .collect()
}

/// How many points an evaluation of a cascade stores, by kind of tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Points {
    /// Every tensor at its extent (state tensors at `|R|+1`).
    pub total: usize,
    /// The inputs alone.
    pub inputs: usize,
    /// The outputs alone.
    pub outputs: usize,
    /// The largest single tensor.
    pub largest: usize,
}

/// The points [`evaluate`] stores for `cascade` at `shape`, counted without allocating;
/// `None` when a count overflows `usize`. Callers multiply by their element sizes to estimate
/// memory before they allocate anything.
pub fn points(cascade: &Cascade, shape: &Shape) -> Option<Points> {
    let mut p = Points {
        total: 0,
        inputs: 0,
        outputs: 0,
        largest: 0,
    };
    for (i, extents) in all_extents(cascade, shape).into_iter().enumerate() {
        let len = extents
            .iter()
            .try_fold(1usize, |acc, e| acc.checked_mul(*e))?;
        p.total = p.total.checked_add(len)?;
        p.largest = p.largest.max(len);
        if cascade.tensors[i].kind == TensorKind::Input {
            p.inputs = p.inputs.checked_add(len)?;
        }
        if cascade.outputs.iter().any(|o| o.index() == i) {
            p.outputs = p.outputs.checked_add(len)?;
        }
    }
    Some(p)
}

/// The extent of each dimension: `|R|`, or `|R|+1` where some Einsum writes the tensor at
/// `r+k` along an iterative rank (state tensors keep every step).
pub fn tensor_extents(cascade: &Cascade, shape: &Shape, id: TensorId) -> Vec<usize> {
    let tensor = cascade.tensor(id);
    tensor
        .ranks
        .iter()
        .enumerate()
        .map(|(d, &rank)| {
            let state = cascade.einsums.iter().any(|e| {
                e.output.tensor == id
                    && e.output.indices.get(d).and_then(IndexExpr::shifted_var) == Some(rank)
            });
            shape.size(rank) as usize + usize::from(state)
        })
        .collect()
}

/// `constant + Σ coeffs[r] · r` over rank variables.
#[derive(Debug, Clone)]
struct Affine {
    constant: i64,
    coeffs: Vec<i64>,
}

impl Affine {
    fn constant(n: usize, c: i64) -> Affine {
        Affine {
            constant: c,
            coeffs: vec![0; n],
        }
    }

    /// `self + sign · other`; `None` on overflow.
    fn combine(mut self, other: &Affine, sign: i64) -> Option<Affine> {
        self.constant = self
            .constant
            .checked_add(sign.checked_mul(other.constant)?)?;
        for (a, b) in self.coeffs.iter_mut().zip(&other.coeffs) {
            *a = a.checked_add(sign.checked_mul(*b)?)?;
        }
        Some(self)
    }

    /// `k · self`; `None` on overflow.
    fn scale(mut self, k: i64) -> Option<Affine> {
        self.constant = self.constant.checked_mul(k)?;
        for a in &mut self.coeffs {
            *a = a.checked_mul(k)?;
        }
        Some(self)
    }

    fn is_constant(&self) -> bool {
        self.coeffs.iter().all(|c| *c == 0)
    }

    /// The smallest and largest value over the box `0 ≤ r < sizes[r]` (in i128, which holds
    /// every sum of i64 products here).
    fn range(&self, sizes: &[i64]) -> (i128, i128) {
        let (mut lo, mut hi) = (i128::from(self.constant), i128::from(self.constant));
        for (c, size) in self.coeffs.iter().zip(sizes) {
            let step = i128::from(*c) * i128::from((*size - 1).max(0));
            if step < 0 {
                lo += step;
            } else {
                hi += step;
            }
        }
        (lo, hi)
    }
}

/// Why an index expression has no affine form the interpreter can run.
enum NotAffine {
    /// A product of two variables.
    Product,
    /// A coefficient or constant beyond `i64`.
    Overflow,
}

fn linearize(expr: &IndexExpr, shape: &Shape, n: usize) -> Result<Affine, NotAffine> {
    let fits = |a: Option<Affine>| a.ok_or(NotAffine::Overflow);
    Ok(match expr {
        IndexExpr::Var(r) => {
            let mut a = Affine::constant(n, 0);
            a.coeffs[r.index()] = 1;
            a
        }
        IndexExpr::Size(r) => Affine::constant(n, shape.size(*r)),
        IndexExpr::Lit(k) => Affine::constant(n, *k),
        IndexExpr::Add(a, b) => fits(linearize(a, shape, n)?.combine(&linearize(b, shape, n)?, 1))?,
        IndexExpr::Sub(a, b) => {
            fits(linearize(a, shape, n)?.combine(&linearize(b, shape, n)?, -1))?
        }
        IndexExpr::Mul(a, b) => {
            let (a, b) = (linearize(a, shape, n)?, linearize(b, shape, n)?);
            if a.is_constant() {
                fits(b.scale(a.constant))?
            } else if b.is_constant() {
                fits(a.scale(b.constant))?
            } else {
                return Err(NotAffine::Product);
            }
        }
    })
}

/// An affine function of the point, tracked incrementally as the loops advance.
#[derive(Debug)]
struct Counter {
    affine: Affine,
}

/// A bounds check of one index position, needed when its range is not provably inside.
#[derive(Debug)]
struct Check {
    counter: usize,
    extent: usize,
    position: usize,
}

#[derive(Debug)]
enum Node<T> {
    Load {
        tensor: usize,
        offset: usize,
        all_present: bool,
        /// `(counter holding lhs - rhs, op)`: the operand is absent unless every one holds.
        filters: Vec<(usize, CompareOp)>,
        checks: Vec<Check>,
    },
    Const(T),
    /// The bare literal `0` right-hand side: every point stays absent.
    Absent,
    Unary(UnaryOp, usize),
    /// `exp(a - b)` written as an `exp` of a subtraction (slot of the subtraction, slot of `a`):
    /// 0 wherever `a` is `-inf`, like the fused sub-then-exp.
    ExpOfSub(usize, usize),
    Binary(BinaryOp, Merge, usize, usize),
}

/// One Einsum compiled against a shape.
#[derive(Debug)]
struct Kernel<T> {
    einsum: EinsumId,
    /// Loop ranks, outermost first, and their sizes.
    ranks: Vec<RankId>,
    sizes: Vec<i64>,
    /// The rank fixed by the enclosing iterative loop, if it is in this Einsum's space.
    fixed: Option<RankId>,
    counters: Vec<Counter>,
    /// `strides[level][counter]`: how much a counter moves when loop `level` advances by one.
    strides: Vec<Vec<i64>>,
    nodes: Vec<Node<T>>,
    out_tensor: usize,
    out_offset: usize,
    out_checks: Vec<Check>,
    /// Output filters as `(counter holding lhs - rhs, op)`: where one fails the Einsum's value
    /// is absent (nothing is written there, nothing is reduced into it).
    out_filters: Vec<(usize, CompareOp)>,
    reduce: Option<ReduceOp>,
    reads_output: bool,
}

impl<T: Element> Kernel<T> {
    /// Compiles Einsum `id` for `shape`: its output and every operand as counters over the
    /// iteration space, the expression as row nodes, the loops ordered for memory, and a proof
    /// that no counter leaves the 64-bit range anywhere in the space.
    fn compile(
        cascade: &Cascade,
        shape: &Shape,
        store: &Store<T>,
        id: EinsumId,
        loop_rank: Option<RankId>,
    ) -> Result<Kernel<T>, EvalError> {
        let einsum = cascade.einsum(id);
        let space = cascade.iteration_space(id);
        let fixed = loop_rank.filter(|r| space.contains(r));
        let mut kernel = Kernel {
            einsum: id,
            ranks: Vec::new(),
            sizes: Vec::new(),
            fixed,
            counters: Vec::new(),
            strides: Vec::new(),
            nodes: Vec::new(),
            out_tensor: einsum.output.tensor.index(),
            out_offset: 0,
            out_checks: Vec::new(),
            out_filters: Vec::new(),
            reduce: cascade.reduce_op(id),
            reads_output: false,
        };
        let ix = Indexing {
            cascade,
            shape,
            store,
            id,
        };
        kernel.compile_output(&ix)?;
        kernel.compile_nodes(&ix)?;
        kernel.order_loops(shape, space);
        kernel.check_ranges(&ix)?;
        Ok(kernel)
    }

    /// The output's offset, its per-position indices (checked at run time if needed) and its
    /// filters as counters.
    fn compile_output(&mut self, ix: &Indexing<'_, T>) -> Result<(), EvalError> {
        let out = &ix.cascade.einsum(ix.id).output;
        let (offset, position_counters) = ix.offset(out)?;
        self.out_offset = self.push_counter(offset);
        for (d, a) in position_counters.into_iter().enumerate() {
            let counter = self.push_counter(a);
            let extent = ix.store.extents[out.tensor.index()][d];
            self.out_checks.push(Check {
                counter,
                extent,
                position: d,
            });
        }
        for (lhs_minus_rhs, op) in ix.filters(out)? {
            let counter = self.push_counter(lhs_minus_rhs);
            self.out_filters.push((counter, op));
        }
        Ok(())
    }

    /// The right-hand side as row nodes, children before parents (the arena order).
    fn compile_nodes(&mut self, ix: &Indexing<'_, T>) -> Result<(), EvalError> {
        let cascade = ix.cascade;
        let einsum = cascade.einsum(ix.id);
        let mut ids = cascade.post_order(einsum.value);
        ids.sort();
        ids.dedup();
        let slot = |e: ExprId, ids: &[ExprId]| ids.binary_search(&e).expect("child in subtree");
        let bare_zero =
            matches!(cascade.expr(einsum.value), Expr::Const(Constant::Num(x)) if *x == 0.0);
        for &e in &ids {
            let node = match cascade.expr(e) {
                Expr::Access(a) => self.load(ix, a)?,
                Expr::Const(_) if bare_zero => Node::Absent,
                Expr::Const(c) => Node::Const(constant(*c, ix.shape)),
                Expr::Unary(UnaryOp::Exp, arg) => match cascade.expr(*arg) {
                    Expr::Binary {
                        op: BinaryOp::Sub,
                        lhs,
                        ..
                    } => Node::ExpOfSub(slot(*arg, &ids), slot(*lhs, &ids)),
                    _ => Node::Unary(UnaryOp::Exp, slot(*arg, &ids)),
                },
                Expr::Unary(op, arg) => Node::Unary(*op, slot(*arg, &ids)),
                Expr::Binary {
                    op,
                    merge,
                    lhs,
                    rhs,
                } => Node::Binary(*op, *merge, slot(*lhs, &ids), slot(*rhs, &ids)),
            };
            self.nodes.push(node);
        }
        Ok(())
    }

    /// A load of access `a`: its offset, a bounds check per position and its filters.
    fn load(&mut self, ix: &Indexing<'_, T>, a: &Access) -> Result<Node<T>, EvalError> {
        let t = a.tensor.index();
        self.reads_output |= a.tensor == ix.cascade.einsum(ix.id).output.tensor;
        let (offset, positions) = ix.offset(a)?;
        let checks = positions
            .into_iter()
            .enumerate()
            .map(|(d, aff)| Check {
                counter: self.push_counter(aff),
                extent: ix.store.extents[t][d],
                position: d,
            })
            .collect();
        let offset = self.push_counter(offset);
        let filters = ix
            .filters(a)?
            .into_iter()
            .map(|(diff, op)| (self.push_counter(diff), op))
            .collect();
        Ok(Node::Load {
            tensor: t,
            offset,
            all_present: ix.store.all_present[t],
            filters,
            checks,
        })
    }

    /// Loop order: larger total stride outside, so the innermost loop walks memory densely.
    fn order_loops(&mut self, shape: &Shape, space: Vec<RankId>) {
        let fixed = self.fixed;
        let mut loop_ranks: Vec<RankId> = space.into_iter().filter(|r| Some(*r) != fixed).collect();
        let weight = |r: RankId, k: &Kernel<T>| -> u128 {
            k.counters
                .iter()
                .map(|c| u128::from(c.affine.coeffs[r.index()].unsigned_abs()))
                .sum()
        };
        loop_ranks.sort_by_key(|&r| (std::cmp::Reverse(weight(r, self)), r));
        self.sizes = loop_ranks.iter().map(|&r| shape.size(r)).collect();
        self.strides = loop_ranks
            .iter()
            .map(|r| {
                self.counters
                    .iter()
                    .map(|c| c.affine.coeffs[r.index()])
                    .collect()
            })
            .collect();
        self.ranks = loop_ranks;
    }

    /// Every counter's value over the whole iteration space (the fixed rank over all its
    /// steps) fits in i64, so the run-time arithmetic cannot overflow and no bounds check is
    /// skipped by a wrapped value.
    fn check_ranges(&self, ix: &Indexing<'_, T>) -> Result<(), EvalError> {
        let box_sizes: Vec<i64> = (0..ix.cascade.ranks.len())
            .map(|r| {
                let rank = RankId(r as u32);
                let in_space = self.ranks.contains(&rank) || self.fixed == Some(rank);
                if in_space { ix.shape.size(rank) } else { 1 }
            })
            .collect();
        let fits =
            |(lo, hi): (i128, i128)| lo >= i128::from(i64::MIN) && hi <= i128::from(i64::MAX);
        if self
            .counters
            .iter()
            .all(|c| fits(c.affine.range(&box_sizes)))
        {
            Ok(())
        } else {
            Err(ix.overflow("an index, offset or filter".to_string()))
        }
    }

    fn push_counter(&mut self, affine: Affine) -> usize {
        self.counters.push(Counter { affine });
        self.counters.len() - 1
    }

    /// Counter values at the first point, with the fixed rank at `r`.
    fn bases(&self, r: i64) -> Vec<i64> {
        self.counters
            .iter()
            .map(|c| {
                let fixed = self.fixed.map_or(0, |f| c.affine.coeffs[f.index()] * r);
                c.affine.constant + fixed
            })
            .collect()
    }

    /// Whether a counter stays inside `0..extent` over the whole loop box (in i128, so no
    /// sum wraps around into the range).
    fn in_range(&self, bases: &[i64], counter: usize, extent: usize) -> bool {
        let (mut lo, mut hi) = (i128::from(bases[counter]), i128::from(bases[counter]));
        for (level, size) in self.sizes.iter().enumerate() {
            let step = i128::from(self.strides[level][counter]) * i128::from(size - 1);
            if step < 0 {
                lo += step;
            } else {
                hi += step;
            }
        }
        lo >= 0 && hi < extent as i128
    }

    fn run(&self, cascade: &Cascade, store: &mut Store<T>, r: i64) -> Result<(), EvalError> {
        let bases = self.bases(r);
        // Only the positions that can leave their range are checked per point.
        let unsafe_checks = |checks: &[Check]| -> Vec<usize> {
            checks
                .iter()
                .enumerate()
                .filter(|(_, c)| !self.in_range(&bases, c.counter, c.extent))
                .map(|(i, _)| i)
                .collect()
        };
        let load_checks: Vec<Vec<usize>> = self
            .nodes
            .iter()
            .map(|node| match node {
                Node::Load { checks, .. } => unsafe_checks(checks),
                _ => Vec::new(),
            })
            .collect();
        let out_checks = unsafe_checks(&self.out_checks);

        let mut out_values = std::mem::take(&mut store.values[self.out_tensor]);
        let mut out_present = std::mem::take(&mut store.present[self.out_tensor]);
        if self.reads_output {
            // Reads see the tensor as it was before this Einsum.
            store.values[self.out_tensor] = out_values.clone();
            store.present[self.out_tensor] = out_present.clone();
        }
        if self.reduce.is_some() {
            self.clear_output(
                &bases,
                &mut out_values,
                &mut out_present,
                &out_checks,
                cascade,
                r,
            )?;
        }
        let result = self.sweep(
            cascade,
            store,
            r,
            &bases,
            &load_checks,
            &out_checks,
            &mut out_values,
            &mut out_present,
        );
        store.values[self.out_tensor] = out_values;
        store.present[self.out_tensor] = out_present;
        result
    }

    /// Marks every output point this Einsum reduces into as absent before accumulating.
    fn clear_output(
        &self,
        bases: &[i64],
        values: &mut [T],
        present: &mut [bool],
        out_checks: &[usize],
        cascade: &Cascade,
        r: i64,
    ) -> Result<(), EvalError> {
        let levels: Vec<usize> = (0..self.sizes.len())
            .filter(|&l| self.strides[l][self.out_offset] != 0)
            .collect();
        let mut idx = vec![0i64; levels.len()];
        let mut cur = bases.to_vec();
        loop {
            self.check_output(cascade, &cur, out_checks, r, &levels, &idx)?;
            let o = cur[self.out_offset] as usize;
            values[o] = T::zero();
            present[o] = false;
            if !advance(&levels, &mut idx, &mut cur, &self.sizes, &self.strides) {
                return Ok(());
            }
        }
    }

    fn check_output(
        &self,
        cascade: &Cascade,
        cur: &[i64],
        out_checks: &[usize],
        r: i64,
        levels: &[usize],
        idx: &[i64],
    ) -> Result<(), EvalError> {
        for &i in out_checks {
            let check = &self.out_checks[i];
            let index = cur[check.counter];
            if index < 0 || index >= check.extent as i64 {
                let tensor = self.out_tensor;
                return Err(self.out_of_bounds(cascade, tensor, check, index, r, levels, idx));
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn out_of_bounds(
        &self,
        cascade: &Cascade,
        tensor: usize,
        check: &Check,
        index: i64,
        r: i64,
        levels: &[usize],
        idx: &[i64],
    ) -> EvalError {
        let mut point: Vec<String> = levels
            .iter()
            .zip(idx)
            .map(|(&l, v)| format!("{}={v}", cascade.var_name(self.ranks[l])))
            .collect();
        if let Some(f) = self.fixed {
            point.insert(0, format!("{}={r}", cascade.var_name(f)));
        }
        EvalError::IndexOutOfBounds {
            einsum: einsum_label(cascade, self.einsum),
            tensor: cascade.tensors[tensor].name.clone(),
            position: check.position,
            index,
            extent: check.extent,
            point: point.join(", "),
        }
    }

    /// Evaluates every point. The innermost loop runs a whole row per node, so the
    /// interpretation overhead is paid per row rather than per point.
    #[allow(clippy::too_many_arguments)]
    fn sweep(
        &self,
        cascade: &Cascade,
        store: &Store<T>,
        r: i64,
        bases: &[i64],
        load_checks: &[Vec<usize>],
        out_checks: &[usize],
        out_values: &mut [T],
        out_present: &mut [bool],
    ) -> Result<(), EvalError> {
        let n_levels = self.sizes.len();
        let all_levels: Vec<usize> = (0..n_levels).collect();
        let (outer, row, inner_step): (Vec<usize>, usize, Vec<i64>) = match n_levels {
            0 => (Vec::new(), 1, vec![0; self.counters.len()]),
            n => (
                (0..n - 1).collect(),
                self.sizes[n - 1] as usize,
                self.strides[n - 1].clone(),
            ),
        };
        let mut idx = vec![0i64; outer.len()];
        let mut cur = bases.to_vec();
        let n_nodes = self.nodes.len();
        let mut vals = vec![T::zero(); n_nodes * row];
        let mut pres = vec![false; n_nodes * row];
        // Constants never change; `Absent` rows stay absent.
        for (k, node) in self.nodes.iter().enumerate() {
            if let Node::Const(c) = node {
                vals[k * row..][..row].fill(*c);
                pres[k * row..][..row].fill(true);
            }
        }
        // Whether a node's current row is present at every point (constants always are).
        let mut dense: Vec<bool> = self
            .nodes
            .iter()
            .map(|n| matches!(n, Node::Const(_)))
            .collect();
        loop {
            let at = Position {
                cur: &cur,
                inner_step: &inner_step,
                idx: &idx,
                r,
                all_levels: &all_levels,
                row,
                levels: n_levels,
            };
            for (k, node) in self.nodes.iter().enumerate() {
                if !matches!(node, Node::Const(_)) {
                    dense[k] = false;
                }
                let (done_v, rest_v) = vals.split_at_mut(k * row);
                let (done_p, rest_p) = pres.split_at_mut(k * row);
                let (v, p) = (&mut rest_v[..row], &mut rest_p[..row]);
                match node {
                    Node::Load { .. } => {
                        dense[k] =
                            self.load_row(cascade, store, node, &at, &load_checks[k], (v, p))?;
                    }
                    Node::Const(_) | Node::Absent => {}
                    Node::Unary(op, a) => {
                        dense[k] = dense[*a];
                        let (av, ap) = (&done_v[a * row..][..row], &done_p[a * row..][..row]);
                        for i in 0..row {
                            (v[i], p[i]) = if ap[i] {
                                (unary(*op, av[i]), true)
                            } else {
                                (T::zero(), false)
                            };
                        }
                    }
                    Node::ExpOfSub(a, x) => {
                        dense[k] = dense[*a];
                        let (av, ap) = (&done_v[a * row..][..row], &done_p[a * row..][..row]);
                        let (xv, xp) = (&done_v[x * row..][..row], &done_p[x * row..][..row]);
                        for i in 0..row {
                            (v[i], p[i]) = match (ap[i], xp[i] && xv[i] == T::neg_infinity()) {
                                (false, _) => (T::zero(), false),
                                (true, true) => (T::zero(), true),
                                (true, false) => (av[i].exp(), true),
                            };
                        }
                    }
                    Node::Binary(op, merge, a, b) => {
                        let (av, ap) = (&done_v[a * row..][..row], &done_p[a * row..][..row]);
                        let (bv, bp) = (&done_v[b * row..][..row], &done_p[b * row..][..row]);
                        if dense[*a] && dense[*b] {
                            // Both rows fully present: no merge to decide, one op per point.
                            let pairs = v.iter_mut().zip(av.iter().zip(bv));
                            match op {
                                BinaryOp::Add => pairs.for_each(|(o, (x, y))| *o = *x + *y),
                                BinaryOp::Mul => pairs.for_each(|(o, (x, y))| *o = *x * *y),
                                _ => pairs.for_each(|(o, (x, y))| *o = compute(*op, *x, *y)),
                            }
                            p.fill(true);
                            dense[k] = true;
                            continue;
                        }
                        for i in 0..row {
                            (v[i], p[i]) = binary(*op, *merge, (av[i], ap[i]), (bv[i], bp[i]));
                        }
                    }
                }
            }
            let (root_v, root_p) = (&vals[(n_nodes - 1) * row..], &pres[(n_nodes - 1) * row..]);
            self.write_row(
                cascade,
                &at,
                (root_v, root_p, dense[n_nodes - 1]),
                out_checks,
                out_values,
                out_present,
            )?;
            if !advance(&outer, &mut idx, &mut cur, &self.sizes, &self.strides) {
                return Ok(());
            }
        }
    }

    /// One row of a load: the source's values and presence at the row's points, absent where a
    /// filter fails; an index out of bounds is an error naming the point. Returns whether the
    /// row is present at every point.
    fn load_row(
        &self,
        cascade: &Cascade,
        store: &Store<T>,
        node: &Node<T>,
        at: &Position<'_>,
        load_checks: &[usize],
        (v, p): (&mut [T], &mut [bool]),
    ) -> Result<bool, EvalError> {
        let Node::Load {
            tensor,
            offset,
            all_present,
            filters,
            checks,
        } = node
        else {
            return Ok(false);
        };
        let (src_v, src_p) = (&store.values[*tensor], &store.present[*tensor]);
        let (base, step) = (at.cur[*offset], at.inner_step[*offset]);
        if *all_present && filters.is_empty() && load_checks.is_empty() {
            for (i, x) in v.iter_mut().enumerate() {
                *x = src_v[(base + step * i as i64) as usize];
            }
            p.fill(true);
            return Ok(true);
        }
        if filters.is_empty() && load_checks.is_empty() && step == 0 {
            // A broadcast along the innermost loop: one point for the whole row.
            let o = base as usize;
            v.fill(src_v[o]);
            p.fill(*all_present || src_p[o]);
            return Ok(*all_present || src_p[o]);
        }
        if filters.is_empty() && load_checks.is_empty() {
            let mut all = true;
            for (i, (x, q)) in v.iter_mut().zip(p.iter_mut()).enumerate() {
                let o = (base + step * i as i64) as usize;
                (*x, *q) = (src_v[o], src_p[o]);
                all &= src_p[o];
            }
            return Ok(all);
        }
        for i in 0..at.row {
            if !filters.iter().all(|&(c, op)| compare(at.at(c, i), op)) {
                (v[i], p[i]) = (T::zero(), false);
                continue;
            }
            for &ch in load_checks {
                let check = &checks[ch];
                let index = at.at(check.counter, i);
                if index < 0 || index >= check.extent as i64 {
                    return Err(self.out_of_bounds(
                        cascade,
                        *tensor,
                        check,
                        index,
                        at.r,
                        at.all_levels,
                        &at.point(i),
                    ));
                }
            }
            let o = at.at(*offset, i) as usize;
            if *all_present || src_p[o] {
                (v[i], p[i]) = (src_v[o], true);
            } else {
                (v[i], p[i]) = (T::zero(), false);
            }
        }
        Ok(false)
    }

    /// Writes (or reduces) the root's row into the output, where it is present and the output
    /// filters hold; an output index out of bounds is an error naming the point.
    fn write_row(
        &self,
        cascade: &Cascade,
        at: &Position<'_>,
        (root_v, root_p, dense): (&[T], &[bool], bool),
        out_checks: &[usize],
        out_values: &mut [T],
        out_present: &mut [bool],
    ) -> Result<(), EvalError> {
        let (base, step) = (at.cur[self.out_offset], at.inner_step[self.out_offset]);
        let kept = |i: usize| {
            self.out_filters
                .iter()
                .all(|&(c, op)| compare(at.at(c, i), op))
        };
        if dense
            && out_checks.is_empty()
            && self.out_filters.is_empty()
            && self.reduce == Some(ReduceOp::Sum)
        {
            // The common case of a sum whose row is fully present.
            for (i, x) in root_v[..at.row].iter().enumerate() {
                let o = (base + step * i as i64) as usize;
                let acc = if out_present[o] {
                    out_values[o]
                } else {
                    T::zero()
                };
                out_values[o] = acc + *x;
                out_present[o] = true;
            }
            return Ok(());
        }
        for i in 0..at.row {
            for &ch in out_checks {
                let check = &self.out_checks[ch];
                let index = at.at(check.counter, i);
                if index < 0 || index >= check.extent as i64 {
                    return Err(self.out_of_bounds(
                        cascade,
                        self.out_tensor,
                        check,
                        index,
                        at.r,
                        at.all_levels,
                        &at.point(i),
                    ));
                }
            }
            let o = (base + step * i as i64) as usize;
            let (x, present) = (root_v[i], root_p[i] && kept(i));
            match self.reduce {
                None => {
                    out_values[o] = if present { x } else { T::zero() };
                    out_present[o] = present;
                }
                Some(op) if present => {
                    if out_present[o] {
                        out_values[o] = reduce(op, out_values[o], x);
                    } else {
                        out_values[o] = x;
                        out_present[o] = true;
                    }
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// Where a kernel's sweep stands: the counters at the start of the current row, how far each
/// moves per point of the row, the outer loop indices, the step of the enclosing loop and the
/// row's length.
struct Position<'a> {
    cur: &'a [i64],
    inner_step: &'a [i64],
    idx: &'a [i64],
    r: i64,
    all_levels: &'a [usize],
    row: usize,
    levels: usize,
}

impl Position<'_> {
    /// Counter `c` at point `i` of the row.
    fn at(&self, c: usize, i: usize) -> i64 {
        self.cur[c] + self.inner_step[c] * i as i64
    }

    /// The loop indices of point `i` of the row, outermost first.
    fn point(&self, i: usize) -> Vec<i64> {
        let mut p = self.idx.to_vec();
        if self.levels > 0 {
            p.push(i as i64);
        }
        p
    }
}

/// What compiling one Einsum's accesses needs: index expressions as affine counters over the
/// shape, with every overflow and non-affine index an error naming the Einsum and the access.
struct Indexing<'a, T> {
    cascade: &'a Cascade,
    shape: &'a Shape,
    store: &'a Store<T>,
    id: EinsumId,
}

impl<T> Indexing<'_, T> {
    fn overflow(&self, what: String) -> EvalError {
        EvalError::IndexOverflow {
            einsum: einsum_label(self.cascade, self.id),
            what,
        }
    }

    /// Index expression `idx` at `position` of `tensor` as an affine counter.
    fn affine(
        &self,
        idx: &IndexExpr,
        tensor: TensorId,
        position: usize,
    ) -> Result<Affine, EvalError> {
        let name = &self.cascade.tensor(tensor).name;
        linearize(idx, self.shape, self.cascade.ranks.len()).map_err(|e| match e {
            NotAffine::Product => EvalError::NonAffineIndex {
                einsum: einsum_label(self.cascade, self.id),
                tensor: name.clone(),
                position,
            },
            NotAffine::Overflow => self.overflow(format!("index {position} of {name}")),
        })
    }

    /// The flat offset of access `a` into its tensor's storage, and each position's index.
    fn offset(&self, a: &Access) -> Result<(Affine, Vec<Affine>), EvalError> {
        let n = self.cascade.ranks.len();
        let mut offset = Affine::constant(n, 0);
        let mut positions = Vec::with_capacity(a.indices.len());
        for (d, idx) in a.indices.iter().enumerate() {
            let index = self.affine(idx, a.tensor, d)?;
            let stride = self.store.strides[a.tensor.index()][d];
            // `offset + index · stride`, or the overflow error naming the access.
            offset = index
                .clone()
                .scale(stride)
                .and_then(|scaled| offset.combine(&scaled, 1))
                .ok_or_else(|| {
                    self.overflow(format!(
                        "the offset into {}",
                        self.cascade.tensor(a.tensor).name
                    ))
                })?;
            positions.push(index);
        }
        Ok((offset, positions))
    }

    /// Each condition of the access's filters as `(lhs - rhs, op)`.
    fn filters(&self, a: &Access) -> Result<Vec<(Affine, CompareOp)>, EvalError> {
        let mut out = Vec::new();
        for f in &a.filters {
            for c in &f.conds {
                let lhs = self.affine(&c.lhs, a.tensor, f.position)?;
                let rhs = self.affine(&c.rhs, a.tensor, f.position)?;
                let diff = lhs
                    .combine(&rhs, -1)
                    .ok_or_else(|| self.overflow("a filter".to_string()))?;
                out.push((diff, c.op));
            }
        }
        Ok(out)
    }
}

/// Advances an odometer over `levels` (innermost last); false once every point was visited.
fn advance(
    levels: &[usize],
    idx: &mut [i64],
    cur: &mut [i64],
    sizes: &[i64],
    strides: &[Vec<i64>],
) -> bool {
    for (pos, &level) in levels.iter().enumerate().rev() {
        let step = &strides[level];
        idx[pos] += 1;
        if idx[pos] < sizes[level] {
            for (c, s) in cur.iter_mut().zip(step) {
                *c += s;
            }
            return true;
        }
        let back = sizes[level] - 1;
        for (c, s) in cur.iter_mut().zip(step) {
            *c -= s * back;
        }
        idx[pos] = 0;
    }
    false
}

/// A short name for an Einsum in messages: its position and what it writes.
pub fn einsum_label(cascade: &Cascade, id: EinsumId) -> String {
    let e = cascade.einsum(id);
    let section = match e.section {
        Section::Init => "init ",
        Section::Body => "",
    };
    format!(
        "{section}Einsum {} (writing {})",
        id.0 + 1,
        cascade.tensor(e.output.tensor).name
    )
}

fn compare(diff: i64, op: CompareOp) -> bool {
    match op {
        CompareOp::Lt => diff < 0,
        CompareOp::Le => diff <= 0,
        CompareOp::Gt => diff > 0,
        CompareOp::Ge => diff >= 0,
        CompareOp::Eq => diff == 0,
        CompareOp::Ne => diff != 0,
    }
}

fn cast<T: Float>(x: f64) -> T {
    T::from(x).unwrap_or_else(T::nan)
}

fn constant<T: Float>(c: Constant, shape: &Shape) -> T {
    match c {
        Constant::Num(x) => cast(x),
        Constant::NegInf => T::neg_infinity(),
        Constant::InvSqrtSize(r) => cast::<T>(shape.size(r) as f64).sqrt().recip(),
    }
}

/// A unary user function on a present value (its row of the operator table).
pub fn unary<T: Element>(op: UnaryOp, x: T) -> T {
    T::unary(op.info())(x)
}

/// A binary compute op on two present values, with the `-inf` and `0/0` rules.
pub fn compute<T: Element>(op: BinaryOp, a: T, b: T) -> T {
    T::binary(op.info())(a, b)
}

/// A binary map action with its merge op on `(value, present)` operands.
pub fn binary<T: Element>(op: BinaryOp, merge: Merge, a: (T, bool), b: (T, bool)) -> (T, bool) {
    let absent = (T::zero(), false);
    // Under ∪ the absent operand counts as the op's identity, or the present one passes.
    let lone = |present: T, left: bool| match op.info().identity {
        None => present,
        Some(id) if left => compute(op, present, cast(id)),
        Some(id) => compute(op, cast(id), present),
    };
    match (merge, a.1, b.1) {
        (_, true, true) => (compute(op, a.0, b.0), true),
        (Merge::Intersect, _, _) => absent,
        (Merge::Union, true, false) => (lone(a.0, true), true),
        (Merge::Union, false, true) => (lone(b.0, false), true),
        (Merge::Right, _, false) => absent,
        (Merge::Right, false, true) => (compute(op, T::zero(), b.0), true),
        (Merge::All, _, _) => {
            let value = |(v, p): (T, bool)| if p { v } else { T::zero() };
            (compute(op, value(a), value(b)), true)
        }
        (Merge::Union, false, false) => absent,
    }
}

fn reduce<T: Float>(op: ReduceOp, acc: T, x: T) -> T {
    match op {
        ReduceOp::Sum => acc + x,
        ReduceOp::Max => acc.max(x),
        ReduceOp::Min => acc.min(x),
        ReduceOp::Prod => acc * x,
    }
}
