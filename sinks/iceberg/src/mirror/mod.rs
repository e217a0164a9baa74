//! Mirror mode: applies change rows to a table so it holds the source table's current state.
//!
//! ```text
//! row ─► key index ─► old location? ─► position delete (file, pos)
//!    └─► new image ─► segment ─► DataWriter ─► (file, pos) back into the index
//! ```
//!
//! Rows of one change batch are processed in order in a *segment*: a row inserted and then
//! updated or deleted inside the segment is simply not written (no delete needed), and an
//! unchanged TOAST value is taken from the row it replaces (in the segment, or read back from
//! its data file).
//!
//! # Traps
//! - Unchanged TOAST is not NULL: the stored value is kept. If the table does not have the old
//!   row (it was never captured), the value is unknown: a definite error, never a NULL.
//! - An update's old key comes from the old image when the source sent one (a primary key
//!   change), else from the new image.
//! - An insert of a key the table already has (a snapshot re-read) replaces the row.

pub mod index;

use std::collections::HashMap;

use arrow_array::{Array, ArrayRef, RecordBatch};
use tidemark_model::table::columns;
use tidemark_model::{ChangeBatch, Image, Op};

use crate::commit::catalog::Catalog;
use crate::encoder::rows::{normalize_key, unchanged_columns};
use crate::error::{IcebergError, IoContext};
use crate::table::TableState;
use crate::writer::{take_rows, Loc};
use index::{read_columns, read_file, PENDING_FILE};

/// Where a filled value comes from.
#[derive(Clone, Copy, Debug)]
enum Fill {
    /// Another row of the segment (its slot).
    Slot(usize),
    /// A written row.
    File(Loc),
}

struct Slot {
    row: u32,
    key: Box<[u8]>,
    live: bool,
    fills: Vec<(usize, Fill)>,
}

/// Applies the rows of `cb` (all after the table's recorded position).
pub async fn apply(
    state: &mut TableState,
    catalog: &Catalog,
    cb: &ChangeBatch,
    max_keys: u64,
) -> Result<(), IcebergError> {
    let table = cb.schema.table.clone();
    let (before_keys, after_keys) = {
        let index = state
            .index
            .as_ref()
            .ok_or_else(|| IcebergError::schema(&table, "no key index"))?;
        let key_cols: Vec<usize> = cb.schema.key_columns().map(|(i, _)| i).collect();
        let keys_of = |image: usize| -> Result<Vec<Option<Box<[u8]>>>, IcebergError> {
            let img = cb
                .batch
                .column(image)
                .as_any()
                .downcast_ref::<arrow_array::StructArray>()
                .ok_or_else(|| IcebergError::schema(&table, "image is not a struct"))?;
            let cols = key_cols
                .iter()
                .map(|c| normalize_key(img.column(*c)))
                .collect::<Result<Vec<ArrayRef>, _>>()
                .map_err(|e| IcebergError::schema(&table, format!("key: {e}")))?;
            // Rows whose image is null have null key columns: `encode` yields None.
            index
                .encode(&cols)
                .map_err(|e| IcebergError::schema(&table, format!("key: {e}")))
        };
        (
            keys_of(columns::BEFORE_INDEX)?,
            keys_of(columns::AFTER_INDEX)?,
        )
    };
    let mut slots: Vec<Slot> = Vec::new();
    for i in 0..cb.num_rows() {
        let op = cb.op(i);
        if op == Op::Truncate {
            write_segment(state, catalog, cb, &mut slots, max_keys).await?;
            state.truncate(catalog).await?;
            continue;
        }
        let index = state
            .index
            .as_mut()
            .ok_or_else(|| IcebergError::schema(&table, "no key index"))?;
        let new_key = after_keys[i].clone();
        let old_key = match op {
            Op::Update | Op::Delete => before_keys[i].clone().or_else(|| new_key.clone()),
            _ => new_key.clone(),
        };
        let old = match &old_key {
            Some(k) => index.remove(k),
            None => None,
        };
        let mut fills = Vec::new();
        if let Some(loc) = old {
            if loc.file == PENDING_FILE {
                slots[loc.pos as usize].live = false;
            } else {
                state.deletes.insert((loc.file, loc.pos));
            }
        }
        if op == Op::Delete {
            if old.is_none() {
                tracing::debug!(%table, position = %cb.position(i), "delete of a row the table does not have");
            }
            continue;
        }
        let Some(key) = new_key else {
            return Err(IcebergError::unsupported(
                &table,
                "(primary key)",
                format!("row at {} has a null key in its new image", cb.position(i)),
            ));
        };
        for c in unchanged_columns(cb, i, Image::After) {
            let from = match old {
                Some(Loc { file: PENDING_FILE, pos }) => {
                    let s = &slots[pos as usize];
                    s.fills.iter().find(|(fc, _)| *fc == c).map(|(_, f)| *f).unwrap_or(Fill::Slot(pos as usize))
                }
                Some(loc) => Fill::File(loc),
                None => {
                    return Err(IcebergError::unsupported(
                        &table,
                        &cb.schema.columns[c].name,
                        format!(
                            "row at {}: unchanged (TOAST) value of a row the table does not have; \
                             its value is unknown (use REPLICA IDENTITY FULL or snapshot the table)",
                            cb.position(i)
                        ),
                    ))
                }
            };
            fills.push((c, from));
        }
        // Another row with the new key (a key change onto an existing key) is replaced.
        if old_key.as_ref() != Some(&key) {
            if let Some(loc) = index.remove(&key) {
                if loc.file == PENDING_FILE {
                    slots[loc.pos as usize].live = false;
                } else {
                    state.deletes.insert((loc.file, loc.pos));
                }
            }
        }
        index.insert(
            key.clone(),
            Loc {
                file: PENDING_FILE,
                pos: slots.len() as u32,
            },
        );
        slots.push(Slot {
            row: i as u32,
            key,
            live: true,
            fills,
        });
    }
    write_segment(state, catalog, cb, &mut slots, max_keys).await
}

/// Writes the live rows of the segment and points their keys at their new locations.
async fn write_segment(
    state: &mut TableState,
    catalog: &Catalog,
    cb: &ChangeBatch,
    slots: &mut Vec<Slot>,
    max_keys: u64,
) -> Result<(), IcebergError> {
    if slots.is_empty() {
        return Ok(());
    }
    let live: Vec<usize> = (0..slots.len()).filter(|s| slots[*s].live).collect();
    let rows: Vec<u32> = live.iter().map(|s| slots[*s].row).collect();
    let encoder = state
        .encoder
        .as_ref()
        .ok_or_else(|| IcebergError::schema(&cb.schema.table, "no encoder"))?;
    let mut batch = if slots.iter().any(|s| s.live && !s.fills.is_empty()) {
        // Every slot, dead ones too: a live row may take an unchanged value from a row it
        // replaced inside this segment.
        let all: Vec<u32> = slots.iter().map(|s| s.row).collect();
        let full = encoder.encode(cb, Image::After, &all)?;
        fill_unchanged(state, catalog, cb, slots, full).await?
    } else {
        encoder.encode(cb, Image::After, &rows)?
    };
    if batch.num_rows() != rows.len() {
        let keep: Vec<u32> = live.iter().map(|s| *s as u32).collect();
        batch = take_rows(&batch, &keep)?;
    }
    let locs = state.writer.write(&batch, &mut state.files).await?;
    let index = state
        .index
        .as_mut()
        .ok_or_else(|| IcebergError::schema(&cb.schema.table, "no key index"))?;
    for (k, s) in live.iter().enumerate() {
        index.settle(&slots[*s].key, locs[k]);
    }
    // Dead slots' keys were removed or re-pointed when they died.
    if index.len() as u64 > max_keys {
        return Err(IcebergError::Limit(format!(
            "table {}: more than max_index_keys = {max_keys} live rows; raise it",
            cb.schema.table
        )));
    }
    state.pending_rows += rows.len() as u64;
    slots.clear();
    Ok(())
}

/// Replaces unchanged values in `batch` (rows = live slots) by the stored ones.
async fn fill_unchanged(
    state: &mut TableState,
    catalog: &Catalog,
    cb: &ChangeBatch,
    slots: &[Slot],
    batch: RecordBatch,
) -> Result<RecordBatch, IcebergError> {
    let encoder = state
        .encoder
        .clone()
        .ok_or_else(|| IcebergError::schema(&cb.schema.table, "no encoder"))?;
    let live: Vec<usize> = (0..slots.len()).filter(|s| slots[*s].live).collect();
    let field_of = |c: usize| -> Option<usize> {
        let name = &cb.schema.columns[c].name;
        encoder.arrow.fields().iter().position(|f| f.name() == name)
    };
    // Values read from files, per (file, column): read once each.
    let mut fetched: HashMap<(u32, usize), ArrayRef> = HashMap::new();
    for s in &live {
        for (c, f) in &slots[*s].fills {
            if let Fill::File(loc) = f {
                if fetched.contains_key(&(loc.file, *c)) {
                    continue;
                }
                if state.writer.is_open(loc.file) {
                    state.writer.close_file(loc.file, &state.files).await?;
                }
                let path = state.files.paths[loc.file as usize].to_string();
                let fid = field_of(*c)
                    .and_then(|i| {
                        encoder
                            .arrow
                            .field(i)
                            .metadata()
                            .get("PARQUET:field_id")
                            .and_then(|v| v.parse::<i32>().ok())
                    })
                    .ok_or_else(|| {
                        IcebergError::schema(&cb.schema.table, "field id of a filled column")
                    })?;
                let cols = read_columns(read_file(&catalog.file_io, &path).await?, &[fid], &path)?;
                let col = cols
                    .into_iter()
                    .next()
                    .ok_or_else(|| IcebergError::corrupt(&path, "empty data file"))?;
                fetched.insert((loc.file, *c), col);
            }
        }
    }
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    let mut by_col: HashMap<usize, Vec<(usize, Fill)>> = HashMap::new();
    for s in &live {
        for (c, f) in &slots[*s].fills {
            by_col.entry(*c).or_default().push((*s, *f));
        }
    }
    for (c, fills) in by_col {
        let Some(fi) = field_of(c) else { continue };
        let target = columns[fi].clone();
        // Sources: 0 = this batch's column, 1.. = fetched arrays.
        let mut sources: Vec<ArrayRef> = vec![target.clone()];
        let mut source_of: HashMap<u32, usize> = HashMap::new();
        let mut picks: Vec<(usize, usize)> = (0..target.len()).map(|r| (0, r)).collect();
        for (k, f) in fills {
            picks[k] = match f {
                Fill::Slot(s) => (0, s),
                Fill::File(loc) => {
                    let arr = fetched.get(&(loc.file, c)).cloned().ok_or_else(|| {
                        IcebergError::corrupt(cb.schema.table.to_string(), "fill value not fetched")
                    })?;
                    let arr = crate::encoder::rows::cast_to(&arr, target.data_type())
                        .io_ctx("cast stored value", &state.files.paths[loc.file as usize])?;
                    let src = *source_of.entry(loc.file).or_insert_with(|| {
                        sources.push(arr);
                        sources.len() - 1
                    });
                    (src, loc.pos as usize)
                }
            };
        }
        let refs: Vec<&dyn Array> = sources.iter().map(|a| a.as_ref()).collect();
        columns[fi] = arrow_select::interleave::interleave(&refs, &picks).map_err(|e| {
            IcebergError::corrupt(cb.schema.table.to_string(), format!("fill: {e}"))
        })?;
    }
    RecordBatch::try_new(batch.schema(), columns)
        .map_err(|e| IcebergError::corrupt(cb.schema.table.to_string(), format!("fill: {e}")))
}
