//! Transactions: what a source hands to the engine, and what sinks write atomically if they can.
//!
//! `items` keep source order. Consecutive rows of one table and schema version go into one
//! [`ChangeBatch`]; a row of another table or schema version, or a logical decoding message,
//! starts a new item. A non-transactional logical decoding message travels alone in a
//! `Transaction` with `xid: None` and one `Message` item.

use crate::batch::ChangeBatch;
use crate::position::{Lsn, Position};

/// A committed source transaction (or a non-transactional message).
#[derive(Clone, Debug)]
pub struct Transaction {
    /// Source transaction id (Postgres xid); `None` for a non-transactional message.
    pub xid: Option<u64>,
    /// Commit time, µs since the Unix epoch (UTC).
    pub commit_ts_us: Option<i64>,
    /// The transaction's end: `PgPosition::end(commit_lsn, end_lsn)` for Postgres (the
    /// commit LSN is `end.as_pg().commit_lsn`). Acknowledging it acknowledges the whole
    /// transaction; it sorts after every item's position.
    pub end: Position,
    /// Rows and messages in source order.
    pub items: Vec<TxnItem>,
    /// False for a chunk of a long transaction that is not its last: sinks may write it, but
    /// nothing may be acknowledged until the chunk with `complete == true` (whose `end` is the
    /// transaction's end). A chunk's `end` is the position of its last row.
    pub complete: bool,
    /// For snapshot rows (`Op::Read`): where this chunk sits in its snapshot, for Debezium's
    /// `source.snapshot`; `None` for streamed changes.
    pub snapshot: Option<SnapshotMark>,
}

/// Where a chunk of snapshot rows sits in its snapshot (`docs/snapshots.md`).
///
/// The flags describe the chunk's first and last row; Debezium's `source.snapshot` of a row
/// follows from them ([`SnapshotMark::debezium_value`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotMark {
    /// An incremental snapshot chunk (read while streaming): every row is `incremental`.
    pub incremental: bool,
    /// The chunk's first row is the snapshot's first row.
    pub first_of_snapshot: bool,
    /// The chunk's first row is its table's first row.
    pub first_of_table: bool,
    /// The chunk's last row is its table's last row.
    pub last_of_table: bool,
    /// The chunk's last row is the snapshot's last row.
    pub last_of_snapshot: bool,
}

impl SnapshotMark {
    /// Debezium's `source.snapshot` for row `row` of the `rows` rows of the chunk, as
    /// Debezium's `RelationalSnapshotChangeEventSource` marks them: `last` wins over `first`,
    /// and a table's first/last rows of a table other than the first/last one are
    /// `first_in_data_collection`/`last_in_data_collection`.
    pub fn debezium_value(&self, row: usize, rows: usize) -> &'static str {
        if self.incremental {
            return "incremental";
        }
        let first = row == 0;
        let last = row + 1 == rows;
        if last && self.last_of_table && self.last_of_snapshot {
            "last"
        } else if first && self.first_of_table && self.first_of_snapshot {
            "first"
        } else if last && self.last_of_table {
            "last_in_data_collection"
        } else if first && self.first_of_table {
            "first_in_data_collection"
        } else {
            "true"
        }
    }
}

/// One item of a transaction.
#[derive(Clone, Debug)]
pub enum TxnItem {
    Rows(ChangeBatch),
    Message(LogicalMessage),
}

/// A logical decoding message (`pg_logical_emit_message`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogicalMessage {
    pub transactional: bool,
    pub prefix: String,
    pub content: Vec<u8>,
    pub position: Position,
}

impl Transaction {
    pub fn new(xid: Option<u64>, commit_ts_us: Option<i64>, end: Position) -> Self {
        Transaction {
            xid,
            commit_ts_us,
            end,
            items: Vec::new(),
            complete: true,
            snapshot: None,
        }
    }

    /// The Postgres commit LSN.
    pub fn commit_lsn(&self) -> Option<Lsn> {
        self.end.as_pg().map(|p| p.commit_lsn)
    }

    /// Number of change rows over all batches.
    pub fn row_count(&self) -> usize {
        self.batches().map(ChangeBatch::num_rows).sum()
    }

    /// The change batches, in order.
    pub fn batches(&self) -> impl Iterator<Item = &ChangeBatch> + '_ {
        self.items.iter().filter_map(|i| match i {
            TxnItem::Rows(b) => Some(b),
            TxnItem::Message(_) => None,
        })
    }

    /// Approximate memory size in bytes (for byte-bounded queues).
    pub fn byte_size(&self) -> usize {
        self.items
            .iter()
            .map(|i| match i {
                TxnItem::Rows(b) => b.byte_size(),
                TxnItem::Message(m) => m.content.len() + m.prefix.len() + 64,
            })
            .sum::<usize>()
            + 64
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}
