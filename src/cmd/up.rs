//! `promlake up`: everything in one process on the config's storage.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::http::StatusCode;
use axum::routing::post;
use clap::Args;
use promlake_core::clock::SystemClock;
use promlake_core::config::Config;
use promlake_core::shard::Shard;
use promlake_core::telemetry::Registry;
use promlake_query::service::QueryService;
use promlake_scrape::worker::{Worker, WorkerOptions};
use tokio::sync::{mpsc, oneshot, watch};

use super::common;

#[derive(Args)]
pub struct UpArgs {
    /// The configuration file: Prometheus' prometheus.yml plus promlake's sections
    /// (storage, region, regions, query, alerting receivers).
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
    // From here on SIGHUP reloads the config and SIGTERM stops with a final flush, instead of
    // either ending the process.
    let mut hangups = common::hangups()?;
    let shutdown = common::shutdown_signal();
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
    // Reloaded configs reach the workers here; they keep what they hold.
    let (cfg_tx, cfg_rx) = watch::channel(cfg.clone());
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
            let configs = cfg_rx.clone();
            workers.push(tokio::spawn(async move {
                w.run_reloading(
                    async move {
                        let _ = rx.wait_for(|s| *s).await;
                    },
                    configs,
                )
                .await
            }));
        }
    }
    let query = Arc::new(super::query::service(&cfg, &registry)?);
    let mut app = promlake_query::router(promlake_query::AppState {
        service: query.clone(),
    });
    // The rule evaluator is replaced on a reload; the API shows the current one's status.
    let shown: promlake_alert::evaluator::StatusHandle = Arc::default();
    app = app.merge(promlake_alert::api::router(shown.clone()));
    let (reload_tx, mut reload_rx) = mpsc::channel::<oneshot::Sender<Result<(), String>>>(4);
    app = app.route(
        "/-/reload",
        post(move || {
            let tx = reload_tx.clone();
            async move {
                let (reply, answer) = oneshot::channel();
                if tx.send(reply).await.is_err() {
                    return (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "shutting down\n".to_owned(),
                    );
                }
                match answer.await {
                    Ok(Ok(())) => (StatusCode::OK, String::new()),
                    Ok(Err(e)) => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("failed to reload config: {e}\n"),
                    ),
                    Err(_) => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "shutting down\n".to_owned(),
                    ),
                }
            }
        }),
    );
    let mut rules = Rules {
        replica: replicas[0].clone(),
        query: query.clone(),
        registry: registry.clone(),
        shown,
        running: None,
    };
    rules.start(&cfg)?;
    let reloads_ok = registry.gauge(
        "promlake_config_last_reload_successful",
        "Whether the last configuration reload succeeded.",
        &[],
    );
    reloads_ok.set(1.0);
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
    if !cfg.rule_files.is_empty() {
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
    tokio::pin!(shutdown);
    let mut current = cfg.clone();
    loop {
        let reply = tokio::select! {
            _ = &mut shutdown => break,
            _ = hangups.recv() => None,
            Some(reply) = reload_rx.recv() => Some(reply),
        };
        let result = reload(&a.config, &current, &mut rules).await;
        match &result {
            Ok(new) => {
                reloads_ok.set(1.0);
                current = new.clone();
                let _ = cfg_tx.send(new.clone());
                tracing::info!(file = %a.config.display(), "configuration reloaded");
            }
            Err(e) => {
                reloads_ok.set(0.0);
                tracing::error!(file = %a.config.display(), error = %e, "reloading the configuration failed; the previous one stays in force");
            }
        }
        if let Some(reply) = reply {
            let _ = reply.send(result.map(|_| ()));
        }
    }
    println!("promlake up: stopping");
    let _ = stop_tx.send(true);
    let (mut lost, mut spilled) = (0u64, 0u64);
    for w in workers {
        if let Ok((_, report)) = w.await {
            lost += report.samples_lost;
            spilled += report.samples_spilled;
        }
    }
    rules.stop().await;
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

/// Loads the config file again; its rule files must load too. On success the rule evaluator
/// runs the new rules (it continues from its state log, so `for` survives) and the new config is
/// returned for the workers. On failure everything keeps running as it was.
async fn reload(
    path: &std::path::Path,
    current: &Arc<Config>,
    rules: &mut Rules,
) -> std::result::Result<Arc<Config>, String> {
    let new = common::load_config(path).map_err(|e| format!("{e:#}"))?;
    if new.storage.url != current.storage.url {
        tracing::warn!(
            old = %current.storage.url,
            new = %new.storage.url,
            "storage changes take effect at the next start"
        );
    }
    rules.replace(&new).await.map_err(|e| format!("{e:#}"))?;
    Ok(new)
}

/// The rule evaluator of `up`, replaced when the config is reloaded.
struct Rules {
    replica: String,
    query: Arc<QueryService>,
    registry: Registry,
    /// What `/api/v1/rules` and `/api/v1/alerts` show.
    shown: promlake_alert::evaluator::StatusHandle,
    running: Option<RunningRules>,
}

struct RunningRules {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    mirror: tokio::task::JoinHandle<()>,
}

impl Rules {
    /// Starts an evaluator for the config's rule files, if it has any.
    fn start(&mut self, cfg: &Arc<Config>) -> Result<()> {
        let e = super::alert::evaluator(cfg, &self.replica, self.query.clone(), &self.registry)?;
        self.run(e);
        Ok(())
    }

    fn run(&mut self, e: Option<promlake_alert::evaluator::Evaluator>) {
        let Some(e) = e else {
            if let Ok(mut s) = self.shown.write() {
                s.clear();
            }
            return;
        };
        let (stop, mut rx) = watch::channel(false);
        // The API's handle outlives evaluators: copy the running one's status into it.
        let (from, to) = (e.status(), self.shown.clone());
        let mirror = tokio::spawn(async move {
            loop {
                let now = from.read().map(|s| s.clone()).unwrap_or_default();
                if let Ok(mut s) = to.write() {
                    *s = now;
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        });
        let task = tokio::spawn(async move {
            e.run(async move {
                let _ = rx.wait_for(|s| *s).await;
            })
            .await;
        });
        self.running = Some(RunningRules { stop, task, mirror });
    }

    /// Builds the evaluator of the new config first (a rule file that does not load fails the
    /// reload and keeps the running one), then replaces the running one.
    async fn replace(&mut self, cfg: &Arc<Config>) -> Result<()> {
        let e = super::alert::evaluator(cfg, &self.replica, self.query.clone(), &self.registry)?;
        self.stop().await;
        self.run(e);
        Ok(())
    }

    async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            let _ = r.stop.send(true);
            let _ = r.task.await;
            r.mirror.abort();
        }
    }
}
