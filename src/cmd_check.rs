//! `cascade check FILE|NAME`: parse and verify, then print the normalised cascade; warnings
//! (the masking trap, `ir::lint`) go to stderr with file:line:column and the fix.

use cascade_ir::{Cascade, TensorKind, dsl};
use serde_json::{Value, json};

use crate::load;
use crate::output::{Format, diagnostics_json, print_json, stderr_color};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Path to a .cascade file or a library cascade name.
    #[arg(value_name = "FILE|NAME")]
    pub target: String,
}

pub fn run(args: Args, format: Format) -> anyhow::Result<()> {
    let loaded = load::load(&args.target)?;
    let c = &loaded.parsed.cascade;
    let text = dsl::print(c);
    let warnings = dsl::lint_diagnostics(&loaded.parsed);
    match format {
        Format::Text => {
            if !warnings.is_empty() {
                let rendered =
                    warnings.render_warnings(&loaded.source, &loaded.path, stderr_color());
                eprint!("{rendered}");
            }
            print!("{text}");
        }
        Format::Json => print_json(&json!({
            "ok": true,
            "file": loaded.path,
            "summary": summary(c),
            "warnings": diagnostics_json(&warnings, &loaded.source, &loaded.path),
            "text": text,
        })),
    }
    Ok(())
}

/// Names, ranks and sections of a valid cascade, for tools that read `--format json`.
fn summary(c: &Cascade) -> Value {
    let rank_names = |ids: &[cascade_ir::RankId]| -> Vec<String> {
        ids.iter().map(|r| c.rank(*r).name.clone()).collect()
    };
    json!({
        "name": c.name,
        "ranks": c.ranks.iter().map(|r| json!({
            "name": r.name,
            "param": r.is_param,
            "split": r.split.map(|(o, i)| [c.rank(o).name.clone(), c.rank(i).name.clone()]),
            "range_of": r.range_of.map(|i| c.rank(i).name.clone()),
        })).collect::<Vec<_>>(),
        "tensors": c.tensors.iter().map(|t| json!({
            "name": t.name,
            "input": t.kind == TensorKind::Input,
            "ranks": rank_names(&t.ranks),
        })).collect::<Vec<_>>(),
        "einsums": c.einsums.len(),
        "iterative_ranks": rank_names(&c.iterative_ranks()),
        "outputs": c.outputs.iter().map(|t| c.tensor(*t).name.clone()).collect::<Vec<_>>(),
    })
}
