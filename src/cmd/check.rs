//! `promlake check config|targets`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Subcommand, ValueEnum};
use promlake_core::config::Config;
use promlake_scrape::discovery::Discovery;
use promlake_scrape::targets::{self, DropReason, Outcome, Shard};

#[derive(Subcommand)]
pub enum Check {
    /// Check a configuration file: exits non-zero naming the key and line of the first error.
    Config {
        /// The configuration file (Prometheus' prometheus.yml plus promlake's sections).
        file: PathBuf,
    },
    /// Check rule files as `promtool check rules` does, and plan their SQL.
    Rules(super::alert::CheckRulesArgs),
    /// Show every target with its final labels, and whether a shard scrapes it.
    Targets {
        /// The configuration file: Prometheus' prometheus.yml plus promlake's sections
        /// (storage, region, regions, query, alerting receivers).
        #[arg(long, short)]
        config: PathBuf,
        /// The shard to check, K/N (default: one shard owns everything).
        #[arg(long)]
        shard: Option<Shard>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

pub fn run(c: Check) -> Result<ExitCode> {
    match c {
        Check::Rules(a) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(super::alert::check(a)),
        Check::Config { file } => {
            let code = check_config(&file)?;
            if code != ExitCode::SUCCESS {
                return Ok(code);
            }
            // As `promtool check config`: the rule files the config names are checked too, so
            // that a config that passes here also starts.
            let cfg = Config::load(&file)?;
            let mut files: Vec<PathBuf> = match promlake_alert::rules::load_groups(&cfg) {
                Ok(groups) => groups.into_iter().map(|g| g.file).collect(),
                Err(errors) => {
                    println!("\n  FAILED: rule_files:");
                    for e in errors {
                        println!("{e}");
                    }
                    return Ok(ExitCode::FAILURE);
                }
            };
            files.dedup();
            if files.is_empty() {
                return Ok(ExitCode::SUCCESS);
            }
            println!();
            let ok = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(super::alert::check_files(&files))?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Check::Targets {
            config,
            shard,
            format,
        } => check_targets(&config, shard.unwrap_or(Shard::ALL), format),
    }
}

fn load(file: &PathBuf) -> Result<Config, ExitCode> {
    Config::load(file).map_err(|e| {
        eprintln!("{e}");
        ExitCode::FAILURE
    })
}

fn check_config(file: &PathBuf) -> Result<ExitCode> {
    let cfg = match load(file) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    println!("{}: valid", file.display());
    println!(
        "  {} scrape job(s){}",
        cfg.scrape_configs.len(),
        if cfg.scrape_configs.is_empty() {
            ""
        } else {
            ":"
        }
    );
    for j in &cfg.scrape_configs {
        let statics: usize = j.static_configs.iter().map(|s| s.targets.len()).sum();
        println!(
            "    {:<20} every {:<6} timeout {:<6} {} static target(s), {} file_sd source(s), {} relabel rule(s), {} metric relabel rule(s)",
            j.job_name,
            j.interval().to_string(),
            j.timeout().to_string(),
            statics,
            j.file_sd_configs.len(),
            j.relabel_configs.len(),
            j.metric_relabel_configs.len()
        );
    }
    if !cfg.rule_files.is_empty() {
        println!("  rule files: {}", cfg.rule_files.join(", "));
    }
    println!(
        "  storage: {} (region {}, a block every {})",
        cfg.storage_url(&cfg.storage),
        cfg.region(),
        cfg.storage.flush_interval
    );
    if !cfg.regions.is_empty() {
        let names: Vec<_> = cfg.regions.iter().map(|r| r.name.as_str()).collect();
        println!("  regions queried: {}", names.join(", "));
    }
    for w in &cfg.warnings {
        println!("  warning: {w}");
    }
    Ok(ExitCode::SUCCESS)
}

fn check_targets(file: &PathBuf, shard: Shard, format: Format) -> Result<ExitCode> {
    let cfg = match load(file) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let mut discovery = Discovery::new(&cfg);
    let (jobs, errors) = discovery.refresh();
    for e in &errors {
        eprintln!("warning: {e}");
    }
    let mut rows = Vec::new();
    for (job, (name, groups)) in cfg.scrape_configs.iter().zip(jobs) {
        debug_assert_eq!(job.job_name, name);
        for outcome in targets::job_targets(job, &groups, shard) {
            rows.push(match outcome {
                Outcome::Keep(t) => Row {
                    job: job.job_name.clone(),
                    endpoint: t.url(job),
                    owner: shard.index,
                    keep: true,
                    reason: String::new(),
                    labels: t.series_labels().to_string(),
                },
                Outcome::Drop { discovered, reason } => Row {
                    job: job.job_name.clone(),
                    endpoint: discovered.get(targets::ADDRESS).unwrap_or("").to_owned(),
                    owner: match reason {
                        DropReason::OtherShard(k) => k,
                        _ => targets::shard_of_address(
                            discovered.get(targets::ADDRESS).unwrap_or(""),
                            shard.count,
                        ),
                    },
                    keep: false,
                    reason: reason.to_string(),
                    labels: discovered.to_string(),
                },
            });
        }
    }
    match format {
        Format::Json => {
            let v: Vec<_> = rows
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "job": r.job, "endpoint": r.endpoint, "shard": format!("{}/{}", r.owner, shard.count),
                        "keep": r.keep, "reason": r.reason, "labels": r.labels,
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Format::Table => {
            let kept = rows.iter().filter(|r| r.keep).count();
            println!(
                "shard {shard}: scrapes {kept} of {} target(s)\n",
                rows.len()
            );
            let w_job = rows.iter().map(|r| r.job.len()).max().unwrap_or(3).max(3);
            let w_end = rows
                .iter()
                .map(|r| r.endpoint.len())
                .max()
                .unwrap_or(8)
                .max(8);
            println!(
                "{:<w_job$}  {:<w_end$}  {:<7}  {:<4}  LABELS",
                "JOB", "ENDPOINT", "SHARD", "KEEP"
            );
            for r in &rows {
                let keep = if r.keep {
                    "yes".to_owned()
                } else {
                    format!("no ({})", r.reason)
                };
                println!(
                    "{:<w_job$}  {:<w_end$}  {:<7}  {:<4}  {}",
                    r.job,
                    r.endpoint,
                    format!("{}/{}", r.owner, shard.count),
                    keep,
                    r.labels
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

struct Row {
    job: String,
    endpoint: String,
    owner: u64,
    keep: bool,
    reason: String,
    labels: String,
}
