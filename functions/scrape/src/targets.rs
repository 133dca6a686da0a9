//! Targets as Prometheus builds them (`scrape/target.go` `PopulateLabels`), and this worker's
//! shard of them.
//!
//! A worker told `--shard K/N` puts the pair of rules the seed writes by hand in front of each
//! job's `relabel_configs`:
//!
//! ```yaml
//! - {source_labels: [__address__], modulus: N, target_label: __tmp_promlake_shard, action: hashmod}
//! - {source_labels: [__tmp_promlake_shard], regex: K, action: keep}
//! ```
//!
//! so the shard of a target is `hashmod(discovered __address__) mod N`, bit-identical to a
//! Prometheus fleet sharded by hand, and independent of the job's own relabeling (a blackbox-style
//! job that rewrites every `__address__` to the prober still spreads over the shards).

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use promlake_core::config::{
    Action, RelabelConfig, RelabelRegex, ScrapeConfig, check_target_address,
};
use promlake_core::duration::PromDuration;
use promlake_core::labels::{Labels, LabelsBuilder, META_PREFIX};
pub use promlake_core::shard::Shard;

use crate::discovery::TargetGroup;
use crate::relabel;

pub const ADDRESS: &str = "__address__";
pub const SCHEME: &str = "__scheme__";
pub const METRICS_PATH: &str = "__metrics_path__";
pub const SCRAPE_INTERVAL: &str = "__scrape_interval__";
pub const SCRAPE_TIMEOUT: &str = "__scrape_timeout__";
pub const PARAM_PREFIX: &str = "__param_";
pub const JOB: &str = "job";
pub const INSTANCE: &str = "instance";
/// The label the shard rules write.
pub const SHARD_LABEL: &str = "__tmp_promlake_shard";

/// The shard that owns an address, as the shard rules compute it.
pub fn shard_of_address(address: &str, count: u64) -> u64 {
    relabel::hashmod(address, count)
}

/// The hashmod + keep pair that keeps a shard's targets.
pub fn shard_rules(shard: Shard) -> Vec<RelabelConfig> {
    vec![
        RelabelConfig {
            source_labels: Some(vec![ADDRESS.into()]),
            modulus: shard.count,
            target_label: SHARD_LABEL.into(),
            action: Action::HashMod,
            ..Default::default()
        },
        RelabelConfig {
            source_labels: Some(vec![SHARD_LABEL.into()]),
            regex: RelabelRegex::new(&shard.index.to_string()).expect("a number is a regex"),
            action: Action::Keep,
            ..Default::default()
        },
    ]
}

/// A target to scrape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    /// All labels after relabeling, `__address__`, `__scheme__`, `__param_*` included.
    pub labels: Labels,
    /// The labels as discovered, before relabeling.
    pub discovered: Labels,
}

impl Target {
    pub fn job(&self) -> &str {
        self.labels.get(JOB).unwrap_or("")
    }

    pub fn address(&self) -> &str {
        self.labels.get(ADDRESS).unwrap_or("")
    }

    /// The labels every sample of this target gets (the ones not starting with `__`).
    pub fn series_labels(&self) -> Labels {
        self.labels.without_reserved()
    }

    pub fn interval(&self) -> PromDuration {
        self.labels
            .get(SCRAPE_INTERVAL)
            .and_then(|v| v.parse().ok())
            .unwrap_or_default()
    }

    pub fn timeout(&self) -> PromDuration {
        self.labels
            .get(SCRAPE_TIMEOUT)
            .and_then(|v| v.parse().ok())
            .unwrap_or_default()
    }

    /// The URL to scrape: scheme, address, metrics path and the job's `params`, with `__param_*`
    /// labels overriding the first value of a parameter (as Prometheus' `Target.URL`).
    pub fn url(&self, job: &ScrapeConfig) -> String {
        let mut params: BTreeMap<String, Vec<String>> = job.params.clone();
        for l in self.labels.iter() {
            if let Some(k) = l.name.strip_prefix(PARAM_PREFIX) {
                match params.get_mut(k) {
                    Some(v) if !v.is_empty() => v[0] = l.value.to_owned(),
                    _ => {
                        params.insert(k.to_owned(), vec![l.value.to_owned()]);
                    }
                }
            }
        }
        let mut url = format!(
            "{}://{}{}",
            self.labels.get(SCHEME).unwrap_or("http"),
            self.address(),
            self.labels.get(METRICS_PATH).unwrap_or("/metrics")
        );
        let mut first = true;
        for (k, vs) in &params {
            for v in vs {
                url.push(if first { '?' } else { '&' });
                first = false;
                url.push_str(&query_escape(k));
                url.push('=');
                url.push_str(&query_escape(v));
            }
        }
        url
    }
}

/// Go's `url.QueryEscape`.
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// What became of a discovered target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Keep(Target),
    Drop {
        discovered: Labels,
        reason: DropReason,
    },
}

/// Why a discovered target is not scraped by this worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The job's `relabel_configs` dropped it.
    Relabeling,
    /// Another shard owns it.
    OtherShard(u64),
    /// Its labels are not a valid target (no address, bad interval, ...).
    Invalid(String),
    /// Same labels as another target of the job.
    Duplicate,
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DropReason::Relabeling => f.write_str("dropped by relabel_configs"),
            DropReason::OtherShard(k) => write!(f, "owned by shard {k}"),
            DropReason::Invalid(m) => write!(f, "invalid target: {m}"),
            DropReason::Duplicate => f.write_str("duplicate of another target of the job"),
        }
    }
}

/// The labels of a discovered target before relabeling (`PopulateDiscoveredLabels`).
pub fn discovered_labels(
    job: &ScrapeConfig,
    address: &str,
    group: &BTreeMap<String, String>,
) -> Labels {
    let mut lb = LabelsBuilder::default();
    lb.set_str(ADDRESS, address);
    for (k, v) in group {
        if k != ADDRESS {
            lb.set_str(k, v);
        }
    }
    let interval = job.interval().to_string();
    let timeout = job.timeout().to_string();
    for (name, value) in [
        (JOB, job.job_name.as_str()),
        (SCRAPE_INTERVAL, interval.as_str()),
        (SCRAPE_TIMEOUT, timeout.as_str()),
        (METRICS_PATH, job.metrics_path.as_str()),
        (SCHEME, job.scheme.as_str()),
    ] {
        if lb.get(name).is_empty() {
            lb.set_str(name, value);
        }
    }
    for (k, v) in &job.params {
        let name = format!("{PARAM_PREFIX}{k}");
        if let Some(first) = v.first()
            && lb.get(&name).is_empty()
        {
            lb.set(name, first.clone());
        }
    }
    lb.into_labels()
}

/// Builds one target from a discovered address, relabeling it, with this worker's shard rules
/// in front (`PopulateLabels`).
pub fn populate(
    job: &ScrapeConfig,
    address: &str,
    group: &BTreeMap<String, String>,
    shard: Shard,
) -> Outcome {
    let discovered = discovered_labels(job, address, group);
    let drop = |reason| Outcome::Drop {
        discovered: discovered.clone(),
        reason,
    };
    if shard.count > 1 {
        let owner = shard_of_address(discovered.get(ADDRESS).unwrap_or(""), shard.count);
        if owner != shard.index {
            return drop(DropReason::OtherShard(owner));
        }
    }
    let mut lb = LabelsBuilder::new(discovered.clone());
    if !relabel::process(&job.relabel_configs, &mut lb) {
        return drop(DropReason::Relabeling);
    }
    let addr = lb.get(ADDRESS).to_owned();
    if addr.is_empty() {
        return drop(DropReason::Invalid("no address".into()));
    }
    if let Err(m) = check_target_address(&addr) {
        return drop(DropReason::Invalid(m));
    }
    let interval = lb.get(SCRAPE_INTERVAL).to_owned();
    let timeout = lb.get(SCRAPE_TIMEOUT).to_owned();
    let iv = match interval.parse::<PromDuration>() {
        Ok(d) if !d.is_zero() => d,
        Ok(_) => return drop(DropReason::Invalid("scrape interval cannot be 0".into())),
        Err(e) => {
            return drop(DropReason::Invalid(format!(
                "error parsing scrape interval: {e}"
            )));
        }
    };
    match timeout.parse::<PromDuration>() {
        Ok(d) if d.is_zero() => {
            return drop(DropReason::Invalid("scrape timeout cannot be 0".into()));
        }
        Ok(d) if d > iv => {
            return drop(DropReason::Invalid(format!(
                "scrape timeout cannot be greater than scrape interval ({timeout:?} > {interval:?})"
            )));
        }
        Ok(_) => {}
        Err(e) => {
            return drop(DropReason::Invalid(format!(
                "error parsing scrape timeout: {e}"
            )));
        }
    }
    lb.retain(|l| !l.name.starts_with(META_PREFIX));
    if lb.get(INSTANCE).is_empty() {
        lb.set(INSTANCE.into(), addr);
    }
    Outcome::Keep(Target {
        labels: lb.into_labels(),
        discovered,
    })
}

/// Every target of a job's groups, with duplicates (same labels) reported once.
pub fn job_targets(job: &ScrapeConfig, groups: &[TargetGroup], shard: Shard) -> Vec<Outcome> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for g in groups {
        for addr in &g.targets {
            match populate(job, addr, &g.labels, shard) {
                Outcome::Keep(t) => {
                    if seen.insert(t.labels.clone()) {
                        out.push(Outcome::Keep(t));
                    } else {
                        out.push(Outcome::Drop {
                            discovered: t.discovered,
                            reason: DropReason::Duplicate,
                        });
                    }
                }
                d => out.push(d),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use promlake_core::config::Config;

    fn job(y: &str) -> ScrapeConfig {
        Config::parse(y).unwrap().scrape_configs.remove(0)
    }

    #[test]
    fn target_labels_as_prometheus_builds_them() {
        let j = job(
            "global: {scrape_interval: 15s}\nscrape_configs:\n  - job_name: node\n    params: {module: [http_2xx, x], 'match[]': ['{a=\"b c\"}']}\n    static_configs: [{targets: ['h:9100'], labels: {env: prod, __meta_x: y}}]\n",
        );
        let Outcome::Keep(t) = populate(&j, "h:9100", &j.static_configs[0].labels, Shard::ALL)
        else {
            panic!("kept")
        };
        assert_eq!(t.labels.get(JOB), Some("node"));
        assert_eq!(t.labels.get(INSTANCE), Some("h:9100"));
        assert_eq!(t.labels.get(SCRAPE_INTERVAL), Some("15s"));
        assert_eq!(t.labels.get(SCRAPE_TIMEOUT), Some("10s"));
        assert_eq!(t.labels.get("__param_module"), Some("http_2xx"));
        assert_eq!(t.labels.get("__meta_x"), None, "meta labels are removed");
        assert_eq!(t.discovered.get("__meta_x"), Some("y"));
        assert_eq!(
            t.series_labels(),
            Labels::from_pairs([("env", "prod"), ("instance", "h:9100"), ("job", "node")])
        );
        assert_eq!(
            t.url(&j),
            "http://h:9100/metrics?match%5B%5D=%7Ba%3D%22b+c%22%7D&module=http_2xx&module=x"
        );
    }

    #[test]
    fn relabeling_rewrites_and_drops() {
        let j = job(
            "scrape_configs:\n  - job_name: bb\n    metrics_path: /probe\n    relabel_configs:\n      - {source_labels: [__address__], target_label: __param_target}\n      - {source_labels: [__param_target], target_label: instance}\n      - {target_label: __address__, replacement: 'prober:9115'}\n      - {source_labels: [instance], regex: 'skip.*', action: drop}\n",
        );
        let g = BTreeMap::new();
        let Outcome::Keep(t) = populate(&j, "example.com:443", &g, Shard::ALL) else {
            panic!()
        };
        assert_eq!(t.address(), "prober:9115");
        assert_eq!(t.labels.get(INSTANCE), Some("example.com:443"));
        assert_eq!(
            t.url(&j),
            "http://prober:9115/probe?target=example.com%3A443"
        );
        assert_eq!(
            populate(&j, "skip.me:1", &g, Shard::ALL),
            Outcome::Drop {
                discovered: discovered_labels(&j, "skip.me:1", &g),
                reason: DropReason::Relabeling
            }
        );
    }

    #[test]
    fn targets_without_address_are_dropped_with_a_reason() {
        let j = job(
            "scrape_configs:\n  - job_name: a\n    relabel_configs:\n      - {target_label: __address__, replacement: ''}\n",
        );
        match populate(&j, "h:1", &BTreeMap::new(), Shard::ALL) {
            Outcome::Drop {
                reason: DropReason::Invalid(m),
                ..
            } => assert_eq!(m, "no address"),
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn shards_split_exactly_as_the_seed_rules_do() {
        let j = job("scrape_configs: [{job_name: a}]\n");
        // The seed's by-hand rules, for comparison.
        let seed: Vec<RelabelConfig> = serde_yaml::from_str("- {source_labels: [__address__], modulus: 4, target_label: __tmp_hash, action: hashmod}\n").unwrap();
        let mut owners = [0usize; 4];
        for i in 0..200 {
            let addr = format!("node-{i}.example:9100");
            let mut lb = LabelsBuilder::new(Labels::from_pairs([(ADDRESS, addr.clone())]));
            relabel::process(&seed, &mut lb);
            let by_hand: u64 = lb.get("__tmp_hash").parse().unwrap();
            let kept: Vec<u64> = (0..4)
                .filter(|k| {
                    matches!(
                        populate(&j, &addr, &BTreeMap::new(), Shard::new(*k, 4).unwrap()),
                        Outcome::Keep(_)
                    )
                })
                .collect();
            assert_eq!(kept, vec![by_hand], "{addr}");
            owners[by_hand as usize] += 1;
        }
        assert!(owners.iter().all(|n| *n > 25), "{owners:?}");
        // The rules a worker would add are the same pair.
        let rules = shard_rules(Shard::new(1, 4).unwrap());
        assert_eq!(rules[0].action, Action::HashMod);
        assert_eq!(rules[1].regex.as_str(), "1");
    }

    #[test]
    fn duplicates_are_reported_once() {
        let j =
            job("scrape_configs: [{job_name: a, static_configs: [{targets: ['h:1', 'h:1']}]}]\n");
        let groups = crate::discovery::static_groups(&j);
        let out = job_targets(&j, &groups, Shard::ALL);
        assert!(matches!(out[0], Outcome::Keep(_)));
        assert!(matches!(
            out[1],
            Outcome::Drop {
                reason: DropReason::Duplicate,
                ..
            }
        ));
    }
}
