//! End-to-end tests of the `cascade` binary, one module per boundary.

mod codegen;
mod parse;
mod tidy;
