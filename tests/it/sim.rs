//! Sim boundary: the shipped architecture files validate, broken ones name the field, and the
//! `simulate`, `compare` and `sweep` commands produce the paper's comparison and the sweep files.

use crate::support::{cascade, cascade_in, stderr, stdout};
use std::fs;
use std::path::Path;

use cascade_scheduler::shipped;
use serde_json::Value;

/// The only caller of the arch-loading API here: a shipped-format file's summary or its errors.
fn check_arch(path: &Path) -> Result<String, Vec<String>> {
    let text = fs::read_to_string(path).expect("readable");
    let dir = path.parent().expect("in a folder").to_path_buf();
    shipped::parse_arch(&text, |name| {
        fs::read_to_string(dir.join("costs").join(format!("{name}.toml"))).ok()
    })
    .map(|a| a.to_string())
    .map_err(|errs| errs.iter().map(ToString::to_string).collect())
}

#[test]
fn shipped_architectures_validate_and_summarise() {
    insta::glob!("../../arch-configs", "*.toml", |path| {
        let summary = check_arch(path).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
        // The embedded copy is the file on disk.
        let name = path.file_stem().unwrap().to_string_lossy();
        assert_eq!(
            shipped::arch(&name),
            Some(fs::read_to_string(path).unwrap().as_str())
        );
        insta::assert_snapshot!(summary);
    });
}

#[test]
fn broken_architectures_name_the_field() {
    insta::glob!("../data/arch-bad", "*.toml", |path| {
        let rel = path
            .strip_prefix(env!("CARGO_MANIFEST_DIR"))
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let out = cascade(&[
            "simulate",
            "--arch",
            &rel,
            "--workload",
            "bert",
            "--seq",
            "1k",
        ]);
        assert_eq!(out.status.code(), Some(1), "{rel}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains('`'), "{rel}: the message names a field: {err}");
        insta::assert_snapshot!(
            err.lines()
                .map(str::trim_end)
                .collect::<Vec<_>>()
                .join("\n")
        );
    });
}

#[test]
fn comparison_with_flat_and_unfused() {
    // The README's main job: FuseMax against FLAT and Unfused over the 24 points.
    let out = cascade(&[
        "compare",
        "--arch",
        "fusemax",
        "--vs",
        "flat",
        "--vs",
        "unfused",
        "--workload",
        "all",
        "--end-to-end",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let mean = text
        .lines()
        .find(|l| l.starts_with("| mean"))
        .expect("a mean row");
    assert!(mean.contains("24 pts"), "{mean}");
    insta::assert_snapshot!(text);
}

#[test]
fn comparison_with_the_ablations() {
    let out = cascade(&[
        "compare",
        "--arch",
        "fusemax",
        "--vs",
        "fusemax-cascade-on-flat",
        "--vs",
        "fusemax-no-interleave",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    insta::assert_snapshot!(stdout(&out));
}

#[test]
fn comparison_json_has_every_point() {
    let out = cascade(&[
        "compare", "--arch", "fusemax", "--vs", "flat", "--format", "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    let points = v["points"].as_array().expect("points");
    assert_eq!(points.len(), 24);
    let mean: f64 = points
        .iter()
        .map(|p| p["speedup_vs_flat"].as_f64().unwrap())
        .sum::<f64>()
        / 24.0;
    assert!((mean - v["summary"]["speedup_vs_flat"].as_f64().unwrap()).abs() < 1e-9);
    assert_eq!(v["summary"]["n_points"], 24);
}

#[test]
fn simulate_reports_units_and_phases() {
    let out = cascade(&[
        "simulate",
        "--arch",
        "fusemax",
        "--workload",
        "bert",
        "--seq",
        "1k,1M",
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    let points = v["points"].as_array().expect("points");
    assert_eq!(points.len(), 2);
    let util = |p: &Value, unit: &str| {
        let nested = p["units"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["unit"] == unit)
            .unwrap()["util"]
            .as_f64()
            .unwrap();
        // The record's flat field is the detail's number.
        assert_eq!(p[format!("util_{unit}")].as_f64(), Some(nested));
        nested
    };
    assert!((util(&points[0], "array2d") - 0.889).abs() < 0.005);
    assert!(util(&points[1], "array2d") > 0.99);
    assert_eq!(points[1]["phases"][0]["p1"], 251);
    assert_eq!(points[1]["phases"][0]["loop_order"][1], "for m1 in 0..4096");
    // The share of each unit's busy time sums to one.
    let share: f64 = points[0]["einsums"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["unit"] == "array2d")
        .map(|e| e["share"].as_f64().unwrap())
        .sum();
    assert!((share - 1.0).abs() < 1e-9);
}

#[test]
fn simulate_other_cascades_and_infeasible_ones() {
    // A key tile bigger than the array's rows is refused, not modelled as a bigger array.
    let out = cascade(&[
        "simulate",
        "--arch",
        "fusemax",
        "--cascade",
        "attention_causal_1pass",
        "--shape",
        "M0=1000000",
        "--workload",
        "t5",
        "--seq",
        "1M",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("| infeasible")
            && stdout(&out)
                .contains("| a key tile of 1000000 keys does not fit the 256 rows of array2d"),
        "{}",
        stdout(&out)
    );
    // Sigmoid attention runs: FuseMax's arrays price the sigmoid as a polynomial.
    let out = cascade(&[
        "simulate",
        "--arch",
        "fusemax",
        "--cascade",
        "sigmoid_attention",
        "--workload",
        "t5",
        "--seq",
        "4k",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains("infeasible"), "{}", stdout(&out));
    let out = cascade(&[
        "simulate",
        "--arch",
        "flat",
        "--cascade",
        "attention_window_3pass",
        "--workload",
        "t5",
        "--seq",
        "4k",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("rank W has no size"),
        "{}",
        stderr(&out)
    );
    let out = cascade(&[
        "simulate",
        "--arch",
        "flat",
        "--cascade",
        "attention_window_3pass",
        "--workload",
        "t5",
        "--seq",
        "4k",
        "--shape",
        "W=512",
        "--csv",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.starts_with("schema_version,model,cascade,seq,latency_s,"),
        "{text}"
    );
    let detail = cascade(&[
        "simulate",
        "--arch",
        "fusemax",
        "--workload",
        "bert",
        "--seq",
        "4k",
        "--detail",
    ]);
    assert!(
        stdout(&detail)
            // Reference §5: `(SLNV[b] | BQK[d]) → LM[d] → SLN[c] → SLD[c]` with b < c < d, so
            // SLNV never runs before the SLN tile it reads.
            .contains("epoch on array2d: (SLNV[t-3] | BQK[t]) → LM[t] → SLN[t-2] → SLD[t-2]"),
        "{}",
        stdout(&detail)
    );
}

#[test]
fn sweep_refuses_array_sides_the_model_cannot_count() {
    // Above 2^16 a side squared would once wrap and make the area fall.
    let out = cascade(&["sweep", "--arch", "fusemax", "--pe-dim", "16..4294967296"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("more than the widest array, 65536"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn shipped_names_work_from_any_directory() {
    let dir = std::env::temp_dir();
    let out = cascade_in(
        &dir,
        &[
            "simulate",
            "--arch",
            "fusemax",
            "--workload",
            "xlm",
            "--seq",
            "1k",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cascade_in(&dir, &["simulate", "--arch", "no-such-arch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("fusemax, fusemax-cascade-on-flat"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn sweep_writes_the_pareto_csv_and_plot() {
    let dir = std::env::temp_dir().join(format!("cascade-sweep-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let (csv_path, svg_path) = (dir.join("pareto.csv"), dir.join("pareto.svg"));
    let out = cascade(&[
        "sweep",
        "--arch",
        "fusemax",
        "--pe-dim",
        "16..512",
        "--seq",
        "256k",
        "--out",
        csv_path.to_str().unwrap(),
        "--plot",
        svg_path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let csv = fs::read_to_string(&csv_path).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 6, "{csv}");
    let column = |name: &str| -> Vec<&str> {
        let k = header.iter().position(|h| *h == name).expect(name);
        rows.iter().map(|r| r[k]).collect()
    };
    let dims: Vec<u64> = column("pe_dim")
        .iter()
        .map(|c| c.parse().unwrap())
        .collect();
    assert_eq!(dims, [16, 32, 64, 128, 256, 512]);
    let latency: Vec<f64> = column("latency_s")
        .iter()
        .map(|c| c.parse().unwrap())
        .collect();
    let area: Vec<f64> = column("area_mm2")
        .iter()
        .map(|c| c.parse().unwrap())
        .collect();
    // Latency falls about as 1/PEs and area grows with them: every point is Pareto-optimal.
    for k in 1..rows.len() {
        let ratio = latency[k - 1] / latency[k];
        assert!(
            (3.0..=4.5).contains(&ratio),
            "latency ratio {ratio} at {}",
            dims[k]
        );
        assert!(area[k] > area[k - 1]);
    }
    assert!(column("pareto").iter().all(|c| *c == "true"), "{csv}");
    // The buffer stops growing once memory time no longer exceeds the 1D compute time.
    let buffers: Vec<u64> = column("buffer_bytes")
        .iter()
        .map(|c| c.parse().unwrap())
        .collect();
    assert!(
        buffers.iter().all(|&b| (64 << 10..=32 << 20).contains(&b)),
        "{buffers:?}"
    );
    let svg = fs::read_to_string(&svg_path).unwrap();
    assert!(
        svg.contains("<svg") && svg.contains("<circle"),
        "an SVG with points"
    );
    fs::remove_dir_all(&dir).ok();
}

#[test]
fn simulate_engine_both_reports_both_latencies_and_their_ratio() {
    let args = [
        "simulate",
        "--arch",
        "fusemax",
        "--workload",
        "bert",
        "--seq",
        "1k,4k",
    ];
    // Without --engine (and with the default engine) the output is the analytical one.
    let plain = stdout(&cascade(&args));
    let analytical = stdout(&cascade(&[&args[..], &["--engine", "analytical"]].concat()));
    assert_eq!(plain, analytical);
    let both = stdout(&cascade(&[&args[..], &["--engine", "both"]].concat()));
    assert!(
        both.starts_with(&plain),
        "the analytical table comes first, unchanged"
    );
    assert!(both.contains("cycle_over_analytical"), "{both}");

    let out = cascade(&[&args[..], &["--engine", "both", "--format", "json"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    let points = v["points"].as_array().expect("points");
    assert_eq!(points.len(), 2);
    for p in points {
        let an = p["latency_cycles"].as_f64().expect("analytical");
        let cy = p["cycle_latency_cycles"].as_f64().expect("cycle");
        let ratio = p["cycle_over_analytical"].as_f64().expect("ratio");
        assert!((ratio - cy / an).abs() < 1e-12);
        // The engines agree within the cross-check's 1% (sim/tests/cycle.rs).
        assert!((ratio - 1.0).abs() < 0.01, "{ratio}");
        // BERT has 768 instances: 12,288 slots at 1K, more than the default 4096 slots, so
        // both points extrapolate, and say so.
        assert_eq!(p["cycle_extrapolated"], Value::Bool(true));
    }
    // Every slot executed when the limit is lifted.
    let out = cascade(
        &[
            &args[..2],
            &[
                "fusemax",
                "--workload",
                "bert",
                "--seq",
                "1k",
                "--engine",
                "cycle",
            ],
            &["--max-slots", "0", "--format", "json"],
        ]
        .concat(),
    );
    let v: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(v["points"][0]["cycle_extrapolated"], Value::Bool(false));
    assert_eq!(
        v["points"][0]["cycle"]["phases"][0]["executed_slots"].as_u64(),
        Some(12288)
    );
}

#[test]
fn simulate_breaks_energy_and_traffic_down() {
    // JSON: the breakdown's groupings each sum to the total, and the tensors' bytes to the
    // point's DRAM bytes; the text `--detail` prints the three tables before the mapping.
    let out = cascade(&[
        "simulate",
        "--arch",
        "unfused",
        "--workload",
        "bert",
        "--seq",
        "4k",
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    let p = &json["points"][0];
    let total = p["energy_j"].as_f64().unwrap();
    let sum = |v: &Value, key: &str| -> f64 {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x[key].as_f64().unwrap())
            .sum()
    };
    let b = &p["energy_breakdown"];
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs();
    assert!(close(sum(&b["by_component"], "energy_j"), total));
    assert!(close(sum(&b["items"], "energy_j"), total));
    assert!(close(
        sum(&b["by_einsum"], "energy_j")
            + sum(&b["by_tensor"], "energy_j")
            + sum(&b["leakage"], "energy_j"),
        total
    ));
    // The five kinds of the record sum to its total too.
    let kinds: f64 = ["compute", "register", "buffer", "dram", "leakage"]
        .iter()
        .map(|k| p[format!("energy_{k}_j")].as_f64().unwrap())
        .sum();
    assert!(close(kinds, total));
    let t = &p["traffic_by_tensor"];
    let bytes = sum(t, "dram_read_bytes") + sum(t, "dram_write_bytes");
    assert!(close(bytes, p["dram_bytes"].as_f64().unwrap()));
    // Unfused writes the scores QK in phase 1 and reads them back in phase 2.
    let qk = |phase: u64, key: &str| {
        t.as_array()
            .unwrap()
            .iter()
            .find(|x| x["tensor"] == "QK" && x["phase"] == phase)
            .map(|x| x[key].as_f64().unwrap())
    };
    assert!(qk(1, "dram_write_bytes").unwrap() > 0.0);
    assert!(qk(2, "dram_read_bytes").unwrap() > 0.0);
    let detail = cascade(&[
        "simulate",
        "--arch",
        "fusemax",
        "--workload",
        "bert",
        "--seq",
        "1k",
        "--detail",
    ]);
    let text = stdout(&detail);
    let at = |s: &str| {
        text.find(s)
            .unwrap_or_else(|| panic!("no {s:?} in\n{text}"))
    };
    assert!(at("energy by component") < at("energy by Einsum, tensor and leaking component"));
    assert!(at("traffic by tensor") < at("mapping (a file for --mapping)"));
    assert!(text.contains("| 1     | array2d mac "), "{text}");
}
