//! The fused kernel's mask: where each condition of the scores' presence holds over a key tile
//! × query tile.
//!
//! Filters may use any comparison (`< <= > >= == !=`) over the key `m` (or the parts of its
//! split on their own), the query `p`, the heads (one value per block), sizes and params. Each
//! condition (an *atom* of the presence formula) has its `lhs - rhs` bounded by interval
//! arithmetic over the tile (keys `k_lo..=k_hi`, queries `p_lo..=p_hi`); from that interval it
//! holds nowhere in the tile, everywhere (no per-point test) or maybe (tested per point). The
//! kernel combines the atoms' states in three-valued logic to skip tiles. Interval arithmetic over-approximates, so "nowhere" and "everywhere" are
//! always right whatever the operator; imprecision only costs per-point tests. (Testing the
//! four corners of the tile, which this replaces, is only sound for `< <= > >=` over affine
//! expressions: `m != p` holds at every corner of a diagonal tile.)

use cascade_ir::{Compare, CompareOp, IndexExpr, RankId};

use crate::cexpr::{self, Names};

/// The ranks the mask ranges over: the key `m` and the parts of its split, the query `p`, and
/// variables with one value per block (the heads), whose interval is that value.
#[derive(Debug, Clone)]
pub struct MaskRanks {
    pub m: RankId,
    pub split: Option<(RankId, RankId)>,
    pub p: RankId,
    pub query_split: Option<(RankId, RankId)>,
    pub exact: Vec<RankId>,
}

/// Statements setting `st[k]` for each condition `conds[k]`: `TILE_SKIP` where it holds
/// nowhere in the tile, `TILE_FULL` where it holds everywhere, `TILE_PARTIAL` otherwise.
/// `names` names variables and sizes in C; `describe` labels each condition.
pub fn atom_states(
    conds: &[Compare],
    r: MaskRanks,
    names: &dyn Names,
    describe: &dyn Fn(&Compare) -> String,
) -> Vec<String> {
    let mut lines = Vec::new();
    for (n, cond) in conds.iter().enumerate() {
        let mut e = Emitter {
            r: r.clone(),
            sizes: names,
            lines: Vec::new(),
            next: 0,
            prefix: format!("c{n}_"),
        };
        lines.push(format!("{{  // {}", describe(cond)));
        let diff = IndexExpr::Sub(Box::new(cond.lhs.clone()), Box::new(cond.rhs.clone()));
        let Some((lo, hi)) = e.interval(&diff) else {
            lines.push(format!(
                "  st[{n}] = TILE_PARTIAL;  // no interval for it: test every point"
            ));
            lines.push("}".into());
            continue;
        };
        lines.extend(e.lines.into_iter().map(|l| format!("  {l}")));
        let (never, always) = verdicts(cond.op, &lo, &hi);
        lines.push(format!(
            "  st[{n}] = ({never}) ? TILE_SKIP : (({always}) ? TILE_FULL : TILE_PARTIAL);"
        ));
        lines.push("}".into());
    }
    lines
}

/// `(holds nowhere, holds everywhere)` for `lhs - rhs` in `lo..=hi`.
fn verdicts(op: CompareOp, lo: &str, hi: &str) -> (String, String) {
    match op {
        CompareOp::Lt => (format!("{lo} >= 0"), format!("{hi} < 0")),
        CompareOp::Le => (format!("{lo} > 0"), format!("{hi} <= 0")),
        CompareOp::Gt => (format!("{hi} <= 0"), format!("{lo} > 0")),
        CompareOp::Ge => (format!("{hi} < 0"), format!("{lo} >= 0")),
        CompareOp::Eq => (
            format!("{lo} > 0 || {hi} < 0"),
            format!("{lo} == 0 && {hi} == 0"),
        ),
        CompareOp::Ne => (
            format!("{lo} == 0 && {hi} == 0"),
            format!("{lo} > 0 || {hi} < 0"),
        ),
    }
}

/// Emits one temporary pair per inner node of an index expression: its bounds over the tile.
struct Emitter<'a> {
    r: MaskRanks,
    sizes: &'a dyn Names,
    lines: Vec<String>,
    next: usize,
    prefix: String,
}

impl Emitter<'_> {
    /// `(lo, hi)` as C expressions; `None` for a variable outside the mask's ranks.
    fn interval(&mut self, e: &IndexExpr) -> Option<(String, String)> {
        let r = self.r.clone();
        let inner = r.split.map(|(_, inner)| self.sizes.size(inner));
        Some(match e {
            IndexExpr::Var(v) if *v == r.m => ("k_lo".into(), "k_hi".into()),
            IndexExpr::Var(v) if *v == r.p => ("p_lo".into(), "p_hi".into()),
            IndexExpr::Var(v) if r.split.is_some_and(|(outer, _)| outer == *v) => {
                let z = inner.expect("split");
                (format!("(k_lo / {z})"), format!("(k_hi / {z})"))
            }
            // m0 is exact inside one M0 block; a tile that crosses blocks sees all of 0..M0.
            IndexExpr::Var(v) if r.split.is_some_and(|(_, i)| i == *v) => {
                let z = inner.expect("split");
                (
                    format!("(k_lo / {z} == k_hi / {z} ? k_lo % {z} : 0LL)"),
                    format!("(k_lo / {z} == k_hi / {z} ? k_hi % {z} : {z} - 1)"),
                )
            }
            IndexExpr::Var(v) if r.query_split.is_some_and(|(outer, _)| outer == *v) => {
                let z = self.sizes.size(r.query_split.expect("split").1);
                (format!("(p_lo / {z})"), format!("(p_hi / {z})"))
            }
            IndexExpr::Var(v) if r.query_split.is_some_and(|(_, i)| i == *v) => {
                let z = self.sizes.size(r.query_split.expect("split").1);
                (
                    format!("(p_lo / {z} == p_hi / {z} ? p_lo % {z} : 0LL)"),
                    format!("(p_lo / {z} == p_hi / {z} ? p_hi % {z} : {z} - 1)"),
                )
            }
            IndexExpr::Var(v) if r.exact.contains(v) => {
                let x = self.sizes.var(*v);
                (x.clone(), x)
            }
            IndexExpr::Var(_) => return None,
            IndexExpr::Size(_) | IndexExpr::Lit(_) => {
                let x = cexpr::index(e, self.sizes);
                (x.clone(), x)
            }
            IndexExpr::Add(a, b) => {
                let ((al, ah), (bl, bh)) = (self.interval(a)?, self.interval(b)?);
                self.bind(format!("{al} + {bl}"), format!("{ah} + {bh}"))
            }
            IndexExpr::Sub(a, b) => {
                let ((al, ah), (bl, bh)) = (self.interval(a)?, self.interval(b)?);
                self.bind(format!("{al} - {bh}"), format!("{ah} - {bl}"))
            }
            IndexExpr::Mul(a, b) => {
                let ((al, ah), (bl, bh)) = (self.interval(a)?, self.interval(b)?);
                let id = self.fresh();
                self.lines.push(format!(
                    "const long long {id}_a = {al} * {bl}, {id}_b = {al} * {bh}, {id}_c = {ah} * {bl}, {id}_d = {ah} * {bh};"
                ));
                let min = |x: &str, y: &str| format!("({x} < {y} ? {x} : {y})");
                let max = |x: &str, y: &str| format!("({x} > {y} ? {x} : {y})");
                let (pa, pb, pc, pd) = (
                    format!("{id}_a"),
                    format!("{id}_b"),
                    format!("{id}_c"),
                    format!("{id}_d"),
                );
                self.bind(
                    min(&min(&pa, &pb), &min(&pc, &pd)),
                    max(&max(&pa, &pb), &max(&pc, &pd)),
                )
            }
        })
    }

    fn fresh(&mut self) -> String {
        let id = format!("{}{}", self.prefix, self.next);
        self.next += 1;
        id
    }

    fn bind(&mut self, lo: String, hi: String) -> (String, String) {
        let id = self.fresh();
        self.lines
            .push(format!("const long long {id}_lo = {lo}, {id}_hi = {hi};"));
        (format!("{id}_lo"), format!("{id}_hi"))
    }
}
