//! `cascade eval FILE|NAME --shape E=64,F=64,M=1024,P=1024 [--seed N] [--dtype f32|f64]`:
//! runs the reference interpreter on seeded random inputs, prints output checksums and, for a
//! known attention form, the error against the direct reference.

use std::collections::BTreeMap;
use std::time::Instant;

use cascade_ir::eval::{Evaluation, evaluate};
use cascade_ir::reference::{self, Known, Recognised};
use cascade_ir::{Cascade, Shape, ShapeSpec};
use ndarray::ArrayD;
use num_traits::Float;
use serde_json::{Value, json};

use crate::load;
use crate::output::{Format, UserError, print_json};

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
    /// Seed of the random inputs (uniform in [-1, 1), one ChaCha8 stream in declaration order).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Evaluate in f64 or f32 (inputs are drawn in f64 and rounded).
    #[arg(long, value_enum, default_value_t = Dtype::F64)]
    pub dtype: Dtype,
}

/// Relative error (to the largest reference magnitude) under which the result counts as a match.
fn tolerance(dtype: Dtype) -> f64 {
    match dtype {
        Dtype::F64 => 1e-10,
        Dtype::F32 => 1e-4,
    }
}

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

/// Checksums of one output, in f64.
#[derive(Debug)]
struct Checksums {
    name: String,
    dims: Vec<usize>,
    present: usize,
    sum: f64,
    sum_sq: f64,
    max_abs: f64,
    values: Vec<f64>,
}

fn checksums<T: Float>(ev: &Evaluation<T>) -> Vec<Checksums> {
    ev.outputs
        .iter()
        .filter_map(|name| ev.tensor(name).map(|t| (name, t)))
        .map(|(name, t)| {
            let values: Vec<f64> = t
                .values
                .iter()
                .map(|x| x.to_f64().unwrap_or(f64::NAN))
                .collect();
            Checksums {
                name: name.clone(),
                dims: t.values.shape().to_vec(),
                present: t.present_count(),
                sum: values.iter().sum(),
                sum_sq: values.iter().map(|x| x * x).sum(),
                max_abs: values.iter().fold(0.0, |m, x| m.max(x.abs())),
                values,
            }
        })
        .collect()
}

/// The comparison with a direct reference, or why there is none.
#[derive(Debug)]
enum Comparison {
    None(String),
    Done {
        known: Known,
        max_abs: f64,
        max_rel: f64,
        ref_max: f64,
        ok: bool,
    },
}

fn compare(
    c: &Cascade,
    shape: &Shape,
    inputs: &BTreeMap<String, ArrayD<f64>>,
    out: Option<&Checksums>,
    dtype: Dtype,
) -> Comparison {
    let Some(known) = reference::known_form(c) else {
        return Comparison::None("not a known attention form".into());
    };
    let want = match reference::compute(known.form, c, shape, inputs) {
        Ok(want) => want,
        Err(e) => return Comparison::None(e.to_string()),
    };
    let Some(out) = out else {
        return Comparison::None("the cascade has no output".into());
    };
    if want.shape() != out.dims.as_slice() {
        return Comparison::None(format!(
            "the output has shape {:?}, the reference {:?}",
            out.dims,
            want.shape()
        ));
    }
    let max_abs = want.iter().zip(&out.values).fold(0.0f64, |m, (w, g)| {
        // NaN must show as a failure, not vanish in `max`.
        if (g - w).is_nan() {
            f64::INFINITY
        } else {
            m.max((g - w).abs())
        }
    });
    let ref_max = want.iter().fold(0.0f64, |m, w| m.max(w.abs()));
    let max_rel = if ref_max > 0.0 {
        max_abs / ref_max
    } else {
        max_abs
    };
    let ok = max_rel <= tolerance(dtype);
    Comparison::Done {
        known,
        max_abs,
        max_rel,
        ref_max,
        ok,
    }
}

pub fn run(args: Args, format: Format) -> anyhow::Result<()> {
    let loaded = load::load(&args.target)?;
    let c = &loaded.parsed.cascade;
    let shape = resolve_shape(c, &args.shape)?;
    let inputs = reference::random_inputs(c, &shape, args.seed);
    let user = |e: cascade_ir::eval::EvalError| UserError::message(format!("{}: {e}", c.name));
    let start = Instant::now();
    let sums = match args.dtype {
        Dtype::F64 => checksums(&evaluate(c, &shape, &inputs).map_err(user)?),
        Dtype::F32 => {
            let inputs32 = inputs
                .iter()
                .map(|(n, a)| (n.clone(), a.mapv(|x| x as f32)))
                .collect();
            checksums(&evaluate::<f32>(c, &shape, &inputs32).map_err(user)?)
        }
    };
    let seconds = start.elapsed().as_secs_f64();
    let comparison = compare(c, &shape, &inputs, sums.first(), args.dtype);
    match format {
        Format::Text => print_text(c, &args, seconds, &sums, &comparison),
        Format::Json => print_json(&to_json(
            c,
            &loaded.path,
            &args,
            seconds,
            &sums,
            &comparison,
        )),
    }
    Ok(())
}

fn dtype_name(dtype: Dtype) -> &'static str {
    match dtype {
        Dtype::F32 => "f32",
        Dtype::F64 => "f64",
    }
}

fn recognised(by: Recognised) -> &'static str {
    match by {
        Recognised::Structure => "structure",
        Recognised::Name => "name",
    }
}

fn print_text(c: &Cascade, args: &Args, seconds: f64, sums: &[Checksums], cmp: &Comparison) {
    println!(
        "cascade {}  shape {}  seed {}  dtype {}",
        c.name,
        args.shape,
        args.seed,
        dtype_name(args.dtype)
    );
    println!("evaluated in {seconds:.3} s");
    for s in sums {
        let total: usize = s.dims.iter().product();
        println!(
            "output {} {:?}: {} of {total} points present",
            s.name, s.dims, s.present
        );
        println!("  sum             {:.15e}", s.sum);
        println!("  sum of squares  {:.15e}", s.sum_sq);
        println!("  max |x|         {:.15e}", s.max_abs);
    }
    match cmp {
        Comparison::None(why) => println!("reference: none ({why})"),
        Comparison::Done {
            known,
            max_abs,
            max_rel,
            ref_max,
            ok,
        } => {
            println!(
                "reference: {} (library {}, recognised by {})",
                known.form,
                known.library,
                recognised(known.by)
            );
            println!("  max abs error   {max_abs:.3e}");
            println!(
                "  max rel error   {max_rel:.3e} (relative to max |reference| = {ref_max:.6e})"
            );
            let verdict = if *ok { "yes" } else { "NO" };
            println!("  within {:e}: {verdict}", tolerance(args.dtype));
        }
    }
}

fn to_json(
    c: &Cascade,
    path: &str,
    args: &Args,
    seconds: f64,
    sums: &[Checksums],
    cmp: &Comparison,
) -> Value {
    let reference = match cmp {
        Comparison::None(why) => json!({ "form": null, "reason": why }),
        Comparison::Done {
            known,
            max_abs,
            max_rel,
            ref_max,
            ok,
        } => json!({
            "form": known.form.to_string(),
            "library": known.library,
            "recognised_by": recognised(known.by),
            "max_abs_error": max_abs,
            "max_rel_error": max_rel,
            "reference_max_abs": ref_max,
            "tolerance": tolerance(args.dtype),
            "within_tolerance": ok,
        }),
    };
    json!({
        "ok": true,
        "file": path,
        "cascade": c.name,
        "shape": args.shape,
        "seed": args.seed,
        "dtype": dtype_name(args.dtype),
        "seconds": seconds,
        "outputs": sums.iter().map(|s| json!({
            "name": s.name,
            "dims": s.dims,
            "present": s.present,
            "sum": s.sum,
            "sum_of_squares": s.sum_sq,
            "max_abs": s.max_abs,
        })).collect::<Vec<_>>(),
        "reference": reference,
    })
}
