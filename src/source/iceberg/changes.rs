//! What one Iceberg snapshot changed, read from its manifests: the data files it added (with
//! the positions it deleted in them again), the rows it deleted (position deletes and
//! deletion vectors into older files, and rows of the data files it removed), and whether it
//! removed the whole table.
//!
//! ```text
//! snapshot S ─► manifest list ─► manifests written by S (added_snapshot_id = S)
//!                                   ├─ ADDED data file          → inserted rows (read later, per file)
//!                                   ├─ ADDED position deletes   → (file, pos) deleted in S
//!                                   ├─ ADDED deletion vector    → (referenced file, pos) deleted in S
//!                                   │      minus the positions deleted before S (parent's live deletes)
//!                                   ├─ DELETED deletion vector  → nothing (replaced by S's new one)
//!                                   └─ DELETED data file        → its rows deleted in S
//!                                          minus the positions deleted before S (parent's live deletes)
//! every live data file of the parent DELETED by S ─► a truncate
//!
//! parent's live deletes of a data file = its live deletion vector if it has one,
//!                                        else its live Parquet position deletes
//! ```
//!
//! The iceberg crate (0.10.1) has no incremental scan (`TableScan` reads one snapshot's whole
//! state), so the diff between a snapshot and its parent is computed here from the manifest
//! entries' status and snapshot id (Iceberg spec, "Manifests": an entry is ADDED or DELETED
//! by the snapshot that wrote it). The rows themselves are read with the crate's own
//! `ArrowReader` (projection by field id, columns added later read as NULL, type
//! promotion), one data file at a time. Deletion vectors are read with the sink's own
//! decoder (`tidemark_iceberg::dv::read_dv`: one ranged read of the blob, length, magic and
//! CRC checked); the crate's delete loader parses every delete file as Parquet.
//!
//! # Traps
//! - Position deletes are positions in the data file's row order: a file is read without
//!   predicates or deletes, so the reader's n-th row is position n.
//! - A row added and deleted again inside one snapshot (several source transactions in one
//!   commit) appears in neither list: the snapshot's net effect.
//! - A removed data file's rows that an older snapshot had already deleted are not deleted
//!   twice: the parent's live deletes (position deletes or deletion vector) are subtracted.
//! - A deletion vector is cumulative, not a delta (format v3; Iceberg spec, "Deletion
//!   Vectors", <https://iceberg.apache.org/spec/#deletion-vectors>): at most one per data file
//!   per snapshot, so a snapshot deleting more rows of a file writes a new DV holding the old
//!   positions too and removes the old DV's entry in the same snapshot. The rows S deleted
//!   are the new DV minus the parent's live DV of that file; S's DELETED DV entries delete
//!   nothing. Tidemark's sink replaces a Puffin file whole (`tidemark_iceberg::dv`, Traps), so
//!   many of S's new DVs are unchanged copies: they diff to nothing. A second live DV for a
//!   file (the old one not removed) is a definite error.
//! - A table upgraded from v2 may keep Parquet position deletes next to DVs: the first DV of a
//!   data file must merge them (spec, "Position Delete Files" and Appendix E), and readers
//!   ignore a data file's position delete files once it has a DV, so the parent's live
//!   deletes of a file are its DV when it has one, else its position deletes.
//! - Equality deletes are not read (a definite error naming the snapshot and file): their
//!   rows are found by value, not position, which needs the whole table state.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use arrow_array::{RecordBatch, UInt32Array};
use futures_util::TryStreamExt;
use tidemark_iceberg::iceberg::arrow::ArrowReaderBuilder;
use tidemark_iceberg::iceberg::io::FileIO;
use tidemark_iceberg::iceberg::metadata_columns::{
    RESERVED_FIELD_ID_DELETE_FILE_PATH, RESERVED_FIELD_ID_DELETE_FILE_POS,
};
use tidemark_iceberg::iceberg::scan::FileScanTask;
use tidemark_iceberg::iceberg::spec::{
    DataContentType, DataFileFormat, ManifestContentType, ManifestEntryRef, ManifestFile,
    ManifestList, ManifestStatus, SchemaRef, SnapshotRef, TableMetadata,
};
use tidemark_iceberg::mirror::index::{position_delete_rows, read_columns, read_file};
use tidemark_iceberg::roaring::RoaringTreemap;
use tidemark_iceberg::{dv, IcebergError};

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

/// Every live entry of `snap` (of its delete manifests only, with `deletes_only`).
async fn live_entries(
    io: &FileIO,
    md: &TableMetadata,
    snap: &SnapshotRef,
    deletes_only: bool,
) -> Result<Vec<ManifestEntryRef>, IcebergError> {
    let mut out = Vec::new();
    for m in manifests(io, md, snap).await? {
        if deletes_only && m.content != ManifestContentType::Deletes {
            continue;
        }
        out.extend(entries(io, &m).await?.into_iter().filter(|e| e.is_alive()));
    }
    Ok(out)
}

/// The deletes live in one snapshot, for some data files.
#[derive(Debug, Default)]
struct LiveDeletes {
    /// Deletion vectors by referenced data file.
    dvs: HashMap<String, RoaringTreemap>,
    /// Parquet position deletes by data file.
    positions: HashMap<String, RoaringTreemap>,
}

impl LiveDeletes {
    /// The positions deleted in the data file `path`: its DV if it has one (a DV holds every
    /// position delete of its file; Traps), else its position deletes.
    fn of(&self, path: &str) -> Option<&RoaringTreemap> {
        self.dvs.get(path).or_else(|| self.positions.get(path))
    }

    /// Reads the live deletes among `live` that apply to data files in `paths`.
    async fn read(
        io: &FileIO,
        live: &[ManifestEntryRef],
        paths: &HashSet<String>,
        snapshot: i64,
    ) -> Result<Self, IcebergError> {
        let mut out = LiveDeletes::default();
        for e in live {
            if e.content_type() != DataContentType::PositionDeletes {
                continue;
            }
            let target = e.data_file().referenced_data_file();
            if dv::is_dv(e.data_file()) {
                let target = dv_target(e, snapshot)?;
                if !paths.contains(&target) {
                    continue;
                }
                let bitmap = dv::read_dv(io, e.data_file()).await?;
                if out.dvs.insert(target.clone(), bitmap).is_some() {
                    return Err(two_dvs(e, snapshot, &target));
                }
                continue;
            }
            if target.is_some_and(|t| !paths.contains(&t)) {
                continue; // a delete file of one other data file: not read
            }
            for (path, pos) in position_deletes(io, e, snapshot).await? {
                if paths.contains(&path) {
                    out.positions.entry(path).or_default().insert(pos);
                }
            }
        }
        Ok(out)
    }
}

/// What a snapshot's deletion vector deleted: its positions not deleted before (it replaces
/// the previous DV of its data file and holds the previous positions too).
fn newly_deleted(new: &RoaringTreemap, before: Option<&RoaringTreemap>) -> BTreeSet<u64> {
    match before {
        Some(b) => (new - b).iter().collect(),
        None => new.iter().collect(),
    }
}

/// The data file a deletion vector entry applies to (`referenced_data_file`, required for DVs).
fn dv_target(e: &ManifestEntryRef, snapshot: i64) -> Result<String, IcebergError> {
    e.data_file().referenced_data_file().ok_or_else(|| {
        IcebergError::corrupt(
            e.file_path(),
            format!("snapshot {snapshot}: deletion vector entry without referenced_data_file"),
        )
    })
}

fn two_dvs(e: &ManifestEntryRef, snapshot: i64, target: &str) -> IcebergError {
    IcebergError::corrupt(
        e.file_path(),
        format!(
            "snapshot {snapshot}: a second live deletion vector for {target} \
             (at most one per data file; the previous one must be removed when it is replaced)"
        ),
    )
}

/// `(data file path, position)` pairs of one position-delete file (not a deletion vector).
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
                "snapshot {snapshot}: {:?} position delete files are not read by the Iceberg source \
                 (Parquet position deletes and Puffin deletion vectors are)",
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
    if cols.is_empty() {
        return Ok(Vec::new()); // no rows
    }
    position_delete_rows(&cols, path).map_err(|e| match e {
        IcebergError::Corrupt { table, reason } => IcebergError::Corrupt {
            table,
            reason: format!("snapshot {snapshot}: {reason}"),
        },
        other => other,
    })
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
    // Deletion vectors S added (by referenced data file) and the data files whose DV S removed.
    let mut new_dvs: HashMap<String, RoaringTreemap> = HashMap::new();
    let mut replaced_dvs: HashSet<String> = HashSet::new();
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
                (ManifestStatus::Added, DataContentType::PositionDeletes)
                    if dv::is_dv(e.data_file()) =>
                {
                    let target = dv_target(&e, id)?;
                    let bitmap = dv::read_dv(io, e.data_file()).await?;
                    if new_dvs.insert(target.clone(), bitmap).is_some() {
                        return Err(two_dvs(&e, id, &target));
                    }
                }
                (ManifestStatus::Added, DataContentType::PositionDeletes) => {
                    for (path, pos) in position_deletes(io, &e, id).await? {
                        deleted_pos.entry(path).or_default().insert(pos);
                    }
                }
                (ManifestStatus::Added, DataContentType::EqualityDeletes) => {
                    return Err(IcebergError::corrupt(
                        &table,
                        format!(
                            "snapshot {id} adds equality deletes ({}); the Iceberg source reads \
                             position deletes and deletion vectors only",
                            e.file_path()
                        ),
                    ));
                }
                (ManifestStatus::Deleted, DataContentType::Data) => removed.push(e.clone()),
                // A DV replaced by S's new one: the new one says what S deleted.
                (ManifestStatus::Deleted, DataContentType::PositionDeletes)
                    if dv::is_dv(e.data_file()) =>
                {
                    replaced_dvs.insert(dv_target(&e, id)?);
                }
                // A delete file removed along with its data file (truncate, compaction).
                _ => {}
            }
        }
    }
    // The parent's live entries: all of them to tell a truncate, its deletes for the DVs.
    let parent_live = match parent {
        Some(p) if !removed.is_empty() => live_entries(io, md, p, false).await?,
        Some(p) if !new_dvs.is_empty() => live_entries(io, md, p, true).await?,
        _ => Vec::new(),
    };
    let removed_paths: HashSet<&str> = removed.iter().map(|e| e.file_path()).collect();
    let mut truncate = false;
    if !removed.is_empty() {
        let parent_data: Vec<&ManifestEntryRef> = parent_live
            .iter()
            .filter(|e| e.content_type() == DataContentType::Data)
            .collect();
        truncate = !parent_data.is_empty()
            && parent_data
                .iter()
                .all(|e| removed_paths.contains(e.file_path()));
    }
    // What was deleted before S in the files S deletes from or removes.
    let mut wanted: HashSet<String> = new_dvs.keys().cloned().collect();
    if !truncate {
        wanted.extend(removed_paths.iter().map(|p| (*p).to_owned()));
    }
    let before = if wanted.is_empty() {
        LiveDeletes::default()
    } else {
        LiveDeletes::read(io, &parent_live, &wanted, id).await?
    };
    let mut targets: Vec<(String, RoaringTreemap)> = new_dvs.into_iter().collect();
    targets.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, bitmap) in targets {
        if before.dvs.contains_key(&path) && !replaced_dvs.contains(&path) {
            return Err(IcebergError::corrupt(
                &table,
                format!(
                    "snapshot {id} adds a deletion vector for {path} but keeps the parent's \
                     (at most one live deletion vector per data file)"
                ),
            ));
        }
        let gone = newly_deleted(&bitmap, before.of(&path));
        if !gone.is_empty() {
            deleted_pos.entry(path).or_default().extend(gone);
        }
    }
    for f in added.iter_mut() {
        if let Some(dead) = deleted_pos.remove(&f.path) {
            f.dead = dead.into_iter().collect();
        }
    }
    if !truncate {
        // Rows of removed files, minus those deleted before this snapshot.
        for e in &removed {
            let gone = before.of(e.file_path());
            let all = (0..e.record_count()).filter(|p| !gone.is_some_and(|g| g.contains(*p)));
            deleted_pos
                .entry(e.file_path().to_owned())
                .or_default()
                .extend(all);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn bm(p: &[u64]) -> RoaringTreemap {
        p.iter().copied().collect()
    }

    #[test]
    fn a_replacing_dv_deletes_only_its_new_positions() {
        // The previous DV held 1 and 5; the new one merges it and adds 7 and 2^32 + 3.
        let old = bm(&[1, 5]);
        let new = bm(&[1, 5, 7, (1 << 32) + 3]);
        assert_eq!(
            newly_deleted(&new, Some(&old)),
            BTreeSet::from([7, (1 << 32) + 3])
        );
        // A first DV of a data file deletes all of its positions.
        assert_eq!(newly_deleted(&new, None), new.iter().collect());
        // A DV copied unchanged into a new Puffin file (its neighbour was replaced) deletes
        // nothing.
        assert!(newly_deleted(&old, Some(&old)).is_empty());
    }

    #[test]
    fn a_data_files_dv_stands_for_its_position_deletes() {
        let mut live = LiveDeletes::default();
        live.positions.insert("a".into(), bm(&[0, 2]));
        live.positions.insert("b".into(), bm(&[4]));
        // b's first DV merged its position deletes and added 6.
        live.dvs.insert("b".into(), bm(&[4, 6]));
        assert_eq!(live.of("a"), Some(&bm(&[0, 2])));
        assert_eq!(live.of("b"), Some(&bm(&[4, 6])));
        assert_eq!(live.of("c"), None);
        // A new DV of b after that: only what it adds is deleted by its snapshot.
        assert_eq!(
            newly_deleted(&bm(&[4, 6, 9]), live.of("b")),
            BTreeSet::from([9])
        );
    }
}
