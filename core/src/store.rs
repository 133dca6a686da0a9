//! Object storage from a URL. Object storage is promlake's only shared state.
//!
//! | URL | store |
//! |---|---|
//! | `file:///abs/path`, `./relative/path`, `/abs/path` | local disk (created if missing) |
//! | `s3://bucket/prefix` | S3 or any S3-compatible server (MinIO, LocalStack), configured by the standard `AWS_*` environment: `AWS_ENDPOINT` (or `AWS_ENDPOINT_URL`), `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_ALLOW_HTTP` |
//! | `memory://name` | in memory, shared by everything in the process that opens the same name |
//!
//! Every store is wrapped so that keys are relative to the URL's prefix.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ObjectStore, RetryConfig};

use crate::error::{Error, Result};

/// An opened storage URL.
#[derive(Clone, Debug)]
pub struct Storage {
    /// The URL as given.
    pub url: String,
    pub store: Arc<dyn ObjectStore>,
}

/// How to open a store beyond what the URL says.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// S3 settings (`AmazonS3ConfigKey` names, e.g. `aws_endpoint`), applied over the `AWS_*`
    /// environment.
    pub s3: Vec<(String, String)>,
    /// Retries of failed requests (S3): backoff from 100 ms, at most `max_retries` times, and not
    /// beyond `retry_timeout` after the first attempt.
    pub max_retries: usize,
    pub retry_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            s3: Vec::new(),
            max_retries: 5,
            retry_timeout: Duration::from_secs(30),
        }
    }
}

impl StoreOptions {
    /// Options that point S3 URLs at an S3-compatible server on `endpoint` (plain HTTP allowed,
    /// path-style requests), with the given credentials.
    pub fn s3_endpoint(endpoint: &str, key_id: &str, secret: &str) -> Self {
        Self {
            s3: vec![
                ("aws_endpoint".into(), endpoint.into()),
                ("aws_allow_http".into(), "true".into()),
                ("aws_access_key_id".into(), key_id.into()),
                ("aws_secret_access_key".into(), secret.into()),
                ("aws_region".into(), "us-east-1".into()),
                ("aws_virtual_hosted_style_request".into(), "false".into()),
            ],
            ..Default::default()
        }
    }
}

fn memory_registry() -> &'static Mutex<HashMap<String, Arc<InMemory>>> {
    static R: OnceLock<Mutex<HashMap<String, Arc<InMemory>>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

/// Opens the store a URL names.
pub fn open(url: &str, opts: &StoreOptions) -> Result<Storage> {
    let err = |message: String| Error::StorageUrl {
        url: url.to_owned(),
        message,
    };
    let store: Arc<dyn ObjectStore> = match url.split_once("://") {
        Some(("memory", name)) => {
            let mut reg = memory_registry()
                .lock()
                .map_err(|_| err("registry poisoned".into()))?;
            reg.entry(name.to_owned())
                .or_insert_with(|| Arc::new(InMemory::new()))
                .clone()
        }
        Some(("s3", rest)) => {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(err("no bucket (s3://bucket/prefix)".into()));
            }
            let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
            for (k, v) in &opts.s3 {
                let key: AmazonS3ConfigKey =
                    k.parse().map_err(|e| err(format!("S3 option {k}: {e}")))?;
                b = b.with_config(key, v);
            }
            b = b.with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(5),
                    base: 2.0,
                },
                max_retries: opts.max_retries,
                retry_timeout: opts.retry_timeout,
            });
            let s3 = b.build().map_err(|e| err(e.to_string()))?;
            let prefix = prefix.trim_matches('/');
            if prefix.is_empty() {
                Arc::new(s3)
            } else {
                Arc::new(PrefixStore::new(s3, prefix))
            }
        }
        Some(("file", path)) => local(path).map_err(err)?,
        Some((scheme, _)) => {
            return Err(err(format!(
                "unsupported scheme {scheme:?} (use file://, s3:// or memory://)"
            )));
        }
        None => local(url).map_err(err)?,
    };
    Ok(Storage {
        url: url.to_owned(),
        store,
    })
}

fn local(path: &str) -> Result<Arc<dyn ObjectStore>, String> {
    std::fs::create_dir_all(path).map_err(|e| format!("cannot create directory: {e}"))?;
    let fs = LocalFileSystem::new_with_prefix(path).map_err(|e| e.to_string())?;
    Ok(Arc::new(fs.with_automatic_cleanup(true)))
}

/// The directory of a local-disk storage URL (`file:///p`, `/p`, `./p`); None for other stores.
pub fn local_root(url: &str) -> Option<std::path::PathBuf> {
    match url.split_once("://") {
        Some(("file", path)) => Some(path.into()),
        Some(_) => None,
        None => Some(url.into()),
    }
}

/// object_store's local disk writes an object to `<name>#<n>` and then links it into place; a
/// process killed meanwhile leaves that staging file behind. promlake's listings skip such files,
/// but engines that read every file under `blocks/` (pyarrow.dataset, DuckDB's `blocks/**`) fail
/// on them. This removes, under `<root>/blocks`, the staging files that `is_ours` claims (the
/// caller's own keys: nobody else writes them, so a leftover cannot be a write in progress) and
/// those of others older than `min_age` (a write takes milliseconds). Returns the removed files.
pub fn remove_staging_leftovers(
    root: &std::path::Path,
    now_ms: crate::clock::TimestampMs,
    min_age: Duration,
    is_ours: impl Fn(&crate::keys::BlockKey) -> bool,
) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut files = Vec::new();
    files_under(&root.join(crate::keys::BLOCKS), &mut files)?;
    let mut removed = Vec::new();
    for f in files {
        let Some(rel) = f.strip_prefix(root).ok().and_then(|p| p.to_str()) else {
            continue;
        };
        // object_store's staging name: `#` and digits only after it.
        let Some((name, suffix)) = rel.rsplit_once('#') else {
            continue;
        };
        if suffix.is_empty() || !suffix.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let ours = crate::keys::BlockKey::parse(&object_store::path::Path::from(name))
            .is_ok_and(|k| is_ours(&k));
        let old = std::fs::metadata(&f)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .is_some_and(|t| now_ms - t.as_millis() as i64 >= min_age.as_millis() as i64);
        if ours || old {
            std::fs::remove_file(&f)?;
            removed.push(f);
        }
    }
    Ok(removed)
}

/// Every file under `dir`, recursively (none when `dir` does not exist).
pub(crate) fn files_under(
    dir: &std::path::Path,
    out: &mut Vec<std::path::PathBuf>,
) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for e in entries {
        let e = e?;
        if e.file_type()?.is_dir() {
            files_under(&e.path(), out)?;
        } else {
            out.push(e.path());
        }
    }
    Ok(())
}
