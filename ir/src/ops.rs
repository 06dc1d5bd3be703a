//! Op classification: what each Einsum costs per point of its iteration space, by op kind.
//!
//! This is the single place that maps the IR's compute ops onto the op kinds that pass
//! analysis, the rewriter's costs, the scheduler's binding and the simulator's energy all count.
//! It knows no hardware: a kind is an abstract action, priced elsewhere.

use std::collections::BTreeMap;
use std::fmt;

use crate::ast::{BinaryOp, Cascade, EinsumId, Expr, ExprId, ReduceOp, UnaryOp};

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

fn count_expr(cascade: &Cascade, id: ExprId, ops: &mut PointOps) {
    match cascade.expr(id) {
        Expr::Access(_) | Expr::Const(_) => {}
        Expr::Unary(op, arg) => {
            let kind = match op {
                UnaryOp::Exp => OpKind::Exp,
                UnaryOp::Recip => OpKind::Div,
                _ => OpKind::Other,
            };
            *ops.entry(kind).or_default() += 1;
            count_expr(cascade, *arg, ops);
        }
        Expr::Binary { op, lhs, rhs, .. } => {
            let kinds: &[OpKind] = match op {
                BinaryOp::Add | BinaryOp::Sub => &[OpKind::Add],
                BinaryOp::Mul => &[OpKind::Mul],
                BinaryOp::Div => &[OpKind::Div],
                BinaryOp::Max | BinaryOp::Min => &[OpKind::Max],
                BinaryOp::SubExp => &[OpKind::Add, OpKind::Exp],
            };
            for kind in kinds {
                *ops.entry(*kind).or_default() += 1;
            }
            count_expr(cascade, *lhs, ops);
            count_expr(cascade, *rhs, ops);
        }
    }
}
