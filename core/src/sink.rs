//! The block sink: how promlake's writers land samples in object storage.
//!
//! A [`BlockSink`] buffers samples, splits them by hour, encodes one block per hour at each
//! [`flush`](BlockSink::flush) and writes it with a create-only PUT under a key chosen before the
//! first attempt. A block whose write fails stays queued, in order, and is retried at the next
//! flush (after a backoff, see [`BlockSink::retry_due`]); a retry that finds the key already there
//! knows its earlier attempt landed. So a sample is stored once or kept, never stored twice.
//!
//! What the sink holds is bounded ([`SinkOptions::max_pending_samples`]): beyond it the oldest
//! samples are shed, counted and logged. The sink is a cheap handle (`Clone`) around shared
//! state: pushing never waits for storage, so a flush can run in its own task while the owner
//! keeps pushing. A flush is cancel-safe: dropped at any await, it leaves every sample queued.
//! What is still queued when a process must stop can be [`spill`](BlockSink::spill)ed to local
//! disk, and [`load_spill`](BlockSink::load_spill) queues it again at the next start.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};
use ulid::Ulid;

use crate::block::{self, Sample};
use crate::clock::{SharedClock, TimestampMs};
use crate::error::{Error, Result};
use crate::keys::{BlockKey, hour_start, new_ulid};
use crate::shard::Shard;
use crate::telemetry::{Counter, Gauge};

/// Whom a sink writes for, and how much it may hold.
#[derive(Clone, Debug)]
pub struct SinkOptions {
    pub region: String,
    pub shard: Shard,
    pub replica: String,
    /// Samples held at most, buffered or in blocks not yet written; beyond, the oldest are shed.
    pub max_pending_samples: u64,
    /// Wait after a failed write before [`BlockSink::retry_due`] says to try again; doubled after
    /// each failure up to `max_backoff`, reset by a success.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// When set, block ids are derived from this seed and the hour (the same samples written
    /// twice get the same keys, so the second write finds them present: what an import needs).
    /// Otherwise each block gets a new ULID.
    pub id_seed: Option<u128>,
}

impl SinkOptions {
    pub fn new(region: &str, shard: Shard, replica: &str) -> Self {
        Self {
            region: region.to_owned(),
            shard,
            replica: replica.to_owned(),
            max_pending_samples: DEFAULT_MAX_PENDING_SAMPLES,
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            id_seed: None,
        }
    }
}

/// About 5 minutes of 100k series scraped every 15 s; a few hundred MB at most.
pub const DEFAULT_MAX_PENDING_SAMPLES: u64 = 2_000_000;

/// The sink's counters; register them with a process' metrics, or leave them unregistered.
#[derive(Clone, Debug, Default)]
pub struct SinkMetrics {
    pub samples_stored: Counter,
    pub blocks_written: Counter,
    pub block_bytes: Counter,
    pub block_write_errors: Counter,
    /// Samples dropped because the sink was full (oldest first).
    pub samples_shed: Counter,
    pub blocks_pending: Gauge,
    pub samples_pending: Gauge,
}

/// A block written by a flush.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenBlock {
    pub key: BlockKey,
    pub rows: u64,
    pub bytes: u64,
    /// The key was already there: an earlier attempt of this block (or, with an id seed, an
    /// earlier write of the same samples) landed.
    pub already_there: bool,
}

/// What a flush did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlushReport {
    pub written: Vec<WrittenBlock>,
    /// The write that failed (key and error); the blocks from it on stay queued.
    pub failed: Option<(String, String)>,
    pub blocks_pending: usize,
    pub samples_pending: u64,
}

impl FlushReport {
    pub fn rows_written(&self) -> u64 {
        self.written.iter().map(|b| b.rows).sum()
    }
    pub fn bytes_written(&self) -> u64 {
        self.written.iter().map(|b| b.bytes).sum()
    }
}

/// What a spill did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpillReport {
    pub blocks: usize,
    pub samples: u64,
    pub files: Vec<PathBuf>,
}

#[derive(Clone, Debug)]
struct QueuedBlock {
    key: BlockKey,
    bytes: Bytes,
    rows: u64,
    /// The local file this block was loaded from; removed once the block is written.
    spill_file: Option<PathBuf>,
}

#[derive(Debug, Default)]
struct Inner {
    buffer: VecDeque<Sample>,
    queue: VecDeque<QueuedBlock>,
    /// The block a flush is writing (never shed meanwhile).
    writing: Option<Ulid>,
    retry_at: Option<TimestampMs>,
    backoff: Duration,
}

impl Inner {
    fn pending_samples(&self) -> u64 {
        self.buffer.len() as u64 + self.queue.iter().map(|b| b.rows).sum::<u64>()
    }
}

/// Buffers samples and writes them as blocks; see the module docs.
#[derive(Clone)]
pub struct BlockSink {
    store: Arc<dyn ObjectStore>,
    clock: SharedClock,
    opts: Arc<SinkOptions>,
    metrics: SinkMetrics,
    inner: Arc<Mutex<Inner>>,
    flushing: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for BlockSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockSink")
            .field("opts", &self.opts)
            .field("pending_samples", &self.pending_samples())
            .finish()
    }
}

impl BlockSink {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        clock: SharedClock,
        opts: SinkOptions,
        metrics: SinkMetrics,
    ) -> Self {
        Self {
            store,
            clock,
            opts: Arc::new(opts),
            metrics,
            inner: Arc::default(),
            flushing: Arc::default(),
        }
    }

    pub fn options(&self) -> &SinkOptions {
        &self.opts
    }

    pub fn metrics(&self) -> &SinkMetrics {
        &self.metrics
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every step is a push or a pop).
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Samples held: buffered, or in blocks not yet written.
    pub fn pending_samples(&self) -> u64 {
        self.lock().pending_samples()
    }

    /// Samples buffered and not yet in a block.
    pub fn buffered(&self) -> usize {
        self.lock().buffer.len()
    }

    /// Encoded blocks waiting to be written.
    pub fn pending_blocks(&self) -> usize {
        self.lock().queue.len()
    }

    /// Whether blocks wait for a retry whose backoff (after a failed write) has passed.
    pub fn retry_due(&self, now: TimestampMs) -> bool {
        let g = self.lock();
        !g.queue.is_empty() && g.retry_at.is_some_and(|t| now >= t)
    }

    /// When queued blocks are to be retried after a failed write, if any wait for that.
    pub fn retry_at(&self) -> Option<TimestampMs> {
        let g = self.lock();
        g.retry_at.filter(|_| !g.queue.is_empty())
    }

    /// Adds samples to the buffer. Samples with timestamps no block may hold are dropped (with
    /// an error log: writers are to reject them first). Never waits for storage.
    pub fn push(&self, samples: impl IntoIterator<Item = Sample>) {
        let mut bad = 0u64;
        let mut g = self.lock();
        for s in samples {
            if block::timestamp_in_range(s.timestamp_ms) {
                g.buffer.push_back(s);
            } else {
                bad += 1;
            }
        }
        if bad > 0 {
            tracing::error!(
                samples = bad,
                "samples with out-of-range timestamps reached the block sink; dropped"
            );
        }
        self.shed(&mut g);
        self.update_gauges(&g);
    }

    /// Drops the oldest samples beyond the bound: whole queued blocks first (they are older
    /// than anything buffered), then buffered samples.
    fn shed(&self, g: &mut Inner) {
        let max = self.opts.max_pending_samples;
        let mut held = g.pending_samples();
        if held <= max {
            return;
        }
        let mut shed = 0u64;
        let (mut from, mut to) = (i64::MAX, i64::MIN);
        let mut i = 0;
        while held > max && i < g.queue.len() {
            if Some(g.queue[i].key.id) == g.writing {
                i += 1;
                continue;
            }
            let b = g.queue.remove(i).expect("index in range");
            held -= b.rows;
            shed += b.rows;
            from = from.min(b.key.min_ts);
            to = to.max(b.key.max_ts);
            if let Some(f) = &b.spill_file {
                let _ = std::fs::remove_file(f);
            }
        }
        if held > max {
            let n = ((held - max) as usize).min(g.buffer.len());
            for s in g.buffer.drain(..n) {
                from = from.min(s.timestamp_ms);
                to = to.max(s.timestamp_ms);
            }
            shed += n as u64;
        }
        if shed > 0 {
            self.metrics.samples_shed.inc_by(shed);
            tracing::warn!(
                samples = shed,
                from_ms = from,
                to_ms = to,
                limit = max,
                "sink full while storage is failing: the oldest samples were dropped"
            );
        }
    }

    fn update_gauges(&self, g: &Inner) {
        self.metrics.blocks_pending.set(g.queue.len() as f64);
        self.metrics.samples_pending.set(g.pending_samples() as f64);
    }

    /// Encodes the buffered samples into blocks, one per hour, queued after the blocks already
    /// waiting. Synchronous, so that no cancellation can lose the samples in between.
    fn seal(&self) {
        let now = self.clock.now_ms();
        let buffer = std::mem::take(&mut self.lock().buffer);
        if buffer.is_empty() {
            return;
        }
        let mut by_hour: BTreeMap<TimestampMs, Vec<Sample>> = BTreeMap::new();
        for s in buffer {
            by_hour
                .entry(hour_start(s.timestamp_ms))
                .or_default()
                .push(s);
        }
        let mut blocks = Vec::with_capacity(by_hour.len());
        for (hour, mut samples) in by_hour {
            let o = &self.opts;
            match block::encode(&mut samples, &o.region, o.shard, &o.replica) {
                Ok((meta, bytes)) => blocks.push(QueuedBlock {
                    key: BlockKey {
                        region: o.region.clone(),
                        min_ts: meta.min_ts,
                        max_ts: meta.max_ts,
                        shard: o.shard,
                        replica: o.replica.clone(),
                        id: match o.id_seed {
                            Some(seed) => Ulid::from_parts(hour as u64, seed ^ hour as u128),
                            None => new_ulid(now),
                        },
                    },
                    bytes,
                    rows: meta.rows,
                    spill_file: None,
                }),
                Err(e) => {
                    tracing::error!(error = %e, rows = samples.len(), "encoding a block failed; its samples are lost")
                }
            }
        }
        let mut g = self.lock();
        g.queue.extend(blocks);
        self.shed(&mut g);
        self.update_gauges(&g);
    }

    /// Seals the buffer into blocks and writes the queued blocks, oldest first, each with a
    /// create-only PUT. The first write that fails stops the flush: it and the blocks after it
    /// stay queued for the next flush, which [`retry_due`](Self::retry_due) schedules with
    /// backoff. Concurrent flushes of one sink run one after the other.
    pub async fn flush(&self) -> FlushReport {
        let _one = self.flushing.lock().await;
        self.seal();
        let mut report = FlushReport::default();
        loop {
            let next = {
                let mut g = self.lock();
                let Some(b) = g.queue.front().cloned() else {
                    break;
                };
                g.writing = Some(b.key.id);
                b
            };
            let path = next.key.path();
            let opts = PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            let res = self
                .store
                .put_opts(&path, PutPayload::from(next.bytes.clone()), opts)
                .await;
            let mut g = self.lock();
            g.writing = None;
            match res {
                Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => {
                    let already_there = res.is_err();
                    if let Some(i) = g.queue.iter().position(|b| b.key.id == next.key.id) {
                        g.queue.remove(i);
                    }
                    if let Some(f) = &next.spill_file
                        && let Err(e) = std::fs::remove_file(f)
                    {
                        tracing::warn!(file = %f.display(), error = %e, "removing a spilled block after writing it");
                    }
                    self.metrics.blocks_written.inc();
                    self.metrics.block_bytes.inc_by(next.bytes.len() as u64);
                    self.metrics.samples_stored.inc_by(next.rows);
                    tracing::debug!(key = %path, rows = next.rows, bytes = next.bytes.len(), already_there, "block written");
                    report.written.push(WrittenBlock {
                        key: next.key,
                        rows: next.rows,
                        bytes: next.bytes.len() as u64,
                        already_there,
                    });
                    g.backoff = Duration::ZERO;
                    g.retry_at = None;
                }
                Err(e) => {
                    self.metrics.block_write_errors.inc();
                    g.backoff = (g.backoff * 2)
                        .max(self.opts.min_backoff)
                        .min(self.opts.max_backoff);
                    g.retry_at = Some(self.clock.now_ms() + g.backoff.as_millis() as i64);
                    tracing::error!(key = %path, rows = next.rows, error = %e, retry_in_ms = g.backoff.as_millis() as u64, "block write failed; kept and retried");
                    report.failed = Some((path.to_string(), e.to_string()));
                    break;
                }
            }
        }
        let g = self.lock();
        report.blocks_pending = g.queue.len();
        report.samples_pending = g.pending_samples();
        self.update_gauges(&g);
        report
    }

    /// Seals the buffer and writes every queued block to `dir` as a file named by its key
    /// (`<dir>/blocks/region=…/….parquet`, written under a temporary name and renamed, so a
    /// spill directory is itself a block layout). Blocks that came from a spill file stay where
    /// they are. Returns what was spilled; what could not be spilled is in the error.
    pub fn spill(&self, dir: &FsPath) -> Result<SpillReport> {
        self.seal();
        let blocks: Vec<QueuedBlock> = self.lock().queue.iter().cloned().collect();
        let mut report = SpillReport::default();
        for b in blocks {
            let file = match &b.spill_file {
                Some(f) => f.clone(),
                None => {
                    let file = dir.join(b.key.path().as_ref());
                    write_file_atomically(&file, &b.bytes).map_err(|e| Error::Spill {
                        path: file.display().to_string(),
                        message: e.to_string(),
                    })?;
                    file
                }
            };
            report.blocks += 1;
            report.samples += b.rows;
            report.files.push(file);
        }
        Ok(report)
    }

    /// Queues the blocks a previous process of the same region, shard and replica spilled to
    /// `dir`, ahead of everything else; each file is removed once its block is written. Files of
    /// other workers are left alone. Returns the blocks and samples queued.
    pub fn load_spill(&self, dir: &FsPath) -> Result<(usize, u64)> {
        let root = dir.join(crate::keys::region_blocks(&self.opts.region).as_ref());
        let mut files = Vec::new();
        crate::store::files_under(&root, &mut files).map_err(|e| Error::Spill {
            path: root.display().to_string(),
            message: e.to_string(),
        })?;
        files.sort();
        let mut loaded = Vec::new();
        for f in files {
            let Ok(rel) = f.strip_prefix(dir) else {
                continue;
            };
            let Some(rel) = rel.to_str() else { continue };
            if !rel.ends_with(".parquet") {
                continue; // a temporary file of an interrupted spill
            }
            let Ok(key) = BlockKey::parse(&object_store::path::Path::from(rel)) else {
                continue;
            };
            if key.shard != self.opts.shard || key.replica != self.opts.replica {
                continue;
            }
            let bytes = std::fs::read(&f).map_err(|e| Error::Spill {
                path: f.display().to_string(),
                message: e.to_string(),
            })?;
            let (meta, _) = match block::decode(rel, Bytes::from(bytes.clone())) {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!(file = %f.display(), error = %e, "a spilled block does not decode; left in place");
                    continue;
                }
            };
            loaded.push(QueuedBlock {
                key,
                bytes: Bytes::from(bytes),
                rows: meta.rows,
                spill_file: Some(f),
            });
        }
        let n = (loaded.len(), loaded.iter().map(|b| b.rows).sum());
        let mut g = self.lock();
        for b in loaded.into_iter().rev() {
            g.queue.push_front(b);
        }
        g.retry_at = None;
        self.update_gauges(&g);
        Ok(n)
    }
}

fn write_file_atomically(file: &FsPath, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if file.exists() {
        return Ok(()); // a block is immutable: an earlier spill of it is the same bytes
    }
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut tmp = file.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, file)?;
    if let Some(parent) = file.parent()
        && let Ok(d) = std::fs::File::open(parent)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::faults::{FaultPlan, InstrumentedStore};
    use crate::labels::Labels;
    use object_store::memory::InMemory;

    const T0: TimestampMs = 1_795_477_200_000;

    fn samples(ts: std::ops::Range<i64>) -> Vec<Sample> {
        let l = Arc::new(Labels::from_pairs([("__name__", "up"), ("job", "j")]));
        ts.map(|t| Sample::new(l.clone(), T0 + t, t as f64))
            .collect()
    }

    fn sink(max: u64, seed: Option<u128>) -> (BlockSink, Arc<InstrumentedStore>, Arc<ManualClock>) {
        let store = Arc::new(InstrumentedStore::new(Arc::new(InMemory::new())));
        let clock = Arc::new(ManualClock::new(T0));
        let mut o = SinkOptions::new("r", Shard::ALL, "a");
        o.max_pending_samples = max;
        o.id_seed = seed;
        let s = BlockSink::new(store.clone(), clock.clone(), o, SinkMetrics::default());
        (s, store, clock)
    }

    fn fail_puts(n: u64) -> FaultPlan {
        FaultPlan {
            fail_puts: n,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_failed_write_is_kept_and_retried_after_backoff() {
        let (s, store, clock) = sink(100, None);
        s.push(samples(0..5));
        store.set_plan(fail_puts(1));
        let r = s.flush().await;
        assert!(r.failed.is_some());
        assert_eq!((r.blocks_pending, r.samples_pending), (1, 5));
        assert!(!s.retry_due(clock.now_ms()));
        clock.advance(Duration::from_secs(1));
        assert!(s.retry_due(clock.now_ms()));
        let r = s.flush().await;
        assert_eq!((r.rows_written(), r.blocks_pending), (5, 0));
        assert!(!r.written[0].already_there);
        assert_eq!(s.retry_at(), None);
    }

    #[tokio::test]
    async fn a_lost_response_is_reported_as_already_there() {
        let (s, store, _) = sink(100, None);
        s.push(samples(0..5));
        store.set_plan(FaultPlan {
            lose_put_responses: 1,
            ..Default::default()
        });
        assert!(s.flush().await.failed.is_some());
        let r = s.flush().await;
        assert_eq!(r.written.len(), 1);
        assert!(r.written[0].already_there);
        assert_eq!(s.metrics().samples_stored.get(), 5);
    }

    #[tokio::test]
    async fn the_oldest_samples_are_shed_beyond_the_bound() {
        let (s, store, _) = sink(10, None);
        store.set_plan(fail_puts(u64::MAX));
        s.push(samples(0..6));
        s.flush().await;
        s.push(samples(6..12));
        assert_eq!(s.pending_samples(), 6);
        assert_eq!(s.metrics().samples_shed.get(), 6);
        store.set_plan(FaultPlan::default());
        let r = s.flush().await;
        assert_eq!(r.rows_written(), 6);
        assert_eq!(r.written[0].key.min_ts, T0 + 6, "the newest were kept");
    }

    #[tokio::test]
    async fn a_flush_dropped_mid_write_loses_nothing() {
        let (s, store, _) = sink(100, None);
        s.push(samples(0..5));
        store.set_plan(FaultPlan {
            delay: Some(Duration::from_secs(600)),
            ..Default::default()
        });
        assert!(
            tokio::time::timeout(Duration::from_millis(50), s.flush())
                .await
                .is_err()
        );
        store.set_plan(FaultPlan::default());
        let r = s.flush().await;
        assert_eq!((r.rows_written(), r.blocks_pending), (5, 0));
    }

    #[tokio::test]
    async fn samples_are_split_by_hour_and_seeded_ids_repeat() {
        let (a, store, _) = sink(100, Some(42));
        a.push(samples(0..3));
        a.push(samples(3_600_000..3_600_002));
        let r = a.flush().await;
        assert_eq!(r.written.len(), 2);
        let b = BlockSink::new(
            store.clone(),
            Arc::new(ManualClock::new(T0 + 5000)),
            a.options().clone(),
            SinkMetrics::default(),
        );
        b.push(samples(0..3));
        let r2 = b.flush().await;
        assert_eq!(r2.written[0].key, r.written[0].key);
        assert!(r2.written[0].already_there);
    }

    #[tokio::test]
    async fn spilled_blocks_are_loaded_by_the_same_worker_only() {
        let dir = tempfile::tempdir().unwrap();
        let (s, store, _) = sink(100, None);
        store.set_plan(fail_puts(u64::MAX));
        s.push(samples(0..4));
        s.flush().await;
        let spilled = s.spill(dir.path()).unwrap();
        assert_eq!((spilled.blocks, spilled.samples), (1, 4));

        let mut other = SinkOptions::new("r", Shard::ALL, "b");
        other.max_pending_samples = 100;
        let o = BlockSink::new(
            store.clone(),
            Arc::new(ManualClock::new(T0)),
            other,
            SinkMetrics::default(),
        );
        assert_eq!(o.load_spill(dir.path()).unwrap(), (0, 0));

        let (again, _, _) = sink(100, None);
        let again = BlockSink::new(
            store.clone(),
            Arc::new(ManualClock::new(T0)),
            again.options().clone(),
            SinkMetrics::default(),
        );
        assert_eq!(again.load_spill(dir.path()).unwrap(), (1, 4));
        store.set_plan(FaultPlan::default());
        let r = again.flush().await;
        assert_eq!(r.rows_written(), 4);
        assert!(!spilled.files[0].exists(), "removed once written");
    }
}
