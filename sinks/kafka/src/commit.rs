//! [`KafkaCommit`]: makes produced records durable, and with `exactly_once` atomic and
//! idempotent across restarts.
//!
//! ```text
//! at-least-once:  flush = wait until the broker confirmed every record (acks=all) → position
//! exactly-once:   init:   init_transactions (fences an older instance, aborts its open
//!                         transaction) → read the last committed position from positions_topic
//!                 write:  begin_transaction once, produce records with position > that position
//!                 commit: produce {transactional_id → position} to positions_topic
//!                         → commit_transaction (flushes first) → position
//! ```
//!
//! The position is written *inside* the Kafka transaction it describes, so it is committed if
//! and only if the data is. A restart that replays from an older checkpoint (the engine saves its
//! checkpoint only after `flush` returned, so a crash in between replays) skips every record the
//! committed position covers: a `read_committed` consumer sees each change once.
//!
//! # Traps
//! - `commit_transaction`, `init_transactions` and `abort_transaction` block: they run on the
//!   blocking pool, never on the engine's task.
//! - A commit error that `txn_requires_abort` aborts the transaction; its records are then *not*
//!   delivered, so nothing is acknowledged and the pipeline restarts from the checkpoint.
//! - tansu 0.6.0 (the test broker) returns an empty `aborted_transactions` list in every Fetch
//!   response (tansu-storage `service/fetch.rs`), so its read_committed consumers also see the
//!   records of aborted transactions (and aborted position records). Apache Kafka filters them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{Producer, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tidemark_debezium::Record;
use tidemark_model::Position;

use crate::ack::AckTracker;
use crate::writer::{failure_error, KafkaContext, KafkaWriter, WriteError};

/// What one commit did (STYLE §4: typed per-operation metrics).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// The position durable after the commit.
    pub position: Option<Position>,
    /// Whether a Kafka transaction was committed (exactly-once) or deliveries awaited.
    pub transactional: bool,
    /// How long the commit took.
    pub duration: Duration,
    /// Whether everything written was confirmed (false: `flush_timeout` passed first).
    pub complete: bool,
}

/// Exactly-once state.
#[derive(Debug)]
struct Txn {
    transactional_id: String,
    positions_topic: String,
    commit_interval: Duration,
    /// A Kafka transaction is open since this instant.
    open_since: Option<Instant>,
    /// The position of the last record written into the open transaction.
    last_written: Option<Position>,
    /// The position of the last record in a committed Kafka transaction (from the positions
    /// topic at start): records up to it are skipped.
    committed: Option<Position>,
    /// The last complete source transaction in a committed Kafka transaction: what the
    /// checkpointer may have (a chunk's position is never acknowledged).
    acked: Option<Position>,
    initialized: bool,
}

/// Commits for one sink.
#[derive(Debug)]
pub struct KafkaCommit {
    txn: Option<Txn>,
    flush_timeout: Duration,
    /// At-least-once: the last position returned by a flush.
    flushed: Option<Position>,
}

/// How long librdkafka's transactional calls may block.
const TXN_TIMEOUT: Duration = Duration::from_secs(60);

fn txn_error(what: &str, e: KafkaError) -> WriteError {
    let retriable = match &e {
        KafkaError::Transaction(r) => !r.is_fatal(),
        _ => true,
    };
    WriteError {
        what: what.to_owned(),
        message: e.to_string(),
        retriable,
    }
}

async fn blocking<T: Send + 'static>(
    producer: &ThreadedProducer<KafkaContext>,
    what: &str,
    f: impl FnOnce(&ThreadedProducer<KafkaContext>) -> Result<T, KafkaError> + Send + 'static,
) -> Result<T, WriteError> {
    let p = producer.clone();
    tokio::task::spawn_blocking(move || f(&p))
        .await
        .map_err(|e| WriteError {
            what: what.to_owned(),
            message: format!("blocking task failed: {e}"),
            retriable: true,
        })?
        .map_err(|e| txn_error(what, e))
}

impl KafkaCommit {
    /// At-least-once commits.
    pub fn at_least_once(flush_timeout: Duration) -> Self {
        KafkaCommit {
            txn: None,
            flush_timeout,
            flushed: None,
        }
    }

    /// Exactly-once commits with Kafka transactions.
    pub fn exactly_once(
        transactional_id: String,
        positions_topic: String,
        commit_interval: Duration,
        flush_timeout: Duration,
    ) -> Self {
        KafkaCommit {
            txn: Some(Txn {
                transactional_id,
                positions_topic,
                commit_interval,
                open_since: None,
                last_written: None,
                committed: None,
                acked: None,
                initialized: false,
            }),
            flush_timeout,
            flushed: None,
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.txn.is_some()
    }

    /// Exactly-once: the committed position below which records are skipped.
    pub fn skip_upto(&self) -> Option<Position> {
        self.txn.as_ref().and_then(|t| t.committed)
    }

    /// Exactly-once: fences older instances and reads the last committed position (once).
    pub async fn init(
        &mut self,
        writer: &mut KafkaWriter,
        client_props: &[(String, String)],
    ) -> Result<(), WriteError> {
        let Some(t) = &mut self.txn else {
            return Ok(());
        };
        if t.initialized {
            return Ok(());
        }
        blocking(writer.producer(), "init_transactions", |p| {
            p.init_transactions(TXN_TIMEOUT)
        })
        .await?;
        writer.ensure_topic(&t.positions_topic, true).await?;
        let (topic, id) = (t.positions_topic.clone(), t.transactional_id.clone());
        let props = client_props.to_vec();
        let committed = tokio::task::spawn_blocking(move || read_position(&props, &topic, &id))
            .await
            .map_err(|e| WriteError {
                what: "read positions".into(),
                message: e.to_string(),
                retriable: true,
            })??;
        tracing::info!(transactional_id = %t.transactional_id, position = ?committed.map(|p| p.to_string()),
            "kafka exactly-once: last committed position");
        t.committed = committed;
        t.initialized = true;
        Ok(())
    }

    /// Exactly-once: opens a Kafka transaction unless one is open.
    pub fn begin_if_needed(&mut self, writer: &KafkaWriter) -> Result<(), WriteError> {
        if let Some(t) = &mut self.txn {
            if t.open_since.is_none() {
                writer
                    .producer()
                    .begin_transaction()
                    .map_err(|e| txn_error("begin_transaction", e))?;
                t.open_since = Some(Instant::now());
            }
        }
        Ok(())
    }

    /// Records that everything up to `position` was written into the open transaction.
    pub fn written(&mut self, position: Position) {
        if let Some(t) = &mut self.txn {
            t.last_written = Some(position);
        }
    }

    /// Whether the engine should call `flush` now.
    pub fn wants_flush(&self) -> bool {
        match &self.txn {
            None => true,
            Some(t) => t
                .open_since
                .is_some_and(|since| since.elapsed() >= t.commit_interval),
        }
    }

    /// The highest durable position, without IO.
    pub fn committed(&self, ack: &AckTracker) -> Option<Position> {
        match &self.txn {
            // acks=all: a confirmed record is durable.
            None => ack.delivered_upto().or(self.flushed),
            Some(t) => t.acked,
        }
    }

    /// Makes everything written durable; returns what it did.
    pub async fn commit(
        &mut self,
        writer: &mut KafkaWriter,
        ack: &Arc<AckTracker>,
    ) -> Result<CommitStats, WriteError> {
        let started = Instant::now();
        let Some(t) = &mut self.txn else {
            let complete = ack.wait_idle(self.flush_timeout).await;
            if let Some(f) = ack.failure() {
                return Err(failure_error(&f));
            }
            if !complete {
                let (bytes, records) = ack.in_flight();
                tracing::warn!(
                    in_flight_bytes = bytes,
                    in_flight_records = records,
                    "kafka flush: not everything confirmed within flush_timeout; acknowledging what is"
                );
            }
            self.flushed = ack.delivered_upto();
            return Ok(CommitStats {
                position: self.flushed,
                transactional: false,
                duration: started.elapsed(),
                complete,
            });
        };
        if t.open_since.is_none() {
            return Ok(CommitStats {
                position: t.acked,
                transactional: true,
                duration: started.elapsed(),
                complete: true,
            });
        }
        if let Some(position) = t.last_written {
            let record = position_record(&t.positions_topic, &t.transactional_id, position);
            let seq = ack.open();
            writer.produce(seq, &record).await?;
            ack.seal(seq, None);
        }
        let committed = blocking(writer.producer(), "commit_transaction", |p| {
            p.commit_transaction(TXN_TIMEOUT)
        })
        .await;
        t.open_since = None;
        match committed {
            Ok(()) => {
                if let Some(f) = ack.failure() {
                    return Err(failure_error(&f));
                }
                t.committed = t.last_written.max(t.committed);
                t.acked = ack.delivered_upto();
                Ok(CommitStats {
                    position: t.acked,
                    transactional: true,
                    duration: started.elapsed(),
                    complete: true,
                })
            }
            Err(e) => {
                // Whatever the error, the transaction's records are not committed: abort (a
                // no-op after a fatal error), forget them, and let the pipeline replay them.
                let abort = blocking(writer.producer(), "abort_transaction", |p| {
                    p.abort_transaction(TXN_TIMEOUT)
                })
                .await;
                ack.reset_outstanding();
                t.last_written = None;
                tracing::error!(error = %e, abort = ?abort.err(), "kafka transaction commit failed; aborted");
                Err(e)
            }
        }
    }
}

/// The record that stores `position` for `transactional_id`.
fn position_record(topic: &str, id: &str, position: Position) -> Record {
    let value = serde_json::json!({
        "transactional_id": id,
        "position": position.to_string(),
    });
    Record {
        topic: topic.into(),
        key: Some(id.as_bytes().to_vec()),
        value: Some(value.to_string().into_bytes()),
        headers: Vec::new(),
        op: None,
        position,
    }
}

/// Reads the last committed position of `id` from `topic` (partition 0, read_committed).
fn read_position(
    props: &[(String, String)],
    topic: &str,
    id: &str,
) -> Result<Option<Position>, WriteError> {
    let err = |message: String| WriteError {
        what: format!("read positions topic {topic}"),
        message,
        retriable: true,
    };
    // A record of ours that does not parse reads the same on every retry: definite.
    let corrupt = |message: String| WriteError {
        retriable: false,
        ..err(message)
    };
    let mut cc = ClientConfig::new();
    for (k, v) in props {
        cc.set(k, v);
    }
    cc.set("group.id", format!("{id}-positions-reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true");
    let consumer: BaseConsumer = cc.create().map_err(|e| err(e.to_string()))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .map_err(|e| err(e.to_string()))?;
    consumer.assign(&tpl).map_err(|e| err(e.to_string()))?;
    let deadline = Instant::now() + TXN_TIMEOUT;
    let mut last = None;
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(500)) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(_))) => return Ok(last),
            Some(Err(e)) => return Err(err(e.to_string())),
            Some(Ok(m)) => {
                if m.key() != Some(id.as_bytes()) {
                    continue;
                }
                let Some(payload) = m.payload() else { continue };
                let v: serde_json::Value = serde_json::from_slice(payload)
                    .map_err(|e| corrupt(format!("offset {}: {e}", m.offset())))?;
                let p = v["position"]
                    .as_str()
                    .ok_or_else(|| corrupt(format!("offset {}: no position", m.offset())))?;
                last = Some(
                    p.parse::<Position>()
                        .map_err(|e| corrupt(format!("offset {}: {e}", m.offset())))?,
                );
            }
        }
    }
    Err(err("no end of partition within 60 s".into()))
}
