//! `scrape_configs:` entries and what they carry: protocols, HTTP client settings, static and
//! file-based target lists.

use serde::{Deserialize, Serialize};

use super::*;

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

pub(super) fn default_scheme() -> String {
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
