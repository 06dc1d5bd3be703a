//! `cascade eval --inputs DIR` and `--dump DIR [--all]`: `.npy` files written here by a small
//! writer of this module (independent of the binary's codec), evaluated by the CLI and compared
//! with computations done here; round trips; NaN and inf reports; every bad input file.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::run as cascade;

/// A fresh, empty directory for one test.
fn fresh_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("eval-files")
        .join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("test dir");
    dir
}

fn text(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// An NPY 1.0 file: magic, version, header length, dict padded to 64 bytes, data.
fn npy_bytes(descr: &str, fortran: bool, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(ToString::to_string).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let order = if fortran { "True" } else { "False" };
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape}, }}");
    while (10 + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&u16::try_from(dict.len()).expect("short").to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend_from_slice(data);
    out
}

fn f64_bytes(values: &[f64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Writes `dir/name.npy` holding `values` (C order) as float64.
fn save(dir: &Path, name: &str, shape: &[usize], values: &[f64]) {
    assert_eq!(shape.iter().product::<usize>(), values.len());
    let bytes = npy_bytes("<f8", false, shape, &f64_bytes(values));
    fs::write(dir.join(format!("{name}.npy")), bytes).expect("write npy");
}

/// Reads a C-order NPY file of `<f8`, `<f4` or `|b1` written by the CLI: (shape, values).
fn load(path: &Path) -> (Vec<usize>, Vec<f64>) {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00", "{}", path.display());
    let len = usize::from(u16::from_le_bytes([bytes[8], bytes[9]]));
    let header = std::str::from_utf8(&bytes[10..10 + len]).expect("text header");
    assert_eq!((10 + len) % 64, 0, "aligned header");
    assert!(header.contains("'fortran_order': False"), "{header}");
    let inside = &header[header.find("'shape': (").expect("shape") + 10..];
    let shape: Vec<usize> = inside[..inside.find(')').expect(")")]
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse().expect("dim"))
        .collect();
    let data = &bytes[10 + len..];
    let values: Vec<f64> = if header.contains("'<f8'") {
        data.chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8")))
            .collect()
    } else if header.contains("'<f4'") {
        data.chunks_exact(4)
            .map(|c| f64::from(f32::from_le_bytes(c.try_into().expect("4"))))
            .collect()
    } else {
        assert!(header.contains("'|b1'"), "{header}");
        data.iter().map(|b| f64::from(*b)).collect()
    };
    assert_eq!(values.len(), shape.iter().product::<usize>(), "{header}");
    (shape, values)
}

fn eval(args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["eval"];
    all.extend_from_slice(args);
    cascade(&all)
}

fn eval_json(args: &[&str]) -> (i32, Value, String) {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--format", "json"]);
    let (code, stdout, stderr) = eval(&all);
    let json = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}{stderr}"));
    (code, json, stderr)
}

const SHAPE: &str = "E=4,F=3,M=6,P=5";

/// Q[E,P], K[E,M] and V[F,M] for `SHAPE`, from simple formulas (row-major values).
fn qkv() -> [(&'static str, Vec<usize>, Vec<f64>); 3] {
    let grid = |rows: usize, cols: usize, f: &dyn Fn(usize, usize) -> f64| {
        let values = (0..rows * cols).map(|i| f(i / cols, i % cols)).collect();
        (vec![rows, cols], values)
    };
    let (q_shape, q) = grid(4, 5, &|e, p| (e as f64 - p as f64) * 0.25);
    let (k_shape, k) = grid(4, 6, &|e, m| ((e * m) % 5) as f64 * 0.3 - 0.5);
    let (v_shape, v) = grid(3, 6, &|f, m| f as f64 + 0.1 * m as f64);
    [("Q", q_shape, q), ("K", k_shape, k), ("V", v_shape, v)]
}

/// softmax over keys of QᵀK, times V, written out here loop by loop: AV[f,p], row-major.
fn attention_here(q: &[f64], k: &[f64], v: &[f64]) -> Vec<f64> {
    let (n_e, n_f, n_m, n_p) = (4, 3, 6, 5);
    let mut out = vec![0.0; n_f * n_p];
    for p in 0..n_p {
        let scores: Vec<f64> = (0..n_m)
            .map(|m| (0..n_e).map(|e| q[e * n_p + p] * k[e * n_m + m]).sum())
            .collect();
        let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
        let total: f64 = weights.iter().sum();
        for f in 0..n_f {
            let num: f64 = (0..n_m).map(|m| weights[m] * v[f * n_m + m]).sum();
            out[f * n_p + p] = num / total;
        }
    }
    out
}

#[test]
fn user_inputs_give_the_attention_computed_here() {
    let dir = fresh_dir("user_inputs");
    let (inputs, out) = (dir.join("in"), dir.join("out"));
    fs::create_dir_all(&inputs).expect("dir");
    let [q, k, v] = qkv();
    for (name, shape, values) in [&q, &k, &v] {
        save(&inputs, name, shape, values);
    }
    let (code, json, stderr) = eval_json(&[
        "attention_3pass",
        "--shape",
        SHAPE,
        "--inputs",
        text(&inputs),
        "--dump",
        text(&out),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(json["seed"], Value::Null);
    assert_eq!(json["inputs_dir"], text(&inputs));
    assert_eq!(json["reference"]["within_tolerance"], true);
    let (shape, got) = load(&out.join("AV.npy"));
    assert_eq!(shape, [3, 5]);
    let want = attention_here(&q.2, &k.2, &v.2);
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() < 1e-12, "{g} vs {w}");
    }
    let (_, present) = load(&out.join("AV.present.npy"));
    assert!(present.iter().all(|p| *p == 1.0));
    // Only the output is written without --all.
    let mut files: Vec<String> = fs::read_dir(&out)
        .expect("out")
        .map(|e| e.expect("entry").file_name().into_string().expect("name"))
        .collect();
    files.sort();
    assert_eq!(files, ["AV.npy", "AV.present.npy"]);
    let dumped = &json["dump"]["tensors"][0];
    assert_eq!(dumped["file"], "AV.npy");
    assert_eq!(dumped["present"], 15);
}

#[test]
fn f32_inputs_and_f32_dumps() {
    let dir = fresh_dir("f32");
    let (inputs, out) = (dir.join("in"), dir.join("out"));
    fs::create_dir_all(&inputs).expect("dir");
    let [q, k, v] = qkv();
    for (name, shape, values) in [&q, &k, &v] {
        let data: Vec<u8> = values
            .iter()
            .flat_map(|x| (*x as f32).to_le_bytes())
            .collect();
        let bytes = npy_bytes("<f4", false, shape, &data);
        fs::write(inputs.join(format!("{name}.npy")), bytes).expect("write");
    }
    let (code, json, stderr) = eval_json(&[
        "attention_3pass",
        "--shape",
        SHAPE,
        "--inputs",
        text(&inputs),
        "--dump",
        text(&out),
        "--dtype",
        "f32",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let bytes = fs::read(out.join("AV.npy")).expect("AV");
    assert!(String::from_utf8_lossy(&bytes[..64]).contains("'<f4'"));
    let (_, got) = load(&out.join("AV.npy"));
    let round = |x: &Vec<f64>| x.iter().map(|v| f64::from(*v as f32)).collect::<Vec<_>>();
    let want = attention_here(&round(&q.2), &round(&k.2), &round(&v.2));
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() < 1e-5, "{g} vs {w}");
    }
    assert_eq!(json["reference"]["within_tolerance"], true);
}

#[test]
fn dumped_inputs_read_back_give_identical_tensors() {
    let dir = fresh_dir("round_trip");
    for (name, shape) in [
        ("attention_1pass", "E=4,F=3,M=12,P=5,M0=4"),
        ("attention_window_3pass", "E=2,F=2,M=6,P=6,W=2"),
    ] {
        let (first, second) = (dir.join(name).join("first"), dir.join(name).join("second"));
        let (code, json1, stderr) = eval_json(&[
            name,
            "--shape",
            shape,
            "--seed",
            "11",
            "--dump",
            text(&first),
            "--all",
        ]);
        assert_eq!(code, 0, "{stderr}");
        // The dump holds intermediates and presence files too: read back silently.
        let (code, json2, stderr) = eval_json(&[
            name,
            "--shape",
            shape,
            "--inputs",
            text(&first),
            "--dump",
            text(&second),
            "--all",
        ]);
        assert_eq!(code, 0, "{stderr}");
        assert!(stderr.is_empty(), "{stderr}");
        assert_eq!(json2["ignored_files"], Value::Array(Vec::new()));
        assert_eq!(json1["outputs"], json2["outputs"], "{name}");
        let tensors = json1["dump"]["tensors"].as_array().expect("tensors");
        assert!(tensors.len() > 5, "{name}: every tensor is dumped");
        if name == "attention_1pass" {
            // Iterative state at its |M1|+1 extent, as the interpreter stores it.
            let rm = tensors.iter().find(|t| t["tensor"] == "RM").expect("RM");
            assert_eq!(rm["dims"], serde_json::json!([4, 5]));
            assert_eq!(load(&first.join("RM.npy")).0, [4, 5]);
        }
        for t in tensors {
            for key in ["file", "present_file"] {
                let Some(file) = t[key].as_str() else {
                    continue;
                };
                let a = fs::read(first.join(file)).expect("first");
                let b = fs::read(second.join(file)).expect("second");
                assert!(a == b, "{name}: {file} differs");
            }
        }
        let entries: Vec<String> = fs::read_dir(&second)
            .expect("dir")
            .map(|e| e.expect("entry").file_name().into_string().expect("name"))
            .collect();
        assert!(
            entries.iter().all(|e| !e.starts_with('.')),
            "no temporary file is left: {entries:?}"
        );
    }
}

#[test]
fn absent_points_are_zero_and_marked_in_the_presence_file() {
    let dir = fresh_dir("presence");
    let (code, json, stderr) = eval_json(&[
        "attention_window_3pass",
        "--shape",
        "E=2,F=2,M=6,P=6,W=2",
        "--dump",
        text(&dir),
        "--all",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let qk = json["dump"]["tensors"]
        .as_array()
        .expect("tensors")
        .iter()
        .find(|t| t["tensor"] == "QK")
        .expect("QK dumped")
        .clone();
    let (shape, values) = load(&dir.join("QK.npy"));
    let (_, present) = load(&dir.join("QK.present.npy"));
    assert_eq!(shape, [6, 6]);
    // Key m is visible to query p when m <= p and p - m < 2: 6 + 5 points.
    assert_eq!(present.iter().filter(|p| **p == 1.0).count(), 11);
    assert_eq!(qk["present"], 11);
    for (m, row) in present.chunks(6).enumerate() {
        for (p, here) in row.iter().enumerate() {
            assert_eq!(*here == 1.0, m <= p && p - m < 2, "QK[{m},{p}]");
            if *here == 0.0 {
                assert_eq!(values[m * 6 + p], 0.0);
            }
        }
    }
    // Inputs are present everywhere: no presence file.
    assert!(!dir.join("Q.present.npy").exists());
}

#[test]
fn a_second_dump_replaces_the_files_of_the_first() {
    let dir = fresh_dir("overwrite");
    let run = |seed: &str| {
        let (code, _, stderr) = eval(&[
            "attention_3pass",
            "--shape",
            SHAPE,
            "--seed",
            seed,
            "--dump",
            text(&dir),
        ]);
        assert_eq!(code, 0, "{stderr}");
        fs::read(dir.join("AV.npy")).expect("AV")
    };
    assert_ne!(run("1"), run("2"));
    assert_eq!(run("2"), fs::read(dir.join("AV.npy")).expect("AV"));
}

#[test]
fn a_failed_evaluation_writes_nothing() {
    let dir = fresh_dir("failed");
    let cascade_file = dir.join("shift.cascade");
    fs::write(
        &cascade_file,
        "cascade shift\nranks I\ninput A[I]\nB[i] = A[i+1]\noutput B\n",
    )
    .expect("write");
    let out = dir.join("out");
    let (code, _, stderr) = eval(&[text(&cascade_file), "--shape", "I=3", "--dump", text(&out)]);
    assert_eq!(code, 1, "{stderr}");
    assert!(!out.exists());
}

const PRODUCT: &str = "cascade product\nranks P\ninput X[P] Z[P]\nY[p] = X[p] * Z[p]\nW[p] = X[p] / Z[p]\noutput Y W\n";

#[test]
fn nan_and_inf_in_outputs_are_reported_not_hidden() {
    let dir = fresh_dir("non_finite");
    let file = dir.join("product.cascade");
    fs::write(&file, PRODUCT).expect("write");
    let inputs = dir.join("in");
    fs::create_dir_all(&inputs).expect("dir");
    // Y = X·Z = [NaN, 2, -0, 0]; W = X/Z = [inf, 0.5, -inf, 0] (0/0 is 0 in cascades).
    save(&inputs, "X", &[4], &[f64::INFINITY, 1.0, -1.0, 0.0]);
    save(&inputs, "Z", &[4], &[0.0, 2.0, 0.0, 0.0]);
    let out = dir.join("out");
    let args = [
        text(&file),
        "--shape",
        "P=4",
        "--inputs",
        text(&inputs),
        "--dump",
        text(&out),
    ];
    let (code, stdout, stderr) = eval(&args);
    assert_eq!(code, 0, "no reference applies: {stderr}");
    assert!(stdout.contains("  max |x|         NaN"), "{stdout}");
    assert!(
        stdout.contains("  non-finite      1 NaN, 0 inf"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  non-finite      0 NaN, 2 inf"),
        "{stdout}"
    );
    assert!(
        stdout.contains("non-finite 1 NaN, 0 inf"),
        "dump line: {stdout}"
    );
    let (code, json, _) = eval_json(&args);
    assert_eq!(code, 0);
    let (y, w) = (&json["outputs"][0], &json["outputs"][1]);
    assert_eq!(
        (&y["name"], &y["nan"], &y["inf"]),
        (&"Y".into(), &1.into(), &0.into())
    );
    // JSON has no NaN: it is written as a string, never silently as null.
    assert_eq!(y["max_abs"], "NaN");
    assert_eq!(y["sum"], "NaN");
    assert_eq!((&w["nan"], &w["inf"]), (&0.into(), &2.into()));
    assert_eq!(json["dump"]["tensors"][1]["inf"], 2);
    let (_, dumped) = load(&dir.join("out/W.npy"));
    assert_eq!(dumped, [f64::INFINITY, 0.5, f64::NEG_INFINITY, 0.0]);
}

/// A real mismatch: in f32, 1e8 + 1 rounds to 1e8, so Σ A·B for A = 1, B = (1e8, 1, -1e8)
/// is 0, not 1, and Z = 0, not 3.
#[test]
fn a_result_its_reference_refutes_exits_1_with_ok_false() {
    let dir = fresh_dir("refuted");
    save(&dir, "A", &[3], &[1.0, 1.0, 1.0]);
    save(&dir, "B", &[3], &[1e8, 1.0, -1e8]);
    let args = [
        "pedagogical_1",
        "--shape",
        "K=3",
        "--inputs",
        text(&dir),
        "--dtype",
        "f32",
    ];
    let (code, json, stderr) = eval_json(&args);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(json["ok"], false);
    let r = &json["reference"];
    assert_eq!(r["within_tolerance"], false);
    assert_eq!(r["max_abs_error"], 3.0);
    assert_eq!(json["outputs"][0]["sum"], 0.0);
    assert!(stderr.contains("outside the tolerance"), "{stderr}");
    let (code, stdout, stderr) = eval(&args);
    assert_eq!(code, 1);
    assert!(stdout.contains("  within 1e-4: NO"), "{stdout}");
    assert!(
        stderr.contains("error: output Z is outside the tolerance (1.000e0 max rel error > 1e-4)"),
        "{stderr}"
    );
    // The same inputs in f64 are exact.
    let (code, json, _) = eval_json(&args[..5]);
    assert_eq!((code, &json["ok"]), (0, &Value::Bool(true)));
}

/// Another real mismatch: A·B = 1e40 overflows f32 to inf, while the f64 reference is 4e60.
#[test]
fn an_f32_overflow_against_a_finite_reference_is_a_failure() {
    let dir = fresh_dir("overflow");
    save(&dir, "A", &[2], &[1e20, 1e20]);
    save(&dir, "B", &[2], &[1e20, 1e20]);
    let args = [
        "pedagogical_1",
        "--shape",
        "K=2",
        "--inputs",
        text(&dir),
        "--dtype",
        "f32",
    ];
    let (code, json, stderr) = eval_json(&args);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(json["ok"], false);
    assert_eq!(json["outputs"][0]["inf"], 1);
    assert_eq!(json["reference"]["reference_max_abs"], 4e60);
    // JSON has no inf: it is written as a string, never silently as null.
    assert_eq!(json["reference"]["max_abs_error"], "inf");
    let (code, stdout, _) = eval(&args);
    assert_eq!(code, 1);
    assert!(
        stdout.contains("  non-finite      0 NaN, 1 inf"),
        "{stdout}"
    );
    assert!(stdout.contains("  max abs error   inf"), "{stdout}");
}

#[test]
fn nan_in_an_output_with_a_reference_is_a_failure() {
    let dir = fresh_dir("nan_output");
    let [q, k, mut v] = qkv();
    // inf and -inf in one row of V: every weighted sum of that row is NaN.
    v.2[0] = f64::INFINITY;
    v.2[1] = f64::NEG_INFINITY;
    for (name, shape, values) in [&q, &k, &v] {
        save(&dir, name, shape, values);
    }
    let args = ["attention_3pass", "--shape", SHAPE, "--inputs", text(&dir)];
    let (code, json, stderr) = eval_json(&args);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(json["ok"], false);
    assert_eq!(json["outputs"][0]["nan"], 5);
    assert_eq!(json["reference"]["output_nan"], 5);
    assert!(stderr.contains("output AV holds 5 NaN"), "{stderr}");
}

/// Runs eval on `dir` as the inputs of attention_3pass: (exit code, stderr).
fn eval_inputs(dir: &Path) -> (i32, String) {
    let (code, stdout, stderr) =
        eval(&["attention_3pass", "--shape", SHAPE, "--inputs", text(dir)]);
    assert!(stdout.is_empty(), "{stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    (code, stderr)
}

/// A directory holding the right Q, K and V, then `edit` applied to it.
fn inputs_with(name: &str, edit: &dyn Fn(&Path)) -> PathBuf {
    let dir = fresh_dir(name);
    for (name, shape, values) in qkv() {
        save(&dir, name, &shape, &values);
    }
    edit(&dir);
    dir
}

/// A test name, how to spoil the good inputs, and what the error must say.
type BadCase<'a> = (&'a str, Box<dyn Fn(&Path) + 'a>, &'a [&'a str]);

#[test]
fn bad_input_files_name_the_file_and_the_fix() {
    let q_shape = [4, 5];
    let q_values = vec![0.5; 20];
    let cases: [BadCase; 8] = [
        (
            "oversized",
            Box::new(|d| fs::write(d.join("Q.npy"), vec![0u8; (1 << 20) + 4096]).expect("w")),
            &["Q.npy: holds 1052672 bytes, far more than input Q[E,P] of shape (4, 5) can fill"],
        ),
        (
            "bad_magic",
            Box::new(|d| fs::write(d.join("Q.npy"), "Q,K,V\n1,2,3\n").expect("w")),
            &["Q.npy: not an NPY file", "write it with numpy.save"],
        ),
        (
            "truncated",
            Box::new(|d| {
                let bytes = npy_bytes("<f8", false, &q_shape, &f64_bytes(&q_values));
                fs::write(d.join("Q.npy"), &bytes[..bytes.len() - 8]).expect("w");
            }),
            &[
                "Q.npy: its header says shape (4, 5) of '<f8'",
                "152 bytes follow",
                "truncated",
            ],
        ),
        (
            "int_dtype",
            Box::new(|d| {
                let data: Vec<u8> = (0..20i64).flat_map(i64::to_le_bytes).collect();
                fs::write(d.join("Q.npy"), npy_bytes("<i8", false, &q_shape, &data)).expect("w");
            }),
            &["Q.npy: its dtype is '<i8'", ".astype(numpy.float64)"],
        ),
        (
            "transposed",
            Box::new(|d| save(d, "Q", &[5, 4], &[0.5; 20])),
            &[
                "Q.npy: input Q[E,P] has shape (4, 5) with --shape E=4,F=3,M=6,P=5, but the file holds shape (5, 4)",
                "save an array of shape (4, 5) (dims in the declared rank order E, P)",
            ],
        ),
        (
            "nan",
            Box::new(|d| {
                let mut values = vec![0.5; 20];
                values[7] = f64::NAN;
                values[9] = f64::NAN;
                save(d, "Q", &[4, 5], &values);
            }),
            &[
                "Q.npy: input Q holds NaN at index (1, 2) (2 NaN in all)",
                "replace the NaN values",
            ],
        ),
        (
            "missing",
            Box::new(|d| {
                fs::remove_file(d.join("K.npy")).expect("rm");
                fs::rename(d.join("V.npy"), d.join("v.npy")).expect("mv");
            }),
            &[
                "2 problems with the input files",
                "K.npy is missing: input K[E,M] needs an array of shape (4, 6)",
                "V.npy is missing: input V[F,M] needs an array of shape (3, 6)",
                "the directory also holds v.npy, which names no input of attention_3pass (its inputs are Q, K, V)",
            ],
        ),
        (
            "several",
            Box::new(|d| {
                fs::write(d.join("Q.npy"), b"").expect("w");
                save(d, "K", &[4], &[1.0; 4]);
            }),
            &[
                "2 problems",
                "Q.npy: not an NPY file",
                "K.npy: input K[E,M] has shape (4, 6)",
            ],
        ),
    ];
    for (name, edit, wanted) in &cases {
        let dir = inputs_with(name, edit.as_ref());
        let (code, stderr) = eval_inputs(&dir);
        assert_eq!(code, 1, "{name}: {stderr}");
        assert!(stderr.starts_with("error: --inputs "), "{name}: {stderr}");
        for w in *wanted {
            assert!(stderr.contains(w), "{name}: wanted {w:?} in {stderr}");
        }
        assert!(
            stderr.lines().all(|l| !l.trim_end().ends_with('.')),
            "{name}: messages end without a period: {stderr}"
        );
    }
}

#[test]
fn input_problems_in_json_are_a_list() {
    let dir = inputs_with("json_problems", &|d| {
        fs::remove_file(d.join("Q.npy")).expect("rm");
        fs::remove_file(d.join("V.npy")).expect("rm");
    });
    let (code, stdout, stderr) = eval(&[
        "attention_3pass",
        "--shape",
        SHAPE,
        "--inputs",
        text(&dir),
        "--format",
        "json",
    ]);
    assert_eq!(code, 1);
    assert!(stdout.is_empty());
    let json: Value = serde_json::from_str(&stderr).expect("JSON error");
    assert_eq!(json["ok"], false);
    let problems = json["problems"].as_array().expect("problems");
    assert_eq!(problems.len(), 2);
    assert!(
        problems[0]
            .as_str()
            .expect("text")
            .starts_with("Q.npy is missing")
    );
}

#[test]
fn a_missing_directory_lists_the_files_it_should_hold() {
    let dir = fresh_dir("no_such").join("nowhere");
    let (code, stderr) = eval_inputs(&dir);
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot read the directory"), "{stderr}");
    assert!(
        stderr.contains("Q.npy (4, 5), K.npy (4, 6), V.npy (3, 6)"),
        "{stderr}"
    );
}

#[test]
fn other_npy_files_are_ignored_with_a_warning() {
    let dir = inputs_with("extra", &|d| save(d, "notes", &[1], &[1.0]));
    let (code, stdout, stderr) =
        eval(&["attention_3pass", "--shape", SHAPE, "--inputs", text(&dir)]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("within 1e-10: yes"), "{stdout}");
    assert!(
        stderr.contains("warning: --inputs")
            && stderr.contains("ignored notes.npy, which names no input of attention_3pass"),
        "{stderr}"
    );
    let (_, json, _) = eval_json(&["attention_3pass", "--shape", SHAPE, "--inputs", text(&dir)]);
    assert_eq!(json["ignored_files"][0], "notes.npy");
}

#[test]
fn seed_and_inputs_exclude_each_other_and_all_needs_dump() {
    let dir = inputs_with("seed_and_inputs", &|_| {});
    let (code, _, stderr) = eval(&[
        "attention_3pass",
        "--shape",
        SHAPE,
        "--inputs",
        text(&dir),
        "--seed",
        "3",
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot be used with"), "{stderr}");
    let (code, _, stderr) = eval(&["attention_3pass", "--shape", SHAPE, "--all"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("--dump"), "{stderr}");
}

#[test]
fn inputs_of_a_renamed_cascade_are_read_by_its_own_names() {
    let dir = fresh_dir("renamed");
    let file = dir.join("renamed.cascade");
    let source = cascade_ir::library::source("attention_3pass").expect("library");
    fs::write(&file, source.replace("Q[", "QUERY[")).expect("write");
    let [q, k, v] = qkv();
    save(&dir, "QUERY", &q.1, &q.2);
    save(&dir, "K", &k.1, &k.2);
    save(&dir, "V", &v.1, &v.2);
    let (code, json, stderr) = eval_json(&[
        text(&file),
        "--shape",
        SHAPE,
        "--inputs",
        text(&dir),
        "--dump",
        text(&dir.join("out")),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(json["reference"]["roles"]["QUERY"], "Q");
    assert_eq!(json["reference"]["within_tolerance"], true);
    let (_, got) = load(&dir.join("out/AV.npy"));
    let want = attention_here(&q.2, &k.2, &v.2);
    assert!(got.iter().zip(&want).all(|(g, w)| (g - w).abs() < 1e-12));
}
