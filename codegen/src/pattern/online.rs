//! The 1-pass online-softmax form (FuseMax Cascade 5): over the iterative rank `m1` of a split
//! `M -> M1 M0`,
//! `LM = max(m0) S`, `RM' = max(RM, LM)`, `SLN = exp(S - RM')`, `SLD = sum(m0) SLN`,
//! `SLNV = sum(m0) SLN·V`, `PRM = exp(RM - RM')`, `RD' = SLD + RD·PRM`, `RNV' = SLNV + RNV·PRM`,
//! with `RM[0] = -inf`, `RD[0] = RNV[0] = 0`; after the loop, any pointwise epilogue over the
//! final `RNV[M1]`, `RD[M1]`, `RM[M1]` and inputs (`RNV/RD`, a sink logit, an output filter, the
//! max and the sum themselves as outputs).
//!
//! The states are found by their updates, not their names: the one written with `max` is the
//! running max, the two written as `local + state·factor` are the denominator and (with one
//! more rank, the feature) the numerator.

use cascade_ir::plan::Phase;
use cascade_ir::{
    Access, BinaryOp, Cascade, CompareOp, Constant, EinsumId, Expr, ExprId, IndexExpr, Merge,
    RankId, ReduceOp, TensorId,
};

use super::node::{Chain, Leaves, States};
use super::{Attention, Ctx, Form, KeyRanks, M, Parts, Weights};

/// Where a state access sits along the iterative rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    Cur,
    Next,
    Zero,
    Final,
}

pub(super) fn recognise(c: &Cascade) -> M<Attention> {
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
    let mut x = Ctx::new(
        c,
        KeyRanks {
            m,
            split: Some((m1, m0)),
        },
    );
    let states = x.states(m1)?;
    let s_access = x.loop_body(&states, m1, m0)?;
    // The scores, inlined from the access the local max reads.
    let mut chain = Chain::new(Phase::Loop, Leaves::Products, "score");
    let score = x.inline(&s_access.0, &mut chain)?;
    let mut outputs = Vec::new();
    for &out in &c.outputs {
        let def = x.only_def(out, Phase::PostLoop)?;
        let mut post = Chain::new(Phase::PostLoop, Leaves::Final(states), "epilogue");
        let written = &c.einsum(def).output;
        let target = Access {
            tensor: out,
            indices: written.indices.clone(),
            filters: written.filters.clone(),
        };
        x.role("output", def);
        let value = x.inline_def_at(def, &target, &mut post)?;
        outputs.push((out, written.indices.clone(), value));
    }
    for t in [states.rm, states.rd, states.rnv] {
        let init = |k: &Constant| match t {
            _ if t == states.rm => matches!(k, Constant::NegInf),
            _ => matches!(k, Constant::Num(z) if *z == 0.0),
        };
        x.init(t, m1, init)?;
    }
    let v = s_access.1;
    let row_vars: Vec<RankId> = c
        .tensor(s_access.0.tensor)
        .ranks
        .iter()
        .copied()
        .filter(|r| *r != m1 && *r != m0)
        .collect();
    x.assemble(Parts {
        form: Form::Online,
        weights: Weights::Softmax,
        score,
        products: chain.products,
        v,
        row_vars,
        outputs,
    })
}

impl Ctx<'_> {
    /// The running max, denominator and numerator: the tensors written at `m1+1`.
    fn states(&mut self, m1: RankId) -> M<States> {
        let c = self.c;
        let mut written: Vec<TensorId> = Vec::new();
        for id in c.einsum_ids() {
            let out = &c.einsum(id).output;
            let t = c.tensor(out.tensor);
            let steps = t
                .ranks
                .iter()
                .zip(&out.indices)
                .any(|(r, i)| *r == m1 && i.shifted_var() == Some(m1));
            if steps && !written.contains(&out.tensor) {
                written.push(out.tensor);
            }
        }
        let (mut maxes, mut sums) = (Vec::new(), Vec::new());
        for t in written {
            let e = self.next_def(t, m1)?;
            match c.expr(self.value(e)) {
                Expr::Binary {
                    op: BinaryOp::Max, ..
                } => maxes.push(t),
                Expr::Binary {
                    op: BinaryOp::Add, ..
                } => sums.push(t),
                _ => {
                    return Err(format!(
                        "the state {} is neither a running max nor a running sum",
                        c.tensor(t).name
                    ));
                }
            }
        }
        let ([rm], [a, b]) = (&maxes[..], &sums[..]) else {
            return Err(
                "the loop does not carry exactly a running max and two running sums".into(),
            );
        };
        let rank_count = |t: &TensorId| c.tensor(*t).ranks.len();
        let (rd, rnv) = if rank_count(a) < rank_count(b) {
            (*a, *b)
        } else {
            (*b, *a)
        };
        if rank_count(&rnv) != rank_count(&rd) + 1 {
            return Err("the numerator does not have one rank more than the denominator".into());
        }
        Ok(States {
            m1,
            rm: *rm,
            rd,
            rnv,
        })
    }

    /// Matches the loop body around the states; returns the scores' access in `LM = max(m0) S`
    /// and the value operand of `SLNV = sum(m0) SLN·V`.
    fn loop_body(&mut self, s: &States, m1: RankId, m0: RankId) -> M<(Access, Access)> {
        let c = self.c;
        // RD' = SLD + RD·PRM and RNV' = SLNV + RNV·PRM
        let e_rd = self.next_def(s.rd, m1)?;
        let (t_sld, t_prm) = self.rescaled_sum(e_rd, s.rd, m1)?;
        let e_rnv = self.next_def(s.rnv, m1)?;
        let (t_slnv, t_prm2) = self.rescaled_sum(e_rnv, s.rnv, m1)?;
        if t_prm != t_prm2 {
            return Err("the two sums use different rescale factors".into());
        }
        self.role("running denominator", e_rd);
        self.role("running numerator", e_rnv);
        // PRM = exp(RM - RM')
        let e_prm = self.only_def(t_prm, Phase::Loop)?;
        let (a, b) = self.binary(self.value(e_prm), BinaryOp::SubExp, &[Merge::Intersect])?;
        if self.state(&a, m1)? != (s.rm, At::Cur) || self.state(&b, m1)? != (s.rm, At::Next) {
            return Err("the rescale factor is not exp(RM[m1] - RM[m1+1])".into());
        }
        self.no_output_filter(e_prm)?;
        self.role("rescale factor", e_prm);
        // RM' = max(RM, LM)
        let e_rm = self.next_def(s.rm, m1)?;
        let (a, b) = self.binary(self.value(e_rm), BinaryOp::Max, &[Merge::Union])?;
        // LM[m1,p] also reads like a state along m1: pick the operand that is RM itself.
        let (lm_acc, rm_acc) = if self.state(&a, m1).ok() == Some((s.rm, At::Cur)) {
            (b, a)
        } else {
            (a, b)
        };
        if self.state(&rm_acc, m1)? != (s.rm, At::Cur) {
            return Err("the running max does not read RM[m1]".into());
        }
        self.no_output_filter(e_rm)?;
        self.role("running max", e_rm);
        let t_lm = self.plain(&lm_acc)?;
        // LM = max(m0) S
        let e_lm = self.only_def(t_lm, Phase::Loop)?;
        self.reduction(e_lm, ReduceOp::Max, &[m0])?;
        self.no_output_filter(e_lm)?;
        self.role("local max", e_lm);
        let s_acc = self.access(self.value(e_lm))?;
        let t_s = self.plain(&s_acc)?;
        // SLD = sum(m0) SLN, SLN = exp(S - RM')
        let e_sld = self.only_def(t_sld, Phase::Loop)?;
        self.reduction(e_sld, ReduceOp::Sum, &[m0])?;
        self.no_output_filter(e_sld)?;
        self.role("local denominator", e_sld);
        let t_sln = self.plain(&self.access(self.value(e_sld))?)?;
        let e_sln = self.only_def(t_sln, Phase::Loop)?;
        let (a, b) = self.binary(self.value(e_sln), BinaryOp::SubExp, &[Merge::Intersect])?;
        if self.plain(&a)? != t_s || self.state(&b, m1)? != (s.rm, At::Next) {
            return Err("the numerators are not exp(S - RM[m1+1])".into());
        }
        self.no_output_filter(e_sln)?;
        self.role("numerators", e_sln);
        // SLNV = sum(m0) SLN·V
        let e_slnv = self.only_def(t_slnv, Phase::Loop)?;
        self.reduction(e_slnv, ReduceOp::Sum, &[m0])?;
        self.no_output_filter(e_slnv)?;
        self.role("numerator x V (MMA 2)", e_slnv);
        let (a, b) = self.binary(self.value(e_slnv), BinaryOp::Mul, &[Merge::Intersect])?;
        let (sln_acc, v_acc) = if self.plain(&a).ok() == Some(t_sln) {
            (a, b)
        } else {
            (b, a)
        };
        if self.plain(&sln_acc)? != t_sln {
            return Err("the second product does not read the numerators".into());
        }
        let v = self.value_operand(&v_acc)?;
        let mut s_ranks = c.tensor(t_s).ranks.clone();
        s_ranks.retain(|r| *r != m1 && *r != m0);
        self.has_ranks(t_s, &[m1, m0], &s_ranks)?;
        self.has_ranks(s.rd, &[m1], &s_ranks)?;
        Ok((s_acc, v))
    }

    /// The body Einsum writing `t[m1+1]`.
    fn next_def(&self, t: TensorId, m1: RankId) -> M<EinsumId> {
        let found: Vec<_> = self
            .defs(t)
            .into_iter()
            .filter(|&id| self.state(&self.c.einsum(id).output, m1).map(|s| s.1) == Ok(At::Next))
            .collect();
        match found[..] {
            [id] if self.plan.phase(id) == Phase::Loop => Ok(id),
            _ => Err(format!(
                "{} has no single update at m1+1",
                self.c.tensor(t).name
            )),
        }
    }

    /// The initial value `t[0] = k` in `init`, with `want(k)`.
    fn init(&mut self, t: TensorId, m1: RankId, want: impl Fn(&Constant) -> bool) -> M<()> {
        for id in self.defs(t) {
            let einsum = self.c.einsum(id);
            if self.state(&einsum.output, m1).map(|s| s.1) == Ok(At::Zero) {
                return match self.c.expr(einsum.value) {
                    Expr::Const(k) if self.plan.phase(id) == Phase::Init && want(k) => {
                        self.role("initial state", id);
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

    /// A state access `T[.., m1 (+1 | 0 | M1), ..]`, all other indices plain.
    fn state(&self, a: &Access, m1: RankId) -> M<(TensorId, At)> {
        let t = self.c.tensor(a.tensor);
        let mut at = None;
        for (i, r) in a.indices.iter().zip(&t.ranks) {
            if *r == m1 {
                at = Some(match i {
                    IndexExpr::Var(v) if *v == m1 => At::Cur,
                    IndexExpr::Lit(0) => At::Zero,
                    IndexExpr::Size(s) if *s == m1 => At::Final,
                    IndexExpr::Add(x, y)
                        if **x == IndexExpr::Var(m1) && **y == IndexExpr::Lit(1) =>
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

    /// `X' = L + T·F` (`+` with merge ∪, the product possibly through an intermediate):
    /// the local term `L` and the factor `F`.
    fn rescaled_sum(
        &mut self,
        id: EinsumId,
        state: TensorId,
        m1: RankId,
    ) -> M<(TensorId, TensorId)> {
        let Expr::Binary {
            op: BinaryOp::Add,
            merge: Merge::Union,
            lhs,
            rhs,
        } = self.c.expr(self.value(id))
        else {
            return Err(format!("Einsum {} is not a running sum", id.0));
        };
        self.no_output_filter(id)?;
        for (local, scaled) in [(*lhs, *rhs), (*rhs, *lhs)] {
            let Ok(local) = self.access(local).and_then(|a| self.plain(&a)) else {
                continue;
            };
            let Some((product, def)) = self.product_of(scaled) else {
                continue;
            };
            let Ok((a, b)) = self.binary(product, BinaryOp::Mul, &[Merge::Intersect]) else {
                continue;
            };
            for (s, f) in [(&a, &b), (&b, &a)] {
                if self.state(s, m1).ok() == Some((state, At::Cur))
                    && let Ok(factor) = self.plain(f)
                {
                    if let Some(def) = def {
                        self.role("rescaled state", def);
                    }
                    return Ok((local, factor));
                }
            }
        }
        Err(format!("Einsum {} is not `local + state·factor`", id.0))
    }

    /// The product node of a rescaled term: inline, or through one intermediate's definition.
    fn product_of(&self, scaled: ExprId) -> Option<(ExprId, Option<EinsumId>)> {
        match self.c.expr(scaled) {
            Expr::Binary { .. } => Some((scaled, None)),
            Expr::Access(a) if self.plain(a).is_ok() => {
                let def = self.only_def(a.tensor, Phase::Loop).ok()?;
                self.c.einsum(def).output.filters.is_empty().then_some(())?;
                Some((self.value(def), Some(def)))
            }
            _ => None,
        }
    }

    /// The inlined definition of an output, at its own indices.
    fn inline_def_at(
        &mut self,
        def: EinsumId,
        target: &Access,
        chain: &mut Chain,
    ) -> M<super::Node> {
        let e = self.c.einsum(def);
        let conds: Vec<cascade_ir::Compare> = super::filter_conds(target)
            .iter()
            .map(|k| self.key.normalise_cond(k))
            .collect();
        if self.c.reduce_op(def).is_some() {
            return Err(format!(
                "`{}` reduces after the loop",
                cascade_ir::dsl::print_einsum(self.c, def)
            ));
        }
        let value = self.inline_value(e.value, chain)?;
        Ok(if conds.is_empty() {
            value
        } else {
            super::Node::Guard(conds, Box::new(value))
        })
    }
}
