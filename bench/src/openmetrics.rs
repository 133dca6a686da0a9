//! `promlake-bench openmetrics`: the fleet's series for D hours at 15 s as an OpenMetrics file,
//! for backfilling Prometheus (`promtool tsdb create-blocks-from openmetrics`) and promlake
//! (`promlake import openmetrics`) with the same data.

use std::path::PathBuf;

use anyhow::{Context, Result};
use promlake_core::clock::{Clock, SystemClock};
use promlake_fleet::PageModel;

#[derive(clap::Args)]
pub struct Args {
    /// Targets (each labelled instance="target-<i>", job="fleet").
    #[arg(long, default_value_t = 10)]
    targets: u64,
    /// About how many series a target has.
    #[arg(long, default_value_t = 500)]
    series: usize,
    /// Probability per scrape that a target's churning series changes its label.
    #[arg(long, default_value_t = 0.01)]
    churn: f64,
    /// Hours of data.
    #[arg(long, default_value_t = 2)]
    hours: u64,
    /// Seconds between samples.
    #[arg(long, default_value_t = 15)]
    interval: u64,
    /// First sample, Unix milliseconds; default: the start of the hour `hours` hours before
    /// this one, so that the data ends before now.
    #[arg(long)]
    start_ms: Option<i64>,
    /// Output file.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    const HOUR: i64 = 3_600_000;
    let start = a.start_ms.unwrap_or_else(|| {
        let now = SystemClock.now_ms();
        now.div_euclid(HOUR) * HOUR - a.hours as i64 * HOUR
    });
    let interval_ms = a.interval as i64 * 1000;
    let scrapes = a.hours * 3600 / a.interval;
    let spool = tempfile::tempdir()?;
    let file =
        std::fs::File::create(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let model = PageModel {
        series: a.series,
        churn: a.churn,
    };
    let samples = promlake_fleet::write_openmetrics(
        &model,
        a.targets,
        start,
        interval_ms,
        scrapes,
        spool.path(),
        &mut out,
    )?;
    println!(
        "{}: {samples} samples, {} targets x {scrapes} scrapes from {start} (ms) every {}s",
        a.out.display(),
        a.targets,
        a.interval
    );
    Ok(())
}
