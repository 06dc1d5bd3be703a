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
use cascade_scheduler::system::{RawSystem, SystemSpec};
use cascade_scheduler::{
    ArchSpec, BlockMask, ConfigError, MAX_MASK_BLOCKS, MappingOverrides, Problem, RawArch,
    RawCosts, Workloads, shipped,
};

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
        (arg.to_string(), text, file_dir(arg))
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
    confined_cascade(arg, name, dir, "architecture")
}

/// The cascade a file of `kind` (`architecture`, `workload`) names: a library cascade or model
/// variant, else a `.cascade` file under that file's directory (`dir`; none for a shipped file),
/// refused without reading anything when it would leave it.
fn confined_cascade(
    what: &str,
    name: &str,
    dir: Option<&Path>,
    kind: &str,
) -> anyhow::Result<load::Loaded> {
    if let Some(loaded) = load::named(name) {
        return loaded;
    }
    let Some(path) = dir.and_then(|d| confined(d, Path::new(name))) else {
        let names: Vec<&str> = cascade_ir::library::names()
            .chain(cascade_ir::library::variant_names())
            .collect();
        let beside = match dir {
            Some(d) => format!(" nor a file under {}", d.display()),
            None => String::new(),
        };
        return Err(UserError::message(format!(
            "{what}: `cascade = \"{name}\"` is neither a library cascade or variant{beside}; name one of {} or a .cascade file in the {kind} file's directory",
            names.join(", ")
        ))
        .into());
    };
    load::load(&path.display().to_string())
}

/// A system of chips (a shipped name or a TOML path) and the argument that names its chip as
/// [`arch_with_cascade`] and [`cascades_for`] take it: a shipped architecture's name, else the
/// path of an architecture file under the system file's directory (confined as a cost table
/// is).
pub fn system(arg: &str) -> anyhow::Result<(SystemSpec, String)> {
    let path = Path::new(arg);
    let (what, text, dir) = if path.is_file() {
        let text = fs::read_to_string(path).map_err(|e| files::error("read", path, &e))?;
        (arg.to_string(), text, file_dir(arg))
    } else if let Some(text) = shipped::system(arg) {
        (
            format!("arch-configs/systems/{arg}.toml"),
            text.to_string(),
            None,
        )
    } else {
        let names: Vec<&str> = shipped::SYSTEMS.iter().map(|s| s.0).collect();
        return Err(UserError::message(format!(
            "`{arg}` is neither a file nor a shipped system; give a path to a system .toml file or one of: {}",
            names.join(", ")
        ))
        .into());
    };
    let raw = RawSystem::from_toml(&text).map_err(|e| config_error(&what, &[e]))?;
    // The chip's argument: shipped first, then a file beside the system file.
    let chip_arg = raw.chip.as_deref().map(|name| {
        if shipped::arch(name).is_some() {
            name.to_string()
        } else {
            dir.as_deref()
                .and_then(|d| confined(d, Path::new(name)))
                .map_or_else(|| name.to_string(), |p| p.display().to_string())
        }
    });
    let resolve = |name: &str| -> Result<ArchSpec, String> {
        let chip = chip_arg.as_deref().unwrap_or(name);
        if shipped::arch(chip).is_none() && !Path::new(chip).is_file() {
            let names: Vec<&str> = shipped::ARCHS.iter().map(|a| a.0).collect();
            return Err(format!(
                "is neither a shipped architecture nor an architecture file in the system file's directory; use one of {} or a .toml file beside it",
                names.join(", ")
            ));
        }
        arch(chip).map_err(|e| e.to_string().replace('\n', " "))
    };
    let spec = SystemSpec::new(raw, &resolve).map_err(|errs| config_error(&what, &errs))?;
    Ok((spec, chip_arg.unwrap_or_default()))
}

/// The workload set: a shipped one by name (`transformers`, the default, or `llm`), or a TOML
/// path.
pub fn workloads(arg: Option<&str>) -> anyhow::Result<Workloads> {
    let arg = arg.unwrap_or("transformers");
    let (what, text) = match shipped::workload_set(arg) {
        Some(text) if !Path::new(arg).is_file() => (
            format!("arch-configs/workloads/{arg}.toml"),
            text.to_string(),
        ),
        _ => {
            if !Path::new(arg).is_file() {
                let names: Vec<&str> = shipped::WORKLOAD_SETS.iter().map(|w| w.0).collect();
                return Err(UserError::message(format!(
                    "`{arg}` is neither a file nor a shipped workload set; give a path to a .toml file or one of: {}",
                    names.join(", ")
                ))
                .into());
            }
            (
                arg.to_string(),
                fs::read_to_string(arg).map_err(|e| files::error("read", Path::new(arg), &e))?,
            )
        }
    };
    let raw =
        cascade_scheduler::RawWorkloads::from_toml(&text).map_err(|e| config_error(&what, &[e]))?;
    let set = Workloads::new(raw).map_err(|errs| config_error(&what, &errs))?;
    // Every cascade a model names resolves, whether or not this command runs it, so a wrong
    // reference is never silently passed over (compare and zoo run other cascades).
    let dir = file_dir(arg);
    for m in set.models() {
        for name in [m.cascade(), m.decode_cascade()].into_iter().flatten() {
            let named = cascade_ir::library::source(name).is_some()
                || cascade_ir::library::variant_source(name).is_some();
            let in_dir = dir
                .as_deref()
                .is_some_and(|d| confined(d, Path::new(name)).is_some());
            if !named && !in_dir {
                workload_cascade(&what, name, dir.as_deref())?;
            }
        }
    }
    Ok(set)
}

/// Parses `1k,4k,64k` (k = 1024, M = 1024²) into sequence lengths (see [`values::seq_list`]).
pub fn seq_list(arg: &str) -> anyhow::Result<Vec<u64>> {
    values::seq_list(arg).map_err(|e| UserError::message(e.0).into())
}

/// Which points of a workload set: prefill, decode or both, and the decode batches.
#[derive(Debug, Clone, Default)]
pub struct Points {
    /// `prefill`, `decode` or `all`; default: every scenario the file has.
    pub scenario: Option<String>,
    /// Decode batches (`1,16`), instead of the file's.
    pub batch: Option<String>,
    /// The workload set as given (`--workloads`), for messages.
    pub set: Option<String>,
}

/// The problems for `--workload NAME|all`, `--seq LIST` (prefill lengths and decode cache
/// lengths; default: the file's) and the scenarios and batches of `points`.
pub fn points(
    workloads: &Workloads,
    workload: &str,
    seq: Option<&str>,
    points: &Points,
) -> anyhow::Result<Vec<Problem>> {
    let scenario = points.scenario.as_deref().unwrap_or("all");
    let (prefill, decode) = match scenario {
        "all" => (true, true),
        "prefill" => (true, false),
        "decode" => (false, true),
        other => {
            return Err(UserError::message(format!(
                "--scenario `{other}`: use prefill, decode or all"
            ))
            .into());
        }
    };
    // Checked even where no decode point uses them, so a bad value is never silently ignored.
    let given_batches = match &points.batch {
        Some(b) => Some(values::batch_list(b).map_err(|e| UserError::message(e.0))?),
        None => None,
    };
    let models = models(workloads, workload)?;
    let mut out = Vec::new();
    if prefill {
        let seqs = match seq {
            Some(s) => seq_list(s)?,
            None => workloads.seq().to_vec(),
        };
        out.extend(
            models
                .iter()
                .flat_map(|m| seqs.iter().map(|&s| workloads.problem(m, s))),
        );
    }
    match (decode, workloads.decode()) {
        (true, Some(d)) => {
            let kvs = match seq {
                Some(s) => seq_list(s)?,
                None => d.kv.clone(),
            };
            let batches = given_batches.unwrap_or_else(|| d.batch.clone());
            for m in &models {
                for &kv in &kvs {
                    for &b in &batches {
                        out.push(workloads.decode_problem(m, kv, b));
                    }
                }
            }
        }
        (true, None) if scenario == "decode" => {
            return Err(UserError::message(format!(
                "workload set {} has no decode points; use --workloads llm or add a [decode] table",
                points.set.as_deref().unwrap_or("transformers")
            ))
            .into());
        }
        _ => {}
    }
    Ok(out)
}

fn models<'a>(
    workloads: &'a Workloads,
    workload: &str,
) -> anyhow::Result<Vec<&'a cascade_scheduler::Model>> {
    if workload.eq_ignore_ascii_case("all") {
        return Ok(workloads.models().iter().collect());
    }
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
    Ok(picked)
}

/// The prefill problems for `--workload NAME|all` and `--seq LIST` (default: the workload
/// file's lengths).
pub fn problems(
    workloads: &Workloads,
    workload: &str,
    seq: Option<&str>,
) -> anyhow::Result<Vec<Problem>> {
    let scenario = Points {
        scenario: Some("prefill".into()),
        batch: None,
        set: None,
    };
    points(workloads, workload, seq, &scenario)
}

/// The directory of a file argument (`None` for a shipped name): where the references inside
/// that file may point.
fn file_dir(arg: &str) -> Option<PathBuf> {
    let path = Path::new(arg);
    if !path.is_file() {
        return None;
    }
    Some(match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    })
}

/// The cascade a workload file names for a model (`cascade = …`, `decode_cascade = …`): a
/// library cascade or model variant, else a file under the workload file's directory, confined
/// as an architecture's references are.
fn workload_cascade(what: &str, name: &str, dir: Option<&Path>) -> anyhow::Result<load::Loaded> {
    confined_cascade(what, name, dir, "workload")
}

/// The cascade each problem runs: `chosen` (`--cascade`) for all, else the one the workload
/// names for the model (confined to the workload file's directory), else the architecture's own
/// (confined to the architecture file's); each loaded once and checked against the
/// architecture's explicit bindings.
pub fn cascades_for(
    arch_arg: &str,
    arch: &ArchSpec,
    chosen: Option<&str>,
    workloads_arg: Option<&str>,
    problems: &[Problem],
) -> anyhow::Result<Vec<Cascade>> {
    let workloads_dir = workloads_arg.and_then(file_dir);
    let workloads_label = workloads_arg.unwrap_or("transformers");
    let mut loaded: Vec<(String, Cascade)> = Vec::new();
    let mut out = Vec::with_capacity(problems.len());
    for p in problems {
        // The key says where the name came from: the same name resolves differently from the
        // command line, a workload file and an architecture file.
        let (key, source) = match (chosen, p.cascade.as_deref()) {
            (Some(c), _) => (format!("arg:{c}"), 0),
            (None, Some(w)) => (format!("workload:{w}"), 1),
            (None, None) => (format!("arch:{}", arch.cascade()), 2),
        };
        if let Some((_, c)) = loaded.iter().find(|(n, _)| *n == key) {
            out.push(c.clone());
            continue;
        }
        let found = match (source, chosen, p.cascade.as_deref()) {
            (0, Some(c), _) => load::load(c)?,
            (1, _, Some(w)) => workload_cascade(workloads_label, w, workloads_dir.as_deref())?,
            _ => arch_cascade(arch_arg, arch.cascade(), file_dir(arch_arg).as_deref())?,
        };
        let cascade = found.parsed.cascade;
        let errs = arch.check_binding(&cascade);
        if !errs.is_empty() {
            return Err(config_error(
                &format!(
                    "{arch_arg} (architecture `{}` running cascade `{}`)",
                    arch.name(),
                    cascade.name
                ),
                &errs,
            ));
        }
        loaded.push((key, cascade.clone()));
        out.push(cascade);
    }
    Ok(out)
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

/// A mapping file (`--mapping FILE`): the choices that override the scheduler's.
pub fn mapping(path: Option<&str>) -> anyhow::Result<MappingOverrides> {
    let Some(path) = path else {
        return Ok(MappingOverrides::default());
    };
    let text = fs::read_to_string(path)
        .map_err(|e| UserError::message(format!("cannot read {path}: {e}")))?;
    MappingOverrides::from_toml(&text).map_err(|errs| config_error(path, &errs))
}

/// The largest block-mask file read (`--block-mask`): room for [`MAX_MASK_BLOCKS`] blocks as
/// 8-byte floats or as text with a separator after each, and a header; checked before reading.
const MAX_MASK_FILE_BYTES: u64 = 8 * MAX_MASK_BLOCKS + (1 << 16);

/// Reads `--block-mask NAME=FILE` arguments: which blocks of the mask input NAME attend. A
/// `.npy` file holds a 2-D array (key blocks × query blocks) of 1 (attends) and 0 (masked);
/// any other file is text, one line per key block of `0`/`1` (or `.`/`#`) per query block,
/// with `//` lines as comments. A mask holds at most [`MAX_MASK_BLOCKS`] blocks; the size is
/// checked (from the file's length and the NPY header) before anything is allocated.
pub fn block_masks(args: &[String]) -> anyhow::Result<Vec<(String, BlockMask)>> {
    let mut out: Vec<(String, BlockMask)> = Vec::new();
    for arg in args {
        let Some((name, path)) = arg.split_once('=') else {
            return Err(UserError::message(format!(
                "cannot read --block-mask `{arg}`; write NAME=FILE, e.g. BM=layout.npy"
            ))
            .into());
        };
        let name = name.trim();
        if name.is_empty() {
            return Err(UserError::message(format!(
                "--block-mask `{arg}` names no input; write NAME=FILE, e.g. BM=layout.npy"
            ))
            .into());
        }
        if out.iter().any(|(n, _)| n == name) {
            return Err(UserError::message(format!(
                "--block-mask gives `{name}` twice; give each mask input once"
            ))
            .into());
        }
        let bad = |why: String| UserError::message(format!("block mask {path}: {why}"));
        // What a mask of `blocks` would take in memory, and the limit.
        let too_many = |what: String, blocks: Option<u64>| {
            let need = blocks
                .and_then(|n| n.checked_mul(BlockMask::BYTES_PER_BLOCK))
                .map_or_else(|| "more than 2^64".to_string(), |b| b.to_string());
            bad(format!(
                "{what}, which would take about {need} bytes in memory; a block mask holds at most {MAX_MASK_BLOCKS} blocks (2^24, about {} bytes): use larger blocks (the split's inner ranks, e.g. --shape M0=1024,P0=1024)",
                MAX_MASK_BLOCKS * BlockMask::BYTES_PER_BLOCK
            ))
        };
        let len = fs::metadata(path)
            .map_err(|e| UserError::message(format!("cannot read {path}: {e}")))?
            .len();
        if len > MAX_MASK_FILE_BYTES {
            return Err(too_many(
                format!(
                    "the file is {len} bytes, more than a mask of {MAX_MASK_BLOCKS} blocks takes; it may hold up to {len} blocks"
                ),
                Some(len),
            )
            .into());
        }
        let bytes =
            fs::read(path).map_err(|e| UserError::message(format!("cannot read {path}: {e}")))?;
        let (rows, cols, bits) = if path.ends_with(".npy") {
            let header = crate::npy::read_header(&bytes).map_err(|e| bad(e.to_string()))?;
            let [rows, cols] = header.shape[..] else {
                return Err(bad(format!(
                    "a block mask is 2-D (key blocks × query blocks), not of shape {:?}",
                    header.shape
                ))
                .into());
            };
            let blocks = (rows as u64).checked_mul(cols as u64);
            if blocks.is_none_or(|n| n > MAX_MASK_BLOCKS) {
                return Err(too_many(
                    format!(
                        "its header says {rows} × {cols} = {} blocks",
                        blocks.map_or_else(|| "more than 2^64".to_string(), |n| n.to_string())
                    ),
                    blocks,
                )
                .into());
            }
            let data = crate::npy::read_data(&bytes, &header).map_err(|e| bad(e.to_string()))?;
            let mut bits = Vec::with_capacity(data.len());
            for (at, &x) in data.indexed_iter() {
                if x != 0.0 && x != 1.0 {
                    return Err(bad(format!(
                        "entry [{}, {}] is {x}; write 1 (attends) or 0 (masked)",
                        at[0], at[1]
                    ))
                    .into());
                }
                bits.push(x == 1.0);
            }
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
            if lines.is_empty() {
                return Err(bad(
                    "holds no block; write one line per key block, with 1 or # (attends) and 0 or . (masked) per query block".into(),
                )
                .into());
            }
            let cols = lines.first().map_or(0, Vec::len);
            if lines.iter().any(|l| l.len() != cols) {
                return Err(bad("every line needs one entry per query block".into()).into());
            }
            (lines.len(), cols, lines.into_iter().flatten().collect())
        };
        let mask = BlockMask::new(rows as u64, cols as u64, bits).map_err(bad)?;
        out.push((name.to_string(), mask));
    }
    Ok(out)
}
