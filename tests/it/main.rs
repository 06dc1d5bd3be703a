//! End-to-end tests of the `cascade` binary, one module per boundary.

mod eval;
mod parse;
mod passes;
mod rewrite;
mod tidy;
