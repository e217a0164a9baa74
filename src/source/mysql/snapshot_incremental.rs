//! Incremental snapshots while streaming, MySQL/MariaDB: Netflix DBLog's watermark method
//! (Debezium's incremental snapshots) with a signal/watermark table, driven from inside the
//! binlog stream.
//!
//! ```text
//!  signal: INSERT INTO tidemark.signal (id, type, data) VALUES
//!            ('tidemark-…', 'execute-snapshot', '{"pipeline":"p","data-collections":["db.t"],
//!             "additional-conditions":[{"data-collection":"db.t","filter":"color = ''blue''"}]}')
//!     (`tidemark snapshot --table db.t --filter …`, or any client; `snapshot/filter.rs`)
//!     ──binlog──► queue the tables
//!  per chunk, on its own connection (autocommit, one statement each):
//!     upsert ('tidemark-wm-…', 'snapshot-window-open',  {pipeline, run, chunk, table})
//!     SELECT cols FROM db.t WHERE key > last AND (filter) ORDER BY key LIMIT incremental_chunk_rows
//!     upsert ('tidemark-wm-…', 'snapshot-window-close', {pipeline, run, chunk, table})
//!  in the stream: window-open opens the window; every change of the table inside it drops its
//!  key from the chunk (the stream's newer image wins, `snapshot/window.rs`); window-close
//!  closes it: the chunk's rest replaces the watermark row in its transaction, as `Op::Read`
//!  rows (`source.snapshot = incremental`) at the watermark's position; the next chunk starts.
//! ```
//!
//! # Why this is consistent
//! Binlog order is commit order (`binlog_order_commits`, on by default), and a statement's
//! consistent read sees exactly the transactions committed before it started. The window-open
//! row is committed before the SELECT starts and the window-close row is written after it
//! ended, so every change the SELECT did *not* see sits between the two watermarks in the
//! binlog, and a chunk row whose key saw no change in the window is the row as of the
//! window-close: emitting it there is right, and later changes follow it in the stream.
//!
//! # Traps
//! - **The signal table is captured whatever the filters say** (the stream's filter adds it),
//!   and its rows never reach the sinks: signals and watermarks are consumed here, rows of other
//!   pipelines' watermarks dropped. The initial snapshot never lists it.
//! - **Watermarks of an earlier run** are still in the binlog after a restart: each carries the
//!   pipeline, a random run id and the chunk number, and only the current chunk's count.
//! - **Keys**: chunks continue strictly after the last key (`TableShape::after`); keys of
//!   floats, bits, geometries, ENUM and SET are refused (no exact `>` order), keyless tables
//!   too, with the same message as Postgres. Watermark writes and the chunk read:
//!   `snapshot_signal.rs`.
//! - **A reader error before its window-close** would leave the window open forever: the
//!   stream polls the reader on every transaction and heartbeat, and a failed chunk is read
//!   again under a new chunk number.
//! - **Progress** (`last_key` and `filter` per table) is registered in the ledger at the
//!   window-close's transaction end: a restart continues after the last chunk every sink has,
//!   with the same filter; requested but unread tables are in the ledger at once, so a restart
//!   does not forget them.
//! - **A filtered table's estimate** (progress, `status`, `tidemark_snapshot_rows_remaining`)
//!   is the optimizer's for the filter (`EXPLAIN FORMAT=JSON`, `snapshot_signal::filter_estimate`,
//!   `snapshot/estimate.rs`), `TABLE_ROWS` when the answer cannot be read (logged). MariaDB
//!   counts a condition on a non-indexed column only with histograms (`ANALYZE TABLE …
//!   PERSISTENT FOR ALL`); otherwise its estimate is the table's rows. A guess either way: the
//!   remaining rows stop at zero.
//! - **A definite chunk error** (a filter the server refuses at the start, or mid-way, e.g. a
//!   column it names was dropped) stops that table's snapshot with the error in the ledger and
//!   `status`; the stream and the other tables go on. Transient ones read the chunk again.
//! - **DDL of the table during its snapshot** (`ADD`/`DROP`/`MODIFY COLUMN`): the binlog
//!   decoder numbers the table's schema versions (a TABLE_MAP with other columns after a DDL
//!   is the next version; the numbering goes on across reconnects and from the initial
//!   snapshot's schemas), so chunks are read with the *stream's* current schema of the table
//!   (`Decoder::table_schema_or`; a table the stream has not decoded yet gets the catalog's
//!   columns as its version 1), the catalog's columns matched to it by name
//!   (`TableShape::project`). A chunk whose read began under another version than the
//!   stream's at its window-close is discarded (window and rows) and read again from the same
//!   key with the new schema, as Debezium does: sinks never see an older schema after a newer
//!   one. The catalog can be ahead of the stream (a DDL committed, not yet decoded): an added
//!   column is simply not read until the stream has it; a dropped one fails the SELECT (1054)
//!   and a retyped one does not fit the stream's type, and the chunk waits for the stream's
//!   next version of the table, which comes with the table's next change (until then that
//!   table's snapshot pauses, with a warning; the stream goes on). A dropped key column stops
//!   the table's snapshot (request it again).
//! - **A primary key redefined mid-snapshot** (`DROP PRIMARY KEY, ADD PRIMARY KEY (other)`,
//!   the old columns kept: nothing above notices): the chunks' `ORDER BY`, `last_key` and the
//!   window's de-duplication are in the old key's terms. Each chunk reads the PRIMARY KEY
//!   columns inside its window, before its SELECT (`snapshot_signal::ChunkJob`); a difference
//!   discards the chunk and its window and starts the table again from its first key with the
//!   catalog's key (`rekey`, logged): rows read before are read again, which a sink takes as
//!   upserts. The ledger gets the new key by a `Completion::Restart` registered after the old
//!   key's chunks, so a chunk settling later cannot put an old `last_key` back; a resume whose
//!   recorded key is not the table's key starts the table again too. No primary key now, or
//!   one that cannot cut chunks: the table's snapshot stops with the reason. A user-given key
//!   (`snapshot.key_columns`) is not checked.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::Opts;
use tidemark_binlog::Decoder;
use tidemark_model::{ChangeBatch, Op, Position, SnapshotMark, TableId, Transaction, TxnItem};
use tokio::task::JoinHandle;

use super::config::MysqlSourceConfig;
use super::control::{self, MysqlControl};
use super::error::MysqlSourceError;
use super::snapshot::{open_reader, SnapshotError};
use super::snapshot_rows::{self, ProjectError, TableShape};
use super::snapshot_signal::{
    check_filter, filter_estimate, fnv, text_at, ChunkJob, ChunkRead, Watermark,
};
pub use super::snapshot_signal::{
    ensure_signal_table, request, signal_table, SignalData, DEFAULT_SIGNAL_TABLE, EXECUTE_SNAPSHOT,
    WINDOW_CLOSE, WINDOW_OPEN,
};
use super::stream::MysqlSource;
use crate::metrics::Metrics;
use crate::snapshot::emit::with_position;
use crate::snapshot::filter::{self, Dialect, FilterError, TableRequest};
use crate::snapshot::ledger::{Completion, LedgerHandle, SnapshotKind, TableProgress};
use crate::snapshot::rekey::KeyChange;
use crate::snapshot::window::Window;
use crate::snapshot::SnapshotConfig;

type R<T> = Result<T, SnapshotError>;

/// The table being snapshotted.
struct Active {
    shape: TableShape,
    name: String,
    key: Vec<String>,
    /// The row filter every chunk SELECT ANDs in.
    filter: Option<String>,
    /// Index of the table in the ledger's record.
    index: usize,
    last_key: Option<Vec<String>>,
    /// The chunk being read (its watermarks carry it).
    chunk: u64,
    job: Option<JoinHandle<R<ChunkRead>>>,
    /// The read finished before its window-close reached the stream.
    read: Option<ChunkRead>,
    window: Option<Window>,
    /// A chunk read failed on a column the catalog no longer has, or the catalog's columns do
    /// not fit the stream's (a DDL the stream has not decoded yet): no chunk until the stream's
    /// schema of the table is past this version (module traps).
    waiting: Option<u32>,
    rows: u64,
    chunks: u64,
    estimate: u64,
    started: Instant,
}

/// A table waiting for its turn.
struct Queued {
    table: String,
    last_key: Option<Vec<String>>,
    filter: Option<String>,
}

/// The incremental snapshot state of one MySQL source (lives across stream sessions).
pub struct Incremental {
    pipeline: String,
    /// Tells this run's watermarks from those of an earlier run still in the binlog.
    run: u32,
    opts: Opts,
    addr: String,
    source: MysqlSourceConfig,
    cfg: SnapshotConfig,
    signal: TableId,
    /// The id of this pipeline's watermark row (one row, upserted).
    watermark_id: String,
    ledger: LedgerHandle,
    metrics: Arc<Metrics>,
    pending: VecDeque<Queued>,
    active: Option<Active>,
    ctl: Option<MysqlControl>,
    signal_ready: bool,
    next_chunk: u64,
    logged: Instant,
    /// `tidemark_snapshot_running` says 2.
    running: bool,
}

impl Incremental {
    /// The driver; resumes an unfinished incremental snapshot of the checkpoint.
    pub fn new(
        pipeline: String,
        source: &MysqlSourceConfig,
        cfg: SnapshotConfig,
        ledger: LedgerHandle,
        metrics: Arc<Metrics>,
    ) -> Result<Self, MysqlSourceError> {
        let opts = control::opts(source)?;
        let mut pending = VecDeque::new();
        if let Ok(l) = ledger.lock() {
            if let Some(l) = l
                .as_ref()
                .filter(|l| l.state.kind == SnapshotKind::Incremental)
            {
                for t in l.state.tables.iter().filter(|t| !t.complete) {
                    tracing::info!(table = %t.table, last_key = ?t.last_key, filter = ?t.filter, "resuming the incremental snapshot");
                    pending.push_back(Queued {
                        table: t.table.clone(),
                        last_key: t.last_key.clone(),
                        filter: t.filter.clone(),
                    });
                }
            }
        }
        Ok(Incremental {
            watermark_id: format!("tidemark-wm-{:016x}", fnv(&pipeline)),
            pipeline,
            run: rand::random(),
            addr: control::addr(&opts),
            opts,
            source: source.clone(),
            signal: signal_table(&cfg),
            cfg,
            ledger,
            metrics,
            pending,
            active: None,
            ctl: None,
            signal_ready: false,
            next_chunk: 0,
            logged: Instant::now(),
            running: false,
        })
    }

    /// The signal table (the stream captures it whatever its filters).
    pub fn signal_table(&self) -> &TableId {
        &self.signal
    }

    /// Queues an incremental snapshot of `tables` (the no-lock fallback of the initial
    /// snapshot).
    pub fn queue_all(&mut self, tables: Vec<TableId>) {
        for t in tables {
            self.request(TableRequest::whole(t.to_string()));
        }
    }

    /// Takes what the stream decoded; returns what to hand to the engine: signal and
    /// watermark rows are consumed, a closed window's chunk takes the watermark's place.
    pub async fn on_txn(&mut self, mut txn: Transaction, decoder: &mut Decoder) -> R<Transaction> {
        let idle = self.active.is_none() && self.pending.is_empty();
        let window_open = self.active.as_ref().is_some_and(|a| a.window.is_some());
        if !window_open && !txn.batches().any(|b| b.schema.table == self.signal) {
            // The common case: nothing to consume, nothing to drop.
            if !idle {
                self.tick(decoder).await?;
            }
            return Ok(txn);
        }
        self.poll().await?;
        let mut close: Option<Position> = None;
        // The binlog file and server of the watermark's event: the chunk's `source` block.
        let mut signal_meta: Option<std::collections::HashMap<String, String>> = None;
        let items = std::mem::take(&mut txn.items);
        txn.items.reserve(items.len());
        for item in items {
            match item {
                TxnItem::Rows(b) if b.schema.table == self.signal => {
                    signal_meta = Some(b.batch.schema().metadata().clone());
                    for row in 0..b.num_rows() {
                        if let Some(at) = self.signal_row(&b, row) {
                            close = Some(at);
                        }
                    }
                }
                TxnItem::Rows(b) => {
                    self.seen(&b);
                    txn.items.push(TxnItem::Rows(b));
                }
                other => txn.items.push(other),
            }
        }
        if let Some(at) = close {
            if let Some(chunk) = self.close_window(at, txn.end, decoder).await? {
                let source_meta = [
                    tidemark_binlog::meta::FILE,
                    tidemark_binlog::meta::SERVER_ID,
                ]
                .into_iter()
                .filter_map(|k| {
                    let v = signal_meta.as_ref()?.get(k)?;
                    Some((k.to_owned(), v.clone()))
                });
                let chunk = chunk.with_metadata(source_meta)?;
                txn.items.push(TxnItem::Rows(chunk));
                txn.snapshot = Some(SnapshotMark {
                    incremental: true,
                    ..Default::default()
                });
            }
        }
        self.start_next(decoder).await?;
        Ok(txn)
    }

    /// Checks the reader and starts the next chunk when nothing is in flight (the stream
    /// calls it when a session starts and on heartbeats).
    pub async fn tick(&mut self, decoder: &mut Decoder) -> R<()> {
        self.poll().await?;
        self.start_next(decoder).await
    }

    /// A finished reader: keep its chunk for the window-close, or report its error (the
    /// chunk is read again, under a new number, by the next `start_next`).
    async fn poll(&mut self) -> R<()> {
        let Some(a) = self.active.as_mut() else {
            return Ok(());
        };
        if !a.job.as_ref().is_some_and(|h| h.is_finished()) {
            return Ok(());
        }
        let Some(job) = a.job.take() else {
            return Ok(());
        };
        match job.await {
            Ok(Ok(read)) => {
                a.read = Some(read);
                Ok(())
            }
            Ok(Err(e)) => self.chunk_failed(e).map_or(Ok(()), Err),
            Err(e) => self
                .chunk_failed(SnapshotError::Setup(format!(
                    "incremental chunk reader task: {e}"
                )))
                .map_or(Ok(()), Err),
        }
    }

    /// A chunk read failed: transient, the error restarts the session and the chunk is read
    /// again under a new number; definite, the table's snapshot stops (module traps).
    /// Returns the error when it is transient (it restarts the session).
    fn chunk_failed(&mut self, e: SnapshotError) -> Option<SnapshotError> {
        let a = self.active.as_mut()?;
        a.window = None;
        if undefined_column(&e) {
            // The catalog is ahead of the stream: the chunk waits for its next schema, under a
            // chunk number no watermark of the failed read carries.
            tracing::warn!(table = %a.name, chunk = a.chunk, error = %e, version = a.shape.schema.version,
                "incremental snapshot chunk read a column the table no longer has; the chunk is read again once the stream reaches the DDL (the table's next change)");
            a.waiting = Some(a.shape.schema.version);
            a.chunk = self.next_chunk;
            self.next_chunk += 1;
            return None;
        }
        if e.is_transient() {
            tracing::warn!(table = %a.name, chunk = a.chunk, error = %e, "incremental snapshot chunk failed; it is read again");
            return Some(e);
        }
        self.fail_active(&crate::snapshot::error_text(&e));
        None
    }

    /// Handles one row of the signal table; returns the row's position for our window-close.
    fn signal_row(&mut self, b: &ChangeBatch, row: usize) -> Option<Position> {
        if b.op(row) == Op::Delete {
            return None;
        }
        let kind = text_at(b, "type", row)?;
        let data = text_at(b, "data", row).unwrap_or_default();
        match kind.as_str() {
            EXECUTE_SNAPSHOT => {
                self.signal(&data);
                None
            }
            WINDOW_OPEN | WINDOW_CLOSE => {
                let w: Watermark = serde_json::from_str(&data).ok()?;
                let a = self.active.as_mut()?;
                if w.pipeline != self.pipeline || w.run != self.run || w.chunk != a.chunk {
                    return None;
                }
                if kind == WINDOW_OPEN {
                    a.window = Some(Window::new());
                    None
                } else {
                    Some(b.position(row))
                }
            }
            other => {
                tracing::debug!(r#type = %other, "signal table row of another kind; ignored");
                None
            }
        }
    }

    fn signal(&mut self, data: &str) {
        let s = match serde_json::from_str::<SignalData>(data) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(data = %data, error = %e, "ignoring a malformed execute-snapshot signal (expected {{\"data-collections\": [\"db.table\"], \"pipeline\": \"…\"}})");
                return;
            }
        };
        if !s.is_for(&self.pipeline) {
            return;
        }
        match s.requests(Dialect::Mysql) {
            Ok(requests) => {
                for r in requests {
                    tracing::info!(pipeline = %self.pipeline, table = %r.table, filter = ?r.filter, "incremental snapshot requested");
                    self.request(r);
                }
            }
            Err(e) => {
                tracing::error!(pipeline = %self.pipeline, data = %data, "execute-snapshot signal refused: {e}");
            }
        }
    }

    /// Queues `r` and records it (with its filter) in the ledger at once (a restart must not
    /// forget it).
    fn request(&mut self, r: TableRequest) {
        let name = r.table;
        let busy = self.active.as_ref().is_some_and(|a| a.name == name)
            || self.pending.iter().any(|q| q.table == name);
        if busy {
            tracing::info!(table = %name, "incremental snapshot already queued or running; request ignored");
            return;
        }
        let f = r.filter.clone();
        self.entry(&name, |t| {
            t.complete = false;
            t.last_key = None;
            t.rows = 0;
            t.filter = f;
            t.error = None;
        });
        self.pending.push_back(Queued {
            table: name,
            last_key: None,
            filter: r.filter,
        });
    }

    /// Records keys of the active table changed inside the open window.
    fn seen(&mut self, b: &ChangeBatch) {
        let Some(a) = self.active.as_mut() else {
            return;
        };
        if b.schema.table != a.shape.id {
            return;
        }
        if let Some(w) = a.window.as_mut() {
            w.seen(b, &a.key);
        }
    }

    /// The chunk minus the keys changed in the window, at the window-close's position `at`;
    /// its progress completes with the transaction ending at `end`.
    async fn close_window(
        &mut self,
        at: Position,
        end: Position,
        decoder: &Decoder,
    ) -> R<Option<ChangeBatch>> {
        let Some(a) = self.active.as_mut() else {
            return Ok(None);
        };
        let read = match (a.read.take(), a.job.take()) {
            (Some(r), _) => r,
            (None, Some(job)) => match job.await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return self.chunk_failed(e).map_or(Ok(None), Err),
                Err(e) => {
                    return self
                        .chunk_failed(SnapshotError::Setup(format!(
                            "incremental chunk reader task: {e}"
                        )))
                        .map_or(Ok(None), Err)
                }
            },
            (None, None) => return Ok(None),
        };
        let Some(window) = a.window.take() else {
            // The close without its open (cannot happen in one binlog): read the chunk again.
            tracing::warn!(table = %a.name, chunk = a.chunk, "window-close without window-open; reading the chunk again");
            self.ctl = Some(read.ctl);
            return Ok(None);
        };
        self.ctl = Some(read.ctl);
        if let Some(now) = read.key_changed {
            // The primary key was redefined (module traps): the chunk and its window go.
            self.rekey(&now, end).await?;
            return Ok(None);
        }
        let Some(a) = self.active.as_mut() else {
            return Ok(None);
        };
        let stream_version = decoder.schema(&a.shape.id).map(|s| s.version);
        if stream_version.is_some_and(|v| v != a.shape.schema.version) {
            // The stream's schema of the table changed since the chunk's read began (module
            // traps): the chunk is read again with the new one, from the same key.
            tracing::info!(table = %a.name, chunk = a.chunk, read_version = a.shape.schema.version,
                stream_version = ?stream_version,
                "incremental snapshot: the table's schema changed during the chunk; it is read again");
            return Ok(None);
        }
        let mut out = None;
        let mut rows = 0u64;
        if let Some(batch) = read.batch {
            let (rest, dropped) = window.rest(&batch, &a.key)?;
            let rest =
                with_position(&rest, &at).map_err(|e| SnapshotError::Setup(e.to_string()))?;
            rows = rest.num_rows() as u64;
            tracing::debug!(table = %a.name, chunk = a.chunk, rows, dropped, changed = window.len(), "incremental chunk");
            if rows > 0 {
                out = Some(rest);
            }
        }
        let done = read.last_key.is_none();
        if let Ok(mut l) = self.ledger.lock() {
            if let Some(l) = l.as_mut() {
                l.register(
                    end,
                    Completion::Key {
                        table: a.index,
                        last_key: read.last_key.clone(),
                        rows,
                    },
                );
            }
        }
        a.last_key = read.last_key;
        a.rows += rows;
        a.chunks += 1;
        let remaining = if done {
            0
        } else {
            a.estimate.saturating_sub(a.rows) as i64
        };
        let secs = a.started.elapsed().as_secs_f64();
        self.metrics
            .snapshot_chunk(&a.name, rows, Some(remaining), Some(secs));
        if done {
            tracing::info!(table = %a.name, rows = a.rows, chunks = a.chunks,
                seconds = format!("{secs:.1}"), rows_per_s = (a.rows as f64 / secs.max(1e-3)) as u64,
                "incremental snapshot: table done");
            self.active = None;
        } else if self.logged.elapsed() >= self.cfg.progress_interval.max(Duration::from_secs(1)) {
            self.logged = Instant::now();
            tracing::info!(table = %a.name, rows = a.rows, estimate = a.estimate, chunks = a.chunks, last_key = ?a.last_key,
                "incremental snapshot progress");
        }
        Ok(out)
    }

    /// A connection for the next statement (reader session settings), with the signal table
    /// in place.
    async fn take_ctl(&mut self) -> R<MysqlControl> {
        let mut ctl = match self.ctl.take() {
            Some(c) => c,
            None => MysqlControl {
                conn: open_reader(&self.opts, &self.addr).await?,
                addr: self.addr.clone(),
            },
        };
        if !self.signal_ready {
            ensure_signal_table(&mut ctl, &self.signal).await?;
            self.signal_ready = true;
        }
        Ok(ctl)
    }

    /// Starts the next table or chunk when nothing is in flight.
    async fn start_next(&mut self, decoder: &mut Decoder) -> R<()> {
        if let Some(a) = &self.active {
            if a.job.is_some() || a.read.is_some() || a.window.is_some() {
                return Ok(());
            }
        }
        loop {
            while self.active.is_none() {
                let Some(next) = self.pending.pop_front() else {
                    if std::mem::take(&mut self.running) {
                        self.metrics.set_snapshot_running(0);
                    }
                    return Ok(());
                };
                self.activate(next).await?;
            }
            if self.follow_stream_schema(decoder).await? {
                break;
            }
            if self.active.is_some() {
                // Waiting for the stream to reach a DDL of the table.
                return Ok(());
            }
        }
        let ctl = self.take_ctl().await?;
        let chunk = self.next_chunk;
        self.next_chunk += 1;
        let Some(a) = self.active.as_mut() else {
            self.ctl = Some(ctl);
            return Ok(());
        };
        a.chunk = chunk;
        let job = ChunkJob {
            ctl,
            shape: a.shape.clone(),
            last_key: a.last_key.clone(),
            filter: a.filter.clone(),
            rows: self.cfg.incremental_chunk_rows.max(1),
            // A user-given key is the user's to keep; the primary key is the catalog's.
            pk: (!self.cfg.key_columns.contains_key(&a.name)).then(|| a.key.clone()),
            signal: self.signal.clone(),
            watermark_id: self.watermark_id.clone(),
            mark: Watermark {
                pipeline: self.pipeline.clone(),
                run: self.run,
                chunk,
                table: a.name.clone(),
            },
        };
        a.job = Some(tokio::spawn(job.run()));
        Ok(())
    }

    /// Points the active table's chunk reads at the stream's current schema of the table
    /// (module traps); false: no chunk now (waiting for the stream to reach a DDL, or the
    /// table's snapshot stopped).
    async fn follow_stream_schema(&mut self, decoder: &mut Decoder) -> R<bool> {
        let Some(a) = self.active.as_mut() else {
            return Ok(false);
        };
        let current = decoder.table_schema_or(&a.shape.id, a.shape.schema.columns.clone());
        if a.waiting == Some(current.version) {
            return Ok(false);
        }
        a.waiting = None;
        if Arc::ptr_eq(&current, &a.shape.schema) {
            return Ok(true);
        }
        let projected = match a.shape.project(&current) {
            Ok(shape) => Ok(shape),
            Err(ProjectError::CatalogAhead(_)) => {
                // The shape's catalog is older than the stream's schema: read the catalog again.
                let (id, name) = (a.shape.id.clone(), a.name.clone());
                let mut ctl = self.take_ctl().await?;
                let described =
                    snapshot_rows::describe(&mut ctl, &id, self.cfg.key_columns.get(&name)).await;
                self.ctl = Some(ctl);
                match described {
                    Ok(shape) => shape.project(&current),
                    Err(e) if e.is_transient() => return Err(e.into()),
                    Err(e) => {
                        self.fail_active(&e.to_string());
                        return Ok(false);
                    }
                }
            }
            Err(e) => Err(e),
        };
        let Some(a) = self.active.as_mut() else {
            return Ok(false);
        };
        match projected {
            Ok(shape) => {
                tracing::info!(table = %a.name, version = current.version, columns = current.columns.len(),
                    "incremental snapshot: chunks follow the stream's schema of the table");
                a.shape = shape;
                Ok(true)
            }
            Err(ProjectError::CatalogAhead(why)) => {
                tracing::warn!(table = %a.name, version = current.version, "incremental snapshot paused: the catalog does not fit the stream's schema of the table ({why}); the next chunk is read once the stream reaches the DDL (the table's next change)");
                a.waiting = Some(current.version);
                Ok(false)
            }
            Err(ProjectError::KeyGone(column)) => {
                self.fail_active(&format!("the snapshot's key column {column} is no longer in the table (request the snapshot again)"));
                Ok(false)
            }
        }
    }

    /// Makes `next` the active table, or refuses it with the reason (logged).
    async fn activate(&mut self, next: Queued) -> R<()> {
        let Queued {
            table: name,
            last_key,
            filter,
        } = next;
        let Some(id) = crate::config::parse_table(&name) else {
            self.refuse(&name, "not a \"db.table\" name");
            return Ok(());
        };
        if id == self.signal || !self.source.includes(&id) {
            self.refuse(
                &name,
                "not captured by this pipeline (source.databases / tables / exclude_*), or the signal table",
            );
            return Ok(());
        }
        let mut ctl = self.take_ctl().await?;
        let shape = snapshot_rows::describe(&mut ctl, &id, self.cfg.key_columns.get(&name)).await;
        self.ctl = Some(ctl);
        let shape = match shape {
            Ok(s) => s,
            Err(e) if !e.is_transient() => {
                self.refuse(&name, &e.to_string());
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        if shape.key.is_empty() {
            tracing::error!(table = %name,
                "incremental snapshot refused: the table has no primary key. Either give it one, set snapshot.key_columns for it (columns that identify a row, NOT NULL), or take an initial snapshot (tidemark reset, snapshot.mode = initial)");
            self.refuse(&name, "");
            return Ok(());
        }
        if let Err(why) = shape.chunkable() {
            self.refuse(
                &name,
                &format!("{why}; set snapshot.key_columns to other columns that identify a row"),
            );
            return Ok(());
        }
        if let Some(f) = &filter {
            let refused = match filter::check(&name, f, Dialect::Mysql) {
                Err(e) => Some(e.to_string()),
                Ok(()) => {
                    let mut ctl = self.take_ctl().await?;
                    let checked = check_filter(&mut ctl, &id, f).await;
                    self.ctl = Some(ctl);
                    checked?.err().map(|reason| {
                        FilterError::Invalid {
                            table: name.clone(),
                            filter: f.clone(),
                            reason: format!("the server refused it: {reason}"),
                        }
                        .to_string()
                    })
                }
            };
            if let Some(why) = refused {
                let f = filter.clone();
                self.entry(&name, |t| t.filter = f);
                self.fail(&name, filter.as_deref(), &why);
                return Ok(());
            }
        }
        // A filtered table's estimate is the optimizer's for the filter (`snapshot/estimate.rs`).
        let estimate = match &filter {
            None => shape.estimate,
            Some(f) => {
                let mut ctl = self.take_ctl().await?;
                let estimated = filter_estimate(&mut ctl, &id, f).await;
                self.ctl = Some(ctl);
                match estimated? {
                    Ok(rows) => rows,
                    Err(why) => {
                        tracing::warn!(table = %name, estimate = shape.estimate,
                            "incremental snapshot: no estimate of the filter's rows ({why}); the estimate is the whole table's");
                        shape.estimate
                    }
                }
            }
        };
        let key: Vec<String> = shape
            .key
            .iter()
            .map(|&i| shape.schema.columns[i].name.clone())
            .collect();
        let last_key = match (
            last_key,
            crate::snapshot::ledger::recorded_key(&self.ledger, &name),
        ) {
            (Some(_), Some(was)) if !was.is_empty() && was != key => {
                // A resumed last key is in the recorded key's terms (module traps).
                tracing::warn!(table = %name, old_key = %was.join(", "), new_key = %key.join(", "),
                    "incremental snapshot: the table's key changed since its last chunk; its snapshot starts again from its first key");
                None
            }
            (last_key, _) => last_key,
        };
        let (k, lk, f) = (key.clone(), last_key.clone(), filter.clone());
        let index = self.entry(&name, move |t| {
            if lk.is_none() {
                t.rows = 0;
            }
            t.key = k;
            t.estimate = estimate;
            t.complete = false;
            t.last_key = lk;
            t.filter = f;
            t.error = None;
        });
        let rows = self
            .ledger
            .lock()
            .ok()
            .and_then(|l| {
                l.as_ref()
                    .and_then(|l| l.state.tables.get(index).map(|t| t.rows))
            })
            .unwrap_or(0);
        match &filter {
            Some(f) => tracing::info!(table = %name, estimate, filter = %f, last_key = ?last_key,
                chunk_rows = self.cfg.incremental_chunk_rows,
                "incremental snapshot: table started (the estimate is the optimizer's for the filter)"),
            None => tracing::info!(table = %name, estimate, last_key = ?last_key,
                chunk_rows = self.cfg.incremental_chunk_rows, "incremental snapshot: table started"),
        }
        self.metrics.set_snapshot_running(2);
        self.running = true;
        self.metrics
            .snapshot_rows_remaining
            .get_or_create(&self.metrics.table_labels(&name))
            .set(estimate.saturating_sub(rows) as i64);
        self.active = Some(Active {
            shape,
            name,
            key,
            filter,
            index,
            last_key,
            chunk: 0,
            job: None,
            read: None,
            window: None,
            waiting: None,
            rows,
            chunks: 0,
            estimate,
            started: Instant::now(),
        });
        Ok(())
    }

    /// The active table's primary key is `now`, not the key its chunks are cut on (module
    /// traps): its snapshot starts again from the first key, cut on the catalog's key (read
    /// again: the latest), with that in the ledger once the window-close's transaction ending
    /// at `end` settles (after the old key's chunks); it stops instead when the table has no
    /// key that can cut chunks now.
    async fn rekey(&mut self, now: &[String], end: Position) -> R<()> {
        let Some(a) = self.active.as_ref() else {
            return Ok(());
        };
        let (id, name) = (a.shape.id.clone(), a.name.clone());
        let change = KeyChange::new(&name, &a.key);
        let mut ctl = self.take_ctl().await?;
        let described =
            snapshot_rows::describe(&mut ctl, &id, self.cfg.key_columns.get(&name)).await;
        self.ctl = Some(ctl);
        let shape = match described {
            Ok(shape) => shape,
            Err(e) if e.is_transient() => return Err(e.into()),
            Err(e) => {
                self.fail_active(&change.unreadable(now, "shape", &e));
                return Ok(());
            }
        };
        let key: Vec<String> = shape
            .key
            .iter()
            .map(|&i| shape.schema.columns[i].name.clone())
            .collect();
        if change.is_back(&key) {
            return Ok(());
        }
        if key.is_empty() {
            self.fail_active(&change.no_key());
            return Ok(());
        }
        if let Err(why) = shape.chunkable() {
            self.fail_active(&format!(
                "{}; the new key cannot cut chunks ({why}); set snapshot.key_columns, then {}",
                change.changed(&key),
                change.again()
            ));
            return Ok(());
        }
        let Some(a) = self.active.as_mut() else {
            return Ok(());
        };
        change.restart(&self.ledger, end, a.index, &key, a.rows);
        // The catalog's shape: the next chunk projects it onto the stream's schema
        // (`follow_stream_schema`).
        a.shape = shape;
        a.key = key;
        a.last_key = None;
        a.waiting = None;
        a.rows = 0;
        a.chunks = 0;
        a.started = Instant::now();
        self.metrics
            .snapshot_rows_remaining
            .get_or_create(&self.metrics.table_labels(&name))
            .set(a.estimate as i64);
        Ok(())
    }

    /// Logs why `name` is not snapshotted and closes its ledger entry (a restart must not
    /// try it again).
    fn refuse(&mut self, name: &str, why: &str) {
        if !why.is_empty() {
            tracing::error!(table = %name, "incremental snapshot refused: {why}");
        }
        if let Ok(mut l) = self.ledger.lock() {
            if let Some(l) = l.as_mut() {
                crate::snapshot::ledger::close_table(&mut l.state, name, None);
            }
        }
    }

    /// Stops the active table's snapshot with `why` (as [`Self::fail`]).
    fn fail_active(&mut self, why: &str) {
        if let Some(a) = self.active.take() {
            self.fail(&a.name, a.filter.as_deref(), why);
        }
    }

    /// Stops the snapshot of `name` with `why` (logged, in the ledger and `status`); the
    /// stream and the other tables go on.
    fn fail(&mut self, name: &str, filter: Option<&str>, why: &str) {
        crate::snapshot::ledger::fail_table(&self.ledger, name, filter, why);
    }

    /// The ledger's incremental record of `name` (created, with a fresh incremental record if
    /// the ledger held another kind), changed by `f`; returns its index.
    fn entry(&self, name: &str, f: impl FnOnce(&mut TableProgress)) -> usize {
        let Ok(mut l) = self.ledger.lock() else {
            return 0;
        };
        let state = crate::snapshot::ledger::incremental_record(&mut l);
        let i = match state.tables.iter().position(|t| t.table == name) {
            Some(i) => i,
            None => {
                state.tables.push(TableProgress {
                    table: name.to_string(),
                    ..TableProgress::default()
                });
                state.tables.len() - 1
            }
        };
        f(&mut state.tables[i]);
        i
    }
}

impl MysqlSource {
    /// Passes a decoded transaction through the incremental snapshot (if any).
    pub(super) async fn through_incremental(
        &mut self,
        txn: Transaction,
        decoder: &mut Decoder,
    ) -> Result<Transaction, MysqlSourceError> {
        match self.incremental.as_mut() {
            Some(inc) => inc
                .on_txn(txn, decoder)
                .await
                .map_err(SnapshotError::into_source),
            None => Ok(txn),
        }
    }

    /// Lets the incremental snapshot start or check its chunk (session start, heartbeats).
    pub(super) async fn tick_incremental(
        &mut self,
        decoder: &mut Decoder,
    ) -> Result<(), MysqlSourceError> {
        match self.incremental.as_mut() {
            Some(inc) => inc.tick(decoder).await.map_err(SnapshotError::into_source),
            None => Ok(()),
        }
    }
}

/// A chunk read failed on a column the table no longer has (`ER_BAD_FIELD_ERROR`, 1054).
fn undefined_column(e: &SnapshotError) -> bool {
    match e {
        SnapshotError::Query {
            source: mysql_async::Error::Server(s),
            ..
        } => s.code == 1054,
        _ => false,
    }
}
