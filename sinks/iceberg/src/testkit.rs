//! Synthetic change transactions for the sink's own tests and the benchmark (feature
//! `testkit`): a table `(id int8 key, a int4, b text, c float8, d timestamptz)` whose values
//! derive from the key and the transaction, built through the model's row builder exactly as
//! a source would.

use std::sync::Arc;

use tidemark_model::pg_types::oid;
use tidemark_model::{
    ChangeBatchBuilder, Column, Image, Lsn, Op, PgPosition, Position, SourceType, TableId,
    TableSchema, Transaction, TxnItem,
};

/// One change of a synthetic transaction.
#[derive(Clone, Copy, Debug)]
pub enum Change {
    Insert(i64),
    /// Update of a non-key column; `true` = column `b` arrives unchanged (TOAST).
    Update(i64, bool),
    /// Primary key change `from → to`.
    Rekey(i64, i64),
    Delete(i64),
    Truncate,
}

/// Generates transactions with increasing LSNs.
pub struct Workload {
    pub schema: Arc<TableSchema>,
    pub lsn: u64,
    pub xid: u64,
}

fn col(name: &str, o: u32, key: bool) -> Column {
    let t = SourceType::pg_builtin(o, -1).expect("builtin type");
    Column::postgres(name, t, !key, key)
}

impl Workload {
    pub fn new(table: TableId) -> Self {
        Self::with_schema(TableSchema::new(
            table,
            1,
            vec![
                col("id", oid::INT8, true),
                col("a", oid::INT4, false),
                col("b", oid::TEXT, false),
                col("c", oid::FLOAT8, false),
                col("d", oid::TIMESTAMPTZ, false),
            ],
        ))
    }

    pub fn with_schema(schema: Arc<TableSchema>) -> Self {
        Workload {
            schema,
            lsn: 0x1000,
            xid: 700,
        }
    }

    /// The value of column `b` for key `id` written at `lsn`.
    pub fn b(id: i64, lsn: u64) -> String {
        format!("v{id}-{lsn}")
    }

    fn image(&self, b: &mut ChangeBatchBuilder, img: Image, id: i64, lsn: u64, unchanged_b: bool) {
        b.append_text(img, 0, id.to_string().as_bytes())
            .expect("id");
        b.append_text(
            img,
            1,
            ((id * 7 + lsn as i64) % 1000).to_string().as_bytes(),
        )
        .expect("a");
        if unchanged_b {
            b.append_unchanged(img, 2).expect("b");
        } else {
            b.append_text(img, 2, Self::b(id, lsn).as_bytes())
                .expect("b");
        }
        b.append_text(img, 3, format!("{}.5", id % 10_000).as_bytes())
            .expect("c");
        b.append_text(img, 4, b"2026-01-02 03:04:05.123456+00")
            .expect("d");
        for c in 5..self.schema.columns.len() {
            b.append_null(img, c).expect("extra column");
        }
    }

    fn key_only(&self, b: &mut ChangeBatchBuilder, id: i64) {
        b.append_text(Image::Before, 0, id.to_string().as_bytes())
            .expect("id");
        for c in 1..self.schema.columns.len() {
            b.append_null(Image::Before, c).expect("key-only image");
        }
    }

    /// One complete transaction of `changes`.
    pub fn txn(&mut self, changes: &[Change]) -> Arc<Transaction> {
        self.lsn += 0x100;
        self.xid += 1;
        let commit = Lsn(self.lsn + changes.len() as u64 * 8 + 8);
        let mut b = ChangeBatchBuilder::new(self.schema.clone(), changes.len());
        for (i, c) in changes.iter().enumerate() {
            let pos = Position::pg(commit, Lsn(self.lsn + i as u64 * 8), i as u32);
            let op = match c {
                Change::Insert(_) => Op::Insert,
                Change::Update(..) | Change::Rekey(..) => Op::Update,
                Change::Delete(_) => Op::Delete,
                Change::Truncate => Op::Truncate,
            };
            b.begin_row(op, &pos, Some(self.xid), Some(1_767_323_045_000_000))
                .expect("row");
            match *c {
                Change::Insert(id) => {
                    b.image_null(Image::Before).expect("before");
                    self.image(&mut b, Image::After, id, self.lsn, false);
                }
                Change::Update(id, unchanged) => {
                    b.image_null(Image::Before).expect("before");
                    self.image(&mut b, Image::After, id, self.lsn, unchanged);
                }
                Change::Rekey(from, to) => {
                    self.key_only(&mut b, from);
                    self.image(&mut b, Image::After, to, self.lsn, false);
                }
                Change::Delete(id) => {
                    self.key_only(&mut b, id);
                    b.image_null(Image::After).expect("after");
                }
                Change::Truncate => {
                    b.image_null(Image::Before).expect("before");
                    b.image_null(Image::After).expect("after");
                }
            }
            b.finish_row().expect("finish row");
        }
        let mut t = Transaction::new(
            Some(self.xid),
            Some(1_767_323_045_000_000),
            Position::from(PgPosition::end(commit, Lsn(commit.0 + 8))),
        );
        t.items.push(TxnItem::Rows(b.finish().expect("batch")));
        Arc::new(t)
    }
}
