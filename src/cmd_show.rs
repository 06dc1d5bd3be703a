//! `cascade show NAME`: a library cascade (or a file) in normalised form.

use cascade_ir::dsl;
use serde_json::json;

use crate::load;
use crate::output::{Format, print_json};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Library cascade name (see `cascade list`) or path to a .cascade file.
    #[arg(value_name = "NAME")]
    pub name: String,
}

pub fn run(args: Args, format: Format) -> anyhow::Result<()> {
    let loaded = load::parse(&args.name)?;
    let text = dsl::print(&loaded.parsed.cascade);
    match format {
        Format::Text => print!("{text}"),
        Format::Json => print_json(&json!({
            "name": loaded.parsed.cascade.name,
            "file": loaded.path,
            "text": text,
        })),
    }
    Ok(())
}
