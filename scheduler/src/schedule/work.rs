//! Work: each Einsum's points, cycles and actions on the tiles it runs on.
//!
//! An Einsum over the tile's key and query runs on a key tile × query tile pair unless its
//! presence leaves the pair empty ([`cascade_ir::occupancy`] on its union of guards), or the
//! pair is *dead* (every filter of the tile fails on it, or a block mask given as data says it
//! holds `-inf`) and the Einsum may skip dead tiles ([`cascade_ir::presence::dead_tile_skips`]).
//! A partly present tile costs a whole one: masked points occupy their PEs. A unit that gates
//! masked points spends energy only on the present ones.
//!
//! Per row of query tiles the Einsum runs on `min(its present tiles, tiles less the dead ones
//! it skips)`: each count is exact, and the smaller bounds the pairs where both hold from
//! above, so work is never under-counted.

use std::collections::BTreeMap;

use cascade_ir::occupancy::{self, Axes, Grid, Region, TileCounts};
use cascade_ir::presence::{self, TileRanks};
use cascade_ir::{RankId, TensorId};

use super::binding::Bound;
use super::roles::{Analysis, Roles};
use super::{EinsumPlan, Infeasible, Occupancy, RowGroup};
use crate::arch::ArchSpec;
use crate::workload::Problem;

/// How many key tiles of each query tile something runs on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Rows {
    /// The same number in every row.
    Uniform(u64),
    PerRow(Vec<u64>),
}

impl Rows {
    fn at(&self, j: usize) -> u64 {
        match self {
            Rows::Uniform(n) => *n,
            Rows::PerRow(v) => v[j],
        }
    }

    fn total(&self, rows: u64) -> u64 {
        match self {
            Rows::Uniform(n) => n * rows,
            Rows::PerRow(v) => v.iter().sum(),
        }
    }
}

/// The occupancy of every per-tile body Einsum on the problem's grid.
pub(crate) struct TileWork {
    key_tiles: u64,
    query_tiles: u64,
    /// Per body Einsum: the key tiles it runs on per query tile (`None`: not per tile).
    runs: Vec<Option<Rows>>,
    /// Per body Einsum: the fraction of its points present by its own presence.
    present: Vec<f64>,
    /// Key tiles per query tile that are dead (every filter fails, or the block mask is -inf).
    dead: Rows,
    /// Tiles by the union of the tile's filters.
    filter_counts: TileCounts,
    /// The dead region by filters, for counting key tiles of a band of query tiles.
    live_region: Option<Region>,
    grid: Grid,
    masks: Vec<MaskGrid>,
}

/// A block mask aligned with the grid: prefix sums of attending blocks.
struct MaskGrid {
    key_block: u64,
    query_block: u64,
    key_blocks: u64,
    query_blocks: u64,
    /// `(key_blocks + 1) × (query_blocks + 1)` prefix sums of attending blocks.
    sums: Vec<u64>,
}

impl MaskGrid {
    /// Whether any block meeting keys `k_lo..=k_hi` and queries `p_lo..=p_hi` attends.
    fn attends(&self, k_lo: u64, k_hi: u64, p_lo: u64, p_hi: u64) -> bool {
        let (k0, k1) = (
            (k_lo / self.key_block).min(self.key_blocks),
            (k_hi / self.key_block + 1).min(self.key_blocks),
        );
        let (q0, q1) = (
            (p_lo / self.query_block).min(self.query_blocks),
            (p_hi / self.query_block + 1).min(self.query_blocks),
        );
        let w = self.query_blocks + 1;
        let s = |k: u64, q: u64| self.sums[(k * w + q) as usize];
        s(k1, q1) + s(k0, q0) > s(k0, q1) + s(k1, q0)
    }
}

/// The key tile × query tile grid of the roles.
fn grid_of(r: &Roles) -> Grid {
    Grid {
        keys: r.m,
        key_tile: r.m0,
        columns: r.p,
        query_tile: r.p0,
        stride: r.stride,
    }
}

/// The ranks of a tile: the key and its parts; the columns, the primary query rank and its
/// parts.
fn tile_ranks(r: &Roles, primary: RankId) -> (Vec<RankId>, Vec<RankId>) {
    let key_ranks: Vec<RankId> = [r.key, r.key_temporal, r.key_spatial]
        .into_iter()
        .flatten()
        .collect();
    let mut query_ranks: Vec<RankId> = r.columns.clone();
    query_ranks.push(primary);
    for (i, &b) in r.base.iter().enumerate() {
        if b == primary {
            query_ranks.push(RankId(i as u32));
        }
    }
    (key_ranks, query_ranks)
}

/// The grid of the problem's tiles and the region of the tile's filters (`None` when no filter
/// restricts it): the live tiles [`TileWork::new`] counts, without counting them.
pub(crate) fn filter_region(a: &Analysis<'_>) -> (Grid, Option<Region>) {
    let r = a.roles;
    let c = a.cascade;
    let grid = grid_of(r);
    let (Some(key), Some(primary)) = (r.key, r.primary) else {
        return (grid, None);
    };
    let (key_ranks, query_ranks) = tile_ranks(r, primary);
    let tile = TileRanks {
        key: &key_ranks,
        query: &query_ranks,
    };
    let sizes = |x: RankId| i64::try_from(r.size(x)).unwrap_or(i64::MAX);
    let axes = Axes {
        key,
        query: primary,
        size: &sizes,
    };
    let live = presence::live_filters(c, a.plan, tile);
    (
        grid,
        (!live.is_empty()).then(|| occupancy::region(c, &live, &axes)),
    )
}

impl TileWork {
    pub fn new(a: &Analysis<'_>, problem: &Problem) -> Result<TileWork, Infeasible> {
        let r = a.roles;
        let c = a.cascade;
        let grid = grid_of(r);
        let n = r.m_tiles;
        let mut work = TileWork {
            key_tiles: n,
            query_tiles: r.p_tiles,
            runs: vec![None; a.body.len()],
            present: vec![1.0; a.body.len()],
            dead: Rows::Uniform(0),
            filter_counts: TileCounts {
                full: n * r.p_tiles,
                ..TileCounts::default()
            },
            live_region: None,
            grid,
            masks: Vec::new(),
        };
        let (Some(key), Some(primary)) = (r.key, r.primary) else {
            return Ok(work);
        };
        // Without a filter or a block mask every tile is full for every Einsum.
        let filtered = a.body.iter().any(|&id| {
            let e = c.einsum(id);
            !e.output.filters.is_empty()
                || c.accesses(e.value).iter().any(|x| !x.filters.is_empty())
        });
        if !filtered && problem.block_masks.is_empty() {
            return Ok(work);
        }
        let (key_ranks, query_ranks) = tile_ranks(r, primary);
        let tile = TileRanks {
            key: &key_ranks,
            query: &query_ranks,
        };
        let sizes = |x: RankId| i64::try_from(r.size(x)).unwrap_or(i64::MAX);
        let axes = Axes {
            key,
            query: primary,
            size: &sizes,
        };
        work.masks = mask_grids(a, problem, primary)?;
        let mask_tensors: Vec<TensorId> = problem
            .block_masks
            .keys()
            .filter_map(|name| c.tensor_by_name(name))
            .collect();
        // Dead tiles: by the union of the tile's filters, and by the block masks.
        let live = presence::live_filters(c, a.plan, tile);
        let by_filters = (!live.is_empty()).then(|| {
            let region = occupancy::region(c, &live, &axes);
            let rows = occupancy::rows(&region, &grid);
            (region, rows)
        });
        if let Some((region, rows)) = &by_filters {
            work.filter_counts = rows.iter().fold(TileCounts::default(), |mut t, row| {
                t.empty += row.empty;
                t.partial += row.partial;
                t.full += row.full;
                t
            });
            work.live_region = Some(region.clone());
        }
        let dead_by_mask = (!work.masks.is_empty()).then(|| work.mask_dead_rows());
        work.dead = match (&by_filters, dead_by_mask) {
            (None, None) => Rows::Uniform(0),
            (Some((_, rows)), None) => Rows::PerRow(rows.iter().map(|t| t.empty).collect()),
            (None, Some(m)) => Rows::PerRow(m),
            // Dead by both: at least as many as the two counts overlap.
            (Some((_, rows)), Some(m)) => Rows::PerRow(
                rows.iter()
                    .zip(m)
                    .map(|(t, d)| (t.empty + d).saturating_sub(n))
                    .collect(),
            ),
        };
        let skips = presence::dead_tile_skips(c, a.plan, tile, &mask_tensors);
        let dnfs = presence::presence(c, a.plan);
        let mut cache: Vec<(Region, Vec<TileCounts>)> = Vec::new();
        for (x, &id) in a.body.iter().enumerate() {
            if !tile.per_tile(c, id) || !a.per_key_tile(x) {
                continue;
            }
            let region = occupancy::region(c, &dnfs[id.index()], &axes);
            let own = if region.is_everywhere() {
                None
            } else {
                let found = cache.iter().position(|(r, _)| *r == region);
                let k = match found {
                    Some(k) => k,
                    None => {
                        cache.push((region.clone(), occupancy::rows(&region, &grid)));
                        cache.len() - 1
                    }
                };
                Some(k)
            };
            let skip = skips[id.index()];
            let runs = match (&own, skip, &work.dead) {
                (None, false, _) | (None, true, Rows::Uniform(0)) => Rows::Uniform(n),
                _ => Rows::PerRow(
                    (0..r.p_tiles as usize)
                        .map(|j| {
                            let present = own.map_or(n, |k| cache[k].1[j].live());
                            let alive = if skip { n - work.dead.at(j) } else { n };
                            present.min(alive)
                        })
                        .collect(),
                ),
            };
            if own.is_some() {
                let total = r.m.saturating_mul(r.p / r.stride.max(1)).max(1);
                let points = occupancy::present_points(&region, r.m, r.p / r.stride.max(1));
                let run_share = runs.total(r.p_tiles) as f64 / (n * r.p_tiles).max(1) as f64;
                // Present points over the points of the tiles it runs on.
                work.present[x] = if run_share > 0.0 {
                    (points as f64 / total as f64 / run_share).min(1.0)
                } else {
                    0.0
                };
            }
            work.runs[x] = Some(runs);
        }
        Ok(work)
    }

    /// Dead key tiles per query tile by the block masks: tiles no attending block of any mask
    /// meets.
    fn mask_dead_rows(&self) -> Vec<u64> {
        let g = &self.grid;
        (0..self.query_tiles)
            .map(|j| {
                let (p_lo, p_hi) = g.queries_of(j, j);
                (0..self.key_tiles)
                    .filter(|&i| {
                        let k_lo = i * g.key_tile;
                        let k_hi = ((i + 1) * g.key_tile).min(g.keys) - 1;
                        !self
                            .masks
                            .iter()
                            .all(|m| m.attends(k_lo, k_hi, p_lo as u64, p_hi as u64))
                    })
                    .count() as u64
            })
            .collect()
    }

    /// The fraction of the tiles Einsum `x` runs on (1 when it is not per tile).
    pub fn run_share(&self, x: usize) -> (u64, u64) {
        let total = self.key_tiles * self.query_tiles;
        match &self.runs[x] {
            Some(rows) => (rows.total(self.query_tiles), total),
            None => (total, total),
        }
    }

    /// The largest share of a row's key tiles Einsum `x` runs on: how much of a query's key
    /// rank its output holds at most (a causal row can hold all of it, a window's row W keys).
    pub fn peak_row_share(&self, x: usize) -> f64 {
        let n = self.key_tiles.max(1) as f64;
        match &self.runs[x] {
            Some(Rows::Uniform(k)) => *k as f64 / n,
            Some(Rows::PerRow(v)) => v.iter().copied().max().unwrap_or(0) as f64 / n,
            None => 1.0,
        }
    }

    /// Whether Einsum `x` runs on fewer than all tiles: its presence or the dead tiles leave
    /// some out, so the key tiles it reads are those of live tiles.
    pub fn restricted(&self, x: usize) -> bool {
        matches!(self.runs[x], Some(Rows::PerRow(_)))
    }

    /// The fraction of Einsum `x`'s points that are present on the tiles it runs on.
    pub fn present_share(&self, x: usize) -> f64 {
        self.present[x]
    }

    /// Key tiles that are not dead for the query tiles `first..=last` together: the key tiles
    /// a stream of key-side inputs must bring in for them when every reader skips dead tiles.
    pub fn live_key_tiles(&self, first: u64, last: u64) -> u64 {
        let n = self.key_tiles;
        if matches!(self.dead, Rows::Uniform(0)) {
            return n;
        }
        let (p_lo, p_hi) = self.grid.queries_of(first, last);
        let by_filters = self
            .live_region
            .as_ref()
            .map(|region| occupancy::classify(region, &self.grid, p_lo, p_hi).empty);
        let by_masks = (!self.masks.is_empty()).then(|| {
            let g = &self.grid;
            (0..n)
                .filter(|&i| {
                    let k_lo = i * g.key_tile;
                    let k_hi = ((i + 1) * g.key_tile).min(g.keys) - 1;
                    !self
                        .masks
                        .iter()
                        .all(|m| m.attends(k_lo, k_hi, p_lo as u64, p_hi as u64))
                })
                .count() as u64
        });
        let dead = match (by_filters, by_masks) {
            (Some(f), Some(m)) => (f + m).saturating_sub(n),
            (Some(d), None) | (None, Some(d)) => d,
            (None, None) => 0,
        };
        n - dead
    }

    /// The phase's rows: per query tile, the key tiles each member runs on, run-length coded.
    /// Members with per-key-tile work that is not per tile (per-key work spread over the
    /// tiles) run on every slot, and get their cycles per slot here.
    pub fn phase_rows(&self, members: &[usize], plans: &mut [EinsumPlan]) -> Occupancy {
        let mut groups: Vec<RowGroup> = Vec::new();
        let per_row = |j: usize| -> (u64, Vec<u64>) {
            let mut runs: Vec<u64> = members
                .iter()
                .map(|&x| match &self.runs[x] {
                    Some(rows) if plans[x].per_key_tile => rows.at(j),
                    _ => 0,
                })
                .collect();
            let slots = runs.iter().copied().max().unwrap_or(0);
            // Per-key work not tied to a query tile fills every slot the row has; a row with
            // no work at all keeps one empty slot, so its once-per-query work has a place.
            let has_tiles = members
                .iter()
                .any(|&x| self.runs[x].is_some() && plans[x].per_key_tile);
            let slots = if has_tiles { slots } else { self.key_tiles };
            let slots = slots.max(1);
            for (k, &x) in members.iter().enumerate() {
                if plans[x].per_key_tile && self.runs[x].is_none() {
                    runs[k] = slots;
                }
            }
            (slots, runs)
        };
        let uniform = members
            .iter()
            .all(|&x| matches!(self.runs[x], None | Some(Rows::Uniform(_))));
        let rows = if uniform {
            1
        } else {
            self.query_tiles as usize
        };
        for j in 0..rows {
            let (slots, runs) = per_row(j);
            match groups.last_mut() {
                Some(g) if g.slots == slots && g.runs == runs => g.count += 1,
                _ => groups.push(RowGroup {
                    count: 1,
                    slots,
                    runs,
                }),
            }
        }
        if uniform && let Some(g) = groups.first_mut() {
            g.count = self.query_tiles;
        }
        let occupancy = Occupancy {
            rows: groups,
            empty: self.filter_counts.empty,
            partial: self.filter_counts.partial,
            full: self.filter_counts.full,
        };
        let slots = occupancy.slots().max(1);
        for &x in members {
            let p = &mut plans[x];
            if p.per_key_tile && self.runs[x].is_none() {
                p.tiles = slots;
                p.tile_cycles = p.cycles as f64 / slots as f64;
            }
        }
        occupancy
    }
}

/// The block masks of the problem, aligned with the grid: each mask input is indexed by the
/// outer parts of a split key rank and of a split query rank, whose inner parts give the
/// block sizes.
fn mask_grids(
    a: &Analysis<'_>,
    problem: &Problem,
    primary: RankId,
) -> Result<Vec<MaskGrid>, Infeasible> {
    let c = a.cascade;
    let r = a.roles;
    let mut out = Vec::new();
    for (name, mask) in &problem.block_masks {
        let Some(t) = c.tensor_by_name(name) else {
            return Err(Infeasible::new(format!(
                "a block mask is given for `{name}`, which cascade `{}` does not have",
                c.name
            )));
        };
        let ranks = &c.tensor(t).ranks;
        let block = |dim: RankId, whole: Option<RankId>| -> Option<(u64, u64)> {
            let w = whole?;
            match c.rank(w).split {
                Some((outer, inner)) if outer == dim => Some((r.size(inner), r.size(outer))),
                _ if dim == w => Some((1, r.size(w))),
                _ => None,
            }
        };
        let dims = match ranks.as_slice() {
            [k, q] => block(*k, r.key).zip(block(*q, Some(primary))),
            _ => None,
        };
        let Some(((key_block, key_blocks), (query_block, query_blocks))) = dims else {
            return Err(Infeasible::new(format!(
                "the block mask `{name}` must index the blocks of the key and the query ranks (`{name}[MB,PB]` with `split M -> MB M0` and `split P -> PB P0`)"
            )));
        };
        if (mask.key_blocks(), mask.query_blocks()) != (key_blocks, query_blocks) {
            return Err(Infeasible::new(format!(
                "the block mask `{name}` has {} × {} blocks, but the problem has {key_blocks} key blocks × {query_blocks} query blocks",
                mask.key_blocks(),
                mask.query_blocks()
            )));
        }
        let w = query_blocks + 1;
        let mut sums = vec![0u64; ((key_blocks + 1) * w) as usize];
        for kb in 0..key_blocks {
            for qb in 0..query_blocks {
                let at = |k: u64, q: u64| (k * w + q) as usize;
                sums[at(kb + 1, qb + 1)] = sums[at(kb, qb + 1)] + sums[at(kb + 1, qb)]
                    - sums[at(kb, qb)]
                    + u64::from(mask.attends(kb, qb));
            }
        }
        out.push(MaskGrid {
            key_block,
            query_block,
            key_blocks,
            query_blocks,
            sums,
        });
    }
    Ok(out)
}

/// Every body Einsum's plan: points, cycles and actions on the tiles it runs on. `Err` when a
/// count does not fit 64 bits.
pub(crate) fn plan_einsums(
    a: &Analysis<'_>,
    arch: &ArchSpec,
    bound: &[Bound],
    tiles: &TileWork,
) -> Result<Vec<EinsumPlan>, ()> {
    let r = a.roles;
    let c = a.cascade;
    let mut plans = Vec::with_capacity(a.body.len());
    for (x, &id) in a.body.iter().enumerate() {
        let e = c.einsum(id);
        let b = &bound[x];
        let unit = arch.unit(b.unit);
        let cpp = unit
            .cycles_per_point(&b.ops)
            .expect("binding checked the ops");
        let space = &a.spaces[x];
        // A key rank that carries state from one element to the next runs in time, not space.
        let has_r = a.has_key_spatial(x) && r.key_parallel;
        let r_size = u128::from(r.key_spatial.map_or(1, |k| r.size(k)));
        let cols_extent = u128::from(r.column_extent(space));
        let has_c = r.has_columns(space);
        let others: u128 = space
            .iter()
            .filter(|&&k| (Some(k) != r.key_spatial || !has_r) && !r.is_column(k))
            .map(|&k| u128::from(r.size(k)))
            .product();
        let points = others * if has_r { r_size } else { 1 } * cols_extent;
        let (rows, cols) = (u128::from(unit.rows()), u128::from(unit.cols()));
        let steps = if unit.is_2d() {
            let row_steps = if has_r { r_size.div_ceil(rows) } else { 1 };
            let col_steps = if has_c { cols_extent.div_ceil(cols) } else { 1 };
            row_steps * col_steps * others
        } else {
            match (has_r, has_c) {
                (h, true) => (if h { r_size } else { 1 }) * cols_extent.div_ceil(cols) * others,
                (true, false) => r_size.div_ceil(cols) * others,
                (false, false) => others,
            }
        };
        let per_key_tile = a.per_key_tile(x);
        // On the tiles it runs on.
        let (run, total) = tiles.run_share(x);
        let (run, total) = (u128::from(run), u128::from(total.max(1)));
        let scale = |v: u128| if per_key_tile { v * run / total } else { v };
        let points = scale(points);
        let cycles = scale(steps * u128::from(cpp));
        let present = if unit.gates_masked() {
            (points as f64 * tiles.present_share(x)).round() as u128
        } else {
            points
        };
        let present_points = (points as f64 * tiles.present_share(x)).round() as u128;
        let mut actions = BTreeMap::new();
        for (op, &count) in &b.ops {
            let imp = unit.resolve(*op).expect("binding checked the ops");
            for (action, &k) in imp.actions() {
                let add = present * u128::from(count) * u128::from(k);
                *actions.entry(action.clone()).or_insert(0u128) += add;
            }
        }
        let out_points: u128 = {
            let mut vars = Vec::new();
            for ix in &e.output.indices {
                ix.collect_vars(&mut vars);
            }
            vars.sort_unstable();
            vars.dedup();
            vars.into_iter().map(|k| u128::from(r.size(k))).product()
        };
        let query_tiles = u128::from(r.p_tiles);
        let (tile_count, tile_cycles) = if per_key_tile {
            (run, cycles as f64 / run.max(1) as f64)
        } else {
            (query_tiles, cycles as f64 / query_tiles.max(1) as f64)
        };
        let fit = |v: u128| u64::try_from(v).ok().filter(|&v| v < 1 << 63).ok_or(());
        let mut fitted = BTreeMap::new();
        for (k, v) in actions {
            fitted.insert(k, fit(v)?);
        }
        plans.push(EinsumPlan {
            id,
            name: c.tensor(e.output.tensor).name.clone(),
            unit: b.unit,
            level: b.level,
            pass: a.pass[x],
            stage: 0,
            per_key_tile,
            phase: 0,
            ops: b.ops.clone(),
            points: fit(points)?,
            present_points: fit(present_points)?,
            cycles_per_point: cpp,
            cycles: fit(cycles)?,
            tiles: fit(tile_count)?,
            tile_cycles,
            actions: fitted,
            register_reads: 0,
            register_writes: fit(scale(out_points))?,
            deps: a.deps[x].clone(),
            drains: b.unit == arch.tile_unit()
                && r.split
                && r.key_spatial.is_some_and(|k| a.reduced[x].contains(&k)),
        });
    }
    Ok(plans)
}
