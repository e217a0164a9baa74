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
        ..
    } = crate::pipeline::start_engine(config, &database, store, metrics.clone(), resume).await?;
    let mut versions = tidemark_model::SchemaVersions::default();
    if let Some(job) = job {
        versions = job.schemas();
        let (stop, from) = (job.stop, job.stream_from());
        let cx = RunContext {
            config,
            store: &engine_store,
            metrics: metrics.clone(),
            queue: tx.clone(),
        };
        match race_engine(job.run(cx), &mut engine_task).await {
            Raced::Work(Ok(_)) => {}
            Raced::Work(Err(e)) => {
                drop(tx);
                metrics.set_error(e.to_string());
                let _ = engine_task.await;
                return Err(anyhow::Error::new(e).context("mysql snapshot failed"));
            }
            Raced::Engine(e) => {
                metrics.set_error(format!("{e:#}"));
                return Err(e);
            }
        }
        // The stream continues from the snapshot's binlog position (snapshot.rs).
        resume = Some(from);
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
