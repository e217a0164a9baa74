//! [`DeltaSink`]: buffers whole source transactions and commits them per table, by the flush
//! policy, each commit carrying its position (`ack.rs`), then runs maintenance.
//!
//! ```text
//! write(txn) ──► open chunks ──(complete)──► sealed ──(wants_flush / flush)──► per table:
//!                                                       skip what the table has (TableAck)
//!                                                       ensure schema (create / add columns)
//!                                                       mirror: reduce → MERGE
//!                                                       changelog: encode → append
//!                                                       txn action + position → commit
//!                                                       optimize / vacuum when due
//! ```
//!
//! # Traps
//! - Only whole transactions are committed: chunks of a long transaction (`complete ==
//!   false`) wait in memory until its last chunk. A transaction is held in memory whole.
//! - A failed flush drops its buffered transactions: the engine stops, and the restart replays
//!   them from the checkpoint; the tables that did commit skip them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use tidemark_model::{BoxFuture, ChangeBatch, Position, Sink, SinkError, TableId, Transaction};
use url::Url;

use crate::ack::{self, TableAck};
use crate::config::{DeltaSinkConfig, TableMode};
use crate::encoder::{changelog, key_columns, mirror::MirrorReducer};
use crate::error::DeltaError;
use crate::writer::{self, maintenance, merge, TableWriter};

/// What one table commit did (delta-rs' metrics, reduced to what we report).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitStats {
    pub table: TableId,
    pub mode: TableMode,
    /// The Delta table version written.
    pub version: u64,
    /// Change rows that went in.
    pub changes: usize,
    /// Rows written: changelog rows, or MERGE inserts + updates + deletes.
    pub rows: usize,
    pub files_added: usize,
    pub duration: Duration,
}

struct TableState {
    writer: TableWriter,
    ack: TableAck,
    data_commits: u64,
}

/// The Delta Lake sink.
pub struct DeltaSink {
    name: String,
    config: DeltaSinkConfig,
    root: Url,
    app_id: String,
    storage: HashMap<String, String>,
    tables: HashMap<TableId, TableState>,
    sealed: Vec<Arc<Transaction>>,
    open: Vec<Arc<Transaction>>,
    sealed_rows: usize,
    sealed_bytes: usize,
    first_sealed: Option<Instant>,
    committed: Option<Position>,
    stats: Vec<CommitStats>,
}

impl DeltaSink {
    /// A sink for `pipeline` (which names the `txn` application id). No IO: tables are opened
    /// when their first change is flushed.
    pub fn new(config: DeltaSinkConfig, pipeline: &str) -> Result<Self, SinkError> {
        let name = config.sink_name().to_owned();
        if let Some((key, msg)) = config.validate().into_iter().next() {
            return Err(SinkError::definite(
                &name,
                format!("invalid config: {key} {msg}"),
            ));
        }
        let root = writer::root_url(&config.root)
            .map_err(|m| SinkError::definite(&name, format!("root {m}")))?;
        Ok(DeltaSink {
            app_id: ack::app_id(pipeline, &name),
            storage: config.storage_options.clone().into_iter().collect(),
            name,
            config,
            root,
            tables: HashMap::new(),
            sealed: Vec::new(),
            open: Vec::new(),
            sealed_rows: 0,
            sealed_bytes: 0,
            first_sealed: None,
            committed: None,
            stats: Vec::new(),
        })
    }

    /// The Delta table URL of a source table.
    pub fn table_url(&self, table: &TableId) -> Result<Url, SinkError> {
        let path = self.config.table(table).path;
        writer::table_url(&self.root, table, path.as_deref())
            .map_err(|m| SinkError::definite(&self.name, format!("table {table}: path {m}")))
    }

    /// Stats of the commits since the last call (benchmarks, tests).
    pub fn take_stats(&mut self) -> Vec<CommitStats> {
        std::mem::take(&mut self.stats)
    }

    /// What a table holds (after it was opened by a flush).
    pub fn table_ack(&self, table: &TableId) -> Option<&TableAck> {
        self.tables.get(table).map(|t| &t.ack)
    }

    fn err(&self, e: DeltaError) -> SinkError {
        if !e.is_transient() {
            tracing::error!(sink = %self.name, error = %e, "delta sink failed");
        }
        e.into_sink_error(&self.name)
    }

    fn buffer(&mut self, txn: Arc<Transaction>) {
        let complete = txn.complete;
        self.open.push(txn);
        if complete {
            for t in self.open.drain(..) {
                self.sealed_rows += t.row_count();
                self.sealed_bytes += t.byte_size();
                self.sealed.push(t);
            }
            self.first_sealed.get_or_insert_with(Instant::now);
        }
    }

    fn due(&self) -> bool {
        let f = &self.config.flush;
        !self.sealed.is_empty()
            && (self.sealed_rows >= f.max_rows
                || self.sealed_bytes >= f.max_bytes
                || self.first_sealed.is_some_and(|t| t.elapsed() >= f.interval))
    }

    async fn table_state(&mut self, id: &TableId) -> Result<&mut TableState, SinkError> {
        if !self.tables.contains_key(id) {
            let url = self.table_url(id)?;
            let mode = self.config.mode_of(id);
            let w = TableWriter::open(id.clone(), url, mode, &self.storage)
                .await
                .map_err(|e| self.err(e))?;
            let ack = ack::read_committed(&w, &self.app_id)
                .await
                .map_err(|e| self.err(e))?;
            tracing::info!(sink = %self.name, table = %id, url = %w.url, mode = mode.as_str(),
                committed = ?ack.position.map(|p| p.to_string()), "delta table opened");
            self.tables.insert(
                id.clone(),
                TableState {
                    writer: w,
                    ack,
                    data_commits: 0,
                },
            );
        }
        self.tables
            .get_mut(id)
            .ok_or_else(|| SinkError::definite("delta", "table state vanished"))
    }

    /// Commits every sealed transaction.
    async fn commit_sealed(&mut self) -> Result<(), SinkError> {
        let Some(end) = self.sealed.last().map(|t| t.end) else {
            return Ok(());
        };
        let txns = std::mem::take(&mut self.sealed);
        self.sealed_rows = 0;
        self.sealed_bytes = 0;
        self.first_sealed = None;
        let mut by_table: BTreeMap<TableId, Vec<ChangeBatch>> = BTreeMap::new();
        for t in &txns {
            for b in t.batches() {
                by_table
                    .entry(b.schema.table.clone())
                    .or_default()
                    .push(b.clone());
            }
        }
        for (id, batches) in by_table {
            self.commit_table(&id, batches, end).await?;
        }
        self.committed = Some(end);
        Ok(())
    }

    async fn commit_table(
        &mut self,
        id: &TableId,
        batches: Vec<ChangeBatch>,
        end: Position,
    ) -> Result<(), SinkError> {
        let started = Instant::now();
        let name = self.name.clone();
        let app_id = self.app_id.clone();
        let maint = self.config.maintenance.clone();
        let configured_key = self.config.table(id).key_columns;
        let state = self.table_state(id).await?;
        // Exactly-once: a batch belongs to one transaction; skip those the table has.
        let batches: Vec<ChangeBatch> = batches
            .into_iter()
            .filter(|b| b.first_position().is_some_and(|p| !state.ack.has(&p)))
            .collect();
        if batches.is_empty() {
            return Ok(());
        }
        let to_sink = |e: DeltaError| e.into_sink_error(&name);
        let prior = state.ack.position;
        let props_meta =
            || ack::commit_properties(&app_id, state.ack.txn_version, false, prior.as_ref());
        let mut last_version = None;
        for b in &batches {
            if last_version == Some(b.schema.version) {
                continue;
            }
            last_version = Some(b.schema.version);
            let key = key_columns(&b.schema, &configured_key);
            state
                .writer
                .ensure(&b.schema, key, &maint, props_meta)
                .await
                .map_err(to_sink)?;
        }
        let next = state.ack.txn_version + 1;
        let props = ack::commit_properties(&app_id, next, true, Some(&end));
        let layout = state.writer.layout().map_err(to_sink)?.clone();
        let delta_err = |op: &'static str| {
            let (id, uri) = (id.clone(), state.writer.url.to_string());
            move |source| DeltaError::Delta {
                table: id.clone(),
                uri: uri.clone(),
                op,
                source: Box::new(source),
            }
        };
        let changes: usize = batches.iter().map(ChangeBatch::num_rows).sum();
        let (rows, files_added) = match layout.mode {
            TableMode::Changelog => {
                let encoded: Vec<RecordBatch> = batches
                    .iter()
                    .map(|b| changelog::encode(&layout, b))
                    .collect::<Result<_, _>>()
                    .map_err(to_sink)?;
                let rows = encoded.iter().map(RecordBatch::num_rows).sum();
                let count = |t: &deltalake::DeltaTable| {
                    t.snapshot().map(|s| s.log_data().num_files()).unwrap_or(0)
                };
                let before = count(&state.writer.table);
                let t = writer::append::append(state.writer.table.clone(), encoded, props)
                    .await
                    .map_err(|e| to_sink(delta_err("append")(e)))?;
                state.writer.table = t;
                // An append only adds files (maintenance runs after this).
                (rows, count(&state.writer.table).saturating_sub(before))
            }
            TableMode::Mirror => {
                let mut reducer = MirrorReducer::new(layout.clone()).map_err(to_sink)?;
                for b in &batches {
                    reducer.push(b).map_err(to_sink)?;
                }
                let stored = match reducer.lookup().map_err(to_sink)? {
                    Some(l) => Some(
                        merge::stored_rows(&state.writer.table, l.keys)
                            .await
                            .map_err(|e| to_sink(delta_err("read stored rows")(e)))?,
                    ),
                    None => None,
                };
                let mb = reducer.finish(stored).map_err(to_sink)?;
                let (t, m) = merge::merge(state.writer.table.clone(), &layout, mb, props)
                    .await
                    .map_err(|e| to_sink(delta_err("merge")(e)))?;
                state.writer.table = t;
                (
                    m.num_target_rows_inserted
                        + m.num_target_rows_updated
                        + m.num_target_rows_deleted,
                    m.num_target_files_added,
                )
            }
        };
        state.ack = TableAck {
            txn_version: next,
            position: Some(end),
        };
        state.data_commits += 1;
        let stats = CommitStats {
            table: id.clone(),
            mode: layout.mode,
            version: state.writer.table.version().unwrap_or(0),
            changes,
            rows,
            files_added,
            duration: started.elapsed(),
        };
        tracing::debug!(sink = %name, table = %id, version = stats.version, changes, rows,
            files_added, ms = stats.duration.as_millis() as u64, "delta commit");
        self.stats.push(stats);
        self.maintain(id).await
    }

    /// Optimize / vacuum when due.
    async fn maintain(&mut self, id: &TableId) -> Result<(), SinkError> {
        let m = self.config.maintenance.clone();
        let app_id = self.app_id.clone();
        let name = self.name.clone();
        let Some(state) = self.tables.get_mut(id) else {
            return Ok(());
        };
        let props = || {
            ack::commit_properties(
                &app_id,
                state.ack.txn_version,
                false,
                state.ack.position.as_ref(),
            )
        };
        let n = state.data_commits;
        let err = |op: &'static str, source| {
            DeltaError::Delta {
                table: id.clone(),
                uri: state.writer.url.to_string(),
                op,
                source: Box::new(source),
            }
            .into_sink_error(&name)
        };
        if m.optimize_every_commits.is_some_and(|k| n % k == 0) {
            let (t, s) =
                maintenance::optimize(state.writer.table.clone(), m.target_file_size, props())
                    .await
                    .map_err(|e| err("optimize", e))?;
            tracing::info!(sink = %name, table = %id, compacted = s.files_compacted, written = s.files_written, "optimized");
            state.writer.table = t;
        }
        if let Some(retention) = m
            .vacuum_retention
            .filter(|_| n % m.vacuum_every_commits == 0)
        {
            let (t, s, ran) = maintenance::vacuum(state.writer.table.clone(), retention, props())
                .await
                .map_err(|e| err("vacuum", e))?;
            if ran != retention {
                tracing::warn!(sink = %name, table = %id, configured = ?retention, table_property = ?ran,
                    "vacuum kept the table's longer delta.deletedFileRetentionDuration");
            }
            tracing::info!(sink = %name, table = %id, deleted = s.files_vacuumed, retention = ?ran, "vacuumed");
            state.writer.table = t;
        }
        Ok(())
    }
}

impl Sink for DeltaSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn write<'a>(&'a mut self, txn: Arc<Transaction>) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            self.buffer(txn);
            // Memory bound: a buffer at twice the byte limit commits without waiting for the
            // engine's tick.
            if self.sealed_bytes >= self.config.flush.max_bytes.saturating_mul(2) {
                self.commit_sealed().await?;
            }
            Ok(())
        })
    }

    fn flush<'a>(&'a mut self) -> BoxFuture<'a, Result<Option<Position>, SinkError>> {
        Box::pin(async move {
            self.commit_sealed().await?;
            Ok(self.committed)
        })
    }

    fn committed(&self) -> Option<Position> {
        self.committed
    }

    fn wants_flush(&self) -> bool {
        self.due()
    }
}

#[cfg(test)]
#[path = "commit_tests.rs"]
mod tests;
