//! One Kafka record (key and value JSON) → a Debezium change event, read as Debezium's
//! JsonConverter writes it: with `schemas.enable` `{"schema": …, "payload": …}`, without it
//! the payload alone. Pure.
//!
//! The value payload is the envelope `{before, after, source, op, ts_ms, transaction}`; the
//! `source` block names the table (`schema` + `table` for the Postgres connector, `db` +
//! `table` for MySQL/MariaDB) and carries the commit time (`ts_us`, else `ts_ms`) and, for
//! Postgres, the transaction id (`txId`).
//!
//! # Traps
//! - A tombstone (null value) follows each delete so log compaction can drop the key: it is
//!   not a change.
//! - Records of the transaction-metadata topic (`status: BEGIN/END`), of the MySQL/MariaDB
//!   schema-change topic (`ddl`, `tableChanges`) and heartbeats carry no `op`; they are
//!   recognised and passed over, anything else without an `op` is an error.
//! - The key of a table without a primary key is null; a truncate's key is null too.
//! - Debezium writes a primary-key change as a delete under the old key (header
//!   `__debezium.newkey`), a tombstone, and a create under the new key (header
//!   `__debezium.oldkey`). The create's unchanged TOAST columns carry the placeholder, so
//!   read as an insert the value would be unknown (the new key has no stored row). The pair
//!   is read back as what the source did, one update from the old key (the `oldkey` header,
//!   as a key-only old image) to the new row; the delete half is passed over. Both halves
//!   carry their header, so this holds whichever of them is consumed first (they can sit in
//!   different partitions).

use serde_json::{Map, Value};
use tidemark_model::{Op, TableId};

/// A record that is not a Debezium change event where one was expected. Definite: the same
/// bytes fail the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("kafka source, topic {topic} partition {partition} offset {offset}: {reason}")]
pub struct EnvelopeError {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub reason: String,
}

/// Where a record was read (for errors).
#[derive(Clone, Copy, Debug)]
pub struct RecordAt<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

impl RecordAt<'_> {
    pub fn err(&self, reason: impl Into<String>) -> EnvelopeError {
        EnvelopeError {
            topic: self.topic.to_owned(),
            partition: self.partition,
            offset: self.offset,
            reason: reason.into(),
        }
    }
}

/// The primary-key-change headers of a record (see the module's traps).
#[derive(Clone, Copy, Debug, Default)]
pub struct PkChange<'a> {
    /// `__debezium.oldkey`: on the create half, the old key (a JsonConverter document).
    pub old_key: Option<&'a [u8]>,
    /// `__debezium.newkey` is present: this is the delete half.
    pub new_key: bool,
}

/// A decoded record.
#[derive(Debug)]
pub enum Event {
    /// A row change (or a truncate).
    Change(Box<Change>),
    /// A logical decoding message (`op: m`).
    Message {
        prefix: String,
        content: Vec<u8>,
        transactional: bool,
    },
    /// Not a change: tombstone, transaction BEGIN/END, heartbeat.
    Skip(&'static str),
}

/// One change event.
#[derive(Debug)]
pub struct Change {
    pub table: TableId,
    pub op: Op,
    pub before: Option<Map<String, Value>>,
    pub after: Option<Map<String, Value>>,
    /// The Connect schema of the row struct (`before`/`after`), with `schemas.enable`.
    pub row_schema: Option<Value>,
    /// Key field names (from the key schema, else the key payload), in key order.
    pub key_fields: Vec<String>,
    pub commit_ts_us: Option<i64>,
    pub txid: Option<u64>,
}

/// `(schema, payload)` of a JsonConverter document.
fn split(doc: Value) -> (Option<Value>, Value) {
    match doc {
        Value::Object(mut m)
            if m.len() == 2 && m.contains_key("schema") && m.contains_key("payload") =>
        {
            let payload = m.remove("payload").unwrap_or(Value::Null);
            let schema = m.remove("schema").filter(|s| !s.is_null());
            (schema, payload)
        }
        other => (None, other),
    }
}

/// The schema of field `name` of a struct schema.
fn field_schema<'a>(schema: &'a Value, name: &str) -> Option<&'a Value> {
    schema
        .get("fields")?
        .as_array()?
        .iter()
        .find(|f| f.get("field").and_then(Value::as_str) == Some(name))
}

fn parse(at: &RecordAt<'_>, bytes: &[u8], what: &str) -> Result<Value, EnvelopeError> {
    serde_json::from_slice(bytes).map_err(|e| at.err(format!("{what} is not JSON: {e}")))
}

/// Decodes one record.
pub fn decode(
    at: &RecordAt<'_>,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    pk: PkChange<'_>,
) -> Result<Event, EnvelopeError> {
    let Some(value) = value else {
        return Ok(Event::Skip("tombstone"));
    };
    let (value_schema, payload) = split(parse(at, value, "the value")?);
    let Value::Object(mut env) = payload else {
        return Err(at.err("the value payload is not a JSON object"));
    };
    let mut op = match env.get("op").and_then(Value::as_str) {
        Some("c") => Op::Insert,
        Some("u") => Op::Update,
        Some("d") => Op::Delete,
        Some("r") => Op::Read,
        Some("t") => Op::Truncate,
        Some("m") => return message(at, &env),
        Some(other) => return Err(at.err(format!("unknown op {other:?}"))),
        None if env.contains_key("status") && env.contains_key("id") => {
            return Ok(Event::Skip("transaction metadata"))
        }
        None if env.contains_key("ddl") || env.contains_key("tableChanges") => {
            // The MySQL/MariaDB connector's schema-change topic: the next change event of
            // the table carries the new schema.
            return Ok(Event::Skip("schema change"));
        }
        None if env.len() <= 2 && env.contains_key("ts_ms") => return Ok(Event::Skip("heartbeat")),
        None => return Err(at.err("no \"op\": not a Debezium change event")),
    };
    let source = match env.remove("source") {
        Some(Value::Object(s)) => s,
        _ => return Err(at.err("no \"source\" block")),
    };
    let table_name = source
        .get("table")
        .and_then(Value::as_str)
        .ok_or_else(|| at.err("source.table is missing"))?;
    let namespace = source
        .get("schema")
        .and_then(Value::as_str)
        .or_else(|| source.get("db").and_then(Value::as_str))
        .ok_or_else(|| at.err("neither source.schema nor source.db is set"))?;
    let commit_ts_us = match source.get("ts_us").and_then(Value::as_i64) {
        Some(us) => Some(us),
        None => match source.get("ts_ms").and_then(Value::as_i64) {
            Some(ms) => Some(ms.checked_mul(1000).ok_or_else(|| {
                at.err(format!(
                    "source.ts_ms {ms} is out of range (its microseconds overflow 64 bits)"
                ))
            })?),
            None => None,
        },
    };
    let txid = source.get("txId").and_then(Value::as_u64);
    let image =
        |v: Option<Value>, name: &str| -> Result<Option<Map<String, Value>>, EnvelopeError> {
            match v {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Object(m)) => Ok(Some(m)),
                Some(_) => Err(at.err(format!("\"{name}\" is not an object"))),
            }
        };
    let mut before = image(env.remove("before"), "before")?;
    let after = image(env.remove("after"), "after")?;
    match (op, pk.old_key) {
        (Op::Delete, _) if pk.new_key => {
            return Ok(Event::Skip("primary-key change (its create carries it)"))
        }
        (Op::Insert, Some(old)) => {
            let Value::Object(old) = split(parse(at, old, "the __debezium.oldkey header")?).1
            else {
                return Err(at.err("the __debezium.oldkey header is not a JSON object"));
            };
            op = Op::Update;
            before = Some(old);
        }
        _ => {}
    }
    let row_schema = value_schema.as_ref().and_then(|s| {
        field_schema(s, "after")
            .or_else(|| field_schema(s, "before"))
            .cloned()
    });
    let key_fields = match key {
        None => Vec::new(),
        Some(k) => match split(parse(at, k, "the key")?) {
            (Some(ks), _) => ks
                .get("fields")
                .and_then(Value::as_array)
                .map(|fs| {
                    fs.iter()
                        .filter_map(|f| f.get("field").and_then(Value::as_str).map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            (None, Value::Object(m)) => m.keys().cloned().collect(),
            (None, _) => Vec::new(),
        },
    };
    Ok(Event::Change(Box::new(Change {
        table: TableId::new(namespace, table_name),
        op,
        before,
        after,
        row_schema,
        key_fields,
        commit_ts_us,
        txid,
    })))
}

fn message(at: &RecordAt<'_>, env: &Map<String, Value>) -> Result<Event, EnvelopeError> {
    let m = env
        .get("message")
        .ok_or_else(|| at.err("op m without \"message\""))?;
    let prefix = m
        .get("prefix")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let content = match m.get("content") {
        Some(Value::String(s)) => tidemark_debezium::encoder::base64_decode(s)
            .ok_or_else(|| at.err("message.content is not base64"))?,
        _ => Vec::new(),
    };
    // Debezium puts a transactional message inside its transaction (a `txId` in source).
    let transactional = env
        .get("source")
        .and_then(|s| s.get("txId"))
        .is_some_and(|t| !t.is_null());
    Ok(Event::Message {
        prefix,
        content,
        transactional,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_PK: PkChange<'static> = PkChange {
        old_key: None,
        new_key: false,
    };

    const AT: RecordAt<'static> = RecordAt {
        topic: "tm.public.t",
        partition: 0,
        offset: 7,
    };

    #[test]
    fn schemaless_and_schema_envelopes() {
        let v = br#"{"before":null,"after":{"id":1,"v":"x"},"source":{"connector":"postgresql","ts_ms":1700000000000,"schema":"public","table":"t","txId":42},"op":"c","ts_ms":1}"#;
        let Event::Change(c) = decode(&AT, Some(br#"{"id":1}"#), Some(v), NO_PK).unwrap() else {
            panic!()
        };
        assert_eq!(c.table.to_string(), "public.t");
        assert_eq!(
            (c.op, c.txid, c.commit_ts_us),
            (Op::Insert, Some(42), Some(1_700_000_000_000_000))
        );
        assert_eq!(c.key_fields, vec!["id"]);
        assert!(c.row_schema.is_none());
        let sv = br#"{"schema":{"type":"struct","fields":[{"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"}],"optional":true,"field":"before"},{"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"}],"optional":true,"field":"after"}]},"payload":{"before":{"id":1},"after":null,"source":{"db":"inv","table":"t","ts_ms":5},"op":"d"}}"#;
        let sk = br#"{"schema":{"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"}]},"payload":{"id":1}}"#;
        let Event::Change(c) = decode(&AT, Some(sk), Some(sv), NO_PK).unwrap() else {
            panic!()
        };
        assert_eq!(c.table.to_string(), "inv.t");
        assert_eq!(c.op, Op::Delete);
        assert!(c.row_schema.unwrap()["fields"][0]["field"] == "id");
        assert!(matches!(
            decode(&AT, None, None, NO_PK),
            Ok(Event::Skip("tombstone"))
        ));
        let tx = br#"{"status":"BEGIN","id":"571","event_count":null,"data_collections":null,"ts_ms":1}"#;
        assert!(matches!(
            decode(&AT, None, Some(tx), NO_PK),
            Ok(Event::Skip(_))
        ));
        let err = decode(&AT, None, Some(b"{\"x\":1}"), NO_PK)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("topic tm.public.t partition 0 offset 7"),
            "{err}"
        );
        assert!(decode(&AT, None, Some(b"not json"), NO_PK).is_err());
    }

    #[test]
    fn primary_key_change_pair_is_one_update() {
        let del = br#"{"before":{"id":1,"big":"x"},"after":null,"source":{"schema":"public","table":"t"},"op":"d"}"#;
        let newkey = PkChange {
            old_key: None,
            new_key: true,
        };
        assert!(matches!(
            decode(&AT, Some(br#"{"id":1}"#), Some(del), newkey),
            Ok(Event::Skip(_))
        ));
        let create = br#"{"before":null,"after":{"id":2,"big":"__debezium_unavailable_value"},"source":{"schema":"public","table":"t"},"op":"c"}"#;
        let oldkey = PkChange {
            old_key: Some(br#"{"schema":{"type":"struct","fields":[{"type":"int64","optional":false,"field":"id"}]},"payload":{"id":1}}"#),
            new_key: false,
        };
        let Event::Change(c) = decode(&AT, Some(br#"{"id":2}"#), Some(create), oldkey).unwrap()
        else {
            panic!()
        };
        assert_eq!(c.op, Op::Update);
        assert_eq!(
            Value::Object(c.before.unwrap()),
            serde_json::json!({"id": 1})
        );
        assert_eq!(c.after.unwrap()["id"], 2);
        // A plain delete and create are unchanged.
        let Event::Change(c) = decode(&AT, Some(br#"{"id":1}"#), Some(del), NO_PK).unwrap() else {
            panic!()
        };
        assert_eq!(c.op, Op::Delete);
        let bad = PkChange {
            old_key: Some(b"[1]"),
            new_key: false,
        };
        let err = decode(&AT, Some(br#"{"id":2}"#), Some(create), bad).unwrap_err();
        assert!(err.reason.contains("__debezium.oldkey"), "{err}");
    }

    #[test]
    fn commit_time_out_of_range_is_an_error_not_an_overflow() {
        let v = br#"{"after":{"id":1},"source":{"schema":"public","table":"t","ts_ms":9223372036854775807},"op":"c"}"#;
        let err = decode(&AT, None, Some(v), NO_PK).unwrap_err();
        assert!(
            err.reason
                .contains("source.ts_ms 9223372036854775807 is out of range")
                && err.offset == 7,
            "{err}"
        );
    }
}
