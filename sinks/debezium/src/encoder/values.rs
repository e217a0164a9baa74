//! Column values: Arrow slot → Debezium JSON value, following `PostgresValueConverter` as
//! observed in the Debezium 3.6 captures (`tests/fixtures/debezium/pg/`).
//!
//! A [`Conv`] is planned once per column and schema version from the column's Postgres type
//! and the encoder options; [`write`] then writes one slot. Markers (unchanged TOAST, NaN,
//! ±Infinity, multi-dimensional arrays) are handled by the callers in `envelope.rs` through
//! [`write_special_numeric`], [`write_unavailable`] and [`write_array_dims`]. Values are written
//! as JSON bytes straight into the record's buffer ([`write`]), never built as a
//! `serde_json::Value`.
//!
//! # Traps (all observed in the captures)
//! - `line`, `lseg`, `box`, `path`, `polygon`, `circle`, `pg_lsn` columns and arrays of
//!   `money`, `name`, `interval`, `bit`, `varbit`, `xml`, `point` have no Debezium converter:
//!   the field is *absent* from `before`/`after` ([`Conv::Omit`]).
//! - `name` columns are always `null` in Debezium 3.6 output (lossless mode writes the text).
//! - Multi-dimensional arrays become a list of nulls, one per first-dimension element.
//! - `date` ±infinity become `-2147472692`/`-2147472691`, `timestamp` ±infinity become
//!   `9223372036825200000`/`-9223372036832400000` µs (÷1000 for ms columns): pgjdbc's
//!   `DATE_POSITIVE_INFINITY` arithmetic. `timestamptz` ±infinity become `"infinity"`.
//! - float NaN/±Infinity are JSON strings `"NaN"`, `"Infinity"`, `"-Infinity"`.
//! - An interval is `((years*12+months)*30.4375+days)` days plus the time, in µs.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Decimal256Type, Float32Type, Float64Type, Int16Type, Int32Type,
    Int64Type, IntervalMonthDayNanoType, Time64MicrosecondType, TimestampMicrosecondType,
    UInt32Type,
};
use arrow_array::Array;
use arrow_schema::DataType;
use serde_json::Value;
use tidemark_model::pg_types::{numeric_typmod, oid};
use tidemark_model::{MarkerKind, SourceType};

use super::codec::{
    digits_to_twos_complement, i128_digits, minimal_twos_complement, plain_string, time_of_day,
    write_iso_timestamp_utc, ParsedDecimal,
};
use super::json;
use crate::config::{DecimalHandling, EncoderOptions, TimePrecision};

/// Milliseconds or microseconds (Debezium's `Time`/`Timestamp` vs `MicroTime`/`MicroTimestamp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Millis,
    Micros,
}

/// How one column is converted.
#[derive(Clone, Debug, PartialEq)]
pub enum Conv {
    /// Debezium has no converter: the field is left out.
    Omit,
    Bool,
    /// int2/int4/int8/oid/xid.
    Int,
    Float32,
    Float64,
    /// numeric(p,s) as Decimal128/256 (`scale` = s).
    Decimal {
        scale: i64,
    },
    /// numeric as Postgres text; `scale` is the typmod scale when there is one.
    NumericText {
        scale: Option<i64>,
    },
    /// money: Decimal128(19,2).
    Money,
    Text,
    /// `name`: null in Debezium 3.6.
    Name,
    Bytes,
    Uuid,
    Date,
    Time(Unit),
    Timestamp(Unit),
    /// timestamptz with the fraction width (the type's precision, default 6).
    TimestampTz(u32),
    TimeTz,
    Interval,
    /// bit/varbit: a boolean for bit(1)/varbit(1), else little-endian bytes.
    Bits {
        boolean: bool,
    },
    Point,
    List(Box<Conv>),
    /// A MySQL/MariaDB column (`mysql.rs`).
    Mysql(super::mysql::MyConv),
}

/// Element types whose arrays Debezium does not convert (`PostgresValueConverter`, DBZ-459).
const UNSUPPORTED_ARRAY_ELEMENTS: &[u32] = &[
    oid::MONEY,
    oid::NAME,
    oid::INTERVAL,
    oid::BIT,
    oid::VARBIT,
    oid::XML,
    oid::POINT,
    oid::LINE,
    oid::LSEG,
    oid::BOX,
    oid::PATH,
    oid::POLYGON,
    oid::CIRCLE,
    oid::PG_LSN,
];

/// The precision of `time(p)`/`timestamp(p)`: the typmod, 6 when none.
fn time_precision(t: &SourceType) -> i32 {
    if (0..=6).contains(&t.modifier) {
        t.modifier
    } else {
        6
    }
}

/// Plans the conversion of a column of type `t` stored as `dt`.
pub fn plan(t: &SourceType, dt: &DataType, opts: &EncoderOptions) -> Conv {
    if tidemark_model::mysql_types::is_mysql(t) {
        return Conv::Mysql(super::mysql::plan(t, dt, opts));
    }
    if let Some(element) = &t.element {
        let DataType::List(item) = dt else {
            return Conv::Text;
        };
        if UNSUPPORTED_ARRAY_ELEMENTS.contains(&element.oid) {
            return Conv::Omit;
        }
        return match plan(element, item.data_type(), opts) {
            Conv::Omit => Conv::Omit,
            c => Conv::List(Box::new(c)),
        };
    }
    let adaptive_unit = |p: i32| if p <= 3 { Unit::Millis } else { Unit::Micros };
    match (t.oid, dt) {
        (oid::LINE | oid::LSEG | oid::BOX | oid::PATH | oid::POLYGON | oid::CIRCLE, _) => {
            Conv::Omit
        }
        (oid::PG_LSN, _) => Conv::Omit,
        (_, DataType::Boolean) => Conv::Bool,
        (_, DataType::Int16 | DataType::Int32 | DataType::Int64 | DataType::UInt32) => Conv::Int,
        (_, DataType::Float32) => Conv::Float32,
        (_, DataType::Float64) => Conv::Float64,
        (oid::MONEY, DataType::Decimal128(_, _)) => Conv::Money,
        (_, DataType::Decimal128(_, s) | DataType::Decimal256(_, s)) => Conv::Decimal {
            scale: i64::from(*s),
        },
        (oid::NUMERIC, DataType::Utf8) => Conv::NumericText {
            scale: numeric_typmod(t.modifier).map(|(_, s)| i64::from(s)),
        },
        (oid::NAME, DataType::Utf8) => Conv::Name,
        (oid::BIT | oid::VARBIT, DataType::Utf8) => Conv::Bits {
            boolean: t.modifier == 1,
        },
        (oid::TIMETZ, DataType::Utf8) => Conv::TimeTz,
        (oid::POINT, DataType::Utf8) => Conv::Point,
        (_, DataType::Binary) => Conv::Bytes,
        (_, DataType::FixedSizeBinary(16)) => Conv::Uuid,
        (_, DataType::Date32) => Conv::Date,
        (_, DataType::Time64(_)) => Conv::Time(match opts.time_precision_mode {
            TimePrecision::Adaptive => adaptive_unit(time_precision(t)),
            TimePrecision::AdaptiveTimeMicroseconds => Unit::Micros,
            TimePrecision::Connect => Unit::Millis,
        }),
        (_, DataType::Timestamp(_, Some(_))) => Conv::TimestampTz(time_precision(t) as u32),
        (_, DataType::Timestamp(_, None)) => Conv::Timestamp(match opts.time_precision_mode {
            TimePrecision::Connect => Unit::Millis,
            _ => adaptive_unit(time_precision(t)),
        }),
        (_, DataType::Interval(_)) => Conv::Interval,
        _ => Conv::Text,
    }
}

/// A float column's value: Jackson's string for NaN/±Infinity, else the number (serde_json's
/// shortest form).
fn write_float(out: &mut Vec<u8>, v: f64) {
    if v.is_nan() {
        out.extend_from_slice(b"\"NaN\"");
    } else if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 {
            b"\"Infinity\""
        } else {
            b"\"-Infinity\""
        });
    } else {
        json::f64(out, v);
    }
}

/// A decimal in the configured mode, from sign, digits and scale.
fn write_decimal(
    out: &mut Vec<u8>,
    negative: bool,
    digits: &[u8],
    scale: i64,
    mode: DecimalHandling,
) {
    match mode {
        DecimalHandling::Precise => {
            json::base64(out, &digits_to_twos_complement(negative, digits));
        }
        DecimalHandling::String => json::plain_str(out, &plain_string(negative, digits, scale)),
        DecimalHandling::Double => match plain_string(negative, digits, scale).parse::<f64>() {
            Ok(f) => json::f64(out, f),
            Err(_) => json::null(out),
        },
    }
}

/// The value of a NaN/±Infinity numeric (a marker on a Decimal column, or the text of an
/// unconstrained one).
pub fn write_special_numeric(out: &mut Vec<u8>, kind: MarkerKind, opts: &EncoderOptions) {
    let (java_double, enum_name) = match kind {
        MarkerKind::PosInfinity => ("Infinity", "POSITIVE_INFINITY"),
        MarkerKind::NegInfinity => ("-Infinity", "NEGATIVE_INFINITY"),
        _ => ("NaN", "NAN"),
    };
    match opts.decimal_handling_mode {
        // Debezium: "Failed to properly convert data value" and null.
        DecimalHandling::Precise if opts.lossless => json::plain_str(out, java_double),
        DecimalHandling::Precise => json::null(out),
        DecimalHandling::String => json::plain_str(out, enum_name),
        DecimalHandling::Double => json::plain_str(out, java_double),
    }
}

fn write_numeric_text(
    out: &mut Vec<u8>,
    text: &str,
    scale: Option<i64>,
    opts: &EncoderOptions,
) -> Result<(), String> {
    let special = match text {
        "NaN" => Some(MarkerKind::NaN),
        "Infinity" => Some(MarkerKind::PosInfinity),
        "-Infinity" => Some(MarkerKind::NegInfinity),
        _ => None,
    };
    if let Some(kind) = special {
        write_special_numeric(out, kind, opts);
        return Ok(());
    }
    let mut d = ParsedDecimal::parse(text).ok_or_else(|| "invalid numeric text".to_owned())?;
    let mode = opts.decimal_handling_mode;
    match (scale, mode) {
        (None, DecimalHandling::Precise) => {
            d.strip_trailing_zeros();
            out.extend_from_slice(b"{\"scale\":");
            json::i64(out, d.scale);
            out.extend_from_slice(b",\"value\":");
            json::base64(out, &d.unscaled_bytes());
            out.push(b'}');
        }
        (Some(s), _) => {
            d.set_scale_up(s);
            write_decimal(out, d.negative, &d.digits, d.scale, mode);
        }
        (None, _) => write_decimal(out, d.negative, &d.digits, d.scale, mode),
    }
    Ok(())
}

/// Debezium's value for `date` ±infinity (pgjdbc's infinity timestamps turned into a
/// `LocalDate` and counted in days).
const DATE_POS_INFINITY: i64 = -2_147_472_692;
const DATE_NEG_INFINITY: i64 = -2_147_472_691;
/// pgjdbc `PGStatement.DATE_POSITIVE_INFINITY`/`DATE_NEGATIVE_INFINITY`, in µs as Debezium emits.
const TS_POS_INFINITY_US: i64 = 9_223_372_036_825_200_000;
const TS_NEG_INFINITY_US: i64 = -9_223_372_036_832_400_000;

fn write_infinity_text(out: &mut Vec<u8>, positive: bool) {
    out.extend_from_slice(if positive {
        b"\"infinity\""
    } else {
        b"\"-infinity\""
    });
}

fn write_timestamp(out: &mut Vec<u8>, us: i64, unit: Unit, lossless: bool) {
    let us = match us {
        i64::MAX if lossless => return write_infinity_text(out, true),
        i64::MIN if lossless => return write_infinity_text(out, false),
        i64::MAX => TS_POS_INFINITY_US,
        i64::MIN => TS_NEG_INFINITY_US,
        v => v,
    };
    json::i64(
        out,
        match unit {
            Unit::Micros => us,
            Unit::Millis => us.div_euclid(1000),
        },
    );
}

/// MicroDuration: months of 30.4375 days, computed in doubles as Debezium does.
fn interval_micros(months: i32, days: i32, nanos: i64) -> i64 {
    let micros = nanos / 1000;
    let hours = micros / 3_600_000_000;
    let minutes = micros / 60_000_000 % 60;
    let seconds = (micros % 60_000_000) as f64 / 1e6;
    let (years, months) = (months / 12, months % 12);
    let number_of_days = f64::from(years * 12 + months) * 30.4375 + f64::from(days);
    let seconds = ((number_of_days * 24.0 + hours as f64) * 60.0 + minutes as f64) * 60.0 + seconds;
    (seconds * 1e6).round() as i64
}

/// timetz text (`HH:MM:SS[.ffffff]±hh[:mm[:ss]]`) → `HH:MM:SS[.f]Z` in UTC.
fn timetz_utc(text: &str) -> Option<String> {
    let sign_at = text.rfind(['+', '-'])?;
    let (time, offset) = text.split_at(sign_at);
    let mut parts = time.splitn(3, ':');
    let h: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let sec = parts.next()?;
    let (s, frac) = sec.split_once('.').unwrap_or((sec, ""));
    let s: i64 = s.parse().ok()?;
    let frac_us: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}").get(..6)?.parse().ok()?
    };
    let neg = offset.starts_with('-');
    let mut off = offset.get(1..)?.split(':');
    let oh: i64 = off.next()?.parse().ok()?;
    let om: i64 = off.next().map_or(Some(0), |v| v.parse().ok())?;
    let os: i64 = off.next().map_or(Some(0), |v| v.parse().ok())?;
    let off_us = (oh * 3600 + om * 60 + os) * 1_000_000 * if neg { -1 } else { 1 };
    let local = ((h * 60 + m) * 60 + s) * 1_000_000 + frac_us;
    if local == 86_400_000_000 && off_us == 0 {
        return Some("24:00:00Z".to_owned());
    }
    Some(format!(
        "{}Z",
        time_of_day((local - off_us).rem_euclid(86_400_000_000))
    ))
}

/// bit string → Debezium `Bits`: bit i is character `len-1-i`, bytes little-endian, length
/// from the highest set bit (`BitSet.toByteArray()`).
fn write_bits(out: &mut Vec<u8>, text: &str, boolean: bool) {
    if boolean {
        return json::bool(out, text.bytes().any(|b| b == b'1'));
    }
    let mut bytes = vec![0u8; text.len().div_ceil(8)];
    for (i, c) in text.bytes().rev().enumerate() {
        if c == b'1' {
            if let Some(b) = bytes.get_mut(i / 8) {
                *b |= 1 << (i % 8);
            }
        }
    }
    while bytes.last() == Some(&0) {
        bytes.pop();
    }
    json::base64(out, &bytes);
}

/// point text `(x,y)` → `{"x","y","wkb","srid"}` (WKB little-endian Point); `None` when the
/// text is not a point (nothing written).
fn write_point(out: &mut Vec<u8>, text: &str) -> Option<()> {
    let inner = text.trim().strip_prefix('(')?.strip_suffix(')')?;
    let (x, y) = inner.split_once(',')?;
    let (x, y): (f64, f64) = (x.trim().parse().ok()?, y.trim().parse().ok()?);
    let mut wkb = [0u8; 21];
    wkb[..5].copy_from_slice(&[1, 1, 0, 0, 0]);
    wkb[5..13].copy_from_slice(&x.to_le_bytes());
    wkb[13..].copy_from_slice(&y.to_le_bytes());
    out.extend_from_slice(b"{\"x\":");
    json::f64(out, x);
    out.extend_from_slice(b",\"y\":");
    json::f64(out, y);
    out.extend_from_slice(b",\"wkb\":");
    json::base64(out, &wkb);
    out.extend_from_slice(b",\"srid\":null}");
    Some(())
}

fn write_uuid(out: &mut Vec<u8>, b: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(38);
    out.push(b'"');
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push(b'-');
        }
        out.extend_from_slice(&[HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 15)]]);
    }
    out.push(b'"');
}

/// Writes slot `i` of `arr`. Errors are a reason; the caller adds table and column (and
/// drops what was written).
pub fn write(
    out: &mut Vec<u8>,
    conv: &Conv,
    arr: &dyn Array,
    i: usize,
    opts: &EncoderOptions,
) -> Result<(), String> {
    if let Conv::Mysql(c) = conv {
        return super::mysql::write(out, c, arr, i, opts);
    }
    if i >= arr.len() {
        return Err(format!("row {i} out of range"));
    }
    if arr.is_null(i) {
        json::null(out);
        return Ok(());
    }
    let mode = opts.decimal_handling_mode;
    let mismatch = || format!("unexpected Arrow type {} for {conv:?}", arr.data_type());
    match (conv, arr.data_type()) {
        (Conv::Omit, _) => json::null(out),
        (Conv::Bool, DataType::Boolean) => json::bool(out, arr.as_boolean().value(i)),
        (Conv::Int, DataType::Int16) => {
            json::i64(out, arr.as_primitive::<Int16Type>().value(i).into())
        }
        (Conv::Int, DataType::Int32) => {
            json::i64(out, arr.as_primitive::<Int32Type>().value(i).into())
        }
        (Conv::Int, DataType::Int64) => json::i64(out, arr.as_primitive::<Int64Type>().value(i)),
        (Conv::Int, DataType::UInt32) => {
            json::u64(out, arr.as_primitive::<UInt32Type>().value(i).into())
        }
        (Conv::Float32, DataType::Float32) => {
            let v = arr.as_primitive::<Float32Type>().value(i);
            if v.is_finite() {
                // The f32's shortest digits (`0.1`, not `0.10000000149011612`) as an f64.
                match v.to_string().parse::<f64>() {
                    Ok(f) => json::f64(out, f),
                    Err(_) => json::null(out),
                }
            } else {
                write_float(out, f64::from(v));
            }
        }
        // Rust's `Display` of an f64 is its shortest round-trip form: parsing it back gives
        // the same f64, so the value is written directly.
        (Conv::Float64, DataType::Float64) => {
            write_float(out, arr.as_primitive::<Float64Type>().value(i))
        }
        (Conv::Decimal { .. } | Conv::Money, DataType::Decimal128(_, _)) => {
            let v = arr.as_primitive::<Decimal128Type>().value(i);
            if mode == DecimalHandling::Precise {
                json::base64(out, &minimal_twos_complement(&v.to_be_bytes()));
            } else {
                let (neg, digits) = i128_digits(v);
                let scale = if let Conv::Decimal { scale } = conv {
                    *scale
                } else {
                    2
                };
                write_decimal(out, neg, &digits, scale, mode);
            }
        }
        (Conv::Decimal { scale }, DataType::Decimal256(_, _)) => {
            let v = arr.as_primitive::<Decimal256Type>().value(i);
            let text = v.to_string();
            let neg = text.starts_with('-');
            let digits: Vec<u8> = text.trim_start_matches('-').bytes().collect();
            write_decimal(
                out,
                neg,
                if v == arrow_buffer::i256::ZERO {
                    &[]
                } else {
                    &digits
                },
                *scale,
                mode,
            );
        }
        (Conv::NumericText { scale }, DataType::Utf8) => {
            write_numeric_text(out, arr.as_string::<i32>().value(i), *scale, opts)?
        }
        (Conv::Name, DataType::Utf8) if !opts.lossless => json::null(out),
        (Conv::Text | Conv::Name, DataType::Utf8) => {
            json::str(out, arr.as_string::<i32>().value(i))
        }
        (Conv::Bytes, DataType::Binary) => json::base64(out, arr.as_binary::<i32>().value(i)),
        (Conv::Uuid, DataType::FixedSizeBinary(16)) => {
            write_uuid(out, arr.as_fixed_size_binary().value(i))
        }
        (Conv::Date, DataType::Date32) => match arr.as_primitive::<Date32Type>().value(i) {
            i32::MAX if opts.lossless => write_infinity_text(out, true),
            i32::MIN if opts.lossless => write_infinity_text(out, false),
            i32::MAX => json::i64(out, DATE_POS_INFINITY),
            i32::MIN => json::i64(out, DATE_NEG_INFINITY),
            d => json::i64(out, d.into()),
        },
        (Conv::Time(unit), DataType::Time64(_)) => {
            let us = arr.as_primitive::<Time64MicrosecondType>().value(i);
            json::i64(out, if *unit == Unit::Millis { us / 1000 } else { us });
        }
        (Conv::Timestamp(unit), DataType::Timestamp(_, None)) => write_timestamp(
            out,
            arr.as_primitive::<TimestampMicrosecondType>().value(i),
            *unit,
            opts.lossless,
        ),
        (Conv::TimestampTz(width), DataType::Timestamp(_, Some(_))) => {
            match arr.as_primitive::<TimestampMicrosecondType>().value(i) {
                i64::MAX => write_infinity_text(out, true),
                i64::MIN => write_infinity_text(out, false),
                us => write_iso_timestamp_utc(out, us, *width),
            }
        }
        (Conv::TimeTz, DataType::Utf8) => {
            let text = arr.as_string::<i32>().value(i);
            let utc = timetz_utc(text).ok_or_else(|| "invalid timetz text".to_owned())?;
            json::plain_str(out, &utc);
        }
        (Conv::Interval, DataType::Interval(_)) => {
            let v = arr.as_primitive::<IntervalMonthDayNanoType>().value(i);
            json::i64(out, interval_micros(v.months, v.days, v.nanoseconds));
        }
        (Conv::Bits { boolean }, DataType::Utf8) => {
            write_bits(out, arr.as_string::<i32>().value(i), *boolean)
        }
        (Conv::Point, DataType::Utf8) => write_point(out, arr.as_string::<i32>().value(i))
            .ok_or_else(|| "invalid point text".to_owned())?,
        (Conv::List(element), DataType::List(_)) => {
            let items = arr.as_list::<i32>().value(i);
            out.push(b'[');
            for j in 0..items.len() {
                if j > 0 {
                    out.push(b',');
                }
                write(out, element, items.as_ref(), j, opts)?;
            }
            out.push(b']');
        }
        _ => return Err(mismatch()),
    }
    Ok(())
}

/// Debezium's placeholder for an unchanged TOAST value of a column
/// (`UnchangedToastedPlaceholder`): text → the placeholder, bytea → its bytes in base64,
/// text/varchar/json arrays → `[placeholder]`, int4/int8/date arrays → its bytes as numbers.
pub fn write_unavailable(out: &mut Vec<u8>, conv: &Conv, t: &SourceType, placeholder: &str) {
    match conv {
        Conv::Bytes => json::base64(out, placeholder.as_bytes()),
        Conv::List(_) => match t.element.as_deref().map(|e| e.oid) {
            Some(oid::INT4 | oid::INT8 | oid::DATE) => {
                out.push(b'[');
                for (k, b) in placeholder.bytes().enumerate() {
                    if k > 0 {
                        out.push(b',');
                    }
                    json::i64(out, i64::from(b as i8));
                }
                out.push(b']');
            }
            _ => {
                out.push(b'[');
                json::str(out, placeholder);
                out.push(b']');
            }
        },
        _ => json::str(out, placeholder),
    }
}

/// A multi-dimensional array: Debezium writes one null per first-dimension element; lossless
/// mode nests the (row-major) elements by the dimensions in `detail` (`[1:2][1:3]`). `flat` is
/// the slot as [`write`] wrote it (a list, or `null`).
pub fn write_array_dims(out: &mut Vec<u8>, flat: &[u8], detail: &str, lossless: bool) {
    let dims: Vec<usize> = detail
        .split(']')
        .filter_map(|d| {
            let (lo, hi) = d.trim_start_matches('[').split_once(':')?;
            let (lo, hi): (i64, i64) = (lo.parse().ok()?, hi.parse().ok()?);
            usize::try_from(hi - lo + 1).ok()
        })
        .collect();
    // One dimension (a lower bound other than 1): pgjdbc reads it as a plain list. A null
    // slot stays null.
    let (Some(&first), true, Some(b'[')) = (dims.first(), dims.len() > 1, flat.first()) else {
        out.extend_from_slice(flat);
        return;
    };
    if !lossless {
        out.push(b'[');
        for k in 0..first {
            if k > 0 {
                out.push(b',');
            }
            json::null(out);
        }
        out.push(b']');
        return;
    }
    // Rare (lossless mode only): re-read the elements and nest them. A round trip through
    // `serde_json::Value` keeps every element's bytes (integers, shortest floats, strings).
    let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(flat) else {
        out.extend_from_slice(flat);
        return;
    };
    fn nest(items: &mut std::vec::IntoIter<Value>, dims: &[usize]) -> Value {
        match dims {
            [] | [_] => Value::Array(items.take(dims.first().copied().unwrap_or(0)).collect()),
            [n, rest @ ..] => Value::Array((0..*n).map(|_| nest(items, rest)).collect()),
        }
    }
    json::value(out, &nest(&mut items.into_iter(), &dims));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn interval_matches_fixture() {
        let us = |months, days, micros: i64| interval_micros(months, days, micros * 1000);
        // '1 year 2 mons 3 days 04:05:06.789'
        assert_eq!(us(14, 3, 14_706_789_000), 37_091_106_789_000);
        assert_eq!(us(1, 0, 0), 2_629_800_000_000);
        assert_eq!(us(0, -1, -1_000_000), -86_401_000_000);
        assert_eq!(us(-178_000_000 * 12, 0, 0), i64::MIN);
    }

    #[test]
    fn timetz_to_utc() {
        assert_eq!(timetz_utc("13:45:30.5+05:30").unwrap(), "08:15:30.5Z");
        assert_eq!(timetz_utc("00:00:00-12").unwrap(), "12:00:00Z");
        assert_eq!(
            timetz_utc("23:59:59.999999+14").unwrap(),
            "09:59:59.999999Z"
        );
        assert_eq!(timetz_utc("00:00:01+00").unwrap(), "00:00:01Z");
    }

    #[test]
    fn bits_match_fixture() {
        let bits = |t: &str, b| text(|o| write_bits(o, t, b));
        assert_eq!(bits("10101010", false), "\"qg==\"");
        assert_eq!(bits("00000000", false), "\"\"");
        assert_eq!(bits("00001111", false), "\"Dw==\"");
        assert_eq!(bits("101", false), "\"BQ==\"");
        assert_eq!(bits(&"1".repeat(70), false), "\"//////////8/\"");
        assert_eq!(bits("1", true), "true");
    }

    #[test]
    fn point_matches_fixture() {
        let point = |t: &str| {
            let s = text(|o| write_point(o, t).unwrap());
            serde_json::from_str::<Value>(&s).unwrap()
        };
        assert_eq!(point("(1.5,2.5)")["wkb"], "AQEAAAAAAAAAAAD4PwAAAAAAAARA");
        assert_eq!(
            point("(-1e+300,1e-300)")["wkb"],
            "AQEAAACcdQCIPOQ3/lnz+MIfbqUB"
        );
    }

    #[test]
    fn dims() {
        assert_eq!(
            text(|o| write_array_dims(o, b"[1,2,3,4]", "[1:2][1:2]", false)),
            "[null,null]"
        );
        assert_eq!(
            text(|o| write_array_dims(o, b"[1,2,3,4]", "[1:2][1:2]", true)),
            "[[1,2],[3,4]]"
        );
        assert_eq!(
            text(|o| write_array_dims(o, b"null", "[1:2][1:2]", true)),
            "null"
        );
    }
}
