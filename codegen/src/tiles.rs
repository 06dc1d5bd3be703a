//! The fused kernel's mask: which scores of a key tile × query tile can be present.
//!
//! Filters may use any comparison (`< <= > >= == !=`) over the key `m = m1*M0+m0` (or `m1`
//! and `m0` on their own), the query `p`, sizes and params, in any conjunction. Each
//! condition's `lhs - rhs` is bounded by interval arithmetic over the tile (keys
//! `k_lo..=k_hi`, queries `p_lo..=p_hi`); from that interval the condition holds nowhere in the
//! tile (it is skipped), everywhere (no per-point test) or maybe (the tile is partial and every
//! point is tested). Interval arithmetic over-approximates, so "nowhere" and "everywhere" are
//! always right whatever the operator; imprecision only costs per-point tests. (Testing the
//! four corners of the tile, which this replaces, is only sound for `< <= > >=` over affine
//! expressions: `m != p` holds at every corner of a diagonal tile.)

use cascade_ir::{Compare, CompareOp, IndexExpr, RankId};

use crate::cexpr::{self, Names};

/// The ranks the mask ranges over: the key `m` and its split `m1`, `m0`, and the query `p`.
#[derive(Debug, Clone, Copy)]
pub struct MaskRanks {
    pub m: RankId,
    pub m1: RankId,
    pub m0: RankId,
    pub p: RankId,
}

/// `cond` with every `m1*M0+m0` written as the key `m` itself, so the key's interval is exact.
pub fn with_keys(cond: &Compare, r: MaskRanks) -> Compare {
    Compare {
        lhs: key_form(&cond.lhs, r),
        op: cond.op,
        rhs: key_form(&cond.rhs, r),
    }
}

fn key_form(e: &IndexExpr, r: MaskRanks) -> IndexExpr {
    if *e == IndexExpr::tiled(r.m1, r.m0) {
        return IndexExpr::Var(r.m);
    }
    let sub = |x: &IndexExpr| Box::new(key_form(x, r));
    match e {
        IndexExpr::Add(a, b) => IndexExpr::Add(sub(a), sub(b)),
        IndexExpr::Sub(a, b) => IndexExpr::Sub(sub(a), sub(b)),
        IndexExpr::Mul(a, b) => IndexExpr::Mul(sub(a), sub(b)),
        other => other.clone(),
    }
}

/// The body of the tile classifier: statements ending in `return TILE_*`. `sizes` names sizes
/// and params in C, `m0_size` is the C name of `|M0|` and `describe` labels each condition.
pub fn tile_state(
    conds: &[Compare],
    r: MaskRanks,
    sizes: &dyn Names,
    m0_size: &str,
    describe: &dyn Fn(&Compare) -> String,
) -> Vec<String> {
    let mut lines = vec![
        "const long long k_lo = tile * BLOCK_N, k_hi = k_lo + BLOCK_N - 1;".to_string(),
        "bool full = true;".to_string(),
    ];
    for (n, cond) in conds.iter().enumerate() {
        let mut e = Emitter {
            r,
            sizes,
            m0_size,
            lines: Vec::new(),
            next: 0,
            prefix: format!("c{n}_"),
        };
        lines.push(format!("{{  // {}", describe(cond)));
        let diff = IndexExpr::Sub(Box::new(cond.lhs.clone()), Box::new(cond.rhs.clone()));
        let Some((lo, hi)) = e.interval(&diff) else {
            lines.push("  full = false;  // no interval for it: test every point".into());
            lines.push("}".into());
            continue;
        };
        lines.extend(e.lines.into_iter().map(|l| format!("  {l}")));
        let (never, always) = verdicts(cond.op, &lo, &hi);
        lines.push(format!("  if ({never}) return TILE_SKIP;"));
        lines.push(format!("  full = full && ({always});"));
        lines.push("}".into());
    }
    lines.push("return full ? TILE_FULL : TILE_PARTIAL;".into());
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
    m0_size: &'a str,
    lines: Vec<String>,
    next: usize,
    prefix: String,
}

impl Emitter<'_> {
    /// `(lo, hi)` as C expressions; `None` for a variable outside the mask's ranks.
    fn interval(&mut self, e: &IndexExpr) -> Option<(String, String)> {
        let r = self.r;
        let z = self.m0_size;
        Some(match e {
            IndexExpr::Var(v) if *v == r.m => ("k_lo".into(), "k_hi".into()),
            IndexExpr::Var(v) if *v == r.p => ("p_lo".into(), "p_hi".into()),
            IndexExpr::Var(v) if *v == r.m1 => (format!("(k_lo / {z})"), format!("(k_hi / {z})")),
            // m0 is exact inside one M0 block; a tile that crosses blocks sees all of 0..M0.
            IndexExpr::Var(v) if *v == r.m0 => (
                format!("(k_lo / {z} == k_hi / {z} ? k_lo % {z} : 0LL)"),
                format!("(k_lo / {z} == k_hi / {z} ? k_hi % {z} : {z} - 1)"),
            ),
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
