//! End-to-end tests of the `cascade` binary, one module per boundary.

mod parse;
mod tidy;
