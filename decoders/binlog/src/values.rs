//! Column values in the binlog row format (`Field::pack`) → [`MysqlValue`]s, per column type
//! and its table-map metadata.
//!
//! | type | bytes |
//! |---|---|
//! | TINY/SHORT/INT24/LONG/LONGLONG | 1/2/3/4/8 little-endian; sign from the column |
//! | FLOAT/DOUBLE | 4/8 IEEE little-endian |
//! | NEWDECIMAL | packed decimal, size from precision and scale (`decimal.rs`) |
//! | YEAR | 1 byte, 0 or year − 1900 |
//! | DATE | 3 bytes LE: day 5 bits, month 4, year 15 |
//! | TIME2 / DATETIME2 / TIMESTAMP2 | big-endian 3/5/4 bytes + (fsp+1)/2 fraction bytes |
//! | VARCHAR / STRING | 1 length byte if the max byte length < 256, else 2 |
//! | BLOB/TEXT/JSON/GEOMETRY | metadata-many (1–4) length bytes |
//! | ENUM / SET | 1–2 / 1–8 bytes LE (index / bitmask) |
//! | BIT | (bits+7)/8 bytes big-endian |
//!
//! # Traps
//! - TIMESTAMP2 is UTC seconds since the epoch; DATETIME2 a wall-clock value. 0 seconds in a
//!   TIMESTAMP is the zero timestamp `0000-00-00 00:00:00`, not 1970.
//! - Negative TIME2 with a fraction borrows from the integer part (`my_time_packed_from_binary`).
//! - Zero and partial dates (month or day 0) and impossible dates stored under
//!   `ALLOW_INVALID_DATES` (Feb 30) are *values* in MySQL: they become an `Invalid` marker with
//!   MySQL's text, never a shifted date.

use std::fmt::Write;
use std::sync::Arc;

use arrow_buffer::i256;
use tidemark_model::mysql_value::MysqlValue;
use tidemark_model::pg_value::days_from_civil;

use crate::charset::{self, Charset};
use crate::decimal;
use crate::reader::{be_uint, le_uint, Reader};

/// How one column's values are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Int {
        len: usize,
        unsigned: bool,
    },
    Float,
    Double,
    Decimal {
        precision: u8,
        scale: u8,
        size: usize,
    },
    Year,
    Date,
    /// Old TIME (3-byte HHMMSS).
    Time,
    Time2 {
        fsp: u8,
    },
    /// Old DATETIME (8-byte YYYYMMDDhhmmss).
    DateTime,
    DateTime2 {
        fsp: u8,
    },
    /// Old TIMESTAMP (4 bytes LE).
    Timestamp,
    Timestamp2 {
        fsp: u8,
    },
    Str {
        len_bytes: usize,
        charset: Charset,
    },
    Bytes {
        len_bytes: usize,
        /// `BINARY(n)`: n. The binlog stores fixed binary values without their trailing
        /// 0x00 padding (`Field_string::pack` strips the pad character); SELECT returns all n
        /// bytes. Padded back so streamed and snapshot values agree. 0 for varying types.
        pad_to: usize,
    },
    /// MySQL binary JSON.
    Json {
        len_bytes: usize,
    },
    Geometry {
        len_bytes: usize,
    },
    Enum {
        pack: usize,
        labels: Arc<[String]>,
    },
    Set {
        pack: usize,
        labels: Arc<[String]>,
    },
    Bit {
        nbytes: usize,
        bits: u16,
    },
}

/// A decoded value: a plain value, a value Arrow cannot hold (MySQL's text of it), or a
/// geometry with a non-zero SRID.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decoded<'s> {
    Value(MysqlValue<'s>),
    Invalid(&'s str),
    Srid(MysqlValue<'s>, &'s str),
}

/// Reusable buffers (one per decoder), so rows allocate nothing in the steady state.
#[derive(Debug, Default)]
pub struct Scratch {
    pub text: String,
    pub detail: String,
    /// Padded fixed binary values.
    pub bytes: Vec<u8>,
}

const US: i64 = 1_000_000;

fn length_prefixed<'a>(r: &mut Reader<'a>, len_bytes: usize) -> Result<&'a [u8], String> {
    let n = r.uint(len_bytes).map_err(|t| truncated(t.offset))?;
    let n = usize::try_from(n).map_err(|_| "length too large".to_string())?;
    r.take(n).map_err(|t| truncated(t.offset))
}

fn truncated(at: usize) -> String {
    format!("row data truncated at byte {at}")
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970 of a valid date, `None` for zero/partial/impossible dates.
fn valid_days(y: i64, m: u32, d: u32) -> Option<i64> {
    ((1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m)).then(|| days_from_civil(y, m, d))
}

/// Fraction bytes of TIME2/DATETIME2/TIMESTAMP2 for `fsp` digits → µs.
fn fraction(r: &mut Reader<'_>, fsp: u8) -> Result<(i64, usize), String> {
    let n = usize::from(fsp).div_ceil(2);
    let b = r.take(n).map_err(|t| truncated(t.offset))?;
    let v = be_uint(b) as i64;
    let us = match n {
        0 => 0,
        1 => v * 10_000,
        2 => v * 100,
        _ => v,
    };
    if us >= US {
        return Err("fractional seconds out of range".into());
    }
    Ok((us, n))
}

fn write_fraction(us: i64, fsp: u8, out: &mut String) {
    if fsp > 0 {
        let digits = format!("{:06}", us);
        out.push('.');
        out.push_str(&digits[..usize::from(fsp.min(6))]);
    }
}

/// Decodes one non-null value of `kind` from `r`.
pub fn decode<'a: 's, 's>(
    r: &mut Reader<'a>,
    kind: &'s Kind,
    scratch: &'s mut Scratch,
) -> Result<Decoded<'s>, String> {
    let tr = |t: crate::reader::Truncated| truncated(t.offset);
    let v = match kind {
        Kind::Int { len, unsigned } => {
            let raw = r.uint(*len).map_err(tr)?;
            if *unsigned {
                MysqlValue::UInt(raw)
            } else {
                let shift = 64 - 8 * *len as u32;
                MysqlValue::Int(((raw << shift) as i64) >> shift)
            }
        }
        Kind::Float => MysqlValue::F32(f32::from_bits(r.u32().map_err(tr)?)),
        Kind::Double => MysqlValue::F64(f64::from_bits(r.u64().map_err(tr)?)),
        Kind::Decimal {
            precision,
            scale,
            size,
        } => {
            let b = r.take(*size).map_err(tr)?;
            let v = decimal::decode(b, *precision, *scale).ok_or("invalid decimal digits")?;
            if *precision <= 38 {
                MysqlValue::Decimal128(v.as_i128())
            } else {
                MysqlValue::Decimal256(v)
            }
        }
        Kind::Year => {
            let y = r.u8().map_err(tr)?;
            MysqlValue::Int(if y == 0 { 0 } else { 1900 + i64::from(y) })
        }
        Kind::Date => {
            let v = r.uint(3).map_err(tr)? as u32;
            let (d, m, y) = (v & 31, (v >> 5) & 15, i64::from(v >> 9));
            match valid_days(y, m, d) {
                Some(days) => MysqlValue::Date(days as i32),
                None => {
                    scratch.text.clear();
                    let _ = write!(scratch.text, "{y:04}-{m:02}-{d:02}");
                    return Ok(Decoded::Invalid(&scratch.text));
                }
            }
        }
        Kind::Time => {
            let raw = r.uint(3).map_err(tr)?;
            let v = ((raw << 40) as i64) >> 40;
            let a = v.abs();
            let secs = (a / 10_000) * 3600 + ((a / 100) % 100) * 60 + a % 100;
            MysqlValue::DurationUs(v.signum() * secs * US)
        }
        Kind::Time2 { fsp } => MysqlValue::DurationUs(time2(r, *fsp)?),
        Kind::DateTime => {
            let v = r.u64().map_err(tr)?;
            let (date, time) = (v / 1_000_000, v % 1_000_000);
            let parts = (
                (date / 10_000) as i64,
                ((date / 100) % 100) as u32,
                (date % 100) as u32,
                (time / 10_000) as i64,
                ((time / 100) % 100) as i64,
                (time % 100) as i64,
            );
            return datetime_value(parts, 0, 0, scratch);
        }
        Kind::DateTime2 { fsp } => {
            let int = be_uint(r.take(5).map_err(tr)?) as i64 - 0x80_0000_0000;
            let (us, _) = fraction(r, *fsp)?;
            if int < 0 {
                return Err("negative DATETIME2".into());
            }
            let ymd = int >> 17;
            let ym = ymd >> 5;
            let hms = int % (1 << 17);
            let parts = (
                ym / 13,
                (ym % 13) as u32,
                (ymd % 32) as u32,
                hms >> 12,
                (hms >> 6) % 64,
                hms % 64,
            );
            return datetime_value(parts, us, *fsp, scratch);
        }
        Kind::Timestamp => {
            let secs = i64::from(r.u32().map_err(tr)?);
            return Ok(timestamp_value(secs, 0, 0, scratch));
        }
        Kind::Timestamp2 { fsp } => {
            let secs = be_uint(r.take(4).map_err(tr)?) as i64;
            let (us, _) = fraction(r, *fsp)?;
            return Ok(timestamp_value(secs, us, *fsp, scratch));
        }
        Kind::Str { len_bytes, charset } => {
            let b = length_prefixed(r, *len_bytes)?;
            let s = charset::decode(b, *charset, &mut scratch.text).map_err(str::to_owned)?;
            MysqlValue::Str(s)
        }
        Kind::Bytes { len_bytes, pad_to } => {
            let b = length_prefixed(r, *len_bytes)?;
            if b.len() < *pad_to {
                scratch.bytes.clear();
                scratch.bytes.extend_from_slice(b);
                scratch.bytes.resize(*pad_to, 0);
                MysqlValue::Bytes(&scratch.bytes)
            } else {
                MysqlValue::Bytes(b)
            }
        }
        Kind::Json { len_bytes } => {
            let b = length_prefixed(r, *len_bytes)?;
            crate::json::render(b, &mut scratch.text).map_err(str::to_owned)?;
            MysqlValue::Str(&scratch.text)
        }
        Kind::Geometry { len_bytes } => {
            let b = length_prefixed(r, *len_bytes)?;
            if b.len() < 4 {
                return Err("geometry shorter than its SRID".into());
            }
            let srid = le_uint(&b[..4]) as u32;
            let wkb = MysqlValue::Bytes(&b[4..]);
            if srid == 0 {
                wkb
            } else {
                scratch.detail.clear();
                let _ = write!(scratch.detail, "{srid}");
                return Ok(Decoded::Srid(wkb, &scratch.detail));
            }
        }
        Kind::Enum { pack, labels } => {
            let i = r.uint(*pack).map_err(tr)? as usize;
            let label = match i {
                0 => "",
                i => labels
                    .get(i - 1)
                    .ok_or_else(|| format!("enum index {i} beyond the {} labels", labels.len()))?,
            };
            MysqlValue::Str(label)
        }
        Kind::Set { pack, labels } => {
            let bits = r.uint(*pack).map_err(tr)?;
            scratch.text.clear();
            for i in 0..64usize {
                if bits & (1 << i) != 0 {
                    let l = labels
                        .get(i)
                        .ok_or_else(|| format!("set bit {i} beyond the {} labels", labels.len()))?;
                    if !scratch.text.is_empty() {
                        scratch.text.push(',');
                    }
                    scratch.text.push_str(l);
                }
            }
            MysqlValue::Str(&scratch.text)
        }
        Kind::Bit { nbytes, bits } => {
            let v = be_uint(r.take(*nbytes).map_err(tr)?);
            if *bits == 1 {
                MysqlValue::Bool(v & 1 == 1)
            } else {
                MysqlValue::UInt(v)
            }
        }
    };
    Ok(Decoded::Value(v))
}

/// TIME2 → signed µs (`my_time_packed_from_binary` + `TIME_from_longlong_time_packed`).
fn time2(r: &mut Reader<'_>, fsp: u8) -> Result<i64, String> {
    let tr = |t: crate::reader::Truncated| truncated(t.offset);
    let packed: i64 = match fsp {
        5 | 6 => be_uint(r.take(6).map_err(tr)?) as i64 - 0x8000_0000_0000,
        _ => {
            let mut int = be_uint(r.take(3).map_err(tr)?) as i64 - 0x80_0000;
            let n = usize::from(fsp).div_ceil(2);
            let mut frac = be_uint(r.take(n).map_err(tr)?) as i64;
            if int < 0 && frac != 0 {
                int += 1;
                frac -= 1 << (8 * n);
            }
            let mult = match n {
                1 => 10_000,
                2 => 100,
                _ => 0,
            };
            (int << 24) + frac * mult
        }
    };
    Ok(packed_time_us(packed))
}

/// A packed time (`MY_PACKED_TIME_MAKE`) → signed µs.
fn packed_time_us(packed: i64) -> i64 {
    let neg = packed < 0;
    let a = packed.unsigned_abs() as i64;
    let hms = a >> 24;
    let us = a % (1 << 24);
    let (h, m, s) = ((hms >> 12) % (1 << 10), (hms >> 6) % 64, hms % 64);
    let v = (h * 3600 + m * 60 + s) * US + us;
    if neg {
        -v
    } else {
        v
    }
}

type DateTimeParts = (i64, u32, u32, i64, i64, i64);

fn datetime_value<'s>(
    (y, mo, d, h, mi, s): DateTimeParts,
    us: i64,
    fsp: u8,
    scratch: &'s mut Scratch,
) -> Result<Decoded<'s>, String> {
    if h > 23 || mi > 59 || s > 59 {
        return Err("time of day out of range in DATETIME".into());
    }
    match valid_days(y, mo, d) {
        // The old 8-byte DATETIME packs the year as a decimal number of up to 13 digits: a
        // corrupt value's year overflows i64 µs (a panic in debug builds before this check).
        Some(days) => days
            .checked_mul(86_400 * US)
            .and_then(|t| t.checked_add((h * 3600 + mi * 60 + s) * US + us))
            .map(|t| Decoded::Value(MysqlValue::TimestampUs(t)))
            .ok_or_else(|| format!("DATETIME year {y} out of range")),
        None => {
            scratch.text.clear();
            let _ = write!(scratch.text, "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}");
            write_fraction(us, fsp, &mut scratch.text);
            Ok(Decoded::Invalid(&scratch.text))
        }
    }
}

fn timestamp_value(secs: i64, us: i64, fsp: u8, scratch: &mut Scratch) -> Decoded<'_> {
    if secs == 0 && us == 0 {
        scratch.text.clear();
        scratch.text.push_str("0000-00-00 00:00:00");
        write_fraction(0, fsp, &mut scratch.text);
        return Decoded::Invalid(&scratch.text);
    }
    Decoded::Value(MysqlValue::TimestampUs(secs * US + us))
}

/// A decimal's unscaled value with `scale` digits after the point (`-1.50`, `0.05`).
pub(crate) fn push_decimal(v: i256, scale: u8, out: &mut String) {
    let s = v.to_string();
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s.as_str()),
    };
    if neg {
        out.push('-');
    }
    let scale = usize::from(scale);
    if scale == 0 {
        out.push_str(digits);
    } else if digits.len() > scale {
        out.push_str(&digits[..digits.len() - scale]);
        out.push('.');
        out.push_str(&digits[digits.len() - scale..]);
    } else {
        out.push_str("0.");
        out.push_str(&"0".repeat(scale - digits.len()));
        out.push_str(digits);
    }
}

/// A packed time (JSON opaque TIME) as `hh:mm:ss.ffffff`.
pub(crate) fn push_packed_time(packed: i64, out: &mut String) {
    let us = packed_time_us(packed);
    let a = us.unsigned_abs();
    let secs = a / 1_000_000;
    if us < 0 {
        out.push('-');
    }
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}.{:06}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60,
        a % 1_000_000
    );
}

/// A packed datetime (JSON opaque DATE/DATETIME/TIMESTAMP) as MySQL prints it.
pub(crate) fn push_packed_datetime(packed: i64, date_only: bool, out: &mut String) {
    let a = packed.unsigned_abs() as i64;
    let us = a % (1 << 24);
    let ymdhms = a >> 24;
    let ymd = ymdhms >> 17;
    let ym = ymd >> 5;
    let hms = ymdhms % (1 << 17);
    let _ = write!(out, "{:04}-{:02}-{:02}", ym / 13, ym % 13, ymd % 32);
    if !date_only {
        let _ = write!(
            out,
            " {:02}:{:02}:{:02}.{:06}",
            hms >> 12,
            (hms >> 6) % 64,
            hms % 64,
            us
        );
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub(crate) fn push_base64(b: &[u8], out: &mut String) {
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(char::from(B64[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec<'s>(b: &'s [u8], k: &'s Kind, s: &'s mut Scratch) -> Decoded<'s> {
        let mut r = Reader::new(b);
        let v = decode(&mut r, k, s).unwrap();
        assert!(r.is_empty(), "value not consumed exactly");
        v
    }

    #[test]
    fn integers_sign_extend() {
        let mut s = Scratch::default();
        let k = Kind::Int {
            len: 3,
            unsigned: false,
        };
        assert_eq!(
            dec(&[0xff, 0xff, 0xff], &k, &mut s),
            Decoded::Value(MysqlValue::Int(-1))
        );
        let k = Kind::Int {
            len: 3,
            unsigned: true,
        };
        assert_eq!(
            dec(&[0xff, 0xff, 0xff], &k, &mut s),
            Decoded::Value(MysqlValue::UInt(16_777_215))
        );
        let k = Kind::Int {
            len: 8,
            unsigned: false,
        };
        assert_eq!(
            dec(&[0, 0, 0, 0, 0, 0, 0, 0x80], &k, &mut s),
            Decoded::Value(MysqlValue::Int(i64::MIN))
        );
    }

    #[test]
    fn temporal_values() {
        let mut s = Scratch::default();
        // DATE 2024-02-29: 2024 << 9 | 2 << 5 | 29.
        let v: u32 = (2024 << 9) | (2 << 5) | 29;
        let b = v.to_le_bytes();
        assert_eq!(
            dec(&b[..3], &Kind::Date, &mut s),
            Decoded::Value(MysqlValue::Date(days_from_civil(2024, 2, 29) as i32))
        );
        assert_eq!(
            dec(&[0, 0, 0], &Kind::Date, &mut s),
            Decoded::Invalid("0000-00-00")
        );
        // TIME2(0) -00:00:01 and 838:59:59.
        let neg = (0x80_0000i64 - 1) as u32;
        assert_eq!(
            dec(&neg.to_be_bytes()[1..], &Kind::Time2 { fsp: 0 }, &mut s),
            Decoded::Value(MysqlValue::DurationUs(-US))
        );
        // TIMESTAMP2(3) 1.5 s after the epoch; zero timestamp.
        assert_eq!(
            dec(
                &[0, 0, 0, 1, 0x13, 0x88],
                &Kind::Timestamp2 { fsp: 3 },
                &mut s
            ),
            Decoded::Value(MysqlValue::TimestampUs(1_500_000))
        );
        assert_eq!(
            dec(&[0, 0, 0, 0], &Kind::Timestamp2 { fsp: 0 }, &mut s),
            Decoded::Invalid("0000-00-00 00:00:00")
        );
        // TIME2(2) -00:00:00.01: int part -1 + borrow, frac 0xff → -1/100 s.
        let int = (0x80_0000i64 - 1) as u32;
        let mut b = int.to_be_bytes()[1..].to_vec();
        b.push(0xff);
        assert_eq!(
            dec(&b, &Kind::Time2 { fsp: 2 }, &mut s),
            Decoded::Value(MysqlValue::DurationUs(-10_000))
        );
    }

    #[test]
    fn old_datetime_with_a_corrupt_year_is_an_error_not_an_overflow() {
        let mut s = Scratch::default();
        // YYYYMMDDhhmmss as one decimal u64: 2024-02-29 12:34:56 decodes.
        let ok = 20_240_229_123_456u64.to_le_bytes();
        assert_eq!(
            dec(&ok, &Kind::DateTime, &mut s),
            Decoded::Value(MysqlValue::TimestampUs(
                days_from_civil(2024, 2, 29) * 86_400 * US + (12 * 3600 + 34 * 60 + 56) * US
            ))
        );
        // Year 1844674407 (a corrupt value): its µs overflow i64, which panicked in debug.
        let bad = 18_446_744_070_101_000_000u64.to_le_bytes();
        let e = decode(&mut Reader::new(&bad), &Kind::DateTime, &mut s).unwrap_err();
        assert!(e.contains("DATETIME year 1844674407 out of range"), "{e}");
    }

    #[test]
    fn enum_set_bit() {
        let mut s = Scratch::default();
        let labels: Arc<[String]> = vec!["a".to_string(), "b".into(), "c".into()].into();
        let k = Kind::Set {
            pack: 1,
            labels: labels.clone(),
        };
        assert_eq!(
            dec(&[0b101], &k, &mut s),
            Decoded::Value(MysqlValue::Str("a,c"))
        );
        let k = Kind::Enum { pack: 1, labels };
        assert_eq!(dec(&[2], &k, &mut s), Decoded::Value(MysqlValue::Str("b")));
        assert!(decode(&mut Reader::new(&[9]), &k, &mut s).is_err());
        let k = Kind::Bit {
            nbytes: 2,
            bits: 10,
        };
        assert_eq!(
            dec(&[0x02, 0x01], &k, &mut s),
            Decoded::Value(MysqlValue::UInt(513))
        );
    }

    #[test]
    fn helpers() {
        let mut o = String::new();
        push_decimal(i256::from_i128(-5), 2, &mut o);
        assert_eq!(o, "-0.05");
        o.clear();
        push_base64(b"ab", &mut o);
        assert_eq!(o, "YWI=");
    }
}
