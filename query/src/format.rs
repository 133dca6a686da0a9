//! Query results as JSON rows, CSV, Arrow IPC streams and terminal tables.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray, StringBuilder};
use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::error::QueryError;

/// An output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A JSON array of row objects.
    Json,
    /// CSV with a header line.
    Csv,
    /// An Arrow IPC stream.
    Arrow,
    /// A table for a terminal.
    Table,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Some(Format::Json),
            "csv" => Some(Format::Csv),
            "arrow" | "ipc" => Some(Format::Arrow),
            "table" => Some(Format::Table),
            _ => None,
        }
    }

    /// From an `Accept` header: the first media type promlake can write.
    pub fn from_accept(accept: &str) -> Format {
        for part in accept.split(',') {
            let media = part
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            match media.as_str() {
                "application/json" => return Format::Json,
                "text/csv" => return Format::Csv,
                "application/vnd.apache.arrow.stream" => return Format::Arrow,
                "text/plain" => return Format::Table,
                _ => {}
            }
        }
        Format::Json
    }

    pub fn content_type(&self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Arrow => "application/vnd.apache.arrow.stream",
            Format::Table => "text/plain; charset=utf-8",
        }
    }
}

/// Encodes batches.
pub fn encode(
    format: Format,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<Vec<u8>, QueryError> {
    let err =
        |e: arrow::error::ArrowError| QueryError::Internal(format!("encoding the result: {e}"));
    let mut out = Vec::new();
    match format {
        Format::Json => {
            let mut w = arrow::json::ArrayWriter::new(&mut out);
            for b in batches {
                w.write(&nested_as_text(b, Format::Json).map_err(err)?)
                    .map_err(err)?;
            }
            w.finish().map_err(err)?;
            if batches.iter().all(|b| b.num_rows() == 0) {
                out = b"[]".to_vec();
            }
        }
        Format::Csv => {
            if batches.is_empty() {
                let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                return Ok(format!("{}\n", names.join(",")).into_bytes());
            }
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut out);
            for b in batches {
                w.write(&nested_as_text(b, Format::Csv).map_err(err)?)
                    .map_err(err)?;
            }
        }
        Format::Arrow => {
            let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut out, schema).map_err(err)?;
            for b in batches {
                w.write(b).map_err(err)?;
            }
            w.finish().map_err(err)?;
        }
        Format::Table => {
            let empty = [RecordBatch::new_empty(schema.clone())];
            let batches = if batches.is_empty() {
                &empty[..]
            } else {
                batches
            };
            let t = arrow::util::pretty::pretty_format_batches(batches).map_err(err)?;
            out = format!("{t}\n").into_bytes();
        }
    }
    Ok(out)
}

/// Columns a format cannot hold, as text: for CSV every nested column (maps, lists, structs,
/// unions), for JSON maps whose keys are not strings. A map with string keys reads in
/// Prometheus' notation (`{instance="a", job="b"}`), whatever its value type; anything else as
/// Arrow displays it.
fn nested_as_text(b: &RecordBatch, format: Format) -> Result<RecordBatch, ArrowError> {
    let needs_text = |t: &DataType| match format {
        Format::Csv => t.is_nested() || matches!(t, DataType::Union(..)),
        Format::Json => matches!(t, DataType::Map(f, _) if !is_string_keyed(f)),
        Format::Arrow | Format::Table => false,
    };
    if !b
        .schema()
        .fields()
        .iter()
        .any(|f| needs_text(f.data_type()))
    {
        return Ok(b.clone());
    }
    let mut fields = Vec::new();
    let mut cols: Vec<ArrayRef> = Vec::new();
    for (f, c) in b.schema().fields().iter().zip(b.columns()) {
        if needs_text(f.data_type()) {
            fields.push(Field::new(f.name(), DataType::Utf8, true));
            cols.push(Arc::new(as_text(c.as_ref())?));
        } else {
            fields.push(f.as_ref().clone());
            cols.push(c.clone());
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)
}

fn is_string_keyed(entries: &FieldRef) -> bool {
    match entries.data_type() {
        DataType::Struct(kv) => kv.first().is_some_and(|k| {
            matches!(
                k.data_type(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            )
        }),
        _ => false,
    }
}

fn as_text(c: &dyn Array) -> Result<StringArray, ArrowError> {
    let mut s = StringBuilder::new();
    match c.data_type() {
        DataType::Map(entries, _) if is_string_keyed(entries) => {
            let m = c.as_map();
            for i in 0..m.len() {
                if m.is_null(i) {
                    s.append_null();
                    continue;
                }
                let e = m.value(i);
                let keys = ArrayFormatter::try_new(e.column(0).as_ref(), &TEXT)?;
                let values = ArrayFormatter::try_new(e.column(1).as_ref(), &TEXT)?;
                let parts: Vec<String> = (0..e.len())
                    .map(|j| {
                        format!(
                            "{}=\"{}\"",
                            keys.value(j),
                            promlake_core::labels::escape_label_value(&values.value(j).to_string())
                        )
                    })
                    .collect();
                s.append_value(format!("{{{}}}", parts.join(", ")));
            }
        }
        _ => {
            let f = ArrayFormatter::try_new(c, &TEXT)?;
            for i in 0..c.len() {
                if c.is_null(i) {
                    s.append_null();
                } else {
                    s.append_value(f.value(i).to_string());
                }
            }
        }
    }
    Ok(s.finish())
}

const TEXT: FormatOptions<'static> = FormatOptions::new().with_null("null");

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    /// Every value type a statement can produce, in every format: rendered, never a panic.
    #[tokio::test]
    async fn every_value_type_renders_in_every_format() {
        let ctx = SessionContext::new();
        let exprs = [
            "map(['a'], [1])",
            "map([1], ['a'])",
            "map(['a'], [[1, 2]])",
            "map(['a'], [map(['b'], [2.5])])",
            "[1, 2]",
            "[]",
            "[map(['a'], [1])]",
            "named_struct('a', 1, 'b', 'x')",
            "arrow_cast(1, 'Int8')",
            "arrow_cast(1, 'UInt64')",
            "X'00ff'",
            "INTERVAL '1 day'",
            "DATE '2026-01-01'",
            "TIMESTAMP '2026-01-01T00:00:00Z'",
            "arrow_cast(1.5, 'Decimal128(10, 2)')",
            "NULL",
            "true",
            "arrow_cast('x', 'Dictionary(Int32, Utf8)')",
            "arrow_cast('x', 'LargeUtf8')",
            "arrow_cast('x', 'Utf8View')",
            "arrow_cast(1.5, 'Float16')",
            "'NaN'::double",
        ];
        for expr in exprs {
            let df = ctx
                .sql(&format!("SELECT {expr} AS c, 1 AS value"))
                .await
                .unwrap_or_else(|e| panic!("{expr}: {e}"));
            let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
            let batches = df.collect().await.unwrap();
            for format in [Format::Json, Format::Csv, Format::Arrow, Format::Table] {
                encode(format, &schema, &batches)
                    .unwrap_or_else(|e| panic!("{expr} as {format:?}: {e}"));
            }
        }
    }

    #[tokio::test]
    async fn maps_read_as_label_sets_in_csv() {
        let ctx = SessionContext::new();
        let df = ctx
            .sql("SELECT map(['a', 'b'], [1, 2]) AS m, map(['job'], ['x\"y']) AS l")
            .await
            .unwrap();
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let batches = df.collect().await.unwrap();
        let csv = String::from_utf8(encode(Format::Csv, &schema, &batches).unwrap()).unwrap();
        assert_eq!(
            csv,
            "m,l\n\"{a=\"\"1\"\", b=\"\"2\"\"}\",\"{job=\"\"x\\\"\"y\"\"}\"\n"
        );
    }
}
