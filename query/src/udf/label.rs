//! `label(labels, name)`: the value of any label, NULL when the series has none.
//! `labels['job']` works too; `label` also takes a name computed per row.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Label {
    signature: Signature,
}

impl Label {
    pub fn new() -> Self {
        Self {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl Default for Label {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for Label {
    fn name(&self) -> &str {
        "label"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        if !matches!(arg_types[0], DataType::Map(_, _)) {
            return datafusion::common::plan_err!(
                "label(labels, name): the first argument must be the labels map, not {}",
                arg_types[0]
            );
        }
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let map = arrays[0].as_map();
        let names = arrow::compute::cast(&arrays[1], &DataType::Utf8)?;
        let names = names.as_string::<i32>();
        let mut out = StringBuilder::with_capacity(n, n * 8);
        for i in 0..n {
            if map.is_null(i) || names.is_null(i) {
                out.append_null();
                continue;
            }
            let want = names.value(i);
            let entry = map.value(i);
            let keys = entry.column(0).as_string::<i32>();
            let values = entry.column(1).as_string::<i32>();
            match (0..keys.len()).find(|j| keys.value(*j) == want) {
                Some(j) if !values.is_null(j) => out.append_value(values.value(j)),
                _ => out.append_null(),
            }
        }
        let arr: ArrayRef = Arc::new(out.finish());
        if args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)))
        {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&arr, 0)?));
        }
        if arr.len() != n {
            return exec_err!("label: expected {n} rows, got {}", arr.len());
        }
        Ok(ColumnarValue::Array(arr))
    }
}
