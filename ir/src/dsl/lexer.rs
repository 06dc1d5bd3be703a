//! Splits one line of a `.cascade` file into tokens; comments are dropped here.

use std::ops::Range;

use super::diag::Diagnostic;
use crate::ast::Merge;

/// Byte range in the whole source.
pub type Span = Range<usize>;

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    Ident(String),
    Int(i64),
    Float(f64),
    LBrack,
    RBrack,
    LParen,
    RParen,
    Comma,
    Colon,
    Assign,
    Plus,
    Minus,
    Star,
    Slash,
    Lt,
    Le,
    Gt,
    Ge,
    EqEq,
    Ne,
    AndAnd,
    Arrow,
    Merge(Merge),
}

impl Tok {
    /// How the token reads in an error message.
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Int(k) => format!("`{k}`"),
            Tok::Float(x) => format!("`{x}`"),
            Tok::Merge(m) => format!("`{{{m}}}`"),
            other => format!("`{}`", other.symbol()),
        }
    }

    fn symbol(&self) -> &'static str {
        match self {
            Tok::LBrack => "[",
            Tok::RBrack => "]",
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::Comma => ",",
            Tok::Colon => ":",
            Tok::Assign => "=",
            Tok::Plus => "+",
            Tok::Minus => "-",
            Tok::Star => "*",
            Tok::Slash => "/",
            Tok::Lt => "<",
            Tok::Le => "<=",
            Tok::Gt => ">",
            Tok::Ge => ">=",
            Tok::EqEq => "==",
            Tok::Ne => "!=",
            Tok::AndAnd => "&&",
            Tok::Arrow => "->",
            Tok::Ident(_) | Tok::Int(_) | Tok::Float(_) | Tok::Merge(_) => "?",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub tok: Tok,
    pub span: Span,
}

/// Tokenises `line`, which starts at byte `base` of the source. Stops at `#`.
pub fn lex_line(line: &str, base: usize) -> Result<Vec<Token>, Diagnostic> {
    let bytes = line.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let two = |a: u8, b: u8| c == a && bytes.get(i + 1) == Some(&b);
        let (tok, len) = match c {
            b'#' => break,
            b' ' | b'\t' | b'\r' => {
                i += 1;
                continue;
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                let mut j = i;
                while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_') {
                    j += 1;
                }
                (Tok::Ident(line[i..j].to_string()), j - i)
            }
            b'0'..=b'9' | b'.' => {
                let len = number_len(bytes, i);
                let text = &line[i..i + len];
                let span = base + i..base + i + len;
                (parse_number(text, span)?, len)
            }
            b'{' => {
                let Some(close) = line[i..].find('}') else {
                    return Err(Diagnostic::new(
                        "unclosed merge",
                        base + i..base + i + 1,
                        "this `{` has no `}` on the same line",
                        "write a merge as `{&}`, `{|}`, `{<-}` or `{1}`",
                    ));
                };
                let inner = line[i + 1..i + close].trim();
                let merge = match inner {
                    "&" | "∩" => Merge::Intersect,
                    "|" | "∪" => Merge::Union,
                    "<-" | "←" => Merge::Right,
                    "1" => Merge::All,
                    _ => {
                        return Err(Diagnostic::new(
                            format!("unknown merge `{{{inner}}}`"),
                            base + i..base + i + close + 1,
                            "not a merge op",
                            "write a merge as `{&}` (both present), `{|}` (either), `{<-}` (where the right operand is present) or `{1}` (every point)",
                        ));
                    }
                };
                (Tok::Merge(merge), close + 1)
            }
            _ if two(b'<', b'=') => (Tok::Le, 2),
            _ if two(b'>', b'=') => (Tok::Ge, 2),
            _ if two(b'=', b'=') => (Tok::EqEq, 2),
            _ if two(b'!', b'=') => (Tok::Ne, 2),
            _ if two(b'&', b'&') => (Tok::AndAnd, 2),
            _ if two(b'-', b'>') => (Tok::Arrow, 2),
            b'[' => (Tok::LBrack, 1),
            b']' => (Tok::RBrack, 1),
            b'(' => (Tok::LParen, 1),
            b')' => (Tok::RParen, 1),
            b',' => (Tok::Comma, 1),
            b':' => (Tok::Colon, 1),
            b'=' => (Tok::Assign, 1),
            b'+' => (Tok::Plus, 1),
            b'-' => (Tok::Minus, 1),
            b'*' => (Tok::Star, 1),
            b'/' => (Tok::Slash, 1),
            b'<' => (Tok::Lt, 1),
            b'>' => (Tok::Gt, 1),
            _ => {
                let ch = line[i..].chars().next().unwrap_or('?');
                return Err(Diagnostic::new(
                    format!("unexpected character `{}`", ch.escape_debug()),
                    base + i..base + i + ch.len_utf8(),
                    "not part of the cascade language",
                    "use ASCII names, numbers, `[ ] ( ) , : = + - * /`, comparisons, `&&`, merges like `{<-}`; `#` starts a comment",
                ));
            }
        };
        i += len;
        toks.push(Token {
            tok,
            span: base + start..base + i,
        });
    }
    Ok(toks)
}

/// Length of a number at `i`: digits, an optional fraction and an optional exponent.
fn number_len(bytes: &[u8], i: usize) -> usize {
    let mut j = i;
    let digits = |j: &mut usize| {
        while *j < bytes.len() && bytes[*j].is_ascii_digit() {
            *j += 1;
        }
    };
    digits(&mut j);
    if j < bytes.len() && bytes[j] == b'.' {
        j += 1;
        digits(&mut j);
    }
    if j < bytes.len() && (bytes[j] == b'e' || bytes[j] == b'E') {
        let mut k = j + 1;
        if k < bytes.len() && (bytes[k] == b'+' || bytes[k] == b'-') {
            k += 1;
        }
        if k < bytes.len() && bytes[k].is_ascii_digit() {
            j = k;
            digits(&mut j);
        }
    }
    // A name glued to a number (`2m`) is one bad token, not two good ones.
    while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_') {
        j += 1;
    }
    j - i
}

fn parse_number(text: &str, span: Span) -> Result<Tok, Diagnostic> {
    let bad = |why: &str| {
        Diagnostic::new(
            format!("cannot read the number `{text}`"),
            span.clone(),
            why,
            "write integers like `3` and decimals like `0.5` or `1e-3`; names may not start with a digit",
        )
    };
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<i64>()
            .map(Tok::Int)
            .map_err(|_| bad("too large for a 64-bit integer"));
    }
    match text.parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(Tok::Float(x)),
        Ok(_) => Err(bad("too large for a 64-bit float")),
        Err(_) => Err(bad("not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexes_merges_comparisons_and_comments() {
        let toks: Vec<Tok> = lex_line("A[k : k <= i] /{<-} 1.5e2 # c", 0)
            .unwrap()
            .into_iter()
            .map(|t| t.tok)
            .collect();
        assert_eq!(
            toks,
            vec![
                Tok::Ident("A".into()),
                Tok::LBrack,
                Tok::Ident("k".into()),
                Tok::Colon,
                Tok::Ident("k".into()),
                Tok::Le,
                Tok::Ident("i".into()),
                Tok::RBrack,
                Tok::Slash,
                Tok::Merge(Merge::Right),
                Tok::Float(150.0),
            ]
        );
    }

    #[test]
    fn spans_are_offset_by_the_line_start() {
        let toks = lex_line("  QK", 10).unwrap();
        assert_eq!(toks[0].span, 12..14);
    }

    #[test]
    fn rejects_glued_names_and_unknown_chars() {
        assert!(lex_line("2m", 0).is_err());
        assert!(lex_line("A @ B", 0).unwrap_err().message.contains('@'));
        assert!(lex_line("A {x} B", 0).is_err());
    }
}
