//! `histogram_quantile(q, le, value)`: Prometheus' `histogram_quantile` over the bucket rows of
//! one classic histogram at one time (group by every label but `le`). `le` is the bucket's upper
//! bound as written (`"0.5"`, `"+Inf"`), `value` its cumulative count.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, ListArray};
use arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct HistogramQuantile {
    signature: Signature,
}

impl HistogramQuantile {
    pub fn new() -> Self {
        Self {
            signature: Signature::any(3, Volatility::Immutable),
        }
    }
}

impl Default for HistogramQuantile {
    fn default() -> Self {
        Self::new()
    }
}

impl AggregateUDFImpl for HistogramQuantile {
    fn name(&self) -> &str {
        "histogram_quantile"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn state_fields(&self, args: StateFieldsArgs<'_>) -> Result<Vec<FieldRef>> {
        let list = DataType::List(Arc::new(Field::new_list_field(DataType::Float64, true)));
        Ok(vec![
            Arc::new(Field::new(
                format!("{}_q", args.name),
                DataType::Float64,
                true,
            )),
            Arc::new(Field::new(format!("{}_le", args.name), list.clone(), true)),
            Arc::new(Field::new(format!("{}_count", args.name), list, true)),
        ])
    }

    fn accumulator(&self, _args: AccumulatorArgs<'_>) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(Acc::default()))
    }
}

#[derive(Debug, Default)]
struct Acc {
    q: Option<f64>,
    buckets: Vec<(f64, f64)>,
}

impl Accumulator for Acc {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let q = arrow::compute::cast(&values[0], &DataType::Float64)?;
        let q = q.as_primitive::<Float64Type>();
        let le = arrow::compute::cast(&values[1], &DataType::Utf8)?;
        let le = le.as_string::<i32>();
        let v = arrow::compute::cast(&values[2], &DataType::Float64)?;
        let v = v.as_primitive::<Float64Type>();
        for i in 0..le.len() {
            if !q.is_null(i) {
                self.q = Some(q.value(i));
            }
            if le.is_null(i) || v.is_null(i) {
                continue;
            }
            if let Ok(ub) = le.value(i).parse::<f64>() {
                self.buckets.push((ub, v.value(i)));
            }
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Float64(
            self.q.map(|q| bucket_quantile(q, &mut self.buckets)),
        ))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.buckets.capacity() * 16
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let le: Vec<ScalarValue> = self
            .buckets
            .iter()
            .map(|b| ScalarValue::Float64(Some(b.0)))
            .collect();
        let c: Vec<ScalarValue> = self
            .buckets
            .iter()
            .map(|b| ScalarValue::Float64(Some(b.1)))
            .collect();
        Ok(vec![
            ScalarValue::Float64(self.q),
            ScalarValue::List(ScalarValue::new_list_nullable(&le, &DataType::Float64)),
            ScalarValue::List(ScalarValue::new_list_nullable(&c, &DataType::Float64)),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let q = states[0].as_primitive::<Float64Type>();
        let le: &ListArray = states[1].as_list();
        let c: &ListArray = states[2].as_list();
        for row in 0..le.len() {
            if !q.is_null(row) {
                self.q = Some(q.value(row));
            }
            if le.is_null(row) {
                continue;
            }
            let l = le.value(row);
            let l = l
                .as_any()
                .downcast_ref::<Float64Array>()
                .expect("list of float64");
            let n = c.value(row);
            let n = n
                .as_any()
                .downcast_ref::<Float64Array>()
                .expect("list of float64");
            for i in 0..l.len() {
                self.buckets.push((l.value(i), n.value(i)));
            }
        }
        Ok(())
    }
}

/// Prometheus' `bucketQuantile`.
pub fn bucket_quantile(q: f64, buckets: &mut [(f64, f64)]) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    if buckets.is_empty() {
        return f64::NAN;
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if buckets[buckets.len() - 1].0 != f64::INFINITY {
        return f64::NAN;
    }
    // Coalesce buckets with the same bound.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for b in buckets.iter() {
        match merged.last_mut() {
            Some(last) if last.0 == b.0 => last.1 += b.1,
            _ => merged.push(*b),
        }
    }
    // Ensure monotonic counts.
    let mut max = f64::NEG_INFINITY;
    for b in merged.iter_mut() {
        if b.1 > max {
            max = b.1;
        } else if b.1 < max {
            b.1 = max;
        }
    }
    if merged.len() < 2 {
        return f64::NAN;
    }
    let observations = merged[merged.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let n = merged.len() - 1;
    let b = (0..n).find(|&i| merged[i].1 >= rank).unwrap_or(n);
    if b == n {
        return merged[n - 1].0;
    }
    if b == 0 && merged[0].0 <= 0.0 {
        return merged[0].0;
    }
    let mut start = 0.0;
    let end = merged[b].0;
    let mut count = merged[b].1;
    if b > 0 {
        start = merged[b - 1].0;
        count -= merged[b - 1].1;
        rank -= merged[b - 1].1;
    }
    start + (end - start) * (rank / count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolates_like_prometheus() {
        let mut b = vec![
            (0.1, 10.0),
            (0.5, 60.0),
            (1.0, 90.0),
            (f64::INFINITY, 100.0),
        ];
        // rank 50 falls in (0.1, 0.5]: 0.1 + 0.4 * (40 / 50)
        assert!((bucket_quantile(0.5, &mut b) - 0.42).abs() < 1e-12);
        let mut b = vec![(0.1, 10.0), (f64::INFINITY, 100.0)];
        assert_eq!(
            bucket_quantile(0.99, &mut b),
            0.1,
            "in the +Inf bucket: the highest finite bound"
        );
        let mut b = vec![(0.1, 10.0)];
        assert!(bucket_quantile(0.5, &mut b).is_nan(), "no +Inf bucket");
    }
}
