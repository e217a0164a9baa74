//! Wiring of the Postgres initial snapshot into a pipeline (`src/pipeline.rs` runs the rest):
//! startup's decision retried while the server cannot be reached, and the snapshot retried in
//! the same process after a transient error, the way a restart would resume it
//! (`snapshot/retry.rs`).

use super::config::PgConnectConfig;
use super::snapshot;
use crate::checkpoint::{Checkpoint, FileCheckpointStore};
use crate::config::{Config, PostgresSourceConfig};
use crate::engine::queue::QueueSender;
use crate::metrics::Metrics;
use crate::snapshot::retry::{Resume, SnapshotAttempts};

/// What a Postgres initial snapshot reads with.
pub(crate) struct SnapshotSources<'a> {
    pub config: &'a Config,
    pub pg: &'a PostgresSourceConfig,
    pub connect: &'a PgConnectConfig,
    pub store: &'a FileCheckpointStore,
    pub metrics: &'a std::sync::Arc<Metrics>,
}

/// The Postgres side of an initial snapshot's retries (`snapshot/retry.rs`): done with the
/// stream's resume position (the last chunk sent, or the checkpoint's) and whether to stop
/// (`initial_only`).
impl SnapshotAttempts for SnapshotSources<'_> {
    type Job = Box<snapshot::Prepared>;
    type Startup = snapshot::Startup;
    /// The stream's resume position and whether to stop (`initial_only`).
    type Done = (Option<tidemark_model::Position>, bool);
    type Error = snapshot::SnapshotError;
    const SOURCE: &'static str = "postgres";

    fn is_transient(error: &snapshot::SnapshotError) -> bool {
        error.is_transient()
    }

    fn store(&self) -> &FileCheckpointStore {
        self.store
    }

    fn metrics(&self) -> &std::sync::Arc<Metrics> {
        self.metrics
    }

    async fn run(
        &self,
        job: Self::Job,
        queue: QueueSender<std::sync::Arc<tidemark_model::Transaction>>,
    ) -> Result<Self::Done, snapshot::SnapshotError> {
        let stop = job.stop;
        let cx = snapshot::RunContext {
            config: self.config,
            pg: self.pg,
            connect: self.connect,
            store: self.store,
            metrics: self.metrics.clone(),
            queue,
        };
        Ok((job.run(cx).await?, stop))
    }

    async fn prepare(
        &self,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<snapshot::Startup, snapshot::SnapshotError> {
        snapshot::prepare(self.config, self.pg, self.connect, checkpoint).await
    }

    fn resume(
        &self,
        startup: snapshot::Startup,
        at: Option<tidemark_model::Position>,
        error: &str,
    ) -> Resume<Self::Job, Self::Done> {
        match startup {
            snapshot::Startup::Stream => Resume::Done((at, false)),
            snapshot::Startup::Done => Resume::Done((at, true)),
            // A new slot (its WAL was gone): its positions may sort before what the engine
            // checkpointed (retry module traps).
            snapshot::Startup::Snapshot(next) if next.discard_checkpoint => {
                Resume::Failed(anyhow::anyhow!(
                    "postgres snapshot: after a transient error ({error}) the slot's WAL is gone; restart the pipeline to snapshot again (snapshot.mode = when_needed)"
                ))
            }
            snapshot::Startup::Snapshot(next) => Resume::Run(next),
        }
    }
}
