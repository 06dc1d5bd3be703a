//! The `.cascade` text format: parser, pretty-printer and diagnostics.
//!
//! # Grammar (line oriented; `#` starts a comment that runs to the end of the line)
//!
//! ```text
//! file      := header decl* section* footer*
//! header    := "cascade" NAME
//! decl      := "ranks" RANK+                       # uppercase names: E F M P
//!            | "split" RANK "->" RANK RANK         # M -> M1 M0 declares M1, M0; m = m1*M0 + m0
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
//! a lowercase one a variable). `exp(a - b)` with a top-level `-` parses as one sub-then-exp
//! action; the printer writes `exp((a - b))` for an `exp` of a subtraction so that round trips
//! are exact. The printer writes the normalised form: aligned `=`, one Einsum a line, default
//! merges and the implicit `+` reduction omitted.

mod diag;
mod lexer;
mod parser;
mod print;

use std::ops::Range;

pub use diag::{Diagnostic, Diagnostics, line_col};
pub use parser::RESERVED;
pub use print::print;

use crate::ast::Cascade;

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

#[cfg(test)]
mod tests;
