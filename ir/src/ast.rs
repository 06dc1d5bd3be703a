//! The cascade IR: ranks, tensors and Extended Einsums stored in flat arenas with typed ids.
//!
//! A [`Cascade`] is plain data. Every name is interned once: ranks in `ranks`, tensors in
//! `tensors`, expression nodes in `exprs` (children before parents) and Einsums in `einsums`
//! (Initialization section first, then the Extended Einsums section, each in program order).
//! Ids index those vectors, so walking a cascade is a loop over slices.
//!
//! # Semantics (EDGE, as interpreted by `eval`, `passes`, the rewriter and code generation)
//!
//! * Index variables are the lowercase names of ranks: rank `M1` is iterated by `m1`.
//!   A rank may be split (`split M -> M1 M0`): `m = m1*M0 + m0`, `|M| = |M1|·|M0|`.
//!   A split may name a second variable over its inner rank (`split M -> M1 M0 N0`): `N0` has
//!   the size of `M0`, so `m1*M0+n0` is another element of the same tile as `m1*M0+m0` (the
//!   keys of a query's chunk in chunked linear attention); it is a rank of its own everywhere
//!   else, and only its size is tied.
//! * An Einsum's iteration space is every rank whose variable appears in its output or operands.
//!   Ranks that appear in operands but not in the output are reduced: by the explicit
//!   [`Reduction`] if present, else by `+` (Einstein convention).
//! * Every point of every tensor is either *present* (holds a value, possibly `-inf` or 0) or
//!   *absent*. Inputs are present everywhere. Points removed by a filter are absent. An Einsum
//!   whose right-hand side is the bare literal `0` leaves its points absent: 0 is every tensor's
//!   fill value, as in the paper's `RD[0,p] = 0`.
//! * Merge ops decide which points of a binary map are computed ([`Merge`]); a reduction combines
//!   the present points only, and a fiber with no present point yields an absent result.
//! * `-inf` is a value. `exp(x - c)` is 0 whenever `x = -inf`, whatever `c` (also `c = -inf`),
//!   and `0 / 0` is 0, so a row whose scores are all `-inf` produces zeros, never NaN.
//! * A filter on the output access (`X[m : m < 2] = …`) makes the value absent wherever it
//!   fails: nothing is written there and nothing is reduced into the output from there. A
//!   variable used only by an output filter is reduced.
//! * A rank is iterative when some Einsum writes a tensor at `r+1`; a cascade has at most one.
//!   Iterative state tensors have extent `|R|+1` along that rank. `init` Einsums run once, first,
//!   and write state at `0` only. An `einsums` Einsum whose *output indices* use the rank's
//!   variable runs once per step `r = 0, 1, …` until the stop condition holds, in program order
//!   within a step. Every other `einsums` Einsum runs once over its whole space: after the loop
//!   when it reads a tensor the loop (or such an after-loop Einsum) writes, before it otherwise.
//!   So a reduction over the iterative rank itself (`MX[e] = max(m) K[e,m]` beside a fold over
//!   `m`) reduces the whole rank once; it is never run step by step.
//! * Within a step an Einsum reads a tensor the loop writes at the index this step wrote it
//!   (`BQK[m1,…]`, the new state `RM[m1+1,p]`), at an earlier step (`RM[m1,p]`, the previous
//!   state) or at `0` (the initial state). Reading a later step, the final state (`RNV[f,M1,p]`)
//!   or a tensor only complete after the loop from inside the loop has no meaning: `verify`
//!   rejects it and says how to write it instead. [`crate::plan::LoopPlan`] is the one
//!   implementation of these rules; every stage reads it.

use std::fmt;

/// Index of a rank in [`Cascade::ranks`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RankId(pub u32);

/// Index of a tensor in [`Cascade::tensors`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TensorId(pub u32);

/// Index of an Einsum in [`Cascade::einsums`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EinsumId(pub u32);

/// Index of an expression node in [`Cascade::exprs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExprId(pub u32);

macro_rules! id_index {
    ($($id:ident),*) => {$(
        impl $id {
            /// The position in the owning arena.
            pub fn index(self) -> usize {
                self.0 as usize
            }
        }
    )*};
}
id_index!(RankId, TensorId, EinsumId, ExprId);

/// A whole cascade: declarations, Einsums, outputs and the optional stopping condition.
///
/// **Invariant:** `exprs` lists children before parents; every id stored anywhere in the
/// cascade indexes the corresponding arena. `verify` checks the semantic invariants.
#[derive(Debug, Clone, PartialEq)]
pub struct Cascade {
    pub name: String,
    pub ranks: Vec<Rank>,
    pub tensors: Vec<Tensor>,
    pub exprs: Vec<Expr>,
    pub einsums: Vec<Einsum>,
    pub outputs: Vec<TensorId>,
    pub stop: Option<Compare>,
}

/// A declared rank (`M`), possibly the outer or inner part of a split, or a size parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rank {
    /// Uppercase name as written (`M1`); its index variable is the lowercase name (`m1`).
    pub name: String,
    /// `Some((outer, inner))` when this rank is split: `r = outer*|inner| + inner`.
    pub split: Option<(RankId, RankId)>,
    /// `Some(inner)` when this rank is the second variable of a split (`N0` of
    /// `split M -> M1 M0 N0`): it ranges over the values of `inner` (`|N0| = |M0|`), so
    /// `m1*M0+n0` indexes the same tile of `M` as `m1*M0+m0`.
    pub range_of: Option<RankId>,
    /// A parameter (`param W`) has a size but is never iterated.
    pub is_param: bool,
}

/// How a tensor enters the cascade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TensorKind {
    Input,
    Intermediate,
}

/// A declared or inferred tensor with the rank of each of its dimensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tensor {
    pub name: String,
    pub kind: TensorKind,
    /// The rank of each dimension, in order. Empty for scalars.
    pub ranks: Vec<RankId>,
}

/// Which section an Einsum belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Section {
    /// Runs once before everything else (`init`).
    Init,
    /// The Extended Einsums, run in order (per iteration for iterative ranks).
    Body,
}

/// One Extended Einsum: `output = reduction? value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Einsum {
    pub section: Section,
    pub output: Access,
    /// Explicit reduction written as `max(m) …`; `None` means `+` over the leftover ranks.
    pub reduction: Option<Reduction>,
    pub value: ExprId,
}

/// An explicit reduce action over named ranks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reduction {
    pub op: ReduceOp,
    pub ranks: Vec<RankId>,
}

/// Reduce compute ops. The merge of a reduction is always `∪` (present points only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    Sum,
    Max,
    Min,
    Prod,
}

/// A tensor access `T[i0, i1 : filter, …]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Access {
    pub tensor: TensorId,
    pub indices: Vec<IndexExpr>,
    /// Filters attached to index positions (`m : m <= p`); the operand is absent where any
    /// condition is false. Sorted by position; a position may carry several conditions.
    pub filters: Vec<Filter>,
}

/// A filter on one index position of an access: all `conds` must hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub position: usize,
    pub conds: Vec<Compare>,
}

/// An affine comparison of index expressions (`p - m < W`).
#[derive(Debug, Clone, PartialEq)]
pub struct Compare {
    pub lhs: IndexExpr,
    pub op: CompareOp,
    pub rhs: IndexExpr,
}

/// Comparison operators of filters and stopping conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompareOp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

/// Integer index arithmetic: `m`, `m1+1`, `0`, `M1`, `m1*M0+m0`, `p - m`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IndexExpr {
    /// The index variable of a rank (`m1`).
    Var(RankId),
    /// The size of a rank or parameter (`M1`, `W`).
    Size(RankId),
    /// An integer literal.
    Lit(i64),
    Add(Box<IndexExpr>, Box<IndexExpr>),
    Sub(Box<IndexExpr>, Box<IndexExpr>),
    Mul(Box<IndexExpr>, Box<IndexExpr>),
}

/// An expression node of an Einsum's right-hand side.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Access(Access),
    Const(Constant),
    Unary(UnaryOp, ExprId),
    Binary {
        op: BinaryOp,
        merge: Merge,
        lhs: ExprId,
        rhs: ExprId,
    },
}

/// Constants a map action may use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Constant {
    Num(f64),
    NegInf,
    /// `1/sqrt(E)`: the reciprocal square root of a rank's size.
    InvSqrtSize(RankId),
}

/// Unary user functions of map actions. Each is defined by its row of [`crate::ops::UNARY`]
/// (name, op kind, function, C spelling), in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UnaryOp {
    Exp,
    Neg,
    Recip,
    Sqrt,
    Sigmoid,
    Softplus,
    Relu,
    /// `elu(x) + 1`, the linear-attention feature map.
    Elu1,
    Tanh,
}

/// Binary compute ops of map actions, each defined by its row of [`crate::ops::BINARY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
    /// `exp(lhs - rhs)` as one action (FuseMax's sub-then-exp).
    SubExp,
}

/// Merge ops: which points of a binary map are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Merge {
    /// `∩` (`{&}`): both operands present.
    Intersect,
    /// `∪` (`{|}`): either present; a lone operand passes through (`a + ∅ = a`, `∅ - b = -b`,
    /// `max(a, ∅) = a`, `a × ∅ = a`).
    Union,
    /// `←` (`{<-}`): where the right operand is present; an absent left operand counts as 0.
    Right,
    /// `1` (`{1}`): every point of the iteration space; absent operands count as 0.
    All,
}

impl BinaryOp {
    /// The merge an op gets when the source does not write one.
    pub fn default_merge(self) -> Merge {
        self.info().default_merge
    }
}

impl Cascade {
    pub fn rank(&self, id: RankId) -> &Rank {
        &self.ranks[id.index()]
    }

    pub fn tensor(&self, id: TensorId) -> &Tensor {
        &self.tensors[id.index()]
    }

    pub fn expr(&self, id: ExprId) -> &Expr {
        &self.exprs[id.index()]
    }

    pub fn einsum(&self, id: EinsumId) -> &Einsum {
        &self.einsums[id.index()]
    }

    /// The second variable over the range of split part `inner` (`N0` for `M0` in
    /// `split M -> M1 M0 N0`), if the cascade declares one.
    pub fn second_variable(&self, inner: RankId) -> Option<RankId> {
        self.ranks
            .iter()
            .position(|r| r.range_of == Some(inner))
            .map(|i| RankId(i as u32))
    }

    /// The parts of a split rank that index it with its outer part: the inner rank and its
    /// second variable, if any (`M0`, `N0`).
    pub fn inner_parts(&self, inner: RankId) -> Vec<RankId> {
        let mut parts = vec![inner];
        parts.extend(self.second_variable(inner));
        parts
    }

    /// The first second inner variable of a split with the first Einsum that iterates it
    /// (`None` when none does), for a stage that does not model one to name in its refusal.
    pub fn second_variable_use(&self) -> Option<(RankId, Option<EinsumId>)> {
        let second = RankId(self.ranks.iter().position(|r| r.range_of.is_some())? as u32);
        let user = self
            .einsum_ids()
            .find(|&id| self.iteration_space(id).contains(&second));
        Some((second, user))
    }

    pub fn rank_by_name(&self, name: &str) -> Option<RankId> {
        self.ranks
            .iter()
            .position(|r| r.name == name)
            .map(|i| RankId(i as u32))
    }

    pub fn tensor_by_name(&self, name: &str) -> Option<TensorId> {
        self.tensors
            .iter()
            .position(|t| t.name == name)
            .map(|i| TensorId(i as u32))
    }

    /// The index variable that iterates a rank (`m1` for `M1`).
    pub fn var_name(&self, id: RankId) -> String {
        self.rank(id).name.to_lowercase()
    }

    /// Ids of all Einsums, in program order.
    pub fn einsum_ids(&self) -> impl Iterator<Item = EinsumId> + '_ {
        (0..self.einsums.len()).map(|i| EinsumId(i as u32))
    }

    /// Ranks written as `r+k` (k ≠ 0) in some Einsum output: the iterative ranks, sorted.
    pub fn iterative_ranks(&self) -> Vec<RankId> {
        let mut found = Vec::new();
        for e in &self.einsums {
            for idx in &e.output.indices {
                if let Some(rank) = idx.shifted_var()
                    && !found.contains(&rank)
                {
                    found.push(rank);
                }
            }
        }
        found.sort();
        found
    }

    /// Every access in the expression tree rooted at `root`, left to right. Iterative, so an
    /// expression of any depth is walked without recursion.
    pub fn accesses(&self, root: ExprId) -> Vec<&Access> {
        let mut out = Vec::new();
        let mut stack = vec![root];
        while let Some(id) = stack.pop() {
            match self.expr(id) {
                Expr::Access(a) => out.push(a),
                Expr::Const(_) => {}
                Expr::Unary(_, arg) => stack.push(*arg),
                Expr::Binary { lhs, rhs, .. } => stack.extend([*rhs, *lhs]),
            }
        }
        out
    }

    /// The nodes of the expression tree rooted at `root` in post-order, operands left to right
    /// before their parent: the order a recursive walk would visit them (a node shared by two
    /// parents appears once per use). Iterative, so any depth is walked without recursion.
    pub fn post_order(&self, root: ExprId) -> Vec<ExprId> {
        let mut out = Vec::new();
        // `(node, children pushed)`: a node is emitted on its second visit.
        let mut stack = vec![(root, false)];
        while let Some((id, expanded)) = stack.pop() {
            if expanded {
                out.push(id);
                continue;
            }
            stack.push((id, true));
            match self.expr(id) {
                Expr::Access(_) | Expr::Const(_) => {}
                Expr::Unary(_, arg) => stack.push((*arg, false)),
                Expr::Binary { lhs, rhs, .. } => {
                    stack.push((*rhs, false));
                    stack.push((*lhs, false));
                }
            }
        }
        out
    }

    /// For each tensor, the Einsums that write it, in program order.
    pub fn writers(&self) -> Writers {
        Writers::of(self)
    }

    /// The index variables an Einsum iterates over (output, operands and filters), sorted.
    pub fn iteration_space(&self, id: EinsumId) -> Vec<RankId> {
        let e = self.einsum(id);
        let mut vars = Vec::new();
        e.output.collect_vars(&mut vars);
        for a in self.accesses(e.value) {
            a.collect_vars(&mut vars);
        }
        vars.sort();
        vars.dedup();
        vars
    }

    /// The ranks an Einsum reduces: in its space but not in its output's indices, sorted (a
    /// variable used only by an output filter is reduced).
    pub fn reduced_ranks(&self, id: EinsumId) -> Vec<RankId> {
        let mut out_vars = Vec::new();
        for idx in &self.einsum(id).output.indices {
            idx.collect_vars(&mut out_vars);
        }
        self.iteration_space(id)
            .into_iter()
            .filter(|r| !out_vars.contains(r))
            .collect()
    }

    /// The reduce op of an Einsum (explicit or the implicit `+`), if it reduces anything.
    pub fn reduce_op(&self, id: EinsumId) -> Option<ReduceOp> {
        let e = self.einsum(id);
        match &e.reduction {
            Some(r) => Some(r.op),
            None if !self.reduced_ranks(id).is_empty() => Some(ReduceOp::Sum),
            None => None,
        }
    }
}

/// The Einsums that write each tensor, in program order, in two flat vectors (one allocation
/// each however many tensors there are).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Writers {
    /// `ids[start[t]..start[t + 1]]` write tensor `t`.
    start: Vec<usize>,
    ids: Vec<EinsumId>,
}

impl Writers {
    fn of(c: &Cascade) -> Writers {
        let n = c.tensors.len();
        let mut start = vec![0usize; n + 1];
        let tensor = |id: EinsumId| c.einsum(id).output.tensor.index();
        for id in c.einsum_ids().filter(|id| tensor(*id) < n) {
            start[tensor(id) + 1] += 1;
        }
        for t in 0..n {
            start[t + 1] += start[t];
        }
        let mut next = start.clone();
        let mut ids = vec![EinsumId(0); start[n]];
        for id in c.einsum_ids().filter(|id| tensor(*id) < n) {
            ids[next[tensor(id)]] = id;
            next[tensor(id)] += 1;
        }
        Writers { start, ids }
    }

    /// The writers of `t`, in program order (none for a tensor id out of range).
    pub fn of_tensor(&self, t: TensorId) -> &[EinsumId] {
        match (self.start.get(t.index()), self.start.get(t.index() + 1)) {
            (Some(&a), Some(&b)) => &self.ids[a..b],
            _ => &[],
        }
    }
}

impl Access {
    /// Index variables used by this access, including in its filters.
    pub fn collect_vars(&self, out: &mut Vec<RankId>) {
        for idx in &self.indices {
            idx.collect_vars(out);
        }
        for f in &self.filters {
            for c in &f.conds {
                c.lhs.collect_vars(out);
                c.rhs.collect_vars(out);
            }
        }
    }
}

impl IndexExpr {
    /// The index of a split rank from its parts: `outer*|inner| + inner` (`m1*M0+m0`).
    pub fn tiled(outer: RankId, inner: RankId) -> IndexExpr {
        IndexExpr::Add(
            Box::new(IndexExpr::Mul(
                Box::new(IndexExpr::Var(outer)),
                Box::new(IndexExpr::Size(inner)),
            )),
            Box::new(IndexExpr::Var(inner)),
        )
    }

    /// Pushes every `Var` in this expression.
    pub fn collect_vars(&self, out: &mut Vec<RankId>) {
        match self {
            IndexExpr::Var(r) => {
                if !out.contains(r) {
                    out.push(*r);
                }
            }
            IndexExpr::Size(_) | IndexExpr::Lit(_) => {}
            IndexExpr::Add(a, b) | IndexExpr::Sub(a, b) | IndexExpr::Mul(a, b) => {
                a.collect_vars(out);
                b.collect_vars(out);
            }
        }
    }

    /// `Some(r)` when this is `r + k` or `r - k` with a literal `k ≠ 0`.
    pub fn shifted_var(&self) -> Option<RankId> {
        match self {
            IndexExpr::Add(a, b) | IndexExpr::Sub(a, b) => match (&**a, &**b) {
                (IndexExpr::Var(r), IndexExpr::Lit(k)) if *k != 0 => Some(*r),
                _ => None,
            },
            _ => None,
        }
    }

    /// Evaluates the expression with `var` giving each variable's value and `size` each size;
    /// `None` when a step overflows `i64` (an index near `i64::MAX` is no index of any tensor).
    pub fn eval(&self, var: &impl Fn(RankId) -> i64, size: &impl Fn(RankId) -> i64) -> Option<i64> {
        Some(match self {
            IndexExpr::Var(r) => var(*r),
            IndexExpr::Size(r) => size(*r),
            IndexExpr::Lit(k) => *k,
            IndexExpr::Add(a, b) => a.eval(var, size)?.checked_add(b.eval(var, size)?)?,
            IndexExpr::Sub(a, b) => a.eval(var, size)?.checked_sub(b.eval(var, size)?)?,
            IndexExpr::Mul(a, b) => a.eval(var, size)?.checked_mul(b.eval(var, size)?)?,
        })
    }

    /// How deep the expression nests (a variable, size or literal is 1). Iterative.
    pub fn depth(&self) -> usize {
        let mut deepest = 0;
        let mut stack = vec![(self, 1)];
        while let Some((e, d)) = stack.pop() {
            deepest = deepest.max(d);
            if let IndexExpr::Add(a, b) | IndexExpr::Sub(a, b) | IndexExpr::Mul(a, b) = e {
                stack.push((a, d + 1));
                stack.push((b, d + 1));
            }
        }
        deepest
    }
}

impl Compare {
    /// Whether the comparison holds; `None` when evaluating a side overflows `i64`.
    pub fn holds(
        &self,
        var: &impl Fn(RankId) -> i64,
        size: &impl Fn(RankId) -> i64,
    ) -> Option<bool> {
        let (l, r) = (self.lhs.eval(var, size)?, self.rhs.eval(var, size)?);
        Some(match self.op {
            CompareOp::Lt => l < r,
            CompareOp::Le => l <= r,
            CompareOp::Gt => l > r,
            CompareOp::Ge => l >= r,
            CompareOp::Eq => l == r,
            CompareOp::Ne => l != r,
        })
    }
}

impl fmt::Display for ReduceOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Max => "max",
            ReduceOp::Min => "min",
            ReduceOp::Prod => "prod",
        })
    }
}

impl fmt::Display for UnaryOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.info().name)
    }
}

impl std::str::FromStr for UnaryOp {
    type Err = String;

    /// The function the operator table names `s`.
    fn from_str(s: &str) -> Result<UnaryOp, String> {
        UnaryOp::from_name(s).ok_or_else(|| format!("`{s}` is no unary function"))
    }
}

impl fmt::Display for CompareOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
            CompareOp::Eq => "==",
            CompareOp::Ne => "!=",
        })
    }
}

impl fmt::Display for Merge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Merge::Intersect => "&",
            Merge::Union => "|",
            Merge::Right => "<-",
            Merge::All => "1",
        })
    }
}
