//! `cascade simulate`: schedule a cascade on an architecture and run the analytical model at
//! each workload point; a table, JSON or CSV per point, and with `--detail` the schedule itself.
//! `--engine cycle|both` also runs the cycle-level simulator and reports it beside the model.

use cascade_scheduler::{Outcome, schedule_with};
use cascade_sim::cycle::{self, CycleConfig, CycleReport};
use cascade_sim::{SimReport, simulate};
use comfy_table::{Table, presets};
use serde_json::{Value, json};

use crate::arch_load::{self, seq_label};
use crate::output::{OutputFormat, UserError, check_finite, print_csv, print_json};

/// The most slots the cycle engine may execute in one phase: a run beyond it would take
/// minutes to hours, so it is refused before it starts.
const MAX_CYCLE_SLOTS: u64 = 1 << 18;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Architecture: a shipped name (fusemax, flat, unfused, …) or a TOML path.
    #[arg(long)]
    arch: String,
    /// Model name(s) from the workloads file, comma-separated, or `all`.
    #[arg(long, default_value = "all")]
    workload: String,
    /// Sequence lengths, e.g. `1k,4k,64k`: prefill lengths (M = P) and decode cache lengths (M);
    /// default: the workload set's.
    #[arg(long)]
    seq: Option<String>,
    /// Cascade to run at every point: a library name, a variant or a file; default: the one the
    /// workload names for each model, else the architecture's own.
    #[arg(long)]
    cascade: Option<String>,
    /// Workload set: a shipped one (`transformers`, FuseMax's four encoders, the default;
    /// `llm`, today's decoder models in prefill and decode) or a TOML path.
    #[arg(long)]
    workloads: Option<String>,
    /// Which points of the workload set: `prefill`, `decode` or `all` (default: every one it
    /// has).
    #[arg(long)]
    scenario: Option<String>,
    /// Decode batches, e.g. `1,16,256`; default: the workload set's.
    #[arg(long)]
    batch: Option<String>,
    /// Extra rank sizes the workload does not give, e.g. `W=256` for a window.
    #[arg(long)]
    shape: Option<String>,
    /// Same as `--format csv` (kept for old scripts).
    #[arg(long, hide = true)]
    csv: bool,
    /// Also print each point's schedule: partition, loop order, epochs, placements, Einsums.
    #[arg(long)]
    detail: bool,
    /// Timing engine: the analytical model (default), the cycle-level simulator, or both side
    /// by side with their ratio.
    #[arg(long, value_enum)]
    engine: Option<Engine>,
    /// Cycle engine: slots (key tile × query tile × pass) to execute per phase before
    /// extrapolating from the steady state; 0 executes every slot.
    #[arg(long, default_value_t = 4096)]
    max_slots: u64,
    /// A mapping file (binding, tiles, loop order, residency) overriding the scheduler's
    /// choices; `--detail` prints the mapping used in this format.
    #[arg(long)]
    mapping: Option<String>,
    /// `NAME=FILE`: which blocks of the mask input NAME attend (a .npy array or a text bitmap,
    /// key blocks × query blocks); masked blocks are skipped. Repeatable.
    #[arg(long = "block-mask")]
    block_mask: Vec<String>,
    /// Cycle engine: write its timeline as Chrome trace-event JSON here (open it in
    /// ui.perfetto.dev); README's "Timelines" says what each track shows.
    #[arg(long)]
    trace: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Engine {
    Analytical,
    Cycle,
    Both,
}

/// One point's outcome.
enum Row {
    Ok(
        Box<SimReport>,
        Box<cascade_scheduler::Schedule>,
        Option<Box<CycleReport>>,
    ),
    Infeasible {
        workload: String,
        seq: u64,
        reason: String,
    },
}

pub fn run(args: Args, format: OutputFormat) -> anyhow::Result<()> {
    let format = if args.csv { OutputFormat::Csv } else { format };
    let arch = arch_load::arch(&args.arch)?;
    let workloads = arch_load::workloads(args.workloads.as_deref())?;
    let points = arch_load::Points {
        scenario: args.scenario.clone(),
        batch: args.batch.clone(),
        set: args.workloads.clone(),
    };
    let mut problems = arch_load::points(&workloads, &args.workload, args.seq.as_deref(), &points)?;
    arch_load::add_shape(&mut problems, args.shape.as_deref())?;
    let cascades = arch_load::cascades_for(
        &args.arch,
        &arch,
        args.cascade.as_deref(),
        args.workloads.as_deref(),
        &problems,
    )?;
    let running = if cascades.iter().all(|c| c.name == cascades[0].name) {
        cascades
            .first()
            .map_or_else(String::new, |c| c.name.clone())
    } else {
        "each model's cascade".to_string()
    };
    let overrides = arch_load::mapping(args.mapping.as_deref())?;
    for (name, mask) in arch_load::block_masks(&args.block_mask)? {
        for p in &mut problems {
            p.block_masks.insert(name.clone(), mask.clone());
        }
    }
    let cycle_engine = matches!(args.engine, Some(Engine::Cycle | Engine::Both));
    let mut traces = crate::perfetto::TraceFile::new(args.trace.as_deref(), cycle_engine)?;
    let mut rows = Vec::new();
    for (p, cascade) in problems.iter().zip(&cascades) {
        match schedule_with(cascade, &arch, p, &overrides) {
            Ok(Outcome::Scheduled(s)) => {
                let cy = if matches!(args.engine, Some(Engine::Cycle | Engine::Both)) {
                    let config = CycleConfig {
                        max_slots: (args.max_slots > 0).then_some(args.max_slots),
                        tile_buffers: 2,
                        log_events: 0,
                    };
                    let slots = cycle::executed_slots(&s, &config);
                    if slots > MAX_CYCLE_SLOTS {
                        return Err(crate::output::UserError::message(format!(
                            "{} at {}: the cycle engine would execute {slots} slots of a phase (at least two whole query tiles, each with every key tile), more than the limit of {MAX_CYCLE_SLOTS} (2^18); use --engine analytical, a smaller --max-slots or a shorter --seq",
                            p.label,
                            arch_load::seq_label(p.seq)
                        ))
                        .into());
                    }
                    let label = format!("{} {}", p.label, arch_load::seq_label(p.seq));
                    Some(Box::new(traces.run(&s, &arch, &config, &label)?))
                } else {
                    None
                };
                let report = simulate(&s, &arch);
                rows.push(Row::Ok(Box::new(report), s, cy))
            }
            Ok(Outcome::Infeasible(why)) => rows.push(Row::Infeasible {
                workload: p.label.clone(),
                seq: p.seq,
                reason: why.reason,
            }),
            Err(e) => {
                return Err(crate::output::UserError::message(format!(
                    "{e} (cascade {})",
                    cascade.name
                ))
                .into());
            }
        }
    }
    for row in &rows {
        if let Row::Ok(r, _, cy) = row {
            check_point(r, cy.as_deref())?;
        }
    }
    traces.write(&arch)?;
    let mixed = running == "each model's cascade";
    let mut header = vec![
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
    if mixed {
        header.push("cascade");
    }
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
            format!("{:.4e}", r.end_to_end.latency_cycles / arch.clock_hz()),
            format!("{:.4e}", r.end_to_end.energy_pj * 1e-12),
        ]
    };
    match format {
        OutputFormat::Csv => print_csv(csv_records(&rows, &arch, args.engine))?,
        OutputFormat::Json => print_json(&json!({
            "arch": arch.name(),
            "cascade": running,
            "points": rows.iter().map(|row| match row {
                Row::Ok(r, s, cy) => {
                    let mut v = report_json(r, s, &arch);
                    if let Some(cy) = cy {
                        v["cycle"] = cycle_json(cy);
                        if args.engine == Some(Engine::Both) {
                            v["cycle_over_analytical"] = json!(cy.latency_cycles / r.latency_cycles);
                        }
                    }
                    v
                }
                Row::Infeasible { workload, seq, reason } => json!({
                    "workload": workload, "seq": seq, "infeasible": reason,
                }),
            }).collect::<Vec<_>>(),
        })),
        OutputFormat::Text if args.engine == Some(Engine::Cycle) => {
            println!("{} running {running} (cycle-level engine)", arch.name());
            println!("{}", cycle_table(&rows, false));
        }
        OutputFormat::Text => {
            println!("{} running {running}", arch.name());
            let mut table = Table::new();
            table.load_style(presets::ASCII_MARKDOWN).set_header(header);
            for row in &rows {
                match row {
                    Row::Ok(r, _, _) => {
                        let mut row = cells(r);
                        if mixed {
                            row.push(r.cascade.clone());
                        }
                        table.add_row(row);
                    }
                    Row::Infeasible {
                        workload,
                        seq,
                        reason,
                    } => {
                        table.add_row(infeasible_cells(workload, *seq, reason));
                    }
                }
            }
            println!("{table}");
            if args.engine == Some(Engine::Both) {
                println!("\ncycle-level engine against the analytical model:");
                println!("{}", cycle_table(&rows, true));
            }
            if args.detail {
                for row in &rows {
                    if let Row::Ok(r, s, _) = row {
                        print_detail(r, s, &arch);
                    }
                }
            }
        }
    }
    Ok(())
}

/// Every number a point reports is finite, or the point is an error (see `check_finite`).
pub fn check_point(r: &SimReport, cy: Option<&CycleReport>) -> anyhow::Result<()> {
    // Every number of the report, not only those shown (a unit's busy cycles, say).
    if let Some(bad) = r.non_finite().first() {
        return Err(UserError::message(format!(
            "{}: the model gives {bad}, not a finite number; check that the architecture's and the workload's numbers (clock, bandwidths, energies, sizes) are in a physical range",
            report_label(r)
        ))
        .into());
    }
    let mut fields = report_fields(r);
    if let Some(cy) = cy {
        fields.extend([
            ("cycle.latency_cycles", cy.latency_cycles),
            ("cycle.latency_s", cy.latency_s),
        ]);
    }
    Ok(check_finite(&report_label(r), &fields)?)
}

/// `fusemax running attention_1pass at BERT 1K`.
pub fn report_label(r: &SimReport) -> String {
    let seq = seq_label(r.seq);
    format!("{} running {} at {} {seq}", r.arch, r.cascade, r.workload)
}

/// The numbers a report's table, CSV and JSON show.
pub fn report_fields(r: &SimReport) -> Vec<(&'static str, f64)> {
    let mut fields = vec![
        ("latency_s", r.latency_s),
        ("latency_cycles", r.latency_cycles),
        ("memory_cycles", r.memory_cycles),
        ("dram_bytes", r.dram_bytes),
        ("energy_pj", r.energy.total_pj()),
        ("tile_mac_energy_share", r.tile_mac_energy_share),
        ("area_mm2", r.area_mm2),
        ("spill", r.spill),
        ("end_to_end.latency_cycles", r.end_to_end.latency_cycles),
        ("end_to_end.energy_pj", r.end_to_end.energy_pj),
    ];
    fields.extend(r.units.iter().map(|u| ("utilisation", u.utilisation)));
    fields
}

/// CSV: one record per point with every number unrounded (as JSON has it), one utilisation
/// column per unit, and the reason in `infeasible` for a point that could not be scheduled.
fn csv_records(
    rows: &[Row],
    arch: &cascade_scheduler::ArchSpec,
    engine: Option<Engine>,
) -> Vec<Vec<String>> {
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
    let cycle_cols = matches!(engine, Some(Engine::Cycle | Engine::Both));
    if cycle_cols {
        header.extend(
            [
                "cycle_cycles",
                "cycle_latency_s",
                "cycle_over_analytical",
                "cycle_dram_stall_cycles",
                "cycle_extrapolated",
            ]
            .map(String::from),
        );
    }
    let width = header.len();
    let mut records = vec![header];
    for row in rows {
        let mut rec = match row {
            Row::Ok(r, _, cy) => {
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
                if let Some(cy) = cy {
                    rec.extend([
                        cy.latency_cycles.to_string(),
                        cy.latency_s.to_string(),
                        (cy.latency_cycles / r.latency_cycles).to_string(),
                        cy.dram_stall_cycles.to_string(),
                        cy.extrapolated.to_string(),
                    ]);
                }
                rec
            }
            Row::Infeasible {
                workload,
                seq,
                reason,
            } => {
                let mut rec = vec![workload.clone(), seq.to_string()];
                let before = if cycle_cols { width - 6 } else { width - 1 };
                rec.resize(before, String::new());
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
        println!("  loops: {}", phase.loops.lines().join(" / "));
        for epoch in &phase.epochs {
            println!("  epoch on {}: {epoch}", arch.unit(epoch.unit).name());
        }
        let occ = &phase.occupancy;
        if occ.empty + occ.partial > 0 {
            println!(
                "  tiles by the filters: {} empty, {} partial, {} full; {} key-tile slots run per instance of {}",
                occ.empty,
                occ.partial,
                occ.full,
                occ.slots(),
                part.tiles()
            );
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
                format!("{:.0}", e.tile_cycles)
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
    print_breakdown(r);
    println!("\nmapping (a file for --mapping):\n{}", s.mapping);
}

/// Where every pJ and byte of a point comes from: energy per component and action, per Einsum
/// (compute and PE registers) and per tensor (global buffer and DRAM), and each tensor's DRAM
/// traffic, per phase (numbered from 1). Each energy table sums to the report's total.
fn print_breakdown(r: &SimReport) {
    let total = r.energy.total_pj();
    let share = |pj: f64| {
        if total > 0.0 {
            format!("{:.2}%", pj / total * 100.0)
        } else {
            "-".to_string()
        }
    };
    let mut table = Table::new();
    table.load_style(presets::ASCII_MARKDOWN).set_header([
        "phase",
        "component and action",
        "count",
        "pJ each",
        "energy_j",
        "share",
    ]);
    let b = &r.breakdown;
    for part in b.by_component() {
        table.add_row(vec![
            (part.phase + 1).to_string(),
            part.name,
            format!("{:.4e}", part.count),
            format!("{:.4}", part.pj / part.count),
            format!("{:.4e}", part.pj * 1e-12),
            share(part.pj),
        ]);
    }
    println!("\nenergy by component (counts are actions; words for registers, buffer and DRAM):");
    println!("{table}");
    let mut table = Table::new();
    table.load_style(presets::ASCII_MARKDOWN).set_header([
        "phase",
        "einsum or tensor",
        "spent on",
        "energy_j",
        "share",
    ]);
    for (parts, what) in [
        (b.by_einsum(), "compute and PE registers"),
        (b.by_tensor(), "global buffer and DRAM"),
    ] {
        for part in parts {
            table.add_row(vec![
                (part.phase + 1).to_string(),
                part.name,
                what.to_string(),
                format!("{:.4e}", part.pj * 1e-12),
                share(part.pj),
            ]);
        }
    }
    println!("energy by Einsum and tensor:\n{table}");
    let mut table = Table::new();
    table.load_style(presets::ASCII_MARKDOWN).set_header([
        "phase",
        "tensor",
        "dram_read_gb",
        "dram_write_gb",
        "buffer_read_words",
        "buffer_write_words",
    ]);
    for t in &r.traffic_by_tensor {
        table.add_row(vec![
            (t.phase + 1).to_string(),
            t.tensor.clone(),
            format!("{:.4}", t.dram_read_bytes / 1e9),
            format!("{:.4}", t.dram_write_bytes / 1e9),
            format!("{:.4e}", t.buffer_read_words),
            format!("{:.4e}", t.buffer_write_words),
        ]);
    }
    println!(
        "traffic by tensor (DRAM {:.4} GB in all):\n{table}",
        r.dram_bytes / 1e9
    );
}

/// The breakdown as JSON: every priced item, the three groupings, and traffic per tensor;
/// phases are numbered from 1 as `--detail` prints them.
fn breakdown_json(r: &SimReport) -> (Value, Value) {
    let b = &r.breakdown;
    let parts = |parts: Vec<cascade_sim::EnergyPart>| -> Vec<Value> {
        parts
            .into_iter()
            .map(|p| json!({"phase": p.phase + 1, "name": p.name, "count": p.count, "pj": p.pj}))
            .collect()
    };
    let energy = json!({
        "items": b.items.iter().map(|it| json!({
            "phase": it.phase + 1, "kind": format!("{:?}", it.kind).to_lowercase(),
            "component": it.component, "action": it.action, "owner": it.owner,
            "count": it.count, "pj_per_action": it.pj_per_action, "pj": it.pj,
        })).collect::<Vec<_>>(),
        "by_component": parts(b.by_component()),
        "by_einsum": parts(b.by_einsum()),
        "by_tensor": parts(b.by_tensor()),
    });
    let traffic = json!(r.traffic_by_tensor.iter().map(|t| json!({
        "phase": t.phase + 1, "tensor": t.tensor,
        "dram_read_bytes": t.dram_read_bytes, "dram_write_bytes": t.dram_write_bytes,
        "buffer_read_words": t.buffer_read_words, "buffer_write_words": t.buffer_write_words,
    })).collect::<Vec<_>>());
    (energy, traffic)
}

fn report_json(
    r: &SimReport,
    s: &cascade_scheduler::Schedule,
    arch: &cascade_scheduler::ArchSpec,
) -> Value {
    let (energy_breakdown, traffic_by_tensor) = breakdown_json(r);
    json!({
        "workload": r.workload,
        "cascade": r.cascade,
        "seq": r.seq,
        "latency_s": r.latency_s,
        "latency_cycles": r.latency_cycles,
        "memory_cycles": r.memory_cycles,
        "dram_bytes": r.dram_bytes,
        "units": r.units.iter().map(|u| json!({
            "name": u.name, "pes": u.pes, "busy_cycles": u.busy_cycles,
            "stall_cycles": u.stall_cycles, "utilisation": u.utilisation,
            "occupancy": u.occupancy,
        })).collect::<Vec<_>>(),
        "mapping": s.mapping.to_string(),
        "phases": r.phases.iter().zip(&s.phases).map(|(p, sp)| json!({
            "einsums": p.einsums, "compute_cycles": p.compute_cycles, "memory_cycles": p.memory_cycles,
            "latency_cycles": p.latency_cycles, "bound": p.bound, "spill": p.spill,
            "passes": sp.passes, "m0": sp.partition.m0, "m1": sp.partition.m1,
            "p0": sp.partition.p0, "p1": sp.partition.p1, "p2": sp.partition.p2,
            "loop_order": sp.loops.lines(),
            "epochs": sp.epochs.iter().map(|e| json!({
                "unit": arch.unit(e.unit).name(),
                "epoch": e.to_string(),
                "slots": e.slots.iter().map(|slot| slot.iter().map(|i| json!({
                    "einsum": i.name, "lag": i.lag,
                })).collect::<Vec<_>>()).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "tiles": {
                "empty": sp.occupancy.empty, "partial": sp.occupancy.partial,
                "full": sp.occupancy.full, "slots_run": sp.occupancy.slots(),
            },
        })).collect::<Vec<_>>(),
        "einsums": r.einsums.iter().map(|e| json!({
            "name": e.name, "unit": e.unit, "cycles": e.cycles, "share": e.share,
        })).collect::<Vec<_>>(),
        "energy_pj": {
            "compute": r.energy.compute_pj, "register": r.energy.register_pj,
            "buffer": r.energy.buffer_pj, "dram": r.energy.dram_pj, "total": r.energy.total_pj(),
        },
        "energy_breakdown": energy_breakdown,
        "traffic_by_tensor": traffic_by_tensor,
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

/// The cycle engine's numbers per point; with `compare`, beside the analytical latency.
fn cycle_table(rows: &[Row], compare: bool) -> Table {
    let mut header = vec!["model", "seq"];
    if compare {
        header.extend(["analytical_cycles", "cycle_cycles", "cycle/analytical"]);
    } else {
        header.extend(["latency_s", "cycles"]);
    }
    header.extend(["util", "dram_busy", "dram_stall", "slots run"]);
    let mut table = Table::new();
    table.load_style(presets::ASCII_MARKDOWN).set_header(header);
    for row in rows {
        match row {
            Row::Ok(r, _, Some(cy)) => {
                let mut cells = vec![r.workload.clone(), seq_label(r.seq)];
                if compare {
                    cells.extend([
                        format!("{:.4e}", r.latency_cycles),
                        format!("{:.4e}", cy.latency_cycles),
                        format!("{:.4}", cy.latency_cycles / r.latency_cycles),
                    ]);
                } else {
                    cells.extend([
                        format!("{:.4e}", cy.latency_s),
                        format!("{:.4e}", cy.latency_cycles),
                    ]);
                }
                let util: Vec<String> = cy
                    .units
                    .iter()
                    .map(|u| format!("{}={:.3}", u.name, u.utilisation))
                    .collect();
                let run: u64 = cy.phases.iter().map(|p| p.executed_slots).sum();
                let all: u64 = cy.phases.iter().map(|p| p.slots).sum();
                cells.extend([
                    util.join(" "),
                    format!("{:.4e}", cy.dram_busy_cycles),
                    format!("{:.4e}", cy.dram_stall_cycles),
                    if cy.extrapolated {
                        format!("{run} of {all}, extrapolated")
                    } else {
                        format!("all {all}")
                    },
                ]);
                table.add_row(cells);
            }
            Row::Ok(..) => {}
            Row::Infeasible {
                workload,
                seq,
                reason,
            } => {
                table.add_row(infeasible_cells(workload, *seq, reason));
            }
        }
    }
    table
}

fn cycle_json(cy: &CycleReport) -> Value {
    json!({
        "latency_cycles": cy.latency_cycles,
        "latency_s": cy.latency_s,
        "extrapolated": cy.extrapolated,
        "dram_busy_cycles": cy.dram_busy_cycles,
        "dram_stall_cycles": cy.dram_stall_cycles,
        "units": cy.units.iter().map(|u| json!({
            "name": u.name, "busy_cycles": u.busy_cycles,
            "drain_stall_cycles": u.drain_stall_cycles, "dram_stall_cycles": u.dram_stall_cycles,
            "idle_cycles": u.idle_cycles, "utilisation": u.utilisation,
        })).collect::<Vec<_>>(),
        "phases": cy.phases.iter().map(|p| json!({
            "slots": p.slots, "executed_slots": p.executed_slots,
            "period_cycles": p.period_cycles, "latency_cycles": p.latency_cycles,
            "dram_busy_cycles": p.dram_busy_cycles,
        })).collect::<Vec<_>>(),
        "einsums": cy.einsums.iter().map(|(name, busy)| json!({
            "name": name, "busy_cycles": busy,
        })).collect::<Vec<_>>(),
        "energy": "the analytical model's action counts",
    })
}

/// The table cells of a point the scheduler could not map, with its reason.
fn infeasible_cells(workload: &str, seq: u64, reason: impl std::fmt::Display) -> Vec<String> {
    vec![
        workload.to_string(),
        seq_label(seq),
        format!("infeasible: {reason}"),
    ]
}
