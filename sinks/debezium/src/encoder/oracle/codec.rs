//! Low-level encodings Debezium's JSON uses: base64 (Kafka Connect `bytes`), the two's
//! complement unscaled value of a Connect `Decimal`, plain decimal strings and ISO-8601 dates.
//!
//! # Traps
//! - Connect `Decimal` bytes are `BigInteger.toByteArray()`: big-endian, two's complement,
//!   *minimal* length (`0` is one zero byte, `-1` is `0xff`, `128` is `0x00 0x80`).
//! - Java formats years outside 0..=9999 with a sign (`+10000`, `-0001`); proleptic Gregorian,
//!   year 0 = 1 BC.

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

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
    let mut start = 0;
    while start + 1 < bytes.len() {
        let (b, next) = (bytes[start], bytes[start + 1]);
        if (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    bytes.get(start..).unwrap_or_default().to_vec()
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

/// `ZonedTimestamp`: `YYYY-MM-DDTHH:MM:SS[.f{width}]Z` of µs since the epoch (UTC).
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
