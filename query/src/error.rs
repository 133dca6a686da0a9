//! Query errors, with the HTTP status and Prometheus `errorType` each maps to.

use datafusion::error::DataFusionError;

use crate::table::{CorruptBlock, RegionUnavailable};

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The SQL does not parse or does not plan (unknown table, column, function).
    #[error("{0}")]
    BadQuery(String),
    /// A `match[]` selector that does not parse.
    #[error("{0}")]
    BadSelector(String),
    /// The query ran and failed.
    #[error("{0}")]
    Execution(String),
    /// The query hit the memory limit.
    #[error("{0}")]
    ResourcesExhausted(String),
    /// The query ran longer than `query.timeout`.
    #[error("query timed out after {0}")]
    Timeout(String),
    /// A region's storage could not be read.
    #[error("{0}")]
    Unavailable(String),
    /// The service is busy (no query slot, or the server's query memory is held): retry.
    #[error("{0}")]
    Overloaded(String),
    #[error("{0}")]
    Internal(String),
}

impl QueryError {
    /// Prometheus' `errorType`.
    pub fn error_type(&self) -> &'static str {
        match self {
            QueryError::BadQuery(_) | QueryError::BadSelector(_) => "bad_data",
            QueryError::Execution(_) | QueryError::ResourcesExhausted(_) => "execution",
            QueryError::Timeout(_) => "timeout",
            QueryError::Unavailable(_) | QueryError::Overloaded(_) => "unavailable",
            QueryError::Internal(_) => "internal",
        }
    }

    /// The HTTP status Prometheus uses for the same kind of error.
    pub fn status(&self) -> u16 {
        match self {
            QueryError::BadQuery(_) | QueryError::BadSelector(_) => 400,
            QueryError::Execution(_) | QueryError::ResourcesExhausted(_) => 422,
            QueryError::Timeout(_) | QueryError::Unavailable(_) | QueryError::Overloaded(_) => 503,
            QueryError::Internal(_) => 500,
        }
    }
}

fn find_region(e: &DataFusionError) -> Option<String> {
    match e {
        DataFusionError::External(inner) => inner
            .downcast_ref::<RegionUnavailable>()
            .map(|r| r.to_string()),
        DataFusionError::Context(_, inner) => find_region(inner),
        DataFusionError::Shared(inner) => find_region(inner),
        DataFusionError::Diagnostic(_, inner) => find_region(inner),
        _ => None,
    }
}

impl From<arrow::error::ArrowError> for QueryError {
    fn from(e: arrow::error::ArrowError) -> Self {
        QueryError::Execution(e.to_string())
    }
}

/// The corrupt block an error names, wherever DataFusion wrapped it.
fn find_corrupt(e: &DataFusionError) -> Option<String> {
    match e {
        DataFusionError::External(inner) => {
            inner.downcast_ref::<CorruptBlock>().map(|c| c.to_string())
        }
        DataFusionError::Context(_, inner) => find_corrupt(inner),
        DataFusionError::Shared(inner) => find_corrupt(inner),
        DataFusionError::Diagnostic(_, inner) => find_corrupt(inner),
        _ => None,
    }
}

impl From<DataFusionError> for QueryError {
    fn from(e: DataFusionError) -> Self {
        if let Some(r) = find_region(&e) {
            return QueryError::Unavailable(r);
        }
        if let Some(c) = find_corrupt(&e) {
            return QueryError::Execution(c);
        }
        let root = e.find_root();
        let msg = root.to_string();
        match root {
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_) => QueryError::BadQuery(msg),
            DataFusionError::ResourcesExhausted(_) => QueryError::ResourcesExhausted(msg),
            DataFusionError::Internal(_) => QueryError::Internal(msg),
            _ => QueryError::Execution(msg),
        }
    }
}
