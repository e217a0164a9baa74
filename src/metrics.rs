//! Prometheus metrics and the health endpoints.
//!
//! Names follow `tidemark_<area>_<name>_<unit>[_total]` (STYLE.md §9). Labels come from a bounded
//! set: pipeline, sink, the configured table and the op. Never an LSN, xid or error text.
//! Counters are bumped once per batch, not per row, so the hot path stays cheap.
//!
//! The registry and text encoding come from `prometheus-client` (the Prometheus project's Rust
//! client). The HTTP side is a few lines on a tokio `TcpListener` rather than a web framework:
//! three fixed GET routes do not justify hyper's dependency tree in every build.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableOpLabels {
    pub pipeline: String,
    pub table: String,
    pub op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PipelineLabels {
    pub pipeline: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabels {
    pub pipeline: String,
    pub table: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabels {
    pub pipeline: String,
    pub sink: String,
}

/// Every metric the engine reports.
pub struct Metrics {
    pipeline: String,
    registry: Registry,
    /// Changes decoded, by table and op.
    pub source_events: Family<TableOpLabels, Counter>,
    /// Wire bytes of decoded changes, by table and op.
    pub source_bytes: Family<TableOpLabels, Counter>,
    /// Source transactions decoded.
    pub source_transactions: Family<PipelineLabels, Counter>,
    /// Bytes between the server's WAL end and the slot's confirmed flush position.
    pub source_slot_lag_bytes: Family<PipelineLabels, Gauge>,
    /// Changes written by each sink.
    pub sink_events: Family<SinkLabels, Counter>,
    /// Checkpoints persisted.
    pub checkpoints: Family<PipelineLabels, Counter>,
    /// Seconds between now and the commit time of the newest change every sink acknowledged.
    pub lag_seconds: Family<PipelineLabels, Gauge<f64, AtomicU64>>,
    /// Snapshot rows read and handed to the sinks, by table (`docs/snapshots.md`).
    pub snapshot_rows: Family<TableLabels, Counter>,
    /// Estimated rows of the table still to read (planning estimate minus rows read).
    pub snapshot_rows_remaining: Family<TableLabels, Gauge>,
    /// Snapshot chunks handed to the sinks, by table.
    pub snapshot_chunks: Family<TableLabels, Counter>,
    /// Seconds spent on the table so far (final once the table is done).
    pub snapshot_duration_seconds: Family<TableLabels, Gauge<f64, AtomicU64>>,
    /// 1 while an initial snapshot runs, 2 while an incremental one runs, else 0.
    pub snapshot_running: Family<PipelineLabels, Gauge>,
    /// Transient errors an initial snapshot retried in-process (`snapshot/retry.rs`).
    pub snapshot_retries: Family<PipelineLabels, Counter>,
    /// Commit time (Unix µs) of the newest acknowledged change; the lag is computed from it.
    acked_commit_us: AtomicI64,
    health: Mutex<Health>,
}

/// What `/readyz` reports.
#[derive(Debug, Clone, Default)]
pub struct Health {
    /// The source is streaming.
    pub streaming: bool,
    /// A definite error stopped the pipeline.
    pub error: Option<String>,
    /// The transient error an initial snapshot is waiting to retry after (cleared when it
    /// resumes).
    pub retrying: Option<String>,
}

impl Metrics {
    /// A fresh registry for `pipeline`.
    pub fn new(pipeline: &str) -> Arc<Self> {
        let mut registry = Registry::with_prefix("tidemark");
        let m = Metrics {
            pipeline: pipeline.to_string(),
            source_events: Family::default(),
            source_bytes: Family::default(),
            source_transactions: Family::default(),
            source_slot_lag_bytes: Family::default(),
            sink_events: Family::default(),
            checkpoints: Family::default(),
            lag_seconds: Family::default(),
            snapshot_rows: Family::default(),
            snapshot_rows_remaining: Family::default(),
            snapshot_chunks: Family::default(),
            snapshot_duration_seconds: Family::default(),
            snapshot_running: Family::default(),
            snapshot_retries: Family::default(),
            acked_commit_us: AtomicI64::new(0),
            health: Mutex::new(Health::default()),
            registry: Registry::default(),
        };
        registry.register("source_events", "Changes decoded", m.source_events.clone());
        registry.register(
            "source_bytes",
            "Wire bytes of decoded changes",
            m.source_bytes.clone(),
        );
        registry.register(
            "source_transactions",
            "Transactions decoded",
            m.source_transactions.clone(),
        );
        registry.register(
            "source_slot_lag_bytes",
            "WAL bytes retained by the replication slot",
            m.source_slot_lag_bytes.clone(),
        );
        registry.register(
            "sink_events",
            "Changes written by the sink",
            m.sink_events.clone(),
        );
        registry.register(
            "checkpoints",
            "Checkpoints persisted",
            m.checkpoints.clone(),
        );
        registry.register(
            "lag_seconds",
            "Now minus the commit time of the newest change every sink acknowledged",
            m.lag_seconds.clone(),
        );
        registry.register(
            "snapshot_rows",
            "Snapshot rows read and handed to the sinks",
            m.snapshot_rows.clone(),
        );
        registry.register(
            "snapshot_rows_remaining",
            "Estimated snapshot rows still to read",
            m.snapshot_rows_remaining.clone(),
        );
        registry.register(
            "snapshot_chunks",
            "Snapshot chunks handed to the sinks",
            m.snapshot_chunks.clone(),
        );
        registry.register(
            "snapshot_duration_seconds",
            "Seconds spent snapshotting the table",
            m.snapshot_duration_seconds.clone(),
        );
        registry.register(
            "snapshot_running",
            "1 while an initial snapshot runs, 2 while an incremental one runs",
            m.snapshot_running.clone(),
        );
        registry.register(
            "snapshot_retries",
            "Transient errors an initial snapshot retried in-process",
            m.snapshot_retries.clone(),
        );
        Arc::new(Metrics { registry, ..m })
    }

    /// Labels of a snapshot table.
    pub fn table_labels(&self, table: &str) -> TableLabels {
        TableLabels {
            pipeline: self.pipeline.clone(),
            table: table.to_string(),
        }
    }

    /// One snapshot chunk of `rows` rows of `table` went out: the rows and chunks counters,
    /// the remaining-rows estimate and the table's duration so far (each where given).
    pub fn snapshot_chunk(
        &self,
        table: &str,
        rows: u64,
        remaining: Option<i64>,
        duration_secs: Option<f64>,
    ) {
        let labels = self.table_labels(table);
        self.snapshot_rows.get_or_create(&labels).inc_by(rows);
        self.snapshot_chunks.get_or_create(&labels).inc();
        if let Some(r) = remaining {
            self.snapshot_rows_remaining.get_or_create(&labels).set(r);
        }
        if let Some(d) = duration_secs {
            self.snapshot_duration_seconds.get_or_create(&labels).set(d);
        }
    }

    /// Sets `tidemark_snapshot_running` (0 idle, 1 initial, 2 incremental).
    pub fn set_snapshot_running(&self, state: i64) {
        self.snapshot_running
            .get_or_create(&self.pipeline_labels())
            .set(state);
    }

    fn pipeline_labels(&self) -> PipelineLabels {
        PipelineLabels {
            pipeline: self.pipeline.clone(),
        }
    }

    /// Counts `rows` changes of `table` with `op` carried in `bytes` wire bytes.
    pub fn count_source(&self, table: &str, op: &str, rows: u64, bytes: u64) {
        let labels = TableOpLabels {
            pipeline: self.pipeline.clone(),
            table: table.into(),
            op: op.into(),
        };
        self.source_events.get_or_create(&labels).inc_by(rows);
        self.source_bytes.get_or_create(&labels).inc_by(bytes);
    }

    /// Counts one decoded transaction.
    pub fn count_transaction(&self) {
        self.source_transactions
            .get_or_create(&self.pipeline_labels())
            .inc();
    }

    /// Counts changes a sink wrote.
    pub fn count_sink(&self, sink: &str, rows: u64) {
        let labels = SinkLabels {
            pipeline: self.pipeline.clone(),
            sink: sink.into(),
        };
        self.sink_events.get_or_create(&labels).inc_by(rows);
    }

    /// Records the slot's retained WAL.
    pub fn set_slot_lag_bytes(&self, bytes: i64) {
        self.source_slot_lag_bytes
            .get_or_create(&self.pipeline_labels())
            .set(bytes);
    }

    /// Records a persisted checkpoint whose newest change committed at `commit_us` (Unix µs).
    pub fn checkpointed(&self, commit_us: Option<i64>) {
        self.checkpoints
            .get_or_create(&self.pipeline_labels())
            .inc();
        if let Some(us) = commit_us {
            self.acked_commit_us.fetch_max(us, Ordering::Relaxed);
        }
        self.update_lag();
    }

    /// Recomputes the lag gauge from the newest acknowledged commit time.
    pub fn update_lag(&self) {
        let acked = self.acked_commit_us.load(Ordering::Relaxed);
        if acked > 0 {
            let now_us = crate::checkpoint::now_ms() * 1000;
            let lag = ((now_us - acked) as f64 / 1e6).max(0.0);
            self.lag_seconds
                .get_or_create(&self.pipeline_labels())
                .set(lag);
        }
    }

    /// Marks that the source streams (or not).
    pub fn set_streaming(&self, streaming: bool) {
        if let Ok(mut h) = self.health.lock() {
            h.streaming = streaming;
        }
    }

    /// Records the transient error an initial snapshot waits to retry after (`Some`: not
    /// streaming, counted in `tidemark_snapshot_retries_total`), or that it resumed (`None`).
    pub fn set_snapshot_retrying(&self, error: Option<String>) {
        if error.is_some() {
            self.snapshot_retries
                .get_or_create(&self.pipeline_labels())
                .inc();
        }
        if let Ok(mut h) = self.health.lock() {
            if error.is_some() {
                h.streaming = false;
            }
            h.retrying = error;
        }
    }

    /// Records the definite error that stopped the pipeline.
    pub fn set_error(&self, error: String) {
        if let Ok(mut h) = self.health.lock() {
            h.error = Some(error);
            h.streaming = false;
        }
    }

    /// The current health.
    pub fn health(&self) -> Health {
        self.health.lock().map(|h| h.clone()).unwrap_or_default()
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        self.update_lag();
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` until the task is dropped.
pub async fn serve(metrics: Arc<Metrics>, listen: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    tracing::info!(%listen, "metrics endpoint listening");
    loop {
        let (mut socket, _) = listener.accept().await?;
        let metrics = metrics.clone();
        tokio::spawn(async move {
            // The request line may arrive in several segments: read until the end of the
            // headers (bounded in size and time) before routing.
            let mut buf = vec![0u8; 8192];
            let mut n = 0;
            let read_head = async {
                while n < buf.len() && !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(m) => n += m,
                    }
                }
            };
            if tokio::time::timeout(std::time::Duration::from_secs(5), read_head)
                .await
                .is_err()
            {
                return;
            }
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let (status, content_type, body) = route(&metrics, path);
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        });
    }
}

fn route(metrics: &Metrics, path: &str) -> (&'static str, &'static str, String) {
    match path {
        "/metrics" => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        ),
        "/healthz" => ("200 OK", "text/plain", "ok\n".into()),
        "/readyz" => {
            let h = metrics.health();
            match (h.error, h.streaming) {
                (Some(e), _) => (
                    "503 Service Unavailable",
                    "text/plain",
                    format!("error: {e}\n"),
                ),
                (None, false) if h.retrying.is_some() => (
                    "503 Service Unavailable",
                    "text/plain",
                    format!(
                        "retrying the snapshot after a transient error: {}\n",
                        h.retrying.unwrap_or_default()
                    ),
                ),
                (None, true) => ("200 OK", "text/plain", "streaming\n".into()),
                (None, false) => ("503 Service Unavailable", "text/plain", "starting\n".into()),
            }
        }
        _ => ("404 Not Found", "text/plain", "not found\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_the_documented_names() {
        let m = Metrics::new("p");
        m.count_source("public.orders", "c", 3, 120);
        m.count_sink("out", 3);
        m.checkpointed(Some(crate::checkpoint::now_ms() * 1000 - 2_000_000));
        let text = m.encode();
        for needle in [
            "tidemark_source_events_total{pipeline=\"p\",table=\"public.orders\",op=\"c\"} 3",
            "tidemark_source_bytes_total{pipeline=\"p\",table=\"public.orders\",op=\"c\"} 120",
            "tidemark_sink_events_total{pipeline=\"p\",sink=\"out\"} 3",
            "tidemark_lag_seconds{pipeline=\"p\"}",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }

    #[test]
    fn readyz_reports_errors() {
        let m = Metrics::new("p");
        assert!(route(&m, "/readyz").0.starts_with("503"));
        m.set_streaming(true);
        assert!(route(&m, "/readyz").0.starts_with("200"));
        m.set_error("slot lost".into());
        let (status, _, body) = route(&m, "/readyz");
        assert!(status.starts_with("503") && body.contains("slot lost"));
    }

    #[test]
    fn readyz_and_metrics_show_a_snapshot_retry() {
        let m = Metrics::new("p");
        m.set_streaming(true);
        m.set_snapshot_retrying(Some("connection closed".into()));
        let (status, _, body) = route(&m, "/readyz");
        assert!(
            status.starts_with("503")
                && body.contains("retrying the snapshot")
                && body.contains("connection closed"),
            "{status} {body}"
        );
        assert!(m
            .encode()
            .contains("tidemark_snapshot_retries_total{pipeline=\"p\"} 1"));
        m.set_snapshot_retrying(None);
        assert_eq!(route(&m, "/readyz").2, "starting\n");
    }
}
