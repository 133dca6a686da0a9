//! The scrape worker as an AWS Lambda function, invoked by a schedule once a minute per shard and
//! replica.
//!
//! An invocation scrapes each target of its shard at the target's interval for the length of its
//! period (`PROMLAKE_INVOCATION_PERIOD`, default 1m: 4 scrapes per target at 15 s, spread over the
//! interval as Prometheus spreads them), writes one block, and keeps the staleness state in S3 for the next one. It
//! is the same [`Worker`] the `promlake scrape --once` command runs.
//!
//! The event names the shard and replica, at the top level (a schedule's constant input) or under
//! `detail`; `PROMLAKE_SHARD` and `PROMLAKE_REPLICA` are the defaults:
//!
//! ```json
//! {"shard": "1/4", "replica": "a"}
//! ```
//!
//! A Lambda function has no disk that outlives its invocation, so nothing is spilled: blocks that
//! storage has not taken by the deadline are lost, and the error says how many samples. The loss
//! is bounded by one invocation period of the shard's samples (the blocks of earlier invocations
//! are written or reported by those).
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
use promlake_core::function::{config_from_env, event_field};
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
    /// Target scrapes done (targets x their scrapes in the period).
    pub scrapes: u64,
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
    /// `PROMLAKE_REPLICA`, `PROMLAKE_INVOCATION_PERIOD`, and `PROMLAKE_SCRAPE_INTERVAL`, which
    /// must equal the config's `global.scrape_interval` when set).
    pub async fn from_env(
        env: impl Fn(&str) -> Option<String>,
        store_options: &promlake_core::store::StoreOptions,
        clock: SharedClock,
    ) -> Result<Self, FunctionError> {
        let (config, store) = config_from_env(&env, store_options).await?;
        let period = match env("PROMLAKE_INVOCATION_PERIOD") {
            Some(p) => {
                p.parse::<PromDuration>()
                    .map_err(|e| FunctionError::Config(format!("PROMLAKE_INVOCATION_PERIOD: {e}")))?
                    .0
            }
            None => Duration::from_secs(60),
        };
        // The deployment's schedule is built for one scrape interval; a config that scrapes at
        // another would silently scrape too often or leave gaps.
        if let Some(i) = env("PROMLAKE_SCRAPE_INTERVAL") {
            let want = i
                .parse::<PromDuration>()
                .map_err(|e| FunctionError::Config(format!("PROMLAKE_SCRAPE_INTERVAL: {e}")))?;
            if want != config.global.scrape_interval {
                return Err(FunctionError::Config(format!(
                    "the deployment scrapes every {want} (PROMLAKE_SCRAPE_INTERVAL) but global.scrape_interval is {} in {}; change one to match",
                    config.global.scrape_interval,
                    env("PROMLAKE_CONFIG_URL").unwrap_or_else(|| "$PROMLAKE_CONFIG".into())
                )));
            }
        }
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
        let start = self.clock.now_ms();
        let end = start + self.period.as_millis() as i64;
        // Lambda always gives a deadline in the future; some local emulators send none (0) or a
        // meaningless one, which would otherwise abandon the block at once.
        let deadline = match i64::try_from(event.context.deadline).unwrap_or(i64::MAX) {
            d if d > start => d,
            d => {
                if d != 0 {
                    tracing::warn!(
                        deadline_ms = d,
                        now_ms = start,
                        "the invocation's deadline has already passed; running without one"
                    );
                }
                0
            }
        };
        tracing::info!(%shard, %replica, period_ms = end - start, deadline_ms = deadline, "scrape invocation");
        // Keep time to flush before the deadline (a zero deadline means none was given).
        let margin = 5_000;
        // Each target on its own schedule: a scrape due before the end of the period (and early
        // enough to flush before the deadline) is started; a slow target delays no other.
        let stop = if deadline > 0 {
            end.min(deadline - margin + 1)
        } else {
            end
        };
        let round = worker.scrape_until(stop).await;
        let (scrapes, samples, stale_markers) =
            (round.targets as u64, round.samples, round.stale_markers);
        let health = worker.target_health();
        let up = health.iter().filter(|(_, _, h)| h.up).count();
        let mut summary = ScrapeSummary {
            shard: shard.to_string(),
            replica: replica.clone(),
            scrapes,
            targets: health.len(),
            up,
            down: health.len() - up,
            samples,
            stale_markers,
            blocks_written: 0,
            rows_written: 0,
            state_written: false,
        };
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
                            "writing the block(s) of shard {shard} replica {replica} did not finish before the invocation's deadline; their {} sample(s) are lost",
                            worker.sink().pending_samples()
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
                    "{} block(s) of shard {shard} replica {replica} could not be written before the deadline; their {} sample(s) are lost",
                    f.blocks_pending,
                    worker.sink().pending_samples()
                )));
            }
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
        Ok(summary)
    }
}
