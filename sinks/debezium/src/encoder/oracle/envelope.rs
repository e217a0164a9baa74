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
use serde_json::{json, Map, Value};
use tidemark_model::{ChangeBatch, Image, MarkerKind, Position, TableSchema};

use super::codec::base64;
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

/// The `source` block in Debezium 3.6's field order.
pub fn source_block(opts: &EncoderOptions, s: &SourceInfo<'_>) -> Value {
    let seq = format!(
        "[{},{}]",
        s.last_commit_lsn
            .map_or("null".to_owned(), |l| format!("\"{l}\"")),
        s.lsn.map_or("null".to_owned(), |l| format!("\"{l}\""))
    );
    let ts_us = s.commit_ts_us.unwrap_or(0);
    let mut m = Map::new();
    m.insert("version".into(), Value::from(crate::DEBEZIUM_VERSION));
    m.insert("connector".into(), Value::from(opts.connector.name()));
    m.insert("name".into(), Value::from(opts.server_name.as_str()));
    m.insert("ts_ms".into(), Value::from(ts_us.div_euclid(1000)));
    m.insert("snapshot".into(), Value::from(s.snapshot));
    m.insert("db".into(), Value::from(opts.database.as_str()));
    m.insert("sequence".into(), Value::from(seq));
    m.insert("ts_us".into(), Value::from(ts_us));
    m.insert("ts_ns".into(), Value::from(ts_us.saturating_mul(1000)));
    m.insert("schema".into(), Value::from(s.schema));
    m.insert("table".into(), Value::from(s.table));
    m.insert("txId".into(), s.xid.map_or(Value::Null, Value::from));
    m.insert("lsn".into(), s.lsn.map_or(Value::Null, Value::from));
    m.insert("xmin".into(), Value::Null);
    m.insert("origin".into(), Value::Null);
    m.insert("origin_lsn".into(), Value::Null);
    Value::Object(m)
}

/// Debezium's fallback for a null in a non-optional field (`JdbcValueConverters`).
fn fallback(conv: &Conv, opts: &EncoderOptions) -> Value {
    let zero_decimal = |scale: i64| match opts.decimal_handling_mode {
        DecimalHandling::Precise => Value::from(base64(&[0])),
        DecimalHandling::String => Value::from(super::codec::plain_string(false, b"", scale)),
        DecimalHandling::Double => json!(0.0),
    };
    match conv {
        Conv::Bool | Conv::Bits { boolean: true } => Value::from(false),
        Conv::Int | Conv::Date | Conv::Time(_) | Conv::Timestamp(_) | Conv::Interval => {
            Value::from(0)
        }
        Conv::Float32 | Conv::Float64 => json!(0.0),
        Conv::Decimal { scale } => zero_decimal(*scale),
        Conv::Money => zero_decimal(2),
        Conv::NumericText { scale: Some(s) } => zero_decimal(*s),
        Conv::NumericText { scale: None } => match opts.decimal_handling_mode {
            DecimalHandling::Precise => json!({"scale": 0, "value": base64(&[0])}),
            _ => zero_decimal(0),
        },
        Conv::TimestampTz(w) => Value::from(super::codec::iso_timestamp_utc(0, *w)),
        Conv::TimeTz => Value::from("00:00:00Z"),
        Conv::List(_) => Value::Array(Vec::new()),
        Conv::Omit | Conv::Name | Conv::Point => Value::Null,
        Conv::Text | Conv::Bytes | Conv::Uuid | Conv::Bits { .. } => Value::from(""),
        Conv::Mysql(c) => super::mysql::fallback(c),
    }
}

/// Converts one image of one row to its JSON object (`None` when the image is null).
pub fn image(
    batch: &ChangeBatch,
    plan: &TablePlan,
    row: usize,
    which: Image,
    opts: &EncoderOptions,
    key_only: bool,
) -> Result<Option<Value>, EncodeError> {
    let arr: &StructArray = batch.image(which);
    if arr.is_null(row) {
        return Ok(None);
    }
    let markers = if batch.has_markers(row) {
        batch.markers(row)
    } else {
        Vec::new()
    };
    let table: &TableSchema = &batch.schema;
    let mut out = Map::new();
    for (idx, (col, conv)) in table.columns.iter().zip(&plan.convs).enumerate() {
        if *conv == Conv::Omit || (key_only && !col.key) {
            continue;
        }
        let child = arr.columns().get(idx).ok_or_else(|| EncodeError::Value {
            table: table.table.to_string(),
            column: col.name.clone(),
            source_type: col.source_type.display.clone(),
            reason: "image struct has fewer columns than the table".into(),
        })?;
        let marker = markers
            .iter()
            .find(|m| m.image == which && m.column as usize == idx);
        let err = |reason: String| EncodeError::Value {
            table: table.table.to_string(),
            column: col.name.clone(),
            source_type: col.source_type.display.clone(),
            reason,
        };
        let v = match marker.map(|m| (m.kind, m.detail.as_deref())) {
            Some((MarkerKind::Unchanged, _)) => {
                values::unavailable(conv, &col.source_type, &opts.unavailable_value_placeholder)
            }
            Some((MarkerKind::ArrayDims, detail)) => {
                let flat = values::value(conv, child.as_ref(), row, opts).map_err(err)?;
                values::array_dims(flat, detail.unwrap_or(""), opts.lossless)
            }
            Some((kind, detail)) => match conv {
                Conv::Mysql(c) => {
                    super::mysql::marked(c, kind, detail, child.as_ref(), row, opts).map_err(err)?
                }
                // A special numeric inside an array: the slot is null, detail is the text.
                Conv::List(_) if opts.lossless => detail.map_or(Value::Null, Value::from),
                Conv::List(_) => Value::Null,
                _ => values::special_numeric(kind, opts),
            },
            None => {
                let v = values::value(conv, child.as_ref(), row, opts).map_err(err)?;
                // Lossless: a value the server did not send stays null (changed with the writer).
                if v.is_null() && !col.nullable && !opts.lossless && child.is_null(row) {
                    fallback(conv, opts)
                } else {
                    v
                }
            }
        };
        out.insert(col.name.clone(), v);
    }
    Ok(Some(Value::Object(out)))
}

/// The envelope of one change event.
pub fn envelope(
    before: Option<Value>,
    after: Option<Value>,
    source: Value,
    op: &str,
    now_ns: i128,
) -> Value {
    let mut m = Map::new();
    m.insert("before".into(), before.unwrap_or(Value::Null));
    m.insert("after".into(), after.unwrap_or(Value::Null));
    m.insert("source".into(), source);
    m.insert("transaction".into(), Value::Null);
    m.insert("op".into(), Value::from(op));
    insert_now(&mut m, now_ns);
    Value::Object(m)
}

/// `ts_ms`, `ts_us`, `ts_ns` of processing time.
pub fn insert_now(m: &mut Map<String, Value>, now_ns: i128) {
    let ns = i64::try_from(now_ns).unwrap_or(i64::MAX);
    m.insert("ts_ms".into(), Value::from(ns.div_euclid(1_000_000)));
    m.insert("ts_us".into(), Value::from(ns.div_euclid(1000)));
    m.insert("ts_ns".into(), Value::from(ns));
}

/// The position of row `row`'s event and its LSN.
pub fn row_lsn(batch: &ChangeBatch, row: usize) -> (Position, Option<u64>) {
    let p = batch.position(row);
    let lsn = p.as_pg().map(|p| p.lsn.0);
    (p, lsn)
}
