//! Collation ids (what the binlog calls charsets) → how to turn column bytes into UTF-8.
//!
//! # Traps
//! - MySQL's `latin1` is Windows-1252, not ISO-8859-1: 0x80 is `€`. The five bytes cp1252
//!   leaves undefined (0x81, 0x8D, 0x8F, 0x90, 0x9D) map to the C1 controls, as MySQL does.
//! - `utf8` means utf8mb3 (no 4-byte sequences) but any valid UTF-8 is accepted.
//! - MariaDB ≥ 10.10 numbers its `uca1400` collations from 2048 upwards, 256 ids per charset.

/// How text of a character set is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// `binary`: the column is bytes.
    Binary,
    Utf8,
    Latin1,
    Ascii,
    Ucs2,
    Utf16,
    Utf16Le,
    Utf32,
}

/// The character set of a collation id, if this decoder reads it.
pub fn charset_of_collation(id: u16) -> Option<Charset> {
    use Charset::*;
    Some(match id {
        63 => Binary,
        33 | 76 | 83 | 192..=215 | 223 | 253 => Utf8, // utf8mb3
        45 | 46 | 224..=247 | 255..=323 => Utf8,      // utf8mb4
        5 | 8 | 15 | 31 | 47 | 48 | 49 | 94 => Latin1,
        11 | 65 => Ascii,
        35 | 90 | 128..=151 | 159 => Ucs2,
        54 | 55 | 101..=124 | 327 => Utf16,
        56 | 62 => Utf16Le,
        60 | 61 | 160..=183 => Utf32,
        // MariaDB: utf8mb3 / utf8mb4 variants (`_nopad_bin`, `_general_nopad_ci`, ...).
        1025..=1279 => return mariadb_nopad(id),
        2048..=2303 => Utf8,
        2304..=2559 => Utf8,
        2560..=2815 => Ucs2,
        2816..=3071 => Utf16,
        3072..=3327 => Utf32,
        _ => return None,
    })
}

/// MariaDB's NO PAD collations are the PAD ones + 1024.
fn mariadb_nopad(id: u16) -> Option<Charset> {
    charset_of_collation(id - 1024)
}

/// The character set of a `CHARACTER_SET_NAME` from `information_schema`.
pub fn charset_of_name(name: &str) -> Option<Charset> {
    use Charset::*;
    Some(match name {
        "binary" => Binary,
        "utf8" | "utf8mb3" | "utf8mb4" => Utf8,
        "latin1" => Latin1,
        "ascii" => Ascii,
        "ucs2" => Ucs2,
        "utf16" => Utf16,
        "utf16le" => Utf16Le,
        "utf32" => Utf32,
        _ => return None,
    })
}

/// cp1252's 0x80..=0x9F (undefined bytes map to the same C1 code point, as MySQL does).
const CP1252_HIGH: [char; 32] = [
    '€', '\u{81}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{8d}', 'Ž', '\u{8f}',
    '\u{90}', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{9d}', 'ž', 'Ÿ',
];

/// Decodes `b` in `cs` into `out` (cleared first) unless it is UTF-8 already, in which case
/// the borrowed string is returned. `Err` names the problem.
pub fn decode<'a>(b: &'a [u8], cs: Charset, out: &'a mut String) -> Result<&'a str, &'static str> {
    out.clear();
    match cs {
        Charset::Binary => Err("binary data in a text column"),
        Charset::Utf8 => std::str::from_utf8(b).map_err(|_| "invalid UTF-8"),
        Charset::Ascii | Charset::Latin1 if b.is_ascii() => {
            // ASCII is UTF-8: no copy.
            std::str::from_utf8(b).map_err(|_| "invalid ASCII")
        }
        Charset::Ascii => Err("non-ASCII byte in an ascii column"),
        Charset::Latin1 => {
            out.reserve(b.len() + b.len() / 2);
            for &c in b {
                out.push(match c {
                    0x80..=0x9f => CP1252_HIGH[usize::from(c - 0x80)],
                    _ => char::from(c),
                });
            }
            Ok(out.as_str())
        }
        Charset::Ucs2 | Charset::Utf16 | Charset::Utf16Le => {
            if !b.len().is_multiple_of(2) {
                return Err("odd number of bytes in UTF-16/UCS-2 text");
            }
            let le = cs == Charset::Utf16Le;
            let units = b.chunks_exact(2).map(|p| {
                if le {
                    u16::from_le_bytes([p[0], p[1]])
                } else {
                    u16::from_be_bytes([p[0], p[1]])
                }
            });
            for c in char::decode_utf16(units) {
                out.push(c.map_err(|_| "unpaired surrogate")?);
            }
            Ok(out.as_str())
        }
        Charset::Utf32 => {
            if !b.len().is_multiple_of(4) {
                return Err("length not a multiple of 4 in UTF-32 text");
            }
            for p in b.chunks_exact(4) {
                let v = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
                out.push(char::from_u32(v).ok_or("invalid UTF-32 code point")?);
            }
            Ok(out.as_str())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes() {
        let mut s = String::new();
        assert_eq!(decode(b"abc", Charset::Latin1, &mut s).unwrap(), "abc");
        assert_eq!(
            decode(&[0x80, 0xe9], Charset::Latin1, &mut s).unwrap(),
            "€é"
        );
        assert_eq!(
            decode("😀".as_bytes(), Charset::Utf8, &mut s).unwrap(),
            "😀"
        );
        assert!(decode(&[0xff], Charset::Utf8, &mut s).is_err());
        assert_eq!(
            decode(&[0, 0x41, 0xd8, 0x3d, 0xde, 0x00], Charset::Utf16, &mut s).unwrap(),
            "A😀"
        );
        assert_eq!(
            decode(&[0, 0, 0, 0x41], Charset::Utf32, &mut s).unwrap(),
            "A"
        );
        assert_eq!(charset_of_collation(45), Some(Charset::Utf8));
        assert_eq!(charset_of_collation(8), Some(Charset::Latin1));
        assert_eq!(charset_of_collation(63), Some(Charset::Binary));
        assert_eq!(charset_of_collation(1), None);
    }
}
