//! Encoder: the inverse of the parser, for tests, benches and fake servers.
//!
//! `encode::message(&msg)` writes exactly the bytes PostgreSQL would send for `msg`, so that
//! `Message::parse(&encode::message(&m), &ctx) == Ok(m)` for the context the message was built
//! for (xid fields `Some` iff `in_stream`; Stream Abort info `Some` iff protocol 4 with parallel
//! streaming). Tuples are built from values with [`tuple()`] or the [`insert`]/[`update`]/[`delete`]
//! shortcuts.
//!
//! The encoder trusts its input: it panics on values the protocol cannot express (more than
//! `i16::MAX` columns, a value or content over `i32::MAX` bytes, a string containing NUL).

use crate::message::{Message, OldTuple, Relation};
use crate::tuple::{TupleData, TupleValue};

fn put_u8(out: &mut Vec<u8>, v: u8) {
    out.push(v);
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    let len = i32::try_from(len).expect("encoder input: length over i32::MAX");
    put_i32(out, len);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    assert!(!s.contains('\0'), "encoder input: string contains NUL");
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

fn put_opt_xid(out: &mut Vec<u8>, xid: Option<u32>) {
    if let Some(xid) = xid {
        put_u32(out, xid);
    }
}

fn put_tuple_data(out: &mut Vec<u8>, tuple: &TupleData<'_>) {
    let count = i16::try_from(tuple.len()).expect("TupleData never exceeds i16::MAX columns");
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(tuple.raw());
}

fn put_old(out: &mut Vec<u8>, old: &OldTuple<'_>) {
    match old {
        OldTuple::Key(t) => {
            put_u8(out, b'K');
            put_tuple_data(out, t);
        }
        OldTuple::Full(t) => {
            put_u8(out, b'O');
            put_tuple_data(out, t);
        }
    }
}

/// Appends an encoded TupleData (Int16 count and columns) built from `values`.
pub fn tuple_into(out: &mut Vec<u8>, values: &[TupleValue<'_>]) {
    let count = i16::try_from(values.len()).expect("encoder input: over i16::MAX columns");
    out.extend_from_slice(&count.to_be_bytes());
    for value in values {
        match value {
            TupleValue::Null => put_u8(out, b'n'),
            TupleValue::UnchangedToast => put_u8(out, b'u'),
            TupleValue::Text(bytes) | TupleValue::Binary(bytes) => {
                let kind = if matches!(value, TupleValue::Text(_)) {
                    b't'
                } else {
                    b'b'
                };
                put_u8(out, kind);
                put_len(out, bytes.len());
                out.extend_from_slice(bytes);
            }
        }
    }
}

/// An encoded TupleData built from `values`; parse it back with [`TupleData::parse`].
pub fn tuple(values: &[TupleValue<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    tuple_into(&mut out, values);
    out
}

/// The encoded form of `message`.
pub fn message(message: &Message<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    message_into(&mut out, message);
    out
}

/// Appends the encoded form of `message` to `out`.
pub fn message_into(out: &mut Vec<u8>, message: &Message<'_>) {
    put_u8(out, message.tag());
    match message {
        Message::Begin(m) => {
            put_u64(out, m.final_lsn);
            put_i64(out, m.commit_timestamp);
            put_u32(out, m.xid);
        }
        Message::LogicalMessage(m) => {
            put_opt_xid(out, m.xid);
            put_u8(out, m.flags);
            put_u64(out, m.lsn);
            put_str(out, m.prefix);
            put_len(out, m.content.len());
            out.extend_from_slice(m.content);
        }
        Message::Commit(m) => {
            put_u8(out, m.flags);
            put_u64(out, m.commit_lsn);
            put_u64(out, m.end_lsn);
            put_i64(out, m.commit_timestamp);
        }
        Message::Origin(m) => {
            put_u64(out, m.commit_lsn);
            put_str(out, m.name);
        }
        Message::Relation(m) => put_relation(out, m),
        Message::Type(m) => {
            put_opt_xid(out, m.xid);
            put_u32(out, m.oid);
            put_str(out, m.namespace);
            put_str(out, m.name);
        }
        Message::Insert(m) => {
            put_opt_xid(out, m.xid);
            put_u32(out, m.relation_oid);
            put_u8(out, b'N');
            put_tuple_data(out, &m.new);
        }
        Message::Update(m) => {
            put_opt_xid(out, m.xid);
            put_u32(out, m.relation_oid);
            if let Some(old) = &m.old {
                put_old(out, old);
            }
            put_u8(out, b'N');
            put_tuple_data(out, &m.new);
        }
        Message::Delete(m) => {
            put_opt_xid(out, m.xid);
            put_u32(out, m.relation_oid);
            put_old(out, &m.old);
        }
        Message::Truncate(m) => {
            put_opt_xid(out, m.xid);
            put_len(out, m.relation_oids.len());
            put_u8(out, m.options);
            m.relation_oids.iter().for_each(|&oid| put_u32(out, oid));
        }
        Message::StreamStart(m) => {
            put_u32(out, m.xid);
            put_u8(out, u8::from(m.first_segment));
        }
        Message::StreamStop => {}
        Message::StreamCommit(m) => {
            put_u32(out, m.xid);
            put_u8(out, m.flags);
            put_u64(out, m.commit_lsn);
            put_u64(out, m.end_lsn);
            put_i64(out, m.commit_timestamp);
        }
        Message::StreamAbort(m) => {
            put_u32(out, m.xid);
            put_u32(out, m.subxid);
            if let Some(info) = m.abort {
                put_u64(out, info.abort_lsn);
                put_i64(out, info.abort_timestamp);
            }
        }
        Message::BeginPrepare(m) => {
            put_u64(out, m.prepare_lsn);
            put_u64(out, m.end_lsn);
            put_i64(out, m.prepare_timestamp);
            put_u32(out, m.xid);
            put_str(out, m.gid);
        }
        Message::Prepare(m) | Message::StreamPrepare(m) => {
            put_u8(out, m.flags);
            put_u64(out, m.prepare_lsn);
            put_u64(out, m.end_lsn);
            put_i64(out, m.prepare_timestamp);
            put_u32(out, m.xid);
            put_str(out, m.gid);
        }
        Message::CommitPrepared(m) => {
            put_u8(out, m.flags);
            put_u64(out, m.commit_lsn);
            put_u64(out, m.end_lsn);
            put_i64(out, m.commit_timestamp);
            put_u32(out, m.xid);
            put_str(out, m.gid);
        }
        Message::RollbackPrepared(m) => {
            put_u8(out, m.flags);
            put_u64(out, m.prepare_end_lsn);
            put_u64(out, m.rollback_end_lsn);
            put_i64(out, m.prepare_timestamp);
            put_i64(out, m.rollback_timestamp);
            put_u32(out, m.xid);
            put_str(out, m.gid);
        }
    }
}

fn put_relation(out: &mut Vec<u8>, m: &Relation<'_>) {
    put_opt_xid(out, m.xid);
    put_u32(out, m.oid);
    put_str(out, m.namespace);
    put_str(out, m.name);
    put_u8(out, m.replica_identity.to_byte());
    let count = i16::try_from(m.columns.len()).expect("encoder input: over i16::MAX columns");
    out.extend_from_slice(&count.to_be_bytes());
    for c in &m.columns {
        put_u8(out, c.flags);
        put_str(out, c.name);
        put_u32(out, c.type_oid);
        put_i32(out, c.type_modifier);
    }
}

/// Which old image an Update or Delete carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldImage {
    /// `'K'`: replica identity columns only.
    Key,
    /// `'O'`: the full old row.
    Full,
}

impl OldImage {
    fn tag(self) -> u8 {
        match self {
            Self::Key => b'K',
            Self::Full => b'O',
        }
    }
}

/// An Insert message (`xid` only inside a streamed block).
pub fn insert(xid: Option<u32>, relation_oid: u32, new: &[TupleValue<'_>]) -> Vec<u8> {
    let mut out = vec![b'I'];
    put_opt_xid(&mut out, xid);
    put_u32(&mut out, relation_oid);
    put_u8(&mut out, b'N');
    tuple_into(&mut out, new);
    out
}

/// An Update message, with an optional old image.
pub fn update(
    xid: Option<u32>,
    relation_oid: u32,
    old: Option<(OldImage, &[TupleValue<'_>])>,
    new: &[TupleValue<'_>],
) -> Vec<u8> {
    let mut out = vec![b'U'];
    put_opt_xid(&mut out, xid);
    put_u32(&mut out, relation_oid);
    if let Some((image, values)) = old {
        put_u8(&mut out, image.tag());
        tuple_into(&mut out, values);
    }
    put_u8(&mut out, b'N');
    tuple_into(&mut out, new);
    out
}

/// A Delete message.
pub fn delete(
    xid: Option<u32>,
    relation_oid: u32,
    image: OldImage,
    old: &[TupleValue<'_>],
) -> Vec<u8> {
    let mut out = vec![b'D'];
    put_opt_xid(&mut out, xid);
    put_u32(&mut out, relation_oid);
    put_u8(&mut out, image.tag());
    tuple_into(&mut out, old);
    out
}

/// An XLogData (`'w'`) CopyData payload wrapping `data`.
pub fn xlog_data(wal_start: u64, wal_end: u64, server_time: i64, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(25 + data.len());
    put_u8(&mut out, b'w');
    put_u64(&mut out, wal_start);
    put_u64(&mut out, wal_end);
    put_i64(&mut out, server_time);
    out.extend_from_slice(data);
    out
}

/// A Primary keepalive (`'k'`) CopyData payload.
pub fn primary_keepalive(wal_end: u64, server_time: i64, reply_requested: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(18);
    put_u8(&mut out, b'k');
    put_u64(&mut out, wal_end);
    put_i64(&mut out, server_time);
    put_u8(&mut out, u8::from(reply_requested));
    out
}
