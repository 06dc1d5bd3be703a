//! Binding: the unit each body Einsum runs on, and its level relative to the array tile.
//!
//! The mapping's binding comes first, then the architecture's explicit bindings; otherwise an
//! Einsum over the tile (a key and a query rank) goes to the arch's tile unit and any other to
//! its row unit, and when that unit lacks one of its ops, to the largest unit that has them
//! all. An Einsum no unit can run, or a binding to a unit without its ops, is infeasible.

use crate::arch::{ArchSpec, PointOp, UnitId, einsum_ops};
use crate::mapping::MappingOverrides;

use super::roles::Analysis;
use super::{Infeasible, Level};

/// One body Einsum's unit, level and ops per point.
pub(crate) struct Bound {
    pub unit: UnitId,
    pub level: Level,
    pub ops: std::collections::BTreeMap<PointOp, u32>,
}

pub(crate) fn bind(
    a: &Analysis<'_>,
    arch: &ArchSpec,
    overrides: &MappingOverrides,
) -> Result<Vec<Bound>, Infeasible> {
    let c = a.cascade;
    let mut out = Vec::with_capacity(a.body.len());
    for (x, &id) in a.body.iter().enumerate() {
        let name = &c.tensor(c.einsum(id).output.tensor).name;
        let ops = einsum_ops(c, id);
        let level = match (a.has_key_spatial(x), a.roles.has_columns(&a.spaces[x])) {
            (true, true) => Level::Tile,
            (false, true) => Level::Row,
            (true, false) => Level::Key,
            (false, false) => Level::Scalar,
        };
        let chosen = match overrides.binding.get(name) {
            Some(unit) => match arch.unit_ids().find(|&u| arch.unit(u).name() == unit) {
                Some(u) => Some((u, "the mapping")),
                None => {
                    let names: Vec<&str> = arch.units().iter().map(|u| u.name()).collect();
                    return Err(Infeasible::new(format!(
                        "the mapping binds {name} to `{unit}`, which {} does not have; its units: {}",
                        arch.name(),
                        names.join(", ")
                    )));
                }
            },
            None => arch.explicit_binding(name).map(|u| (u, "the architecture")),
        };
        let unit = if let Some((u, by)) = chosen {
            if let Err(op) = arch.unit(u).cycles_per_point(&ops) {
                return Err(Infeasible::new(format!(
                    "{name} is bound to {} by {by}, which has no {op} op",
                    arch.unit(u).name()
                )));
            }
            u
        } else {
            let preferred = if level == Level::Tile {
                arch.tile_unit()
            } else {
                arch.row_unit()
            };
            if arch.unit(preferred).cycles_per_point(&ops).is_ok() {
                preferred
            } else {
                arch.unit_ids()
                    .filter(|&u| arch.unit(u).cycles_per_point(&ops).is_ok())
                    .max_by_key(|&u| (arch.unit(u).pes(), std::cmp::Reverse(u)))
                    .ok_or_else(|| {
                        let op = arch.unit(preferred).cycles_per_point(&ops).err();
                        let op = op.map_or_else(String::new, |o| o.to_string());
                        Infeasible::new(format!(
                            "no unit of {} executes `{op}`, which {name} needs",
                            arch.name()
                        ))
                    })?
            }
        };
        out.push(Bound { unit, level, ops });
    }
    Ok(out)
}
