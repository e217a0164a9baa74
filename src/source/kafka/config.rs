//! `[source]` with `kind = "kafka"`: Debezium-format topics (written by Debezium or by
//! Tidemark's own Kafka sink) as a source.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// Where to start in a partition that has no stored offset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartFrom {
    /// The first record still in the partition (Kafka `auto.offset.reset=earliest`).
    #[default]
    Earliest,
    /// Only records produced after the source started.
    Latest,
}

/// What to do with a record whose JSON has no Connect `schema` part (JsonConverter
/// `schemas.enable=false`, Debezium's default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schemaless {
    /// A definite error naming the topic, partition and offset: without the schema a JSON
    /// number does not say whether it is an int, a decimal, a date in days or a timestamp in
    /// µs, and a lake table typed from guesses changes type when the guess changes.
    #[default]
    Reject,
    /// Every column is text: the JSON text of its value (strings as they are). Stable, never
    /// wrong, but untyped; key columns still come from the record key.
    Text,
}

/// A Kafka source reading Debezium change-event topics.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// librdkafka `bootstrap.servers`: `host:port[,host:port…]`.
    pub bootstrap_servers: String,
    /// The topics to read, e.g. `["dbserver1.public.orders"]` (one per table, as Debezium
    /// and the Kafka sink name them). Every partition of each is read.
    pub topics: Vec<String>,
    /// Consumer group whose committed offsets are advanced after the sinks committed (for
    /// lag monitoring and as a fallback resume point). Default: `tidemark-<pipeline name>`.
    #[serde(default)]
    pub group_id: Option<String>,
    /// Where to start in a partition without a stored offset. Default: `earliest`.
    #[serde(default)]
    pub start: StartFrom,
    /// Records without a Connect schema: `reject` (default) or `text` (every column text).
    #[serde(default)]
    pub schemaless: Schemaless,
    /// Debezium's `unavailable.value.placeholder`: a value equal to it (in the column's JSON
    /// form) is an unchanged value the source did not send, never stored. Default:
    /// `__debezium_unavailable_value`, Debezium's default.
    #[serde(default = "default_placeholder")]
    pub unavailable_value_placeholder: String,
    /// Most records in one batch (one engine transaction). Default 10 000.
    #[serde(default = "default_max_batch_records")]
    pub max_batch_records: usize,
    /// Longest wait for more records before a batch is handed on. Default 100 ms.
    #[serde(default = "default_linger", with = "humantime_serde")]
    pub batch_linger: Duration,
    /// Read only committed records of transactional producers (`isolation.level`). Default
    /// true: a Kafka sink with `exactly_once` is read without its aborted transactions (on a
    /// broker that filters them).
    #[serde(default = "default_true")]
    pub read_committed: bool,
    /// Also commit the safe offsets to the consumer group. Default true.
    #[serde(default = "default_true")]
    pub commit_group_offsets: bool,
    /// Extra librdkafka consumer properties (TLS, SASL, fetch sizes), passed through.
    /// `group.id`, `enable.auto.commit`, `isolation.level` and `bootstrap.servers` are set
    /// by the keys above and rejected here.
    #[serde(default)]
    pub consumer: BTreeMap<String, String>,
    /// Debezium `topic.prefix` / `source.name` for sinks that write Debezium events. Default:
    /// the pipeline name.
    #[serde(default)]
    pub server_name: Option<String>,
}

fn default_placeholder() -> String {
    tidemark_debezium::config::DEFAULT_UNAVAILABLE_VALUE_PLACEHOLDER.to_owned()
}

/// 10 000 records: a few MiB of JSON, one lake commit's worth of changes at the default policies.
const fn default_max_batch_records() -> usize {
    10_000
}

/// 100 ms: below the engine's default checkpoint interval, well above a fetch round trip.
const fn default_linger() -> Duration {
    Duration::from_millis(100)
}

const fn default_true() -> bool {
    true
}

/// librdkafka properties set from typed keys.
const RESERVED: [&str; 4] = [
    "group.id",
    "enable.auto.commit",
    "isolation.level",
    "bootstrap.servers",
];

impl KafkaSourceConfig {
    /// Checks the config without IO.
    pub fn validate(&self, problem: &mut impl FnMut(&str, String)) {
        if self.bootstrap_servers.trim().is_empty() {
            problem(
                "source.bootstrap_servers",
                "must name at least one broker, e.g. \"127.0.0.1:9092\"".into(),
            );
        }
        if self.topics.is_empty() {
            problem(
                "source.topics",
                "no topic; list the change-event topics, e.g. [\"dbserver1.public.orders\"]".into(),
            );
        }
        for (i, t) in self.topics.iter().enumerate() {
            if t.is_empty() || t.contains(char::is_whitespace) {
                problem(
                    &format!("source.topics[{i}]"),
                    format!("{t:?} is not a topic name"),
                );
            }
        }
        if self.max_batch_records == 0 {
            problem(
                "source.max_batch_records",
                "must be at least 1, e.g. 10000".into(),
            );
        }
        if self.unavailable_value_placeholder.is_empty() {
            problem(
                "source.unavailable_value_placeholder",
                "must not be empty".into(),
            );
        }
        for k in self.consumer.keys() {
            if RESERVED.contains(&k.as_str()) {
                problem(
                    &format!("source.consumer.\"{k}\""),
                    "is set by the source's own keys (group_id, read_committed, bootstrap_servers); remove it here".into(),
                );
            }
        }
    }

    /// The consumer group.
    pub fn group(&self, pipeline: &str) -> String {
        self.group_id
            .clone()
            .unwrap_or_else(|| format!("tidemark-{pipeline}"))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, SourceConfig};

    #[test]
    fn a_kafka_source_parses_and_validates() {
        let src = r#"
[pipeline]
name = "lake"
[source]
kind = "kafka"
bootstrap_servers = "127.0.0.1:9092"
topics = ["tm.public.orders"]
batch_linger = "50ms"
[[sinks]]
kind = "debezium_json"
path = "-"
"#;
        let c = Config::from_toml_with_env(src, Path::new("k.toml"), []).unwrap();
        let SourceConfig::Kafka(k) = &c.source else {
            panic!("a kafka source")
        };
        assert_eq!(k.group("lake"), "tidemark-lake");
        assert_eq!(k.batch_linger, std::time::Duration::from_millis(50));
        let bad = src
            .replace("topics = [\"tm.public.orders\"]", "topics = []")
            .replace(
                "batch_linger",
                "consumer = { \"group.id\" = \"x\" }\nmax_batch_records = 0\nbatch_linger",
            );
        let err = Config::from_toml_with_env(&bad, Path::new("bad.toml"), [])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("source.topics")
                && err.contains("source.max_batch_records")
                && err.contains("group.id"),
            "{err}"
        );
        assert!(Config::from_toml_with_env(
            &src.replace("batch_linger", "batch_lingr"),
            Path::new("x"),
            []
        )
        .is_err());
    }
}
