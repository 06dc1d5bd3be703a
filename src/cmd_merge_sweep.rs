//! `cascade merge-sweep`: joins the CSV files of a sweep's shards (`sweep --shard K/N`) into the
//! whole sweep, recomputes each workload point's Pareto front over all of its design points, and
//! prints or writes it as `sweep` does (CSV, JSON, text, `--out`, `--plot`). Every file must be
//! a sweep CSV of this schema version, of one sweep (architecture, cascade, size), and together
//! they must hold each of its design points exactly once; anything else is refused with the
//! file and line.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use cascade_sim::sweep::DesignPoint;

use crate::cmd_sweep::{self, COLUMNS, Sweep};
use crate::output::{OutputFormat, UserError};
use crate::schema::SCHEMA_VERSION;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shards' CSV files (`cascade sweep --shard K/N --out FILE`, or its `--format csv`).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Write the merged sweep as CSV here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Draw latency against area (SVG) here, with the recomputed fronts.
    #[arg(long)]
    plot: Option<PathBuf>,
}

/// The largest shard file read: room for every design point of the largest sweep.
const MAX_FILE_BYTES: u64 = 1 << 30;

/// The most design points a merged sweep may hold, as for `sweep` itself.
const MAX_POINTS: u64 = 1 << 20;

/// One design point read back, with where it came from.
struct Read {
    arch: String,
    cascade: String,
    model: String,
    seq: u64,
    position: u64,
    total: u64,
    point: DesignPoint,
    place: String,
}

pub fn run(args: Args, format: OutputFormat) -> anyhow::Result<()> {
    let mut read = Vec::new();
    for path in &args.files {
        read.extend(read_file(path)?);
    }
    let sweep = merge(read)?;
    let files = (args.out.as_deref(), args.plot.as_deref());
    cmd_sweep::write("merge-sweep", &sweep, format, files)
}

/// `FILE:LINE: message` as a user error.
fn at(place: &str, message: impl std::fmt::Display) -> anyhow::Error {
    UserError::message(format!("{place}: {message}")).into()
}

fn read_file(path: &Path) -> anyhow::Result<Vec<Read>> {
    let name = path.display().to_string();
    let size = fs::metadata(path)
        .map_err(|e| UserError::message(format!("cannot read {name}: {e}")))?
        .len();
    if size > MAX_FILE_BYTES {
        return Err(UserError::message(format!(
            "{name} has {size} bytes, more than the {MAX_FILE_BYTES} (1 GiB) a sweep's CSV can hold; give the shards' own files"
        ))
        .into());
    }
    let bytes =
        fs::read(path).map_err(|e| UserError::message(format!("cannot read {name}: {e}")))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(bytes.as_slice());
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| at(&format!("{name}:1"), format!("not CSV: {e}")))?
        .iter()
        .map(String::from)
        .collect();
    let mut want = vec!["schema_version".to_string()];
    want.extend(COLUMNS.map(String::from));
    if header != want {
        return Err(at(
            &format!("{name}:1"),
            format!(
                "the header is not that of a `cascade sweep` CSV of schema_version {SCHEMA_VERSION}: expected `{}`, found `{}`; merge the files that `cascade sweep --shard K/N --out FILE` wrote",
                want.join(","),
                header.join(",").chars().take(300).collect::<String>()
            ),
        ));
    }
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, csv::Position::line);
            at(
                &format!("{name}:{line}"),
                format!("not a sweep record: {e}"),
            )
        })?;
        let line = record.position().map_or(0, csv::Position::line);
        let place = format!("{name}:{line}");
        let cells: BTreeMap<&str, &str> = want.iter().map(String::as_str).zip(&record).collect();
        out.push(parse_record(&cells, place)?);
    }
    Ok(out)
}

/// One record's cells, by column, as a design point; every cell is checked.
fn parse_record(cells: &BTreeMap<&str, &str>, place: String) -> anyhow::Result<Read> {
    let cell = |name: &str| cells.get(name).copied().unwrap_or_default();
    if cell("schema_version") != SCHEMA_VERSION.to_string() {
        return Err(at(
            &place,
            format!(
                "schema_version `{}`, but this cascade reads {SCHEMA_VERSION}; run the shard again with this version",
                cell("schema_version")
            ),
        ));
    }
    let count = |name: &str| -> anyhow::Result<u64> {
        cell(name).parse::<u64>().map_err(|_| {
            at(
                &place,
                format!(
                    "`{name}` is `{}`, not a whole number from 0 to {}",
                    cell(name),
                    u64::MAX
                ),
            )
        })
    };
    let flag = |name: &str| -> anyhow::Result<bool> {
        match cell(name) {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(at(
                &place,
                format!("`{name}` is `{other}`, not true or false"),
            )),
        }
    };
    let number = |name: &str| -> anyhow::Result<f64> {
        match cell(name).parse::<f64>() {
            Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
            _ => Err(at(
                &place,
                format!("`{name}` is `{}`, not a positive finite number", cell(name)),
            )),
        }
    };
    let (position, total) = (count("sweep_index")?, count("sweep_points")?);
    if total == 0 || total > MAX_POINTS || position >= total {
        return Err(at(
            &place,
            format!(
                "`sweep_index` {position} of `sweep_points` {total}: the index must be below the count, and the count between 1 and {MAX_POINTS}"
            ),
        ));
    }
    let stop = match cell("buffer_stop") {
        "converged" => cascade_scheduler::StopReason::Converged,
        "budget" => cascade_scheduler::StopReason::Budget,
        "exhausted" => cascade_scheduler::StopReason::Exhausted,
        other => {
            return Err(at(
                &place,
                format!("`buffer_stop` is `{other}`, not converged, budget or exhausted"),
            ));
        }
    };
    let infeasible = (!cell("infeasible").is_empty()).then(|| cell("infeasible").to_string());
    let point = match &infeasible {
        None => DesignPoint {
            dim: count("pe_dim")?,
            buffer_bytes: count("buffer_bytes")?,
            latency_s: number("latency_s")?,
            energy_j: number("energy_j")?,
            area_mm2: number("area_mm2")?,
            memory_bound: flag("memory_bound")?,
            infeasible,
            stop,
            pareto: false,
        },
        Some(_) => {
            let given: Vec<&str> = ["latency_s", "energy_j", "area_mm2", "memory_bound"]
                .into_iter()
                .filter(|n| !cell(n).is_empty())
                .collect();
            if !given.is_empty() {
                return Err(at(
                    &place,
                    format!(
                        "an infeasible point with {}: an infeasible point has no results",
                        given.join(", ")
                    ),
                ));
            }
            // As `design_point` makes an infeasible point.
            DesignPoint {
                dim: count("pe_dim")?,
                buffer_bytes: count("buffer_bytes")?,
                latency_s: f64::INFINITY,
                energy_j: f64::INFINITY,
                area_mm2: f64::INFINITY,
                memory_bound: false,
                infeasible,
                stop,
                pareto: false,
            }
        }
    };
    if !matches!(cell("pareto"), "" | "true" | "false") {
        return Err(at(
            &place,
            format!("`pareto` is `{}`, not true, false or empty", cell("pareto")),
        ));
    }
    Ok(Read {
        arch: cell("arch").to_string(),
        cascade: cell("cascade").to_string(),
        model: cell("model").to_string(),
        seq: count("seq")?,
        position,
        total,
        point,
        place,
    })
}

/// The whole sweep from its shards' points: one sweep's, each point once, none missing.
fn merge(mut read: Vec<Read>) -> anyhow::Result<Sweep> {
    let Some(first) = read.first() else {
        return Err(UserError::message(
            "the files hold no design point; give the CSV files of a sweep's shards",
        )
        .into());
    };
    let (arch, cascade, total) = (first.arch.clone(), first.cascade.clone(), first.total);
    let first_place = first.place.clone();
    for r in &read {
        for (what, got, want) in [
            ("arch", &r.arch, &arch),
            ("cascade", &r.cascade, &cascade),
            ("sweep_points", &r.total.to_string(), &total.to_string()),
        ] {
            if got != want {
                return Err(at(
                    &r.place,
                    format!(
                        "`{what}` is `{got}` but `{want}` at {first_place}; merge the shards of one sweep"
                    ),
                ));
            }
        }
    }
    read.sort_by_key(|r| r.position);
    for pair in read.windows(2) {
        if pair[0].position == pair[1].position {
            return Err(at(
                &pair[1].place,
                format!(
                    "design point {} is also at {}; the shards overlap: give each shard's file once",
                    pair[1].position, pair[0].place
                ),
            ));
        }
    }
    if read.len() as u64 != total {
        let have: std::collections::BTreeSet<u64> = read.iter().map(|r| r.position).collect();
        let missing: Vec<String> = (0..total)
            .filter(|p| !have.contains(p))
            .take(5)
            .map(|p| p.to_string())
            .collect();
        return Err(UserError::message(format!(
            "the files hold {} of the sweep's {total} design points (missing sweep_index {}{}); merge the files of every shard, --shard K/N for K = 1 … N",
            read.len(),
            missing.join(", "),
            if total - read.len() as u64 > 5 { ", …" } else { "" }
        ))
        .into());
    }
    let mut groups: Vec<(String, u64)> = Vec::new();
    let mut points = Vec::with_capacity(read.len());
    let mut positions = Vec::with_capacity(read.len());
    for r in read {
        let key = (r.model, r.seq);
        let g = match groups.iter().position(|k| *k == key) {
            Some(g) => g,
            None => {
                groups.push(key);
                groups.len() - 1
            }
        };
        points.push((g, r.point));
        positions.push(r.position);
    }
    let mut sweep = Sweep {
        arch,
        cascade,
        groups,
        points,
        positions,
        total,
        front_known: true,
    };
    cmd_sweep::mark_fronts(&mut sweep.points);
    Ok(sweep)
}
