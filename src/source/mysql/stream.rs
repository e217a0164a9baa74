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
//!
//! Each session has its own decoder, but the tables' schema versions go on from the last
//! session (and from the initial snapshot's): sinks cache their encoding per table and version,
//! so a version number must never stand for two column sets in one process.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use mysql_async::binlog::events::Event;
use mysql_async::prelude::*;
use mysql_async::{Conn, Opts, OptsBuilder};
use tidemark_binlog::event::code;
use tidemark_binlog::{Checksum, Decoder, DecoderOptions, Step};
use tidemark_model::mysql_position::{binlog_file_name, binlog_file_number};
use tidemark_model::{
    Gtid, GtidLedgerHandle, GtidSet, MysqlPosition, Position, SchemaVersions, Transaction,
};
use tokio::sync::watch;

use super::annotate;
use super::config::{MysqlSourceConfig, Start};
use super::control::{self, MysqlControl, ServerInfo};
use super::error::MysqlSourceError;
use super::gtid::{self, DumpFrom, Resume};
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
    /// MySQL: the GTID set executed at `resume` (the checkpoint's `gtid_set`).
    pub resume_gtids: Option<GtidSet>,
    /// Where the executed set at each transaction end is registered for the checkpoint.
    pub gtids: GtidLedgerHandle,
    pub shutdown: watch::Receiver<bool>,
    /// Incremental snapshots (signal and watermark rows in the stream;
    /// `snapshot_incremental.rs`).
    pub incremental: Option<super::snapshot_incremental::Incremental>,
    /// The latest schema version of each table, across sessions (`session`), seeded with the
    /// initial snapshot's schemas.
    pub versions: SchemaVersions,
}

/// The last position handed to the engine and the MySQL GTID set executed at it.
#[derive(Default)]
struct Sent {
    position: Option<MysqlPosition>,
    gtids: Option<Arc<GtidSet>>,
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
        let mut last = Sent {
            position: self.resume.and_then(|p| p.as_mysql().copied()),
            gtids: self.resume_gtids.take().map(Arc::new),
        };
        if self.resume.is_some() && last.position.is_none() {
            return Err(MysqlSourceError::Config(format!(
                "the checkpoint {} is not a MySQL position; this pipeline's checkpoint belongs to another source",
                self.resume.map(|p| p.to_string()).unwrap_or_default()
            )));
        }
        let mut backoff = Duration::from_millis(500);
        loop {
            let sent_before = last.position;
            match self.session(&opts, &mut last).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_transient() => {
                    self.metrics.set_streaming(false);
                    if last.position != sent_before {
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

    /// `include_query` with the server not logging statements gives null `source.query`
    /// (as Debezium does); say so once per session.
    async fn warn_if_queries_not_logged(&self, ctl: &mut MysqlControl, info: &ServerInfo) -> R<()> {
        let var = if info.mariadb {
            "binlog_annotate_row_events"
        } else {
            "binlog_rows_query_log_events"
        };
        let v = ctl.var(var).await?.unwrap_or_default();
        if v != "1" && !v.eq_ignore_ascii_case("ON") {
            tracing::warn!(pipeline = %self.pipeline, variable = var, value = %v, "mysql source: include_query is on but the server does not log statements; source.query stays null (SET GLOBAL {var} = ON)");
        }
        Ok(())
    }

    /// One connection's life: returns `Ok` on shutdown. The tables' schema versions carry
    /// over to the next session (`Decoder::with_schema_versions`).
    async fn session(&mut self, opts: &Opts, last: &mut Sent) -> R<()> {
        let mut decoder = Decoder::new(DecoderOptions {
            max_chunk_rows: self.config.max_chunk_rows,
            ..Default::default()
        })
        .with_schema_versions(std::mem::take(&mut self.versions));
        let result = self.session_with(opts, last, &mut decoder).await;
        self.versions = decoder.take_schema_versions();
        result
    }

    async fn session_with(&mut self, opts: &Opts, last: &mut Sent, decoder: &mut Decoder) -> R<()> {
        let mut ctl = MysqlControl::connect(opts).await?;
        let info = ctl.check_server(self.config.allow_partial_images).await?;
        let addr = ctl.addr.clone();
        decoder.set_checksum(if info.binlog_checksum.eq_ignore_ascii_case("NONE") {
            Checksum::None
        } else {
            Checksum::Crc32
        });
        decoder.set_include_query(self.config.include_query);
        let cfg = self.config.clone();
        // The signal table is read whatever the filters say (its rows never reach the sinks).
        let signal = self.incremental.as_ref().map(|i| i.signal_table().clone());
        decoder.set_filter(move |t| cfg.includes(t) || signal.as_ref() == Some(t));
        let (from, gtids) = self.start_point(&mut ctl, &info, decoder, last).await?;
        if let DumpFrom::File { name, .. } = &from {
            decoder
                .set_file(name)
                .map_err(|e| MysqlSourceError::Decode {
                    addr: addr.clone(),
                    source: Box::new(e),
                })?;
        }
        // include_query on MariaDB: ANNOTATE_ROWS only come when COM_BINLOG_DUMP asks for
        // them, which mysql_async cannot; the relay sets the flag (annotate.rs).
        let relay = if self.config.include_query && info.mariadb {
            annotate::check_opts(opts).map_err(MysqlSourceError::Config)?;
            let r = annotate::Relay::start(opts.ip_or_hostname(), opts.tcp_port())
                .await
                .map_err(|e| MysqlSourceError::Client {
                    addr: addr.clone(),
                    context: "connect (replica, annotate relay)",
                    source: e.into(),
                })?;
            Some(r)
        } else {
            None
        };
        if self.config.include_query {
            self.warn_if_queries_not_logged(&mut ctl, &info).await?;
        }
        let repl_opts: Opts = match &relay {
            Some(r) => OptsBuilder::from_opts(opts.clone())
                .ip_or_hostname("127.0.0.1")
                .tcp_port(r.port())
                .prefer_socket(false)
                .into(),
            None => opts.clone(),
        };
        let mut repl = Conn::new(repl_opts)
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
        let (context, start) = match &from {
            DumpFrom::File { name, pos } => ("COM_BINLOG_DUMP", format!("{name}:{pos}")),
            DumpFrom::Gtids(set) => ("COM_BINLOG_DUMP_GTID", format!("gtid:{set}")),
        };
        let mut stream = repl
            .get_binlog_stream(gtid::request(self.config.server_id, &from))
            .await
            .map_err(|source| MysqlSourceError::Client {
                addr: addr.clone(),
                context,
                source,
            })?;
        tracing::info!(pipeline = %self.pipeline, %addr, server = %info.version, %start, "mysql source: streaming");
        self.metrics.set_streaming(true);
        self.tick_incremental(decoder).await?;
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
                    Step::Emitted(txn) => {
                        let txn = self.through_incremental(txn, decoder).await?;
                        self.send(txn, decoder.gtid_executed(), last).await?
                    }
                    Step::Ddl { end, database, .. } => {
                        tracing::info!(pipeline = %self.pipeline, %database, position = %end, "mysql source: DDL; catalog refreshed on next use");
                        let ddl = Transaction::new(None, None, end);
                        self.send(ddl, decoder.gtid_executed(), last).await?;
                    }
                    Step::Rotate { file, pos } => {
                        tracing::debug!(pipeline = %self.pipeline, %file, pos, "rotate");
                    }
                    Step::Heartbeat { .. } => {
                        self.metrics.update_lag();
                        self.tick_incremental(decoder).await?;
                    }
                    Step::FormatDescription { .. } | Step::Stop => {}
                }
            }
        }
    }

    /// Where this session's dump starts (module `gtid`): after what the engine already has
    /// (`last`), else the configured start. Seeds the decoder's executed GTID set and its
    /// skips; returns the request and, for MariaDB, the GTIDs for `@slave_connect_state`.
    async fn start_point(
        &self,
        ctl: &mut MysqlControl,
        info: &ServerInfo,
        decoder: &mut Decoder,
        last: &Sent,
    ) -> R<(DumpFrom, Option<Vec<Gtid>>)> {
        let gtid_dump = !info.mariadb && info.gtid.eq_ignore_ascii_case("ON");
        if let Some(p) = last.position {
            return match gtid::resume_plan(&p, last.gtids.as_deref(), gtid_dump) {
                Resume::Gtids { set, skip } => {
                    if let Some((g, index)) = skip {
                        decoder.skip_rows_of(g, index);
                    }
                    decoder.set_gtid_executed(set.clone());
                    Ok((DumpFrom::Gtids(set), None))
                }
                Resume::Position(p) => {
                    let logs = ctl.binary_logs().await?;
                    let name = logs
                        .iter()
                        .find(|(n, _)| binlog_file_number(n) == Some(p.file))
                        .map(|(n, _)| n.clone())
                        .ok_or_else(|| MysqlSourceError::Purged {
                            addr: ctl.addr.clone(),
                            number: p.file,
                            position: Position::Mysql(p).to_string(),
                        })?;
                    decoder.skip_until(p);
                    let pos = p.resume_offset();
                    Ok((DumpFrom::File { name, pos }, None))
                }
            };
        }
        let file = |name: String, pos| Ok((DumpFrom::File { name, pos }, None));
        match self.config.start().map_err(MysqlSourceError::Config)? {
            Start::Current => {
                let st = ctl.master_status().await?;
                if gtid_dump {
                    if let Some(text) = &st.executed_gtid_set {
                        let set = gtid::parse_executed(text).map_err(|e| {
                            MysqlSourceError::Config(format!("SHOW MASTER STATUS: {e}"))
                        })?;
                        decoder.set_gtid_executed(set);
                    }
                }
                file(st.file, st.pos)
            }
            Start::Earliest => {
                let logs = ctl.binary_logs().await?;
                let first = logs.first().map(|(n, _)| n.clone()).ok_or_else(|| {
                    MysqlSourceError::Settings {
                        addr: ctl.addr.clone(),
                        problems: vec!["SHOW BINARY LOGS is empty: the binary log is off (log_bin)".into()],
                    }
                })?;
                file(first, 4)
            }
            Start::File { file: name, pos } => file(name, pos),
            Start::MariadbGtids(g) if info.mariadb => Ok((DumpFrom::File { name: String::new(), pos: 4 }, Some(g))),
            Start::MariadbGtids(_) => Err(MysqlSourceError::Config(
                "source.start is a MariaDB GTID list (domain-server-seq) but the server is MySQL; use a MySQL GTID set (uuid:1-100)".into(),
            )),
            Start::MysqlGtidSet(_) if info.mariadb => Err(MysqlSourceError::Config(
                "source.start is a MySQL GTID set (uuid:intervals) but the server is MariaDB; use MariaDB GTIDs (domain-server-seq, see @@gtid_current_pos)".into(),
            )),
            Start::MysqlGtidSet(set) if gtid_dump => {
                decoder.set_gtid_executed(set.clone());
                Ok((DumpFrom::Gtids(set), None))
            }
            Start::MysqlGtidSet(_) => Err(MysqlSourceError::Settings {
                addr: ctl.addr.clone(),
                problems: vec![format!(
                    "gtid_mode is {:?}: starting from a GTID set needs gtid_mode = ON and enforce_gtid_consistency = ON under [mysqld] (or start from <file>:<pos>)",
                    info.gtid
                )],
            }),
        }
    }

    /// Hands `txn` to the engine; `executed`: the decoder's MySQL GTID set after it.
    async fn send(
        &mut self,
        txn: Transaction,
        executed: Option<&Arc<GtidSet>>,
        last: &mut Sent,
    ) -> R<()> {
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
        // A complete transaction (or DDL) moves the executed set; a chunk leaves it at the set
        // before its transaction (`tidemark_model::mysql_gtid_set`, resume arithmetic).
        let complete = txn.complete && end.is_some_and(|e| e.is_end());
        if let (true, Some(e)) = (complete, end) {
            // Registered before the engine can see the transaction (GtidLedger::register).
            if let Ok(mut l) = self.gtids.lock() {
                l.register(e, executed.cloned());
            }
        }
        let bytes = txn.byte_size() as u64;
        self.queue
            .send(Arc::new(txn), bytes)
            .await
            .map_err(|_| MysqlSourceError::QueueClosed)?;
        if end.is_some() {
            last.position = end;
            if complete {
                last.gtids = executed.cloned();
            }
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
