//! Changelog mode: every change as rows of an append-only table, in the shape of Delta's own
//! change feed.
//!
//! | change | rows (`_change_type`) | image columns hold |
//! |---|---|---|
//! | insert, snapshot read | `insert` | the new row |
//! | update | `update_preimage` (only when the source sent an old image), `update_postimage` | old image (key only with REPLICA IDENTITY DEFAULT), new row |
//! | delete | `delete` | the old image (key only with REPLICA IDENTITY DEFAULT) |
//! | truncate | `truncate` | all NULL |
//!
//! Every row also has `_position` (text), `_position_key` (order-preserving bytes: sort by it
//! for source order), `_txid`, `_commit_ts` and `_markers` (which also records unchanged TOAST
//! values, kind `unchanged`: the value was not sent, it is not NULL).

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{new_null_array, Array, ArrayRef, RecordBatch};
use tidemark_model::{ChangeBatch, Image, Op};

use super::markers::{DeltaMarker, MarkersBuilder};
use super::{convert_image, Layout, CHANGE_TYPE, COMMIT_TS, POSITION, POSITION_KEY, TXID};
use crate::error::DeltaError;

const BEFORE: usize = 0;
const AFTER: usize = 1;
const NONE: usize = 2;

/// `_change_type` values.
pub fn change_type(op: Op, image: Image) -> &'static str {
    match (op, image) {
        (Op::Insert | Op::Read, _) => "insert",
        (Op::Update, Image::Before) => "update_preimage",
        (Op::Update, Image::After) => "update_postimage",
        (Op::Delete, _) => "delete",
        (Op::Truncate, _) => "truncate",
    }
}

/// Encodes one change batch as changelog rows in `layout`'s column order.
pub fn encode(layout: &Layout, cb: &ChangeBatch) -> Result<RecordBatch, DeltaError> {
    let arrow_err = |context: &str| {
        let context = context.to_owned();
        move |source: arrow_schema::ArrowError| DeltaError::Arrow {
            table: layout.table.clone(),
            context: context.clone(),
            source,
        }
    };
    let before = convert_image(layout, cb, Image::Before)?;
    let after = convert_image(layout, cb, Image::After)?;
    let before_valid = cb.before();
    // (image source, row, op, image)
    let mut rows: Vec<(usize, usize, Op, Image)> = Vec::with_capacity(cb.num_rows() * 2);
    for i in 0..cb.num_rows() {
        let op = cb.op(i);
        match op {
            Op::Insert | Op::Read => rows.push((AFTER, i, op, Image::After)),
            Op::Update => {
                if before_valid.is_valid(i) {
                    rows.push((BEFORE, i, op, Image::Before));
                }
                rows.push((AFTER, i, op, Image::After));
            }
            Op::Delete => rows.push((BEFORE, i, op, Image::Before)),
            Op::Truncate => rows.push((NONE, i, op, Image::After)),
        }
    }
    let idx: Vec<(usize, usize)> = rows
        .iter()
        .map(|&(s, r, _, _)| if s == NONE { (NONE, 0) } else { (s, r) })
        .collect();
    let names: Vec<&str> = cb.schema.columns.iter().map(|c| c.name.as_str()).collect();
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(layout.fields.len());
    for (c, f) in layout.fields.iter().enumerate() {
        let col: ArrayRef = match f.name().as_str() {
            CHANGE_TYPE => {
                let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * 12);
                for &(_, _, op, image) in &rows {
                    b.append_value(change_type(op, image));
                }
                Arc::new(b.finish())
            }
            POSITION => {
                let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * 28);
                for &(_, r, _, _) in &rows {
                    b.append_value(cb.position(r).to_string());
                }
                Arc::new(b.finish())
            }
            POSITION_KEY => {
                let mut b = BinaryBuilder::with_capacity(rows.len(), rows.len() * 21);
                let mut buf = Vec::with_capacity(32);
                for &(_, r, _, _) in &rows {
                    buf.clear();
                    cb.position(r).write_bytes(&mut buf);
                    b.append_value(&buf);
                }
                Arc::new(b.finish())
            }
            TXID => {
                let mut b = Int64Builder::with_capacity(rows.len());
                for &(_, r, _, _) in &rows {
                    match cb.txid(r) {
                        Some(x) => {
                            b.append_value(i64::try_from(x).map_err(|_| DeltaError::Schema {
                                table: layout.table.clone(),
                                column: TXID.into(),
                                message: format!("transaction id {x} does not fit a Delta long"),
                            })?)
                        }
                        None => b.append_null(),
                    }
                }
                Arc::new(b.finish())
            }
            COMMIT_TS => {
                let mut b =
                    TimestampMicrosecondBuilder::with_capacity(rows.len()).with_timezone("UTC");
                for &(_, r, _, _) in &rows {
                    b.append_option(cb.commit_ts_us(r));
                }
                Arc::new(b.finish())
            }
            super::markers::MARKERS => {
                let mut b = MarkersBuilder::new();
                for &(_, r, _, image) in &rows {
                    let ms: Vec<DeltaMarker> = cb
                        .markers(r)
                        .into_iter()
                        .filter(|m| m.image == image)
                        .filter_map(|m| {
                            Some(DeltaMarker {
                                image: m.image,
                                column: (*names.get(m.column as usize)?).to_owned(),
                                kind: m.kind,
                                detail: m.detail,
                            })
                        })
                        .collect();
                    b.append(&ms);
                }
                b.finish()
            }
            _ => {
                let dt = before[c]
                    .as_ref()
                    .or(after[c].as_ref())
                    .map(|a| a.data_type().clone())
                    .unwrap_or_else(|| f.data_type().clone());
                let null = new_null_array(&dt, 1);
                let b = before[c].as_deref().unwrap_or(null.as_ref());
                let a = after[c].as_deref().unwrap_or(null.as_ref());
                let present = [before[c].is_some(), after[c].is_some()];
                let idx: Vec<(usize, usize)> = idx
                    .iter()
                    .map(|&(s, r)| {
                        if s < NONE && present[s] {
                            (s, r)
                        } else {
                            (NONE, 0)
                        }
                    })
                    .collect();
                arrow_select::interleave::interleave(&[b, a, null.as_ref()], &idx)
                    .map_err(arrow_err(&format!("column {}", f.name())))?
            }
        };
        cols.push(col);
    }
    // Column types come from the conversion (list element names may differ from the table's).
    let fields: Vec<arrow_schema::Field> = layout
        .fields
        .iter()
        .zip(&cols)
        .map(|(f, c)| arrow_schema::Field::new(f.name(), c.data_type().clone(), true))
        .collect();
    RecordBatch::try_new(Arc::new(arrow_schema::Schema::new(fields)), cols)
        .map_err(arrow_err("building the changelog batch"))
}

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int32Type;
    use tidemark_model::Op;

    use super::*;
    use crate::config::TableMode;
    use crate::encoder::testutil::{batch, schema, V};

    #[test]
    fn one_row_per_image_with_system_columns() {
        let s = schema(1, true);
        let layout = Layout::new(&s, TableMode::Changelog, vec![]).unwrap();
        let cb = batch(
            &s,
            0x100,
            &[
                (
                    Op::Insert,
                    None,
                    Some(vec![V::T("1"), V::T("a"), V::T("Infinity")]),
                ),
                (
                    Op::Update,
                    Some(vec![V::T("1"), V::Null, V::Null]),
                    Some(vec![V::T("1"), V::Unchanged, V::T("2.00")]),
                ),
                (Op::Update, None, Some(vec![V::T("1"), V::T("c"), V::Null])),
                (Op::Delete, Some(vec![V::T("1"), V::Null, V::Null]), None),
                (Op::Truncate, None, None),
            ],
        );
        let out = encode(&layout, &cb).unwrap();
        let ct: Vec<&str> = out
            .column_by_name(CHANGE_TYPE)
            .unwrap()
            .as_string::<i32>()
            .iter()
            .map(|v| v.unwrap())
            .collect();
        assert_eq!(
            ct,
            [
                "insert",
                "update_preimage",
                "update_postimage",
                "update_postimage",
                "delete",
                "truncate"
            ]
        );
        let id = out
            .column_by_name("id")
            .unwrap()
            .as_primitive::<Int32Type>();
        assert_eq!(
            id.iter().collect::<Vec<_>>(),
            [Some(1), Some(1), Some(1), Some(1), Some(1), None]
        );
        let pos = out.column_by_name(POSITION).unwrap().as_string::<i32>();
        assert_eq!(pos.value(0), "pg:0/100:0/100:0");
        assert_eq!(pos.value(2), "pg:0/100:0/100:1");
        let m = out
            .column_by_name(super::super::markers::MARKERS)
            .unwrap()
            .as_list::<i32>();
        // insert: infinity; preimage: none; postimage: unchanged v
        assert!(m.is_valid(0) && m.is_null(1) && m.is_valid(2) && m.is_null(3));
        let entry = m.value(2);
        assert_eq!(
            entry.as_struct().column(2).as_string::<i32>().value(0),
            "unchanged"
        );
        assert_eq!(entry.as_struct().column(1).as_string::<i32>().value(0), "v");
        let txid = out
            .column_by_name(TXID)
            .unwrap()
            .as_primitive::<arrow_array::types::Int64Type>();
        assert_eq!(txid.value(0), 7);
    }
}
