//! Geometric types: their binary (send) forms rendered as the server's text (`point_out`,
//! `line_out`, `lseg_out`, `box_out`, `path_out`, `poly_out`, `circle_out`).
//!
//! Every component is a big-endian float8, printed by `float8out`:
//! `(x,y)`, `{A,B,C}`, `[(x1,y1),(x2,y2)]`, `(x1,y1),(x2,y2)`, open path `[(..),(..)]` / closed
//! `((..),(..))`, polygon `((..),(..))`, `<(x,y),r>`.
//!
//! # Traps
//! - `float8out` with `extra_float_digits > 0` (the source sets 3; the default 1 behaves the
//!   same on PG ≥ 12) prints the *shortest* digits that read back to the same double (Ryū, see
//!   [`ryu`](super::ryu): Rust's own shortest formatting differs in rare ties), in
//!   fixed notation when the decimal exponent is in -4..=14, else as `1e+20` / `1.5e-07` (sign
//!   always, at least two exponent digits); `-0`, `NaN` (never signed), `Infinity`, `-Infinity`.
//!   With `extra_float_digits <= 0` the server rounds to 15 digits instead: not reproduced here.
//! - box sends its high corner first, which is also the corner `box_out` prints first.
//! - path sends a closed flag byte, then an int32 point count; polygon sends only the count and
//!   the points (its bounding box is recomputed by `poly_recv`).

use super::{ryu, Geo};
use crate::error::ValueError;

impl Geo {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Geo::Point => "point",
            Geo::Line => "line",
            Geo::Lseg => "lseg",
            Geo::Box => "box",
            Geo::Path => "path",
            Geo::Polygon => "polygon",
            Geo::Circle => "circle",
        }
    }
}

/// Appends `v` as `float8out` prints it with `extra_float_digits > 0`.
pub(crate) fn push_float8(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v < 0.0 { "-Infinity" } else { "Infinity" });
    } else {
        push_shortest(out, v.is_sign_negative(), ryu::shortest(v), 15);
    }
}

/// Appends `v` as `float4out` prints it with `extra_float_digits > 0` (fixed notation only up
/// to 6 integer digits: `1.234567e+06`).
pub(crate) fn push_float4(out: &mut String, v: f32) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v < 0.0 { "-Infinity" } else { "Infinity" });
    } else {
        push_shortest(out, v.is_sign_negative(), ryu::shortest(v), 6);
    }
}

/// The shortest digits `(mantissa, exp10)` (`(0, 0)` for zero) in fixed notation when the
/// decimal point falls after -3..=`max_point` digits, else as `1.5e-07` (Ryū's `to_chars` in
/// Postgres' d2s.c / f2s.c).
fn push_shortest(out: &mut String, negative: bool, (mantissa, exp10): (u64, i32), max_point: i32) {
    if negative {
        out.push('-');
    }
    if mantissa == 0 {
        out.push('0');
        return;
    }
    let digits = mantissa.to_string();
    let len = digits.len() as i32;
    // Scientific exponent of the first digit.
    let exp = exp10 + len - 1;
    // The decimal point sits after `point` digits (Ryu's `nexp` in Postgres' d2s.c).
    let point = exp + 1;
    if point > -4 && point <= max_point {
        if point <= 0 {
            out.push_str("0.");
            out.push_str(&"0".repeat((-point) as usize));
            out.push_str(&digits);
        } else if point >= len {
            out.push_str(&digits);
            out.push_str(&"0".repeat((point - len) as usize));
        } else {
            let (int, frac) = digits.split_at(point as usize);
            out.push_str(int);
            out.push('.');
            out.push_str(frac);
        }
    } else {
        let (first, rest) = digits.split_at(1);
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        let e = exp.unsigned_abs();
        if e < 10 {
            out.push('0');
        }
        out.push_str(&e.to_string());
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
    geo: Geo,
}

impl Reader<'_> {
    fn err(&self, reason: &'static str) -> ValueError {
        ValueError::InvalidBinary {
            type_name: self.geo.name(),
            offset: self.at,
            reason,
        }
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], ValueError> {
        let s = self
            .b
            .get(self.at..self.at + N)
            .ok_or_else(|| self.err("truncated"))?;
        self.at += N;
        Ok(s.try_into().expect("N bytes"))
    }

    fn float(&mut self, out: &mut String) -> Result<(), ValueError> {
        push_float8(out, f64::from_be_bytes(self.take()?));
        Ok(())
    }

    /// `(x,y)`.
    fn point(&mut self, out: &mut String) -> Result<(), ValueError> {
        out.push('(');
        self.float(out)?;
        out.push(',');
        self.float(out)?;
        out.push(')');
        Ok(())
    }

    /// `n` points joined by `,` (`path_encode`'s body).
    fn points(&mut self, out: &mut String, n: usize) -> Result<(), ValueError> {
        for i in 0..n {
            if i > 0 {
                out.push(',');
            }
            self.point(out)?;
        }
        Ok(())
    }

    /// An int32 point count that matches the bytes left.
    fn count(&mut self) -> Result<usize, ValueError> {
        let n = i32::from_be_bytes(self.take()?);
        let left = self.b.len() - self.at;
        match usize::try_from(n) {
            Ok(n) if n.checked_mul(16) == Some(left) => Ok(n),
            _ => Err(self.err("point count does not match the length")),
        }
    }
}

/// The server's text form of a geometric value given in its binary form.
pub(crate) fn render(geo: Geo, b: &[u8]) -> Result<String, ValueError> {
    let mut r = Reader { b, at: 0, geo };
    let mut out = String::with_capacity(b.len() * 2);
    match geo {
        Geo::Point => r.point(&mut out)?,
        Geo::Line => {
            out.push('{');
            r.float(&mut out)?;
            out.push(',');
            r.float(&mut out)?;
            out.push(',');
            r.float(&mut out)?;
            out.push('}');
        }
        Geo::Lseg => {
            out.push('[');
            r.points(&mut out, 2)?;
            out.push(']');
        }
        Geo::Box => r.points(&mut out, 2)?,
        Geo::Path => {
            let [closed] = r.take::<1>()?;
            let n = r.count()?;
            out.push(if closed != 0 { '(' } else { '[' });
            r.points(&mut out, n)?;
            out.push(if closed != 0 { ')' } else { ']' });
        }
        Geo::Polygon => {
            let n = r.count()?;
            out.push('(');
            r.points(&mut out, n)?;
            out.push(')');
        }
        Geo::Circle => {
            out.push('<');
            r.point(&mut out)?;
            out.push(',');
            r.float(&mut out)?;
            out.push('>');
        }
    }
    if r.at != b.len() {
        return Err(r.err("trailing bytes"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(v: f64) -> String {
        let mut s = String::new();
        push_float8(&mut s, v);
        s
    }

    /// Expected strings from `SELECT v::float8::text` on PostgreSQL 15 (extra_float_digits 3).
    #[test]
    fn float8out_layout() {
        for (v, want) in [
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (-1.5, "-1.5"),
            (0.1, "0.1"),
            (1e20, "1e+20"),
            (1.5e-7, "1.5e-07"),
            (1e15, "1e+15"),
            (1e14, "100000000000000"),
            (123456789012345.0, "123456789012345"),
            (1234567890123456.0, "1.234567890123456e+15"),
            (0.0001, "0.0001"),
            (0.00012345, "0.00012345"),
            (0.00001, "1e-05"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (1e-300, "1e-300"),
            (-1e300, "-1e+300"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (f64::NAN, "NaN"),
            (-f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (1.0 / 3.0, "0.3333333333333333"),
            (100.25, "100.25"),
            (12345.678, "12345.678"),
            // Rust's `{:e}` differs on these three (round half to even; no bound acceptance).
            (f64::from_bits(0x430bb81ed115a58a), "975283358446769.2"),
            (24949147085203248.0, "2.4949147085203248e+16"),
            (
                f64::from_bits(0xc3773bec3244b57e),
                "-1.0463696169647101e+17",
            ),
            (2f64.powi(-1022), "2.2250738585072014e-308"),
            (2f64.powi(63), "9.223372036854776e+18"),
            (9007199254740991.0, "9.007199254740991e+15"),
            (4503599627370496.0, "4.503599627370496e+15"),
            (562949953421311.5, "562949953421311.5"),
        ] {
            assert_eq!(f(v), want, "{v:e}");
        }
    }
}
