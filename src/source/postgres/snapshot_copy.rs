//! `COPY ... TO STDOUT (FORMAT binary)` → `Op::Read` rows in a [`ChangeBatchBuilder`]:
//! sans-IO, the bytes of the CopyData messages in, rows out.
//!
//! ```text
//!  "PGCOPY\n\xff\r\n\0" flags(i32) ext_len(i32) ext…   (header, once)
//!  i16 nfields, then per field: i32 len (-1 = NULL), len bytes   (each tuple)
//!  i16 -1                                                      (trailer)
//! ```
//!
//! Values are in each type's binary send form, which the model parses
//! (`ColumnBuilder::append_binary`); columns whose binary form the model does not parse are
//! selected as `col::text` and their bytes (the text form) go to `append_text`.
//!
//! # Traps
//! - CopyData message boundaries are not tuple boundaries in general (the server happens to
//!   send one tuple per message today): the parser buffers and resumes mid-tuple.
//! - The field count is per tuple and must equal the number of selected columns; anything
//!   else is corrupt input, reported with the byte offset, never skipped.
//! - <https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.4>

use bytes::{Buf, Bytes, BytesMut};
use tidemark_model::{ChangeBatchBuilder, Image, ModelError, Op, Position};

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// Malformed COPY data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("COPY binary data at byte {offset}: {reason}")]
pub struct CopyError {
    pub offset: u64,
    pub reason: String,
}

/// What a row went into.
#[derive(Debug, thiserror::Error)]
pub enum RowError {
    #[error(transparent)]
    Copy(#[from] CopyError),
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// Parses COPY binary data into rows of a builder.
pub struct CopyReader {
    buf: BytesMut,
    /// Bytes consumed before `buf` (for error offsets).
    consumed: u64,
    header_done: bool,
    finished: bool,
    /// Per selected column: parse the binary form (true) or the text form (false).
    binary: Vec<bool>,
    position: Position,
    txid: Option<u64>,
    commit_ts_us: Option<i64>,
}

impl CopyReader {
    /// A reader for rows of `binary.len()` columns, every row at `position` (the emitter
    /// replaces it) with `txid` and `commit_ts_us`.
    pub fn new(
        binary: Vec<bool>,
        position: Position,
        txid: Option<u64>,
        commit_ts_us: Option<i64>,
    ) -> Self {
        CopyReader {
            buf: BytesMut::new(),
            consumed: 0,
            header_done: false,
            finished: false,
            binary,
            position,
            txid,
            commit_ts_us,
        }
    }

    /// Appends the next CopyData payload.
    pub fn push(&mut self, data: Bytes) {
        if self.buf.is_empty() {
            self.buf = BytesMut::from(data);
        } else {
            self.buf.extend_from_slice(&data);
        }
    }

    /// Whether the trailer was read.
    pub fn finished(&self) -> bool {
        self.finished
    }

    fn err(&self, at: usize, reason: impl Into<String>) -> CopyError {
        CopyError {
            offset: self.consumed + at as u64,
            reason: reason.into(),
        }
    }

    fn advance(&mut self, n: usize) {
        self.buf.advance(n);
        self.consumed += n as u64;
    }

    /// Parses the header once enough bytes are there; `false` while more are needed.
    fn header(&mut self) -> Result<bool, CopyError> {
        if self.header_done {
            return Ok(true);
        }
        if self.buf.len() < 19 {
            return Ok(false);
        }
        if &self.buf[..11] != SIGNATURE {
            return Err(self.err(0, "missing PGCOPY signature (not binary COPY data)"));
        }
        let ext = i32::from_be_bytes([self.buf[15], self.buf[16], self.buf[17], self.buf[18]]);
        if ext < 0 {
            return Err(self.err(15, "negative header extension length"));
        }
        let total = 19 + ext as usize;
        if self.buf.len() < total {
            return Ok(false);
        }
        self.advance(total);
        self.header_done = true;
        Ok(true)
    }

    /// Appends every complete tuple in the buffer to `builder`, at most `max_rows` of them;
    /// returns how many were appended.
    pub fn read_rows(
        &mut self,
        builder: &mut ChangeBatchBuilder,
        max_rows: usize,
    ) -> Result<usize, RowError> {
        if !self.header()? {
            return Ok(0);
        }
        let mut rows = 0;
        while rows < max_rows && !self.finished {
            let Some(len) = self.tuple_len()? else { break };
            if len == 2 {
                // The trailer (field count -1).
                self.advance(2);
                self.finished = true;
                break;
            }
            self.append_tuple(builder, len)?;
            self.advance(len);
            rows += 1;
        }
        Ok(rows)
    }

    /// The byte length of the complete tuple at the front, or `None` if incomplete.
    fn tuple_len(&self) -> Result<Option<usize>, CopyError> {
        let b = &self.buf[..];
        if b.len() < 2 {
            return Ok(None);
        }
        let n = i16::from_be_bytes([b[0], b[1]]);
        if n == -1 {
            return Ok(Some(2));
        }
        if n as usize != self.binary.len() {
            return Err(self.err(
                0,
                format!(
                    "tuple has {n} fields, {} columns were selected",
                    self.binary.len()
                ),
            ));
        }
        let mut at = 2;
        for _ in 0..n {
            if b.len() < at + 4 {
                return Ok(None);
            }
            let len = i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
            at += 4;
            if len < -1 {
                return Err(self.err(at - 4, format!("field length {len}")));
            }
            if len > 0 {
                at += len as usize;
            }
            if b.len() < at {
                return Ok(None);
            }
        }
        Ok(Some(at))
    }

    fn append_tuple(&self, builder: &mut ChangeBatchBuilder, len: usize) -> Result<(), RowError> {
        let b = &self.buf[..len];
        builder.begin_row(Op::Read, &self.position, self.txid, self.commit_ts_us)?;
        builder.image_null(Image::Before)?;
        let mut at = 2;
        for (col, &binary) in self.binary.iter().enumerate() {
            let flen = i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
            at += 4;
            if flen < 0 {
                builder.append_null(Image::After, col)?;
                continue;
            }
            let value = &b[at..at + flen as usize];
            at += flen as usize;
            if binary {
                builder.append_binary(Image::After, col, value)?;
            } else {
                builder.append_text(Image::After, col, value)?;
            }
        }
        builder.finish_row()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidemark_model::{Column, Lsn, SourceType, TableId, TableSchema};

    fn encode(rows: &[Vec<Option<&[u8]>>]) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend_from_slice(&0i32.to_be_bytes());
        out.extend_from_slice(&4i32.to_be_bytes());
        out.extend_from_slice(b"xxxx");
        for r in rows {
            out.extend_from_slice(&(r.len() as i16).to_be_bytes());
            for f in r {
                match f {
                    None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                    Some(v) => {
                        out.extend_from_slice(&(v.len() as i32).to_be_bytes());
                        out.extend_from_slice(v);
                    }
                }
            }
        }
        out.extend_from_slice(&(-1i16).to_be_bytes());
        out
    }

    fn schema() -> std::sync::Arc<TableSchema> {
        TableSchema::new(
            TableId::new("public", "t"),
            1,
            vec![
                Column::postgres("id", SourceType::pg_builtin(23, -1).unwrap(), false, true),
                Column::postgres("name", SourceType::pg_builtin(25, -1).unwrap(), true, false),
            ],
        )
    }

    #[test]
    fn rows_split_across_messages_parse_whole() {
        let data = encode(&[
            vec![Some(&1i32.to_be_bytes()), Some(b"one")],
            vec![Some(&2i32.to_be_bytes()), None],
        ]);
        let pos = Position::pg(Lsn(7), Lsn(8), 0);
        let mut r = CopyReader::new(vec![true, false], pos, None, None);
        let mut b = ChangeBatchBuilder::new(schema(), 4);
        let mut rows = 0;
        for piece in data.chunks(5) {
            r.push(Bytes::copy_from_slice(piece));
            rows += r.read_rows(&mut b, usize::MAX).unwrap();
        }
        assert!(r.finished());
        assert_eq!(rows, 2);
        let batch = b.finish().unwrap();
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.op(1), Op::Read);
    }

    #[test]
    fn corrupt_data_is_an_error_with_offset() {
        let mut r = CopyReader::new(vec![true], Position::pg(Lsn(7), Lsn(8), 0), None, None);
        r.push(Bytes::from_static(b"NOTCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0"));
        let mut b = ChangeBatchBuilder::new(schema(), 1);
        assert!(r.read_rows(&mut b, 1).is_err());
        let data = encode(&[vec![Some(&1i32.to_be_bytes())]]);
        let mut r = CopyReader::new(
            vec![true, true],
            Position::pg(Lsn(7), Lsn(8), 0),
            None,
            None,
        );
        r.push(Bytes::from(data));
        let e = r.read_rows(&mut b, 1).unwrap_err().to_string();
        assert!(e.contains("1 fields, 2 columns"), "{e}");
    }
}
