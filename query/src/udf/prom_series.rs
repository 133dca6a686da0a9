//! `prom_series(metric, labels)`: a series in Prometheus' notation, `up{instance="a", job="b"}`.

use std::sync::Arc;

use arrow::array::{Array, AsArray, StringBuilder};
use arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use promlake_core::labels::escape_label_value;

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PromSeries {
    signature: Signature,
}

impl PromSeries {
    pub fn new() -> Self {
        Self {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl Default for PromSeries {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for PromSeries {
    fn name(&self) -> &str {
        "prom_series"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let metric = arrow::compute::cast(&arrays[0], &DataType::Utf8)?;
        let metric = metric.as_string::<i32>();
        let map = arrays[1].as_map();
        let mut out = StringBuilder::with_capacity(n, n * 48);
        let mut s = String::new();
        for i in 0..n {
            s.clear();
            if !metric.is_null(i) {
                s.push_str(metric.value(i));
            }
            if !map.is_null(i) {
                let entry = map.value(i);
                let keys = entry.column(0).as_string::<i32>();
                let values = entry.column(1).as_string::<i32>();
                if !keys.is_empty() || s.is_empty() {
                    s.push('{');
                    for j in 0..keys.len() {
                        if j > 0 {
                            s.push_str(", ");
                        }
                        s.push_str(keys.value(j));
                        s.push_str("=\"");
                        s.push_str(&escape_label_value(values.value(j)));
                        s.push('"');
                    }
                    s.push('}');
                }
            }
            out.append_value(&s);
        }
        let arr = Arc::new(out.finish());
        if scalar {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                arr.as_ref(),
                0,
            )?));
        }
        Ok(ColumnarValue::Array(arr))
    }
}
