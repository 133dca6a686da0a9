//! `promlake-bench fleet`: serves a node_exporter-like fleet on loopback until killed, printing
//! one target address per line (then `ready`).

use anyhow::Result;
use promlake_fleet::{Behaviour, Fleet, PageModel};

#[derive(clap::Args)]
pub struct Args {
    /// Number of targets (one port each on 127.0.0.1).
    #[arg(long, default_value_t = 100)]
    pub targets: usize,
    /// About how many series each target exposes.
    #[arg(long, default_value_t = 500)]
    pub series: usize,
    /// Probability per scrape that a target's churning series changes.
    #[arg(long, default_value_t = 0.05)]
    pub churn: f64,
}

pub fn run(a: Args) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let fleet = Fleet::start(
            a.targets,
            PageModel {
                series: a.series,
                churn: a.churn,
            },
            |_| Behaviour::Normal,
        )
        .await?;
        for addr in fleet.addresses() {
            println!("{addr}");
        }
        println!("ready");
        std::future::pending::<()>().await;
        Ok(())
    })
}
