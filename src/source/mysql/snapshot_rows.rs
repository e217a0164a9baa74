//! Snapshot rows of a MySQL/MariaDB table: the table's schema from `information_schema`
//! (exactly the columns the binlog decoder builds from a table map with FULL metadata, so the
//! snapshot and the stream that follows share one schema version), and rows of the binary
//! protocol (`COM_STMT_EXECUTE` result sets) → `Op::Read` rows of a [`ChangeBatchBuilder`].
//!
//! # Why the binary protocol
//! Integers, floats, dates and times arrive as fixed binary fields (no number or date text to
//! parse); strings, decimals, bits and geometries arrive as bytes either way. Only DECIMAL is
//! parsed from text (`-12.3400`, always `scale` digits after the point).
//!
//! # Traps (each matches a rule of the binlog decoder, `decoders/binlog/src/values.rs`)
//! - **TIMESTAMP** is sent in the session time zone: every reader sets `time_zone = '+00:00'`,
//!   so the value is UTC as in the binlog.
//! - **Zero and partial dates** (`0000-00-00`, `2024-00-10`) are values: a null slot with an
//!   `Invalid` marker holding MySQL's text (with `fsp` fraction digits), never a shifted date.
//! - **Geometry** is MySQL's internal form, 4 bytes of SRID (little-endian) then WKB: the WKB
//!   is the value, a non-zero SRID a marker.
//! - **MariaDB JSON** is LONGTEXT with a `json_valid` check constraint (the catalog tells);
//!   its text is returned as stored, as in the binlog.
//! - **BIT(1)** is a boolean, wider BITs an unsigned integer from big-endian bytes.
//! - **CHAR** values come without trailing spaces (`PAD_CHAR_TO_FULL_LENGTH` is cleared from
//!   the session `sql_mode`), as the binlog stores them.

use std::fmt::Write as _;
use std::sync::Arc;

use mysql_async::prelude::*;
use mysql_async::Value;
use tidemark_binlog::TableCatalog;
use tidemark_model::mysql_types::{BlobSize, MysqlType};
use tidemark_model::pg_value::days_from_civil;
use tidemark_model::{
    ChangeBatchBuilder, Column, Image, MarkerKind, ModelError, MysqlValue, Op, Position, TableId,
    TableSchema,
};

use super::control::{typed_row, typed_rows, MysqlControl};

/// arrow's i256 (the root crate reaches it through arrow-array).
#[allow(non_camel_case_types)]
type i256 = <arrow_array::types::Decimal256Type as arrow_array::types::ArrowPrimitiveType>::Native;
use super::error::MysqlSourceError;

/// How one column's values are converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conv {
    Int,
    UInt,
    Float,
    Double,
    Decimal { precision: u8, scale: u8 },
    Year,
    Date,
    Time,
    DateTime { fsp: u8 },
    Timestamp { fsp: u8 },
    Text,
    Bytes,
    Geometry,
    Bit { bits: u8 },
}

/// A table as the snapshot reads it.
#[derive(Debug, Clone)]
pub struct TableShape {
    pub id: TableId,
    pub schema: Arc<TableSchema>,
    pub convs: Vec<Conv>,
    /// Key columns (indices into `schema.columns`) in key order: the primary key, else
    /// `snapshot.key_columns`; empty: no key.
    pub key: Vec<usize>,
    /// Columns whose values can be range bounds (numbers, temporals, strings).
    pub rangeable: bool,
    /// `information_schema.TABLES.TABLE_ROWS` (an estimate) and `ENGINE`.
    pub estimate: u64,
    pub engine: String,
    /// Per column: ENUM or SET (ordered by label index, compared as text).
    pub enums: Vec<bool>,
}

/// `` `a`.`b` ``.
pub fn quote_ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

pub fn qualified(t: &TableId) -> String {
    format!("{}.{}", quote_ident(&t.namespace), quote_ident(&t.name))
}

/// A string literal that is safe whatever `NO_BACKSLASH_ESCAPES` says: readers clear
/// `sql_mode`, so backslashes escape.
pub fn quote_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// `DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, NUMERIC_PRECISION, NUMERIC_SCALE, DATETIME_PRECISION`.
type TypeRow = (
    String,
    String,
    String,
    Option<u64>,
    Option<u64>,
    Option<u64>,
);

/// `COLUMN_NAME` and the [`TypeRow`] fields.
type ColumnRow = (
    String,
    String,
    String,
    String,
    Option<u64>,
    Option<u64>,
    Option<u64>,
);

fn small(v: Option<u64>, default: u8) -> u8 {
    v.and_then(|v| u8::try_from(v).ok()).unwrap_or(default)
}

/// The model type and conversion of one column, from `information_schema.COLUMNS` and the
/// catalog (JSON-ness, labels, geometry kind, length) the stream uses too.
fn plan_column(
    t: &TableId,
    name: &str,
    row: &TypeRow,
    cat: Option<&tidemark_binlog::CatalogColumn>,
) -> Result<(MysqlType, Conv), String> {
    let (data_type, column_type, _, precision, scale, dt_precision) = row;
    let dt = data_type.to_ascii_lowercase();
    let unsigned = column_type.contains("unsigned");
    let length = cat.and_then(|c| c.length);
    let json = cat.is_some_and(|c| c.json);
    let labels = || cat.map(|c| c.labels.clone()).unwrap_or_default();
    let int = |t: MysqlType| (t, if unsigned { Conv::UInt } else { Conv::Int });
    let fsp = small(*dt_precision, 0).min(6);
    let text_or_json = |size: BlobSize| {
        if json {
            (MysqlType::Json, Conv::Text)
        } else {
            (MysqlType::Text(size), Conv::Text)
        }
    };
    Ok(match dt.as_str() {
        "tinyint" => int(MysqlType::TinyInt { unsigned }),
        "smallint" => int(MysqlType::SmallInt { unsigned }),
        "mediumint" => int(MysqlType::MediumInt { unsigned }),
        "int" | "integer" => int(MysqlType::Int { unsigned }),
        "bigint" => int(MysqlType::BigInt { unsigned }),
        "float" => (MysqlType::Float, Conv::Float),
        "double" | "real" => (MysqlType::Double, Conv::Double),
        "decimal" | "numeric" => {
            let (p, s) = (small(*precision, 10), small(*scale, 0));
            (
                MysqlType::Decimal {
                    precision: p,
                    scale: s,
                },
                Conv::Decimal {
                    precision: p,
                    scale: s,
                },
            )
        }
        "bit" => {
            let bits = small(*precision, 1).clamp(1, 64);
            (MysqlType::Bit { bits }, Conv::Bit { bits })
        }
        "year" => (MysqlType::Year, Conv::Year),
        "date" => (MysqlType::Date, Conv::Date),
        "time" => (MysqlType::Time { fsp }, Conv::Time),
        "datetime" => (MysqlType::DateTime { fsp }, Conv::DateTime { fsp }),
        "timestamp" => (MysqlType::Timestamp { fsp }, Conv::Timestamp { fsp }),
        "char" => (MysqlType::Char { length }, Conv::Text),
        "varchar" => (MysqlType::VarChar { length }, Conv::Text),
        "binary" => (MysqlType::Binary { length }, Conv::Bytes),
        "varbinary" => (MysqlType::VarBinary { length }, Conv::Bytes),
        "tinytext" => text_or_json(BlobSize::Tiny),
        "text" => text_or_json(BlobSize::Normal),
        "mediumtext" => text_or_json(BlobSize::Medium),
        "longtext" => text_or_json(BlobSize::Long),
        "tinyblob" => (MysqlType::Blob(BlobSize::Tiny), Conv::Bytes),
        "blob" => (MysqlType::Blob(BlobSize::Normal), Conv::Bytes),
        "mediumblob" => (MysqlType::Blob(BlobSize::Medium), Conv::Bytes),
        "longblob" => (MysqlType::Blob(BlobSize::Long), Conv::Bytes),
        "enum" => (MysqlType::Enum { labels: labels() }, Conv::Text),
        "set" => (MysqlType::Set { labels: labels() }, Conv::Text),
        "json" => (MysqlType::Json, Conv::Text),
        _ => match cat.and_then(|c| c.geometry) {
            Some(kind) => (MysqlType::Geometry(kind), Conv::Geometry),
            None => {
                return Err(format!(
                    "snapshot of {t}, column {name}: type {column_type} is not supported by the snapshot reader (the binlog decoder's types are: integers, float, double, decimal, bit, year, date, time, datetime, timestamp, char/varchar/text, binary/varbinary/blob, enum, set, json, geometry)"
                ))
            }
        },
    })
}

/// The PRIMARY KEY columns of `t` in key order (empty: none), as [`describe`] reads them;
/// an incremental snapshot compares them with its key before each chunk.
pub async fn primary_key(
    ctl: &mut MysqlControl,
    t: &TableId,
) -> Result<Vec<String>, MysqlSourceError> {
    const CONTEXT: &str = "reading the primary key (snapshot)";
    let addr = ctl.addr.clone();
    let rows: Vec<mysql_async::Row> = ctl
        .conn
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
             AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX",
            (&t.namespace, &t.name),
        )
        .await
        .map_err(|source| MysqlSourceError::Client {
            addr: addr.clone(),
            context: CONTEXT,
            source,
        })?;
    Ok(typed_rows::<(String,)>(&addr, CONTEXT, rows)?
        .into_iter()
        .map(|(c,)| c)
        .collect())
}

/// Reads the shape of `t`; `key_override`: `snapshot.key_columns` for a keyless table.
pub async fn describe(
    ctl: &mut MysqlControl,
    t: &TableId,
    key_override: Option<&Vec<String>>,
) -> Result<TableShape, MysqlSourceError> {
    let catalog: TableCatalog = ctl.catalog(t).await?;
    let addr = ctl.addr.clone();
    let err = |context: &'static str| {
        let addr = addr.clone();
        move |source| MysqlSourceError::Client {
            addr,
            context,
            source,
        }
    };
    const COLUMNS: &str = "reading information_schema.COLUMNS (snapshot)";
    let rows: Vec<mysql_async::Row> = ctl
        .conn
        .exec(
            "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, NUMERIC_PRECISION, NUMERIC_SCALE, DATETIME_PRECISION \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            (&t.namespace, &t.name),
        )
        .await
        .map_err(err(COLUMNS))?;
    let rows: Vec<ColumnRow> = typed_rows(&addr, COLUMNS, rows)?;
    if rows.is_empty() {
        return Err(MysqlSourceError::Config(format!(
            "snapshot: table {t} has no columns in information_schema (dropped, or no SELECT privilege)"
        )));
    }
    let pk = primary_key(ctl, t).await?;
    const TABLES: &str = "reading information_schema.TABLES (snapshot)";
    let info: Option<mysql_async::Row> = ctl
        .conn
        .exec_first(
            "SELECT TABLE_ROWS, ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (&t.namespace, &t.name),
        )
        .await
        .map_err(err(TABLES))?;
    let info: Option<(Option<u64>, Option<String>)> =
        info.map(|r| typed_row(&addr, TABLES, r)).transpose()?;
    let mut columns = Vec::with_capacity(rows.len());
    let mut convs = Vec::with_capacity(rows.len());
    let mut enums = Vec::with_capacity(rows.len());
    for (i, (name, data_type, column_type, nullable, p, s, dp)) in rows.into_iter().enumerate() {
        let cat = catalog.columns.get(i).filter(|c| c.name == name);
        let row = (data_type, column_type, nullable.clone(), p, s, dp);
        let (mtype, conv) = plan_column(t, &name, &row, cat).map_err(MysqlSourceError::Config)?;
        let key = pk.contains(&name);
        enums.push(matches!(
            mtype,
            MysqlType::Enum { .. } | MysqlType::Set { .. }
        ));
        columns.push(Column::mysql(name, &mtype, nullable == "YES", key));
        convs.push(conv);
    }
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    let key_names: Vec<String> = if pk.is_empty() {
        key_override.cloned().unwrap_or_default()
    } else {
        pk
    };
    let mut key = Vec::new();
    for k in &key_names {
        let i = names.iter().position(|n| n == k).ok_or_else(|| {
            MysqlSourceError::Config(format!(
                "snapshot.key_columns.\"{t}\": column {k} does not exist (columns: {names:?})"
            ))
        })?;
        key.push(i);
    }
    // A nullable column of a user-given key (a primary key has none): a NULL key is in no
    // `key >= a AND key < b` range, so such a table is read in one piece.
    let rangeable = !key.is_empty()
        && key.iter().all(|&i| {
            !columns[i].nullable
                && !matches!(
                    convs[i],
                    Conv::Bytes | Conv::Geometry | Conv::Float | Conv::Double | Conv::Bit { .. }
                )
        });
    let (estimate, engine) = info.unwrap_or_default();
    Ok(TableShape {
        id: t.clone(),
        schema: TableSchema::new(t.clone(), 1, columns),
        convs,
        key,
        rangeable,
        estimate: estimate.unwrap_or(0),
        engine: engine.unwrap_or_default(),
        enums,
    })
}

/// Why a catalog shape cannot read rows of the stream's schema of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectError {
    /// The catalog lacks a column of the stream's schema, or has it with another Arrow type:
    /// the catalog is ahead of the stream (a DDL committed that the stream has not decoded).
    CatalogAhead(String),
    /// A key column is not in the stream's schema.
    KeyGone(String),
}

impl TableShape {
    /// This shape (read from the catalog) narrowed to `stream`'s columns, in `stream`'s order
    /// and under its schema and version: an incremental snapshot reads its chunks with the
    /// stream's schema of the table, so chunk rows and stream rows share one version sequence.
    /// Columns are matched by name; a column the catalog has and the stream does not (an ADD
    /// COLUMN not decoded yet) is not read.
    pub fn project(&self, stream: &Arc<TableSchema>) -> Result<TableShape, ProjectError> {
        let mut convs = Vec::with_capacity(stream.columns.len());
        let mut enums = Vec::with_capacity(stream.columns.len());
        for c in &stream.columns {
            let Some(i) = self.schema.columns.iter().position(|k| k.name == c.name) else {
                return Err(ProjectError::CatalogAhead(format!(
                    "column {} is not in the catalog",
                    c.name
                )));
            };
            let k = &self.schema.columns[i];
            if k.data_type != c.data_type {
                return Err(ProjectError::CatalogAhead(format!(
                    "column {} is {} in the catalog, {} in the stream",
                    c.name, k.data_type, c.data_type
                )));
            }
            convs.push(self.convs[i]);
            enums.push(self.enums[i]);
        }
        let mut key = Vec::with_capacity(self.key.len());
        for &i in &self.key {
            let name = &self.schema.columns[i].name;
            let j = stream
                .columns
                .iter()
                .position(|c| &c.name == name)
                .ok_or_else(|| ProjectError::KeyGone(name.clone()))?;
            key.push(j);
        }
        Ok(TableShape {
            id: self.id.clone(),
            schema: Arc::clone(stream),
            rangeable: self.rangeable,
            estimate: self.estimate,
            engine: self.engine.clone(),
            convs,
            key,
            enums,
        })
    }

    /// The select list (every column, in order).
    pub fn select_list(&self) -> String {
        self.schema
            .columns
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// A bound value as an SQL literal of key column `k` (numbers inline, others quoted).
    fn literal(&self, k: usize, text: &str) -> String {
        match self.convs[self.key[k]] {
            Conv::Int | Conv::UInt | Conv::Decimal { .. } | Conv::Year
                if text
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b == b'-' || b == b'.') =>
            {
                text.to_string()
            }
            _ => quote_literal(text),
        }
    }

    /// A bound value as an SQL literal of key column `k`, binary keys included (their text
    /// form is hex, [`TableShape::key_text`]).
    fn key_literal(&self, k: usize, text: &str) -> String {
        match self.convs[self.key[k]] {
            Conv::Bytes if !text.is_empty() && text.bytes().all(|b| b.is_ascii_hexdigit()) => {
                format!("X'{text}'")
            }
            Conv::Bytes if text.is_empty() => "''".to_string(),
            _ => self.literal(k, text),
        }
    }

    /// `key >= bound` (`inclusive`) or `key < bound`, lexicographic over the key columns.
    fn compare(&self, bound: &[String], lower: bool) -> String {
        let op = if lower { Bound::AtLeast } else { Bound::Below };
        self.compare_op(bound, op)
    }

    /// `key > after`, lexicographic over the key columns: the rows after an incremental
    /// snapshot chunk whose last key is `after`.
    pub fn after(&self, after: &[String]) -> String {
        self.compare_op(after, Bound::Above)
    }

    fn compare_op(&self, bound: &[String], op: Bound) -> String {
        let names: Vec<String> = self
            .key
            .iter()
            .map(|&i| quote_ident(&self.schema.columns[i].name))
            .collect();
        let n = names.len().min(bound.len());
        let mut alts = Vec::new();
        for i in 0..n {
            let mut parts: Vec<String> = (0..i)
                .map(|j| format!("{} = {}", names[j], self.key_literal(j, &bound[j])))
                .collect();
            let sign = match (op, i + 1 == n) {
                (Bound::AtLeast, true) => ">=",
                (Bound::AtLeast | Bound::Above, _) => ">",
                (Bound::Below, _) => "<",
            };
            parts.push(format!(
                "{} {sign} {}",
                names[i],
                self.key_literal(i, &bound[i])
            ));
            alts.push(format!("({})", parts.join(" AND ")));
        }
        format!("({})", alts.join(" OR "))
    }

    /// `key >= bound`.
    pub fn lower_bound(&self, bound: &[String]) -> String {
        self.compare(bound, true)
    }

    /// The `WHERE` condition of range `r` given the inner `bounds` (`None`: the whole table).
    pub fn range_condition(&self, bounds: &[Vec<String>], r: u32) -> Option<String> {
        if bounds.is_empty() {
            return None;
        }
        let r = r as usize;
        let mut c = Vec::new();
        if r > 0 {
            c.push(self.compare(&bounds[r - 1], true));
        }
        if r < bounds.len() {
            c.push(self.compare(&bounds[r], false));
        }
        Some(c.join(" AND "))
    }

    /// Whether the key can cut incremental chunks (`key > last ORDER BY key`): numbers,
    /// temporals, strings and binary strings; not floats (inexact), bits or geometries, nor
    /// ENUM/SET (ordered by index, compared as text).
    pub fn chunkable(&self) -> Result<(), String> {
        for &i in &self.key {
            let c = &self.schema.columns[i];
            if self.enums.get(i).copied().unwrap_or(false)
                || matches!(
                    self.convs[i],
                    Conv::Float | Conv::Double | Conv::Bit { .. } | Conv::Geometry
                )
            {
                return Err(format!(
                    "key column {} ({:?}) cannot cut chunks by value",
                    c.name, self.convs[i]
                ));
            }
        }
        Ok(())
    }

    /// The key of a result row in its text form (the checkpoint's `last_key`): numbers and
    /// strings as MySQL prints them, temporals as `YYYY-MM-DD HH:MM:SS.ffffff`, binary as hex.
    pub fn key_text(&self, row: &[Value]) -> Result<Vec<String>, String> {
        self.key
            .iter()
            .map(|&i| {
                let name = &self.schema.columns[i].name;
                Ok(match (self.convs[i], row.get(i)) {
                    (_, Some(Value::Int(v))) => v.to_string(),
                    (_, Some(Value::UInt(v))) => v.to_string(),
                    (Conv::Bytes, Some(Value::Bytes(b))) => {
                        b.iter().fold(String::new(), |mut s, x| {
                            let _ = write!(s, "{x:02x}");
                            s
                        })
                    }
                    (_, Some(Value::Bytes(b))) => std::str::from_utf8(b)
                        .map_err(|_| format!("key column {name}: not UTF-8"))?
                        .to_string(),
                    (Conv::Date, Some(Value::Date(y, mo, d, ..))) => {
                        format!("{y:04}-{mo:02}-{d:02}")
                    }
                    (_, Some(Value::Date(y, mo, d, h, mi, s, us))) => {
                        format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}")
                    }
                    (_, Some(Value::Time(neg, days, h, m, s, us))) => format!(
                        "{}{}:{m:02}:{s:02}.{us:06}",
                        if *neg { "-" } else { "" },
                        u32::from(*h) + days * 24
                    ),
                    (_, v) => return Err(format!("key column {name}: value {v:?} is not a key")),
                })
            })
            .collect()
    }

    /// The key order (`ORDER BY` list).
    pub fn key_order(&self) -> String {
        self.key
            .iter()
            .map(|&i| quote_ident(&self.schema.columns[i].name))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Which side of a bound a condition selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bound {
    AtLeast,
    Above,
    Below,
}

/// Why a row could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum RowError {
    #[error("column {column}: {message}")]
    Value { column: String, message: String },
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// Appends one result row as an `Op::Read` row.
pub fn append_row(
    b: &mut ChangeBatchBuilder,
    shape: &TableShape,
    row: &[Value],
    placeholder: &Position,
    commit_ts_us: Option<i64>,
    text: &mut String,
) -> Result<(), RowError> {
    b.begin_row(Op::Read, placeholder, None, commit_ts_us)?;
    b.image_null(Image::Before)?;
    for (col, (v, conv)) in row.iter().zip(&shape.convs).enumerate() {
        let bad = |message: String| RowError::Value {
            column: shape.schema.columns[col].name.clone(),
            message,
        };
        let a = Image::After;
        match (conv, v) {
            (_, Value::NULL) => b.append_null(a, col)?,
            (Conv::Int | Conv::Year, Value::Int(i)) => {
                b.append_value(a, col, MysqlValue::Int(*i))?
            }
            (Conv::Int | Conv::Year, Value::UInt(u)) => {
                let i = i64::try_from(*u).map_err(|_| bad(format!("{u} out of range")))?;
                b.append_value(a, col, MysqlValue::Int(i))?
            }
            (Conv::UInt, Value::UInt(u)) => b.append_value(a, col, MysqlValue::UInt(*u))?,
            (Conv::UInt, Value::Int(i)) => {
                let u = u64::try_from(*i).map_err(|_| bad(format!("{i} out of range")))?;
                b.append_value(a, col, MysqlValue::UInt(u))?
            }
            (Conv::Float, Value::Float(f)) => b.append_value(a, col, MysqlValue::F32(*f))?,
            (Conv::Float, Value::Double(f)) => {
                b.append_value(a, col, MysqlValue::F32(*f as f32))?
            }
            (Conv::Double, Value::Double(f)) => b.append_value(a, col, MysqlValue::F64(*f))?,
            (Conv::Double, Value::Float(f)) => {
                b.append_value(a, col, MysqlValue::F64(f64::from(*f)))?
            }
            (Conv::Decimal { precision, scale }, Value::Bytes(t)) => {
                let s = std::str::from_utf8(t).map_err(|_| bad("decimal not ASCII".into()))?;
                let v = parse_decimal(s, *scale)
                    .ok_or_else(|| bad(format!("decimal {s:?} does not parse")))?;
                let v = if *precision <= 38 {
                    MysqlValue::Decimal128(v.as_i128())
                } else {
                    MysqlValue::Decimal256(v)
                };
                b.append_value(a, col, v)?
            }
            (Conv::Date, Value::Date(y, m, d, ..)) => match valid_days(*y, *m, *d) {
                Some(days) => b.append_value(a, col, MysqlValue::Date(days as i32))?,
                None => {
                    text.clear();
                    let _ = write!(text, "{y:04}-{m:02}-{d:02}");
                    b.append_marked_null(a, col, MarkerKind::Invalid, Some(text))?
                }
            },
            (Conv::Time, Value::Time(neg, days, h, m, s, us)) => {
                let secs = (i64::from(*days) * 24 + i64::from(*h)) * 3600
                    + i64::from(*m) * 60
                    + i64::from(*s);
                let v = secs * 1_000_000 + i64::from(*us);
                b.append_value(a, col, MysqlValue::DurationUs(if *neg { -v } else { v }))?
            }
            (
                Conv::DateTime { fsp } | Conv::Timestamp { fsp },
                Value::Date(y, mo, d, h, mi, s, us),
            ) => {
                let zero_ts = matches!(conv, Conv::Timestamp { .. }) && *y == 0 && *mo == 0;
                match valid_days(*y, *mo, *d).filter(|_| !zero_ts) {
                    Some(days) => {
                        let v = days * 86_400_000_000
                            + (i64::from(*h) * 3600 + i64::from(*mi) * 60 + i64::from(*s))
                                * 1_000_000
                            + i64::from(*us);
                        b.append_value(a, col, MysqlValue::TimestampUs(v))?
                    }
                    None => {
                        text.clear();
                        let _ = write!(text, "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}");
                        if *fsp > 0 {
                            let digits = format!("{us:06}");
                            text.push('.');
                            text.push_str(&digits[..usize::from((*fsp).min(6))]);
                        }
                        b.append_marked_null(a, col, MarkerKind::Invalid, Some(text))?
                    }
                }
            }
            (Conv::Text, Value::Bytes(t)) => {
                let s = std::str::from_utf8(t)
                    .map_err(|_| bad("text is not UTF-8 (the session is utf8mb4)".into()))?;
                b.append_value(a, col, MysqlValue::Str(s))?
            }
            (Conv::Bytes, Value::Bytes(t)) => b.append_value(a, col, MysqlValue::Bytes(t))?,
            (Conv::Geometry, Value::Bytes(t)) => {
                if t.len() < 4 {
                    return Err(bad("geometry shorter than its SRID".into()));
                }
                let srid = u32::from_le_bytes([t[0], t[1], t[2], t[3]]);
                let wkb = MysqlValue::Bytes(&t[4..]);
                if srid == 0 {
                    b.append_value(a, col, wkb)?
                } else {
                    text.clear();
                    let _ = write!(text, "{srid}");
                    b.append_value_marked(a, col, wkb, MarkerKind::Srid, Some(text))?
                }
            }
            (Conv::Bit { bits }, Value::Bytes(t)) => {
                let v = t.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x));
                if *bits == 1 {
                    b.append_value(a, col, MysqlValue::Bool(v & 1 == 1))?
                } else {
                    b.append_value(a, col, MysqlValue::UInt(v))?
                }
            }
            (Conv::Bit { bits }, Value::Int(_) | Value::UInt(_)) => {
                let v = match v {
                    Value::Int(i) => *i as u64,
                    Value::UInt(u) => *u,
                    _ => 0,
                };
                if *bits == 1 {
                    b.append_value(a, col, MysqlValue::Bool(v & 1 == 1))?
                } else {
                    b.append_value(a, col, MysqlValue::UInt(v))?
                }
            }
            (c, v) => return Err(bad(format!("unexpected value {v:?} for {c:?}"))),
        }
    }
    b.finish_row()?;
    Ok(())
}

fn valid_days(y: u16, m: u8, d: u8) -> Option<i64> {
    let (y, m, d) = (i64::from(y), u32::from(m), u32::from(d));
    let dim = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => return None,
    };
    (d >= 1 && d <= dim).then(|| days_from_civil(y, m, d))
}

/// MySQL's decimal text (`-12.3400`) → the unscaled value at `scale`.
pub fn parse_decimal(s: &str, scale: u8) -> Option<i256> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let scale = usize::from(scale);
    if frac.len() > scale
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // Up to 38 digits the unscaled value fits an i128 (10^38 < 2^127): accumulate it without
    // the text copy and the 256-bit parse (a DECIMAL(12,2) column of a snapshot is one value a
    // row). Longer ones (DECIMAL(65) has up to 65 digits) go through `i256`.
    if int.len() + scale <= 38 {
        let digits = int.bytes().chain(frac.bytes());
        let mut v = digits.fold(0i128, |v, b| v * 10 + i128::from(b - b'0'));
        for _ in frac.len()..scale {
            v *= 10;
        }
        return Some(i256::from_i128(if neg { -v } else { v }));
    }
    let mut digits = String::with_capacity(int.len() + scale + 1);
    if neg {
        digits.push('-');
    }
    digits.push_str(if int.is_empty() { "0" } else { int });
    digits.push_str(frac);
    digits.extend(std::iter::repeat_n('0', scale - frac.len()));
    i256::from_string(&digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_parse_at_scale() {
        assert_eq!(
            parse_decimal("-12.3400", 4),
            Some(i256::from_i128(-123_400))
        );
        assert_eq!(parse_decimal("0.05", 2), Some(i256::from_i128(5)));
        assert_eq!(parse_decimal("7", 0), Some(i256::from_i128(7)));
        assert_eq!(parse_decimal("1.5", 3), Some(i256::from_i128(1500)));
        assert_eq!(parse_decimal("1.2345", 2), None);
        assert_eq!(parse_decimal("x", 0), None);
        assert_eq!(parse_decimal("-.5", 1), Some(i256::from_i128(-5)));
        assert_eq!(parse_decimal("1.", 2), Some(i256::from_i128(100)));
    }

    /// The i128 fast path (≤ 38 digits) and the i256 path agree, at the boundary too.
    #[test]
    fn decimals_parse_the_same_on_both_sides_of_38_digits() {
        let slow = |s: &str, scale: u8| {
            let (neg, b) = s.strip_prefix('-').map_or((false, s), |b| (true, b));
            let (i, f) = b.split_once('.').unwrap_or((b, ""));
            let t = format!(
                "{}{i}{f}{}",
                if neg { "-" } else { "" },
                "0".repeat(usize::from(scale) - f.len())
            );
            i256::from_string(&t)
        };
        let nines = "9".repeat(38);
        for (s, scale) in [
            (nines.as_str(), 0u8),
            (&nines[..36], 2),
            (&format!("-{}.{}", &nines[..30], &nines[..8]), 8),
            (&"9".repeat(39), 0),
            (&format!("{}.5", "1".repeat(37)), 2),
            (&format!("-{}", "9".repeat(65)), 0),
            ("0.00", 30),
            ("-0", 0),
        ] {
            assert_eq!(
                parse_decimal(s, scale),
                slow(s, scale),
                "{s} at scale {scale}"
            );
        }
    }

    #[test]
    fn literals_escape() {
        assert_eq!(quote_literal("it's \\ x"), "'it''s \\\\ x'");
        assert_eq!(quote_ident("a`b"), "`a``b`");
    }

    fn shape(convs: Vec<Conv>) -> TableShape {
        let t = TableId::new("db", "t");
        let columns = ["a", "b", "c"]
            .iter()
            .zip(&convs)
            .map(|(n, c)| {
                let ty = match c {
                    Conv::Bytes => MysqlType::VarBinary { length: Some(16) },
                    Conv::Text => MysqlType::VarChar { length: Some(20) },
                    Conv::Date => MysqlType::Date,
                    _ => MysqlType::Int { unsigned: false },
                };
                Column::mysql(*n, &ty, false, true)
            })
            .collect();
        TableShape {
            schema: TableSchema::new(t.clone(), 1, columns),
            id: t,
            key: (0..convs.len()).collect(),
            enums: vec![false; convs.len()],
            convs,
            rangeable: true,
            estimate: 0,
            engine: "InnoDB".into(),
        }
    }

    #[test]
    fn incremental_chunks_continue_strictly_after_the_last_key() {
        let s = shape(vec![Conv::Int, Conv::Text, Conv::Bytes]);
        assert_eq!(
            s.after(&["5".into(), "o'k".into(), "00ff".into()]),
            "((`a` > 5) OR (`a` = 5 AND `b` > 'o''k') OR (`a` = 5 AND `b` = 'o''k' AND `c` > X'00ff'))"
        );
        let row = [
            Value::Int(5),
            Value::Bytes(b"o'k".to_vec()),
            Value::Bytes(vec![0, 255]),
        ];
        assert_eq!(s.key_text(&row).unwrap(), vec!["5", "o'k", "00ff"]);
        let d = shape(vec![Conv::Date]);
        assert_eq!(
            d.key_text(&[Value::Date(2024, 2, 29, 0, 0, 0, 0)]).unwrap(),
            vec!["2024-02-29"]
        );
        assert!(d.chunkable().is_ok());
        assert!(shape(vec![Conv::Double]).chunkable().is_err());
        let mut e = shape(vec![Conv::Text]);
        e.enums = vec![true];
        assert!(e.chunkable().is_err());
    }

    #[test]
    fn a_catalog_shape_follows_the_stream_schema_by_name() {
        let all_keys = shape(vec![Conv::Int, Conv::Text, Conv::Bytes]);
        let mut catalog = all_keys.clone();
        catalog.key = vec![0];
        let cols = &catalog.schema.columns;
        let t = catalog.id.clone();
        // The stream has dropped `b` and puts `c` first, at version 3.
        let stream = TableSchema::new(t.clone(), 3, vec![cols[2].clone(), cols[0].clone()]);
        let p = catalog.project(&stream).unwrap();
        assert_eq!(p.key, vec![1]);
        assert!(Arc::ptr_eq(&p.schema, &stream));
        assert_eq!(p.convs, vec![Conv::Bytes, Conv::Int]);
        // Key order stays a, b, c → positions in the stream's schema; `b` is gone from it.
        let mut keyed = catalog.clone();
        keyed.key = vec![0, 2];
        assert_eq!(keyed.project(&stream).unwrap().key, vec![1, 0]);
        assert_eq!(
            all_keys.project(&stream).unwrap_err(),
            ProjectError::KeyGone("b".into())
        );
        // A column the catalog does not have yet, or has with another type: catalog ahead.
        let extra = Column::mysql("x", &MysqlType::Int { unsigned: false }, true, false);
        let stream = TableSchema::new(t.clone(), 4, vec![cols[0].clone(), extra]);
        let mut one = catalog.clone();
        one.key = vec![0];
        assert!(matches!(
            one.project(&stream),
            Err(ProjectError::CatalogAhead(w)) if w.contains("column x")
        ));
        let retyped = Column::mysql("c", &MysqlType::Int { unsigned: false }, false, false);
        let stream = TableSchema::new(t, 5, vec![cols[0].clone(), retyped]);
        assert!(matches!(
            one.project(&stream),
            Err(ProjectError::CatalogAhead(w)) if w.contains("column c")
        ));
    }

    #[test]
    fn dates_validate() {
        assert!(valid_days(0, 0, 0).is_none());
        assert!(valid_days(2024, 2, 29).is_some());
        assert!(valid_days(2023, 2, 29).is_none());
    }
}
