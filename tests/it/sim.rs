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
        .map(|p| p["attention"][0]["speedup"].as_f64().unwrap())
        .sum::<f64>()
        / 24.0;
    assert!((mean - v["mean_attention"][0]["speedup"].as_f64().unwrap()).abs() < 1e-9);
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
        p["units"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["name"] == unit)
            .unwrap()["utilisation"]
            .as_f64()
            .unwrap()
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
        stdout(&out).contains(
            "infeasible: a key tile of 1000000 keys does not fit the 256 rows of array2d"
        ),
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
    assert!(text.starts_with("model,seq,latency_s,"), "{text}");
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
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 6, "{csv}");
    let dims: Vec<u64> = rows.iter().map(|r| r[2].parse().unwrap()).collect();
    assert_eq!(dims, [16, 32, 64, 128, 256, 512]);
    let latency: Vec<f64> = rows.iter().map(|r| r[4].parse().unwrap()).collect();
    let area: Vec<f64> = rows.iter().map(|r| r[6].parse().unwrap()).collect();
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
    assert!(rows.iter().all(|r| r[8] == "true"), "{csv}");
    // The buffer stops growing once memory time no longer exceeds the 1D compute time.
    let buffers: Vec<u64> = rows.iter().map(|r| r[3].parse().unwrap()).collect();
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

// ---------------------------------------------------------------------------------------------
// `--format csv`: the same numbers as `--format json`, unrounded.

/// Parses CSV with the csv crate: the header and every record, all of the same width.
fn parse_csv(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let header = r
        .headers()
        .expect("a header")
        .iter()
        .map(String::from)
        .collect();
    let rows = r
        .records()
        .map(|rec| rec.expect("a record").iter().map(String::from).collect())
        .collect();
    (header, rows)
}

fn run_ok(args: &[&str]) -> String {
    let out = cascade(args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

/// A CSV cell equals a JSON number (a difference of an ulp or so allowed where the CLI scales
/// it, e.g. pJ → J).
fn same_number(cell: &str, want: f64, what: &str) {
    let got: f64 = cell
        .parse()
        .unwrap_or_else(|_| panic!("{what}: `{cell}` is not a number"));
    assert!(
        (got - want).abs() <= 1e-14 * want.abs(),
        "{what}: CSV {got} vs JSON {want}"
    );
}

#[test]
fn simulate_csv_has_the_json_numbers() {
    let base = [
        "simulate",
        "--arch",
        "fusemax",
        "--workload",
        "bert,xlm",
        "--seq",
        "1k,64k",
        "--format",
    ];
    let (header, rows) = parse_csv(&run_ok(&[&base[..], &["csv"]].concat()));
    let json: Value = serde_json::from_str(&run_ok(&[&base[..], &["json"]].concat())).unwrap();
    let points = json["points"].as_array().unwrap();
    assert_eq!(rows.len(), points.len());
    assert_eq!(rows.len(), 4);
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name} in {header:?}"))
    };
    for (row, p) in rows.iter().zip(points) {
        let what = format!("{} {}", row[0], row[1]);
        assert_eq!(row[col("model")], p["workload"].as_str().unwrap());
        assert_eq!(row[col("seq")], p["seq"].to_string());
        for (c, j) in [
            ("latency_s", &p["latency_s"]),
            ("cycles", &p["latency_cycles"]),
            ("tile_mac_share", &p["tile_mac_energy_share"]),
            ("spill", &p["spill"]),
            ("area_mm2", &p["area_mm2"]),
        ] {
            same_number(&row[col(c)], j.as_f64().unwrap(), &format!("{what} {c}"));
        }
        same_number(
            &row[col("dram_gb")],
            p["dram_bytes"].as_f64().unwrap() / 1e9,
            &what,
        );
        same_number(
            &row[col("energy_j")],
            p["energy_pj"]["total"].as_f64().unwrap() * 1e-12,
            &what,
        );
        same_number(
            &row[col("e2e_energy_j")],
            p["end_to_end"]["energy_pj"].as_f64().unwrap() * 1e-12,
            &what,
        );
        for u in p["units"].as_array().unwrap() {
            let c = format!("util_{}", u["name"].as_str().unwrap());
            same_number(&row[col(&c)], u["utilisation"].as_f64().unwrap(), &c);
        }
        assert_eq!(row[col("infeasible")], "");
    }
    // An infeasible point: the reason in its own column, numbers empty. (A key tile of 1024
    // keys on a 256-row array.)
    let args = [
        "simulate",
        "--arch",
        "fusemax",
        "--cascade",
        "attention_causal_1pass",
        "--shape",
        "M0=1024",
        "--workload",
        "t5",
        "--seq",
        "4k",
    ];
    let (header, rows) = parse_csv(&run_ok(&[&args[..], &["--format", "csv"]].concat()));
    let json: Value =
        serde_json::from_str(&run_ok(&[&args[..], &["--format", "json"]].concat())).unwrap();
    let last = header.len() - 1;
    assert_eq!(header[last], "infeasible");
    assert_eq!(
        rows[0][last],
        json["points"][0]["infeasible"].as_str().unwrap()
    );
    assert_eq!(rows[0][2], "");
    // `table` is the text format's other name.
    assert_eq!(
        run_ok(&[&args[..], &["--format", "table"]].concat()),
        run_ok(&[&args[..], &["--format", "text"]].concat())
    );
}

#[test]
fn compare_csv_has_the_json_numbers() {
    let base = [
        "compare",
        "--arch",
        "fusemax",
        "--vs",
        "flat",
        "--vs",
        "unfused",
        "--end-to-end",
    ];
    let csv_text = run_ok(&[&base[..], &["--format", "csv"]].concat());
    // The hidden `--csv` flag of older scripts prints the same.
    assert_eq!(run_ok(&[&base[..], &["--csv"]].concat()), csv_text);
    let (header, rows) = parse_csv(&csv_text);
    let json: Value =
        serde_json::from_str(&run_ok(&[&base[..], &["--format", "json"]].concat())).unwrap();
    assert_eq!(
        header,
        [
            "model",
            "seq",
            "speedup_vs_flat",
            "energy_vs_flat",
            "speedup_vs_unfused",
            "energy_vs_unfused",
            "e2e_speedup_vs_flat",
            "e2e_energy_vs_flat",
            "e2e_speedup_vs_unfused",
            "e2e_energy_vs_unfused",
        ]
    );
    let points = json["points"].as_array().unwrap();
    assert_eq!(rows.len(), points.len() + 1);
    let check = |row: &[String], attention: &Value, e2e: &Value| {
        for k in 0..2 {
            for (offset, ratios) in [(2, attention), (6, e2e)] {
                let r = &ratios[k];
                same_number(
                    &row[offset + 2 * k],
                    r["speedup"].as_f64().unwrap(),
                    "speedup",
                );
                same_number(
                    &row[offset + 2 * k + 1],
                    r["energy"].as_f64().unwrap(),
                    "energy",
                );
            }
        }
    };
    for (row, p) in rows.iter().zip(points) {
        assert_eq!(row[0], p["workload"].as_str().unwrap());
        assert_eq!(row[1], p["seq"].to_string());
        check(row, &p["attention"], &p["end_to_end"]);
    }
    let mean = rows.last().unwrap();
    assert_eq!((mean[0].as_str(), mean[1].as_str()), ("mean", ""));
    check(mean, &json["mean_attention"], &json["mean_end_to_end"]);
}

#[test]
fn sweep_csv_has_the_json_numbers() {
    let base = ["sweep", "--arch", "fusemax", "--pe-dim", "16..128"];
    let (header, rows) = parse_csv(&run_ok(&[&base[..], &["--format", "csv"]].concat()));
    let json: Value =
        serde_json::from_str(&run_ok(&[&base[..], &["--format", "json"]].concat())).unwrap();
    let points = json.as_array().unwrap();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows.len(), points.len());
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    for (row, p) in rows.iter().zip(points) {
        assert_eq!(row[col("pe_dim")], p["pe_dim"].to_string());
        assert_eq!(row[col("buffer_bytes")], p["buffer_bytes"].to_string());
        assert_eq!(row[col("pareto")], p["pareto"].to_string());
        same_number(
            &row[col("latency_s")],
            p["latency_s"].as_f64().unwrap(),
            "latency",
        );
        same_number(
            &row[col("area_mm2")],
            p["area_mm2"].as_f64().unwrap(),
            "area",
        );
        same_number(
            &row[col("energy_j")],
            p["energy_pj"].as_f64().unwrap() * 1e-12,
            "energy",
        );
    }
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
    assert!(both.contains("cycle/analytical"), "{both}");

    let out = cascade(&[&args[..], &["--engine", "both", "--format", "json"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    let points = v["points"].as_array().expect("points");
    assert_eq!(points.len(), 2);
    for p in points {
        let an = p["latency_cycles"].as_f64().expect("analytical");
        let cy = p["cycle"]["latency_cycles"].as_f64().expect("cycle");
        let ratio = p["cycle_over_analytical"].as_f64().expect("ratio");
        assert!((ratio - cy / an).abs() < 1e-12);
        // The engines agree within the cross-check's 1% (sim/tests/cycle.rs).
        assert!((ratio - 1.0).abs() < 0.01, "{ratio}");
        // BERT has 768 instances: 12,288 slots at 1K, more than the default 4096 slots, so
        // both points extrapolate, and say so.
        assert_eq!(p["cycle"]["extrapolated"], Value::Bool(true));
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
    assert_eq!(v["points"][0]["cycle"]["extrapolated"], Value::Bool(false));
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
    let total = p["energy_pj"]["total"].as_f64().unwrap();
    let sum = |v: &Value, key: &str| -> f64 {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x[key].as_f64().unwrap())
            .sum()
    };
    let b = &p["energy_breakdown"];
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs();
    assert!(close(sum(&b["by_component"], "pj"), total));
    assert!(close(sum(&b["items"], "pj"), total));
    assert!(close(
        sum(&b["by_einsum"], "pj") + sum(&b["by_tensor"], "pj"),
        total
    ));
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
