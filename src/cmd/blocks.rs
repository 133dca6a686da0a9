//! `promlake blocks ls`: what landed in storage.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use promlake_core::block;
use promlake_core::catalog::{self, ListStats};

use super::common;

#[derive(Subcommand)]
pub enum Blocks {
    /// List blocks with their time range, shard, replica, rows and size.
    Ls {
        /// The configuration file: Prometheus' prometheus.yml plus promlake's sections
        /// (storage, region, regions, query, alerting receivers).
        #[arg(long, short)]
        config: PathBuf,
        /// Only blocks with samples at or after this time (now-1h, RFC 3339, Unix seconds).
        #[arg(long)]
        from: Option<String>,
        /// Only blocks with samples at or before this time.
        #[arg(long)]
        to: Option<String>,
        /// Only this region (default: every region in the storage).
        #[arg(long)]
        region: Option<String>,
    },
}

pub async fn run(b: Blocks) -> Result<ExitCode> {
    let Blocks::Ls {
        config,
        from,
        to,
        region,
    } = b;
    let cfg = common::load_config(&config)?;
    let storage = common::open_storage(&cfg, &cfg.storage)?;
    let store = storage.store.as_ref();
    let range = match (from, to) {
        (None, None) => None,
        (f, t) => Some((
            f.map(|s| common::parse_time(&s))
                .transpose()?
                .unwrap_or(i64::MIN / 2),
            t.map(|s| common::parse_time(&s))
                .transpose()?
                .unwrap_or(i64::MAX / 2),
        )),
    };
    // An open-ended range would cover every hour since 1970: list whole regions instead and
    // filter by the keys' time ranges.
    let bounded = range.filter(|(f, t)| *f > 0 && t - f <= 90 * 86_400_000);
    let regions = match region {
        Some(r) => vec![r],
        None => catalog::regions(store).await?,
    };
    let mut stats = ListStats::default();
    println!(
        "{:<10} {:<6} {:<8} {:<24} {:<24} {:>8} {:>7} {:>10}  KEY",
        "REGION", "SHARD", "REPLICA", "FROM", "TO", "ROWS", "SERIES", "BYTES"
    );
    let (mut n, mut rows, mut bytes) = (0u64, 0u64, 0u64);
    for r in regions {
        for b in catalog::list_blocks(store, &r, bounded, &mut stats).await? {
            if let Some((f, t)) = range
                && (b.key.max_ts < f || b.key.min_ts > t)
            {
                continue;
            }
            let meta = block::read_meta(store, &b.meta.location, b.meta.size).await;
            let (row_s, series_s) = match &meta {
                Ok(m) => (m.rows.to_string(), m.series.to_string()),
                Err(e) => {
                    eprintln!("warning: {e}");
                    ("?".into(), "?".into())
                }
            };
            if let Ok(m) = &meta {
                rows += m.rows;
            }
            n += 1;
            bytes += b.meta.size;
            println!(
                "{:<10} {:<6} {:<8} {:<24} {:<24} {:>8} {:>7} {:>10}  {}",
                b.key.region,
                b.key.shard.to_string(),
                b.key.replica,
                common::fmt_time(b.key.min_ts),
                common::fmt_time(b.key.max_ts),
                row_s,
                series_s,
                b.meta.size,
                b.meta.location
            );
        }
    }
    println!(
        "\n{n} block(s), {rows} row(s), {bytes} byte(s){}",
        if rows > 0 {
            format!(", {:.2} bytes/sample", bytes as f64 / rows as f64)
        } else {
            String::new()
        }
    );
    for f in &stats.foreign {
        eprintln!("warning: {f} is under blocks/ but is not a promlake block");
    }
    Ok(ExitCode::SUCCESS)
}
