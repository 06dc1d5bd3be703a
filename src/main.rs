//! The `cascade` command-line tool: explore attention cascades, schedules and kernels.
//!
//! Each subcommand lives in its own `cmd_*.rs` file with an `Args` struct and a `run`
//! function; this file only registers them and maps results to exit codes:
//! 0 ok, 1 user error (diagnostics on stderr), 2 internal error.
//!
//! The contract holds for every failure: an argument clap refuses, a mistake in an input, a
//! file that cannot be read or written (the path and the OS error) and output that cannot be
//! written to stdout are user errors; anything else, a panic included, is an internal error.
//! With `--format json` each is one JSON object on stderr (`{"ok": false, "error": …}`). A
//! closed stdout (`cascade list | head`) is the reader's choice and ends quietly with 0.

mod arch_load;
mod cmd_check;
mod cmd_codegen;
mod cmd_compare;
mod cmd_eval;
mod cmd_list;
mod cmd_merge_sweep;
mod cmd_passes;
mod cmd_report;
mod cmd_rewrite;
mod cmd_scale;
mod cmd_show;
mod cmd_simulate;
mod cmd_sweep;
mod cmd_zoo;
mod eval_io;
mod files;
mod load;
mod npy;
mod output;
mod perfetto;
mod plot;
mod schema;

use std::ffi::OsString;
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Mutex;

use clap::Parser;
use serde_json::json;

use crate::output::{Format, OutputFormat, UserError};

/// Design attention accelerators and kernels from Extended Einsum cascades.
#[derive(Debug, Parser)]
#[command(name = "cascade", version)]
struct Cli {
    /// Output format of results and errors (`csv`: simulate, compare, sweep, merge-sweep, scale and zoo only).
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
    /// Merge the CSV files of a sweep's shards (`sweep --shard K/N`) and recompute the Pareto fronts.
    MergeSweep(cmd_merge_sweep::Args),
    /// Scale attention over a system of chips: strong and weak scaling, exposed communication.
    Scale(cmd_scale::Args),
    /// Generate a CUDA, HIP or C++ kernel for a cascade.
    Codegen(cmd_codegen::Args),
    /// Write one self-contained HTML page: the comparison, breakdowns, utilisation, roofline
    /// and Pareto front.
    Report(cmd_report::Args),
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
        Command::MergeSweep(args) => cmd_merge_sweep::run(args, format),
        Command::Scale(args) => cmd_scale::run(args, format),
        Command::Codegen(args) => cmd_codegen::run(args, plain("codegen")?),
        Command::Report(args) => cmd_report::run(args, plain("report")?),
        Command::Zoo(args) => cmd_zoo::run(args, format),
    }
}

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    // Known before clap parses, so that clap's own errors can be JSON too.
    let json_errors = asks_for_json(&argv);
    let cli = match Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(e) => return argument_error(&e, json_errors),
    };
    let format = cli.format.for_errors();
    record_panics();
    let result = std::panic::catch_unwind(|| {
        run(cli)?;
        // Output still buffered is written now, so that a failure to write it is reported.
        match std::io::stdout().flush() {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(output::stdout_error(&e)),
            _ => Ok(()),
        }
    });
    match result {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => match e.downcast_ref::<UserError>() {
            Some(user) => {
                match format {
                    Format::Text => report(&user.text),
                    Format::Json => report_json(&user.json),
                }
                ExitCode::from(1)
            }
            None => internal_error(&format!("{e:#}"), format),
        },
        Err(_) => {
            let what = PANIC.lock().map(|p| p.clone()).unwrap_or_default();
            let what = what.unwrap_or_else(|| "an unknown panic".to_string());
            // `println!` panics when stdout fails: a closed pipe ends quietly, anything else
            // (a full disk) is an error of the run.
            if let Some(why) = what.strip_prefix("failed printing to stdout: ") {
                if why.contains("Broken pipe") {
                    return ExitCode::SUCCESS;
                }
                let user = UserError::message(format!("cannot write to standard output: {why}"));
                match format {
                    Format::Text => report(&user.text),
                    Format::Json => report_json(&user.json),
                }
                return ExitCode::from(1);
            }
            internal_error(
                &format!("cascade panicked ({what}); a bug, please report it"),
                format,
            )
        }
    }
}

/// Whether the command line asks for `--format json` (`--format json` or `--format=json`).
fn asks_for_json(argv: &[OsString]) -> bool {
    argv.iter().enumerate().any(|(i, a)| {
        a == "--format=json" || (a == "--format" && argv.get(i + 1).is_some_and(|v| v == "json"))
    })
}

/// A refused command line: clap's message (exit 1), or help and version text (exit 0).
fn argument_error(e: &clap::Error, json_errors: bool) -> ExitCode {
    if !e.use_stderr() {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    if json_errors {
        let text = e.render().to_string();
        // The problem is the text before the usage line, on one line.
        let problem = text.split("\n\nUsage:").next().unwrap_or_default();
        let problem = problem.strip_prefix("error: ").unwrap_or(problem);
        let message: Vec<&str> = problem.split_whitespace().collect();
        report_json(&json!({ "ok": false, "error": message.join(" "), "usage": text.trim_end() }));
    } else {
        let _ = e.print();
    }
    ExitCode::from(1)
}

fn internal_error(message: &str, format: Format) -> ExitCode {
    match format {
        Format::Text => report(&format!("internal error: {message}\n")),
        Format::Json => report_json(&json!({
            "ok": false,
            "internal": true,
            "error": format!("internal error: {message}"),
        })),
    }
    ExitCode::from(2)
}

/// Writes an error on stderr; a failure to do so has nowhere left to be reported.
fn report(text: &str) {
    let _ = std::io::stderr().write_all(text.as_bytes());
}

fn report_json(value: &serde_json::Value) {
    report(&format!(
        "{}\n",
        serde_json::to_string_pretty(value).unwrap_or_default()
    ));
}

/// The message and place of the last panic, for `main` to report in the run's format.
static PANIC: Mutex<Option<String>> = Mutex::new(None);

/// Records panics instead of printing them (Rust's own report follows with `RUST_BACKTRACE`).
fn record_panics() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("a panic without a message");
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let stdout = message.starts_with("failed printing to stdout");
        if let Ok(mut slot) = PANIC.lock() {
            *slot = Some(if stdout {
                message.to_string()
            } else {
                format!("{message}{place}")
            });
        }
        if !stdout && std::env::var_os("RUST_BACKTRACE").is_some() {
            default_hook(info);
        }
    }));
}
