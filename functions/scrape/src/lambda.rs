//! The scrape worker as an AWS Lambda function, invoked by a schedule once a minute per shard and
//! replica.
//!
//! An invocation does the scrape rounds of its period (`PROMLAKE_INVOCATION_PERIOD`, default 1m:
//! 4 rounds at 15 s), writes one block, and keeps the staleness state in S3 for the next one. It
//! is the same [`Worker`] the `promlake scrape --once` command runs.
//!
//! The event names the shard and replica, at the top level (a schedule's constant input) or under
//! `detail`; `PROMLAKE_SHARD` and `PROMLAKE_REPLICA` are the defaults:
//!
//! ```json
//! {"shard": "1/4", "replica": "a"}
//! ```
//!
//! Errors carry an `errorType`: `promlake.InvalidEvent` and `promlake.Config` will fail again if
//! retried; `promlake.Storage` (a block that could not be written before the deadline) may not.

use std::sync::Arc;
use std::time::Duration;

use lambda_runtime::LambdaEvent;
use object_store::ObjectStore;
use promlake_core::clock::SharedClock;
use promlake_core::config::Config;
use promlake_core::duration::PromDuration;
pub use promlake_core::function::FunctionError;
use promlake_core::function::event_field;
use promlake_core::shard::Shard;
use promlake_core::telemetry::Registry;
use serde::Serialize;
use serde_json::Value;

use crate::worker::{Worker, WorkerOptions};

/// What an invocation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScrapeSummary {
    pub shard: String,
    pub replica: String,
    pub rounds: u32,
    pub targets: usize,
    pub up: usize,
    pub down: usize,
    pub samples: u64,
    pub stale_markers: u64,
    pub blocks_written: usize,
    pub rows_written: u64,
    pub state_written: bool,
}

/// The clients an invocation needs, built once per container.
pub struct ScrapeFunction {
    config: Arc<Config>,
    store: Arc<dyn ObjectStore>,
    clock: SharedClock,
    period: Duration,
    default_shard: Option<String>,
    default_replica: Option<String>,
}

impl ScrapeFunction {
    /// `env` reads the environment (see [`Config::from_env`]; also `PROMLAKE_SHARD`,
    /// `PROMLAKE_REPLICA`, `PROMLAKE_INVOCATION_PERIOD`).
    pub async fn from_env(
        env: impl Fn(&str) -> Option<String>,
        store_options: &promlake_core::store::StoreOptions,
        clock: SharedClock,
    ) -> Result<Self, FunctionError> {
        let config = Config::from_env(&env, store_options)
            .await
            .map_err(|e| FunctionError::Config(e.to_string()))?;
        let period = match env("PROMLAKE_INVOCATION_PERIOD") {
            Some(p) => {
                p.parse::<PromDuration>()
                    .map_err(|e| FunctionError::Config(format!("PROMLAKE_INVOCATION_PERIOD: {e}")))?
                    .0
            }
            None => Duration::from_secs(60),
        };
        let url = config.storage_url(&config.storage);
        let store = promlake_core::store::open(&url, store_options)
            .map_err(|e| FunctionError::Config(e.to_string()))?
            .store;
        Ok(Self {
            config: Arc::new(config),
            store,
            clock,
            period,
            default_shard: env("PROMLAKE_SHARD"),
            default_replica: env("PROMLAKE_REPLICA"),
        })
    }

    /// One invocation.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<ScrapeSummary, FunctionError> {
        let shard_text = event_field(&event.payload, "shard")
            .map(str::to_owned)
            .or_else(|| self.default_shard.clone())
            .ok_or_else(|| {
                FunctionError::InvalidEvent(
                    "the event names no shard (\"shard\": \"K/N\") and PROMLAKE_SHARD is not set"
                        .into(),
                )
            })?;
        let shard: Shard = shard_text.parse().map_err(|e: String| {
            FunctionError::InvalidEvent(format!("shard {shard_text:?}: {e}"))
        })?;
        let replica = event_field(&event.payload, "replica")
            .map(str::to_owned)
            .or_else(|| self.default_replica.clone())
            .unwrap_or_else(|| "0".into());
        let mut opts = WorkerOptions::new(shard, &replica, self.config.region());
        opts.state_interval = Duration::ZERO;
        let mut worker = Worker::new(
            self.config.clone(),
            opts,
            self.store.clone(),
            self.clock.clone(),
            &Registry::new(),
        )
        .await
        .map_err(|e| match e {
            crate::worker::WorkerError::Invalid(m) => FunctionError::InvalidEvent(m),
            crate::worker::WorkerError::Core(c) => FunctionError::Storage(c.to_string()),
        })?;
        let deadline = i64::try_from(event.context.deadline).unwrap_or(i64::MAX);
        let interval = self
            .config
            .scrape_configs
            .iter()
            .map(|j| j.interval().as_millis())
            .min()
            .unwrap_or(60_000)
            .max(1) as i64;
        let rounds = (self.period.as_millis() as i64 / interval).max(1) as u32;
        let start = self.clock.now_ms();
        let mut summary = ScrapeSummary {
            shard: shard.to_string(),
            replica: replica.clone(),
            rounds: 0,
            targets: 0,
            up: 0,
            down: 0,
            samples: 0,
            stale_markers: 0,
            blocks_written: 0,
            rows_written: 0,
            state_written: false,
        };
        // Keep time to flush before the deadline (a zero deadline means none was given).
        let margin = 5_000;
        for r in 0..rounds {
            let due = start + i64::from(r) * interval;
            let wait = due - self.clock.now_ms();
            if wait > 0 {
                tokio::time::sleep(Duration::from_millis(wait as u64)).await;
            }
            if deadline > 0 && self.clock.now_ms() + margin > deadline {
                break;
            }
            let round = worker.scrape_all().await;
            summary.rounds += 1;
            summary.targets = round.targets;
            summary.up = round.up;
            summary.down = round.down;
            summary.samples += round.samples;
            summary.stale_markers += round.stale_markers;
        }
        // Blocks that fail to write are retried (the store retries each request too) until the
        // deadline; an attempt still running a second before it is abandoned. The staleness state
        // is written after the blocks, so an abandoned attempt leaves the previous state in place.
        let mut backoff = Duration::from_millis(200);
        loop {
            let attempt = worker.flush(true);
            let f = if deadline > 0 {
                let left = (deadline - self.clock.now_ms() - 1_000).max(0) as u64;
                match tokio::time::timeout(Duration::from_millis(left), attempt).await {
                    Ok(f) => f,
                    Err(_) => {
                        return Err(FunctionError::Storage(format!(
                            "writing the block(s) of shard {shard} replica {replica} did not finish before the invocation's deadline; their samples are lost"
                        )));
                    }
                }
            } else {
                attempt.await
            };
            summary.blocks_written += f.blocks_written;
            summary.rows_written += f.rows_written;
            summary.state_written |= f.state_written;
            if f.blocks_pending == 0 {
                break;
            }
            let out_of_time =
                deadline > 0 && self.clock.now_ms() + backoff.as_millis() as i64 + 1_000 > deadline;
            if out_of_time || backoff > Duration::from_secs(20) {
                return Err(FunctionError::Storage(format!(
                    "{} block(s) of shard {shard} replica {replica} could not be written before the deadline; their samples are lost",
                    f.blocks_pending
                )));
            }
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
        Ok(summary)
    }
}
