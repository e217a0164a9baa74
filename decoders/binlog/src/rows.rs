//! WRITE/UPDATE/DELETE_ROWS (v1, v2, MariaDB compressed) and PARTIAL_UPDATE_ROWS: the header
//! up to the first row; the rows themselves are read by the decoder against the table map.
//!
//! ```text
//! post-header: table_id (6) | flags u16 | v2: extra_len u16 (counts itself), extra data
//! body: width (packed) | columns present [(width+7)/8] | UPDATE: columns present after
//! row:  null bitmap over the present columns | values of present, non-null columns
//!       (UPDATE: before image then after image; PARTIAL_UPDATE after image: value_options
//!        (packed), partial-JSON bitmap over the JSON columns of the after image, then as usual)
//! ```
//!
//! # Traps
//! - Bitmaps here are LSB first (bit `i % 8` of byte `i / 8`), unlike the table map's
//!   optional metadata bitmaps.
//! - With `binlog_row_image=MINIMAL` or `NOBLOB` a column may be absent from an image: that is
//!   "not sent", never NULL.
//! - MariaDB compresses only what follows the column bitmaps.

use crate::error::{invalid, ErrorKind};
use crate::event::code;
use crate::reader::Reader;
use crate::table_map::packed_len;

/// Which rows event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowsKind {
    Write,
    Update,
    Delete,
    /// PARTIAL_UPDATE_ROWS_EVENT (MySQL `binlog_row_value_options=PARTIAL_JSON`).
    PartialUpdate,
}

/// What an event type is, if it is a rows event: kind, v2 header, MariaDB-compressed.
pub fn rows_event(t: u8) -> Option<(RowsKind, bool, bool)> {
    use code::*;
    Some(match t {
        WRITE_ROWS_V1 => (RowsKind::Write, false, false),
        UPDATE_ROWS_V1 => (RowsKind::Update, false, false),
        DELETE_ROWS_V1 => (RowsKind::Delete, false, false),
        WRITE_ROWS_V2 => (RowsKind::Write, true, false),
        UPDATE_ROWS_V2 => (RowsKind::Update, true, false),
        DELETE_ROWS_V2 => (RowsKind::Delete, true, false),
        PARTIAL_UPDATE_ROWS => (RowsKind::PartialUpdate, true, false),
        MARIADB_WRITE_ROWS_COMPRESSED_V1 => (RowsKind::Write, false, true),
        MARIADB_UPDATE_ROWS_COMPRESSED_V1 => (RowsKind::Update, false, true),
        MARIADB_DELETE_ROWS_COMPRESSED_V1 => (RowsKind::Delete, false, true),
        MARIADB_WRITE_ROWS_COMPRESSED => (RowsKind::Write, true, true),
        MARIADB_UPDATE_ROWS_COMPRESSED => (RowsKind::Update, true, true),
        MARIADB_DELETE_ROWS_COMPRESSED => (RowsKind::Delete, true, true),
        _ => return None,
    })
}

/// `STMT_END_F`: the last rows event of a statement.
pub const FLAG_STMT_END: u16 = 1;

/// A rows event up to its rows.
#[derive(Debug, Clone)]
pub struct RowsHeader<'a> {
    pub table_id: u64,
    pub flags: u16,
    pub width: usize,
    pub present: &'a [u8],
    pub present_after: &'a [u8],
    /// Offset of the row data in the body.
    pub rows_offset: usize,
}

/// A bit of an LSB-first bitmap.
pub fn bit(map: &[u8], i: usize) -> bool {
    map.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

impl<'a> RowsHeader<'a> {
    pub fn parse(
        body: &'a [u8],
        kind: RowsKind,
        v2: bool,
        table_id_len: usize,
    ) -> Result<RowsHeader<'a>, ErrorKind> {
        let mut r = Reader::new(body);
        let table_id = r.uint(table_id_len)?;
        let flags = r.u16()?;
        if v2 {
            let extra = usize::from(r.u16()?);
            if extra < 2 {
                return Err(invalid(r.offset() - 2, "extra data length below 2"));
            }
            r.take(extra - 2)?;
        }
        let width = packed_len(&mut r, "column count")?;
        let n = width.div_ceil(8);
        let present = r.take(n)?;
        let present_after = if matches!(kind, RowsKind::Update | RowsKind::PartialUpdate) {
            r.take(n)?
        } else {
            present
        };
        Ok(RowsHeader {
            table_id,
            flags,
            width,
            present,
            present_after,
            rows_offset: r.offset(),
        })
    }
}
