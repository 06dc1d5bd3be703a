//! Semantic checks of a cascade; every problem is reported at once, each naming its location.

use crate::ast::*;

/// The rank an index expression walks along a tensor dimension, when it names one: `m`, `M`,
/// `m+1` give `M`; `m1*M0+m0` gives the parent of the split `(M1, M0)`. Literals and other
/// arithmetic name none.
pub fn index_rank(c: &Cascade, idx: &IndexExpr) -> Option<RankId> {
    if let Some(r) = idx.shifted_var() {
        return Some(r);
    }
    match idx {
        IndexExpr::Var(r) | IndexExpr::Size(r) => Some(*r),
        IndexExpr::Add(a, b) => match (&**a, &**b) {
            (IndexExpr::Mul(o, s), IndexExpr::Var(i)) => match (&**o, &**s) {
                (IndexExpr::Var(o), IndexExpr::Size(s)) if s == i => c
                    .ranks
                    .iter()
                    .position(|r| r.split == Some((*o, *i)))
                    .map(|p| RankId(p as u32)),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}
