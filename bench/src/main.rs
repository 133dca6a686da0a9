//! `promlake-bench`: promlake's benchmarks. Each subcommand measures one thing and prints a
//! Markdown table with the command that reproduces it; `bench/run` drives them.

use clap::{Parser, Subcommand};

mod parse;

#[derive(Parser)]
#[command(name = "promlake-bench", about = "promlake benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Parsing and relabeling of a real exposition page on one core.
    Parse(parse::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Parse(a) => parse::run(a),
    }
}
