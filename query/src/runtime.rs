//! Where queries run: a tokio runtime of their own, apart from the one that serves HTTP and, in
//! `promlake up`, scrapes and flushes. A query that computes for minutes occupies these threads
//! only, so health checks, scrapes, flushes and the timeout that cancels the query keep running.
//! The threads have deep stacks: planning and optimizing recurse over expression trees.

use std::future::Future;

use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::{Builder, Runtime};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::QueryError;

/// Stack of a query thread. Expression depth is bounded by `guard::MAX_DEPTH`; this leaves room
/// for DataFusion's recursion over a tree of that depth, and costs address space, not memory.
const STACK_BYTES: usize = 64 << 20;

/// The query threads. Dropping it stops them without waiting (safe inside async code).
pub struct QueryRuntime {
    rt: Option<Runtime>,
}

impl QueryRuntime {
    /// A runtime with one thread per core.
    pub fn new() -> std::io::Result<Self> {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let rt = Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("promlake-query")
            .thread_stack_size(STACK_BYTES)
            .enable_all()
            .build()?;
        Ok(Self { rt: Some(rt) })
    }

    /// Runs `f` on the query threads.
    pub fn spawn<F>(&self, f: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.rt.as_ref().expect("runtime until dropped").spawn(f)
    }

    /// Tasks still alive on the query threads (a cancelled query's task ends at its next yield).
    pub fn alive_tasks(&self) -> usize {
        self.rt
            .as_ref()
            .map_or(0, |rt| rt.metrics().num_alive_tasks())
    }
}

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Admission: at most `query.max_concurrency` queries run; the others wait in line, in arrival
/// order, until their deadline.
pub struct Admission {
    slots: Arc<Semaphore>,
    max: usize,
}

impl Admission {
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        Self {
            slots: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// A slot, held until the permit is dropped; a busy error (503 with `Retry-After`) when
    /// none frees up before `deadline`.
    pub async fn enter(
        &self,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<OwnedSemaphorePermit, QueryError> {
        match tokio::time::timeout_at(deadline, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(QueryError::Overloaded(format!(
                "no query slot within query.timeout ({timeout:?}): {} queries are running \
                 (query.max_concurrency)",
                self.max
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn queries_wait_for_a_slot_until_their_deadline() {
        let a = Admission::new(2);
        let t = Duration::from_secs(60);
        let first = a.enter(Instant::now() + t, t).await.unwrap();
        let _second = a.enter(Instant::now() + t, t).await.unwrap();
        let short = Duration::from_millis(50);
        let e = a.enter(Instant::now() + short, short).await.unwrap_err();
        assert_eq!((e.status(), e.error_type()), (503, "unavailable"));
        assert!(e.to_string().contains("query.max_concurrency"), "{e}");
        // A slot freed before the deadline is taken.
        let waiter = a.enter(Instant::now() + t, t);
        drop(first);
        let _third = waiter.await.unwrap();
    }
}
