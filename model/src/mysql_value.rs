//! MySQL/MariaDB values → Arrow: typed appends for values a binlog decoder has already decoded.
//!
//! Unlike Postgres (text or binary wire forms parsed here), the binlog carries fixed binary
//! layouts that only the decoder can read (they depend on table-map metadata), so the decoder
//! hands over typed values ([`MysqlValue`], borrowing strings and bytes from the event) and
//! this builder stores them in the column's Arrow type, checking that they fit.
//!
//! # Traps
//! - A value is checked against the Arrow type before it is stored: a failed append leaves the
//!   builder unchanged, so the caller's error is definite and nothing is half-written.
//! - Integers come as `i64`/`u64` whatever the column width; storing a value outside the width
//!   (a corrupt event) is an error, never a wrap.

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Decimal256Builder,
    DurationMicrosecondBuilder, Float32Builder, Float64Builder, Int16Builder, Int32Builder,
    Int64Builder, Int8Builder, StringBuilder, TimestampMicrosecondBuilder, UInt16Builder,
    UInt32Builder, UInt64Builder, UInt8Builder,
};
use arrow_array::{new_null_array, ArrayRef};
use arrow_buffer::i256;
use arrow_schema::{DataType, TimeUnit};

use crate::error::ValueError;

/// One decoded binlog value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MysqlValue<'a> {
    Bool(bool),
    /// Any signed integer (tinyint..bigint, year).
    Int(i64),
    /// Any unsigned integer (tinyint unsigned..bigint unsigned, bit(n)).
    UInt(u64),
    F32(f32),
    F64(f64),
    /// A decimal's unscaled value (scale from the column).
    Decimal128(i128),
    Decimal256(i256),
    /// Text, already valid UTF-8 (transcoded by the decoder if needed).
    Str(&'a str),
    Bytes(&'a [u8]),
    /// Days since 1970-01-01.
    Date(i32),
    /// Signed µs (TIME).
    DurationUs(i64),
    /// µs since 1970-01-01 (UTC for TIMESTAMP, wall clock for DATETIME).
    TimestampUs(i64),
}

impl MysqlValue<'_> {
    fn kind(&self) -> &'static str {
        match self {
            MysqlValue::Bool(_) => "bool",
            MysqlValue::Int(_) => "signed integer",
            MysqlValue::UInt(_) => "unsigned integer",
            MysqlValue::F32(_) => "float",
            MysqlValue::F64(_) => "double",
            MysqlValue::Decimal128(_) | MysqlValue::Decimal256(_) => "decimal",
            MysqlValue::Str(_) => "string",
            MysqlValue::Bytes(_) => "bytes",
            MysqlValue::Date(_) => "date",
            MysqlValue::DurationUs(_) => "time",
            MysqlValue::TimestampUs(_) => "timestamp",
        }
    }

    /// Input size used for batch byte accounting.
    pub fn byte_len(&self) -> usize {
        match self {
            MysqlValue::Str(s) => s.len(),
            MysqlValue::Bytes(b) => b.len(),
            MysqlValue::Decimal256(_) => 32,
            MysqlValue::Decimal128(_) => 16,
            _ => 8,
        }
    }
}

#[derive(Debug)]
enum Store {
    Bool(BooleanBuilder),
    I8(Int8Builder),
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    U8(UInt8Builder),
    U16(UInt16Builder),
    U32(UInt32Builder),
    U64(UInt64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    D128(Decimal128Builder),
    D256(Decimal256Builder),
    Utf8(StringBuilder),
    Binary(BinaryBuilder),
    Date(Date32Builder),
    Duration(DurationMicrosecondBuilder),
    Timestamp(TimestampMicrosecondBuilder),
    /// An Arrow type this builder does not build: nulls only, values fail.
    Null {
        data_type: DataType,
        len: usize,
    },
}

/// Builds one Arrow column from typed MySQL values.
#[derive(Debug)]
pub struct MysqlColumnBuilder {
    store: Store,
    data_type: DataType,
    type_display: String,
}

fn int_fit<T: TryFrom<i64>>(v: i64, target: &'static str) -> Result<T, ValueError> {
    T::try_from(v).map_err(|_| ValueError::OutOfRange {
        type_name: "integer",
        target: target.into(),
        reason: "value outside the column's width",
    })
}

fn uint_fit<T: TryFrom<u64>>(v: u64, target: &'static str) -> Result<T, ValueError> {
    T::try_from(v).map_err(|_| ValueError::OutOfRange {
        type_name: "unsigned integer",
        target: target.into(),
        reason: "value outside the column's width",
    })
}

/// Arrow's string/binary builders panic past `i32::MAX` bytes in a column ("byte array offset
/// overflow"): a column of one batch that would pass 2 GiB is an error instead. The binlog
/// decoder closes batches well before (`tidemark_binlog::decoder::MAX_BATCH_BYTES`).
fn fits_offsets(used: usize, add: usize) -> Result<(), ValueError> {
    match used.checked_add(add) {
        Some(n) if n <= i32::MAX as usize => Ok(()),
        _ => Err(ValueError::OutOfRange {
            type_name: "string or binary",
            target: "an Arrow Utf8/Binary column (i32 offsets)".into(),
            reason: "more than 2 GiB of data in one column of one batch",
        }),
    }
}

impl MysqlColumnBuilder {
    /// A builder for a column stored as `data_type`; `type_display` names it in errors.
    pub fn new(type_display: &str, data_type: &DataType, cap: usize) -> Self {
        let store = match data_type {
            DataType::Boolean => Store::Bool(BooleanBuilder::with_capacity(cap)),
            DataType::Int8 => Store::I8(Int8Builder::with_capacity(cap)),
            DataType::Int16 => Store::I16(Int16Builder::with_capacity(cap)),
            DataType::Int32 => Store::I32(Int32Builder::with_capacity(cap)),
            DataType::Int64 => Store::I64(Int64Builder::with_capacity(cap)),
            DataType::UInt8 => Store::U8(UInt8Builder::with_capacity(cap)),
            DataType::UInt16 => Store::U16(UInt16Builder::with_capacity(cap)),
            DataType::UInt32 => Store::U32(UInt32Builder::with_capacity(cap)),
            DataType::UInt64 => Store::U64(UInt64Builder::with_capacity(cap)),
            DataType::Float32 => Store::F32(Float32Builder::with_capacity(cap)),
            DataType::Float64 => Store::F64(Float64Builder::with_capacity(cap)),
            DataType::Decimal128(p, s) if (1..=38).contains(p) && *s >= 0 && *s as u8 <= *p => {
                Store::D128(Decimal128Builder::with_capacity(cap).with_data_type(data_type.clone()))
            }
            DataType::Decimal256(p, s) if (1..=76).contains(p) && *s >= 0 && *s as u8 <= *p => {
                Store::D256(Decimal256Builder::with_capacity(cap).with_data_type(data_type.clone()))
            }
            DataType::Utf8 => Store::Utf8(StringBuilder::with_capacity(cap, cap * 8)),
            DataType::Binary => Store::Binary(BinaryBuilder::with_capacity(cap, cap * 8)),
            DataType::Date32 => Store::Date(Date32Builder::with_capacity(cap)),
            DataType::Duration(TimeUnit::Microsecond) => {
                Store::Duration(DurationMicrosecondBuilder::with_capacity(cap))
            }
            DataType::Timestamp(TimeUnit::Microsecond, _) => Store::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(cap).with_data_type(data_type.clone()),
            ),
            other => Store::Null {
                data_type: other.clone(),
                len: 0,
            },
        };
        MysqlColumnBuilder {
            store,
            data_type: data_type.clone(),
            type_display: type_display.to_owned(),
        }
    }

    fn mismatch(&self, v: &MysqlValue<'_>) -> ValueError {
        ValueError::TypeMismatch {
            type_name: format!("{} ({} value)", self.type_display, v.kind()),
            data_type: self.data_type.to_string(),
        }
    }

    /// The Arrow type being built.
    pub fn data_type(&self) -> &DataType {
        &self.data_type
    }

    /// Appends a value; on error nothing was appended.
    pub fn append(&mut self, v: MysqlValue<'_>) -> Result<(), ValueError> {
        use MysqlValue as V;
        // The mismatch error is built only on the error path: formatting it (the Arrow type's
        // Display) for every value was 55 % of the decoder's instructions (docs/benchmarks.md).
        match (&mut self.store, v) {
            (Store::Bool(b), V::Bool(x)) => b.append_value(x),
            (Store::Bool(b), V::UInt(x)) if x <= 1 => b.append_value(x == 1),
            (Store::I8(b), V::Int(x)) => b.append_value(int_fit(x, "Int8")?),
            (Store::I16(b), V::Int(x)) => b.append_value(int_fit(x, "Int16")?),
            (Store::I32(b), V::Int(x)) => b.append_value(int_fit(x, "Int32")?),
            (Store::I64(b), V::Int(x)) => b.append_value(x),
            (Store::U8(b), V::UInt(x)) => b.append_value(uint_fit(x, "UInt8")?),
            (Store::U16(b), V::UInt(x)) => b.append_value(uint_fit(x, "UInt16")?),
            (Store::U32(b), V::UInt(x)) => b.append_value(uint_fit(x, "UInt32")?),
            (Store::U64(b), V::UInt(x)) => b.append_value(x),
            (Store::F32(b), V::F32(x)) => b.append_value(x),
            (Store::F64(b), V::F64(x)) => b.append_value(x),
            (Store::D128(b), V::Decimal128(x)) => b.append_value(x),
            (Store::D256(b), V::Decimal256(x)) => b.append_value(x),
            (Store::D256(b), V::Decimal128(x)) => b.append_value(i256::from_i128(x)),
            (Store::Utf8(b), V::Str(x)) => {
                fits_offsets(b.values_slice().len(), x.len())?;
                b.append_value(x)
            }
            (Store::Binary(b), V::Bytes(x)) => {
                fits_offsets(b.values_slice().len(), x.len())?;
                b.append_value(x)
            }
            (Store::Date(b), V::Date(x)) => b.append_value(x),
            (Store::Duration(b), V::DurationUs(x)) => b.append_value(x),
            (Store::Timestamp(b), V::TimestampUs(x)) => b.append_value(x),
            _ => return Err(self.mismatch(&v)),
        }
        Ok(())
    }

    /// Appends a NULL (also used for unchanged and marked values).
    pub fn append_null(&mut self) {
        match &mut self.store {
            Store::Bool(b) => b.append_null(),
            Store::I8(b) => b.append_null(),
            Store::I16(b) => b.append_null(),
            Store::I32(b) => b.append_null(),
            Store::I64(b) => b.append_null(),
            Store::U8(b) => b.append_null(),
            Store::U16(b) => b.append_null(),
            Store::U32(b) => b.append_null(),
            Store::U64(b) => b.append_null(),
            Store::F32(b) => b.append_null(),
            Store::F64(b) => b.append_null(),
            Store::D128(b) => b.append_null(),
            Store::D256(b) => b.append_null(),
            Store::Utf8(b) => b.append_null(),
            Store::Binary(b) => b.append_null(),
            Store::Date(b) => b.append_null(),
            Store::Duration(b) => b.append_null(),
            Store::Timestamp(b) => b.append_null(),
            Store::Null { len, .. } => *len += 1,
        }
    }

    /// `n` NULL values.
    pub fn append_nulls(&mut self, n: usize) {
        match &mut self.store {
            Store::Bool(b) => b.append_nulls(n),
            Store::I8(b) => b.append_nulls(n),
            Store::I16(b) => b.append_nulls(n),
            Store::I32(b) => b.append_nulls(n),
            Store::I64(b) => b.append_nulls(n),
            Store::U8(b) => b.append_nulls(n),
            Store::U16(b) => b.append_nulls(n),
            Store::U32(b) => b.append_nulls(n),
            Store::U64(b) => b.append_nulls(n),
            Store::F32(b) => b.append_nulls(n),
            Store::F64(b) => b.append_nulls(n),
            Store::D128(b) => b.append_nulls(n),
            Store::D256(b) => b.append_nulls(n),
            Store::Utf8(b) => b.append_nulls(n),
            Store::Binary(b) => b.append_nulls(n),
            Store::Date(b) => b.append_nulls(n),
            Store::Duration(b) => b.append_nulls(n),
            Store::Timestamp(b) => b.append_nulls(n),
            Store::Null { len, .. } => *len += n,
        }
    }

    /// The built array; the builder is reset.
    pub fn finish(&mut self) -> ArrayRef {
        match &mut self.store {
            Store::Bool(b) => Arc::new(b.finish()),
            Store::I8(b) => Arc::new(b.finish()),
            Store::I16(b) => Arc::new(b.finish()),
            Store::I32(b) => Arc::new(b.finish()),
            Store::I64(b) => Arc::new(b.finish()),
            Store::U8(b) => Arc::new(b.finish()),
            Store::U16(b) => Arc::new(b.finish()),
            Store::U32(b) => Arc::new(b.finish()),
            Store::U64(b) => Arc::new(b.finish()),
            Store::F32(b) => Arc::new(b.finish()),
            Store::F64(b) => Arc::new(b.finish()),
            Store::D128(b) => Arc::new(b.finish()),
            Store::D256(b) => Arc::new(b.finish()),
            Store::Utf8(b) => Arc::new(b.finish()),
            Store::Binary(b) => Arc::new(b.finish()),
            Store::Date(b) => Arc::new(b.finish()),
            Store::Duration(b) => Arc::new(b.finish()),
            Store::Timestamp(b) => Arc::new(b.finish()),
            Store::Null { data_type, len } => {
                let a = new_null_array(data_type, *len);
                *len = 0;
                a
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int8Type, UInt64Type};
    use arrow_array::Array;

    #[test]
    fn appends_check_width_and_kind() {
        let mut b = MysqlColumnBuilder::new("tinyint", &DataType::Int8, 4);
        b.append(MysqlValue::Int(-128)).unwrap();
        assert!(b.append(MysqlValue::Int(128)).is_err());
        assert!(b.append(MysqlValue::UInt(1)).is_err());
        b.append_null();
        let a = b.finish();
        let a = a.as_primitive::<Int8Type>();
        assert_eq!(a.len(), 2);
        assert_eq!(a.value(0), -128);
        assert!(a.is_null(1));

        let mut u = MysqlColumnBuilder::new("bigint unsigned", &DataType::UInt64, 1);
        u.append(MysqlValue::UInt(u64::MAX)).unwrap();
        assert_eq!(u.finish().as_primitive::<UInt64Type>().value(0), u64::MAX);

        let mut d = MysqlColumnBuilder::new("decimal(65,30)", &DataType::Decimal256(65, 30), 1);
        d.append(MysqlValue::Decimal128(5)).unwrap();
        assert_eq!(d.finish().len(), 1);
    }

    #[test]
    fn a_string_column_past_2_gib_is_an_error_not_an_arrow_panic() {
        // Arrow's builder panicked ("byte array offset overflow") past i32::MAX bytes.
        let max = i32::MAX as usize;
        assert!(fits_offsets(max - 3, 3).is_ok());
        let e = fits_offsets(max - 3, 4).unwrap_err();
        assert!(e.to_string().contains("more than 2 GiB"), "{e}");
        assert!(fits_offsets(usize::MAX, 1).is_err());
        let mut b = MysqlColumnBuilder::new("text", &DataType::Utf8, 1);
        b.append(MysqlValue::Str("ok")).unwrap();
        assert_eq!(b.finish().len(), 1);
    }
}
