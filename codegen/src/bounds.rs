//! Static bounds proofs: an index expression stays inside `0..extent` at every point of an
//! Einsum's iteration space where it is used, for every shape the launcher accepts.
//!
//! The interpreter fails with `IndexOutOfBounds` where an access leaves its tensor; a GPU
//! kernel cannot, so the generic lowering proves at plan time that no access can, and refuses
//! the cascade otherwise.
//!
//! Index expressions become polynomials over index variables and rank sizes, a split parent's
//! size written as the product of its parts (the launcher enforces `M = M1·M0`). `P ≥ 0` is
//! proven by bounding each monomial from below over the iteration box (a variable of rank `R`
//! lies in `0..=|R|-1`, every size is at least 1), then checking that the polynomial in sizes
//! left has only non-negative coefficients once each size `S` is written `1 + t` with `t ≥ 0`.
//! A filter condition that holds wherever the access is read is a fact `F ≥ 0`, and
//! `P - F ≥ 0` (or `P - F - G ≥ 0`) proves `P ≥ 0` too. The proof is sound and incomplete:
//! whatever it cannot prove is refused, never guessed.

use std::collections::BTreeMap;

use cascade_ir::{Cascade, Compare, CompareOp, IndexExpr, RankId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Sym {
    Var(RankId),
    Size(RankId),
}

/// An integer polynomial over index variables and sizes. Operations that could overflow
/// return `None`, which callers treat as "cannot prove".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Poly {
    terms: BTreeMap<Vec<Sym>, i128>,
}

impl Poly {
    fn constant(k: i128) -> Poly {
        Poly {
            terms: BTreeMap::from([(Vec::new(), k)]),
        }
        .normalized()
    }

    fn sym(s: Sym) -> Poly {
        Poly {
            terms: BTreeMap::from([(vec![s], 1)]),
        }
    }

    /// Without zero coefficients, so equal polynomials compare equal.
    fn normalized(mut self) -> Poly {
        self.terms.retain(|_, k| *k != 0);
        self
    }

    /// `self + k·mono`, `None` on overflow.
    fn add_term(&mut self, mono: Vec<Sym>, k: i128) -> Option<()> {
        let entry = self.terms.entry(mono).or_insert(0);
        *entry = entry.checked_add(k)?;
        Some(())
    }

    fn plus(&self, other: &Poly, sign: i128) -> Option<Poly> {
        let mut out = self.clone();
        for (mono, k) in &other.terms {
            out.add_term(mono.clone(), k.checked_mul(sign)?)?;
        }
        Some(out.normalized())
    }

    /// `self + other`.
    pub fn add(&self, other: &Poly) -> Option<Poly> {
        self.plus(other, 1)
    }

    /// `self - other`.
    pub fn sub(&self, other: &Poly) -> Option<Poly> {
        self.plus(other, -1)
    }

    fn mul(&self, other: &Poly) -> Option<Poly> {
        let mut out = Poly::default();
        for (ma, ka) in &self.terms {
            for (mb, kb) in &other.terms {
                let mut mono: Vec<Sym> = ma.iter().chain(mb).copied().collect();
                mono.sort();
                out.add_term(mono, ka.checked_mul(*kb)?)?;
            }
        }
        Some(out.normalized())
    }

    /// The polynomial of an index expression.
    pub fn of_index(c: &Cascade, e: &IndexExpr) -> Option<Poly> {
        match e {
            IndexExpr::Var(r) => Some(Poly::sym(Sym::Var(*r))),
            IndexExpr::Size(r) => Some(Poly::of_size(c, *r)),
            IndexExpr::Lit(k) => Some(Poly::constant(i128::from(*k))),
            IndexExpr::Add(a, b) => Poly::of_index(c, a)?.add(&Poly::of_index(c, b)?),
            IndexExpr::Sub(a, b) => Poly::of_index(c, a)?.sub(&Poly::of_index(c, b)?),
            IndexExpr::Mul(a, b) => Poly::of_index(c, a)?.mul(&Poly::of_index(c, b)?),
        }
    }

    /// `|r|`, a split parent as the product of its parts and a second variable over a split's
    /// inner rank as that rank (`|N0| = |M0|`, which the launcher binds).
    pub fn of_size(c: &Cascade, r: RankId) -> Poly {
        if let Some(inner) = c.rank(r).range_of {
            return Poly::of_size(c, inner);
        }
        match c.rank(r).split {
            Some((outer, inner)) => Poly::of_size(c, outer)
                .mul(&Poly::of_size(c, inner))
                .unwrap_or_else(|| Poly::sym(Sym::Size(r))),
            None => Poly::sym(Sym::Size(r)),
        }
    }

    /// `self + k`.
    pub fn offset(&self, k: i128) -> Option<Poly> {
        self.add(&Poly::constant(k))
    }
}

/// The facts `F ≥ 0` a conjunction of conditions gives (`a < b` gives `b - a - 1 ≥ 0`); `!=`
/// gives none, and a condition whose polynomial overflows is dropped (a fact less is sound).
pub fn facts(c: &Cascade, conds: &[Compare]) -> Vec<Poly> {
    let mut out = Vec::new();
    for k in conds {
        let (Some(l), Some(r)) = (Poly::of_index(c, &k.lhs), Poly::of_index(c, &k.rhs)) else {
            continue;
        };
        let (Some(d), Some(neg)) = (l.sub(&r), r.sub(&l)) else {
            continue;
        };
        let found = match k.op {
            CompareOp::Lt => vec![neg.offset(-1)],
            CompareOp::Le => vec![Some(neg)],
            CompareOp::Gt => vec![d.offset(-1)],
            CompareOp::Ge => vec![Some(d)],
            CompareOp::Eq => vec![Some(d), Some(neg)],
            CompareOp::Ne => vec![],
        };
        out.extend(found.into_iter().flatten());
    }
    out
}

/// Whether `p ≥ 0` at every point of the box and every shape, given `facts`.
pub fn nonneg(c: &Cascade, p: &Poly, facts: &[Poly]) -> bool {
    if nonneg_alone(c, p) {
        return true;
    }
    for (i, f) in facts.iter().enumerate() {
        let Some(rest) = p.sub(f) else { continue };
        if nonneg_alone(c, &rest) {
            return true;
        }
        for g in &facts[i..] {
            if rest.sub(g).is_some_and(|r| nonneg_alone(c, &r)) {
                return true;
            }
        }
    }
    false
}

/// `P ≥ 0` from the box alone: each monomial at its smallest, then the size polynomial.
fn nonneg_alone(c: &Cascade, p: &Poly) -> bool {
    let mut in_sizes = Poly::default();
    for (mono, &k) in &p.terms {
        let has_var = mono.iter().any(|s| matches!(s, Sym::Var(_)));
        if has_var && k > 0 {
            // Variables start at 0 and sizes at 1: the monomial's smallest value is 0.
            continue;
        }
        // Constant in the variables, or decreasing in each: every variable at its largest.
        let mut term = Poly::constant(k);
        for s in mono {
            let factor = match s {
                Sym::Var(r) => match Poly::of_size(c, *r).offset(-1) {
                    Some(f) => f,
                    None => return false,
                },
                Sym::Size(_) => Poly::sym(*s),
            };
            term = match term.mul(&factor) {
                Some(t) => t,
                None => return false,
            };
        }
        in_sizes = match in_sizes.add(&term) {
            Some(s) => s,
            None => return false,
        };
    }
    nonneg_for_sizes_at_least_one(&in_sizes)
}

/// A polynomial in sizes only is non-negative for all sizes ≥ 1 when, written in `t = S - 1`,
/// it has no negative coefficient.
fn nonneg_for_sizes_at_least_one(p: &Poly) -> bool {
    let mut shifted: BTreeMap<Vec<Sym>, i128> = BTreeMap::new();
    for (mono, &k) in &p.terms {
        // Π (1 + t_i) over the factors: one monomial per subset of factor positions.
        let n = mono.len();
        if n > 16 {
            return false;
        }
        for subset in 0u32..(1 << n) {
            let picked: Vec<Sym> = (0..n)
                .filter(|i| subset & (1 << i) != 0)
                .map(|i| mono[i])
                .collect();
            let entry = shifted.entry(picked).or_insert(0);
            match entry.checked_add(k) {
                Some(v) => *entry = v,
                None => return false,
            }
        }
    }
    shifted.values().all(|&k| k >= 0)
}

/// Which side of `0..extent` an index may leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// It may be negative.
    Below,
    /// It may reach the extent.
    Above,
}

/// Whether `idx` stays in `0..extent` wherever `facts` hold.
pub fn in_range(c: &Cascade, idx: &IndexExpr, extent: &Poly, facts: &[Poly]) -> Result<(), Escape> {
    let Some(p) = Poly::of_index(c, idx) else {
        return Err(Escape::Above);
    };
    if !nonneg(c, &p, facts) {
        return Err(Escape::Below);
    }
    let room = extent.offset(-1).and_then(|e| e.sub(&p));
    match room {
        Some(room) if nonneg(c, &room, facts) => Ok(()),
        _ => Err(Escape::Above),
    }
}

/// Whether `cond` holds at every point of the box for every shape.
pub fn always_holds(c: &Cascade, cond: &Compare) -> bool {
    let (Some(l), Some(r)) = (Poly::of_index(c, &cond.lhs), Poly::of_index(c, &cond.rhs)) else {
        return false;
    };
    let ge = |a: &Poly, b: &Poly, k: i128| {
        a.sub(b)
            .and_then(|d| d.offset(-k))
            .is_some_and(|d| nonneg(c, &d, &[]))
    };
    match cond.op {
        CompareOp::Ge => ge(&l, &r, 0),
        CompareOp::Gt => ge(&l, &r, 1),
        CompareOp::Le => ge(&r, &l, 0),
        CompareOp::Lt => ge(&r, &l, 1),
        CompareOp::Eq => ge(&l, &r, 0) && ge(&r, &l, 0),
        CompareOp::Ne => false,
    }
}

/// Whether `idx` is `k·v + rest` with `k` a non-zero polynomial in sizes and `rest` free of
/// `v`, so that distinct values of `v` give distinct indices.
pub fn injective_in(c: &Cascade, idx: &IndexExpr, v: RankId) -> bool {
    let Some(p) = Poly::of_index(c, idx) else {
        return false;
    };
    let mut coeff = Poly::default();
    for (mono, &k) in &p.terms {
        match mono.iter().filter(|s| **s == Sym::Var(v)).count() {
            0 => continue,
            1 => {}
            _ => return false,
        }
        if mono.iter().any(|s| matches!(s, Sym::Var(w) if *w != v)) {
            return false;
        }
        let rest: Vec<Sym> = mono.iter().copied().filter(|s| *s != Sym::Var(v)).collect();
        if coeff.add_term(rest, k).is_none() {
            return false;
        }
    }
    let positive = coeff.offset(-1).is_some_and(|q| nonneg(c, &q, &[]));
    let negative = Poly::default()
        .sub(&coeff)
        .and_then(|q| q.offset(-1))
        .is_some_and(|q| nonneg(c, &q, &[]));
    positive || negative
}

/// Affine: no product of two terms that both contain a variable (what the interpreter accepts).
pub fn affine(e: &IndexExpr) -> bool {
    match e {
        IndexExpr::Var(_) | IndexExpr::Size(_) | IndexExpr::Lit(_) => true,
        IndexExpr::Add(a, b) | IndexExpr::Sub(a, b) => affine(a) && affine(b),
        IndexExpr::Mul(a, b) => {
            let (mut va, mut vb) = (Vec::new(), Vec::new());
            a.collect_vars(&mut va);
            b.collect_vars(&mut vb);
            affine(a) && affine(b) && (va.is_empty() || vb.is_empty())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cascade() -> Cascade {
        cascade_ir::dsl::parse(
            "cascade t\nranks M P\nsplit M -> M1 M0\ninput A[M] B[P]\nX[m,p] = A[m] * B[p]\noutput X\n",
            "t",
        )
        .expect("parses")
        .cascade
    }

    fn ix(c: &Cascade, text: &str) -> IndexExpr {
        // Parse `T[<text>]` through a tiny cascade to get the IndexExpr.
        let src = format!(
            "cascade u\nranks M P\nsplit M -> M1 M0\ninput A[M] B[P]\nY[m1,m0,p] = A[{text}] * B[p]\noutput Y\n"
        );
        let parsed = cascade_ir::dsl::parse(&src, "u").expect("parses").cascade;
        assert_eq!(parsed.ranks, c.ranks);
        let cascade_ir::Expr::Binary { lhs, .. } = parsed.expr(parsed.einsums[0].value) else {
            panic!("binary");
        };
        let cascade_ir::Expr::Access(a) = parsed.expr(*lhs) else {
            panic!("access");
        };
        a.indices[0].clone()
    }

    #[test]
    fn split_indices_and_shifts_stay_in_their_extents() {
        let c = cascade();
        let m = c.rank_by_name("M").expect("M");
        let m1 = c.rank_by_name("M1").expect("M1");
        let ext_m = Poly::of_size(&c, m);
        assert_eq!(in_range(&c, &ix(&c, "m1*M0+m0"), &ext_m, &[]), Ok(()));
        assert_eq!(in_range(&c, &ix(&c, "m"), &ext_m, &[]), Ok(()));
        let state = Poly::of_size(&c, m1).offset(1).expect("small");
        assert_eq!(in_range(&c, &ix(&c, "m1+1"), &state, &[]), Ok(()));
        assert_eq!(in_range(&c, &ix(&c, "M1"), &state, &[]), Ok(()));
        assert_eq!(
            in_range(&c, &ix(&c, "m1+1"), &Poly::of_size(&c, m1), &[]),
            Err(Escape::Above)
        );
        assert_eq!(
            in_range(&c, &ix(&c, "m-1"), &ext_m, &[]),
            Err(Escape::Below)
        );
        assert_eq!(
            in_range(&c, &ix(&c, "p-m"), &ext_m, &[]),
            Err(Escape::Below)
        );
    }

    #[test]
    fn a_second_inner_variable_reads_inside_its_tile() {
        let src = "cascade u\nranks M\nsplit M -> M1 M0 N0\ninput A[M]\nY[m1,m0,n0] = A[m1*M0+m0] * A[m1*M0+n0]\noutput Y\n";
        let c = cascade_ir::dsl::parse(src, "u").expect("parses").cascade;
        let cascade_ir::Expr::Binary { rhs, .. } = c.expr(c.einsums[0].value) else {
            panic!("binary");
        };
        let cascade_ir::Expr::Access(a) = c.expr(*rhs) else {
            panic!("access");
        };
        // n0 <= |N0| - 1 = |M0| - 1, so m1*M0 + n0 <= (M1-1)*M0 + M0 - 1 = M - 1.
        let ext_m = Poly::of_size(&c, c.rank_by_name("M").expect("M"));
        assert_eq!(in_range(&c, &a.indices[0], &ext_m, &[]), Ok(()));
        let n0 = c.rank_by_name("N0").expect("N0");
        let m0 = c.rank_by_name("M0").expect("M0");
        assert_eq!(Poly::of_size(&c, n0), Poly::of_size(&c, m0));
    }

    #[test]
    fn filters_prove_what_the_box_alone_cannot() {
        let c = cascade();
        let m = c.rank_by_name("M").expect("M");
        let (mv, pv) = (
            IndexExpr::Var(m),
            IndexExpr::Var(c.rank_by_name("P").expect("P")),
        );
        let ext_m = Poly::of_size(&c, m);
        let ge1 = Compare {
            lhs: mv.clone(),
            op: CompareOp::Ge,
            rhs: IndexExpr::Lit(1),
        };
        assert_eq!(
            in_range(&c, &ix(&c, "m-1"), &ext_m, &facts(&c, &[ge1])),
            Ok(())
        );
        // p - m stays below M (p < P is not M, so the upper side needs m <= p and p < M).
        let causal = Compare {
            lhs: mv.clone(),
            op: CompareOp::Le,
            rhs: pv.clone(),
        };
        let p_lt_m = Compare {
            lhs: pv,
            op: CompareOp::Lt,
            rhs: IndexExpr::Size(m),
        };
        assert_eq!(
            in_range(
                &c,
                &ix(&c, "p-m"),
                &ext_m,
                &facts(&c, std::slice::from_ref(&causal))
            ),
            Err(Escape::Above)
        );
        assert_eq!(
            in_range(&c, &ix(&c, "p-m"), &ext_m, &facts(&c, &[causal, p_lt_m])),
            Ok(())
        );
        let ne = Compare {
            lhs: mv,
            op: CompareOp::Ne,
            rhs: IndexExpr::Lit(0),
        };
        assert!(facts(&c, &[ne]).is_empty());
    }
}
