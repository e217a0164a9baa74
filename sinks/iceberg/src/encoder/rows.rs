//! Change batch rows → Arrow batches in the table's Iceberg schema (pure, no IO).
//!
//! Mirror rows are one image (the new one) of the rows kept; changelog rows add the system
//! columns `_op`, `_position`, `_txid`, `_commit_ts` and `_unchanged` (the names of columns
//! the source did not send, e.g. Postgres unchanged TOAST: their slot is null *and listed*).
//!
//! # Traps
//! - A null slot with an `Unchanged` marker is not NULL (`encoder::rows::unchanged_columns`
//!   tells the mirror which values it must take from the stored row).
//! - NaN/±Infinity of a `numeric(p,s)` column and multi-dimensional arrays have no Iceberg
//!   form: a definite error naming table and column, never a silent NULL.

use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray, UInt32Array};
use arrow_schema::{DataType, Field, SchemaRef, TimeUnit};
use iceberg::spec::Schema;
use tidemark_model::table::columns;
use tidemark_model::{ChangeBatch, Image, MarkerKind, TableSchema};

use crate::encoder::schema::{
    CHANGELOG_COMMIT_TS, CHANGELOG_OP, CHANGELOG_POSITION, CHANGELOG_TXID, CHANGELOG_UNCHANGED,
};
use crate::error::IcebergError;

/// Where a top-level field's values come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FieldSource {
    Column(usize),
    Op,
    Position,
    Txid,
    CommitTs,
    Unchanged,
    /// A field the source no longer has (cannot happen after `evolve`; written as null).
    Missing,
}

/// Encodes change rows of one source schema version into one Iceberg schema.
#[derive(Clone, Debug)]
pub struct RowEncoder {
    /// The Iceberg schema's Arrow form (with `PARQUET:field_id` metadata).
    pub arrow: SchemaRef,
    sources: Vec<FieldSource>,
    source: Arc<TableSchema>,
}

impl RowEncoder {
    /// `field_ids[i]` is the Iceberg field id of source column `i`.
    pub fn new(
        schema: &Schema,
        source: Arc<TableSchema>,
        field_ids: &[i32],
    ) -> Result<Self, IcebergError> {
        let arrow = iceberg::arrow::schema_to_arrow_schema(schema)
            .map_err(|e| IcebergError::schema(&source.table, e.to_string()))?;
        let sources = schema
            .as_struct()
            .fields()
            .iter()
            .map(|f| match f.name.as_str() {
                _ if field_ids.contains(&f.id) => {
                    FieldSource::Column(field_ids.iter().position(|id| *id == f.id).unwrap_or(0))
                }
                CHANGELOG_OP => FieldSource::Op,
                CHANGELOG_POSITION => FieldSource::Position,
                CHANGELOG_TXID => FieldSource::Txid,
                CHANGELOG_COMMIT_TS => FieldSource::CommitTs,
                CHANGELOG_UNCHANGED => FieldSource::Unchanged,
                _ => FieldSource::Missing,
            })
            .collect();
        Ok(RowEncoder {
            arrow: Arc::new(arrow),
            sources,
            source,
        })
    }

    /// The source schema this encoder reads.
    pub fn source(&self) -> &Arc<TableSchema> {
        &self.source
    }

    /// Rows `rows` of `cb`, `image` of each, in the table schema. Unchanged values are null
    /// (the caller fills them in mirror mode; changelog lists them in `_unchanged`).
    pub fn encode(
        &self,
        cb: &ChangeBatch,
        image: Image,
        rows: &[u32],
    ) -> Result<RecordBatch, IcebergError> {
        self.check_markers(cb, image, rows)?;
        let idx = UInt32Array::from(rows.to_vec());
        let img_col = match image {
            Image::Before => columns::BEFORE_INDEX,
            Image::After => columns::AFTER_INDEX,
        };
        let img = cb.batch.column(img_col).as_struct();
        let mut out: Vec<ArrayRef> = Vec::with_capacity(self.sources.len());
        for (field, src) in self.arrow.fields().iter().zip(&self.sources) {
            let arr: ArrayRef = match src {
                FieldSource::Column(c) => {
                    let taken = arrow_select::take::take(img.column(*c).as_ref(), &idx, None)
                        .map_err(|e| self.arrow_err(*c, e))?;
                    cast_to(&taken, field.data_type()).map_err(|e| self.arrow_err(*c, e))?
                }
                FieldSource::Op => Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| cb.op(*r as usize).debezium_code()),
                )),
                FieldSource::Position => Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| cb.position(*r as usize).to_string()),
                )),
                FieldSource::Txid => {
                    let tx = cb
                        .batch
                        .column(columns::TXID_INDEX)
                        .as_primitive::<UInt64Type>();
                    Arc::new(Int64Array::from_iter(rows.iter().map(|r| {
                        let r = *r as usize;
                        tx.is_valid(r).then(|| tx.value(r) as i64)
                    })))
                }
                FieldSource::CommitTs => {
                    let ts = cb.batch.column(columns::COMMIT_TS_INDEX);
                    let taken = arrow_select::take::take(ts.as_ref(), &idx, None)
                        .map_err(|e| self.arrow_err(usize::MAX, e))?;
                    cast_to(&taken, field.data_type()).map_err(|e| self.arrow_err(usize::MAX, e))?
                }
                FieldSource::Unchanged => self.unchanged_list(cb, image, rows, field)?,
                FieldSource::Missing => arrow_array::new_null_array(field.data_type(), rows.len()),
            };
            out.push(arr);
        }
        RecordBatch::try_new(self.arrow.clone(), out)
            .map_err(|e| IcebergError::schema(&self.source.table, format!("batch: {e}")))
    }

    fn unchanged_list(
        &self,
        cb: &ChangeBatch,
        image: Image,
        rows: &[u32],
        field: &Field,
    ) -> Result<ArrayRef, IcebergError> {
        let item = match field.data_type() {
            DataType::List(f) => f.clone(),
            other => {
                return Err(IcebergError::schema(
                    &self.source.table,
                    format!("_unchanged has type {other}, expected a list"),
                ))
            }
        };
        let mut b = ListBuilder::new(StringBuilder::new()).with_field(item);
        for r in rows {
            let cols = unchanged_columns(cb, *r as usize, image);
            if cols.is_empty() {
                b.append_null();
            } else {
                for c in cols {
                    b.values().append_value(&self.source.columns[c].name);
                }
                b.append(true);
            }
        }
        Ok(Arc::new(b.finish()))
    }

    fn check_markers(
        &self,
        cb: &ChangeBatch,
        image: Image,
        rows: &[u32],
    ) -> Result<(), IcebergError> {
        for r in rows {
            let r = *r as usize;
            if !cb.has_markers(r) {
                continue;
            }
            for m in cb.markers(r) {
                if m.image != image {
                    continue;
                }
                let col = &self.source.columns[m.column as usize];
                let text_target =
                    matches!(col.data_type, DataType::Utf8 | DataType::Decimal256(..));
                let bad = match m.kind {
                    MarkerKind::Unchanged => None,
                    MarkerKind::NaN | MarkerKind::PosInfinity | MarkerKind::NegInfinity
                        if !text_target =>
                    {
                        Some("NaN/Infinity of a numeric with a typmod has no Iceberg decimal form; use an unconstrained numeric (stored as text)")
                    }
                    MarkerKind::ArrayDims => Some(
                        "multi-dimensional array (or one with lower bounds other than 1) has no Iceberg list form",
                    ),
                    _ => None,
                };
                if let Some(reason) = bad {
                    return Err(IcebergError::unsupported(
                        &self.source.table,
                        &col.name,
                        format!("row at {}: {reason}", cb.position(r)),
                    ));
                }
            }
        }
        Ok(())
    }

    fn arrow_err(&self, col: usize, e: impl std::fmt::Display) -> IcebergError {
        let name = self
            .source
            .columns
            .get(col)
            .map(|c| c.name.as_str())
            .unwrap_or(columns::COMMIT_TS);
        IcebergError::unsupported(&self.source.table, name, e.to_string())
    }
}

/// The source columns of row `i`'s `image` the source did not send (unchanged TOAST).
pub fn unchanged_columns(cb: &ChangeBatch, i: usize, image: Image) -> Vec<usize> {
    if !cb.has_markers(i) {
        return Vec::new();
    }
    cb.markers(i)
        .into_iter()
        .filter(|m| m.image == image && m.kind == MarkerKind::Unchanged)
        .map(|m| m.column as usize)
        .collect()
}

/// Casts a model array to the Iceberg schema's Arrow type.
pub fn cast_to(arr: &ArrayRef, to: &DataType) -> Result<ArrayRef, arrow_schema::ArrowError> {
    if arr.data_type() == to {
        return Ok(arr.clone());
    }
    match (arr.data_type(), to) {
        // Interval text in the Postgres form, not Arrow's debug form.
        (DataType::Interval(_), DataType::Utf8) => Ok(interval_text(arr)),
        _ => arrow_cast::cast(arr, to),
    }
}

fn interval_text(arr: &ArrayRef) -> ArrayRef {
    use arrow_array::types::IntervalMonthDayNanoType;
    let Some(a) = arr.as_primitive_opt::<IntervalMonthDayNanoType>() else {
        return arrow_cast::cast(arr, &DataType::Utf8)
            .unwrap_or_else(|_| arrow_array::new_null_array(&DataType::Utf8, arr.len()));
    };
    Arc::new(StringArray::from_iter(a.iter().map(|v| {
        v.map(|v| {
            let us = v.nanoseconds / 1000;
            let sign = if us < 0 { "-" } else { "" };
            let us = us.unsigned_abs();
            let (h, rem) = (us / 3_600_000_000, us % 3_600_000_000);
            let (m, rem) = (rem / 60_000_000, rem % 60_000_000);
            let (s, frac) = (rem / 1_000_000, rem % 1_000_000);
            let time = if frac == 0 {
                format!("{sign}{h:02}:{m:02}:{s:02}")
            } else {
                format!("{sign}{h:02}:{m:02}:{s:02}.{frac:06}")
            };
            format!("{} mons {} days {time}", v.months, v.days)
        })
    })))
}

/// Normalises key arrays so a promoted column (int → long, float → double, decimal widening)
/// encodes the same key bytes as before: the index must survive schema evolution.
pub fn normalize_key(arr: &ArrayRef) -> Result<ArrayRef, arrow_schema::ArrowError> {
    let to = match arr.data_type() {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32 => DataType::Int64,
        DataType::Float16 | DataType::Float32 => DataType::Float64,
        DataType::Decimal128(_, s) => DataType::Decimal128(38, *s),
        DataType::LargeUtf8 | DataType::Utf8View => DataType::Utf8,
        DataType::LargeBinary | DataType::BinaryView => DataType::Binary,
        DataType::Timestamp(_, _) => DataType::Timestamp(TimeUnit::Microsecond, None),
        DataType::Time32(_) => DataType::Time64(TimeUnit::Microsecond),
        _ => return Ok(arr.clone()),
    };
    arrow_cast::cast(arr, &to)
}

/// Whether a column's Arrow type is usable as a key (`arrow-row` encodable).
pub fn key_type_ok(dt: &DataType) -> bool {
    !matches!(dt, DataType::List(_) | DataType::LargeList(_))
}
