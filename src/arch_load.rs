//! Finds architectures and workloads from command-line arguments: a shipped name or a path.
//!
//! Shipped files are embedded in the binary (`cascade_scheduler::shipped`), so `--arch fusemax`
//! works from any directory. A path is read from disk. The references inside an architecture
//! file are confined: its cost table (`costs = NAME`) is a shipped table, else the file
//! `costs/NAME.toml` beside it, and its cascade (`cascade = …`) a library cascade, else a file
//! under its directory; a name that would leave that directory (`../x`, `/etc/x`, a symbolic
//! link out) is refused without reading anything, so no error ever shows another file's text.

use std::fs;
use std::path::{Path, PathBuf};

use cascade_ir::Cascade;
use cascade_scheduler::{ArchSpec, ConfigError, Problem, RawArch, RawCosts, Workloads, shipped};

use cascade_cli::values;

use crate::files;
use crate::load;
use crate::output::UserError;

/// An architecture with the cascade it runs.
#[derive(Debug)]
pub struct LoadedArch {
    pub arch: ArchSpec,
    pub cascade: Cascade,
}

fn config_error(what: &str, errs: &[ConfigError]) -> anyhow::Error {
    let lines: Vec<String> = errs.iter().map(|e| format!("  {e}")).collect();
    UserError::message(format!("{what} is invalid:\n{}", lines.join("\n"))).into()
}

/// Loads and validates an architecture (a shipped name or a TOML path).
pub fn arch(arg: &str) -> anyhow::Result<ArchSpec> {
    Ok(arch_file(arg)?.0)
}

/// An architecture and the directory of its file (`None` for a shipped one).
fn arch_file(arg: &str) -> anyhow::Result<(ArchSpec, Option<PathBuf>)> {
    let path = Path::new(arg);
    let (what, text, dir) = if path.is_file() {
        let text = fs::read_to_string(path).map_err(|e| files::error("read", path, &e))?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        (arg.to_string(), text, Some(dir))
    } else if let Some(text) = shipped::arch(arg) {
        (format!("arch-configs/{arg}.toml"), text.to_string(), None)
    } else {
        let names: Vec<&str> = shipped::ARCHS.iter().map(|a| a.0).collect();
        return Err(UserError::message(format!(
            "`{arg}` is neither a file nor a shipped architecture; give a path to a .toml file or one of: {}",
            names.join(", ")
        ))
        .into());
    };
    let raw = RawArch::from_toml(&text).map_err(|e| config_error(&what, &[e]))?;
    let costs = match raw.costs.as_deref() {
        None => None,
        Some(name) => Some(cost_table(&what, name, dir.as_deref())?),
    };
    let spec = shipped::parse_arch(&text, |name| {
        costs
            .clone()
            .or_else(|| shipped::costs(name).map(str::to_string))
    })
    .map_err(|errs| config_error(&what, &errs))?;
    Ok((spec, dir))
}

/// The text of the cost table an architecture file names: shipped, or `costs/NAME.toml`
/// under `dir`. A table in a file is checked here, so its errors name that file.
fn cost_table(what: &str, name: &str, dir: Option<&Path>) -> anyhow::Result<String> {
    if let Some(text) = shipped::costs(name) {
        return Ok(text.to_string());
    }
    let shipped_names = || {
        let names: Vec<&str> = shipped::COSTS.iter().map(|c| c.0).collect();
        names.join(", ")
    };
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    let found = dir
        .filter(|_| plain)
        .and_then(|dir| confined(dir, &Path::new("costs").join(format!("{name}.toml"))));
    let Some(path) = found else {
        let beside = match dir {
            Some(d) => format!(", nor a file {}/costs/{name}.toml", d.display()),
            None => String::new(),
        };
        return Err(UserError::message(format!(
            "{what}: `costs = \"{name}\"` names no shipped cost table{beside}; name one of {} or a plain file name (letters, digits, `_`, `-`, `.`) of a table in the costs/ folder beside the architecture file",
            shipped_names()
        ))
        .into());
    };
    let text = fs::read_to_string(&path).map_err(|e| files::error("read", &path, &e))?;
    let label = path.display().to_string();
    RawCosts::from_toml(&text).map_err(|e| config_error(&label, &[e]))?;
    Ok(text)
}

/// `relative` under `dir`, when it exists and its real path (links resolved) stays inside
/// `dir`'s; `None` otherwise.
fn confined(dir: &Path, relative: &Path) -> Option<PathBuf> {
    use std::path::Component;
    if !relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
    {
        return None;
    }
    let root = fs::canonicalize(dir).ok()?;
    let path = fs::canonicalize(dir.join(relative)).ok()?;
    (path.starts_with(&root) && path.is_file()).then_some(path)
}

/// Loads an architecture and the cascade it runs (`cascade` overrides the architecture's own),
/// checking the architecture's explicit bindings against that cascade. The architecture's own
/// cascade is a library cascade, else a file under the architecture file's directory.
pub fn arch_with_cascade(arg: &str, cascade: Option<&str>) -> anyhow::Result<LoadedArch> {
    let (arch, dir) = arch_file(arg)?;
    let loaded = match cascade {
        Some(c) => load::load(c)?,
        None => arch_cascade(arg, arch.cascade(), dir.as_deref())?,
    };
    let cascade = loaded.parsed.cascade;
    let errs = arch.check_binding(&cascade);
    if !errs.is_empty() {
        return Err(config_error(
            &format!(
                "{arg} (architecture `{}` running cascade `{}`)",
                arch.name(),
                cascade.name
            ),
            &errs,
        ));
    }
    Ok(LoadedArch { arch, cascade })
}

/// The cascade an architecture file names (`cascade = …`), confined as its cost table is.
fn arch_cascade(arg: &str, name: &str, dir: Option<&Path>) -> anyhow::Result<load::Loaded> {
    if let Some(loaded) = load::library(name) {
        return loaded;
    }
    let Some(path) = dir.and_then(|d| confined(d, Path::new(name))) else {
        let names: Vec<&str> = cascade_ir::library::names().collect();
        let beside = match dir {
            Some(d) => format!(" nor a file under {}", d.display()),
            None => String::new(),
        };
        return Err(UserError::message(format!(
            "{arg}: `cascade = \"{name}\"` is neither a library cascade{beside}; name one of {} or a .cascade file in the architecture file's directory",
            names.join(", ")
        ))
        .into());
    };
    load::load(&path.display().to_string())
}

/// The workload set: the shipped one, or a TOML path.
pub fn workloads(arg: Option<&str>) -> anyhow::Result<Workloads> {
    let (what, text) = match arg {
        None => (
            "arch-configs/workloads/transformers.toml".to_string(),
            shipped::WORKLOADS.to_string(),
        ),
        Some(path) => (
            path.to_string(),
            fs::read_to_string(path).map_err(|e| files::error("read", Path::new(path), &e))?,
        ),
    };
    let raw =
        cascade_scheduler::RawWorkloads::from_toml(&text).map_err(|e| config_error(&what, &[e]))?;
    Workloads::new(raw).map_err(|errs| config_error(&what, &errs))
}

/// Parses `1k,4k,64k` (k = 1024, M = 1024²) into sequence lengths (see [`values::seq_list`]).
pub fn seq_list(arg: &str) -> anyhow::Result<Vec<u64>> {
    values::seq_list(arg).map_err(|e| UserError::message(e.0).into())
}

/// The problems for `--workload NAME|all` and `--seq LIST` (default: the workload file's lengths).
pub fn problems(
    workloads: &Workloads,
    workload: &str,
    seq: Option<&str>,
) -> anyhow::Result<Vec<Problem>> {
    let models: Vec<_> = if workload.eq_ignore_ascii_case("all") {
        workloads.models().iter().collect()
    } else {
        let mut picked = Vec::new();
        for name in workload.split(',') {
            match workloads.model(name.trim()) {
                Some(m) => picked.push(m),
                None => {
                    let names: Vec<&str> = workloads.models().iter().map(|m| m.name()).collect();
                    return Err(UserError::message(format!(
                        "no workload `{name}`; use `all` or one of: {}",
                        names.join(", ")
                    ))
                    .into());
                }
            }
        }
        picked
    };
    let seqs = match seq {
        Some(s) => seq_list(s)?,
        None => workloads.seq().to_vec(),
    };
    Ok(models
        .iter()
        .flat_map(|m| seqs.iter().map(|&s| workloads.problem(m, s)))
        .collect())
}

/// Adds the sizes of `--shape NAME=SIZE,…` (ranks the workload does not give, such as a window
/// `W`) to every problem; they override the workload's sizes.
pub fn add_shape(problems: &mut [Problem], shape: Option<&str>) -> anyhow::Result<()> {
    let Some(shape) = shape else { return Ok(()) };
    let spec: cascade_ir::ShapeSpec = shape
        .parse()
        .map_err(|e: cascade_ir::ShapeError| UserError::message(e.to_string()))?;
    for (name, &size) in &spec.sizes {
        if !(1..=cascade_ir::shape::MAX_SIZE).contains(&size) {
            return Err(UserError::message(format!(
                "rank {name} has size {size} in --shape: sizes must be between 1 and {}",
                cascade_ir::shape::MAX_SIZE
            ))
            .into());
        }
        for p in problems.iter_mut() {
            p.sizes.insert(name.clone(), size as u64);
        }
    }
    Ok(())
}

/// `1048576` → `1M`, `4096` → `4K`, others as numbers.
pub fn seq_label(seq: u64) -> String {
    if seq >= 1 << 20 && seq.is_multiple_of(1 << 20) {
        format!("{}M", seq >> 20)
    } else if seq >= 1 << 10 && seq.is_multiple_of(1 << 10) {
        format!("{}K", seq >> 10)
    } else {
        seq.to_string()
    }
}
