//! `promlake-bench query`: a global aggregation over 24 h of 10k series at 15 s in two regions,
//! run by promlake's query service and by DuckDB over the same Parquet files, in the same run.
//! Also: objects listed and bytes read by a one-hour query (pruning must keep it to that hour).
//!
//! The dataset is written as hourly blocks (what a compactor produces from the one-minute blocks
//! of the workers) with the fleet's node_exporter-like series, under `--dir`, and reused when it
//! is already there.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use arrow::array::AsArray;
use arrow::datatypes::Float64Type;
use promlake_core::block::Sample;
use promlake_core::clock::{ManualClock, SharedClock, SystemClock};
use promlake_core::config::Config;
use promlake_core::labels::Labels;
use promlake_core::shard::Shard;
use promlake_core::sink::{BlockSink, SinkMetrics, SinkOptions};
use promlake_core::store::{self, StoreOptions};
use promlake_core::telemetry::Registry;
use promlake_fleet::PageModel;
use promlake_query::{QueryService, RegionStore};

#[derive(clap::Args)]
pub struct Args {
    /// Where the dataset lives (written once).
    #[arg(long, default_value = "target/bench-data/query")]
    dir: PathBuf,
    /// Hours of data.
    #[arg(long, default_value_t = 24)]
    hours: i64,
    /// Targets (about 500 series each), split over two regions.
    #[arg(long, default_value_t = 20)]
    targets: u64,
    /// Runs per query; the median is reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Python with duckdb.
    #[arg(long, default_value = "python3")]
    python: String,
}

const T0: i64 = 1_795_478_400_000; // 2026-11-24T00:00:00Z
const STEP: i64 = 15_000;
const REGIONS: [&str; 2] = ["eu1", "us1"];

fn region_of(target: u64) -> usize {
    (target % 2) as usize
}

/// Writes the dataset unless a complete one is there; returns the number of samples.
async fn ensure_dataset(a: &Args) -> Result<u64> {
    let marker = a.dir.join(format!("complete-{}h-{}t", a.hours, a.targets));
    if let Ok(s) = std::fs::read_to_string(&marker) {
        return Ok(s.trim().parse()?);
    }
    if a.dir.exists() {
        std::fs::remove_dir_all(&a.dir)?;
    }
    eprintln!("writing the dataset under {} (once)", a.dir.display());
    let model = PageModel {
        series: 500,
        churn: 0.0,
    };
    let mut stores = Vec::new();
    for r in REGIONS {
        stores.push(store::open(
            &a.dir.join(r).display().to_string(),
            &StoreOptions::default(),
        )?);
    }
    // Series labels per target, built once (no churn: the same series every scrape).
    let series: Vec<Vec<Arc<Labels>>> = (0..a.targets)
        .map(|t| {
            promlake_fleet::samples(&model, t, 0)
                .into_iter()
                .map(|s| {
                    let mut pairs = vec![
                        ("__name__".to_string(), s.name.clone()),
                        ("instance".to_string(), format!("host-{t}:9100")),
                        (
                            "job".to_string(),
                            if t % 4 < 2 {
                                "node".to_string()
                            } else {
                                "app".to_string()
                            },
                        ),
                    ];
                    pairs.extend(s.labels.iter().cloned());
                    Arc::new(Labels::from_pairs(pairs))
                })
                .collect()
        })
        .collect();
    let per_hour = 3_600_000 / STEP;
    let sinks: Vec<BlockSink> = REGIONS
        .iter()
        .zip(&stores)
        .map(|(region, s)| {
            let mut opts = SinkOptions::new(region, Shard::ALL, "a");
            opts.max_pending_samples = u64::MAX;
            BlockSink::new(
                s.store.clone(),
                Arc::new(SystemClock),
                opts,
                SinkMetrics::default(),
            )
        })
        .collect();
    let mut total = 0u64;
    for h in 0..a.hours {
        for (ri, sink) in sinks.iter().enumerate() {
            let mut samples = Vec::new();
            for t in (0..a.targets).filter(|t| region_of(*t) == ri) {
                for s in h * per_hour..(h + 1) * per_hour {
                    let ts = T0 + s * STEP;
                    for (labels, m) in series[t as usize]
                        .iter()
                        .zip(promlake_fleet::samples(&model, t, s as u64))
                    {
                        samples.push(Sample::new(labels.clone(), ts, m.value));
                    }
                }
            }
            total += samples.len() as u64;
            sink.push(samples);
            if let Some((key, e)) = sink.flush().await.failed {
                bail!("writing {key}: {e}");
            }
        }
        eprintln!("  hour {}/{} written", h + 1, a.hours);
    }
    std::fs::write(&marker, total.to_string())?;
    Ok(total)
}

struct Case {
    name: &'static str,
    promlake: String,
    duckdb: String,
}

fn cases(dir: &Path, hours: i64) -> Vec<Case> {
    let files = format!(
        "read_parquet('{}/*/blocks/**/*.parquet', hive_partitioning = true)",
        dir.display()
    );
    let at = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).expect("a valid time");
    let end = at(T0 + hours * 3_600_000)
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    // An hour inside the data (the sixth, or the last when there are fewer).
    let h = T0 + hours.clamp(1, 6).saturating_sub(1) * 3_600_000;
    let (h0, h1) = (
        at(h).format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        at(h + 3_600_000).format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    );
    let (day, hour) = (
        at(h).format("%Y-%m-%d").to_string(),
        at(h).format("%H").to_string(),
    );
    vec![
        Case {
            name: "per-job average of every sample (24 h, both regions)",
            promlake: format!("SELECT labels['job'] AS job, avg(value) AS v FROM samples WHERE timestamp < TIMESTAMP '{end}' GROUP BY 1 ORDER BY 1"),
            duckdb: format!("SELECT labels['job'] AS job, avg(value) AS v FROM {files} GROUP BY 1 ORDER BY 1"),
        },
        Case {
            name: "per-series rate of node_cpu_seconds_total over 24 h",
            promlake: "SELECT series_id, counter_rate(timestamp, value) AS v FROM samples WHERE metric = 'node_cpu_seconds_total' GROUP BY series_id ORDER BY series_id".into(),
            duckdb: format!(
                "WITH d AS (SELECT series_id, timestamp, value, lag(value) OVER (PARTITION BY series_id ORDER BY timestamp) AS prev FROM {files} WHERE metric = 'node_cpu_seconds_total') \
                 SELECT series_id, (arg_max(value, timestamp) - arg_min(value, timestamp) + sum(CASE WHEN value < prev THEN prev ELSE 0 END)) / (epoch_ms(max(timestamp)) - epoch_ms(min(timestamp))) * 1000.0 AS v \
                 FROM d GROUP BY series_id ORDER BY series_id"
            ),
        },
        Case {
            name: "one hour: per-job sum of the latest memory gauge",
            promlake: format!("SELECT labels['job'] AS job, sum(value) AS v FROM samples WHERE metric = 'node_memory_MemFree_bytes' AND timestamp >= TIMESTAMP '{h0}' AND timestamp < TIMESTAMP '{h1}' GROUP BY 1 ORDER BY 1"),
            duckdb: format!("SELECT labels['job'] AS job, sum(value) AS v FROM {files} WHERE metric = 'node_memory_MemFree_bytes' AND day = '{day}' AND hour = '{hour}' GROUP BY 1 ORDER BY 1"),
        },
    ]
}

/// The last numeric column of a result, in row order.
fn promlake_values(batches: &[arrow::array::RecordBatch]) -> Vec<f64> {
    let mut out = Vec::new();
    for b in batches {
        let c = b.column(b.num_columns() - 1);
        let c = arrow::compute::cast(c, &arrow::datatypes::DataType::Float64).expect("numeric");
        let c = c.as_primitive::<Float64Type>();
        out.extend((0..c.len()).map(|i| c.value(i)));
    }
    out
}

pub(crate) fn duckdb_run(python: &str, sql: &str, runs: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let script = format!(
        "import duckdb, json, time\ncon = duckdb.connect()\ncon.execute('SET threads TO 2')\ncon.execute('SET enable_progress_bar = false')\nsql = {sql:?}\nts = []\nfor _ in range({runs}):\n    t = time.perf_counter()\n    rows = con.execute(sql).fetchall()\n    ts.append(time.perf_counter() - t)\nprint(json.dumps({{'times': ts, 'values': [float(r[-1]) for r in rows]}}))\n"
    );
    let out = Command::new(python)
        .args(["-c", &script])
        .output()
        .context("running DuckDB")?;
    if !out.status.success() {
        bail!("DuckDB: {}", String::from_utf8_lossy(&out.stderr));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let v: serde_json::Value =
        serde_json::from_str(last).with_context(|| format!("DuckDB printed {stdout:?}"))?;
    let times = v["times"]
        .as_array()
        .context("times")?
        .iter()
        .filter_map(|t| t.as_f64())
        .collect();
    let values = v["values"]
        .as_array()
        .context("values")?
        .iter()
        .filter_map(|t| t.as_f64())
        .collect();
    Ok((times, values))
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(a: Args) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let total = rt.block_on(ensure_dataset(&a))?;
    let bytes_on_disk: u64 = dir_bytes(&a.dir, Some("parquet"));
    let cfg = Config::parse("global: {scrape_interval: 15s}")?;
    let clock: SharedClock = Arc::new(ManualClock::new(T0 + a.hours * 3_600_000));
    let mut regions = Vec::new();
    for r in REGIONS {
        regions.push(RegionStore {
            name: r.into(),
            store: store::open(
                &a.dir.join(r).display().to_string(),
                &StoreOptions::default(),
            )?
            .store,
        });
    }
    let svc = QueryService::new(&cfg, regions, clock, &Registry::new())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "query: {} samples of {} targets (~{} series) over {} h at 15 s, two regions, hourly blocks, {:.1} MiB on disk ({:.2} bytes/sample); median of {} runs\n",
        total,
        a.targets,
        a.targets * 500,
        a.hours,
        bytes_on_disk as f64 / (1 << 20) as f64,
        bytes_on_disk as f64 / total as f64,
        a.runs
    );
    println!(
        "| query | promlake ms | DuckDB ms | promlake / DuckDB | files read | LISTs | bytes read | answers agree |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    for c in cases(&a.dir, a.hours) {
        let mut times = Vec::new();
        let mut values = Vec::new();
        let (files0, lists0, bytes0) = (
            svc.stats().files.load(std::sync::atomic::Ordering::Relaxed),
            svc.io_totals().0,
            svc.io_totals().1,
        );
        for i in 0..a.runs {
            let t = Instant::now();
            let (_, b) = rt
                .block_on(svc.sql(&c.promlake))
                .map_err(|e| anyhow::anyhow!("{}: {e}", c.name))?;
            times.push(t.elapsed().as_secs_f64());
            if i == 0 {
                values = promlake_values(&b);
            }
        }
        let runs = a.runs as u64;
        let files = (svc.stats().files.load(std::sync::atomic::Ordering::Relaxed) - files0) / runs;
        let lists = (svc.io_totals().0 - lists0) / runs;
        let bytes = (svc.io_totals().1 - bytes0) / runs;
        let (dtimes, dvalues) = duckdb_run(&a.python, &c.duckdb, a.runs)?;
        let agree = values.len() == dvalues.len()
            && values
                .iter()
                .zip(&dvalues)
                .all(|(x, y)| (x - y).abs() <= 1e-6 * x.abs().max(y.abs()).max(1e-12));
        let (p, d) = (median(times) * 1000.0, median(dtimes) * 1000.0);
        println!(
            "| {} | {:.0} | {:.0} | {:.2} | {} | {} | {:.1} MiB | {} |",
            c.name,
            p,
            d,
            p / d,
            files,
            lists,
            bytes as f64 / (1 << 20) as f64,
            if agree {
                format!("yes ({} values)", values.len())
            } else {
                format!("NO ({} vs {} values)", values.len(), dvalues.len())
            }
        );
        if !agree {
            bail!("{}: promlake and DuckDB disagree", c.name);
        }
    }
    println!(
        "\nreproduce: cargo run --release -p promlake-bench -- query --hours {} --targets {}",
        a.hours, a.targets
    );
    Ok(())
}

/// Bytes of the files under `dir`, every file or only those ending in `.{ext}`.
pub(crate) fn dir_bytes(dir: &Path, ext: Option<&str>) -> u64 {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                n += dir_bytes(&p, ext);
            } else if ext.is_none_or(|x| p.extension().is_some_and(|e| e == x)) {
                n += e.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    n
}
