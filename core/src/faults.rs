//! A store wrapper that counts requests and bytes (the query service reports them) and, in
//! tests, injects faults to exercise retries, races and request cost against any store
//! (InMemory, local disk, S3).

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// Counts of requests that reached the wrapper.
#[derive(Debug, Default)]
pub struct RequestCounts {
    pub puts: AtomicU64,
    pub gets: AtomicU64,
    pub heads: AtomicU64,
    pub lists: AtomicU64,
    pub deletes: AtomicU64,
    pub put_bytes: AtomicU64,
    /// Bytes of ranged reads (what Parquet readers fetch).
    pub get_bytes: AtomicU64,
}

impl RequestCounts {
    pub fn puts(&self) -> u64 {
        self.puts.load(Ordering::SeqCst)
    }
    pub fn gets(&self) -> u64 {
        self.gets.load(Ordering::SeqCst)
    }
    pub fn lists(&self) -> u64 {
        self.lists.load(Ordering::SeqCst)
    }
    pub fn put_bytes(&self) -> u64 {
        self.put_bytes.load(Ordering::SeqCst)
    }
    pub fn get_bytes(&self) -> u64 {
        self.get_bytes.load(Ordering::SeqCst)
    }
}

/// What the wrapper does to the next requests.
#[derive(Debug, Default, Clone)]
pub struct FaultPlan {
    /// Fail this many PUTs before they reach the store.
    pub fail_puts: u64,
    /// Let this many PUTs reach the store, then report an error anyway (a lost response).
    pub lose_put_responses: u64,
    /// Fail this many GETs.
    pub fail_gets: u64,
    /// Fail this many LISTs.
    pub fail_lists: u64,
    /// Only apply PUT faults to keys containing this text.
    pub put_key_filter: Option<String>,
    /// Delay every request by this much.
    pub delay: Option<Duration>,
}

/// The wrapper.
pub struct InstrumentedStore {
    inner: Arc<dyn ObjectStore>,
    pub counts: Arc<RequestCounts>,
    plan: Arc<Mutex<FaultPlan>>,
}

impl fmt::Debug for InstrumentedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InstrumentedStore({})", self.inner)
    }
}

impl fmt::Display for InstrumentedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InstrumentedStore({})", self.inner)
    }
}

fn injected(what: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "InstrumentedStore",
        source: format!("injected fault: {what}").into(),
    }
}

impl InstrumentedStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self {
            inner,
            counts: Arc::default(),
            plan: Arc::default(),
        }
    }

    /// Replaces the fault plan.
    pub fn set_plan(&self, plan: FaultPlan) {
        *self.plan.lock().expect("plan lock") = plan;
    }

    /// A handle to change the plan after the store was shared.
    pub fn plan_handle(&self) -> Arc<Mutex<FaultPlan>> {
        self.plan.clone()
    }

    fn delay(&self) -> Option<Duration> {
        self.plan.lock().expect("plan lock").delay
    }

    /// Takes one unit of a fault counter; true when the fault applies.
    fn take(&self, pick: impl FnOnce(&mut FaultPlan) -> &mut u64) -> bool {
        let mut plan = self.plan.lock().expect("plan lock");
        let n = pick(&mut plan);
        if *n > 0 {
            *n -= 1;
            true
        } else {
            false
        }
    }

    async fn pause(&self) {
        if let Some(d) = self.delay() {
            tokio::time::sleep(d).await;
        }
    }
}

#[async_trait]
impl ObjectStore for InstrumentedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.pause().await;
        self.counts.puts.fetch_add(1, Ordering::SeqCst);
        self.counts
            .put_bytes
            .fetch_add(payload.content_length() as u64, Ordering::SeqCst);
        let applies = {
            let plan = self.plan.lock().expect("plan lock");
            plan.put_key_filter
                .as_ref()
                .is_none_or(|f| location.as_ref().contains(f.as_str()))
        };
        if applies && self.take(|p| &mut p.fail_puts) {
            return Err(injected("put failed"));
        }
        let res = self.inner.put_opts(location, payload, opts).await;
        if applies && res.is_ok() && self.take(|p| &mut p.lose_put_responses) {
            return Err(injected("put response lost"));
        }
        res
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.counts.puts.fetch_add(1, Ordering::SeqCst);
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.pause().await;
        if options.head {
            self.counts.heads.fetch_add(1, Ordering::SeqCst);
        } else {
            self.counts.gets.fetch_add(1, Ordering::SeqCst);
        }
        if self.take(|p| &mut p.fail_gets) {
            return Err(injected("get failed"));
        }
        let head = options.head;
        let res = self.inner.get_opts(location, options).await?;
        if !head {
            self.counts
                .get_bytes
                .fetch_add(res.range.end - res.range.start, Ordering::SeqCst);
        }
        Ok(res)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.pause().await;
        self.counts
            .gets
            .fetch_add(ranges.len() as u64, Ordering::SeqCst);
        if self.take(|p| &mut p.fail_gets) {
            return Err(injected("get failed"));
        }
        let n: u64 = ranges.iter().map(|r| r.end - r.start).sum();
        self.counts.get_bytes.fetch_add(n, Ordering::SeqCst);
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let counts = self.counts.clone();
        let counted = locations
            .map(move |l| {
                counts.deletes.fetch_add(1, Ordering::SeqCst);
                l
            })
            .boxed();
        self.inner.delete_stream(counted)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.counts.lists.fetch_add(1, Ordering::SeqCst);
        if self.take(|p| &mut p.fail_lists) {
            return futures::stream::once(async { Err(injected("list failed")) }).boxed();
        }
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.counts.lists.fetch_add(1, Ordering::SeqCst);
        if self.take(|p| &mut p.fail_lists) {
            return futures::stream::once(async { Err(injected("list failed")) }).boxed();
        }
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.pause().await;
        self.counts.lists.fetch_add(1, Ordering::SeqCst);
        if self.take(|p| &mut p.fail_lists) {
            return Err(injected("list failed"));
        }
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.counts.puts.fetch_add(1, Ordering::SeqCst);
        self.inner.copy_opts(from, to, options).await
    }
}
