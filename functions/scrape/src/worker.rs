//! The scrape worker: owns one shard of the targets, scrapes them, and lands their samples as
//! blocks in object storage.
//!
//! A worker keeps nothing it cannot lose. Between scrapes it remembers each target's series (for
//! staleness) and the samples not yet flushed; across restarts and Lambda invocations the series
//! survive in the state log (see [`crate::state`]). Every block is written once, with
//! `PutMode::Create`, under a key chosen before the first attempt: a write that fails stays in
//! memory and is retried at the next flush, and a retry that finds the block already there knows
//! its earlier attempt landed. So every scraped sample is stored exactly once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};
use promlake_core::block::{self, Sample};
use promlake_core::clock::{SharedClock, TimestampMs};
use promlake_core::config::{Config, ScrapeConfig};
use promlake_core::keys::{BlockKey, hour_start, new_ulid};
use promlake_core::labels::{Labels, METRIC_NAME};
use promlake_core::shard::Shard;
use promlake_core::telemetry::{Counter, Gauge, Registry};
use promlake_core::value::stale_nan;
use tokio::sync::Semaphore;

use crate::discovery::Discovery;
use crate::exposition::{Entry, Format, Parser};
use crate::fetch::{self, FetchError};
use crate::samples::{SampleLabeler, SeriesCache};
use crate::state::{State, StateLog, TargetSeries};
use crate::targets::{self, Outcome, Target};

/// The series Prometheus adds for every scrape.
pub const REPORT_SERIES: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

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
}

impl WorkerOptions {
    pub fn new(shard: Shard, replica: &str, region: &str) -> Self {
        Self {
            shard,
            replica: replica.to_owned(),
            region: region.to_owned(),
            state_interval: Duration::from_secs(1800),
            concurrency: 256,
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

    /// Counts samples of a scrape that were not stored, by reason (`out_of_bounds`,
    /// `duplicate`).
    fn rejected(&self, reason: &str, n: u64) {
        self.registry
            .counter(
                "promlake_samples_rejected_total",
                "Scraped samples not stored, by reason.",
                &[
                    ("shard", &self.shard),
                    ("replica", &self.replica),
                    ("reason", reason),
                ],
            )
            .inc_by(n);
    }

    fn failure(&self, reason: &str) {
        self.registry
            .counter(
                "promlake_scrape_failures_total",
                "Failed scrapes by reason.",
                &[
                    ("shard", &self.shard),
                    ("replica", &self.replica),
                    ("reason", reason),
                ],
            )
            .inc();
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

struct TargetState {
    key: u64,
    job: usize,
    target: Target,
    url: String,
    report: Vec<Arc<Labels>>,
    cache: SeriesCache,
    prev: HashMap<u64, Arc<Labels>>,
    reported: bool,
    next_due_ms: TimestampMs,
    health: TargetHealth,
}

impl TargetState {
    fn new(key: u64, job: usize, target: Target, url: String) -> Self {
        let base = target.series_labels();
        let report = REPORT_SERIES
            .iter()
            .map(|n| {
                let mut b = base.builder();
                b.set_str(METRIC_NAME, n);
                Arc::new(b.into_labels())
            })
            .collect();
        Self {
            key,
            job,
            target,
            url,
            report,
            cache: SeriesCache::new(),
            prev: HashMap::new(),
            reported: false,
            next_due_ms: 0,
            health: TargetHealth::default(),
        }
    }

    /// Stale markers for everything this target ever reported, at `ts`.
    fn all_stale(&self, ts: TimestampMs, out: &mut Vec<Sample>) {
        for l in self.prev.values() {
            out.push(Sample::new(l.clone(), ts, stale_nan()));
        }
        if self.reported {
            for l in &self.report {
                out.push(Sample::new(l.clone(), ts, stale_nan()));
            }
        }
    }
}

struct JobCtx {
    cfg: Arc<ScrapeConfig>,
    client: Result<reqwest::Client, String>,
}

struct PendingBlock {
    key: BlockKey,
    bytes: Bytes,
    rows: u64,
}

/// What one round of scrapes did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoundSummary {
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

/// A scrape worker for one shard and replica.
pub struct Worker {
    config: Arc<Config>,
    opts: WorkerOptions,
    store: Arc<dyn ObjectStore>,
    clock: SharedClock,
    discovery: Discovery,
    jobs: Vec<JobCtx>,
    targets: HashMap<u64, TargetState>,
    restored: Option<HashMap<u64, TargetSeries>>,
    buffer: Vec<Sample>,
    unwritten: Vec<PendingBlock>,
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
    /// A worker; reads the latest staleness state of its shard and replica.
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
        let restored = state_log.load().await?.map(|s| s.targets);
        let jobs = config
            .scrape_configs
            .iter()
            .map(|j| JobCtx {
                cfg: Arc::new(j.clone()),
                client: fetch::client_for(j),
            })
            .collect();
        Ok(Self {
            discovery: Discovery::new(&config),
            stats: WorkerStats::new(registry, opts.shard, &opts.replica),
            semaphore: Arc::new(Semaphore::new(opts.concurrency.max(1))),
            config,
            opts,
            store,
            clock,
            jobs,
            targets: HashMap::new(),
            restored: Some(restored.unwrap_or_default()),
            buffer: Vec::new(),
            unwritten: Vec::new(),
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

    /// Samples scraped and not yet flushed.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// The current targets with their health, sorted by job and URL.
    pub fn target_health(&self) -> Vec<(String, String, TargetHealth)> {
        let mut v: Vec<_> = self
            .targets
            .values()
            .map(|t| (t.target.job().to_owned(), t.url.clone(), t.health.clone()))
            .collect();
        v.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        v
    }

    /// Re-reads discovery; adds new targets, and writes stale markers for the series of targets
    /// that are gone (or, on the first call, that a previous invocation had and this one has not).
    fn sync_targets(&mut self, now: TimestampMs) -> usize {
        let (groups, errors) = self.discovery.refresh();
        for e in errors {
            tracing::warn!(error = %e, "target discovery");
            self.stats.discovery_errors.inc();
        }
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
        self.buffer.extend(stale);
        gone.len()
    }

    /// Scrapes every target of the shard once, now.
    pub async fn scrape_all(&mut self) -> RoundSummary {
        let now = self.clock.now_ms();
        let removed = self.sync_targets(now);
        let keys: Vec<u64> = self.targets.keys().copied().collect();
        let mut s = self.scrape(keys).await;
        s.removed_targets = removed;
        s
    }

    /// Scrapes the targets that are due; returns when the next one is due.
    pub async fn scrape_due(&mut self) -> (RoundSummary, TimestampMs) {
        let now = self.clock.now_ms();
        let removed = self.sync_targets(now);
        let due: Vec<u64> = self
            .targets
            .values()
            .filter(|t| t.next_due_ms <= now)
            .map(|t| t.key)
            .collect();
        let mut s = self.scrape(due).await;
        s.removed_targets = removed;
        let next = self
            .targets
            .values()
            .map(|t| t.next_due_ms)
            .min()
            .unwrap_or(now + 1000);
        (s, next)
    }

    async fn scrape(&mut self, keys: Vec<u64>) -> RoundSummary {
        let mut tasks = Vec::with_capacity(keys.len());
        for key in keys {
            let Some(state) = self.targets.remove(&key) else {
                continue;
            };
            let job = &self.jobs[state.job];
            let cfg = job.cfg.clone();
            let client = job.client.clone();
            let clock = self.clock.clone();
            let sem = self.semaphore.clone();
            tasks.push(tokio::spawn(async move {
                let _permit = sem.acquire_owned().await;
                scrape_target(state, cfg, client, clock).await
            }));
        }
        let mut summary = RoundSummary::default();
        for t in tasks {
            let Ok((mut state, result)) = t.await else {
                continue; // a panicking scrape task loses its target until the next sync
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
            let interval = self.jobs[state.job].cfg.interval().as_millis().max(1) as i64;
            let now = self.clock.now_ms();
            while state.next_due_ms <= now {
                state.next_due_ms += interval;
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
            self.buffer.extend(result.samples);
            self.targets.insert(state.key, state);
        }
        let up = self.targets.values().filter(|t| t.health.up).count();
        self.stats.targets_up.set(up as f64);
        self.stats
            .targets_down
            .set((self.targets.len() - up) as f64);
        self.stats
            .samples_pending
            .set(self.pending_samples() as f64);
        summary
    }

    fn pending_samples(&self) -> u64 {
        self.buffer.len() as u64 + self.unwritten.iter().map(|b| b.rows).sum::<u64>()
    }

    fn current_state(&self, now: TimestampMs) -> State {
        State {
            written_ms: now,
            targets: self
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
                .collect(),
        }
    }

    /// Writes the buffered samples as blocks (one per hour they span), retries blocks whose
    /// earlier write failed, and saves the staleness state when it changed (always when `last`).
    pub async fn flush(&mut self, last: bool) -> FlushSummary {
        let now = self.clock.now_ms();
        let mut summary = FlushSummary::default();
        if !self.buffer.is_empty() {
            let mut by_hour: BTreeMap<TimestampMs, Vec<Sample>> = BTreeMap::new();
            for s in self.buffer.drain(..) {
                by_hour
                    .entry(hour_start(s.timestamp_ms))
                    .or_default()
                    .push(s);
            }
            for (_, mut samples) in by_hour {
                match block::encode(
                    &mut samples,
                    &self.opts.region,
                    self.opts.shard,
                    &self.opts.replica,
                ) {
                    Ok((meta, bytes)) => self.unwritten.push(PendingBlock {
                        key: BlockKey {
                            region: self.opts.region.clone(),
                            min_ts: meta.min_ts,
                            max_ts: meta.max_ts,
                            shard: self.opts.shard,
                            replica: self.opts.replica.clone(),
                            id: new_ulid(now),
                        },
                        bytes,
                        rows: meta.rows,
                    }),
                    Err(e) => {
                        tracing::error!(error = %e, rows = samples.len(), "encoding a block failed; its samples are lost")
                    }
                }
            }
        }
        let mut still = Vec::new();
        for b in std::mem::take(&mut self.unwritten) {
            let path = b.key.path();
            let opts = PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            let res = self
                .store
                .put_opts(&path, PutPayload::from(b.bytes.clone()), opts)
                .await;
            match res {
                Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => {
                    // AlreadyExists: an earlier attempt landed and only its answer was lost; the
                    // key is unique to this block.
                    summary.blocks_written += 1;
                    summary.rows_written += b.rows;
                    summary.bytes_written += b.bytes.len() as u64;
                    summary.keys.push(path.to_string());
                    self.stats.blocks_written.inc();
                    self.stats.block_bytes.inc_by(b.bytes.len() as u64);
                    self.stats.samples_stored.inc_by(b.rows);
                    tracing::debug!(key = %path, rows = b.rows, bytes = b.bytes.len(), "block written");
                }
                Err(e) => {
                    self.stats.block_write_errors.inc();
                    tracing::error!(key = %path, rows = b.rows, error = %e, "block write failed; kept in memory and retried at the next flush");
                    still.push(b);
                }
            }
        }
        self.unwritten = still;
        summary.blocks_pending = self.unwritten.len();
        self.stats.blocks_pending.set(self.unwritten.len() as f64);
        self.stats
            .samples_pending
            .set(self.pending_samples() as f64);
        if !self.unwritten.is_empty() {
            tracing::warn!(
                blocks = self.unwritten.len(),
                samples = self.pending_samples(),
                "samples pending in memory"
            );
        }
        let state = self.current_state(now);
        let fp = state.fingerprint();
        let due = match self.last_state {
            None => true,
            Some((last_fp, at)) => {
                last_fp != fp && (last || now - at >= self.opts.state_interval.as_millis() as i64)
            }
        };
        if due && (self.last_state.is_some() || !state.targets.is_empty() || last) {
            match self.state_log.save(&state).await {
                Ok(()) => {
                    self.last_state = Some((fp, now));
                    self.stats.state_writes.inc();
                    summary.state_written = true;
                }
                Err(e) => {
                    tracing::error!(error = %e, "writing the staleness state failed; retried at the next flush")
                }
            }
        }
        summary
    }

    /// Runs until `shutdown` resolves: scrapes targets when due, flushes every
    /// `storage.flush_interval` (aligned to the clock), and flushes once more on the way out.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) -> Self {
        let flush_every = self.config.storage.flush_interval.as_millis().max(1000) as i64;
        let mut next_flush = (self.clock.now_ms() / flush_every + 1) * flush_every;
        tokio::pin!(shutdown);
        loop {
            let (_, next_due) = self.scrape_due().await;
            let now = self.clock.now_ms();
            if now >= next_flush {
                self.flush(false).await;
                next_flush = (now / flush_every + 1) * flush_every;
            }
            let wake = next_due.min(next_flush) - self.clock.now_ms();
            let sleep = Duration::from_millis(wake.clamp(10, 60_000) as u64);
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = &mut shutdown => {
                    let s = self.flush(true).await;
                    tracing::info!(blocks = s.blocks_written, rows = s.rows_written, pending = s.blocks_pending, "worker stopped after a final flush");
                    return self;
                }
            }
        }
    }
}

struct ScrapeResult {
    samples: Vec<Sample>,
    stale: u64,
    failure: Option<&'static str>,
    rejected: Rejected,
}

/// Samples of one scrape that were parsed but not stored, as Prometheus rejects them one by one
/// without failing the scrape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Rejected {
    /// A timestamp outside [`block::MIN_TIMESTAMP_MS`]..=[`block::MAX_TIMESTAMP_MS`].
    out_of_bounds: u64,
    /// The first out-of-range timestamp, for the log.
    first_out_of_bounds: Option<TimestampMs>,
    /// A series already seen in the same page (the first sample wins).
    duplicate: u64,
}

async fn scrape_target(
    mut state: TargetState,
    job: Arc<ScrapeConfig>,
    client: Result<reqwest::Client, String>,
    clock: SharedClock,
) -> (TargetState, ScrapeResult) {
    let start_ms = clock.now_ms();
    let started = Instant::now();
    let timeout = state.target.timeout().0.max(Duration::from_millis(1));
    let fetched = match &client {
        Ok(c) => fetch::fetch(c, &job, &state.url, timeout).await,
        Err(m) => Err(FetchError::Http(m.clone())),
    };
    let mut samples = Vec::new();
    let mut rejected = Rejected::default();
    let parsed = match fetched {
        Ok(page) => parse_page(
            &mut state,
            &job,
            &page,
            start_ms,
            &mut samples,
            &mut rejected,
        )
        .map_err(|m| (m, "parse")),
        Err(e) => Err((e.to_string(), e.reason())),
    };
    let duration = started.elapsed().as_secs_f64();
    let mut stale = 0u64;
    let (up, scraped, post, added, failure) = match parsed {
        Ok(p) => {
            let added = p
                .current
                .keys()
                .filter(|k| !state.prev.contains_key(k))
                .count();
            for (id, l) in &state.prev {
                if !p.current.contains_key(id) {
                    samples.push(Sample {
                        labels: l.clone(),
                        series_id: *id,
                        timestamp_ms: start_ms,
                        value: stale_nan(),
                    });
                    stale += 1;
                }
            }
            state.prev = p.current;
            state.health.error = None;
            if let Some(ts) = rejected.first_out_of_bounds {
                tracing::warn!(
                    job = %job.job_name,
                    url = %state.url,
                    samples = rejected.out_of_bounds,
                    timestamp_ms = ts,
                    min_ms = block::MIN_TIMESTAMP_MS,
                    max_ms = block::MAX_TIMESTAMP_MS,
                    "samples rejected: timestamp out of range (years 0 to 9999)"
                );
            }
            (1.0, p.scraped, p.post, added, None)
        }
        Err((message, reason)) => {
            tracing::warn!(job = %job.job_name, url = %state.url, error = %message, "scrape failed");
            samples.clear();
            for (id, l) in state.prev.drain() {
                samples.push(Sample {
                    labels: l,
                    series_id: id,
                    timestamp_ms: start_ms,
                    value: stale_nan(),
                });
                stale += 1;
            }
            state.health.error = Some(message);
            rejected = Rejected::default();
            (0.0, 0, 0, 0, Some(reason))
        }
    };
    let values = [up, duration, scraped as f64, post as f64, added as f64];
    for (l, v) in state.report.iter().zip(values) {
        samples.push(Sample::new(l.clone(), start_ms, v));
    }
    state.reported = true;
    state.health.last_scrape_ms = start_ms;
    state.health.duration_seconds = duration;
    state.health.up = up == 1.0;
    state.health.samples = post;
    (
        state,
        ScrapeResult {
            samples,
            stale,
            failure,
            rejected,
        },
    )
}

struct Parsed {
    scraped: u64,
    post: u64,
    current: HashMap<u64, Arc<Labels>>,
}

fn parse_page(
    state: &mut TargetState,
    job: &ScrapeConfig,
    page: &fetch::Page,
    ts: TimestampMs,
    out: &mut Vec<Sample>,
    rejected: &mut Rejected,
) -> Result<Parsed, String> {
    let format = Format::from_content_type(page.content_type.as_deref());
    let mut parser = Parser::new(&page.body, format);
    let mut labeler = SampleLabeler::new(state.target.series_labels(), job);
    state.cache.begin_round(4);
    let limit = job.sample_limit();
    let mut scraped = 0u64;
    let mut current: HashMap<u64, Arc<Labels>> = HashMap::with_capacity(state.prev.len());
    loop {
        let entry = match parser.next() {
            Ok(Some(e)) => e,
            Ok(None) => break,
            Err(e) => return Err(format!("parsing the page ({format:?}): {e}")),
        };
        if entry != Entry::Series {
            continue;
        }
        scraped += 1;
        let s = parser.series();
        let (name, labels, value) = (s.name, s.labels, s.value);
        let t = match s.timestamp_ms {
            Some(t) if job.honor_timestamps => t,
            _ => ts,
        };
        let cached = state
            .cache
            .get_or_label(s.text, || labeler.label(name, labels))
            .map_err(|e| e.to_string())?;
        let Some(c) = cached else { continue };
        if !block::timestamp_in_range(t) {
            // Prometheus' "out of bounds": the sample is dropped, the scrape goes on.
            rejected.out_of_bounds += 1;
            rejected.first_out_of_bounds.get_or_insert(t);
            continue;
        }
        if current.contains_key(&c.id) {
            // A duplicate series in one page: the first sample wins, as in Prometheus.
            rejected.duplicate += 1;
            continue;
        }
        if limit > 0 && current.len() as u64 >= limit {
            return Err(format!("sample limit exceeded (sample_limit: {limit})"));
        }
        current.insert(c.id, c.labels.clone());
        out.push(Sample {
            labels: c.labels.clone(),
            series_id: c.id,
            timestamp_ms: t,
            value,
        });
    }
    Ok(Parsed {
        scraped,
        post: current.len() as u64,
        current,
    })
}
