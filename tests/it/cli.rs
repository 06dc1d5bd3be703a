//! Process-level behaviour shared by every command: exit codes, closed pipes and `--format`.

use std::process::{Command, Stdio};

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
