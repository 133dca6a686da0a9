//! `promlake import openmetrics FILE`: backfill. The samples of an OpenMetrics text file (what
//! `promtool tsdb create-blocks-from openmetrics` reads: every sample with a timestamp, ending
//! with `# EOF`) become blocks, one per hour.
//!
//! The whole file is parsed before anything is written, so a bad line (reported with its line
//! number) leaves storage untouched. Each hour is then one block written with a create-only PUT:
//! an hour is either stored whole or not at all. Block keys are derived from the file's content
//! and the hour, so importing the same file again writes only the hours that are missing.

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use promlake_core::block::{self, Sample};
use promlake_core::clock::SystemClock;
use promlake_core::keys;
use promlake_core::labels::Labels;
use promlake_core::shard::Shard;
use promlake_core::sink::{BlockSink, SinkMetrics, SinkOptions};
use promlake_scrape::exposition::{Entry, Format, Parser};

use super::common;

#[derive(Subcommand)]
pub enum Import {
    /// Write the samples of an OpenMetrics text file as blocks, one per hour (backfill).
    Openmetrics(OpenMetricsArgs),
}

#[derive(Args)]
pub struct OpenMetricsArgs {
    /// The OpenMetrics text file (every sample with a timestamp, ending with `# EOF`).
    file: PathBuf,
    /// The configuration file: Prometheus' prometheus.yml plus promlake's sections
    /// (storage, region, regions, query, alerting receivers).
    #[arg(long, short)]
    config: PathBuf,
    /// The replica name the blocks are written under.
    #[arg(long, default_value = "import")]
    replica: String,
}

pub async fn run(i: Import) -> Result<ExitCode> {
    let Import::Openmetrics(a) = i;
    let cfg = common::load_config(&a.config)?;
    keys::check_name("replica", &a.replica).map_err(|e| anyhow!("--replica: {e}"))?;
    if a.replica == keys::RULES_REPLICA {
        bail!("--replica: {:?} is reserved for rule output", a.replica);
    }
    let file = a.file.display().to_string();
    let bytes = std::fs::read(&a.file).with_context(|| format!("reading {file}"))?;
    let progress = Progress::new(std::io::stderr().is_terminal());

    let parsed = parse(&bytes, &file, &progress)?;
    let storage = common::open_storage(&cfg, &cfg.storage)?;
    let store = storage.store;
    let region = cfg.region().to_owned();
    let content = xxhash_rust::xxh3::xxh3_128(&bytes);

    let hours = parsed.hours.len();
    let mut opts = SinkOptions::new(&region, Shard::ALL, &a.replica);
    // The same file gives the same keys: a second import finds its hours present.
    opts.id_seed = Some(content);
    // The whole file is in memory already; the sink holds it until it is written.
    opts.max_pending_samples = u64::MAX;
    let sink = BlockSink::new(store, Arc::new(SystemClock), opts, SinkMetrics::default());
    sink.push(parsed.hours.into_values().flatten());
    progress.show(&format!("writing {hours} hour(s)"));
    let report = sink.flush().await;
    let present = report.written.iter().filter(|b| b.already_there).count();
    let written = report.written.len() - present;
    let bytes_written: u64 = report
        .written
        .iter()
        .filter(|b| !b.already_there)
        .map(|b| b.bytes)
        .sum();
    progress.done();
    println!(
        "{file}: {} samples of {} series in {hours} hour(s), {} to {}",
        parsed.samples,
        parsed.series,
        rfc3339(parsed.min_ts),
        rfc3339(parsed.max_ts)
    );
    println!(
        "{written} block(s) written ({bytes_written} bytes, {:.2} bytes/sample), {present} already present, {} failed; storage {}, region {region}, replica {}",
        if parsed.samples > 0 {
            bytes_written as f64 / parsed.samples as f64
        } else {
            0.0
        },
        report.blocks_pending,
        storage.url,
        a.replica
    );
    match report.failed {
        None => Ok(ExitCode::SUCCESS),
        Some((key, error)) => {
            eprintln!(
                "error: writing {key} failed: {error}; {} hour(s) were not written: import the file again to write them",
                report.blocks_pending
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

struct Parsed {
    hours: BTreeMap<i64, Vec<Sample>>,
    samples: u64,
    series: usize,
    min_ts: i64,
    max_ts: i64,
}

fn parse(bytes: &[u8], file: &str, progress: &Progress) -> Result<Parsed> {
    // Only a terminal shows progress; only then are the lines counted.
    let lines = if progress.on {
        memchr::memchr_iter(b'\n', bytes).count().max(1)
    } else {
        1
    };
    let mut parser = Parser::new(bytes, Format::OpenMetrics);
    // Each series' labels and id are built once, on its first sample.
    let mut series: HashMap<&str, (Arc<Labels>, u64)> = HashMap::new();
    let mut hours: BTreeMap<i64, Vec<Sample>> = BTreeMap::new();
    let (mut samples, mut min_ts, mut max_ts) = (0u64, i64::MAX, i64::MIN);
    let mut next_report = 0;
    let bad = |line: usize, m: &str| anyhow!("{file}:{line}: {m}; nothing was imported");
    loop {
        let entry = parser.next().map_err(|e| bad(e.line, &e.message))?;
        let Some(entry) = entry else { break };
        if !matches!(entry, Entry::Series) {
            continue;
        }
        let s = parser.series();
        let Some(ts) = s.timestamp_ms else {
            return Err(bad(
                s.line,
                &format!(
                    "{} has no timestamp (backfill needs one on every sample)",
                    s.text
                ),
            ));
        };
        if !block::timestamp_in_range(ts) {
            return Err(bad(
                s.line,
                &format!(
                    "{} has a timestamp out of range ({ts} ms: blocks hold years 0 to 9999)",
                    s.text
                ),
            ));
        }
        let (labels, series_id) = series
            .entry(s.text)
            .or_insert_with(|| {
                let l = Labels::from_pairs(
                    std::iter::once(("__name__", s.name))
                        .chain(s.labels.iter().map(|(n, v)| (n.as_ref(), v.as_ref()))),
                );
                let id = l.hash();
                (Arc::new(l), id)
            })
            .clone();
        hours.entry(keys::hour_start(ts)).or_default().push(Sample {
            labels,
            series_id,
            timestamp_ms: ts,
            value: s.value,
        });
        samples += 1;
        min_ts = min_ts.min(ts);
        max_ts = max_ts.max(ts);
        if progress.on && s.line >= next_report {
            progress.show(&format!("parsing {file}: {}%", s.line * 100 / lines));
            next_report = s.line + lines / 100 + 1;
        }
    }
    if samples == 0 {
        bail!("{file}: no samples; nothing was imported");
    }
    Ok(Parsed {
        hours,
        samples,
        series: series.len(),
        min_ts,
        max_ts,
    })
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| ms.to_string())
}

/// One line of progress on stderr, rewritten in place; nothing when stderr is not a terminal.
struct Progress {
    on: bool,
}

impl Progress {
    fn new(on: bool) -> Self {
        Self { on }
    }

    fn show(&self, what: &str) {
        if self.on {
            let mut e = std::io::stderr();
            let _ = write!(e, "\r\x1b[2K{what}");
            let _ = e.flush();
        }
    }

    fn done(&self) {
        if self.on {
            eprint!("\r\x1b[2K");
        }
    }
}
