//! Process-level behaviour shared by every command: exit codes and closed pipes.

use std::process::{Command, Stdio};

#[test]
fn closed_stdout_ends_quietly_with_status_0() {
    for args in [
        &["list"][..],
        &[
            "compare", "--arch", "fusemax", "--vs", "flat", "--format", "json",
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
