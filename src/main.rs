//! The `cascade` command-line tool: explore attention cascades, schedules and kernels.
//!
//! Each subcommand lives in its own `cmd_*.rs` file with an `Args` struct and a `run`
//! function; this file only registers them and maps results to exit codes:
//! 0 ok, 1 user error (diagnostics on stderr), 2 internal error.

mod arch_load;
mod cmd_check;
mod cmd_codegen;
mod cmd_compare;
mod cmd_eval;
mod cmd_list;
mod cmd_passes;
mod cmd_rewrite;
mod cmd_show;
mod cmd_simulate;
mod cmd_sweep;
mod cmd_zoo;
mod eval_io;
mod load;
mod npy;
mod output;

use std::process::ExitCode;

use clap::Parser;

use crate::output::{Format, OutputFormat, UserError};

/// Design attention accelerators and kernels from Extended Einsum cascades.
#[derive(Debug, Parser)]
#[command(name = "cascade", version)]
struct Cli {
    /// Output format of results and errors (`csv`: simulate, compare, sweep and zoo only).
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Text)]
    format: OutputFormat,
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
    /// Count the passes a cascade needs over a rank, with barriers, footprints and op counts.
    Passes(cmd_passes::Args),
    /// Run the reference interpreter on seeded or .npy inputs, checked against a library reference where one applies.
    Eval(cmd_eval::Args),
    /// Derive a cheaper equivalent cascade by equality saturation.
    Rewrite(cmd_rewrite::Args),
    /// Schedule a cascade on an architecture and estimate cycles, energy and area.
    Simulate(cmd_simulate::Args),
    /// Compare an architecture with baselines over workload points (speedup, energy).
    Compare(cmd_compare::Args),
    /// Sweep the array size: latency against area, buffer sized per design.
    Sweep(cmd_sweep::Args),
    /// Generate a CUDA, HIP or C++ kernel for a cascade.
    Codegen(cmd_codegen::Args),
    /// Every library cascade and model variant at workload points on one architecture: one table.
    Zoo(cmd_zoo::Args),
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let format = cli.format;
    // Commands without CSV output take text or JSON; `--format csv` is refused for them.
    let plain = |command: &str| format.plain(command);
    match cli.command {
        Command::List(args) => cmd_list::run(args, plain("list")?),
        Command::Show(args) => cmd_show::run(args, plain("show")?),
        Command::Check(args) => cmd_check::run(args, plain("check")?),
        Command::Passes(args) => cmd_passes::run(args, plain("passes")?),
        Command::Eval(args) => cmd_eval::run(args, plain("eval")?),
        Command::Rewrite(args) => cmd_rewrite::run(args, plain("rewrite")?),
        Command::Simulate(args) => cmd_simulate::run(args, format),
        Command::Compare(args) => cmd_compare::run(args, format),
        Command::Sweep(args) => cmd_sweep::run(args, format),
        Command::Codegen(args) => cmd_codegen::run(args, plain("codegen")?),
        Command::Zoo(args) => cmd_zoo::run(args, format),
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
    let format = cli.format.for_errors();
    quiet_on_closed_stdout();
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

/// Ends the process quietly when stdout is closed early (`cascade list | head`): `println!`
/// panics on a broken pipe, and that is the reader's choice, not a bug in cascade.
fn quiet_on_closed_stdout() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.contains("failed printing to stdout") {
            std::process::exit(0);
        }
        default_hook(info);
    }));
}
