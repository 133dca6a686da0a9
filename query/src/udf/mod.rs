//! promlake's SQL functions, one file each.

use datafusion::logical_expr::{AggregateUDF, ScalarUDF};

pub mod counter;
pub mod dedup_slot;
pub mod histogram_quantile;
pub mod is_stale;
pub mod label;
pub mod prom_series;
pub mod time_bucket;

/// The scalar functions.
pub fn functions() -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::from(label::Label::new()),
        ScalarUDF::from(is_stale::IsStale::new()),
        ScalarUDF::from(prom_series::PromSeries::new()),
        ScalarUDF::from(time_bucket::TimeBucket::new()),
    ]
}

/// The aggregate functions.
pub fn aggregates() -> Vec<AggregateUDF> {
    use counter::{CounterFn, Kind};
    vec![
        AggregateUDF::from(CounterFn::new(Kind::Increase)),
        AggregateUDF::from(CounterFn::new(Kind::Rate)),
        AggregateUDF::from(CounterFn::new(Kind::PromIncrease)),
        AggregateUDF::from(CounterFn::new(Kind::PromRate)),
        AggregateUDF::from(histogram_quantile::HistogramQuantile::new()),
    ]
}

/// `is_stale(value)` as an expression.
pub fn is_stale(value: datafusion::prelude::Expr) -> datafusion::prelude::Expr {
    ScalarUDF::from(is_stale::IsStale::new()).call(vec![value])
}

/// `label(labels, name)` as an expression.
pub fn label(labels: datafusion::prelude::Expr, name: &str) -> datafusion::prelude::Expr {
    ScalarUDF::from(label::Label::new()).call(vec![labels, datafusion::prelude::lit(name)])
}

/// `dedup_slot(timestamp, interval_ms)` as an expression.
pub fn dedup_slot(
    timestamp: datafusion::prelude::Expr,
    interval_ms: i64,
) -> datafusion::prelude::Expr {
    ScalarUDF::from(dedup_slot::DedupSlot::new())
        .call(vec![timestamp, datafusion::prelude::lit(interval_ms)])
}
