//! Rows of an Iceberg snapshot → change batches of the model. Pure.
//!
//! A snapshot's deleted rows and added rows are paired by the key (the table's identifier
//! fields, or `key_columns`): a key both deleted and added is an `Update` with both images,
//! an added key alone an `Insert`, a deleted key alone a `Delete`. That is the snapshot's net
//! effect, which is all Iceberg keeps (several source transactions committed as one snapshot
//! are one transaction here). Positions are `iceberg:<sequence>:<index>`, the index counting
//! the snapshot's changes in emission order; the transaction ends at
//! `iceberg:<sequence>:18446744073709551615`.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, TimestampMicrosecondBuilder, UInt64Builder, UInt8Builder,
};
use arrow_array::{new_null_array, Array, ArrayRef, RecordBatch, StructArray, UInt32Array};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::{DataType, Schema};
use tidemark_model::table::markers_type;
use tidemark_model::{
    ChangeBatch, Column, IcebergPosition, Op, Position, SourceType, TableId, TableSchema,
};

/// Rows could not be turned into the model.
#[derive(Debug, thiserror::Error)]
#[error("iceberg source {table}, snapshot sequence {sequence}: {message}")]
pub struct ConvertError {
    pub table: TableId,
    pub sequence: u64,
    pub message: String,
}

/// The model's type for an Iceberg-read Arrow type.
fn model_type(dt: &DataType) -> DataType {
    match dt {
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::BinaryView | DataType::LargeBinary => DataType::Binary,
        DataType::Dictionary(_, v) => model_type(v),
        // Iceberg's timestamptz is UTC ("+00:00" in iceberg-rust); the model says "UTC".
        DataType::Timestamp(u, Some(_)) => DataType::Timestamp(*u, Some("UTC".into())),
        DataType::List(f) | DataType::LargeList(f) => DataType::List(Arc::new(
            arrow_schema::Field::new("item", model_type(f.data_type()), true),
        )),
        other => other.clone(),
    }
}

/// One change: its op and the row of the deleted / added batch holding each image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    pub op: Op,
    pub before: Option<u32>,
    pub after: Option<u32>,
}

/// Converts the snapshots of one table; keeps the current schema version.
pub struct Converter {
    table: TableId,
    key: Vec<String>,
    exclude: Vec<String>,
    schema: Option<Arc<TableSchema>>,
}

impl Converter {
    pub fn new(table: TableId, key: Vec<String>, exclude: Vec<String>) -> Self {
        Converter {
            table,
            key,
            exclude,
            schema: None,
        }
    }

    pub fn err(&self, sequence: u64, message: impl Into<String>) -> ConvertError {
        ConvertError {
            table: self.table.clone(),
            sequence,
            message: message.into(),
        }
    }

    /// The model schema for rows read in `arrow` (the snapshot's Iceberg schema as Arrow),
    /// with `identifier` (the table's identifier field names) as the key unless
    /// `key_columns` was configured. A new version when the columns changed.
    pub fn schema_for(
        &mut self,
        sequence: u64,
        arrow: &Schema,
        identifier: &[String],
    ) -> Result<Arc<TableSchema>, ConvertError> {
        let key: &[String] = if self.key.is_empty() {
            identifier
        } else {
            &self.key
        };
        let mut columns = Vec::new();
        for f in arrow.fields() {
            let name = f.name();
            if self.exclude.contains(name) {
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
            columns.push(Column::new(
                name,
                st,
                dt,
                f.is_nullable(),
                key.contains(name),
            ));
        }
        for k in key {
            if !columns.iter().any(|c| &c.name == k) {
                return Err(self.err(
                    sequence,
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

    /// The key of every row of `batch` (`None` where a key column is null or there is no
    /// key): the display form of the key columns, which is exact for the identifier types
    /// Iceberg allows (no floats).
    pub fn keys(
        &self,
        sequence: u64,
        schema: &TableSchema,
        batch: &RecordBatch,
    ) -> Result<Vec<Option<String>>, ConvertError> {
        let key_cols: Vec<&ArrayRef> = schema
            .key_columns()
            .map(|(_, c)| {
                batch
                    .column_by_name(&c.name)
                    .ok_or_else(|| self.err(sequence, format!("key column {} missing", c.name)))
            })
            .collect::<Result<_, _>>()?;
        if key_cols.is_empty() {
            return Ok(vec![None; batch.num_rows()]);
        }
        let opts = FormatOptions::default();
        let fmts: Vec<ArrayFormatter<'_>> = key_cols
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(sequence, format!("key: {e}")))?;
        Ok((0..batch.num_rows())
            .map(|i| {
                if key_cols.iter().any(|c| c.is_null(i)) {
                    return None;
                }
                let mut k = String::new();
                for f in &fmts {
                    k.push_str(&f.value(i).to_string());
                    k.push('\u{1f}');
                }
                Some(k)
            })
            .collect())
    }

    /// One change batch: `changes` with images taken from `deleted` / `added`, positions
    /// from `*index` on (advanced).
    #[allow(clippy::too_many_arguments)]
    pub fn batch(
        &self,
        sequence: u64,
        schema: &Arc<TableSchema>,
        changes: &[Change],
        deleted: Option<&RecordBatch>,
        added: Option<&RecordBatch>,
        commit_ts_us: i64,
        index: &mut u64,
    ) -> Result<ChangeBatch, ConvertError> {
        let n = changes.len();
        let fields = schema.image_fields().clone();
        let image = |src: Option<&RecordBatch>,
                     pick: fn(&Change) -> Option<u32>|
         -> Result<ArrayRef, ConvertError> {
            let valid: Vec<bool> = changes.iter().map(|c| pick(c).is_some()).collect();
            let src = match src {
                Some(s) if valid.iter().any(|v| *v) => s,
                _ => return Ok(new_null_array(&DataType::Struct(fields.clone()), n)),
            };
            let idx = UInt32Array::from(changes.iter().map(pick).collect::<Vec<_>>());
            let mut values = Vec::with_capacity(fields.len());
            for f in fields.iter() {
                let col = src.column_by_name(f.name()).ok_or_else(|| {
                    self.err(
                        sequence,
                        format!("column {} not in the rows read", f.name()),
                    )
                })?;
                let taken = arrow_select::take::take(col, &idx, None)
                    .and_then(|a| arrow_cast::cast(&a, f.data_type()))
                    .map_err(|e| self.err(sequence, format!("column {}: {e}", f.name())))?;
                values.push(taken);
            }
            StructArray::try_new(fields.clone(), values, Some(valid.into()))
                .map(|s| Arc::new(s) as ArrayRef)
                .map_err(|e| self.err(sequence, format!("building an image: {e}")))
        };
        let before = image(deleted, |c| c.before)?;
        let after = image(added, |c| c.after)?;
        let mut op_b = UInt8Builder::with_capacity(n);
        let mut pos_b = BinaryBuilder::with_capacity(n, n * 17);
        let mut txid_b = UInt64Builder::with_capacity(n);
        let mut ts_b = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        for c in changes {
            op_b.append_value(c.op.as_u8());
            let p = Position::Iceberg(IcebergPosition {
                sequence,
                index: *index,
            });
            *index += 1;
            pos_b.append_value(p.to_bytes());
            txid_b.append_value(sequence);
            ts_b.append_value(commit_ts_us);
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
            .map_err(|e| self.err(sequence, format!("building the change batch: {e}")))?;
        ChangeBatch::try_new(schema.clone(), batch).map_err(|e| self.err(sequence, e.to_string()))
    }
}

/// Deleted rows by key, consumed as added rows claim them (updates).
#[derive(Default)]
pub struct Pending {
    by_key: HashMap<String, Vec<u32>>,
    unkeyed: Vec<u32>,
}

impl Pending {
    pub fn new(keys: Vec<Option<String>>) -> Self {
        let mut p = Pending::default();
        for (i, k) in keys.into_iter().enumerate() {
            match k {
                Some(k) => p.by_key.entry(k).or_default().push(i as u32),
                None => p.unkeyed.push(i as u32),
            }
        }
        p
    }

    /// The deleted row an added row with `key` replaces, if any.
    pub fn claim(&mut self, key: Option<&String>) -> Option<u32> {
        let rows = self.by_key.get_mut(key?)?;
        let r = rows.pop();
        if rows.is_empty() {
            self.by_key.remove(key?);
        }
        r
    }

    /// Deleted rows no added row claimed, in row order.
    pub fn rest(self) -> Vec<u32> {
        let mut out: Vec<u32> = self.by_key.into_values().flatten().collect();
        out.extend(self.unkeyed);
        out.sort_unstable();
        out
    }
}

/// The changes of one added file's rows: updates where a deleted row had the same key,
/// inserts otherwise; rows in `dead` (deleted again in the same snapshot) are skipped.
pub fn pair(
    keys: &[Option<String>],
    live: impl Fn(usize) -> bool,
    pending: &mut Pending,
) -> Vec<Change> {
    let mut out = Vec::with_capacity(keys.len());
    for (i, k) in keys.iter().enumerate() {
        if !live(i) {
            continue;
        }
        match pending.claim(k.as_ref()) {
            Some(b) => out.push(Change {
                op: Op::Update,
                before: Some(b),
                after: Some(i as u32),
            }),
            None => out.push(Change {
                op: Op::Insert,
                before: None,
                after: Some(i as u32),
            }),
        }
    }
    out
}

/// `Timestamp(µs)` of the commit, from the snapshot's milliseconds.
pub fn commit_ts_us(timestamp_ms: i64) -> i64 {
    timestamp_ms.saturating_mul(1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::Field;

    fn rows(ids: &[i64], v: &[&str]) -> RecordBatch {
        RecordBatch::try_from_iter([
            ("id", Arc::new(Int64Array::from(ids.to_vec())) as ArrayRef),
            ("v", Arc::new(StringArray::from(v.to_vec())) as ArrayRef),
        ])
        .unwrap()
    }

    #[test]
    fn deleted_and_added_rows_pair_into_updates_by_key() {
        let mut c = Converter::new(TableId::new("lake", "t"), vec![], vec![]);
        let arrow = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("v", DataType::LargeUtf8, true),
        ]);
        let s = c.schema_for(7, &arrow, &["id".into()]).unwrap();
        assert!(s.columns[0].key && !s.columns[1].key);
        assert_eq!(s.columns[1].data_type, DataType::Utf8);
        let deleted = rows(&[1, 2], &["a", "b"]);
        let added = rows(&[2, 3, 4], &["b2", "c", "dead"]);
        let mut pending = Pending::new(c.keys(7, &s, &deleted).unwrap());
        let keys = c.keys(7, &s, &added).unwrap();
        let changes = pair(&keys, |i| i != 2, &mut pending);
        assert_eq!(
            changes,
            [
                Change {
                    op: Op::Update,
                    before: Some(1),
                    after: Some(0)
                },
                Change {
                    op: Op::Insert,
                    before: None,
                    after: Some(1)
                },
            ]
        );
        assert_eq!(pending.rest(), [0]);
        let mut index = 0;
        let b = c
            .batch(
                7,
                &s,
                &changes,
                Some(&deleted),
                Some(&added),
                5_000,
                &mut index,
            )
            .unwrap();
        assert_eq!(index, 2);
        assert_eq!([b.op(0), b.op(1)], [Op::Update, Op::Insert]);
        assert_eq!(
            b.position(1),
            Position::Iceberg(IcebergPosition {
                sequence: 7,
                index: 1
            })
        );
        assert!(b.before().is_valid(0) && b.before().is_null(1));
        let dels = [Change {
            op: Op::Delete,
            before: Some(0),
            after: None,
        }];
        let d = c
            .batch(7, &s, &dels, Some(&deleted), None, 5_000, &mut index)
            .unwrap();
        assert!(d.after().is_null(0));
        assert_eq!(
            d.position(0),
            Position::Iceberg(IcebergPosition {
                sequence: 7,
                index: 2
            })
        );
        // Same columns: same version; a key column that does not exist is an error.
        assert_eq!(c.schema_for(8, &arrow, &["id".into()]).unwrap().version, 1);
        assert!(c.schema_for(8, &arrow, &["nope".into()]).is_err());
    }
}
