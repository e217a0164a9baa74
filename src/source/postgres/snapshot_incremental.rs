//! Incremental snapshots while streaming: Netflix DBLog's watermark method (Debezium's
//! incremental snapshots), driven from inside the Postgres stream.
//!
//! ```text
//!  signal: pg_logical_emit_message(false, 'tidemark.signal', '{"pipeline":"p","snapshot":["public.t"]}')
//!     (`tidemark snapshot --table public.t`) ──stream──► queue the tables
//!  per chunk, on its own connection:
//!     emit 'tidemark.watermark' low:p:N ── SELECT next chunk by key (COPY binary, ORDER BY key
//!     LIMIT incremental_chunk_rows, after the last key) ── emit high:p:N
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
//! - Messages are database-wide: the pipeline name in signals and watermarks keeps two
//!   pipelines on one database apart. They need `messages` (PG 14+).
//! - Tables without a primary key (and no `snapshot.key_columns`) cannot be chunked by key:
//!   they are refused with a message naming the options.
//! - Progress (`last_key` per table) is checkpointed at each chunk's position: a restart
//!   continues after the last chunk every sink has.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tidemark_model::{
    ChangeBatch, ChangeBatchBuilder, Image, Lsn, PgPosition, Position, SnapshotMark, TableId,
    Transaction, TxnItem,
};
use tokio::sync::oneshot;

use super::config::PgConnectConfig;
use super::control::PgControl;
use super::error::PgSourceError;
use super::quote_literal;
use super::snapshot::SnapshotError;
use super::snapshot_copy::{CopyReader, RowError};
use super::snapshot_plan::{self, PlannedTable};
use crate::metrics::Metrics;
use crate::snapshot::ledger::{Completion, LedgerHandle, SnapshotKind, TableProgress};
use crate::snapshot::window::{row_key, take_rows};
use crate::snapshot::SnapshotConfig;

/// Prefix of the logical decoding messages that trigger a snapshot.
pub const SIGNAL_PREFIX: &str = "tidemark.signal";
/// Prefix of the watermark messages.
pub const WATERMARK_PREFIX: &str = "tidemark.watermark";

/// The content of a signal message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signal {
    /// The pipeline that should act (`None`: every pipeline on the database).
    #[serde(default)]
    pub pipeline: Option<String>,
    /// Tables to snapshot incrementally (`schema.table`).
    pub snapshot: Vec<String>,
}

/// Sends a signal (`tidemark snapshot`): returns the message's LSN.
pub async fn send_signal(connect: &PgConnectConfig, signal: &Signal) -> Result<Lsn, PgSourceError> {
    let control = PgControl::connect(connect).await?;
    let body = serde_json::to_string(signal).expect("a Signal serializes");
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
    control: PgControl,
}

struct Active {
    table: PlannedTable,
    index: usize,
    key_cols: Vec<usize>,
    last_key: Option<Vec<String>>,
    chunk: u64,
    reading: Option<oneshot::Receiver<Result<ChunkRead, SnapshotError>>>,
    /// Keys changed in the stream inside the open window.
    window: Option<HashSet<Vec<u8>>>,
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
    pending: VecDeque<(String, Option<Vec<String>>)>,
    active: Option<Active>,
    control: Option<PgControl>,
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
                    tracing::info!(table = %t.table, last_key = ?t.last_key, "resuming the incremental snapshot");
                    pending.push_back((t.table.clone(), t.last_key.clone()));
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
        }
    }

    /// Takes what the stream decoded; returns what to hand to the engine (signals and
    /// watermarks are consumed, a closed window adds its chunk).
    pub async fn on_txn(
        &mut self,
        mut txn: Transaction,
    ) -> Result<Vec<Transaction>, SnapshotError> {
        let mut out = Vec::new();
        let mut keep = Vec::with_capacity(txn.items.len());
        let mut close: Option<Lsn> = None;
        for item in std::mem::take(&mut txn.items) {
            match &item {
                TxnItem::Message(m) if m.prefix == SIGNAL_PREFIX => self.signal(&m.content),
                TxnItem::Message(m) if m.prefix == WATERMARK_PREFIX => {
                    let text = String::from_utf8_lossy(&m.content).to_string();
                    match self.watermark(&text) {
                        Some(true) => {
                            if let Some(a) = self.active.as_mut() {
                                a.window = Some(HashSet::new());
                            }
                        }
                        Some(false) => close = m.position.as_pg().map(|p| p.lsn),
                        None => {}
                    }
                }
                TxnItem::Rows(b) => {
                    self.seen(b);
                    keep.push(item);
                }
                TxnItem::Message(_) => keep.push(item),
            }
        }
        txn.items = keep;
        if !txn.items.is_empty() {
            out.push(txn);
        }
        if let Some(at) = close {
            if let Some(chunk) = self.close_window(at).await? {
                out.push(chunk);
            }
        }
        self.start_next().await?;
        Ok(out)
    }

    fn signal(&mut self, content: &[u8]) {
        let Ok(s) = serde_json::from_slice::<Signal>(content) else {
            tracing::warn!(content = %String::from_utf8_lossy(content), "ignoring a malformed tidemark.signal message");
            return;
        };
        if s.pipeline.as_deref().is_some_and(|p| p != self.pipeline) {
            return;
        }
        for t in s.snapshot {
            tracing::info!(pipeline = %self.pipeline, table = %t, "incremental snapshot requested");
            self.pending.push_back((t, None));
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

    /// Records keys of the active table changed inside the open window.
    fn seen(&mut self, b: &ChangeBatch) {
        let Some(a) = self.active.as_mut() else {
            return;
        };
        let Some(window) = a.window.as_mut() else {
            return;
        };
        if b.schema.table != a.table.id {
            return;
        }
        for row in 0..b.num_rows() {
            for image in [Image::Before, Image::After] {
                if let Some(k) = row_key(b, image, row, &a.key_cols) {
                    window.insert(k);
                }
            }
        }
    }

    /// The chunk minus the keys changed in the window, at the high watermark's position.
    async fn close_window(&mut self, at: Lsn) -> Result<Option<Transaction>, SnapshotError> {
        let (rx, changed) = match self.active.as_mut() {
            Some(a) => (a.reading.take(), a.window.take().unwrap_or_default()),
            None => return Ok(None),
        };
        let Some(rx) = rx else { return Ok(None) };
        let read = rx
            .await
            .map_err(|_| SnapshotError::Setup("incremental chunk reader vanished".into()))??;
        self.control = Some(read.control);
        let Some(a) = self.active.as_mut() else {
            return Ok(None);
        };
        let position = Position::pg(at, at, 0);
        let table_name = a.table.progress.table.clone();
        let mut rows = 0u64;
        let end: Position = PgPosition::end(at, at).into();
        let mut txn = Transaction::new(None, Some(crate::checkpoint::now_ms() * 1000), end);
        if let Some(batch) = read.batch {
            let keep: Vec<bool> = (0..batch.num_rows())
                .map(|r| {
                    row_key(&batch, Image::After, r, &a.key_cols)
                        .is_none_or(|k| !changed.contains(&k))
                })
                .collect();
            let dropped = keep.iter().filter(|k| !**k).count();
            let batch = take_rows(&batch, keep)?;
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
        if let Ok(mut l) = self.ledger.lock() {
            if let Some(l) = l.as_mut() {
                l.register(end, completion);
            }
        }
        self.metrics
            .snapshot_chunk(&table_name, rows, done.then_some(0), None);
        if done {
            tracing::info!(table = %table_name, "incremental snapshot: table done");
            self.active = None;
        }
        Ok(Some(txn))
    }

    /// Starts the next table or chunk when nothing is being read.
    async fn start_next(&mut self) -> Result<(), SnapshotError> {
        if self
            .active
            .as_ref()
            .is_some_and(|a| a.reading.is_some() || a.window.is_some())
        {
            return Ok(());
        }
        if self.active.is_none() {
            let Some((name, last_key)) = self.pending.pop_front() else {
                self.metrics.set_snapshot_running(0);
                return Ok(());
            };
            let control = match self.control.take() {
                Some(c) => c,
                None => PgControl::connect(&self.connect).await?,
            };
            let Some(id) = crate::config::parse_table(&name) else {
                tracing::error!(table = %name, "incremental snapshot: not a schema.table name; skipped");
                self.control = Some(control);
                return Ok(());
            };
            let table = snapshot_plan::describe(&control, &id, &self.cfg).await?;
            self.control = Some(control);
            if table.progress.key.is_empty() {
                tracing::error!(table = %name,
                    "incremental snapshot refused: the table has no primary key. Either give it one, set snapshot.key_columns for it (columns that identify a row, NOT NULL), or take an initial snapshot (tidemark reset, snapshot.mode = initial)");
                return Ok(());
            }
            let key_cols = table
                .progress
                .key
                .iter()
                .filter_map(|k| table.schema.column_index(k))
                .collect();
            let index = self.track(&table, last_key.clone());
            self.metrics.set_snapshot_running(2);
            self.active = Some(Active {
                table,
                index,
                key_cols,
                last_key,
                chunk: 0,
                reading: None,
                window: None,
            });
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
            tag: format!("{}:{}:{}", self.pipeline, self.run, a.chunk),
        };
        tokio::spawn(async move {
            let _ = tx.send(job.run().await);
        });
        a.reading = Some(rx);
        Ok(())
    }

    /// Puts the table into the ledger's incremental record; returns its index there.
    fn track(&self, t: &PlannedTable, last_key: Option<Vec<String>>) -> usize {
        let Ok(mut l) = self.ledger.lock() else {
            return 0;
        };
        let state = crate::snapshot::ledger::incremental_record(&mut l);
        if let Some(i) = state
            .tables
            .iter()
            .position(|x| x.table == t.progress.table)
        {
            state.tables[i].complete = false;
            state.tables[i].last_key = last_key;
            return i;
        }
        state.tables.push(TableProgress {
            last_key,
            ..t.progress.clone()
        });
        state.tables.len() - 1
    }
}

struct ChunkJob {
    control: PgControl,
    table: PlannedTable,
    last_key: Option<Vec<String>>,
    rows: usize,
    tag: String,
}

impl ChunkJob {
    async fn run(self) -> Result<ChunkRead, SnapshotError> {
        let c = &self.control;
        let q = |what: &'static str| {
            let at = c.at().clone();
            move |e| SnapshotError::Postgres(PgSourceError::control(&at, what, e))
        };
        let emit = |kind: &str| {
            format!(
                "SELECT pg_logical_emit_message(false, {}, {})",
                quote_literal(WATERMARK_PREFIX),
                quote_literal(&format!("{kind}:{}", self.tag))
            )
        };
        c.client
            .batch_execute(&emit("low"))
            .await
            .map_err(q("low watermark"))?;
        c.client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(q("chunk begin"))?;
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
            .batch_execute(&emit("high"))
            .await
            .map_err(q("high watermark"))?;
        let batch = if builder.is_empty() {
            None
        } else {
            Some(builder.finish().map_err(|e| read_err(RowError::Model(e)))?)
        };
        let full = batch_is_full(&batch, self.rows);
        Ok(ChunkRead {
            batch,
            last_key: if full { last_key } else { None },
            control: self.control,
        })
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
