//! Sans-IO parser of PostgreSQL's `pgoutput` logical replication protocol, versions 1–4.
//!
//! PostgreSQL's walsender decodes WAL through the `pgoutput` plugin and sends one message per
//! CopyData frame. This crate turns those bytes into typed messages; it has no socket, clock or
//! runtime, so it can be fuzzed, property-tested and benchmarked on captured bytes.
//!
//! ```text
//!  socket ─► src/source/postgres ─► CopyData payload
//!                                     │ ReplicationMessage::parse          (replication.rs)
//!                                     ├─ 'k' PrimaryKeepalive ─► reply with encode_standby_status_update
//!                                     └─ 'w' XLogData { wal_start, data }
//!                                              │ ParseContext::parse_next  (parse.rs, tuple.rs)
//!                                              ▼
//!                                  Message::{Begin, Relation, Insert, …, Commit}
//!                                              │ (decoder, separate layer)
//!                                              ▼
//!                                      Arrow change model
//! ```
//!
//! A transaction arrives as `Begin, (Origin)?, (Relation | Type | Insert | Update | Delete |
//! Truncate | Message)*, Commit`. With `streaming = on` (protocol 2+) a large in-progress
//! transaction arrives instead as blocks `Stream Start, (Origin)?, data…, Stream Stop`, possibly
//! interleaved with other transactions, and is settled later by `Stream Commit` or
//! `Stream Abort`. With `two_phase = on` (protocol 3+) prepared transactions use `Begin Prepare`,
//! `Prepare`, `Commit Prepared`, `Rollback Prepared` and `Stream Prepare`.
//!
//! # Invariants we rely on
//! - One XLogData frame carries exactly one pgoutput message: every parse consumes its input
//!   exactly, and leftover bytes are an error, never ignored.
//! - No input makes the parser panic, and no declared length or count makes it allocate more than
//!   the input's own size (Relation columns and Truncate oids are the only `Vec`s).
//! - Errors are definite ([`DecodeError::is_transient`] is false) and carry the message kind
//!   and byte offset.
//!
//! # Traps
//! - **xid inside streams.** Between Stream Start and Stream Stop, Relation, Type, Insert,
//!   Update, Delete, Truncate and Message carry an extra Int32 xid right after the tag
//!   (`logicalrep_write_insert` & co. write it when the xid is valid, which pgoutput does only
//!   while streaming). Nothing in the message says so; the parser must track the block, which
//!   [`ParseContext::parse_next`] does. Origin, sent right after Stream Start, has no xid.
//!   That xid is the one of the (sub)transaction that made the change (`change->txn->xid` in
//!   `pgoutput_change`), so it can differ from the Stream Start xid: a change made after a
//!   `SAVEPOINT` carries the subxact's xid, and a Stream Abort whose `subxid` differs from its
//!   `xid` (one per aborted subtransaction) discards the changes that carried that `subxid` (golden
//!   fixture `v2_stream.bin`). Group streamed changes by the Stream Start xid, keep the carried
//!   xid for subtransaction aborts.
//!   <https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html>
//! - **Stream Abort grew in protocol 4.** With `proto_version = 4` *and* `streaming = parallel`
//!   it carries the abort LSN and timestamp; otherwise not (`pgoutput_stream_abort`,
//!   `write_abort_info`). The parser must be told both ([`ParseContext`]).
//! - **Unchanged TOAST is not NULL.** Tuple value kind `'u'` means the value was not sent because
//!   it did not change; see [`TupleValue::UnchangedToast`].
//! - **Empty namespace means `pg_catalog`.** Relation and Type send an empty string for objects
//!   in `pg_catalog` (`logicalrep_write_namespace`); use `namespace_name()`.
//! - **Relation before use, and again after a schema change.** Relation messages arrive before
//!   the first change of a relation in a session and whenever its definition or replica identity
//!   changes; a cache keyed by oid must be replaced, not merged. Type messages precede Relations
//!   that use non-built-in types.
//! - **Old tuple `'K'` vs `'O'`.** Update carries an old key (`'K'`) only when the key changed
//!   under REPLICA IDENTITY DEFAULT/INDEX, or the full old row (`'O'`) under REPLICA IDENTITY
//!   FULL; Delete always carries one of them. `'K'` tuples have `'n'` for non-key columns.
//! - **The `'O'` byte means two things**: the Origin message tag at the top level, "old full
//!   tuple" inside Update/Delete. Likewise `'r'` is Rollback Prepared in pgoutput and the
//!   Standby status update in the COPY framing; errors name a [`MessageKind`], not a byte.
//! - **Names are in the server encoding.** We require UTF-8 for names and strings and report the
//!   offset of the first invalid byte; tuple values are passed on as bytes.
//! - **Timestamps are µs since 2000-01-01 UTC**; see [`pg_timestamp_to_unix_micros`].
//! - **Empty transactions.** PG 15+ skips sending empty transactions; a keepalive is then the
//!   only sign of progress (see [`replication`]).

mod error;
mod message;
mod parse;
mod reader;
pub mod replication;
mod tuple;

pub mod decoder;
pub mod encode;

pub use error::{DecodeError, DecodeErrorKind, Field, MessageKind};
pub use message::{
    pg_timestamp_to_unix_micros, unix_micros_to_pg_timestamp, AbortInfo, Begin, BeginPrepare,
    Commit, CommitPrepared, Delete, Insert, LogicalMessage, Message, OldTuple, Origin, Prepare,
    Relation, RelationColumn, ReplicaIdentity, RollbackPrepared, StreamAbort, StreamCommit,
    StreamStart, Truncate, Type, Update, PG_EPOCH_UNIX_MICROS,
};
pub use parse::{ParseContext, MAX_PROTOCOL_VERSION};
pub use replication::{
    encode_standby_status_update, PrimaryKeepalive, ReplicationMessage, StandbyStatusUpdate,
    XLogData,
};
pub use tuple::{TupleData, TupleIter, TupleValue};
