//! The whole system on LocalStack, through the Lambda handlers only: the scrape function for two
//! shards x two replicas over a loopback fleet and a real node_exporter, the query function
//! answering SQL and /federate from function-URL events, the alert function firing a rule to a
//! webhook. Configuration comes from an object in S3, as deployed.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post;
use common::*;
use http_body_util::BodyExt;
use lambda_runtime::{Context, Diagnostic, LambdaEvent};
use object_store::{ObjectStoreExt, PutPayload};
use promlake_alert::lambda::AlertFunction;
use promlake_core::clock::{Clock, ManualClock, SharedClock, SystemClock};
use promlake_core::store;
use promlake_fleet::{Behaviour, Fleet, PageModel};
use promlake_scrape::lambda::ScrapeFunction;
use serde_json::{Value, json};
use tower::ServiceExt;

const RULES: &str = "groups:\n  - name: lambda\n    interval: 1s\n    rules:\n      - alert: NodeExporterUp\n        expr: >\n          SELECT labels['instance'] AS instance, max(value) AS value FROM samples\n          WHERE metric = 'up' AND labels['job'] = 'node' AND timestamp > now() - INTERVAL '5 minutes'\n          GROUP BY 1 HAVING max(value) = 1\n        annotations: {summary: 'node_exporter {{ $labels.instance }} is up'}\n      - record: job:up:sum\n        expr: >\n          SELECT labels['job'] AS job, sum(value) AS value FROM samples\n          WHERE metric = 'up' AND timestamp > now() - INTERVAL '5 minutes' GROUP BY 1\n";

/// A function URL event (payload version 2.0), as AWS sends it.
fn function_url_event(method: &str, path: &str, query: &str, body: &str) -> String {
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {"accept": "application/json", "content-type": "text/plain", "host": "abcdefg.lambda-url.us-east-1.on.aws", "user-agent": "curl/8.0"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abcdefg",
            "domainName": "abcdefg.lambda-url.us-east-1.on.aws",
            "domainPrefix": "abcdefg",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "curl/8.0"},
            "requestId": "9b4b5d3f-0000-4000-8000-000000000000",
            "routeKey": "$default",
            "stage": "$default",
            "time": "24/Nov/2026:03:00:00 +0000",
            "timeEpoch": 1795489200000u64
        },
        "body": body,
        "isBase64Encoded": false
    })
    .to_string()
}

/// What cargo-lambda's emulator sends: a "deadline" that is a duration (600000), long past as an
/// epoch time. The function must run as if no deadline was given, not abandon its block at once.
fn emulator_context() -> Context {
    let mut c = Context::default();
    c.deadline = 600_000;
    c
}

async fn call(router: &axum::Router, event: String) -> (u16, String) {
    let req = lambda_http::request::from_str(&event).expect("a function URL event");
    let resp = router
        .clone()
        .oneshot(req.map(axum::body::Body::new))
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_system_through_lambda_handlers_on_localstack() {
    let opts = promlake_core::testdata::s3_test_options();
    let base = promlake_core::testdata::s3_test_url("lambda");
    let rest = base.trim_start_matches("s3://");
    let (bucket, prefix) = rest.split_once('/').unwrap();

    // Targets: a fleet and a real node_exporter.
    let fleet = Fleet::start(
        6,
        PageModel {
            series: 80,
            churn: 0.0,
        },
        |_| Behaviour::Normal,
    )
    .await
    .unwrap();
    let ne_port = free_port();
    let _ne = Proc::spawn(
        std::process::Command::new(peer("prometheus-node-exporter"))
            .arg(format!("--web.listen-address=127.0.0.1:{ne_port}"))
            .args([
                "--collector.disable-defaults",
                "--collector.loadavg",
                "--collector.meminfo",
                "--collector.cpu",
            ]),
    );
    tokio::task::spawn_blocking(move || {
        wait_for("node_exporter", Duration::from_secs(20), || {
            http_get(&format!("http://127.0.0.1:{ne_port}/metrics"))
        })
    })
    .await
    .unwrap();

    // A webhook sink.
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |body: String| {
            let g = g.clone();
            async move {
                g.lock().unwrap().push(serde_json::from_str(&body).unwrap());
                "ok"
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sink = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });

    // The config and rules, as objects in S3.
    let targets = fleet
        .addresses()
        .iter()
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let config = format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s, external_labels: {{region: eu1}}}}\nrule_files: [rules.yml]\nscrape_configs:\n  - job_name: fleet\n    static_configs: [{{targets: [{targets}]}}]\n  - job_name: node\n    static_configs: [{{targets: ['127.0.0.1:{ne_port}']}}]\nalerting:\n  route: {{receiver: hook, group_wait: 0s}}\n  receivers: [{{name: hook, webhook_configs: [{{url: '{sink}'}}]}}]\n"
    );
    let bucket_store = store::open(&format!("s3://{bucket}"), &opts).unwrap().store;
    bucket_store
        .put(
            &format!("{prefix}/config/promlake.yml").into(),
            PutPayload::from(config.into_bytes()),
        )
        .await
        .unwrap();
    bucket_store
        .put(
            &format!("{prefix}/config/rules.yml").into(),
            PutPayload::from(RULES.as_bytes().to_vec()),
        )
        .await
        .unwrap();
    let env_map: BTreeMap<&str, String> = BTreeMap::from([
        (
            "PROMLAKE_CONFIG_URL",
            format!("s3://{bucket}/{prefix}/config/promlake.yml"),
        ),
        ("PROMLAKE_STORAGE", format!("s3://{bucket}/{prefix}/data")),
        ("PROMLAKE_INVOCATION_PERIOD", "2s".into()),
    ]);
    let env = |k: &str| env_map.get(k).cloned();
    let clock: SharedClock = Arc::new(SystemClock);

    // Scrape: 2 shards x 2 replicas, one scheduled invocation each; a shard's two replicas run
    // at the same time, as their schedules fire together.
    let scrape = ScrapeFunction::from_env(env, &opts, clock.clone())
        .await
        .unwrap();
    let mut per_shard = BTreeMap::new();
    for (shard, a, b) in [
        (
            "0/2",
            json!({"shard": "0/2", "replica": "a"}),
            json!({"shard": "0/2", "replica": "b"}),
        ),
        (
            "1/2",
            json!({"version": "0", "id": "e1", "detail-type": "Scheduled Event", "source": "aws.events", "time": "2026-11-24T03:00:00Z", "resources": ["arn:aws:events:us-east-1:123456789012:rule/promlake-scrape-1-a"], "detail": {"shard": "1/2", "replica": "a"}}),
            json!({"shard": "1/2", "replica": "b"}),
        ),
    ] {
        let (sa, sb) = tokio::join!(
            scrape.handle(LambdaEvent::new(a, Context::default())),
            scrape.handle(LambdaEvent::new(b, emulator_context()))
        );
        for (s, replica) in [(sa.unwrap(), "a"), (sb.unwrap(), "b")] {
            assert_eq!((s.shard.as_str(), s.replica.as_str()), (shard, replica));
            assert_eq!(
                s.scrapes,
                2 * s.targets as u64,
                "each target scraped at its interval for the invocation's period: {s:?}"
            );
            assert_eq!(s.down, 0, "{s:?}");
            assert!(s.blocks_written >= 1 && s.state_written, "{s:?}");
            per_shard.insert(shard, s.targets);
        }
    }
    assert_eq!(
        per_shard.values().sum::<usize>(),
        7,
        "both shards together own every target once"
    );

    // Bad events fail with non-retryable error types.
    let e = scrape
        .handle(LambdaEvent::new(
            json!({"shard": "5/2"}),
            Context::default(),
        ))
        .await
        .unwrap_err();
    assert_eq!(Diagnostic::from(e).error_type, "promlake.InvalidEvent");
    let e = ScrapeFunction::from_env(|_| None, &opts, clock.clone())
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("PROMLAKE_CONFIG_URL"), "{e}");
    bucket_store
        .put(
            &format!("{prefix}/config/broken.yml").into(),
            PutPayload::from_static(b"global:\n  scrape_interval: soon\n"),
        )
        .await
        .unwrap();
    let broken: BTreeMap<&str, String> = BTreeMap::from([(
        "PROMLAKE_CONFIG_URL",
        format!("s3://{bucket}/{prefix}/config/broken.yml"),
    )]);
    let e = ScrapeFunction::from_env(|k| broken.get(k).cloned(), &opts, clock.clone())
        .await
        .err()
        .unwrap();
    let d = Diagnostic::from(e);
    assert_eq!(d.error_type, "promlake.Config");
    assert!(
        d.error_message.contains("broken.yml:2"),
        "{}",
        d.error_message
    );

    let mut mismatched = env_map.clone();
    mismatched.insert("PROMLAKE_SCRAPE_INTERVAL", "15s".into());
    let e = ScrapeFunction::from_env(|k| mismatched.get(k).cloned(), &opts, clock.clone())
        .await
        .err()
        .unwrap();
    assert!(
        e.to_string().contains(
            "every 15s (PROMLAKE_SCRAPE_INTERVAL) but global.scrape_interval is 1s in s3://"
        ),
        "{e}"
    );

    // Query: SQL and /federate through function-URL events.
    let router = promlake_query::lambda::router_from_env(env, &opts, clock.clone())
        .await
        .unwrap();
    let (status, body) = call(
        &router,
        function_url_event("POST", "/api/v1/sql", "format=json", "SELECT labels['job'] AS job, count(DISTINCT labels['instance']) AS targets, sum(value) / count(*) AS up FROM samples WHERE metric = 'up' GROUP BY 1 ORDER BY 1"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let rows: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        rows,
        json!([{"job": "fleet", "targets": 6, "up": 1.0}, {"job": "node", "targets": 1, "up": 1.0}])
    );
    // As `curl --data-binary` sends it: a form content type, the SQL as the raw body.
    let (_, body) = call(&router, function_url_event("POST", "/api/v1/sql", "", "SELECT (SELECT count(*) FROM samples_raw WHERE metric = 'up') AS raw, (SELECT count(*) FROM samples WHERE metric = 'up') AS dedup").replace("text/plain", "application/x-www-form-urlencoded")).await;
    let counts: Value = serde_json::from_str(&body).unwrap();
    assert!(
        counts[0]["raw"].as_i64().unwrap() > counts[0]["dedup"].as_i64().unwrap(),
        "two replicas deduplicated: {counts}"
    );
    let (status, body) = call(
        &router,
        function_url_event("GET", "/federate", "match%5B%5D=node_load1", ""),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        body.starts_with("# TYPE node_load1 untyped\nnode_load1{instance=\"127.0.0.1:"),
        "{body}"
    );

    // Alert: two replicas' schedules fire at the same tick (the clock stands still, as both
    // invocations of one schedule period would see the same tick); one notification.
    let tick_clock: SharedClock = Arc::new(ManualClock::new(SystemClock.now_ms()));
    let alert = AlertFunction::from_env(env, &opts, tick_clock)
        .await
        .unwrap();
    let a = alert
        .handle(LambdaEvent::new(
            json!({"replica": "a"}),
            Context::default(),
        ))
        .await
        .unwrap();
    let b = alert
        .handle(LambdaEvent::new(
            json!({"detail": {"replica": "b"}}),
            Context::default(),
        ))
        .await
        .unwrap();
    let outcomes: Vec<&str> = a
        .groups
        .iter()
        .chain(&b.groups)
        .map(|g| g.outcome.as_str())
        .collect();
    assert_eq!(
        outcomes.iter().filter(|o| **o == "owned").count(),
        1,
        "{a:?} {b:?}"
    );
    assert_eq!(outcomes.iter().filter(|o| **o == "adopted").count(), 1);
    let notes = got.lock().unwrap().clone();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0]["status"], "firing");
    assert_eq!(
        notes[0]["alerts"][0]["labels"]["alertname"],
        "NodeExporterUp"
    );
    assert_eq!(notes[0]["alerts"][0]["labels"]["region"], "eu1");
    // The recording rule's output is served by the query function.
    let (_, body) = call(
        &router,
        function_url_event(
            "GET",
            "/federate",
            "match%5B%5D=%7B__name__%3D~%22job%3A.*%22%7D",
            "",
        ),
    )
    .await;
    assert!(body.contains("job:up:sum{job=\"fleet\""), "{body}");
}

/// What the S3 proxy does to PUTs of blocks.
#[derive(Default)]
struct Faults {
    /// Answer this many with 503 SlowDown.
    throttle: u64,
    /// Answer all with 503 SlowDown.
    fail: bool,
    /// How many were answered with 503.
    refused: u64,
}

/// An HTTP proxy in front of the S3 server that throttles PUTs of blocks as S3 does under load
/// (503 SlowDown), so the real S3 client's retries run.
async fn throttling_proxy(upstream: String, faults: Arc<Mutex<Faults>>) -> String {
    use axum::body::{Body, to_bytes};
    use axum::extract::Request;
    use axum::response::Response;
    let client = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |req: Request| {
        let (client, upstream, faults) = (client.clone(), upstream.clone(), faults.clone());
        async move {
            let path = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default();
            if req.method() == axum::http::Method::PUT && path.contains("/blocks/") {
                let mut f = faults.lock().unwrap();
                if f.fail || f.throttle > 0 {
                    f.throttle = f.throttle.saturating_sub(1);
                    f.refused += 1;
                    return Response::builder()
                        .status(503)
                        .header("content-type", "application/xml")
                        .body(Body::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"))
                        .unwrap();
                }
            }
            let (parts, body) = req.into_parts();
            let body = to_bytes(body, usize::MAX).await.unwrap();
            let mut headers = parts.headers.clone();
            headers.remove("host");
            let resp = client
                .request(parts.method, format!("{upstream}{path}"))
                .headers(headers)
                .body(body)
                .send()
                .await
                .unwrap();
            let mut out = Response::builder().status(resp.status());
            for (k, v) in resp.headers() {
                if k != "transfer-encoding" && k != "connection" {
                    out = out.header(k, v);
                }
            }
            out.body(Body::from(resp.bytes().await.unwrap())).unwrap()
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{addr}")
}

fn deadline_in(ms: i64) -> Context {
    let mut c = Context::default();
    c.deadline = (promlake_core::clock::SystemClock.now_ms() + ms) as u64;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_s3_is_retried_and_a_block_that_cannot_be_written_is_reported() {
    let direct = promlake_core::testdata::s3_test_options();
    let base = promlake_core::testdata::s3_test_url("lambda-faults");
    let rest = base.trim_start_matches("s3://");
    let (bucket, prefix) = rest.split_once('/').unwrap();
    let upstream = direct
        .s3
        .iter()
        .find(|(k, _)| k == "aws_endpoint")
        .unwrap()
        .1
        .clone();
    let faults = Arc::new(Mutex::new(Faults::default()));
    let proxy = throttling_proxy(upstream, faults.clone()).await;
    let mut opts = store::StoreOptions::s3_endpoint(&proxy, "test", "test");
    opts.max_retries = 3;

    let model = PageModel {
        series: 20,
        churn: 0.0,
    };
    let stays = Fleet::start(2, model.clone(), |_| Behaviour::Normal)
        .await
        .unwrap();
    let goes = Fleet::start(1, model, |_| Behaviour::Normal).await.unwrap();
    let gone = goes.addresses()[0].clone();
    let targets = stays
        .addresses()
        .iter()
        .chain(&goes.addresses())
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let bucket_store = store::open(&format!("s3://{bucket}"), &direct)
        .unwrap()
        .store;
    bucket_store
        .put(
            &format!("{prefix}/promlake.yml").into(),
            PutPayload::from(format!("global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: fleet\n    static_configs: [{{targets: [{targets}]}}]\n").into_bytes()),
        )
        .await
        .unwrap();
    let env_map: BTreeMap<&str, String> = BTreeMap::from([
        (
            "PROMLAKE_CONFIG_URL",
            format!("s3://{bucket}/{prefix}/promlake.yml"),
        ),
        ("PROMLAKE_STORAGE", format!("s3://{bucket}/{prefix}/data")),
        ("PROMLAKE_INVOCATION_PERIOD", "1s".into()),
        ("PROMLAKE_SHARD", "0/1".into()),
    ]);
    let env = |k: &str| env_map.get(k).cloned();
    let clock: SharedClock = Arc::new(SystemClock);
    let scrape = ScrapeFunction::from_env(env, &opts, clock.clone())
        .await
        .unwrap();

    // Two SlowDowns: the S3 client retries and the block lands.
    faults.lock().unwrap().throttle = 2;
    let first = scrape
        .handle(LambdaEvent::new(json!({}), deadline_in(20_000)))
        .await
        .unwrap();
    assert_eq!(faults.lock().unwrap().refused, 2);
    assert_eq!((first.blocks_written, first.up), (1, 3), "{first:?}");

    // S3 refuses every block: the invocation fails with a storage error before its deadline.
    faults.lock().unwrap().fail = true;
    let deadline = deadline_in(8_000);
    let at = deadline.deadline as i64;
    let e = scrape
        .handle(LambdaEvent::new(json!({}), deadline))
        .await
        .unwrap_err();
    let returned = SystemClock.now_ms();
    let d = Diagnostic::from(e);
    assert_eq!(d.error_type, "promlake.Storage", "{}", d.error_message);
    assert!(d.error_message.contains("shard 0/1"), "{}", d.error_message);
    assert!(returned < at, "returned after the deadline");
    assert!(faults.lock().unwrap().refused > 3);

    // The next invocation carries on from a consistent state: the target that went away gets a
    // stale marker for each series it had, and nothing partial was stored.
    faults.lock().unwrap().fail = false;
    drop(goes);
    let third = scrape
        .handle(LambdaEvent::new(json!({}), deadline_in(20_000)))
        .await
        .unwrap();
    assert_eq!((third.blocks_written, third.up, third.down), (1, 2, 1));
    let router = promlake_query::lambda::router_from_env(env, &direct, clock.clone())
        .await
        .unwrap();
    let sql = format!(
        "SELECT count(DISTINCT series_id) FILTER (WHERE NOT is_stale(value)) AS series, \
         count(DISTINCT series_id) FILTER (WHERE is_stale(value)) AS stale, count(*) AS rows \
         FROM samples_raw WHERE labels['instance'] = '{gone}' AND metric <> 'up' AND metric NOT LIKE 'scrape\\_%'"
    );
    let (status, body) = call(&router, function_url_event("POST", "/api/v1/sql", "", &sql)).await;
    assert_eq!(status, 200, "{body}");
    let got: Value = serde_json::from_str(&body).unwrap();
    let series = got[0]["series"].as_i64().unwrap();
    assert!(series > 0, "{got}");
    assert_eq!(got[0]["stale"].as_i64().unwrap(), series, "{got}");
    assert_eq!(third.stale_markers as i64, series, "{third:?}");
    let (_, body) = call(
        &router,
        function_url_event(
            "POST",
            "/api/v1/sql",
            "",
            "SELECT count(*) AS rows FROM samples_raw",
        ),
    )
    .await;
    let rows: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        rows[0]["rows"].as_u64().unwrap(),
        first.rows_written + third.rows_written,
        "only the two written blocks are stored"
    );
}
