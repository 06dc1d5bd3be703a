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

/// `f(a)` for a unary map action; the helpers live in each template's prelude.
pub fn unary(op: UnaryOp, a: &str) -> String {
    match op {
        UnaryOp::Exp => format!("expf({a})"),
        UnaryOp::Neg => format!("(-{a})"),
        UnaryOp::Recip => format!("cascade_div(1.0f, {a})"),
        UnaryOp::Sqrt => format!("sqrtf({a})"),
        UnaryOp::Sigmoid => format!("(1.0f / (1.0f + expf(-{a})))"),
        UnaryOp::Softplus => format!("log1pf(expf({a}))"),
        UnaryOp::Relu => format!("fmaxf({a}, 0.0f)"),
        UnaryOp::Elu1 => format!("cascade_elu1({a})"),
        UnaryOp::Tanh => format!("tanhf({a})"),
    }
}

/// `a op b` for a binary map action with the IR's special cases (`exp(-inf - c) = 0`, `0/0 = 0`).
pub fn binary(op: BinaryOp, a: &str, b: &str) -> String {
    match op {
        BinaryOp::Add => format!("({a} + {b})"),
        BinaryOp::Sub => format!("({a} - {b})"),
        BinaryOp::Mul => format!("({a} * {b})"),
        BinaryOp::Div => format!("cascade_div({a}, {b})"),
        BinaryOp::Max => format!("fmaxf({a}, {b})"),
        BinaryOp::Min => format!("fminf({a}, {b})"),
        BinaryOp::SubExp => format!("cascade_subexp({a}, {b})"),
    }
}
