//! `simulate --engine cycle --trace`: the file is Chrome trace-event JSON (the keys and types
//! the format requires, non-negative durations, no two slices of a track overlapping) and its
//! slices keep the engine's dependencies: every Einsum tile starts after the producer tiles it
//! waited for, and after its Einsum's same-phase producers' tiles found independently from the
//! tile indices.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::support::run;

/// A relative tolerance for times that went through `cycle / clock × 1e6`.
fn close_enough(earlier_end: f64, later_start: f64) -> bool {
    later_start >= earlier_end - 1e-9 * earlier_end.abs().max(1.0)
}

/// Runs the traced cycle engine with `extra` arguments and returns the parsed file.
fn traced(extra: &[&str]) -> Value {
    let dir = tempdir();
    let path = dir.join("trace.json");
    let path_arg = path.to_string_lossy().into_owned();
    let mut args = vec!["simulate", "--engine", "cycle", "--trace", &path_arg];
    args.extend_from_slice(extra);
    let (code, _, err) = run(&args);
    assert_eq!(code, 0, "{extra:?}: {err}");
    let text = std::fs::read_to_string(&path).expect("the trace was written");
    let _ = std::fs::remove_dir_all(&dir);
    serde_json::from_str(&text).expect("the trace is JSON")
}

fn tempdir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "cascade-trace-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The trace-event format's rules for the kinds of event the file uses (metadata, complete,
/// counter and flow start and end); returns the complete ("X") events.
fn check_format<'t>(what: &str, trace: &'t Value) -> Vec<&'t Value> {
    let events = trace["traceEvents"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: traceEvents is an array"));
    assert!(
        trace["displayTimeUnit"] == "ns" || trace["displayTimeUnit"] == "ms",
        "{what}: displayTimeUnit is ns or ms"
    );
    let mut slices = Vec::new();
    let mut flows: BTreeMap<u64, (Option<f64>, Option<f64>)> = BTreeMap::new();
    for e in events {
        let ph = e["ph"].as_str().expect("ph is a string");
        assert!(e["name"].is_string(), "{what}: a name: {e}");
        assert!(e["pid"].is_u64(), "{what}: an integer pid: {e}");
        match ph {
            "M" => {
                let name = e["name"].as_str().unwrap();
                assert!(
                    [
                        "process_name",
                        "process_sort_index",
                        "thread_name",
                        "thread_sort_index"
                    ]
                    .contains(&name),
                    "{what}: a metadata event the format defines: {e}"
                );
                assert!(e["tid"].is_u64(), "{what}: {e}");
                assert!(e["args"].is_object(), "{what}: {e}");
            }
            "X" => {
                let (ts, dur) = (e["ts"].as_f64(), e["dur"].as_f64());
                assert!(ts.is_some_and(|t| t >= 0.0), "{what}: ts ≥ 0: {e}");
                assert!(dur.is_some_and(|d| d >= 0.0), "{what}: dur ≥ 0: {e}");
                assert!(e["tid"].is_u64(), "{what}: {e}");
                slices.push(e);
            }
            "C" => {
                assert!(e["ts"].as_f64().is_some_and(|t| t >= 0.0), "{what}: {e}");
                let args = e["args"].as_object().expect("counter args");
                assert!(
                    !args.is_empty()
                        && args
                            .values()
                            .all(|v| v.as_f64().is_some_and(f64::is_finite)),
                    "{what}: a counter's series are numbers: {e}"
                );
            }
            "s" | "f" => {
                assert!(e["id"].is_u64(), "{what}: a flow event has an id: {e}");
                assert!(e["ts"].as_f64().is_some_and(|t| t >= 0.0), "{what}: {e}");
                assert!(e["tid"].is_u64(), "{what}: {e}");
                let id = e["id"].as_u64().unwrap();
                let ts = e["ts"].as_f64().unwrap();
                let ends = flows.entry(id).or_insert((None, None));
                let end = if ph == "s" { &mut ends.0 } else { &mut ends.1 };
                assert!(end.is_none(), "{what}: flow {id} has one {ph}");
                *end = Some(ts);
            }
            other => panic!("{what}: unexpected phase {other}: {e}"),
        }
    }
    // Every arrow starts (in the producer) no later than it ends (at the consumer's start).
    assert!(!flows.is_empty(), "{what}: dependency arrows");
    for (id, ends) in &flows {
        match ends {
            (Some(s), Some(f)) => assert!(s <= f, "{what}: flow {id} runs backwards"),
            _ => panic!("{what}: flow {id} lacks an end"),
        }
    }
    // Every track a slice is on is named.
    let named: Vec<(u64, u64)> = events
        .iter()
        .filter(|e| e["name"] == "thread_name")
        .map(|e| (e["pid"].as_u64().unwrap(), e["tid"].as_u64().unwrap()))
        .collect();
    let mut tracks: BTreeMap<(u64, u64), Vec<(f64, f64)>> = BTreeMap::new();
    for e in &slices {
        let key = (e["pid"].as_u64().unwrap(), e["tid"].as_u64().unwrap());
        assert!(named.contains(&key), "{what}: track {key:?} has a name");
        let ts = e["ts"].as_f64().unwrap();
        tracks
            .entry(key)
            .or_default()
            .push((ts, ts + e["dur"].as_f64().unwrap()));
    }
    for (key, mut spans) in tracks {
        spans.sort_by(|a, b| a.0.total_cmp(&b.0));
        for w in spans.windows(2) {
            assert!(
                close_enough(w[0].1, w[1].0),
                "{what}: track {key:?}: a slice [{}, {}] overlaps the next at {}",
                w[0].0,
                w[0].1,
                w[1].0
            );
        }
    }
    slices
}

/// Every Einsum tile starts after (a) the slices the engine says it waited for, and (b) the
/// tiles of its same-phase producers that the tile indices pick: the same key slot of the
/// same pass, or, for a producer of an earlier pass or a consumer that runs once per query
/// tile, the producer's last key slot of that query tile. Returns the checks made.
fn check_dependencies(what: &str, slices: &[&Value]) -> usize {
    let work: Vec<&Value> = slices
        .iter()
        .copied()
        .filter(|e| e["cat"] == "work")
        .collect();
    assert!(!work.is_empty(), "{what}: the trace has work slices");
    let end = |e: &Value| e["ts"].as_f64().unwrap() + e["dur"].as_f64().unwrap();
    let by_id: BTreeMap<(u64, &str), &Value> = work
        .iter()
        .map(|e| {
            (
                (
                    e["pid"].as_u64().unwrap(),
                    e["args"]["id"].as_str().unwrap(),
                ),
                *e,
            )
        })
        .collect();
    // (pid, phase, instance, query tile, einsum) → that Einsum's slices by key slot.
    type RowKey<'a> = (u64, u64, u64, u64, &'a str);
    let mut rows: BTreeMap<RowKey<'_>, BTreeMap<u64, &Value>> = BTreeMap::new();
    for e in &work {
        let a = &e["args"];
        let key = (
            e["pid"].as_u64().unwrap(),
            a["phase"].as_u64().unwrap(),
            a["instance"].as_u64().unwrap(),
            a["query_tile"].as_u64().unwrap(),
            a["einsum"].as_str().unwrap(),
        );
        rows.entry(key)
            .or_default()
            .insert(a["key_slot"].as_u64().unwrap(), *e);
    }
    let mut checked = 0;
    for e in &work {
        let a = &e["args"];
        let pid = e["pid"].as_u64().unwrap();
        let start = e["ts"].as_f64().unwrap();
        for id in a["waited_for"].as_array().unwrap() {
            let p = by_id.get(&(pid, id.as_str().unwrap())).unwrap_or_else(|| {
                panic!("{what}: {} waited for {id}, which is in the trace", a["id"])
            });
            assert!(
                close_enough(end(p), start),
                "{what}: {} starts before {id} ends",
                a["id"]
            );
            checked += 1;
        }
        for dep in a["depends_on"].as_array().unwrap() {
            let name = dep["einsum"].as_str().unwrap();
            let key = (
                pid,
                a["phase"].as_u64().unwrap(),
                a["instance"].as_u64().unwrap(),
                a["query_tile"].as_u64().unwrap(),
                name,
            );
            let Some(row) = rows.get(&key) else { continue };
            let whole_row = dep["pass"].as_u64() < a["pass"].as_u64() || a["per_key_tile"] == false;
            let producer = if whole_row {
                row.values().next_back()
            } else {
                row.get(&a["key_slot"].as_u64().unwrap())
            };
            if let Some(p) = producer {
                assert!(
                    close_enough(end(p), start),
                    "{what}: {} starts at {start} before its producer {} ends at {}",
                    a["id"],
                    p["args"]["id"],
                    end(p)
                );
                checked += 1;
            }
        }
    }
    checked
}

#[test]
fn traces_are_trace_event_json_and_keep_the_engine_dependencies() {
    // Interleaved 1-pass, the drain of a reduction without interleaving, three passes (earlier
    // pass producers), unfused phases over DRAM, and FLAT's two units.
    let cases: [&[&str]; 5] = [
        &["--arch", "fusemax"],
        &["--arch", "fusemax-no-interleave"],
        &["--arch", "fusemax", "--cascade", "attention_3pass"],
        &["--arch", "unfused"],
        &["--arch", "flat"],
    ];
    for extra in cases {
        let mut args = vec!["--workload", "bert", "--seq", "1k", "--max-slots", "64"];
        args.extend_from_slice(extra);
        let what = extra.join(" ");
        let trace = traced(&args);
        let slices = check_format(&what, &trace);
        let checked = check_dependencies(&what, &slices);
        assert!(checked > 0, "{what}: some dependency was checked");
        // Every unit of the architecture has a named track, and so has the DRAM channel.
        let threads: Vec<&str> = trace["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["name"] == "thread_name")
            .map(|e| e["args"]["name"].as_str().unwrap())
            .collect();
        assert!(
            threads.contains(&"DRAM channel") && threads.contains(&"phases"),
            "{what}"
        );
        check_buffers(&what, &trace);
    }
}

/// The K/V tile buffers never hold more than the engine's two (double buffering) tiles of
/// one slot's reads, and the DRAM channel never exceeds the architecture's bandwidth.
fn check_buffers(what: &str, trace: &Value) {
    let events = trace["traceEvents"].as_array().unwrap();
    let tile_bytes = events
        .iter()
        .filter(|e| e["cat"] == "dram" && e["name"] == "read")
        .map(|e| e["args"]["bytes"].as_f64().unwrap())
        .fold(0.0, f64::max);
    let held = events
        .iter()
        .filter(|e| e["name"] == "K/V tile buffers")
        .map(|e| e["args"]["bytes"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert!(held > 0.0, "{what}: the buffers held something");
    assert!(
        held <= 2.0 * tile_bytes * (1.0 + 1e-9),
        "{what}: at most two tiles of {tile_bytes} bytes held, not {held}"
    );
    // Every shipped architecture's `bandwidth_gib_s` is 400 (arch-configs/*.toml).
    let arch_bytes_per_s = 400.0 * (1u64 << 30) as f64;
    for e in events.iter().filter(|e| e["name"] == "DRAM throughput") {
        let total = e["args"]["read_bytes_per_s"].as_f64().unwrap()
            + e["args"]["write_bytes_per_s"].as_f64().unwrap();
        assert!(
            total <= arch_bytes_per_s * (1.0 + 1e-6),
            "{what}: DRAM throughput {total} B/s above the channel's {arch_bytes_per_s}"
        );
    }
}

#[test]
fn every_point_is_a_process_of_its_own() {
    // FuseMax's four models at 1K: four processes in the order the points run (by model name:
    // bert, t5, trxl, xlm), each with its units, phases and DRAM.
    let trace = traced(&["--arch", "fusemax", "--seq", "1k", "--max-slots", "64"]);
    let slices = check_format("four points", &trace);
    assert!(check_dependencies("four points", &slices) > 0);
    let events = trace["traceEvents"].as_array().unwrap();
    let mut processes: Vec<(u64, &str)> = events
        .iter()
        .filter(|e| e["name"] == "process_name")
        .map(|e| {
            (
                e["pid"].as_u64().unwrap(),
                e["args"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    processes.sort();
    let names: Vec<&str> = processes.iter().map(|p| p.1).collect();
    assert_eq!(
        names,
        [
            "fusemax running attention_1pass at BERT 1K",
            "fusemax running attention_1pass at T5 1K",
            "fusemax running attention_1pass at TrXL 1K",
            "fusemax running attention_1pass at XLM 1K",
        ]
    );
    for (pid, name) in &processes {
        let tracks = events
            .iter()
            .filter(|e| e["name"] == "thread_name" && e["pid"].as_u64() == Some(*pid))
            .count();
        // phases, array2d, array1d and the DRAM channel.
        assert_eq!(tracks, 4, "{name}");
    }
}

#[test]
fn a_trace_needs_the_cycle_engine_and_a_bounded_run() {
    let (code, _, err) = run(&[
        "simulate",
        "--arch",
        "fusemax",
        "--workload",
        "bert",
        "--seq",
        "1k",
        "--trace",
        "/nonexistent/t.json",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--engine cycle"), "{err}");
    // BERT 4K on FuseMax: batch 64 × 12 heads × 16 query tiles × 16 key tiles = 196,608 slots
    // (under the engine's 2^18), each with the phase's 12 Einsums: a bound of
    // 196,608 × (2 × 12 + 4) + 1 ≈ 5.5 million events, refused before the run.
    let dir = tempdir();
    let path = dir.join("t.json");
    let path_arg = path.to_string_lossy().into_owned();
    let (code, _, err) = run(&[
        "simulate",
        "--arch",
        "fusemax",
        "--workload",
        "bert",
        "--seq",
        "4k",
        "--engine",
        "cycle",
        "--max-slots",
        "0",
        "--trace",
        &path_arg,
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("more than the limit of 524288"), "{err}");
    assert!(!path.exists(), "nothing written");
    let _ = std::fs::remove_dir_all(&dir);
}
