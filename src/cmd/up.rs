//! `promlake up`: everything in one process on the config's storage.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use promlake_core::clock::SystemClock;
use promlake_core::shard::Shard;
use promlake_core::telemetry::Registry;
use promlake_scrape::worker::{Worker, WorkerOptions};
use tokio::sync::watch;

use super::common;

#[derive(Args)]
pub struct UpArgs {
    #[arg(long, short, default_value = "examples/local.yml")]
    config: PathBuf,
    /// Where promlake serves /api/v1/sql, /federate and its own /metrics.
    #[arg(long, default_value = "127.0.0.1:9090")]
    listen: SocketAddr,
    /// Scrape workers: the targets are split into this many shards.
    #[arg(long, default_value_t = 1)]
    shards: u64,
    /// HA replicas per shard, comma-separated (default: the `replica` external label, else 0).
    #[arg(long, value_delimiter = ',')]
    replicas: Vec<String>,
    #[command(flatten)]
    worker: common::WorkerFlags,
}

pub async fn run(a: UpArgs) -> Result<ExitCode> {
    common::init_logging();
    let cfg = common::load_config(&a.config)?;
    let storage = common::open_storage(&cfg, &cfg.storage)?;
    let registry = Registry::new();
    let replicas = if a.replicas.is_empty() {
        vec![common::replica(&cfg, None)]
    } else {
        a.replicas.clone()
    };
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .with_context(|| format!("listening on {}", a.listen))?;
    let shards = a.shards.max(1);
    let owned: Vec<(Shard, String)> = (0..shards)
        .flat_map(|k| replicas.iter().map(move |r| (k, r.clone())))
        .map(|(k, r)| Ok((Shard::new(k, shards).map_err(anyhow::Error::msg)?, r)))
        .collect::<Result<_>>()?;
    common::remove_staging_leftovers(&storage, &owned);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut workers = Vec::new();
    for k in 0..a.shards.max(1) {
        for r in &replicas {
            let shard = Shard::new(k, a.shards.max(1)).map_err(anyhow::Error::msg)?;
            let mut opts = WorkerOptions::new(shard, r, cfg.region());
            a.worker.apply(&mut opts);
            let w = Worker::new(
                cfg.clone(),
                opts,
                storage.store.clone(),
                Arc::new(SystemClock),
                &registry,
            )
            .await?;
            let mut rx = stop_rx.clone();
            workers.push(tokio::spawn(async move {
                w.run(async move {
                    let _ = rx.wait_for(|s| *s).await;
                })
                .await
            }));
        }
    }
    let query = Arc::new(super::query::service(&cfg, &registry)?);
    let mut app = promlake_query::router(promlake_query::AppState {
        service: query.clone(),
    });
    let mut evaluators = Vec::new();
    if let Some(e) = super::alert::evaluator(&cfg, &replicas[0], query, &registry)? {
        app = app.merge(promlake_alert::api::router(e.status()));
        let mut rx = stop_rx.clone();
        evaluators.push(tokio::spawn(async move {
            e.run(async move {
                let _ = rx.wait_for(|s| *s).await;
            })
            .await;
        }));
    }
    let mut rx = stop_rx.clone();
    let server = tokio::spawn(async move {
        axum::serve(promlake_query::listener::LenientListener(listener), app)
            .with_graceful_shutdown(async move {
                let _ = rx.wait_for(|s| *s).await;
            })
            .await
    });
    let jobs: Vec<&str> = cfg
        .scrape_configs
        .iter()
        .map(|j| j.job_name.as_str())
        .collect();
    println!(
        "promlake up: {} worker(s) scraping job(s) {} into {} (region {}, a block every {})",
        workers.len(),
        jobs.join(", "),
        storage.url,
        cfg.region(),
        cfg.storage.flush_interval
    );
    let l = a.listen;
    println!("  http://{l}/metrics          promlake's own metrics (scraped by the promlake job)");
    println!("  http://{l}/api/v1/sql       SQL over the table samples (POST the query)");
    println!("  http://{l}/federate         Prometheus federation (match[]=...)");
    if !evaluators.is_empty() {
        println!(
            "  http://{l}/api/v1/alerts    alerts of {}",
            cfg.rule_files.join(", ")
        );
    }
    println!(
        "  stop with Ctrl-C: workers flush what they hold before exiting (what storage does not take within {} is kept in {})",
        a.worker.shutdown_timeout,
        a.worker.spill_dir.display()
    );
    common::shutdown_signal().await;
    println!("promlake up: stopping");
    let _ = stop_tx.send(true);
    let (mut lost, mut spilled) = (0u64, 0u64);
    for w in workers {
        if let Ok((_, report)) = w.await {
            lost += report.samples_lost;
            spilled += report.samples_spilled;
        }
    }
    for e in evaluators {
        let _ = e.await;
    }
    let _ = server.await;
    if spilled > 0 {
        eprintln!(
            "promlake: {spilled} sample(s) could not be written to {} before the shutdown deadline; kept in {}, written first at the next start",
            storage.url,
            a.worker.spill_dir.display()
        );
    }
    if lost > 0 {
        eprintln!("promlake: {lost} sample(s) could not be written or spilled and are lost");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
