//! Rank roles: which rank is the key (M, cut into key tiles of the array's rows), which ranks
//! are on the array's columns (the query P, and with it any head rank whose heads share the
//! same keys), every rank's size and the number of independent instances; and the facts about
//! the cascade every later stage reads ([`Analysis`]), all from `ir`'s loop plan and passes.
//!
//! * Query: the largest rank of the outputs (P). Key: the largest other non-parameter rank an
//!   Einsum iterates (M), possibly split by the cascade (`M -> M1 M0`: M1 in time, M0 on rows).
//! * Columns: the free ranks of the first Einsum that reads a key-side tensor (one with a key
//!   rank but no part of P) at the query, less the key and every rank of that tensor. For
//!   `BQK[m1,m0,p,g,r] = Q[e,p,g*R+r] * BK[e,m1,m0,g]` they are `p` and `r`: the heads of a group
//!   read the same keys, so they share the array's columns with the queries, and the group `g`
//!   stays a loop around everything.
//! * Sizes: the problem's, with a split resolved from any two of its three ranks, and a split
//!   key's inner part defaulting to the array's rows.
//!
//! A key tile that does not fit the array's rows, or a column tile wider than its columns, is
//! infeasible; a problem whose counts do not fit is a [`ScheduleError::TooLarge`].

use std::collections::{BTreeMap, BTreeSet};

use cascade_ir::passes::PassReport;
use cascade_ir::{
    Cascade, EinsumId, Expr, IndexExpr, LoopPlan, RankId, Section, TensorId, TensorKind,
};

use super::{Infeasible, ScheduleError};
use crate::arch::ArchSpec;
use crate::mapping::MappingOverrides;
use crate::workload::Problem;

/// Rank roles derived from the cascade's structure and the problem sizes.
#[derive(Debug, Clone)]
pub(crate) struct Roles {
    pub sizes: Vec<u64>,
    /// The rank each rank is a split part of (itself when it is none).
    pub base: Vec<RankId>,
    /// The key rank as declared (M), its temporal part (M1 or M) and spatial part (M0 or M).
    pub key: Option<RankId>,
    pub key_temporal: Option<RankId>,
    pub key_spatial: Option<RankId>,
    pub split: bool,
    /// Whether the spatial key rank can be spread over PEs: not when state is carried along it.
    pub key_parallel: bool,
    /// The primary query rank (P): the largest rank of the outputs.
    pub primary: Option<RankId>,
    /// Ranks on the array's columns (P or its parts, and heads that share the keys).
    pub columns: Vec<RankId>,
    /// Columns per query of P: the product of the other column ranks.
    pub stride: u64,
    pub m: u64,
    pub m0: u64,
    pub m_tiles: u64,
    /// Columns: the product of the column ranks.
    pub p: u64,
    pub p0: u64,
    pub p_tiles: u64,
    pub instances: u64,
    given: String,
}

impl Roles {
    /// Ranks whose full reduction is a pass barrier: the key rank and its temporal part, not
    /// the spatial part of a split (one tile of it is held in the array).
    pub fn barrier(&self, r: RankId) -> bool {
        Some(r) == self.key || Some(r) == self.key_temporal
    }

    pub fn size(&self, r: RankId) -> u64 {
        self.sizes[r.index()]
    }

    /// Whether `r` is a key rank or one of its parts.
    pub fn is_key(&self, r: RankId) -> bool {
        Some(r) == self.key || Some(r) == self.key_temporal || Some(r) == self.key_spatial
    }

    /// Whether `r` is on the columns: a column rank, or a rank whose every part is one.
    pub fn is_column(&self, r: RankId) -> bool {
        self.columns.contains(&r) || self.covers_columns(r)
    }

    fn covers_columns(&self, r: RankId) -> bool {
        let parts: Vec<RankId> = (0..self.base.len())
            .map(|i| RankId(i as u32))
            .filter(|&x| x != r && self.base[x.index()] == r)
            .collect();
        !parts.is_empty() && parts.iter().all(|x| self.columns.contains(x))
    }

    /// The columns an iteration space occupies: the product of its column ranks' sizes.
    pub fn column_extent(&self, space: &[RankId]) -> u64 {
        space
            .iter()
            .filter(|&&r| self.is_column(r))
            .map(|&r| self.size(r))
            .product()
    }

    pub fn has_columns(&self, space: &[RankId]) -> bool {
        space.iter().any(|&r| self.is_column(r))
    }

    pub fn too_large(&self) -> ScheduleError {
        ScheduleError::TooLarge {
            given: self.given.clone(),
        }
    }
}

/// Each rank's whole: itself, or for the parts of a split the rank they split.
fn base_ranks(cascade: &Cascade) -> Vec<RankId> {
    let mut b: Vec<RankId> = (0..cascade.ranks.len()).map(|i| RankId(i as u32)).collect();
    for (i, r) in cascade.ranks.iter().enumerate() {
        if let Some((outer, inner)) = r.split {
            b[outer.index()] = RankId(i as u32);
            b[inner.index()] = RankId(i as u32);
        }
    }
    b
}

/// The size of every whole rank from the problem (a parameter no filter uses may be left out,
/// as 1); the parts of splits are sized later.
fn whole_sizes(
    cascade: &Cascade,
    problem: &Problem,
    base: &[RankId],
    given: &str,
) -> Result<Vec<u64>, ScheduleError> {
    let is_part = |r: RankId| base[r.index()] != r;
    let mut sizes = vec![0u64; cascade.ranks.len()];
    for (i, rank) in cascade.ranks.iter().enumerate() {
        let id = RankId(i as u32);
        if is_part(id) {
            continue;
        }
        let needed = !rank.is_param || param_used(cascade, id);
        match problem.sizes.get(&rank.name) {
            Some(&s) => sizes[i] = s.max(1),
            None if needed => {
                return Err(ScheduleError::MissingSize {
                    rank: rank.name.clone(),
                    given: given.to_string(),
                });
            }
            None => sizes[i] = 1,
        }
    }
    Ok(sizes)
}

/// The key rank (the largest iterated rank that is no output's and no parameter) and the
/// primary query rank.
fn key_and_query(
    cascade: &Cascade,
    base: &[RankId],
    sizes: &[u64],
) -> (Option<RankId>, Option<RankId>) {
    let out_ranks: BTreeSet<RankId> = cascade
        .outputs
        .iter()
        .flat_map(|&t| cascade.tensor(t).ranks.iter().map(|&r| base[r.index()]))
        .collect();
    let iterated: BTreeSet<RankId> = cascade
        .einsum_ids()
        .filter(|&id| cascade.einsum(id).section == Section::Body)
        .flat_map(|id| cascade.iteration_space(id))
        .map(|r| base[r.index()])
        .collect();
    let key = iterated
        .iter()
        .copied()
        .filter(|r| !out_ranks.contains(r) && !cascade.rank(*r).is_param)
        .max_by_key(|&r| (sizes[r.index()], std::cmp::Reverse(r)));
    // The query: an output rank that is not a head dimension of the values. A value tensor
    // is an input with the key rank that an Einsum reads while reducing the key (V[F,M] in
    // `A[m,p] * V[f,m]`), so F is a head dimension even when it is larger than P (decode);
    // a mask or bias over keys and queries is read without that reduction. Among the rest a
    // rank a filter compares with the key (the causal `m <= p`) comes first, then the largest.
    let aliases = layout_aliases(cascade);
    let src = |t: TensorId| aliases.get(&t).copied().unwrap_or(t);
    let mut value_ranks: BTreeSet<RankId> = BTreeSet::new();
    let mut filtered_with_key: BTreeSet<RankId> = BTreeSet::new();
    for id in cascade.einsum_ids() {
        let e = cascade.einsum(id);
        let reduces_key = cascade
            .reduced_ranks(id)
            .iter()
            .any(|&r| Some(base[r.index()]) == key);
        for a in cascade.accesses(e.value) {
            let t = cascade.tensor(src(a.tensor));
            let has_key = t.ranks.iter().any(|&r| Some(base[r.index()]) == key);
            if reduces_key && has_key && t.kind == TensorKind::Input {
                value_ranks.extend(t.ranks.iter().map(|&r| base[r.index()]));
            }
            for f in &a.filters {
                for c in &f.conds {
                    let mut vars = Vec::new();
                    c.lhs.collect_vars(&mut vars);
                    c.rhs.collect_vars(&mut vars);
                    let bases: BTreeSet<RankId> = vars.iter().map(|&r| base[r.index()]).collect();
                    if key.is_some_and(|k| bases.contains(&k)) {
                        filtered_with_key.extend(bases);
                    }
                }
            }
        }
    }
    let primary = out_ranks.iter().copied().max_by_key(|&r| {
        (
            !value_ranks.contains(&r),
            filtered_with_key.contains(&r),
            sizes[r.index()],
            std::cmp::Reverse(r),
        )
    });
    (key, primary)
}

/// Sizes the parts of every split.
fn size_splits(
    cascade: &Cascade,
    problem: &Problem,
    overrides: &MappingOverrides,
    key: Option<RankId>,
    rows: u64,
    sizes: &mut [u64],
) {
    // Splits: the inner part from the problem (for the key, the mapping's key tile first),
    // else from the outer part, else the array's rows; the outer part covers the whole.
    for (i, rank) in cascade.ranks.iter().enumerate() {
        let Some((outer, inner)) = rank.split else {
            continue;
        };
        let whole = sizes[i].max(1);
        let named = |r: RankId| problem.sizes.get(&cascade.rank(r).name).copied();
        let chosen = if key == Some(RankId(i as u32)) {
            overrides.key_tile
        } else {
            None
        };
        let inner_size = match (chosen.or(named(inner)), named(outer)) {
            (Some(s), _) => s,
            (None, Some(o)) => whole.div_ceil(o.max(1)),
            (None, None) => rows,
        }
        .clamp(1, whole);
        sizes[inner.index()] = inner_size;
        sizes[outer.index()] = whole.div_ceil(inner_size);
    }
}

/// Why a cascade with a second variable over a split's inner rank (`split M -> M1 M0 N0`)
/// cannot be scheduled: the key tile is one variable on the array's rows, and a second one
/// (a chunk's keys beside its queries) would need a mapping of its own that is not modelled.
fn second_variable_refusal(cascade: &Cascade) -> Option<Infeasible> {
    let (second, user) = cascade.second_variable_use()?;
    let inner = cascade.rank(second).range_of?;
    let at = user.map_or(String::new(), |id| {
        format!("`{}` iterates ", cascade_ir::dsl::print_einsum(cascade, id))
    });
    Some(Infeasible::new(format!(
        "{at}{}, the second variable over {} of a split, which the scheduler does not map (it maps one key tile onto the array's rows): schedule the running-state form of the cascade instead",
        cascade.var_name(second),
        cascade.rank(inner).name
    )))
}

/// Resolves the roles, or says why the problem cannot map onto the array.
pub(crate) fn resolve(
    cascade: &Cascade,
    arch: &ArchSpec,
    problem: &Problem,
    overrides: &MappingOverrides,
) -> Result<Result<Roles, Infeasible>, ScheduleError> {
    resolve_counted(cascade, arch, problem, overrides, true)
}

/// The roles without the limit on the product of the sizes (`counted` false): enough to lay
/// out the tile grid of a problem too large to count point by point, which a partition over
/// chips cuts into countable shares.
pub(crate) fn resolve_counted(
    cascade: &Cascade,
    arch: &ArchSpec,
    problem: &Problem,
    overrides: &MappingOverrides,
    counted: bool,
) -> Result<Result<Roles, Infeasible>, ScheduleError> {
    if let Some(refusal) = second_variable_refusal(cascade) {
        return Ok(Err(refusal));
    }
    let tile_unit = arch.unit(arch.tile_unit());
    let (rows, cols) = (tile_unit.rows(), tile_unit.cols());
    let given = problem
        .sizes
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let too_large = || ScheduleError::TooLarge {
        given: given.clone(),
    };
    let base = base_ranks(cascade);
    let is_part = |r: RankId| base[r.index()] != r;
    let mut sizes = whole_sizes(cascade, problem, &base, &given)?;
    let (key, primary) = key_and_query(cascade, &base, &sizes);
    size_splits(cascade, problem, overrides, key, rows, &mut sizes);
    // A split of the key rank is the array tile; any other split's parts are plain ranks.
    let (split, key_temporal, key_spatial) = match key {
        Some(k) => match cascade.rank(k).split {
            Some((outer, inner)) => (true, Some(outer), Some(inner)),
            None => (false, Some(k), Some(k)),
        },
        None => (false, None, None),
    };
    let m = key.map_or(1, |k| sizes[k.index()]);
    let (m0, m_tiles) = if split {
        (
            sizes[key_spatial.expect("split key").index()],
            sizes[key_temporal.expect("split key").index()],
        )
    } else {
        let m0 = overrides.key_tile.unwrap_or(rows).min(m).max(1);
        (m0, m.div_ceil(m0))
    };
    let key_parallel = key_spatial.is_none_or(|r| !cascade.iterative_ranks().contains(&r));
    if tile_unit.is_2d() && key_parallel && m0 > rows {
        return Ok(Err(Infeasible::new(format!(
            "a key tile of {m0} keys does not fit the {rows} rows of {}; use a key tile of at most {rows} (the split's inner rank or the mapping's M0)",
            tile_unit.name()
        ))));
    }
    let columns = column_ranks(cascade, &base, key, primary, &overrides.columns)?;
    let columns = match columns {
        Ok(c) => c,
        Err(why) => return Ok(Err(why)),
    };
    // Ranks every body Einsum iterates without reducing them, other than the key and the
    // columns (a GQA group, the heads of per-head attention), are independent instances: a
    // loop around everything, with one of each per instance.
    let instance_ranks = instance_ranks(cascade, &base, key, &columns);
    let mut instances = problem.instances_for(cascade).ok_or_else(too_large)?;
    for &r in &instance_ranks {
        instances = instances
            .checked_mul(sizes[r.index()])
            .filter(|&n| n <= 1 << 48)
            .ok_or_else(too_large)?;
        sizes[r.index()] = 1;
        let whole = base[r.index()];
        if let Some((outer, inner)) = cascade.rank(whole).split
            && whole != r
        {
            sizes[whole.index()] = sizes[outer.index()] * sizes[inner.index()];
        }
    }
    let p: u64 = columns
        .iter()
        .try_fold(1u64, |acc, &r| acc.checked_mul(sizes[r.index()]))
        .ok_or_else(too_large)?;
    let stride = columns
        .iter()
        .filter(|&&r| Some(base[r.index()]) != primary)
        .map(|&r| sizes[r.index()])
        .product::<u64>()
        .max(1);
    let p0 = match overrides.query_tile {
        Some(t) if t > cols => {
            return Ok(Err(Infeasible::new(format!(
                "a query tile of {t} columns does not fit the {cols} columns of {}",
                tile_unit.name()
            ))));
        }
        Some(t) => t.clamp(1, p.max(1)),
        None => cols.min(p).max(1),
    };
    // Per instance every count below is a product of rank sizes (checked again where it is
    // formed); instances multiply them as floats in the model. Refuse problems that cannot be
    // counted rather than overflow.
    if instances > 1 << 48 {
        return Err(too_large());
    }
    // A parameter (a window `W`) is a value in conditions, not a loop: it multiplies no count.
    let total = (0..cascade.ranks.len())
        .filter(|&i| !is_part(RankId(i as u32)) && !cascade.ranks[i].is_param)
        .try_fold(1u64, |acc, i| acc.checked_mul(sizes[i]))
        .filter(|&t| t <= 1 << 56);
    if counted && total.is_none() {
        return Err(too_large());
    }
    Ok(Ok(Roles {
        sizes,
        base,
        key,
        key_temporal,
        key_spatial,
        split,
        key_parallel,
        primary,
        columns,
        stride,
        m,
        m0,
        m_tiles,
        p,
        p0,
        p_tiles: p.div_ceil(p0),
        instances,
        given,
    }))
}

/// The ranks on the columns: the mapping's, checked, or those of the first Einsum that reads a
/// key-side tensor at the query (see the module doc); P alone when there is none.
fn column_ranks(
    cascade: &Cascade,
    base: &[RankId],
    key: Option<RankId>,
    primary: Option<RankId>,
    chosen: &Option<Vec<String>>,
) -> Result<Result<Vec<RankId>, Infeasible>, ScheduleError> {
    let Some(p) = primary else {
        return Ok(Ok(Vec::new()));
    };
    let b = |r: RankId| base[r.index()];
    let aliases = layout_aliases(cascade);
    let src = |t: TensorId| aliases.get(&t).copied().unwrap_or(t);
    let mut proposal = vec![p];
    if let Some(k) = key {
        for id in cascade.einsum_ids() {
            let e = cascade.einsum(id);
            if e.section != Section::Body {
                continue;
            }
            let space = cascade.iteration_space(id);
            if !space.iter().any(|&r| b(r) == k) || !space.iter().any(|&r| b(r) == p) {
                continue;
            }
            let key_side: Vec<TensorId> = cascade
                .accesses(e.value)
                .iter()
                .map(|a| src(a.tensor))
                .filter(|&t| {
                    let ranks = &cascade.tensor(t).ranks;
                    ranks.iter().any(|&r| b(r) == k) && !ranks.iter().any(|&r| b(r) == p)
                })
                .collect();
            if key_side.is_empty() {
                continue;
            }
            let in_key_side = |r: RankId| {
                key_side.iter().any(|&t| {
                    cascade
                        .tensor(t)
                        .ranks
                        .iter()
                        .any(|&x| x == r || x == b(r) || b(x) == r)
                })
            };
            let mut free = Vec::new();
            for ix in &e.output.indices {
                ix.collect_vars(&mut free);
            }
            proposal = free
                .into_iter()
                .filter(|&r| b(r) != k && !cascade.rank(r).is_param && !in_key_side(r))
                .collect();
            // The primary query first (its parts in order), then the heads that share keys.
            proposal.sort_by_key(|&r| (b(r) != p, r));
            if !proposal.iter().any(|&r| b(r) == p) {
                proposal = vec![p];
            }
            break;
        }
    }
    let Some(names) = chosen else {
        return Ok(Ok(proposal));
    };
    let mut picked = Vec::new();
    for name in names {
        let Some(r) = cascade.rank_by_name(&name.to_uppercase()) else {
            return Ok(Err(Infeasible::new(format!(
                "the mapping puts `{name}` on the columns, but the cascade has no such rank"
            ))));
        };
        let ok = proposal.contains(&r) || proposal.iter().any(|&x| b(x) == r);
        if let Some(k) = key.filter(|&k| !ok && b(r) == k) {
            // Split-K at batch 1 is the case users try: a column per key split. An edge-fed
            // array takes one key value per row per cycle along its rows, shared by every
            // column; keys on the columns would need a value per PE per cycle, and a key value
            // is used once per query, so no mapping of a matrix-vector product fills more than
            // one column's worth of PEs per edge.
            return Ok(Err(Infeasible::new(format!(
                "the mapping puts `{name}`, a part of the key rank {}, on the columns: the array's columns share the key tile that streams along its rows, so each column would need its own key value every cycle (rows × columns values a cycle against the rows' one each); keep the key's parts on the rows and in time (split-K's saving is the combine, off the key loop)",
                cascade.rank(k).name
            ))));
        }
        if !ok {
            let allowed: Vec<String> = proposal
                .iter()
                .map(|&x| cascade.rank(x).name.to_lowercase())
                .collect();
            return Ok(Err(Infeasible::new(format!(
                "the mapping puts `{name}` on the columns, but only ranks whose queries share the same keys can share them: {}",
                allowed.join(", ")
            ))));
        }
        if picked.contains(&r) {
            return Ok(Err(Infeasible::new(format!(
                "the mapping puts `{name}` on the columns twice; list each rank once"
            ))));
        }
        picked.push(r);
    }
    if !picked.iter().any(|&r| b(r) == p) {
        return Ok(Err(Infeasible::new(format!(
            "the mapping's columns must include the query rank {}",
            cascade.rank(p).name.to_lowercase()
        ))));
    }
    Ok(Ok(picked))
}

/// The ranks (whole or split parts) that every body Einsum iterates and none reduces, other than
/// the key, the columns and their parts.
fn instance_ranks(
    cascade: &Cascade,
    base: &[RankId],
    key: Option<RankId>,
    columns: &[RankId],
) -> Vec<RankId> {
    let body: Vec<EinsumId> = cascade
        .einsum_ids()
        .filter(|&id| cascade.einsum(id).section == Section::Body)
        .collect();
    if body.is_empty() {
        return Vec::new();
    }
    let on_columns = |r: RankId| {
        columns.contains(&r)
            || columns
                .iter()
                .any(|&c| base[c.index()] == r || base[r.index()] == c)
    };
    (0..cascade.ranks.len())
        .map(|i| RankId(i as u32))
        .filter(|&r| {
            !cascade.rank(r).is_param
                && Some(base[r.index()]) != key
                && !on_columns(r)
                && cascade.rank(r).split.is_none()
                && body.iter().all(|&id| {
                    cascade.iteration_space(id).contains(&r)
                        && !cascade.reduced_ranks(id).contains(&r)
                })
        })
        .collect()
}

fn param_used(cascade: &Cascade, rank: RankId) -> bool {
    fn walk(e: &IndexExpr, r: RankId) -> bool {
        match e {
            IndexExpr::Size(s) => *s == r,
            IndexExpr::Var(v) => *v == r,
            IndexExpr::Lit(_) => false,
            IndexExpr::Add(a, b) | IndexExpr::Sub(a, b) | IndexExpr::Mul(a, b) => {
                walk(a, r) || walk(b, r)
            }
        }
    }
    cascade.einsums.iter().any(|e| {
        let mut accesses = cascade.accesses(e.value);
        accesses.push(&e.output);
        accesses.iter().any(|a| {
            a.indices.iter().any(|i| walk(i, rank))
                || a.filters.iter().any(|f| {
                    f.conds
                        .iter()
                        .any(|c| walk(&c.lhs, rank) || walk(&c.rhs, rank))
                })
        })
    })
}

/// Init Einsums that only re-index an input (`BK[e,m1,m0] = K[e, m1*M0+m0]`) are layouts of it.
pub(crate) fn layout_aliases(cascade: &Cascade) -> BTreeMap<TensorId, TensorId> {
    let mut alias = BTreeMap::new();
    for e in cascade
        .einsums
        .iter()
        .filter(|e| e.section == Section::Init)
    {
        if let Expr::Access(a) = cascade.expr(e.value)
            && cascade.tensor(a.tensor).kind == TensorKind::Input
        {
            alias.insert(e.output.tensor, a.tensor);
        }
    }
    alias
}

/// What every stage reads about the cascade's body, from the loop plan and the pass analysis.
pub(crate) struct Analysis<'a> {
    pub cascade: &'a Cascade,
    pub plan: &'a LoopPlan,
    pub roles: &'a Roles,
    /// The body Einsums (everything but `init`), in program order.
    pub body: Vec<EinsumId>,
    /// Per body Einsum: each tensor read, and whether the read is loop-carried state.
    pub reads: Vec<Vec<(TensorId, bool)>>,
    /// Same-step producers, as indexes into `body`.
    pub deps: Vec<Vec<usize>>,
    pub spaces: Vec<Vec<RankId>>,
    pub reduced: Vec<Vec<RankId>>,
    /// Pass over the key rank (0-based).
    pub pass: Vec<u32>,
    pub alias: BTreeMap<TensorId, TensorId>,
    pub writer: BTreeMap<TensorId, usize>,
    /// Tensors written at a shifted index of the iterative rank (loop state).
    pub iterative: BTreeSet<TensorId>,
}

impl<'a> Analysis<'a> {
    pub fn new(cascade: &'a Cascade, plan: &'a LoopPlan, roles: &'a Roles) -> Analysis<'a> {
        let body: Vec<EinsumId> = plan.body().collect();
        let writer = body
            .iter()
            .enumerate()
            .map(|(i, &id)| (cascade.einsum(id).output.tensor, i))
            .collect();
        let iterative = body
            .iter()
            .map(|&id| &cascade.einsum(id).output)
            .filter(|o| o.indices.iter().any(|i| i.shifted_var().is_some()))
            .map(|o| o.tensor)
            .collect();
        let reads = body
            .iter()
            .map(|&id| {
                let p = plan.placement(id);
                p.reads.iter().map(|r| (r.tensor, r.carried)).collect()
            })
            .collect();
        let deps = body
            .iter()
            .enumerate()
            .map(|(x, &id)| {
                let mut d: Vec<usize> = plan
                    .placement(id)
                    .reads
                    .iter()
                    .flat_map(|r| r.producers.iter())
                    .filter_map(|p| body.iter().position(|b| b == p))
                    .filter(|&w| w != x)
                    .collect();
                d.sort_unstable();
                d.dedup();
                d
            })
            .collect();
        let spaces = body
            .iter()
            .map(|&id| plan.placement(id).space.ranks.clone())
            .collect();
        let reduced = body
            .iter()
            .map(|&id| plan.placement(id).space.reduced.clone())
            .collect();
        let key_passes: Option<PassReport> = roles.key.map(|k| plan.passes(cascade, k));
        let pass = body
            .iter()
            .map(|&id| {
                key_passes
                    .as_ref()
                    .map_or(0, |r| r.einsums[id.index()].pass.saturating_sub(1))
            })
            .collect();
        Analysis {
            cascade,
            plan,
            roles,
            body,
            reads,
            deps,
            spaces,
            reduced,
            pass,
            alias: layout_aliases(cascade),
            writer,
            iterative,
        }
    }

    /// The tensor a read really touches: an input for a layout of it.
    pub fn src(&self, t: TensorId) -> TensorId {
        self.alias.get(&t).copied().unwrap_or(t)
    }

    /// Whether Einsum `x`'s space holds the spatial key rank.
    pub fn has_key_spatial(&self, x: usize) -> bool {
        self.roles
            .key_spatial
            .is_some_and(|r| self.spaces[x].contains(&r))
    }

    /// Whether Einsum `x` runs once per key tile: its space holds the temporal key rank.
    pub fn per_key_tile(&self, x: usize) -> bool {
        self.roles
            .key_temporal
            .is_some_and(|r| self.spaces[x].contains(&r))
    }

    /// The name of a rank in the lowercase of its variable.
    pub fn var(&self, r: RankId) -> String {
        self.cascade.rank(r).name.to_lowercase()
    }
}
