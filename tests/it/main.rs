//! End-to-end tests of the `cascade` binary, one module per boundary.

mod codegen;
mod eval;
mod parse;
mod passes;
mod tidy;
