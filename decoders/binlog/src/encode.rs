//! A binlog *encoder* for tests, fuzz seeds and benchmarks: builds events byte for byte as the
//! server writes them (common header, body, CRC32 footer), and column values in the row format.
//! It is the inverse of the decoder for everything the decoder reads; the property tests encode
//! random events and rows with it and decode them back.

use crate::event::{code, Checksum, HEADER_LEN};
use crate::table_map::ty;

/// Appends a length-encoded integer (`net_store_length`).
pub fn put_packed(out: &mut Vec<u8>, v: u64) {
    match v {
        0..=250 => out.push(v as u8),
        251..=0xffff => {
            out.push(0xfc);
            out.extend_from_slice(&(v as u16).to_le_bytes());
        }
        0x1_0000..=0xff_ffff => {
            out.push(0xfd);
            out.extend_from_slice(&(v as u32).to_le_bytes()[..3]);
        }
        _ => {
            out.push(0xfe);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

/// Writes events of one binlog file, tracking offsets like the server.
#[derive(Debug, Clone)]
pub struct EventWriter {
    pub checksum: Checksum,
    pub server_id: u32,
    pub timestamp: u32,
    /// Offset of the next event.
    pub pos: u64,
}

impl EventWriter {
    pub fn new(checksum: Checksum) -> Self {
        EventWriter {
            checksum,
            server_id: 1,
            timestamp: 1_700_000_000,
            pos: 4,
        }
    }

    /// A whole event of `event_type` with `body`; advances `pos`.
    pub fn event(&mut self, event_type: u8, body: &[u8]) -> Vec<u8> {
        self.event_at(event_type, body, true)
    }

    /// An event that does not advance the position (artificial ROTATE, heartbeats).
    pub fn artificial(&mut self, event_type: u8, body: &[u8], log_pos: u32) -> Vec<u8> {
        let crc = self.checksum == Checksum::Crc32;
        let size = HEADER_LEN + body.len() + if crc { 4 } else { 0 };
        let mut out = header(0, event_type, self.server_id, size as u32, log_pos, 0x20);
        out.extend_from_slice(body);
        if crc {
            let c = crc32fast::hash(&out);
            out.extend_from_slice(&c.to_le_bytes());
        }
        out
    }

    fn event_at(&mut self, event_type: u8, body: &[u8], advance: bool) -> Vec<u8> {
        let crc = self.checksum == Checksum::Crc32;
        let size = HEADER_LEN + body.len() + if crc { 4 } else { 0 };
        let next = self.pos + size as u64;
        let mut out = header(
            self.timestamp,
            event_type,
            self.server_id,
            size as u32,
            next as u32,
            0,
        );
        out.extend_from_slice(body);
        if crc {
            let c = crc32fast::hash(&out);
            out.extend_from_slice(&c.to_le_bytes());
        }
        if advance {
            self.pos = next;
        }
        out
    }

    /// FORMAT_DESCRIPTION_EVENT of a checksum-capable server.
    pub fn format_description(&mut self, server_version: &str) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&4u16.to_le_bytes());
        let mut v = server_version.as_bytes().to_vec();
        v.resize(50, 0);
        b.extend_from_slice(&v);
        b.extend_from_slice(&0u32.to_le_bytes());
        b.push(HEADER_LEN as u8);
        // Post-header lengths of types 1..=42 as MySQL 8 writes them (TABLE_MAP 8, rows v1 8, v2 10).
        let mut lens = vec![0u8; 42];
        lens[code::QUERY as usize - 1] = 13;
        lens[code::ROTATE as usize - 1] = 8;
        lens[code::FORMAT_DESCRIPTION as usize - 1] = 98;
        lens[code::TABLE_MAP as usize - 1] = 8;
        for t in [
            code::WRITE_ROWS_V1,
            code::UPDATE_ROWS_V1,
            code::DELETE_ROWS_V1,
        ] {
            lens[t as usize - 1] = 8;
        }
        for t in [
            code::WRITE_ROWS_V2,
            code::UPDATE_ROWS_V2,
            code::DELETE_ROWS_V2,
            code::PARTIAL_UPDATE_ROWS,
        ] {
            lens[t as usize - 1] = 10;
        }
        b.extend_from_slice(&lens);
        b.push(u8::from(self.checksum == Checksum::Crc32));
        // The FDE always reserves the 4 footer bytes; with checksums off they are zero.
        if self.checksum == Checksum::Crc32 {
            self.event(code::FORMAT_DESCRIPTION, &b)
        } else {
            b.extend_from_slice(&[0; 4]);
            self.event(code::FORMAT_DESCRIPTION, &b)
        }
    }

    pub fn rotate(&mut self, pos: u64, file: &str) -> Vec<u8> {
        let mut b = pos.to_le_bytes().to_vec();
        b.extend_from_slice(file.as_bytes());
        self.artificial(code::ROTATE, &b, 0)
    }

    pub fn query(&mut self, thread: u32, schema: &str, query: &str) -> Vec<u8> {
        self.event(code::QUERY, &query_body(thread, schema, query.as_bytes()))
    }

    pub fn xid(&mut self, xid: u64) -> Vec<u8> {
        self.event(code::XID, &xid.to_le_bytes())
    }

    pub fn mysql_gtid(&mut self, uuid: [u8; 16], gno: u64, commit_ts_us: u64) -> Vec<u8> {
        let mut b = vec![1];
        b.extend_from_slice(&uuid);
        b.extend_from_slice(&gno.to_le_bytes());
        b.push(2);
        b.extend_from_slice(&0i64.to_le_bytes());
        b.extend_from_slice(&1i64.to_le_bytes());
        b.extend_from_slice(&commit_ts_us.to_le_bytes()[..7]);
        put_packed(&mut b, 0);
        self.event(code::GTID, &b)
    }

    pub fn mariadb_gtid(&mut self, domain: u32, seq: u64, standalone: bool) -> Vec<u8> {
        let mut b = seq.to_le_bytes().to_vec();
        b.extend_from_slice(&domain.to_le_bytes());
        b.push(if standalone { 1 } else { 4 });
        b.extend_from_slice(&[0; 6]);
        self.event(code::MARIADB_GTID, &b)
    }

    pub fn table_map(&mut self, t: &TableMapSpec) -> Vec<u8> {
        self.event(code::TABLE_MAP, &t.body())
    }

    /// A rows event (v2 unless `v1`), `rows` already encoded with [`RowEncoder`].
    pub fn rows(
        &mut self,
        event_type: u8,
        table_id: u64,
        width: usize,
        present: &[u8],
        present_after: Option<&[u8]>,
        rows: &[u8],
    ) -> Vec<u8> {
        let v2 = matches!(
            event_type,
            code::WRITE_ROWS_V2
                | code::UPDATE_ROWS_V2
                | code::DELETE_ROWS_V2
                | code::PARTIAL_UPDATE_ROWS
        );
        let mut b = table_id.to_le_bytes()[..6].to_vec();
        b.extend_from_slice(&1u16.to_le_bytes());
        if v2 {
            b.extend_from_slice(&2u16.to_le_bytes());
        }
        put_packed(&mut b, width as u64);
        b.extend_from_slice(present);
        if let Some(a) = present_after {
            b.extend_from_slice(a);
        }
        b.extend_from_slice(rows);
        self.event(event_type, &b)
    }

    /// A transaction payload (zstd) around `inner` events written without checksums.
    pub fn transaction_payload(&mut self, inner: &[Vec<u8>]) -> Vec<u8> {
        let raw: Vec<u8> = inner.concat();
        let compressed = zstd::bulk::compress(&raw, 3).unwrap_or_default();
        let mut b = Vec::new();
        for (t, v) in [
            (1u64, compressed.len() as u64),
            (2, 0),
            (3, raw.len() as u64),
        ] {
            put_packed(&mut b, t);
            let mut val = Vec::new();
            put_packed(&mut val, v);
            put_packed(&mut b, val.len() as u64);
            b.extend_from_slice(&val);
        }
        put_packed(&mut b, 0);
        b.extend_from_slice(&compressed);
        self.event(code::TRANSACTION_PAYLOAD, &b)
    }
}

/// A v4 common header.
pub fn header(ts: u32, t: u8, server_id: u32, size: u32, log_pos: u32, flags: u16) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LEN);
    h.extend_from_slice(&ts.to_le_bytes());
    h.push(t);
    h.extend_from_slice(&server_id.to_le_bytes());
    h.extend_from_slice(&size.to_le_bytes());
    h.extend_from_slice(&log_pos.to_le_bytes());
    h.extend_from_slice(&flags.to_le_bytes());
    h
}

/// QUERY_EVENT body.
pub fn query_body(thread: u32, schema: &str, query: &[u8]) -> Vec<u8> {
    let mut b = thread.to_le_bytes().to_vec();
    b.extend_from_slice(&0u32.to_le_bytes());
    b.push(schema.len() as u8);
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(schema.as_bytes());
    b.push(0);
    b.extend_from_slice(query);
    b
}

/// MariaDB's compressed block: header byte, big-endian length, zlib data.
pub fn mariadb_compress(raw: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = e.write_all(raw);
    let z = e.finish().unwrap_or_default();
    let len = raw.len() as u32;
    let mut out = vec![0x80 | 4];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&z);
    out
}

/// One column of a [`TableMapSpec`].
#[derive(Debug, Clone)]
pub struct ColumnSpec {
    pub name: String,
    /// Table-map type (`ty::*`; ENUM/SET/CHAR are sent as STRING with the real type in meta).
    pub ty: u8,
    pub meta: u16,
    pub nullable: bool,
    pub unsigned: bool,
    /// Collation id for character columns.
    pub charset: u16,
    pub labels: Vec<String>,
    pub key: bool,
}

impl ColumnSpec {
    /// A nullable, signed, non-key column.
    pub fn new(name: impl Into<String>, ty: u8, meta: u16, charset: u16) -> Self {
        ColumnSpec {
            name: name.into(),
            ty,
            meta,
            nullable: true,
            unsigned: false,
            charset,
            labels: Vec::new(),
            key: false,
        }
    }
}

/// A TABLE_MAP_EVENT to encode, with FULL optional metadata.
#[derive(Debug, Clone)]
pub struct TableMapSpec {
    pub table_id: u64,
    pub database: String,
    pub table: String,
    pub columns: Vec<ColumnSpec>,
    /// Write the optional metadata (binlog_row_metadata=FULL).
    pub full_metadata: bool,
}

fn is_numeric(t: u8) -> bool {
    matches!(
        t,
        ty::TINY
            | ty::SHORT
            | ty::INT24
            | ty::LONG
            | ty::LONGLONG
            | ty::NEWDECIMAL
            | ty::FLOAT
            | ty::DOUBLE
    )
}

fn is_character(c: &ColumnSpec) -> bool {
    matches!(c.ty, ty::VARCHAR | ty::VAR_STRING | ty::BLOB | ty::GEOMETRY)
        || (c.ty == ty::STRING && !matches!((c.meta >> 8) as u8, ty::ENUM | ty::SET))
}

fn bitmap_msb(bits: &[bool]) -> Vec<u8> {
    let mut out = vec![0u8; bits.len().div_ceil(8)];
    for (i, &b) in bits.iter().enumerate() {
        if b {
            out[i / 8] |= 0x80 >> (i % 8);
        }
    }
    out
}

/// An LSB-first bitmap (rows events).
pub fn bitmap_lsb(bits: &[bool]) -> Vec<u8> {
    let mut out = vec![0u8; bits.len().div_ceil(8)];
    for (i, &b) in bits.iter().enumerate() {
        if b {
            out[i / 8] |= 1 << (i % 8);
        }
    }
    out
}

impl TableMapSpec {
    pub fn body(&self) -> Vec<u8> {
        let mut b = self.table_id.to_le_bytes()[..6].to_vec();
        b.extend_from_slice(&1u16.to_le_bytes());
        for n in [&self.database, &self.table] {
            b.push(n.len() as u8);
            b.extend_from_slice(n.as_bytes());
            b.push(0);
        }
        put_packed(&mut b, self.columns.len() as u64);
        b.extend(self.columns.iter().map(|c| c.ty));
        let mut meta = Vec::new();
        for c in &self.columns {
            match c.ty {
                ty::FLOAT
                | ty::DOUBLE
                | ty::BLOB
                | ty::GEOMETRY
                | ty::JSON
                | ty::TIMESTAMP2
                | ty::DATETIME2
                | ty::TIME2 => meta.push(c.meta as u8),
                ty::VARCHAR | ty::VAR_STRING => meta.extend_from_slice(&c.meta.to_le_bytes()),
                ty::BIT | ty::NEWDECIMAL | ty::STRING => {
                    meta.extend_from_slice(&c.meta.to_be_bytes())
                }
                _ => {}
            }
        }
        put_packed(&mut b, meta.len() as u64);
        b.extend_from_slice(&meta);
        let nulls: Vec<bool> = self.columns.iter().map(|c| c.nullable).collect();
        b.extend_from_slice(&bitmap_lsb(&nulls));
        if !self.full_metadata {
            return b;
        }
        let field = |t: u8, v: Vec<u8>, b: &mut Vec<u8>| {
            b.push(t);
            put_packed(b, v.len() as u64);
            b.extend_from_slice(&v);
        };
        let signed: Vec<bool> = self
            .columns
            .iter()
            .filter(|c| is_numeric(c.ty))
            .map(|c| c.unsigned)
            .collect();
        field(1, bitmap_msb(&signed), &mut b);
        let mut cs = Vec::new();
        for c in self.columns.iter().filter(|c| is_character(c)) {
            put_packed(&mut cs, u64::from(c.charset));
        }
        field(3, cs, &mut b);
        let mut names = Vec::new();
        for c in &self.columns {
            put_packed(&mut names, c.name.len() as u64);
            names.extend_from_slice(c.name.as_bytes());
        }
        field(4, names, &mut b);
        for (t, real) in [(5u8, ty::SET), (6u8, ty::ENUM)] {
            let mut v = Vec::new();
            for c in self
                .columns
                .iter()
                .filter(|c| c.ty == ty::STRING && (c.meta >> 8) as u8 == real)
            {
                put_packed(&mut v, c.labels.len() as u64);
                for l in &c.labels {
                    put_packed(&mut v, l.len() as u64);
                    v.extend_from_slice(l.as_bytes());
                }
            }
            if !v.is_empty() {
                field(t, v, &mut b);
            }
        }
        let mut pk = Vec::new();
        for (i, c) in self.columns.iter().enumerate().filter(|(_, c)| c.key) {
            let _ = c;
            put_packed(&mut pk, i as u64);
        }
        field(8, pk, &mut b);
        // An optional metadata type from the future: must be skipped.
        field(99, vec![1, 2, 3], &mut b);
        b
    }
}

/// Encodes row images.
#[derive(Debug, Default)]
pub struct RowEncoder {
    pub out: Vec<u8>,
}

impl RowEncoder {
    /// One image: `values[i]` is `None` for NULL, else the encoded value bytes; all columns
    /// present.
    pub fn image(&mut self, values: &[Option<Vec<u8>>]) {
        let nulls: Vec<bool> = values.iter().map(Option::is_none).collect();
        self.out.extend_from_slice(&bitmap_lsb(&nulls));
        for v in values.iter().flatten() {
            self.out.extend_from_slice(v);
        }
    }
}
