//! `promlake query` (the HTTP service) and `promlake sql` (one query from the terminal).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use promlake_core::clock::SystemClock;
use promlake_core::config::Config;
use promlake_core::store::StoreOptions;
use promlake_core::telemetry::Registry;
use promlake_query::format::{self, Format};
use promlake_query::{AppState, QueryService, RegionStore};

use super::common;

#[derive(Args)]
pub struct QueryArgs {
    /// The configuration file: Prometheus' prometheus.yml plus promlake's sections
    /// (storage, region, regions, query, alerting receivers).
    #[arg(long, short)]
    config: PathBuf,
    /// Where to serve /api/v1/sql, /federate, /metrics.
    #[arg(long, default_value = "127.0.0.1:9090")]
    listen: SocketAddr,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum OutputFormat {
    Table,
    Csv,
    Json,
}

#[derive(Args)]
pub struct SqlArgs {
    /// The configuration file: Prometheus' prometheus.yml plus promlake's sections
    /// (storage, region, regions, query, alerting receivers).
    #[arg(long, short)]
    config: PathBuf,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
    /// One SQL statement over the tables `samples` and `samples_raw`.
    sql: String,
}

/// The query service over every region of a config.
pub fn service(cfg: &Config, registry: &Registry) -> Result<QueryService> {
    let stores = RegionStore::open_all(cfg, &StoreOptions::default())?;
    QueryService::new(cfg, stores, Arc::new(SystemClock), registry)
        .map_err(|e| anyhow::anyhow!("{e}"))
}

pub async fn serve(a: QueryArgs) -> Result<ExitCode> {
    common::init_logging();
    let cfg = common::load_config(&a.config)?;
    let registry = Registry::new();
    let svc = Arc::new(service(&cfg, &registry)?);
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .with_context(|| format!("listening on {}", a.listen))?;
    let names: Vec<&str> = svc.regions().iter().map(|r| r.name.as_str()).collect();
    println!(
        "promlake query: regions {} on http://{}",
        names.join(", "),
        a.listen
    );
    axum::serve(
        promlake_query::listener::LenientListener(listener),
        promlake_query::router(AppState { service: svc }),
    )
    .with_graceful_shutdown(common::shutdown_signal())
    .await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn sql(a: SqlArgs) -> Result<ExitCode> {
    let cfg = common::load_config(&a.config)?;
    let svc = service(&cfg, &Registry::new())?;
    match svc.sql(&a.sql).await {
        Ok((schema, batches)) => {
            let f = match a.format {
                OutputFormat::Table => Format::Table,
                OutputFormat::Csv => Format::Csv,
                OutputFormat::Json => Format::Json,
            };
            let out = format::encode(f, &schema, &batches).map_err(|e| anyhow::anyhow!("{e}"))?;
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&out)?;
            if f == Format::Json {
                stdout.write_all(b"\n")?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("promlake sql: {} ({}): {e}", e.error_type(), e.status());
            Ok(ExitCode::FAILURE)
        }
    }
}
