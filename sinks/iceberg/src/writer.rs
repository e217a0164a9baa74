//! The only IO before a commit: Parquet data files (one open file per partition, rolled at
//! the target size) and position delete files (format v2) or a Puffin file of deletion
//! vectors (format v3, `dv.rs`), written through the table's `FileIO`.
//!
//! Every row written gets a [`Loc`] (file, row position): the mirror's index keeps it so a
//! later update or delete of the same key becomes a position delete.
//!
//! # Traps
//! - A position delete applies to data files whose data sequence number is ≤ its own, so a
//!   row written and deleted before the same commit is deleted by a delete file of that
//!   same snapshot (Iceberg spec, "Scan Planning").
//! - Position delete files must be sorted by `(file_path, pos)`; readers may rely on it.
//! - The iceberg crate's Parquet writer buffers a whole row group in memory: the row group
//!   size is capped so a huge transaction stays in bounded memory.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, UInt32Array};
use iceberg::arrow::{arrow_struct_to_literal, PartitionValueCalculator};
use iceberg::io::FileIO;
use iceberg::spec::{
    DataContentType, DataFile, Literal, NestedField, PartitionSpecRef, PrimitiveType, Schema,
    SchemaRef, Struct, StructType, Type,
};
use iceberg::writer::file_writer::{
    FileWriter, FileWriterBuilder, ParquetWriter, ParquetWriterBuilder,
};
use iceberg::writer::CurrentFileStatus;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::error::{IcebergError, IoContext};

/// Rows per Parquet row group: bounds the writer's buffer (~tens of MiB for wide rows).
const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Where a row lives: index into the table's [`FileTable`] and row position in that file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Loc {
    pub file: u32,
    pub pos: u32,
}

/// The data files a mirror's index points into (committed and being written).
#[derive(Debug, Default)]
pub struct FileTable {
    pub paths: Vec<Arc<str>>,
    pub partitions: Vec<Struct>,
}

impl FileTable {
    pub fn add(&mut self, path: &str, partition: Struct) -> u32 {
        self.paths.push(Arc::from(path));
        self.partitions.push(partition);
        (self.paths.len() - 1) as u32
    }
}

/// A row to delete: data file path and position.
type DeletedRow = (Arc<str>, u32);

/// Parquet settings of every file the sink writes.
pub fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build()
}

struct OpenFile {
    partition: Struct,
    writer: ParquetWriter,
    file: u32,
    rows: u32,
}

/// Writes the data files of one table for the snapshot being prepared.
pub struct DataWriter {
    file_io: FileIO,
    location: String,
    schema: SchemaRef,
    spec: PartitionSpecRef,
    partition_type: StructType,
    calc: Option<PartitionValueCalculator>,
    target_size: u64,
    session: String,
    counter: u64,
    open: Vec<OpenFile>,
    closed: Vec<DataFile>,
    /// Every path created since the last commit, also in the pending-files log.
    new_paths: Vec<String>,
    /// Where the pending-files log stands (carried from writer to writer of a table).
    pub log: LogCursor,
}

/// The pending-files log of a table: every file written for a snapshot not yet committed.
/// Written *before* each file is created, so a crash leaves no file the log does not name.
///
/// The log has two slots written alternately, each `{"seq": n, "paths": [...]}`: object
/// stores and local files give no atomic replace through `FileIO`, so a kill can tear the
/// slot being written; the other slot then holds the previous complete list, which lacks
/// only the path being logged — whose file was not created yet.
pub fn pending_log_path(location: &str, slot: u8) -> String {
    format!(
        "{}/metadata/tidemark-pending-{slot}.json",
        location.trim_end_matches('/')
    )
}

/// Position of the pending-files log: the slot written last and its sequence number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogCursor {
    pub slot: u8,
    pub seq: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct LogSlot {
    seq: u64,
    paths: Vec<String>,
}

/// Writes the next slot of the pending-files log; advances `cursor`.
pub async fn write_pending_log(
    file_io: &FileIO,
    location: &str,
    cursor: &mut LogCursor,
    paths: &[String],
) -> Result<(), IcebergError> {
    let next = LogCursor {
        slot: 1 - cursor.slot.min(1),
        seq: cursor.seq + 1,
    };
    let log = pending_log_path(location, next.slot);
    let body = LogSlot {
        seq: next.seq,
        paths: paths.to_vec(),
    };
    let json = serde_json::to_vec(&body).map_err(|e| IcebergError::corrupt(&log, e.to_string()))?;
    file_io
        .new_output(&log)
        .io_ctx("create pending log", &log)?
        .write(json.into())
        .await
        .io_ctx("write pending log", &log)?;
    *cursor = next;
    Ok(())
}

/// Reads the newest complete slot of the pending-files log (empty when there is none).
pub async fn read_pending_log(
    file_io: &FileIO,
    location: &str,
) -> Result<(Vec<String>, LogCursor), IcebergError> {
    let mut best: Option<(LogSlot, u8)> = None;
    for slot in 0..2u8 {
        let log = pending_log_path(location, slot);
        if !file_io
            .exists(&log)
            .await
            .io_ctx("check pending log", &log)?
        {
            continue;
        }
        let bytes = file_io
            .new_input(&log)
            .io_ctx("open pending log", &log)?
            .read()
            .await
            .io_ctx("read pending log", &log)?;
        // A torn slot (killed mid-write) is ignored: the other one is complete.
        match serde_json::from_slice::<LogSlot>(&bytes) {
            Ok(l) if best.as_ref().is_none_or(|(b, _)| l.seq > b.seq) => best = Some((l, slot)),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(log = %log, error = %e, "ignoring a torn pending-files log slot")
            }
        }
    }
    Ok(match best {
        Some((l, slot)) => (l.paths, LogCursor { slot, seq: l.seq }),
        None => (Vec::new(), LogCursor::default()),
    })
}

impl DataWriter {
    pub fn new(
        file_io: FileIO,
        location: &str,
        schema: SchemaRef,
        spec: PartitionSpecRef,
        target_size: u64,
        table: &str,
    ) -> Result<Self, IcebergError> {
        let partition_type = spec
            .partition_type(&schema)
            .map_err(|e| IcebergError::corrupt(table, format!("partition spec: {e}")))?;
        let calc = if spec.is_unpartitioned() {
            None
        } else {
            Some(
                PartitionValueCalculator::try_new(&spec, &schema)
                    .map_err(|e| IcebergError::corrupt(table, format!("partition spec: {e}")))?,
            )
        };
        Ok(DataWriter {
            file_io,
            location: location.trim_end_matches('/').to_owned(),
            schema,
            spec,
            partition_type,
            calc,
            target_size,
            session: uuid::Uuid::now_v7().simple().to_string(),
            counter: 0,
            open: Vec::new(),
            closed: Vec::new(),
            new_paths: Vec::new(),
            log: LogCursor::default(),
        })
    }

    /// The schema files are written in.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Whether nothing has been written since the last [`DataWriter::finish`].
    pub fn is_empty(&self) -> bool {
        self.open.is_empty() && self.closed.is_empty()
    }

    /// Writes `batch` (in the writer's schema); the location of each row, in row order.
    pub async fn write(
        &mut self,
        batch: &RecordBatch,
        files: &mut FileTable,
    ) -> Result<Vec<Loc>, IcebergError> {
        let n = batch.num_rows();
        let mut locs = vec![Loc { file: 0, pos: 0 }; n];
        if n == 0 {
            return Ok(locs);
        }
        for (partition, rows) in self.partition_rows(batch)? {
            let sub = if rows.len() == n {
                batch.clone()
            } else {
                take_rows(batch, &rows)?
            };
            let slot = self.open_for(&partition, files).await?;
            let f = &mut self.open[slot];
            for (k, r) in rows.iter().enumerate() {
                locs[*r as usize] = Loc {
                    file: f.file,
                    pos: f.rows + k as u32,
                };
            }
            f.writer
                .write(&sub)
                .await
                .io_ctx("write data file", &files.paths[f.file as usize])?;
            f.rows += rows.len() as u32;
        }
        Ok(locs)
    }

    fn partition_rows(&self, batch: &RecordBatch) -> Result<Vec<(Struct, Vec<u32>)>, IcebergError> {
        let Some(calc) = &self.calc else {
            return Ok(vec![(
                Struct::empty(),
                (0..batch.num_rows() as u32).collect(),
            )]);
        };
        let values = calc
            .calculate(batch)
            .and_then(|a| arrow_struct_to_literal(&a, &self.partition_type))
            .map_err(|e| IcebergError::corrupt(&self.location, format!("partition values: {e}")))?;
        let mut groups: Vec<(Struct, Vec<u32>)> = Vec::new();
        for (i, v) in values.into_iter().enumerate() {
            let s = match v {
                Some(Literal::Struct(s)) => s,
                _ => Struct::empty(),
            };
            match groups.iter_mut().find(|(p, _)| *p == s) {
                Some((_, rows)) => rows.push(i as u32),
                None => groups.push((s, vec![i as u32])),
            }
        }
        Ok(groups)
    }

    async fn open_for(
        &mut self,
        partition: &Struct,
        files: &mut FileTable,
    ) -> Result<usize, IcebergError> {
        // A plain index (not an iterator over the non-Sync writers) lives across the awaits.
        let slot = self.open.iter().position(|f| f.partition == *partition);
        if let Some(i) = slot {
            let full = self.open[i].writer.current_written_size() as u64 >= self.target_size
                || self.open[i].rows >= u32::MAX / 2;
            if !full {
                return Ok(i);
            }
            self.close_slot(i, files).await?;
        }
        let path = self.new_path(partition, "");
        self.log_new_path(&path).await?;
        let out = self
            .file_io
            .new_output(&path)
            .io_ctx("create data file", &path)?;
        let writer = ParquetWriterBuilder::new(writer_properties(), self.schema.clone())
            .build(out)
            .await
            .io_ctx("open parquet writer", &path)?;
        let file = files.add(&path, partition.clone());
        self.open.push(OpenFile {
            partition: partition.clone(),
            writer,
            file,
            rows: 0,
        });
        Ok(self.open.len() - 1)
    }

    /// Adds `path` to the pending-files log before it is created.
    pub async fn log_new_path(&mut self, path: &str) -> Result<(), IcebergError> {
        self.new_paths.push(path.to_owned());
        write_pending_log(
            &self.file_io,
            &self.location,
            &mut self.log,
            &self.new_paths,
        )
        .await
    }

    fn new_path(&mut self, partition: &Struct, suffix: &str) -> String {
        self.counter += 1;
        let dir = if self.spec.is_unpartitioned() {
            String::new()
        } else {
            format!(
                "{}/",
                self.spec.partition_to_path(partition, self.schema.clone())
            )
        };
        format!(
            "{}/data/{dir}{}-{:05}{suffix}.parquet",
            self.location, self.session, self.counter
        )
    }

    async fn close_slot(&mut self, i: usize, files: &FileTable) -> Result<(), IcebergError> {
        let f = self.open.swap_remove(i);
        let path = files.paths[f.file as usize].to_string();
        let builders = f.writer.close().await.io_ctx("close data file", &path)?;
        for b in builders {
            let mut b = b;
            let df = b
                .content(DataContentType::Data)
                .partition(f.partition.clone())
                .partition_spec_id(self.spec.spec_id())
                .build()
                .map_err(|e| IcebergError::corrupt(&path, e.to_string()))?;
            self.closed.push(df);
        }
        Ok(())
    }

    /// Closes the open file holding `file` (so its rows can be read back).
    pub async fn close_file(&mut self, file: u32, files: &FileTable) -> Result<bool, IcebergError> {
        let slot = self.open.iter().position(|f| f.file == file);
        match slot {
            Some(i) => {
                self.close_slot(i, files).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Whether `file` is still being written.
    pub fn is_open(&self, file: u32) -> bool {
        self.open.iter().any(|f| f.file == file)
    }

    /// Closes every file; the data files written since the last call.
    pub async fn finish(&mut self, files: &FileTable) -> Result<Vec<DataFile>, IcebergError> {
        while !self.open.is_empty() {
            self.close_slot(self.open.len() - 1, files).await?;
        }
        Ok(std::mem::take(&mut self.closed))
    }

    /// Drops everything not yet committed; the paths written (to delete).
    pub fn abort(&mut self, files: &FileTable) -> Vec<String> {
        let mut paths: Vec<String> = self
            .open
            .drain(..)
            .map(|f| files.paths[f.file as usize].to_string())
            .collect();
        paths.extend(self.closed.drain(..).map(|d| d.file_path().to_owned()));
        paths
    }

    /// Paths created since the last commit.
    pub fn pending_paths(&self) -> &[String] {
        &self.new_paths
    }

    /// After a commit: nothing is pending any more.
    pub async fn committed(&mut self) -> Result<(), IcebergError> {
        self.new_paths.clear();
        // Both slots: the older one still names files that are now committed.
        write_pending_log(&self.file_io, &self.location, &mut self.log, &[]).await?;
        write_pending_log(&self.file_io, &self.location, &mut self.log, &[]).await
    }

    /// Writes position delete files, one per partition, sorted by `(file_path, pos)`.
    pub async fn write_position_deletes(
        &mut self,
        deletes: BTreeSet<(u32, u32)>,
        files: &FileTable,
    ) -> Result<Vec<DataFile>, IcebergError> {
        let mut by_partition: Vec<(Struct, Vec<DeletedRow>)> = Vec::new();
        let mut sorted: Vec<(Arc<str>, u32, u32)> = deletes
            .iter()
            .map(|(f, p)| (files.paths[*f as usize].clone(), *p, *f))
            .collect();
        sorted.sort();
        for (path, pos, file) in sorted {
            let part = &files.partitions[file as usize];
            match by_partition.iter_mut().find(|(p, _)| p == part) {
                Some((_, v)) => v.push((path, pos)),
                None => by_partition.push((part.clone(), vec![(path, pos)])),
            }
        }
        let schema = Arc::new(position_delete_schema()?);
        let mut out = Vec::new();
        for (partition, rows) in by_partition {
            let path = self.new_path(&partition, "-deletes");
            self.log_new_path(&path).await?;
            let referenced = (rows.first().map(|r| &r.0) == rows.last().map(|r| &r.0))
                .then(|| rows[0].0.to_string());
            let arrow = Arc::new(
                iceberg::arrow::schema_to_arrow_schema(&schema)
                    .map_err(|e| IcebergError::corrupt(&path, e.to_string()))?,
            );
            let batch = RecordBatch::try_new(
                arrow,
                vec![
                    Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &*r.0))) as ArrayRef,
                    Arc::new(Int64Array::from_iter_values(
                        rows.iter().map(|r| r.1 as i64),
                    )),
                ],
            )
            .map_err(|e| IcebergError::corrupt(&path, e.to_string()))?;
            let o = self
                .file_io
                .new_output(&path)
                .io_ctx("create delete file", &path)?;
            let mut w = ParquetWriterBuilder::new(writer_properties(), schema.clone())
                .build(o)
                .await
                .io_ctx("open delete file", &path)?;
            w.write(&batch).await.io_ctx("write delete file", &path)?;
            for mut b in w.close().await.io_ctx("close delete file", &path)? {
                b.content(DataContentType::PositionDeletes)
                    .partition(partition.clone())
                    .partition_spec_id(self.spec.spec_id())
                    .referenced_data_file(referenced.clone());
                out.push(
                    b.build()
                        .map_err(|e| IcebergError::corrupt(&path, e.to_string()))?,
                );
            }
        }
        Ok(out)
    }
}

impl DataWriter {
    /// Format v3: writes the deletion vectors `dvs` (data file, all its deleted positions:
    /// the previous DV merged in) as one Puffin file; one manifest entry per data file.
    pub async fn write_deletion_vectors(
        &mut self,
        dvs: &[(u32, &roaring::RoaringTreemap)],
        files: &FileTable,
    ) -> Result<Vec<DataFile>, IcebergError> {
        if dvs.is_empty() {
            return Ok(Vec::new());
        }
        self.counter += 1;
        // Beside the data files; a DV's partition is its data file's (manifest entry only).
        let path = format!(
            "{}/data/{}-{:05}-dv.puffin",
            self.location, self.session, self.counter
        );
        self.log_new_path(&path).await?;
        let blobs: Vec<crate::dv::DvBlob<'_>> = dvs
            .iter()
            .map(|(f, bm)| crate::dv::DvBlob {
                referenced_data_file: &files.paths[*f as usize],
                bitmap: bm,
            })
            .collect();
        let (bytes, spans) = crate::dv::puffin_file(&blobs);
        let size = bytes.len() as u64;
        self.file_io
            .new_output(&path)
            .io_ctx("create deletion vector file", &path)?
            .write(bytes.into())
            .await
            .io_ctx("write deletion vector file", &path)?;
        dvs.iter()
            .zip(spans)
            .map(|((f, bm), span)| {
                crate::dv::dv_data_file(
                    &path,
                    size,
                    span,
                    &files.paths[*f as usize],
                    bm.len(),
                    files.partitions[*f as usize].clone(),
                    self.spec.spec_id(),
                )
            })
            .collect()
    }
}

/// The position delete file schema (Iceberg spec reserved ids).
pub fn position_delete_schema() -> Result<Schema, IcebergError> {
    Schema::builder()
        .with_fields(vec![
            Arc::new(NestedField::required(
                iceberg::metadata_columns::RESERVED_FIELD_ID_DELETE_FILE_PATH,
                iceberg::metadata_columns::RESERVED_COL_NAME_DELETE_FILE_PATH,
                Type::Primitive(PrimitiveType::String),
            )),
            Arc::new(NestedField::required(
                iceberg::metadata_columns::RESERVED_FIELD_ID_DELETE_FILE_POS,
                iceberg::metadata_columns::RESERVED_COL_NAME_DELETE_FILE_POS,
                Type::Primitive(PrimitiveType::Long),
            )),
        ])
        .build()
        .map_err(|e| IcebergError::corrupt("position delete schema", e.to_string()))
}

/// Rows `rows` of `batch`.
pub fn take_rows(batch: &RecordBatch, rows: &[u32]) -> Result<RecordBatch, IcebergError> {
    let idx = UInt32Array::from(rows.to_vec());
    arrow_select::take::take_record_batch(batch, &idx)
        .map_err(|e| IcebergError::corrupt("batch", e.to_string()))
}
