//! The Kafka source (`source.kind = "kafka"`): Debezium-format change-event topics — written
//! by Debezium or by Tidemark's own Kafka sink, JSON with or without the Connect schema —
//! read back into the change model, so `PostgreSQL → Kafka → Iceberg/Delta/JSON` is one
//! Tidemark pipeline, and a team that already runs Debezium adds the lake sinks without
//! touching anything upstream.
//!
//! ```text
//! StateFile (<pipeline>.kafka.json): epoch E+1 fsynced; safe offsets ─► assign partitions
//!   poll ─► batch (≤ max_batch_records, ≤ batch_linger) ─► Converter (convert.rs: envelope.rs,
//!        columns.rs) ─► Transaction{end: kafka:E:seq:MAX} ─► queue (backpressure)
//!        InFlight.sent(seq, next offset per partition)
//!   engine checkpoint (min over sinks, persisted) ─► acked ─► InFlight.acknowledge
//!        ─► safe offsets ─► StateFile.save ─► consumer-group commit (monitoring, fallback)
//! ```
//!
//! # Positions and offsets
//! Kafka orders records per partition only; a pipeline reads several topics (one per
//! table), each with one or more partitions, and the interleaving it sees depends on fetch
//! timing. The checkpointer needs one total order, so the source numbers what it hands on:
//! batch `seq` of run `epoch`, row `index` (`Position::Kafka`, `docs/design/change-model.md`
//! "Kafka positions"). The engine acknowledges "everything up to batch `seq`"; the source
//! maps that back to the next offset of every partition whose records were in those batches
//! (`offsets.rs`), and stores *those* offsets — all of them safe: every record before them
//! is durable in every sink. Only then are they committed to the consumer group.
//!
//! # Delivery: at-least-once, and what the sinks make of it
//! A restart resumes from the stored offsets. The records between those offsets and what the
//! sinks had committed when the process stopped are read again, in a new epoch (positions
//! of a run are not reproducible: the interleaving differs), so the sinks' "skip what I
//! have" rule does not recognise them. Mirror tables (Iceberg, Delta) converge anyway: a
//! replayed insert of a present key replaces the row, a replayed delete of an absent key is
//! a no-op, and per-key order holds (a key always lands in the same partition). Changelog
//! tables, JSON lines and Kafka sinks can repeat those changes. The window is what one
//! checkpoint interval holds.
//!
//! # Traps
//! - Partitions are *assigned*, not subscribed: no consumer-group join (tansu's first join
//!   takes ~20 s; a rebalance would also have to revoke in-flight batches). One pipeline per
//!   group; partitions added to a topic later are read after a restart.
//! - A topic that does not exist yet is waited for (transient), not an error.
//! - Tombstones, transaction BEGIN/END records and heartbeats are not changes; their
//!   offsets still advance.
//! - The Debezium placeholder for values the source did not send (unchanged TOAST) becomes
//!   an `Unchanged` marker, so lake sinks keep the stored value (`columns.rs`).
//! - Without a Connect schema a JSON number has no type: such records are rejected unless
//!   `schemaless = "text"` (`config.rs`).
//! - A source transaction is not kept whole: its events of different tables are on
//!   different topics. A batch (one engine transaction) is what was consumed together.

pub mod columns;
pub mod config;
pub mod convert;
pub mod envelope;
pub mod offsets;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tidemark_kafka::rdkafka::config::ClientConfig;
use tidemark_kafka::rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use tidemark_kafka::rdkafka::error::KafkaError;
use tidemark_kafka::rdkafka::message::{Headers, Message, OwnedMessage};
use tidemark_kafka::rdkafka::{Offset, TopicPartitionList};
use tidemark_model::{Position, Transaction};
use tokio::sync::watch;

use crate::engine::queue::QueueSender;
use crate::metrics::Metrics;
pub use config::KafkaSourceConfig;
use convert::{Converter, RawRecord};
use envelope::{EnvelopeError, PkChange, RecordAt};
use offsets::{InFlight, SourceState, StateFile};

/// A Kafka source failure.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSourceError {
    /// The broker or the client (transient: retried with backoff).
    #[error("kafka source {bootstrap}: {op}: {source}")]
    Kafka {
        bootstrap: String,
        op: &'static str,
        #[source]
        source: KafkaError,
    },
    /// A topic to read has no partitions yet (transient: waited for).
    #[error("kafka source: topic {0} does not exist (yet)")]
    NoTopic(String),
    /// A record that is not a change event we can read (definite).
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// The state file (definite: the disk is the problem).
    #[error("kafka source state {path}: {source}")]
    State {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl KafkaSourceError {
    /// Broker trouble and missing topics are retried; bad records and the disk are not.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            KafkaSourceError::Kafka { .. } | KafkaSourceError::NoTopic(_)
        )
    }
}

/// Reads Debezium change-event topics into the queue.
pub struct KafkaSource {
    pub config: KafkaSourceConfig,
    pub pipeline: String,
    /// The checkpoint directory (the state file lives there).
    pub dir: PathBuf,
    pub queue: QueueSender<Arc<Transaction>>,
    /// The engine's checkpoints, after they are persisted.
    pub acked: watch::Receiver<Option<Position>>,
    pub metrics: Arc<Metrics>,
    /// The engine's checkpoint at start: `None` starts over from `config.start`.
    pub resume: Option<Position>,
    pub shutdown: watch::Receiver<bool>,
}

/// Per run: the consumer, the epoch and the in-flight batches.
struct Run {
    consumer: StreamConsumer,
    flight: InFlight,
    state: StateFile,
    seq: u64,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl KafkaSource {
    fn kafka_err(&self, op: &'static str) -> impl Fn(KafkaError) -> KafkaSourceError + '_ {
        move |source| KafkaSourceError::Kafka {
            bootstrap: self.config.bootstrap_servers.clone(),
            op,
            source,
        }
    }

    fn state_err(state: &StateFile) -> impl Fn(std::io::Error) -> KafkaSourceError + '_ {
        move |source| KafkaSourceError::State {
            path: state.path().display().to_string(),
            source,
        }
    }

    fn consumer(&self) -> Result<StreamConsumer, KafkaSourceError> {
        let mut cfg = ClientConfig::new();
        for (k, v) in &self.config.consumer {
            cfg.set(k, v);
        }
        cfg.set("bootstrap.servers", &self.config.bootstrap_servers)
            .set("group.id", self.config.group(&self.pipeline))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set(
                "isolation.level",
                if self.config.read_committed {
                    "read_committed"
                } else {
                    "read_uncommitted"
                },
            )
            .set(
                "auto.offset.reset",
                match self.config.start {
                    config::StartFrom::Earliest => "earliest",
                    config::StartFrom::Latest => "latest",
                },
            )
            .create()
            .map_err(self.kafka_err("create the consumer"))
    }

    /// Every partition of every topic, with the offset to start at.
    fn assignment(
        &self,
        consumer: &StreamConsumer,
        stored: &SourceState,
    ) -> Result<TopicPartitionList, KafkaSourceError> {
        let mut tpl = TopicPartitionList::new();
        let mut fallback = 0usize;
        for topic in &self.config.topics {
            let md = tokio::task::block_in_place(|| {
                consumer.fetch_metadata(Some(topic), Duration::from_secs(10))
            })
            .map_err(self.kafka_err("fetch topic metadata"))?;
            let partitions = md
                .topics()
                .iter()
                .find(|t| t.name() == topic && t.error().is_none())
                .map_or(0, |t| t.partitions().len() as i32);
            if partitions == 0 {
                return Err(KafkaSourceError::NoTopic(topic.clone()));
            }
            for p in 0..partitions {
                let start = match (
                    self.resume.is_some(),
                    stored.offsets.get(topic).and_then(|m| m.get(&p)),
                ) {
                    (true, Some(o)) => Offset::Offset(*o),
                    // A checkpoint but no stored offset: the group's, else the configured start.
                    (true, None) => {
                        fallback += 1;
                        Offset::Stored
                    }
                    (false, _) => match self.config.start {
                        config::StartFrom::Earliest => Offset::Beginning,
                        config::StartFrom::Latest => Offset::End,
                    },
                };
                tpl.add_partition_offset(topic, p, start)
                    .map_err(self.kafka_err("assign"))?;
            }
        }
        if fallback > 0 {
            tracing::info!(source = "kafka", partitions = fallback,
                "kafka source: no stored offset for some partitions; starting at the consumer group's committed offsets (auto.offset.reset where none)");
        }
        Ok(tpl)
    }

    /// Runs until shutdown or a definite error; transient errors retry with backoff. After
    /// the last batch, keeps storing the offsets of the engine's final checkpoints.
    pub async fn run(mut self) -> Result<(), KafkaSourceError> {
        let mut backoff = Duration::from_millis(200);
        let mut run: Option<Run> = None;
        let result = loop {
            match self.follow(&mut run).await {
                Ok(()) => break Ok(()),
                Err(e) if e.is_transient() && !*self.shutdown.borrow() => {
                    tracing::warn!(source = "kafka", error = %e, ?backoff, "kafka source: retrying");
                    // In-flight batches stay in the run: their acknowledgements still come.
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = self.shutdown.changed() => break Ok(()),
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
                Err(e) => break Err(e),
            }
        };
        // The engine drains the queue and checkpoints once more when the sender is gone.
        let KafkaSource {
            queue,
            mut acked,
            config,
            ..
        } = self;
        drop(queue);
        if let Some(run) = run.as_mut() {
            while acked.changed().await.is_ok() {
                let p = *acked.borrow_and_update();
                if let Some(p) = p {
                    store_offsets(run, &p, config.commit_group_offsets)?;
                }
            }
        }
        result
    }

    async fn follow(&mut self, run: &mut Option<Run>) -> Result<(), KafkaSourceError> {
        if run.is_none() {
            let state = StateFile::new(&self.dir, &self.pipeline);
            let mut stored = state.load().map_err(Self::state_err(&state))?;
            let consumer = self.consumer()?;
            let tpl = self.assignment(&consumer, &stored)?;
            // INVARIANT: the new epoch is durable before any position of it leaves the source.
            stored.epoch = offsets::next_epoch(stored.epoch, now_secs());
            if self.resume.is_none() {
                stored.offsets.clear();
            }
            state.save(&stored).map_err(Self::state_err(&state))?;
            consumer.assign(&tpl).map_err(self.kafka_err("assign"))?;
            tracing::info!(source = "kafka", epoch = stored.epoch, topics = ?self.config.topics,
                partitions = tpl.count(), "kafka source: reading");
            self.metrics.set_streaming(true);
            *run = Some(Run {
                consumer,
                flight: InFlight::new(stored.epoch, stored.offsets),
                state,
                seq: 0,
            });
        }
        let run = run.as_mut().expect("set above");
        let mut converter = Converter::new(
            self.config.schemaless,
            self.config.unavailable_value_placeholder.clone(),
        );
        let commit = self.config.commit_group_offsets;
        loop {
            let first = tokio::select! {
                _ = self.shutdown.changed() => return Ok(()),
                r = self.acked.changed() => {
                    if r.is_err() {
                        return Ok(()); // the engine stopped
                    }
                    let p = *self.acked.borrow_and_update();
                    if let Some(p) = p {
                        store_offsets(run, &p, commit)?;
                    }
                    continue;
                }
                m = run.consumer.recv() => m.map_err(self.kafka_err("consume"))?.detach(),
            };
            if *self.shutdown.borrow() {
                return Ok(());
            }
            let batch = self.collect(&run.consumer, first).await?;
            run.seq += 1;
            let seq = run.seq;
            let records = batch.iter().map(|m| RawRecord {
                at: RecordAt {
                    topic: m.topic(),
                    partition: m.partition(),
                    offset: m.offset(),
                },
                key: m.key(),
                value: m.payload(),
                pk: pk_change(m),
            });
            let (txn, _stats) = converter.transaction(run.flight.epoch, seq, records)?;
            let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
            for m in &batch {
                next.insert((m.topic().to_owned(), m.partition()), m.offset() + 1);
            }
            let bytes = txn.byte_size() as u64;
            self.count(&txn, batch.len());
            run.flight
                .sent(seq, next.into_iter().map(|((t, p), o)| (t, p, o)).collect());
            if self.queue.send(Arc::new(txn), bytes).await.is_err() {
                return Ok(()); // the engine stopped
            }
        }
    }

    /// More records after `first`, up to the batch limits.
    async fn collect(
        &self,
        consumer: &StreamConsumer,
        first: OwnedMessage,
    ) -> Result<Vec<OwnedMessage>, KafkaSourceError> {
        let mut batch = vec![first];
        let deadline = Instant::now() + self.config.batch_linger;
        while batch.len() < self.config.max_batch_records {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match tokio::time::timeout(left, consumer.recv()).await {
                Err(_) => break,
                Ok(m) => batch.push(m.map_err(self.kafka_err("consume"))?.detach()),
            }
        }
        Ok(batch)
    }

    fn count(&self, txn: &Transaction, records: usize) {
        self.metrics.count_transaction();
        for b in txn.batches() {
            let table = b.schema.table.to_string();
            let mut per_op = [0u64; 5];
            for i in 0..b.num_rows() {
                per_op[b.op(i).as_u8() as usize % 5] += 1;
            }
            for (code, n) in per_op.iter().enumerate().filter(|(_, n)| **n > 0) {
                if let Some(op) = tidemark_model::Op::from_u8(code as u8) {
                    self.metrics.count_source(&table, op.debezium_code(), *n, 0);
                }
            }
        }
        tracing::debug!(source = "kafka", records, rows = txn.row_count(), end = %txn.end, "kafka source: batch");
    }
}

/// The engine checkpointed `p`: store the offsets it makes safe, then commit them to the group.
fn store_offsets(run: &mut Run, p: &Position, commit_group: bool) -> Result<(), KafkaSourceError> {
    if !run.flight.acknowledge(p) {
        return Ok(());
    }
    let state = SourceState {
        epoch: run.flight.epoch,
        offsets: run.flight.safe().clone(),
    };
    run.state
        .save(&state)
        .map_err(KafkaSource::state_err(&run.state))?;
    if commit_group {
        let mut tpl = TopicPartitionList::new();
        for (topic, parts) in &state.offsets {
            for (p, o) in parts {
                let _ = tpl.add_partition_offset(topic, *p, Offset::Offset(*o));
            }
        }
        if let Err(e) = run.consumer.commit(&tpl, CommitMode::Async) {
            // Monitoring only: the state file is the resume point.
            tracing::warn!(source = "kafka", error = %e, "kafka source: consumer-group offset commit failed");
        }
    }
    tracing::debug!(source = "kafka", position = %p, "kafka source: offsets stored");
    Ok(())
}

/// The record's `__debezium.oldkey` / `__debezium.newkey` headers.
fn pk_change(m: &OwnedMessage) -> PkChange<'_> {
    let mut pk = PkChange::default();
    if let Some(headers) = m.headers() {
        for h in headers.iter() {
            match h.key {
                tidemark_debezium::encoder::HEADER_OLD_KEY => pk.old_key = h.value,
                tidemark_debezium::encoder::HEADER_NEW_KEY => pk.new_key = true,
                _ => {}
            }
        }
    }
    pk
}
