//! One pipeline: a source, the engine and its sinks, the checkpoint store and the metrics
//! endpoint, wired together and run until shutdown or a definite error.

use anyhow::Context;
use tidemark_model::Sink;
use tokio::sync::watch;

use crate::checkpoint::FileCheckpointStore;
use crate::config::{Config, PostgresSourceConfig, SinkConfig, SourceConfig};
use crate::engine::{queue, Engine};
use crate::metrics::{self, Metrics};
use crate::snapshot::retry::{prepare_at_startup, run_with_retries, Outcome, SnapshotEngine};
use crate::source::postgres::config::PgConnectConfig;
use crate::source::postgres::control::PgControl;
use crate::source::postgres::pipeline as pg_pipeline;
use crate::source::postgres::snapshot;
use crate::source::postgres::stream::PgSource;

/// Memory for streamed transactions before they spill to disk.
const SPILL_MEMORY: usize = 64 << 20;

/// The connection settings of a Postgres source, password included.
pub fn connect_config(pg: &PostgresSourceConfig) -> anyhow::Result<PgConnectConfig> {
    let mut cfg = PgConnectConfig::from_url(&pg.url)?;
    if let Some(secret) = &pg.password {
        let password = secret
            .read()
            .map_err(|e| anyhow::anyhow!("source.password: {e}"))?;
        cfg.password = Some(password);
    }
    Ok(cfg)
}

pub(crate) fn build_sinks(config: &Config, database: &str) -> anyhow::Result<Vec<Box<dyn Sink>>> {
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    for (i, sink) in config.sinks.iter().enumerate() {
        match sink {
            SinkConfig::DebeziumJson(c) => {
                let s =
                    tidemark_debezium::JsonlSink::new(c.clone(), config.server_name(), database)
                        .with_context(|| format!("sinks[{i}]"))?;
                sinks.push(Box::new(s));
            }
            #[cfg(feature = "kafka")]
            SinkConfig::Kafka(c) => {
                let s = tidemark_kafka::KafkaSink::new(
                    c.as_ref().clone(),
                    &config.pipeline.name,
                    config.server_name(),
                    database,
                )
                .with_context(|| format!("sinks[{i}]"))?;
                sinks.push(Box::new(s));
            }
            #[cfg(feature = "delta")]
            SinkConfig::Delta(c) => {
                let s = tidemark_delta::DeltaSink::new(c.clone(), &config.pipeline.name)
                    .with_context(|| format!("sinks[{i}]"))?;
                sinks.push(Box::new(s));
            }
            // Connects to its catalog: built by `add_iceberg_sinks` (async).
            #[cfg(feature = "iceberg")]
            SinkConfig::Iceberg(_) => {}
        }
    }
    Ok(sinks)
}

/// A started engine: the queue sources send to, the acknowledged position, the engine task,
/// and where to ask it for a checkpoint now (`snapshot::retry::checkpoint_now`).
pub(crate) struct StartedEngine {
    pub queue: queue::QueueSender<std::sync::Arc<tidemark_model::Transaction>>,
    pub acked: watch::Receiver<Option<tidemark_model::Position>>,
    pub task: tokio::task::JoinHandle<Result<(), crate::engine::EngineError>>,
    pub checkpoints: tokio::sync::mpsc::Sender<crate::engine::CheckpointNow>,
}

/// Builds the configured sinks (`database`: their default namespace), connects the Iceberg
/// ones, and starts the engine on a byte-bounded queue: the start-up every source shares.
pub(crate) async fn start_engine(
    config: &Config,
    database: &str,
    store: FileCheckpointStore,
    metrics: std::sync::Arc<Metrics>,
    resume: Option<tidemark_model::Position>,
) -> anyhow::Result<StartedEngine> {
    #[allow(unused_mut)]
    let mut sinks = build_sinks(config, database)?;
    #[cfg(feature = "iceberg")]
    add_iceberg_sinks(config, &mut sinks).await?;
    let (tx, rx) = queue::channel(config.pipeline.max_queue_bytes);
    let (acked_tx, acked) = watch::channel(resume);
    let (checkpoints, requests) = tokio::sync::mpsc::channel(1);
    let engine = Engine::new(sinks, store, metrics, config.checkpoint.interval, resume);
    Ok(StartedEngine {
        queue: tx,
        acked,
        task: tokio::spawn(engine.run(rx, acked_tx, requests)),
        checkpoints,
    })
}

/// Appends the Iceberg sinks of `config` (their catalog connection is async).
#[cfg(feature = "iceberg")]
pub(crate) async fn add_iceberg_sinks(
    config: &Config,
    sinks: &mut Vec<Box<dyn Sink>>,
) -> anyhow::Result<()> {
    for (i, sink) in config.sinks.iter().enumerate() {
        if let SinkConfig::Iceberg(c) = sink {
            let s = tidemark_iceberg::IcebergSink::new(c.as_ref().clone())
                .await
                .with_context(|| format!("sinks[{i}]"))?;
            sinks.push(Box::new(s));
        }
    }
    Ok(())
}

/// Runs the pipeline until Ctrl-C / SIGTERM or a definite error.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested; finishing the current transaction and checkpointing");
        let _ = shutdown_tx.send(true);
    });
    run_until(config, shutdown_rx).await
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs the pipeline until `shutdown` turns true or a definite error.
pub async fn run_until(config: Config, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let name = config.pipeline.name.clone();
    let metrics = Metrics::new(&name);
    if config.metrics.enabled {
        let (m, listen) = (metrics.clone(), config.metrics.listen);
        tokio::spawn(async move {
            if let Err(e) = metrics::serve(m, listen).await {
                tracing::error!(error = %e, %listen, "metrics endpoint failed");
            }
        });
    }
    let store = FileCheckpointStore::open(&config.checkpoint.dir, &name)?;
    let checkpoint = store.load()?;
    #[allow(unused_mut)]
    let mut resume = match &checkpoint {
        Some(cp) => Some(cp.position()?),
        None => None,
    };
    // A finished snapshot's record stays in later checkpoints (`tidemark status`, modes).
    if let Some(s) = checkpoint.as_ref().and_then(|c| c.snapshot.clone()) {
        store.track_snapshot(s);
    }
    match &resume {
        Some(p) => tracing::info!(pipeline = %name, position = %p, "resuming from checkpoint"),
        None => tracing::info!(pipeline = %name, "no checkpoint: starting at the slot's position"),
    }
    #[cfg(feature = "delta")]
    if let SourceConfig::Delta(d) = &config.source {
        return run_delta(&config, d, store, metrics, resume, shutdown).await;
    }
    #[cfg(feature = "mysql")]
    if let SourceConfig::Mysql(m) = &config.source {
        let gtids = match checkpoint.as_ref().and_then(|c| c.gtid_set.as_deref()) {
            Some(text) => Some(text.parse::<tidemark_model::GtidSet>().map_err(|e| {
                anyhow::anyhow!("checkpoint {}: gtid_set: {e}", store.path().display())
            })?),
            None => None,
        };
        return crate::source::mysql::pipeline::run(
            &config, m, store, metrics, resume, gtids, shutdown,
        )
        .await;
    }
    #[cfg(feature = "kafka")]
    if let SourceConfig::Kafka(k) = &config.source {
        return run_kafka(&config, k, store, metrics, resume, shutdown).await;
    }
    #[cfg(feature = "iceberg")]
    if let SourceConfig::Iceberg(i) = &config.source {
        return run_iceberg(&config, i, store, metrics, resume, shutdown).await;
    }
    let pg = postgres(&config)?;
    let connect = connect_config(pg)?;
    let engine_store = store.clone();
    let sources = pg_pipeline::SnapshotSources {
        config: &config,
        pg,
        connect: &connect,
        store: &engine_store,
        metrics: &metrics,
    };
    let Some(startup) = prepare_at_startup(&sources, checkpoint.as_ref(), shutdown.clone()).await?
    else {
        return Ok(());
    };
    let job = match startup {
        snapshot::Startup::Done => return Ok(()),
        snapshot::Startup::Stream => None,
        snapshot::Startup::Snapshot(job) => {
            if job.discard_checkpoint {
                resume = None;
            }
            Some(job)
        }
    };
    let StartedEngine {
        queue: tx,
        acked: acked_rx,
        task: mut engine_task,
        checkpoints,
    } = start_engine(&config, &connect.dbname, store, metrics.clone(), resume).await?;
    let mut stop_after_snapshot = false;
    if let Some(job) = job {
        let engine = SnapshotEngine {
            queue: &tx,
            task: &mut engine_task,
            checkpoints: &checkpoints,
        };
        let (last, stop) = match run_with_retries(&sources, engine, job, shutdown.clone()).await {
            Outcome::Done(done) => done,
            ended => return end_after_snapshot(ended, tx, engine_task, &metrics).await,
        };
        resume = last.or(resume);
        stop_after_snapshot = stop;
    }
    if stop_after_snapshot {
        drop(tx);
        engine_task
            .await
            .context("engine task panicked")?
            .context("sink or checkpoint failed")?;
        tracing::info!(pipeline = %name, "snapshot.mode = initial_only: snapshot complete, not streaming");
        return Ok(());
    }
    let source = PgSource {
        config: pg.clone(),
        connect: connect.clone(),
        pipeline: name.clone(),
        metrics: metrics.clone(),
        queue: tx,
        acked: acked_rx,
        resume,
        spill_dir: config.checkpoint.dir.join(format!("{name}.spill")),
        spill_memory: SPILL_MEMORY,
        shutdown,
        incremental: Some(
            crate::source::postgres::snapshot_incremental::Incremental::new(
                name.clone(),
                connect.clone(),
                config.snapshot.clone(),
                engine_store.ledger(),
                metrics.clone(),
            ),
        ),
    };
    drive(
        source.run(),
        engine_task,
        &metrics,
        "postgres source failed",
    )
    .await
}

/// The pipeline error of an engine task that ended (it never ends on its own while a source
/// runs).
pub(crate) fn engine_ended(
    ended: Result<Result<(), crate::engine::EngineError>, tokio::task::JoinError>,
) -> anyhow::Error {
    match ended {
        Ok(Err(e)) => anyhow::Error::new(e).context("sink or checkpoint failed"),
        Ok(Ok(())) => anyhow::anyhow!("the engine stopped while its source was still running"),
        Err(j) => anyhow::Error::new(j).context("engine task panicked"),
    }
}

/// How a pipeline ends when its initial snapshot did not go on (`ended` is not
/// [`Outcome::Done`], or the caller stops anyway): the engine's queue is closed, so after a
/// shutdown it drains what is queued and its result is the pipeline's; after a definite error
/// it drains too, and the error is the pipeline's (and `status`'s); after the engine's own
/// error there is nothing left to drain.
pub(crate) async fn end_after_snapshot<T>(
    ended: Outcome<T>,
    queue: queue::QueueSender<std::sync::Arc<tidemark_model::Transaction>>,
    engine: tokio::task::JoinHandle<Result<(), crate::engine::EngineError>>,
    metrics: &Metrics,
) -> anyhow::Result<()> {
    drop(queue);
    match ended {
        Outcome::Done(_) | Outcome::Shutdown => engine
            .await
            .context("engine task panicked")?
            .context("sink or checkpoint failed"),
        Outcome::Failed(e) => {
            metrics.set_error(format!("{e:#}"));
            let _ = engine.await;
            Err(e)
        }
        Outcome::Engine(e) => {
            metrics.set_error(format!("{e:#}"));
            Err(e)
        }
    }
}

/// How [`race_engine`] ended.
pub(crate) enum Raced<T> {
    /// The work (a source, a snapshot) finished; the engine is still running.
    Work(T),
    /// The engine ended first — a sink's or the checkpoint's definite error — and the work
    /// was dropped at its next await (it could otherwise wait forever on a full queue that
    /// nobody drains). Nothing is lost: only what the engine checkpointed is acknowledged.
    Engine(anyhow::Error),
}

/// Awaits `work` (something feeding the engine's queue) unless the engine ends first.
pub(crate) async fn race_engine<T>(
    work: impl std::future::Future<Output = T>,
    engine: &mut tokio::task::JoinHandle<Result<(), crate::engine::EngineError>>,
) -> Raced<T> {
    tokio::pin!(work);
    tokio::select! {
        biased;
        ended = &mut *engine => Raced::Engine(engine_ended(ended)),
        out = &mut work => Raced::Work(out),
    }
}

/// Runs a source until it ends, then lets the engine drain what is queued, checkpoint and
/// end. Whichever fails first is the pipeline's error (`what`: "postgres source", …); a
/// failing engine stops the source instead of leaving it blocked on the queue.
pub(crate) async fn drive<E>(
    source: impl std::future::Future<Output = Result<(), E>>,
    mut engine: tokio::task::JoinHandle<Result<(), crate::engine::EngineError>>,
    metrics: &Metrics,
    what: &'static str,
) -> anyhow::Result<()>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let source_result = match race_engine(source, &mut engine).await {
        Raced::Work(r) => r,
        Raced::Engine(e) => {
            metrics.set_error(format!("{e:#}"));
            return Err(e);
        }
    };
    // The source dropped its queue sender: the engine drains what is queued, checkpoints, ends.
    let engine_result = engine.await.context("engine task panicked")?;
    match (source_result, engine_result) {
        (_, Err(e)) => {
            metrics.set_error(e.to_string());
            Err(e).context("sink or checkpoint failed")
        }
        (Err(e), Ok(())) => {
            metrics.set_error(e.to_string());
            Err(e).context(what)
        }
        (Ok(()), Ok(())) => Ok(()),
    }
}

/// The Postgres source of commands that need one.
fn postgres(config: &Config) -> anyhow::Result<&PostgresSourceConfig> {
    config
        .source
        .as_postgres()
        .context("this command needs a postgres source (source.kind = \"postgres\")")
}

/// Runs a pipeline whose source is a Delta table's change feed (`source.kind = "delta"`).
#[cfg(feature = "delta")]
async fn run_delta(
    config: &Config,
    d: &crate::source::delta::DeltaSourceConfig,
    store: FileCheckpointStore,
    metrics: std::sync::Arc<Metrics>,
    resume: Option<tidemark_model::Position>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let started = start_engine(
        config,
        &d.table_id().namespace,
        store,
        metrics.clone(),
        resume,
    )
    .await?;
    let engine_task = started.task;
    let source = crate::source::delta::DeltaSource {
        config: d.clone(),
        queue: started.queue,
        metrics: metrics.clone(),
        resume,
        shutdown,
    };
    drive(source.run(), engine_task, &metrics, "delta source failed").await
}

/// Runs a pipeline whose source is an Iceberg table's snapshots (`source.kind = "iceberg"`).
#[cfg(feature = "iceberg")]
async fn run_iceberg(
    config: &Config,
    i: &crate::source::iceberg::IcebergSourceConfig,
    store: FileCheckpointStore,
    metrics: std::sync::Arc<Metrics>,
    resume: Option<tidemark_model::Position>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let started = start_engine(
        config,
        &i.table_id().namespace,
        store,
        metrics.clone(),
        resume,
    )
    .await?;
    let engine_task = started.task;
    let source = crate::source::iceberg::IcebergSource {
        config: i.clone(),
        queue: started.queue,
        metrics: metrics.clone(),
        resume,
        shutdown,
    };
    drive(source.run(), engine_task, &metrics, "iceberg source failed").await
}

/// `tidemark snapshot --table … [--filter …]`: asks the running pipeline for an incremental
/// snapshot of tables, each optionally filtered (a signal in the replication stream; the
/// pipeline need not be reachable otherwise). Filters are checked with the server first.
pub async fn signal_snapshot(
    config: &Config,
    requests: &[crate::snapshot::filter::TableRequest],
) -> anyhow::Result<String> {
    use crate::source::postgres::snapshot_incremental::{parse_tables, send_request};
    #[cfg(feature = "mysql")]
    if let SourceConfig::Mysql(m) = &config.source {
        return crate::source::mysql::snapshot_incremental::request(config, m, requests).await;
    }
    let pg = postgres(config)?;
    let tables: Vec<String> = requests.iter().map(|r| r.table.clone()).collect();
    parse_tables(&tables).map_err(|e| anyhow::anyhow!("--table {e}"))?;
    if !pg.tables.is_empty() {
        let listed: Vec<String> = pg.table_ids().iter().map(|t| t.to_string()).collect();
        for t in &tables {
            if !listed.contains(t) {
                anyhow::bail!(
                    "--table {t}: not in source.tables {listed:?}; the pipeline does not stream it"
                );
            }
        }
    }
    let lsn = send_request(&connect_config(pg)?, &config.pipeline.name, requests).await?;
    Ok(format!(
        "incremental snapshot of {} requested (signal at {lsn}); the pipeline starts it when its stream reaches the signal; follow it with `tidemark status`",
        crate::snapshot::filter::describe(requests)
    ))
}

/// Runs a pipeline whose source is Debezium-format Kafka topics (`source.kind = "kafka"`).
#[cfg(feature = "kafka")]
async fn run_kafka(
    config: &Config,
    k: &crate::source::kafka::KafkaSourceConfig,
    store: FileCheckpointStore,
    metrics: std::sync::Arc<Metrics>,
    resume: Option<tidemark_model::Position>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let started =
        start_engine(config, config.server_name(), store, metrics.clone(), resume).await?;
    let engine_task = started.task;
    let source = crate::source::kafka::KafkaSource {
        config: k.clone(),
        pipeline: config.pipeline.name.clone(),
        dir: config.checkpoint.dir.clone(),
        queue: started.queue,
        acked: started.acked,
        metrics: metrics.clone(),
        resume,
        shutdown,
    };
    drive(source.run(), engine_task, &metrics, "kafka source failed").await
}

/// `tidemark validate`: the server's settings for logical replication.
pub async fn healthcheck(config: &Config) -> anyhow::Result<String> {
    #[cfg(feature = "mysql")]
    if let SourceConfig::Mysql(m) = &config.source {
        return crate::source::mysql::pipeline::healthcheck(m).await;
    }
    let pg = postgres(config)?;
    let control = PgControl::connect(&connect_config(pg)?).await?;
    let info = control.check_server().await?;
    Ok(format!(
        "postgres ok: server {}, wal_level={}, replication slots {}/{}, role {} (replication: {})",
        info.server_version_num,
        info.wal_level,
        info.used_replication_slots,
        info.max_replication_slots,
        info.role,
        info.has_replication || info.is_superuser
    ))
}

/// `tidemark status`: checkpoint, slot and lag.
pub async fn status(config: &Config) -> anyhow::Result<String> {
    let name = &config.pipeline.name;
    let store = FileCheckpointStore::open(&config.checkpoint.dir, name)?;
    let mut out = match store.load()? {
        Some(cp) => format!(
            "pipeline {name}: checkpoint {} (saved at {} ms)\n",
            cp.position, cp.saved_at_ms
        ),
        None => format!("pipeline {name}: no checkpoint yet\n"),
    };
    if let Some(snap) = store.load()?.and_then(|c| c.snapshot) {
        out.push_str(&crate::snapshot::status_lines(&snap));
    }
    #[cfg(feature = "mysql")]
    if let SourceConfig::Mysql(m) = &config.source {
        out.push_str(&crate::source::mysql::pipeline::status(m, &store).await?);
        return Ok(out.trim_end().to_string());
    }
    let pg = postgres(config)?;
    let slot = pg.slot_name(name);
    let control = PgControl::connect(&connect_config(pg)?).await?;
    match control.slot_info(&slot).await? {
        Some(s) => out.push_str(&format!(
            "slot {slot}: active={} confirmed_flush={} wal_status={} retained_wal_bytes={}\n",
            s.active,
            s.confirmed_flush_lsn
                .map(|l| tidemark_model::Lsn(l).to_string())
                .unwrap_or_default(),
            s.wal_status.unwrap_or_default(),
            s.lag_bytes.unwrap_or(0)
        )),
        None => out.push_str(&format!("slot {slot}: does not exist\n")),
    }
    Ok(out.trim_end().to_string())
}

/// `tidemark reset`: forget the checkpoint; drop the slot only if allowed.
pub async fn reset(config: &Config) -> anyhow::Result<String> {
    let name = &config.pipeline.name;
    let store = FileCheckpointStore::open(&config.checkpoint.dir, name)?;
    store.remove()?;
    #[cfg(feature = "mysql")]
    if let SourceConfig::Mysql(_) = &config.source {
        return Ok("checkpoint removed (a MySQL replica holds nothing on the server)".into());
    }
    let pg = postgres(config)?;
    let slot = pg.slot_name(name);
    if pg.drop_slot_on_reset {
        let control = PgControl::connect(&connect_config(pg)?).await?;
        let dropped = control.drop_slot(&slot).await?;
        Ok(format!(
            "checkpoint removed; slot {slot} {}",
            if dropped { "dropped" } else { "did not exist" }
        ))
    } else {
        Ok(format!("checkpoint removed; slot {slot} kept (set source.drop_slot_on_reset = true to drop it)"))
    }
}
