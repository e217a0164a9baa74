//! Wiring of a MySQL source into a pipeline (`tidemark run`, `validate`, `status`).

use std::sync::Arc;

use tidemark_model::{GtidSet, Position};
use tokio::sync::watch;

use super::config::MysqlSourceConfig;
use super::control::{self, MysqlControl};
use super::stream::MysqlSource;
use crate::checkpoint::FileCheckpointStore;
use crate::config::Config;
use crate::engine::{queue, Engine};
use crate::metrics::Metrics;

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
    // The executed GTID set at the checkpoint (MySQL with gtid_mode = ON): a restart asks
    // for the stream after it, and every save records the set at the saved position.
    store.track_gtids(resume_gtids.clone());
    let gtids = store.gtid_ledger();
    // Debezium's MySQL `source.db` is per table; the sinks' database is only a default.
    let database = m.databases.first().cloned().unwrap_or_default();
    #[allow(unused_mut)]
    let mut sinks = crate::pipeline::build_sinks(config, &database)?;
    #[cfg(feature = "iceberg")]
    crate::pipeline::add_iceberg_sinks(config, &mut sinks).await?;
    let (tx, rx) = queue::channel(config.pipeline.max_queue_bytes);
    let (acked_tx, _acked) = watch::channel(resume);
    let engine = Engine::new(
        sinks,
        store,
        metrics.clone(),
        config.checkpoint.interval,
        resume,
    );
    let engine_task = tokio::spawn(engine.run(rx, acked_tx));
    let source = MysqlSource {
        config: m.clone(),
        pipeline: config.pipeline.name.clone(),
        metrics: metrics.clone(),
        queue: tx,
        resume,
        resume_gtids,
        gtids,
        shutdown,
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
