//! Hardware costs per op kind, derived from an architecture, for cost-aware rewriting.
//!
//! The rewriter prices a cascade by its op counts; these weights say what one op of each kind
//! costs on each unit (cycles of one PE and energy from the cost table). [`HardwareCost`] turns
//! them into the rewriter's [`CostModel`]: pricing only; the caller picks the metric.

use std::collections::BTreeMap;
use std::fmt;

use cascade_ir::ops::OpKind;
use cascade_ir::rewrite::CostModel;

use crate::arch::{ArchSpec, OpImpl, PointOp, UnitId};

/// The cost of one op of one kind on one unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpCost {
    /// Cycles one PE spends on the op.
    pub cycles: f64,
    /// Cycles per op when the whole unit works on independent points (`cycles / PEs`).
    pub unit_cycles: f64,
    /// Energy of the actions the op performs.
    pub energy_pj: f64,
}

/// Per unit name, the cost of every op kind that unit executes.
///
/// `other`, when the unit prices its functions one by one (`tanh`, `sigmoid`, … but no `other`),
/// costs what its most expensive such function costs: the rewriter counts kinds, not
/// functions, so this is an upper bound. Other kinds are the unit's own entries only (a unit
/// that prices `recip` but has no `div` does not divide).
pub fn op_costs(arch: &ArchSpec) -> BTreeMap<String, BTreeMap<OpKind, OpCost>> {
    let table = arch.costs();
    arch.units()
        .iter()
        .map(|unit| {
            let cost_of = |imp: &OpImpl| {
                let energy_pj = imp
                    .actions()
                    .iter()
                    .map(|(action, &n)| n as f64 * table.energy_pj(action).unwrap_or(0.0))
                    .sum();
                let cycles = imp.cycles() as f64;
                OpCost {
                    cycles,
                    unit_cycles: cycles / unit.pes() as f64,
                    energy_pj,
                }
            };
            let mut ops: BTreeMap<OpKind, OpCost> = BTreeMap::new();
            for (op, imp) in unit.ops() {
                let cost = cost_of(imp);
                match op {
                    PointOp::Kind(k) => {
                        ops.insert(*k, cost);
                    }
                    PointOp::Function(_)
                        if op.kind() == OpKind::Other && unit.op(OpKind::Other).is_none() =>
                    {
                        let slot = ops.entry(op.kind()).or_insert(cost);
                        if (cost.cycles, cost.energy_pj) > (slot.cycles, slot.energy_pj) {
                            *slot = cost;
                        }
                    }
                    PointOp::Function(_) => {}
                }
            }
            (unit.name().to_string(), ops)
        })
        .collect()
}

/// What a [`HardwareCost`] charges per op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Unit cycles per op: one PE's cycles spread over the unit's PEs ([`OpCost::unit_cycles`]).
    Cycles,
    /// Energy of the op's actions in pJ ([`OpCost::energy_pj`]).
    Energy,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::Cycles => "cycles",
            Metric::Energy => "energy",
        }
    }
}

/// The price of one op kind: the unit it is charged on and its cost there.
#[derive(Debug, Clone, PartialEq)]
pub struct KindPrice {
    pub unit: String,
    pub weight: f64,
}

/// Per-op-kind weights for the rewriter, priced on an architecture's units.
///
/// Extraction prices op kinds, not Einsums, so each kind is charged on the unit the binding
/// prefers for the bulk of the work: the tile unit when it executes the kind (tile-level
/// Einsums carry the `M × P` work), else the row unit, else the largest unit that does (the
/// binding's fallback). A kind no unit executes costs +∞, so extraction avoids it when an
/// alternative exists. Only compute is priced: register, buffer and DRAM traffic depend on the
/// schedule, which the rewriter does not know.
#[derive(Debug, Clone, PartialEq)]
pub struct HardwareCost {
    arch: String,
    metric: Metric,
    prices: BTreeMap<OpKind, KindPrice>,
}

impl HardwareCost {
    pub fn new(arch: &ArchSpec, metric: Metric) -> HardwareCost {
        let costs = op_costs(arch);
        let preferred = [arch.tile_unit(), arch.row_unit()];
        let mut prices = BTreeMap::new();
        for kind in OpKind::ALL {
            let has = |u: UnitId| costs[arch.unit(u).name()].contains_key(&kind);
            let unit = preferred.into_iter().find(|&u| has(u)).or_else(|| {
                arch.unit_ids()
                    .filter(|&u| has(u))
                    .max_by_key(|&u| (arch.unit(u).pes(), std::cmp::Reverse(u)))
            });
            let Some(unit) = unit else { continue };
            let name = arch.unit(unit).name();
            let cost = costs[name][&kind];
            let weight = match metric {
                Metric::Cycles => cost.unit_cycles,
                Metric::Energy => cost.energy_pj,
            };
            prices.insert(
                kind,
                KindPrice {
                    unit: name.to_string(),
                    weight,
                },
            );
        }
        HardwareCost {
            arch: arch.name().to_string(),
            metric,
            prices,
        }
    }

    pub fn arch(&self) -> &str {
        &self.arch
    }
    pub fn metric(&self) -> Metric {
        self.metric
    }
    /// The price of `kind`, or `None` when no unit executes it.
    pub fn price(&self, kind: OpKind) -> Option<&KindPrice> {
        self.prices.get(&kind)
    }
    /// The cost of one op of `kind` (+∞ when no unit executes it).
    pub fn weight(&self, kind: OpKind) -> f64 {
        self.prices.get(&kind).map_or(f64::INFINITY, |p| p.weight)
    }
    /// Op kinds no unit executes.
    pub fn unsupported(&self) -> Vec<OpKind> {
        OpKind::ALL
            .into_iter()
            .filter(|k| !self.prices.contains_key(k))
            .collect()
    }
}

impl CostModel for HardwareCost {
    fn op_cost(&self, kind: OpKind, count: f64) -> f64 {
        // No ops cost nothing, even of a kind no unit executes (∞ · 0 would be NaN).
        if count == 0.0 {
            0.0
        } else {
            self.weight(kind) * count
        }
    }
}

impl fmt::Display for HardwareCost {
    /// `hardware fusemax, cycles per op: mac 1.526e-5 (array2d), …, other unsupported`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.metric {
            Metric::Cycles => "unit cycles per op",
            Metric::Energy => "pJ per op",
        };
        write!(f, "hardware {}, {unit}:", self.arch)?;
        for (i, kind) in OpKind::ALL.into_iter().enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            match self.prices.get(&kind) {
                Some(p) => write!(f, "{sep}{kind} {:.4e} ({})", p.weight, p.unit)?,
                None => write!(f, "{sep}{kind} unsupported")?,
            }
        }
        Ok(())
    }
}
