//! `[source]` with `kind = "iceberg"`: follow an Iceberg table's snapshots as change events.

use std::time::Duration;

use serde::Deserialize;
use tidemark_iceberg::config::StorageConfig;
use tidemark_iceberg::CatalogConfig;
use tidemark_model::TableId;

/// An Iceberg table's snapshots as a source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IcebergSourceConfig {
    /// The catalog holding the table: the same block as the Iceberg sink's (`kind = "sql"`:
    /// SQLite or PostgreSQL in the JDBC layout; `kind = "rest"`: an Iceberg REST catalog).
    pub catalog: CatalogConfig,
    /// S3-compatible storage of the table's files (as the sink's `storage`).
    #[serde(default)]
    pub storage: StorageConfig,
    /// The table in the catalog, `namespace.name` (e.g. `"lake.orders"`).
    pub table: String,
    /// The `namespace.table` the changes are reported as (topics, sink tables).
    /// Default: the Iceberg identifier (`table`).
    #[serde(default)]
    pub report_as: Option<String>,
    /// First snapshot whose changes are read when there is no checkpoint (its own changes
    /// included). Default: the table's first snapshot.
    #[serde(default)]
    pub starting_snapshot_id: Option<i64>,
    /// Instead of `starting_snapshot_id`: the first snapshot committed at or after this
    /// RFC 3339 time (`2026-01-31T12:00:00Z`).
    #[serde(default)]
    pub starting_timestamp: Option<String>,
    /// How often the catalog is asked for new snapshots. Default 1 s.
    #[serde(default = "default_poll_interval", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// The key that pairs a snapshot's deleted and added rows into updates, and the
    /// Debezium message key. Default: the table's identifier fields (Tidemark's mirror
    /// tables set them from the primary key).
    #[serde(default)]
    pub key_columns: Vec<String>,
    /// Columns not passed on (e.g. `_position` of a changelog table). Default: none.
    #[serde(default)]
    pub exclude_columns: Vec<String>,
    /// Debezium's `topic.prefix` / `source.name`. Default: the pipeline name.
    #[serde(default)]
    pub server_name: Option<String>,
}

/// One second: a snapshot is visible as soon as the catalog pointer moved.
const fn default_poll_interval() -> Duration {
    Duration::from_secs(1)
}

/// Splits `namespace.name` at its last dot.
pub fn split_ident(s: &str) -> Option<(&str, &str)> {
    let (ns, name) = s.rsplit_once('.')?;
    (!ns.is_empty() && !name.is_empty()).then_some((ns, name))
}

impl IcebergSourceConfig {
    /// Checks the config without IO.
    pub fn validate(&self, problem: &mut impl FnMut(&str, String)) {
        for (key, msg) in self.catalog.validate("source.catalog") {
            problem(&key, msg);
        }
        if split_ident(&self.table).is_none() {
            problem(
                "source.table",
                format!(
                    "{:?} is not \"namespace.name\" (e.g. \"lake.orders\")",
                    self.table
                ),
            );
        }
        if let Some(t) = &self.report_as {
            if crate::config::parse_table(t).is_none() {
                problem(
                    "source.report_as",
                    format!("{t:?} is not \"namespace.table\" (e.g. \"lake.orders\")"),
                );
            }
        }
        if self.starting_snapshot_id.is_some() && self.starting_timestamp.is_some() {
            problem(
                "source.starting_timestamp",
                "set either starting_snapshot_id or starting_timestamp, not both".into(),
            );
        }
        if let Some(ts) = &self.starting_timestamp {
            if parse_timestamp_ms(ts).is_none() {
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

    /// The table's namespace and name in the catalog.
    pub fn ident(&self) -> tidemark_iceberg::TableIdent {
        let (namespace, name) = split_ident(&self.table).unwrap_or(("default", &self.table));
        tidemark_iceberg::TableIdent {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    /// The table id changes are reported under.
    pub fn table_id(&self) -> TableId {
        if let Some(t) = self
            .report_as
            .as_deref()
            .and_then(crate::config::parse_table)
        {
            return t;
        }
        let i = self.ident();
        TableId::new(i.namespace, i.name)
    }

    /// `starting_timestamp` in ms since the epoch.
    pub fn starting_timestamp_ms(&self) -> Option<i64> {
        self.starting_timestamp
            .as_deref()
            .and_then(parse_timestamp_ms)
    }
}

/// An RFC 3339 UTC time (`2026-01-31T12:00:00Z`, fractions allowed) in ms since the epoch.
fn parse_timestamp_ms(ts: &str) -> Option<i64> {
    let t = humantime_serde::re::humantime::parse_rfc3339_weak(ts).ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_millis()).ok()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, SourceConfig};

    #[test]
    fn an_iceberg_source_validates() {
        let src = r#"
[pipeline]
name = "back"
[source]
kind = "iceberg"
table = "lake.orders"
catalog = { kind = "sql", uri = "sqlite:///var/lib/tidemark/catalog.db", warehouse = "/var/lib/tidemark/warehouse" }
starting_timestamp = "2026-01-31T12:00:00Z"
[[sinks]]
kind = "debezium_json"
path = "-"
"#;
        let c = Config::from_toml_with_env(src, Path::new("back.toml"), []).unwrap();
        let SourceConfig::Iceberg(i) = &c.source else {
            panic!("an iceberg source")
        };
        assert_eq!(i.table_id().to_string(), "lake.orders");
        assert_eq!(i.ident().name, "orders");
        assert_eq!(i.starting_timestamp_ms(), Some(1_769_860_800_000));
        let bad = src
            .replace("table = \"lake.orders\"", "table = \"orders\"")
            .replace(
                "starting_timestamp = \"2026-01-31T12:00:00Z\"",
                "starting_timestamp = \"yesterday\"\nstarting_snapshot_id = 3",
            )
            .replace("sqlite:///var", "mysql://var");
        let err = Config::from_toml_with_env(&bad, Path::new("bad.toml"), [])
            .unwrap_err()
            .to_string();
        for key in [
            "source.table",
            "source.starting_timestamp",
            "source.catalog.uri",
        ] {
            assert!(err.contains(key), "{key}: {err}");
        }
        let renamed = src.replace(
            "table = \"lake.orders\"",
            "table = \"lake.orders\"\nreport_as = \"public.orders\"",
        );
        let c = Config::from_toml_with_env(&renamed, Path::new("x.toml"), []).unwrap();
        let SourceConfig::Iceberg(i) = &c.source else {
            panic!("an iceberg source")
        };
        assert_eq!(i.table_id().to_string(), "public.orders");
        assert!(Config::from_toml_with_env(
            &src.replace("table = ", "tabel = "),
            Path::new("x"),
            []
        )
        .is_err());
    }
}
