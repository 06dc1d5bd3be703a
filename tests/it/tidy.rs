//! Hygiene checks: module headers, no ignored tests, and the crate dependency direction.

use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn all_sources() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["src", "ir", "scheduler", "sim", "codegen", "tests"] {
        rust_files(&root().join(dir), &mut files);
    }
    files.sort();
    files
}

#[test]
fn every_rust_file_starts_with_a_module_doc() {
    let missing: Vec<String> = all_sources()
        .into_iter()
        .filter(|p| {
            let text = fs::read_to_string(p).unwrap_or_default();
            !text.trim_start().starts_with("//!")
        })
        .map(|p| p.strip_prefix(root()).unwrap_or(&p).display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a `//!` header: {missing:?}"
    );
}

#[test]
fn no_ignored_or_unexplained_should_panic_tests() {
    let mut offenders = Vec::new();
    for path in all_sources() {
        let text = fs::read_to_string(&path).unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            // Built from pieces so this file does not flag itself.
            let ignore = ["#[", "ignore"].concat();
            let should_panic = ["#[", "should_panic"].concat();
            if line.starts_with(&ignore)
                || (line.starts_with(&should_panic) && !line.contains("FIXME"))
            {
                offenders.push(format!("{}:{}", path.display(), n + 1));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "ignored or unexplained should_panic tests: {offenders:?}"
    );
}

/// The workspace crates each crate may depend on (ARCHITECTURE.md, "Invariants").
const ALLOWED: &[(&str, &[&str])] = &[
    ("ir", &[]),
    ("scheduler", &["cascade-ir"]),
    ("sim", &["cascade-ir", "cascade-scheduler"]),
    ("codegen", &["cascade-ir", "cascade-scheduler"]),
];

#[test]
fn crate_dependencies_point_left() {
    for (dir, allowed) in ALLOWED {
        let manifest = fs::read_to_string(root().join(dir).join("Cargo.toml")).expect("manifest");
        let doc: toml::Table = manifest.parse().expect("manifest is TOML");
        for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
            let Some(deps) = doc.get(section).and_then(|d| d.as_table()) else {
                continue;
            };
            for name in deps.keys().filter(|k| k.starts_with("cascade")) {
                assert!(
                    allowed.contains(&name.as_str()),
                    "{dir}/Cargo.toml [{section}] depends on {name}; allowed: {allowed:?}"
                );
            }
        }
    }
}

#[test]
fn only_the_cli_uses_anyhow() {
    for dir in ["ir", "scheduler", "sim", "codegen"] {
        let manifest = fs::read_to_string(root().join(dir).join("Cargo.toml")).expect("manifest");
        assert!(
            !manifest.contains("anyhow"),
            "{dir} depends on anyhow; only the CLI may"
        );
    }
}
