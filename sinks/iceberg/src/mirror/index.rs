//! The mirror's primary key → (data file, row position) index.
//!
//! Keys are `arrow-row` encodings of the key columns after [`normalize_key`], so a key column
//! widened by schema evolution (int → long) keeps its bytes. The index is rebuilt from the
//! table on start: the key columns of every live data file, minus every position in the live
//! position delete files (v2) or deletion vectors (v3, which are also kept: the next DV of
//! a data file merges the previous one). A v3 table upgraded from v2 may still have position
//! delete files: their positions are kept too ([`OldDeletes`]), for the first DVs to merge.
//!
//! # Traps
//! - Memory is ~60 bytes per live row plus the key; `max_index_keys` bounds it with a
//!   definite error instead of growing without limit.
//! - Rows written in the current segment are not in a file yet: they carry the
//!   [`PENDING_FILE`] marker and their slot in the segment as position.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_row::{RowConverter, SortField};
use arrow_schema::DataType;
use bytes::Bytes;
use iceberg::io::FileIO;
use iceberg::spec::{DataContentType, FormatVersion};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use roaring::RoaringTreemap;

use crate::commit::catalog::LoadedTable;
use crate::commit::snapshot::live_entries;
use crate::encoder::rows::normalize_key;
use crate::error::{IcebergError, IoContext};
use crate::writer::{FileTable, Loc};

/// `Loc::file` of a row of the segment being prepared (not written yet).
pub const PENDING_FILE: u32 = u32::MAX;

/// Key bytes → row location.
pub struct KeyIndex {
    map: HashMap<Box<[u8]>, Loc>,
    converter: RowConverter,
    /// Normalised key column types, in key order.
    pub key_types: Vec<DataType>,
}

impl KeyIndex {
    pub fn new(key_types: Vec<DataType>) -> Result<Self, arrow_schema::ArrowError> {
        let converter = RowConverter::new(key_types.iter().cloned().map(SortField::new).collect())?;
        Ok(KeyIndex {
            map: HashMap::new(),
            converter,
            key_types,
        })
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn clear(&mut self) {
        self.map.clear();
    }

    /// Encodes the key of every row of `cols` (already normalised); `None` where a key
    /// column is null (an old image without the key).
    pub fn encode(
        &self,
        cols: &[ArrayRef],
    ) -> Result<Vec<Option<Box<[u8]>>>, arrow_schema::ArrowError> {
        let rows = self.converter.convert_columns(cols)?;
        Ok((0..rows.num_rows())
            .map(|i| {
                if cols.iter().any(|c| c.is_null(i)) {
                    None
                } else {
                    Some(Box::from(rows.row(i).as_ref()))
                }
            })
            .collect())
    }

    pub fn get(&self, key: &[u8]) -> Option<Loc> {
        self.map.get(key).copied()
    }

    pub fn insert(&mut self, key: Box<[u8]>, loc: Loc) -> Option<Loc> {
        self.map.insert(key, loc)
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<Loc> {
        self.map.remove(key)
    }

    /// Moves every entry of a pending slot to its written location.
    pub fn settle(&mut self, key: &[u8], loc: Loc) {
        if let Some(l) = self.map.get_mut(key) {
            *l = loc;
        }
    }
}

/// Reads the root columns of `bytes` whose Parquet field ids are `ids` (in that order).
pub fn read_columns(bytes: Bytes, ids: &[i32], path: &str) -> Result<Vec<ArrayRef>, IcebergError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).io_ctx("open parquet", path)?;
    let fields = builder.schema().fields().clone();
    let field_id = |f: &arrow_schema::Field| -> Option<i32> {
        f.metadata()
            .get("PARQUET:field_id")
            .and_then(|v| v.parse().ok())
    };
    let mut roots = Vec::new();
    for id in ids {
        let i = fields
            .iter()
            .position(|f| field_id(f) == Some(*id))
            .ok_or_else(|| IcebergError::corrupt(path, format!("no column with field id {id}")))?;
        roots.push(i);
    }
    let mut sorted = roots.clone();
    sorted.sort_unstable();
    let mask = ProjectionMask::roots(builder.parquet_schema(), sorted.iter().copied());
    let reader = builder
        .with_projection(mask)
        .with_batch_size(64 * 1024)
        .build()
        .io_ctx("read parquet", path)?;
    let mut batches: Vec<RecordBatch> = Vec::new();
    for b in reader {
        batches.push(b.io_ctx("read parquet", path)?);
    }
    let schema = match batches.first() {
        Some(b) => b.schema(),
        None => return Ok(Vec::new()),
    };
    let all =
        arrow_select::concat::concat_batches(&schema, &batches).io_ctx("read parquet", path)?;
    // Projected columns come in file order; put them in `ids` order.
    Ok(roots
        .iter()
        .map(|r| {
            all.column(sorted.iter().position(|s| s == r).unwrap_or(0))
                .clone()
        })
        .collect())
}

/// The `(file_path, pos)` rows of a position delete file's two columns (as [`read_columns`]
/// reads them). The spec makes both required, `pos` a non-negative long; another writer's
/// file that breaks that (a null, a negative position, an int column) is corrupt, never a
/// panic of a failed downcast nor a row deleted at a clamped position.
pub fn position_delete_rows(
    cols: &[ArrayRef],
    path: &str,
) -> Result<Vec<(String, u64)>, IcebergError> {
    let [paths, pos] = cols else {
        return Err(IcebergError::corrupt(
            path,
            format!(
                "position delete file with {} columns, not file_path and pos",
                cols.len()
            ),
        ));
    };
    let paths = arrow_cast::cast(paths, &DataType::Utf8)
        .map_err(|e| IcebergError::corrupt(path, format!("file_path column: {e}")))?;
    let paths = paths.as_string::<i32>();
    let pos = arrow_cast::cast(pos, &DataType::Int64)
        .map_err(|e| IcebergError::corrupt(path, format!("pos column: {e}")))?;
    let pos = pos.as_primitive::<Int64Type>();
    (0..paths.len())
        .map(|i| {
            if paths.is_null(i) || pos.is_null(i) {
                return Err(IcebergError::corrupt(
                    path,
                    format!("row {i}: a null file_path or pos (both are required)"),
                ));
            }
            let p = u64::try_from(pos.value(i)).map_err(|_| {
                IcebergError::corrupt(path, format!("row {i}: negative pos {}", pos.value(i)))
            })?;
            Ok((paths.value(i).to_owned(), p))
        })
        .collect()
}

/// Reads a whole file from storage.
pub async fn read_file(file_io: &FileIO, path: &str) -> Result<Bytes, IcebergError> {
    file_io
        .new_input(path)
        .io_ctx("open", path)?
        .read()
        .await
        .io_ctx("read", path)
}

/// Format v3 upgraded from v2: the live Parquet position delete files. The first DV of a data
/// file must hold its position deletes (Iceberg spec, "Deletion Vectors": writers merge
/// existing position deletes into the new DV); the sink then replaces each of those files
/// whole: all the data files it covers get DVs and its entry is removed (`table.rs`).
#[derive(Debug, Default)]
pub struct OldDeletes {
    /// Deleted positions by data file (file table index), for files without a DV.
    pub positions: HashMap<u32, RoaringTreemap>,
    /// The live data files (file table indices) each Parquet position delete file covers.
    pub files: HashMap<Arc<str>, BTreeSet<u32>>,
}

impl OldDeletes {
    pub fn clear(&mut self) {
        self.positions.clear();
        self.files.clear();
    }
}

/// Rebuilds the index (and the file table) from the table's live files; `dvs` gets the live
/// deletion vector of each data file that has one (by file table index), `old` (format v3
/// only) the Parquet position deletes of a table upgraded from v2.
#[allow(clippy::too_many_arguments)]
pub async fn rebuild(
    file_io: &FileIO,
    table: &LoadedTable,
    key_field_ids: &[i32],
    index: &mut KeyIndex,
    files: &mut FileTable,
    dvs: &mut HashMap<u32, crate::dv::LiveDv>,
    old: &mut OldDeletes,
    max_keys: u64,
) -> Result<(), IcebergError> {
    index.clear();
    dvs.clear();
    old.clear();
    let v3 = table.metadata.format_version() >= FormatVersion::V3;
    let entries = live_entries(file_io, table).await?;
    // Deleted positions by data file, as the treemap `OldDeletes` keeps (no second form).
    let mut deleted: HashMap<Arc<str>, RoaringTreemap> = HashMap::new();
    // Parquet position delete file → the data files it names.
    let mut covers: HashMap<Arc<str>, HashSet<Arc<str>>> = HashMap::new();
    let mut vectors: HashMap<String, crate::dv::LiveDv> = HashMap::new();
    for e in entries
        .iter()
        .filter(|e| e.content_type() == DataContentType::PositionDeletes)
    {
        let path = e.file_path();
        if crate::dv::is_dv(&e.data_file) {
            let data = e.data_file.referenced_data_file().ok_or_else(|| {
                IcebergError::corrupt(path, "deletion vector without referenced_data_file")
            })?;
            let live = crate::dv::LiveDv {
                bitmap: crate::dv::read_dv(file_io, &e.data_file).await?,
                puffin: Arc::from(path),
            };
            if vectors.insert(data.clone(), live).is_some() {
                return Err(IcebergError::corrupt(
                    path,
                    format!("a second live deletion vector for {data}"),
                ));
            }
            continue;
        }
        let cols = read_columns(
            read_file(file_io, path).await?,
            &[
                iceberg::metadata_columns::RESERVED_FIELD_ID_DELETE_FILE_PATH,
                iceberg::metadata_columns::RESERVED_FIELD_ID_DELETE_FILE_POS,
            ],
            path,
        )?;
        if cols.is_empty() {
            continue; // no rows
        }
        for (data, pos) in position_delete_rows(&cols, path)? {
            // Row positions of the index are u32 (writer.rs `Loc`); a larger one is no row
            // this sink wrote, and no row of a file it can index.
            let pos = u32::try_from(pos).map_err(|_| {
                IcebergError::corrupt(path, format!("pos {pos} of {data} is beyond 2^32 rows"))
            })?;
            let data: Arc<str> = Arc::from(data);
            if v3 {
                covers
                    .entry(Arc::from(path))
                    .or_default()
                    .insert(data.clone());
            }
            deleted.entry(data).or_default().insert(u64::from(pos));
        }
    }
    let mut live_files: HashMap<Arc<str>, u32> = HashMap::new();
    for e in entries
        .iter()
        .filter(|e| e.content_type() == DataContentType::Data)
    {
        let path = e.file_path();
        let file = files.add(path, e.data_file.partition().clone());
        if v3 {
            live_files.insert(Arc::from(path), file);
        }
        let dv = vectors.remove(path);
        let cols = read_columns(read_file(file_io, path).await?, key_field_ids, path)?;
        if cols.is_empty() {
            if let Some(d) = dv {
                dvs.insert(file, d);
            }
            continue;
        }
        let cols = cols
            .iter()
            .map(normalize_key)
            .collect::<Result<Vec<_>, _>>()
            .io_ctx("read key columns", path)?;
        let keys = index.encode(&cols).io_ctx("encode keys", path)?;
        let gone = deleted.remove(path);
        for (pos, key) in keys.into_iter().enumerate() {
            let pos = pos as u32;
            if gone.as_ref().is_some_and(|g| g.contains(u64::from(pos)))
                || dv.as_ref().is_some_and(|d| d.bitmap.contains(pos as u64))
            {
                continue;
            }
            if let Some(k) = key {
                index.insert(k, Loc { file, pos });
            }
        }
        if let (true, None, Some(g)) = (v3, &dv, gone) {
            old.positions.insert(file, g);
        }
        if let Some(d) = dv {
            dvs.insert(file, d);
        }
        if index.len() as u64 > max_keys {
            return Err(IcebergError::Limit(format!(
                "table {}: more than max_index_keys = {max_keys} live rows; raise it",
                table.ident
            )));
        }
    }
    for (delete_file, data) in covers {
        let live: BTreeSet<u32> = data
            .iter()
            .filter_map(|d| live_files.get(d).copied())
            .collect();
        old.files.insert(delete_file, live);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int32Array, Int64Array, StringArray};

    fn cols(paths: Vec<Option<&str>>, pos: ArrayRef) -> Vec<ArrayRef> {
        vec![Arc::new(StringArray::from(paths)) as ArrayRef, pos]
    }

    #[test]
    fn position_delete_rows_refuse_what_the_spec_forbids() {
        let ok = cols(
            vec![Some("a"), Some("b")],
            Arc::new(Int64Array::from(vec![3, 0])),
        );
        assert_eq!(
            position_delete_rows(&ok, "d.parquet").unwrap(),
            vec![("a".to_owned(), 3), ("b".to_owned(), 0)]
        );
        // Another writer's int `pos` column: cast, not a failed downcast's panic.
        let int = cols(vec![Some("a")], Arc::new(Int32Array::from(vec![7])));
        assert_eq!(
            position_delete_rows(&int, "d.parquet").unwrap(),
            vec![("a".to_owned(), 7)]
        );
        let err = |c: &[ArrayRef]| {
            position_delete_rows(c, "d.parquet")
                .unwrap_err()
                .to_string()
        };
        let neg = cols(vec![Some("a")], Arc::new(Int64Array::from(vec![-1])));
        assert!(
            err(&neg).contains("row 0: negative pos -1"),
            "{}",
            err(&neg)
        );
        let null = cols(vec![None], Arc::new(Int64Array::from(vec![1])));
        assert!(
            err(&null).contains("null file_path or pos"),
            "{}",
            err(&null)
        );
        let one = vec![ok[0].clone()];
        assert!(err(&one).contains("1 columns"), "{}", err(&one));
        assert!(err(&neg).contains("d.parquet"));
    }
}
