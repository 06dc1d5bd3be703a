//! Chunked running states: a prefix sum over `m` is a running state over chunks `m1` plus a
//! dense, causally masked sum within each chunk (Lightning Attention-2 from linear attention's
//! recurrence).
//!
//! With `S[m+1] = S[m] + k[m]·v[m]` (`S[0]` absent) and `m = m1·M0 + m0`,
//! `S[m1·M0+m0+1] = C[m1] + Σ_{n0 ≤ m0} k[m1·M0+n0]·v[m1·M0+n0]`, where `C[m1+1] = C[m1] +
//! Σ_m0 k·v` is the exclusive prefix over chunks of the chunk totals. A query read
//! `Σ_e q·S[m+1]` then distributes over the two terms, and the intra-chunk one reassociates:
//! `Σ_e q[e,m0] Σ_{n0≤m0} k[e,n0]·v[n0] = Σ_{n0≤m0} (Σ_e q[e,m0]·k[e,n0])·v[n0]`, which is
//! E·M0 + F·M0 per query instead of E·F. Only `+` updates with an absent initial state match
//! (`(scan ?m 0 (+ (state ?m) …))`): a non-additive update, a constant initial state or a state
//! read at another step is not a prefix sum and is left alone. Tested on finite values, with
//! absent points (`+` merges with ∪, so an absent chunk's state is absent, as the prefix is).
//!
//! `scan-chunk-rev` is the same fact read backwards, from the chunked form to the recurrence;
//! both rows share their two sides. It matches a cascade written in chunks (`split M -> M1 M0
//! N0`, a filter `n0 <= m0` on the key read) because the rewriter states that a cascade's own
//! tiles and that filter are `(outer m)`, `(inner m)`, `(key m)` and `(tri m)` (`canonical_tiles`
//! in `rewrite`).

use super::Cond::{Fresh, Indep, Splittable, Stateless};
use super::{Rule, rule};

/// `Σ_e q·S[m+1]` with `S[m+1] = S[m] + k·v`: the recurrence (RNN form).
const RECURRENCE: &str = "(sum ?e (* ?q (scan ?m 0 (+ (state ?m) (* ?k ?v)))))";

/// `join_m (Σ_e q·C[m1] + Σ_{n0} (Σ_e q·[n0≤m0]k[n0])·v[n0])` with `C[m1+1] = C[m1] + Σ_m0 k·v`:
/// the chunked form, spelled as a cascade writes it (a filter on the key read), so that the
/// way back matches a chunked cascade as lifted.
const CHUNKED: &str = "(join ?m (+ (sum ?e (* (split ?m ?q) (scan-prev (outer ?m) 0 (+ (state (outer ?m)) (sum (inner ?m) (* (split ?m ?k) (split ?m ?v))))))) \
                                 (sum (key ?m) (* (sum ?e (* (split ?m ?q) (where (tri ?m) (split-key ?m ?k)))) (split-key ?m ?v)))))";

#[rustfmt::skip]
pub fn rules() -> Vec<Rule> {
    vec![
        // Σ_e q·S[m+1], S[m+1] = S[m] + k·v  =  join_m (Σ_e q·C[m1] + Σ_{n0} (Σ_e q·[n0≤m0]k[n0])·v[n0]), C[m1+1] = C[m1] + Σ_m0 k·v
        rule(
            "scan-chunk",
            RECURRENCE,
            CHUNKED,
            &[Splittable("?m"), Stateless("?q"), Stateless("?k"), Stateless("?v"), Indep("?v", "?e"),
              Fresh("?q", "?m"), Fresh("?k", "?m"), Fresh("?v", "?m")],
        ),
        // The same fact read backwards: the chunked form is the recurrence (fewer products per query).
        rule(
            "scan-chunk-rev",
            CHUNKED,
            RECURRENCE,
            &[Stateless("?q"), Stateless("?k"), Stateless("?v"), Indep("?v", "?e"),
              Fresh("?q", "?m"), Fresh("?k", "?m"), Fresh("?v", "?m")],
        ),
    ]
}
