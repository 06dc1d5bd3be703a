//! The launcher's size parameters and the statements that bind every rank's size from them,
//! shared by both lowerings so a cascade has one ABI whichever lowering it gets.
//!
//! Split sizes follow [`cascade_ir::shape::Shape::resolve`], the interpreter's definition: the
//! launcher takes the parent and the inner size, 0 for the inner size meaning "only the parent
//! was given" (inner = `gcd(parent, 64)`), and the outer size is `parent / inner`, which must
//! be exact.

use cascade_ir::shape::DEFAULT_TILE;
use cascade_ir::{Cascade, RankId, TensorKind};

use crate::TargetDialect;

/// Sizes the launcher takes, in order: every rank that is not the outer part of a split (plain
/// ranks, params and the inner rank of each split), in declaration order.
pub fn abi_sizes(c: &Cascade) -> Vec<RankId> {
    rank_ids(c)
        .filter(|&r| !is_split_outer(c, r) && c.rank(r).range_of.is_none())
        .collect()
}

/// Sizes the fused kernel takes besides the head dimension and the key and query counts: the
/// params and both parts of every split, in declaration order.
pub fn fused_kernel_sizes(c: &Cascade) -> Vec<RankId> {
    rank_ids(c)
        .filter(|&r| c.rank(r).is_param || split_parent(c, r).is_some())
        .collect()
}

/// Statements that bind every rank's size, `name(r)` naming where it is stored (assigned with
/// `declare` in front), from the launcher arguments named as the ranks. Each returns
/// `CASCADE_ERR_SHAPE` where the interpreter would refuse the shape.
pub fn size_setup(c: &Cascade, name: &dyn Fn(RankId) -> String, declare: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for r in abi_sizes(c) {
        if split_parent(c, r).is_some() {
            continue;
        }
        let (n, arg) = (name(r), &c.rank(r).name);
        lines.push(format!("{declare}{n} = {arg};"));
        lines.push(format!("if ({n} < 1) return CASCADE_ERR_SHAPE;"));
    }
    // Children are declared after their parent, so a nested split finds its parent bound.
    for (i, rank) in c.ranks.iter().enumerate() {
        let Some((outer, inner)) = rank.split else {
            continue;
        };
        let parent = name(RankId(i as u32));
        let (o, n) = (name(outer), name(inner));
        let arg = &c.rank(inner).name;
        lines.push(format!(
            "{declare}{n} = {arg} != 0 ? {arg} : cascade_gcd({parent}, {DEFAULT_TILE}LL);  // split {} -> {} {}",
            rank.name,
            c.rank(outer).name,
            c.rank(inner).name
        ));
        lines.push(format!(
            "if ({n} < 1 || {parent} % {n} != 0) return CASCADE_ERR_SHAPE;"
        ));
        lines.push(format!("{declare}{o} = {parent} / {n};"));
        // A second variable over the inner rank has its size (`split M -> M1 M0 N0`).
        if let Some(second) = c.second_variable(inner) {
            lines.push(format!(
                "{declare}{} = {n};  // {} ranges over {}",
                name(second),
                c.rank(second).name,
                c.rank(inner).name
            ));
        }
    }
    lines
}

/// One sentence stating the launcher's size parameters, for the generated header and README.
pub fn abi_note(c: &Cascade) -> String {
    let names: Vec<&str> = abi_sizes(c)
        .iter()
        .map(|&r| c.rank(r).name.as_str())
        .collect();
    let mut note = format!(
        "Sizes, after `batch`: {} (every size at least 1).",
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    );
    for rank in &c.ranks {
        if let Some((outer, inner)) = rank.split {
            let (o, i) = (&c.rank(outer).name, &c.rank(inner).name);
            note.push_str(&format!(
                " {i} is the inner size of `split {} -> {o} {i}`: it must divide {}, and 0 picks gcd({}, {DEFAULT_TILE}) as the interpreter does; {o} = {} / {i}.",
                rank.name, rank.name, rank.name, rank.name
            ));
            if let Some(second) = c.second_variable(inner) {
                note.push_str(&format!(" {} = {i}.", c.rank(second).name));
            }
        }
    }
    note
}

/// The split a rank is a part of: `(parent, is_outer)`.
fn split_parent(c: &Cascade, r: RankId) -> Option<(RankId, bool)> {
    c.ranks.iter().enumerate().find_map(|(i, p)| match p.split {
        Some((outer, inner)) if outer == r || inner == r => Some((RankId(i as u32), outer == r)),
        _ => None,
    })
}

fn is_split_outer(c: &Cascade, r: RankId) -> bool {
    split_parent(c, r).is_some_and(|(_, outer)| outer)
}

fn rank_ids(c: &Cascade) -> impl Iterator<Item = RankId> + '_ {
    (0..c.ranks.len() as u32).map(RankId)
}

/// The launcher's parameters, the same for both lowerings of a cascade: inputs and outputs in
/// declaration order, `batch`, the sizes ([`abi_sizes`]), then the target's workspace and
/// stream parameters.
pub fn abi_params(c: &Cascade, d: &TargetDialect) -> String {
    let mut params: Vec<String> = c
        .tensors
        .iter()
        .filter(|t| t.kind == TensorKind::Input)
        .map(|t| format!("const void* {}", t.name))
        .collect();
    params.extend(
        c.outputs
            .iter()
            .map(|&t| format!("void* {}", c.tensor(t).name)),
    );
    params.push("int batch".into());
    params.extend(
        abi_sizes(c)
            .iter()
            .map(|&r| format!("long long {}", c.rank(r).name)),
    );
    params.extend(d.workspace_params.map(String::from));
    params.extend(d.stream_param.map(String::from));
    params.join(", ")
}

/// `int batch, long long E, …`: the launcher's size parameters (the workspace query's whole
/// parameter list).
pub fn size_params(c: &Cascade) -> String {
    std::iter::once("int batch".to_string())
        .chain(
            abi_sizes(c)
                .iter()
                .map(|&r| format!("long long {}", c.rank(r).name)),
        )
        .collect::<Vec<_>>()
        .join(", ")
}

/// `batch, E, …`: the size parameters passed on.
pub fn size_args(c: &Cascade) -> String {
    std::iter::once("batch".to_string())
        .chain(abi_sizes(c).iter().map(|&r| c.rank(r).name.clone()))
        .collect::<Vec<_>>()
        .join(", ")
}
