//! The `.cascade` text format: parser, pretty-printer and diagnostics.
//!
//! # Grammar (line oriented; `#` starts a comment that runs to the end of the line)
//!
//! ```text
//! file      := header decl* section* footer*
//! header    := "cascade" NAME
//! decl      := "ranks" RANK+                       # uppercase names: E F M P
//!            | "split" RANK "->" RANK RANK RANK?   # M -> M1 M0 declares M1, M0; m = m1*M0 + m0
//!                                                 # M -> M1 M0 N0 also N0, a second variable
//!                                                 # over M0 (|N0| = |M0|): m1*M0+n0 is in m1's tile
//!            | "param" RANK+                      # sizes that are never iterated (W)
//!            | "input" TENSOR "[" RANK,* "]" ...  # input Q[E,P] K[E,M]; Q[] or Q for scalars
//! section   := ("init" | "einsums")? einsum*      # without a header, Einsums go to `einsums`
//! einsum    := access "=" reduction? expr
//! reduction := ("sum"|"max"|"min"|"prod") "(" var,+ ")"      # max(m) QK[m,p]
//! expr      := term (("+"|"-") merge? term)*
//! term      := factor (("*"|"/") merge? factor)*
//! factor    := "-"? atom
//! atom      := access | number | "-inf" | "inf" | "1/sqrt(" RANK ")" | "(" expr ")"
//!            | "exp" merge? "(" expr "-" expr ")"             # sub-then-exp (BinaryOp::SubExp)
//!            | ("max"|"min") merge? "(" expr "," expr ")"      # binary max/min
//!            | UNARY "(" expr ")"        # exp neg recip sqrt sigmoid softplus relu elu1 tanh
//! merge     := "{" ("&" | "|" | "<-" | "1") "}"               # written only when not default
//! access    := TENSOR ("[" (index (":" cond ("&&" cond)*)?),* "]")?
//! index     := affine expression over vars, sizes and integers: m, m1+1, 0, M1, m1*M0+m0, p-m
//! cond      := index ("<"|"<="|">"|">="|"=="|"!=") index
//! footer    := "stop" cond | "output" TENSOR+
//! ```
//!
//! Identifiers: a rank `M1` is iterated by the variable `m1`; tensors are any other identifier
//! (tensor names may be uppercase, as in the paper; inside `[...]` an uppercase name is a size,
//! a lowercase one a variable). Rank names are uppercase; a tensor may not share its name with a
//! rank, a rank's variable or a reserved word ([`RESERVED`]), which keeps `1/sqrt(E)`,
//! `max(m) X` (reduction) and `max(A, B)` (binary) unambiguous. `exp(a - b)` with a top-level
//! `-` parses as one sub-then-exp action whose merge is written after `exp` (`exp{1}(a - b)`);
//! the printer writes `exp((a - b))` for an `exp` of a subtraction so that round trips are
//! exact. `-` directly before a number is part of the literal (`-3`, `-inf`); before anything
//! else it is `neg`.
//!
//! Order: the header first, declarations before any Einsum, `init` before `einsums`, `stop`
//! and `output` after the last Einsum. Intermediate tensors are declared by use; their ranks
//! come from their writes (`RM[m1+1,p]` gives `[M1, P]`, `K[e, m1*M0+m0]` and `K[e, m1*M0+n0]`
//! give the split's parent `M`), else from their reads. A statement holds at most 400 tokens and nests at most
//! 32 levels, so parsing, printing and evaluation never recurse deeply.
//!
//! The printer writes the normalised form: declarations (consecutive ranks on one line),
//! `init`/`einsums` headers only when there is an Initialization section, aligned `=` per
//! section, default merges and the implicit `+` reduction omitted, index arithmetic without
//! spaces (`m1*M0+m0`), comments dropped. `parse(print(c)).cascade == c` holds for every
//! cascade the parser can produce (property-tested).

mod diag;
mod lexer;
mod parser;
mod print;

use std::ops::Range;

pub use diag::{Diagnostic, Diagnostics, LineIndex, line_col};
pub use parser::RESERVED;
pub use print::{print, print_compare, print_einsum, print_expr, print_index};

use crate::ast::Cascade;
use crate::verify::Location;

/// A parsed cascade and where each of its parts sits in the source.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub cascade: Cascade,
    pub spans: SourceMap,
}

/// Byte spans of the parts of a parsed cascade, kept apart from [`Cascade`] so that
/// `parse(print(c)).cascade == c` is plain equality.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourceMap {
    /// The `cascade NAME` line.
    pub header: Range<usize>,
    /// By `RankId`: the rank's name in its declaration.
    pub ranks: Vec<Range<usize>>,
    /// By `TensorId`: the input declaration, else the first write, else the first mention.
    pub tensors: Vec<Range<usize>>,
    /// By `EinsumId`: the whole Einsum statement.
    pub einsums: Vec<Range<usize>>,
    /// By `EinsumId`: the output access, then every operand access left to right (the order of
    /// `Cascade::accesses`).
    pub accesses: Vec<Vec<Range<usize>>>,
    /// The `stop` line.
    pub stop: Option<Range<usize>>,
    /// By position in `Cascade::outputs`: the name in the `output` line.
    pub outputs: Vec<Range<usize>>,
}

/// Parses one `.cascade` source. On failure returns every problem found, each with a span and
/// a hint; `path` only names the file when the caller renders them
/// ([`Diagnostics::render`]).
pub fn parse(source: &str, path: &str) -> Result<Parsed, Diagnostics> {
    let _ = path;
    parser::parse(source)
}

/// `verify` on a parsed cascade, with each problem turned into a diagnostic that points at its
/// Einsum, access, tensor, rank or output through the source map.
pub fn verify_diagnostics(parsed: &Parsed) -> Diagnostics {
    let spans = &parsed.spans;
    let errors = crate::verify::verify(&parsed.cascade);
    let mut out: Vec<Diagnostic> = errors
        .iter()
        .map(|e| {
            let span = match e.location() {
                Location::Einsum { einsum, access } => access
                    .and_then(|a| spans.accesses.get(einsum.index())?.get(a))
                    .or(spans.einsums.get(einsum.index())),
                Location::Tensor(t) => spans.tensors.get(t.index()),
                Location::Rank(r) => spans.ranks.get(r.index()),
                Location::Output(n) => spans.outputs.get(n),
                Location::Cascade => None,
            };
            let span = span.cloned().unwrap_or(spans.header.clone());
            Diagnostic::new(e.to_string(), span, e.label(), e.hint())
        })
        .collect();
    out.sort_by_key(|d| d.span.start);
    Diagnostics(out)
}

/// [`crate::lint::lint`] on a parsed cascade, each warning pointing at its Einsum.
pub fn lint_diagnostics(parsed: &Parsed) -> Diagnostics {
    let spans = &parsed.spans;
    crate::lint::lint(&parsed.cascade)
        .into_iter()
        .map(|w| {
            let span = spans
                .einsums
                .get(w.einsum.index())
                .cloned()
                .unwrap_or(spans.header.clone());
            Diagnostic::new(w.message, span, "masked points come back here", w.hint)
        })
        .collect::<Vec<_>>()
        .into()
}

/// Parses and verifies: the cascade when both pass, else every parse error (or, when it
/// parses, every verify error) as diagnostics.
pub fn check(source: &str, path: &str) -> Result<Parsed, Diagnostics> {
    let parsed = parse(source, path)?;
    let diags = verify_diagnostics(&parsed);
    if diags.is_empty() {
        Ok(parsed)
    } else {
        Err(diags)
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
