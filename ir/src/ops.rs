//! Operators: the one table that defines each map operator ([`UNARY`], [`BINARY`]), and the
//! op classification of each Einsum per point of its iteration space, by op kind.
//!
//! This is the single place that maps the IR's compute ops onto the op kinds that pass
//! analysis, the rewriter's costs, the scheduler's binding and the simulator's energy all count,
//! and onto the functions the interpreter and the generated code compute.
//! It knows no hardware: a kind is an abstract action, priced elsewhere.

use std::collections::BTreeMap;
use std::fmt;

use num_traits::Float;

use crate::ast::{BinaryOp, Cascade, EinsumId, Expr, ExprId, Merge, ReduceOp, UnaryOp};

/// Abstract actions an Einsum performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OpKind {
    /// A multiply whose product is summed by the Einsum's reduction (multiply-accumulate).
    Mac,
    /// A multiply that is not accumulated.
    Mul,
    /// Add or subtract, including a `+`-reduction step.
    Add,
    /// Max or min, including a max/min-reduction step.
    Max,
    /// An exponential (`exp`, and the exp of sub-then-exp).
    Exp,
    /// A division or reciprocal.
    Div,
    /// Any other unary function (sigmoid, softplus, relu, elu1, tanh, sqrt, neg).
    Other,
}

impl OpKind {
    pub const ALL: [OpKind; 7] = [
        OpKind::Mac,
        OpKind::Mul,
        OpKind::Add,
        OpKind::Max,
        OpKind::Exp,
        OpKind::Div,
        OpKind::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OpKind::Mac => "mac",
            OpKind::Mul => "mul",
            OpKind::Add => "add",
            OpKind::Max => "max",
            OpKind::Exp => "exp",
            OpKind::Div => "div",
            OpKind::Other => "other",
        }
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Ops one Einsum performs at each point of its iteration space.
pub type PointOps = BTreeMap<OpKind, u32>;

/// Counts the ops of one Einsum per iteration-space point.
///
/// A `+`-reduction whose value's root is a multiply counts one [`OpKind::Mac`] instead of a
/// multiply and an add; any other reduction adds one step of its op per point.
pub fn point_ops(cascade: &Cascade, id: EinsumId) -> PointOps {
    let einsum = cascade.einsum(id);
    let mut ops = PointOps::new();
    let reduce = cascade.reduce_op(id);
    let root_is_mul = matches!(
        cascade.expr(einsum.value),
        Expr::Binary {
            op: BinaryOp::Mul,
            ..
        }
    );
    let fused_mac = reduce == Some(ReduceOp::Sum) && root_is_mul;
    count_expr(cascade, einsum.value, &mut ops);
    if fused_mac {
        *ops.get_mut(&OpKind::Mul)
            .expect("root multiply was counted") -= 1;
        if ops[&OpKind::Mul] == 0 {
            ops.remove(&OpKind::Mul);
        }
        *ops.entry(OpKind::Mac).or_default() += 1;
    } else if let Some(op) = reduce {
        let kind = match op {
            ReduceOp::Sum => OpKind::Add,
            ReduceOp::Max | ReduceOp::Min => OpKind::Max,
            ReduceOp::Prod => OpKind::Mul,
        };
        *ops.entry(kind).or_default() += 1;
    }
    ops
}

/// The unary functions one Einsum applies per point of its iteration space, by function.
///
/// [`point_ops`] counts each of them under its kind as well (`tanh` as [`OpKind::Other`],
/// `recip` as [`OpKind::Div`]); a cost model that prices functions one by one reads both.
pub fn point_functions(cascade: &Cascade, id: EinsumId) -> BTreeMap<UnaryOp, u32> {
    fn walk(cascade: &Cascade, id: ExprId, out: &mut BTreeMap<UnaryOp, u32>) {
        match cascade.expr(id) {
            Expr::Access(_) | Expr::Const(_) => {}
            Expr::Unary(op, arg) => {
                *out.entry(*op).or_default() += 1;
                walk(cascade, *arg, out);
            }
            Expr::Binary { lhs, rhs, .. } => {
                walk(cascade, *lhs, out);
                walk(cascade, *rhs, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(cascade, cascade.einsum(id).value, &mut out);
    out
}

fn count_expr(cascade: &Cascade, id: ExprId, ops: &mut PointOps) {
    match cascade.expr(id) {
        Expr::Access(_) | Expr::Const(_) => {}
        Expr::Unary(op, arg) => {
            *ops.entry(op.info().kind).or_default() += 1;
            count_expr(cascade, *arg, ops);
        }
        Expr::Binary { op, lhs, rhs, .. } => {
            for kind in op.info().kinds {
                *ops.entry(*kind).or_default() += 1;
            }
            count_expr(cascade, *lhs, ops);
            count_expr(cascade, *rhs, ops);
        }
    }
}

// ---- the operator table ---------------------------------------------------------------------
//
// One row per operator: its DSL and e-graph name, what it counts as, its default merge (binary
// ops), the interpreter's function on present values and its portable C spelling. Adding a
// unary function is a new `UnaryOp` variant, one row here and its tests; every stage reads the
// row: the parser and printer (name), `eval` (function), `ops`/passes/scheduler (kind), code
// generation (C spelling and helper), the rewriter (name).

/// One function in `f32` and in `f64`, instantiated from one generic definition.
#[derive(Clone, Copy)]
pub struct Elementwise<F32, F64> {
    pub f32: F32,
    pub f64: F64,
}

impl<F32, F64> fmt::Debug for Elementwise<F32, F64> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Elementwise")
    }
}

pub type UnaryFn = Elementwise<fn(f32) -> f32, fn(f64) -> f64>;
pub type BinaryFn = Elementwise<fn(f32, f32) -> f32, fn(f64, f64) -> f64>;

macro_rules! elementwise {
    ($f:ident) => {
        Elementwise {
            f32: $f::<f32>,
            f64: $f::<f64>,
        }
    };
}

/// What every stage needs to know about a unary map function.
#[derive(Debug, Clone, Copy)]
pub struct UnaryInfo {
    pub op: UnaryOp,
    /// The DSL and e-graph spelling: `sigmoid(X[m])`.
    pub name: &'static str,
    pub kind: OpKind,
    /// The function on a present value.
    pub eval: UnaryFn,
    /// The function in C on `float`, `{x}` standing for the operand. Names `cascade_*` are
    /// defined by [`UnaryInfo::c_helper`] (or by code generation's prelude for the binary ones).
    pub c: &'static str,
    /// A C function the spelling calls, when one is needed.
    pub c_helper: Option<&'static str>,
}

/// What every stage needs to know about a binary map action.
#[derive(Debug, Clone, Copy)]
pub struct BinaryInfo {
    pub op: BinaryOp,
    /// The e-graph name (`add`); the DSL writes `+`, `-`, `*`, `/` infix and `max(a, b)`,
    /// `min(a, b)`, `exp(a - b)` as functions.
    pub name: &'static str,
    /// The infix DSL symbol, if the op is written infix.
    pub symbol: Option<&'static str>,
    /// The op kinds one application counts (sub-then-exp is an add and an exp).
    pub kinds: &'static [OpKind],
    pub default_merge: Merge,
    /// The function on two present values, with the IR's `-inf` and `0/0` rules.
    pub eval: BinaryFn,
    /// Under `∪` with one operand absent, the value the absent operand counts as (`0` for `+`,
    /// `1` for `÷`); `None` passes the present operand through unchanged (`max`, `min`).
    pub identity: Option<f64>,
    /// The action in C on `float`, `{a}` and `{b}` standing for the operands.
    pub c: &'static str,
}

fn exp<T: Float>(x: T) -> T {
    x.exp()
}
fn neg<T: Float>(x: T) -> T {
    -x
}
fn recip<T: Float>(x: T) -> T {
    x.recip()
}
fn sqrt<T: Float>(x: T) -> T {
    x.sqrt()
}
fn sigmoid<T: Float>(x: T) -> T {
    // Two branches so that neither exp overflows.
    let one = T::one();
    if x >= T::zero() {
        one / (one + (-x).exp())
    } else {
        let e = x.exp();
        e / (one + e)
    }
}
fn softplus<T: Float>(x: T) -> T {
    x.max(T::zero()) + (-x.abs()).exp().ln_1p()
}
fn relu<T: Float>(x: T) -> T {
    x.max(T::zero())
}
fn elu1<T: Float>(x: T) -> T {
    if x > T::zero() { x + T::one() } else { x.exp() }
}
fn tanh<T: Float>(x: T) -> T {
    x.tanh()
}

/// Every unary function, in `UnaryOp` declaration order.
#[rustfmt::skip]
pub const UNARY: [UnaryInfo; 9] = [
    UnaryInfo { op: UnaryOp::Exp,      name: "exp",      kind: OpKind::Exp,   eval: elementwise!(exp),      c: "expf({x})",            c_helper: None },
    UnaryInfo { op: UnaryOp::Neg,      name: "neg",      kind: OpKind::Other, eval: elementwise!(neg),      c: "(-({x}))",             c_helper: None },
    UnaryInfo { op: UnaryOp::Recip,    name: "recip",    kind: OpKind::Div,   eval: elementwise!(recip),    c: "(1.0f / ({x}))",       c_helper: None },
    UnaryInfo { op: UnaryOp::Sqrt,     name: "sqrt",     kind: OpKind::Other, eval: elementwise!(sqrt),     c: "sqrtf({x})",           c_helper: None },
    UnaryInfo { op: UnaryOp::Sigmoid,  name: "sigmoid",  kind: OpKind::Other, eval: elementwise!(sigmoid),  c: "cascade_sigmoid({x})",
        c_helper: Some("float cascade_sigmoid(float x) { if (x >= 0.0f) { return 1.0f / (1.0f + expf(-x)); } const float e = expf(x); return e / (1.0f + e); }") },
    UnaryInfo { op: UnaryOp::Softplus, name: "softplus", kind: OpKind::Other, eval: elementwise!(softplus), c: "cascade_softplus({x})",
        c_helper: Some("float cascade_softplus(float x) { return fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x))); }") },
    UnaryInfo { op: UnaryOp::Relu,     name: "relu",     kind: OpKind::Other, eval: elementwise!(relu),     c: "fmaxf({x}, 0.0f)",     c_helper: None },
    UnaryInfo { op: UnaryOp::Elu1,     name: "elu1",     kind: OpKind::Other, eval: elementwise!(elu1),     c: "cascade_elu1({x})",
        c_helper: Some("float cascade_elu1(float x) { return x > 0.0f ? x + 1.0f : expf(x); }") },
    UnaryInfo { op: UnaryOp::Tanh,     name: "tanh",     kind: OpKind::Other, eval: elementwise!(tanh),     c: "tanhf({x})",           c_helper: None },
];

fn add<T: Float>(a: T, b: T) -> T {
    a + b
}
fn sub<T: Float>(a: T, b: T) -> T {
    a - b
}
fn mul<T: Float>(a: T, b: T) -> T {
    a * b
}
/// `0 / 0 = 0`, so a row with no present score yields zeros, never NaN.
fn div<T: Float>(a: T, b: T) -> T {
    if a == T::zero() && b == T::zero() {
        T::zero()
    } else {
        a / b
    }
}
fn max<T: Float>(a: T, b: T) -> T {
    a.max(b)
}
fn min<T: Float>(a: T, b: T) -> T {
    a.min(b)
}
/// `exp(-inf - c) = 0` whatever `c`, also `c = -inf`.
fn sub_exp<T: Float>(a: T, b: T) -> T {
    if a == T::neg_infinity() {
        T::zero()
    } else {
        (a - b).exp()
    }
}

/// Every binary map action, in `BinaryOp` declaration order.
#[rustfmt::skip]
pub const BINARY: [BinaryInfo; 7] = [
    BinaryInfo { op: BinaryOp::Add,    name: "add",    symbol: Some("+"), kinds: &[OpKind::Add],              default_merge: Merge::Union,     eval: elementwise!(add),     identity: Some(0.0), c: "({a} + {b})" },
    BinaryInfo { op: BinaryOp::Sub,    name: "sub",    symbol: Some("-"), kinds: &[OpKind::Add],              default_merge: Merge::Union,     eval: elementwise!(sub),     identity: Some(0.0), c: "({a} - {b})" },
    BinaryInfo { op: BinaryOp::Mul,    name: "mul",    symbol: Some("*"), kinds: &[OpKind::Mul],              default_merge: Merge::Intersect, eval: elementwise!(mul),     identity: Some(1.0), c: "({a} * {b})" },
    BinaryInfo { op: BinaryOp::Div,    name: "div",    symbol: Some("/"), kinds: &[OpKind::Div],              default_merge: Merge::Right,     eval: elementwise!(div),     identity: Some(1.0), c: "cascade_div({a}, {b})" },
    BinaryInfo { op: BinaryOp::Max,    name: "max",    symbol: None,      kinds: &[OpKind::Max],              default_merge: Merge::Union,     eval: elementwise!(max),     identity: None,      c: "fmaxf({a}, {b})" },
    BinaryInfo { op: BinaryOp::Min,    name: "min",    symbol: None,      kinds: &[OpKind::Max],              default_merge: Merge::Union,     eval: elementwise!(min),     identity: None,      c: "fminf({a}, {b})" },
    BinaryInfo { op: BinaryOp::SubExp, name: "subexp", symbol: None,      kinds: &[OpKind::Add, OpKind::Exp], default_merge: Merge::Intersect, eval: elementwise!(sub_exp), identity: Some(0.0), c: "cascade_subexp({a}, {b})" },
];

impl UnaryOp {
    /// This function's row of [`UNARY`].
    pub fn info(self) -> &'static UnaryInfo {
        let row = &UNARY[self as usize];
        debug_assert_eq!(row.op, self, "UNARY is in declaration order");
        row
    }

    /// The function a DSL or e-graph name spells, if any.
    pub fn from_name(name: &str) -> Option<UnaryOp> {
        UNARY.iter().find(|u| u.name == name).map(|u| u.op)
    }
}

impl BinaryOp {
    /// This action's row of [`BINARY`].
    pub fn info(self) -> &'static BinaryInfo {
        let row = &BINARY[self as usize];
        debug_assert_eq!(row.op, self, "BINARY is in declaration order");
        row
    }
}

/// The element types the interpreter runs in, and how each picks its function from a row.
pub trait Element: Float + 'static {
    fn unary(info: &UnaryInfo) -> fn(Self) -> Self;
    fn binary(info: &BinaryInfo) -> fn(Self, Self) -> Self;
}

impl Element for f32 {
    fn unary(info: &UnaryInfo) -> fn(f32) -> f32 {
        info.eval.f32
    }
    fn binary(info: &BinaryInfo) -> fn(f32, f32) -> f32 {
        info.eval.f32
    }
}

impl Element for f64 {
    fn unary(info: &UnaryInfo) -> fn(f64) -> f64 {
        info.eval.f64
    }
    fn binary(info: &BinaryInfo) -> fn(f64, f64) -> f64 {
        info.eval.f64
    }
}

#[cfg(test)]
mod table_tests {
    use super::*;

    #[test]
    fn rows_are_in_declaration_order_and_names_are_unique() {
        for (i, u) in UNARY.iter().enumerate() {
            assert_eq!(u.op as usize, i, "{}", u.name);
            assert_eq!(UnaryOp::from_name(u.name), Some(u.op));
            assert_eq!(u.op.to_string(), u.name);
        }
        for (i, b) in BINARY.iter().enumerate() {
            assert_eq!(b.op as usize, i, "{}", b.name);
        }
        let mut names: Vec<&str> = UNARY.iter().map(|u| u.name).collect();
        names.extend(BINARY.iter().map(|b| b.name));
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n, "operator names are unique");
    }

    /// Each function against an independent spelling at points where overflow, `-inf` and
    /// the branches matter, in both element types.
    #[test]
    fn interpreter_functions_match_direct_formulas() {
        let xs = [
            -1e3,
            -30.0,
            -1.5,
            -1e-9,
            0.0,
            1e-9,
            0.7,
            30.0,
            1e3,
            f64::NEG_INFINITY,
        ];
        for x in xs {
            let direct = [
                x.exp(),
                -x,
                1.0 / x,
                x.sqrt(),
                if x > 0.0 {
                    1.0 / (1.0 + (-x).exp())
                } else {
                    x.exp() / (1.0 + x.exp())
                },
                if x > 30.0 { x } else { (1.0 + x.exp()).ln() },
                if x > 0.0 { x } else { 0.0 },
                if x > 0.0 { x + 1.0 } else { x.exp() },
                x.tanh(),
            ];
            for (u, want) in UNARY.iter().zip(direct) {
                let got = (u.eval.f64)(x);
                let close = (got.is_nan() && want.is_nan())
                    || got == want
                    || (got - want).abs() <= 1e-12 * want.abs().max(1.0);
                assert!(close, "{}({x}) = {got}, want {want}", u.name);
                let got32 = f64::from((u.eval.f32)(x as f32));
                let close32 = (got32.is_nan() && want.is_nan())
                    || got32 == want
                    || (got32 - want).abs() <= 1e-5 * want.abs().max(1.0)
                    || (want.abs() > f64::from(f32::MAX) && got32.is_infinite());
                assert!(close32, "f32 {}({x}) = {got32}, want {want}", u.name);
            }
        }
        let ninf = f64::NEG_INFINITY;
        assert_eq!((BinaryOp::Div.info().eval.f64)(0.0, 0.0), 0.0);
        assert_eq!((BinaryOp::SubExp.info().eval.f64)(ninf, ninf), 0.0);
        assert_eq!(
            (BinaryOp::SubExp.info().eval.f64)(1.0, 3.0),
            (-2.0f64).exp()
        );
        assert_eq!((BinaryOp::Max.info().eval.f32)(ninf as f32, 2.0), 2.0);
    }
}
