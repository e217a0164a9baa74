//! Wiring of the Postgres initial snapshot into a pipeline (`src/pipeline.rs` runs the rest):
//! startup's decision retried while the server cannot be reached, and the snapshot retried in
//! the same process after a transient error, the way a restart would resume it
//! (`snapshot/retry.rs`).

use anyhow::Context;
use tokio::sync::watch;

use super::config::PgConnectConfig;
use super::snapshot;
use crate::checkpoint::{Checkpoint, FileCheckpointStore};
use crate::config::{Config, PostgresSourceConfig};
use crate::metrics::Metrics;
use crate::pipeline::{race_engine, Raced};
use crate::snapshot::retry::{checkpoint_now, Outcome, SnapshotEngine, SnapshotRetry};

/// What a Postgres initial snapshot reads with.
pub(crate) struct SnapshotSources<'a> {
    pub config: &'a Config,
    pub pg: &'a PostgresSourceConfig,
    pub connect: &'a PgConnectConfig,
    pub store: &'a FileCheckpointStore,
    pub metrics: &'a std::sync::Arc<Metrics>,
}

/// Runs the Postgres initial snapshot `job`, retrying in-process after a transient error the
/// way a restart would resume it (`snapshot/retry.rs`). Done with the stream's resume
/// position (the last chunk sent, or the checkpoint's) and whether to stop (`initial_only`).
pub(crate) async fn run_snapshot(
    s: SnapshotSources<'_>,
    engine: SnapshotEngine<'_>,
    mut job: Box<snapshot::Prepared>,
    mut shutdown: watch::Receiver<bool>,
) -> Outcome<(Option<tidemark_model::Position>, bool)> {
    let mut retry = SnapshotRetry::new("postgres", s.metrics.clone());
    loop {
        let stop = job.stop;
        let cx = snapshot::RunContext {
            config: s.config,
            pg: s.pg,
            connect: s.connect,
            store: s.store,
            metrics: s.metrics.clone(),
            queue: engine.queue.clone(),
        };
        let started = std::time::Instant::now();
        let error = match race_engine(job.run(cx), &mut *engine.task).await {
            Raced::Engine(e) => return Outcome::Engine(e),
            Raced::Work(Ok(last)) => return Outcome::Done((last, stop)),
            Raced::Work(Err(e)) if e.is_transient() => e,
            Raced::Work(Err(e)) => {
                return Outcome::Failed(anyhow::Error::new(e).context("postgres snapshot failed"))
            }
        };
        let saved = match checkpoint_now(engine.checkpoints, &mut *engine.task).await {
            Ok(saved) => saved,
            Err(e) => return Outcome::Engine(e),
        };
        let text = crate::snapshot::error_text(&error);
        if !retry
            .wait(&text, started.elapsed(), saved.as_ref(), &mut shutdown)
            .await
        {
            return Outcome::Shutdown;
        }
        // The same decision as a restart, from the checkpoint just saved.
        let checkpoint = match s.store.load() {
            Ok(c) => c,
            Err(e) => return Outcome::Failed(e.into()),
        };
        let at = checkpoint.as_ref().and_then(|c| c.position().ok());
        let startup = prepare_snapshot(
            s.config,
            s.pg,
            s.connect,
            checkpoint.as_ref(),
            s.metrics,
            shutdown.clone(),
        )
        .await;
        retry.resumed();
        match startup {
            Ok(None) => return Outcome::Shutdown,
            Err(e) => return Outcome::Failed(e),
            Ok(Some(snapshot::Startup::Stream)) => return Outcome::Done((at, false)),
            Ok(Some(snapshot::Startup::Done)) => return Outcome::Done((at, true)),
            Ok(Some(snapshot::Startup::Snapshot(next))) if next.discard_checkpoint => {
                return Outcome::Failed(anyhow::anyhow!(
                    "postgres snapshot: after a transient error ({text}) the slot's WAL is gone; restart the pipeline to snapshot again (snapshot.mode = when_needed)"
                ))
            }
            Ok(Some(snapshot::Startup::Snapshot(next))) => job = next,
        }
    }
}

/// [`snapshot::prepare`], retried with backoff while the server cannot be reached (as the
/// stream retries); `None` when shutdown came first.
pub(crate) async fn prepare_snapshot(
    config: &Config,
    pg: &PostgresSourceConfig,
    connect: &PgConnectConfig,
    checkpoint: Option<&Checkpoint>,
    metrics: &Metrics,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Option<snapshot::Startup>> {
    let mut backoff = std::time::Duration::from_secs(1);
    loop {
        match snapshot::prepare(config, pg, connect, checkpoint).await {
            Ok(s) => return Ok(Some(s)),
            Err(e) if e.is_transient() && !*shutdown.borrow() => {
                metrics.set_streaming(false);
                tracing::warn!(error = %e, retry_in = ?backoff, "postgres source: transient error at startup; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => return Ok(None),
                }
                backoff = (backoff * 2).min(std::time::Duration::from_secs(30));
            }
            Err(e) => {
                metrics.set_error(e.to_string());
                return Err(e).context("postgres source failed");
            }
        }
    }
}
