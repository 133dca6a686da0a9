//! Where a config comes from — a file, the environment, a config object in S3 — and how its text
//! becomes a [`Config`]: parsed, located errors, then [`Config::resolve_and_validate`].

use std::path::Path;

use super::validate::{check_region_name, check_storage_url};
use super::*;

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
