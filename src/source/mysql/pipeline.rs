//! Wiring of a MySQL source into a pipeline (`tidemark run`, `validate`, `status`).

use std::sync::Arc;

use anyhow::Context;
use tidemark_model::{GtidSet, Position};
use tokio::sync::watch;

use super::config::MysqlSourceConfig;
use super::control::{self, MysqlControl};
use super::snapshot::{RunContext, Startup};
use super::stream::MysqlSource;
use crate::checkpoint::FileCheckpointStore;
use crate::config::Config;
use crate::engine::queue::QueueSender;
use crate::metrics::Metrics;
use crate::snapshot::retry::{
    prepare_at_startup, run_with_retries, Outcome, Resume, SnapshotAttempts, SnapshotEngine,
};

/// Runs a pipeline whose source is MySQL/MariaDB until shutdown or a definite error.
pub async fn run(
    config: &Config,
    m: &MysqlSourceConfig,
    store: FileCheckpointStore,
    metrics: Arc<Metrics>,
    resume: Option<Position>,
    resume_gtids: Option<GtidSet>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let (mut resume, mut resume_gtids) = (resume, resume_gtids);
    // snapshot.mode, the checkpoint and the server decide (snapshot.rs); a snapshot opens its
    // readers at a consistent binlog position here, before the sinks start.
    let checkpoint = store.load()?;
    let engine_store = store.clone();
    let sources = SnapshotSources {
        config,
        m,
        store: &engine_store,
        metrics: &metrics,
    };
    let Some(startup) = prepare_at_startup(&sources, checkpoint.as_ref(), shutdown.clone()).await?
    else {
        return Ok(());
    };
    // The no-lock fallback: stream from the current position, snapshot incrementally.
    let mut fallback = None;
    let job = match startup {
        Startup::Done => return Ok(()),
        Startup::Stream(from) => {
            resume = from.or(resume);
            None
        }
        Startup::Incremental {
            tables,
            discard_checkpoint,
        } => {
            if discard_checkpoint {
                resume = None;
                resume_gtids = None;
            }
            fallback = Some(tables);
            None
        }
        Startup::Snapshot(job) => {
            if job.discard_checkpoint {
                resume = None;
                resume_gtids = None;
            }
            if resume.is_none() {
                resume_gtids = job.gtids.clone();
            }
            Some(job)
        }
    };
    // The executed GTID set at the checkpoint (MySQL with gtid_mode = ON): a restart asks
    // for the stream after it, and every save records the set at the saved position.
    store.track_gtids(resume_gtids.clone());
    let gtids = store.gtid_ledger();
    // Debezium's MySQL `source.db` is per table; the sinks' database is only a default.
    let database = m.databases.first().cloned().unwrap_or_default();
    let crate::pipeline::StartedEngine {
        queue: tx,
        task: mut engine_task,
        checkpoints,
        ..
    } = crate::pipeline::start_engine(config, &database, store, metrics.clone(), resume).await?;
    let mut versions = tidemark_model::SchemaVersions::default();
    if let Some(job) = job {
        let engine = SnapshotEngine {
            queue: &tx,
            task: &mut engine_task,
            checkpoints: &checkpoints,
        };
        let done = match run_with_retries(&sources, engine, job, shutdown.clone()).await {
            Outcome::Done(done) => done,
            ended => {
                return crate::pipeline::end_after_snapshot(ended, tx, engine_task, &metrics).await
            }
        };
        let stop = match done {
            After::Snapshot {
                stream_from,
                versions: read,
                stop,
            } => {
                // The stream continues from the snapshot's binlog position (snapshot.rs).
                resume = Some(stream_from);
                versions = read;
                stop
            }
            // A retry found the snapshot complete (or, without a checkpoint, fell back to
            // an incremental one): on as a restart would.
            After::Stream { from, stop } => {
                resume = from;
                stop
            }
            After::Incremental { tables, from } => {
                resume = from;
                fallback = Some(tables);
                false
            }
        };
        if stop {
            drop(tx);
            engine_task
                .await
                .context("engine task panicked")?
                .context("sink or checkpoint failed")?;
            tracing::info!(pipeline = %config.pipeline.name, "snapshot.mode = initial_only: snapshot complete, not streaming");
            return Ok(());
        }
    }
    let mut incremental = super::snapshot_incremental::Incremental::new(
        config.pipeline.name.clone(),
        m,
        config.snapshot.clone(),
        engine_store.ledger(),
        metrics.clone(),
    )?;
    if let Some(tables) = fallback {
        incremental.queue_all(tables);
    }
    let source = MysqlSource {
        config: m.clone(),
        pipeline: config.pipeline.name.clone(),
        metrics: metrics.clone(),
        queue: tx,
        resume,
        resume_gtids,
        gtids,
        shutdown,
        incremental: Some(incremental),
        versions,
    };
    crate::pipeline::drive(source.run(), engine_task, &metrics, "mysql source failed").await
}

/// How the pipeline goes on after its initial snapshot.
enum After {
    /// The snapshot read to the end: stream from its binlog position, numbering schema
    /// versions on from what it read.
    Snapshot {
        stream_from: Position,
        versions: tidemark_model::SchemaVersions,
        stop: bool,
    },
    /// A retry's decision: stream from there (the checkpoint), or stop (`initial_only`).
    Stream { from: Option<Position>, stop: bool },
    /// A retry without a checkpoint found no consistent point: stream from the current
    /// position and snapshot these tables incrementally (`Startup::Incremental`).
    Incremental {
        tables: Vec<tidemark_model::TableId>,
        from: Option<Position>,
    },
}

/// What a MySQL/MariaDB initial snapshot reads with.
struct SnapshotSources<'a> {
    config: &'a Config,
    m: &'a MysqlSourceConfig,
    store: &'a FileCheckpointStore,
    metrics: &'a Arc<Metrics>,
}

impl SnapshotAttempts for SnapshotSources<'_> {
    type Job = Box<super::snapshot::Prepared>;
    type Startup = Startup;
    type Done = After;
    type Error = super::snapshot::SnapshotError;
    const SOURCE: &'static str = "mysql";

    fn is_transient(error: &Self::Error) -> bool {
        error.is_transient()
    }

    fn store(&self) -> &FileCheckpointStore {
        self.store
    }

    fn metrics(&self) -> &Arc<Metrics> {
        self.metrics
    }

    async fn run(
        &self,
        job: Self::Job,
        queue: QueueSender<Arc<tidemark_model::Transaction>>,
    ) -> Result<After, Self::Error> {
        let done = After::Snapshot {
            stream_from: job.stream_from(),
            versions: job.schemas(),
            stop: job.stop,
        };
        let cx = RunContext {
            config: self.config,
            store: self.store,
            metrics: self.metrics.clone(),
            queue,
        };
        job.run(cx).await?;
        Ok(done)
    }

    async fn prepare(
        &self,
        checkpoint: Option<&crate::checkpoint::Checkpoint>,
    ) -> Result<Startup, Self::Error> {
        super::snapshot::prepare(self.config, self.m, checkpoint).await
    }

    fn resume(
        &self,
        startup: Startup,
        at: Option<Position>,
        error: &str,
    ) -> Resume<Self::Job, After> {
        match startup {
            Startup::Snapshot(next)
                if next.discard_checkpoint || (at.is_none() && next.gtids.is_some()) =>
            {
                // A new consistent point whose positions (or GTID set) the engine has not
                // started from: a restart decides (retry module traps).
                Resume::Failed(anyhow::anyhow!(
                    "mysql snapshot: after a transient error ({error}) the snapshot must start over at a new position; restart the pipeline"
                ))
            }
            Startup::Snapshot(next) => Resume::Run(next),
            Startup::Stream(from) => Resume::Done(After::Stream {
                from: from.or(at),
                stop: false,
            }),
            Startup::Done => Resume::Done(After::Stream {
                from: at,
                stop: true,
            }),
            Startup::Incremental { tables, .. } => {
                Resume::Done(After::Incremental { tables, from: at })
            }
        }
    }
}

/// `tidemark validate`: the server's settings for CDC.
pub async fn healthcheck(m: &MysqlSourceConfig) -> anyhow::Result<String> {
    let mut ctl = MysqlControl::connect(&control::opts(m)?).await?;
    let info = ctl.check_server(m.allow_partial_images).await?;
    let (file, pos) = ctl.current_position().await?;
    Ok(format!(
        "mysql ok: {} {}, server_id {}, binlog_format={}, binlog_row_image={}, binlog_row_metadata={}, binlog_checksum={}, {} {:?}, at {file}:{pos}",
        if info.mariadb { "MariaDB" } else { "MySQL" },
        info.version,
        info.server_id,
        info.binlog_format,
        info.binlog_row_image,
        info.binlog_row_metadata,
        info.binlog_checksum,
        if info.mariadb { "gtid_current_pos" } else { "gtid_mode" },
        info.gtid
    ))
}

/// `tidemark status`: the server's position and whether the checkpoint's file still exists.
pub async fn status(m: &MysqlSourceConfig, store: &FileCheckpointStore) -> anyhow::Result<String> {
    let mut ctl = MysqlControl::connect(&control::opts(m)?).await?;
    let (file, pos) = ctl.current_position().await?;
    let logs = ctl.binary_logs().await?;
    let mut out = format!(
        "server at {file}:{pos}; binlog files {}..{}\n",
        logs.first().map(|l| l.0.as_str()).unwrap_or("-"),
        logs.last().map(|l| l.0.as_str()).unwrap_or("-")
    );
    if let Some(cp) = store.load()? {
        if let Some(p) = cp.position()?.as_mysql() {
            let present = logs.iter().any(|(n, _)| {
                tidemark_model::mysql_position::binlog_file_number(n) == Some(p.file)
            });
            let behind: u64 = logs
                .iter()
                .filter(|(n, _)| {
                    tidemark_model::mysql_position::binlog_file_number(n)
                        .is_some_and(|k| k >= p.file)
                })
                .map(|(_, s)| *s)
                .sum::<u64>()
                .saturating_sub(p.resume_offset());
            out.push_str(&format!(
                "checkpoint file #{} {}; about {behind} binlog bytes behind\n",
                p.file,
                if present {
                    "present"
                } else {
                    "PURGED: run `tidemark reset` and re-snapshot"
                }
            ));
        }
    }
    Ok(out)
}
