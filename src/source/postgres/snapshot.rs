//! The Postgres initial snapshot: existing rows, consistent with the stream that follows.
//!
//! ```text
//!  prepare ─ snapshot.mode + checkpoint + slot ─► decide (snapshot/mod.rs)
//!     └─ new slot: CREATE_REPLICATION_SLOT s LOGICAL pgoutput EXPORT_SNAPSHOT
//!          → consistent point C, snapshot "0000000A-00000002-1" (alive while that connection idles)
//!  run ─ plan (tables, schema, key, estimate, key ranges by sampling)
//!     ├─ N readers: BEGIN REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '…'   (all N)
//!     │     → exporter connection closed (every reader holds the snapshot now)
//!     │     loop: next (table, range) → COPY (SELECT … WHERE key range) TO STDOUT (FORMAT binary)
//!     │           → CopyReader → ChangeBatchBuilder (Op::Read) → Piece ─► Emitter ─► queue
//!     └─ then the stream starts at C (stream.rs): commits ≥ C, nothing before, nothing twice
//! ```
//!
//! # Traps
//! - **`EXPORT_SNAPSHOT` lives only until the next command on the replication connection**
//!   (`mod.rs`): the connection stays idle until every reader has imported the snapshot, and
//!   is closed right after; a reader that connects later could not import it.
//! - `SET TRANSACTION SNAPSHOT` must be the first statement of a REPEATABLE READ (or
//!   SERIALIZABLE) transaction.
//! - No table locks: readers take only ACCESS SHARE (plain SELECT); a concurrent `ALTER TABLE`
//!   waits for the snapshot to finish rather than changing a table under it.
//! - A slot that exists without a checkpoint (a crash right after creating it, or a slot
//!   made by hand) has no exported snapshot any more: each reader takes its own snapshot,
//!   later than the slot's position, and the stream replays every change since — rows
//!   changed meanwhile arrive twice (read, then change), the final state is exact. The same
//!   holds for a resumed snapshot (`snapshot/mod.rs` traps).
//! - Keyless tables are cut by ctid (page) ranges only inside the one exported snapshot; a
//!   resumed or unexported read takes them whole.
//! - `FROM ONLY`: a partitioned table's rows are read from its partitions (the publication
//!   lists them, unless `publish_via_partition_root`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tidemark_model::{Lsn, PgPosition, Position, Transaction};
use tokio::sync::mpsc;

use super::config::PgConnectConfig;
use super::control::{PgControl, PublicationTables};
use super::error::PgSourceError;
use super::replication::{ReplicationConnection, SnapshotAction};
use super::snapshot_copy::RowError;
use super::snapshot_plan::{self, PlanError, PlannedTable};
use super::snapshot_reader::Reader;
use super::{format_lsn, parse_lsn};
use crate::checkpoint::{Checkpoint, FileCheckpointStore};
use crate::config::{Config, PostgresSourceConfig};
use crate::engine::queue::QueueSender;
use crate::metrics::Metrics;
use crate::snapshot::emit::{ChunkNumbers, EmitError, Emitter, ReaderMsg};
use crate::snapshot::ledger::{SnapshotCheckpoint, SnapshotKind};
use crate::snapshot::progress::Progress;
use crate::snapshot::{decide, Decision, Found};

/// Why a snapshot failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Postgres(#[from] PgSourceError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("snapshot of {table}, range {range}: {source}")]
    Read {
        table: String,
        range: u32,
        source: RowError,
    },
    #[error("snapshot of {table}, range {range}: {message}")]
    Query {
        table: String,
        range: u32,
        message: String,
    },
    /// The COPY of a range failed on its connection (killed, closed, a server error): as
    /// transient as the connection error it carries.
    #[error("snapshot of {table}, range {range}: {source}")]
    Copy {
        table: String,
        range: u32,
        source: PgSourceError,
    },
    #[error(transparent)]
    Emit(#[from] EmitError),
    /// The catalog's columns of the table no longer fit the stream's schema of it (a DDL the
    /// stream has not decoded yet; incremental snapshots wait for it).
    #[error("incremental snapshot of {table}: {message}")]
    SchemaAhead { table: String, message: String },
    #[error("snapshot chunk: {0}")]
    Model(#[from] tidemark_model::ModelError),
    #[error("snapshot: {0}")]
    Setup(String),
}

impl SnapshotError {
    /// Whether a retry (a new connection) may fix it.
    pub fn is_transient(&self) -> bool {
        match self {
            SnapshotError::Postgres(e)
            | SnapshotError::Plan(PlanError::Postgres(e))
            | SnapshotError::Copy { source: e, .. } => e.is_transient(),
            _ => false,
        }
    }
}

/// What startup decided for a Postgres pipeline.
pub enum Startup {
    /// Stream from the checkpoint or the slot.
    Stream,
    /// `initial_only` with a finished snapshot.
    Done,
    /// Snapshot first.
    Snapshot(Box<Prepared>),
}

/// A snapshot ready to run.
pub struct Prepared {
    /// Holds the exported snapshot until every reader imported it.
    exporter: Option<ReplicationConnection>,
    snapshot_name: Option<String>,
    /// The slot's consistent point: where the stream starts.
    pub start: Lsn,
    resume: Option<SnapshotCheckpoint>,
    /// Stop after the snapshot (`initial_only`).
    pub stop: bool,
    /// The checkpoint's position is gone (`when_needed`): start without it.
    pub discard_checkpoint: bool,
}

fn publication_tables(pg: &PostgresSourceConfig) -> PublicationTables {
    if pg.tables.is_empty() {
        PublicationTables::All
    } else {
        PublicationTables::Tables(
            pg.table_ids()
                .into_iter()
                .map(|t| (t.namespace, t.name))
                .collect(),
        )
    }
}

/// Decides what to do at startup (logged with the reason) and, for a snapshot, creates the
/// slot with an exported snapshot when there is none yet.
pub async fn prepare(
    config: &Config,
    pg: &PostgresSourceConfig,
    connect: &PgConnectConfig,
    checkpoint: Option<&Checkpoint>,
) -> Result<Startup, SnapshotError> {
    let pipeline = &config.pipeline.name;
    let slot = pg.slot_name(pipeline);
    let control = PgControl::connect(connect).await?;
    control.check_server().await?;
    let publication = pg.publication_name(pipeline);
    control
        .ensure_publication(&publication, &publication_tables(pg), pg.create_publication)
        .await?;
    let info = control.slot_info(&slot).await?;
    let snap = checkpoint
        .and_then(|c| c.snapshot.as_ref())
        .filter(|s| s.kind == SnapshotKind::Initial);
    let found = Found {
        checkpoint: checkpoint.is_some(),
        unfinished_snapshot: snap.is_some_and(|s| !s.complete),
        finished_snapshot: snap.is_some_and(|s| s.complete),
        position_available: info
            .as_ref()
            .is_some_and(|i| i.wal_status.as_deref() != Some("lost")),
    };
    let mode = config.snapshot.mode;
    let (decision, reason) = decide(mode, found);
    tracing::info!(pipeline = %pipeline, mode = mode.as_str(), %slot, decision = ?decision, "{reason}");
    let (resume, stop, fresh_slot) = match decision {
        Decision::Stream => return Ok(Startup::Stream),
        Decision::Done => return Ok(Startup::Done),
        Decision::Snapshot { resume: true, stop } => (snap.cloned(), stop, false),
        Decision::Snapshot {
            resume: false,
            stop,
        } => (None, stop, false),
        Decision::Resnapshot { stop } => (None, stop, true),
    };
    if let Some(state) = resume {
        let start = parse_lsn(&state.start).ok_or_else(|| {
            SnapshotError::Setup(format!(
                "checkpoint snapshot start {:?} is not an LSN",
                state.start
            ))
        })?;
        return Ok(Startup::Snapshot(Box::new(Prepared {
            exporter: None,
            snapshot_name: None,
            start: Lsn(start),
            resume: Some(state),
            stop,
            discard_checkpoint: false,
        })));
    }
    if fresh_slot && info.is_some() {
        tracing::warn!(%slot, "dropping the replication slot whose WAL is gone, to snapshot again (when_needed)");
        control.drop_slot(&slot).await?;
    }
    if info.is_some() && !fresh_slot {
        // No exported snapshot for an existing slot (module traps).
        let start = control.ensure_slot(&slot, false).await?.confirmed_flush_lsn;
        tracing::warn!(%slot, lsn = %format_lsn(start),
            "the slot exists but the pipeline has no checkpoint: reading in fresh snapshots; rows changed since the slot's position may arrive twice (read, then change)");
        return Ok(Startup::Snapshot(Box::new(Prepared {
            exporter: None,
            snapshot_name: None,
            start: Lsn(start),
            resume: None,
            stop,
            discard_checkpoint: fresh_slot,
        })));
    }
    if !pg.create_slot {
        return Err(PgSourceError::SlotMissing {
            at: control.at().clone().with_slot(&slot),
        }
        .into());
    }
    let mut conn = ReplicationConnection::connect(connect).await?;
    let created = conn
        .create_logical_slot(&slot, false, SnapshotAction::Export)
        .await?;
    tracing::info!(%slot, lsn = %format_lsn(created.consistent_point), snapshot = ?created.snapshot_name,
        "replication slot created with an exported snapshot");
    Ok(Startup::Snapshot(Box::new(Prepared {
        exporter: Some(conn),
        snapshot_name: created.snapshot_name,
        start: Lsn(created.consistent_point),
        resume: None,
        stop,
        discard_checkpoint: fresh_slot,
    })))
}

/// Everything a snapshot run needs from the pipeline.
pub struct RunContext<'a> {
    pub config: &'a Config,
    pub pg: &'a PostgresSourceConfig,
    pub connect: &'a PgConnectConfig,
    pub store: &'a FileCheckpointStore,
    pub metrics: Arc<Metrics>,
    pub queue: QueueSender<Arc<Transaction>>,
}

impl Prepared {
    /// Reads every table (or what a resumed snapshot has left) onto the queue; returns the
    /// position of the last chunk sent (the stream's resume point), if any.
    pub async fn run(mut self, cx: RunContext<'_>) -> Result<Option<Position>, SnapshotError> {
        let control = PgControl::connect(cx.connect).await?;
        let snap_cfg = &cx.config.snapshot;
        let mut tables = Vec::new();
        let state = match self.resume.take() {
            Some(state) => {
                for tp in &state.tables {
                    let id = crate::config::parse_table(&tp.table).ok_or_else(|| {
                        SnapshotError::Setup(format!("checkpoint names table {:?}", tp.table))
                    })?;
                    let mut t = snapshot_plan::describe(&control, &id, snap_cfg).await?;
                    t.progress = tp.clone();
                    if t.progress.key.is_empty() && !t.progress.complete {
                        // ctid ranges do not survive a new snapshot (module traps).
                        t.progress.bounds.clear();
                        t.progress.done.clear();
                        t.progress.rows = 0;
                    }
                    tables.push(t);
                }
                SnapshotCheckpoint {
                    tables: tables.iter().map(|t| t.progress.clone()).collect(),
                    ..state
                }
            }
            None => {
                let ids = snapshot_plan::tables(
                    &control,
                    &cx.pg.publication_name(&cx.config.pipeline.name),
                    &cx.pg.table_ids(),
                )
                .await?;
                for id in ids {
                    let mut t = snapshot_plan::describe(&control, &id, snap_cfg).await?;
                    if t.progress.key.is_empty() {
                        tracing::warn!(table = %id,
                            "no primary key (and no snapshot.key_columns): the table is read in one piece per snapshot; an interrupted read starts the table over, and incremental snapshots cannot include it");
                    }
                    snapshot_plan::cut(&control.client, &mut t, snap_cfg.range_rows).await?;
                    tables.push(t);
                }
                SnapshotCheckpoint {
                    kind: SnapshotKind::Initial,
                    start: format_lsn(self.start.0),
                    complete: false,
                    tables: tables.iter().map(|t| t.progress.clone()).collect(),
                    started_at_ms: crate::checkpoint::now_ms(),
                    finished_at_ms: None,
                }
            }
        };
        if let Some(name) = &self.snapshot_name {
            add_ctid_ranges(&control, &mut tables, snap_cfg.range_rows).await?;
            tracing::debug!(snapshot = %name, "keyless tables cut by ctid");
        }
        let state = SnapshotCheckpoint {
            tables: tables.iter().map(|t| t.progress.clone()).collect(),
            ..state
        };
        cx.store.track_snapshot(state);
        let total_rows: u64 = tables.iter().map(|t| t.progress.estimate).sum();
        tracing::info!(tables = tables.len(), estimate_rows = total_rows, start = %self.start,
            parallelism = snap_cfg.parallelism, "snapshot started");
        cx.metrics.set_snapshot_running(1);
        let result = self.read_all(&cx, tables).await;
        cx.metrics.set_snapshot_running(0);
        result
    }

    async fn read_all(
        &mut self,
        cx: &RunContext<'_>,
        tables: Vec<PlannedTable>,
    ) -> Result<Option<Position>, SnapshotError> {
        let snap_cfg = &cx.config.snapshot;
        let mut work = VecDeque::new();
        for (i, t) in tables.iter().enumerate() {
            for r in t.progress.remaining() {
                work.push_back((i, r));
            }
        }
        let stats: Vec<(String, u64, u64)> = tables
            .iter()
            .map(|t| {
                (
                    t.progress.table.clone(),
                    t.progress.estimate,
                    t.progress.rows,
                )
            })
            .collect();
        let progress = Progress::new(cx.metrics.clone(), &stats);
        let display = progress.spawn_display(snap_cfg.progress, snap_cfg.progress_interval);
        let start = self.start;
        let mut emitter = Emitter::new(
            cx.queue.clone(),
            cx.store.ledger(),
            Box::new(move |chunk| PgPosition::snapshot(start, chunk).into()),
            ChunkNumbers {
                dir: cx.store.dir().to_path_buf(),
                pipeline: cx.config.pipeline.name.clone(),
                start: format_lsn(start.0),
            },
            Some(crate::checkpoint::now_ms() * 1000),
            tables.iter().map(|t| t.progress.table.clone()).collect(),
            tables
                .iter()
                .map(|t| t.progress.remaining().len() as u32)
                .collect(),
            progress.clone(),
            cx.metrics.clone(),
        );
        let readers = snap_cfg.parallelism.min(work.len()).max(1);
        let work = Arc::new(Mutex::new(work));
        let tables = Arc::new(tables);
        let (tx, mut rx) = mpsc::channel::<Result<ReaderMsg, SnapshotError>>(readers * 2);
        let (imported_tx, mut imported_rx) = mpsc::channel::<()>(readers);
        let chunk_rows = snap_cfg.chunk_rows;
        let max_bytes = (cx.config.pipeline.max_queue_bytes / 8).max(1 << 20) as usize;
        let mut handles = Vec::new();
        for _ in 0..readers {
            let reader = Reader {
                connect: cx.connect.clone(),
                snapshot_name: self.snapshot_name.clone(),
                work: work.clone(),
                tables: tables.clone(),
                tx: tx.clone(),
                imported: imported_tx.clone(),
                chunk_rows,
                max_bytes,
                placeholder: PgPosition::snapshot(start, 0).into(),
                commit_ts_us: Some(crate::checkpoint::now_ms() * 1000),
            };
            handles.push(tokio::spawn(reader.run()));
        }
        drop(tx);
        drop(imported_tx);
        // Every reader imports the snapshot (or fails) before the exporter may go.
        let mut imported = 0;
        while imported < readers {
            tokio::select! {
                got = imported_rx.recv() => match got {
                    Some(()) => imported += 1,
                    None => break,
                },
                msg = rx.recv() => match msg {
                    Some(Ok(m)) => emitter.handle(m).await?,
                    Some(Err(e)) => return Err(e),
                    None => break,
                },
            }
        }
        if let Some(conn) = self.exporter.take() {
            conn.close().await;
        }
        while let Some(msg) = rx.recv().await {
            emitter.handle(msg?).await?;
        }
        for h in handles {
            h.await
                .map_err(|e| SnapshotError::Setup(format!("reader task: {e}")))??;
        }
        emitter.flush().await?;
        let elapsed = display.finish().await;
        let rows = progress.total_rows();
        tracing::info!(
            rows,
            seconds = format!("{:.3}", elapsed.as_secs_f64()),
            rows_per_s = (rows as f64 / elapsed.as_secs_f64().max(1e-3)) as u64,
            "snapshot read; streaming continues from the consistent point"
        );
        Ok(emitter.last_sent())
    }
}

/// Keyless tables larger than a range get ctid page ranges (only inside one snapshot).
async fn add_ctid_ranges(
    control: &PgControl,
    tables: &mut [PlannedTable],
    range_rows: u64,
) -> Result<(), SnapshotError> {
    for t in tables
        .iter_mut()
        .filter(|t| t.progress.key.is_empty() && !t.progress.complete)
    {
        let ranges = t.progress.estimate.div_ceil(range_rows.max(1));
        if ranges <= 1 {
            continue;
        }
        let pages: i64 = control
            .client
            .query_one(
                &format!(
                    "SELECT (pg_relation_size('{}') / current_setting('block_size')::int8)::int8",
                    snapshot_plan::qualified(&t.id).replace('\'', "''")
                ),
                &[],
            )
            .await
            .map_err(|e| PgSourceError::control(control.at(), "snapshot pages", e))?
            .try_get(0)
            .map_err(|e| PgSourceError::control(control.at(), "snapshot pages", e))?;
        let per = (pages as u64).div_ceil(ranges).max(1);
        t.progress.bounds = (1..ranges)
            .map(|i| i * per)
            .take_while(|&p| p < pages as u64)
            .map(|p| vec![format!("({p},0)")])
            .collect();
    }
    Ok(())
}
