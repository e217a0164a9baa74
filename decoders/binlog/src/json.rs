//! MySQL's binary JSON (`JSON` columns of MySQL 5.7+/8, `json_binary.cc`) → JSON text as MySQL
//! prints it (`{"a": 1, "b": [true, null]}`: `": "` and `", "` separators, keys in storage
//! order, which is sorted by length then bytes).
//!
//! ```text
//! value  := type u8, body
//! object := count, size, key entries (offset, len u16)*, value entries (type u8, offset|inline)*, keys, values
//! array  := count, size, value entries*, values        (count/size/offsets: 2 bytes small, 4 large)
//! scalar := int16 | uint16 | int32 | uint32 | int64 | uint64 | double | string (varlen + utf8mb4)
//!         | literal (0 null, 1 true, 2 false) | opaque (field type u8, varlen, bytes)
//! ```
//!
//! # Traps
//! - Offsets are relative to the start of the enclosing object/array body, and small values
//!   (literals, 16-bit ints; 32-bit ints in large containers) are *inlined* in the value entry.
//! - The string length is a 7-bit varint (LSB group first), not a packed integer.
//! - Opaque values carry a MySQL column type: DATE/TIME/DATETIME/TIMESTAMP as packed 8-byte
//!   integers, DECIMAL as precision, scale and packed decimal, anything else printed as
//!   `"base64:type<N>:<base64>"` like MySQL does.
//! - Depth is bounded (MySQL's own limit is 100) so hostile input cannot overflow the stack.
//! - Nothing stops two value entries from pointing at the same bytes, so a document can name
//!   one sub-value many times over: 150 levels of two-element arrays whose entries both point
//!   at the next level are 1.5 KB that print 2^150 values. MySQL writes every value once, and
//!   its text is at most [`OUTPUT_PER_BYTE`] bytes per document byte (a control character in a
//!   string, `\u0001`, is 6): past that the document shares bytes, an error.

use std::fmt::Write;

use crate::decimal;
use crate::reader::le_uint;

pub(crate) const SMALL_OBJECT: u8 = 0x00;
pub(crate) const LARGE_OBJECT: u8 = 0x01;
pub(crate) const SMALL_ARRAY: u8 = 0x02;
pub(crate) const LARGE_ARRAY: u8 = 0x03;
pub(crate) const LITERAL: u8 = 0x04;
pub(crate) const INT16: u8 = 0x05;
pub(crate) const UINT16: u8 = 0x06;
pub(crate) const INT32: u8 = 0x07;
pub(crate) const UINT32: u8 = 0x08;
pub(crate) const INT64: u8 = 0x09;
pub(crate) const UINT64: u8 = 0x0a;
pub(crate) const DOUBLE: u8 = 0x0b;
pub(crate) const STRING: u8 = 0x0c;
pub(crate) const OPAQUE: u8 = 0x0f;

const MAX_DEPTH: usize = 150;

/// Most text bytes a document byte can print as when no bytes are shared (module traps).
const OUTPUT_PER_BYTE: usize = 8;

type R<T> = Result<T, &'static str>;

/// Renders a whole binary JSON document (an empty document is JSON `null`, as MySQL reads a
/// zero-length value).
pub fn render(doc: &[u8], out: &mut String) -> R<()> {
    out.clear();
    let Some((&t, body)) = doc.split_first() else {
        out.push_str("null");
        return Ok(());
    };
    let limit = doc.len().saturating_mul(OUTPUT_PER_BYTE).saturating_add(64);
    value(t, body, out, 0, limit)
}

fn slice(b: &[u8], at: usize, n: usize) -> R<&[u8]> {
    at.checked_add(n)
        .and_then(|e| b.get(at..e))
        .ok_or("offset past the end of the JSON value")
}

/// `limit`: most text the whole document may print (module traps).
fn value(t: u8, b: &[u8], out: &mut String, depth: usize, limit: usize) -> R<()> {
    if depth > MAX_DEPTH {
        return Err("JSON nested too deeply");
    }
    if out.len() > limit {
        return Err("JSON values share bytes (the text outgrows the document)");
    }
    match t {
        SMALL_OBJECT | LARGE_OBJECT => container(b, t == LARGE_OBJECT, true, out, depth, limit),
        SMALL_ARRAY | LARGE_ARRAY => container(b, t == LARGE_ARRAY, false, out, depth, limit),
        LITERAL => literal(*b.first().ok_or("empty literal")?, out),
        INT16 => num(i64::from(le_uint(slice(b, 0, 2)?) as u16 as i16), out),
        UINT16 => num(le_uint(slice(b, 0, 2)?), out),
        INT32 => num(i64::from(le_uint(slice(b, 0, 4)?) as u32 as i32), out),
        UINT32 => num(le_uint(slice(b, 0, 4)?), out),
        INT64 => num(le_uint(slice(b, 0, 8)?) as i64, out),
        UINT64 => num(le_uint(slice(b, 0, 8)?), out),
        DOUBLE => {
            let bits = le_uint(slice(b, 0, 8)?);
            push_double(f64::from_bits(bits), out);
            Ok(())
        }
        STRING => {
            let (len, n) = varlen(b)?;
            let s = std::str::from_utf8(slice(b, n, len)?).map_err(|_| "JSON string not UTF-8")?;
            push_string(s, out);
            Ok(())
        }
        OPAQUE => {
            let ft = *b.first().ok_or("empty opaque value")?;
            let (len, n) = varlen(&b[1..])?;
            opaque(ft, slice(b, 1 + n, len)?, out)
        }
        _ => Err("unknown JSON value type"),
    }
}

fn num(v: impl Into<Int>, out: &mut String) -> R<()> {
    match v.into() {
        Int::Signed(v) => {
            if v < 0 {
                out.push('-');
            }
            push_u64(v.unsigned_abs(), out);
        }
        Int::Unsigned(v) => push_u64(v, out),
    }
    Ok(())
}

/// A JSON integer of either signedness (MySQL's INT64 and UINT64 share a range up to 2^63).
enum Int {
    Signed(i64),
    Unsigned(u64),
}

impl From<i64> for Int {
    fn from(v: i64) -> Self {
        Int::Signed(v)
    }
}

impl From<u64> for Int {
    fn from(v: u64) -> Self {
        Int::Unsigned(v)
    }
}

/// Decimal digits of `v` without `core::fmt` (its machinery was ~12 % of a JSON-heavy row's
/// decode, docs/benchmarks.md).
fn push_u64(mut v: u64, out: &mut String) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&buf[i..]).expect("ASCII digits are UTF-8"));
}

fn literal(v: u8, out: &mut String) -> R<()> {
    out.push_str(match v {
        0 => "null",
        1 => "true",
        2 => "false",
        _ => return Err("unknown JSON literal"),
    });
    Ok(())
}

/// 7-bit groups, least significant first, at most 5 bytes: `(value, bytes used)`.
pub(crate) fn varlen(b: &[u8]) -> R<(usize, usize)> {
    let mut v: u64 = 0;
    for i in 0..5 {
        let byte = *b.get(i).ok_or("truncated JSON length")?;
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return usize::try_from(v)
                .map(|v| (v, i + 1))
                .map_err(|_| "JSON length too large");
        }
    }
    Err("JSON length longer than 5 bytes")
}

fn container(
    b: &[u8],
    large: bool,
    object: bool,
    out: &mut String,
    depth: usize,
    limit: usize,
) -> R<()> {
    let w = if large { 4 } else { 2 };
    let count = le_uint(slice(b, 0, w)?) as usize;
    let size = le_uint(slice(b, w, w)?) as usize;
    if size > b.len() {
        return Err("JSON container size past the end");
    }
    let b = &b[..size];
    let key_entry = if object { w + 2 } else { 0 };
    let value_entry = 1 + w;
    // Every entry takes bytes: bound the loop by the input.
    count
        .checked_mul(key_entry + value_entry)
        .and_then(|h| h.checked_add(2 * w))
        .filter(|&h| h <= size)
        .ok_or("JSON element count past the end")?;
    out.push(if object { '{' } else { '[' });
    for i in 0..count {
        if i > 0 {
            out.push_str(", ");
        }
        if object {
            let e = 2 * w + i * key_entry;
            let off = le_uint(slice(b, e, w)?) as usize;
            let len = le_uint(slice(b, e + w, 2)?) as usize;
            let key = std::str::from_utf8(slice(b, off, len)?).map_err(|_| "JSON key not UTF-8")?;
            push_string(key, out);
            out.push_str(": ");
        }
        let e = 2 * w + count * key_entry + i * value_entry;
        let t = *b.get(e).ok_or("truncated JSON value entry")?;
        let inline = match t {
            LITERAL | INT16 | UINT16 => true,
            INT32 | UINT32 => large,
            _ => false,
        };
        if inline {
            value(t, slice(b, e + 1, w)?, out, depth + 1, limit)?;
        } else {
            let off = le_uint(slice(b, e + 1, w)?) as usize;
            value(
                t,
                b.get(off..).ok_or("JSON value offset past the end")?,
                out,
                depth + 1,
                limit,
            )?;
        }
    }
    out.push(if object { '}' } else { ']' });
    Ok(())
}

/// JSON string with MySQL's escapes (`"`, `\`, control characters).
pub(crate) fn push_string(s: &str, out: &mut String) {
    out.reserve(s.len() + 2);
    out.push('"');
    // Runs of bytes that need no escape are copied whole, found 8 bytes at a time: every byte
    // to escape is ASCII, so a run never splits a UTF-8 sequence (a char-by-char loop was
    // ~40 % of a JSON-heavy row's decode, docs/benchmarks.md).
    let bytes = s.as_bytes();
    let (mut i, mut run) = (0, 0);
    while i < bytes.len() {
        if let Some(w) = bytes.get(i..i + 8) {
            let w = u64::from_le_bytes(w.try_into().expect("a slice of 8 bytes"));
            if !word_needs_escape(w) {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        let esc = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => {
                i += 1;
                continue;
            }
        };
        out.push_str(&s[run..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(esc);
        }
        i += 1;
        run = i;
    }
    out.push_str(&s[run..]);
    out.push('"');
}

/// Whether any of 8 bytes is `"`, `\` or below 0x20 (the "has less" / "has zero" byte tests
/// of Bit Twiddling Hacks: exact as a yes/no answer, not as to which byte).
fn word_needs_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    (below_space | has_zero(w ^ (ONES * u64::from(b'"'))) | has_zero(w ^ (ONES * u64::from(b'\\'))))
        != 0
}

/// A double as MySQL prints it in JSON: shortest round-trip digits, exponent form outside
/// 1e-5..1e15, and a `.0` on integral values so they read back as doubles.
pub(crate) fn push_double(d: f64, out: &mut String) {
    let a = d.abs();
    let start = out.len();
    if a != 0.0 && !(1e-5..1e15).contains(&a) {
        let _ = write!(out, "{d:e}");
    } else {
        let _ = write!(out, "{d}");
        if !out[start..].contains(['.', 'e', 'N', 'i']) {
            out.push_str(".0");
        }
    }
}

fn opaque(ft: u8, data: &[u8], out: &mut String) -> R<()> {
    use crate::table_map::ty;
    match ft {
        ty::NEWDECIMAL => {
            let (&p, rest) = data.split_first().ok_or("empty JSON decimal")?;
            let (&s, bin) = rest.split_first().ok_or("JSON decimal without scale")?;
            let v = decimal::decode(bin, p, s).ok_or("invalid JSON decimal")?;
            crate::values::push_decimal(v, s, out);
            Ok(())
        }
        ty::DATE | ty::DATETIME | ty::TIMESTAMP | ty::TIME => {
            if data.len() < 8 {
                return Err("short JSON temporal value");
            }
            let packed = le_uint(&data[..8]) as i64;
            out.push('"');
            if ft == ty::TIME {
                crate::values::push_packed_time(packed, out);
            } else {
                crate::values::push_packed_datetime(packed, ft == ty::DATE, out);
            }
            out.push('"');
            Ok(())
        }
        _ => {
            let _ = write!(out, "\"base64:type{ft}:");
            crate::values::push_base64(data, out);
            out.push('"');
            Ok(())
        }
    }
}

/// Test/bench encoder: `serde_json::Value` → binary JSON (small containers when they fit).
pub fn encode(v: &serde_json::Value) -> Vec<u8> {
    let mut out = Vec::new();
    let (t, body) = encode_value(v);
    out.push(t);
    out.extend_from_slice(&body);
    out
}

fn encode_value(v: &serde_json::Value) -> (u8, Vec<u8>) {
    use serde_json::Value as V;
    match v {
        V::Null => (LITERAL, vec![0]),
        V::Bool(true) => (LITERAL, vec![1]),
        V::Bool(false) => (LITERAL, vec![2]),
        V::Number(n) => {
            if let Some(i) = n.as_i64() {
                (INT64, i.to_le_bytes().to_vec())
            } else if let Some(u) = n.as_u64() {
                (UINT64, u.to_le_bytes().to_vec())
            } else {
                (DOUBLE, n.as_f64().unwrap_or(0.0).to_le_bytes().to_vec())
            }
        }
        V::String(s) => {
            let mut b = Vec::new();
            let mut len = s.len();
            loop {
                let byte = (len & 0x7f) as u8;
                len >>= 7;
                if len == 0 {
                    b.push(byte);
                    break;
                }
                b.push(byte | 0x80);
            }
            b.extend_from_slice(s.as_bytes());
            (STRING, b)
        }
        V::Array(items) => {
            let elems: Vec<(Option<&str>, &serde_json::Value)> =
                items.iter().map(|v| (None, v)).collect();
            encode_container(&elems, false)
        }
        V::Object(map) => {
            let mut keys: Vec<(&String, &serde_json::Value)> = map.iter().collect();
            keys.sort_by(|a, b| a.0.len().cmp(&b.0.len()).then(a.0.cmp(b.0)));
            let elems: Vec<(Option<&str>, &serde_json::Value)> = keys
                .into_iter()
                .map(|(k, v)| (Some(k.as_str()), v))
                .collect();
            encode_container(&elems, true)
        }
    }
}

fn encode_container(elems: &[(Option<&str>, &serde_json::Value)], object: bool) -> (u8, Vec<u8>) {
    for large in [false, true] {
        let w = if large { 4 } else { 2 };
        let max = if large {
            u32::MAX as usize
        } else {
            u16::MAX as usize
        };
        let n = elems.len();
        let key_entry = if object { w + 2 } else { 0 };
        let header = 2 * w + n * (key_entry + 1 + w);
        let mut keys = Vec::new();
        let mut key_offs = Vec::new();
        let mut at = header;
        for (k, _) in elems {
            if let Some(k) = k {
                key_offs.push((at, k.len()));
                keys.extend_from_slice(k.as_bytes());
                at += k.len();
            }
        }
        let mut values = Vec::new();
        let mut entries = Vec::new();
        for (_, v) in elems {
            let (t, body) = encode_value(v);
            let inline = t == LITERAL;
            if inline {
                let mut slot = body.clone();
                slot.resize(w, 0);
                entries.push((t, slot));
            } else {
                let off = at + values.len();
                let mut slot = (off as u64).to_le_bytes()[..w].to_vec();
                slot.truncate(w);
                entries.push((t, slot));
                values.extend_from_slice(&body);
            }
        }
        let size = header + keys.len() + values.len();
        if size > max || n > max {
            continue;
        }
        let mut out = Vec::with_capacity(size);
        out.extend_from_slice(&(n as u64).to_le_bytes()[..w]);
        out.extend_from_slice(&(size as u64).to_le_bytes()[..w]);
        for (off, len) in key_offs {
            out.extend_from_slice(&(off as u64).to_le_bytes()[..w]);
            out.extend_from_slice(&(len as u16).to_le_bytes());
        }
        for (t, slot) in entries {
            out.push(t);
            out.extend_from_slice(&slot);
        }
        out.extend_from_slice(&keys);
        out.extend_from_slice(&values);
        let t = match (object, large) {
            (true, false) => SMALL_OBJECT,
            (true, true) => LARGE_OBJECT,
            (false, false) => SMALL_ARRAY,
            (false, true) => LARGE_ARRAY,
        };
        return (t, out);
    }
    (LITERAL, vec![0])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(doc: &[u8]) -> String {
        let mut s = String::new();
        render(doc, &mut s).unwrap();
        s
    }

    /// The char-by-char form `push_string` replaced: the reference for the fast one.
    fn push_string_reference(s: &str, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }

    #[test]
    fn string_escapes_and_integers() {
        let mut out = String::new();
        push_string("a\"b\\c\n\r\t\u{8}\u{c}\u{1}\u{1f} é😀\u{7f}", &mut out);
        assert_eq!(
            out,
            "\"a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0001\\u001f é😀\u{7f}\""
        );
        for v in [0i64, 7, -7, 10, -10, i64::MIN, i64::MAX] {
            out.clear();
            num(v, &mut out).unwrap();
            assert_eq!(out, v.to_string());
        }
        for v in [0u64, 9, 10, 99, 100, u64::MAX] {
            out.clear();
            num(v, &mut out).unwrap();
            assert_eq!(out, v.to_string());
        }
    }

    proptest::proptest! {
        #[test]
        fn prop_push_string_matches_reference(s in "\\PC*|[\\x00-\\x20\"\\\\a-z\u{e9}\u{1F600}]*") {
            let (mut fast, mut slow) = (String::new(), String::new());
            push_string(&s, &mut fast);
            push_string_reference(&s, &mut slow);
            proptest::prop_assert_eq!(fast, slow);
        }

        #[test]
        fn prop_word_test_is_exact(w in proptest::prelude::any::<[u8; 8]>()) {
            let naive = w.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
            proptest::prop_assert_eq!(word_needs_escape(u64::from_le_bytes(w)), naive);
        }
    }

    #[test]
    fn documented_examples() {
        // From json_binary.h: small array [1, "a"]? Build by hand: count 2, size, int16 inline, string.
        let doc = [
            SMALL_ARRAY,
            2,
            0,
            12,
            0,
            INT16,
            1,
            0,
            STRING,
            10,
            0,
            1,
            b'a',
        ];
        assert_eq!(text(&doc), "[1, \"a\"]");
        // Small object {"k": true}.
        let doc = [SMALL_OBJECT, 1, 0, 12, 0, 11, 0, 1, 0, LITERAL, 1, 0, b'k'];
        assert_eq!(text(&doc), "{\"k\": true}");
        assert_eq!(text(&[]), "null");
        assert_eq!(text(&[DOUBLE, 0, 0, 0, 0, 0, 0, 0xf8, 0x3f]), "1.5");
        assert_eq!(text(&[DOUBLE, 0, 0, 0, 0, 0, 0, 0x08, 0x40]), "3.0");
        assert_eq!(text(&[STRING, 3, b'a', b'"', b'\n']), "\"a\\\"\\n\"");
    }

    #[test]
    fn encoder_round_trip() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"name": "x", "tags": [1, -2, 3.25, null, false, {"z": "😀"}], "big": 18446744073709551615, "a": {}}"#,
        )
        .unwrap();
        assert_eq!(
            text(&encode(&v)),
            r#"{"a": {}, "big": 18446744073709551615, "name": "x", "tags": [1, -2, 3.25, null, false, {"z": "😀"}]}"#
        );
    }

    #[test]
    fn hostile_input_is_an_error() {
        assert!(render(&[SMALL_ARRAY, 0xff, 0xff, 4, 0], &mut String::new()).is_err());
        assert!(render(
            &[STRING, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
            &mut String::new()
        )
        .is_err());
        let mut deep = Vec::new();
        for _ in 0..200 {
            deep.extend_from_slice(&[SMALL_ARRAY, 1, 0, 0xff, 0x7f]);
        }
        assert!(render(&deep, &mut String::new()).is_err());
        assert!(render(&[0x42], &mut String::new()).is_err());
    }

    #[test]
    fn shared_sub_values_are_an_error_not_exponential_output() {
        // 150 levels of a small array of two elements that both point at the next level (at
        // offset 10 of the current one): 1.5 KB of document that printed 2^150 values
        // (endless, unbounded memory) before the output bound.
        let levels = 150;
        let mut doc = vec![SMALL_ARRAY];
        for k in 0..levels {
            let size = u16::try_from(10 * (levels - k) + 4).unwrap();
            doc.extend_from_slice(&[2, 0]);
            doc.extend_from_slice(&size.to_le_bytes());
            doc.extend_from_slice(&[SMALL_ARRAY, 10, 0, SMALL_ARRAY, 10, 0]);
        }
        doc.extend_from_slice(&[0, 0, 4, 0]); // the innermost: an empty array
        let mut out = String::new();
        let e = render(&doc, &mut out).unwrap_err();
        assert!(e.contains("share bytes"), "{e}");
        assert!(
            out.len() <= doc.len() * OUTPUT_PER_BYTE + 64 + 16,
            "{}",
            out.len()
        );
        // Two levels of the same sharing: small enough to print, and it still does.
        let mut doc = vec![SMALL_ARRAY];
        for k in 0..2 {
            let size = u16::try_from(10 * (2 - k) + 4).unwrap();
            doc.extend_from_slice(&[2, 0]);
            doc.extend_from_slice(&size.to_le_bytes());
            doc.extend_from_slice(&[SMALL_ARRAY, 10, 0, SMALL_ARRAY, 10, 0]);
        }
        doc.extend_from_slice(&[0, 0, 4, 0]);
        assert_eq!(text(&doc), "[[[], []], [[], []]]");
    }

    #[test]
    fn text_of_real_documents_stays_within_the_output_bound() {
        // The densest text per byte: control characters in strings and keys (6 bytes each).
        let ctl: String = "\u{1}".repeat(300);
        let mut m = serde_json::Map::new();
        m.insert(
            ctl.clone(),
            serde_json::json!([ctl, false, null, -32768, {}, []]),
        );
        let v = serde_json::Value::Object(m);
        let doc = encode(&v);
        let mut out = String::new();
        render(&doc, &mut out).unwrap();
        assert!(
            out.len() <= doc.len() * OUTPUT_PER_BYTE,
            "{} {}",
            out.len(),
            doc.len()
        );
    }
}
