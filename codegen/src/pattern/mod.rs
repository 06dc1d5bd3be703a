//! Recognises attention in a cascade by the shape of its Einsums and their dataflow, never by
//! tensor names, and describes it as an [`Attention`]: what the fused kernel computes, in the
//! terms FlexAttention uses — a score function of `Q·K` (with its presence mask), the weights
//! the scores become (a softmax, or the scores themselves) and the outputs formed from the final
//! numerator, denominator and running max.
//!
//! Four forms are recognised, each proven to compute exactly that description:
//! * `online` ([`online`]): FuseMax Cascade 5, the 1-pass online softmax over an iterative rank
//!   `m1` with the states `RM` (running max), `RD` (denominator) and `RNV` (numerator), and any
//!   post-loop epilogue over their final values (sinks, output filters, the max and the sum as
//!   outputs);
//! * `softmax` ([`passes`]): the 3-pass form (`GM = max(m) S`, `SN = exp(S - GM)`,
//!   `SD = sum(m) SN`, `A = SN / SD`, `AV = sum(m) A·V`) and its deferred-division variant;
//! * `split-K` ([`passes`]): the 2-pass local-max form over a split `M -> S M0` (FlashDecoding):
//!   per split a max, numerator and denominator, combined with `exp(LM - GM)`;
//! * `weighted` ([`passes`]): no max and no exponential, `AV = sum(m) W·V` with `W` a pointwise
//!   function of the scores (sigmoid, ReLU attention), optionally divided by `sum(m) W`.
//!
//! The score is the chain of pointwise Einsums from the product `sum(e) Q·K` to the tensor the
//! max (or the weighted sum) reads, inlined into one [`Node`] tree ([`node`]); the heads are the
//! score's ranks other than the key and query ranks, and every tensor is read through them as
//! [`layout`] describes. Anything else — an Einsum with no role, a filter over the head
//! dimension, a computed `Q` — is refused with the reason, and the cascade gets the generic
//! lowering.

mod layout;
mod node;
mod online;
mod passes;

use std::collections::BTreeSet;

use cascade_ir::plan::{LoopPlan, Phase};
use cascade_ir::{
    Access, BinaryOp, Cascade, Compare, EinsumId, Expr, ExprId, IndexExpr, Merge, RankId, ReduceOp,
    TensorId, TensorKind,
};

pub use layout::{DimIndex, TensorUse, dim_index as layout_index};
pub use node::Node;

/// `Err` says what did not match.
type M<T> = Result<T, String>;

/// Which structure the cascade has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Online,
    Softmax,
    SplitK,
    Weighted,
}

impl Form {
    pub fn name(self) -> &'static str {
        match self {
            Form::Online => "1-pass online softmax",
            Form::Softmax => "softmax",
            Form::SplitK => "split-K softmax",
            Form::Weighted => "weighted (no softmax)",
        }
    }
}

/// What the scores become before they weigh the values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weights {
    /// `exp(s - max)`, accumulated with the online rescaling.
    Softmax,
    /// The score itself is the weight (absent scores weigh 0); `normalised` divides the
    /// numerator by the sum of the weights.
    Direct { normalised: bool },
}

/// The key rank and, when the cascade splits it, its outer and inner parts (`m1`/`m0`, `s`/`m0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRanks {
    pub m: RankId,
    pub split: Option<(RankId, RankId)>,
}

impl KeyRanks {
    /// The variables that range over keys: `m`, or the two parts of its split.
    pub fn vars(&self) -> Vec<RankId> {
        match self.split {
            Some((outer, inner)) => vec![outer, inner],
            None => vec![self.m],
        }
    }

    /// `idx` with every `outer*|inner| + inner` written as the key `m` itself.
    pub fn normalise(&self, idx: &IndexExpr) -> IndexExpr {
        if let Some((outer, inner)) = self.split
            && *idx == IndexExpr::tiled(outer, inner)
        {
            return IndexExpr::Var(self.m);
        }
        let sub = |x: &IndexExpr| Box::new(self.normalise(x));
        match idx {
            IndexExpr::Add(a, b) => IndexExpr::Add(sub(a), sub(b)),
            IndexExpr::Sub(a, b) => IndexExpr::Sub(sub(a), sub(b)),
            IndexExpr::Mul(a, b) => IndexExpr::Mul(sub(a), sub(b)),
            other => other.clone(),
        }
    }

    pub fn normalise_cond(&self, k: &Compare) -> Compare {
        Compare {
            lhs: self.normalise(&k.lhs),
            op: k.op,
            rhs: self.normalise(&k.rhs),
        }
    }
}

/// The roles of the ranks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ranks {
    /// The contracted dimension of `Q·K`.
    pub e: RankId,
    /// The value and output feature dimension (`e` again when keys double as values).
    pub f: RankId,
    pub p: RankId,
    /// The parts of the query rank's split when the cascade reads queries by them
    /// (`Q[e, pb*P0+p0]`); every such index is written as `p` itself.
    pub query_split: Option<(RankId, RankId)>,
    pub key: KeyRanks,
    /// Every other variable of the scores (heads, groups, batch ranks), in declaration order:
    /// each output row is one query of one combination of them.
    pub heads: Vec<RankId>,
}

/// The scores: `value` over `Qk` leaves, each present where its conditions hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    pub value: Node,
    /// The presence conditions of each product leaf (its filters), in the key form.
    pub leaves: Vec<Vec<Compare>>,
}

/// One output of the cascade and what the kernel writes into it.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub tensor: TensorId,
    /// Its indices over the kernel's variables (`f`, `p`, heads).
    pub indices: Vec<IndexExpr>,
    /// One value per query row (no `f` index) rather than per output element.
    pub per_row: bool,
    pub value: Node,
}

/// One matched Einsum and the kernel step it becomes (for the generated comments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleEinsum {
    pub role: &'static str,
    pub einsum: EinsumId,
}

/// A cascade recognised as attention: everything the fused kernel needs, target-independent.
#[derive(Debug, Clone, PartialEq)]
pub struct Attention {
    pub form: Form,
    pub ranks: Ranks,
    pub q: TensorUse,
    pub k: TensorUse,
    pub v: TensorUse,
    pub score: Score,
    pub weights: Weights,
    pub outputs: Vec<Output>,
    pub roles: Vec<RoleEinsum>,
}

/// Recognises `c` as one of the attention forms; `Err` says, for the form the cascade comes
/// closest to, what does not match.
pub fn recognise(c: &Cascade) -> M<Attention> {
    // The fused kernel tiles one key variable; a chunk's keys beside its queries (a split's
    // second variable) are for the generic lowering, whose bounds proof knows `|N0| = |M0|`.
    if let Some((second, user)) = c.second_variable_use() {
        let at = user.map_or(String::new(), |id| {
            format!(" in `{}`", cascade_ir::dsl::print_einsum(c, id))
        });
        return Err(format!(
            "the fused kernel tiles one key variable, and {} is a second variable over a split's inner rank{at}",
            c.var_name(second)
        ));
    }
    let found = if c.iterative_ranks().is_empty() {
        passes::recognise(c)
    } else {
        online::recognise(c)
    }?;
    found.check_complete(c)?;
    Ok(found)
}

impl Attention {
    /// Every Einsum has a role: one the kernel would not compute refuses fusion instead of
    /// being dropped.
    fn check_complete(&self, c: &Cascade) -> M<()> {
        let used: BTreeSet<EinsumId> = self.roles.iter().map(|r| r.einsum).collect();
        match c.einsum_ids().find(|id| !used.contains(id)) {
            Some(id) => Err(format!(
                "`{}` has no role in the fused kernel",
                cascade_ir::dsl::print_einsum(c, id)
            )),
            None => Ok(()),
        }
    }
}

/// Matching state shared by the forms: the cascade, its loop plan and the roles found so far.
struct Ctx<'a> {
    c: &'a Cascade,
    plan: LoopPlan,
    key: KeyRanks,
    roles: Vec<RoleEinsum>,
}

impl<'a> Ctx<'a> {
    fn new(c: &'a Cascade, key: KeyRanks) -> Ctx<'a> {
        Ctx {
            c,
            plan: LoopPlan::new(c),
            key,
            roles: Vec::new(),
        }
    }

    fn role(&mut self, role: &'static str, einsum: EinsumId) {
        if !self.roles.iter().any(|r| r.einsum == einsum) {
            self.roles.push(RoleEinsum { role, einsum });
        }
    }

    fn value(&self, id: EinsumId) -> ExprId {
        self.c.einsum(id).value
    }

    fn defs(&self, t: TensorId) -> Vec<EinsumId> {
        self.c
            .einsum_ids()
            .filter(|&id| self.c.einsum(id).output.tensor == t)
            .collect()
    }

    /// The one Einsum writing `t`, which the loop plan runs in `phase`.
    fn only_def(&self, t: TensorId, phase: Phase) -> M<EinsumId> {
        match self.defs(t)[..] {
            [id] if self.plan.phase(id) == phase => Ok(id),
            _ => Err(format!(
                "{} is not defined by exactly one {} Einsum",
                self.c.tensor(t).name,
                phase.name()
            )),
        }
    }

    /// `reduce op` over exactly the ranks `over`.
    fn reduction(&self, id: EinsumId, op: ReduceOp, over: &[RankId]) -> M<()> {
        let mut reduced = self.c.reduced_ranks(id);
        let mut want = over.to_vec();
        reduced.sort();
        want.sort();
        if self.c.reduce_op(id) == Some(op) && reduced == want {
            Ok(())
        } else {
            Err(format!(
                "`{}` is not a {op} over {}",
                cascade_ir::dsl::print_einsum(self.c, id),
                want.iter()
                    .map(|r| self.c.var_name(*r))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
    }

    fn no_output_filter(&self, id: EinsumId) -> M<()> {
        if self.c.einsum(id).output.filters.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "`{}` filters its output; the fused kernel honours filters on the scores and the outputs only",
                cascade_ir::dsl::print_einsum(self.c, id)
            ))
        }
    }

    /// `lhs op rhs` with one of the merges; both operands must be accesses.
    fn binary(&self, id: ExprId, op: BinaryOp, merges: &[Merge]) -> M<(Access, Access)> {
        match self.c.expr(id) {
            Expr::Binary {
                op: o,
                merge: g,
                lhs,
                rhs,
            } if *o == op && merges.contains(g) => Ok((self.access(*lhs)?, self.access(*rhs)?)),
            _ => Err(format!("expected a {op:?} with merge {}", merges[0])),
        }
    }

    fn access(&self, id: ExprId) -> M<Access> {
        match self.c.expr(id) {
            Expr::Access(a) => Ok(a.clone()),
            _ => Err("expected a tensor access".into()),
        }
    }

    /// Indices that are the tensor's own variables, in order.
    fn is_plain(&self, a: &Access) -> bool {
        let t = self.c.tensor(a.tensor);
        t.ranks.len() == a.indices.len()
            && a.indices
                .iter()
                .zip(&t.ranks)
                .all(|(i, r)| *i == IndexExpr::Var(*r))
    }

    /// An unfiltered point-by-point access; its tensor.
    fn plain(&self, a: &Access) -> M<TensorId> {
        if self.is_plain(a) && a.filters.is_empty() {
            Ok(a.tensor)
        } else {
            Err(format!(
                "{} is not read point by point",
                self.c.tensor(a.tensor).name
            ))
        }
    }

    /// The ranks of `t` are exactly `want` and the heads, in any order.
    fn has_ranks(&self, t: TensorId, want: &[RankId], heads: &[RankId]) -> M<()> {
        let mut have = self.c.tensor(t).ranks.clone();
        let mut need: Vec<RankId> = want.iter().chain(heads).copied().collect();
        have.sort();
        need.sort();
        if have == need {
            Ok(())
        } else {
            Err(format!(
                "{} does not have the ranks the fused kernel expects",
                self.c.tensor(t).name
            ))
        }
    }

    /// The input an access reads, through an `init` copy `T[x…] = In[…]` of it when `T` is one
    /// (`BK[e,m1,m0] = K[e, m1*M0+m0]`), with the key index in its key form. `None` when it
    /// reads neither an input nor such a copy.
    fn input_access(&mut self, a: &Access) -> Option<Access> {
        let c = self.c;
        let normalised = |acc: &Access, key: &KeyRanks| Access {
            tensor: acc.tensor,
            indices: acc.indices.iter().map(|i| key.normalise(i)).collect(),
            filters: acc
                .filters
                .iter()
                .map(|f| cascade_ir::Filter {
                    position: f.position,
                    conds: f.conds.iter().map(|k| key.normalise_cond(k)).collect(),
                })
                .collect(),
        };
        if c.tensor(a.tensor).kind == TensorKind::Input {
            return Some(normalised(a, &self.key));
        }
        let [def] = self.defs(a.tensor)[..] else {
            return None;
        };
        if self.plan.phase(def) != Phase::Init || c.reduce_op(def).is_some() {
            return None;
        }
        let out = &c.einsum(def).output;
        let Expr::Access(src) = c.expr(c.einsum(def).value) else {
            return None;
        };
        if c.tensor(src.tensor).kind != TensorKind::Input
            || !src.filters.is_empty()
            || !out.filters.is_empty()
        {
            return None;
        }
        // The copy's output indices are distinct plain variables: substitute the access's.
        let mut map = Vec::new();
        for (i, idx) in out.indices.iter().enumerate() {
            let IndexExpr::Var(v) = idx else { return None };
            if map.iter().any(|(w, _)| w == v) {
                return None;
            }
            map.push((*v, a.indices[i].clone()));
        }
        let indices = src.indices.iter().map(|i| subst(i, &map)).collect();
        self.role("tile copy", def);
        Some(normalised(
            &Access {
                tensor: src.tensor,
                indices,
                filters: a.filters.clone(),
            },
            &self.key,
        ))
    }
}

/// `e` with each variable of `map` replaced by its expression.
fn subst(e: &IndexExpr, map: &[(RankId, IndexExpr)]) -> IndexExpr {
    let sub = |x: &IndexExpr| Box::new(subst(x, map));
    match e {
        IndexExpr::Var(v) => map
            .iter()
            .find(|(w, _)| w == v)
            .map_or_else(|| e.clone(), |(_, x)| x.clone()),
        IndexExpr::Add(a, b) => IndexExpr::Add(sub(a), sub(b)),
        IndexExpr::Sub(a, b) => IndexExpr::Sub(sub(a), sub(b)),
        IndexExpr::Mul(a, b) => IndexExpr::Mul(sub(a), sub(b)),
        other => other.clone(),
    }
}

fn subst_cond(k: &Compare, map: &[(RankId, IndexExpr)]) -> Compare {
    Compare {
        lhs: subst(&k.lhs, map),
        op: k.op,
        rhs: subst(&k.rhs, map),
    }
}

/// The conditions of an access's filters.
fn filter_conds(a: &Access) -> Vec<Compare> {
    a.filters.iter().flat_map(|f| f.conds.clone()).collect()
}

/// What a form's matcher found, before the ranks and layouts are worked out.
struct Parts {
    form: Form,
    weights: Weights,
    score: Node,
    products: Vec<node::Product>,
    /// The value operand of the second product, as an input access in the key form.
    v: Access,
    /// The scores' variables other than the key variables: the query and the heads.
    row_vars: Vec<RankId>,
    /// Each output: its tensor, the indices it is written at, and its value.
    outputs: Vec<(TensorId, Vec<IndexExpr>, Node)>,
}

impl Ctx<'_> {
    /// The value operand of the second product: an input (or its tile copy), unfiltered.
    fn value_operand(&mut self, a: &Access) -> M<Access> {
        if !a.filters.is_empty() {
            return Err(
                "the value operand is filtered; the fused kernel masks scores, not values".into(),
            );
        }
        self.input_access(a).ok_or_else(|| {
            format!(
                "{} is computed; the fused kernel reads V from an input",
                self.c.tensor(a.tensor).name
            )
        })
    }

    /// Works out the ranks and every tensor's layout, and checks that each expression uses
    /// only the variables the kernel has where it evaluates it.
    /// The query rank of the scores: a row variable Q reads plainly and K and V do not (keys do
    /// not depend on the query position), the one a mask uses if several, else the first
    /// declared; or the parts of a split that read Q together (`Q[e, pb*P0+p0]`), with the
    /// split.
    fn query_rank(
        &self,
        parts: &Parts,
        first: &node::Product,
        mask: &[Compare],
    ) -> M<(RankId, Option<(RankId, RankId)>)> {
        let c = self.c;
        let vars_of = |a: &Access| {
            let mut vars = Vec::new();
            for i in &a.indices {
                i.collect_vars(&mut vars);
            }
            vars
        };
        let (k_vars, v_vars) = (vars_of(&first.k), vars_of(&parts.v));
        let mut mask_vars = Vec::new();
        for k in mask {
            k.lhs.collect_vars(&mut mask_vars);
            k.rhs.collect_vars(&mut mask_vars);
        }
        // The query: a row variable Q reads plainly and K and V do not (keys do not depend on
        // the query position); one a mask uses if several, else the first declared.
        let candidates: Vec<RankId> = parts
            .row_vars
            .iter()
            .copied()
            .filter(|r| {
                first.q.indices.contains(&IndexExpr::Var(*r))
                    && !k_vars.contains(r)
                    && !v_vars.contains(r)
            })
            .collect();
        // Or queries read by the parts of a split (`Q[e, pb*P0+p0]`), both row variables.
        let split_query = c.ranks.iter().enumerate().find_map(|(i, r)| {
            let (outer, inner) = r.split?;
            let both = parts.row_vars.contains(&outer) && parts.row_vars.contains(&inner);
            (both && first.q.indices.contains(&IndexExpr::tiled(outer, inner)))
                .then_some((RankId(i as u32), (outer, inner)))
        });
        let found = match candidates
            .iter()
            .copied()
            .find(|r| mask_vars.contains(r))
            .or_else(|| candidates.iter().copied().min())
        {
            Some(p) => (p, None),
            None => match split_query {
                Some((p, split)) => (p, Some(split)),
                None => {
                    return Err(
                        "no rank of the scores is a query position that Q has and K and V lack"
                            .into(),
                    );
                }
            },
        };
        Ok(found)
    }

    /// Each output in the query form (`pb*P0+p0` written `p`), its value checked to use only
    /// the row, head and (for a per-feature output) feature variables.
    fn outputs(
        &self,
        outputs: Vec<(TensorId, Vec<IndexExpr>, Node)>,
        query: &KeyRanks,
        f: RankId,
        p: RankId,
        row_vars: &[RankId],
        heads: &[RankId],
    ) -> M<Vec<Output>> {
        let c = self.c;
        let q_norm = |i: &IndexExpr| query.normalise(i);
        let c_norm = |k: &Compare| query.normalise_cond(k);
        let mut out = Vec::new();
        for (t, idx, value) in outputs {
            let idx: Vec<IndexExpr> = idx.iter().map(|i| q_norm(&self.key.normalise(i))).collect();
            let value = value.map(&q_norm, &c_norm);
            let per_row = !idx.contains(&IndexExpr::Var(f));
            if per_row && value.any(&|n| matches!(n, Node::Numerator)) {
                return Err(format!(
                    "{} reads the numerator without its feature index",
                    c.tensor(t).name
                ));
            }
            let feature = (!per_row).then_some(f);
            let used = TensorUse::new(c, t, idx.clone(), feature, Some(p), heads)?;
            used.covers(c, heads)?;
            let mut allowed: Vec<RankId> = row_vars.iter().chain(heads).copied().collect();
            if !per_row {
                allowed.push(f);
            }
            self.check_node(&value, &allowed, &value.guards(), "output")?;
            out.push(Output {
                tensor: t,
                indices: idx,
                per_row,
                value,
            });
        }
        Ok(out)
    }

    fn assemble(&mut self, parts: Parts) -> M<Attention> {
        let c = self.c;
        let Some(first) = parts.products.first().cloned() else {
            return Err("the scores are not a product Q·K".into());
        };
        let e = first.e;
        let mut mask: Vec<Compare> = parts
            .products
            .iter()
            .flat_map(|p| p.conds.clone())
            .collect();
        mask.extend(parts.score.guards());
        let (p, query_split) = self.query_rank(&parts, &first, &mask)?;
        let query_vars: Vec<RankId> = match query_split {
            Some((outer, inner)) => vec![outer, inner],
            None => vec![p],
        };
        let mut heads: Vec<RankId> = parts
            .row_vars
            .iter()
            .copied()
            .filter(|r| !query_vars.contains(r))
            .collect();
        heads.sort();
        // Every `pb*P0+p0` written as the query `p`.
        let query = KeyRanks {
            m: p,
            split: query_split,
        };
        let q_norm = |i: &IndexExpr| query.normalise(i);
        let c_norm = |k: &Compare| query.normalise_cond(k);
        let score = parts.score.map(&q_norm, &c_norm);
        let products: Vec<node::Product> = parts
            .products
            .iter()
            .map(|pr| node::Product {
                q: Access {
                    indices: pr.q.indices.iter().map(q_norm).collect(),
                    ..pr.q.clone()
                },
                conds: pr.conds.iter().map(c_norm).collect(),
                ..pr.clone()
            })
            .collect();
        let first = products[0].clone();
        let f = match parts.v.indices.first() {
            Some(IndexExpr::Var(f)) => *f,
            _ => return Err("V's first index is not a feature variable".into()),
        };
        let q = TensorUse::new(
            c,
            first.q.tensor,
            first.q.indices.clone(),
            Some(e),
            Some(p),
            &heads,
        )?;
        let k = TensorUse::new(
            c,
            first.k.tensor,
            first.k.indices.clone(),
            Some(e),
            Some(self.key.m),
            &heads,
        )?;
        let v = TensorUse::new(
            c,
            parts.v.tensor,
            parts.v.indices.clone(),
            Some(f),
            Some(self.key.m),
            &heads,
        )?;
        let mut key_vars = self.key.vars();
        key_vars.push(self.key.m);
        let mut row_vars: Vec<RankId> = query_vars.clone();
        row_vars.push(p);
        let score_vars: Vec<RankId> = key_vars
            .iter()
            .chain(&row_vars)
            .chain(&heads)
            .copied()
            .collect();
        let mask: Vec<Compare> = mask.iter().map(c_norm).collect();
        self.check_node(&score, &score_vars, &mask, "score")?;
        let outputs = self.outputs(parts.outputs, &query, f, p, &row_vars, &heads)?;
        let mut roles = std::mem::take(&mut self.roles);
        roles.sort_by_key(|r| r.einsum);
        Ok(Attention {
            form: parts.form,
            ranks: Ranks {
                e,
                f,
                p,
                query_split,
                key: self.key,
                heads,
            },
            q,
            k,
            v,
            score: Score {
                value: score,
                leaves: products.into_iter().map(|p| p.conds).collect(),
            },
            weights: parts.weights,
            outputs,
            roles,
        })
    }

    /// The loads and conditions of `node` (and `conds`) use only `allowed` variables, every
    /// load index is its dimension's variable or split, and every condition is affine.
    fn check_node(&self, node: &Node, allowed: &[RankId], conds: &[Compare], what: &str) -> M<()> {
        let c = self.c;
        for (t, idx) in node.loads() {
            for (r, i) in c.tensor(t).ranks.iter().zip(&idx) {
                if layout::dim_index(c, *r, i).is_none() {
                    return Err(format!(
                        "the {what} reads {}[…{}…], an index the fused kernel does not address",
                        c.tensor(t).name,
                        cascade_ir::dsl::print_index(c, i)
                    ));
                }
            }
        }
        for k in conds {
            if !crate::bounds::affine(&k.lhs) || !crate::bounds::affine(&k.rhs) {
                return Err(format!(
                    "the filter `{}` is not affine",
                    cascade_ir::dsl::print_compare(c, k)
                ));
            }
        }
        let mut vars = node.vars();
        for k in conds {
            k.lhs.collect_vars(&mut vars);
            k.rhs.collect_vars(&mut vars);
        }
        if let Some(v) = vars.iter().find(|v| !allowed.contains(v)) {
            return Err(format!(
                "the {what} uses `{}`, which the fused kernel does not iterate there (a filter over the head dimension, say)",
                c.var_name(*v)
            ));
        }
        Ok(())
    }
}
