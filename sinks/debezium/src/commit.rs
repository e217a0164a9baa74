//! [`JsonlSink`]: the [`Sink`] of the JSON-lines output. `write` encodes a transaction and
//! buffers its lines; `flush` makes them durable (flush + fsync) and only then advances the
//! committed position to the end of the last transaction written (ack after durability,
//! never before).
//!
//! # Traps
//! - IO errors are reported as *definite* with the path: a full disk or a permission problem
//!   does not heal by retrying the same write, and a half-written buffer cannot be retried
//!   safely without reopening; the pipeline restarts from the checkpoint instead.

use std::sync::Arc;

use tidemark_model::{BoxFuture, Position, Sink, SinkError, Transaction};

use crate::config::JsonlSinkConfig;
use crate::encoder::{DebeziumEncoder, Record};
use crate::writer::JsonlWriter;

/// The JSON-lines sink.
pub struct JsonlSink {
    name: String,
    encoder: DebeziumEncoder,
    writer: JsonlWriter,
    /// End of the last transaction written (buffered, maybe not durable yet).
    written: Option<Position>,
    /// End of the last transaction made durable.
    committed: Option<Position>,
    records: Vec<Record>,
}

impl JsonlSink {
    /// Opens the output. `server_name` and `database` fill `source.name` and `source.db`.
    pub fn new(
        config: JsonlSinkConfig,
        server_name: &str,
        database: &str,
    ) -> Result<Self, SinkError> {
        let name = config.sink_name().to_owned();
        if let Some((key, msg)) = config.validate().into_iter().next() {
            return Err(SinkError::definite(
                &name,
                format!("invalid config: {key} {msg}"),
            ));
        }
        let writer =
            JsonlWriter::open(&config.path, config.fsync, config.include_topic).map_err(|e| {
                SinkError::definite(&name, format!("cannot open {}: {e}", config.path))
                    .with_source(e)
            })?;
        Ok(JsonlSink {
            encoder: DebeziumEncoder::new(config.encoder_options(server_name, database)),
            name,
            writer,
            written: None,
            committed: None,
            records: Vec::new(),
        })
    }

    /// The encoder (e.g. to restore `source.sequence` after a restart).
    pub fn encoder_mut(&mut self) -> &mut DebeziumEncoder {
        &mut self.encoder
    }

    fn io_error(&self, what: &str, e: std::io::Error) -> SinkError {
        SinkError::definite(&self.name, format!("{what} {}: {e}", self.writer.path()))
            .with_source(e)
    }

    fn write_now(&mut self, txn: &Transaction) -> Result<(), SinkError> {
        let mut records = std::mem::take(&mut self.records);
        records.clear();
        self.encoder
            .encode_transaction(txn, &mut |r| records.push(r))
            .map_err(|e| SinkError::definite(&self.name, e.to_string()).with_source(e))?;
        for r in &records {
            if let Err(e) = self.writer.write_record(r) {
                return Err(self.io_error("cannot write to", e));
            }
        }
        self.records = records;
        // A chunk of a long transaction is written but acknowledges nothing until its last
        // chunk (`complete`) arrives.
        if txn.complete {
            self.written = Some(txn.end);
        }
        Ok(())
    }

    fn flush_now(&mut self) -> Result<Option<Position>, SinkError> {
        if let Err(e) = self.writer.sync() {
            return Err(self.io_error("cannot flush", e));
        }
        self.committed = self.written;
        Ok(self.committed)
    }
}

impl Sink for JsonlSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn write<'a>(&'a mut self, txn: Arc<Transaction>) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move { self.write_now(&txn) })
    }

    fn flush<'a>(&'a mut self) -> BoxFuture<'a, Result<Option<Position>, SinkError>> {
        Box::pin(async move { self.flush_now() })
    }

    fn committed(&self) -> Option<Position> {
        self.committed
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    use tidemark_model::{Lsn, PgPosition, Transaction};

    use super::*;

    /// The sink's futures never wait: poll once.
    fn ready<T>(f: impl Future<Output = T>) -> T {
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("JsonlSink futures complete immediately"),
        }
    }

    fn message_txn(end: u64, complete: bool) -> Arc<Transaction> {
        let mut t = Transaction::new(
            Some(7),
            Some(1_000),
            Position::from(PgPosition::end(Lsn(end), Lsn(end + 8))),
        );
        t.complete = complete;
        t.items.push(tidemark_model::TxnItem::Message(
            tidemark_model::LogicalMessage {
                transactional: true,
                prefix: "p".into(),
                content: b"x".to_vec(),
                position: Position::pg(Lsn(end), Lsn(end - 8), 0),
            },
        ));
        Arc::new(t)
    }

    #[test]
    fn writes_lines_and_acks_only_after_flush_of_complete_transactions() {
        let dir = std::env::temp_dir().join(format!("tm-jsonl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.jsonl");
        let _ = std::fs::remove_file(&path);
        let mut sink =
            JsonlSink::new(JsonlSinkConfig::new(path.to_str().unwrap()), "tm", "db").unwrap();
        assert_eq!(sink.name(), "jsonl");
        ready(sink.write(message_txn(100, true))).unwrap();
        assert_eq!(sink.committed(), None, "nothing durable before flush");
        let first = ready(sink.flush()).unwrap();
        assert_eq!(
            first,
            Some(Position::from(PgPosition::end(Lsn(100), Lsn(108))))
        );
        ready(sink.write(message_txn(200, false))).unwrap();
        assert_eq!(
            ready(sink.flush()).unwrap(),
            first,
            "an incomplete chunk acks nothing"
        );
        assert_eq!(sink.committed(), first);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["topic"], "tm.message");
        assert_eq!(lines[0]["key"], serde_json::json!({"prefix": "p"}));
        assert_eq!(lines[0]["value"]["message"]["content"], "eA==");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn open_failure_is_definite_with_path() {
        let cfg = JsonlSinkConfig::new("/nonexistent-dir-tidemark/x.jsonl");
        let Err(err) = JsonlSink::new(cfg, "tm", "db") else {
            panic!("opening under a missing directory must fail")
        };
        assert!(!err.is_transient());
        assert!(
            err.to_string()
                .contains("/nonexistent-dir-tidemark/x.jsonl"),
            "{err}"
        );
    }
}
