//! Target discovery: `static_configs` and `file_sd_configs` (JSON or YAML files of target groups,
//! re-read when they change, as Prometheus' file discovery does).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use promlake_core::config::{Config, FileSdConfig, ScrapeConfig, check_target_address};
use serde::Deserialize;

/// A group of targets that share labels, from one source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetGroup {
    /// Where the group came from (`static_configs[0]`, a file path).
    pub source: String,
    /// `host:port` addresses.
    pub targets: Vec<String>,
    /// Labels of every target in the group (`__meta_filepath` for file groups).
    pub labels: BTreeMap<String, String>,
}

/// Why a discovery source could not be read.
#[derive(Debug, Clone, thiserror::Error)]
#[error("file_sd {path}: {message}")]
pub struct DiscoveryError {
    pub path: String,
    pub message: String,
}

/// The groups of a job's `static_configs`.
pub fn static_groups(job: &ScrapeConfig) -> Vec<TargetGroup> {
    job.static_configs
        .iter()
        .enumerate()
        .map(|(i, sc)| TargetGroup {
            source: format!("static_configs[{i}]"),
            targets: sc.targets.clone(),
            labels: sc.labels.clone(),
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileGroup {
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// Reads the files of one `file_sd_configs` entry, keeping what it read and re-reading a file
/// only when its modification time changes. A file that stops parsing keeps its last good
/// groups (Prometheus does the same) and is reported.
#[derive(Debug)]
pub struct FileSd {
    patterns: Vec<PathBuf>,
    cache: HashMap<PathBuf, (Option<SystemTime>, Vec<TargetGroup>)>,
}

impl FileSd {
    pub fn new(cfg: &FileSdConfig, config: &Config) -> Self {
        Self {
            patterns: cfg.files.iter().map(|f| config.resolve_path(f)).collect(),
            cache: HashMap::new(),
        }
    }

    /// The current groups of every matching file, and the problems met on the way.
    pub fn refresh(&mut self) -> (Vec<TargetGroup>, Vec<DiscoveryError>) {
        let mut errors = Vec::new();
        let mut seen = Vec::new();
        for pattern in &self.patterns {
            let pat = pattern.display().to_string();
            match glob::glob(&pat) {
                Ok(paths) => seen.extend(paths.filter_map(Result::ok)),
                Err(e) => errors.push(DiscoveryError {
                    path: pat,
                    message: e.to_string(),
                }),
            }
        }
        seen.sort();
        seen.dedup();
        self.cache.retain(|p, _| seen.contains(p));
        let mut groups = Vec::new();
        for path in seen {
            let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
            let fresh = self
                .cache
                .get(&path)
                .is_some_and(|(m, _)| *m == mtime && m.is_some());
            if !fresh {
                match read_file(&path) {
                    Ok(g) => {
                        self.cache.insert(path.clone(), (mtime, g));
                    }
                    Err(message) => errors.push(DiscoveryError {
                        path: path.display().to_string(),
                        message,
                    }),
                }
            }
            if let Some((_, g)) = self.cache.get(&path) {
                groups.extend(g.iter().cloned());
            }
        }
        (groups, errors)
    }
}

fn read_file(path: &Path) -> Result<Vec<TargetGroup>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let raw: Vec<FileGroup> = if is_json {
        serde_json::from_str(&text).map_err(|e| e.to_string())?
    } else if text.trim().is_empty() {
        Vec::new()
    } else {
        serde_yaml::from_str(&text).map_err(|e| e.to_string())?
    };
    let file = path.display().to_string();
    raw.into_iter()
        .enumerate()
        .map(|(i, g)| {
            for t in &g.targets {
                check_target_address(t).map_err(|m| format!("group {i}: {m}"))?;
            }
            if let Some(bad) = g.labels.keys().find(|k| k.is_empty()) {
                return Err(format!("group {i}: invalid label name {bad:?}"));
            }
            let mut labels = g.labels;
            labels.insert("__meta_filepath".into(), file.clone());
            Ok(TargetGroup {
                source: format!("{file}:{i}"),
                targets: g.targets,
                labels,
            })
        })
        .collect()
}

/// Discovery for every job of a config: static groups plus file_sd readers.
#[derive(Debug)]
pub struct Discovery {
    jobs: Vec<(String, Vec<TargetGroup>, Vec<FileSd>)>,
}

impl Discovery {
    pub fn new(config: &Config) -> Self {
        Self {
            jobs: config
                .scrape_configs
                .iter()
                .map(|j| {
                    (
                        j.job_name.clone(),
                        static_groups(j),
                        j.file_sd_configs
                            .iter()
                            .map(|f| FileSd::new(f, config))
                            .collect(),
                    )
                })
                .collect(),
        }
    }

    /// The groups of each job (in config order), re-reading changed files.
    pub fn refresh(&mut self) -> (Vec<(String, Vec<TargetGroup>)>, Vec<DiscoveryError>) {
        let mut errors = Vec::new();
        let out = self
            .jobs
            .iter_mut()
            .map(|(name, statics, files)| {
                let mut groups = statics.clone();
                for f in files.iter_mut() {
                    let (g, e) = f.refresh();
                    groups.extend(g);
                    errors.extend(e);
                }
                (name.clone(), groups)
            })
            .collect();
        (out, errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_sd_reads_json_and_yaml_and_rereads_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let cfg_path = dir.path().join("prometheus.yml");
        std::fs::write(
            &cfg_path,
            "scrape_configs:\n  - job_name: n\n    file_sd_configs:\n      - files: ['targets/*.json', 'targets/*.yml']\n",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("targets")).unwrap();
        std::fs::write(
            dir.path().join("targets/a.json"),
            r#"[{"targets": ["h1:9100", "h2:9100"], "labels": {"env": "prod"}}]"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("targets/b.yml"), "- targets: [h3:9100]\n").unwrap();
        let config = Config::load(&cfg_path).unwrap();
        let mut d = Discovery::new(&config);
        let (jobs, errors) = d.refresh();
        assert!(errors.is_empty(), "{errors:?}");
        let groups = &jobs[0].1;
        let targets: Vec<_> = groups.iter().flat_map(|g| g.targets.clone()).collect();
        assert_eq!(targets, vec!["h1:9100", "h2:9100", "h3:9100"]);
        assert_eq!(groups[0].labels["env"], "prod");
        assert!(groups[0].labels["__meta_filepath"].ends_with("a.json"));

        // A change is picked up (a new mtime), a broken file keeps its last good groups.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(dir.path().join("targets/b.yml"), "- targets: [h4:9100]\n").unwrap();
        let f = std::fs::File::options()
            .append(true)
            .open(dir.path().join("targets/b.yml"))
            .unwrap();
        f.set_modified(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(42))
            .unwrap();
        let (jobs, _) = d.refresh();
        let targets: Vec<_> = jobs[0].1.iter().flat_map(|g| g.targets.clone()).collect();
        assert_eq!(targets, vec!["h1:9100", "h2:9100", "h4:9100"]);

        std::fs::write(dir.path().join("targets/a.json"), "[{\"targets\": [").unwrap();
        let f = std::fs::File::options()
            .append(true)
            .open(dir.path().join("targets/a.json"))
            .unwrap();
        f.set_modified(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(43))
            .unwrap();
        let (jobs, errors) = d.refresh();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].to_string().contains("a.json"), "{}", errors[0]);
        let targets: Vec<_> = jobs[0].1.iter().flat_map(|g| g.targets.clone()).collect();
        assert_eq!(targets, vec!["h1:9100", "h2:9100", "h4:9100"]);

        std::fs::write(
            dir.path().join("targets/c.json"),
            r#"[{"targets": ["http://x/y"]}]"#,
        )
        .unwrap();
        let (_, errors) = d.refresh();
        assert!(
            errors
                .iter()
                .any(|e| e.to_string().contains("not a valid hostname"))
        );
    }
}
