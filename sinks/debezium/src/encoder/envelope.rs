//! Rows → Debezium records: the envelope, the `source` block, keys, tombstones and the
//! primary-key-change sequence.
//!
//! # Traps
//! - `source.sequence` is `["<end LSN of the previous transaction>","<event LSN>"]`, decimal
//!   strings; the first element is `null` until a transaction has been seen (Debezium restores
//!   it from its offsets; [`crate::DebeziumEncoder::set_last_commit_lsn`] does the same).
//! - An UPDATE whose old image carries different key values changed the primary key: Debezium
//!   emits a delete under the old key (header `__debezium.newkey`), a tombstone, and a create
//!   under the new key (header `__debezium.oldkey`).
//! - A NOT NULL column that is null without a marker (non-key columns of a key-only old image)
//!   gets Debezium's fallback value (`0`, `""`, ...), as `convertValue` does for non-optional
//!   fields; lossless mode writes `null` (the value was not sent, so `0` would be made up).

use arrow_array::cast::AsArray;
use arrow_array::{
    Array, ArrayRef, BooleanArray, Decimal128Array, Int16Array, Int32Array, Int64Array, Int8Array,
    StringArray, StructArray, TimestampMicrosecondArray, UInt16Array, UInt32Array, UInt8Array,
};
use arrow_buffer::NullBuffer;
use arrow_schema::DataType;
use tidemark_model::{ChangeBatch, Column, Image, Marker, MarkerKind, TableSchema};

use super::codec::{plain_string, write_iso_timestamp_utc};
use super::json;
use super::mysql::MyConv;
use super::values::{self, Conv};
use super::{EncodeError, TablePlan};
use crate::config::{DecimalHandling, EncoderOptions};

/// What the `source` block of one event needs.
pub struct SourceInfo<'a> {
    pub schema: &'a str,
    pub table: &'a str,
    pub commit_ts_us: Option<i64>,
    pub snapshot: &'a str,
    pub last_commit_lsn: Option<u64>,
    pub lsn: Option<u64>,
    pub xid: Option<u64>,
}

/// The Postgres `source` block in Debezium 3.6's field order.
pub fn write_source_block(out: &mut Vec<u8>, opts: &EncoderOptions, s: &SourceInfo<'_>) {
    let ts_us = s.commit_ts_us.unwrap_or(0);
    out.extend_from_slice(b"{\"version\":");
    json::plain_str(out, crate::DEBEZIUM_VERSION);
    out.extend_from_slice(b",\"connector\":");
    json::str(out, opts.connector.name());
    out.extend_from_slice(b",\"name\":");
    json::str(out, &opts.server_name);
    out.extend_from_slice(b",\"ts_ms\":");
    json::i64(out, ts_us.div_euclid(1000));
    out.extend_from_slice(b",\"snapshot\":");
    json::str(out, s.snapshot);
    out.extend_from_slice(b",\"db\":");
    json::str(out, &opts.database);
    // `sequence` is a string holding a JSON array: `"[\"<last>\",\"<lsn>\"]"`.
    out.extend_from_slice(b",\"sequence\":\"[");
    for (k, l) in [s.last_commit_lsn, s.lsn].into_iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        match l {
            Some(l) => {
                out.extend_from_slice(b"\\\"");
                json::u64(out, l);
                out.extend_from_slice(b"\\\"");
            }
            None => json::null(out),
        }
    }
    out.extend_from_slice(b"]\",\"ts_us\":");
    json::i64(out, ts_us);
    out.extend_from_slice(b",\"ts_ns\":");
    json::i64(out, ts_us.saturating_mul(1000));
    out.extend_from_slice(b",\"schema\":");
    json::str(out, s.schema);
    out.extend_from_slice(b",\"table\":");
    json::str(out, s.table);
    out.extend_from_slice(b",\"txId\":");
    json::opt_u64(out, s.xid);
    out.extend_from_slice(b",\"lsn\":");
    json::opt_u64(out, s.lsn);
    out.extend_from_slice(b",\"xmin\":null,\"origin\":null,\"origin_lsn\":null}");
}

/// Debezium's fallback for a null in a non-optional field (`JdbcValueConverters`).
fn write_fallback(out: &mut Vec<u8>, conv: &Conv, opts: &EncoderOptions) {
    let zero_decimal = |out: &mut Vec<u8>, scale: i64| match opts.decimal_handling_mode {
        // base64 of the single zero byte of a Connect Decimal 0.
        DecimalHandling::Precise => out.extend_from_slice(b"\"AA==\""),
        DecimalHandling::String => json::plain_str(out, &plain_string(false, b"", scale)),
        DecimalHandling::Double => out.extend_from_slice(b"0.0"),
    };
    match conv {
        Conv::Bool | Conv::Bits { boolean: true } => json::bool(out, false),
        Conv::Int | Conv::Date | Conv::Time(_) | Conv::Timestamp(_) | Conv::Interval => {
            out.push(b'0')
        }
        Conv::Float32 | Conv::Float64 => out.extend_from_slice(b"0.0"),
        Conv::Decimal { scale } => zero_decimal(out, *scale),
        Conv::Money => zero_decimal(out, 2),
        Conv::NumericText { scale: Some(s) } => zero_decimal(out, *s),
        Conv::NumericText { scale: None } => match opts.decimal_handling_mode {
            DecimalHandling::Precise => out.extend_from_slice(b"{\"scale\":0,\"value\":\"AA==\"}"),
            _ => zero_decimal(out, 0),
        },
        Conv::TimestampTz(w) => super::codec::write_iso_timestamp_utc(out, 0, *w),
        Conv::TimeTz => out.extend_from_slice(b"\"00:00:00Z\""),
        Conv::List(_) => out.extend_from_slice(b"[]"),
        Conv::Omit | Conv::Name | Conv::Point => json::null(out),
        Conv::Text | Conv::Bytes | Conv::Uuid | Conv::Bits { .. } => out.extend_from_slice(b"\"\""),
        Conv::Mysql(c) => super::mysql::write_fallback(out, c),
    }
}

/// A column's values with the conversion resolved to a concrete Arrow array, once per batch:
/// the common (conversion, Arrow type) pairs of the snapshot and change paths. A row's value
/// is then written without the per-value dynamic downcasts and type dispatch of
/// [`values::write`]; every other pair is `Generic` and goes through it. Each variant writes
/// exactly what [`values::write`] writes for its pair (`differential.rs` checks the bytes).
#[derive(Clone, Copy)]
enum Fast<'a> {
    Generic,
    I8(&'a Int8Array),
    I16(&'a Int16Array),
    I32(&'a Int32Array),
    I64(&'a Int64Array),
    U8(&'a UInt8Array),
    U16(&'a UInt16Array),
    U32(&'a UInt32Array),
    Bool(&'a BooleanArray),
    Str(&'a StringArray),
    /// A MySQL `TIMESTAMP(fsp)`: ISO-8601 UTC with `fsp` fraction digits.
    IsoTimestamp(&'a TimestampMicrosecondArray, u32),
    /// A decimal as Connect `Decimal` bytes (`decimal.handling.mode=precise`).
    DecimalBytes(&'a Decimal128Array),
}

impl<'a> Fast<'a> {
    fn of(conv: &Conv, arr: &'a dyn Array, opts: &EncoderOptions) -> Fast<'a> {
        let precise = opts.decimal_handling_mode == DecimalHandling::Precise;
        let int = || match arr.data_type() {
            DataType::Int8 => arr.as_primitive_opt().map(Fast::I8),
            DataType::Int16 => arr.as_primitive_opt().map(Fast::I16),
            DataType::Int32 => arr.as_primitive_opt().map(Fast::I32),
            DataType::Int64 => arr.as_primitive_opt().map(Fast::I64),
            DataType::UInt8 => arr.as_primitive_opt().map(Fast::U8),
            DataType::UInt16 => arr.as_primitive_opt().map(Fast::U16),
            DataType::UInt32 => arr.as_primitive_opt().map(Fast::U32),
            _ => None,
        };
        let fast = match (conv, arr.data_type()) {
            (Conv::Mysql(MyConv::Int), _) => int(),
            (Conv::Int, DataType::Int16 | DataType::Int32 | DataType::Int64 | DataType::UInt32) => {
                int()
            }
            (Conv::Mysql(MyConv::Bool) | Conv::Bool, DataType::Boolean) => {
                arr.as_boolean_opt().map(Fast::Bool)
            }
            (Conv::Mysql(MyConv::Text) | Conv::Text, DataType::Utf8) => {
                arr.as_string_opt().map(Fast::Str)
            }
            (Conv::Mysql(MyConv::Timestamp { fsp }), DataType::Timestamp(_, _)) => arr
                .as_primitive_opt()
                .map(|a| Fast::IsoTimestamp(a, u32::from(*fsp))),
            (
                Conv::Mysql(MyConv::Decimal { .. }) | Conv::Decimal { .. } | Conv::Money,
                DataType::Decimal128(_, _),
            ) if precise => arr.as_primitive_opt().map(Fast::DecimalBytes),
            _ => None,
        };
        fast.unwrap_or(Fast::Generic)
    }

    /// Writes the non-null slot `i` (in range); not for `Generic`.
    #[inline]
    fn write(self, out: &mut Vec<u8>, i: usize) {
        match self {
            Fast::Generic => {}
            Fast::I8(a) => json::i64(out, a.value(i).into()),
            Fast::I16(a) => json::i64(out, a.value(i).into()),
            Fast::I32(a) => json::i64(out, a.value(i).into()),
            Fast::I64(a) => json::i64(out, a.value(i)),
            Fast::U8(a) => json::i64(out, a.value(i).into()),
            Fast::U16(a) => json::i64(out, a.value(i).into()),
            Fast::U32(a) => json::i64(out, a.value(i).into()),
            Fast::Bool(a) => json::bool(out, a.value(i)),
            Fast::Str(a) => json::str(out, a.value(i)),
            Fast::IsoTimestamp(a, fsp) => write_iso_timestamp_utc(out, a.value(i), fsp),
            Fast::DecimalBytes(a) => json::decimal_bytes(out, a.value(i)),
        }
    }
}

/// One column of an image, resolved once per batch.
#[derive(Clone, Copy)]
struct ImageColumn<'a> {
    idx: usize,
    col: &'a Column,
    conv: &'a Conv,
    /// `"<column>":`, escaped once per plan.
    field: &'a [u8],
    /// `None` when the image struct has fewer columns than the table (an error when reached).
    child: Option<&'a ArrayRef>,
    fast: Fast<'a>,
    /// The child's length and validity, for `fast` columns.
    len: usize,
    nulls: Option<&'a NullBuffer>,
}

/// One image (`before` or `after`) of a batch, its columns resolved once per batch for
/// [`write_image`]: the written columns (not [`Conv::Omit`]) and the key columns of them.
pub struct ImageColumns<'a> {
    which: Image,
    arr: &'a StructArray,
    table: &'a TableSchema,
    columns: Vec<ImageColumn<'a>>,
    key_columns: Vec<ImageColumn<'a>>,
}

impl<'a> ImageColumns<'a> {
    pub fn new(
        batch: &'a ChangeBatch,
        plan: &'a TablePlan,
        which: Image,
        opts: &EncoderOptions,
    ) -> Self {
        let arr: &StructArray = batch.image(which);
        let table: &TableSchema = &batch.schema;
        let children = arr.columns();
        let columns: Vec<ImageColumn<'a>> = table
            .columns
            .iter()
            .zip(&plan.convs)
            .zip(&plan.field_keys)
            .enumerate()
            .filter(|(_, ((_, conv), _))| **conv != Conv::Omit)
            .map(|(idx, ((col, conv), field))| {
                let child = children.get(idx);
                ImageColumn {
                    idx,
                    col,
                    conv,
                    field,
                    child,
                    fast: child.map_or(Fast::Generic, |c| Fast::of(conv, c.as_ref(), opts)),
                    len: child.map_or(0, |c| c.len()),
                    nulls: child.and_then(|c| c.nulls()),
                }
            })
            .collect();
        let key_columns = columns.iter().filter(|c| c.col.key).copied().collect();
        ImageColumns {
            which,
            arr,
            table,
            columns,
            key_columns,
        }
    }
}

/// Writes one image of one row as a JSON object; `false` (nothing written) when the image is
/// null. `markers` are the row's markers (empty when it has none). On an error the buffer
/// holds a partial object: the caller drops the record.
pub fn write_image(
    out: &mut Vec<u8>,
    image: &ImageColumns<'_>,
    row: usize,
    opts: &EncoderOptions,
    key_only: bool,
    markers: &[Marker],
) -> Result<bool, EncodeError> {
    if image.arr.is_null(row) {
        return Ok(false);
    }
    let (table, which) = (image.table, image.which);
    let columns = if key_only {
        &image.key_columns
    } else {
        &image.columns
    };
    out.push(b'{');
    let mut first = true;
    for c in columns {
        let (idx, col, conv) = (c.idx, c.col, c.conv);
        let err = |reason: String| EncodeError::Value {
            table: table.table.to_string(),
            column: col.name.clone(),
            source_type: col.source_type.display.clone(),
            reason,
        };
        let Some(child) = c.child else {
            return Err(err("image struct has fewer columns than the table".into()));
        };
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(c.field);
        let marker = if markers.is_empty() {
            None
        } else {
            markers
                .iter()
                .find(|m| m.image == which && m.column as usize == idx)
        };
        match marker.map(|m| (m.kind, m.detail.as_deref())) {
            None if !matches!(c.fast, Fast::Generic) => {
                if row >= c.len {
                    return Err(err(format!("row {row} out of range")));
                }
                if c.nulls.is_some_and(|n| n.is_null(row)) {
                    if col.nullable || opts.lossless {
                        json::null(out);
                    } else {
                        write_fallback(out, conv, opts);
                    }
                } else {
                    c.fast.write(out, row);
                }
            }
            Some((MarkerKind::Unchanged, _)) => values::write_unavailable(
                out,
                conv,
                &col.source_type,
                &opts.unavailable_value_placeholder,
            ),
            Some((MarkerKind::ArrayDims, detail)) => {
                let start = out.len();
                values::write(out, conv, child.as_ref(), row, opts).map_err(err)?;
                let flat = out.split_off(start);
                values::write_array_dims(out, &flat, detail.unwrap_or(""), opts.lossless);
            }
            Some((kind, detail)) => match conv {
                Conv::Mysql(c) => {
                    super::mysql::write_marked(out, c, kind, detail, child.as_ref(), row, opts)
                        .map_err(err)?
                }
                // A special numeric inside an array: the slot is null, detail is the text.
                Conv::List(_) if opts.lossless => match detail {
                    Some(d) => json::str(out, d),
                    None => json::null(out),
                },
                Conv::List(_) => json::null(out),
                _ => values::write_special_numeric(out, kind, opts),
            },
            None => {
                let start = out.len();
                values::write(out, conv, child.as_ref(), row, opts).map_err(err)?;
                if !col.nullable && !opts.lossless && &out[start..] == b"null" && child.is_null(row)
                {
                    out.truncate(start);
                    write_fallback(out, conv, opts);
                }
            }
        }
    }
    out.push(b'}');
    Ok(true)
}

/// `,"ts_ms":..,"ts_us":..,"ts_ns":..` of processing time.
pub fn write_now(out: &mut Vec<u8>, now_ns: i128) {
    let ns = i64::try_from(now_ns).unwrap_or(i64::MAX);
    // After 1970-01-01 00:00:01 the three are prefixes of the nanoseconds' digits: formatted
    // once (the encoder writes this for every record).
    if ns >= 1_000_000_000 {
        let mut digits = itoa::Buffer::new();
        let d = digits.format(ns).as_bytes();
        // 19 digits (2001-09-09 to 2286): one fixed template, appended with one copy.
        if let Ok(d) = <&[u8; 19]>::try_from(d) {
            let mut b = *b",\"ts_ms\":0000000000000,\"ts_us\":0000000000000000,\"ts_ns\":0000000000000000000";
            b[9..22].copy_from_slice(&d[..13]);
            b[31..47].copy_from_slice(&d[..16]);
            b[56..75].copy_from_slice(d);
            out.extend_from_slice(&b);
            return;
        }
        out.extend_from_slice(b",\"ts_ms\":");
        out.extend_from_slice(&d[..d.len() - 6]);
        out.extend_from_slice(b",\"ts_us\":");
        out.extend_from_slice(&d[..d.len() - 3]);
        out.extend_from_slice(b",\"ts_ns\":");
        out.extend_from_slice(d);
        return;
    }
    out.extend_from_slice(b",\"ts_ms\":");
    json::i64(out, ns.div_euclid(1_000_000));
    out.extend_from_slice(b",\"ts_us\":");
    json::i64(out, ns.div_euclid(1000));
    out.extend_from_slice(b",\"ts_ns\":");
    json::i64(out, ns);
}

#[cfg(test)]
mod tests {
    /// The digits' prefixes equal the three divisions, and the short path takes over below it.
    #[test]
    fn write_now_matches_the_divisions() {
        for ns in [
            0i128,
            5,
            999_999_999,
            1_000_000_000,
            1_764_633_600_123_456_789,
            1_000_000_000_000_000_000,
            999_999_999_999_999_999,
            8_999_999_999_999_999_999,
            -1_500_000,
            i128::from(i64::MAX),
            i128::MAX,
        ] {
            let mut out = Vec::new();
            super::write_now(&mut out, ns);
            let n = i64::try_from(ns).unwrap_or(i64::MAX);
            let want = format!(
                ",\"ts_ms\":{},\"ts_us\":{},\"ts_ns\":{}",
                n.div_euclid(1_000_000),
                n.div_euclid(1000),
                n
            );
            assert_eq!(String::from_utf8(out).unwrap(), want, "{ns}");
        }
    }
}
