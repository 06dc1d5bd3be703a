//! Associativity of ×-reductions (contraction order): `(A·B)·C = A·(B·C)`.
//!
//! Written once for nested sums of products; it turns linear attention's `(φ(Q)ᵀφ(K))·V`,
//! O(M·P·E), into `φ(Q)ᵀ(φ(K)·Vᵀ)`, O(M·E·F), when extraction finds that cheaper.

use super::Cond::Indep;
use super::{Rule, rule};

#[rustfmt::skip]
pub fn rules() -> Vec<Rule> {
    vec![
        // Σ_m (Σ_e a·b)·c = Σ_e a·(Σ_m b·c)   when a does not depend on m, c not on e
        rule("assoc-contract", "(sum ?m (* (sum ?e (* ?a ?b)) ?c))", "(sum ?e (* ?a (sum ?m (* ?b ?c))))", &[Indep("?a", "?m"), Indep("?c", "?e")]),
    ]
}
