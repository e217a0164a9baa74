//! MySQL/MariaDB columns and `source` block, following Debezium's MySQL and MariaDB connectors
//! (`MySqlValueConverters` / `BinlogValueConverters`) as observed in the Debezium 3.6 MariaDB
//! connector captures (`tests/fixtures/debezium/mariadb/`).
//!
//! # Traps (all observed in the captures)
//! - `BIGINT UNSIGNED` is a Java `long` by default (`bigint.unsigned.handling.mode=long`):
//!   values above 2^63−1 wrap negative (`18446744073709551615` → `-1`). `precise` gives a
//!   Connect `Decimal`; lossless mode the exact number.
//! - Zero and invalid dates (`0000-00-00`, `2020-00-15`) become `null`; lossless mode writes
//!   MySQL's text. `YEAR` `0000` becomes `1900` (the binlog client adds 1900 to the stored byte);
//!   lossless keeps 0.
//! - `BIT(1)` is a boolean; `BIT(n)` bytes, *little-endian* (`b'1000000001'` → `AQI=`).
//! - `DATETIME(0..3)` is epoch milliseconds (`io.debezium.time.Timestamp`), `DATETIME(4..6)`
//!   microseconds, with no zone shift; `TIMESTAMP` an ISO-8601 UTC string; `TIME` always
//!   microseconds (`adaptive_time_microseconds` is the connectors' default). With
//!   `time.precision.mode=connect` a TIME outside 00:00..24:00 (negative, > 24 h) is `null`.
//! - `bigint.unsigned.handling.mode=precise` is Connect `Decimal` bytes even with
//!   `decimal.handling.mode=string`.
//! - Geometry is `{"wkb", "srid"}`, POINT `{"x", "y", "wkb", "srid"}`; SRID 0 is `null`.
//! - `source.pos` is the offset of the rows event, `source.row` the row inside it,
//!   `source.gtid` the transaction's GTID.
//! - `source.thread` is the thread id of the transaction's `BEGIN` query event, whatever
//!   `include.query` says (Debezium's `handleTransactionBegin`); MariaDB starts transactions with
//!   a GTID event instead, so it is null there. `source.query` is the ROWS_QUERY /
//!   ANNOTATE_ROWS statement when the source keeps it (`include_query = true`), else null; both
//!   come from the batch metadata the binlog decoder sets (`tidemark_binlog::meta`).

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, RecordBatch};
use arrow_buffer::i256;
use arrow_schema::DataType;
use serde_json::{json, Map, Value};
use tidemark_model::mysql_types::{GeometryKind, MysqlType};
use tidemark_model::{MarkerKind, MysqlPosition, SourceType};

use super::codec::{base64, iso_timestamp_utc, minimal_twos_complement, plain_string};
use crate::config::{
    BigintUnsignedHandling, Connector, DecimalHandling, EncoderOptions, TimePrecision,
};

/// The Debezium MariaDB connector version the captures come from.
pub const MARIADB_CONNECTOR_VERSION: &str = "3.6.1.Final";

/// How one MySQL column is converted.
#[derive(Clone, Debug, PartialEq)]
pub enum MyConv {
    Int,
    BigintUnsigned,
    Float32,
    Float64,
    Decimal {
        precision: u8,
        scale: u8,
    },
    Bool,
    /// BIT(n > 1), `bytes` = ceil(n/8).
    Bits {
        bits: u8,
    },
    Year,
    Date,
    Time,
    /// DATETIME; `micros` for fsp > 3.
    DateTime {
        micros: bool,
    },
    /// TIMESTAMP with its fsp.
    Timestamp {
        fsp: u8,
    },
    Text,
    Bytes,
    Geometry {
        point: bool,
    },
}

/// Plans the conversion of a MySQL column.
pub fn plan(t: &SourceType, dt: &DataType, opts: &EncoderOptions) -> MyConv {
    let Some(m) = MysqlType::from_source_type(t) else {
        return MyConv::Text;
    };
    let _ = opts;
    match (&m, dt) {
        (MysqlType::BigInt { unsigned: true }, _) => MyConv::BigintUnsigned,
        (MysqlType::Bit { bits: 1 }, _) => MyConv::Bool,
        (MysqlType::Bit { bits }, _) => MyConv::Bits { bits: *bits },
        (MysqlType::Year, _) => MyConv::Year,
        (MysqlType::Date, _) => MyConv::Date,
        (MysqlType::Time { .. }, _) => MyConv::Time,
        (MysqlType::DateTime { fsp }, _) => MyConv::DateTime { micros: *fsp > 3 },
        (MysqlType::Timestamp { fsp }, _) => MyConv::Timestamp { fsp: *fsp },
        (MysqlType::Decimal { precision, scale }, _) => MyConv::Decimal {
            precision: *precision,
            scale: *scale,
        },
        (MysqlType::Geometry(g), _) => MyConv::Geometry {
            point: *g == GeometryKind::Point,
        },
        (_, DataType::Float32) => MyConv::Float32,
        (_, DataType::Float64) => MyConv::Float64,
        (_, DataType::Binary) => MyConv::Bytes,
        (_, DataType::Utf8) => MyConv::Text,
        _ => MyConv::Int,
    }
}

fn decimal_json(v: i256, scale: u8, mode: DecimalHandling) -> Value {
    let s = v.to_string();
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d.to_owned()),
        None => (false, s),
    };
    let digits = if digits == "0" { String::new() } else { digits };
    match mode {
        DecimalHandling::Precise => {
            let bytes = v.to_be_bytes();
            Value::from(base64(&minimal_twos_complement(&bytes)))
        }
        DecimalHandling::String => {
            Value::from(plain_string(neg, digits.as_bytes(), i64::from(scale)))
        }
        DecimalHandling::Double => plain_string(neg, digits.as_bytes(), i64::from(scale))
            .parse::<f64>()
            .map(Value::from)
            .unwrap_or(Value::Null),
    }
}

fn int_of(arr: &dyn Array, i: usize) -> Option<i128> {
    Some(match arr.data_type() {
        DataType::Int8 => arr.as_primitive::<Int8Type>().value(i).into(),
        DataType::Int16 => arr.as_primitive::<Int16Type>().value(i).into(),
        DataType::Int32 => arr.as_primitive::<Int32Type>().value(i).into(),
        DataType::Int64 => arr.as_primitive::<Int64Type>().value(i).into(),
        DataType::UInt8 => arr.as_primitive::<UInt8Type>().value(i).into(),
        DataType::UInt16 => arr.as_primitive::<UInt16Type>().value(i).into(),
        DataType::UInt32 => arr.as_primitive::<UInt32Type>().value(i).into(),
        DataType::UInt64 => arr.as_primitive::<UInt64Type>().value(i).into(),
        _ => return None,
    })
}

/// WKB POINT → (x, y).
fn point_xy(wkb: &[u8]) -> Option<(f64, f64)> {
    let le = *wkb.first()? == 1;
    let f = |at: usize| -> Option<f64> {
        let b: [u8; 8] = wkb.get(at..at + 8)?.try_into().ok()?;
        Some(if le {
            f64::from_le_bytes(b)
        } else {
            f64::from_be_bytes(b)
        })
    };
    Some((f(5)?, f(13)?))
}

fn geometry(wkb: &[u8], srid: Option<u32>, point: bool) -> Value {
    let srid = srid.filter(|s| *s != 0).map_or(Value::Null, Value::from);
    if point {
        let (x, y) = point_xy(wkb).unwrap_or((0.0, 0.0));
        json!({"x": x, "y": y, "wkb": base64(wkb), "srid": srid})
    } else {
        json!({"wkb": base64(wkb), "srid": srid})
    }
}

/// Converts one non-marked slot.
pub fn value(
    c: &MyConv,
    arr: &dyn Array,
    i: usize,
    opts: &EncoderOptions,
) -> Result<Value, String> {
    if i >= arr.len() {
        return Err(format!("row {i} out of range"));
    }
    if arr.is_null(i) {
        return Ok(Value::Null);
    }
    let bad = || format!("unexpected Arrow type {} for {c:?}", arr.data_type());
    Ok(match c {
        MyConv::Int => Value::from(int_of(arr, i).ok_or_else(bad)? as i64),
        MyConv::BigintUnsigned => {
            let v = int_of(arr, i).ok_or_else(bad)? as u64;
            match (opts.lossless, opts.bigint_unsigned_handling_mode) {
                (true, _) => Value::from(v),
                (false, BigintUnsignedHandling::Long) => Value::from(v as i64),
                // Always Connect Decimal bytes, whatever decimal.handling.mode says (observed).
                (false, BigintUnsignedHandling::Precise) => {
                    decimal_json(i256::from_i128(i128::from(v)), 0, DecimalHandling::Precise)
                }
            }
        }
        MyConv::Float32 => {
            let f = arr.as_primitive::<Float32Type>().value(i);
            f.to_string()
                .parse::<f64>()
                .map(Value::from)
                .unwrap_or(Value::Null)
        }
        MyConv::Float64 => Value::from(arr.as_primitive::<Float64Type>().value(i)),
        MyConv::Decimal { scale, .. } => {
            let v = match arr.data_type() {
                DataType::Decimal128(..) => {
                    i256::from_i128(arr.as_primitive::<Decimal128Type>().value(i))
                }
                DataType::Decimal256(..) => arr.as_primitive::<Decimal256Type>().value(i),
                _ => return Err(bad()),
            };
            decimal_json(v, *scale, opts.decimal_handling_mode)
        }
        MyConv::Bool => Value::from(arr.as_boolean().value(i)),
        MyConv::Bits { bits } => {
            let v = int_of(arr, i).ok_or_else(bad)? as u64;
            let n = usize::from(*bits).div_ceil(8);
            Value::from(base64(&v.to_le_bytes()[..n]))
        }
        MyConv::Year => {
            let y = int_of(arr, i).ok_or_else(bad)? as i64;
            Value::from(if y == 0 && !opts.lossless { 1900 } else { y })
        }
        MyConv::Date => Value::from(arr.as_primitive::<Date32Type>().value(i)),
        MyConv::Time => {
            let us = arr.as_primitive::<DurationMicrosecondType>().value(i);
            match opts.time_precision_mode {
                // Connect's `Time` is a time of day: Debezium writes null outside 00:00..24:00
                // (negative or > 24 h durations, observed); lossless keeps the milliseconds.
                TimePrecision::Connect if !(0..86_400_000_000).contains(&us) && !opts.lossless => {
                    Value::Null
                }
                TimePrecision::Connect => Value::from(us.div_euclid(1000)),
                _ => Value::from(us),
            }
        }
        MyConv::DateTime { micros } => {
            let us = arr.as_primitive::<TimestampMicrosecondType>().value(i);
            if *micros && opts.time_precision_mode != TimePrecision::Connect {
                Value::from(us)
            } else {
                Value::from(us.div_euclid(1000))
            }
        }
        MyConv::Timestamp { fsp } => {
            let us = arr.as_primitive::<TimestampMicrosecondType>().value(i);
            Value::from(iso_timestamp_utc(us, u32::from(*fsp)))
        }
        MyConv::Text => Value::from(arr.as_string::<i32>().value(i)),
        MyConv::Bytes => Value::from(base64(arr.as_binary::<i32>().value(i))),
        MyConv::Geometry { point } => geometry(arr.as_binary::<i32>().value(i), None, *point),
    })
}

/// A slot with a marker: zero dates (`Invalid`) and geometry SRIDs.
pub fn marked(
    c: &MyConv,
    kind: MarkerKind,
    detail: Option<&str>,
    arr: &dyn Array,
    i: usize,
    opts: &EncoderOptions,
) -> Result<Value, String> {
    match (kind, c) {
        (MarkerKind::Srid, MyConv::Geometry { point }) => {
            if arr.is_null(i) {
                return Ok(Value::Null);
            }
            let srid = detail.and_then(|d| d.parse().ok());
            Ok(geometry(arr.as_binary::<i32>().value(i), srid, *point))
        }
        (MarkerKind::Invalid, _) if opts.lossless => Ok(detail.map_or(Value::Null, Value::from)),
        (MarkerKind::Invalid, _) => Ok(Value::Null),
        _ => value(c, arr, i, opts),
    }
}

/// Debezium's value for a null in a NOT NULL column (never reached with FULL images, kept for
/// key-only images).
pub fn fallback(c: &MyConv) -> Value {
    match c {
        MyConv::Bool => Value::from(false),
        MyConv::Float32 | MyConv::Float64 => json!(0.0),
        MyConv::Text | MyConv::Bytes | MyConv::Bits { .. } | MyConv::Timestamp { .. } => {
            Value::from("")
        }
        MyConv::Geometry { .. } => Value::Null,
        MyConv::Decimal { .. } => Value::from(base64(&[0])),
        _ => Value::from(0),
    }
}

/// The connector name: `mysql` or `mariadb` (from the options, else from the GTID flavour).
pub fn connector_name(opts: &EncoderOptions, p: &MysqlPosition) -> &'static str {
    match opts.connector {
        Connector::Mysql => "mysql",
        Connector::Mariadb => "mariadb",
        Connector::Postgres => match p.gtid {
            Some(tidemark_model::Gtid::Mysql { .. }) => "mysql",
            _ => "mariadb",
        },
    }
}

/// Batch metadata written by the binlog decoder (`tidemark_binlog::meta`).
fn meta<'a>(batch: &'a RecordBatch, key: &str) -> Option<&'a str> {
    batch.schema_ref().metadata().get(key).map(String::as_str)
}

/// The MySQL/MariaDB `source` block in Debezium 3.6's field order.
pub fn source_block(
    opts: &EncoderOptions,
    batch: &RecordBatch,
    db: &str,
    table: &str,
    commit_ts_us: Option<i64>,
    snapshot: &str,
    p: &MysqlPosition,
) -> Value {
    let connector = connector_name(opts, p);
    let ts_us = commit_ts_us.unwrap_or(0);
    let mut m = Map::new();
    m.insert(
        "version".into(),
        Value::from(if connector == "mariadb" {
            MARIADB_CONNECTOR_VERSION
        } else {
            crate::DEBEZIUM_VERSION
        }),
    );
    m.insert("connector".into(), Value::from(connector));
    m.insert("name".into(), Value::from(opts.server_name.as_str()));
    m.insert("ts_ms".into(), Value::from(ts_us.div_euclid(1000)));
    m.insert("snapshot".into(), Value::from(snapshot));
    m.insert("db".into(), Value::from(db));
    m.insert("sequence".into(), Value::Null);
    m.insert("ts_us".into(), Value::from(ts_us));
    m.insert("ts_ns".into(), Value::from(ts_us.saturating_mul(1000)));
    m.insert("table".into(), Value::from(table));
    let server_id = meta(batch, "tidemark.mysql.server_id")
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or(0);
    m.insert("server_id".into(), Value::from(server_id));
    m.insert(
        "gtid".into(),
        p.gtid.map_or(Value::Null, |g| Value::from(g.to_string())),
    );
    m.insert(
        "file".into(),
        Value::from(meta(batch, "tidemark.mysql.file").unwrap_or("")),
    );
    m.insert("pos".into(), Value::from(p.event_pos));
    m.insert("row".into(), Value::from(p.row));
    // Thread of the BEGIN query (MySQL), statement of ROWS_QUERY / ANNOTATE_ROWS (include_query).
    m.insert(
        "thread".into(),
        meta(batch, "tidemark.mysql.thread")
            .and_then(|s| s.parse::<i64>().ok())
            .map_or(Value::Null, Value::from),
    );
    m.insert(
        "query".into(),
        meta(batch, "tidemark.mysql.query").map_or(Value::Null, Value::from),
    );
    Value::Object(m)
}

/// The Connect schema of one column's values.
pub fn schema(c: &MyConv, t: &SourceType, optional: bool, opts: &EncoderOptions) -> Value {
    let plain = |ty: &str| json!({"type": ty, "optional": optional});
    let logical = |ty: &str, name: &str| json!({"type": ty, "optional": optional, "name": name, "version": 1});
    let m = MysqlType::from_source_type(t);
    match c {
        MyConv::Int => plain(match m {
            Some(MysqlType::TinyInt { .. }) | Some(MysqlType::SmallInt { unsigned: false }) => {
                "int16"
            }
            Some(MysqlType::SmallInt { unsigned: true })
            | Some(MysqlType::MediumInt { .. })
            | Some(MysqlType::Int { unsigned: false }) => "int32",
            _ => "int64",
        }),
        MyConv::BigintUnsigned => match opts.bigint_unsigned_handling_mode {
            BigintUnsignedHandling::Long => plain("int64"),
            BigintUnsignedHandling::Precise => json!({"type": "bytes", "optional": optional,
                "name": "org.apache.kafka.connect.data.Decimal", "version": 1,
                "parameters": {"scale": "0", "connect.decimal.precision": "20"}}),
        },
        MyConv::Float32 => plain("float"),
        MyConv::Float64 => plain("double"),
        MyConv::Decimal { precision, scale } => match opts.decimal_handling_mode {
            DecimalHandling::Precise => json!({"type": "bytes", "optional": optional,
                "name": "org.apache.kafka.connect.data.Decimal", "version": 1,
                "parameters": {"scale": scale.to_string(), "connect.decimal.precision": precision.to_string()}}),
            DecimalHandling::String => plain("string"),
            DecimalHandling::Double => plain("double"),
        },
        MyConv::Bool => plain("boolean"),
        MyConv::Bits { bits } => {
            json!({"type": "bytes", "optional": optional, "name": "io.debezium.data.Bits",
            "version": 1, "parameters": {"length": bits.to_string()}})
        }
        MyConv::Year => logical("int32", "io.debezium.time.Year"),
        MyConv::Date => logical("int32", "io.debezium.time.Date"),
        MyConv::Time if opts.time_precision_mode == TimePrecision::Connect => {
            json!({"type": "int32",
            "optional": optional, "name": "org.apache.kafka.connect.data.Time", "version": 1})
        }
        MyConv::Time => logical("int64", "io.debezium.time.MicroTime"),
        MyConv::DateTime { micros: true } => logical("int64", "io.debezium.time.MicroTimestamp"),
        MyConv::DateTime { micros: false } => logical("int64", "io.debezium.time.Timestamp"),
        MyConv::Timestamp { .. } => logical("string", "io.debezium.time.ZonedTimestamp"),
        MyConv::Text => match m {
            Some(MysqlType::Json) => logical("string", "io.debezium.data.Json"),
            Some(MysqlType::Enum { labels }) => json!({"type": "string", "optional": optional,
                "name": "io.debezium.data.Enum", "version": 1, "parameters": {"allowed": labels.join(",")}}),
            Some(MysqlType::Set { labels }) => json!({"type": "string", "optional": optional,
                "name": "io.debezium.data.EnumSet", "version": 1, "parameters": {"allowed": labels.join(",")}}),
            _ => plain("string"),
        },
        MyConv::Bytes => plain("bytes"),
        MyConv::Geometry { point: true } => json!({"type": "struct", "fields": [
            {"type": "double", "optional": false, "field": "x"},
            {"type": "double", "optional": false, "field": "y"},
            {"type": "bytes", "optional": true, "field": "wkb"},
            {"type": "int32", "optional": true, "field": "srid"}],
            "optional": optional, "name": "io.debezium.data.geometry.Point", "version": 1,
            "doc": "Geometry (POINT)"}),
        MyConv::Geometry { point: false } => json!({"type": "struct", "fields": [
            {"type": "bytes", "optional": false, "field": "wkb"},
            {"type": "int32", "optional": true, "field": "srid"}],
            "optional": optional, "name": "io.debezium.data.geometry.Geometry", "version": 1,
            "doc": "Geometry"}),
    }
}

/// The MySQL/MariaDB `source` block schema.
pub fn source_schema(connector: &str) -> Value {
    let f = |ty: &str, optional: bool, field: &str| json!({"type": ty, "optional": optional, "field": field});
    json!({"type": "struct", "fields": [
        f("string", false, "version"), f("string", false, "connector"), f("string", false, "name"),
        f("int64", false, "ts_ms"),
        {"type": "string", "optional": true, "name": "io.debezium.data.Enum", "version": 1,
         "parameters": {"allowed": "true,first,first_in_data_collection,last_in_data_collection,last,false,incremental"},
         "default": "false", "field": "snapshot"},
        f("string", false, "db"), f("string", true, "sequence"), f("int64", true, "ts_us"),
        f("int64", true, "ts_ns"), f("string", true, "table"), f("int64", false, "server_id"),
        f("string", true, "gtid"), f("string", false, "file"), f("int64", false, "pos"),
        f("int32", false, "row"), f("int64", true, "thread"), f("string", true, "query")],
        "optional": false,
        "name": format!("io.debezium.connector.{connector}.Source"), "version": 1})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_and_query_come_from_the_batch_metadata() {
        let batch = |md: &[(&str, &str)]| {
            let md = md
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            RecordBatch::new_empty(std::sync::Arc::new(
                arrow_schema::Schema::empty().with_metadata(md),
            ))
        };
        let opts = EncoderOptions {
            connector: crate::config::Connector::Mysql,
            ..EncoderOptions::new("tm", "")
        };
        let p = MysqlPosition {
            file: 3,
            txn_pos: 100,
            event_pos: 300,
            row: 1,
            index: 1,
            gtid: None,
        };
        let q = "DELETE FROM t WHERE v = 'a\"b\\c\n'";
        let with = batch(&[("tidemark.mysql.thread", "42"), ("tidemark.mysql.query", q)]);
        let s = source_block(&opts, &with, "db", "t", None, "false", &p);
        assert_eq!(s["thread"], json!(42));
        assert_eq!(s["query"], json!(q));
        let s = source_block(&opts, &batch(&[]), "db", "t", None, "false", &p);
        assert_eq!(s["thread"], Value::Null);
        assert_eq!(s["query"], Value::Null);
    }
}
