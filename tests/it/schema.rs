//! The one output schema (`docs/output.md`): every result command prints the same fields, with
//! the same names, units and values, as a text table, CSV and JSON; every field is documented;
//! `compare`'s CSV holds one record per point; and a sweep cut into shards and merged again is
//! the unsharded sweep.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::{cascade, stderr, stdout};

/// The schema version the binary prints, as `docs/output.md` states it.
const SCHEMA_VERSION: u64 = 1;

fn run_ok(args: &[&str]) -> String {
    let out = cascade(args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

/// A CSV's header and records (all of the header's width: the csv crate refuses others).
fn parse_csv(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let header = r
        .headers()
        .expect("a header")
        .iter()
        .map(String::from)
        .collect();
    let rows = r
        .records()
        .map(|rec| rec.expect("a record").iter().map(String::from).collect())
        .collect();
    (header, rows)
}

/// The markdown tables of a text output: each one's header and rows of trimmed cells.
fn parse_text_tables(text: &str) -> Vec<(Vec<String>, Vec<Vec<String>>)> {
    let cells = |line: &str| -> Vec<String> {
        let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
        inner.split('|').map(|c| c.trim().to_string()).collect()
    };
    let mut tables = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if !line.starts_with('|') {
            continue;
        }
        let header = cells(line);
        let mut rows = Vec::new();
        while let Some(next) = lines.next_if(|l| l.starts_with('|')) {
            if !next.starts_with("|-") {
                rows.push(cells(next));
            }
        }
        tables.push((header, rows));
    }
    tables
}

/// `64K` → 65536, `1M` → 1048576, `100` → 100: a sequence length as text prints it.
fn seq_value(cell: &str) -> Option<u64> {
    let (digits, unit) = match cell.strip_suffix('K') {
        Some(d) => (d, 1 << 10),
        None => match cell.strip_suffix('M') {
            Some(d) => (d, 1 << 20),
            None => (cell, 1),
        },
    };
    digits.parse::<u64>().ok().map(|n| n * unit)
}

/// Half a unit of the last printed digit of a text number (`9.4130e-3` → 5e-8, `0.889` → 5e-4,
/// `16` → 0.5): how far the unrounded value may be from it.
fn printing_precision(cell: &str) -> f64 {
    let (mantissa, exponent) = match cell.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().expect("an exponent")),
        None => (cell, 0),
    };
    let decimals = mantissa.split_once('.').map_or(0, |(_, d)| d.len()) as i32;
    0.5 * 10f64.powi(exponent - decimals)
}

/// A text cell shows the CSV's value, to its printing precision.
fn text_shows(text: &str, csv: &str, what: &str) {
    if text == csv {
        return;
    }
    if let (Some(t), Ok(c)) = (seq_value(text), csv.parse::<u64>()) {
        assert_eq!(t, c, "{what}: text `{text}`, CSV `{csv}`");
        return;
    }
    let (Ok(t), Ok(c)) = (text.parse::<f64>(), csv.parse::<f64>()) else {
        panic!("{what}: text `{text}`, CSV `{csv}`");
    };
    // 1e-9 of slack for the decimal printing of the bound itself.
    let tolerance = printing_precision(text) * (1.0 + 1e-9);
    assert!(
        (t - c).abs() <= tolerance,
        "{what}: text `{text}` is not CSV `{csv}` to ±{tolerance:e}"
    );
}

/// A JSON value is the CSV cell: the same string, flag or number, `null` for an empty cell.
/// Both print the shortest text that reads back as the same float; serde_json's reader (without
/// its `float_roundtrip` feature) may land an ulp or two away, so numbers agree to 4 ulps.
fn json_is(value: &Value, cell: &str, what: &str) {
    let same = match value {
        Value::Null => cell.is_empty(),
        Value::String(s) => s == cell,
        Value::Bool(b) => b.to_string() == cell,
        Value::Number(n) => match (cell.parse::<f64>(), n.as_f64()) {
            (Ok(c), Some(j)) => (c - j).abs() <= 4.0 * f64::EPSILON * c.abs(),
            _ => false,
        },
        _ => false,
    };
    assert!(same, "{what}: JSON {value}, CSV `{cell}`");
}

/// A field's name as `docs/output.md` lists it: a unit's or a baseline's name in a field is
/// the placeholder `<unit>` or `<baseline>`.
fn documented_name(name: &str) -> String {
    for prefix in ["cycle_util_", "util_", "occupancy_"] {
        if name.starts_with(prefix) {
            return format!("{prefix}<unit>");
        }
    }
    match name.split_once("_vs_") {
        Some((kind, _)) => format!("{kind}_vs_<baseline>"),
        None => name.to_string(),
    }
}

fn output_doc() -> String {
    fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/output.md"))
        .expect("docs/output.md")
}

/// The three formats of one command.
struct Formats {
    csv_header: Vec<String>,
    csv_rows: Vec<Vec<String>>,
    json: Value,
    text: Vec<(Vec<String>, Vec<Vec<String>>)>,
}

/// Runs `args` as text, CSV and JSON and checks that they agree: the CSV starts each record
/// with the schema version; the JSON document has it, names the command and holds one point
/// per CSV record with every CSV column as a key and the same value; every text column is a
/// CSV column with the CSV's value to the text's precision, row for row; and every field and
/// key is documented in `docs/output.md`.
fn check(args: &[&str]) -> Formats {
    let csv_text = run_ok(&[args, &["--format", "csv"]].concat());
    let (csv_header, csv_rows) = parse_csv(&csv_text);
    let json: Value = serde_json::from_str(&run_ok(&[args, &["--format", "json"]].concat()))
        .expect("JSON output");
    let text = parse_text_tables(&run_ok(args));
    let command = args[0];
    assert_eq!(csv_header[0], "schema_version", "{command}");
    assert!(
        csv_rows.iter().all(|r| r[0] == SCHEMA_VERSION.to_string()),
        "{command}: every record says its schema version"
    );
    assert_eq!(json["schema_version"], SCHEMA_VERSION, "{command}");
    assert_eq!(json["command"], command);
    let points = json["points"].as_array().expect("points");
    assert_eq!(
        points.len(),
        csv_rows.len(),
        "{command}: one point per record"
    );
    for (row, point) in csv_rows.iter().zip(points) {
        for (name, cell) in csv_header.iter().zip(row).skip(1) {
            let value = point
                .get(name)
                .unwrap_or_else(|| panic!("{command}: JSON point without `{name}`"));
            json_is(value, cell, &format!("{command} {name}"));
        }
    }
    assert!(!text.is_empty(), "{command}: a text table");
    for (header, rows) in &text {
        for (k, name) in header.iter().enumerate() {
            let c = csv_header
                .iter()
                .position(|h| h == name)
                .unwrap_or_else(|| panic!("{command}: text column `{name}` is not a CSV column"));
            for (text_row, csv_row) in rows.iter().zip(&csv_rows) {
                text_shows(&text_row[k], &csv_row[c], &format!("{command} {name}"));
            }
        }
    }
    let doc = output_doc();
    let mut names: Vec<String> = csv_header.iter().map(|h| documented_name(h)).collect();
    names.extend(json.as_object().unwrap().keys().cloned());
    for p in points {
        names.extend(p.as_object().unwrap().keys().map(|k| documented_name(k)));
    }
    for name in names {
        assert!(
            doc.contains(&format!("`{name}`")),
            "{command}: `{name}` is not in docs/output.md"
        );
    }
    Formats {
        csv_header,
        csv_rows,
        json,
        text,
    }
}

#[test]
fn simulate_prints_one_schema() {
    let f = check(&[
        "simulate",
        "--arch",
        "fusemax",
        "--workload",
        "bert,xlm",
        "--seq",
        "1k,64k",
    ]);
    assert_eq!(f.csv_rows.len(), 4);
    // The total energy is its five kinds summed, and seconds are cycles over the clock.
    let col = |name: &str| f.csv_header.iter().position(|h| h == name).unwrap();
    for row in &f.csv_rows {
        let x = |name: &str| row[col(name)].parse::<f64>().unwrap();
        let kinds = x("energy_compute_j")
            + x("energy_register_j")
            + x("energy_buffer_j")
            + x("energy_dram_j")
            + x("energy_leakage_j");
        assert!((kinds - x("energy_j")).abs() <= 1e-12 * x("energy_j"));
        // Seconds are cycles over FuseMax's 940 MHz clock.
        assert!((x("latency_s") - x("latency_cycles") / 940e6).abs() <= 1e-12 * x("latency_s"));
    }
    // Bytes, not GB: BERT at 1K reads Q, K and V and writes AV once, 4 tensors of 64 × 1024
    // words of 2 bytes, in each of its 768 instances (12 heads × a batch of 64).
    let bert_1k = &f.csv_rows[0];
    assert_eq!(bert_1k[col("model")], "BERT");
    assert_eq!(
        bert_1k[col("dram_bytes")].parse::<f64>().unwrap(),
        (768 * 4 * 64 * 1024 * 2) as f64
    );
    // The hidden `--csv` of older scripts prints the same CSV.
    assert_eq!(
        run_ok(&[
            "simulate",
            "--arch",
            "fusemax",
            "--workload",
            "bert",
            "--seq",
            "1k",
            "--csv"
        ]),
        run_ok(&[
            "simulate",
            "--arch",
            "fusemax",
            "--workload",
            "bert",
            "--seq",
            "1k",
            "--format",
            "csv"
        ])
    );
}

#[test]
fn simulate_with_the_cycle_engine_and_infeasible_points_prints_one_schema() {
    let f = check(&[
        "simulate",
        "--arch",
        "fusemax",
        "--workload",
        "bert",
        "--seq",
        "1k",
        "--engine",
        "both",
    ]);
    assert_eq!(
        f.text.len(),
        2,
        "the analytical table and the cycle engine's"
    );
    let row = &f.json["points"][0];
    let ratio = row["cycle_over_analytical"].as_f64().unwrap();
    let want =
        row["cycle_latency_cycles"].as_f64().unwrap() / row["latency_cycles"].as_f64().unwrap();
    assert!((ratio - want).abs() <= 1e-12);
    // A key tile of 1024 keys on a 256-row array: the reason, and no numbers.
    let f = check(&[
        "simulate",
        "--arch",
        "fusemax",
        "--cascade",
        "attention_causal_1pass",
        "--shape",
        "M0=1024",
        "--workload",
        "t5",
        "--seq",
        "4k",
    ]);
    let p = &f.json["points"][0];
    assert!(
        p["infeasible"]
            .as_str()
            .unwrap()
            .contains("does not fit the 256 rows"),
        "{p}"
    );
    assert_eq!(p["latency_s"], Value::Null);
    // `table` is the text format's other name.
    let args = [
        "simulate",
        "--arch",
        "fusemax",
        "--workload",
        "bert",
        "--seq",
        "1k",
        "--format",
    ];
    assert_eq!(
        run_ok(&[&args[..], &["table"]].concat()),
        run_ok(&[&args[..], &["text"]].concat())
    );
}

#[test]
fn compare_prints_one_record_per_point_and_the_means_apart() {
    let args = [
        "compare",
        "--arch",
        "fusemax",
        "--vs",
        "flat",
        "--vs",
        "unfused",
        "--end-to-end",
    ];
    let f = check(&args);
    // The 24 points of the FuseMax evaluation (4 models × 6 lengths), and no mean record.
    assert_eq!(f.csv_rows.len(), 24);
    assert!(f.csv_rows.iter().all(|r| r[1] != "mean"));
    assert_eq!(
        f.csv_header[1..],
        [
            "model",
            "seq",
            "speedup_vs_flat",
            "energy_ratio_vs_flat",
            "speedup_vs_unfused",
            "energy_ratio_vs_unfused",
            "e2e_speedup_vs_flat",
            "e2e_energy_ratio_vs_flat",
            "e2e_speedup_vs_unfused",
            "e2e_energy_ratio_vs_unfused",
            "infeasible",
        ]
    );
    // The summary: the arithmetic mean of each ratio over the 24 points, in JSON, in the text
    // table's last row and in `--summary FILE`.
    let summary = &f.json["summary"];
    assert_eq!(summary["n_points"], 24);
    let (table_header, table_rows) = &f.text[0];
    let mean_row = table_rows.last().unwrap();
    assert_eq!(
        (mean_row[0].as_str(), mean_row[1].as_str()),
        ("mean", "24 pts")
    );
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("schema_summary");
    fs::create_dir_all(&dir).unwrap();
    let file = dir.join("summary.csv");
    run_ok(&[&args[..], &["--summary", file.to_str().unwrap()]].concat());
    let (sum_header, sum_rows) = parse_csv(&fs::read_to_string(&file).unwrap());
    assert_eq!(sum_rows.len(), 1);
    for (k, name) in f.csv_header.iter().enumerate().skip(3) {
        if name == "infeasible" {
            continue;
        }
        let mean = f
            .csv_rows
            .iter()
            .map(|r| r[k].parse::<f64>().unwrap())
            .sum::<f64>()
            / 24.0;
        let json = summary[name].as_f64().unwrap();
        assert!(
            (json - mean).abs() <= 1e-12 * mean,
            "{name}: {json} vs {mean}"
        );
        let t = table_header.iter().position(|h| h == name).unwrap();
        text_shows(&mean_row[t], &json.to_string(), name);
        let s = sum_header.iter().position(|h| h == name).unwrap();
        json_is(&summary[name], &sum_rows[0][s], name);
    }
}

#[test]
fn sweep_zoo_and_scale_print_one_schema() {
    let f = check(&[
        "sweep", "--arch", "fusemax", "--pe-dim", "16..128", "--seq", "1k",
    ]);
    assert_eq!(f.csv_rows.len(), 4);
    assert_eq!(f.json["sweep_points"], 4);
    let f = check(&["zoo", "--only", "gqa", "--seq", "8k", "--batch", "1"]);
    assert!(!f.csv_rows.is_empty());
    // 4K over 1 to 16 chips: five points, the last infeasible (too few tiles for 32 chunks).
    let f = check(&[
        "scale",
        "--arch",
        "ring-fusemax",
        "--seq",
        "4k",
        "--chips",
        "1..16",
    ]);
    assert_eq!(f.csv_rows.len(), 5);
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("schema")
        .join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("test dir");
    dir
}

/// Two workload points × four array sizes: eight design points, sweep positions 0–7.
const SWEEP: [&str; 7] = [
    "sweep", "--arch", "fusemax", "--pe-dim", "16..128", "--seq", "1k,4k",
];

/// Runs the sweep as shards `1/n` … `n/n`, each written to `dir/{name}{k}.csv`.
fn write_shards(dir: &Path, name: &str, n: u64) -> Vec<PathBuf> {
    (1..=n)
        .map(|k| {
            let file = dir.join(format!("{name}{k}.csv"));
            let shard = format!("{k}/{n}");
            run_ok(
                &[
                    &SWEEP[..],
                    &["--shard", &shard, "--out", file.to_str().unwrap()],
                ]
                .concat(),
            );
            file
        })
        .collect()
}

#[test]
fn sharded_and_merged_is_the_unsharded_sweep() {
    let dir = fresh_dir("shards");
    let whole = run_ok(&[&SWEEP[..], &["--format", "csv"]].concat());
    // Three shards deal the eight points round-robin: 0,3,6 / 1,4,7 / 2,5.
    let files = write_shards(&dir, "shard", 3);
    for (file, k) in files.iter().zip(1u64..) {
        let (header, rows) = parse_csv(&fs::read_to_string(file).unwrap());
        let index = header.iter().position(|h| h == "sweep_index").unwrap();
        let pareto = header.iter().position(|h| h == "pareto").unwrap();
        let got: Vec<u64> = rows.iter().map(|r| r[index].parse().unwrap()).collect();
        let want: Vec<u64> = (0..8).filter(|i| i % 3 == k - 1).collect();
        assert_eq!(got, want, "shard {k}");
        // One shard cannot know the front.
        assert!(rows.iter().all(|r| r[pareto].is_empty()), "shard {k}");
    }
    // In any order, the merged files are the whole sweep, front included.
    let names: Vec<&str> = files.iter().rev().map(|f| f.to_str().unwrap()).collect();
    let plot = dir.join("merged.svg");
    let merged = run_ok(
        &[
            &["merge-sweep"][..],
            &names,
            &["--format", "csv", "--plot", plot.to_str().unwrap()],
        ]
        .concat(),
    );
    assert_eq!(merged, whole);
    assert!(fs::read_to_string(&plot).unwrap().contains("<circle"));
    // merge-sweep prints the same schema in every format.
    let f = check(&[&["merge-sweep"][..], &names].concat());
    assert_eq!(f.csv_rows.len(), 8);
    // More shards than points: the empty ones hold only the header, and merge with the rest.
    let many = write_shards(&dir, "of10_", 10);
    assert_eq!(fs::read_to_string(&many[9]).unwrap().lines().count(), 1);
    let many: Vec<&str> = many.iter().map(|f| f.to_str().unwrap()).collect();
    assert_eq!(
        run_ok(&[&["merge-sweep"][..], &many, &["--format", "csv"]].concat()),
        whole
    );
}

/// Runs `args`; it must fail with exit 1 and a message holding every one of `needles`.
fn refused(args: &[&str], needles: &[&str]) {
    let out = cascade(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: no `{n}` in {err}");
    }
}

#[test]
fn shards_and_merges_that_cannot_be_right_are_refused() {
    for (shard, why) in [
        ("0/4", "K = 0 is not one of the 4 shards"),
        ("5/4", "K = 5 is not one of the 4 shards"),
        ("1/0", "N = 0 shards"),
        ("1/1048577", "N = 1048577 shards"),
        ("3", "is not K/N"),
        ("a/4", "K `a` is not a whole number"),
        ("2/4.5", "N `4.5` is not a whole number"),
    ] {
        refused(&[&SWEEP[..], &["--shard", shard]].concat(), &[why]);
    }
    refused(
        &[&SWEEP[..], &["--shard", "1/2", "--plot", "x.svg"]].concat(),
        &["merge-sweep"],
    );
    let dir = fresh_dir("bad_merges");
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let (one, two) = (path("one.csv"), path("two.csv"));
    run_ok(&[&SWEEP[..], &["--shard", "1/2", "--out", &one]].concat());
    run_ok(&[&SWEEP[..], &["--shard", "2/2", "--out", &two]].concat());
    // A shard missing: the count and the first missing positions.
    refused(
        &["merge-sweep", &one],
        &[
            "4 of the sweep's 8 design points",
            "missing sweep_index 1, 3, 5, 7",
        ],
    );
    // A shard twice: the overlapping point, at both places (the first record is on line 2).
    refused(
        &["merge-sweep", &one, &two, &one],
        &["design point 0 is also at", &format!("{one}:2")],
    );
    // Another sweep's shard: another architecture.
    let other = path("other.csv");
    run_ok(
        &[
            &[
                "sweep", "--arch", "flat", "--pe-dim", "16..128", "--seq", "1k,4k",
            ][..],
            &["--shard", "2/2", "--out", &other],
        ]
        .concat(),
    );
    refused(
        &["merge-sweep", &one, &other],
        &[&format!("{other}:2"), "`arch` is `flat` but `fusemax`"],
    );
    // Edited files: the file and line, and what is wrong there.
    let text = fs::read_to_string(&two).unwrap();
    let edit = |name: &str, from: &str, to: &str, line: usize| -> String {
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        lines[line - 1] = lines[line - 1].replacen(from, to, 1);
        let p = path(name);
        fs::write(&p, lines.join("\n") + "\n").unwrap();
        p
    };
    let version = edit("version.csv", "1,", "2,", 3);
    refused(
        &["merge-sweep", &one, &version],
        &[
            &format!("{version}:3"),
            "schema_version `2`, but this cascade reads 1",
        ],
    );
    let header = edit("header.csv", "energy_j", "energy_pj", 1);
    refused(
        &["merge-sweep", &one, &header],
        &[
            &format!("{header}:1"),
            "the header is not that of a `cascade sweep` CSV",
        ],
    );
    let number = edit("number.csv", "converged,", "converged,fast", 2);
    refused(
        &["merge-sweep", &one, &number],
        &[
            &format!("{number}:2"),
            "`latency_s` is `fast",
            "not a positive finite number",
        ],
    );
    let short = edit("short.csv", ",false,", ",", 4);
    refused(&["merge-sweep", &one, &short], &[&format!("{short}:4")]);
    refused(
        &["merge-sweep", &path("absent.csv")],
        &["cannot read", "absent.csv"],
    );
}

#[test]
fn one_point_has_the_same_fields_in_simulate_and_zoo() {
    // Llama-3-8B prefill at 8K running attention_1pass, once through each command.
    let point = [
        "--arch",
        "fusemax",
        "--workloads",
        "llm",
        "--workload",
        "llama3-8b",
        "--scenario",
        "prefill",
        "--seq",
        "8k",
        "--format",
        "json",
    ];
    let simulate: Value = serde_json::from_str(&run_ok(
        &[&["simulate", "--cascade", "attention_1pass"][..], &point].concat(),
    ))
    .unwrap();
    let zoo: Value = serde_json::from_str(&run_ok(
        &[&["zoo", "--only", "attention_1pass"][..], &point].concat(),
    ))
    .unwrap();
    let a = &simulate["points"][0];
    let b = zoo["points"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["cascade"] == "attention_1pass")
        .expect("attention_1pass in the zoo");
    let shared: Vec<&String> = a
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| b.get(k.as_str()).is_some() && !["units"].contains(&k.as_str()))
        .collect();
    for key in [
        "model",
        "cascade",
        "seq",
        "latency_s",
        "latency_cycles",
        "energy_j",
        "dram_bytes",
        "util_array2d",
        "occupancy_array2d",
        "bound",
    ] {
        assert!(shared.iter().any(|k| *k == key), "{key} in both");
    }
    for key in shared {
        assert_eq!(a[key], b[key], "{key}");
    }
}
