//! The engine: takes committed transactions off the byte-bounded queue, hands each to every
//! sink, and checkpoints the position every sink has durably committed.
//!
//! ```text
//!  source ──QueueSender::send(txn, bytes)──► queue ──► Engine::run
//!                                                        ├─ sink.write(txn)   (each sink, in order)
//!                                                        └─ every checkpoint.interval:
//!                                                             sink.flush() → committed position
//!                                                             min over sinks → FileCheckpointStore::save
//!                                                             → acked.send(position) → source reports it upstream
//! ```
//!
//! # Invariants
//! - A position is sent upstream only after it is in the checkpoint store, and it is in the store
//!   only after every sink's `flush` returned it (ARCHITECTURE.md, Delivery).
//! - Transactions reach every sink in commit order; the queue's permit is held until every sink
//!   took the transaction, so memory stays bounded however slow a sink is.
//! - A sink error stops the engine (the caller restarts from the checkpoint). Retrying inside a
//!   sink is the sink's business; the engine never skips a transaction.
//! - A [`CheckpointNow`] request (a snapshot about to retry in-process, `snapshot/retry.rs`)
//!   covers everything queued when it arrives: the engine writes what is queued first, then
//!   flushes every sink and saves. The requester sends nothing meanwhile, so "queued when it
//!   arrives" is "everything it sent".

pub mod queue;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tidemark_model::{Position, Sink, SinkError, Transaction};
use tokio::sync::{mpsc, oneshot, watch};

use crate::checkpoint::{CheckpointError, FileCheckpointStore};
use crate::metrics::Metrics;
use queue::QueueReceiver;

/// Why the engine stopped.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("sink {sink}: {source}")]
    Sink { sink: String, source: SinkError },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

impl EngineError {
    /// Whether restarting from the checkpoint may fix it.
    pub fn is_transient(&self) -> bool {
        match self {
            EngineError::Sink { source, .. } => source.is_transient(),
            EngineError::Checkpoint(_) => false,
        }
    }
}

/// A request to write everything queued, flush every sink and checkpoint now; answered with
/// the position saved (the latest checkpoint, `None` when no sink has committed anything).
pub type CheckpointNow = oneshot::Sender<Option<Position>>;

/// Runs the sinks of one pipeline.
pub struct Engine {
    sinks: Vec<Box<dyn Sink>>,
    store: FileCheckpointStore,
    metrics: Arc<Metrics>,
    interval: Duration,
    /// Position and commit time of each transaction written but not yet checkpointed, oldest
    /// first: the lag metric needs the commit time of the newest checkpointed one.
    pending: VecDeque<(Position, Option<i64>)>,
    last_saved: Option<Position>,
}

impl Engine {
    /// An engine over `sinks`; `last_saved` is the checkpoint the pipeline resumed from.
    pub fn new(
        sinks: Vec<Box<dyn Sink>>,
        store: FileCheckpointStore,
        metrics: Arc<Metrics>,
        interval: Duration,
        last_saved: Option<Position>,
    ) -> Self {
        Self {
            sinks,
            store,
            metrics,
            interval,
            pending: VecDeque::new(),
            last_saved,
        }
    }

    /// Consumes the queue until it closes (the source ended), checkpointing as it goes, when
    /// asked on `requests`, and once more at the end. Each new checkpoint is published on
    /// `acked`.
    pub async fn run(
        mut self,
        mut rx: QueueReceiver<Arc<Transaction>>,
        acked: watch::Sender<Option<Position>>,
        mut requests: mpsc::Receiver<CheckpointNow>,
    ) -> Result<(), EngineError> {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut requests_open = true;
        loop {
            tokio::select! {
                next = rx.recv() => match next {
                    Some(queued) => self.write(queued.item).await?,
                    None => break,
                },
                _ = tick.tick() => self.checkpoint(&acked, false).await?,
                request = requests.recv(), if requests_open => match request {
                    Some(reply) => {
                        // INVARIANT (module doc): what was queued before the request is written
                        // before the forced checkpoint.
                        while let Some(queued) = rx.try_recv() {
                            self.write(queued.item).await?;
                        }
                        self.checkpoint(&acked, true).await?;
                        let _ = reply.send(self.last_saved);
                    }
                    None => requests_open = false,
                },
            }
        }
        self.checkpoint(&acked, true).await
    }

    async fn write(&mut self, txn: Arc<Transaction>) -> Result<(), EngineError> {
        let rows = txn.row_count() as u64;
        for sink in &mut self.sinks {
            sink.write(txn.clone())
                .await
                .map_err(|source| EngineError::Sink {
                    sink: sink.name().to_string(),
                    source,
                })?;
            self.metrics.count_sink(sink.name(), rows);
        }
        if txn.complete {
            self.pending.push_back((txn.end, txn.commit_ts_us));
        }
        Ok(())
    }

    /// Flushes the sinks (every one if `force`, else those that [`Sink::wants_flush`]) and
    /// persists the lowest position all of them committed.
    pub async fn checkpoint(
        &mut self,
        acked: &watch::Sender<Option<Position>>,
        force: bool,
    ) -> Result<(), EngineError> {
        let mut lowest: Option<Position> = None;
        for sink in &mut self.sinks {
            let committed = if force || sink.wants_flush() {
                sink.flush().await.map_err(|source| EngineError::Sink {
                    sink: sink.name().to_string(),
                    source,
                })?
            } else {
                sink.committed()
            };
            match committed {
                // A sink with nothing committed yet holds everything back.
                None => return Ok(()),
                Some(p) => {
                    if lowest.as_ref().is_none_or(|l| p < *l) {
                        lowest = Some(p);
                    }
                }
            }
        }
        let Some(position) = lowest else {
            return Ok(());
        };
        if self.last_saved.as_ref().is_some_and(|s| position <= *s) {
            return Ok(());
        }
        self.store.save(&position)?;
        let mut commit_ts = None;
        while self.pending.front().is_some_and(|(p, _)| *p <= position) {
            commit_ts = self
                .pending
                .pop_front()
                .and_then(|(_, ts)| ts)
                .or(commit_ts);
        }
        self.metrics.checkpointed(commit_ts);
        tracing::debug!(%position, "checkpoint saved");
        self.last_saved = Some(position);
        acked.send_replace(Some(position));
        Ok(())
    }
}
