//! `time_bucket(width, timestamp)`: the start of the `width`-long bucket (aligned to the Unix
//! epoch) that holds `timestamp`. The same as DataFusion's `date_bin(width, timestamp)`, under the
//! name TimescaleDB users know.

use std::sync::Arc;

use arrow::array::{AsArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, IntervalUnit, TimeUnit, TimestampMillisecondType};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TimeBucket {
    signature: Signature,
}

impl TimeBucket {
    pub fn new() -> Self {
        Self {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl Default for TimeBucket {
    fn default() -> Self {
        Self::new()
    }
}

fn width_ms(v: &ScalarValue) -> Result<i64> {
    let ms = match v {
        ScalarValue::IntervalMonthDayNano(Some(i)) if i.months == 0 => {
            i64::from(i.days) * 86_400_000 + i.nanoseconds / 1_000_000
        }
        ScalarValue::IntervalDayTime(Some(i)) => {
            i64::from(i.days) * 86_400_000 + i64::from(i.milliseconds)
        }
        ScalarValue::DurationMillisecond(Some(ms)) => *ms,
        ScalarValue::DurationSecond(Some(s)) => s * 1000,
        _ => {
            return exec_err!(
                "time_bucket: the width must be a fixed interval like INTERVAL '5 minutes', got {v}"
            );
        }
    };
    if ms <= 0 {
        return exec_err!("time_bucket: the width must be positive");
    }
    Ok(ms)
}

impl ScalarUDFImpl for TimeBucket {
    fn name(&self) -> &str {
        "time_bucket"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match (&arg_types[0], &arg_types[1]) {
            (
                DataType::Interval(IntervalUnit::MonthDayNano | IntervalUnit::DayTime)
                | DataType::Duration(_),
                DataType::Timestamp(_, tz),
            ) => Ok(DataType::Timestamp(TimeUnit::Millisecond, tz.clone())),
            (a, b) => plan_err!(
                "time_bucket(width, timestamp) takes an interval and a timestamp, not {a} and {b}"
            ),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let ColumnarValue::Scalar(w) = &args.args[0] else {
            return exec_err!("time_bucket: the width must be a constant");
        };
        let width = width_ms(w)?;
        let tz = match args.return_type() {
            DataType::Timestamp(_, tz) => tz.clone(),
            _ => None,
        };
        let ts = args.args[1].to_array(args.number_rows)?;
        let ts =
            arrow::compute::cast(&ts, &DataType::Timestamp(TimeUnit::Millisecond, tz.clone()))?;
        let ts = ts.as_primitive::<TimestampMillisecondType>();
        let out: TimestampMillisecondArray = ts
            .iter()
            .map(|t| t.map(|t| t.div_euclid(width) * width))
            .collect();
        let out = out.with_timezone_opt(tz);
        if matches!(args.args[1], ColumnarValue::Scalar(_)) {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?));
        }
        debug_assert_eq!(out.len(), args.number_rows);
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}
