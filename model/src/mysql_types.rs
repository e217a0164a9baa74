//! The MySQL/MariaDB type mapping: [`MysqlType`], its [`SourceType`] form and Arrow types.
//!
//! The mapping is the MySQL table in `docs/design/change-model.md`. A MySQL column is described
//! by a [`MysqlType`] (built by the binlog decoder from the table map and its optional metadata,
//! or by the source from `information_schema.COLUMNS`) and carried in the model as a
//! [`SourceType`] whose `name` starts with `mysql:` ([`is_mysql`]), so sinks can tell the
//! source's type system without a new field:
//!
//! | `SourceType` field | MySQL |
//! |---|---|
//! | `name` | `mysql:` + data type (`mysql:int unsigned`, `mysql:decimal`, `mysql:enum`) |
//! | `oid` | 0 |
//! | `modifier` | decimal `precision << 8 \| scale`; bit: bits; time/datetime/timestamp: fsp; char/binary: length; else -1 |
//! | `display` | `COLUMN_TYPE` as MySQL prints it (`int(10) unsigned` without width: `int unsigned`) |
//! | `labels` | enum / set labels in definition order |
//!
//! # Traps
//! - `TIMESTAMP` is stored as UTC seconds since the epoch and shown in the session time zone;
//!   `DATETIME` is a wall-clock value with no zone. So TIMESTAMP → `Timestamp(µs, "UTC")` and
//!   DATETIME → `Timestamp(µs, None)`: never shift a DATETIME by a zone.
//! - `TIME` is a signed duration (−838:59:59 … 838:59:59), not a time of day: `Duration(µs)`.
//! - Zero and partial dates (`0000-00-00`, `2020-00-15`, `0000-00-00 00:00:00`) are stored by
//!   servers without `NO_ZERO_DATE`; Arrow dates cannot hold them: the slot is null with an
//!   `Invalid` marker whose detail is MySQL's text form.
//! - `BIT(1)` is a boolean; `BIT(n)` (n ≤ 64) an unsigned number (its bits, big-endian in the row).
//! - MariaDB's `JSON` is `LONGTEXT` with a check constraint: the binlog cannot tell it apart, so
//!   only `information_schema` (or a MySQL server, whose JSON is its own type) gives `arrow.json`.
//! - Geometry: MySQL stores a 4-byte little-endian SRID before the WKB. Arrow holds the WKB
//!   (`geoarrow.wkb`); a non-zero SRID is kept in an `Srid` marker on the (non-null) slot.

use arrow_schema::{DataType, TimeUnit};

use crate::table::SourceType;

/// Prefix of [`SourceType::name`] for MySQL/MariaDB types.
pub const MYSQL_PREFIX: &str = "mysql:";

/// Whether a source type is a MySQL/MariaDB one.
pub fn is_mysql(t: &SourceType) -> bool {
    t.name.starts_with(MYSQL_PREFIX)
}

/// Geometry subtypes (table-map `GEOMETRY_TYPE` metadata, MySQL's `Field::geometry_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GeometryKind {
    Geometry,
    Point,
    LineString,
    Polygon,
    MultiPoint,
    MultiLineString,
    MultiPolygon,
    GeometryCollection,
}

impl GeometryKind {
    /// From the metadata code (0 geometry, 1 point, ... 7 geometrycollection).
    pub fn from_code(c: u64) -> GeometryKind {
        match c {
            1 => GeometryKind::Point,
            2 => GeometryKind::LineString,
            3 => GeometryKind::Polygon,
            4 => GeometryKind::MultiPoint,
            5 => GeometryKind::MultiLineString,
            6 => GeometryKind::MultiPolygon,
            7 => GeometryKind::GeometryCollection,
            _ => GeometryKind::Geometry,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            GeometryKind::Geometry => "geometry",
            GeometryKind::Point => "point",
            GeometryKind::LineString => "linestring",
            GeometryKind::Polygon => "polygon",
            GeometryKind::MultiPoint => "multipoint",
            GeometryKind::MultiLineString => "multilinestring",
            GeometryKind::MultiPolygon => "multipolygon",
            GeometryKind::GeometryCollection => "geometrycollection",
        }
    }

    fn from_name(n: &str) -> Option<GeometryKind> {
        Some(match n {
            "geometry" => GeometryKind::Geometry,
            "point" => GeometryKind::Point,
            "linestring" => GeometryKind::LineString,
            "polygon" => GeometryKind::Polygon,
            "multipoint" => GeometryKind::MultiPoint,
            "multilinestring" => GeometryKind::MultiLineString,
            "multipolygon" => GeometryKind::MultiPolygon,
            "geometrycollection" | "geomcollection" => GeometryKind::GeometryCollection,
            _ => return None,
        })
    }
}

/// Size class of TEXT/BLOB columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlobSize {
    Tiny,
    Normal,
    Medium,
    Long,
}

impl BlobSize {
    /// From the table-map metadata (bytes of the length prefix).
    pub fn from_length_bytes(n: u16) -> Option<BlobSize> {
        Some(match n {
            1 => BlobSize::Tiny,
            2 => BlobSize::Normal,
            3 => BlobSize::Medium,
            4 => BlobSize::Long,
            _ => return None,
        })
    }

    fn prefix(self) -> &'static str {
        match self {
            BlobSize::Tiny => "tiny",
            BlobSize::Normal => "",
            BlobSize::Medium => "medium",
            BlobSize::Long => "long",
        }
    }
}

/// A MySQL/MariaDB column type, as precise as the model needs it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MysqlType {
    TinyInt {
        unsigned: bool,
    },
    SmallInt {
        unsigned: bool,
    },
    MediumInt {
        unsigned: bool,
    },
    Int {
        unsigned: bool,
    },
    BigInt {
        unsigned: bool,
    },
    Float,
    Double,
    /// `DECIMAL(p,s)`: 1 ≤ p ≤ 65, 0 ≤ s ≤ 30, s ≤ p.
    Decimal {
        precision: u8,
        scale: u8,
    },
    /// `BIT(n)`, 1 ≤ n ≤ 64.
    Bit {
        bits: u8,
    },
    Year,
    Date,
    /// `TIME(fsp)`.
    Time {
        fsp: u8,
    },
    /// `DATETIME(fsp)`.
    DateTime {
        fsp: u8,
    },
    /// `TIMESTAMP(fsp)`.
    Timestamp {
        fsp: u8,
    },
    /// `CHAR(n)` (characters); `n` unknown = `None`.
    Char {
        length: Option<u32>,
    },
    VarChar {
        length: Option<u32>,
    },
    Text(BlobSize),
    Binary {
        length: Option<u32>,
    },
    VarBinary {
        length: Option<u32>,
    },
    Blob(BlobSize),
    Enum {
        labels: Vec<String>,
    },
    Set {
        labels: Vec<String>,
    },
    Json,
    Geometry(GeometryKind),
}

impl MysqlType {
    /// The data type keyword (`DATA_TYPE` of `information_schema.COLUMNS`), plus ` unsigned`.
    pub fn data_type(&self) -> String {
        let int = |n: &str, u: bool| {
            if u {
                format!("{n} unsigned")
            } else {
                n.to_owned()
            }
        };
        match self {
            MysqlType::TinyInt { unsigned } => int("tinyint", *unsigned),
            MysqlType::SmallInt { unsigned } => int("smallint", *unsigned),
            MysqlType::MediumInt { unsigned } => int("mediumint", *unsigned),
            MysqlType::Int { unsigned } => int("int", *unsigned),
            MysqlType::BigInt { unsigned } => int("bigint", *unsigned),
            MysqlType::Float => "float".into(),
            MysqlType::Double => "double".into(),
            MysqlType::Decimal { .. } => "decimal".into(),
            MysqlType::Bit { .. } => "bit".into(),
            MysqlType::Year => "year".into(),
            MysqlType::Date => "date".into(),
            MysqlType::Time { .. } => "time".into(),
            MysqlType::DateTime { .. } => "datetime".into(),
            MysqlType::Timestamp { .. } => "timestamp".into(),
            MysqlType::Char { .. } => "char".into(),
            MysqlType::VarChar { .. } => "varchar".into(),
            MysqlType::Text(s) => format!("{}text", s.prefix()),
            MysqlType::Binary { .. } => "binary".into(),
            MysqlType::VarBinary { .. } => "varbinary".into(),
            MysqlType::Blob(s) => format!("{}blob", s.prefix()),
            MysqlType::Enum { .. } => "enum".into(),
            MysqlType::Set { .. } => "set".into(),
            MysqlType::Json => "json".into(),
            MysqlType::Geometry(g) => g.name().into(),
        }
    }

    /// `COLUMN_TYPE` as MySQL 8 prints it (no integer display widths).
    pub fn display(&self) -> String {
        let quoted = |labels: &[String]| {
            labels
                .iter()
                .map(|l| format!("'{}'", l.replace('\'', "''")))
                .collect::<Vec<_>>()
                .join(",")
        };
        let len = |n: &str, l: &Option<u32>| match l {
            Some(l) => format!("{n}({l})"),
            None => n.to_owned(),
        };
        let fsp = |n: &str, f: u8| {
            if f == 0 {
                n.to_owned()
            } else {
                format!("{n}({f})")
            }
        };
        match self {
            MysqlType::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
            MysqlType::Bit { bits } => format!("bit({bits})"),
            MysqlType::Time { fsp: f } => fsp("time", *f),
            MysqlType::DateTime { fsp: f } => fsp("datetime", *f),
            MysqlType::Timestamp { fsp: f } => fsp("timestamp", *f),
            MysqlType::Char { length } => len("char", length),
            MysqlType::VarChar { length } => len("varchar", length),
            MysqlType::Binary { length } => len("binary", length),
            MysqlType::VarBinary { length } => len("varbinary", length),
            MysqlType::Enum { labels } => format!("enum({})", quoted(labels)),
            MysqlType::Set { labels } => format!("set({})", quoted(labels)),
            other => other.data_type(),
        }
    }

    /// The `modifier` of the [`SourceType`] (see the module doc).
    fn modifier(&self) -> i32 {
        let len = |l: &Option<u32>| l.map_or(-1, |l| l.min(i32::MAX as u32) as i32);
        match self {
            MysqlType::Decimal { precision, scale } => {
                (i32::from(*precision) << 8) | i32::from(*scale)
            }
            MysqlType::Bit { bits } => i32::from(*bits),
            MysqlType::Time { fsp }
            | MysqlType::DateTime { fsp }
            | MysqlType::Timestamp { fsp } => i32::from(*fsp),
            MysqlType::Char { length }
            | MysqlType::VarChar { length }
            | MysqlType::Binary { length }
            | MysqlType::VarBinary { length } => len(length),
            _ => -1,
        }
    }

    /// The model's [`SourceType`] for this type.
    pub fn source_type(&self) -> SourceType {
        let labels = match self {
            MysqlType::Enum { labels } | MysqlType::Set { labels } => labels.clone(),
            _ => Vec::new(),
        };
        SourceType {
            name: format!("{MYSQL_PREFIX}{}", self.data_type()),
            oid: 0,
            modifier: self.modifier(),
            display: self.display(),
            element: None,
            labels,
            structure: None,
        }
    }

    /// Inverse of [`MysqlType::source_type`]; `None` for a non-MySQL or unknown type.
    pub fn from_source_type(t: &SourceType) -> Option<MysqlType> {
        let name = t.name.strip_prefix(MYSQL_PREFIX)?;
        let (base, unsigned) = match name.strip_suffix(" unsigned") {
            Some(b) => (b, true),
            None => (name, false),
        };
        let m = t.modifier;
        let len = (m >= 0).then_some(m as u32);
        let small = |v: i32| u8::try_from(v).ok();
        let blob = |p: &str| -> Option<BlobSize> {
            Some(match p {
                "tiny" => BlobSize::Tiny,
                "" => BlobSize::Normal,
                "medium" => BlobSize::Medium,
                "long" => BlobSize::Long,
                _ => return None,
            })
        };
        Some(match base {
            "tinyint" => MysqlType::TinyInt { unsigned },
            "smallint" => MysqlType::SmallInt { unsigned },
            "mediumint" => MysqlType::MediumInt { unsigned },
            "int" => MysqlType::Int { unsigned },
            "bigint" => MysqlType::BigInt { unsigned },
            "float" => MysqlType::Float,
            "double" => MysqlType::Double,
            "decimal" => MysqlType::Decimal {
                precision: small(m >> 8)?,
                scale: small(m & 0xff)?,
            },
            "bit" => MysqlType::Bit { bits: small(m)? },
            "year" => MysqlType::Year,
            "date" => MysqlType::Date,
            "time" => MysqlType::Time { fsp: small(m)? },
            "datetime" => MysqlType::DateTime { fsp: small(m)? },
            "timestamp" => MysqlType::Timestamp { fsp: small(m)? },
            "char" => MysqlType::Char { length: len },
            "varchar" => MysqlType::VarChar { length: len },
            "binary" => MysqlType::Binary { length: len },
            "varbinary" => MysqlType::VarBinary { length: len },
            "enum" => MysqlType::Enum {
                labels: t.labels.clone(),
            },
            "set" => MysqlType::Set {
                labels: t.labels.clone(),
            },
            "json" => MysqlType::Json,
            b => {
                if let Some(p) = b.strip_suffix("text") {
                    MysqlType::Text(blob(p)?)
                } else if let Some(p) = b.strip_suffix("blob") {
                    MysqlType::Blob(blob(p)?)
                } else {
                    MysqlType::Geometry(GeometryKind::from_name(b)?)
                }
            }
        })
    }

    /// The Arrow type of the values (the design doc's table).
    pub fn arrow_type(&self) -> DataType {
        let int = |u: bool, s: DataType, us: DataType| if u { us } else { s };
        match self {
            MysqlType::TinyInt { unsigned } => int(*unsigned, DataType::Int8, DataType::UInt8),
            MysqlType::SmallInt { unsigned } => int(*unsigned, DataType::Int16, DataType::UInt16),
            MysqlType::MediumInt { unsigned } | MysqlType::Int { unsigned } => {
                int(*unsigned, DataType::Int32, DataType::UInt32)
            }
            MysqlType::BigInt { unsigned } => int(*unsigned, DataType::Int64, DataType::UInt64),
            MysqlType::Float => DataType::Float32,
            MysqlType::Double => DataType::Float64,
            MysqlType::Decimal { precision, scale } => {
                let (p, s) = ((*precision).max(1), (*scale).min(*precision) as i8);
                if p <= 38 {
                    DataType::Decimal128(p, s)
                } else {
                    DataType::Decimal256(p, s)
                }
            }
            MysqlType::Bit { bits: 1 } => DataType::Boolean,
            MysqlType::Bit { .. } => DataType::UInt64,
            MysqlType::Year => DataType::Int16,
            MysqlType::Date => DataType::Date32,
            MysqlType::Time { .. } => DataType::Duration(TimeUnit::Microsecond),
            MysqlType::DateTime { .. } => DataType::Timestamp(TimeUnit::Microsecond, None),
            MysqlType::Timestamp { .. } => {
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
            }
            MysqlType::Char { .. }
            | MysqlType::VarChar { .. }
            | MysqlType::Text(_)
            | MysqlType::Enum { .. }
            | MysqlType::Set { .. }
            | MysqlType::Json => DataType::Utf8,
            MysqlType::Binary { .. }
            | MysqlType::VarBinary { .. }
            | MysqlType::Blob(_)
            | MysqlType::Geometry(_) => DataType::Binary,
        }
    }
}

/// The canonical Arrow extension of a MySQL column (`arrow.json`, `geoarrow.wkb`).
pub fn extension_name(t: &SourceType) -> Option<&'static str> {
    match MysqlType::from_source_type(t)? {
        MysqlType::Json => Some("arrow.json"),
        MysqlType::Geometry(_) => Some("geoarrow.wkb"),
        _ => None,
    }
}

/// The Arrow type of a MySQL source type; Utf8 for an unknown `mysql:` name.
pub fn arrow_type(t: &SourceType) -> DataType {
    MysqlType::from_source_type(t).map_or(DataType::Utf8, |m| m.arrow_type())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_types() -> Vec<MysqlType> {
        let mut v = Vec::new();
        for unsigned in [false, true] {
            v.extend([
                MysqlType::TinyInt { unsigned },
                MysqlType::SmallInt { unsigned },
                MysqlType::MediumInt { unsigned },
                MysqlType::Int { unsigned },
                MysqlType::BigInt { unsigned },
            ]);
        }
        v.extend([
            MysqlType::Float,
            MysqlType::Double,
            MysqlType::Decimal {
                precision: 65,
                scale: 30,
            },
            MysqlType::Decimal {
                precision: 10,
                scale: 2,
            },
            MysqlType::Bit { bits: 1 },
            MysqlType::Bit { bits: 64 },
            MysqlType::Year,
            MysqlType::Date,
            MysqlType::Time { fsp: 3 },
            MysqlType::DateTime { fsp: 6 },
            MysqlType::Timestamp { fsp: 0 },
            MysqlType::Char { length: Some(5) },
            MysqlType::VarChar { length: None },
            MysqlType::Text(BlobSize::Medium),
            MysqlType::Binary { length: Some(16) },
            MysqlType::VarBinary { length: Some(3) },
            MysqlType::Blob(BlobSize::Tiny),
            MysqlType::Blob(BlobSize::Normal),
            MysqlType::Enum {
                labels: vec!["a".into(), "it's".into()],
            },
            MysqlType::Set {
                labels: vec!["x".into(), "y".into()],
            },
            MysqlType::Json,
            MysqlType::Geometry(GeometryKind::Point),
            MysqlType::Geometry(GeometryKind::GeometryCollection),
        ]);
        v
    }

    #[test]
    fn source_type_round_trips() {
        for t in all_types() {
            let st = t.source_type();
            assert!(is_mysql(&st), "{st:?}");
            assert_eq!(
                MysqlType::from_source_type(&st).as_ref(),
                Some(&t),
                "{st:?}"
            );
        }
        assert!(MysqlType::from_source_type(&SourceType::pg(23, "int4", -1)).is_none());
    }

    #[test]
    fn displays_and_arrow_types() {
        let d = |t: MysqlType| (t.display(), t.arrow_type());
        assert_eq!(
            d(MysqlType::BigInt { unsigned: true }),
            ("bigint unsigned".into(), DataType::UInt64)
        );
        assert_eq!(
            d(MysqlType::Decimal {
                precision: 65,
                scale: 30
            }),
            ("decimal(65,30)".into(), DataType::Decimal256(65, 30))
        );
        assert_eq!(
            d(MysqlType::Decimal {
                precision: 38,
                scale: 0
            })
            .1,
            DataType::Decimal128(38, 0)
        );
        assert_eq!(
            d(MysqlType::Enum {
                labels: vec!["it's".into()]
            })
            .0,
            "enum('it''s')"
        );
        assert_eq!(
            d(MysqlType::Timestamp { fsp: 3 }),
            (
                "timestamp(3)".into(),
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
            )
        );
        assert_eq!(
            d(MysqlType::DateTime { fsp: 0 }).1,
            DataType::Timestamp(TimeUnit::Microsecond, None)
        );
        assert_eq!(
            d(MysqlType::Time { fsp: 0 }).1,
            DataType::Duration(TimeUnit::Microsecond)
        );
        assert_eq!(d(MysqlType::Bit { bits: 1 }).1, DataType::Boolean);
        assert_eq!(
            extension_name(&MysqlType::Json.source_type()),
            Some("arrow.json")
        );
        assert_eq!(
            extension_name(&MysqlType::Geometry(GeometryKind::Polygon).source_type()),
            Some("geoarrow.wkb")
        );
    }
}
