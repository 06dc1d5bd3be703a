//! `cascade compare`: the paper's comparison — per workload point, how many times faster the
//! subject architecture is than each baseline and what fraction of its energy it spends, for
//! attention alone and (with `--end-to-end`) for the whole layer, one record per point; the
//! arithmetic means are the summary (the text table's last row, JSON's `summary`, `--summary`).

use std::path::PathBuf;

use cascade_sim::compare::{Comparison, Config, Evaluation, PointRow, Ratio, compare};
use serde_json::{Value, json};

use crate::arch_load::{self, LoadedArch, seq_label};
use crate::files;
use crate::output::{OutputFormat, check_finite, csv_bytes, print_csv, print_json};
use crate::schema::{self, Cell, Column, Records, Style, col};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    set: Set,
    /// Also compare whole layers (attention plus the linear layers).
    #[arg(long)]
    end_to_end: bool,
    /// Also write the summary (the means over the points, and their count) as a one-record
    /// CSV here; the points' CSV holds one record per point and no mean.
    #[arg(long)]
    summary: Option<PathBuf>,
    /// Same as `--format csv` (kept for old scripts).
    #[arg(long, hide = true)]
    csv: bool,
}

/// The architectures and workload points of a comparison (`compare` and `report`).
#[derive(Debug, clap::Args)]
pub struct Set {
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
}

impl Set {
    /// The subject, the baselines and the workload points, loaded and validated.
    pub fn load(
        &self,
    ) -> anyhow::Result<(LoadedArch, Vec<LoadedArch>, Vec<cascade_scheduler::Problem>)> {
        let subject = arch_load::arch_with_cascade(&self.arch, None)?;
        let baselines: Vec<LoadedArch> = self
            .vs
            .iter()
            .map(|v| arch_load::arch_with_cascade(v, None))
            .collect::<anyhow::Result<_>>()?;
        let workloads = arch_load::workloads(self.workloads.as_deref())?;
        let problems = arch_load::problems(&workloads, &self.workload, self.seq.as_deref())?;
        Ok((subject, baselines, problems))
    }
}

/// The subject against each baseline at every point.
pub fn comparison(
    subject: &LoadedArch,
    baselines: &[LoadedArch],
    problems: &[cascade_scheduler::Problem],
) -> Comparison {
    fn config(l: &LoadedArch) -> Config<'_> {
        Config {
            arch: &l.arch,
            cascade: &l.cascade,
        }
    }
    let bases: Vec<Config<'_>> = baselines.iter().map(config).collect();
    compare(config(subject), &bases, problems)
}

pub fn run(args: Args, format: OutputFormat) -> anyhow::Result<()> {
    let format = if args.csv { OutputFormat::Csv } else { format };
    let (subject, baselines, problems) = args.set.load()?;
    let cmp = comparison(&subject, &baselines, &problems);
    check_ratios(&cmp)?;
    let records = records(&cmp, args.end_to_end);
    let summary = summary(&cmp, args.end_to_end);
    if let Some(path) = &args.summary {
        files::write_atomic(path, &csv_bytes(summary.csv())?)?;
    }
    match format {
        OutputFormat::Csv => print_csv(records.csv())?,
        OutputFormat::Json => {
            let mut mean = summary.json();
            let context = schema::context([
                ("subject", json!(cmp.subject)),
                ("baselines", json!(cmp.baselines)),
                ("summary", mean.pop().map_or(Value::Null, Value::Object)),
            ]);
            print_json(&schema::document("compare", context, &records, None));
        }
        OutputFormat::Text => {
            println!(
                "{} ({}) against {}",
                cmp.subject,
                subject.cascade.name,
                cmp.baselines.join(", ")
            );
            println!(
                "speedup = baseline latency / {} latency; energy_ratio = {} energy / baseline energy; the last row is the mean over the points",
                cmp.subject, cmp.subject
            );
            let (header, rows) = text_rows(&records, &summary, cmp.rows.len());
            let mut table = comfy_table::Table::new();
            table
                .load_style(comfy_table::presets::ASCII_MARKDOWN)
                .set_header(header);
            for row in rows {
                table.add_row(row);
            }
            println!("{table}");
            for r in &cmp.rows {
                if let Cell::Text(why) = &records_infeasible(r, &cmp) {
                    println!("{} {}: {why}", r.workload, seq_label(r.seq));
                }
            }
        }
    }
    Ok(())
}

/// The text table's header and rows: one row per point, then the summary's means under the
/// points' columns (`cascade compare`'s text and `cascade report`'s comparison table).
fn text_rows(
    records: &Records,
    summary: &Records,
    points: usize,
) -> (Vec<String>, Vec<Vec<String>>) {
    let shown: Vec<&str> = records
        .columns
        .iter()
        .map(|c| c.name.as_str())
        .filter(|&n| n != "infeasible")
        .collect();
    let mut rows: Vec<Vec<String>> = (0..records.rows.len())
        .map(|k| records.text_cells(k, &shown))
        .collect();
    let mut mean = summary.text_cells(0, &shown);
    mean[0] = "mean".into();
    mean[1] = format!("{points} pts");
    rows.push(mean);
    (shown.iter().map(|s| s.to_string()).collect(), rows)
}

/// The comparison as text: the header and rows `cascade compare` prints.
pub fn table_rows(cmp: &Comparison, end_to_end: bool) -> (Vec<String>, Vec<Vec<String>>) {
    text_rows(
        &records(cmp, end_to_end),
        &summary(cmp, end_to_end),
        cmp.rows.len(),
    )
}

/// The reasons a point has no ratio: which side is infeasible, and why.
fn records_infeasible(r: &PointRow, cmp: &Comparison) -> Cell {
    let names = std::iter::once(&cmp.subject).chain(&cmp.baselines);
    let reasons: Vec<String> = std::iter::once(&r.subject)
        .chain(&r.baselines)
        .zip(names)
        .filter_map(|(e, name)| match e {
            Evaluation::Infeasible(why) => Some(format!("{name} infeasible: {why}")),
            Evaluation::Ok(_) => None,
        })
        .collect();
    if reasons.is_empty() {
        Cell::Missing
    } else {
        Cell::Text(reasons.join("; "))
    }
}

/// The ratio columns: per baseline its speedup and energy ratio, then with `end_to_end` the
/// same for the whole layer.
fn ratio_columns(cmp: &Comparison, end_to_end: bool) -> Vec<Column> {
    let kinds: &[&str] = if end_to_end { &["", "e2e_"] } else { &[""] };
    let mut columns = Vec::new();
    for kind in kinds {
        for b in &cmp.baselines {
            columns.push(col(format!("{kind}speedup_vs_{b}"), Style::Fixed(2)));
            columns.push(col(format!("{kind}energy_ratio_vs_{b}"), Style::Fixed(3)));
        }
    }
    columns
}

/// A ratio's two cells, named for its kind and baseline; missing where a side is infeasible.
fn ratio_cells(kind: &str, baseline: &str, r: Option<Ratio>) -> [(String, Cell); 2] {
    let cell = |x: Option<f64>| x.map_or(Cell::Missing, Cell::Number);
    [
        (
            format!("{kind}speedup_vs_{baseline}"),
            cell(r.map(|r| r.speedup)),
        ),
        (
            format!("{kind}energy_ratio_vs_{baseline}"),
            cell(r.map(|r| r.energy)),
        ),
    ]
}

/// The ratio cells of one row of ratios (attention, and end to end if asked).
fn ratios(
    cmp: &Comparison,
    attention: &[Option<Ratio>],
    e2e: Option<&[Option<Ratio>]>,
) -> Vec<(String, Cell)> {
    let mut cells = Vec::new();
    for (b, &r) in cmp.baselines.iter().zip(attention) {
        cells.extend(ratio_cells("", b, r));
    }
    for (b, &r) in cmp.baselines.iter().zip(e2e.unwrap_or_default()) {
        cells.extend(ratio_cells("e2e_", b, r));
    }
    cells
}

/// The schema's record of every point (see `docs/output.md`): one record per workload point,
/// with the reasons in `infeasible` where a side could not be scheduled.
fn records(cmp: &Comparison, end_to_end: bool) -> Records {
    let mut columns = vec![col("model", Style::Plain), col("seq", Style::Seq)];
    columns.extend(ratio_columns(cmp, end_to_end));
    columns.push(col("infeasible", Style::Plain));
    let mut records = Records::new(columns);
    for r in &cmp.rows {
        let mut cells = vec![
            ("model".to_string(), Cell::Text(r.workload.clone())),
            ("seq".to_string(), Cell::Count(r.seq)),
            ("infeasible".to_string(), records_infeasible(r, cmp)),
        ];
        cells.extend(ratios(
            cmp,
            &r.attention,
            end_to_end.then_some(r.end_to_end.as_slice()),
        ));
        records.push(cells);
    }
    records
}

/// The summary: the arithmetic means of each ratio over the points where both sides are
/// feasible, and how many points there are; one record, under the points' ratio names.
fn summary(cmp: &Comparison, end_to_end: bool) -> Records {
    let mut columns = vec![col("n_points", Style::Plain)];
    columns.extend(ratio_columns(cmp, end_to_end));
    let mut records = Records::new(columns);
    let mut cells = vec![("n_points".to_string(), Cell::Count(cmp.rows.len() as u64))];
    cells.extend(ratios(
        cmp,
        &cmp.mean_attention,
        end_to_end.then_some(cmp.mean_end_to_end.as_slice()),
    ));
    records.push(cells);
    records
}

/// Every ratio the comparison reports is finite, or it is an error (see `check_finite`).
pub fn check_ratios(cmp: &Comparison) -> anyhow::Result<()> {
    let fields = |ratios: &[Option<Ratio>]| -> Vec<(&'static str, f64)> {
        ratios
            .iter()
            .flatten()
            .flat_map(|r| [("speedup", r.speedup), ("energy_ratio", r.energy)])
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
