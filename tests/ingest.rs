//! Ingest end to end: the promlake binary scraping a loopback fleet into local disk and into a
//! real S3 server (LocalStack), read back by promlake and by DuckDB.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use object_store::{ObjectStore, ObjectStoreExt};
use promlake_core::block::{self, Row};
use promlake_core::catalog::{self, ListStats};
use promlake_core::labels::Labels;
use promlake_core::store::{self, StoreOptions};
use promlake_core::value::openmetrics_float;
use promlake_fleet::{Behaviour, Fleet, PageModel};

fn write_config(dir: &Path, body: &str) -> std::path::PathBuf {
    let p = dir.join("promlake.yml");
    std::fs::write(&p, body).unwrap();
    p
}

fn node_job(addrs: &[String]) -> String {
    let list = addrs
        .iter()
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("  - job_name: node\n    static_configs: [{{targets: [{list}]}}]\n")
}

async fn rows_of(store: &dyn ObjectStore, region: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    for b in catalog::list_blocks(store, region, None, &mut ListStats::default())
        .await
        .unwrap()
    {
        let bytes = store
            .get(&b.meta.location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        rows.extend(block::decode(b.meta.location.as_ref(), bytes).unwrap().1);
    }
    rows
}

/// The labels promlake stores for a model sample (Prometheus 3 normalises `le` of classic
/// histograms to float formatting).
fn expected_labels(s: &promlake_fleet::ModelSample, addr: &str) -> Labels {
    let mut pairs = vec![
        ("__name__".to_string(), s.name.clone()),
        ("instance".to_string(), addr.to_string()),
        ("job".to_string(), "node".to_string()),
    ];
    for (k, v) in &s.labels {
        let v = if k == "le" && s.name.ends_with("_bucket") {
            openmetrics_float(v.parse().unwrap())
        } else {
            v.clone()
        };
        pairs.push((k.clone(), v));
    }
    Labels::from_pairs(pairs)
}

#[test]
fn duckdb_reads_every_row_that_was_scraped() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let model = PageModel {
        series: 150,
        churn: 0.0,
    };
    let fleet = rt
        .block_on(Fleet::start(3, model.clone(), |_| Behaviour::Normal))
        .unwrap();
    let addrs = fleet.addresses();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = write_config(
        dir.path(),
        &format!(
            "storage: {}\nscrape_configs:\n{}",
            data.display(),
            node_job(&addrs)
        ),
    );
    let o = run(promlake().args(["scrape", "--once", "--config"]).arg(&cfg));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("3 target(s), 3 up, 0 down"),
        "{}",
        stdout(&o)
    );

    let py = python_with_duckdb();
    let script = format!(
        "import duckdb, json, struct\n\
         rows = duckdb.sql(\"SELECT metric, map_entries(labels) AS l, series_id, epoch_ms(timestamp) AS t, value, region FROM read_parquet('{}/blocks/**/*.parquet', hive_partitioning=true)\").fetchall()\n\
         print(json.dumps([[m, [[e['key'], e['value']] for e in l], str(i), t, str(struct.unpack('<Q', struct.pack('<d', v))[0]), r] for (m, l, i, t, v, r) in rows]))\n",
        data.display()
    );
    let out = Command::new(&py).args(["-c", &script]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();

    // Values travel as their IEEE-754 bits, so the comparison is bit for bit.
    let mut got: BTreeMap<String, u64> = BTreeMap::new();
    let mut times: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for r in &rows {
        let mut pairs = vec![("__name__".to_string(), r[0].as_str().unwrap().to_string())];
        for kv in r[1].as_array().unwrap() {
            pairs.push((
                kv[0].as_str().unwrap().into(),
                kv[1].as_str().unwrap().into(),
            ));
        }
        let labels = Labels::from_pairs(pairs);
        assert_eq!(
            r[2].as_str().unwrap(),
            labels.hash().to_string(),
            "series_id is Prometheus' hash of {labels}"
        );
        assert_eq!(
            r[5].as_str().unwrap(),
            "local",
            "region from the key's partition"
        );
        times
            .entry(labels.get("instance").unwrap().to_owned())
            .or_default()
            .insert(r[3].as_i64().unwrap());
        if labels.metric_name() != "scrape_duration_seconds" {
            let bits: u64 = r[4].as_str().unwrap().parse().unwrap();
            assert!(
                got.insert(labels.to_string(), bits).is_none(),
                "one row per series: {labels}"
            );
        }
    }
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for (i, addr) in addrs.iter().enumerate() {
        let samples = promlake_fleet::samples(&model, i as u64, 0);
        let n = samples.len() as f64;
        for s in &samples {
            want.insert(expected_labels(s, addr).to_string(), s.value.to_bits());
        }
        for (name, v) in [
            ("up", 1.0),
            ("scrape_samples_scraped", n),
            ("scrape_samples_post_metric_relabeling", n),
            ("scrape_series_added", n),
        ] {
            let l = Labels::from_pairs([
                ("__name__", name),
                ("instance", addr.as_str()),
                ("job", "node"),
            ]);
            want.insert(l.to_string(), f64::to_bits(v));
        }
        assert_eq!(
            times[addr].len(),
            1,
            "every sample of a scrape has the scrape's timestamp"
        );
    }
    let missing: Vec<_> = want
        .iter()
        .filter(|(k, v)| got.get(*k) != Some(v))
        .take(5)
        .collect();
    let extra: Vec<_> = got
        .iter()
        .filter(|(k, v)| want.get(*k) != Some(v))
        .take(5)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "expected but not read back: {missing:?}\nread back but not expected: {extra:?}"
    );
    assert_eq!(
        rows.len(),
        want.len() + addrs.len(),
        "plus one scrape_duration_seconds per target"
    );
}

#[test]
fn sharded_workers_on_s3_store_every_target_exactly_once() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let model = PageModel {
        series: 80,
        churn: 0.0,
    };
    let fleet = rt
        .block_on(Fleet::start(30, model.clone(), |_| Behaviour::Normal))
        .unwrap();
    let addrs = fleet.addresses();
    let url = promlake_core::testdata::s3_test_url("shards");
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "global: {{external_labels: {{region: eu1}}}}\nstorage: {url}\nscrape_configs:\n{}",
            node_job(&addrs)
        ),
    );
    let mut owned = 0;
    for k in 0..3 {
        let o = run(s3_env(&mut promlake())
            .args(["scrape", "--once", "--shard", &format!("{k}/3"), "--config"])
            .arg(&cfg));
        assert!(o.status.success(), "shard {k}: {}", stderr(&o));
        let out = stdout(&o);
        let n: usize = out
            .split(" target(s)")
            .next()
            .unwrap()
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(n > 0, "{out}");
        owned += n;
    }
    assert_eq!(owned, 30);
    let s = store::open(&url, &promlake_core::testdata::s3_test_options()).unwrap();
    let rows = rt.block_on(rows_of(s.store.as_ref(), "eu1"));
    let mut per_target: BTreeMap<String, usize> = BTreeMap::new();
    for r in &rows {
        *per_target
            .entry(r.labels.get("instance").unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(per_target.len(), 30);
    for (i, a) in addrs.iter().enumerate() {
        let expected = promlake_fleet::samples(&model, i as u64, 0).len() + 5;
        assert_eq!(per_target[a], expected, "{a}: every sample once");
        assert_eq!(fleet.scrapes(i), 1, "{a} scraped by exactly one worker");
    }
    let blocks = rt
        .block_on(catalog::list_blocks(
            s.store.as_ref(),
            "eu1",
            None,
            &mut ListStats::default(),
        ))
        .unwrap();
    let shards: BTreeSet<String> = blocks.iter().map(|b| b.key.shard.to_string()).collect();
    assert_eq!(
        shards,
        BTreeSet::from(["0/3".to_string(), "1/3".to_string(), "2/3".to_string()])
    );
}

#[test]
fn up_scrapes_itself_serves_metrics_and_flushes_on_sigterm() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fleet = rt
        .block_on(Fleet::start(
            2,
            PageModel {
                series: 60,
                churn: 0.0,
            },
            |_| Behaviour::Normal,
        ))
        .unwrap();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = write_config(
        dir.path(),
        &format!(
            "global: {{scrape_interval: 1s}}\nstorage: {{url: {}, flush_interval: 1h}}\nscrape_configs:\n  - job_name: promlake\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n{}",
            data.display(),
            node_job(&fleet.addresses())
        ),
    );
    let p = Proc::spawn(
        promlake()
            .args(["up", "--listen", &format!("127.0.0.1:{port}"), "--config"])
            .arg(&cfg),
    );
    wait_for("two successful rounds", Duration::from_secs(30), || {
        let m = http_get(&format!("http://127.0.0.1:{port}/metrics"))?;
        let line = m
            .lines()
            .find(|l| l.starts_with("promlake_scrapes_total") && l.contains("success"))?;
        (line.rsplit(' ').next()?.parse::<f64>().ok()? >= 6.0).then_some(())
    });
    assert!(http_get(&format!("http://127.0.0.1:{port}/-/healthy")).is_some());
    assert!(
        !data.join("blocks").exists(),
        "nothing flushed before the hour"
    );
    let o = p.terminate();
    assert!(o.status.success(), "{}", stderr(&o));
    let s = store::open(data.to_str().unwrap(), &StoreOptions::default()).unwrap();
    let rows = rt.block_on(rows_of(s.store.as_ref(), "local"));
    let ups: BTreeSet<String> = rows
        .iter()
        .filter(|r| r.labels.metric_name() == "up")
        .map(|r| r.labels.get("job").unwrap().to_owned())
        .collect();
    assert_eq!(
        ups,
        BTreeSet::from(["node".to_string(), "promlake".to_string()])
    );
    assert!(
        rows.iter()
            .any(|r| r.labels.metric_name() == "promlake_samples_scraped_total"),
        "promlake scraped itself"
    );
    let o = run(promlake()
        .args(["blocks", "ls", "--from", "now-1h", "--config"])
        .arg(&cfg));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("\n1 block(s)"), "{}", stdout(&o));
}

#[test]
fn a_worker_killed_at_any_moment_leaves_no_partial_block() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fleet = rt
        .block_on(Fleet::start(
            20,
            PageModel {
                series: 400,
                churn: 0.1,
            },
            |_| Behaviour::Normal,
        ))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = write_config(
        dir.path(),
        &format!(
            "global: {{scrape_interval: 1s}}\nstorage: {{url: {}, flush_interval: 1s}}\nscrape_configs:\n{}",
            data.display(),
            node_job(&fleet.addresses())
        ),
    );
    for i in 0..6u64 {
        let mut p = Proc::spawn(
            promlake()
                .args([
                    "up",
                    "--listen",
                    &format!("127.0.0.1:{}", free_port()),
                    "--config",
                ])
                .arg(&cfg),
        );
        std::thread::sleep(Duration::from_millis(1200 + i * 370));
        p.0.kill().unwrap(); // SIGKILL: no final flush
        let _ = p.0.wait();
    }
    let s = store::open(data.to_str().unwrap(), &StoreOptions::default()).unwrap();
    let store: Arc<dyn ObjectStore> = s.store.clone();
    let blocks = rt
        .block_on(catalog::list_blocks(
            store.as_ref(),
            "local",
            None,
            &mut ListStats::default(),
        ))
        .unwrap();
    assert!(blocks.len() >= 3, "{} blocks", blocks.len());
    for b in &blocks {
        let bytes = rt.block_on(async {
            store
                .get(&b.meta.location)
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
        });
        block::decode(b.meta.location.as_ref(), bytes)
            .unwrap_or_else(|e| panic!("partial block: {e}"));
    }
    // What DuckDB globs is exactly the complete blocks.
    let py = python_with_duckdb();
    let n = Command::new(py)
        .args(["-c", &format!("import duckdb; print(duckdb.sql(\"SELECT count(DISTINCT filename) FROM read_parquet('{}/blocks/**/*.parquet', filename=true)\").fetchall()[0][0])", data.display())])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&n.stdout).trim(),
        blocks.len().to_string(),
        "{}",
        String::from_utf8_lossy(&n.stderr)
    );
}

#[test]
fn staging_leftovers_of_a_killed_write_are_removed_at_start() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fleet = rt
        .block_on(Fleet::start(
            1,
            PageModel {
                series: 60,
                churn: 0.0,
            },
            |_| Behaviour::Normal,
        ))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let hour = data.join("blocks/region=local/day=2026-11-23/hour=23");
    std::fs::create_dir_all(&hour).unwrap();
    // What object_store's LocalFileSystem leaves when killed mid-write: `<key>#<n>`, partial.
    // One of this worker's own blocks (shard 0of1, replica 0), and an old one of another worker.
    let ours = hour.join("1795477200000-1795477200000-0of1-0-01KAT000000000000000000000.parquet#1");
    let theirs =
        hour.join("1795477200000-1795477200000-0of1-other-01KAT000000000000000000001.parquet#7");
    std::fs::write(&ours, b"PAR1 partial").unwrap();
    std::fs::write(&theirs, b"PAR1 partial").unwrap();
    assert!(
        Command::new("touch")
            .args(["-d", "2020-01-01"])
            .arg(&theirs)
            .status()
            .unwrap()
            .success()
    );
    let cfg = write_config(
        dir.path(),
        &format!(
            "storage: {}\nscrape_configs:\n{}",
            data.display(),
            node_job(&fleet.addresses())
        ),
    );
    let o = run(promlake().args(["scrape", "--once", "--config"]).arg(&cfg));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!ours.exists() && !theirs.exists(), "leftovers removed");
    // Engines that read every file under blocks/ (pyarrow.dataset, DuckDB's blocks/**) work.
    let py = python_with_duckdb();
    let out = Command::new(py)
        .args([
            "-c",
            &format!(
                "import pyarrow.dataset as ds; print(ds.dataset('{}/blocks', format='parquet', partitioning='hive').to_table().num_rows)",
                data.display()
            ),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u64>()
            .unwrap()
            > 60
    );
}

#[test]
fn sigterm_during_a_storage_outage_spills_and_the_next_start_writes_it_first() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fleet = rt
        .block_on(Fleet::start(
            1,
            PageModel {
                series: 60,
                churn: 0.0,
            },
            |_| Behaviour::Normal,
        ))
        .unwrap();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let spill = dir.path().join("spill");
    let cfg = write_config(
        dir.path(),
        &format!(
            "global: {{scrape_interval: 1s}}\nstorage: {{url: {}, flush_interval: 1h}}\nscrape_configs:\n  - job_name: promlake\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n{}",
            data.display(),
            node_job(&fleet.addresses())
        ),
    );
    let p = Proc::spawn(
        promlake()
            .args(["up", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--shutdown-timeout", "2s", "--spill-dir"])
            .arg(&spill)
            .arg("--config")
            .arg(&cfg),
    );
    wait_for(
        "the target scraped three times",
        Duration::from_secs(30),
        || (fleet.scrapes(0) >= 3).then_some(()),
    );
    // Storage breaks: no block can be created under blocks/.
    std::fs::write(data.join("blocks"), b"not a directory").unwrap();
    let o = p.terminate();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("kept in"), "{}", stderr(&o));
    let spilled: usize = std::fs::read_dir(spill.join("blocks/region=local"))
        .unwrap()
        .count();
    assert!(spilled > 0);

    // Storage is back; the next start writes what was spilled.
    std::fs::remove_file(data.join("blocks")).unwrap();
    let o = run(promlake()
        .args(["scrape", "--once", "--spill-dir"])
        .arg(&spill)
        .arg("--config")
        .arg(&cfg));
    assert!(o.status.success(), "{}", stderr(&o));
    let s = store::open(data.to_str().unwrap(), &StoreOptions::default()).unwrap();
    let rows = rt.block_on(rows_of(s.store.as_ref(), "local"));
    let node_ups = rows
        .iter()
        .filter(|r| r.labels.metric_name() == "up" && r.labels.get("job") == Some("node"))
        .count();
    assert_eq!(
        node_ups as u64,
        fleet.scrapes(0),
        "every scrape stored: the spilled ones and this run's"
    );
    let files: Vec<_> = walk_files(&spill);
    assert!(
        files.is_empty(),
        "spill files removed once written: {files:?}"
    );
}

fn walk_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk_files(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn sighup_and_post_reload_apply_a_new_config_and_keep_what_is_buffered() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fleet = rt
        .block_on(Fleet::start(
            2,
            PageModel {
                series: 60,
                churn: 0.0,
            },
            |_| Behaviour::Normal,
        ))
        .unwrap();
    let addrs = fleet.addresses();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = |jobs: &str| {
        write_config(
            dir.path(),
            &format!(
                "global: {{scrape_interval: 1s}}\nstorage: {{url: {}, flush_interval: 1h}}\nscrape_configs:\n{jobs}",
                data.display()
            ),
        )
    };
    let cfg = config(&node_job(&addrs[..1]));
    let p = Proc::spawn(
        promlake()
            .args(["up", "--listen", &format!("127.0.0.1:{port}"), "--config"])
            .arg(&cfg),
    );
    wait_for("the first target scraped", Duration::from_secs(30), || {
        (fleet.scrapes(0) >= 2).then_some(())
    });
    // SIGHUP: a second job, and a rule file.
    std::fs::write(
        dir.path().join("rules.yml"),
        "groups:\n  - name: reloaded\n    rules:\n      - record: job:up:sum\n        expr: SELECT 1.0 AS value\n",
    )
    .unwrap();
    let path = config(&format!(
        "{}  - job_name: extra\n    static_configs: [{{targets: ['{}']}}]\n",
        node_job(&addrs[..1]),
        addrs[1]
    ));
    let with_rules = std::fs::read_to_string(&path).unwrap().replacen(
        "scrape_configs:",
        "rule_files: [rules.yml]\nscrape_configs:",
        1,
    );
    std::fs::write(&path, with_rules).unwrap();
    let pid = p.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    wait_for(
        "the new job's target scraped",
        Duration::from_secs(30),
        || (fleet.scrapes(1) >= 2).then_some(()),
    );
    wait_for("the new rule group served", Duration::from_secs(30), || {
        let rules = http_get(&format!("http://127.0.0.1:{port}/api/v1/rules"))?;
        rules.contains("\"reloaded\"").then_some(())
    });
    // POST /-/reload with a config that does not load: reported, the old one kept.
    config("  - job_name: broken\n    no_such_key: 1\n");
    let out = Command::new("curl")
        .args(["-sS", "-X", "POST", "-w", "\n%{http_code}"])
        .arg(format!("http://127.0.0.1:{port}/-/reload"))
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(body.ends_with("500"), "{body}");
    assert!(body.contains("no_such_key"), "{body}");
    let seen = fleet.scrapes(1);
    wait_for(
        "scraping goes on with the old config",
        Duration::from_secs(30),
        || (fleet.scrapes(1) >= seen + 2).then_some(()),
    );
    let o = p.terminate();
    assert!(o.status.success(), "{}", stderr(&o));
    // Nothing was flushed before SIGTERM (flush_interval: 1h): every scrape made it.
    let s = store::open(data.to_str().unwrap(), &StoreOptions::default()).unwrap();
    let rows = rt.block_on(rows_of(s.store.as_ref(), "local"));
    for (i, a) in addrs.iter().enumerate() {
        let ups = rows
            .iter()
            .filter(|r| r.labels.metric_name() == "up" && r.labels.get("instance") == Some(a))
            .count() as u64;
        assert_eq!(ups, fleet.scrapes(i), "{a}");
    }
}

/// A SIGTERM that arrives while `up` is still starting (its port bound, the rest being set up) is
/// a shutdown with a final flush, not the signal's default action (the handler used to be
/// installed only after start-up).
#[test]
fn sigterm_while_up_starts_stops_with_a_final_flush() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = write_config(
        dir.path(),
        &format!(
            "storage: {{url: {}}}\nscrape_configs: []\n",
            dir.path().join("data").display()
        ),
    );
    for _ in 0..3 {
        let p = Proc::spawn(
            promlake()
                .args(["up", "--listen", &format!("127.0.0.1:{port}"), "--config"])
                .arg(&cfg),
        );
        // As soon as the port is bound: up is still starting (the query service, the workers).
        let bound = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                bound.elapsed() < Duration::from_secs(30),
                "up never listened"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let o = p.terminate();
        assert!(o.status.success(), "{:?}: {}", o.status, stderr(&o));
        assert!(
            stdout(&o).contains("promlake up: stopping"),
            "{}",
            stdout(&o)
        );
    }
}
