//! Process-level behaviour shared by every command: exit codes, closed and failing stdout,
//! `--format json` errors, atomic and confined files, and memory estimated before allocating.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::{cascade, cascade_in, stderr, stdout};

#[test]
fn closed_stdout_ends_quietly_with_status_0() {
    for args in [
        &["list"][..],
        &[
            "compare", "--arch", "fusemax", "--vs", "flat", "--format", "json",
        ],
        &[
            "compare", "--arch", "fusemax", "--vs", "flat", "--format", "csv",
        ],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cascade"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cascade");
        // Close the read end before the child writes: its first print meets a broken pipe.
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait for cascade");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: stderr {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: stderr {stderr}");
    }
}

#[test]
fn csv_format_is_refused_by_commands_without_tables() {
    for args in [
        &["list"][..],
        &["show", "attention_1pass"],
        &["check", "ir/cascades/attention_1pass.cascade"],
        &["passes", "attention_3pass"],
        &["eval", "attention_1pass", "--shape", "E=2,F=2,M=4,P=3"],
        &["rewrite", "attention_3pass", "--objective", "ops"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_cascade"))
            .args(args)
            .args(["--format", "csv"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("run cascade");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: stderr {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(
            stderr.contains(&format!("`{}` has no CSV output", args[0]))
                && stderr.contains("--format csv works with simulate, compare, sweep"),
            "{args:?}: {stderr}"
        );
    }
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("cli")
        .join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("test dir");
    dir
}

fn text(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Runs with `--format json`: (exit code, stderr parsed as one JSON object).
fn json_error(args: &[&str]) -> (i32, serde_json::Value) {
    let out = cascade(&[args, &["--format", "json"]].concat());
    let err = stderr(&out);
    let value = serde_json::from_str(&err).unwrap_or_else(|e| panic!("{args:?}: {e}: {err}"));
    (out.status.code().unwrap_or(-1), value)
}

#[test]
fn a_failed_write_to_stdout_is_an_error() {
    let Ok(full) = fs::File::create("/dev/full") else {
        // Only Linux has a device that is always full; elsewhere there is nothing to check.
        return;
    };
    let out = Command::new(env!("CARGO_BIN_EXE_cascade"))
        .arg("list")
        .stdout(Stdio::from(full))
        .output()
        .expect("run cascade");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("error: cannot write to standard output: No space left on device"),
        "{err}"
    );
}

#[test]
fn every_error_is_json_under_format_json() {
    let cases: [(&[&str], i32, &str); 6] = [
        (&["no-such-command"], 1, "unrecognized subcommand"),
        (&["eval", "attention_1pass"], 1, "--shape"),
        (
            &[
                "codegen",
                "attention_1pass",
                "--target",
                "cuda",
                "--warps",
                "x",
            ],
            1,
            "invalid value",
        ),
        (
            &[
                "eval",
                "attention_1pass",
                "--shape",
                "E=4,F=4,M=64,P=4,M0=0",
            ],
            1,
            "M0 has size 0",
        ),
        (&["check", "no/such/file.cascade"], 1, "no file"),
        (
            &[
                "sweep",
                "--arch",
                "fusemax",
                "--pe-dim",
                "1..18446744073709551615:1",
            ],
            1,
            "65536",
        ),
    ];
    for (args, code, needle) in cases {
        let (got, v) = json_error(args);
        assert_eq!(got, code, "{args:?}: {v}");
        assert_eq!(v["ok"], false, "{args:?}: {v}");
        let message = v["error"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{args:?}: {v}");
    }
}

#[test]
fn codegen_never_overwrites_a_directory_it_did_not_make_unless_forced() {
    let dir = fresh_dir("codegen_out");
    let out = dir.join("kernel");
    fs::create_dir_all(&out).expect("dir");
    fs::write(out.join("README.md"), "my notes\n").expect("write");
    let args = [
        "codegen",
        "attention_1pass",
        "--target",
        "cpp",
        "--out",
        text(&out),
    ];
    let (code, v) = json_error(&args);
    assert_eq!(code, 1, "{v}");
    let message = v["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("is not empty (it holds README.md)") && message.contains("--force"),
        "{v}"
    );
    assert_eq!(
        fs::read_to_string(out.join("README.md")).unwrap(),
        "my notes\n"
    );
    fs::write(out.join("keep.txt"), "mine\n").expect("write");
    let forced = cascade(&[&args[..], &["--force"]].concat());
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert_ne!(
        fs::read_to_string(out.join("README.md")).unwrap(),
        "my notes\n"
    );
    assert_eq!(fs::read_to_string(out.join("keep.txt")).unwrap(), "mine\n");
    let mut names: Vec<String> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "README.md",
            "cascade_attention_1pass.cpp",
            "cascade_attention_1pass.h",
            "keep.txt"
        ],
        "no temporary file is left"
    );
}

#[test]
fn file_system_errors_are_user_errors_with_the_path_and_the_os_error() {
    let dir = fresh_dir("fs_errors");
    let file = dir.join("a-file");
    fs::write(&file, "x").expect("write");
    let under_file = file.join("kernel");
    for (args, path) in [
        (
            vec![
                "codegen",
                "attention_1pass",
                "--target",
                "cpp",
                "--out",
                text(&file),
            ],
            &file,
        ),
        (
            vec![
                "codegen",
                "attention_1pass",
                "--target",
                "cpp",
                "--out",
                text(&under_file),
            ],
            &under_file,
        ),
        (
            vec![
                "rewrite",
                "attention_3pass",
                "--objective",
                "ops",
                "--out",
                text(&under_file),
            ],
            &under_file,
        ),
        (
            vec![
                "eval",
                "pedagogical_1",
                "--shape",
                "K=4",
                "--dump",
                text(&under_file),
            ],
            &under_file,
        ),
    ] {
        let out = cascade(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(text(path)), "{args:?}: {err}");
        assert!(
            err.contains("Not a directory") || err.contains("not a directory"),
            "{args:?}: the OS error: {err}"
        );
    }
}

#[test]
fn a_failed_sweep_leaves_no_partial_file() {
    let dir = fresh_dir("sweep_files");
    let csv = dir.join("points.csv");
    let missing = dir.join("missing").join("plot.svg");
    let args = [
        "sweep",
        "--arch",
        "fusemax",
        "--pe-dim",
        "16..32",
        "--seq",
        "1k",
        "--out",
        text(&csv),
        "--plot",
        text(&missing),
    ];
    let out = cascade(&args);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains(text(&missing)), "{}", stderr(&out));
    let left: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        left.iter().all(|n| !n.to_string_lossy().ends_with(".tmp")),
        "{left:?}"
    );
    let ok = cascade(&args[..args.len() - 2]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let written = fs::read_to_string(&csv).expect("csv written");
    assert_eq!(
        written.lines().count(),
        3,
        "header and two design points: {written}"
    );
}

#[test]
fn an_arch_file_reads_only_shipped_tables_or_files_beside_it() {
    let dir = fresh_dir("confined");
    let sub = dir.join("archs");
    fs::create_dir_all(sub.join("costs")).expect("dir");
    fs::write(
        dir.join("secret.toml"),
        "name = \"THE SECRET LINE\"\n[[broken\n",
    )
    .expect("write");
    let fusemax =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("arch-configs/fusemax.toml"))
            .expect("shipped");
    let with = |key: &str, value: &str| {
        fusemax
            .lines()
            .map(|l| {
                if l.starts_with(&format!("{key} =")) {
                    format!("{key} = \"{value}\"")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    for (file, key, value) in [
        ("up.toml", "costs", "../secret"),
        ("abs.toml", "costs", "/etc/hostname"),
        ("cascade.toml", "cascade", "../secret.toml"),
    ] {
        fs::write(sub.join(file), with(key, value)).expect("write");
        let out = cascade_in(
            &dir,
            &[
                "simulate",
                "--arch",
                &format!("archs/{file}"),
                "--seq",
                "1k",
                "--workload",
                "bert",
            ],
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{file}: {err}");
        assert!(
            !err.contains("THE SECRET LINE") && !err.contains("broken"),
            "{file}: {err}"
        );
        assert!(
            err.contains(&format!("`{key} = \"{value}\"`")),
            "{file}: {err}"
        );
    }
    // A table in costs/ beside the file is found, and its own errors name it.
    fs::write(sub.join("costs/mine.toml"), "name = \"mine\"\n[[oops\n").expect("write");
    fs::write(sub.join("mine.toml"), with("costs", "mine")).expect("write");
    let out = cascade_in(
        &dir,
        &["simulate", "--arch", "archs/mine.toml", "--seq", "1k"],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("costs/mine.toml is invalid"), "{err}");
    assert!(stdout(&out).is_empty());
}

#[test]
fn eval_estimates_memory_before_allocating() {
    let args = [
        "eval",
        "attention_3pass",
        "--shape",
        "E=1000000,F=64,M=1024,P=1024",
    ];
    let (code, v) = json_error(&args);
    assert_eq!(code, 1, "{v}");
    let message = v["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("would allocate about 85024131072 bytes (79.2 GiB)")
            && message.contains("more than --max-memory 4G"),
        "{v}"
    );
    let small = ["eval", "attention_3pass", "--shape", "E=8,F=8,M=64,P=64"];
    let (code, v) = json_error(&[&small[..], &["--max-memory", "1k"]].concat());
    assert_eq!(code, 1, "{v}");
    let ok = cascade(&[&small[..], &["--max-memory", "1M"]].concat());
    assert!(ok.status.success(), "{}", stderr(&ok));
}
