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
//! The loop is one for every source ([`run_with_retries`]); a source says how its prepared
//! snapshot runs, how it decides from a checkpoint and what a decision means for a retry
//! ([`SnapshotAttempts`]). A transient error of that decision (the server still restarting)
//! waits the same backoff and counts as a retry too.
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

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::checkpoint::{Checkpoint, FileCheckpointStore};
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
struct SnapshotRetry {
    source: &'static str,
    backoff: Duration,
    retries: u32,
    metrics: Arc<Metrics>,
}

impl SnapshotRetry {
    /// `source`: `"postgres"` or `"mysql"`, for the log.
    fn new(source: &'static str, metrics: Arc<Metrics>) -> Self {
        SnapshotRetry {
            source,
            backoff: FIRST_BACKOFF,
            retries: 0,
            metrics,
        }
    }

    /// Reports `error` (the snapshot's, after `ran` of work; `saved`: the forced checkpoint)
    /// and waits out the backoff. `false` when shutdown came first.
    async fn wait(
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
    fn resumed(&self) {
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
    pub queue: &'a QueueSender<Arc<tidemark_model::Transaction>>,
    pub task: &'a mut tokio::task::JoinHandle<Result<(), EngineError>>,
    pub checkpoints: &'a tokio::sync::mpsc::Sender<CheckpointNow>,
}

/// Asks the engine to write everything queued, flush every sink and checkpoint now (a
/// snapshot about to retry): the position saved. Only while nothing is being sent to the
/// queue (the engine's `CheckpointNow` invariant).
async fn checkpoint_now(
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

/// One source's side of an initial snapshot and its retries: how a prepared snapshot runs,
/// how a restart decides from a checkpoint, and what that decision means for a retry. The loop
/// itself ([`run_with_retries`]) is the same for every source.
pub(crate) trait SnapshotAttempts {
    /// A snapshot ready to read (readers connected at a consistent point, plan made).
    type Job;
    /// A restart's decision (the source's `snapshot::prepare`).
    type Startup;
    /// What the pipeline goes on with once the snapshot is over.
    type Done;
    /// The source's snapshot error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// `"postgres"` or `"mysql"`: the log's and the errors' name of the source.
    const SOURCE: &'static str;

    /// Whether `error` is worth a retry in the same process.
    fn is_transient(error: &Self::Error) -> bool;

    /// The checkpoint store the engine saves to (the retry decides from what it holds).
    fn store(&self) -> &FileCheckpointStore;

    fn metrics(&self) -> &Arc<Metrics>;

    /// Reads `job` to its end, sending its changes to `queue`.
    fn run(
        &self,
        job: Self::Job,
        queue: QueueSender<Arc<tidemark_model::Transaction>>,
    ) -> impl Future<Output = Result<Self::Done, Self::Error>>;

    /// The decision a restart would take from `checkpoint`.
    fn prepare(
        &self,
        checkpoint: Option<&Checkpoint>,
    ) -> impl Future<Output = Result<Self::Startup, Self::Error>>;

    /// What a retry does with a restart's decision (`at`: the checkpoint's position; `error`:
    /// the text of the error retried, for a definite error's message).
    fn resume(
        &self,
        startup: Self::Startup,
        at: Option<tidemark_model::Position>,
        error: &str,
    ) -> Resume<Self::Job, Self::Done>;
}

/// What a retry goes on with ([`SnapshotAttempts::resume`]).
pub(crate) enum Resume<J, D> {
    /// Read the snapshot again from the checkpoint's completed ranges.
    Run(J),
    /// The checkpoint says the snapshot is over: go on.
    Done(D),
    /// A retry cannot go on (module traps): a definite error, a restart decides.
    Failed(anyhow::Error),
}

/// Runs the initial snapshot `job`, retrying in the same process after a transient error the
/// way a restart would resume it (module doc): the engine checkpoints what was sent, the
/// backoff runs, and the source decides again from that checkpoint. A transient error of that
/// decision (the server still restarting) is retried with the same backoff and counted.
pub(crate) async fn run_with_retries<A: SnapshotAttempts>(
    source: &A,
    engine: SnapshotEngine<'_>,
    mut job: A::Job,
    mut shutdown: watch::Receiver<bool>,
) -> Outcome<A::Done> {
    let failed = |e: A::Error| {
        Outcome::Failed(anyhow::Error::new(e).context(format!("{} snapshot failed", A::SOURCE)))
    };
    let mut retry = SnapshotRetry::new(A::SOURCE, source.metrics().clone());
    loop {
        let started = Instant::now();
        let error =
            match race_engine(source.run(job, engine.queue.clone()), &mut *engine.task).await {
                Raced::Engine(e) => return Outcome::Engine(e),
                Raced::Work(Ok(done)) => return Outcome::Done(done),
                Raced::Work(Err(e)) if A::is_transient(&e) => e,
                Raced::Work(Err(e)) => return failed(e),
            };
        let saved = match checkpoint_now(engine.checkpoints, &mut *engine.task).await {
            Ok(saved) => saved,
            Err(e) => return Outcome::Engine(e),
        };
        let mut text = super::error_text(&error);
        let mut ran = started.elapsed();
        // The same decision as a restart, from the checkpoint just saved; the server may
        // still be down (restarting): retried with the same backoff.
        let (startup, checkpoint) = loop {
            if !retry.wait(&text, ran, saved.as_ref(), &mut shutdown).await {
                return Outcome::Shutdown;
            }
            let checkpoint = match source.store().load() {
                Ok(c) => c,
                Err(e) => return Outcome::Failed(e.into()),
            };
            match source.prepare(checkpoint.as_ref()).await {
                Ok(s) => break (s, checkpoint),
                Err(e) if A::is_transient(&e) => {
                    text = super::error_text(&e);
                    ran = Duration::ZERO;
                }
                Err(e) => return failed(e),
            }
        };
        retry.resumed();
        let at = checkpoint.as_ref().and_then(|c| c.position().ok());
        match source.resume(startup, at, &text) {
            Resume::Run(next) => job = next,
            Resume::Done(done) => return Outcome::Done(done),
            Resume::Failed(e) => return Outcome::Failed(e),
        }
    }
}

/// A source's startup decision (its `snapshot::prepare`, before the engine starts), retried
/// with the streams' backoff while the server cannot be reached; `None` when shutdown came
/// first. A definite error is recorded in the metrics (`/readyz`, `status`) and returned.
pub(crate) async fn prepare_at_startup<A: SnapshotAttempts>(
    source: &A,
    checkpoint: Option<&Checkpoint>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Option<A::Startup>> {
    let mut backoff = FIRST_BACKOFF;
    loop {
        match source.prepare(checkpoint).await {
            Ok(s) => return Ok(Some(s)),
            Err(e) if A::is_transient(&e) && !*shutdown.borrow() => {
                source.metrics().set_streaming(false);
                let error = super::error_text(&e);
                tracing::warn!(source = A::SOURCE, %error, retry_in = ?backoff,
                    "{} source: transient error at startup; retrying", A::SOURCE);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => return Ok(None),
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(e) => {
                source.metrics().set_error(e.to_string());
                return Err(anyhow::Error::new(e).context(format!("{} source failed", A::SOURCE)));
            }
        }
    }
}
