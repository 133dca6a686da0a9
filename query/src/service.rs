//! The query service: one DataFusion session over every region, SQL and federation on it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool};
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt;
use object_store::ObjectStore;
use promlake_core::clock::SharedClock;
use promlake_core::config::Config;
use promlake_core::faults::InstrumentedStore;
use promlake_core::labels::Labels;
use promlake_core::readonly::ReadOnlyStore;
use promlake_core::telemetry::{Counter, Registry};
use tracing::Instrument;
use url::Url;

use crate::coop::YieldEverywhere;
use crate::error::QueryError;
use crate::federate;
use crate::guard;
use crate::memory::{QueryPool, ServerBudget};
use crate::runtime::{Admission, QueryRuntime};
use crate::table::{self, Region, ScanStats};
use crate::udf;

/// Everything a query service holds; cheap to share.
pub struct QueryService {
    sessions: Sessions,
    runtime: Arc<QueryRuntime>,
    /// `query.max_concurrency`.
    admission: Admission,
    regions: Arc<Vec<Region>>,
    stats: Arc<ScanStats>,
    timeout: Duration,
    lookback_ms: i64,
    dedup_ms: i64,
    external_labels: Labels,
    clock: SharedClock,
    metrics: ServiceMetrics,
}

#[derive(Clone)]
struct ServiceMetrics {
    registry: Registry,
    queries: Counter,
    failed: Counter,
    federations: Counter,
}

/// The storage of one region, opened.
pub struct RegionStore {
    pub name: String,
    pub store: Arc<dyn ObjectStore>,
}

impl RegionStore {
    /// Opens the storage of every region `config` queries (its own and `query.regions`).
    pub fn open_all(
        config: &Config,
        options: &promlake_core::store::StoreOptions,
    ) -> promlake_core::Result<Vec<RegionStore>> {
        config
            .query_regions()
            .iter()
            .map(|r| {
                let url = config.storage_url(&r.storage);
                promlake_core::store::open(&url, options)
                    .map(|s| RegionStore {
                        name: r.name.clone(),
                        store: s.store,
                    })
                    .map_err(|e| promlake_core::Error::StorageUrl {
                        url,
                        message: format!("region {}: {e}", r.name),
                    })
            })
            .collect()
    }
}

impl QueryService {
    /// A service over `regions` with the settings of `config.query`.
    pub fn new(
        config: &Config,
        regions: Vec<RegionStore>,
        clock: SharedClock,
        registry: &Registry,
    ) -> Result<Self, QueryError> {
        // The session reaches the regions' stores and nothing else: no local files.
        let stores = DefaultObjectStoreRegistry::new();
        let local = Url::parse("file:///").map_err(|e| QueryError::Internal(e.to_string()))?;
        stores.deregister_store(&local)?;
        // Memory is limited per query (see `Sessions::at`), not here.
        let runtime = Arc::new(
            RuntimeEnvBuilder::new()
                .with_object_store_registry(Arc::new(stores))
                .build()
                .map_err(|e| QueryError::Internal(e.to_string()))?,
        );
        let session = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema("promlake", "public");
        let state = SessionStateBuilder::new()
            .with_config(session)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(YieldEverywhere))
            .build();
        let ctx = SessionContext::new_with_state(state);
        let mut opened = Vec::new();
        for r in regions {
            promlake_core::keys::check_name("region", &r.name).map_err(QueryError::BadQuery)?;
            // Reads only: nothing a statement asks can write through it.
            let read_only: Arc<dyn ObjectStore> = Arc::new(ReadOnlyStore::new(r.store));
            let counted = Arc::new(InstrumentedStore::new(read_only));
            let counts = counted.counts.clone();
            let url = Url::parse(&format!("promlake://{}", r.name))
                .map_err(|e| QueryError::Internal(e.to_string()))?;
            ctx.register_object_store(&url, counted.clone());
            opened.push(Region {
                name: r.name,
                store: counted,
                url: datafusion::execution::object_store::ObjectStoreUrl::parse(url.as_str())
                    .map_err(|e| QueryError::Internal(e.to_string()))?,
                counts,
            });
        }
        let regions = Arc::new(opened);
        let stats = Arc::new(ScanStats::default());
        let dedup_ms = config.dedup_interval().as_millis().max(1) as i64;
        for (name, t) in table::tables(regions.clone(), dedup_ms, stats.clone()) {
            ctx.register_table(name, t).map_err(QueryError::from)?;
        }
        for f in udf::functions() {
            ctx.register_udf(f);
        }
        for f in udf::aggregates() {
            ctx.register_udaf(f);
        }
        Ok(Self {
            sessions: Sessions {
                base: ctx,
                per_query: config.query.memory_limit.0 as usize,
                server: ServerBudget::new(config.query.server_memory_limit.0 as usize),
            },
            admission: Admission::new(config.query.max_concurrency),
            runtime: Arc::new(
                QueryRuntime::new()
                    .map_err(|e| QueryError::Internal(format!("starting query threads: {e}")))?,
            ),
            regions,
            stats,
            timeout: config.query.timeout.0,
            lookback_ms: config.query.lookback_delta.as_millis() as i64,
            dedup_ms,
            external_labels: config.global.external_labels(),
            clock,
            metrics: ServiceMetrics {
                registry: registry.clone(),
                queries: registry.counter("promlake_queries_total", "SQL queries run.", &[]),
                failed: registry.counter(
                    "promlake_query_failures_total",
                    "SQL queries that failed.",
                    &[],
                ),
                federations: registry.counter(
                    "promlake_federate_requests_total",
                    "/federate requests served.",
                    &[],
                ),
            },
        })
    }

    pub fn context(&self) -> &SessionContext {
        &self.sessions.base
    }

    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    pub fn stats(&self) -> &ScanStats {
        &self.stats
    }

    pub fn registry(&self) -> &Registry {
        &self.metrics.registry
    }

    /// LIST requests, ranged-read bytes and objects read so far, over all regions.
    pub fn io_totals(&self) -> (u64, u64, u64) {
        let lists = self.regions.iter().map(|r| r.counts.lists()).sum();
        let bytes = self.regions.iter().map(|r| r.counts.get_bytes()).sum();
        let gets = self.regions.iter().map(|r| r.counts.gets()).sum();
        (lists, bytes, gets)
    }

    /// Runs one SQL statement to completion, bounded by `query.timeout`; `now()` is the clock's
    /// time when it starts.
    pub async fn sql(&self, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>), QueryError> {
        self.sql_at(sql, self.clock.now_ms()).await
    }

    /// Runs one SQL statement as of `at_ms`: `now()` is that instant (rule evaluation at a tick).
    pub async fn sql_at(
        &self,
        sql: &str,
        at_ms: i64,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), QueryError> {
        self.metrics.queries.inc();
        let started = Instant::now();
        let sessions = self.sessions.clone();
        let sql = sql.to_owned();
        let res = self
            .on_query_threads("sql", async move {
                let (state, pool) = sessions.at(at_ms);
                let run = async {
                    let plan = plan(&state, &sql).await?;
                    let df = datafusion::dataframe::DataFrame::new(state.clone(), plan);
                    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
                    // The result counts against the query's memory as it is collected.
                    let counted: Arc<dyn MemoryPool> = pool.clone();
                    let held = MemoryConsumer::new("query result").register(&counted);
                    let mut stream = df.execute_stream().await?;
                    let mut batches = Vec::new();
                    while let Some(b) = stream.next().await {
                        let b = b?;
                        held.try_grow(b.get_array_memory_size())?;
                        batches.push(b);
                    }
                    Ok((schema, batches))
                };
                match run.await {
                    Err(QueryError::ResourcesExhausted(m)) if pool.server_refused() => {
                        Err(QueryError::Overloaded(m))
                    }
                    r => r,
                }
            })
            .await;
        if res.is_err() {
            self.metrics.failed.inc();
        }
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            ok = res.is_ok(),
            "sql"
        );
        res
    }

    /// Plans a statement without running it (rule checks): its output schema.
    pub async fn plan_schema(&self, sql: &str) -> Result<SchemaRef, QueryError> {
        let sessions = self.sessions.clone();
        let sql = sql.to_owned();
        let at = self.clock.now_ms();
        self.on_query_threads("plan", async move {
            let plan = plan(&sessions.at(at).0, &sql).await?;
            Ok(Arc::new(plan.schema().as_arrow().clone()))
        })
        .await
    }

    /// Runs `work` on the query threads, bounded by `query.timeout`. The deadline is watched
    /// from the caller's side, so it fires even while the query computes; the query's task is
    /// aborted and ends at its next yield point (DataFusion's operators yield cooperatively).
    async fn on_query_threads<T: Send + 'static>(
        &self,
        kind: &'static str,
        work: impl std::future::Future<Output = Result<T, QueryError>> + Send + 'static,
    ) -> Result<T, QueryError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let permit = self.admission.enter(deadline, self.timeout).await?;
        let span = tracing::info_span!("query", kind);
        let mut task = self.runtime.spawn(
            async move {
                let _slot = permit;
                work.await
            }
            .instrument(span),
        );
        tokio::select! {
            r = &mut task => match r {
                Ok(r) => r,
                Err(e) => Err(QueryError::Internal(format!("the query task failed: {e}"))),
            },
            _ = tokio::time::sleep_until(deadline) => {
                task.abort();
                Err(QueryError::Timeout(format!("{:?}", self.timeout)))
            }
        }
    }

    /// Tasks still running on the query threads (for tests of cancellation).
    pub fn running_query_tasks(&self) -> usize {
        self.runtime.alive_tasks()
    }

    /// `/federate`: the latest sample of every series matching any selector, in the text format.
    pub async fn federate(&self, selectors: &[String]) -> Result<String, QueryError> {
        self.metrics.federations.inc();
        let now = self.clock.now_ms();
        let sels = federate::parse_selectors(selectors)?;
        let provider = Arc::new(table::BlocksTable::new(
            self.regions.clone(),
            table::Mode::DedupWithStale,
            self.dedup_ms,
            self.stats.clone(),
        ));
        let sessions = self.sessions.clone();
        let lookback = self.lookback_ms;
        let series = self
            .on_query_threads("federate", async move {
                let ctx = SessionContext::new_with_state(sessions.at(now).0);
                federate::latest(&ctx, provider, &sels, now - lookback, now).await
            })
            .await?;
        let multi_region = self.regions.len() > 1;
        Ok(federate::render(
            series,
            &self.external_labels,
            multi_region,
        ))
    }

    /// The regions' names and how many blocks of each a scan found, for `/-/ready`.
    pub fn describe(&self) -> BTreeMap<String, String> {
        self.regions
            .iter()
            .map(|r| (r.name.clone(), r.store.to_string()))
            .collect()
    }
}

/// What each query's session is made from.
#[derive(Clone)]
struct Sessions {
    /// Tables, functions, stores and rules, shared by every query.
    base: SessionContext,
    /// `query.memory_limit`.
    per_query: usize,
    server: Arc<ServerBudget>,
}

impl Sessions {
    /// The session of one statement: its own memory pool within the server's budget, and
    /// `now()` at `at_ms`.
    fn at(&self, at_ms: i64) -> (SessionState, Arc<QueryPool>) {
        let base = self.base.state();
        let shared = base.runtime_env();
        let pool = Arc::new(QueryPool::new(self.per_query, self.server.clone()));
        let runtime = RuntimeEnv {
            memory_pool: pool.clone(),
            disk_manager: shared.disk_manager.clone(),
            cache_manager: shared.cache_manager.clone(),
            object_store_registry: shared.object_store_registry.clone(),
        };
        let mut state = SessionStateBuilder::new_from_existing(base)
            .with_runtime_env(Arc::new(runtime))
            .build();
        state.execution_props_mut().query_execution_start_time =
            chrono::DateTime::from_timestamp_millis(at_ms);
        (state, pool)
    }
}

/// Parses, checks (read-only statement kinds, bounded depth) and plans one statement.
async fn plan(state: &SessionState, sql: &str) -> Result<LogicalPlan, QueryError> {
    let dialect = state.config().options().sql_parser.dialect;
    let stmt = state.sql_to_statement(sql, &dialect)?;
    guard::check_statement(&stmt)?;
    let plan = state.statement_to_plan(stmt).await?;
    guard::read_only_plan(&plan)?;
    Ok(plan)
}
