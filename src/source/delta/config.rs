//! `[source]` with `kind = "delta"`: follow a Delta table's Change Data Feed.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use tidemark_model::TableId;

/// A Delta table's Change Data Feed as a source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeltaSourceConfig {
    /// The table: a local directory, `file://` or `s3://` URI (S3 needs the `delta-s3` build).
    pub uri: String,
    /// The `namespace.table` the changes are reported as (topics, Delta sink paths).
    /// Default: `delta.<last path segment of uri>`.
    #[serde(default)]
    pub table: Option<String>,
    /// First table version to read when there is no checkpoint. Default 0 (the whole feed;
    /// the table must have had `delta.enableChangeDataFeed = true` from that version on).
    #[serde(default)]
    pub starting_version: Option<u64>,
    /// Instead of `starting_version`: the first version committed at or after this RFC 3339
    /// time (`2026-01-31T12:00:00Z`).
    #[serde(default)]
    pub starting_timestamp: Option<String>,
    /// How often the table is checked for new versions. Default 1 s.
    #[serde(default = "default_poll_interval", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// The primary key of the table (Delta has none): the Debezium message key, and the key a
    /// downstream mirror merges by. Default: none.
    #[serde(default)]
    pub key_columns: Vec<String>,
    /// Columns not passed on (e.g. `_position`, `_markers` of a table written by Tidemark's own
    /// Delta sink). Default: none.
    #[serde(default)]
    pub exclude_columns: Vec<String>,
    /// Object store options passed to delta-rs (see the Delta sink's `storage_options`).
    #[serde(default)]
    pub storage_options: BTreeMap<String, String>,
    /// Debezium's `topic.prefix` / `source.name`. Default: the pipeline name.
    #[serde(default)]
    pub server_name: Option<String>,
}

/// One second: a new Delta version is visible to readers as soon as its commit file exists.
const fn default_poll_interval() -> Duration {
    Duration::from_secs(1)
}

impl DeltaSourceConfig {
    /// Checks the config without IO.
    pub fn validate(&self, problem: &mut impl FnMut(&str, String)) {
        if let Err(m) = tidemark_delta::writer::root_url(&self.uri) {
            problem("source.uri", m);
        }
        if let Some(t) = &self.table {
            if crate::config::parse_table(t).is_none() {
                problem(
                    "source.table",
                    format!("{t:?} is not \"namespace.table\" (e.g. \"lake.orders\")"),
                );
            }
        }
        if self.starting_version.is_some() && self.starting_timestamp.is_some() {
            problem(
                "source.starting_timestamp",
                "set either starting_version or starting_timestamp, not both".into(),
            );
        }
        if let Some(ts) = &self.starting_timestamp {
            if tidemark_delta::chrono::DateTime::parse_from_rfc3339(ts).is_err() {
                problem(
                    "source.starting_timestamp",
                    format!("{ts:?} is not an RFC 3339 time such as \"2026-01-31T12:00:00Z\""),
                );
            }
        }
        if self.poll_interval.is_zero() {
            problem(
                "source.poll_interval",
                "must be greater than zero, e.g. \"1s\"".into(),
            );
        }
    }

    /// The table id changes are reported under.
    pub fn table_id(&self) -> TableId {
        if let Some(t) = self.table.as_deref().and_then(crate::config::parse_table) {
            return t;
        }
        let name = self
            .uri
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or("table");
        TableId::new("delta", name)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, SinkConfig, SourceConfig};

    #[test]
    fn the_delta_example_and_a_delta_source_validate() {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples/delta.toml"),
        )
        .unwrap();
        let c = Config::from_toml_with_env(&text, Path::new("delta.toml"), []).unwrap();
        assert!(matches!(c.sinks[1], SinkConfig::Delta(_)));
        let src = r#"
[pipeline]
name = "back"
[source]
kind = "delta"
uri = "/data/lake/mirror/public/orders"
key_columns = ["id"]
starting_timestamp = "2026-01-31T12:00:00Z"
[[sinks]]
kind = "debezium_json"
path = "-"
"#;
        let c = Config::from_toml_with_env(src, Path::new("back.toml"), []).unwrap();
        let SourceConfig::Delta(d) = &c.source else {
            panic!("a delta source")
        };
        assert_eq!(d.table_id().to_string(), "delta.orders");
        let bad = src.replace("uri = \"/data", "uri = \"s3:/data").replace(
            "starting_timestamp = \"2026-01-31T12:00:00Z\"",
            "starting_timestamp = \"yesterday\"\nstarting_version = 3",
        );
        let err = Config::from_toml_with_env(&bad, Path::new("bad.toml"), [])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("source.uri") && err.contains("source.starting_timestamp"),
            "{err}"
        );
        assert!(
            Config::from_toml_with_env(&src.replace("poll_interval", "x"), Path::new("x"), [])
                .is_ok()
        );
        assert!(Config::from_toml_with_env(
            &src.replace("key_columns", "key_colums"),
            Path::new("x"),
            []
        )
        .is_err());
    }
}
