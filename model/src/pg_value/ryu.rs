//! Shortest round-trip decimal digits of an `f64`, as PostgreSQL's `float8out` picks them.
//!
//! Both PostgreSQL (`src/common/d2s.c`) and the [`ryu`] crate use the Ryū algorithm: the
//! fewest digits that read back to the same double, and at that length the one closest to it
//! (ties to even). They differ only in which decimals count as "reading back": the interval of
//! reals that round to `v` is bounded by the midpoints to its neighbours, and a midpoint reads
//! back as `v` exactly when `v`'s binary mantissa is even (IEEE ties to even). The crate uses
//! that and accepts a midpoint for even mantissas; PostgreSQL builds Ryū without bound
//! acceptance, so a midpoint is never printed. A decimal short enough to be chosen can only
//! equal a midpoint for large integers (|v| ≥ 2^53, in practice e+16..e+18: about 0.3% of
//! random doubles): `172853318704142784` is `1.728533187041428e17` for the crate (its upper
//! midpoint, 16 digits) but `1.7285331870414278e+17` for PostgreSQL.
//!
//! So the crate's digits are used as they are, except when they land exactly on a midpoint
//! (an exact integer test, [`on_bound`]): then the search continues as PostgreSQL's does, from
//! that length on, for the correctly rounded decimal strictly inside the interval
//! ([`strictly_inside`]). PostgreSQL's small-integer path (an integer below 2^53 prints as its
//! own digits) needs nothing extra: such a value's bounds are at most ½ away and not integers,
//! so the integer itself (trailing zeros into the exponent) is what both pick.

/// The binary fields of a finite `v`: `|v| = m * 2^e`, and its bounds, each as
/// `odd * 2^exponent`: the midpoints to the next value down and up.
pub(crate) struct Binary {
    lower: (u64, i32),
    upper: (u64, i32),
}

impl Binary {
    /// From the raw fraction and biased exponent of a float with `fraction_bits` explicit
    /// mantissa bits and exponent bias `bias`.
    fn of_parts(fraction: u64, biased: i32, fraction_bits: u32, bias: i32) -> Binary {
        let shift = bias + fraction_bits as i32;
        let (m, e) = if biased == 0 {
            (fraction, 1 - shift)
        } else {
            (fraction | (1u64 << fraction_bits), biased - shift)
        };
        // At a power of two (above the smallest normal) the next value down is half as far.
        let lower = if fraction == 0 && biased > 1 {
            (4 * m - 1, e - 2)
        } else {
            (2 * m - 1, e - 1)
        };
        Binary {
            lower,
            upper: (2 * m + 1, e - 1),
        }
    }
}

/// The two IEEE formats `float8out` and `float4out` print (`d2s.c`, `f2s.c`).
pub(crate) trait Float: Copy + PartialEq + std::fmt::LowerExp + ::ryu::Float {
    /// Most significant digits ever needed (17 for double, 9 for float).
    const MAX_DIGITS: usize;
    fn binary(self) -> Binary;
    /// Whether the decimal text reads back as `self` (correct rounding, as `strtod`).
    fn reads_back(self, text: &str) -> bool;
    fn is_zero_or_special(self) -> bool;
    fn abs(self) -> Self;
}

impl Float for f64 {
    const MAX_DIGITS: usize = 17;
    fn binary(self) -> Binary {
        let bits = self.to_bits();
        Binary::of_parts(
            bits & ((1u64 << 52) - 1),
            ((bits >> 52) & 0x7ff) as i32,
            52,
            1023,
        )
    }
    fn reads_back(self, text: &str) -> bool {
        text.parse::<f64>() == Ok(self)
    }
    fn is_zero_or_special(self) -> bool {
        self == 0.0 || !self.is_finite()
    }
    fn abs(self) -> Self {
        f64::abs(self)
    }
}

impl Float for f32 {
    const MAX_DIGITS: usize = 9;
    fn binary(self) -> Binary {
        let bits = u64::from(self.to_bits());
        Binary::of_parts(
            bits & ((1u64 << 23) - 1),
            ((bits >> 23) & 0xff) as i32,
            23,
            127,
        )
    }
    fn reads_back(self, text: &str) -> bool {
        text.parse::<f32>() == Ok(self)
    }
    fn is_zero_or_special(self) -> bool {
        self == 0.0 || !self.is_finite()
    }
    fn abs(self) -> Self {
        f32::abs(self)
    }
}

/// Whether `digits * 10^exp10` equals `odd * 2^exp2` exactly: the powers of two on both sides
/// (`10^x = 2^x * 5^x`, `odd` has none) and what is left must both agree.
fn equals(digits: u64, exp10: i32, (odd, exp2): (u64, i32)) -> bool {
    let twos = digits.trailing_zeros() as i32;
    if twos + exp10 != exp2 {
        return false;
    }
    let rest = (digits >> twos) as u128;
    let Some(five) = 5u128.checked_pow(exp10.unsigned_abs()) else {
        return false;
    };
    if exp10 >= 0 {
        rest.checked_mul(five) == Some(odd as u128)
    } else {
        (odd as u128).checked_mul(five) == Some(rest)
    }
}

/// Whether `digits * 10^exp10` is exactly one of `v`'s two bounds.
fn on_bound<F: Float>(v: F, digits: u64, exp10: i32) -> bool {
    let b = v.binary();
    equals(digits, exp10, b.lower) || equals(digits, exp10, b.upper)
}

/// Whether `digits * 10^exp10` reads back as a positive `v` without being one of its bounds.
fn strictly_inside<F: Float>(v: F, digits: u64, exp10: i32) -> bool {
    digits != 0 && v.reads_back(&format!("{digits}e{exp10}")) && !on_bound(v, digits, exp10)
}

/// Trailing decimal zeros moved into the exponent.
fn trim(mut digits: u64, mut exp10: i32) -> (u64, i32) {
    while digits != 0 && digits.is_multiple_of(10) {
        digits /= 10;
        exp10 += 1;
    }
    (digits, exp10)
}

/// `(digits, exp10)` of the decimal text `[-]int[.frac][e[-]exp]` (`ryu` or `{:e}` output).
fn parse_decimal(s: &str) -> Option<(u64, i32)> {
    let s = s.strip_prefix('-').unwrap_or(s);
    let (mantissa, exp) = match s.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().ok()?),
        None => (s, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits = 0u64;
    for c in int.bytes().chain(frac.bytes()) {
        if !c.is_ascii_digit() {
            return None;
        }
        digits = digits.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(trim(
        digits,
        exp.checked_sub(i32::try_from(frac.len()).ok()?)?,
    ))
}

/// PostgreSQL's choice for a positive `v`, from `len` significant digits on: at the first
/// length where a decimal lies strictly inside `v`'s interval, `v` correctly rounded to that
/// length, or the next one up when the rounding fell on or below the lower bound. `None` if
/// `F::MAX_DIGITS` digits do not do it (they always do for a finite `v`).
fn search_from<F: Float>(v: F, len: usize) -> Option<(u64, i32)> {
    for len in len.max(1)..=F::MAX_DIGITS {
        // `{:.N$e}` is the exact value correctly rounded (ties to even) to N+1 digits.
        let (digits, exp10) = parse_decimal(&format!("{:.*e}", len - 1, v))?;
        if strictly_inside(v, digits, exp10) {
            return Some((digits, exp10));
        }
        // Else the other of the two decimals of this length around `v`, if it is inside.
        for next in [digits + 1, digits.saturating_sub(1)] {
            if strictly_inside(v, next, exp10) {
                return Some(trim(next, exp10));
            }
        }
    }
    None
}

/// The shortest decimal `(digits, exponent)` of a finite, non-zero `v` (sign ignored): `v`
/// reads back from `digits * 10^exponent`, as Postgres' `double_to_shortest_decimal` computes
/// it (or `float_to_shortest_decimal` for an `f32`). `(0, 0)` for zero or a non-finite `v`.
pub(crate) fn shortest<F: Float>(v: F) -> (u64, i32) {
    if v.is_zero_or_special() {
        return (0, 0);
    }
    let v = v.abs();
    let mut buf = ::ryu::Buffer::new();
    match parse_decimal(buf.format_finite(v)) {
        Some((digits, exp10)) if digits != 0 && !on_bound(v, digits, exp10) => (digits, exp10),
        Some((digits, _)) => search_from(v, digits.to_string().len()).unwrap_or((0, 0)),
        None => search_from(v, 1).unwrap_or((0, 0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ryu_text() {
        assert_eq!(parse_decimal("1.5e-7"), Some((15, -8)));
        assert_eq!(parse_decimal("1e16"), Some((1, 16)));
        assert_eq!(parse_decimal("123.45"), Some((12345, -2)));
        assert_eq!(parse_decimal("0.001"), Some((1, -3)));
        assert_eq!(parse_decimal("100.0"), Some((1, 2)));
        assert_eq!(parse_decimal("-2.5e300"), Some((25, 299)));
        assert_eq!(parse_decimal("1.x"), None);
        assert_eq!(parse_decimal("99999999999999999999999"), None);
    }

    #[test]
    fn midpoints_are_exact() {
        // 172853318704142784 = m * 2^5; the crate's 16 digits are its upper midpoint.
        let v = 1.728533187041428e17;
        assert!(on_bound(v, 1728533187041428, 2));
        assert!(!strictly_inside(v, 1728533187041428, 2));
        assert_eq!(shortest(v), (17285331870414278, 1));
        // 2^54: the next double down is 2 away, up 4, so the midpoints are -1 and +2.
        let p = 2f64.powi(54);
        assert!(on_bound(p, 18014398509481983, 0));
        assert!(on_bound(p, 18014398509481986, 0));
        assert!(!on_bound(p, 18014398509481982, 0));
        assert!(!on_bound(p, 18014398509481984, 0));
        assert_eq!(shortest(p), (18014398509481984, 0));
        assert_eq!(shortest(-p), shortest(p));
        assert_eq!(shortest(0.0), (0, 0));
        assert_eq!(shortest(5e-324), (5, -324));
    }
}
