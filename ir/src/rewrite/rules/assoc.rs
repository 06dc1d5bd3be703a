//! Contraction algebra: associativity of ×-reductions (contraction order), `(A·B)·C = A·(B·C)`,
//! and distributivity of a contraction over `+`.
//!
//! Associativity is written once for nested sums of products; it turns linear attention's
//! `(φ(Q)ᵀφ(K))·V`, O(M·P·E), into `φ(Q)ᵀ(φ(K)·Vᵀ)`, O(M·E·F), when extraction finds that
//! cheaper. Distributivity splits a contraction with a sum of two terms into two contractions,
//! so each can be reassociated or deferred on its own: the step that separates a chunked
//! linear attention's inter-chunk state from its intra-chunk product. Both are tested on
//! finite values (reassociating sums of infinities can turn `∞ − ∞` into a different NaN).
//! `+` merges with ∪ and `×` with ∩, so distributing keeps absent points absent: `a·(b + ∅)`
//! is `a·b`, as is `a·b + ∅`.

use super::Cond::Indep;
use super::{Rule, rule};

#[rustfmt::skip]
pub fn rules() -> Vec<Rule> {
    vec![
        // Σ_m (Σ_e a·b)·c = Σ_e a·(Σ_m b·c)   when a does not depend on m, c not on e
        rule("assoc-contract",      "(sum ?m (* (sum ?e (* ?a ?b)) ?c))", "(sum ?e (* ?a (sum ?m (* ?b ?c))))",       &[Indep("?a", "?m"), Indep("?c", "?e")]),
        // Σ_e a·(b + c) = Σ_e a·b + Σ_e a·c
        rule("contract-distribute", "(sum ?e (* ?a (+ ?b ?c)))",          "(+ (sum ?e (* ?a ?b)) (sum ?e (* ?a ?c)))", &[]),
    ]
}
