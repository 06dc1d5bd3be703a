//! How the fused kernel reads `Q`, `K`, `V` and writes each output: the feature dimension
//! (`E` or `F`) first, so rows are contiguous for 16-byte copies; one sequence dimension indexed
//! by the query or key variable; and every other dimension indexed by head variables, either
//! plainly (`h`) or as the two parts of a split of that dimension's rank (`g*R+r` over
//! `split H -> G R`). Those forms are always inside their dimension, and distinct heads write
//! distinct output points, so no bounds proof is needed; any other index is refused. The
//! launcher derives each tensor's strides (per sequence step, per head variable, per batch
//! entry) from these indices and the tensor's layout.

use cascade_ir::{Cascade, IndexExpr, RankId, TensorId};

use super::M;

/// One tensor as the kernel addresses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorUse {
    pub tensor: TensorId,
    /// The index of each dimension over the kernel's variables.
    pub indices: Vec<IndexExpr>,
}

/// How one dimension is indexed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DimIndex {
    /// The plain variable of the dimension's rank.
    Var(RankId),
    /// `outer*|inner| + inner`, the dimension's rank being split into `(outer, inner)`.
    Split(RankId, RankId),
}

/// `idx` over dimension rank `rank` as a plain variable or a split of it.
pub fn dim_index(c: &Cascade, rank: RankId, idx: &IndexExpr) -> Option<DimIndex> {
    if *idx == IndexExpr::Var(rank) {
        return Some(DimIndex::Var(rank));
    }
    let (outer, inner) = c.rank(rank).split?;
    (*idx == IndexExpr::tiled(outer, inner)).then_some(DimIndex::Split(outer, inner))
}

impl TensorUse {
    /// Checks `indices` of `tensor` against the kernel's layout: `feature` at dimension 0,
    /// `seq` (when given) at exactly one dimension, every other dimension over head variables.
    pub fn new(
        c: &Cascade,
        tensor: TensorId,
        indices: Vec<IndexExpr>,
        feature: Option<RankId>,
        seq: Option<RankId>,
        heads: &[RankId],
    ) -> M<TensorUse> {
        let t = c.tensor(tensor);
        let name = &t.name;
        if indices.len() != t.ranks.len() {
            return Err(format!("{name} is read with the wrong number of indices"));
        }
        let mut dims = t.ranks.iter().zip(&indices).enumerate();
        if let Some(f) = feature {
            match dims.next() {
                Some((_, (r, i))) if *i == IndexExpr::Var(f) && *r == f => {}
                _ => {
                    return Err(format!(
                        "{name} does not have {} as its first (fastest) dimension, which the fused kernel copies 16 bytes at a time",
                        c.rank(f).name
                    ));
                }
            }
        }
        let mut seq_seen = false;
        for (_, (&r, i)) in dims {
            if let Some(s) = seq
                && *i == IndexExpr::Var(s)
                && r == s
            {
                if seq_seen {
                    return Err(format!("{name} is indexed by {} twice", c.var_name(s)));
                }
                seq_seen = true;
                continue;
            }
            match dim_index(c, r, i) {
                Some(DimIndex::Var(v)) if heads.contains(&v) => {}
                Some(DimIndex::Split(a, b)) if heads.contains(&a) && heads.contains(&b) => {}
                _ => {
                    return Err(format!(
                        "{name}[…{}…] is not indexed by a head variable the fused kernel iterates",
                        cascade_ir::dsl::print_index(c, i)
                    ));
                }
            }
        }
        if let Some(s) = seq
            && !seq_seen
        {
            return Err(format!("{name} is not indexed by {}", c.var_name(s)));
        }
        Ok(TensorUse { tensor, indices })
    }

    /// Every head variable appears in the indices (each head writes its own points).
    pub fn covers(&self, c: &Cascade, heads: &[RankId]) -> M<()> {
        let mut vars = Vec::new();
        for i in &self.indices {
            i.collect_vars(&mut vars);
        }
        match heads.iter().find(|h| !vars.contains(h)) {
            Some(h) => Err(format!(
                "{} is not indexed by {}: several heads would write the same point",
                c.tensor(self.tensor).name,
                c.var_name(*h)
            )),
            None => Ok(()),
        }
    }
}
