//! The architecture, cost and workload files shipped in `arch-configs/`, embedded at build time
//! so that `--arch fusemax` works from any directory.

/// Shipped architectures: (name, TOML text), sorted by name.
pub const ARCHS: &[(&str, &str)] = &[
    ("flat", include_str!("../../arch-configs/flat.toml")),
    ("fusemax", include_str!("../../arch-configs/fusemax.toml")),
    (
        "fusemax-cascade-on-flat",
        include_str!("../../arch-configs/fusemax-cascade-on-flat.toml"),
    ),
    (
        "fusemax-no-interleave",
        include_str!("../../arch-configs/fusemax-no-interleave.toml"),
    ),
    ("unfused", include_str!("../../arch-configs/unfused.toml")),
];

/// Shipped cost tables: (name, TOML text).
pub const COSTS: &[(&str, &str)] = &[(
    "accelergy-45nm",
    include_str!("../../arch-configs/costs/accelergy-45nm.toml"),
)];

/// The shipped workload set of the FuseMax evaluation (the default).
pub const WORKLOADS: &str = include_str!("../../arch-configs/workloads/transformers.toml");

/// Every shipped workload set: (name, TOML text). `transformers` is FuseMax's four encoders,
/// `llm` today's decoder models in prefill and decode.
pub const WORKLOAD_SETS: &[(&str, &str)] = &[
    ("llm", include_str!("../../arch-configs/workloads/llm.toml")),
    ("transformers", WORKLOADS),
];

/// Shipped systems of chips: (name, TOML text), sorted by name.
pub const SYSTEMS: &[(&str, &str)] = &[
    (
        "ring-fusemax",
        include_str!("../../arch-configs/systems/ring-fusemax.toml"),
    ),
    (
        "splitk-fusemax",
        include_str!("../../arch-configs/systems/splitk-fusemax.toml"),
    ),
    (
        "tokenring-fusemax",
        include_str!("../../arch-configs/systems/tokenring-fusemax.toml"),
    ),
    (
        "ulysses-fusemax",
        include_str!("../../arch-configs/systems/ulysses-fusemax.toml"),
    ),
];

/// A shipped system's text by name.
pub fn system(name: &str) -> Option<&'static str> {
    SYSTEMS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// Parses and validates a shipped system; its chip must be a shipped architecture.
pub fn load_system(
    name: &str,
) -> Option<Result<crate::system::SystemSpec, Vec<crate::ConfigError>>> {
    let text = system(name)?;
    let raw = match crate::system::RawSystem::from_toml(text) {
        Ok(raw) => raw,
        Err(e) => return Some(Err(vec![e])),
    };
    Some(crate::system::SystemSpec::new(raw, &shipped_chip))
}

/// A shipped architecture as a system's chip.
pub fn shipped_chip(name: &str) -> Result<crate::ArchSpec, String> {
    match load_arch(name) {
        Some(Ok(arch)) => Ok(arch),
        Some(Err(errs)) => Err(errs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")),
        None => Err(format!(
            "is not a shipped architecture; use one of {}",
            ARCHS.iter().map(|a| a.0).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// A shipped workload set's text by name.
pub fn workload_set(name: &str) -> Option<&'static str> {
    WORKLOAD_SETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
}

/// A shipped architecture's text by name.
pub fn arch(name: &str) -> Option<&'static str> {
    ARCHS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// A shipped cost table's text by name.
pub fn costs(name: &str) -> Option<&'static str> {
    COSTS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// Parses and validates a shipped architecture with its cost table.
pub fn load_arch(name: &str) -> Option<Result<crate::ArchSpec, Vec<crate::ConfigError>>> {
    let text = arch(name)?;
    Some(parse_arch(text, |table| costs(table).map(str::to_string)))
}

/// Parses an architecture's text, finding its cost table through `costs_text(name)`.
pub fn parse_arch(
    text: &str,
    costs_text: impl FnOnce(&str) -> Option<String>,
) -> Result<crate::ArchSpec, Vec<crate::ConfigError>> {
    let raw = crate::RawArch::from_toml(text).map_err(|e| vec![e])?;
    let table = raw.costs.clone().unwrap_or_else(|| COSTS[0].0.to_string());
    let Some(costs) = costs_text(&table) else {
        return Err(vec![crate::ConfigError::Field {
            field: "costs".into(),
            problem: format!(
                "names cost table `{table}`, which was not found; shipped tables: {}",
                COSTS.iter().map(|c| c.0).collect::<Vec<_>>().join(", ")
            ),
        }]);
    };
    let costs = crate::RawCosts::from_toml(&costs).map_err(|e| vec![e])?;
    crate::ArchSpec::new(raw, costs)
}

/// The shipped default workload set, validated.
pub fn load_workloads() -> Result<crate::Workloads, Vec<crate::ConfigError>> {
    load_workload_set("transformers").expect("shipped")
}

/// A shipped workload set by name, validated.
pub fn load_workload_set(name: &str) -> Option<Result<crate::Workloads, Vec<crate::ConfigError>>> {
    let text = workload_set(name)?;
    Some(
        crate::RawWorkloads::from_toml(text)
            .map_err(|e| vec![e])
            .and_then(crate::Workloads::new),
    )
}
