//! The files of `cascade eval`: `--inputs DIR` reads one `.npy` per input tensor, `--dump DIR`
//! writes the outputs (or every tensor) as `.npy`.
//!
//! An input `Q[E,P]` is read from `DIR/Q.npy`, an array of shape `(|E|, |P|)`: dims in the
//! declared rank order, float64, float32 or float16. Every problem with every file is reported
//! at once, each naming the file and the fix; NaN is refused (±inf is a value, as in masks).
//! Other `.npy` files are ignored: those `--dump` writes for this cascade silently, any other
//! with a warning, and when an input is missing the error lists them too (a misspelt name).
//!
//! A dumped tensor `T` is `DIR/T.npy` in the evaluation's precision; absent points hold 0 (every
//! tensor's fill value), and for a tensor that is not an input `DIR/T.present.npy` is a bool
//! array, true where the point is present. Each file is written to a temporary file in `DIR`
//! and renamed, so no reader ever sees half a file.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use cascade_ir::eval::{Evaluation, TensorValue};
use cascade_ir::{Cascade, Shape, TensorKind};
use ndarray::{ArrayD, Dimension as _};
use num_traits::Float;
use serde_json::json;

use crate::npy::{self, NpyElement, tuple};
use crate::output::UserError;

/// The suffix of presence files, `T.present.npy`.
pub const PRESENT_SUFFIX: &str = ".present";

/// Inputs read from a directory.
#[derive(Debug)]
pub struct InputFiles {
    pub inputs: BTreeMap<String, ArrayD<f64>>,
    /// `.npy` files that name no input and that `--dump` would not have written.
    pub unknown: Vec<String>,
}

/// An input the cascade declares and the shape the file must have.
struct Expected {
    name: String,
    /// `Q[E,P]`.
    declared: String,
    rank_names: Vec<String>,
    dims: Vec<usize>,
}

fn expected_inputs(c: &Cascade, shape: &Shape) -> Vec<Expected> {
    c.tensors
        .iter()
        .filter(|t| t.kind == TensorKind::Input)
        .map(|t| {
            let rank_names: Vec<String> = t.ranks.iter().map(|r| c.rank(*r).name.clone()).collect();
            Expected {
                name: t.name.clone(),
                declared: format!("{}[{}]", t.name, rank_names.join(",")),
                dims: t.ranks.iter().map(|r| shape.size(*r) as usize).collect(),
                rank_names,
            }
        })
        .collect()
}

/// Reads `DIR/<input>.npy` for every input of `c`; `shape_text` is `--shape` as given, for
/// messages. Every problem is one line of one user error.
pub fn read_inputs(
    dir: &Path,
    c: &Cascade,
    shape: &Shape,
    shape_text: &str,
) -> anyhow::Result<InputFiles> {
    let expected = expected_inputs(c, shape);
    let wanted = || {
        let list: Vec<String> = expected
            .iter()
            .map(|e| format!("{}.npy {}", e.name, tuple(&e.dims)))
            .collect();
        list.join(", ")
    };
    let entries = fs::read_dir(dir).map_err(|e| {
        UserError::message(format!(
            "--inputs {}: cannot read the directory ({e}); it must hold one .npy per input: {}",
            dir.display(),
            wanted()
        ))
    })?;
    let files: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter_map(|name| name.strip_suffix(".npy").map(str::to_string))
        .collect();
    let mut inputs = BTreeMap::new();
    let mut problems = Vec::new();
    let mut missing = false;
    for e in &expected {
        if !files.contains(&e.name) {
            missing = true;
            problems.push(format!(
                "{}.npy is missing: input {} needs an array of shape {}",
                e.name,
                e.declared,
                tuple(&e.dims)
            ));
            continue;
        }
        match read_input(&dir.join(format!("{}.npy", e.name)), e, shape_text) {
            Ok(array) => {
                inputs.insert(e.name.clone(), array);
            }
            Err(problem) => problems.push(problem),
        }
    }
    let unknown = unknown_files(c, &files);
    if problems.is_empty() {
        return Ok(InputFiles { inputs, unknown });
    }
    // Files that name no input are likely the missing ones, misspelt.
    let note = (missing && !unknown.is_empty()).then(|| {
        format!(
            "the directory also holds {}, which names no input of {} (its inputs are {})",
            unknown.join(", "),
            c.name,
            names(&expected)
        )
    });
    Err(input_problems(dir, &problems, note).into())
}

fn names(expected: &[Expected]) -> String {
    let names: Vec<&str> = expected.iter().map(|e| e.name.as_str()).collect();
    names.join(", ")
}

/// `.npy` files (by file name) that are neither an input nor something `--dump` writes.
fn unknown_files(c: &Cascade, stems: &[String]) -> Vec<String> {
    let mut unknown: Vec<String> = stems
        .iter()
        .filter(|stem| {
            let tensor = stem.strip_suffix(PRESENT_SUFFIX).unwrap_or(stem);
            c.tensor_by_name(tensor).is_none()
        })
        .map(|stem| format!("{stem}.npy"))
        .collect();
    unknown.sort();
    unknown
}

fn input_problems(dir: &Path, problems: &[String], note: Option<String>) -> UserError {
    let count = match problems.len() {
        1 => "a problem".to_string(),
        n => format!("{n} problems"),
    };
    let head = format!("--inputs {}: {count} with the input files", dir.display());
    let lines: Vec<String> = problems
        .iter()
        .chain(&note)
        .map(|p| format!("  {p}\n"))
        .collect();
    UserError {
        text: format!("error: {head}:\n{}", lines.concat()),
        json: json!({ "ok": false, "error": head, "problems": problems, "note": note }),
    }
}

/// One input file, checked: readable, NPY, the declared shape, no NaN.
fn read_input(path: &Path, e: &Expected, shape_text: &str) -> Result<ArrayD<f64>, String> {
    let file = path.display();
    let points: usize = e.dims.iter().product();
    // The largest file an array of this shape can be: 8-byte elements and a generous header.
    let limit = points.saturating_mul(8).saturating_add(1 << 20);
    let size = fs::metadata(path).map_err(|err| format!("{file}: cannot read it ({err})"))?;
    if size.len() > limit as u64 {
        return Err(format!(
            "{file}: holds {} bytes, far more than input {} of shape {} can fill; save that \
             array alone with numpy.save",
            size.len(),
            e.declared,
            tuple(&e.dims)
        ));
    }
    let bytes = fs::read(path).map_err(|err| format!("{file}: cannot read it ({err})"))?;
    let header = npy::read_header(&bytes).map_err(|err| format!("{file}: {err}"))?;
    if header.shape != e.dims {
        return Err(format!(
            "{file}: input {} has shape {} with --shape {shape_text}, but the file holds shape {}; \
             save an array of shape {} (dims in the declared rank order {})",
            e.declared,
            tuple(&e.dims),
            tuple(&header.shape),
            tuple(&e.dims),
            e.rank_names.join(", ")
        ));
    }
    let array = npy::read_data(&bytes, &header).map_err(|err| format!("{file}: {err}"))?;
    let nan = array.iter().filter(|x| x.is_nan()).count();
    if let Some((index, _)) = array.indexed_iter().find(|(_, x)| x.is_nan()) {
        return Err(format!(
            "{file}: input {} holds NaN at index {} ({nan} NaN in all); inputs may hold ±inf \
             but not NaN: replace the NaN values",
            e.name,
            tuple(index.slice())
        ));
    }
    Ok(array)
}

/// How many NaN and how many ±inf values.
pub fn non_finite<'a, T: Float + 'a>(values: impl IntoIterator<Item = &'a T>) -> (usize, usize) {
    values.into_iter().fold((0, 0), |(nan, inf), x| {
        (
            nan + usize::from(x.is_nan()),
            inf + usize::from(x.is_infinite()),
        )
    })
}

/// One tensor written by `--dump`.
#[derive(Debug)]
pub struct Dumped {
    pub tensor: String,
    pub file: String,
    /// `T.present.npy`, for tensors that are not inputs.
    pub present_file: Option<String>,
    pub dims: Vec<usize>,
    pub present: usize,
    pub nan: usize,
    pub inf: usize,
}

/// Writes the outputs of `ev` (with `all`, every tensor, in declaration order) under `dir`,
/// creating it if needed and replacing files of the same names.
pub fn dump<T: Float + NpyElement>(
    dir: &Path,
    c: &Cascade,
    ev: &Evaluation<T>,
    all: bool,
) -> anyhow::Result<Vec<Dumped>> {
    let names: Vec<String> = if all {
        c.tensors.iter().map(|t| t.name.clone()).collect()
    } else {
        ev.outputs.clone()
    };
    refuse_case_clashes(dir, &names)?;
    fs::create_dir_all(dir).map_err(|e| {
        UserError::message(format!(
            "--dump {}: cannot create the directory ({e})",
            dir.display()
        ))
    })?;
    let mut dumped = Vec::new();
    for name in names {
        let Some(value) = ev.tensor(&name) else {
            continue;
        };
        let input = c
            .tensor_by_name(&name)
            .is_some_and(|t| c.tensor(t).kind == TensorKind::Input);
        dumped.push(dump_tensor(dir, &name, value, !input)?);
    }
    Ok(dumped)
}

fn dump_tensor<T: Float + NpyElement>(
    dir: &Path,
    name: &str,
    value: &TensorValue<T>,
    with_presence: bool,
) -> anyhow::Result<Dumped> {
    let write = |file: &str, bytes: Vec<u8>| crate::files::write_atomic(&dir.join(file), &bytes);
    let file = format!("{name}.npy");
    write(&file, npy::write(&value.values))?;
    let present_file = if with_presence {
        let file = format!("{name}{PRESENT_SUFFIX}.npy");
        write(&file, npy::write(&value.present))?;
        Some(file)
    } else {
        None
    };
    let (nan, inf) = non_finite(value.values.iter());
    Ok(Dumped {
        tensor: name.to_string(),
        file,
        present_file,
        dims: value.values.shape().to_vec(),
        present: value.present_count(),
        nan,
        inf,
    })
}

/// Tensor names are case-sensitive, file names may not be: `A` and `a` would share a file.
fn refuse_case_clashes(dir: &Path, names: &[String]) -> anyhow::Result<()> {
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for name in names {
        if let Some(other) = seen.insert(name.to_lowercase(), name) {
            return Err(UserError::message(format!(
                "--dump {}: tensors {other} and {name} would write the same file on a \
                 case-insensitive file system; rename one of them",
                dir.display()
            ))
            .into());
        }
    }
    Ok(())
}
