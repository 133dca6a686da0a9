//! Query results as JSON rows, CSV, Arrow IPC streams and terminal tables.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

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
                w.write(b).map_err(err)?;
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
                w.write(&maps_as_text(b).map_err(err)?).map_err(err)?;
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

/// Map columns as text in Prometheus' notation (`{instance="a", job="b"}`); CSV has no maps.
fn maps_as_text(b: &RecordBatch) -> Result<RecordBatch, arrow::error::ArrowError> {
    use arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;
    if !b
        .schema()
        .fields()
        .iter()
        .any(|f| matches!(f.data_type(), DataType::Map(_, _)))
    {
        return Ok(b.clone());
    }
    let mut fields = Vec::new();
    let mut cols: Vec<ArrayRef> = Vec::new();
    for (f, c) in b.schema().fields().iter().zip(b.columns()) {
        if let DataType::Map(_, _) = f.data_type() {
            let m = c.as_map();
            let mut s = StringBuilder::new();
            for i in 0..m.len() {
                if m.is_null(i) {
                    s.append_null();
                    continue;
                }
                let e = m.value(i);
                let k = e.column(0).as_string::<i32>();
                let v = e.column(1).as_string::<i32>();
                let parts: Vec<String> = (0..k.len())
                    .map(|j| {
                        format!(
                            "{}=\"{}\"",
                            k.value(j),
                            promlake_core::labels::escape_label_value(v.value(j))
                        )
                    })
                    .collect();
                s.append_value(format!("{{{}}}", parts.join(", ")));
            }
            fields.push(Field::new(f.name(), DataType::Utf8, true));
            cols.push(Arc::new(s.finish()));
        } else {
            fields.push(f.as_ref().clone());
            cols.push(c.clone());
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)
}
