//! The mapping: every choice a schedule makes about how a cascade runs on an architecture,
//! as a value and as a file a user can write (Timeloop keeps architecture, workload and mapping
//! apart the same way).
//!
//! A mapping says which unit runs each Einsum (`[binding]`), how big a tile is and which ranks
//! share the array's columns (`[tiles]`), per phase how many query tiles stay resident in the
//! buffer and the loop order (`[[phases]]`), and whether each pass-crossing tensor stays in the
//! buffer or goes to DRAM and whether an input bypasses the buffer (`[residency]`). The
//! scheduler proposes one ([`Mapping`], in every [`crate::Schedule`]); a file read into
//! [`MappingOverrides`] overrides any part of it, and a choice that cannot work makes the
//! schedule infeasible with the reason, never an error.
//!
//! ```toml
//! [binding]
//! BQK = "array2d"
//!
//! [tiles]
//! key_tile = 256        # keys per tile: the rows of the tile unit
//! query_tile = 256      # query columns per tile
//! columns = ["p"]       # ranks on the columns, outermost first
//!
//! [[phases]]
//! resident_query_tiles = 251
//! order = ["p2", "m1", "p1"]
//!
//! [residency]
//! QK = "buffer"         # or "dram": written once, read in each later pass
//! Q = "dram"            # an input: bypasses the buffer, read by every tile that needs it
//! A = "dram"            # a phase's output: written to DRAM past the buffer, read from there
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use crate::arch::{ArchSpec, ConfigError};
use crate::schedule::{EinsumPlan, Phase, Residency};

/// Where a pass-crossing tensor lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// In the global buffer: it must fit.
    Buffer,
    /// Written to DRAM and read back in each later pass.
    Dram,
}

impl Placement {
    pub fn name(self) -> &'static str {
        match self {
            Placement::Buffer => "buffer",
            Placement::Dram => "dram",
        }
    }
}

/// A mapping file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMapping {
    pub binding: Option<BTreeMap<String, String>>,
    pub tiles: Option<RawTiles>,
    pub phases: Option<Vec<RawPhase>>,
    pub residency: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTiles {
    pub key_tile: Option<i64>,
    pub query_tile: Option<i64>,
    pub columns: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPhase {
    /// The Einsums of the phase, as the scheduler printed them (checked when given).
    pub einsums: Option<Vec<String>>,
    pub resident_query_tiles: Option<i64>,
    pub order: Option<Vec<String>>,
}

impl RawMapping {
    pub fn from_toml(text: &str) -> Result<RawMapping, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Syntax {
            message: e.to_string().trim_end().to_string(),
        })
    }
}

/// One phase's part of a user's mapping.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PhaseOverrides {
    pub einsums: Option<Vec<String>>,
    pub resident_query_tiles: Option<u64>,
    pub loop_order: Option<Vec<String>>,
}

/// The choices a user's mapping makes; everything it leaves out the scheduler chooses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MappingOverrides {
    pub binding: BTreeMap<String, String>,
    pub key_tile: Option<u64>,
    pub query_tile: Option<u64>,
    pub columns: Option<Vec<String>>,
    pub phases: Vec<PhaseOverrides>,
    pub residency: BTreeMap<String, Placement>,
}

impl MappingOverrides {
    /// Checks a mapping file's values (positive sizes, known placements), returning every
    /// problem at once. Whether the choices fit a cascade and an architecture is the
    /// scheduler's to say.
    pub fn new(raw: RawMapping) -> Result<MappingOverrides, Vec<ConfigError>> {
        let mut errs = Vec::new();
        let positive = |v: Option<i64>, field: &str, errs: &mut Vec<ConfigError>| match v {
            Some(v) if (1..=1 << 40).contains(&v) => Some(v as u64),
            Some(v) => {
                errs.push(ConfigError::Field {
                    field: field.into(),
                    problem: format!("is {v}; it must be between 1 and 2^40"),
                });
                None
            }
            None => None,
        };
        let tiles = raw.tiles.unwrap_or_default();
        let key_tile = positive(tiles.key_tile, "tiles.key_tile", &mut errs);
        let query_tile = positive(tiles.query_tile, "tiles.query_tile", &mut errs);
        let phases = raw
            .phases
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(k, p)| PhaseOverrides {
                einsums: p.einsums,
                resident_query_tiles: positive(
                    p.resident_query_tiles,
                    &format!("phases[{k}].resident_query_tiles"),
                    &mut errs,
                ),
                loop_order: p.order,
            })
            .collect();
        let mut residency = BTreeMap::new();
        for (tensor, place) in raw.residency.unwrap_or_default() {
            match place.as_str() {
                "buffer" => {
                    residency.insert(tensor, Placement::Buffer);
                }
                "dram" => {
                    residency.insert(tensor, Placement::Dram);
                }
                other => errs.push(ConfigError::Field {
                    field: format!("residency.{tensor}"),
                    problem: format!("is `{other}`; use \"buffer\" or \"dram\""),
                }),
            }
        }
        if errs.is_empty() {
            Ok(MappingOverrides {
                binding: raw.binding.unwrap_or_default(),
                key_tile,
                query_tile,
                columns: tiles.columns,
                phases,
                residency,
            })
        } else {
            Err(errs)
        }
    }

    /// Parses and checks a mapping file's text.
    pub fn from_toml(text: &str) -> Result<MappingOverrides, Vec<ConfigError>> {
        MappingOverrides::new(RawMapping::from_toml(text).map_err(|e| vec![e])?)
    }

    /// The part of the mapping for phase `k`.
    pub fn phase(&self, k: usize) -> PhaseOverrides {
        self.phases.get(k).cloned().unwrap_or_default()
    }
}

/// Every choice of a schedule, in the mapping file's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// (Einsum, unit), in program order.
    pub binding: Vec<(String, String)>,
    pub key_tile: u64,
    pub query_tile: u64,
    pub columns: Vec<String>,
    pub phases: Vec<PhaseMapping>,
    /// Pass-crossing tensors and where they live, and the inputs that bypass the buffer.
    pub residency: Vec<(String, Placement)>,
}

/// One phase of a [`Mapping`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseMapping {
    pub einsums: Vec<String>,
    pub resident_query_tiles: u64,
    pub order: Vec<String>,
}

impl Mapping {
    pub(crate) fn of(
        arch: &ArchSpec,
        columns: Vec<String>,
        plans: &[EinsumPlan],
        phases: &[Phase],
    ) -> Mapping {
        let first = phases.first().map(|p| &p.partition);
        let mut residency = Vec::new();
        for phase in phases {
            for (name, res) in &phase.placements {
                let place = match res {
                    Residency::PassState { spill, .. } if *spill >= 1.0 => Placement::Dram,
                    Residency::PassState { .. } => Placement::Buffer,
                    Residency::Bypass { .. } => Placement::Dram,
                    _ => continue,
                };
                if !residency.iter().any(|(n, _)| n == name) {
                    residency.push((name.clone(), place));
                }
            }
        }
        Mapping {
            binding: plans
                .iter()
                .map(|e| (e.name.clone(), arch.unit(e.unit).name().to_string()))
                .collect(),
            key_tile: first.map_or(1, |p| p.m0),
            query_tile: first.map_or(1, |p| p.p0),
            columns,
            phases: phases
                .iter()
                .map(|p| PhaseMapping {
                    einsums: p.einsums.iter().map(|&x| plans[x].name.clone()).collect(),
                    resident_query_tiles: p.partition.p1,
                    order: p.loops.order(),
                })
                .collect(),
            residency,
        }
    }
}

impl fmt::Display for Mapping {
    /// The mapping file that reproduces the schedule.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[String]| {
            let items: Vec<String> = v.iter().map(|s| format!("\"{s}\"")).collect();
            format!("[{}]", items.join(", "))
        };
        writeln!(f, "[binding]")?;
        for (einsum, unit) in &self.binding {
            writeln!(f, "{einsum} = \"{unit}\"")?;
        }
        writeln!(f, "\n[tiles]")?;
        writeln!(f, "key_tile = {}", self.key_tile)?;
        writeln!(f, "query_tile = {}", self.query_tile)?;
        writeln!(f, "columns = {}", list(&self.columns))?;
        for p in &self.phases {
            writeln!(f, "\n[[phases]]")?;
            writeln!(f, "einsums = {}", list(&p.einsums))?;
            writeln!(f, "resident_query_tiles = {}", p.resident_query_tiles)?;
            writeln!(f, "order = {}", list(&p.order))?;
        }
        if !self.residency.is_empty() {
            writeln!(f, "\n[residency]")?;
            for (tensor, place) in &self.residency {
                writeln!(f, "{tensor} = \"{}\"", place.name())?;
            }
        }
        Ok(())
    }
}
