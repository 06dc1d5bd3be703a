//! `cascade sweep`: the Pareto study — latency against area as the array grows, with the buffer
//! sized per design by doubling while memory time exceeds the row unit's compute time. Points
//! run in parallel (rayon) behind a progress bar; results go to CSV and an SVG plot.

use std::path::PathBuf;

use cascade_sim::sweep::{DesignPoint, design_point, mark_pareto};
use comfy_table::{Table, presets};
use indicatif::{ParallelProgressIterator, ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde_json::json;

use cascade_cli::values;

use crate::arch_load::{self, seq_label};
use crate::files;
use crate::output::{OutputFormat, UserError, check_finite, print_csv, print_json};

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
    let (min_buffer, max_buffer) = (
        user(values::bytes(
            &args.min_buffer,
            "--min-buffer",
            values::MAX_BUFFER_BYTES,
        ))?,
        user(values::bytes(
            &args.max_buffer,
            "--max-buffer",
            values::MAX_BUFFER_BYTES,
        ))?,
    );
    if min_buffer > max_buffer {
        return Err(UserError::message(format!(
            "--min-buffer {} is larger than --max-buffer {}; give a range from small to large",
            args.min_buffer, args.max_buffer
        ))
        .into());
    }
    let count = problems.len().saturating_mul(dims.len());
    if count > MAX_DESIGN_POINTS {
        return Err(UserError::message(format!(
            "the sweep has {count} design points ({} array sizes × {} workload points), more than the limit of {MAX_DESIGN_POINTS}; sweep fewer sizes or lengths",
            dims.len(),
            problems.len()
        ))
        .into());
    }
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
            ("energy_pj", d.energy_pj),
            ("area_mm2", d.area_mm2),
        ];
        check_finite(&what, &fields)?;
    }
    let records = csv_records(&problems, &points);
    // Both files are made in memory first, so a failure leaves neither half-written.
    let plot_text = match &args.plot {
        Some(path) => Some(
            plot(&problems, &points)
                .map_err(|e| UserError::message(format!("cannot draw {}: {e}", path.display())))?,
        ),
        None => None,
    };
    if let Some(path) = &args.out {
        files::write_atomic(path, &csv_bytes(&records)?)?;
    }
    if let (Some(path), Some(text)) = (&args.plot, plot_text) {
        files::write_atomic(path, text.as_bytes())?;
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

/// CSV records as the bytes of a file.
fn csv_bytes(records: &[Vec<String>]) -> anyhow::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in records {
        w.write_record(r)?;
    }
    w.into_inner()
        .map_err(|e| anyhow::anyhow!("CSV buffer: {e}"))
}

/// The SVG text of the latency-against-area plot (`plot::pareto`, drawn by `plot::scatter`).
fn plot(
    problems: &[cascade_scheduler::Problem],
    points: &[(usize, DesignPoint)],
) -> Result<String, Box<dyn std::error::Error>> {
    Ok(crate::plot::scatter(&crate::plot::pareto(
        problems, points,
    )?)?)
}
