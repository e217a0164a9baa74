//! Helpers of the snapshot tests: replaying a JSON-lines output into the state a sink holds.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

/// The payload of an output line's value (with or without `schemas_enable`).
pub fn payload(line: &Value) -> Option<&Value> {
    let v = &line["value"];
    if v.is_null() {
        return None;
    }
    Some(v.get("payload").unwrap_or(v))
}

/// What replaying an output gave.
#[derive(Debug, Default)]
pub struct Replay {
    /// key (its JSON text) → the row's `after` (its JSON text).
    pub rows: HashMap<String, String>,
    /// Snapshot reads per key (a key read twice is a duplicate read).
    pub reads: HashMap<String, u32>,
    /// Events per op.
    pub ops: BTreeMap<String, u64>,
    /// `source.snapshot` values of the `r` events, counted.
    pub marks: BTreeMap<String, u64>,
}

/// Replays the lines of `topic_table` (`schema.table` / `db.table` suffix of the topic)
/// into a key → row map: `r`/`c`/`u` put the after image, `d` removes the before key.
pub fn replay(text: &str, table: &str) -> Replay {
    let mut r = Replay::default();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue; // a torn last line after kill -9
        };
        let topic = v["topic"].as_str().unwrap_or_default();
        if !topic.ends_with(&format!(".{table}")) {
            continue;
        }
        let Some(p) = payload(&v) else { continue };
        let op = p["op"].as_str().unwrap_or_default().to_string();
        *r.ops.entry(op.clone()).or_default() += 1;
        let key = v["key"].get("payload").unwrap_or(&v["key"]).to_string();
        match op.as_str() {
            "r" | "c" | "u" => {
                if op == "r" {
                    *r.reads.entry(key.clone()).or_default() += 1;
                    let mark = p["source"]["snapshot"].as_str().unwrap_or_default().to_string();
                    *r.marks.entry(mark).or_default() += 1;
                }
                r.rows.insert(key, p["after"].to_string());
            }
            "d" => {
                r.rows.remove(&key);
            }
            _ => {}
        }
    }
    r
}

/// A 64-bit FNV-1a checksum of a string (per-row checksums of the compared states).
pub fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Per-key checksums of a replay.
pub fn checksums(r: &Replay) -> BTreeMap<String, u64> {
    r.rows.iter().map(|(k, v)| (k.clone(), fnv(v))).collect()
}

/// Asserts two replayed states are the same rows (count and per-row checksum), reporting a
/// few differences.
pub fn assert_same_state(what: &str, expected: &Replay, actual: &Replay) {
    let e = checksums(expected);
    let a = checksums(actual);
    if e == a {
        return;
    }
    let missing: Vec<&String> = e.keys().filter(|k| !a.contains_key(*k)).take(5).collect();
    let extra: Vec<&String> = a.keys().filter(|k| !e.contains_key(*k)).take(5).collect();
    let differ: Vec<String> = e
        .iter()
        .filter(|(k, v)| a.get(*k).is_some_and(|x| x != *v))
        .take(3)
        .map(|(k, _)| format!("{k}: expected {} got {}", expected.rows[k], actual.rows[k]))
        .collect();
    panic!(
        "{what}: {} rows expected, {} present; missing {missing:?}; extra {extra:?}; differing {differ:#?}",
        e.len(),
        a.len()
    );
}
