//! Partial JSON updates (`binlog_row_value_options=PARTIAL_JSON`, MySQL 8.0.3+): in a
//! PARTIAL_UPDATE_ROWS_EVENT the after image of a JSON column may be a list of diffs against
//! the before image instead of the whole document (`Json_diff_vector::write_binary`).
//!
//! ```text
//! value := length u32 | diff*
//! diff  := operation u8 (0 REPLACE, 1 INSERT, 2 REMOVE) | path length (packed) | path
//!          | REPLACE/INSERT: value length (packed) | binary JSON value
//! ```
//!
//! The decoder applies the diffs to the before image (which is always full for JSON columns)
//! and emits the whole new document, so sinks never see a diff.
//!
//! # Traps
//! - Paths are MySQL JSON paths (`$.a[2]."b c"`) in canonical form; only member and array-cell
//!   legs occur (no wildcards).
//! - The printed document must match what MySQL would print: keys ordered by length, then
//!   bytes (binary JSON's storage order), `": "` and `", "` separators.

use serde_json::{Map, Value};

use crate::json;
use crate::reader::Reader;

type R<T> = Result<T, String>;

/// One path leg.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Leg {
    Key(String),
    Index(usize),
}

fn parse_path(p: &str) -> R<Vec<Leg>> {
    let b = p.as_bytes();
    if b.first() != Some(&b'$') {
        return Err(format!("JSON path {p:?} does not start with $"));
    }
    let mut i = 1;
    let mut legs = Vec::new();
    while i < b.len() {
        match b[i] {
            b'.' if b.get(i + 1) == Some(&b'"') => {
                // A quoted key: JSON string syntax up to the closing quote.
                let start = i + 1;
                let mut j = start + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                let quoted = p.get(start..=j).ok_or("unterminated quoted key")?;
                let key: String =
                    serde_json::from_str(quoted).map_err(|e| format!("bad quoted key: {e}"))?;
                legs.push(Leg::Key(key));
                i = j + 1;
            }
            b'.' => {
                let start = i + 1;
                let mut j = start;
                while j < b.len() && b[j] != b'.' && b[j] != b'[' {
                    j += 1;
                }
                legs.push(Leg::Key(p[start..j].to_owned()));
                i = j;
            }
            b'[' => {
                let end = p[i..].find(']').ok_or("unterminated array index")? + i;
                let n = p[i + 1..end]
                    .trim()
                    .parse()
                    .map_err(|_| format!("bad array index in {p:?}"))?;
                legs.push(Leg::Index(n));
                i = end + 1;
            }
            _ => return Err(format!("unexpected character in JSON path {p:?}")),
        }
    }
    Ok(legs)
}

fn child<'v>(v: &'v mut Value, leg: &Leg) -> Option<&'v mut Value> {
    match (v, leg) {
        (Value::Object(m), Leg::Key(k)) => m.get_mut(k),
        (Value::Array(a), Leg::Index(i)) => a.get_mut(*i),
        _ => None,
    }
}

fn apply_one(doc: &mut Value, op: u8, legs: &[Leg], new: Option<Value>) -> R<()> {
    let Some((last, parents)) = legs.split_last() else {
        return match (op, new) {
            (0, Some(v)) => {
                *doc = v;
                Ok(())
            }
            _ => Err("only REPLACE may target the document root".into()),
        };
    };
    let mut cur = doc;
    for leg in parents {
        cur = child(cur, leg).ok_or("JSON diff path does not exist in the before image")?;
    }
    match (op, cur, last, new) {
        (0, cur, leg, Some(v)) => {
            *child(cur, leg).ok_or("REPLACE of a missing JSON member")? = v;
        }
        (1, Value::Object(m), Leg::Key(k), Some(v)) => {
            m.insert(k.clone(), v);
        }
        (1, Value::Array(a), Leg::Index(i), Some(v)) => {
            let i = (*i).min(a.len());
            a.insert(i, v);
        }
        (2, Value::Object(m), Leg::Key(k), None) => {
            m.shift_remove(k);
        }
        (2, Value::Array(a), Leg::Index(i), None) if *i < a.len() => {
            a.remove(*i);
        }
        _ => return Err("JSON diff does not fit the before image".into()),
    }
    Ok(())
}

/// Applies the diff vector `diffs` (after its 4-byte length) to `before` (JSON text, as
/// rendered by [`json::render`]) and renders the result into `out`.
pub fn apply(before: &str, diffs: &[u8], out: &mut String) -> R<()> {
    let mut doc: Value =
        serde_json::from_str(before).map_err(|e| format!("before image is not JSON: {e}"))?;
    let mut r = Reader::new(diffs);
    let mut scratch = String::new();
    while !r.is_empty() {
        let tr = |t: crate::reader::Truncated| format!("JSON diff truncated at byte {}", t.offset);
        let op = r.u8().map_err(tr)?;
        if op > 2 {
            return Err(format!("unknown JSON diff operation {op}"));
        }
        let n = r.packed().map_err(tr)?.ok_or("bad JSON diff path length")? as usize;
        let path = std::str::from_utf8(r.take(n).map_err(tr)?).map_err(|_| "path not UTF-8")?;
        let legs = parse_path(path)?;
        let new = if op == 2 {
            None
        } else {
            let n = r
                .packed()
                .map_err(tr)?
                .ok_or("bad JSON diff value length")? as usize;
            json::render(r.take(n).map_err(tr)?, &mut scratch).map_err(str::to_owned)?;
            Some(serde_json::from_str(&scratch).map_err(|e| format!("diff value: {e}"))?)
        };
        apply_one(&mut doc, op, &legs, new)?;
    }
    out.clear();
    print(&doc, out);
    Ok(())
}

/// Prints like MySQL: sorted keys (length, then bytes), `": "` and `", "`.
pub fn print(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => out.push_str(&i.to_string()),
            (_, Some(u), _) => out.push_str(&u.to_string()),
            (_, _, Some(f)) => json::push_double(f, out),
            _ => out.push_str(&n.to_string()),
        },
        Value::String(s) => json::push_string(s, out),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                print(x, out);
            }
            out.push(']');
        }
        Value::Object(m) => print_object(m, out),
    }
}

fn print_object(m: &Map<String, Value>, out: &mut String) {
    let mut keys: Vec<(&String, &Value)> = m.iter().collect();
    keys.sort_by(|a, b| a.0.len().cmp(&b.0.len()).then(a.0.cmp(b.0)));
    out.push('{');
    for (i, (k, v)) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        json::push_string(k, out);
        out.push_str(": ");
        print(v, out);
    }
    out.push('}');
}

/// Test encoder: one diff.
pub fn encode_diff(op: u8, path: &str, value: Option<&Value>, out: &mut Vec<u8>) {
    out.push(op);
    crate::encode::put_packed(out, path.len() as u64);
    out.extend_from_slice(path.as_bytes());
    if let Some(v) = value {
        let b = json::encode(v);
        crate::encode::put_packed(out, b.len() as u64);
        out.extend_from_slice(&b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths() {
        assert_eq!(
            parse_path("$.a[2].\"b c\"").unwrap(),
            vec![Leg::Key("a".into()), Leg::Index(2), Leg::Key("b c".into())]
        );
        assert!(parse_path("a").is_err());
        assert!(parse_path("$[x]").is_err());
    }

    #[test]
    fn applies_replace_insert_remove() {
        let mut d = Vec::new();
        encode_diff(0, "$.a", Some(&json!(5)), &mut d);
        encode_diff(1, "$.list[1]", Some(&json!("x")), &mut d);
        encode_diff(2, "$.gone", None, &mut d);
        encode_diff(1, "$.new", Some(&json!({"k": [true]})), &mut d);
        let mut out = String::new();
        apply(r#"{"a": 1, "gone": 2, "list": [0, 1]}"#, &d, &mut out).unwrap();
        assert_eq!(
            out,
            r#"{"a": 5, "new": {"k": [true]}, "list": [0, "x", 1]}"#
        );
        let mut bad = Vec::new();
        encode_diff(0, "$.missing.deep", Some(&json!(1)), &mut bad);
        assert!(apply("{}", &bad, &mut out).is_err());
        assert!(apply("{}", &[7], &mut out).is_err());
    }
}
