//! From a parsed sample to a stored series: the target's labels joined with the sample's
//! (`honor_labels`, `exported_` renaming), `metric_relabel_configs`, and the label limits, as
//! Prometheus' `mutateSampleLabels` and `verifyLabelLimits` do it.

use std::borrow::Cow;

use promlake_core::config::{RelabelConfig, ScrapeConfig};
use promlake_core::labels::{Labels, LabelsBuilder, METRIC_NAME};

use crate::relabel;

/// Prometheus' prefix for exposed labels that clash with target labels.
pub const EXPORTED_PREFIX: &str = "exported_";

/// Label limits of a job; 0 means no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LabelLimits {
    pub label_limit: u64,
    pub name_length: u64,
    pub value_length: u64,
}

impl LabelLimits {
    pub fn of(job: &ScrapeConfig) -> Self {
        Self {
            label_limit: job.label_limit(),
            name_length: job.label_name_length_limit(),
            value_length: job.label_value_length_limit(),
        }
    }
}

/// A sample whose labels break a limit: the whole scrape fails, as in Prometheus.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("label_limit exceeded (metric: {metric}, number of labels: {count}, limit: {limit})")]
    TooManyLabels {
        metric: String,
        count: usize,
        limit: u64,
    },
    #[error(
        "label_name_length_limit exceeded (metric: {metric}, label name: {name}, length: {len}, limit: {limit})"
    )]
    NameTooLong {
        metric: String,
        name: String,
        len: usize,
        limit: u64,
    },
    #[error(
        "label_value_length_limit exceeded (metric: {metric}, label name: {name}, value: {value:?}, length: {len}, limit: {limit})"
    )]
    ValueTooLong {
        metric: String,
        name: String,
        value: String,
        len: usize,
        limit: u64,
    },
}

/// Turns a target's samples into series labels.
#[derive(Debug, Clone)]
pub struct SampleLabeler<'c> {
    target: Labels,
    honor_labels: bool,
    rules: &'c [RelabelConfig],
    limits: LabelLimits,
    scratch: LabelsBuilder,
}

impl<'c> SampleLabeler<'c> {
    /// `target` are the target's series labels (no `__` labels).
    pub fn new(target: Labels, job: &'c ScrapeConfig) -> Self {
        Self {
            target,
            honor_labels: job.honor_labels,
            rules: &job.metric_relabel_configs,
            limits: LabelLimits::of(job),
            scratch: LabelsBuilder::default(),
        }
    }

    pub fn target_labels(&self) -> &Labels {
        &self.target
    }

    /// The series labels of a sample, `Ok(None)` when `metric_relabel_configs` drop it.
    pub fn label(
        &mut self,
        name: &str,
        labels: &[(Cow<'_, str>, Cow<'_, str>)],
    ) -> Result<Option<Labels>, LabelError> {
        let lb = &mut self.scratch;
        lb.reset(&Labels::empty());
        lb.reserve(labels.len() + self.target.len() + 1);
        lb.set_str(METRIC_NAME, name);
        for (n, v) in labels {
            lb.set_str(n, v);
        }
        if self.honor_labels {
            for l in self.target.iter() {
                if lb.get(l.name).is_empty() {
                    lb.set_str(l.name, l.value);
                }
            }
        } else {
            let mut conflicts: Vec<(String, String)> = Vec::new();
            for l in self.target.iter() {
                let exposed = lb.get(l.name);
                if !exposed.is_empty() {
                    conflicts.push((l.name.to_owned(), exposed.to_owned()));
                }
                lb.set_str(l.name, l.value);
            }
            // Shorter names first, then `exported_` prefixes until a free name is found.
            conflicts.sort_by_key(|(n, _)| n.len());
            for (name, value) in conflicts {
                let mut new_name = name;
                loop {
                    new_name = format!("{EXPORTED_PREFIX}{new_name}");
                    if lb.get(&new_name).is_empty() {
                        lb.set(new_name, value);
                        break;
                    }
                }
            }
        }
        if !self.rules.is_empty() && !relabel::process(self.rules, lb) {
            return Ok(None);
        }
        if lb.get(METRIC_NAME).is_empty() {
            return Ok(None);
        }
        self.check_limits()?;
        Ok(Some(std::mem::take(&mut self.scratch).into_labels()))
    }

    fn check_limits(&self) -> Result<(), LabelError> {
        let l = self.limits;
        if l == LabelLimits::default() {
            return Ok(());
        }
        let metric = || self.scratch.get(METRIC_NAME).to_owned();
        // The metric name is not counted, as in Prometheus.
        let count = self.scratch.len().saturating_sub(1);
        if l.label_limit > 0 && count as u64 > l.label_limit {
            return Err(LabelError::TooManyLabels {
                metric: metric(),
                count,
                limit: l.label_limit,
            });
        }
        for lab in self.scratch.iter() {
            if l.name_length > 0 && lab.name.len() as u64 > l.name_length {
                return Err(LabelError::NameTooLong {
                    metric: metric(),
                    name: lab.name.clone(),
                    len: lab.name.len(),
                    limit: l.name_length,
                });
            }
            if l.value_length > 0 && lab.value.len() as u64 > l.value_length {
                return Err(LabelError::ValueTooLong {
                    metric: metric(),
                    name: lab.name.clone(),
                    value: lab.value.clone(),
                    len: lab.value.len(),
                    limit: l.value_length,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use promlake_core::config::Config;

    fn job(y: &str) -> ScrapeConfig {
        Config::parse(y).unwrap().scrape_configs.remove(0)
    }

    fn cow(pairs: &[(&'static str, &'static str)]) -> Vec<(Cow<'static, str>, Cow<'static, str>)> {
        pairs
            .iter()
            .map(|(a, b)| (Cow::Borrowed(*a), Cow::Borrowed(*b)))
            .collect()
    }

    fn target() -> Labels {
        Labels::from_pairs([("job", "node"), ("instance", "h:1")])
    }

    #[test]
    fn target_labels_win_and_exposed_ones_are_renamed() {
        let j = job("scrape_configs: [{job_name: node}]");
        let mut s = SampleLabeler::new(target(), &j);
        let l = s
            .label(
                "up2",
                &cow(&[("job", "other"), ("exported_job", "x"), ("a", "b")]),
            )
            .unwrap()
            .unwrap();
        assert_eq!(
            l,
            Labels::from_pairs([
                ("__name__", "up2"),
                ("a", "b"),
                ("exported_exported_job", "other"),
                ("exported_job", "x"),
                ("instance", "h:1"),
                ("job", "node")
            ])
        );
    }

    #[test]
    fn honor_labels_keeps_exposed_values() {
        let j = job("scrape_configs: [{job_name: node, honor_labels: true}]");
        let mut s = SampleLabeler::new(target(), &j);
        let l = s.label("m", &cow(&[("job", "other")])).unwrap().unwrap();
        assert_eq!(l.get("job"), Some("other"));
        assert_eq!(l.get("instance"), Some("h:1"));
    }

    #[test]
    fn metric_relabel_configs_drop_and_rewrite() {
        let j = job(
            "scrape_configs: [{job_name: node, metric_relabel_configs: [{source_labels: [__name__], regex: 'go_.*', action: drop}, {action: labeldrop, regex: 'secret'}]}]",
        );
        let mut s = SampleLabeler::new(target(), &j);
        assert_eq!(s.label("go_goroutines", &[]).unwrap(), None);
        let l = s.label("up", &cow(&[("secret", "x")])).unwrap().unwrap();
        assert_eq!(l.get("secret"), None);
    }

    #[test]
    fn label_limits_fail_the_sample() {
        let j =
            job("scrape_configs: [{job_name: node, label_limit: 3, label_value_length_limit: 5}]");
        let mut s = SampleLabeler::new(target(), &j);
        assert!(s.label("m", &cow(&[("a", "1")])).unwrap().is_some());
        assert!(matches!(
            s.label("m", &cow(&[("a", "1"), ("b", "2")])),
            Err(LabelError::TooManyLabels { count: 4, .. })
        ));
        assert!(matches!(
            s.label("m", &cow(&[("a", "123456")])),
            Err(LabelError::ValueTooLong { .. })
        ));
    }
}

/// Per-target memory of how each exposed series text was labeled, so that a series seen in the
/// previous scrape is neither re-parsed into labels nor relabeled again (Prometheus keeps the same
/// cache). Entries are keyed by the 128-bit xxh3 of the series text rather than the text itself:
/// a worker holding 100k series keeps 16 bytes per series instead of its text, and a collision
/// would take on the order of 2^64 distinct series. Entries not seen for a few scrapes are
/// forgotten.
#[derive(Debug, Default)]
pub struct SeriesCache {
    map: std::collections::HashMap<u128, CacheEntry, BuildIdentity>,
    round: u64,
}

#[derive(Debug)]
struct CacheEntry {
    series: Option<Cached>,
    seen: u64,
}

/// A labeled series: its labels and its id (Prometheus' `labels.Hash()`).
#[derive(Debug, Clone)]
pub struct Cached {
    pub labels: std::sync::Arc<Labels>,
    pub id: u64,
}

impl SeriesCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a scrape; entries unseen for more than `keep_rounds` scrapes are dropped.
    pub fn begin_round(&mut self, keep_rounds: u64) {
        self.round += 1;
        let round = self.round;
        if round.is_multiple_of(8) {
            self.map.retain(|_, e| round - e.seen <= keep_rounds);
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The labeled series for `text`, labeling it with `f` the first time; `None` when the
    /// series is dropped by relabeling.
    pub fn get_or_label<E>(
        &mut self,
        text: &str,
        f: impl FnOnce() -> Result<Option<Labels>, E>,
    ) -> Result<Option<&Cached>, E> {
        let key = xxhash_rust::xxh3::xxh3_128(text.as_bytes());
        let round = self.round;
        let e = match self.map.entry(key) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let series = f()?.map(|l| Cached {
                    id: l.hash(),
                    labels: std::sync::Arc::new(l),
                });
                v.insert(CacheEntry {
                    series,
                    seen: round,
                })
            }
        };
        e.seen = round;
        Ok(e.series.as_ref())
    }
}

/// A hasher for keys that already are hashes.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdentityHasher(u64);

impl std::hash::Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
    fn write_u128(&mut self, n: u128) {
        self.0 = (n as u64) ^ ((n >> 64) as u64);
    }
}

pub type BuildIdentity = std::hash::BuildHasherDefault<IdentityHasher>;

#[cfg(test)]
mod cache_tests {
    use super::*;

    #[test]
    fn cache_labels_once_and_forgets_unseen_series() {
        let mut c = SeriesCache::new();
        let mut calls = 0;
        for round in 0..3 {
            c.begin_round(2);
            for text in ["a{x=\"1\"}", "b"] {
                let got = c
                    .get_or_label::<()>(text, || {
                        calls += 1;
                        Ok((text != "b")
                            .then(|| Labels::from_pairs([("__name__", "a"), ("x", "1")])))
                    })
                    .unwrap()
                    .map(|s| s.id);
                assert_eq!(got.is_some(), text != "b", "round {round}");
            }
        }
        assert_eq!(calls, 2);
        assert_eq!(c.len(), 2);
        for _ in 0..16 {
            c.begin_round(2);
        }
        assert_eq!(c.len(), 0);
    }
}
