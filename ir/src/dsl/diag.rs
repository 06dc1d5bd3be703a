//! Diagnostics: a message, a byte span, a label under the caret and a hint with the fix.

use std::fmt;
use std::ops::Range;

use ariadne::{Config, IndexType, Label, Report, ReportKind, Source};

/// One problem in a source file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The headline (`rank `X` is not declared`).
    pub message: String,
    /// Byte range in the source the problem points at.
    pub span: Range<usize>,
    /// Text printed under the caret.
    pub label: String,
    /// How to fix it.
    pub hint: String,
}

impl Diagnostic {
    pub fn new(
        message: impl Into<String>,
        span: Range<usize>,
        label: impl Into<String>,
        hint: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic {
            message: message.into(),
            span,
            label: label.into(),
            hint: hint.into(),
        }
    }

    /// 1-based line and column (in characters) of the start of the span.
    pub fn line_col(&self, source: &str) -> (usize, usize) {
        line_col(source, self.span.start)
    }
}

/// 1-based line and column (in characters) of byte `offset` in `source`.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char_boundary(source, offset.min(source.len()));
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = source[line_start..offset].chars().count() + 1;
    (line, col)
}

/// Line starts of a source, so that many positions are turned into lines and columns in time
/// linear in the source (each [`line_col`] call alone scans the source up to its offset).
#[derive(Debug, Clone)]
pub struct LineIndex<'a> {
    source: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub fn new(source: &'a str) -> LineIndex<'a> {
        let starts = std::iter::once(0)
            .chain(source.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { source, starts }
    }

    /// [`line_col`] of `offset`.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(self.source, offset.min(self.source.len()));
        let line = self.starts.partition_point(|s| *s <= offset);
        let start = self.starts[line - 1];
        (line, self.source[start..offset].chars().count() + 1)
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The most diagnostics rendered at once; the rest are counted in one closing line, so a file
/// with a million broken lines is reported in time linear in its size.
pub const MAX_RENDERED: usize = 100;

/// Every problem found in one source file, in source order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }

    /// Renders every diagnostic with `path:line:column`, the source line, a caret under the
    /// span and the hint. Colour off gives stable text for snapshots (ariadne still pads some
    /// lines with trailing spaces).
    pub fn render(&self, source: &str, path: &str, color: bool) -> String {
        self.render_kind(source, path, color, ReportKind::Error)
    }

    /// [`Diagnostics::render`] headed `Warning` instead of `Error`.
    pub fn render_warnings(&self, source: &str, path: &str, color: bool) -> String {
        self.render_kind(source, path, color, ReportKind::Warning)
    }

    fn render_kind(&self, source: &str, path: &str, color: bool, kind: ReportKind) -> String {
        let mut out = Vec::new();
        let mut cache = (path, Source::from(source));
        for d in self.0.iter().take(MAX_RENDERED) {
            let span = clamp(source, d.span.clone());
            let report = Report::build(kind, (path, span.clone()))
                .with_config(
                    Config::default()
                        .with_color(color)
                        .with_index_type(IndexType::Byte),
                )
                .with_message(&d.message)
                .with_label(Label::new((path, span)).with_message(&d.label))
                .with_help(&d.hint)
                .finish();
            // Writing into a Vec cannot fail; a failure would only lose this report's text.
            let _ = report.write(&mut cache, &mut out);
        }
        let mut text = String::from_utf8_lossy(&out).into_owned();
        if let Some(more) = self.0.len().checked_sub(MAX_RENDERED).filter(|n| *n > 0) {
            let what = if kind == ReportKind::Error {
                "problems"
            } else {
                "warnings"
            };
            text.push_str(&format!(
                "... and {more} more {what} in {path} (only the first {MAX_RENDERED} are shown; fix these first)\n"
            ));
        }
        text
    }
}

/// Keeps a span inside the source and on char boundaries so rendering never panics.
fn clamp(source: &str, span: Range<usize>) -> Range<usize> {
    let start = floor_char_boundary(source, span.start.min(source.len()));
    let mut end = span.end.clamp(start, source.len());
    while !source.is_char_boundary(end) {
        end += 1;
    }
    start..end
}

impl fmt::Display for Diagnostics {
    /// One line per diagnostic, without source context: `offset: message (hint)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(
                f,
                "{}..{}: {} ({})",
                d.span.start, d.span.end, d.message, d.hint
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

impl From<Vec<Diagnostic>> for Diagnostics {
    fn from(v: Vec<Diagnostic>) -> Diagnostics {
        Diagnostics(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let src = "ab\ncd\n";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 4), (2, 2));
        assert_eq!(line_col(src, 99), (3, 1));
    }

    #[test]
    fn the_line_index_agrees_with_line_col() {
        let src = "ab\ncé\n\nd";
        let index = LineIndex::new(src);
        for offset in 0..=src.len() + 2 {
            assert_eq!(index.line_col(offset), line_col(src, offset), "{offset}");
        }
    }

    #[test]
    fn render_names_path_line_column_and_hint() {
        let src = "cascade x\nranks E\nQ[z] = 1\n";
        let d = Diagnostics(vec![Diagnostic::new("bad", 20..21, "here", "fix it")]);
        let text = d.render(src, "f.cascade", false);
        assert!(text.contains("f.cascade:3:3"), "{text}");
        assert!(text.contains("fix it"), "{text}");
        assert!(text.contains('^') || text.contains('┬'), "{text}");
    }
}
