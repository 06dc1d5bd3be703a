//! Running the built `cascade` binary, shared by every test module.

use std::path::Path;
use std::process::{Command, Output};

/// Runs the binary from `dir` with colour off.
pub fn cascade_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cascade"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("the cascade binary runs")
}

/// Runs the binary from the repository root.
pub fn cascade(args: &[&str]) -> Output {
    cascade_in(Path::new(env!("CARGO_MANIFEST_DIR")), args)
}

/// Runs the binary; returns (exit code, stdout, stderr).
pub fn run(args: &[&str]) -> (i32, String, String) {
    let out = cascade(args);
    (out.status.code().unwrap_or(-1), stdout(&out), stderr(&out))
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("utf-8 stdout")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).expect("utf-8 stderr")
}
