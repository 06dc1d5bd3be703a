//! `simulate --engine cycle --trace FILE`: the cycle engine's recorded timeline
//! ([`cascade_sim::trace::Trace`]) as Chrome trace-event JSON, which ui.perfetto.dev and
//! chrome://tracing open.
//!
//! One process per workload point; in it a `phases` track, a track per unit with a slice per
//! Einsum tile (tile indices, the producers it waited for and its Einsum's same-phase
//! producers in `args`, and a flow arrow from each producer tile it waited for) and the stalls
//! between them, a `DRAM channel` track with each slot's reads and writes, and two counters:
//! bytes held in the K/V tile buffers and the DRAM channel's read and write throughput. Times are µs of the architecture's clock
//! (`ts = cycle / clock_hz × 1e6`). Long runs show a progress bar on stderr when it is a
//! terminal.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};

use cascade_scheduler::{ArchSpec, Schedule};
use cascade_sim::cycle::{self, CycleConfig, CycleReport, Observer};
use cascade_sim::trace::{DramDirection, ItemKind, Trace};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::files;
use crate::output::UserError;

/// The most events one trace file holds: 100 to 160 MB of JSON at 180 to 310 bytes an event,
/// which the Perfetto UI still opens; a run whose bound exceeds it is refused before it starts.
pub const MAX_TRACE_EVENTS: u64 = 1 << 19;

/// A run executing at least this many slots shows a progress bar.
const PROGRESS_SLOTS: u64 = 1 << 14;

/// Intervals of the DRAM throughput counter per point.
const THROUGHPUT_BINS: usize = 400;

/// The cycle engine's runs of one `simulate`, traced into one file when asked.
#[derive(Debug)]
pub struct TraceFile {
    path: Option<PathBuf>,
    /// The serialised events so far, each followed by a comma.
    events: Vec<u8>,
    /// Events written so far, counted against [`MAX_TRACE_EVENTS`].
    count: u64,
    points: u64,
    /// Flow (dependency arrow) ids so far; unique over the file.
    flows: u64,
}

impl TraceFile {
    /// A trace to `path` (`None`: the runs only show progress); refused unless the cycle
    /// engine runs.
    pub fn new(path: Option<&Path>, cycle_engine: bool) -> Result<TraceFile, UserError> {
        if path.is_some() && !cycle_engine {
            return Err(UserError::message(
                "--trace records the cycle engine's timeline; add --engine cycle (or both)",
            ));
        }
        Ok(TraceFile {
            path: path.map(Path::to_path_buf),
            events: Vec::new(),
            count: 0,
            points: 0,
            flows: 0,
        })
    }

    /// Runs the cycle engine on one point (`label`), recording its timeline when tracing.
    pub fn run(
        &mut self,
        schedule: &Schedule,
        arch: &ArchSpec,
        config: &CycleConfig,
        label: &str,
    ) -> Result<CycleReport, UserError> {
        let mut trace = None;
        let mut most = 0;
        if self.path.is_some() {
            let bound = cycle::trace_events_bound(schedule, config);
            // Besides the engine's events: the throughput counter and the track names.
            let fixed = THROUGHPUT_BINS as u64 + 2 * (arch.units().len() as u64 + 3);
            let total = self.count.saturating_add(bound).saturating_add(fixed);
            if total > MAX_TRACE_EVENTS {
                return Err(UserError::message(format!(
                    "{label}: the trace would hold up to {total} events, more than the limit of {MAX_TRACE_EVENTS} (2^19, 100 to 160 MB of JSON); it records executed slots only, so trace fewer with a smaller --max-slots, or fewer points (--workload, --seq)"
                )));
            }
            most = total;
            // The bound is the most the engine records, so this is all it allocates.
            trace = Some(Trace::new(usize::try_from(bound).unwrap_or(usize::MAX)));
        }
        // At most this many slots (the busiest phase's, for every phase).
        let slots =
            cycle::executed_slots(schedule, config).saturating_mul(schedule.phases.len() as u64);
        let bar = if slots >= PROGRESS_SLOTS && std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(slots);
            bar.set_style(
                ProgressStyle::with_template(&format!(
                    "{{bar:40}} {{pos}}/{{len}} slots of {label}"
                ))
                .expect("valid template"),
            );
            bar
        } else {
            ProgressBar::hidden()
        };
        let mut progress = |done: u64, total: u64| {
            bar.set_length(total);
            bar.set_position(done);
        };
        let report = cycle::run_observed(
            schedule,
            arch,
            config,
            &mut Observer {
                trace: trace.as_mut(),
                progress: &mut progress,
            },
        );
        bar.finish_and_clear();
        if let Some(trace) = trace {
            self.points += 1;
            self.add(&trace, schedule, arch, label);
            debug_assert!(
                self.count <= most,
                "{} events over the bound {most}",
                self.count
            );
        }
        Ok(report)
    }

    /// Appends one point's events as process `self.points`.
    fn add(&mut self, trace: &Trace, schedule: &Schedule, arch: &ArchSpec, label: &str) {
        let pid = self.points;
        let us = 1e6 / arch.clock_hz();
        let phases_tid = 1u64;
        let unit_tid = |u: usize| 2 + u as u64;
        let dram_tid = 2 + arch.units().len() as u64;
        // Where each work slice is, so that a consumer's arrow can start in its producer.
        let at: std::collections::HashMap<(usize, usize, u64), (f64, u64)> = trace
            .items
            .iter()
            .filter(|it| it.kind == ItemKind::Work)
            .map(|it| {
                (
                    (it.phase, it.einsum, it.slot),
                    (it.start, unit_tid(it.unit.0)),
                )
            })
            .collect();
        let mut flows = self.flows;
        let mut push = |event: Value| {
            // Serialising a `Value` cannot fail.
            serde_json::to_writer(&mut self.events, &event).expect("JSON in memory");
            self.events.push(b',');
            self.count += 1;
        };
        let name = format!("{} running {} at {label}", arch.name(), schedule.cascade);
        push(
            json!({"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": name}}),
        );
        push(
            json!({"name": "process_sort_index", "ph": "M", "pid": pid, "tid": 0, "args": {"sort_index": pid}}),
        );
        let mut threads = vec![(phases_tid, "phases".to_string())];
        threads.extend(
            arch.unit_ids()
                .map(|u| (unit_tid(u.0), arch.unit(u).name().to_string())),
        );
        threads.push((dram_tid, "DRAM channel".to_string()));
        for (tid, thread) in threads {
            push(
                json!({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": thread}}),
            );
            push(
                json!({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid, "args": {"sort_index": tid}}),
            );
        }
        for p in &trace.phases {
            push(json!({
                "name": format!("phase {}", p.phase + 1), "cat": "phase", "ph": "X",
                "ts": p.start * us, "dur": (p.executed_end - p.start) * us,
                "pid": pid, "tid": phases_tid,
                "args": {"slots": p.slots, "executed_slots": p.executed_slots},
            }));
            if p.end > p.executed_end {
                push(json!({
                    "name": format!("phase {} extrapolated", p.phase + 1), "cat": "phase", "ph": "X",
                    "ts": p.executed_end * us, "dur": (p.end - p.executed_end) * us,
                    "pid": pid, "tid": phases_tid,
                    "args": {"slots_not_executed": p.slots - p.executed_slots,
                        "how": "the steady-state time per unit of the busiest resource's work"},
                }));
            }
        }
        let id = |phase: usize, einsum: usize, slot: u64| {
            format!("{}/{}/{slot}", phase + 1, schedule.einsums[einsum].name)
        };
        for it in &trace.items {
            let e = &schedule.einsums[it.einsum];
            let (name, cat) = match it.kind {
                ItemKind::Work => (e.name.clone(), "work"),
                ItemKind::DramStall => ("DRAM stall".to_string(), "stall"),
                ItemKind::DrainStall => ("drain stall".to_string(), "stall"),
            };
            let mut args = json!({
                "einsum": e.name, "phase": it.phase + 1, "slot": it.slot,
                "instance": it.tile.instance, "query_tile": it.tile.query_tile,
                "pass": e.pass + 1, "key_slot": it.tile.key_slot,
                "start_cycle": it.start, "cycles": it.end - it.start,
            });
            if it.kind == ItemKind::Work {
                args["id"] = json!(id(it.phase, it.einsum, it.slot));
                args["per_key_tile"] = json!(e.per_key_tile);
                args["waited_for"] = json!(
                    it.waited_for
                        .iter()
                        .map(|&(d, s)| id(it.phase, d, s))
                        .collect::<Vec<_>>()
                );
                let phase = &schedule.phases[it.phase];
                args["depends_on"] = json!(
                    e.deps
                        .iter()
                        .filter(|d| phase.einsums.contains(d) && schedule.einsums[**d].per_key_tile)
                        .map(|&d| json!({"einsum": schedule.einsums[d].name, "pass": schedule.einsums[d].pass + 1}))
                        .collect::<Vec<_>>()
                );
            }
            push(json!({
                "name": name, "cat": cat, "ph": "X", "ts": it.start * us,
                "dur": (it.end - it.start) * us, "pid": pid, "tid": unit_tid(it.unit.0),
                "args": args,
            }));
            // An arrow from each producer tile it waited for (Perfetto draws flow events
            // between the slices that enclose their ends).
            for &(d, slot) in &it.waited_for {
                let Some(&(start, tid)) = at.get(&(it.phase, d, slot)) else {
                    continue;
                };
                flows += 1;
                push(json!({
                    "name": "waits for", "cat": "dependency", "ph": "s", "id": flows,
                    "ts": start * us, "pid": pid, "tid": tid,
                }));
                push(json!({
                    "name": "waits for", "cat": "dependency", "ph": "f", "bp": "e", "id": flows,
                    "ts": it.start * us, "pid": pid, "tid": unit_tid(it.unit.0),
                }));
            }
        }
        for d in &trace.dram {
            let name = match d.direction {
                DramDirection::Read => "read",
                DramDirection::Write => "write",
            };
            push(json!({
                "name": name, "cat": "dram", "ph": "X", "ts": d.start * us,
                "dur": (d.end - d.start) * us, "pid": pid, "tid": dram_tid,
                "args": {"phase": d.phase + 1, "slot": d.slot, "bytes": d.bytes},
            }));
        }
        for (t, bytes) in trace.buffer_occupancy() {
            push(json!({
                "name": "K/V tile buffers", "ph": "C", "ts": t * us, "pid": pid,
                "args": {"bytes": bytes},
            }));
        }
        let per_s = arch.clock_hz();
        for (t, read, write) in trace.dram_throughput(THROUGHPUT_BINS) {
            push(json!({
                "name": "DRAM throughput", "ph": "C", "ts": t * us, "pid": pid,
                "args": {"read_bytes_per_s": read * per_s, "write_bytes_per_s": write * per_s},
            }));
        }
        self.flows = flows;
    }

    /// Writes the trace file (atomically), when one was asked for.
    pub fn write(self, arch: &ArchSpec) -> Result<(), UserError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut bytes = b"{\"traceEvents\":[".to_vec();
        let events = self.events.strip_suffix(b",").unwrap_or(&self.events);
        bytes.extend_from_slice(events);
        bytes.extend_from_slice(b"],\"displayTimeUnit\":\"ns\",\"otherData\":");
        let other = json!({
            "generator": "cascade simulate --engine cycle --trace",
            "arch": arch.name(),
            "clock_hz": arch.clock_hz(),
            "time": "ts and dur in microseconds: cycle / clock_hz * 1e6",
        });
        serde_json::to_writer(&mut bytes, &other).expect("JSON in memory");
        bytes.push(b'}');
        files::write_atomic(path, &bytes)
    }
}
