//! `cascade report`: one self-contained HTML page (inline CSS and SVG, no script, nothing
//! fetched) with what `compare` prints and the figures an architect looks at next: per-Einsum
//! time and energy, utilisation per unit, the roofline of every point and, with `--sweep-pe-dim`,
//! the Pareto front of an array-size sweep. Every number comes from `compare::compare`'s
//! reports and `sweep::design_point`; the figures are drawn by `plot`.

use std::fmt::Write as _;
use std::path::PathBuf;

use cascade_scheduler::ArchSpec;
use cascade_sim::compare::{Comparison, Evaluation};
use cascade_sim::sweep::DesignPoint;
use cascade_sim::{EnergyKind, SimReport};

use cascade_cli::values;

use crate::arch_load::{self, LoadedArch, seq_label};
use crate::files;
use crate::output::{Format, UserError};
use crate::plot::{self, Axis, Bars, Mark, Scatter, Series};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    set: crate::cmd_compare::Set,
    /// Add a sweep section: the subject's array sizes, e.g. `16..512` (as `sweep --pe-dim`).
    #[arg(long)]
    sweep_pe_dim: Option<String>,
    /// The sweep's sequence lengths.
    #[arg(long, default_value = "256k")]
    sweep_seq: String,
    /// The sweep's model name(s).
    #[arg(long, default_value = "bert")]
    sweep_workload: String,
    /// The sweep's smallest buffer, in bytes.
    #[arg(long, default_value = "64k")]
    min_buffer: String,
    /// The sweep's largest buffer, in bytes.
    #[arg(long, default_value = "32M")]
    max_buffer: String,
    /// The point whose per-Einsum breakdowns the page shows, as its table row reads
    /// (`"BERT 16K"`); default: the first point every architecture runs.
    #[arg(long)]
    breakdown_at: Option<String>,
    /// The HTML file to write (replaced atomically if it exists).
    #[arg(long)]
    out: PathBuf,
}

/// The most design points the report's sweep evaluates (as `sweep`'s limit).
const MAX_SWEEP_POINTS: usize = 1 << 12;

fn user<T>(r: Result<T, values::ValueError>) -> anyhow::Result<T> {
    r.map_err(|e| UserError::message(e.0).into())
}

pub fn run(args: Args, format: Format) -> anyhow::Result<()> {
    let (subject, baselines, problems) = args.set.load()?;
    let cmp = crate::cmd_compare::comparison(&subject, &baselines, &problems);
    crate::cmd_compare::check_ratios(&cmp)?;
    let sweep = match &args.sweep_pe_dim {
        Some(dims) => Some(sweep(&args, &subject, dims)?),
        None => None,
    };
    let archs: Vec<&LoadedArch> = std::iter::once(&subject).chain(&baselines).collect();
    let detail = breakdown_point(&cmp, args.breakdown_at.as_deref())?;
    let page = page(&cmp, &archs, detail, sweep.as_ref())
        .map_err(|e| UserError::message(format!("cannot draw {}: {e}", args.out.display())))?;
    files::write_atomic(&args.out, page.as_bytes())?;
    match format {
        Format::Text => println!("wrote {}", args.out.display()),
        Format::Json => crate::output::print_json(&serde_json::json!({
            "report": args.out.display().to_string(),
            "points": cmp.rows.len(),
            "architectures": archs.iter().map(|a| a.arch.name()).collect::<Vec<_>>(),
        })),
    }
    Ok(())
}

/// The sweep section's data: every design point of the subject, Pareto-marked per workload
/// point.
struct Sweep {
    problems: Vec<cascade_scheduler::Problem>,
    points: Vec<(usize, DesignPoint)>,
}

fn sweep(args: &Args, subject: &LoadedArch, dims: &str) -> anyhow::Result<Sweep> {
    let workloads = arch_load::workloads(None)?;
    let problems = arch_load::problems(&workloads, &args.sweep_workload, Some(&args.sweep_seq))?;
    let dims = user(values::pe_dims(dims))?;
    let buffers = crate::cmd_sweep::buffer_range(&args.min_buffer, &args.max_buffer)?;
    let count = problems.len().saturating_mul(dims.len());
    if count > MAX_SWEEP_POINTS {
        return Err(UserError::message(format!(
            "the report's sweep has {count} design points ({} array sizes × {} workload points), more than the limit of {MAX_SWEEP_POINTS}; sweep fewer sizes or lengths (or run `cascade sweep` for large sweeps)",
            dims.len(),
            problems.len()
        ))
        .into());
    }
    let jobs: Vec<(usize, u64)> = (0..problems.len())
        .flat_map(|p| dims.iter().map(move |&d| (p, d)))
        .collect();
    let mut points = crate::cmd_sweep::evaluate(subject, &problems, &jobs, buffers, false)?;
    crate::cmd_sweep::mark_fronts(&mut points);
    Ok(Sweep { problems, points })
}

/// Text for HTML: `&`, `<`, `>` and `"` escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// An HTML table with a header row.
fn table(id: &str, header: &[String], rows: &[Vec<String>]) -> String {
    let mut html = format!("<table id=\"{id}\">\n<thead><tr>");
    for h in header {
        let _ = write!(html, "<th>{}</th>", escape(h));
    }
    html.push_str("</tr></thead>\n<tbody>\n");
    for r in rows {
        html.push_str("<tr>");
        for cell in r {
            let _ = write!(html, "<td>{}</td>", escape(cell));
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</tbody>\n</table>\n");
    html
}

/// A figure: the chart's SVG and a caption saying what it shows.
fn figure(id: &str, svg: &str, caption: &str) -> String {
    format!(
        "<figure id=\"{id}\">\n{svg}\n<figcaption>{}</figcaption>\n</figure>\n",
        escape(caption)
    )
}

/// Every architecture's report at every point, `None` where infeasible: rows of
/// (workload label, per architecture).
fn reports(cmp: &Comparison) -> Vec<(String, Vec<Option<&SimReport>>)> {
    cmp.rows
        .iter()
        .map(|r| {
            let label = format!("{} {}", r.workload, seq_label(r.seq));
            let each = std::iter::once(&r.subject)
                .chain(&r.baselines)
                .map(Evaluation::report)
                .collect();
            (label, each)
        })
        .collect()
}

/// The row whose breakdowns the page shows: the one `--breakdown-at` names (every
/// architecture must run it), else the first that every architecture runs; `None` if none does.
fn breakdown_point(cmp: &Comparison, wanted: Option<&str>) -> anyhow::Result<Option<usize>> {
    let feasible = |r: &cascade_sim::compare::PointRow| {
        std::iter::once(&r.subject)
            .chain(&r.baselines)
            .all(|e| e.report().is_some())
    };
    let label = |r: &cascade_sim::compare::PointRow| format!("{} {}", r.workload, seq_label(r.seq));
    let Some(wanted) = wanted else {
        return Ok(cmp.rows.iter().position(feasible));
    };
    let normal = |s: &str| {
        s.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    };
    match cmp.rows.iter().position(|r| normal(&label(r)) == normal(wanted)) {
        Some(k) if feasible(&cmp.rows[k]) => Ok(Some(k)),
        Some(_) => Err(UserError::message(format!(
            "--breakdown-at {wanted}: not every architecture can run that point; choose one where none is infeasible"
        ))
        .into()),
        None => Err(UserError::message(format!(
            "--breakdown-at {wanted} is none of the report's points; write one as its row reads: {}",
            cmp.rows.iter().map(label).collect::<Vec<_>>().join(", ")
        ))
        .into()),
    }
}

/// The whole page; `detail` is the row whose breakdowns it shows.
fn page(
    cmp: &Comparison,
    archs: &[&LoadedArch],
    detail: Option<usize>,
    sweep: Option<&Sweep>,
) -> Result<String, plot::PlotError> {
    let names: Vec<String> = archs
        .iter()
        .map(|a| format!("{} ({})", a.arch.name(), a.cascade.name))
        .collect();
    let rows = reports(cmp);
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>{} against {}</h1>\n<p>{} workload points. Speedup = baseline latency / {} latency; energy = {} energy / baseline energy (attention alone). Architectures: {}.</p>\n",
        escape(&cmp.subject),
        escape(&cmp.baselines.join(", ")),
        cmp.rows.len(),
        escape(&cmp.subject),
        escape(&cmp.subject),
        escape(&names.join(", "))
    );
    body.push_str("<h2>Comparison</h2>\n");
    let (header, table_rows) = crate::cmd_compare::table_rows(cmp, false);
    body.push_str(&table("comparison", &header, &table_rows));
    body.push_str("<h3>Latency and energy per point</h3>\n");
    body.push_str(&absolute_table(cmp, &rows));
    for line in infeasible_lines(cmp) {
        let _ = writeln!(body, "<p class=\"infeasible\">{}</p>", escape(&line));
    }
    body.push_str("<h2>Where the time and energy go</h2>\n");
    match detail.map(|k| &rows[k]) {
        Some((label, each)) => {
            let _ = writeln!(body, "<p>At {}.</p>", escape(label));
            for (k, (arch, report)) in archs.iter().zip(each).enumerate() {
                let report = report.expect("every architecture runs this point");
                body.push_str(&breakdown_figures(k, arch, report)?);
            }
        }
        None => body.push_str("<p>No point is feasible on every architecture.</p>\n"),
    }
    body.push_str("<h2>Utilisation per unit</h2>\n");
    for (k, arch) in archs.iter().enumerate() {
        if let Some(svg) = utilisation(arch, k, &rows)? {
            let caption = format!(
                "{}: each unit's busy cycles over the layer's latency, per workload point.",
                arch.arch.name()
            );
            body.push_str(&figure(&format!("utilisation-{k}"), &svg, &caption));
        }
    }
    body.push_str("<h2>Roofline</h2>\n");
    body.push_str(&figure(
        "roofline",
        &plot::scatter(&roofline(archs, &rows)?)?,
        "Attained throughput (compute actions of the energy table — a MAC, an add, a max, a divide; exp is six MACs without an exp unit — over the latency) against arithmetic intensity (actions per DRAM byte), per architecture and point. Dashed: each architecture's roof, min(every PE doing one action a cycle, DRAM bandwidth × intensity); a pipelined divider beside the ALU can add one action a cycle above it.",
    ));
    if let Some(sw) = sweep {
        body.push_str("<h2>Array-size sweep</h2>\n");
        let labels: Vec<String> = sw
            .problems
            .iter()
            .map(|p| format!("{} {}", p.label, crate::arch_load::seq_label(p.seq)))
            .collect();
        let chart = plot::pareto(&labels, &sw.points)?;
        let caption = format!(
            "{}: latency against area as the array grows (buffer sized per design by doubling while memory time exceeds the row unit's compute time); lines join each point's Pareto front.",
            cmp.subject
        );
        body.push_str(&figure("pareto", &plot::scatter(&chart)?, &caption));
        body.push_str(&sweep_table(sw));
    }
    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>cascade report: {}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n{body}<footer>Written by cascade report; every number is the analytical model's.</footer>\n</body>\n</html>\n",
        escape(&cmp.subject)
    ))
}

const STYLE: &str = "body { font-family: sans-serif; max-width: 1000px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f2f2f2; }
td:first-child, th:first-child { text-align: left; }
figure { margin: 1.5em 0; }
figure svg { max-width: 100%; height: auto; }
figcaption { font-size: 13px; color: #444; }
.infeasible { color: #a33; font-size: 13px; }
footer { margin-top: 3em; font-size: 12px; color: #666; }
";

/// Latency and energy of every architecture at every point, with units.
fn absolute_table(cmp: &Comparison, rows: &[(String, Vec<Option<&SimReport>>)]) -> String {
    let mut header = vec!["point".to_string()];
    for name in std::iter::once(&cmp.subject).chain(&cmp.baselines) {
        header.push(format!("{name} latency"));
        header.push(format!("{name} energy"));
    }
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|(label, each)| {
            let mut row = vec![label.clone()];
            for r in each {
                match r {
                    Some(r) => {
                        row.push(plot::si(r.latency_s, Some("s")));
                        row.push(plot::si(r.energy.total_pj() * 1e-12, Some("J")));
                    }
                    None => row.extend(["infeasible".to_string(), "-".to_string()]),
                }
            }
            row
        })
        .collect();
    table("absolute", &header, &body)
}

fn infeasible_lines(cmp: &Comparison) -> Vec<String> {
    let names: Vec<&String> = std::iter::once(&cmp.subject)
        .chain(&cmp.baselines)
        .collect();
    let mut lines = Vec::new();
    for r in &cmp.rows {
        for (name, e) in names
            .iter()
            .zip(std::iter::once(&r.subject).chain(&r.baselines))
        {
            if let Evaluation::Infeasible(why) = e {
                lines.push(format!(
                    "{} {}: {name} infeasible: {why}",
                    r.workload,
                    seq_label(r.seq)
                ));
            }
        }
    }
    lines
}

/// One architecture's time per Einsum and energy per Einsum and per tensor at one point.
fn breakdown_figures(
    k: usize,
    arch: &LoadedArch,
    report: &SimReport,
) -> Result<String, plot::PlotError> {
    let name = arch.arch.name();
    let clock = arch.arch.clock_hz();
    let units: Vec<String> = arch
        .arch
        .units()
        .iter()
        .map(|u| u.name().to_string())
        .collect();
    let time = Bars {
        title: format!("{name}: busy time per Einsum"),
        value: Axis::new("busy time of its unit (s)", Some("s")),
        series: units.clone(),
        categories: report
            .einsums
            .iter()
            .map(|e| {
                let unit = units.iter().position(|u| *u == e.unit).unwrap_or(0);
                (e.name.clone(), vec![(unit, e.cycles / clock)])
            })
            .collect(),
    };
    let phases = report.phases.len();
    // (phase, owner) in order of first appearance, with segments by energy kind.
    let group = |kinds: [EnergyKind; 2]| -> Vec<(String, Vec<(usize, f64)>)> {
        let mut out: Vec<((usize, String), [f64; 2])> = Vec::new();
        for it in &report.breakdown.items {
            let Some(slot) = kinds.iter().position(|&kd| kd == it.kind) else {
                continue;
            };
            let key = (it.phase, it.owner.clone());
            let at = match out.iter().position(|(k, _)| *k == key) {
                Some(i) => i,
                None => {
                    out.push((key, [0.0; 2]));
                    out.len() - 1
                }
            };
            out[at].1[slot] += it.pj * 1e-12;
        }
        out.into_iter()
            .map(|((phase, owner), v)| {
                let label = if phases > 1 {
                    format!("{owner} (phase {})", phase + 1)
                } else {
                    owner
                };
                (label, vec![(0, v[0]), (1, v[1])])
            })
            .collect()
    };
    let einsum_energy = Bars {
        title: format!("{name}: energy per Einsum"),
        value: Axis::new("energy (J)", Some("J")),
        series: vec!["compute".into(), "PE registers".into()],
        categories: group([EnergyKind::Compute, EnergyKind::Register]),
    };
    let tensor_energy = Bars {
        title: format!("{name}: energy per tensor moved"),
        value: Axis::new("energy (J)", Some("J")),
        series: vec!["global buffer".into(), "DRAM".into()],
        categories: group([EnergyKind::Buffer, EnergyKind::Dram]),
    };
    let mut html = format!("<h3>{}</h3>\n", escape(name));
    html.push_str(&figure(
        &format!("time-{k}"),
        &plot::bars(&time)?,
        "Busy cycles of each Einsum on its unit over the layer, in seconds of the clock; coloured by unit.",
    ));
    html.push_str(&figure(
        &format!("energy-einsum-{k}"),
        &plot::bars(&einsum_energy)?,
        "Compute and PE-register energy of each Einsum (action counts × the energy table).",
    ));
    html.push_str(&figure(
        &format!("energy-tensor-{k}"),
        &plot::bars(&tensor_energy)?,
        "Global-buffer and DRAM energy of each tensor moved; with the figure above it sums to the total.",
    ));
    Ok(html)
}

/// One architecture's utilisation per unit at every point it runs (`None`: it runs none).
fn utilisation(
    arch: &LoadedArch,
    k: usize,
    rows: &[(String, Vec<Option<&SimReport>>)],
) -> Result<Option<String>, plot::PlotError> {
    let units: Vec<String> = arch
        .arch
        .units()
        .iter()
        .map(|u| u.name().to_string())
        .collect();
    let mut categories = Vec::new();
    for (label, each) in rows {
        let Some(r) = each[k] else { continue };
        for u in &r.units {
            let series = units.iter().position(|n| *n == u.name).unwrap_or(0);
            categories.push((
                format!("{label} · {}", u.name),
                vec![(series, u.utilisation)],
            ));
        }
    }
    if categories.is_empty() {
        return Ok(None);
    }
    let chart = Bars {
        title: format!("{}: utilisation per unit", arch.arch.name()),
        value: Axis::new("utilisation (busy cycles / latency)", None),
        series: units,
        categories,
    };
    Ok(Some(plot::bars(&chart)?))
}

/// Peak compute actions per second: every PE of every unit doing one a cycle.
fn peak_actions_per_s(arch: &ArchSpec) -> f64 {
    arch.units().iter().map(|u| u.pes() as f64).sum::<f64>() * arch.clock_hz()
}

/// The roofline: each point at (actions / DRAM byte, actions / s), and each architecture's roof.
fn roofline(
    archs: &[&LoadedArch],
    rows: &[(String, Vec<Option<&SimReport>>)],
) -> Result<Scatter, plot::PlotError> {
    let mut series = Vec::new();
    let mut intensities = Vec::new();
    for (k, arch) in archs.iter().enumerate() {
        let points: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|(_, each)| each[k])
            .filter(|r| r.dram_bytes > 0.0 && r.latency_s > 0.0)
            .map(|r| {
                let actions: f64 = r
                    .breakdown
                    .items
                    .iter()
                    .filter(|it| it.kind == EnergyKind::Compute)
                    .map(|it| it.count)
                    .sum();
                (actions / r.dram_bytes, actions / r.latency_s)
            })
            .collect();
        intensities.extend(points.iter().map(|p| p.0));
        series.push(Series {
            label: arch.arch.name().to_string(),
            points,
            mark: Mark::Points,
            colour: k,
        });
    }
    let (lo, hi) = intensities
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    if intensities.is_empty() {
        return Err(plot::PlotError("no feasible point for the roofline".into()));
    }
    let (lo, hi) = (lo / 4.0, hi * 4.0);
    for (k, arch) in archs.iter().enumerate() {
        let peak = peak_actions_per_s(&arch.arch);
        let bandwidth = arch.arch.dram_bytes_per_cycle() * arch.arch.clock_hz();
        let knee = peak / bandwidth;
        let mut roof = vec![(lo, peak.min(bandwidth * lo))];
        if knee > lo && knee < hi {
            roof.push((knee, peak));
        }
        roof.push((hi, peak.min(bandwidth * hi)));
        series.push(Series {
            label: format!("{} roof", arch.arch.name()),
            points: roof,
            mark: Mark::Dashed,
            colour: k,
        });
    }
    Ok(Scatter {
        title: "Roofline".into(),
        x: Axis::new("arithmetic intensity (actions/byte of DRAM)", None).log(),
        y: Axis::new("throughput (actions/s)", None).log(),
        series,
    })
}

fn sweep_table(sw: &Sweep) -> String {
    let header: Vec<String> = [
        "point",
        "pe_dim",
        "buffer",
        "latency",
        "energy",
        "area (mm²)",
        "pareto",
    ]
    .map(String::from)
    .into();
    let rows: Vec<Vec<String>> = sw
        .points
        .iter()
        .map(|(p, d)| {
            let pr = &sw.problems[*p];
            let point = format!("{} {}", pr.label, seq_label(pr.seq));
            match &d.infeasible {
                Some(why) => vec![point, d.dim.to_string(), format!("infeasible: {why}")],
                None => vec![
                    point,
                    d.dim.to_string(),
                    plot::si(d.buffer_bytes as f64, Some("B")),
                    plot::si(d.latency_s, Some("s")),
                    plot::si(d.energy_j, Some("J")),
                    format!("{:.1}", d.area_mm2),
                    if d.pareto {
                        "yes".into()
                    } else {
                        String::new()
                    },
                ],
            }
        })
        .collect();
    table("sweep", &header, &rows)
}
