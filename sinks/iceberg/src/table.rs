//! One Iceberg table the sink writes: loaded or created from the first schema seen, its
//! evolving schema, its writer, and (mirror mode) its key index.
//!
//! # Traps
//! - A source schema change while files of the old schema are open closes them first: one
//!   snapshot may hold files of several schemas (readers project by field id).
//! - Startup order: upgrade a v2 table to v3 if the config asks (one metadata commit), clean
//!   orphans named in the pending-files log, then rebuild the index, then read the recorded
//!   position (skip what the table already has).
//! - After an upgrade from v2 a Parquet position delete file is replaced whole, like a Puffin
//!   file: once one of its data files gets a DV, all of them do (with its positions) and its
//!   entry goes, so no data file has a DV and a live position delete file (`commit`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use iceberg::spec::{DataContentType, DataFile, FormatVersion, Schema, SchemaRef, Struct};
use iceberg::{TableCreation, TableUpdate};
use roaring::RoaringTreemap;

use crate::dv::LiveDv;
use tidemark_model::{Position, TableId, TableSchema};

use crate::commit::catalog::{Catalog, LoadedTable, TableIdent};
use crate::commit::snapshot::{self, recorded_position, Changes, CommitStats, SUMMARY_POSITION};
use crate::config::{IcebergSinkConfig, Mode};
use crate::encoder::schema::{evolve, initial_schema, partition_spec, sort_order};
use crate::encoder::RowEncoder;
use crate::error::IcebergError;
use crate::mirror::index::{rebuild, KeyIndex, OldDeletes};
use crate::writer::{read_pending_log, DataWriter, FileTable, Loc};

/// State of one table.
pub struct TableState {
    pub source: TableId,
    pub mode: Mode,
    pub loaded: LoadedTable,
    /// Skip changes at or before this position (already in the table).
    pub recorded: Option<Position>,
    /// Encoder for the current source schema version.
    pub encoder: Option<RowEncoder>,
    /// The source schema seen last (to recognise renames).
    pub prev_source: Option<Arc<TableSchema>>,
    /// A schema evolved but not committed yet.
    pub pending_schema: Option<Schema>,
    pub writer: DataWriter,
    /// Data files closed by a schema change, waiting for the commit.
    pub closed: Vec<DataFile>,
    pub files: FileTable,
    pub index: Option<KeyIndex>,
    /// Field ids of the key columns the index was built on.
    pub key_field_ids: Vec<i32>,
    /// Pending position deletes `(file, pos)`.
    pub deletes: BTreeSet<(u32, u32)>,
    /// Format v3: the committed deletion vector of every data file that has one (by file
    /// table index); the next DV of that file merges it and replaces its entry.
    pub dvs: HashMap<u32, LiveDv>,
    /// Format v3 upgraded from v2: the live Parquet position delete files and their
    /// positions; a data file's first DV merges them, and a delete file goes when every data
    /// file it covers has a DV (all of them get one in that commit).
    pub old_deletes: OldDeletes,
    /// A truncate since the last commit: the parent's files are all removed.
    pub truncated: bool,
    /// Rows written since the last commit.
    pub pending_rows: u64,
    /// Snapshots since the last compaction.
    pub since_compact: u64,
}

/// `format_version = 3` on a loaded v2 table: one metadata commit upgrading it (through the
/// catalog's compare-and-swap, like every commit). The metadata builder sets `next-row-id`
/// to 0; the first v3 snapshot's manifest list then gives the v2 data manifests their
/// `first_row_id`s (commit/snapshot.rs). A v3 table stays v3 whatever the config says (the
/// spec forbids a downgrade).
async fn upgrade_format(
    catalog: &Catalog,
    loaded: LoadedTable,
    wanted: u8,
) -> Result<LoadedTable, IcebergError> {
    let have = loaded.metadata.format_version();
    if wanted == 3 && have == FormatVersion::V2 {
        tracing::info!(table = %loaded.ident, from = %have, to = %FormatVersion::V3,
            "upgrading the iceberg table's format version (format_version = 3)");
        return catalog
            .commit(
                &loaded,
                vec![TableUpdate::UpgradeFormatVersion {
                    format_version: FormatVersion::V3,
                }],
            )
            .await;
    }
    if wanted < 3 && have >= FormatVersion::V3 {
        tracing::warn!(table = %loaded.ident, version = %have, format_version = wanted,
            "the table is format v3 and stays v3 (no downgrade); deletes go into deletion vectors");
    }
    Ok(loaded)
}

impl TableState {
    /// Loads the table (creating it from `ts` if missing), cleans orphans and rebuilds the index.
    pub async fn open(
        catalog: &Catalog,
        cfg: &IcebergSinkConfig,
        ts: &Arc<TableSchema>,
    ) -> Result<Self, IcebergError> {
        let tcfg = cfg.table(&ts.table);
        let ident = TableIdent {
            namespace: cfg
                .namespace
                .clone()
                .unwrap_or_else(|| ts.table.namespace.clone()),
            name: tcfg.name.clone().unwrap_or_else(|| ts.table.name.clone()),
        };
        let changelog = cfg.mode == Mode::Changelog;
        let loaded = match catalog.load(&ident).await? {
            Some(t) => t,
            None => {
                let (schema, _) = initial_schema(ts, changelog)?;
                let spec = partition_spec(&schema, &ts.table, &tcfg.partition)?;
                let order = sort_order(&schema, &ts.table, &tcfg.sort_order)?;
                let props = vec![
                    ("write.delete.mode".to_string(), "merge-on-read".to_string()),
                    ("write.update.mode".into(), "merge-on-read".into()),
                    (
                        "tidemark.mode".into(),
                        format!("{:?}", cfg.mode).to_lowercase(),
                    ),
                    ("tidemark.source".into(), ts.table.to_string()),
                ];
                let version = if cfg.format_version == 3 {
                    FormatVersion::V3
                } else {
                    FormatVersion::V2
                };
                let creation = TableCreation::builder()
                    .name(ident.name.clone())
                    .location_opt(catalog.table_location(&ident))
                    .schema(schema)
                    .partition_spec(spec)
                    .sort_order_opt(order)
                    .properties(props)
                    .format_version(version)
                    .build();
                tracing::info!(table = %ident, source = %ts.table, mode = ?cfg.mode, "creating iceberg table");
                catalog.create(&ident, creation).await?
            }
        };
        let loaded = upgrade_format(catalog, loaded, cfg.format_version).await?;
        let md = &loaded.metadata;
        let schema: SchemaRef = md.current_schema().clone();
        let writer = DataWriter::new(
            catalog.file_io.clone(),
            md.location(),
            schema.clone(),
            md.default_partition_spec().clone(),
            cfg.target_file_size_bytes,
            &ident.to_string(),
        )?;
        let recorded = match recorded_position(&loaded) {
            Some(p) => Some(p.parse::<Position>().map_err(|e| {
                IcebergError::corrupt(
                    ident.to_string(),
                    format!("snapshot summary {SUMMARY_POSITION}: {e}"),
                )
            })?),
            None => None,
        };
        let mut state = TableState {
            source: ts.table.clone(),
            mode: cfg.mode,
            loaded,
            recorded,
            encoder: None,
            prev_source: None,
            pending_schema: None,
            writer,
            closed: Vec::new(),
            files: FileTable::default(),
            index: None,
            key_field_ids: Vec::new(),
            deletes: BTreeSet::new(),
            dvs: HashMap::new(),
            old_deletes: OldDeletes::default(),
            truncated: false,
            pending_rows: 0,
            since_compact: 0,
        };
        state.clean_orphans(catalog).await?;
        Ok(state)
    }

    pub fn ident(&self) -> &TableIdent {
        &self.loaded.ident
    }

    /// The schema new files are written in (pending evolution included).
    pub fn current_schema(&self) -> Schema {
        self.pending_schema
            .clone()
            .unwrap_or_else(|| self.loaded.metadata.current_schema().as_ref().clone())
    }

    /// Deletes files named by the pending-files log that no committed snapshot references.
    async fn clean_orphans(&mut self, catalog: &Catalog) -> Result<(), IcebergError> {
        let io = &catalog.file_io;
        let location = self.loaded.metadata.location().to_owned();
        let (pending, cursor) = read_pending_log(io, &location).await?;
        self.writer.log = cursor;
        if pending.is_empty() {
            return Ok(());
        }
        // Anything a snapshot still references stays (time travel, expiry's business).
        let live = crate::maintenance::referenced_files(catalog, &self.loaded).await?;
        let mut removed = 0;
        for p in &pending {
            if !live.contains(p) && io.exists(p).await.unwrap_or(false) {
                if let Err(e) = io.delete(p).await {
                    tracing::warn!(table = %self.loaded.ident, path = %p, error = %e, "cannot delete orphan file");
                } else {
                    removed += 1;
                }
            }
        }
        tracing::info!(table = %self.loaded.ident, removed, "cleaned files of an uncommitted snapshot");
        self.writer.committed().await
    }

    /// Adopts a (possibly new) source schema version: evolves the Iceberg schema, rebuilds
    /// the encoder, and in mirror mode (re)builds the key index when the key changed.
    pub async fn adopt(
        &mut self,
        catalog: &Catalog,
        ts: &Arc<TableSchema>,
        cfg: &IcebergSinkConfig,
    ) -> Result<(), IcebergError> {
        if self
            .encoder
            .as_ref()
            .is_some_and(|e| Arc::ptr_eq(e.source(), ts) || **e.source() == **ts)
        {
            return Ok(());
        }
        let current = self.current_schema();
        let last_id = self
            .loaded
            .metadata
            .last_column_id()
            .max(current.highest_field_id());
        let evolved = evolve(
            &current,
            self.prev_source.as_deref(),
            ts,
            self.mode == Mode::Changelog,
            last_id,
        )?;
        if let Some(new_schema) = evolved.schema {
            tracing::info!(table = %self.loaded.ident, source = %ts.table, version = ts.version, "schema evolution");
            // Files of the old schema are closed and kept for this snapshot.
            let done = self.writer.finish(&self.files).await?;
            self.closed.extend(done);
            let pending_paths = self.writer.pending_paths().to_vec();
            let cursor = self.writer.log;
            let md = &self.loaded.metadata;
            let mut w = DataWriter::new(
                catalog.file_io.clone(),
                md.location(),
                Arc::new(new_schema.clone()),
                md.default_partition_spec().clone(),
                cfg.target_file_size_bytes,
                &self.loaded.ident.to_string(),
            )?;
            w.log = cursor;
            for p in pending_paths {
                w.log_new_path(&p).await?;
            }
            self.writer = w;
            self.pending_schema = Some(new_schema);
        }
        let schema = self.current_schema();
        self.encoder = Some(RowEncoder::new(&schema, ts.clone(), &evolved.field_ids)?);
        self.prev_source = Some(ts.clone());
        if self.mode == Mode::Mirror {
            let key_ids: Vec<i32> = ts
                .key_columns()
                .map(|(i, _)| evolved.field_ids[i])
                .collect();
            if key_ids.is_empty() {
                return Err(IcebergError::schema(
                    &ts.table,
                    "mirror mode needs a primary key; add one or use mode = \"changelog\"",
                ));
            }
            if self.index.is_none() || key_ids != self.key_field_ids {
                self.rebuild_index(catalog, ts, &key_ids, cfg.max_index_keys)
                    .await?;
            }
        }
        Ok(())
    }

    async fn rebuild_index(
        &mut self,
        catalog: &Catalog,
        ts: &Arc<TableSchema>,
        key_ids: &[i32],
        max_keys: u64,
    ) -> Result<(), IcebergError> {
        if self.index.is_some() && self.has_pending() {
            // A primary key change mid-snapshot: commit what we have under the old key first.
            return Err(IcebergError::schema(
                &ts.table,
                "the primary key changed while changes were pending; restart resumes cleanly",
            ));
        }
        let types = ts
            .key_columns()
            .map(|(_, c)| {
                let a = arrow_array::new_null_array(&c.data_type, 0);
                crate::encoder::rows::normalize_key(&a).map(|a| a.data_type().clone())
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| IcebergError::schema(&ts.table, format!("key: {e}")))?;
        let mut index = KeyIndex::new(types)
            .map_err(|e| IcebergError::schema(&ts.table, format!("key: {e}")))?;
        self.files = FileTable::default();
        rebuild(
            &catalog.file_io,
            &self.loaded,
            key_ids,
            &mut index,
            &mut self.files,
            &mut self.dvs,
            &mut self.old_deletes,
            max_keys,
        )
        .await?;
        tracing::info!(table = %self.loaded.ident, keys = index.len(), "key index rebuilt");
        self.index = Some(index);
        self.key_field_ids = key_ids.to_vec();
        Ok(())
    }

    /// After a compaction replaced every file: a fresh writer and a rebuilt index.
    pub async fn reset_after_rewrite(
        &mut self,
        catalog: &Catalog,
        cfg: &IcebergSinkConfig,
    ) -> Result<(), IcebergError> {
        let md = &self.loaded.metadata;
        // The compaction wrote the log too: continue after its newest slot.
        let (_, cursor) = read_pending_log(&catalog.file_io, md.location()).await?;
        self.writer = DataWriter::new(
            catalog.file_io.clone(),
            md.location(),
            md.current_schema().clone(),
            md.default_partition_spec().clone(),
            cfg.target_file_size_bytes,
            &self.loaded.ident.to_string(),
        )?;
        self.writer.log = cursor;
        if let (Mode::Mirror, Some(ts)) = (self.mode, self.prev_source.clone()) {
            let ids = self.key_field_ids.clone();
            self.rebuild_index(catalog, &ts, &ids, cfg.max_index_keys)
                .await?;
        }
        Ok(())
    }

    /// Whether anything waits for a commit.
    pub fn has_pending(&self) -> bool {
        !self.writer.is_empty()
            || !self.closed.is_empty()
            || !self.deletes.is_empty()
            || self.truncated
            || self.pending_schema.is_some()
    }

    /// Marks a row deleted (a position delete at commit).
    pub fn delete_loc(&mut self, loc: Loc) {
        self.deletes.insert((loc.file, loc.pos));
    }

    /// A truncate: everything pending is dropped and the parent's files go at commit.
    pub async fn truncate(&mut self, catalog: &Catalog) -> Result<(), IcebergError> {
        let mut gone = self.writer.abort(&self.files);
        gone.extend(self.closed.drain(..).map(|d| d.file_path().to_owned()));
        for p in gone {
            let _ = catalog.file_io.delete(&p).await;
        }
        self.deletes.clear();
        // The parent's files go, their deletion vectors with them.
        self.dvs.clear();
        self.old_deletes.clear();
        if let Some(i) = &mut self.index {
            i.clear();
        }
        self.truncated = true;
        Ok(())
    }

    /// Commits everything pending as one snapshot recording `position`.
    pub async fn commit(
        &mut self,
        catalog: &Catalog,
        position: Position,
    ) -> Result<Option<CommitStats>, IcebergError> {
        if !self.has_pending() {
            return Ok(None);
        }
        let mut data = std::mem::take(&mut self.closed);
        data.extend(self.writer.finish(&self.files).await?);
        let deletes = std::mem::take(&mut self.deletes);
        let v3 = self.loaded.metadata.format_version() >= FormatVersion::V3;
        let mut merged: Vec<(u32, RoaringTreemap)> = Vec::new();
        let mut remove_delete_files = HashSet::new();
        let mut gone_parquet: HashSet<Arc<str>> = HashSet::new();
        let delete_files = if deletes.is_empty() {
            Vec::new()
        } else if v3 {
            // One DV per data file: the previous one merged in, its entry removed. A Puffin
            // file goes whole (dv.rs, Traps): its other DVs move into the new file unchanged.
            // After an upgrade from v2 a Parquet position delete file goes whole too: every
            // data file it covers gets a DV holding its positions (no data file ever has a
            // DV and a live position delete file: DuckDB 1.4's iceberg_scan crashes on one).
            let mut by_file: BTreeMap<u32, RoaringTreemap> = BTreeMap::new();
            for (f, p) in deletes {
                by_file.entry(f).or_default().insert(p as u64);
            }
            let mut replaced: HashSet<Arc<str>> = HashSet::new();
            loop {
                let before = (by_file.len(), replaced.len(), gone_parquet.len());
                for (p, covered) in &self.old_deletes.files {
                    if !gone_parquet.contains(p) && covered.iter().any(|f| by_file.contains_key(f))
                    {
                        gone_parquet.insert(p.clone());
                        for f in covered {
                            by_file.entry(*f).or_default();
                        }
                    }
                }
                replaced.extend(
                    by_file
                        .keys()
                        .filter_map(|f| self.dvs.get(f).map(|d| d.puffin.clone())),
                );
                for (f, d) in &self.dvs {
                    if replaced.contains(&d.puffin) {
                        by_file.entry(*f).or_default();
                    }
                }
                if before == (by_file.len(), replaced.len(), gone_parquet.len()) {
                    break;
                }
            }
            for (f, mut bm) in by_file {
                if let Some(prev) = self.dvs.get(&f) {
                    bm |= &prev.bitmap;
                }
                if let Some(old) = self.old_deletes.positions.get(&f) {
                    // The first DV of a data file written before the upgrade holds its
                    // Parquet position deletes too (Iceberg spec, "Deletion Vectors").
                    bm |= old;
                }
                merged.push((f, bm));
            }
            remove_delete_files = replaced
                .iter()
                .chain(&gone_parquet)
                .map(|p| p.to_string())
                .collect();
            let refs: Vec<(u32, &RoaringTreemap)> = merged.iter().map(|(f, b)| (*f, b)).collect();
            self.writer
                .write_deletion_vectors(&refs, &self.files)
                .await?
        } else {
            self.writer
                .write_position_deletes(deletes, &self.files)
                .await?
        };
        let delete_files_path: Option<Arc<str>> = delete_files
            .iter()
            .find(|f| crate::dv::is_dv(f))
            .map(|f| Arc::from(f.file_path()));
        let mut summary = std::collections::HashMap::new();
        summary.insert(SUMMARY_POSITION.to_owned(), position.to_string());
        summary.insert("tidemark.source".to_owned(), self.source.to_string());
        let changes = Changes {
            data_files: data,
            delete_files,
            remove_all: self.truncated,
            remove_delete_files,
            new_schema: self.pending_schema.take(),
            summary,
            ..Changes::default()
        };
        let (loaded, stats) =
            snapshot::commit(catalog, &self.loaded, changes, &mut self.writer).await?;
        self.loaded = loaded;
        self.writer.committed().await?;
        if let Some(puffin) = delete_files_path {
            for p in &gone_parquet {
                self.old_deletes.files.remove(p);
            }
            for (f, bitmap) in merged {
                self.old_deletes.positions.remove(&f);
                self.dvs.insert(
                    f,
                    LiveDv {
                        bitmap,
                        puffin: puffin.clone(),
                    },
                );
            }
        }
        self.truncated = false;
        self.recorded = Some(position);
        self.pending_rows = 0;
        self.since_compact += 1;
        tracing::debug!(table = %self.loaded.ident, snapshot = stats.snapshot_id, records = stats.records,
            deletes = stats.position_deletes, %position, "iceberg snapshot committed");
        Ok(Some(stats))
    }

    /// Partition of a file in the table's file table.
    pub fn partition_of(&self, file: u32) -> Option<&Struct> {
        self.files.partitions.get(file as usize)
    }

    /// Number of live delete files (for tests and maintenance decisions).
    pub fn is_delete(df: &DataFile) -> bool {
        df.content_type() == DataContentType::PositionDeletes
    }
}
