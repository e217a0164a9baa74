//! [`KafkaSinkConfig`]: the `[[sinks]] kind = "kafka"` table. Every field names the Debezium or
//! librdkafka property it mirrors, so a connector config maps one to one.
//!
//! [`KafkaSinkConfig::validate`] is pure (no IO) and reports every problem with its key, the bad
//! value and the fix. [`KafkaSinkConfig::producer_config`] turns the typed settings plus the
//! `producer` pass-through table into librdkafka properties.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tidemark_debezium::{DecimalHandling, EncoderOptions, TimePrecision};

/// Compression codec of produced batches (librdkafka `compression.type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// No compression (librdkafka's default).
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// How the client talks to the brokers (librdkafka `security.protocol`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }

    fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// SASL mechanism (librdkafka `sasl.mechanism`). GSSAPI/Kerberos is not built in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// A secret read from an environment variable or a file; `Debug` prints `***`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum KafkaSecret {
    /// The name of an environment variable holding the secret.
    Env(String),
    /// A file whose content (trailing newline trimmed) is the secret.
    File(PathBuf),
}

impl fmt::Debug for KafkaSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KafkaSecret::Env(name) => write!(f, "Env({name}=***)"),
            KafkaSecret::File(path) => write!(f, "File({}=***)", path.display()),
        }
    }
}

impl KafkaSecret {
    /// Reads the secret now.
    pub fn read(&self) -> Result<String, String> {
        match self {
            KafkaSecret::Env(name) => {
                std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))
            }
            KafkaSecret::File(path) => std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
                .map_err(|e| format!("cannot read {}: {e}", path.display())),
        }
    }
}

/// The Kafka sink (`[[sinks]] kind = "kafka"`): Debezium-compatible records to Kafka.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// The sink's name in logs, metrics and `status`. Default: `kafka`.
    #[serde(default)]
    pub name: Option<String>,
    /// librdkafka `bootstrap.servers`: `host:port[,host:port…]`.
    pub bootstrap_servers: String,
    /// Topic of each table's records. `{prefix}` (Debezium `topic.prefix`, the source's server
    /// name), `{schema}` (Postgres schema; MySQL database), `{database}` (same as `{schema}`) and
    /// `{table}` are replaced. Default: `{prefix}.{schema}.{table}`, Debezium's naming
    /// (`<prefix>.<schema>.<table>` for Postgres, `<prefix>.<database>.<table>` for MySQL).
    #[serde(default)]
    pub topic: Option<String>,
    /// Create missing topics before the first record to them (Debezium
    /// `topic.creation.enable`). Default: true. With false, the broker's auto-creation (if any)
    /// or an error applies.
    #[serde(default = "default_true")]
    pub create_topics: bool,
    /// Partitions of a created topic (`topic.creation.default.partitions`). Default: 1, Kafka's
    /// `num.partitions` default. Records are partitioned by key, so each row stays in order.
    #[serde(default = "default_partitions")]
    pub topic_partitions: i32,
    /// Replication factor of a created topic (`topic.creation.default.replication.factor`).
    /// Default: -1, the broker's `default.replication.factor` (Kafka 2.4+).
    #[serde(default = "default_replication_factor")]
    pub topic_replication_factor: i32,
    /// Debezium `decimal.handling.mode`: `precise` (default), `string` or `double`.
    #[serde(default)]
    pub decimal_handling_mode: DecimalHandling,
    /// Debezium `time.precision.mode`: `adaptive` (default), `adaptive_time_microseconds`,
    /// `connect`.
    #[serde(default)]
    pub time_precision_mode: TimePrecision,
    /// Kafka Connect JsonConverter `schemas.enable`: wrap key and value in
    /// `{"schema":…,"payload":…}`. Default: false.
    #[serde(default)]
    pub schemas_enable: bool,
    /// Emit the true value where Debezium loses it (see tidemark-debezium's "Lossless mode").
    /// Default: false (byte-compatible with Debezium).
    #[serde(default)]
    pub lossless: bool,
    /// Debezium `tombstones.on.delete`: a null-value record after each delete, so log
    /// compaction can drop the key. Default: true.
    #[serde(default = "default_true")]
    pub tombstones_on_delete: bool,
    /// Emit truncate events (op `t`, null key). Default: false, as Debezium's default
    /// `skipped.operations=t`.
    #[serde(default)]
    pub emit_truncate: bool,
    /// Debezium `provide.transaction.metadata`: BEGIN/END records on the transaction topic and
    /// a `transaction` block in every change event. Default: false.
    #[serde(default)]
    pub provide_transaction_metadata: bool,
    /// Topic of the BEGIN/END records. Default: `{prefix}.transaction` (Debezium's
    /// `topic.transaction` default `transaction`, prefixed).
    #[serde(default)]
    pub transaction_topic: Option<String>,
    /// Add headers `tidemark.table` (`schema.table`), `tidemark.op` (`c`/`u`/`d`/`t`/`r`/`m`)
    /// and `tidemark.position` (the source position, as in checkpoints) to every record. Debezium
    /// consumers ignore unknown headers. Default: true.
    #[serde(default = "default_true")]
    pub position_headers: bool,
    /// Kafka transactions: each flush commits one producer transaction, and the last committed
    /// source position is stored in it (on `positions_topic`), so after a crash or restart a
    /// `read_committed` consumer sees every change exactly once. Default: false (idempotent
    /// producer, at-least-once: a restart may repeat changes after the last checkpoint).
    #[serde(default)]
    pub exactly_once: bool,
    /// librdkafka `transactional.id` with `exactly_once`. Must be stable across restarts and
    /// unique per pipeline and sink. Default: `tidemark-<pipeline>-<sink name>`.
    #[serde(default)]
    pub transactional_id: Option<String>,
    /// With `exactly_once`: the single-partition topic holding the last committed position per
    /// transactional id. Default: `{prefix}.tidemark.positions`.
    #[serde(default)]
    pub positions_topic: Option<String>,
    /// Maximum bytes (keys + values) produced but not yet confirmed by the broker. When reached,
    /// `write` waits: this is the backpressure that reaches the source during a broker outage.
    /// Default: 64 MiB.
    #[serde(default = "default_max_in_flight_bytes")]
    pub max_in_flight_bytes: u64,
    /// librdkafka `message.timeout.ms`: how long a record may wait for delivery before it fails.
    /// Default: 0 = forever, so a broker outage stops progress instead of failing the pipeline.
    /// Ignored with `exactly_once` (bounded by `transaction.timeout.ms` there).
    #[serde(default, with = "humantime_serde")]
    pub delivery_timeout: Option<Duration>,
    /// How long `flush` waits for outstanding deliveries before it reports what is confirmed so
    /// far (the rest is acknowledged by a later flush). Default: 30 s.
    #[serde(default = "default_flush_timeout", with = "humantime_serde")]
    pub flush_timeout: Duration,
    /// With `exactly_once`, commit a Kafka transaction at most this often; in between the engine's
    /// checkpoint ticks only read the last committed position. Default: 1 s.
    #[serde(default = "default_commit_interval", with = "humantime_serde")]
    pub commit_interval: Duration,
    /// librdkafka `compression.type`: `none` (default), `gzip`, `snappy`, `lz4`, `zstd`.
    #[serde(default)]
    pub compression: Compression,
    /// librdkafka `linger.ms`: how long the producer waits to fill a batch. Default: 5 ms
    /// (librdkafka's default).
    #[serde(default = "default_linger", with = "humantime_serde")]
    pub linger: Duration,
    /// librdkafka `batch.size` in bytes. Default: 1,000,000 (librdkafka's default).
    #[serde(default = "default_batch_size")]
    pub batch_size: u64,
    /// librdkafka `acks`. The producer is always idempotent, which requires `all` (the only
    /// accepted value; kept so a migrated config that says `acks = "all"` loads).
    #[serde(default = "default_acks")]
    pub acks: String,
    /// librdkafka `security.protocol`: `plaintext` (default), `ssl`, `sasl_plaintext`,
    /// `sasl_ssl`.
    #[serde(default)]
    pub security_protocol: SecurityProtocol,
    /// librdkafka `sasl.mechanism`: `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`. Required with a
    /// `sasl_*` protocol.
    #[serde(default)]
    pub sasl_mechanism: Option<SaslMechanism>,
    /// librdkafka `sasl.username`.
    #[serde(default)]
    pub sasl_username: Option<String>,
    /// librdkafka `sasl.password`, from the environment or a file (never inline, never logged).
    #[serde(default)]
    pub sasl_password: Option<KafkaSecret>,
    /// librdkafka `ssl.ca.location`: PEM file of the CAs that sign the brokers' certificates.
    #[serde(default)]
    pub ssl_ca_location: Option<PathBuf>,
    /// librdkafka `ssl.certificate.location`: client certificate (PEM) for mutual TLS.
    #[serde(default)]
    pub ssl_certificate_location: Option<PathBuf>,
    /// librdkafka `ssl.key.location`: client private key (PEM) for mutual TLS.
    #[serde(default)]
    pub ssl_key_location: Option<PathBuf>,
    /// librdkafka `ssl.key.password`, from the environment or a file.
    #[serde(default)]
    pub ssl_key_password: Option<KafkaSecret>,
    /// Any other librdkafka producer property, passed through as is (e.g.
    /// `"queue.buffering.max.kbytes" = "65536"`). Keys the sink sets itself are refused.
    #[serde(default)]
    pub producer: BTreeMap<String, String>,
}

const fn default_true() -> bool {
    true
}
/// Kafka's `num.partitions` default.
const fn default_partitions() -> i32 {
    1
}
/// -1: the broker's `default.replication.factor` (KIP-464).
const fn default_replication_factor() -> i32 {
    -1
}
/// 64 MiB: the size of the engine's own queue (`pipeline.max_queue_bytes`).
const fn default_max_in_flight_bytes() -> u64 {
    64 << 20
}
const fn default_flush_timeout() -> Duration {
    Duration::from_secs(30)
}
/// The engine's default checkpoint interval.
const fn default_commit_interval() -> Duration {
    Duration::from_secs(1)
}
/// librdkafka's `linger.ms` default (5 ms since librdkafka 1.9).
const fn default_linger() -> Duration {
    Duration::from_millis(5)
}
/// librdkafka's `batch.size` default.
const fn default_batch_size() -> u64 {
    1_000_000
}
fn default_acks() -> String {
    "all".to_owned()
}

/// librdkafka keys the sink sets itself: a pass-through of one is a mistake.
const RESERVED: &[(&str, &str)] = &[
    ("bootstrap.servers", "bootstrap_servers"),
    ("enable.idempotence", "(always true)"),
    ("transactional.id", "transactional_id"),
    ("compression.type", "compression"),
    ("compression.codec", "compression"),
    ("linger.ms", "linger"),
    ("queue.buffering.max.ms", "linger"),
    ("batch.size", "batch_size"),
    ("acks", "acks"),
    ("request.required.acks", "acks"),
    ("message.timeout.ms", "delivery_timeout"),
    ("delivery.timeout.ms", "delivery_timeout"),
    ("security.protocol", "security_protocol"),
    ("sasl.mechanism", "sasl_mechanism"),
    ("sasl.mechanisms", "sasl_mechanism"),
    ("sasl.username", "sasl_username"),
    ("sasl.password", "sasl_password"),
    ("ssl.ca.location", "ssl_ca_location"),
    ("ssl.certificate.location", "ssl_certificate_location"),
    ("ssl.key.location", "ssl_key_location"),
    ("ssl.key.password", "ssl_key_password"),
    (
        "partitioner",
        "(murmur2_random: Java-compatible key partitioning)",
    ),
];

impl KafkaSinkConfig {
    /// A config for `bootstrap_servers` with every default.
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        KafkaSinkConfig {
            name: None,
            bootstrap_servers: bootstrap_servers.into(),
            topic: None,
            create_topics: true,
            topic_partitions: default_partitions(),
            topic_replication_factor: default_replication_factor(),
            decimal_handling_mode: DecimalHandling::Precise,
            time_precision_mode: TimePrecision::Adaptive,
            schemas_enable: false,
            lossless: false,
            tombstones_on_delete: true,
            emit_truncate: false,
            provide_transaction_metadata: false,
            transaction_topic: None,
            position_headers: true,
            exactly_once: false,
            transactional_id: None,
            positions_topic: None,
            max_in_flight_bytes: default_max_in_flight_bytes(),
            delivery_timeout: None,
            flush_timeout: default_flush_timeout(),
            commit_interval: default_commit_interval(),
            compression: Compression::None,
            linger: default_linger(),
            batch_size: default_batch_size(),
            acks: default_acks(),
            security_protocol: SecurityProtocol::Plaintext,
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
            ssl_ca_location: None,
            ssl_certificate_location: None,
            ssl_key_location: None,
            ssl_key_password: None,
            producer: BTreeMap::new(),
        }
    }

    /// The sink's name (`kafka` unless configured).
    pub fn sink_name(&self) -> &str {
        self.name.as_deref().unwrap_or("kafka")
    }

    /// The topic template (Debezium's naming unless configured).
    pub fn topic_template(&self) -> &str {
        self.topic.as_deref().unwrap_or("{prefix}.{schema}.{table}")
    }

    /// The transaction metadata topic for a prefix.
    pub fn transaction_topic_for(&self, prefix: &str) -> String {
        self.transaction_topic
            .clone()
            .unwrap_or_else(|| format!("{prefix}.transaction"))
    }

    /// The positions topic (exactly-once) for a prefix.
    pub fn positions_topic_for(&self, prefix: &str) -> String {
        self.positions_topic
            .clone()
            .unwrap_or_else(|| format!("{prefix}.tidemark.positions"))
    }

    /// The transactional id for a pipeline.
    pub fn transactional_id_for(&self, pipeline: &str) -> String {
        self.transactional_id
            .clone()
            .unwrap_or_else(|| format!("tidemark-{pipeline}-{}", self.sink_name()))
    }

    /// Checks the config without IO; returns `(key, message)` for every problem.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let mut problem = |key: &str, msg: String| problems.push((key.to_owned(), msg));
        if self.bootstrap_servers.trim().is_empty() {
            problem(
                "bootstrap_servers",
                "is empty; give \"host:port\" of at least one broker".into(),
            );
        } else if self.bootstrap_servers.contains("://") {
            problem(
                "bootstrap_servers",
                format!(
                    "{:?} has a URL scheme; librdkafka wants \"host:port[,host:port]\"",
                    self.bootstrap_servers
                ),
            );
        }
        if let Some(name) = &self.name {
            if name.trim().is_empty() {
                problem("name", "is empty; remove it or give a name".into());
            }
        }
        if let Err(e) = crate::encoder::TopicTemplate::parse(self.topic_template()) {
            problem("topic", e);
        }
        for (key, topic) in [
            ("transaction_topic", &self.transaction_topic),
            ("positions_topic", &self.positions_topic),
        ] {
            if let Some(t) = topic {
                if t.trim().is_empty() || t.contains(char::is_whitespace) {
                    problem(
                        key,
                        format!("{t:?} is not a topic name (empty or has spaces)"),
                    );
                }
            }
        }
        if self.topic_partitions < 1 {
            problem(
                "topic_partitions",
                format!("{} must be at least 1", self.topic_partitions),
            );
        }
        if self.topic_replication_factor == 0 || self.topic_replication_factor < -1 {
            problem(
                "topic_replication_factor",
                format!(
                    "{} must be at least 1, or -1 for the broker's default",
                    self.topic_replication_factor
                ),
            );
        }
        if self.max_in_flight_bytes < 1 << 20 {
            problem(
                "max_in_flight_bytes",
                format!(
                    "{} is below 1 MiB; one large record could not pass",
                    self.max_in_flight_bytes
                ),
            );
        }
        if !matches!(self.acks.as_str(), "all" | "-1") {
            problem(
                "acks",
                format!(
                    "{:?}: the producer is always idempotent, which needs acks = \"all\"; remove the key",
                    self.acks
                ),
            );
        }
        if self.flush_timeout.is_zero() {
            problem(
                "flush_timeout",
                "must be greater than zero, e.g. \"30s\"".into(),
            );
        }
        if self.exactly_once && self.commit_interval.is_zero() {
            problem(
                "commit_interval",
                "must be greater than zero, e.g. \"1s\"".into(),
            );
        }
        if !self.exactly_once && self.transactional_id.is_some() {
            problem(
                "transactional_id",
                "is set but exactly_once is false; set exactly_once = true or remove it".into(),
            );
        }
        if self.security_protocol.uses_sasl() {
            if self.sasl_mechanism.is_none() {
                problem(
                    "sasl_mechanism",
                    format!(
                        "is required with security_protocol = {:?}: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
                        self.security_protocol.as_str()
                    ),
                );
            }
            if self.sasl_username.is_none() || self.sasl_password.is_none() {
                problem(
                    "sasl_username",
                    "and sasl_password are required with a sasl_* security_protocol".into(),
                );
            }
        } else if self.sasl_mechanism.is_some() || self.sasl_username.is_some() {
            problem(
                "sasl_mechanism",
                "is set but security_protocol is not sasl_plaintext or sasl_ssl".into(),
            );
        }
        for key in self.producer.keys() {
            if let Some((_, ours)) = RESERVED.iter().find(|(k, _)| k == key) {
                problem(
                    &format!("producer.{key:?}"),
                    format!("is set by the sink; use {ours} instead and delete this key"),
                );
            }
        }
        problems
    }

    /// The encoder options for a source's server name and database.
    pub fn encoder_options(&self, server_name: &str, database: &str) -> EncoderOptions {
        EncoderOptions {
            decimal_handling_mode: self.decimal_handling_mode,
            time_precision_mode: self.time_precision_mode,
            schemas_enable: self.schemas_enable,
            lossless: self.lossless,
            tombstones_on_delete: self.tombstones_on_delete,
            emit_truncate: self.emit_truncate,
            ..EncoderOptions::new(server_name, database)
        }
    }

    /// librdkafka producer properties (secrets read now). `transactional_id` is set with
    /// `exactly_once`.
    pub fn producer_config(
        &self,
        transactional_id: Option<&str>,
    ) -> Result<Vec<(String, String)>, String> {
        let mut p: Vec<(String, String)> = vec![
            ("bootstrap.servers".into(), self.bootstrap_servers.clone()),
            ("enable.idempotence".into(), "true".into()),
            ("acks".into(), "all".into()),
            ("compression.type".into(), self.compression.as_str().into()),
            ("linger.ms".into(), self.linger.as_millis().to_string()),
            ("batch.size".into(), self.batch_size.to_string()),
            // The Java client's partitioner: the same key lands on the same partition as it
            // would with Kafka Connect (Debezium), and a null key is spread randomly.
            ("partitioner".into(), "murmur2_random".into()),
            (
                "security.protocol".into(),
                self.security_protocol.as_str().into(),
            ),
        ];
        match transactional_id {
            Some(id) => p.push(("transactional.id".into(), id.to_owned())),
            None => {
                let ms = self.delivery_timeout.map_or(0, |d| d.as_millis());
                p.push(("message.timeout.ms".into(), ms.to_string()));
            }
        }
        if let Some(m) = self.sasl_mechanism {
            p.push(("sasl.mechanism".into(), m.as_str().into()));
        }
        if let Some(u) = &self.sasl_username {
            p.push(("sasl.username".into(), u.clone()));
        }
        if let Some(s) = &self.sasl_password {
            p.push((
                "sasl.password".into(),
                s.read().map_err(|e| format!("sasl_password: {e}"))?,
            ));
        }
        for (key, path) in [
            ("ssl.ca.location", &self.ssl_ca_location),
            ("ssl.certificate.location", &self.ssl_certificate_location),
            ("ssl.key.location", &self.ssl_key_location),
        ] {
            if let Some(path) = path {
                p.push((key.into(), path.display().to_string()));
            }
        }
        if let Some(s) = &self.ssl_key_password {
            p.push((
                "ssl.key.password".into(),
                s.read().map_err(|e| format!("ssl_key_password: {e}"))?,
            ));
        }
        for (k, v) in &self.producer {
            p.push((k.clone(), v.clone()));
        }
        Ok(p)
    }

    /// librdkafka properties of the admin and consumer clients (connection and security only).
    pub fn client_config(&self) -> Result<Vec<(String, String)>, String> {
        let keep = |k: &str| {
            k == "bootstrap.servers"
                || k.starts_with("security.")
                || k.starts_with("sasl.")
                || k.starts_with("ssl.")
        };
        Ok(self
            .producer_config(None)?
            .into_iter()
            .filter(|(k, _)| keep(k))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> KafkaSinkConfig {
        serde_json::from_str(json).expect("parses")
    }

    #[test]
    fn defaults_are_debeziums_and_librdkafkas() {
        let c = parse(r#"{"bootstrap_servers":"127.0.0.1:9092"}"#);
        assert_eq!(c, KafkaSinkConfig::new("127.0.0.1:9092"));
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        assert_eq!(c.sink_name(), "kafka");
        assert_eq!(c.topic_template(), "{prefix}.{schema}.{table}");
        assert_eq!(c.transaction_topic_for("tm"), "tm.transaction");
        assert_eq!(c.transactional_id_for("shop"), "tidemark-shop-kafka");
        let p = c.producer_config(None).unwrap();
        let get = |k: &str| p.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!(get("enable.idempotence"), Some("true"));
        assert_eq!(get("acks"), Some("all"));
        assert_eq!(
            get("message.timeout.ms"),
            Some("0"),
            "outage = backpressure"
        );
        assert_eq!(get("linger.ms"), Some("5"));
        assert_eq!(get("partitioner"), Some("murmur2_random"));
        assert_eq!(get("transactional.id"), None);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(serde_json::from_str::<KafkaSinkConfig>(
            r#"{"bootstrap_servers":"x:1","compresion":"lz4"}"#
        )
        .is_err());
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let c = parse(
            r#"{"bootstrap_servers":"kafka://x:9092","topic":"{prefix}.{tabel}",
                "topic_partitions":0,"acks":"1","security_protocol":"sasl_ssl",
                "transactional_id":"t","producer":{"linger.ms":"7","queue.buffering.max.kbytes":"1"}}"#,
        );
        let keys: Vec<String> = c.validate().into_iter().map(|p| p.0).collect();
        assert_eq!(
            keys,
            [
                "bootstrap_servers",
                "topic",
                "topic_partitions",
                "acks",
                "transactional_id",
                "sasl_mechanism",
                "sasl_username",
                "producer.\"linger.ms\""
            ]
        );
    }

    #[test]
    fn pass_through_security_and_exactly_once() {
        std::env::set_var("TM_KAFKA_TEST_PW", "s3cret");
        let c = parse(
            r#"{"bootstrap_servers":"b:9093","security_protocol":"sasl_ssl",
                "sasl_mechanism":"SCRAM-SHA-512","sasl_username":"u",
                "sasl_password":{"env":"TM_KAFKA_TEST_PW"},"ssl_ca_location":"/ca.pem",
                "compression":"zstd","exactly_once":true,
                "producer":{"queue.buffering.max.kbytes":"65536"}}"#,
        );
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        assert!(!format!("{c:?}").contains("s3cret"));
        let p = c.producer_config(Some("tid")).unwrap();
        let get = |k: &str| p.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!(get("sasl.password"), Some("s3cret"));
        assert_eq!(get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(get("ssl.ca.location"), Some("/ca.pem"));
        assert_eq!(get("compression.type"), Some("zstd"));
        assert_eq!(get("transactional.id"), Some("tid"));
        assert_eq!(get("message.timeout.ms"), None);
        assert_eq!(get("queue.buffering.max.kbytes"), Some("65536"));
        let client = c.client_config().unwrap();
        assert!(client.iter().any(|(k, _)| k == "sasl.password"));
        assert!(!client.iter().any(|(k, _)| k == "linger.ms"));
    }
}
