//! Decode errors: which message, where in it, and what was wrong.
//!
//! Every error is *definite* (STYLE.md §2): the bytes are what they are, and parsing them again
//! gives the same answer, so a retry cannot fix it. Offsets count bytes from the first byte of the
//! message (the tag is offset 0), so a report plus the captured frame pins the problem down.

use std::fmt;

/// The kind of message an error happened in, named as in the PostgreSQL manual ("Logical
/// Replication Message Formats" and "Streaming Replication Protocol").
///
/// A kind, not a raw tag byte: the same byte means different things at different layers
/// (`'r'` is Rollback Prepared in pgoutput but Standby status update in the COPY framing;
/// `'O'` is Origin at the top level but "old tuple follows" inside Update/Delete).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MessageKind {
    /// `'B'`
    Begin,
    /// `'M'` (logical decoding message, `pg_logical_emit_message`); the manual calls it "Message".
    LogicalMessage,
    /// `'C'`
    Commit,
    /// `'O'`
    Origin,
    /// `'R'`
    Relation,
    /// `'Y'`
    Type,
    /// `'I'`
    Insert,
    /// `'U'`
    Update,
    /// `'D'`
    Delete,
    /// `'T'`
    Truncate,
    /// `'S'` (protocol 2+)
    StreamStart,
    /// `'E'` (protocol 2+)
    StreamStop,
    /// `'c'` (protocol 2+)
    StreamCommit,
    /// `'A'` (protocol 2+)
    StreamAbort,
    /// `'b'` (protocol 3+)
    BeginPrepare,
    /// `'P'` (protocol 3+)
    Prepare,
    /// `'K'` (protocol 3+)
    CommitPrepared,
    /// `'r'` (protocol 3+)
    RollbackPrepared,
    /// `'p'` (protocol 3+)
    StreamPrepare,
    /// Replication COPY framing `'w'` from the server.
    XLogData,
    /// Replication COPY framing `'k'` from the server.
    PrimaryKeepalive,
    /// Replication COPY framing `'r'` from the client.
    StandbyStatusUpdate,
    /// The tag byte itself was missing or not recognised.
    Unknown,
}

impl MessageKind {
    /// The pgoutput message kind of a top-level tag byte, if it is one.
    pub fn from_pgoutput_tag(tag: u8) -> Option<Self> {
        Some(match tag {
            b'B' => Self::Begin,
            b'M' => Self::LogicalMessage,
            b'C' => Self::Commit,
            b'O' => Self::Origin,
            b'R' => Self::Relation,
            b'Y' => Self::Type,
            b'I' => Self::Insert,
            b'U' => Self::Update,
            b'D' => Self::Delete,
            b'T' => Self::Truncate,
            b'S' => Self::StreamStart,
            b'E' => Self::StreamStop,
            b'c' => Self::StreamCommit,
            b'A' => Self::StreamAbort,
            b'b' => Self::BeginPrepare,
            b'P' => Self::Prepare,
            b'K' => Self::CommitPrepared,
            b'r' => Self::RollbackPrepared,
            b'p' => Self::StreamPrepare,
            _ => return None,
        })
    }

    /// The manual's name of the message.
    pub fn name(self) -> &'static str {
        match self {
            Self::Begin => "Begin",
            Self::LogicalMessage => "Message",
            Self::Commit => "Commit",
            Self::Origin => "Origin",
            Self::Relation => "Relation",
            Self::Type => "Type",
            Self::Insert => "Insert",
            Self::Update => "Update",
            Self::Delete => "Delete",
            Self::Truncate => "Truncate",
            Self::StreamStart => "Stream Start",
            Self::StreamStop => "Stream Stop",
            Self::StreamCommit => "Stream Commit",
            Self::StreamAbort => "Stream Abort",
            Self::BeginPrepare => "Begin Prepare",
            Self::Prepare => "Prepare",
            Self::CommitPrepared => "Commit Prepared",
            Self::RollbackPrepared => "Rollback Prepared",
            Self::StreamPrepare => "Stream Prepare",
            Self::XLogData => "XLogData",
            Self::PrimaryKeepalive => "Primary keepalive",
            Self::StandbyStatusUpdate => "Standby status update",
            Self::Unknown => "message",
        }
    }
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which field of a message an error is about. Column and relation indexes are 0-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Field {
    /// A fixed field, named as in the manual (`"commit lsn"`, `"relation oid"`, …).
    Named(&'static str),
    /// Column `n` of a TupleData (0-based).
    TupleColumn(u16),
    /// Column `n` of a Relation message (0-based).
    RelationColumn(u16),
    /// The `n`-th relation oid of a Truncate message (0-based).
    TruncateRelation(u32),
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Named(name) => f.write_str(name),
            Self::TupleColumn(n) => write!(f, "tuple column {n}"),
            Self::RelationColumn(n) => write!(f, "relation column {n}"),
            Self::TruncateRelation(n) => write!(f, "truncate relation {n}"),
        }
    }
}

/// What was wrong with the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The message ended inside this field.
    #[error("truncated {0}")]
    Truncated(Field),
    /// A string had no terminating NUL before the end of the message.
    #[error("unterminated string {0}")]
    UnterminatedString(Field),
    /// A string was not valid UTF-8; the error offset points at the first bad byte.
    #[error("invalid UTF-8 in {0}")]
    InvalidUtf8(Field),
    /// The message was fully parsed but bytes were left over.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    /// The first byte is not a message tag of this layer.
    #[error("unknown message tag 0x{0:02x}")]
    UnknownTag(u8),
    /// A byte with a fixed set of values had another one.
    #[error("unexpected byte 0x{byte:02x} in {field}, expected {expected}")]
    UnexpectedByte {
        /// The field.
        field: Field,
        /// The byte found.
        byte: u8,
        /// What the protocol allows there.
        expected: &'static str,
    },
    /// A signed length or count was negative.
    #[error("negative length {value} in {field}")]
    NegativeLength {
        /// The field.
        field: Field,
        /// The declared value.
        value: i32,
    },
    /// The message exists only from a later protocol version than the one negotiated.
    #[error("message requires protocol version {required}, negotiated {negotiated}")]
    NotInProtocol {
        /// The first protocol version with this message (or with streaming).
        required: u32,
        /// The version the parser was told was negotiated.
        negotiated: u32,
    },
    /// The parser was configured with a protocol version outside 1–4.
    #[error("unsupported protocol version {0} (supported: 1-4)")]
    UnsupportedProtocol(u32),
    /// The message cannot appear where it did: inside a streamed block (between Stream Start and
    /// Stream Stop) when `in_stream` is true, or outside one when it is false.
    #[error("message not allowed {}", if *.in_stream { "inside a streamed block" } else { "outside a streamed block" })]
    StreamState {
        /// Whether the parser believed it was inside a streamed block.
        in_stream: bool,
    },
}

/// A pgoutput or replication-framing message could not be decoded.
///
/// Displays as `pgoutput Update at offset 17: truncated tuple column 3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("pgoutput {tag} at offset {offset}: {kind}")]
pub struct DecodeError {
    /// The message being decoded ([`MessageKind::Unknown`] if the tag was missing or unknown).
    pub tag: MessageKind,
    /// Byte offset from the start of the message (the tag byte is offset 0).
    pub offset: usize,
    /// What was wrong.
    pub kind: DecodeErrorKind,
}

impl DecodeError {
    /// Always `false`: decode errors are definite. The same bytes always fail the same way, so
    /// the pipeline must stop at this LSN instead of reconnecting and looping over it.
    pub fn is_transient(&self) -> bool {
        false
    }
}
