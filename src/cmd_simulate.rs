//! `cascade simulate`: schedule a cascade on an architecture and run the analytical model at
//! each workload point; a table, JSON or CSV per point, and with `--detail` the schedule itself.
//! `--engine cycle|both` also runs the cycle-level simulator and reports it beside the model.

use cascade_scheduler::{Outcome, schedule_with};
use cascade_sim::cycle::{self, CycleConfig, CycleReport};
use cascade_sim::{SimReport, simulate};
use comfy_table::{Table, presets};
use serde_json::{Map, Value, json};

use crate::arch_load::{self, seq_label};
use crate::output::{OutputFormat, UserError, check_finite, print_csv, print_json};
use crate::schema::{self, Cell, PJ, Records, Style, col};

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
    let cycle = matches!(args.engine, Some(Engine::Cycle | Engine::Both));
    let records = records(&rows, &arch, cycle);
    match format {
        OutputFormat::Csv => print_csv(records.csv())?,
        OutputFormat::Json => {
            let detail = rows
                .iter()
                .map(|row| match row {
                    Row::Ok(r, s, cy) => detail_json(r, s, cy.as_deref(), &arch),
                    Row::Infeasible { .. } => Map::new(),
                })
                .collect();
            let context =
                schema::context([("arch", json!(arch.name())), ("cascade", json!(running))]);
            print_json(&schema::document(
                "simulate",
                context,
                &records,
                Some(detail),
            ));
        }
        OutputFormat::Text => {
            let (analytical, cycle_cols) =
                text_columns(&arch, args.engine, mixed, records.any("infeasible"));
            if args.engine == Some(Engine::Cycle) {
                println!("{} running {running} (cycle-level engine)", arch.name());
                println!("{}", records.text(&cycle_cols));
                return Ok(());
            }
            println!("{} running {running}", arch.name());
            println!("{}", records.text(&analytical));
            if args.engine == Some(Engine::Both) {
                println!("\ncycle-level engine against the analytical model:");
                println!("{}", records.text(&cycle_cols));
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

/// The columns of the text tables: the analytical model's, and the cycle engine's (beside
/// the analytical latency with `--engine both`); with `mixed` cascades the cascade, and the
/// reasons when a point is infeasible.
fn text_columns(
    arch: &cascade_scheduler::ArchSpec,
    engine: Option<Engine>,
    mixed: bool,
    infeasible: bool,
) -> (Vec<String>, Vec<String>) {
    let names = |names: &[&str]| -> Vec<String> { names.iter().map(|n| n.to_string()).collect() };
    let util = |prefix: &str| -> Vec<String> {
        arch.units()
            .iter()
            .map(|u| format!("{prefix}util_{}", u.name()))
            .collect()
    };
    let mut analytical = names(&["model", "seq", "latency_s", "latency_cycles", "bound"]);
    analytical.extend(util(""));
    analytical.extend(names(&[
        "dram_bytes",
        "energy_j",
        "tile_mac_energy_share",
        "spill",
        "area_mm2",
        "e2e_latency_s",
        "e2e_energy_j",
    ]));
    if mixed {
        analytical.push("cascade".into());
    }
    let mut cycle = names(&["model", "seq"]);
    cycle.extend(if engine == Some(Engine::Both) {
        names(&[
            "latency_cycles",
            "cycle_latency_cycles",
            "cycle_over_analytical",
        ])
    } else {
        names(&["cycle_latency_s", "cycle_latency_cycles"])
    });
    cycle.extend(util("cycle_"));
    cycle.extend(names(&[
        "cycle_dram_busy_cycles",
        "cycle_dram_stall_cycles",
        "cycle_executed_slots",
        "cycle_slots",
        "cycle_extrapolated",
    ]));
    if infeasible {
        analytical.push("infeasible".into());
        cycle.push("infeasible".into());
    }
    (analytical, cycle)
}

/// The schema's record of every point (see `docs/output.md`): the analytical model's numbers,
/// one `util_` and `occupancy_` column per unit, with `cycle` the cycle engine's, and the
/// reason in `infeasible` for a point that could not be scheduled.
fn records(rows: &[Row], arch: &cascade_scheduler::ArchSpec, cycle: bool) -> Records {
    let units: Vec<&str> = arch.units().iter().map(|u| u.name()).collect();
    let mut columns = vec![
        col("model", Style::Plain),
        col("cascade", Style::Plain),
        col("seq", Style::Seq),
        col("latency_s", Style::Sci),
        col("latency_cycles", Style::Sci),
        col("memory_cycles", Style::Sci),
        col("bound", Style::Plain),
    ];
    columns.extend(
        units
            .iter()
            .map(|u| col(format!("util_{u}"), Style::Fixed(3))),
    );
    columns.extend(
        units
            .iter()
            .map(|u| col(format!("occupancy_{u}"), Style::Fixed(3))),
    );
    for name in [
        "dram_bytes",
        "energy_j",
        "energy_compute_j",
        "energy_register_j",
        "energy_buffer_j",
        "energy_dram_j",
        "energy_leakage_j",
    ] {
        columns.push(col(name, Style::Sci));
    }
    columns.extend([
        col("tile_mac_energy_share", Style::Fixed(3)),
        col("spill", Style::Fixed(3)),
        col("area_mm2", Style::Fixed(1)),
        col("e2e_latency_s", Style::Sci),
        col("e2e_energy_j", Style::Sci),
    ]);
    if cycle {
        columns.extend([
            col("cycle_latency_s", Style::Sci),
            col("cycle_latency_cycles", Style::Sci),
            col("cycle_over_analytical", Style::Fixed(4)),
        ]);
        columns.extend(
            units
                .iter()
                .map(|u| col(format!("cycle_util_{u}"), Style::Fixed(3))),
        );
        columns.extend([
            col("cycle_dram_busy_cycles", Style::Sci),
            col("cycle_dram_stall_cycles", Style::Sci),
            col("cycle_executed_slots", Style::Plain),
            col("cycle_slots", Style::Plain),
            col("cycle_extrapolated", Style::Plain),
        ]);
    }
    columns.push(col("infeasible", Style::Plain));
    let mut records = Records::new(columns);
    for row in rows {
        match row {
            Row::Ok(r, _, cy) => records.push(point_cells(r, arch, cy.as_deref())),
            Row::Infeasible {
                workload,
                seq,
                reason,
            } => records.push([
                ("model".to_string(), Cell::Text(workload.clone())),
                ("seq".to_string(), Cell::Count(*seq)),
                ("infeasible".to_string(), Cell::Text(reason.clone())),
            ]),
        }
    }
    records
}

/// One scheduled point's cells.
fn point_cells(
    r: &SimReport,
    arch: &cascade_scheduler::ArchSpec,
    cy: Option<&CycleReport>,
) -> Vec<(String, Cell)> {
    let n = |name: &str, x: f64| (name.to_string(), Cell::Number(x));
    let bound = r
        .phases
        .iter()
        .map(|p| p.bound.clone())
        .collect::<Vec<_>>()
        .join("+");
    let mut cells = vec![
        ("model".to_string(), Cell::Text(r.workload.clone())),
        ("cascade".to_string(), Cell::Text(r.cascade.clone())),
        ("seq".to_string(), Cell::Count(r.seq)),
        n("latency_s", r.latency_s),
        n("latency_cycles", r.latency_cycles),
        n("memory_cycles", r.memory_cycles),
        ("bound".to_string(), Cell::Text(bound)),
        n("dram_bytes", r.dram_bytes),
        n("energy_j", r.energy.total_pj() * PJ),
        n("energy_compute_j", r.energy.compute_pj * PJ),
        n("energy_register_j", r.energy.register_pj * PJ),
        n("energy_buffer_j", r.energy.buffer_pj * PJ),
        n("energy_dram_j", r.energy.dram_pj * PJ),
        n("energy_leakage_j", r.energy.leakage_pj * PJ),
        n("tile_mac_energy_share", r.tile_mac_energy_share),
        n("spill", r.spill),
        n("area_mm2", r.area_mm2),
        n(
            "e2e_latency_s",
            r.end_to_end.latency_cycles / arch.clock_hz(),
        ),
        n("e2e_energy_j", r.end_to_end.energy_pj * PJ),
    ];
    for u in &r.units {
        cells.push(n(&format!("util_{}", u.name), u.utilisation));
        cells.push(n(&format!("occupancy_{}", u.name), u.occupancy));
    }
    if let Some(cy) = cy {
        cells.extend([
            n("cycle_latency_s", cy.latency_s),
            n("cycle_latency_cycles", cy.latency_cycles),
            n(
                "cycle_over_analytical",
                cy.latency_cycles / r.latency_cycles,
            ),
            n("cycle_dram_busy_cycles", cy.dram_busy_cycles),
            n("cycle_dram_stall_cycles", cy.dram_stall_cycles),
            (
                "cycle_executed_slots".to_string(),
                Cell::Count(cy.phases.iter().map(|p| p.executed_slots).sum()),
            ),
            (
                "cycle_slots".to_string(),
                Cell::Count(cy.phases.iter().map(|p| p.slots).sum()),
            ),
            (
                "cycle_extrapolated".to_string(),
                Cell::Flag(cy.extrapolated),
            ),
        ]);
        for u in &cy.units {
            cells.push(n(&format!("cycle_util_{}", u.name), u.utilisation));
        }
    }
    cells
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
            ("cycle_latency_cycles", cy.latency_cycles),
            ("cycle_latency_s", cy.latency_s),
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
        ("energy_j", r.energy.total_pj() * PJ),
        ("tile_mac_energy_share", r.tile_mac_energy_share),
        ("area_mm2", r.area_mm2),
        ("spill", r.spill),
        ("e2e_latency_cycles", r.end_to_end.latency_cycles),
        ("e2e_energy_j", r.end_to_end.energy_pj * PJ),
    ];
    fields.extend(r.units.iter().map(|u| ("util", u.utilisation)));
    fields
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
        if let Some(q) = phase.row_queries {
            println!(
                "  one query row at a time, the PEs across its keys: {q} whole rows fit where a tile of {} queries would spill",
                part.p0
            );
        }
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
        "energy: compute {:.3e} J, registers {:.3e} J, buffer {:.3e} J, DRAM {:.3e} J, leakage {:.3e} J",
        en.compute_pj * PJ,
        en.register_pj * PJ,
        en.buffer_pj * PJ,
        en.dram_pj * PJ,
        en.leakage_pj * PJ
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
        "energy_per_action_j",
        "energy_j",
        "share",
    ]);
    let b = &r.breakdown;
    for part in b.by_component() {
        table.add_row(vec![
            (part.phase + 1).to_string(),
            part.name,
            format!("{:.4e}", part.count),
            format!("{:.4e}", part.pj / part.count * PJ),
            format!("{:.4e}", part.pj * PJ),
            share(part.pj),
        ]);
    }
    println!(
        "\nenergy by component (counts are actions; words for registers, buffer and DRAM; cycles for leakage):"
    );
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
        (b.leakage(), "leakage over the phase"),
    ] {
        for part in parts {
            table.add_row(vec![
                (part.phase + 1).to_string(),
                part.name,
                what.to_string(),
                format!("{:.4e}", part.pj * PJ),
                share(part.pj),
            ]);
        }
    }
    println!("energy by Einsum, tensor and leaking component:\n{table}");
    let mut table = Table::new();
    table.load_style(presets::ASCII_MARKDOWN).set_header([
        "phase",
        "tensor",
        "dram_read_bytes",
        "dram_write_bytes",
        "buffer_read_words",
        "buffer_write_words",
    ]);
    for t in &r.traffic_by_tensor {
        table.add_row(vec![
            (t.phase + 1).to_string(),
            t.tensor.clone(),
            format!("{:.4e}", t.dram_read_bytes),
            format!("{:.4e}", t.dram_write_bytes),
            format!("{:.4e}", t.buffer_read_words),
            format!("{:.4e}", t.buffer_write_words),
        ]);
    }
    println!(
        "traffic by tensor (dram_bytes {:.4e} in all):\n{table}",
        r.dram_bytes
    );
}

/// The breakdown as JSON: every priced item, the three groupings, and traffic per tensor;
/// phases are numbered from 1 as `--detail` prints them.
fn breakdown_json(r: &SimReport) -> (Value, Value) {
    let b = &r.breakdown;
    let parts = |parts: Vec<cascade_sim::EnergyPart>| -> Vec<Value> {
        parts
            .into_iter()
            .map(|p| json!({"phase": p.phase + 1, "name": p.name, "count": p.count, "energy_j": p.pj * PJ}))
            .collect()
    };
    let energy = json!({
        "items": b.items.iter().map(|it| json!({
            "phase": it.phase + 1, "kind": format!("{:?}", it.kind).to_lowercase(),
            "component": it.component, "action": it.action, "owner": it.owner,
            "count": it.count, "energy_per_action_j": it.pj_per_action * PJ, "energy_j": it.pj * PJ,
        })).collect::<Vec<_>>(),
        "by_component": parts(b.by_component()),
        "by_einsum": parts(b.by_einsum()),
        "by_tensor": parts(b.by_tensor()),
        "leakage": parts(b.leakage()),
    });
    let traffic = json!(r.traffic_by_tensor.iter().map(|t| json!({
        "phase": t.phase + 1, "tensor": t.tensor,
        "dram_read_bytes": t.dram_read_bytes, "dram_write_bytes": t.dram_write_bytes,
        "buffer_read_words": t.buffer_read_words, "buffer_write_words": t.buffer_write_words,
    })).collect::<Vec<_>>());
    (energy, traffic)
}

/// A point's nested detail for JSON, beside its record's flat fields: the units, phases and
/// Einsums, the mapping, the energy breakdown and traffic, the linear layers, and with the
/// cycle engine its per-unit and per-phase numbers. Same names and units as the record.
fn detail_json(
    r: &SimReport,
    s: &cascade_scheduler::Schedule,
    cy: Option<&CycleReport>,
    arch: &cascade_scheduler::ArchSpec,
) -> Map<String, Value> {
    let (energy_breakdown, traffic_by_tensor) = breakdown_json(r);
    let mut detail = schema::context([
        ("units", json!(r.units.iter().map(|u| json!({
            "unit": u.name, "pes": u.pes, "busy_cycles": u.busy_cycles,
            "stall_cycles": u.stall_cycles, "util": u.utilisation,
            "occupancy": u.occupancy,
        })).collect::<Vec<_>>())),
        ("mapping", json!(s.mapping.to_string())),
        ("phases", json!(r.phases.iter().zip(&s.phases).map(|(p, sp)| json!({
            "einsums": p.einsums, "compute_cycles": p.compute_cycles, "memory_cycles": p.memory_cycles,
            "fill_cycles": p.fill_cycles, "latency_cycles": p.latency_cycles, "bound": p.bound,
            "spill": p.spill, "passes": sp.passes, "m0": sp.partition.m0, "m1": sp.partition.m1,
            "p0": sp.partition.p0, "p1": sp.partition.p1, "p2": sp.partition.p2,
            "buffer_words": sp.buffer_words,
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
        })).collect::<Vec<_>>())),
        ("einsums", json!(r.einsums.iter().map(|e| json!({
            "einsum": e.name, "unit": e.unit, "busy_cycles": e.cycles, "share": e.share,
        })).collect::<Vec<_>>())),
        ("energy_breakdown", energy_breakdown),
        ("traffic_by_tensor", traffic_by_tensor),
        ("end_to_end", json!({
            "latency_cycles": r.end_to_end.latency_cycles,
            "linear_cycles": r.end_to_end.linear_cycles,
            "linear_energy_j": r.end_to_end.linear_energy_pj * PJ,
        })),
    ]);
    if let Some(cy) = cy {
        detail.insert("cycle".into(), json!({
            "units": cy.units.iter().map(|u| json!({
                "unit": u.name, "busy_cycles": u.busy_cycles,
                "drain_stall_cycles": u.drain_stall_cycles, "dram_stall_cycles": u.dram_stall_cycles,
                "idle_cycles": u.idle_cycles, "util": u.utilisation,
            })).collect::<Vec<_>>(),
            "phases": cy.phases.iter().map(|p| json!({
                "slots": p.slots, "executed_slots": p.executed_slots,
                "period_cycles": p.period_cycles, "latency_cycles": p.latency_cycles,
                "dram_busy_cycles": p.dram_busy_cycles,
            })).collect::<Vec<_>>(),
            "einsums": cy.einsums.iter().map(|(name, busy)| json!({
                "einsum": name, "busy_cycles": busy,
            })).collect::<Vec<_>>(),
            "energy": "the analytical model's action counts",
        }));
    }
    detail
}
