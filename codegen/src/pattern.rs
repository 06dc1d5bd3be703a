//! Recognises the online-softmax structure (FuseMax Cascade 5) by the shape of a cascade's
//! Einsums and their dataflow, never by tensor names, so renamed or masked variants still fuse.
//!
//! The roles: `S = sum(e) Q·Kt` (first MMA, optional scale and filters), `LM = max(m0) S`,
//! `RM' = max(RM, LM)`, `SLN = exp(S - RM')`, `SLD = sum(m0) SLN`, `SLNV = sum(m0) SLN·Vt`
//! (second MMA), `PRM = exp(RM - RM')`, `RD' = SLD + RD·PRM`, `RNV' = SLNV + RNV·PRM`,
//! `OUT = RNV[M1] / RD[M1]`, with `RM[0] = -inf` and `RD[0] = RNV[0] = 0`.

use std::collections::BTreeSet;

use cascade_ir::plan::{LoopPlan, Phase};

use cascade_ir::{
    Access, BinaryOp, Cascade, CompareOp, Constant, EinsumId, Expr, ExprId, IndexExpr, Merge,
    RankId, ReduceOp, TensorId, TensorKind,
};

/// Where a state access sits along the iterative rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    Cur,
    Next,
    Zero,
    Final,
}

/// One matched Einsum and the kernel step it becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleEinsum {
    pub role: &'static str,
    pub einsum: EinsumId,
}

/// A cascade recognised as 1-pass online-softmax attention.
#[derive(Debug, Clone)]
pub struct OnlineSoftmax {
    pub q: TensorId,
    pub k: TensorId,
    pub v: TensorId,
    pub out: TensorId,
    pub e: RankId,
    pub f: RankId,
    pub p: RankId,
    pub m: RankId,
    pub m1: RankId,
    pub m0: RankId,
    /// Filters on the score access, over `m1`, `m0`, `p`, sizes and params.
    pub mask: Vec<cascade_ir::Compare>,
    /// A constant the scores are multiplied by (`1/sqrt(E)`), if the cascade has one.
    pub scale: Option<Constant>,
    /// An input `B[M,P]` added to the scores (attention bias / additive mask), if any.
    pub bias: Option<TensorId>,
    pub roles: Vec<RoleEinsum>,
    /// Tensors of the roles, so the kernel's expressions can be rendered from the cascade.
    pub t_s: TensorId,
    /// The product `Q·K` before the bias (the same tensor as `t_s` without one).
    pub t_qk: TensorId,
    /// The tensor the bias Einsum reads (the input or its tile copy).
    pub t_bias_tile: Option<TensorId>,
    /// The Einsum `S = QK + B`, when there is a bias.
    pub e_bias: Option<EinsumId>,
    pub t_lm: TensorId,
    pub t_rm: TensorId,
    pub t_sln: TensorId,
    pub t_sld: TensorId,
    pub t_slnv: TensorId,
    pub t_prm: TensorId,
    pub t_rd: TensorId,
    pub t_rnv: TensorId,
    /// Defining Einsums of the roles whose expressions the kernel renders.
    pub e_rm: EinsumId,
    pub e_sln: EinsumId,
    pub e_prm: EinsumId,
    pub e_rd: EinsumId,
    pub e_rnv: EinsumId,
    pub e_out: EinsumId,
    /// The `RNV·PRM` product of the numerator update (applied before the second MMA adds).
    pub x_rnv_rescale: ExprId,
}

type M<T> = Result<T, String>;

struct Ctx<'a> {
    c: &'a Cascade,
    /// When each Einsum runs: the roles must run per step, the division after the loop and
    /// the initial states and tile copies in `init`.
    plan: LoopPlan,
    m1: RankId,
    used: BTreeSet<EinsumId>,
}

/// Matches `cascade` against the online-softmax structure; `Err` says what did not match.
pub fn match_online_softmax(c: &Cascade) -> M<OnlineSoftmax> {
    let iterative = c.iterative_ranks();
    let [m1] = iterative[..] else {
        return Err(format!(
            "needs exactly one iterative rank, found {}",
            iterative.len()
        ));
    };
    let (m, m0) = c
        .ranks
        .iter()
        .enumerate()
        .find_map(|(i, r)| match r.split {
            Some((outer, inner)) if outer == m1 => Some((RankId(i as u32), inner)),
            _ => None,
        })
        .ok_or("the iterative rank is not the outer rank of a split")?;
    if let Some(stop) = &c.stop {
        let ok = stop.lhs == IndexExpr::Var(m1)
            && stop.op == CompareOp::Ge
            && stop.rhs == IndexExpr::Size(m1);
        if !ok {
            return Err("the stop condition is not `m1 >= M1`".into());
        }
    }
    let [out] = c.outputs[..] else {
        return Err("needs exactly one output".into());
    };
    let mut x = Ctx {
        c,
        plan: LoopPlan::new(c),
        m1,
        used: BTreeSet::new(),
    };

    // OUT = RNV[.., M1, ..] / RD[M1, ..]
    let e_out = x.only_def(out, Phase::PostLoop)?;
    let (n_acc, d_acc) = x.binary(x.value(e_out), BinaryOp::Div, Merge::Right, false)?;
    let (t_rnv, at) = x.state(&n_acc)?;
    let (t_rd, at2) = x.state(&d_acc)?;
    if at != At::Final || at2 != At::Final {
        return Err("the output does not divide the final states".into());
    }
    let out_t = c.tensor(out);
    let [f, p] = out_t.ranks[..] else {
        return Err("the output is not 2-D".into());
    };
    if c.tensor(t_rd).ranks != [m1, p] || c.tensor(t_rnv).ranks != [f, m1, p] {
        return Err("the states are not RD[M1,P] and RNV[F,M1,P]".into());
    }

    // RD' = SLD + RD·PRM and RNV' = SLNV + RNV·PRM
    let e_rd = x.next_def(t_rd)?;
    let (t_sld, t_prm, _) = x.rescaled_sum(e_rd, t_rd)?;
    let e_rnv = x.next_def(t_rnv)?;
    let (t_slnv, t_prm2, x_rnv_rescale) = x.rescaled_sum(e_rnv, t_rnv)?;
    if t_prm != t_prm2 {
        return Err("the two states use different rescale factors".into());
    }
    // PRM = exp(RM - RM')
    let e_prm = x.only_def(t_prm, Phase::Loop)?;
    let (a, b) = x.binary(x.value(e_prm), BinaryOp::SubExp, Merge::Intersect, false)?;
    let ((t_rm, at_a), (t_rm2, at_b)) = (x.state(&a)?, x.state(&b)?);
    if t_rm != t_rm2 || at_a != At::Cur || at_b != At::Next {
        return Err("the rescale factor is not exp(RM[m1] - RM[m1+1])".into());
    }
    // RM' = max(RM, LM)
    let e_rm = x.next_def(t_rm)?;
    let (a, b) = x.binary(x.value(e_rm), BinaryOp::Max, Merge::Union, true)?;
    // LM[m1,p] also reads like a state along m1: pick the operand that is RM itself.
    let (lm_acc, rm_acc) = if x.state(&a).ok() == Some((t_rm, At::Cur)) {
        (b, a)
    } else {
        (a, b)
    };
    if x.state(&rm_acc)? != (t_rm, At::Cur) {
        return Err("the running max does not read RM[m1]".into());
    }
    let t_lm = x.plain(&lm_acc)?;
    // LM = max(m0) S
    let e_lm = x.only_def(t_lm, Phase::Loop)?;
    x.reduction(e_lm, ReduceOp::Max, m0)?;
    let t_s = x.plain(&x.access(x.value(e_lm))?)?;
    // SLD = sum(m0) SLN, SLN = exp(S - RM')
    let e_sld = x.only_def(t_sld, Phase::Loop)?;
    x.reduction(e_sld, ReduceOp::Sum, m0)?;
    let t_sln = x.plain(&x.access(x.value(e_sld))?)?;
    let e_sln = x.only_def(t_sln, Phase::Loop)?;
    let (a, b) = x.binary(x.value(e_sln), BinaryOp::SubExp, Merge::Intersect, false)?;
    if x.plain(&a)? != t_s || x.state(&b)? != (t_rm, At::Next) {
        return Err("the numerators are not exp(S - RM[m1+1])".into());
    }
    // SLNV = sum(m0) SLN·Vt
    let e_slnv = x.only_def(t_slnv, Phase::Loop)?;
    x.reduction(e_slnv, ReduceOp::Sum, m0)?;
    let (a, b) = x.binary(x.value(e_slnv), BinaryOp::Mul, Merge::Intersect, true)?;
    let (sln_acc, v_acc) = if x.plain(&a).ok() == Some(t_sln) {
        (a, b)
    } else {
        (b, a)
    };
    if x.plain(&sln_acc)? != t_sln {
        return Err("the second product does not read the numerators".into());
    }
    if !v_acc.filters.is_empty() {
        return Err(
            "the value operand is filtered; the fused kernel masks scores, not values".into(),
        );
    }
    let v = x.tile_source(&v_acc, f, m, m1, m0)?;
    if c.tensor(t_s).ranks != [m1, m0, p] {
        return Err("the scores are not S[M1,M0,P]".into());
    }
    // Optionally S = QK + Bt with Bt a tile of an input bias B[M,P] (an additive mask).
    let mut bias = None;
    let mut t_qk = t_s;
    let mut t_bias_tile = None;
    let e_bias = x.only_def(t_s, Phase::Loop)?;
    if let Expr::Binary {
        op: BinaryOp::Add,
        merge,
        lhs,
        rhs,
    } = c.expr(x.value(e_bias))
    {
        let (l, r) = (x.access(*lhs)?, x.access(*rhs)?);
        let (qk_acc, b_acc) = if c.reduce_op(x.only_def(l.tensor, Phase::Loop).unwrap_or(e_bias))
            == Some(ReduceOp::Sum)
        {
            (l, r)
        } else {
            (r, l)
        };
        t_qk = x.plain(&qk_acc)?;
        bias = Some((x.bias_source(&b_acc, m, p, m1, m0)?, *merge));
        t_bias_tile = Some(b_acc.tensor);
        x.used.insert(e_bias);
    }
    // QK = sum(e) Q·Kt (· scale)
    let e_s = x.only_def(t_qk, Phase::Loop)?;
    if c.tensor(t_qk).ranks != [m1, m0, p] {
        return Err("the scores are not S[M1,M0,P]".into());
    }
    let mut root = x.value(e_s);
    let mut scale = None;
    if let Expr::Binary {
        op: BinaryOp::Mul,
        merge: Merge::Intersect,
        lhs,
        rhs,
    } = c.expr(root)
    {
        match (c.expr(*lhs), c.expr(*rhs)) {
            (Expr::Binary { .. }, Expr::Const(k)) => (scale, root) = (Some(*k), *lhs),
            (Expr::Const(k), Expr::Binary { .. }) => (scale, root) = (Some(*k), *rhs),
            _ => {}
        }
    }
    let reduced = c.reduced_ranks(e_s);
    let e = match reduced[..] {
        [e] if c.reduce_op(e_s) == Some(ReduceOp::Sum) => e,
        _ => return Err("the scores do not sum over one rank".into()),
    };
    let (a, b) = x.binary(root, BinaryOp::Mul, Merge::Intersect, true)?;
    let (q_acc, k_acc) = if c.tensor(a.tensor).ranks == [e, p] {
        (a, b)
    } else {
        (b, a)
    };
    let q = q_acc.tensor;
    if c.tensor(q).kind != TensorKind::Input || !x.is_plain(&q_acc) || c.tensor(q).ranks != [e, p] {
        return Err("the first product's left operand is not an input Q[E,P]".into());
    }
    // The scores are present where the Q and K filters and the product's output filter hold
    // (an output filter makes the value absent where it fails).
    let mut mask: Vec<_> = q_acc.filters.iter().flat_map(|f| f.conds.clone()).collect();
    mask.extend(k_acc.filters.iter().flat_map(|f| f.conds.clone()));
    mask.extend(output_filters(c, e_s));
    let k = x.tile_source(&k_acc, e, m, m1, m0)?;
    x.used.insert(e_s);
    match bias {
        Some((_, Merge::Union)) if !mask.is_empty() => {
            return Err("a ∪-added bias would make filtered scores present".into());
        }
        Some((_, Merge::Union | Merge::Intersect)) | None => {}
        Some((_, merge)) => return Err(format!("the bias is added with merge {merge}")),
    }
    if t_s != t_qk {
        mask.extend(output_filters(c, e_bias));
    }
    check_mask(c, &mask, [m1, m0, p])?;
    // The loop plan's guard of the scores is every condition their presence implies; one the
    // mask lacks would be a filter the kernel ignores.
    let e_scores = if t_s != t_qk { e_bias } else { e_s };
    if let Some(missed) = x
        .plan
        .placement(e_scores)
        .space
        .guard
        .iter()
        .find(|k| !mask.contains(k))
    {
        return Err(format!(
            "the scores are absent where `{}` fails, which the kernel does not mask",
            cascade_ir::dsl::print_compare(c, missed)
        ));
    }
    let bias = bias.map(|(t, _)| t);
    for (t, ranks) in [(out, vec![f, p]), (v, vec![f, m]), (k, vec![e, m])] {
        if c.tensor(t).ranks != ranks {
            return Err(format!(
                "{} is not laid out as the fused kernel expects",
                c.tensor(t).name
            ));
        }
    }
    // Init: RM[0] = -inf, RD[0] = 0, RNV[0] = 0.
    x.init(t_rm, |k| matches!(k, Constant::NegInf))?;
    x.init(t_rd, |k| matches!(k, Constant::Num(z) if *z == 0.0))?;
    x.init(t_rnv, |k| matches!(k, Constant::Num(z) if *z == 0.0))?;
    for id in [e_out, e_rd, e_rnv, e_prm, e_rm, e_lm, e_sld, e_sln, e_slnv] {
        x.used.insert(id);
    }
    if let Some(extra) = c.einsum_ids().find(|id| !x.used.contains(id)) {
        return Err(format!(
            "Einsum {} has no role in the fused kernel",
            extra.0
        ));
    }
    let scores = if t_s != t_qk {
        vec![e_s, e_bias]
    } else {
        vec![e_s]
    };
    if let Some(id) = c
        .einsum_ids()
        .find(|id| !scores.contains(id) && !c.einsum(*id).output.filters.is_empty())
    {
        return Err(format!(
            "`{}` filters its output; the fused kernel honours filters on the scores only",
            cascade_ir::dsl::print_einsum(c, id)
        ));
    }
    let role = |role, einsum| RoleEinsum { role, einsum };
    Ok(OnlineSoftmax {
        q,
        k,
        v,
        out,
        e,
        f,
        p,
        m,
        m1,
        m0,
        mask,
        scale,
        bias,
        roles: [role("scores (MMA 1)", e_s)]
            .into_iter()
            .chain(bias.map(|_| role("additive bias", e_bias)))
            .chain([
                role("local max", e_lm),
                role("running max", e_rm),
                role("numerators", e_sln),
                role("local denominator", e_sld),
                role("numerator x V (MMA 2)", e_slnv),
                role("rescale factor", e_prm),
                role("running denominator", e_rd),
                role("running numerator", e_rnv),
                role("deferred division", e_out),
            ])
            .collect(),
        t_s,
        t_qk,
        t_bias_tile,
        e_bias: bias.map(|_| e_bias),
        t_lm,
        t_rm,
        t_sln,
        t_sld,
        t_slnv,
        t_prm,
        t_rd,
        t_rnv,
        e_rm,
        e_sln,
        e_prm,
        e_rd,
        e_rnv,
        e_out,
        x_rnv_rescale,
    })
}

/// The conditions of an Einsum's output filters.
fn output_filters(c: &Cascade, id: EinsumId) -> Vec<cascade_ir::Compare> {
    c.einsum(id)
        .output
        .filters
        .iter()
        .flat_map(|f| f.conds.clone())
        .collect()
}

/// The kernel masks over the key (`m1`, `m0`) and query (`p`) variables only, with affine
/// conditions as the interpreter requires.
fn check_mask(c: &Cascade, mask: &[cascade_ir::Compare], allowed: [RankId; 3]) -> M<()> {
    for cond in mask {
        let mut vars = Vec::new();
        cond.lhs.collect_vars(&mut vars);
        cond.rhs.collect_vars(&mut vars);
        if let Some(v) = vars.iter().find(|v| !allowed.contains(v)) {
            return Err(format!(
                "a score filter uses `{}`; the fused kernel masks over m1, m0 and p only",
                c.var_name(*v)
            ));
        }
        if !crate::bounds::affine(&cond.lhs) || !crate::bounds::affine(&cond.rhs) {
            return Err(format!(
                "the score filter `{}` is not affine",
                cascade_ir::dsl::print_compare(c, cond)
            ));
        }
    }
    Ok(())
}

impl Ctx<'_> {
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

    /// The body Einsum writing `t[m1+1]`.
    fn next_def(&self, t: TensorId) -> M<EinsumId> {
        let found: Vec<_> = self
            .defs(t)
            .into_iter()
            .filter(|&id| self.state(&self.c.einsum(id).output).map(|s| s.1) == Ok(At::Next))
            .collect();
        match found[..] {
            [id] if self.plan.phase(id) == Phase::Loop => Ok(id),
            _ => Err(format!(
                "{} has no single update at m1+1",
                self.c.tensor(t).name
            )),
        }
    }

    fn init(&mut self, t: TensorId, want: impl Fn(&Constant) -> bool) -> M<()> {
        for id in self.defs(t) {
            let einsum = self.c.einsum(id);
            if self.state(&einsum.output).map(|s| s.1) == Ok(At::Zero) {
                return match self.c.expr(einsum.value) {
                    Expr::Const(k) if self.plan.phase(id) == Phase::Init && want(k) => {
                        self.used.insert(id);
                        Ok(())
                    }
                    _ => Err(format!(
                        "{}[0] has the wrong initial value",
                        self.c.tensor(t).name
                    )),
                };
            }
        }
        Err(format!("{} has no initial value", self.c.tensor(t).name))
    }

    fn reduction(&self, id: EinsumId, op: ReduceOp, over: RankId) -> M<()> {
        if self.c.reduce_op(id) == Some(op) && self.c.reduced_ranks(id) == [over] {
            Ok(())
        } else {
            Err(format!("Einsum {} is not a {op} over one tile rank", id.0))
        }
    }

    /// `lhs op rhs` with the given merge; both operands must be accesses.
    fn binary(
        &self,
        id: ExprId,
        op: BinaryOp,
        merge: Merge,
        _commutes: bool,
    ) -> M<(Access, Access)> {
        match self.c.expr(id) {
            Expr::Binary {
                op: o,
                merge: g,
                lhs,
                rhs,
            } if *o == op && *g == merge => Ok((self.access(*lhs)?, self.access(*rhs)?)),
            _ => Err(format!("expected a {op:?} with merge {merge}")),
        }
    }

    fn access(&self, id: ExprId) -> M<Access> {
        match self.c.expr(id) {
            Expr::Access(a) => Ok(a.clone()),
            _ => Err("expected a tensor access".into()),
        }
    }

    fn is_plain(&self, a: &Access) -> bool {
        let t = self.c.tensor(a.tensor);
        t.ranks.len() == a.indices.len()
            && a.indices
                .iter()
                .zip(&t.ranks)
                .all(|(i, r)| *i == IndexExpr::Var(*r))
    }

    /// An unfiltered access whose indices are its tensor's own variables.
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

    /// A state access `T[.., m1 (+1 | 0 | M1), ..]`, all other indices plain.
    fn state(&self, a: &Access) -> M<(TensorId, At)> {
        let t = self.c.tensor(a.tensor);
        let mut at = None;
        for (i, r) in a.indices.iter().zip(&t.ranks) {
            if *r == self.m1 {
                at = Some(match i {
                    IndexExpr::Var(v) if *v == self.m1 => At::Cur,
                    IndexExpr::Lit(0) => At::Zero,
                    IndexExpr::Size(s) if *s == self.m1 => At::Final,
                    IndexExpr::Add(x, y)
                        if **x == IndexExpr::Var(self.m1) && **y == IndexExpr::Lit(1) =>
                    {
                        At::Next
                    }
                    _ => return Err("unexpected index along the iterative rank".into()),
                });
            } else if *i != IndexExpr::Var(*r) {
                return Err(format!("{} is not read point by point", t.name));
            }
        }
        match at {
            Some(at) if a.filters.is_empty() && t.ranks.len() == a.indices.len() => {
                Ok((a.tensor, at))
            }
            _ => Err(format!(
                "{} is not a state along the iterative rank",
                t.name
            )),
        }
    }

    /// `X' = L + T·PRM` (`+` with merge ∪, possibly through an intermediate for `T·PRM`).
    fn rescaled_sum(&mut self, id: EinsumId, state: TensorId) -> M<(TensorId, TensorId, ExprId)> {
        let Expr::Binary {
            op: BinaryOp::Add,
            merge: Merge::Union,
            lhs,
            rhs,
        } = self.c.expr(self.value(id))
        else {
            return Err(format!("Einsum {} is not a running sum", id.0));
        };
        for (local, scaled) in [(*lhs, *rhs), (*rhs, *lhs)] {
            let Ok(local) = self.access(local).and_then(|a| self.plain(&a)) else {
                continue;
            };
            let product = match self.c.expr(scaled) {
                Expr::Binary { .. } => scaled,
                Expr::Access(a) if self.plain(a).is_ok() => {
                    let Ok(def) = self.only_def(a.tensor, Phase::Loop) else {
                        continue;
                    };
                    self.used.insert(def);
                    self.value(def)
                }
                _ => continue,
            };
            let Ok((a, b)) = self.binary(product, BinaryOp::Mul, Merge::Intersect, true) else {
                continue;
            };
            for (s, f) in [(&a, &b), (&b, &a)] {
                if self.state(s).ok() == Some((state, At::Cur))
                    && let Ok(factor) = self.plain(f)
                {
                    return Ok((local, factor, product));
                }
            }
        }
        Err(format!("Einsum {} is not `local + state·factor`", id.0))
    }

    /// The input a bias operand reads: `B[m1*M0+m0, p]` directly or through an init copy
    /// `Bt[m1,m0,p] = B[m1*M0+m0, p]`.
    fn bias_source(
        &mut self,
        a: &Access,
        m: RankId,
        p: RankId,
        m1: RankId,
        m0: RankId,
    ) -> M<TensorId> {
        let tiled = IndexExpr::tiled(m1, m0);
        let direct = |acc: &Access| {
            self.c.tensor(acc.tensor).kind == TensorKind::Input
                && self.c.tensor(acc.tensor).ranks == [m, p]
                && acc.indices == [tiled.clone(), IndexExpr::Var(p)]
                && acc.filters.is_empty()
        };
        if direct(a) {
            return Ok(a.tensor);
        }
        let t = self.c.tensor(a.tensor);
        if t.ranks != [m1, m0, p] || !self.is_plain(a) || !a.filters.is_empty() {
            return Err(format!("{} is not a bias tile", t.name));
        }
        let def = self.only_def(a.tensor, Phase::Init)?;
        let src = self.access(self.value(def))?;
        if !direct(&src) {
            return Err(format!("{} does not copy an input bias tile", t.name));
        }
        self.used.insert(def);
        Ok(src.tensor)
    }

    /// The input a tile operand reads: `In[x, m1*M0+m0]` directly or through an init copy
    /// `T[x,m1,m0] = In[x, m1*M0+m0]`.
    fn tile_source(
        &mut self,
        a: &Access,
        x: RankId,
        m: RankId,
        m1: RankId,
        m0: RankId,
    ) -> M<TensorId> {
        let tiled = IndexExpr::tiled(m1, m0);
        let direct = |acc: &Access| {
            self.c.tensor(acc.tensor).kind == TensorKind::Input
                && self.c.tensor(acc.tensor).ranks == [x, m]
                && acc.indices == [IndexExpr::Var(x), tiled.clone()]
        };
        if direct(a) {
            return Ok(a.tensor);
        }
        let t = self.c.tensor(a.tensor);
        if t.ranks != [x, m1, m0] || !self.is_plain(a) {
            return Err(format!("{} is not a key/value tile", t.name));
        }
        let def = self.only_def(a.tensor, Phase::Init)?;
        let src = self.access(self.value(def))?;
        if !direct(&src) || !src.filters.is_empty() {
            return Err(format!("{} does not copy an input tile", t.name));
        }
        self.used.insert(def);
        Ok(src.tensor)
    }
}
