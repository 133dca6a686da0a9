//! `is_stale(value)`: whether a value is Prometheus' stale marker (NaN with bits
//! `0x7ff0000000000002`), as opposed to any other NaN.

use std::sync::Arc;

use arrow::array::{AsArray, BooleanArray};
use arrow::datatypes::{DataType, Float64Type};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use promlake_core::value::is_stale_nan;

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct IsStale {
    signature: Signature,
}

impl IsStale {
    pub fn new() -> Self {
        Self {
            signature: Signature::exact(vec![DataType::Float64], Volatility::Immutable),
        }
    }
}

impl Default for IsStale {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for IsStale {
    fn name(&self) -> &str {
        "is_stale"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        match &args.args[0] {
            ColumnarValue::Scalar(ScalarValue::Float64(v)) => Ok(ColumnarValue::Scalar(
                ScalarValue::Boolean(v.map(is_stale_nan)),
            )),
            ColumnarValue::Scalar(_) => Ok(ColumnarValue::Scalar(ScalarValue::Boolean(None))),
            ColumnarValue::Array(a) => {
                let v = a.as_primitive::<Float64Type>();
                let out: BooleanArray = v.iter().map(|x| x.map(is_stale_nan)).collect();
                Ok(ColumnarValue::Array(Arc::new(out)))
            }
        }
    }
}
