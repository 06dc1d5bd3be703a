//! Tile occupancy: how many (key tile, query tile) pairs of a grid a presence condition leaves
//! empty, partly present and full, counted per row of tiles and never point by point.
//!
//! A condition of a filter is affine in the key `m` and the query `p` once `m1*M0+m0` is read
//! as `m` and sizes and params are numbers: `a·m + b·p + c ⋈ 0` ([`Affine`]). Over one tile
//! (keys `k_lo..=k_hi`, queries `p_lo..=p_hi`) its left side ranges between the values at two
//! corners, so the condition holds nowhere, everywhere or somewhere on the tile. Along a row of
//! tiles (one query tile, key tiles `0..n`) those bounds move monotonically with the key tile,
//! so each verdict holds on an interval of key tiles, whose ends are guessed by division and
//! found by a search from the guess: a row costs a few evaluations per condition, the whole
//! grid O(query tiles · conditions).
//!
//! A [`Region`] is a union of conjunctions (the presence of an Einsum, [`crate::presence`]). A
//! tile is empty when every conjunction has a condition that holds nowhere on it, full when some
//! conjunction's conditions all hold everywhere on it, and partial otherwise. Each verdict is
//! exact for one inequality (`< <= > >=`: its extremes over a tile are at lattice corners); for
//! `==`, `!=` and several conditions it over-approximates presence (`m == 2p` can step over a
//! tile's lattice points; two conditions that each hold somewhere on a tile but nowhere together
//! make it partial, not empty), so "empty" and "full" are always right and imprecision only
//! moves tiles to "partial". A condition that is not affine in `m` and `p` (it names another
//! rank, or `m1` alone) holds somewhere on every tile.
//!
//! The query axis of a grid may hold several columns per query (`stride`): grouped-query
//! attention puts the heads of a group beside each query, column `q = p·stride + r`, so a tile
//! of columns covers the queries `q_lo / stride ..= q_hi / stride`.
//!
//! Everything here is arithmetic on ranks; nothing knows what runs on a tile.

use crate::ast::{Cascade, Compare, CompareOp, IndexExpr, RankId};
use crate::presence::Dnf;

/// `m·key + p·query + c`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Affine {
    pub m: i64,
    pub p: i64,
    pub c: i64,
}

/// One condition of a region: `lhs - rhs ⋈ 0` as an affine form, or unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    Affine(Affine, CompareOp),
    /// Not affine in the key and the query: assumed to hold somewhere on every tile.
    Unknown,
}

/// A union of conjunctions of conditions over (key, query).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub disjuncts: Vec<Vec<Cond>>,
}

impl Region {
    /// Present everywhere (one conjunction without conditions).
    pub fn everywhere() -> Region {
        Region {
            disjuncts: vec![Vec::new()],
        }
    }

    /// Whether the region is everything: some conjunction has no condition.
    pub fn is_everywhere(&self) -> bool {
        self.disjuncts.iter().any(Vec::is_empty)
    }
}

/// Which ranks are the key and the query (each possibly split), and the size of every rank.
#[allow(missing_debug_implementations)] // It holds a closure.
pub struct Axes<'a> {
    pub key: RankId,
    pub query: RankId,
    /// The size of a rank or param, as resolved for the problem.
    pub size: &'a dyn Fn(RankId) -> i64,
}

/// The region of a presence condition, with every index expression read over (key, query).
pub fn region(c: &Cascade, dnf: &Dnf, axes: &Axes<'_>) -> Region {
    let split = |r: RankId| c.rank(r).split;
    let key_parts = split(axes.key);
    let query_parts = split(axes.query);
    let cond = |k: &Compare| -> Cond {
        let diff = IndexExpr::Sub(Box::new(k.lhs.clone()), Box::new(k.rhs.clone()));
        let Some(form) = linear(&diff, axes.size) else {
            return Cond::Unknown;
        };
        // Coefficients of the key and query, with a split part folded into its whole.
        let fold = |whole: RankId, parts: Option<(RankId, RankId)>| -> Option<i64> {
            let mut coef = form.coef(whole);
            if let Some((outer, inner)) = parts {
                let (a_outer, a_inner) = (form.coef(outer), form.coef(inner));
                if a_outer != a_inner.checked_mul((axes.size)(inner))? {
                    return None;
                }
                coef = coef.checked_add(a_inner)?;
            }
            Some(coef)
        };
        let known = |r: RankId| {
            r == axes.key
                || r == axes.query
                || key_parts.is_some_and(|(a, b)| r == a || r == b)
                || query_parts.is_some_and(|(a, b)| r == a || r == b)
        };
        if form.terms.iter().any(|&(r, a)| a != 0 && !known(r)) {
            return Cond::Unknown;
        }
        match (fold(axes.key, key_parts), fold(axes.query, query_parts)) {
            (Some(m), Some(p)) => Cond::Affine(Affine { m, p, c: form.c }, k.op),
            _ => Cond::Unknown,
        }
    };
    Region {
        disjuncts: dnf
            .iter()
            .map(|conj| conj.iter().map(cond).collect())
            .collect(),
    }
}

/// A linear form over rank variables: `Σ a_r·r + c`.
#[derive(Debug, Clone, Default)]
struct Linear {
    terms: Vec<(RankId, i64)>,
    c: i64,
}

impl Linear {
    fn coef(&self, r: RankId) -> i64 {
        self.terms.iter().filter(|t| t.0 == r).map(|t| t.1).sum()
    }

    fn scaled(&self, k: i64) -> Option<Linear> {
        Some(Linear {
            terms: self
                .terms
                .iter()
                .map(|&(r, a)| a.checked_mul(k).map(|a| (r, a)))
                .collect::<Option<_>>()?,
            c: self.c.checked_mul(k)?,
        })
    }

    fn plus(&self, other: &Linear) -> Option<Linear> {
        let mut terms = self.terms.clone();
        for &(r, a) in &other.terms {
            match terms.iter_mut().find(|t| t.0 == r) {
                Some(t) => t.1 = t.1.checked_add(a)?,
                None => terms.push((r, a)),
            }
        }
        Some(Linear {
            terms,
            c: self.c.checked_add(other.c)?,
        })
    }
}

/// `e` as a linear form, with sizes and params as numbers; `None` when it multiplies two
/// variables or overflows.
fn linear(e: &IndexExpr, size: &dyn Fn(RankId) -> i64) -> Option<Linear> {
    match e {
        IndexExpr::Var(r) => Some(Linear {
            terms: vec![(*r, 1)],
            c: 0,
        }),
        IndexExpr::Size(r) => Some(Linear {
            terms: Vec::new(),
            c: size(*r),
        }),
        IndexExpr::Lit(k) => Some(Linear {
            terms: Vec::new(),
            c: *k,
        }),
        IndexExpr::Add(a, b) => linear(a, size)?.plus(&linear(b, size)?),
        IndexExpr::Sub(a, b) => linear(a, size)?.plus(&linear(b, size)?.scaled(-1)?),
        IndexExpr::Mul(a, b) => {
            let (a, b) = (linear(a, size)?, linear(b, size)?);
            match (a.terms.is_empty(), b.terms.is_empty()) {
                (true, _) => b.scaled(a.c),
                (_, true) => a.scaled(b.c),
                _ => None,
            }
        }
    }
}

/// A grid of tiles: `keys` keys in tiles of `key_tile`, `columns` query columns in tiles of
/// `query_tile`, with `stride` columns per query (`columns = queries · stride`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    pub keys: u64,
    pub key_tile: u64,
    pub columns: u64,
    pub query_tile: u64,
    pub stride: u64,
}

impl Grid {
    pub fn key_tiles(&self) -> u64 {
        self.keys.div_ceil(self.key_tile.max(1))
    }

    pub fn query_tiles(&self) -> u64 {
        self.columns.div_ceil(self.query_tile.max(1))
    }

    /// The queries of query tiles `first..=last`.
    pub fn queries_of(&self, first: u64, last: u64) -> (i64, i64) {
        let stride = self.stride.max(1);
        let lo = first * self.query_tile / stride;
        let hi = ((last + 1) * self.query_tile)
            .min(self.columns)
            .saturating_sub(1)
            / stride;
        (lo as i64, hi as i64)
    }

    fn keys_of(&self, tile: u64) -> (i64, i64) {
        let lo = tile * self.key_tile;
        let hi = ((tile + 1) * self.key_tile).min(self.keys) - 1;
        (lo as i64, hi as i64)
    }
}

/// Key tiles by verdict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TileCounts {
    pub empty: u64,
    pub partial: u64,
    pub full: u64,
}

impl TileCounts {
    pub fn total(&self) -> u64 {
        self.empty + self.partial + self.full
    }

    /// Tiles with something present.
    pub fn live(&self) -> u64 {
        self.partial + self.full
    }

    fn add(&mut self, o: TileCounts) {
        self.empty += o.empty;
        self.partial += o.partial;
        self.full += o.full;
    }
}

/// The key tiles of every query tile of the grid, one entry per query tile.
pub fn rows(region: &Region, grid: &Grid) -> Vec<TileCounts> {
    let mut band = Band::default();
    (0..grid.query_tiles())
        .map(|j| band.classify(region, grid, j))
        .collect()
}

/// Totals over the whole grid.
pub fn total(region: &Region, grid: &Grid) -> TileCounts {
    let mut t = TileCounts::default();
    let mut band = Band::default();
    for j in 0..grid.query_tiles() {
        t.add(band.classify(region, grid, j));
    }
    t
}

/// The last band of queries classified and its verdict: with many columns per query (a GQA
/// group's heads, many query heads on the columns) consecutive query tiles hold the same
/// queries, and their key tiles are the same.
#[derive(Default)]
struct Band {
    last: Option<((i64, i64), TileCounts)>,
}

impl Band {
    fn classify(&mut self, region: &Region, grid: &Grid, tile: u64) -> TileCounts {
        let queries = grid.queries_of(tile, tile);
        match self.last {
            Some((q, counts)) if q == queries => counts,
            _ => {
                let counts = classify(region, grid, queries.0, queries.1);
                self.last = Some((queries, counts));
                counts
            }
        }
    }
}

/// The key tiles of one band of queries `p_lo..=p_hi` (a query tile, or a group of them: a
/// key tile that is not empty for the band holds something for at least one of its queries).
pub fn classify(region: &Region, grid: &Grid, p_lo: i64, p_hi: i64) -> TileCounts {
    let n = grid.key_tiles();
    if n == 0 {
        return TileCounts::default();
    }
    if region.is_everywhere() {
        return TileCounts {
            full: n,
            ..TileCounts::default()
        };
    }
    // Where something may be present grows past capacity; where all is known present shrinks.
    let mut live = Intervals::none();
    let mut full = Intervals::none();
    for conj in &region.disjuncts {
        let mut l = Intervals::all(n);
        let mut f = Intervals::all(n);
        for cond in conj {
            let (cl, cf) = verdicts(cond, grid, p_lo, p_hi, n);
            l = l.intersect(&cl, true);
            f = f.intersect(&cf, false);
        }
        live = live.union(&l, true);
        full = full.union(&f.intersect(&l, false), false);
    }
    let (live, full) = (live.len(), full.len());
    TileCounts {
        empty: n - live,
        partial: live - full,
        full,
    }
}

/// For one condition over the band: the key tiles where it holds somewhere, and everywhere.
fn verdicts(cond: &Cond, grid: &Grid, p_lo: i64, p_hi: i64, n: u64) -> (Intervals, Intervals) {
    let Cond::Affine(a, op) = *cond else {
        return (Intervals::all(n), Intervals::none());
    };
    // The extremes of a·m + b·p + c over key tile i and the band, as i128 (no overflow).
    let bounds = move |i: u64| -> (i128, i128) {
        let (k_lo, k_hi) = grid.keys_of(i);
        let m = [
            i128::from(a.m) * i128::from(k_lo),
            i128::from(a.m) * i128::from(k_hi),
        ];
        let p = [
            i128::from(a.p) * i128::from(p_lo),
            i128::from(a.p) * i128::from(p_hi),
        ];
        let c = i128::from(a.c);
        (
            m[0].min(m[1]) + p[0].min(p[1]) + c,
            m[0].max(m[1]) + p[0].max(p[1]) + c,
        )
    };
    // Each test below is monotone in i: the bounds move one way as i grows. Apart from a
    // truncated last tile they are linear in i, `a.m·key_tile·i + b`, so each crossing is
    // first guessed by division and then found by a search that starts at the guess.
    let slope = i128::from(a.m) * i128::from(grid.key_tile);
    let (lo0, hi0) = bounds(0);
    let (lo_n, hi_n) = bounds(n - 1);
    let guess = |t: i128, at0: i128| -> u64 {
        if slope == 0 {
            return 0;
        }
        let x = (t - at0).div_euclid(slope);
        x.clamp(0, i128::from(n)) as u64
    };
    let set = |test: &dyn Fn(i128, i128) -> bool, t: i128, on_hi: bool| {
        let g = guess(t, if on_hi { hi0 } else { lo0 });
        let ends = (test(lo0, hi0), test(lo_n, hi_n));
        monotone(
            n,
            &|i| {
                let (lo, hi) = bounds(i);
                test(lo, hi)
            },
            g,
            ends,
        )
    };
    let le = |t: i128| move |lo: i128, _hi: i128| lo <= t;
    let ge = |t: i128| move |_lo: i128, hi: i128| hi >= t;
    let all_le = |t: i128| move |_lo: i128, hi: i128| hi <= t;
    let all_ge = |t: i128| move |lo: i128, _hi: i128| lo >= t;
    // Somewhere: lo ≤ t (for `≤`) or hi ≥ t (for `≥`); everywhere: hi ≤ t or lo ≥ t.
    let some_le = |t: i128| set(&le(t), t, false);
    let some_ge = |t: i128| set(&ge(t), t, true);
    let every_le = |t: i128| set(&all_le(t), t, true);
    let every_ge = |t: i128| set(&all_ge(t), t, false);
    match op {
        CompareOp::Le => (some_le(0), every_le(0)),
        CompareOp::Lt => (some_le(-1), every_le(-1)),
        CompareOp::Ge => (some_ge(0), every_ge(0)),
        CompareOp::Gt => (some_ge(1), every_ge(1)),
        CompareOp::Eq => (
            some_le(0).intersect(&some_ge(0), true),
            every_le(0).intersect(&every_ge(0), false),
        ),
        CompareOp::Ne => {
            // Nowhere only where the form is 0 on the whole tile; where it may hold is the
            // complement of that (a small set, never past capacity).
            let zero = every_le(0).intersect(&every_ge(0), false);
            (
                zero.complement(n, true),
                every_le(-1).union(&every_ge(1), false),
            )
        }
    }
}

/// The set of `i in 0..n` where a monotone predicate holds (true on a prefix, a suffix, all or
/// nothing), given its values at both ends: the switch point is searched from `guess` outwards
/// in doubling steps, then by bisection, so a good guess costs a few evaluations and a bad one
/// O(log n).
fn monotone(
    n: u64,
    pred: &dyn Fn(u64) -> bool,
    guess: u64,
    (first, last): (bool, bool),
) -> Intervals {
    if first == last {
        return if first {
            Intervals::all(n)
        } else {
            Intervals::none()
        };
    }
    // The first i whose verdict differs from i = 0's: in 1..n.
    let flipped = |i: u64| pred(i) != first;
    let g = guess.clamp(1, n - 1);
    let (mut lo, mut hi) = if flipped(g) {
        // Flipped at g: the switch is at or below it.
        let mut step = 1;
        let mut hi = g;
        loop {
            let lo = hi.saturating_sub(step);
            if lo == 0 || !flipped(lo) {
                break (lo, hi);
            }
            hi = lo;
            step *= 2;
        }
    } else {
        let mut step = 1;
        let mut lo = g;
        loop {
            let hi = (lo + step).min(n - 1);
            if flipped(hi) {
                break (lo, hi);
            }
            lo = hi;
            step *= 2;
        }
    };
    // Invariant: not flipped at lo (or lo = 0), flipped at hi.
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if flipped(mid) { hi = mid } else { lo = mid }
    }
    if first {
        Intervals::one(0, hi)
    } else {
        Intervals::one(hi, n)
    }
}

/// Disjoint sorted half-open intervals of key tiles, on the stack: a condition gives one or
/// two, a conjunction intersects them and a union of a few conjunctions joins them, so a
/// handful suffices. Past the capacity an operation keeps its result conservative: a set of
/// tiles where something may be present grows ([`Intervals::push`] with `over`), a set of
/// tiles known full shrinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Intervals {
    len: usize,
    items: [(u64, u64); CAPACITY],
}

const CAPACITY: usize = 4;

impl Intervals {
    fn none() -> Intervals {
        Intervals {
            len: 0,
            items: [(0, 0); CAPACITY],
        }
    }

    fn all(n: u64) -> Intervals {
        Intervals::one(0, n)
    }

    fn one(a: u64, b: u64) -> Intervals {
        let mut out = Intervals::none();
        if a < b {
            out.items[0] = (a, b);
            out.len = 1;
        }
        out
    }

    fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.items[..self.len].iter().copied()
    }

    fn len(&self) -> u64 {
        self.iter().map(|(a, b)| b - a).sum()
    }

    /// Appends an interval that starts at or after the last one, merging when they touch. At
    /// capacity `over` widens the last interval to cover it, otherwise it is dropped.
    fn push(&mut self, (a, b): (u64, u64), over: bool) {
        if a >= b {
            return;
        }
        if let Some(last) = self.items[..self.len].last_mut()
            && a <= last.1
        {
            last.1 = last.1.max(b);
            return;
        }
        if self.len < CAPACITY {
            self.items[self.len] = (a, b);
            self.len += 1;
        } else if over {
            self.items[CAPACITY - 1].1 = b;
        }
    }

    fn intersect(&self, o: &Intervals, over: bool) -> Intervals {
        let mut out = Intervals::none();
        let (mut i, mut j) = (0, 0);
        while i < self.len && j < o.len {
            let (a, b) = self.items[i];
            let (c, d) = o.items[j];
            out.push((a.max(c), b.min(d)), over);
            if b < d { i += 1 } else { j += 1 }
        }
        out
    }

    fn union(&self, o: &Intervals, over: bool) -> Intervals {
        let mut out = Intervals::none();
        let (mut i, mut j) = (0, 0);
        while i < self.len || j < o.len {
            let take_self = j >= o.len || (i < self.len && self.items[i].0 <= o.items[j].0);
            let next = if take_self {
                i += 1;
                self.items[i - 1]
            } else {
                j += 1;
                o.items[j - 1]
            };
            out.push(next, over);
        }
        out
    }

    fn complement(&self, n: u64, over: bool) -> Intervals {
        let mut out = Intervals::none();
        let mut at = 0;
        for (a, b) in self.iter() {
            out.push((at, a), over);
            at = at.max(b);
        }
        out.push((at, n), over);
        out
    }
}

/// `⌊x / d⌋` for any non-zero `d`.
fn floor_div(x: i128, d: i128) -> i128 {
    if d < 0 {
        (-x).div_euclid(-d)
    } else {
        x.div_euclid(d)
    }
}

/// `⌈x / d⌉` for any non-zero `d`.
fn ceil_div(x: i128, d: i128) -> i128 {
    -floor_div(-x, d)
}

/// Points of the region over `keys × queries`, counted query by query (for each query, every
/// conjunction's keys form an interval, less a point for `!=`). Overlapping conjunctions are
/// counted once each, capped at the grid: an upper bound, exact for disjoint ones.
pub fn present_points(region: &Region, keys: u64, queries: u64) -> u64 {
    let grid_points = keys.saturating_mul(queries);
    if region.is_everywhere() {
        return grid_points;
    }
    let mut total: u64 = 0;
    for conj in &region.disjuncts {
        if conj.contains(&Cond::Unknown) {
            return grid_points;
        }
        for p in 0..queries as i64 {
            let (mut lo, mut hi) = (0i128, keys as i128 - 1);
            let mut holes: Vec<i128> = Vec::new();
            let mut empty = false;
            for cond in conj {
                let Cond::Affine(a, op) = *cond else { continue };
                let (am, rest) = (
                    i128::from(a.m),
                    i128::from(a.p) * i128::from(p) + i128::from(a.c),
                );
                // am·m + rest ⋈ 0.
                let ok_const = |v: i128| match op {
                    CompareOp::Le => v <= 0,
                    CompareOp::Lt => v < 0,
                    CompareOp::Ge => v >= 0,
                    CompareOp::Gt => v > 0,
                    CompareOp::Eq => v == 0,
                    CompareOp::Ne => v != 0,
                };
                if am == 0 {
                    empty |= !ok_const(rest);
                    continue;
                }
                // am·m ⋈ t: bounds on m, dividing by am (which flips them when am < 0).
                let t = -rest;
                let (upper, lower) = match op {
                    CompareOp::Le | CompareOp::Lt => {
                        let t = if op == CompareOp::Lt { t - 1 } else { t };
                        if am > 0 {
                            (Some(floor_div(t, am)), None)
                        } else {
                            (None, Some(ceil_div(t, am)))
                        }
                    }
                    CompareOp::Ge | CompareOp::Gt => {
                        let t = if op == CompareOp::Gt { t + 1 } else { t };
                        if am > 0 {
                            (None, Some(ceil_div(t, am)))
                        } else {
                            (Some(floor_div(t, am)), None)
                        }
                    }
                    CompareOp::Eq if t.rem_euclid(am.abs()) == 0 => (Some(t / am), Some(t / am)),
                    CompareOp::Eq => {
                        empty = true;
                        (None, None)
                    }
                    CompareOp::Ne => {
                        if t.rem_euclid(am.abs()) == 0 {
                            holes.push(t / am);
                        }
                        (None, None)
                    }
                };
                if let Some(u) = upper {
                    hi = hi.min(u);
                }
                if let Some(l) = lower {
                    lo = lo.max(l);
                }
            }
            if empty || lo > hi {
                continue;
            }
            holes.sort_unstable();
            holes.dedup();
            let inside = holes.iter().filter(|&&h| lo <= h && h <= hi).count() as i128;
            total = total.saturating_add((hi - lo + 1 - inside) as u64);
        }
    }
    total.min(grid_points)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsl;
    use crate::plan::LoopPlan;
    use crate::presence::presence;

    /// The region of the first filtered Einsum's presence in a cascade.
    fn first_region(src: &str, sizes: &[(&str, i64)]) -> (Region, Cascade) {
        let c = dsl::parse(src, "t").expect("parses").cascade;
        let plan = LoopPlan::new(&c);
        let p = presence(&c, &plan);
        let dnf = p
            .into_iter()
            .find(|d| d.iter().any(|conj| !conj.is_empty()))
            .expect("a filtered Einsum");
        let named: Vec<(RankId, i64)> = sizes
            .iter()
            .filter_map(|(n, v)| c.rank_by_name(n).map(|r| (r, *v)))
            .collect();
        let size = move |r: RankId| named.iter().find(|x| x.0 == r).map_or(1, |x| x.1);
        let axes = Axes {
            key: c.rank_by_name("M").unwrap(),
            query: c.rank_by_name("P").unwrap(),
            size: &size,
        };
        (region(&c, &dnf, &axes), c)
    }

    /// Tile verdicts point by point: the oracle for small grids.
    fn brute(grid: &Grid, visible: impl Fn(i64, i64) -> bool) -> TileCounts {
        let mut t = TileCounts::default();
        for j in 0..grid.query_tiles() {
            let (p_lo, p_hi) = grid.queries_of(j, j);
            for i in 0..grid.key_tiles() {
                let (k_lo, k_hi) = grid.keys_of(i);
                let n = (k_lo..=k_hi)
                    .flat_map(|m| (p_lo..=p_hi).map(move |p| (m, p)))
                    .filter(|&(m, p)| visible(m, p))
                    .count() as i64;
                let all = (k_hi - k_lo + 1) * (p_hi - p_lo + 1);
                match n {
                    0 => t.empty += 1,
                    n if n == all => t.full += 1,
                    _ => t.partial += 1,
                }
            }
        }
        t
    }

    const HEAD: &str = "ranks E F M P\nparam S W\ninput Q[E,P] K[E,M] V[F,M]\n\n";

    fn src(filter: &str) -> String {
        format!(
            "cascade t\n{HEAD}QK[m,p] = Q[e,p] * K[e, m : {filter}]\nAV[f,p] = QK[m,p] * V[f,m]\n\noutput AV\n"
        )
    }

    #[test]
    fn single_conditions_match_the_point_by_point_count() {
        let grid = Grid {
            keys: 37,
            key_tile: 5,
            columns: 23,
            query_tile: 4,
            stride: 1,
        };
        type Pred = fn(i64, i64) -> bool;
        let cases: [(&str, Pred); 7] = [
            ("m <= p", |m, p| m <= p),
            ("m <= p + M - P", |m, p| m <= p + 14),
            ("m < p", |m, p| m < p),
            ("m >= p - 3", |m, p| m >= p - 3),
            ("m > 2 * p", |m, p| m > 2 * p),
            ("m == p + 1", |m, p| m == p + 1),
            ("m != p", |m, p| m != p),
        ];
        for (filter, visible) in cases {
            let (r, _) = first_region(&src(filter), &[("M", 37), ("P", 23)]);
            assert_eq!(total(&r, &grid), brute(&grid, visible), "{filter}");
        }
    }

    #[test]
    fn windows_and_sinks_match_the_point_by_point_count() {
        let grid = Grid {
            keys: 64,
            key_tile: 8,
            columns: 64,
            query_tile: 8,
            stride: 1,
        };
        let (r, _) = first_region(
            &src("m <= p && p - m < W"),
            &[("M", 64), ("P", 64), ("W", 12)],
        );
        assert_eq!(total(&r, &grid), brute(&grid, |m, p| m <= p && p - m < 12));
        // A union of two conjunctions.
        let sinks = format!(
            "cascade t\n{HEAD}QS[m,p] = Q[e,p] * K[e, m : m < S && m <= p]\n\
             QW[m,p] = Q[e,p] * K[e, m : m >= S && m <= p && p - m < W]\n\
             QK[m,p] = QS[m,p] + QW[m,p]\nAV[f,p] = QK[m,p] * V[f,m]\n\noutput AV\n"
        );
        let c = dsl::parse(&sinks, "t").unwrap().cascade;
        let plan = LoopPlan::new(&c);
        let dnf = presence(&c, &plan)[2].clone();
        let size = |r: RankId| match c.rank(r).name.as_str() {
            "S" => 3,
            "W" => 10,
            _ => 64,
        };
        let axes = Axes {
            key: c.rank_by_name("M").unwrap(),
            query: c.rank_by_name("P").unwrap(),
            size: &size,
        };
        let r = region(&c, &dnf, &axes);
        assert_eq!(r.disjuncts.len(), 2);
        let want = brute(&grid, |m, p| m <= p && (m < 3 || p - m < 10));
        assert_eq!(total(&r, &grid), want);
        let points = present_points(&r, 64, 64);
        let direct = (0..64i64)
            .flat_map(|p| (0..64i64).map(move |m| (m, p)))
            .filter(|&(m, p)| m <= p && (m < 3 || p - m < 10))
            .count() as u64;
        assert_eq!(points, direct);
    }

    #[test]
    fn split_keys_and_grouped_columns_fold_into_the_key_and_the_query() {
        // `m1*M0+m0 <= p` is `m <= p`; with 4 columns per query a tile of 8 columns holds 2
        // queries.
        let one_pass = "cascade t\nranks E F M P\nsplit M -> M1 M0\ninput Q[E,P] K[E,M] V[F,M]\n\ninit\n\
            BK[e,m1,m0] = K[e, m1*M0+m0]\n\neinsums\nBQK[m1,m0,p] = Q[e,p] * BK[e,m1,m0 : m1*M0+m0 <= p]\n\
            AV[f,p] = BQK[m1,m0,p] * V[f, m1*M0+m0]\n\noutput AV\n";
        let (r, _) = first_region(one_pass, &[("M", 40), ("P", 10), ("M0", 4), ("M1", 10)]);
        assert!(matches!(
            r.disjuncts[0][0],
            Cond::Affine(Affine { m: 1, p: -1, c: 0 }, CompareOp::Le)
        ));
        let grid = Grid {
            keys: 40,
            key_tile: 4,
            columns: 40,
            query_tile: 8,
            stride: 4,
        };
        assert_eq!(total(&r, &grid), brute(&grid, |m, p| m <= p));
    }

    #[test]
    fn a_condition_on_another_rank_keeps_every_tile_partial() {
        let src = "cascade t\nranks E F M P H\ninput Q[E,P,H] K[E,M,H] V[F,M,H]\n\n\
            QK[m,p,h] = Q[e,p,h] * K[e, m : m <= h, h]\nAV[f,p,h] = QK[m,p,h] * V[f,m,h]\n\noutput AV\n";
        let (r, _) = first_region(src, &[("M", 16), ("P", 16)]);
        let grid = Grid {
            keys: 16,
            key_tile: 4,
            columns: 16,
            query_tile: 4,
            stride: 1,
        };
        assert_eq!(
            total(&r, &grid),
            TileCounts {
                empty: 0,
                partial: 16,
                full: 0
            }
        );
    }

    /// Random affine conditions and conjunctions of two, on random grids, against the
    /// point-by-point count (seeded, so every run checks the same cases).
    #[test]
    fn random_affine_conditions_match_the_point_by_point_count() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |k: i64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % k as u64) as i64
        };
        let ops = [
            CompareOp::Le,
            CompareOp::Lt,
            CompareOp::Ge,
            CompareOp::Gt,
            CompareOp::Eq,
            CompareOp::Ne,
        ];
        for _ in 0..400 {
            let grid = Grid {
                keys: 1 + next(40) as u64,
                key_tile: 1 + next(6) as u64,
                columns: 1 + next(30) as u64,
                query_tile: 1 + next(5) as u64,
                stride: 1,
            };
            let mut conj = Vec::new();
            for _ in 0..1 + next(2) {
                let a = Affine {
                    m: next(7) - 3,
                    p: next(7) - 3,
                    c: next(41) - 20,
                };
                conj.push((a, ops[next(6) as usize]));
            }
            let region = Region {
                disjuncts: vec![conj.iter().map(|&(a, op)| Cond::Affine(a, op)).collect()],
            };
            let holds = |m: i64, p: i64| {
                conj.iter().all(|&(a, op)| {
                    let v = a.m * m + a.p * p + a.c;
                    match op {
                        CompareOp::Le => v <= 0,
                        CompareOp::Lt => v < 0,
                        CompareOp::Ge => v >= 0,
                        CompareOp::Gt => v > 0,
                        CompareOp::Eq => v == 0,
                        CompareOp::Ne => v != 0,
                    }
                })
            };
            let got = total(&region, &grid);
            let want = brute(&grid, holds);
            // One inequality: exact (its extremes over a tile are at lattice corners). `==`,
            // `!=` (the form may step over 0 between lattice points) and two conditions: empty
            // and full are never wrong, partial may grow.
            let inequality = !matches!(conj[0].1, CompareOp::Eq | CompareOp::Ne);
            if conj.len() == 1 && inequality {
                assert_eq!(got, want, "{conj:?} on {grid:?}");
            } else {
                assert!(
                    got.empty <= want.empty && got.full <= want.full,
                    "{conj:?} on {grid:?}"
                );
                assert_eq!(got.total(), want.total());
            }
            let points = present_points(&region, grid.keys, grid.columns);
            let direct = (0..grid.columns as i64)
                .flat_map(|p| (0..grid.keys as i64).map(move |m| (m, p)))
                .filter(|&(m, p)| holds(m, p))
                .count() as u64;
            assert_eq!(points, direct, "{conj:?} on {grid:?}");
        }
    }

    #[test]
    fn a_million_token_causal_grid_counts_by_rows() {
        let (r, _) = first_region(&src("m <= p"), &[("M", 1 << 20), ("P", 1 << 20)]);
        let grid = Grid {
            keys: 1 << 20,
            key_tile: 256,
            columns: 1 << 20,
            query_tile: 256,
            stride: 1,
        };
        let t = total(&r, &grid);
        // 4096 diagonal tiles are partial; below them n(n-1)/2 full, above as many empty.
        let n = 4096u64;
        assert_eq!(
            t,
            TileCounts {
                empty: n * (n - 1) / 2,
                partial: n,
                full: n * (n - 1) / 2
            }
        );
    }
}
