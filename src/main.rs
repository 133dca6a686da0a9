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
    /// Everything in one process: scrape workers and promlake's HTTP endpoints.
    Up(cmd::up::UpArgs),
    /// One scrape worker for one shard of the targets.
    Scrape(cmd::scrape::ScrapeArgs),
    /// The query service: SQL and /federate over every region.
    Query(cmd::query::QueryArgs),
    /// Run one SQL query over every region and print the result.
    Sql(cmd::query::SqlArgs),
    /// One alert evaluator replica (run several: they deduplicate without a mesh).
    Alert(cmd::alert::AlertArgs),
    /// Blocks in storage.
    #[command(subcommand)]
    Blocks(cmd::blocks::Blocks),
    /// Validate configuration and show what it does.
    #[command(subcommand)]
    Check(cmd::check::Check),
    /// Backfill: write samples from a file as blocks.
    #[command(subcommand)]
    Import(cmd::import::Import),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(c) => cmd::check::run(c),
        command => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| {
                rt.block_on(async move {
                    match command {
                        Command::Up(a) => cmd::up::run(a).await,
                        Command::Scrape(a) => cmd::scrape::run(a).await,
                        Command::Query(a) => cmd::query::serve(a).await,
                        Command::Sql(a) => cmd::query::sql(a).await,
                        Command::Alert(a) => cmd::alert::run(a).await,
                        Command::Blocks(b) => cmd::blocks::run(b).await,
                        Command::Import(i) => cmd::import::run(i).await,
                        Command::Check(_) => unreachable!("handled above"),
                    }
                })
            }),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("promlake: {e:#}");
            ExitCode::FAILURE
        }
    }
}
