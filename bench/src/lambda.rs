//! `promlake-bench lambda`: cold start and warm duration of the scrape function's real Lambda
//! package, run by a local implementation of the Lambda Runtime API (the HTTP interface the
//! `bootstrap` binary polls in AWS) over a fleet of loopback targets.
//!
//! - **Init**: from spawning `bootstrap` to its first `GET .../invocation/next` (what Lambda
//!   reports as *Init Duration*: process start, config read, clients built).
//! - **Invocation**: from handing out the event to the posted response. One invocation scrapes for
//!   its period, so its wall time is the period plus the work after the last scrape (writing the
//!   block and the state); the process's CPU time during the invocation is the work itself.
//!
//! Invocation 1 runs in a fresh process (cold), the later ones in the same one (warm).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::{get, post};
use promlake_core::clock::{Clock, SystemClock};
use promlake_fleet::{Behaviour, Fleet, PageModel};
use serde_json::Value;
use tokio::sync::{Mutex, mpsc};

use crate::procstat;

#[derive(clap::Args)]
pub struct Args {
    /// The function's executable: what `infra/build.sh` zips as `bootstrap` of the scrape package.
    #[arg(
        long,
        default_value = "target/x86_64-unknown-linux-gnu/release/scrape-lambda"
    )]
    bootstrap: PathBuf,
    /// Targets of the shard.
    #[arg(long, default_value_t = 100)]
    targets: usize,
    /// Series per target page.
    #[arg(long, default_value_t = 500)]
    series: usize,
    /// The config's scrape_interval.
    #[arg(long, default_value = "15s")]
    interval: String,
    /// PROMLAKE_INVOCATION_PERIOD: what one invocation scrapes (the schedule period).
    #[arg(long, default_value = "1m")]
    period: String,
    /// Invocations: the first is cold, the others warm.
    #[arg(long, default_value_t = 3)]
    invocations: usize,
    /// Storage URL (a directory, or s3://bucket/prefix with the AWS_* variables set); a fresh
    /// temporary directory by default.
    #[arg(long)]
    storage: Option<String>,
}

/// What the runtime API hands out and gets back.
struct Runtime {
    next: Mutex<mpsc::Receiver<(String, Value)>>,
    first_poll: mpsc::Sender<Instant>,
    results: mpsc::Sender<(String, Instant, Result<Value, String>)>,
}

async fn next(State(rt): State<Arc<Runtime>>) -> (HeaderMap, String) {
    let _ = rt.first_poll.try_send(Instant::now());
    let Some((id, event)) = rt.next.lock().await.recv().await else {
        // No more events: keep the poll open until the process is killed.
        std::future::pending::<()>().await;
        unreachable!()
    };
    let deadline = SystemClock.now_ms() + 900_000;
    let mut h = HeaderMap::new();
    let set = |h: &mut HeaderMap, k: &'static str, v: String| {
        h.insert(k, HeaderValue::from_str(&v).expect("header value"));
    };
    set(&mut h, "lambda-runtime-aws-request-id", id);
    set(&mut h, "lambda-runtime-deadline-ms", deadline.to_string());
    set(
        &mut h,
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:000000000000:function:promlake-scrape".into(),
    );
    set(&mut h, "lambda-runtime-trace-id", "Root=1-0-0".into());
    (h, event.to_string())
}

async fn response(
    State(rt): State<Arc<Runtime>>,
    Path(id): Path<String>,
    body: String,
) -> StatusCode {
    let v = serde_json::from_str(&body).unwrap_or(Value::String(body));
    let _ = rt.results.send((id, Instant::now(), Ok(v))).await;
    StatusCode::ACCEPTED
}

async fn error(State(rt): State<Arc<Runtime>>, Path(id): Path<String>, body: String) -> StatusCode {
    let _ = rt.results.send((id, Instant::now(), Err(body))).await;
    StatusCode::ACCEPTED
}

async fn init_error(State(rt): State<Arc<Runtime>>, body: String) -> StatusCode {
    let _ = rt
        .results
        .send(("init".into(), Instant::now(), Err(body)))
        .await;
    StatusCode::ACCEPTED
}

pub fn run(a: Args) -> Result<()> {
    if !a.bootstrap.exists() {
        bail!(
            "{} does not exist: build the packages first (infra/build.sh)",
            a.bootstrap.display()
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(bench(a))
}

async fn bench(a: Args) -> Result<()> {
    let fleet = Fleet::start(
        a.targets,
        PageModel {
            series: a.series,
            churn: 0.0,
        },
        |_| Behaviour::Normal,
    )
    .await?;
    let tmp = tempfile::tempdir()?;
    let storage = a
        .storage
        .clone()
        .unwrap_or_else(|| tmp.path().join("data").display().to_string());
    let targets = fleet
        .addresses()
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let config = format!(
        "global: {{scrape_interval: {}, scrape_timeout: 10s}}\nscrape_configs:\n  - job_name: fleet\n    static_configs: [{{targets: [{targets}]}}]\n",
        a.interval
    );

    let (event_tx, event_rx) = mpsc::channel(4);
    let (poll_tx, mut poll_rx) = mpsc::channel(1);
    let (result_tx, mut result_rx) = mpsc::channel(4);
    let state = Arc::new(Runtime {
        next: Mutex::new(event_rx),
        first_poll: poll_tx,
        results: result_tx,
    });
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api = listener.local_addr()?.to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let env: HashMap<&str, String> = HashMap::from([
        ("AWS_LAMBDA_RUNTIME_API", api),
        ("AWS_LAMBDA_FUNCTION_NAME", "promlake-scrape".into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "bench".into()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/promlake/bench/scrape".into()),
        ("PROMLAKE_CONFIG", config),
        ("PROMLAKE_STORAGE", storage.clone()),
        ("PROMLAKE_INVOCATION_PERIOD", a.period.clone()),
        ("RUST_LOG", "warn".into()),
    ]);
    let spawned = Instant::now();
    let mut child = tokio::process::Command::new(&a.bootstrap)
        .envs(&env)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", a.bootstrap.display()))?;
    let pid = child.id().context("bootstrap pid")?.to_string();
    let first_poll = tokio::select! {
        p = poll_rx.recv() => p.context("runtime API closed")?,
        r = result_rx.recv() => bail!("init failed: {:?}", r.map(|r| r.2)),
        s = child.wait() => bail!("bootstrap exited during init: {s:?}"),
    };
    let init = first_poll - spawned;

    let period = a
        .period
        .parse::<promlake_core::duration::PromDuration>()
        .map_err(|e| anyhow::anyhow!("--period: {e}"))?
        .0;
    println!(
        "# Scrape function: {} targets x {} series, scrape_interval {}, invocation period {}\n",
        a.targets, a.series, a.interval, a.period
    );
    println!(
        "Command: `promlake-bench lambda --bootstrap {} --targets {} --series {} --interval {} --period {} --invocations {}`; storage {}\n",
        a.bootstrap.display(),
        a.targets,
        a.series,
        a.interval,
        a.period,
        a.invocations,
        if a.storage.is_some() {
            storage.as_str()
        } else {
            "a local directory"
        }
    );
    println!("Init (spawn to first poll): {:.1} ms\n", ms(init));
    println!(
        "| invocation | wall ms | wall - period ms | CPU ms | peak RSS MiB | scrapes | samples | blocks |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for i in 0..a.invocations {
        let cpu0 = procstat::cpu_seconds(&pid);
        let id = format!("bench-{i}");
        let sent = Instant::now();
        event_tx
            .send((
                id.clone(),
                serde_json::json!({"shard": "0/1", "replica": "a"}),
            ))
            .await?;
        let (got, at, result) = result_rx.recv().await.context("runtime API closed")?;
        if got != id {
            bail!("response for {got}, expected {id}");
        }
        let summary = result.map_err(|e| anyhow::anyhow!("invocation {i} failed: {e}"))?;
        let wall = at - sent;
        let cpu = procstat::cpu_seconds(&pid) - cpu0;
        println!(
            "| {} ({}) | {:.0} | {:.0} | {:.0} | {:.1} | {} | {} | {} |",
            i + 1,
            if i == 0 { "cold" } else { "warm" },
            ms(wall),
            ms(wall) - period.as_millis() as f64,
            cpu * 1000.0,
            procstat::peak_rss_bytes(&pid) as f64 / (1024.0 * 1024.0),
            summary["scrapes"],
            summary["samples"],
            summary["blocks_written"],
        );
    }
    child.kill().await?;
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
