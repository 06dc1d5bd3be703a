//! Structural equivalence of two cascades: the same computation up to renaming, which decides
//! whether a direct reference of [`super`] applies to a cascade.
//!
//! Two cascades are structurally the same when a bijection between their tensors makes every
//! Einsum of one an Einsum of the other. Names never count: the cascade's name, tensor names
//! and rank names may all differ. Everything else must match exactly:
//!
//! * the ranks, position by position (splits, params), so rank `i` of one is rank `i` of the
//!   other whatever their names, and a shape resolved for one indexes the other;
//! * the inputs, position by position, with the same ranks, and the outputs in order;
//! * the stop condition, every reduction, index expression, filter, constant (bit for bit),
//!   operator and merge.
//!
//! Two freedoms are allowed, and only because they never change a computed bit:
//!
//! * Einsums may come in another program order, as long as the writes of each tensor keep
//!   their order (both cascades pass `verify`, so every read still follows its write);
//! * the operands of `+`, `×`, `max` and `min` under a symmetric merge (`∩`, `∪`, `1`) may be
//!   swapped: IEEE addition and multiplication are commutative, and so are these merges.
//!
//! Nothing is guessed: a failure to find the bijection (including a search that runs out of
//! its step budget) only means no reference applies.

use std::cell::Cell;

use crate::ast::{
    BinaryOp, Cascade, Constant, EinsumId, Expr, ExprId, Merge, TensorId, TensorKind,
};

/// The most expression comparisons one match may make before it gives up (no match).
const STEP_BUDGET: u32 = 100_000;

/// `Some(map)` when `a` and `b` are structurally the same cascade (see the module doc):
/// `map[t.index()]` is the tensor of `b` that plays the part of tensor `t` of `a`.
pub fn same_structure(a: &Cascade, b: &Cascade) -> Option<Vec<TensorId>> {
    if !same_frame(a, b) {
        return None;
    }
    let matcher = Matcher {
        a,
        b,
        writers_a: writers(a),
        writers_b: writers(b),
        steps: Cell::new(0),
    };
    let mut state = Bijection::new(a.tensors.len());
    let pairs = inputs(a)
        .into_iter()
        .zip(inputs(b))
        .chain(a.outputs.iter().copied().zip(b.outputs.iter().copied()));
    for (x, y) in pairs {
        if !matcher.bind(&mut state, x, y) {
            return None;
        }
    }
    state.forward.into_iter().collect()
}

/// The parts compared position by position: ranks, counts, inputs' existence, stop condition.
fn same_frame(a: &Cascade, b: &Cascade) -> bool {
    let ranks = a.ranks.len() == b.ranks.len()
        && a.ranks.iter().zip(&b.ranks).all(|(x, y)| {
            x.split == y.split && x.range_of == y.range_of && x.is_param == y.is_param
        });
    ranks
        && a.tensors.len() == b.tensors.len()
        && a.einsums.len() == b.einsums.len()
        && a.outputs.len() == b.outputs.len()
        && inputs(a).len() == inputs(b).len()
        && a.stop == b.stop
}

fn inputs(c: &Cascade) -> Vec<TensorId> {
    (0..c.tensors.len())
        .map(|i| TensorId(i as u32))
        .filter(|t| c.tensor(*t).kind == TensorKind::Input)
        .collect()
}

/// The Einsums writing each tensor, in program order.
fn writers(c: &Cascade) -> Vec<Vec<EinsumId>> {
    let mut out = vec![Vec::new(); c.tensors.len()];
    for id in c.einsum_ids() {
        out[c.einsum(id).output.tensor.index()].push(id);
    }
    out
}

/// The tensor correspondence found so far, both ways.
#[derive(Debug, Clone)]
struct Bijection {
    forward: Vec<Option<TensorId>>,
    backward: Vec<Option<TensorId>>,
}

impl Bijection {
    fn new(n: usize) -> Bijection {
        Bijection {
            forward: vec![None; n],
            backward: vec![None; n],
        }
    }
}

struct Matcher<'a> {
    a: &'a Cascade,
    b: &'a Cascade,
    writers_a: Vec<Vec<EinsumId>>,
    writers_b: Vec<Vec<EinsumId>>,
    steps: Cell<u32>,
}

impl Matcher<'_> {
    /// Pairs tensor `x` of `a` with `y` of `b`; a new pair must also pair their writers.
    fn bind(&self, state: &mut Bijection, x: TensorId, y: TensorId) -> bool {
        match (state.forward[x.index()], state.backward[y.index()]) {
            (Some(paired), _) => return paired == y,
            (None, Some(_)) => return false,
            (None, None) => {}
        }
        let (tx, ty) = (self.a.tensor(x), self.b.tensor(y));
        if tx.kind != ty.kind || tx.ranks != ty.ranks {
            return false;
        }
        state.forward[x.index()] = Some(y);
        state.backward[y.index()] = Some(x);
        let (wa, wb) = (&self.writers_a[x.index()], &self.writers_b[y.index()]);
        wa.len() == wb.len()
            && wa
                .iter()
                .zip(wb)
                .all(|(&ea, &eb)| self.einsum(state, ea, eb))
    }

    /// Einsums whose outputs are already paired: the same section, reduction, output indices
    /// and filters, and matching right-hand sides.
    fn einsum(&self, state: &mut Bijection, ea: EinsumId, eb: EinsumId) -> bool {
        let (x, y) = (self.a.einsum(ea), self.b.einsum(eb));
        x.section == y.section
            && x.reduction == y.reduction
            && x.output.indices == y.output.indices
            && x.output.filters == y.output.filters
            && self.expr(state, x.value, y.value)
    }

    fn expr(&self, state: &mut Bijection, ea: ExprId, eb: ExprId) -> bool {
        let steps = self.steps.get() + 1;
        self.steps.set(steps);
        if steps > STEP_BUDGET {
            return false;
        }
        match (self.a.expr(ea), self.b.expr(eb)) {
            (Expr::Access(x), Expr::Access(y)) => {
                x.indices == y.indices
                    && x.filters == y.filters
                    && self.bind(state, x.tensor, y.tensor)
            }
            (Expr::Const(x), Expr::Const(y)) => same_constant(*x, *y),
            (Expr::Unary(op, x), Expr::Unary(op_b, y)) => op == op_b && self.expr(state, *x, *y),
            (
                Expr::Binary {
                    op,
                    merge,
                    lhs,
                    rhs,
                },
                Expr::Binary {
                    op: op_b,
                    merge: merge_b,
                    lhs: lhs_b,
                    rhs: rhs_b,
                },
            ) => {
                op == op_b
                    && merge == merge_b
                    && (self.operands(state, (*lhs, *rhs), (*lhs_b, *rhs_b))
                        || (commutes(*op, *merge)
                            && self.operands(state, (*lhs, *rhs), (*rhs_b, *lhs_b))))
            }
            _ => false,
        }
    }

    /// Matches two operand pairs on a copy of `state`, kept only when both match.
    fn operands(
        &self,
        state: &mut Bijection,
        (la, ra): (ExprId, ExprId),
        (lb, rb): (ExprId, ExprId),
    ) -> bool {
        let mut trial = state.clone();
        let ok = self.expr(&mut trial, la, lb) && self.expr(&mut trial, ra, rb);
        if ok {
            *state = trial;
        }
        ok
    }
}

/// Constants are the same when they compute the same bits (`0` and `-0` differ).
fn same_constant(x: Constant, y: Constant) -> bool {
    match (x, y) {
        (Constant::Num(x), Constant::Num(y)) => x.to_bits() == y.to_bits(),
        (Constant::NegInf, Constant::NegInf) => true,
        (Constant::InvSqrtSize(x), Constant::InvSqrtSize(y)) => x == y,
        _ => false,
    }
}

/// Whether `a op b` and `b op a` compute the same value and presence.
fn commutes(op: BinaryOp, merge: Merge) -> bool {
    let symmetric_op = matches!(
        op,
        BinaryOp::Add | BinaryOp::Mul | BinaryOp::Max | BinaryOp::Min
    );
    symmetric_op && merge != Merge::Right
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{dsl, library};

    fn parse(source: &str) -> Cascade {
        dsl::parse(source, "test")
            .expect("test cascades parse")
            .cascade
    }

    fn library_cascade(name: &str) -> Cascade {
        parse(library::source(name).expect("library name"))
    }

    const TOTAL: &str = "cascade t\nranks K\ninput A[K] B[K]\nS = A[k] * B[k]\noutput S\n";

    #[test]
    fn every_library_cascade_matches_itself_and_no_other() {
        for name in library::names() {
            for other in library::names() {
                let found = same_structure(&library_cascade(name), &library_cascade(other));
                assert_eq!(found.is_some(), name == other, "{name} vs {other}");
            }
        }
    }

    #[test]
    fn names_do_not_count() {
        let renamed = parse("cascade u\nranks N\ninput X[N] Y[N]\nT = X[n] * Y[n]\noutput T\n");
        let map = same_structure(&renamed, &parse(TOTAL)).expect("alpha-equivalent");
        assert_eq!(map, [TensorId(0), TensorId(1), TensorId(2)]);
    }

    #[test]
    fn commutative_operands_may_swap_but_others_may_not() {
        let swapped = parse("cascade t\nranks K\ninput A[K] B[K]\nS = B[k] * A[k]\noutput S\n");
        assert!(same_structure(&swapped, &parse(TOTAL)).is_some());
        let sub = |l: &str, r: &str| {
            parse(&format!(
                "cascade t\nranks K\ninput A[K] B[K]\nS = {l}[k] - {r}[k]\noutput S\n"
            ))
        };
        assert!(same_structure(&sub("A", "B"), &sub("A", "B")).is_some());
        assert!(same_structure(&sub("B", "A"), &sub("A", "B")).is_none());
    }

    #[test]
    fn input_order_ops_constants_and_filters_count() {
        let base = parse(TOTAL);
        for changed in [
            "cascade t\nranks K\ninput A[K] B[K]\nS = A[k] + B[k]\noutput S\n",
            "cascade t\nranks K\ninput A[K] B[K]\nS = A[k] - B[k]\noutput S\n",
            "cascade t\nranks K\ninput A[K] B[K]\nS = max(k) A[k] * B[k]\noutput S\n",
            "cascade t\nranks K\ninput A[K] B[K]\nS = A[k : k < 3] * B[k]\noutput S\n",
            "cascade t\nranks K\ninput A[K] B[K]\nS = A[k] * B[k] * 2\noutput S\n",
            "cascade t\nranks K\ninput A[K] B[K]\nS = A[k] * A[k]\noutput S\n",
        ] {
            assert!(
                same_structure(&parse(changed), &base).is_none(),
                "{changed}"
            );
        }
        // Inputs swapped in the declaration: A plays B's part, and `-` does not commute.
        let declared = |order: &str| {
            parse(&format!(
                "cascade t\nranks K\ninput {order}\nS = A[k] - B[k]\noutput S\n"
            ))
        };
        assert!(same_structure(&declared("B[K] A[K]"), &declared("A[K] B[K]")).is_none());
        let two = |c: &str| {
            parse(&format!(
                "cascade t\nranks K\ninput A[K]\nS[k] = A[k] * {c}\noutput S\n"
            ))
        };
        assert!(same_structure(&two("2"), &two("2")).is_some());
        assert!(same_structure(&two("2"), &two("3")).is_none());
    }

    #[test]
    fn einsum_order_is_free_but_every_einsum_must_pair() {
        let sums = |first: &str, second: &str| {
            parse(&format!(
                "cascade t\nranks K\ninput A[K] B[K]\n{first}\n{second}\nZ = X * Y\noutput Z\n"
            ))
        };
        let (x, y) = ("X = A[k]", "Y = B[k]");
        assert!(same_structure(&sums(y, x), &sums(x, y)).is_some());
        // An extra Einsum is another cascade, even when it computes the same value.
        let text = library::source("attention_3pass").expect("library");
        let lib = parse(text);
        let extra = text.replace(
            "GM[p]   = max(m) QK[m,p]",
            "QKX[m,p] = QK[m,p]\nGM[p] = max(m) QKX[m,p]",
        );
        assert!(same_structure(&parse(&extra), &lib).is_none());
        let scaled = text.replace(
            "QK[m,p] = Q[e,p] * K[e,m]",
            "QK[m,p] = Q[e,p] * K[e,m] * 1/sqrt(E)",
        );
        assert_ne!(scaled, text);
        assert!(same_structure(&parse(&scaled), &lib).is_none());
    }

    #[test]
    fn the_derived_one_pass_form_matches_cascade_5() {
        // What `cascade rewrite attention_3pass --objective passes` writes: another tensor and
        // Einsum order than the library file, and `a + b` where the library has `b + a`.
        let derived = parse(
            "cascade attention_3pass\nranks E F M P\nsplit M -> M1 M0\ninput Q[E,P] K[E,M] V[F,M]\n\
             init\nRS[f,0,p] = 0\nRM[0,p] = -inf\nBK[e,m1,m0] = K[e,m1*M0+m0]\n\
             BV[f,m1,m0] = V[f,m1*M0+m0]\nRSD[0,p] = 0\n\
             einsums\nBQK[m1,m0,p] = Q[e,p] * BK[e,m1,m0]\nLM[m1,p] = max(m0) BQK[m1,m0,p]\n\
             RM[m1+1,p] = max(RM[m1,p], LM[m1,p])\nT1[m1,p] = exp(RM[m1,p] - RM[m1+1,p])\n\
             T2[f,m1,p] = RS[f,m1,p] * T1[m1,p]\nT3[m1,m0,p] = exp(BQK[m1,m0,p] - RM[m1+1,p])\n\
             SL[f,m1,p] = T3[m1,m0,p] * BV[f,m1,m0]\nRS[f,m1+1,p] = T2[f,m1,p] + SL[f,m1,p]\n\
             T4[m1,p] = RSD[m1,p] * T1[m1,p]\nSL5[m1,p] = T3[m1,m0,p]\n\
             RSD[m1+1,p] = T4[m1,p] + SL5[m1,p]\nAV[f,p] = RS[f,M1,p] / RSD[M1,p]\n\
             stop m1 >= M1\noutput AV\n",
        );
        let map = same_structure(&derived, &library_cascade("attention_1pass"));
        assert!(map.is_some());
        assert!(same_structure(&derived, &library_cascade("attention_3pass")).is_none());
    }
}
