//! Semantic checks of a cascade; every problem is reported at once, each naming its location.

use crate::ast::*;

/// The rank an index expression walks along a tensor dimension, when it names one: `m`, `M`,
/// `m+1` give `M`; `m1*M0+m0` gives the parent of the split `(M1, M0)`, and so does `m1*M0+n0`
/// for its second inner variable `N0`. Literals and other arithmetic name none.
pub fn index_rank(c: &Cascade, idx: &IndexExpr) -> Option<RankId> {
    if let Some(r) = idx.shifted_var() {
        return Some(r);
    }
    match idx {
        IndexExpr::Var(r) | IndexExpr::Size(r) => Some(*r),
        IndexExpr::Add(a, b) => match (&**a, &**b) {
            (IndexExpr::Mul(o, s), IndexExpr::Var(i)) => match (&**o, &**s) {
                (IndexExpr::Var(o), IndexExpr::Size(s))
                    if s == i || c.ranks.get(i.index()).and_then(|r| r.range_of) == Some(*s) =>
                {
                    c.ranks
                        .iter()
                        .position(|r| r.split == Some((*o, *s)))
                        .map(|p| RankId(p as u32))
                }
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

/// Where a problem sits; the DSL's `SourceMap` turns it into a span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// An Einsum; `access` is the index into its accesses (0 = output, then operands left to
    /// right, as `Cascade::accesses`), `None` for the whole Einsum.
    Einsum {
        einsum: EinsumId,
        access: Option<usize>,
    },
    Tensor(TensorId),
    Rank(RankId),
    /// The `n`th entry of `Cascade::outputs`.
    Output(usize),
    /// The cascade as a whole (its header).
    Cascade,
}

/// One semantic problem. Names are copied in so the message reads without the cascade.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("{what} {index} is out of range (the cascade has {len})")]
    BadId {
        what: &'static str,
        index: usize,
        len: usize,
    },
    #[error("rank `{name}` is declared but never used")]
    UnusedRank { rank: RankId, name: String },
    #[error(
        "rank `{name}` is a second variable over `{range}`, which is not the inner part of a split whose only second variable it is"
    )]
    StraySecondVariable {
        rank: RankId,
        name: String,
        range: String,
    },
    #[error("`{tensor_name}` has {expected} dimensions but is accessed with {found} indices")]
    ArityMismatch {
        at: Location,
        tensor: TensorId,
        tensor_name: String,
        expected: usize,
        found: usize,
    },
    #[error(
        "dimension {position} of `{tensor_name}` has rank {expected}, but this access indexes it by rank {found}"
    )]
    RankMismatch {
        at: Location,
        tensor: TensorId,
        tensor_name: String,
        position: usize,
        expected: String,
        found: String,
    },
    #[error("`{tensor_name}` is read before any Einsum writes it")]
    ReadBeforeWrite {
        at: Location,
        tensor: TensorId,
        tensor_name: String,
    },
    #[error("`{tensor_name}` is read but no Einsum writes it and it is not an input")]
    NeverWritten {
        at: Location,
        tensor: TensorId,
        tensor_name: String,
    },
    #[error(
        "Einsums {einsums_text} depend on each other through {tensors_text}: a cycle outside an iterative rank"
    )]
    Cycle {
        einsums: Vec<EinsumId>,
        einsums_text: String,
        tensors_text: String,
    },
    #[error("iterative state `{tensor_name}` (rank {rank_name}) is never initialised")]
    MissingInit {
        at: Location,
        tensor: TensorId,
        tensor_name: String,
        rank: RankId,
        rank_name: String,
    },
    #[error("rank {rank_name} is iterative but the cascade has no stop condition")]
    MissingStop { rank: RankId, rank_name: String },
    #[error("output `{tensor_name}` is never written")]
    OutputNeverWritten {
        output: usize,
        tensor: TensorId,
        tensor_name: String,
    },
    #[error("input `{tensor_name}` is written by an Einsum")]
    InputWritten {
        at: Location,
        tensor: TensorId,
        tensor_name: String,
    },
    #[error("the reduction lists {listed} but the Einsum reduces {reduced}")]
    ReductionMismatch {
        at: Location,
        listed: String,
        reduced: String,
    },
    #[error("the cascade has no output")]
    NoOutputs,
    #[error(
        "`{einsum_output}` runs once per step of {rank_name}, but reads `{tensor_name}`, which exists only after the loop (`{writer_output}` depends on the loop's results)"
    )]
    LoopReadsPostLoop {
        at: Location,
        einsum_output: String,
        tensor_name: String,
        writer_output: String,
        rank_name: String,
    },
    #[error(
        "inside the loop over {rank_name}, `{tensor_name}` is read at `{index}`, a step the loop has not reached (or its final state)"
    )]
    ReadsOtherStep {
        at: Location,
        tensor_name: String,
        index: String,
        written: String,
        rank_name: String,
    },
    #[error("`init` writes `{tensor_name}` at a step of the iterative rank {rank_name}")]
    InitWritesStep {
        at: Location,
        tensor_name: String,
        rank_name: String,
    },
    #[error("ranks {ranks} are all iterative; a cascade may carry state along one rank only")]
    SeveralIterativeRanks { ranks: String },
    #[error("{what} nests {depth} levels deep, more than the limit of {limit}")]
    TooDeep {
        at: Location,
        what: &'static str,
        depth: usize,
        limit: usize,
    },
}

/// The deepest expression tree (right-hand side) a cascade may hold. The parser's statement
/// limits keep every parsed cascade below it; a cascade built in code that goes beyond it is
/// refused, so that every stage may walk expressions without a deep stack.
pub const MAX_EXPR_DEPTH: usize = 256;

/// The deepest index expression (`m1*M0+m0` is 3) a cascade may hold, for the same reason.
pub const MAX_INDEX_DEPTH: usize = 256;

impl VerifyError {
    /// Where the problem is.
    pub fn location(&self) -> Location {
        match self {
            VerifyError::BadId { .. }
            | VerifyError::NoOutputs
            | VerifyError::SeveralIterativeRanks { .. } => Location::Cascade,
            VerifyError::UnusedRank { rank, .. }
            | VerifyError::MissingStop { rank, .. }
            | VerifyError::StraySecondVariable { rank, .. } => Location::Rank(*rank),
            VerifyError::ArityMismatch { at, .. }
            | VerifyError::RankMismatch { at, .. }
            | VerifyError::ReadBeforeWrite { at, .. }
            | VerifyError::NeverWritten { at, .. }
            | VerifyError::MissingInit { at, .. }
            | VerifyError::InputWritten { at, .. }
            | VerifyError::ReductionMismatch { at, .. }
            | VerifyError::LoopReadsPostLoop { at, .. }
            | VerifyError::ReadsOtherStep { at, .. }
            | VerifyError::InitWritesStep { at, .. }
            | VerifyError::TooDeep { at, .. } => *at,
            VerifyError::Cycle { einsums, .. } => Location::Einsum {
                einsum: einsums[0],
                access: None,
            },
            VerifyError::OutputNeverWritten { output, .. } => Location::Output(*output),
        }
    }

    /// A short label for the caret.
    pub fn label(&self) -> &'static str {
        match self {
            VerifyError::BadId { .. } => "malformed cascade",
            VerifyError::UnusedRank { .. } => "unused rank",
            VerifyError::StraySecondVariable { .. } => "second variable",
            VerifyError::ArityMismatch { .. } => "wrong number of indices",
            VerifyError::RankMismatch { .. } => "rank mismatch",
            VerifyError::ReadBeforeWrite { .. } => "read before written",
            VerifyError::NeverWritten { .. } => "never written",
            VerifyError::Cycle { .. } => "part of a cycle",
            VerifyError::MissingInit { .. } => "state updated here",
            VerifyError::MissingStop { .. } => "iterative rank",
            VerifyError::OutputNeverWritten { .. } => "never written",
            VerifyError::InputWritten { .. } => "writes an input",
            VerifyError::ReductionMismatch { .. } => "reduction",
            VerifyError::NoOutputs => "no `output` line",
            VerifyError::LoopReadsPostLoop { .. } => "read inside the loop",
            VerifyError::ReadsOtherStep { .. } => "another step",
            VerifyError::InitWritesStep { .. } => "written in init",
            VerifyError::SeveralIterativeRanks { .. } => "several iterative ranks",
            VerifyError::TooDeep { .. } => "too deep",
        }
    }

    /// How to fix it.
    pub fn hint(&self) -> String {
        match self {
            VerifyError::BadId { .. } => {
                "this cascade was built with a dangling id: a bug in the code that built it".into()
            }
            VerifyError::UnusedRank { name, .. } => {
                format!("remove `{name}` from its declaration, or index a tensor by it")
            }
            VerifyError::StraySecondVariable { name, .. } => format!(
                "declare `{name}` as the third name of one split (`split M -> M1 M0 {name}`), where it ranges over the split's inner rank"
            ),
            VerifyError::ArityMismatch {
                tensor_name,
                expected,
                ..
            } => format!("access `{tensor_name}` with {expected} indices, as its first write (or declaration) does"),
            VerifyError::RankMismatch {
                tensor_name,
                position,
                expected,
                ..
            } => format!(
                "index dimension {position} of `{tensor_name}` by `{}` (or a shift or split of it), or change the tensor's first write",
                expected.to_lowercase()
            ),
            VerifyError::ReadBeforeWrite { tensor_name, .. } => format!(
                "Einsums run in order: move the Einsum that writes `{tensor_name}` above this one"
            ),
            VerifyError::NeverWritten { tensor_name, .. } => format!(
                "add an Einsum that writes `{tensor_name}`, or declare it with `input`"
            ),
            VerifyError::Cycle { .. } => "a tensor may depend on itself only through an iterative rank: write the new state at r+1 (`S[k+1] = S[k] + …`) and initialise S[0] in `init`".into(),
            VerifyError::MissingInit {
                tensor_name,
                rank_name,
                ..
            } => format!(
                "add `init` with a write of `{tensor_name}` at index 0 along {rank_name}, e.g. `{tensor_name}[0,…] = 0`"
            ),
            VerifyError::MissingStop { rank_name, .. } => format!(
                "add a stop condition after the Einsums, e.g. `stop {} >= {rank_name}`",
                rank_name.to_lowercase()
            ),
            VerifyError::OutputNeverWritten { tensor_name, .. } => format!(
                "write `{tensor_name}` in an Einsum or list another tensor in `output`"
            ),
            VerifyError::InputWritten { tensor_name, .. } => format!(
                "write to a new tensor instead of `{tensor_name}`, or drop it from `input`"
            ),
            VerifyError::ReductionMismatch { reduced, .. } => format!(
                "list exactly the ranks in the operands but not in the output: {reduced}"
            ),
            VerifyError::NoOutputs => "add `output T` naming the result tensor".into(),
            VerifyError::LoopReadsPostLoop {
                einsum_output,
                tensor_name,
                rank_name,
                ..
            } => format!(
                "compute `{tensor_name}` from tensors that do not depend on the loop (a full reduction of an input runs before it), or drop `{}` from the output of `{einsum_output}` so that it also runs after the loop",
                rank_name.to_lowercase()
            ),
            VerifyError::ReadsOtherStep {
                tensor_name,
                written,
                rank_name,
                ..
            } => {
                let var = rank_name.to_lowercase();
                format!(
                    "inside the loop, read `{tensor_name}` at `{written}` (what this step wrote) or at an earlier step; read the final state after the loop, in an Einsum whose output does not use `{var}`"
                )
            }
            VerifyError::InitWritesStep { tensor_name, .. } => format!(
                "initialise `{tensor_name}` at index 0 in `init` and update it at r+1 under `einsums`"
            ),
            VerifyError::SeveralIterativeRanks { .. } => "keep the running state along one rank (write the others' state at plain indices), or split the cascade in two".into(),
            VerifyError::TooDeep { .. } => {
                "split the Einsum into several shallower ones".into()
            }
        }
    }
}

/// Checks every semantic rule and returns all violations (empty when the cascade is valid):
/// dangling ids, unused ranks, arity and rank mismatches between uses of a tensor, reads
/// before writes, cycles outside iterative ranks, iterative state without initialisation,
/// iterative ranks without a stop condition, outputs never written, inputs written, explicit
/// reductions that do not match the ranks reduced, and a cascade without outputs.
pub fn verify(c: &Cascade) -> Vec<VerifyError> {
    // Depth first: every later check may walk index expressions recursively.
    let deep = index_depths(c);
    if !deep.is_empty() {
        return deep;
    }
    let bad = bad_ids(c);
    if !bad.is_empty() {
        return bad;
    }
    let deep = expr_depths(c);
    if !deep.is_empty() {
        return deep;
    }
    let mut errors = Vec::new();
    second_variables(c, &mut errors);
    accesses_match_tensors(c, &mut errors);
    read_before_write(c, &mut errors);
    iterative_state(c, &mut errors);
    reductions(c, &mut errors);
    cycles(c, &mut errors);
    unused_ranks(c, &mut errors);
    outputs(c, &mut errors);
    if errors.is_empty() {
        // The loop plan is defined on a cascade whose reads follow their writes.
        ambiguities(c, &mut errors);
    }
    errors
}

/// A second variable ranges over the inner part of one split, as the only one of that split,
/// and is a plain rank itself: the printer writes it as that split's third name, and every
/// stage reads `m1*M0+n0` as an index of the split's parent.
fn second_variables(c: &Cascade, errors: &mut Vec<VerifyError>) {
    for (t, r) in c.ranks.iter().enumerate() {
        let Some(inner) = r.range_of else { continue };
        let rank = RankId(t as u32);
        let is_inner = c
            .ranks
            .iter()
            .any(|p| p.split.is_some_and(|(_, i)| i == inner));
        let plain = r.split.is_none() && !r.is_param && c.rank(inner).range_of.is_none();
        if !is_inner || !plain || c.second_variable(inner) != Some(rank) {
            errors.push(VerifyError::StraySecondVariable {
                rank,
                name: r.name.clone(),
                range: c.rank(inner).name.clone(),
            });
        }
    }
}

/// Constructs whose meaning would depend on who runs them (see [`crate::plan`]).
fn ambiguities(c: &Cascade, errors: &mut Vec<VerifyError>) {
    use crate::plan::{Ambiguity, LoopPlan};
    let rank_name = c
        .iterative_ranks()
        .first()
        .map(|r| c.rank(*r).name.clone())
        .unwrap_or_default();
    let output = |id: EinsumId| c.tensor(c.einsum(id).output.tensor).name.clone();
    for a in &LoopPlan::ambiguities(c) {
        errors.push(match a {
            Ambiguity::LoopReadsPostLoop {
                einsum,
                access,
                tensor,
                writer,
            } => VerifyError::LoopReadsPostLoop {
                at: Location::Einsum {
                    einsum: *einsum,
                    access: Some(*access),
                },
                einsum_output: output(*einsum),
                tensor_name: c.tensor(*tensor).name.clone(),
                writer_output: output(*writer),
                rank_name: rank_name.clone(),
            },
            Ambiguity::ReadsOtherStep {
                einsum,
                access,
                tensor,
                position,
            } => {
                let read = &einsum_accesses(c, *einsum)[*access];
                let written = c
                    .einsums
                    .iter()
                    .filter(|e| e.output.tensor == *tensor && e.section == Section::Body)
                    .filter_map(|e| e.output.indices.get(*position))
                    .next_back()
                    .map(|i| crate::dsl::print_index(c, i))
                    .unwrap_or_default();
                VerifyError::ReadsOtherStep {
                    at: Location::Einsum {
                        einsum: *einsum,
                        access: Some(*access),
                    },
                    tensor_name: c.tensor(*tensor).name.clone(),
                    index: crate::dsl::print_index(c, &read.indices[*position]),
                    written,
                    rank_name: rank_name.clone(),
                }
            }
            Ambiguity::InitWritesStep { einsum } => VerifyError::InitWritesStep {
                at: Location::Einsum {
                    einsum: *einsum,
                    access: Some(0),
                },
                tensor_name: output(*einsum),
                rank_name: rank_name.clone(),
            },
            Ambiguity::SeveralIterativeRanks { ranks } => VerifyError::SeveralIterativeRanks {
                ranks: ranks
                    .iter()
                    .map(|r| c.rank(*r).name.clone())
                    .collect::<Vec<_>>()
                    .join(", "),
            },
        });
    }
}

/// Index expressions deeper than [`MAX_INDEX_DEPTH`], each reported at its Einsum.
fn index_depths(c: &Cascade) -> Vec<VerifyError> {
    let too_deep = |idx: &IndexExpr| Some(idx.depth()).filter(|d| *d > MAX_INDEX_DEPTH);
    let access_depth = |a: &Access| {
        let conds = a.filters.iter().flat_map(|f| &f.conds);
        a.indices
            .iter()
            .chain(conds.flat_map(|k| [&k.lhs, &k.rhs]))
            .find_map(too_deep)
    };
    let mut errors = Vec::new();
    let mut report = |at: Location, depth: usize| {
        errors.push(VerifyError::TooDeep {
            at,
            what: "an index expression",
            depth,
            limit: MAX_INDEX_DEPTH,
        });
    };
    for (i, e) in c.einsums.iter().enumerate() {
        if let Some(depth) = access_depth(&e.output) {
            let einsum = EinsumId(i as u32);
            report(
                Location::Einsum {
                    einsum,
                    access: Some(0),
                },
                depth,
            );
        }
    }
    for e in &c.exprs {
        if let Expr::Access(a) = e
            && let Some(depth) = access_depth(a)
        {
            report(Location::Cascade, depth);
        }
    }
    if let Some(stop) = &c.stop
        && let Some(depth) = too_deep(&stop.lhs).or(too_deep(&stop.rhs))
    {
        report(Location::Cascade, depth);
    }
    errors
}

/// Right-hand sides deeper than [`MAX_EXPR_DEPTH`]; `c` has valid ids (children first).
fn expr_depths(c: &Cascade) -> Vec<VerifyError> {
    let mut depth = vec![1usize; c.exprs.len()];
    for (i, e) in c.exprs.iter().enumerate() {
        depth[i] = 1 + match e {
            Expr::Access(_) | Expr::Const(_) => 0,
            Expr::Unary(_, a) => depth[a.index()],
            Expr::Binary { lhs, rhs, .. } => depth[lhs.index()].max(depth[rhs.index()]),
        };
    }
    c.einsum_ids()
        .filter(|id| depth[c.einsum(*id).value.index()] > MAX_EXPR_DEPTH)
        .map(|einsum| VerifyError::TooDeep {
            at: Location::Einsum {
                einsum,
                access: None,
            },
            what: "the right-hand side",
            depth: depth[c.einsum(einsum).value.index()],
            limit: MAX_EXPR_DEPTH,
        })
        .collect()
}

/// Pushes every rank an index expression names, as a variable or a size.
fn index_ranks(e: &IndexExpr, out: &mut Vec<RankId>) {
    match e {
        IndexExpr::Var(r) | IndexExpr::Size(r) => out.push(*r),
        IndexExpr::Lit(_) => {}
        IndexExpr::Add(a, b) | IndexExpr::Sub(a, b) | IndexExpr::Mul(a, b) => {
            index_ranks(a, out);
            index_ranks(b, out);
        }
    }
}

/// Every rank an access names in its indices and filters.
fn access_ranks(a: &Access, out: &mut Vec<RankId>) {
    for i in &a.indices {
        index_ranks(i, out);
    }
    for f in &a.filters {
        for cond in &f.conds {
            index_ranks(&cond.lhs, out);
            index_ranks(&cond.rhs, out);
        }
    }
}

fn bad_ids(c: &Cascade) -> Vec<VerifyError> {
    let mut errors = Vec::new();
    let mut check = |what: &'static str, index: usize, len: usize| {
        if index >= len {
            errors.push(VerifyError::BadId { what, index, len });
        }
    };
    let mut ranks: Vec<RankId> = Vec::new();
    let mut tensors: Vec<TensorId> = c.outputs.clone();
    for r in &c.ranks {
        ranks.extend(r.split.iter().flat_map(|(o, i)| [*o, *i]));
        ranks.extend(r.range_of);
    }
    for t in &c.tensors {
        ranks.extend(&t.ranks);
    }
    for (i, e) in c.exprs.iter().enumerate() {
        // Children come before parents, which also rules out cycles in the expression arena.
        match e {
            Expr::Access(a) => {
                tensors.push(a.tensor);
                access_ranks(a, &mut ranks);
            }
            Expr::Const(Constant::InvSqrtSize(r)) => ranks.push(*r),
            Expr::Const(_) => {}
            Expr::Unary(_, arg) => check("expression id", arg.index(), i),
            Expr::Binary { lhs, rhs, .. } => {
                check("expression id", lhs.index(), i);
                check("expression id", rhs.index(), i);
            }
        }
    }
    for e in &c.einsums {
        tensors.push(e.output.tensor);
        access_ranks(&e.output, &mut ranks);
        check("expression id", e.value.index(), c.exprs.len());
        ranks.extend(e.reduction.iter().flat_map(|r| r.ranks.iter().copied()));
    }
    if let Some(stop) = &c.stop {
        index_ranks(&stop.lhs, &mut ranks);
        index_ranks(&stop.rhs, &mut ranks);
    }
    for r in ranks {
        check("rank id", r.index(), c.ranks.len());
    }
    for t in tensors {
        check("tensor id", t.index(), c.tensors.len());
    }
    errors.dedup();
    errors
}

/// Output access first, then the operands: the order `SourceMap::accesses` records.
fn einsum_accesses(c: &Cascade, id: EinsumId) -> Vec<&Access> {
    let e = c.einsum(id);
    let mut all = vec![&e.output];
    all.extend(c.accesses(e.value));
    all
}

fn accesses_match_tensors(c: &Cascade, errors: &mut Vec<VerifyError>) {
    for id in c.einsum_ids() {
        for (n, a) in einsum_accesses(c, id).into_iter().enumerate() {
            let at = Location::Einsum {
                einsum: id,
                access: Some(n),
            };
            let t = c.tensor(a.tensor);
            if a.indices.len() != t.ranks.len() {
                errors.push(VerifyError::ArityMismatch {
                    at,
                    tensor: a.tensor,
                    tensor_name: t.name.clone(),
                    expected: t.ranks.len(),
                    found: a.indices.len(),
                });
                continue;
            }
            for (position, (idx, want)) in a.indices.iter().zip(&t.ranks).enumerate() {
                if let Some(got) = index_rank(c, idx)
                    && got != *want
                {
                    errors.push(VerifyError::RankMismatch {
                        at,
                        tensor: a.tensor,
                        tensor_name: t.name.clone(),
                        position,
                        expected: c.rank(*want).name.clone(),
                        found: c.rank(got).name.clone(),
                    });
                }
            }
        }
    }
}

/// Tensors some Einsum writes at a shifted index (`S[k+1]`): iterative state.
fn state_tensors(c: &Cascade) -> Vec<TensorId> {
    let mut out: Vec<TensorId> = c
        .einsums
        .iter()
        .filter(|e| e.output.indices.iter().any(|i| i.shifted_var().is_some()))
        .map(|e| e.output.tensor)
        .collect();
    out.sort();
    out.dedup();
    out
}

fn read_before_write(c: &Cascade, errors: &mut Vec<VerifyError>) {
    let mut state = vec![false; c.tensors.len()];
    for t in state_tensors(c) {
        state[t.index()] = true;
    }
    let writers = c.writers();
    let mut written: Vec<bool> = c
        .tensors
        .iter()
        .map(|t| t.kind == TensorKind::Input)
        .collect();
    let ever_written: Vec<bool> = c
        .tensors
        .iter()
        .enumerate()
        .map(|(i, t)| {
            t.kind == TensorKind::Input || !writers.of_tensor(TensorId(i as u32)).is_empty()
        })
        .collect();
    for id in c.einsum_ids() {
        for (n, a) in einsum_accesses(c, id).into_iter().enumerate().skip(1) {
            let t = a.tensor;
            if state[t.index()] {
                // Reading the state of an earlier iteration needs `init` (`iterative_state`);
                // reading this iteration's new state needs its update to come first.
                if later_update(c, writers.of_tensor(t), id, a).is_some() {
                    errors.push(VerifyError::ReadBeforeWrite {
                        at: Location::Einsum {
                            einsum: id,
                            access: Some(n),
                        },
                        tensor: t,
                        tensor_name: c.tensor(t).name.clone(),
                    });
                }
                continue;
            }
            if written[t.index()] {
                continue;
            }
            let at = Location::Einsum {
                einsum: id,
                access: Some(n),
            };
            let tensor_name = c.tensor(t).name.clone();
            errors.push(if ever_written[t.index()] {
                VerifyError::ReadBeforeWrite {
                    at,
                    tensor: t,
                    tensor_name,
                }
            } else {
                VerifyError::NeverWritten {
                    at,
                    tensor: t,
                    tensor_name,
                }
            });
        }
        let out = c.einsum(id).output.tensor;
        if c.tensor(out).kind == TensorKind::Input {
            errors.push(VerifyError::InputWritten {
                at: Location::Einsum {
                    einsum: id,
                    access: Some(0),
                },
                tensor: out,
                tensor_name: c.tensor(out).name.clone(),
            });
        }
        written[out.index()] = true;
    }
}

/// An Einsum after `reader` that updates the state `read` sees at the same step (`S[r+k]`
/// written at `r+k`, read at `r+j` with `j >= k`).
fn later_update(
    c: &Cascade,
    writers: &[EinsumId],
    reader: EinsumId,
    read: &Access,
) -> Option<EinsumId> {
    use crate::graph::offset;
    writers.iter().copied().filter(|p| *p > reader).find(|p| {
        let w = &c.einsum(*p).output;
        w.tensor == read.tensor
            && w.indices.iter().zip(&read.indices).any(|(wi, ri)| {
                matches!((wi.shifted_var(), offset(wi), offset(ri)),
                    (Some(_), Some((wr, wk)), Some((rr, rk))) if wr == rr && rk >= wk)
            })
    })
}

fn iterative_state(c: &Cascade, errors: &mut Vec<VerifyError>) {
    let writers = c.writers();
    let mut reported: Vec<(TensorId, RankId)> = Vec::new();
    for id in c.einsum_ids() {
        let out = &c.einsum(id).output;
        for (pos, idx) in out.indices.iter().enumerate() {
            let Some(rank) = idx.shifted_var() else {
                continue;
            };
            if reported.contains(&(out.tensor, rank)) {
                continue;
            }
            let initialised = writers.of_tensor(out.tensor).iter().any(|w| {
                let e = c.einsum(*w);
                e.section == Section::Init
                    && e.output.tensor == out.tensor
                    && e.output.indices.get(pos) == Some(&IndexExpr::Lit(0))
            });
            if !initialised {
                reported.push((out.tensor, rank));
                errors.push(VerifyError::MissingInit {
                    at: Location::Einsum {
                        einsum: id,
                        access: Some(0),
                    },
                    tensor: out.tensor,
                    tensor_name: c.tensor(out.tensor).name.clone(),
                    rank,
                    rank_name: c.rank(rank).name.clone(),
                });
            }
        }
    }
    if c.stop.is_none()
        && let Some(&rank) = c.iterative_ranks().first()
    {
        errors.push(VerifyError::MissingStop {
            rank,
            rank_name: c.rank(rank).name.clone(),
        });
    }
}

fn reductions(c: &Cascade, errors: &mut Vec<VerifyError>) {
    for id in c.einsum_ids() {
        let Some(red) = &c.einsum(id).reduction else {
            continue;
        };
        let mut listed = red.ranks.clone();
        listed.sort();
        let reduced = c.reduced_ranks(id);
        if listed != reduced {
            let names = |rs: &[RankId]| {
                if rs.is_empty() {
                    "nothing".to_string()
                } else {
                    rs.iter()
                        .map(|r| c.var_name(*r))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            };
            errors.push(VerifyError::ReductionMismatch {
                at: Location::Einsum {
                    einsum: id,
                    access: None,
                },
                listed: names(&listed),
                reduced: names(&reduced),
            });
        }
    }
}

fn cycles(c: &Cascade, errors: &mut Vec<VerifyError>) {
    let g = crate::graph::dependency_graph(c);
    for group in g.cycles() {
        let einsums_text = group
            .iter()
            .map(|e| c.tensor(c.einsum(*e).output.tensor).name.clone())
            .collect::<Vec<_>>()
            .join(", ");
        let tensors_text = g
            .cycle_tensors(&group)
            .iter()
            .map(|t| format!("`{}`", c.tensor(*t).name))
            .collect::<Vec<_>>()
            .join(", ");
        errors.push(VerifyError::Cycle {
            einsums: group,
            einsums_text: format!("writing {einsums_text}"),
            tensors_text,
        });
    }
}

fn unused_ranks(c: &Cascade, errors: &mut Vec<VerifyError>) {
    for (i, used) in used_ranks(c).into_iter().enumerate() {
        if !used {
            errors.push(VerifyError::UnusedRank {
                rank: RankId(i as u32),
                name: c.ranks[i].name.clone(),
            });
        }
    }
}

/// Whether each declared rank is used: named by a tensor, an access, a reduction, a size
/// constant or the stop condition, or the range of a used second variable, or the parent of
/// a used split part.
pub fn used_ranks(c: &Cascade) -> Vec<bool> {
    let mut named: Vec<RankId> = Vec::new();
    for t in &c.tensors {
        named.extend(&t.ranks);
    }
    for id in c.einsum_ids() {
        for a in einsum_accesses(c, id) {
            access_ranks(a, &mut named);
        }
        named.extend(
            c.einsum(id)
                .reduction
                .iter()
                .flat_map(|r| r.ranks.iter().copied()),
        );
    }
    for e in &c.exprs {
        if let Expr::Const(Constant::InvSqrtSize(r)) = e {
            named.push(*r);
        }
    }
    if let Some(stop) = &c.stop {
        index_ranks(&stop.lhs, &mut named);
        index_ranks(&stop.rhs, &mut named);
    }
    let mut used = vec![false; c.ranks.len()];
    for r in named {
        used[r.index()] = true;
    }
    // An inner rank is used when its second variable is (its range is), and a split parent
    // when either of its parts is.
    for (t, r) in c.ranks.iter().enumerate() {
        if let Some(inner) = r.range_of
            && used[t]
        {
            used[inner.index()] = true;
        }
    }
    for (p, r) in c.ranks.iter().enumerate() {
        if let Some((o, i)) = r.split
            && (used[o.index()] || used[i.index()])
        {
            used[p] = true;
        }
    }
    used
}

fn outputs(c: &Cascade, errors: &mut Vec<VerifyError>) {
    if c.outputs.is_empty() {
        errors.push(VerifyError::NoOutputs);
    }
    let writers = c.writers();
    for (n, t) in c.outputs.iter().enumerate() {
        let written = c.tensor(*t).kind == TensorKind::Input || !writers.of_tensor(*t).is_empty();
        if !written {
            errors.push(VerifyError::OutputNeverWritten {
                output: n,
                tensor: *t,
                tensor_name: c.tensor(*t).name.clone(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{dsl, library};

    fn errors(src: &str) -> Vec<VerifyError> {
        let parsed = dsl::parse(src, "t.cascade")
            .unwrap_or_else(|d| panic!("{}", d.render(src, "t.cascade", false)));
        verify(&parsed.cascade)
    }

    fn messages(src: &str) -> Vec<String> {
        errors(src).iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn library_cascades_verify_clean() {
        for (name, src) in library::FILES {
            let c = dsl::parse(src, name).unwrap().cascade;
            assert_eq!(verify(&c), vec![], "{name}");
        }
    }

    #[test]
    fn index_rank_sees_through_shifts_and_splits() {
        let c = dsl::parse(library::source("attention_1pass").unwrap(), "a")
            .unwrap()
            .cascade;
        let bk = &c.einsums[0];
        let k_read = c.accesses(bk.value)[0];
        assert_eq!(index_rank(&c, &k_read.indices[1]), c.rank_by_name("M"));
        assert_eq!(index_rank(&c, &IndexExpr::Lit(0)), None);
    }

    #[test]
    fn reports_unused_rank_and_missing_output() {
        let msgs = messages("cascade t\nranks M N\ninput A[M]\nX[m] = A[m]\noutput Y\n");
        assert_eq!(
            msgs,
            [
                "rank `N` is declared but never used",
                "output `Y` is never written"
            ]
        );
    }

    #[test]
    fn reports_rank_and_arity_mismatch() {
        let errs =
            errors("cascade t\nranks M P\ninput A[M,P]\nX[m,p] = A[p,m]\nY[m] = X[m]\noutput Y\n");
        assert!(
            matches!(&errs[0], VerifyError::RankMismatch { position: 0, expected, found, .. } if expected == "M" && found == "P"),
            "{errs:?}"
        );
        assert!(
            errs.iter().any(|e| matches!(
                e,
                VerifyError::ArityMismatch {
                    expected: 2,
                    found: 1,
                    ..
                }
            )),
            "{errs:?}"
        );
    }

    #[test]
    fn reports_read_before_write_and_cycle() {
        let errs =
            errors("cascade t\nranks M\ninput A[M]\nX[m] = Y[m]\nY[m] = X[m] + A[m]\noutput Y\n");
        assert!(
            matches!(errs[0], VerifyError::ReadBeforeWrite { .. }),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| matches!(e, VerifyError::Cycle { einsums, .. } if einsums.len() == 2)),
            "{errs:?}"
        );
    }

    #[test]
    fn reports_missing_init_and_stop() {
        let msgs =
            messages("cascade t\nranks K\ninput A[K]\nS[k+1] = S[k] + A[k]\nZ = S[K]\noutput Z\n");
        assert_eq!(
            msgs,
            [
                "iterative state `S` (rank K) is never initialised",
                "rank K is iterative but the cascade has no stop condition"
            ]
        );
    }

    #[test]
    fn reports_input_written_never_written_and_reduction_mismatch() {
        let msgs = messages(
            "cascade t\nranks M P\ninput A[M,P]\nA[m,p] = B[m,p]\nX[p] = max(p) A[m,p]\noutput X\n",
        );
        assert!(
            msgs.contains(&"input `A` is written by an Einsum".to_string()),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.contains("`B` is read but no Einsum writes it")),
            "{msgs:?}"
        );
        assert!(
            msgs.contains(&"the reduction lists p but the Einsum reduces m".to_string()),
            "{msgs:?}"
        );
    }

    #[test]
    fn reading_new_state_before_its_update_is_read_before_write() {
        let src = "cascade t\nranks K\ninput A[K]\ninit\nS[0] = 0\neinsums\nX[k] = S[k+1] * A[k]\nS[k+1] = S[k] + A[k]\nZ = S[K]\nstop k >= K\noutput Z X\n";
        let errs = errors(src);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            matches!(
                &errs[0],
                VerifyError::ReadBeforeWrite {
                    at: Location::Einsum {
                        einsum: EinsumId(1),
                        access: Some(1)
                    },
                    ..
                }
            ),
            "{errs:?}"
        );
        // Reading the previous step's state before the update is the normal pattern.
        let ok = src.replace("X[k] = S[k+1]", "X[k] = S[k]");
        assert_eq!(errors(&ok), vec![]);
    }

    #[test]
    fn dangling_ids_are_reported_not_panicked_on() {
        let mut c = dsl::parse(library::source("attention_3pass").unwrap(), "a")
            .unwrap()
            .cascade;
        c.outputs.push(TensorId(99));
        c.einsums[0].output.indices[0] = IndexExpr::Var(RankId(42));
        let errs = verify(&c);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs.iter().all(|e| matches!(e, VerifyError::BadId { .. })));
    }

    #[test]
    fn a_second_variable_built_in_code_must_belong_to_one_split() {
        let src = "cascade t\nranks E M\nsplit M -> M1 M0 N0\ninput A[E,M]\n\
                   S[e,m1,m0,n0] = A[e, m1*M0+m0] * A[e, m1*M0+n0]\noutput S\n";
        let c = dsl::check(src, "t").expect("verifies").cascade;
        let id = |n: &str| c.rank_by_name(n).unwrap();
        let stray = |c: &Cascade| -> Vec<String> {
            verify(c)
                .iter()
                .filter(|e| matches!(e, VerifyError::StraySecondVariable { .. }))
                .map(|e| e.to_string())
                .collect()
        };
        // Over a rank that is no split's inner part.
        let mut over_e = c.clone();
        over_e.ranks[id("N0").index()].range_of = Some(id("E"));
        assert_eq!(
            stray(&over_e),
            [
                "rank `N0` is a second variable over `E`, which is not the inner part of a split whose only second variable it is"
            ]
        );
        // Two over the same inner rank: the printer could write only one of them.
        let mut two = c.clone();
        two.ranks[id("E").index()].range_of = Some(id("M0"));
        assert_eq!(stray(&two).len(), 1, "{:?}", stray(&two));
    }

    #[test]
    fn diagnostics_point_at_the_access() {
        let src = "cascade t\nranks M P\ninput A[M,P]\nX[m,p] = A[p,m]\noutput X\n";
        let parsed = dsl::parse(src, "t").unwrap();
        let d = dsl::verify_diagnostics(&parsed);
        assert_eq!(&src[d.0[0].span.clone()], "A[p,m]");
    }

    #[test]
    fn a_long_chain_checks_lints_and_prints_without_deep_recursion() {
        let n = 30_000;
        let mut src = String::from("cascade chain\nranks M P\ninput A[M,P]\nT0[m,p] = A[m,p]\n");
        for i in 1..n {
            src.push_str(&format!(
                "T{i}[m,p : m <= p] = T{}[m,p] *{{&}} A[m,p]\n",
                i - 1
            ));
        }
        src.push_str(&format!("output T{}\n", n - 1));
        let parsed = dsl::check(&src, "chain").expect("verifies");
        assert!(crate::lint::lint(&parsed.cascade).is_empty());
        let printed = dsl::print(&parsed.cascade);
        assert_eq!(printed.lines().count(), n + 6);
        let plan = crate::plan::LoopPlan::new(&parsed.cascade);
        let last = plan.placement(EinsumId(n as u32 - 1));
        assert_eq!(
            last.space.guard.len(),
            1,
            "one m <= p, however long the chain"
        );
    }

    #[test]
    fn expressions_deeper_than_the_limit_are_refused() {
        let mut c = dsl::parse(library::source("attention_3pass").unwrap(), "a")
            .unwrap()
            .cascade;
        let mut deep = IndexExpr::Var(RankId(0));
        for _ in 0..MAX_INDEX_DEPTH {
            deep = IndexExpr::Add(Box::new(deep), Box::new(IndexExpr::Lit(0)));
        }
        c.einsums[0].output.indices[0] = deep;
        let errs = verify(&c);
        assert!(
            matches!(&errs[..], [VerifyError::TooDeep { depth, .. }] if *depth == MAX_INDEX_DEPTH + 1),
            "{errs:?}"
        );
    }
}
