//! `promlake scrape`: one scrape worker.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use clap::Args;
use promlake_core::clock::SystemClock;
use promlake_core::shard::Shard;
use promlake_core::telemetry::Registry;
use promlake_scrape::worker::{Worker, WorkerOptions};

use super::common;

#[derive(Args)]
pub struct ScrapeArgs {
    /// The configuration file: Prometheus' prometheus.yml plus promlake's sections
    /// (storage, region, regions, query, alerting receivers).
    #[arg(long, short)]
    config: PathBuf,
    /// The shard this worker owns, K/N.
    #[arg(long, default_value = "0/1")]
    shard: Shard,
    /// HA replica name (default: the `replica` external label, else 0).
    #[arg(long)]
    replica: Option<String>,
    /// One round of scrapes, one flush, then exit (what a Lambda invocation does).
    #[arg(long)]
    once: bool,
    #[command(flatten)]
    worker: common::WorkerFlags,
}

pub async fn run(a: ScrapeArgs) -> Result<ExitCode> {
    common::init_logging();
    // From here on SIGHUP reloads the config instead of ending the process.
    let mut hangups = common::hangups()?;
    let cfg = common::load_config(&a.config)?;
    let storage = common::open_storage(&cfg, &cfg.storage)?;
    let replica = common::replica(&cfg, a.replica);
    let mut opts = WorkerOptions::new(a.shard, &replica, cfg.region());
    a.worker.apply(&mut opts);
    if a.once {
        opts.state_interval = std::time::Duration::ZERO;
    }
    common::remove_staging_leftovers(&storage, &[(a.shard, replica.clone())]);
    let registry = Registry::new();
    let mut worker = Worker::new(
        cfg.clone(),
        opts,
        storage.store.clone(),
        Arc::new(SystemClock),
        &registry,
    )
    .await?;
    if a.once {
        let round = worker.scrape_all().await;
        let flush = worker.flush(true).await;
        println!(
            "shard {} replica {replica}: {} target(s), {} up, {} down; {} sample(s), {} stale marker(s)",
            a.shard, round.targets, round.up, round.down, round.samples, round.stale_markers
        );
        for (job, url, h) in worker.target_health() {
            if let Some(e) = &h.error {
                println!("  down: {job} {url}: {e}");
            }
        }
        for k in &flush.keys {
            println!("  wrote {}", k);
        }
        if flush.blocks_pending > 0 {
            let held = worker.sink().pending_samples();
            return match worker.sink().spill(&a.worker.spill_dir) {
                Ok(s) => {
                    eprintln!(
                        "promlake: {} block(s) could not be written to {}; their {} sample(s) are kept in {} and written first by the next run",
                        s.blocks,
                        storage.url,
                        s.samples,
                        a.worker.spill_dir.display()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!(
                        "promlake: {} block(s) could not be written to {} nor spilled ({e}); {held} sample(s) are lost",
                        flush.blocks_pending, storage.url
                    );
                    Ok(ExitCode::FAILURE)
                }
            };
        }
        return Ok(ExitCode::SUCCESS);
    }
    tracing::info!(shard = %a.shard, replica = %replica, storage = %storage.url, "scrape worker started");
    let (configs, reloads) = tokio::sync::watch::channel(cfg.clone());
    let path = a.config.clone();
    tokio::spawn(async move {
        loop {
            hangups.recv().await;
            match common::load_config(&path) {
                Ok(c) => {
                    let _ = configs.send(c);
                }
                Err(e) => {
                    tracing::error!(file = %path.display(), error = %format!("{e:#}"), "reloading the configuration failed; the previous one stays in force")
                }
            }
        }
    });
    let (_, report) = worker
        .run_reloading(common::shutdown_signal(), reloads)
        .await;
    if report.samples_lost > 0 {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
