//! Column values: Arrow slot → Debezium JSON value, following `PostgresValueConverter` as
//! observed in the Debezium 3.6 captures (`tests/fixtures/debezium/pg/`).
//!
//! A [`Conv`] is planned once per column and schema version from the column's Postgres type
//! and the encoder options; [`value`] then converts one slot. Markers (unchanged TOAST, NaN,
//! ±Infinity, multi-dimensional arrays) are handled by the callers in `envelope.rs` through
//! [`special_numeric`], [`unavailable`] and [`array_dims`].
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
use serde_json::{json, Value};
use tidemark_model::pg_types::{numeric_typmod, oid};
use tidemark_model::{MarkerKind, SourceType};

use super::codec::{
    base64, digits_to_twos_complement, i128_digits, iso_timestamp_utc, minimal_twos_complement,
    plain_string, time_of_day, ParsedDecimal,
};
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

/// A JSON number from an f32, printed with the f32's shortest digits (`0.1`, not
/// `0.10000000149011612`), or Jackson's string for NaN/±Infinity.
fn float_value(v: f64, shortest: String) -> Value {
    if v.is_nan() {
        Value::from("NaN")
    } else if v.is_infinite() {
        Value::from(if v > 0.0 { "Infinity" } else { "-Infinity" })
    } else {
        shortest
            .parse::<f64>()
            .map(Value::from)
            .unwrap_or(Value::Null)
    }
}

/// A decimal in the configured mode, from sign, digits and scale.
fn decimal_value(negative: bool, digits: &[u8], scale: i64, mode: DecimalHandling) -> Value {
    match mode {
        DecimalHandling::Precise => {
            Value::from(base64(&digits_to_twos_complement(negative, digits)))
        }
        DecimalHandling::String => Value::from(plain_string(negative, digits, scale)),
        DecimalHandling::Double => plain_string(negative, digits, scale)
            .parse::<f64>()
            .map(Value::from)
            .unwrap_or(Value::Null),
    }
}

/// The value of a NaN/±Infinity numeric (a marker on a Decimal column, or the text of an
/// unconstrained one).
pub fn special_numeric(kind: MarkerKind, opts: &EncoderOptions) -> Value {
    let (java_double, enum_name) = match kind {
        MarkerKind::PosInfinity => ("Infinity", "POSITIVE_INFINITY"),
        MarkerKind::NegInfinity => ("-Infinity", "NEGATIVE_INFINITY"),
        _ => ("NaN", "NAN"),
    };
    match opts.decimal_handling_mode {
        // Debezium: "Failed to properly convert data value" and null.
        DecimalHandling::Precise if opts.lossless => Value::from(java_double),
        DecimalHandling::Precise => Value::Null,
        DecimalHandling::String => Value::from(enum_name),
        DecimalHandling::Double => Value::from(java_double),
    }
}

fn numeric_text(text: &str, scale: Option<i64>, opts: &EncoderOptions) -> Result<Value, String> {
    let special = match text {
        "NaN" => Some(MarkerKind::NaN),
        "Infinity" => Some(MarkerKind::PosInfinity),
        "-Infinity" => Some(MarkerKind::NegInfinity),
        _ => None,
    };
    if let Some(kind) = special {
        return Ok(special_numeric(kind, opts));
    }
    let mut d = ParsedDecimal::parse(text).ok_or_else(|| "invalid numeric text".to_owned())?;
    let mode = opts.decimal_handling_mode;
    Ok(match (scale, mode) {
        (None, DecimalHandling::Precise) => {
            d.strip_trailing_zeros();
            json!({"scale": d.scale, "value": base64(&d.unscaled_bytes())})
        }
        (Some(s), _) => {
            d.set_scale_up(s);
            decimal_value(d.negative, &d.digits, d.scale, mode)
        }
        (None, _) => decimal_value(d.negative, &d.digits, d.scale, mode),
    })
}

/// Debezium's value for `date` ±infinity (pgjdbc's infinity timestamps turned into a
/// `LocalDate` and counted in days).
const DATE_POS_INFINITY: i64 = -2_147_472_692;
const DATE_NEG_INFINITY: i64 = -2_147_472_691;
/// pgjdbc `PGStatement.DATE_POSITIVE_INFINITY`/`DATE_NEGATIVE_INFINITY`, in µs as Debezium emits.
const TS_POS_INFINITY_US: i64 = 9_223_372_036_825_200_000;
const TS_NEG_INFINITY_US: i64 = -9_223_372_036_832_400_000;

fn infinity_text(positive: bool) -> Value {
    Value::from(if positive { "infinity" } else { "-infinity" })
}

fn timestamp_value(us: i64, unit: Unit, lossless: bool) -> Value {
    let us = match us {
        i64::MAX if lossless => return infinity_text(true),
        i64::MIN if lossless => return infinity_text(false),
        i64::MAX => TS_POS_INFINITY_US,
        i64::MIN => TS_NEG_INFINITY_US,
        v => v,
    };
    Value::from(match unit {
        Unit::Micros => us,
        Unit::Millis => us.div_euclid(1000),
    })
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
fn bits_value(text: &str, boolean: bool) -> Value {
    if boolean {
        return Value::from(text.bytes().any(|b| b == b'1'));
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
    Value::from(base64(&bytes))
}

/// point text `(x,y)` → `{"x","y","wkb","srid"}` (WKB little-endian Point).
fn point_value(text: &str) -> Option<Value> {
    let inner = text.trim().strip_prefix('(')?.strip_suffix(')')?;
    let (x, y) = inner.split_once(',')?;
    let (x, y): (f64, f64) = (x.trim().parse().ok()?, y.trim().parse().ok()?);
    let mut wkb = vec![1u8, 1, 0, 0, 0];
    wkb.extend_from_slice(&x.to_le_bytes());
    wkb.extend_from_slice(&y.to_le_bytes());
    Some(json!({"x": x, "y": y, "wkb": base64(&wkb), "srid": null}))
}

fn uuid_string(b: &[u8]) -> String {
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{byte:02x}"));
    }
    s
}

/// Converts slot `i` of `arr`. Errors are a reason; the caller adds table and column.
pub fn value(
    conv: &Conv,
    arr: &dyn Array,
    i: usize,
    opts: &EncoderOptions,
) -> Result<Value, String> {
    if let Conv::Mysql(c) = conv {
        return super::mysql::value(c, arr, i, opts);
    }
    if i >= arr.len() {
        return Err(format!("row {i} out of range"));
    }
    if arr.is_null(i) {
        return Ok(Value::Null);
    }
    let mode = opts.decimal_handling_mode;
    let mismatch = || format!("unexpected Arrow type {} for {conv:?}", arr.data_type());
    Ok(match (conv, arr.data_type()) {
        (Conv::Omit, _) => Value::Null,
        (Conv::Bool, DataType::Boolean) => Value::from(arr.as_boolean().value(i)),
        (Conv::Int, DataType::Int16) => Value::from(arr.as_primitive::<Int16Type>().value(i)),
        (Conv::Int, DataType::Int32) => Value::from(arr.as_primitive::<Int32Type>().value(i)),
        (Conv::Int, DataType::Int64) => Value::from(arr.as_primitive::<Int64Type>().value(i)),
        (Conv::Int, DataType::UInt32) => Value::from(arr.as_primitive::<UInt32Type>().value(i)),
        (Conv::Float32, DataType::Float32) => {
            let v = arr.as_primitive::<Float32Type>().value(i);
            float_value(f64::from(v), v.to_string())
        }
        (Conv::Float64, DataType::Float64) => {
            let v = arr.as_primitive::<Float64Type>().value(i);
            float_value(v, v.to_string())
        }
        (Conv::Decimal { .. } | Conv::Money, DataType::Decimal128(_, _)) => {
            let v = arr.as_primitive::<Decimal128Type>().value(i);
            if mode == DecimalHandling::Precise {
                Value::from(base64(&minimal_twos_complement(&v.to_be_bytes())))
            } else {
                let (neg, digits) = i128_digits(v);
                let scale = if let Conv::Decimal { scale } = conv {
                    *scale
                } else {
                    2
                };
                decimal_value(neg, &digits, scale, mode)
            }
        }
        (Conv::Decimal { scale }, DataType::Decimal256(_, _)) => {
            let v = arr.as_primitive::<Decimal256Type>().value(i);
            let text = v.to_string();
            let neg = text.starts_with('-');
            let digits: Vec<u8> = text.trim_start_matches('-').bytes().collect();
            decimal_value(
                neg,
                if v == arrow_buffer::i256::ZERO {
                    &[]
                } else {
                    &digits
                },
                *scale,
                mode,
            )
        }
        (Conv::NumericText { scale }, DataType::Utf8) => {
            numeric_text(arr.as_string::<i32>().value(i), *scale, opts)?
        }
        (Conv::Name, DataType::Utf8) if !opts.lossless => Value::Null,
        (Conv::Text | Conv::Name, DataType::Utf8) => Value::from(arr.as_string::<i32>().value(i)),
        (Conv::Bytes, DataType::Binary) => Value::from(base64(arr.as_binary::<i32>().value(i))),
        (Conv::Uuid, DataType::FixedSizeBinary(16)) => {
            Value::from(uuid_string(arr.as_fixed_size_binary().value(i)))
        }
        (Conv::Date, DataType::Date32) => match arr.as_primitive::<Date32Type>().value(i) {
            i32::MAX if opts.lossless => infinity_text(true),
            i32::MIN if opts.lossless => infinity_text(false),
            i32::MAX => Value::from(DATE_POS_INFINITY),
            i32::MIN => Value::from(DATE_NEG_INFINITY),
            d => Value::from(d),
        },
        (Conv::Time(unit), DataType::Time64(_)) => {
            let us = arr.as_primitive::<Time64MicrosecondType>().value(i);
            Value::from(if *unit == Unit::Millis { us / 1000 } else { us })
        }
        (Conv::Timestamp(unit), DataType::Timestamp(_, None)) => timestamp_value(
            arr.as_primitive::<TimestampMicrosecondType>().value(i),
            *unit,
            opts.lossless,
        ),
        (Conv::TimestampTz(width), DataType::Timestamp(_, Some(_))) => {
            match arr.as_primitive::<TimestampMicrosecondType>().value(i) {
                i64::MAX => infinity_text(true),
                i64::MIN => infinity_text(false),
                us => Value::from(iso_timestamp_utc(us, *width)),
            }
        }
        (Conv::TimeTz, DataType::Utf8) => {
            let text = arr.as_string::<i32>().value(i);
            Value::from(timetz_utc(text).ok_or_else(|| "invalid timetz text".to_owned())?)
        }
        (Conv::Interval, DataType::Interval(_)) => {
            let v = arr.as_primitive::<IntervalMonthDayNanoType>().value(i);
            Value::from(interval_micros(v.months, v.days, v.nanoseconds))
        }
        (Conv::Bits { boolean }, DataType::Utf8) => {
            bits_value(arr.as_string::<i32>().value(i), *boolean)
        }
        (Conv::Point, DataType::Utf8) => point_value(arr.as_string::<i32>().value(i))
            .ok_or_else(|| "invalid point text".to_owned())?,
        (Conv::List(element), DataType::List(_)) => {
            let items = arr.as_list::<i32>().value(i);
            let mut out = Vec::with_capacity(items.len());
            for j in 0..items.len() {
                out.push(value(element, items.as_ref(), j, opts)?);
            }
            Value::Array(out)
        }
        _ => return Err(mismatch()),
    })
}

/// Debezium's placeholder for an unchanged TOAST value of a column
/// (`UnchangedToastedPlaceholder`): text → the placeholder, bytea → its bytes in base64,
/// text/varchar/json arrays → `[placeholder]`, int4/int8/date arrays → its bytes as numbers.
pub fn unavailable(conv: &Conv, t: &SourceType, placeholder: &str) -> Value {
    match conv {
        Conv::Bytes => Value::from(base64(placeholder.as_bytes())),
        Conv::List(_) => match t.element.as_deref().map(|e| e.oid) {
            Some(oid::INT4 | oid::INT8 | oid::DATE) => {
                Value::Array(placeholder.bytes().map(|b| Value::from(b as i8)).collect())
            }
            _ => Value::Array(vec![Value::from(placeholder)]),
        },
        _ => Value::from(placeholder),
    }
}

/// A multi-dimensional array: Debezium writes one null per first-dimension element; lossless
/// mode nests the (row-major) elements by the dimensions in `detail` (`[1:2][1:3]`).
pub fn array_dims(flat: Value, detail: &str, lossless: bool) -> Value {
    let dims: Vec<usize> = detail
        .split(']')
        .filter_map(|d| {
            let (lo, hi) = d.trim_start_matches('[').split_once(':')?;
            let (lo, hi): (i64, i64) = (lo.parse().ok()?, hi.parse().ok()?);
            usize::try_from(hi - lo + 1).ok()
        })
        .collect();
    let Value::Array(items) = flat else {
        return flat;
    };
    // One dimension (a lower bound other than 1): pgjdbc reads it as a plain list.
    let (Some(&first), true) = (dims.first(), dims.len() > 1) else {
        return Value::Array(items);
    };
    if !lossless {
        return Value::Array(vec![Value::Null; first]);
    }
    fn nest(items: &mut std::vec::IntoIter<Value>, dims: &[usize]) -> Value {
        match dims {
            [] | [_] => Value::Array(items.take(dims.first().copied().unwrap_or(0)).collect()),
            [n, rest @ ..] => Value::Array((0..*n).map(|_| nest(items, rest)).collect()),
        }
    }
    nest(&mut items.into_iter(), &dims)
}
