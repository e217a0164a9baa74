//! The JSON writer under the encoder: scalars appended to a `Vec<u8>`, formatted exactly as
//! `serde_json` formats them (the encoder's output was a serialised `serde_json::Value` before
//! it wrote bytes directly, and must stay byte for byte the same).
//!
//! Strings, integers and floats go through `serde_json::Serializer` itself, so escaping
//! (`\"`, `\\`, `\n`… and `\u00XX` for other control characters; non-ASCII and DEL as is),
//! integer digits (itoa) and float digits (ryu's shortest form, `null` for NaN/±Infinity) are
//! serde_json's by construction, not a copy of its rules. Writing into a `Vec` cannot fail,
//! so the serialiser's `Result` is discarded.
//!
//! # Traps
//! - A float must be written with [`f64`], never via `Display`: Rust prints `1e-300`, serde_json
//!   `1e-300` too but `100.0` where Rust prints `100` (the field would turn into an integer).
//! - Object keys known at compile time are written as literals (`b"\"before\":"`); only keys
//!   from the data (column names, server names) need [`str`].

use serde::Serializer as _;

use super::codec::B64;

#[inline]
fn ser(out: &mut Vec<u8>) -> serde_json::Serializer<&mut Vec<u8>> {
    serde_json::Serializer::new(out)
}

/// A JSON string (quoted, escaped as serde_json escapes).
#[inline]
pub fn str(out: &mut Vec<u8>, s: &str) {
    // Fast path: nothing to escape (the common case for names, text and numbers as strings).
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        let _ = ser(out).serialize_str(s);
    }
}

/// A string known to need no escaping (digits, base64, ISO dates); debug-checked.
#[inline]
pub fn plain_str(out: &mut Vec<u8>, s: &str) {
    debug_assert!(s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\'));
    out.reserve(s.len() + 2);
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

#[inline]
pub fn i64(out: &mut Vec<u8>, v: i64) {
    let _ = ser(out).serialize_i64(v);
}

#[inline]
pub fn u64(out: &mut Vec<u8>, v: u64) {
    let _ = ser(out).serialize_u64(v);
}

/// A float as serde_json writes an `f64` (`null` when not finite).
#[inline]
pub fn f64(out: &mut Vec<u8>, v: f64) {
    let _ = ser(out).serialize_f64(v);
}

#[inline]
pub fn bool(out: &mut Vec<u8>, v: bool) {
    out.extend_from_slice(if v { b"true" } else { b"false" });
}

#[inline]
pub fn null(out: &mut Vec<u8>) {
    out.extend_from_slice(b"null");
}

/// An optional integer (`null` when `None`).
#[inline]
pub fn opt_u64(out: &mut Vec<u8>, v: Option<u64>) {
    match v {
        Some(v) => u64(out, v),
        None => null(out),
    }
}

/// Standard base64 with padding as a JSON string (what JsonConverter writes for `bytes`); the
/// same alphabet as [`super::codec::base64`], written in place.
pub fn base64(out: &mut Vec<u8>, data: &[u8]) {
    out.reserve(data.len().div_ceil(3) * 4 + 2);
    out.push(b'"');
    let mut chunks = data.chunks_exact(3);
    for c in &mut chunks {
        let n = (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2]);
        out.extend_from_slice(&[
            B64[(n >> 18) as usize & 63],
            B64[(n >> 12) as usize & 63],
            B64[(n >> 6) as usize & 63],
            B64[n as usize & 63],
        ]);
    }
    match *chunks.remainder() {
        [a] => {
            let n = u32::from(a) << 16;
            out.extend_from_slice(&[B64[(n >> 18) as usize & 63], B64[(n >> 12) as usize & 63]]);
            out.extend_from_slice(b"==");
        }
        [a, b] => {
            let n = (u32::from(a) << 16) | (u32::from(b) << 8);
            out.extend_from_slice(&[
                B64[(n >> 18) as usize & 63],
                B64[(n >> 12) as usize & 63],
                B64[(n >> 6) as usize & 63],
            ]);
            out.push(b'=');
        }
        _ => {}
    }
    out.push(b'"');
}

/// A Connect `Decimal`'s unscaled value as base64 JSON: the minimal big-endian two's
/// complement bytes of `v` (what [`super::codec::minimal_twos_complement`] gives for its
/// bytes, at any sign-extended width), without an intermediate `Vec`.
#[inline]
pub fn decimal_bytes(out: &mut Vec<u8>, v: i128) {
    base64(
        out,
        super::codec::minimal_twos_complement_slice(&v.to_be_bytes()),
    );
}

/// A `serde_json::Value` (rare paths: lossless nested arrays; schemas, once per plan).
pub fn value(out: &mut Vec<u8>, v: &serde_json::Value) {
    let _ = serde_json::to_writer(&mut *out, v);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every ASCII byte and a few others alone and amid text: escaped as serde_json does.
    #[test]
    fn str_escapes_every_ascii_byte_as_serde_json() {
        for c in (0u8..=0x7f).map(char::from).chain(['é', '\u{2028}', '😀']) {
            for s in [
                c.to_string(),
                format!("a{c}b{c}{c}"),
                c.to_string().repeat(300),
            ] {
                let mut out = Vec::new();
                str(&mut out, &s);
                assert_eq!(out, serde_json::to_vec(&s).unwrap(), "{s:?}");
            }
        }
    }

    proptest! {
        #[test]
        fn prop_scalars_match_serde_json(s in "\\PC*|[\u{0}-\u{7f}]*", i in any::<i64>(), u in any::<u64>(), f in any::<f64>(), b in proptest::collection::vec(any::<u8>(), 0..40)) {
            let mut out = Vec::new();
            str(&mut out, &s);
            prop_assert_eq!(&out, &serde_json::to_vec(&s).unwrap());
            out.clear();
            i64(&mut out, i);
            prop_assert_eq!(&out, &serde_json::to_vec(&serde_json::Value::from(i)).unwrap());
            out.clear();
            u64(&mut out, u);
            prop_assert_eq!(&out, &serde_json::to_vec(&serde_json::Value::from(u)).unwrap());
            out.clear();
            f64(&mut out, f);
            prop_assert_eq!(&out, &serde_json::to_vec(&serde_json::Value::from(f)).unwrap());
            out.clear();
            base64(&mut out, &b);
            prop_assert_eq!(&out, &serde_json::to_vec(&super::super::codec::base64(&b)).unwrap());
        }

        /// The i128 path equals the bytes of the i128 and of its i256 sign extension.
        #[test]
        fn prop_decimal_bytes_are_minimal_twos_complement(v in any::<i128>(), small in any::<i64>()) {
            use super::super::codec::{base64 as b64, minimal_twos_complement as min};
            for v in [v, i128::from(small), 0, -1, 127, 128, -128, -129, i128::MIN, i128::MAX] {
                let mut out = Vec::new();
                decimal_bytes(&mut out, v);
                prop_assert_eq!(&out, &serde_json::to_vec(&b64(&min(&v.to_be_bytes()))).unwrap());
                let wide = arrow_buffer::i256::from_i128(v).to_be_bytes();
                prop_assert_eq!(&out, &serde_json::to_vec(&b64(&min(&wide))).unwrap());
            }
        }
    }
}
