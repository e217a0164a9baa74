//! Parsing the binary (send/recv) form of scalar values, and rendering it as the server's text
//! for columns kept as Utf8.
//!
//! # Traps
//! - jsonb's binary form is a version byte (1) followed by the text.
//! - money's binary form is `i64` in the currency's minor unit (cents for `$`).
//! - `"char"` sends one raw byte; non-ASCII bytes print as `\ooo` octal.
//! - Geometric types, ranges and multiranges: see [`geometric`] and [`range`] (float8
//!   components in `float8out`'s shortest form; range bounds quoted as `range_out` does).
//! - float4 prints in fixed notation only below 1e6 (`float4out`: `1.234567e+06`), float8
//!   below 1e15.
//! - money prints as `cash_out` does in the C/en_US monetary locale: `-$1,234.56`, `$0.00`.
//! - User-defined ranges, multiranges and composites: see [`structured`](super::structured).

use std::borrow::Cow;

use arrow_buffer::IntervalMonthDayNano;

use super::{datetime, geometric, net, numeric, range, text, Kind, Parsed, Scalar, Target};
use crate::error::ValueError;

fn err(kind: Kind, offset: usize, reason: &'static str) -> ValueError {
    ValueError::InvalidBinary {
        type_name: kind.name(),
        offset,
        reason,
    }
}

fn fixed<const N: usize>(kind: Kind, b: &[u8]) -> Result<[u8; N], ValueError> {
    b.try_into()
        .map_err(|_| err(kind, b.len().min(N), "wrong length"))
}

/// Whether [`parse`] handles `kind` for a column stored as `target` ([`render_text`] renders
/// every kind but `Other`, also those whose columns are normally native: they occur as fields
/// of composites and bounds of user-defined ranges).
pub(crate) fn supported(kind: Kind, _target: Target) -> bool {
    kind != Kind::Other
}

/// Parses one scalar's binary form for a column stored as `target`.
pub(crate) fn parse(kind: Kind, target: Target, b: &[u8]) -> Result<Parsed<'_>, ValueError> {
    if target == Target::Text {
        return Ok(Parsed::Value(Scalar::Str(render_text(kind, b)?)));
    }
    let v = match kind {
        Kind::Bool => match fixed::<1>(kind, b)? {
            [0] => Scalar::Bool(false),
            [1] => Scalar::Bool(true),
            _ => return Err(err(kind, 0, "expected 0 or 1")),
        },
        Kind::Int2 => Scalar::I16(i16::from_be_bytes(fixed(kind, b)?)),
        Kind::Int4 => Scalar::I32(i32::from_be_bytes(fixed(kind, b)?)),
        Kind::Int8 => Scalar::I64(i64::from_be_bytes(fixed(kind, b)?)),
        Kind::Oid => Scalar::U32(u32::from_be_bytes(fixed(kind, b)?)),
        Kind::Float4 => Scalar::F32(f32::from_be_bytes(fixed(kind, b)?)),
        Kind::Float8 => Scalar::F64(f64::from_be_bytes(fixed(kind, b)?)),
        Kind::Numeric => {
            let s = numeric::render_numeric_binary(b)?;
            return numeric::parse_numeric_text(&s, target);
        }
        Kind::Money => Scalar::Dec128(i64::from_be_bytes(fixed(kind, b)?) as i128),
        Kind::Bytea => Scalar::Bytes(Cow::Borrowed(b)),
        Kind::Uuid => Scalar::Uuid(fixed(kind, b)?),
        Kind::Date => Scalar::Date(datetime::date_from_pg(i32::from_be_bytes(fixed(kind, b)?))?),
        Kind::Time => {
            let us = i64::from_be_bytes(fixed(kind, b)?);
            if !(0..=86_400_000_000).contains(&us) {
                return Err(err(kind, 0, "time out of range"));
            }
            Scalar::Time(us)
        }
        Kind::Timestamp | Kind::TimestampTz => {
            let us = i64::from_be_bytes(fixed(kind, b)?);
            Scalar::Timestamp(datetime::timestamp_from_pg(us, kind.name())?)
        }
        Kind::Interval => Scalar::Interval(interval(b)?),
        _ => Scalar::Str(render_text(kind, b)?),
    };
    Ok(Parsed::Value(v))
}

fn interval(b: &[u8]) -> Result<IntervalMonthDayNano, ValueError> {
    let b: [u8; 16] = fixed(Kind::Interval, b)?;
    let us = i64::from_be_bytes(b[0..8].try_into().expect("8 bytes"));
    let days = i32::from_be_bytes(b[8..12].try_into().expect("4 bytes"));
    let months = i32::from_be_bytes(b[12..16].try_into().expect("4 bytes"));
    let nanos = us.checked_mul(1000).ok_or_else(|| ValueError::OutOfRange {
        type_name: "interval",
        target: "Interval(MonthDayNano)".into(),
        reason: "time part overflows i64 nanoseconds",
    })?;
    Ok(IntervalMonthDayNano::new(months, days, nanos))
}

/// The server's text form of a binary value, for columns kept as Utf8.
pub(crate) fn render_text(kind: Kind, b: &[u8]) -> Result<Cow<'_, str>, ValueError> {
    Ok(match kind {
        Kind::Text | Kind::Json => Cow::Borrowed(text::utf8(b)?),
        Kind::Jsonb => match b.split_first() {
            Some((1, rest)) => Cow::Borrowed(text::utf8(rest)?),
            _ => return Err(err(kind, 0, "unsupported jsonb version")),
        },
        Kind::Char => Cow::Owned(render_char(b)?),
        Kind::Numeric => Cow::Owned(numeric::render_numeric_binary(b)?),
        Kind::TimeTz => Cow::Owned(datetime::render_timetz(b)?),
        Kind::Inet => Cow::Owned(net::render_inet(b, "inet")?),
        Kind::Cidr => Cow::Owned(net::render_inet(b, "cidr")?),
        Kind::MacAddr => Cow::Owned(net::render_mac(b, 6, "macaddr")?),
        Kind::MacAddr8 => Cow::Owned(net::render_mac(b, 8, "macaddr8")?),
        Kind::Bit => Cow::Owned(net::render_bits(b)?),
        Kind::Geo(g) => Cow::Owned(geometric::render(g, b)?),
        Kind::Range(r) => Cow::Owned(range::render_range(r, b)?),
        Kind::Multirange(r) => Cow::Owned(range::render_multirange(r, b)?),
        Kind::Bool => Cow::Borrowed(match fixed::<1>(kind, b)? {
            [0] => "f",
            _ => "t",
        }),
        Kind::Int2 => Cow::Owned(i16::from_be_bytes(fixed(kind, b)?).to_string()),
        Kind::Int4 => Cow::Owned(i32::from_be_bytes(fixed(kind, b)?).to_string()),
        Kind::Int8 => Cow::Owned(i64::from_be_bytes(fixed(kind, b)?).to_string()),
        Kind::Oid => Cow::Owned(u32::from_be_bytes(fixed(kind, b)?).to_string()),
        Kind::Bytea => Cow::Owned(render_bytea_hex(b)),
        Kind::Uuid => Cow::Owned(render_uuid(&fixed(kind, b)?)),
        Kind::Time => {
            let mut s = String::new();
            datetime::render_time(&mut s, i64::from_be_bytes(fixed(kind, b)?));
            Cow::Owned(s)
        }
        Kind::Float4 => {
            let mut s = String::new();
            geometric::push_float4(&mut s, f32::from_be_bytes(fixed(kind, b)?));
            Cow::Owned(s)
        }
        Kind::Float8 => {
            let mut s = String::new();
            geometric::push_float8(&mut s, f64::from_be_bytes(fixed(kind, b)?));
            Cow::Owned(s)
        }
        Kind::Money => Cow::Owned(render_money(i64::from_be_bytes(fixed(kind, b)?))),
        Kind::Date => {
            let mut s = String::new();
            datetime::render_date(&mut s, i32::from_be_bytes(fixed(kind, b)?));
            Cow::Owned(s)
        }
        Kind::Timestamp | Kind::TimestampTz => {
            let mut s = String::new();
            let us = i64::from_be_bytes(fixed(kind, b)?);
            datetime::render_timestamp(&mut s, us, kind == Kind::TimestampTz);
            Cow::Owned(s)
        }
        Kind::Interval => {
            let b: [u8; 16] = fixed(kind, b)?;
            let us = i64::from_be_bytes(b[0..8].try_into().expect("8 bytes"));
            let days = i32::from_be_bytes(b[8..12].try_into().expect("4 bytes"));
            let months = i32::from_be_bytes(b[12..16].try_into().expect("4 bytes"));
            let mut s = String::new();
            datetime::render_interval(&mut s, us, days, months);
            Cow::Owned(s)
        }
        Kind::Other => {
            return Err(ValueError::BinaryUnsupported {
                type_name: kind.name().to_owned(),
            })
        }
    })
}

/// `cash_out` in the C / en_US monetary locale (module traps of `pg_value`): `-$1,234.56`.
fn render_money(cents: i64) -> String {
    let abs = cents.unsigned_abs();
    let int = (abs / 100).to_string();
    let mut s = String::with_capacity(int.len() + int.len() / 3 + 5);
    if cents < 0 {
        s.push('-');
    }
    s.push('$');
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i).is_multiple_of(3) {
            s.push(',');
        }
        s.push(c);
    }
    s.push_str(&format!(".{:02}", abs % 100));
    s
}

/// `charout`: empty for `\0`, `\ooo` for non-ASCII bytes, else the character.
fn render_char(b: &[u8]) -> Result<String, ValueError> {
    match b {
        [] | [0] => Ok(String::new()),
        [c] if c.is_ascii() => Ok((*c as char).to_string()),
        [c] => Ok(format!("\\{c:03o}")),
        _ => Err(err(Kind::Char, 1, "expected one byte")),
    }
}

fn render_bytea_hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(2 + b.len() * 2);
    s.push_str("\\x");
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

fn render_uuid(u: &[u8; 16]) -> String {
    let h: String = u.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}
