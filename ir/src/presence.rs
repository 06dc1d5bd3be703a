//! Presence as a union of guards, and which Einsums may skip the tiles where every filter fails.
//!
//! [`crate::plan::LoopPlan`] gives each Einsum one conjunctive guard. A `∪` merge keeps only the
//! conditions common to both operands there, so a union of two masks (attention sinks ∪ a causal
//! window) loses its shape. [`presence`] carries the same rules as the loop plan (filters, the
//! merges, the tensors that carry them, output filters) but keeps a union as a union: each
//! Einsum's presence is a disjunction of conjunctions ([`Dnf`]), every one of which contains the
//! loop plan's guard. It is an over-approximation of the present points, as the guard is.
//!
//! [`dead_tile_skips`] answers the question a tiled schedule asks of a masked cascade: on a
//! *dead* tile, where every filtered access of the tile's Einsums is absent and every data mask
//! named by the caller holds `-inf`, which Einsums' work can be left out without changing any
//! output? It evaluates the step symbolically ([`Value`]): an absent score stays absent through
//! `∩`, `exp(-inf - c)` is 0, `x × 0` and `0 / x` are 0, `max(s, ∅)` and `s + 0` leave a running
//! state `s` unchanged. An Einsum may skip the tile when its value there is absent, when it is a
//! loop state left unchanged, when it is a reduction that the tile cannot change (a sum of zeros,
//! a max of `-inf`), or when every reader of its value skips the tile too.
//!
//! One step is an assumption: `exp(s - s)` is taken as 1, so a state scaled by it is unchanged.
//! The IR gives `exp(-inf - (-inf)) = 0`, which also leaves the state unchanged when what it
//! scales is 0: the 1-pass forms keep that invariant (the running sum and numerator are 0 while
//! the running max is `-inf`). Unchanged means unchanged in value: a state that was absent (the
//! fill value 0) may become a present 0 on a tile of `-inf` scores. `tests/occupancy.rs` checks
//! the claim with the interpreter: on every dead tile of the masked 1-pass library cascades the
//! states are equal before and after.

use crate::ast::{
    Access, BinaryOp, Cascade, Compare, Constant, EinsumId, Expr, ExprId, Merge, RankId, ReduceOp,
    Section, TensorId, UnaryOp,
};
use crate::plan::{Domain, LoopPlan, Phase, propagate};

/// A disjunction of conjunctions of conditions: present only where some conjunction holds. An
/// empty conjunction holds everywhere; an empty disjunction nowhere.
pub type Dnf = Vec<Vec<Compare>>;

/// Disjuncts kept before a union is widened to the loop plan's single guard.
const MAX_DISJUNCTS: usize = 8;

/// The presence of every Einsum over its iteration space, indexed by [`EinsumId`]: the loop
/// plan's propagation ([`crate::plan::propagate`]) in the domain of disjunctions, each widened
/// to the plan's guard past [`MAX_DISJUNCTS`].
pub fn presence(c: &Cascade, plan: &LoopPlan) -> Vec<Dnf> {
    let widen = |id: EinsumId, dnf: Dnf| {
        if dnf.len() > MAX_DISJUNCTS {
            vec![plan.placement(id).space.guard.clone()]
        } else {
            dnf
        }
    };
    propagate::<Dnf>(c, &widen).0
}

/// A union kept as a union: `∩` distributes, `∪` concatenates, both simplified.
impl Domain for Dnf {
    fn all_of(conds: Vec<Compare>) -> Self {
        vec![conds]
    }
    fn and(self, other: Self) -> Self {
        and(&self, &other)
    }
    fn or(self, other: Self) -> Self {
        simplify(self.into_iter().chain(other).collect())
    }
    fn each_conj(&self, f: &dyn Fn(&[Compare]) -> Vec<Compare>) -> Self {
        simplify(self.iter().map(|conj| f(conj)).collect())
    }
}

/// The conjunction of two disjunctions, distributed.
fn and(a: &Dnf, b: &Dnf) -> Dnf {
    let mut out = Vec::with_capacity(a.len() * b.len());
    for x in a {
        for y in b {
            let mut conj = x.clone();
            for k in y {
                if !conj.contains(k) {
                    conj.push(k.clone());
                }
            }
            out.push(conj);
        }
    }
    simplify(out)
}

/// Removes repeated conditions and disjuncts, and every disjunct that another one contains
/// (a disjunct with fewer conditions holds wherever one with more does).
fn simplify(dnf: Dnf) -> Dnf {
    let mut conjs: Vec<Vec<Compare>> = dnf
        .into_iter()
        .map(|conj| {
            let mut seen: Vec<Compare> = Vec::with_capacity(conj.len());
            for k in conj {
                if !seen.contains(&k) {
                    seen.push(k);
                }
            }
            seen
        })
        .collect();
    let mut keep = vec![true; conjs.len()];
    for i in 0..conjs.len() {
        for j in 0..conjs.len() {
            let weaker = conjs[j].iter().all(|k| conjs[i].contains(k));
            let same = conjs[i].len() == conjs[j].len();
            if i != j && keep[j] && weaker && (!same || j < i) {
                keep[i] = false;
                break;
            }
        }
    }
    let mut k = keep.into_iter();
    conjs.retain(|_| k.next().unwrap_or(false));
    conjs
}

/// What the caller calls a tile: the ranks whose variables index the tile's key and query
/// points. An Einsum whose iteration space holds one of `key` and one of `query` works per
/// (key tile, query tile); the others are not touched by [`dead_tile_skips`].
#[derive(Debug, Clone, Copy)]
pub struct TileRanks<'a> {
    /// The key rank and its split parts.
    pub key: &'a [RankId],
    /// The query ranks and their split parts.
    pub query: &'a [RankId],
}

impl TileRanks<'_> {
    /// Whether an Einsum works per (key tile, query tile).
    pub fn per_tile(&self, c: &Cascade, id: EinsumId) -> bool {
        let space = c.iteration_space(id);
        space.iter().any(|r| self.key.contains(r)) && space.iter().any(|r| self.query.contains(r))
    }
}

/// The filters whose failure makes a tile dead: the conditions of every filtered access and
/// output filter of the per-tile body Einsums, as one disjunction. A tile is dead when none of
/// them holds anywhere on it. Empty when no per-tile Einsum filters anything (no tile is dead).
pub fn live_filters(c: &Cascade, plan: &LoopPlan, tile: TileRanks<'_>) -> Dnf {
    let mut live = Vec::new();
    for id in plan.body() {
        if !tile.per_tile(c, id) {
            continue;
        }
        let e = c.einsum(id);
        let mut accesses = c.accesses(e.value);
        accesses.push(&e.output);
        for a in accesses {
            let conj: Vec<Compare> = a.filters.iter().flat_map(|f| f.conds.clone()).collect();
            if !conj.is_empty() && !live.contains(&conj) {
                live.push(conj);
            }
        }
    }
    live
}

/// A per-tile Einsum's value at the points of a dead tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    Absent,
    Zero,
    One,
    NegInf,
    /// The loop state's value before this step (unchanged).
    Old(TensorId),
    /// Present with a value the analysis does not know.
    Any,
}

/// For every Einsum (indexed by [`EinsumId`]), whether its work on a dead tile can be left out:
/// a tile where every filtered access of the per-tile Einsums is absent and every input in
/// `neginf` (an additive data mask) holds `-inf`. Einsums that are not per-tile get `false`.
/// Without filters and masks no tile is dead and the answer does not matter.
pub fn dead_tile_skips(
    c: &Cascade,
    plan: &LoopPlan,
    tile: TileRanks<'_>,
    neginf: &[TensorId],
) -> Vec<bool> {
    let n = c.einsums.len();
    let per_tile: Vec<bool> = c
        .einsum_ids()
        .map(|id| c.einsum(id).section == Section::Body && tile.per_tile(c, id))
        .collect();
    // Inputs that hold -inf on a dead tile, and the init layouts of them (`BM[m1,m0,p] =
    // MASK[m1*M0+m0, p]`).
    let mut masked: Vec<TensorId> = neginf.to_vec();
    for e in c.einsums.iter().filter(|e| e.section == Section::Init) {
        if let Expr::Access(a) = c.expr(e.value)
            && masked.contains(&a.tensor)
        {
            masked.push(e.output.tensor);
        }
    }
    // Forward: each per-tile Einsum's value on the dead tile, in program order (the step's
    // order; a state read at `r` is its old value, at `r+1` the value this step wrote).
    let mut value: Vec<Option<Value>> = vec![None; c.tensors.len()];
    let mut einsum_value = vec![Value::Any; n];
    let mut across = vec![false; n];
    let mut contribution_noop = vec![false; n];
    for id in c.einsum_ids().filter(|id| per_tile[id.index()]) {
        let e = c.einsum(id);
        let mapped = if e.output.filters.is_empty() {
            eval(c, e.value, &value, &masked)
        } else {
            Value::Absent
        };
        let keeps_key = e.output.indices.iter().any(|ix| {
            let mut vars = Vec::new();
            ix.collect_vars(&mut vars);
            vars.iter().any(|r| tile.key.contains(r))
        });
        let v = match c.reduce_op(id) {
            // A reduction over the key beyond this tile: the tile changes nothing when what it
            // contributes is the reduction's identity.
            Some(op) if !keeps_key => {
                across[id.index()] = true;
                contribution_noop[id.index()] = matches!(
                    (op, mapped),
                    (_, Value::Absent)
                        | (ReduceOp::Sum, Value::Zero)
                        | (ReduceOp::Max, Value::NegInf)
                        | (ReduceOp::Prod, Value::One)
                );
                Value::Any
            }
            // Reduced within the tile: a fiber of absent points is absent, zeros sum to 0,
            // the max of -infs is -inf; anything else is unknown.
            Some(op) => match (op, mapped) {
                (_, Value::Absent) => Value::Absent,
                (ReduceOp::Sum, Value::Zero) => Value::Zero,
                (ReduceOp::Max | ReduceOp::Min, x @ (Value::NegInf | Value::Zero)) => x,
                _ => Value::Any,
            },
            None => mapped,
        };
        einsum_value[id.index()] = v;
        if plan.phase(id) != Phase::PostLoop {
            value[e.output.tensor.index()] = Some(v);
        }
    }
    // Backward: an Einsum skips when its value is absent, when it leaves its own state
    // unchanged, when it is a key reduction the tile cannot change, or when nothing that reads
    // it on the tile still runs there (and it is no output).
    let state = |id: EinsumId| {
        c.einsum(id)
            .output
            .indices
            .iter()
            .any(|i| i.shifted_var().is_some())
    };
    let mut skip = vec![false; n];
    let ids: Vec<EinsumId> = c.einsum_ids().collect();
    for &id in ids.iter().rev().filter(|id| per_tile[id.index()]) {
        let x = id.index();
        let t = c.einsum(id).output.tensor;
        let v = einsum_value[x];
        skip[x] = if state(id) {
            v == Value::Old(t)
        } else if across[x] {
            contribution_noop[x]
        } else if v == Value::Absent {
            true
        } else {
            let readers_skip = c.einsum_ids().filter(|&r| r != id).all(|r| {
                let reads = c.accesses(c.einsum(r).value).iter().any(|a| a.tensor == t);
                !reads || (per_tile[r.index()] && skip[r.index()])
            });
            !c.outputs.contains(&t) && readers_skip
        };
    }
    skip
}

/// The symbolic value of an expression on a dead tile.
fn eval(c: &Cascade, id: ExprId, value: &[Option<Value>], neginf: &[TensorId]) -> Value {
    match c.expr(id) {
        Expr::Access(a) => access_value(c, a, value, neginf),
        Expr::Const(Constant::Num(x)) if *x == 0.0 => Value::Zero,
        Expr::Const(Constant::Num(x)) if *x == 1.0 => Value::One,
        Expr::Const(Constant::NegInf) => Value::NegInf,
        Expr::Const(_) => Value::Any,
        Expr::Unary(op, arg) => unary(*op, eval(c, *arg, value, neginf)),
        Expr::Binary {
            op,
            merge,
            lhs,
            rhs,
        } => {
            let (l, r) = (eval(c, *lhs, value, neginf), eval(c, *rhs, value, neginf));
            binary(*op, *merge, l, r)
        }
    }
}

fn access_value(c: &Cascade, a: &Access, value: &[Option<Value>], masked: &[TensorId]) -> Value {
    if !a.filters.is_empty() {
        return Value::Absent;
    }
    if masked.contains(&a.tensor) {
        return Value::NegInf;
    }
    // A state read at the previous step: its value before this step.
    let carried = c.einsums.iter().any(|e| {
        e.section == Section::Body
            && e.output.tensor == a.tensor
            && crate::graph::carried_rank(&e.output, a).is_some()
    });
    if carried {
        return Value::Old(a.tensor);
    }
    // Written earlier on this tile, else an input or written before the loop: present, unknown.
    value[a.tensor.index()].unwrap_or(Value::Any)
}

fn unary(op: UnaryOp, v: Value) -> Value {
    use Value::*;
    match (op, v) {
        (_, Absent) => Absent,
        (UnaryOp::Exp, NegInf) => Zero,
        (UnaryOp::Exp, Zero) => One,
        (UnaryOp::Neg | UnaryOp::Relu | UnaryOp::Sqrt | UnaryOp::Tanh, Zero) => Zero,
        (UnaryOp::Relu | UnaryOp::Sigmoid | UnaryOp::Softplus | UnaryOp::Elu1, NegInf) => Zero,
        (UnaryOp::Elu1, Zero) => One,
        (UnaryOp::Recip | UnaryOp::Sqrt, One) => One,
        _ => Any,
    }
}

fn binary(op: BinaryOp, merge: Merge, l: Value, r: Value) -> Value {
    use Value::*;
    // Which points are computed, and what an absent operand counts as.
    let (l, r) = match (merge, l, r) {
        (Merge::All, Absent, Absent) => (Zero, Zero),
        (_, Absent, Absent) => return Absent,
        (Merge::Intersect, Absent, _) | (Merge::Intersect, _, Absent) => return Absent,
        (Merge::Right, _, Absent) => return Absent,
        (Merge::Union, x, Absent) => return union_alone(op, x, true),
        (Merge::Union, Absent, x) => return union_alone(op, x, false),
        (Merge::Right | Merge::All, Absent, x) => (Zero, x),
        (Merge::All, x, Absent) => (x, Zero),
        (_, x, y) => (x, y),
    };
    match (op, l, r) {
        (BinaryOp::Add, Zero, x) | (BinaryOp::Add, x, Zero) => x,
        (BinaryOp::Add | BinaryOp::Sub, NegInf, x) if x != NegInf => NegInf,
        (BinaryOp::Add, x, NegInf) if x != NegInf => NegInf,
        (BinaryOp::Sub, x, Zero) => x,
        (BinaryOp::Mul, Zero, x) | (BinaryOp::Mul, x, Zero) if x != NegInf => Zero,
        (BinaryOp::Mul, One, x) | (BinaryOp::Mul, x, One) => x,
        (BinaryOp::Div, Zero, _) => Zero,
        (BinaryOp::Div, x, One) => x,
        (BinaryOp::Max, x, NegInf) | (BinaryOp::Max, NegInf, x) => x,
        (BinaryOp::Max | BinaryOp::Min, x, y) if x == y => x,
        (BinaryOp::SubExp, NegInf, _) => Zero,
        // exp(s - s) = 1: the module doc says when this holds.
        (BinaryOp::SubExp, Old(a), Old(b)) if a == b => One,
        (BinaryOp::SubExp, Zero, Zero) => One,
        _ => Any,
    }
}

/// The value of `op` under `∪` with one operand absent: the present one passes through, except
/// that `∅ - b = -b`.
fn union_alone(op: BinaryOp, x: Value, left_present: bool) -> Value {
    match (op, left_present) {
        (BinaryOp::Sub, false) => unary(UnaryOp::Neg, x),
        (BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Max | BinaryOp::Min, _) => x,
        (BinaryOp::Div, true) => x,
        _ => Value::Any,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsl;

    fn parse(src: &str) -> Cascade {
        dsl::parse(src, "test").expect("parses").cascade
    }

    fn library(name: &str) -> Cascade {
        parse(crate::library::source(name).expect("library cascade"))
    }

    fn ranks(c: &Cascade, names: &[&str]) -> Vec<RankId> {
        names.iter().filter_map(|n| c.rank_by_name(n)).collect()
    }

    fn skips(c: &Cascade, key: &[&str], query: &[&str], neginf: &[&str]) -> Vec<(String, bool)> {
        let plan = LoopPlan::new(c);
        let (k, q) = (ranks(c, key), ranks(c, query));
        let masks: Vec<TensorId> = neginf.iter().filter_map(|n| c.tensor_by_name(n)).collect();
        let tile = TileRanks { key: &k, query: &q };
        let skip = dead_tile_skips(c, &plan, tile, &masks);
        c.einsum_ids()
            .filter(|&id| tile.per_tile(c, id) && c.einsum(id).section == Section::Body)
            .map(|id| {
                (
                    c.tensor(c.einsum(id).output.tensor).name.clone(),
                    skip[id.index()],
                )
            })
            .collect()
    }

    #[test]
    fn every_disjunct_holds_the_loop_plans_guard() {
        for name in crate::library::names() {
            let c = library(name);
            let plan = LoopPlan::new(&c);
            for (id, dnf) in c.einsum_ids().zip(presence(&c, &plan)) {
                let guard = &plan.placement(id).space.guard;
                for conj in &dnf {
                    assert!(
                        guard.iter().all(|k| conj.contains(k)),
                        "{name}: {conj:?} lacks {guard:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_union_of_masks_stays_a_union() {
        let c = parse(
            "cascade sw\nranks E F M P\nparam S W\ninput Q[E,P] K[E,M] V[F,M]\n\n\
             QS[m,p] = Q[e,p] * K[e, m : m < S && m <= p]\n\
             QW[m,p] = Q[e,p] * K[e, m : m >= S && m <= p && p - m < W]\n\
             QK[m,p] = QS[m,p] + QW[m,p]\n\
             GM[p] = max(m) QK[m,p]\n\
             SN[m,p] = exp(QK[m,p] - GM[p])\n\
             AV[f,p] = SN[m,p] * V[f,m]\n\noutput AV\n",
        );
        let plan = LoopPlan::new(&c);
        let p = presence(&c, &plan);
        let qk = c.einsum_ids().nth(2).unwrap();
        let sn = c.einsum_ids().nth(4).unwrap();
        assert_eq!(p[qk.index()].len(), 2, "{:?}", p[qk.index()]);
        // SN reads QK (and GM, present everywhere) under ∩: the union carries through.
        assert_eq!(p[sn.index()].len(), 2, "{:?}", p[sn.index()]);
        // The loop plan keeps only what the two masks share.
        assert_eq!(plan.placement(qk).space.guard.len(), 1);
    }

    #[test]
    fn the_masked_one_pass_forms_skip_every_dead_tile() {
        // Causal: scores absent, the running max, sum and numerator unchanged; the final
        // division runs after the loop and is not per tile.
        let c = library("attention_causal_1pass");
        let got = skips(&c, &["M", "M1", "M0"], &["P"], &[]);
        assert!(got.iter().all(|(_, s)| *s), "{got:?}");
        // A data mask of -inf: scores -inf, exp gives zeros, the states stay.
        let c = library("attention_masked_1pass");
        let got = skips(&c, &["M", "M1", "M0"], &["P"], &["MASK"]);
        assert!(got.iter().all(|(_, s)| *s), "{got:?}");
    }

    #[test]
    fn the_three_pass_window_skips_its_zero_weights() {
        // A = SN / SD is a present 0 where SN is absent (← counts it as 0), and AV sums it.
        let c = library("attention_window_3pass");
        let got = skips(&c, &["M"], &["P"], &[]);
        assert!(got.iter().all(|(_, s)| *s), "{got:?}");
    }

    #[test]
    fn an_unfiltered_score_that_feeds_an_exp_is_not_skipped() {
        // Without a mask the scores are present; exp(QK - GM) of a present score is unknown,
        // so nothing may skip (and no tile is dead, which `live_filters` says).
        let c = library("attention_3pass");
        let got = skips(&c, &["M"], &["P"], &[]);
        assert!(got.iter().all(|(_, s)| !*s), "{got:?}");
        let plan = LoopPlan::new(&c);
        let k = ranks(&c, &["M"]);
        let q = ranks(&c, &["P"]);
        let tile = TileRanks { key: &k, query: &q };
        assert!(live_filters(&c, &plan, tile).is_empty());
    }

    #[test]
    fn a_bias_brought_back_by_union_keeps_the_tile_alive() {
        // `QK + B` under ∪: the bias is present where the score is masked (the masking trap),
        // so the tile's work is not skippable.
        let c = parse(
            "cascade trap\nranks E F M P\ninput Q[E,P] K[E,M] V[F,M] B[M,P]\n\n\
             QK[m,p] = Q[e,p] * K[e, m : m <= p]\n\
             S[m,p] = QK[m,p] + B[m,p]\n\
             GM[p] = max(m) S[m,p]\n\
             SN[m,p] = exp(S[m,p] - GM[p])\n\
             SD[p] = SN[m,p]\n\
             AV[f,p] = SN[m,p] * V[f,m]\n\
             OUT[f,p] = AV[f,p] / SD[p]\n\noutput OUT\n",
        );
        let got = skips(&c, &["M"], &["P"], &[]);
        let s = got.iter().find(|(n, _)| n == "SN").unwrap();
        assert!(!s.1, "{got:?}");
        assert!(got.iter().find(|(n, _)| n == "QK").unwrap().1, "{got:?}");
    }
}
