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
use comfy_table::{Table, presets};
use rayon::prelude::*;
use serde_json::json;

use cascade_cli::values;

use crate::arch_load::{self, seq_label};
use crate::files;
use crate::output::{OutputFormat, UserError, check_finite, num, print_csv, print_json};

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
            plot(&label, &points, &seqs)
                .map_err(|e| UserError::message(format!("cannot draw {}: {e}", path.display())))?,
        ),
        None => None,
    };
    let records = csv_records(&points);
    if let Some(path) = &args.out {
        files::write_atomic(path, &csv_bytes(&records)?)?;
    }
    if let (Some(path), Some(text)) = (&args.plot, plot_text) {
        files::write_atomic(path, text.as_bytes())?;
    }
    match format {
        OutputFormat::Csv => print_csv(&records)?,
        OutputFormat::Json => print_json(&json_points(&label, &points, &seqs)),
        OutputFormat::Text => print_text(&label, &points, &seqs),
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
                    ("energy_pj", r.energy_pj),
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

fn print_text(label: &str, points: &[Point], seqs: &[u64]) {
    println!("{label}");
    let mut table = Table::new();
    table.load_style(presets::ASCII_MARKDOWN).set_header([
        "seq",
        "chips",
        "latency_s",
        "efficiency",
        "exposed",
        "comm",
        "energy/token_uJ",
        "balance",
        "crossover_GB/s",
    ]);
    // Reasons are long and repeat: each is printed once below the table, by number.
    let mut reasons: Vec<&str> = Vec::new();
    for p in points {
        let row = match &p.result {
            Err(why) => {
                let k = reasons.iter().position(|r| r == why).unwrap_or_else(|| {
                    reasons.push(why);
                    reasons.len() - 1
                });
                vec![
                    seq_label(p.seq),
                    p.chips.to_string(),
                    format!("infeasible [{}]", k + 1),
                ]
            }
            Ok(r) => vec![
                seq_label(p.seq),
                p.chips.to_string(),
                format!("{:.4e}", r.latency_s),
                p.efficiency()
                    .map_or_else(|| "-".into(), |e| format!("{e:.3}")),
                format!("{:.1}%", 100.0 * r.exposed_s / r.latency_s),
                if p.hidden() == Some(true) {
                    "hidden".into()
                } else {
                    "exposed".into()
                },
                format!("{:.3}", r.energy_per_token_pj * 1e-6),
                format!("{:.3}", r.balance),
                r.crossover_gb_s
                    .map_or_else(|| "-".into(), |c| format!("{c:.2}")),
            ],
        };
        table.add_row(row);
    }
    println!("{table}");
    for (k, why) in reasons.iter().enumerate() {
        println!("[{}] {why}", k + 1);
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

fn json_points(label: &str, points: &[Point], seqs: &[u64]) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = points
        .iter()
        .map(|p| match &p.result {
            Err(why) => json!({"seq": p.seq, "chips": p.chips, "infeasible": why}),
            Ok(r) => point_json(p, r),
        })
        .collect();
    let crossings: Vec<serde_json::Value> = crossovers(points, seqs)
        .into_iter()
        .map(|(seq, chips)| json!({"seq": seq, "chips": chips}))
        .collect();
    json!({"study": label, "points": rows, "exposed_from": crossings})
}

fn point_json(p: &Point, r: &SystemReport) -> serde_json::Value {
    let mut v = json!({
                "seq": p.seq, "chips": p.chips, "latency_s": num(r.latency_s),
                "base_chips": p.base.map(|b| b.0), "base_s": p.base.map(|b| num(b.1)),
                "efficiency": p.efficiency().map(num),
                "compute_s": num(r.compute_s), "exposed_s": num(r.exposed_s),
                "exposed_share": num(r.exposed_s / r.latency_s), "hidden": p.hidden(),
                "collectives_s": num(r.collectives_s), "combine_s": num(r.combine_s),
                "energy_pj": num(r.energy_pj), "link_energy_pj": num(r.link_energy_pj),
                "energy_per_token_pj": num(r.energy_per_token_pj), "balance": num(r.balance),
                "utilisation": num(r.utilisation), "block_compute_s": num(r.block_compute_s),
                "block_transfer_s": num(r.block_transfer_s),
                "step_compute_s": num(r.step_compute_s),
                "crossover_gb_s": r.crossover_gb_s.map(num),
    });
    // No link, no link energy: the field is absent rather than a zero.
    if r.link_byte_hops == 0.0
        && let Some(map) = v.as_object_mut()
    {
        map.remove("link_energy_pj");
    }
    v
}

fn csv_records(points: &[Point]) -> Vec<Vec<String>> {
    let header = [
        "seq",
        "chips",
        "latency_s",
        "efficiency",
        "base_chips",
        "exposed_s",
        "exposed_share",
        "energy_per_token_pj",
        "link_energy_pj",
        "balance",
        "utilisation",
        "crossover_gb_s",
        "infeasible",
    ];
    let mut records = vec![header.map(String::from).to_vec()];
    let opt = |x: Option<f64>| x.map_or_else(String::new, |v| v.to_string());
    for p in points {
        let mut row = vec![p.seq.to_string(), p.chips.to_string()];
        match &p.result {
            Ok(r) => row.extend([
                r.latency_s.to_string(),
                opt(p.efficiency()),
                p.base.map_or_else(String::new, |b| b.0.to_string()),
                r.exposed_s.to_string(),
                (r.exposed_s / r.latency_s).to_string(),
                r.energy_per_token_pj.to_string(),
                r.link_energy_pj.to_string(),
                r.balance.to_string(),
                r.utilisation.to_string(),
                opt(r.crossover_gb_s),
                String::new(),
            ]),
            Err(why) => {
                row.extend(std::iter::repeat_n(String::new(), 10));
                row.push(why.clone());
            }
        }
        records.push(row);
    }
    records
}

fn csv_bytes(records: &[Vec<String>]) -> anyhow::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in records {
        w.write_record(r)?;
    }
    w.into_inner()
        .map_err(|e| anyhow::anyhow!("CSV buffer: {e}"))
}

/// One curve of a panel: `(x, y)` points, and the points to mark on it.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub marks: Vec<(f64, f64)>,
    /// Drawn in black, thicker: a reference curve among coloured ones.
    pub emphasised: bool,
}

/// One chart of a figure: log x, and y linear from 0 (`log_y` false) or logarithmic.
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub log_y: bool,
    /// Whether this panel carries the legend (panels of one figure share their colours).
    pub legend: bool,
    pub series: Vec<Series>,
}

/// A point's value on a panel, when it has one.
type Metric = dyn Fn(&Point) -> Option<f64>;

fn plot(label: &str, points: &[Point], seqs: &[u64]) -> Result<String, Box<dyn std::error::Error>> {
    let feasible: Vec<&Point> = points.iter().filter(|p| p.report().is_some()).collect();
    if feasible.is_empty() {
        return Err("no feasible point to plot".into());
    }
    let crossings = crossovers(points, seqs);
    let curve = |seq: u64, y: &dyn Fn(&Point) -> Option<f64>| -> Vec<(f64, f64)> {
        feasible
            .iter()
            .filter(|p| p.seq == seq)
            .filter_map(|p| Some((p.chips as f64, y(p)?)))
            .collect()
    };
    let mark = |seq: u64, y: &dyn Fn(&Point) -> Option<f64>| -> Vec<(f64, f64)> {
        crossings
            .iter()
            .filter(|c| c.0 == seq)
            .filter_map(|&(s, n)| {
                let p = feasible.iter().find(|p| p.seq == s && p.chips == n)?;
                Some((n as f64, y(p)?))
            })
            .collect()
    };
    let metrics: [(&str, &str, bool, &Metric); 3] = [
        (
            "parallel efficiency",
            "N₀·T(N₀) / (N·T(N))",
            false,
            &|p| p.efficiency(),
        ),
        ("exposed communication", "share of latency", false, &|p| {
            p.exposed_share()
        }),
        ("energy per token", "µJ per token", true, &|p| {
            p.report().map(|r| r.energy_per_token_pj * 1e-6)
        }),
    ];
    let weak = weak_points(points, seqs);
    let panels: Vec<Panel> = metrics
        .iter()
        .enumerate()
        .map(|(k, &(title, y_label, log_y, y))| {
            let mut series: Vec<Series> = seqs
                .iter()
                .map(|&seq| Series {
                    label: format!("{} (strong)", seq_label(seq)),
                    points: curve(seq, y),
                    marks: mark(seq, y),
                    emphasised: false,
                })
                .filter(|s| !s.points.is_empty())
                .collect();
            if weak.len() > 1 {
                series.push(Series {
                    label: "weak: tokens per chip fixed".into(),
                    points: weak
                        .iter()
                        .filter_map(|p| Some((p.chips as f64, y(p)?)))
                        .collect(),
                    marks: Vec::new(),
                    emphasised: true,
                });
            }
            Panel {
                title: title.into(),
                x_label: "chips".into(),
                y_label: y_label.into(),
                log_y,
                legend: k == 0,
                series,
            }
        })
        .collect();
    scaling_chart(
        &format!("{label}; × marks where communication stops hiding"),
        &panels,
    )
}

/// Draws panels side by side as one SVG: each series a line with its points, its marks as
/// crosses, and the legend on the panels that ask for it.
pub fn scaling_chart(title: &str, panels: &[Panel]) -> Result<String, Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let mut svg = String::new();
    {
        let width = 520 * panels.len().max(1) as u32;
        let root = SVGBackend::with_string(&mut svg, (width, 520)).into_drawing_area();
        root.fill(&WHITE)?;
        let root = root.titled(title, ("sans-serif", 18))?;
        let areas = root.split_evenly((1, panels.len().max(1)));
        for (panel, area) in panels.iter().zip(areas.iter()) {
            let all = || panel.series.iter().flat_map(|s| s.points.iter());
            let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
            for &(x, y) in all() {
                x0 = x0.min(x);
                x1 = x1.max(x);
                y0 = y0.min(y);
                y1 = y1.max(y);
            }
            if x0 > x1 {
                continue;
            }
            let xs = (x0 * 0.8..x1 * 1.25).log_scale();
            let mut builder = ChartBuilder::on(area);
            builder
                .caption(&panel.title, ("sans-serif", 16))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(60);
            macro_rules! draw_panel {
                ($chart:expr) => {{
                    let mut chart = $chart;
                    chart
                        .configure_mesh()
                        .x_desc(panel.x_label.as_str())
                        .y_desc(panel.y_label.as_str())
                        .draw()?;
                    for (k, s) in panel.series.iter().enumerate() {
                        let color = if s.emphasised {
                            BLACK.to_rgba()
                        } else {
                            Palette99::pick(k).to_rgba()
                        };
                        let width = if s.emphasised { 3 } else { 2 };
                        chart
                            .draw_series(LineSeries::new(
                                s.points.iter().copied(),
                                color.stroke_width(width),
                            ))?
                            .label(s.label.as_str())
                            .legend(move |(x, y)| {
                                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                            });
                        chart.draw_series(
                            s.points.iter().map(|&p| Circle::new(p, 3, color.filled())),
                        )?;
                        chart.draw_series(
                            s.marks
                                .iter()
                                .map(|&p| Cross::new(p, 8, RED.stroke_width(3))),
                        )?;
                    }
                    if panel.legend {
                        chart
                            .configure_series_labels()
                            .position(SeriesLabelPosition::LowerLeft)
                            .background_style(WHITE.mix(0.85))
                            .border_style(BLACK)
                            .label_font(("sans-serif", 11))
                            .draw()?;
                    }
                }};
            }
            if panel.log_y {
                let lo = if y0 > 0.0 { y0 * 0.8 } else { 1e-12 };
                draw_panel!(builder.build_cartesian_2d(xs, (lo..y1.max(lo) * 1.25).log_scale())?);
            } else {
                draw_panel!(builder.build_cartesian_2d(xs, 0.0..(y1.max(1e-12) * 1.08))?);
            }
        }
        root.present()?;
    }
    Ok(svg)
}
