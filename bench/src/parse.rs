//! Samples per second through the front of the scrape path, on one thread: exposition parsing,
//! then the series labels of each sample (target labels, `honor_labels`, two
//! `metric_relabel_configs` rules), cold (every series labeled) and warm (the series cache of a
//! worker that scraped the same target before).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use promlake_core::config::Config;
use promlake_core::labels::Labels;
use promlake_core::testdata::prometheus_file;
use promlake_scrape::exposition::{Entry, Format, Parser};
use promlake_scrape::samples::{SampleLabeler, SeriesCache};

#[derive(clap::Args)]
pub struct Args {
    /// The page to parse (default: the real node_exporter 1.5 page of the reference data).
    #[arg(long)]
    page: Option<PathBuf>,
    /// Parse it as OpenMetrics instead of the text format.
    #[arg(long)]
    openmetrics: bool,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Measurements per case; the median is reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

const JOB: &str = "scrape_configs:
  - job_name: node
    metric_relabel_configs:
      - {source_labels: [__name__], regex: 'node_scrape_collector_.*', action: drop}
      - {action: labeldrop, regex: 'fstype'}
";

pub fn run(a: Args) -> Result<()> {
    let path = a
        .page
        .unwrap_or_else(|| prometheus_file("live/node-exporter-metrics.txt"));
    let page = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let format = if a.openmetrics {
        Format::OpenMetrics
    } else {
        Format::PrometheusText
    };
    let cfg = Config::parse(JOB)?;
    let job = &cfg.scrape_configs[0];
    let target = Labels::from_pairs([("job", "node"), ("instance", "10.0.0.1:9100")]);

    let samples = count(&page, format)?;
    let budget = Duration::from_secs_f64(a.seconds);

    let parse_only = measure(a.runs, budget, samples, || {
        let mut p = Parser::new(&page, format);
        let mut sum = 0.0;
        while let Some(e) = p.next().expect("the page parses") {
            if e == Entry::Series {
                sum += p.series().value;
            }
        }
        std::hint::black_box(sum);
    });
    let cold = measure(a.runs, budget, samples, || {
        let mut labeler = SampleLabeler::new(target.clone(), job);
        let mut p = Parser::new(&page, format);
        let mut n = 0u64;
        while let Some(e) = p.next().expect("the page parses") {
            if e == Entry::Series {
                let s = p.series();
                if let Some(l) = labeler.label(s.name, s.labels).expect("within limits") {
                    n = n.wrapping_add(l.hash());
                }
            }
        }
        std::hint::black_box(n);
    });
    let mut cache = SeriesCache::new();
    let mut labeler = SampleLabeler::new(target.clone(), job);
    let warm = measure(a.runs, budget, samples, || {
        cache.begin_round(4);
        let mut p = Parser::new(&page, format);
        let mut n = 0u64;
        while let Some(e) = p.next().expect("the page parses") {
            if e == Entry::Series {
                let s = p.series();
                let (name, labels) = (s.name, s.labels);
                if let Some(c) = cache
                    .get_or_label(s.text, || labeler.label(name, labels))
                    .expect("within limits")
                {
                    n = n.wrapping_add(c.id);
                }
            }
        }
        std::hint::black_box(n);
    });

    println!(
        "page: {} ({} bytes, {samples} samples), one thread, median of {} runs of {:.1}s\n",
        path.display(),
        page.len(),
        a.runs,
        a.seconds
    );
    println!("| case | samples/s | ns/sample |");
    println!("|---|---:|---:|");
    for (name, rate) in [
        ("parse only", parse_only),
        (
            "parse + labels + metric relabeling, cold (every series labeled)",
            cold,
        ),
        (
            "parse + labels + metric relabeling, warm (series cache, steady state)",
            warm,
        ),
    ] {
        println!("| {name} | {:.2}M | {:.0} |", rate / 1e6, 1e9 / rate);
    }
    println!("\nreproduce: cargo run --release -p promlake-bench -- parse");
    Ok(())
}

fn count(page: &[u8], format: Format) -> Result<u64> {
    let mut p = Parser::new(page, format);
    let mut n = 0;
    while let Some(e) = p.next()? {
        if e == Entry::Series {
            n += 1;
        }
    }
    Ok(n)
}

/// Samples per second: the median over `runs` measurements of `budget` each.
fn measure(runs: usize, budget: Duration, samples: u64, mut f: impl FnMut()) -> f64 {
    for _ in 0..3 {
        f(); // warm-up
    }
    let mut rates = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let mut iters = 0u64;
        while start.elapsed() < budget {
            f();
            iters += 1;
        }
        rates.push((iters * samples) as f64 / start.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}
