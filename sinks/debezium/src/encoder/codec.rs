//! Low-level encodings Debezium's JSON uses: base64 (Kafka Connect `bytes`), the two's
//! complement unscaled value of a Connect `Decimal`, plain decimal strings and ISO-8601 dates.
//!
//! # Traps
//! - Connect `Decimal` bytes are `BigInteger.toByteArray()`: big-endian, two's complement,
//!   *minimal* length (`0` is one zero byte, `-1` is `0xff`, `128` is `0x00 0x80`).
//! - Java formats years outside 0..=9999 with a sign (`+10000`, `-0001`); proleptic Gregorian,
//!   year 0 = 1 BC.

pub(crate) const B64: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (what JsonConverter writes for `bytes`).
pub fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * k)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Inverse of [`base64`] (tests and `tidemark compare`); `None` on invalid input.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = B64.iter().position(|&x| x == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Trims a big-endian two's complement number to its minimal length.
pub fn minimal_twos_complement(bytes: &[u8]) -> Vec<u8> {
    minimal_twos_complement_slice(bytes).to_vec()
}

/// [`minimal_twos_complement`] without the copy: the minimal suffix of `bytes`.
#[inline]
pub fn minimal_twos_complement_slice(bytes: &[u8]) -> &[u8] {
    let mut start = 0;
    while start + 1 < bytes.len() {
        let (b, next) = (bytes[start], bytes[start + 1]);
        if (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    bytes.get(start..).unwrap_or_default()
}

/// Two's complement bytes of an arbitrary-size integer given as its decimal digits.
pub fn digits_to_twos_complement(negative: bool, digits: &[u8]) -> Vec<u8> {
    // Magnitude, little-endian base 256.
    let mut mag: Vec<u8> = Vec::with_capacity(digits.len() / 2 + 1);
    for &d in digits {
        let mut carry = u32::from(d - b'0');
        for limb in mag.iter_mut() {
            let v = u32::from(*limb) * 10 + carry;
            *limb = (v & 0xff) as u8;
            carry = v >> 8;
        }
        while carry > 0 {
            mag.push((carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    mag.push(0); // room for the sign bit
    if negative {
        let mut carry = 1u16;
        for limb in mag.iter_mut() {
            let v = u16::from(!*limb) + carry;
            *limb = (v & 0xff) as u8;
            carry = v >> 8;
        }
    }
    mag.reverse();
    minimal_twos_complement(&mag)
}

/// A decimal number split into sign, digits and scale; what Postgres' numeric text form holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedDecimal {
    pub negative: bool,
    /// All digits without the point, no leading zeros (may be empty for zero).
    pub digits: Vec<u8>,
    /// Digits after the point.
    pub scale: i64,
}

impl ParsedDecimal {
    /// Parses `[-+]digits[.digits][e[-+]digits]`; `None` for anything else (NaN, Infinity).
    pub fn parse(text: &str) -> Option<ParsedDecimal> {
        let (negative, rest) = match text.as_bytes().first()? {
            b'-' => (true, text.get(1..)?),
            b'+' => (false, text.get(1..)?),
            _ => (false, text),
        };
        let (mantissa, exp) = match rest.find(['e', 'E']) {
            Some(at) => (rest.get(..at)?, rest.get(at + 1..)?.parse::<i64>().ok()?),
            None => (rest, 0),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
            return None;
        }
        let mut digits: Vec<u8> = int.bytes().chain(frac.bytes()).collect();
        let lead = digits.iter().take_while(|&&d| d == b'0').count();
        digits.drain(..lead);
        Some(ParsedDecimal {
            negative: negative && !digits.is_empty(),
            digits,
            scale: frac.len() as i64 - exp,
        })
    }

    /// `BigDecimal.stripTrailingZeros()` followed by "scale < 0 → setScale(0)" (Debezium's
    /// variable-scale decimal).
    pub fn strip_trailing_zeros(&mut self) {
        while self.scale > 0 && self.digits.last() == Some(&b'0') {
            self.digits.pop();
            self.scale -= 1;
        }
        if self.digits.is_empty() {
            self.scale = 0;
        }
        self.set_scale_up(0);
    }

    /// Raises the scale to at least `scale` by appending zeros (exact).
    pub fn set_scale_up(&mut self, scale: i64) {
        while self.scale < scale {
            if !self.digits.is_empty() {
                self.digits.push(b'0');
            }
            self.scale += 1;
        }
    }

    /// The unscaled value's two's complement bytes.
    pub fn unscaled_bytes(&self) -> Vec<u8> {
        digits_to_twos_complement(self.negative, &self.digits)
    }
}

/// Formats unscaled digits with a scale as `BigDecimal.toPlainString()` does.
pub fn plain_string(negative: bool, digits: &[u8], scale: i64) -> String {
    let mut s = String::with_capacity(digits.len() + 3);
    if negative {
        s.push('-');
    }
    let digits = if digits.is_empty() { &b"0"[..] } else { digits };
    if scale <= 0 {
        s.extend(digits.iter().map(|&d| d as char));
        s.extend(std::iter::repeat_n('0', scale.unsigned_abs() as usize));
        return s;
    }
    let scale = scale as usize;
    if digits.len() > scale {
        let (int, frac) = digits.split_at(digits.len() - scale);
        s.extend(int.iter().map(|&d| d as char));
        s.push('.');
        s.extend(frac.iter().map(|&d| d as char));
    } else {
        s.push_str("0.");
        s.extend(std::iter::repeat_n('0', scale - digits.len()));
        s.extend(digits.iter().map(|&d| d as char));
    }
    s
}

/// Splits an i128 unscaled value into sign and decimal digits.
pub fn i128_digits(v: i128) -> (bool, Vec<u8>) {
    let s = v.unsigned_abs().to_string();
    let digits = if s == "0" { Vec::new() } else { s.into_bytes() };
    (v < 0, digits)
}

/// `(year, month, day)` of days since 1970-01-01 (proleptic Gregorian; Howard Hinnant's
/// `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Java's ISO year: four digits in 0..=9999, otherwise signed.
pub fn iso_year(y: i64) -> String {
    if (0..=9999).contains(&y) {
        format!("{y:04}")
    } else if y > 9999 {
        format!("+{y}")
    } else {
        format!("-{:04}", y.unsigned_abs())
    }
}

/// `ZonedTimestamp`: `YYYY-MM-DDTHH:MM:SS[.f{width}]Z` of µs since the epoch (UTC). The
/// reference for [`write_iso_timestamp_utc`] (tests).
#[cfg(test)]
pub fn iso_timestamp_utc(micros: i64, fraction_width: u32) -> String {
    let days = micros.div_euclid(86_400_000_000);
    let in_day = micros.rem_euclid(86_400_000_000);
    let (y, m, d) = civil_from_days(days);
    let secs = in_day / 1_000_000;
    let (h, mi, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = format!("{}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}", iso_year(y));
    if fraction_width > 0 {
        let frac = format!("{:06}", in_day % 1_000_000);
        out.push('.');
        out.push_str(
            frac.get(..(fraction_width.min(6) as usize))
                .unwrap_or(&frac),
        );
    }
    out.push('Z');
    out
}

/// `00`, `01`, ... `99`: two digits by table, not by division.
const DIGIT_PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// The last two ASCII digits of `v` at `at`.
#[inline]
fn put2(b: &mut [u8], at: usize, v: u32) {
    let k = (v % 100) as usize * 2;
    b[at..at + 2].copy_from_slice(&DIGIT_PAIRS[k..k + 2]);
}

/// [`iso_timestamp_utc`] as a JSON string, written in place (no intermediate `String`): the
/// digits go into a fixed template on the stack, appended with one copy.
pub fn write_iso_timestamp_utc(out: &mut Vec<u8>, micros: i64, fraction_width: u32) {
    let days = micros.div_euclid(86_400_000_000);
    let in_day = micros.rem_euclid(86_400_000_000);
    let (y, m, d) = civil_from_days(days);
    // INVARIANT: 0 <= in_day < 86_400_000_000, so both fit in u32.
    let secs = (in_day / 1_000_000) as u32;
    let frac = (in_day % 1_000_000) as u32;
    let (h, mi, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    // `"YYYY-MM-DDTHH:MM:SS.ffffffZ"`: the year at 1..5, the fraction at 21..27.
    let mut b = *b"\"0000-00-00T00:00:00.000000Z\"";
    put2(&mut b, 6, m);
    put2(&mut b, 9, d);
    put2(&mut b, 12, h);
    put2(&mut b, 15, mi);
    put2(&mut b, 18, s);
    let w = fraction_width.min(6) as usize;
    let end = if w > 0 {
        put2(&mut b, 21, frac / 10_000);
        put2(&mut b, 23, frac / 100 % 100);
        put2(&mut b, 25, frac % 100);
        b[21 + w] = b'Z';
        b[22 + w] = b'"';
        23 + w
    } else {
        b[20] = b'Z';
        b[21] = b'"';
        22
    };
    if (0..=9999).contains(&y) {
        let y = y as u32;
        put2(&mut b, 1, y / 100);
        put2(&mut b, 3, y % 100);
        out.extend_from_slice(&b[..end]);
    } else {
        // Java's ISO year outside 0..=9999: signed, at least four digits.
        out.push(b'"');
        out.extend_from_slice(iso_year(y).as_bytes());
        out.extend_from_slice(&b[5..end]);
    }
}

/// `HH:MM:SS[.fraction without trailing zeros]` of µs in a day.
pub fn time_of_day(micros: i64) -> String {
    let secs = micros / 1_000_000;
    let frac = micros % 1_000_000;
    let mut out = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    if frac != 0 {
        let f = format!("{frac:06}");
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(&[0x00, 0xff, 0x10]), "AP8Q");
        assert_eq!(base64(&[0xde, 0xad, 0xbe, 0xef]), "3q2+7w==");
        assert_eq!(base64(&[1]), "AQ==");
        assert_eq!(
            base64_decode("3q2+7w==").unwrap(),
            vec![0xde, 0xad, 0xbe, 0xef]
        );
    }

    #[test]
    fn twos_complement_matches_java_biginteger() {
        let b = |n: &str| {
            let neg = n.starts_with('-');
            base64(&digits_to_twos_complement(
                neg,
                n.trim_start_matches('-').as_bytes(),
            ))
        };
        assert_eq!(b("1234567"), "EtaH"); // 12345.67 at scale 2 (fixture)
        assert_eq!(b("-1"), "/w==");
        assert_eq!(b("-9999999999"), "/av0HAE=");
        assert_eq!(b("0"), "AA==");
        assert_eq!(b("-9223372036854775808"), "gAAAAAAAAAA=");
        assert_eq!(b("9223372036854775807"), "f/////////8=");
        assert_eq!(b("314159265358979323846"), "EQfV61tbpNfG");
        assert_eq!(b("128"), "AIA=");
    }

    #[test]
    fn parse_and_strip() {
        let mut p = ParsedDecimal::parse("0.000001").unwrap();
        assert_eq!((p.digits.as_slice(), p.scale), (&b"1"[..], 6));
        p = ParsedDecimal::parse("100.00").unwrap();
        p.strip_trailing_zeros();
        assert_eq!((p.digits.as_slice(), p.scale), (&b"100"[..], 0));
        p = ParsedDecimal::parse("-0.0").unwrap();
        p.strip_trailing_zeros();
        assert!(!p.negative && p.digits.is_empty() && p.scale == 0);
        assert!(ParsedDecimal::parse("NaN").is_none());
        let p = ParsedDecimal::parse("1.5e3").unwrap();
        assert_eq!(plain_string(p.negative, &p.digits, p.scale), "1500");
        assert_eq!(plain_string(true, b"1", 2), "-0.01");
        assert_eq!(plain_string(false, b"", 2), "0.00");
    }

    #[test]
    fn temporal_formats() {
        assert_eq!(
            iso_timestamp_utc(1_709_207_130_123_456, 6),
            "2024-02-29T11:45:30.123456Z"
        );
        assert_eq!(iso_timestamp_utc(-1, 6), "1969-12-31T23:59:59.999999Z");
        assert_eq!(
            iso_timestamp_utc(2_147_483_648_000_000, 6),
            "2038-01-19T03:14:08.000000Z"
        );
        assert_eq!(iso_timestamp_utc(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(civil_from_days(-719_528), (0, 1, 1));
        assert_eq!(iso_year(-1), "-0001");
        assert_eq!(time_of_day(29_730_500_000), "08:15:30.5");
    }

    proptest::proptest! {
        #[test]
        fn prop_written_timestamp_equals_string(us in proptest::prelude::any::<i64>(), w in 0u32..8) {
            let mut out = Vec::new();
            write_iso_timestamp_utc(&mut out, us, w);
            proptest::prop_assert_eq!(
                String::from_utf8(out).unwrap(),
                format!("\"{}\"", iso_timestamp_utc(us, w))
            );
        }
    }
}
