//! Renders IR index arithmetic, filters and map actions as C expressions shared by every target.

use cascade_ir::{BinaryOp, Compare, Constant, IndexExpr, UnaryOp};

/// How a lowering names index variables and rank sizes in C.
pub trait Names {
    fn var(&self, rank: cascade_ir::RankId) -> String;
    fn size(&self, rank: cascade_ir::RankId) -> String;
}

/// `m1*M0 + m0` as C over `long long` values.
pub fn index(e: &IndexExpr, names: &dyn Names) -> String {
    match e {
        IndexExpr::Var(r) => names.var(*r),
        IndexExpr::Size(r) => names.size(*r),
        IndexExpr::Lit(k) => format!("{k}LL"),
        IndexExpr::Add(a, b) => format!("({} + {})", index(a, names), index(b, names)),
        IndexExpr::Sub(a, b) => format!("({} - {})", index(a, names), index(b, names)),
        IndexExpr::Mul(a, b) => format!("({} * {})", index(a, names), index(b, names)),
    }
}

/// A comparison in C; the IR's operator spellings (`<`, `<=`, `==`, …) are C's.
pub fn compare(c: &Compare, names: &dyn Names) -> String {
    format!(
        "({} {} {})",
        index(&c.lhs, names),
        c.op,
        index(&c.rhs, names)
    )
}

/// A float literal that C, CUDA and HIP all read as `float`.
pub fn float_lit(x: f64) -> String {
    if x.is_infinite() {
        return if x < 0.0 {
            "(-INFINITY)".into()
        } else {
            "INFINITY".into()
        };
    }
    let s = format!("{:?}", x as f32);
    format!("{s}f")
}

pub fn constant(c: &Constant, names: &dyn Names) -> String {
    match c {
        Constant::Num(x) => float_lit(*x),
        Constant::NegInf => "(-INFINITY)".into(),
        Constant::InvSqrtSize(r) => format!("(1.0f / sqrtf((float){}))", names.size(*r)),
    }
}

/// `f(a)` for a unary map action: the operator table's C spelling (helpers it calls are in
/// each template's prelude, from [`c_helpers`]).
pub fn unary(op: UnaryOp, a: &str) -> String {
    op.info().c.replace("{x}", a)
}

/// `a op b` for a binary map action with the IR's special cases (`exp(-inf - c) = 0`,
/// `0/0 = 0`), as the operator table spells it.
pub fn binary(op: BinaryOp, a: &str, b: &str) -> String {
    op.info().c.replace("{a}", a).replace("{b}", b)
}

/// The C helper functions the operator table's unary spellings call, one definition each.
pub fn c_helpers() -> Vec<&'static str> {
    cascade_ir::ops::UNARY
        .iter()
        .filter_map(|u| u.c_helper)
        .collect()
}
