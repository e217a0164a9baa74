//! Apache Iceberg sink for Tidemark: mirror tables with position deletes, changelog tables,
//! exactly-once commits.
//!
//! ```text
//! Transaction ─► per table (TableState, table.rs)
//!                 ├─ skip rows at/before the table's recorded position (exactly-once)
//!                 ├─ adopt the schema version (encoder/schema.rs: evolution by field id)
//!                 ├─ mirror:    key index → position deletes + new rows (mirror/)
//!                 │  changelog: one row per change (encoder/rows.rs)
//!                 └─ DataWriter: Parquet data/delete files, pending-files log (writer.rs)
//! commit policy (rows / bytes / interval, at transaction ends) ─► every dirty table:
//!     manifests + manifest list + snapshot{tidemark.position} (commit/snapshot.rs)
//!     ─► catalog compare-and-swap (commit/catalog.rs) ─► Ack (ack.rs) ─► engine checkpoint
//! ```
//!
//! # Exactly-once
//! Each snapshot's summary holds `tidemark.position`, the end of the last source transaction
//! it contains. On start each table reads it back and every change at or before it is
//! skipped, so replay after a crash (from the engine's checkpoint, which is never ahead of
//! the tables) adds nothing twice. A crash before the catalog swap leaves files no snapshot
//! references; they are listed in the table's pending-files log
//! (`metadata/tidemark-pending-{0,1}.json`, two slots, written before each file is created) and deleted on the
//! next start. A source transaction is never split across snapshots of a table.
//!
//! # Traps
//! - iceberg 0.10.1 has no position-delete writer, no row-delta commit and crate-private
//!   transaction actions: manifests, manifest lists and metadata updates are written here on
//!   its public spec types (`commit/`).
//! - Unchanged TOAST is not NULL: the mirror keeps the stored value (mirror/); the changelog
//!   lists the column in `_unchanged`.
//! - One writer per table: the pending-files log and the key index assume no other writer.
//!   Another writer's commit makes ours fail with a conflict (transient; restart reloads).
//! - A transaction touching several tables commits one snapshot per table; they are not
//!   atomic together (Iceberg has no multi-table commit in the SQL catalog), but replay
//!   completes the missing ones.
//! - After any error the sink's in-memory state is unusable: the pipeline restarts it from the
//!   checkpoint (the engine's contract), which is exactly the replay path.

pub mod ack;
pub mod commit;
pub mod config;
pub mod dv;
pub mod encoder;
pub mod error;
pub mod maintenance;
pub mod mirror;
pub mod table;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
#[cfg(test)]
mod tests;
pub mod writer;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tidemark_model::{
    BoxFuture, ChangeBatch, Image, Op, Position, Sink, SinkError, TableId, Transaction, TxnItem,
};

pub use ack::Ack;
pub use commit::catalog::{Catalog, LoadedTable, TableIdent};
pub use commit::snapshot::{CommitStats, SUMMARY_POSITION};
pub use config::{CatalogConfig, IcebergSinkConfig, Mode, RestCatalogConfig, SqlCatalogConfig};
pub use error::IcebergError;
/// The iceberg crate this sink is built on (the Iceberg source reads with the same release).
pub use iceberg;
/// The bitmap crate of deletion vectors (`dv::read_dv` returns its `RoaringTreemap`).
pub use roaring;
use table::TableState;

/// The Iceberg sink.
pub struct IcebergSink {
    name: String,
    config: IcebergSinkConfig,
    catalog: Catalog,
    tables: HashMap<TableId, TableState>,
    ack: Ack,
    pending_rows: u64,
    pending_bytes: u64,
    first_pending: Option<Instant>,
    /// Inside a transaction whose last chunk has not arrived: no commit now.
    mid_transaction: bool,
    /// Statistics of every commit since start.
    pub stats: Vec<CommitStats>,
}

impl IcebergSink {
    /// Connects to the catalog (tables are opened when first written).
    pub async fn new(config: IcebergSinkConfig) -> Result<Self, SinkError> {
        let name = config.sink_name().to_owned();
        let errs = config.validate();
        if !errs.is_empty() {
            let msg = errs
                .iter()
                .map(|(k, m)| format!("{k}: {m}"))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(SinkError::definite(&name, format!("invalid config: {msg}")));
        }
        let catalog = Catalog::connect(&config.catalog, &config.storage)
            .await
            .map_err(|e| e.into_sink_error(&name))?;
        Ok(IcebergSink {
            name,
            config,
            catalog,
            tables: HashMap::new(),
            ack: Ack::default(),
            pending_rows: 0,
            pending_bytes: 0,
            first_pending: None,
            mid_transaction: false,
            stats: Vec::new(),
        })
    }

    /// The catalog (for maintenance and tests).
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    async fn write_txn(&mut self, txn: &Transaction) -> Result<(), IcebergError> {
        for item in &txn.items {
            let TxnItem::Rows(cb) = item else { continue };
            if cb.is_empty() {
                continue;
            }
            self.write_batch(cb).await?;
        }
        self.mid_transaction = !txn.complete;
        if txn.complete {
            self.ack.written(txn.end);
        }
        Ok(())
    }

    async fn write_batch(&mut self, cb: &ChangeBatch) -> Result<(), IcebergError> {
        let table = cb.schema.table.clone();
        if !self.tables.contains_key(&table) {
            let t = TableState::open(&self.catalog, &self.config, &cb.schema).await?;
            self.tables.insert(table.clone(), t);
        }
        let state = self
            .tables
            .get_mut(&table)
            .ok_or_else(|| IcebergError::schema(&table, "table state"))?;
        // Exactly-once: rows the table already has (replay after a restart) are skipped. A
        // recorded position is always a transaction end, so whole transactions are skipped.
        let last = cb.position(cb.num_rows() - 1);
        // INVARIANT: a recorded position is a transaction end, so `r >= last row` holds exactly
        // when this whole transaction is in the table.
        if state.recorded.is_some_and(|r| r >= last) {
            tracing::debug!(%table, position = %last, "already in the table; skipped");
            return Ok(());
        }
        state.adopt(&self.catalog, &cb.schema, &self.config).await?;
        match self.config.mode {
            config::Mode::Mirror => {
                mirror::apply(state, &self.catalog, cb, self.config.max_index_keys).await?
            }
            config::Mode::Changelog => append_changelog(state, cb).await?,
        }
        self.pending_rows += cb.num_rows() as u64;
        self.pending_bytes += cb.byte_size() as u64;
        self.first_pending.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// Whether the commit policy says commit now.
    fn due(&self) -> bool {
        let c = &self.config.commit;
        !self.mid_transaction
            && (self.pending_rows >= c.max_rows
                || self.pending_bytes >= c.max_bytes
                || self
                    .first_pending
                    .is_some_and(|t| t.elapsed() >= c.interval))
    }

    /// Commits every table with pending changes; the new committed position.
    pub async fn commit_all(&mut self) -> Result<Option<Position>, IcebergError> {
        if self.mid_transaction {
            // A transaction's chunks are never split across snapshots.
            return Ok(self.ack.committed());
        }
        let Some(position) = self.ack.last_written() else {
            return Ok(self.ack.committed());
        };
        let mut compact = Vec::new();
        for (id, state) in self.tables.iter_mut() {
            if let Some(stats) = state.commit(&self.catalog, position).await? {
                tracing::info!(sink = %self.name, table = %state.ident(), snapshot = stats.snapshot_id,
                    records = stats.records, position_deletes = stats.position_deletes, %position, "committed");
                self.stats.push(stats);
                let every = self.config.maintenance.compact_every_snapshots;
                if every > 0 && state.since_compact >= every {
                    compact.push(id.clone());
                }
            }
        }
        self.pending_rows = 0;
        self.pending_bytes = 0;
        self.first_pending = None;
        for id in compact {
            if let Some(state) = self.tables.get_mut(&id) {
                maintenance::maintain(&self.catalog, state, &self.config).await?;
            }
        }
        Ok(self.ack.all_committed())
    }
}

/// Changelog mode: every row becomes one appended row (old image for deletes).
async fn append_changelog(state: &mut TableState, cb: &ChangeBatch) -> Result<(), IcebergError> {
    let encoder = state
        .encoder
        .clone()
        .ok_or_else(|| IcebergError::schema(&cb.schema.table, "no encoder"))?;
    let mut start = 0;
    while start < cb.num_rows() {
        let image = |i: usize| {
            if cb.op(i) == Op::Delete {
                Image::Before
            } else {
                Image::After
            }
        };
        let img = image(start);
        let mut end = start + 1;
        while end < cb.num_rows() && image(end) == img {
            end += 1;
        }
        let rows: Vec<u32> = (start as u32..end as u32).collect();
        let batch = encoder.encode(cb, img, &rows)?;
        state.writer.write(&batch, &mut state.files).await?;
        state.pending_rows += rows.len() as u64;
        start = end;
    }
    Ok(())
}

impl Sink for IcebergSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn write<'a>(&'a mut self, txn: Arc<Transaction>) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let name = self.name.clone();
            self.write_txn(&txn)
                .await
                .map_err(|e| e.into_sink_error(&name))?;
            if self.due() {
                self.commit_all()
                    .await
                    .map_err(|e| e.into_sink_error(&name))?;
            }
            Ok(())
        })
    }

    fn flush<'a>(&'a mut self) -> BoxFuture<'a, Result<Option<Position>, SinkError>> {
        Box::pin(async move {
            let name = self.name.clone();
            self.commit_all()
                .await
                .map_err(|e| e.into_sink_error(&name))
        })
    }

    fn committed(&self) -> Option<Position> {
        self.ack.committed()
    }

    fn wants_flush(&self) -> bool {
        self.due() || (self.pending_rows == 0 && self.ack.last_written() != self.ack.committed())
    }
}
