//! `cascade list`: the library cascades with a one-line description each.

use cascade_ir::library;
use serde_json::json;

use crate::output::{Format, print_json};

#[derive(Debug, clap::Args)]
pub struct Args {}

/// The first sentence of a file's leading comment block, on one line.
pub fn description(source: &str) -> String {
    let comment: Vec<&str> = source
        .lines()
        .map(str::trim)
        .skip_while(|l| l.is_empty())
        .take_while(|l| l.starts_with('#'))
        .map(|l| l.trim_start_matches('#').trim())
        .collect();
    let text = comment.join(" ");
    match text.find(". ") {
        Some(end) => text[..=end].to_string(),
        None => text,
    }
}

pub fn run(_args: Args, format: Format) -> anyhow::Result<()> {
    let entries: Vec<(&str, String)> = library::FILES
        .iter()
        .map(|(name, src)| (*name, description(src)))
        .collect();
    match format {
        Format::Text => {
            let width = entries.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
            for (name, desc) in &entries {
                println!("{name:width$}  {desc}");
            }
        }
        Format::Json => print_json(&json!(
            entries
                .iter()
                .map(|(name, desc)| json!({ "name": name, "description": desc }))
                .collect::<Vec<_>>()
        )),
    }
    Ok(())
}
