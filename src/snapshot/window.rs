//! The watermark window of an incremental snapshot chunk (Netflix DBLog; Debezium's
//! incremental snapshots), source-neutral and pure: no IO, no clock.
//!
//! ```text
//!  stream: ── low watermark ── change k1 ── change k7 ── high watermark ──►
//!                 │ open()        seen()       seen()        │ rest(chunk)
//!  chunk (read between the two):  k1 k2 k3 … k7 …            └─► chunk minus {k1, k7}
//! ```
//!
//! # Invariant
//! A chunk row whose key changed inside the window is dropped: the stream already carries an
//! image at least as new (an update or insert with the row, or a delete), and it was emitted
//! before the chunk. A row whose key did not change inside the window is exactly as it was
//! at the high watermark, so emitting it there is consistent. Both images count (an update
//! that changes the key removes the old and the new key).
//!
//! Keys are compared through the `Debug` text of one-value slices of the key columns: equal
//! values of one Arrow type give equal text, and the chunk and the stream build the table's
//! columns with the same types (the snapshot readers' schemas match the decoders').

use std::collections::HashSet;

use arrow_array::Array;
use tidemark_model::{ChangeBatch, Image, ModelError};

/// Keys of one table changed in the stream inside an open window.
#[derive(Debug, Default, Clone)]
pub struct Window {
    changed: HashSet<Vec<u8>>,
}

impl Window {
    pub fn new() -> Self {
        Window::default()
    }

    /// Records the keys of every row of `b` (a batch of the window's table), both images.
    pub fn seen(&mut self, b: &ChangeBatch, key: &[String]) {
        let Some(cols) = key_columns(b, key) else {
            return;
        };
        for row in 0..b.num_rows() {
            for image in [Image::Before, Image::After] {
                if let Some(k) = row_key(b, image, row, &cols) {
                    self.changed.insert(k);
                }
            }
        }
    }

    /// Number of distinct keys changed so far.
    pub fn len(&self) -> usize {
        self.changed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.changed.is_empty()
    }

    /// The rows of `chunk` whose key did not change in the window, and how many were dropped.
    pub fn rest(
        &self,
        chunk: &ChangeBatch,
        key: &[String],
    ) -> Result<(ChangeBatch, usize), ModelError> {
        let Some(cols) = key_columns(chunk, key) else {
            return Ok((chunk.clone(), 0));
        };
        let keep: Vec<bool> = (0..chunk.num_rows())
            .map(|r| {
                row_key(chunk, Image::After, r, &cols).is_none_or(|k| !self.changed.contains(&k))
            })
            .collect();
        let dropped = keep.iter().filter(|k| !**k).count();
        Ok((take_rows(chunk, keep)?, dropped))
    }
}

/// Indices of the `key` columns in `b`'s schema (`None` if one is missing or none given).
fn key_columns(b: &ChangeBatch, key: &[String]) -> Option<Vec<usize>> {
    if key.is_empty() {
        return None;
    }
    key.iter().map(|k| b.schema.column_index(k)).collect()
}

/// The key of `row` in `image` as comparable bytes (`None` when the image is null).
pub fn row_key(b: &ChangeBatch, image: Image, row: usize, key_cols: &[usize]) -> Option<Vec<u8>> {
    let img = b.image(image);
    if !img.is_valid(row) || key_cols.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    for &c in key_cols {
        let col = img.column(c);
        // The Debug form of a one-value slice is the same for equal values of one type.
        out.extend_from_slice(format!("{:?}", col.slice(row, 1)).as_bytes());
        out.push(0);
    }
    Some(out)
}

/// The rows of `b` where `keep` is true.
pub fn take_rows(b: &ChangeBatch, keep: Vec<bool>) -> Result<ChangeBatch, ModelError> {
    if keep.iter().all(|k| *k) {
        return Ok(b.clone());
    }
    let mask = arrow_array::BooleanArray::from(keep);
    let rb = arrow_select::filter::filter_record_batch(&b.batch, &mask).map_err(|e| {
        ModelError::InvalidBatch {
            table: b.schema.table.clone(),
            reason: e.to_string(),
        }
    })?;
    ChangeBatch::try_new(b.schema.clone(), rb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidemark_model::mysql_types::MysqlType;
    use tidemark_model::{
        ChangeBatchBuilder, Column, MysqlPosition, MysqlValue, Op, Position, TableId, TableSchema,
    };

    fn schema() -> std::sync::Arc<TableSchema> {
        TableSchema::new(
            TableId::new("db", "t"),
            1,
            vec![
                Column::mysql("id", &MysqlType::Int { unsigned: false }, false, true),
                Column::mysql("v", &MysqlType::Int { unsigned: false }, true, false),
            ],
        )
    }

    /// Rows `(op, before id, after id)`; `v` = the id times 10.
    fn batch(rows: &[(Op, Option<i64>, Option<i64>)]) -> ChangeBatch {
        let mut b = ChangeBatchBuilder::new(schema(), rows.len());
        let at: Position = MysqlPosition::end(1, 4, 100, None).into();
        for (op, before, after) in rows {
            b.begin_row(*op, &at, None, None).unwrap();
            for (image, id) in [(Image::Before, before), (Image::After, after)] {
                match id {
                    None => b.image_null(image).unwrap(),
                    Some(id) => {
                        b.append_value(image, 0, MysqlValue::Int(*id)).unwrap();
                        b.append_value(image, 1, MysqlValue::Int(id * 10)).unwrap();
                    }
                }
            }
            b.finish_row().unwrap();
        }
        b.finish().unwrap()
    }

    fn ids(b: &ChangeBatch) -> Vec<i64> {
        let col = b.after().column(0);
        let a = col
            .as_any()
            .downcast_ref::<arrow_array::Int32Array>()
            .map(|a| a.values().iter().map(|v| i64::from(*v)).collect::<Vec<_>>());
        a.unwrap_or_else(|| {
            col.as_any()
                .downcast_ref::<arrow_array::Int64Array>()
                .expect("int column")
                .values()
                .to_vec()
        })
    }

    #[test]
    fn changes_in_the_window_win_over_the_chunk() {
        let key = vec!["id".to_string()];
        let chunk = batch(
            &(1..=6)
                .map(|i| (Op::Read, None, Some(i)))
                .collect::<Vec<_>>(),
        );
        let mut w = Window::new();
        // An update of 2, a delete of 4, a key change 5 → 50, an insert of 9 (not in the chunk).
        w.seen(
            &batch(&[
                (Op::Update, Some(2), Some(2)),
                (Op::Delete, Some(4), None),
                (Op::Update, Some(5), Some(50)),
                (Op::Insert, None, Some(9)),
            ]),
            &key,
        );
        assert_eq!(w.len(), 5);
        let (rest, dropped) = w.rest(&chunk, &key).unwrap();
        assert_eq!(ids(&rest), vec![1, 3, 6]);
        assert_eq!(dropped, 3);
        assert_eq!(rest.op(0), Op::Read);
    }

    #[test]
    fn an_empty_window_keeps_the_whole_chunk() {
        let key = vec!["id".to_string()];
        let chunk = batch(&[(Op::Read, None, Some(1)), (Op::Read, None, Some(2))]);
        let w = Window::new();
        assert!(w.is_empty());
        let (rest, dropped) = w.rest(&chunk, &key).unwrap();
        assert_eq!((ids(&rest), dropped), (vec![1, 2], 0));
        // A key column the batch lacks: nothing can match, nothing is dropped.
        let mut w = Window::new();
        w.seen(
            &batch(&[(Op::Delete, Some(1), None)]),
            &["nope".to_string()],
        );
        assert!(w.is_empty());
    }
}
