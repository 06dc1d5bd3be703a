//! Shared helpers of the codegen tests: the library, compilers from the environment, scratch dirs.

#![allow(dead_code)]

pub mod cpp;

use std::path::{Path, PathBuf};
use std::process::Command;

use cascade_ir::{Cascade, dsl, library};

pub fn parse(source: &str, name: &str) -> Cascade {
    match dsl::parse(source, name) {
        Ok(p) => p.cascade,
        Err(d) => panic!("{name} does not parse: {d:?}"),
    }
}

pub fn library() -> Vec<Cascade> {
    library::names()
        .map(|n| parse(library::source(n).expect("listed"), n))
        .collect()
}

/// Cascade 5 with a causal sliding window of `W` keys (`m <= p && p - m < W`): a 1-pass variant
/// the library does not ship, built from `attention_causal_1pass`.
pub fn window_1pass() -> Cascade {
    let source = library::source("attention_causal_1pass")
        .expect("library cascade")
        .replace("m1*M0+m0 <= p]", "m1*M0+m0 <= p && p - (m1*M0+m0) < W]")
        .replace("ranks E F M P", "ranks E F M P\nparam W")
        .replace(
            "cascade attention_causal_1pass",
            "cascade attention_window_1pass",
        );
    assert!(
        source.contains("< W]") && source.contains("param W"),
        "the window edit no longer matches attention_causal_1pass"
    );
    parse(&source, "attention_window_1pass")
}

/// A compiler named by an environment variable (set by scripts/install-gpu-toolchain.sh).
/// Missing under CI=true is a failure; elsewhere the caller skips with a message.
pub fn tool(var: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(var)
        .map(PathBuf::from)
        .filter(|p| p.exists())
    {
        return Some(path);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "{var} is not set or missing under CI=true: run `source \"$(scripts/install-gpu-toolchain.sh)\"` first"
        );
    }
    eprintln!(
        "skipping: {var} is not set (run `source \"$(scripts/install-gpu-toolchain.sh)\"` to install the compilers)"
    );
    None
}

/// A fresh scratch directory under the target directory.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Runs a command; panics with its output when it fails. Returns stdout + stderr.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}
