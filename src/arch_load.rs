//! Finds architectures and workloads from command-line arguments: a shipped name or a path.
//!
//! Shipped files are embedded in the binary (`cascade_scheduler::shipped`), so `--arch fusemax`
//! works from any directory. A path is read from disk; its cost table is found by name among
//! the shipped tables, else as `costs/NAME.toml` beside the architecture file.

use std::fs;
use std::path::Path;

use cascade_ir::Cascade;
use cascade_scheduler::{
    ArchSpec, BlockMask, ConfigError, MappingOverrides, Problem, Workloads, shipped,
};

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
    let path = Path::new(arg);
    let (what, text, dir) = if path.is_file() {
        let text = fs::read_to_string(path)
            .map_err(|e| UserError::message(format!("cannot read {arg}: {e}")))?;
        (arg.to_string(), text, path.parent().map(Path::to_path_buf))
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
    let costs = |name: &str| {
        shipped::costs(name).map(str::to_string).or_else(|| {
            let dir = dir.as_ref()?;
            fs::read_to_string(dir.join("costs").join(format!("{name}.toml"))).ok()
        })
    };
    shipped::parse_arch(&text, costs).map_err(|errs| config_error(&what, &errs))
}

/// Loads an architecture and the cascade it runs (`cascade` overrides the architecture's own),
/// checking the architecture's explicit bindings against that cascade.
pub fn arch_with_cascade(arg: &str, cascade: Option<&str>) -> anyhow::Result<LoadedArch> {
    let arch = arch(arg)?;
    let loaded = load::load(cascade.unwrap_or(arch.cascade()))?;
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

/// The workload set: the shipped one, or a TOML path.
pub fn workloads(arg: Option<&str>) -> anyhow::Result<Workloads> {
    let (what, text) = match arg {
        None => (
            "arch-configs/workloads/transformers.toml".to_string(),
            shipped::WORKLOADS.to_string(),
        ),
        Some(path) => (
            path.to_string(),
            fs::read_to_string(path)
                .map_err(|e| UserError::message(format!("cannot read {path}: {e}")))?,
        ),
    };
    let raw =
        cascade_scheduler::RawWorkloads::from_toml(&text).map_err(|e| config_error(&what, &[e]))?;
    Workloads::new(raw).map_err(|errs| config_error(&what, &errs))
}

/// Parses `1k,4k,64k` (k = 1024, M = 1024²) into sequence lengths.
pub fn seq_list(arg: &str) -> anyhow::Result<Vec<u64>> {
    arg.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| match cascade_ir::shape::parse_size(s) {
            Some(v) if v > 0 => Ok(v as u64),
            _ => Err(UserError::message(format!(
                "cannot read sequence length `{s}`; write numbers with optional k/M suffixes, e.g. 1k,4k,64k"
            ))
            .into()),
        })
        .collect()
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
        if size < 1 {
            return Err(UserError::message(format!(
                "rank {name} has size {size} in --shape: sizes must be at least 1"
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

/// A mapping file (`--mapping FILE`): the choices that override the scheduler's.
pub fn mapping(path: Option<&str>) -> anyhow::Result<MappingOverrides> {
    let Some(path) = path else {
        return Ok(MappingOverrides::default());
    };
    let text = fs::read_to_string(path)
        .map_err(|e| UserError::message(format!("cannot read {path}: {e}")))?;
    MappingOverrides::from_toml(&text).map_err(|errs| config_error(path, &errs))
}

/// Reads `--block-mask NAME=FILE` arguments: which blocks of the mask input NAME attend. A
/// `.npy` file holds a 2-D array (key blocks × query blocks) where non-zero attends; any other
/// file is text, one line per key block of `0`/`1` (or `.`/`#`) per query block, with `//`
/// lines as comments.
pub fn block_masks(args: &[String]) -> anyhow::Result<Vec<(String, BlockMask)>> {
    let mut out = Vec::new();
    for arg in args {
        let Some((name, path)) = arg.split_once('=') else {
            return Err(UserError::message(format!(
                "cannot read --block-mask `{arg}`; write NAME=FILE, e.g. BM=layout.npy"
            ))
            .into());
        };
        let bytes =
            fs::read(path).map_err(|e| UserError::message(format!("cannot read {path}: {e}")))?;
        let bad = |why: String| UserError::message(format!("block mask {path}: {why}"));
        let (rows, cols, bits) = if path.ends_with(".npy") {
            let header = crate::npy::read_header(&bytes).map_err(|e| bad(e.to_string()))?;
            let data = crate::npy::read_data(&bytes, &header).map_err(|e| bad(e.to_string()))?;
            let [rows, cols] = header.shape[..] else {
                return Err(bad(format!(
                    "a block mask is 2-D (key blocks × query blocks), not of shape {:?}",
                    header.shape
                ))
                .into());
            };
            let bits = data.iter().map(|&x| x != 0.0).collect();
            (rows, cols, bits)
        } else {
            let text = String::from_utf8(bytes).map_err(|_| bad("not text".into()))?;
            let lines: Vec<Vec<bool>> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("//"))
                .map(|l| {
                    l.chars()
                        .filter(|c| !c.is_whitespace() && *c != ',')
                        .map(|c| match c {
                            '1' | '#' => Ok(true),
                            '0' | '.' => Ok(false),
                            other => Err(bad(format!(
                                "`{other}` is not a block: write 1 or # (attends) and 0 or . (masked)"
                            ))),
                        })
                        .collect::<Result<Vec<bool>, UserError>>()
                })
                .collect::<Result<_, _>>()?;
            let cols = lines.first().map_or(0, Vec::len);
            if lines.iter().any(|l| l.len() != cols) {
                return Err(bad("every line needs one entry per query block".into()).into());
            }
            (lines.len(), cols, lines.into_iter().flatten().collect())
        };
        let mask = BlockMask::new(rows as u64, cols as u64, bits).map_err(bad)?;
        out.push((name.trim().to_string(), mask));
    }
    Ok(out)
}
