//! The only IO of the Delta sink: opening or creating a table, following schema changes, and
//! the two write operations ([`merge`] for mirror tables, [`append`] for changelog tables),
//! plus maintenance ([`maintenance`]). Committing with the position is in `commit.rs`; these
//! functions take the [`CommitProperties`] it builds.
//!
//! # Traps
//! - delta-rs 0.32.4 refuses every write to a table with column mapping (create, write,
//!   MERGE, ADD COLUMN: "column mapping writes are not supported"). Dropped and renamed source
//!   columns are therefore *kept* in the Delta table (frozen; see docs/delta.md), never
//!   dropped or renamed in it.
//! - Adding columns is its own commit (metadata only) before the data commit; a crash between
//!   the two leaves the new, empty columns, which the restart accepts.
//! - delta-rs refuses a local table location that does not exist, so `open` creates the
//!   directory: a typo'd root is created, not reported. `root_url` refuses URI-looking typos
//!   such as `s3:/x`.

pub mod append;
pub mod maintenance;
pub mod merge;

use std::collections::HashMap;

use arrow_schema::{Field, Schema};
use deltalake::kernel::engine::arrow_conversion::{TryFromArrow, TryIntoArrow};
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::{StructField, StructType};
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError, TableProperty};
use tidemark_model::{TableId, TableSchema};
use url::Url;

use crate::config::{MaintenanceConfig, TableMode};
use crate::encoder::{self, Layout};
use crate::error::DeltaError;

/// Parses the configured root into a directory URL (trailing slash), without IO.
pub fn root_url(root: &str) -> Result<Url, String> {
    let root = root.trim();
    if root.is_empty() {
        return Err("is empty; give a directory or an s3:// URI".into());
    }
    let mut url = if root.contains("://") {
        Url::parse(root).map_err(|e| format!("{root:?} is not a URL: {e}"))?
    } else if let Some((scheme, rest)) = root.split_once(':').filter(|(s, _)| s.len() > 1) {
        return Err(format!(
            "{root:?} is not a URL; did you mean \"{scheme}://{}\"?",
            rest.trim_start_matches('/')
        ));
    } else {
        let path = std::path::absolute(root)
            .map_err(|e| format!("{root:?}: cannot make it absolute: {e}"))?;
        Url::from_directory_path(&path).map_err(|_| format!("{root:?} is not a usable path"))?
    };
    match url.scheme() {
        "file" | "memory" | "s3" | "s3a" | "az" | "abfs" | "abfss" | "gs" => {}
        other => {
            return Err(format!(
                "{root:?}: scheme {other:?} is not supported; use a directory, file://, or s3://"
            ))
        }
    }
    if !url.path().ends_with('/') {
        let p = format!("{}/", url.path());
        url.set_path(&p);
    }
    Ok(url)
}

/// The URL of a table's directory: `path` (relative to root, or absolute) or
/// `<root>/<namespace>/<name>/`.
pub fn table_url(root: &Url, table: &TableId, path: Option<&str>) -> Result<Url, String> {
    let rel = match path {
        Some(p) if p.contains("://") => return root_url(p),
        Some(p) => format!("{}/", p.trim_matches('/')),
        None => format!("{}/{}/", segment(&table.namespace), segment(&table.name)),
    };
    root.join(&rel)
        .map_err(|e| format!("{rel:?} under {root}: {e}"))
}

/// A name usable as one path segment (no `/`, no `..`).
fn segment(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if cleaned == "." || cleaned == ".." || cleaned.is_empty() {
        format!("_{cleaned}")
    } else {
        cleaned
    }
}

/// One Delta table of the sink.
pub struct TableWriter {
    pub id: TableId,
    pub url: Url,
    pub mode: TableMode,
    /// The loaded table (state after our last commit).
    pub table: DeltaTable,
    /// `None` until the table exists.
    pub layout: Option<Layout>,
    /// Source schema version the layout last followed.
    pub schema_version: Option<u32>,
}

impl TableWriter {
    fn delta_err(&self, op: &'static str) -> impl Fn(DeltaTableError) -> DeltaError + '_ {
        move |source| DeltaError::Delta {
            table: self.id.clone(),
            uri: self.url.to_string(),
            op,
            source: Box::new(source),
        }
    }

    /// Opens the table at `url` (it may not exist yet).
    pub async fn open(
        id: TableId,
        url: Url,
        mode: TableMode,
        storage_options: &HashMap<String, String>,
    ) -> Result<Self, DeltaError> {
        let err = |source| DeltaError::Delta {
            table: id.clone(),
            uri: url.to_string(),
            op: "open",
            source: Box::new(source),
        };
        // delta-rs refuses a local location that does not exist yet.
        if url.scheme() == "file" {
            if let Ok(path) = url.to_file_path() {
                std::fs::create_dir_all(&path)
                    .map_err(|e| err(DeltaTableError::Io { source: e }))?;
            }
        }
        let mut table = DeltaTableBuilder::from_url(url.clone())
            .map_err(err)?
            .with_storage_options(storage_options.clone())
            .build()
            .map_err(err)?;
        match table.load().await {
            Ok(()) => {}
            Err(DeltaTableError::NotATable(_)) => {}
            Err(e) => return Err(err(e)),
        }
        let mut w = TableWriter {
            id,
            url,
            mode,
            table,
            layout: None,
            schema_version: None,
        };
        if w.table.version().is_some() {
            w.layout = Some(w.existing_layout(Vec::new())?);
        }
        Ok(w)
    }

    /// The layout of the existing table; checks that it was written in this mode.
    fn existing_layout(&self, key: Vec<String>) -> Result<Layout, DeltaError> {
        let schema = self
            .table
            .snapshot()
            .map_err(self.delta_err("read schema"))?
            .schema();
        let arrow: Schema =
            schema
                .as_ref()
                .try_into_arrow()
                .map_err(|e: arrow_schema::ArrowError| DeltaError::Arrow {
                    table: self.id.clone(),
                    context: "the table's schema".into(),
                    source: e,
                })?;
        let fields: Vec<Field> = arrow.fields().iter().map(|f| f.as_ref().clone()).collect();
        for sys in encoder::system_fields(self.mode) {
            if !fields.iter().any(|f| f.name() == sys.name()) {
                return Err(DeltaError::Schema {
                    table: self.id.clone(),
                    column: sys.name().clone(),
                    message: format!(
                        "the Delta table at {} has no such column, so it was not written by a \
                         {} sink; configure the mode it was written with or another path",
                        self.url,
                        self.mode.as_str()
                    ),
                });
            }
        }
        if self.mode == TableMode::Mirror && fields.iter().any(|f| f.name() == encoder::CHANGE_TYPE)
        {
            return Err(DeltaError::Schema {
                table: self.id.clone(),
                column: encoder::CHANGE_TYPE.into(),
                message: format!(
                    "the Delta table at {} has this changelog column, so it was not written by a \
                     mirror sink; configure mode = \"changelog\" for it or another path",
                    self.url
                ),
            });
        }
        Layout::existing(self.id.clone(), self.mode, fields, key)
    }

    /// Makes the table follow `schema` (create it, or add its new columns). `key` is the
    /// mirror key (ignored for changelog tables).
    pub async fn ensure(
        &mut self,
        schema: &TableSchema,
        key: Vec<String>,
        maintenance: &MaintenanceConfig,
        props: impl Fn() -> CommitProperties,
    ) -> Result<(), DeltaError> {
        if self.schema_version == Some(schema.version) && self.layout.is_some() {
            return Ok(());
        }
        let key = if self.mode == TableMode::Mirror {
            key
        } else {
            Vec::new()
        };
        match self.layout.take() {
            None => self.create(schema, key, maintenance, props()).await?,
            Some(mut layout) => {
                layout.key = key;
                let added = match layout.evolve(schema) {
                    Ok(a) => a,
                    Err(e) => {
                        self.layout = Some(layout);
                        return Err(e);
                    }
                };
                if !added.is_empty() {
                    tracing::info!(table = %self.id, columns = ?added.iter().map(|f| f.name()).collect::<Vec<_>>(), "adding columns to the Delta table");
                    let fields = to_struct_fields(&self.id, &added)?;
                    let t = self
                        .table
                        .clone()
                        .add_columns()
                        .with_fields(fields)
                        .with_commit_properties(props())
                        .await
                        .map_err(self.delta_err("add columns"))?;
                    self.table = t;
                }
                self.layout = Some(layout);
            }
        }
        if let Some(l) = &self.layout {
            if l.mode == TableMode::Mirror {
                Layout::existing(l.table.clone(), l.mode, l.fields.clone(), l.key.clone())?;
            }
        }
        self.schema_version = Some(schema.version);
        Ok(())
    }

    async fn create(
        &mut self,
        schema: &TableSchema,
        key: Vec<String>,
        maintenance: &MaintenanceConfig,
        props: CommitProperties,
    ) -> Result<(), DeltaError> {
        let layout = Layout::new(schema, self.mode, key)?;
        let fields = to_struct_fields(&self.id, &layout.fields)?;
        let mut config: Vec<(String, Option<String>)> = vec![(
            TableProperty::CheckpointInterval.as_ref().to_owned(),
            Some(maintenance.checkpoint_interval.to_string()),
        )];
        // The configured VACUUM retention becomes the table's own, so that every engine's
        // VACUUM of this table keeps the same files (delta-rs and Spark refuse a shorter
        // retention than the table's, whose default is a week).
        if let Some(r) = maintenance.vacuum_retention {
            config.push((
                TableProperty::DeletedFileRetentionDuration
                    .as_ref()
                    .to_owned(),
                Some(format!("interval {} seconds", r.as_secs().max(1))),
            ));
        }
        if self.mode == TableMode::Mirror {
            config.push((
                TableProperty::EnableChangeDataFeed.as_ref().to_owned(),
                Some("true".into()),
            ));
        }
        // File statistics only where they pay (MERGE pruning by key; changelog by commit
        // time), and never on value columns: delta-rs 0.32.4's stats writer panics on dates
        // and timestamps outside chrono's range (`NaiveDate + TimeDelta overflowed`), which
        // Postgres ±infinity sentinels are.
        let stats: Vec<String> = match self.mode {
            TableMode::Mirror => layout.key.iter().map(|k| stats_name(k)).collect(),
            TableMode::Changelog => vec![encoder::TXID.into(), encoder::COMMIT_TS.into()],
        };
        config.push((
            TableProperty::DataSkippingStatsColumns.as_ref().to_owned(),
            Some(if stats.is_empty() {
                encoder::POSITION.to_owned()
            } else {
                stats.join(",")
            }),
        ));
        tracing::info!(table = %self.id, url = %self.url, mode = self.mode.as_str(), "creating Delta table");
        let t = self
            .table
            .create()
            .with_table_name(self.id.name.clone())
            .with_columns(fields)
            .with_configuration(config)
            .with_commit_properties(props)
            .await
            .map_err(self.delta_err("create"))?;
        self.table = t;
        self.layout = Some(layout);
        Ok(())
    }

    /// The layout (the table exists).
    pub fn layout(&self) -> Result<&Layout, DeltaError> {
        self.layout.as_ref().ok_or_else(|| DeltaError::Log {
            table: self.id.clone(),
            uri: self.url.to_string(),
            message: "the table has not been created yet".into(),
        })
    }
}

/// A column name in `delta.dataSkippingStatsColumns` (back-quoted unless plain).
fn stats_name(name: &str) -> String {
    if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        name.to_owned()
    } else {
        format!("`{}`", name.replace('`', "``"))
    }
}

/// Arrow fields → Delta struct fields.
fn to_struct_fields(table: &TableId, fields: &[Field]) -> Result<Vec<StructField>, DeltaError> {
    let schema = Schema::new(fields.to_vec());
    let st = StructType::try_from_arrow(&schema).map_err(|e: arrow_schema::ArrowError| {
        DeltaError::Arrow {
            table: table.clone(),
            context: "converting the schema to Delta".into(),
            source: e,
        }
    })?;
    Ok(st.fields().cloned().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_urls() {
        assert_eq!(root_url("/tmp/lake").unwrap().as_str(), "file:///tmp/lake/");
        assert_eq!(root_url("s3://b/p").unwrap().as_str(), "s3://b/p/");
        assert!(root_url("s3:/b")
            .unwrap_err()
            .contains("did you mean \"s3://b\""));
        assert!(root_url("ftp://x").is_err());
        assert!(root_url(" ").is_err());
        let root = root_url("/tmp/lake").unwrap();
        let t = TableId::new("public", "orders");
        assert_eq!(
            table_url(&root, &t, None).unwrap().as_str(),
            "file:///tmp/lake/public/orders/"
        );
        assert_eq!(
            table_url(&root, &TableId::new("..", "a/b"), None)
                .unwrap()
                .as_str(),
            "file:///tmp/lake/_../a_b/"
        );
        assert_eq!(
            table_url(&root, &t, Some("x/y")).unwrap().as_str(),
            "file:///tmp/lake/x/y/"
        );
    }
}
