//! End-to-end tests of the `cascade` binary, one module per boundary.

mod adversarial;
mod cli;
mod codegen;
mod eval;
mod models;
mod parse;
mod passes;
mod pipeline;
mod report;
mod rewrite;
mod scale;
mod schema;
mod sim;
mod support;
mod tidy;
mod trace;
mod values;
mod zoo;
