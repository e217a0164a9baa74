//! Incremental snapshots while streaming: Netflix DBLog's watermark method (Debezium's
//! incremental snapshots), driven from inside the Postgres stream.
//!
//! ```text
//!  signal: pg_logical_emit_message(false, 'tidemark.signal',
//!            '{"pipeline":"p","data-collections":["public.t"],
//!              "additional-conditions":[{"data-collection":"public.t","filter":"color = ''blue''"}]}')
//!     (`tidemark snapshot --table public.t --filter …`; Debezium's execute-snapshot data,
//!      `snapshot/filter.rs`) ──stream──► queue the tables
//!  per chunk, on its own connection:
//!     emit 'tidemark.watermark' low:p:N ── SELECT next chunk by key (COPY binary, ORDER BY key
//!     LIMIT incremental_chunk_rows, after the last key, AND (filter)) ── emit high:p:N
//!  in the stream: low:p:N opens the window; every change of the table inside the window drops
//!  its key from the chunk (the stream's newer image wins); high:p:N closes it: the chunk's rest
//!  goes out as `Op::Read` rows (`source.snapshot = incremental`) at the high watermark's position,
//!  then the next chunk starts.
//! ```
//!
//! # Traps
//! - Watermarks are *non-transactional* messages: decoded at their own WAL position, so every
//!   transaction committed between the two is streamed between them, whatever its start.
//!   A transaction still open at the high watermark was invisible to the chunk's read and is
//!   streamed after the chunk: order stays right.
//! - **WAL order is not visibility order.** A transaction's commit record is written (and
//!   decoded, before the low watermark) a moment before the transaction becomes visible to new
//!   snapshots (the WAL flush, then the proc array). A chunk read whose snapshot was taken in
//!   that moment misses the transaction, yet the stream delivered it before the window opened,
//!   so no window key removes the chunk's older copy: a deleted row would come back. So the
//!   stream remembers the ids of the last [`RECENT_XIDS`] transactions that changed the active
//!   table, the read returns its snapshot (`pg_current_snapshot()`), and a chunk whose snapshot
//!   still had one of the transactions streamed before its window in progress is discarded and
//!   read again (0 to 11 of the ~30 chunks of a run under a concurrent workload). MariaDB and
//!   MySQL (`binlog_order_commits = ON`, its default) commit in the engine in binlog order,
//!   and their low watermark is a committed row, so their reads cannot miss a transaction
//!   binlogged before it.
//! - Messages are database-wide: the pipeline name in signals and watermarks keeps two
//!   pipelines on one database apart. They need `messages` (PG 14+).
//! - Tables without a primary key (and no `snapshot.key_columns`) cannot be chunked by key:
//!   they are refused with a message naming the options.
//! - Progress (`last_key` and `filter` per table) is checkpointed at each chunk's position: a
//!   restart continues after the last chunk every sink has, with the same filter.
//! - A filtered table's estimate (progress, `status`, `tidemark_snapshot_rows_remaining`) is
//!   the planner's for the filter, from the same EXPLAIN that checks it
//!   (`snapshot_plan::check_filter`, `snapshot/estimate.rs`): a guess, so the remaining rows
//!   stop at zero when more rows match.
//! - **A chunk read that fails** never reaches its high watermark by itself: the reader emits
//!   the high watermark anyway (best effort) and the stream polls it on every transaction, so
//!   the window never stays open. A transient failure restarts the session and the chunk is
//!   read again under a new number (a late watermark of the failed read cannot close the new
//!   window); a definite one (a filter the server refuses, `division by zero` in a filter, a
//!   dropped table) stops that table's snapshot with the error in the ledger and `status`,
//!   and the stream goes on: no stream event is held or dropped by a failed chunk.
//! - **DDL of the table during its snapshot** (`ADD`/`DROP COLUMN`): the stream numbers the
//!   table's schema versions (a Relation message with other columns is the next version), so
//!   chunks are read with the *stream's* current schema of the table (the decoder's, by
//!   `Decoder::table_schema_or`; when the stream has not decoded the table yet, the catalog's
//!   columns become its version 1, and a later Relation with other columns is version 2, never
//!   a second version 1 that a sink caching per version would encode with the old columns).
//!   A chunk whose read began under another version than the stream's at its high watermark
//!   is discarded (window and rows) and read again from the same key with the new schema, as
//!   Debezium does: sinks never see an older schema after a newer one. The catalog can be
//!   ahead of the stream (a DDL committed, not yet decoded): an added column is simply not
//!   read until the stream has it; a dropped one fails the read (42703), and the chunk waits
//!   for the stream's next version of the table, which comes with the table's next change
//!   (until then the snapshot of that table pauses, with a warning; the stream goes on).
//!   A type change (`ALTER COLUMN … TYPE`) would not fail the COPY but read the new type's
//!   bytes under the old one: each chunk transaction first takes the table's `ACCESS SHARE`
//!   lock (no DDL of the table can commit until the chunk is read; taken before the first
//!   query, so the snapshot sees every DDL committed before it) and compares the catalog's
//!   columns with the stream's (type OID and Arrow type, by name); a difference waits like a
//!   dropped column.
//! - **A primary key redefined mid-snapshot** (`DROP CONSTRAINT t_pkey, ADD PRIMARY KEY
//!   (other)`, the old columns kept: no Relation column changes): the chunks' `ORDER BY`,
//!   `last_key` and the window's de-duplication are in the old key's terms. The same check under
//!   the chunk's lock compares the catalog's primary key with the chunks' key; a difference
//!   discards the chunk and its window and starts the table again from its first key with the
//!   catalog's key (`rekey`, logged): rows read before are read again, which a sink takes as
//!   upserts. The ledger gets the new key by a `Completion::Restart` registered after the old
//!   key's chunks, so a chunk settling later cannot put an old `last_key` back; a resume whose
//!   recorded key is not the table's key starts the table again too. No primary key now: the
//!   table's snapshot stops with the reason. A user-given key (`snapshot.key_columns`) is not
//!   checked.

use std::collections::VecDeque;
use std::sync::Arc;

use futures_util::StreamExt;
use tidemark_model::{
    ChangeBatch, ChangeBatchBuilder, Lsn, PgPosition, Position, SnapshotMark, TableId, TableSchema,
    Transaction, TxnItem,
};
use tidemark_pgoutput::decoder::Decoder;
use tokio::sync::oneshot;

use super::config::PgConnectConfig;
use super::control::PgControl;
use super::error::PgSourceError;
use super::quote_literal;
use super::snapshot::SnapshotError;
use super::snapshot_copy::{CopyReader, RowError};
use super::snapshot_plan::{self, PlannedTable};
use crate::metrics::Metrics;
use crate::snapshot::filter::{self, Dialect, FilterError, SnapshotSignal, TableRequest};
use crate::snapshot::ledger::{Completion, LedgerHandle, SnapshotKind, TableProgress};
use crate::snapshot::rekey::KeyChange;
use crate::snapshot::window::Window;
use crate::snapshot::SnapshotConfig;

/// Prefix of the logical decoding messages that trigger a snapshot.
pub const SIGNAL_PREFIX: &str = "tidemark.signal";
/// Prefix of the watermark messages.
pub const WATERMARK_PREFIX: &str = "tidemark.watermark";

/// Why `tidemark snapshot` could not ask for a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error(transparent)]
    Postgres(#[from] PgSourceError),
}

/// `tidemark snapshot`: checks every filter with the server (an obviously broken one fails
/// here, naming table and filter, not later in the pipeline), then sends the signal; returns
/// the message's LSN.
pub async fn send_request(
    connect: &PgConnectConfig,
    pipeline: &str,
    requests: &[TableRequest],
) -> Result<Lsn, RequestError> {
    let control = PgControl::connect(connect).await?;
    for r in requests {
        let Some(f) = &r.filter else { continue };
        filter::check(&r.table, f, Dialect::Postgres)?;
        let id = crate::config::parse_table(&r.table).ok_or_else(|| FilterError::Invalid {
            table: r.table.clone(),
            filter: f.clone(),
            reason: "the table is not \"schema.table\"".into(),
        })?;
        if let Err(reason) = snapshot_plan::check_filter(&control, &id, f).await? {
            return Err(FilterError::Invalid {
                table: r.table.clone(),
                filter: f.clone(),
                reason: format!("the server refused it: {reason}"),
            }
            .into());
        }
    }
    let body = serde_json::to_string(&SnapshotSignal::new(pipeline, requests))
        .expect("a SnapshotSignal serializes");
    let row = control
        .client
        .query_one(
            "SELECT pg_logical_emit_message(false, $1, $2)::text",
            &[&SIGNAL_PREFIX, &body],
        )
        .await
        .map_err(|e| PgSourceError::control(control.at(), "pg_logical_emit_message", e))?;
    let lsn: String = row
        .try_get(0)
        .map_err(|e| PgSourceError::control(control.at(), "pg_logical_emit_message", e))?;
    Ok(Lsn(super::parse_lsn(&lsn).unwrap_or(0)))
}

/// A chunk read between two watermarks.
struct ChunkRead {
    batch: Option<ChangeBatch>,
    last_key: Option<Vec<String>>,
    /// The table's primary key is not the job's `pk` any more (these columns now): nothing
    /// was read.
    key_changed: Option<Vec<String>>,
    /// The chunk transaction's snapshot (`pg_current_snapshot()`), `None` when nothing was
    /// read.
    snapshot: Option<XidSnapshot>,
    control: PgControl,
}

/// Which transactions a chunk's read saw: `pg_current_snapshot()` (`xmin:xmax:xip,…`), the
/// ids cut to the 32 bits pgoutput decodes.
#[derive(Clone, Debug, PartialEq, Eq)]
struct XidSnapshot {
    xmax: u32,
    xip: Vec<u32>,
}

impl XidSnapshot {
    fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split(':');
        let _xmin = parts.next()?;
        let xmax = parts.next()?.parse::<u64>().ok()? as u32;
        let xip = match parts.next()? {
            "" => Vec::new(),
            list => list
                .split(',')
                .map(|x| x.parse::<u64>().ok().map(|x| x as u32))
                .collect::<Option<_>>()?,
        };
        Some(XidSnapshot { xmax, xip })
    }

    /// Whether transaction `xid` (committed) was invisible to the read: still in progress
    /// when the snapshot was taken, or begun after it (modulo-2³² order, as the server's).
    fn missed(&self, xid: u32) -> bool {
        self.xip.contains(&xid) || (xid.wrapping_sub(self.xmax) as i32) >= 0
    }
}

/// Transactions of the active table remembered for the next low watermark (module traps).
const RECENT_XIDS: usize = 1024;

/// A table waiting for its turn.
struct Pending {
    table: String,
    last_key: Option<Vec<String>>,
    filter: Option<String>,
}

struct Active {
    /// `progress.filter` is the table's row filter.
    table: PlannedTable,
    index: usize,
    last_key: Option<Vec<String>>,
    /// Rows of the table handed out so far (durable ones of a resumed snapshot included),
    /// for the rows-remaining gauge.
    rows: u64,
    chunk: u64,
    reading: Option<oneshot::Receiver<Result<ChunkRead, SnapshotError>>>,
    /// The read finished before its high watermark reached the stream.
    read: Option<ChunkRead>,
    /// Keys changed in the stream inside the open window.
    window: Option<Window>,
    /// The table's transactions decoded just before the window opened (module traps).
    before_window: Vec<u32>,
    /// A chunk read failed on a column the catalog no longer has (a DROP COLUMN the stream
    /// has not decoded yet): no chunk until the stream's schema of the table is past this
    /// version (module traps).
    waiting: Option<u32>,
}

/// The incremental snapshot state of one Postgres source (lives across stream sessions).
pub struct Incremental {
    pipeline: String,
    /// Tells this run's watermarks from those of an earlier run still in the WAL.
    run: u32,
    connect: PgConnectConfig,
    cfg: SnapshotConfig,
    ledger: LedgerHandle,
    metrics: Arc<Metrics>,
    pending: VecDeque<Pending>,
    active: Option<Active>,
    control: Option<PgControl>,
    /// A table failed since the last transaction went out: the next one must reach the
    /// engine, so the checkpoint (and `status`) records the failure.
    failed: bool,
    /// Ids of the last [`RECENT_XIDS`] transactions that changed the active table.
    recent: VecDeque<u32>,
}

impl Incremental {
    /// The driver; resumes an unfinished incremental snapshot of the checkpoint.
    pub fn new(
        pipeline: String,
        connect: PgConnectConfig,
        cfg: SnapshotConfig,
        ledger: LedgerHandle,
        metrics: Arc<Metrics>,
    ) -> Self {
        let mut pending = VecDeque::new();
        if let Ok(l) = ledger.lock() {
            if let Some(l) = l
                .as_ref()
                .filter(|l| l.state.kind == SnapshotKind::Incremental)
            {
                for t in l.state.tables.iter().filter(|t| !t.complete) {
                    tracing::info!(table = %t.table, last_key = ?t.last_key, filter = ?t.filter, "resuming the incremental snapshot");
                    pending.push_back(Pending {
                        table: t.table.clone(),
                        last_key: t.last_key.clone(),
                        filter: t.filter.clone(),
                    });
                }
            }
        }
        Incremental {
            pipeline,
            run: rand::random(),
            connect,
            cfg,
            ledger,
            metrics,
            pending,
            active: None,
            control: None,
            failed: false,
            recent: VecDeque::new(),
        }
    }

    /// Takes what the stream decoded; returns what to hand to the engine (signals and
    /// watermarks are consumed, a closed window adds its chunk).
    pub async fn on_txn(
        &mut self,
        mut txn: Transaction,
        decoder: &mut Decoder,
    ) -> Result<Vec<Transaction>, SnapshotError> {
        if let Some(e) = self.poll() {
            return Err(e);
        }
        let end = txn.end;
        let mut out = Vec::new();
        let mut keep = Vec::with_capacity(txn.items.len());
        let mut close: Option<Lsn> = None;
        let mut touched = false;
        for item in std::mem::take(&mut txn.items) {
            match &item {
                TxnItem::Message(m) if m.prefix == SIGNAL_PREFIX => self.signal(&m.content),
                TxnItem::Message(m) if m.prefix == WATERMARK_PREFIX => {
                    let text = String::from_utf8_lossy(&m.content).to_string();
                    match self.watermark(&text) {
                        Some(true) => {
                            if let Some(a) = self.active.as_mut() {
                                a.window = Some(Window::new());
                                a.before_window = self.recent.iter().copied().collect();
                            }
                        }
                        Some(false) => close = m.position.as_pg().map(|p| p.lsn),
                        None => {}
                    }
                }
                TxnItem::Rows(b) => {
                    if self.seen(b) {
                        touched = true;
                    }
                    keep.push(item);
                }
                TxnItem::Message(_) => keep.push(item),
            }
        }
        txn.items = keep;
        if let (true, Some(xid)) = (touched, txn.xid) {
            if self.recent.len() == RECENT_XIDS {
                self.recent.pop_front();
            }
            self.recent.push_back(xid as u32);
        }
        if !txn.items.is_empty() {
            out.push(txn);
        }
        if let Some(at) = close {
            if let Some(chunk) = self.close_window(at, decoder).await? {
                out.push(chunk);
            }
        }
        self.start_next(decoder).await?;
        if std::mem::take(&mut self.failed) && out.is_empty() {
            // Nothing else goes out: an empty transaction makes the engine checkpoint the
            // ledger's failed table.
            out.push(Transaction::new(
                None,
                Some(crate::checkpoint::now_ms() * 1000),
                end,
            ));
        }
        Ok(out)
    }

    fn signal(&mut self, content: &[u8]) {
        let s = match serde_json::from_slice::<SnapshotSignal>(content) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(content = %String::from_utf8_lossy(content), error = %e,
                    "ignoring a malformed tidemark.signal message (expected {{\"data-collections\": [\"schema.table\"], \"pipeline\": \"…\"}})");
                return;
            }
        };
        if !s.is_for(&self.pipeline) {
            return;
        }
        match s.requests(Dialect::Postgres) {
            Ok(requests) => {
                for r in requests {
                    tracing::info!(pipeline = %self.pipeline, table = %r.table, filter = ?r.filter, "incremental snapshot requested");
                    self.pending.push_back(Pending {
                        table: r.table,
                        last_key: None,
                        filter: r.filter,
                    });
                }
            }
            Err(e) => {
                tracing::error!(pipeline = %self.pipeline, content = %String::from_utf8_lossy(content),
                    "incremental snapshot signal refused: {e}");
            }
        }
    }

    /// `Some(true)` for our low watermark of the current chunk, `Some(false)` for its high one.
    fn watermark(&self, text: &str) -> Option<bool> {
        let a = self.active.as_ref()?;
        let (kind, rest) = text.split_once(':')?;
        let (pipeline_run, chunk) = rest.rsplit_once(':')?;
        if pipeline_run != format!("{}:{}", self.pipeline, self.run)
            || chunk.parse::<u64>().ok()? != a.chunk
        {
            return None;
        }
        match kind {
            "low" => Some(true),
            "high" => Some(false),
            _ => None,
        }
    }

    /// Records keys of the active table changed inside the open window; whether `b` is the
    /// active table's.
    fn seen(&mut self, b: &ChangeBatch) -> bool {
        let Some(a) = self.active.as_mut() else {
            return false;
        };
        if b.schema.table != a.table.id {
            return false;
        }
        if let Some(w) = a.window.as_mut() {
            w.seen(b, &a.table.progress.key);
        }
        true
    }

    /// A finished reader: keep its chunk for the high watermark, or handle its failure;
    /// returns the transient error that must restart the session.
    fn poll(&mut self) -> Option<SnapshotError> {
        let a = self.active.as_mut()?;
        let rx = a.reading.as_mut()?;
        let result = match rx.try_recv() {
            Ok(r) => r,
            Err(oneshot::error::TryRecvError::Empty) => return None,
            Err(oneshot::error::TryRecvError::Closed) => Err(vanished()),
        };
        a.reading = None;
        match result {
            Ok(read) => {
                a.read = Some(read);
                None
            }
            Err(e) => self.chunk_failed(e),
        }
    }

    /// A chunk read failed: transient, the session restarts and the chunk is read again
    /// under a new number; definite, the table's snapshot stops (module traps).
    /// Returns the error when it is transient (it restarts the session).
    fn chunk_failed(&mut self, e: SnapshotError) -> Option<SnapshotError> {
        let a = self.active.as_mut()?;
        a.window = None;
        a.reading = None;
        a.read = None;
        a.chunk += 1;
        let name = a.table.progress.table.clone();
        if undefined_column(&e) {
            // The catalog is ahead of the stream: the chunk waits for its next schema.
            tracing::warn!(table = %name, error = %e, version = a.table.schema.version,
                "incremental snapshot chunk paused: the catalog is ahead of the stream's schema of the table (a column dropped or retyped); the chunk is read again once the stream reaches the DDL (the table's next change)");
            a.waiting = Some(a.table.schema.version);
            return None;
        }
        if e.is_transient() {
            tracing::warn!(table = %name, error = %e, "incremental snapshot chunk failed; it is read again");
            return Some(e);
        }
        let filter = a.table.progress.filter.clone();
        self.fail(&name, filter.as_deref(), &crate::snapshot::error_text(&e));
        self.active = None;
        None
    }

    /// Stops the snapshot of `name` with `why` (logged, in the ledger and `status`); the
    /// stream and the other tables go on.
    fn fail(&mut self, name: &str, filter: Option<&str>, why: &str) {
        crate::snapshot::ledger::fail_table(&self.ledger, name, filter, why);
        self.failed = true;
    }

    /// The active table's primary key is `now`, not the key its chunks are cut on (module
    /// traps): its snapshot starts again from the first key, cut on the catalog's key (read
    /// again: the latest), with that in the ledger once `end` settles (after the old key's
    /// chunks); it stops instead when the table has no primary key now.
    async fn rekey(&mut self, now: &[String], end: Position) -> Result<(), SnapshotError> {
        let Some(a) = self.active.as_ref() else {
            return Ok(());
        };
        let (id, name, filter) = (
            a.table.id.clone(),
            a.table.progress.table.clone(),
            a.table.progress.filter.clone(),
        );
        let change = KeyChange::new(&name, &a.table.progress.key);
        let control = match self.control.take() {
            Some(c) => c,
            None => PgControl::connect(&self.connect).await?,
        };
        let described = snapshot_plan::describe(&control, &id, &self.cfg).await;
        self.control = Some(control);
        let planned = match described.map_err(SnapshotError::from) {
            Ok(t) => t,
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => {
                self.fail(
                    &name,
                    filter.as_deref(),
                    &change.unreadable(now, "plan", &e),
                );
                self.active = None;
                return Ok(());
            }
        };
        let key = planned.progress.key;
        if change.is_back(&key) {
            if let Some(a) = self.active.as_mut() {
                a.chunk += 1;
            }
            return Ok(());
        }
        if key.is_empty() {
            self.fail(&name, filter.as_deref(), &change.no_key());
            self.active = None;
            return Ok(());
        }
        let Some(a) = self.active.as_mut() else {
            return Ok(());
        };
        change.restart(&self.ledger, end, a.index, &key, a.rows);
        // The stream's schema stays the chunks' (`start_next` follows it).
        a.table.progress.key = key;
        a.table.key_types = planned.key_types;
        a.last_key = None;
        a.rows = 0;
        a.chunk += 1;
        self.metrics
            .snapshot_rows_remaining
            .get_or_create(&self.metrics.table_labels(&name))
            .set(a.table.progress.estimate as i64);
        Ok(())
    }

    /// The chunk minus the keys changed in the window, at the high watermark's position.
    async fn close_window(
        &mut self,
        at: Lsn,
        decoder: &mut Decoder,
    ) -> Result<Option<Transaction>, SnapshotError> {
        let Some(a) = self.active.as_mut() else {
            return Ok(None);
        };
        let Some(changed) = a.window.take() else {
            // A high watermark without its low (a failed read's): nothing to close.
            return Ok(None);
        };
        let read = match (a.read.take(), a.reading.take()) {
            (Some(r), _) => Ok(r),
            (None, Some(rx)) => match rx.await {
                Ok(r) => r,
                Err(_) => Err(vanished()),
            },
            (None, None) => return Ok(None),
        };
        let read = match read {
            Ok(r) => r,
            Err(e) => {
                return match self.chunk_failed(e) {
                    Some(e) => Err(e),
                    None => Ok(None),
                };
            }
        };
        self.control = Some(read.control);
        if let Some(now) = read.key_changed {
            // The primary key was redefined (module traps): the chunk and its window go; the
            // transaction carries the restart (or the failure) to the checkpoint.
            let end: Position = PgPosition::end(at, at).into();
            self.rekey(&now, end).await?;
            return Ok(Some(Transaction::new(
                None,
                Some(crate::checkpoint::now_ms() * 1000),
                end,
            )));
        }
        let Some(a) = self.active.as_mut() else {
            return Ok(None);
        };
        let current = decoder.table_schema_or(&a.table.id, a.table.schema.columns.clone());
        if current.version != a.table.schema.version {
            // The stream's schema of the table changed since the chunk's read began (module
            // traps): the chunk is read again with the new one, from the same key.
            tracing::info!(table = %a.table.progress.table, chunk = a.chunk,
                read_version = a.table.schema.version, stream_version = current.version,
                "incremental snapshot: the table's schema changed during the chunk; it is read again");
            a.chunk += 1;
            return Ok(None);
        }
        let missed = read.snapshot.as_ref().and_then(|s| {
            let before = std::mem::take(&mut a.before_window);
            before.into_iter().find(|&x| s.missed(x))
        });
        if let Some(xid) = missed {
            // A transaction decoded before the low watermark that the read did not see: its
            // commit record was written, but it was not yet visible (module traps). The
            // chunk would hold rows older than the stream's; it is read again.
            tracing::info!(table = %a.table.progress.table, chunk = a.chunk, xid,
                "incremental snapshot: a transaction streamed before the chunk's window was not yet visible to its read; the chunk is read again");
            a.chunk += 1;
            return Ok(None);
        }
        let position = Position::pg(at, at, 0);
        let table_name = a.table.progress.table.clone();
        let mut rows = 0u64;
        let end: Position = PgPosition::end(at, at).into();
        let mut txn = Transaction::new(None, Some(crate::checkpoint::now_ms() * 1000), end);
        if let Some(batch) = read.batch {
            let (batch, dropped) = changed.rest(&batch, &a.table.progress.key)?;
            let batch = crate::snapshot::emit::with_position(&batch, &position)?;
            rows = batch.num_rows() as u64;
            tracing::debug!(table = %table_name, chunk = a.chunk, rows, dropped, "incremental chunk");
            if rows > 0 {
                txn.items.push(TxnItem::Rows(batch));
            }
        }
        txn.snapshot = Some(SnapshotMark {
            incremental: true,
            ..Default::default()
        });
        let done = read.last_key.is_none();
        let completion = Completion::Key {
            table: a.index,
            last_key: read.last_key.clone(),
            rows,
        };
        a.last_key = read.last_key;
        a.chunk += 1;
        a.rows += rows;
        if let Ok(mut l) = self.ledger.lock() {
            if let Some(l) = l.as_mut() {
                l.register(end, completion);
            }
        }
        // The estimate is a guess (`snapshot/estimate.rs`): remaining never goes below zero.
        let remaining = if done {
            0
        } else {
            a.table.progress.estimate.saturating_sub(a.rows) as i64
        };
        self.metrics
            .snapshot_chunk(&table_name, rows, Some(remaining), None);
        if done {
            tracing::info!(table = %table_name, "incremental snapshot: table done");
            self.active = None;
        }
        Ok(Some(txn))
    }

    /// Starts the next table or chunk when nothing is being read.
    async fn start_next(&mut self, decoder: &mut Decoder) -> Result<(), SnapshotError> {
        if self
            .active
            .as_ref()
            .is_some_and(|a| a.reading.is_some() || a.read.is_some() || a.window.is_some())
        {
            return Ok(());
        }
        while self.active.is_none() {
            let Some(next) = self.pending.pop_front() else {
                self.metrics.set_snapshot_running(0);
                return Ok(());
            };
            self.activate(next).await?;
        }
        if let Some(a) = self.active.as_mut() {
            // The chunk is read with the stream's current schema of the table (module traps).
            let current = decoder.table_schema_or(&a.table.id, a.table.schema.columns.clone());
            if a.waiting.is_some_and(|v| v == current.version) {
                return Ok(());
            }
            a.waiting = None;
            if !Arc::ptr_eq(&current, &a.table.schema) {
                a.table.binary = snapshot_plan::binary_columns(&current);
                a.table.schema = current;
            }
        }
        let control = match self.control.take() {
            Some(c) => c,
            None => PgControl::connect(&self.connect).await?,
        };
        let Some(a) = self.active.as_mut() else {
            self.control = Some(control);
            return Ok(());
        };
        let (tx, rx) = oneshot::channel();
        let job = ChunkJob {
            control,
            table: a.table.clone(),
            last_key: a.last_key.clone(),
            rows: self.cfg.incremental_chunk_rows,
            // A user-given key is the user's to keep; the primary key is the catalog's.
            pk: (!self.cfg.key_columns.contains_key(&a.table.progress.table))
                .then(|| a.table.progress.key.clone()),
            tag: format!("{}:{}:{}", self.pipeline, self.run, a.chunk),
        };
        tokio::spawn(async move {
            let _ = tx.send(job.run().await);
        });
        a.reading = Some(rx);
        Ok(())
    }

    /// Makes `next` the active table, or refuses it with the reason (logged; a refused
    /// filter also in the ledger).
    async fn activate(&mut self, next: Pending) -> Result<(), SnapshotError> {
        let Pending {
            table: name,
            last_key,
            filter,
        } = next;
        let Some(id) = crate::config::parse_table(&name) else {
            tracing::error!(table = %name, "incremental snapshot: not a schema.table name; skipped");
            return Ok(());
        };
        let control = match self.control.take() {
            Some(c) => c,
            None => PgControl::connect(&self.connect).await?,
        };
        let described = snapshot_plan::describe(&control, &id, &self.cfg).await;
        // One EXPLAIN checks the filter and estimates its rows (`snapshot_plan::check_filter`).
        let (refused, filtered) = match (&described, &filter) {
            (Ok(_), Some(f)) => match filter::check(&name, f, Dialect::Postgres) {
                Err(e) => (Some(e.to_string()), None),
                Ok(()) => match snapshot_plan::check_filter(&control, &id, f).await? {
                    Ok(rows) => (None, rows),
                    Err(reason) => (
                        Some(
                            FilterError::Invalid {
                                table: name.clone(),
                                filter: f.clone(),
                                reason: format!("the server refused it: {reason}"),
                            }
                            .to_string(),
                        ),
                        None,
                    ),
                },
            },
            _ => (None, None),
        };
        self.control = Some(control);
        let mut table = match described.map_err(SnapshotError::from) {
            Ok(t) => t,
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => {
                tracing::error!(table = %name, error = %e, "incremental snapshot refused");
                return Ok(());
            }
        };
        if table.progress.key.is_empty() {
            tracing::error!(table = %name,
                "incremental snapshot refused: the table has no primary key. Either give it one, set snapshot.key_columns for it (columns that identify a row, NOT NULL), or take an initial snapshot (tidemark reset, snapshot.mode = initial)");
            return Ok(());
        }
        table.progress.filter = filter;
        if refused.is_none() && table.progress.filter.is_some() {
            match filtered {
                Some(rows) => table.progress.estimate = rows,
                None => tracing::warn!(table = %name, estimate = table.progress.estimate,
                    "incremental snapshot: EXPLAIN's plan of the filter could not be read; the estimate is the whole table's"),
            }
        }
        let last_key = match (
            last_key,
            crate::snapshot::ledger::recorded_key(&self.ledger, &name),
        ) {
            (Some(_), Some(was)) if !was.is_empty() && was != table.progress.key => {
                // A resumed last key is in the recorded key's terms (module traps).
                tracing::warn!(table = %name, old_key = %was.join(", "), new_key = %table.progress.key.join(", "),
                    "incremental snapshot: the table's key changed since its last chunk; its snapshot starts again from its first key");
                None
            }
            (last_key, _) => last_key,
        };
        let (index, rows) = self.track(&table, last_key.clone());
        if let Some(why) = refused {
            self.fail(&name, table.progress.filter.as_deref(), &why);
            return Ok(());
        }
        match &table.progress.filter {
            Some(f) => {
                tracing::info!(table = %name, estimate = table.progress.estimate, filter = %f,
                last_key = ?last_key, chunk_rows = self.cfg.incremental_chunk_rows,
                "incremental snapshot: table started (the estimate is the planner's for the filter)")
            }
            None => tracing::info!(table = %name, estimate = table.progress.estimate,
                last_key = ?last_key, chunk_rows = self.cfg.incremental_chunk_rows,
                "incremental snapshot: table started"),
        }
        self.metrics
            .snapshot_rows_remaining
            .get_or_create(&self.metrics.table_labels(&name))
            .set(table.progress.estimate.saturating_sub(rows) as i64);
        self.metrics.set_snapshot_running(2);
        self.active = Some(Active {
            table,
            index,
            last_key,
            rows,
            chunk: 0,
            reading: None,
            read: None,
            window: None,
            before_window: Vec::new(),
            waiting: None,
        });
        Ok(())
    }

    /// Puts the table into the ledger's incremental record (with its filter and this
    /// activation's estimate); returns its index there and its rows durable so far.
    fn track(&self, t: &PlannedTable, last_key: Option<Vec<String>>) -> (usize, u64) {
        let Ok(mut l) = self.ledger.lock() else {
            return (0, 0);
        };
        let state = crate::snapshot::ledger::incremental_record(&mut l);
        if let Some(i) = state
            .tables
            .iter()
            .position(|x| x.table == t.progress.table)
        {
            let x = &mut state.tables[i];
            if last_key.is_none() {
                // A new request (a resume continues after its last key): count from zero.
                x.rows = 0;
            }
            x.complete = false;
            x.key = t.progress.key.clone();
            x.last_key = last_key;
            x.filter = t.progress.filter.clone();
            x.estimate = t.progress.estimate;
            x.error = None;
            return (i, x.rows);
        }
        state.tables.push(TableProgress {
            last_key,
            ..t.progress.clone()
        });
        (state.tables.len() - 1, t.progress.rows)
    }
}

/// A chunk read failed because the catalog is ahead of the stream: a column the table no
/// longer has (SQLSTATE 42703), or one of another type now.
fn undefined_column(e: &SnapshotError) -> bool {
    match e {
        SnapshotError::Postgres(e) => e.sqlstate() == Some("42703"),
        SnapshotError::SchemaAhead { .. } => true,
        _ => false,
    }
}

/// Why the catalog's columns `now` cannot be read as the stream's `stream` (matched by name):
/// a column missing, or of another type (OID or Arrow type). Columns only the catalog has are
/// not read, so they do not matter.
fn schema_mismatch(stream: &TableSchema, now: &TableSchema) -> Option<String> {
    for c in &stream.columns {
        let Some(k) = now.columns.iter().find(|k| k.name == c.name) else {
            return Some(format!("column {} is not in the catalog", c.name));
        };
        if k.source_type.oid != c.source_type.oid || k.data_type != c.data_type {
            return Some(format!(
                "column {} is {} in the catalog, {} in the stream",
                c.name, k.source_type.display, c.source_type.display
            ));
        }
    }
    None
}

fn vanished() -> SnapshotError {
    SnapshotError::Setup("incremental chunk reader vanished".into())
}

struct ChunkJob {
    control: PgControl,
    table: PlannedTable,
    last_key: Option<Vec<String>>,
    rows: usize,
    /// The primary key the chunks are cut on, checked against the catalog's under the chunk's
    /// lock; `None`: a user-given key (`snapshot.key_columns`), not checked.
    pk: Option<Vec<String>>,
    tag: String,
}

impl ChunkJob {
    /// Reads the chunk between its watermarks; on failure still emits the high watermark
    /// (best effort), so the stream sees the window end and collects the error (module traps).
    async fn run(self) -> Result<ChunkRead, SnapshotError> {
        match self.read().await {
            Ok((batch, last_key, key_changed, snapshot)) => Ok(ChunkRead {
                batch,
                last_key,
                key_changed,
                snapshot,
                control: self.control,
            }),
            Err(e) => {
                let c = &self.control.client;
                let _ = c.batch_execute("ROLLBACK").await;
                let _ = c.batch_execute(&self.emit("high")).await;
                Err(e)
            }
        }
    }

    fn emit(&self, kind: &str) -> String {
        format!(
            "SELECT pg_logical_emit_message(false, {}, {})",
            quote_literal(WATERMARK_PREFIX),
            quote_literal(&format!("{kind}:{}", self.tag))
        )
    }

    /// The chunk's schema (the stream's) against the catalog's columns now: a column type the
    /// stream has not reached yet (`ALTER COLUMN … TYPE` committed, not yet decoded) would be
    /// read in the new type under the old one; the chunk waits instead (module traps).
    /// `Ok(Some(key))`: the catalog's primary key is `key`, not the job's `pk`.
    async fn check_catalog(&self) -> Result<Option<Vec<String>>, SnapshotError> {
        let c = &self.control;
        let at = c.at().clone();
        let oid: Option<u32> = c
            .client
            .query_one(
                "SELECT to_regclass($1)::oid",
                &[&snapshot_plan::qualified(&self.table.id)],
            )
            .await
            .map_err(|e| {
                SnapshotError::Postgres(PgSourceError::control(&at, "chunk catalog check", e))
            })?
            .get(0);
        let Some(oid) = oid else {
            return Err(SnapshotError::Query {
                table: self.table.progress.table.clone(),
                range: 0,
                message: "the table no longer exists".into(),
            });
        };
        let catalog = c.relation_catalog(oid).await?;
        let now = snapshot_plan::schema_of(&self.table.id, &catalog);
        match schema_mismatch(&self.table.schema, &now) {
            None => Ok(self
                .pk
                .as_ref()
                .filter(|&pk| pk != &catalog.primary_key)
                .map(|_| catalog.primary_key.clone())),
            Some(why) => Err(SnapshotError::SchemaAhead {
                table: self.table.progress.table.clone(),
                message: why,
            }),
        }
    }

    /// The chunk's rows and last key, or the catalog's primary key when it is no longer the
    /// one the chunks are cut on.
    #[allow(clippy::type_complexity)]
    async fn read(
        &self,
    ) -> Result<
        (
            Option<ChangeBatch>,
            Option<Vec<String>>,
            Option<Vec<String>>,
            Option<XidSnapshot>,
        ),
        SnapshotError,
    > {
        let c = &self.control;
        let q = |what: &'static str| {
            let at = c.at().clone();
            move |e| SnapshotError::Postgres(PgSourceError::control(&at, what, e))
        };
        c.client
            .batch_execute(&self.emit("low"))
            .await
            .map_err(q("low watermark"))?;
        // The lock (before the first query: it takes the transaction's snapshot) keeps any DDL
        // of the table out until the chunk is read, so the catalog checked below is the one the
        // COPY reads with (module traps).
        c.client
            .batch_execute(&format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; LOCK TABLE ONLY {} IN ACCESS SHARE MODE",
                snapshot_plan::qualified(&self.table.id)
            ))
            .await
            .map_err(q("chunk begin"))?;
        if let Some(now) = self.check_catalog().await? {
            c.client
                .batch_execute("ROLLBACK")
                .await
                .map_err(q("chunk rollback"))?;
            c.client
                .batch_execute(&self.emit("high"))
                .await
                .map_err(q("high watermark"))?;
            return Ok((None, None, Some(now), None));
        }
        // The read's snapshot (taken by the catalog check's query): which transactions it saw.
        let text: String = c
            .client
            .query_one("SELECT pg_current_snapshot()::text", &[])
            .await
            .map_err(q("chunk snapshot"))?
            .get(0);
        let snapshot = XidSnapshot::parse(&text).ok_or_else(|| {
            SnapshotError::Postgres(PgSourceError::Protocol {
                at: c.at().clone(),
                message: format!("chunk snapshot: unreadable pg_current_snapshot() {text:?}"),
            })
        })?;
        let (select, last) =
            snapshot_plan::chunk_sql(&self.table, self.last_key.as_deref(), self.rows);
        let name = self.table.progress.table.clone();
        let read_err = |source: RowError| SnapshotError::Read {
            table: name.clone(),
            range: 0,
            source,
        };
        let stream = c
            .client
            .copy_out(select.as_str())
            .await
            .map_err(q("chunk COPY"))?;
        let mut stream = std::pin::pin!(stream);
        let placeholder = Position::pg(Lsn(0), Lsn(0), 0);
        let mut reader = CopyReader::new(self.table.binary.clone(), placeholder, None, None);
        let mut builder = ChangeBatchBuilder::new(self.table.schema.clone(), self.rows);
        while let Some(data) = stream.next().await {
            reader.push(data.map_err(q("chunk COPY"))?);
            reader
                .read_rows(&mut builder, usize::MAX)
                .map_err(read_err)?;
        }
        let last_key = c
            .client
            .query_opt(last.as_str(), &[])
            .await
            .map_err(q("chunk last key"))?;
        let last_key = match last_key {
            Some(row) => Some(
                (0..self.table.progress.key.len())
                    .map(|i| row.try_get::<_, String>(i))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(q("chunk last key"))?,
            ),
            None => None,
        };
        c.client
            .batch_execute("COMMIT")
            .await
            .map_err(q("chunk commit"))?;
        c.client
            .batch_execute(&self.emit("high"))
            .await
            .map_err(q("high watermark"))?;
        let batch = if builder.is_empty() {
            None
        } else {
            Some(builder.finish().map_err(|e| read_err(RowError::Model(e)))?)
        };
        let full = batch_is_full(&batch, self.rows);
        Ok((
            batch,
            if full { last_key } else { None },
            None,
            Some(snapshot),
        ))
    }
}

/// A chunk shorter than asked is the table's last.
fn batch_is_full(batch: &Option<ChangeBatch>, rows: usize) -> bool {
    batch.as_ref().is_some_and(|b| b.num_rows() >= rows)
}

/// Tables named in a signal that exist as `schema.table`.
pub fn parse_tables(tables: &[String]) -> Result<Vec<TableId>, String> {
    tables
        .iter()
        .map(|t| {
            crate::config::parse_table(t).ok_or_else(|| format!("{t:?} is not \"schema.table\""))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::XidSnapshot;

    #[test]
    fn a_read_missed_the_transactions_in_progress_or_begun_after_it() {
        let s = XidSnapshot::parse("740:750:741,745").expect("snapshot");
        assert_eq!(
            s,
            XidSnapshot {
                xmax: 750,
                xip: vec![741, 745]
            }
        );
        assert!(!s.missed(739) && !s.missed(742) && !s.missed(749));
        assert!(s.missed(741) && s.missed(745) && s.missed(750) && s.missed(900));
        // Epoch-qualified ids (xid8) cut to the 32 bits pgoutput decodes, across wraparound.
        let s = XidSnapshot::parse("8589934590:8589934597:").expect("snapshot");
        assert_eq!(s.xmax, 5);
        assert!(!s.missed(u32::MAX) && !s.missed(4));
        assert!(s.missed(5) && s.missed(6));
        assert_eq!(XidSnapshot::parse("1:2"), None);
        assert_eq!(XidSnapshot::parse("1:x:"), None);
    }
}
