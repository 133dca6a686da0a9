//! promlake-core's error type. Every message names the object key, URL or config place at fault.

use std::fmt;

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

/// A configuration error, located in its file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file (or "<config>" for text given directly).
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The key path (`scrape_configs[0].relabel_configs[1].modulus`), when known.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(": ")?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}
