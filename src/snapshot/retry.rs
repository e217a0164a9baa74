//! An initial snapshot that meets a transient error (a reader's connection killed, the server
//! restarting) retries in the same process, the way a restart would resume it, instead of
//! stopping the pipeline.
//!
//! ```text
//!  source snapshot run ── transient error ──► engine: write what is queued, flush, checkpoint
//!      ▲                                         (the ledger settles the ranges now durable)
//!      │                                     ──► warn + tidemark_snapshot_retries_total + /readyz
//!      │                                     ──► back off 1 s, doubling to 30 s (shutdown ends it)
//!      └── Startup::Snapshot{resume} ◄── decide(mode, latest checkpoint) ◄── source's prepare
//!          (or Stream / Done when the checkpoint says the snapshot is complete)
//! ```
//!
//! The engine task (sinks, queue, checkpointer) stays alive across the retry: only the source's
//! readers are new. What a retry re-reads is exactly what a restart after the same error would:
//! the ranges not recorded as done at the forced checkpoint.
//!
//! # Invariants
//! - The forced checkpoint comes after the failed run ended: every chunk it sent is in the queue
//!   and covered (`engine` module doc, `CheckpointNow`); ranges it completed are recorded as done
//!   only at or after their last chunk's position (`snapshot` module invariants), because the
//!   ledger settles registrations at the saved position as for any checkpoint.
//! - The resumed run replaces the ledger (`track_snapshot`) with the state read back from that
//!   checkpoint; registrations of chunks the failed run held back and never sent are dropped
//!   with it, so their ranges are read again. Its chunks take fresh numbers (`ledger::reserve`),
//!   so they sort after everything the failed run sent.
//!
//! # Traps
//! - Rows of ranges in flight at the error are sent again by the resumed run (at-least-once, as
//!   after a restart; `snapshot` module traps); keyless tables start over.
//! - A retry never starts a new snapshot whose positions could sort before what the engine
//!   already checkpointed (a slot or binlog lost meanwhile, `when_needed`): that is a definite
//!   error, and a restart decides.

use std::time::Duration;

use tokio::sync::watch;

use crate::engine::queue::QueueSender;
use crate::engine::{CheckpointNow, EngineError};
use crate::metrics::Metrics;
use crate::pipeline::{race_engine, Raced};

/// The first wait, as the streams' reconnect loops.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait, as the streams' reconnect loops (`MAX_BACKOFF` in `stream.rs`).
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A run that lasted this long earns a fresh backoff (as a stream session does).
const FRESH_AFTER: Duration = Duration::from_secs(60);

/// How an initial snapshot ended, its retries included.
pub enum Outcome<T> {
    /// Read to the end, or found complete when a retry decided again: how to go on.
    Done(T),
    /// Shutdown came while waiting to retry (the engine still runs: let it drain).
    Shutdown,
    /// A definite error (the engine still runs: let it drain what it has).
    Failed(anyhow::Error),
    /// The engine ended first, with this error.
    Engine(anyhow::Error),
}

/// The backoff of one pipeline's initial snapshot retries, and what they report.
pub struct SnapshotRetry {
    source: &'static str,
    backoff: Duration,
    retries: u32,
    metrics: std::sync::Arc<Metrics>,
}

impl SnapshotRetry {
    /// `source`: `"postgres"` or `"mysql"`, for the log.
    pub fn new(source: &'static str, metrics: std::sync::Arc<Metrics>) -> Self {
        SnapshotRetry {
            source,
            backoff: FIRST_BACKOFF,
            retries: 0,
            metrics,
        }
    }

    /// Retries so far.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// Reports `error` (the snapshot's, after `ran` of work; `saved`: the forced checkpoint)
    /// and waits out the backoff. `false` when shutdown came first.
    pub async fn wait(
        &mut self,
        error: &str,
        ran: Duration,
        saved: Option<&tidemark_model::Position>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        if ran > FRESH_AFTER {
            self.backoff = FIRST_BACKOFF;
        }
        self.retries += 1;
        self.metrics.set_snapshot_running(0);
        self.metrics.set_snapshot_retrying(Some(error.to_string()));
        let checkpoint = saved
            .map(|p| p.to_string())
            .unwrap_or_else(|| "none".into());
        tracing::warn!(source = self.source, %error, retry_in = ?self.backoff, retry = self.retries, %checkpoint,
            "initial snapshot: transient error; what the sinks had is checkpointed, resuming from the last completed range after the backoff");
        if *shutdown.borrow() {
            return false;
        }
        let go_on = tokio::select! {
            _ = tokio::time::sleep(self.backoff) => true,
            _ = shutdown.changed() => false,
        };
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        go_on
    }

    /// The snapshot runs again (or was found complete).
    pub fn resumed(&self) {
        self.metrics.set_snapshot_retrying(None);
        tracing::info!(
            source = self.source,
            retry = self.retries,
            "initial snapshot: resuming after the transient error"
        );
    }
}

/// The running engine, as an initial snapshot and its retries use it.
pub(crate) struct SnapshotEngine<'a> {
    pub queue: &'a QueueSender<std::sync::Arc<tidemark_model::Transaction>>,
    pub task: &'a mut tokio::task::JoinHandle<Result<(), EngineError>>,
    pub checkpoints: &'a tokio::sync::mpsc::Sender<CheckpointNow>,
}

/// Asks the engine to write everything queued, flush every sink and checkpoint now (a
/// snapshot about to retry): the position saved. Only while nothing is being sent to the
/// queue (the engine's `CheckpointNow` invariant).
pub(crate) async fn checkpoint_now(
    checkpoints: &tokio::sync::mpsc::Sender<CheckpointNow>,
    engine: &mut tokio::task::JoinHandle<Result<(), EngineError>>,
) -> anyhow::Result<Option<tidemark_model::Position>> {
    let ask = async {
        let (reply, answer) = tokio::sync::oneshot::channel();
        checkpoints.send(reply).await.ok()?;
        answer.await.ok()
    };
    match race_engine(ask, engine).await {
        Raced::Work(Some(saved)) => Ok(saved),
        // The engine dropped the request: it is ending, with its own error.
        Raced::Work(None) => Err(crate::pipeline::engine_ended(engine.await)),
        Raced::Engine(e) => Err(e),
    }
}
