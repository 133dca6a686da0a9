//! `promlake check config|targets` from the command line, against the seed's examples and a real
//! Prometheus.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;

fn seed_blocks() -> Vec<String> {
    let md = std::fs::read_to_string(
        promlake_core::testdata::shared_dir().join("seed/502-scaling-and-availability.md"),
    )
    .unwrap();
    md.split("```yaml")
        .skip(1)
        .filter_map(|b| {
            b.split("```")
                .next()
                .map(|s| s.trim_start_matches('\n').to_owned())
        })
        .filter(|b| b.contains("scrape_config"))
        .collect()
}

#[test]
fn check_config_accepts_the_seed_and_locates_errors() {
    let dir = tempfile::tempdir().unwrap();
    for (i, b) in seed_blocks().iter().enumerate() {
        let fixed = b.replacen("- scrape_config:", "scrape_configs:", 1);
        let path = dir.path().join(format!("seed{i}.yml"));
        std::fs::write(&path, &fixed).unwrap();
        let o = run(promlake().args(["check", "config"]).arg(&path));
        assert!(o.status.success(), "seed block {i}: {}", stderr(&o));
        assert!(stdout(&o).contains("valid"));
        if b.contains("- scrape_config:") {
            std::fs::write(&path, b).unwrap();
            let o = run(promlake().args(["check", "config"]).arg(&path));
            assert!(!o.status.success());
            let e = stderr(&o);
            assert!(e.contains(&format!("seed{i}.yml:1:")), "{e}");
            assert!(e.contains("scrape_configs:"), "{e}");
        }
    }
    let bad = dir.path().join("bad.yml");
    std::fs::write(&bad, "global:\n  scrape_interval: 15s\nscrape_configs:\n  - job_name: a\n    relabel_configs:\n      - source_labels: [__address__]\n        target_label: __tmp_hash\n        action: hashmod\n").unwrap();
    let o = run(promlake().args(["check", "config"]).arg(&bad));
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.starts_with(&format!(
            "{}:6: scrape_configs[0].relabel_configs[0].modulus:",
            bad.display()
        )),
        "{e}"
    );
}

/// Prometheus 2.42 with one job per shard, each with the seed's by-hand `hashmod` + `keep` rules:
/// the targets it keeps for shard K must be exactly those `promlake check targets --shard K/N`
/// keeps.
#[test]
fn check_targets_shards_exactly_as_prometheus_hashmod() {
    const N: u64 = 4;
    let targets: Vec<String> = (0..40)
        .map(|i| format!("10.{}.{}.{}:{}", i % 3, i / 7, i * 13 % 256, 9100 + i % 5))
        .collect();
    let list = targets
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let dir = tempfile::tempdir().unwrap();
    let mut prom_cfg =
        String::from("global: {scrape_interval: 1h, scrape_timeout: 10s}\nscrape_configs:\n");
    for k in 0..N {
        prom_cfg.push_str(&format!(
            "  - job_name: shard{k}\n    static_configs: [{{targets: [{list}]}}]\n    relabel_configs:\n    - source_labels: [__address__]\n      modulus:       {N}\n      target_label:  __tmp_hash\n      action:        hashmod\n    - source_labels: [__tmp_hash]\n      regex:         ^{k}$\n      action:        keep\n"
        ));
    }
    std::fs::write(dir.path().join("prometheus.yml"), &prom_cfg).unwrap();
    let port = free_port();
    let _prom = Proc::spawn(
        std::process::Command::new(peer("prometheus"))
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}")),
    );
    let body: serde_json::Value = wait_for(
        "Prometheus' active targets",
        Duration::from_secs(60),
        || {
            let v: serde_json::Value = serde_json::from_str(&http_get(&format!(
                "http://127.0.0.1:{port}/api/v1/targets"
            ))?)
            .ok()?;
            let n = v["data"]["activeTargets"].as_array()?.len();
            (n == targets.len()).then_some(v)
        },
    );
    let mut prom: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for t in body["data"]["activeTargets"].as_array().unwrap() {
        let k: u64 = t["labels"]["job"]
            .as_str()
            .unwrap()
            .trim_start_matches("shard")
            .parse()
            .unwrap();
        prom.entry(k)
            .or_default()
            .insert(t["labels"]["instance"].as_str().unwrap().to_owned());
    }

    let ours_cfg = dir.path().join("promlake.yml");
    std::fs::write(
        &ours_cfg,
        format!(
            "scrape_configs:\n  - job_name: node\n    static_configs: [{{targets: [{list}]}}]\n"
        ),
    )
    .unwrap();
    for k in 0..N {
        let o = run(promlake()
            .args([
                "check",
                "targets",
                "--format",
                "json",
                "--shard",
                &format!("{k}/{N}"),
                "--config",
            ])
            .arg(&ours_cfg));
        assert!(o.status.success(), "{}", stderr(&o));
        let rows: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        let kept: BTreeSet<String> = rows
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["keep"].as_bool().unwrap())
            .map(|r| {
                r["endpoint"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("http://")
                    .trim_end_matches("/metrics")
                    .to_owned()
            })
            .collect();
        assert_eq!(
            kept,
            prom.get(&k).cloned().unwrap_or_default(),
            "shard {k}/{N}"
        );
    }
    assert_eq!(
        prom.values().map(BTreeSet::len).sum::<usize>(),
        targets.len()
    );
}

/// `check config` checks the rule files the config names, as `promtool check config` does: a
/// config that passes it also starts.
#[test]
fn check_config_checks_the_rule_files_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let config = |rules: &str| {
        let path = dir.path().join("promlake.yml");
        std::fs::write(
            &path,
            format!("rule_files: [{rules}]\nscrape_configs: []\nstorage: {{url: ./data}}\n"),
        )
        .unwrap();
        path
    };
    std::fs::write(
        dir.path().join("good.yml"),
        "groups:\n  - name: g\n    rules:\n      - record: job:x:sum\n        expr: SELECT 1.0 AS value\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("bad.yml"),
        "groups:\n  - name: g\n    rules:\n      - record: job:bad\n        expr: SELECT map([1], [2]) AS value\n",
    )
    .unwrap();

    let o = run(promlake().args(["check", "config"]).arg(config("good.yml")));
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("SUCCESS: 1 rules found"),
        "{}",
        stdout(&o)
    );

    let o = run(promlake()
        .args(["check", "config"])
        .arg(config("good.yml, bad.yml")));
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(stdout(&o).contains("\"job:bad\""), "{}", stdout(&o));

    let o = run(promlake()
        .args(["check", "config"])
        .arg(config("missing.yml")));
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(stdout(&o).contains("rule file not found"), "{}", stdout(&o));
}
