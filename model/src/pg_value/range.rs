//! Range and multirange types: their binary (send) forms rendered as the server's text
//! (`range_out`, `multirange_out`). The builtin ones know their subtype ([`RangeSub`]);
//! user-defined ones get their bound renderer from the catalog's subtype
//! ([`structured`](super::structured)).
//!
//! A range's binary form is a flags byte, then for each finite bound an int32 length and the
//! bound in its subtype's binary form. A multirange's is an int32 count, then each range as an
//! int32 length and that range's binary form.
//!
//! # Traps
//! - Flags: empty 0x01, lower inclusive 0x02, upper inclusive 0x04, lower infinite 0x08, upper
//!   infinite 0x10, lower/upper NULL 0x20/0x40 (unused), contains-empty 0x80 (GiST only). A bound
//!   is sent (and printed) only when the range is not empty and the bound neither infinite nor
//!   NULL.
//! - `range_out` quotes a bound that is empty or contains `"`, `\`, `(`, `)`, `[`, `]`, `,` or
//!   white space, doubling `"` and `\` inside: `["2020-01-01 00:00:00+00",)`.
//! - Date and timestamp bounds print with the session's `DateStyle`/`TimeZone`; the source sets
//!   `ISO` and `UTC`, and these renderers assume them (`+00`, ` BC` last).
//! - A user-defined range's subtype is not in the range's bytes: it comes from
//!   `pg_range.rngsubtype` (with a multirange's range from `pg_range.rngmultitypid`).

use super::{datetime, numeric, RangeSub};
use crate::error::ValueError;

const EMPTY: u8 = 0x01;
const LB_INC: u8 = 0x02;
const UB_INC: u8 = 0x04;
const LB_INF: u8 = 0x08;
const UB_INF: u8 = 0x10;
const LB_NULL: u8 = 0x20;
const UB_NULL: u8 = 0x40;

impl RangeSub {
    pub(crate) fn range_name(self) -> &'static str {
        match self {
            RangeSub::Int4 => "int4range",
            RangeSub::Int8 => "int8range",
            RangeSub::Numeric => "numrange",
            RangeSub::Date => "daterange",
            RangeSub::Timestamp => "tsrange",
            RangeSub::TimestampTz => "tstzrange",
        }
    }

    pub(crate) fn multirange_name(self) -> &'static str {
        match self {
            RangeSub::Int4 => "int4multirange",
            RangeSub::Int8 => "int8multirange",
            RangeSub::Numeric => "nummultirange",
            RangeSub::Date => "datemultirange",
            RangeSub::Timestamp => "tsmultirange",
            RangeSub::TimestampTz => "tstzmultirange",
        }
    }

    fn subtype_name(self) -> &'static str {
        match self {
            RangeSub::Int4 => "int4",
            RangeSub::Int8 => "int8",
            RangeSub::Numeric => "numeric",
            RangeSub::Date => "date",
            RangeSub::Timestamp => "timestamp",
            RangeSub::TimestampTz => "timestamptz",
        }
    }

    /// The subtype's text output of its binary form `b`.
    fn render_bound(self, b: &[u8]) -> Result<String, ValueError> {
        let wrong_length = || ValueError::InvalidBinary {
            type_name: self.subtype_name(),
            offset: 0,
            reason: "wrong length",
        };
        let mut out = String::new();
        match self {
            RangeSub::Int4 => {
                let v = i32::from_be_bytes(b.try_into().map_err(|_| wrong_length())?);
                return Ok(v.to_string());
            }
            RangeSub::Int8 => {
                let v = i64::from_be_bytes(b.try_into().map_err(|_| wrong_length())?);
                return Ok(v.to_string());
            }
            RangeSub::Numeric => return numeric::render_numeric_binary(b),
            RangeSub::Date => {
                let v = i32::from_be_bytes(b.try_into().map_err(|_| wrong_length())?);
                datetime::render_date(&mut out, v);
            }
            RangeSub::Timestamp | RangeSub::TimestampTz => {
                let v = i64::from_be_bytes(b.try_into().map_err(|_| wrong_length())?);
                datetime::render_timestamp(&mut out, v, self == RangeSub::TimestampTz);
            }
        }
        Ok(out)
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
    type_name: &'static str,
}

impl<'a> Reader<'a> {
    fn err(&self, reason: &'static str) -> ValueError {
        ValueError::InvalidBinary {
            type_name: self.type_name,
            offset: self.at,
            reason,
        }
    }

    /// An int32 length, then that many bytes (returned with their offset).
    fn chunk(&mut self) -> Result<(usize, &'a [u8]), ValueError> {
        let b = self.b;
        let len = b
            .get(self.at..self.at + 4)
            .map(|s| i32::from_be_bytes([s[0], s[1], s[2], s[3]]))
            .ok_or_else(|| self.err("truncated length"))?;
        let len = usize::try_from(len).map_err(|_| self.err("negative length"))?;
        self.at += 4;
        let v = b
            .get(self.at..self.at.saturating_add(len))
            .ok_or_else(|| self.err("truncated"))?;
        let at = self.at;
        self.at += len;
        Ok((at, v))
    }
}

/// `range_bound_escape`: quotes if needed, doubling `"` and `\`.
fn push_bound(out: &mut String, v: &str) {
    push_quoted(out, v, b"\"\\()[],");
}

/// The quoting `range_bound_escape` and `record_out` share: `v` in double quotes, with `"` and
/// `\` doubled, when it is empty or holds one of `specials` or whitespace (`isspace`);
/// otherwise as it is.
pub(crate) fn push_quoted(out: &mut String, v: &str, specials: &[u8]) {
    let quote = v.is_empty()
        || v.bytes().any(|c| {
            specials.contains(&c) || matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
        });
    if !quote {
        out.push_str(v);
        return;
    }
    out.push('"');
    for c in v.chars() {
        if c == '"' || c == '\\' {
            out.push(c);
        }
        out.push(c);
    }
    out.push('"');
}

/// The text of one range's binary form `b`, each bound through `bound` (its subtype's text
/// output; errors at an offset inside the bound are shifted to be offsets in `b`).
pub(crate) fn push_range(
    out: &mut String,
    b: &[u8],
    type_name: &'static str,
    bound: &dyn Fn(&[u8]) -> Result<String, ValueError>,
) -> Result<(), ValueError> {
    let Some((&flags, _)) = b.split_first() else {
        return Err(ValueError::InvalidBinary {
            type_name,
            offset: 0,
            reason: "missing flags byte",
        });
    };
    let mut r = Reader {
        b,
        at: 1,
        type_name,
    };
    if flags & EMPTY != 0 {
        out.push_str("empty");
    } else {
        let lower = (flags & (LB_INF | LB_NULL) == 0)
            .then(|| r.chunk())
            .transpose()?;
        let upper = (flags & (UB_INF | UB_NULL) == 0)
            .then(|| r.chunk())
            .transpose()?;
        out.push(if flags & LB_INC != 0 { '[' } else { '(' });
        if let Some((at, v)) = lower {
            push_bound(out, &bound(v).map_err(|e| shift_offset(e, at))?);
        }
        out.push(',');
        if let Some((at, v)) = upper {
            push_bound(out, &bound(v).map_err(|e| shift_offset(e, at))?);
        }
        out.push(if flags & UB_INC != 0 { ']' } else { ')' });
    }
    if r.at != b.len() {
        return Err(r.err("trailing bytes"));
    }
    Ok(())
}

/// An [`ValueError::InvalidBinary`] offset made relative to an enclosing value in which the
/// failing part starts at `by`.
pub(crate) fn shift_offset(e: ValueError, by: usize) -> ValueError {
    match e {
        ValueError::InvalidBinary {
            type_name,
            offset,
            reason,
        } => ValueError::InvalidBinary {
            type_name,
            offset: offset.saturating_add(by),
            reason,
        },
        e => e,
    }
}

/// The server's text form of a builtin range given in its binary form.
pub(crate) fn render_range(sub: RangeSub, b: &[u8]) -> Result<String, ValueError> {
    let mut out = String::with_capacity(b.len() * 2);
    push_range(&mut out, b, sub.range_name(), &|v| sub.render_bound(v))?;
    Ok(out)
}

/// The server's text form of a builtin multirange given in its binary form: `{[1,3),[5,7)}`,
/// `{}`.
pub(crate) fn render_multirange(sub: RangeSub, b: &[u8]) -> Result<String, ValueError> {
    let mut out = String::with_capacity(b.len() * 2);
    push_multirange(&mut out, b, sub.multirange_name(), &|v| sub.render_bound(v))?;
    Ok(out)
}

/// The text of a multirange's binary form, each range's bounds through `bound`.
pub(crate) fn push_multirange(
    out: &mut String,
    b: &[u8],
    type_name: &'static str,
    bound: &dyn Fn(&[u8]) -> Result<String, ValueError>,
) -> Result<(), ValueError> {
    let mut r = Reader {
        b,
        at: 0,
        type_name,
    };
    let n = b
        .get(0..4)
        .map(|s| i32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| r.err("truncated count"))?;
    let n = usize::try_from(n).map_err(|_| r.err("negative count"))?;
    r.at = 4;
    out.push('{');
    for i in 0..n {
        if i > 0 {
            out.push(',');
        }
        let (at, range) = r.chunk()?;
        push_range(out, range, type_name, bound).map_err(|e| shift_offset(e, at))?;
    }
    out.push('}');
    if r.at != b.len() {
        return Err(r.err("trailing bytes"));
    }
    Ok(())
}
