//! A node_exporter-like fleet of scrape targets on loopback, for tests and benchmarks.
//!
//! Every target serves a page rendered from an explicit model ([`series`]): counters that grow,
//! gauges that move, classic histograms, and a little churn (a series whose label changes now and
//! then). Because the model is explicit, a test knows exactly which samples a scrape returned
//! without parsing the page itself. Targets can also misbehave ([`Behaviour`]): garbage, hangs,
//! connection resets, huge bodies, HTTP errors.
//!
//! The server is a minimal HTTP/1.1 implementation on raw TCP (keep-alive, gzip on request), so
//! that a misbehaviour can be exactly what a broken exporter does.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What a target does when scraped.
#[derive(Clone, Debug, PartialEq)]
pub enum Behaviour {
    /// The node_exporter-like page of the model.
    Normal,
    /// A page that does not parse.
    Garbage,
    /// Reads the request and never answers.
    Hang,
    /// Accepts the connection and resets it.
    Reset,
    /// A 200 response of this many bytes of samples, streamed.
    Huge(u64),
    /// This HTTP status, empty body.
    Status(u16),
    /// A fixed page with a content type.
    Static(Arc<Vec<u8>>, String),
    /// The model's page after this delay.
    Slow(Duration),
    /// Scrape `n` gets page `min(n, len - 1)` (text format).
    Sequence(Arc<Vec<String>>),
}

/// The shape of the fleet's pages.
#[derive(Clone, Debug)]
pub struct PageModel {
    /// About how many series a page has (at least ~60).
    pub series: usize,
    /// Probability per scrape that a target's churning series changes its label.
    pub churn: f64,
}

impl Default for PageModel {
    fn default() -> Self {
        Self {
            series: 500,
            churn: 0.05,
        }
    }
}

/// One sample of the model: name, labels (sorted by name), value.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// A metric family of the model, for rendering `# HELP`/`# TYPE`.
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    pub name: &'static str,
    pub kind: &'static str,
    pub help: &'static str,
    pub samples: Vec<ModelSample>,
}

fn mix(mut x: u64) -> u64 {
    // splitmix64
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn unit(x: u64) -> f64 {
    (mix(x) >> 11) as f64 / (1u64 << 53) as f64
}

fn l(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.clone()))
        .collect();
    v.sort();
    v
}

/// The model: every family of target `target` at its `scrape`-th scrape.
pub fn series(model: &PageModel, target: u64, scrape: u64) -> Vec<Family> {
    let seed = mix(target);
    let modes = [
        "idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user",
    ];
    let fixed = 2 * 4 * 5 + 4 * 4 + 3 * 4 + 12 + 3 + 3 * 14 + 2;
    let cpus = (model.series.saturating_sub(fixed) / modes.len()).max(1) as u64;
    let t = scrape as f64;
    let mut fams = Vec::new();

    let mut cpu = Vec::new();
    for c in 0..cpus {
        for (m, mode) in modes.iter().enumerate() {
            let rate = 0.01
                + unit(seed ^ (c << 8) ^ m as u64) * (if *mode == "idle" { 14.0 } else { 1.5 });
            cpu.push(ModelSample {
                name: "node_cpu_seconds_total".into(),
                labels: l(&[("cpu", c.to_string()), ("mode", mode.to_string())]),
                value: ((1000.0 + rate * 15.0 * t) * 100.0).round() / 100.0,
            });
        }
    }
    fams.push(Family {
        name: "node_cpu_seconds_total",
        kind: "counter",
        help: "Seconds the CPUs spent in each mode.",
        samples: cpu,
    });

    for (name, help) in [
        (
            "node_network_receive_bytes_total",
            "Network device statistic receive_bytes.",
        ),
        (
            "node_network_transmit_bytes_total",
            "Network device statistic transmit_bytes.",
        ),
    ] {
        let mut v = Vec::new();
        for d in 0..4u64 {
            for q in 0..5u64 {
                let rate = unit(seed ^ mix(d * 31 + q) ^ name.len() as u64) * 1e6;
                v.push(ModelSample {
                    name: name.into(),
                    labels: l(&[("device", format!("eth{d}")), ("queue", q.to_string())]),
                    value: (1e9 + rate * 15.0 * t).floor(),
                });
            }
        }
        fams.push(Family {
            name,
            kind: "counter",
            help,
            samples: v,
        });
    }

    for (name, help) in [
        (
            "node_disk_read_bytes_total",
            "The total number of bytes read successfully.",
        ),
        (
            "node_disk_written_bytes_total",
            "The total number of bytes written successfully.",
        ),
        (
            "node_disk_io_time_seconds_total",
            "Total seconds spent doing I/Os.",
        ),
        (
            "node_disk_reads_completed_total",
            "The total number of reads completed successfully.",
        ),
    ] {
        let mut v = Vec::new();
        for d in ["nvme0n1", "nvme1n1", "sda", "sdb"] {
            let rate = unit(seed ^ mix(d.len() as u64) ^ mix(name.len() as u64)) * 5e5;
            v.push(ModelSample {
                name: name.into(),
                labels: l(&[("device", d.to_string())]),
                value: (5e8 + rate * 15.0 * t).floor(),
            });
        }
        fams.push(Family {
            name,
            kind: "counter",
            help,
            samples: v,
        });
    }

    for (name, help) in [
        (
            "node_filesystem_avail_bytes",
            "Filesystem space available to non-root users in bytes.",
        ),
        (
            "node_filesystem_free_bytes",
            "Filesystem free space in bytes.",
        ),
        ("node_filesystem_size_bytes", "Filesystem size in bytes."),
    ] {
        let mut v = Vec::new();
        for (i, mp) in ["/", "/boot", "/home", "/var"].iter().enumerate() {
            let size = 1e11 * (1.0 + i as f64);
            let used = size * (0.3 + 0.2 * unit(seed ^ i as u64)) + 4096.0 * (t % 50.0);
            let value = if name.ends_with("size_bytes") {
                size
            } else {
                size - used
            };
            v.push(ModelSample {
                name: name.into(),
                labels: l(&[
                    ("device", format!("/dev/sda{}", i + 1)),
                    ("fstype", "ext4".into()),
                    ("mountpoint", mp.to_string()),
                ]),
                value,
            });
        }
        fams.push(Family {
            name,
            kind: "gauge",
            help,
            samples: v,
        });
    }

    let mut mem = Vec::new();
    for (i, m) in [
        "Active",
        "Buffers",
        "Cached",
        "Committed_AS",
        "Dirty",
        "Inactive",
        "MemAvailable",
        "MemFree",
        "MemTotal",
        "Shmem",
        "SwapFree",
        "Writeback",
    ]
    .iter()
    .enumerate()
    {
        let base = 1e9 * (1.0 + unit(seed ^ i as u64) * 30.0);
        let wobble = if *m == "MemTotal" {
            0.0
        } else {
            (t * 0.37 + i as f64).sin() * 1e7
        };
        mem.push(ModelSample {
            name: format!("node_memory_{m}_bytes"),
            labels: Vec::new(),
            value: (base + wobble).round(),
        });
    }
    fams.push(Family {
        name: "node_memory_bytes",
        kind: "gauge",
        help: "Memory information field.",
        samples: mem,
    });

    let mut load = Vec::new();
    for (i, n) in ["node_load1", "node_load5", "node_load15"]
        .iter()
        .enumerate()
    {
        load.push(ModelSample {
            name: n.to_string(),
            labels: Vec::new(),
            value: ((1.0 + (t * 0.1 + i as f64).sin()) * 100.0).round() / 100.0,
        });
    }
    fams.push(Family {
        name: "node_load",
        kind: "gauge",
        help: "Load average.",
        samples: load,
    });

    let bounds = [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
    ];
    let mut hist = Vec::new();
    for h in ["/", "/api", "/metrics"] {
        let n = (t + 1.0) * 10.0 * (1.0 + unit(seed ^ h.len() as u64));
        let mut cum = 0.0;
        for (i, b) in bounds.iter().enumerate() {
            cum = if *b == "+Inf" {
                n.floor()
            } else {
                (n * (i as f64 + 1.0) / bounds.len() as f64)
                    .floor()
                    .max(cum)
            };
            hist.push(ModelSample {
                name: "http_request_duration_seconds_bucket".into(),
                labels: l(&[("handler", h.to_string()), ("le", b.to_string())]),
                value: cum,
            });
        }
        hist.push(ModelSample {
            name: "http_request_duration_seconds_sum".into(),
            labels: l(&[("handler", h.to_string())]),
            value: (n * 0.2 * 1000.0).round() / 1000.0,
        });
        hist.push(ModelSample {
            name: "http_request_duration_seconds_count".into(),
            labels: l(&[("handler", h.to_string())]),
            value: n.floor(),
        });
    }
    fams.push(Family {
        name: "http_request_duration_seconds",
        kind: "histogram",
        help: "HTTP request latencies.",
        samples: hist,
    });

    // Churn: the `pid` label of this series changes with probability `churn` per scrape.
    let mut epoch = 0u64;
    for s in 0..scrape {
        if unit(seed ^ mix(s + 1)) < model.churn {
            epoch += 1;
        }
    }
    fams.push(Family {
        name: "node_procs_tracked",
        kind: "gauge",
        help: "A process whose id changes now and then.",
        samples: vec![
            ModelSample {
                name: "node_procs_tracked".into(),
                labels: l(&[("pid", (1000 + epoch).to_string())]),
                value: 1.0,
            },
            ModelSample {
                name: "node_procs_tracked".into(),
                labels: l(&[("pid", "1".into())]),
                value: 1.0,
            },
        ],
    });
    fams
}

/// The model's samples, flattened.
pub fn samples(model: &PageModel, target: u64, scrape: u64) -> Vec<ModelSample> {
    series(model, target, scrape)
        .into_iter()
        .flat_map(|f| f.samples)
        .collect()
}

/// Formats a value like Go's `strconv.FormatFloat(v, 'g', -1, 64)` for the values the model
/// produces (Rust's shortest round-trip digits; exponents are written by Rust as `1e15`, which
/// every Prometheus parser accepts).
fn fmt_value(v: f64, out: &mut String) {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

/// Renders the model as text format 0.0.4.
pub fn render(model: &PageModel, target: u64, scrape: u64) -> String {
    let mut out = String::with_capacity(model.series * 64);
    for f in series(model, target, scrape) {
        let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
        let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
        for s in f.samples {
            out.push_str(&s.name);
            if !s.labels.is_empty() {
                out.push('{');
                for (i, (k, v)) in s.labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{k}=\"{v}\"");
                }
                out.push('}');
            }
            out.push(' ');
            fmt_value(s.value, &mut out);
            out.push('\n');
        }
    }
    out
}

/// A running fleet.
pub struct Fleet {
    addrs: Vec<SocketAddr>,
    scrapes: Arc<Vec<AtomicU64>>,
    tasks: Vec<JoinHandle<()>>,
    alive: Arc<std::sync::atomic::AtomicBool>,
    pub model: PageModel,
}

impl Drop for Fleet {
    /// Stops listening and closes open connections at their next request: the targets are gone.
    fn drop(&mut self) {
        self.alive.store(false, Ordering::SeqCst);
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Fleet {
    /// Starts `n` targets on `127.0.0.1`, each on its own port; `behaviour(i)` says what target
    /// `i` does.
    pub async fn start(
        n: usize,
        model: PageModel,
        behaviour: impl Fn(usize) -> Behaviour,
    ) -> std::io::Result<Fleet> {
        let scrapes: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
        let alive = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let mut addrs = Vec::with_capacity(n);
        let mut tasks = Vec::with_capacity(n);
        for i in 0..n {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            addrs.push(listener.local_addr()?);
            let b = behaviour(i);
            let scrapes = scrapes.clone();
            let model = model.clone();
            let alive = alive.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let Ok((conn, _)) = listener.accept().await else {
                        continue;
                    };
                    let b = b.clone();
                    let scrapes = scrapes.clone();
                    let model = model.clone();
                    let alive = alive.clone();
                    tokio::spawn(async move {
                        let _ = serve(conn, i, &b, &scrapes, &model, &alive).await;
                    });
                }
            }));
        }
        Ok(Fleet {
            addrs,
            scrapes,
            tasks,
            alive,
            model,
        })
    }

    /// `host:port` of every target.
    pub fn addresses(&self) -> Vec<String> {
        self.addrs.iter().map(|a| a.to_string()).collect()
    }

    /// How many times target `i` has been scraped.
    pub fn scrapes(&self, i: usize) -> u64 {
        self.scrapes[i].load(Ordering::SeqCst)
    }

    /// The index of the target at `addr`.
    pub fn index_of(&self, addr: &str) -> Option<usize> {
        self.addrs.iter().position(|a| a.to_string() == addr)
    }
}

async fn serve(
    mut conn: TcpStream,
    target: usize,
    b: &Behaviour,
    scrapes: &[AtomicU64],
    model: &PageModel,
    alive: &std::sync::atomic::AtomicBool,
) -> std::io::Result<()> {
    if *b == Behaviour::Reset {
        conn.set_zero_linger()?;
        drop(conn);
        return Ok(());
    }
    let mut buf = Vec::with_capacity(1024);
    loop {
        // Read one request head.
        buf.clear();
        loop {
            let mut chunk = [0u8; 1024];
            let n = conn.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
            if buf.len() > 64 * 1024 {
                return Ok(());
            }
        }
        if !alive.load(Ordering::SeqCst) {
            return Ok(());
        }
        let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
        let gzip = head
            .lines()
            .any(|l| l.starts_with("accept-encoding:") && l.contains("gzip"));
        let n = scrapes[target].fetch_add(1, Ordering::SeqCst);
        match b {
            Behaviour::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return Ok(());
            }
            Behaviour::Status(code) => {
                let r = format!("HTTP/1.1 {code} Error\r\nContent-Length: 0\r\n\r\n");
                conn.write_all(r.as_bytes()).await?;
            }
            Behaviour::Huge(size) => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {size}\r\n\r\n"
                );
                conn.write_all(head.as_bytes()).await?;
                let line = b"huge_metric_with_a_long_name{label=\"value\"} 1\n";
                let block: Vec<u8> = line.iter().copied().cycle().take(64 * 1024).collect();
                let mut left = *size;
                while left > 0 {
                    let k = left.min(block.len() as u64) as usize;
                    conn.write_all(&block[..k]).await?;
                    left -= k as u64;
                }
            }
            _ => {
                if let Behaviour::Slow(d) = b {
                    tokio::time::sleep(*d).await;
                }
                let (body, ct) = match b {
                    Behaviour::Garbage => (
                        b"this is {not a metrics page\n".to_vec(),
                        "text/plain; version=0.0.4".to_string(),
                    ),
                    Behaviour::Static(body, ct) => (body.to_vec(), ct.clone()),
                    Behaviour::Sequence(pages) => (
                        pages[(n as usize).min(pages.len() - 1)].as_bytes().to_vec(),
                        "text/plain; version=0.0.4".to_string(),
                    ),
                    _ => (
                        render(model, target as u64, n).into_bytes(),
                        "text/plain; version=0.0.4; charset=utf-8".to_string(),
                    ),
                };
                let (body, enc) = if gzip {
                    let mut e =
                        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                    e.write_all(&body)?;
                    (e.finish()?, "Content-Encoding: gzip\r\n")
                } else {
                    (body, "")
                };
                let r = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\n{enc}Content-Length: {}\r\n\r\n",
                    body.len()
                );
                conn.write_all(r.as_bytes()).await?;
                conn.write_all(&body).await?;
            }
        }
    }
}

/// The OpenMetrics family a sample belongs to: its name without the type's suffix.
fn om_family<'a>(kind: &str, name: &'a str) -> &'a str {
    let suffixes: &[&str] = match kind {
        "counter" => &["_total"],
        "histogram" => &["_bucket", "_sum", "_count"],
        _ => &[],
    };
    suffixes
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name)
}

/// Writes the fleet's series as an OpenMetrics text file for backfill (what `promtool tsdb
/// create-blocks-from openmetrics` and `promlake import openmetrics` read): `targets` targets,
/// labelled `job="fleet"` and `instance="target-<i>"`, each series sampled `scrapes` times every
/// `interval_ms` from `start_ms` — the same values the live fleet serves at those scrapes.
///
/// OpenMetrics wants each family's lines together; they are spooled to one file per family in
/// `spool` (a directory) and then copied to `out` behind their `# TYPE`, so memory stays flat.
/// Each series' samples are in time order. Returns the number of samples written.
pub fn write_openmetrics(
    model: &PageModel,
    targets: u64,
    start_ms: i64,
    interval_ms: i64,
    scrapes: u64,
    spool: &std::path::Path,
    out: &mut impl std::io::Write,
) -> std::io::Result<u64> {
    use std::io::{BufWriter, Write as _};
    let mut order: Vec<(String, &'static str)> = Vec::new();
    let mut files: std::collections::HashMap<String, BufWriter<std::fs::File>> =
        std::collections::HashMap::new();
    let mut line = String::with_capacity(256);
    let mut samples = 0u64;
    for target in 0..targets {
        let instance = format!("target-{target}");
        for k in 0..scrapes {
            let ts = start_ms + k as i64 * interval_ms;
            for f in series(model, target, k) {
                for s in f.samples {
                    let fam = om_family(f.kind, &s.name);
                    if !files.contains_key(fam) {
                        let file =
                            std::fs::File::create(spool.join(format!("{}.om", order.len())))?;
                        files.insert(fam.to_owned(), BufWriter::with_capacity(1 << 16, file));
                        order.push((fam.to_owned(), f.kind));
                    }
                    line.clear();
                    line.push_str(&s.name);
                    line.push('{');
                    for (k, v) in &s.labels {
                        let _ = write!(line, "{k}=\"{v}\",");
                    }
                    let _ = write!(line, "instance=\"{instance}\",job=\"fleet\"}} ");
                    fmt_value(s.value, &mut line);
                    let _ = writeln!(line, " {}.{:03}", ts.div_euclid(1000), ts.rem_euclid(1000));
                    files
                        .get_mut(fam)
                        .expect("spool file")
                        .write_all(line.as_bytes())?;
                    samples += 1;
                }
            }
        }
    }
    for (i, (fam, kind)) in order.iter().enumerate() {
        files.get_mut(fam).expect("spool file").flush()?;
        writeln!(out, "# TYPE {fam} {kind}")?;
        let path = spool.join(format!("{i}.om"));
        std::io::copy(&mut std::fs::File::open(&path)?, out)?;
        std::fs::remove_file(&path)?;
    }
    writeln!(out, "# EOF")?;
    out.flush()?;
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_has_about_the_asked_series_and_churns() {
        let m = PageModel {
            series: 500,
            churn: 0.5,
        };
        let s0 = samples(&m, 3, 0);
        assert!((450..=560).contains(&s0.len()), "{}", s0.len());
        let pids: std::collections::HashSet<String> = (0..20)
            .map(|i| {
                samples(&m, 3, i)
                    .iter()
                    .find(|s| s.name == "node_procs_tracked")
                    .unwrap()
                    .labels[0]
                    .1
                    .clone()
            })
            .collect();
        assert!(pids.len() > 3, "churn changes the pid label");
        // Counters grow.
        let a = samples(&m, 3, 1)[0].value;
        let b = samples(&m, 3, 2)[0].value;
        assert!(b > a);
    }
}
