//! numeric and money: exact decimal parsing, and rendering numeric's binary form as text.
//!
//! Binary numeric (`numeric_send`): `ndigits: i16, weight: i16, sign: u16, dscale: u16`, then
//! `ndigits` base-10000 digits; value = Σ digit[i] × 10000^(weight − i). Sign 0x0000 positive,
//! 0x4000 negative, 0xC000 NaN, 0xD000 +Infinity, 0xF000 −Infinity (PG ≥ 14).
//! The binary form is rendered to `numeric_out`'s text and parsed like text, so both paths give
//! identical results.

use std::fmt::Write;

use arrow_buffer::i256;

use super::{Parsed, Scalar, Target};
use crate::batch::MarkerKind;
use crate::error::ValueError;

const NUMERIC_POS: u16 = 0x0000;
const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_NAN: u16 = 0xC000;
const NUMERIC_PINF: u16 = 0xD000;
const NUMERIC_NINF: u16 = 0xF000;

fn text_err(offset: usize, reason: &'static str) -> ValueError {
    ValueError::InvalidText {
        type_name: "numeric",
        offset,
        reason,
    }
}

/// The special values' marker, if `s` is one.
pub(crate) fn special(s: &str) -> Option<MarkerKind> {
    if s.eq_ignore_ascii_case("nan") {
        Some(MarkerKind::NaN)
    } else if s.eq_ignore_ascii_case("infinity") || s.eq_ignore_ascii_case("+infinity") {
        Some(MarkerKind::PosInfinity)
    } else if s.eq_ignore_ascii_case("-infinity") {
        Some(MarkerKind::NegInfinity)
    } else {
        None
    }
}

/// Parses numeric text into the column's decimal (`target`), exactly.
pub(crate) fn parse_numeric_text(s: &str, target: Target) -> Result<Parsed<'static>, ValueError> {
    if let Some(k) = special(s) {
        return Ok(Parsed::Special(k));
    }
    let (precision, scale) = match target {
        Target::Decimal128 { precision, scale } | Target::Decimal256 { precision, scale } => {
            (precision, scale)
        }
        _ => return Err(text_err(0, "numeric stored natively needs a decimal type")),
    };
    let (neg, digits) = unscaled_digits(s, scale, "numeric")?;
    if digits.len() > precision as usize {
        return Err(ValueError::OutOfRange {
            type_name: "numeric",
            target: format!("decimal({precision},{scale})"),
            reason: "more integer digits than precision - scale",
        });
    }
    Ok(Parsed::Value(match target {
        Target::Decimal256 { .. } => Scalar::Dec256(to_i256(neg, &digits)),
        _ => Scalar::Dec128(to_i128(neg, &digits)),
    }))
}

/// Sign and the digits of the unscaled integer `value × 10^scale` (no leading zeros).
/// Fraction digits beyond `scale` must be zeros (otherwise digits would be lost).
pub(crate) fn unscaled_digits(
    s: &str,
    scale: i8,
    type_name: &'static str,
) -> Result<(bool, Vec<u8>), ValueError> {
    let err = |offset, reason| ValueError::InvalidText {
        type_name,
        offset,
        reason,
    };
    let b = s.as_bytes();
    let mut i = 0;
    let neg = match b.first() {
        Some(b'-') => {
            i = 1;
            true
        }
        Some(b'+') => {
            i = 1;
            false
        }
        _ => false,
    };
    let int_start = i;
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    let int_part = &b[int_start..i];
    let mut frac: &[u8] = &[];
    if b.get(i) == Some(&b'.') {
        let f_start = i + 1;
        i = f_start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        frac = &b[f_start..i];
    }
    if i != b.len() {
        return Err(err(i, "unexpected character"));
    }
    if int_part.is_empty() && frac.is_empty() {
        return Err(err(i, "no digits"));
    }
    let scale = scale.max(0) as usize;
    if frac.len() > scale && frac[scale..].iter().any(|&d| d != b'0') {
        return Err(ValueError::OutOfRange {
            type_name,
            target: format!("scale {scale}"),
            reason: "more fraction digits than the scale",
        });
    }
    let mut digits: Vec<u8> = Vec::with_capacity(int_part.len() + scale);
    digits.extend(int_part.iter().map(|d| d - b'0'));
    digits.extend(frac.iter().take(scale).map(|d| d - b'0'));
    digits.extend(std::iter::repeat_n(0, scale.saturating_sub(frac.len())));
    let first = digits.iter().position(|&d| d != 0).unwrap_or(digits.len());
    digits.drain(..first);
    Ok((neg, digits))
}

/// INVARIANT: `digits.len() <= 38`, so no overflow.
fn to_i128(neg: bool, digits: &[u8]) -> i128 {
    let v = digits.iter().fold(0i128, |v, &d| v * 10 + d as i128);
    if neg {
        -v
    } else {
        v
    }
}

/// INVARIANT: `digits.len() <= 76`, so no overflow.
fn to_i256(neg: bool, digits: &[u8]) -> i256 {
    let ten = i256::from_i128(10);
    let v = digits.iter().fold(i256::ZERO, |v, &d| {
        v.wrapping_mul(ten).wrapping_add(i256::from_i128(d as i128))
    });
    if neg {
        v.wrapping_neg()
    } else {
        v
    }
}

/// Renders binary numeric exactly as `numeric_out` prints it.
pub fn render_numeric_binary(b: &[u8]) -> Result<String, ValueError> {
    let err = |offset, reason| ValueError::InvalidBinary {
        type_name: "numeric",
        offset,
        reason,
    };
    let u16_at = |at: usize| -> Result<u16, ValueError> {
        b.get(at..at + 2)
            .map(|s| u16::from_be_bytes([s[0], s[1]]))
            .ok_or_else(|| err(at, "truncated"))
    };
    let ndigits = u16_at(0)? as i16;
    let weight = u16_at(2)? as i16 as i32;
    let sign = u16_at(4)?;
    let dscale = u16_at(6)? as usize;
    if ndigits < 0 || b.len() != 8 + 2 * ndigits as usize {
        return Err(err(0, "length does not match ndigits"));
    }
    match sign {
        NUMERIC_NAN => return Ok("NaN".into()),
        NUMERIC_PINF => return Ok("Infinity".into()),
        NUMERIC_NINF => return Ok("-Infinity".into()),
        NUMERIC_POS | NUMERIC_NEG => {}
        _ => return Err(err(4, "invalid sign")),
    }
    if dscale > 0x3FFF {
        return Err(err(6, "invalid dscale"));
    }
    let mut digits = Vec::with_capacity(ndigits as usize);
    for k in 0..ndigits as usize {
        let d = u16_at(8 + 2 * k)?;
        if d >= 10000 {
            return Err(err(8 + 2 * k, "digit out of range"));
        }
        digits.push(d);
    }
    let digit = |idx: i32| -> u16 {
        usize::try_from(idx)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };
    let mut out = String::with_capacity(digits.len() * 4 + dscale + 3);
    if sign == NUMERIC_NEG {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        for d in 0..=weight {
            // First group without leading zeros, the others zero-padded (numeric_out).
            let r = if d == 0 {
                write!(out, "{}", digit(d))
            } else {
                write!(out, "{:04}", digit(d))
            };
            r.expect("writing to a String cannot fail");
        }
    }
    if dscale > 0 {
        out.push('.');
        let start = out.len();
        let mut d = weight + 1;
        while out.len() - start < dscale {
            write!(out, "{:04}", digit(d)).expect("writing to a String cannot fail");
            d += 1;
        }
        out.truncate(start + dscale);
    }
    Ok(out)
}

/// Parses money text (`$1,234.56`, `-$1.00`, `($1.00)`) into cents.
pub(crate) fn parse_money_text(s: &str) -> Result<i128, ValueError> {
    let err = |offset, reason| ValueError::InvalidText {
        type_name: "money",
        offset,
        reason,
    };
    let mut neg = false;
    let mut int_digits = String::new();
    let mut frac_digits = String::new();
    let mut in_frac = false;
    for (i, c) in s.char_indices() {
        match c {
            '0'..='9' if in_frac => frac_digits.push(c),
            '0'..='9' => int_digits.push(c),
            '.' if !in_frac => in_frac = true,
            '-' | '(' | ')' => neg = true,
            '$' | ',' | ' ' | '+' => {}
            _ => return Err(err(i, "unexpected character")),
        }
    }
    if int_digits.is_empty() && frac_digits.is_empty() {
        return Err(err(0, "no digits"));
    }
    let num = format!(
        "{}{}.{}",
        if neg { "-" } else { "" },
        int_digits,
        frac_digits
    );
    let (neg, digits) = unscaled_digits(&num, 2, "money")?;
    if digits.len() > 19 {
        return Err(ValueError::OutOfRange {
            type_name: "money",
            target: "int64 cents".into(),
            reason: "too many digits",
        });
    }
    let v = to_i128(neg, &digits);
    if v < i64::MIN as i128 || v > i64::MAX as i128 {
        return Err(ValueError::OutOfRange {
            type_name: "money",
            target: "int64 cents".into(),
            reason: "out of range",
        });
    }
    Ok(v)
}
