//! [`KafkaWriter`]: the only IO before commit. Creates missing topics, hands records to
//! librdkafka (an idempotent `ThreadedProducer`), and feeds delivery reports to the
//! [`AckTracker`].
//!
//! ```text
//! produce(seq, record) ─ wait_below(max_in_flight_bytes) ─ ensure_topic ─ producer.send
//!                                                                          │ (librdkafka thread)
//!                                          KafkaContext::delivery ◄────────┘ ack.delivered(seq, …)
//! ```
//!
//! # Traps
//! - librdkafka retries a failed produce by itself; with `message.timeout.ms = 0` it retries
//!   forever, so a broker outage shows up here only as in-flight bytes that stop shrinking:
//!   `produce` then waits (backpressure) instead of failing. With idempotence the retries keep
//!   per-partition order (max 5 in flight, sequence numbers).
//! - `send` fails with `QueueFull` when librdkafka's own queue is full even though our byte bound
//!   is not reached (many small records): wait for deliveries and try again, never drop.
//! - A *fatal* producer error (e.g. the broker lost the producer's state) makes every later send
//!   fail; it surfaces as a delivery failure and stops the pipeline (restart = new producer).
//! - Topic creation races with other producers: `TopicAlreadyExists` is success.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};
use tidemark_debezium::Record;

use crate::ack::{AckTracker, DeliveryFailure};

/// A writer failure; `retriable` says whether a restart from the checkpoint may fix it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("kafka {what}: {message}")]
pub struct WriteError {
    pub what: String,
    pub message: String,
    pub retriable: bool,
}

impl WriteError {
    fn new(what: impl Into<String>, message: impl Into<String>, retriable: bool) -> Self {
        WriteError {
            what: what.into(),
            message: message.into(),
            retriable,
        }
    }
}

/// librdkafka callbacks: logs through `tracing`, delivery reports into the tracker.
pub struct KafkaContext {
    ack: Arc<AckTracker>,
    sink: String,
}

impl ClientContext for KafkaContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        let sink = &self.sink;
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => {
                tracing::error!(sink, fac, "librdkafka: {message}")
            }
            // librdkafka logs every failed connection attempt as an error and retries it: for
            // us that is "degraded but safe" (STYLE §9); failed deliveries are errors elsewhere.
            RDKafkaLogLevel::Error | RDKafkaLogLevel::Warning => {
                tracing::warn!(sink, fac, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(sink, fac, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(sink, fac, "librdkafka: {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Broker-down and transport errors are reported here and retried by librdkafka: a warning,
        // not data loss (STYLE §9). Failed deliveries arrive through `delivery`.
        tracing::warn!(sink = %self.sink, %error, "kafka client: {reason}");
    }
}

impl ProducerContext for KafkaContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        match result {
            Ok(msg) => {
                self.ack
                    .delivered(seq as u64, record_bytes(msg.key(), msg.payload()), Ok(()))
            }
            Err((err, msg)) => {
                let retriable = match err {
                    KafkaError::MessageProduction(code) => is_retriable(*code),
                    _ => true,
                };
                let failure = DeliveryFailure {
                    topic: msg.topic().to_owned(),
                    partition: msg.partition(),
                    error: err.to_string(),
                    retriable,
                };
                tracing::error!(sink = %self.sink, topic = %failure.topic, partition = failure.partition,
                    error = %failure.error, "kafka delivery failed");
                self.ack.delivered(
                    seq as u64,
                    record_bytes(msg.key(), msg.payload()),
                    Err(failure),
                );
            }
        }
    }
}

/// Bytes a record counts against `max_in_flight_bytes`: key + value.
fn record_bytes(key: Option<&[u8]>, value: Option<&[u8]>) -> u64 {
    (key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len)) as u64
}

/// Codes a retry (after a restart) cannot fix (after Vector's `service.rs` list).
fn is_retriable(code: RDKafkaErrorCode) -> bool {
    !matches!(
        code,
        RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
            | RDKafkaErrorCode::InvalidTopic
            | RDKafkaErrorCode::UnsupportedVersion
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::InvalidRequiredAcks
    )
}

/// Topic creation settings.
#[derive(Clone, Debug)]
pub struct TopicSettings {
    pub create: bool,
    pub partitions: i32,
    pub replication_factor: i32,
}

/// Produces records and creates topics.
pub struct KafkaWriter {
    producer: ThreadedProducer<KafkaContext>,
    admin: AdminClient<DefaultClientContext>,
    ack: Arc<AckTracker>,
    topics: TopicSettings,
    known_topics: HashSet<String>,
    max_in_flight_bytes: u64,
    sink: String,
}

/// How long one admin or metadata request may take before it is retried.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `produce` waits between checks while the broker does not confirm (outage).
const STALL_LOG_INTERVAL: Duration = Duration::from_secs(10);

impl KafkaWriter {
    /// Builds the producer and admin client (no IO yet: librdkafka connects lazily).
    pub fn new(
        sink: &str,
        producer_props: &[(String, String)],
        client_props: &[(String, String)],
        topics: TopicSettings,
        max_in_flight_bytes: u64,
        ack: Arc<AckTracker>,
    ) -> Result<Self, WriteError> {
        let mut pc = ClientConfig::new();
        for (k, v) in producer_props {
            pc.set(k, v);
        }
        let context = KafkaContext {
            ack: ack.clone(),
            sink: sink.to_owned(),
        };
        let producer: ThreadedProducer<KafkaContext> = pc
            .create_with_context(context)
            .map_err(|e| WriteError::new("producer config", e.to_string(), false))?;
        let mut ac = ClientConfig::new();
        for (k, v) in client_props {
            ac.set(k, v);
        }
        let admin: AdminClient<DefaultClientContext> = ac
            .create()
            .map_err(|e| WriteError::new("admin client config", e.to_string(), false))?;
        Ok(KafkaWriter {
            producer,
            admin,
            ack,
            topics,
            known_topics: HashSet::new(),
            max_in_flight_bytes,
            sink: sink.to_owned(),
        })
    }

    /// The producer (for transactions and flushes).
    pub fn producer(&self) -> &ThreadedProducer<KafkaContext> {
        &self.producer
    }

    /// Creates `topic` unless it is known to exist; retries while the broker is unreachable.
    pub async fn ensure_topic(&mut self, topic: &str, compact: bool) -> Result<(), WriteError> {
        if !self.topics.create || self.known_topics.contains(topic) {
            return Ok(());
        }
        // The positions topic (exactly-once) is one compacted partition: it is read whole at start.
        let partitions = if compact { 1 } else { self.topics.partitions };
        let mut new = NewTopic::new(
            topic,
            partitions,
            TopicReplication::Fixed(self.topics.replication_factor),
        );
        if compact {
            new = new.set("cleanup.policy", "compact");
        }
        let opts = AdminOptions::new().request_timeout(Some(ADMIN_TIMEOUT));
        let mut backoff = Duration::from_millis(100);
        loop {
            let outcome = match self.admin.create_topics([&new], &opts).await {
                Ok(results) => match results.into_iter().next() {
                    Some(Ok(_)) | None => Ok(()),
                    Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => Ok(()),
                    Some(Err((_, code))) if is_transient_admin(code) => Err(code.to_string()),
                    Some(Err((_, code))) => {
                        return Err(WriteError::new(
                            format!("create topic {topic}"),
                            format!(
                                "{code} (partitions {}, replication factor {})",
                                self.topics.partitions, self.topics.replication_factor
                            ),
                            false,
                        ))
                    }
                },
                Err(e) => Err(e.to_string()),
            };
            match outcome {
                Ok(()) => {
                    tracing::debug!(sink = %self.sink, topic, "topic ready");
                    self.known_topics.insert(topic.to_owned());
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(sink = %self.sink, topic, error = %e, "cannot create topic yet; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Hands one record of transaction `seq` to the producer; waits while too much is in flight.
    pub async fn produce(&mut self, seq: u64, record: &Record) -> Result<(), WriteError> {
        self.ensure_topic(&record.topic, false).await?;
        self.wait_for_room().await?;
        let bytes = record_bytes(record.key.as_deref(), record.value.as_deref());
        let mut headers = None;
        if !record.headers.is_empty() {
            let mut h = OwnedHeaders::new_with_capacity(record.headers.len());
            for (k, v) in &record.headers {
                h = h.insert(Header {
                    key: k,
                    value: Some(v.as_slice()),
                });
            }
            headers = Some(h);
        }
        self.ack.add(seq, bytes);
        loop {
            let mut r: BaseRecord<'_, [u8], [u8], usize> =
                BaseRecord::with_opaque_to(&record.topic, seq as usize);
            if let Some(k) = &record.key {
                r = r.key(k.as_slice());
            }
            if let Some(v) = &record.value {
                r = r.payload(v.as_slice());
            }
            if let Some(h) = headers.take() {
                r = r.headers(h);
            }
            match self.producer.send(r) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    headers = back.headers;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => {
                    self.ack.unadd(seq, bytes);
                    let retriable = match &e {
                        KafkaError::MessageProduction(code) => is_retriable(*code),
                        _ => false,
                    };
                    return Err(WriteError::new(
                        format!("produce to {}", record.topic),
                        e.to_string(),
                        retriable,
                    ));
                }
            }
        }
    }

    async fn wait_for_room(&self) -> Result<(), WriteError> {
        loop {
            if let Some(f) = self.ack.failure() {
                return Err(failure_error(&f));
            }
            if self
                .ack
                .wait_below(self.max_in_flight_bytes, STALL_LOG_INTERVAL)
                .await
            {
                if let Some(f) = self.ack.failure() {
                    return Err(failure_error(&f));
                }
                return Ok(());
            }
            let (bytes, records) = self.ack.in_flight();
            tracing::warn!(sink = %self.sink, in_flight_bytes = bytes, in_flight_records = records,
                "the broker confirms nothing; waiting (backpressure)");
        }
    }
}

/// A delivery failure as a writer error.
pub fn failure_error(f: &DeliveryFailure) -> WriteError {
    WriteError::new(
        format!("delivery to {} partition {}", f.topic, f.partition),
        f.error.clone(),
        f.retriable,
    )
}

fn is_transient_admin(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::NotController
            | RDKafkaErrorCode::BrokerNotAvailable
            | RDKafkaErrorCode::LeaderNotAvailable
            | RDKafkaErrorCode::NetworkException
            | RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::BrokerTransportFailure
    )
}
