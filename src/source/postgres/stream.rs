//! The PostgreSQL source loop: replication connection → pgoutput decoder → engine queue, and
//! acknowledged positions back to the server.
//!
//! ```text
//!  run ─┬─ session ──► PgControl: check server, publication, slot
//!       │              ReplicationConnection: START_REPLICATION (proto by server version)
//!       │              loop select! {
//!       │                frame      → XLogData → Decoder → Transaction → queue.send(.., bytes).await
//!       │                             keepalive → reply; maybe advance flush when idle
//!       │                status timer / acked changed → Standby Status Update (flush = acked)
//!       │              }
//!       └─ transient error → back off (1 s … 30 s) → new session from the last acked position
//! ```
//!
//! # Traps
//! - The flush LSN we report is the end LSN of the last transaction every sink made durable
//!   (`acked`), never what was merely received: the slot's `confirmed_flush_lsn` becomes it,
//!   and the server may recycle WAL before it.
//! - An idle or filtered database still writes WAL (other databases, checkpoints); without
//!   feedback the slot would retain it forever. When nothing is pending — no open transaction,
//!   no streamed transaction buffered, everything sent also acknowledged — a keepalive's
//!   `wal_end` (the last position the server *sent*) is safe to report as flushed.
//! - After a reconnect the server resends every transaction committed after the slot's
//!   `confirmed_flush_lsn`, which may be behind our checkpoint and behind what this process
//!   already handed to the engine: transactions (and chunks) ending at or before the last one
//!   emitted are dropped here, so sinks see each at most once more after a crash (between the
//!   last checkpoint and the crash), never after a mere reconnect, and never skipped.
//! - A missing slot while a checkpoint exists is a definite error (`SlotLost`), even with
//!   `create_slot = true`: a new slot starts at the current WAL end, so the changes since the
//!   checkpoint would be skipped without a word.
//! - Protocol by server version: 1 before 14, 2 on 14, 3 on 15, 4 from 16. Streaming of
//!   in-progress transactions needs 2+; we never ask for `two_phase`.
//! - `ALTER TYPE ... ADD/DROP ATTRIBUTE` on a composite a table uses sends no Relation message,
//!   so the catalog read for the table may not know a new attribute's type
//!   (`ValueError::StaleComposite`, binary format only): the session is restarted once, whose
//!   Relation messages re-read the catalog; the same error again at the same position is
//!   definite (`catalog.rs` traps).
//! - After a reconnect the server resends every Relation; the new session's decoder continues
//!   the old one's schema versions per table (`Decoder::with_schema_versions`), else the
//!   current columns would come as version 1 again, and sinks cache encodings per version.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tidemark_model::{Op, Position, SchemaVersions, SourceType, Transaction};
use tidemark_pgoutput::decoder::{Decoder, DecoderError, DecoderOptions, RelationCatalog, Step};
use tidemark_pgoutput::replication::ReplicationMessage;
use tokio::sync::watch;

use super::catalog::RelationCatalog as PgRelationCatalog;
use super::config::PgConnectConfig;
use super::control::{PgControl, PublicationTables};
use super::error::PgSourceError;
use super::replication::ReplicationConnection;
use super::spill::SpillStore;
use crate::config::PostgresSourceConfig;
use crate::engine::queue::{QueueClosed, QueueSender};
use crate::metrics::Metrics;

/// Why the source stopped.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Postgres(#[from] PgSourceError),
    #[error(transparent)]
    Decode(#[from] DecoderError),
    #[error("spill file for streamed transactions: {0}")]
    Spill(#[from] std::io::Error),
    #[error(transparent)]
    QueueClosed(#[from] QueueClosed),
    #[error("incremental snapshot: {0}")]
    Snapshot(#[from] super::snapshot::SnapshotError),
}

impl SourceError {
    /// Whether a new session may fix it.
    pub fn is_transient(&self) -> bool {
        match self {
            SourceError::Postgres(e) => e.is_transient(),
            SourceError::Decode(e) => e.is_transient(),
            SourceError::Spill(_) | SourceError::QueueClosed(_) => false,
            SourceError::Snapshot(e) => e.is_transient(),
        }
    }

    /// A value did not match the catalog's description of its type (a composite altered
    /// without a Relation message, `catalog.rs` traps): a new session re-reads the catalog.
    fn is_stale_catalog(&self) -> bool {
        matches!(self, SourceError::Decode(DecoderError::Model { source, .. }) if source.is_stale_catalog())
    }
}

/// Everything the source needs from the pipeline.
pub struct PgSource {
    pub config: PostgresSourceConfig,
    pub connect: PgConnectConfig,
    pub pipeline: String,
    pub metrics: Arc<Metrics>,
    pub queue: QueueSender<Arc<Transaction>>,
    /// Positions every sink has durably committed (from the engine's checkpointer).
    pub acked: watch::Receiver<Option<Position>>,
    /// The checkpoint the pipeline resumed from.
    pub resume: Option<Position>,
    /// Where streamed transactions spill past `spill_memory` bytes.
    pub spill_dir: PathBuf,
    pub spill_memory: usize,
    /// Stop cleanly when this turns true.
    pub shutdown: watch::Receiver<bool>,
    /// Incremental snapshots (signals and watermarks in the stream; `snapshot_incremental.rs`).
    pub incremental: Option<super::snapshot_incremental::Incremental>,
}

const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Rows per chunk of a long transaction: a few MB of Arrow for typical rows, so the queue,
/// the chunk being decoded and the one a sink is writing stay small next to the spill budget.
const MAX_CHUNK_ROWS: usize = 16_384;

impl PgSource {
    /// Streams until shutdown or a definite error; transient errors reconnect with backoff.
    pub async fn run(mut self) -> Result<(), SourceError> {
        let mut backoff = Duration::from_secs(1);
        // The end of the last transaction (or chunk) handed to the engine, across sessions: a
        // new session resends from the slot's confirmed_flush_lsn (module traps).
        let mut emitted = self.resume;
        // Where the last stale-catalog error happened: a second one there is definite.
        let mut stale_at: Option<Option<Position>> = None;
        // Schema versions per table, across sessions (`Decoder::with_schema_versions`).
        let mut versions = SchemaVersions::default();
        loop {
            let started = tokio::time::Instant::now();
            match self.session(&mut emitted, &mut versions).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_stale_catalog() && stale_at != Some(emitted) => {
                    // The new session's Relation messages make us read the catalog again.
                    stale_at = Some(emitted);
                    self.metrics.set_streaming(false);
                    tracing::warn!(error = %e, "postgres source: a type changed since the catalog was read; reconnecting to re-read it");
                }
                Err(e) if e.is_transient() && !*self.shutdown.borrow() => {
                    self.metrics.set_streaming(false);
                    // A session that streamed for a while earns a fresh backoff.
                    if started.elapsed() > Duration::from_secs(60) {
                        backoff = Duration::from_secs(1);
                    }
                    tracing::warn!(error = %e, retry_in = ?backoff, "postgres source: transient error; reconnecting");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = self.shutdown.changed() => return Ok(()),
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn session(
        &mut self,
        emitted: &mut Option<Position>,
        versions: &mut SchemaVersions,
    ) -> Result<(), SourceError> {
        let control = PgControl::connect(&self.connect).await?;
        let server = control.check_server().await?;
        let slot = self.config.slot_name(&self.pipeline);
        let publication = self.config.publication_name(&self.pipeline);
        let tables = if self.config.tables.is_empty() {
            PublicationTables::All
        } else {
            PublicationTables::Tables(
                self.config
                    .table_ids()
                    .into_iter()
                    .map(|t| (t.namespace, t.name))
                    .collect(),
            )
        };
        control
            .ensure_publication(&publication, &tables, self.config.create_publication)
            .await?;
        let acked_lsn = self.acked_end_lsn();
        // With a checkpoint, a missing slot means the WAL since the checkpoint is gone:
        // creating a new slot would silently skip those changes.
        let ensured = match control
            .ensure_slot(&slot, self.config.create_slot && acked_lsn.is_none())
            .await
        {
            Err(PgSourceError::SlotMissing { at }) if acked_lsn.is_some() => {
                return Err(PgSourceError::SlotLost {
                    at,
                    reason: format!(
                        "the slot does not exist but the pipeline has a checkpoint at {}: the \
                         changes since were not retained; run `tidemark reset` to start over",
                        tidemark_model::Lsn(acked_lsn.unwrap_or(0))
                    ),
                }
                .into())
            }
            other => other?,
        };
        if ensured.created {
            tracing::info!(%slot, lsn = %tidemark_model::Lsn(ensured.confirmed_flush_lsn), "replication slot created");
        }
        let protocol = protocol_for(server.server_version_num);
        let streaming = self.config.streaming && protocol >= 2;
        let proto = protocol.to_string();
        let publication_names = format!("\"{}\"", publication.replace('"', "\"\""));
        let mut options: Vec<(&str, &str)> = vec![
            ("proto_version", &proto),
            ("publication_names", &publication_names),
        ];
        if server.server_version_num >= 140_000 {
            options.push(("messages", "true"));
            if self.config.binary {
                options.push(("binary", "true"));
            }
        }
        if streaming {
            options.push(("streaming", "on"));
        }
        let start_lsn = acked_lsn.unwrap_or(0);
        let mut conn = ReplicationConnection::connect(&self.connect).await?;
        control
            .start_replication_reclaiming(
                &mut conn,
                &slot,
                start_lsn,
                &options,
                self.config.terminate_stale,
            )
            .await?;
        self.metrics.set_streaming(true);
        tracing::info!(%slot, protocol, streaming, "streaming changes");
        let decoder = Decoder::new(DecoderOptions {
            protocol,
            max_chunk_rows: MAX_CHUNK_ROWS,
            ..DecoderOptions::default()
        })
        .with_schema_versions(std::mem::take(versions));
        let mut state = Session {
            decoder,
            spill: SpillStore::new(&self.spill_dir, self.spill_memory),
            last_received: start_lsn,
            last_sent_end: acked_lsn.unwrap_or(0),
            flushed: acked_lsn.unwrap_or(0),
            emitted: *emitted,
            last_status: tokio::time::Instant::now(),
        };
        let result = self.stream(&control, &mut conn, &mut state, &slot).await;
        *emitted = state.emitted;
        *versions = state.decoder.take_schema_versions();
        if result.is_ok() {
            let _ = conn.stop().await;
            conn.close().await;
        }
        result
    }

    async fn stream(
        &mut self,
        control: &PgControl,
        conn: &mut ReplicationConnection,
        state: &mut Session,
        slot: &str,
    ) -> Result<(), SourceError> {
        let mut status = tokio::time::interval(self.config.status_interval);
        status.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut lag_check = tokio::time::interval(Duration::from_secs(10));
        loop {
            tokio::select! {
                frame = conn.recv() => {
                    let Some(frame) = frame? else { return Ok(()) };
                    self.frame(control, conn, state, &frame).await?;
                }
                _ = status.tick() => self.send_status(conn, state, false).await?,
                changed = self.acked.changed() => {
                    if changed.is_ok() {
                        self.send_status(conn, state, false).await?;
                    }
                }
                _ = lag_check.tick() => {
                    if let Ok(Some(info)) = control.slot_info(slot).await {
                        self.metrics.set_slot_lag_bytes(info.lag_bytes.unwrap_or(0));
                    }
                }
                _ = self.shutdown.changed() => {
                    self.send_status(conn, state, false).await?;
                    return Ok(());
                }
            }
        }
    }

    async fn frame(
        &mut self,
        control: &PgControl,
        conn: &mut ReplicationConnection,
        state: &mut Session,
        frame: &[u8],
    ) -> Result<(), SourceError> {
        match ReplicationMessage::parse(frame).map_err(DecoderError::from)? {
            ReplicationMessage::PrimaryKeepalive(k) => {
                state.last_received = state.last_received.max(k.wal_end);
                // Idle: everything sent was acknowledged, nothing open — the keepalive's
                // position is safe to report (module traps).
                let idle = !state.decoder.in_transaction()
                    && !state.decoder.in_stream()
                    && state.spill.is_empty()
                    && state.flushed >= state.last_sent_end;
                if idle && k.wal_end > state.flushed {
                    state.flushed = k.wal_end;
                    state.last_sent_end = state.last_sent_end.max(k.wal_end);
                }
                if k.reply_requested {
                    self.send_status(conn, state, false).await?;
                }
            }
            ReplicationMessage::XLogData(x) => {
                state.last_received = state.last_received.max(x.wal_end);
                if let Some(oid) = state.decoder.relation_oid(x.data) {
                    let catalog = control.relation_catalog(oid).await?;
                    state
                        .decoder
                        .register_catalog(oid, to_decoder_catalog(&catalog));
                }
                match state.decoder.decode(x.wal_start, x.data)? {
                    Step::Nothing => {}
                    Step::Emitted(txn) => self.emit(conn, state, txn, x.data.len()).await?,
                    Step::Buffer { xid, subxid } => {
                        state.spill.push(xid, subxid, x.wal_start, x.data)?
                    }
                    Step::StreamAbort(a) => state.spill.abort(a.xid, a.subxid),
                    Step::StreamCommit(c) => {
                        // One message at a time from the spill file, each chunk handed to the
                        // queue (which may make us wait) before the next is decoded: a
                        // transaction larger than memory passes with bounded memory.
                        let mut reader = state.spill.take(c.xid)?;
                        tracing::debug!(xid = c.xid, commit_lsn = %tidemark_model::Lsn(c.commit_lsn),
                            "replaying streamed transaction");
                        state.decoder.begin_stream_replay(&c);
                        let mut bytes = 0;
                        while let Some((lsn, data)) = reader.next_message()? {
                            bytes += data.len();
                            if let Some(chunk) = state.decoder.replay_message(lsn, &data)? {
                                self.emit(conn, state, chunk, std::mem::take(&mut bytes))
                                    .await?;
                            }
                        }
                        let txn = state.decoder.finish_stream_replay(&c)?;
                        self.emit(conn, state, txn, bytes).await?;
                    }
                }
            }
        }
        Ok(())
    }

    async fn emit(
        &mut self,
        conn: &mut ReplicationConnection,
        state: &mut Session,
        txn: Transaction,
        wire_bytes: usize,
    ) -> Result<(), SourceError> {
        if state.emitted.is_some_and(|e| txn.end <= e) {
            // Durable downstream before a restart, or handed to the engine before a reconnect
            // (module traps). Chunks of a long transaction end at the same rows every time
            // (every `max_chunk_rows` rows), so a resent chunk is recognised too.
            return Ok(());
        }
        if txn.complete {
            if let Some(inc) = self.incremental.as_mut() {
                // Signals and watermarks are consumed; a closed window adds its chunk.
                let end = txn.end;
                let txns = inc.on_txn(txn, &mut state.decoder).await?;
                if txns.is_empty() {
                    state.emitted = Some(end);
                }
                for t in txns {
                    self.send_txn(conn, state, t, wire_bytes).await?;
                }
                return Ok(());
            }
        }
        self.send_txn(conn, state, txn, wire_bytes).await
    }

    async fn send_txn(
        &mut self,
        conn: &mut ReplicationConnection,
        state: &mut Session,
        txn: Transaction,
        wire_bytes: usize,
    ) -> Result<(), SourceError> {
        let end_lsn = end_lsn(&txn.end);
        for batch in txn.batches() {
            let table = batch.schema.table.to_string();
            let rows = batch.num_rows().max(1) as u64;
            for op in [Op::Insert, Op::Update, Op::Delete, Op::Truncate, Op::Read] {
                let n = (0..batch.num_rows()).filter(|&i| batch.op(i) == op).count() as u64;
                if n > 0 {
                    let bytes = wire_bytes as u64 * n / rows;
                    self.metrics
                        .count_source(&table, op.debezium_code(), n, bytes);
                }
            }
        }
        if txn.complete {
            self.metrics.count_transaction();
            state.last_sent_end = state.last_sent_end.max(end_lsn);
        }
        let bytes = txn.byte_size() as u64;
        let end = txn.end;
        // Keep the walsender alive while we are busy here (replaying a long streamed
        // transaction, or waiting for a slow sink): it drops a client silent for
        // wal_sender_timeout (trap "feedback at least every wal_sender_timeout / 2").
        let interval = self.config.status_interval;
        if state.last_status.elapsed() >= interval {
            status_update(&mut self.acked, conn, state, false).await?;
        }
        let send = self.queue.send(Arc::new(txn), bytes);
        tokio::pin!(send);
        loop {
            let due = state.last_status + interval;
            tokio::select! {
                sent = &mut send => {
                    sent?;
                    break;
                }
                _ = tokio::time::sleep_until(due) => {
                    status_update(&mut self.acked, conn, state, false).await?;
                }
            }
        }
        state.emitted = Some(end);
        Ok(())
    }

    fn acked_end_lsn(&self) -> Option<u64> {
        let acked = *self.acked.borrow();
        acked.or(self.resume).map(|p| end_lsn(&p))
    }

    async fn send_status(
        &mut self,
        conn: &mut ReplicationConnection,
        state: &mut Session,
        reply: bool,
    ) -> Result<(), SourceError> {
        status_update(&mut self.acked, conn, state, reply).await
    }
}

/// Sends a Standby Status Update: flush = the newest position every sink made durable.
async fn status_update(
    acked: &mut watch::Receiver<Option<Position>>,
    conn: &mut ReplicationConnection,
    state: &mut Session,
    reply: bool,
) -> Result<(), SourceError> {
    if let Some(acked) = *acked.borrow_and_update() {
        state.flushed = state.flushed.max(end_lsn(&acked));
    }
    let write = state.last_received.max(state.flushed);
    conn.send_standby_status(write, state.flushed, state.flushed, reply)
        .await?;
    state.last_status = tokio::time::Instant::now();
    Ok(())
}

struct Session {
    decoder: Decoder,
    spill: SpillStore,
    /// Highest WAL position received (write LSN of the status update).
    last_received: u64,
    /// End LSN of the last complete transaction handed to the engine.
    last_sent_end: u64,
    /// The flush LSN reported to the server.
    flushed: u64,
    /// End of the last transaction or chunk handed to the engine (by any session).
    emitted: Option<Position>,
    /// When the last Standby Status Update went out.
    last_status: tokio::time::Instant,
}

/// pgoutput protocol for a server version (module traps).
pub fn protocol_for(server_version_num: u32) -> u32 {
    match server_version_num {
        v if v >= 160_000 => 4,
        v if v >= 150_000 => 3,
        v if v >= 140_000 => 2,
        _ => 1,
    }
}

/// The WAL position to report for a position: a transaction's end LSN, or the event's LSN.
fn end_lsn(p: &Position) -> u64 {
    match p {
        Position::Postgres(pg) => pg.lsn.0,
        // Never reaches a Postgres source; 0 (InvalidXLogRecPtr) reports nothing.
        _ => 0,
    }
}

/// What the decoder needs from the catalog: key columns and resolved types.
fn to_decoder_catalog(c: &PgRelationCatalog) -> RelationCatalog {
    let mut out = RelationCatalog {
        primary_key: c.primary_key.clone(),
        ..Default::default()
    };
    for col in &c.columns {
        if !col.nullable {
            out.not_null.insert(col.name.clone());
        }
        if let Some(t) = resolve_type(col) {
            out.types.insert(col.name.clone(), t);
            out.type_oids.insert(col.name.clone(), col.type_oid);
        }
    }
    out
}

pub(crate) fn resolve_type(col: &super::catalog::CatalogColumn) -> Option<SourceType> {
    if let Some(t) = &col.structured {
        return Some(t.clone());
    }
    let scalar = |oid: u32, typmod: i32| -> Option<SourceType> {
        match &col.enum_labels {
            Some(labels) => Some(SourceType::pg_enum(
                oid,
                col.type_name.trim_start_matches('_'),
                labels.clone(),
            )),
            None => SourceType::pg_builtin(oid, typmod),
        }
    };
    if col.is_array {
        let element_oid = col.element_type_oid?;
        let element = scalar(element_oid, col.typmod)?;
        return Some(SourceType::pg_array(
            col.type_oid,
            col.type_name.clone(),
            element,
        ));
    }
    if col.base_type_oid != col.type_oid {
        // A domain: described by its base type.
        return scalar(col.base_type_oid, col.typmod);
    }
    scalar(col.type_oid, col.typmod)
}
