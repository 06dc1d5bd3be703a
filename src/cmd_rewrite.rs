//! `cascade rewrite FILE|NAME`: equality saturation; prints the cheapest equivalent cascade
//! under flops or, with `--arch`, under the scheduler's per-op-kind hardware prices.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use cascade_ir::ShapeSpec;
use cascade_ir::dsl;
use cascade_ir::ops::OpKind;
use cascade_ir::passes;
use cascade_ir::rewrite::{self, CostModel, Limits, Objective, OpWeights, RewriteConfig, RuleSets};
use cascade_scheduler::{HardwareCost, Metric};
use serde_json::json;

use crate::arch_load;
use crate::load;
use crate::output::{Format, UserError, num, print_json};

/// What extraction minimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ObjectiveArg {
    /// Fewest passes over the rank, then the cheapest (in flops, or on `--arch` if given).
    Passes,
    /// Fewest ops (flops: a multiply-accumulate counts 2).
    Ops,
    /// Cheapest on the `--arch` hardware by `--metric` (per-op-kind weights of its units).
    Hardware,
}

/// What a hardware cost charges per op.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MetricArg {
    /// Unit cycles: one PE's cycles for the op over the unit's PE count.
    Cycles,
    /// Energy of the op's actions (pJ) from the architecture's cost table.
    Energy,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Library cascade name (see `cascade list`) or path to a .cascade file.
    #[arg(value_name = "FILE|NAME")]
    pub input: String,
    #[arg(long, value_enum)]
    pub objective: ObjectiveArg,
    /// Architecture that prices ops for `--objective hardware` (and breaks ties between
    /// cascades with equally few passes for `passes`): a shipped name or a TOML path.
    #[arg(long, value_name = "NAME|FILE")]
    pub arch: Option<String>,
    /// What a hardware cost charges per op (with `--arch`).
    #[arg(long, value_enum, requires = "arch")]
    pub metric: Option<MetricArg>,
    /// The rank whose passes count and which may be split and folded (default: M, else the
    /// first rank).
    #[arg(long)]
    pub rank: Option<String>,
    /// Rank sizes for op counts, e.g. E=64,M=4096 (default: 64 for E and F, 4096 otherwise).
    #[arg(long)]
    pub shape: Option<String>,
    /// Size of the inner rank of a split the rewriter introduces.
    #[arg(long, default_value_t = 64)]
    pub tile: i64,
    /// Do not fold over iterative ranks (no iterative rescaling).
    #[arg(long)]
    pub no_iterative: bool,
    /// Do not defer divisions and multiplications past reductions.
    #[arg(long)]
    pub no_deferral: bool,
    /// Print the chain of rules from the input to the result.
    #[arg(long)]
    pub explain: bool,
    /// Stop saturating at this many e-nodes.
    #[arg(long, default_value_t = 200_000)]
    pub limit_nodes: usize,
    /// Stop saturating after this many iterations.
    #[arg(long, default_value_t = 30)]
    pub limit_iters: usize,
    /// Stop saturating after this many seconds.
    #[arg(long, default_value_t = 10.0)]
    pub limit_time: f64,
    /// Write the extracted cascade to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<String>,
}

pub fn run(args: Args, format: Format) -> anyhow::Result<()> {
    let loaded = load::load(&args.input)?;
    let cascade = &loaded.parsed.cascade;
    let rank = match &args.rank {
        Some(r) if cascade.rank_by_name(r).is_some() => r.clone(),
        Some(r) => {
            let names: Vec<&str> = cascade.ranks.iter().map(|x| x.name.as_str()).collect();
            return Err(UserError::message(format!(
                "--rank {r}: {} declares no rank {r}; use one of {}",
                cascade.name,
                names.join(", ")
            ))
            .into());
        }
        None => passes::default_rank(cascade)
            .map(|r| cascade.rank(r).name.clone())
            .ok_or_else(|| {
                UserError::message(format!(
                    "{} declares no rank to count passes over",
                    cascade.name
                ))
            })?,
    };
    let mut sizes = ShapeSpec::default();
    for r in &cascade.ranks {
        let default = if matches!(r.name.as_str(), "E" | "F") {
            64
        } else {
            4096
        };
        sizes.sizes.insert(r.name.clone(), default);
    }
    if let Some(shape) = &args.shape {
        let given: ShapeSpec = shape
            .parse()
            .map_err(|e| UserError::message(format!("--shape: {e}")))?;
        if let Some(unknown) = given
            .sizes
            .keys()
            .find(|r| cascade.rank_by_name(r).is_none())
        {
            let names: Vec<&str> = cascade.ranks.iter().map(|x| x.name.as_str()).collect();
            return Err(UserError::message(format!(
                "--shape names {unknown}, which {} does not declare; its ranks are {}",
                cascade.name,
                names.join(", ")
            ))
            .into());
        }
        sizes.sizes.extend(given.sizes);
    }
    if !(args.limit_time > 0.0 && args.limit_time.is_finite()) {
        return Err(UserError::message("--limit-time must be a positive number of seconds").into());
    }
    let (cost, model) = cost_model(&args)?;
    let objective = match args.objective {
        ObjectiveArg::Passes => Objective::Passes {
            rank: rank.clone(),
            cost,
        },
        ObjectiveArg::Ops | ObjectiveArg::Hardware => Objective::Cost(cost),
    };
    let config = RewriteConfig {
        objective,
        rules: RuleSets {
            deferral: !args.no_deferral,
            iterative: !args.no_iterative,
        },
        sizes,
        tile: args.tile,
        split_ranks: vec![rank.clone()],
        limits: Limits {
            iterations: args.limit_iters,
            nodes: args.limit_nodes,
            time: Duration::from_secs_f64(args.limit_time),
        },
        explain: args.explain,
    };
    // A rewriter bug (an invalid result it refused to hand on) is an internal error: exit 2.
    let result = rewrite::rewrite(cascade, &config).map_err(|e| match e {
        rewrite::RewriteError::Internal(_) => anyhow::anyhow!(e),
        e => UserError::message(e.to_string()).into(),
    })?;
    let text = dsl::print(&result.cascade);
    if let Some(path) = &args.out {
        crate::files::write_atomic(std::path::Path::new(path), text.as_bytes())?;
    }
    let ops = |m: &BTreeMap<OpKind, f64>| -> BTreeMap<String, u64> {
        m.iter()
            .map(|(k, v)| (k.name().to_string(), *v as u64))
            .collect()
    };
    match format {
        Format::Json => print_json(&json!({
            "input": loaded.path,
            "rank": rank,
            "cascade": if args.out.is_some() { None } else { Some(&text) },
            "out": args.out,
            "cost_model": model.json(),
            "cost": { "before": num(result.before.cost), "after": num(result.after.cost) },
            "passes": { "before": result.before.passes, "after": result.after.passes },
            "ops": { "before": ops(&result.before.ops), "after": ops(&result.after.ops) },
            "stop": result.stop.to_string(),
            "iterations": result.iterations,
            "egraph_nodes": result.egraph_nodes,
            "explanation": result.explanation.as_ref().map(|steps| {
                steps.iter().map(|s| json!({ "rule": s.rule, "forward": s.forward })).collect::<Vec<_>>()
            }),
        })),
        Format::Text => {
            let mut out = String::new();
            if args.out.is_none() {
                out.push_str(&text);
                out.push('\n');
            }
            let show = |m: &BTreeMap<OpKind, f64>| {
                m.iter()
                    .map(|(k, v)| format!("{k} {}", *v as u64))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let _ = writeln!(
                out,
                "passes over {rank}: {} -> {}",
                result.before.passes, result.after.passes
            );
            let _ = writeln!(out, "ops before: {}", show(&result.before.ops));
            let _ = writeln!(out, "ops after:  {}", show(&result.after.ops));
            let _ = writeln!(out, "cost model: {}", model.describe());
            let _ = writeln!(
                out,
                "cost: {:.6e} -> {:.6e}",
                result.before.cost, result.after.cost
            );
            let _ = writeln!(
                out,
                "stop: {} after {} iterations, {} e-nodes",
                result.stop, result.iterations, result.egraph_nodes
            );
            if let Some(path) = &args.out {
                let _ = writeln!(out, "wrote {path}");
            }
            if let Some(steps) = &result.explanation {
                let _ = writeln!(out, "explanation ({} steps):", steps.len());
                for (i, s) in steps.iter().enumerate() {
                    let dir = if s.forward { "" } else { " (backward)" };
                    let _ = writeln!(out, "  {:>3}. {}{dir}", i + 1, s.rule);
                }
            }
            // A closed pipe (`| head`) is not an error of the rewrite.
            crate::output::write_stdout(out.as_bytes())?;
        }
    }
    Ok(())
}

/// The cost model extraction uses, with what the output says about it.
enum Model {
    Flops,
    Hardware(HardwareCost),
}

impl Model {
    fn describe(&self) -> String {
        match self {
            Model::Flops => "flops (mac 2, every other op 1)".to_string(),
            Model::Hardware(h) => {
                let missing = h.unsupported();
                let mut text = h.to_string();
                if !missing.is_empty() {
                    let names: Vec<&str> = missing.iter().map(|k| k.name()).collect();
                    let _ = write!(
                        text,
                        "; no unit executes {}, so a cascade that needs it costs inf",
                        names.join(", ")
                    );
                }
                text
            }
        }
    }

    fn json(&self) -> serde_json::Value {
        match self {
            Model::Flops => json!({ "kind": "flops" }),
            Model::Hardware(h) => json!({
                "kind": "hardware",
                "arch": h.arch(),
                "metric": h.metric().name(),
                "weights": OpKind::ALL.iter().map(|k| (k.name().to_string(), match h.price(*k) {
                    Some(p) => json!({ "unit": p.unit, "weight": p.weight }),
                    None => serde_json::Value::Null,
                })).collect::<serde_json::Map<_, _>>(),
            }),
        }
    }
}

/// Flops, or the `--arch` hardware priced by `--metric` (cycles unless told otherwise).
fn cost_model(args: &Args) -> anyhow::Result<(Arc<dyn CostModel>, Model)> {
    let metric = match args.metric.unwrap_or(MetricArg::Cycles) {
        MetricArg::Cycles => Metric::Cycles,
        MetricArg::Energy => Metric::Energy,
    };
    match (&args.arch, args.objective) {
        (None, ObjectiveArg::Hardware) => Err(UserError::message(
            "--objective hardware prices ops on an architecture; add --arch NAME|FILE (e.g. --arch fusemax)",
        )
        .into()),
        (Some(_), ObjectiveArg::Ops) => Err(UserError::message(
            "--objective ops counts flops and ignores --arch; use --objective hardware to price ops on the architecture",
        )
        .into()),
        (None, _) => Ok((Arc::new(OpWeights::flops()), Model::Flops)),
        (Some(arch), _) => {
            let hw = HardwareCost::new(&arch_load::arch(arch)?, metric);
            Ok((Arc::new(hw.clone()), Model::Hardware(hw)))
        }
    }
}
