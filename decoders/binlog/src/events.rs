//! Bodies of the non-row events: QUERY, XID, ROTATE, heartbeats, GTIDs (MySQL and MariaDB),
//! previous GTIDs, GTID list, binlog checkpoint, rows query / annotate rows, transaction payload.
//!
//! Every parser takes the body (after the common header, checksum removed) and must consume
//! it within its bounds; trailing bytes are allowed only where the format says the event grows
//! in later server versions (GTID events, MariaDB GTID padding).

use tidemark_model::Gtid;

use crate::error::{invalid, ErrorKind};
use crate::reader::{be_uint, Reader};
use crate::table_map::packed_len;

/// QUERY_EVENT (and MariaDB QUERY_COMPRESSED_EVENT once decompressed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub thread_id: u32,
    pub exec_time: u32,
    pub error_code: u16,
    /// The default database of the statement (`USE db`), may be empty.
    pub schema: String,
    /// The statement text, in the connection's character set (assumed UTF-8; lossy).
    pub query: String,
}

impl Query {
    /// `query_bytes` lets a caller substitute the decompressed statement (MariaDB).
    pub fn parse(body: &[u8]) -> Result<(Query, &[u8]), ErrorKind> {
        let mut r = Reader::new(body);
        let thread_id = r.u32()?;
        let exec_time = r.u32()?;
        let schema_len = usize::from(r.u8()?);
        let error_code = r.u16()?;
        let status_len = usize::from(r.u16()?);
        r.take(status_len)?;
        let schema = String::from_utf8_lossy(r.take(schema_len)?).into_owned();
        if r.u8()? != 0 {
            return Err(invalid(r.offset() - 1, "schema name not NUL-terminated"));
        }
        let q = r.rest();
        Ok((
            Query {
                thread_id,
                exec_time,
                error_code,
                schema,
                query: String::new(),
            },
            q,
        ))
    }
}

/// ROTATE_EVENT: the next binlog file and the offset to read it from.
pub fn parse_rotate(body: &[u8]) -> Result<(u64, String), ErrorKind> {
    let mut r = Reader::new(body);
    let pos = r.u64()?;
    let name = r.rest();
    let name = std::str::from_utf8(name).map_err(|_| invalid(8, "file name is not UTF-8"))?;
    if name.is_empty() {
        return Err(invalid(8, "empty file name"));
    }
    Ok((pos, name.to_owned()))
}

/// HEARTBEAT_LOG_EVENT: the current file (the header's `log_pos` is the position).
pub fn parse_heartbeat(body: &[u8]) -> Result<String, ErrorKind> {
    Ok(String::from_utf8_lossy(body).into_owned())
}

/// HEARTBEAT_LOG_EVENT_V2 (MySQL 8.0.26+): TLV fields, 0 = file name, 1 = position
/// (packed), 2 = end of header.
pub fn parse_heartbeat_v2(body: &[u8]) -> Result<(String, Option<u64>), ErrorKind> {
    let mut r = Reader::new(body);
    let (mut file, mut pos) = (String::new(), None);
    while !r.is_empty() {
        let t = packed_len(&mut r, "heartbeat field type")?;
        if t == 2 {
            break;
        }
        let len = packed_len(&mut r, "heartbeat field length")?;
        let v = r.take(len)?;
        match t {
            0 => file = String::from_utf8_lossy(v).into_owned(),
            1 => pos = Reader::new(v).packed()?,
            _ => {}
        }
    }
    Ok((file, pos))
}

/// GTID_LOG_EVENT / ANONYMOUS_GTID_LOG_EVENT (MySQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MysqlGtidEvent {
    pub flags: u8,
    pub uuid: [u8; 16],
    pub gno: u64,
    pub last_committed: Option<i64>,
    pub sequence_number: Option<i64>,
    /// µs since the epoch, when the server wrote it (8.0.1+).
    pub immediate_commit_ts_us: Option<u64>,
    pub original_commit_ts_us: Option<u64>,
}

impl MysqlGtidEvent {
    pub fn parse(body: &[u8]) -> Result<MysqlGtidEvent, ErrorKind> {
        let mut r = Reader::new(body);
        let flags = r.u8()?;
        let uuid: [u8; 16] = r.take(16)?.try_into().map_err(|_| invalid(1, "uuid"))?;
        let gno = r.u64()?;
        let mut ev = MysqlGtidEvent {
            flags,
            uuid,
            gno,
            last_committed: None,
            sequence_number: None,
            immediate_commit_ts_us: None,
            original_commit_ts_us: None,
        };
        // Logical clock (5.7+): typecode 2, last_committed, sequence_number.
        if r.remaining() >= 17 && r.u8()? == 2 {
            ev.last_committed = Some(r.u64()? as i64);
            ev.sequence_number = Some(r.u64()? as i64);
            if r.remaining() >= 7 {
                let raw = r.uint(7)?;
                let has_original = raw & (1 << 55) != 0;
                let immediate = raw & !(1 << 55);
                ev.immediate_commit_ts_us = Some(immediate);
                ev.original_commit_ts_us = if has_original && r.remaining() >= 7 {
                    Some(r.uint(7)?)
                } else {
                    Some(immediate)
                };
            }
        }
        // Newer fields (transaction length, server versions, commit group ticket) follow.
        Ok(ev)
    }

    /// The GTID, or `None` for an anonymous one (uuid zero, gno 0).
    pub fn gtid(&self) -> Option<Gtid> {
        (self.gno != 0 || self.uuid != [0; 16]).then_some(Gtid::Mysql {
            uuid: self.uuid,
            gno: self.gno,
        })
    }
}

/// PREVIOUS_GTIDS_LOG_EVENT: the GTID set executed before this file, as `uuid: [start, end)`.
/// A GTID set as `(server uuid, [start, end) intervals)`.
pub type GtidSet = Vec<([u8; 16], Vec<(u64, u64)>)>;

pub fn parse_previous_gtids(body: &[u8]) -> Result<GtidSet, ErrorKind> {
    let mut r = Reader::new(body);
    let n = r.u64()?;
    let mut out = Vec::new();
    for _ in 0..n {
        let uuid: [u8; 16] = r.take(16)?.try_into().map_err(|_| invalid(0, "uuid"))?;
        let k = r.u64()?;
        // Each interval is 16 bytes: bound the allocation by the input.
        if k > (r.remaining() / 16) as u64 {
            return Err(invalid(r.offset(), "interval count exceeds the event"));
        }
        let mut iv = Vec::with_capacity(k as usize);
        for _ in 0..k {
            iv.push((r.u64()?, r.u64()?));
        }
        out.push((uuid, iv));
    }
    if !r.is_empty() {
        return Err(invalid(r.offset(), "bytes after the GTID set"));
    }
    Ok(out)
}

/// MariaDB GTID_EVENT flags.
pub mod mariadb_flags {
    /// The event group is one statement with no BEGIN/COMMIT (DDL, non-transactional).
    pub const STANDALONE: u8 = 1;
    pub const GROUP_COMMIT_ID: u8 = 2;
    pub const TRANSACTIONAL: u8 = 4;
    pub const PREPARED_XA: u8 = 0x40;
    pub const COMPLETED_XA: u8 = 0x80;
}

/// MariaDB GTID_EVENT: starts an event group (it replaces BEGIN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MariadbGtidEvent {
    pub seq: u64,
    pub domain: u32,
    pub flags: u8,
    pub commit_id: Option<u64>,
}

impl MariadbGtidEvent {
    pub fn parse(body: &[u8]) -> Result<MariadbGtidEvent, ErrorKind> {
        let mut r = Reader::new(body);
        let seq = r.u64()?;
        let domain = r.u32()?;
        let flags = r.u8()?;
        let commit_id = if flags & mariadb_flags::GROUP_COMMIT_ID != 0 {
            Some(r.u64()?)
        } else {
            None
        };
        // XA xid and 10.8+ extra flags follow; padding up to the post-header length.
        Ok(MariadbGtidEvent {
            seq,
            domain,
            flags,
            commit_id,
        })
    }

    pub fn standalone(&self) -> bool {
        self.flags & mariadb_flags::STANDALONE != 0
    }
}

/// MariaDB GTID_LIST_EVENT: the binlog state (last GTID per domain and server) at the start
/// of a file.
pub fn parse_gtid_list(body: &[u8]) -> Result<Vec<Gtid>, ErrorKind> {
    let mut r = Reader::new(body);
    // Low 28 bits: count; high 4: flags.
    let n = r.u32()? & 0x0fff_ffff;
    if u64::from(n) * 16 > r.remaining() as u64 {
        return Err(invalid(0, "GTID count exceeds the event"));
    }
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let domain = r.u32()?;
        let server = r.u32()?;
        let seq = r.u64()?;
        out.push(Gtid::Mariadb {
            domain,
            server,
            seq,
        });
    }
    Ok(out)
}

/// MariaDB BINLOG_CHECKPOINT_EVENT: the oldest file still needed for crash recovery.
pub fn parse_binlog_checkpoint(body: &[u8]) -> Result<String, ErrorKind> {
    let mut r = Reader::new(body);
    let n = r.u32()? as usize;
    Ok(String::from_utf8_lossy(r.take(n)?).into_owned())
}

/// ROWS_QUERY_LOG_EVENT: a length byte (the length truncated to 255; ignored) and the text.
pub fn parse_rows_query(body: &[u8]) -> Result<String, ErrorKind> {
    let mut r = Reader::new(body);
    r.u8()?;
    Ok(String::from_utf8_lossy(r.rest()).into_owned())
}

/// TRANSACTION_PAYLOAD_EVENT header (MySQL 8.0.20+): TLV fields then the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadHeader {
    /// 0 = zstd, 255 = none.
    pub compression: u64,
    pub payload_size: u64,
    pub uncompressed_size: u64,
}

pub fn parse_transaction_payload(body: &[u8]) -> Result<(PayloadHeader, &[u8]), ErrorKind> {
    let mut r = Reader::new(body);
    let mut h = PayloadHeader {
        compression: 255,
        payload_size: 0,
        uncompressed_size: 0,
    };
    loop {
        let t = packed_len(&mut r, "payload field type")?;
        if t == 0 {
            break;
        }
        let len = packed_len(&mut r, "payload field length")?;
        let at = r.offset();
        let v = Reader::new(r.take(len)?)
            .packed()?
            .ok_or_else(|| invalid(at, "payload field value"))?;
        match t {
            1 => h.payload_size = v,
            2 => h.compression = v,
            3 => h.uncompressed_size = v,
            _ => {}
        }
    }
    let payload = r.rest();
    if h.payload_size != payload.len() as u64 {
        return Err(invalid(r.offset(), "payload size does not match the event"));
    }
    Ok((h, payload))
}

/// MariaDB's compressed-event framing (`binlog_buf_uncompress`): a header byte `0x80 |
/// alg << 4 | lenlen`, `lenlen` big-endian bytes of the uncompressed length, then zlib.
pub fn mariadb_uncompress(src: &[u8], max_len: usize) -> Result<Vec<u8>, ErrorKind> {
    let head = *src
        .first()
        .ok_or_else(|| invalid(0, "empty compressed data"))?;
    if head & 0x80 == 0 || (head >> 4) & 0x07 != 0 {
        return Err(invalid(0, "not a zlib compressed block"));
    }
    let lenlen = usize::from(head & 0x07);
    if !(1..=4).contains(&lenlen) {
        return Err(invalid(0, "bad length-of-length"));
    }
    let len_bytes = src
        .get(1..1 + lenlen)
        .ok_or_else(|| invalid(1, "truncated length"))?;
    let len = be_uint(len_bytes) as usize;
    if len > max_len {
        return Err(ErrorKind::Decompress(format!(
            "declared size {len} exceeds the limit {max_len}"
        )));
    }
    let mut out = Vec::with_capacity(len);
    let mut d = flate2::read::ZlibDecoder::new(&src[1 + lenlen..]);
    use std::io::Read;
    (&mut d)
        .take(len as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ErrorKind::Decompress(e.to_string()))?;
    if out.len() != len {
        return Err(ErrorKind::Decompress(format!(
            "expected {len} bytes, got {}",
            out.len()
        )));
    }
    Ok(out)
}

/// Decompresses a MySQL transaction payload (zstd), at most `max_len` bytes.
pub fn zstd_uncompress(src: &[u8], declared: u64, max_len: usize) -> Result<Vec<u8>, ErrorKind> {
    if declared > max_len as u64 {
        return Err(ErrorKind::Decompress(format!(
            "declared size {declared} exceeds the limit {max_len}"
        )));
    }
    let mut out = Vec::with_capacity(declared as usize);
    let mut d =
        zstd::stream::read::Decoder::new(src).map_err(|e| ErrorKind::Decompress(e.to_string()))?;
    use std::io::Read;
    (&mut d)
        .take(max_len as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ErrorKind::Decompress(e.to_string()))?;
    if out.len() > max_len {
        return Err(ErrorKind::Decompress(format!(
            "payload larger than the limit {max_len}"
        )));
    }
    Ok(out)
}

/// The number of events inside a TRANSACTION_PAYLOAD_EVENT (whole event bytes).
pub fn payload_event_count(event: &[u8], alg: crate::event::Checksum) -> Result<usize, ErrorKind> {
    let data = crate::event::strip_checksum(event, alg)?;
    // Without a checksum nothing above checked the length: a short event panicked here.
    let body = data
        .get(crate::event::HEADER_LEN..)
        .ok_or_else(|| invalid(0, "shorter than a header"))?;
    let (h, payload) = parse_transaction_payload(body)?;
    let raw = match h.compression {
        0 => zstd_uncompress(payload, h.uncompressed_size, 1 << 30)?,
        _ => payload.to_vec(),
    };
    let mut r = Reader::new(&raw);
    let mut n = 0;
    while !r.is_empty() {
        let head = crate::event::EventHeader::parse(r.clone().take(crate::event::HEADER_LEN)?)?;
        r.take(head.event_size as usize)?;
        n += 1;
    }
    Ok(n)
}
