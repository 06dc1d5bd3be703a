//! The `cascade` command-line tool: explore attention cascades, schedules and kernels.
//!
//! Each subcommand lives in its own `cmd_*.rs` file with an `Args` struct and a `run`
//! function; this file only registers them and maps results to exit codes:
//! 0 ok, 1 user error (diagnostics on stderr), 2 internal error.

mod cmd_check;
mod cmd_eval;
mod cmd_list;
mod cmd_passes;
mod cmd_rewrite;
mod cmd_show;
mod load;
mod output;

use std::process::ExitCode;

use clap::Parser;

use crate::output::{Format, UserError};

/// Design attention accelerators and kernels from Extended Einsum cascades.
#[derive(Debug, Parser)]
#[command(name = "cascade", version)]
struct Cli {
    /// Output format of results and errors.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    format: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// List the library cascades.
    List(cmd_list::Args),
    /// Print a library cascade in normalised form.
    Show(cmd_show::Args),
    /// Parse and verify a cascade, then print it normalised.
    Check(cmd_check::Args),
    /// Derive a cheaper equivalent cascade by equality saturation.
    Rewrite(cmd_rewrite::Args),
    /// Count the passes a cascade needs over a rank, with barriers, footprints and op counts.
    Passes(cmd_passes::Args),
    /// Run the reference interpreter on seeded random inputs and check it against the direct reference.
    Eval(cmd_eval::Args),
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let format = cli.format;
    match cli.command {
        Command::List(args) => cmd_list::run(args, format),
        Command::Show(args) => cmd_show::run(args, format),
        Command::Check(args) => cmd_check::run(args, format),
        Command::Rewrite(args) => cmd_rewrite::run(args, format),
        Command::Passes(args) => cmd_passes::run(args, format),
        Command::Eval(args) => cmd_eval::run(args, format),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let format = cli.format;
    // A panic is a bug: report it as an internal error (exit 2), not Rust's default 101.
    let result = std::panic::catch_unwind(|| run(cli));
    match result {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => match e.downcast_ref::<UserError>() {
            Some(user) => {
                match format {
                    Format::Text => eprint!("{}", user.text),
                    Format::Json => eprintln!(
                        "{}",
                        serde_json::to_string_pretty(&user.json).unwrap_or_default()
                    ),
                }
                ExitCode::from(1)
            }
            None => {
                eprintln!("internal error: {e:#}");
                ExitCode::from(2)
            }
        },
        Err(_) => {
            eprintln!("internal error: cascade panicked (a bug; please report it)");
            ExitCode::from(2)
        }
    }
}
