//! promlake-core's error type. Every message names the object key, URL or config place at fault.

use crate::config::ConfigError;

/// Errors of the core crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),

    /// A storage URL that cannot be opened.
    #[error("storage {url}: {message}")]
    StorageUrl { url: String, message: String },

    /// An object store operation failed.
    #[error("object store, key {key}: {source}")]
    Store {
        key: String,
        #[source]
        source: object_store::Error,
    },

    /// An object that is not what its key says it is.
    #[error("object {key}: {message}")]
    Corrupt { key: String, message: String },

    /// An object key that does not follow promlake's layout.
    #[error("object key {key}: {message}")]
    Key { key: String, message: String },

    #[error("parquet, key {key}: {source}")]
    Parquet {
        key: String,
        #[source]
        source: parquet::errors::ParquetError,
    },

    /// A sample whose timestamp no reader of blocks can represent (see
    /// [`crate::block::MIN_TIMESTAMP_MS`]).
    #[error(
        "sample {series} has timestamp {timestamp_ms} ms, outside years 0 to 9999 that blocks hold"
    )]
    TimestampOutOfRange { series: String, timestamp_ms: i64 },

    /// Blocks could not be spilled to, or read back from, local disk.
    #[error("spill file {path}: {message}")]
    Spill { path: String, message: String },

    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

impl Error {
    pub fn store(key: impl ToString, source: object_store::Error) -> Self {
        Error::Store {
            key: key.to_string(),
            source,
        }
    }

    /// Whether this is object_store's "already exists" answer to a create-only write.
    pub fn is_already_exists(&self) -> bool {
        matches!(
            self,
            Error::Store {
                source: object_store::Error::AlreadyExists { .. },
                ..
            }
        )
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
