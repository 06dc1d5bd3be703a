//! `cascade passes FILE|NAME [--rank M] [--shape …]`: how many passes over a rank a cascade
//! needs, the barriers that force them, live footprints and op counts.

use std::collections::BTreeMap;

use cascade_ir::passes::{Completion, Live, PassReport, default_rank, passes, top_level_ranks};
use cascade_ir::{Cascade, Section, Shape};
use serde_json::{Value, json};

use crate::cmd_eval::resolve_shape;
use crate::load;
use crate::output::{Format, UserError, print_json};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Path to a .cascade file or a library cascade name.
    #[arg(value_name = "FILE|NAME")]
    pub target: String,
    /// The rank to count passes over (its split parts count with it); default M, else the
    /// first declared rank.
    #[arg(long)]
    pub rank: Option<String>,
    /// Also evaluate the op counts at these sizes, e.g. E=64,F=64,M=1024,P=1024.
    #[arg(long)]
    pub shape: Option<String>,
}

pub fn run(args: Args, format: Format) -> anyhow::Result<()> {
    let loaded = load::load(&args.target)?;
    let c = &loaded.parsed.cascade;
    let declared = || {
        c.ranks
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let rank = match &args.rank {
        Some(name) => c.rank_by_name(name).ok_or_else(|| {
            UserError::message(format!(
                "--rank {name}: {} declares no rank {name}; its ranks are {}",
                c.name,
                declared()
            ))
        })?,
        None => default_rank(c).ok_or_else(|| {
            UserError::message(format!("{} has no rank to analyse; pass --rank", c.name))
        })?,
    };
    let shape = args
        .shape
        .as_deref()
        .map(|s| resolve_shape(c, s))
        .transpose()?;
    let report = passes(c, rank);
    if let (Some(shape), Some(spec)) = (&shape, &args.shape) {
        check_counts(&report, shape, spec)?;
    }
    let per_rank: Vec<(String, u32)> = top_level_ranks(c)
        .into_iter()
        .map(|r| (c.rank(r).name.clone(), passes(c, r).passes))
        .collect();
    match format {
        Format::Text => {
            print!("{report}");
            let list: Vec<String> = per_rank.iter().map(|(r, n)| format!("{r} {n}")).collect();
            println!("passes per rank: {}", list.join(", "));
            if let (Some(shape), Some(spec)) = (&shape, &args.shape) {
                println!("op totals at {spec}:");
                for (kind, poly) in &report.totals {
                    println!(
                        "  {:<5}  {}",
                        kind.name(),
                        poly.checked_eval(shape).unwrap_or(0)
                    );
                }
            }
        }
        Format::Json => print_json(&to_json(
            c,
            &loaded.path,
            &report,
            &per_rank,
            shape.as_ref(),
        )),
    }
    Ok(())
}

/// Every op count at `--shape` fits in 64 bits, or the shape is refused (never a wrapped or
/// saturated count).
fn check_counts(report: &PassReport, shape: &Shape, spec: &str) -> anyhow::Result<()> {
    let per_einsum = report.einsums.iter().flat_map(|e| &e.ops);
    for (kind, poly) in report.totals.iter().chain(per_einsum) {
        if poly.checked_eval(shape).is_none() {
            return Err(UserError::message(format!(
                "--shape {spec}: the {} count {} is more than a 64-bit integer holds at these sizes; give smaller sizes",
                kind.name(),
                poly.display_with(&report.rank_names)
            ))
            .into());
        }
    }
    Ok(())
}

fn to_json(
    c: &Cascade,
    path: &str,
    report: &PassReport,
    per_rank: &[(String, u32)],
    shape: Option<&Shape>,
) -> Value {
    let name = |r: &cascade_ir::RankId| c.rank(*r).name.clone();
    let ops = |ops: &BTreeMap<cascade_ir::ops::OpKind, cascade_ir::passes::Polynomial>| -> Value {
        ops.iter()
            .map(|(k, p)| {
                let value = json!({
                    "polynomial": p.display(c).to_string(),
                    "count": shape.and_then(|s| p.checked_eval(s)),
                });
                (k.name().to_string(), value)
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    json!({
        "ok": true,
        "file": path,
        "cascade": report.cascade,
        "rank": name(&report.rank),
        "family": report.family.iter().map(name).collect::<Vec<_>>(),
        "passes": report.passes,
        "passes_per_rank": per_rank.iter().map(|(r, n)| (r.clone(), json!(n))).collect::<serde_json::Map<_, _>>(),
        "barriers": report.barriers.iter().map(|b| json!({
            "text": b.to_string(),
            "complete": b.complete,
            "completion": match &b.completion {
                Completion::Reduces(ranks) => json!({ "reduces": ranks }),
                Completion::FinalState(t) => json!({ "final_state_of": t }),
                Completion::From(t) => json!({ "from": t }),
                Completion::LastStep => json!({ "last_step": b.complete }),
            },
            "consumer": b.consumer_output,
            "rereads": b.rereads,
            "from_pass": b.from_pass,
            "to_pass": b.to_pass,
        })).collect::<Vec<_>>(),
        "einsums": report.einsums.iter().map(|e| json!({
            "index": e.einsum.0 + 1,
            "section": match e.section { Section::Init => "init", Section::Body => "einsums" },
            "output": e.output,
            "iterates_rank": e.iterates,
            "pass": e.pass,
            "ops": ops(&e.ops),
        })).collect::<Vec<_>>(),
        "footprints": report.footprints.iter().map(|f| {
            let (live, along, per) = match &f.live {
                Live::NoRank => ("no_rank", vec![], vec![]),
                Live::Streamed { .. } => ("streamed", vec![], vec![]),
                Live::Buffered { along, per, .. } => ("buffered", along.clone(), per.clone()),
                Live::Restreamed { .. } => ("restreamed", vec![], vec![]),
            };
            json!({
                "tensor": f.tensor,
                "input": f.kind == cascade_ir::TensorKind::Input,
                "live": live,
                "along": along,
                "per": per,
                "text": f.live.to_string(),
            })
        }).collect::<Vec<_>>(),
        "totals": ops(&report.totals),
    })
}
