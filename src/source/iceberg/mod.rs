//! The Iceberg incremental source (`source.kind = "iceberg"`): follows one Iceberg table's
//! snapshots on its main branch, snapshot by snapshot, as change events, from a snapshot id,
//! a timestamp or the first snapshot, and keeps following.
//!
//! ```text
//! poll: catalog.load(table) ─► ancestors of the current snapshot after the checkpoint
//!   for each snapshot S (ascending sequence number):
//!     changes::read(S, parent) ─► truncate? ─► [Truncate]
//!     for each data file S added: read rows ─► pair with S's deleted rows by key
//!                                            ─► chunk of Update/Insert (complete = false)
//!     S's deleted rows nobody re-added ─► Delete chunk
//!     ─► end of S: Transaction{end: iceberg:<seq>:MAX, complete} ─► queue.send (backpressure)
//! ```
//!
//! A snapshot is one transaction, acknowledged whole: the checkpoint is always a snapshot's
//! end and a restart resumes at the next snapshot, so a sink that committed a snapshot never
//! sees it again. Memory per snapshot: its deleted rows plus one added data file.
//!
//! # What the iceberg crate does and what is written here
//! The catalog is the one the Iceberg sink uses (`tidemark_iceberg::Catalog`: the SQL
//! catalog in the JDBC layout pyiceberg reads, or a REST catalog); metadata, manifest lists, manifests and Parquet rows are read
//! with the iceberg crate (0.10.1). It has no incremental or changelog scan, so the diff of a
//! snapshot against its parent, and the pairing of deletes and inserts into updates, are
//! written here (`changes.rs`, `convert.rs`). Format v3 deletion vectors are read with the
//! sink's decoder (`tidemark_iceberg::dv`), which the crate's scan does not apply.
//!
//! # Traps
//! - Iceberg keeps a snapshot's net effect, not its statements: several source transactions
//!   committed as one snapshot arrive as one transaction; a row inserted and deleted inside
//!   one snapshot is not seen; a primary-key change is a delete and an insert.
//! - `replace` snapshots (compaction, `tidemark iceberg compact`) change files, not data:
//!   they are skipped (an empty transaction that advances the checkpoint).
//! - Snapshot expiry removes history: a source whose next snapshot was expired stops with a
//!   definite error rather than skipping changes silently. Expire only what every
//!   following source has passed.
//! - Sequence numbers order snapshots (format v2+); a v1 table has none and is refused.
//! - A rollback of the main branch to an older snapshot is a definite error (the history the
//!   checkpoint is on is gone).

pub mod changes;
pub mod config;
pub mod convert;

use std::sync::Arc;
use std::time::Duration;

use tidemark_iceberg::iceberg::spec::{FormatVersion, Operation, SnapshotRef, TableMetadata};
use tidemark_iceberg::{Catalog, IcebergError, LoadedTable};
use tidemark_model::{IcebergPosition, Position, Transaction, TxnItem};
use tokio::sync::watch;

use crate::engine::queue::QueueSender;
use crate::metrics::Metrics;
pub use config::IcebergSourceConfig;
use convert::{Change, Converter, Pending};

/// An Iceberg source failure.
#[derive(Debug, thiserror::Error)]
pub enum IcebergSourceError {
    #[error("iceberg source {table}: {source}")]
    Iceberg {
        table: String,
        #[source]
        source: IcebergError,
    },
    #[error(transparent)]
    Convert(#[from] convert::ConvertError),
    /// The table's history cannot continue the checkpoint (definite).
    #[error("iceberg source {table}: {message}")]
    History { table: String, message: String },
    #[error("iceberg source {table}: {message}")]
    Config { table: String, message: String },
}

impl IcebergSourceError {
    /// Catalog and storage errors are transient; the rest (history, data, config) definite.
    pub fn is_transient(&self) -> bool {
        match self {
            IcebergSourceError::Iceberg { source, .. } => source.is_transient(),
            _ => false,
        }
    }
}

/// Follows one Iceberg table into the queue.
pub struct IcebergSource {
    pub config: IcebergSourceConfig,
    pub queue: QueueSender<Arc<Transaction>>,
    pub metrics: Arc<Metrics>,
    pub resume: Option<Position>,
    pub shutdown: watch::Receiver<bool>,
}

/// Where reading starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Start {
    /// Snapshots with a sequence number above this one (after a checkpoint).
    After(u64),
    /// The configured snapshot id, its own changes included.
    Snapshot(i64),
    /// The first snapshot committed at or after this time (ms).
    Timestamp(i64),
    /// The table's first snapshot.
    Earliest,
}

impl IcebergSource {
    fn table(&self) -> String {
        self.config.table.clone()
    }

    fn ice(&self) -> impl Fn(IcebergError) -> IcebergSourceError + '_ {
        move |source| IcebergSourceError::Iceberg {
            table: self.table(),
            source,
        }
    }

    fn history(&self, message: String) -> IcebergSourceError {
        IcebergSourceError::History {
            table: self.table(),
            message,
        }
    }

    fn start(&self) -> Result<Start, IcebergSourceError> {
        match self.resume {
            // A snapshot is acknowledged whole: a checkpoint inside one re-reads it.
            Some(Position::Iceberg(p)) if p.index == u64::MAX => Ok(Start::After(p.sequence)),
            Some(Position::Iceberg(p)) => Ok(Start::After(p.sequence.saturating_sub(1))),
            Some(other) => Err(IcebergSourceError::Config {
                table: self.table(),
                message: format!(
                    "the checkpoint {other} is not an Iceberg position; `tidemark reset` the pipeline"
                ),
            }),
            None => Ok(if let Some(id) = self.config.starting_snapshot_id {
                Start::Snapshot(id)
            } else if let Some(ms) = self.config.starting_timestamp_ms() {
                Start::Timestamp(ms)
            } else {
                Start::Earliest
            }),
        }
    }

    /// The main branch's snapshots to read, oldest first, for `start`.
    fn pending<'m>(
        &self,
        md: &'m TableMetadata,
        start: Start,
    ) -> Result<Vec<&'m SnapshotRef>, IcebergSourceError> {
        let Some(current) = md.current_snapshot() else {
            return Ok(Vec::new());
        };
        if md.format_version() == FormatVersion::V1 {
            return Err(self.history(
                "format v1 tables have no sequence numbers; upgrade the table to format v2".into(),
            ));
        }
        let current_seq = current.sequence_number() as u64;
        if let Start::After(done) = start {
            if current_seq < done {
                return Err(self.history(format!(
                    "the current snapshot {} (sequence {current_seq}) is older than the checkpoint (sequence {done}): \
                     the main branch was rolled back; `tidemark reset` the pipeline to read it again",
                    current.snapshot_id()
                )));
            }
            if current_seq == done {
                return Ok(Vec::new());
            }
        }
        // Walk back from the current snapshot.
        let mut chain: Vec<&SnapshotRef> = Vec::new();
        let mut at = Some(current);
        let mut complete = false; // reached the start (or the table's first snapshot)
        while let Some(s) = at {
            let seq = s.sequence_number() as u64;
            match start {
                Start::After(done) if seq <= done => {
                    complete = true;
                    break;
                }
                _ => {}
            }
            chain.push(s);
            // Each snapshot at most once: parent ids that loop (corrupt metadata) would
            // otherwise grow the chain until memory runs out.
            if chain.len() > md.snapshots().len() {
                return Err(self.history(format!(
                    "the parent-snapshot-id chain from the current snapshot {} loops (snapshot {} \
                     is its own ancestor): the table metadata is corrupt",
                    current.snapshot_id(),
                    s.snapshot_id()
                )));
            }
            if start == Start::Snapshot(s.snapshot_id()) {
                complete = true;
                break;
            }
            match s.parent_snapshot_id() {
                None => {
                    complete = true;
                    break;
                }
                Some(p) => at = md.snapshot_by_id(p),
            }
        }
        chain.reverse();
        match start {
            Start::After(done) if !complete => {
                // The parent of the oldest reachable snapshot was expired: if it was not the
                // checkpoint's snapshot, changes in between are gone.
                let oldest = chain.first().map_or(0, |s| s.sequence_number() as u64);
                if oldest > done.saturating_add(1) {
                    return Err(self.history(format!(
                        "snapshots between the checkpoint (sequence {done}) and the oldest retained one \
                         (sequence {oldest}) were expired; their changes cannot be read"
                    )));
                }
            }
            Start::Snapshot(id) if !complete => {
                return Err(self.history(format!(
                    "starting_snapshot_id {id} is not an ancestor of the current snapshot on the main branch \
                     (expired, or on another branch)"
                )));
            }
            Start::Earliest if !complete => {
                return Err(self.history(format!(
                    "the table's first snapshots were expired (oldest retained: {}); set starting_snapshot_id",
                    chain.first().map_or(0, |s| s.snapshot_id())
                )));
            }
            Start::Timestamp(ms) => {
                if !complete && chain.first().is_some_and(|s| s.timestamp_ms() >= ms) {
                    return Err(self.history(format!(
                        "snapshots after starting_timestamp were expired (oldest retained: {})",
                        chain.first().map_or(0, |s| s.snapshot_id())
                    )));
                }
                chain.retain(|s| s.timestamp_ms() >= ms);
            }
            _ => {}
        }
        Ok(chain)
    }

    /// Streams until shutdown or a definite error; transient errors retry with backoff.
    pub async fn run(mut self) -> Result<(), IcebergSourceError> {
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.follow().await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_transient() && !*self.shutdown.borrow() => {
                    self.metrics.set_streaming(false);
                    tracing::warn!(source = %self.config.table, error = %e, ?backoff, "iceberg source: retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = self.shutdown.changed() => return Ok(()),
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn count(&self, txn: &Transaction) {
        for b in txn.batches() {
            let table = b.schema.table.to_string();
            let mut per_op = [0u64; 5];
            for i in 0..b.num_rows() {
                per_op[b.op(i).as_u8() as usize % 5] += 1;
            }
            for (code, n) in per_op.iter().enumerate().filter(|(_, n)| **n > 0) {
                if let Some(op) = tidemark_model::Op::from_u8(code as u8) {
                    self.metrics.count_source(&table, op.debezium_code(), *n, 0);
                }
            }
        }
    }

    /// Sends one transaction (chunk); false when the engine stopped.
    async fn send(&self, txn: Transaction) -> bool {
        let bytes = txn.byte_size() as u64;
        self.count(&txn);
        if txn.complete {
            self.metrics.count_transaction();
        }
        self.queue.send(Arc::new(txn), bytes).await.is_ok()
    }

    async fn follow(&mut self) -> Result<(), IcebergSourceError> {
        let catalog = Catalog::connect(&self.config.catalog, &self.config.storage)
            .await
            .map_err(self.ice())?;
        self.metrics.set_streaming(true);
        let ident = self.config.ident();
        let mut start = self.start()?;
        let mut converter = Converter::new(
            self.config.table_id(),
            self.config.key_columns.clone(),
            self.config.exclude_columns.clone(),
        );
        tracing::info!(source = %self.config.table, ?start, "iceberg source: following the table's snapshots");
        loop {
            if *self.shutdown.borrow() {
                return Ok(());
            }
            let loaded = catalog.load(&ident).await.map_err(self.ice())?;
            if let Some(t) = &loaded {
                let todo: Vec<SnapshotRef> = self
                    .pending(&t.metadata, start)?
                    .into_iter()
                    .cloned()
                    .collect();
                for snap in todo {
                    let seq = snap.sequence_number() as u64;
                    if !self.snapshot(&catalog, t, &snap, &mut converter).await? {
                        return Ok(()); // the engine stopped
                    }
                    start = Start::After(seq);
                    self.resume = Some(Position::Iceberg(IcebergPosition::end(seq)));
                    if *self.shutdown.borrow() {
                        return Ok(());
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.poll_interval) => {}
                _ = self.shutdown.changed() => {}
            }
        }
    }

    /// Reads and sends one snapshot; false when the engine stopped.
    async fn snapshot(
        &self,
        catalog: &Catalog,
        t: &LoadedTable,
        snap: &SnapshotRef,
        converter: &mut Converter,
    ) -> Result<bool, IcebergSourceError> {
        let md = &t.metadata;
        let io = &catalog.file_io;
        let seq = snap.sequence_number() as u64;
        let ts = convert::commit_ts_us(snap.timestamp_ms());
        let end = Transaction::new(
            Some(seq),
            Some(ts),
            Position::Iceberg(IcebergPosition::end(seq)),
        );
        if snap.summary().operation == Operation::Replace {
            tracing::debug!(source = %self.config.table, snapshot = snap.snapshot_id(), "replace snapshot (compaction): no data change");
            return Ok(self.send(end).await);
        }
        let parent = snap.parent_snapshot_id().and_then(|p| md.snapshot_by_id(p));
        let ch = changes::read(io, md, snap, parent)
            .await
            .map_err(self.ice())?;
        let arrow = tidemark_iceberg::iceberg::arrow::schema_to_arrow_schema(&ch.schema)
            .map_err(|e| converter.err(seq, format!("schema: {e}")))?;
        let identifier: Vec<String> = ch
            .schema
            .identifier_field_ids()
            .filter_map(|id| ch.schema.field_by_id(id).map(|f| f.name.clone()))
            .collect();
        let schema = converter.schema_for(seq, &arrow, &identifier)?;
        let mut index = 0u64;
        let chunk = |items: Vec<TxnItem>, index: u64| -> Transaction {
            let mut c = Transaction::new(
                Some(seq),
                Some(ts),
                Position::Iceberg(IcebergPosition {
                    sequence: seq,
                    index: index.saturating_sub(1),
                }),
            );
            c.items = items;
            c.complete = false;
            c
        };
        if ch.truncate {
            let b = converter.batch(
                seq,
                &schema,
                &[Change {
                    op: tidemark_model::Op::Truncate,
                    before: None,
                    after: None,
                }],
                None,
                None,
                ts,
                &mut index,
            )?;
            if !self.send(chunk(vec![TxnItem::Rows(b)], index)).await {
                return Ok(false);
            }
        }
        let deleted = match ch.deleted.first() {
            Some(first) => Some(
                arrow_select::concat::concat_batches(&first.schema(), &ch.deleted)
                    .map_err(|e| converter.err(seq, format!("deleted rows: {e}")))?,
            ),
            None => None,
        };
        let mut pending = match &deleted {
            Some(d) => Pending::new(converter.keys(seq, &schema, d)?),
            None => Pending::default(),
        };
        for f in &ch.added {
            let rows = changes::read_rows(io, &ch.schema, &f.path, f.format, f.size)
                .await
                .map_err(self.ice())?;
            if rows.num_rows() as u64 != f.records {
                tracing::warn!(file = %f.path, read = rows.num_rows(), manifest = f.records, "row count differs from the manifest");
            }
            let keys = converter.keys(seq, &schema, &rows)?;
            let changes = convert::pair(&keys, |i| !f.dead.contains(&(i as u64)), &mut pending);
            if changes.is_empty() {
                continue;
            }
            let b = converter.batch(
                seq,
                &schema,
                &changes,
                deleted.as_ref(),
                Some(&rows),
                ts,
                &mut index,
            )?;
            if !self.send(chunk(vec![TxnItem::Rows(b)], index)).await {
                return Ok(false);
            }
        }
        let rest: Vec<Change> = pending
            .rest()
            .into_iter()
            .map(|r| Change {
                op: tidemark_model::Op::Delete,
                before: Some(r),
                after: None,
            })
            .collect();
        let mut end = end;
        if !rest.is_empty() {
            let b = converter.batch(seq, &schema, &rest, deleted.as_ref(), None, ts, &mut index)?;
            end.items.push(TxnItem::Rows(b));
        }
        tracing::debug!(source = %self.config.table, snapshot = snap.snapshot_id(), sequence = seq, changes = index, "snapshot read");
        Ok(self.send(end).await)
    }
}
