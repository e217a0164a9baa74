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

use super::json as w;

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
pub(crate) fn key_schema() -> Value {
    json!({"type":"struct","fields":[{"type":"string","optional":false,"field":"id"}],
        "optional":false,"name":"io.debezium.connector.common.TransactionMetadataKey","version":1})
}

/// `io.debezium.connector.common.TransactionMetadataValue`.
pub(crate) fn value_schema() -> Value {
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

/// A BEGIN or END record's key and value payloads (JSON, without the schema part) and
/// position.
pub(crate) struct Marker {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
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

    /// The transaction id `"<xid>:<lsn>"` as a JSON string.
    fn write_id(&self, out: &mut Vec<u8>, lsn: Option<u64>) {
        out.push(b'"');
        w::u64(out, self.xid);
        out.push(b':');
        match lsn {
            Some(l) => w::u64(out, l),
            None => w::null(out),
        }
        out.push(b'"');
    }

    fn marker(&self, status: &str, lsn: Option<u64>, ts_ms: i64, position: Position) -> Marker {
        let mut key = Vec::with_capacity(32);
        key.extend_from_slice(b"{\"id\":");
        self.write_id(&mut key, lsn);
        key.push(b'}');
        let mut value = Vec::with_capacity(96);
        value.extend_from_slice(b"{\"status\":");
        w::str(&mut value, status);
        value.extend_from_slice(b",\"id\":");
        self.write_id(&mut value, lsn);
        if status == "END" {
            value.extend_from_slice(b",\"event_count\":");
            w::u64(&mut value, self.total);
            value.extend_from_slice(b",\"data_collections\":[");
            for (k, (name, n)) in self.per_collection.iter().enumerate() {
                if k > 0 {
                    value.push(b',');
                }
                value.extend_from_slice(b"{\"data_collection\":");
                w::str(&mut value, name);
                value.extend_from_slice(b",\"event_count\":");
                w::u64(&mut value, *n);
                value.push(b'}');
            }
            value.push(b']');
        } else {
            value.extend_from_slice(b",\"event_count\":null,\"data_collections\":null");
        }
        value.extend_from_slice(b",\"ts_ms\":");
        w::i64(&mut value, ts_ms);
        value.push(b'}');
        Marker {
            key,
            value,
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

    /// Writes the `transaction` block of the next event of `collection`.
    pub(crate) fn write_block(&mut self, out: &mut Vec<u8>, collection: &str, lsn: Option<u64>) {
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
        out.extend_from_slice(b"{\"id\":");
        self.write_id(out, lsn);
        out.extend_from_slice(b",\"total_order\":");
        w::u64(out, self.total);
        out.extend_from_slice(b",\"data_collection_order\":");
        w::u64(out, n);
        out.push(b'}');
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
