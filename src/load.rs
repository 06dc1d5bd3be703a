//! Finds a cascade from a command-line argument: an existing file, else a library name.

use std::fs;
use std::path::Path;

use cascade_ir::dsl::{self, Parsed};
use cascade_ir::library;

use crate::output::UserError;

/// A cascade read from a file or the library, with the text it came from.
#[derive(Debug)]
pub struct Loaded {
    /// The file path, or `ir/cascades/NAME.cascade` for a library cascade.
    pub path: String,
    pub source: String,
    pub parsed: Parsed,
}

/// The source text of `arg`: the file at that path if one exists, else the library cascade
/// of that name, else a user error listing the library.
pub fn source(arg: &str) -> anyhow::Result<(String, String)> {
    let path = Path::new(arg);
    if path.is_file() {
        let text = fs::read_to_string(path).map_err(|e| crate::files::error("read", path, &e))?;
        return Ok((arg.to_string(), text));
    }
    if let Some(text) = library::source(arg) {
        return Ok((format!("ir/cascades/{arg}.cascade"), text.to_string()));
    }
    if let Some(text) = library::variant_source(arg) {
        return Ok((
            format!("ir/cascades/variants/{arg}.cascade"),
            text.to_string(),
        ));
    }
    let names: Vec<&str> = library::names().chain(library::variant_names()).collect();
    let looks_like_path = arg.contains('/') || arg.ends_with(".cascade");
    let what = if looks_like_path {
        format!("no file `{arg}`")
    } else {
        format!("`{arg}` is neither a file nor a library cascade")
    };
    Err(UserError::message(format!(
        "{what}; give a path to a .cascade file or one of: {}",
        names.join(", ")
    ))
    .into())
}

/// The library cascade `name`, parsed and verified, if there is one (never a file).
pub fn library(name: &str) -> Option<anyhow::Result<Loaded>> {
    let text = library::source(name)?;
    Some(checked(
        format!("ir/cascades/{name}.cascade"),
        text.to_string(),
    ))
}

/// The library cascade or model variant `name`, parsed and verified, if there is one (never a
/// file).
pub fn named(name: &str) -> Option<anyhow::Result<Loaded>> {
    if let Some(loaded) = library(name) {
        return Some(loaded);
    }
    let text = library::variant_source(name)?;
    Some(checked(
        format!("ir/cascades/variants/{name}.cascade"),
        text.to_string(),
    ))
}

fn checked(path: String, source: String) -> anyhow::Result<Loaded> {
    let parsed =
        dsl::check(&source, &path).map_err(|d| UserError::diagnostics(&d, &source, &path))?;
    Ok(Loaded {
        path,
        source,
        parsed,
    })
}

/// Loads and parses `arg`; syntax errors become a user error with diagnostics.
pub fn parse(arg: &str) -> anyhow::Result<Loaded> {
    let (path, source) = source(arg)?;
    let parsed =
        dsl::parse(&source, &path).map_err(|d| UserError::diagnostics(&d, &source, &path))?;
    Ok(Loaded {
        path,
        source,
        parsed,
    })
}

/// Loads, parses and verifies `arg`: what every command that uses a cascade wants.
pub fn load(arg: &str) -> anyhow::Result<Loaded> {
    let (path, source) = source(arg)?;
    checked(path, source)
}
