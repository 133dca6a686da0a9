//! Query memory: a budget per query inside a budget for the whole service.
//!
//! Each query gets its own [`QueryPool`] of `query.memory_limit`, so one query's growth never
//! fails another's allocation (with one pool shared by every query, a heavy query made tiny
//! `/federate` calls fail). Every pool also draws from the service's [`ServerBudget`]
//! (`query.server_memory_limit`): together, queries cannot hold more than that. What DataFusion's
//! operators reserve is counted, and so are the result batches a query holds until they are
//! sent.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use datafusion::common::{DataFusionError, Result};
use datafusion::execution::memory_pool::{
    MemoryLimit, MemoryPool, MemoryReservation, human_readable_size,
};

/// Memory held by all queries of a service.
#[derive(Debug)]
pub struct ServerBudget {
    limit: usize,
    used: AtomicUsize,
}

impl ServerBudget {
    /// `limit` bytes for all queries together; 0: no limit.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit: if limit == 0 { usize::MAX } else { limit },
            used: AtomicUsize::new(0),
        })
    }

    /// Bytes held by queries now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }

    fn try_take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| {
                u.checked_add(n).filter(|t| *t <= self.limit)
            })
            .is_ok()
    }

    fn give_back(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::SeqCst);
    }
}

/// One query's memory: at most `limit` bytes, and only while the server has them.
#[derive(Debug)]
pub struct QueryPool {
    limit: usize,
    used: AtomicUsize,
    server: Arc<ServerBudget>,
    /// An allocation failed because the server's budget was held by other queries.
    server_refused: AtomicBool,
}

impl QueryPool {
    /// `limit` bytes for one query; 0: only the server's budget applies.
    pub fn new(limit: usize, server: Arc<ServerBudget>) -> Self {
        Self {
            limit: if limit == 0 { usize::MAX } else { limit },
            used: AtomicUsize::new(0),
            server,
            server_refused: AtomicBool::new(false),
        }
    }

    /// Whether an allocation failed for want of the server's memory rather than the query's:
    /// the query may succeed when retried.
    pub fn server_refused(&self) -> bool {
        self.server_refused.load(Ordering::SeqCst)
    }
}

impl std::fmt::Display for QueryPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "query pool: {} of {} held",
            human_readable_size(self.reserved()),
            human_readable_size(self.limit)
        )
    }
}

impl MemoryPool for QueryPool {
    fn name(&self) -> &str {
        "promlake_query_pool"
    }

    fn grow(&self, _reservation: &MemoryReservation, additional: usize) {
        self.used.fetch_add(additional, Ordering::SeqCst);
        self.server.used.fetch_add(additional, Ordering::SeqCst);
    }

    fn shrink(&self, _reservation: &MemoryReservation, shrink: usize) {
        self.used.fetch_sub(shrink, Ordering::SeqCst);
        self.server.give_back(shrink);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        let taken = self
            .used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| {
                u.checked_add(additional).filter(|t| *t <= self.limit)
            });
        if taken.is_err() {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "the query needs more than query.memory_limit ({}): {} for {} would add to {} held",
                human_readable_size(self.limit),
                human_readable_size(additional),
                reservation.consumer().name(),
                human_readable_size(self.used.load(Ordering::SeqCst)),
            )));
        }
        if !self.server.try_take(additional) {
            self.used.fetch_sub(additional, Ordering::SeqCst);
            self.server_refused.store(true, Ordering::SeqCst);
            return Err(DataFusionError::ResourcesExhausted(format!(
                "queries hold all of query.server_memory_limit ({}) now: {} for {} is not \
                 available; retry later",
                human_readable_size(self.server.limit),
                human_readable_size(additional),
                reservation.consumer().name(),
            )));
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }

    fn memory_limit(&self) -> MemoryLimit {
        if self.limit == usize::MAX {
            MemoryLimit::Infinite
        } else {
            MemoryLimit::Finite(self.limit)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::execution::memory_pool::MemoryConsumer;

    #[test]
    fn each_query_has_its_limit_and_all_share_the_server_budget() {
        let server = ServerBudget::new(100);
        let a: Arc<dyn MemoryPool> = Arc::new(QueryPool::new(60, server.clone()));
        let b: Arc<dyn MemoryPool> = Arc::new(QueryPool::new(60, server.clone()));
        let ra = MemoryConsumer::new("sort").register(&a);
        let rb = MemoryConsumer::new("join").register(&b);
        ra.try_grow(50).unwrap();
        let e = ra.try_grow(20).unwrap_err().to_string();
        assert!(e.contains("query.memory_limit"), "{e}");
        let e = rb.try_grow(60).unwrap_err().to_string();
        assert!(e.contains("query.server_memory_limit"), "{e}");
        rb.try_grow(50).unwrap();
        assert_eq!(server.used(), 100);
        drop(ra);
        assert_eq!(server.used(), 50);
        rb.try_grow(10).unwrap();
        drop(rb);
        assert_eq!(server.used(), 0);
        assert_eq!(a.reserved() + b.reserved(), 0);
    }
}
