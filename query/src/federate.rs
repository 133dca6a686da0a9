//! `/federate` exactly as Prometheus serves it: for every series matching any `match[]` selector,
//! its latest sample within the lookback delta (series whose latest sample is a stale marker are
//! left out), in the text format 0.0.4 with `# TYPE <name> untyped`, explicit millisecond
//! timestamps, and the external labels a series lacks appended in name order, `instance=""`
//! included, as Prometheus' federation handler does.
//!
//! When the service reads more than one region, `region` is one of those external labels, so
//! that the same series from two regions stays two series.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type, TimestampMillisecondType, UInt64Type};
use datafusion::prelude::{Expr, SessionContext, col, lit};
use promlake_core::labels::{Label, Labels, METRIC_NAME, escape_label_value};
use promlake_core::value::{format_go_float, is_stale_nan};
use promql_parser::label::{MatchOp, Matcher};

use crate::error::QueryError;
use crate::table::BlocksTable;
use crate::udf;

/// One parsed `match[]`: all its matchers must match.
#[derive(Debug, Clone)]
pub struct Selector {
    pub text: String,
    pub matchers: Vec<Matcher>,
}

/// Parses `match[]` values with Prometheus' selector grammar; a value that is not a series
/// selector is a 400 with Prometheus' message and position.
pub fn parse_selectors(raw: &[String]) -> Result<Vec<Selector>, QueryError> {
    raw.iter()
        .map(|s| {
            crate::selector::parse(s)
                .map(|matchers| Selector {
                    text: s.clone(),
                    matchers,
                })
                .map_err(|e| QueryError::BadSelector(e.to_string()))
        })
        .collect()
}

/// A series and its latest sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Latest {
    pub region: String,
    pub labels: Labels,
    pub timestamp_ms: i64,
    pub value: f64,
}

/// The equality matchers of a selector as a filter the scan can push into Parquet; the others are
/// checked on the results.
fn pushdown(sel: &Selector) -> Expr {
    let mut e = lit(true);
    for m in &sel.matchers {
        if let MatchOp::Equal = m.op {
            if m.value.is_empty() {
                continue;
            }
            let side = if m.name == METRIC_NAME {
                datafusion::prelude::cast(col("metric"), DataType::Utf8)
            } else {
                udf::label(col("labels"), &m.name)
            };
            e = e.and(side.eq(lit(m.value.clone())));
        }
    }
    e
}

fn matches(sel: &Selector, labels: &Labels) -> bool {
    sel.matchers
        .iter()
        .all(|m| m.is_match(labels.get(&m.name).unwrap_or("")))
}

/// The latest sample in `(from, to]` of every series matching a selector.
pub async fn latest(
    ctx: &SessionContext,
    table: Arc<BlocksTable>,
    sels: &[Selector],
    from: i64,
    to: i64,
) -> Result<Vec<Latest>, QueryError> {
    if sels.is_empty() {
        return Ok(Vec::new());
    }
    let ts = |v: i64| {
        lit(datafusion::common::ScalarValue::TimestampMillisecond(
            Some(v),
            Some("UTC".into()),
        ))
    };
    let any = sels
        .iter()
        .map(pushdown)
        .reduce(Expr::or)
        .unwrap_or(lit(true));
    let df = ctx
        .read_table(table)?
        .filter(
            col("timestamp")
                .gt(ts(from))
                .and(col("timestamp").lt_eq(ts(to))),
        )?
        .filter(any)?
        .select(vec![
            col("region"),
            col("metric"),
            col("labels"),
            col("series_id"),
            col("timestamp"),
            col("value"),
        ])?;
    let batches = df.collect().await?;
    // The newest row of each (region, series).
    let mut newest: HashMap<(String, u64), (usize, usize, i64)> = HashMap::new();
    for (bi, b) in batches.iter().enumerate() {
        let region = b.column(0).as_string::<i32>();
        let ids = b.column(3).as_primitive::<UInt64Type>();
        let tss = b.column(4).as_primitive::<TimestampMillisecondType>();
        for i in 0..b.num_rows() {
            let key = (region.value(i).to_owned(), ids.value(i));
            let t = tss.value(i);
            match newest.get(&key) {
                Some((_, _, seen)) if *seen >= t => {}
                _ => {
                    newest.insert(key, (bi, i, t));
                }
            }
        }
    }
    let mut out = Vec::with_capacity(newest.len());
    for ((region, _), (bi, i, t)) in newest {
        let b = &batches[bi];
        let value = b.column(5).as_primitive::<Float64Type>().value(i);
        if is_stale_nan(value) {
            continue;
        }
        let metric = arrow::compute::cast(b.column(1), &DataType::Utf8)?;
        let metric = metric.as_string::<i32>().value(i).to_owned();
        let entry = b.column(2).as_map().value(i);
        let keys = entry.column(0).as_string::<i32>();
        let vals = entry.column(1).as_string::<i32>();
        let mut ls: Vec<Label> = (0..keys.len())
            .map(|j| Label::new(keys.value(j), vals.value(j)))
            .collect();
        ls.push(Label::new(METRIC_NAME, metric));
        ls.sort();
        let labels = Labels::from_sorted_unchecked(ls);
        if sels.iter().any(|s| matches(s, &labels)) {
            out.push(Latest {
                region,
                labels,
                timestamp_ms: t,
                value,
            });
        }
    }
    Ok(out)
}

/// The text-format body.
pub fn render(mut series: Vec<Latest>, external: &Labels, region_label: bool) -> String {
    series.sort_by(|a, b| {
        (a.labels.metric_name(), &a.labels, &a.region).cmp(&(
            b.labels.metric_name(),
            &b.labels,
            &b.region,
        ))
    });
    let mut out = String::new();
    let mut last_name: Option<String> = None;
    for s in &series {
        let name = s.labels.metric_name();
        if last_name.as_deref() != Some(name) {
            out.push_str("# TYPE ");
            out.push_str(name);
            out.push_str(" untyped\n");
            last_name = Some(name.to_owned());
        }
        let mut ext: Vec<(String, String)> = external
            .iter()
            .map(|l| (l.name.to_owned(), l.value.to_owned()))
            .collect();
        if region_label && external.get("region").is_none() {
            ext.push(("region".into(), s.region.clone()));
        }
        if !ext.iter().any(|(n, _)| n == "instance") {
            ext.push(("instance".into(), String::new()));
        }
        ext.sort();
        out.push_str(name);
        out.push('{');
        let mut first = true;
        let mut push = |n: &str, v: &str, out: &mut String| {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(n);
            out.push_str("=\"");
            out.push_str(&escape_label_value(v));
            out.push('"');
        };
        for l in s.labels.iter().filter(|l| l.name != METRIC_NAME) {
            push(l.name, l.value, &mut out);
        }
        for (n, v) in &ext {
            if s.labels.get(n).is_none() {
                push(n, v, &mut out);
            }
        }
        out.push_str("} ");
        format_go_float(s.value, &mut out);
        out.push(' ');
        out.push_str(&s.timestamp_ms.to_string());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_prometheus_federation() {
        // The shape of testdata/prometheus/live/federate-up.txt.
        let ext = Labels::from_pairs([("cluster", "dc01")]);
        let series = vec![
            Latest {
                region: "r".into(),
                labels: Labels::from_pairs([
                    ("__name__", "up"),
                    ("instance", "127.0.0.1:19100"),
                    ("job", "node"),
                ]),
                timestamp_ms: 1795477171831,
                value: 1.0,
            },
            Latest {
                region: "r".into(),
                labels: Labels::from_pairs([("__name__", "job:up:sum"), ("job", "node")]),
                timestamp_ms: 1795477172384,
                value: 1.0,
            },
            Latest {
                region: "r".into(),
                labels: Labels::from_pairs([
                    ("__name__", "up"),
                    ("instance", "127.0.0.1:19090"),
                    ("job", "prometheus"),
                ]),
                timestamp_ms: 1795477171709,
                value: 1.0,
            },
        ];
        assert_eq!(
            render(series, &ext, false),
            "# TYPE job:up:sum untyped\njob:up:sum{job=\"node\",cluster=\"dc01\",instance=\"\"} 1 1795477172384\n# TYPE up untyped\nup{instance=\"127.0.0.1:19090\",job=\"prometheus\",cluster=\"dc01\"} 1 1795477171709\nup{instance=\"127.0.0.1:19100\",job=\"node\",cluster=\"dc01\"} 1 1795477171831\n"
        );
    }

    #[test]
    fn selectors_parse_or_fail_with_400() {
        let s =
            parse_selectors(&["{__name__=~\"job:.*\"}".into(), "up{job!=\"x\"}".into()]).unwrap();
        assert_eq!(s.len(), 2);
        assert!(s[1].matchers.iter().any(|m| m.name == "__name__"));
        for bad in [
            "up{",
            "rate(up[5m])",
            "1 + 1",
            "{__name__=\"a\" or __name__=\"b\"}",
            "up{job=\"x\" or job=\"y\"}",
            "up offset 5m",
            "up @ 100",
        ] {
            let e = parse_selectors(&[bad.into()]).unwrap_err();
            assert_eq!(e.status(), 400, "{bad}: {e}");
        }
    }
}
