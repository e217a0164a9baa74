//! The replication connection: replication commands, START_REPLICATION and the CopyBoth loop.
//!
//! ```text
//!   connect ──> Idle ──simple_query / create_logical_slot / identify_system──> Idle
//!                 │
//!                 └─start_replication──> Streaming ──recv()──> CopyData payloads ('w' / 'k')
//!                                           │   <── send_standby_status('r')
//!                                           └─stop(): CopyDone ──> drain to ReadyForQuery ──> Idle
//! ```
//!
//! Using [`ReplicationConnection::recv`] with a feedback timer: `recv` is cancel-safe, so put it
//! in one `tokio::select!` branch and the timer in another, and send the standby status in the
//! branch *body* (never as a `select!` future: a write is not cancel-safe):
//!
//! ```ignore
//! loop {
//!     tokio::select! {
//!         frame = conn.recv() => match parse_stream_message(frame?.ok_or(..)?)? {
//!             StreamMessage::PrimaryKeepalive { reply_requested: true, .. } =>
//!                 conn.send_standby_status(acked, acked, acked, false).await?, // answer at once
//!             msg => handle(msg),
//!         },
//!         _ = feedback.tick() => conn.send_standby_status(acked, acked, acked, false).await?,
//!     }
//! }
//! ```
//! See the `# Traps` in the parent module for what goes into the LSNs.
//!
//! # Traps
//! - **One START_REPLICATION per connection.** After `stop()` the connection runs commands
//!   again, but a second logical START_REPLICATION on it ends at once (PG 15: the walsender's
//!   "streaming done" flags are not reset; it answers CopyBothResponse then CommandComplete
//!   without any data). [`ReplicationConnection::recv`] then returns `None`; reconnect to
//!   stream again.
//! - **CopyBothResponse (`W`) is unknown to `postgres_protocol::Message::parse`**; `wire.rs`
//!   frames messages itself and handles `W` before delegating.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes};
use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;
use tidemark_pgoutput::replication::STANDBY_STATUS_UPDATE_LEN;
use tidemark_pgoutput::{unix_micros_to_pg_timestamp, ReplicationMessage, StandbyStatusUpdate};

use super::config::PgConnectConfig;
use super::error::{Location, PgSourceError};
use super::wire::{server_error, Backend, StartupInfo, Wire};
use super::{format_lsn, parse_lsn, quote_ident, quote_literal};

/// How long `stop()` waits for the server to finish the copy.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Streaming,
    /// The server sent CopyDone; we still owe ours.
    ServerDone,
}

/// `IDENTIFY_SYSTEM` result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemIdentity {
    pub system_id: String,
    pub timeline: u32,
    /// Current WAL flush position.
    pub xlogpos: u64,
    pub dbname: Option<String>,
}

/// What to do with the snapshot when creating a slot (`CREATE_REPLICATION_SLOT ... LOGICAL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotAction {
    /// Export a snapshot usable with `SET TRANSACTION SNAPSHOT` while this connection stays idle.
    Export,
    /// No snapshot (streaming only).
    NoExport,
    /// Use the snapshot in the current transaction (only inside `BEGIN` on this connection).
    Use,
}

/// `CREATE_REPLICATION_SLOT` result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedSlot {
    pub slot_name: String,
    /// The LSN from which the slot decodes; everything committed before is in the snapshot.
    pub consistent_point: u64,
    /// Exported snapshot name (only with [`SnapshotAction::Export`]).
    pub snapshot_name: Option<String>,
    pub output_plugin: String,
}

/// One CopyData payload of the replication stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamMessage {
    /// `w`: a chunk of decoded WAL (one pgoutput message in `data`).
    XLogData {
        wal_start: u64,
        wal_end: u64,
        server_time_micros: i64,
        data: Bytes,
    },
    /// `k`: keepalive. `wal_end` is the server's last *sent* position (see the traps).
    PrimaryKeepalive {
        wal_end: u64,
        server_time_micros: i64,
        reply_requested: bool,
    },
}

/// Parses a CopyData payload (`w` XLogData: 24-byte header + data; `k` keepalive: 17 bytes)
/// with the sans-IO [`ReplicationMessage::parse`] of `tidemark-pgoutput`, keeping the data as
/// a zero-copy slice of `payload`. The error text names the tag and the byte offset.
pub fn parse_stream_message(payload: Bytes) -> Result<StreamMessage, String> {
    match ReplicationMessage::parse(&payload).map_err(|e| e.to_string())? {
        ReplicationMessage::XLogData(x) => Ok(StreamMessage::XLogData {
            wal_start: x.wal_start,
            wal_end: x.wal_end,
            server_time_micros: x.server_time,
            data: payload.slice_ref(x.data),
        }),
        ReplicationMessage::PrimaryKeepalive(k) => Ok(StreamMessage::PrimaryKeepalive {
            wal_end: k.wal_end,
            server_time_micros: k.server_time,
            reply_requested: k.reply_requested,
        }),
    }
}

/// Encodes a Standby Status Update (`r`) payload stamped with the current time.
pub fn encode_standby_status(
    write: u64,
    flush: u64,
    apply: u64,
    reply_requested: bool,
) -> [u8; STANDBY_STATUS_UPDATE_LEN] {
    let now_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    StandbyStatusUpdate {
        write_lsn: write,
        flush_lsn: flush,
        apply_lsn: apply,
        client_time: unix_micros_to_pg_timestamp(now_unix).unwrap_or(0),
        reply_requested,
    }
    .encode()
}

/// A `replication=database` connection speaking the walsender protocol.
pub struct ReplicationConnection {
    wire: Wire,
    info: StartupInfo,
    state: State,
}

impl ReplicationConnection {
    /// Connects and authenticates (trust, cleartext, md5, SCRAM-SHA-256), TLS per `cfg.tls`.
    pub async fn connect(cfg: &PgConnectConfig) -> Result<Self, PgSourceError> {
        let (wire, info) = Wire::connect(cfg).await?;
        tracing::debug!(addr = %wire.at.addr, pid = info.backend_pid, "replication connection established");
        Ok(ReplicationConnection {
            wire,
            info,
            state: State::Idle,
        })
    }

    /// ParameterStatus values and backend PID from startup.
    pub fn startup_info(&self) -> &StartupInfo {
        &self.info
    }

    /// `server_version_num` computed from the `server_version` parameter (e.g. 150020).
    pub fn server_version_num(&self) -> Option<u32> {
        self.info
            .params
            .get("server_version")
            .and_then(|v| parse_server_version(v))
    }

    /// Runs a simple query (SQL or a replication command); rows as text, NULL as `None`.
    /// Server errors come back mapped (SQLSTATE kept); the connection stays usable after them.
    pub async fn simple_query(
        &mut self,
        sql: &str,
    ) -> Result<Vec<Vec<Option<String>>>, PgSourceError> {
        self.simple_query_at(sql, self.wire.at.clone()).await
    }

    async fn simple_query_at(
        &mut self,
        sql: &str,
        at: Location,
    ) -> Result<Vec<Vec<Option<String>>>, PgSourceError> {
        if self.state != State::Idle {
            return Err(self
                .wire
                .protocol("simple_query while streaming; call stop() first".into()));
        }
        frontend::query(sql, &mut self.wire.wbuf).map_err(|e| self.wire.io("query", e))?;
        self.wire.flush("query").await?;
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            match self.wire.read_frame("query").await? {
                Backend::Msg(Message::DataRow(body)) => {
                    let buf = body.buffer();
                    let row = body
                        .ranges()
                        .map(|r| {
                            Ok(r.and_then(|r| buf.get(r))
                                .map(|b| String::from_utf8_lossy(b).into_owned()))
                        })
                        .collect()
                        .map_err(|e| self.wire.protocol(format!("DataRow: {e}")))?;
                    rows.push(row);
                }
                Backend::Msg(Message::ErrorResponse(body)) => error = Some(server_error(&body)),
                Backend::Msg(Message::ReadyForQuery(_)) => break,
                Backend::Msg(Message::CopyOutResponse(_) | Message::CopyInResponse(_))
                | Backend::CopyBoth => {
                    return Err(self
                        .wire
                        .protocol(format!("{sql:?} started a COPY; use start_replication")));
                }
                // RowDescription, CommandComplete, EmptyQueryResponse, notices, parameter changes.
                Backend::Msg(_) => {}
            }
        }
        match error {
            Some(e) => Err(PgSourceError::from_server(at, e)),
            None => Ok(rows),
        }
    }

    /// `IDENTIFY_SYSTEM`.
    pub async fn identify_system(&mut self) -> Result<SystemIdentity, PgSourceError> {
        let rows = self.simple_query("IDENTIFY_SYSTEM").await?;
        let row = rows
            .first()
            .ok_or_else(|| self.wire.protocol("IDENTIFY_SYSTEM returned no row".into()))?;
        let col = |i: usize| row.get(i).cloned().flatten();
        let bad = |what: &str| self.wire.protocol(format!("IDENTIFY_SYSTEM: bad {what}"));
        Ok(SystemIdentity {
            system_id: col(0).ok_or_else(|| bad("systemid"))?,
            timeline: col(1)
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| bad("timeline"))?,
            xlogpos: col(2)
                .and_then(|l| parse_lsn(&l))
                .ok_or_else(|| bad("xlogpos"))?,
            dbname: col(3),
        })
    }

    /// `CREATE_REPLICATION_SLOT "slot" [TEMPORARY] LOGICAL pgoutput <snapshot>`.
    /// With [`SnapshotAction::Export`] the snapshot lives until the next command on this connection.
    pub async fn create_logical_slot(
        &mut self,
        slot: &str,
        temporary: bool,
        snapshot: SnapshotAction,
    ) -> Result<CreatedSlot, PgSourceError> {
        let snap = match snapshot {
            SnapshotAction::Export => "EXPORT_SNAPSHOT",
            SnapshotAction::NoExport => "NOEXPORT_SNAPSHOT",
            SnapshotAction::Use => "USE_SNAPSHOT",
        };
        let temp = if temporary { " TEMPORARY" } else { "" };
        let sql = format!(
            "CREATE_REPLICATION_SLOT {}{temp} LOGICAL pgoutput {snap}",
            quote_ident(slot)
        );
        let at = self.wire.at.clone().with_slot(slot);
        let rows = self.simple_query_at(&sql, at).await?;
        let row = rows.first().ok_or_else(|| {
            self.wire
                .protocol("CREATE_REPLICATION_SLOT returned no row".into())
        })?;
        let col = |i: usize| row.get(i).cloned().flatten();
        Ok(CreatedSlot {
            slot_name: col(0).unwrap_or_else(|| slot.to_string()),
            consistent_point: col(1).and_then(|l| parse_lsn(&l)).ok_or_else(|| {
                self.wire
                    .protocol("CREATE_REPLICATION_SLOT: bad consistent_point".into())
            })?,
            snapshot_name: col(2),
            output_plugin: col(3).unwrap_or_default(),
        })
    }

    /// `READ_REPLICATION_SLOT` (PG 15+): `(slot_type, restart_lsn, restart_tli)`; `None` when
    /// the slot does not exist. Note: for logical slots PG 15 rejects it ("cannot use
    /// READ_REPLICATION_SLOT with a logical replication slot"); use `control::slot_info` there.
    pub async fn read_replication_slot(
        &mut self,
        slot: &str,
    ) -> Result<Option<(String, Option<u64>, Option<u32>)>, PgSourceError> {
        let at = self.wire.at.clone().with_slot(slot);
        let rows = self
            .simple_query_at(&format!("READ_REPLICATION_SLOT {}", quote_ident(slot)), at)
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let col = |i: usize| row.get(i).cloned().flatten();
        Ok(col(0).map(|t| {
            (
                t,
                col(1).and_then(|l| parse_lsn(&l)),
                col(2).and_then(|t| t.parse().ok()),
            )
        }))
    }

    /// `START_REPLICATION SLOT "slot" LOGICAL <lsn> (options)`; on success the connection is in
    /// CopyBoth mode. Errors: [`PgSourceError::SlotInUse`] (55006), `SlotMissing`, `SlotLost`,
    /// `Server` (e.g. a missing publication is reported on the first change, not here).
    pub async fn start_replication(
        &mut self,
        slot: &str,
        start_lsn: u64,
        options: &[(&str, &str)],
    ) -> Result<(), PgSourceError> {
        if self.state != State::Idle {
            return Err(self
                .wire
                .protocol("start_replication while already streaming".into()));
        }
        let opts: Vec<String> = options
            .iter()
            .map(|(k, v)| format!("{} {}", quote_ident(k), quote_literal(v)))
            .collect();
        let mut sql = format!(
            "START_REPLICATION SLOT {} LOGICAL {}",
            quote_ident(slot),
            format_lsn(start_lsn)
        );
        if !opts.is_empty() {
            sql.push_str(&format!(" ({})", opts.join(", ")));
        }
        let at = self.wire.at.clone().with_slot(slot).with_lsn(start_lsn);
        frontend::query(&sql, &mut self.wire.wbuf)
            .map_err(|e| self.wire.io("START_REPLICATION", e))?;
        self.wire.flush("START_REPLICATION").await?;
        loop {
            match self.wire.read_frame("START_REPLICATION").await? {
                Backend::CopyBoth => break,
                Backend::Msg(Message::ErrorResponse(body)) => {
                    let e = server_error(&body);
                    // The walsender sends ReadyForQuery after a failed command: drain so the
                    // connection can retry (e.g. after terminating a stale slot holder).
                    self.wire.drain_to_ready("START_REPLICATION").await?;
                    return Err(PgSourceError::from_server(at, e));
                }
                Backend::Msg(Message::NoticeResponse(_) | Message::ParameterStatus(_)) => {}
                Backend::Msg(_) => {
                    return Err(self
                        .wire
                        .protocol("unexpected answer to START_REPLICATION".into()))
                }
            }
        }
        self.wire.at = self.wire.at.clone().with_slot(slot);
        self.state = State::Streaming;
        tracing::info!(slot, lsn = %format_lsn(start_lsn), "replication started");
        Ok(())
    }

    /// The next CopyData payload (`w` XLogData or `k` keepalive; parse with
    /// [`parse_stream_message`]), or `None` when the server ended the copy (CopyDone).
    /// Cancel-safe: see the module doc for use with `select!`.
    pub async fn recv(&mut self) -> Result<Option<Bytes>, PgSourceError> {
        if self.state != State::Streaming {
            return Ok(None);
        }
        loop {
            match self.wire.read_frame("replication stream").await? {
                Backend::Msg(Message::CopyData(body)) => return Ok(Some(body.into_bytes())),
                Backend::Msg(Message::CopyDone) => {
                    self.state = State::ServerDone;
                    return Ok(None);
                }
                Backend::Msg(Message::CommandComplete(_)) => {
                    // The stream ended without CopyDone: a second START_REPLICATION on the
                    // same connection after stop() (see the trap in the module doc).
                    self.wire.drain_to_ready("replication stream end").await?;
                    self.state = State::Idle;
                    return Ok(None);
                }
                Backend::Msg(Message::ErrorResponse(body)) => {
                    // E.g. 57P01 on shutdown, or the WAL-removed error once decoding reaches it.
                    return Err(PgSourceError::from_server(
                        self.wire.at.clone(),
                        server_error(&body),
                    ));
                }
                Backend::Msg(Message::NoticeResponse(_) | Message::ParameterStatus(_)) => {}
                Backend::Msg(m) => {
                    let name = message_name(&m);
                    return Err(self
                        .wire
                        .protocol(format!("unexpected {name} in the replication stream")));
                }
                Backend::CopyBoth => {
                    return Err(self
                        .wire
                        .protocol("unexpected CopyBothResponse in the replication stream".into()))
                }
            }
        }
    }

    /// [`recv`](Self::recv) plus [`parse_stream_message`].
    pub async fn recv_message(&mut self) -> Result<Option<StreamMessage>, PgSourceError> {
        match self.recv().await? {
            Some(b) => parse_stream_message(b)
                .map(Some)
                .map_err(|m| self.wire.protocol(m)),
            None => Ok(None),
        }
    }

    /// Sends a Standby Status Update. `flush_lsn` is what the slot's `confirmed_flush_lsn`
    /// becomes: report only positions durable downstream (STYLE.md §10). Not cancel-safe.
    pub async fn send_standby_status(
        &mut self,
        write_lsn: u64,
        flush_lsn: u64,
        apply_lsn: u64,
        reply_requested: bool,
    ) -> Result<(), PgSourceError> {
        if self.state != State::Streaming {
            return Err(self
                .wire
                .protocol("standby status outside of streaming".into()));
        }
        let payload = encode_standby_status(write_lsn, flush_lsn, apply_lsn, reply_requested);
        self.wire.wbuf.put_u8(b'd');
        self.wire.wbuf.put_i32(4 + payload.len() as i32);
        self.wire.wbuf.put_slice(&payload);
        self.wire.flush("standby status").await?;
        tracing::trace!(flush = %format_lsn(flush_lsn), "standby status sent");
        Ok(())
    }

    /// Ends streaming: sends CopyDone, discards the remaining CopyData and waits for
    /// ReadyForQuery, so the connection can run commands again.
    pub async fn stop(&mut self) -> Result<(), PgSourceError> {
        if self.state == State::Idle {
            return Ok(());
        }
        frontend::copy_done(&mut self.wire.wbuf);
        self.wire.flush("CopyDone").await?;
        let at = self.wire.at.clone();
        let drained =
            tokio::time::timeout(STOP_TIMEOUT, self.wire.drain_to_ready("stop replication")).await;
        self.state = State::Idle;
        match drained {
            Err(_) => Err(PgSourceError::Timeout {
                at,
                op: "stop replication",
                after: STOP_TIMEOUT,
            }),
            Ok(Err(e)) => Err(e),
            Ok(Ok(Some(e))) => Err(PgSourceError::from_server(at, e)),
            Ok(Ok(None)) => Ok(()),
        }
    }

    /// Sends Terminate and closes the socket (after `stop()` when streaming, for a clean end).
    pub async fn close(self) {
        self.wire.terminate().await;
    }
}

/// The protocol manual's name of a backend message, for error messages.
fn message_name(m: &Message) -> &'static str {
    match m {
        Message::CommandComplete(_) => "CommandComplete",
        Message::ReadyForQuery(_) => "ReadyForQuery",
        Message::RowDescription(_) => "RowDescription",
        Message::DataRow(_) => "DataRow",
        Message::EmptyQueryResponse => "EmptyQueryResponse",
        Message::CopyOutResponse(_) => "CopyOutResponse",
        Message::CopyInResponse(_) => "CopyInResponse",
        Message::NotificationResponse(_) => "NotificationResponse",
        Message::BackendKeyData(_) => "BackendKeyData",
        _ => "message",
    }
}

/// `"15.20 (Debian 15.20-0+deb12u1)"` -> 150020; `"9.6.24"` -> 90624.
pub fn parse_server_version(v: &str) -> Option<u32> {
    let head = v
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()?;
    let mut parts = head.split('.').map(|p| p.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    // Checked: the parameter is the server's (or a proxy's) text; an absurd one is unknown.
    let base = major.checked_mul(10000)?;
    if major >= 10 {
        base.checked_add(minor)
    } else {
        let patch = parts.next().flatten().unwrap_or(0);
        base.checked_add(minor.checked_mul(100)?)?
            .checked_add(patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_xlogdata_and_keepalive() {
        let mut w = bytes::BytesMut::new();
        w.put_u8(b'w');
        w.put_u64(0x10);
        w.put_u64(0x20);
        w.put_i64(7);
        w.put_slice(b"B123");
        let m = parse_stream_message(w.freeze()).expect("valid w");
        assert_eq!(
            m,
            StreamMessage::XLogData {
                wal_start: 0x10,
                wal_end: 0x20,
                server_time_micros: 7,
                data: Bytes::from_static(b"B123")
            }
        );
        let mut k = bytes::BytesMut::new();
        k.put_u8(b'k');
        k.put_u64(0x30);
        k.put_i64(9);
        k.put_u8(1);
        let m = parse_stream_message(k.freeze()).expect("valid k");
        assert_eq!(
            m,
            StreamMessage::PrimaryKeepalive {
                wal_end: 0x30,
                server_time_micros: 9,
                reply_requested: true
            }
        );
        assert!(parse_stream_message(Bytes::from_static(b"k\0\0")).is_err());
        assert!(parse_stream_message(Bytes::from_static(b"w")).is_err());
        assert!(parse_stream_message(Bytes::new()).is_err());
        assert!(parse_stream_message(Bytes::from_static(b"z")).is_err());
    }

    #[test]
    fn encodes_standby_status() {
        let b = encode_standby_status(1, 2, 3, true);
        assert_eq!(b.len(), 34);
        assert_eq!(b[0], b'r');
        assert_eq!(&b[1..9], &1u64.to_be_bytes());
        assert_eq!(&b[9..17], &2u64.to_be_bytes());
        assert_eq!(&b[17..25], &3u64.to_be_bytes());
        assert_eq!(b[33], 1);
        let clock = i64::from_be_bytes(b[25..33].try_into().expect("8 bytes"));
        assert!(
            clock > 800_000_000_000_000,
            "clock is microseconds since 2000-01-01"
        );
    }

    #[test]
    fn server_versions() {
        assert_eq!(
            parse_server_version("15.20 (Debian 15.20-0+deb12u1)"),
            Some(150020)
        );
        assert_eq!(parse_server_version("16beta1"), Some(160000));
        assert_eq!(parse_server_version("9.6.24"), Some(90624));
        assert_eq!(parse_server_version("x"), None);
        assert_eq!(parse_server_version("999999.1"), None);
        assert_eq!(parse_server_version("9.99999999.1"), None);
    }
}
