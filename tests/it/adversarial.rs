//! The adversarial pass: well over a thousand bad or edge-case inputs through the CLI, each
//! checked against the contract of `src/main.rs` — no panic (never exit 101, never "panicked"
//! on stderr), no hang (a time limit per run), no internal error, the expected exit code where
//! the case states one, one JSON object on stderr for every error under `--format json`, and
//! no reported latency, energy, area or speedup that is zero or missing.
//!
//! The inputs are `tests/data/adversarial/` (command lines in `cases.txt`, bad cascades,
//! architecture and workload files) and ones made here: deterministic mutations of every
//! library cascade and of the shipped architecture and workload files, grids of edge values
//! for every size, count and limit the command line takes, and long chains and deep nesting.

use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Longest one run may take (the slowest case, a 20,000-Einsum chain, takes about 2 s in a
/// debug build).
const TIME_LIMIT: Duration = Duration::from_secs(60);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn data() -> PathBuf {
    root().join("tests/data/adversarial")
}

/// The exit code a case expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Ok,
    UserError,
    /// Either 0 or 1: the input may or may not be valid, but it is never a crash.
    Either,
}

#[derive(Debug, Clone)]
enum Case {
    /// One command line.
    Run { args: Vec<String>, expect: Expect },
    /// A cascade file: `check`, `show` and `passes`, and when it checks, `eval` at a tiny
    /// shape and `codegen --target cpp`.
    Cascade(PathBuf),
    /// A command line that reads a user's file (a mapping, a block mask, a workload set): its
    /// error names the file, so the user knows which one to fix. `refused`: whether the file
    /// must be refused (exit 1, or every point infeasible with the reason) or accepted (exit 0
    /// and no point infeasible); `None` when either may be right.
    File {
        args: Vec<String>,
        file: PathBuf,
        refused: Option<bool>,
    },
}

/// What one run did.
struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[String], scratch: &Path) -> Result<Outcome, String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cascade"))
        .args(args)
        .current_dir(scratch)
        .env("NO_COLOR", "1")
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start cascade: {e}"))?;
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let reader = std::thread::spawn(move || {
        let mut o = Vec::new();
        let _ = out.read_to_end(&mut o);
        o
    });
    let err_reader = std::thread::spawn(move || {
        let mut e = Vec::new();
        let _ = err.read_to_end(&mut e);
        e
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if start.elapsed() > TIME_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("hung: still running after {TIME_LIMIT:?}"));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let stdout = String::from_utf8_lossy(&reader.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    Ok(Outcome {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
    })
}

/// Runs `args` in text and in JSON and checks the contract; returns the JSON run.
fn contract(args: &[String], expect: Expect, scratch: &Path) -> Result<Outcome, String> {
    let text = run(args, scratch)?;
    // The JSON run starts from the same (empty) scratch directory as the text run.
    let _ = fs::remove_dir_all(scratch);
    fs::create_dir_all(scratch).map_err(|e| e.to_string())?;
    let mut json_args = args.to_vec();
    json_args.extend(["--format".to_string(), "json".to_string()]);
    // A command that refuses JSON refuses it the same way in both runs.
    let csv_only = args.iter().any(|a| a == "--format");
    let json = if csv_only {
        run(args, scratch)?
    } else {
        run(&json_args, scratch)?
    };
    for (mode, o) in [("text", &text), ("json", &json)] {
        // A reference to a file outside the referring file's directory is never read, so no
        // output shows another file's text (here: the first line of /etc/passwd).
        if [&o.stdout, &o.stderr]
            .iter()
            .any(|t| t.contains("root:x:0:0"))
        {
            return Err(format!(
                "{mode}: printed another file's content: {}",
                o.stderr
            ));
        }
        if o.code == 101 || o.stderr.contains("panicked") {
            return Err(format!("{mode}: panicked (exit {}): {}", o.code, o.stderr));
        }
        if o.code == 2 || o.stderr.contains("internal error") {
            return Err(format!("{mode}: internal error: {}", o.stderr));
        }
        let allowed = match expect {
            Expect::Ok => o.code == 0,
            Expect::UserError => o.code == 1,
            Expect::Either => o.code == 0 || o.code == 1,
        };
        if !allowed {
            return Err(format!(
                "{mode}: exit {} but {expect:?} expected; stderr: {}",
                o.code, o.stderr
            ));
        }
    }
    if text.code != json.code {
        return Err(format!(
            "exit {} in text but {} in JSON",
            text.code, json.code
        ));
    }
    if json.code == 1 && !csv_only {
        let v: Value = serde_json::from_str(&json.stderr)
            .map_err(|e| format!("JSON error is not JSON ({e}): {}", json.stderr))?;
        let described = ["error", "diagnostics", "problems"]
            .iter()
            .any(|k| v.get(k).is_some());
        if v["ok"] != false || !described {
            return Err(format!("JSON error without ok: false and a message: {v}"));
        }
    }
    if json.code == 0 && !csv_only && json.stdout.trim_start().starts_with(['{', '[']) {
        let v: Value = serde_json::from_str(&json.stdout)
            .map_err(|e| format!("JSON output is not JSON ({e})"))?;
        no_silent_zero(&v, "")?;
    }
    Ok(json)
}

/// A reported latency, energy, area or speedup is a positive number, never 0 or `null` (an
/// infeasible point says so instead and has none).
fn no_silent_zero(v: &Value, key: &str) -> Result<(), String> {
    match v {
        Value::Object(map) => {
            if map.contains_key("infeasible") && !map["infeasible"].is_null() {
                return Ok(());
            }
            map.iter().try_for_each(|(k, x)| no_silent_zero(x, k))
        }
        Value::Array(items) => items.iter().try_for_each(|x| no_silent_zero(x, key)),
        Value::Number(n) => {
            let watched = ["latency", "energy", "area", "speedup"]
                .iter()
                .any(|w| key.contains(w))
                && !key.contains("share");
            match n.as_f64() {
                Some(x) if watched && x <= 0.0 => Err(format!("{key} is {x}")),
                _ => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

fn s(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// `check --format json` of a cascade that verifies gives its ranks; each plain rank and
/// parameter gets size 3 (a split is left to its default tile, and a second variable over its
/// inner rank, which `range_of` names, to that rank's size).
fn tiny_shape(summary: &Value) -> Option<String> {
    let ranks = summary["summary"]["ranks"].as_array()?;
    let mut parts: Vec<&str> = ranks
        .iter()
        .filter_map(|r| r["split"].as_array())
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    parts.extend(
        ranks
            .iter()
            .filter(|r| r["range_of"].is_string())
            .filter_map(|r| r["name"].as_str()),
    );
    let sizes: Vec<String> = ranks
        .iter()
        .filter_map(|r| r["name"].as_str())
        .filter(|n| !parts.contains(n))
        .map(|n| format!("{n}=3"))
        .collect();
    Some(sizes.join(","))
}

fn run_cascade(path: &Path, scratch: &Path) -> Result<(), String> {
    let file = path.to_str().ok_or("non-UTF-8 path")?.to_string();
    for command in ["show", "passes"] {
        contract(&s(&[command, &file]), Expect::Either, scratch)?;
    }
    let checked = contract(&s(&["check", &file]), Expect::Either, scratch)?;
    if checked.code != 0 {
        return Ok(());
    }
    let summary: Value = serde_json::from_str(&checked.stdout).map_err(|e| e.to_string())?;
    let Some(shape) = tiny_shape(&summary) else {
        return Ok(());
    };
    if !shape.is_empty() {
        contract(
            &s(&["eval", &file, "--shape", &shape, "--max-memory", "64M"]),
            Expect::Either,
            scratch,
        )?;
        contract(
            &s(&["passes", &file, "--shape", &shape]),
            Expect::Either,
            scratch,
        )?;
    }
    let out = scratch.join("kernel");
    let out = out.to_str().ok_or("non-UTF-8 path")?;
    contract(
        &s(&["codegen", &file, "--target", "cpp", "--out", out, "--force"]),
        Expect::Either,
        scratch,
    )?;
    Ok(())
}

/// A small deterministic generator (xorshift), so every run tries the same inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const EXTREME_NUMBERS: &[&str] = &[
    "0",
    "-1",
    "9223372036854775807",
    "99999999999999999999",
    "1e308",
    "-0.0",
    "4294967297",
];

const ODD_TEXT: &[&str] = &[
    "[",
    "]",
    "(",
    ")",
    ",",
    ":",
    "=",
    "+",
    "-",
    "*",
    "/",
    "<",
    ">=",
    "!=",
    "&&",
    "{&}",
    "{<-}",
    "{",
    "#",
    "\n",
    "\t",
    " ",
    "é",
    "\u{200b}",
    "😀",
    "\u{0}",
    "inf",
    "-inf",
    "max(m)",
    "1/sqrt(E)",
    "exp(",
    "0",
    "m+1",
    "M1",
    "r+1",
    "stop m >= M",
];

/// One mutation of a cascade's text: a character removed or inserted, a line dropped,
/// duplicated or moved, a number made extreme, or an identifier swapped for another.
fn mutate(text: &str, rng: &mut Rng) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let n = out.len();
    match rng.below(7) {
        0 => {
            let chars: Vec<char> = text.chars().collect();
            let at = rng.below(chars.len());
            return chars[..at]
                .iter()
                .chain(&chars[(at + 1).min(chars.len())..])
                .collect();
        }
        1 => {
            let at = text
                .char_indices()
                .map(|(i, _)| i)
                .nth(rng.below(text.chars().count()))
                .unwrap_or(0);
            let odd = ODD_TEXT[rng.below(ODD_TEXT.len())];
            return format!("{}{odd}{}", &text[..at], &text[at..]);
        }
        2 => {
            out.remove(rng.below(n));
        }
        3 => {
            let at = rng.below(n);
            out.insert(at, out[at].clone());
        }
        4 => {
            let (a, b) = (rng.below(n), rng.below(n));
            out.swap(a, b);
        }
        5 => {
            let at = rng.below(n);
            let extreme = EXTREME_NUMBERS[rng.below(EXTREME_NUMBERS.len())];
            let line = &out[at];
            let digits: Vec<usize> = line
                .char_indices()
                .filter(|(_, c)| c.is_ascii_digit())
                .map(|(i, _)| i)
                .collect();
            if let Some(&d) = digits.get(rng.below(digits.len())) {
                out[at] = format!("{}{extreme}{}", &line[..d], &line[d + 1..]);
            } else {
                out[at] = format!("{line} {extreme}");
            }
        }
        _ => {
            let words: Vec<&str> = text
                .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .filter(|w| !w.is_empty())
                .collect();
            let (a, b) = (words[rng.below(words.len())], words[rng.below(words.len())]);
            let at = rng.below(n);
            out[at] = out[at].replacen(a, b, 1);
        }
    }
    out.join("\n") + "\n"
}

/// Every number in a TOML text, as byte ranges.
fn numbers(text: &str) -> Vec<std::ops::Range<usize>> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        // An ASCII digit always starts a character, so `text[..i]` is a valid slice here.
        if bytes[i].is_ascii_digit() && text[..i].trim_end().ends_with(['=', '[', ',']) {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
                i += 1;
            }
            found.push(start..i);
        } else {
            i += 1;
        }
    }
    found
}

/// Every number of a shipped file replaced, one at a time, by each extreme value.
fn number_mutations(text: &str, extremes: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for range in numbers(text) {
        for extreme in extremes {
            out.push(format!(
                "{}{extreme}{}",
                &text[..range.start],
                &text[range.end..]
            ));
        }
    }
    out
}

fn write_generated(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).expect("write generated input");
    path
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("adversarial data")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files
}

/// The command lines of `cases.txt`, with `{data}` filled in (`{dir}` is filled per run).
fn listed_cases() -> Vec<Case> {
    let text = fs::read_to_string(data().join("cases.txt")).expect("cases.txt");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let (code, command) = line.split_once('\t').expect("EXPECT<TAB>ARGS");
            let expect = match code {
                "0" => Expect::Ok,
                "1" => Expect::UserError,
                _ => Expect::Either,
            };
            let data = data();
            let args = command
                .split(' ')
                .map(|a| {
                    let a = if a == "\"\"" { "" } else { a };
                    a.replace("{data}", data.to_str().expect("utf-8"))
                })
                .collect();
            Case::Run { args, expect }
        })
        .collect()
}

fn cascade_cases(generated: &Path) -> Vec<Case> {
    let mut cases: Vec<Case> = files_in(&data().join("cascades"))
        .into_iter()
        .map(Case::Cascade)
        .collect();
    let mut rng = Rng(0x5eed_cafe);
    for (name, source) in cascade_ir::library::FILES {
        for k in 0..20 {
            let mut text = source.to_string();
            for _ in 0..=rng.below(3) {
                text = mutate(&text, &mut rng);
            }
            let path = write_generated(generated, &format!("{name}_{k}.cascade"), &text);
            cases.push(Case::Cascade(path));
        }
    }
    // Long chains and deep nesting, made here to keep the data folder small.
    let mut chain = String::from("cascade chain\nranks M P\ninput A[M,P]\nT0[m,p] = A[m,p]\n");
    for i in 1..20_000 {
        chain.push_str(&format!(
            "T{i}[m,p : m <= p] = T{}[m,p] *{{&}} A[m,p]\n",
            i - 1
        ));
    }
    chain.push_str("output T19999\n");
    let path = write_generated(generated, "chain_20000.cascade", &chain);
    cases.push(Case::Run {
        args: s(&["check", path.to_str().expect("utf-8")]),
        expect: Expect::Ok,
    });
    let mut shifted = String::from("cascade shift\nranks M\ninput A[M]\nT0[m] = A[m]\n");
    for i in 1..2_000 {
        shifted.push_str(&format!("T{i}[m : m < M] = T{}[m+1 : m+1 < M]\n", i - 1));
    }
    shifted.push_str("output T1999\n");
    cases.push(Case::Cascade(write_generated(
        generated,
        "shift_chain.cascade",
        &shifted,
    )));
    for depth in [31, 32, 33, 200, 5_000] {
        let nested = format!(
            "cascade nest\nranks M\ninput A[M]\nB[m] = {}A[m]{}\noutput B\n",
            "(".repeat(depth),
            ")".repeat(depth)
        );
        let name = format!("nest_{depth}.cascade");
        cases.push(Case::Cascade(write_generated(generated, &name, &nested)));
        let index = format!(
            "cascade nest\nranks M\ninput A[M]\nB[m] = A[{}m{}]\noutput B\n",
            "(".repeat(depth),
            ")".repeat(depth)
        );
        let name = format!("nest_index_{depth}.cascade");
        cases.push(Case::Cascade(write_generated(generated, &name, &index)));
    }
    cases
}

fn arch_cases(generated: &Path) -> Vec<Case> {
    let simulate = |arch: &Path| Case::Run {
        args: s(&[
            "simulate",
            "--arch",
            arch.to_str().expect("utf-8"),
            "--seq",
            "1k",
            "--workload",
            "bert",
        ]),
        expect: Expect::Either,
    };
    let mut cases = Vec::new();
    for arch in files_in(&data().join("archs")) {
        cases.push(simulate(&arch));
        let path = arch.to_str().expect("utf-8");
        for args in [
            s(&["compare", "--arch", path, "--vs", "flat", "--seq", "1k"]),
            s(&["sweep", "--arch", path, "--pe-dim", "16..32", "--seq", "1k"]),
            s(&[
                "rewrite",
                "attention_3pass",
                "--objective",
                "hardware",
                "--arch",
                path,
            ]),
        ] {
            cases.push(Case::Run {
                args,
                expect: Expect::Either,
            });
        }
    }
    let shipped = root().join("arch-configs");
    let extremes = ["0", "-1", "1e308", "nan", "18446744073709551616"];
    for name in ["fusemax"] {
        let text = fs::read_to_string(shipped.join(format!("{name}.toml"))).expect("shipped");
        for (k, mutated) in number_mutations(&text, &extremes).into_iter().enumerate() {
            let path = write_generated(generated, &format!("{name}_{k}.toml"), &mutated);
            cases.push(simulate(&path));
        }
    }
    cases
}

fn workload_cases(generated: &Path) -> Vec<Case> {
    let simulate = |file: &Path, seq: Option<&str>| {
        let mut args = s(&[
            "simulate",
            "--arch",
            "fusemax",
            "--workloads",
            file.to_str().expect("utf-8"),
            "--workload",
            "all",
        ]);
        if let Some(seq) = seq {
            args.extend(s(&["--seq", seq]));
        }
        Case::Run {
            args,
            expect: Expect::Either,
        }
    };
    let mut cases: Vec<Case> = files_in(&data().join("workloads"))
        .iter()
        .map(|f| simulate(f, None))
        .collect();
    // Each bad workload set also through a decode step, `compare` and `zoo`, whose error names
    // the file.
    for file in files_in(&data().join("workloads")) {
        let w = ["--workloads", "{file}", "--workload", "all", "--seq", "1k"];
        let decode = [
            "simulate",
            "--arch",
            "fusemax",
            "--scenario",
            "decode",
            "--batch",
            "2",
        ];
        cases.push(file_case(&[&decode[..], &w[..]].concat(), &file));
        let compare = [
            "compare",
            "--arch",
            "fusemax",
            "--vs",
            "flat",
            "--end-to-end",
        ];
        cases.push(file_case(&[&compare[..], &w[..]].concat(), &file));
        let zoo = ["zoo", "--batch", "1", "--only", "kv"];
        cases.push(file_case(&[&zoo[..], &w[..]].concat(), &file));
    }
    // The LLM set: every number made extreme and every string (cascades, labels, the FFN form)
    // replaced, among them names of files outside the set's directory.
    let llm = fs::read_to_string(root().join("arch-configs/workloads/llm.toml")).expect("llm");
    let numbers = ["0", "-1", "65537", "1099511627777", "1.5"];
    let strings = [
        "",
        "../../etc/passwd",
        "/etc/passwd",
        "nope",
        "attention_1pass",
    ];
    let mutated = number_mutations(&llm, &numbers)
        .into_iter()
        .chain(string_mutations(&llm, &strings));
    for (k, m) in mutated.enumerate() {
        let path = write_generated(generated, &format!("llm_{k}.toml"), &m);
        let file = path.to_str().expect("utf-8");
        cases.push(Case::Run {
            args: s(&[
                "simulate",
                "--arch",
                "fusemax",
                "--workloads",
                file,
                "--workload",
                "all",
                "--seq",
                "1k",
                "--batch",
                "1",
            ]),
            expect: Expect::Either,
        });
    }
    let text = fs::read_to_string(root().join("arch-configs/workloads/transformers.toml"))
        .expect("shipped workloads");
    let extremes = ["0", "-1", "9223372036854775807", "4294967297", "1.5"];
    for (k, mutated) in number_mutations(&text, &extremes).into_iter().enumerate() {
        let path = write_generated(generated, &format!("workloads_{k}.toml"), &mutated);
        cases.push(simulate(&path, Some("1k")));
    }
    cases
}

/// Every quoted string of a TOML text replaced, one at a time, by each of `replacements`.
fn string_mutations(text: &str, replacements: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let quotes: Vec<usize> = text.match_indices('"').map(|(i, _)| i).collect();
    for pair in quotes.chunks_exact(2) {
        for r in replacements {
            out.push(format!("{}{r}{}", &text[..pair[0] + 1], &text[pair[1]..]));
        }
    }
    out
}

/// A case that reads `file` (in place of `{file}` in `args`). A file of the adversarial data
/// named `ok_*` must be accepted, `any_*` may be either, and any other must be refused; a file
/// made here may be either.
fn file_case(args: &[&str], file: &Path) -> Case {
    let mut args = s(args);
    for a in &mut args {
        if a == "{file}" {
            *a = file.to_str().expect("utf-8").to_string();
        }
    }
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let refused = if !file.starts_with(data()) || name.starts_with("any_") {
        None
    } else {
        Some(!name.starts_with("ok_"))
    };
    Case::File {
        args,
        file: file.to_path_buf(),
        refused,
    }
}

/// Mapping files (`--mapping`): the bad ones of `mappings/` in four contexts (GQA prefill, a
/// decode step through both engines, a multi-pass cascade on two architectures), and every
/// number and string of two printed mappings made extreme or wrong.
fn mapping_cases(generated: &Path) -> Vec<Case> {
    let prefill = [
        "simulate",
        "--arch",
        "fusemax",
        "--workloads",
        "llm",
        "--workload",
        "llama3-8b",
        "--seq",
        "8k",
        "--scenario",
        "prefill",
        "--mapping",
        "{file}",
    ];
    let decode = [
        "simulate",
        "--arch",
        "fusemax",
        "--workloads",
        "llm",
        "--workload",
        "llama3-8b",
        "--seq",
        "4k",
        "--scenario",
        "decode",
        "--batch",
        "1",
        "--engine",
        "both",
        "--mapping",
        "{file}",
    ];
    let three_pass = |arch: &'static str| {
        [
            "simulate",
            "--arch",
            arch,
            "--workload",
            "bert",
            "--seq",
            "1k",
            "--cascade",
            "attention_3pass",
            "--detail",
            "--mapping",
            "{file}",
        ]
    };
    let mut cases = Vec::new();
    for file in files_in(&data().join("mappings")) {
        cases.push(file_case(&prefill, &file));
        cases.push(file_case(&decode, &file));
        cases.push(file_case(&three_pass("fusemax"), &file));
        cases.push(file_case(&three_pass("flat"), &file));
    }
    let numbers = ["0", "-1", "1099511627777", "4294967297", "1.5", "257"];
    let strings = [
        "", "zz", "array3d", "BQK", "p", "m1", "pass", "dram", "../x", "é",
    ];
    for (base, args) in [
        ("any_base.toml", &prefill[..]),
        ("any_base_3pass.toml", &three_pass("fusemax")[..]),
    ] {
        let text = fs::read_to_string(data().join("mappings").join(base)).expect("mapping");
        let mutated = number_mutations(&text, &numbers)
            .into_iter()
            .chain(string_mutations(&text, &strings));
        for (k, m) in mutated.enumerate() {
            let path = write_generated(generated, &format!("mapping_{k}_{base}"), &m);
            cases.push(file_case(args, &path));
        }
    }
    cases
}

/// A NumPy `.npy` file of `shape` holding `values` as little-endian f64.
fn npy(shape: &[usize], values: &[f64]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = if shape.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {tuple}, }}");
    while (header.len() + 11) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    for v in values {
        out.extend(v.to_le_bytes());
    }
    out
}

/// Block masks (`--block-mask`): the files of `masks/` through `simulate` and `zoo`, and masks
/// made here: every odd value in one entry, every shape near the problem's 16 × 16 blocks.
fn mask_cases(generated: &Path) -> Vec<Case> {
    let simulate = [
        "simulate",
        "--arch",
        "fusemax",
        "--workload",
        "bert",
        "--seq",
        "4k",
        "--cascade",
        "block_sparse_2pass",
        "--block-mask",
        "BM={file}",
    ];
    let zoo = [
        "zoo",
        "--workloads",
        "transformers",
        "--workload",
        "bert",
        "--seq",
        "4k",
        "--scenario",
        "prefill",
        "--only",
        "block_sparse",
        "--block-mask",
        "BM={file}",
    ];
    let with_file = |args: &[&str], file: &Path| {
        let arg = format!("BM={}", file.to_str().expect("utf-8"));
        let args: Vec<&str> = args
            .iter()
            .map(|&a| if a == "BM={file}" { arg.as_str() } else { a })
            .collect();
        file_case(&args, file)
    };
    let mut files = files_in(&data().join("masks"));
    let bigbird = |k: usize, q: usize| f64::from(u8::from(k == 0 || k == q));
    let grid = |rows: usize, cols: usize| -> Vec<f64> {
        (0..rows)
            .flat_map(|k| (0..cols).map(move |q| bigbird(k, q)))
            .collect()
    };
    let odd = [
        2.0,
        -1.0,
        0.5,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.0,
        1e-300,
    ];
    for (i, v) in odd.into_iter().enumerate() {
        for at in [0, 17, 255] {
            let mut values = grid(16, 16);
            values[at] = v;
            let name = format!("mask_value_{i}_{at}.npy");
            let path = generated.join(&name);
            fs::write(&path, npy(&[16, 16], &values)).expect("write mask");
            files.push(path);
        }
    }
    for (rows, cols) in [
        (1, 1),
        (16, 1),
        (1, 16),
        (15, 16),
        (16, 17),
        (32, 32),
        (256, 1),
    ] {
        let path = generated.join(format!("mask_{rows}x{cols}.npy"));
        fs::write(&path, npy(&[rows, cols], &grid(rows, cols))).expect("write mask");
        files.push(path);
        let text: String = (0..rows)
            .map(|k| (0..cols).map(move |q| if bigbird(k, q) > 0.0 { '1' } else { '.' }))
            .map(|row| row.collect::<String>() + "\n")
            .collect();
        files.push(write_generated(
            generated,
            &format!("mask_{rows}x{cols}.txt"),
            &text,
        ));
    }
    // Headers that claim more than any file holds: refused before anything is allocated.
    for shape in [
        [1usize << 12, 1 << 12],
        [1 << 13, 1 << 12],
        [1 << 32, 1 << 32],
    ] {
        let mut bytes = npy(&shape, &[]);
        bytes.extend([0u8; 64]);
        let path = generated.join(format!("mask_header_{}x{}.npy", shape[0], shape[1]));
        fs::write(&path, bytes).expect("write mask");
        files.push(path);
    }
    let mut cases = Vec::new();
    for file in &files {
        for args in [&simulate[..], &zoo[..]] {
            let mut case = with_file(args, file);
            // Made here: every odd value and every other shape is refused; -0.0 is a 0.
            if let Case::File { refused, .. } = &mut case {
                let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if name.starts_with("mask_") {
                    *refused = Some(!name.starts_with("mask_value_6_"));
                }
            }
            cases.push(case);
        }
    }
    cases
}

/// Edge values of the LLM inputs: `--batch`, `--scenario` and `--seq` (prefill lengths and
/// decode caches) through `simulate` (both engines) and `zoo`, and `zoo`'s own flags.
fn llm_value_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |args: Vec<String>, expect: Expect| cases.push(Case::Run { args, expect });
    let llm = ["--workloads", "llm", "--workload", "llama3-8b,deepseek-v3"];
    let batches = [
        ("0", Expect::UserError),
        ("-1", Expect::UserError),
        ("1", Expect::Ok),
        ("1,0", Expect::UserError),
        ("", Expect::UserError),
        (",", Expect::UserError),
        ("1k", Expect::Ok),
        ("1M", Expect::Ok),
        ("1048577", Expect::UserError),
        ("4294967296", Expect::UserError),
        ("1099511627776", Expect::UserError),
        ("18446744073709551616", Expect::UserError),
        ("x", Expect::UserError),
        ("1.5", Expect::UserError),
    ];
    for (b, expect) in batches {
        for scenario in ["decode", "all", "prefill"] {
            let mut args = s(&["simulate", "--arch", "fusemax", "--seq", "4k", "--batch", b]);
            args.extend(s(&llm));
            args.extend(s(&["--scenario", scenario]));
            add(args, expect);
        }
        add(
            s(&["zoo", "--seq", "1k", "--only", "gqa", "--batch", b]),
            expect,
        );
    }
    let scenarios = [
        ("prefill", Expect::Ok),
        ("decode", Expect::Ok),
        ("all", Expect::Ok),
        ("bogus", Expect::UserError),
        ("", Expect::UserError),
        ("PREFILL", Expect::UserError),
        ("prefill,decode", Expect::UserError),
    ];
    for (sc, expect) in scenarios {
        let mut args = s(&[
            "simulate", "--arch", "fusemax", "--seq", "1k", "--batch", "1",
        ]);
        args.extend(s(&llm));
        args.extend(s(&["--scenario", sc]));
        add(args, expect);
        add(
            s(&["zoo", "--seq", "1k", "--only", "mla", "--scenario", sc]),
            expect,
        );
    }
    // A set without decode points asked for them.
    add(
        s(&[
            "simulate",
            "--arch",
            "fusemax",
            "--workload",
            "bert",
            "--seq",
            "1k",
            "--scenario",
            "decode",
        ]),
        Expect::UserError,
    );
    let seqs = [
        ("0", Expect::UserError),
        ("1", Expect::Ok),
        ("1,0", Expect::UserError),
        ("16M", Expect::Ok),
        ("4096M", Expect::Either),
        ("4097M", Expect::UserError),
    ];
    for (seq, expect) in seqs {
        // The cycle engine executes every key tile of a 16M cache (65,536 slots, a minute in a
        // debug build); lengths past its limit are refused below.
        let engines: &[&str] = if seq == "16M" {
            &["analytical"]
        } else {
            &["analytical", "both"]
        };
        for &engine in engines {
            let mut args = s(&["simulate", "--arch", "fusemax", "--scenario", "decode"]);
            args.extend(s(&["--batch", "16", "--engine", engine, "--seq", seq]));
            args.extend(s(&llm));
            add(args, expect);
        }
        add(
            s(&[
                "zoo",
                "--scenario",
                "decode",
                "--only",
                "window",
                "--seq",
                seq,
            ]),
            expect,
        );
    }
    // Prefill of every model at its own lengths, up to 128K (a window is a parameter, not a
    // loop, so no point is too large to count).
    add(
        s(&[
            "simulate",
            "--arch",
            "fusemax",
            "--workloads",
            "llm",
            "--workload",
            "all",
        ]),
        Expect::Ok,
    );
    // The cycle engine at lengths it would take hours to execute slot by slot: refused.
    for (seq, slots) in [
        ("1M", "0"),
        ("1M", "18446744073709551615"),
        ("4096M", "4096"),
    ] {
        add(
            s(&[
                "simulate",
                "--arch",
                "fusemax",
                "--workloads",
                "llm",
                "--workload",
                "llama3-8b",
                "--engine",
                "cycle",
                "--seq",
                seq,
                "--max-slots",
                slots,
            ]),
            Expect::UserError,
        );
    }
    let zoo_flags: [(&[&str], Expect); 16] = [
        (&["--only", "zzz"], Expect::UserError),
        (&["--only", ""], Expect::Either),
        (&["--shape", "W=0"], Expect::UserError),
        (&["--shape", "H=4294967297"], Expect::UserError),
        (
            &["--shape", "H=4294967296", "--only", "gqa"],
            Expect::Either,
        ),
        (
            &["--shape", "M0=1", "--only", "block", "--seq", "4k"],
            Expect::Ok,
        ),
        (&["--shape", "P0=0"], Expect::UserError),
        (&["--shape", "E=1", "--only", "mla"], Expect::Ok),
        (&["--seq", "4096M", "--only", "block"], Expect::Ok),
        (
            &["--seq", "1M", "--only", "block", "--scenario", "decode"],
            Expect::Ok,
        ),
        (&["--workloads", "nope"], Expect::UserError),
        (
            &["--workloads", "transformers", "--scenario", "decode"],
            Expect::UserError,
        ),
        (
            &[
                "--workloads",
                "transformers",
                "--workload",
                "bert",
                "--seq",
                "1k",
            ],
            Expect::Ok,
        ),
        (&["--block-mask", "BM"], Expect::UserError),
        (&["--block-mask", "XX=/dev/null"], Expect::UserError),
        (&["--arch", "nope"], Expect::UserError),
    ];
    for (flags, expect) in zoo_flags {
        let mut args = s(&["zoo", "--batch", "1"]);
        args.extend(s(flags));
        add(args, expect);
    }
    cases
}

/// Grids of edge values for the sizes, counts and limits of every command.
fn value_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |args: Vec<String>, expect: Expect| cases.push(Case::Run { args, expect });
    let sizes = [
        ("0", Expect::UserError),
        ("-1", Expect::UserError),
        ("1", Expect::Ok),
        ("3", Expect::Ok),
        ("4294967297", Expect::UserError),
        ("9223372036854775807", Expect::UserError),
        ("9223372036854775808", Expect::UserError),
        ("1e3", Expect::UserError),
        ("0x10", Expect::UserError),
        ("", Expect::UserError),
        (" 2 ", Expect::Ok),
        ("2k", Expect::Either),
        ("8388608M", Expect::UserError),
    ];
    for name in cascade_ir::library::names() {
        let c = cascade_ir::dsl::parse(cascade_ir::library::source(name).expect("lib"), name)
            .expect("library parses")
            .cascade;
        let ranks: Vec<&str> = c
            .ranks
            .iter()
            .filter(|r| {
                !c.ranks.iter().any(|p| {
                    p.split
                        .is_some_and(|(a, b)| c.rank(a).name == r.name || c.rank(b).name == r.name)
                })
            })
            .map(|r| r.name.as_str())
            .collect();
        // Each value lands on one rank of each cascade, a different one for each value.
        for (k, (value, expect)) in sizes.into_iter().enumerate() {
            {
                let edited = k % ranks.len();
                let shape: Vec<String> = ranks
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        if i == edited {
                            format!("{r}={value}")
                        } else {
                            format!("{r}=2")
                        }
                    })
                    .collect();
                let shape = shape.join(",");
                add(
                    s(&["eval", name, "--shape", &shape, "--max-memory", "64M"]),
                    expect,
                );
                add(s(&["passes", name, "--shape", &shape]), expect);
            }
        }
    }
    let seqs = [
        ("0", Expect::UserError),
        ("1", Expect::Ok),
        ("-1", Expect::UserError),
        ("1k,", Expect::Ok),
        ("4096M", Expect::Either),
        ("4097M", Expect::UserError),
        ("18446744073709551616", Expect::UserError),
        ("k", Expect::UserError),
        ("1kk", Expect::UserError),
        ("１k", Expect::UserError),
    ];
    for (seq, expect) in seqs {
        for arch in ["fusemax", "flat", "unfused"] {
            add(
                s(&[
                    "simulate",
                    "--arch",
                    arch,
                    "--seq",
                    seq,
                    "--workload",
                    "bert",
                ]),
                expect,
            );
        }
        add(
            s(&[
                "compare",
                "--arch",
                "fusemax",
                "--vs",
                "flat",
                "--seq",
                seq,
                "--workload",
                "t5",
            ]),
            expect,
        );
        add(
            s(&[
                "sweep", "--arch", "fusemax", "--pe-dim", "16..32", "--seq", seq,
            ]),
            expect,
        );
    }
    let dims = [
        ("16..512", Expect::Ok),
        ("1..1", Expect::Ok),
        ("1..2:1", Expect::Ok),
        ("0..0", Expect::UserError),
        ("16..8", Expect::UserError),
        ("65536..65536", Expect::Ok),
        ("65537..65537", Expect::UserError),
        ("1..65536:65535", Expect::Ok),
        ("1..18446744073709551615", Expect::UserError),
        ("1..2:18446744073709551615", Expect::Ok),
        ("1..2:18446744073709551616", Expect::UserError),
        ("-1..2", Expect::UserError),
        ("a..b", Expect::UserError),
        ("16...32", Expect::UserError),
    ];
    for (dim, expect) in dims {
        add(
            s(&["sweep", "--arch", "fusemax", "--pe-dim", dim, "--seq", "1k"]),
            expect,
        );
    }
    let buffers = [
        ("1", Expect::Ok),
        ("0", Expect::UserError),
        ("1T", Expect::Ok),
        ("2T", Expect::UserError),
        ("1G", Expect::Ok),
        ("-64k", Expect::UserError),
        ("64 k", Expect::UserError),
        ("18446744073709551615", Expect::UserError),
    ];
    for (b, expect) in buffers {
        add(
            s(&[
                "sweep",
                "--arch",
                "fusemax",
                "--pe-dim",
                "16..16",
                "--seq",
                "1k",
                "--max-buffer",
                b,
                "--min-buffer",
                "1",
            ]),
            expect,
        );
    }
    let schedule = [
        "0",
        "1",
        "2",
        "15",
        "16",
        "17",
        "32",
        "33",
        "64",
        "256",
        "1024",
        "1040",
        "4096",
        "65535",
        "4294967295",
        "4294967296",
        "-1",
    ];
    for target in ["cuda", "hip", "cpp"] {
        for flag in ["--warps", "--block-n", "--head-dim"] {
            for v in schedule {
                add(
                    s(&[
                        "codegen",
                        "attention_1pass",
                        "--target",
                        target,
                        flag,
                        v,
                        "--out",
                        "{dir}/k",
                    ]),
                    Expect::Either,
                );
            }
        }
    }
    let memory = [
        ("0", Expect::UserError),
        ("1", Expect::UserError),
        ("1M", Expect::Ok),
        ("1P", Expect::Ok),
        ("2P", Expect::UserError),
        ("1E", Expect::UserError),
        ("4g", Expect::Ok),
    ];
    for (m, expect) in memory {
        add(
            s(&[
                "eval",
                "attention_1pass",
                "--shape",
                "E=2,F=2,M=8,P=2",
                "--max-memory",
                m,
            ]),
            expect,
        );
    }
    let limits = [
        "0",
        "1",
        "-1",
        "18446744073709551615",
        "18446744073709551616",
    ];
    for v in limits {
        add(
            s(&[
                "simulate",
                "--arch",
                "fusemax",
                "--seq",
                "1k",
                "--workload",
                "bert",
                "--engine",
                "cycle",
                "--max-slots",
                v,
            ]),
            Expect::Either,
        );
        add(
            s(&[
                "eval",
                "attention_1pass",
                "--shape",
                "E=2,F=2,M=8,P=2",
                "--seed",
                v,
            ]),
            Expect::Either,
        );
    }
    cases
}

/// Runs `case` in its own scratch directory; `Err` describes the broken contract.
fn check_case(case: &Case, scratch: &Path) -> Result<(), String> {
    match case {
        Case::Run { args, expect } => {
            let dir = scratch.to_str().ok_or("non-UTF-8 path")?;
            let args: Vec<String> = args.iter().map(|a| a.replace("{dir}", dir)).collect();
            contract(&args, *expect, scratch).map(|_| ())
        }
        Case::Cascade(path) => run_cascade(path, scratch),
        Case::File {
            args,
            file,
            refused,
        } => {
            let out = contract(args, Expect::Either, scratch)?;
            let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if out.code == 1 && !out.stderr.contains(name) {
                return Err(format!("the error does not name {name}: {}", out.stderr));
            }
            let infeasible = out.stdout.contains("\"infeasible\": \"");
            match refused {
                Some(true) if out.code == 0 && !infeasible => {
                    Err(format!("{name} is accepted, but it must be refused"))
                }
                Some(false) if out.code != 0 || infeasible => Err(format!(
                    "{name} is refused, but it is valid: {}{}",
                    out.stderr,
                    out.stdout
                        .lines()
                        .find(|l| l.contains("infeasible"))
                        .unwrap_or("")
                )),
                _ => Ok(()),
            }
        }
    }
}

fn describe(case: &Case) -> String {
    match case {
        Case::Run { args, .. } => args.join(" "),
        Case::Cascade(path) => format!("cascade file {}", path.display()),
        Case::File { args, .. } => args.join(" "),
    }
}

#[test]
fn adversarial_inputs_never_panic_hang_or_break_the_contract() {
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("adversarial");
    let _ = fs::remove_dir_all(&work);
    let generated = work.join("inputs");
    fs::create_dir_all(&generated).expect("scratch dir");
    let groups = [
        ("listed", listed_cases()),
        ("cascade files", cascade_cases(&generated)),
        ("architecture files", arch_cases(&generated)),
        ("workload files", workload_cases(&generated)),
        ("mapping files", mapping_cases(&generated)),
        ("block masks", mask_cases(&generated)),
        ("edge values", value_cases()),
        ("LLM edge values", llm_value_cases()),
    ];
    let counts: Vec<String> = groups
        .iter()
        .map(|(what, cases)| format!("{} {what}", cases.len()))
        .collect();
    let cases: Vec<Case> = groups.into_iter().flat_map(|(_, cases)| cases).collect();
    assert!(cases.len() > 1000, "only {} cases", cases.len());
    // ADVERSARIAL_ONLY=TEXT runs only the cases whose command line contains TEXT (to iterate
    // on one kind; the whole pass is the test).
    let only = std::env::var("ADVERSARIAL_ONLY").ok();
    let cases: Vec<Case> = cases
        .into_iter()
        .filter(|c| {
            only.as_ref()
                .is_none_or(|o| describe(c).contains(o.as_str()))
        })
        .collect();
    eprintln!("{} adversarial cases: {}", cases.len(), counts.join(", "));

    let next = AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let failures: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut failed = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(case) = cases.get(i) else {
                            return failed;
                        };
                        let scratch = work.join(format!("case-{i}"));
                        fs::create_dir_all(&scratch).expect("scratch");
                        if let Err(why) = check_case(case, &scratch) {
                            failed.push(format!("{}: {why}", describe(case)));
                        }
                        let _ = fs::remove_dir_all(&scratch);
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("worker"))
            .collect()
    });
    let _ = fs::write(work.join("failures.txt"), failures.join("\n"));
    assert!(
        failures.is_empty(),
        "{} of {} cases broke the contract:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
