//! `cascade compare`: the paper's comparison — per workload point, how many times faster the
//! subject architecture is than each baseline and what fraction of its energy it spends, for
//! attention alone and (with `--end-to-end`) for the whole layer, and the arithmetic means.

use cascade_sim::compare::{Comparison, Config, Evaluation, Ratio, compare};
use comfy_table::{Table, presets};
use serde_json::json;

use crate::arch_load::{self, LoadedArch, seq_label};
use crate::output::{OutputFormat, check_finite, print_csv, print_json};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The subject architecture (shipped name or TOML path).
    #[arg(long)]
    arch: String,
    /// A baseline architecture; repeat for several.
    #[arg(long = "vs", required = true)]
    vs: Vec<String>,
    /// Model name(s), comma-separated, or `all`.
    #[arg(long, default_value = "all")]
    workload: String,
    /// Sequence lengths, e.g. `1k,4k`; default: the workloads file's list.
    #[arg(long)]
    seq: Option<String>,
    /// Workloads file instead of the shipped one.
    #[arg(long)]
    workloads: Option<String>,
    /// Also compare whole layers (attention plus the linear layers).
    #[arg(long)]
    end_to_end: bool,
    /// Same as `--format csv` (kept for old scripts).
    #[arg(long, hide = true)]
    csv: bool,
}

fn config(l: &LoadedArch) -> Config<'_> {
    Config {
        arch: &l.arch,
        cascade: &l.cascade,
    }
}

pub fn run(args: Args, format: OutputFormat) -> anyhow::Result<()> {
    let format = if args.csv { OutputFormat::Csv } else { format };
    let subject = arch_load::arch_with_cascade(&args.arch, None)?;
    let baselines: Vec<LoadedArch> = args
        .vs
        .iter()
        .map(|v| arch_load::arch_with_cascade(v, None))
        .collect::<anyhow::Result<_>>()?;
    let workloads = arch_load::workloads(args.workloads.as_deref())?;
    let problems = arch_load::problems(&workloads, &args.workload, args.seq.as_deref())?;
    let cmp = compare(
        config(&subject),
        &baselines.iter().map(config).collect::<Vec<_>>(),
        &problems,
    );
    check_ratios(&cmp)?;
    match format {
        OutputFormat::Csv => print_csv(csv_records(&cmp, args.end_to_end))?,
        OutputFormat::Json => print_json(&comparison_json(&cmp)),
        OutputFormat::Text => {
            let (header, rows) = table_rows(&cmp, args.end_to_end);
            println!(
                "{} ({}) against {}",
                cmp.subject,
                subject.cascade.name,
                cmp.baselines.join(", ")
            );
            println!(
                "speedup = baseline latency / {} latency; energy = {} energy / baseline energy",
                cmp.subject, cmp.subject
            );
            let mut table = Table::new();
            table.load_style(presets::ASCII_MARKDOWN).set_header(header);
            for r in rows {
                table.add_row(r);
            }
            println!("{table}");
            for (k, b) in cmp
                .rows
                .first()
                .map(|r| r.baselines.as_slice())
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                let _ = b;
                let infeasible: Vec<String> = cmp
                    .rows
                    .iter()
                    .filter_map(|r| match (&r.subject, &r.baselines[k]) {
                        (Evaluation::Infeasible(why), _) => Some(format!(
                            "{} {}: {} infeasible: {why}",
                            r.workload,
                            seq_label(r.seq),
                            cmp.subject
                        )),
                        (_, Evaluation::Infeasible(why)) => Some(format!(
                            "{} {}: {} infeasible: {why}",
                            r.workload,
                            seq_label(r.seq),
                            cmp.baselines[k]
                        )),
                        _ => None,
                    })
                    .collect();
                for line in infeasible {
                    println!("{line}");
                }
            }
        }
    }
    Ok(())
}

/// Every ratio the comparison reports is finite, or it is an error (see `check_finite`).
pub fn check_ratios(cmp: &Comparison) -> anyhow::Result<()> {
    let fields = |ratios: &[Option<Ratio>]| -> Vec<(&'static str, f64)> {
        ratios
            .iter()
            .flatten()
            .flat_map(|r| [("speedup", r.speedup), ("energy ratio", r.energy)])
            .collect()
    };
    for r in &cmp.rows {
        for report in std::iter::once(&r.subject)
            .chain(&r.baselines)
            .filter_map(Evaluation::report)
        {
            let fields = crate::cmd_simulate::report_fields(report);
            check_finite(&crate::cmd_simulate::report_label(report), &fields)?;
        }
        let what = format!(
            "{} against {} at {} {}",
            cmp.subject,
            cmp.baselines.join(", "),
            r.workload,
            seq_label(r.seq)
        );
        check_finite(&what, &fields(&r.attention))?;
        check_finite(&format!("{what} (end to end)"), &fields(&r.end_to_end))?;
    }
    let what = format!(
        "{} against {} (mean)",
        cmp.subject,
        cmp.baselines.join(", ")
    );
    check_finite(&what, &fields(&cmp.mean_attention))?;
    check_finite(&what, &fields(&cmp.mean_end_to_end))?;
    Ok(())
}

fn fmt_ratio(r: Option<Ratio>) -> [String; 2] {
    match r {
        Some(r) => [
            format!("{:.2}x", r.speedup),
            format!("{:.1}%", r.energy * 100.0),
        ],
        None => ["-".into(), "-".into()],
    }
}

/// Header and rows of the comparison table (the last row holds the means).
pub fn table_rows(cmp: &Comparison, end_to_end: bool) -> (Vec<String>, Vec<Vec<String>>) {
    let mut header = vec!["model".to_string(), "seq".to_string()];
    for b in &cmp.baselines {
        header.push(format!("speedup vs {b}"));
        header.push(format!("energy vs {b}"));
    }
    if end_to_end {
        for b in &cmp.baselines {
            header.push(format!("e2e speedup vs {b}"));
            header.push(format!("e2e energy vs {b}"));
        }
    }
    let mut rows = Vec::new();
    for r in &cmp.rows {
        let mut row = vec![r.workload.clone(), seq_label(r.seq)];
        row.extend(r.attention.iter().flat_map(|&a| fmt_ratio(a)));
        if end_to_end {
            row.extend(r.end_to_end.iter().flat_map(|&a| fmt_ratio(a)));
        }
        rows.push(row);
    }
    let mut mean = vec!["mean".to_string(), format!("{} pts", cmp.rows.len())];
    mean.extend(cmp.mean_attention.iter().flat_map(|&a| fmt_ratio(a)));
    if end_to_end {
        mean.extend(cmp.mean_end_to_end.iter().flat_map(|&a| fmt_ratio(a)));
    }
    rows.push(mean);
    (header, rows)
}

/// CSV: the table's columns with unrounded numbers — speedup as a factor, energy as a fraction
/// of the baseline's — and empty cells where a side is infeasible; the last record holds the
/// means (seq empty).
fn csv_records(cmp: &Comparison, end_to_end: bool) -> Vec<Vec<String>> {
    let mut header = vec!["model".to_string(), "seq".to_string()];
    let kinds: &[&str] = if end_to_end { &["", "e2e_"] } else { &[""] };
    for kind in kinds {
        for b in &cmp.baselines {
            header.push(format!("{kind}speedup_vs_{b}"));
            header.push(format!("{kind}energy_vs_{b}"));
        }
    }
    let cells = |ratios: &[Option<Ratio>]| -> Vec<String> {
        ratios
            .iter()
            .flat_map(|r| match r {
                Some(r) => [r.speedup.to_string(), r.energy.to_string()],
                None => [String::new(), String::new()],
            })
            .collect()
    };
    let mut records = vec![header];
    for r in &cmp.rows {
        let mut rec = vec![r.workload.clone(), r.seq.to_string()];
        rec.extend(cells(&r.attention));
        if end_to_end {
            rec.extend(cells(&r.end_to_end));
        }
        records.push(rec);
    }
    let mut mean = vec!["mean".to_string(), String::new()];
    mean.extend(cells(&cmp.mean_attention));
    if end_to_end {
        mean.extend(cells(&cmp.mean_end_to_end));
    }
    records.push(mean);
    records
}

fn comparison_json(cmp: &Comparison) -> serde_json::Value {
    let ratio = |r: &Option<Ratio>| r.map(|r| json!({"speedup": r.speedup, "energy": r.energy}));
    json!({
        "subject": cmp.subject,
        "baselines": cmp.baselines,
        "points": cmp.rows.iter().map(|r| json!({
            "workload": r.workload,
            "seq": r.seq,
            "attention": r.attention.iter().map(ratio).collect::<Vec<_>>(),
            "end_to_end": r.end_to_end.iter().map(ratio).collect::<Vec<_>>(),
            "infeasible": std::iter::once(&r.subject).chain(&r.baselines).filter_map(|e| match e {
                Evaluation::Infeasible(why) => Some(why.clone()),
                Evaluation::Ok(_) => None,
            }).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "mean_attention": cmp.mean_attention.iter().map(ratio).collect::<Vec<_>>(),
        "mean_end_to_end": cmp.mean_end_to_end.iter().map(ratio).collect::<Vec<_>>(),
    })
}
