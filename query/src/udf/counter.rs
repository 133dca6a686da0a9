//! Counter functions with Prometheus' reset handling.
//!
//! - `counter_increase(timestamp, value)`: how much a counter grew over the rows of the group:
//!   last − first, plus the value before every reset (a sample lower than the previous one).
//! - `counter_rate(timestamp, value)`: that increase per second between the first and last row.
//! - `prom_increase(timestamp, value, range_end, range)` and `prom_rate(...)`: exactly Prometheus'
//!   `increase(x[range])` / `rate(x[range])` evaluated at `range_end`, including its extrapolation
//!   to the window's edges. The group holds the samples of one series in the window; the query's
//!   `WHERE`/`GROUP BY` choose them.
//!
//! Stale markers and rows with a NULL value are ignored. Fewer than two samples give NULL.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array, ListArray};
use arrow::datatypes::{
    DataType, Field, FieldRef, Float64Type, Int64Type, IntervalMonthDayNanoType, TimeUnit,
};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};
use promlake_core::value::is_stale_nan;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Increase,
    Rate,
    PromIncrease,
    PromRate,
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CounterFn {
    kind: Kind,
    signature: Signature,
}

impl CounterFn {
    pub fn new(kind: Kind) -> Self {
        let n = match kind {
            Kind::Increase | Kind::Rate => 2,
            Kind::PromIncrease | Kind::PromRate => 4,
        };
        Self {
            kind,
            signature: Signature::any(n, Volatility::Immutable),
        }
    }

    fn windowed(&self) -> bool {
        matches!(self.kind, Kind::PromIncrease | Kind::PromRate)
    }
}

impl AggregateUDFImpl for CounterFn {
    fn name(&self) -> &str {
        match self.kind {
            Kind::Increase => "counter_increase",
            Kind::Rate => "counter_rate",
            Kind::PromIncrease => "prom_increase",
            Kind::PromRate => "prom_rate",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        if !matches!(arg_types[0], DataType::Timestamp(_, _)) {
            return plan_err!(
                "{}: the first argument must be the timestamp, not {}",
                self.name(),
                arg_types[0]
            );
        }
        if !arg_types[1].is_numeric() {
            return plan_err!(
                "{}: the second argument must be the value, not {}",
                self.name(),
                arg_types[1]
            );
        }
        if self.windowed() {
            if !matches!(arg_types[2], DataType::Timestamp(_, _)) {
                return plan_err!(
                    "{}: the third argument must be the window's end timestamp, not {}",
                    self.name(),
                    arg_types[2]
                );
            }
            if !matches!(arg_types[3], DataType::Interval(_) | DataType::Duration(_)) {
                return plan_err!(
                    "{}: the fourth argument must be the range, e.g. INTERVAL '5 minutes', not {}",
                    self.name(),
                    arg_types[3]
                );
            }
        }
        Ok(DataType::Float64)
    }

    fn state_fields(&self, args: StateFieldsArgs<'_>) -> Result<Vec<FieldRef>> {
        let list = |t: DataType| DataType::List(Arc::new(Field::new_list_field(t, true)));
        Ok(vec![
            Arc::new(Field::new(
                format!("{}_ts", args.name),
                list(DataType::Int64),
                true,
            )),
            Arc::new(Field::new(
                format!("{}_v", args.name),
                list(DataType::Float64),
                true,
            )),
            Arc::new(Field::new(
                format!("{}_end", args.name),
                DataType::Int64,
                true,
            )),
            Arc::new(Field::new(
                format!("{}_range", args.name),
                DataType::Int64,
                true,
            )),
        ])
    }

    fn accumulator(&self, _args: AccumulatorArgs<'_>) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(CounterAcc {
            kind: self.kind,
            points: Vec::new(),
            end: None,
            range: None,
        }))
    }
}

#[derive(Debug)]
struct CounterAcc {
    kind: Kind,
    points: Vec<(i64, f64)>,
    end: Option<i64>,
    range: Option<i64>,
}

fn ts_ms(a: &ArrayRef) -> Result<ArrayRef> {
    Ok(arrow::compute::cast(
        a,
        &DataType::Timestamp(TimeUnit::Millisecond, None),
    )?)
}

fn interval_ms(a: &ArrayRef, i: usize) -> Result<Option<i64>> {
    if a.is_null(i) {
        return Ok(None);
    }
    match a.data_type() {
        DataType::Interval(_) => {
            let a = arrow::compute::cast(
                a,
                &DataType::Interval(arrow::datatypes::IntervalUnit::MonthDayNano),
            )?;
            let v = a.as_primitive::<IntervalMonthDayNanoType>().value(i);
            if v.months != 0 {
                return exec_err!("the range must not be in months");
            }
            Ok(Some(
                i64::from(v.days) * 86_400_000 + v.nanoseconds / 1_000_000,
            ))
        }
        DataType::Duration(_) => {
            let a = arrow::compute::cast(a, &DataType::Duration(TimeUnit::Millisecond))?;
            Ok(Some(
                a.as_primitive::<arrow::datatypes::DurationMillisecondType>()
                    .value(i),
            ))
        }
        t => exec_err!("the range must be an interval, not {t}"),
    }
}

impl Accumulator for CounterAcc {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let ts = ts_ms(&values[0])?;
        let ts = ts.as_primitive::<arrow::datatypes::TimestampMillisecondType>();
        let v = arrow::compute::cast(&values[1], &DataType::Float64)?;
        let v = v.as_primitive::<Float64Type>();
        for i in 0..ts.len() {
            if ts.is_null(i) || v.is_null(i) || is_stale_nan(v.value(i)) {
                continue;
            }
            self.points.push((ts.value(i), v.value(i)));
        }
        if values.len() == 4 && !values[2].is_empty() {
            let end = ts_ms(&values[2])?;
            let end = end.as_primitive::<arrow::datatypes::TimestampMillisecondType>();
            if !end.is_null(0) {
                self.end = Some(end.value(0));
            }
            self.range = interval_ms(&values[3], 0)?.or(self.range);
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.points.sort_by_key(|p| p.0);
        let r = match self.kind {
            Kind::Increase => increase(&self.points),
            Kind::Rate => increase(&self.points).and_then(|inc| {
                let secs = (self.points.last()?.0 - self.points.first()?.0) as f64 / 1000.0;
                (secs > 0.0).then(|| inc / secs)
            }),
            Kind::PromIncrease | Kind::PromRate => match (self.end, self.range) {
                (Some(end), Some(range)) => extrapolated_rate(
                    &self.points,
                    end - range,
                    end,
                    range,
                    self.kind == Kind::PromRate,
                ),
                _ => None,
            },
        };
        Ok(ScalarValue::Float64(r))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.points.capacity() * 16
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let ts: Vec<ScalarValue> = self
            .points
            .iter()
            .map(|p| ScalarValue::Int64(Some(p.0)))
            .collect();
        let vs: Vec<ScalarValue> = self
            .points
            .iter()
            .map(|p| ScalarValue::Float64(Some(p.1)))
            .collect();
        Ok(vec![
            ScalarValue::List(ScalarValue::new_list_nullable(&ts, &DataType::Int64)),
            ScalarValue::List(ScalarValue::new_list_nullable(&vs, &DataType::Float64)),
            ScalarValue::Int64(self.end),
            ScalarValue::Int64(self.range),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let ts: &ListArray = states[0].as_list();
        let vs: &ListArray = states[1].as_list();
        let end = states[2].as_primitive::<Int64Type>();
        let range = states[3].as_primitive::<Int64Type>();
        for row in 0..ts.len() {
            if ts.is_null(row) {
                continue;
            }
            let t = ts.value(row);
            let t = t
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("state list of int64");
            let v = vs.value(row);
            let v = v
                .as_any()
                .downcast_ref::<Float64Array>()
                .expect("state list of float64");
            for i in 0..t.len() {
                self.points.push((t.value(i), v.value(i)));
            }
            if !end.is_null(row) {
                self.end = Some(end.value(row));
            }
            if !range.is_null(row) {
                self.range = Some(range.value(row));
            }
        }
        Ok(())
    }
}

/// last − first, plus the value before each reset; None with fewer than two points.
fn increase(points: &[(i64, f64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let mut result = points[points.len() - 1].1 - points[0].1;
    let mut last = 0.0;
    for p in points {
        if p.1 < last {
            result += last;
        }
        last = p.1;
    }
    Some(result)
}

/// Prometheus 2.42 `extrapolatedRate` for a counter over `[start, end]`.
pub fn extrapolated_rate(
    points: &[(i64, f64)],
    start: i64,
    end: i64,
    range_ms: i64,
    is_rate: bool,
) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let mut result = increase(points)?;
    let first = points[0];
    let last = points[points.len() - 1];
    let mut duration_to_start = (first.0 - start) as f64 / 1000.0;
    let duration_to_end = (end - last.0) as f64 / 1000.0;
    let sampled_interval = (last.0 - first.0) as f64 / 1000.0;
    let average_between = sampled_interval / (points.len() - 1) as f64;
    if result > 0.0 && first.1 >= 0.0 {
        let duration_to_zero = sampled_interval * (first.1 / result);
        if duration_to_zero < duration_to_start {
            duration_to_start = duration_to_zero;
        }
    }
    let threshold = average_between * 1.1;
    let mut extrapolate_to = sampled_interval;
    extrapolate_to += if duration_to_start < threshold {
        duration_to_start
    } else {
        average_between / 2.0
    };
    extrapolate_to += if duration_to_end < threshold {
        duration_to_end
    } else {
        average_between / 2.0
    };
    result *= extrapolate_to / sampled_interval;
    if is_rate {
        result /= range_ms as f64 / 1000.0;
    }
    Some(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increase_handles_resets() {
        assert_eq!(
            increase(&[(0, 10.0), (1, 15.0), (2, 3.0), (3, 8.0)]),
            Some(8.0 - 10.0 + 15.0)
        );
        assert_eq!(increase(&[(0, 1.0)]), None);
    }

    #[test]
    fn extrapolation_like_prometheus() {
        // 5 samples 15 s apart, +15 each, window of 5m ending 30 s after the last sample.
        let pts: Vec<(i64, f64)> = (0..5)
            .map(|i| (60_000 + i * 15_000, 100.0 + 15.0 * i as f64))
            .collect();
        let start = 0;
        let end = 150_000;
        // sampled 60 s, increase 60; start gap 60 s > 1.1*15 → +7.5 s; end gap 30 s → +7.5 s.
        let r = extrapolated_rate(&pts, start, end, 300_000, false).unwrap();
        assert!((r - 60.0 * 75.0 / 60.0).abs() < 1e-9, "{r}");
        let rate = extrapolated_rate(&pts, start, end, 300_000, true).unwrap();
        assert!((rate - r / 300.0).abs() < 1e-12);
    }
}
