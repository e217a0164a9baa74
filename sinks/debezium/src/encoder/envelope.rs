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
//!   fields.

use arrow_array::{Array, StructArray};
use tidemark_model::{ChangeBatch, Image, Marker, MarkerKind, Position, TableSchema};

use super::codec::plain_string;
use super::json;
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

/// Writes one image of one row as a JSON object; `false` (nothing written) when the image is
/// null. `markers` are the row's markers (empty when it has none). On an error the buffer
/// holds a partial object: the caller drops the record.
#[allow(clippy::too_many_arguments)]
pub fn write_image(
    out: &mut Vec<u8>,
    batch: &ChangeBatch,
    plan: &TablePlan,
    row: usize,
    which: Image,
    opts: &EncoderOptions,
    key_only: bool,
    markers: &[Marker],
) -> Result<bool, EncodeError> {
    let arr: &StructArray = batch.image(which);
    if arr.is_null(row) {
        return Ok(false);
    }
    let table: &TableSchema = &batch.schema;
    let children = arr.columns();
    out.push(b'{');
    let mut first = true;
    for (idx, ((col, conv), field)) in table
        .columns
        .iter()
        .zip(&plan.convs)
        .zip(&plan.field_keys)
        .enumerate()
    {
        if *conv == Conv::Omit || (key_only && !col.key) {
            continue;
        }
        let child = children.get(idx).ok_or_else(|| EncodeError::Value {
            table: table.table.to_string(),
            column: col.name.clone(),
            source_type: col.source_type.display.clone(),
            reason: "image struct has fewer columns than the table".into(),
        })?;
        if !first {
            out.push(b',');
        }
        first = false;
        // `"<column>":`, escaped once per plan.
        out.extend_from_slice(field);
        let err = |reason: String| EncodeError::Value {
            table: table.table.to_string(),
            column: col.name.clone(),
            source_type: col.source_type.display.clone(),
            reason,
        };
        let marker = markers
            .iter()
            .find(|m| m.image == which && m.column as usize == idx);
        match marker.map(|m| (m.kind, m.detail.as_deref())) {
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
                if !col.nullable && &out[start..] == b"null" && child.is_null(row) {
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

/// The position of row `row`'s event and its LSN.
pub fn row_lsn(batch: &ChangeBatch, row: usize) -> (Position, Option<u64>) {
    let p = batch.position(row);
    let lsn = p.as_pg().map(|p| p.lsn.0);
    (p, lsn)
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
