//! A rule query's result as series, per the rule contract of [`crate::rules`]: each row's
//! labels (label columns, map columns contributing all their entries) and its `value`; and a
//! recording rule's rows as the samples it records.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type};
use promlake_core::block::Sample;
use promlake_core::labels::Labels;

use crate::rules::{self, Rule};
use crate::state::{EvalContext, SeriesRow};

/// Text values of a column that [`rules::check_output`] accepted as labels.
fn as_text(name: &str, col: &arrow::array::ArrayRef) -> Result<arrow::array::ArrayRef, String> {
    arrow::compute::cast(col, &DataType::Utf8)
        .map_err(|e| format!("column `{name}` cannot be read as text: {e}"))
}

/// The rows of a rule's SQL as (labels, value), per the contract in [`crate::rules`]. A result
/// that breaks the contract is an error ([`rules::check_output`]'s), never a panic.
pub fn rows_to_series(batches: &[RecordBatch]) -> Result<Vec<SeriesRow>, String> {
    let mut out = Vec::new();
    for b in batches {
        let schema = b.schema();
        rules::check_output(&schema)?;
        let Some(vi) = schema.fields().iter().position(|f| f.name() == "value") else {
            return Err("the query returns no `value` column".into());
        };
        let value = arrow::compute::cast(b.column(vi), &DataType::Float64)
            .map_err(|e| format!("the `value` column is not numeric: {e}"))?;
        let value = value
            .as_primitive_opt::<Float64Type>()
            .ok_or("the `value` column is not numeric")?;
        // Per label column: its text, or for a map its keys' and values' text.
        enum Col {
            Text(String, arrow::array::ArrayRef),
            Map(
                arrow::array::MapArray,
                arrow::array::ArrayRef,
                arrow::array::ArrayRef,
            ),
        }
        let mut cols = Vec::new();
        for (ci, f) in schema.fields().iter().enumerate() {
            if ci == vi {
                continue;
            }
            let name = f.name();
            match f.data_type() {
                DataType::Map(_, _) => {
                    let m = b
                        .column(ci)
                        .as_map_opt()
                        .ok_or_else(|| format!("column `{name}` is not a map"))?
                        .clone();
                    let keys = as_text(name, m.keys())?;
                    let values = as_text(name, m.values())?;
                    cols.push(Col::Map(m, keys, values));
                }
                _ => {
                    let key = if name == "metric" { "__name__" } else { name };
                    cols.push(Col::Text(key.to_owned(), as_text(name, b.column(ci))?));
                }
            }
        }
        for row in 0..b.num_rows() {
            if value.is_null(row) {
                continue;
            }
            let mut labels = BTreeMap::new();
            for c in &cols {
                match c {
                    Col::Text(key, col) => {
                        let s = col.as_string::<i32>();
                        if !s.is_null(row) && !s.value(row).is_empty() {
                            labels.insert(key.clone(), s.value(row).to_owned());
                        }
                    }
                    Col::Map(m, keys, values) => {
                        if m.is_null(row) {
                            continue;
                        }
                        let (k, v) = (keys.as_string::<i32>(), values.as_string::<i32>());
                        let offsets = m.value_offsets();
                        for j in offsets[row] as usize..offsets[row + 1] as usize {
                            if !k.is_null(j) && !v.is_null(j) && !v.value(j).is_empty() {
                                labels
                                    .entry(k.value(j).to_owned())
                                    .or_insert_with(|| v.value(j).to_owned());
                            }
                        }
                    }
                }
            }
            out.push((labels, value.value(row)));
        }
    }
    Ok(out)
}

pub fn recording_samples(
    rule: &Rule,
    rows: Vec<SeriesRow>,
    cx: &EvalContext<'_>,
) -> Result<Vec<Sample>, String> {
    let name = rule.record.as_deref().unwrap_or_default();
    let mut seen = HashMap::new();
    let mut out = Vec::with_capacity(rows.len());
    for (mut labels, v) in rows {
        for (k, val) in cx.group_labels.iter().chain(rule.labels.iter()) {
            labels.insert(k.clone(), val.clone());
        }
        labels.insert("__name__".into(), name.to_owned());
        let l = Labels::from_pairs(labels);
        if seen.insert(l.hash(), ()).is_some() {
            return Err(
                "vector contains metrics with the same labelset after applying rule labels".into(),
            );
        }
        out.push(Sample::new(Arc::new(l), cx.ts, v));
    }
    if cx.limit > 0 && out.len() as u64 > cx.limit {
        return Err(format!(
            "exceeded limit of {} with {} series",
            cx.limit,
            out.len()
        ));
    }
    Ok(out)
}
