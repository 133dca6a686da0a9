//! The scrape worker: owns one shard of the targets, scrapes them, and lands their samples as
//! blocks in object storage.
//!
//! Each target is scraped on its own schedule, at a fixed phase of its interval (so HA replicas
//! scrape the same slots), in a task of its own: a target that takes its whole timeout delays no
//! other. A worker keeps nothing it cannot lose. Between scrapes it remembers each target's
//! series (for staleness) and the samples not yet flushed; across restarts and Lambda invocations
//! the series survive in the state log (see [`crate::state`]). Samples go to a
//! [`BlockSink`]: every block is written once, with `PutMode::Create`, under a key chosen before
//! the first attempt; a write that fails stays in memory and is retried with backoff, and a retry
//! that finds the block already there knows its earlier attempt landed. Flushes run in their own
//! task, so slow storage never delays a scrape; what storage cannot take is bounded (the oldest
//! samples are shed, counted and logged). On the way out, a worker flushes until its shutdown
//! deadline and spills what is left to local disk for the next start on that machine.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::ObjectStore;
use promlake_core::block::{self, Sample};
use promlake_core::clock::{SharedClock, TimestampMs};
use promlake_core::config::{Config, ScrapeConfig};
use promlake_core::labels::{Labels, METRIC_NAME};
use promlake_core::shard::Shard;
use promlake_core::sink::{BlockSink, DEFAULT_MAX_PENDING_SAMPLES, SinkMetrics, SinkOptions};
use promlake_core::telemetry::{Counter, Gauge, Registry};
use promlake_core::value::stale_nan;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::discovery::Discovery;
use crate::exposition::{Entry, Format, Parser};
use crate::fetch::{self, FetchError};
use crate::samples::{SampleLabeler, SeriesCache};
use crate::state::{State, StateLog, TargetSeries};
use crate::targets::{self, Outcome, Target};

mod target_scrape;
use target_scrape::{ScrapeResult, TargetState, scrape_target};

/// The series Prometheus adds for every scrape.
pub const REPORT_SERIES: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// How long a starting worker waits for its staleness state before it starts without it.
const STATE_LOAD_TIMEOUT: Duration = Duration::from_secs(15);

/// How a worker is run.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    pub shard: Shard,
    /// The HA replica name (written into block keys and footers).
    pub replica: String,
    pub region: String,
    /// Least time between two writes of the staleness state while the worker keeps running;
    /// 0 writes it at every flush where it changed (what a one-shot invocation needs).
    pub state_interval: Duration,
    /// Targets scraped at the same time at most.
    pub concurrency: usize,
    /// Samples held while storage fails, at most; beyond, the oldest are shed.
    pub max_pending_samples: u64,
    /// How long [`Worker::run`] keeps trying to write what it holds once told to stop.
    pub shutdown_timeout: Duration,
    /// Where blocks that could not be written by the shutdown deadline are kept, and where the
    /// next start on this machine looks for them. None: they are lost (and logged).
    pub spill_dir: Option<PathBuf>,
}

impl WorkerOptions {
    pub fn new(shard: Shard, replica: &str, region: &str) -> Self {
        Self {
            shard,
            replica: replica.to_owned(),
            region: region.to_owned(),
            state_interval: Duration::from_secs(1800),
            concurrency: 256,
            max_pending_samples: DEFAULT_MAX_PENDING_SAMPLES,
            shutdown_timeout: Duration::from_secs(25),
            spill_dir: None,
        }
    }
}

/// The worker's counters, registered with the process' metrics.
#[derive(Clone, Debug)]
pub struct WorkerStats {
    pub scrapes_ok: Counter,
    pub scrapes_failed: Counter,
    pub samples_scraped: Counter,
    pub stale_markers: Counter,
    pub samples_stored: Counter,
    pub blocks_written: Counter,
    pub block_bytes: Counter,
    pub block_write_errors: Counter,
    pub samples_shed: Counter,
    pub blocks_pending: Gauge,
    pub samples_pending: Gauge,
    pub targets_up: Gauge,
    pub targets_down: Gauge,
    pub state_writes: Counter,
    pub discovery_errors: Counter,
    registry: Registry,
    shard: String,
    replica: String,
}

impl WorkerStats {
    pub fn new(registry: &Registry, shard: Shard, replica: &str) -> Self {
        let s = shard.to_string();
        let l = [("shard", s.as_str()), ("replica", replica)];
        let c = |n: &str, h: &str| registry.counter(n, h, &l);
        let g = |n: &str, h: &str| registry.gauge(n, h, &l);
        Self {
            scrapes_ok: registry.counter(
                "promlake_scrapes_total",
                "Scrapes by result.",
                &[l[0], l[1], ("result", "success")],
            ),
            scrapes_failed: registry.counter(
                "promlake_scrapes_total",
                "Scrapes by result.",
                &[l[0], l[1], ("result", "failure")],
            ),
            samples_scraped: c(
                "promlake_samples_scraped_total",
                "Samples scraped (after metric relabeling, with report series).",
            ),
            stale_markers: c("promlake_stale_markers_total", "Stale markers written."),
            samples_stored: c(
                "promlake_samples_stored_total",
                "Samples in blocks written to object storage.",
            ),
            blocks_written: c(
                "promlake_blocks_written_total",
                "Blocks written to object storage.",
            ),
            block_bytes: c(
                "promlake_block_bytes_written_total",
                "Bytes of blocks written to object storage.",
            ),
            block_write_errors: c(
                "promlake_block_write_errors_total",
                "Failed block writes (the block is kept and retried).",
            ),
            samples_shed: c(
                "promlake_samples_shed_total",
                "Samples dropped, oldest first, because storage failed longer than the buffer lasts.",
            ),
            blocks_pending: g(
                "promlake_blocks_pending",
                "Blocks waiting to be written after a failed write.",
            ),
            samples_pending: g(
                "promlake_samples_pending",
                "Samples not yet in object storage.",
            ),
            targets_up: registry.gauge(
                "promlake_targets",
                "Targets of this worker by health.",
                &[l[0], l[1], ("state", "up")],
            ),
            targets_down: registry.gauge(
                "promlake_targets",
                "Targets of this worker by health.",
                &[l[0], l[1], ("state", "down")],
            ),
            state_writes: c(
                "promlake_state_writes_total",
                "Staleness states written to object storage.",
            ),
            discovery_errors: c(
                "promlake_discovery_errors_total",
                "Target files that could not be read.",
            ),
            registry: registry.clone(),
            shard: s,
            replica: replica.to_owned(),
        }
    }

    /// The counters of the worker's block sink.
    pub fn sink_metrics(&self) -> SinkMetrics {
        SinkMetrics {
            samples_stored: self.samples_stored.clone(),
            blocks_written: self.blocks_written.clone(),
            block_bytes: self.block_bytes.clone(),
            block_write_errors: self.block_write_errors.clone(),
            samples_shed: self.samples_shed.clone(),
            blocks_pending: self.blocks_pending.clone(),
            samples_pending: self.samples_pending.clone(),
        }
    }

    /// Counts samples of a scrape that were not stored, by reason (`out_of_bounds`,
    /// `duplicate`).
    fn rejected(&self, reason: &str, n: u64) {
        self.by_reason(
            "promlake_samples_rejected_total",
            "Scraped samples not stored, by reason.",
            reason,
        )
        .inc_by(n);
    }

    fn failure(&self, reason: &str) {
        self.by_reason(
            "promlake_scrape_failures_total",
            "Failed scrapes by reason.",
            reason,
        )
        .inc();
    }

    /// A counter of this worker's shard and replica, by `reason`.
    fn by_reason(&self, name: &str, help: &str, reason: &str) -> Counter {
        self.registry.counter(
            name,
            help,
            &[
                ("shard", &self.shard),
                ("replica", &self.replica),
                ("reason", reason),
            ],
        )
    }
}

/// The health of a target after its last scrape.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TargetHealth {
    pub last_scrape_ms: TimestampMs,
    pub duration_seconds: f64,
    pub up: bool,
    pub error: Option<String>,
    pub samples: u64,
}

struct JobCtx {
    cfg: Arc<ScrapeConfig>,
    client: Result<reqwest::Client, String>,
}

/// What one round of scrapes did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoundSummary {
    /// Target scrapes done.
    pub targets: usize,
    pub up: usize,
    pub down: usize,
    pub samples: u64,
    pub stale_markers: u64,
    /// Targets that left this worker's shard since the last round.
    pub removed_targets: usize,
}

/// What one flush did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlushSummary {
    pub blocks_written: usize,
    pub rows_written: u64,
    pub bytes_written: u64,
    pub blocks_pending: usize,
    pub state_written: bool,
    /// Keys of the blocks written.
    pub keys: Vec<String>,
}

/// What stopping a running worker did with the samples it held.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Samples written by the final flushes.
    pub samples_written: u64,
    /// Samples written to the spill directory, for the next start to write.
    pub samples_spilled: u64,
    /// Samples neither written nor spilled.
    pub samples_lost: u64,
}

/// A target being scraped: what the rest of the worker needs to know of it meanwhile.
struct InFlight {
    key: u64,
    job: String,
    url: String,
    health: TargetHealth,
    /// Its series as of the scrape's start, for the staleness state.
    series: Option<TargetSeries>,
}

/// What a flush task hands back.
struct FlushOutcome {
    summary: FlushSummary,
    saved: Option<(u64, TimestampMs)>,
}

/// A scrape worker for one shard and replica.
///
/// Each target is scraped on its own schedule: a scrape runs in its own task, and a slow target
/// delays nothing but itself. Samples go to a [`BlockSink`], flushed in a task of its own, so a
/// slow or failing store never delays a scrape.
pub struct Worker {
    config: Arc<Config>,
    opts: WorkerOptions,
    clock: SharedClock,
    discovery: Discovery,
    jobs: Vec<JobCtx>,
    /// Targets not being scraped right now.
    targets: HashMap<u64, TargetState>,
    /// Targets being scraped, by task.
    inflight: HashMap<tokio::task::Id, InFlight>,
    tasks: JoinSet<(TargetState, ScrapeResult)>,
    /// The targets the last discovery gave this worker.
    wanted: HashSet<u64>,
    /// Targets being scraped when the config was reloaded: their label cache is stale.
    relabel_after_reload: HashSet<u64>,
    restored: Option<HashMap<u64, TargetSeries>>,
    sink: BlockSink,
    state_log: StateLog,
    last_state: Option<(u64, TimestampMs)>,
    stats: WorkerStats,
    semaphore: Arc<Semaphore>,
}

/// Errors that stop a worker (scrape failures never do: they are a target's `up`).
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Core(#[from] promlake_core::Error),
    #[error("{0}")]
    Invalid(String),
}

impl Worker {
    /// A worker; reads the latest staleness state of its shard and replica, and queues the
    /// blocks a previous process left in the spill directory (written before anything else).
    pub async fn new(
        config: Arc<Config>,
        opts: WorkerOptions,
        store: Arc<dyn ObjectStore>,
        clock: SharedClock,
        registry: &Registry,
    ) -> Result<Self, WorkerError> {
        promlake_core::keys::check_name("replica", &opts.replica).map_err(WorkerError::Invalid)?;
        if opts.replica == promlake_core::keys::RULES_REPLICA {
            return Err(WorkerError::Invalid(format!(
                "replica name {:?} is reserved for rule evaluation output",
                opts.replica
            )));
        }
        promlake_core::keys::check_name("region", &opts.region).map_err(WorkerError::Invalid)?;
        let state_log = StateLog::new(store.clone(), &opts.region, opts.shard, &opts.replica);
        // Without its state a worker cannot mark the series that vanished while it was down as
        // stale; without scraping it would lose every sample meanwhile. So storage that fails or
        // hangs at start is reported, and the worker starts without the state.
        let restored = match tokio::time::timeout(STATE_LOAD_TIMEOUT, state_log.load()).await {
            Ok(Ok(state)) => state.map(|s| s.targets),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "reading the staleness state failed; starting without it");
                None
            }
            Err(_) => {
                tracing::error!(
                    timeout_s = STATE_LOAD_TIMEOUT.as_secs(),
                    "reading the staleness state did not finish in time; starting without it"
                );
                None
            }
        };
        let jobs = config
            .scrape_configs
            .iter()
            .map(|j| JobCtx {
                cfg: Arc::new(j.clone()),
                client: fetch::client_for(j),
            })
            .collect();
        let stats = WorkerStats::new(registry, opts.shard, &opts.replica);
        let mut sink_opts = SinkOptions::new(&opts.region, opts.shard, &opts.replica);
        sink_opts.max_pending_samples = opts.max_pending_samples;
        let sink = BlockSink::new(store, clock.clone(), sink_opts, stats.sink_metrics());
        if let Some(dir) = &opts.spill_dir {
            let (blocks, samples) = sink.load_spill(dir)?;
            if blocks > 0 {
                tracing::info!(blocks, samples, dir = %dir.display(), "blocks spilled by an earlier run are written first");
            }
        }
        Ok(Self {
            discovery: Discovery::new(&config),
            semaphore: Arc::new(Semaphore::new(opts.concurrency.max(1))),
            stats,
            config,
            opts,
            clock,
            jobs,
            targets: HashMap::new(),
            inflight: HashMap::new(),
            tasks: JoinSet::new(),
            wanted: HashSet::new(),
            relabel_after_reload: HashSet::new(),
            restored: Some(restored.unwrap_or_default()),
            sink,
            state_log,
            last_state: None,
        })
    }

    pub fn options(&self) -> &WorkerOptions {
        &self.opts
    }

    pub fn stats(&self) -> &WorkerStats {
        &self.stats
    }

    /// Where the worker's samples go.
    pub fn sink(&self) -> &BlockSink {
        &self.sink
    }

    /// Samples scraped and not yet flushed.
    pub fn buffered(&self) -> usize {
        self.sink.buffered()
    }

    /// The current targets with their health, sorted by job and URL.
    pub fn target_health(&self) -> Vec<(String, String, TargetHealth)> {
        let mut v: Vec<_> = self
            .targets
            .values()
            .map(|t| (t.target.job().to_owned(), t.url.clone(), t.health.clone()))
            .chain(
                self.inflight
                    .values()
                    .map(|f| (f.job.clone(), f.url.clone(), f.health.clone())),
            )
            .collect();
        v.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        v
    }

    /// Re-reads discovery; adds new targets, and writes stale markers for the series of targets
    /// that are gone (or, on the first call, that a previous invocation had and this one has not).
    /// A target that leaves while being scraped is marked stale when its scrape ends.
    fn sync_targets(&mut self, now: TimestampMs) -> usize {
        let (groups, errors) = self.discovery.refresh();
        for e in errors {
            tracing::warn!(error = %e, "target discovery");
            self.stats.discovery_errors.inc();
        }
        let scraping: HashSet<u64> = self.inflight.values().map(|f| f.key).collect();
        let mut current: HashSet<u64> = HashSet::new();
        for (job_idx, (_, groups)) in groups.iter().enumerate() {
            let job = self.jobs[job_idx].cfg.clone();
            let mut kept = 0u64;
            for outcome in targets::job_targets(&job, groups, self.opts.shard) {
                let Outcome::Keep(t) = outcome else { continue };
                if job.target_limit() > 0 && kept >= job.target_limit() {
                    tracing::warn!(job = %job.job_name, limit = job.target_limit(), "target_limit reached; further targets are not scraped");
                    break;
                }
                kept += 1;
                let key = t.labels.hash();
                current.insert(key);
                if scraping.contains(&key) {
                    continue;
                }
                if let Some(st) = self.targets.get_mut(&key) {
                    st.job = job_idx; // jobs may have moved in a reloaded config
                    continue;
                }
                self.targets.entry(key).or_insert_with(|| {
                    let url = t.url(&job);
                    let mut st = TargetState::new(key, job_idx, t, url);
                    let interval = job.interval().as_millis().max(1) as i64;
                    // Spread targets over the interval as Prometheus does: each target has a
                    // fixed phase within the interval (from its labels' hash), so replicas of a
                    // shard scrape a target at the same moments and deduplicate slot by slot.
                    let phase = (key % interval as u64) as i64;
                    st.next_due_ms = now + (phase - now).rem_euclid(interval);
                    st
                });
            }
        }
        let gone: Vec<u64> = self
            .targets
            .keys()
            .filter(|k| !current.contains(k))
            .copied()
            .collect();
        let mut stale = Vec::new();
        for k in &gone {
            if let Some(t) = self.targets.remove(k) {
                tracing::info!(job = t.target.job(), url = %t.url, "target left this worker");
                t.all_stale(now, &mut stale);
            }
        }
        self.wanted = current;
        if let Some(restored) = self.restored.take() {
            for (key, series) in restored {
                match self.targets.get_mut(&key) {
                    Some(t) => {
                        t.prev = series
                            .series
                            .iter()
                            .map(|l| (l.hash(), l.clone()))
                            .collect();
                        t.reported = true;
                    }
                    None => {
                        for l in series.series {
                            stale.push(Sample::new(l, now, stale_nan()));
                        }
                        for n in REPORT_SERIES {
                            let mut b = series.target.builder();
                            b.set_str(METRIC_NAME, n);
                            stale.push(Sample::new(Arc::new(b.into_labels()), now, stale_nan()));
                        }
                    }
                }
            }
        }
        self.stats.stale_markers.inc_by(stale.len() as u64);
        self.sink.push(stale);
        gone.len()
    }

    /// Starts a scrape of each target not being scraped that `due` selects.
    fn start(&mut self, due: impl Fn(&TargetState) -> bool) {
        let keys: Vec<u64> = self
            .targets
            .values()
            .filter(|t| due(t))
            .map(|t| t.key)
            .collect();
        for key in keys {
            let Some(state) = self.targets.remove(&key) else {
                continue;
            };
            let job = &self.jobs[state.job];
            let cfg = job.cfg.clone();
            let client = job.client.clone();
            let clock = self.clock.clone();
            let sem = self.semaphore.clone();
            let info = InFlight {
                key,
                job: cfg.job_name.clone(),
                url: state.url.clone(),
                health: state.health.clone(),
                series: state.reported.then(|| TargetSeries {
                    target: state.target.series_labels(),
                    series: state.prev.values().cloned().collect(),
                }),
            };
            let handle = self.tasks.spawn(async move {
                let _permit = sem.acquire_owned().await;
                scrape_target(state, cfg, client, clock).await
            });
            self.inflight.insert(handle.id(), info);
        }
    }

    /// Takes in a finished scrape: counts it, buffers its samples, and schedules the target's
    /// next scrape on its interval's grid (slots missed while it was scraped are skipped).
    fn finish(
        &mut self,
        done: Result<(tokio::task::Id, (TargetState, ScrapeResult)), tokio::task::JoinError>,
        summary: &mut RoundSummary,
    ) {
        let (mut state, result) = match done {
            Ok((id, r)) => {
                self.inflight.remove(&id);
                r
            }
            Err(e) => {
                // A panicking scrape task loses its target until the next sync.
                if let Some(f) = self.inflight.remove(&e.id()) {
                    tracing::error!(job = %f.job, url = %f.url, error = %e, "scrape task failed");
                }
                return;
            }
        };
        summary.targets += 1;
        if state.health.up {
            summary.up += 1;
            self.stats.scrapes_ok.inc();
        } else {
            summary.down += 1;
            self.stats.scrapes_failed.inc();
            if let Some(reason) = &result.failure {
                self.stats.failure(reason);
            }
        }
        // The config may have been reloaded during the scrape: find the target's job again.
        let job = self
            .jobs
            .iter()
            .position(|j| j.cfg.job_name == state.target.job());
        if let Some(j) = job {
            state.job = j;
        }
        if self.relabel_after_reload.remove(&state.key) {
            state.cache = SeriesCache::new();
        }
        let interval = job.map_or(1000, |j| {
            self.jobs[j].cfg.interval().as_millis().max(1) as i64
        });
        let now = self.clock.now_ms();
        if state.next_due_ms <= now {
            state.next_due_ms += (now - state.next_due_ms) / interval * interval + interval;
        }
        summary.samples += result.samples.len() as u64;
        summary.stale_markers += result.stale;
        self.stats
            .samples_scraped
            .inc_by(result.samples.len() as u64 - result.stale);
        self.stats.stale_markers.inc_by(result.stale);
        if result.rejected.out_of_bounds > 0 {
            self.stats
                .rejected("out_of_bounds", result.rejected.out_of_bounds);
        }
        if result.rejected.duplicate > 0 {
            self.stats.rejected("duplicate", result.rejected.duplicate);
        }
        self.sink.push(result.samples);
        if job.is_some() && self.wanted.contains(&state.key) {
            self.targets.insert(state.key, state);
        } else {
            tracing::info!(job = state.target.job(), url = %state.url, "target left this worker");
            let mut stale = Vec::new();
            state.all_stale(now, &mut stale);
            self.stats.stale_markers.inc_by(stale.len() as u64);
            summary.removed_targets += 1;
            self.sink.push(stale);
        }
        self.update_target_gauges();
    }

    fn update_target_gauges(&self) {
        let up = self.targets.values().filter(|t| t.health.up).count()
            + self.inflight.values().filter(|f| f.health.up).count();
        let all = self.targets.len() + self.inflight.len();
        self.stats.targets_up.set(up as f64);
        self.stats.targets_down.set((all - up) as f64);
    }

    /// Waits for every scrape under way.
    async fn finish_all(&mut self, summary: &mut RoundSummary) {
        while let Some(done) = self.tasks.join_next_with_id().await {
            self.finish(done, summary);
        }
    }

    /// Scrapes every target of the shard once, now, and waits for the scrapes.
    pub async fn scrape_all(&mut self) -> RoundSummary {
        let now = self.clock.now_ms();
        let mut s = RoundSummary {
            removed_targets: self.sync_targets(now),
            ..Default::default()
        };
        self.start(|_| true);
        self.finish_all(&mut s).await;
        s
    }

    /// Scrapes the targets that are due and waits for them; returns when the next one is due.
    pub async fn scrape_due(&mut self) -> (RoundSummary, TimestampMs) {
        let now = self.clock.now_ms();
        let mut s = RoundSummary {
            removed_targets: self.sync_targets(now),
            ..Default::default()
        };
        self.start(|t| t.next_due_ms <= now);
        self.finish_all(&mut s).await;
        (s, self.next_due().unwrap_or(now + 1000))
    }

    /// Scrapes each target on its own schedule, starting every scrape due before `stop`, and
    /// returns once they have all finished.
    pub async fn scrape_until(&mut self, stop: TimestampMs) -> RoundSummary {
        let mut s = RoundSummary::default();
        loop {
            let now = self.clock.now_ms();
            s.removed_targets += self.sync_targets(now);
            self.start(|t| t.next_due_ms <= now && t.next_due_ms < stop);
            let next = self.next_due().filter(|n| *n < stop);
            if next.is_none() && self.tasks.is_empty() {
                break;
            }
            let wait = next.map_or(60_000, |n| (n - now).clamp(10, 60_000));
            tokio::select! {
                Some(done) = self.tasks.join_next_with_id() => self.finish(done, &mut s),
                _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
            }
        }
        s
    }

    /// When the next idle target is due.
    fn next_due(&self) -> Option<TimestampMs> {
        self.targets.values().map(|t| t.next_due_ms).min()
    }

    fn current_state(&self, now: TimestampMs) -> State {
        let mut targets: HashMap<u64, TargetSeries> = self
            .targets
            .values()
            .filter(|t| t.reported)
            .map(|t| {
                (
                    t.key,
                    TargetSeries {
                        target: t.target.series_labels(),
                        series: t.prev.values().cloned().collect(),
                    },
                )
            })
            .collect();
        for f in self.inflight.values() {
            if let Some(s) = &f.series {
                targets.insert(f.key, s.clone());
            }
        }
        State {
            written_ms: now,
            targets,
        }
    }

    /// A flush as a future that borrows nothing of the worker, so it can run in its own task:
    /// the sink's blocks, then the staleness state when it changed (always when `last`). The
    /// state is written after the blocks, so an abandoned flush leaves the previous state.
    fn flush_job(&self, last: bool) -> impl std::future::Future<Output = FlushOutcome> + use<> {
        let now = self.clock.now_ms();
        let state = self.current_state(now);
        let fp = state.fingerprint();
        let due = match self.last_state {
            None => true,
            Some((last_fp, at)) => {
                last_fp != fp && (last || now - at >= self.opts.state_interval.as_millis() as i64)
            }
        };
        let save = (due && (self.last_state.is_some() || !state.targets.is_empty() || last))
            .then_some(state);
        let sink = self.sink.clone();
        let log = self.state_log.clone();
        let writes = self.stats.state_writes.clone();
        let span =
            tracing::info_span!("flush", shard = %self.opts.shard, replica = %self.opts.replica);
        async move {
            let r = sink.flush().await;
            let mut summary = FlushSummary {
                blocks_written: r.written.len(),
                rows_written: r.rows_written(),
                bytes_written: r.bytes_written(),
                blocks_pending: r.blocks_pending,
                state_written: false,
                keys: r.written.iter().map(|b| b.key.path().to_string()).collect(),
            };
            if r.blocks_pending > 0 {
                tracing::warn!(
                    blocks = r.blocks_pending,
                    samples = r.samples_pending,
                    "samples pending in memory"
                );
            }
            let mut saved = None;
            if let Some(state) = save {
                match log.save(&state).await {
                    Ok(()) => {
                        saved = Some((fp, now));
                        writes.inc();
                        summary.state_written = true;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "writing the staleness state failed; retried at the next flush")
                    }
                }
            }
            FlushOutcome { summary, saved }
        }
        .instrument(span)
    }

    fn flushed(&mut self, o: FlushOutcome) -> FlushSummary {
        if o.saved.is_some() {
            self.last_state = o.saved;
        }
        o.summary
    }

    /// Writes the buffered samples as blocks (one per hour they span), retries blocks whose
    /// earlier write failed, and saves the staleness state when it changed (always when `last`).
    pub async fn flush(&mut self, last: bool) -> FlushSummary {
        let o = self.flush_job(last).await;
        self.flushed(o)
    }

    /// Takes a new config: its jobs and targets apply from the next discovery, at once.
    /// Targets whose labels did not change keep their schedule, series and staleness; samples
    /// held are kept. Storage settings other than `flush_interval` apply at the next start.
    pub fn reload(&mut self, config: Arc<Config>) {
        if config.storage.url != self.config.storage.url {
            tracing::warn!(
                old = %self.config.storage.url,
                new = %config.storage.url,
                "storage.url changes take effect at the next start"
            );
        }
        self.jobs = config
            .scrape_configs
            .iter()
            .map(|j| JobCtx {
                cfg: Arc::new(j.clone()),
                client: fetch::client_for(j),
            })
            .collect();
        self.discovery = Discovery::new(&config);
        self.config = config;
        // Metric relabeling may have changed: label every series afresh.
        for t in self.targets.values_mut() {
            t.cache = SeriesCache::new();
        }
        self.relabel_after_reload = self.inflight.values().map(|f| f.key).collect();
        let removed = self.sync_targets(self.clock.now_ms());
        tracing::info!(
            jobs = self.jobs.len(),
            targets = self.targets.len() + self.inflight.len(),
            removed,
            "configuration reloaded"
        );
    }

    /// Runs until `shutdown` resolves: scrapes each target when due, flushes every
    /// `storage.flush_interval` (aligned to the clock) in the background, retries failed writes
    /// with backoff, and on the way out flushes until [`WorkerOptions::shutdown_timeout`], then
    /// spills what is left to [`WorkerOptions::spill_dir`].
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> (Self, ShutdownReport) {
        self.run_inner(shutdown, None).await
    }

    /// [`run`](Self::run), taking each config sent on `reloads` ([`reload`](Self::reload)).
    pub async fn run_reloading(
        self,
        shutdown: impl std::future::Future<Output = ()>,
        reloads: tokio::sync::watch::Receiver<Arc<Config>>,
    ) -> (Self, ShutdownReport) {
        self.run_inner(shutdown, Some(reloads)).await
    }

    async fn run_inner(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
        mut reloads: Option<tokio::sync::watch::Receiver<Arc<Config>>>,
    ) -> (Self, ShutdownReport) {
        if let Some(r) = &mut reloads {
            r.mark_unchanged();
        }
        let mut flush_every = self.config.storage.flush_interval.as_millis().max(1000) as i64;
        let mut next_flush = (self.clock.now_ms() / flush_every + 1) * flush_every;
        let mut flushing: Option<tokio::task::JoinHandle<FlushOutcome>> = None;
        let mut summary = RoundSummary::default();
        let mut next_sync = TimestampMs::MIN;
        if self.sink.pending_blocks() > 0 {
            // Blocks spilled by an earlier run go first.
            flushing = Some(tokio::spawn(self.flush_job(false)));
        }
        tokio::pin!(shutdown);
        loop {
            let now = self.clock.now_ms();
            if now >= next_sync {
                summary.removed_targets += self.sync_targets(now);
                next_sync = now + 1000;
            }
            self.start(|t| t.next_due_ms <= now);
            if flushing.is_none() && (now >= next_flush || self.sink.retry_due(now)) {
                flushing = Some(tokio::spawn(self.flush_job(false)));
                if now >= next_flush {
                    next_flush = (now / flush_every + 1) * flush_every;
                }
            }
            let mut wake = self.next_due().unwrap_or(now + 1000).min(next_flush);
            if let Some(r) = self.sink.retry_at() {
                wake = wake.min(r);
            }
            let sleep = Duration::from_millis((wake - now).clamp(10, 60_000) as u64);
            tokio::select! {
                _ = &mut shutdown => break,
                Some(done) = self.tasks.join_next_with_id() => self.finish(done, &mut summary),
                Some(out) = async { Some(flushing.as_mut()?.await) }, if flushing.is_some() => {
                    flushing = None;
                    if let Ok(o) = out {
                        self.flushed(o);
                    }
                }
                Some(cfg) = next_config(&mut reloads) => {
                    self.reload(cfg);
                    flush_every = self.config.storage.flush_interval.as_millis().max(1000) as i64;
                    next_flush = next_flush.min((self.clock.now_ms() / flush_every + 1) * flush_every);
                    next_sync = self.clock.now_ms() + 1000;
                }
                _ = tokio::time::sleep(sleep) => {}
            }
        }
        let report = self.stop(flushing, &mut summary).await;
        (self, report)
    }

    /// The way out of [`run`](Self::run): scrapes under way get a short grace, the running
    /// flush is abandoned (a flush is cancel-safe), and final flushes are retried until the
    /// deadline; what is still held then is spilled, or reported lost.
    async fn stop(
        &mut self,
        flushing: Option<tokio::task::JoinHandle<FlushOutcome>>,
        summary: &mut RoundSummary,
    ) -> ShutdownReport {
        let deadline = tokio::time::Instant::now() + self.opts.shutdown_timeout;
        let grace = (self.opts.shutdown_timeout / 5).min(Duration::from_secs(5));
        let _ = tokio::time::timeout(grace, self.finish_all(summary)).await;
        self.tasks.abort_all();
        while let Some(done) = self.tasks.join_next_with_id().await {
            if let Err(e) = &done
                && e.is_cancelled()
            {
                self.inflight.remove(&e.id());
                continue;
            }
            self.finish(done, summary);
        }
        if let Some(f) = flushing {
            f.abort();
            if let Ok(o) = f.await {
                self.flushed(o);
            }
        }
        let mut report = ShutdownReport::default();
        let mut backoff = Duration::from_millis(200);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.flush(true)).await {
                Ok(f) => {
                    report.samples_written += f.rows_written;
                    if f.blocks_pending == 0 {
                        break;
                    }
                }
                Err(_) => break,
            }
            if tokio::time::Instant::now() + backoff >= deadline {
                break;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        let held = self.sink.pending_samples();
        if held == 0 {
            tracing::info!(
                samples = report.samples_written,
                "worker stopped after a final flush"
            );
            return report;
        }
        match &self.opts.spill_dir {
            Some(dir) => match self.sink.spill(dir) {
                Ok(s) => {
                    report.samples_spilled = s.samples;
                    tracing::warn!(
                        samples = s.samples,
                        blocks = s.blocks,
                        dir = %dir.display(),
                        "storage did not take the last samples before the shutdown deadline; spilled to local disk, the next start on this machine writes them first"
                    );
                }
                Err(e) => {
                    report.samples_lost = held;
                    tracing::error!(samples = held, error = %e, "storage did not take the last samples before the shutdown deadline and spilling them failed; they are lost");
                }
            },
            None => {
                report.samples_lost = held;
                tracing::error!(
                    samples = held,
                    "storage did not take the last samples before the shutdown deadline and no spill directory is set; they are lost"
                );
            }
        }
        report
    }
}

/// The next config sent to a running worker; never, without a channel or once it is closed.
async fn next_config(
    reloads: &mut Option<tokio::sync::watch::Receiver<Arc<Config>>>,
) -> Option<Arc<Config>> {
    if let Some(r) = reloads
        && r.changed().await.is_ok()
    {
        return Some(r.borrow_and_update().clone());
    }
    std::future::pending().await
}
