//! `promlake alert`: one alert evaluator replica; `promlake check rules`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use promlake_alert::evaluator::{Evaluator, EvaluatorOptions};
use promlake_alert::rules;
use promlake_core::clock::SystemClock;
use promlake_core::config::Config;
use promlake_core::telemetry::Registry;
use promlake_query::{QueryService, RegionStore};

use super::common;

#[derive(Args)]
pub struct AlertArgs {
    /// The configuration file: Prometheus' prometheus.yml plus promlake's sections
    /// (storage, region, regions, query, alerting receivers).
    #[arg(long, short)]
    config: PathBuf,
    /// This replica's name (default: the `replica` external label, else 0). Run as many
    /// replicas as you like: they deduplicate through the state log.
    #[arg(long)]
    replica: Option<String>,
    /// Serve /api/v1/rules, /api/v1/alerts and /metrics here.
    #[arg(long)]
    listen: Option<SocketAddr>,
}

/// The evaluator of a config's rule files, on its storage.
pub fn evaluator(
    cfg: &Arc<Config>,
    replica: &str,
    query: Arc<QueryService>,
    registry: &Registry,
) -> Result<Option<Evaluator>> {
    if cfg.rule_files.is_empty() {
        return Ok(None);
    }
    let groups = rules::load_groups(cfg).map_err(|errs| {
        let lines: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        anyhow::anyhow!("rule files:\n  {}", lines.join("\n  "))
    })?;
    let storage = common::open_storage(cfg, &cfg.storage)?;
    let e = Evaluator::new(
        cfg.clone(),
        groups,
        EvaluatorOptions::new(replica, cfg.region()),
        query,
        storage.store,
        Arc::new(SystemClock),
        registry,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Some(e))
}

pub async fn run(a: AlertArgs) -> Result<ExitCode> {
    common::init_logging();
    let cfg = common::load_config(&a.config)?;
    let registry = Registry::new();
    let query = Arc::new(super::query::service(&cfg, &registry)?);
    let replica = common::replica(&cfg, a.replica);
    let Some(e) = evaluator(&cfg, &replica, query, &registry)? else {
        anyhow::bail!("{}: no rule_files to evaluate", a.config.display());
    };
    if let Some(addr) = a.listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        let reg = registry.clone();
        let app = promlake_alert::api::router(e.status()).route(
            "/metrics",
            axum::routing::get(move || {
                let r = reg.clone();
                async move { r.render() }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
    }
    tracing::info!(replica = %replica, "alert evaluator started");
    e.run(common::shutdown_signal()).await;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct CheckRulesArgs {
    /// Rule files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// `promtool check rules`, plus planning every rule's SQL against promlake's tables.
pub async fn check(a: CheckRulesArgs) -> Result<ExitCode> {
    Ok(if check_files(&a.files).await? {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Checks rule files as `promtool check rules` does, printing what it finds; true when all pass.
pub async fn check_files(files: &[PathBuf]) -> Result<bool> {
    let cfg = Config::default();
    let store = promlake_core::store::open("memory://check-rules", &Default::default())?.store;
    let svc = QueryService::new(
        &cfg,
        vec![RegionStore {
            name: "check".into(),
            store,
        }],
        Arc::new(SystemClock),
        &Registry::new(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut failed = false;
    for f in files {
        println!("Checking {}", f.display());
        let file = match rules::load_file(f) {
            Ok(file) => file,
            Err(errs) => {
                println!("  FAILED:");
                for e in errs {
                    println!("{e}");
                }
                failed = true;
                continue;
            }
        };
        let mut n = 0;
        let mut problems = Vec::new();
        for g in &file.groups {
            for r in &g.rules {
                n += 1;
                // The evaluator holds every result to the same check.
                match svc.plan_schema(&r.expr).await {
                    Ok(schema) => {
                        if let Err(e) = rules::check_rule_output(&g.name, r, &schema) {
                            problems.push(e.to_string());
                        }
                    }
                    Err(e) => {
                        problems.push(format!("group {:?}, rule {:?}: {e}", g.name, r.name()))
                    }
                }
            }
        }
        if problems.is_empty() {
            println!("  SUCCESS: {n} rules found");
        } else {
            println!("  FAILED:");
            for p in problems {
                println!("{}: {p}", f.display());
            }
            failed = true;
        }
    }
    Ok(!failed)
}
