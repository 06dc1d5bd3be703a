//! Polynomials of rank sizes with integer coefficients, for op counts and footprints.
//!
//! A monomial is a sorted multiset of ranks (`E·M·P`, `M1·M1`); the constant monomial is empty.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Add, AddAssign, Mul};

use crate::ast::{Cascade, RankId};
use crate::shape::Shape;

/// `Σ coefficient · Π ranks`, kept normalised: sorted monomials, no zero coefficients.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Polynomial {
    terms: BTreeMap<Vec<RankId>, i64>,
}

impl Polynomial {
    /// The zero polynomial.
    pub fn zero() -> Polynomial {
        Polynomial::default()
    }

    /// A constant.
    pub fn constant(c: i64) -> Polynomial {
        Polynomial::term(c, Vec::new())
    }

    /// `c · Π ranks`.
    pub fn term(c: i64, mut ranks: Vec<RankId>) -> Polynomial {
        ranks.sort();
        let mut terms = BTreeMap::new();
        if c != 0 {
            terms.insert(ranks, c);
        }
        Polynomial { terms }
    }

    /// `(monomial, coefficient)` pairs in monomial order.
    pub fn terms(&self) -> impl Iterator<Item = (&[RankId], i64)> {
        self.terms.iter().map(|(m, c)| (m.as_slice(), *c))
    }

    pub fn is_zero(&self) -> bool {
        self.terms.is_empty()
    }

    /// The value with every rank at its size in `shape`; `None` when it overflows `i64`.
    pub fn checked_eval(&self, shape: &Shape) -> Option<i64> {
        self.terms.iter().try_fold(0i64, |sum, (m, c)| {
            let term = m
                .iter()
                .try_fold(*c, |acc, r| acc.checked_mul(shape.size(*r)))?;
            sum.checked_add(term)
        })
    }

    /// The value with every rank at its size in `shape`, saturating at the `i64` range (use
    /// [`Polynomial::checked_eval`] where a saturated count would be reported).
    pub fn eval(&self, shape: &Shape) -> i64 {
        self.terms
            .iter()
            .map(|(m, c)| {
                m.iter()
                    .fold(*c, |acc, r| acc.saturating_mul(shape.size(*r)))
            })
            .fold(0i64, i64::saturating_add)
    }

    /// Replaces each `outer·inner` pair of a split rank by the rank itself (`M1·M0` → `M`, and
    /// `M1·N0` → `M` for a second inner variable `N0`), so counts read in the ranks the user
    /// gave.
    pub fn merge_splits(&self, cascade: &Cascade) -> Polynomial {
        let mut out = Polynomial::zero();
        for (monomial, c) in &self.terms {
            let mut ranks = monomial.clone();
            let mut changed = true;
            while changed {
                changed = false;
                for (i, rank) in cascade.ranks.iter().enumerate() {
                    let Some((a, inner)) = rank.split else {
                        continue;
                    };
                    for b in cascade.inner_parts(inner) {
                        if let (Some(pa), Some(_)) = (
                            ranks.iter().position(|r| *r == a),
                            ranks.iter().position(|r| *r == b),
                        ) {
                            ranks.remove(pa);
                            let pb = ranks.iter().position(|r| *r == b).expect("still there");
                            ranks.remove(pb);
                            ranks.push(RankId(i as u32));
                            changed = true;
                        }
                    }
                }
            }
            out += Polynomial::term(*c, ranks);
        }
        out
    }

    /// Formats with the cascade's rank names: `2·E·M·P + M·P`.
    pub fn display<'a>(&'a self, cascade: &'a Cascade) -> impl fmt::Display + 'a {
        PolyDisplay {
            poly: self,
            name: Box::new(move |r: RankId| cascade.rank(r).name.clone()),
        }
    }

    /// Formats with names looked up in `names` (indexed by rank id).
    pub fn display_with<'a>(&'a self, names: &'a [String]) -> impl fmt::Display + 'a {
        PolyDisplay {
            poly: self,
            name: Box::new(move |r: RankId| names[r.index()].clone()),
        }
    }
}

struct PolyDisplay<'a> {
    poly: &'a Polynomial,
    name: Box<dyn Fn(RankId) -> String + 'a>,
}

impl fmt::Display for PolyDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.poly.is_zero() {
            return f.write_str("0");
        }
        // Highest degree first, then by rank order.
        let mut terms: Vec<(&Vec<RankId>, &i64)> = self.poly.terms.iter().collect();
        terms.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(b.0)));
        for (i, (monomial, &c)) in terms.into_iter().enumerate() {
            let sign = if c < 0 { "-" } else { "+" };
            match (i, c < 0) {
                (0, true) => f.write_str("-")?,
                (0, false) => {}
                _ => write!(f, " {sign} ")?,
            }
            let c = c.abs();
            let names: Vec<String> = monomial.iter().map(|r| (self.name)(*r)).collect();
            match (c, names.is_empty()) {
                (_, true) => write!(f, "{c}")?,
                (1, false) => f.write_str(&names.join("·"))?,
                (_, false) => write!(f, "{c}·{}", names.join("·"))?,
            }
        }
        Ok(())
    }
}

impl AddAssign for Polynomial {
    fn add_assign(&mut self, rhs: Polynomial) {
        for (m, c) in rhs.terms {
            let entry = self.terms.entry(m).or_insert(0);
            *entry += c;
            if *entry == 0 {
                self.terms.retain(|_, c| *c != 0);
            }
        }
    }
}

impl Add for Polynomial {
    type Output = Polynomial;
    fn add(mut self, rhs: Polynomial) -> Polynomial {
        self += rhs;
        self
    }
}

impl Mul for &Polynomial {
    type Output = Polynomial;
    fn mul(self, rhs: &Polynomial) -> Polynomial {
        let mut out = Polynomial::zero();
        for (a, ca) in &self.terms {
            for (b, cb) in &rhs.terms {
                out += Polynomial::term(ca * cb, a.iter().chain(b).copied().collect());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        ["E", "F", "M", "P"].iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn displays_terms_by_degree_with_signs() {
        let (e, m, p) = (RankId(0), RankId(2), RankId(3));
        let poly = Polynomial::term(1, vec![p, m, e])
            + Polynomial::term(2, vec![m, p])
            + Polynomial::term(-3, vec![p])
            + Polynomial::constant(4);
        assert_eq!(
            poly.display_with(&names()).to_string(),
            "E·M·P + 2·M·P - 3·P + 4"
        );
        assert_eq!(Polynomial::zero().display_with(&names()).to_string(), "0");
    }

    #[test]
    fn cancelling_terms_vanish_and_products_multiply() {
        let (m, p) = (RankId(2), RankId(3));
        let a = Polynomial::term(2, vec![m]) + Polynomial::constant(1);
        let b = Polynomial::term(1, vec![p]);
        let prod = &a * &b;
        assert_eq!(prod.display_with(&names()).to_string(), "2·M·P + P");
        let zero = Polynomial::term(2, vec![m]) + Polynomial::term(-2, vec![m]);
        assert!(zero.is_zero());
    }
}
