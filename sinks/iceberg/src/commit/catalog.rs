//! The catalog every table goes through: [`Catalog`] dispatches to the SQL catalog here or to
//! the REST catalog ([`super::rest`]); callers never branch on the kind.
//!
//! The SQL catalog (JDBC layout) on SQLite or PostgreSQL, and the table metadata files it
//! points to. A commit writes a new `NNNNN-<uuid>.metadata.json` and then swaps the
//! catalog row's `metadata_location` from the version it was based on to the new one in one
//! `UPDATE ... WHERE metadata_location = <base>`: the compare-and-swap every Iceberg catalog
//! uses. Losing the race leaves an unreferenced metadata file, which is deleted.
//!
//! # Traps
//! - The iceberg crate's `TableCommit` cannot be built outside that crate, so its catalogs'
//!   `update_table` is unusable for our own snapshots; the layout here is the JDBC catalog's
//!   (`iceberg_tables`, `iceberg_namespace_properties`; `iceberg_type` as iceberg-rust adds
//!   it), which pyiceberg's `SqlCatalog` reads.
//! - pyiceberg and iceberg-rust name a SQLite file `sqlite:////abs/path` (SQLAlchemy) and
//!   `sqlite:///abs/path`; the config takes the latter.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use iceberg::io::{FileIO, FileIOBuilder};
use iceberg::spec::{TableMetadata, TableMetadataBuilder};
use iceberg::{TableCreation, TableUpdate};
use iceberg_storage_opendal::OpenDalResolvingStorageFactory;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

use super::rest::RestCatalog;
use crate::config::{CatalogConfig, SqlCatalogConfig, StorageConfig};
use crate::error::{IcebergError, IoContext};

enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A loaded table: its metadata and where that metadata lives.
#[derive(Clone, Debug)]
pub struct LoadedTable {
    pub ident: TableIdent,
    pub metadata_location: String,
    pub metadata: TableMetadata,
}

/// Namespace and name of an Iceberg table.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TableIdent {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for TableIdent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.namespace, self.name)
    }
}

/// The catalog (SQL or REST) plus the `FileIO` of its warehouse.
pub struct Catalog {
    backend: Backend,
    pub file_io: FileIO,
}

enum Backend {
    Sql(SqlCatalog),
    Rest(RestCatalog),
}

/// The SQL catalog: the JDBC tables on one pool.
struct SqlCatalog {
    pool: Pool,
    name: String,
    warehouse: String,
}

impl Catalog {
    /// Connects (SQL: creating a missing SQLite file and the catalog tables; REST: reading
    /// `/v1/config`).
    pub async fn connect(
        cfg: &CatalogConfig,
        storage: &StorageConfig,
    ) -> Result<Self, IcebergError> {
        let backend = match cfg {
            CatalogConfig::Sql(c) => Backend::Sql(SqlCatalog::connect(c).await?),
            CatalogConfig::Rest(c) => Backend::Rest(RestCatalog::connect(c).await?),
        };
        Ok(Catalog {
            backend,
            file_io: file_io(storage)?,
        })
    }

    /// Loads a table, `None` if the catalog has no such table.
    pub async fn load(&self, ident: &TableIdent) -> Result<Option<LoadedTable>, IcebergError> {
        match &self.backend {
            Backend::Sql(c) => c.load(&self.file_io, ident).await,
            Backend::Rest(c) => c.load(ident).await,
        }
    }

    /// Every table of the catalog (SQL: of this catalog name).
    pub async fn list(&self) -> Result<Vec<TableIdent>, IcebergError> {
        match &self.backend {
            Backend::Sql(c) => c.list().await,
            Backend::Rest(c) => c.list().await,
        }
    }

    /// The location of a new table; `None` when the catalog assigns it (REST).
    pub fn table_location(&self, ident: &TableIdent) -> Option<String> {
        match &self.backend {
            Backend::Sql(c) => Some(c.table_location(ident)),
            Backend::Rest(_) => None,
        }
    }

    pub async fn create(
        &self,
        ident: &TableIdent,
        creation: TableCreation,
    ) -> Result<LoadedTable, IcebergError> {
        match &self.backend {
            Backend::Sql(c) => c.create(&self.file_io, ident, creation).await,
            Backend::Rest(c) => c.create(ident, creation).await,
        }
    }

    /// Applies `updates` to `base` atomically: `Conflict` if the table moved on since `base`
    /// was loaded (SQL: the pointer compare-and-swap; REST: the `assert-table-uuid` and
    /// `assert-ref-snapshot-id` requirements of `main`, a 409 from the server).
    pub async fn commit(
        &self,
        base: &LoadedTable,
        updates: Vec<TableUpdate>,
    ) -> Result<LoadedTable, IcebergError> {
        match &self.backend {
            Backend::Sql(c) => c.commit(&self.file_io, base, updates).await,
            Backend::Rest(c) => c.commit(base, updates).await,
        }
    }
}

/// Builds the `FileIO` for local paths and S3 URLs.
pub fn file_io(storage: &StorageConfig) -> Result<FileIO, IcebergError> {
    let mut props: HashMap<String, String> = HashMap::new();
    let secret =
        |s: &Option<crate::config::Secret>, key: &str| -> Result<Option<String>, IcebergError> {
            s.as_ref()
                .map(|s| {
                    s.read()
                        .map_err(|e| IcebergError::Config(format!("storage.{key}: {e}")))
                })
                .transpose()
        };
    if let Some(e) = &storage.endpoint {
        props.insert("s3.endpoint".into(), e.clone());
    }
    props.insert(
        "s3.region".into(),
        storage.region.clone().unwrap_or_else(|| "us-east-1".into()),
    );
    if let Some(v) = secret(&storage.access_key_id, "access_key_id")? {
        props.insert("s3.access-key-id".into(), v);
    }
    if let Some(v) = secret(&storage.secret_access_key, "secret_access_key")? {
        props.insert("s3.secret-access-key".into(), v);
    }
    if storage.path_style {
        props.insert("s3.path-style-access".into(), "true".into());
    }
    Ok(
        FileIOBuilder::new(Arc::new(OpenDalResolvingStorageFactory::new()))
            .with_props(props)
            .build(),
    )
}

fn sql(pg: bool, s: &str) -> String {
    if !pg {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 8);
    let mut n = 0;
    for ch in s.chars() {
        if ch == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(ch);
        }
    }
    out
}

/// Runs a statement with string binds on either pool; the number of rows affected.
macro_rules! execute {
    ($pool:expr, $stmt:expr $(, $bind:expr)*) => {
        match $pool {
            Pool::Sqlite(p) => sqlx::query(&sql(false, $stmt))$(.bind($bind))*.execute(p).await.map(|r| r.rows_affected()),
            Pool::Postgres(p) => sqlx::query(&sql(true, $stmt))$(.bind($bind))*.execute(p).await.map(|r| r.rows_affected()),
        }
    };
}

/// Fetches one optional string column.
macro_rules! fetch_string {
    ($pool:expr, $stmt:expr $(, $bind:expr)*) => {
        match $pool {
            Pool::Sqlite(p) => sqlx::query_scalar::<_, Option<String>>(&sql(false, $stmt))$(.bind($bind))*.fetch_optional(p).await,
            Pool::Postgres(p) => sqlx::query_scalar::<_, Option<String>>(&sql(true, $stmt))$(.bind($bind))*.fetch_optional(p).await,
        }
    };
}

const CREATE_TABLES: &str = "CREATE TABLE IF NOT EXISTS iceberg_tables (\
    catalog_name VARCHAR(255) NOT NULL, table_namespace VARCHAR(255) NOT NULL, \
    table_name VARCHAR(255) NOT NULL, metadata_location VARCHAR(1000), \
    previous_metadata_location VARCHAR(1000), iceberg_type VARCHAR(5), \
    PRIMARY KEY (catalog_name, table_namespace, table_name))";
const CREATE_NAMESPACES: &str = "CREATE TABLE IF NOT EXISTS iceberg_namespace_properties (\
    catalog_name VARCHAR(255) NOT NULL, namespace VARCHAR(255) NOT NULL, \
    property_key VARCHAR(255) NOT NULL, property_value VARCHAR(1000), \
    PRIMARY KEY (catalog_name, namespace, property_key))";

impl SqlCatalog {
    async fn connect(c: &SqlCatalogConfig) -> Result<Self, IcebergError> {
        let pool = if let Some(path) = c
            .uri
            .strip_prefix("sqlite://")
            .or(c.uri.strip_prefix("sqlite:"))
        {
            let opts = SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .busy_timeout(std::time::Duration::from_secs(30));
            Pool::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(2)
                    .connect_with(opts)
                    .await
                    .io_ctx("connect to catalog", path)?,
            )
        } else {
            let mut opts = PgConnectOptions::from_str(&c.uri)
                .map_err(|e| IcebergError::Config(format!("catalog.uri: {e}")))?;
            if let Some(p) = &c.password {
                let pw = p
                    .read()
                    .map_err(|e| IcebergError::Config(format!("catalog.password: {e}")))?;
                opts = opts.password(&pw);
            }
            Pool::Postgres(
                PgPoolOptions::new()
                    .max_connections(2)
                    .connect_with(opts)
                    .await
                    .io_ctx("connect to catalog", &redact(&c.uri))?,
            )
        };
        execute!(&pool, CREATE_TABLES).io_ctx("create catalog table", "iceberg_tables")?;
        execute!(&pool, CREATE_NAMESPACES)
            .io_ctx("create catalog table", "iceberg_namespace_properties")?;
        let warehouse = normalize_location(&c.warehouse);
        Ok(SqlCatalog {
            pool,
            name: c.name.clone(),
            warehouse,
        })
    }

    async fn load(
        &self,
        file_io: &FileIO,
        ident: &TableIdent,
    ) -> Result<Option<LoadedTable>, IcebergError> {
        let loc = fetch_string!(
            &self.pool,
            "SELECT metadata_location FROM iceberg_tables WHERE catalog_name = ? AND table_namespace = ? AND table_name = ?",
            &self.name,
            &ident.namespace,
            &ident.name
        )
        .io_ctx("load table", &ident.to_string())?
        .flatten();
        let Some(loc) = loc else { return Ok(None) };
        let metadata = read_metadata(file_io, &loc).await?;
        Ok(Some(LoadedTable {
            ident: ident.clone(),
            metadata_location: loc,
            metadata,
        }))
    }

    async fn list(&self) -> Result<Vec<TableIdent>, IcebergError> {
        const Q: &str = "SELECT table_namespace, table_name FROM iceberg_tables WHERE catalog_name = ? ORDER BY 1, 2";
        let rows: Vec<(String, String)> = match &self.pool {
            Pool::Sqlite(p) => {
                sqlx::query_as(&sql(false, Q))
                    .bind(&self.name)
                    .fetch_all(p)
                    .await
            }
            Pool::Postgres(p) => {
                sqlx::query_as(&sql(true, Q))
                    .bind(&self.name)
                    .fetch_all(p)
                    .await
            }
        }
        .io_ctx("list tables", &self.name)?;
        Ok(rows
            .into_iter()
            .map(|(namespace, name)| TableIdent { namespace, name })
            .collect())
    }

    fn table_location(&self, ident: &TableIdent) -> String {
        format!("{}/{}.db/{}", self.warehouse, ident.namespace, ident.name)
    }

    async fn create(
        &self,
        file_io: &FileIO,
        ident: &TableIdent,
        creation: TableCreation,
    ) -> Result<LoadedTable, IcebergError> {
        execute!(
            &self.pool,
            "INSERT INTO iceberg_namespace_properties (catalog_name, namespace, property_key, property_value) VALUES (?, ?, 'exists', 'true') ON CONFLICT DO NOTHING",
            &self.name,
            &ident.namespace
        )
        .io_ctx("create namespace", &ident.namespace)?;
        let metadata = TableMetadataBuilder::from_table_creation(creation)
            .and_then(|b| b.build())
            .map_err(|e| {
                IcebergError::corrupt(ident.to_string(), format!("new table metadata: {e}"))
            })?
            .metadata;
        let loc = format!(
            "{}/metadata/00000-{}.metadata.json",
            metadata.location(),
            uuid::Uuid::new_v4()
        );
        write_metadata(file_io, &loc, &metadata).await?;
        let inserted = execute!(
            &self.pool,
            "INSERT INTO iceberg_tables (catalog_name, table_namespace, table_name, metadata_location, previous_metadata_location, iceberg_type) VALUES (?, ?, ?, ?, NULL, 'TABLE') ON CONFLICT DO NOTHING",
            &self.name,
            &ident.namespace,
            &ident.name,
            &loc
        )
        .io_ctx("register table", &ident.to_string())?;
        if inserted == 1 {
            return Ok(LoadedTable {
                ident: ident.clone(),
                metadata_location: loc,
                metadata,
            });
        }
        let _ = file_io.delete(&loc).await;
        self.load(file_io, ident)
            .await?
            .ok_or_else(|| IcebergError::corrupt(ident.to_string(), "vanished while being created"))
    }

    /// Applies `updates` to `base` and swaps the catalog pointer; `Conflict` if the table
    /// moved on since `base` was loaded.
    async fn commit(
        &self,
        file_io: &FileIO,
        base: &LoadedTable,
        updates: Vec<TableUpdate>,
    ) -> Result<LoadedTable, IcebergError> {
        let table = base.ident.to_string();
        let mut builder = TableMetadataBuilder::new_from_metadata(
            base.metadata.clone(),
            Some(base.metadata_location.clone()),
        );
        for u in updates {
            builder = u
                .apply(builder)
                .map_err(|e| IcebergError::corrupt(&table, format!("metadata update: {e}")))?;
        }
        let metadata = builder
            .build()
            .map_err(|e| IcebergError::corrupt(&table, format!("metadata: {e}")))?
            .metadata;
        let loc = next_metadata_location(&base.metadata_location, metadata.location());
        write_metadata(file_io, &loc, &metadata).await?;
        let swapped = execute!(
            &self.pool,
            "UPDATE iceberg_tables SET metadata_location = ?, previous_metadata_location = ? WHERE catalog_name = ? AND table_namespace = ? AND table_name = ? AND metadata_location = ?",
            &loc,
            &base.metadata_location,
            &self.name,
            &base.ident.namespace,
            &base.ident.name,
            &base.metadata_location
        );
        match swapped {
            Ok(1) => Ok(LoadedTable {
                ident: base.ident.clone(),
                metadata_location: loc,
                metadata,
            }),
            Ok(_) => {
                let _ = file_io.delete(&loc).await;
                Err(IcebergError::Conflict {
                    table,
                    expected: base.metadata_location.clone(),
                })
            }
            // The swap may or may not have happened: keep the file (a reload tells) and let
            // the caller retry from a reload.
            Err(e) => Err(IcebergError::io("swap metadata pointer", table, e)),
        }
    }
}

async fn read_metadata(file_io: &FileIO, loc: &str) -> Result<TableMetadata, IcebergError> {
    let bytes = file_io
        .new_input(loc)
        .io_ctx("open metadata", loc)?
        .read()
        .await
        .io_ctx("read metadata", loc)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| IcebergError::corrupt(loc, format!("metadata JSON: {e}")))
}

async fn write_metadata(
    file_io: &FileIO,
    loc: &str,
    metadata: &TableMetadata,
) -> Result<(), IcebergError> {
    let json = serde_json::to_vec(metadata)
        .map_err(|e| IcebergError::corrupt(loc, format!("metadata JSON: {e}")))?;
    file_io
        .new_output(loc)
        .io_ctx("create metadata", loc)?
        .write(json.into())
        .await
        .io_ctx("write metadata", loc)
}

fn redact(uri: &str) -> String {
    match (uri.find("://"), uri.find('@')) {
        (Some(s), Some(a)) if a > s => format!("{}***{}", &uri[..s + 3], &uri[a..]),
        _ => uri.to_owned(),
    }
}

/// `/x` → `file:///x`; trailing slashes removed.
pub fn normalize_location(w: &str) -> String {
    let w = w.trim_end_matches('/');
    if w.starts_with('/') {
        format!("file://{w}")
    } else {
        w.to_owned()
    }
}

fn next_metadata_location(current: &str, table_location: &str) -> String {
    let file = current.rsplit('/').next().unwrap_or("");
    let version = file
        .split('-')
        .next()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    format!(
        "{}/metadata/{:05}-{}.metadata.json",
        table_location.trim_end_matches('/'),
        version + 1,
        uuid::Uuid::new_v4()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_and_names() {
        assert_eq!(sql(true, "a = ? AND b = ?"), "a = $1 AND b = $2");
        assert_eq!(sql(false, "a = ?"), "a = ?");
        assert_eq!(redact("postgres://u:pw@h/db"), "postgres://***@h/db");
        assert_eq!(normalize_location("/w/"), "file:///w");
        assert!(
            next_metadata_location("file:///t/metadata/00007-abc.metadata.json", "file:///t")
                .starts_with("file:///t/metadata/00008-")
        );
    }
}
