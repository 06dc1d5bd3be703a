//! `cascade passes`: pass counts of the library (the FuseMax taxonomy), snapshots of the text
//! reports, and op counts evaluated at a shape.

use std::process::Command;

use cascade_ir::library;
use serde_json::Value;

fn cascade(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cascade"))
        .args(args)
        .output()
        .expect("runs");
    let text = |b: Vec<u8>| String::from_utf8(b).expect("utf-8");
    (
        out.status.code().unwrap_or(-1),
        text(out.stdout),
        text(out.stderr),
    )
}

fn passes_json(args: &[&str]) -> Value {
    let mut all = vec!["passes"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--format", "json"]);
    let (code, stdout, stderr) = cascade(&all);
    assert_eq!(code, 0, "{stderr}");
    serde_json::from_str(&stdout).expect("JSON")
}

#[test]
fn library_pass_counts() {
    let expected = [
        ("pedagogical_1", 2),
        ("pedagogical_2", 1),
        ("pedagogical_3", 1),
        ("attention_3pass", 3),
        ("attention_2pass_deferred", 2),
        ("attention_2pass_localmax", 2),
        ("attention_1pass", 1),
        ("attention_causal_1pass", 1),
        ("attention_window_3pass", 3),
        ("attention_masked_3pass", 3),
        ("attention_masked_1pass", 1),
        ("sigmoid_attention", 1),
        ("linear_attention", 1),
    ];
    assert_eq!(
        expected.len(),
        library::names().count(),
        "every library cascade is listed"
    );
    for (name, n) in expected {
        // The default rank is M, or K for the pedagogical cascades.
        let json = passes_json(&[name]);
        assert_eq!(json["passes"], n, "{name}");
        assert_eq!(
            json["barriers"].as_array().expect("list").len(),
            n - 1,
            "{name}: N-1 barriers"
        );
    }
}

#[test]
fn text_reports() {
    for name in library::names() {
        let (code, stdout, stderr) = cascade(&["passes", name]);
        assert_eq!(code, 0, "{stderr}");
        insta::assert_snapshot!(format!("passes_{name}"), stdout);
    }
}

#[test]
fn op_counts_evaluate_at_a_shape() {
    let json = passes_json(&["attention_1pass", "--shape", "E=64,F=64,M=1024,P=1024"]);
    let totals = &json["totals"];
    // BQK and SLNV: one MAC per (e|f, m, p).
    assert_eq!(totals["mac"]["count"], 2 * 64 * 1024 * 1024);
    assert_eq!(totals["mac"]["polynomial"], "E·M·P + F·M·P");
    // AV divides once per (f, p).
    assert_eq!(totals["div"]["count"], 64 * 1024);
    // M1 defaults to M / 64 tiles: LM and RM take one max per (m, p) and per (m1, p).
    assert_eq!(totals["max"]["count"], 1024 * 1024 + 16 * 1024);
}

#[test]
fn rank_choice() {
    let json = passes_json(&["attention_3pass", "--rank", "P"]);
    assert_eq!(json["passes"], 1);
    assert_eq!(json["passes_per_rank"]["M"], 3);
    let json = passes_json(&["attention_2pass_localmax", "--rank", "M"]);
    assert_eq!(json["family"], serde_json::json!(["M", "M1", "M0"]));
    assert_eq!(
        json["barriers"][0]["text"],
        "GM reduces M1 fully (pass 1) before PRM re-reads LM (pass 2)"
    );
    let (code, _, stderr) = cascade(&["passes", "attention_3pass", "--rank", "X"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("declares no rank X; its ranks are E F M P"),
        "{stderr}"
    );
}
