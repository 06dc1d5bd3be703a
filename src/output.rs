//! Output plumbing shared by every command: `--format`, user errors (exit 1), JSON and CSV
//! helpers.

use std::fmt;
use std::io::{IsTerminal, Write as _};

use cascade_ir::dsl::{Diagnostics, LineIndex};
use serde_json::{Value, json};

/// How a command prints its result (and its errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    #[value(alias = "table")]
    Text,
    Json,
}

/// The global `--format`: [`Format`] plus CSV, which only the tabular commands print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Human-readable text and tables.
    #[value(alias = "table")]
    Text,
    Json,
    /// One CSV record per point (simulate, compare, sweep, merge-sweep, zoo).
    Csv,
}

/// The commands that print `--format csv`.
pub const CSV_COMMANDS: [&str; 6] = [
    "simulate",
    "compare",
    "sweep",
    "merge-sweep",
    "scale",
    "zoo",
];

impl OutputFormat {
    /// The format for a command that prints text or JSON only; `--format csv` is a user error.
    pub fn plain(self, command: &str) -> Result<Format, UserError> {
        match self {
            OutputFormat::Text => Ok(Format::Text),
            OutputFormat::Json => Ok(Format::Json),
            OutputFormat::Csv => Err(UserError::message(format!(
                "`{command}` has no CSV output; --format csv works with {}. Use --format text or --format json",
                CSV_COMMANDS.join(", ")
            ))),
        }
    }

    /// How errors are printed: CSV has no error records, so as text.
    pub fn for_errors(self) -> Format {
        match self {
            OutputFormat::Json => Format::Json,
            OutputFormat::Text | OutputFormat::Csv => Format::Text,
        }
    }
}

/// A mistake in the user's input. `main` prints it on stderr and exits with status 1;
/// any other error is a bug and exits with status 2.
#[derive(Debug)]
pub struct UserError {
    /// What `--format text` prints.
    pub text: String,
    /// What `--format json` prints.
    pub json: Value,
}

impl UserError {
    /// A one-line problem with its fix, not tied to a source span.
    pub fn message(message: impl Into<String>) -> UserError {
        let message = message.into();
        UserError {
            text: format!("error: {message}\n"),
            json: json!({ "ok": false, "error": message }),
        }
    }

    /// Diagnostics in `source` (read from `path`): rendered with carets for text, as a list of
    /// positioned records for JSON.
    pub fn diagnostics(diags: &Diagnostics, source: &str, path: &str) -> UserError {
        UserError {
            text: diags.render(source, path, stderr_color()),
            json: json!({
                "ok": false,
                "file": path,
                "diagnostics": diagnostics_json(diags, source, path),
            }),
        }
    }
}

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text.trim_end())
    }
}

impl std::error::Error for UserError {}

/// Each diagnostic as `{file, line, column, end_line, end_column, message, label, hint}`
/// (1-based lines and columns).
pub fn diagnostics_json(diags: &Diagnostics, source: &str, path: &str) -> Value {
    let lines = LineIndex::new(source);
    diags
        .iter()
        .map(|d| {
            let (line, column) = lines.line_col(d.span.start);
            // A span that ends on a newline ("expected … at the end of the line") ends on its line.
            let covers_newline = source
                .get(d.span.clone())
                .is_some_and(|s| s.ends_with('\n'));
            let end = if covers_newline {
                d.span.end - 1
            } else {
                d.span.end
            };
            let (end_line, end_column) = lines.line_col(end);
            json!({
                "file": path,
                "line": line,
                "column": column,
                "end_line": end_line,
                "end_column": end_column,
                "message": d.message,
                "label": d.label,
                "hint": d.hint,
            })
        })
        .collect()
}

/// Colour diagnostics only for a terminal, and never when `NO_COLOR` is set.
pub fn stderr_color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// A float for JSON: the number when it is finite, else the string `"NaN"`, `"inf"` or `"-inf"`
/// (JSON has no such numbers, and `serde_json` would silently write `null`).
pub fn num(x: f64) -> Value {
    if x.is_finite() {
        json!(x)
    } else if x.is_nan() {
        json!("NaN")
    } else if x > 0.0 {
        json!("inf")
    } else {
        json!("-inf")
    }
}

/// Refuses to report a result that is not a finite number: `what` names the result (a
/// workload point), `fields` its reported numbers. JSON has no NaN or infinity and a table
/// would print a meaningless `NaN` or `0.00x`, so the first non-finite field is an error that
/// says where it came from.
pub fn check_finite(what: &str, fields: &[(&str, f64)]) -> Result<(), UserError> {
    match fields.iter().find(|(_, x)| !x.is_finite()) {
        None => Ok(()),
        Some((field, x)) => Err(UserError::message(format!(
            "{what}: the model gives {field} = {x}, not a finite number; check that the architecture's and the workload's numbers (clock, bandwidths, energies, sizes) are in a physical range"
        ))),
    }
}

/// The user error for output that could not be written to stdout (a full disk, `/dev/full`);
/// a closed pipe is not reported (see `main`).
pub fn stdout_error(e: &std::io::Error) -> anyhow::Error {
    UserError::message(format!("cannot write to standard output: {e}")).into()
}

/// Writes `text` to stdout; a closed pipe (`| head`) ends the output quietly, any other
/// failure is a user error.
pub fn write_stdout(text: &[u8]) -> anyhow::Result<()> {
    match std::io::stdout().lock().write_all(text) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(stdout_error(&e)),
        _ => Ok(()),
    }
}

/// Prints a JSON value on stdout, pretty.
pub fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("JSON values always serialise")
    );
}

/// CSV records (the first is the header) as the bytes of a file.
pub fn csv_bytes<I, R>(records: I) -> anyhow::Result<Vec<u8>>
where
    I: IntoIterator<Item = R>,
    R: IntoIterator,
    R::Item: AsRef<[u8]>,
{
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in records {
        w.write_record(r)?;
    }
    w.into_inner()
        .map_err(|e| anyhow::anyhow!("CSV buffer: {e}"))
}

/// Prints CSV records (the first is the header) on stdout. A closed pipe (`| head`) ends the
/// output quietly: that is the reader's choice, not an error.
pub fn print_csv<I, R>(records: I) -> anyhow::Result<()>
where
    I: IntoIterator<Item = R>,
    R: IntoIterator,
    R::Item: AsRef<[u8]>,
{
    write_stdout(&csv_bytes(records)?)
}
