//! Exposition parsing: Prometheus' text format 0.0.4 and OpenMetrics 1.0, with the grammar,
//! leniencies and strictness of Prometheus' own parsers (`model/textparse`).
//!
//! The parser walks the page once, line by line, and borrows from it: names and label values are
//! `Cow::Borrowed` unless they contain escapes, and the label buffer is reused between series, so a
//! page is parsed without an allocation per sample. Like Prometheus' parsers it is pulled:
//! [`Parser::next`] yields an [`Entry`], and for a series [`Parser::series`] gives its content.
//!
//! Like Prometheus 3, `le` labels of classic histograms and `quantile` labels of summaries are
//! normalised to float formatting (`le="1"` → `le="1.0"`), so that the same bucket is one series
//! whichever way an exporter writes it.

use std::borrow::Cow;
use std::fmt;

use memchr::memchr;
use promlake_core::value::openmetrics_float;

mod openmetrics;
#[cfg(test)]
mod tests;
mod text;

use text::*;

/// Which grammar a page is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4` (and anything that does not say otherwise).
    PrometheusText,
    /// `application/openmetrics-text`.
    OpenMetrics,
}

impl Format {
    /// Chooses the grammar from a response's `Content-Type`, as Prometheus does: OpenMetrics when
    /// the media type says so, the classic text format otherwise.
    pub fn from_content_type(ct: Option<&str>) -> Format {
        match ct {
            Some(ct)
                if ct.split(';').next().is_some_and(|m| {
                    m.trim()
                        .eq_ignore_ascii_case("application/openmetrics-text")
                }) =>
            {
                Format::OpenMetrics
            }
            _ => Format::PrometheusText,
        }
    }
}

/// A metric family's type, from its `# TYPE` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    Stateset,
    #[default]
    Unknown,
}

impl MetricType {
    pub fn as_str(&self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::Stateset => "stateset",
            MetricType::Unknown => "unknown",
        }
    }

    /// Types whose OpenMetrics `_created` lines carry a start timestamp rather than a sample.
    pub fn has_created_series(&self) -> bool {
        matches!(
            self,
            MetricType::Counter | MetricType::Histogram | MetricType::Summary
        )
    }
}

/// A page that does not parse, with the 1-based line at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// One entry of a page.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry<'a> {
    /// A sample; read it with [`Parser::series`].
    Series,
    Help {
        metric: Cow<'a, str>,
        text: Cow<'a, str>,
    },
    Type {
        metric: Cow<'a, str>,
        kind: MetricType,
    },
    Unit {
        metric: Cow<'a, str>,
        unit: Cow<'a, str>,
    },
    /// A comment line (text format only), as written.
    Comment(Cow<'a, str>),
}

/// An OpenMetrics exemplar attached to a sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar<'a> {
    pub labels: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    pub value: f64,
    pub timestamp_ms: Option<i64>,
}

/// The current series of a [`Parser`].
#[derive(Debug)]
pub struct Series<'p, 'a> {
    /// The series as written (`name{labels}`).
    pub text: &'a str,
    pub name: &'p str,
    /// Labels in the order written, without the metric name.
    pub labels: &'p [(Cow<'a, str>, Cow<'a, str>)],
    pub value: f64,
    pub timestamp_ms: Option<i64>,
    pub exemplar: Option<&'p Exemplar<'a>>,
    /// 1-based line of the sample.
    pub line: usize,
}

/// A pull parser over one page.
pub struct Parser<'a> {
    buf: &'a [u8],
    pos: usize,
    line: usize,
    format: Format,
    mtype: MetricType,
    skip_created: bool,
    eof_word: bool,
    // The current series.
    text: &'a str,
    series_end: usize,
    name: Cow<'a, str>,
    labels: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    value: f64,
    ts: Option<i64>,
    exemplar: Option<Exemplar<'a>>,
}

type PResult<T> = Result<T, String>;

impl<'a> Parser<'a> {
    pub fn new(buf: &'a [u8], format: Format) -> Self {
        Self {
            buf,
            pos: 0,
            line: 0,
            format,
            mtype: MetricType::Unknown,
            skip_created: false,
            eof_word: false,
            text: "",
            series_end: 0,
            name: Cow::Borrowed(""),
            labels: Vec::with_capacity(16),
            value: 0.0,
            ts: None,
            exemplar: None,
        }
    }

    /// OpenMetrics only: do not yield the `_created` lines of counters, histograms and summaries
    /// (they are start timestamps, see [`start_timestamps`]).
    pub fn skip_created_series(mut self, skip: bool) -> Self {
        self.skip_created = skip;
        self
    }

    /// The type of the family the parser is in (the last `# TYPE` seen).
    pub fn metric_type(&self) -> MetricType {
        self.mtype
    }

    /// The 1-based line of the entry last returned.
    pub fn line(&self) -> usize {
        self.line
    }

    /// The series of the last [`Entry::Series`].
    pub fn series(&self) -> Series<'_, 'a> {
        Series {
            text: self.text,
            name: &self.name,
            labels: &self.labels,
            value: self.value,
            timestamp_ms: self.ts,
            exemplar: self.exemplar.as_ref(),
            line: self.line,
        }
    }

    fn err<T>(&self, message: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            line: self.line.max(1),
            message: message.into(),
        })
    }

    /// The next entry, `Ok(None)` at the end of the page.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Entry<'a>>, ParseError> {
        loop {
            if self.pos >= self.buf.len() {
                if self.format == Format::OpenMetrics && !self.eof_word {
                    self.line += 1;
                    return self.err("data does not end with # EOF");
                }
                return Ok(None);
            }
            if self.eof_word {
                self.line += 1;
                return self.err("unexpected data after # EOF");
            }
            let start = self.pos;
            let (end, has_nl) = match memchr(b'\n', &self.buf[start..]) {
                Some(i) => (start + i, true),
                None => (self.buf.len(), false),
            };
            self.pos = end + 1;
            self.line += 1;
            let line = &self.buf[start..end];
            let result = match self.format {
                Format::PrometheusText => self.prom_line(line),
                Format::OpenMetrics => self.om_line(line, has_nl),
            };
            match result {
                Ok(Some(Entry::Series)) if self.skip_this_series() => continue,
                Ok(Some(e)) => return Ok(Some(e)),
                Ok(None) => continue,
                Err(m) => return self.err(m),
            }
        }
    }

    fn skip_this_series(&self) -> bool {
        self.skip_created
            && self.format == Format::OpenMetrics
            && self.mtype.has_created_series()
            && self.name.len() > 8
            && self.name.ends_with("_created")
    }

    // ---- text format 0.0.4 ----

    fn prom_line(&mut self, line: &'a [u8]) -> PResult<Option<Entry<'a>>> {
        let mut i = skip_ws(line, 0);
        if i == line.len() {
            return Ok(None); // blank lines are allowed
        }
        if line[i] == b'#' {
            return self.prom_comment(line, i).map(Some);
        }
        let start = i;
        i = self.series_head(line, i)?;
        // Whitespace is optional after `}` and required after a bare name (the name ends there).
        i = skip_ws(line, i);
        let vstart = i;
        while i < line.len() && !matches!(line[i], b'{' | b' ' | b'\t' | 0) {
            i += 1;
        }
        if i == vstart {
            // Prometheus parses the page as if it ended with a newline.
            return Err(format!(
                "expected value after metric, got {} while parsing: {}",
                quote_bytes(&with_nl(&line[i..], 1, true), true),
                quote_bytes(&with_nl(&line[start..], i + 1 - start, true), true)
            ));
        }
        self.value = parse_float(&line[vstart..i])
            .map_err(|e| format!("{e} while parsing: {}", quote_bytes(&line[start..i], false)))?;
        i = skip_ws(line, i);
        self.ts = None;
        self.exemplar = None;
        if i < line.len() {
            let tstart = i;
            if line[i] == b'-' {
                i += 1;
            }
            while i < line.len() && line[i].is_ascii_digit() {
                i += 1;
            }
            let ws_after = skip_ws(line, i);
            if i == tstart || (i < line.len() && ws_after != line.len()) || ws_after != line.len() {
                let bad = if i == tstart { i } else { ws_after.max(i) };
                return Err(format!(
                    "expected next entry after timestamp, got {} while parsing: {}",
                    quote_bytes(&line[bad..(bad + 1).min(line.len())], true),
                    quote_bytes(&line[start..(bad + 1).min(line.len())], true)
                ));
            }
            let ts = std::str::from_utf8(&line[tstart..i])
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or_else(|| "timestamp out of range".to_string())?;
            self.ts = Some(ts);
        }
        self.text = as_str(&line[start..self.series_end])?;
        Ok(Some(Entry::Series))
    }

    fn prom_comment(&mut self, line: &'a [u8], hash: usize) -> PResult<Entry<'a>> {
        let comment = || Ok(Entry::Comment(String::from_utf8_lossy(&line[hash..])));
        let mut i = hash + 1;
        let ws = skip_ws(line, i);
        if ws == i {
            return comment();
        }
        i = ws;
        let rest = &line[i..];
        let kind = if rest.starts_with(b"HELP") {
            "HELP"
        } else if rest.starts_with(b"TYPE") {
            "TYPE"
        } else {
            return comment();
        };
        let after = i + 4;
        let name_start = skip_ws(line, after);
        if name_start == after {
            return comment(); // `# HELPER ...` is a comment
        }
        let (metric, name_end) = self.meta_name(line, name_start).map_err(|got| {
            format!(
                "expected metric name after {kind}, got {} while parsing: {}",
                quote_bytes(got, true),
                quote_bytes(&line[hash..(name_start + 1).min(line.len())], true)
            )
        })?;
        let raw_text = &line[name_end..];
        let text = if raw_text.len() > 1 {
            &raw_text[1..]
        } else {
            &[][..]
        };
        if kind == "HELP" {
            let text = String::from_utf8_lossy(text);
            let text = match text {
                Cow::Borrowed(t) => unescape(t, false),
                Cow::Owned(t) => Cow::Owned(unescape(&t, false).into_owned()),
            };
            return Ok(Entry::Help { metric, text });
        }
        let kind = match text {
            b"counter" => MetricType::Counter,
            b"gauge" => MetricType::Gauge,
            b"histogram" => MetricType::Histogram,
            b"summary" => MetricType::Summary,
            b"untyped" => MetricType::Unknown,
            other => {
                return Err(format!("invalid metric type {}", quote_bytes(other, false)));
            }
        };
        self.mtype = kind;
        Ok(Entry::Type { metric, kind })
    }

    // ---- shared pieces ----

    /// Parses `name`, `name{labels}` or `{"name", labels}`; returns the index after it and
    /// remembers where the series text ends.
    fn series_head(&mut self, line: &'a [u8], start: usize) -> PResult<usize> {
        let om = self.format == Format::OpenMetrics;
        let mut i = start;
        self.labels.clear();
        let mut name: Option<Cow<'a, str>> = None;
        if is_name_start(line[i]) {
            while i < line.len() && is_name_char(line[i]) {
                i += 1;
            }
            name = Some(Cow::Borrowed(as_str(&line[start..i])?));
            self.series_end = i;
            let j = if om { i } else { skip_ws(line, i) };
            if j < line.len() && line[j] == b'{' {
                i = j;
            } else {
                self.name = name.unwrap_or(Cow::Borrowed(""));
                return Ok(i);
            }
        } else if line[i] != b'{' {
            return Err(format!(
                "expected a valid start token, got {} while parsing: {}",
                quote_bytes(&line[i..i + 1], false),
                quote_bytes(&line[start..i + 1], false)
            ));
        }
        // Labels.
        i += 1;
        loop {
            if !om {
                i = skip_ws(line, i);
            }
            if i < line.len() && line[i] == b'}' {
                i += 1;
                break;
            }
            let lstart = i;
            let (lname, after) = self.label_name(line, i).map_err(|(n, _)| {
                self.context_err_from("expected label name", line, start, lstart, n)
            })?;
            let quoted = line[lstart] == b'"';
            let mut j = if om { after } else { skip_ws(line, after) };
            if quoted && j < line.len() && (line[j] == b',' || line[j] == b'}') {
                // A quoted string on its own is the metric name.
                if name.is_some() {
                    return Err(format!(
                        "metric name already set while parsing: {}",
                        quote_bytes(&line[start..j + 1], false)
                    ));
                }
                name = Some(lname);
                if line[j] == b',' {
                    j += 1;
                }
                i = j;
                continue;
            }
            if j >= line.len() || line[j] != b'=' {
                let got_len = if j < line.len() && matches!(line[j], b'}' | b',') {
                    2
                } else {
                    1
                };
                return Err(self.context_err_from("expected equal", line, start, j, got_len));
            }
            j += 1;
            if !om {
                j = skip_ws(line, j);
            }
            let (value, vend) = self
                .label_value(line, j)
                .map_err(|e| e.render_from(line, start, j))?;
            let value = self.normalise(&lname, value);
            self.labels.push((lname, value));
            i = if om { vend } else { skip_ws(line, vend) };
            if i < line.len() && line[i] == b',' {
                i += 1;
                if om && i < line.len() && line[i] == b',' {
                    return Err(self.context_err_from("expected label name", line, start, i, 2));
                }
            } else if om && !(i < line.len() && line[i] == b'}') {
                return Err(self.context_err_from(
                    "expected comma or brace close",
                    line,
                    start,
                    i,
                    2,
                ));
            }
        }
        self.series_end = i;
        match name {
            Some(n) => self.name = n,
            None => {
                return Err(format!(
                    "metric name not set while parsing: {}",
                    quote_bytes(&line[start..], false)
                ));
            }
        }
        Ok(i)
    }

    fn normalise(&self, name: &str, value: Cow<'a, str>) -> Cow<'a, str> {
        let applies = (self.mtype == MetricType::Histogram && name == "le")
            || (self.mtype == MetricType::Summary && name == "quantile");
        if !applies {
            return value;
        }
        match value.parse::<f64>() {
            Ok(f) if !value.contains(['_', 'p', 'P']) => {
                let n = openmetrics_float(f);
                if n == value { value } else { Cow::Owned(n) }
            }
            _ => value,
        }
    }

    /// A label name: `[a-zA-Z_][a-zA-Z0-9_]*` or a quoted string. Err carries how many bytes of
    /// context the error should show.
    fn label_name(&self, line: &'a [u8], i: usize) -> Result<(Cow<'a, str>, usize), (usize, ())> {
        if i < line.len() && (line[i].is_ascii_alphabetic() || line[i] == b'_') {
            let mut j = i + 1;
            while j < line.len() && is_label_char(line[j]) {
                j += 1;
            }
            let s = std::str::from_utf8(&line[i..j]).map_err(|_| (1, ()))?;
            return Ok((Cow::Borrowed(s), j));
        }
        if i < line.len() && line[i] == b'"' {
            return match quoted(line, i + 1) {
                Some((s, end)) => Ok((s, end)),
                None => Err((1, ())),
            };
        }
        let n = if i < line.len() && matches!(line[i], b'=' | b',') {
            2
        } else {
            1
        };
        Err((n, ()))
    }

    fn label_value(&self, line: &'a [u8], i: usize) -> Result<(Cow<'a, str>, usize), ValueError> {
        if i >= line.len() || line[i] != b'"' {
            return Err(ValueError::NotQuoted);
        }
        match quoted(line, i + 1) {
            Some((v, end)) => Ok((v, end)),
            None => {
                if std::str::from_utf8(&line[i + 1..]).is_err() && line[i + 1..].contains(&b'"') {
                    let close = i + 1 + memchr(b'"', &line[i + 1..]).unwrap_or(0);
                    Err(ValueError::BadUtf8(line[i..=close].to_vec()))
                } else {
                    Err(ValueError::Unterminated)
                }
            }
        }
    }

    fn context_err(&self, what: &str, line: &[u8], at: usize, n: usize, has_nl: bool) -> String {
        let got = with_nl(&line[at.min(line.len())..], n, has_nl);
        format!(
            "{what}, got {} while parsing: {}",
            quote_bytes(&got, true),
            quote_bytes(&with_nl(line, at + n, has_nl), true)
        )
    }

    fn context_err_from(
        &self,
        what: &str,
        line: &[u8],
        start: usize,
        at: usize,
        n: usize,
    ) -> String {
        let end = (at + n).min(line.len());
        let mut got = line[at.min(line.len())..end].to_vec();
        let mut ctx = line[start..end].to_vec();
        if at + n > line.len() {
            got.push(b'\n');
            ctx.push(b'\n');
        }
        format!(
            "{what}, got {} while parsing: {}",
            quote_bytes(&got, true),
            quote_bytes(&ctx, true)
        )
    }

    /// A metric name in a `# HELP/TYPE/UNIT` line: unquoted or quoted. Err carries what was
    /// found instead.
    fn meta_name(&self, line: &'a [u8], i: usize) -> Result<(Cow<'a, str>, usize), &'a [u8]> {
        if i < line.len() && is_name_start(line[i]) {
            let mut j = i + 1;
            while j < line.len() && is_name_char(line[j]) {
                j += 1;
            }
            return Ok((
                Cow::Borrowed(std::str::from_utf8(&line[i..j]).map_err(|_| &line[i..j])?),
                j,
            ));
        }
        if i < line.len() && line[i] == b'"' {
            return quoted(line, i + 1).ok_or(&line[i..]);
        }
        Err(&line[i.min(line.len())..(i + 1).min(line.len())])
    }
}

enum ValueError {
    NotQuoted,
    Unterminated,
    BadUtf8(Vec<u8>),
}

impl ValueError {
    fn render(&self, p: &Parser<'_>, line: &[u8], at: usize, has_nl: bool) -> String {
        match self {
            ValueError::BadUtf8(v) => {
                format!("invalid UTF-8 label value: {}", quote_bytes(v, false))
            }
            ValueError::NotQuoted => p.context_err("expected label value", line, at, 1, has_nl),
            ValueError::Unterminated => {
                p.context_err("expected label value", line, at, line.len() - at, has_nl)
            }
        }
    }

    fn render_from(&self, line: &[u8], start: usize, at: usize) -> String {
        match self {
            ValueError::BadUtf8(v) => {
                format!("invalid UTF-8 label value: {}", quote_bytes(v, false))
            }
            ValueError::NotQuoted | ValueError::Unterminated => {
                let end = if matches!(self, ValueError::NotQuoted) {
                    at + 1
                } else {
                    line.len() + 1
                };
                let mut got = line[at.min(line.len())..end.min(line.len())].to_vec();
                let mut ctx = line[start..end.min(line.len())].to_vec();
                if end > line.len() {
                    got.push(b'\n');
                    ctx.push(b'\n');
                }
                format!(
                    "expected label value, got {} while parsing: {}",
                    quote_bytes(&got, true),
                    quote_bytes(&ctx, true)
                )
            }
        }
    }
}

/// Start timestamps of OpenMetrics counters, histograms and summaries, found as Prometheus finds
/// them: for each series, the `_created` line of the same family and labels (ignoring `le` of
/// histograms and `quantile` of summaries) that follows it before the next metadata line, or the
/// one found for the previous series when the labels are the same. Returns one entry per series
/// the parser yields (with `_created` lines skipped), `None` where there is no start timestamp.
pub fn start_timestamps(page: &[u8]) -> Result<Vec<Option<i64>>, ParseError> {
    struct Line {
        is_series: bool,
        mtype: MetricType,
        family: String,
        name: String,
        labels: Vec<(String, String)>,
        value: f64,
    }
    let mut p = Parser::new(page, Format::OpenMetrics);
    let mut lines = Vec::new();
    let mut family = String::new();
    while let Some(e) = p.next()? {
        match e {
            Entry::Series => {
                let s = p.series();
                lines.push(Line {
                    is_series: true,
                    mtype: p.metric_type(),
                    family: family.clone(),
                    name: s.name.to_owned(),
                    labels: s
                        .labels
                        .iter()
                        .map(|(n, v)| (n.to_string(), v.to_string()))
                        .collect(),
                    value: s.value,
                });
            }
            Entry::Help { metric, .. }
            | Entry::Type { metric, .. }
            | Entry::Unit { metric, .. } => {
                family = metric.into_owned();
                lines.push(Line {
                    is_series: false,
                    mtype: p.metric_type(),
                    family: family.clone(),
                    name: String::new(),
                    labels: Vec::new(),
                    value: 0.0,
                });
            }
            Entry::Comment(_) => {}
        }
    }
    let key = |l: &Line, name: &str| {
        let mut k = name.to_owned();
        for (n, v) in &l.labels {
            if (l.mtype == MetricType::Summary && n == "quantile")
                || (l.mtype == MetricType::Histogram && n == "le")
            {
                continue;
            }
            k.push('\u{ff}');
            k.push_str(n);
            k.push('\u{ff}');
            k.push_str(v);
        }
        k
    };
    let is_created =
        |l: &Line| l.mtype.has_created_series() && l.name.len() > 8 && l.name.ends_with("_created");
    let mut out = Vec::new();
    let mut cache: Option<(String, i64)> = None;
    for (i, l) in lines.iter().enumerate() {
        if !l.is_series || is_created(l) {
            continue;
        }
        if !l.mtype.has_created_series() {
            cache = None;
            out.push(None);
            continue;
        }
        let fam_len = l.family.len().min(l.name.len());
        let cur = key(l, &l.name[..fam_len]);
        if let Some((k, ct)) = &cache
            && *k == cur
            && *ct > 0
        {
            out.push(Some(*ct));
            continue;
        }
        let mut found = None;
        for next in &lines[i + 1..] {
            if !next.is_series {
                break;
            }
            if next.name.len() < 8 || !next.name.ends_with("_created") {
                continue;
            }
            if key(next, &next.name[..next.name.len() - 8]) == cur {
                found = Some((next.value * 1000.0) as i64);
                break;
            }
        }
        match found {
            Some(ct) => {
                cache = Some((cur, ct));
                out.push(Some(ct));
            }
            None => {
                cache = None;
                out.push(None);
            }
        }
    }
    Ok(out)
}
