//! The query service: one DataFusion session over every region, SQL and federation on it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use object_store::ObjectStore;
use promlake_core::clock::SharedClock;
use promlake_core::config::Config;
use promlake_core::faults::InstrumentedStore;
use promlake_core::labels::Labels;
use promlake_core::telemetry::{Counter, Registry};
use url::Url;

use crate::error::QueryError;
use crate::federate;
use crate::table::{self, Region, ScanStats};
use crate::udf;

/// Everything a query service holds; cheap to share.
pub struct QueryService {
    ctx: SessionContext,
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
        let mut runtime = RuntimeEnvBuilder::new();
        let limit = config.query.memory_limit.0;
        if limit > 0 {
            runtime = runtime.with_memory_limit(limit as usize, 1.0);
        }
        let runtime = Arc::new(
            runtime
                .build()
                .map_err(|e| QueryError::Internal(e.to_string()))?,
        );
        let session = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema("promlake", "public");
        let ctx = SessionContext::new_with_config_rt(session, runtime);
        let mut opened = Vec::new();
        for r in regions {
            promlake_core::keys::check_name("region", &r.name).map_err(QueryError::BadQuery)?;
            let counted = Arc::new(InstrumentedStore::new(r.store));
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
            ctx,
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
        &self.ctx
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

    /// Runs one SQL statement to completion, bounded by `query.timeout`.
    pub async fn sql(&self, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>), QueryError> {
        self.sql_inner(sql, None).await
    }

    /// Runs one SQL statement as of `at_ms`: `now()` is that instant (rule evaluation at a tick).
    pub async fn sql_at(
        &self,
        sql: &str,
        at_ms: i64,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), QueryError> {
        self.sql_inner(sql, Some(at_ms)).await
    }

    /// Plans a statement without running it (rule checks): its output schema.
    pub async fn plan_schema(&self, sql: &str) -> Result<SchemaRef, QueryError> {
        let plan = self.ctx.state().create_logical_plan(sql).await?;
        Ok(Arc::new(plan.schema().as_arrow().clone()))
    }

    async fn sql_inner(
        &self,
        sql: &str,
        at_ms: Option<i64>,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), QueryError> {
        self.metrics.queries.inc();
        let started = Instant::now();
        let ctx = self.ctx.clone();
        let sql = sql.to_owned();
        // The query runs in its own task, so the deadline fires even while it computes; the task
        // is aborted at its next yield point (DataFusion yields between batches).
        let mut task = tokio::spawn(async move {
            let mut state = ctx.state();
            if let Some(at) = at_ms {
                state.execution_props_mut().query_execution_start_time =
                    chrono::DateTime::from_timestamp_millis(at);
            }
            let plan = state.create_logical_plan(&sql).await?;
            let df = datafusion::dataframe::DataFrame::new(state, plan);
            let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
            let batches = df.collect().await?;
            Ok::<_, datafusion::error::DataFusionError>((schema, batches))
        });
        let res = tokio::select! {
            r = &mut task => match r {
                Ok(r) => r.map_err(QueryError::from),
                Err(e) => Err(QueryError::Internal(format!("the query task failed: {e}"))),
            },
            _ = tokio::time::sleep(self.timeout) => {
                task.abort();
                Err(QueryError::Timeout(format!("{:?}", self.timeout)))
            }
        };
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
        let run = federate::latest(&self.ctx, provider, &sels, now - self.lookback_ms, now);
        let series = match tokio::time::timeout(self.timeout, run).await {
            Ok(r) => r?,
            Err(_) => return Err(QueryError::Timeout(format!("{:?}", self.timeout))),
        };
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
