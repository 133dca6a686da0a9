//! promlake's configuration: Prometheus' `prometheus.yml`, read as Prometheus reads it, plus
//! promlake's own sections (`storage`, `region`, `regions`).
//!
//! Every key is checked: an unknown key, a bad duration or regex, a relabel rule Prometheus would
//! refuse, all fail with a [`ConfigError`] that names the file, the key path and the line.
//! Prometheus' defaults apply where a key is absent; [`Config::load`] fills them in, so the rest
//! of promlake reads effective values only.

pub mod locate;
pub mod relabel;
pub mod route;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::duration::{ByteSize, PromDuration};
use crate::labels::Labels;
use locate::Seg;
pub use relabel::{Action, RelabelConfig, RelabelRegex};
pub use route::{Matcher, ReceiverConfig, RouteConfig, WebhookConfig};

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

/// The exposition formats a scrape may ask for, with Prometheus' names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum ScrapeProtocol {
    OpenMetricsText1_0_0,
    OpenMetricsText0_0_1,
    PrometheusText1_0_0,
    PrometheusText0_0_4,
    PrometheusProto,
}

impl ScrapeProtocol {
    /// The media type sent in `Accept` for this protocol.
    pub fn media_type(&self) -> &'static str {
        match self {
            ScrapeProtocol::OpenMetricsText1_0_0 => "application/openmetrics-text;version=1.0.0",
            ScrapeProtocol::OpenMetricsText0_0_1 => "application/openmetrics-text;version=0.0.1",
            ScrapeProtocol::PrometheusText1_0_0 => "text/plain;version=1.0.0",
            ScrapeProtocol::PrometheusText0_0_4 => "text/plain;version=0.0.4",
            ScrapeProtocol::PrometheusProto => {
                "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"
            }
        }
    }
}

/// One entry of `scrape_configs:`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScrapeConfig {
    /// The `job` label of every target of this job; unique across the file.
    pub job_name: String,
    /// Keep the target's own labels when they clash with target labels (default false).
    #[serde(default)]
    pub honor_labels: bool,
    /// Use the timestamps the target exposes (default true).
    #[serde(default = "yes")]
    pub honor_timestamps: bool,
    /// URL query parameters of every scrape.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, Vec<String>>,
    /// Default: `global.scrape_interval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrape_interval: Option<PromDuration>,
    /// Default: `global.scrape_timeout`, at most the job's interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrape_timeout: Option<PromDuration>,
    /// Default `/metrics`.
    #[serde(default = "default_metrics_path")]
    pub metrics_path: String,
    /// `http` (default) or `https`.
    #[serde(default = "default_scheme")]
    pub scheme: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrape_protocols: Option<Vec<ScrapeProtocol>>,
    /// Limits; absent means the global value; 0 means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_size_limit: Option<ByteSize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_name_length_limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_value_length_limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_limit: Option<u64>,
    /// Ask for gzip-compressed responses (default true).
    #[serde(default = "yes")]
    pub enable_compression: bool,
    /// Follow HTTP redirects (default true).
    #[serde(default = "yes")]
    pub follow_redirects: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_config: Option<TlsConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub static_configs: Vec<StaticConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub file_sd_configs: Vec<FileSdConfig>,
    /// Rules applied to each target's labels before it is scraped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relabel_configs: Vec<RelabelConfig>,
    /// Rules applied to each scraped sample's labels before it is stored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metric_relabel_configs: Vec<RelabelConfig>,
}

fn yes() -> bool {
    true
}

fn default_metrics_path() -> String {
    "/metrics".to_owned()
}

fn default_scheme() -> String {
    "http".to_owned()
}

impl ScrapeConfig {
    /// A job with Prometheus' defaults and no targets.
    pub fn new(job_name: &str) -> Self {
        serde_yaml::from_str(&format!("job_name: {job_name:?}")).expect("a minimal job parses")
    }

    /// The effective scrape interval (filled in by [`Config::load`]).
    pub fn interval(&self) -> PromDuration {
        self.scrape_interval.unwrap_or(DEFAULT_SCRAPE_INTERVAL)
    }

    /// The effective scrape timeout (filled in by [`Config::load`]).
    pub fn timeout(&self) -> PromDuration {
        self.scrape_timeout
            .unwrap_or_else(|| DEFAULT_SCRAPE_TIMEOUT.min(self.interval()))
    }

    pub fn body_size_limit(&self) -> u64 {
        self.body_size_limit.map(|b| b.0).unwrap_or(0)
    }

    pub fn sample_limit(&self) -> u64 {
        self.sample_limit.unwrap_or(0)
    }

    pub fn label_limit(&self) -> u64 {
        self.label_limit.unwrap_or(0)
    }

    pub fn label_name_length_limit(&self) -> u64 {
        self.label_name_length_limit.unwrap_or(0)
    }

    pub fn label_value_length_limit(&self) -> u64 {
        self.label_value_length_limit.unwrap_or(0)
    }

    pub fn target_limit(&self) -> u64 {
        self.target_limit.unwrap_or(0)
    }

    /// The exposition formats to ask for, most preferred first.
    pub fn protocols(&self) -> Vec<ScrapeProtocol> {
        self.scrape_protocols.clone().unwrap_or_else(|| {
            vec![
                ScrapeProtocol::OpenMetricsText1_0_0,
                ScrapeProtocol::OpenMetricsText0_0_1,
                ScrapeProtocol::PrometheusText0_0_4,
            ]
        })
    }
}

/// `basic_auth:`
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<String>,
}

/// `authorization:` (an `Authorization: <type> <credentials>` header).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    #[serde(default = "default_auth_type", rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<String>,
}

fn default_auth_type() -> String {
    "Bearer".to_owned()
}

/// `tls_config:`
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// `static_configs:` entry: targets and the labels they share.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StaticConfig {
    #[serde(default)]
    pub targets: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// `file_sd_configs:` entry: JSON or YAML files of target groups, re-read when they change.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileSdConfig {
    /// Paths or globs ending in `.json`, `.yml` or `.yaml`, relative to the config file.
    pub files: Vec<String>,
    /// How often the files are re-read at the latest (default 5m).
    #[serde(default = "default_file_sd_refresh")]
    pub refresh_interval: PromDuration,
}

fn default_file_sd_refresh() -> PromDuration {
    PromDuration::from_secs(300)
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
    #[serde(default = "default_scheme")]
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
    /// Reads, parses, fills in defaults and validates a config file.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: None,
            key: None,
            message: format!("cannot read config: {e}"),
        })?;
        let mut cfg = Self::parse_named(&text, &path.display().to_string())?;
        cfg.base_dir = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .map(Path::to_path_buf);
        Ok(cfg)
    }

    /// The config of a process configured by its environment (a Lambda function, a container):
    ///
    /// - `PROMLAKE_CONFIG`: the YAML itself, or
    /// - `PROMLAKE_CONFIG_URL`: where to read it: `s3://bucket/key`, `file:///path` or a path;
    /// - `PROMLAKE_STORAGE` (optional): the storage URL, overriding `storage.url`;
    /// - `PROMLAKE_REGION` (optional): the region, overriding `region`.
    ///
    /// `env` is the environment to read (a closure, so tests need not touch the process's).
    pub async fn from_env(
        env: impl Fn(&str) -> Option<String>,
        store_options: &crate::store::StoreOptions,
    ) -> Result<Config, ConfigError> {
        let err = |file: &str, message: String| ConfigError {
            file: file.to_owned(),
            line: None,
            key: None,
            message,
        };
        let mut cfg = match (env("PROMLAKE_CONFIG"), env("PROMLAKE_CONFIG_URL")) {
            (Some(text), _) => Self::parse_named(&text, "$PROMLAKE_CONFIG")?,
            (None, Some(url)) => {
                let text = read_url(&url, store_options)
                    .await
                    .map_err(|m| err(&url, m))?;
                let mut c = Self::parse_named(&text, &url)?;
                if url.starts_with("s3://") {
                    c.base_url = url.rfind('/').map(|i| url[..=i].to_owned());
                }
                if !url.contains("://") || url.starts_with("file://") {
                    let path = Path::new(url.trim_start_matches("file://"));
                    c.base_dir = path.parent().map(Path::to_path_buf);
                }
                c
            }
            (None, None) => {
                return Err(err(
                    "environment",
                    "set PROMLAKE_CONFIG (the YAML) or PROMLAKE_CONFIG_URL (s3://bucket/key or a path)".into(),
                ));
            }
        };
        if let Some(s) = env("PROMLAKE_STORAGE") {
            check_storage_url(&s).map_err(|m| err("$PROMLAKE_STORAGE", m))?;
            cfg.storage.url = s;
        }
        if let Some(r) = env("PROMLAKE_REGION") {
            check_region_name(&r).map_err(|m| err("$PROMLAKE_REGION", m))?;
            cfg.region = Some(r);
        }
        Ok(cfg)
    }

    /// Parses config text (no file behind it; relative paths resolve against the working
    /// directory).
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        Self::parse_named(text, "<config>")
    }

    fn parse_named(text: &str, file: &str) -> Result<Config, ConfigError> {
        let err = |line: Option<usize>, key: Option<String>, message: String| ConfigError {
            file: file.to_owned(),
            line,
            key,
            message,
        };
        if let Some(e) = detect_scrape_config_typo(text) {
            return Err(err(e.0, None, e.1));
        }
        let mut cfg: Config = if text.trim().is_empty() {
            Config::default()
        } else {
            serde_yaml::from_str(text).map_err(|e| {
                let line = e.location().map(|l| l.line());
                let msg = e.to_string();
                // serde_yaml appends " at line L column C"; the line is reported separately.
                let msg = match msg.rfind(" at line ") {
                    Some(i) => msg[..i].to_owned(),
                    None => msg,
                };
                err(line.map(|l| refine_line(text, l, &msg)), None, msg)
            })?
        };
        cfg.resolve_and_validate().map_err(|(path, message)| {
            err(
                locate::line_of(text, &path),
                Some(locate::render(&path)),
                message,
            )
        })?;
        Ok(cfg)
    }

    /// Fills in Prometheus' defaults and checks what serde cannot: relabel rules, timeouts,
    /// unique job names, target addresses, storage URLs.
    fn resolve_and_validate(&mut self) -> Result<(), (Vec<Seg>, String)> {
        let g = &self.global;
        if let Some(t) = g.scrape_timeout
            && t > g.scrape_interval
        {
            return Err((
                vec!["global".into(), "scrape_timeout".into()],
                "global scrape timeout greater than scrape interval".into(),
            ));
        }
        for (name, value) in &g.external_labels {
            if name.is_empty() || name == crate::labels::METRIC_NAME {
                return Err((
                    vec![
                        "global".into(),
                        "external_labels".into(),
                        name.as_str().into(),
                    ],
                    format!("{name:?} is not a valid external label name"),
                ));
            }
            if value.is_empty() {
                return Err((
                    vec![
                        "global".into(),
                        "external_labels".into(),
                        name.as_str().into(),
                    ],
                    format!("external label {name:?} has an empty value"),
                ));
            }
        }
        let global = self.global.clone();
        let mut seen = BTreeMap::new();
        for (i, job) in self.scrape_configs.iter_mut().enumerate() {
            let at = |rest: &[&str]| {
                let mut p: Vec<Seg> = vec!["scrape_configs".into(), i.into()];
                p.extend(rest.iter().map(|s| Seg::from(*s)));
                p
            };
            if job.job_name.is_empty() {
                return Err((at(&["job_name"]), "job_name is empty".into()));
            }
            if let Some(prev) = seen.insert(job.job_name.clone(), i) {
                return Err((
                    at(&["job_name"]),
                    format!(
                        "found multiple scrape configs with job name {:?} (also scrape_configs[{prev}])",
                        job.job_name
                    ),
                ));
            }
            let interval = *job.scrape_interval.get_or_insert(global.scrape_interval);
            if interval.is_zero() {
                return Err((
                    at(&["scrape_interval"]),
                    "scrape_interval must be above 0".into(),
                ));
            }
            match job.scrape_timeout {
                Some(t) if t > interval => {
                    return Err((
                        at(&["scrape_timeout"]),
                        format!(
                            "scrape timeout greater than scrape interval for scrape config with job name {:?}",
                            job.job_name
                        ),
                    ));
                }
                Some(_) => {}
                None => job.scrape_timeout = Some(global.scrape_timeout().min(interval)),
            }
            if job.scheme != "http" && job.scheme != "https" {
                return Err((
                    at(&["scheme"]),
                    format!("invalid scheme {:?}: must be http or https", job.scheme),
                ));
            }
            if !job.metrics_path.starts_with('/') {
                return Err((
                    at(&["metrics_path"]),
                    format!("metrics_path {:?} must start with '/'", job.metrics_path),
                ));
            }
            job.body_size_limit.get_or_insert(global.body_size_limit);
            job.sample_limit.get_or_insert(global.sample_limit);
            job.label_limit.get_or_insert(global.label_limit);
            job.label_name_length_limit
                .get_or_insert(global.label_name_length_limit);
            job.label_value_length_limit
                .get_or_insert(global.label_value_length_limit);
            job.target_limit.get_or_insert(global.target_limit);
            if job.scrape_protocols.is_none() {
                job.scrape_protocols = global.scrape_protocols.clone();
            }
            if let Some(p) = &job.scrape_protocols
                && p.is_empty()
            {
                return Err((
                    at(&["scrape_protocols"]),
                    "scrape_protocols cannot be empty".into(),
                ));
            }
            if let Some(b) = &job.basic_auth
                && b.password.is_some()
                && b.password_file.is_some()
            {
                return Err((
                    at(&["basic_auth"]),
                    "at most one of basic_auth password & password_file must be configured".into(),
                ));
            }
            if job.basic_auth.is_some() && job.authorization.is_some() {
                return Err((
                    at(&["authorization"]),
                    "at most one of basic_auth and authorization must be configured".into(),
                ));
            }
            for (j, sc) in job.static_configs.iter().enumerate() {
                for (k, t) in sc.targets.iter().enumerate() {
                    if let Err(m) = check_target_address(t) {
                        let mut p = at(&["static_configs"]);
                        p.extend([j.into(), "targets".into(), k.into()]);
                        return Err((p, m));
                    }
                }
                for name in sc.labels.keys() {
                    if name.is_empty() {
                        let mut p = at(&["static_configs"]);
                        p.extend([j.into(), "labels".into()]);
                        return Err((p, "empty label name".into()));
                    }
                }
            }
            for (j, fsd) in job.file_sd_configs.iter().enumerate() {
                for (k, f) in fsd.files.iter().enumerate() {
                    if !valid_file_sd_name(f) {
                        let mut p = at(&["file_sd_configs"]);
                        p.extend([j.into(), "files".into(), k.into()]);
                        return Err((
                            p,
                            format!(
                                "path name {f:?} is not valid for file discovery (must end in .json, .yml or .yaml)"
                            ),
                        ));
                    }
                }
            }
            for (key, rules) in [
                ("relabel_configs", &job.relabel_configs),
                ("metric_relabel_configs", &job.metric_relabel_configs),
            ] {
                validate_relabel(rules, at(&[key]))?;
            }
        }
        validate_relabel(
            &self.alerting.alert_relabel_configs,
            vec!["alerting".into(), "alert_relabel_configs".into()],
        )?;
        for (i, am) in self.alerting.alertmanagers.iter().enumerate() {
            let p = vec!["alerting".into(), "alertmanagers".into(), i.into()];
            if am.api_version != "v2" {
                let mut p = p.clone();
                p.push("api_version".into());
                return Err((
                    p,
                    format!(
                        "unsupported Alertmanager API version {:?}: promlake speaks v2",
                        am.api_version
                    ),
                ));
            }
            let mut rp = p.clone();
            rp.push("relabel_configs".into());
            validate_relabel(&am.relabel_configs, rp)?;
        }
        self.validate_routing()?;
        check_storage_url(&self.storage.url).map_err(|m| (vec!["storage".into()], m))?;
        if let Some(r) = &self.region {
            check_region_name(r).map_err(|m| (vec!["region".into()], m))?;
        }
        let mut names = BTreeMap::new();
        for (i, r) in self.regions.iter().enumerate() {
            let p = |k: &str| vec!["regions".into(), i.into(), k.into()];
            check_region_name(&r.name).map_err(|m| (p("name"), m))?;
            if names.insert(r.name.clone(), i).is_some() {
                return Err((p("name"), format!("region {:?} is listed twice", r.name)));
            }
            check_storage_url(&r.storage.url).map_err(|m| (p("storage"), m))?;
        }
        for (key, v) in [
            ("remote_write", &self.remote_write),
            ("remote_read", &self.remote_read),
            ("tracing", &self.tracing),
        ] {
            if v.is_some() {
                self.warnings.push(format!(
                    "{key} is a Prometheus setting that promlake does not use; it is ignored"
                ));
            }
        }
        Ok(())
    }

    fn validate_routing(&self) -> Result<(), (Vec<Seg>, String)> {
        let a = &self.alerting;
        let mut names = BTreeMap::new();
        for (i, r) in a.receivers.iter().enumerate() {
            let p = vec![
                "alerting".into(),
                "receivers".into(),
                i.into(),
                "name".into(),
            ];
            if r.name.is_empty() {
                return Err((p, "receiver name is empty".into()));
            }
            if names.insert(r.name.clone(), i).is_some() {
                return Err((p, format!("receiver {:?} is defined twice", r.name)));
            }
            for (j, w) in r.webhook_configs.iter().enumerate() {
                if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
                    return Err((
                        vec![
                            "alerting".into(),
                            "receivers".into(),
                            i.into(),
                            "webhook_configs".into(),
                            j.into(),
                            "url".into(),
                        ],
                        format!("webhook url {:?} must be http:// or https://", w.url),
                    ));
                }
            }
        }
        let Some(root) = &a.route else {
            if !a.receivers.is_empty() {
                return Err((
                    vec!["alerting".into(), "route".into()],
                    "receivers are configured but there is no route to them".into(),
                ));
            }
            return Ok(());
        };
        if root.receiver.is_none() {
            return Err((
                vec!["alerting".into(), "route".into(), "receiver".into()],
                "the root route must have a receiver".into(),
            ));
        }
        if !root.matchers.is_empty() || !root.match_eq.is_empty() || !root.match_re.is_empty() {
            return Err((
                vec!["alerting".into(), "route".into(), "matchers".into()],
                "the root route must not have matchers".into(),
            ));
        }
        fn walk(
            r: &RouteConfig,
            path: Vec<Seg>,
            names: &BTreeMap<String, usize>,
        ) -> Result<(), (Vec<Seg>, String)> {
            if let Some(rec) = &r.receiver
                && !names.contains_key(rec)
            {
                let mut p = path.clone();
                p.push("receiver".into());
                return Err((p, format!("undefined receiver {rec:?} used in route")));
            }
            if let Err(m) = r.all_matchers() {
                let mut p = path.clone();
                p.push("match_re".into());
                return Err((p, m));
            }
            for (i, c) in r.routes.iter().enumerate() {
                let mut p = path.clone();
                p.extend(["routes".into(), i.into()]);
                walk(c, p, names)?;
            }
            Ok(())
        }
        walk(root, vec!["alerting".into(), "route".into()], &names)
    }

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

/// The text of a config object: `s3://bucket/key` through object_store, anything else from disk.
pub async fn read_url(url: &str, opts: &crate::store::StoreOptions) -> Result<String, String> {
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, key) = rest.split_once('/').ok_or_else(|| {
            "an s3:// config URL needs a key: s3://bucket/path/promlake.yml".to_owned()
        })?;
        let storage =
            crate::store::open(&format!("s3://{bucket}"), opts).map_err(|e| e.to_string())?;
        let path = object_store::path::Path::from(key);
        let got = object_store::ObjectStoreExt::get(storage.store.as_ref(), &path)
            .await
            .map_err(|e| format!("cannot read the config object: {e}"))?;
        let bytes = got
            .bytes()
            .await
            .map_err(|e| format!("cannot read the config object: {e}"))?;
        return String::from_utf8(bytes.to_vec())
            .map_err(|_| "the config object is not UTF-8".into());
    }
    let path = url.trim_start_matches("file://");
    std::fs::read_to_string(path).map_err(|e| format!("cannot read config: {e}"))
}

fn validate_relabel(rules: &[RelabelConfig], at: Vec<Seg>) -> Result<(), (Vec<Seg>, String)> {
    for (i, r) in rules.iter().enumerate() {
        if let Err(e) = r.validate() {
            let mut p = at.clone();
            p.extend([i.into(), e.key.into()]);
            return Err((p, e.message));
        }
    }
    Ok(())
}

/// Prometheus' `CheckTargetAddress`: an address is `host:port`, not a URL.
pub fn check_target_address(addr: &str) -> Result<(), String> {
    if addr.contains('/') {
        return Err(format!(
            "{addr:?} is not a valid hostname (a target is host:port; put the path in metrics_path)"
        ));
    }
    if addr.is_empty() {
        return Err("empty target address".into());
    }
    Ok(())
}

fn valid_file_sd_name(f: &str) -> bool {
    let lower = f.to_ascii_lowercase();
    let ext_ok = [".json", ".yml", ".yaml"]
        .iter()
        .any(|e| lower.ends_with(e));
    // At most one `*`, and only in the last path element.
    let stars = f.matches('*').count();
    let star_ok = stars == 0 || (stars == 1 && !f[f.find('*').unwrap_or(0)..].contains('/'));
    ext_ok && star_ok
}

fn check_region_name(r: &str) -> Result<(), String> {
    if r.is_empty()
        || !r
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(format!(
            "region {r:?} must be non-empty and use only letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(())
}

fn check_storage_url(url: &str) -> Result<(), String> {
    if url.is_empty() {
        return Err("storage URL is empty".into());
    }
    match url.split_once("://") {
        None => Ok(()), // a plain local path
        Some(("file" | "memory", _)) => Ok(()),
        Some(("s3", rest)) => {
            if rest.is_empty() || rest.starts_with('/') {
                Err(format!(
                    "storage URL {url:?} names no bucket (s3://bucket/prefix)"
                ))
            } else {
                Ok(())
            }
        }
        Some((scheme, _)) => Err(format!(
            "unsupported storage URL scheme {scheme:?} in {url:?} (use file://, s3:// or memory://)"
        )),
    }
}

/// serde_yaml places errors raised while reading a scalar (a duration, a regex) at the start of
/// the enclosing mapping. Those messages quote the bad value: the line of the value is the first
/// line from there on that contains it.
fn refine_line(text: &str, line: usize, msg: &str) -> usize {
    let Some(start) = msg.find('"') else {
        return line;
    };
    let Some(len) = msg[start + 1..].find('"') else {
        return line;
    };
    let value = &msg[start + 1..start + 1 + len];
    if value.is_empty() {
        return line;
    }
    text.lines()
        .enumerate()
        .skip(line.saturating_sub(1))
        .take(200)
        .find(|(_, l)| l.contains(value))
        .map(|(i, _)| i + 1)
        .unwrap_or(line)
}

/// The seed writes `- scrape_config:` as a list item at the top level; Prometheus' key is
/// `scrape_configs:`. Say so instead of a generic type error.
fn detect_scrape_config_typo(text: &str) -> Option<(Option<usize>, String)> {
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        let indent = line.len() - t.len();
        if indent == 0 && (t.starts_with("- scrape_config:") || t.starts_with("scrape_config:")) {
            return Some((
                Some(i + 1),
                "`scrape_config:` is not a Prometheus key: write `scrape_configs:` at the top \
                 level, not as a list item (`- scrape_config:`), and list the jobs under it"
                    .into(),
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests;
