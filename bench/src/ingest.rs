//! `promlake-bench ingest`: the scrape worker end to end against a fleet served by another
//! process: bytes per sample of raw blocks, PUT requests per worker per hour, CPU seconds per
//! million samples, and peak RSS.
//!
//! Time is simulated: rounds run back to back on a manual clock that advances one scrape interval
//! per round, so "10 minutes at 15 s" is 40 real scrapes of every target with timestamps 15 s
//! apart, flushed once per simulated minute, exactly the blocks a 10-minute run writes.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use object_store::ObjectStore;
use promlake_core::clock::{ManualClock, SharedClock};
use promlake_core::config::Config;
use promlake_core::faults::InstrumentedStore;
use promlake_core::shard::Shard;
use promlake_core::store::{self, StoreOptions};
use promlake_core::telemetry::Registry;
use promlake_scrape::worker::{Worker, WorkerOptions};

use crate::procstat;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 1000)]
    targets: usize,
    #[arg(long, default_value_t = 500)]
    series: usize,
    #[arg(long, default_value_t = 0.05)]
    churn: f64,
    /// Simulated minutes.
    #[arg(long, default_value_t = 10)]
    minutes: u64,
    /// Scrape interval in seconds.
    #[arg(long, default_value_t = 15)]
    interval: u64,
    /// Flush (write a block) every this many simulated seconds.
    #[arg(long, default_value_t = 60)]
    flush: u64,
    /// Where blocks go (default: a fresh temporary directory).
    #[arg(long)]
    storage: Option<String>,
}

pub fn run(a: Args) -> Result<()> {
    let exe = std::env::current_exe()?;
    let mut fleet = Command::new(exe)
        .args([
            "fleet",
            "--targets",
            &a.targets.to_string(),
            "--series",
            &a.series.to_string(),
            "--churn",
            &a.churn.to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the fleet")?;
    let mut addrs = Vec::new();
    for line in BufReader::new(fleet.stdout.take().context("fleet stdout")?).lines() {
        let line = line?;
        if line == "ready" {
            break;
        }
        addrs.push(line);
    }
    if addrs.len() != a.targets {
        bail!("the fleet started {} of {} targets", addrs.len(), a.targets);
    }
    let result = measure(&a, &addrs);
    let _ = fleet.kill();
    let _ = fleet.wait();
    result
}

fn measure(a: &Args, addrs: &[String]) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let url = a
        .storage
        .clone()
        .unwrap_or_else(|| tmp.path().join("data").display().to_string());
    let list = addrs
        .iter()
        .map(|x| format!("'{x}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let cfg = Arc::new(Config::parse(&format!(
        "global: {{scrape_interval: {i}s, scrape_timeout: {i}s}}\nscrape_configs:\n  - job_name: node\n    static_configs: [{{targets: [{list}]}}]\n",
        i = a.interval
    ))?);
    let storage = store::open(&url, &StoreOptions::default())?;
    let counted = Arc::new(InstrumentedStore::new(storage.store.clone()));
    let store: Arc<dyn ObjectStore> = counted.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let start_ms = 1_795_478_400_000; // an hour boundary
    let clock = Arc::new(ManualClock::new(start_ms));
    let shared: SharedClock = clock.clone();
    let pid = std::process::id().to_string();
    let cpu0 = procstat::cpu_seconds(&pid);
    let wall = Instant::now();
    let (samples, blocks, bytes, rows, series) = rt.block_on(async {
        let mut opts = WorkerOptions::new(Shard::ALL, "a", "bench");
        opts.concurrency = 256;
        let mut w = Worker::new(cfg, opts, store.clone(), shared, &Registry::new()).await?;
        let rounds_per_flush = (a.flush / a.interval).max(1);
        let flushes = (a.minutes * 60 / a.flush).max(1);
        let mut samples = 0u64;
        let mut blocks = 0u64;
        let mut bytes = 0u64;
        let mut rows = 0u64;
        let mut max_series = 0usize;
        for _ in 0..flushes {
            for _ in 0..rounds_per_flush {
                let r = w.scrape_all().await;
                if r.up != addrs.len() {
                    tracing_free_warning(r.up, addrs.len());
                }
                samples += r.samples;
                max_series = max_series.max(r.samples as usize);
                clock.advance(Duration::from_secs(a.interval));
            }
            let f = w.flush(false).await;
            blocks += f.blocks_written as u64;
            bytes += f.bytes_written;
            rows += f.rows_written;
        }
        let f = w.flush(true).await;
        blocks += f.blocks_written as u64;
        bytes += f.bytes_written;
        rows += f.rows_written;
        anyhow::Ok((samples, blocks, bytes, rows, max_series))
    })?;
    let cpu = procstat::cpu_seconds(&pid) - cpu0;
    let rss = procstat::peak_rss_bytes(&pid);
    let puts = counted.counts.puts();
    let per_hour = puts as f64 * 60.0 / a.minutes as f64;
    println!(
        "ingest: {} targets x ~{} series, {} simulated minutes at {}s, a block every {}s, one worker, storage {}\n",
        a.targets, a.series, a.minutes, a.interval, a.flush, url
    );
    println!("| measure | value |");
    println!("|---|---:|");
    println!("| samples scraped | {samples} |");
    println!("| samples stored (rows) | {rows} |");
    println!("| series per round | {series} |");
    println!("| blocks written | {blocks} |");
    println!("| bytes written | {bytes} |");
    println!(
        "| bytes per sample (raw blocks) | {:.2} |",
        bytes as f64 / rows.max(1) as f64
    );
    println!(
        "| PUT requests | {puts} ({} blocks + {} state) |",
        blocks,
        puts - blocks
    );
    println!("| PUT requests per worker per hour | {per_hour:.0} |");
    println!("| CPU seconds (worker process) | {cpu:.2} |");
    println!(
        "| CPU seconds per million samples | {:.3} |",
        cpu / (samples as f64 / 1e6)
    );
    println!("| wall seconds | {:.1} |", wall.elapsed().as_secs_f64());
    println!(
        "| peak RSS (worker process) | {:.1} MiB |",
        rss as f64 / (1 << 20) as f64
    );
    println!(
        "\nreproduce: cargo run --release -p promlake-bench -- ingest --targets {} --series {} --minutes {} --interval {} --flush {}",
        a.targets, a.series, a.minutes, a.interval, a.flush
    );
    Ok(())
}

fn tracing_free_warning(up: usize, all: usize) {
    eprintln!("warning: only {up} of {all} targets were up in a round");
}
