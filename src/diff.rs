//! Event-by-event comparison of two streams of Debezium records, e.g. Tidemark's JSON lines
//! against a capture of the real Debezium for the same changes.
//!
//! ```text
//!  expected: [Record …]  ─┐                         ┌─ matched: n
//!                         ├─ pair by MatchKey ──► ├─ missing: expected, never paired
//!  actual:   [Record …]  ─┘  (in order, first      ├─ extra:   actual, never paired
//!                             unpaired wins)       └─ differing: pairs whose fields differ, with
//!                                                     every differing path (first ones first)
//! ```
//!
//! A record is one line of the capture format that `tests/debezium/capture.py` and the
//! `debezium_json` sink (with `include_topic = true`) both write:
//! `{"topic": …, "key": <json|null>, "value": <json|null>}`, plus `"headers": {name: json}` when
//! the record has Kafka headers (a primary-key change's `__debezium.newkey` / `oldkey`).
//!
//! Records are paired by a [`MatchKey`]: topic, key, op (`null` for a tombstone) and, when
//! [`DiffOptions::match_lsn`] is set, `source.lsn`. Within one match key, the n-th expected
//! record pairs with the n-th actual one, so repeated changes to the same row pair up in
//! order. Paired records are compared field by field; [`DiffOptions::ignored`] lists paths that
//! differ from run to run (`value.ts_ms`, `value.source.ts_ms`, …), where a `*` segment matches
//! any key or array index.
//!
//! This module is pure (no IO) so that `tidemark compare` (issue 4) and the differential tests
//! share it.
//!
//! # Traps
//! - A Debezium capture of a fresh connector gives `source.sequence[0] = null` for the first
//!   transaction after it started; ours may know the previous commit. Ignore `value.source.sequence`
//!   unless both sides started from the same point.
//! - Numbers are compared as JSON values (`serde_json::Value` equality), so `1.0` and `1` differ:
//!   that is intended, a consumer may see the difference.

use std::collections::HashMap;
use std::fmt;

use serde_json::Value;

/// One record: topic, key, value (`None`/`null` value = tombstone).
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// Kafka topic the record goes to (`prefix.schema.table`).
    pub topic: String,
    /// The key document, `null` for tables without a primary key and for truncates.
    pub key: Value,
    /// The value document, `null` for a tombstone.
    pub value: Value,
    /// Kafka headers by name (`__debezium.newkey`, …), `null` when the line has none.
    pub headers: Value,
}

impl Record {
    /// Reads a record from one capture line (`{"topic","key","value"}`); other fields are ignored.
    pub fn from_line(line: &str) -> Result<Record, String> {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
        Record::from_value(&v)
    }

    /// Reads a record from a parsed capture line.
    pub fn from_value(v: &Value) -> Result<Record, String> {
        let topic = v
            .get("topic")
            .and_then(Value::as_str)
            .ok_or("no \"topic\" string")?
            .to_string();
        Ok(Record {
            topic,
            key: v.get("key").cloned().unwrap_or(Value::Null),
            value: v.get("value").cloned().unwrap_or(Value::Null),
            headers: v.get("headers").cloned().unwrap_or(Value::Null),
        })
    }

    /// Reads every line of a capture (blank lines skipped; a torn last line is an error).
    pub fn parse_lines(text: &str) -> Result<Vec<Record>, String> {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| Record::from_line(l).map_err(|e| format!("line {}: {e}", i + 1)))
            .collect()
    }

    /// The payload part of the value (`value.payload` with `schemas.enable=true`, else the value).
    fn payload(&self) -> &Value {
        self.value.get("payload").unwrap_or(&self.value)
    }

    /// `op` of the value (`c`, `u`, `d`, `t`, `m`, `r`), `None` for a tombstone.
    pub fn op(&self) -> Option<&str> {
        self.payload().get("op").and_then(Value::as_str)
    }

    /// `source.lsn` of the value, when it has one.
    pub fn lsn(&self) -> Option<i64> {
        self.payload()
            .get("source")
            .and_then(|s| s.get("lsn"))
            .and_then(Value::as_i64)
    }
}

/// How records are paired and which fields are left out of the comparison.
#[derive(Clone, Debug, Default)]
pub struct DiffOptions {
    /// Paths not compared, dotted from the record (`value.ts_ms`, `value.source.*`, `key`); a
    /// `*` segment matches any one key or index.
    pub ignored: Vec<String>,
    /// Pair records by `source.lsn` too (both sides read the same WAL). A tombstone inherits
    /// the LSN of the record before it.
    pub match_lsn: bool,
}

impl DiffOptions {
    /// The fields that differ on every run of the same workload (Debezium compatibility doc,
    /// "Fields that differ run to run"), plus `source.db` and `source.name` when `other_server`.
    pub fn run_dependent() -> Self {
        DiffOptions {
            ignored: [
                "value.ts_ms",
                "value.ts_us",
                "value.ts_ns",
                "value.source.ts_ms",
                "value.source.ts_us",
                "value.source.ts_ns",
                "value.source.txId",
                "value.source.lsn",
                "value.source.sequence",
                "value.transaction",
                "value.payload.ts_ms",
                "value.payload.ts_us",
                "value.payload.ts_ns",
                "value.payload.source.ts_ms",
                "value.payload.source.ts_us",
                "value.payload.source.ts_ns",
                "value.payload.source.txId",
                "value.payload.source.lsn",
                "value.payload.source.sequence",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            match_lsn: false,
        }
    }

    /// Adds ignored paths.
    pub fn ignore<I: IntoIterator<Item = S>, S: Into<String>>(mut self, paths: I) -> Self {
        self.ignored.extend(paths.into_iter().map(Into::into));
        self
    }

    fn is_ignored(&self, path: &[String]) -> bool {
        self.ignored.iter().any(|pattern| {
            let segments: Vec<&str> = pattern.split('.').collect();
            segments.len() == path.len()
                && segments
                    .iter()
                    .zip(path)
                    .all(|(p, s)| *p == "*" || *p == s.as_str())
        })
    }
}

/// What pairs records: topic, key, op, and optionally the LSN.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MatchKey {
    pub topic: String,
    /// The key document as compact JSON.
    pub key: String,
    /// `None` for a tombstone.
    pub op: Option<String>,
    pub lsn: Option<i64>,
}

/// One field that differs in a pair.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldDiff {
    /// Dotted path from the record (`value.after.c_num`).
    pub path: String,
    /// The expected value, `None` when the field is absent there.
    pub expected: Option<Value>,
    /// The actual value, `None` when the field is absent there.
    pub actual: Option<Value>,
}

/// A pair of records that differ.
#[derive(Clone, Debug, PartialEq)]
pub struct EventDiff {
    /// Index in the expected records.
    pub expected_index: usize,
    /// Index in the actual records.
    pub actual_index: usize,
    pub key: MatchKey,
    /// Every differing field, in document order.
    pub fields: Vec<FieldDiff>,
}

/// The outcome of [`diff`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DiffReport {
    /// Pairs equal apart from ignored paths.
    pub matched: usize,
    /// Indices of expected records with no actual counterpart.
    pub missing: Vec<usize>,
    /// Indices of actual records with no expected counterpart.
    pub extra: Vec<usize>,
    /// Pairs that differ.
    pub differing: Vec<EventDiff>,
    /// Pairs whose actual records came in a different order than the expected ones.
    pub out_of_order: usize,
}

impl DiffReport {
    /// True when every record paired, equal, in the same order.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty()
            && self.extra.is_empty()
            && self.differing.is_empty()
            && self.out_of_order == 0
    }

    /// A readable summary: counts, then up to `limit` differing pairs, missing and extra records.
    pub fn render(&self, expected: &[Record], actual: &[Record], limit: usize) -> String {
        let mut out = format!(
            "matched {}, differing {}, missing {}, extra {}, out of order {}\n",
            self.matched,
            self.differing.len(),
            self.missing.len(),
            self.extra.len(),
            self.out_of_order
        );
        for d in self.differing.iter().take(limit) {
            out.push_str(&format!(
                "differs: expected #{} / actual #{} {} key {} op {:?}\n",
                d.expected_index, d.actual_index, d.key.topic, d.key.key, d.key.op
            ));
            for f in d.fields.iter().take(8) {
                out.push_str(&format!(
                    "    {}: expected {} actual {}\n",
                    f.path,
                    show(&f.expected),
                    show(&f.actual)
                ));
            }
        }
        for &i in self.missing.iter().take(limit) {
            out.push_str(&format!("missing: expected #{i} {}\n", line(&expected[i])));
        }
        for &i in self.extra.iter().take(limit) {
            out.push_str(&format!("extra: actual #{i} {}\n", line(&actual[i])));
        }
        out
    }
}

impl fmt::Display for DiffReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "matched {}, differing {}, missing {}, extra {}, out of order {}",
            self.matched,
            self.differing.len(),
            self.missing.len(),
            self.extra.len(),
            self.out_of_order
        )
    }
}

fn show(v: &Option<Value>) -> String {
    v.as_ref().map_or("(absent)".into(), |v| v.to_string())
}

fn line(r: &Record) -> String {
    let mut s = format!("{} key {} value {}", r.topic, r.key, r.value);
    if s.len() > 400 {
        let mut cut = 400;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

fn match_keys(records: &[Record], options: &DiffOptions) -> Vec<MatchKey> {
    let mut last_lsn = None;
    records
        .iter()
        .map(|r| {
            let lsn = if options.match_lsn {
                // A tombstone has no value: it belongs to the delete before it.
                let l = r.lsn().or(if r.value.is_null() { last_lsn } else { None });
                last_lsn = l;
                l
            } else {
                None
            };
            MatchKey {
                topic: r.topic.clone(),
                key: r.key.to_string(),
                op: r.op().map(str::to_string),
                lsn,
            }
        })
        .collect()
}

/// Pairs `actual` with `expected` and compares each pair (module doc).
pub fn diff(expected: &[Record], actual: &[Record], options: &DiffOptions) -> DiffReport {
    let expected_keys = match_keys(expected, options);
    let actual_keys = match_keys(actual, options);
    let mut queues: HashMap<&MatchKey, std::collections::VecDeque<usize>> = HashMap::new();
    for (i, k) in actual_keys.iter().enumerate() {
        queues.entry(k).or_default().push_back(i);
    }
    let mut report = DiffReport::default();
    let mut paired_actual = vec![false; actual.len()];
    let mut last_actual: Option<usize> = None;
    for (i, k) in expected_keys.iter().enumerate() {
        let Some(j) = queues.get_mut(k).and_then(|q| q.pop_front()) else {
            report.missing.push(i);
            continue;
        };
        paired_actual[j] = true;
        if last_actual.is_some_and(|l| j < l) {
            report.out_of_order += 1;
        }
        last_actual = Some(j);
        let mut fields = Vec::new();
        let mut path = Vec::new();
        for (name, e, a) in [
            (
                "topic",
                Value::from(expected[i].topic.clone()),
                Value::from(actual[j].topic.clone()),
            ),
            ("key", expected[i].key.clone(), actual[j].key.clone()),
            ("value", expected[i].value.clone(), actual[j].value.clone()),
            (
                "headers",
                expected[i].headers.clone(),
                actual[j].headers.clone(),
            ),
        ] {
            path.push(name.to_string());
            compare(Some(&e), Some(&a), &mut path, options, &mut fields);
            path.pop();
        }
        if fields.is_empty() {
            report.matched += 1;
        } else {
            report.differing.push(EventDiff {
                expected_index: i,
                actual_index: j,
                key: k.clone(),
                fields,
            });
        }
    }
    report.extra = (0..actual.len()).filter(|&j| !paired_actual[j]).collect();
    report
}

fn compare(
    e: Option<&Value>,
    a: Option<&Value>,
    path: &mut Vec<String>,
    options: &DiffOptions,
    out: &mut Vec<FieldDiff>,
) {
    if options.is_ignored(path) {
        return;
    }
    match (e, a) {
        (Some(Value::Object(eo)), Some(Value::Object(ao))) => {
            let mut keys: Vec<&String> = eo.keys().collect();
            keys.extend(ao.keys().filter(|k| !eo.contains_key(*k)));
            for k in keys {
                path.push(k.clone());
                compare(eo.get(k), ao.get(k), path, options, out);
                path.pop();
            }
        }
        (Some(Value::Array(ea)), Some(Value::Array(aa))) if ea.len() == aa.len() => {
            for (i, (ev, av)) in ea.iter().zip(aa).enumerate() {
                path.push(i.to_string());
                compare(Some(ev), Some(av), path, options, out);
                path.pop();
            }
        }
        (e, a) if e == a => {}
        (e, a) => out.push(FieldDiff {
            path: path.join("."),
            expected: e.cloned(),
            actual: a.cloned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(topic: &str, key: Value, value: Value) -> Record {
        Record {
            topic: topic.into(),
            key,
            value,
            headers: Value::Null,
        }
    }

    #[test]
    fn pairs_by_key_and_op_and_reports_each_kind_of_difference() {
        let e = vec![
            rec(
                "t",
                json!({"id":1}),
                json!({"op":"c","after":{"id":1,"v":"a"},"ts_ms":1}),
            ),
            rec(
                "t",
                json!({"id":1}),
                json!({"op":"u","after":{"id":1,"v":"b"},"ts_ms":2}),
            ),
            rec("t", json!({"id":2}), json!({"op":"c","after":{"id":2}})),
        ];
        let a = vec![
            rec(
                "t",
                json!({"id":1}),
                json!({"op":"c","after":{"id":1,"v":"a"},"ts_ms":9}),
            ),
            rec(
                "t",
                json!({"id":1}),
                json!({"op":"u","after":{"id":1,"v":"B"},"ts_ms":9}),
            ),
            rec("t", json!({"id":3}), json!({"op":"c","after":{"id":3}})),
        ];
        let opts = DiffOptions::default().ignore(["value.ts_ms"]);
        let r = diff(&e, &a, &opts);
        assert_eq!(r.matched, 1);
        assert_eq!(r.missing, vec![2]);
        assert_eq!(r.extra, vec![2]);
        assert_eq!(r.differing.len(), 1);
        assert_eq!(
            r.differing[0].fields,
            vec![FieldDiff {
                path: "value.after.v".into(),
                expected: Some(json!("b")),
                actual: Some(json!("B")),
            }]
        );
        assert!(!r.is_clean());
        assert!(r.render(&e, &a, 5).contains("value.after.v"));
    }

    #[test]
    fn wildcards_absent_fields_order_and_lsn_matching() {
        let e = vec![
            rec(
                "t",
                json!({"id":1}),
                json!({"op":"d","source":{"lsn":10,"ts_ms":1}}),
            ),
            rec("t", json!({"id":1}), Value::Null),
            rec(
                "t",
                json!({"id":2}),
                json!({"op":"c","source":{"lsn":20},"x":1}),
            ),
        ];
        let a = vec![
            rec("t", json!({"id":2}), json!({"op":"c","source":{"lsn":20}})),
            rec(
                "t",
                json!({"id":1}),
                json!({"op":"d","source":{"lsn":10,"ts_ms":5}}),
            ),
            rec("t", json!({"id":1}), Value::Null),
        ];
        let opts = DiffOptions {
            ignored: vec!["value.source.*".into()],
            match_lsn: true,
        };
        let r = diff(&e, &a, &opts);
        assert_eq!(r.matched, 2);
        assert_eq!(r.out_of_order, 1, "id 2 came first");
        assert_eq!(r.differing[0].fields[0].path, "value.x");
        assert_eq!(r.differing[0].fields[0].actual, None);
        let lines = "{\"topic\":\"t\",\"key\":null,\"value\":null}\n\n";
        assert_eq!(Record::parse_lines(lines).unwrap().len(), 1);
        assert!(Record::parse_lines("{\"topic\":").is_err());
    }
}
