//! Pass analysis (FuseMax section 2): how many traversals of a rank a cascade needs, why, what
//! that forces to stay live, and how many ops each Einsum performs.
//!
//! The rank's *family* is the rank and every rank split from it (`M`, `M1`, `M0`). An Einsum
//! iterates the rank when its space meets the family. A tensor is *rank-complete* when it has no
//! dimension in the family but depends on all of it: it was produced by a reduction over family
//! ranks, by reading an iterative state at its final index (`RNV[f,M1,p]`), or from another
//! rank-complete tensor. An Einsum that iterates the rank runs in pass
//! `max over its operands of (operand's pass, +1 when the operand is rank-complete)`;
//! other Einsums run in the pass of their latest operand. The cascade needs as many passes as the
//! latest rank-iterating Einsum. Reductions over a sub-rank (`max(m0)`) leave the outer rank's
//! dimension in place, and state carried by an iterative rank is read at `r` or `r+1`, so neither
//! makes a tensor rank-complete nor creates a barrier.

mod polynomial;

use std::collections::BTreeMap;
use std::fmt;

use crate::ast::{
    Access, BinaryOp, Cascade, EinsumId, Expr, ExprId, IndexExpr, RankId, ReduceOp, Section,
    TensorId, TensorKind, UnaryOp,
};
use crate::ops::{OpKind, point_ops};
use crate::plan::LoopPlan;

pub use polynomial::Polynomial;

/// The pass analysis of one cascade over one rank.
#[derive(Debug, Clone, PartialEq)]
pub struct PassReport {
    pub cascade: String,
    pub rank: RankId,
    /// The rank and its split parts.
    pub family: Vec<RankId>,
    /// Names of every rank of the cascade, by id (for formatting polynomials).
    pub rank_names: Vec<String>,
    /// The minimum number of passes over the rank (0 when nothing iterates it).
    pub passes: u32,
    pub einsums: Vec<EinsumPass>,
    pub barriers: Vec<Barrier>,
    pub footprints: Vec<Footprint>,
    /// Ops of the whole cascade by kind.
    pub totals: BTreeMap<OpKind, Polynomial>,
}

/// Where one Einsum runs and what it costs.
#[derive(Debug, Clone, PartialEq)]
pub struct EinsumPass {
    pub einsum: EinsumId,
    pub section: Section,
    /// The tensor it writes.
    pub output: String,
    /// Whether its iteration space meets the rank's family.
    pub iterates: bool,
    /// The pass it belongs to (1-based).
    pub pass: u32,
    /// Ops by kind: per-point ops × the size of the iteration space, splits merged (`M1·M0` = `M`).
    pub ops: BTreeMap<OpKind, Polynomial>,
}

/// Why a later pass exists: `reducer` finished the rank before `consumer` traversed it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Barrier {
    /// The rank-complete tensor the consumer waits for, and the Einsum that completed it.
    pub complete: String,
    pub reducer: EinsumId,
    pub completion: Completion,
    pub consumer: EinsumId,
    pub consumer_output: String,
    /// Tensors with a family dimension that the consumer reads from an earlier pass.
    pub rereads: Vec<String>,
    pub from_pass: u32,
    pub to_pass: u32,
}

/// How a tensor became rank-complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// Reduced these family ranks away (`GM[p] = max(m) QK[m,p]`).
    Reduces(Vec<String>),
    /// Read the final state of an iterative tensor (`AV = RNV[f,M1,p] / …`).
    FinalState(String),
    /// Computed from another rank-complete tensor.
    From(String),
    /// An iterative state read at its last index by an Einsum that traverses the rank itself.
    LastStep,
}

/// What the passes force a tensor to keep live while the rank is traversed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footprint {
    pub tensor: String,
    pub kind: TensorKind,
    pub live: Live,
}

/// The live footprint of one tensor along the analysed rank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Live {
    /// The tensor has no dimension in the family.
    NoRank,
    /// Produced and consumed in one pass: O(1) per point of its other dimensions.
    Streamed { pass: u32 },
    /// Produced in pass `produced` and read again in `last_read`: the family dimensions
    /// (`along`) must be buffered whole, per point of the other dimensions (`per`).
    Buffered {
        produced: u32,
        last_read: u32,
        along: Vec<String>,
        per: Vec<String>,
    },
    /// An input read in several passes: streamed from memory once per pass.
    Restreamed { passes: Vec<u32> },
}

/// The pass rule, shared by this analysis of cascades and by the rewriter's extraction, which
/// applies it to terms: a computation runs in the latest pass of its operands, and one pass
/// later than an operand that is *rank-complete* (it has reduced, or read the final state of,
/// the whole rank) when it traverses the rank itself, since it must then revisit the rank's
/// data after that operand was finished. Each operand is `(pass, complete)`.
pub fn pass_after(traverses: bool, operands: impl IntoIterator<Item = (u32, bool)>) -> u32 {
    operands
        .into_iter()
        .map(|(pass, complete)| pass + u32::from(complete && traverses))
        .max()
        .unwrap_or(0)
}

/// Analyses `cascade` over `rank` (and its split parts).
pub fn passes(cascade: &Cascade, rank: RankId) -> PassReport {
    passes_with(cascade, &LoopPlan::new(cascade), rank)
}

/// [`passes`] with the cascade's loop plan already built: each Einsum's iteration space and
/// reduced ranks are the plan's.
pub fn passes_with(cascade: &Cascade, plan: &LoopPlan, rank: RankId) -> PassReport {
    let family = family(cascade, rank);
    let in_family = |r: &RankId| family.contains(r);
    let n_tensors = cascade.tensors.len();
    let has_family_dim: Vec<bool> = cascade
        .tensors
        .iter()
        .map(|t| t.ranks.iter().any(in_family))
        .collect();
    let iterates: Vec<bool> = cascade
        .einsum_ids()
        .map(|id| plan.placement(id).space.ranks.iter().any(in_family))
        .collect();

    let mut pass = vec![1u32; n_tensors];
    let mut complete: Vec<Option<(EinsumId, Completion)>> = vec![None; n_tensors];
    let mut einsum_pass = vec![1u32; cascade.einsums.len()];
    let mut barriers = Vec::new();
    // State read before it is written (RD[m1,p] before RD[m1+1,p]) needs a second sweep to see
    // the writer's pass; passes only grow, so this settles within one sweep per Einsum.
    for _ in 0..=cascade.einsums.len() {
        let before = (pass.clone(), einsum_pass.clone());
        barriers.clear();
        for id in cascade.einsum_ids() {
            let e = cascade.einsum(id);
            let accesses = cascade.accesses(e.value);
            let mut plain = 1u32;
            let mut waits: Option<(TensorId, u32, (EinsumId, Completion))> = None;
            for a in &accesses {
                let t = a.tensor.index();
                // A final state read directly (`RS[f,M1,p]`) is as complete as one read through
                // an Einsum without the rank: it exists only once the whole loop has run.
                let completed = complete[t].clone().or_else(|| {
                    reads_final_state(cascade, &family, a).then(|| {
                        let writer = last_writer(cascade, a.tensor).unwrap_or(id);
                        (writer, Completion::LastStep)
                    })
                });
                match completed {
                    Some(done) if iterates[id.index()] => {
                        if waits.as_ref().is_none_or(|(_, p, _)| pass[t] + 1 > *p) {
                            waits = Some((a.tensor, pass[t] + 1, done));
                        }
                    }
                    _ => plain = plain.max(pass[t]),
                }
            }
            let operands = accesses.iter().map(|a| {
                let t = a.tensor.index();
                let completed = complete[t].is_some() || reads_final_state(cascade, &family, a);
                (pass[t], completed)
            });
            let p = pass_after(iterates[id.index()], operands).max(1);
            debug_assert_eq!(p, plain.max(waits.as_ref().map_or(0, |(_, p, _)| *p)));
            einsum_pass[id.index()] = p;
            if let Some((t, wp, (reducer, completion))) = waits.filter(|(_, wp, _)| *wp > plain) {
                let mut rereads: Vec<String> = Vec::new();
                for a in &accesses {
                    let name = &cascade.tensor(a.tensor).name;
                    if has_family_dim[a.tensor.index()]
                        && a.tensor != t
                        && pass[a.tensor.index()] < wp
                        && !rereads.contains(name)
                    {
                        rereads.push(name.clone());
                    }
                }
                barriers.push(Barrier {
                    complete: cascade.tensor(t).name.clone(),
                    reducer,
                    completion,
                    consumer: id,
                    consumer_output: cascade.tensor(e.output.tensor).name.clone(),
                    rereads,
                    from_pass: wp - 1,
                    to_pass: wp,
                });
            }
            let out = e.output.tensor.index();
            pass[out] = pass[out].max(p);
            if !has_family_dim[out] && complete[out].is_none() {
                complete[out] = completion(cascade, id, &family, iterates[id.index()], &complete);
            }
        }
        if (pass.clone(), einsum_pass.clone()) == before {
            break;
        }
    }

    let total = cascade
        .einsum_ids()
        .filter(|id| iterates[id.index()])
        .map(|id| einsum_pass[id.index()])
        .max()
        .unwrap_or(0);

    let mut totals: BTreeMap<OpKind, Polynomial> = BTreeMap::new();
    let einsums = cascade
        .einsum_ids()
        .map(|id| {
            let e = cascade.einsum(id);
            let ranks = plan.placement(id).space.ranks.clone();
            let space = Polynomial::term(1, ranks).merge_splits(cascade);
            let ops: BTreeMap<OpKind, Polynomial> = point_ops(cascade, id)
                .into_iter()
                .map(|(kind, n)| (kind, &Polynomial::constant(i64::from(n)) * &space))
                .collect();
            for (kind, poly) in &ops {
                *totals.entry(*kind).or_default() += poly.clone();
            }
            EinsumPass {
                einsum: id,
                section: e.section,
                output: cascade.tensor(e.output.tensor).name.clone(),
                iterates: iterates[id.index()],
                pass: einsum_pass[id.index()],
                ops,
            }
        })
        .collect();

    let footprints = footprints(
        cascade,
        &family,
        &has_family_dim,
        &pass,
        &einsum_pass,
        &iterates,
    );
    PassReport {
        cascade: cascade.name.clone(),
        rank,
        family,
        rank_names: cascade.ranks.iter().map(|r| r.name.clone()).collect(),
        passes: total,
        einsums,
        barriers,
        footprints,
        totals,
    }
}

/// Which rank a cascade's passes are about, read from its structure (never from its names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RankChoice {
    One(RankId),
    /// Several ranks fit equally; the caller must name one.
    Ambiguous(Vec<RankId>),
    None,
}

/// The rank a caller most likely means: the top-level rank (a split's parent) the softmax
/// normaliser reduces, a sum of exponentials (`SD[p] = SN[m,p]` with `SN = exp(…)`, or its
/// tile form over `m0`); without one, the iterative rank's; without that, the ranks the last
/// reducing Einsum reduces.
pub fn rank_choice(cascade: &Cascade) -> RankChoice {
    let c = cascade;
    let top = |mut r: RankId| {
        r = c.rank(r).range_of.unwrap_or(r);
        while let Some(p) = c
            .ranks
            .iter()
            .position(|x| x.split.is_some_and(|(a, b)| a == r || b == r))
        {
            r = RankId(p as u32);
        }
        r
    };
    let is_exp = |e: ExprId| {
        matches!(
            c.expr(e),
            Expr::Unary(UnaryOp::Exp, _)
                | Expr::Binary {
                    op: BinaryOp::SubExp,
                    ..
                }
        )
    };
    let exp_tensor = |t: TensorId| {
        c.einsums
            .iter()
            .any(|w| w.output.tensor == t && w.reduction.is_none() && is_exp(w.value))
    };
    let choose = |mut ranks: Vec<RankId>| {
        ranks.sort();
        ranks.dedup();
        match ranks[..] {
            [] => RankChoice::None,
            [r] => RankChoice::One(r),
            _ => RankChoice::Ambiguous(ranks),
        }
    };
    let sums = c
        .einsum_ids()
        .filter(|id| c.reduce_op(*id) == Some(ReduceOp::Sum));
    let mut normalisers = Vec::new();
    for id in sums {
        let value = c.einsum(id).value;
        let exp = is_exp(value) || matches!(c.expr(value), Expr::Access(a) if exp_tensor(a.tensor));
        if exp {
            normalisers.extend(c.reduced_ranks(id).into_iter().map(top));
        }
    }
    if !normalisers.is_empty() {
        return choose(normalisers);
    }
    if let Some(&r) = c.iterative_ranks().first() {
        return RankChoice::One(top(r));
    }
    let last = c
        .einsum_ids()
        .filter(|id| !c.reduced_ranks(*id).is_empty())
        .last();
    choose(last.map_or(Vec::new(), |id| {
        c.reduced_ranks(id).into_iter().map(top).collect()
    }))
}

/// The rank of [`rank_choice`], `None` when there is none or it is ambiguous.
pub fn default_rank(cascade: &Cascade) -> Option<RankId> {
    match rank_choice(cascade) {
        RankChoice::One(r) => Some(r),
        RankChoice::Ambiguous(_) | RankChoice::None => None,
    }
}

/// Ranks the cascade iterates that are not parts of a split: the ones a user asks about.
pub fn top_level_ranks(cascade: &Cascade) -> Vec<RankId> {
    let is_part = |id: RankId| {
        cascade
            .ranks
            .iter()
            .any(|r| r.split.is_some_and(|(a, b)| a == id || b == id))
            || cascade.rank(id).range_of.is_some()
    };
    (0..cascade.ranks.len())
        .map(|i| RankId(i as u32))
        .filter(|&id| !cascade.rank(id).is_param && !is_part(id))
        .collect()
}

/// The rank and everything split from it (second inner variables included), in id order.
fn family(cascade: &Cascade, rank: RankId) -> Vec<RankId> {
    let mut out = vec![rank];
    let mut i = 0;
    while i < out.len() {
        if let Some((a, b)) = cascade.rank(out[i]).split {
            for r in std::iter::once(a).chain(cascade.inner_parts(b)) {
                if !out.contains(&r) {
                    out.push(r);
                }
            }
        }
        i += 1;
    }
    out.sort();
    out
}

/// Whether an access reads the state an iterative rank of the family holds after its last step
/// (an index equal to the rank's size, `RNV[f,M1,p]`).
fn reads_final_state(cascade: &Cascade, family: &[RankId], access: &Access) -> bool {
    let tensor = cascade.tensor(access.tensor);
    access
        .indices
        .iter()
        .zip(&tensor.ranks)
        .any(|(idx, r)| family.contains(r) && matches!(idx, IndexExpr::Size(s) if s == r))
}

/// The last Einsum in program order that writes `tensor`.
fn last_writer(cascade: &Cascade, tensor: TensorId) -> Option<EinsumId> {
    cascade
        .einsum_ids()
        .filter(|id| cascade.einsum(*id).output.tensor == tensor)
        .last()
}

/// Whether (and how) the output of an Einsum without family dimensions is rank-complete.
fn completion(
    cascade: &Cascade,
    id: EinsumId,
    family: &[RankId],
    iterates: bool,
    complete: &[Option<(EinsumId, Completion)>],
) -> Option<(EinsumId, Completion)> {
    let names = |ranks: &[RankId]| -> Vec<String> {
        ranks
            .iter()
            .map(|r| cascade.rank(*r).name.clone())
            .collect()
    };
    if iterates {
        let reduced: Vec<RankId> = cascade
            .reduced_ranks(id)
            .into_iter()
            .filter(|r| family.contains(r))
            .collect();
        return Some((id, Completion::Reduces(names(&reduced))));
    }
    let accesses = cascade.accesses(cascade.einsum(id).value);
    if let Some(a) = accesses
        .iter()
        .find(|a| reads_final_state(cascade, family, a))
    {
        let name = cascade.tensor(a.tensor).name.clone();
        return Some((id, Completion::FinalState(name)));
    }
    accesses
        .iter()
        .find(|a| complete[a.tensor.index()].is_some())
        .map(|a| (id, Completion::From(cascade.tensor(a.tensor).name.clone())))
}

fn footprints(
    cascade: &Cascade,
    family: &[RankId],
    has_family_dim: &[bool],
    pass: &[u32],
    einsum_pass: &[u32],
    iterates: &[bool],
) -> Vec<Footprint> {
    let mut read_in: Vec<Vec<u32>> = vec![Vec::new(); cascade.tensors.len()];
    for id in cascade.einsum_ids() {
        for a in cascade.accesses(cascade.einsum(id).value) {
            let passes = &mut read_in[a.tensor.index()];
            let p = einsum_pass[id.index()];
            // Reading a final state outside the loop is no traversal of the rank.
            if iterates[id.index()] && !passes.contains(&p) {
                passes.push(p);
            }
        }
    }
    cascade
        .tensors
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut reads = read_in[i].clone();
            reads.sort();
            let live = if !has_family_dim[i] {
                Live::NoRank
            } else if t.kind == TensorKind::Input {
                if reads.len() > 1 {
                    Live::Restreamed { passes: reads }
                } else {
                    Live::Streamed {
                        pass: reads.first().copied().unwrap_or(1),
                    }
                }
            } else {
                let last = reads.iter().copied().max().unwrap_or(pass[i]);
                if last > pass[i] {
                    let (along, per): (Vec<RankId>, Vec<RankId>) =
                        t.ranks.iter().partition(|r| family.contains(r));
                    let names = |rs: Vec<RankId>| {
                        rs.iter().map(|r| cascade.rank(*r).name.clone()).collect()
                    };
                    Live::Buffered {
                        produced: pass[i],
                        last_read: last,
                        along: names(along),
                        per: names(per),
                    }
                } else {
                    Live::Streamed { pass: pass[i] }
                }
            };
            Footprint {
                tensor: t.name.clone(),
                kind: t.kind,
                live,
            }
        })
        .collect()
}

impl fmt::Display for Completion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Completion::Reduces(ranks) => write!(f, "reduces {} fully", ranks.join(", ")),
            Completion::FinalState(t) => write!(f, "reads the final state of {t}"),
            Completion::From(t) => write!(f, "is computed from the complete {t}"),
            Completion::LastStep => write!(f, "is final only after its last step"),
        }
    }
}

impl fmt::Display for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} (pass {}) before {} ",
            self.complete, self.completion, self.from_pass, self.consumer_output
        )?;
        if self.rereads.is_empty() {
            write!(f, "traverses the rank again")?;
        } else {
            write!(f, "re-reads {}", self.rereads.join(", "))?;
        }
        write!(f, " (pass {})", self.to_pass)
    }
}

impl fmt::Display for Live {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per = |per: &[String]| {
            if per.is_empty() {
                String::new()
            } else {
                format!(" per ({})", per.join(",").to_lowercase())
            }
        };
        match self {
            Live::NoRank => f.write_str("O(1), no dimension in the rank"),
            Live::Streamed { pass } => write!(f, "O(1), streamed in pass {pass}"),
            Live::Buffered {
                produced,
                last_read,
                along,
                per: others,
            } => write!(
                f,
                "O({}){}, buffered from pass {produced} to pass {last_read}",
                along.join("·"),
                per(others)
            ),
            Live::Restreamed { passes } => {
                let list: Vec<String> = passes.iter().map(u32::to_string).collect();
                write!(f, "O(1), input re-streamed in passes {}", list.join(", "))
            }
        }
    }
}

impl fmt::Display for PassReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rank = &self.rank_names[self.rank.index()];
        let family: Vec<&str> = self
            .family
            .iter()
            .map(|r| self.rank_names[r.index()].as_str())
            .collect();
        writeln!(
            f,
            "cascade {}: {} pass{} over {rank} ({})",
            self.cascade,
            self.passes,
            if self.passes == 1 { "" } else { "es" },
            family.join(" ")
        )?;
        if self.barriers.is_empty() {
            writeln!(f, "barriers: none")?;
        } else {
            writeln!(f, "barriers:")?;
            for b in &self.barriers {
                writeln!(f, "  {b}")?;
            }
        }
        writeln!(
            f,
            "einsums (pass in parentheses: the Einsum does not traverse the rank):"
        )?;
        let width = self
            .einsums
            .iter()
            .map(|e| e.output.len())
            .max()
            .unwrap_or(0);
        for e in &self.einsums {
            let section = match e.section {
                Section::Init => "init",
                Section::Body => "    ",
            };
            let pass = if e.iterates {
                format!("pass {}", e.pass)
            } else {
                format!("(pass {})", e.pass)
            };
            let ops: Vec<String> = e
                .ops
                .iter()
                .map(|(k, p)| format!("{k} {}", p.display_with(&self.rank_names)))
                .collect();
            let ops = if ops.is_empty() {
                "no ops".to_string()
            } else {
                ops.join(", ")
            };
            writeln!(f, "  {section} {:<width$}  {pass:<8}  {ops}", e.output)?;
        }
        writeln!(f, "live footprint along {rank}:")?;
        let width = self
            .footprints
            .iter()
            .map(|t| t.tensor.len())
            .max()
            .unwrap_or(0);
        for t in &self.footprints {
            writeln!(f, "  {:<width$}  {}", t.tensor, t.live)?;
        }
        writeln!(f, "op totals:")?;
        for (k, p) in &self.totals {
            writeln!(f, "  {:<5}  {}", k.name(), p.display_with(&self.rank_names))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Cascade {
        crate::dsl::parse(src, "test").expect("parses").cascade
    }

    /// The normaliser's rank is found by structure: renaming `M` changes nothing, and a
    /// cascade with two normalisers over different ranks is ambiguous.
    #[test]
    fn the_default_rank_is_the_normalisers() {
        let three = crate::library::source("attention_3pass").expect("library");
        let renamed = three
            .replace("ranks E F M P", "ranks E F N P")
            .replace("K[E,M]", "K[E,N]")
            .replace("V[F,M]", "V[F,N]")
            .replace("[m,", "[n,")
            .replace("max(m)", "max(n)")
            .replace("f,m]", "f,n]")
            .replace("e,m]", "e,n]");
        let c = parse(&renamed);
        assert_eq!(default_rank(&c), c.rank_by_name("N"), "{renamed}");
        let one = parse(crate::library::source("attention_1pass").expect("library"));
        assert_eq!(default_rank(&one), one.rank_by_name("M"));
        let pedagogical = parse(crate::library::source("pedagogical_1").expect("library"));
        assert_eq!(default_rank(&pedagogical), pedagogical.rank_by_name("K"));
        let two = parse(
            "cascade two\nranks M N\ninput A[M] B[N]\nX = exp(A[m])\nY = exp(B[n])\nZ = X * Y\noutput Z\n",
        );
        assert_eq!(
            rank_choice(&two),
            RankChoice::Ambiguous(vec![RankId(0), RankId(1)])
        );
        assert_eq!(default_rank(&two), None);
    }
}
