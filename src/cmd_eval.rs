//! `cascade eval FILE|NAME --shape E=64,F=64,M=1024,P=1024 [--seed N | --inputs DIR]
//! [--dump DIR [--all]] [--dtype f32|f64]`: runs the reference interpreter on seeded random
//! inputs or on the user's `.npy` files, prints checksums of each output (with its NaN and inf
//! counts), optionally writes the tensors as `.npy`, and, when the cascade is structurally a
//! library form, compares the output with that form's direct reference.
//!
//! Exit status 1 when a reference applies and the output is outside its tolerance or holds
//! NaN (the report is still printed, with `"ok": false` in JSON).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use cascade_ir::eval::{Evaluation, TensorValue, evaluate};
use cascade_ir::reference::{self, Known};
use cascade_ir::{Cascade, Shape, ShapeSpec};
use ndarray::ArrayD;
use num_traits::Float;
use serde_json::{Value, json};

use crate::eval_io::{self, Dumped};
use crate::load;
use crate::npy::{NpyElement, tuple};
use crate::output::{Format, UserError, num, print_json};

/// Element type of the evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Dtype {
    F32,
    F64,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Path to a .cascade file or a library cascade name.
    #[arg(value_name = "FILE|NAME")]
    pub target: String,
    /// Rank sizes, e.g. E=64,F=64,M=1024,P=1024 (add M0=… for a tile size, W=… for a window).
    #[arg(long)]
    pub shape: String,
    /// Seed of the random inputs (uniform in [-1, 1), one ChaCha8 stream in declaration order;
    /// 0 when neither --seed nor --inputs is given).
    #[arg(long, value_name = "N", conflicts_with = "inputs")]
    pub seed: Option<u64>,
    /// Read each input T from DIR/T.npy (dims in the declared rank order; float64, float32 or
    /// float16; ±inf allowed, NaN refused) instead of drawing random inputs.
    #[arg(long, value_name = "DIR")]
    pub inputs: Option<PathBuf>,
    /// Write each output T as DIR/T.npy (absent points hold 0) and DIR/T.present.npy (bool),
    /// after a successful evaluation; files of the same names are replaced.
    #[arg(long, value_name = "DIR")]
    pub dump: Option<PathBuf>,
    /// With --dump, write every tensor: inputs, intermediates (iterative state at its |R|+1
    /// extent) and outputs.
    #[arg(long, requires = "dump")]
    pub all: bool,
    /// Evaluate in f64 or f32 (inputs are read or drawn in f64 and rounded).
    #[arg(long, value_enum, default_value_t = Dtype::F64)]
    pub dtype: Dtype,
    /// Refuse shapes whose evaluation would allocate more than this many bytes (k/M/G/T/P
    /// suffixes, powers of 1024); the estimate is made before anything is allocated.
    #[arg(long, value_name = "BYTES", default_value = "4G")]
    pub max_memory: String,
}

/// Bytes the evaluation allocates, estimated from the shape before anything is allocated: the
/// inputs in f64 (drawn or read) and rounded to the dtype, every tensor's values and presence,
/// a copy of the largest (an Einsum that reads its own output), the outputs' checksums, the
/// reference's copy of the inputs and its output, and one tensor's `.npy` bytes for --dump.
fn memory_estimate(c: &Cascade, shape: &Shape, dtype: Dtype) -> Option<u64> {
    let p = cascade_ir::eval::points(c, shape)?;
    let elem: u64 = match dtype {
        Dtype::F64 => 8,
        Dtype::F32 => 4,
    };
    let [total, inputs, outputs, largest] =
        [p.total, p.inputs, p.outputs, p.largest].map(|n| n as u64);
    let terms = [
        inputs.checked_mul(8 + elem + 8)?,
        total.checked_add(largest)?.checked_mul(elem + 1)?,
        outputs.checked_mul(8 + 8)?,
        largest.checked_mul(elem)?,
    ];
    terms.iter().try_fold(0u64, |acc, t| acc.checked_add(*t))
}

/// Refuses a shape whose evaluation would need more than `--max-memory`.
fn check_memory(c: &Cascade, shape: &Shape, args: &Args) -> anyhow::Result<()> {
    use cascade_cli::values::{self, MAX_MEMORY_BYTES, human_bytes};
    let limit = values::bytes(&args.max_memory, "--max-memory", MAX_MEMORY_BYTES)
        .map_err(|e| UserError::message(e.0))?;
    let need = memory_estimate(c, shape, args.dtype);
    match need {
        Some(need) if need <= limit => Ok(()),
        Some(need) => Err(UserError::message(format!(
            "--shape {}: evaluating {} would allocate about {need} bytes ({}), more than --max-memory {} ({}); evaluate a smaller shape or raise --max-memory",
            args.shape,
            c.name,
            human_bytes(need),
            args.max_memory,
            human_bytes(limit)
        ))
        .into()),
        None => Err(UserError::message(format!(
            "--shape {}: the tensors of {} hold more points than a 64-bit count; evaluate a smaller shape",
            args.shape, c.name
        ))
        .into()),
    }
}

/// Relative error (to the largest finite reference magnitude) under which the result counts as
/// a match.
fn tolerance(dtype: Dtype) -> f64 {
    match dtype {
        Dtype::F64 => 1e-10,
        Dtype::F32 => 1e-4,
    }
}

fn dtype_name(dtype: Dtype) -> &'static str {
    match dtype {
        Dtype::F32 => "f32",
        Dtype::F64 => "f64",
    }
}

/// What `reference: none applies` says when the cascade is no library form.
const NOT_A_LIBRARY_FORM: &str =
    "not structurally a library form; check it yourself with --inputs/--dump";

/// Parses and binds `--shape` for `c`; every problem is a user error.
pub fn resolve_shape(c: &Cascade, text: &str) -> anyhow::Result<Shape> {
    let spec: ShapeSpec = text
        .parse()
        .map_err(|e| UserError::message(format!("--shape {text}: {e}")))?;
    Shape::resolve(c, &spec).map_err(|errors| {
        let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
        UserError::message(format!("--shape {text}: {}", list.join("; "))).into()
    })
}

/// Where the inputs came from.
#[derive(Debug)]
enum Source {
    Seed(u64),
    Files {
        dir: PathBuf,
        /// `.npy` files in the directory that name no input, ignored.
        unknown: Vec<String>,
    },
}

/// Checksums of one output, in f64. `sum`, `sum_sq` and `max_abs` are NaN when a value is.
#[derive(Debug)]
struct Checksums {
    name: String,
    dims: Vec<usize>,
    present: usize,
    sum: f64,
    sum_sq: f64,
    max_abs: f64,
    nan: usize,
    inf: usize,
    values: Vec<f64>,
}

impl Checksums {
    fn of<T: Float>(name: &str, t: &TensorValue<T>) -> Checksums {
        let values: Vec<f64> = t
            .values
            .iter()
            .map(|x| x.to_f64().unwrap_or(f64::NAN))
            .collect();
        let (nan, inf) = eval_io::non_finite(values.iter());
        Checksums {
            name: name.to_string(),
            dims: t.values.shape().to_vec(),
            present: t.present_count(),
            sum: values.iter().sum(),
            sum_sq: values.iter().map(|x| x * x).sum(),
            // `f64::max` drops NaN; a NaN anywhere makes the maximum NaN.
            max_abs: if nan > 0 {
                f64::NAN
            } else {
                values.iter().fold(0.0, |m, x| m.max(x.abs()))
            },
            nan,
            inf,
            values,
        }
    }
}

/// The evaluation's results, in f64 whatever the dtype.
#[derive(Debug)]
struct Results {
    seconds: f64,
    outputs: Vec<Checksums>,
    dumped: Option<Vec<Dumped>>,
}

/// The comparison with a direct reference, or why none applies.
#[derive(Debug)]
enum Comparison {
    None(String),
    Done(Box<Verdict>),
}

#[derive(Debug)]
struct Verdict {
    known: Known,
    output: String,
    max_abs: f64,
    max_rel: f64,
    ref_max: f64,
    tolerance: f64,
    nan: usize,
    ok: bool,
}

/// The error at one point: 0 where the values are equal (also the same infinity), infinite
/// where either is NaN or infinite and they differ.
fn point_error(got: f64, want: f64) -> f64 {
    if got == want {
        0.0
    } else if got.is_finite() && want.is_finite() {
        (got - want).abs()
    } else {
        f64::INFINITY
    }
}

/// Compares `got` with `want` (same length): max absolute error, max relative error to the
/// largest finite |want|, and that largest |want|.
fn errors(got: &[f64], want: &[f64]) -> (f64, f64, f64) {
    let max_abs = got
        .iter()
        .zip(want)
        .fold(0.0f64, |m, (g, w)| m.max(point_error(*g, *w)));
    let ref_max = want
        .iter()
        .filter(|w| w.is_finite())
        .fold(0.0f64, |m, w| m.max(w.abs()));
    let max_rel = if ref_max > 0.0 {
        max_abs / ref_max
    } else {
        max_abs
    };
    (max_abs, max_rel, ref_max)
}

fn compare(
    c: &Cascade,
    shape: &Shape,
    inputs: &BTreeMap<String, ArrayD<f64>>,
    out: Option<&Checksums>,
    dtype: Dtype,
) -> Comparison {
    let Some(known) = reference::known_form(c) else {
        return Comparison::None(NOT_A_LIBRARY_FORM.into());
    };
    let want = match known.compute(c, shape, inputs) {
        Ok(want) => want,
        Err(e) => return Comparison::None(e.to_string()),
    };
    let Some(out) = out else {
        return Comparison::None("the cascade has no output".into());
    };
    if want.shape() != out.dims.as_slice() {
        return Comparison::None(format!(
            "the output has shape {}, the reference {}",
            tuple(&out.dims),
            tuple(want.shape())
        ));
    }
    let want: Vec<f64> = want.iter().copied().collect();
    let (max_abs, max_rel, ref_max) = errors(&out.values, &want);
    let tolerance = tolerance(dtype);
    Comparison::Done(Box::new(Verdict {
        known,
        output: out.name.clone(),
        max_abs,
        max_rel,
        ref_max,
        tolerance,
        nan: out.nan,
        ok: out.nan == 0 && max_rel <= tolerance,
    }))
}

/// Evaluates in `T`, then dumps; the inputs are rounded from f64.
fn evaluate_as<T: cascade_ir::ops::Element + NpyElement>(
    c: &Cascade,
    shape: &Shape,
    inputs: &BTreeMap<String, ArrayD<f64>>,
    args: &Args,
) -> anyhow::Result<Results> {
    let inputs: BTreeMap<String, ArrayD<T>> = inputs
        .iter()
        .map(|(n, a)| (n.clone(), a.mapv(|x| T::from(x).unwrap_or_else(T::nan))))
        .collect();
    let start = Instant::now();
    let ev: Evaluation<T> =
        evaluate(c, shape, &inputs).map_err(|e| UserError::message(format!("{}: {e}", c.name)))?;
    let seconds = start.elapsed().as_secs_f64();
    let outputs = ev
        .outputs
        .iter()
        .filter_map(|name| ev.tensor(name).map(|t| Checksums::of(name, t)))
        .collect();
    let dumped = match &args.dump {
        Some(dir) => Some(eval_io::dump(dir, c, &ev, args.all)?),
        None => None,
    };
    Ok(Results {
        seconds,
        outputs,
        dumped,
    })
}

pub fn run(args: Args, format: Format) -> anyhow::Result<()> {
    let loaded = load::load(&args.target)?;
    let c = &loaded.parsed.cascade;
    let shape = resolve_shape(c, &args.shape)?;
    check_memory(c, &shape, &args)?;
    let (inputs, source) = match &args.inputs {
        Some(dir) => {
            let files = eval_io::read_inputs(dir, c, &shape, &args.shape)?;
            let source = Source::Files {
                dir: dir.clone(),
                unknown: files.unknown,
            };
            (files.inputs, source)
        }
        None => {
            let seed = args.seed.unwrap_or(0);
            (
                reference::random_inputs(c, &shape, seed),
                Source::Seed(seed),
            )
        }
    };
    let results = match args.dtype {
        Dtype::F64 => evaluate_as::<f64>(c, &shape, &inputs, &args)?,
        Dtype::F32 => evaluate_as::<f32>(c, &shape, &inputs, &args)?,
    };
    let comparison = compare(c, &shape, &inputs, results.outputs.first(), args.dtype);
    let report = Report {
        c,
        path: &loaded.path,
        args: &args,
        source: &source,
        results: &results,
        comparison: &comparison,
    };
    match format {
        Format::Text => report.print_text(),
        Format::Json => print_json(&report.to_json()),
    }
    match &comparison {
        Comparison::Done(v) if !v.ok => Err(outside_tolerance(v).into()),
        _ => Ok(()),
    }
}

/// The exit-1 error of a result that its reference refutes.
fn outside_tolerance(v: &Verdict) -> UserError {
    let why = if v.nan > 0 {
        format!("holds {} NaN", v.nan)
    } else {
        format!(
            "is outside the tolerance ({:.3e} max rel error > {:e})",
            v.max_rel, v.tolerance
        )
    };
    UserError::message(format!(
        "output {} {why} against the reference {} of library {}",
        v.output, v.known.form, v.known.library
    ))
}

/// Everything one run prints.
struct Report<'a> {
    c: &'a Cascade,
    path: &'a str,
    args: &'a Args,
    source: &'a Source,
    results: &'a Results,
    comparison: &'a Comparison,
}

/// `3 NaN, 1 inf` or `none`.
fn non_finite_text(nan: usize, inf: usize) -> String {
    if nan == 0 && inf == 0 {
        "none".into()
    } else {
        format!("{nan} NaN, {inf} inf")
    }
}

impl Report<'_> {
    fn print_text(&self) {
        let inputs = match self.source {
            Source::Seed(seed) => format!("seed {seed}"),
            Source::Files { dir, .. } => format!("inputs {}", dir.display()),
        };
        println!(
            "cascade {}  shape {}  {inputs}  dtype {}",
            self.c.name,
            self.args.shape,
            dtype_name(self.args.dtype)
        );
        if let Source::Files { dir, unknown } = self.source
            && !unknown.is_empty()
        {
            eprintln!(
                "warning: --inputs {}: ignored {}, which names no input of {}",
                dir.display(),
                unknown.join(", "),
                self.c.name
            );
        }
        println!("evaluated in {:.3} s", self.results.seconds);
        for s in &self.results.outputs {
            let total: usize = s.dims.iter().product();
            println!(
                "output {} {}: {} of {total} points present",
                s.name,
                tuple(&s.dims),
                s.present
            );
            println!("  sum             {:.15e}", s.sum);
            println!("  sum of squares  {:.15e}", s.sum_sq);
            println!("  max |x|         {:.15e}", s.max_abs);
            println!("  non-finite      {}", non_finite_text(s.nan, s.inf));
        }
        self.print_comparison();
        if let (Some(dumped), Some(dir)) = (&self.results.dumped, &self.args.dump) {
            print_dump(dir, dumped);
        }
    }

    fn print_comparison(&self) {
        match self.comparison {
            Comparison::None(why) => println!("reference: none applies ({why})"),
            Comparison::Done(v) => {
                println!(
                    "reference: {} (structurally library {})",
                    v.known.form, v.known.library
                );
                let renamed: Vec<String> = roles(self.c, &v.known)
                    .into_iter()
                    .filter(|(own, library)| own != library)
                    .map(|(own, library)| format!("{own} is {library}"))
                    .collect();
                if !renamed.is_empty() {
                    println!("  tensors         {}", renamed.join(", "));
                }
                println!("  max abs error   {:.3e}", v.max_abs);
                println!(
                    "  max rel error   {:.3e} (relative to max |reference| = {:.6e})",
                    v.max_rel, v.ref_max
                );
                if v.nan > 0 {
                    println!("  output NaN      {}", v.nan);
                }
                let verdict = if v.ok { "yes" } else { "NO" };
                println!("  within {:e}: {verdict}", v.tolerance);
            }
        }
    }

    fn to_json(&self) -> Value {
        let (seed, inputs_dir, ignored) = match self.source {
            Source::Seed(seed) => (Some(*seed), None, Vec::new()),
            Source::Files { dir, unknown } => {
                (None, Some(dir.display().to_string()), unknown.clone())
            }
        };
        let ok = !matches!(self.comparison, Comparison::Done(v) if !v.ok);
        json!({
            "ok": ok,
            "file": self.path,
            "cascade": self.c.name,
            "shape": self.args.shape,
            "seed": seed,
            "inputs_dir": inputs_dir,
            "ignored_files": ignored,
            "dtype": dtype_name(self.args.dtype),
            "seconds": self.results.seconds,
            "outputs": self.results.outputs.iter().map(|s| json!({
                "name": s.name,
                "dims": s.dims,
                "present": s.present,
                "sum": num(s.sum),
                "sum_of_squares": num(s.sum_sq),
                "max_abs": num(s.max_abs),
                "nan": s.nan,
                "inf": s.inf,
            })).collect::<Vec<_>>(),
            "reference": comparison_json(self.c, self.comparison),
            "dump": self.results.dumped.as_ref().map(|d| dump_json(self.args, d)),
        })
    }
}

fn comparison_json(c: &Cascade, cmp: &Comparison) -> Value {
    match cmp {
        Comparison::None(why) => json!({ "form": null, "reason": why }),
        Comparison::Done(v) => json!({
                "form": v.known.form.to_string(),
                "library": v.known.library,
                "recognised_by": "structure",
                "roles": roles(c, &v.known),
                "output": v.output,
                "max_abs_error": num(v.max_abs),
                "max_rel_error": num(v.max_rel),
                "reference_max_abs": num(v.ref_max),
                "tolerance": v.tolerance,
                "output_nan": v.nan,
            "within_tolerance": v.ok,
        }),
    }
}

/// The library tensor that each input and output plays, by the cascade's own names.
fn roles(c: &Cascade, known: &Known) -> BTreeMap<String, String> {
    c.tensors
        .iter()
        .enumerate()
        .filter(|(i, t)| {
            t.kind == cascade_ir::TensorKind::Input || c.outputs.iter().any(|o| o.index() == *i)
        })
        .filter_map(|(i, t)| Some((t.name.clone(), known.library_names.get(i)?.clone())))
        .collect()
}

fn dump_json(args: &Args, dumped: &[Dumped]) -> Value {
    json!({
        "dir": args.dump.as_ref().map(|d| d.display().to_string()),
        "all": args.all,
        "tensors": dumped.iter().map(|d| json!({
            "tensor": d.tensor,
            "file": d.file,
            "present_file": d.present_file,
            "dims": d.dims,
            "present": d.present,
            "nan": d.nan,
            "inf": d.inf,
        })).collect::<Vec<_>>(),
    })
}

fn print_dump(dir: &std::path::Path, dumped: &[Dumped]) {
    let plural = if dumped.len() == 1 { "" } else { "s" };
    println!(
        "wrote {} tensor{plural} to {} (absent points hold 0; T.present.npy is true where T is present)",
        dumped.len(),
        dir.display()
    );
    let files: Vec<String> = dumped
        .iter()
        .map(|d| match &d.present_file {
            Some(p) => format!("{} {p}", d.file),
            None => d.file.clone(),
        })
        .collect();
    let dims: Vec<String> = dumped.iter().map(|d| tuple(&d.dims)).collect();
    let files_width = files.iter().map(String::len).max().unwrap_or(0);
    let dims_width = dims.iter().map(String::len).max().unwrap_or(0);
    for ((d, files), dims) in dumped.iter().zip(&files).zip(&dims) {
        let total: usize = d.dims.iter().product();
        println!(
            "  {files:files_width$}  {dims:dims_width$}  {} of {total} present, non-finite {}",
            d.present,
            non_finite_text(d.nan, d.inf)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_and_equal_infinities_have_no_error() {
        assert_eq!(point_error(1.5, 1.5), 0.0);
        assert_eq!(point_error(f64::INFINITY, f64::INFINITY), 0.0);
        assert_eq!(point_error(1.0, 1.25), 0.25);
    }

    #[test]
    fn nan_and_unmatched_infinities_are_infinite_errors() {
        assert_eq!(point_error(f64::NAN, 1.0), f64::INFINITY);
        assert_eq!(point_error(f64::NAN, f64::NAN), f64::INFINITY);
        assert_eq!(point_error(f64::INFINITY, 1e300), f64::INFINITY);
        assert_eq!(point_error(f64::NEG_INFINITY, f64::INFINITY), f64::INFINITY);
    }

    #[test]
    fn errors_are_relative_to_the_largest_finite_reference_value() {
        let (abs, rel, max) = errors(&[1.0, 2.5, 0.0], &[1.0, 2.0, -4.0]);
        assert_eq!((abs, rel, max), (4.0, 1.0, 4.0));
        // An infinite reference value does not make every error relatively small.
        let (abs, rel, max) = errors(&[1.5, f64::INFINITY], &[1.0, f64::INFINITY]);
        assert_eq!((abs, rel, max), (0.5, 0.5, 1.0));
        let (_, rel, _) = errors(&[f64::NAN], &[0.0]);
        assert_eq!(rel, f64::INFINITY);
    }

    #[test]
    fn nan_propagates_into_max_abs_and_is_counted() {
        let t = TensorValue {
            values: ndarray::array![1.0, f64::NAN, -3.0, f64::NEG_INFINITY].into_dyn(),
            present: ndarray::array![true, true, true, false].into_dyn(),
        };
        let s = Checksums::of("X", &t);
        assert!(s.max_abs.is_nan() && s.sum.is_nan());
        assert_eq!((s.nan, s.inf, s.present), (1, 1, 3));
        assert_eq!(non_finite_text(s.nan, s.inf), "1 NaN, 1 inf");
        let finite = TensorValue {
            values: ndarray::array![1.0, -3.0].into_dyn(),
            present: ndarray::array![true, true].into_dyn(),
        };
        assert_eq!(Checksums::of("Y", &finite).max_abs, 3.0);
    }
}
