//! Table maintenance: compaction (rewrite the live rows into new data files with every
//! delete applied, one `replace` snapshot) and snapshot expiry (drop old snapshots from the
//! metadata and delete the files only they referenced).
//!
//! Both run automatically after `maintenance.compact_every_snapshots` commits, or from the
//! CLI (`tidemark iceberg compact|expire --config pipeline.toml`).
//!
//! # Traps
//! - Compaction reads the table through iceberg-rust's own scan (deletes applied, old files
//!   projected onto the current schema by field id): the same rows any reader sees.
//! - iceberg-rust 0.10.1 cannot apply deletion vectors (format v3): its delete loader reads
//!   every position-delete file as Parquet. For v3 tables the scan is planned by
//!   iceberg-rust and each data file read whole by its `ArrowReader` with the task's deletes
//!   dropped; the sink then removes the positions of the file's DV (`dv.rs`) and, on a
//!   table upgraded from v2, of its Parquet position delete files (their union: a data
//!   file's first DV holds its old position deletes too).
//! - The compaction snapshot copies `tidemark.position` so exactly-once survives expiry of
//!   the snapshots that recorded it.
//! - Expiry deletes a file only when no remaining snapshot references it; readers holding an
//!   expired snapshot open (time travel) lose it, as in every Iceberg engine.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow_array::{BooleanArray, RecordBatch};
use futures::{StreamExt, TryStreamExt};
use iceberg::arrow::ArrowReaderBuilder;
use iceberg::scan::{FileScanTask, FileScanTaskStream};
use iceberg::spec::{FormatVersion, ManifestList, Snapshot};
use iceberg::{NamespaceIdent, TableUpdate};
use roaring::RoaringTreemap;

use crate::commit::catalog::{Catalog, LoadedTable};
use crate::commit::snapshot::{self, recorded_position, Changes, CommitStats, SUMMARY_POSITION};
use crate::config::IcebergSinkConfig;
use crate::encoder::rows::cast_to;
use crate::error::{IcebergError, IoContext};
use crate::mirror::index::{position_delete_rows, read_columns, read_file};
use crate::table::TableState;
use crate::writer::{DataWriter, FileTable};

/// What an expiry did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExpireStats {
    pub snapshots_removed: usize,
    pub files_deleted: usize,
}

/// The iceberg-rust `Table` of a loaded table (for scans).
pub fn iceberg_table(
    catalog: &Catalog,
    t: &LoadedTable,
) -> Result<iceberg::table::Table, IcebergError> {
    iceberg::table::Table::builder()
        .metadata(t.metadata.clone())
        .metadata_location(t.metadata_location.clone())
        .identifier(iceberg::TableIdent::new(
            NamespaceIdent::new(t.ident.namespace.clone()),
            t.ident.name.clone(),
        ))
        .file_io(catalog.file_io.clone())
        .runtime(iceberg::Runtime::try_current().map_err(|e| {
            IcebergError::corrupt(t.ident.to_string(), format!("no tokio runtime: {e}"))
        })?)
        .readonly(true)
        .build()
        .map_err(|e| IcebergError::corrupt(t.ident.to_string(), e.to_string()))
}

/// iceberg-rust's scan of every live row (deletes applied, current schema).
async fn scan_stream(
    catalog: &Catalog,
    t: &LoadedTable,
) -> Result<iceberg::scan::ArrowRecordBatchStream, IcebergError> {
    let name = t.ident.to_string();
    if t.metadata.format_version() >= FormatVersion::V3 {
        return scan_stream_v3(catalog, t).await;
    }
    iceberg_table(catalog, t)?
        .scan()
        .select_all()
        .build()
        .map_err(|e| IcebergError::corrupt(&name, format!("scan: {e}")))?
        .to_arrow()
        .await
        .io_ctx("scan", &name)
}

/// Format v3: iceberg-rust plans and reads the data files, the deletion vectors are applied
/// here (one data file's batches in memory at a time).
async fn scan_stream_v3(
    catalog: &Catalog,
    t: &LoadedTable,
) -> Result<iceberg::scan::ArrowRecordBatchStream, IcebergError> {
    let name = t.ident.to_string();
    let mut dvs: HashMap<String, RoaringTreemap> = HashMap::new();
    let mut parquet = Vec::new();
    for e in snapshot::live_entries(&catalog.file_io, t).await? {
        if crate::dv::is_dv(&e.data_file) {
            if let Some(data) = e.data_file.referenced_data_file() {
                dvs.insert(
                    data,
                    crate::dv::read_dv(&catalog.file_io, &e.data_file).await?,
                );
            }
        } else if TableState::is_delete(&e.data_file) {
            // A Parquet position delete file of a table upgraded from v2: still valid (its
            // positions are in the DV too once the data file has one; the union is the same).
            parquet.push(e.file_path().to_owned());
        }
    }
    for path in parquet {
        let cols = read_columns(
            read_file(&catalog.file_io, &path).await?,
            &[
                iceberg::metadata_columns::RESERVED_FIELD_ID_DELETE_FILE_PATH,
                iceberg::metadata_columns::RESERVED_FIELD_ID_DELETE_FILE_POS,
            ],
            &path,
        )?;
        if cols.is_empty() {
            continue;
        }
        for (data, pos) in position_delete_rows(&cols, &path)? {
            dvs.entry(data).or_default().insert(pos);
        }
    }
    let table = iceberg_table(catalog, t)?;
    let tasks: Vec<FileScanTask> = table
        .scan()
        .select_all()
        .build()
        .map_err(|e| IcebergError::corrupt(&name, format!("scan: {e}")))?
        .plan_files()
        .await
        .io_ctx("plan scan", &name)?
        .try_collect()
        .await
        .io_ctx("plan scan", &name)?;
    let file_io = catalog.file_io.clone();
    let runtime = iceberg::Runtime::try_current()
        .map_err(|e| IcebergError::corrupt(&name, format!("no tokio runtime: {e}")))?;
    let dvs = Arc::new(dvs);
    let stream = futures::stream::iter(tasks)
        .then(move |mut task| {
            let (file_io, runtime, dvs) = (file_io.clone(), runtime.clone(), dvs.clone());
            async move {
                task.deletes.clear();
                let path = task.data_file_path.clone();
                // Whole file, in order, no pruning: row k of the output is position k.
                let reader = ArrowReaderBuilder::new(file_io, runtime)
                    .with_data_file_concurrency_limit(1)
                    .with_row_group_filtering_enabled(false)
                    .with_row_selection_enabled(false)
                    .build();
                let one: FileScanTaskStream = Box::pin(futures::stream::iter([Ok(task)]));
                let batches: Vec<RecordBatch> = reader.read(one)?.stream().try_collect().await?;
                let Some(dv) = dvs.get(&path) else {
                    return Ok(batches);
                };
                let mut pos = 0u64;
                let mut out = Vec::with_capacity(batches.len());
                for b in batches {
                    let keep: BooleanArray = (0..b.num_rows() as u64)
                        .map(|i| Some(!dv.contains(pos + i)))
                        .collect();
                    pos += b.num_rows() as u64;
                    out.push(
                        arrow_select::filter::filter_record_batch(&b, &keep).map_err(|e| {
                            iceberg::Error::new(iceberg::ErrorKind::Unexpected, e.to_string())
                        })?,
                    );
                }
                Ok::<_, iceberg::Error>(out)
            }
        })
        .map_ok(|batches| futures::stream::iter(batches.into_iter().map(Ok)))
        .try_flatten();
    Ok(Box::pin(stream))
}

/// Every live row of the table, as iceberg-rust's own reader returns it (deletes applied).
pub async fn scan_all(
    catalog: &Catalog,
    t: &LoadedTable,
) -> Result<Vec<arrow_array::RecordBatch>, IcebergError> {
    let name = t.ident.to_string();
    scan_stream(catalog, t)
        .await?
        .try_collect()
        .await
        .io_ctx("scan", &name)
}

/// Rewrites the table's live rows without deletes. `None` if there was nothing to compact.
pub async fn compact(
    catalog: &Catalog,
    t: &LoadedTable,
    target_size: u64,
) -> Result<Option<(LoadedTable, CommitStats)>, IcebergError> {
    let name = t.ident.to_string();
    let entries = snapshot::live_entries(&catalog.file_io, t).await?;
    let deletes = entries
        .iter()
        .filter(|e| TableState::is_delete(&e.data_file))
        .count();
    let data = entries.len() - deletes;
    if deletes == 0 && data <= 1 {
        return Ok(None);
    }
    let md = &t.metadata;
    let mut writer = DataWriter::new(
        catalog.file_io.clone(),
        md.location(),
        md.current_schema().clone(),
        md.default_partition_spec().clone(),
        target_size,
        &name,
    )?;
    writer.log = crate::writer::read_pending_log(&catalog.file_io, md.location())
        .await?
        .1;
    let arrow = Arc::new(
        iceberg::arrow::schema_to_arrow_schema(md.current_schema())
            .map_err(|e| IcebergError::corrupt(&name, e.to_string()))?,
    );
    let mut stream = scan_stream(catalog, t).await?;
    let mut files = FileTable::default();
    while let Some(batch) = stream.try_next().await.io_ctx("scan", &name)? {
        let cols = arrow
            .fields()
            .iter()
            .zip(batch.columns())
            .map(|(f, c)| cast_to(c, f.data_type()))
            .collect::<Result<Vec<_>, _>>()
            .io_ctx("compact batch", &name)?;
        let b = arrow_array::RecordBatch::try_new(arrow.clone(), cols)
            .io_ctx("compact batch", &name)?;
        writer.write(&b, &mut files).await?;
    }
    let new_files = writer.finish(&files).await?;
    let mut summary = HashMap::new();
    if let Some(p) = recorded_position(t) {
        summary.insert(SUMMARY_POSITION.to_owned(), p);
    }
    summary.insert("tidemark.compaction".into(), "true".into());
    let changes = Changes {
        data_files: new_files,
        remove_paths: entries.iter().map(|e| e.file_path().to_owned()).collect(),
        summary,
        replace: true,
        ..Changes::default()
    };
    let out = snapshot::commit(catalog, t, changes, &mut writer).await?;
    writer.committed().await?;
    tracing::info!(table = %name, removed = out.1.removed_files, written = out.1.data_files, "compacted");
    Ok(Some(out))
}

/// All files a snapshot references: manifest list, manifests, data and delete files.
async fn snapshot_files(
    catalog: &Catalog,
    t: &LoadedTable,
    s: &Snapshot,
) -> Result<HashSet<String>, IcebergError> {
    let io = &catalog.file_io;
    let mut out = HashSet::new();
    let loc = s.manifest_list();
    out.insert(loc.to_owned());
    let bytes = match io
        .new_input(loc)
        .io_ctx("open manifest list", loc)?
        .read()
        .await
    {
        Ok(b) => b,
        Err(_) => return Ok(out), // already gone
    };
    let list = ManifestList::parse_with_version(&bytes, t.metadata.format_version())
        .map_err(|e| IcebergError::corrupt(loc, e.to_string()))?;
    for m in list.entries() {
        out.insert(m.manifest_path.clone());
        if let Ok(manifest) = m.load_manifest(io).await {
            for e in manifest.entries() {
                out.insert(e.file_path().to_owned());
            }
        }
    }
    Ok(out)
}

/// Every file some snapshot of the table references (manifest lists, manifests, data and
/// delete files): anything else under the table's location is an orphan.
pub async fn referenced_files(
    catalog: &Catalog,
    t: &LoadedTable,
) -> Result<HashSet<String>, IcebergError> {
    let mut out = HashSet::new();
    for s in t.metadata.snapshots() {
        out.extend(snapshot_files(catalog, t, s).await?);
    }
    Ok(out)
}

/// Removes snapshots older than `max_age` (keeping the newest `keep` and the current one)
/// and deletes the files only they referenced.
pub async fn expire(
    catalog: &Catalog,
    t: &LoadedTable,
    max_age: std::time::Duration,
    keep: u32,
) -> Result<(LoadedTable, ExpireStats), IcebergError> {
    let md = &t.metadata;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let mut snaps: Vec<_> = md.snapshots().cloned().collect();
    snaps.sort_by_key(|s| std::cmp::Reverse(s.timestamp_ms()));
    let current = md.current_snapshot_id();
    let (kept, expired): (Vec<_>, Vec<_>) = snaps.into_iter().enumerate().partition(|(i, s)| {
        *i < keep as usize
            || Some(s.snapshot_id()) == current
            || now.saturating_sub(s.timestamp_ms()) < max_age.as_millis() as i64
    });
    if expired.is_empty() {
        return Ok((t.clone(), ExpireStats::default()));
    }
    let mut keep_files = HashSet::new();
    for (_, s) in &kept {
        keep_files.extend(snapshot_files(catalog, t, s).await?);
    }
    let mut gone = HashSet::new();
    for (_, s) in &expired {
        gone.extend(snapshot_files(catalog, t, s).await?);
    }
    let ids: Vec<i64> = expired.iter().map(|(_, s)| s.snapshot_id()).collect();
    let loaded = catalog
        .commit(
            t,
            vec![TableUpdate::RemoveSnapshots {
                snapshot_ids: ids.clone(),
            }],
        )
        .await?;
    let mut files_deleted = 0;
    for f in gone.difference(&keep_files) {
        if catalog.file_io.delete(f).await.is_ok() {
            files_deleted += 1;
        }
    }
    tracing::info!(table = %t.ident, snapshots = ids.len(), files_deleted, "expired snapshots");
    Ok((
        loaded,
        ExpireStats {
            snapshots_removed: ids.len(),
            files_deleted,
        },
    ))
}

/// Automatic maintenance of a sink table after a commit: compact, rebuild the index, expire.
pub async fn maintain(
    catalog: &Catalog,
    state: &mut TableState,
    cfg: &IcebergSinkConfig,
) -> Result<(), IcebergError> {
    if let Some((loaded, _)) = compact(catalog, &state.loaded, cfg.target_file_size_bytes).await? {
        state.loaded = loaded;
        state.reset_after_rewrite(catalog, cfg).await?;
    }
    let m = &cfg.maintenance;
    match expire(catalog, &state.loaded, m.max_snapshot_age, m.keep_snapshots).await {
        Ok((loaded, _)) => state.loaded = loaded,
        // A catalog that keeps expiry to itself (a REST server answering 403, e.g. one that
        // expires by its own maintenance job) must not stop the pipeline after a compaction
        // that did commit: the snapshots stay, the stream goes on. `tidemark iceberg expire`
        // still reports the refusal.
        Err(IcebergError::Rest(e)) if e.status == 403 => {
            tracing::warn!(table = %state.loaded.ident, status = e.status, kind = %e.kind,
                message = %e.message, "snapshot expiry refused by the catalog; compaction committed, snapshots kept");
        }
        Err(e) => return Err(e),
    }
    state.since_compact = 0;
    Ok(())
}
