//! `cascade scale` end to end: the study's points and what they say, its files, and the
//! refusals of bad ranges and system files.

use std::fs;

use crate::support::{cascade, run, stderr, stdout};

fn json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--format", "json", "scale"];
    all.extend_from_slice(args);
    let out = cascade(&all);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).expect("JSON")
}

/// 1M tokens × 1 to 64 chips: seven points, one chip at efficiency 1; a dense BERT on 100 GB/s
/// links hides its transfers (a 64-chip block of 16K × 16K computes for about 0.47 s and its
/// 3.2 GB take 32 ms), and at 1 GB/s (3.2 s a block) it does not.
#[test]
fn scale_reports_every_point_and_the_crossover() {
    let v = json(&["--arch", "ring-fusemax", "--seq", "1m", "--chips", "1..64"]);
    let points = v["points"].as_array().expect("points");
    let chips: Vec<u64> = points
        .iter()
        .map(|p| p["chips"].as_u64().unwrap())
        .collect();
    assert_eq!(chips, [1, 2, 4, 8, 16, 32, 64]);
    assert_eq!(points[0]["efficiency"].as_f64(), Some(1.0));
    assert_eq!(points[0]["exposed_s"].as_f64(), Some(0.0));
    for p in points {
        assert_eq!(p["hidden"], true, "{p}");
        let e = p["efficiency"].as_f64().unwrap();
        assert!(e > 0.9 && e <= 1.0 + 1e-12, "{p}");
    }
    // At 1 GB/s the 64-chip blocks (3.2 GB over ~0.47 s of compute) are exposed.
    let v = json(&[
        "--arch",
        "ring-fusemax",
        "--seq",
        "1m",
        "--chips",
        "64",
        "--link-gb-s",
        "1",
    ]);
    let p = &v["points"][0];
    assert_eq!(p["hidden"], false, "{p}");
    assert_eq!(v["exposed_from"][0]["chips"], 64);
}

#[test]
fn scale_writes_its_plot_and_table() {
    let dir = std::env::temp_dir().join(format!("cascade-scale-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("dir");
    let svg = dir.join("scale.svg");
    let csv = dir.join("scale.csv");
    let (code, out, err) = run(&[
        "scale",
        "--arch",
        "ring-fusemax",
        "--seq",
        "256k..1m",
        "--chips",
        "1..256",
        "--plot",
        svg.to_str().unwrap(),
        "--out",
        csv.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("weak scaling (tokens per chip fixed)"),
        "{out}"
    );
    let text = fs::read_to_string(&svg).expect("svg");
    assert!(text.starts_with("<svg"), "{}", &text[..80.min(text.len())]);
    for part in [
        "parallel efficiency",
        "exposed communication",
        "energy per token",
    ] {
        assert!(text.contains(part), "{part}");
    }
    let table = fs::read_to_string(&csv).expect("csv");
    // Header and 3 lengths (256K, 512K, 1M) × 9 chip counts (1..256).
    assert_eq!(table.lines().count(), 1 + 3 * 9);
    fs::remove_dir_all(&dir).ok();
}

#[test]
fn scale_refuses_bad_ranges_and_systems() {
    let cases: [(&[&str], &str); 6] = [
        (
            &["--arch", "ring-fusemax", "--chips", "0..4"],
            "--chips `0..4`",
        ),
        (
            &["--arch", "ring-fusemax", "--chips", "1..100000"],
            "more than the limit of 65536 chips",
        ),
        (
            &["--arch", "ring-fusemax", "--seq", "10m..128k"],
            "give the smaller value first",
        ),
        (
            &["--arch", "ring-fusemax", "--chips", "1..1024:1000"],
            "more than the limit of 256",
        ),
        (&["--arch", "ring-tpu"], "ring-fusemax, splitk-fusemax"),
        (
            &["--arch", "ring-fusemax", "--link-gb-s", "0"],
            "`interconnect.link_gb_s`: is 0",
        ),
    ];
    for (args, expected) in cases {
        let mut all = vec!["scale"];
        all.extend_from_slice(args);
        let (code, _, err) = run(&all);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    // A system file's mistakes name the file and the field.
    let dir = std::env::temp_dir().join(format!("cascade-scale-bad-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("bad.toml");
    let text = cascade_scheduler::shipped::system("ring-fusemax")
        .unwrap()
        .replace("chips = 64", "chips = 64\nlanes = 4");
    fs::write(&path, text).expect("write");
    let (code, _, err) = run(&["scale", "--arch", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("bad.toml") && err.contains("unknown field `lanes`"),
        "{err}"
    );
    fs::remove_dir_all(&dir).ok();
}

/// Ulysses over 8 chips with BERT's 12 heads: the point is refused with the reason, the others
/// run.
#[test]
fn scale_reports_an_infeasible_point_with_its_reason() {
    let v = json(&[
        "--arch",
        "ulysses-fusemax",
        "--seq",
        "128k",
        "--chips",
        "4..8",
    ]);
    let points = v["points"].as_array().expect("points");
    assert!(points[0]["latency_s"].as_f64().is_some());
    let why = points[1]["infeasible"].as_str().expect("refused");
    assert!(why.contains("12 heads do not split over 8 chips"), "{why}");
}

/// `--engine events` executes the steps of 1 to 16 chips and lands within 5% of the model
/// (`sim/tests/system.rs` holds the engines to that on each system).
#[test]
fn scale_events_agree_with_the_model_on_small_systems() {
    let args = [
        "--arch",
        "tokenring-fusemax",
        "--seq",
        "64k",
        "--chips",
        "1..16",
    ];
    let model = json(&args);
    let mut with = args.to_vec();
    with.extend(["--engine", "events"]);
    let events = json(&with);
    let latency = |v: &serde_json::Value| -> Vec<f64> {
        v["points"]
            .as_array()
            .expect("points")
            .iter()
            .map(|p| p["latency_s"].as_f64().expect("feasible"))
            .collect()
    };
    let (m, e) = (latency(&model), latency(&events));
    assert_eq!(m.len(), 5);
    for (a, b) in m.iter().zip(&e) {
        assert!((a - b).abs() / a < 0.05, "model {a} s, events {b} s");
    }
    let (code, _, err) = run(&["scale", "--arch", "ring-fusemax", "--engine", "cycles"]);
    assert_eq!(code, 1);
    assert!(err.contains("--engine `cycles`"), "{err}");
}
