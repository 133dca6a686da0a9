//! The scrape worker against real HTTP targets on loopback and a store (InMemory with a
//! fault-injecting wrapper; the S3 server in the end-to-end tests).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use object_store::memory::InMemory;
use promlake_core::block::{self, Row};
use promlake_core::catalog::{self, ListStats};
use promlake_core::clock::{ManualClock, SharedClock};
use promlake_core::config::Config;
use promlake_core::faults::{FaultPlan, InstrumentedStore};
use promlake_core::labels::Labels;
use promlake_core::shard::Shard;
use promlake_core::telemetry::Registry;
use promlake_core::value::is_stale_nan;
use promlake_fleet::{Behaviour, Fleet, PageModel};
use promlake_scrape::worker::{Worker, WorkerOptions};

const T0: i64 = 1_795_477_200_000; // 2026-11-23T23:40:00Z

fn config(jobs: &str) -> Arc<Config> {
    Arc::new(
        Config::parse(&format!(
            "global: {{scrape_interval: 15s, scrape_timeout: 5s}}\nscrape_configs:\n{jobs}"
        ))
        .unwrap(),
    )
}

fn static_job(name: &str, addrs: &[String], extra: &str) -> String {
    let targets: Vec<String> = addrs.iter().map(|a| format!("'{a}'")).collect();
    format!(
        "  - job_name: {name}\n    static_configs: [{{targets: [{}]}}]\n{extra}",
        targets.join(", ")
    )
}

async fn worker(
    cfg: Arc<Config>,
    store: Arc<dyn ObjectStore>,
    clock: Arc<ManualClock>,
    shard: Shard,
    replica: &str,
) -> Worker {
    let clock: SharedClock = clock;
    Worker::new(
        cfg,
        WorkerOptions::new(shard, replica, "test"),
        store,
        clock,
        &Registry::new(),
    )
    .await
    .unwrap()
}

async fn all_rows(store: &dyn ObjectStore) -> Vec<Row> {
    let mut rows = Vec::new();
    for b in catalog::list_blocks(store, "test", None, &mut ListStats::default())
        .await
        .unwrap()
    {
        let bytes = store
            .get_opts(&b.meta.location, Default::default())
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        rows.extend(block::decode(b.meta.location.as_ref(), bytes).unwrap().1);
    }
    rows
}

fn value_of(rows: &[Row], metric: &str, instance: &str) -> Vec<f64> {
    rows.iter()
        .filter(|r| r.labels.metric_name() == metric && r.labels.get("instance") == Some(instance))
        .map(|r| r.value)
        .collect()
}

#[tokio::test]
async fn bad_targets_are_down_and_good_ones_are_stored() {
    let fleet = Fleet::start(7, PageModel::default(), |i| match i {
        0 | 1 => Behaviour::Normal,
        2 => Behaviour::Garbage,
        3 => Behaviour::Hang,
        4 => Behaviour::Reset,
        5 => Behaviour::Huge(2 << 30),
        _ => Behaviour::Status(500),
    })
    .await
    .unwrap();
    let addrs = fleet.addresses();
    let cfg = config(&static_job(
        "node",
        &addrs,
        "    scrape_timeout: 3s\n    body_size_limit: 8MB\n",
    ));
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let clock = Arc::new(ManualClock::new(T0));
    let mut w = worker(cfg, store.clone(), clock.clone(), Shard::ALL, "a").await;
    let round = w.scrape_all().await;
    assert_eq!((round.targets, round.up, round.down), (7, 2, 5));
    let health: HashMap<String, Option<String>> = w
        .target_health()
        .into_iter()
        .map(|(_, url, h)| (url, h.error))
        .collect();
    let err = |i: usize| {
        health[&format!("http://{}/metrics", addrs[i])]
            .clone()
            .unwrap_or_default()
    };
    assert!(err(2).contains("parsing the page"), "{}", err(2));
    assert!(err(3).contains("timed out"), "{}", err(3));
    assert!(!err(4).is_empty());
    assert!(err(5).contains("body size limit"), "{}", err(5));
    assert!(err(6).contains("500"), "{}", err(6));
    let f = w.flush(false).await;
    assert_eq!(f.blocks_written, 1);
    let rows = all_rows(store.as_ref()).await;
    for (i, a) in addrs.iter().enumerate() {
        let up = value_of(&rows, "up", a);
        assert_eq!(up, vec![if i < 2 { 1.0 } else { 0.0 }], "target {i}");
    }
    let expected = promlake_fleet::samples(&fleet.model, 0, 0).len();
    let stored = rows
        .iter()
        .filter(|r| {
            r.labels.get("instance") == Some(addrs[0].as_str())
                && !r.labels.metric_name().starts_with("scrape_")
                && r.labels.metric_name() != "up"
        })
        .count();
    assert_eq!(stored, expected);
    assert_eq!(
        value_of(&rows, "scrape_samples_scraped", &addrs[0]),
        vec![expected as f64]
    );
    assert_eq!(
        value_of(&rows, "scrape_series_added", &addrs[0]),
        vec![expected as f64]
    );
}

#[tokio::test]
async fn staleness_survives_a_new_invocation() {
    let pages = Arc::new(vec!["a 1\nb{x=\"1\"} 2\n".to_string(), "a 3\n".to_string()]);
    let fleet = Fleet::start(2, PageModel::default(), |i| match i {
        0 => Behaviour::Sequence(pages.clone()),
        _ => Behaviour::Normal,
    })
    .await
    .unwrap();
    let addrs = fleet.addresses();
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let clock = Arc::new(ManualClock::new(T0));

    // First invocation: both targets.
    let cfg = config(&format!(
        "{}{}",
        static_job("seq", &addrs[..1], ""),
        static_job("node", &addrs[1..], "")
    ));
    let mut w = worker(cfg, store.clone(), clock.clone(), Shard::ALL, "a").await;
    w.scrape_all().await;
    let f = w.flush(true).await;
    assert!(f.state_written);
    drop(w);

    // Second invocation, 15 s later: `b` vanished from the first target, and the second target
    // is no longer in the config.
    clock.advance(Duration::from_secs(15));
    let t1 = T0 + 15_000;
    let cfg = config(&static_job("seq", &addrs[..1], ""));
    let mut w = worker(cfg, store.clone(), clock.clone(), Shard::ALL, "a").await;
    let round = w.scrape_all().await;
    assert_eq!(
        round.removed_targets, 0,
        "the removed target is known from the state only"
    );
    w.flush(true).await;
    let rows = all_rows(store.as_ref()).await;
    let stale: Vec<&Row> = rows.iter().filter(|r| is_stale_nan(r.value)).collect();
    let b_stale: Vec<_> = stale
        .iter()
        .filter(|r| r.labels.metric_name() == "b")
        .collect();
    assert_eq!(b_stale.len(), 1);
    assert_eq!(b_stale[0].timestamp_ms, t1);
    // Every series of the removed target is marked stale, its `up` included.
    let gone = addrs[1].as_str();
    let gone_series = rows
        .iter()
        .filter(|r| r.labels.get("instance") == Some(gone) && r.timestamp_ms == T0)
        .count();
    let gone_stale = stale
        .iter()
        .filter(|r| r.labels.get("instance") == Some(gone))
        .count();
    assert_eq!(gone_stale, gone_series);
    assert!(
        stale
            .iter()
            .any(|r| r.labels.get("instance") == Some(gone) && r.labels.metric_name() == "up")
    );
    // `a` is not stale.
    assert!(!stale.iter().any(|r| r.labels.metric_name() == "a"));
}

#[tokio::test]
async fn a_failing_target_gets_stale_markers_and_up_zero() {
    let pages = Arc::new(vec!["a 1\n".to_string(), "not a { page".to_string()]);
    let fleet = Fleet::start(1, PageModel::default(), |_| {
        Behaviour::Sequence(pages.clone())
    })
    .await
    .unwrap();
    let addrs = fleet.addresses();
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let clock = Arc::new(ManualClock::new(T0));
    let mut w = worker(
        config(&static_job("j", &addrs, "")),
        store.clone(),
        clock.clone(),
        Shard::ALL,
        "a",
    )
    .await;
    w.scrape_all().await;
    clock.advance(Duration::from_secs(15));
    let r = w.scrape_all().await;
    assert_eq!((r.up, r.down, r.stale_markers), (0, 1, 1));
    w.flush(false).await;
    let rows = all_rows(store.as_ref()).await;
    assert_eq!(value_of(&rows, "up", &addrs[0]), vec![1.0, 0.0]);
    let a: Vec<f64> = value_of(&rows, "a", &addrs[0]);
    assert_eq!(a[0], 1.0);
    assert!(is_stale_nan(a[1]));
}

#[tokio::test]
async fn sample_limit_fails_the_scrape() {
    let fleet = Fleet::start(1, PageModel::default(), |_| Behaviour::Normal)
        .await
        .unwrap();
    let addrs = fleet.addresses();
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let clock = Arc::new(ManualClock::new(T0));
    let mut w = worker(
        config(&static_job("j", &addrs, "    sample_limit: 10\n")),
        store.clone(),
        clock,
        Shard::ALL,
        "a",
    )
    .await;
    let r = w.scrape_all().await;
    assert_eq!(r.down, 1);
    assert!(
        w.target_health()[0]
            .2
            .error
            .as_deref()
            .unwrap()
            .contains("sample limit")
    );
}

#[tokio::test]
async fn every_sample_is_stored_exactly_once_despite_store_failures() {
    let fleet = Fleet::start(
        4,
        PageModel {
            series: 120,
            churn: 0.3,
        },
        |_| Behaviour::Normal,
    )
    .await
    .unwrap();
    let addrs = fleet.addresses();
    let faulty = Arc::new(InstrumentedStore::new(Arc::new(InMemory::new())));
    let store: Arc<dyn ObjectStore> = faulty.clone();
    let clock = Arc::new(ManualClock::new(T0));
    let mut w = worker(
        config(&static_job("node", &addrs, "")),
        store.clone(),
        clock.clone(),
        Shard::ALL,
        "a",
    )
    .await;
    let mut scraped = 0u64;
    let plans = [
        FaultPlan {
            fail_puts: 1,
            put_key_filter: Some("blocks/".into()),
            ..Default::default()
        },
        FaultPlan {
            lose_put_responses: 1,
            put_key_filter: Some("blocks/".into()),
            ..Default::default()
        },
        FaultPlan {
            fail_puts: 3,
            put_key_filter: Some("blocks/".into()),
            ..Default::default()
        },
        FaultPlan::default(),
        FaultPlan::default(),
    ];
    let mut pending_seen = false;
    for plan in plans {
        for _ in 0..4 {
            scraped += w.scrape_all().await.samples;
            clock.advance(Duration::from_secs(15));
        }
        faulty.set_plan(plan);
        let f = w.flush(false).await;
        pending_seen |= f.blocks_pending > 0;
    }
    assert!(pending_seen, "some flushes left blocks pending");
    let f = w.flush(true).await;
    assert_eq!(f.blocks_pending, 0);
    let rows = all_rows(store.as_ref()).await;
    assert_eq!(rows.len() as u64, scraped, "every scraped sample stored");
    let mut seen = HashMap::new();
    for r in &rows {
        *seen.entry((r.series_id, r.timestamp_ms)).or_insert(0) += 1;
    }
    assert!(seen.values().all(|n| *n == 1), "no sample stored twice");
}

#[tokio::test]
async fn ha_replicas_both_write_and_name_themselves() {
    let fleet = Fleet::start(
        3,
        PageModel {
            series: 80,
            churn: 0.0,
        },
        |_| Behaviour::Normal,
    )
    .await
    .unwrap();
    let addrs = fleet.addresses();
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let clock = Arc::new(ManualClock::new(T0));
    for replica in ["a", "b"] {
        let mut w = worker(
            config(&static_job("node", &addrs, "")),
            store.clone(),
            clock.clone(),
            Shard::ALL,
            replica,
        )
        .await;
        w.scrape_all().await;
        w.flush(true).await;
    }
    let blocks = catalog::list_blocks(store.as_ref(), "test", None, &mut ListStats::default())
        .await
        .unwrap();
    let replicas: Vec<&str> = blocks.iter().map(|b| b.key.replica.as_str()).collect();
    assert_eq!(replicas.len(), 2);
    assert!(replicas.contains(&"a") && replicas.contains(&"b"));
    for b in &blocks {
        let bytes = store
            .get_opts(&b.meta.location, Default::default())
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let (meta, _) = block::decode(b.meta.location.as_ref(), bytes).unwrap();
        assert_eq!(
            meta.replica, b.key.replica,
            "the footer names the replica too"
        );
    }
}

#[tokio::test]
async fn shards_split_the_fleet_without_overlap() {
    let fleet = Fleet::start(
        20,
        PageModel {
            series: 60,
            churn: 0.0,
        },
        |_| Behaviour::Normal,
    )
    .await
    .unwrap();
    let addrs = fleet.addresses();
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let clock = Arc::new(ManualClock::new(T0));
    let mut per_shard = Vec::new();
    for k in 0..3 {
        let mut w = worker(
            config(&static_job("node", &addrs, "")),
            store.clone(),
            clock.clone(),
            Shard::new(k, 3).unwrap(),
            "a",
        )
        .await;
        per_shard.push(w.scrape_all().await.targets);
        w.flush(true).await;
    }
    assert_eq!(per_shard.iter().sum::<usize>(), 20);
    assert!(per_shard.iter().all(|n| *n > 0), "{per_shard:?}");
    let rows = all_rows(store.as_ref()).await;
    let mut ups: BTreeMap<String, usize> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.labels.metric_name() == "up") {
        *ups.entry(r.labels.get("instance").unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(ups.len(), 20);
    assert!(
        ups.values().all(|n| *n == 1),
        "each target scraped by exactly one shard"
    );
}

#[tokio::test]
async fn target_labels_and_relabeling_reach_the_stored_series() {
    let fleet = Fleet::start(
        1,
        PageModel {
            series: 60,
            churn: 0.0,
        },
        |_| Behaviour::Normal,
    )
    .await
    .unwrap();
    let addrs = fleet.addresses();
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let clock = Arc::new(ManualClock::new(T0));
    let job = format!(
        "  - job_name: node\n    static_configs: [{{targets: ['{}'], labels: {{env: prod}}}}]\n    metric_relabel_configs:\n      - {{source_labels: [__name__], regex: 'node_load.*', action: drop}}\n      - {{source_labels: [mountpoint], target_label: mount}}\n      - {{action: labeldrop, regex: mountpoint}}\n",
        addrs[0]
    );
    let mut w = worker(config(&job), store.clone(), clock, Shard::ALL, "a").await;
    w.scrape_all().await;
    w.flush(true).await;
    let rows = all_rows(store.as_ref()).await;
    assert!(
        !rows
            .iter()
            .any(|r| r.labels.metric_name().starts_with("node_load"))
    );
    let fs: Vec<&Row> = rows
        .iter()
        .filter(|r| r.labels.metric_name() == "node_filesystem_size_bytes")
        .collect();
    let mounts: std::collections::BTreeSet<&str> =
        fs.iter().map(|r| r.labels.get("mount").unwrap()).collect();
    assert_eq!(
        mounts,
        ["/", "/boot", "/home", "/var"].into_iter().collect()
    );
    for r in &fs {
        assert_eq!(r.labels.get("mountpoint"), None);
        assert_eq!(r.labels.get("env"), Some("prod"));
        assert_eq!(r.labels.get("job"), Some("node"));
    }
    let up = rows
        .iter()
        .find(|r| r.labels.metric_name() == "up")
        .unwrap();
    assert_eq!(
        up.labels,
        Labels::from_pairs([
            ("__name__", "up"),
            ("env", "prod"),
            ("instance", addrs[0].as_str()),
            ("job", "node")
        ])
    );
}

/// The value of one line of the registry's exposition (`name{...labels...} value`).
fn metric_value(registry: &Registry, name: &str, label: &str) -> Option<f64> {
    registry
        .render()
        .lines()
        .find(|l| l.starts_with(name) && l.contains(label))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn out_of_range_timestamps_are_rejected_per_sample_and_the_rest_is_kept() {
    // Text format: milliseconds. i64::MIN (what a Go exporter writes for a zero time.Time in
    // milliseconds), the first millisecond of year 10000, and two good samples.
    let text = format!(
        "a 1 -9223372036854775808\nb 2 253402300800000\nc 3\nd 4 {}\n",
        T0 - 1000
    );
    // OpenMetrics: float seconds; -1e300 saturates to i64::MIN milliseconds.
    let om = format!("e 1 -1e300\nf 2 {}\n# EOF\n", (T0 - 1000) / 1000);
    let fleet = Fleet::start(2, PageModel::default(), |i| match i {
        0 => Behaviour::Static(
            Arc::new(text.clone().into_bytes()),
            "text/plain; version=0.0.4".into(),
        ),
        _ => Behaviour::Static(
            Arc::new(om.clone().into_bytes()),
            "application/openmetrics-text; version=1.0.0".into(),
        ),
    })
    .await
    .unwrap();
    let addrs = fleet.addresses();
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let clock = Arc::new(ManualClock::new(T0));
    let registry = Registry::new();
    let shared: SharedClock = clock.clone();
    let mut w = Worker::new(
        config(&static_job("j", &addrs, "")),
        WorkerOptions::new(Shard::ALL, "a", "test"),
        store.clone(),
        shared,
        &registry,
    )
    .await
    .unwrap();
    let r = w.scrape_all().await;
    assert_eq!((r.up, r.down), (2, 0), "{:?}", w.target_health());
    let f = w.flush(true).await;
    assert_eq!(f.blocks_pending, 0);
    let rows = all_rows(store.as_ref()).await;
    let metrics: std::collections::BTreeSet<&str> =
        rows.iter().map(|r| r.labels.metric_name()).collect();
    for m in ["c", "d", "f", "up"] {
        assert!(metrics.contains(m), "{m} kept: {metrics:?}");
    }
    for m in ["a", "b", "e"] {
        assert!(!metrics.contains(m), "{m} rejected: {metrics:?}");
    }
    for r in &rows {
        assert!(
            (promlake_core::block::MIN_TIMESTAMP_MS..=promlake_core::block::MAX_TIMESTAMP_MS)
                .contains(&r.timestamp_ms),
            "{r:?}"
        );
    }
    assert_eq!(
        value_of(&rows, "scrape_samples_scraped", &addrs[0]),
        vec![4.0]
    );
    assert_eq!(
        value_of(&rows, "scrape_samples_post_metric_relabeling", &addrs[0]),
        vec![2.0]
    );
    assert_eq!(
        metric_value(
            &registry,
            "promlake_samples_rejected_total",
            "reason=\"out_of_bounds\""
        ),
        Some(3.0)
    );
}

/// Moves the manual clock by `step` until `count()` reaches `n`, giving the worker up to 2 s of
/// real time after each step to catch up (a step it misses is a slot skipped, as when a worker
/// starts after the clock moved). False when 30 s of real time pass first.
async fn advance_until(
    clock: &ManualClock,
    step: Duration,
    n: u64,
    count: impl Fn() -> u64,
) -> bool {
    let mut waited = Duration::ZERO;
    while count() < n {
        let before = count();
        clock.advance(step);
        let mut this_step = Duration::ZERO;
        while count() == before && this_step < Duration::from_secs(2) {
            if waited > Duration::from_secs(30) {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            this_step += Duration::from_millis(20);
            waited += Duration::from_millis(20);
        }
    }
    true
}

/// Successful scrapes the worker has taken in.
fn scrapes_ok(registry: &Registry) -> u64 {
    metric_value(registry, "promlake_scrapes_total", "result=\"success\"").unwrap_or(0.0) as u64
}

async fn running_worker(
    cfg: Arc<Config>,
    opts: WorkerOptions,
    store: Arc<dyn ObjectStore>,
    clock: Arc<ManualClock>,
) -> (
    Registry,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<(Worker, promlake_scrape::worker::ShutdownReport)>,
) {
    let registry = Registry::new();
    let shared: SharedClock = clock;
    let w = Worker::new(cfg, opts, store, shared, &registry)
        .await
        .unwrap();
    let (stop, handle) = running(w);
    (registry, stop, handle)
}

fn running(
    w: Worker,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<(Worker, promlake_scrape::worker::ShutdownReport)>,
) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let h = tokio::spawn(w.run(async move {
        let _ = rx.await;
    }));
    (tx, h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_target_does_not_hold_back_the_others() {
    // Target 0 never answers and may take 10 minutes; target 1 is scraped every second.
    let fleet = Fleet::start(
        2,
        PageModel {
            series: 60,
            churn: 0.0,
        },
        |i| match i {
            0 => Behaviour::Hang,
            _ => Behaviour::Normal,
        },
    )
    .await
    .unwrap();
    let addrs = fleet.addresses();
    let cfg = config(&format!(
        "{}{}",
        static_job(
            "slow",
            &addrs[..1],
            "    scrape_interval: 10m\n    scrape_timeout: 10m\n"
        ),
        static_job(
            "fast",
            &addrs[1..],
            "    scrape_interval: 1s\n    scrape_timeout: 1s\n"
        ),
    ));
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let clock = Arc::new(ManualClock::new(T0));
    let opts = WorkerOptions::new(Shard::ALL, "a", "test");
    let (registry, stop, handle) = running_worker(cfg, opts, store.clone(), clock.clone()).await;
    // The fast target's first scrape shows the targets are known; ten minutes on, both are
    // due and the slow one hangs.
    assert!(advance_until(&clock, Duration::from_secs(1), 1, || scrapes_ok(&registry)).await);
    assert!(advance_until(&clock, Duration::from_secs(600), 1, || fleet.scrapes(0)).await);
    let before = scrapes_ok(&registry);
    assert!(
        advance_until(&clock, Duration::from_secs(1), before + 5, || scrapes_ok(
            &registry
        ))
        .await,
        "the fast target is scraped on its own schedule while the slow one is outstanding"
    );
    assert_eq!(fleet.scrapes(0), 1, "the slow target is still outstanding");
    stop.send(()).unwrap();
    let (_, report) = handle.await.unwrap();
    assert_eq!(report.samples_lost, 0);
    // One `up` per scrape of the fast target, each in its own slot of the 1 s grid.
    let rows = all_rows(store.as_ref()).await;
    let mut ts: Vec<i64> = rows
        .iter()
        .filter(|r| r.labels.metric_name() == "up" && r.labels.get("job") == Some("fast"))
        .map(|r| r.timestamp_ms)
        .collect();
    ts.sort();
    assert_eq!(ts.len() as u64, fleet.scrapes(1));
    assert!(ts.windows(2).all(|w| w[1] / 1000 > w[0] / 1000), "{ts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_storage_does_not_stop_scraping_and_loses_nothing() {
    let fleet = Fleet::start(
        1,
        PageModel {
            series: 60,
            churn: 0.0,
        },
        |_| Behaviour::Normal,
    )
    .await
    .unwrap();
    let addrs = fleet.addresses();
    let cfg = Arc::new(
        Config::parse(&format!(
            "global: {{scrape_interval: 1s, scrape_timeout: 1s}}\nstorage: {{url: 'memory://', flush_interval: 1s}}\nscrape_configs:\n{}",
            static_job("node", &addrs, "")
        ))
        .unwrap(),
    );
    let faulty = Arc::new(InstrumentedStore::new(Arc::new(InMemory::new())));
    let store: Arc<dyn ObjectStore> = faulty.clone();
    let clock = Arc::new(ManualClock::new(T0));
    let mut opts = WorkerOptions::new(Shard::ALL, "a", "test");
    opts.shutdown_timeout = Duration::from_secs(3);
    // Every request to storage hangs for ten minutes (the worker's state was read already).
    let (registry, stop, handle) = running_worker(cfg, opts, store.clone(), clock.clone()).await;
    faulty.set_plan(FaultPlan {
        delay: Some(Duration::from_secs(600)),
        ..Default::default()
    });
    assert!(
        advance_until(&clock, Duration::from_secs(1), 8, || scrapes_ok(&registry)).await,
        "scrapes go on while flushes hang"
    );
    // Storage recovers; the stuck write is abandoned at shutdown and everything is written.
    faulty.set_plan(FaultPlan::default());
    stop.send(()).unwrap();
    let (_, report) = handle.await.unwrap();
    assert_eq!(
        (report.samples_lost, report.samples_spilled),
        (0, 0),
        "{report:?}"
    );
    let rows = all_rows(store.as_ref()).await;
    assert_eq!(
        value_of(&rows, "up", &addrs[0]).len() as u64,
        fleet.scrapes(0),
        "every scrape stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_during_an_outage_spills_and_the_next_start_writes_it_first() {
    let fleet = Fleet::start(
        1,
        PageModel {
            series: 60,
            churn: 0.0,
        },
        |_| Behaviour::Normal,
    )
    .await
    .unwrap();
    let addrs = fleet.addresses();
    let cfg = Arc::new(
        Config::parse(&format!(
            "global: {{scrape_interval: 1s, scrape_timeout: 1s}}\nstorage: {{url: 'memory://', flush_interval: 1s}}\nscrape_configs:\n{}",
            static_job("node", &addrs, "")
        ))
        .unwrap(),
    );
    let spill = tempfile::tempdir().unwrap();
    let faulty = Arc::new(InstrumentedStore::new(Arc::new(InMemory::new())));
    let store: Arc<dyn ObjectStore> = faulty.clone();
    let clock = Arc::new(ManualClock::new(T0));
    let options = || {
        let mut o = WorkerOptions::new(Shard::ALL, "a", "test");
        o.shutdown_timeout = Duration::from_secs(2);
        o.spill_dir = Some(spill.path().to_owned());
        o
    };
    let shared: SharedClock = clock.clone();
    // Every block write fails.
    faulty.set_plan(FaultPlan {
        fail_puts: u64::MAX,
        put_key_filter: Some("blocks/".into()),
        ..Default::default()
    });
    let (registry, stop, handle) =
        running_worker(cfg.clone(), options(), store.clone(), clock.clone()).await;
    assert!(advance_until(&clock, Duration::from_secs(1), 4, || scrapes_ok(&registry)).await);
    stop.send(()).unwrap();
    let (_, report) = handle.await.unwrap();
    assert_eq!(report.samples_lost, 0, "{report:?}");
    assert!(report.samples_spilled > 0, "{report:?}");
    assert!(all_rows(store.as_ref()).await.is_empty());
    let scraped = fleet.scrapes(0);

    // The next start on this machine writes the spilled blocks before anything else.
    faulty.set_plan(FaultPlan::default());
    let puts = faulty.counts.puts();
    let mut w = Worker::new(cfg, options(), store.clone(), shared, &Registry::new())
        .await
        .unwrap();
    let f = w.flush(false).await;
    assert_eq!(f.blocks_pending, 0);
    assert!(faulty.counts.puts() > puts);
    let rows = all_rows(store.as_ref()).await;
    assert_eq!(value_of(&rows, "up", &addrs[0]).len() as u64, scraped);
    assert_eq!(f.rows_written, report.samples_spilled);
    let left: Vec<_> = walk(spill.path());
    assert!(
        left.is_empty(),
        "spill files removed once written: {left:?}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_the_targets_and_keeps_what_is_buffered() {
    let fleet = Fleet::start(
        2,
        PageModel {
            series: 60,
            churn: 0.0,
        },
        |_| Behaviour::Normal,
    )
    .await
    .unwrap();
    let addrs = fleet.addresses();
    let cfg = |jobs: String| {
        Arc::new(
            Config::parse(&format!(
                "global: {{scrape_interval: 1s, scrape_timeout: 1s}}\nstorage: {{url: 'memory://', flush_interval: 1h}}\nscrape_configs:\n{jobs}"
            ))
            .unwrap(),
        )
    };
    let before = cfg(static_job("a", &addrs[..1], ""));
    let after = cfg(format!(
        "{}{}",
        static_job("b", &addrs[1..], ""),
        static_job("a", &addrs[..1], "")
    ));
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let clock = Arc::new(ManualClock::new(T0));
    let registry = Registry::new();
    let shared: SharedClock = clock.clone();
    let w = Worker::new(
        before.clone(),
        WorkerOptions::new(Shard::ALL, "a", "test"),
        store.clone(),
        shared,
        &registry,
    )
    .await
    .unwrap();
    let (reload, reloads) = tokio::sync::watch::channel(before);
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(w.run_reloading(
        async move {
            let _ = rx.await;
        },
        reloads,
    ));
    assert!(advance_until(&clock, Duration::from_secs(1), 3, || scrapes_ok(&registry)).await);
    reload.send(after).unwrap();
    assert!(
        advance_until(&clock, Duration::from_secs(1), 2, || fleet.scrapes(1)).await,
        "the target of the new job is scraped"
    );
    stop.send(()).unwrap();
    let (_, report) = handle.await.unwrap();
    assert_eq!(report.samples_lost, 0);
    let rows = all_rows(store.as_ref()).await;
    for (i, a) in addrs.iter().enumerate() {
        assert_eq!(
            value_of(&rows, "up", a).len() as u64,
            fleet.scrapes(i),
            "every scrape of {a}, before and after the reload, is stored"
        );
    }
    let jobs: std::collections::BTreeSet<&str> =
        rows.iter().filter_map(|r| r.labels.get("job")).collect();
    assert_eq!(jobs, ["a", "b"].into_iter().collect());
}

#[tokio::test]
async fn a_worker_starts_and_scrapes_while_storage_is_down() {
    let fleet = Fleet::start(
        1,
        PageModel {
            series: 60,
            churn: 0.0,
        },
        |_| Behaviour::Normal,
    )
    .await
    .unwrap();
    let addrs = fleet.addresses();
    let faulty = Arc::new(InstrumentedStore::new(Arc::new(InMemory::new())));
    faulty.set_plan(FaultPlan {
        fail_lists: u64::MAX,
        fail_gets: u64::MAX,
        fail_puts: u64::MAX,
        ..Default::default()
    });
    let store: Arc<dyn ObjectStore> = faulty.clone();
    let clock = Arc::new(ManualClock::new(T0));
    let shared: SharedClock = clock.clone();
    let mut w = Worker::new(
        config(&static_job("node", &addrs, "")),
        WorkerOptions::new(Shard::ALL, "a", "test"),
        store.clone(),
        shared,
        &Registry::new(),
    )
    .await
    .expect("the staleness state is unreadable, but scraping goes on without it");
    assert_eq!(w.scrape_all().await.up, 1);
    assert!(w.flush(false).await.blocks_pending > 0);
    faulty.set_plan(FaultPlan::default());
    assert_eq!(w.flush(true).await.blocks_pending, 0);
    let rows = all_rows(store.as_ref()).await;
    assert_eq!(value_of(&rows, "up", &addrs[0]), vec![1.0]);
}
