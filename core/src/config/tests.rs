use super::*;
use crate::testdata;

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text)
}

/// The YAML blocks of the seed text that are Prometheus configs.
fn seed_configs() -> Vec<String> {
    let md = std::fs::read_to_string(
        testdata::shared_dir().join("seed/502-scaling-and-availability.md"),
    )
    .expect("the seed text is in ../shared/seed");
    let mut blocks = Vec::new();
    let mut cur: Option<String> = None;
    for line in md.lines() {
        match (&mut cur, line.trim_start()) {
            (None, "```yaml") => cur = Some(String::new()),
            (Some(b), "```") => {
                blocks.push(std::mem::take(b));
                cur = None;
            }
            (Some(b), _) => {
                b.push_str(line);
                b.push('\n');
            }
            _ => {}
        }
    }
    blocks
        .into_iter()
        .filter(|b| b.contains("scrape_config"))
        .collect()
}

#[test]
fn seed_sharding_example_loads_as_written() {
    let blocks = seed_configs();
    let sharding = blocks
        .iter()
        .find(|b| b.contains("hashmod"))
        .expect("the seed has a hashmod example");
    let cfg = load(sharding).unwrap();
    assert_eq!(
        cfg.global.external_labels.get("slave").map(String::as_str),
        Some("1")
    );
    let job = &cfg.scrape_configs[0];
    assert_eq!(job.job_name, "some_job");
    assert_eq!(job.relabel_configs.len(), 2);
    assert_eq!(job.relabel_configs[0].action, Action::HashMod);
    assert_eq!(job.relabel_configs[0].modulus, 4);
    assert_eq!(job.relabel_configs[0].target_label, "__tmp_hash");
    assert_eq!(job.relabel_configs[1].action, Action::Keep);
    assert_eq!(job.relabel_configs[1].regex.as_str(), "^1$");
}

#[test]
fn seed_federation_examples_explain_the_typo_and_load_when_fixed() {
    let blocks: Vec<_> = seed_configs()
        .into_iter()
        .filter(|b| b.contains("/federate"))
        .collect();
    assert_eq!(blocks.len(), 2, "the seed has two federation examples");
    for b in blocks {
        let e = load(&b).unwrap_err();
        assert_eq!(e.line, Some(1), "{e}");
        assert!(e.message.contains("scrape_configs:"), "{e}");
        let fixed = b.replacen("- scrape_config:", "scrape_configs:", 1);
        let cfg = load(&fixed).unwrap();
        let job = &cfg.scrape_configs[0];
        assert!(job.honor_labels);
        assert_eq!(job.metrics_path, "/federate");
        assert_eq!(job.params["match[]"].len(), 1);
        assert!(job.params["match[]"][0].starts_with("{__name__=~"));
        assert!(job.static_configs[0].targets.len() >= 2);
    }
}

#[test]
fn live_prometheus_config_loads_with_a_warning_for_remote_write() {
    let path = testdata::shared_dir().join("testdata/prometheus/live/prometheus.yml");
    let cfg = Config::load(&path).unwrap();
    assert_eq!(cfg.global.scrape_interval.to_string(), "2s");
    assert_eq!(cfg.global.external_labels["cluster"], "dc01");
    assert_eq!(cfg.scrape_configs.len(), 2);
    assert_eq!(cfg.rule_files, vec!["rules.yml".to_string()]);
    assert!(cfg.warnings.iter().any(|w| w.contains("remote_write")));
    // The job's timeout is capped at its 2s interval.
    assert_eq!(cfg.scrape_configs[0].timeout().to_string(), "2s");
    assert_eq!(
        cfg.resolve_path("rules.yml"),
        path.parent().unwrap().join("rules.yml")
    );
}

#[test]
fn prometheus_defaults_apply() {
    let cfg = load("scrape_configs:\n  - job_name: a\n").unwrap();
    let j = &cfg.scrape_configs[0];
    assert_eq!(j.interval().to_string(), "1m");
    assert_eq!(j.timeout().to_string(), "10s");
    assert_eq!(j.metrics_path, "/metrics");
    assert_eq!(j.scheme, "http");
    assert!(j.honor_timestamps);
    assert!(!j.honor_labels);
    assert_eq!(cfg.global.evaluation_interval.to_string(), "1m");
    assert_eq!(cfg.storage.url, "./data");
    assert_eq!(cfg.storage.flush_interval.to_string(), "1m");
    assert_eq!(cfg.region(), "local");

    let cfg =
        load("global: {scrape_interval: 5s}\nscrape_configs: [{job_name: a, sample_limit: 7}]\n")
            .unwrap();
    assert_eq!(cfg.scrape_configs[0].timeout().to_string(), "5s");
    assert_eq!(cfg.scrape_configs[0].sample_limit(), 7);
    let cfg = load("global: {scrape_interval: 30s, scrape_timeout: 20s, sample_limit: 9}\nscrape_configs: [{job_name: a, scrape_interval: 15s}]\n").unwrap();
    assert_eq!(cfg.scrape_configs[0].timeout().to_string(), "15s");
    assert_eq!(cfg.scrape_configs[0].sample_limit(), 9);
}

#[test]
fn promlake_sections() {
    let cfg = load(
        "storage: s3://bucket/prefix\nregion: eu1\nregions:\n  - {name: eu1, storage: ./data}\n  - name: us1\n    storage: {url: 's3://b/us1', flush_interval: 30s}\n",
    )
    .unwrap();
    assert_eq!(cfg.storage.url, "s3://bucket/prefix");
    assert_eq!(cfg.region(), "eu1");
    assert_eq!(cfg.query_regions().len(), 2);
    assert_eq!(cfg.regions[1].storage.flush_interval.to_string(), "30s");
    let cfg = load("global: {external_labels: {region: ap2}}\nstorage: {tsdb: {retention: 1d}}\n")
        .unwrap();
    assert_eq!(cfg.region(), "ap2");
}

fn err(text: &str) -> ConfigError {
    load(text).unwrap_err()
}

#[test]
fn unknown_keys_are_errors_naming_key_and_line() {
    let e = err(
        "global:\n  scrape_interval: 15s\nscrape_configs:\n  - job_name: a\n    metric_path: /m\n",
    );
    assert_eq!(e.line, Some(5), "{e}");
    assert!(e.message.contains("unknown field `metric_path`"), "{e}");
    assert!(e.message.contains("scrape_configs[0]"), "{e}");
    let e = err("globals: {}\n");
    assert_eq!(e.line, Some(1));
}

#[test]
fn bad_values_are_located() {
    let e = err("global:\n  scrape_interval: 15 seconds\n");
    assert_eq!(e.line, Some(2), "{e}");
    assert!(e.message.contains("\"15 seconds\""), "{e}");

    let e = err(
        "scrape_configs:\n  - job_name: a\n    relabel_configs:\n      - source_labels: [a]\n        regex: '(unclosed'\n",
    );
    assert_eq!(e.line, Some(5), "{e}");
    assert!(e.message.contains("invalid regex"), "{e}");

    let e = err(
        "scrape_configs:\n  - job_name: a\n    relabel_configs:\n      - source_labels: [a]\n        action: keep\n      - source_labels: [__address__]\n        target_label: t\n        action: hashmod\n",
    );
    assert_eq!(e.line, Some(6), "{e}");
    assert_eq!(
        e.key.as_deref(),
        Some("scrape_configs[0].relabel_configs[1].modulus")
    );
    assert!(e.message.contains("requires non-zero modulus"), "{e}");
    assert!(
        e.to_string()
            .starts_with("<config>:6: scrape_configs[0].relabel_configs[1].modulus:"),
        "{e}"
    );

    let e = err("scrape_configs:\n  - job_name: a\n  - job_name: b\n  - job_name: a\n");
    assert_eq!(e.line, Some(4), "{e}");
    assert!(e.message.contains("multiple scrape configs"), "{e}");

    let e =
        err("scrape_configs:\n  - job_name: a\n    scrape_interval: 5s\n    scrape_timeout: 10s\n");
    assert_eq!(e.line, Some(4), "{e}");
    assert!(
        e.message
            .contains("scrape timeout greater than scrape interval"),
        "{e}"
    );

    let e = err(
        "scrape_configs:\n  - job_name: a\n    static_configs:\n      - targets:\n          - ok:1\n          - http://bad:2/metrics\n",
    );
    assert_eq!(e.line, Some(6), "{e}");
    assert!(e.message.contains("not a valid hostname"), "{e}");

    let e = err("storage: ftp://x\n");
    assert_eq!(e.line, Some(1), "{e}");
    let e = err("scrape_configs:\n  - job_name: a\n    scheme: gopher\n");
    assert_eq!(e.line, Some(3), "{e}");
    let e = err(
        "scrape_configs:\n  - job_name: a\n    file_sd_configs:\n      - files: [targets.txt]\n",
    );
    assert_eq!(e.line, Some(4), "{e}");
}

#[test]
fn relabel_actions_are_case_insensitive_and_validated() {
    let cfg = load("scrape_configs:\n  - job_name: a\n    metric_relabel_configs:\n      - {action: LabelDrop, regex: 'go_.*'}\n").unwrap();
    assert_eq!(
        cfg.scrape_configs[0].metric_relabel_configs[0].action,
        Action::LabelDrop
    );
    let e = err(
        "scrape_configs:\n  - job_name: a\n    metric_relabel_configs:\n      - {action: labeldrop, regex: 'go_.*', source_labels: [a]}\n",
    );
    assert!(e.message.contains("requires only 'regex'"), "{e}");
}

#[test]
fn empty_config_is_all_defaults() {
    let cfg = load("").unwrap();
    assert!(cfg.scrape_configs.is_empty());
    assert_eq!(cfg.global.scrape_interval.to_string(), "1m");
}

#[test]
fn alertmanager_routing_in_alerting() {
    let cfg = load("alerting:\n  route:\n    receiver: team\n    group_by: [alertname]\n    group_wait: 5s\n    routes:\n      - matchers: ['severity=\"page\"']\n        receiver: pager\n        continue: true\n  receivers:\n    - name: team\n      webhook_configs: [{url: 'http://127.0.0.1:9/hook'}]\n    - name: pager\n      webhook_configs: [{url: 'http://127.0.0.1:9/page', send_resolved: false}]\n").unwrap();
    let route = cfg.alerting.route.unwrap();
    assert_eq!(route.routes[0].matchers[0].value, "page");
    assert!(route.routes[0].continue_matching);
    assert!(!cfg.alerting.receivers[1].webhook_configs[0].send_resolved);
    let e = err("alerting:\n  route:\n    receiver: nobody\n  receivers:\n    - name: team\n");
    assert_eq!(e.line, Some(3), "{e}");
    assert!(e.message.contains("undefined receiver"), "{e}");
    let e = err(
        "alerting:\n  route:\n    receiver: team\n    routes:\n      - matchers: ['severity']\n  receivers:\n    - name: team\n",
    );
    assert_eq!(e.line, Some(5), "{e}");
}
