//! The streaming-replication COPY framing around pgoutput messages (sans-IO).
//!
//! After `START_REPLICATION SLOT … LOGICAL …` the server sends CopyData messages whose payload is
//! one of:
//!
//! ```text
//! 'w' XLogData          Int64 wal_start, Int64 wal_end, Int64 server_time, Byte n data (one pgoutput message)
//! 'k' Primary keepalive Int64 wal_end, Int64 server_time, Byte1 reply_requested
//! ```
//!
//! and the client answers with
//!
//! ```text
//! 'r' Standby status update  Int64 write, Int64 flush, Int64 apply, Int64 client_time, Byte1 reply_requested
//! ```
//!
//! # Traps
//! - `wal_start` of an XLogData is the LSN of the *message*, and may be 0 for messages that have
//!   no WAL position of their own; the commit position lives in Begin/Commit.
//! - The keepalive `wal_end` is documented as the end of WAL, but is really the last LSN *sent*
//!   (see STYLE.md §3); with `reply_requested` set, answer at once or the server times out.
//! - The flush LSN reported in a status update lets the server recycle WAL: report only what is
//!   durable downstream.
//! - Times are µs since 2000-01-01 UTC ([`crate::pg_timestamp_to_unix_micros`]).

use crate::error::{DecodeError, DecodeErrorKind, Field, MessageKind};
use crate::reader::Reader;

/// `'w'` XLogData.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XLogData<'a> {
    /// WAL position of the start of the data.
    pub wal_start: u64,
    /// Current end of WAL on the server.
    pub wal_end: u64,
    /// Server clock at transmission, µs since 2000-01-01 UTC.
    pub server_time: i64,
    /// The pgoutput message.
    pub data: &'a [u8],
}

/// `'k'` Primary keepalive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrimaryKeepalive {
    /// End of WAL (in practice: the last LSN sent).
    pub wal_end: u64,
    /// Server clock at transmission, µs since 2000-01-01 UTC.
    pub server_time: i64,
    /// The server asks for an immediate status update.
    pub reply_requested: bool,
}

/// A CopyData payload sent by the server during logical replication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicationMessage<'a> {
    /// `'w'`
    XLogData(XLogData<'a>),
    /// `'k'`
    PrimaryKeepalive(PrimaryKeepalive),
}

impl<'a> ReplicationMessage<'a> {
    /// Parses one CopyData payload. Keepalives must be consumed exactly; XLogData takes the
    /// rest of the payload as its data.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let (kind, tag) = match bytes.first() {
            Some(b'w') => (MessageKind::XLogData, b'w'),
            Some(b'k') => (MessageKind::PrimaryKeepalive, b'k'),
            Some(&other) => {
                return Err(DecodeError {
                    tag: MessageKind::Unknown,
                    offset: 0,
                    kind: DecodeErrorKind::UnknownTag(other),
                })
            }
            None => {
                return Err(DecodeError {
                    tag: MessageKind::Unknown,
                    offset: 0,
                    kind: DecodeErrorKind::Truncated(Field::Named("message tag")),
                })
            }
        };
        let mut r = Reader::new(bytes, 1, kind);
        if tag == b'w' {
            let wal_start = r.u64(Field::Named("wal start"))?;
            let wal_end = r.u64(Field::Named("wal end"))?;
            let server_time = r.i64(Field::Named("server time"))?;
            let data = r.take(r.remaining(), Field::Named("data"))?;
            return Ok(Self::XLogData(XLogData {
                wal_start,
                wal_end,
                server_time,
                data,
            }));
        }
        let keepalive = PrimaryKeepalive {
            wal_end: r.u64(Field::Named("wal end"))?,
            server_time: r.i64(Field::Named("server time"))?,
            // The server writes 0 or 1; any other value is read as "reply" (safe side).
            reply_requested: r.u8(Field::Named("reply requested"))? != 0,
        };
        r.finish()?;
        Ok(Self::PrimaryKeepalive(keepalive))
    }
}

/// `'r'` Standby status update, sent by the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StandbyStatusUpdate {
    /// Last WAL byte + 1 received and written.
    pub write_lsn: u64,
    /// Last WAL byte + 1 durably flushed (the server may recycle WAL before it).
    pub flush_lsn: u64,
    /// Last WAL byte + 1 applied.
    pub apply_lsn: u64,
    /// Client clock, µs since 2000-01-01 UTC.
    pub client_time: i64,
    /// Ask the server to reply immediately.
    pub reply_requested: bool,
}

/// Length of an encoded standby status update.
pub const STANDBY_STATUS_UPDATE_LEN: usize = 34;

impl StandbyStatusUpdate {
    /// Encodes as the CopyData payload (`'r'` + 33 bytes).
    pub fn encode(&self) -> [u8; STANDBY_STATUS_UPDATE_LEN] {
        let mut out = [0u8; STANDBY_STATUS_UPDATE_LEN];
        out[0] = b'r';
        out[1..9].copy_from_slice(&self.write_lsn.to_be_bytes());
        out[9..17].copy_from_slice(&self.flush_lsn.to_be_bytes());
        out[17..25].copy_from_slice(&self.apply_lsn.to_be_bytes());
        out[25..33].copy_from_slice(&self.client_time.to_be_bytes());
        out[33] = u8::from(self.reply_requested);
        out
    }

    /// Parses a CopyData payload sent by a client (for tests and fake servers).
    pub fn parse(bytes: &[u8]) -> Result<Self, DecodeError> {
        let kind = MessageKind::StandbyStatusUpdate;
        let mut r = Reader::new(bytes, 0, kind);
        let tag = r.u8(Field::Named("message tag"))?;
        if tag != b'r' {
            return Err(r.error_at(0, DecodeErrorKind::UnknownTag(tag)));
        }
        let update = Self {
            write_lsn: r.u64(Field::Named("write lsn"))?,
            flush_lsn: r.u64(Field::Named("flush lsn"))?,
            apply_lsn: r.u64(Field::Named("apply lsn"))?,
            client_time: r.i64(Field::Named("client time"))?,
            reply_requested: r.bool(Field::Named("reply requested"))?,
        };
        r.finish()?;
        Ok(update)
    }
}

/// Encodes a standby status update payload (`'r'`). LSNs are "last byte + 1"; `time` is µs
/// since 2000-01-01 UTC.
pub fn encode_standby_status_update(
    write: u64,
    flush: u64,
    apply: u64,
    time: i64,
    reply: bool,
) -> [u8; STANDBY_STATUS_UPDATE_LEN] {
    StandbyStatusUpdate {
        write_lsn: write,
        flush_lsn: flush,
        apply_lsn: apply,
        client_time: time,
        reply_requested: reply,
    }
    .encode()
}
