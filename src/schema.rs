//! The one output schema of the commands that print results (simulate, compare, sweep,
//! merge-sweep, zoo). A command builds its results once, as [`Records`]: named columns and one
//! row of typed cells per point. The text table, the CSV and the JSON are all printed from
//! them, so a field has one name and one unit in every format; `docs/output.md` lists every
//! field, and `tests/it/schema.rs` checks the three formats against each other and the page.
//!
//! Units are SI throughout: seconds (`_s`), joules (`_j`), bytes (`_bytes`), square millimetres
//! (`_mm2`); cycles, counts, words and ratios say so in their names (`_cycles`, `_words`,
//! `speedup_`, `_ratio_`, `util_`, `_share`).

use comfy_table::{Table, presets};
use serde_json::{Map, Value, json};

use crate::arch_load::seq_label;
use crate::output::num;

/// The version of the field names and units below. It changes whenever a field is renamed,
/// removed or changes its unit, so a script (or `merge-sweep`) can refuse a file it would
/// misread; adding a field keeps it.
pub const SCHEMA_VERSION: u32 = 1;

/// Joules per picojoule: the model counts pJ, every output is in J.
pub const PJ: f64 = 1e-12;

/// How the text table prints a column's numbers; CSV and JSON always carry them unrounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Five significant digits: `9.4130e-3`.
    Sci,
    /// This many decimals: `0.889`.
    Fixed(usize),
    /// A sequence length with `K` (2^10) or `M` (2^20) where it divides: `64K`.
    Seq,
    /// As it is: names, integers, flags.
    Plain,
}

/// One value of a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Text(String),
    /// An exact count (a size, a sequence length, an index).
    Count(u64),
    /// A measured or derived number; finite (the commands check before printing).
    Number(f64),
    Flag(bool),
    /// No value: an infeasible point's numbers, a ratio with an infeasible side. An empty CSV
    /// cell, JSON `null`, a blank text cell.
    Missing,
}

impl Cell {
    fn csv(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Count(n) => n.to_string(),
            Cell::Number(x) => x.to_string(),
            Cell::Flag(b) => b.to_string(),
            Cell::Missing => String::new(),
        }
    }

    fn json(&self) -> Value {
        match self {
            Cell::Text(s) => json!(s),
            Cell::Count(n) => json!(n),
            Cell::Number(x) => num(*x),
            Cell::Flag(b) => json!(b),
            Cell::Missing => Value::Null,
        }
    }

    fn text(&self, style: Style) -> String {
        match (self, style) {
            (Cell::Number(x), Style::Sci) => format!("{x:.4e}"),
            (Cell::Number(x), Style::Fixed(decimals)) => format!("{x:.decimals$}"),
            (Cell::Count(n), Style::Seq) => seq_label(*n),
            (cell, _) => cell.csv(),
        }
    }
}

/// A column: its field name (see `docs/output.md`) and how text prints it.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub style: Style,
}

/// `Column` shorthand for the commands' column lists.
pub fn col(name: impl Into<String>, style: Style) -> Column {
    Column {
        name: name.into(),
        style,
    }
}

/// A command's results: the columns and one row per point, each as wide as the columns.
#[derive(Debug, Clone)]
pub struct Records {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Cell>>,
}

impl Records {
    pub fn new(columns: Vec<Column>) -> Records {
        Records {
            columns,
            rows: Vec::new(),
        }
    }

    /// Adds a row from `(field, value)` pairs; fields not given are [`Cell::Missing`].
    /// A field that is not a column is a bug of the command.
    pub fn push<S: AsRef<str>>(&mut self, cells: impl IntoIterator<Item = (S, Cell)>) {
        let mut row = vec![Cell::Missing; self.columns.len()];
        for (name, cell) in cells {
            let name = name.as_ref();
            let k = self.position(name);
            debug_assert!(k.is_some(), "`{name}` is not a column");
            if let Some(k) = k {
                row[k] = cell;
            }
        }
        self.rows.push(row);
    }

    /// The index of the column `name`.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// Whether any row has a value in column `name`.
    pub fn any(&self, name: &str) -> bool {
        self.position(name)
            .is_some_and(|k| self.rows.iter().any(|r| r[k] != Cell::Missing))
    }

    /// CSV records: the header, then one record per row; `schema_version` is the first
    /// column, so every record (of a file, or of files concatenated) says how to read it.
    pub fn csv(&self) -> Vec<Vec<String>> {
        let mut header = vec!["schema_version".to_string()];
        header.extend(self.columns.iter().map(|c| c.name.clone()));
        let mut out = vec![header];
        for row in &self.rows {
            let mut rec = vec![SCHEMA_VERSION.to_string()];
            rec.extend(row.iter().map(Cell::csv));
            out.push(rec);
        }
        out
    }

    /// One JSON object per row, keyed by column name (the `points` of [`document`]).
    pub fn json(&self) -> Vec<Map<String, Value>> {
        self.rows
            .iter()
            .map(|row| {
                self.columns
                    .iter()
                    .zip(row)
                    .map(|(c, cell)| (c.name.clone(), cell.json()))
                    .collect()
            })
            .collect()
    }

    /// A text table of the columns named in `shown`, in that order, numbers rounded by each
    /// column's [`Style`].
    pub fn text<S: AsRef<str>>(&self, shown: &[S]) -> Table {
        debug_assert!(
            shown.iter().all(|n| self.position(n.as_ref()).is_some()),
            "every shown name is a column"
        );
        let mut table = Table::new();
        table
            .load_style(presets::ASCII_MARKDOWN)
            .set_header(shown.iter().map(|n| n.as_ref().to_string()));
        for k in 0..self.rows.len() {
            table.add_row(self.text_cells(k, shown));
        }
        table
    }

    /// Row `k` as text cells of the columns named in `shown`; a name that is not a column of
    /// these records (a summary's `model`, say) is a blank cell.
    pub fn text_cells<S: AsRef<str>>(&self, k: usize, shown: &[S]) -> Vec<String> {
        shown
            .iter()
            .map(|n| match self.position(n.as_ref()) {
                Some(c) => self.rows[k][c].text(self.columns[c].style),
                None => String::new(),
            })
            .collect()
    }
}

/// The JSON document of a command: `{"schema_version", "command", …context, "points": […]}`,
/// the points being `records` with each one's nested `detail` (if any) merged in. A list of
/// flat records is what `pd.json_normalize(doc, record_path="points")` reads.
pub fn document(
    command: &str,
    context: Map<String, Value>,
    records: &Records,
    detail: Option<Vec<Map<String, Value>>>,
) -> Value {
    let mut points = records.json();
    if let Some(detail) = detail {
        for (p, d) in points.iter_mut().zip(detail) {
            p.extend(d);
        }
    }
    let mut doc = Map::new();
    doc.insert("schema_version".into(), json!(SCHEMA_VERSION));
    doc.insert("command".into(), json!(command));
    doc.extend(context);
    doc.insert(
        "points".into(),
        Value::Array(points.into_iter().map(Value::Object).collect()),
    );
    Value::Object(doc)
}

/// A JSON object from `(key, value)` pairs, for a document's context.
pub fn context<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}
