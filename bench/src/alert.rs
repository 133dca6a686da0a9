//! `promlake-bench alert`: what HA alerting costs and how fast it is, with three evaluator
//! replicas on one store.
//!
//! - **Requests per group per tick**: object-store requests of all replicas, counted by a wrapper,
//!   divided by groups and ticks (steady state, manual clock, nothing firing and something firing).
//! - **Evaluation cost per rule**: the evaluation time promlake records for each rule.
//! - **Notification delay** (real time): from the moment a condition becomes true to the webhook
//!   receiving it, (a) for a condition computed from the time itself (what the evaluator adds:
//!   tick alignment, evaluation, delivery), and (b) for a real target that goes away (scrape, block
//!   flush, evaluation and delivery), with the intervals printed next to the figure.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use axum::Router;
use axum::routing::post;
use object_store::ObjectStore;
use object_store::memory::InMemory;
use promlake_alert::evaluator::{Evaluator, EvaluatorOptions};
use promlake_alert::rules;
use promlake_core::clock::{ManualClock, SharedClock, SystemClock};
use promlake_core::config::Config;
use promlake_core::faults::InstrumentedStore;
use promlake_core::shard::Shard;
use promlake_core::telemetry::Registry;
use promlake_fleet::{Behaviour, Fleet, PageModel};
use promlake_query::{QueryService, RegionStore};
use promlake_scrape::worker::{Worker, WorkerOptions};

#[derive(clap::Args)]
pub struct Args {
    /// Ticks for the request count.
    #[arg(long, default_value_t = 100)]
    ticks: i64,
    /// Rule groups for the request count.
    #[arg(long, default_value_t = 4)]
    groups: usize,
}

async fn sink() -> Result<(Arc<Mutex<Vec<Instant>>>, String)> {
    let got: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let g = got.clone();
    let app = Router::new().route(
        "/hook",
        post(move || {
            let g = g.clone();
            async move {
                g.lock().expect("sink lock").push(Instant::now());
                "ok"
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", l.local_addr()?);
    tokio::spawn(async move { axum::serve(l, app).await });
    Ok((got, url))
}

fn write_config(dir: &std::path::Path, rules: &str, extra: &str) -> Result<Arc<Config>> {
    std::fs::write(dir.join("rules.yml"), rules)?;
    std::fs::write(
        dir.join("promlake.yml"),
        format!("rule_files: [rules.yml]\n{extra}"),
    )?;
    Ok(Arc::new(Config::load(dir.join("promlake.yml"))?))
}

fn evaluators(
    cfg: &Arc<Config>,
    query: &Arc<QueryService>,
    store: &Arc<dyn ObjectStore>,
    clock: &SharedClock,
    n: usize,
) -> Result<Vec<Evaluator>> {
    let groups = rules::load_groups(cfg).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    (0..n)
        .map(|i| {
            Evaluator::new(
                cfg.clone(),
                groups.clone(),
                EvaluatorOptions::new(&format!("r{i}"), "bench"),
                query.clone(),
                store.clone(),
                clock.clone(),
                &Registry::new(),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))
        })
        .collect()
}

async fn requests(a: &Args) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (_got, url) = sink().await?;
    let mut rules = String::from("groups:\n");
    for g in 0..a.groups {
        rules.push_str(&format!(
            "  - name: g{g}\n    interval: 15s\n    rules:\n      - alert: Quiet{g}\n        expr: SELECT 'x' AS i, 1.0 AS value WHERE 1 = 0\n      - alert: Firing{g}\n        expr: SELECT 'x' AS i, 1.0 AS value WHERE CAST(date_part('epoch', now()) AS BIGINT) % 600 < 300\n      - record: r{g}:value\n        expr: SELECT 'x' AS i, 1.0 AS value\n"
        ));
    }
    let cfg = write_config(
        dir.path(),
        &rules,
        &format!(
            "alerting:\n  route: {{receiver: s, group_wait: 0s, group_interval: 15s}}\n  receivers: [{{name: s, webhook_configs: [{{url: '{url}'}}]}}]\n"
        ),
    )?;
    let counted = Arc::new(InstrumentedStore::new(Arc::new(InMemory::new())));
    let store: Arc<dyn ObjectStore> = counted.clone();
    let clock = Arc::new(ManualClock::new(1_795_478_400_000));
    let shared: SharedClock = clock.clone();
    let query = Arc::new(
        QueryService::new(
            &cfg,
            vec![RegionStore {
                name: "bench".into(),
                store: store.clone(),
            }],
            shared.clone(),
            &Registry::new(),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let mut evals = evaluators(&cfg, &query, &store, &shared, 3)?;
    let mut eval_seconds = std::collections::BTreeMap::<String, Vec<f64>>::new();
    // Warm up one tick (the first tick reads no previous state).
    for e in evals.iter_mut() {
        e.tick().await;
    }
    let (p0, g0, h0, l0) = (
        counted.counts.puts(),
        counted.counts.gets(),
        counted
            .counts
            .heads
            .load(std::sync::atomic::Ordering::Relaxed),
        counted.counts.lists(),
    );
    for k in 1..=a.ticks {
        clock.advance(Duration::from_secs(15));
        for (i, e) in evals.iter_mut().enumerate() {
            e.tick().await;
            if i == 0 && k == a.ticks {
                for g in e
                    .status()
                    .read()
                    .map_err(|_| anyhow::anyhow!("status lock"))?
                    .iter()
                {
                    for r in g.state.iter().flat_map(|s| s.rules.iter()) {
                        eval_seconds
                            .entry(r.name.clone())
                            .or_default()
                            .push(r.evaluation_seconds);
                    }
                }
            }
        }
    }
    let puts = counted.counts.puts() - p0;
    let gets = counted.counts.gets() - g0;
    let heads = counted
        .counts
        .heads
        .load(std::sync::atomic::Ordering::Relaxed)
        - h0;
    let lists = counted.counts.lists() - l0;
    let per = (a.ticks * a.groups as i64) as f64;
    println!(
        "requests: 3 replicas, {} groups (one quiet alert, one alert firing half the time, one recording rule each), {} ticks at 15 s, manual clock\n",
        a.groups, a.ticks
    );
    println!("| requests per group per tick (all replicas) | PUT | GET | HEAD | LIST | total |");
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| measured | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
        puts as f64 / per,
        gets as f64 / per,
        heads as f64 / per,
        lists as f64 / per,
        (puts + gets + heads + lists) as f64 / per
    );
    println!(
        "\nPUTs: the tick's state entry, the recording/ALERTS block, sent-markers of notifications. GETs: each replica checks whether the tick is decided; losers read the winner's entry. HEADs: sent-markers of the previous tick's notifications.\n"
    );
    println!("| rule | evaluation time (last tick, replica r0 or adopted) |");
    println!("|---|---:|");
    for (name, v) in eval_seconds.iter().take(3) {
        println!(
            "| {name} | {:.2} ms |",
            v.iter().sum::<f64>() / v.len() as f64 * 1000.0
        );
    }
    Ok(())
}

async fn delay_time_condition() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (got, url) = sink().await?;
    let clock: SharedClock = Arc::new(SystemClock);
    let start = promlake_core::clock::Clock::now_ms(clock.as_ref());
    // True from 7.3 s after start: not aligned with a tick.
    let t_c = start + 7_300;
    let t_c_s = t_c as f64 / 1000.0;
    let cfg = write_config(
        dir.path(),
        &format!(
            "groups:\n  - name: d\n    interval: 5s\n    rules:\n      - alert: Now\n        expr: SELECT 'x' AS i, 1.0 AS value WHERE date_part('epoch', now()) >= {t_c_s}\n"
        ),
        &format!(
            "alerting:\n  route: {{receiver: s, group_wait: 0s}}\n  receivers: [{{name: s, webhook_configs: [{{url: '{url}'}}]}}]\n"
        ),
    )?;
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let query = Arc::new(
        QueryService::new(
            &cfg,
            vec![RegionStore {
                name: "bench".into(),
                store: store.clone(),
            }],
            clock.clone(),
            &Registry::new(),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let evals = evaluators(&cfg, &query, &store, &clock, 3)?;
    let started = Instant::now();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for e in evals {
        let mut rx = rx.clone();
        tasks.push(tokio::spawn(e.run(async move {
            let _ = rx.wait_for(|s| *s).await;
        })));
    }
    while got.lock().map(|g| g.is_empty()).unwrap_or(true)
        && started.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(true);
    let first = got
        .lock()
        .map_err(|_| anyhow::anyhow!("sink lock"))?
        .first()
        .copied();
    let Some(at) = first else {
        anyhow::bail!("no notification within 30 s")
    };
    let delay = at.duration_since(started).as_secs_f64() - (t_c - start) as f64 / 1000.0;
    println!(
        "| condition computed from time (evaluator only) | 5 s | 0 s | | {delay:.2} s | one interval + group_wait = 5 s |"
    );
    println!(
        "| notifications received (3 replicas) | | | | {} | 1 |",
        got.lock().map(|g| g.len()).unwrap_or(0)
    );
    Ok(())
}

async fn delay_target_down() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (got, url) = sink().await?;
    let fleet = Fleet::start(
        1,
        PageModel {
            series: 60,
            churn: 0.0,
        },
        |_| Behaviour::Normal,
    )
    .await?;
    let addr = fleet.addresses()[0].clone();
    let clock: SharedClock = Arc::new(SystemClock);
    let cfg = write_config(
        dir.path(),
        "groups:\n  - name: d\n    interval: 2s\n    rules:\n      - alert: Down\n        expr: >\n          SELECT labels, last_value(value ORDER BY timestamp) AS value FROM samples\n          WHERE metric = 'up' AND timestamp > now() - INTERVAL '10 seconds' GROUP BY labels\n          HAVING last_value(value ORDER BY timestamp) = 0\n",
        &format!(
            "global: {{scrape_interval: 1s, scrape_timeout: 500ms}}\nstorage: {{url: 'memory://bench-alert', flush_interval: 2s}}\nscrape_configs:\n  - job_name: t\n    static_configs: [{{targets: ['{addr}']}}]\nalerting:\n  route: {{receiver: s, group_wait: 0s}}\n  receivers: [{{name: s, webhook_configs: [{{url: '{url}'}}]}}]\n"
        ),
    )?;
    let store = promlake_core::store::open("memory://bench-alert", &Default::default())?.store;
    let query = Arc::new(
        QueryService::new(
            &cfg,
            vec![RegionStore {
                name: "bench".into(),
                store: store.clone(),
            }],
            clock.clone(),
            &Registry::new(),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let worker = Worker::new(
        cfg.clone(),
        WorkerOptions::new(Shard::ALL, "a", "bench"),
        store.clone(),
        clock.clone(),
        &Registry::new(),
    )
    .await?;
    let evals = evaluators(&cfg, &query, &store, &clock, 3)?;
    let (stop, rx) = tokio::sync::watch::channel(false);
    let mut r1 = rx.clone();
    tokio::spawn(worker.run(async move {
        let _ = r1.wait_for(|s| *s).await;
    }));
    for e in evals {
        let mut r = rx.clone();
        tokio::spawn(e.run(async move {
            let _ = r.wait_for(|s| *s).await;
        }));
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    drop(fleet); // the target goes away
    let down_at = Instant::now();
    while got.lock().map(|g| g.is_empty()).unwrap_or(true)
        && down_at.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(true);
    let first = got
        .lock()
        .map_err(|_| anyhow::anyhow!("sink lock"))?
        .first()
        .copied();
    let Some(at) = first else {
        anyhow::bail!("no notification within 30 s of the target going down")
    };
    println!(
        "| target goes away (scrape, flush, evaluate, send) | 2 s | 0 s | 1 s scrape, 2 s flush | {:.2} s | scrape + flush + interval = 5 s |",
        at.duration_since(down_at).as_secs_f64()
    );
    Ok(())
}

pub fn run(a: Args) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        requests(&a).await?;
        println!("\nnotification delay (real time, 3 replicas, webhook on loopback)\n");
        println!("| condition | evaluation interval | group_wait | data path | delay | bound |");
        println!("|---|---:|---:|---|---:|---|");
        delay_time_condition().await?;
        delay_target_down().await?;
        println!("\nreproduce: cargo run --release -p promlake-bench -- alert");
        Ok(())
    })
}
