//! MySQL's packed binary DECIMAL (`decimal2bin`): groups of 9 decimal digits in 4 big-endian
//! bytes, a shorter leading group for the integer part and trailing group for the fraction,
//! sign in the top bit of the first byte (set = positive), negative numbers bit-inverted.
//!
//! ```text
//! decimal(14,4): intg 10 = 1 leading digit (1 byte) + one 9-digit word; frac 4 = 2 bytes
//! 1234567890.1234 → 81 0D FB 38 D2 04 D2
//! ```

use arrow_buffer::i256;

/// Bytes of a leading/trailing group of `n` digits (`dig2bytes`).
const DIG2BYTES: [usize; 10] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];
const POW10: [u32; 10] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
];

/// Size in bytes of a `decimal(precision, scale)` value.
pub fn binary_size(precision: u8, scale: u8) -> usize {
    let intg = usize::from(precision.saturating_sub(scale));
    let frac = usize::from(scale);
    (intg / 9) * 4 + DIG2BYTES[intg % 9] + (frac / 9) * 4 + DIG2BYTES[frac % 9]
}

/// The unscaled value of a packed decimal, as i256 (≤ 65 digits always fits). `None` if a
/// digit group is out of range (corrupt bytes).
pub fn decode(b: &[u8], precision: u8, scale: u8) -> Option<i256> {
    let size = binary_size(precision, scale);
    if b.len() != size || size == 0 || scale > precision {
        return None;
    }
    let negative = b[0] & 0x80 == 0;
    let mask: u8 = if negative { 0xff } else { 0 };
    let byte = |i: usize| -> u8 {
        let v = b[i] ^ mask;
        if i == 0 {
            v ^ 0x80
        } else {
            v
        }
    };
    let intg = usize::from(precision - scale);
    let frac = usize::from(scale);
    let mut at = 0usize;
    let mut acc = i256::ZERO;
    let ten9 = i256::from_i128(1_000_000_000);
    let group = |digits: usize, at: &mut usize, acc: &mut i256| -> Option<()> {
        let n = DIG2BYTES[digits];
        let mut v: u32 = 0;
        for k in 0..n {
            v = (v << 8) | u32::from(byte(*at + k));
        }
        *at += n;
        if v >= POW10[digits] {
            return None;
        }
        let scale_by = if digits == 9 {
            ten9
        } else {
            i256::from_i128(i128::from(POW10[digits]))
        };
        *acc = acc
            .wrapping_mul(scale_by)
            .wrapping_add(i256::from_i128(i128::from(v)));
        Some(())
    };
    if intg % 9 != 0 {
        group(intg % 9, &mut at, &mut acc)?;
    }
    for _ in 0..intg / 9 {
        group(9, &mut at, &mut acc)?;
    }
    for _ in 0..frac / 9 {
        group(9, &mut at, &mut acc)?;
    }
    if frac % 9 != 0 {
        group(frac % 9, &mut at, &mut acc)?;
    }
    Some(if negative { acc.wrapping_neg() } else { acc })
}

/// The inverse of [`decode`], for the test encoder: `unscaled` must have at most `precision`
/// digits.
pub fn encode(unscaled: i256, precision: u8, scale: u8) -> Vec<u8> {
    let negative = unscaled < i256::ZERO;
    let mut mag = if negative {
        unscaled.wrapping_neg()
    } else {
        unscaled
    };
    let intg = usize::from(precision - scale);
    let frac = usize::from(scale);
    // Split into digit groups from the right: frac trailing, frac words, int words, int lead.
    let mut groups: Vec<(usize, u32)> = Vec::new();
    let mut take = |digits: usize, mag: &mut i256| {
        let p = i256::from_i128(i128::from(POW10[digits]));
        let (q, r) = (mag.wrapping_div(p), mag.wrapping_rem(p));
        *mag = q;
        groups.push((digits, r.as_i128() as u32));
    };
    if frac % 9 != 0 {
        take(frac % 9, &mut mag);
    }
    for _ in 0..frac / 9 {
        take(9, &mut mag);
    }
    for _ in 0..intg / 9 {
        take(9, &mut mag);
    }
    if intg % 9 != 0 {
        take(intg % 9, &mut mag);
    }
    let mut out = Vec::with_capacity(binary_size(precision, scale));
    for (digits, v) in groups.into_iter().rev() {
        let n = DIG2BYTES[digits];
        for k in (0..n).rev() {
            out.push((v >> (8 * k)) as u8);
        }
    }
    if let Some(first) = out.first_mut() {
        *first ^= 0x80;
    }
    if negative {
        out.iter_mut().for_each(|b| *b ^= 0xff);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // From MySQL's decimal.c comment: 1234567890.1234 as decimal(14,4).
        let b = [0x81, 0x0D, 0xFB, 0x38, 0xD2, 0x04, 0xD2];
        assert_eq!(binary_size(14, 4), 7);
        assert_eq!(decode(&b, 14, 4), Some(i256::from_i128(12_345_678_901_234)));
        let neg = [0x7E, 0xF2, 0x04, 0xC7, 0x2D, 0xFB, 0x2D];
        assert_eq!(
            decode(&neg, 14, 4),
            Some(i256::from_i128(-12_345_678_901_234))
        );
        assert_eq!(encode(i256::from_i128(-12_345_678_901_234), 14, 4), neg);
        assert_eq!(decode(&[0x80], 2, 0), Some(i256::ZERO));
        assert_eq!(decode(&[0x80, 0x00], 2, 0), None);
        // 0xFF leading digit group (>= 10) is corrupt.
        assert_eq!(decode(&[0xFF], 2, 0), None);
    }

    #[test]
    fn round_trip_65_digits() {
        let max = i256::from_string(&"9".repeat(65)).unwrap();
        for v in [max, max.wrapping_neg(), i256::from_i128(1), i256::ZERO] {
            let b = encode(v, 65, 30);
            assert_eq!(b.len(), binary_size(65, 30));
            assert_eq!(decode(&b, 65, 30), Some(v));
        }
    }
}
