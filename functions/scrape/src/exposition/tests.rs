//! The parser against Prometheus' own test tables (`shared/testdata/prometheus/exposition`), read
//! in place.

use std::collections::BTreeMap;

use base64::Engine;
use promlake_core::testdata::prometheus_file;
use serde_json::{Value, json};

use super::*;

fn format_for(file: &str) -> Format {
    if file.starts_with("openmetrics") || file.ends_with(".om.txt") {
        Format::OpenMetrics
    } else {
        Format::PrometheusText
    }
}

fn float_json(f: f64) -> Value {
    if f.is_nan() {
        json!("NaN")
    } else if f.is_infinite() {
        json!(if f > 0.0 { "+Inf" } else { "-Inf" })
    } else {
        json!(f)
    }
}

/// Everything a page yields, in the shape of the `.expected.json` files.
fn entries(page: &[u8], format: Format) -> Result<Vec<Value>, ParseError> {
    let mut p = Parser::new(page, format).skip_created_series(format == Format::OpenMetrics);
    let starts = if format == Format::OpenMetrics {
        start_timestamps(page)?
    } else {
        Vec::new()
    };
    let mut out = Vec::new();
    let mut series_idx = 0;
    while let Some(e) = p.next()? {
        out.push(match e {
            Entry::Help { metric, text } => json!({"kind": "help", "metric": metric, "help": text}),
            Entry::Type { metric, kind } => {
                json!({"kind": "type", "metric": metric, "type": kind.as_str()})
            }
            Entry::Unit { metric, unit } => json!({"kind": "unit", "metric": metric, "unit": unit}),
            Entry::Comment(text) => json!({"kind": "comment", "text": text}),
            Entry::Series => {
                let s = p.series();
                let mut labels = BTreeMap::new();
                labels.insert("__name__".to_string(), s.name.to_string());
                for (n, v) in s.labels {
                    labels.insert(n.to_string(), v.to_string());
                }
                let mut v = json!({
                    "kind": "series",
                    "series_text": s.text,
                    "value": float_json(s.value),
                    "labels": labels,
                });
                if let Some(ts) = s.timestamp_ms {
                    v["timestamp_ms"] = json!(ts);
                }
                if let Some(Some(st)) = starts.get(series_idx) {
                    v["start_timestamp_ms"] = json!(st);
                }
                if let Some(ex) = s.exemplar {
                    let labels: BTreeMap<String, String> = ex
                        .labels
                        .iter()
                        .map(|(n, v)| (n.to_string(), v.to_string()))
                        .collect();
                    let mut e = json!({"labels": labels, "value": float_json(ex.value)});
                    if let Some(ts) = ex.timestamp_ms {
                        e["ts_ms"] = json!(ts);
                    }
                    v["exemplars"] = json!([e]);
                }
                series_idx += 1;
                v
            }
        });
    }
    Ok(out)
}

/// Normalises an expected entry: drops notes, makes numbers comparable.
fn normalise(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("note");
        for key in ["value"] {
            if let Some(n) = o.get(key).and_then(Value::as_f64) {
                o.insert(key.into(), json!(n));
            }
        }
        if let Some(ex) = o.get_mut("exemplars").and_then(Value::as_array_mut) {
            for e in ex {
                if let Some(n) = e.get("value").and_then(Value::as_f64) {
                    e["value"] = json!(n);
                }
            }
        }
    }
    v
}

#[test]
fn every_expected_json_file_yields_exactly_its_entries() {
    let dir = prometheus_file("exposition");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let Some(input) = name.strip_suffix(".expected.json") else {
            continue;
        };
        let expected: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let page = std::fs::read(dir.join(input)).unwrap();
        let got = entries(&page, format_for(input)).unwrap_or_else(|e| panic!("{input}: {e}"));
        let want: Vec<Value> = expected["entries"]
            .as_array()
            .unwrap()
            .iter()
            .cloned()
            .map(normalise)
            .collect();
        for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
            assert_eq!(g, w, "{input}: entry {i} differs");
        }
        assert_eq!(got.len(), want.len(), "{input}: number of entries");
        checked += 1;
    }
    assert_eq!(
        checked, 4,
        "four .expected.json files in the reference data"
    );
}

fn cases(file: &str) -> Vec<(Vec<u8>, String)> {
    let v: Value = serde_json::from_slice(
        &std::fs::read(prometheus_file(&format!("exposition/{file}"))).unwrap(),
    )
    .unwrap();
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(c["input_b64"].as_str().unwrap())
                .unwrap();
            (bytes, c["err"].as_str().unwrap().to_string())
        })
        .collect()
}

fn strip_token_names(msg: &str) -> String {
    let mut out = msg.to_string();
    for tok in [
        "INVALID",
        "LNAME",
        "EQUAL",
        "BCLOSE",
        "COMMA",
        "EOF",
        "TIMESTAMP",
        "LVALUE",
        "VALUE",
        "MNAME",
        "BOPEN",
        "QSTRING",
    ] {
        out = out.replace(&format!(" (\"{tok}\")"), "");
    }
    out
}

fn parse_all(page: &[u8], format: Format) -> Result<usize, ParseError> {
    let mut p = Parser::new(page, format);
    let mut n = 0;
    while p.next()?.is_some() {
        n += 1;
    }
    Ok(n)
}

#[test]
fn every_error_case_is_rejected_and_every_clean_case_accepted() {
    let mut rejected = 0;
    let mut accepted = 0;
    let mut same_message = 0;
    for file in [
        "prom_text_parse_errors.json",
        "prom_text_null_byte_cases.json",
        "openmetrics_parse_errors.json",
        "openmetrics_null_byte_cases.json",
    ] {
        let format = format_for(file);
        for (input, err) in cases(file) {
            let res = parse_all(&input, format);
            if err.is_empty() || err == "EOF" {
                assert!(
                    res.is_ok(),
                    "{file}: {:?} should parse: {res:?}",
                    String::from_utf8_lossy(&input)
                );
                accepted += 1;
            } else {
                let e = res.expect_err(&format!(
                    "{file}: {:?} should be rejected ({err})",
                    String::from_utf8_lossy(&input)
                ));
                assert!(e.line >= 1);
                // Prometheus names the lexer token after what it got (`("INVALID")`); promlake
                // does not model tokens. The rest of the message is compared.
                let err = strip_token_names(&err);
                if e.message == err {
                    same_message += 1;
                } else if std::env::var_os("PROMLAKE_SHOW_MESSAGES").is_some() {
                    eprintln!(
                        "{file}\n  input: {:?}\n  want:  {err}\n  got:   {}",
                        String::from_utf8_lossy(&input),
                        e.message
                    );
                }
                rejected += 1;
            }
        }
    }
    // 18 + 9 + 70 + 12 cases, of which 10 parse cleanly in Prometheus too.
    assert_eq!((rejected, accepted), (99, 10));
    // Messages are Prometheus' own words where practical; all of them name the line.
    eprintln!("{same_message} of {rejected} error messages are word for word Prometheus'");
    assert!(
        same_message * 100 >= rejected * 90,
        "{same_message} of {rejected} messages match Prometheus'"
    );
}

#[test]
fn a_parse_error_names_the_line() {
    let page = b"# HELP a x\na 1\nb{c=\"d\" 2\n";
    let e = parse_all(page, Format::PrometheusText).unwrap_err();
    assert_eq!(e.line, 3, "{e}");
    assert!(e.to_string().starts_with("line 3: "), "{e}");
}

#[test]
fn created_lines_as_prometheus_finds_them_even_first_in_family() {
    // From openmetrics_start_timestamp_edge_cases.json: Prometheus looks ahead only, so a
    // `_created` line before the series gives them no start timestamp.
    let page = b"# TYPE thing histogram\nthing_created 1520872607.123\nthing_count 17\n# EOF\n";
    assert_eq!(start_timestamps(page).unwrap(), vec![None]);
    let page = b"foo_total 17.0\nfoo_created 1520872607.123\n# EOF\n";
    // Without a TYPE the `_created` line is an ordinary series.
    assert_eq!(
        parse_all(page, Format::OpenMetrics).unwrap(),
        2,
        "both lines are series"
    );
}

#[test]
fn real_pages_parse() {
    for (file, format, min_series) in [
        (
            "live/node-exporter-metrics.txt",
            Format::PrometheusText,
            500,
        ),
        ("live/prometheus-metrics.txt", Format::PrometheusText, 500),
        (
            "exposition/testdata_alltypes.237mfs.prom.txt",
            Format::PrometheusText,
            1000,
        ),
        (
            "exposition/testdata_alltypes.237mfs.nometa.prom.txt",
            Format::PrometheusText,
            1000,
        ),
        (
            "exposition/testdata_alltypes.5mfs.om.txt",
            Format::OpenMetrics,
            10,
        ),
        (
            "exposition/testdata_1histogram.om.txt",
            Format::OpenMetrics,
            10,
        ),
        (
            "exposition/openmetrics_spec_example.om.txt",
            Format::OpenMetrics,
            3,
        ),
        (
            "exposition/docs_example_text_0.0.4.prom",
            Format::PrometheusText,
            5,
        ),
    ] {
        let page = std::fs::read(prometheus_file(file)).unwrap();
        let mut p = Parser::new(&page, format);
        let mut series = 0;
        while let Some(e) = p.next().unwrap_or_else(|e| panic!("{file}: {e}")) {
            if e == Entry::Series {
                series += 1;
            }
        }
        assert!(series >= min_series, "{file}: {series} series");
    }
}

#[test]
fn content_type_chooses_the_grammar() {
    assert_eq!(
        Format::from_content_type(Some(
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        )),
        Format::OpenMetrics
    );
    assert_eq!(
        Format::from_content_type(Some("text/plain; version=0.0.4; charset=utf-8")),
        Format::PrometheusText
    );
    assert_eq!(Format::from_content_type(None), Format::PrometheusText);
}

#[test]
fn special_values_and_escapes() {
    let page = b"a{l=\"x\\\\y\\\"z\\nw\"} +Inf\nb NaN 12\nc -Inf\n";
    let mut p = Parser::new(page, Format::PrometheusText);
    assert_eq!(p.next().unwrap(), Some(Entry::Series));
    assert_eq!(p.series().labels[0].1, "x\\y\"z\nw");
    assert_eq!(p.series().value, f64::INFINITY);
    p.next().unwrap();
    assert!(p.series().value.is_nan());
    assert_eq!(p.series().timestamp_ms, Some(12));
    p.next().unwrap();
    assert_eq!(p.series().value, f64::NEG_INFINITY);
    assert_eq!(p.next().unwrap(), None);
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        /// Any bytes: an entry or an error, never a panic.
        #[test]
        fn never_panics(page in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_all(&page, Format::PrometheusText);
            let _ = parse_all(&page, Format::OpenMetrics);
            let _ = start_timestamps(&page);
        }

        /// Pages built from the grammar's pieces, to reach deep states.
        #[test]
        fn never_panics_on_near_valid_pages(parts in proptest::collection::vec(
            prop_oneof![
                Just("a"), Just("{"), Just("}"), Just("\""), Just("="), Just(","), Just(" "),
                Just("\t"), Just("\n"), Just("#"), Just("# HELP "), Just("# TYPE "), Just("# UNIT "),
                Just("# EOF"), Just("1"), Just("1.5e3"), Just("NaN"), Just("\\"), Just("le"),
                Just("counter"), Just("histogram"), Just("_created"), Just(" # {"), Just("\u{0}"),
                Just("é"), Just("\u{ff}")
            ], 0..40)) {
            let page = parts.concat();
            let _ = parse_all(page.as_bytes(), Format::PrometheusText);
            let _ = parse_all(page.as_bytes(), Format::OpenMetrics);
            let _ = start_timestamps(page.as_bytes());
        }
    }
}
