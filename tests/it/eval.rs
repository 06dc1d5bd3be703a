//! `cascade eval`: checksums and reference errors of the interpreter run from the CLI, checked
//! against the direct references of `cascade_ir::reference` computed here on the same inputs,
//! and which cascades get a reference (by structure, never by name). `files` tests `--inputs`
//! and `--dump`.

mod files;

use crate::support::run as cascade;

use cascade_ir::reference::{self, Form};
use cascade_ir::{Shape, dsl, library};
use serde_json::Value;

fn eval_json(args: &[&str]) -> Value {
    let mut all = vec!["eval"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--format", "json"]);
    let (code, stdout, stderr) = cascade(&all);
    assert_eq!(code, 0, "{stderr}");
    serde_json::from_str(&stdout).expect("JSON on stdout")
}

/// Sum, sum of squares and max |x| of the direct reference on the CLI's seeded inputs.
fn reference_checksums(name: &str, shape: &str, seed: u64) -> (f64, f64, f64) {
    let c = dsl::parse(library::source(name).expect("library"), name)
        .expect("parses")
        .cascade;
    let shape = Shape::resolve(&c, &shape.parse().expect("spec")).expect("shape");
    let inputs = reference::random_inputs(&c, &shape, seed);
    let form = Form::of_library(name).expect("known form");
    let want = reference::compute(form, &c, &shape, &inputs).expect("reference");
    let sum = want.iter().sum();
    let sum_sq = want.iter().map(|x| x * x).sum();
    let max = want.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    (sum, sum_sq, max)
}

fn close(got: &Value, want: f64, scale: f64, tol: f64) -> bool {
    let got = got.as_f64().expect("number");
    (got - want).abs() <= tol * (want.abs() + scale)
}

const CASES: &[(&str, &str)] = &[
    ("attention_3pass", "E=4,F=3,M=12,P=5"),
    ("attention_2pass_deferred", "E=4,F=3,M=12,P=5"),
    ("attention_2pass_localmax", "E=4,F=3,M=12,P=5,M0=4"),
    ("attention_1pass", "E=4,F=3,M=12,P=5,M0=3"),
    ("attention_causal_1pass", "E=4,F=3,M=12,P=5,M0=4"),
    ("attention_window_3pass", "E=4,F=3,M=12,P=5,W=3"),
    ("attention_masked_3pass", "E=4,F=3,M=12,P=5"),
    ("attention_masked_1pass", "E=4,F=3,M=12,P=5,M0=6"),
    ("linear_attention", "E=4,F=3,M=12,P=5"),
    ("sigmoid_attention", "E=4,F=3,M=12,P=5"),
    ("pedagogical_1", "K=9"),
    ("pedagogical_2", "K=9"),
    ("pedagogical_3", "K=9"),
];

#[test]
fn f64_checksums_match_the_direct_reference() {
    assert_eq!(
        CASES.len(),
        library::names().count(),
        "every library cascade is covered"
    );
    for &(name, shape) in CASES {
        let json = eval_json(&[name, "--shape", shape, "--seed", "5"]);
        let (sum, sum_sq, max) = reference_checksums(name, shape, 5);
        let out = &json["outputs"][0];
        let n = out["dims"]
            .as_array()
            .expect("dims")
            .iter()
            .map(|d| d.as_f64().expect("n"))
            .product::<f64>();
        assert!(
            close(&out["sum"], sum, n * max, 1e-10),
            "{name}: sum {} vs {sum}",
            out["sum"]
        );
        assert!(
            close(&out["sum_of_squares"], sum_sq, n * max * max, 1e-10),
            "{name}: sum of squares"
        );
        assert!(close(&out["max_abs"], max, max, 1e-10), "{name}: max abs");
        let r = &json["reference"];
        assert_eq!(r["library"], name, "{name}: recognised");
        assert_eq!(r["recognised_by"], "structure");
        assert!(
            r["max_rel_error"].as_f64().expect("error") < 1e-12,
            "{name}: {r}"
        );
        assert_eq!(r["within_tolerance"], true);
        assert_eq!((&out["nan"], &out["inf"]), (&0.into(), &0.into()), "{name}");
        assert_eq!(json["ok"], true);
    }
}

#[test]
fn f32_runs_in_single_precision_within_its_tolerance() {
    let json = eval_json(&[
        "attention_1pass",
        "--shape",
        "E=16,F=8,M=64,P=8",
        "--dtype",
        "f32",
    ]);
    let err = json["reference"]["max_rel_error"].as_f64().expect("error");
    // Single precision leaves a visible but small error (f32 epsilon is 1.2e-7).
    assert!(err > 1e-12 && err < 1e-4, "f32 relative error {err}");
    assert_eq!(json["dtype"], "f32");
    assert_eq!(json["reference"]["tolerance"], 1e-4);
}

#[test]
fn seeds_are_deterministic_and_distinct() {
    let run = |seed: &str| {
        eval_json(&[
            "attention_3pass",
            "--shape",
            "E=2,F=2,M=4,P=3",
            "--seed",
            seed,
        ])
    };
    assert_eq!(run("1")["outputs"], run("1")["outputs"]);
    assert_ne!(run("1")["outputs"][0]["sum"], run("2")["outputs"][0]["sum"]);
}

fn write_cascade(file: &str, text: &str) -> String {
    let path = format!("{}/{file}", env!("CARGO_TARGET_TMPDIR"));
    std::fs::write(&path, text).expect("write");
    path
}

#[test]
fn a_renamed_library_cascade_is_recognised_by_structure() {
    // Cascade, tensor and rank names all differ from the library file's.
    let source = library::source("attention_3pass").expect("library");
    let renamed = source
        .replace("cascade attention_3pass", "cascade my_attention")
        .replace("ranks E F M P", "ranks D F N P")
        .replace("E,", "D,")
        .replace("[e,", "[d,")
        .replace(",M]", ",N]")
        .replace("[m,", "[n,")
        .replace(",m]", ",n]")
        .replace("max(m)", "max(n)")
        .replace("Q[", "QUERY[")
        .replace("AV", "OUT");
    assert!(
        !renamed.contains("M]") && !renamed.contains("AV"),
        "{renamed}"
    );
    let path = write_cascade("my_attention.cascade", &renamed);
    let json = eval_json(&[&path, "--shape", "D=3,F=2,N=6,P=4"]);
    assert_eq!(json["cascade"], "my_attention");
    assert_eq!(json["ok"], true);
    let r = &json["reference"];
    assert_eq!(r["library"], "attention_3pass");
    assert_eq!(r["within_tolerance"], true);
    assert_eq!(r["roles"]["QUERY"], "Q");
    assert_eq!(r["roles"]["OUT"], "AV");
    assert!(r["max_rel_error"].as_f64().expect("error") < 1e-12, "{r}");
    let (code, stdout, _) = cascade(&["eval", &path, "--shape", "D=3,F=2,N=6,P=4"]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("reference: softmax(QᵀK)V (structurally library attention_3pass)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  tensors         OUT is AV, QUERY is Q\n"),
        "{stdout}"
    );
}

/// The example: a copy of attention_3pass with a 1/sqrt(E) scale, under the library's
/// own name, used to be compared with the unscaled reference, print `within 1e-10: NO` and
/// exit 0 with `"ok": true`.
#[test]
fn an_edited_copy_under_a_library_name_gets_no_reference() {
    let source = library::source("attention_3pass").expect("library");
    let scaled = source.replace(
        "QK[m,p] = Q[e,p] * K[e,m]",
        "QK[m,p] = Q[e,p] * K[e,m] * 1/sqrt(E)",
    );
    assert_ne!(scaled, source);
    for (file, text) in [
        ("scaled_same_name.cascade", scaled.clone()),
        (
            "scaled_renamed.cascade",
            scaled.replace("cascade attention_3pass", "cascade scaled"),
        ),
    ] {
        let path = write_cascade(file, &text);
        let (code, stdout, stderr) = cascade(&["eval", &path, "--shape", "E=4,F=3,M=12,P=5"]);
        assert_eq!(code, 0, "{file}: {stderr}");
        assert!(
            stdout.contains(
                "reference: none applies (not structurally a library form; check it yourself with --inputs/--dump)"
            ),
            "{file}: {stdout}"
        );
        assert!(!stdout.contains("within"), "{stdout}");
        let json = eval_json(&[&path, "--shape", "E=4,F=3,M=12,P=5"]);
        assert_eq!(json["ok"], true);
        assert!(json["reference"]["form"].is_null());
        assert!(
            json["reference"]["reason"]
                .as_str()
                .expect("reason")
                .contains("not structurally a library form"),
            "{json}"
        );
    }
}

/// `cascade rewrite` names its output `<input>_derived`; it gets a reference only when it is
/// structurally a library form (here FuseMax's Cascade 5, up to Einsum order and `a + b`).
#[test]
fn a_derived_cascade_is_checked_against_the_form_it_matches() {
    let path = format!("{}/derived_1pass.cascade", env!("CARGO_TARGET_TMPDIR"));
    let (code, _, stderr) = cascade(&[
        "rewrite",
        "attention_3pass",
        "--objective",
        "passes",
        "--out",
        &path,
    ]);
    assert_eq!(code, 0, "{stderr}");
    let json = eval_json(&[&path, "--shape", "E=4,F=3,M=12,P=5,M0=4"]);
    assert_eq!(json["cascade"], "attention_3pass_derived");
    assert_eq!(json["reference"]["library"], "attention_1pass");
    assert_eq!(json["reference"]["within_tolerance"], true);
}

#[test]
fn other_cascades_get_checksums_without_a_reference() {
    let dir = env!("CARGO_TARGET_TMPDIR");
    let path = format!("{dir}/total.cascade");
    std::fs::write(
        &path,
        "cascade total\nranks K\ninput A[K]\nS = A[k]\noutput S\n",
    )
    .expect("write");
    let json = eval_json(&[&path, "--shape", "K=7", "--seed", "9"]);
    assert!(json["reference"]["form"].is_null());
    assert_eq!(json["ok"], true);
    // The sum of the seeded inputs, drawn here with the same generator.
    let c = dsl::parse(
        "cascade total\nranks K\ninput A[K]\nS = A[k]\noutput S\n",
        "t",
    )
    .expect("p")
    .cascade;
    let shape = Shape::resolve(&c, &"K=7".parse().expect("spec")).expect("shape");
    let want: f64 = reference::random_inputs(&c, &shape, 9)["A"].iter().sum();
    assert!(close(&json["outputs"][0]["sum"], want, 7.0, 1e-12));
}

#[test]
fn bad_shapes_and_bad_index_arithmetic_are_user_errors() {
    let (code, _, stderr) = cascade(&[
        "eval",
        "attention_window_3pass",
        "--shape",
        "E=2,F=2,M=4,P=4",
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("rank W has no size: add W=N to the shape"),
        "{stderr}"
    );
    let (code, _, stderr) = cascade(&["eval", "attention_3pass", "--shape", "E=2,F=2,M=4,P=4,Z=3"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("Z, which this cascade does not declare"),
        "{stderr}"
    );

    let dir = env!("CARGO_TARGET_TMPDIR");
    let path = format!("{dir}/shift.cascade");
    std::fs::write(
        &path,
        "cascade shift\nranks I\ninput A[I]\nB[i] = A[i+1]\noutput B\n",
    )
    .expect("write");
    let (code, _, stderr) = cascade(&["eval", &path, "--shape", "I=3"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("index 3 of A at position 0 is outside 0..3"),
        "{stderr}"
    );
}
