//! `cascade sweep`: the Pareto study — latency against area as the array grows, with the buffer
//! sized per design by doubling while memory time exceeds the row unit's compute time. Points
//! run in parallel (rayon) behind a progress bar; results go to CSV and an SVG plot. With
//! `--shard K/N` it evaluates one of N disjoint slices, and `merge-sweep` joins the slices'
//! files through the same records, front and plot.

use std::path::{Path, PathBuf};

use cascade_scheduler::StopReason;
use cascade_sim::sweep::{DesignPoint, design_point, mark_pareto};
use indicatif::{ParallelProgressIterator, ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde_json::json;

use cascade_cli::values;

use crate::arch_load::{self, seq_label};
use crate::files;
use crate::output::{OutputFormat, UserError, check_finite, csv_bytes, print_csv, print_json};
use crate::schema::{self, Cell, Records, Style, col};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Base architecture; its tile unit becomes DIM×DIM and its row unit DIM wide.
    #[arg(long)]
    arch: String,
    /// Array sizes: `16..512` (powers of two) or `16..512:16` (every 16).
    #[arg(long, default_value = "16..512")]
    pe_dim: String,
    /// Sequence lengths, e.g. `256k`.
    #[arg(long, default_value = "256k")]
    seq: String,
    /// Model name(s), comma-separated, or `all`.
    #[arg(long, default_value = "bert")]
    workload: String,
    /// Cascade to run instead of the architecture's own.
    #[arg(long)]
    cascade: Option<String>,
    /// Smallest buffer tried, in bytes (k/M suffixes allowed).
    #[arg(long, default_value = "64k")]
    min_buffer: String,
    /// Largest buffer, in bytes.
    #[arg(long, default_value = "32M")]
    max_buffer: String,
    /// Write every point as CSV here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Draw latency against area (SVG) here.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Evaluate only shard K of N (`3/8`): the design points whose position in the whole sweep
    /// is K−1 modulo N. Merge the shards' CSV files with `cascade merge-sweep`.
    #[arg(long)]
    shard: Option<String>,
}

/// The most design points one sweep evaluates (array sizes × models × lengths).
const MAX_DESIGN_POINTS: usize = 1 << 20;

fn user<T>(r: Result<T, cascade_cli::values::ValueError>) -> anyhow::Result<T> {
    r.map_err(|e| UserError::message(e.0).into())
}

pub fn run(args: Args, format: OutputFormat) -> anyhow::Result<()> {
    let loaded = arch_load::arch_with_cascade(&args.arch, args.cascade.as_deref())?;
    let workloads = arch_load::workloads(None)?;
    let problems = arch_load::problems(&workloads, &args.workload, Some(&args.seq))?;
    let dims = user(values::pe_dims(&args.pe_dim))?;
    let shard = args.shard.as_deref().map(values::shard).transpose();
    let shard = user(shard)?;
    if shard.is_some() && args.plot.is_some() {
        return Err(UserError::message(
            "--plot draws the Pareto front, which one shard cannot know; plot the merged shards with `cascade merge-sweep FILES… --plot FILE`",
        )
        .into());
    }
    let buffers = buffer_range(&args.min_buffer, &args.max_buffer)?;
    let count = problems.len().saturating_mul(dims.len());
    if count > MAX_DESIGN_POINTS {
        return Err(UserError::message(format!(
            "the sweep has {count} design points ({} array sizes × {} workload points), more than the limit of {MAX_DESIGN_POINTS}; sweep fewer sizes or lengths",
            dims.len(),
            problems.len()
        ))
        .into());
    }
    // Every design point of the whole sweep, in order; a shard keeps its slice of them.
    let jobs: Vec<(u64, usize, u64)> = (0..problems.len())
        .flat_map(|p| dims.iter().map(move |&d| (p, d)))
        .zip(0u64..)
        .map(|((p, d), position)| (position, p, d))
        .filter(|&(position, _, _)| shard.is_none_or(|s| s.holds(position)))
        .collect();
    let pairs: Vec<(usize, u64)> = jobs.iter().map(|&(_, p, d)| (p, d)).collect();
    let points = evaluate(&loaded, &problems, &pairs, buffers, true)?;
    let mut sweep = Sweep {
        arch: loaded.arch.name().to_string(),
        cascade: loaded.cascade.name.clone(),
        groups: problems.iter().map(|p| (p.label.clone(), p.seq)).collect(),
        points,
        positions: jobs.iter().map(|&(position, _, _)| position).collect(),
        total: count as u64,
        front_known: shard.is_none(),
    };
    if sweep.front_known {
        mark_fronts(&mut sweep.points);
    }
    let files = (args.out.as_deref(), args.plot.as_deref());
    write("sweep", &sweep, format, files)
}

/// A sweep's design points, whole or one shard's: what `sweep` computes and `merge-sweep`
/// reads back from the shards' CSV files.
#[derive(Debug)]
pub struct Sweep {
    pub arch: String,
    pub cascade: String,
    /// Each workload point: its model and sequence length.
    pub groups: Vec<(String, u64)>,
    /// The design points, each with the index of its workload point in `groups`.
    pub points: Vec<(usize, DesignPoint)>,
    /// Each point's position in the whole sweep (`sweep_index`), ascending.
    pub positions: Vec<u64>,
    /// The design points of the whole sweep (`sweep_points`).
    pub total: u64,
    /// Whether `pareto` says something: not for one shard, whose points are not the front's
    /// competitors.
    pub front_known: bool,
}

/// Marks each workload point's Pareto front among its design points.
/// `--min-buffer` and `--max-buffer`, validated: each a size, the range from small to large.
pub fn buffer_range(min: &str, max: &str) -> anyhow::Result<(u64, u64)> {
    let min_buffer = user(values::bytes(min, "--min-buffer", values::MAX_BUFFER_BYTES))?;
    let max_buffer = user(values::bytes(max, "--max-buffer", values::MAX_BUFFER_BYTES))?;
    if min_buffer > max_buffer {
        return Err(UserError::message(format!(
            "--min-buffer {min} is larger than --max-buffer {max}; give a range from small to large"
        ))
        .into());
    }
    Ok((min_buffer, max_buffer))
}

/// Evaluates the design points `jobs` ((workload point, array size) pairs) in parallel, with a
/// progress bar on stderr when `progress`; every feasible point's numbers must be finite.
pub fn evaluate(
    loaded: &arch_load::LoadedArch,
    problems: &[cascade_scheduler::Problem],
    jobs: &[(usize, u64)],
    (min_buffer, max_buffer): (u64, u64),
    progress: bool,
) -> anyhow::Result<Vec<(usize, DesignPoint)>> {
    let bar = if progress {
        ProgressBar::new(jobs.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} design points").expect("valid template"),
    );
    let points: Vec<(usize, DesignPoint)> = jobs
        .par_iter()
        .progress_with(bar)
        .map(|&(p, d)| {
            let point = design_point(
                &loaded.arch,
                &loaded.cascade,
                &problems[p],
                d,
                min_buffer,
                max_buffer,
            );
            (p, point)
        })
        .collect();
    for (p, d) in points.iter().filter(|(_, d)| d.infeasible.is_none()) {
        let what = format!(
            "{} at {} {} with a {}×{} array",
            loaded.arch.name(),
            problems[*p].label,
            seq_label(problems[*p].seq),
            d.dim,
            d.dim
        );
        let fields = [
            ("latency_s", d.latency_s),
            ("energy_j", d.energy_j),
            ("area_mm2", d.area_mm2),
        ];
        check_finite(&what, &fields)?;
    }
    Ok(points)
}

pub fn mark_fronts(points: &mut [(usize, DesignPoint)]) {
    let groups: std::collections::BTreeSet<usize> = points.iter().map(|(g, _)| *g).collect();
    for k in groups {
        let mut group: Vec<DesignPoint> = points
            .iter()
            .filter(|(g, _)| *g == k)
            .map(|(_, d)| d.clone())
            .collect();
        mark_pareto(&mut group);
        for (slot, marked) in points.iter_mut().filter(|(g, _)| *g == k).zip(group) {
            slot.1 = marked;
        }
    }
}

/// Writes `files`, the CSV (`--out`) and the plot (`--plot`), both made in memory first so a
/// failure leaves neither half-written, and prints the sweep in `format` as `command`'s output.
pub fn write(
    command: &str,
    sweep: &Sweep,
    format: OutputFormat,
    (out, plot_path): (Option<&Path>, Option<&Path>),
) -> anyhow::Result<()> {
    let records = records(sweep);
    let labels: Vec<String> = sweep
        .groups
        .iter()
        .map(|(model, seq)| format!("{model} {}", seq_label(*seq)))
        .collect();
    let plot_text = match plot_path {
        Some(path) => Some(
            plot(&labels, &sweep.points)
                .map_err(|e| UserError::message(format!("cannot draw {}: {e}", path.display())))?,
        ),
        None => None,
    };
    if let Some(path) = out {
        files::write_atomic(path, &csv_bytes(records.csv())?)?;
    }
    if let (Some(path), Some(text)) = (plot_path, plot_text) {
        files::write_atomic(path, text.as_bytes())?;
    }
    match format {
        OutputFormat::Csv => print_csv(records.csv())?,
        OutputFormat::Json => {
            let context = schema::context([
                ("arch", json!(sweep.arch)),
                ("cascade", json!(sweep.cascade)),
                ("sweep_points", json!(sweep.total)),
            ]);
            print_json(&schema::document(command, context, &records, None));
        }
        OutputFormat::Text => {
            let mut shown = vec![
                "model",
                "seq",
                "pe_dim",
                "buffer_bytes",
                "latency_s",
                "energy_j",
                "area_mm2",
                "memory_bound",
                "pareto",
            ];
            if records.any("infeasible") {
                shown.push("infeasible");
            }
            println!("{}", records.text(&shown));
        }
    }
    Ok(())
}

/// The column names of a sweep's records, in order: `merge-sweep` refuses a file whose header
/// is not `schema_version` and these.
pub const COLUMNS: [&str; 15] = [
    "arch",
    "cascade",
    "model",
    "seq",
    "sweep_index",
    "sweep_points",
    "pe_dim",
    "buffer_bytes",
    "buffer_stop",
    "latency_s",
    "energy_j",
    "area_mm2",
    "memory_bound",
    "pareto",
    "infeasible",
];

/// How the buffer search ended, as `buffer_stop` prints it.
pub fn stop_name(stop: StopReason) -> &'static str {
    match stop {
        StopReason::Converged => "converged",
        StopReason::Budget => "budget",
        StopReason::Exhausted => "exhausted",
    }
}

/// The schema's record of every design point (see `docs/output.md`); an infeasible point has
/// no latency, energy, area or memory bound, and `pareto` is missing in one shard's records.
fn records(sweep: &Sweep) -> Records {
    let style = |name: &str| match name {
        "seq" => Style::Seq,
        "latency_s" | "energy_j" => Style::Sci,
        "area_mm2" => Style::Fixed(1),
        _ => Style::Plain,
    };
    let mut records = Records::new(COLUMNS.iter().map(|&n| col(n, style(n))).collect());
    for ((g, d), &position) in sweep.points.iter().zip(&sweep.positions) {
        let (model, seq) = &sweep.groups[*g];
        let mut cells = vec![
            ("arch", Cell::Text(sweep.arch.clone())),
            ("cascade", Cell::Text(sweep.cascade.clone())),
            ("model", Cell::Text(model.clone())),
            ("seq", Cell::Count(*seq)),
            ("sweep_index", Cell::Count(position)),
            ("sweep_points", Cell::Count(sweep.total)),
            ("pe_dim", Cell::Count(d.dim)),
            ("buffer_bytes", Cell::Count(d.buffer_bytes)),
            ("buffer_stop", Cell::Text(stop_name(d.stop).into())),
        ];
        if sweep.front_known {
            cells.push(("pareto", Cell::Flag(d.pareto)));
        }
        match &d.infeasible {
            None => cells.extend([
                ("latency_s", Cell::Number(d.latency_s)),
                ("energy_j", Cell::Number(d.energy_j)),
                ("area_mm2", Cell::Number(d.area_mm2)),
                ("memory_bound", Cell::Flag(d.memory_bound)),
            ]),
            Some(why) => cells.push(("infeasible", Cell::Text(why.clone()))),
        }
        records.push(cells);
    }
    records
}

/// The SVG text of the latency-against-area plot (`plot::pareto`, drawn by `plot::scatter`):
/// one series per workload point, `labels[k]` the legend of the points of group `k`.
fn plot(
    labels: &[String],
    points: &[(usize, DesignPoint)],
) -> Result<String, Box<dyn std::error::Error>> {
    Ok(crate::plot::scatter(&crate::plot::pareto(labels, points)?)?)
}
