//! The pgoutput message parser and the session facts it needs.
//!
//! One call parses one message: the `data` of one XLogData frame. Messages borrow from the input
//! bytes; only Relation columns and Truncate relation oids are collected into `Vec`s, and those are
//! sized from the bytes actually present, never from a declared count alone.
//!
//! The parser needs three facts from the session, kept in [`ParseContext`]: the negotiated
//! `proto_version`, whether `streaming = parallel` was requested, and whether we are between a
//! Stream Start and a Stream Stop. See the crate docs for the traps these encode.

use crate::error::{DecodeError, DecodeErrorKind, Field, MessageKind};
use crate::message::{
    AbortInfo, Begin, BeginPrepare, Commit, CommitPrepared, Delete, Insert, LogicalMessage,
    Message, OldTuple, Origin, Prepare, Relation, RelationColumn, ReplicaIdentity,
    RollbackPrepared, StreamAbort, StreamCommit, StreamStart, Truncate, Type, Update,
};
use crate::reader::Reader;
use crate::tuple::TupleData;

/// Highest pgoutput `proto_version` this parser understands.
pub const MAX_PROTOCOL_VERSION: u32 = 4;

/// What the parser must know about the replication session to split a message into fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseContext {
    /// The negotiated pgoutput `proto_version` (1–4).
    pub protocol: u32,
    /// True if `streaming = parallel` was requested (protocol 4): Stream Abort then carries the
    /// abort LSN and timestamp. Ignored below protocol 4.
    pub parallel_streaming: bool,
    /// True between Stream Start and Stream Stop: data messages then carry the xid.
    pub in_stream: bool,
}

impl ParseContext {
    /// A context for `protocol`, outside a streamed block, without parallel streaming.
    pub const fn new(protocol: u32) -> Self {
        Self {
            protocol,
            parallel_streaming: false,
            in_stream: false,
        }
    }

    /// Sets [`parallel_streaming`](Self::parallel_streaming).
    pub const fn with_parallel_streaming(mut self, on: bool) -> Self {
        self.parallel_streaming = on;
        self
    }

    /// Sets [`in_stream`](Self::in_stream).
    pub const fn with_in_stream(mut self, in_stream: bool) -> Self {
        self.in_stream = in_stream;
        self
    }

    /// True if Stream Abort carries abort LSN and timestamp in this session.
    pub const fn stream_abort_has_lsn(&self) -> bool {
        self.protocol >= 4 && self.parallel_streaming
    }

    /// Parses one message without changing the context. See [`Message::parse`].
    pub fn parse<'a>(&self, bytes: &'a [u8]) -> Result<Message<'a>, DecodeError> {
        Message::parse(bytes, self)
    }

    /// Parses one message, then tracks streamed blocks: Stream Start sets `in_stream`, Stream
    /// Stop clears it. Feed every message of the session through this, in order.
    pub fn parse_next<'a>(&mut self, bytes: &'a [u8]) -> Result<Message<'a>, DecodeError> {
        let message = Message::parse(bytes, self)?;
        match message {
            Message::StreamStart(_) => self.in_stream = true,
            Message::StreamStop => self.in_stream = false,
            _ => {}
        }
        Ok(message)
    }
}

/// First protocol version with a message kind.
fn required_protocol(kind: MessageKind) -> u32 {
    use MessageKind as K;
    match kind {
        K::StreamStart | K::StreamStop | K::StreamCommit | K::StreamAbort => 2,
        K::BeginPrepare
        | K::Prepare
        | K::CommitPrepared
        | K::RollbackPrepared
        | K::StreamPrepare => 3,
        _ => 1,
    }
}

/// Whether a message kind may appear inside a streamed block (Stream Start .. Stream Stop), and
/// whether it may appear outside one. Origin follows Stream Start inside the block
/// (`pgoutput_stream_start` → `send_repl_origin`), without an xid.
fn allowed(kind: MessageKind, in_stream: bool) -> bool {
    use MessageKind as K;
    match kind {
        K::LogicalMessage | K::Origin | K::Relation | K::Type => true,
        K::Insert | K::Update | K::Delete | K::Truncate => true,
        K::StreamStop => in_stream,
        _ => !in_stream,
    }
}

impl<'a> Message<'a> {
    /// Parses one complete pgoutput message. The whole of `bytes` must be the message: leftover
    /// bytes, a truncated field, an unknown tag, a message the negotiated protocol cannot carry or
    /// a message that cannot appear at this point of a streamed block is a [`DecodeError`].
    pub fn parse(bytes: &'a [u8], ctx: &ParseContext) -> Result<Self, DecodeError> {
        let unknown = |offset, kind| DecodeError {
            tag: MessageKind::Unknown,
            offset,
            kind,
        };
        let Some(&tag) = bytes.first() else {
            return Err(unknown(
                0,
                DecodeErrorKind::Truncated(Field::Named("message tag")),
            ));
        };
        let kind = MessageKind::from_pgoutput_tag(tag)
            .ok_or_else(|| unknown(0, DecodeErrorKind::UnknownTag(tag)))?;
        let mut r = Reader::new(bytes, 1, kind);
        if !(1..=MAX_PROTOCOL_VERSION).contains(&ctx.protocol) {
            return Err(r.error_at(0, DecodeErrorKind::UnsupportedProtocol(ctx.protocol)));
        }
        let required = required_protocol(kind).max(if ctx.in_stream { 2 } else { 1 });
        if ctx.protocol < required {
            let negotiated = ctx.protocol;
            return Err(r.error_at(
                0,
                DecodeErrorKind::NotInProtocol {
                    required,
                    negotiated,
                },
            ));
        }
        if !allowed(kind, ctx.in_stream) {
            let in_stream = ctx.in_stream;
            return Err(r.error_at(0, DecodeErrorKind::StreamState { in_stream }));
        }
        let message = Self::parse_body(tag, kind, &mut r, ctx)?;
        r.finish()?;
        Ok(message)
    }

    fn parse_body(
        tag: u8,
        kind: MessageKind,
        r: &mut Reader<'a>,
        ctx: &ParseContext,
    ) -> Result<Self, DecodeError> {
        use MessageKind as K;
        // Trap "xid inside streams": data messages carry the xid only between Stream Start/Stop.
        // Origin and Stream Stop, the other messages of a streamed block, have no xid.
        let carries_xid = matches!(
            kind,
            K::LogicalMessage
                | K::Relation
                | K::Type
                | K::Insert
                | K::Update
                | K::Delete
                | K::Truncate
        );
        let xid = if ctx.in_stream && carries_xid {
            Some(r.u32(f("streamed xid"))?)
        } else {
            None
        };
        Ok(match kind {
            K::Begin => Self::Begin(parse_begin(r)?),
            K::LogicalMessage => Self::LogicalMessage(parse_logical_message(r, xid)?),
            K::Commit => Self::Commit(parse_commit(r)?),
            K::Origin => Self::Origin(parse_origin(r)?),
            K::Relation => Self::Relation(parse_relation(r, xid)?),
            K::Type => Self::Type(parse_type(r, xid)?),
            K::Insert => Self::Insert(parse_insert(r, xid)?),
            K::Update => Self::Update(parse_update(r, xid)?),
            K::Delete => Self::Delete(parse_delete(r, xid)?),
            K::Truncate => Self::Truncate(parse_truncate(r, xid)?),
            K::StreamStart => Self::StreamStart(parse_stream_start(r)?),
            K::StreamStop => Self::StreamStop,
            K::StreamCommit => Self::StreamCommit(parse_stream_commit(r)?),
            K::StreamAbort => Self::StreamAbort(parse_stream_abort(r, ctx)?),
            K::BeginPrepare => Self::BeginPrepare(parse_begin_prepare(r)?),
            K::Prepare => Self::Prepare(parse_prepare(r)?),
            K::CommitPrepared => Self::CommitPrepared(parse_commit_prepared(r)?),
            K::RollbackPrepared => Self::RollbackPrepared(parse_rollback_prepared(r)?),
            K::StreamPrepare => Self::StreamPrepare(parse_prepare(r)?),
            K::XLogData | K::PrimaryKeepalive | K::StandbyStatusUpdate | K::Unknown => {
                // `from_pgoutput_tag` never yields these.
                return Err(r.error_at(0, DecodeErrorKind::UnknownTag(tag)));
            }
        })
    }
}

const fn f(name: &'static str) -> Field {
    Field::Named(name)
}

fn parse_begin(r: &mut Reader<'_>) -> Result<Begin, DecodeError> {
    Ok(Begin {
        final_lsn: r.u64(f("final lsn"))?,
        commit_timestamp: r.i64(f("commit timestamp"))?,
        xid: r.u32(f("xid"))?,
    })
}

fn parse_logical_message<'a>(
    r: &mut Reader<'a>,
    xid: Option<u32>,
) -> Result<LogicalMessage<'a>, DecodeError> {
    let flags = r.u8(f("flags"))?;
    let lsn = r.u64(f("message lsn"))?;
    let prefix = r.cstr(f("prefix"))?;
    let len = r.len_i32(f("content length"))?;
    let content = r.take(len, f("content"))?;
    Ok(LogicalMessage {
        xid,
        flags,
        lsn,
        prefix,
        content,
    })
}

fn parse_commit(r: &mut Reader<'_>) -> Result<Commit, DecodeError> {
    Ok(Commit {
        flags: r.u8(f("flags"))?,
        commit_lsn: r.u64(f("commit lsn"))?,
        end_lsn: r.u64(f("end lsn"))?,
        commit_timestamp: r.i64(f("commit timestamp"))?,
    })
}

fn parse_origin<'a>(r: &mut Reader<'a>) -> Result<Origin<'a>, DecodeError> {
    Ok(Origin {
        commit_lsn: r.u64(f("origin commit lsn"))?,
        name: r.cstr(f("origin name"))?,
    })
}

fn parse_relation<'a>(r: &mut Reader<'a>, xid: Option<u32>) -> Result<Relation<'a>, DecodeError> {
    let oid = r.u32(f("relation oid"))?;
    let namespace = r.cstr(f("namespace"))?;
    let name = r.cstr(f("relation name"))?;
    let at = r.pos();
    let byte = r.u8(f("replica identity"))?;
    let replica_identity = ReplicaIdentity::from_byte(byte).ok_or_else(|| {
        r.error_at(
            at,
            DecodeErrorKind::UnexpectedByte {
                field: f("replica identity"),
                byte,
                expected: "'d', 'n', 'f' or 'i'",
            },
        )
    })?;
    let count = r.count_i16(f("column count"))?;
    // A column takes at least 10 bytes (flags, empty name, type oid, typmod): a lying count
    // cannot reserve more than the message could hold.
    let mut columns = Vec::with_capacity(usize::from(count).min(r.remaining() / 10));
    for i in 0..count {
        let field = Field::RelationColumn(i);
        columns.push(RelationColumn {
            flags: r.u8(field)?,
            name: r.cstr(field)?,
            type_oid: r.u32(field)?,
            type_modifier: r.i32(field)?,
        });
    }
    Ok(Relation {
        xid,
        oid,
        namespace,
        name,
        replica_identity,
        columns,
    })
}

fn parse_type<'a>(r: &mut Reader<'a>, xid: Option<u32>) -> Result<Type<'a>, DecodeError> {
    Ok(Type {
        xid,
        oid: r.u32(f("type oid"))?,
        namespace: r.cstr(f("namespace"))?,
        name: r.cstr(f("type name"))?,
    })
}

/// Reads a tuple-kind byte and checks it is one of `expected_bytes`.
fn tuple_marker(
    r: &mut Reader<'_>,
    expected_bytes: &[u8],
    expected: &'static str,
) -> Result<u8, DecodeError> {
    let at = r.pos();
    let field = f("tuple type");
    let byte = r.u8(field)?;
    if expected_bytes.contains(&byte) {
        Ok(byte)
    } else {
        let kind = DecodeErrorKind::UnexpectedByte {
            field,
            byte,
            expected,
        };
        Err(r.error_at(at, kind))
    }
}

fn parse_insert<'a>(r: &mut Reader<'a>, xid: Option<u32>) -> Result<Insert<'a>, DecodeError> {
    let relation_oid = r.u32(f("relation oid"))?;
    tuple_marker(r, b"N", "'N'")?;
    let new = TupleData::read(r)?;
    Ok(Insert {
        xid,
        relation_oid,
        new,
    })
}

fn parse_update<'a>(r: &mut Reader<'a>, xid: Option<u32>) -> Result<Update<'a>, DecodeError> {
    let relation_oid = r.u32(f("relation oid"))?;
    let old = match tuple_marker(r, b"KON", "'K', 'O' or 'N'")? {
        b'K' => Some(OldTuple::Key(TupleData::read(r)?)),
        b'O' => Some(OldTuple::Full(TupleData::read(r)?)),
        _ => None,
    };
    if old.is_some() {
        tuple_marker(r, b"N", "'N'")?;
    }
    let new = TupleData::read(r)?;
    Ok(Update {
        xid,
        relation_oid,
        old,
        new,
    })
}

fn parse_delete<'a>(r: &mut Reader<'a>, xid: Option<u32>) -> Result<Delete<'a>, DecodeError> {
    let relation_oid = r.u32(f("relation oid"))?;
    let old = match tuple_marker(r, b"KO", "'K' or 'O'")? {
        b'K' => OldTuple::Key(TupleData::read(r)?),
        _ => OldTuple::Full(TupleData::read(r)?),
    };
    Ok(Delete {
        xid,
        relation_oid,
        old,
    })
}

fn parse_truncate(r: &mut Reader<'_>, xid: Option<u32>) -> Result<Truncate, DecodeError> {
    let count = r.len_i32(f("relation count"))?;
    let options = r.u8(f("options"))?;
    // Check the declared count against the bytes present before allocating for it.
    if count.checked_mul(4).is_none_or(|n| n > r.remaining()) {
        let index = u32::try_from(r.remaining() / 4).unwrap_or(u32::MAX);
        let at = r.pos() + r.remaining() / 4 * 4;
        return Err(r.error_at(
            at,
            DecodeErrorKind::Truncated(Field::TruncateRelation(index)),
        ));
    }
    let mut relation_oids = Vec::with_capacity(count);
    for i in 0..count {
        let index = u32::try_from(i).unwrap_or(u32::MAX);
        relation_oids.push(r.u32(Field::TruncateRelation(index))?);
    }
    Ok(Truncate {
        xid,
        options,
        relation_oids,
    })
}

fn parse_stream_start(r: &mut Reader<'_>) -> Result<StreamStart, DecodeError> {
    Ok(StreamStart {
        xid: r.u32(f("xid"))?,
        first_segment: r.bool(f("first segment"))?,
    })
}

fn parse_stream_commit(r: &mut Reader<'_>) -> Result<StreamCommit, DecodeError> {
    Ok(StreamCommit {
        xid: r.u32(f("xid"))?,
        flags: r.u8(f("flags"))?,
        commit_lsn: r.u64(f("commit lsn"))?,
        end_lsn: r.u64(f("end lsn"))?,
        commit_timestamp: r.i64(f("commit timestamp"))?,
    })
}

fn parse_stream_abort(r: &mut Reader<'_>, ctx: &ParseContext) -> Result<StreamAbort, DecodeError> {
    let xid = r.u32(f("xid"))?;
    let subxid = r.u32(f("subtransaction xid"))?;
    // Trap "Stream Abort v4": the extra fields exist only with parallel streaming.
    let abort = if ctx.stream_abort_has_lsn() {
        Some(AbortInfo {
            abort_lsn: r.u64(f("abort lsn"))?,
            abort_timestamp: r.i64(f("abort timestamp"))?,
        })
    } else {
        None
    };
    Ok(StreamAbort { xid, subxid, abort })
}

fn parse_begin_prepare<'a>(r: &mut Reader<'a>) -> Result<BeginPrepare<'a>, DecodeError> {
    Ok(BeginPrepare {
        prepare_lsn: r.u64(f("prepare lsn"))?,
        end_lsn: r.u64(f("end lsn"))?,
        prepare_timestamp: r.i64(f("prepare timestamp"))?,
        xid: r.u32(f("xid"))?,
        gid: r.cstr(f("gid"))?,
    })
}

fn parse_prepare<'a>(r: &mut Reader<'a>) -> Result<Prepare<'a>, DecodeError> {
    Ok(Prepare {
        flags: r.u8(f("flags"))?,
        prepare_lsn: r.u64(f("prepare lsn"))?,
        end_lsn: r.u64(f("end lsn"))?,
        prepare_timestamp: r.i64(f("prepare timestamp"))?,
        xid: r.u32(f("xid"))?,
        gid: r.cstr(f("gid"))?,
    })
}

fn parse_commit_prepared<'a>(r: &mut Reader<'a>) -> Result<CommitPrepared<'a>, DecodeError> {
    Ok(CommitPrepared {
        flags: r.u8(f("flags"))?,
        commit_lsn: r.u64(f("commit lsn"))?,
        end_lsn: r.u64(f("end lsn"))?,
        commit_timestamp: r.i64(f("commit timestamp"))?,
        xid: r.u32(f("xid"))?,
        gid: r.cstr(f("gid"))?,
    })
}

fn parse_rollback_prepared<'a>(r: &mut Reader<'a>) -> Result<RollbackPrepared<'a>, DecodeError> {
    Ok(RollbackPrepared {
        flags: r.u8(f("flags"))?,
        prepare_end_lsn: r.u64(f("prepare end lsn"))?,
        rollback_end_lsn: r.u64(f("rollback end lsn"))?,
        prepare_timestamp: r.i64(f("prepare timestamp"))?,
        rollback_timestamp: r.i64(f("rollback timestamp"))?,
        xid: r.u32(f("xid"))?,
        gid: r.cstr(f("gid"))?,
    })
}
