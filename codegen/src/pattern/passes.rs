//! The non-iterative forms, told apart by how the output is reduced:
//! * softmax: `AV = sum(m) A·V` with `A = SN / SD`, or deferred `AV = SNV / SD` with
//!   `SNV = sum(m) SN·V`; `SN = exp(S - GM)`, `GM = max(m) S`, `SD = sum(m) SN`;
//! * split-K: `AV = SNV / SD`, `SNV = sum(s) SLNV·CS`, `SD = sum(s) SLD·CS`,
//!   `CS = exp(LM - GM)`, `GM = max(s) LM`, and per split `LM = max(m0) S`,
//!   `SLN = exp(S - LM)`, `SLD = sum(m0) SLN`, `SLNV = sum(m0) SLN·V`;
//! * weighted: `AV = sum(m) W·V`, or `AV = WV / WD` with `WV = sum(m) W·V` and `WD = sum(m) W`,
//!   where `W` is any pointwise function of the scores (no max).
//!
//! Optionally the result is copied into the output at other indices (`OUT[f,p,g*R+r] =
//! AV[f,p,g,r]`). A row with no present score is absent in every form, which the kernel writes
//! as 0 (its numerator and denominator stay 0, and `0/0 = 0`).

use cascade_ir::plan::Phase;
use cascade_ir::{Access, BinaryOp, Cascade, EinsumId, Expr, Merge, RankId, ReduceOp, TensorId};

use super::node::{Chain, Leaves, Node};
use super::{Attention, Ctx, Form, KeyRanks, M, Parts, Weights};

/// The divisions that keep a row's masked keys at weight 0 (`←`: absent numerators are 0; `∩`).
const DIV_MERGES: [Merge; 2] = [Merge::Right, Merge::Intersect];

pub(super) fn recognise(c: &Cascade) -> M<Attention> {
    let [out] = c.outputs[..] else {
        return Err("needs exactly one output".into());
    };
    // Find the key rank from the structure before matching with it.
    let probe = Ctx::new(
        c,
        KeyRanks {
            m: RankId(0),
            split: None,
        },
    );
    let (copy, av) = probe.peel_copy(out)?;
    let e_av = probe.only_def(av, Phase::PreLoop)?;
    let shape = probe.output_shape(e_av)?;
    let key = match &shape {
        Shape::Sum { keys, .. } | Shape::Div { keys, .. } => key_ranks(c, keys)?,
        &Shape::Split { s, m0, .. } => {
            let m = c
                .ranks
                .iter()
                .position(|r| r.split == Some((s, m0)))
                .map(|i| RankId(i as u32))
                .ok_or("the splits of the keys are not a split of one rank")?;
            KeyRanks {
                m,
                split: Some((s, m0)),
            }
        }
    };
    let mut x = Ctx::new(c, key);
    if let Some(e_copy) = copy {
        x.role("output copy", e_copy);
    }
    x.no_output_filter(e_av)?;
    let mut parts = match shape {
        Shape::Sum { keys, weight, v } => x.sum_form(e_av, &keys, weight, v)?,
        Shape::Div { keys, num, den } => x.div_form(e_av, &keys, num, den)?,
        Shape::Split {
            s,
            m0,
            slnv,
            sld,
            cs,
        } => x.split_form(e_av, s, m0, [slnv, sld, cs])?,
    };
    let (out_t, out_idx) = match copy {
        Some(e) => (out, c.einsum(e).output.indices.clone()),
        None => (av, c.einsum(e_av).output.indices.clone()),
    };
    let value = match parts.weights {
        Weights::Direct { normalised: false } => Node::Numerator,
        _ => Node::Binary(
            BinaryOp::Div,
            Merge::Right,
            Box::new(Node::Numerator),
            Box::new(Node::Denominator),
        ),
    };
    parts.outputs = vec![(out_t, out_idx, value)];
    x.assemble(parts)
}

/// How the Einsum before the output reduces, which decides the form.
enum Shape {
    /// `AV = sum(keys) X·V` (the keys: one rank, or both parts of a split).
    Sum {
        keys: Vec<RankId>,
        weight: Access,
        v: Access,
    },
    /// `AV = N / D`.
    Div {
        keys: Vec<RankId>,
        num: Access,
        den: Access,
    },
    /// `AV = SNV / SD` with `SNV = sum(s) SLNV·CS` over the splits `s`.
    Split {
        s: RankId,
        m0: RankId,
        slnv: TensorId,
        sld: TensorId,
        cs: TensorId,
    },
}

impl Ctx<'_> {
    /// `OUT[..] = AV[..]` (a plain read, no reduction): `(the copy, AV)`; else `(None, out)`.
    fn peel_copy(&self, out: TensorId) -> M<(Option<EinsumId>, TensorId)> {
        let def = self.only_def(out, Phase::PreLoop)?;
        let e = self.c.einsum(def);
        if let Expr::Access(a) = self.c.expr(e.value)
            && self.c.reduce_op(def).is_none()
            && self.is_plain(a)
            && a.filters.is_empty()
            && e.output.filters.is_empty()
            && self.c.tensor(a.tensor).kind != cascade_ir::TensorKind::Input
        {
            return Ok((Some(def), a.tensor));
        }
        Ok((None, out))
    }

    fn output_shape(&self, e_av: EinsumId) -> M<Shape> {
        let c = self.c;
        if c.reduce_op(e_av).is_some() {
            let keys = c.reduced_ranks(e_av);
            key_ranks(c, &keys)?;
            self.reduction(e_av, ReduceOp::Sum, &keys)?;
            let (a, b) = self.binary(self.value(e_av), BinaryOp::Mul, &[Merge::Intersect])?;
            let (weight, v) = self.weight_and_value(a, b, &keys)?;
            return Ok(Shape::Sum { keys, weight, v });
        }
        let (num, den) = self.binary(self.value(e_av), BinaryOp::Div, &DIV_MERGES)?;
        let e_num = self.only_def(self.plain(&num)?, Phase::PreLoop)?;
        let reduced = c.reduced_ranks(e_num);
        let [r] = reduced[..] else {
            // Keys as both parts of a split, reduced together (a block layout of the keys).
            key_ranks(c, &reduced)?;
            return Ok(Shape::Div {
                keys: reduced,
                num,
                den,
            });
        };
        // Split-K: the numerator sums per-split numerators that are themselves sums.
        if let Ok((a, b)) = self.binary(self.value(e_num), BinaryOp::Mul, &[Merge::Intersect])
            && let (Ok(ta), Ok(tb)) = (self.plain(&a), self.plain(&b))
        {
            for (slnv, cs) in [(ta, tb), (tb, ta)] {
                let Ok(e_slnv) = self.only_def(slnv, Phase::PreLoop) else {
                    continue;
                };
                let inner = c.reduced_ranks(e_slnv);
                if let ([m0], Some(ReduceOp::Sum)) = (&inner[..], c.reduce_op(e_slnv)) {
                    let sld = self
                        .plain(&den)
                        .and_then(|t| self.only_def(t, Phase::PreLoop))?;
                    let (x, y) =
                        self.binary(self.value(sld), BinaryOp::Mul, &[Merge::Intersect])?;
                    let (tx, ty) = (self.plain(&x)?, self.plain(&y)?);
                    let sld_t = if tx == cs { ty } else { tx };
                    return Ok(Shape::Split {
                        s: r,
                        m0: *m0,
                        slnv,
                        sld: sld_t,
                        cs,
                    });
                }
            }
        }
        Ok(Shape::Div {
            keys: vec![r],
            num,
            den,
        })
    }

    /// Which operand of `X·V` is the value input (indexed by the key and a feature, without
    /// the query) and which the weight.
    fn weight_and_value(&self, a: Access, b: Access, keys: &[RankId]) -> M<(Access, Access)> {
        let is_value = |acc: &Access| {
            let mut vars = Vec::new();
            acc.collect_vars(&mut vars);
            keys.iter().all(|k| vars.contains(k)) && self.c.tensor(acc.tensor).ranks.len() >= 2
        };
        // The weight is a computed tensor; the value an input or its tile copy.
        let input = |acc: &Access| {
            self.c.tensor(acc.tensor).kind == cascade_ir::TensorKind::Input
                || self
                    .defs(acc.tensor)
                    .iter()
                    .all(|&d| self.plan.phase(d) == Phase::Init)
        };
        match (input(&a) && is_value(&a), input(&b) && is_value(&b)) {
            (true, false) => Ok((b, a)),
            (false, true) => Ok((a, b)),
            _ => Err("the output is not a weighted sum of an input V".into()),
        }
    }

    /// `AV = sum(m) X·V`: a softmax when `X = SN / SD`, else the weights `X` themselves.
    fn sum_form(&mut self, e_av: EinsumId, m: &[RankId], weight: Access, v: Access) -> M<Parts> {
        self.role("weights x V (MMA 2)", e_av);
        let v = self.value_operand(&v)?;
        let t_w = self.plain(&weight)?;
        let e_w = self.only_def(t_w, Phase::PreLoop)?;
        if let Ok((sn, sd)) = self.binary(self.value(e_w), BinaryOp::Div, &DIV_MERGES)
            && let Ok(t_sn) = self.plain(&sn)
            && let Ok(score) = self.softmax_core(t_sn, &sd, m)
        {
            self.no_output_filter(e_w)?;
            self.role("normalisation", e_w);
            let (s_acc, row_vars) = score;
            return self.finish(Form::Softmax, Weights::Softmax, &s_acc, v, row_vars);
        }
        let row_vars = self.row_vars(t_w, m);
        let w = Weights::Direct { normalised: false };
        self.finish(Form::Weighted, w, &weight, v, row_vars)
    }

    /// `AV = N / D`: the deferred softmax (`N = sum(m) SN·V`, `D = sum(m) SN`) or normalised
    /// weights (`N = sum(m) W·V`, `D = sum(m) W`).
    fn div_form(&mut self, e_av: EinsumId, m: &[RankId], num: Access, den: Access) -> M<Parts> {
        self.role("deferred division", e_av);
        let e_num = self.only_def(self.plain(&num)?, Phase::PreLoop)?;
        self.reduction(e_num, ReduceOp::Sum, m)?;
        self.no_output_filter(e_num)?;
        self.role("weights x V (MMA 2)", e_num);
        let (a, b) = self.binary(self.value(e_num), BinaryOp::Mul, &[Merge::Intersect])?;
        let (weight, v) = self.weight_and_value(a, b, m)?;
        let v = self.value_operand(&v)?;
        let t_w = self.plain(&weight)?;
        if let Ok((s_acc, row_vars)) = self.softmax_core(t_w, &den, m) {
            return self.finish(Form::Softmax, Weights::Softmax, &s_acc, v, row_vars);
        }
        // D = sum(m) W over the same weights.
        let e_den = self.only_def(self.plain(&den)?, Phase::PreLoop)?;
        self.reduction(e_den, ReduceOp::Sum, m)?;
        self.no_output_filter(e_den)?;
        if self.plain(&self.access(self.value(e_den))?)? != t_w {
            return Err("the denominator does not sum the weights of the numerator".into());
        }
        self.role("denominator", e_den);
        let row_vars = self.row_vars(t_w, m);
        let w = Weights::Direct { normalised: true };
        self.finish(Form::Weighted, w, &weight, v, row_vars)
    }

    /// `SN = exp(S - GM)`, `GM = max(m) S`, `SD = sum(m) SN` (`sd` reads SD): the access to
    /// the scores and the row variables.
    fn softmax_core(
        &mut self,
        t_sn: TensorId,
        sd: &Access,
        m: &[RankId],
    ) -> M<(Access, Vec<RankId>)> {
        let e_sn = self.only_def(t_sn, Phase::PreLoop)?;
        let (s_acc, gm_acc) =
            self.binary(self.value(e_sn), BinaryOp::SubExp, &[Merge::Intersect])?;
        let t_s = self.plain(&s_acc)?;
        let e_gm = self.only_def(self.plain(&gm_acc)?, Phase::PreLoop)?;
        self.reduction(e_gm, ReduceOp::Max, m)?;
        if self.plain(&self.access(self.value(e_gm))?)? != t_s {
            return Err("the max is not over the scores".into());
        }
        let e_sd = self.only_def(self.plain(sd)?, Phase::PreLoop)?;
        self.reduction(e_sd, ReduceOp::Sum, m)?;
        if self.plain(&self.access(self.value(e_sd))?)? != t_sn {
            return Err("the denominator does not sum the numerators".into());
        }
        for id in [e_sn, e_gm, e_sd] {
            self.no_output_filter(id)?;
        }
        self.role("numerators", e_sn);
        self.role("row max", e_gm);
        self.role("denominator", e_sd);
        let row_vars = self.row_vars(t_s, m);
        Ok((s_acc, row_vars))
    }

    /// The split-K form from `AV = SNV / SD`.
    fn split_form(
        &mut self,
        e_av: EinsumId,
        s: RankId,
        m0: RankId,
        [t_slnv, t_sld, t_cs]: [TensorId; 3],
    ) -> M<Parts> {
        self.role("combine", e_av);
        let (num, den) = self.binary(self.value(e_av), BinaryOp::Div, &DIV_MERGES)?;
        for (acc, t) in [(&num, t_slnv), (&den, t_sld)] {
            let e = self.only_def(self.plain(acc)?, Phase::PreLoop)?;
            self.reduction(e, ReduceOp::Sum, &[s])?;
            self.no_output_filter(e)?;
            let (a, b) = self.binary(self.value(e), BinaryOp::Mul, &[Merge::Intersect])?;
            let pair = (self.plain(&a)?, self.plain(&b)?);
            if pair != (t, t_cs) && pair != (t_cs, t) {
                return Err("the splits are not combined as X·exp(LM - GM)".into());
            }
            self.role("combine", e);
        }
        // CS = exp(LM - GM), GM = max(s) LM
        let e_cs = self.only_def(t_cs, Phase::PreLoop)?;
        let (lm_acc, gm_acc) =
            self.binary(self.value(e_cs), BinaryOp::SubExp, &[Merge::Intersect])?;
        let t_lm = self.plain(&lm_acc)?;
        let e_gm = self.only_def(self.plain(&gm_acc)?, Phase::PreLoop)?;
        self.reduction(e_gm, ReduceOp::Max, &[s])?;
        if self.plain(&self.access(self.value(e_gm))?)? != t_lm {
            return Err("the global max is not over the split maxima".into());
        }
        // LM = max(m0) S, SLN = exp(S - LM), SLD = sum(m0) SLN, SLNV = sum(m0) SLN·V
        let e_lm = self.only_def(t_lm, Phase::PreLoop)?;
        self.reduction(e_lm, ReduceOp::Max, &[m0])?;
        let s_acc = self.access(self.value(e_lm))?;
        let t_s = self.plain(&s_acc)?;
        let e_sld = self.only_def(t_sld, Phase::PreLoop)?;
        self.reduction(e_sld, ReduceOp::Sum, &[m0])?;
        let t_sln = self.plain(&self.access(self.value(e_sld))?)?;
        let e_sln = self.only_def(t_sln, Phase::PreLoop)?;
        let (a, b) = self.binary(self.value(e_sln), BinaryOp::SubExp, &[Merge::Intersect])?;
        if self.plain(&a)? != t_s || self.plain(&b)? != t_lm {
            return Err("the split numerators are not exp(S - LM)".into());
        }
        let e_slnv = self.only_def(t_slnv, Phase::PreLoop)?;
        self.reduction(e_slnv, ReduceOp::Sum, &[m0])?;
        let (a, b) = self.binary(self.value(e_slnv), BinaryOp::Mul, &[Merge::Intersect])?;
        let v_acc = if self.plain(&a).ok() == Some(t_sln) {
            b
        } else if self.plain(&b).ok() == Some(t_sln) {
            a
        } else {
            return Err("the split numerators do not weigh V".into());
        };
        let v = self.value_operand(&v_acc)?;
        for (role, id) in [
            ("split combine factor", e_cs),
            ("global max", e_gm),
            ("split max", e_lm),
            ("split denominator", e_sld),
            ("split numerators", e_sln),
            ("split numerator x V (MMA 2)", e_slnv),
        ] {
            self.no_output_filter(id)?;
            self.role(role, id);
        }
        let row_vars = self.row_vars(t_s, &[s, m0]);
        self.finish(Form::SplitK, Weights::Softmax, &s_acc, v, row_vars)
    }

    /// The ranks of `t` other than the key variables.
    fn row_vars(&self, t: TensorId, keys: &[RankId]) -> Vec<RankId> {
        self.c
            .tensor(t)
            .ranks
            .iter()
            .copied()
            .filter(|r| !keys.contains(r))
            .collect()
    }

    /// Inlines the scores (or weights) from the access that reads them.
    fn finish(
        &mut self,
        form: Form,
        weights: Weights,
        s_acc: &Access,
        v: Access,
        row_vars: Vec<RankId>,
    ) -> M<Parts> {
        let mut chain = Chain::new(Phase::PreLoop, Leaves::Products, "score");
        let score = self.inline(s_acc, &mut chain)?;
        if chain.products.is_empty() {
            return Err("the scores are not a product Q·K".into());
        }
        Ok(Parts {
            form,
            weights,
            score,
            products: chain.products,
            v,
            row_vars,
            outputs: Vec::new(),
        })
    }
}

/// The key ranks from the variables a reduction over keys reduces: one rank, or the two parts
/// of a split (in either order).
fn key_ranks(c: &Cascade, keys: &[RankId]) -> M<KeyRanks> {
    match keys[..] {
        [m] => Ok(KeyRanks { m, split: None }),
        [a, b] => c
            .ranks
            .iter()
            .enumerate()
            .find_map(|(i, r)| match r.split {
                Some((outer, inner)) if (outer, inner) == (a, b) || (outer, inner) == (b, a) => {
                    Some(KeyRanks {
                        m: RankId(i as u32),
                        split: Some((outer, inner)),
                    })
                }
                _ => None,
            })
            .ok_or_else(|| {
                "the output reduces two ranks that are not the parts of one split".into()
            }),
        _ => Err("the output does not sum over one key rank".into()),
    }
}
