//! `cascade simulate`: schedule a cascade on an architecture and run the analytical model at
//! each workload point; a table, JSON or CSV per point, and with `--detail` the schedule itself.

use cascade_scheduler::{Outcome, schedule};
use cascade_sim::{SimReport, simulate};
use comfy_table::{Table, presets};
use serde_json::{Value, json};

use crate::arch_load::{self, seq_label};
use crate::output::{OutputFormat, print_csv, print_json};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Architecture: a shipped name (fusemax, flat, unfused, …) or a TOML path.
    #[arg(long)]
    arch: String,
    /// Model name(s) from the workloads file, comma-separated, or `all`.
    #[arg(long, default_value = "all")]
    workload: String,
    /// Sequence lengths (M = P), e.g. `1k,4k,64k`; default: the workloads file's list.
    #[arg(long)]
    seq: Option<String>,
    /// Cascade to run instead of the architecture's own: a library name or a file.
    #[arg(long)]
    cascade: Option<String>,
    /// Workloads file instead of the shipped one.
    #[arg(long)]
    workloads: Option<String>,
    /// Extra rank sizes the workload does not give, e.g. `W=256` for a window.
    #[arg(long)]
    shape: Option<String>,
    /// Same as `--format csv` (kept for old scripts).
    #[arg(long, hide = true)]
    csv: bool,
    /// Also print each point's schedule: partition, loop order, epochs, placements, Einsums.
    #[arg(long)]
    detail: bool,
}

/// One point's outcome.
enum Row {
    Ok(Box<SimReport>, Box<cascade_scheduler::Schedule>),
    Infeasible {
        workload: String,
        seq: u64,
        reason: String,
    },
}

pub fn run(args: Args, format: OutputFormat) -> anyhow::Result<()> {
    let format = if args.csv { OutputFormat::Csv } else { format };
    let loaded = arch_load::arch_with_cascade(&args.arch, args.cascade.as_deref())?;
    let workloads = arch_load::workloads(args.workloads.as_deref())?;
    let mut problems = arch_load::problems(&workloads, &args.workload, args.seq.as_deref())?;
    arch_load::add_shape(&mut problems, args.shape.as_deref())?;
    let mut rows = Vec::new();
    for p in &problems {
        match schedule(&loaded.cascade, &loaded.arch, p) {
            Ok(Outcome::Scheduled(s)) => {
                rows.push(Row::Ok(Box::new(simulate(&s, &loaded.arch)), s))
            }
            Ok(Outcome::Infeasible(why)) => rows.push(Row::Infeasible {
                workload: p.label.clone(),
                seq: p.seq,
                reason: why.reason,
            }),
            Err(e) => {
                return Err(crate::output::UserError::message(format!(
                    "{e} (cascade {})",
                    loaded.cascade.name
                ))
                .into());
            }
        }
    }
    let header = [
        "model",
        "seq",
        "latency_s",
        "cycles",
        "bound",
        "util",
        "dram_gb",
        "energy_j",
        "tile_mac_share",
        "spill",
        "area_mm2",
        "e2e_latency_s",
        "e2e_energy_j",
    ];
    let cells = |r: &SimReport| -> Vec<String> {
        let util: Vec<String> = r
            .units
            .iter()
            .map(|u| format!("{}={:.3}", u.name, u.utilisation))
            .collect();
        let bound = r
            .phases
            .iter()
            .map(|p| p.bound.clone())
            .collect::<Vec<_>>()
            .join("+");
        vec![
            r.workload.clone(),
            seq_label(r.seq),
            format!("{:.4e}", r.latency_s),
            format!("{:.4e}", r.latency_cycles),
            bound,
            util.join(" "),
            format!("{:.3}", r.dram_bytes / 1e9),
            format!("{:.4e}", r.energy.total_pj() * 1e-12),
            format!("{:.3}", r.tile_mac_energy_share),
            format!("{:.3}", r.spill),
            format!("{:.1}", r.area_mm2),
            format!(
                "{:.4e}",
                r.end_to_end.latency_cycles / loaded.arch.clock_hz()
            ),
            format!("{:.4e}", r.end_to_end.energy_pj * 1e-12),
        ]
    };
    match format {
        OutputFormat::Csv => print_csv(csv_records(&rows, &loaded.arch))?,
        OutputFormat::Json => print_json(&json!({
            "arch": loaded.arch.name(),
            "cascade": loaded.cascade.name,
            "points": rows.iter().map(|row| match row {
                Row::Ok(r, s) => report_json(r, s, &loaded.arch),
                Row::Infeasible { workload, seq, reason } => json!({
                    "workload": workload, "seq": seq, "infeasible": reason,
                }),
            }).collect::<Vec<_>>(),
        })),
        OutputFormat::Text => {
            println!("{} running {}", loaded.arch.name(), loaded.cascade.name);
            let mut table = Table::new();
            table.load_style(presets::ASCII_MARKDOWN).set_header(header);
            for row in &rows {
                match row {
                    Row::Ok(r, _) => {
                        table.add_row(cells(r));
                    }
                    Row::Infeasible {
                        workload,
                        seq,
                        reason,
                    } => {
                        table.add_row(vec![
                            workload.clone(),
                            seq_label(*seq),
                            format!("infeasible: {reason}"),
                        ]);
                    }
                }
            }
            println!("{table}");
            if args.detail {
                for row in &rows {
                    if let Row::Ok(r, s) = row {
                        print_detail(r, s, &loaded.arch);
                    }
                }
            }
        }
    }
    Ok(())
}

/// CSV: one record per point with every number unrounded (as JSON has it), one utilisation
/// column per unit, and the reason in `infeasible` for a point that could not be scheduled.
fn csv_records(rows: &[Row], arch: &cascade_scheduler::ArchSpec) -> Vec<Vec<String>> {
    let mut header: Vec<String> = ["model", "seq", "latency_s", "cycles", "bound"]
        .map(String::from)
        .into();
    header.extend(arch.units().iter().map(|u| format!("util_{}", u.name())));
    header.extend(
        [
            "dram_gb",
            "energy_j",
            "tile_mac_share",
            "spill",
            "area_mm2",
            "e2e_latency_s",
            "e2e_energy_j",
            "infeasible",
        ]
        .map(String::from),
    );
    let width = header.len();
    let mut records = vec![header];
    for row in rows {
        let mut rec = match row {
            Row::Ok(r, _) => {
                let mut rec = vec![
                    r.workload.clone(),
                    r.seq.to_string(),
                    r.latency_s.to_string(),
                    r.latency_cycles.to_string(),
                    r.phases
                        .iter()
                        .map(|p| p.bound.clone())
                        .collect::<Vec<_>>()
                        .join("+"),
                ];
                rec.extend(arch.units().iter().map(|u| {
                    r.units
                        .iter()
                        .find(|x| x.name == u.name())
                        .map_or_else(String::new, |x| x.utilisation.to_string())
                }));
                rec.extend([
                    (r.dram_bytes / 1e9).to_string(),
                    (r.energy.total_pj() * 1e-12).to_string(),
                    r.tile_mac_energy_share.to_string(),
                    r.spill.to_string(),
                    r.area_mm2.to_string(),
                    (r.end_to_end.latency_cycles / arch.clock_hz()).to_string(),
                    (r.end_to_end.energy_pj * 1e-12).to_string(),
                    String::new(),
                ]);
                rec
            }
            Row::Infeasible {
                workload,
                seq,
                reason,
            } => {
                let mut rec = vec![workload.clone(), seq.to_string()];
                rec.resize(width - 1, String::new());
                rec.push(reason.clone());
                rec
            }
        };
        rec.resize(width, String::new());
        records.push(rec);
    }
    records
}

fn print_detail(
    r: &SimReport,
    s: &cascade_scheduler::Schedule,
    arch: &cascade_scheduler::ArchSpec,
) {
    println!("\n## {} at {}", r.workload, seq_label(r.seq));
    for (k, phase) in s.phases.iter().enumerate() {
        let part = &phase.partition;
        println!(
            "phase {}: {} pass(es); {} = {}·{} (M1 × M0), {} = {}·{}·{} (P2 × P1 × P0); buffer {} words; spill {:.1}%",
            k + 1,
            phase.passes,
            part.key_rank,
            part.m1,
            part.m0,
            part.query_rank,
            part.p2,
            part.p1,
            part.p0,
            phase.buffer_words,
            phase.spill * 100.0
        );
        println!("  loops: {}", phase.loop_order.join(" / "));
        for (u, text) in &phase.epochs {
            println!("  epoch on {}: {text}", arch.unit(*u).name());
        }
        if phase.stall_per_tile > 0 {
            println!("  drain stall: {} cycles per tile", phase.stall_per_tile);
        }
        for (name, res) in &phase.placements {
            println!("  {name}: {res}");
        }
        let pr = &r.phases[k];
        println!(
            "  compute {:.4e} cycles, memory {:.4e} cycles, fill {:.0}, bound by {}",
            pr.compute_cycles, pr.memory_cycles, pr.fill_cycles, pr.bound
        );
    }
    let mut table = Table::new();
    table.load_style(presets::ASCII_MARKDOWN).set_header([
        "einsum",
        "unit",
        "level",
        "pass",
        "ops/point",
        "cycles/point",
        "cycles/tile",
        "share of unit",
    ]);
    for (e, share) in s.einsums.iter().zip(&r.einsums) {
        let ops: Vec<String> = e.ops.iter().map(|(k, n)| format!("{n} {k}")).collect();
        table.add_row(vec![
            e.name.clone(),
            share.unit.clone(),
            e.level.to_string(),
            // Numbered from 1, as `cascade passes` numbers them.
            (e.pass + 1).to_string(),
            ops.join(", "),
            e.cycles_per_point.to_string(),
            if e.per_key_tile {
                format!(
                    "{:.0}",
                    e.cycles as f64 / s.phases[e.phase].partition.tiles() as f64
                )
            } else {
                "once".to_string()
            },
            format!("{:.1}%", share.share * 100.0),
        ]);
    }
    println!("{table}");
    let en = &r.energy;
    println!(
        "energy: compute {:.3e} J, registers {:.3e} J, buffer {:.3e} J, DRAM {:.3e} J",
        en.compute_pj * 1e-12,
        en.register_pj * 1e-12,
        en.buffer_pj * 1e-12,
        en.dram_pj * 1e-12
    );
}

fn report_json(
    r: &SimReport,
    s: &cascade_scheduler::Schedule,
    arch: &cascade_scheduler::ArchSpec,
) -> Value {
    json!({
        "workload": r.workload,
        "seq": r.seq,
        "latency_s": r.latency_s,
        "latency_cycles": r.latency_cycles,
        "memory_cycles": r.memory_cycles,
        "dram_bytes": r.dram_bytes,
        "units": r.units.iter().map(|u| json!({
            "name": u.name, "pes": u.pes, "busy_cycles": u.busy_cycles,
            "stall_cycles": u.stall_cycles, "utilisation": u.utilisation,
        })).collect::<Vec<_>>(),
        "phases": r.phases.iter().zip(&s.phases).map(|(p, sp)| json!({
            "einsums": p.einsums, "compute_cycles": p.compute_cycles, "memory_cycles": p.memory_cycles,
            "latency_cycles": p.latency_cycles, "bound": p.bound, "spill": p.spill,
            "passes": sp.passes, "m0": sp.partition.m0, "m1": sp.partition.m1,
            "p0": sp.partition.p0, "p1": sp.partition.p1, "p2": sp.partition.p2,
            "loop_order": sp.loop_order,
            "epochs": sp.epochs.iter().map(|(u, t)| json!({"unit": arch.unit(*u).name(), "epoch": t})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "einsums": r.einsums.iter().map(|e| json!({
            "name": e.name, "unit": e.unit, "cycles": e.cycles, "share": e.share,
        })).collect::<Vec<_>>(),
        "energy_pj": {
            "compute": r.energy.compute_pj, "register": r.energy.register_pj,
            "buffer": r.energy.buffer_pj, "dram": r.energy.dram_pj, "total": r.energy.total_pj(),
        },
        "tile_mac_energy_share": r.tile_mac_energy_share,
        "area_mm2": r.area_mm2,
        "spill": r.spill,
        "end_to_end": {
            "latency_cycles": r.end_to_end.latency_cycles,
            "energy_pj": r.end_to_end.energy_pj,
            "linear_cycles": r.end_to_end.linear_cycles,
            "linear_energy_pj": r.end_to_end.linear_energy_pj,
        },
    })
}
