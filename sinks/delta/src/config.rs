//! The Delta sink's TOML table (`[[sinks]] kind = "delta"`): where tables live, the mode of
//! each table, the flush policy and table maintenance.
//!
//! [`DeltaSinkConfig::validate`] is pure (no IO) and reports every problem with its key; the
//! pipeline prefixes `sinks[i].`. Defaults are named functions that say where the number comes
//! from.
//!
//! ```toml
//! [[sinks]]
//! kind = "delta"
//! root = "/data/lake"             # or "s3://bucket/prefix"
//! mode = "mirror"                 # default for every table
//! flush = { max_rows = 100000, max_bytes = 67108864, interval = "10s" }
//! maintenance = { checkpoint_interval = 100, optimize_every_commits = 50, vacuum_retention = "168h" }
//! storage_options = { AWS_ENDPOINT_URL = "http://127.0.0.1:9000", AWS_ALLOW_HTTP = "true" }
//!
//! [sinks.tables."public.orders_audit"]
//! mode = "changelog"
//! [sinks.tables."public.events"]
//! key_columns = ["event_id"]      # a table without a primary key, mirrored by these columns
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use tidemark_model::TableId;

/// How a source table is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableMode {
    /// The Delta table holds the current rows of the source table: one MERGE by primary key per
    /// flush; Change Data Feed on, so Delta's own `table_changes` records every change.
    #[default]
    Mirror,
    /// An append-only table of every change with `_change_type`, `_position`, `_txid` and
    /// `_commit_ts` (the shape of Delta's CDF).
    Changelog,
}

impl TableMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TableMode::Mirror => "mirror",
            TableMode::Changelog => "changelog",
        }
    }
}

/// `[sinks.tables."schema.table"]`: settings of one source table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeltaTableConfig {
    /// This table's mode; default: the sink's `mode`.
    #[serde(default)]
    pub mode: Option<TableMode>,
    /// Mirror mode: the columns that identify a row, for a table without a primary key (or to
    /// override it). They must be unique and non-null in the source, or the mirror is wrong.
    #[serde(default)]
    pub key_columns: Vec<String>,
    /// Where the Delta table lives, relative to `root` (or an absolute URI).
    /// Default: `<namespace>/<table>` under `root`.
    #[serde(default)]
    pub path: Option<String>,
}

/// `flush`: when buffered changes are committed. Whichever limit is reached first; only whole
/// source transactions go into a commit.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlushConfig {
    /// Commit when this many change rows are buffered. Default 100 000.
    #[serde(default = "default_max_rows")]
    pub max_rows: usize,
    /// Commit when the buffered changes take this many bytes of memory. Default 64 MiB.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    /// Commit buffered changes at the latest this long after the oldest arrived. Default 10 s.
    /// Lower it for fresher tables, raise it for fewer, larger files.
    #[serde(default = "default_flush_interval", with = "humantime_serde")]
    pub interval: Duration,
}

/// A MERGE rewrites the files it touches; 100k rows per commit keeps a commit a few seconds at
/// most on this machine's benchmarks (docs/benchmarks.md) while making files of useful size.
const fn default_max_rows() -> usize {
    100_000
}

/// Same budget as the pipeline's queue (64 MiB).
const fn default_max_bytes() -> usize {
    64 << 20
}

/// Databricks' Auto Loader-like default latency: one table version per table per 10 s at most,
/// 360 versions an hour under steady load.
const fn default_flush_interval() -> Duration {
    Duration::from_secs(10)
}

impl Default for FlushConfig {
    fn default() -> Self {
        FlushConfig {
            max_rows: default_max_rows(),
            max_bytes: default_max_bytes(),
            interval: default_flush_interval(),
        }
    }
}

/// `maintenance`: keeping long runs from drowning in small files and log entries.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceConfig {
    /// Write a Delta checkpoint every this many commits (table property
    /// `delta.checkpointInterval`). Default 100, the Delta protocol's default.
    #[serde(default = "default_checkpoint_interval")]
    pub checkpoint_interval: u64,
    /// Compact small files (OPTIMIZE) after every this many data commits of a table.
    /// Default: off.
    #[serde(default)]
    pub optimize_every_commits: Option<u64>,
    /// Target size of files written by OPTIMIZE, in bytes. Default 128 MiB (delta-rs' default
    /// is 100 MiB; 128 MiB matches Spark's `maxFileSize` family).
    #[serde(default = "default_target_file_size")]
    pub target_file_size: u64,
    /// Delete files no longer referenced and older than this (VACUUM), after every
    /// `vacuum_every_commits` data commits. Default: off. Must be at least 1 h unless
    /// `vacuum_unsafe_short_retention` is set, because readers of older versions need them.
    #[serde(default, with = "humantime_serde")]
    pub vacuum_retention: Option<Duration>,
    /// How often VACUUM runs when `vacuum_retention` is set: every this many data commits of a
    /// table. Default 500.
    #[serde(default = "default_vacuum_every")]
    pub vacuum_every_commits: u64,
    /// Allow `vacuum_retention` below 1 h (tests; never with concurrent readers). Default false.
    #[serde(default)]
    pub vacuum_unsafe_short_retention: bool,
}

/// The Delta protocol's default `delta.checkpointInterval`.
const fn default_checkpoint_interval() -> u64 {
    100
}

const fn default_target_file_size() -> u64 {
    128 << 20
}

/// At the default 10 s flush, about once every 80 minutes per busy table.
const fn default_vacuum_every() -> u64 {
    500
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        MaintenanceConfig {
            checkpoint_interval: default_checkpoint_interval(),
            optimize_every_commits: None,
            target_file_size: default_target_file_size(),
            vacuum_retention: None,
            vacuum_every_commits: default_vacuum_every(),
            vacuum_unsafe_short_retention: false,
        }
    }
}

/// The Delta Lake sink.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeltaSinkConfig {
    /// The sink's name in logs, metrics and the Delta `txn` application id. Default `delta`.
    /// Changing it after the first commit makes the sink forget what it committed.
    #[serde(default)]
    pub name: Option<String>,
    /// Root under which each source table gets its own Delta table at `<namespace>/<table>`:
    /// a local directory (`/data/lake`, `file:///data/lake`) or an object store URI
    /// (`s3://bucket/prefix`, needs the `s3` build feature).
    pub root: String,
    /// Default mode of every table: `mirror` (default) or `changelog`.
    #[serde(default)]
    pub mode: TableMode,
    /// Per-table settings, keyed by `namespace.table`.
    #[serde(default)]
    pub tables: BTreeMap<String, DeltaTableConfig>,
    /// When to commit.
    #[serde(default)]
    pub flush: FlushConfig,
    /// Checkpoints, compaction and vacuum.
    #[serde(default)]
    pub maintenance: MaintenanceConfig,
    /// Options of the object store, passed to delta-rs as they are: for S3-compatible stores
    /// `AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_ALLOW_HTTP`; the store must support conditional PUT (`If-None-Match`). Prefer the
    /// process environment for secrets. Default: none.
    #[serde(default)]
    pub storage_options: BTreeMap<String, String>,
}

impl DeltaSinkConfig {
    /// A config for `root` with every default.
    pub fn new(root: impl Into<String>) -> Self {
        DeltaSinkConfig {
            name: None,
            root: root.into(),
            mode: TableMode::Mirror,
            tables: BTreeMap::new(),
            flush: FlushConfig::default(),
            maintenance: MaintenanceConfig::default(),
            storage_options: BTreeMap::new(),
        }
    }

    /// The sink's name (`delta` unless configured).
    pub fn sink_name(&self) -> &str {
        self.name.as_deref().unwrap_or("delta")
    }

    /// The settings of `table` (defaults when not configured).
    pub fn table(&self, table: &TableId) -> DeltaTableConfig {
        self.tables
            .get(&table.to_string())
            .cloned()
            .unwrap_or_default()
    }

    /// The mode of `table`.
    pub fn mode_of(&self, table: &TableId) -> TableMode {
        self.table(table).mode.unwrap_or(self.mode)
    }

    /// Checks the config without IO; returns `(key, message)` for every problem.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let mut problem = |k: &str, m: String| problems.push((k.to_owned(), m));
        if let Err(m) = crate::writer::root_url(&self.root) {
            problem("root", m);
        }
        if let Some(name) = &self.name {
            if name.trim().is_empty() || name.contains(char::is_whitespace) {
                problem("name", format!("{name:?} must be non-empty without spaces"));
            }
        }
        for (key, t) in &self.tables {
            let (ns, name) = key.split_once('.').unwrap_or(("", ""));
            if ns.is_empty() || name.is_empty() || name.contains('.') {
                problem(
                    &format!("tables.{key:?}"),
                    format!("{key:?} is not \"namespace.table\" (e.g. \"public.orders\")"),
                );
            }
            if t.mode == Some(TableMode::Changelog) && !t.key_columns.is_empty() {
                problem(
                    &format!("tables.{key:?}.key_columns"),
                    "is only used in mirror mode; remove it or set mode = \"mirror\"".into(),
                );
            }
            if t.key_columns.iter().any(|c| c.is_empty()) {
                problem(
                    &format!("tables.{key:?}.key_columns"),
                    "contains an empty column name".into(),
                );
            }
            if let Some(p) = &t.path {
                if p.trim().is_empty() {
                    problem(
                        &format!("tables.{key:?}.path"),
                        "is empty; remove it for the default <namespace>/<table>".into(),
                    );
                }
            }
        }
        let f = &self.flush;
        if f.max_rows == 0 {
            problem("flush.max_rows", "must be at least 1".into());
        }
        if f.max_bytes < 1 << 16 {
            problem(
                "flush.max_bytes",
                format!("{} is below 64 KiB; commits would be tiny", f.max_bytes),
            );
        }
        if f.interval.is_zero() {
            problem(
                "flush.interval",
                "must be greater than zero, e.g. \"10s\"".into(),
            );
        }
        let m = &self.maintenance;
        if m.checkpoint_interval == 0 {
            problem(
                "maintenance.checkpoint_interval",
                "must be at least 1".into(),
            );
        }
        if m.optimize_every_commits == Some(0) {
            problem(
                "maintenance.optimize_every_commits",
                "must be at least 1; remove it to turn compaction off".into(),
            );
        }
        if m.target_file_size < 1 << 20 {
            problem(
                "maintenance.target_file_size",
                format!("{} is below 1 MiB", m.target_file_size),
            );
        }
        if m.vacuum_every_commits == 0 {
            problem(
                "maintenance.vacuum_every_commits",
                "must be at least 1".into(),
            );
        }
        if let Some(r) = m.vacuum_retention {
            if r < Duration::from_secs(3600) && !m.vacuum_unsafe_short_retention {
                problem(
                    "maintenance.vacuum_retention",
                    format!(
                        "{r:?} is below 1h: readers of older versions lose their files; raise it \
                         or set vacuum_unsafe_short_retention = true"
                    ),
                );
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_per_table_modes() {
        let c: DeltaSinkConfig = serde_json::from_str(
            r#"{"root":"/tmp/lake","tables":{"public.a":{"mode":"changelog"},
                "public.b":{"key_columns":["k"]}}}"#,
        )
        .unwrap();
        assert_eq!(c.sink_name(), "delta");
        assert_eq!(
            c.mode_of(&TableId::new("public", "a")),
            TableMode::Changelog
        );
        assert_eq!(c.mode_of(&TableId::new("public", "b")), TableMode::Mirror);
        assert_eq!(c.mode_of(&TableId::new("public", "c")), TableMode::Mirror);
        assert_eq!(c.table(&TableId::new("public", "b")).key_columns, ["k"]);
        assert_eq!(c.flush.max_rows, 100_000);
        assert_eq!(c.maintenance.checkpoint_interval, 100);
        assert!(c.validate().is_empty(), "{:?}", c.validate());
    }

    #[test]
    fn rejects_unknown_keys() {
        assert!(
            serde_json::from_str::<DeltaSinkConfig>(r#"{"root":"/x","mdoe":"mirror"}"#).is_err()
        );
        assert!(
            serde_json::from_str::<DeltaSinkConfig>(r#"{"root":"/x","flush":{"max_rowz":1}}"#)
                .is_err()
        );
    }

    #[test]
    fn reports_every_problem_with_its_key() {
        let mut c = DeltaSinkConfig::new("s3:/bucket");
        c.flush.max_rows = 0;
        c.maintenance.vacuum_retention = Some(Duration::from_secs(60));
        c.tables.insert(
            "nodot".into(),
            DeltaTableConfig {
                mode: Some(TableMode::Changelog),
                key_columns: vec!["k".into()],
                path: None,
            },
        );
        let keys: Vec<String> = c.validate().into_iter().map(|p| p.0).collect();
        assert_eq!(
            keys,
            [
                "root",
                "tables.\"nodot\"",
                "tables.\"nodot\".key_columns",
                "flush.max_rows",
                "maintenance.vacuum_retention"
            ]
        );
    }
}
