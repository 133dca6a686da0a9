//! Where queries run: a tokio runtime of their own, apart from the one that serves HTTP and, in
//! `promlake up`, scrapes and flushes. A query that computes for minutes occupies these threads
//! only, so health checks, scrapes, flushes and the timeout that cancels the query keep running.
//! The threads have deep stacks: planning and optimizing recurse over expression trees.

use std::future::Future;

use tokio::runtime::{Builder, Runtime};
use tokio::task::JoinHandle;

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
