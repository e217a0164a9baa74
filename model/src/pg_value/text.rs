//! Parsing the text output form of scalar values.

use std::borrow::Cow;

use super::{datetime, numeric, Kind, Parsed, Scalar, Target};
use crate::error::ValueError;

/// Checks UTF-8 (Tidemark requires a UTF-8 server encoding).
pub(crate) fn utf8(b: &[u8]) -> Result<&str, ValueError> {
    std::str::from_utf8(b).map_err(|e| ValueError::InvalidUtf8 {
        offset: e.valid_up_to(),
    })
}

fn err(kind: Kind, offset: usize, reason: &'static str) -> ValueError {
    ValueError::InvalidText {
        type_name: kind.name(),
        offset,
        reason,
    }
}

/// Parses one scalar's text form for a column stored as `target`.
pub(crate) fn parse(kind: Kind, target: Target, b: &[u8]) -> Result<Parsed<'_>, ValueError> {
    let s = utf8(b)?;
    if target == Target::Text {
        return Ok(Parsed::Value(Scalar::Str(Cow::Borrowed(s))));
    }
    let v = match kind {
        Kind::Bool => Scalar::Bool(parse_bool(s).ok_or_else(|| err(kind, 0, "expected t or f"))?),
        Kind::Int2 => Scalar::I16(int(kind, s)?),
        Kind::Int4 => Scalar::I32(int(kind, s)?),
        Kind::Int8 => Scalar::I64(int(kind, s)?),
        Kind::Oid => Scalar::U32(int(kind, s)?),
        Kind::Float4 => Scalar::F32(float(kind, s)? as f32),
        Kind::Float8 => Scalar::F64(float(kind, s)?),
        Kind::Numeric => return numeric::parse_numeric_text(s, target),
        Kind::Money => Scalar::Dec128(numeric::parse_money_text(s)?),
        Kind::Bytea => Scalar::Bytes(Cow::Owned(parse_bytea(s)?)),
        Kind::Uuid => Scalar::Uuid(parse_uuid(s)?),
        Kind::Date => Scalar::Date(datetime::parse_date(s)?),
        Kind::Time => Scalar::Time(datetime::parse_time(s)?),
        Kind::Timestamp => Scalar::Timestamp(datetime::parse_timestamp(s, false)?),
        Kind::TimestampTz => Scalar::Timestamp(datetime::parse_timestamp(s, true)?),
        Kind::Interval => Scalar::Interval(datetime::parse_interval(s)?),
        Kind::Text
        | Kind::Char
        | Kind::Json
        | Kind::Jsonb
        | Kind::TimeTz
        | Kind::Inet
        | Kind::Cidr
        | Kind::MacAddr
        | Kind::MacAddr8
        | Kind::Bit
        | Kind::Geo(_)
        | Kind::Range(_)
        | Kind::Multirange(_)
        | Kind::Other => Scalar::Str(Cow::Borrowed(s)),
    };
    Ok(Parsed::Value(v))
}

fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "t" | "true" | "TRUE" | "y" | "yes" | "on" | "1" => Some(true),
        "f" | "false" | "FALSE" | "n" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

fn int<T: std::str::FromStr>(kind: Kind, s: &str) -> Result<T, ValueError> {
    // Rust accepts a leading '+', as does int4in; anything else is rejected by both.
    s.parse()
        .map_err(|_| err(kind, 0, "not an integer in range"))
}

fn float(kind: Kind, s: &str) -> Result<f64, ValueError> {
    match s {
        "NaN" => Ok(f64::NAN),
        "Infinity" => Ok(f64::INFINITY),
        "-Infinity" => Ok(f64::NEG_INFINITY),
        _ => {
            let v: f64 = s.parse().map_err(|_| err(kind, 0, "not a number"))?;
            // Rust also accepts "inf"/"nan" spellings Postgres never prints: reject them.
            if v.is_finite() {
                Ok(v)
            } else {
                Err(err(kind, 0, "not a number"))
            }
        }
    }
}

/// bytea text: hex (`\x0a0b`) or the legacy escape form (`a\000\\`).
pub(crate) fn parse_bytea(s: &str) -> Result<Vec<u8>, ValueError> {
    let e = |offset, reason| err(Kind::Bytea, offset, reason);
    let b = s.as_bytes();
    if let Some(hex) = s.strip_prefix("\\x") {
        let h = hex.as_bytes();
        if h.len() % 2 != 0 {
            return Err(e(b.len(), "odd number of hex digits"));
        }
        return h
            .chunks_exact(2)
            .enumerate()
            .map(|(i, p)| match (hex_val(p[0]), hex_val(p[1])) {
                (Some(a), Some(b)) => Ok(a << 4 | b),
                _ => Err(e(2 + 2 * i, "invalid hex digit")),
            })
            .collect();
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c != b'\\' {
            out.push(c);
            i += 1;
        } else if b.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            let oct = b
                .get(i + 1..i + 4)
                .filter(|o| o[0] <= b'3' && o.iter().all(|d| (b'0'..=b'7').contains(d)))
                .ok_or_else(|| e(i, "invalid escape"))?;
            out.push((oct[0] - b'0') << 6 | (oct[1] - b'0') << 3 | (oct[2] - b'0'));
            i += 4;
        }
    }
    Ok(out)
}

pub(crate) fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// uuid text: 32 hex digits, hyphens anywhere between groups of 4 (as `uuid_in`), braces.
pub(crate) fn parse_uuid(s: &str) -> Result<[u8; 16], ValueError> {
    let e = |offset, reason| err(Kind::Uuid, offset, reason);
    let body = s
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .unwrap_or(s);
    let mut out = [0u8; 16];
    let mut n = 0;
    for (i, c) in body.bytes().enumerate() {
        if c == b'-' {
            continue;
        }
        let v = hex_val(c).ok_or_else(|| e(i, "invalid hex digit"))?;
        let slot = out.get_mut(n / 2).ok_or_else(|| e(i, "too many digits"))?;
        *slot |= if n % 2 == 0 { v << 4 } else { v };
        n += 1;
    }
    if n != 32 {
        return Err(e(s.len(), "expected 32 hex digits"));
    }
    Ok(out)
}
