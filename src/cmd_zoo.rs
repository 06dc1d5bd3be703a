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

use std::collections::BTreeMap;

use cascade_codegen::{DType, GpuSchedule, Lowering, Target};
use cascade_ir::{Cascade, library};
use cascade_scheduler::{
    ArchSpec, BlockMask, MAX_MASK_BLOCKS, Outcome, Problem, Schedule, schedule,
};
use cascade_sim::{SimReport, simulate};
use comfy_table::{Table, presets};
use rayon::prelude::*;
use serde_json::{Value, json};

use crate::arch_load::{self, seq_label};
use crate::output::{OutputFormat, UserError, print_csv, print_json};

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
    match format {
        OutputFormat::Json => print_json(&json!({
            "arch": arch.name(),
            "workloads": args.workloads,
            "rows": rows.iter().map(|r| row_json(r, &arch)).collect::<Vec<_>>(),
        })),
        OutputFormat::Csv => print_csv(csv_records(&rows, &arch))?,
        OutputFormat::Text => {
            println!(
                "{} over {} cascades × {} points ({})",
                arch.name(),
                cascades.len(),
                problems.len(),
                args.workloads
            );
            println!(
                "passes = over the key rank; Gops = operations; buffer = on-chip words in use; util = busy / latency; occ = PEs holding a present point while busy; fused = one generated kernel"
            );
            println!("{}", text_table(&rows, &arch));
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

fn text_table(rows: &[Row], arch: &ArchSpec) -> Table {
    let mut header: Vec<String> = [
        "cascade",
        "point",
        "seq",
        "passes",
        "Gops",
        "buffer",
        "latency_s",
        "energy_j",
    ]
    .map(String::from)
    .into();
    for u in arch.units() {
        header.push(format!("util/occ {}", u.name()));
    }
    header.extend(["dram_gb", "bound", "fused", "note"].map(String::from));
    let width = header.len();
    let mut table = Table::new();
    table.load_style(presets::ASCII_MARKDOWN).set_header(header);
    for row in rows {
        let mut cells = vec![
            row.cascade.clone(),
            row.point.clone(),
            seq_label(row.seq),
            row.passes.map_or_else(String::new, |p| p.to_string()),
        ];
        match &row.result {
            Ok((r, s)) => {
                cells.extend([
                    format!("{:.3}", ops(s) / 1e9),
                    words(s.phases.iter().map(|p| p.buffer_words).max().unwrap_or(0)),
                    format!("{:.3e}", r.latency_s),
                    format!("{:.3e}", r.energy.total_pj() * 1e-12),
                ]);
                for u in &r.units {
                    cells.push(format!("{:.2}/{:.3}", u.utilisation, u.occupancy));
                }
                cells.extend([
                    format!("{:.3}", r.dram_bytes / 1e9),
                    bound(r),
                    yes(row.fused),
                    String::new(),
                ]);
            }
            Err(why) => {
                cells.resize(width - 2, String::new());
                cells.push(yes(row.fused));
                cells.push(format!("infeasible: {why}"));
            }
        }
        table.add_row(cells);
    }
    table
}

fn yes(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

/// `8.39M` words.
fn words(w: u64) -> String {
    match w {
        w if w >= 1 << 20 => format!("{:.2}Mi", w as f64 / f64::from(1u32 << 20)),
        w if w >= 1 << 10 => format!("{:.1}Ki", w as f64 / 1024.0),
        w => w.to_string(),
    }
}

fn row_json(row: &Row, arch: &ArchSpec) -> Value {
    let mut v = json!({
        "cascade": row.cascade,
        "point": row.point,
        "seq": row.seq,
        "passes": row.passes,
        "fused_kernel": row.fused,
    });
    match &row.result {
        Ok((r, s)) => {
            let units: BTreeMap<String, Value> = r
                .units
                .iter()
                .map(|u| {
                    (
                        u.name.clone(),
                        json!({"utilisation": u.utilisation, "occupancy": u.occupancy, "busy_cycles": u.busy_cycles}),
                    )
                })
                .collect();
            v["ops"] = json!(ops(s));
            v["buffer_words"] = json!(s.phases.iter().map(|p| p.buffer_words).max().unwrap_or(0));
            v["buffer_bytes"] = json!(
                s.phases.iter().map(|p| p.buffer_words).max().unwrap_or(0) * arch.word_bytes()
            );
            v["latency_s"] = json!(r.latency_s);
            v["latency_cycles"] = json!(r.latency_cycles);
            v["energy_j"] = json!(r.energy.total_pj() * 1e-12);
            v["units"] = json!(units);
            v["dram_bytes"] = json!(r.dram_bytes);
            v["bound"] = json!(bound(r));
            v["tiles"] = json!(s.phases.iter().map(|p| json!({
                "empty": p.occupancy.empty, "partial": p.occupancy.partial, "full": p.occupancy.full,
            })).collect::<Vec<_>>());
        }
        Err(why) => v["infeasible"] = json!(why),
    }
    v
}

fn csv_records(rows: &[Row], arch: &ArchSpec) -> Vec<Vec<String>> {
    let mut header: Vec<String> = [
        "cascade",
        "point",
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
        header.push(format!("util_{}", u.name()));
        header.push(format!("occupancy_{}", u.name()));
    }
    header.extend(["dram_bytes", "bound", "fused_kernel", "infeasible"].map(String::from));
    let width = header.len();
    let mut out = vec![header];
    for row in rows {
        let mut rec = vec![
            row.cascade.clone(),
            row.point.clone(),
            row.seq.to_string(),
            row.passes.map_or_else(String::new, |p| p.to_string()),
        ];
        match &row.result {
            Ok((r, s)) => {
                rec.extend([
                    ops(s).to_string(),
                    (s.phases.iter().map(|p| p.buffer_words).max().unwrap_or(0)
                        * arch.word_bytes())
                    .to_string(),
                    r.latency_s.to_string(),
                    (r.energy.total_pj() * 1e-12).to_string(),
                ]);
                for u in &r.units {
                    rec.push(u.utilisation.to_string());
                    rec.push(u.occupancy.to_string());
                }
                rec.extend([
                    r.dram_bytes.to_string(),
                    bound(r),
                    row.fused.to_string(),
                    String::new(),
                ]);
            }
            Err(why) => {
                rec.resize(width - 1, String::new());
                rec[width - 2] = row.fused.to_string();
                rec.push(why.clone());
            }
        }
        rec.resize(width, String::new());
        out.push(rec);
    }
    out
}
