//! Table map (+ what the source read from `information_schema`) → the model's versioned
//! [`TableSchema`] and the per-column value [`Kind`]s.
//!
//! # Traps
//! - Column names come from the table map only with `binlog_row_metadata=FULL`. Otherwise the
//!   catalog (`information_schema.COLUMNS`) names them, which is only right while the table
//!   has not changed since the event was written: a catalog whose column count differs from the
//!   table map is stale and is a definite error telling the user to turn on FULL metadata.
//! - MariaDB's JSON is LONGTEXT: only the catalog (a `json_valid` check constraint) tells.
//! - A column whose charset is unknown (no metadata, no catalog) is kept as bytes: lossless.

use std::sync::Arc;

use tidemark_model::mysql_types::{BlobSize, GeometryKind, MysqlType};
use tidemark_model::{Column, TableId, TableSchema};

use crate::charset::{charset_of_collation, charset_of_name, Charset};
use crate::decimal;
use crate::error::ErrorKind;
use crate::table_map::{ty, MapColumn, TableMap};
use crate::values::Kind;

/// What the source knows about one column from the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CatalogColumn {
    pub name: String,
    /// `CHARACTER_SET_NAME` (None for non-character columns).
    pub charset: Option<String>,
    /// `COLUMN_TYPE` contains `unsigned`.
    pub unsigned: bool,
    /// Part of the primary key.
    pub key: bool,
    /// MySQL JSON, or MariaDB LONGTEXT with a `json_valid` check.
    pub json: bool,
    /// Enum/set labels from `COLUMN_TYPE`.
    pub labels: Vec<String>,
    /// Geometry subtype from `DATA_TYPE`.
    pub geometry: Option<GeometryKind>,
    /// `CHARACTER_MAXIMUM_LENGTH` of char/varchar/binary/varbinary columns.
    pub length: Option<u32>,
}

/// What the source knows about a table from the catalog, in column order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableCatalog {
    pub columns: Vec<CatalogColumn>,
}

/// A table map resolved against the catalog.
#[derive(Debug)]
pub struct TableEntry {
    pub table: TableId,
    /// `None` for a table outside the include list: its rows are skipped unread.
    pub schema: Option<Arc<TableSchema>>,
    pub kinds: Vec<Kind>,
    /// Table map body bytes after the table id (for the reuse check).
    pub raw: Vec<u8>,
    pub catalog_generation: u64,
}

fn unsupported(table: &TableId, col: &str, what: String) -> ErrorKind {
    ErrorKind::Unsupported {
        what: format!("table {table}, column {col}: {what}"),
    }
}

/// Resolves every column of `map`; `catalog` is used where the map is silent.
pub fn resolve(
    map: &TableMap,
    table: &TableId,
    catalog: Option<&TableCatalog>,
) -> Result<(Vec<Column>, Vec<Kind>), ErrorKind> {
    let catalog = catalog.filter(|c| c.columns.len() == map.columns.len());
    let mut columns = Vec::with_capacity(map.columns.len());
    let mut kinds = Vec::with_capacity(map.columns.len());
    for (i, mc) in map.columns.iter().enumerate() {
        let cat = catalog.map(|c| &c.columns[i]);
        let name = match (&mc.name, cat) {
            (Some(n), _) => n.clone(),
            (None, Some(c)) => c.name.clone(),
            (None, None) => {
                return Err(ErrorKind::Unsupported {
                    what: format!(
                        "table {table}: the table map has no column names and the catalog does not match it \
                         ({} columns); set binlog_row_metadata=FULL on the server",
                        map.columns.len()
                    ),
                })
            }
        };
        // A catalog with other names than FULL metadata is from a later schema: ignore it.
        let cat = cat.filter(|c| mc.name.as_deref().is_none_or(|n| n == c.name));
        let key = if map.has_key_info {
            mc.key
        } else {
            cat.is_some_and(|c| c.key)
        };
        let (kind, mtype) = plan(mc, cat, table, &name)?;
        columns.push(Column::mysql(name, &mtype, mc.nullable, key));
        kinds.push(kind);
    }
    Ok((columns, kinds))
}

fn charset(
    mc: &MapColumn,
    cat: Option<&CatalogColumn>,
    table: &TableId,
    name: &str,
) -> Result<Option<Charset>, ErrorKind> {
    if let Some(id) = mc.charset {
        if let Some(cs) = charset_of_collation(id) {
            return Ok(Some(cs));
        }
        if let Some(cs) = cat
            .and_then(|c| c.charset.as_deref())
            .and_then(charset_of_name)
        {
            return Ok(Some(cs));
        }
        return Err(unsupported(
            table,
            name,
            format!("character set of collation id {id}"),
        ));
    }
    match cat.and_then(|c| c.charset.as_deref()) {
        Some(n) => charset_of_name(n)
            .map(Some)
            .ok_or_else(|| unsupported(table, name, format!("character set {n}"))),
        None => Ok(None),
    }
}

/// The value kind and model type of one column.
fn plan(
    mc: &MapColumn,
    cat: Option<&CatalogColumn>,
    table: &TableId,
    name: &str,
) -> Result<(Kind, MysqlType), ErrorKind> {
    let unsigned = mc.unsigned.unwrap_or(cat.is_some_and(|c| c.unsigned));
    let int = |len| Kind::Int { len, unsigned };
    let fsp = |m: u16| -> Result<u8, ErrorKind> {
        u8::try_from(m)
            .ok()
            .filter(|f| *f <= 6)
            .ok_or_else(|| unsupported(table, name, format!("fractional seconds precision {m}")))
    };
    let labels = || -> Result<Arc<[String]>, ErrorKind> {
        match (&mc.labels, cat.filter(|c| !c.labels.is_empty())) {
            (Some(l), _) => Ok(l.clone().into()),
            (None, Some(c)) => Ok(c.labels.clone().into()),
            (None, None) => Err(unsupported(
                table,
                name,
                "enum/set labels unknown; set binlog_row_metadata=FULL".into(),
            )),
        }
    };
    let length = cat.and_then(|c| c.length);
    let cs = charset(mc, cat, table, name)?;
    let text = |cs: Option<Charset>| cs.filter(|c| *c != Charset::Binary);
    let m = mc.meta;
    Ok(match mc.ty {
        ty::TINY => (int(1), MysqlType::TinyInt { unsigned }),
        ty::SHORT => (int(2), MysqlType::SmallInt { unsigned }),
        ty::INT24 => (int(3), MysqlType::MediumInt { unsigned }),
        ty::LONG => (int(4), MysqlType::Int { unsigned }),
        ty::LONGLONG => (int(8), MysqlType::BigInt { unsigned }),
        ty::FLOAT => (Kind::Float, MysqlType::Float),
        ty::DOUBLE => (Kind::Double, MysqlType::Double),
        ty::NEWDECIMAL => {
            let (precision, scale) = ((m >> 8) as u8, (m & 0xff) as u8);
            if !(1..=65).contains(&precision) || scale > 30 || scale > precision {
                return Err(unsupported(
                    table,
                    name,
                    format!("decimal({precision},{scale})"),
                ));
            }
            let size = decimal::binary_size(precision, scale);
            (
                Kind::Decimal {
                    precision,
                    scale,
                    size,
                },
                MysqlType::Decimal { precision, scale },
            )
        }
        ty::YEAR => (Kind::Year, MysqlType::Year),
        ty::DATE | ty::NEWDATE => (Kind::Date, MysqlType::Date),
        ty::TIME => (Kind::Time, MysqlType::Time { fsp: 0 }),
        ty::TIME2 => (
            Kind::Time2 { fsp: fsp(m)? },
            MysqlType::Time { fsp: fsp(m)? },
        ),
        ty::DATETIME => (Kind::DateTime, MysqlType::DateTime { fsp: 0 }),
        ty::DATETIME2 => (
            Kind::DateTime2 { fsp: fsp(m)? },
            MysqlType::DateTime { fsp: fsp(m)? },
        ),
        ty::TIMESTAMP => (Kind::Timestamp, MysqlType::Timestamp { fsp: 0 }),
        ty::TIMESTAMP2 => (
            Kind::Timestamp2 { fsp: fsp(m)? },
            MysqlType::Timestamp { fsp: fsp(m)? },
        ),
        ty::VARCHAR | ty::VAR_STRING | ty::STRING => {
            let len_bytes = if m < 256 { 1 } else { 2 };
            let varying = mc.ty != ty::STRING;
            match text(cs) {
                Some(charset) => (
                    Kind::Str { len_bytes, charset },
                    if varying {
                        MysqlType::VarChar { length }
                    } else {
                        MysqlType::Char { length }
                    },
                ),
                None => (
                    Kind::Bytes {
                        len_bytes,
                        pad_to: if varying { 0 } else { usize::from(m) },
                    },
                    if varying {
                        MysqlType::VarBinary { length }
                    } else {
                        MysqlType::Binary { length }
                    },
                ),
            }
        }
        ty::ENUM => {
            let pack = usize::from(m & 0xff);
            if !(1..=2).contains(&pack) {
                return Err(unsupported(table, name, format!("enum pack length {pack}")));
            }
            let labels = labels()?;
            let list = labels.to_vec();
            (
                Kind::Enum { pack, labels },
                MysqlType::Enum { labels: list },
            )
        }
        ty::SET => {
            let pack = usize::from(m & 0xff);
            if !(1..=8).contains(&pack) {
                return Err(unsupported(table, name, format!("set pack length {pack}")));
            }
            let labels = labels()?;
            let list = labels.to_vec();
            (Kind::Set { pack, labels }, MysqlType::Set { labels: list })
        }
        ty::BIT => {
            let (last, bytes) = (m >> 8, m & 0xff);
            let bits = bytes * 8 + last;
            if !(1..=64).contains(&bits) || last > 7 {
                return Err(unsupported(table, name, format!("bit({bits})")));
            }
            let nbytes = usize::from(bytes) + usize::from(last > 0);
            (
                Kind::Bit { nbytes, bits },
                MysqlType::Bit { bits: bits as u8 },
            )
        }
        ty::BLOB | ty::TINY_BLOB | ty::MEDIUM_BLOB | ty::LONG_BLOB => {
            let size = BlobSize::from_length_bytes(m)
                .ok_or_else(|| unsupported(table, name, format!("blob length bytes {m}")))?;
            let len_bytes = usize::from(m);
            let json = cat.is_some_and(|c| c.json);
            match text(cs) {
                Some(charset) if json => (Kind::Str { len_bytes, charset }, MysqlType::Json),
                Some(charset) => (Kind::Str { len_bytes, charset }, MysqlType::Text(size)),
                None => (
                    Kind::Bytes {
                        len_bytes,
                        pad_to: 0,
                    },
                    MysqlType::Blob(size),
                ),
            }
        }
        ty::JSON => {
            if !(1..=4).contains(&m) {
                return Err(unsupported(table, name, format!("json length bytes {m}")));
            }
            (
                Kind::Json {
                    len_bytes: usize::from(m),
                },
                MysqlType::Json,
            )
        }
        ty::GEOMETRY => {
            if !(1..=4).contains(&m) {
                return Err(unsupported(
                    table,
                    name,
                    format!("geometry length bytes {m}"),
                ));
            }
            let g = mc
                .geometry
                .or_else(|| cat.and_then(|c| c.geometry))
                .unwrap_or(GeometryKind::Geometry);
            (
                Kind::Geometry {
                    len_bytes: usize::from(m),
                },
                MysqlType::Geometry(g),
            )
        }
        other => {
            return Err(unsupported(
                table,
                name,
                format!("column type {other} ({})", type_name(other)),
            ))
        }
    })
}

fn type_name(t: u8) -> &'static str {
    match t {
        ty::DECIMAL => "pre-5.0 DECIMAL",
        ty::NULL => "NULL",
        ty::TYPED_ARRAY => "typed array (multi-valued index)",
        ty::VECTOR => "VECTOR",
        _ => "unknown",
    }
}
