//! pgoutput messages (protocol versions 1–4), named and laid out as in the manual's "Logical
//! Replication Message Formats". Parsing lives in `parse.rs`, encoding in `encode.rs`.
//!
//! Messages borrow strings and values from the bytes they were parsed from. LSNs are `u64`,
//! timestamps `i64` µs since 2000-01-01 UTC, xids `u32`.

use crate::error::MessageKind;
use crate::tuple::TupleData;

/// Microseconds from the Unix epoch to the PostgreSQL epoch (2000-01-01 00:00:00 UTC).
pub const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

/// Converts a PostgreSQL timestamp (µs since 2000-01-01 UTC) to µs since the Unix epoch.
/// `None` if the result does not fit in an `i64` (only near `infinity`, which commit times never are).
pub fn pg_timestamp_to_unix_micros(pg_micros: i64) -> Option<i64> {
    pg_micros.checked_add(PG_EPOCH_UNIX_MICROS)
}

/// Converts µs since the Unix epoch to a PostgreSQL timestamp (µs since 2000-01-01 UTC).
pub fn unix_micros_to_pg_timestamp(unix_micros: i64) -> Option<i64> {
    unix_micros.checked_sub(PG_EPOCH_UNIX_MICROS)
}

/// Replica identity of a relation (`pg_class.relreplident`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplicaIdentity {
    /// `'d'`: the primary key (old key sent only when it changes).
    Default,
    /// `'n'`: nothing; no old values are sent.
    Nothing,
    /// `'f'`: all columns; the old row is sent in full (`'O'`).
    Full,
    /// `'i'`: the columns of a chosen unique index.
    Index,
}

impl ReplicaIdentity {
    /// The wire byte.
    pub fn to_byte(self) -> u8 {
        match self {
            Self::Default => b'd',
            Self::Nothing => b'n',
            Self::Full => b'f',
            Self::Index => b'i',
        }
    }

    /// Parses the wire byte.
    pub fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            b'd' => Self::Default,
            b'n' => Self::Nothing,
            b'f' => Self::Full,
            b'i' => Self::Index,
            _ => return None,
        })
    }
}

/// `'B'` Begin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Begin {
    /// The final LSN of the transaction (its commit record).
    pub final_lsn: u64,
    /// Commit time, µs since 2000-01-01 UTC.
    pub commit_timestamp: i64,
    /// Xid of the transaction.
    pub xid: u32,
}

/// `'M'` logical decoding message (`pg_logical_emit_message`, sent with `messages = true`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalMessage<'a> {
    /// Present only inside a streamed block: the xid of the transaction *or subtransaction*
    /// that made the change (crate docs, trap "xid inside streams").
    pub xid: Option<u32>,
    /// Flags; bit 1 set means transactional.
    pub flags: u8,
    /// LSN of the message.
    pub lsn: u64,
    /// The prefix.
    pub prefix: &'a str,
    /// The content, arbitrary bytes.
    pub content: &'a [u8],
}

impl LogicalMessage<'_> {
    /// True for a transactional message (sent inside Begin/Commit).
    pub fn transactional(&self) -> bool {
        self.flags & 1 != 0
    }
}

/// `'C'` Commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commit {
    /// Flags (currently unused, 0).
    pub flags: u8,
    /// LSN of the commit record.
    pub commit_lsn: u64,
    /// End LSN of the transaction.
    pub end_lsn: u64,
    /// Commit time, µs since 2000-01-01 UTC.
    pub commit_timestamp: i64,
}

/// `'O'` Origin: the transaction was replayed from another node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin<'a> {
    /// LSN of the commit on the origin server.
    pub commit_lsn: u64,
    /// Name of the origin.
    pub name: &'a str,
}

/// A column of a Relation message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn<'a> {
    /// Flags; bit 1 marks a replica identity ("key") column.
    pub flags: u8,
    /// Column name.
    pub name: &'a str,
    /// Type oid.
    pub type_oid: u32,
    /// Type modifier (`atttypmod`, -1 if none).
    pub type_modifier: i32,
}

impl RelationColumn<'_> {
    /// True if the column is part of the replica identity (not necessarily the primary key).
    pub fn is_key(&self) -> bool {
        self.flags & 1 != 0
    }
}

/// `'R'` Relation: the schema of a table, sent before its first change and after every change
/// of its definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation<'a> {
    /// Present only inside a streamed block: the xid of the transaction *or subtransaction*
    /// that made the change (crate docs, trap "xid inside streams").
    pub xid: Option<u32>,
    /// Relation oid.
    pub oid: u32,
    /// Namespace as sent: **empty for `pg_catalog`** (use [`Relation::namespace_name`]).
    pub namespace: &'a str,
    /// Relation name.
    pub name: &'a str,
    /// Replica identity setting.
    pub replica_identity: ReplicaIdentity,
    /// Columns, in the order of TupleData values.
    pub columns: Vec<RelationColumn<'a>>,
}

impl Relation<'_> {
    /// The namespace with the empty-means-`pg_catalog` convention resolved.
    pub fn namespace_name(&self) -> &str {
        resolve_namespace(self.namespace)
    }
}

/// `'Y'` Type: a non-built-in type used by a following Relation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Type<'a> {
    /// Present only inside a streamed block: the xid of the transaction *or subtransaction*
    /// that made the change (crate docs, trap "xid inside streams").
    pub xid: Option<u32>,
    /// Type oid.
    pub oid: u32,
    /// Namespace as sent: **empty for `pg_catalog`** (use [`Type::namespace_name`]).
    pub namespace: &'a str,
    /// Type name.
    pub name: &'a str,
}

impl Type<'_> {
    /// The namespace with the empty-means-`pg_catalog` convention resolved.
    pub fn namespace_name(&self) -> &str {
        resolve_namespace(self.namespace)
    }
}

fn resolve_namespace(namespace: &str) -> &str {
    if namespace.is_empty() {
        "pg_catalog"
    } else {
        namespace
    }
}

/// The old image in an Update or Delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldTuple<'a> {
    /// `'K'`: only the replica identity columns; the others are `'n'`.
    Key(TupleData<'a>),
    /// `'O'`: the whole old row (REPLICA IDENTITY FULL).
    Full(TupleData<'a>),
}

impl<'a> OldTuple<'a> {
    /// The tuple, whichever kind.
    pub fn tuple(&self) -> &TupleData<'a> {
        match self {
            Self::Key(t) | Self::Full(t) => t,
        }
    }
}

/// `'I'` Insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insert<'a> {
    /// Present only inside a streamed block: the xid of the transaction *or subtransaction*
    /// that made the change (crate docs, trap "xid inside streams").
    pub xid: Option<u32>,
    /// Oid of the relation (from an earlier Relation message).
    pub relation_oid: u32,
    /// The new row.
    pub new: TupleData<'a>,
}

/// `'U'` Update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update<'a> {
    /// Present only inside a streamed block: the xid of the transaction *or subtransaction*
    /// that made the change (crate docs, trap "xid inside streams").
    pub xid: Option<u32>,
    /// Oid of the relation.
    pub relation_oid: u32,
    /// The old key or row, if the server sent one (key changed, or REPLICA IDENTITY FULL).
    pub old: Option<OldTuple<'a>>,
    /// The new row; may contain unchanged-TOAST values.
    pub new: TupleData<'a>,
}

/// `'D'` Delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete<'a> {
    /// Present only inside a streamed block: the xid of the transaction *or subtransaction*
    /// that made the change (crate docs, trap "xid inside streams").
    pub xid: Option<u32>,
    /// Oid of the relation.
    pub relation_oid: u32,
    /// The old key or row.
    pub old: OldTuple<'a>,
}

/// `'T'` Truncate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncate {
    /// Present only inside a streamed block: the xid of the transaction *or subtransaction*
    /// that made the change (crate docs, trap "xid inside streams").
    pub xid: Option<u32>,
    /// Option bits: 1 = CASCADE, 2 = RESTART IDENTITY.
    pub options: u8,
    /// Oids of the truncated relations.
    pub relation_oids: Vec<u32>,
}

impl Truncate {
    /// `TRUNCATE … CASCADE`.
    pub fn cascade(&self) -> bool {
        self.options & 1 != 0
    }

    /// `TRUNCATE … RESTART IDENTITY`.
    pub fn restart_identity(&self) -> bool {
        self.options & 2 != 0
    }
}

/// `'S'` Stream Start (protocol 2+).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamStart {
    /// Xid of the streamed transaction.
    pub xid: u32,
    /// True for the first segment of this transaction.
    pub first_segment: bool,
}

/// `'c'` Stream Commit (protocol 2+).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamCommit {
    /// Xid of the transaction.
    pub xid: u32,
    /// Flags (currently unused, 0).
    pub flags: u8,
    /// LSN of the commit record.
    pub commit_lsn: u64,
    /// End LSN of the transaction.
    pub end_lsn: u64,
    /// Commit time, µs since 2000-01-01 UTC.
    pub commit_timestamp: i64,
}

/// Extra Stream Abort fields of protocol 4 with `streaming = parallel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortInfo {
    /// LSN of the abort.
    pub abort_lsn: u64,
    /// Abort time, µs since 2000-01-01 UTC.
    pub abort_timestamp: i64,
}

/// `'A'` Stream Abort (protocol 2+).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamAbort {
    /// Xid of the top-level transaction.
    pub xid: u32,
    /// Xid of the aborted subtransaction (equal to `xid` when the whole transaction aborted).
    pub subxid: u32,
    /// Present iff protocol ≥ 4 and `streaming = parallel`.
    pub abort: Option<AbortInfo>,
}

/// `'b'` Begin Prepare (protocol 3+).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeginPrepare<'a> {
    /// LSN of the prepare.
    pub prepare_lsn: u64,
    /// End LSN of the prepared transaction.
    pub end_lsn: u64,
    /// Prepare time, µs since 2000-01-01 UTC.
    pub prepare_timestamp: i64,
    /// Xid of the transaction.
    pub xid: u32,
    /// Global transaction id.
    pub gid: &'a str,
}

/// `'P'` Prepare and `'p'` Stream Prepare (protocol 3+); both have this layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepare<'a> {
    /// Flags (currently unused, 0).
    pub flags: u8,
    /// LSN of the prepare.
    pub prepare_lsn: u64,
    /// End LSN of the prepared transaction.
    pub end_lsn: u64,
    /// Prepare time, µs since 2000-01-01 UTC.
    pub prepare_timestamp: i64,
    /// Xid of the transaction.
    pub xid: u32,
    /// Global transaction id.
    pub gid: &'a str,
}

/// `'K'` Commit Prepared (protocol 3+).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitPrepared<'a> {
    /// Flags (currently unused, 0).
    pub flags: u8,
    /// LSN of the commit prepared.
    pub commit_lsn: u64,
    /// End LSN of the commit prepared.
    pub end_lsn: u64,
    /// Commit time, µs since 2000-01-01 UTC.
    pub commit_timestamp: i64,
    /// Xid of the transaction.
    pub xid: u32,
    /// Global transaction id.
    pub gid: &'a str,
}

/// `'r'` Rollback Prepared (protocol 3+).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackPrepared<'a> {
    /// Flags (currently unused, 0).
    pub flags: u8,
    /// End LSN of the prepared transaction.
    pub prepare_end_lsn: u64,
    /// End LSN of the rollback prepared.
    pub rollback_end_lsn: u64,
    /// Prepare time, µs since 2000-01-01 UTC.
    pub prepare_timestamp: i64,
    /// Rollback time, µs since 2000-01-01 UTC.
    pub rollback_timestamp: i64,
    /// Xid of the transaction.
    pub xid: u32,
    /// Global transaction id.
    pub gid: &'a str,
}

/// One pgoutput message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Message<'a> {
    /// `'B'`
    Begin(Begin),
    /// `'M'`
    LogicalMessage(LogicalMessage<'a>),
    /// `'C'`
    Commit(Commit),
    /// `'O'`
    Origin(Origin<'a>),
    /// `'R'`
    Relation(Relation<'a>),
    /// `'Y'`
    Type(Type<'a>),
    /// `'I'`
    Insert(Insert<'a>),
    /// `'U'`
    Update(Update<'a>),
    /// `'D'`
    Delete(Delete<'a>),
    /// `'T'`
    Truncate(Truncate),
    /// `'S'`
    StreamStart(StreamStart),
    /// `'E'`
    StreamStop,
    /// `'c'`
    StreamCommit(StreamCommit),
    /// `'A'`
    StreamAbort(StreamAbort),
    /// `'b'`
    BeginPrepare(BeginPrepare<'a>),
    /// `'P'`
    Prepare(Prepare<'a>),
    /// `'K'`
    CommitPrepared(CommitPrepared<'a>),
    /// `'r'`
    RollbackPrepared(RollbackPrepared<'a>),
    /// `'p'`
    StreamPrepare(Prepare<'a>),
}

impl Message<'_> {
    /// The kind of the message.
    pub fn kind(&self) -> MessageKind {
        use MessageKind as K;
        match self {
            Self::Begin(_) => K::Begin,
            Self::LogicalMessage(_) => K::LogicalMessage,
            Self::Commit(_) => K::Commit,
            Self::Origin(_) => K::Origin,
            Self::Relation(_) => K::Relation,
            Self::Type(_) => K::Type,
            Self::Insert(_) => K::Insert,
            Self::Update(_) => K::Update,
            Self::Delete(_) => K::Delete,
            Self::Truncate(_) => K::Truncate,
            Self::StreamStart(_) => K::StreamStart,
            Self::StreamStop => K::StreamStop,
            Self::StreamCommit(_) => K::StreamCommit,
            Self::StreamAbort(_) => K::StreamAbort,
            Self::BeginPrepare(_) => K::BeginPrepare,
            Self::Prepare(_) => K::Prepare,
            Self::CommitPrepared(_) => K::CommitPrepared,
            Self::RollbackPrepared(_) => K::RollbackPrepared,
            Self::StreamPrepare(_) => K::StreamPrepare,
        }
    }

    /// The tag byte of the message.
    pub fn tag(&self) -> u8 {
        match self {
            Self::Begin(_) => b'B',
            Self::LogicalMessage(_) => b'M',
            Self::Commit(_) => b'C',
            Self::Origin(_) => b'O',
            Self::Relation(_) => b'R',
            Self::Type(_) => b'Y',
            Self::Insert(_) => b'I',
            Self::Update(_) => b'U',
            Self::Delete(_) => b'D',
            Self::Truncate(_) => b'T',
            Self::StreamStart(_) => b'S',
            Self::StreamStop => b'E',
            Self::StreamCommit(_) => b'c',
            Self::StreamAbort(_) => b'A',
            Self::BeginPrepare(_) => b'b',
            Self::Prepare(_) => b'P',
            Self::CommitPrepared(_) => b'K',
            Self::RollbackPrepared(_) => b'r',
            Self::StreamPrepare(_) => b'p',
        }
    }
}
