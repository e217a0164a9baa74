//! Mirror mode: the net effect of a run of changes on one table, one row per key, for a single
//! MERGE. Applying the changes in source order to a key gives either "the row is deleted" or
//! "the row is this" — that final state is all a MERGE needs, and a MERGE needs exactly one
//! source row per target row.
//!
//! ```text
//! insert k=1 a     ┐
//! update k=1 b     ├─► k=1: upsert b (keep the stored value of every Keep cell)
//! update k=1→2 c   ┘   ... after a key change: k=1: delete, k=2: upsert c
//! delete k=3       ──► k=3: delete
//! truncate         ──► forget everything before; the MERGE also deletes every target row
//!                      not in the batch
//! ```
//!
//! Each output cell points at a cell of one input image (`Cell`), so values are copied once,
//! by `interleave`, with no per-value conversion.
//!
//! # Traps
//! - An unchanged TOAST value (marker `Unchanged`) is not NULL. If an earlier change of the same
//!   key in the batch has the value, it is copied from there; otherwise the cell is `Keep` and
//!   the MERGE keeps the stored value (`CASE WHEN __tm_keep_<c> THEN target.c ...`).
//! - After a primary-key change, a `Keep` cell's stored value lives under the *old* key: the
//!   entry records a lookup and the writer reads those rows before the MERGE ([`Lookup`]).
//! - A column this schema version does not have (dropped, or not yet added) is `Keep` too: the
//!   stored value stays, a new row gets NULL.
//! - The old key of an update/delete comes from `before` (key-only with REPLICA IDENTITY
//!   DEFAULT); an update without `before` did not change its key.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, StringBuilder};
use arrow_array::{new_null_array, Array, ArrayRef, RecordBatch};
use arrow_row::{RowConverter, SortField};
use arrow_schema::{DataType, Field, Schema};
use tidemark_model::{ChangeBatch, Image, MarkerKind, Op, Position};

use super::markers::{DeltaMarker, MarkersBuilder};
use super::{convert_image, Layout, POSITION};
use crate::error::DeltaError;

/// Helper column: the row is to be deleted.
pub const DELETE_FLAG: &str = "__tm_delete";
/// Helper column prefix: keep the stored value of this column (`__tm_keep_<column>`).
pub const KEEP_PREFIX: &str = "__tm_keep_";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cell {
    src: usize,
    row: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Value(Cell),
    Keep,
}

struct Entry {
    delete: bool,
    /// Per layout column (system columns unused).
    slots: Vec<Slot>,
    /// Where the key values are.
    key_cells: Vec<Cell>,
    markers: Vec<DeltaMarker>,
    position: Position,
    /// Keep cells must be read from the stored row of this (old) key.
    lookup: Option<Vec<Cell>>,
}

/// Old keys whose stored rows the writer must read (see the module traps).
pub struct Lookup {
    /// The key columns (Delta types, layout key order), one row per key.
    pub keys: RecordBatch,
}

/// Accumulates the changes of one table.
pub struct MirrorReducer {
    layout: Layout,
    key_idx: Vec<usize>,
    converter: RowConverter,
    /// Converted images: sources[2b] = before of batch b, sources[2b+1] = after.
    sources: Vec<Vec<Option<ArrayRef>>>,
    map: HashMap<Box<[u8]>, usize>,
    entries: Vec<Entry>,
    truncate: bool,
    rows_in: usize,
}

impl MirrorReducer {
    /// A reducer for a table of `layout` (whose `key` must be non-empty).
    pub fn new(layout: Layout) -> Result<Self, DeltaError> {
        if layout.key.is_empty() {
            return Err(DeltaError::NoKey {
                table: layout.table.clone(),
            });
        }
        let key_idx: Vec<usize> = layout
            .key
            .iter()
            .map(|k| {
                layout
                    .data_index(k)
                    .ok_or_else(|| DeltaError::UnknownKeyColumn {
                        table: layout.table.clone(),
                        column: k.clone(),
                    })
            })
            .collect::<Result<_, _>>()?;
        let fields = key_idx
            .iter()
            .map(|&i| SortField::new(layout.fields[i].data_type().clone()))
            .collect();
        let converter = RowConverter::new(fields).map_err(|source| DeltaError::Arrow {
            table: layout.table.clone(),
            context: "key columns".into(),
            source,
        })?;
        Ok(MirrorReducer {
            layout,
            key_idx,
            converter,
            sources: Vec::new(),
            map: HashMap::new(),
            entries: Vec::new(),
            truncate: false,
            rows_in: 0,
        })
    }

    /// Change rows pushed so far.
    pub fn rows_in(&self) -> usize {
        self.rows_in
    }

    fn arrow_err(&self, context: &str) -> impl Fn(arrow_schema::ArrowError) -> DeltaError + '_ {
        let context = context.to_owned();
        move |source| DeltaError::Arrow {
            table: self.layout.table.clone(),
            context: context.clone(),
            source,
        }
    }

    /// Row-encoded keys of one image (None where the image lacks a key column).
    fn keys(&self, src: usize, len: usize) -> Result<Option<arrow_row::Rows>, DeltaError> {
        let mut cols = Vec::with_capacity(self.key_idx.len());
        for &k in &self.key_idx {
            match &self.sources[src][k] {
                Some(a) => cols.push(a.clone()),
                None => return Ok(None),
            }
        }
        if cols.iter().any(|c| c.len() != len) {
            return Ok(None);
        }
        self.converter
            .convert_columns(&cols)
            .map(Some)
            .map_err(self.arrow_err("encoding keys"))
    }

    /// Applies a batch of changes in order.
    pub fn push(&mut self, cb: &ChangeBatch) -> Result<(), DeltaError> {
        let n = cb.num_rows();
        let before_src = self.sources.len();
        let after_src = before_src + 1;
        self.sources
            .push(convert_image(&self.layout, cb, Image::Before)?);
        self.sources
            .push(convert_image(&self.layout, cb, Image::After)?);
        let before_keys = self.keys(before_src, n)?;
        let after_keys = self.keys(after_src, n)?;
        let colmap = super::column_map(&self.layout, &cb.schema);
        let before = cb.before();
        for i in 0..n {
            self.rows_in += 1;
            let op = cb.op(i);
            let position = cb.position(i);
            let missing_key = |op: &'static str| DeltaError::MissingOldKey {
                table: self.layout.table.clone(),
                op,
                position: position.to_string(),
            };
            match op {
                Op::Truncate => {
                    self.map.clear();
                    self.entries.clear();
                    self.truncate = true;
                }
                Op::Delete => {
                    let keys = before_keys
                        .as_ref()
                        .filter(|_| before.is_valid(i))
                        .ok_or_else(|| missing_key("delete"))?;
                    let key: Box<[u8]> = keys.row(i).as_ref().into();
                    self.set_deleted(key, before_src, i, position);
                }
                Op::Insert | Op::Read | Op::Update => {
                    let ak = after_keys.as_ref().ok_or_else(|| missing_key("update"))?;
                    let new_key: Box<[u8]> = ak.row(i).as_ref().into();
                    let old_key: Option<Box<[u8]>> = match (&before_keys, op) {
                        (Some(bk), Op::Update) if before.is_valid(i) => {
                            Some(bk.row(i).as_ref().into()).filter(|k| *k != new_key)
                        }
                        _ => None,
                    };
                    // Prior state to resolve unchanged cells from: same key, or the old key.
                    let prior_key = old_key.as_ref().unwrap_or(&new_key);
                    let prior = self
                        .map
                        .get(prior_key)
                        .copied()
                        .filter(|&e| !self.entries[e].delete);
                    let mut entry = self.new_entry(after_src, i, position, prior, cb, &colmap);
                    if let Some(old) = old_key {
                        // Keep cells (its own, or inherited from the old key's entry) refer to
                        // the stored row of the old key.
                        if entry.lookup.is_none() && self.keeps(&entry.slots) {
                            entry.lookup = Some(self.key_cells(before_src, i));
                        }
                        self.set_deleted(old, before_src, i, position);
                    }
                    self.put(new_key, entry);
                }
            }
        }
        Ok(())
    }

    /// Whether a data column's slot keeps the stored value.
    fn keeps(&self, slots: &[Slot]) -> bool {
        slots
            .iter()
            .zip(&self.layout.fields)
            .any(|(s, f)| *s == Slot::Keep && !self.layout.is_system(f.name()))
    }

    /// The type of layout column `c`'s converted arrays.
    fn source_type(&self, c: usize) -> DataType {
        self.sources
            .iter()
            .find_map(|s| s[c].as_ref().map(|a| a.data_type().clone()))
            .unwrap_or_else(|| self.layout.fields[c].data_type().clone())
    }

    fn key_cells(&self, src: usize, row: usize) -> Vec<Cell> {
        self.key_idx.iter().map(|_| Cell { src, row }).collect()
    }

    fn set_deleted(&mut self, key: Box<[u8]>, src: usize, row: usize, position: Position) {
        let entry = Entry {
            delete: true,
            slots: Vec::new(),
            key_cells: self.key_cells(src, row),
            markers: Vec::new(),
            position,
            lookup: None,
        };
        self.put(key, entry);
    }

    fn put(&mut self, key: Box<[u8]>, entry: Entry) {
        match self.map.get(&key) {
            Some(&e) => self.entries[e] = entry,
            None => {
                self.map.insert(key, self.entries.len());
                self.entries.push(entry);
            }
        }
    }

    fn new_entry(
        &self,
        src: usize,
        row: usize,
        position: Position,
        prior: Option<usize>,
        cb: &ChangeBatch,
        colmap: &[Option<usize>],
    ) -> Entry {
        let ncols = self.layout.fields.len();
        let mut slots = vec![Slot::Keep; ncols];
        for (c, s) in slots.iter_mut().enumerate() {
            if self.sources[src][c].is_some() {
                *s = Slot::Value(Cell { src, row });
            }
        }
        let mut markers = Vec::new();
        let mut unchanged = Vec::new();
        for m in cb.markers(row) {
            if m.image != Image::After {
                continue;
            }
            let Some(Some(li)) = colmap.get(m.column as usize).copied() else {
                continue;
            };
            if m.kind == MarkerKind::Unchanged {
                unchanged.push(li);
                slots[li] = Slot::Keep;
            } else {
                markers.push(DeltaMarker {
                    image: Image::After,
                    column: self.layout.fields[li].name().clone(),
                    kind: m.kind,
                    detail: m.detail,
                });
            }
        }
        if let Some(p) = prior {
            let prior = &self.entries[p];
            for (c, slot) in slots.iter_mut().enumerate() {
                if *slot == Slot::Keep && !self.layout.is_system(self.layout.fields[c].name()) {
                    *slot = prior.slots[c];
                    let name = self.layout.fields[c].name();
                    markers.extend(prior.markers.iter().filter(|m| &m.column == name).cloned());
                }
            }
        }
        let lookup = prior
            .and_then(|p| self.entries[p].lookup.clone())
            .filter(|_| self.keeps(&slots));
        Entry {
            delete: false,
            slots,
            key_cells: self.key_cells(src, row),
            markers,
            position,
            lookup,
        }
    }

    /// The old keys whose stored rows are needed, if any.
    pub fn lookup(&self) -> Result<Option<Lookup>, DeltaError> {
        let cells: Vec<&Vec<Cell>> = self
            .entries
            .iter()
            .filter(|e| !e.delete)
            .filter_map(|e| e.lookup.as_ref())
            .collect();
        if cells.is_empty() {
            return Ok(None);
        }
        let mut cols = Vec::new();
        let mut fields = Vec::new();
        for (j, &k) in self.key_idx.iter().enumerate() {
            let idx: Vec<(usize, usize)> = cells.iter().map(|c| (c[j].src, c[j].row)).collect();
            cols.push(self.gather(k, &idx)?);
            fields.push(self.layout.fields[k].clone());
        }
        let keys = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)
            .map_err(self.arrow_err("lookup keys"))?;
        Ok(Some(Lookup { keys }))
    }

    /// Gathers cells of layout column `c`; `src == usize::MAX` is a null.
    fn gather(&self, c: usize, idx: &[(usize, usize)]) -> Result<ArrayRef, DeltaError> {
        // The converted arrays' type (list element names may differ from the table's).
        let null = new_null_array(&self.source_type(c), 1);
        let mut arrays: Vec<&dyn Array> = Vec::with_capacity(self.sources.len() + 1);
        for s in &self.sources {
            arrays.push(s[c].as_deref().unwrap_or(null.as_ref()));
        }
        let null_src = arrays.len();
        arrays.push(null.as_ref());
        let idx: Vec<(usize, usize)> = idx
            .iter()
            .map(
                |&(s, r)| match self.sources.get(s).map(|v| v[c].is_some()) {
                    Some(true) => (s, r),
                    _ => (null_src, 0),
                },
            )
            .collect();
        arrow_select::interleave::interleave(&arrays, &idx).map_err(self.arrow_err(&format!(
            "gathering column {}",
            self.layout.fields[c].name()
        )))
    }

    /// The MERGE source: the layout's columns, `__tm_delete`, and a `__tm_keep_<c>` flag per
    /// column that has any Keep cell. `stored` holds the rows read for [`Self::lookup`]
    /// (layout data columns by name).
    pub fn finish(mut self, stored: Option<RecordBatch>) -> Result<MirrorBatch, DeltaError> {
        if let Some(stored) = stored {
            self.resolve_lookups(stored)?;
        }
        let layout = &self.layout;
        let mut fields = Vec::new();
        let mut cols: Vec<ArrayRef> = Vec::new();
        let mut keep_columns = Vec::new();
        for (c, f) in layout.fields.iter().enumerate() {
            if layout.is_system(f.name()) {
                continue;
            }
            let is_key = self.key_idx.contains(&c);
            let idx: Vec<(usize, usize)> = self
                .entries
                .iter()
                .map(|e| {
                    if is_key {
                        let j = self.key_idx.iter().position(|&k| k == c).unwrap_or(0);
                        (e.key_cells[j].src, e.key_cells[j].row)
                    } else {
                        match e.slots.get(c) {
                            Some(Slot::Value(cell)) if !e.delete => (cell.src, cell.row),
                            _ => (usize::MAX, 0),
                        }
                    }
                })
                .collect();
            let col = self.gather(c, &idx)?;
            fields.push(Field::new(f.name(), col.data_type().clone(), true));
            cols.push(col);
            if !is_key
                && self
                    .entries
                    .iter()
                    .any(|e| !e.delete && e.slots.get(c) == Some(&Slot::Keep))
            {
                let mut b = BooleanBuilder::with_capacity(self.entries.len());
                for e in &self.entries {
                    b.append_value(!e.delete && e.slots.get(c) == Some(&Slot::Keep));
                }
                fields.push(Field::new(
                    format!("{KEEP_PREFIX}{}", f.name()),
                    DataType::Boolean,
                    false,
                ));
                cols.push(Arc::new(b.finish()));
                keep_columns.push(f.name().clone());
            }
        }
        let mut pos = StringBuilder::new();
        let mut markers = MarkersBuilder::new();
        let mut del = BooleanBuilder::with_capacity(self.entries.len());
        for e in &self.entries {
            pos.append_value(e.position.to_string());
            markers.append(&e.markers);
            del.append_value(e.delete);
        }
        fields.push(Field::new(POSITION, DataType::Utf8, true));
        cols.push(Arc::new(pos.finish()));
        fields.push(super::markers::markers_field());
        cols.push(markers.finish());
        fields.push(Field::new(DELETE_FLAG, DataType::Boolean, false));
        cols.push(Arc::new(del.finish()));
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)
            .map_err(self.arrow_err("building the MERGE source"))?;
        Ok(MirrorBatch {
            batch,
            keep_columns,
            truncate: self.truncate,
            rows_in: self.rows_in,
            key: layout.key.clone(),
        })
    }

    /// Points Keep cells of key-changed rows at the stored rows read for them.
    fn resolve_lookups(&mut self, stored: RecordBatch) -> Result<(), DeltaError> {
        let src = self.sources.len();
        let mut by_layout: Vec<Option<ArrayRef>> = vec![None; self.layout.fields.len()];
        for (c, f) in self.layout.fields.iter().enumerate() {
            if self.layout.is_system(f.name()) {
                continue;
            }
            if let Some(a) = stored.column_by_name(f.name()) {
                // DataFusion reads strings as views: back to the converted arrays' type.
                let a = arrow_cast::cast(a, &self.source_type(c))
                    .map_err(self.arrow_err(&format!("stored column {}", f.name())))?;
                by_layout[c] = Some(a);
            }
        }
        self.sources.push(by_layout);
        let Some(stored_keys) = self.keys(src, stored.num_rows())? else {
            return Ok(());
        };
        let mut found: HashMap<Box<[u8]>, usize> = HashMap::new();
        for r in 0..stored.num_rows() {
            found.insert(stored_keys.row(r).as_ref().into(), r);
        }
        for e in 0..self.entries.len() {
            let Some(cells) = self.entries[e].lookup.clone() else {
                continue;
            };
            let cols: Vec<ArrayRef> = self
                .key_idx
                .iter()
                .zip(&cells)
                .map(|(&k, cell)| self.gather(k, &[(cell.src, cell.row)]))
                .collect::<Result<_, _>>()?;
            let rows = self
                .converter
                .convert_columns(&cols)
                .map_err(self.arrow_err("encoding lookup key"))?;
            let Some(&r) = found.get(rows.row(0).as_ref()) else {
                tracing::warn!(table = %self.layout.table, "a key-changed row's unchanged TOAST value is not in the mirror; it is written as NULL");
                continue;
            };
            for slot in self.entries[e].slots.iter_mut() {
                if *slot == Slot::Keep {
                    *slot = Slot::Value(Cell { src, row: r });
                }
            }
            self.entries[e].lookup = None;
        }
        Ok(())
    }
}

/// The MERGE source of one table.
pub struct MirrorBatch {
    pub batch: RecordBatch,
    /// Columns with a `__tm_keep_<c>` flag.
    pub keep_columns: Vec<String>,
    /// A truncate was in the batch: delete every target row not in it.
    pub truncate: bool,
    /// Change rows that went in.
    pub rows_in: usize,
    pub key: Vec<String>,
}

#[cfg(test)]
#[path = "mirror_tests.rs"]
mod tests;
