//! One scrape of one target: fetch the page, parse it, label its samples (`honor_labels`,
//! `metric_relabel_configs`, limits), add Prometheus' report series, and stale-mark the series
//! that vanished since the previous scrape. The worker decides when; this decides what.

use super::*;

pub(crate) struct TargetState {
    pub(crate) key: u64,
    pub(crate) job: usize,
    pub(crate) target: Target,
    pub(crate) url: String,
    pub(crate) report: Vec<Arc<Labels>>,
    pub(crate) cache: SeriesCache,
    pub(crate) prev: HashMap<u64, Arc<Labels>>,
    pub(crate) reported: bool,
    pub(crate) next_due_ms: TimestampMs,
    pub(crate) health: TargetHealth,
}

impl TargetState {
    pub(crate) fn new(key: u64, job: usize, target: Target, url: String) -> Self {
        let base = target.series_labels();
        let report = REPORT_SERIES
            .iter()
            .map(|n| {
                let mut b = base.builder();
                b.set_str(METRIC_NAME, n);
                Arc::new(b.into_labels())
            })
            .collect();
        Self {
            key,
            job,
            target,
            url,
            report,
            cache: SeriesCache::new(),
            prev: HashMap::new(),
            reported: false,
            next_due_ms: 0,
            health: TargetHealth::default(),
        }
    }

    /// Stale markers for everything this target ever reported, at `ts`.
    pub(crate) fn all_stale(&self, ts: TimestampMs, out: &mut Vec<Sample>) {
        for l in self.prev.values() {
            out.push(Sample::new(l.clone(), ts, stale_nan()));
        }
        if self.reported {
            for l in &self.report {
                out.push(Sample::new(l.clone(), ts, stale_nan()));
            }
        }
    }
}

pub(crate) struct ScrapeResult {
    pub(crate) samples: Vec<Sample>,
    pub(crate) stale: u64,
    pub(crate) failure: Option<&'static str>,
    pub(crate) rejected: Rejected,
}

/// Samples of one scrape that were parsed but not stored, as Prometheus rejects them one by one
/// without failing the scrape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Rejected {
    /// A timestamp outside [`block::MIN_TIMESTAMP_MS`]..=[`block::MAX_TIMESTAMP_MS`].
    pub(crate) out_of_bounds: u64,
    /// The first out-of-range timestamp, for the log.
    pub(crate) first_out_of_bounds: Option<TimestampMs>,
    /// A series already seen in the same page (the first sample wins).
    pub(crate) duplicate: u64,
}

#[tracing::instrument(skip_all, fields(job = %job.job_name, target = %state.url))]
pub(crate) async fn scrape_target(
    mut state: TargetState,
    job: Arc<ScrapeConfig>,
    client: Result<reqwest::Client, String>,
    clock: SharedClock,
) -> (TargetState, ScrapeResult) {
    let start_ms = clock.now_ms();
    let started = Instant::now();
    let timeout = state.target.timeout().0.max(Duration::from_millis(1));
    let fetched = match &client {
        Ok(c) => fetch::fetch(c, &job, &state.url, timeout).await,
        Err(m) => Err(FetchError::Http(m.clone())),
    };
    let mut samples = Vec::new();
    let mut rejected = Rejected::default();
    let parsed = match fetched {
        Ok(page) => parse_page(
            &mut state,
            &job,
            &page,
            start_ms,
            &mut samples,
            &mut rejected,
        )
        .map_err(|m| (m, "parse")),
        Err(e) => Err((e.to_string(), e.reason())),
    };
    let duration = started.elapsed().as_secs_f64();
    let mut stale = 0u64;
    let (up, scraped, post, added, failure) = match parsed {
        Ok(p) => {
            let added = p
                .current
                .keys()
                .filter(|k| !state.prev.contains_key(k))
                .count();
            for (id, l) in &state.prev {
                if !p.current.contains_key(id) {
                    samples.push(Sample {
                        labels: l.clone(),
                        series_id: *id,
                        timestamp_ms: start_ms,
                        value: stale_nan(),
                    });
                    stale += 1;
                }
            }
            state.prev = p.current;
            state.health.error = None;
            if let Some(ts) = rejected.first_out_of_bounds {
                tracing::warn!(
                    job = %job.job_name,
                    url = %state.url,
                    samples = rejected.out_of_bounds,
                    timestamp_ms = ts,
                    min_ms = block::MIN_TIMESTAMP_MS,
                    max_ms = block::MAX_TIMESTAMP_MS,
                    "samples rejected: timestamp out of range (years 0 to 9999)"
                );
            }
            (1.0, p.scraped, p.post, added, None)
        }
        Err((message, reason)) => {
            tracing::warn!(job = %job.job_name, url = %state.url, error = %message, "scrape failed");
            samples.clear();
            for (id, l) in state.prev.drain() {
                samples.push(Sample {
                    labels: l,
                    series_id: id,
                    timestamp_ms: start_ms,
                    value: stale_nan(),
                });
                stale += 1;
            }
            state.health.error = Some(message);
            rejected = Rejected::default();
            (0.0, 0, 0, 0, Some(reason))
        }
    };
    let values = [up, duration, scraped as f64, post as f64, added as f64];
    for (l, v) in state.report.iter().zip(values) {
        samples.push(Sample::new(l.clone(), start_ms, v));
    }
    state.reported = true;
    state.health.last_scrape_ms = start_ms;
    state.health.duration_seconds = duration;
    state.health.up = up == 1.0;
    state.health.samples = post;
    (
        state,
        ScrapeResult {
            samples,
            stale,
            failure,
            rejected,
        },
    )
}

pub(crate) struct Parsed {
    pub(crate) scraped: u64,
    pub(crate) post: u64,
    pub(crate) current: HashMap<u64, Arc<Labels>>,
}

pub(crate) fn parse_page(
    state: &mut TargetState,
    job: &ScrapeConfig,
    page: &fetch::Page,
    ts: TimestampMs,
    out: &mut Vec<Sample>,
    rejected: &mut Rejected,
) -> Result<Parsed, String> {
    let format = Format::from_content_type(page.content_type.as_deref());
    let mut parser = Parser::new(&page.body, format);
    let mut labeler = SampleLabeler::new(state.target.series_labels(), job);
    state.cache.begin_round(4);
    let limit = job.sample_limit();
    let mut scraped = 0u64;
    let mut current: HashMap<u64, Arc<Labels>> = HashMap::with_capacity(state.prev.len());
    loop {
        let entry = match parser.next() {
            Ok(Some(e)) => e,
            Ok(None) => break,
            Err(e) => return Err(format!("parsing the page ({format:?}): {e}")),
        };
        if entry != Entry::Series {
            continue;
        }
        scraped += 1;
        let s = parser.series();
        let (name, labels, value) = (s.name, s.labels, s.value);
        let t = match s.timestamp_ms {
            Some(t) if job.honor_timestamps => t,
            _ => ts,
        };
        let cached = state
            .cache
            .get_or_label(s.text, || labeler.label(name, labels))
            .map_err(|e| e.to_string())?;
        let Some(c) = cached else { continue };
        if !block::timestamp_in_range(t) {
            // Prometheus' "out of bounds": the sample is dropped, the scrape goes on.
            rejected.out_of_bounds += 1;
            rejected.first_out_of_bounds.get_or_insert(t);
            continue;
        }
        if current.contains_key(&c.id) {
            // A duplicate series in one page: the first sample wins, as in Prometheus.
            rejected.duplicate += 1;
            continue;
        }
        if limit > 0 && current.len() as u64 >= limit {
            return Err(format!("sample limit exceeded (sample_limit: {limit})"));
        }
        current.insert(c.id, c.labels.clone());
        out.push(Sample {
            labels: c.labels.clone(),
            series_id: c.id,
            timestamp_ms: t,
            value,
        });
    }
    Ok(Parsed {
        scraped,
        post: current.len() as u64,
        current,
    })
}
