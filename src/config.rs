//! Pipeline configuration: one TOML file per pipeline, every key overridable by environment.
//!
//! ```toml
//! [pipeline]
//! name = "shop"
//!
//! [source]
//! kind = "postgres"
//! url = "postgres://tidemark@127.0.0.1:5432/shop"
//! password = { env = "TIDEMARK_PG_PASSWORD" }
//! slot = "tidemark_shop"
//! publication = "tidemark_shop"
//! tables = ["public.orders", "public.customers"]
//!
//! [[sinks]]
//! kind = "debezium_json"
//! path = "-"                  # stdout
//! ```
//!
//! # Environment overrides
//! `TIDEMARK__<PATH>` sets the key at `<PATH>`, segments separated by a double underscore and
//! matched case-insensitively: `TIDEMARK__SOURCE__SLOT=other` sets `source.slot`,
//! `TIDEMARK__SINKS__0__PATH=/tmp/out.jsonl` sets `sinks[0].path`. The value is read as a TOML
//! value when it parses as one (`true`, `42`, `"10s"`, `["a","b"]`) and as a plain string
//! otherwise. Overrides are applied before validation, so their mistakes are reported the same way.
//!
//! # Validation
//! [`Config::validate`] does no IO and collects *every* problem, each with its TOML path, the bad
//! value and what to do. Startup and `tidemark validate` both run it; connectivity checks (the slot
//! exists, `wal_level=logical`) are a separate step of the source.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tidemark_model::TableId;

/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "TIDEMARK__";

/// A whole pipeline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Identity of the pipeline.
    pub pipeline: PipelineConfig,
    /// Where changes come from.
    pub source: SourceConfig,
    /// Where changes go. At least one.
    #[serde(default)]
    pub sinks: Vec<SinkConfig>,
    /// Where acknowledged positions are kept.
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
    /// Prometheus metrics and health endpoints.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Initial and incremental snapshots (`docs/snapshots.md`).
    #[serde(default)]
    pub snapshot: crate::snapshot::SnapshotConfig,
}

/// `[pipeline]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Name of the pipeline: names the checkpoint file, labels metrics, and is Debezium's
    /// `topic.prefix` / `source.name` unless a sink overrides it. Letters, digits, `_`, `-`, `.`.
    pub name: String,
    /// Maximum bytes of decoded changes queued between the source and the sinks. When the queue is
    /// full the source stops reading the replication stream (backpressure). Default 64 MiB.
    #[serde(default = "default_max_queue_bytes")]
    pub max_queue_bytes: u64,
}

/// 64 MiB: several large transactions in flight, small next to the memory a JVM connector uses.
const fn default_max_queue_bytes() -> u64 {
    64 << 20
}

/// `[source]`, tagged by `kind`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// A PostgreSQL logical replication slot with the pgoutput plugin.
    Postgres(PostgresSourceConfig),
    /// A Delta table's Change Data Feed (docs/delta.md).
    #[cfg(feature = "delta")]
    Delta(crate::source::delta::DeltaSourceConfig),
    /// A MySQL 8.x / MariaDB 10.5+ server read as a replica (row-based binlog).
    #[cfg(feature = "mysql")]
    Mysql(crate::source::mysql::MysqlSourceConfig),
    /// Debezium-format change-event topics (docs/iceberg.md, "Kafka source").
    #[cfg(feature = "kafka")]
    Kafka(crate::source::kafka::KafkaSourceConfig),
    /// An Iceberg table's snapshots, read incrementally (docs/iceberg.md, "Iceberg source").
    #[cfg(feature = "iceberg")]
    Iceberg(crate::source::iceberg::IcebergSourceConfig),
}

impl SourceConfig {
    /// The Postgres source, if this is one (commands that talk to a replication slot).
    pub fn as_postgres(&self) -> Option<&PostgresSourceConfig> {
        #[allow(unreachable_patterns)]
        match self {
            SourceConfig::Postgres(pg) => Some(pg),
            _ => None,
        }
    }
}

/// `[source]` with `kind = "postgres"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSourceConfig {
    /// libpq-style URL: `postgres://user@host:port/dbname?sslmode=verify-full&sslrootcert=/path`.
    /// Put the password in `password`, not here.
    pub url: String,
    /// The password, from the environment or a file (never inline, never logged).
    #[serde(default)]
    pub password: Option<Secret>,
    /// Replication slot name. Default: `tidemark_<pipeline name>`.
    #[serde(default)]
    pub slot: Option<String>,
    /// Publication name. Default: `tidemark_<pipeline name>`.
    #[serde(default)]
    pub publication: Option<String>,
    /// Tables to capture, as `schema.table`. Empty: every table of the publication (which is
    /// then created `FOR ALL TABLES` if missing).
    #[serde(default)]
    pub tables: Vec<String>,
    /// Create the slot when it is missing. Default true. With false a missing slot is an error.
    #[serde(default = "default_true")]
    pub create_slot: bool,
    /// Create the publication when it is missing. Default true.
    #[serde(default = "default_true")]
    pub create_publication: bool,
    /// Drop the slot when the pipeline is deleted with `tidemark reset`. A slot Tidemark did not
    /// create is never dropped unless this is true. Default false.
    #[serde(default)]
    pub drop_slot_on_reset: bool,
    /// Ask pgoutput for the binary format of values (PG 14+). Default false: text is understood
    /// for every type, including extension types.
    #[serde(default)]
    pub binary: bool,
    /// Stream in-progress transactions (pgoutput protocol 2+, PG 14+) so a transaction larger than
    /// memory passes through; spilled to `spill_dir` until it commits. Default true.
    #[serde(default = "default_true")]
    pub streaming: bool,
    /// If the slot is held by another connection, terminate that backend (it is presumed to be a
    /// dead Tidemark process). Default false.
    #[serde(default)]
    pub terminate_stale: bool,
    /// How often a standby status update is sent even when nothing happens. Default 10 s
    /// (PostgreSQL's own `wal_receiver_status_interval`). Must be below `wal_sender_timeout / 2`.
    #[serde(default = "default_status_interval", with = "humantime_serde")]
    pub status_interval: Duration,
    /// Debezium's `database.server.name`-like logical name used in the `source.name` field.
    /// Default: the pipeline name.
    #[serde(default)]
    pub server_name: Option<String>,
}

const fn default_true() -> bool {
    true
}

/// PostgreSQL's default `wal_receiver_status_interval`.
const fn default_status_interval() -> Duration {
    Duration::from_secs(10)
}

/// A secret value: read from an environment variable or a file; `Debug` prints `***`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum Secret {
    /// The name of an environment variable holding the secret.
    Env(String),
    /// A file whose content (trailing newline trimmed) is the secret.
    File(PathBuf),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Env(name) => write!(f, "Secret::Env({name}=***)"),
            Secret::File(path) => write!(f, "Secret::File({}=***)", path.display()),
        }
    }
}

impl Secret {
    /// Reads the secret now.
    pub fn read(&self) -> Result<String, String> {
        match self {
            Secret::Env(name) => {
                std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))
            }
            Secret::File(path) => std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| format!("cannot read {}: {e}", path.display())),
        }
    }
}

/// `[[sinks]]`, tagged by `kind`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkConfig {
    /// Debezium-compatible JSON events, one per line, to a file or stdout.
    DebeziumJson(tidemark_debezium::JsonlSinkConfig),
    /// Debezium-compatible records to Kafka (docs/kafka.md).
    #[cfg(feature = "kafka")]
    // Boxed: the Kafka config is by far the largest variant (clippy::large_enum_variant).
    Kafka(Box<tidemark_kafka::KafkaSinkConfig>),
    /// Delta Lake tables (mirror or changelog) under a root directory or object store (docs/delta.md).
    #[cfg(feature = "delta")]
    Delta(tidemark_delta::DeltaSinkConfig),
    /// Apache Iceberg tables (mirror or changelog) in a SQL catalog (docs/iceberg.md).
    #[cfg(feature = "iceberg")]
    Iceberg(Box<tidemark_iceberg::IcebergSinkConfig>),
}

impl SinkConfig {
    /// The sink's name (for metrics and checkpoints).
    pub fn name(&self) -> String {
        match self {
            SinkConfig::DebeziumJson(c) => c.name.clone().unwrap_or_else(|| "debezium_json".into()),
            #[cfg(feature = "kafka")]
            SinkConfig::Kafka(c) => c.sink_name().to_owned(),
            #[cfg(feature = "delta")]
            SinkConfig::Delta(c) => c.sink_name().to_owned(),
            #[cfg(feature = "iceberg")]
            SinkConfig::Iceberg(c) => c.sink_name().to_owned(),
        }
    }
}

/// `[checkpoint]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Directory of the checkpoint files (one per pipeline). Default `.tidemark/checkpoints`.
    #[serde(default = "default_checkpoint_dir")]
    pub dir: PathBuf,
    /// How often sinks are flushed and the acknowledged position persisted. Default 1 s.
    #[serde(default = "default_checkpoint_interval", with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self {
            dir: default_checkpoint_dir(),
            interval: default_checkpoint_interval(),
        }
    }
}

fn default_checkpoint_dir() -> PathBuf {
    PathBuf::from(".tidemark/checkpoints")
}

/// Debezium's `offset.flush.interval.ms` is 60 s; we flush far more often because our flush is
/// cheap and a shorter interval means fewer duplicates after a crash.
const fn default_checkpoint_interval() -> Duration {
    Duration::from_secs(1)
}

/// `[metrics]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of the HTTP endpoint serving `/metrics`, `/healthz`, `/readyz`. Default
    /// `127.0.0.1:9187`. Set `enabled = false` to turn it off.
    #[serde(default = "default_metrics_listen")]
    pub listen: SocketAddr,
    /// Serve the endpoint. Default true.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: default_metrics_listen(),
            enabled: true,
        }
    }
}

fn default_metrics_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9187))
}

/// A configuration problem: where, what, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// TOML path of the key, e.g. `source.tables[2]`.
    pub path: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Loading failed: the file, the TOML, or validation.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config {path}: environment override {var}: {message}")]
    Env {
        path: PathBuf,
        var: String,
        message: String,
    },
    #[error("config {path} has {} problem(s):\n{}", problems.len(), problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

impl Config {
    /// Reads, applies environment overrides from the process environment, parses and validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_with_env(&text, path, std::env::vars())
    }

    /// Parses `text` (named `path` in errors), applies `env` overrides and validates.
    pub fn from_toml_with_env(
        text: &str,
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut value: toml::Value = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut overrides: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in env {
            if let Some(rest) = k.strip_prefix(ENV_PREFIX) {
                overrides.insert(rest.to_string(), v);
            }
        }
        for (key, raw) in overrides {
            apply_override(&mut value, &key, &raw).map_err(|message| ConfigError::Env {
                path: path.to_path_buf(),
                var: format!("{ENV_PREFIX}{key}"),
                message,
            })?;
        }
        let config: Config = value
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        let problems = config.validate();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                problems,
            })
        }
    }

    /// Checks everything that can be checked without IO; returns every problem found.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut problem = |path: &str, message: String| {
            problems.push(Problem {
                path: path.to_string(),
                message,
            })
        };
        let name = &self.pipeline.name;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            problem(
                "pipeline.name",
                format!("{name:?} must be non-empty and use only letters, digits, '_', '-', '.'"),
            );
        }
        if self.pipeline.max_queue_bytes < 1 << 20 {
            problem(
                "pipeline.max_queue_bytes",
                format!(
                    "{} is below 1 MiB; one large row could not pass",
                    self.pipeline.max_queue_bytes
                ),
            );
        }
        match &self.source {
            SourceConfig::Postgres(pg) => pg.validate(&mut problem),
            #[cfg(feature = "delta")]
            SourceConfig::Delta(d) => d.validate(&mut problem),
            #[cfg(feature = "mysql")]
            SourceConfig::Mysql(m) => m.validate(&mut problem),
            #[cfg(feature = "kafka")]
            SourceConfig::Kafka(k) => k.validate(&mut problem),
            #[cfg(feature = "iceberg")]
            SourceConfig::Iceberg(i) => i.validate(&mut problem),
        }
        if self.sinks.is_empty() {
            problem("sinks", "no sink configured; add a [[sinks]] table".into());
        }
        let mut names = std::collections::HashSet::new();
        for (i, sink) in self.sinks.iter().enumerate() {
            if !names.insert(sink.name()) {
                problem(
                    &format!("sinks[{i}].name"),
                    format!(
                        "{:?} is used by two sinks; give each a distinct name",
                        sink.name()
                    ),
                );
            }
            match sink {
                SinkConfig::DebeziumJson(c) => {
                    for p in c.validate() {
                        problem(&format!("sinks[{i}].{}", p.0), p.1);
                    }
                }
                #[cfg(feature = "kafka")]
                SinkConfig::Kafka(c) => {
                    for p in c.validate() {
                        problem(&format!("sinks[{i}].{}", p.0), p.1);
                    }
                }
                #[cfg(feature = "delta")]
                SinkConfig::Delta(c) => {
                    for p in c.validate() {
                        problem(&format!("sinks[{i}].{}", p.0), p.1);
                    }
                }
                #[cfg(feature = "iceberg")]
                SinkConfig::Iceberg(c) => {
                    for p in c.validate() {
                        problem(&format!("sinks[{i}].{}", p.0), p.1);
                    }
                }
            }
        }
        self.snapshot.validate(&mut problem);
        if self.checkpoint.interval.is_zero() {
            problem(
                "checkpoint.interval",
                "must be greater than zero, e.g. \"1s\"".into(),
            );
        }
        problems
    }

    /// The source's server name as Debezium would call it (`topic.prefix`).
    pub fn server_name(&self) -> &str {
        match &self.source {
            SourceConfig::Postgres(pg) => pg.server_name.as_deref().unwrap_or(&self.pipeline.name),
            #[cfg(feature = "delta")]
            SourceConfig::Delta(d) => d.server_name.as_deref().unwrap_or(&self.pipeline.name),
            #[cfg(feature = "mysql")]
            SourceConfig::Mysql(m) => m.server_name.as_deref().unwrap_or(&self.pipeline.name),
            #[cfg(feature = "kafka")]
            SourceConfig::Kafka(k) => k.server_name.as_deref().unwrap_or(&self.pipeline.name),
            #[cfg(feature = "iceberg")]
            SourceConfig::Iceberg(i) => i.server_name.as_deref().unwrap_or(&self.pipeline.name),
        }
    }
}

impl PostgresSourceConfig {
    fn validate(&self, problem: &mut impl FnMut(&str, String)) {
        if !(self.url.starts_with("postgres://") || self.url.starts_with("postgresql://")) {
            problem(
                "source.url",
                format!(
                    "{:?} is not a postgres:// URL, e.g. \"postgres://user@host:5432/db\"",
                    self.url
                ),
            );
        } else if url_has_password(&self.url) {
            problem(
                "source.url",
                "contains a password; move it to source.password = { env = \"VAR\" } so it is never logged"
                    .into(),
            );
        }
        for (key, v) in [
            ("source.slot", &self.slot),
            ("source.publication", &self.publication),
        ] {
            if let Some(v) = v {
                if v.is_empty()
                    || v.len() > 63
                    || !v
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                {
                    problem(
                        key,
                        format!("{v:?} must be 1-63 characters of a-z, 0-9 and '_'"),
                    );
                }
            }
        }
        for (i, t) in self.tables.iter().enumerate() {
            if parse_table(t).is_none() {
                problem(
                    &format!("source.tables[{i}]"),
                    format!("{t:?} is not \"schema.table\" (e.g. \"public.orders\")"),
                );
            }
        }
        if self.status_interval.is_zero() || self.status_interval > Duration::from_secs(30) {
            problem(
                "source.status_interval",
                format!(
                    "{:?} must be between 1ms and 30s (the server drops us after wal_sender_timeout, 60s by default)",
                    self.status_interval
                ),
            );
        }
    }

    /// The slot name, defaulted from the pipeline name.
    pub fn slot_name(&self, pipeline: &str) -> String {
        self.slot
            .clone()
            .unwrap_or_else(|| default_object_name(pipeline))
    }

    /// The publication name, defaulted from the pipeline name.
    pub fn publication_name(&self, pipeline: &str) -> String {
        self.publication
            .clone()
            .unwrap_or_else(|| default_object_name(pipeline))
    }

    /// The configured tables, parsed (validated already).
    pub fn table_ids(&self) -> Vec<TableId> {
        self.tables.iter().filter_map(|t| parse_table(t)).collect()
    }
}

fn default_object_name(pipeline: &str) -> String {
    let cleaned: String = pipeline
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let mut name = format!("tidemark_{cleaned}");
    name.truncate(63);
    name
}

/// `schema.table` -> TableId. A quoted form is not supported; names are used as written.
pub fn parse_table(s: &str) -> Option<TableId> {
    let (ns, name) = s.split_once('.')?;
    if ns.is_empty() || name.is_empty() || name.contains('.') {
        return None;
    }
    Some(TableId::new(ns, name))
}

fn url_has_password(url: &str) -> bool {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    authority
        .rsplit_once('@')
        .map(|(userinfo, _)| userinfo.contains(':'))
        .unwrap_or(false)
}

/// Sets the value at `key` (`A__B__0__C`) in `root`.
fn apply_override(root: &mut toml::Value, key: &str, raw: &str) -> Result<(), String> {
    let segments: Vec<String> = key.split("__").map(|s| s.to_ascii_lowercase()).collect();
    if segments.iter().any(|s| s.is_empty()) {
        return Err("empty path segment (use exactly two underscores between keys)".into());
    }
    let new_value = parse_env_value(raw);
    let mut cur = root;
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        cur = match cur {
            toml::Value::Table(t) => {
                if last {
                    t.insert(seg.clone(), new_value);
                    return Ok(());
                }
                t.entry(seg.clone())
                    .or_insert_with(|| toml::Value::Table(Default::default()))
            }
            toml::Value::Array(a) => {
                let idx: usize = seg
                    .parse()
                    .map_err(|_| format!("{seg:?} is not an array index"))?;
                let len = a.len();
                let slot = a
                    .get_mut(idx)
                    .ok_or_else(|| format!("index {idx} is out of range (the array has {len})"))?;
                if last {
                    *slot = new_value;
                    return Ok(());
                }
                slot
            }
            _ => return Err(format!("{seg:?}: the key above it is not a table or array")),
        };
    }
    Ok(())
}

fn parse_env_value(raw: &str) -> toml::Value {
    // `x = <raw>` parses only if raw is a TOML literal; otherwise it is a plain string.
    match toml::from_str::<toml::Table>(&format!("x = {raw}")) {
        Ok(mut t) => t
            .remove("x")
            .unwrap_or_else(|| toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[pipeline]
name = "shop"
[source]
kind = "postgres"
url = "postgres://tidemark@127.0.0.1:5432/shop"
tables = ["public.orders"]
[[sinks]]
kind = "debezium_json"
path = "-"
"#;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_toml_with_env(
            text,
            Path::new("test.toml"),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn minimal_config_loads_with_defaults() {
        let c = load(MINIMAL, &[]).expect("valid");
        let pg = c.source.as_postgres().expect("a postgres source");
        assert_eq!(pg.slot_name("shop"), "tidemark_shop");
        assert!(pg.create_slot && pg.streaming && !pg.binary);
        assert_eq!(c.checkpoint.interval, Duration::from_secs(1));
    }

    #[test]
    fn env_overrides_reach_nested_keys_and_arrays() {
        let c = load(
            MINIMAL,
            &[
                ("TIDEMARK__SOURCE__SLOT", "other_slot"),
                ("TIDEMARK__SOURCE__BINARY", "true"),
                ("TIDEMARK__SINKS__0__PATH", "/tmp/x.jsonl"),
                ("UNRELATED", "1"),
            ],
        )
        .expect("valid");
        let pg = c.source.as_postgres().expect("a postgres source");
        assert_eq!(pg.slot.as_deref(), Some("other_slot"));
        assert!(pg.binary);
        let SinkConfig::DebeziumJson(s) = &c.sinks[0] else {
            panic!("sinks[0] is the debezium_json sink")
        };
        assert_eq!(s.path, "/tmp/x.jsonl");
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let err = load(&MINIMAL.replace("tables =", "tabels ="), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("tabels"), "{err}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = MINIMAL
            .replace("name = \"shop\"", "name = \"bad name\"")
            .replace("\"public.orders\"", "\"orders\"")
            .replace("postgres://tidemark@", "postgres://tidemark:secret@");
        let Err(ConfigError::Invalid { problems, .. }) = load(&text, &[]) else {
            panic!("expected validation problems");
        };
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            ["pipeline.name", "source.url", "source.tables[0]"],
            "{problems:?}"
        );
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::Env("PGPASSWORD".into());
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(format!("{s:?}").contains("***"));
    }

    #[test]
    fn bad_env_index_is_an_error_naming_the_variable() {
        let err = load(MINIMAL, &[("TIDEMARK__SINKS__5__PATH", "x")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("TIDEMARK__SINKS__5__PATH") && err.contains("out of range"),
            "{err}"
        );
    }
}
