//! The whole pipeline from the CLI: a cascade derived by the rewriter flows through the
//! interpreter, the scheduler and simulator, and code generation exactly like its hand-written
//! counterpart.

use serde_json::Value;

use crate::support::{cascade, stderr, stdout};

fn json(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--format", "json"]);
    let out = cascade(&all);
    assert!(out.status.success(), "{all:?}: {}", stderr(&out));
    serde_json::from_str(&stdout(&out)).expect("JSON on stdout")
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// `cascade rewrite attention_3pass --objective passes` derives FuseMax's Cascade 5; the derived
/// file must be indistinguishable from the library's `attention_1pass` downstream.
#[test]
fn derived_one_pass_cascade_runs_the_whole_pipeline_like_cascade_5() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("pipeline");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let derived = dir.join("derived.cascade");
    let derived = derived.to_str().expect("utf-8 path");
    let out = cascade(&[
        "rewrite",
        "attention_3pass",
        "--objective",
        "passes",
        "--out",
        derived,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    // The interpreter agrees with the direct softmax(QᵀK)V on several tiles.
    let eval = json(&[
        "eval",
        derived,
        "--shape",
        "E=16,F=8,M=256,P=64",
        "--seed",
        "3",
    ]);
    assert_eq!(eval["reference"]["within_tolerance"], true, "{eval}");

    // One pass over M, as for the hand-written cascade.
    let passes = |c: &str| json(&["passes", c, "--rank", "M"])["passes"].as_u64();
    assert_eq!(passes(derived), Some(1));
    assert_eq!(passes(derived), passes("attention_1pass"));

    // Scheduled and simulated on FuseMax, it costs what Cascade 5 costs, point by point.
    let simulate = |c: &str| {
        json(&[
            "simulate",
            "--arch",
            "fusemax",
            "--workload",
            "bert",
            "--seq",
            "1k,64k",
            "--cascade",
            c,
        ])
    };
    let (got, want) = (simulate(derived), simulate("attention_1pass"));
    let (got, want) = (
        got["points"].as_array().expect("points"),
        want["points"].as_array().expect("points"),
    );
    assert_eq!(got.len(), 2);
    for (g, w) in got.iter().zip(want) {
        for key in ["/latency_cycles", "/energy_j", "/dram_bytes"] {
            let number = |v: &Value| v.pointer(key).and_then(Value::as_f64).expect(key);
            let (g, w) = (number(g), number(w));
            assert!(close(g, w), "{key}: derived {g} vs Cascade 5 {w}");
        }
    }

    // Code generation recognises it as the online-softmax structure and fuses it.
    let out_dir = dir.join("kernel");
    let _ = std::fs::remove_dir_all(&out_dir);
    let codegen = json(&[
        "codegen",
        derived,
        "--target",
        "cuda",
        "--out",
        out_dir.to_str().expect("utf-8"),
    ]);
    assert_eq!(codegen["fused"], true, "{codegen}");
    let source = std::fs::read_to_string(out_dir.join("cascade_attention_3pass_derived.cu"))
        .expect("kernel source, named after the derived cascade");
    assert!(
        source.contains("mma.sync.aligned.m16n8k16"),
        "tensor-core MMAs in the fused kernel"
    );
}
