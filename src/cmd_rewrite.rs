//! `cascade rewrite FILE|NAME`: equality saturation; prints the cheapest equivalent cascade
//! under flops or, with `--arch`, under the scheduler's per-op-kind hardware prices.
//!
//! Standard output holds only the derived cascade (named `<input>_derived` unless `--name`),
//! so `cascade rewrite X > x.cascade` writes a file that parses; passes, op counts, the stop
//! reason and the `--explain` chain go to standard error. With `--format json` one object on
//! standard output carries the cascade and every statistic.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use cascade_ir::ShapeSpec;
use cascade_ir::dsl;
use cascade_ir::ops::OpKind;
use cascade_ir::passes::{self, RankChoice};
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
    /// Cheapest on the `--arch` hardware by `--metric` among the forms that stream over the
    /// rank (a recurrence reads each key once: the 1-pass form, split-K, …); a loop's steps
    /// are priced on each unit's PEs, so few points per step leave PEs idle.
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
    /// The rank whose passes count and which may be split and folded (default: the rank the
    /// softmax normaliser reduces, else the loop's, else the one the last reduction reduces).
    #[arg(long)]
    pub rank: Option<String>,
    /// The derived cascade's name (default: the input's name followed by `_derived`).
    #[arg(long)]
    pub name: Option<String>,
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
    /// Stop saturating at this many e-nodes (1 to 100000000).
    #[arg(long, default_value_t = 200_000)]
    pub limit_nodes: usize,
    /// Stop saturating after this many iterations (0 to 100000; 0 extracts the input as it is).
    #[arg(long, default_value_t = 30)]
    pub limit_iters: usize,
    /// Stop saturating after this many seconds (more than 0, at most 86400); extraction and
    /// lowering share the budget, so the command ends within about twice this.
    #[arg(long, default_value_t = 10.0)]
    pub limit_time: f64,
    /// Write the extracted cascade to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<String>,
}

/// The largest limits a user may ask for: beyond them a run would not end in a useful time.
const MAX_NODES: usize = 100_000_000;
const MAX_ITERS: usize = 100_000;
const MAX_SECONDS: f64 = 86_400.0;

/// The limits, or a user error naming the flag and its range.
fn limits(args: &Args) -> Result<Limits, UserError> {
    if !(1..=MAX_NODES).contains(&args.limit_nodes) {
        return Err(UserError::message(format!(
            "--limit-nodes {}: give a number of e-nodes from 1 to {MAX_NODES}",
            args.limit_nodes
        )));
    }
    if args.limit_iters > MAX_ITERS {
        return Err(UserError::message(format!(
            "--limit-iters {}: give at most {MAX_ITERS} iterations",
            args.limit_iters
        )));
    }
    let t = args.limit_time;
    if !(t > 0.0 && t <= MAX_SECONDS) {
        return Err(UserError::message(format!(
            "--limit-time {t}: give a number of seconds above 0 and at most {MAX_SECONDS}"
        )));
    }
    if args.tile < 1 {
        return Err(UserError::message(format!(
            "--tile {}: the tile of a split needs at least 1 element",
            args.tile
        )));
    }
    Ok(Limits {
        iterations: args.limit_iters,
        nodes: args.limit_nodes,
        time: Duration::from_secs_f64(t),
    })
}

/// `--rank`, or the rank the cascade's structure names; an ambiguous cascade asks for one, and
/// so does one that reduces nothing when passes are the objective (`None` otherwise).
fn rank(args: &Args, cascade: &cascade_ir::Cascade) -> Result<Option<String>, UserError> {
    let names = || {
        cascade
            .ranks
            .iter()
            .map(|x| x.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match &args.rank {
        Some(r) if cascade.rank_by_name(r).is_some() => Ok(Some(r.clone())),
        Some(r) => Err(UserError::message(format!(
            "--rank {r}: {} declares no rank {r}; use one of {}",
            cascade.name,
            names()
        ))),
        None => match passes::rank_choice(cascade) {
            RankChoice::One(r) => Ok(Some(cascade.rank(r).name.clone())),
            RankChoice::Ambiguous(ranks) => {
                let ranks: Vec<String> = ranks
                    .iter()
                    .map(|r| cascade.rank(*r).name.clone())
                    .collect();
                Err(UserError::message(format!(
                    "{} has normalisers over {}, so which rank to optimise is ambiguous; pass --rank {}",
                    cascade.name,
                    ranks.join(" and "),
                    ranks.join(" or --rank ")
                )))
            }
            RankChoice::None if args.objective != ObjectiveArg::Passes => Ok(None),
            RankChoice::None => Err(UserError::message(format!(
                "{} reduces no rank; pass --rank with one of {}",
                cascade.name,
                names()
            ))),
        },
    }
}

/// `--name`, checked to be a name the DSL reads back, or `<input>_derived`.
fn derived_name(args: &Args, input: &str) -> Result<String, UserError> {
    let Some(name) = &args.name else {
        return Ok(format!("{input}_derived"));
    };
    let mut chars = name.chars();
    let ident = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ident || dsl::RESERVED.contains(&name.as_str()) {
        return Err(UserError::message(format!(
            "--name {name}: a cascade's name is a letter or `_` followed by letters, digits or `_`, and no keyword"
        )));
    }
    Ok(name.clone())
}

pub fn run(args: Args, format: Format) -> anyhow::Result<()> {
    let loaded = load::load(&args.input)?;
    let cascade = &loaded.parsed.cascade;
    let rank = rank(&args, cascade)?;
    let name = derived_name(&args, &cascade.name)?;
    let limits = limits(&args)?;
    // Default sizes for op counts; the parts of the cascade's own splits (and a second
    // variable over an inner part) follow from them.
    let parts: Vec<_> = cascade
        .ranks
        .iter()
        .filter_map(|r| r.split)
        .flat_map(|(o, i)| std::iter::once(o).chain(cascade.inner_parts(i)))
        .collect();
    let mut sizes = ShapeSpec::default();
    for (i, r) in cascade.ranks.iter().enumerate() {
        if parts.contains(&cascade_ir::RankId(i as u32)) {
            continue;
        }
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
    let (cost, model) = cost_model(&args)?;
    let objective = match (args.objective, &rank) {
        (ObjectiveArg::Passes, _) => Objective::Passes {
            rank: rank.clone().unwrap_or_default(),
            cost,
        },
        (ObjectiveArg::Hardware, Some(rank)) => Objective::Streaming {
            rank: rank.clone(),
            cost,
        },
        (ObjectiveArg::Ops | ObjectiveArg::Hardware, _) => Objective::Cost(cost),
    };
    let config = RewriteConfig {
        objective,
        rules: RuleSets {
            deferral: !args.no_deferral,
            iterative: !args.no_iterative,
        },
        sizes,
        tile: args.tile,
        split_ranks: rank.iter().cloned().collect(),
        limits,
        explain: args.explain,
    };
    // A rewriter bug (an invalid result it refused to hand on) is an internal error: exit 2.
    let mut result = rewrite::rewrite(cascade, &config).map_err(|e| match e {
        rewrite::RewriteError::Internal(_) => anyhow::anyhow!(e),
        e => UserError::message(e.to_string()).into(),
    })?;
    result.cascade.name = name;
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
            "name": result.cascade.name,
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
            "egraph_classes": result.egraph_classes,
            "elapsed_s": result.elapsed.as_secs_f64(),
            "limits": {
                "nodes": config.limits.nodes,
                "iterations": config.limits.iterations,
                "time_s": config.limits.time.as_secs_f64(),
            },
            "explanation": result.explanation.as_ref().map(|steps| {
                steps.iter().map(|s| json!({ "rule": s.rule, "forward": s.forward, "term": s.term })).collect::<Vec<_>>()
            }),
        })),
        Format::Text => {
            if args.out.is_none() {
                // A closed pipe (`| head`) is not an error of the rewrite.
                crate::output::write_stdout(format!("{text}\n").as_bytes())?;
            }
            let mut out = String::new();
            let show = |m: &BTreeMap<OpKind, f64>| {
                m.iter()
                    .map(|(k, v)| format!("{k} {}", *v as u64))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            if let Some(rank) = &rank {
                let _ = writeln!(
                    out,
                    "passes over {rank}: {} -> {}",
                    result.before.passes, result.after.passes
                );
            }
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
                "stop: {} after {} iterations, {} e-nodes, {:.3} s",
                result.stop,
                result.iterations,
                result.egraph_nodes,
                result.elapsed.as_secs_f64()
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
            eprint!("{out}");
        }
    }
    Ok(())
}

/// The cost model extraction uses, with what the output says about it.
enum Model {
    Flops,
    Hardware(HardwareCost),
}

/// An architecture's prices with the parallelism of its units: a step of a loop runs its
/// points on the PEs of the op's unit, so it takes at least one op's cycles however few points
/// it has (one query of decode fills a column of a 256×256 array). Energy does not depend on it.
#[derive(Debug, Clone)]
struct Parallel {
    hw: HardwareCost,
    /// PEs of the unit each op kind is charged on.
    pes: BTreeMap<OpKind, f64>,
}

impl Parallel {
    fn new(arch: &cascade_scheduler::ArchSpec, hw: HardwareCost) -> Parallel {
        let pes = OpKind::ALL
            .into_iter()
            .filter_map(|k| {
                let unit = &hw.price(k)?.unit;
                let u = arch.units().iter().find(|u| u.name() == unit)?;
                Some((k, u.pes() as f64))
            })
            .collect();
        Parallel { hw, pes }
    }
}

impl CostModel for Parallel {
    fn op_cost(&self, kind: OpKind, count: f64) -> f64 {
        self.hw.op_cost(kind, count)
    }

    fn op_cost_in_steps(&self, kind: OpKind, count: f64, steps: f64) -> f64 {
        match (self.hw.metric(), self.pes.get(&kind)) {
            (Metric::Cycles, Some(&pes)) if steps >= 1.0 && count > 0.0 => {
                // Unit cycles per op are one PE's cycles over the unit's PEs.
                let op_cycles = self.hw.weight(kind) * pes;
                steps * (count / steps / pes).ceil() * op_cycles
            }
            _ => self.hw.op_cost(kind, count),
        }
    }
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
                if h.metric() == Metric::Cycles {
                    text.push_str("; a loop's steps run on each unit's PEs");
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
            let spec = arch_load::arch(arch)?;
            let hw = HardwareCost::new(&spec, metric);
            let parallel = Parallel::new(&spec, hw.clone());
            Ok((Arc::new(parallel), Model::Hardware(hw)))
        }
    }
}
