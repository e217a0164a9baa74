//! Configuration of the Iceberg sink (`[[sinks]] kind = "iceberg"`).
//!
//! ```toml
//! [[sinks]]
//! kind = "iceberg"
//! mode = "mirror"                      # or "changelog"
//! namespace = "lake"                   # default: the source table's namespace
//! catalog = { kind = "sql", uri = "sqlite:///var/lib/tidemark/catalog.db", warehouse = "/var/lib/tidemark/warehouse" }
//! commit = { max_rows = 100000, max_bytes = 67108864, interval = "30s" }
//!
//! [sinks.tables."public.orders"]
//! partition = ["day(created_at)"]
//! sort_order = ["id"]
//! ```
//!
//! [`IcebergSinkConfig::validate`] is pure (no IO) and returns every problem with its TOML path.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// What the table holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The current state of the source table: upserts and deletes become data files plus
    /// position deletes (merge-on-read). Needs a primary key.
    #[default]
    Mirror,
    /// Append-only: one row per change with `_op`, `_position`, `_txid`, `_commit_ts`.
    Changelog,
}

/// A secret: from an environment variable or a file; `Debug` prints `***`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum Secret {
    /// Name of an environment variable holding the secret.
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

/// The catalog that holds the tables' metadata pointers.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum CatalogConfig {
    /// The SQL catalog in the JDBC layout (`iceberg_tables`, `iceberg_namespace_properties`)
    /// that pyiceberg's `SqlCatalog`, Spark's and Trino's JDBC catalogs read.
    Sql(SqlCatalogConfig),
    /// An Iceberg REST catalog (`/v1/config`, namespaces, tables, `POST` commits with
    /// requirements and updates): the server owns the metadata pointer and table locations.
    /// (Boxed: it is several times the size of the SQL settings.)
    Rest(Box<RestCatalogConfig>),
}

impl CatalogConfig {
    /// Every problem of the catalog settings, as `(key relative to the catalog's parent,
    /// message)`, keys starting with `prefix` (`catalog` in the sink, `source.catalog` in the
    /// Iceberg source). No IO.
    pub fn validate(&self, prefix: &str) -> Vec<(String, String)> {
        let mut errs = Vec::new();
        let key = |k: &str| format!("{prefix}.{k}");
        match self {
            CatalogConfig::Sql(sql) => {
                if !(sql.uri.starts_with("sqlite:")
                    || sql.uri.starts_with("postgres://")
                    || sql.uri.starts_with("postgresql://"))
                {
                    errs.push((
                        key("uri"),
                        format!(
                            "{:?} is not a catalog URI; use sqlite:///absolute/path.db or postgres://user@host/db",
                            sql.uri
                        ),
                    ));
                }
                if let Some(p) = sql.uri.strip_prefix("sqlite://") {
                    if !p.starts_with('/') {
                        errs.push((
                            key("uri"),
                            format!(
                                "{:?}: the SQLite path must be absolute (sqlite:///path/catalog.db)",
                                sql.uri
                            ),
                        ));
                    }
                }
                if sql.name.is_empty() {
                    errs.push((key("name"), "must not be empty".into()));
                }
                let w = &sql.warehouse;
                if !(w.starts_with('/') || w.starts_with("file:///") || w.starts_with("s3://")) {
                    errs.push((
                        key("warehouse"),
                        format!(
                            "{w:?} must be an absolute path, file:///path or s3://bucket/prefix"
                        ),
                    ));
                }
            }
            CatalogConfig::Rest(rest) => {
                if !(rest.uri.starts_with("http://") || rest.uri.starts_with("https://")) {
                    errs.push((
                        key("uri"),
                        format!(
                            "{:?} is not a REST catalog URI; use http(s)://host:port[/path] (without /v1)",
                            rest.uri
                        ),
                    ));
                }
                if rest.token.is_some() && rest.credential.is_some() {
                    errs.push((
                        key("token"),
                        "set either token (a bearer token) or credential (OAuth2 client credentials), not both".into(),
                    ));
                }
                if rest.oauth2_server_uri.is_some() && rest.credential.is_none() {
                    errs.push((
                        key("oauth2_server_uri"),
                        "only used with credential (OAuth2 client credentials)".into(),
                    ));
                }
                if rest
                    .prefix
                    .as_deref()
                    .is_some_and(|p| p.is_empty() || p.contains('/'))
                {
                    errs.push((
                        key("prefix"),
                        "must be one non-empty path segment (no '/')".into(),
                    ));
                }
                if rest.timeout.is_zero() {
                    errs.push((key("timeout"), "must be > 0".into()));
                }
            }
        }
        errs
    }
}

/// `catalog = { kind = "sql", ... }`
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlCatalogConfig {
    /// `sqlite:///absolute/path/catalog.db` (created if missing) or
    /// `postgres://user@host:port/dbname`. Put a PostgreSQL password in `password`.
    pub uri: String,
    /// The PostgreSQL catalog's password (ignored for SQLite).
    #[serde(default)]
    pub password: Option<Secret>,
    /// The `catalog_name` column: lets several catalogs share one database. Default
    /// `tidemark`; pyiceberg opens it with `SqlCatalog("tidemark", uri=...)`.
    #[serde(default = "default_catalog_name")]
    pub name: String,
    /// Where new tables' files go: an absolute local directory (`/data/warehouse`, or
    /// `file:///data/warehouse`) or an S3 URL (`s3://bucket/prefix`, then set `storage`).
    pub warehouse: String,
}

fn default_catalog_name() -> String {
    "tidemark".into()
}

/// `catalog = { kind = "rest", uri = "http://127.0.0.1:8181", ... }`
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestCatalogConfig {
    /// The catalog's base URI, without `/v1` (`http://127.0.0.1:8181`,
    /// `https://catalog.example.com/api/catalog`).
    pub uri: String,
    /// The `warehouse` asked for in `GET /v1/config?warehouse=…` (what it means is the
    /// server's: a warehouse name or location). Default: none.
    #[serde(default)]
    pub warehouse: Option<String>,
    /// The `{prefix}` path segment of every catalog route. Default: the `prefix` the server's
    /// `/v1/config` returns (its `overrides` win over this setting, its `defaults` lose).
    #[serde(default)]
    pub prefix: Option<String>,
    /// A bearer token (`Authorization: Bearer …`). Default: none.
    #[serde(default)]
    pub token: Option<Secret>,
    /// OAuth2 client credentials `client_id:client_secret`, exchanged for a bearer token at
    /// `oauth2_server_uri` (renewed before it expires and after a 401).
    #[serde(default)]
    pub credential: Option<Secret>,
    /// Token endpoint of the client-credentials exchange. Default `{uri}/v1/oauth/tokens`.
    #[serde(default)]
    pub oauth2_server_uri: Option<String>,
    /// OAuth2 scope asked for. Default `catalog`.
    #[serde(default = "default_oauth2_scope")]
    pub scope: String,
    /// Longest wait for one request (connect included). Default 30 s.
    #[serde(default = "default_rest_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_oauth2_scope() -> String {
    "catalog".into()
}
const fn default_rest_timeout() -> Duration {
    Duration::from_secs(30)
}

/// S3-compatible object storage (only used when the warehouse is an `s3://` URL).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Endpoint of an S3-compatible service (MinIO, Ceph, R2): `http://127.0.0.1:9000`.
    /// Default: AWS.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Region. Default: `us-east-1`.
    #[serde(default)]
    pub region: Option<String>,
    /// Access key id. Default: the AWS credential chain.
    #[serde(default)]
    pub access_key_id: Option<Secret>,
    /// Secret access key.
    #[serde(default)]
    pub secret_access_key: Option<Secret>,
    /// Path-style addressing (`endpoint/bucket/key`), needed by most self-hosted stores.
    /// Default false.
    #[serde(default)]
    pub path_style: bool,
}

/// When buffered changes are committed as a snapshot. A snapshot is committed as soon as
/// one limit is reached, always at a transaction boundary (a source transaction never spans
/// two snapshots of a table).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitConfig {
    /// Rows buffered before a commit. Default 500 000.
    #[serde(default = "default_max_rows")]
    pub max_rows: u64,
    /// Arrow bytes of changes buffered before a commit. Default 256 MiB.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Longest time between the first uncommitted change and its commit. Default 10 s.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
}

/// Each snapshot costs a metadata file and a manifest list: at 50 000 changes/s this is a
/// commit every 10 s, small enough for the time limit to dominate.
const fn default_max_rows() -> u64 {
    500_000
}
const fn default_max_bytes() -> u64 {
    256 << 20
}
const fn default_interval() -> Duration {
    Duration::from_secs(10)
}

impl Default for CommitConfig {
    fn default() -> Self {
        CommitConfig {
            max_rows: default_max_rows(),
            max_bytes: default_max_bytes(),
            interval: default_interval(),
        }
    }
}

/// Table maintenance run by the sink itself (also available as `tidemark iceberg compact`
/// and `tidemark iceberg expire`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceConfig {
    /// Compact (rewrite data files with their deletes applied) a table after this many
    /// snapshots since its last compaction. 0 (default): never automatically.
    #[serde(default)]
    pub compact_every_snapshots: u64,
    /// Expire snapshots older than this after each compaction, keeping at least
    /// `keep_snapshots`. Default 1 h.
    #[serde(default = "default_max_snapshot_age", with = "humantime_serde")]
    pub max_snapshot_age: Duration,
    /// Snapshots always kept by expiry. Default 10.
    #[serde(default = "default_keep_snapshots")]
    pub keep_snapshots: u32,
}

const fn default_max_snapshot_age() -> Duration {
    Duration::from_secs(3600)
}
const fn default_keep_snapshots() -> u32 {
    10
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        MaintenanceConfig {
            compact_every_snapshots: 0,
            max_snapshot_age: default_max_snapshot_age(),
            keep_snapshots: default_keep_snapshots(),
        }
    }
}

/// Per-table settings (`[sinks.tables."schema.table"]`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// Iceberg table name. Default: the source table's name (a mirror and a changelog of the
    /// same source table need different names or namespaces).
    #[serde(default)]
    pub name: Option<String>,
    /// Partition fields, applied when the table is created: `col` (identity), `year(col)`,
    /// `month(col)`, `day(col)`, `hour(col)`, `bucket(N, col)`, `truncate(W, col)`. In
    /// changelog mode `_commit_ts` is a column too (`day(_commit_ts)`).
    #[serde(default)]
    pub partition: Vec<String>,
    /// Sort order recorded in the table metadata and applied by compaction: `col`,
    /// `col desc`, `col asc nulls last`.
    #[serde(default)]
    pub sort_order: Vec<String>,
}

/// The Iceberg sink.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IcebergSinkConfig {
    /// The sink's name in logs, metrics and `status`. Default `iceberg`.
    #[serde(default)]
    pub name: Option<String>,
    /// `mirror` (default) or `changelog`.
    #[serde(default)]
    pub mode: Mode,
    /// The catalog.
    pub catalog: CatalogConfig,
    /// Object storage settings for an `s3://` warehouse.
    #[serde(default)]
    pub storage: StorageConfig,
    /// Iceberg namespace of every table. Default: the source table's namespace (Postgres
    /// schema, MySQL database).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Iceberg format version of new tables: 2 (Parquet position delete files) or 3
    /// (deletion vectors: one Puffin `deletion-vector-v1` blob per data file, merged with
    /// the previous one at each commit; row lineage fields written). Default 2: more readers
    /// read v2 (iceberg-rust 0.10.1's scan and the Iceberg source do not apply deletion
    /// vectors; pyiceberg 0.12, polars 2.1 and DuckDB 1.4 do).
    /// An existing table keeps the version it was created with.
    #[serde(default = "default_format_version")]
    pub format_version: u8,
    /// Roll a data file when its written size reaches this many bytes. Default 128 MiB
    /// (Iceberg's `write.target-file-size-bytes` is 512 MiB; smaller files commit sooner).
    #[serde(default = "default_target_file_size")]
    pub target_file_size_bytes: u64,
    /// Most primary keys kept in a mirror table's key → (file, row) index, over all tables.
    /// The index needs ~60 bytes per live row; past the limit the sink stops with an error
    /// rather than use unbounded memory. Default 20 000 000 (~1.2 GiB).
    #[serde(default = "default_max_index_keys")]
    pub max_index_keys: u64,
    /// When to commit.
    #[serde(default)]
    pub commit: CommitConfig,
    /// Automatic compaction and snapshot expiry.
    #[serde(default)]
    pub maintenance: MaintenanceConfig,
    /// Per-table settings, keyed by the source table `namespace.name`.
    #[serde(default)]
    pub tables: BTreeMap<String, TableConfig>,
}

const fn default_format_version() -> u8 {
    2
}
const fn default_target_file_size() -> u64 {
    128 << 20
}
const fn default_max_index_keys() -> u64 {
    20_000_000
}

impl IcebergSinkConfig {
    /// A mirror sink on a SQLite catalog with a local warehouse, every other field default.
    pub fn sqlite(catalog_path: &str, warehouse: &str) -> Self {
        IcebergSinkConfig {
            name: None,
            mode: Mode::Mirror,
            catalog: CatalogConfig::Sql(SqlCatalogConfig {
                uri: format!("sqlite://{catalog_path}"),
                password: None,
                name: default_catalog_name(),
                warehouse: warehouse.to_owned(),
            }),
            storage: StorageConfig::default(),
            namespace: None,
            format_version: default_format_version(),
            target_file_size_bytes: default_target_file_size(),
            max_index_keys: default_max_index_keys(),
            commit: CommitConfig::default(),
            maintenance: MaintenanceConfig::default(),
            tables: BTreeMap::new(),
        }
    }

    /// The sink's name.
    pub fn sink_name(&self) -> &str {
        self.name.as_deref().unwrap_or("iceberg")
    }

    /// Every problem, as `(key relative to the sink, message)`. No IO.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errs = Vec::new();
        errs.extend(self.catalog.validate("catalog"));
        if !matches!(self.format_version, 2 | 3) {
            errs.push((
                "format_version".into(),
                format!(
                    "{} is not supported: use 2 (position delete files) or 3 (deletion vectors)",
                    self.format_version
                ),
            ));
        }
        if self.target_file_size_bytes < (1 << 20) {
            errs.push((
                "target_file_size_bytes".into(),
                format!("{} is below 1 MiB", self.target_file_size_bytes),
            ));
        }
        if self.commit.max_rows == 0 || self.commit.max_bytes == 0 {
            errs.push(("commit".into(), "max_rows and max_bytes must be > 0".into()));
        }
        if self.commit.interval.is_zero() {
            errs.push(("commit.interval".into(), "must be > 0".into()));
        }
        for (table, t) in &self.tables {
            if !table.contains('.') {
                errs.push((
                    format!("tables.{table:?}"),
                    "key must be the source table as namespace.name".into(),
                ));
            }
            for (i, p) in t.partition.iter().enumerate() {
                if let Err(e) = crate::encoder::schema::parse_partition_field(p) {
                    errs.push((format!("tables.{table:?}.partition[{i}]"), e));
                }
            }
            for (i, s) in t.sort_order.iter().enumerate() {
                if let Err(e) = crate::encoder::schema::parse_sort_field(s) {
                    errs.push((format!("tables.{table:?}.sort_order[{i}]"), e));
                }
            }
        }
        errs
    }

    /// The settings of one source table.
    pub fn table(&self, table: &tidemark_model::TableId) -> TableConfig {
        self.tables
            .get(&table.to_string())
            .cloned()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_validates() {
        let cfg: IcebergSinkConfig = toml_like(
            r#"{"mode":"changelog","catalog":{"kind":"sql","uri":"sqlite:///tmp/c.db","warehouse":"/tmp/w"},
                "tables":{"public.t":{"partition":["day(_commit_ts)","bucket(4, id)"],"sort_order":["id desc"]}}}"#,
        );
        assert_eq!(cfg.mode, Mode::Changelog);
        assert!(cfg.validate().is_empty(), "{:?}", cfg.validate());
        let v3: IcebergSinkConfig = toml_like(
            r#"{"format_version":3,"catalog":{"kind":"sql","uri":"sqlite:///tmp/c.db","warehouse":"/tmp/w"}}"#,
        );
        assert_eq!(v3.format_version, 3);
        assert!(v3.validate().is_empty(), "{:?}", v3.validate());
    }

    #[test]
    fn reports_every_problem() {
        let cfg: IcebergSinkConfig = toml_like(
            r#"{"format_version":4,"catalog":{"kind":"sql","uri":"mysql://x","warehouse":"rel/w"},
                "tables":{"t":{"partition":["week(x)"]}}}"#,
        );
        let errs = cfg.validate();
        let keys: Vec<&str> = errs.iter().map(|(k, _)| k.as_str()).collect();
        assert!(keys.contains(&"catalog.uri"), "{errs:?}");
        assert!(keys.contains(&"catalog.warehouse"), "{errs:?}");
        assert!(keys.contains(&"format_version"), "{errs:?}");
        assert!(keys.iter().any(|k| k.contains("partition[0]")), "{errs:?}");
        assert!(
            keys.iter()
                .any(|k| k.starts_with("tables.") && !k.contains('[')),
            "{errs:?}"
        );
    }

    #[test]
    fn rest_catalog_parses_and_validates() {
        let cfg: IcebergSinkConfig = toml_like(
            r#"{"catalog":{"kind":"rest","uri":"http://127.0.0.1:8181","prefix":"dev",
                "token":{"env":"ICEBERG_TOKEN"},"timeout":"5s"}}"#,
        );
        let CatalogConfig::Rest(r) = &cfg.catalog else {
            panic!("not rest: {:?}", cfg.catalog)
        };
        assert_eq!(r.prefix.as_deref(), Some("dev"));
        assert_eq!(r.scope, "catalog");
        assert_eq!(r.timeout, Duration::from_secs(5));
        assert!(cfg.validate().is_empty(), "{:?}", cfg.validate());
        let bad: IcebergSinkConfig = toml_like(
            r#"{"catalog":{"kind":"rest","uri":"thrift://x","prefix":"a/b",
                "token":{"env":"T"},"credential":{"env":"C"}}}"#,
        );
        let keys: Vec<String> = bad.validate().into_iter().map(|(k, _)| k).collect();
        for k in ["catalog.uri", "catalog.prefix", "catalog.token"] {
            assert!(keys.iter().any(|x| x == k), "{k} missing in {keys:?}");
        }
        // SQL-only keys are not REST keys.
        let r: Result<IcebergSinkConfig, _> = serde_json::from_str(
            r#"{"catalog":{"kind":"rest","uri":"http://h","password":{"env":"P"}}}"#,
        );
        assert!(r.is_err());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let r: Result<IcebergSinkConfig, _> = serde_json::from_str(
            r#"{"catalog":{"kind":"sql","uri":"sqlite:///c.db","warehouse":"/w"},"modee":"mirror"}"#,
        );
        assert!(r.is_err());
    }

    fn toml_like(json: &str) -> IcebergSinkConfig {
        serde_json::from_str(json).expect("valid config")
    }
}
