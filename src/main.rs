//! The `cascade` command-line tool: explore attention cascades, schedules and kernels.

use clap::Parser;

/// Design attention accelerators and kernels from Extended Einsum cascades.
#[derive(Debug, Parser)]
#[command(name = "cascade", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// List the library cascades.
    List,
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Command::List => {
            for name in cascade_ir::library::names() {
                println!("{name}");
            }
        }
    }
}
