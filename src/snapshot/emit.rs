//! The chunk emitter: batches of snapshot rows from any number of reader connections become
//! chunks (one complete [`Transaction`] each) on the engine's byte-bounded queue.
//!
//! ```text
//!  reader 1 ─┐  Piece{table, batch}            ┌─ hold back one chunk per table (to know the
//!  reader 2 ─┼─ RangeDone{table, range, rows} ─┤  table's last one) ─► position(chunk n)
//!  reader N ─┘          (bounded channel)      └─ SnapshotMark ─► queue.send(txn, bytes).await
//! ```
//!
//! Readers build rows with a placeholder position; the emitter numbers chunks in the order it
//! sends them and rewrites the position column (one small binary array per chunk), so the
//! queue always sees positions in ascending order however the readers interleave.
//!
//! # Invariants
//! - A range is registered in the ledger at the position of the last chunk that holds its
//!   rows (or completes at once when it had none): it is recorded as done only when that
//!   chunk is durable in every sink.
//! - Memory: one held chunk per table being read, plus the final chunk of the table that
//!   finished last (until the next one finishes, so the snapshot's last chunk can be marked
//!   `last`), plus what the queue holds; readers wait on the bounded channel, the emitter on
//!   the queue.

use std::sync::Arc;

use arrow_array::{ArrayRef, BinaryArray, RecordBatch};
use tidemark_model::table::columns::POSITION_INDEX;
use tidemark_model::{ChangeBatch, ModelError, Position, SnapshotMark, Transaction, TxnItem};

use super::ledger::{self, Completion, LedgerHandle};
use super::progress::Progress;
use crate::engine::queue::{QueueClosed, QueueSender};
use crate::metrics::Metrics;

/// What readers send to the emitter.
#[derive(Debug)]
pub enum ReaderMsg {
    /// Rows of `table` (index into the snapshot's tables).
    Piece { table: usize, batch: ChangeBatch },
    /// Every row of range `range` of `table` was sent (`rows` of them).
    RangeDone { table: usize, range: u32, rows: u64 },
}

/// Why emitting stopped.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    #[error(transparent)]
    Queue(#[from] QueueClosed),
    #[error("snapshot chunk: {0}")]
    Model(#[from] ModelError),
    #[error("snapshot chunk counter: {0}")]
    Reserve(#[from] std::io::Error),
}

struct Held {
    batch: ChangeBatch,
    first_of_table: bool,
    completions: Vec<Completion>,
}

/// Where the emitter reserves chunk numbers (`ledger::reserve`).
pub struct ChunkNumbers {
    pub dir: std::path::PathBuf,
    pub pipeline: String,
    /// The snapshot's start, in text: a new start restarts the numbering.
    pub start: String,
}

/// Sends snapshot chunks in order; see the module doc.
pub struct Emitter {
    queue: QueueSender<Arc<Transaction>>,
    ledger: LedgerHandle,
    position: Box<dyn Fn(u32) -> Position + Send + Sync>,
    numbers: ChunkNumbers,
    next_chunk: u32,
    block_end: u32,
    commit_ts_us: Option<i64>,
    held: Vec<Option<Held>>,
    /// The final chunk of the table that finished last, until another finishes.
    pending_final: Option<(usize, Held)>,
    started: Vec<bool>,
    ranges_left: Vec<u32>,
    tables_left: usize,
    sent_any: bool,
    last_sent: Option<Position>,
    progress: Arc<Progress>,
    metrics: Arc<Metrics>,
    names: Vec<String>,
}

impl Emitter {
    /// An emitter for tables `names` with `ranges_left[t]` ranges still to read each.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        queue: QueueSender<Arc<Transaction>>,
        ledger: LedgerHandle,
        position: Box<dyn Fn(u32) -> Position + Send + Sync>,
        numbers: ChunkNumbers,
        commit_ts_us: Option<i64>,
        names: Vec<String>,
        ranges_left: Vec<u32>,
        progress: Arc<Progress>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let n = names.len();
        Emitter {
            queue,
            ledger,
            position,
            numbers,
            next_chunk: 0,
            block_end: 0,
            commit_ts_us,
            held: (0..n).map(|_| None).collect(),
            pending_final: None,
            started: vec![false; n],
            tables_left: ranges_left.iter().filter(|&&r| r > 0).count(),
            ranges_left,
            sent_any: false,
            last_sent: None,
            progress,
            metrics,
            names,
        }
    }

    /// Handles one reader message.
    pub async fn handle(&mut self, msg: ReaderMsg) -> Result<(), EmitError> {
        match msg {
            ReaderMsg::Piece { table, batch } => self.piece(table, batch).await,
            ReaderMsg::RangeDone { table, range, rows } => {
                self.range_done(table, range, rows).await
            }
        }
    }

    async fn piece(&mut self, table: usize, batch: ChangeBatch) -> Result<(), EmitError> {
        if batch.is_empty() {
            return Ok(());
        }
        if let Some(prev) = self.held.get_mut(table).and_then(Option::take) {
            self.send(table, prev, false, false).await?;
        }
        let first = !std::mem::replace(&mut self.started[table], true);
        self.held[table] = Some(Held {
            batch,
            first_of_table: first,
            completions: Vec::new(),
        });
        Ok(())
    }

    async fn range_done(&mut self, table: usize, range: u32, rows: u64) -> Result<(), EmitError> {
        let c = Completion::Range { table, range, rows };
        match (
            self.held.get_mut(table).and_then(Option::as_mut),
            self.last_sent,
        ) {
            (Some(h), _) => h.completions.push(c),
            (None, Some(at)) => self.with_ledger(|l| l.register(at, c)),
            (None, None) => self.with_ledger(|l| l.complete_now(c)),
        }
        let left = &mut self.ranges_left[table];
        *left = left.saturating_sub(1);
        if *left == 0 {
            self.tables_left = self.tables_left.saturating_sub(1);
            // A finished table's final chunk waits until the next table finishes, so the
            // snapshot's very last chunk can still be marked `last` when the table finishing
            // last had no rows of its own to send (an empty table, readers in parallel).
            let previous = self.pending_final.take();
            let all_done = self.tables_left == 0;
            match (self.held[table].take(), previous) {
                (Some(h), prev) => {
                    if let Some((t, p)) = prev {
                        self.send(t, p, true, false).await?;
                    }
                    if all_done {
                        self.send(table, h, true, true).await?;
                    } else {
                        self.pending_final = Some((table, h));
                    }
                }
                (None, Some((t, p))) => {
                    if all_done {
                        self.send(t, p, true, true).await?;
                    } else {
                        self.pending_final = Some((t, p));
                    }
                }
                (None, None) => {}
            }
            self.progress.table_done(table);
        }
        Ok(())
    }

    fn with_ledger(&self, f: impl FnOnce(&mut ledger::Ledger)) {
        if let Ok(mut l) = self.ledger.lock() {
            if let Some(l) = l.as_mut() {
                f(l);
            }
        }
    }

    async fn send(
        &mut self,
        table: usize,
        held: Held,
        last_of_table: bool,
        last_of_snapshot: bool,
    ) -> Result<(), EmitError> {
        if self.next_chunk >= self.block_end {
            let base = ledger::reserve(
                &self.numbers.dir,
                &self.numbers.pipeline,
                &self.numbers.start,
            )?;
            self.next_chunk = base;
            self.block_end = base.saturating_add(ledger::RESERVE_BLOCK);
        }
        let chunk = self.next_chunk;
        self.next_chunk += 1;
        let at = (self.position)(chunk);
        let batch = with_position(&held.batch, &at)?;
        let rows = batch.num_rows() as u64;
        let mark = SnapshotMark {
            incremental: false,
            first_of_snapshot: !self.sent_any,
            first_of_table: held.first_of_table,
            last_of_table,
            last_of_snapshot,
        };
        self.sent_any = true;
        let mut txn = Transaction::new(None, self.commit_ts_us, at);
        txn.items.push(TxnItem::Rows(batch));
        txn.snapshot = Some(mark);
        for c in held.completions {
            self.with_ledger(|l| l.register(at, c));
        }
        let bytes = txn.byte_size() as u64;
        self.metrics
            .count_source(&self.names[table], "r", rows, bytes);
        self.queue.send(Arc::new(txn), bytes).await?;
        self.last_sent = Some(at);
        self.progress.chunk(table, rows);
        Ok(())
    }

    /// Sends what is still held (tables whose last range never reported: an aborted run).
    pub async fn flush(&mut self) -> Result<(), EmitError> {
        if let Some((t, p)) = self.pending_final.take() {
            self.send(t, p, true, false).await?;
        }
        for t in 0..self.held.len() {
            if let Some(h) = self.held[t].take() {
                self.send(t, h, false, false).await?;
            }
        }
        Ok(())
    }

    /// The last position sent.
    pub fn last_sent(&self) -> Option<Position> {
        self.last_sent
    }
}

/// `batch` with every row at `at`.
pub fn with_position(batch: &ChangeBatch, at: &Position) -> Result<ChangeBatch, ModelError> {
    let bytes = at.to_bytes();
    let n = batch.num_rows();
    let positions: ArrayRef = Arc::new(BinaryArray::from_iter_values(std::iter::repeat_n(
        bytes.as_slice(),
        n,
    )));
    let mut columns: Vec<ArrayRef> = batch.batch.columns().to_vec();
    columns[POSITION_INDEX] = positions;
    let rb = RecordBatch::try_new(batch.batch.schema(), columns).map_err(|e| {
        ModelError::InvalidBatch {
            table: batch.schema.table.clone(),
            reason: e.to_string(),
        }
    })?;
    ChangeBatch::try_new(batch.schema.clone(), rb)
}
