//! TABLE_MAP_EVENT: which table a table id means *for the rows events that follow*, its column
//! types and per-type metadata, and (with `binlog_row_metadata=FULL`) the optional metadata:
//! signedness, charsets, column names, enum/set labels, geometry types, primary key.
//!
//! ```text
//! post-header: table_id (6 bytes; 4 with an old 6-byte post-header) | flags u16
//! body: db_len u8 | db | 0 | table_len u8 | table | 0 | column_count (packed)
//!       | column types [n] | metadata_len (packed) | metadata | null bitmap [(n+7)/8]
//!       | optional metadata: (type u8, length packed, value)*
//! ```
//!
//! # Traps
//! - A table id is only valid until the next TABLE_MAP for that id; the server reuses ids
//!   after a table is flushed or altered, and a restart renumbers. Never key state by it
//!   beyond the current transaction.
//! - `MYSQL_TYPE_STRING` hides ENUM and SET: the real type is in the first metadata byte, and
//!   for CHAR the length's high bits are folded into it (`Field_string::do_save_field_metadata`).
//! - Signedness covers only *numeric* columns and charsets only *character* columns; both are
//!   bitmaps/lists over that subset, in column order, MSB first.
//! - Optional metadata types newer than this decoder (MySQL 9 vector dimensionality, ...) are
//!   skipped, not errors.

use tidemark_model::mysql_types::GeometryKind;

use crate::error::{invalid, ErrorKind};
use crate::reader::Reader;

/// Column type codes (`enum_field_types`).
pub mod ty {
    pub const DECIMAL: u8 = 0;
    pub const TINY: u8 = 1;
    pub const SHORT: u8 = 2;
    pub const LONG: u8 = 3;
    pub const FLOAT: u8 = 4;
    pub const DOUBLE: u8 = 5;
    pub const NULL: u8 = 6;
    pub const TIMESTAMP: u8 = 7;
    pub const LONGLONG: u8 = 8;
    pub const INT24: u8 = 9;
    pub const DATE: u8 = 10;
    pub const TIME: u8 = 11;
    pub const DATETIME: u8 = 12;
    pub const YEAR: u8 = 13;
    pub const NEWDATE: u8 = 14;
    pub const VARCHAR: u8 = 15;
    pub const BIT: u8 = 16;
    pub const TIMESTAMP2: u8 = 17;
    pub const DATETIME2: u8 = 18;
    pub const TIME2: u8 = 19;
    pub const TYPED_ARRAY: u8 = 20;
    pub const VECTOR: u8 = 242;
    pub const JSON: u8 = 245;
    pub const NEWDECIMAL: u8 = 246;
    pub const ENUM: u8 = 247;
    pub const SET: u8 = 248;
    pub const TINY_BLOB: u8 = 249;
    pub const MEDIUM_BLOB: u8 = 250;
    pub const LONG_BLOB: u8 = 251;
    pub const BLOB: u8 = 252;
    pub const VAR_STRING: u8 = 253;
    pub const STRING: u8 = 254;
    pub const GEOMETRY: u8 = 255;
}

/// Optional metadata type codes (`Table_map_log_event::Optional_metadata_field_type`).
pub mod opt {
    pub const SIGNEDNESS: u8 = 1;
    pub const DEFAULT_CHARSET: u8 = 2;
    pub const COLUMN_CHARSET: u8 = 3;
    pub const COLUMN_NAME: u8 = 4;
    pub const SET_STR_VALUE: u8 = 5;
    pub const ENUM_STR_VALUE: u8 = 6;
    pub const GEOMETRY_TYPE: u8 = 7;
    pub const SIMPLE_PRIMARY_KEY: u8 = 8;
    pub const PRIMARY_KEY_WITH_PREFIX: u8 = 9;
    pub const ENUM_AND_SET_DEFAULT_CHARSET: u8 = 10;
    pub const ENUM_AND_SET_COLUMN_CHARSET: u8 = 11;
    pub const COLUMN_VISIBILITY: u8 = 12;
}

/// Most columns a MySQL or MariaDB table can have.
pub const MAX_COLUMNS: usize = 4096;

/// One column as the table map describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapColumn {
    /// The real type (ENUM/SET/CHAR resolved out of `STRING`).
    pub ty: u8,
    /// Type metadata: see `values.rs` for what it means per type.
    pub meta: u16,
    pub nullable: bool,
    /// From the optional metadata when present.
    pub name: Option<String>,
    pub unsigned: Option<bool>,
    /// Collation id (the binlog calls it charset).
    pub charset: Option<u16>,
    pub labels: Option<Vec<String>>,
    pub geometry: Option<GeometryKind>,
    pub key: bool,
    pub visible: bool,
}

impl MapColumn {
    /// Signedness metadata covers these.
    pub fn is_numeric(&self) -> bool {
        matches!(
            self.ty,
            ty::TINY
                | ty::SHORT
                | ty::INT24
                | ty::LONG
                | ty::LONGLONG
                | ty::NEWDECIMAL
                | ty::FLOAT
                | ty::DOUBLE
                | ty::DECIMAL
        )
    }

    /// Charset metadata covers these: geometry too (its base class is BLOB, charset binary;
    /// MySQL `is_character_type`), but not ENUM/SET, which have their own lists.
    pub fn is_character(&self) -> bool {
        matches!(
            self.ty,
            ty::GEOMETRY
                | ty::STRING
                | ty::VAR_STRING
                | ty::VARCHAR
                | ty::BLOB
                | ty::TINY_BLOB
                | ty::MEDIUM_BLOB
                | ty::LONG_BLOB
        )
    }

    pub fn is_enum_or_set(&self) -> bool {
        matches!(self.ty, ty::ENUM | ty::SET)
    }
}

/// A parsed TABLE_MAP_EVENT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableMap {
    pub table_id: u64,
    pub flags: u16,
    pub database: String,
    pub table: String,
    pub columns: Vec<MapColumn>,
    /// Whether optional metadata with column names was present.
    pub has_names: bool,
    /// Whether the optional metadata named a primary key (possibly empty = no key).
    pub has_key_info: bool,
}

fn name_str(b: &[u8], at: usize) -> Result<String, ErrorKind> {
    String::from_utf8(b.to_vec()).map_err(|_| invalid(at, "name is not UTF-8"))
}

/// Per-type metadata bytes of a column type in the table map.
fn meta_len(t: u8) -> Result<usize, ErrorKind> {
    Ok(match t {
        ty::FLOAT
        | ty::DOUBLE
        | ty::BLOB
        | ty::TINY_BLOB
        | ty::MEDIUM_BLOB
        | ty::LONG_BLOB
        | ty::GEOMETRY
        | ty::JSON
        | ty::TIMESTAMP2
        | ty::DATETIME2
        | ty::TIME2
        | ty::VECTOR => 1,
        ty::VARCHAR
        | ty::VAR_STRING
        | ty::BIT
        | ty::NEWDECIMAL
        | ty::STRING
        | ty::ENUM
        | ty::SET => 2,
        ty::DECIMAL
        | ty::TINY
        | ty::SHORT
        | ty::LONG
        | ty::NULL
        | ty::TIMESTAMP
        | ty::LONGLONG
        | ty::INT24
        | ty::DATE
        | ty::TIME
        | ty::DATETIME
        | ty::YEAR
        | ty::NEWDATE => 0,
        other => {
            return Err(ErrorKind::Unsupported {
                what: format!("column type {other} in a table map"),
            })
        }
    })
}

impl TableMap {
    /// Parses the body (after the common header, checksum stripped).
    pub fn parse(body: &[u8], table_id_len: usize) -> Result<TableMap, ErrorKind> {
        let mut r = Reader::new(body);
        let table_id = r.uint(table_id_len)?;
        let flags = r.u16()?;
        let n = usize::from(r.u8()?);
        let at = r.offset();
        let database = name_str(r.take(n)?, at)?;
        r.u8()?;
        let n = usize::from(r.u8()?);
        let at = r.offset();
        let table = name_str(r.take(n)?, at)?;
        r.u8()?;
        let at = r.offset();
        let count = packed_len(&mut r, "column count")?;
        // A batch builder holds Arrow builders for every column of both images (a few KiB
        // each): a table map of a million one-byte columns asked for gigabytes. Tables have at
        // most 4096 columns (MySQL's and MariaDB's limit).
        if count > MAX_COLUMNS {
            return Err(invalid(at, "more than 4096 columns (the server's limit)"));
        }
        // Each column needs at least its type byte: no allocation beyond the input.
        let types = r.take(count)?;
        let meta_total = packed_len(&mut r, "metadata length")?;
        let mut meta = Reader::new(r.take(meta_total)?);
        let nulls = r.take(count.div_ceil(8))?;
        let mut columns = Vec::with_capacity(count);
        for (i, &t) in types.iter().enumerate() {
            let m = match meta_len(t)? {
                0 => 0,
                1 => u16::from(meta.u8()?),
                // VARCHAR's length and BIT are little-endian; the others are two separate bytes
                // (first, second) read here as first << 8 | second.
                _ if matches!(t, ty::VARCHAR | ty::VAR_STRING) => meta.u16()?,
                _ => {
                    let a = meta.u8()?;
                    let b = meta.u8()?;
                    (u16::from(a) << 8) | u16::from(b)
                }
            };
            let (real, m) = resolve_string(t, m);
            columns.push(MapColumn {
                ty: real,
                meta: m,
                nullable: nulls[i / 8] & (1 << (i % 8)) != 0,
                name: None,
                unsigned: None,
                charset: None,
                labels: None,
                geometry: None,
                key: false,
                visible: true,
            });
        }
        if !meta.is_empty() {
            return Err(invalid(
                r.offset(),
                "column metadata longer than its columns",
            ));
        }
        let mut map = TableMap {
            table_id,
            flags,
            database,
            table,
            columns,
            has_names: false,
            has_key_info: false,
        };
        while !r.is_empty() {
            let t = r.u8()?;
            let len = packed_len(&mut r, "optional metadata length")?;
            let at = r.offset();
            let v = r.take(len)?;
            map.apply_optional(t, v, at)?;
        }
        Ok(map)
    }

    fn apply_optional(&mut self, t: u8, v: &[u8], at: usize) -> Result<(), ErrorKind> {
        let mut r = Reader::new(v);
        let err = |e: ErrorKind| shift(e, at);
        match t {
            opt::SIGNEDNESS => {
                let numeric = self.columns.iter_mut().filter(|c| c.is_numeric());
                for (bit, c) in numeric.enumerate() {
                    let byte = *v
                        .get(bit / 8)
                        .ok_or_else(|| invalid(at, "short signedness"))?;
                    c.unsigned = Some(byte & (0x80 >> (bit % 8)) != 0);
                }
            }
            opt::DEFAULT_CHARSET | opt::ENUM_AND_SET_DEFAULT_CHARSET => {
                let enum_set = t == opt::ENUM_AND_SET_DEFAULT_CHARSET;
                let default = packed_u16(&mut r).map_err(err)?;
                let mut overrides = Vec::new();
                while !r.is_empty() {
                    let idx = packed_len(&mut r, "charset column index").map_err(err)?;
                    overrides.push((idx, packed_u16(&mut r).map_err(err)?));
                }
                for (i, c) in self.charset_columns(enum_set).enumerate() {
                    c.charset = Some(
                        overrides
                            .iter()
                            .find(|(idx, _)| *idx == i)
                            .map_or(default, |(_, cs)| *cs),
                    );
                }
            }
            opt::COLUMN_CHARSET | opt::ENUM_AND_SET_COLUMN_CHARSET => {
                let enum_set = t == opt::ENUM_AND_SET_COLUMN_CHARSET;
                let mut list = Vec::new();
                while !r.is_empty() {
                    list.push(packed_u16(&mut r).map_err(err)?);
                }
                for (c, cs) in self.charset_columns(enum_set).zip(list) {
                    c.charset = Some(cs);
                }
            }
            opt::COLUMN_NAME => {
                for c in self.columns.iter_mut() {
                    let n = packed_len(&mut r, "column name length").map_err(err)?;
                    let off = r.offset();
                    let b = r.take(n).map_err(|e| err(e.into()))?;
                    c.name = Some(name_str(b, at + off)?);
                }
                self.has_names = true;
            }
            opt::SET_STR_VALUE | opt::ENUM_STR_VALUE => {
                let want = if t == opt::SET_STR_VALUE {
                    ty::SET
                } else {
                    ty::ENUM
                };
                for c in self.columns.iter_mut().filter(|c| c.ty == want) {
                    let count = packed_len(&mut r, "label count").map_err(err)?;
                    let mut labels = Vec::with_capacity(count.min(r.remaining()));
                    for _ in 0..count {
                        let n = packed_len(&mut r, "label length").map_err(err)?;
                        let b = r.take(n).map_err(|e| err(e.into()))?;
                        labels.push(String::from_utf8_lossy(b).into_owned());
                    }
                    c.labels = Some(labels);
                }
            }
            opt::GEOMETRY_TYPE => {
                for c in self.columns.iter_mut().filter(|c| c.ty == ty::GEOMETRY) {
                    let g = r.packed().map_err(|e| err(e.into()))?;
                    c.geometry = Some(GeometryKind::from_code(g.unwrap_or(0)));
                }
            }
            opt::SIMPLE_PRIMARY_KEY | opt::PRIMARY_KEY_WITH_PREFIX => {
                self.has_key_info = true;
                while !r.is_empty() {
                    let idx = packed_len(&mut r, "key column").map_err(err)?;
                    if t == opt::PRIMARY_KEY_WITH_PREFIX {
                        packed_len(&mut r, "key prefix").map_err(err)?;
                    }
                    let c = self
                        .columns
                        .get_mut(idx)
                        .ok_or_else(|| invalid(at, "primary key column out of range"))?;
                    c.key = true;
                }
            }
            opt::COLUMN_VISIBILITY => {
                for (i, c) in self.columns.iter_mut().enumerate() {
                    let byte = *v
                        .get(i / 8)
                        .ok_or_else(|| invalid(at, "short visibility"))?;
                    c.visible = byte & (0x80 >> (i % 8)) != 0;
                }
            }
            // Newer metadata (vector dimensionality, ...): not needed, skipped.
            _ => {}
        }
        Ok(())
    }

    fn charset_columns(&mut self, enum_set: bool) -> impl Iterator<Item = &mut MapColumn> {
        self.columns.iter_mut().filter(move |c| {
            if enum_set {
                c.is_enum_or_set()
            } else {
                c.is_character()
            }
        })
    }
}

fn shift(e: ErrorKind, at: usize) -> ErrorKind {
    match e {
        ErrorKind::Truncated { offset, wanted } => ErrorKind::Truncated {
            offset: offset + at,
            wanted,
        },
        ErrorKind::Invalid { offset, reason } => ErrorKind::Invalid {
            offset: offset + at,
            reason,
        },
        other => other,
    }
}

/// A packed integer used as a length or count (must fit usize, must not be NULL).
pub(crate) fn packed_len(r: &mut Reader<'_>, what: &'static str) -> Result<usize, ErrorKind> {
    let at = r.offset();
    r.packed()?
        .and_then(|v| usize::try_from(v).ok())
        .ok_or_else(|| invalid(at, what))
}

fn packed_u16(r: &mut Reader<'_>) -> Result<u16, ErrorKind> {
    let at = r.offset();
    r.packed()?
        .and_then(|v| u16::try_from(v).ok())
        .ok_or_else(|| invalid(at, "charset out of range"))
}

/// `MYSQL_TYPE_STRING` metadata: `(real_type, length)` (`Field_string::do_save_field_metadata`).
/// ENUM/SET keep their pack length; CHAR gets its byte length back from the folded bits.
fn resolve_string(t: u8, meta: u16) -> (u8, u16) {
    if t != ty::STRING {
        return (t, meta);
    }
    let b0 = (meta >> 8) as u8;
    let b1 = (meta & 0xff) as u8;
    if b0 & 0x30 != 0x30 {
        // CHAR longer than 255 bytes: bits 4-5 of b0 are the inverted high bits of the length.
        let len = u16::from(b1) | ((u16::from((b0 & 0x30) ^ 0x30)) << 4);
        (b0 | 0x30, len)
    } else {
        match b0 {
            ty::ENUM | ty::SET => (b0, u16::from(b1)),
            _ => (b0, u16::from(b1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_metadata() {
        assert_eq!(resolve_string(ty::STRING, 0xfe_0a), (ty::STRING, 10));
        assert_eq!(resolve_string(ty::STRING, 0xf7_01), (ty::ENUM, 1));
        assert_eq!(resolve_string(ty::STRING, 0xf8_02), (ty::SET, 2));
        // char(100) utf8mb4 = 400 bytes: b0 = 0xfe ^ ((400 >> 4) & 0x30) = 0xee, b1 = 400 & 0xff.
        assert_eq!(resolve_string(ty::STRING, 0xee_90), (ty::STRING, 400));
    }

    /// A table map body with `n` INT columns and no optional metadata.
    fn int_columns(n: u16) -> Vec<u8> {
        let mut b = vec![5, 0, 0, 0, 0, 0, 0, 0, 1, b'd', 0, 1, b't', 0, 0xfc];
        b.extend_from_slice(&n.to_le_bytes());
        b.extend(std::iter::repeat_n(ty::LONG, usize::from(n)));
        b.push(0);
        b.extend(std::iter::repeat_n(0, usize::from(n).div_ceil(8)));
        b
    }

    #[test]
    fn more_columns_than_a_table_can_have_is_an_error() {
        // The batch builders allocate per column (two images): a crafted million-column map
        // asked for gigabytes from a few MB of event.
        let m = TableMap::parse(&int_columns(4096), 6).unwrap();
        assert_eq!(m.columns.len(), 4096);
        let e = TableMap::parse(&int_columns(4097), 6).unwrap_err();
        assert_eq!(
            e,
            ErrorKind::Invalid {
                offset: 14,
                reason: "more than 4096 columns (the server's limit)"
            }
        );
    }
}
