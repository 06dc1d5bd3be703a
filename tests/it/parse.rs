//! Parse boundary: library cascades print stably, broken inputs give positioned diagnostics,
//! and the `list`, `show` and `check` commands wire them to the terminal with exit codes.

use crate::support::{cascade, stderr, stdout};
use std::fs;
use std::path::Path;

use cascade_ir::{dsl, library};
use serde_json::Value;

/// The only caller of the parse/verify API in this module: the normalised text of a valid
/// cascade, or its rendered diagnostics (colour off, ariadne's trailing spaces trimmed).
fn check_parse(source: &str, path: &str) -> Result<String, String> {
    match dsl::check(source, path) {
        Ok(parsed) => Ok(dsl::print(&parsed.cascade)),
        Err(diags) => Err(trim_lines(&diags.render(source, path, false))),
    }
}

fn trim_lines(text: &str) -> String {
    text.lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn bad_file(name: &str) -> String {
    format!("tests/data/bad/{name}.cascade")
}

#[test]
fn library_cascades_print_normalised() {
    insta::glob!("../../ir/cascades", "*.cascade", |path| {
        let source = fs::read_to_string(path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let printed = check_parse(&source, &name).unwrap_or_else(|d| panic!("{d}"));
        // Normalising twice changes nothing.
        assert_eq!(check_parse(&printed, &name), Ok(printed.clone()));
        insta::assert_snapshot!(printed);
    });
}

#[test]
fn broken_inputs_give_positioned_diagnostics() {
    insta::glob!("../data/bad", "*.cascade", |path| {
        let source = fs::read_to_string(path).unwrap();
        let name = format!(
            "tests/data/bad/{}",
            path.file_name().unwrap().to_string_lossy()
        );
        let diags = check_parse(&source, &name).expect_err("a broken input is rejected");
        assert!(diags.contains(&format!("{name}:")), "{diags}");
        assert!(
            diags.contains("Help:"),
            "every diagnostic has a hint: {diags}"
        );
        insta::assert_snapshot!(diags);
    });
}

/// Diagnostics name the right line and column (counted by hand from the files).
#[test]
fn diagnostics_point_at_the_offending_text() {
    let cases = [
        (
            "unknown_rank",
            "unknown_rank.cascade:4:16",
            "rank `D` is not declared",
        ),
        ("unknown_variable", ":6:24", "`n` is not the index variable"),
        ("syntax_error", ":6:19", "expected an operand"),
        ("syntax_error", ":7:24", "expected `,` or `]`"),
        ("rank_mismatch", ":7:18", "dimension 0 of `QK` has rank M"),
        (
            "rank_mismatch",
            ":8:25",
            "`GM` has 1 dimensions but is accessed with 2",
        ),
        (
            "read_before_write",
            ":7:25",
            "`GM` is read before any Einsum writes it",
        ),
        (
            "missing_init",
            ":13:1",
            "iterative state `RM` (rank M1) is never initialised",
        ),
        (
            "missing_stop",
            ":3:7",
            "rank K is iterative but the cascade has no stop",
        ),
        ("cycle", ":6:1", "a cycle outside an iterative rank"),
        ("unused_rank", ":3:9", "rank `N` is declared but never used"),
        (
            "output_and_input_errors",
            ":7:8",
            "output `B` is never written",
        ),
        ("output_and_input_errors", ":6:1", "input `A` is written"),
    ];
    for (file, position, message) in cases {
        let path = bad_file(file);
        let source = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(&path)).unwrap();
        let diags = check_parse(&source, &path).unwrap_err();
        let found = diags
            .split("Error: ")
            .any(|d| d.contains(message) && d.contains(position));
        assert!(found, "{file}: no `{message}` at {position}:\n{diags}");
    }
}

#[test]
fn cli_list_names_every_library_cascade() {
    let out = cascade(&["list"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    let listed: Vec<&str> = text
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(listed, library::names().collect::<Vec<_>>());
    assert!(
        text.lines()
            .any(|l| l.starts_with("attention_3pass") && l.contains("FuseMax Cascade 4")),
        "{text}"
    );

    let out = cascade(&["list", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let entries = json.as_array().unwrap();
    assert_eq!(entries.len(), library::FILES.len());
    assert_eq!(entries[0]["name"], "attention_1pass");
    assert!(
        entries[0]["description"]
            .as_str()
            .unwrap()
            .starts_with("FuseMax Cascade 5")
    );
}

#[test]
fn cli_show_prints_the_normalised_library_cascade() {
    let out = cascade(&["show", "attention_1pass"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let source = library::source("attention_1pass").unwrap();
    assert_eq!(Ok(stdout(&out)), check_parse(source, "attention_1pass"));
    assert!(!stdout(&out).contains('#'), "comments are dropped");

    let out = cascade(&["show", "pedagogical_3", "--format", "json"]);
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["name"], "pedagogical_3");
    assert!(
        json["text"]
            .as_str()
            .unwrap()
            .contains("RY[k+1] = RY[k] + A[k] * B[k]")
    );
}

#[test]
fn cli_check_accepts_files_and_names() {
    let out = cascade(&["check", "pedagogical_1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("cascade pedagogical_1\n"));

    let out = cascade(&[
        "check",
        "ir/cascades/attention_3pass.cascade",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["ok"], true);
    assert_eq!(json["summary"]["name"], "attention_3pass");
    assert_eq!(json["summary"]["outputs"], serde_json::json!(["AV"]));
    assert_eq!(json["summary"]["einsums"], 6);
}

#[test]
fn cli_check_reports_errors_on_stderr_with_exit_1() {
    let path = bad_file("read_before_write");
    let out = cascade(&["check", &path]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "", "nothing on stdout for a broken cascade");
    let err = stderr(&out);
    assert!(err.contains(&format!("{path}:7:25")), "{err}");
    assert!(
        err.contains("move the Einsum that writes `GM` above this one"),
        "{err}"
    );
    assert!(
        !err.contains('\u{1b}'),
        "no colour when NO_COLOR is set or stderr is a file"
    );

    let out = cascade(&["check", &bad_file("syntax_error"), "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let json: Value = serde_json::from_str(&stderr(&out)).unwrap();
    assert_eq!(json["ok"], false);
    let diags = json["diagnostics"].as_array().unwrap();
    assert_eq!(diags.len(), 2);
    assert_eq!(
        (diags[0]["line"].as_u64(), diags[0]["column"].as_u64()),
        (Some(6), Some(19))
    );
    assert_eq!(
        (diags[1]["line"].as_u64(), diags[1]["column"].as_u64()),
        (Some(7), Some(24))
    );
}

#[test]
fn cli_unknown_target_lists_the_library_and_exits_1() {
    let out = cascade(&["check", "no_such_cascade"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("`no_such_cascade` is neither a file nor a library cascade"),
        "{err}"
    );
    for name in library::names() {
        assert!(err.contains(name), "{err}");
    }
    let out = cascade(&["check", "missing/file.cascade", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let json: Value = serde_json::from_str(&stderr(&out)).unwrap();
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .starts_with("no file `missing/file.cascade`")
    );
}

#[test]
fn cli_usage_errors_exit_1() {
    let out = cascade(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("unrecognized subcommand"));
    let out = cascade(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let out = cascade(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("check"));
}

/// `check` warns about the masking trap on stderr with the file, line and column, the Einsum,
/// the operator and its merge, and the `{&}` fix, exits 0, and lists it in JSON; the fixed
/// spelling is silent.
#[test]
fn check_warns_about_the_masking_trap_and_the_fix_is_silent() {
    let path = "tests/data/lint/alibi_causal_trap.cascade";
    let out = cascade(&["check", path]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("Warning"), "{err}");
    assert!(err.contains(&format!("{path}:6:1")), "{err}");
    assert!(err.contains("`+` merges with ∪"), "{err}");
    assert!(err.contains("QK[m,p] +{&} B[m,p]"), "{err}");
    let json: Value = serde_json::from_str(&stdout(&cascade(&["check", path, "--format", "json"])))
        .expect("JSON");
    assert_eq!(json["warnings"][0]["line"], 6, "{json}");

    let fixed_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("lint");
    fs::create_dir_all(&fixed_dir).unwrap();
    let fixed = fixed_dir.join("fixed.cascade");
    let source = fs::read_to_string(path).unwrap();
    fs::write(
        &fixed,
        source.replace("QK[m,p] + B[m,p]", "QK[m,p] +{&} B[m,p]"),
    )
    .unwrap();
    let out = cascade(&["check", fixed.to_str().unwrap()]);
    assert!(out.status.success());
    assert_eq!(stderr(&out), "", "the {{&}} spelling is silent");
}

/// `check --format json` names a split's second variable and the rank it ranges over, and a
/// shape that gives it another size is refused naming both.
#[test]
fn check_json_names_a_splits_second_variable() {
    let path = "tests/data/zoo/linear_causal_chunked.cascade";
    let out = cascade(&["check", path, "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    let ranks = json["summary"]["ranks"].as_array().expect("ranks");
    let rank = |name: &str| {
        ranks
            .iter()
            .find(|r| r["name"] == name)
            .expect(name)
            .clone()
    };
    assert_eq!(rank("M")["split"], serde_json::json!(["M1", "M0"]));
    assert_eq!(rank("N0")["range_of"], "M0");
    assert!(rank("M0")["range_of"].is_null());
    let out = cascade(&["eval", path, "--shape", "E=6,F=5,M=16,M0=4,N0=3"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("its size is M0=4, not 3: leave N0 out of the shape"),
        "{err}"
    );
}
