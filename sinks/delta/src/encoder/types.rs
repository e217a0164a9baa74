//! The type mapping from the change model's Arrow types to the Arrow types a Delta table can
//! hold, and the value conversion between them. Lossless: every model value has exactly one
//! Delta value and can be recovered from it (docs/delta.md has the table).
//!
//! | model (Arrow) | Delta | how |
//! |---|---|---|
//! | Boolean, Int8/16/32/64, Float32/64, Utf8, Binary, Date32 | same (boolean, byte, short, integer, long, float, double, string, binary, date) | as is |
//! | UInt8 / UInt16 / UInt32 | short / integer / long | widened |
//! | UInt64 | decimal(20,0) | widened, exact |
//! | Decimal128(p,s), 0 ≤ s ≤ p ≤ 38 | decimal(p,s) | as is |
//! | Decimal128 with negative scale, Decimal256 | string | the exact decimal text |
//! | Timestamp(s/ms/µs, tz) | timestamp (UTC instant, µs) | exact; ns is refused |
//! | Timestamp(s/ms/µs, none) | timestamp_ntz (µs) | exact; ns is refused |
//! | Time32/Time64 | long | time of day in the unit of the model type (µs for Postgres) |
//! | Interval(MonthDayNano) | struct<months int, days int, nanoseconds long> | exact |
//! | FixedSizeBinary(16) `arrow.uuid` | string | `xxxxxxxx-xxxx-…` lower case |
//! | FixedSizeBinary(n) | binary | |
//! | Utf8 `arrow.json` | string | the JSON text |
//! | List / LargeList / FixedSizeList (T) | array<T mapped> | elements mapped the same way |
//! | Struct | struct (fields mapped) | |
//!
//! # Traps
//! - Postgres `±infinity` timestamps are `i64::MAX`/`i64::MIN` µs in the model and stay so in
//!   Delta; readers that convert to calendar types (Python `datetime`) cannot show them.
//! - A NaN/±Infinity numeric is a null decimal slot with a marker; the marker travels in the
//!   `_markers` column (see [`super::markers`]), never as a fake number.

use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::cast::AsArray;
use arrow_array::types::IntervalMonthDayNanoType;
use arrow_array::{
    Array, ArrayRef, FixedSizeListArray, Int32Array, Int64Array, ListArray, StructArray,
};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{ArrowError, DataType, Field, FieldRef, Fields, IntervalUnit, TimeUnit};
use tidemark_model::table::{META_EXTENSION_NAME, META_SOURCE_TYPE};

/// Why a type has no Delta form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported(pub String);

/// The Delta-side Arrow field of a model image field (same name, always nullable, the model's
/// `tidemark.source_type` metadata kept as a column comment would be lost, so it is kept as
/// field metadata).
pub fn delta_field(field: &Field) -> Result<Field, Unsupported> {
    let dt = delta_type(field.data_type(), is_uuid(field))?;
    let mut out = Field::new(field.name(), dt, true);
    if let Some(st) = field.metadata().get(META_SOURCE_TYPE) {
        out = out.with_metadata([(META_SOURCE_TYPE.to_owned(), st.clone())].into());
    }
    Ok(out)
}

fn is_uuid(field: &Field) -> bool {
    field
        .metadata()
        .get(META_EXTENSION_NAME)
        .is_some_and(|n| n == "arrow.uuid")
}

fn mapped_field(f: &FieldRef) -> Result<FieldRef, Unsupported> {
    Ok(Arc::new(Field::new(
        f.name(),
        delta_type(f.data_type(), is_uuid(f))?,
        true,
    )))
}

/// The interval struct's fields.
pub fn interval_fields() -> Fields {
    Fields::from(vec![
        Field::new("months", DataType::Int32, true),
        Field::new("days", DataType::Int32, true),
        Field::new("nanoseconds", DataType::Int64, true),
    ])
}

/// The Arrow type of the Delta column for a model type.
pub fn delta_type(dt: &DataType, uuid: bool) -> Result<DataType, Unsupported> {
    use DataType as D;
    Ok(match dt {
        D::Boolean | D::Int8 | D::Int16 | D::Int32 | D::Int64 | D::Float32 | D::Float64 => {
            dt.clone()
        }
        D::Utf8 | D::LargeUtf8 | D::Utf8View | D::Null => D::Utf8,
        D::Binary | D::LargeBinary | D::BinaryView => D::Binary,
        D::FixedSizeBinary(16) if uuid => D::Utf8,
        D::FixedSizeBinary(_) => D::Binary,
        D::Date32 => D::Date32,
        D::UInt8 => D::Int16,
        D::UInt16 => D::Int32,
        D::UInt32 => D::Int64,
        D::UInt64 => D::Decimal128(20, 0),
        D::Decimal32(p, s) | D::Decimal64(p, s) | D::Decimal128(p, s)
            if *s >= 0 && (*s as u8) <= *p && *p <= 38 =>
        {
            D::Decimal128(*p, *s)
        }
        D::Decimal32(..) | D::Decimal64(..) | D::Decimal128(..) | D::Decimal256(..) => D::Utf8,
        D::Timestamp(TimeUnit::Nanosecond, _) => {
            return Err(Unsupported(
                "Delta timestamps hold microseconds; nanoseconds would be cut".into(),
            ))
        }
        D::Timestamp(_, Some(_)) => D::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        D::Timestamp(_, None) => D::Timestamp(TimeUnit::Microsecond, None),
        D::Time32(_) | D::Time64(_) | D::Duration(_) => D::Int64,
        D::Interval(IntervalUnit::MonthDayNano) => D::Struct(interval_fields()),
        D::Interval(IntervalUnit::YearMonth) => D::Int32,
        D::List(f) | D::LargeList(f) | D::FixedSizeList(f, _) => D::List(mapped_field(f)?),
        D::Struct(fields) => D::Struct(
            fields
                .iter()
                .map(mapped_field)
                .collect::<Result<Vec<_>, _>>()?
                .into(),
        ),
        D::Dictionary(_, v) => delta_type(v, uuid)?,
        other => {
            return Err(Unsupported(format!(
                "no lossless Delta type for Arrow {other}"
            )))
        }
    })
}

/// Converts a model column to its Delta type ([`delta_type`] of the same field).
pub fn to_delta(array: &ArrayRef, uuid: bool) -> Result<ArrayRef, ArrowError> {
    use DataType as D;
    let target = delta_type(array.data_type(), uuid).map_err(|u| ArrowError::CastError(u.0))?;
    if array.data_type() == &target {
        return Ok(array.clone());
    }
    match array.data_type() {
        D::FixedSizeBinary(16) if uuid => Ok(uuid_strings(array)),
        D::Interval(IntervalUnit::MonthDayNano) => Ok(interval_struct(array)),
        D::Time32(_) => arrow_cast::cast(&arrow_cast::cast(array, &D::Int32)?, &D::Int64),
        D::List(_) | D::LargeList(_) | D::FixedSizeList(..) => list_to_delta(array, uuid),
        D::Struct(_) => {
            let s = array.as_struct();
            let (fields, cols, nulls) = s.clone().into_parts();
            let mut out_fields = Vec::with_capacity(fields.len());
            let mut out_cols = Vec::with_capacity(cols.len());
            for (f, c) in fields.iter().zip(cols.iter()) {
                let u = is_uuid(f);
                let conv = to_delta(c, u)?;
                out_fields.push(Field::new(f.name(), conv.data_type().clone(), true));
                out_cols.push(conv);
            }
            Ok(Arc::new(StructArray::try_new(
                out_fields.into(),
                out_cols,
                nulls,
            )?))
        }
        D::Dictionary(..) => {
            let plain = arrow_cast::cast(array, &dictionary_value_type(array.data_type()))?;
            to_delta(&plain, uuid)
        }
        _ => {
            let opts = arrow_cast::CastOptions {
                safe: false,
                ..Default::default()
            };
            arrow_cast::cast_with_options(array, &target, &opts)
        }
    }
}

fn dictionary_value_type(dt: &DataType) -> DataType {
    match dt {
        DataType::Dictionary(_, v) => v.as_ref().clone(),
        other => other.clone(),
    }
}

fn list_to_delta(array: &ArrayRef, uuid: bool) -> Result<ArrayRef, ArrowError> {
    let (field, offsets, values, nulls) = match array.data_type() {
        DataType::List(_) => {
            let l = array.as_list::<i32>();
            (
                list_field(array.data_type()),
                l.offsets().clone(),
                l.values().clone(),
                l.nulls().cloned(),
            )
        }
        DataType::LargeList(_) => {
            let l = array.as_list::<i64>();
            let offsets: Vec<i32> = l
                .offsets()
                .iter()
                .map(|o| i32::try_from(*o))
                .collect::<Result<_, _>>()
                .map_err(|_| ArrowError::CastError("list longer than 2^31 values".into()))?;
            (
                list_field(array.data_type()),
                OffsetBuffer::new(offsets.into()),
                l.values().clone(),
                l.nulls().cloned(),
            )
        }
        _ => {
            let l: &FixedSizeListArray = array.as_fixed_size_list();
            let n = l.value_length() as usize;
            (
                list_field(array.data_type()),
                OffsetBuffer::from_lengths(std::iter::repeat_n(n, l.len())),
                l.values().clone(),
                l.nulls().cloned(),
            )
        }
    };
    let elem_uuid = uuid || field.as_ref().is_some_and(|f| is_uuid(f));
    let values = to_delta(&values, elem_uuid)?;
    let name = field
        .map(|f| f.name().clone())
        .unwrap_or_else(|| "item".into());
    let f = Arc::new(Field::new(name, values.data_type().clone(), true));
    Ok(Arc::new(ListArray::try_new(f, offsets, values, nulls)?))
}

fn list_field(dt: &DataType) -> Option<FieldRef> {
    match dt {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            Some(f.clone())
        }
        _ => None,
    }
}

fn uuid_strings(array: &ArrayRef) -> ArrayRef {
    let a = array.as_fixed_size_binary();
    let mut b = StringBuilder::with_capacity(a.len(), a.len() * 36);
    let mut buf = String::with_capacity(36);
    for i in 0..a.len() {
        if a.is_null(i) {
            b.append_null();
            continue;
        }
        buf.clear();
        for (j, byte) in a.value(i).iter().enumerate() {
            if matches!(j, 4 | 6 | 8 | 10) {
                buf.push('-');
            }
            buf.push_str(&format!("{byte:02x}"));
        }
        b.append_value(&buf);
    }
    Arc::new(b.finish())
}

fn interval_struct(array: &ArrayRef) -> ArrayRef {
    let a = array.as_primitive::<IntervalMonthDayNanoType>();
    let months: Int32Array = a.iter().map(|v| v.map(|v| v.months)).collect();
    let days: Int32Array = a.iter().map(|v| v.map(|v| v.days)).collect();
    let nanos: Int64Array = a.iter().map(|v| v.map(|v| v.nanoseconds)).collect();
    Arc::new(StructArray::new(
        interval_fields(),
        vec![Arc::new(months), Arc::new(days), Arc::new(nanos)],
        a.nulls().cloned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::types::IntervalMonthDayNano;
    use arrow_array::{
        Decimal256Array, FixedSizeBinaryArray, IntervalMonthDayNanoArray, StringArray,
        Time64MicrosecondArray, UInt64Array,
    };
    use arrow_buffer::i256;

    #[test]
    fn unsigned_widen_exactly() {
        let a: ArrayRef = Arc::new(UInt64Array::from(vec![Some(u64::MAX), None, Some(0)]));
        let d = to_delta(&a, false).unwrap();
        assert_eq!(d.data_type(), &DataType::Decimal128(20, 0));
        let d = d.as_primitive::<arrow_array::types::Decimal128Type>();
        assert_eq!(d.value(0), u64::MAX as i128);
        assert!(d.is_null(1));
    }

    #[test]
    fn uuid_interval_time_decimal256() {
        let u: ArrayRef = Arc::new(
            FixedSizeBinaryArray::try_from_iter(
                [[
                    0x12u8, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 1, 2, 3, 4, 5, 6, 7, 8,
                ]]
                .into_iter(),
            )
            .unwrap(),
        );
        let s = to_delta(&u, true).unwrap();
        assert_eq!(
            s.as_string::<i32>().value(0),
            "12345678-9abc-def0-0102-030405060708"
        );
        let i: ArrayRef = Arc::new(IntervalMonthDayNanoArray::from(vec![
            Some(IntervalMonthDayNano::new(14, -3, 5_000)),
            None,
        ]));
        let s = to_delta(&i, false).unwrap();
        let st = s.as_struct();
        assert_eq!(
            st.column(0)
                .as_primitive::<arrow_array::types::Int32Type>()
                .value(0),
            14
        );
        assert_eq!(
            st.column(1)
                .as_primitive::<arrow_array::types::Int32Type>()
                .value(0),
            -3
        );
        assert_eq!(
            st.column(2)
                .as_primitive::<arrow_array::types::Int64Type>()
                .value(0),
            5_000
        );
        assert!(st.is_null(1));
        let t: ArrayRef = Arc::new(Time64MicrosecondArray::from(vec![86_400_000_000]));
        let s = to_delta(&t, false).unwrap();
        assert_eq!(
            s.as_primitive::<arrow_array::types::Int64Type>().value(0),
            86_400_000_000
        );
        let d: ArrayRef = Arc::new(
            Decimal256Array::from(vec![i256::from_i128(-12345)])
                .with_precision_and_scale(50, 2)
                .unwrap(),
        );
        let s = to_delta(&d, false).unwrap();
        let s: &StringArray = s.as_string::<i32>();
        assert_eq!(s.value(0), "-123.45");
    }

    #[test]
    fn nanosecond_timestamps_are_refused() {
        assert!(delta_type(&DataType::Timestamp(TimeUnit::Nanosecond, None), false).is_err());
        assert_eq!(
            delta_type(
                &DataType::Timestamp(TimeUnit::Millisecond, Some("+02:00".into())),
                false
            )
            .unwrap(),
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
    }
}
