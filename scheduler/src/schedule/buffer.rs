//! One phase's tensors: what each one is to the phase, how many query tiles stay resident in
//! the buffer (P1), what of the pass-crossing state spills, and the words moved.
//!
//! Per query column the buffer keeps the phase's query-side inputs, loop state and running
//! accumulators; beside them one tile of every streamed key-side input. P1 is as many query
//! tiles as fit; when not even one fits with its pass-crossing state, that state spills to DRAM
//! in the fraction that does not fit. Key-side inputs are streamed once per group of P1 query
//! tiles (P2 times, or once per query tile when the loop nest keeps the query tile outside the
//! key loop), and only the key tiles some query of the group needs when every reader skips the
//! dead ones.

use std::collections::{BTreeMap, BTreeSet};

use cascade_ir::TensorId;

use super::roles::Analysis;
use super::work::TileWork;
use super::{EinsumPlan, Infeasible, Partition, Residency, Traffic};
use crate::arch::{ArchSpec, Handoff};
use crate::mapping::{MappingOverrides, Placement};

/// What a tensor is to one phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Comes from DRAM (a cascade input or another phase's output) and has a query rank.
    QueryInput,
    /// Comes from DRAM without a query rank: streamed tile by tile.
    StreamInput,
    /// Comes from DRAM with both query and key ranks and is read in one pass: streamed tile by
    /// tile, once.
    TileInput,
    /// Loop-carried state with a query rank (written at `r+1`).
    State,
    /// A running reduction over key tiles kept per query.
    Accumulator,
    /// Crosses a pass barrier inside the phase.
    PassState,
    /// Produced and consumed in the same pass.
    Local,
}

/// A phase's partition, residency and traffic.
pub(crate) struct Placed {
    pub partition: Partition,
    pub passes: u32,
    pub placements: Vec<(String, Residency)>,
    pub traffic: Traffic,
    /// Each tensor's part of `traffic`, in the order the phase first touches them.
    pub traffic_by_tensor: Vec<(String, Traffic)>,
    pub buffer_words: u64,
    pub spill: f64,
    /// Queries resident when the phase takes one query row at a time (`row_queries`).
    pub row_queries: Option<u64>,
    /// Whether each query tile streams every key tile itself (the query loop outside the key
    /// loop) rather than sharing each key tile among the P1 resident query tiles.
    pub query_outer: bool,
}

/// A phase's traffic and each tensor's part of it: every word is added to both, so the parts
/// sum to the total by construction.
#[derive(Default)]
struct Ledger {
    total: Traffic,
    by_tensor: Vec<(String, Traffic)>,
}

impl Ledger {
    /// Applies `add` to the total and to `tensor`'s part.
    fn add(&mut self, tensor: &str, add: impl Fn(&mut Traffic)) {
        add(&mut self.total);
        match self.by_tensor.iter_mut().find(|(n, _)| n == tensor) {
            Some((_, t)) => add(t),
            None => {
                let mut t = Traffic::default();
                add(&mut t);
                self.by_tensor.push((tensor.to_string(), t));
            }
        }
    }
}

struct Sizes<'a> {
    a: &'a Analysis<'a>,
}

impl Sizes<'_> {
    fn words(&self, t: TensorId) -> u64 {
        let a = self.a;
        a.cascade
            .tensor(a.src(t))
            .ranks
            .iter()
            .map(|&r| a.roles.size(r))
            .product()
    }

    fn per_query(&self, t: TensorId) -> u64 {
        self.words(t) / self.a.roles.p.max(1)
    }

    /// One iteration's worth of a loop-carried tensor: drop the iterated rank.
    fn per_iteration(&self, t: TensorId) -> u64 {
        let a = self.a;
        let c = a.cascade;
        c.tensor(t)
            .ranks
            .iter()
            .filter(|&&r| {
                !c.einsums.iter().any(|e| {
                    e.output.tensor == t
                        && e.output.indices.iter().any(|i| i.shifted_var() == Some(r))
                })
            })
            .map(|&r| a.roles.size(r))
            .product()
    }

    /// One key tile's worth of a tensor per query (all of it when it has no key rank).
    fn tile_per_query(&self, t: TensorId) -> u64 {
        if self.has_key(t) {
            self.per_query(t) / self.a.roles.m_tiles.max(1)
        } else {
            self.per_query(t)
        }
    }

    fn ranks(&self, t: TensorId) -> &[cascade_ir::RankId] {
        &self.a.cascade.tensor(self.a.src(t)).ranks
    }

    fn has_query(&self, t: TensorId) -> bool {
        self.ranks(t).iter().any(|&r| self.a.roles.is_column(r))
    }

    fn has_key(&self, t: TensorId) -> bool {
        self.ranks(t).iter().any(|&r| self.a.roles.is_key(r))
    }

    fn has_barrier(&self, t: TensorId) -> bool {
        self.ranks(t).iter().any(|&r| self.a.roles.barrier(r))
    }
}

pub(crate) fn place(
    a: &Analysis<'_>,
    arch: &ArchSpec,
    (k, members): (usize, &[usize]),
    plans: &mut [EinsumPlan],
    tiles: &TileWork,
    overrides: &MappingOverrides,
) -> Result<Placed, Infeasible> {
    let sz = Sizes { a };
    let chosen = overrides.phase(k);
    if let Some(names) = &chosen.einsums {
        let have: Vec<&str> = members.iter().map(|&x| plans[x].name.as_str()).collect();
        if names.iter().map(String::as_str).ne(have.iter().copied()) {
            return Err(Infeasible::new(format!(
                "the mapping's phase {} holds {names:?}, but the schedule's phase {} holds {have:?}",
                k + 1,
                k + 1
            )));
        }
    }
    let member: BTreeSet<usize> = members.iter().copied().collect();
    let (roles_of, reader_passes) = classify(a, &sz, members, &member, plans);
    let bypassed = bypassed_inputs(a, &roles_of, &overrides.residency);
    let handed_off = handed_off(a, arch, &roles_of, members, plans);
    let one_row = members
        .iter()
        .all(|&x| arch.unit(plans[x].unit).rows() == 1);
    let max_pass = members.iter().map(|&x| a.pass[x]).max().unwrap_or(0);
    let min_pass = members.iter().map(|&x| a.pass[x]).min().unwrap_or(0);
    let passes = max_pass - min_pass + 1;
    // Key tiles are shared by the resident query tiles unless a 1-pass mapping puts the
    // query tile outside the key loop. (With several passes the traffic model shares them too,
    // as FuseMax's accounting of FLAT does.)
    let query_outer = match chosen.loop_order.as_deref() {
        Some(order) => query_outer(a, order, passes)? && passes == 1,
        None => false,
    };
    let sized = size_buffer(
        a,
        (&sz, tiles),
        arch,
        (&roles_of, &handed_off, one_row),
        &reader_passes,
        (min_pass, max_pass),
        (chosen.resident_query_tiles, &overrides.residency, &bypassed),
    )?;
    let r = a.roles;
    let partition = Partition {
        key_rank: r
            .key
            .map_or_else(String::new, |k| a.cascade.rank(k).name.clone()),
        query_rank: r
            .columns
            .iter()
            .map(|&q| a.cascade.rank(q).name.clone())
            .collect::<Vec<_>>()
            .join("·"),
        split: r.split,
        m: r.m,
        m0: r.m0,
        m1: r.m_tiles,
        p: r.p,
        p0: r.p0,
        p1: sized.p1,
        p2: r.p_tiles.div_ceil(sized.p1.max(1)),
    };
    let ctx = Ctx {
        a,
        sz: &sz,
        members,
        member: &member,
        roles_of: &roles_of,
        reader_passes: &reader_passes,
        tiles,
        partition: &partition,
        spill: sized.spill,
        query_outer,
        bypassed: &bypassed,
        handed_off: &handed_off,
        residency: &overrides.residency,
    };
    let (mut traffic, mut placements) = ctx.tensor_traffic(plans);
    ctx.einsum_reads(plans, &mut traffic);
    ctx.outputs(&mut traffic, &mut placements);
    Ok(Placed {
        partition,
        passes,
        placements,
        traffic: traffic.total,
        traffic_by_tensor: traffic.by_tensor,
        buffer_words: sized.used,
        spill: sized.spill,
        row_queries: sized.row_queries,
        query_outer,
    })
}

/// Whether a user's loop order keeps the query tile outside the key loop, if it is legal.
fn query_outer(a: &Analysis<'_>, order: &[String], passes: u32) -> Result<bool, Infeasible> {
    // The names the printed loop nest uses, so that a printed mapping reads back.
    let (key, _) = super::epochs::key_tile_vars(a);
    let q = a
        .roles
        .primary
        .map_or_else(|| "p".to_string(), |p| a.var(p));
    let (p2, p1) = (format!("{q}2"), format!("{q}1"));
    let names: Vec<&str> = order.iter().map(String::as_str).collect();
    let shared = [p2.as_str(), key.as_str(), p1.as_str()];
    let own = [p2.as_str(), p1.as_str(), key.as_str()];
    let own_passes = [p2.as_str(), p1.as_str(), "pass", key.as_str()];
    match names.as_slice() {
        n if n == own_passes && passes > 1 => Ok(true),
        n if n == shared && passes == 1 => Ok(false),
        n if n == own && passes == 1 => Ok(true),
        _ => Err(Infeasible::new(if passes > 1 {
            format!(
                "the mapping's loop order {names:?} is not legal for {passes} passes over the key rank: a query tile must finish each pass over every key tile before the next, so the order is [{}]",
                own_passes.map(|s| format!("\"{s}\"")).join(", ")
            )
        } else {
            format!(
                "the mapping's loop order {names:?} is not one of [{}] (key tiles shared by the resident query tiles) or [{}] (each query tile streams the key tiles)",
                shared.map(|s| format!("\"{s}\"")).join(", "),
                own.map(|s| format!("\"{s}\"")).join(", ")
            )
        })),
    }
}

type ReaderPasses = BTreeMap<TensorId, BTreeSet<u32>>;

/// The phase's inputs from DRAM that a user's mapping places in `dram`: they bypass the buffer
/// (Timeloop's `bypass`), so every tile that reads one reads it from DRAM.
fn bypassed_inputs(
    a: &Analysis<'_>,
    roles_of: &BTreeMap<TensorId, Role>,
    residency: &BTreeMap<String, Placement>,
) -> BTreeSet<TensorId> {
    roles_of
        .iter()
        .filter(|(_, role)| matches!(role, Role::QueryInput | Role::StreamInput | Role::TileInput))
        .map(|(&t, _)| t)
        .filter(|&t| residency.get(&a.cascade.tensor(t).name) == Some(&Placement::Dram))
        .collect()
}

/// The tiles that pass between units through the buffer: on an architecture without links,
/// each tensor one unit writes and another reads in the same pass.
fn handed_off(
    a: &Analysis<'_>,
    arch: &ArchSpec,
    roles_of: &BTreeMap<TensorId, Role>,
    members: &[usize],
    plans: &[EinsumPlan],
) -> BTreeSet<TensorId> {
    if arch.handoff() == Handoff::Link {
        return BTreeSet::new();
    }
    roles_of
        .iter()
        .filter(|&(t, role)| {
            let Some(&w) = a.writer.get(t) else {
                return false;
            };
            let crosses = members.iter().any(|&x| {
                x != w
                    && a.pass[x] == a.pass[w]
                    && plans[x].unit != plans[w].unit
                    && a.reads[x].iter().any(|(r, _)| a.src(*r) == *t)
            });
            crosses && matches!(role, Role::Local | Role::PassState)
        })
        .map(|(&t, _)| t)
        .collect()
}

/// Classifies every tensor the phase touches.
fn classify(
    a: &Analysis<'_>,
    sz: &Sizes<'_>,
    members: &[usize],
    member: &BTreeSet<usize>,
    plans: &[EinsumPlan],
) -> (BTreeMap<TensorId, Role>, ReaderPasses) {
    let mut roles_of: BTreeMap<TensorId, Role> = BTreeMap::new();
    let mut reader_passes: ReaderPasses = BTreeMap::new();
    for &x in members {
        for (t, _) in &a.reads[x] {
            reader_passes
                .entry(a.src(*t))
                .or_default()
                .insert(a.pass[x]);
        }
    }
    for &x in members {
        for (t, carried) in &a.reads[x] {
            let t = a.src(*t);
            let producer = a.writer.get(&t).copied().filter(|w| member.contains(w));
            let role = match producer {
                None if sz.has_query(t) && sz.has_key(t) && reader_passes[&t].len() == 1 => {
                    Role::TileInput
                }
                None if sz.has_query(t) => Role::QueryInput,
                None => Role::StreamInput,
                Some(_) if a.iterative.contains(&t) && (*carried || sz.has_query(t)) => Role::State,
                Some(w) if a.pass[w] < a.pass[x] && sz.has_barrier(t) => Role::PassState,
                Some(w)
                    if sz.has_query(t)
                        && plans[w].per_key_tile
                        && a.reduced[w].iter().any(|&r| a.roles.barrier(r)) =>
                {
                    Role::Accumulator
                }
                Some(_) => Role::Local,
            };
            if roles_of.get(&t) == Some(&Role::PassState) {
                continue;
            }
            roles_of.insert(t, role);
        }
    }
    // Accumulators are also those written by a key-tile reduction even if read only later.
    for &w in members {
        let t = a.cascade.einsum(a.body[w]).output.tensor;
        if sz.has_query(t)
            && plans[w].per_key_tile
            && a.reduced[w].iter().any(|&r| a.roles.barrier(r))
            && !roles_of.contains_key(&t)
        {
            roles_of.insert(t, Role::Accumulator);
        }
    }
    (roles_of, reader_passes)
}

struct Sized {
    p1: u64,
    spill: f64,
    used: u64,
    /// Set when the phase takes one query row at a time: the queries resident.
    row_queries: Option<u64>,
}

/// P1 and the spilled fraction from the buffer's capacity.
fn size_buffer(
    a: &Analysis<'_>,
    (sz, tiles): (&Sizes<'_>, &TileWork),
    arch: &ArchSpec,
    (roles_of, handed_off, one_row): (&BTreeMap<TensorId, Role>, &BTreeSet<TensorId>, bool),
    reader_passes: &ReaderPasses,
    (min_pass, max_pass): (u32, u32),
    (resident, residency, bypassed): (
        Option<u64>,
        &BTreeMap<String, Placement>,
        &BTreeSet<TensorId>,
    ),
) -> Result<Sized, Infeasible> {
    let r = a.roles;
    let mut resident_per_query = 0u64;
    let mut stream_tile_words = 0u64;
    // Pass-crossing state: (tensor, words per query, first pass, last pass).
    let mut crossing: Vec<(TensorId, u64, u32, u32)> = Vec::new();
    // A bypassed input takes no buffer space: it goes from DRAM straight to the array.
    for (&t, role) in roles_of.iter().filter(|(t, _)| !bypassed.contains(t)) {
        let passes = reader_passes.get(&t).cloned().unwrap_or_default();
        let last = passes.last().copied().unwrap_or(0);
        match role {
            Role::QueryInput if passes.len() > 1 && sz.has_barrier(t) => {
                let first = passes.first().copied().unwrap_or(0);
                crossing.push((t, sz.per_query(t), first, last));
            }
            Role::QueryInput | Role::Accumulator => resident_per_query += sz.per_query(t),
            Role::StreamInput => {
                stream_tile_words += if sz.has_key(t) {
                    sz.words(t) / r.m_tiles.max(1)
                } else {
                    sz.words(t)
                };
            }
            Role::State => resident_per_query += sz.per_iteration(t) / r.p.max(1),
            Role::PassState => {
                // A row holds only the key tiles its writer runs on (a window's W keys).
                let w = a.writer[&t];
                let share = if sz.has_key(t) {
                    tiles.peak_row_share(w)
                } else {
                    1.0
                };
                let words = (sz.per_query(t) as f64 * share).ceil() as u64;
                crossing.push((t, words, a.pass[w], last));
            }
            Role::TileInput => {
                stream_tile_words += sz.words(t) / (r.m_tiles * r.p_tiles).max(1);
            }
            // A tile passed between units through the buffer: each resident query's row of it.
            Role::Local if handed_off.contains(&t) => resident_per_query += sz.tile_per_query(t),
            Role::Local => {}
        }
    }
    // A user's residency: pass-crossing state kept in the buffer or sent to DRAM whole.
    let mut forced_dram = 0u64;
    let mut forced_buffer = false;
    for (t, words, _, _) in &mut crossing {
        match residency.get(&a.cascade.tensor(*t).name) {
            Some(Placement::Dram) => {
                forced_dram += *words;
                *words = 0;
            }
            Some(Placement::Buffer) => forced_buffer = true,
            None => {}
        }
    }
    let crossing_per_query = (min_pass..max_pass)
        .map(|b| {
            crossing
                .iter()
                .filter(|c| c.2 <= b && b < c.3)
                .map(|c| c.1)
                .sum::<u64>()
        })
        .max()
        .unwrap_or(0);
    let buffer = arch.buffer_words();
    let p0 = r.p0;
    if stream_tile_words > buffer {
        return Err(Infeasible::new(format!(
            "the {buffer}-word buffer cannot hold one tile of the streamed inputs ({stream_tile_words} words)"
        )));
    }
    let avail = buffer - stream_tile_words;
    let need_tile = (resident_per_query + crossing_per_query).saturating_mul(p0);
    if let Some(sized) = row_at_a_time(
        a,
        (resident_per_query + crossing_per_query, need_tile),
        (avail, stream_tile_words),
        (one_row, resident, forced_dram > 0),
    ) {
        return Ok(sized);
    }
    let (p1, spill) = if need_tile <= avail {
        let fit = avail
            .checked_div(need_tile)
            .map_or(r.p_tiles, |n| n.clamp(1, r.p_tiles.max(1)));
        match resident {
            Some(want) if want > fit => {
                return Err(Infeasible::new(format!(
                    "the mapping keeps {want} query tiles resident, but the {buffer}-word buffer holds {fit} ({} words each beside {stream_tile_words} words of streamed tiles)",
                    need_tile
                )));
            }
            Some(want) => (want.clamp(1, r.p_tiles.max(1)), 0.0),
            None => (fit, 0.0),
        }
    } else if resident_per_query * p0 <= avail && crossing_per_query > 0 && !forced_buffer {
        let spill = (need_tile - avail) as f64 / (crossing_per_query * p0) as f64;
        (1, spill.clamp(0.0, 1.0))
    } else if forced_buffer && resident_per_query * p0 <= avail {
        return Err(Infeasible::new(format!(
            "the mapping keeps the pass-crossing state in the buffer, but one query tile needs {need_tile} words and {avail} are free beside the streamed tiles"
        )));
    } else {
        return Err(Infeasible::new(format!(
            "the {buffer}-word buffer cannot hold one query tile: {p0} queries × {resident_per_query} words of state plus {stream_tile_words} words of streamed tiles"
        )));
    };
    // State sent to DRAM whole counts as spilled; the fraction is over all crossing state.
    let spill = if forced_dram > 0 {
        let all = (crossing_per_query + forced_dram) as f64;
        (spill * crossing_per_query as f64 + forced_dram as f64) / all
    } else {
        spill
    };
    let used = (p1 * (resident_per_query + crossing_per_query) * p0).min(avail) + stream_tile_words;
    Ok(Sized {
        p1,
        spill,
        used,
        row_queries: None,
    })
}

/// A phase on 1D units alone may take one query's row at a time, the unit's PEs across its
/// keys, as the FuseMax artifact maps the unfused softmax: when the tile of `p0` queries' state
/// would spill and one query's fits, the buffer holds as many whole rows as fit and nothing
/// spills. Only without streamed inputs (whose re-reads count per block of query tiles) and
/// without state a mapping sends to DRAM; a mapping that keeps one query tile resident, as the
/// printed mapping of such a phase does, gets the same.
fn row_at_a_time(
    a: &Analysis<'_>,
    (per_query, need_tile): (u64, u64),
    (avail, stream_tile_words): (u64, u64),
    (one_row, resident, forced_dram): (bool, Option<u64>, bool),
) -> Option<Sized> {
    let r = a.roles;
    let applies = one_row
        && stream_tile_words == 0
        && !forced_dram
        && matches!(resident, None | Some(1))
        && need_tile > avail
        && (1..=avail).contains(&per_query);
    applies.then(|| {
        let queries = (avail / per_query).min(r.p.max(1));
        Sized {
            p1: 1,
            spill: 0.0,
            used: queries * per_query,
            row_queries: Some(queries),
        }
    })
}

/// What traffic and register reads are computed from.
struct Ctx<'a> {
    a: &'a Analysis<'a>,
    sz: &'a Sizes<'a>,
    members: &'a [usize],
    member: &'a BTreeSet<usize>,
    roles_of: &'a BTreeMap<TensorId, Role>,
    reader_passes: &'a ReaderPasses,
    tiles: &'a TileWork,
    partition: &'a Partition,
    spill: f64,
    query_outer: bool,
    bypassed: &'a BTreeSet<TensorId>,
    handed_off: &'a BTreeSet<TensorId>,
    residency: &'a BTreeMap<String, Placement>,
}

impl Ctx<'_> {
    /// The share of the tiles Einsum `x` runs on.
    fn share(&self, x: usize) -> f64 {
        let (run, total) = self.tiles.run_share(x);
        run as f64 / total.max(1) as f64
    }

    fn readers(&self, t: TensorId) -> impl Iterator<Item = usize> + '_ {
        self.members
            .iter()
            .copied()
            .filter(move |&x| self.a.reads[x].iter().any(|(r, _)| self.a.src(*r) == t))
    }

    /// Groups of query tiles that share each streamed key tile: P2, or every query tile when
    /// the query tile is outside the key loop.
    fn stream_groups(&self) -> (u64, u64) {
        let part = self.partition;
        let per_group = if self.query_outer { 1 } else { part.p1.max(1) };
        (part.query_tiles().div_ceil(per_group), per_group)
    }

    /// Key tiles a streamed key-side tensor brings in over the whole phase, per pass, when
    /// every reader leaves the dead tiles out: those some query of each group needs. `None`
    /// when every key tile comes in for every group.
    fn live_streamed_key_tiles(&self, t: TensorId) -> Option<u64> {
        let part = self.partition;
        let (groups, per_group) = self.stream_groups();
        if !self.readers(t).all(|x| self.tiles.restricted(x)) {
            return None;
        }
        Some(
            (0..groups)
                .map(|g| {
                    let first = g * per_group;
                    let last = ((g + 1) * per_group).min(part.query_tiles()) - 1;
                    self.tiles.live_key_tiles(first, last)
                })
                .sum(),
        )
    }

    /// DRAM and buffer traffic of each tensor the phase touches, and where it lives.
    fn tensor_traffic(&self, plans: &[EinsumPlan]) -> (Ledger, Vec<(String, Residency)>) {
        let (a, sz) = (self.a, self.sz);
        let part = self.partition;
        let spill = self.spill;
        let mut traffic = Ledger::default();
        let mut placements = Vec::new();
        for (&t, role) in self.roles_of {
            let words = sz.words(t) as f64;
            let passes = self.reader_passes.get(&t).map_or(1, BTreeSet::len) as f64;
            let name = a.cascade.tensor(t).name.clone();
            let writer_share = a.writer.get(&t).map_or(1.0, |&w| self.share(w));
            if self.bypassed.contains(&t) {
                // Its DRAM reads are its readers' reads (`einsum_reads`).
                let times = self
                    .readers(t)
                    .map(|x| self.reread(x, t).ceil() as u64)
                    .sum();
                placements.push((name, Residency::Bypass { times }));
                continue;
            }
            let residency = match role {
                Role::QueryInput if passes > 1.0 && sz.has_barrier(t) => {
                    let read = words + spill * words * (passes - 1.0);
                    traffic.add(&name, |t| {
                        t.dram_read += read;
                        t.buffer_write += read;
                    });
                    Residency::PassState {
                        words_per_query: sz.per_query(t),
                        spill,
                    }
                }
                Role::QueryInput => {
                    traffic.add(&name, |t| {
                        t.dram_read += words;
                        t.buffer_write += words;
                    });
                    Residency::Buffer {
                        words_per_query: sz.per_query(t),
                    }
                }
                Role::StreamInput => {
                    let (groups, _) = self.stream_groups();
                    let live = sz
                        .has_key(t)
                        .then(|| self.live_streamed_key_tiles(t))
                        .flatten();
                    let (read, times) = match live {
                        Some(tiles) => {
                            let m1 = part.m1.max(1) as f64;
                            let read = words / m1 * tiles as f64 * passes;
                            (read, (tiles as f64 * passes / m1).ceil() as u64)
                        }
                        None => {
                            let times = groups * passes as u64;
                            (words * times as f64, times)
                        }
                    };
                    traffic.add(&name, |t| {
                        t.dram_read += read;
                        t.buffer_write += read;
                    });
                    let tile_words = if sz.has_key(t) {
                        sz.words(t) / part.m1.max(1)
                    } else {
                        sz.words(t)
                    };
                    Residency::Streamed { tile_words, times }
                }
                Role::State => {
                    // Swapped between the buffer and the row unit once per key tile it runs on.
                    let per_iter = sz.per_iteration(t) as f64 * part.m1 as f64 * writer_share;
                    traffic.add(&name, |t| t.buffer_write += per_iter);
                    Residency::Buffer {
                        words_per_query: sz.per_iteration(t) / a.roles.p.max(1),
                    }
                }
                Role::Accumulator => {
                    traffic.add(&name, |t| {
                        t.buffer_write += words * part.m1 as f64 * writer_share
                    });
                    Residency::Buffer {
                        words_per_query: sz.per_query(t),
                    }
                }
                Role::PassState => {
                    let later = self.reader_passes[&t]
                        .iter()
                        .filter(|&&p| p > a.pass[a.writer[&t]])
                        .count() as f64;
                    let live = words * writer_share;
                    traffic.add(&name, |t| {
                        t.dram_write += spill * live;
                        t.dram_read += spill * live * later;
                        t.buffer_write += live;
                    });
                    Residency::PassState {
                        words_per_query: sz.per_query(t),
                        spill,
                    }
                }
                Role::TileInput => {
                    let share = self.readers(t).map(|x| self.share(x)).fold(0.0, f64::max);
                    traffic.add(&name, |t| {
                        t.dram_read += words * share;
                        t.buffer_write += words * share;
                    });
                    Residency::Streamed {
                        tile_words: sz.words(t) / (part.m1 * part.query_tiles()).max(1),
                        times: 1,
                    }
                }
                Role::Local if self.handed_off.contains(&t) => {
                    traffic.add(&name, |t| t.buffer_write += words * writer_share);
                    Residency::Handoff {
                        words_per_query: sz.tile_per_query(t),
                    }
                }
                Role::Local => {
                    let w = a.writer[&t];
                    let same_unit = self.readers(t).all(|x| plans[x].unit == plans[w].unit);
                    if same_unit {
                        Residency::Register
                    } else {
                        Residency::Link
                    }
                }
            };
            placements.push((name, residency));
        }
        (traffic, placements)
    }

    /// Times Einsum `x` reads accessed tensor `t` again: the tensor's own ranks are read once,
    /// the query and temporal key ranks it lacks are walked once per tile.
    fn reread(&self, x: usize, t: TensorId) -> f64 {
        let (a, part) = (self.a, self.partition);
        let r = a.roles;
        let tdims = &a.cascade.tensor(t).ranks;
        // A tensor over a whole rank has each of its parts (`Q[E,P,H]` has the heads `r`).
        let lacks =
            |k: &cascade_ir::RankId| !tdims.contains(k) && !tdims.contains(&r.base[k.index()]);
        let space = &a.spaces[x];
        let query = space.iter().any(|&k| r.is_column(k) && lacks(&k));
        let key = r
            .key_temporal
            .is_some_and(|k| space.contains(&k) && lacks(&k));
        let q = if query {
            part.query_tiles() as f64
        } else {
            1.0
        };
        let m = if key { part.m1 as f64 } else { 1.0 };
        q * m
    }

    /// Each Einsum's reads: registers for same-unit producers, the buffer for the rest, DRAM
    /// for a bypassed input.
    fn einsum_reads(&self, plans: &mut [EinsumPlan], traffic: &mut Ledger) {
        let (a, sz) = (self.a, self.sz);
        let part = self.partition;
        for &x in self.members {
            let share = self.share(x);
            let mut reg_reads = 0u64;
            for (accessed, _) in &a.reads[x] {
                let t = a.src(*accessed);
                let name = &a.cascade.tensor(t).name;
                // Produced in this pass: on the same unit it is still in the PE's registers;
                // from another unit it comes over the link or through the buffer.
                let local = match self.roles_of.get(&t) {
                    Some(Role::Local) => true,
                    Some(Role::PassState) => a.pass[a.writer[&t]] == a.pass[x],
                    _ => false,
                };
                match self.roles_of.get(&t) {
                    Some(_) if local && plans[a.writer[&t]].unit == plans[x].unit => {
                        reg_reads = reg_reads.saturating_add(plans[x].points);
                    }
                    Some(_) if local && self.handed_off.contains(&t) => {
                        let words = sz.words(t) as f64 * self.reread(x, *accessed) * share;
                        traffic.add(name, |t| t.buffer_read += words);
                    }
                    Some(_) if local => {}
                    Some(Role::State) => {
                        let per_iter = sz.per_iteration(t) as f64;
                        let words = if plans[x].per_key_tile {
                            per_iter * part.m1 as f64 * share
                        } else {
                            per_iter
                        };
                        traffic.add(name, |t| t.buffer_read += words);
                    }
                    Some(_) if self.bypassed.contains(&t) => {
                        let words = sz.words(t) as f64 * self.reread(x, *accessed) * share;
                        traffic.add(name, |t| t.dram_read += words);
                    }
                    Some(_) => {
                        let words = sz.words(t) as f64 * self.reread(x, *accessed) * share;
                        traffic.add(name, |t| t.buffer_read += words);
                    }
                    None => {}
                }
            }
            plans[x].register_reads = reg_reads;
        }
    }

    /// Outputs of the phase: read by another phase or by the caller, written to DRAM once.
    fn outputs(&self, traffic: &mut Ledger, placements: &mut Vec<(String, Residency)>) {
        let (a, sz) = (self.a, self.sz);
        for &w in self.members {
            let t = a.cascade.einsum(a.body[w]).output.tensor;
            let read_elsewhere = a
                .reads
                .iter()
                .enumerate()
                .any(|(x, rs)| !self.member.contains(&x) && rs.iter().any(|(r, _)| *r == t));
            if read_elsewhere || a.cascade.outputs.contains(&t) {
                let words = if a.iterative.contains(&t) {
                    sz.per_iteration(t)
                } else {
                    sz.words(t)
                } as f64;
                let name = a.cascade.tensor(t).name.clone();
                // Staged in the buffer on its way out, unless the mapping sends it past it.
                let bypass = self.residency.get(&name) == Some(&Placement::Dram);
                let staged = if bypass { 0.0 } else { words };
                traffic.add(&name, |t| {
                    t.dram_write += words;
                    t.buffer_write += staged;
                });
                let residency = if bypass {
                    Residency::Bypass { times: 0 }
                } else {
                    Residency::Dram
                };
                placements.push((name, residency));
            }
        }
    }
}
