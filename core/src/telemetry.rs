//! promlake's own metrics, exposed on `/metrics` in the text format 0.0.4 so that promlake can
//! scrape itself (and Prometheus can scrape promlake).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::labels::{Labels, escape_label_value};
use crate::value::format_go_float;

/// A value that only goes up.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn inc(&self) {
        self.inc_by(1);
    }
    pub fn inc_by(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (stored as f64 bits).
#[derive(Clone, Debug, Default)]
pub struct Gauge(Arc<AtomicU64>);

impl Gauge {
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

#[derive(Debug)]
enum Metric {
    Counter(Counter),
    Gauge(Gauge),
}

#[derive(Debug)]
struct Family {
    help: String,
    kind: &'static str,
    series: BTreeMap<Labels, Metric>,
}

/// The metrics of one process.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    families: Arc<Mutex<BTreeMap<String, Family>>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    fn get(&self, name: &str, help: &str, kind: &'static str, labels: &[(&str, &str)]) -> Metric {
        let mut fams = self.families.lock().expect("registry lock");
        let fam = fams.entry(name.to_owned()).or_insert_with(|| Family {
            help: help.to_owned(),
            kind,
            series: BTreeMap::new(),
        });
        let key = Labels::from_pairs(labels.iter().map(|(k, v)| (*k, *v)));
        let m = fam.series.entry(key).or_insert_with(|| match kind {
            "counter" => Metric::Counter(Counter::default()),
            _ => Metric::Gauge(Gauge::default()),
        });
        match m {
            Metric::Counter(c) => Metric::Counter(c.clone()),
            Metric::Gauge(g) => Metric::Gauge(g.clone()),
        }
    }

    /// The counter `name{labels}`, created at 0 the first time.
    pub fn counter(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Counter {
        match self.get(name, help, "counter", labels) {
            Metric::Counter(c) => c,
            Metric::Gauge(_) => Counter::default(),
        }
    }

    /// The gauge `name{labels}`, created at 0 the first time.
    pub fn gauge(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Gauge {
        match self.get(name, help, "gauge", labels) {
            Metric::Gauge(g) => g,
            Metric::Counter(_) => Gauge::default(),
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let fams = self.families.lock().expect("registry lock");
        let mut out = String::new();
        for (name, fam) in fams.iter() {
            let _ = writeln!(
                out,
                "# HELP {name} {}",
                fam.help.replace('\\', "\\\\").replace('\n', "\\n")
            );
            let _ = writeln!(out, "# TYPE {name} {}", fam.kind);
            for (labels, m) in &fam.series {
                out.push_str(name);
                if !labels.is_empty() {
                    out.push('{');
                    for (i, l) in labels.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let _ = write!(out, "{}=\"{}\"", l.name, escape_label_value(l.value));
                    }
                    out.push('}');
                }
                out.push(' ');
                match m {
                    Metric::Counter(c) => {
                        let _ = write!(out, "{}", c.get());
                    }
                    Metric::Gauge(g) => format_go_float(g.get(), &mut out),
                }
                out.push('\n');
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_text_format() {
        let r = Registry::new();
        r.counter("promlake_x_total", "Things.", &[("shard", "0/1")])
            .inc_by(3);
        r.counter("promlake_x_total", "Things.", &[("shard", "0/1")])
            .inc();
        r.gauge("promlake_g", "A gauge.", &[]).set(0.5);
        let text = r.render();
        assert!(
            text.contains("# TYPE promlake_x_total counter\npromlake_x_total{shard=\"0/1\"} 4\n"),
            "{text}"
        );
        assert!(text.contains("promlake_g 0.5\n"), "{text}");
    }
}
