//! promlake's configuration: Prometheus' `prometheus.yml`, read as Prometheus reads it, plus
//! promlake's own sections (`storage`, `region`, `regions`).
//!
//! Every key is checked: an unknown key, a bad duration or regex, a relabel rule Prometheus would
//! refuse, all fail with a [`ConfigError`] that names the file, the key path and the line.
//! Prometheus' defaults apply where a key is absent; [`Config::load`] fills them in, so the rest
//! of promlake reads effective values only.
//!
//! This file holds the top-level sections; `scrape` the scrape jobs, `relabel` and `route` their
//! own sections, `load` where a config comes from and how its text is parsed, `validate` what
//! serde cannot check, `locate` how an error finds its line.

mod load;
pub mod locate;
pub mod relabel;
pub mod route;
mod scrape;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::duration::{ByteSize, PromDuration};
use crate::labels::Labels;
pub use load::read_url;
use locate::Seg;
pub use relabel::{Action, RelabelConfig, RelabelRegex};
pub use route::{Matcher, ReceiverConfig, RouteConfig, WebhookConfig};
pub use scrape::*;
pub use validate::check_target_address;

/// Prometheus' default `scrape_interval`.
pub const DEFAULT_SCRAPE_INTERVAL: PromDuration = PromDuration::from_secs(60);
/// Prometheus' default `scrape_timeout`.
pub const DEFAULT_SCRAPE_TIMEOUT: PromDuration = PromDuration::from_secs(10);
/// Prometheus' default `evaluation_interval`.
pub const DEFAULT_EVALUATION_INTERVAL: PromDuration = PromDuration::from_secs(60);
/// How often a worker writes a block unless configured otherwise.
pub const DEFAULT_FLUSH_INTERVAL: PromDuration = PromDuration::from_secs(60);
/// Storage used when a config names none: `./data` on local disk.
pub const DEFAULT_STORAGE_URL: &str = "./data";
/// Region used when neither `region` nor an external `region` label names one.
pub const DEFAULT_REGION: &str = "local";

pub use crate::error::ConfigError;

/// The whole configuration file.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Defaults for every scrape job and the external labels of this deployment.
    #[serde(default)]
    pub global: GlobalConfig,
    /// The scrape jobs.
    #[serde(default)]
    pub scrape_configs: Vec<ScrapeConfig>,
    /// Rule files (globs), relative to the config file.
    #[serde(default)]
    pub rule_files: Vec<String>,
    /// Where alerts go.
    #[serde(default)]
    pub alerting: AlertingConfig,
    /// promlake: the object storage that blocks are written to (default `./data`, relative to
    /// the working directory).
    #[serde(default)]
    pub storage: StorageConfig,
    /// promlake: this deployment's region (default: the `region` external label, else `local`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// promlake: every region the query service reads (default: this region's storage only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<RegionConfig>,
    /// promlake: the query service.
    #[serde(default)]
    pub query: QueryConfig,

    /// Prometheus keys that promlake accepts but does not use; a warning says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_write: Option<serde_yaml::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_read: Option<serde_yaml::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<serde_yaml::Value>,

    /// Directory of the config file; relative paths in the config are resolved against it.
    #[serde(skip)]
    pub base_dir: Option<PathBuf>,
    /// When the config was read from object storage (`s3://bucket/prefix/promlake.yml`), the URL
    /// of its folder (`s3://bucket/prefix/`): rule files are read from there.
    #[serde(skip)]
    pub base_url: Option<String>,
    /// Things that are accepted but worth telling the user.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// `global:`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalConfig {
    /// How often targets are scraped (default 1m).
    #[serde(default = "default_scrape_interval")]
    pub scrape_interval: PromDuration,
    /// How long a scrape may take (default 10s, at most `scrape_interval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrape_timeout: Option<PromDuration>,
    /// How often rules are evaluated (default 1m).
    #[serde(default = "default_evaluation_interval")]
    pub evaluation_interval: PromDuration,
    /// Labels added to series and alerts when they leave this deployment (federation, alerts).
    #[serde(default)]
    pub external_labels: BTreeMap<String, String>,
    /// Default per-job limits; 0 means no limit.
    #[serde(default)]
    pub body_size_limit: ByteSize,
    #[serde(default)]
    pub sample_limit: u64,
    #[serde(default)]
    pub label_limit: u64,
    #[serde(default)]
    pub label_name_length_limit: u64,
    #[serde(default)]
    pub label_value_length_limit: u64,
    #[serde(default)]
    pub target_limit: u64,
    /// Preferred exposition formats, in order (Prometheus' names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrape_protocols: Option<Vec<ScrapeProtocol>>,
    /// Accepted for compatibility; promlake does not write a query log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_log_file: Option<String>,
}

fn default_scrape_interval() -> PromDuration {
    DEFAULT_SCRAPE_INTERVAL
}

fn default_evaluation_interval() -> PromDuration {
    DEFAULT_EVALUATION_INTERVAL
}

impl Default for GlobalConfig {
    fn default() -> Self {
        Self {
            scrape_interval: DEFAULT_SCRAPE_INTERVAL,
            scrape_timeout: None,
            evaluation_interval: DEFAULT_EVALUATION_INTERVAL,
            external_labels: BTreeMap::new(),
            body_size_limit: ByteSize(0),
            sample_limit: 0,
            label_limit: 0,
            label_name_length_limit: 0,
            label_value_length_limit: 0,
            target_limit: 0,
            scrape_protocols: None,
            query_log_file: None,
        }
    }
}

impl GlobalConfig {
    /// The effective global scrape timeout.
    pub fn scrape_timeout(&self) -> PromDuration {
        self.scrape_timeout
            .unwrap_or_else(|| DEFAULT_SCRAPE_TIMEOUT.min(self.scrape_interval))
    }

    /// The external labels as a label set.
    pub fn external_labels(&self) -> Labels {
        Labels::from_pairs(
            self.external_labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        )
    }
}

/// `alerting:`
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertingConfig {
    /// Relabeling applied to alerts before they are sent (Prometheus).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alert_relabel_configs: Vec<RelabelConfig>,
    /// Alertmanagers that receive every alert (Prometheus; API v2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alertmanagers: Vec<AlertmanagerConfig>,
    /// promlake: Alertmanager's routing tree, for promlake's own receivers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<RouteConfig>,
    /// promlake: Alertmanager's receivers (webhooks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub receivers: Vec<ReceiverConfig>,
    /// promlake: the URL alerts link back to (`generatorURL`, the webhook's `externalURL`),
    /// as Prometheus' `--web.external-url` (default `http://<hostname>:9090`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_url: Option<String>,
}

/// One `alerting.alertmanagers` entry (Alertmanager's API v2).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    #[serde(default = "scrape::default_scheme")]
    pub scheme: String,
    #[serde(default = "default_path_prefix")]
    pub path_prefix: String,
    #[serde(default = "default_am_timeout")]
    pub timeout: PromDuration,
    #[serde(default = "default_api_version")]
    pub api_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub static_configs: Vec<StaticConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub file_sd_configs: Vec<FileSdConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relabel_configs: Vec<RelabelConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_config: Option<TlsConfig>,
}

fn default_path_prefix() -> String {
    "/".to_owned()
}

fn default_am_timeout() -> PromDuration {
    PromDuration::from_secs(10)
}

fn default_api_version() -> String {
    "v2".to_owned()
}

/// `storage:` — where blocks live. Written either as a URL string or as a mapping.
#[derive(Clone, Debug, Serialize)]
pub struct StorageConfig {
    /// `file:///path` or a plain path, `s3://bucket/prefix`, `memory://`.
    pub url: String,
    /// How often a scrape worker writes a block (default 1m).
    pub flush_interval: PromDuration,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            url: DEFAULT_STORAGE_URL.to_owned(),
            flush_interval: DEFAULT_FLUSH_INTERVAL,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StorageMapping {
    /// promlake's storage URL.
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    flush_interval: Option<PromDuration>,
    /// Prometheus' own `storage:` keys, accepted for compatibility and not used.
    #[serde(default)]
    tsdb: Option<serde_yaml::Value>,
    #[serde(default)]
    exemplars: Option<serde_yaml::Value>,
}

impl<'de> Deserialize<'de> for StorageConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Url(String),
            Map(StorageMapping),
        }
        let raw = Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "expected a storage URL (file:///path, s3://bucket/prefix, memory://) or a \
                 mapping with keys url, flush_interval",
            )
        })?;
        Ok(match raw {
            Raw::Url(url) => StorageConfig {
                url,
                ..Default::default()
            },
            Raw::Map(m) => {
                let _ = (m.tsdb, m.exemplars);
                StorageConfig {
                    url: m.url.unwrap_or_else(|| DEFAULT_STORAGE_URL.to_owned()),
                    flush_interval: m.flush_interval.unwrap_or(DEFAULT_FLUSH_INTERVAL),
                }
            }
        })
    }
}

/// `query:` — the query service.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueryConfig {
    /// Longest a query may run before it is cancelled (default 2m).
    #[serde(default = "default_query_timeout")]
    pub timeout: PromDuration,
    /// Memory a query may hold before it fails (default 2GiB; 0: no limit).
    #[serde(default = "default_query_memory")]
    pub memory_limit: ByteSize,
    /// Width of a scrape slot for HA replica deduplication (default: `global.scrape_interval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_interval: Option<PromDuration>,
    /// How far back `/federate` looks for a series' latest sample (default 5m, as Prometheus'
    /// `--query.lookback-delta`).
    #[serde(default = "default_lookback")]
    pub lookback_delta: PromDuration,
    /// Memory all running queries may hold together (default 4GiB; 0: no limit). A query that
    /// would go beyond it fails with 503 and `Retry-After`.
    #[serde(default = "default_server_memory")]
    pub server_memory_limit: ByteSize,
    /// Queries that run at once (default 20, as Prometheus' `--query.max-concurrency`); the
    /// others wait for a slot within their `timeout`, then fail with 503 and `Retry-After`.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
}

fn default_server_memory() -> ByteSize {
    ByteSize(4 << 30)
}

fn default_max_concurrency() -> usize {
    20
}

fn default_query_timeout() -> PromDuration {
    PromDuration::from_secs(120)
}

fn default_query_memory() -> ByteSize {
    ByteSize(2 << 30)
}

fn default_lookback() -> PromDuration {
    PromDuration::from_secs(300)
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            timeout: default_query_timeout(),
            memory_limit: default_query_memory(),
            dedup_interval: None,
            lookback_delta: default_lookback(),
            server_memory_limit: default_server_memory(),
            max_concurrency: default_max_concurrency(),
        }
    }
}

/// One region the query service reads: a name and the storage its workers write to.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RegionConfig {
    pub name: String,
    pub storage: StorageConfig,
}

impl Config {
    /// This deployment's region: `region`, else the `region` external label, else `local`.
    pub fn region(&self) -> &str {
        self.region
            .as_deref()
            .or_else(|| {
                self.global
                    .external_labels
                    .get("region")
                    .map(String::as_str)
            })
            .unwrap_or(DEFAULT_REGION)
    }

    /// The width of a scrape slot for replica deduplication.
    pub fn dedup_interval(&self) -> PromDuration {
        self.query
            .dedup_interval
            .unwrap_or(self.global.scrape_interval)
    }

    /// The regions the query service reads: `regions`, or this region on `storage`.
    pub fn query_regions(&self) -> Vec<RegionConfig> {
        if self.regions.is_empty() {
            vec![RegionConfig {
                name: self.region().to_owned(),
                storage: self.storage.clone(),
            }]
        } else {
            self.regions.clone()
        }
    }

    /// Resolves a path written in the config against the config file's directory.
    pub fn resolve_path(&self, p: &str) -> PathBuf {
        let path = Path::new(p);
        match &self.base_dir {
            Some(base) if path.is_relative() => base.join(path),
            _ => path.to_path_buf(),
        }
    }

    /// The storage URL as written. A relative local path is relative to the working directory,
    /// like Prometheus' `--storage.tsdb.path`.
    pub fn storage_url(&self, storage: &StorageConfig) -> String {
        storage.url.clone()
    }
}

#[cfg(test)]
mod tests;
