//! The replication loop: binlog dump → decoder → byte-bounded queue, with reconnects.
//!
//! ```text
//! session: control conn (checks, binlog files, catalog) + replica conn (register, dump)
//!   event ─► raw bytes ─► TABLE_MAP? catalog lookup ─► Decoder::decode ─► queue.send(txn, bytes).await
//!                                                                           (backpressure: the
//!                                                                            socket is not read)
//! error: transient ─► backoff (500 ms × 2ⁿ, ≤ max_backoff) ─► new session from the last
//!        position handed to the engine (nothing lost, nothing repeated); definite ─► stop
//! ```

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use mysql_async::binlog::events::Event;
use mysql_async::prelude::*;
use mysql_async::{BinlogStreamRequest, Conn, Opts};
use tidemark_binlog::event::code;
use tidemark_binlog::{Checksum, Decoder, DecoderOptions, Step};
use tidemark_model::mysql_position::{binlog_file_name, binlog_file_number};
use tidemark_model::{Gtid, MysqlPosition, Position, Transaction};
use tokio::sync::watch;

use super::config::{MysqlSourceConfig, Start};
use super::control::{self, MysqlControl};
use super::error::MysqlSourceError;
use crate::engine::queue::QueueSender;
use crate::metrics::Metrics;

/// The MySQL/MariaDB source of one pipeline.
pub struct MysqlSource {
    pub config: MysqlSourceConfig,
    pub pipeline: String,
    pub metrics: Arc<Metrics>,
    pub queue: QueueSender<Arc<Transaction>>,
    /// The checkpoint to resume from (every change at or before it is durable).
    pub resume: Option<Position>,
    pub shutdown: watch::Receiver<bool>,
}

type R<T> = Result<T, MysqlSourceError>;

/// Rebuilds the event as the server sent it (mysql_common splits off the checksum footer and the
/// FDE's algorithm byte; the original checksum bytes are kept, so verification is real).
fn raw_event(ev: &Event) -> Vec<u8> {
    let h = ev.header();
    let mut out = Vec::with_capacity(h.event_size() as usize);
    out.extend_from_slice(&h.timestamp().to_le_bytes());
    out.push(h.event_type_raw());
    out.extend_from_slice(&h.server_id().to_le_bytes());
    out.extend_from_slice(&h.event_size().to_le_bytes());
    out.extend_from_slice(&h.log_pos().to_le_bytes());
    out.extend_from_slice(&h.flags_raw().to_le_bytes());
    out.extend_from_slice(ev.data());
    if h.event_type_raw() == code::FORMAT_DESCRIPTION {
        if let Ok(Some(alg)) = ev.footer().get_checksum_alg() {
            out.push(alg as u8);
        }
    }
    if let Some(c) = ev.checksum() {
        out.extend_from_slice(&c);
    }
    out
}

impl MysqlSource {
    /// Runs until shutdown or a definite error.
    pub async fn run(mut self) -> R<()> {
        let opts = control::opts(&self.config)?;
        let mut last = self.resume.and_then(|p| p.as_mysql().copied());
        if self.resume.is_some() && last.is_none() {
            return Err(MysqlSourceError::Config(format!(
                "the checkpoint {} is not a MySQL position; this pipeline's checkpoint belongs to another source",
                self.resume.map(|p| p.to_string()).unwrap_or_default()
            )));
        }
        let mut backoff = Duration::from_millis(500);
        loop {
            let sent_before = last;
            match self.session(&opts, &mut last).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_transient() => {
                    self.metrics.set_streaming(false);
                    if last != sent_before {
                        backoff = Duration::from_millis(500);
                    }
                    tracing::warn!(pipeline = %self.pipeline, error = %e, backoff_ms = backoff.as_millis() as u64, "mysql source: reconnecting");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = self.shutdown.changed() => return Ok(()),
                    }
                    backoff = (backoff * 2).min(self.config.max_backoff);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One connection's life: returns `Ok` on shutdown.
    async fn session(&mut self, opts: &Opts, last: &mut Option<MysqlPosition>) -> R<()> {
        let mut ctl = MysqlControl::connect(opts).await?;
        let info = ctl.check_server(self.config.allow_partial_images).await?;
        let addr = ctl.addr.clone();
        let mut decoder = Decoder::new(DecoderOptions {
            max_chunk_rows: self.config.max_chunk_rows,
            ..Default::default()
        });
        decoder.set_checksum(if info.binlog_checksum.eq_ignore_ascii_case("NONE") {
            Checksum::None
        } else {
            Checksum::Crc32
        });
        let cfg = self.config.clone();
        decoder.set_filter(move |t| cfg.includes(t));
        // Where to start: after what the engine already has, else the configured start.
        let (file, pos, gtids) = match last {
            Some(p) => {
                let logs = ctl.binary_logs().await?;
                let name = logs
                    .iter()
                    .find(|(n, _)| binlog_file_number(n) == Some(p.file))
                    .map(|(n, _)| n.clone())
                    .ok_or_else(|| MysqlSourceError::Purged {
                        addr: addr.clone(),
                        number: p.file,
                        position: Position::Mysql(*p).to_string(),
                    })?;
                decoder.skip_until(*p);
                (Some(name), p.resume_offset(), None)
            }
            None => match self.config.start().map_err(MysqlSourceError::Config)? {
                Start::Current => {
                    let (f, p) = ctl.current_position().await?;
                    (Some(f), p, None)
                }
                Start::Earliest => {
                    let logs = ctl.binary_logs().await?;
                    (logs.first().map(|(n, _)| n.clone()), 4, None)
                }
                Start::File { file, pos } => (Some(file), pos, None),
                Start::MariadbGtids(g) => (None, 4, Some(g)),
                Start::MysqlGtidSet(_) => {
                    return Err(MysqlSourceError::Config(
                        "starting from a MySQL GTID set is not implemented yet; use <file>:<pos> (see SHOW BINARY LOG STATUS)".into(),
                    ))
                }
            },
        };
        if let Some(f) = &file {
            decoder.set_file(f).map_err(|e| MysqlSourceError::Decode {
                addr: addr.clone(),
                source: Box::new(e),
            })?;
        }
        let mut repl =
            Conn::new(opts.clone())
                .await
                .map_err(|source| MysqlSourceError::Client {
                    addr: addr.clone(),
                    context: "connect (replica)",
                    source,
                })?;
        let hb_ns = self
            .config
            .heartbeat_interval
            .as_nanos()
            .min(u128::from(u64::MAX)) as u64;
        let mut setup = vec![format!("SET @master_heartbeat_period = {hb_ns}")];
        if info.mariadb {
            // Without capability 4 MariaDB replaces its GTID events with dummy QUERY events.
            setup.push("SET @mariadb_slave_capability = 4".into());
            if let Some(g) = &gtids {
                let state: Vec<String> = g.iter().map(Gtid::to_string).collect();
                setup.push(format!("SET @slave_connect_state = '{}'", state.join(",")));
                setup.push("SET @slave_gtid_strict_mode = 0".into());
                setup.push("SET @slave_gtid_ignore_duplicates = 0".into());
            }
        }
        for q in setup {
            repl.query_drop(q)
                .await
                .map_err(|source| MysqlSourceError::Client {
                    addr: addr.clone(),
                    context: "setting up the replica session",
                    source,
                })?;
        }
        let fname = file.clone().unwrap_or_default();
        let mut request = BinlogStreamRequest::new(self.config.server_id);
        if file.is_some() {
            request = request.with_filename(fname.as_bytes()).with_pos(pos);
        }
        let mut stream =
            repl.get_binlog_stream(request)
                .await
                .map_err(|source| MysqlSourceError::Client {
                    addr: addr.clone(),
                    context: "COM_BINLOG_DUMP",
                    source,
                })?;
        tracing::info!(pipeline = %self.pipeline, %addr, server = %info.version, file = %fname, pos, "mysql source: streaming");
        self.metrics.set_streaming(true);
        let silence = self.config.heartbeat_interval * 3;
        // Events of a transaction payload that mysql_async yields again after the payload event
        // (it decompresses them itself); the decoder already read them from the payload.
        let mut inner_to_skip = 0usize;
        loop {
            let next = tokio::select! {
                _ = self.shutdown.changed() => return Ok(()),
                n = tokio::time::timeout(silence, stream.next()) => n,
            };
            let ev = match next {
                Err(_) => {
                    return Err(MysqlSourceError::Timeout {
                        addr,
                        seconds: silence.as_secs(),
                    })
                }
                Ok(None) => return Err(MysqlSourceError::Eof { addr }),
                Ok(Some(Err(source))) => {
                    return Err(MysqlSourceError::Client {
                        addr,
                        context: "reading the binlog stream",
                        source,
                    })
                }
                Ok(Some(Ok(ev))) => ev,
            };
            if inner_to_skip > 0 {
                inner_to_skip -= 1;
                continue;
            }
            let raw = raw_event(&ev);
            if raw[4] == code::TRANSACTION_PAYLOAD {
                inner_to_skip =
                    tidemark_binlog::events::payload_event_count(&raw, decoder.format().checksum)
                        .map_err(|kind| MysqlSourceError::Decode {
                        addr: addr.clone(),
                        source: Box::new(tidemark_binlog::DecodeError {
                            file: decoder.file().0.to_owned(),
                            pos: 0,
                            event: "TRANSACTION_PAYLOAD_EVENT",
                            kind: Box::new(kind),
                        }),
                    })?;
            }
            if let Some(t) = Decoder::peek_table_map(&raw) {
                if decoder.needs_catalog(&t) {
                    let c = ctl.catalog(&t).await?;
                    decoder.register_catalog(t, c);
                }
            }
            let steps = decoder.decode(&raw).map_err(|e| MysqlSourceError::Decode {
                addr: addr.clone(),
                source: Box::new(e),
            })?;
            for step in steps {
                match step {
                    Step::Emitted(txn) => self.send(txn, last).await?,
                    Step::Ddl { end, database, .. } => {
                        tracing::info!(pipeline = %self.pipeline, %database, position = %end, "mysql source: DDL; catalog refreshed on next use");
                        self.send(Transaction::new(None, None, end), last).await?;
                    }
                    Step::Rotate { file, pos } => {
                        tracing::debug!(pipeline = %self.pipeline, %file, pos, "rotate");
                    }
                    Step::Heartbeat { .. } => self.metrics.update_lag(),
                    Step::FormatDescription { .. } | Step::Stop => {}
                }
            }
        }
    }

    async fn send(&mut self, txn: Transaction, last: &mut Option<MysqlPosition>) -> R<()> {
        for b in txn.batches() {
            let table = b.schema.table.to_string();
            for (op, n) in count_ops(b) {
                self.metrics.count_source(&table, op, n, 0);
            }
        }
        if txn.complete {
            self.metrics.count_transaction();
        }
        let end = txn.end.as_mysql().copied();
        let bytes = txn.byte_size() as u64;
        self.queue
            .send(Arc::new(txn), bytes)
            .await
            .map_err(|_| MysqlSourceError::QueueClosed)?;
        if end.is_some() {
            *last = end;
        }
        Ok(())
    }
}

fn count_ops(b: &tidemark_model::ChangeBatch) -> Vec<(&'static str, u64)> {
    let mut counts = [0u64; 5];
    for i in 0..b.num_rows() {
        counts[b.op(i).as_u8() as usize % 5] += 1;
    }
    ["r", "c", "u", "d", "t"]
        .into_iter()
        .zip(counts)
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// The binlog file name of a position, given the server's basename (for messages).
pub fn file_name(basename: &str, p: &MysqlPosition) -> String {
    binlog_file_name(basename, p.file)
}
