//! `varchar(n)` and `char(n)` on write, as PostgreSQL applies them: a value longer than
//! `n` characters is refused (22001) unless what is past `n` is only spaces, which are
//! cut off; `char(n)` values are blank-padded to `n`. Lengths count characters, not
//! bytes.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringArray};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use eddy_proto::{ColumnType, Error, ErrorCode, Result, TableDef};

/// One value as its column's type stores it; `None` when it is too long.
fn conform(value: &str, max: usize, pad: bool) -> Option<std::borrow::Cow<'_, str>> {
    let chars = value.chars().count();
    if chars > max {
        let (cut, _) = value.char_indices().nth(max)?;
        if value[cut..].bytes().any(|b| b != b' ') {
            return None;
        }
        return Some(value[..cut].into());
    }
    if pad && chars < max {
        let mut v = String::with_capacity(value.len() + max - chars);
        v.push_str(value);
        v.extend(std::iter::repeat_n(' ', max - chars));
        return Some(v.into());
    }
    Some(value.into())
}

/// The batches with every `varchar(n)` and `char(n)` column conformed.
pub(crate) fn conform_lengths(
    def: &TableDef,
    batches: Vec<RecordBatch>,
) -> Result<Vec<RecordBatch>> {
    let limited: Vec<(usize, u32, bool)> = def
        .columns
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let max = c.ty.max_chars()?;
            Some((i, max, matches!(c.ty, ColumnType::Char { .. })))
        })
        .collect();
    if limited.is_empty() {
        return Ok(batches);
    }
    let mut offset = 0;
    let mut out = Vec::with_capacity(batches.len());
    for batch in batches {
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        for &(i, max, pad) in &limited {
            let column = &def.columns[i];
            let Some(a) = batch
                .schema()
                .index_of(&column.name)
                .ok()
                .map(|j| Arc::clone(batch.column(j)))
            else {
                continue;
            };
            if a.data_type() != &DataType::Utf8 {
                continue;
            }
            let strings = a.as_string::<i32>();
            let mut changed = false;
            let mut values: Vec<Option<std::borrow::Cow<'_, str>>> =
                Vec::with_capacity(strings.len());
            for (row, v) in strings.iter().enumerate() {
                let Some(v) = v else {
                    values.push(None);
                    continue;
                };
                let Some(c) = conform(v, max as usize, pad) else {
                    // PostgreSQL's message, word for word (clients match on it); the row
                    // is logged for the operator.
                    tracing::debug!(row = offset + row + 1, column = %column.name, "value too long");
                    return Err(Error::new(
                        ErrorCode::StringTooLong,
                        format!("value too long for type {}", column.ty.sql_name()),
                    ));
                };
                // Cutting or padding changes the length; an unchanged value keeps it.
                changed |= c.len() != v.len();
                values.push(Some(c));
            }
            if changed {
                let j = batch.schema().index_of(&column.name).map_err(|e| {
                    Error::new(ErrorCode::Internal, format!("column vanished: {e}"))
                })?;
                columns[j] = Arc::new(values.iter().map(|v| v.as_deref()).collect::<StringArray>());
            }
        }
        offset += batch.num_rows();
        out.push(
            RecordBatch::try_new(batch.schema(), columns)
                .map_err(|e| Error::new(ErrorCode::Internal, format!("conform lengths: {e}")))?,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{Field, Schema};
    use eddy_proto::ColumnDef;

    fn def() -> TableDef {
        let col = |name: &str, ty| ColumnDef {
            name: name.into(),
            ty,
            nullable: true,
        };
        TableDef {
            name: "t".into(),
            columns: vec![
                col("v", ColumnType::Varchar { length: Some(3) }),
                col("c", ColumnType::Char { length: 3 }),
            ],
            primary_key: vec![],
            time_column: None,
            partition_by: None,
            retention_secs: None,
        }
    }

    fn batch(v: Vec<Option<&str>>, c: Vec<Option<&str>>) -> RecordBatch {
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("v", DataType::Utf8, true),
                Field::new("c", DataType::Utf8, true),
            ])),
            vec![
                Arc::new(StringArray::from(v)),
                Arc::new(StringArray::from(c)),
            ],
        )
        .unwrap()
    }

    #[test]
    fn pads_char_and_trims_trailing_spaces() {
        let out = conform_lengths(
            &def(),
            vec![batch(
                vec![Some("é€x"), Some("ab   "), None],
                vec![Some("a"), Some("abc  "), None],
            )],
        )
        .unwrap();
        let v = out[0].column(0).as_string::<i32>();
        let c = out[0].column(1).as_string::<i32>();
        assert_eq!(v.value(0), "é€x", "characters, not bytes");
        assert_eq!(v.value(1), "ab ");
        assert!(v.is_null(2));
        assert_eq!(c.value(0), "a  ");
        assert_eq!(c.value(1), "abc");
        assert!(c.is_null(2));
    }

    #[test]
    fn refuses_longer_values_with_22001() {
        let err = conform_lengths(
            &def(),
            vec![
                batch(vec![Some("ok")], vec![None]),
                batch(vec![Some("abcd")], vec![None]),
            ],
        )
        .unwrap_err();
        assert_eq!(err.code, ErrorCode::StringTooLong);
        assert_eq!(err.code.sqlstate(), "22001");
        assert_eq!(err.message, "value too long for type character varying(3)");
    }
}
