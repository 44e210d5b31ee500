//! Checks and conversions that make a batch fit a table schema, with errors that name the
//! row (1-based, within the request), the column and the value.

use std::sync::Arc;

use arrow::array::{new_null_array, Array, ArrayRef, StringArray};
use arrow::compute::{cast_with_options, CastOptions};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use eddy_proto::{Error, ErrorCode, Result};

/// Casts `batch` to `schema` by column name: missing nullable columns become NULL, extra
/// columns are an error, NULLs in NOT NULL columns are an error. `row_offset` is the number
/// of rows of the same request before this batch, so errors give request row numbers.
pub fn conform_batch(
    schema: &SchemaRef,
    batch: &RecordBatch,
    row_offset: usize,
) -> Result<RecordBatch> {
    for f in batch.schema().fields() {
        if schema.field_with_name(f.name()).is_err() {
            return Err(Error::new(
                ErrorCode::ColumnNotFound,
                format!("column \"{}\" does not exist", f.name()),
            ));
        }
    }
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let col = match batch.column_by_name(field.name()) {
            Some(col) if col.data_type() == field.data_type() => Arc::clone(col),
            Some(col) => cast_column(col, field.name(), field.data_type(), row_offset)?,
            None => new_null_array(field.data_type(), batch.num_rows()),
        };
        if !field.is_nullable() && col.null_count() > 0 {
            let row = (0..col.len()).find(|i| col.is_null(*i)).unwrap_or(0);
            return Err(Error::new(
                ErrorCode::NotNullViolation,
                format!(
                    "row {}: null value in column \"{}\" violates not-null constraint",
                    row_offset + row + 1,
                    field.name()
                ),
            ));
        }
        columns.push(col);
    }
    RecordBatch::try_new(Arc::clone(schema), columns)
        .map_err(|e| Error::new(ErrorCode::InvalidValue, e.to_string()))
}

fn cast_column(col: &ArrayRef, name: &str, to: &DataType, row_offset: usize) -> Result<ArrayRef> {
    let strict = CastOptions {
        safe: false,
        ..Default::default()
    };
    match cast_with_options(col, to, &strict) {
        Ok(a) => Ok(a),
        Err(e) => {
            // Find the first value that does not convert, so the error can name it.
            for i in 0..col.len() {
                let one = col.slice(i, 1);
                if cast_with_options(&one, to, &strict).is_err() {
                    let value = display_value(&one);
                    return Err(invalid_value(row_offset + i + 1, name, &value, to));
                }
            }
            Err(Error::new(
                ErrorCode::InvalidValue,
                format!("column \"{name}\": {e}"),
            ))
        }
    }
}

/// Checks that the text `value` converts to `ty`, as a decoder would convert it.
pub fn check_text_value(value: &str, ty: &DataType) -> bool {
    if matches!(ty, DataType::Utf8) {
        return true;
    }
    let arr: ArrayRef = Arc::new(StringArray::from(vec![value]));
    let strict = CastOptions {
        safe: false,
        ..Default::default()
    };
    cast_with_options(&arr, ty, &strict).is_ok()
}

pub fn invalid_value(row: usize, column: &str, value: &str, ty: &DataType) -> Error {
    Error::new(
        ErrorCode::InvalidValue,
        format!(
            "row {row}: invalid value {value:?} for column \"{column}\" of type {}",
            sql_type_name(ty)
        ),
    )
}

pub fn not_null(row: usize, column: &str) -> Error {
    Error::new(
        ErrorCode::NotNullViolation,
        format!("row {row}: null value in column \"{column}\" violates not-null constraint"),
    )
}

fn display_value(one: &ArrayRef) -> String {
    ArrayFormatter::try_new(one.as_ref(), &FormatOptions::default())
        .map(|f| f.value(0).to_string())
        .unwrap_or_default()
}

/// The PostgreSQL name users know for an Arrow type, for error messages.
pub fn sql_type_name(ty: &DataType) -> String {
    match ty {
        DataType::Utf8 => "text".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Int16 => "smallint".into(),
        DataType::Int32 => "integer".into(),
        DataType::Int64 => "bigint".into(),
        DataType::Float32 => "real".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Decimal128(p, s) => format!("numeric({p},{s})"),
        DataType::Date32 => "date".into(),
        DataType::Timestamp(_, None) => "timestamp".into(),
        DataType::Timestamp(_, Some(_)) => "timestamptz".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{Field, Schema};

    #[test]
    fn names_row_and_column() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Int32, true),
        ]));
        let input = RecordBatch::try_from_iter(vec![
            ("a", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef),
            ("b", Arc::new(StringArray::from(vec!["1", "x"])) as ArrayRef),
        ])
        .unwrap();
        let err = conform_batch(&schema, &input, 10).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidValue);
        assert!(err.message.contains("row 12"), "{}", err.message);
        assert!(err.message.contains("\"b\""), "{}", err.message);
        assert!(err.message.contains("\"x\""), "{}", err.message);
    }
}
