//! `cascade scale`: attention over a system of chips, from one chip to many and from short to
//! long sequences. Every (length, chip count) point is partitioned by the scheduler and priced
//! by the system model; the table, JSON or CSV gives each point's latency, parallel efficiency
//! (`N₀·T(N₀) / (N·T(N))`, against one chip, or against the fewest chips whose share the
//! single-chip model can count when one chip's cannot), exposed communication, energy per
//! token and load balance, and the SVG plots strong scaling (one curve per length), weak scaling (tokens
//! per chip fixed) and marks where communication stops hiding behind compute.

use std::path::PathBuf;

use cascade_ir::Cascade;
use cascade_scheduler::system::{MAX_CHIPS, SystemOutcome, SystemSpec, partition};
use cascade_scheduler::{Problem, ScheduleError};
use cascade_sim::cycle::CycleConfig;
use cascade_sim::system::{self as system_model, SystemCycleConfig, SystemReport, simulate_system};
use rayon::prelude::*;
use serde_json::json;

use cascade_cli::values;

use crate::arch_load::{self, seq_label};
use crate::files;
use crate::output::{OutputFormat, UserError, check_finite, csv_bytes, print_csv, print_json};
use crate::plot;
use crate::schema::{self, Cell, PJ, Records, Style, col};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The system of chips: a shipped system (ring-fusemax, tokenring-fusemax, ulysses-fusemax,
    /// splitk-fusemax) or a system file (arch-configs/systems/*.toml).
    #[arg(long, visible_alias = "system")]
    arch: String,
    /// One model of the workload set.
    #[arg(long, default_value = "bert")]
    workload: String,
    /// Workload set: `transformers` (default), `llm` or a TOML path.
    #[arg(long)]
    workloads: Option<String>,
    /// Cascade to run instead of the workload's or the chip's own.
    #[arg(long)]
    cascade: Option<String>,
    /// Prefill lengths: `128k..10m` doubles from 128K to 10M (and 10M itself); `128k..10m:20`
    /// gives 20 log-spaced lengths; k = 1024, m = 1024².
    #[arg(long, default_value = "128k..10m")]
    seq: String,
    /// Chip counts: `1..1024` doubles; `1..1024:40` gives 40 log-spaced counts.
    #[arg(long, default_value = "1..1024")]
    chips: String,
    /// Link bandwidth in GB/s per direction, instead of the system file's.
    #[arg(long)]
    link_gb_s: Option<f64>,
    /// `model` (the analytical system model) or `events` (each step executed as events, at the
    /// cycle engine's time per tile of a chip's share).
    #[arg(long, default_value = "model")]
    engine: String,
    /// Write every point as CSV here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Draw the scaling study (SVG) here.
    #[arg(long)]
    plot: Option<PathBuf>,
}

/// The share of the latency above which communication counts as exposed rather than hidden.
const HIDDEN_BELOW: f64 = 0.05;

/// One (length, chips) point: the system's report, or why the partition is infeasible.
struct Point {
    seq: u64,
    chips: u64,
    result: Result<SystemReport, String>,
    /// The base of the efficiency at this length: the fewest chips priced and their latency.
    base: Option<(u64, f64)>,
}

impl Point {
    fn report(&self) -> Option<&SystemReport> {
        self.result.as_ref().ok()
    }
    /// `N₀·T(N₀) / (N·T(N))`.
    fn efficiency(&self) -> Option<f64> {
        let r = self.report()?;
        let (n0, t0) = self.base?;
        Some(n0 as f64 * t0 / (self.chips as f64 * r.latency_s))
    }
    fn exposed_share(&self) -> Option<f64> {
        self.report().map(|r| r.exposed_s / r.latency_s)
    }
    fn hidden(&self) -> Option<bool> {
        self.exposed_share().map(|s| s < HIDDEN_BELOW)
    }
}

fn user<T>(r: Result<T, values::ValueError>) -> anyhow::Result<T> {
    r.map_err(|e| UserError::message(e.0).into())
}

pub fn run(args: Args, format: OutputFormat) -> anyhow::Result<()> {
    let (mut system, chip_arg) = arch_load::system(&args.arch)?;
    if let Some(gb_s) = args.link_gb_s {
        system = system
            .with_link_gb_s(gb_s)
            .map_err(|e| UserError::message(format!("--link-gb-s: {e}")))?;
    }
    let seqs = user(values::geometric_range(
        &args.seq,
        "--seq",
        "tokens",
        values::MAX_SEQ,
    ))?;
    let chips = user(values::geometric_range(
        &args.chips,
        "--chips",
        "chips",
        MAX_CHIPS,
    ))?;
    let workloads = arch_load::workloads(args.workloads.as_deref())?;
    let list: Vec<String> = seqs.iter().map(u64::to_string).collect();
    let problems = arch_load::problems(&workloads, &args.workload, Some(&list.join(",")))?;
    if problems.iter().any(|p| p.label != problems[0].label) {
        return Err(UserError::message(format!(
            "--workload `{}` names several models; a scaling study runs one, e.g. --workload bert",
            args.workload
        ))
        .into());
    }
    let cascades = arch_load::cascades_for(
        &chip_arg,
        system.chip(),
        args.cascade.as_deref(),
        args.workloads.as_deref(),
        &problems,
    )?;
    let events = match args.engine.as_str() {
        "model" => false,
        "events" => true,
        other => {
            return Err(UserError::message(format!(
                "--engine `{other}`: use model (the analytical system model) or events (steps as events with the cycle engine)"
            ))
            .into());
        }
    };
    let points = evaluate(&system, &problems, &cascades, &chips, events)?;
    let label = format!(
        "{} {} on {} ({}){}",
        problems[0].label,
        cascades[0].name,
        system.name(),
        system.chip().name(),
        if events { ", steps as events" } else { "" }
    );
    let plot_text = match &args.plot {
        Some(path) => Some(
            figure(&label, &points, &seqs)
                .map_err(|e| UserError::message(format!("cannot draw {}: {e}", path.display())))?,
        ),
        None => None,
    };
    let records = records(&points);
    if let Some(path) = &args.out {
        files::write_atomic(path, &csv_bytes(records.csv())?)?;
    }
    if let (Some(path), Some(text)) = (&args.plot, plot_text) {
        files::write_atomic(path, text.as_bytes())?;
    }
    match format {
        OutputFormat::Csv => print_csv(records.csv())?,
        OutputFormat::Json => print_json(&json_document(&label, &records, &points, &seqs)),
        OutputFormat::Text => print_text(&label, &records, &points, &seqs),
    }
    Ok(())
}

/// Every point, in parallel. A problem whose share the single-chip model cannot count
/// (`ScheduleError::TooLarge`) is an infeasible point, not an error: more chips make it
/// countable.
fn evaluate(
    system: &SystemSpec,
    problems: &[Problem],
    cascades: &[Cascade],
    chips: &[u64],
    events: bool,
) -> anyhow::Result<Vec<Point>> {
    let config = SystemCycleConfig {
        chip: CycleConfig {
            max_slots: Some(4096),
            tile_buffers: 2,
            log_events: 0,
        },
        buffers: 2,
    };
    let price = |k: usize, n: u64| -> anyhow::Result<Result<SystemReport, String>> {
        let s = system
            .with_chips(n)
            .map_err(|e| UserError::message(e.to_string()))?;
        Ok(match partition(&cascades[k], &s, &problems[k]) {
            Ok(SystemOutcome::Scheduled(sched)) if events => {
                Ok(system_model::run(&sched, &s, &config))
            }
            Ok(SystemOutcome::Scheduled(sched)) => Ok(simulate_system(&sched, &s)),
            Ok(SystemOutcome::Infeasible(why)) => Err(why.reason),
            Err(e @ ScheduleError::TooLarge { .. }) => Err(e.to_string()),
            Err(e) => return Err(UserError::message(e.to_string()).into()),
        })
    };
    // One chip is priced for every length, as the efficiency's base where it is countable.
    let mut counts = vec![1];
    counts.extend(chips.iter().copied().filter(|&n| n != 1));
    let jobs: Vec<(usize, u64)> = (0..problems.len())
        .flat_map(|k| counts.iter().map(move |&n| (k, n)))
        .collect();
    let results: Vec<(usize, u64, Result<SystemReport, String>)> = jobs
        .par_iter()
        .map(|&(k, n)| Ok((k, n, price(k, n)?)))
        .collect::<anyhow::Result<_>>()?;
    let base = |k: usize| {
        results
            .iter()
            .filter(|(j, _, r)| *j == k && r.is_ok())
            .min_by_key(|(_, n, _)| *n)
            .and_then(|(_, n, r)| Some((*n, r.as_ref().ok()?.latency_s)))
    };
    let bases: Vec<Option<(u64, f64)>> = (0..problems.len()).map(base).collect();
    let points: Vec<Point> = results
        .into_iter()
        .filter(|(_, n, _)| chips.contains(n))
        .map(|(k, n, result)| Point {
            seq: problems[k].seq,
            chips: n,
            result,
            base: bases[k],
        })
        .collect();
    for p in &points {
        if let Some(r) = p.report() {
            let what = format!(
                "{} at {} over {} chips",
                r.system,
                seq_label(p.seq),
                p.chips
            );
            check_finite(
                &what,
                &[
                    ("latency_s", r.latency_s),
                    ("energy_j", r.energy_pj * PJ),
                    ("exposed_s", r.exposed_s),
                ],
            )?;
        }
    }
    Ok(points)
}

/// Per length, the fewest chips at which communication is exposed (at least 5% of the
/// latency) after a point where it was hidden, or at the first point.
fn crossovers(points: &[Point], seqs: &[u64]) -> Vec<(u64, u64)> {
    seqs.iter()
        .filter_map(|&seq| {
            points
                .iter()
                .filter(|p| p.seq == seq)
                .find(|p| p.hidden() == Some(false))
                .map(|p| (seq, p.chips))
        })
        .collect()
}

/// The weak-scaling points: tokens per chip as at the first length on the fewest chips.
fn weak_points<'a>(points: &'a [Point], seqs: &[u64]) -> Vec<&'a Point> {
    let Some(first) = points.iter().find(|p| p.seq == seqs[0]) else {
        return Vec::new();
    };
    let (s0, n0) = (u128::from(first.seq), u128::from(first.chips));
    points
        .iter()
        .filter(|p| u128::from(p.seq) * n0 == s0 * u128::from(p.chips) && p.report().is_some())
        .collect()
}

/// Every point as a record of the one output schema (`docs/output.md`): SI units, an
/// infeasible point's numbers missing and its reason in `infeasible`.
fn records(points: &[Point]) -> Records {
    let mut columns = vec![
        col("seq", Style::Seq),
        col("chips", Style::Plain),
        col("latency_s", Style::Sci),
        col("efficiency", Style::Fixed(3)),
        col("base_chips", Style::Plain),
        col("compute_s", Style::Sci),
        col("exposed_s", Style::Sci),
        col("exposed_share", Style::Fixed(3)),
        col("hidden", Style::Plain),
        col("collectives_s", Style::Sci),
        col("combine_s", Style::Sci),
        col("energy_j", Style::Sci),
        col("link_energy_j", Style::Sci),
        col("energy_per_token_j", Style::Sci),
        col("balance", Style::Fixed(3)),
        col("util_chips", Style::Fixed(3)),
        col("block_compute_s", Style::Sci),
        col("block_transfer_s", Style::Sci),
        col("step_compute_s", Style::Sci),
        col("crossover_bytes_per_s", Style::Sci),
    ];
    columns.push(col("infeasible", Style::Plain));
    let mut records = Records::new(columns);
    let n = |name: &str, v: f64| (name.to_string(), Cell::Number(v));
    let opt =
        |name: &str, v: Option<f64>| (name.to_string(), v.map_or(Cell::Missing, Cell::Number));
    for p in points {
        let mut cells = vec![
            ("seq".to_string(), Cell::Count(p.seq)),
            ("chips".to_string(), Cell::Count(p.chips)),
        ];
        match &p.result {
            Err(why) => cells.push(("infeasible".to_string(), Cell::Text(why.clone()))),
            Ok(r) => {
                // No link, no link energy: the cell is missing rather than a zero.
                let link = (r.link_byte_hops > 0.0).then_some(r.link_energy_pj * PJ);
                cells.extend([
                    n("latency_s", r.latency_s),
                    opt("efficiency", p.efficiency()),
                    (
                        "base_chips".to_string(),
                        p.base.map_or(Cell::Missing, |b| Cell::Count(b.0)),
                    ),
                    n("compute_s", r.compute_s),
                    n("exposed_s", r.exposed_s),
                    n("exposed_share", r.exposed_s / r.latency_s),
                    (
                        "hidden".to_string(),
                        p.hidden().map_or(Cell::Missing, Cell::Flag),
                    ),
                    n("collectives_s", r.collectives_s),
                    n("combine_s", r.combine_s),
                    n("energy_j", r.energy_pj * PJ),
                    opt("link_energy_j", link),
                    n("energy_per_token_j", r.energy_per_token_pj * PJ),
                    n("balance", r.balance),
                    n("util_chips", r.utilisation),
                    n("block_compute_s", r.block_compute_s),
                    n("block_transfer_s", r.block_transfer_s),
                    n("step_compute_s", r.step_compute_s),
                    opt("crossover_bytes_per_s", r.crossover_gb_s.map(|g| g * 1e9)),
                ]);
            }
        }
        records.push(cells);
    }
    records
}

/// The text table's columns.
const SHOWN: [&str; 9] = [
    "seq",
    "chips",
    "latency_s",
    "efficiency",
    "exposed_share",
    "hidden",
    "energy_per_token_j",
    "balance",
    "crossover_bytes_per_s",
];

fn print_text(label: &str, records: &Records, points: &[Point], seqs: &[u64]) {
    println!("{label}");
    println!("{}", records.text(&SHOWN));
    // Reasons are long and repeat: each is printed once, with the points it stops.
    let mut reasons: Vec<(&str, Vec<String>)> = Vec::new();
    for p in points {
        if let Err(why) = &p.result {
            let at = format!("{}@{}", seq_label(p.seq), p.chips);
            match reasons.iter_mut().find(|(r, _)| r == why) {
                Some((_, list)) => list.push(at),
                None => reasons.push((why, vec![at])),
            }
        }
    }
    for (why, at) in reasons {
        println!("infeasible at {}: {why}", at.join(", "));
    }
    for (seq, n) in crossovers(points, seqs) {
        println!(
            "{}: communication exposed (≥ {:.0}% of the latency) from {n} chips",
            seq_label(seq),
            HIDDEN_BELOW * 100.0
        );
    }
    let weak = weak_points(points, seqs);
    if weak.len() > 1 {
        let line: Vec<String> = weak
            .iter()
            .map(|p| {
                format!(
                    "{}@{}: {:.3}",
                    seq_label(p.seq),
                    p.chips,
                    p.efficiency().unwrap_or(0.0)
                )
            })
            .collect();
        println!("weak scaling (tokens per chip fixed): {}", line.join(", "));
    }
}

/// The JSON document: the points' records, the study's name and where each length's
/// communication stops hiding.
fn json_document(
    label: &str,
    records: &Records,
    points: &[Point],
    seqs: &[u64],
) -> serde_json::Value {
    let crossings: Vec<serde_json::Value> = crossovers(points, seqs)
        .into_iter()
        .map(|(seq, chips)| json!({"seq": seq, "chips": chips}))
        .collect();
    let context = schema::context([("study", json!(label)), ("exposed_from", json!(crossings))]);
    schema::document("scale", context, records, None)
}

/// A point's value on a panel, when it has one.
type Metric = dyn Fn(&Point) -> Option<f64>;

/// The palette index of the `k`-th length's curve: every colour but black (7), which the weak
/// curve and the crosses take (told apart by their marks).
fn length_colour(k: usize) -> usize {
    k % 7
}

/// The scaling figure: efficiency, exposed share and energy per token against the chip
/// count, one curve per length (strong scaling), the weak-scaling curve in black, and a cross
/// where each length's communication stops hiding; three `plot::scatter` panels in a row.
fn figure(
    label: &str,
    points: &[Point],
    seqs: &[u64],
) -> Result<String, Box<dyn std::error::Error>> {
    let feasible: Vec<&Point> = points.iter().filter(|p| p.report().is_some()).collect();
    if feasible.is_empty() {
        return Err("no feasible point to plot".into());
    }
    let crossings = crossovers(points, seqs);
    let weak = weak_points(points, seqs);
    let metrics: [(&str, &str, Option<&'static str>, &Metric); 3] = [
        (
            "parallel efficiency",
            "N₀·T(N₀) / (N·T(N))",
            None,
            &|p| p.efficiency(),
        ),
        ("exposed communication", "share of latency", None, &|p| {
            p.exposed_share()
        }),
        ("energy per token", "energy per token", Some("J"), &|p| {
            p.report().map(|r| r.energy_per_token_pj * PJ)
        }),
    ];
    let mut charts = Vec::new();
    for (title, y_label, unit, y) in metrics {
        let on = |p: &Point| Some((p.chips as f64, y(p)?));
        let mut series: Vec<plot::Series> = Vec::new();
        for (k, &seq) in seqs.iter().enumerate() {
            let pts: Vec<(f64, f64)> = feasible
                .iter()
                .filter(|p| p.seq == seq)
                .filter_map(|p| on(p))
                .collect();
            if !pts.is_empty() {
                series.push(plot::Series {
                    label: format!("{} (strong)", seq_label(seq)),
                    points: pts,
                    mark: plot::Mark::Line,
                    colour: length_colour(k),
                });
            }
        }
        if weak.len() > 1 {
            series.push(plot::Series {
                label: "weak: tokens per chip fixed".into(),
                points: weak.iter().filter_map(|p| on(p)).collect(),
                mark: plot::Mark::Line,
                colour: 7,
            });
        }
        let crosses: Vec<(f64, f64)> = crossings
            .iter()
            .filter_map(|&(s, n)| on(feasible.iter().find(|p| p.seq == s && p.chips == n)?))
            .collect();
        if !crosses.is_empty() {
            series.push(plot::Series {
                label: "communication exposed".into(),
                points: crosses,
                mark: plot::Mark::Cross,
                colour: 7,
            });
        }
        let chart = plot::Scatter {
            title: title.into(),
            x: plot::Axis::new("chips", None),
            y: plot::Axis::new(y_label, unit),
            series,
        };
        charts.push(plot::scatter(&chart)?);
    }
    Ok(plot::row(
        &format!("{label}; × marks where communication stops hiding"),
        &charts,
    ))
}
