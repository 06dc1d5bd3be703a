//! End-to-end tests of the `cascade` binary, one module per boundary.

mod eval;
mod codegen;
mod parse;
mod passes;
mod rewrite;
mod sim;
mod tidy;
