//! `cascade sweep`: the Pareto study — latency against area as the array grows, with the buffer
//! sized per design by doubling while memory time exceeds the row unit's compute time. Points
//! run in parallel (rayon) behind a progress bar; results go to CSV and an SVG plot.

use std::path::PathBuf;

use cascade_sim::sweep::{DesignPoint, design_point, mark_pareto};
use comfy_table::{Table, presets};
use indicatif::{ParallelProgressIterator, ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde_json::json;

use crate::arch_load::{self, seq_label};
use crate::output::{OutputFormat, UserError, print_csv, print_json};

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
}

/// Parses `A..B` (powers of two from A to B) or `A..B:S` (A, A+S, … ≤ B).
fn pe_dims(arg: &str) -> anyhow::Result<Vec<u64>> {
    let bad = || {
        UserError::message(format!(
            "cannot read --pe-dim `{arg}`; write 16..512 (powers of two) or 16..512:16 (a step)"
        ))
    };
    let (range, step) = match arg.split_once(':') {
        Some((r, s)) => (r, Some(s.trim().parse::<u64>().map_err(|_| bad())?)),
        None => (arg, None),
    };
    let (lo, hi) = range.split_once("..").ok_or_else(bad)?;
    let lo: u64 = lo.trim().parse().map_err(|_| bad())?;
    let hi: u64 = hi
        .trim()
        .trim_start_matches('=')
        .parse()
        .map_err(|_| bad())?;
    if lo == 0 || hi < lo || step == Some(0) {
        return Err(bad().into());
    }
    let max = cascade_scheduler::arch::MAX_DIM;
    if hi > max {
        return Err(UserError::message(format!(
            "--pe-dim `{arg}` goes up to {hi}; the model accepts array sides up to {max}"
        ))
        .into());
    }
    Ok(match step {
        Some(s) => (lo..=hi).step_by(s as usize).collect(),
        None => std::iter::successors(Some(lo), |&d| d.checked_mul(2))
            .take_while(|&d| d <= hi)
            .collect(),
    })
}

fn bytes(arg: &str, flag: &str) -> anyhow::Result<u64> {
    match cascade_ir::shape::parse_size(arg) {
        Some(v) if v > 0 => Ok(v as u64),
        _ => Err(UserError::message(format!(
            "cannot read {flag} `{arg}`; write bytes with optional k/M suffixes, e.g. 64k"
        ))
        .into()),
    }
}

pub fn run(args: Args, format: OutputFormat) -> anyhow::Result<()> {
    let loaded = arch_load::arch_with_cascade(&args.arch, args.cascade.as_deref())?;
    let workloads = arch_load::workloads(None)?;
    let problems = arch_load::problems(&workloads, &args.workload, Some(&args.seq))?;
    let dims = pe_dims(&args.pe_dim)?;
    let (min_buffer, max_buffer) = (
        bytes(&args.min_buffer, "--min-buffer")?,
        bytes(&args.max_buffer, "--max-buffer")?,
    );
    let jobs: Vec<(usize, u64)> = (0..problems.len())
        .flat_map(|p| dims.iter().map(move |&d| (p, d)))
        .collect();
    let bar = ProgressBar::new(jobs.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} design points").expect("valid template"),
    );
    let mut points: Vec<(usize, DesignPoint)> = jobs
        .par_iter()
        .progress_with(bar)
        .map(|&(p, d)| {
            (
                p,
                design_point(
                    &loaded.arch,
                    &loaded.cascade,
                    &problems[p],
                    d,
                    min_buffer,
                    max_buffer,
                ),
            )
        })
        .collect();
    for (k, _) in problems.iter().enumerate() {
        let mut group: Vec<DesignPoint> = points
            .iter()
            .filter(|(p, _)| *p == k)
            .map(|(_, d)| d.clone())
            .collect();
        mark_pareto(&mut group);
        for (slot, marked) in points.iter_mut().filter(|(p, _)| *p == k).zip(group) {
            slot.1 = marked;
        }
    }
    let records = csv_records(&problems, &points);
    if let Some(path) = &args.out {
        let mut w = csv::Writer::from_path(path)
            .map_err(|e| UserError::message(format!("cannot write {}: {e}", path.display())))?;
        for r in &records {
            w.write_record(r)?;
        }
        w.flush()
            .map_err(|e| UserError::message(format!("cannot write {}: {e}", path.display())))?;
    }
    if let Some(path) = &args.plot {
        plot(path, &problems, &points)
            .map_err(|e| UserError::message(format!("cannot draw {}: {e}", path.display())))?;
    }
    match format {
        OutputFormat::Csv => print_csv(&records)?,
        OutputFormat::Json => print_json(&json!(points.iter().map(|(p, d)| json!({
            "model": problems[*p].label, "seq": problems[*p].seq, "pe_dim": d.dim,
            "buffer_bytes": d.buffer_bytes, "latency_s": d.latency_s, "energy_pj": d.energy_pj,
            "area_mm2": d.area_mm2, "memory_bound": d.memory_bound, "pareto": d.pareto,
            "infeasible": d.infeasible,
        })).collect::<Vec<_>>())),
        OutputFormat::Text => {
            let mut table = Table::new();
            table.load_style(presets::ASCII_MARKDOWN).set_header([
                "model",
                "seq",
                "pe_dim",
                "buffer",
                "latency_s",
                "area_mm2",
                "memory_bound",
                "pareto",
            ]);
            for (p, d) in &points {
                let pr = &problems[*p];
                let buffer = match &d.infeasible {
                    Some(why) => format!("infeasible: {why}"),
                    None => format!("{} KiB", d.buffer_bytes / 1024),
                };
                table.add_row(vec![
                    pr.label.clone(),
                    seq_label(pr.seq),
                    d.dim.to_string(),
                    buffer,
                    format!("{:.4e}", d.latency_s),
                    format!("{:.1}", d.area_mm2),
                    d.memory_bound.to_string(),
                    if d.pareto { "*".into() } else { String::new() },
                ]);
            }
            println!("{table}");
        }
    }
    Ok(())
}

/// The sweep as CSV (for `--out` and `--format csv`): one record per design point, numbers
/// unrounded; `energy_j` is the JSON's `energy_pj` × 1e-12.
fn csv_records(
    problems: &[cascade_scheduler::Problem],
    points: &[(usize, DesignPoint)],
) -> Vec<Vec<String>> {
    let header = [
        "model",
        "seq",
        "pe_dim",
        "buffer_bytes",
        "latency_s",
        "energy_j",
        "area_mm2",
        "memory_bound",
        "pareto",
        "infeasible",
    ];
    let mut records = vec![header.map(String::from).to_vec()];
    for (p, d) in points {
        let pr = &problems[*p];
        records.push(vec![
            pr.label.clone(),
            pr.seq.to_string(),
            d.dim.to_string(),
            d.buffer_bytes.to_string(),
            d.latency_s.to_string(),
            (d.energy_pj * 1e-12).to_string(),
            d.area_mm2.to_string(),
            d.memory_bound.to_string(),
            d.pareto.to_string(),
            d.infeasible.clone().unwrap_or_default(),
        ]);
    }
    records
}

fn plot(
    path: &std::path::Path,
    problems: &[cascade_scheduler::Problem],
    points: &[(usize, DesignPoint)],
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let feasible: Vec<&(usize, DesignPoint)> = points
        .iter()
        .filter(|(_, d)| d.infeasible.is_none())
        .collect();
    if feasible.is_empty() {
        return Err("no feasible design point to plot".into());
    }
    let (mut a0, mut a1, mut l0, mut l1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (_, d) in &feasible {
        a0 = a0.min(d.area_mm2);
        a1 = a1.max(d.area_mm2);
        l0 = l0.min(d.latency_s);
        l1 = l1.max(d.latency_s);
    }
    let root = SVGBackend::new(path, (800, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (a0 * 0.8..a1 * 1.25).log_scale(),
            (l0 * 0.8..l1 * 1.25).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_desc("area (mm²)")
        .y_desc("latency (s)")
        .draw()?;
    for (k, problem) in problems.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        let mut group: Vec<&DesignPoint> = feasible
            .iter()
            .filter(|(p, _)| *p == k)
            .map(|(_, d)| d)
            .collect();
        group.sort_by(|a, b| a.area_mm2.total_cmp(&b.area_mm2));
        chart
            .draw_series(
                group
                    .iter()
                    .map(|d| Circle::new((d.area_mm2, d.latency_s), 3, color.filled())),
            )?
            .label(format!("{} {}", problem.label, seq_label(problem.seq)))
            .legend(move |(x, y)| Circle::new((x, y), 3, color.filled()));
        chart.draw_series(LineSeries::new(
            group
                .iter()
                .filter(|d| d.pareto)
                .map(|d| (d.area_mm2, d.latency_s)),
            color,
        ))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE)
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
