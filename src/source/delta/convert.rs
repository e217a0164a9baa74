//! One Delta version's change-feed rows → one [`Transaction`] of the change model. Pure.
//!
//! `insert` → `Insert` (after), `update_postimage` → `Update` (after), `delete` → `Delete`
//! (before); `update_preimage` rows are not passed on (the model's update needs only the new
//! row and the key, which does not change: a Delta MERGE that changes a key writes a delete and
//! an insert). Rows are ordered deletes, then updates, then inserts — a version's net effect —
//! so a version that removes and re-adds a key ends with the key present. Position:
//! `delta:<version>:<index>` with the index in that order; the transaction ends at
//! `delta:<version>:4294967295`.

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, TimestampMicrosecondBuilder, UInt64Builder, UInt8Builder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{new_null_array, Array, ArrayRef, RecordBatch, StructArray, UInt32Array};
use arrow_schema::{DataType, TimeUnit};
use tidemark_model::table::markers_type;
use tidemark_model::{
    ChangeBatch, Column, DeltaPosition, Op, Position, SourceType, TableId, TableSchema,
    Transaction, TxnItem,
};

/// Delta's change-feed columns.
pub const CHANGE_TYPE: &str = "_change_type";
pub const COMMIT_VERSION: &str = "_commit_version";
pub const COMMIT_TIMESTAMP: &str = "_commit_timestamp";

/// A version's rows could not be turned into the model.
#[derive(Debug, thiserror::Error)]
#[error("delta source {table}, version {version}: {message}")]
pub struct ConvertError {
    pub table: TableId,
    pub version: u64,
    pub message: String,
}

/// Converts versions of one table; keeps the current schema version.
pub struct CdfConverter {
    table: TableId,
    key: Vec<String>,
    exclude: Vec<String>,
    schema: Option<Arc<TableSchema>>,
}

/// The model's type for a Delta-read Arrow type (views and dictionaries become plain arrays).
fn model_type(dt: &DataType) -> DataType {
    match dt {
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::BinaryView | DataType::LargeBinary => DataType::Binary,
        DataType::Dictionary(_, v) => model_type(v),
        other => other.clone(),
    }
}

impl CdfConverter {
    pub fn new(table: TableId, key: Vec<String>, exclude: Vec<String>) -> Self {
        CdfConverter {
            table,
            key,
            exclude,
            schema: None,
        }
    }

    fn err(&self, version: u64, message: impl Into<String>) -> ConvertError {
        ConvertError {
            table: self.table.clone(),
            version,
            message: message.into(),
        }
    }

    fn schema_for(
        &mut self,
        version: u64,
        batch: &RecordBatch,
    ) -> Result<Arc<TableSchema>, ConvertError> {
        let mut columns = Vec::new();
        for f in batch.schema().fields() {
            let name = f.name();
            if [CHANGE_TYPE, COMMIT_VERSION, COMMIT_TIMESTAMP].contains(&name.as_str())
                || self.exclude.contains(name)
            {
                continue;
            }
            let dt = model_type(f.data_type());
            let display = dt.to_string();
            let st = SourceType {
                name: display.clone(),
                oid: 0,
                modifier: -1,
                display,
                element: None,
                labels: Vec::new(),
                structure: None,
            };
            columns.push(Column::new(name, st, dt, true, self.key.contains(name)));
        }
        for k in &self.key {
            if !columns.iter().any(|c| &c.name == k) {
                return Err(self.err(
                    version,
                    format!("key column {k} is not a column of the table"),
                ));
            }
        }
        match &self.schema {
            Some(s) if s.same_columns(&columns) => Ok(s.clone()),
            prev => {
                let v = prev.as_ref().map_or(1, |s| s.version + 1);
                let s = TableSchema::new(self.table.clone(), v, columns);
                self.schema = Some(s.clone());
                Ok(s)
            }
        }
    }

    /// The transaction of `version` from its change-feed rows.
    pub fn transaction(
        &mut self,
        version: u64,
        batches: &[RecordBatch],
    ) -> Result<Transaction, ConvertError> {
        let mut txn = Transaction::new(
            Some(version),
            None,
            Position::Delta(DeltaPosition::end(version)),
        );
        let Some(first) = batches.first() else {
            return Ok(txn);
        };
        let all = arrow_select::concat::concat_batches(&first.schema(), batches)
            .map_err(|e| self.err(version, format!("concatenating the feed: {e}")))?;
        let schema = self.schema_for(version, &all)?;
        let ct = all
            .column_by_name(CHANGE_TYPE)
            .ok_or_else(|| self.err(version, "the feed has no _change_type column"))?;
        let ct =
            arrow_cast::cast(ct, &DataType::Utf8).map_err(|e| self.err(version, e.to_string()))?;
        let ct = ct.as_string::<i32>();
        let ts = all
            .column_by_name(COMMIT_TIMESTAMP)
            .map(|c| {
                arrow_cast::cast(
                    c,
                    &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                )
            })
            .transpose()
            .map_err(|e| self.err(version, e.to_string()))?;
        // (row, op) in net-effect order.
        let mut rows: Vec<(u32, Op)> = Vec::with_capacity(all.num_rows());
        for (want, op) in [
            ("delete", Op::Delete),
            ("update_postimage", Op::Update),
            ("insert", Op::Insert),
        ] {
            for i in 0..all.num_rows() {
                if ct.is_valid(i) && ct.value(i) == want {
                    rows.push((i as u32, op));
                }
            }
        }
        for i in 0..all.num_rows() {
            let t = ct.is_valid(i).then(|| ct.value(i));
            if !matches!(
                t,
                Some("delete" | "update_postimage" | "insert" | "update_preimage")
            ) {
                return Err(self.err(version, format!("unknown _change_type {t:?}")));
            }
        }
        if rows.is_empty() {
            return Ok(txn);
        }
        let n = rows.len();
        let idx = UInt32Array::from(rows.iter().map(|r| r.0).collect::<Vec<_>>());
        let fields = schema.image_fields().clone();
        let mut values: Vec<ArrayRef> = Vec::with_capacity(fields.len());
        for f in fields.iter() {
            let col = all
                .column_by_name(f.name())
                .ok_or_else(|| self.err(version, format!("column {} vanished", f.name())))?;
            let taken = arrow_select::take::take(col, &idx, None)
                .and_then(|a| arrow_cast::cast(&a, f.data_type()))
                .map_err(|e| self.err(version, format!("column {}: {e}", f.name())))?;
            values.push(taken);
        }
        let image = |want: fn(Op) -> bool| -> Result<ArrayRef, ConvertError> {
            let valid: Vec<bool> = rows.iter().map(|r| want(r.1)).collect();
            StructArray::try_new(fields.clone(), values.clone(), Some(valid.into()))
                .map(|s| Arc::new(s) as ArrayRef)
                .map_err(|e| self.err(version, format!("building an image: {e}")))
        };
        let before = image(|op| op == Op::Delete)?;
        let after = image(|op| op != Op::Delete)?;
        let mut op_b = UInt8Builder::with_capacity(n);
        let mut pos_b = BinaryBuilder::with_capacity(n, n * 13);
        let mut txid_b = UInt64Builder::with_capacity(n);
        let mut ts_b = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        let ts = ts
            .as_ref()
            .map(|t| t.as_primitive::<TimestampMicrosecondType>());
        for (j, (row, op)) in rows.iter().enumerate() {
            op_b.append_value(op.as_u8());
            let p = Position::Delta(DeltaPosition {
                version,
                index: j as u32,
            });
            pos_b.append_value(p.to_bytes());
            txid_b.append_value(version);
            let t = ts.and_then(|t| t.is_valid(*row as usize).then(|| t.value(*row as usize)));
            ts_b.append_option(t);
            if txn.commit_ts_us.is_none() {
                txn.commit_ts_us = t;
            }
        }
        let cols: Vec<ArrayRef> = vec![
            Arc::new(op_b.finish()),
            Arc::new(pos_b.finish()),
            Arc::new(txid_b.finish()),
            Arc::new(ts_b.finish()),
            before,
            after,
            new_null_array(&markers_type(), n),
        ];
        let batch = RecordBatch::try_new(schema.arrow.clone(), cols)
            .map_err(|e| self.err(version, format!("building the change batch: {e}")))?;
        let cb =
            ChangeBatch::try_new(schema, batch).map_err(|e| self.err(version, e.to_string()))?;
        txn.items.push(TxnItem::Rows(cb));
        Ok(txn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, StringArray, TimestampMicrosecondArray};

    fn feed(types: &[&str], ids: &[i64]) -> RecordBatch {
        RecordBatch::try_from_iter([
            ("id", Arc::new(Int64Array::from(ids.to_vec())) as ArrayRef),
            (
                "_change_type",
                Arc::new(StringArray::from(types.to_vec())) as ArrayRef,
            ),
            (
                "_commit_version",
                Arc::new(Int64Array::from(vec![3; ids.len()])) as ArrayRef,
            ),
            (
                "_commit_timestamp",
                Arc::new(
                    TimestampMicrosecondArray::from(vec![1_000; ids.len()]).with_timezone("UTC"),
                ) as ArrayRef,
            ),
        ])
        .unwrap()
    }

    #[test]
    fn a_version_becomes_one_transaction_in_net_effect_order() {
        let mut c = CdfConverter::new(TableId::new("delta", "t"), vec!["id".into()], vec![]);
        let b = feed(
            &["insert", "update_preimage", "update_postimage", "delete"],
            &[1, 2, 2, 3],
        );
        let t = c.transaction(3, &[b]).unwrap();
        assert_eq!(t.end, Position::Delta(DeltaPosition::end(3)));
        assert_eq!(t.commit_ts_us, Some(1_000));
        let cb = t.batches().next().unwrap();
        assert_eq!(cb.num_rows(), 3);
        assert_eq!(
            [cb.op(0), cb.op(1), cb.op(2)],
            [Op::Delete, Op::Update, Op::Insert]
        );
        assert_eq!(
            cb.position(2),
            Position::Delta(DeltaPosition {
                version: 3,
                index: 2
            })
        );
        assert!(cb.before().is_valid(0) && cb.after().is_null(0));
        assert!(cb.schema.columns[0].key);
        // Same columns: same schema version.
        let t2 = c.transaction(4, &[feed(&["insert"], &[9])]).unwrap();
        assert_eq!(t2.batches().next().unwrap().schema.version, 1);
        assert!(c.transaction(5, &[]).unwrap().is_empty());
        assert!(c.transaction(6, &[feed(&["bogus"], &[1])]).is_err());
    }
}
