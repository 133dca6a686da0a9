//! The HA claim, tested: any number of evaluator replicas deduplicate notifications through the
//! create-only state log. Rules compute their results from `now()` (the tick), so alerts start,
//! fire and resolve in a fixed pattern without sample data. A single replica's notifications are
//! the reference; three replicas racing in random order with random delays must deliver exactly
//! those, and when owners crash between writing intents and sending, at least those.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use object_store::ObjectStore;
use object_store::memory::InMemory;
use promlake_alert::evaluator::{Evaluator, EvaluatorOptions, Faults, Outcome};
use promlake_alert::rules;
use promlake_core::catalog::{self, ListStats};
use promlake_core::clock::{ManualClock, SharedClock};
use promlake_core::config::Config;
use promlake_core::faults::{FaultPlan, InstrumentedStore};
use promlake_core::telemetry::Registry;
use promlake_query::{QueryService, RegionStore};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const T0: i64 = 1_795_478_400_000;
const STEP: i64 = 15_000;
/// The suite's send deadline: the default. The sink answers at once, so only a stalled machine
/// comes near it; a send that times out after its request arrived is rightly sent again by a
/// later owner (at least once), which the exactly-once runs would count as a duplicate.
const SEND_DEADLINE: Duration = Duration::from_secs(10);

/// One notification as the sink saw it: group, status, and each alert's fingerprint, status and
/// times.
type Seen = (String, String, Vec<(String, String)>);

#[derive(Clone, Default)]
struct Sink {
    got: Arc<Mutex<Vec<Seen>>>,
}

async fn start_sink() -> (Sink, String) {
    let sink = Sink::default();
    let s = sink.clone();
    let app = Router::new().route(
        "/hook",
        post(move |body: String| {
            let s = s.clone();
            async move {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                let mut alerts: Vec<(String, String)> = v["alerts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| {
                        // Status and times: an alert that fires again is a new notification.
                        (
                            a["fingerprint"].as_str().unwrap().to_owned(),
                            format!("{} {} {}", a["status"], a["startsAt"], a["endsAt"]),
                        )
                    })
                    .collect();
                alerts.sort();
                s.got.lock().unwrap().push((
                    v["groupKey"].as_str().unwrap().to_owned(),
                    v["status"].as_str().unwrap().to_owned(),
                    alerts,
                ));
                "ok"
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (sink, format!("http://{addr}/hook"))
}

const RULES: &str = r#"groups:
  - name: flapping
    interval: 15s
    rules:
      - alert: Quick
        expr: >
          SELECT 'i' || CAST(n AS VARCHAR) AS instance, 1.0 AS value
          FROM generate_series(0, 7) AS t(n)
          WHERE (CAST(date_part('epoch', now()) AS BIGINT) / 15 + n * 3) % (n % 4 + 3) < 2
      - alert: Slow
        expr: >
          SELECT 'j' || CAST(n AS VARCHAR) AS instance, CAST(n AS DOUBLE) AS value
          FROM generate_series(0, 5) AS t(n)
          WHERE (CAST(date_part('epoch', now()) AS BIGINT) / 15 + n) % 9 < 5
        for: 30s
        labels: {severity: '{{ if gt $value 2.0 }}page{{ else }}info{{ end }}'}
        annotations: {summary: '{{ $labels.instance }} is {{ $value }}'}
      - record: ticks:total
        expr: SELECT 'x' AS job, CAST(date_part('epoch', now()) AS DOUBLE) AS value
"#;

fn config(dir: &std::path::Path, sink: &str) -> Arc<Config> {
    std::fs::write(dir.join("rules.yml"), RULES).unwrap();
    let text = format!(
        "global: {{evaluation_interval: 15s, external_labels: {{cluster: test}}}}\nrule_files: [rules.yml]\nalerting:\n  route: {{receiver: sink, group_by: [alertname, instance], group_wait: 0s, group_interval: 15s, repeat_interval: 1h}}\n  receivers:\n    - name: sink\n      webhook_configs: [{{url: '{sink}'}}]\n"
    );
    std::fs::write(dir.join("promlake.yml"), text).unwrap();
    Arc::new(Config::load(dir.join("promlake.yml")).unwrap())
}

/// Crashes the owner of a tick with some probability (between intents and sending).
struct RandomCrash {
    rng: Mutex<StdRng>,
    p: f64,
    crashed: Mutex<Vec<i64>>,
}

impl Faults for RandomCrash {
    fn crash_before_send(&self, _group: &str, tick: i64) -> bool {
        let c = self.rng.lock().unwrap().random_bool(self.p);
        if c {
            self.crashed.lock().unwrap().push(tick);
        }
        c
    }
}

struct Run {
    seen: Vec<Seen>,
    recorded_rows: usize,
    crashed: usize,
}

/// Runs `replicas` evaluators for `ticks` ticks on `store`.
async fn run(
    store: Arc<dyn ObjectStore>,
    replicas: usize,
    ticks: i64,
    seed: u64,
    crash: f64,
) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let (sink, url) = start_sink().await;
    let cfg = config(dir.path(), &url);
    let groups = rules::load_groups(&cfg).unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let shared: SharedClock = clock.clone();
    let query = Arc::new(
        QueryService::new(
            &cfg,
            vec![RegionStore {
                name: "r".into(),
                store: store.clone(),
            }],
            shared.clone(),
            &Registry::new(),
        )
        .unwrap(),
    );
    let faults = Arc::new(RandomCrash {
        rng: Mutex::new(StdRng::seed_from_u64(seed ^ 0xfa17)),
        p: crash,
        crashed: Mutex::new(Vec::new()),
    });
    let mut evals: Vec<Option<Evaluator>> = (0..replicas)
        .map(|i| {
            let mut opts = EvaluatorOptions::new(&format!("r{i}"), "r");
            opts.send_deadline = SEND_DEADLINE;
            let e = Evaluator::new(
                cfg.clone(),
                groups.clone(),
                opts,
                query.clone(),
                store.clone(),
                shared.clone(),
                &Registry::new(),
            )
            .unwrap();
            Some(if crash > 0.0 {
                e.with_faults(faults.clone())
            } else {
                e
            })
        })
        .collect();
    let mut rng = StdRng::seed_from_u64(seed);
    for k in 0..ticks {
        clock.set(T0 + k * STEP + rng.random_range(0..2000));
        let mut order: Vec<usize> = (0..replicas).collect();
        order.shuffle(&mut rng);
        let mut tasks = Vec::new();
        for i in order {
            let Some(mut e) = evals[i].take() else {
                continue;
            };
            let delay = Duration::from_millis(rng.random_range(0..15));
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let r = e.tick().await;
                (i, e, r)
            }));
        }
        let mut owners = 0;
        for t in tasks {
            let (i, e, reports) = t.await.unwrap();
            let crashed = reports.iter().any(|r| r.outcome == Outcome::Crashed);
            owners += reports
                .iter()
                .filter(|r| matches!(r.outcome, Outcome::Owned { .. } | Outcome::Crashed))
                .count();
            assert!(
                reports
                    .iter()
                    .all(|r| !matches!(r.outcome, Outcome::Failed(_))),
                "{reports:?}"
            );
            // A replica that crashed is replaced by a fresh one (same name), as a restarted
            // process would be: it knows nothing but what the log says.
            evals[i] = Some(if crashed {
                let mut opts = EvaluatorOptions::new(e.replica(), "r");
                opts.send_deadline = SEND_DEADLINE;
                Evaluator::new(
                    cfg.clone(),
                    groups.clone(),
                    opts,
                    query.clone(),
                    store.clone(),
                    shared.clone(),
                    &Registry::new(),
                )
                .unwrap()
                .with_faults(faults.clone())
            } else {
                e
            });
        }
        assert_eq!(owners, 1, "exactly one replica owns tick {k}");
    }
    // One more tick with faults off, so a crash at the last tick is recovered too.
    if crash > 0.0 {
        clock.set(T0 + ticks * STEP);
        let mut opts = EvaluatorOptions::new("recovery", "r");
        opts.send_deadline = SEND_DEADLINE;
        let mut e = Evaluator::new(
            cfg.clone(),
            groups.clone(),
            opts,
            query.clone(),
            store.clone(),
            shared.clone(),
            &Registry::new(),
        )
        .unwrap();
        e.tick().await;
    }
    let mut rows = 0;
    for b in catalog::list_blocks(store.as_ref(), "r", None, &mut ListStats::default())
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
        let (_, r) = promlake_core::block::decode(b.meta.location.as_ref(), bytes).unwrap();
        rows += r
            .iter()
            .filter(|r| r.labels.metric_name() == "ticks:total")
            .count();
    }
    let seen = sink.got.lock().unwrap().clone();
    Run {
        seen,
        recorded_rows: rows,
        crashed: faults.crashed.lock().unwrap().len(),
    }
}

fn counts(v: &[Seen]) -> BTreeMap<Seen, usize> {
    let mut m = BTreeMap::new();
    for s in v {
        *m.entry(s.clone()).or_default() += 1;
    }
    m
}

async fn suite(make_store: impl Fn() -> Arc<dyn ObjectStore>, ticks: i64) {
    let reference = run(make_store(), 1, ticks, 1, 0.0).await;
    assert_eq!(reference.recorded_rows as i64, ticks);
    let firing = reference.seen.iter().filter(|s| s.1 == "firing").count();
    let resolved = reference.seen.iter().filter(|s| s.1 == "resolved").count();
    assert!(
        firing > 10 && resolved > 10,
        "the pattern exercises transitions: {firing} firing, {resolved} resolved"
    );
    // No notification is sent twice by one replica either.
    assert!(counts(&reference.seen).values().all(|n| *n == 1));

    for seed in [7, 8] {
        let ha = run(make_store(), 3, ticks, seed, 0.0).await;
        assert_eq!(
            counts(&ha.seen),
            counts(&reference.seen),
            "seed {seed}: exactly the reference, each once"
        );
        assert_eq!(ha.seen.len(), reference.seen.len());
        assert_eq!(
            ha.recorded_rows as i64, ticks,
            "each tick's recording written once"
        );
    }

    let crashing = run(make_store(), 3, ticks, 9, 0.25).await;
    assert!(crashing.crashed > 0, "some owners crashed");
    let got = counts(&crashing.seen);
    for (n, c) in counts(&reference.seen) {
        assert!(
            got.get(&n).copied().unwrap_or(0) >= c,
            "at least once: {n:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_notify_exactly_once_in_memory() {
    suite(
        || {
            let s = Arc::new(InstrumentedStore::new(Arc::new(InMemory::new())));
            s.set_plan(FaultPlan {
                delay: Some(Duration::from_millis(1)),
                ..Default::default()
            });
            s
        },
        60,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_notify_exactly_once_on_s3() {
    let opts = promlake_core::testdata::s3_test_options();
    suite(
        || {
            promlake_core::store::open(&promlake_core::testdata::s3_test_url("ha"), &opts)
                .unwrap()
                .store
        },
        40,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn for_survives_the_loss_of_the_replica_that_started_it() {
    let dir = tempfile::tempdir().unwrap();
    let (sink, url) = start_sink().await;
    std::fs::write(dir.path().join("rules.yml"), "groups:\n  - name: g\n    interval: 15s\n    rules:\n      - alert: Held\n        expr: SELECT 'a' AS instance, 1.0 AS value\n        for: 1m\n").unwrap();
    std::fs::write(
        dir.path().join("promlake.yml"),
        format!("rule_files: [rules.yml]\nalerting:\n  route: {{receiver: s, group_wait: 0s}}\n  receivers: [{{name: s, webhook_configs: [{{url: '{url}'}}]}}]\n"),
    )
    .unwrap();
    let cfg = Arc::new(Config::load(dir.path().join("promlake.yml")).unwrap());
    let groups = rules::load_groups(&cfg).unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let clock = Arc::new(ManualClock::new(T0));
    let shared: SharedClock = clock.clone();
    let q = Arc::new(
        QueryService::new(
            &cfg,
            vec![RegionStore {
                name: "r".into(),
                store: store.clone(),
            }],
            shared.clone(),
            &Registry::new(),
        )
        .unwrap(),
    );
    let mk = |name: &str| {
        Evaluator::new(
            cfg.clone(),
            groups.clone(),
            EvaluatorOptions::new(name, "r"),
            q.clone(),
            store.clone(),
            shared.clone(),
            &Registry::new(),
        )
        .unwrap()
    };
    // Replica a sees the alert start at T0 and runs three ticks, then disappears.
    let mut a = mk("a");
    for k in 0..3 {
        clock.set(T0 + k * STEP);
        a.tick().await;
    }
    drop(a);
    // Replica b starts from nothing at T0+45s: ActiveAt comes from the log, so the alert fires
    // at T0+60s, not 60 s after b started.
    let mut b = mk("b");
    clock.set(T0 + 3 * STEP);
    b.tick().await;
    assert!(sink.got.lock().unwrap().is_empty(), "still pending at +45s");
    clock.set(T0 + 4 * STEP);
    b.tick().await;
    let status = b.status();
    let s = status.read().unwrap();
    let alert = &s[0].state.as_ref().unwrap().rules[0].alerts[0];
    assert_eq!(alert.active_at, T0);
    assert_eq!(alert.fired_at, Some(T0 + 60_000));
    assert_eq!(sink.got.lock().unwrap().len(), 1, "notified once it fired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_rules_unreachable_receivers_and_foreign_objects_do_not_stop_evaluation() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yml"),
        "groups:\n  - name: g\n    interval: 15s\n    rules:\n      - alert: NoValue\n        expr: SELECT 1 AS x\n      - alert: Fails\n        expr: SELECT nope FROM samples\n      - alert: Dup\n        expr: SELECT 'a' AS i, 1.0 AS value UNION ALL SELECT 'a' AS i, 2.0 AS value\n      - alert: Good\n        expr: SELECT 'a' AS instance, 1.0 AS value\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("promlake.yml"),
        "rule_files: [rules.yml]\nalerting:\n  route: {receiver: s, group_wait: 0s}\n  receivers: [{name: s, webhook_configs: [{url: 'http://127.0.0.1:9/unreachable'}]}]\n",
    )
    .unwrap();
    let cfg = Arc::new(Config::load(dir.path().join("promlake.yml")).unwrap());
    let groups = rules::load_groups(&cfg).unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let clock = Arc::new(ManualClock::new(T0));
    let shared: SharedClock = clock.clone();
    let q = Arc::new(
        QueryService::new(
            &cfg,
            vec![RegionStore {
                name: "r".into(),
                store: store.clone(),
            }],
            shared.clone(),
            &Registry::new(),
        )
        .unwrap(),
    );
    let mut opts = EvaluatorOptions::new("a", "r");
    opts.send_deadline = Duration::from_millis(500);
    let mut e = Evaluator::new(
        cfg.clone(),
        groups.clone(),
        opts,
        q.clone(),
        store.clone(),
        shared.clone(),
        &Registry::new(),
    )
    .unwrap();
    // A foreign object where the next tick's entry would be.
    let key = promlake_core::keys::LogDir::alert_group("r", &groups[0].key)
        .entry((T0 + STEP) as u64, ".json");
    object_store::ObjectStoreExt::put(
        store.as_ref(),
        &key,
        object_store::PutPayload::from_static(b"not json"),
    )
    .await
    .unwrap();
    // An unreachable receiver does not block the tick: it ends, with the notification failed.
    let r = e.tick().await;
    assert!(
        matches!(r[0].outcome, Outcome::Owned { failed: 1, .. }),
        "{r:?}"
    );
    let s = e.status();
    {
        let st = s.read().unwrap();
        let rules = &st[0].state.as_ref().unwrap().rules;
        let h: BTreeMap<&str, (&str, Option<&String>)> = rules
            .iter()
            .map(|r| (r.name.as_str(), (r.health.as_str(), r.last_error.as_ref())))
            .collect();
        assert_eq!(h["NoValue"].0, "err");
        assert!(h["NoValue"].1.unwrap().contains("no `value` column"));
        assert_eq!(h["Fails"].0, "err");
        assert!(h["Dup"].1.unwrap().contains("same labelset"));
        assert_eq!(h["Good"].0, "ok");
        assert_eq!(rules[3].alerts.len(), 1);
    }
    clock.set(T0 + STEP);
    let r = e.tick().await;
    assert_eq!(
        r[0].outcome,
        Outcome::Adopted,
        "the foreign entry is skipped, not fatal"
    );
    clock.set(T0 + 2 * STEP);
    let r = e.tick().await;
    assert!(matches!(r[0].outcome, Outcome::Owned { .. }), "{r:?}");
}

// ---------------------------------------------------------------------------------------------
// Notifications while receivers are slow or down, senders that die, rule output, group identity.

/// How a test receiver answers.
#[derive(Clone, Copy)]
enum Answer {
    /// 200 at once.
    Ok,
    /// 200 after this long.
    After(Duration),
    /// 503 until this long after the first request, then 200.
    UnavailableFor(Duration),
}

/// A webhook receiver: requests that reached it, and notifications it accepted (answered 200).
#[derive(Clone, Default)]
struct Receiver {
    arrived: Arc<Mutex<usize>>,
    delivered: Arc<Mutex<Vec<serde_json::Value>>>,
    first: Arc<Mutex<Option<tokio::time::Instant>>>,
}

impl Receiver {
    fn arrived(&self) -> usize {
        *self.arrived.lock().unwrap()
    }
    fn delivered(&self) -> usize {
        self.delivered.lock().unwrap().len()
    }
}

async fn start_receiver(answer: Answer) -> (Receiver, String) {
    let rx = Receiver::default();
    let r = rx.clone();
    let app = Router::new().route(
        "/hook",
        post(move |body: String| {
            let r = r.clone();
            async move {
                *r.arrived.lock().unwrap() += 1;
                let first = *r
                    .first
                    .lock()
                    .unwrap()
                    .get_or_insert_with(tokio::time::Instant::now);
                match answer {
                    Answer::Ok => {}
                    Answer::After(d) => tokio::time::sleep(d).await,
                    Answer::UnavailableFor(d) => {
                        if first.elapsed() < d {
                            return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                        }
                    }
                }
                r.delivered
                    .lock()
                    .unwrap()
                    .push(serde_json::from_str(&body).unwrap());
                axum::http::StatusCode::OK
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (rx, format!("http://{addr}/hook"))
}

/// Polls `cond` until it holds (a bound on waiting, not an assertion on time).
async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..6000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("waited a minute for {what}");
}

/// Writes `promlake.yml` (evaluation every `interval`, external label `region=eu`, one receiver
/// `s` with a webhook per URL, notified at once) and `rules.yml` into `dir`.
fn small_config(dir: &std::path::Path, interval: &str, rules: &str, urls: &[&str]) -> Arc<Config> {
    std::fs::write(dir.join("rules.yml"), rules).unwrap();
    let hooks: Vec<String> = urls.iter().map(|u| format!("{{url: '{u}'}}")).collect();
    std::fs::write(
        dir.join("promlake.yml"),
        format!(
            "global: {{evaluation_interval: {interval}, external_labels: {{region: eu}}}}\nrule_files: [rules.yml]\nalerting:\n  route: {{receiver: s, group_wait: 0s, group_interval: {interval}, repeat_interval: 1h}}\n  receivers: [{{name: s, webhook_configs: [{}]}}]\n",
            hooks.join(", ")
        ),
    )
    .unwrap();
    Arc::new(Config::load(dir.join("promlake.yml")).unwrap())
}

/// Replicas of one config on one store and manual clock.
struct Cluster {
    cfg: Arc<Config>,
    groups: Vec<rules::LoadedGroup>,
    store: Arc<dyn ObjectStore>,
    clock: Arc<ManualClock>,
    query: Arc<QueryService>,
}

impl Cluster {
    fn new(cfg: Arc<Config>, store: Arc<dyn ObjectStore>) -> Self {
        let groups = rules::load_groups(&cfg).unwrap();
        let clock = Arc::new(ManualClock::new(T0));
        let shared: SharedClock = clock.clone();
        let query = Arc::new(
            QueryService::new(
                &cfg,
                vec![RegionStore {
                    name: "r".into(),
                    store: store.clone(),
                }],
                shared,
                &Registry::new(),
            )
            .unwrap(),
        );
        Self {
            cfg,
            groups,
            store,
            clock,
            query,
        }
    }

    fn replica(&self, name: &str, send_deadline: Duration) -> Evaluator {
        self.replica_of(name, send_deadline, self.cfg.clone(), self.groups.clone())
    }

    fn replica_of(
        &self,
        name: &str,
        send_deadline: Duration,
        cfg: Arc<Config>,
        groups: Vec<rules::LoadedGroup>,
    ) -> Evaluator {
        let mut opts = EvaluatorOptions::new(name, "r");
        opts.send_deadline = send_deadline;
        Evaluator::new(
            cfg,
            groups,
            opts,
            self.query.clone(),
            self.store.clone(),
            self.clock.clone(),
            &Registry::new(),
        )
        .unwrap()
    }
}

/// Records the ticks at which a replica, owning them, is about to send (and never crashes).
#[derive(Default)]
struct Sending(Mutex<Vec<i64>>);

impl Faults for Sending {
    fn crash_before_send(&self, _group: &str, tick: i64) -> bool {
        self.0.lock().unwrap().push(tick);
        false
    }
}

/// Crashes every replica that owns a tick, after its intents are written.
struct AlwaysCrash;

impl Faults for AlwaysCrash {
    fn crash_before_send(&self, _group: &str, _tick: i64) -> bool {
        true
    }
}

/// One replica as a process: idle, or inside a tick (which may be sending for a while).
struct Proc {
    idle: Option<Evaluator>,
    busy: Option<(i64, tokio::task::JoinHandle<Evaluator>)>,
    sending: Arc<Sending>,
}

impl Proc {
    fn done(&mut self) -> bool {
        self.busy.as_ref().is_some_and(|(_, h)| h.is_finished())
    }
}

/// Moves the clock to `t` and lets every idle replica tick; returns once the tick is decided and
/// every replica that started it has finished or is sending (receivers may keep it there).
async fn step(procs: &mut [Proc], clock: &ManualClock, t: i64) {
    clock.set(t);
    for p in procs.iter_mut() {
        if let Some(mut e) = p.idle.take() {
            p.busy = Some((
                t,
                tokio::spawn(async move {
                    let r = e.tick().await;
                    assert!(
                        r.iter().all(|r| !matches!(r.outcome, Outcome::Failed(_))),
                        "{r:?}"
                    );
                    e
                }),
            ));
        }
    }
    for _ in 0..12_000 {
        for p in procs.iter_mut() {
            if p.done() {
                let (_, h) = p.busy.take().unwrap();
                p.idle = Some(h.await.unwrap());
            }
        }
        let settled = procs.iter().all(|p| match &p.busy {
            None => true,
            Some((started, _)) => *started != t || p.sending.0.lock().unwrap().contains(&t),
        });
        if settled {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("waited a minute for tick {t} to be decided");
}

async fn drain(procs: &mut [Proc]) {
    for p in procs.iter_mut() {
        if let Some((_, h)) = p.busy.take() {
            p.idle = Some(h.await.unwrap());
        }
    }
}

/// The issue's scenario: three replicas evaluating every 2 s, one receiver answering after 3 s,
/// one answering 503 for 5 s. While the first owner is still inside its send retries, later
/// ticks' owners must leave its notifications alone: each receiver gets exactly one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_unavailable_receivers_get_each_notification_once() {
    let dir = tempfile::tempdir().unwrap();
    let (slow, slow_url) = start_receiver(Answer::After(Duration::from_secs(3))).await;
    let (down, down_url) = start_receiver(Answer::UnavailableFor(Duration::from_secs(5))).await;
    let cfg = small_config(
        dir.path(),
        "2s",
        "groups:\n  - name: g\n    rules:\n      - alert: Fires\n        expr: SELECT 'a' AS instance, 1.0 AS value\n",
        &[&slow_url, &down_url],
    );
    let c = Cluster::new(cfg, Arc::new(InMemory::new()));
    let mut procs: Vec<Proc> = ["a", "b", "c"]
        .iter()
        .map(|n| {
            let sending = Arc::new(Sending::default());
            Proc {
                idle: Some(
                    c.replica(n, Duration::from_secs(10))
                        .with_faults(sending.clone()),
                ),
                busy: None,
                sending,
            }
        })
        .collect();
    step(&mut procs, &c.clock, T0).await;
    wait_for("both receivers to be asked", || {
        slow.arrived() >= 1 && down.arrived() >= 1
    })
    .await;
    // Three more ticks while the first owner is sending; the clock stays before its deadline
    // (T0 + 10 s), so its notifications are still its own.
    for k in 1..=3 {
        step(&mut procs, &c.clock, T0 + k * 2000).await;
    }
    drain(&mut procs).await;
    // Well past the deadline: notifications marked sent are never sent again.
    for k in 4..=10 {
        step(&mut procs, &c.clock, T0 + k * 2000).await;
    }
    drain(&mut procs).await;
    assert_eq!(slow.delivered(), 1, "the slow receiver got it once");
    assert_eq!(slow.arrived(), 1, "and was asked once");
    assert_eq!(down.delivered(), 1, "the unavailable receiver got it once");
}

/// A sender that dies after writing its intents: nobody sends them before its deadline, and a
/// later tick's owner sends them once it has passed (at least once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_senders_notification_is_sent_once_its_deadline_passed() {
    let dir = tempfile::tempdir().unwrap();
    let (rx, url) = start_receiver(Answer::Ok).await;
    let cfg = small_config(
        dir.path(),
        "2s",
        "groups:\n  - name: g\n    rules:\n      - alert: Fires\n        expr: SELECT 'a' AS instance, 1.0 AS value\n",
        &[&url],
    );
    let c = Cluster::new(cfg, Arc::new(InMemory::new()));
    let deadline = Duration::from_secs(10);
    let mut dying = c.replica("a", deadline).with_faults(Arc::new(AlwaysCrash));
    let r = dying.tick().await;
    assert_eq!(r[0].outcome, Outcome::Crashed);
    drop(dying);
    let mut b = c.replica("b", deadline);
    let mut cc = c.replica("c", deadline);
    let mut k = 1;
    while T0 + k * 2000 <= T0 + 10_000 {
        c.clock.set(T0 + k * 2000);
        b.tick().await;
        cc.tick().await;
        assert_eq!(
            rx.delivered(),
            0,
            "not before the dead sender's deadline (tick {k})"
        );
        k += 1;
    }
    for k in k..k + 5 {
        c.clock.set(T0 + k * 2000);
        cc.tick().await;
        b.tick().await;
    }
    assert_eq!(
        rx.delivered(),
        1,
        "sent once after the deadline, and only once"
    );
    let body = &rx.delivered.lock().unwrap()[0];
    assert_eq!(body["alerts"][0]["labels"]["alertname"], "Fires");
}

/// Rows of `metric` in the region's blocks.
async fn recorded_rows(store: &dyn ObjectStore, metric: &str) -> usize {
    let mut rows = 0;
    for b in catalog::list_blocks(store, "r", None, &mut ListStats::default())
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
        let (_, r) = promlake_core::block::decode(b.meta.location.as_ref(), bytes).unwrap();
        rows += r
            .iter()
            .filter(|r| r.labels.metric_name() == metric)
            .count();
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_rule_output_survives_a_failed_put() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(
        dir.path(),
        "15s",
        "groups:\n  - name: g\n    rules:\n      - record: ticks:total\n        expr: SELECT 'x' AS job, CAST(date_part('epoch', now()) AS DOUBLE) AS value\n",
        &[],
    );
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let faulty = Arc::new(InstrumentedStore::new(inner.clone()));
    let c = Cluster::new(cfg, faulty.clone());
    let mut e = c.replica("a", Duration::from_secs(1));
    faulty.set_plan(FaultPlan {
        fail_puts: 1,
        put_key_filter: Some("blocks/".into()),
        ..Default::default()
    });
    e.tick().await;
    assert_eq!(recorded_rows(inner.as_ref(), "ticks:total").await, 0);
    c.clock.set(T0 + STEP);
    e.tick().await;
    assert_eq!(
        recorded_rows(inner.as_ref(), "ticks:total").await,
        2,
        "the failed tick's output is written at the next tick"
    );
    // A PUT that landed but whose answer was lost is not written twice.
    faulty.set_plan(FaultPlan {
        lose_put_responses: 1,
        put_key_filter: Some("blocks/".into()),
        ..Default::default()
    });
    c.clock.set(T0 + 2 * STEP);
    e.tick().await;
    c.clock.set(T0 + 3 * STEP);
    e.tick().await;
    assert_eq!(recorded_rows(inner.as_ref(), "ticks:total").await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_output_of_the_wrong_shape_is_a_rule_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(
        dir.path(),
        "15s",
        "groups:\n  - name: shapes\n    rules:\n      - alert: MapOfNumbers\n        expr: SELECT map(['a'], [1]) AS m, 1 AS value\n      - record: text:value\n        expr: SELECT 'a' AS instance, 'x' AS value\n      - alert: Good\n        expr: SELECT 'a' AS instance, 1.0 AS value\n",
        &[],
    );
    let c = Cluster::new(cfg, Arc::new(InMemory::new()));
    let mut e = c.replica("a", Duration::from_secs(1));
    let r = e.tick().await;
    assert!(matches!(r[0].outcome, Outcome::Owned { .. }), "{r:?}");
    let s = e.status();
    let st = s.read().unwrap();
    let rules = &st[0].state.as_ref().unwrap().rules;
    let err = |i: usize| rules[i].last_error.clone().unwrap_or_default();
    assert_eq!(rules[0].health, "err");
    assert!(
        err(0).contains("group \"shapes\", rule \"MapOfNumbers\"") && err(0).contains("`m`"),
        "{}",
        err(0)
    );
    assert_eq!(rules[1].health, "err");
    assert!(
        err(1).contains("rule \"text:value\"") && err(1).contains("not a number"),
        "{}",
        err(1)
    );
    assert_eq!(rules[2].health, "ok");
}

/// The same rule file named three ways: by two configs in one directory (`rules.yml` and
/// `./rules.yml`, the second config reached through another path) and from beside the config as
/// a Lambda reads it (a URL). All are one group with one log: one notification.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_naming_one_rule_file_differently_deduplicate() {
    let dir = tempfile::tempdir().unwrap();
    let (rx, url) = start_receiver(Answer::Ok).await;
    let cfg = small_config(
        dir.path(),
        "15s",
        "groups:\n  - name: g\n    rules:\n      - alert: Fires\n        expr: SELECT 'a' AS instance, 1.0 AS value\n",
        &[&url],
    );
    let text = std::fs::read_to_string(dir.path().join("promlake.yml"))
        .unwrap()
        .replace("rule_files: [rules.yml]", "rule_files: ['./rules.yml']");
    std::fs::write(dir.path().join("other.yml"), text).unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let other = Arc::new(Config::load(dir.path().join("sub/../other.yml")).unwrap());
    let mut lambda_cfg = (*cfg).clone();
    lambda_cfg.base_url = Some(format!("file://{}/", dir.path().display()));
    let lambda_groups = rules::load_groups_for(&lambda_cfg, &Default::default())
        .await
        .unwrap();
    let c = Cluster::new(cfg, Arc::new(InMemory::new()));
    let other_groups = rules::load_groups(&other).unwrap();
    assert_eq!(c.groups[0].key, other_groups[0].key);
    assert_eq!(c.groups[0].key, lambda_groups[0].key);
    let d = Duration::from_secs(1);
    let mut replicas = [
        c.replica("a", d),
        c.replica_of("b", d, other, other_groups),
        c.replica_of("c", d, Arc::new(lambda_cfg), lambda_groups),
    ];
    for e in &mut replicas {
        e.tick().await;
    }
    assert_eq!(rx.delivered(), 1);
}
