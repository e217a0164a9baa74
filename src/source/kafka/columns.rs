//! Kafka Connect field schemas → model columns, and Connect JSON values → the Postgres text
//! form the model's column builders parse. Pure.
//!
//! A Debezium envelope carries no database types, only Connect types and Debezium's logical
//! names; each is mapped to the Postgres type whose model column (Arrow type) holds it
//! without loss, so a table that went `PostgreSQL → Debezium JSON → Kafka → Tidemark` gets the
//! same Arrow (and so Iceberg/Delta) types as one read from PostgreSQL directly:
//!
//! | Connect type / logical name | model type (Postgres) |
//! |---|---|
//! | `int8`, `int16` / `int32` / `int64` | int2 / int4 / int8 |
//! | `float` / `double` | float4 / float8 (`"NaN"`, `"Infinity"` strings kept) |
//! | `boolean` | bool |
//! | `string` | text |
//! | `bytes` | bytea (base64 in JSON) |
//! | `org.apache.kafka.connect.data.Decimal` (`scale`, `connect.decimal.precision`) | numeric(p,s); without a precision: numeric (exact text) |
//! | `io.debezium.data.VariableScaleDecimal` | numeric (exact text) |
//! | `io.debezium.time.Date` | date |
//! | `io.debezium.time.Time` / `MicroTime` / `NanoTime` | time |
//! | `io.debezium.time.Timestamp` / `MicroTimestamp` / `NanoTimestamp` | timestamp |
//! | `io.debezium.time.ZonedTimestamp` | timestamptz |
//! | `io.debezium.time.ZonedTime` | timetz (text) |
//! | `io.debezium.time.MicroDuration` | interval, as whole days + time (Debezium folded months into µs at 30.4375 days) |
//! | `io.debezium.time.Interval` (ISO 8601 string) | interval (months, days, µs exact) |
//! | `io.debezium.data.Uuid` / `Json` / `Xml` | uuid / json / xml |
//! | `io.debezium.data.Enum` | an enum (label text, labels from `allowed`) |
//! | `io.debezium.data.Bits` | varbit (`0`/`1` text) |
//! | `array` | an array of the element's type |
//! | anything else (`struct`, `map`, geometry, unknown logical names) | text: the JSON text of the value (warned once) |
//!
//! # Traps
//! - Debezium's placeholder for a value the source did not send (Postgres unchanged TOAST,
//!   `__debezium_unavailable_value`) comes in the column's own JSON form: the string, its
//!   bytes in base64 for bytea, `[placeholder]` for text arrays, its bytes as numbers for
//!   int/date arrays. It becomes an `Unchanged` marker, never a stored value.
//! - Connect's `Decimal` is the unscaled value as big-endian two's complement, any length.
//! - MySQL `TIME` beyond 0..24 h arrives as `MicroTime` too; it does not fit Postgres `time`
//!   and is a definite error naming the column.

use std::fmt::Write as _;

use serde_json::Value;
use tidemark_model::pg_types::oid;
use tidemark_model::pg_value::civil_from_days;
use tidemark_model::{Column, SourceType};

/// How one column's JSON values become Postgres text.
#[derive(Clone, Debug, PartialEq)]
pub enum Conv {
    /// An integer (JSON number).
    Int,
    /// A float (JSON number or `"NaN"`, `"Infinity"`, `"-Infinity"`).
    Float,
    Bool,
    /// A string taken as is.
    Text,
    /// base64 → bytea hex text.
    Bytes,
    /// Connect Decimal: base64 two's complement unscaled value. (`decimal.handling.mode`
    /// `string`/`double` topics declare plain `string`/`double` fields: text / float8.)
    Decimal {
        scale: u32,
    },
    /// `{ "scale": s, "value": base64 }`.
    VariableScale,
    /// Days since 1970.
    Date,
    /// Since midnight, in this many units per second (1 000, 1 000 000, 10^9).
    Time {
        per_sec: i64,
    },
    /// Since 1970, units per second as for `Time`.
    Timestamp {
        per_sec: i64,
    },
    /// ISO 8601 string with offset.
    ZonedTimestamp,
    /// ISO time with offset (`13:45:30.5+05:30`, `08:15:30Z`).
    ZonedTime,
    /// µs (Debezium's `MicroDuration`).
    MicroDuration,
    /// ISO 8601 duration (`P1Y2M3DT4H5M6.78S`).
    IsoInterval,
    /// `io.debezium.data.Bits`: little-endian bytes, `length` bits.
    Bits {
        length: usize,
    },
    /// Elements of an array.
    Array(Box<Conv>),
    /// Unknown structure: its JSON text.
    JsonText,
}

/// A column plan: the model column and how its values convert.
#[derive(Clone, Debug)]
pub struct ColumnPlan {
    pub column: Column,
    pub conv: Conv,
    /// Whether the type fell back to JSON text (for a one-time warning).
    pub fallback: bool,
}

fn builtin(oid: u32, modifier: i32) -> SourceType {
    SourceType::pg_builtin(oid, modifier).unwrap_or_else(|| SourceType::pg_other(oid, "text", -1))
}

fn param<'a>(schema: &'a Value, key: &str) -> Option<&'a str> {
    schema.get("parameters")?.get(key)?.as_str()
}

/// The Postgres source type and conversion of one Connect field schema.
pub fn plan_type(schema: &Value) -> (SourceType, Conv, bool) {
    let ty = schema.get("type").and_then(Value::as_str).unwrap_or("");
    let name = schema.get("name").and_then(Value::as_str).unwrap_or("");
    let per = |unit: i64| unit;
    let (st, conv) = match (name, ty) {
        ("org.apache.kafka.connect.data.Decimal", _) => {
            let scale: u32 = param(schema, "scale")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let precision: Option<i32> =
                param(schema, "connect.decimal.precision").and_then(|s| s.parse().ok());
            // Postgres' numeric(p, s) has 1 <= p <= 1000 and s <= p; anything else (a
            // bigger or missing precision) is an unconstrained numeric, kept exactly as text.
            let modifier = match precision {
                Some(p) if (1..=MAX_NUMERIC_PRECISION).contains(&p) && scale <= p as u32 => {
                    ((p << 16) | scale as i32) + 4
                }
                _ => -1,
            };
            (builtin(oid::NUMERIC, modifier), Conv::Decimal { scale })
        }
        ("io.debezium.data.VariableScaleDecimal", _) => {
            (builtin(oid::NUMERIC, -1), Conv::VariableScale)
        }
        ("io.debezium.time.Date" | "org.apache.kafka.connect.data.Date", _) => {
            (builtin(oid::DATE, -1), Conv::Date)
        }
        ("io.debezium.time.Time" | "org.apache.kafka.connect.data.Time", _) => (
            builtin(oid::TIME, -1),
            Conv::Time {
                per_sec: per(1_000),
            },
        ),
        ("io.debezium.time.MicroTime", _) => {
            (builtin(oid::TIME, -1), Conv::Time { per_sec: 1_000_000 })
        }
        ("io.debezium.time.NanoTime", _) => (
            builtin(oid::TIME, -1),
            Conv::Time {
                per_sec: 1_000_000_000,
            },
        ),
        ("io.debezium.time.Timestamp" | "org.apache.kafka.connect.data.Timestamp", _) => (
            builtin(oid::TIMESTAMP, -1),
            Conv::Timestamp { per_sec: 1_000 },
        ),
        ("io.debezium.time.MicroTimestamp", _) => (
            builtin(oid::TIMESTAMP, -1),
            Conv::Timestamp { per_sec: 1_000_000 },
        ),
        ("io.debezium.time.NanoTimestamp", _) => (
            builtin(oid::TIMESTAMP, -1),
            Conv::Timestamp {
                per_sec: 1_000_000_000,
            },
        ),
        ("io.debezium.time.ZonedTimestamp", _) => {
            (builtin(oid::TIMESTAMPTZ, -1), Conv::ZonedTimestamp)
        }
        ("io.debezium.time.ZonedTime", _) => (builtin(oid::TIMETZ, -1), Conv::ZonedTime),
        ("io.debezium.time.MicroDuration", _) => (builtin(oid::INTERVAL, -1), Conv::MicroDuration),
        ("io.debezium.time.Interval", _) => (builtin(oid::INTERVAL, -1), Conv::IsoInterval),
        ("io.debezium.data.Uuid", _) => (builtin(oid::UUID, -1), Conv::Text),
        ("io.debezium.data.Json", _) => (builtin(oid::JSON, -1), Conv::Text),
        ("io.debezium.data.Xml", _) => (builtin(oid::XML, -1), Conv::Text),
        ("io.debezium.data.Enum", "string") => {
            let labels = param(schema, "allowed")
                .map(|a| a.split(',').map(str::to_owned).collect())
                .unwrap_or_default();
            (SourceType::pg_enum(0, "enum", labels), Conv::Text)
        }
        ("io.debezium.data.Bits", "bytes") => {
            let length: usize = param(schema, "length")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let modifier = i32::try_from(length).unwrap_or(-1);
            (builtin(oid::VARBIT, modifier), Conv::Bits { length })
        }
        (_, "array") => {
            let item = schema.get("items").cloned().unwrap_or(Value::Null);
            let (element, conv, fallback) = plan_type(&item);
            if fallback || matches!(conv, Conv::Array(_)) {
                return (builtin(oid::TEXT, -1), Conv::JsonText, true);
            }
            let array_oid = tidemark_model::pg_types::array_oid(element.oid).unwrap_or(0);
            let name = format!("_{}", element.name);
            (
                SourceType::pg_array(array_oid, name, element),
                Conv::Array(Box::new(conv)),
            )
        }
        (n, "int8" | "int16") if n.is_empty() || n.starts_with("io.debezium.time.Year") => {
            (builtin(oid::INT2, -1), Conv::Int)
        }
        (n, "int32") if n.is_empty() || n == "io.debezium.time.Year" => {
            (builtin(oid::INT4, -1), Conv::Int)
        }
        ("", "int64") => (builtin(oid::INT8, -1), Conv::Int),
        ("", "float" | "float32") => (builtin(oid::FLOAT4, -1), Conv::Float),
        ("", "double" | "float64") => (builtin(oid::FLOAT8, -1), Conv::Float),
        ("", "boolean") => (builtin(oid::BOOL, -1), Conv::Bool),
        ("", "bytes") => (builtin(oid::BYTEA, -1), Conv::Bytes),
        (_, "string") => (builtin(oid::TEXT, -1), Conv::Text),
        _ => return (builtin(oid::TEXT, -1), Conv::JsonText, true),
    };
    (st, conv, false)
}

/// The column of a field of the row struct schema.
pub fn plan_column(field: &Value, key: bool) -> Option<ColumnPlan> {
    let name = field.get("field")?.as_str()?;
    let optional = field
        .get("optional")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let (st, conv, fallback) = plan_type(field);
    Some(ColumnPlan {
        column: Column::postgres(name, st, optional, key),
        conv,
        fallback,
    })
}

/// A schemaless column: text of whatever JSON value arrives.
pub fn text_column(name: &str, key: bool) -> ColumnPlan {
    ColumnPlan {
        column: Column::postgres(name, builtin(oid::TEXT, -1), true, key),
        conv: Conv::JsonText,
        fallback: false,
    }
}

/// Whether `v` is Debezium's placeholder for an unavailable value in this column's form.
pub fn is_unavailable(conv: &Conv, v: &Value, placeholder: &str) -> bool {
    match (conv, v) {
        (Conv::Bytes, Value::String(s)) => {
            tidemark_debezium::encoder::base64_decode(s).as_deref() == Some(placeholder.as_bytes())
        }
        (Conv::Array(_), Value::Array(items)) => {
            (items.len() == 1 && items[0].as_str() == Some(placeholder))
                || (items.len() == placeholder.len()
                    && items
                        .iter()
                        .zip(placeholder.bytes())
                        .all(|(i, b)| i.as_i64() == Some(i64::from(b as i8))))
        }
        (Conv::Array(_) | Conv::Bytes, _) => false,
        (_, Value::String(s)) => s == placeholder,
        _ => false,
    }
}

/// The Postgres text form of a non-null JSON value. Doubles are exact: the workspace builds
/// serde_json with `float_roundtrip` (its default parser can land one ULP off on 17-digit
/// values, and Debezium writes 17 digits where a double needs them).
pub fn to_text(conv: &Conv, v: &Value) -> Result<String, String> {
    let mut out = String::new();
    write_text(conv, v, &mut out)?;
    Ok(out)
}

fn int_of(v: &Value) -> Result<i64, String> {
    v.as_i64()
        .ok_or_else(|| format!("expected an integer, got {v}"))
}

fn write_text(conv: &Conv, v: &Value, out: &mut String) -> Result<(), String> {
    match (conv, v) {
        (Conv::Int, Value::Number(n)) => write!(out, "{n}").map_err(|e| e.to_string()),
        (Conv::Float, Value::Number(n)) => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            write!(out, "{x}").map_err(|e| e.to_string())
        }
        (Conv::Float, Value::String(s))
            if ["NaN", "Infinity", "-Infinity"].contains(&s.as_str()) =>
        {
            out.push_str(s);
            Ok(())
        }
        (Conv::Bool, Value::Bool(b)) => {
            out.push_str(if *b { "t" } else { "f" });
            Ok(())
        }
        (Conv::Text, Value::String(s)) => {
            out.push_str(s);
            Ok(())
        }
        (Conv::Bytes, Value::String(s)) => {
            let b = tidemark_debezium::encoder::base64_decode(s)
                .ok_or_else(|| "invalid base64".to_owned())?;
            out.push_str("\\x");
            for x in b {
                write!(out, "{x:02x}").map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        (Conv::Decimal { scale }, Value::String(s)) => {
            let bytes = tidemark_debezium::encoder::base64_decode(s)
                .ok_or_else(|| "invalid base64 decimal".to_owned())?;
            check_decimal(&bytes, u64::from(*scale))?;
            out.push_str(&unscaled_to_decimal(&bytes, *scale));
            Ok(())
        }
        (Conv::Decimal { .. } | Conv::VariableScale, Value::Number(n)) => {
            write!(out, "{n}").map_err(|e| e.to_string())
        }
        (Conv::VariableScale, Value::Object(m)) => {
            let scale = m
                .get("scale")
                .and_then(Value::as_u64)
                .ok_or("VariableScaleDecimal without scale")?;
            let bytes = m
                .get("value")
                .and_then(Value::as_str)
                .and_then(tidemark_debezium::encoder::base64_decode)
                .ok_or("VariableScaleDecimal without a base64 value")?;
            let scale = check_decimal(&bytes, scale)?;
            out.push_str(&unscaled_to_decimal(&bytes, scale));
            Ok(())
        }
        (Conv::Date, v) => {
            let days = int_of(v)?;
            // Debezium writes Postgres' ±infinity dates as numbers near i32::MIN (both signs
            // wrapped); no real date is that far out.
            if days.unsigned_abs() > 1_000_000_000 {
                out.push_str(if days > 0 { "infinity" } else { "-infinity" });
            } else {
                write_date(days, out);
            }
            Ok(())
        }
        (Conv::Time { per_sec }, v) => {
            let us = to_micros(int_of(v)?, *per_sec);
            if !(0..=86_400_000_000).contains(&us) {
                return Err(format!("time {us} µs is outside 00:00..24:00"));
            }
            write_clock(us, out);
            Ok(())
        }
        (Conv::Timestamp { per_sec }, v) => {
            let us = to_micros(int_of(v)?, *per_sec);
            // Postgres' ±infinity as Debezium writes them (its i64 sentinels shifted to 1970).
            if us >= PG_INFINITY_US {
                out.push_str("infinity");
                return Ok(());
            }
            if us <= PG_MINUS_INFINITY_US {
                out.push_str("-infinity");
                return Ok(());
            }
            write_date(us.div_euclid(86_400_000_000), out);
            out.push(' ');
            write_clock(us.rem_euclid(86_400_000_000), out);
            Ok(())
        }
        (Conv::ZonedTimestamp | Conv::ZonedTime, Value::String(s)) => {
            // ISO 8601 with `Z` or `±hh:mm`; the model's parser takes `T` and `±hh[:mm]`.
            match s.strip_suffix('Z') {
                Some(body) => {
                    out.push_str(body);
                    out.push_str("+00");
                }
                None => out.push_str(s),
            }
            Ok(())
        }
        (Conv::MicroDuration, v) => {
            // Whole days and the rest: a µs count beyond ~106 751 days would not fit the
            // model's i64 nanoseconds as a time part.
            let us = int_of(v)?;
            let (days, rest) = (us / 86_400_000_000, us % 86_400_000_000);
            if days != 0 {
                write!(out, "{days} days ").map_err(|e| e.to_string())?;
            }
            if rest < 0 {
                out.push('-');
            }
            let a = rest.unsigned_abs();
            let (secs, frac) = (a / 1_000_000, a % 1_000_000);
            write!(
                out,
                "{:02}:{:02}:{:02}.{frac:06}",
                secs / 3600,
                secs / 60 % 60,
                secs % 60
            )
            .map_err(|e| e.to_string())
        }
        (Conv::IsoInterval, Value::String(s)) => iso_interval(s, out),
        (Conv::Bits { length }, Value::String(s)) => {
            let b = tidemark_debezium::encoder::base64_decode(s)
                .ok_or_else(|| "invalid base64 bits".to_owned())?;
            let n = if *length == 0 || *length > b.len() * 8 && *length == i32::MAX as usize {
                b.len() * 8
            } else {
                *length
            };
            if n > MAX_BITS {
                return Err(format!(
                    "a bit string of {n} bits is longer than Postgres' {MAX_BITS}"
                ));
            }
            for i in (0..n).rev() {
                let bit = b.get(i / 8).is_some_and(|x| x & (1 << (i % 8)) != 0);
                out.push(if bit { '1' } else { '0' });
            }
            Ok(())
        }
        (Conv::Array(element), Value::Array(items)) => {
            out.push('{');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                if item.is_null() {
                    out.push_str("NULL");
                    continue;
                }
                let t = to_text(element, item)?;
                out.push('"');
                for c in t.chars() {
                    if c == '"' || c == '\\' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push('"');
            }
            out.push('}');
            Ok(())
        }
        (Conv::JsonText, Value::String(s)) => {
            out.push_str(s);
            Ok(())
        }
        (Conv::JsonText, v) => {
            out.push_str(&v.to_string());
            Ok(())
        }
        (c, v) => Err(format!("a {c:?} value cannot be {v}")),
    }
}

/// Postgres' largest `numeric(p, s)` precision (`NUMERIC_MAX_PRECISION`).
const MAX_NUMERIC_PRECISION: i32 = 1000;
/// Postgres' largest numeric display scale (`NUMERIC_DSCALE_MAX`).
const MAX_NUMERIC_SCALE: u64 = 0x3FFF;
/// Bytes of the largest unscaled numeric value: 131,072 digits before the point and
/// `MAX_NUMERIC_SCALE` after it need about 61,000 bytes.
const MAX_DECIMAL_BYTES: usize = 64 * 1024;
/// Postgres' longest bit string (`VARBITMAXLEN`: `MaxAttrSize` bytes of bits).
const MAX_BITS: usize = 83_886_080;

/// Checks a Connect decimal's scale and unscaled size against what Postgres' numeric holds
/// (a corrupt record must not make [`unscaled_to_decimal`] pad gigabytes of zeros, or divide
/// a megabyte-long number digit by digit); returns the scale.
fn check_decimal(bytes: &[u8], scale: u64) -> Result<u32, String> {
    if scale > MAX_NUMERIC_SCALE {
        return Err(format!(
            "decimal scale {scale} is beyond numeric's largest, {MAX_NUMERIC_SCALE}"
        ));
    }
    if bytes.len() > MAX_DECIMAL_BYTES {
        return Err(format!(
            "decimal of {} bytes is longer than numeric's largest value",
            bytes.len()
        ));
    }
    Ok(scale as u32)
}

/// Postgres' `infinity` timestamp (i64::MAX µs since 2000) in µs since 1970, as Debezium
/// reports it; `-infinity` likewise (i64::MIN since 2000, clamped).
const PG_INFINITY_US: i64 = 9_223_372_036_825_200_000;
const PG_MINUS_INFINITY_US: i64 = -9_223_372_036_832_400_000;

fn to_micros(v: i64, per_sec: i64) -> i64 {
    match per_sec {
        1_000 => v.saturating_mul(1_000),
        1_000_000_000 => v.div_euclid(1_000),
        _ => v,
    }
}

/// `YYYY-MM-DD` (`YYYY-MM-DD BC` before year 1) of days since 1970.
fn write_date(days: i64, out: &mut String) {
    let (y, m, d) = civil_from_days(days);
    if y <= 0 {
        let _ = write!(out, "{:04}-{m:02}-{d:02} BC", 1 - y);
    } else {
        let _ = write!(out, "{y:04}-{m:02}-{d:02}");
    }
}

/// `HH:MM:SS.ffffff` of µs since midnight.
fn write_clock(us: i64, out: &mut String) {
    let (secs, frac) = (us / 1_000_000, us % 1_000_000);
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}.{frac:06}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
}

/// ISO 8601 duration → Postgres interval text (`1 years 2 mons 3 days 04:05:06.780000`).
fn iso_interval(s: &str, out: &mut String) -> Result<(), String> {
    let bad = || format!("invalid ISO 8601 duration {s:?}");
    let body = s.strip_prefix('P').ok_or_else(bad)?;
    let (date, time) = body.split_once('T').unwrap_or((body, ""));
    let mut parts = Vec::new();
    let mut num = String::new();
    for c in date.chars() {
        match c {
            'Y' | 'M' | 'W' | 'D' => {
                let n: i64 = num.parse().map_err(|_| bad())?;
                num.clear();
                match c {
                    'Y' => parts.push(format!("{n} years")),
                    'M' => parts.push(format!("{n} mons")),
                    'W' => parts.push(format!("{} days", n.checked_mul(7).ok_or_else(bad)?)),
                    _ => parts.push(format!("{n} days")),
                }
            }
            _ => num.push(c),
        }
    }
    let mut us: i128 = 0;
    for c in time.chars() {
        match c {
            'H' | 'M' | 'S' => {
                let unit: i128 = match c {
                    'H' => 3_600_000_000,
                    'M' => 60_000_000,
                    _ => 1_000_000,
                };
                let (int, frac) = num.split_once('.').unwrap_or((&num, ""));
                let neg = int.starts_with('-');
                let i: i128 = int.parse().map_err(|_| bad())?;
                if !frac.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                let mut f: i128 = 0;
                for k in 0..6 {
                    let d = frac.as_bytes().get(k).map_or(0, |b| i128::from(b - b'0'));
                    f = f * 10 + d;
                }
                let f = if neg { -f } else { f } * (unit / 1_000_000);
                // Checked: a corrupt record's `PT<40 digits>H` overflows even an i128.
                us = i
                    .checked_mul(unit)
                    .and_then(|v| v.checked_add(f))
                    .and_then(|v| v.checked_add(us))
                    .ok_or_else(bad)?;
                num.clear();
            }
            _ => num.push(c),
        }
    }
    if !num.is_empty() {
        return Err(bad());
    }
    out.push_str(&parts.join(" "));
    if us != 0 || parts.is_empty() {
        if !parts.is_empty() {
            out.push(' ');
        }
        let micros = i64::try_from(us).map_err(|_| bad())?;
        write_text(&Conv::MicroDuration, &Value::from(micros), out)?;
    }
    Ok(())
}

/// A big-endian two's complement unscaled value and its scale → decimal text.
pub fn unscaled_to_decimal(bytes: &[u8], scale: u32) -> String {
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    // Magnitude (big-endian): two's complement negated when negative.
    let mut mag: Vec<u8> = bytes.to_vec();
    if negative {
        for b in mag.iter_mut() {
            *b = !*b;
        }
        for b in mag.iter_mut().rev() {
            let (v, carry) = b.overflowing_add(1);
            *b = v;
            if !carry {
                break;
            }
        }
    }
    // Repeated division by 10 on the big-endian magnitude.
    let mut digits = Vec::new();
    while mag.iter().any(|b| *b != 0) {
        let mut rem = 0u32;
        for b in mag.iter_mut() {
            let cur = (rem << 8) | u32::from(*b);
            *b = (cur / 10) as u8;
            rem = cur % 10;
        }
        digits.push(b'0' + rem as u8);
    }
    let scale = scale as usize;
    while digits.len() <= scale {
        digits.push(b'0');
    }
    digits.reverse();
    let (int, frac) = digits.split_at(digits.len() - scale);
    let mut s = String::with_capacity(digits.len() + 2);
    if negative {
        s.push('-');
    }
    s.push_str(std::str::from_utf8(int).unwrap_or("0"));
    if scale > 0 {
        s.push('.');
        s.push_str(std::str::from_utf8(frac).unwrap_or(""));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decimals_from_twos_complement() {
        assert_eq!(unscaled_to_decimal(&[0x12, 0xD6, 0x87], 2), "12345.67");
        assert_eq!(unscaled_to_decimal(&[0xFF], 2), "-0.01");
        assert_eq!(unscaled_to_decimal(&[], 3), "0.000");
        assert_eq!(
            unscaled_to_decimal(&[0x80, 0, 0, 0, 0, 0, 0, 0], 0),
            "-9223372036854775808"
        );
        let d = Conv::Decimal { scale: 2 };
        assert_eq!(to_text(&d, &json!("/w==")).unwrap(), "-0.01");
        assert_eq!(to_text(&d, &json!(1.5)).unwrap(), "1.5");
        let v = json!({"scale": 3, "value": "AQ=="});
        assert_eq!(to_text(&Conv::VariableScale, &v).unwrap(), "0.001");
    }

    #[test]
    fn temporals_render_as_postgres_text() {
        assert_eq!(to_text(&Conv::Date, &json!(19782)).unwrap(), "2024-02-29");
        assert_eq!(
            to_text(&Conv::Date, &json!(-719528)).unwrap(),
            "0001-01-01 BC"
        );
        let ts = Conv::Timestamp { per_sec: 1_000_000 };
        assert_eq!(
            to_text(&ts, &json!(-1)).unwrap(),
            "1969-12-31 23:59:59.999999"
        );
        let t = Conv::Time { per_sec: 1_000 };
        assert_eq!(to_text(&t, &json!(1500)).unwrap(), "00:00:01.500000");
        assert!(to_text(&t, &json!(-1)).is_err());
        assert_eq!(
            to_text(&Conv::ZonedTimestamp, &json!("2024-02-29T11:45:30.123456Z")).unwrap(),
            "2024-02-29T11:45:30.123456+00"
        );
        assert_eq!(
            to_text(&Conv::MicroDuration, &json!(-1_000_001)).unwrap(),
            "-00:00:01.000001"
        );
        assert_eq!(
            to_text(&Conv::MicroDuration, &json!(90_000_000_000i64)).unwrap(),
            "1 days 01:00:00.000000"
        );
        assert_eq!(
            to_text(&Conv::IsoInterval, &json!("P1Y2M3DT4H5M6.78S")).unwrap(),
            "1 years 2 mons 3 days 04:05:06.780000"
        );
    }

    #[test]
    fn arrays_bits_bytes_and_placeholders() {
        let a = Conv::Array(Box::new(Conv::Text));
        assert_eq!(
            to_text(&a, &json!(["x", null, "a\"b"])).unwrap(),
            r#"{"x",NULL,"a\"b"}"#
        );
        assert_eq!(to_text(&Conv::Bytes, &json!("AP8Q")).unwrap(), "\\x00ff10");
        assert_eq!(
            to_text(&Conv::Bits { length: 8 }, &json!("qg==")).unwrap(),
            "10101010"
        );
        assert_eq!(
            to_text(&Conv::Bits { length: 3 }, &json!("BQ==")).unwrap(),
            "101"
        );
        let p = "__debezium_unavailable_value";
        assert!(is_unavailable(&Conv::Text, &json!(p), p));
        assert!(is_unavailable(&a, &json!([p]), p));
        assert!(!is_unavailable(&Conv::Int, &json!(5), p));
        let b64 = tidemark_debezium::encoder::base64(p.as_bytes());
        assert!(is_unavailable(&Conv::Bytes, &json!(b64), p));
    }

    #[test]
    fn connect_schemas_map_to_postgres_types() {
        let (st, conv, _) = plan_type(
            &json!({"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal",
            "parameters": {"scale": "2", "connect.decimal.precision": "10"}}),
        );
        assert_eq!(st.display, "numeric(10,2)");
        assert_eq!(conv, Conv::Decimal { scale: 2 });
        let (st, _, _) = plan_type(&json!({"type": "array", "items": {"type": "int32"}}));
        assert_eq!(st.display, "integer[]");
        let (st, _, fb) =
            plan_type(&json!({"type": "struct", "name": "io.debezium.data.geometry.Point"}));
        assert!(fb);
        assert_eq!(st.name, "text");
    }

    #[test]
    fn doubles_are_parsed_exactly() {
        // 17 significant digits: serde_json without `float_roundtrip` lands one ULP off on
        // these; the workspace enables it, and this test fails if that is ever lost.
        let value = br#"{"f8":2082268357.5715017,"fa":[4125368741.5383844,null,1e-7]}"#;
        let img: Value = serde_json::from_slice(value).unwrap();
        let f8 = to_text(&Conv::Float, &img["f8"]).unwrap();
        assert_eq!(
            f8.parse::<f64>().unwrap().to_bits(),
            "2082268357.5715017".parse::<f64>().unwrap().to_bits()
        );
        let arr = Conv::Array(Box::new(Conv::Float));
        let fa = to_text(&arr, &img["fa"]).unwrap();
        let want = format!(
            "{{\"{}\",NULL,\"{}\"}}",
            "4125368741.5383844".parse::<f64>().unwrap(),
            1e-7f64
        );
        assert_eq!(fa, want);
    }

    #[test]
    fn out_of_range_values_are_errors_not_panics_or_huge_allocations() {
        // ISO durations: a non-digit fraction (was a u8 underflow), overflowing weeks and
        // hours (were i64 / i128 overflows).
        for bad in ["PT1.-5S", "PT1.5xS", "P9223372036854775807W"] {
            let e = to_text(&Conv::IsoInterval, &json!(bad)).unwrap_err();
            assert!(e.contains("invalid ISO 8601 duration"), "{bad}: {e}");
        }
        let huge = format!("PT{}H", "9".repeat(38));
        assert!(to_text(&Conv::IsoInterval, &json!(huge)).is_err());
        // Decimal scales beyond numeric's (were a multi-gigabyte zero padding) and scales
        // that do not fit 32 bits (were truncated to a wrong value).
        let v = json!({"scale": 4_000_000_000u64, "value": "AQ=="});
        let e = to_text(&Conv::VariableScale, &v).unwrap_err();
        assert!(e.contains("decimal scale 4000000000"), "{e}");
        let v = json!({"scale": 4_294_967_299u64, "value": "AQ=="});
        assert!(to_text(&Conv::VariableScale, &v).is_err());
        let d = Conv::Decimal { scale: 100_000 };
        assert!(to_text(&d, &json!("AQ==")).is_err());
        // A numeric precision beyond Postgres' (its typmod overflowed an i32) is unconstrained.
        let (st, conv, _) = plan_type(&json!({"type": "bytes",
            "name": "org.apache.kafka.connect.data.Decimal",
            "parameters": {"scale": "32767", "connect.decimal.precision": "32767"}}));
        assert_eq!((st.modifier, conv), (-1, Conv::Decimal { scale: 32767 }));
        let (st, _, _) = plan_type(&json!({"type": "bytes",
            "name": "org.apache.kafka.connect.data.Decimal",
            "parameters": {"scale": "2", "connect.decimal.precision": "10"}}));
        assert_eq!(st.modifier, (10 << 16 | 2) + 4);
        // A bit length beyond Postgres' longest bit string.
        let b = Conv::Bits { length: 1 << 40 };
        assert!(to_text(&b, &json!("AQ==")).unwrap_err().contains("bits"));
    }
}
