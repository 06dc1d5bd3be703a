//! `cascade zoo`: every library cascade and model variant at the chosen workload points on one
//! architecture, one row each: the passes over the key rank, the ops, the on-chip footprint,
//! latency, energy, each unit's utilisation and occupancy, DRAM bytes, what bounds it, and
//! whether the code generator fuses it into one kernel. Text, JSON or CSV.
//!
//! Every variant gets the workload's sizes; ranks a model does not give take the defaults
//! below (a window of 4096, 4 sinks, MLA's 512 + 64 latent), `--shape` overrides any. A
//! cascade with a block-mask input gets `--block-mask` or a BigBird-style default layout (the
//! first key block global, a causal band of three blocks). A point that cannot be scheduled is
//! a row with its reason.

use cascade_codegen::{DType, GpuSchedule, Lowering, Target};
use cascade_ir::{Cascade, library};
use cascade_scheduler::{
    ArchSpec, BlockMask, MAX_MASK_BLOCKS, Outcome, Problem, Schedule, schedule,
};
use cascade_sim::{SimReport, simulate};
use rayon::prelude::*;
use serde_json::{Map, Value, json};

use crate::arch_load;
use crate::output::{OutputFormat, UserError, print_csv, print_json};
use crate::schema::{self, Cell, PJ, Records, Style, col};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Architecture: a shipped name or a TOML path.
    #[arg(long, default_value = "fusemax")]
    arch: String,
    /// Workload set: `llm` (today's models, the default), `transformers` or a TOML path.
    #[arg(long, default_value = "llm")]
    workloads: String,
    /// Model name(s) from the workload set, comma-separated, or `all`.
    #[arg(long, default_value = "llama3-8b")]
    workload: String,
    /// Prefill lengths and decode cache lengths, e.g. `8k`; default `8k`.
    #[arg(long, default_value = "8k")]
    seq: String,
    /// `prefill`, `decode` or `all`.
    #[arg(long, default_value = "all")]
    scenario: String,
    /// Decode batches, e.g. `1,16`.
    #[arg(long, default_value = "16")]
    batch: String,
    /// Rank sizes for every point, overriding the workload's and the defaults (`W=1024`).
    #[arg(long)]
    shape: Option<String>,
    /// `NAME=FILE`: the block mask of input NAME (see `simulate --block-mask`).
    #[arg(long = "block-mask")]
    block_mask: Vec<String>,
    /// Only cascades whose name contains this.
    #[arg(long)]
    only: Option<String>,
}

/// Sizes of ranks a variant may declare that models do not all give.
const DEFAULT_SIZES: [(&str, u64); 4] = [("W", 4096), ("S", 4), ("L", 512), ("RP", 64)];

/// One row: a cascade at a point.
struct Row {
    cascade: String,
    point: String,
    seq: u64,
    passes: Option<u32>,
    fused: bool,
    result: Result<(Box<SimReport>, Box<Schedule>), String>,
}

pub fn run(args: Args, format: OutputFormat) -> anyhow::Result<()> {
    let arch = arch_load::arch(&args.arch)?;
    let workloads = arch_load::workloads(Some(&args.workloads))?;
    let points = arch_load::Points {
        scenario: Some(args.scenario.clone()),
        batch: Some(args.batch.clone()),
        set: Some(args.workloads.clone()),
    };
    let mut problems = arch_load::points(&workloads, &args.workload, Some(&args.seq), &points)?;
    for p in &mut problems {
        for (rank, size) in DEFAULT_SIZES {
            p.sizes.entry(rank.to_string()).or_insert(size);
        }
    }
    arch_load::add_shape(&mut problems, args.shape.as_deref())?;
    let masks = arch_load::block_masks(&args.block_mask)?;
    let cascades = zoo_cascades(args.only.as_deref())?;
    if cascades.is_empty() {
        return Err(UserError::message("no cascade matches --only").into());
    }
    for (name, _) in &masks {
        if !cascades.iter().any(|c| c.tensor_by_name(name).is_some()) {
            return Err(UserError::message(format!(
                "--block-mask `{name}`: no cascade here has an input `{name}`; name a mask input such as block_sparse_2pass's BM"
            ))
            .into());
        }
    }
    let fused: Vec<bool> = cascades.iter().map(fuses).collect();
    let jobs: Vec<(usize, usize)> = (0..cascades.len())
        .flat_map(|c| (0..problems.len()).map(move |p| (c, p)))
        .collect();
    let rows: Vec<Row> = jobs
        .par_iter()
        .map(|&(c, p)| {
            let cascade = &cascades[c];
            let mut problem = problems[p].clone();
            match add_masks(cascade, &mut problem, &masks, &arch) {
                Ok(()) => evaluate(cascade, &arch, &problem, fused[c]),
                Err(why) => Row {
                    cascade: cascade.name.clone(),
                    point: problem.label.clone(),
                    seq: problem.seq,
                    passes: None,
                    fused: fused[c],
                    result: Err(why),
                },
            }
        })
        .collect();
    for row in &rows {
        if let Ok((r, _)) = &row.result {
            crate::cmd_simulate::check_point(r, None)?;
        }
    }
    let records = records(&rows, &arch);
    match format {
        OutputFormat::Json => {
            let detail = rows.iter().map(detail_json).collect();
            let context = schema::context([
                ("arch", json!(arch.name())),
                ("workloads", json!(args.workloads)),
            ]);
            print_json(&schema::document("zoo", context, &records, Some(detail)));
        }
        OutputFormat::Csv => print_csv(records.csv())?,
        OutputFormat::Text => {
            println!(
                "{} over {} cascades × {} points ({})",
                arch.name(),
                cascades.len(),
                problems.len(),
                args.workloads
            );
            println!(
                "passes = over the key rank; ops = operations; buffer_bytes = on-chip state in use; util = busy / latency; occupancy = PEs holding a present point while busy; fused_kernel = one generated kernel"
            );
            let mut shown: Vec<String> = [
                "cascade",
                "model",
                "seq",
                "passes",
                "ops",
                "buffer_bytes",
                "latency_s",
                "energy_j",
            ]
            .map(String::from)
            .into();
            for u in arch.units() {
                shown.push(format!("util_{}", u.name()));
                shown.push(format!("occupancy_{}", u.name()));
            }
            shown.extend(["dram_bytes", "bound", "fused_kernel"].map(String::from));
            if records.any("infeasible") {
                shown.push("infeasible".into());
            }
            println!("{}", records.text(&shown));
        }
    }
    Ok(())
}

/// The library cascades and the model variants, by name.
fn zoo_cascades(only: Option<&str>) -> anyhow::Result<Vec<Cascade>> {
    let names: Vec<&str> = library::names()
        .filter(|n| !n.starts_with("pedagogical"))
        .chain(library::variant_names())
        .filter(|n| only.is_none_or(|o| n.contains(o)))
        .collect();
    names
        .into_iter()
        .map(|n| Ok(crate::load::load(n)?.parsed.cascade))
        .collect()
}

/// Whether the code generator lowers the cascade to one fused kernel (CUDA, bf16).
fn fuses(cascade: &Cascade) -> bool {
    let head = 128;
    let s = GpuSchedule::suggested(Target::Cuda, DType::Bf16, head);
    matches!(
        cascade_codegen::plan(cascade, &s, Target::Cuda).map(|p| p.lowering),
        Ok(Lowering::Fused(_))
    )
}

/// The block masks a cascade's mask inputs get: the user's, or the default layout for an input
/// over the blocks of the key and query ranks.
fn add_masks(
    cascade: &Cascade,
    problem: &mut Problem,
    given: &[(String, BlockMask)],
    arch: &ArchSpec,
) -> Result<(), String> {
    for (name, mask) in given {
        if cascade.tensor_by_name(name).is_some() {
            problem.block_masks.insert(name.clone(), mask.clone());
        }
    }
    let rows = arch.unit(arch.tile_unit()).rows();
    for t in cascade
        .tensors
        .iter()
        .filter(|t| t.kind == cascade_ir::TensorKind::Input)
    {
        let [k, q] = t.ranks[..] else { continue };
        let parts = |r| {
            cascade
                .ranks
                .iter()
                .find(|w| w.split.is_some_and(|(outer, _)| outer == r))
                .map(|w| w.name.clone())
        };
        let (Some(kw), Some(qw)) = (parts(k), parts(q)) else {
            continue;
        };
        if problem.block_masks.contains_key(&t.name) {
            continue;
        }
        let size = |n: &str| problem.sizes.get(n).copied().unwrap_or(1);
        let (m, p) = (size(&kw), size(&qw));
        // The inner part of a split rank: the block size.
        let inner = |whole: &str| -> &str {
            let w = cascade.rank_by_name(whole).expect("declared");
            &cascade.rank(cascade.rank(w).split.expect("split").1).name
        };
        // The schedule's block sizes: the array's rows unless the problem gives them.
        let block =
            |whole: &str| -> u64 { problem.sizes.get(inner(whole)).copied().unwrap_or(rows) };
        let (kb, qb) = (block(&kw).min(m).max(1), block(&qw).min(p).max(1));
        let (nk, nq) = (m.div_ceil(kb), p.div_ceil(qb));
        // The layout is made only when it fits a block mask; else the row says why.
        if nk.checked_mul(nq).is_none_or(|n| n > MAX_MASK_BLOCKS) {
            return Err(format!(
                "the default layout of block mask `{}` would have {nk} × {nq} blocks, more than the {MAX_MASK_BLOCKS} a block mask may hold; give larger blocks (--shape {}=…) or a shorter --seq",
                t.name,
                inner(&kw)
            ));
        }
        let bits = (0..nk)
            .flat_map(|i| {
                (0..nq).map(move |j| {
                    // The key block of query block j's last query, at the end of the cache.
                    let diag = ((j + 1) * qb - 1 + m.saturating_sub(p)) / kb;
                    i == 0 || (i <= diag && diag - i < 3)
                })
            })
            .collect();
        if let Ok(mask) = BlockMask::new(nk, nq, bits) {
            problem.block_masks.insert(t.name.clone(), mask);
        }
    }
    Ok(())
}

fn evaluate(cascade: &Cascade, arch: &ArchSpec, problem: &Problem, fused: bool) -> Row {
    let passes = cascade_ir::passes::default_rank(cascade)
        .map(|r| cascade_ir::passes::passes(cascade, r).passes);
    let result = match schedule(cascade, arch, problem) {
        Ok(Outcome::Scheduled(s)) => Ok((Box::new(simulate(&s, arch)), s)),
        Ok(Outcome::Infeasible(why)) => Err(why.reason),
        Err(e) => Err(e.to_string()),
    };
    Row {
        cascade: cascade.name.clone(),
        point: problem.label.clone(),
        seq: problem.seq,
        passes,
        fused,
        result,
    }
}

/// Operations of a schedule per layer: every Einsum's points times its ops per point.
fn ops(s: &Schedule) -> f64 {
    let n = s.instances() as f64;
    s.einsums
        .iter()
        .map(|e| e.points as f64 * e.ops.values().map(|&c| f64::from(c)).sum::<f64>() * n)
        .sum()
}

fn bound(r: &SimReport) -> String {
    let mut b: Vec<String> = r.phases.iter().map(|p| p.bound.clone()).collect();
    b.dedup();
    b.join("+")
}

/// The schema's record of every row (see `docs/output.md`): one per cascade and point, one
/// `util_` and `occupancy_` column per unit, the reason in `infeasible` for a row that could
/// not be scheduled.
fn records(rows: &[Row], arch: &ArchSpec) -> Records {
    let mut columns = vec![
        col("cascade", Style::Plain),
        col("model", Style::Plain),
        col("seq", Style::Seq),
        col("passes", Style::Plain),
        col("ops", Style::Sci),
        col("buffer_bytes", Style::Plain),
        col("latency_s", Style::Sci),
        col("latency_cycles", Style::Sci),
        col("energy_j", Style::Sci),
    ];
    for u in arch.units() {
        columns.push(col(format!("util_{}", u.name()), Style::Fixed(2)));
        columns.push(col(format!("occupancy_{}", u.name()), Style::Fixed(3)));
    }
    columns.extend([
        col("dram_bytes", Style::Sci),
        col("bound", Style::Plain),
        col("fused_kernel", Style::Plain),
        col("infeasible", Style::Plain),
    ]);
    let mut records = Records::new(columns);
    for row in rows {
        let mut cells = vec![
            ("cascade".to_string(), Cell::Text(row.cascade.clone())),
            ("model".to_string(), Cell::Text(row.point.clone())),
            ("seq".to_string(), Cell::Count(row.seq)),
            (
                "passes".to_string(),
                row.passes.map_or(Cell::Missing, |p| Cell::Count(p.into())),
            ),
            ("fused_kernel".to_string(), Cell::Flag(row.fused)),
        ];
        match &row.result {
            Ok((r, s)) => {
                let words = s.phases.iter().map(|p| p.buffer_words).max().unwrap_or(0);
                // At most the buffer's capacity, which the architecture bounds in bytes.
                let bytes = words.saturating_mul(arch.word_bytes());
                cells.extend([
                    ("ops".to_string(), Cell::Number(ops(s))),
                    ("buffer_bytes".to_string(), Cell::Count(bytes)),
                    ("latency_s".to_string(), Cell::Number(r.latency_s)),
                    ("latency_cycles".to_string(), Cell::Number(r.latency_cycles)),
                    (
                        "energy_j".to_string(),
                        Cell::Number(r.energy.total_pj() * PJ),
                    ),
                    ("dram_bytes".to_string(), Cell::Number(r.dram_bytes)),
                    ("bound".to_string(), Cell::Text(bound(r))),
                ]);
                for u in &r.units {
                    cells.push((format!("util_{}", u.name), Cell::Number(u.utilisation)));
                    cells.push((format!("occupancy_{}", u.name), Cell::Number(u.occupancy)));
                }
            }
            Err(why) => cells.push(("infeasible".to_string(), Cell::Text(why.clone()))),
        }
        records.push(cells);
    }
    records
}

/// A row's nested detail for JSON: each unit's busy cycles and each phase's tiles by the
/// filters.
fn detail_json(row: &Row) -> Map<String, Value> {
    let Ok((r, s)) = &row.result else {
        return Map::new();
    };
    schema::context([
        (
            "units",
            json!(
                r.units
                    .iter()
                    .map(|u| json!({
                        "unit": u.name, "util": u.utilisation, "occupancy": u.occupancy,
                        "busy_cycles": u.busy_cycles,
                    }))
                    .collect::<Vec<_>>()
            ),
        ),
        (
            "tiles",
            json!(s.phases.iter().map(|p| json!({
            "empty": p.occupancy.empty, "partial": p.occupancy.partial, "full": p.occupancy.full,
        })).collect::<Vec<_>>()),
        ),
    ])
}
