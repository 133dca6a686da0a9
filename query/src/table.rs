//! The block layout as DataFusion tables.
//!
//! | table | rows |
//! |---|---|
//! | `samples` | one per series and scrape slot: HA replicas deduplicated, stale markers left out |
//! | `samples_raw` | every stored row: every replica, stale markers included (column `stale`) |
//!
//! Columns: `region`, `replica`, `metric`, `labels` (map), `series_id`, `timestamp`, `value`
//! (`samples_raw` adds `stale`). `region` and `replica` come from the block keys.
//!
//! A scan looks at its filters before touching storage: bounds on `timestamp` select the
//! `day=/hour=` partitions to list (only those), and the blocks whose key range overlaps; a
//! condition on `region` selects the regions. The remaining filters are pushed into the Parquet
//! scan, which prunes row groups and pages by their statistics (metric names, timestamps).
//!
//! Deduplication follows the one rule of `promlake_core::dedup`: within a region, when more than
//! one replica has blocks in the scanned range, each series keeps, in each scrape slot, only the
//! rows of the first replica by name that has one in that slot; and where two blocks of one
//! replica and shard overlap in time, a sample stored in both counts once. When neither can
//! happen (one replica, no overlapping blocks), nothing is computed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, DataFusionError, Result, ScalarValue};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::datasource::{TableProvider, TableType, provider_as_source};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::functions_aggregate::min_max::min_udaf;
use datafusion::functions_window::row_number::row_number_udwf;
use datafusion::logical_expr::expr::InList;
use datafusion::logical_expr::expr::{WindowFunction, WindowFunctionDefinition};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{
    BinaryExpr, ExprFunctionExt, LogicalPlan, LogicalPlanBuilder, Operator,
    TableProviderFilterPushDown,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::prelude::{Expr, col, lit, not};
use object_store::ObjectStore;
use promlake_core::block;
use promlake_core::catalog::{self, ListStats};
use promlake_core::dedup::DedupRule;
use promlake_core::faults::RequestCounts;

use crate::udf;

pub const COL_REGION: &str = "region";
pub const COL_REPLICA: &str = "replica";
pub const COL_STALE: &str = "stale";

/// One region's storage, as the query service sees it.
#[derive(Clone)]
pub struct Region {
    pub name: String,
    pub store: Arc<dyn ObjectStore>,
    /// The URL the store is registered under in the session (`promlake://<region>`).
    pub url: ObjectStoreUrl,
    /// Requests and bytes through `store`.
    pub counts: Arc<RequestCounts>,
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Region({} at {})", self.name, self.store)
    }
}

/// What a table serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Deduplicated, without stale markers (`samples`).
    Samples,
    /// Everything stored (`samples_raw`).
    Raw,
    /// Deduplicated, stale markers kept (what `/federate` needs).
    DedupWithStale,
}

/// Scans, listings and files, for the service's metrics and the benchmarks.
#[derive(Debug, Default)]
pub struct ScanStats {
    pub scans: AtomicU64,
    pub lists: AtomicU64,
    pub files: AtomicU64,
}

/// A region that could not be read: the query fails rather than leave it out of a global result.
#[derive(Debug, thiserror::Error)]
#[error("region {region} is unavailable: {source}")]
pub struct RegionUnavailable {
    pub region: String,
    #[source]
    pub source: promlake_core::Error,
}

/// A stored block that cannot be read as one.
#[derive(Debug, thiserror::Error)]
#[error("block {key} is corrupt: {reason}")]
pub struct CorruptBlock {
    pub key: String,
    pub reason: String,
}

/// `PAR1`, a footer length and `PAR1`: the smallest Parquet file has more.
const MIN_PARQUET_BYTES: u64 = 12;

fn region_field() -> FieldRef {
    Arc::new(Field::new(COL_REGION, DataType::Utf8, false))
}

fn replica_field() -> FieldRef {
    Arc::new(Field::new(COL_REPLICA, DataType::Utf8, false))
}

/// The schema of a table in `mode`.
pub fn schema(mode: Mode) -> SchemaRef {
    let file = block::schema();
    let mut fields: Vec<FieldRef> = vec![region_field(), replica_field()];
    fields.extend(file.fields().iter().cloned());
    if mode == Mode::Raw {
        fields.push(Arc::new(Field::new(COL_STALE, DataType::Boolean, true)));
    }
    Arc::new(Schema::new(fields))
}

/// The blocks of every region as one table.
#[derive(Debug)]
pub struct BlocksTable {
    regions: Arc<Vec<Region>>,
    mode: Mode,
    dedup_ms: i64,
    stats: Arc<ScanStats>,
    schema: SchemaRef,
}

impl BlocksTable {
    pub fn new(
        regions: Arc<Vec<Region>>,
        mode: Mode,
        dedup_ms: i64,
        stats: Arc<ScanStats>,
    ) -> Self {
        Self {
            regions,
            mode,
            dedup_ms: dedup_ms.max(1),
            stats,
            schema: schema(mode),
        }
    }

    /// Columns a filter may use to be evaluated before deduplication (they keep or drop whole
    /// slots of a series alike in every replica).
    fn pushable(&self, e: &Expr) -> bool {
        let mut ok = true;
        let _ = e.apply(|n| {
            if let Expr::Column(c) = n {
                let allowed = matches!(
                    c.name.as_str(),
                    "metric" | "labels" | "series_id" | "timestamp" | COL_REGION
                ) || (self.mode == Mode::Raw
                    && matches!(c.name.as_str(), "value" | COL_REPLICA));
                if !allowed {
                    ok = false;
                    return Ok(TreeNodeRecursion::Stop);
                }
            }
            Ok(TreeNodeRecursion::Continue)
        });
        ok
    }
}

#[async_trait]
impl TableProvider for BlocksTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                if self.pushable(f) {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.stats.scans.fetch_add(1, Ordering::Relaxed);
        let filters: Vec<Expr> = filters
            .iter()
            .filter(|f| self.pushable(f))
            .map(|f| unqualify(f.clone()))
            .collect::<Result<_>>()?;
        let range = time_bounds(&filters);
        let wanted_regions = region_filter(&filters);
        let mut plans: Vec<LogicalPlan> = Vec::new();
        for region in self.regions.iter() {
            if let Some(w) = &wanted_regions
                && !w.contains(&region.name)
            {
                continue;
            }
            let mut ls = ListStats::default();
            let bounded = match range {
                (None, None) => None,
                (from, to) => Some((from.unwrap_or(i64::MIN / 4), to.unwrap_or(i64::MAX / 4))),
            };
            // An unbounded side would cover every hour since 1970: list the region instead.
            let listed = bounded.filter(|(f, t)| *f > 0 && t - f <= 400 * 86_400_000);
            let found = catalog::list_blocks(region.store.as_ref(), &region.name, listed, &mut ls)
                .await
                .map_err(|source| {
                    DataFusionError::External(Box::new(RegionUnavailable {
                        region: region.name.clone(),
                        source,
                    }))
                })?;
            self.stats.lists.fetch_add(ls.lists, Ordering::Relaxed);
            let found: Vec<_> = found
                .into_iter()
                .filter(|b| bounded.is_none_or(|(f, t)| b.key.max_ts >= f && b.key.min_ts <= t))
                .collect();
            if found.is_empty() {
                continue;
            }
            // An object too short to be Parquet would be read as an empty file: report it.
            if let Some(b) = found.iter().find(|b| b.meta.size < MIN_PARQUET_BYTES) {
                return Err(DataFusionError::External(Box::new(CorruptBlock {
                    key: b.meta.location.to_string(),
                    reason: format!(
                        "{} bytes, too short to be a Parquet file (at least {MIN_PARQUET_BYTES})",
                        b.meta.size
                    ),
                })));
            }
            self.stats
                .files
                .fetch_add(found.len() as u64, Ordering::Relaxed);
            // Rule output (replica `rules`) is written once per tick and never duplicated.
            let replicas: BTreeSet<&str> = found
                .iter()
                .map(|b| b.key.replica.as_str())
                .filter(|r| *r != promlake_core::keys::RULES_REPLICA)
                .collect();
            let dedup = self.mode != Mode::Raw && replicas.len() > 1;
            let files = found
                .iter()
                .map(|b| {
                    let mut f = PartitionedFile::new(b.meta.location.to_string(), b.meta.size);
                    f.partition_values = vec![
                        ScalarValue::Utf8(Some(region.name.clone())),
                        ScalarValue::Utf8(Some(b.key.replica.clone())),
                    ];
                    f
                })
                .collect();
            let set = Arc::new(FileSet {
                url: region.url.clone(),
                files,
                schema: file_set_schema(),
            });
            let mut b = LogicalPlanBuilder::scan_with_filters(
                format!("blocks_{}", region.name),
                provider_as_source(set),
                None,
                filters.clone(),
            )?;
            if dedup {
                // The dedup rule (promlake_core::dedup): in each series and slot, the rows of
                // the first replica by name.
                let slot = udf::dedup_slot(col("timestamp"), self.dedup_ms);
                let first = Expr::from(WindowFunction::new(
                    WindowFunctionDefinition::AggregateUDF(min_udaf()),
                    vec![col(COL_REPLICA)],
                ))
                .partition_by(vec![col("series_id"), slot])
                .build()?
                .alias("__first_replica");
                b = b
                    .window(vec![first])?
                    .filter(col(COL_REPLICA).eq(col("__first_replica")))?;
            }
            if self.mode != Mode::Raw && DedupRule::may_repeat(found.iter().map(|b| &b.key)) {
                // And a sample stored twice by that replica counts once.
                let copy = Expr::from(WindowFunction::new(
                    WindowFunctionDefinition::WindowUDF(row_number_udwf()),
                    vec![],
                ))
                .partition_by(vec![col("series_id"), col("timestamp")])
                .build()?
                .alias("__copy");
                b = b.window(vec![copy])?.filter(col("__copy").eq(lit(1u64)))?;
            }
            if self.mode == Mode::Samples {
                b = b.filter(not(udf::is_stale(col("value"))))?;
            }
            let mut exprs: Vec<Expr> = self
                .schema
                .fields()
                .iter()
                .filter(|f| f.name() != COL_STALE)
                .map(|f| col(f.name().as_str()))
                .collect();
            if self.mode == Mode::Raw {
                exprs.push(udf::is_stale(col("value")).alias(COL_STALE));
            }
            plans.push(b.project(exprs)?.build()?);
        }
        let projected = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        let Some(first) = plans.first().cloned() else {
            return Ok(Arc::new(EmptyExec::new(projected)));
        };
        let mut b = LogicalPlanBuilder::from(first);
        for p in plans.into_iter().skip(1) {
            b = b.union(p)?;
        }
        let cols: Vec<Expr> = projected
            .fields()
            .iter()
            .map(|f| col(f.name().as_str()))
            .collect();
        b = b.project(cols)?;
        if let Some(n) = limit {
            b = b.limit(0, Some(n))?;
        }
        state.create_physical_plan(&b.build()?).await
    }
}

fn file_set_schema() -> SchemaRef {
    let mut fields: Vec<FieldRef> = block::schema().fields().iter().cloned().collect();
    fields.push(region_field());
    fields.push(replica_field());
    Arc::new(Schema::new(fields))
}

/// A fixed set of block files of one region: the Parquet scan under a [`BlocksTable`] scan.
#[derive(Debug)]
struct FileSet {
    url: ObjectStoreUrl,
    files: Vec<PartitionedFile>,
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for FileSet {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let df_schema = DFSchema::try_from(self.schema.clone())?;
        let table_schema = TableSchema::builder(block::schema())
            .with_table_partition_cols(vec![region_field(), replica_field()])
            .build();
        // Row groups and pages are pruned by their statistics. Row-level filtering during decoding
        // (`pushdown_filters`) stays off: on a full day of node_exporter-like data it made a
        // per-series rate 1.3x slower (the metric filter keeps most rows), and it did not speed
        // up a selective one-hour query (promlake-bench query).
        let mut source = ParquetSource::new(table_schema).with_enable_page_index(true);
        if let Some(p) = conjunction(filters.to_vec()) {
            source = source.with_predicate(state.create_physical_expr(p, &df_schema)?);
        }
        let n = state.config().target_partitions().max(1);
        let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); n];
        let mut sizes = vec![0u64; n];
        let mut files = self.files.clone();
        files.sort_by_key(|f| std::cmp::Reverse(f.object_meta.size));
        for f in files {
            // The lightest group takes the next largest file.
            let i = (0..n).min_by_key(|i| sizes[*i]).unwrap_or(0);
            sizes[i] += f.object_meta.size;
            groups[i].push(f);
        }
        let config = FileScanConfigBuilder::new(self.url.clone(), Arc::new(source))
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .with_file_groups(
                groups
                    .into_iter()
                    .filter(|g| !g.is_empty())
                    .map(FileGroup::new)
                    .collect(),
            )
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}

/// Drops table qualifiers, so a filter on `samples` applies to the file set below it.
fn unqualify(e: Expr) -> Result<Expr> {
    e.transform(|n| {
        Ok(match n {
            Expr::Column(c) if c.relation.is_some() => {
                Transformed::yes(Expr::Column(Column::from_name(c.name)))
            }
            other => Transformed::no(other),
        })
    })
    .map(|t| t.data)
}

fn literal_ms(e: &Expr) -> Option<i64> {
    match e {
        Expr::Literal(v, _) => match v {
            ScalarValue::TimestampMillisecond(Some(t), _) => Some(*t),
            ScalarValue::TimestampSecond(Some(t), _) => Some(t * 1000),
            ScalarValue::TimestampMicrosecond(Some(t), _) => Some(t.div_euclid(1000)),
            ScalarValue::TimestampNanosecond(Some(t), _) => Some(t.div_euclid(1_000_000)),
            _ => None,
        },
        Expr::Cast(c) => match c.field.data_type() {
            DataType::Timestamp(_, _) => literal_ms(&c.expr).or_else(|| match c.expr.as_ref() {
                Expr::Literal(ScalarValue::Utf8(Some(s)), _) => {
                    chrono::DateTime::parse_from_rfc3339(s)
                        .ok()
                        .map(|t| t.timestamp_millis())
                }
                _ => None,
            }),
            _ => None,
        },
        Expr::TryCast(c) => literal_ms(&c.expr),
        _ => None,
    }
}

fn is_timestamp_col(e: &Expr) -> bool {
    match e {
        Expr::Column(c) => c.name == "timestamp",
        Expr::Cast(c) => {
            matches!(
                c.field.data_type(),
                DataType::Timestamp(
                    TimeUnit::Millisecond
                        | TimeUnit::Nanosecond
                        | TimeUnit::Microsecond
                        | TimeUnit::Second,
                    _
                )
            ) && is_timestamp_col(&c.expr)
        }
        _ => false,
    }
}

/// `[from, to]` (inclusive, ms) implied by the conjunction of `filters`.
pub fn time_bounds(filters: &[Expr]) -> (Option<i64>, Option<i64>) {
    let mut from: Option<i64> = None;
    let mut to: Option<i64> = None;
    let mut lower = |v: i64| from = Some(from.map_or(v, |f| f.max(v)));
    let mut upper = |v: i64| to = Some(to.map_or(v, |t| t.min(v)));
    for f in filters {
        match f {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let (op, lit) = if is_timestamp_col(left) {
                    (*op, literal_ms(right))
                } else if is_timestamp_col(right) {
                    let swapped = match op {
                        Operator::Lt => Operator::Gt,
                        Operator::LtEq => Operator::GtEq,
                        Operator::Gt => Operator::Lt,
                        Operator::GtEq => Operator::LtEq,
                        o => *o,
                    };
                    (swapped, literal_ms(left))
                } else {
                    continue;
                };
                let Some(v) = lit else { continue };
                match op {
                    Operator::Gt => lower(v + 1),
                    Operator::GtEq => lower(v),
                    Operator::Lt => upper(v - 1),
                    Operator::LtEq => upper(v),
                    Operator::Eq => {
                        lower(v);
                        upper(v);
                    }
                    _ => {}
                }
            }
            Expr::Between(b) if !b.negated && is_timestamp_col(&b.expr) => {
                if let Some(v) = literal_ms(&b.low) {
                    lower(v);
                }
                if let Some(v) = literal_ms(&b.high) {
                    upper(v);
                }
            }
            _ => {}
        }
    }
    (from, to)
}

/// The regions named by `region = '...'` or `region IN (...)`, if the filters name any.
fn region_filter(filters: &[Expr]) -> Option<BTreeSet<String>> {
    let mut out: Option<BTreeSet<String>> = None;
    let is_region = |e: &Expr| matches!(e, Expr::Column(c) if c.name == COL_REGION);
    let text = |e: &Expr| match e {
        Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)),
            _,
        ) => Some(s.clone()),
        _ => None,
    };
    for f in filters {
        let set: Option<BTreeSet<String>> = match f {
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Eq,
                right,
            }) if is_region(left) => text(right).map(|s| BTreeSet::from([s])),
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Eq,
                right,
            }) if is_region(right) => text(left).map(|s| BTreeSet::from([s])),
            Expr::InList(InList {
                expr,
                list,
                negated: false,
            }) if is_region(expr) => list.iter().map(text).collect(),
            _ => None,
        };
        if let Some(s) = set {
            out = Some(match out {
                Some(o) => o.intersection(&s).cloned().collect(),
                None => s,
            });
        }
    }
    out
}

/// The tables of a session, by name.
pub fn tables(
    regions: Arc<Vec<Region>>,
    dedup_ms: i64,
    stats: Arc<ScanStats>,
) -> BTreeMap<&'static str, Arc<BlocksTable>> {
    BTreeMap::from([
        (
            "samples",
            Arc::new(BlocksTable::new(
                regions.clone(),
                Mode::Samples,
                dedup_ms,
                stats.clone(),
            )),
        ),
        (
            "samples_raw",
            Arc::new(BlocksTable::new(regions, Mode::Raw, dedup_ms, stats)),
        ),
    ])
}
