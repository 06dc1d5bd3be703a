//! Epochs and the loop nest: the tile lag of every per-tile Einsum, the order in which each unit
//! takes its work in one epoch, the drain stalls, and the loops around it all, as data the
//! cycle engine, the reports and the tests read.
//!
//! A tile's work flows from unit to unit; each hop is one tile of lag. Interleaving runs the
//! heaviest Einsum of the oldest tile first in the tile unit's epoch (FuseMax's
//! `SLNV[b] | BQK[d]`); if it reads a same-unit producer of the same tile, that producer now
//! comes later in the epoch, so the interleaved Einsum works one tile further back (b < c in the
//! reference's epoch) and everything downstream moves with it. Without interleaving, a spatial
//! reduction on the tile unit drains the array (`rows` cycles) before its result is used there.

use std::collections::BTreeMap;
use std::fmt;

use super::EinsumPlan;
use super::buffer::Placed;
use super::roles::Analysis;
use crate::arch::{ArchSpec, UnitId};

/// One Einsum's place in an epoch: it works on tile `t - lag` in epoch `t`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochItem {
    /// Index into [`super::Schedule::einsums`].
    pub einsum: usize,
    pub name: String,
    pub lag: u32,
}

impl fmt::Display for EpochItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.lag {
            0 => write!(f, "{}[t]", self.name),
            s => write!(f, "{}[t-{s}]", self.name),
        }
    }
}

/// One unit's work in one epoch: slots in order, each one Einsum or two interleaved cycle by
/// cycle (`(SLNV[t-3] | BQK[t])`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Epoch {
    pub unit: UnitId,
    pub slots: Vec<Vec<EpochItem>>,
}

impl Epoch {
    /// The Einsums in the order the unit takes them: in each slot the interleaved (oldest)
    /// one first.
    pub fn order(&self) -> impl Iterator<Item = &EpochItem> {
        self.slots.iter().flatten()
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, slot) in self.slots.iter().enumerate() {
            if i > 0 {
                f.write_str(" → ")?;
            }
            match slot.as_slice() {
                [one] => write!(f, "{one}")?,
                many => {
                    let parts: Vec<String> = many.iter().map(ToString::to_string).collect();
                    write!(f, "({})", parts.join(" | "))?;
                }
            }
        }
        Ok(())
    }
}

/// One loop of the nest around a phase's work, outermost first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loop {
    /// The loop variable: `p2`, `m1`, `pass`, `p0`, …
    pub var: String,
    pub extent: u64,
    /// Spread over PEs rather than iterated in time.
    pub spatial: bool,
}

impl fmt::Display for Loop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.spatial { "par" } else { "for" };
        write!(f, "{kind} {} in 0..{}", self.var, self.extent)
    }
}

/// The loops of a phase, and the Einsums that run once per query tile after the key loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopNest {
    pub loops: Vec<Loop>,
    pub once_per_query_tile: Vec<String>,
}

impl LoopNest {
    /// The temporal loops outside the array, outermost first (`["p2", "m1", "p1"]`): the
    /// mapping file's `order`.
    pub fn order(&self) -> Vec<String> {
        self.loops
            .iter()
            .filter(|l| !l.spatial && !l.var.ends_with('0'))
            .map(|l| l.var.clone())
            .collect()
    }

    /// One line per loop, as the reports print it.
    pub fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.loops.iter().map(ToString::to_string).collect();
        if !self.once_per_query_tile.is_empty() {
            lines.push(format!(
                "then per query tile: {}",
                self.once_per_query_tile.join(", ")
            ));
        }
        lines
    }
}

/// What the epoch stage lays out for one phase.
pub(crate) struct Laid {
    pub stall_per_tile: u64,
    pub stages: u32,
    pub epochs: Vec<Epoch>,
    pub loops: LoopNest,
}

pub(crate) fn lay_out(
    a: &Analysis<'_>,
    arch: &ArchSpec,
    members: &[usize],
    plans: &mut [EinsumPlan],
    placed: &Placed,
) -> Laid {
    let per_tile: Vec<usize> = members
        .iter()
        .copied()
        .filter(|&x| plans[x].per_key_tile)
        .collect();
    let (stage, drains, interleaved) = stages(a, arch, &per_tile, plans);
    for (&x, &s) in &stage {
        plans[x].stage = s;
    }
    let tile_unit = arch.tile_unit();
    let drain_count = per_tile
        .iter()
        .filter(|&&x| plans[x].unit == tile_unit)
        .map(|x| drains[x])
        .max()
        .unwrap_or(0);
    let stall_per_tile = if arch.interleave() {
        0
    } else {
        drain_count * arch.unit(tile_unit).rows()
    };
    Laid {
        stall_per_tile,
        stages: stage.values().copied().max().unwrap_or(0),
        epochs: epochs(arch, &per_tile, plans, interleaved),
        loops: loop_nest(a, members, plans, placed),
    }
}

type Stages = (BTreeMap<usize, u32>, BTreeMap<usize, u64>, Option<usize>);

/// The stage (tile lag) of each per-tile Einsum and the chain of array drains it waits for,
/// and the Einsum the tile unit interleaves, if any.
fn stages(a: &Analysis<'_>, arch: &ArchSpec, per_tile: &[usize], plans: &[EinsumPlan]) -> Stages {
    let tile_unit = arch.tile_unit();
    let r = a.roles;
    // Stages at least `floor`: one more tile per hop between units.
    let assign = |floor: &BTreeMap<usize, u32>| {
        let mut stage: BTreeMap<usize, u32> = BTreeMap::new();
        let mut drains: BTreeMap<usize, u64> = BTreeMap::new();
        for &x in per_tile {
            let mut s = floor.get(&x).copied().unwrap_or(0);
            let mut d = 0;
            for &dep in &a.deps[x] {
                if let (Some(&sd), Some(&dd)) = (stage.get(&dep), drains.get(&dep)) {
                    s = s.max(sd + u32::from(plans[dep].unit != plans[x].unit));
                    // A spatial reduction on the tile unit must drain the array before its
                    // result can be used again on that unit.
                    let drain = plans[dep].unit == tile_unit
                        && r.split
                        && r.key_spatial.is_some_and(|k| a.reduced[dep].contains(&k));
                    d = d.max(dd + u64::from(drain));
                }
            }
            stage.insert(x, s);
            drains.insert(x, d);
        }
        (stage, drains)
    };
    let (mut stage, mut drains) = assign(&BTreeMap::new());
    let interleaved = if arch.interleave() {
        let on_tile: Vec<usize> = per_tile
            .iter()
            .copied()
            .filter(|&x| plans[x].unit == tile_unit)
            .collect();
        let lo = on_tile.iter().map(|x| stage[x]).min();
        let hi = on_tile.iter().map(|x| stage[x]).max();
        on_tile
            .iter()
            .copied()
            .filter(|x| lo != hi && Some(stage[x]) == hi)
            .max_by_key(|&x| (plans[x].cycles, std::cmp::Reverse(x)))
    } else {
        None
    };
    if let Some(heavy) = interleaved {
        let reads_same_tile = a.deps[heavy]
            .iter()
            .any(|d| plans[*d].unit == tile_unit && stage.get(d) == Some(&stage[&heavy]));
        if reads_same_tile {
            let floor = BTreeMap::from([(heavy, stage[&heavy] + 1)]);
            (stage, drains) = assign(&floor);
        }
    }
    (stage, drains, interleaved)
}

/// Per unit with per-tile work: its Einsums by stage, the interleaved one sharing the first
/// slot with the newest tile's work.
fn epochs(
    arch: &ArchSpec,
    per_tile: &[usize],
    plans: &[EinsumPlan],
    interleaved: Option<usize>,
) -> Vec<Epoch> {
    let mut units: Vec<UnitId> = per_tile.iter().map(|&x| plans[x].unit).collect();
    units.sort();
    units.dedup();
    let item = |x: usize| EpochItem {
        einsum: x,
        name: plans[x].name.clone(),
        lag: plans[x].stage,
    };
    units
        .into_iter()
        .map(|u| {
            let mut items: Vec<usize> = per_tile
                .iter()
                .copied()
                .filter(|&x| plans[x].unit == u)
                .collect();
            items.sort_by_key(|&x| (plans[x].stage, x));
            let mut slots: Vec<Vec<EpochItem>> = items.iter().map(|&x| vec![item(x)]).collect();
            if let Some(heavy) = interleaved.filter(|_| u == arch.tile_unit()) {
                let pos = items.iter().position(|&x| x == heavy).expect("present");
                slots.remove(pos);
                slots[0].insert(0, item(heavy));
            }
            Epoch { unit: u, slots }
        })
        .collect()
}

/// The loop variables of the key tiles and of the keys inside one, as loop nests and mapping
/// files name them: a user's split (`m1`, `m0` of `split M -> M1 M0`), else the key rank's
/// variable with `1` and `0` appended.
pub(crate) fn key_tile_vars(a: &Analysis<'_>) -> (String, String) {
    let r = a.roles;
    let key = r.key.map_or_else(|| "m".to_string(), |k| a.var(k));
    if r.split {
        (
            a.var(r.key_temporal.expect("split")),
            a.var(r.key_spatial.expect("split")),
        )
    } else {
        (format!("{key}1"), format!("{key}0"))
    }
}
/// The loops around the phase: query-tile groups, resident query tiles, passes and key tiles,
/// then the array's columns and rows.
fn loop_nest(
    a: &Analysis<'_>,
    members: &[usize],
    plans: &[EinsumPlan],
    placed: &Placed,
) -> LoopNest {
    let r = a.roles;
    let part = &placed.partition;
    let q = r.primary.map(|p| a.var(p));
    let (kt, ks) = key_tile_vars(a);
    let time = |var: String, extent: u64| Loop {
        var,
        extent,
        spatial: false,
    };
    let mut loops = Vec::new();
    if let Some(q) = &q {
        loops.push(time(format!("{q}2"), part.p2));
    }
    if placed.passes > 1 || placed.query_outer {
        if let Some(q) = &q {
            loops.push(time(format!("{q}1"), part.p1));
        }
        if placed.passes > 1 {
            loops.push(time("pass".into(), u64::from(placed.passes)));
        }
        loops.push(time(kt, part.m1));
    } else {
        loops.push(time(kt, part.m1));
        if let Some(q) = &q {
            loops.push(time(format!("{q}1"), part.p1));
        }
    }
    if let Some(q) = &q {
        loops.push(Loop {
            var: format!("{q}0"),
            extent: part.p0,
            spatial: true,
        });
    }
    loops.push(Loop {
        var: ks,
        extent: part.m0,
        spatial: r.key_parallel,
    });
    LoopNest {
        loops,
        once_per_query_tile: members
            .iter()
            .filter(|&&x| !plans[x].per_key_tile)
            .map(|&x| plans[x].name.clone())
            .collect(),
    }
}
