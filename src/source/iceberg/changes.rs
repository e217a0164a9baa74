//! What one Iceberg snapshot changed, read from its manifests: the data files it added (with
//! the positions it deleted in them again), the rows it deleted (position deletes into older
//! files, and rows of the data files it removed), and whether it removed the whole table.
//!
//! ```text
//! snapshot S ─► manifest list ─► manifests written by S (added_snapshot_id = S)
//!                                   ├─ ADDED data file          → inserted rows (read later, per file)
//!                                   ├─ ADDED position deletes   → (file, pos) deleted in S
//!                                   └─ DELETED data file        → its rows deleted in S
//!                                          minus the positions deleted before S (parent's live deletes)
//! every live data file of the parent DELETED by S ─► a truncate
//! ```
//!
//! The iceberg crate (0.10.1) has no incremental scan (`TableScan` reads one snapshot's whole
//! state), so the diff between a snapshot and its parent is computed here from the manifest
//! entries' status and snapshot id (Iceberg spec, "Manifests": an entry is ADDED or DELETED
//! by the snapshot that wrote it). The rows themselves are read with the crate's own
//! `ArrowReader` (projection by field id, columns added later read as NULL, type
//! promotion), one data file at a time.
//!
//! # Traps
//! - Position deletes are positions in the data file's row order: a file is read without
//!   predicates or deletes, so the reader's n-th row is position n.
//! - A row added and deleted again inside one snapshot (several source transactions in one
//!   commit) appears in neither list: the snapshot's net effect.
//! - A removed data file's rows that an older snapshot had already deleted are not deleted
//!   twice: the parent's live position deletes are subtracted.
//! - Equality deletes and v3 deletion vectors are not read (a definite error naming the
//!   snapshot and file): Tidemark's sink writes position deletes only.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, RecordBatch, UInt32Array};
use arrow_schema::DataType;
use futures_util::TryStreamExt;
use tidemark_iceberg::iceberg::arrow::ArrowReaderBuilder;
use tidemark_iceberg::iceberg::io::FileIO;
use tidemark_iceberg::iceberg::metadata_columns::{
    RESERVED_FIELD_ID_DELETE_FILE_PATH, RESERVED_FIELD_ID_DELETE_FILE_POS,
};
use tidemark_iceberg::iceberg::scan::FileScanTask;
use tidemark_iceberg::iceberg::spec::{
    DataContentType, DataFileFormat, ManifestEntryRef, ManifestFile, ManifestList, ManifestStatus,
    SchemaRef, SnapshotRef, TableMetadata,
};
use tidemark_iceberg::mirror::index::{read_columns, read_file};
use tidemark_iceberg::IcebergError;

/// A data file a snapshot added.
#[derive(Clone, Debug)]
pub struct AddedFile {
    pub path: String,
    pub format: DataFileFormat,
    pub size: u64,
    pub records: u64,
    /// Positions deleted again by the same snapshot.
    pub dead: HashSet<u64>,
}

/// One snapshot's changes (rows of added files are read later, file by file).
#[derive(Debug)]
pub struct SnapshotChanges {
    /// The schema the snapshot was written with.
    pub schema: SchemaRef,
    /// The snapshot removed every live data file of its parent.
    pub truncate: bool,
    /// Deleted rows (before images) in `schema`; empty when `truncate` (not read).
    pub deleted: Vec<RecordBatch>,
    /// Added data files in manifest order.
    pub added: Vec<AddedFile>,
}

/// The manifests of `snap`.
pub async fn manifests(
    io: &FileIO,
    md: &TableMetadata,
    snap: &SnapshotRef,
) -> Result<Vec<ManifestFile>, IcebergError> {
    let loc = snap.manifest_list();
    let bytes = read_file(io, loc).await?;
    Ok(
        ManifestList::parse_with_version(&bytes, md.format_version())
            .map_err(|e| IcebergError::corrupt(loc, format!("manifest list: {e}")))?
            .consume_entries()
            .into_iter()
            .collect(),
    )
}

async fn entries(io: &FileIO, m: &ManifestFile) -> Result<Vec<ManifestEntryRef>, IcebergError> {
    let manifest = m
        .load_manifest(io)
        .await
        .map_err(|e| IcebergError::io("read manifest", &m.manifest_path, e))?;
    Ok(manifest.entries().to_vec())
}

/// Every live entry of `snap`.
async fn live_entries(
    io: &FileIO,
    md: &TableMetadata,
    snap: &SnapshotRef,
) -> Result<Vec<ManifestEntryRef>, IcebergError> {
    let mut out = Vec::new();
    for m in manifests(io, md, snap).await? {
        out.extend(entries(io, &m).await?.into_iter().filter(|e| e.is_alive()));
    }
    Ok(out)
}

/// `(data file path, position)` pairs of one position-delete file.
async fn position_deletes(
    io: &FileIO,
    e: &ManifestEntryRef,
    snapshot: i64,
) -> Result<Vec<(String, u64)>, IcebergError> {
    let path = e.file_path();
    if e.file_format() != DataFileFormat::Parquet {
        return Err(IcebergError::corrupt(
            path,
            format!(
                "snapshot {snapshot}: {:?} delete files (deletion vectors) are not read by the Iceberg source",
                e.file_format()
            ),
        ));
    }
    let cols = read_columns(
        read_file(io, path).await?,
        &[
            RESERVED_FIELD_ID_DELETE_FILE_PATH,
            RESERVED_FIELD_ID_DELETE_FILE_POS,
        ],
        path,
    )?;
    if cols.len() != 2 {
        return Ok(Vec::new());
    }
    let paths = arrow_cast::cast(&cols[0], &DataType::Utf8)
        .map_err(|e| IcebergError::corrupt(path, format!("file_path column: {e}")))?;
    let paths = paths.as_string::<i32>();
    let pos = arrow_cast::cast(&cols[1], &DataType::Int64)
        .map_err(|e| IcebergError::corrupt(path, format!("pos column: {e}")))?;
    let pos = pos.as_primitive::<Int64Type>();
    Ok((0..paths.len())
        .filter(|i| paths.is_valid(*i) && pos.is_valid(*i))
        .map(|i| (paths.value(i).to_owned(), pos.value(i).max(0) as u64))
        .collect())
}

/// Reads what `snap` changed relative to its parent (`parent`, if still in the metadata).
pub async fn read(
    io: &FileIO,
    md: &TableMetadata,
    snap: &SnapshotRef,
    parent: Option<&SnapshotRef>,
) -> Result<SnapshotChanges, IcebergError> {
    let id = snap.snapshot_id();
    let table = md.location().to_owned();
    let schema = match snap.schema_id().and_then(|s| md.schema_by_id(s)) {
        Some(s) => s.clone(),
        None => md.current_schema().clone(),
    };
    let mut added: Vec<AddedFile> = Vec::new();
    let mut removed: Vec<ManifestEntryRef> = Vec::new();
    let mut deleted_pos: HashMap<String, BTreeSet<u64>> = HashMap::new();
    for m in manifests(io, md, snap).await? {
        if m.added_snapshot_id != id {
            continue; // carried over from an older snapshot: nothing of S in it
        }
        for e in entries(io, &m).await? {
            if e.snapshot_id() != Some(id) {
                continue;
            }
            match (e.status(), e.content_type()) {
                (ManifestStatus::Added, DataContentType::Data) => added.push(AddedFile {
                    path: e.file_path().to_owned(),
                    format: e.file_format(),
                    size: e.file_size_in_bytes(),
                    records: e.record_count(),
                    dead: HashSet::new(),
                }),
                (ManifestStatus::Added, DataContentType::PositionDeletes) => {
                    for (path, pos) in position_deletes(io, &e, id).await? {
                        deleted_pos.entry(path).or_default().insert(pos);
                    }
                }
                (ManifestStatus::Added, DataContentType::EqualityDeletes) => {
                    return Err(IcebergError::corrupt(
                        &table,
                        format!(
                            "snapshot {id} adds equality deletes ({}); the Iceberg source reads position deletes only",
                            e.file_path()
                        ),
                    ));
                }
                (ManifestStatus::Deleted, DataContentType::Data) => removed.push(e.clone()),
                // A delete file removed along with its data file (truncate, compaction).
                _ => {}
            }
        }
    }
    for f in added.iter_mut() {
        if let Some(dead) = deleted_pos.remove(&f.path) {
            f.dead = dead.into_iter().collect();
        }
    }
    let mut truncate = false;
    if !removed.is_empty() {
        let parent_live = match parent {
            Some(p) => live_entries(io, md, p).await?,
            None => Vec::new(),
        };
        let removed_paths: HashSet<&str> = removed.iter().map(|e| e.file_path()).collect();
        let parent_data: Vec<&ManifestEntryRef> = parent_live
            .iter()
            .filter(|e| e.content_type() == DataContentType::Data)
            .collect();
        truncate = !parent_data.is_empty()
            && parent_data
                .iter()
                .all(|e| removed_paths.contains(e.file_path()));
        if !truncate {
            // Rows of removed files, minus those deleted before this snapshot.
            let mut before: HashMap<String, BTreeSet<u64>> = HashMap::new();
            for e in parent_live
                .iter()
                .filter(|e| e.content_type() == DataContentType::PositionDeletes)
            {
                for (path, pos) in position_deletes(io, e, id).await? {
                    if removed_paths.contains(path.as_str()) {
                        before.entry(path).or_default().insert(pos);
                    }
                }
            }
            for e in &removed {
                let gone = before.remove(e.file_path()).unwrap_or_default();
                let all: BTreeSet<u64> = (0..e.record_count())
                    .filter(|p| !gone.contains(p))
                    .collect();
                deleted_pos
                    .entry(e.file_path().to_owned())
                    .or_default()
                    .extend(all);
            }
        }
    }
    let mut deleted = Vec::new();
    if !truncate {
        let mut files: Vec<(String, BTreeSet<u64>)> = deleted_pos.into_iter().collect();
        files.sort();
        for (path, positions) in files {
            let size = io
                .new_input(&path)
                .map_err(|e| IcebergError::io("open", &path, e))?
                .metadata()
                .await
                .map_err(|e| IcebergError::io("stat", &path, e))?
                .size;
            let rows = read_rows(io, &schema, &path, DataFileFormat::Parquet, size).await?;
            let idx = UInt32Array::from(positions.iter().map(|p| *p as u32).collect::<Vec<_>>());
            if positions
                .last()
                .is_some_and(|p| *p >= rows.num_rows() as u64)
            {
                return Err(IcebergError::corrupt(
                    &path,
                    format!(
                        "snapshot {id} deletes a position past the file's {} rows",
                        rows.num_rows()
                    ),
                ));
            }
            deleted.push(
                arrow_select::take::take_record_batch(&rows, &idx)
                    .map_err(|e| IcebergError::corrupt(&path, format!("deleted rows: {e}")))?,
            );
        }
    }
    Ok(SnapshotChanges {
        schema,
        truncate,
        deleted,
        added,
    })
}

/// Every row of one data file, projected to `schema` (by field id), in file order.
pub async fn read_rows(
    io: &FileIO,
    schema: &SchemaRef,
    path: &str,
    format: DataFileFormat,
    size: u64,
) -> Result<RecordBatch, IcebergError> {
    let arrow_schema = Arc::new(
        tidemark_iceberg::iceberg::arrow::schema_to_arrow_schema(schema)
            .map_err(|e| IcebergError::corrupt(path, format!("schema: {e}")))?,
    );
    let task = FileScanTask {
        file_size_in_bytes: size,
        start: 0,
        length: size,
        record_count: None,
        data_file_path: path.to_owned(),
        data_file_format: format,
        schema: schema.clone(),
        project_field_ids: schema.as_struct().fields().iter().map(|f| f.id).collect(),
        predicate: None,
        deletes: Vec::new(),
        partition: None,
        partition_spec: None,
        name_mapping: None,
        case_sensitive: true,
    };
    let runtime = tidemark_iceberg::iceberg::Runtime::try_current()
        .map_err(|e| IcebergError::corrupt(path, format!("no tokio runtime: {e}")))?;
    let reader = ArrowReaderBuilder::new(io.clone(), runtime)
        .with_data_file_concurrency_limit(1)
        .with_row_group_filtering_enabled(false)
        .with_row_selection_enabled(false)
        .build();
    let tasks = Box::pin(futures_util::stream::iter([Ok(task)]));
    let batches: Vec<RecordBatch> = reader
        .read(tasks)
        .map_err(|e| IcebergError::io("read", path, e))?
        .stream()
        .try_collect()
        .await
        .map_err(|e| IcebergError::io("read", path, e))?;
    let schema = batches.first().map(|b| b.schema()).unwrap_or(arrow_schema);
    arrow_select::concat::concat_batches(&schema, &batches)
        .map_err(|e| IcebergError::corrupt(path, format!("rows: {e}")))
}
