//! A batch's rows as DataRows, with text-format floats and timestamps spelled as
//! PostgreSQL prints them value by value; arrow-pg encodes every other column.
//!
//! The general path ([`super::encode`]'s `as_pg_text`) first rewrites such columns into
//! text arrays and builds a new batch for arrow-pg. For the one-row answers of point
//! queries, those builders and the new batch's validation cost more than the spelling
//! itself, so the kinds spelled here skip them. Other kinds (times, timestamps of other
//! units) keep the general path.

use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float32Type, Float64Type, TimeUnit, TimestampMicrosecondType};
use arrow::record_batch::RecordBatch;
use arrow_pg::encoder::{encode_value, Encoder};
use pgwire::api::results::{DataRowEncoder, FieldInfo};
use pgwire::error::PgWireResult;
use pgwire::messages::data::DataRow;

use super::datetime::{self, SessionTz};
use super::encode::{push_f32, push_f64};

/// How one column of a row is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spell {
    /// By arrow-pg, as it is.
    Arrow,
    F64,
    F32,
    /// A microsecond timestamp; `zoned`: a `timestamptz`.
    TimestampMicros {
        zoned: bool,
    },
}

impl Spell {
    /// How a text-format column of this type that PostgreSQL spells its own way is written
    /// here, or `None` when only the general path spells it.
    pub(crate) fn of(dt: &DataType) -> Option<Self> {
        match dt {
            DataType::Float64 => Some(Self::F64),
            DataType::Float32 => Some(Self::F32),
            DataType::Timestamp(TimeUnit::Microsecond, zone) => Some(Self::TimestampMicros {
                zoned: zone.is_some(),
            }),
            _ => None,
        }
    }
}

/// The rows of a batch, one DataRow each.
pub(crate) struct TextRows {
    batch: RecordBatch,
    fields: Arc<Vec<FieldInfo>>,
    spells: Arc<[Spell]>,
    tz: SessionTz,
    row: usize,
    encoder: DataRowEncoder,
    text: String,
    floats: ryu::Buffer,
}

impl TextRows {
    /// `spells` has one entry per column of `batch`, as has `fields`.
    pub(crate) fn new(
        batch: RecordBatch,
        fields: Arc<Vec<FieldInfo>>,
        spells: Arc<[Spell]>,
        tz: SessionTz,
    ) -> Self {
        Self {
            batch,
            encoder: DataRowEncoder::new(Arc::clone(&fields)),
            fields,
            spells,
            tz,
            row: 0,
            text: String::with_capacity(40),
            floats: ryu::Buffer::new(),
        }
    }

    fn encode_row(&mut self) -> PgWireResult<DataRow> {
        let i = self.row;
        let schema = self.batch.schema_ref();
        for (col, spell) in self.spells.iter().enumerate() {
            let a = self.batch.column(col);
            let field = &self.fields[col];
            self.text.clear();
            let valid = match spell {
                Spell::Arrow => {
                    encode_value(&mut self.encoder, a, i, schema.field(col), field)?;
                    continue;
                }
                _ if a.is_null(i) => false,
                Spell::F64 => {
                    let v = a.as_primitive::<Float64Type>().value(i);
                    push_f64(&mut self.text, v, &mut self.floats);
                    true
                }
                Spell::F32 => {
                    let v = a.as_primitive::<Float32Type>().value(i);
                    push_f32(&mut self.text, v, &mut self.floats);
                    true
                }
                Spell::TimestampMicros { zoned } => {
                    let v = a.as_primitive::<TimestampMicrosecondType>().value(i);
                    datetime::push_timestamp_micros(&mut self.text, v, *zoned, self.tz)
                }
            };
            let value = valid.then_some(self.text.as_str());
            Encoder::encode_field(&mut self.encoder, &value, field)?;
        }
        Ok(self.encoder.take_row())
    }
}

impl Iterator for TextRows {
    type Item = PgWireResult<DataRow>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.row >= self.batch.num_rows() {
            return None;
        }
        let r = self.encode_row();
        self.row += 1;
        Some(r)
    }
}
