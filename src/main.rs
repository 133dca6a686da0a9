//! `promlake`: Prometheus-compatible monitoring on object storage.
//!
//! One binary with a subcommand per component; each wires the library crates together and adds
//! nothing of its own but argument parsing and output.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

#[derive(Parser)]
#[command(
    name = "promlake",
    version,
    about = "Prometheus-compatible monitoring on object storage"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate configuration and show what it does.
    #[command(subcommand)]
    Check(cmd::check::Check),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(c) => cmd::check::run(c),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("promlake: {e:#}");
            ExitCode::FAILURE
        }
    }
}
