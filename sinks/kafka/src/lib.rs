//! Kafka sink for Tidemark: records a Debezium consumer cannot tell from Debezium's own.
//!
//! ```text
//! Transaction ─► KafkaEncoder (encoder.rs: pure; DebeziumEncoder + topic routing + headers)
//!                     │ Record {topic, key, value, headers, position}
//!                     ▼
//!                KafkaWriter (writer.rs: create topics, producer.send; waits while
//!                     │        max_in_flight_bytes are unconfirmed = backpressure)
//!                     ▼ librdkafka (idempotent, acks=all, key → partition murmur2)
//!                delivery reports ─► AckTracker (ack.rs: highest position with every record
//!                     │               before it confirmed)
//!                     ▼
//!                KafkaCommit (commit.rs: await deliveries, or commit the Kafka transaction with
//!                             the position inside it) ─► Sink::flush → checkpointer
//! ```
//!
//! What a consumer sees is Debezium's: topics `<prefix>.<schema>.<table>` (Postgres) /
//! `<prefix>.<database>.<table>` (MySQL) unless `topic` routes them elsewhere; JSON keys of the
//! primary key (null without one); the envelope with or without the Connect `schema` part; a
//! tombstone after each delete; the delete + tombstone + create of a primary key change with
//! `__debezium.newkey` / `__debezium.oldkey` headers; truncates (opt-in); the transaction topic
//! (opt-in). Tidemark adds `tidemark.table`, `tidemark.op` and `tidemark.position` headers.
//!
//! # Delivery
//! - A position is acknowledged only after the broker confirmed (acks=all) every record of its
//!   transaction and of every transaction before it.
//! - A broker outage stops progress: librdkafka retries forever (`message.timeout.ms = 0`),
//!   `write` waits once `max_in_flight_bytes` are unconfirmed, the engine's queue fills, and the
//!   source stops reading. Nothing is dropped; per-partition order is kept by the idempotent
//!   producer.
//! - `exactly_once = true`: Kafka transactions, the committed source position stored inside
//!   each one; after a restart records up to it are skipped (see `commit.rs`).
//!
//! # Traps
//! - The same key must map to the same partition as under Kafka Connect, or a migration from
//!   Debezium splits a row's history over two partitions: the partitioner is `murmur2_random`
//!   (the Java client's), not librdkafka's default `consistent_random` (CRC32).
//! - Record keys are the JSON text of the key document; two JSON spellings of one key would
//!   partition differently. The encoder's output is canonical (field order of the primary key).
//! - Topic creation needs the admin API; with `create_topics = false` a missing topic is
//!   created by the broker's `auto.create.topics.enable` or the produce fails (retried).
//! - The engine checkpoints the minimum over sinks; an exactly-once Kafka sink commits on its
//!   own `commit_interval`, so between commits `committed()` stays at the last commit.
//! - tansu (the test broker) does not hide aborted transactions from read_committed
//!   consumers; see `commit.rs`.

pub mod ack;
pub mod commit;
pub mod config;
pub mod consume;
pub mod encoder;
pub mod writer;

use std::sync::Arc;

use tidemark_debezium::Record;
use tidemark_model::{BoxFuture, Position, Sink, SinkError, Transaction};

/// The librdkafka binding this sink is built on (tests and `tidemark compare` consume with it).
pub use rdkafka;

pub use ack::{AckTracker, DeliveryFailure};
pub use commit::{CommitStats, KafkaCommit};
pub use config::{Compression, KafkaSecret, KafkaSinkConfig, SaslMechanism, SecurityProtocol};
pub use encoder::{KafkaEncoder, TopicTemplate, HEADER_OP, HEADER_POSITION, HEADER_TABLE};
pub use writer::{KafkaWriter, TopicSettings, WriteError};

/// The Kafka sink.
pub struct KafkaSink {
    name: String,
    encoder: KafkaEncoder,
    writer: KafkaWriter,
    ack: Arc<AckTracker>,
    commit: KafkaCommit,
    client_props: Vec<(String, String)>,
    records: Vec<Record>,
    last_stats: CommitStats,
}

impl KafkaSink {
    /// Builds the sink (librdkafka connects lazily; nothing is sent yet). `pipeline` names the
    /// default transactional id; `server_name` and `database` fill Debezium's `topic.prefix`,
    /// `source.name` and `source.db`.
    pub fn new(
        config: KafkaSinkConfig,
        pipeline: &str,
        server_name: &str,
        database: &str,
    ) -> Result<Self, SinkError> {
        let name = config.sink_name().to_owned();
        let problems = config.validate();
        if !problems.is_empty() {
            let text: Vec<String> = problems.iter().map(|(k, m)| format!("{k} {m}")).collect();
            return Err(SinkError::definite(
                &name,
                format!("invalid config: {}", text.join("; ")),
            ));
        }
        let template = TopicTemplate::parse(config.topic_template())
            .map_err(|e| SinkError::definite(&name, format!("topic {e}")))?;
        let transactional_id = config
            .exactly_once
            .then(|| config.transactional_id_for(pipeline));
        let producer_props = config
            .producer_config(transactional_id.as_deref())
            .map_err(|e| SinkError::definite(&name, e))?;
        let client_props = config
            .client_config()
            .map_err(|e| SinkError::definite(&name, e))?;
        let ack = AckTracker::new();
        let topics = TopicSettings {
            create: config.create_topics,
            partitions: config.topic_partitions,
            replication_factor: config.topic_replication_factor,
        };
        let writer = KafkaWriter::new(
            &name,
            &producer_props,
            &client_props,
            topics,
            config.max_in_flight_bytes,
            ack.clone(),
        )
        .map_err(|e| write_error(&name, e))?;
        let commit = match transactional_id {
            Some(id) => KafkaCommit::exactly_once(
                id,
                config.positions_topic_for(server_name),
                config.commit_interval,
                config.flush_timeout,
            ),
            None => KafkaCommit::at_least_once(config.flush_timeout),
        };
        let mut opts = config.encoder_options(server_name, database);
        opts.provide_transaction_metadata = config.provide_transaction_metadata;
        opts.transaction_topic = Some(config.transaction_topic_for(server_name));
        Ok(KafkaSink {
            encoder: KafkaEncoder::new(opts, template, config.position_headers),
            name,
            writer,
            ack,
            commit,
            client_props,
            records: Vec::new(),
            last_stats: CommitStats::default(),
        })
    }

    /// The encoder (e.g. to restore `source.sequence` after a restart).
    pub fn encoder_mut(&mut self) -> &mut KafkaEncoder {
        &mut self.encoder
    }

    /// What the last flush did.
    pub fn last_commit(&self) -> &CommitStats {
        &self.last_stats
    }

    async fn write_now(&mut self, txn: &Transaction) -> Result<(), SinkError> {
        let name = self.name.clone();
        self.commit
            .init(&mut self.writer, &self.client_props)
            .await
            .map_err(|e| write_error(&name, e))?;
        self.commit
            .begin_if_needed(&self.writer)
            .map_err(|e| write_error(&name, e))?;
        let mut records = std::mem::take(&mut self.records);
        records.clear();
        self.encoder
            .encode_transaction(txn, &mut |r| records.push(r))
            .map_err(|e| SinkError::definite(&name, e.to_string()).with_source(e))?;
        let skip_upto = self.commit.skip_upto();
        let seq = self.ack.open();
        let mut result = Ok(());
        let mut last = None;
        for r in &records {
            // Exactly-once restart: already in a committed Kafka transaction.
            if skip_upto.is_some_and(|p| r.position <= p) {
                continue;
            }
            if let Err(e) = self.writer.produce(seq, r).await {
                result = Err(write_error(&name, e));
                break;
            }
            last = Some(r.position);
        }
        // A chunk of a long transaction acknowledges nothing until its last chunk.
        self.ack.seal(seq, txn.complete.then_some(txn.end));
        self.records = records;
        result?;
        let written = if txn.complete { Some(txn.end) } else { last };
        if let Some(p) = written {
            if skip_upto.is_none_or(|s| p > s) {
                self.commit.written(p);
            }
        }
        Ok(())
    }

    async fn flush_now(&mut self) -> Result<Option<Position>, SinkError> {
        let name = self.name.clone();
        if self.commit.is_transactional() {
            self.commit
                .init(&mut self.writer, &self.client_props)
                .await
                .map_err(|e| write_error(&name, e))?;
        }
        let stats = self
            .commit
            .commit(&mut self.writer, &self.ack)
            .await
            .map_err(|e| write_error(&name, e))?;
        tracing::debug!(sink = %name, position = ?stats.position.map(|p| p.to_string()),
            transactional = stats.transactional, duration_ms = stats.duration.as_millis() as u64,
            "kafka commit");
        let position = stats.position;
        self.last_stats = stats;
        Ok(position)
    }
}

fn write_error(sink: &str, e: WriteError) -> SinkError {
    let retriable = e.retriable;
    let err = if retriable {
        SinkError::transient(sink, e.to_string())
    } else {
        SinkError::definite(sink, e.to_string())
    };
    err.with_source(e)
}

impl Sink for KafkaSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn write<'a>(&'a mut self, txn: Arc<Transaction>) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move { self.write_now(&txn).await })
    }

    fn flush<'a>(&'a mut self) -> BoxFuture<'a, Result<Option<Position>, SinkError>> {
        Box::pin(async move { self.flush_now().await })
    }

    fn committed(&self) -> Option<Position> {
        self.commit.committed(&self.ack)
    }

    fn wants_flush(&self) -> bool {
        self.commit.wants_flush()
    }
}
