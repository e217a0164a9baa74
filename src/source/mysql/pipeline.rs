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
use crate::metrics::Metrics;
use crate::pipeline::{race_engine, Raced};
use crate::snapshot::retry::{checkpoint_now, Outcome, SnapshotEngine, SnapshotRetry};

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
    let startup = match super::snapshot::prepare(config, m, checkpoint.as_ref()).await {
        Ok(s) => s,
        Err(e) => {
            metrics.set_error(e.to_string());
            return Err(anyhow::Error::new(e).context("mysql snapshot failed"));
        }
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
    let engine_store = store.clone();
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
        let done = match run_snapshot(
            config,
            m,
            &engine_store,
            &metrics,
            engine,
            job,
            shutdown.clone(),
        )
        .await
        {
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

/// Runs the initial snapshot `job`, retrying in-process after a transient error the way a
/// restart would resume it (`snapshot/retry.rs`).
async fn run_snapshot(
    config: &Config,
    m: &MysqlSourceConfig,
    store: &FileCheckpointStore,
    metrics: &Arc<Metrics>,
    engine: SnapshotEngine<'_>,
    mut job: Box<super::snapshot::Prepared>,
    mut shutdown: watch::Receiver<bool>,
) -> Outcome<After> {
    let mut retry = SnapshotRetry::new("mysql", metrics.clone());
    loop {
        let (stop, stream_from, versions) = (job.stop, job.stream_from(), job.schemas());
        let cx = RunContext {
            config,
            store,
            metrics: metrics.clone(),
            queue: engine.queue.clone(),
        };
        let started = std::time::Instant::now();
        let error = match race_engine(job.run(cx), &mut *engine.task).await {
            Raced::Engine(e) => return Outcome::Engine(e),
            Raced::Work(Ok(_)) => {
                return Outcome::Done(After::Snapshot {
                    stream_from,
                    versions,
                    stop,
                })
            }
            Raced::Work(Err(e)) if e.is_transient() => e,
            Raced::Work(Err(e)) => {
                return Outcome::Failed(anyhow::Error::new(e).context("mysql snapshot failed"))
            }
        };
        let saved = match checkpoint_now(engine.checkpoints, &mut *engine.task).await {
            Ok(saved) => saved,
            Err(e) => return Outcome::Engine(e),
        };
        let mut text = crate::snapshot::error_text(&error);
        let mut ran = started.elapsed();
        // The same decision as a restart, from the checkpoint just saved; the server may
        // still be down (restarting): retried with the same backoff.
        let (startup, checkpoint) = loop {
            if !retry.wait(&text, ran, saved.as_ref(), &mut shutdown).await {
                return Outcome::Shutdown;
            }
            let checkpoint = match store.load() {
                Ok(c) => c,
                Err(e) => return Outcome::Failed(e.into()),
            };
            match super::snapshot::prepare(config, m, checkpoint.as_ref()).await {
                Ok(s) => break (s, checkpoint),
                Err(e) if e.is_transient() => {
                    text = crate::snapshot::error_text(&e);
                    ran = std::time::Duration::ZERO;
                }
                Err(e) => {
                    return Outcome::Failed(anyhow::Error::new(e).context("mysql snapshot failed"))
                }
            }
        };
        retry.resumed();
        let at = checkpoint.as_ref().and_then(|c| c.position().ok());
        match startup {
            Startup::Snapshot(next)
                if next.discard_checkpoint || (at.is_none() && next.gtids.is_some()) =>
            {
                // A new consistent point whose positions (or GTID set) the engine has not
                // started from: a restart decides (retry module traps).
                return Outcome::Failed(anyhow::anyhow!(
                    "mysql snapshot: after a transient error ({text}) the snapshot must start over at a new position; restart the pipeline"
                ));
            }
            Startup::Snapshot(next) => job = next,
            Startup::Stream(from) => {
                return Outcome::Done(After::Stream {
                    from: from.or(at),
                    stop: false,
                })
            }
            Startup::Done => {
                return Outcome::Done(After::Stream {
                    from: at,
                    stop: true,
                })
            }
            Startup::Incremental { tables, .. } => {
                return Outcome::Done(After::Incremental { tables, from: at })
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
