//! Pieces the subcommands share: config and storage loading, logging, shutdown, time arguments.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use promlake_core::clock::{Clock, SystemClock, TimestampMs};
use promlake_core::config::{Config, StorageConfig};
use promlake_core::store::{self, Storage, StoreOptions};

/// Logs to stderr; `RUST_LOG` overrides the default level (info).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,aws_config=warn,hyper=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Loads a config, printing its warnings.
pub fn load_config(path: &Path) -> Result<Arc<Config>> {
    let cfg = Config::load(path).map_err(|e| anyhow!("{e}"))?;
    for w in &cfg.warnings {
        tracing::warn!("{}: {w}", path.display());
    }
    Ok(Arc::new(cfg))
}

/// Opens a storage section (the `AWS_*` environment configures S3).
pub fn open_storage(cfg: &Config, storage: &StorageConfig) -> Result<Storage> {
    let url = cfg.storage_url(storage);
    store::open(&url, &StoreOptions::default()).with_context(|| format!("opening storage {url}"))
}

/// How a long-running scrape worker stops and what it holds meanwhile (`up` and `scrape`).
#[derive(clap::Args, Clone, Debug)]
pub struct WorkerFlags {
    /// Where blocks that storage did not take by the shutdown deadline are written; the next
    /// start on this machine writes them first.
    #[arg(long, env = "PROMLAKE_SPILL_DIR", default_value = "promlake-spill")]
    pub spill_dir: std::path::PathBuf,
    /// How long a stopping worker keeps trying to write what it holds before spilling it.
    #[arg(long, default_value = "25s")]
    pub shutdown_timeout: promlake_core::duration::PromDuration,
    /// Samples a worker holds at most while storage fails; beyond, the oldest are dropped.
    #[arg(long, default_value_t = promlake_core::sink::DEFAULT_MAX_PENDING_SAMPLES)]
    pub max_pending_samples: u64,
}

impl WorkerFlags {
    pub fn apply(&self, o: &mut promlake_scrape::worker::WorkerOptions) {
        o.spill_dir = Some(self.spill_dir.clone());
        o.shutdown_timeout = self.shutdown_timeout.0;
        o.max_pending_samples = self.max_pending_samples;
    }
}

/// Removes the staging files a killed local-disk write left under `blocks/` (see
/// [`store::remove_staging_leftovers`]): those of the given workers' own blocks, and anyone's
/// older than ten minutes.
pub fn remove_staging_leftovers(
    storage: &Storage,
    workers: &[(promlake_core::shard::Shard, String)],
) {
    let Some(root) = store::local_root(&storage.url) else {
        return;
    };
    let ours = |k: &promlake_core::keys::BlockKey| {
        workers
            .iter()
            .any(|(s, r)| k.shard == *s && k.replica == *r)
    };
    match store::remove_staging_leftovers(
        &root,
        SystemClock.now_ms(),
        std::time::Duration::from_secs(600),
        ours,
    ) {
        Ok(removed) => {
            for f in removed {
                tracing::info!(file = %f.display(), "removed the leftover of an interrupted block write");
            }
        }
        Err(e) => {
            tracing::warn!(dir = %root.display(), error = %e, "looking for leftovers of interrupted block writes")
        }
    }
}

/// The replica name: the flag, else the `replica` external label, else `0`.
pub fn replica(cfg: &Config, flag: Option<String>) -> String {
    flag.or_else(|| cfg.global.external_labels.get("replica").cloned())
        .unwrap_or_else(|| "0".to_owned())
}

/// Resolves on SIGTERM or Ctrl-C. The handlers are installed when this is called, not when the
/// future is first polled: a SIGTERM that arrives while the process is still starting (say, right
/// after it began to answer `/-/ready`) is a shutdown like any other, not the default action that
/// ends the process without a final flush.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let (term, int) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = wait(term) => {}
                _ = wait(int) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// SIGHUP, as a stream of reload requests (never on platforms without it).
pub fn hangups() -> Result<Hangups> {
    #[cfg(unix)]
    {
        let s = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("listening for SIGHUP")?;
        Ok(Hangups(Some(s)))
    }
    #[cfg(not(unix))]
    Ok(Hangups(None))
}

/// See [`hangups`].
pub struct Hangups(
    #[cfg(unix)] Option<tokio::signal::unix::Signal>,
    #[cfg(not(unix))] Option<()>,
);

impl Hangups {
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(s) = &mut self.0
            && s.recv().await.is_some()
        {
            return;
        }
        std::future::pending::<()>().await
    }
}

/// A time argument: `now`, `now-1h` / `-1h` (a Prometheus duration ago), RFC 3339, or a Unix
/// timestamp in seconds (or milliseconds when it has 13 digits).
pub fn parse_time(s: &str) -> Result<TimestampMs> {
    let now = SystemClock.now_ms();
    let s = s.trim();
    if s == "now" {
        return Ok(now);
    }
    if let Some(ago) = s.strip_prefix("now-").or_else(|| s.strip_prefix('-')) {
        let d: promlake_core::duration::PromDuration =
            ago.parse().map_err(|e| anyhow!("time {s:?}: {e}"))?;
        return Ok(now - d.as_millis() as i64);
    }
    if let Ok(n) = s.parse::<i64>() {
        return Ok(if n.abs() >= 100_000_000_000 {
            n
        } else {
            n * 1000
        });
    }
    if let Ok(f) = s.parse::<f64>() {
        return Ok((f * 1000.0) as i64);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            anyhow!(
                "time {s:?}: use now, now-1h, RFC 3339 (2026-11-24T10:00:00Z) or a Unix timestamp"
            )
        })
}

/// RFC 3339 in UTC with milliseconds.
pub fn fmt_time(ms: TimestampMs) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}
