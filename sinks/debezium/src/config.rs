//! Configuration: the encoder's options (Debezium connector properties with Debezium's defaults)
//! and the JSON-lines sink's TOML table.
//!
//! Every field names the Debezium property it mirrors, so a user migrating a connector config can
//! map it one to one. [`JsonlSinkConfig::validate`] is pure (no IO) and reports every problem.

use serde::Deserialize;

/// Debezium's `decimal.handling.mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecimalHandling {
    /// Connect `Decimal`: base64 of the big-endian two's complement unscaled value; an
    /// unconstrained `numeric` becomes `{"scale":s,"value":base64}` (Debezium's default).
    #[default]
    Precise,
    /// The plain decimal string (`"12.34"`); NaN/±Infinity as `NAN`/`POSITIVE_INFINITY`/`NEGATIVE_INFINITY`.
    String,
    /// A JSON double (lossy).
    Double,
}

/// Debezium's `time.precision.mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimePrecision {
    /// `time(p)`/`timestamp(p)`: milliseconds for p ≤ 3, microseconds otherwise (Debezium's default).
    #[default]
    Adaptive,
    /// Like `Adaptive`, but `time` is always microseconds.
    AdaptiveTimeMicroseconds,
    /// Kafka Connect's own types: milliseconds everywhere (loses sub-millisecond digits).
    Connect,
}

/// Which Debezium connector's output to reproduce.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Connector {
    /// `io.debezium.connector.postgresql.PostgresConnector` (`"connector":"postgresql"`).
    #[default]
    Postgres,
    /// `io.debezium.connector.mysql.MySqlConnector` (`"connector":"mysql"`).
    Mysql,
    /// `io.debezium.connector.mariadb.MariaDbConnector` (`"connector":"mariadb"`).
    Mariadb,
}

/// Debezium's `bigint.unsigned.handling.mode` (MySQL/MariaDB).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BigintUnsignedHandling {
    /// A Java `long`: values above 2^63-1 wrap negative (Debezium's default).
    #[default]
    Long,
    /// A Connect `Decimal` with scale 0.
    Precise,
}

impl Connector {
    /// The `source.connector` value.
    pub fn name(self) -> &'static str {
        match self {
            Connector::Postgres => "postgresql",
            Connector::Mysql => "mysql",
            Connector::Mariadb => "mariadb",
        }
    }
}

/// Debezium's default `unavailable.value.placeholder`.
pub const DEFAULT_UNAVAILABLE_VALUE_PLACEHOLDER: &str = "__debezium_unavailable_value";

/// Options of [`crate::DebeziumEncoder`].
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncoderOptions {
    /// Debezium `topic.prefix`: first part of every topic and `source.name`.
    pub server_name: String,
    /// `source.db`: the database name.
    pub database: String,
    /// Which connector's envelope to produce. Default: postgres.
    #[serde(default)]
    pub connector: Connector,
    /// Debezium `decimal.handling.mode`. Default: precise.
    #[serde(default)]
    pub decimal_handling_mode: DecimalHandling,
    /// Debezium `time.precision.mode`. Default: adaptive.
    #[serde(default)]
    pub time_precision_mode: TimePrecision,
    /// Debezium `bigint.unsigned.handling.mode` (MySQL/MariaDB `BIGINT UNSIGNED`). Default: long.
    #[serde(default)]
    pub bigint_unsigned_handling_mode: BigintUnsignedHandling,
    /// Wrap key and value in `{"schema":..,"payload":..}` as Kafka Connect's JsonConverter does
    /// with `schemas.enable=true`. Default: false.
    #[serde(default)]
    pub schemas_enable: bool,
    /// Opt-in: where Debezium loses or garbles a value (NaN/±Infinity numerics, infinite dates
    /// and timestamps, `name` columns, multi-dimensional arrays) emit the true value instead
    /// (see the crate doc, "Lossless mode"). Default: false (byte-compatible with Debezium).
    #[serde(default)]
    pub lossless: bool,
    /// Debezium `tombstones.on.delete`: a record with a null value after every delete.
    /// Default: true.
    #[serde(default = "default_true")]
    pub tombstones_on_delete: bool,
    /// Debezium `unavailable.value.placeholder`: written for unchanged TOAST values.
    #[serde(default = "default_placeholder")]
    pub unavailable_value_placeholder: String,
    /// Emit truncate events (op `t`, null key). Default: false, as Debezium's default
    /// `skipped.operations=t`; set true for `skipped.operations=none`.
    #[serde(default)]
    pub emit_truncate: bool,
    /// Debezium `provide.transaction.metadata`: a BEGIN and an END record per transaction on
    /// `transaction_topic` and a `transaction` block in every event. Default: false.
    #[serde(default)]
    pub provide_transaction_metadata: bool,
    /// Topic of the BEGIN/END records. Default: `<server_name>.transaction` (Debezium's
    /// `topic.transaction`).
    #[serde(default)]
    pub transaction_topic: Option<String>,
}

impl EncoderOptions {
    /// Debezium's defaults for a server name and database.
    pub fn new(server_name: impl Into<String>, database: impl Into<String>) -> Self {
        EncoderOptions {
            server_name: server_name.into(),
            database: database.into(),
            connector: Connector::Postgres,
            decimal_handling_mode: DecimalHandling::Precise,
            time_precision_mode: TimePrecision::Adaptive,
            bigint_unsigned_handling_mode: BigintUnsignedHandling::Long,
            schemas_enable: false,
            lossless: false,
            tombstones_on_delete: true,
            unavailable_value_placeholder: DEFAULT_UNAVAILABLE_VALUE_PLACEHOLDER.to_owned(),
            emit_truncate: false,
            provide_transaction_metadata: false,
            transaction_topic: None,
        }
    }
}

const fn default_true() -> bool {
    true
}

fn default_placeholder() -> String {
    DEFAULT_UNAVAILABLE_VALUE_PLACEHOLDER.to_owned()
}

/// The JSON-lines sink (`[[sinks]] type = "jsonl"`): one Debezium record per line, to a file or
/// stdout. Meant for inspection, tests and `tidemark compare` against Debezium captures.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonlSinkConfig {
    /// The sink's name in logs, metrics and `status`. Default: `jsonl`.
    #[serde(default)]
    pub name: Option<String>,
    /// Output file, appended to (created if missing); `-` writes to stdout.
    pub path: String,
    /// fsync the file on every flush, so an acknowledged position survives a power loss.
    /// Default: true. Ignored for stdout.
    #[serde(default = "default_true")]
    pub fsync: bool,
    /// Debezium `decimal.handling.mode`: `precise` (default), `string` or `double`.
    #[serde(default)]
    pub decimal_handling_mode: DecimalHandling,
    /// Debezium `time.precision.mode`: `adaptive` (default), `adaptive_time_microseconds`
    /// or `connect`.
    #[serde(default)]
    pub time_precision_mode: TimePrecision,
    /// Debezium `bigint.unsigned.handling.mode` (MySQL/MariaDB). Default: long.
    #[serde(default)]
    pub bigint_unsigned_handling_mode: BigintUnsignedHandling,
    /// Include the Kafka Connect `schema` part (JsonConverter `schemas.enable=true`).
    /// Default: false.
    #[serde(default)]
    pub schemas_enable: bool,
    /// Emit the true value where Debezium loses it (see the crate doc). Default: false.
    #[serde(default)]
    pub lossless: bool,
    /// Debezium `tombstones.on.delete`: write a null-value record after each delete.
    /// Default: true.
    #[serde(default = "default_true")]
    pub tombstones_on_delete: bool,
    /// Write each line as `{"topic":..,"key":..,"value":..}` (the shape of the Debezium capture
    /// harness, which `tidemark compare` reads). When false, each line is the bare value.
    /// Default: true.
    #[serde(default = "default_true")]
    pub include_topic: bool,
    /// Write truncate events (op `t`). Default: false, like Debezium's default
    /// `skipped.operations=t`.
    #[serde(default)]
    pub emit_truncate: bool,
    /// Debezium `provide.transaction.metadata`: a BEGIN and an END line per transaction (topic
    /// `transaction_topic`) and a `transaction` block in every event, as the Kafka sink writes
    /// them. Default: false.
    #[serde(default)]
    pub provide_transaction_metadata: bool,
    /// Topic of the BEGIN/END lines. Default: `<server_name>.transaction` (Debezium's
    /// `topic.transaction`).
    #[serde(default)]
    pub transaction_topic: Option<String>,
}

impl JsonlSinkConfig {
    /// A config writing to `path` with every default.
    pub fn new(path: impl Into<String>) -> Self {
        JsonlSinkConfig {
            name: None,
            path: path.into(),
            fsync: true,
            decimal_handling_mode: DecimalHandling::Precise,
            time_precision_mode: TimePrecision::Adaptive,
            bigint_unsigned_handling_mode: BigintUnsignedHandling::Long,
            schemas_enable: false,
            lossless: false,
            tombstones_on_delete: true,
            include_topic: true,
            emit_truncate: false,
            provide_transaction_metadata: false,
            transaction_topic: None,
        }
    }

    /// The sink's name (`jsonl` unless configured).
    pub fn sink_name(&self) -> &str {
        self.name.as_deref().unwrap_or("jsonl")
    }

    /// Checks the config without IO; returns `(key, message)` for every problem.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if self.path.trim().is_empty() {
            problems.push((
                "path".to_owned(),
                "is empty; give a file path or \"-\" for stdout".to_owned(),
            ));
        } else if self.path.ends_with('/') {
            problems.push((
                "path".to_owned(),
                format!("{:?} names a directory; give a file path", self.path),
            ));
        }
        if let Some(name) = &self.name {
            if name.trim().is_empty() {
                problems.push((
                    "name".to_owned(),
                    "is empty; remove it or give a name".to_owned(),
                ));
            }
        }
        problems
    }

    /// The encoder options of this sink for a source's server name and database.
    pub fn encoder_options(&self, server_name: &str, database: &str) -> EncoderOptions {
        EncoderOptions {
            decimal_handling_mode: self.decimal_handling_mode,
            time_precision_mode: self.time_precision_mode,
            bigint_unsigned_handling_mode: self.bigint_unsigned_handling_mode,
            schemas_enable: self.schemas_enable,
            lossless: self.lossless,
            tombstones_on_delete: self.tombstones_on_delete,
            emit_truncate: self.emit_truncate,
            provide_transaction_metadata: self.provide_transaction_metadata,
            transaction_topic: self.transaction_topic.clone(),
            ..EncoderOptions::new(server_name, database)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_snake_case_and_defaults() {
        let c: JsonlSinkConfig = serde_json::from_str(
            r#"{"path":"/tmp/x.jsonl","decimal_handling_mode":"string",
                "time_precision_mode":"adaptive_time_microseconds"}"#,
        )
        .unwrap();
        assert_eq!(c.decimal_handling_mode, DecimalHandling::String);
        assert_eq!(
            c.time_precision_mode,
            TimePrecision::AdaptiveTimeMicroseconds
        );
        assert!(c.fsync && c.tombstones_on_delete && c.include_topic);
        assert!(!c.lossless && !c.schemas_enable);
        assert_eq!(c.sink_name(), "jsonl");
        assert!(c.validate().is_empty());
    }

    #[test]
    fn rejects_unknown_keys_and_reports_problems() {
        assert!(serde_json::from_str::<JsonlSinkConfig>(r#"{"path":"x","fsynk":true}"#).is_err());
        let mut c = JsonlSinkConfig::new(" ");
        c.name = Some(String::new());
        let p = c.validate();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].0, "path");
        assert_eq!(p[1].0, "name");
    }

    #[test]
    fn transaction_metadata_reaches_the_encoder() {
        let c: JsonlSinkConfig = serde_json::from_str(
            r#"{"path":"x","provide_transaction_metadata":true,"transaction_topic":"tm.tx"}"#,
        )
        .unwrap();
        let o = c.encoder_options("tm", "db");
        assert!(o.provide_transaction_metadata);
        assert_eq!(o.transaction_topic.as_deref(), Some("tm.tx"));
        let d = JsonlSinkConfig::new("x").encoder_options("tm", "db");
        assert!(!d.provide_transaction_metadata && d.transaction_topic.is_none());
    }

    #[test]
    fn encoder_options_defaults() {
        let o: EncoderOptions =
            serde_json::from_str(r#"{"server_name":"tm","database":"db"}"#).unwrap();
        assert_eq!(o, EncoderOptions::new("tm", "db"));
        assert_eq!(
            o.unavailable_value_placeholder,
            "__debezium_unavailable_value"
        );
    }
}
