//! The Delta Change Data Feed source (`source.kind = "delta"`): follows one Delta table's
//! change feed version by version, from a version or a timestamp, and keeps following.
//!
//! ```text
//! poll: load the newest version ─► for v in next..=newest:
//!          load_cdf(v..=v) ─► CdfConverter (convert.rs) ─► Transaction{end: delta:v:MAX}
//!          ─► queue.send (backpressure) ─► next = v + 1
//! ```
//!
//! A version is one transaction, acknowledged whole, so the checkpoint is always a version's
//! end and a restart resumes at the next version: nothing is read twice into a sink that
//! already committed it, nothing is skipped.
//!
//! # Traps
//! - The feed exists only for versions written with `delta.enableChangeDataFeed = true`
//!   (delta-rs: `ChangeDataNotEnabled`/`ChangeDataNotRecorded`): a definite error naming the
//!   version; start after it with `starting_version`.
//! - Versions without data changes (OPTIMIZE, ADD COLUMN, VACUUM) give empty transactions; they
//!   still advance the checkpoint.
//! - VACUUM on the source table removes the files of old versions; a source that lags behind
//!   the table's retention cannot read them and stops with the object store's error.
//! - Row order inside a version is not defined by Delta; the converter orders deletes, then
//!   updates, then inserts (the version's net effect).

pub mod config;
pub mod convert;

use std::sync::Arc;
use std::time::Duration;

use tidemark_delta::deltalake::datafusion::physical_plan::collect;
use tidemark_delta::deltalake::datafusion::prelude::SessionContext;
use tidemark_delta::deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use tidemark_model::{Position, Transaction};
use tokio::sync::watch;

use crate::engine::queue::QueueSender;
use crate::metrics::Metrics;
pub use config::DeltaSourceConfig;
use convert::CdfConverter;

/// A Delta source failure.
#[derive(Debug, thiserror::Error)]
pub enum DeltaSourceError {
    #[error("delta source {uri}: {op}: {source}")]
    Delta {
        uri: String,
        op: &'static str,
        #[source]
        source: DeltaTableError,
    },
    #[error(transparent)]
    Convert(#[from] convert::ConvertError),
    #[error("delta source {uri}: {message}")]
    Config { uri: String, message: String },
}

impl DeltaSourceError {
    /// Object store and IO errors are transient; the rest (no CDF, bad config) definite.
    pub fn is_transient(&self) -> bool {
        match self {
            DeltaSourceError::Delta { source, .. } => {
                tidemark_delta::error::delta_is_transient(source)
            }
            _ => false,
        }
    }
}

/// Follows one Delta table's change feed into the queue.
pub struct DeltaSource {
    pub config: DeltaSourceConfig,
    pub queue: QueueSender<Arc<Transaction>>,
    pub metrics: Arc<Metrics>,
    pub resume: Option<Position>,
    pub shutdown: watch::Receiver<bool>,
}

impl DeltaSource {
    fn uri(&self) -> String {
        self.config.uri.clone()
    }

    fn delta_err(&self, op: &'static str) -> impl Fn(DeltaTableError) -> DeltaSourceError + '_ {
        move |source| DeltaSourceError::Delta {
            uri: self.uri(),
            op,
            source,
        }
    }

    async fn open(&self) -> Result<DeltaTable, DeltaSourceError> {
        let url = tidemark_delta::writer::root_url(&self.config.uri).map_err(|message| {
            DeltaSourceError::Config {
                uri: self.uri(),
                message,
            }
        })?;
        let mut t = DeltaTableBuilder::from_url(url)
            .map_err(self.delta_err("open"))?
            .with_storage_options(self.config.storage_options.clone().into_iter().collect())
            .build()
            .map_err(self.delta_err("open"))?;
        t.load().await.map_err(self.delta_err("load"))?;
        Ok(t)
    }

    /// The first version to read.
    async fn first_version(&self, table: &DeltaTable) -> Result<u64, DeltaSourceError> {
        match self.resume {
            Some(Position::Delta(p)) if p.index == u32::MAX => return Ok(p.version + 1),
            Some(Position::Delta(p)) => return Ok(p.version),
            Some(other) => {
                return Err(DeltaSourceError::Config {
                    uri: self.uri(),
                    message: format!(
                    "the checkpoint {other} is not a Delta position; `tidemark reset` the pipeline"
                ),
                })
            }
            None => {}
        }
        if let Some(ts) = &self.config.starting_timestamp {
            let at = tidemark_delta::chrono::DateTime::parse_from_rfc3339(ts)
                .map_err(|e| DeltaSourceError::Config {
                    uri: self.uri(),
                    message: format!("starting_timestamp {ts:?}: {e}"),
                })?
                .with_timezone(&tidemark_delta::chrono::Utc);
            let mut t = table.clone();
            return match t.load_with_datetime(at).await {
                // The newest version at or before `at`; the first one after it comes next.
                Ok(()) => Ok(t.version().map_or(0, |v| v + 1)),
                Err(_) => Ok(0),
            };
        }
        Ok(self.config.starting_version.unwrap_or(0))
    }

    /// Reads one version's feed.
    async fn read_version(
        &self,
        table: &DeltaTable,
        v: u64,
    ) -> Result<Vec<arrow_array::RecordBatch>, DeltaSourceError> {
        let ctx = SessionContext::new();
        let plan = table
            .clone()
            .scan_cdf()
            .with_starting_version(v)
            .with_ending_version(v)
            .build(&ctx.state(), None)
            .await
            .map_err(self.delta_err("load_cdf"))?;
        collect(plan, ctx.task_ctx())
            .await
            .map_err(|e| DeltaSourceError::Delta {
                uri: self.uri(),
                op: "read the change feed",
                source: DeltaTableError::Generic(format!("version {v}: {e}")),
            })
    }

    /// Streams until shutdown or a definite error; transient errors retry with backoff.
    pub async fn run(mut self) -> Result<(), DeltaSourceError> {
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.follow().await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_transient() && !*self.shutdown.borrow() => {
                    tracing::warn!(source = %self.config.uri, error = %e, ?backoff, "delta source: retrying");
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
        self.metrics.count_transaction();
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

    async fn follow(&mut self) -> Result<(), DeltaSourceError> {
        let mut table = self.open().await?;
        let mut next = self.first_version(&table).await?;
        let mut converter = CdfConverter::new(
            self.config.table_id(),
            self.config.key_columns.clone(),
            self.config.exclude_columns.clone(),
        );
        tracing::info!(source = %self.config.uri, version = next, "delta source: following the change feed");
        loop {
            if *self.shutdown.borrow() {
                return Ok(());
            }
            table
                .update_incremental(None)
                .await
                .map_err(self.delta_err("refresh"))?;
            while table.version().is_some_and(|newest| next <= newest) {
                let batches = self.read_version(&table, next).await?;
                let txn = converter.transaction(next, &batches)?;
                let bytes = txn.byte_size() as u64;
                self.count(&txn);
                if self.queue.send(Arc::new(txn), bytes).await.is_err() {
                    return Ok(()); // the engine stopped
                }
                self.resume = Some(Position::Delta(tidemark_model::DeltaPosition::end(next)));
                next += 1;
                if *self.shutdown.borrow() {
                    return Ok(());
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.poll_interval) => {}
                _ = self.shutdown.changed() => {}
            }
        }
    }
}
