//! `dedup_slot(timestamp, interval_ms)`: the scrape slot of a timestamp under the dedup rule
//! (`promlake_core::dedup::DedupRule::slot`); the scan partitions by it to pick each slot's
//! replica.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{AsArray, Int64Array};
use arrow::datatypes::{DataType, TimeUnit, TimestampMillisecondType};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use promlake_core::dedup::DedupRule;

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct DedupSlot {
    signature: Signature,
}

impl DedupSlot {
    pub fn new() -> Self {
        Self {
            signature: Signature::exact(
                vec![
                    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                    DataType::Int64,
                ],
                Volatility::Immutable,
            ),
        }
    }
}

impl Default for DedupSlot {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for DedupSlot {
    fn name(&self) -> &str {
        "dedup_slot"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let ColumnarValue::Scalar(ScalarValue::Int64(Some(interval))) = &args.args[1] else {
            return exec_err!("dedup_slot: the interval must be a constant number of milliseconds");
        };
        let rule = DedupRule::new(Duration::from_millis((*interval).max(1) as u64));
        match &args.args[0] {
            ColumnarValue::Scalar(ScalarValue::TimestampMillisecond(v, _)) => Ok(
                ColumnarValue::Scalar(ScalarValue::Int64(v.map(|t| rule.slot(t)))),
            ),
            ColumnarValue::Scalar(_) => Ok(ColumnarValue::Scalar(ScalarValue::Int64(None))),
            ColumnarValue::Array(a) => {
                let ts = a.as_primitive::<TimestampMillisecondType>();
                let out: Int64Array = arrow::compute::kernels::arity::unary(ts, |t| rule.slot(t));
                Ok(ColumnarValue::Array(Arc::new(out)))
            }
        }
    }
}
