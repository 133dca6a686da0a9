//! The OpenMetrics 1.0 grammar: sample lines, metadata, exemplars and `# EOF`, with
//! Prometheus' `openmetricsparse` strictness.

use super::*;

impl<'a> Parser<'a> {
    pub(super) fn om_line(&mut self, line: &'a [u8], has_nl: bool) -> PResult<Option<Entry<'a>>> {
        if line.is_empty() {
            return Err(format!(
                "expected a valid start token, got {} while parsing: {}",
                quote_bytes(b"\n", false),
                quote_bytes(b"\n", false)
            ));
        }
        if line == b"# EOF" {
            self.eof_word = true;
            if has_nl && self.pos < self.buf.len() {
                return Err("unexpected data after # EOF".into());
            }
            self.pos = self.buf.len();
            return Ok(None);
        }
        if line[0] == b'#' {
            return self.om_meta(line, has_nl).map(Some);
        }
        if !(is_name_start(line[0]) || line[0] == b'{') {
            return Err(format!(
                "expected a valid start token, got {} while parsing: {}",
                quote_bytes(&line[..1], false),
                quote_bytes(&line[..1], false)
            ));
        }
        let mut i = self.series_head(line, 0)?;
        let series_end = i;
        if i >= line.len() || line[i] != b' ' {
            let got = if i >= line.len() {
                if has_nl { &b"\n"[..] } else { &line[..i] }
            } else {
                &line[i..i + 1]
            };
            return Err(format!(
                "expected value after metric, got {} while parsing: {}",
                quote_bytes(got, true),
                quote_bytes(&with_nl(line, i + 1, has_nl), true)
            ));
        }
        i += 1;
        let vstart = i;
        while i < line.len() && line[i] != b' ' {
            i += 1;
        }
        self.value = parse_float(&line[vstart..i])
            .map_err(|e| format!("{e} while parsing: {}", quote_bytes(&line[..i], false)))?;
        self.ts = None;
        self.exemplar = None;
        if i < line.len() && !line[i..].starts_with(b" # ") {
            // A timestamp: float seconds.
            i += 1;
            let tstart = i;
            while i < line.len() && line[i] != b' ' {
                i += 1;
            }
            let ts = parse_float(&line[tstart..i])
                .map_err(|e| format!("{e} while parsing: {}", quote_bytes(&line[..i], false)))?;
            if !ts.is_finite() {
                return Err(format!("invalid timestamp {}", go_special(ts)));
            }
            self.ts = Some((ts * 1000.0) as i64);
            if i < line.len() && !line[i..].starts_with(b" # ") {
                return Err(format!(
                    "expected next entry after timestamp, got {} while parsing: {}",
                    quote_bytes(&with_nl(&line[i..], line.len() - i + 1, has_nl), false),
                    quote_bytes(&with_nl(line, line.len() + 1, has_nl), false)
                ));
            }
        }
        if i < line.len() {
            // ` # {labels} value [timestamp]`
            i += 3;
            self.exemplar = Some(self.om_exemplar(line, i, has_nl)?);
        }
        if !has_nl {
            return Err("data does not end with # EOF".into());
        }
        self.text = as_str(&line[..series_end])?;
        Ok(Some(Entry::Series))
    }

    pub(super) fn om_meta(&mut self, line: &'a [u8], has_nl: bool) -> PResult<Entry<'a>> {
        let bad_start = |n: usize| {
            let got = &line[..n.min(line.len())];
            format!(
                "expected a valid start token, got {} while parsing: {}",
                quote_bytes(got, false),
                quote_bytes(got, false)
            )
        };
        if line.starts_with(b"# EOF") {
            return Err("unexpected data after # EOF".into());
        }
        if line.len() < 2 || line[1] != b' ' {
            return Err(bad_start(2));
        }
        let kind = if line[2..].starts_with(b"HELP ") {
            "HELP"
        } else if line[2..].starts_with(b"TYPE ") {
            "TYPE"
        } else if line[2..].starts_with(b"UNIT ") {
            "UNIT"
        } else {
            // Prometheus' lexer reports the longest prefix it tried.
            let n = if line.len() > 2 && line[2] == b' ' {
                3
            } else {
                line.len()
            };
            return Err(bad_start(n));
        };
        let name_start = 7;
        let (metric, name_end) = self.meta_name(line, name_start).map_err(|got| {
            let got = if got.is_empty() && has_nl {
                &b"\n"[..]
            } else {
                got
            };
            format!(
                "expected metric name after {kind}, got {} while parsing: {}",
                quote_bytes(got, true),
                quote_bytes(&with_nl(line, name_start + 1, has_nl), true)
            )
        })?;
        let rest = &line[name_end..];
        if rest.is_empty() || rest[0] != b' ' {
            return Err(format!("expected text in {kind}"));
        }
        let text = &rest[1..];
        let entry = match kind {
            "HELP" => {
                let t = std::str::from_utf8(text).map_err(|_| {
                    format!(
                        "help text {} is not a valid utf8 string",
                        quote_bytes(text, false)
                    )
                })?;
                Entry::Help {
                    metric,
                    text: unescape(t, true),
                }
            }
            "TYPE" => {
                let kind = match text {
                    b"counter" => MetricType::Counter,
                    b"gauge" => MetricType::Gauge,
                    b"histogram" => MetricType::Histogram,
                    b"gaugehistogram" => MetricType::GaugeHistogram,
                    b"summary" => MetricType::Summary,
                    b"info" => MetricType::Info,
                    b"stateset" => MetricType::Stateset,
                    b"unknown" => MetricType::Unknown,
                    other => {
                        return Err(format!("invalid metric type {}", quote_bytes(other, false)));
                    }
                };
                self.mtype = kind;
                Entry::Type { metric, kind }
            }
            _ => {
                let unit = as_str(text)?;
                if !unit.is_empty() {
                    let m: &str = &metric;
                    let ok = m.len() > unit.len()
                        && m.ends_with(unit)
                        && m.as_bytes()[m.len() - unit.len() - 1] == b'_';
                    if !ok {
                        return Err(format!("unit {unit:?} not a suffix of metric {m:?}"));
                    }
                }
                Entry::Unit {
                    metric,
                    unit: Cow::Borrowed(unit),
                }
            }
        };
        if !has_nl {
            return Err("data does not end with # EOF".into());
        }
        Ok(entry)
    }

    pub(super) fn om_exemplar(
        &mut self,
        line: &'a [u8],
        mut i: usize,
        has_nl: bool,
    ) -> PResult<Exemplar<'a>> {
        if i >= line.len() || line[i] != b'{' {
            return Err("expected exemplar labels".into());
        }
        i += 1;
        let mut labels = Vec::new();
        loop {
            if i < line.len() && line[i] == b'}' {
                i += 1;
                break;
            }
            let (name, after) = self
                .label_name(line, i)
                .map_err(|e| self.context_err("expected label name", line, i, e.0, has_nl))?;
            if after < line.len() && line[after] != b'=' {
                return Err(self.context_err("expected equal", line, after, 2, has_nl));
            }
            if after >= line.len() {
                return Err(self.context_err("expected equal", line, after, 1, has_nl));
            }
            let vstart = after + 1;
            let (value, vend) = self
                .label_value(line, vstart)
                .map_err(|e| e.render(self, line, vstart, has_nl))?;
            labels.push((name, value));
            i = vend;
            if i < line.len() && line[i] == b',' {
                i += 1;
                if i < line.len() && line[i] == b',' {
                    return Err(self.context_err("expected label name", line, i, 2, has_nl));
                }
                continue;
            }
            if i < line.len() && line[i] == b'}' {
                i += 1;
                break;
            }
            return Err(self.context_err("expected comma or brace close", line, i, 2, has_nl));
        }
        if i >= line.len() || line[i] != b' ' {
            let got: &[u8] = if i >= line.len() {
                if has_nl { b"\n" } else { b"}" }
            } else {
                &line[i..i + 1]
            };
            return Err(format!(
                "expected value after exemplar labels, got {} while parsing: {}",
                quote_bytes(got, true),
                quote_bytes(&with_nl(line, i, has_nl), true)
            ));
        }
        i += 1;
        let vstart = i;
        while i < line.len() && line[i] != b' ' {
            i += 1;
        }
        let value = parse_float(&line[vstart..i])
            .map_err(|e| format!("{e} while parsing: {}", quote_bytes(&line[..i], false)))?;
        let mut timestamp_ms = None;
        if i < line.len() {
            i += 1;
            let tstart = i;
            while i < line.len() && line[i] != b' ' {
                i += 1;
            }
            let ts = parse_float(&line[tstart..i])
                .map_err(|e| format!("{e} while parsing: {}", quote_bytes(&line[..i], false)))?;
            if !ts.is_finite() {
                return Err(format!("invalid exemplar timestamp {}", go_special(ts)));
            }
            timestamp_ms = Some((ts * 1000.0) as i64);
            if i < line.len() {
                return Err(format!(
                    "expected next entry after exemplar timestamp, got {}",
                    quote_bytes(&line[i..], false)
                ));
            }
        }
        Ok(Exemplar {
            labels,
            value,
            timestamp_ms,
        })
    }
}
