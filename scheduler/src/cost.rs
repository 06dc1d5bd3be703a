//! Hardware costs per op kind, derived from an architecture, for cost-aware rewriting.
//!
//! The rewriter prices a cascade by its op counts; these weights say what one op of each kind
//! costs on each unit (cycles of one PE and energy from the cost table).

use std::collections::BTreeMap;

use cascade_ir::ops::OpKind;

use crate::arch::ArchSpec;

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
pub fn op_costs(arch: &ArchSpec) -> BTreeMap<String, BTreeMap<OpKind, OpCost>> {
    let table = arch.costs();
    arch.units()
        .iter()
        .map(|unit| {
            let ops = unit
                .ops()
                .iter()
                .map(|(&kind, imp)| {
                    let energy_pj = imp
                        .actions()
                        .iter()
                        .map(|(action, &n)| n as f64 * table.energy_pj(action).unwrap_or(0.0))
                        .sum();
                    let cycles = imp.cycles() as f64;
                    (
                        kind,
                        OpCost {
                            cycles,
                            unit_cycles: cycles / unit.pes() as f64,
                            energy_pj,
                        },
                    )
                })
                .collect();
            (unit.name().to_string(), ops)
        })
        .collect()
}
