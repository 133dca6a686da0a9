//! `promlake-bench`: promlake's benchmarks. Each subcommand measures one thing and prints a
//! Markdown table with the command that reproduces it; `bench/run` drives them.

use clap::{Parser, Subcommand};

mod alert;
mod compare;
mod fleet;
mod ingest;
mod lambda;
mod openmetrics;
mod parse;
mod procstat;
mod query;

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
    /// Serve a node_exporter-like fleet on loopback (prints the addresses).
    Fleet(fleet::Args),
    /// The scrape worker end to end: bytes/sample, PUTs/hour, CPU/sample, peak RSS.
    Ingest(ingest::Args),
    /// Global aggregations over two regions: promlake vs DuckDB on the same files.
    Query(query::Args),
    /// HA alerting: requests per group per tick, evaluation cost, notification delay.
    Alert(alert::Args),
    /// The scrape function's Lambda package: init and invocation durations, CPU, memory.
    Lambda(lambda::Args),
    /// promlake side by side with Prometheus and DuckDB: ingest CPU, bytes per sample, queries.
    Compare(compare::Args),
    /// Write the fleet's series for some hours as an OpenMetrics file (for backfill).
    Openmetrics(openmetrics::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Parse(a) => parse::run(a),
        Command::Fleet(a) => fleet::run(a),
        Command::Ingest(a) => ingest::run(a),
        Command::Query(a) => query::run(a),
        Command::Alert(a) => alert::run(a),
        Command::Lambda(a) => lambda::run(a),
        Command::Compare(a) => compare::run(a),
        Command::Openmetrics(a) => openmetrics::run(a),
    }
}
