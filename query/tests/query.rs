//! The query service over blocks written by promlake's own block writer, in memory.

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int64Type, UInt64Type};
use axum::body::Body;
use futures::StreamExt;
use http_body_util::BodyExt;
use object_store::memory::InMemory;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};
use promlake_core::block::{self, Sample};
use promlake_core::clock::{ManualClock, SharedClock};
use promlake_core::config::Config;
use promlake_core::faults::{FaultPlan, InstrumentedStore};
use promlake_core::keys::{BlockKey, new_ulid};
use promlake_core::labels::Labels;
use promlake_core::shard::Shard;
use promlake_core::telemetry::Registry;
use promlake_core::value::stale_nan;
use promlake_query::{AppState, QueryError, QueryService, RegionStore, router};
use tower::ServiceExt;

const H: i64 = 3_600_000;
const T0: i64 = 1_795_478_400_000; // 2026-11-24T00:00:00Z

fn series(name: &str, pairs: &[(&str, &str)]) -> Arc<Labels> {
    let mut p = vec![("__name__".to_string(), name.to_string())];
    p.extend(pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())));
    Arc::new(Labels::from_pairs(p))
}

async fn put_block(store: &dyn ObjectStore, region: &str, replica: &str, mut samples: Vec<Sample>) {
    let shard = Shard::ALL;
    let (meta, bytes) = block::encode(&mut samples, region, shard, replica).unwrap();
    let key = BlockKey {
        region: region.into(),
        min_ts: meta.min_ts,
        max_ts: meta.max_ts,
        shard,
        replica: replica.into(),
        id: new_ulid(meta.max_ts),
    };
    let opts = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    store
        .put_opts(&key.path(), PutPayload::from(bytes), opts)
        .await
        .unwrap();
}

fn service_with(
    config: &str,
    regions: Vec<(&str, Arc<dyn ObjectStore>)>,
    now: i64,
) -> QueryService {
    let cfg = Config::parse(config).unwrap();
    let clock: SharedClock = Arc::new(ManualClock::new(now));
    QueryService::new(
        &cfg,
        regions
            .into_iter()
            .map(|(n, s)| RegionStore {
                name: n.into(),
                store: s,
            })
            .collect(),
        clock,
        &Registry::new(),
    )
    .unwrap()
}

fn f64s(b: &[RecordBatch], col: usize) -> Vec<f64> {
    b.iter()
        .flat_map(|b| {
            b.column(col)
                .as_primitive::<Float64Type>()
                .iter()
                .map(|v| v.unwrap_or(f64::NAN))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn i64s(b: &[RecordBatch], col: usize) -> Vec<i64> {
    b.iter()
        .flat_map(|b| {
            b.column(col)
                .as_primitive::<Int64Type>()
                .iter()
                .map(|v| v.unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn strings(b: &[RecordBatch], col: usize) -> Vec<String> {
    b.iter()
        .flat_map(|b| {
            let c = arrow::compute::cast(b.column(col), &arrow::datatypes::DataType::Utf8).unwrap();
            let s = c.as_string::<i32>();
            (0..s.len())
                .map(|i| {
                    if s.is_null(i) {
                        "NULL".to_string()
                    } else {
                        s.value(i).to_string()
                    }
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// 24 hourly blocks of `up` and a counter for two jobs, one sample a minute.
async fn day_of_data(store: &dyn ObjectStore) {
    for h in 0..24 {
        let mut samples = Vec::new();
        for m in 0..60 {
            let t = T0 + h * H + m * 60_000;
            for job in ["api", "db"] {
                samples.push(Sample::new(
                    series("up", &[("job", job), ("instance", "i1")]),
                    t,
                    1.0,
                ));
                let v = (h * 60 + m) as f64 * if job == "api" { 2.0 } else { 1.0 };
                samples.push(Sample::new(
                    series("requests_total", &[("job", job), ("instance", "i1")]),
                    t,
                    v,
                ));
            }
        }
        put_block(store, "eu1", "a", samples).await;
    }
}

#[tokio::test]
async fn labels_metrics_and_time_pruning() {
    let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    day_of_data(mem.as_ref()).await;
    let svc = service_with("", vec![("eu1", mem)], T0 + 24 * H);
    let (_, b) = svc
        .sql("SELECT labels['job'] AS job, label(labels, 'instance') AS inst, count(*) AS n FROM samples WHERE metric = 'up' GROUP BY 1, 2 ORDER BY 1")
        .await
        .unwrap();
    assert_eq!(strings(&b, 0), vec!["api", "db"]);
    assert_eq!(strings(&b, 1), vec!["i1", "i1"]);
    assert_eq!(i64s(&b, 2), vec![1440, 1440]);
    assert_eq!(
        svc.stats().files.load(std::sync::atomic::Ordering::Relaxed),
        24
    );

    // One hour: one partition listed, one file read.
    let lists0 = svc.stats().lists.load(std::sync::atomic::Ordering::Relaxed);
    let files0 = svc.stats().files.load(std::sync::atomic::Ordering::Relaxed);
    let (_, b) = svc
        .sql("SELECT count(*) FROM samples WHERE metric = 'up' AND timestamp >= TIMESTAMP '2026-11-24T05:00:00Z' AND timestamp < TIMESTAMP '2026-11-24T06:00:00Z'")
        .await
        .unwrap();
    assert_eq!(i64s(&b, 0), vec![120]);
    assert_eq!(
        svc.stats().lists.load(std::sync::atomic::Ordering::Relaxed) - lists0,
        1,
        "one hour partition listed"
    );
    assert_eq!(
        svc.stats().files.load(std::sync::atomic::Ordering::Relaxed) - files0,
        1,
        "one block read"
    );

    // now() - INTERVAL works the same way.
    let files1 = svc.stats().files.load(std::sync::atomic::Ordering::Relaxed);
    let (_, b) = svc
        .sql("SELECT count(*) FROM samples WHERE timestamp > TIMESTAMP '2026-11-24T23:30:00Z' - INTERVAL '1 hour'")
        .await
        .unwrap();
    assert_eq!(i64s(&b, 0), vec![89 * 4], "22:31 to 23:59, four series");
    assert_eq!(
        svc.stats().files.load(std::sync::atomic::Ordering::Relaxed) - files1,
        2
    );

    // EXPLAIN shows the pruned file list and the pushed-down predicate.
    let (_, b) = svc
        .sql("EXPLAIN SELECT value FROM samples WHERE metric = 'up' AND timestamp >= TIMESTAMP '2026-11-24T05:00:00Z' AND timestamp < TIMESTAMP '2026-11-24T06:00:00Z'")
        .await
        .unwrap();
    let plan = strings(&b, 1).join("\n");
    assert!(plan.contains("hour=05"), "{plan}");
    assert!(!plan.contains("hour=06/"), "{plan}");
    assert!(plan.contains("predicate="), "{plan}");
}

#[tokio::test]
async fn stale_markers_are_hidden_unless_asked_for() {
    let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let s = series("up", &[("job", "x")]);
    put_block(
        mem.as_ref(),
        "eu1",
        "a",
        vec![
            Sample::new(s.clone(), T0, 1.0),
            Sample::new(s.clone(), T0 + 15_000, stale_nan()),
        ],
    )
    .await;
    let svc = service_with("", vec![("eu1", mem)], T0 + H);
    let (_, b) = svc.sql("SELECT count(*) FROM samples").await.unwrap();
    assert_eq!(i64s(&b, 0), vec![1]);
    let (_, b) = svc
        .sql("SELECT count(*), sum(CASE WHEN stale THEN 1 ELSE 0 END) FROM samples_raw")
        .await
        .unwrap();
    assert_eq!(i64s(&b, 0), vec![2]);
    assert_eq!(i64s(&b, 1), vec![1]);
    let (_, b) = svc
        .sql("SELECT count(*) FROM samples_raw WHERE is_stale(value)")
        .await
        .unwrap();
    assert_eq!(i64s(&b, 0), vec![1]);
}

#[tokio::test]
async fn replicas_are_deduplicated_without_gaps() {
    let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    // Replica a scrapes at :00, :15, ... and stops after 20 slots; b scrapes at :07, :22, ...
    // for 40 slots. Values differ per replica so the choice is visible.
    let s = series("up", &[("job", "x")]);
    let a: Vec<Sample> = (0..20)
        .map(|i| Sample::new(s.clone(), T0 + i * 15_000, 1.0))
        .collect();
    let b: Vec<Sample> = (0..40)
        .map(|i| Sample::new(s.clone(), T0 + i * 15_000 + 7_000, 2.0))
        .collect();
    put_block(mem.as_ref(), "eu1", "a", a).await;
    put_block(mem.as_ref(), "eu1", "b", b).await;
    let svc = service_with("global: {scrape_interval: 15s}", vec![("eu1", mem)], T0 + H);
    let (_, r) = svc
        .sql("SELECT replica, count(*), sum(value) FROM samples GROUP BY replica ORDER BY replica")
        .await
        .unwrap();
    assert_eq!(strings(&r, 0), vec!["a", "b"]);
    assert_eq!(
        i64s(&r, 1),
        vec![20, 20],
        "a owns its 20 slots, b the 20 after a stopped"
    );
    assert_eq!(f64s(&r, 2), vec![20.0, 40.0]);
    let (_, r) = svc.sql("SELECT count(*) FROM samples").await.unwrap();
    assert_eq!(
        i64s(&r, 0),
        vec![40],
        "one sample per slot, no double counting, no gap"
    );
    let (_, r) = svc.sql("SELECT count(*) FROM samples_raw").await.unwrap();
    assert_eq!(i64s(&r, 0), vec![60], "the raw table has every row");
    // A filter on value does not change which replica owns a slot.
    let (_, r) = svc
        .sql("SELECT count(*) FROM samples WHERE value = 2.0")
        .await
        .unwrap();
    assert_eq!(i64s(&r, 0), vec![20]);
}

#[tokio::test]
async fn two_regions_in_one_query_and_an_unavailable_region_is_an_error() {
    let eu: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let us = Arc::new(InstrumentedStore::new(Arc::new(InMemory::new())));
    put_block(
        eu.as_ref(),
        "eu1",
        "a",
        vec![Sample::new(series("up", &[("job", "x")]), T0, 1.0)],
    )
    .await;
    put_block(
        us.as_ref(),
        "us1",
        "a",
        vec![
            Sample::new(series("up", &[("job", "x")]), T0, 1.0),
            Sample::new(series("up", &[("job", "y")]), T0, 0.0),
        ],
    )
    .await;
    let us_store: Arc<dyn ObjectStore> = us.clone();
    let svc = service_with("", vec![("eu1", eu), ("us1", us_store)], T0 + H);
    let (_, b) = svc
        .sql("SELECT region, sum(value), count(*) FROM samples GROUP BY region ORDER BY region")
        .await
        .unwrap();
    assert_eq!(strings(&b, 0), vec!["eu1", "us1"]);
    assert_eq!(i64s(&b, 2), vec![1, 2]);
    let (_, b) = svc
        .sql("SELECT count(*) FROM samples WHERE region = 'eu1'")
        .await
        .unwrap();
    assert_eq!(i64s(&b, 0), vec![1]);
    us.set_plan(FaultPlan {
        fail_lists: 100,
        ..Default::default()
    });
    let e = svc.sql("SELECT sum(value) FROM samples").await.unwrap_err();
    assert!(matches!(e, QueryError::Unavailable(_)), "{e:?}");
    assert!(e.to_string().contains("us1"), "{e}");
    assert_eq!(e.status(), 503);
    // A query that names only the healthy region still works.
    assert!(
        svc.sql("SELECT count(*) FROM samples WHERE region = 'eu1'")
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn counter_functions_time_buckets_and_quantiles() {
    let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let c = series("http_requests_total", &[("job", "x")]);
    // 10, 20, 30, reset to 5, 15: increase 30 - 10 + 30 (before reset) ... Prometheus: last-first+resets = 15-10+30 = 35
    let vals = [10.0, 20.0, 30.0, 5.0, 15.0];
    let mut samples: Vec<Sample> = vals
        .iter()
        .enumerate()
        .map(|(i, v)| Sample::new(c.clone(), T0 + 30_000 + i as i64 * 60_000, *v))
        .collect();
    for (le, v) in [("0.1", 10.0), ("0.5", 60.0), ("1.0", 90.0), ("+Inf", 100.0)] {
        samples.push(Sample::new(
            series("lat_bucket", &[("job", "x"), ("le", le)]),
            T0,
            v,
        ));
    }
    put_block(mem.as_ref(), "eu1", "a", samples).await;
    let svc = service_with("", vec![("eu1", mem)], T0 + H);
    let (_, b) = svc
        .sql("SELECT counter_increase(timestamp, value), counter_rate(timestamp, value) FROM samples WHERE metric = 'http_requests_total'")
        .await
        .unwrap();
    assert_eq!(f64s(&b, 0), vec![35.0]);
    assert!((f64s(&b, 1)[0] - 35.0 / 240.0).abs() < 1e-12);
    let (_, b) = svc
        .sql("SELECT prom_rate(timestamp, value, TIMESTAMP '2026-11-24T00:05:00Z', INTERVAL '5 minutes') FROM samples WHERE metric = 'http_requests_total'")
        .await
        .unwrap();
    let pts: Vec<(i64, f64)> = vals
        .iter()
        .enumerate()
        .map(|(i, v)| (T0 + 30_000 + i as i64 * 60_000, *v))
        .collect();
    let want =
        promlake_query::udf::counter::extrapolated_rate(&pts, T0, T0 + 300_000, 300_000, true)
            .unwrap();
    assert_eq!(f64s(&b, 0), vec![want]);
    let (_, b) = svc
        .sql("SELECT time_bucket(INTERVAL '2 minutes', timestamp) AS t, count(*) FROM samples WHERE metric = 'http_requests_total' GROUP BY 1 ORDER BY 1")
        .await
        .unwrap();
    assert_eq!(i64s(&b, 1), vec![2, 2, 1]);
    let (_, b) = svc
        .sql("SELECT histogram_quantile(0.5, labels['le'], value) FROM samples WHERE metric = 'lat_bucket' GROUP BY labels['job']")
        .await
        .unwrap();
    assert!((f64s(&b, 0)[0] - 0.42).abs() < 1e-12);
    let (_, b) = svc.sql("SELECT prom_series(metric, labels) FROM samples WHERE metric = 'http_requests_total' LIMIT 1").await.unwrap();
    assert_eq!(strings(&b, 0), vec!["http_requests_total{job=\"x\"}"]);
    let (_, b) = svc
        .sql("SELECT DISTINCT series_id FROM samples WHERE metric = 'http_requests_total'")
        .await
        .unwrap();
    let id = b[0].column(0).as_primitive::<UInt64Type>().value(0);
    assert_eq!(id, series("http_requests_total", &[("job", "x")]).hash());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_queries_timeouts_and_memory_limits_are_clear_errors() {
    let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    day_of_data(mem.as_ref()).await;
    let svc = service_with("", vec![("eu1", mem.clone())], T0 + H);
    for (sql, status) in [
        ("SELEC 1", 400),
        ("SELECT nope FROM samples", 400),
        ("SELECT * FROM nothing", 400),
        ("SELECT label(value, 'x') FROM samples", 400),
    ] {
        let e = svc.sql(sql).await.unwrap_err();
        assert_eq!(e.status(), status, "{sql}: {e}");
        assert!(!e.to_string().is_empty());
    }
    // No data in the range: an empty result, not an error.
    let (_, b) = svc
        .sql("SELECT count(*) FROM samples WHERE timestamp > TIMESTAMP '2030-01-01T00:00:00Z'")
        .await
        .unwrap();
    assert_eq!(i64s(&b, 0), vec![0]);

    let slow = service_with("query: {timeout: 1ms}", vec![("eu1", mem.clone())], T0 + H);
    let e = slow
        .sql("SELECT count(*) FROM samples a JOIN samples b ON a.series_id <> b.series_id")
        .await
        .unwrap_err();
    assert_eq!(e.status(), 503, "{e}");
    assert_eq!(e.error_type(), "timeout");

    let small = service_with("query: {memory_limit: 64KB}", vec![("eu1", mem)], T0 + H);
    let e = small
        .sql("SELECT metric, labels, value FROM samples ORDER BY value, metric")
        .await
        .unwrap_err();
    assert_eq!(e.error_type(), "execution", "{e}");
    assert!(
        e.to_string().to_lowercase().contains("resources exhausted")
            || e.to_string().to_lowercase().contains("memory"),
        "{e}"
    );
}

#[tokio::test]
async fn federate_serves_latest_samples_like_prometheus() {
    let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let now = T0 + 10 * 60_000;
    let up_a = series("up", &[("instance", "a:1"), ("job", "node")]);
    let up_b = series("up", &[("instance", "b:1"), ("job", "node")]);
    let gone = series("up", &[("instance", "c:1"), ("job", "node")]);
    let old = series("up", &[("instance", "d:1"), ("job", "node")]);
    let agg = series("job:up:sum", &[("job", "node")]);
    put_block(
        mem.as_ref(),
        "eu1",
        "a",
        vec![
            Sample::new(up_a.clone(), now - 60_000, 1.0),
            Sample::new(up_a.clone(), now - 30_000, 0.0),
            Sample::new(up_b.clone(), now - 20_000, 1.0),
            Sample::new(gone.clone(), now - 40_000, 1.0),
            Sample::new(gone.clone(), now - 25_000, stale_nan()),
            Sample::new(old.clone(), now - 6 * 60_000, 1.0),
            Sample::new(agg.clone(), now - 10_000, 2.0),
        ],
    )
    .await;
    let svc = Arc::new(service_with(
        "global: {external_labels: {cluster: dc01}}",
        vec![("eu1", mem)],
        now,
    ));
    let body = svc.federate(&["up".into()]).await.unwrap();
    assert_eq!(
        body,
        format!(
            "# TYPE up untyped\nup{{instance=\"a:1\",job=\"node\",cluster=\"dc01\"}} 0 {}\nup{{instance=\"b:1\",job=\"node\",cluster=\"dc01\"}} 1 {}\n",
            now - 30_000,
            now - 20_000
        )
    );
    let body = svc
        .federate(&["{__name__=~\"job:.*\"}".into()])
        .await
        .unwrap();
    assert_eq!(
        body,
        format!(
            "# TYPE job:up:sum untyped\njob:up:sum{{job=\"node\",cluster=\"dc01\",instance=\"\"}} 2 {}\n",
            now - 10_000
        )
    );
    let body = svc
        .federate(&[
            "up{instance=~\"b.*\"}".into(),
            "{__name__=~\"job:.*\"}".into(),
        ])
        .await
        .unwrap();
    assert_eq!(body.lines().filter(|l| !l.starts_with('#')).count(), 2);

    // Over HTTP, with a bad selector.
    let app = router(AppState {
        service: svc.clone(),
    });
    let resp = app
        .clone()
        .oneshot(
            axum::http::Request::get("/federate?match%5B%5D=up%7Bjob%3D%22node%22%7D")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let resp = app
        .oneshot(
            axum::http::Request::get("/federate?match[]=up{")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    // Prometheus' federation handler answers a bad selector in plain text, not the API's JSON.
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        std::str::from_utf8(&body).unwrap(),
        "1:4: parse error: unexpected end of input inside braces\n"
    );
}

#[tokio::test]
async fn sql_over_http_in_every_format() {
    let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    day_of_data(mem.as_ref()).await;
    let app = router(AppState {
        service: Arc::new(service_with("", vec![("eu1", mem)], T0 + H)),
    });
    let sql = "SELECT labels['job'] AS job, labels, count(*) AS n FROM samples WHERE metric = 'up' GROUP BY 1, 2 ORDER BY 1";
    let call = |accept: &str, uri: &str| {
        axum::http::Request::post(uri.to_string())
            .header("accept", accept)
            .body(Body::from(sql))
            .unwrap()
    };
    let resp = app
        .clone()
        .oneshot(call("application/json", "/api/v1/sql"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(v[0]["job"], "api");
    assert_eq!(v[0]["n"], 1440);
    assert_eq!(v[0]["labels"]["instance"], "i1");

    let resp = app
        .clone()
        .oneshot(call("text/csv", "/api/v1/sql"))
        .await
        .unwrap();
    let csv = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert_eq!(csv.lines().next(), Some("job,labels,n"));
    assert!(
        csv.contains("api,\"{instance=\"\"i1\"\", job=\"\"api\"\"}\",1440"),
        "{csv}"
    );

    let resp = app
        .clone()
        .oneshot(call("*/*", "/api/v1/sql?format=arrow"))
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["content-type"],
        "application/vnd.apache.arrow.stream"
    );
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes.to_vec()), None)
            .unwrap();
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 2);

    // `curl --data-binary "SQL"` labels the raw statement as a form; a real form has `query=`.
    let form = "application/x-www-form-urlencoded";
    let encoded: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("query", sql)
        .finish();
    for body in [sql.to_owned(), encoded] {
        let resp = app
            .clone()
            .oneshot(
                axum::http::Request::post("/api/v1/sql")
                    .header("content-type", form)
                    .body(Body::from(body.clone()))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{body}");
        let v: serde_json::Value =
            serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(v[0]["n"], 1440, "{body}");
    }

    let resp = app
        .clone()
        .oneshot(
            axum::http::Request::post("/api/v1/sql")
                .body(Body::from("SELECT * FROM nowhere"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: serde_json::Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(v["errorType"], "bad_data");
    assert!(v["error"].as_str().unwrap().contains("nowhere"), "{v}");

    let resp = app
        .clone()
        .oneshot(
            axum::http::Request::get("/metrics")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let text = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(text.contains("promlake_queries_total"), "{text}");

    // No error without a body: unknown routes, wrong methods.
    for (method, uri, status, body) in [
        ("GET", "/nowhere", 404, "404 page not found\n"),
        ("DELETE", "/api/v1/sql", 405, "Method Not Allowed\n"),
        ("POST", "/federate", 405, "Method Not Allowed\n"),
    ] {
        let resp = app
            .clone()
            .oneshot(
                axum::http::Request::builder()
                    .method(method)
                    .uri(uri)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{method} {uri}");
        assert_eq!(body_text(resp).await, body, "{method} {uri}");
    }
}

async fn body_text(resp: axum::response::Response) -> String {
    String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

async fn post_sql(app: &axum::Router, sql: &str) -> (u16, String) {
    let resp = app
        .clone()
        .oneshot(
            axum::http::Request::post("/api/v1/sql")
                .body(Body::from(sql.to_owned()))
                .unwrap(),
        )
        .await
        .unwrap();
    (resp.status().as_u16(), body_text(resp).await)
}

/// Nothing a statement asks can write: not a local file, not a block. Three layers are checked
/// one by one: the statement kinds (over HTTP), the plan, and the session's stores.
#[tokio::test]
async fn sql_cannot_write_anything() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let disk: Arc<dyn ObjectStore> =
        Arc::new(object_store::local::LocalFileSystem::new_with_prefix(&data).unwrap());
    put_block(
        disk.as_ref(),
        "eu1",
        "a",
        vec![Sample::new(series("up", &[("job", "a")]), T0, 1.0)],
    )
    .await;
    let key = disk.list(None).next().await.unwrap().unwrap().location;
    let original = std::fs::read(data.join(key.as_ref())).unwrap();
    let svc = Arc::new(service_with("", vec![("eu1", disk.clone())], T0 + H));
    let app = router(AppState {
        service: svc.clone(),
    });
    let victim = dir.path().join("victim.txt");
    let attacks = [
        format!(
            "COPY (SELECT 'x' AS a) TO '{}' STORED AS CSV",
            victim.display()
        ),
        "COPY (SELECT 'x' AS a) TO 'victim.txt' STORED AS CSV".to_string(),
        format!("COPY (SELECT 2.0 AS value) TO 'promlake://eu1/{key}' STORED AS PARQUET"),
        format!(
            "EXPLAIN ANALYZE COPY (SELECT 1 AS a) TO '{}' STORED AS CSV",
            victim.display()
        ),
        format!(
            "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '{}'",
            dir.path().display()
        ),
        "CREATE TABLE t AS SELECT 1".into(),
        "INSERT INTO samples SELECT * FROM samples".into(),
        "DROP TABLE samples".into(),
        "SET datafusion.execution.target_partitions = 1".into(),
    ];
    for sql in &attacks {
        let (status, body) = post_sql(&app, sql).await;
        assert_eq!(status, 400, "{sql}: {body}");
        assert!(body.contains("not allowed"), "{sql}: {body}");
    }
    assert!(!victim.exists());
    assert!(!std::path::Path::new("victim.txt").exists());
    assert_eq!(std::fs::read(data.join(key.as_ref())).unwrap(), original);
    let (status, body) = post_sql(&app, "SELECT count(*) AS n FROM samples").await;
    assert_eq!((status, body.as_str()), (200, "[{\"n\":1}]"));

    // Below the statement check, the session itself cannot write: not through a region's
    // store, and it has no store for local files at all.
    let ctx = svc.context();
    for sql in [
        format!("COPY (SELECT 2.0 AS value) TO 'promlake://eu1/{key}' STORED AS PARQUET"),
        "COPY (SELECT 1 AS a) TO 'promlake://eu1/blocks/forged.csv' STORED AS CSV".into(),
        format!(
            "COPY (SELECT 1 AS a) TO '{}' STORED AS CSV",
            victim.display()
        ),
    ] {
        let res = match ctx.sql(&sql).await {
            Ok(df) => df.collect().await.map(|_| ()),
            Err(e) => Err(e),
        };
        assert!(res.is_err(), "{sql} was written");
    }
    assert!(!victim.exists());
    assert!(!data.join("blocks/forged.csv").exists());
    assert_eq!(std::fs::read(data.join(key.as_ref())).unwrap(), original);
}

/// Long chains of operators and deep nesting are refused with a message or answered; the
/// process survives every one (a stack overflow would abort this test binary).
#[tokio::test]
async fn deep_expressions_are_errors_not_crashes() {
    let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let svc = service_with("", vec![("eu1", mem)], T0);
    let chain = |n: usize, op: &str| {
        let mut s = String::from("SELECT 1");
        for _ in 1..n {
            s.push_str(op);
            s.push('1');
        }
        s
    };
    let (_, b) = svc.sql(&chain(350, "+")).await.unwrap();
    assert_eq!(i64s(&b, 0), vec![350]);
    for op in ["+", " * ", " - ", " OR 1 = ", " AND 1 = ", " || "] {
        for n in [2000, 20_000] {
            let e = svc.sql(&chain(n, op)).await.unwrap_err();
            assert_eq!(e.status(), 400, "{op} x {n}: {e}");
            assert!(e.to_string().contains("more than 400 deep"), "{e}");
        }
    }
    // Nesting by parentheses, function calls, CASE and subqueries: the parser's own limit or
    // ours, a clear 400 either way.
    let nest = |n: usize, open: &str, close: &str| {
        format!("SELECT {}1{}", open.repeat(n), close.repeat(n))
    };
    for (open, close) in [
        ("(", ")"),
        ("abs(", ")"),
        ("CASE WHEN true THEN ", " END"),
        ("(SELECT ", ")"),
        ("-", ""),
        ("NOT ", ""),
    ] {
        for n in [10, 100, 1000, 5000] {
            match svc.sql(&nest(n, open, close)).await {
                Ok(_) => assert!(n <= 400, "{open} x {n} was planned"),
                Err(e) => assert_eq!(e.status(), 400, "{open} x {n}: {e}"),
            }
        }
    }
}

/// `now()` is the service clock's time, not the wall clock's.
#[tokio::test]
async fn now_is_the_injected_clock() {
    let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let svc = service_with("", vec![("eu1", mem)], T0 + 1234);
    let (_, b) = svc
        .sql("SELECT CAST(now() AS BIGINT) / 1000000 AS t")
        .await
        .unwrap();
    assert_eq!(i64s(&b, 0), vec![T0 + 1234]);
}

/// A query that would run for hours is cancelled at `query.timeout`, on `samples` as on
/// `samples_raw`; while it runs, other requests are answered; after it, its task is gone.
#[tokio::test]
async fn heavy_queries_are_cancelled_and_do_not_block_others() {
    let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    day_of_data(mem.as_ref()).await;
    let svc = Arc::new(service_with(
        "query: {timeout: 3s}",
        vec![("eu1", mem)],
        T0 + 25 * H,
    ));
    let app = router(AppState {
        service: svc.clone(),
    });
    for table in ["samples", "samples_raw"] {
        let heavy = {
            let app = app.clone();
            let sql = format!("SELECT count(*) FROM {table} a, {table} b, {table} c");
            tokio::spawn(async move { post_sql(&app, &sql).await })
        };
        // While it computes, health checks and small queries are answered.
        let resp = app
            .clone()
            .oneshot(
                axum::http::Request::get("/-/healthy")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let (status, body) = post_sql(&app, "SELECT 1 AS one").await;
        assert_eq!((status, body.as_str()), (200, "[{\"one\":1}]"));
        assert!(!heavy.is_finished(), "{table}: the heavy query ended early");
        let (status, body) = heavy.await.unwrap();
        assert_eq!(status, 503, "{table}: {body}");
        assert!(body.contains("\"errorType\":\"timeout\""), "{body}");
        // The cancelled query stops computing (bounded wait: it ends at its next yield).
        let mut waited = 0;
        while svc.running_query_tasks() > 0 {
            assert!(
                waited < 600,
                "{table}: the cancelled query is still running"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            waited += 1;
        }
    }
}

/// What `curl -g 'host/federate?match[]={__name__=~"job:.*"}'` sends: braces and quotes raw in
/// the request line. Prometheus accepts it; so must promlake, over a real socket.
#[tokio::test]
async fn federate_accepts_raw_braces_and_quotes_in_the_query_string() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let now = T0 + 60_000;
    put_block(
        mem.as_ref(),
        "eu1",
        "a",
        vec![Sample::new(
            series("job:up:sum", &[("job", "node")]),
            now - 1000,
            2.0,
        )],
    )
    .await;
    let app = router(AppState {
        service: Arc::new(service_with("", vec![("eu1", mem)], now)),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(promlake_query::listener::LenientListener(listener), app)
            .await
            .unwrap()
    });
    for target in [
        "/federate?match[]={__name__=~\"job:.*\"}",
        "/federate?match[]=job:up:sum{job=\"node\"}",
    ] {
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        conn.write_all(
            format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut resp = String::new();
        conn.read_to_string(&mut resp).await.unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "{target}: {resp}");
        assert!(
            resp.contains(&format!(
                "job:up:sum{{job=\"node\",instance=\"\"}} 2 {}",
                now - 1000
            )),
            "{target}: {resp}"
        );
    }
}

/// A zero-byte object under a block key was read as an empty block: its rows silently missing.
#[tokio::test]
async fn a_truncated_block_is_an_error_naming_its_key() {
    let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    day_of_data(mem.as_ref()).await;
    let key = BlockKey {
        region: "eu1".into(),
        min_ts: T0 + 5 * H,
        max_ts: T0 + 5 * H + 1000,
        shard: Shard::ALL,
        replica: "a".into(),
        id: new_ulid(T0 + 5 * H + 1000),
    };
    for bytes in [&b""[..], &b"PAR1"[..]] {
        object_store::ObjectStoreExt::put(
            mem.as_ref(),
            &key.path(),
            PutPayload::from(bytes.to_vec()),
        )
        .await
        .unwrap();
        let svc = service_with("", vec![("eu1", mem.clone())], T0 + 25 * H);
        let e = svc.sql("SELECT count(*) FROM samples").await.unwrap_err();
        assert_eq!(e.status(), 422, "{e}");
        assert!(e.to_string().contains(key.path().as_ref()), "{e}");
        assert!(e.to_string().contains("corrupt"), "{e}");
        // Outside its hour, queries do not touch it.
        let (_, b) = svc
            .sql("SELECT count(*) FROM samples WHERE timestamp < TIMESTAMP '2026-11-24T02:00:00Z'")
            .await
            .unwrap();
        assert_eq!(i64s(&b, 0), vec![2 * 60 * 4]);
    }
}

/// Results count against `query.memory_limit` (a scalar function can make a large one), every
/// query has its own limit within `query.server_memory_limit`, and `query.max_concurrency`
/// admits queries: past either, a busy service answers 503 with `Retry-After`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_and_concurrency_limits_hold_per_query_and_per_server() {
    let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    day_of_data(mem.as_ref()).await;
    let svc = service_with(
        "query: {memory_limit: 16MiB, server_memory_limit: 1GiB}",
        vec![("eu1", mem.clone())],
        T0 + 25 * H,
    );
    let e = svc
        .sql("SELECT repeat('x', 50000000) AS big")
        .await
        .unwrap_err();
    assert_eq!(e.status(), 422, "{e}");
    assert!(e.to_string().contains("query.memory_limit"), "{e}");
    svc.sql("SELECT repeat('x', 1000) AS small").await.unwrap();

    let svc = service_with(
        "query: {memory_limit: 1GiB, server_memory_limit: 16MiB}",
        vec![("eu1", mem.clone())],
        T0 + 25 * H,
    );
    let e = svc
        .sql("SELECT repeat('x', 50000000) AS big")
        .await
        .unwrap_err();
    assert_eq!((e.status(), e.error_type()), (503, "unavailable"), "{e}");
    assert!(e.to_string().contains("query.server_memory_limit"), "{e}");
    let (_, b) = svc.sql("SELECT count(*) FROM samples").await.unwrap();
    assert_eq!(i64s(&b, 0), vec![24 * 60 * 4]);

    // One slot: a query sent while a heavy one runs waits for it, then runs.
    let svc = Arc::new(service_with(
        "query: {max_concurrency: 1, timeout: 3s}",
        vec![("eu1", mem)],
        T0 + 25 * H,
    ));
    let heavy = {
        let svc = svc.clone();
        tokio::spawn(async move {
            let r = svc
                .sql("SELECT count(*) FROM samples a, samples b, samples c")
                .await;
            (r, tokio::time::Instant::now())
        })
    };
    while svc.running_query_tasks() == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let _ = svc.sql("SELECT 1").await;
    let light_done = tokio::time::Instant::now();
    let (heavy, heavy_done) = heavy.await.unwrap();
    assert!(
        light_done > heavy_done,
        "the light query ran beside the heavy one"
    );
    assert_eq!(heavy.unwrap_err().error_type(), "timeout");
}

/// The `samples` table counts exactly the rows that `promlake_core::dedup::DedupRule` keeps, over
/// random blocks of three replicas with gaps, restarts and blocks written twice.
#[tokio::test]
async fn samples_apply_the_core_dedup_rule() {
    use promlake_core::dedup::{DedupRule, Row};
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let interval = 15_000;
    for case in 0..12 {
        let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let mut stored: Vec<(u64, i64, String, f64)> = Vec::new();
        for replica in ["a", "b", "c"] {
            // Each replica writes a few blocks; some cover the same minutes again.
            for _ in 0..(1 + rand(3)) {
                let start = T0 + rand(8) as i64 * 60_000;
                let mut samples = Vec::new();
                for s in 0..3 {
                    let labels = series("m", &[("s", &s.to_string())]);
                    for step in 0..(rand(12) as i64) {
                        // Scrapes at a replica's own phase, with jitter and gaps.
                        let t = start + step * interval + rand(interval as u64) as i64;
                        if rand(5) == 0 {
                            continue;
                        }
                        let v = (t / 1000) as f64;
                        samples.push(Sample::new(labels.clone(), t, v));
                        stored.push((labels.hash(), t, replica.to_string(), v));
                    }
                }
                if samples.is_empty() {
                    continue;
                }
                if rand(3) == 0 {
                    // The same samples stored again: a retried write, an import run twice.
                    for x in &samples {
                        stored.push((x.series_id, x.timestamp_ms, replica.to_string(), x.value));
                    }
                    put_block(mem.as_ref(), "eu1", replica, samples.clone()).await;
                }
                put_block(mem.as_ref(), "eu1", replica, samples).await;
            }
        }
        let rows: Vec<Row<'_>> = stored
            .iter()
            .map(|(id, t, r, _)| Row {
                series_id: *id,
                timestamp_ms: *t,
                replica: r,
            })
            .collect();
        let rule = DedupRule::new(std::time::Duration::from_millis(interval as u64));
        let mut want: Vec<(u64, i64, String)> = rule
            .keep(&rows)
            .into_iter()
            .map(|i| (stored[i].0, stored[i].1, stored[i].2.clone()))
            .collect();
        want.sort();
        let svc = service_with("global: {scrape_interval: 15s}", vec![("eu1", mem)], T0 + H);
        let (_, b) = svc
            .sql("SELECT series_id, CAST(timestamp AS BIGINT) AS t, replica FROM samples ORDER BY 1, 2, 3")
            .await
            .unwrap();
        let ids = b
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<UInt64Type>().values().to_vec());
        let got: Vec<(u64, i64, String)> = ids
            .zip(i64s(&b, 1))
            .zip(strings(&b, 2))
            .map(|((id, t), r)| (id, t, r))
            .collect();
        assert_eq!(got, want, "case {case}");
    }
}
