//! The Arrow builders behind a [`ColumnBuilder`], one variant per Arrow type the mapping uses.

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Decimal256Builder,
    FixedSizeBinaryBuilder, Float32Builder, Float64Builder, Int16Builder, Int32Builder,
    Int64Builder, IntervalMonthDayNanoBuilder, StringBuilder, Time64MicrosecondBuilder,
    TimestampMicrosecondBuilder, UInt32Builder,
};
use arrow_array::{new_null_array, ArrayRef, ListArray};
use arrow_buffer::{NullBufferBuilder, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, IntervalUnit, TimeUnit};

use super::{ColumnBuilder, ListStorage, Scalar};
use crate::table::SourceType;

/// Whether `add` more bytes fit a string/binary column that holds `used` (`None`: not such a
/// column). Arrow's builders panic past `i32::MAX` ("byte array offset overflow").
pub(super) fn fits_offsets(used: Option<usize>, add: usize) -> bool {
    used.is_none_or(|u| u.checked_add(add).is_some_and(|n| n <= i32::MAX as usize))
}

/// Arrow builder of one column, by Arrow type.
#[derive(Debug)]
pub(super) enum Storage {
    Boolean(BooleanBuilder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    UInt32(UInt32Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Decimal128(Decimal128Builder),
    Decimal256(Decimal256Builder),
    Utf8(StringBuilder),
    Binary(BinaryBuilder),
    Uuid(FixedSizeBinaryBuilder),
    Date32(Date32Builder),
    Time64(Time64MicrosecondBuilder),
    Timestamp(TimestampMicrosecondBuilder),
    Interval(IntervalMonthDayNanoBuilder),
    List(Box<ListStorage>),
    /// An Arrow type this crate does not build: nulls only.
    Null {
        data_type: DataType,
        len: usize,
    },
}

impl Storage {
    pub(super) fn new(t: &SourceType, dt: &DataType, cap: usize) -> Storage {
        match dt {
            DataType::Boolean => Storage::Boolean(BooleanBuilder::with_capacity(cap)),
            DataType::Int16 => Storage::Int16(Int16Builder::with_capacity(cap)),
            DataType::Int32 => Storage::Int32(Int32Builder::with_capacity(cap)),
            DataType::Int64 => Storage::Int64(Int64Builder::with_capacity(cap)),
            DataType::UInt32 => Storage::UInt32(UInt32Builder::with_capacity(cap)),
            DataType::Float32 => Storage::Float32(Float32Builder::with_capacity(cap)),
            DataType::Float64 => Storage::Float64(Float64Builder::with_capacity(cap)),
            DataType::Decimal128(p, s) if *p >= 1 && *p <= 38 && (*s as i16) <= (*p as i16) => {
                Storage::Decimal128(
                    Decimal128Builder::with_capacity(cap).with_data_type(dt.clone()),
                )
            }
            DataType::Decimal256(p, s) if *p >= 1 && *p <= 76 && (*s as i16) <= (*p as i16) => {
                Storage::Decimal256(
                    Decimal256Builder::with_capacity(cap).with_data_type(dt.clone()),
                )
            }
            DataType::Utf8 => Storage::Utf8(StringBuilder::with_capacity(cap, cap * 8)),
            DataType::Binary => Storage::Binary(BinaryBuilder::with_capacity(cap, cap * 8)),
            DataType::FixedSizeBinary(16) => {
                Storage::Uuid(FixedSizeBinaryBuilder::with_capacity(cap, 16))
            }
            DataType::Date32 => Storage::Date32(Date32Builder::with_capacity(cap)),
            DataType::Time64(TimeUnit::Microsecond) => {
                Storage::Time64(Time64MicrosecondBuilder::with_capacity(cap))
            }
            DataType::Timestamp(TimeUnit::Microsecond, _) => Storage::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(cap).with_data_type(dt.clone()),
            ),
            DataType::Interval(IntervalUnit::MonthDayNano) => {
                Storage::Interval(IntervalMonthDayNanoBuilder::with_capacity(cap))
            }
            DataType::List(field) => {
                let element = t
                    .element
                    .as_deref()
                    .cloned()
                    .unwrap_or_else(|| SourceType::pg_other(0, "unknown", -1));
                let values = ColumnBuilder::new(&element, field.data_type(), cap);
                let mut offsets = Vec::with_capacity(cap + 1);
                offsets.push(0);
                Storage::List(Box::new(ListStorage {
                    field: Arc::clone(field),
                    offsets,
                    nulls: NullBufferBuilder::new(cap),
                    values,
                }))
            }
            other => Storage::Null {
                data_type: other.clone(),
                len: 0,
            },
        }
    }

    pub(super) fn type_name(&self) -> String {
        match self {
            Storage::Null { data_type, .. } => data_type.to_string(),
            other => format!("{:?}", std::mem::discriminant(other)),
        }
    }

    /// Bytes already in a string/binary column (`None` for other types): their offsets are
    /// i32, so a column of one batch holds at most `i32::MAX` bytes ([`fits_offsets`]).
    pub(super) fn value_bytes(&self) -> Option<usize> {
        match self {
            Storage::Utf8(b) => Some(b.values_slice().len()),
            Storage::Binary(b) => Some(b.values_slice().len()),
            _ => None,
        }
    }

    /// Appends a value; `Err(())` if the scalar does not fit this storage (a bug or a
    /// mismatched schema, caught by `ColumnBuilder::mismatch` before).
    pub(super) fn append(&mut self, v: Scalar<'_>) -> Result<(), ()> {
        match (self, v) {
            (Storage::Boolean(b), Scalar::Bool(v)) => b.append_value(v),
            (Storage::Int16(b), Scalar::I16(v)) => b.append_value(v),
            (Storage::Int32(b), Scalar::I32(v)) => b.append_value(v),
            (Storage::Int64(b), Scalar::I64(v)) => b.append_value(v),
            (Storage::UInt32(b), Scalar::U32(v)) => b.append_value(v),
            (Storage::Float32(b), Scalar::F32(v)) => b.append_value(v),
            (Storage::Float64(b), Scalar::F64(v)) => b.append_value(v),
            (Storage::Decimal128(b), Scalar::Dec128(v)) => b.append_value(v),
            (Storage::Decimal256(b), Scalar::Dec256(v)) => b.append_value(v),
            (Storage::Utf8(b), Scalar::Str(v)) => b.append_value(v),
            (Storage::Binary(b), Scalar::Bytes(v)) => b.append_value(v),
            (Storage::Uuid(b), Scalar::Uuid(v)) => b.append_value(v).map_err(|_| ())?,
            (Storage::Date32(b), Scalar::Date(v)) => b.append_value(v),
            (Storage::Time64(b), Scalar::Time(v)) => b.append_value(v),
            (Storage::Timestamp(b), Scalar::Timestamp(v)) => b.append_value(v),
            (Storage::Interval(b), Scalar::Interval(v)) => b.append_value(v),
            _ => return Err(()),
        }
        Ok(())
    }

    pub(super) fn append_null(&mut self) {
        match self {
            Storage::Boolean(b) => b.append_null(),
            Storage::Int16(b) => b.append_null(),
            Storage::Int32(b) => b.append_null(),
            Storage::Int64(b) => b.append_null(),
            Storage::UInt32(b) => b.append_null(),
            Storage::Float32(b) => b.append_null(),
            Storage::Float64(b) => b.append_null(),
            Storage::Decimal128(b) => b.append_null(),
            Storage::Decimal256(b) => b.append_null(),
            Storage::Utf8(b) => b.append_null(),
            Storage::Binary(b) => b.append_null(),
            Storage::Uuid(b) => b.append_null(),
            Storage::Date32(b) => b.append_null(),
            Storage::Time64(b) => b.append_null(),
            Storage::Timestamp(b) => b.append_null(),
            Storage::Interval(b) => b.append_null(),
            Storage::List(l) => l.append_null(),
            Storage::Null { len, .. } => *len += 1,
        }
    }

    pub(super) fn len(&self) -> usize {
        use arrow_array::builder::ArrayBuilder;
        match self {
            Storage::Boolean(b) => b.len(),
            Storage::Int16(b) => b.len(),
            Storage::Int32(b) => b.len(),
            Storage::Int64(b) => b.len(),
            Storage::UInt32(b) => b.len(),
            Storage::Float32(b) => b.len(),
            Storage::Float64(b) => b.len(),
            Storage::Decimal128(b) => b.len(),
            Storage::Decimal256(b) => b.len(),
            Storage::Utf8(b) => b.len(),
            Storage::Binary(b) => b.len(),
            Storage::Uuid(b) => b.len(),
            Storage::Date32(b) => b.len(),
            Storage::Time64(b) => b.len(),
            Storage::Timestamp(b) => b.len(),
            Storage::Interval(b) => b.len(),
            Storage::List(l) => l.offsets.len().saturating_sub(1),
            Storage::Null { len, .. } => *len,
        }
    }

    pub(super) fn finish(&mut self) -> ArrayRef {
        match self {
            Storage::Boolean(b) => Arc::new(b.finish()),
            Storage::Int16(b) => Arc::new(b.finish()),
            Storage::Int32(b) => Arc::new(b.finish()),
            Storage::Int64(b) => Arc::new(b.finish()),
            Storage::UInt32(b) => Arc::new(b.finish()),
            Storage::Float32(b) => Arc::new(b.finish()),
            Storage::Float64(b) => Arc::new(b.finish()),
            Storage::Decimal128(b) => Arc::new(b.finish()),
            Storage::Decimal256(b) => Arc::new(b.finish()),
            Storage::Utf8(b) => Arc::new(b.finish()),
            Storage::Binary(b) => Arc::new(b.finish()),
            Storage::Uuid(b) => Arc::new(b.finish()),
            Storage::Date32(b) => Arc::new(b.finish()),
            Storage::Time64(b) => Arc::new(b.finish()),
            Storage::Timestamp(b) => Arc::new(b.finish()),
            Storage::Interval(b) => Arc::new(b.finish()),
            Storage::List(l) => {
                let offsets = std::mem::replace(&mut l.offsets, vec![0]);
                let values = l.values.finish();
                let nulls = l.nulls.finish();
                Arc::new(
                    ListArray::try_new(
                        Arc::clone(&l.field),
                        OffsetBuffer::new(ScalarBuffer::from(offsets)),
                        values,
                        nulls,
                    )
                    .expect("list offsets and values are built consistently"),
                )
            }
            Storage::Null { data_type, len } => {
                let a = new_null_array(data_type, *len);
                *len = 0;
                a
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fits_offsets;

    #[test]
    fn string_columns_stop_at_the_i32_offset_limit() {
        // Arrow's builder panicked ("byte array offset overflow") past i32::MAX bytes.
        let max = i32::MAX as usize;
        assert!(fits_offsets(None, usize::MAX));
        assert!(fits_offsets(Some(max - 3), 3));
        assert!(!fits_offsets(Some(max - 3), 4));
        assert!(!fits_offsets(Some(usize::MAX), 1));
    }
}
