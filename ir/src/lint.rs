//! Warnings about valid cascades that probably do not mean what they say: the masking trap.
//!
//! A filtered operand is absent where its filter fails (a causal mask hides key `m > p`). Under
//! the default merges, `QK + B` is `∪`-merged, so at a hidden point the lone `B` passes through
//! and the masked score comes back as `B`; `QK / c` (`←`) brings it back as `0`; sub-then-exp of
//! such a point is `exp(0 - max)`, a key with weight. Masking by `-inf` fails in the same way
//! under functions that send `-inf` to a finite value (`tanh(-inf) = -1` in soft-capping).
//!
//! [`lint`] follows, Einsum by Einsum and through the tensors between them, what the masked
//! points of each value hold: nothing (still absent), a present `0` (harmless to a sum, to a
//! product and to a division), `-inf` (harmless to max, exp and sigmoid), or another value. It
//! warns where masked points first take a value that can change the result, naming the
//! Einsum, the operator, its merge and the fix. Points brought back as `0` are followed without
//! a warning until something turns them into a value (`exp(0 - m)`, `0 + b`, a max).
//! Under `∪`, two operands each masked by conditions the other lacks are taken as a union of
//! masks (attention sinks ∪ a window) and not warned about.

use crate::ast::{BinaryOp, Cascade, Compare, Constant, EinsumId, Expr, ExprId, Merge, ReduceOp};
use crate::plan::TensorGuards;

/// One warning about an Einsum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub einsum: EinsumId,
    pub message: String,
    pub hint: String,
}

/// What the masked points of a value hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Masked {
    /// No masked point is present (or nothing was masked).
    Absent,
    /// Masked points are present with value 0.
    Zero,
    /// Masked points are present with value `-inf`.
    NegInf,
    /// Masked points hold values that change the result.
    Value,
}

/// Warns about every place a masked point is brought back with a value (see the module doc).
pub fn lint(c: &Cascade) -> Vec<Warning> {
    let plan = TensorGuards::of(c);
    let mut tensor = vec![Masked::Absent; c.tensors.len()];
    // Where each tensor's masked points were brought back as 0 or -inf, as text.
    let mut origin: Vec<Option<String>> = vec![None; c.tensors.len()];
    let mut warnings = Vec::new();
    for id in c.einsum_ids() {
        let e = c.einsum(id);
        let mut ctx = Ctx {
            c,
            plan: &plan,
            tensor: &tensor,
            origins: &origin,
            einsum: id,
            origin: None,
            warnings: Vec::new(),
        };
        let value = ctx.expr(e.value);
        let here = ctx.origin.take();
        let mut found = ctx.warnings;
        let reduced = match c.reduce_op(id) {
            None => value,
            Some(op) => reduce(op, value),
        };
        if found.is_empty() && reduced == Masked::Value && value != Masked::Value {
            found.push(Warning {
                einsum: id,
                message: format!(
                    "`{}` reduces masked points that {} brought back as {}: the {} changes",
                    crate::dsl::print_einsum(c, id),
                    here.as_deref().unwrap_or("an earlier Einsum"),
                    if value == Masked::Zero { "0" } else { "-inf" },
                    c.reduce_op(id).map_or("result".into(), |op| format!("{op}"))
                ),
                hint: "keep masked points absent where they are brought back: merge with `{&}` there (e.g. `QK[m,p] +{&} B[m,p]`)".into(),
            });
        }
        let t = e.output.tensor.index();
        tensor[t] = worst(tensor[t], reduced);
        if matches!(reduced, Masked::Zero | Masked::NegInf) && origin[t].is_none() {
            origin[t] = here;
        }
        warnings.extend(found);
    }
    warnings
}

/// A binary node of the expression being walked.
#[derive(Clone, Copy)]
struct Node {
    id: ExprId,
    op: BinaryOp,
    merge: Merge,
    lhs: ExprId,
    rhs: ExprId,
}

struct Ctx<'a> {
    c: &'a Cascade,
    plan: &'a TensorGuards,
    tensor: &'a [Masked],
    origins: &'a [Option<String>],
    einsum: EinsumId,
    /// Where the masked points of the value seen so far were brought back as 0 or -inf.
    origin: Option<String>,
    warnings: Vec<Warning>,
}

impl Ctx<'_> {
    /// What the masked points of the expression rooted at `root` hold, walking its nodes in
    /// post-order with a stack of operand results (no recursion, whatever the depth).
    fn expr(&mut self, root: ExprId) -> Masked {
        let guards = self.plan.node_guards(self.c, root);
        // `(what the operand's masked points hold, its position in the post-order)`.
        let mut stack: Vec<(Masked, usize)> = Vec::new();
        for (i, id) in self.c.post_order(root).into_iter().enumerate() {
            let masked = match self.c.expr(id) {
                Expr::Access(a) => {
                    if self.origin.is_none() {
                        self.origin.clone_from(&self.origins[a.tensor.index()]);
                    }
                    self.tensor[a.tensor.index()]
                }
                Expr::Const(_) => Masked::Absent,
                Expr::Unary(op, _) => {
                    let (arg, _) = stack.pop().unwrap_or((Masked::Absent, i));
                    self.unary(*op, arg)
                }
                Expr::Binary {
                    op,
                    merge,
                    lhs,
                    rhs,
                } => {
                    let (b, gb) = stack.pop().unwrap_or((Masked::Absent, i));
                    let (a, ga) = stack.pop().unwrap_or((Masked::Absent, i));
                    let node = Node {
                        id,
                        op: *op,
                        merge: *merge,
                        lhs: *lhs,
                        rhs: *rhs,
                    };
                    self.binary(&node, (a, &guards[ga]), (b, &guards[gb]))
                }
            };
            stack.push((masked, i));
        }
        stack.pop().map_or(Masked::Absent, |(m, _)| m)
    }

    fn unary(&mut self, op: crate::ast::UnaryOp, arg_masked: Masked) -> Masked {
        let f = op.info().eval.f64;
        let out = match arg_masked {
            Masked::Zero => classify(f(0.0)),
            Masked::NegInf => classify(f(f64::NEG_INFINITY)),
            other => other,
        };
        if out == Masked::Value && arg_masked != Masked::Value {
            let held = if arg_masked == Masked::Zero {
                "0"
            } else {
                "-inf"
            };
            let origin = self.origin_text();
            self.warn(format!(
                "`{op}` turns the {held} of masked points{origin} into {}, so masked keys count",
                f(if arg_masked == Masked::Zero { 0.0 } else { f64::NEG_INFINITY })
            ), format!("apply `{op}` before masking, or keep masked points absent (`{{&}}` where they are brought back)"));
        }
        out
    }

    /// A binary node with what each operand's masked points hold and each operand's guard.
    fn binary(
        &mut self,
        node: &Node,
        (a, ga): (Masked, &[Compare]),
        (b, gb): (Masked, &[Compare]),
    ) -> Masked {
        let Node {
            id,
            op,
            merge,
            lhs,
            rhs,
        } = *node;
        let combined = combine(op, a, b);
        if combined == Masked::Value && a != Masked::Value && b != Masked::Value {
            let origin = self.origin_text();
            self.warn(
                format!(
                    "`{}` turns masked points held as 0 or -inf{origin} into values",
                    self.text(id)
                ),
                "keep masked points absent where they are brought back: merge with `{&}`".into(),
            );
        }
        // Points where one operand is masked (absent) but the merge computes anyway.
        let lost_left = ga.iter().any(|k| !gb.contains(k));
        let lost_right = gb.iter().any(|k| !ga.contains(k));
        let revived = match merge {
            Merge::Intersect => None,
            // Two operands masked each by conditions the other lacks are a union of masks
            // (sinks ∪ window): a point is absent only where both are, as intended.
            Merge::Union if lost_left && lost_right => None,
            Merge::Union if lost_left => Some(lone(op, true, rhs, self.c)),
            Merge::Union if lost_right => Some(lone(op, false, lhs, self.c)),
            Merge::Right if lost_left => Some(zero_left(op)),
            Merge::All if lost_left || lost_right => Some(zero_either(op, lost_left, lost_right)),
            _ => None,
        };
        match revived {
            None => combined,
            Some(held) => {
                if held == Masked::Value && combined != Masked::Value {
                    let masked = if lost_left { lhs } else { rhs };
                    self.warn(
                        format!(
                            "`{}`: `{}` is masked (absent) at some points, but `{}` merges with {} ({}), so those points come back with a value",
                            self.text(id),
                            self.text(masked),
                            op.info().symbol.unwrap_or(op.info().name),
                            merge_name(merge),
                            merge_meaning(merge)
                        ),
                        format!(
                            "keep the masked points absent with an explicit intersection: write the operator as `{}{{&}}` (e.g. `QK[m,p] +{{&}} B[m,p]`), or apply the mask after this operator",
                            op.info().symbol.unwrap_or(op.info().name)
                        ),
                    );
                }
                if matches!(held, Masked::Zero | Masked::NegInf) && self.origin.is_none() {
                    self.origin = Some(format!(
                        "`{}` (`{}` merges with {})",
                        crate::dsl::print_einsum(self.c, self.einsum),
                        op.info().symbol.unwrap_or(op.info().name),
                        merge_name(merge)
                    ));
                }
                worst(combined, held)
            }
        }
    }

    fn origin_text(&self) -> String {
        self.origin
            .as_ref()
            .map_or(String::new(), |o| format!(" (brought back by {o})"))
    }

    fn text(&self, id: ExprId) -> String {
        crate::dsl::print_expr(self.c, id)
    }

    fn warn(&mut self, message: String, hint: String) {
        let einsum = crate::dsl::print_einsum(self.c, self.einsum);
        self.warnings.push(Warning {
            einsum: self.einsum,
            message: format!("in `{einsum}`: {message}"),
            hint,
        });
    }
}

fn merge_name(m: Merge) -> &'static str {
    match m {
        Merge::Intersect => "∩ {&}",
        Merge::Union => "∪ {|}",
        Merge::Right => "← {<-}",
        Merge::All => "1 {1}",
    }
}

fn merge_meaning(m: Merge) -> &'static str {
    match m {
        Merge::Intersect => "both operands present",
        Merge::Union => "a lone operand passes through",
        Merge::Right => "wherever the right operand is present, an absent left one counting as 0",
        Merge::All => "everywhere, absent operands counting as 0",
    }
}

fn classify(x: f64) -> Masked {
    if x == 0.0 {
        Masked::Zero
    } else if x == f64::NEG_INFINITY {
        Masked::NegInf
    } else {
        Masked::Value
    }
}

fn worst(a: Masked, b: Masked) -> Masked {
    use Masked::*;
    match (a, b) {
        (Value, _) | (_, Value) => Value,
        (Absent, x) | (x, Absent) => x,
        (x, y) if x == y => x,
        _ => Value,
    }
}

/// What masked points hold after `a op b` when both operands are present there.
fn combine(op: BinaryOp, a: Masked, b: Masked) -> Masked {
    use Masked::*;
    if a == Value || b == Value {
        return Value;
    }
    let f = op.info().eval.f64;
    let sample = |m: Masked| match m {
        Zero => Some(0.0),
        NegInf => Some(f64::NEG_INFINITY),
        _ => None,
    };
    match (sample(a), sample(b)) {
        (None, None) => Absent,
        // A masked point of one operand meets an unmasked value of the other: test with a
        // positive and a negative value, both must give the same harmless result.
        (Some(x), None) => agree(f(x, 1.5), f(x, -0.75)),
        (None, Some(y)) => agree(f(1.5, y), f(-0.75, y)),
        (Some(x), Some(y)) => classify(f(x, y)),
    }
}

fn agree(p: f64, q: f64) -> Masked {
    let (a, b) = (classify(p), classify(q));
    if a == b { a } else { Masked::Value }
}

/// `∪` with one operand absent: the lone operand passes through or meets the op's identity;
/// harmless only when that is a constant `-inf` (the usual way to mask by `-inf`).
fn lone(op: BinaryOp, left_absent: bool, present: ExprId, c: &Cascade) -> Masked {
    if let Expr::Const(Constant::NegInf) = c.expr(present) {
        let f = op.info().eval.f64;
        let x = match op.info().identity {
            None => f64::NEG_INFINITY,
            Some(id) if left_absent => f(id, f64::NEG_INFINITY),
            Some(id) => f(f64::NEG_INFINITY, id),
        };
        return classify(x);
    }
    Masked::Value
}

/// `←` with the left operand absent: it counts as 0.
fn zero_left(op: BinaryOp) -> Masked {
    let f = op.info().eval.f64;
    agree(f(0.0, 1.5), f(0.0, -0.75))
}

/// `1` with an operand absent: it counts as 0.
fn zero_either(op: BinaryOp, left: bool, right: bool) -> Masked {
    let f = op.info().eval.f64;
    let l = if left {
        agree(f(0.0, 1.5), f(0.0, -0.75))
    } else {
        Masked::Absent
    };
    let r = if right {
        agree(f(1.5, 0.0), f(-0.75, 0.0))
    } else {
        Masked::Absent
    };
    worst(l, r)
}

/// What masked points of the reduced value do to the reduction.
fn reduce(op: ReduceOp, value: Masked) -> Masked {
    match (op, value) {
        (_, Masked::Absent) => Masked::Absent,
        (_, Masked::Value) => Masked::Value,
        // A present 0 adds nothing to a sum; a present -inf is ignored by a max.
        (ReduceOp::Sum, Masked::Zero) => Masked::Absent,
        (ReduceOp::Max, Masked::NegInf) => Masked::Absent,
        (ReduceOp::Min, Masked::Zero | Masked::NegInf)
        | (ReduceOp::Max, Masked::Zero)
        | (ReduceOp::Sum, Masked::NegInf)
        | (ReduceOp::Prod, _) => Masked::Value,
    }
}
