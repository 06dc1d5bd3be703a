//! Today's attention through the CLI: `cascade zoo` (text, JSON, CSV), `simulate` on the LLM
//! workloads in prefill and decode, a mapping file written by `--detail` and read back by
//! `--mapping`, and block masks from text and `.npy` files.

use std::fs;
use std::path::PathBuf;

use serde_json::Value;

use crate::support::{cascade, stderr, stdout};

fn run_ok(args: &[&str]) -> String {
    let out = cascade(args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

fn json(args: &[&str]) -> Value {
    serde_json::from_str(&run_ok(&[args, &["--format", "json"]].concat())).expect("JSON")
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("models")
        .join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

#[test]
fn zoo_covers_the_variants_in_every_format() {
    let v = json(&[
        "zoo",
        "--workload",
        "llama3-8b",
        "--seq",
        "8k",
        "--batch",
        "1",
    ]);
    let rows = v["points"].as_array().expect("points");
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["cascade"].as_str().unwrap())
        .collect();
    for needed in [
        "attention_1pass",
        "causal_kv_1pass",
        "window_kv_1pass",
        "sinks_window_kv_1pass",
        "gqa_causal_kv_1pass",
        "mqa_causal_kv_1pass",
        "mla_latent_causal_kv_1pass",
        "alibi_causal_kv_1pass",
        "gqa_softcap_causal_kv_1pass",
        "sigmoid_causal_kv",
        "softplus_causal_kv",
        "relu_causal_kv",
        "linear_attention",
        "linear_causal_state",
        "attention_2pass_localmax",
        "block_sparse_2pass",
    ] {
        assert!(names.contains(&needed), "{needed} missing from {names:?}");
    }
    // Two points (prefill and decode) per cascade, every one scheduled with finite numbers.
    let mut distinct = names.clone();
    distinct.dedup();
    assert_eq!(rows.len(), 2 * distinct.len());
    for r in rows {
        assert!(r["infeasible"].is_null(), "{r}");
        let latency = r["latency_s"].as_f64().unwrap();
        assert!(latency.is_finite() && latency > 0.0, "{r}");
        assert!(r["occupancy_array2d"].as_f64().unwrap() <= 1.0);
    }
    // The fused kernel column is the code generator's verdict: softmax attention fuses in its
    // 1-pass and 3-pass forms and with GQA; a running linear state takes the generic lowering.
    let fused = |c: &str| rows.iter().find(|r| r["cascade"] == c).unwrap()["fused_kernel"].clone();
    assert_eq!(fused("causal_kv_1pass"), true);
    assert_eq!(fused("attention_3pass"), true);
    assert_eq!(fused("gqa_causal_kv_1pass"), true);
    assert_eq!(fused("linear_causal_state"), false);
    // Decode is memory-bound; the latent MLA decode keeps the array busy.
    let decode = |c: &str| {
        rows.iter()
            .find(|r| r["cascade"] == c && r["model"].as_str().unwrap().contains("decode"))
            .unwrap()
            .clone()
    };
    assert_eq!(decode("gqa_causal_kv_1pass")["bound"], "memory");
    // CSV: the same rows, one record each, and the text table names its columns.
    let csv = run_ok(&[
        "zoo",
        "--workload",
        "llama3-8b",
        "--seq",
        "8k",
        "--batch",
        "1",
        "--format",
        "csv",
    ]);
    assert_eq!(csv.lines().count(), rows.len() + 1);
    assert!(csv.starts_with(
        "schema_version,cascade,model,seq,passes,ops,buffer_bytes,latency_s,latency_cycles,energy_j,"
    ));
    let text = run_ok(&["zoo", "--only", "gqa", "--seq", "8k", "--batch", "1"]);
    assert!(
        text.contains("| cascade") && text.contains("| util_array2d | occupancy_array2d |"),
        "{text}"
    );
}

#[test]
fn llm_workloads_simulate_in_prefill_and_decode() {
    let v = json(&[
        "simulate",
        "--arch",
        "fusemax",
        "--workloads",
        "llm",
        "--workload",
        "deepseek-v3",
        "--seq",
        "8k",
        "--batch",
        "4",
    ]);
    let points = v["points"].as_array().expect("points");
    assert_eq!(points.len(), 2);
    // Each point runs the cascade the workload names for it.
    assert_eq!(points[0]["cascade"], "causal_kv_1pass");
    assert_eq!(points[1]["cascade"], "mla_latent_causal_kv_1pass");
    assert_eq!(points[1]["model"], "DeepSeek-V3 decode b4");
    assert_eq!(v["cascade"], "each model's cascade");
    // A set without decode points says so.
    let out = cascade(&[
        "simulate",
        "--arch",
        "fusemax",
        "--workload",
        "bert",
        "--scenario",
        "decode",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no decode points"),
        "{}",
        stderr(&out)
    );
}

/// The mapping `simulate --detail` prints for one point.
fn detail_mapping(args: &[&str]) -> String {
    let text = run_ok(&[args, &["--detail"]].concat());
    let start = text
        .find("mapping (a file for --mapping):\n")
        .expect("the detail prints the mapping");
    text[start..].lines().skip(1).collect::<Vec<_>>().join("\n")
}

#[test]
fn a_printed_mapping_reproduces_its_schedule_and_edits_are_checked() {
    let dir = scratch("mapping");
    let point = [
        "simulate",
        "--arch",
        "fusemax",
        "--workload",
        "bert",
        "--seq",
        "64k",
        "--cascade",
        "attention_causal_1pass",
    ];
    let mapping = detail_mapping(&point);
    assert!(
        mapping.contains("[binding]\nBQK = \"array2d\""),
        "{mapping}"
    );
    assert!(
        mapping.contains("order = [\"p2\", \"m1\", \"p1\"]"),
        "{mapping}"
    );
    let file = dir.join("m.toml");
    fs::write(&file, &mapping).unwrap();
    let path = file.to_string_lossy().to_string();
    let base = json(&point);
    let again = json(&[&point[..], &["--mapping", &path]].concat());
    assert_eq!(
        base["points"][0]["latency_cycles"],
        again["points"][0]["latency_cycles"]
    );
    assert_eq!(
        base["points"][0]["energy_j"],
        again["points"][0]["energy_j"]
    );
    // Each query tile streaming the key tiles it needs itself: with the causal mask query tile
    // j reads key tiles 0..=j, Σ (j+1) = 256·257/2 = 32,896 K and V tiles per head, where the
    // proposed order shares each among 251 resident query tiles (251 + 256 = 507 tiles). A tile
    // pair is 2·256·64 words; Q is read and AV written once (64·64K words each).
    let own = mapping.replace(
        "order = [\"p2\", \"m1\", \"p1\"]",
        "order = [\"p2\", \"p1\", \"m1\"]",
    );
    fs::write(&file, &own).unwrap();
    let streamed = json(&[&point[..], &["--mapping", &path]].concat());
    let dram = |v: &Value| v["points"][0]["dram_bytes"].as_f64().unwrap();
    let (pair, q) = (2.0 * 256.0 * 64.0, 64.0 * 65536.0);
    let derived = (32896.0 * pair + 2.0 * q) / (507.0 * pair + 2.0 * q);
    let ratio = dram(&streamed) / dram(&base);
    assert!((ratio / derived - 1.0).abs() < 1e-9, "{ratio} vs {derived}");
    // Choices that cannot work are infeasible with the reason.
    for (from, to, reason) in [
        (
            "resident_query_tiles = 251",
            "resident_query_tiles = 4000",
            "buffer holds 251",
        ),
        (
            "key_tile = 256",
            "key_tile = 512",
            "does not fit the 256 rows",
        ),
        (
            "BQK = \"array2d\"",
            "BQK = \"array9d\"",
            "which fusemax does not have",
        ),
        (
            "order = [\"p2\", \"m1\", \"p1\"]",
            "order = [\"m1\", \"p2\", \"p1\"]",
            "is not one of",
        ),
    ] {
        assert!(mapping.contains(from), "{from}");
        fs::write(&file, mapping.replace(from, to)).unwrap();
        let v = json(&[&point[..], &["--mapping", &path]].concat());
        let why = v["points"][0]["infeasible"].as_str().unwrap_or_default();
        assert!(why.contains(reason), "{to}: {why}");
    }
    // A file with an unknown field or a bad value is the user's error.
    fs::write(&file, "[tiles]\nkey_tiles = 4\n").unwrap();
    let out = cascade(&[&point[..], &["--mapping", &path]].concat());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("unknown field `key_tiles`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn inputs_a_mapping_keeps_out_of_the_buffer_are_read_from_dram_per_tile() {
    let dir = scratch("bypass");
    let point = [
        "simulate",
        "--arch",
        "flat",
        "--workload",
        "bert",
        "--seq",
        "1k",
    ];
    let file = dir.join("m.toml");
    let path = file.to_string_lossy().to_string();
    let with = |text: &str| {
        fs::write(&file, text).unwrap();
        json(&[&point[..], &["--mapping", &path]].concat())
    };
    let dram = |v: &Value| v["points"][0]["dram_bytes"].as_f64().unwrap();
    let bypass = "[residency]\nQ = \"dram\"\nK = \"dram\"\nV = \"dram\"\n";
    let v = with(bypass);
    // BERT at 1K: 64 × 12 heads of 1,024 × 64 words each for Q, K, V and the output, in 256 ×
    // 256 tiles. Q is read once per key tile (4), K and V once per query tile (4), the output
    // written once: 13 head-sized transfers of 2-byte words.
    let head = 1024.0 * 64.0 * 2.0;
    let derived = 64.0 * 12.0 * head * (4.0 + 4.0 + 4.0 + 1.0);
    assert!(
        (dram(&v) / derived - 1.0).abs() < 1e-12,
        "{} vs {derived}",
        dram(&v)
    );
    // Kept in the buffer (the default), each input comes from DRAM once.
    let base = json(&point);
    assert!((dram(&base) / (64.0 * 12.0 * head * 4.0) - 1.0).abs() < 1e-12);
    // The printed mapping says so and reproduces the schedule.
    let mapping = detail_mapping(&[&point[..], &["--mapping", &path]].concat());
    assert!(mapping.contains("Q = \"dram\""), "{mapping}");
    let again = with(&mapping);
    assert_eq!(dram(&again), dram(&v));
    // Only inputs and pass-crossing tensors have a place to choose.
    let v = with("[residency]\nGM = \"dram\"\n");
    let why = v["points"][0]["infeasible"].as_str().unwrap_or_default();
    assert!(why.contains("neither an input"), "{why}");
}

/// A 2-D `.npy` of float64, written by hand: the format's magic, version 1.0, a header and the
/// data in C order.
fn npy(shape: (usize, usize), values: &[f64]) -> Vec<u8> {
    let mut header = format!(
        "{{'descr': '<f8', 'fortran_order': False, 'shape': ({}, {}), }}",
        shape.0, shape.1
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    for v in values {
        out.extend(v.to_le_bytes());
    }
    out
}

#[test]
fn block_masks_from_text_and_npy_skip_their_blocks() {
    let dir = scratch("masks");
    // BERT at 4K: 16 × 16 blocks of 256 keys × 256 queries; global first key block plus the
    // diagonal: 31 blocks attend.
    let text: String = (0..16)
        .map(|kb| {
            let row: String = (0..16)
                .map(|qb| if kb == 0 || kb == qb { '1' } else { '.' })
                .collect();
            format!("{row}\n")
        })
        .collect();
    let txt = dir.join("bigbird.txt");
    fs::write(&txt, format!("// key blocks × query blocks\n{text}")).unwrap();
    let values: Vec<f64> = (0..16)
        .flat_map(|kb| (0..16).map(move |qb| f64::from(u8::from(kb == 0 || kb == qb))))
        .collect();
    let npy_path = dir.join("bigbird.npy");
    fs::write(&npy_path, npy((16, 16), &values)).unwrap();
    let point = [
        "simulate",
        "--arch",
        "fusemax",
        "--workload",
        "bert",
        "--seq",
        "4k",
        "--cascade",
        "block_sparse_2pass",
    ];
    let dense = json(&point);
    let tiles = |v: &Value| {
        v["points"][0]["phases"][0]["tiles"]["slots_run"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(tiles(&dense), 256);
    for file in [&txt, &npy_path] {
        let arg = format!("BM={}", file.display());
        let sparse = json(&[&point[..], &["--block-mask", &arg]].concat());
        assert_eq!(tiles(&sparse), 31, "{}", file.display());
    }
    // A bitmap with a ragged line is the user's error.
    fs::write(&txt, "11\n1\n").unwrap();
    let arg = format!("BM={}", txt.display());
    let out = cascade(&[&point[..], &["--block-mask", &arg]].concat());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("one entry per query block"),
        "{}",
        stderr(&out)
    );
}
