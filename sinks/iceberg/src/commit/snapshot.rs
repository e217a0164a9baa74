//! One Iceberg snapshot, written by hand on the crate's public spec types: new data and
//! delete manifests, the manifest list (the parent's manifests carried over, or rewritten
//! when files are removed), the snapshot with its summary, and the metadata update that the
//! catalog swaps in atomically.
//!
//! ```text
//! data files ─┐                         ┌─ carried parent manifests (append / row delta)
//! deletes   ──┼─► new manifests ──► manifest list ──► Snapshot{summary: tidemark.position}
//! removed   ──┘   (ADDED / DELETED)     └─ or rewritten ones (truncate, compaction)
//!                                              │
//!                  AddSchema? + AddSnapshot + SetSnapshotRef(main) ──► Catalog::commit
//!                                                   (SQL compare-and-swap, or REST commit)
//! ```
//!
//! # Traps
//! - New entries leave their sequence numbers null: they inherit the manifest list's
//!   sequence number, which is the snapshot's (Iceberg spec, "Sequence Number Inheritance").
//! - `Existing` and `Deleted` entries must keep both original sequence numbers.
//! - The operation is `overwrite` when anything is deleted (pyiceberg and Spark treat
//!   `append` snapshots as delete-free for incremental reads), `append` otherwise.
//! - Only manifests holding a removed entry are rewritten; the others are carried as they
//!   are (a deletion vector replaced every commit would otherwise rewrite every manifest).
//! - Format v3 (row lineage, Iceberg spec "Row Lineage"): the snapshot's `first-row-id` is
//!   the table's `next-row-id` and `added-rows` the rows of the data manifests the manifest
//!   list writer gave a `first_row_id` (new manifests, rewritten ones); the metadata
//!   builder (or the REST server) moves `next-row-id`. A rewritten data manifest writes each
//!   EXISTING/DELETED file's inherited `first_row_id` explicitly, so its rows keep their
//!   `_row_id`s. Updates are modelled as delete + insert (new row ids), which the spec allows.
//! - A table upgraded from v2: its v2 data manifests have no `first_row_id`; the first v3
//!   manifest list gives them one (the writer's range of added + existing rows, counted in
//!   `added-rows`), after which their files inherit ids like any other.

use std::collections::{HashMap, HashSet};

use iceberg::io::FileIO;
use iceberg::spec::{
    DataContentType, DataFile, DataFileBuilder, FormatVersion, ManifestContentType,
    ManifestEntryRef, ManifestFile, ManifestList, ManifestListWriter, ManifestWriterBuilder,
    Operation, Schema, SchemaRef, Snapshot, SnapshotReference, SnapshotRetention, Summary,
    MAIN_BRANCH,
};
use iceberg::{TableRequirement, TableUpdate};

use crate::commit::catalog::{Catalog, LoadedTable};
use crate::error::{IcebergError, IoContext};
use crate::writer::DataWriter;

/// Snapshot summary key holding the last source position the snapshot contains.
pub const SUMMARY_POSITION: &str = "tidemark.position";

/// What one snapshot changes.
#[derive(Debug, Default)]
pub struct Changes {
    pub data_files: Vec<DataFile>,
    pub delete_files: Vec<DataFile>,
    /// Remove every live file of the parent first (a truncate).
    pub remove_all: bool,
    /// Remove these live files (a compaction).
    pub remove_paths: HashSet<String>,
    /// Remove every delete entry of these delete files: Puffin files whose DVs are replaced
    /// by merged copies in `delete_files` (at most one DV per data file), and Parquet position
    /// delete files (of a table upgraded from v2) whose positions all moved into DVs there.
    pub remove_delete_files: HashSet<String>,
    /// A new current schema (schema evolution), added before the snapshot.
    pub new_schema: Option<Schema>,
    /// Extra summary properties (`tidemark.position`, …).
    pub summary: HashMap<String, String>,
    /// `replace` for a compaction; otherwise derived.
    pub replace: bool,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.data_files.is_empty()
            && self.delete_files.is_empty()
            && !self.remove_all
            && self.remove_paths.is_empty()
            && self.remove_delete_files.is_empty()
            && self.new_schema.is_none()
    }
}

/// What a commit did (delta-rs style metrics).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitStats {
    pub snapshot_id: i64,
    pub sequence_number: i64,
    pub data_files: usize,
    pub delete_files: usize,
    pub records: u64,
    pub position_deletes: u64,
    pub removed_files: usize,
}

/// The manifests of the table's current snapshot.
pub async fn current_manifests(
    file_io: &FileIO,
    t: &LoadedTable,
) -> Result<Vec<ManifestFile>, IcebergError> {
    let Some(snap) = t.metadata.current_snapshot() else {
        return Ok(Vec::new());
    };
    let loc = snap.manifest_list();
    let bytes = file_io
        .new_input(loc)
        .io_ctx("open manifest list", loc)?
        .read()
        .await
        .io_ctx("read manifest list", loc)?;
    Ok(
        ManifestList::parse_with_version(&bytes, t.metadata.format_version())
            .map_err(|e| IcebergError::corrupt(loc, e.to_string()))?
            .consume_entries()
            .into_iter()
            .collect(),
    )
}

/// Every live file of the current snapshot with its entry.
pub async fn live_entries(
    file_io: &FileIO,
    t: &LoadedTable,
) -> Result<Vec<iceberg::spec::ManifestEntryRef>, IcebergError> {
    let mut out = Vec::new();
    for m in current_manifests(file_io, t).await? {
        let manifest = m
            .load_manifest(file_io)
            .await
            .io_ctx("read manifest", &m.manifest_path)?;
        out.extend(manifest.entries().iter().filter(|e| e.is_alive()).cloned());
    }
    Ok(out)
}

/// Writes manifests and the manifest list, then commits through the catalog. Every file it
/// creates is first added to `log`'s pending-files log (orphan cleanup after a crash).
pub async fn commit(
    catalog: &Catalog,
    base: &LoadedTable,
    changes: Changes,
    log: &mut DataWriter,
) -> Result<(LoadedTable, CommitStats), IcebergError> {
    let file_io = &catalog.file_io;
    let md = &base.metadata;
    let table = base.ident.to_string();
    let snapshot_id = new_snapshot_id(base);
    // Checked: the metadata is the catalog's file (another writer's too).
    let seq = md.last_sequence_number().checked_add(1).ok_or_else(|| {
        IcebergError::corrupt(&table, "last-sequence-number is i64::MAX; no next snapshot")
    })?;
    let parent = md.current_snapshot_id();
    let schema: SchemaRef = match &changes.new_schema {
        Some(s) => {
            // The id the metadata builder will give it.
            let next_id = md
                .schemas_iter()
                .map(|s| s.schema_id())
                .max()
                .unwrap_or(0)
                .checked_add(1)
                .ok_or_else(|| IcebergError::corrupt(&table, "a schema id is i32::MAX"))?;
            std::sync::Arc::new(
                s.clone()
                    .into_builder()
                    .with_schema_id(next_id)
                    .build()
                    .map_err(|e| IcebergError::corrupt(&table, format!("schema: {e}")))?,
            )
        }
        None => md.current_schema().clone(),
    };
    let spec = md.default_partition_spec().as_ref().clone();
    let location = md.location().trim_end_matches('/').to_owned();
    let v3 = md.format_version() >= FormatVersion::V3;
    let mut stats = CommitStats {
        snapshot_id,
        sequence_number: seq,
        data_files: changes.data_files.len(),
        delete_files: changes.delete_files.len(),
        records: changes.data_files.iter().map(|f| f.record_count()).sum(),
        position_deletes: changes.delete_files.iter().map(|f| f.record_count()).sum(),
        removed_files: 0,
    };
    let mut manifests: Vec<ManifestFile> = Vec::new();
    let new_manifest = async |content: DataContentType, log: &mut DataWriter| {
        let path = format!("{location}/metadata/{}-m0.avro", uuid::Uuid::new_v4());
        log.log_new_path(&path).await?;
        let out = file_io.new_output(&path).io_ctx("create manifest", &path)?;
        let b = ManifestWriterBuilder::new(out, Some(snapshot_id), schema.clone(), spec.clone());
        Ok::<_, IcebergError>(match (content, v3) {
            (DataContentType::Data, false) => b.build_v2_data(),
            (_, false) => b.build_v2_deletes(),
            (DataContentType::Data, true) => b.build_v3_data(),
            (_, true) => b.build_v3_deletes(),
        })
    };
    // Removed (data files, delete files, of which deletion vectors).
    let mut removed = (0usize, 0usize, 0usize);
    let gone = |e: &ManifestEntryRef| {
        changes.remove_all
            || changes.remove_paths.contains(e.file_path())
            || (e.data_file.content_type() == DataContentType::PositionDeletes
                && changes.remove_delete_files.contains(e.file_path()))
    };
    // Carry the parent's manifests, or rewrite those that lose a file.
    let removes_data = changes.remove_all || !changes.remove_paths.is_empty();
    let removes_any = removes_data || !changes.remove_delete_files.is_empty();
    for m in current_manifests(file_io, base).await? {
        // Replacing deletion vectors only touches delete manifests.
        if !removes_any || (!removes_data && m.content == ManifestContentType::Data) {
            manifests.push(m);
            continue;
        }
        let manifest = m
            .load_manifest(file_io)
            .await
            .io_ctx("read manifest", &m.manifest_path)?;
        let entries = manifest.entries();
        if !entries.iter().any(|e| e.is_alive()) {
            continue; // only DELETED entries of an earlier snapshot
        }
        if !entries.iter().any(|e| e.is_alive() && gone(e)) {
            manifests.push(m);
            continue;
        }
        let row_ids = inherited_row_ids(&m, entries)
            .map_err(|reason| IcebergError::corrupt(&m.manifest_path, reason))?;
        let content = match m.content {
            ManifestContentType::Data => DataContentType::Data,
            ManifestContentType::Deletes => DataContentType::PositionDeletes,
        };
        let mut w = new_manifest(content, log).await?;
        for (e, row_id) in entries.iter().zip(row_ids) {
            if !e.is_alive() {
                continue;
            }
            let (s, fs) = (
                e.sequence_number.unwrap_or(0),
                e.file_sequence_number.or(e.sequence_number),
            );
            let file = match row_id {
                Some(id) if v3 => with_first_row_id(&e.data_file, id, m.partition_spec_id)
                    .map_err(|err| {
                        IcebergError::corrupt(&table, format!("manifest entry: {err}"))
                    })?,
                _ => e.data_file.clone(),
            };
            if gone(e) {
                stats.removed_files += 1;
                match e.data_file.content_type() {
                    DataContentType::Data => removed.0 += 1,
                    _ if crate::dv::is_dv(&e.data_file) => removed.2 += 1,
                    _ => removed.1 += 1,
                }
                w.add_delete_file(file, s, fs.or(Some(0)))
            } else {
                w.add_existing_file(
                    file,
                    e.snapshot_id.unwrap_or(snapshot_id),
                    s,
                    fs.or(Some(0)),
                )
            }
            .map_err(|err| IcebergError::corrupt(&table, format!("manifest entry: {err}")))?;
        }
        manifests.push(
            w.write_manifest_file()
                .await
                .io_ctx("write manifest", &table)?,
        );
    }
    for (files, content) in [
        (&changes.data_files, DataContentType::Data),
        (&changes.delete_files, DataContentType::PositionDeletes),
    ] {
        if files.is_empty() {
            continue;
        }
        let mut w = new_manifest(content, log).await?;
        for f in files {
            w.add_file(f.clone(), -1)
                .map_err(|err| IcebergError::corrupt(&table, format!("manifest entry: {err}")))?;
        }
        manifests.insert(
            0,
            w.write_manifest_file()
                .await
                .io_ctx("write manifest", &table)?,
        );
    }
    let list_path = format!(
        "{location}/metadata/snap-{snapshot_id}-1-{}.avro",
        uuid::Uuid::new_v4()
    );
    log.log_new_path(&list_path).await?;
    let out = file_io
        .new_output(&list_path)
        .io_ctx("create manifest list", &list_path)?;
    let list_out = out
        .writer()
        .await
        .io_ctx("create manifest list", &list_path)?;
    let first_row_id = md.next_row_id();
    let mut list = if v3 {
        ManifestListWriter::v3(list_out, snapshot_id, parent, seq, Some(first_row_id))
    } else {
        ManifestListWriter::v2(list_out, snapshot_id, parent, seq)
    };
    list.add_manifests(manifests.into_iter())
        .map_err(|e| IcebergError::corrupt(&table, format!("manifest list: {e}")))?;
    // Rows given ids by this snapshot (v3): the manifest list writer's advance.
    let added_rows = list
        .next_row_id()
        .map(|next| next.saturating_sub(first_row_id));
    list.close()
        .await
        .io_ctx("write manifest list", &list_path)?;

    let operation = if changes.replace {
        Operation::Replace
    } else if changes.remove_all || !changes.delete_files.is_empty() {
        Operation::Overwrite
    } else {
        Operation::Append
    };
    let mut props = changes.summary;
    props.insert("added-data-files".into(), stats.data_files.to_string());
    props.insert("added-records".into(), stats.records.to_string());
    props.insert("added-delete-files".into(), stats.delete_files.to_string());
    props.insert(
        "added-position-deletes".into(),
        stats.position_deletes.to_string(),
    );
    let dvs = changes
        .delete_files
        .iter()
        .filter(|f| crate::dv::is_dv(f))
        .count();
    if dvs > 0 {
        props.insert("added-dvs".into(), dvs.to_string());
    }
    if removed.0 > 0 {
        props.insert("deleted-data-files".into(), removed.0.to_string());
    }
    if removed.1 + removed.2 > 0 {
        props.insert(
            "removed-delete-files".into(),
            (removed.1 + removed.2).to_string(),
        );
    }
    if removed.2 > 0 {
        props.insert("removed-dvs".into(), removed.2.to_string());
    }
    let builder = Snapshot::builder()
        .with_snapshot_id(snapshot_id)
        .with_parent_snapshot_id(parent)
        .with_sequence_number(seq)
        .with_timestamp_ms(now_ms().max(md.last_updated_ms().saturating_add(1)))
        .with_manifest_list(list_path)
        .with_summary(Summary {
            operation,
            additional_properties: props,
        })
        .with_schema_id(schema.schema_id());
    let snapshot = match (v3, added_rows) {
        (true, Some(added)) => builder.with_row_range(first_row_id, added).build(),
        _ => builder.build(),
    };
    let mut updates = Vec::new();
    if changes.new_schema.is_some() {
        // With the id it will get: a REST server (pyiceberg's metadata update) keeps the
        // schema's own id, iceberg-rust's builder assigns the same one.
        updates.push(TableUpdate::AddSchema {
            schema: schema.as_ref().clone(),
        });
        updates.push(TableUpdate::SetCurrentSchema { schema_id: -1 });
    }
    updates.push(TableUpdate::AddSnapshot { snapshot });
    updates.push(TableUpdate::SetSnapshotRef {
        ref_name: MAIN_BRANCH.to_owned(),
        reference: SnapshotReference::new(snapshot_id, SnapshotRetention::branch(None, None, None)),
    });
    // Checked locally; the catalog's compare-and-swap makes them hold at commit time.
    let requirement = TableRequirement::RefSnapshotIdMatch {
        r#ref: MAIN_BRANCH.to_owned(),
        snapshot_id: parent,
    };
    requirement
        .check(Some(md))
        .map_err(|_| IcebergError::Conflict {
            table: table.clone(),
            expected: base.metadata_location.clone(),
        })?;
    let loaded = catalog.commit(base, updates).await?;
    Ok((loaded, stats))
}

/// The `first_row_id` of each entry's data file as a v3 reader infers it: its own, or the
/// manifest's `first_row_id` plus the record counts of the earlier data files without one
/// (Iceberg spec, "First Row ID Inheritance"; DELETED entries without one take none).
/// `None` before v3 (a v2 manifest the manifest list has not given a `first_row_id` yet,
/// as in the first snapshot after an upgrade: its files get ids when the rewritten manifest
/// is listed) or for delete files.
/// Row ids past `i64::MAX` are corrupt metadata (the error says which).
fn inherited_row_ids(
    m: &ManifestFile,
    entries: &[ManifestEntryRef],
) -> Result<Vec<Option<i64>>, String> {
    let mut next = match m.first_row_id {
        Some(v) => {
            Some(i64::try_from(v).map_err(|_| format!("manifest first_row_id {v} is beyond i64"))?)
        }
        None => None,
    };
    entries
        .iter()
        .map(|e| {
            let df = &e.data_file;
            if df.content_type() != DataContentType::Data {
                return Ok(None);
            }
            if let Some(id) = df.first_row_id() {
                return Ok(Some(id));
            }
            // DELETED entries take no row ids: the manifest list gave the manifest a range of
            // its added + existing rows only (Java's and iceberg-go's id assigners agree).
            if !e.is_alive() {
                return Ok(None);
            }
            let Some(id) = next else {
                return Ok(None);
            };
            let end = i64::try_from(df.record_count())
                .ok()
                .and_then(|n| id.checked_add(n))
                .ok_or_else(|| {
                    format!(
                        "row ids of {} ({} records from row id {id}) are beyond i64",
                        df.file_path(),
                        df.record_count()
                    )
                })?;
            next = Some(end);
            Ok(Some(id))
        })
        .collect()
}

/// `df` with an explicit `first_row_id` (the crate's fields are private: rebuilt).
fn with_first_row_id(df: &DataFile, id: i64, spec_id: i32) -> Result<DataFile, String> {
    let mut b = DataFileBuilder::default();
    b.content(df.content_type())
        .file_path(df.file_path().to_owned())
        .file_format(df.file_format())
        .partition(df.partition().clone())
        .record_count(df.record_count())
        .file_size_in_bytes(df.file_size_in_bytes())
        .column_sizes(df.column_sizes().clone())
        .value_counts(df.value_counts().clone())
        .null_value_counts(df.null_value_counts().clone())
        .nan_value_counts(df.nan_value_counts().clone())
        .lower_bounds(df.lower_bounds().clone())
        .upper_bounds(df.upper_bounds().clone())
        .key_metadata(df.key_metadata().map(|k| k.to_vec()))
        .split_offsets(df.split_offsets().map(|k| k.to_vec()))
        .equality_ids(df.equality_ids())
        .first_row_id(Some(id))
        .partition_spec_id(spec_id)
        .referenced_data_file(df.referenced_data_file())
        .content_offset(df.content_offset())
        .content_size_in_bytes(df.content_size_in_bytes());
    if let Some(o) = df.sort_order_id() {
        b.sort_order_id(o);
    }
    b.build().map_err(|e| e.to_string())
}

fn new_snapshot_id(t: &LoadedTable) -> i64 {
    loop {
        let (hi, lo) = uuid::Uuid::new_v4().as_u64_pair();
        let id = ((hi ^ lo) & (i64::MAX as u64)) as i64;
        if id != 0 && t.metadata.snapshot_by_id(id).is_none() {
            return id;
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The last source position recorded in the current snapshot's summary (or an ancestor's,
/// when maintenance snapshots came after it).
pub fn recorded_position(t: &LoadedTable) -> Option<String> {
    let md = &t.metadata;
    let mut snap = md.current_snapshot().cloned();
    while let Some(s) = snap {
        if let Some(p) = s.summary().additional_properties.get(SUMMARY_POSITION) {
            return Some(p.clone());
        }
        snap = s
            .parent_snapshot_id()
            .and_then(|id| md.snapshot_by_id(id).cloned());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use iceberg::spec::{DataFileFormat, ManifestEntry, ManifestStatus, Struct};

    fn entry(path: &str, status: ManifestStatus, rows: u64) -> ManifestEntryRef {
        let df = DataFileBuilder::default()
            .content(DataContentType::Data)
            .file_path(path.to_owned())
            .file_format(DataFileFormat::Parquet)
            .partition(Struct::empty())
            .record_count(rows)
            .file_size_in_bytes(100)
            .partition_spec_id(0)
            .build()
            .unwrap();
        std::sync::Arc::new(
            ManifestEntry::builder()
                .status(status)
                .snapshot_id(1)
                .sequence_number(1)
                .file_sequence_number(1)
                .data_file(df)
                .build(),
        )
    }

    /// A v2 manifest carried into a v3 manifest list gets the range of its added + existing
    /// rows: a DELETED entry before a live one takes no ids (else the live file's ids run
    /// into the next manifest's range).
    #[test]
    fn deleted_entries_take_no_inherited_row_ids() {
        let m = ManifestFile {
            manifest_path: "m.avro".into(),
            manifest_length: 1,
            partition_spec_id: 0,
            content: ManifestContentType::Data,
            sequence_number: 1,
            min_sequence_number: 1,
            added_snapshot_id: 1,
            added_files_count: Some(0),
            existing_files_count: Some(2),
            deleted_files_count: Some(1),
            added_rows_count: Some(0),
            existing_rows_count: Some(15),
            deleted_rows_count: Some(7),
            partitions: None,
            key_metadata: None,
            first_row_id: Some(100),
        };
        let entries = [
            entry("a", ManifestStatus::Existing, 10),
            entry("gone", ManifestStatus::Deleted, 7),
            entry("b", ManifestStatus::Existing, 5),
        ];
        assert_eq!(
            inherited_row_ids(&m, &entries).unwrap(),
            vec![Some(100), None, Some(110)]
        );
        // Not listed with a first_row_id yet (v2, or the first v3 snapshot's rewrite).
        let v2 = ManifestFile {
            first_row_id: None,
            ..m
        };
        assert_eq!(
            inherited_row_ids(&v2, &entries).unwrap(),
            vec![None, None, None]
        );
    }
}
