//! `promlake-bench compare`: promlake side by side with Prometheus (and DuckDB on promlake's
//! Parquet), in one run on one machine, so that the ratios hold on a noisy machine.
//!
//! - **Ingest**: Prometheus, then promlake, alone in turn, scrape the same loopback fleet for the
//!   same minutes at 15 s. CPU seconds (from `/proc/<pid>/stat`) per million samples stored, and
//!   peak RSS (`VmHWM`).
//! - **Storage**: the same dataset (the fleet's series for some hours at 15 s, as an OpenMetrics
//!   file) backfilled into Prometheus (`promtool tsdb create-blocks-from openmetrics`, every byte
//!   of its blocks) and into promlake (`promlake import openmetrics`, every byte of its blocks).
//! - **Query**: on that data, equivalent queries through Prometheus' HTTP API (Prometheus started
//!   on the backfilled TSDB), promlake's SQL API (`promlake query`) and DuckDB on promlake's
//!   Parquet files; the median of several runs each. The three answers must agree within 1e-6
//!   (relative); a disagreement fails the run.
//!
//! Writes `<out>/<date>-<size>.md` and prints it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use promlake_core::clock::{Clock, SystemClock};
use promlake_fleet::{Behaviour, Fleet, PageModel};
use serde_json::Value;

use crate::procstat;
use crate::query::{dir_bytes, duckdb_run, median};

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Size {
    /// A few minutes: CI runs it to check that the answers agree.
    Small,
    /// The figures: 200 targets scraped for 5 min each; 24 h of 10k series.
    Large,
}

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, value_enum, default_value = "small")]
    size: Size,
    /// The promlake binary.
    #[arg(long, default_value = "target/release/promlake")]
    promlake: PathBuf,
    #[arg(long, default_value = "/usr/bin/prometheus")]
    prometheus: PathBuf,
    #[arg(long, default_value = "/usr/bin/promtool")]
    promtool: PathBuf,
    /// Python with duckdb.
    #[arg(long, default_value = "python3")]
    python: String,
    /// Where the results table goes.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
}

struct Plan {
    ingest_targets: usize,
    ingest_series: usize,
    ingest_minutes: u64,
    data_targets: u64,
    data_series: usize,
    hours: u64,
    runs: usize,
}

impl Plan {
    fn of(s: Size) -> Plan {
        match s {
            Size::Small => Plan {
                ingest_targets: 10,
                ingest_series: 200,
                ingest_minutes: 1,
                data_targets: 10,
                data_series: 200,
                hours: 2,
                runs: 3,
            },
            Size::Large => Plan {
                ingest_targets: 200,
                ingest_series: 500,
                ingest_minutes: 5,
                data_targets: 20,
                data_series: 500,
                hours: 24,
                runs: 5,
            },
        }
    }
}

const HOUR: i64 = 3_600_000;
const STEP_MS: i64 = 300_000;
/// Samples sit 7 s after the 15 s grid, so none falls on a 5-minute step boundary: Prometheus
/// 2.42's closed windows `[t-5m, t]` and half-open ones select the same samples.
const OFFSET_MS: i64 = 7_000;

pub fn run(a: Args) -> Result<()> {
    let plan = Plan::of(a.size);
    for (what, p) in [
        ("promlake", &a.promlake),
        ("prometheus", &a.prometheus),
        ("promtool", &a.promtool),
    ] {
        if !p.exists() {
            bail!("{what}: {} does not exist", p.display());
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let tmp = tempfile::tempdir()?;
    let mut md = String::new();
    let now = SystemClock.now_ms();
    let date = chrono::DateTime::from_timestamp_millis(now)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default();
    let size = format!("{:?}", a.size).to_lowercase();
    let _ = writeln!(md, "# promlake vs Prometheus ({size}, {date})\n");
    let _ = writeln!(
        md,
        "Machine: {} cores, {}; Prometheus {}; DuckDB {}; promlake {}. Command: `bench/run --size {size}`.\n",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        mem_total(),
        version(&a.prometheus, &["--version"]),
        duckdb_version(&a.python),
        version(&a.promlake, &["--version"]),
    );

    // --- Ingest ---------------------------------------------------------------------------
    let ingest = rt.block_on(ingest(&a, &plan, tmp.path()))?;
    let _ = writeln!(
        md,
        "## Ingest: {} targets x ~{} series at 15 s, {} min each, alone in turn\n",
        plan.ingest_targets, plan.ingest_series, plan.ingest_minutes
    );
    let _ = writeln!(
        md,
        "| system | samples stored | CPU s | CPU s per 1M samples | peak RSS MiB |\n|---|---:|---:|---:|---:|"
    );
    for r in &ingest {
        let _ = writeln!(
            md,
            "| {} | {} | {:.2} | {:.3} | {:.1} |",
            r.system,
            r.samples,
            r.cpu_s,
            r.cpu_s / (r.samples as f64 / 1e6),
            r.rss as f64 / 1048576.0
        );
    }
    let per = |r: &IngestResult| r.cpu_s / r.samples.max(1) as f64;
    let _ = writeln!(
        md,
        "\nCPU per sample, promlake / Prometheus: **{:.2}x** (goal ≤ 0.5x); peak RSS: {:.2}x.\n",
        per(&ingest[1]) / per(&ingest[0]),
        ingest[1].rss as f64 / ingest[0].rss.max(1) as f64
    );

    // --- Storage ----------------------------------------------------------------------------
    let end = now.div_euclid(HOUR) * HOUR;
    let start = end - plan.hours as i64 * HOUR + OFFSET_MS;
    let file = tmp.path().join("dataset.om");
    let samples = {
        let spool = tempfile::tempdir()?;
        let mut out = std::io::BufWriter::new(std::fs::File::create(&file)?);
        let model = PageModel {
            series: plan.data_series,
            churn: 0.01,
        };
        promlake_fleet::write_openmetrics(
            &model,
            plan.data_targets,
            start,
            15_000,
            plan.hours * 240,
            spool.path(),
            &mut out,
        )?
    };
    let tsdb = tmp.path().join("prometheus-data");
    let t = Instant::now();
    check(
        Command::new(&a.promtool)
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&file)
            .arg(&tsdb),
        "promtool tsdb create-blocks-from openmetrics",
    )?;
    let prom_backfill = t.elapsed();
    let prom_bytes = dir_bytes(&tsdb, None);
    let lake = tmp.path().join("promlake-data");
    let config = tmp.path().join("promlake.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{external_labels: {{region: bench}}}}\nstorage: '{}'\n",
            lake.display()
        ),
    )?;
    let t = Instant::now();
    check(
        Command::new(&a.promlake)
            .env("RUST_LOG", "warn")
            .args(["import", "openmetrics"])
            .arg(&file)
            .arg("--config")
            .arg(&config),
        "promlake import openmetrics",
    )?;
    let lake_backfill = t.elapsed();
    let lake_bytes = dir_bytes(&lake.join("blocks"), None);
    let _ = writeln!(
        md,
        "## Storage: {} targets x ~{} series, {} h at 15 s = {samples} samples\n",
        plan.data_targets, plan.data_series, plan.hours
    );
    let _ = writeln!(
        md,
        "| system | how | bytes | bytes/sample | backfill s |\n|---|---|---:|---:|---:|"
    );
    let _ = writeln!(
        md,
        "| Prometheus | `promtool tsdb create-blocks-from openmetrics` (2 h blocks, every file) | {prom_bytes} | {:.3} | {:.1} |",
        prom_bytes as f64 / samples as f64,
        prom_backfill.as_secs_f64()
    );
    let _ = writeln!(
        md,
        "| promlake | `promlake import openmetrics` (1 h blocks, every object) | {lake_bytes} | {:.3} | {:.1} |",
        lake_bytes as f64 / samples as f64,
        lake_backfill.as_secs_f64()
    );
    let _ = writeln!(
        md,
        "\nBytes per sample, promlake / Prometheus: **{:.2}x** (goal after compaction ≤ 1.0 B/sample; raw ≤ 3 B).\n",
        lake_bytes as f64 / prom_bytes as f64
    );

    // --- Query -------------------------------------------------------------------------------
    let rows = rt.block_on(queries(
        &a,
        &plan,
        tmp.path(),
        &tsdb,
        &config,
        &lake,
        start,
        end,
    ))?;
    let _ = writeln!(
        md,
        "## Query: the same data, median of {} runs (ms)\n",
        plan.runs
    );
    let _ = writeln!(
        md,
        "| query | Prometheus | promlake | DuckDB | promlake / Prometheus | promlake / DuckDB | values | agree |\n|---|---:|---:|---:|---:|---:|---:|---|"
    );
    let mut disagree = Vec::new();
    for r in &rows {
        let _ = writeln!(
            md,
            "| {} | {:.1} | {:.1} | {:.1} | {:.2}x | {:.2}x | {} | {} |",
            r.name,
            r.prom_ms,
            r.lake_ms,
            r.duck_ms,
            r.lake_ms / r.prom_ms,
            r.lake_ms / r.duck_ms,
            r.values,
            if r.agree.is_none() { "yes" } else { "**no**" }
        );
        if let Some(d) = &r.agree {
            disagree.push(format!("{}: {d}", r.name));
        }
    }
    let _ = writeln!(md, "\nQueries:\n");
    for r in &rows {
        let _ = writeln!(
            md,
            "- **{}**\n  - PromQL: `{}`\n  - promlake: `{}`",
            r.name, r.promql, r.sql
        );
    }

    std::fs::create_dir_all(&a.out)?;
    let path = a.out.join(format!("{date}-{size}.md"));
    std::fs::write(&path, &md)?;
    // The same figures for bench/plot.py.
    let figures = serde_json::json!({
        "size": size,
        "date": date,
        "ingest": ingest.iter().map(|r| serde_json::json!({
            "system": r.system,
            "cpu_s_per_million": r.cpu_s / (r.samples.max(1) as f64 / 1e6),
            "peak_rss_mib": r.rss as f64 / 1048576.0,
        })).collect::<Vec<_>>(),
        "storage": [
            {"system": "Prometheus", "bytes_per_sample": prom_bytes as f64 / samples as f64},
            {"system": "promlake", "bytes_per_sample": lake_bytes as f64 / samples as f64},
        ],
        "query": rows.iter().map(|r| serde_json::json!({
            "name": r.name,
            "Prometheus": r.prom_ms,
            "promlake": r.lake_ms,
            "DuckDB": r.duck_ms,
        })).collect::<Vec<_>>(),
    });
    std::fs::write(
        a.out.join(format!("{date}-{size}.json")),
        serde_json::to_string_pretty(&figures)?,
    )?;
    println!("{md}");
    eprintln!("written to {}", path.display());
    if !disagree.is_empty() {
        bail!("answers disagree:\n{}", disagree.join("\n"));
    }
    Ok(())
}

struct IngestResult {
    system: &'static str,
    samples: u64,
    cpu_s: f64,
    rss: u64,
}

fn targets_yaml(fleet: &Fleet) -> String {
    fleet
        .addresses()
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn ingest(a: &Args, plan: &Plan, tmp: &Path) -> Result<Vec<IngestResult>> {
    let fleet = Fleet::start(
        plan.ingest_targets,
        PageModel {
            series: plan.ingest_series,
            churn: 0.01,
        },
        |_| Behaviour::Normal,
    )
    .await?;
    let targets = targets_yaml(&fleet);
    let run_for = Duration::from_secs(plan.ingest_minutes * 60);
    let http = reqwest::Client::new();

    // Prometheus.
    let port = free_port()?;
    let pconf = tmp.join("prometheus-ingest.yml");
    std::fs::write(
        &pconf,
        format!(
            "global: {{scrape_interval: 15s, scrape_timeout: 10s}}\nscrape_configs:\n  - job_name: fleet\n    static_configs: [{{targets: [{targets}]}}]\n"
        ),
    )?;
    let mut prom = spawn(
        Command::new(&a.prometheus)
            .arg(format!("--config.file={}", pconf.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                tmp.join("prometheus-ingest").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}")),
    )?;
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&http, &format!("{base}/-/ready"), &mut prom).await?;
    let pid = prom.id().to_string();
    let cpu0 = procstat::cpu_seconds(&pid);
    tokio::time::sleep(run_for).await;
    let cpu = procstat::cpu_seconds(&pid) - cpu0;
    let rss = procstat::peak_rss_bytes(&pid);
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let samples: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("prometheus_tsdb_head_samples_appended_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    stop(prom);
    let prometheus = IngestResult {
        system: "Prometheus",
        samples: samples as u64,
        cpu_s: cpu,
        rss,
    };

    // promlake: one scrape worker, blocks every minute on local disk.
    let data = tmp.join("promlake-ingest");
    let lconf = tmp.join("promlake-ingest.yml");
    std::fs::write(
        &lconf,
        format!(
            "global: {{scrape_interval: 15s, scrape_timeout: 10s}}\nscrape_configs:\n  - job_name: fleet\n    static_configs: [{{targets: [{targets}]}}]\nstorage: {{url: '{}', flush_interval: 1m}}\n",
            data.display()
        ),
    )?;
    let mut lake = spawn(
        Command::new(&a.promlake)
            .env("RUST_LOG", "warn")
            .args(["scrape", "--shard", "0/1", "--replica", "a", "--config"])
            .arg(&lconf),
    )?;
    let pid = lake.id().to_string();
    let cpu0 = procstat::cpu_seconds(&pid);
    tokio::time::sleep(run_for).await;
    // SIGTERM flushes what the worker holds; that work counts too: sample /proc until it exits.
    let _ = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .context("kill")?;
    let (mut cpu, mut rss) = (0.0, 0);
    loop {
        let c = procstat::cpu_seconds(&pid);
        if c > 0.0 {
            cpu = c - cpu0;
            rss = procstat::peak_rss_bytes(&pid).max(rss);
        }
        if lake.try_wait()?.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let out = Command::new(&a.promlake)
        .env("RUST_LOG", "warn")
        .args(["sql", "--format", "json", "--config"])
        .arg(&lconf)
        .arg("SELECT count(*) AS n FROM samples_raw")
        .output()?;
    let v: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("promlake sql: {}", String::from_utf8_lossy(&out.stderr)))?;
    let promlake = IngestResult {
        system: "promlake",
        samples: v[0]["n"].as_u64().unwrap_or(0),
        cpu_s: cpu,
        rss,
    };
    drop(fleet);
    Ok(vec![prometheus, promlake])
}

struct QueryRow {
    name: &'static str,
    promql: String,
    sql: String,
    prom_ms: f64,
    lake_ms: f64,
    duck_ms: f64,
    values: usize,
    agree: Option<String>,
}

/// The Prometheus 2.42 extrapolated rate of one counter over 5-minute windows, in DuckDB SQL:
/// rows `(series_id, labels, we, rate)` with `we` the window's end in ms.
fn duck_rate(files: &str, metric: &str, filter: &str) -> String {
    format!(
        "d AS (SELECT series_id, labels, epoch_ms(timestamp) AS ts, value AS v, \
            (epoch_ms(timestamp) // {STEP_MS} + 1) * {STEP_MS} AS we \
          FROM {files} WHERE metric = '{metric}' {filter}), \
         d2 AS (SELECT *, lag(v) OVER (PARTITION BY series_id, we ORDER BY ts) AS prev FROM d), \
         g AS (SELECT series_id, any_value(labels) AS labels, we, count(*) AS n, min(ts) AS f_ts, max(ts) AS l_ts, \
            arg_min(v, ts) AS f_v, arg_max(v, ts) AS l_v, sum(CASE WHEN v < prev THEN prev ELSE 0 END) AS resets \
          FROM d2 GROUP BY series_id, we HAVING count(*) >= 2), \
         x AS (SELECT *, l_v - f_v + resets AS inc, (l_ts - f_ts) / 1000.0 AS sampled, \
            (f_ts - (we - {STEP_MS})) / 1000.0 AS to_start0, (we - l_ts) / 1000.0 AS to_end FROM g), \
         y AS (SELECT *, sampled / (n - 1) AS avg_gap, \
            CASE WHEN inc > 0 AND f_v >= 0 AND sampled * (f_v / inc) < to_start0 THEN sampled * (f_v / inc) ELSE to_start0 END AS to_start FROM x), \
         r AS (SELECT series_id, labels, we, inc * (sampled \
            + CASE WHEN to_start < avg_gap * 1.1 THEN to_start ELSE avg_gap / 2 END \
            + CASE WHEN to_end < avg_gap * 1.1 THEN to_end ELSE avg_gap / 2 END) / sampled / {} AS rate FROM y)",
        STEP_MS / 1000
    )
}

#[allow(clippy::too_many_arguments)]
async fn queries(
    a: &Args,
    plan: &Plan,
    tmp: &Path,
    tsdb: &Path,
    config: &Path,
    lake: &Path,
    start: i64,
    end: i64,
) -> Result<Vec<QueryRow>> {
    let http = reqwest::Client::new();
    let pport = free_port()?;
    let empty = tmp.join("prometheus-query.yml");
    std::fs::write(&empty, "scrape_configs: []\n")?;
    let mut prom = spawn(
        Command::new(&a.prometheus)
            .arg(format!("--config.file={}", empty.display()))
            .arg(format!("--storage.tsdb.path={}", tsdb.display()))
            .arg("--storage.tsdb.retention.time=3650d")
            .arg(format!("--web.listen-address=127.0.0.1:{pport}")),
    )?;
    wait_ready(
        &http,
        &format!("http://127.0.0.1:{pport}/-/ready"),
        &mut prom,
    )
    .await?;
    let lport = free_port()?;
    let mut lake_srv = spawn(
        Command::new(&a.promlake)
            .env("RUST_LOG", "warn")
            .args([
                "query",
                "--listen",
                &format!("127.0.0.1:{lport}"),
                "--config",
            ])
            .arg(config),
    )?;
    wait_ready(
        &http,
        &format!("http://127.0.0.1:{lport}/-/ready"),
        &mut lake_srv,
    )
    .await?;

    let files = format!(
        "read_parquet('{}/**/*.parquet', hive_partitioning = true)",
        lake.join("blocks").display()
    );
    let t_end = end; // the last step: the end of the data
    let s = |ms: i64| format!("to_timestamp_millis({ms})");
    let rate_sql = |filter: &str| {
        format!(
            "SELECT series_id, labels, date_bin(INTERVAL '5 minutes', timestamp) + INTERVAL '5 minutes' AS we, \
             prom_rate(timestamp, value, date_bin(INTERVAL '5 minutes', timestamp) + INTERVAL '5 minutes', INTERVAL '5 minutes') AS rate \
             FROM samples WHERE {filter} GROUP BY series_id, labels, date_bin(INTERVAL '5 minutes', timestamp)"
        )
    };
    let window = format!(
        "timestamp > {} AND timestamp <= {}",
        s(t_end - STEP_MS),
        s(t_end)
    );
    let dwindow = format!(
        "AND epoch_ms(timestamp) > {} AND epoch_ms(timestamp) <= {t_end}",
        t_end - STEP_MS
    );

    struct Case {
        name: &'static str,
        promql: String,
        range: bool,
        sql: String,
        duckdb: String,
        /// How to order Prometheus' answer: by label, by value descending.
        by_value: bool,
        label: &'static str,
    }
    let cases = vec![
        Case {
            name: "last value per series of a metric",
            promql: "node_load1".into(),
            range: false,
            sql: format!(
                "SELECT labels['instance'] AS k, last_value(value ORDER BY timestamp) AS v FROM samples \
                 WHERE metric = 'node_load1' AND timestamp > {} AND timestamp <= {} GROUP BY 1 ORDER BY 1",
                s(t_end - STEP_MS),
                s(t_end)
            ),
            duckdb: format!(
                "SELECT labels['instance'] AS k, arg_max(value, timestamp) AS v FROM {files} \
                 WHERE metric = 'node_load1' {dwindow} GROUP BY 1 ORDER BY 1"
            ),
            by_value: false,
            label: "instance",
        },
        Case {
            name: "per-job sum of a counter's rate, 5 m steps over all hours",
            promql: "sum by (job) (rate(node_cpu_seconds_total[5m]))".into(),
            range: true,
            sql: format!(
                "SELECT labels['job'] AS job, we, sum(rate) AS v FROM ({}) GROUP BY 1, 2 ORDER BY 1, 2",
                rate_sql("metric = 'node_cpu_seconds_total'")
            ),
            duckdb: format!(
                "WITH {} SELECT labels['job'] AS job, we, sum(rate) AS v FROM r GROUP BY 1, 2 ORDER BY 1, 2",
                duck_rate(&files, "node_cpu_seconds_total", "")
            ),
            by_value: false,
            label: "job",
        },
        Case {
            name: "top 10 series by rate",
            promql: "topk(10, rate(node_cpu_seconds_total[5m]))".into(),
            range: false,
            sql: format!(
                "SELECT series_id, rate AS v FROM ({}) ORDER BY v DESC LIMIT 10",
                rate_sql(&format!("metric = 'node_cpu_seconds_total' AND {window}"))
            ),
            duckdb: format!(
                "WITH {} SELECT series_id, rate AS v FROM r ORDER BY v DESC LIMIT 10",
                duck_rate(&files, "node_cpu_seconds_total", &dwindow)
            ),
            by_value: true,
            label: "",
        },
        Case {
            name: "p90 from histogram buckets",
            promql: "histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))".into(),
            range: false,
            sql: format!(
                "SELECT histogram_quantile(0.9, le, v) AS v FROM (SELECT labels['le'] AS le, sum(rate) AS v FROM ({}) GROUP BY 1)",
                rate_sql(&format!("metric = 'http_request_duration_seconds_bucket' AND {window}"))
            ),
            duckdb: format!(
                "WITH {}, b AS (SELECT CASE WHEN labels['le'] = '+Inf' THEN 'infinity'::DOUBLE ELSE labels['le']::DOUBLE END AS ub, sum(rate) AS c FROM r GROUP BY 1), \
                 t AS (SELECT max(c) FILTER (WHERE isinf(ub)) AS total FROM b), \
                 o AS (SELECT ub, c, lag(ub) OVER (ORDER BY ub) AS pub, lag(c) OVER (ORDER BY ub) AS pc FROM b), \
                 p AS (SELECT o.*, t.total * 0.9 AS rank FROM o, t WHERE c >= t.total * 0.9 ORDER BY ub LIMIT 1) \
                 SELECT CASE WHEN isinf(ub) THEN pub WHEN pub IS NULL THEN ub * rank / c \
                        ELSE pub + (ub - pub) * (rank - pc) / (c - pc) END AS v FROM p",
                duck_rate(&files, "http_request_duration_seconds_bucket", &dwindow)
            ),
            by_value: false,
            label: "",
        },
    ];

    let mut rows = Vec::new();
    for c in cases {
        // Prometheus' HTTP API.
        let q: String = url::form_urlencoded::byte_serialize(c.promql.as_bytes()).collect();
        let url = if c.range {
            format!(
                "http://127.0.0.1:{pport}/api/v1/query_range?query={}&start={}&end={}&step=300",
                q,
                (start - OFFSET_MS) / 1000 + 300,
                t_end / 1000
            )
        } else {
            format!(
                "http://127.0.0.1:{pport}/api/v1/query?query={}&time={}",
                q,
                t_end / 1000
            )
        };
        let mut times = Vec::new();
        let mut answer = Value::Null;
        for _ in 0..plan.runs {
            let t = Instant::now();
            let body = http.get(&url).send().await?.text().await?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            answer = serde_json::from_str(&body)
                .with_context(|| format!("Prometheus answered {body:.300}"))?;
        }
        if answer["status"] != "success" {
            bail!("{}: Prometheus: {answer}", c.promql);
        }
        let prom_values = prometheus_values(&answer["data"]["result"], c.label, c.by_value);
        let prom_ms = median(times);

        // promlake's SQL API.
        let mut times = Vec::new();
        let mut body = String::new();
        for _ in 0..plan.runs {
            let t = Instant::now();
            let resp = http
                .post(format!("http://127.0.0.1:{lport}/api/v1/sql?format=json"))
                .body(c.sql.clone())
                .send()
                .await?;
            let status = resp.status();
            body = resp.text().await?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            if !status.is_success() {
                bail!("{}: promlake: {body}", c.name);
            }
        }
        let lake_rows: Value = serde_json::from_str(&body)?;
        let lake_values: Vec<f64> = lake_rows
            .as_array()
            .context("promlake rows")?
            .iter()
            .filter_map(|r| r["v"].as_f64())
            .collect();
        let lake_ms = median(times);

        // DuckDB on the same Parquet files.
        let (dtimes, duck_values) = duckdb_run(&a.python, &c.duckdb, plan.runs)?;
        let duck_ms = median(dtimes.iter().map(|t| t * 1000.0).collect());

        let agree = compare(&prom_values, &lake_values, "promlake")
            .or_else(|| compare(&prom_values, &duck_values, "DuckDB"));
        rows.push(QueryRow {
            name: c.name,
            promql: c.promql,
            sql: c.sql,
            prom_ms,
            lake_ms,
            duck_ms,
            values: prom_values.len(),
            agree,
        });
    }
    stop(prom);
    stop(lake_srv);
    Ok(rows)
}

/// Prometheus' vector or matrix as one list of numbers: ordered by the label `by` (then time),
/// or by value descending.
fn prometheus_values(result: &Value, by: &str, by_value: bool) -> Vec<f64> {
    let mut out: Vec<(String, i64, f64)> = Vec::new();
    for r in result.as_array().into_iter().flatten() {
        let key = r["metric"][by].as_str().unwrap_or_default().to_owned();
        let points: Vec<&Value> = match (r.get("value"), r.get("values")) {
            (Some(v), _) => vec![v],
            (None, Some(vs)) => vs.as_array().into_iter().flatten().collect(),
            _ => vec![],
        };
        for p in points {
            let t = (p[0].as_f64().unwrap_or(0.0) * 1000.0) as i64;
            let v = p[1]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(f64::NAN);
            out.push((key.clone(), t, v));
        }
    }
    if by_value {
        out.sort_by(|a, b| b.2.total_cmp(&a.2));
    } else {
        out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    }
    out.into_iter().map(|(_, _, v)| v).collect()
}

/// `None` when every value agrees within 1e-6 relative, else what differs.
fn compare(want: &[f64], got: &[f64], who: &str) -> Option<String> {
    if want.len() != got.len() {
        return Some(format!(
            "{who} has {} values, Prometheus {}",
            got.len(),
            want.len()
        ));
    }
    if want.is_empty() {
        return Some("no values".into());
    }
    for (i, (w, g)) in want.iter().zip(got).enumerate() {
        let tol = 1e-6 * w.abs().max(g.abs()).max(1e-12);
        if (w - g).abs() > tol {
            return Some(format!("value {i}: Prometheus {w}, {who} {g}"));
        }
    }
    None
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn spawn(cmd: &mut Command) -> Result<Child> {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {:?}", cmd.get_program()))
}

fn stop(mut c: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &c.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = c.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = c.kill();
    let _ = c.wait();
}

async fn wait_ready(http: &reqwest::Client, url: &str, child: &mut Child) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(r) = http.get(url).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if let Some(s) = child.try_wait()? {
            bail!("{url}: the process exited ({s}) before it was ready");
        }
        if Instant::now() > deadline {
            bail!("{url} was not ready within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn check(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn version(bin: &Path, args: &[&str]) -> String {
    Command::new(bin)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .unwrap_or_default()
}

fn duckdb_version(python: &str) -> String {
    Command::new(python)
        .args(["-c", "import duckdb; print(duckdb.__version__)"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn mem_total() -> String {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| format!("{:.0} GiB", kb / 1048576.0))
        .unwrap_or_default()
}
