//! Debezium's `provide.transaction.metadata`: a BEGIN record before a transaction's first event,
//! an END record after its last, both on `<prefix>.transaction`, and a `transaction` block
//! `{id, total_order, data_collection_order}` in every change event in between.
//!
//! Reference: Debezium 3.6 output in `tests/fixtures/debezium/pg/misc_tx_metadata/` and, with
//! schemas, `sinks/kafka/tests/fixtures/debezium_txmeta_schemas.jsonl`.
//!
//! # Traps
//! - Debezium's Postgres transaction id is `"<xid>:<lsn>"` with the LSN *of the current
//!   offset*: BEGIN and each event carry the event's own LSN, END the commit's end LSN. So ids
//!   differ within one transaction; consumers must group by the `<xid>` part.
//! - BEGIN is lazy: a transaction whose rows are all filtered out gets neither BEGIN nor END.
//! - Tombstones are not events: they get no block and are not counted.
//! - Non-transactional logical messages have `transaction: null` and no BEGIN/END.
//! - A long transaction arrives in chunks: the state lives across `encode_transaction` calls
//!   until the chunk with `complete == true`.

use serde_json::{json, Value};
use tidemark_model::Position;

/// Counters of the transaction being encoded.
#[derive(Debug)]
pub(crate) struct TxMeta {
    xid: u64,
    begun: bool,
    total: u64,
    /// Data collection (`schema.table`) → events so far, in first-seen order.
    per_collection: Vec<(String, u64)>,
}

/// `io.debezium.connector.common.TransactionMetadataKey`.
fn key_schema() -> Value {
    json!({"type":"struct","fields":[{"type":"string","optional":false,"field":"id"}],
        "optional":false,"name":"io.debezium.connector.common.TransactionMetadataKey","version":1})
}

/// `io.debezium.connector.common.TransactionMetadataValue`.
fn value_schema() -> Value {
    json!({"type":"struct","fields":[
        {"type":"string","optional":false,"field":"status"},
        {"type":"string","optional":false,"field":"id"},
        {"type":"int64","optional":true,"field":"event_count"},
        {"type":"array","items":{"type":"struct","fields":[
            {"type":"string","optional":false,"field":"data_collection"},
            {"type":"int64","optional":false,"field":"event_count"}],
            "optional":true,"name":"event.collection","version":1},
         "optional":true,"field":"data_collections"},
        {"type":"int64","optional":false,"field":"ts_ms"}],
        "optional":false,"name":"io.debezium.connector.common.TransactionMetadataValue","version":1})
}

/// A BEGIN or END record's key, value and position.
pub(crate) struct Marker {
    pub key: Value,
    pub value: Value,
    pub key_schema: Value,
    pub value_schema: Value,
    pub position: Position,
}

impl TxMeta {
    pub(crate) fn new(xid: u64) -> Self {
        TxMeta {
            xid,
            begun: false,
            total: 0,
            per_collection: Vec::new(),
        }
    }

    pub(crate) fn xid(&self) -> u64 {
        self.xid
    }

    fn id(&self, lsn: Option<u64>) -> String {
        match lsn {
            Some(l) => format!("{}:{l}", self.xid),
            None => format!("{}:null", self.xid),
        }
    }

    fn marker(&self, status: &str, lsn: Option<u64>, ts_ms: i64, position: Position) -> Marker {
        let id = self.id(lsn);
        let (count, collections) = if status == "END" {
            let c: Vec<Value> = self
                .per_collection
                .iter()
                .map(|(name, n)| json!({"data_collection": name, "event_count": n}))
                .collect();
            (Value::from(self.total), Value::Array(c))
        } else {
            (Value::Null, Value::Null)
        };
        Marker {
            key: json!({ "id": id }),
            value: json!({"status": status, "id": id, "event_count": count,
                "data_collections": collections, "ts_ms": ts_ms}),
            key_schema: key_schema(),
            value_schema: value_schema(),
            position,
        }
    }

    /// The BEGIN record if this is the transaction's first event (then `None` afterwards).
    pub(crate) fn begin(
        &mut self,
        lsn: Option<u64>,
        ts_ms: i64,
        position: Position,
    ) -> Option<Marker> {
        if self.begun {
            return None;
        }
        self.begun = true;
        Some(self.marker("BEGIN", lsn, ts_ms, position))
    }

    /// The `transaction` block of the next event of `collection`.
    pub(crate) fn block(&mut self, collection: &str, lsn: Option<u64>) -> Value {
        self.total += 1;
        let n = match self
            .per_collection
            .iter_mut()
            .find(|(c, _)| c == collection)
        {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                self.per_collection.push((collection.to_owned(), 1));
                1
            }
        };
        json!({"id": self.id(lsn), "total_order": self.total, "data_collection_order": n})
    }

    /// The END record, if a BEGIN was emitted.
    pub(crate) fn end(
        &self,
        end_lsn: Option<u64>,
        ts_ms: i64,
        position: Position,
    ) -> Option<Marker> {
        self.begun
            .then(|| self.marker("END", end_lsn, ts_ms, position))
    }
}
