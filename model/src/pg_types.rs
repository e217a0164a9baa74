//! The Postgres type mapping: OIDs, `format_type()` display forms and Arrow types.
//!
//! The mapping is the table in `docs/design/change-model.md`. It is keyed by type OID because
//! that is what pgoutput's Relation message carries; enums, domains and arrays of user types are
//! resolved by the caller from the catalog (`pg_type`, `pg_enum`) and passed in as
//! [`SourceType`] values built with [`SourceType::pg_enum`] / [`SourceType::pg_array`] (a domain
//! is described by its base type and the domain's `typtypmod`). User-defined ranges,
//! multiranges and composites (and arrays of them) are Utf8, their text form, and carry what
//! the catalog says they are made of ([`SourceType::pg_range`], [`SourceType::pg_composite`],
//! ...) so that their binary form can be rendered as that text.
//!
//! # Traps
//! - `atttypmod` of `varchar(n)`/`char(n)` is `n + 4` (VARHDRSZ); of `bit(n)` it is `n`.
//! - numeric typmod: precision `((m-4)>>16)&0xffff`, scale an 11-bit signed value in the low
//!   bits (PG ≥ 15 allows negative scale and scale > precision). Those columns fall back to Utf8
//!   because Arrow decimals need `0 <= scale <= precision`.
//! - The typmod of an array column is the element's typmod (`varchar(20)[]` has 24).
//! - `box` is the one builtin whose array delimiter is `;`, not `,`.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, IntervalUnit, TimeUnit};

use crate::table::{CompositeField, SourceType, TypeStructure};

/// Builtin type OIDs (`pg_type.oid`, stable across versions).
pub mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const CHAR: u32 = 18;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const OID: u32 = 26;
    pub const XID: u32 = 28;
    pub const JSON: u32 = 114;
    pub const XML: u32 = 142;
    pub const POINT: u32 = 600;
    pub const LSEG: u32 = 601;
    pub const PATH: u32 = 602;
    pub const BOX: u32 = 603;
    pub const POLYGON: u32 = 604;
    pub const LINE: u32 = 628;
    pub const CIDR: u32 = 650;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const UNKNOWN: u32 = 705;
    pub const CIRCLE: u32 = 718;
    pub const MACADDR8: u32 = 774;
    pub const MONEY: u32 = 790;
    pub const MACADDR: u32 = 829;
    pub const INET: u32 = 869;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const INTERVAL: u32 = 1186;
    pub const TIMETZ: u32 = 1266;
    pub const BIT: u32 = 1560;
    pub const VARBIT: u32 = 1562;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
    pub const PG_LSN: u32 = 3220;
    pub const JSONB: u32 = 3802;
    pub const INT4RANGE: u32 = 3904;
    pub const NUMRANGE: u32 = 3906;
    pub const TSRANGE: u32 = 3908;
    pub const TSTZRANGE: u32 = 3910;
    pub const DATERANGE: u32 = 3912;
    pub const INT8RANGE: u32 = 3926;
    pub const INT4MULTIRANGE: u32 = 4451;
    pub const NUMMULTIRANGE: u32 = 4532;
    pub const TSMULTIRANGE: u32 = 4533;
    pub const TSTZMULTIRANGE: u32 = 4534;
    pub const DATEMULTIRANGE: u32 = 4535;
    pub const INT8MULTIRANGE: u32 = 4536;
    pub const XID8: u32 = 5069;

    pub const BOOL_ARRAY: u32 = 1000;
    pub const BYTEA_ARRAY: u32 = 1001;
    pub const CHAR_ARRAY: u32 = 1002;
    pub const NAME_ARRAY: u32 = 1003;
    pub const INT8_ARRAY: u32 = 1016;
    pub const INT2_ARRAY: u32 = 1005;
    pub const INT4_ARRAY: u32 = 1007;
    pub const TEXT_ARRAY: u32 = 1009;
    pub const OID_ARRAY: u32 = 1028;
    pub const XID_ARRAY: u32 = 1011;
    pub const JSON_ARRAY: u32 = 199;
    pub const XML_ARRAY: u32 = 143;
    pub const POINT_ARRAY: u32 = 1017;
    pub const LSEG_ARRAY: u32 = 1018;
    pub const PATH_ARRAY: u32 = 1019;
    pub const BOX_ARRAY: u32 = 1020;
    pub const POLYGON_ARRAY: u32 = 1027;
    pub const LINE_ARRAY: u32 = 629;
    pub const CIDR_ARRAY: u32 = 651;
    pub const FLOAT4_ARRAY: u32 = 1021;
    pub const FLOAT8_ARRAY: u32 = 1022;
    pub const CIRCLE_ARRAY: u32 = 719;
    pub const MACADDR8_ARRAY: u32 = 775;
    pub const MONEY_ARRAY: u32 = 791;
    pub const MACADDR_ARRAY: u32 = 1040;
    pub const INET_ARRAY: u32 = 1041;
    pub const BPCHAR_ARRAY: u32 = 1014;
    pub const VARCHAR_ARRAY: u32 = 1015;
    pub const DATE_ARRAY: u32 = 1182;
    pub const TIME_ARRAY: u32 = 1183;
    pub const TIMESTAMP_ARRAY: u32 = 1115;
    pub const TIMESTAMPTZ_ARRAY: u32 = 1185;
    pub const INTERVAL_ARRAY: u32 = 1187;
    pub const TIMETZ_ARRAY: u32 = 1270;
    pub const BIT_ARRAY: u32 = 1561;
    pub const VARBIT_ARRAY: u32 = 1563;
    pub const NUMERIC_ARRAY: u32 = 1231;
    pub const UUID_ARRAY: u32 = 2951;
    pub const PG_LSN_ARRAY: u32 = 3221;
    pub const JSONB_ARRAY: u32 = 3807;
    pub const INT4RANGE_ARRAY: u32 = 3905;
    pub const NUMRANGE_ARRAY: u32 = 3907;
    pub const TSRANGE_ARRAY: u32 = 3909;
    pub const TSTZRANGE_ARRAY: u32 = 3911;
    pub const DATERANGE_ARRAY: u32 = 3913;
    pub const INT8RANGE_ARRAY: u32 = 3927;
    pub const INT4MULTIRANGE_ARRAY: u32 = 6150;
    pub const NUMMULTIRANGE_ARRAY: u32 = 6151;
    pub const TSMULTIRANGE_ARRAY: u32 = 6152;
    pub const TSTZMULTIRANGE_ARRAY: u32 = 6153;
    pub const DATEMULTIRANGE_ARRAY: u32 = 6155;
    pub const INT8MULTIRANGE_ARRAY: u32 = 6157;
    pub const XID8_ARRAY: u32 = 271;
}

/// One builtin scalar type: OID, `typname`, array OID, `format_type()` name without typmod.
struct Builtin {
    oid: u32,
    name: &'static str,
    array: u32,
    display: &'static str,
}

macro_rules! b {
    ($o:ident, $n:expr, $a:ident, $d:expr) => {
        Builtin {
            oid: oid::$o,
            name: $n,
            array: oid::$a,
            display: $d,
        }
    };
}

/// The builtin types this crate knows (checked against `pg_type` of PostgreSQL 15).
const BUILTINS: &[Builtin] = &[
    b!(BOOL, "bool", BOOL_ARRAY, "boolean"),
    b!(BYTEA, "bytea", BYTEA_ARRAY, "bytea"),
    b!(CHAR, "char", CHAR_ARRAY, "\"char\""),
    b!(NAME, "name", NAME_ARRAY, "name"),
    b!(INT8, "int8", INT8_ARRAY, "bigint"),
    b!(INT2, "int2", INT2_ARRAY, "smallint"),
    b!(INT4, "int4", INT4_ARRAY, "integer"),
    b!(TEXT, "text", TEXT_ARRAY, "text"),
    b!(OID, "oid", OID_ARRAY, "oid"),
    b!(XID, "xid", XID_ARRAY, "xid"),
    b!(JSON, "json", JSON_ARRAY, "json"),
    b!(XML, "xml", XML_ARRAY, "xml"),
    b!(POINT, "point", POINT_ARRAY, "point"),
    b!(LSEG, "lseg", LSEG_ARRAY, "lseg"),
    b!(PATH, "path", PATH_ARRAY, "path"),
    b!(BOX, "box", BOX_ARRAY, "box"),
    b!(POLYGON, "polygon", POLYGON_ARRAY, "polygon"),
    b!(LINE, "line", LINE_ARRAY, "line"),
    b!(CIDR, "cidr", CIDR_ARRAY, "cidr"),
    b!(FLOAT4, "float4", FLOAT4_ARRAY, "real"),
    b!(FLOAT8, "float8", FLOAT8_ARRAY, "double precision"),
    b!(CIRCLE, "circle", CIRCLE_ARRAY, "circle"),
    b!(MACADDR8, "macaddr8", MACADDR8_ARRAY, "macaddr8"),
    b!(MONEY, "money", MONEY_ARRAY, "money"),
    b!(MACADDR, "macaddr", MACADDR_ARRAY, "macaddr"),
    b!(INET, "inet", INET_ARRAY, "inet"),
    b!(BPCHAR, "bpchar", BPCHAR_ARRAY, "bpchar"),
    b!(VARCHAR, "varchar", VARCHAR_ARRAY, "character varying"),
    b!(DATE, "date", DATE_ARRAY, "date"),
    b!(TIME, "time", TIME_ARRAY, "time without time zone"),
    b!(
        TIMESTAMP,
        "timestamp",
        TIMESTAMP_ARRAY,
        "timestamp without time zone"
    ),
    b!(
        TIMESTAMPTZ,
        "timestamptz",
        TIMESTAMPTZ_ARRAY,
        "timestamp with time zone"
    ),
    b!(INTERVAL, "interval", INTERVAL_ARRAY, "interval"),
    b!(TIMETZ, "timetz", TIMETZ_ARRAY, "time with time zone"),
    b!(BIT, "bit", BIT_ARRAY, "bit"),
    b!(VARBIT, "varbit", VARBIT_ARRAY, "bit varying"),
    b!(NUMERIC, "numeric", NUMERIC_ARRAY, "numeric"),
    b!(UUID, "uuid", UUID_ARRAY, "uuid"),
    b!(PG_LSN, "pg_lsn", PG_LSN_ARRAY, "pg_lsn"),
    b!(JSONB, "jsonb", JSONB_ARRAY, "jsonb"),
    b!(INT4RANGE, "int4range", INT4RANGE_ARRAY, "int4range"),
    b!(NUMRANGE, "numrange", NUMRANGE_ARRAY, "numrange"),
    b!(TSRANGE, "tsrange", TSRANGE_ARRAY, "tsrange"),
    b!(TSTZRANGE, "tstzrange", TSTZRANGE_ARRAY, "tstzrange"),
    b!(DATERANGE, "daterange", DATERANGE_ARRAY, "daterange"),
    b!(INT8RANGE, "int8range", INT8RANGE_ARRAY, "int8range"),
    b!(
        INT4MULTIRANGE,
        "int4multirange",
        INT4MULTIRANGE_ARRAY,
        "int4multirange"
    ),
    b!(
        NUMMULTIRANGE,
        "nummultirange",
        NUMMULTIRANGE_ARRAY,
        "nummultirange"
    ),
    b!(
        TSMULTIRANGE,
        "tsmultirange",
        TSMULTIRANGE_ARRAY,
        "tsmultirange"
    ),
    b!(
        TSTZMULTIRANGE,
        "tstzmultirange",
        TSTZMULTIRANGE_ARRAY,
        "tstzmultirange"
    ),
    b!(
        DATEMULTIRANGE,
        "datemultirange",
        DATEMULTIRANGE_ARRAY,
        "datemultirange"
    ),
    b!(
        INT8MULTIRANGE,
        "int8multirange",
        INT8MULTIRANGE_ARRAY,
        "int8multirange"
    ),
    b!(XID8, "xid8", XID8_ARRAY, "xid8"),
];

/// The array type OID of a builtin scalar type.
pub fn array_oid(element_oid: u32) -> Option<u32> {
    BUILTINS
        .iter()
        .find(|b| b.oid == element_oid)
        .map(|b| b.array)
}

/// The element OID of a builtin array type.
pub fn element_oid(array_oid: u32) -> Option<u32> {
    BUILTINS
        .iter()
        .find(|b| b.array == array_oid)
        .map(|b| b.oid)
}

/// `(precision, scale)` of a numeric typmod, `None` for no typmod. Scale may be negative or
/// larger than precision on PG ≥ 15.
pub fn numeric_typmod(modifier: i32) -> Option<(u32, i32)> {
    if modifier < 4 {
        return None;
    }
    let m = modifier - 4;
    let precision = ((m >> 16) & 0xffff) as u32;
    // PG 15 `numeric_typmod_scale`: an 11-bit two's complement value.
    let scale = ((m & 0x7ff) ^ 1024) - 1024;
    Some((precision, scale))
}

/// The `format_type()` rendering of a builtin scalar with a typmod.
fn display_with_typmod(b: &Builtin, m: i32) -> String {
    match b.oid {
        _ if m < 0 => b.display.to_owned(),
        oid::NUMERIC => match numeric_typmod(m) {
            Some((p, s)) => format!("numeric({p},{s})"),
            None => b.display.to_owned(),
        },
        oid::VARCHAR if m >= 4 => format!("character varying({})", m - 4),
        oid::BPCHAR if m >= 4 => format!("character({})", m - 4),
        oid::BIT => format!("bit({m})"),
        oid::VARBIT => format!("bit varying({m})"),
        oid::TIME => format!("time({m}) without time zone"),
        oid::TIMETZ => format!("time({m}) with time zone"),
        oid::TIMESTAMP => format!("timestamp({m}) without time zone"),
        oid::TIMESTAMPTZ => format!("timestamp({m}) with time zone"),
        oid::INTERVAL => interval_display(m),
        _ => b.display.to_owned(),
    }
}

/// `intervaltypmodout`: fields in bits 16.., precision in the low 16 bits (0xFFFF = none).
fn interval_display(m: i32) -> String {
    const MONTH: i32 = 1 << 1;
    const YEAR: i32 = 1 << 2;
    const DAY: i32 = 1 << 3;
    const HOUR: i32 = 1 << 10;
    const MINUTE: i32 = 1 << 11;
    const SECOND: i32 = 1 << 12;
    let range = (m >> 16) & 0x7fff;
    let precision = m & 0xffff;
    let fields = match range {
        YEAR => " year",
        MONTH => " month",
        DAY => " day",
        HOUR => " hour",
        MINUTE => " minute",
        SECOND => " second",
        r if r == YEAR | MONTH => " year to month",
        r if r == DAY | HOUR => " day to hour",
        r if r == DAY | HOUR | MINUTE => " day to minute",
        r if r == DAY | HOUR | MINUTE | SECOND => " day to second",
        r if r == HOUR | MINUTE => " hour to minute",
        r if r == HOUR | MINUTE | SECOND => " hour to second",
        r if r == MINUTE | SECOND => " minute to second",
        _ => "",
    };
    if precision != 0xffff {
        format!("interval{fields}({precision})")
    } else {
        format!("interval{fields}")
    }
}

impl SourceType {
    /// A builtin scalar or array type, `None` if the OID is not a builtin this crate knows.
    /// For arrays `modifier` is the element's typmod, as in `atttypmod`.
    pub fn pg_builtin(type_oid: u32, modifier: i32) -> Option<SourceType> {
        if let Some(b) = BUILTINS.iter().find(|b| b.oid == type_oid) {
            return Some(SourceType {
                name: b.name.to_owned(),
                oid: b.oid,
                modifier,
                display: display_with_typmod(b, modifier),
                element: None,
                labels: Vec::new(),
                structure: None,
            });
        }
        let b = BUILTINS.iter().find(|b| b.array == type_oid)?;
        let element = SourceType::pg_builtin(b.oid, modifier)?;
        Some(SourceType::pg_array(
            type_oid,
            format!("_{}", b.name),
            element,
        ))
    }

    /// A builtin if known, else a type kept as text ([`SourceType::pg_other`]).
    pub fn pg(type_oid: u32, name: &str, modifier: i32) -> SourceType {
        SourceType::pg_builtin(type_oid, modifier)
            .unwrap_or_else(|| SourceType::pg_other(type_oid, name, modifier))
    }

    /// An array of `element`; `modifier` and display come from the element.
    pub fn pg_array(type_oid: u32, name: impl Into<String>, element: SourceType) -> SourceType {
        SourceType {
            name: name.into(),
            oid: type_oid,
            modifier: element.modifier,
            display: format!("{}[]", element.display),
            element: Some(Box::new(element)),
            labels: Vec::new(),
            structure: None,
        }
    }

    /// An enum with its labels (stored as Utf8, the label).
    pub fn pg_enum(type_oid: u32, name: impl Into<String>, labels: Vec<String>) -> SourceType {
        let name = name.into();
        SourceType {
            display: name.clone(),
            name,
            oid: type_oid,
            modifier: -1,
            element: None,
            labels,
            structure: None,
        }
    }

    /// A user-defined range over `subtype` (resolved: a domain as its base type), kept as its
    /// text form. `name` is `schema.type`, as pgoutput's Type message names it.
    pub fn pg_range(type_oid: u32, name: impl Into<String>, subtype: SourceType) -> SourceType {
        SourceType::pg_structured(type_oid, name, TypeStructure::Range { subtype })
    }

    /// A user-defined multirange of ranges over `subtype`, kept as its text form.
    pub fn pg_multirange(
        type_oid: u32,
        name: impl Into<String>,
        subtype: SourceType,
    ) -> SourceType {
        SourceType::pg_structured(type_oid, name, TypeStructure::Multirange { subtype })
    }

    /// A composite type with its live attributes in `attnum` order, kept as its text form.
    pub fn pg_composite(
        type_oid: u32,
        name: impl Into<String>,
        fields: Vec<CompositeField>,
    ) -> SourceType {
        SourceType::pg_structured(type_oid, name, TypeStructure::Composite { fields })
    }

    /// An array of a structured `element` (range, multirange, composite), kept as the array's
    /// text form (a Utf8 column, not a list: what the text format has always given).
    pub fn pg_structured_array(
        type_oid: u32,
        name: impl Into<String>,
        element: SourceType,
    ) -> SourceType {
        SourceType::pg_structured(type_oid, name, TypeStructure::Array { element })
    }

    fn pg_structured(type_oid: u32, name: impl Into<String>, s: TypeStructure) -> SourceType {
        let mut t = SourceType::pg_other(type_oid, name, -1);
        t.structure = Some(Box::new(s));
        t
    }

    /// Whether this is a user-defined range, multirange or composite type, or an array of one.
    pub fn is_structured(&self) -> bool {
        self.structure.is_some()
    }

    /// Any other type (composite, extension types such as citext, unknown): kept as its text
    /// form. `display` is the name; callers may overwrite it with `format_type()`'s output.
    pub fn pg_other(type_oid: u32, name: impl Into<String>, modifier: i32) -> SourceType {
        let name = name.into();
        SourceType {
            display: name.clone(),
            name,
            oid: type_oid,
            modifier,
            element: None,
            labels: Vec::new(),
            structure: None,
        }
    }
}

/// The Arrow type of a Postgres source type (the mapping table of the design doc).
pub fn arrow_type(t: &SourceType) -> DataType {
    if let Some(element) = &t.element {
        return DataType::List(Arc::new(list_item_field(element)));
    }
    match t.oid {
        oid::BOOL => DataType::Boolean,
        oid::INT2 => DataType::Int16,
        oid::INT4 => DataType::Int32,
        oid::INT8 => DataType::Int64,
        oid::OID | oid::XID => DataType::UInt32,
        oid::FLOAT4 => DataType::Float32,
        oid::FLOAT8 => DataType::Float64,
        oid::NUMERIC => numeric_arrow_type(t.modifier),
        oid::MONEY => DataType::Decimal128(19, 2),
        oid::BYTEA => DataType::Binary,
        oid::UUID => DataType::FixedSizeBinary(16),
        oid::DATE => DataType::Date32,
        oid::TIME => DataType::Time64(TimeUnit::Microsecond),
        oid::TIMESTAMP => DataType::Timestamp(TimeUnit::Microsecond, None),
        oid::TIMESTAMPTZ => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        oid::INTERVAL => DataType::Interval(IntervalUnit::MonthDayNano),
        _ => DataType::Utf8,
    }
}

/// The item field of a `List` for an array of `element` (nullable: arrays keep NULL elements).
pub fn list_item_field(element: &SourceType) -> Field {
    let dt = arrow_type(element);
    let field = Field::new("item", dt.clone(), true);
    match extension_name(element, &dt) {
        Some(ext) => {
            let mut meta = HashMap::new();
            crate::table::add_extension(&mut meta, ext);
            field.with_metadata(meta)
        }
        None => field,
    }
}

/// Decimal128 for p ≤ 38, Decimal256 for p ≤ 76, else (or no typmod, or a scale Arrow cannot
/// represent) Utf8.
pub fn numeric_arrow_type(modifier: i32) -> DataType {
    match numeric_typmod(modifier) {
        Some((p, s)) if p >= 1 && s >= 0 && s as u32 <= p => {
            if p <= 38 {
                DataType::Decimal128(p as u8, s as i8)
            } else if p <= 76 {
                DataType::Decimal256(p as u8, s as i8)
            } else {
                DataType::Utf8
            }
        }
        _ => DataType::Utf8,
    }
}

/// The canonical Arrow extension of a column, if any (`arrow.uuid`, `arrow.json`).
pub fn extension_name(t: &SourceType, data_type: &DataType) -> Option<&'static str> {
    match (t.oid, data_type) {
        _ if t.element.is_some() => None,
        (oid::UUID, DataType::FixedSizeBinary(16)) => Some("arrow.uuid"),
        (oid::JSON | oid::JSONB, DataType::Utf8) => Some("arrow.json"),
        _ => None,
    }
}

/// Whether `data_type` is the one [`arrow_type`] gives for `t` (columns built by hand may
/// differ; Utf8 is always accepted as the text form).
pub fn is_supported_mapping(t: &SourceType, data_type: &DataType) -> bool {
    *data_type == DataType::Utf8 || arrow_type(t) == *data_type
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_displays() {
        let d = |o, m| SourceType::pg_builtin(o, m).unwrap().display;
        assert_eq!(d(oid::NUMERIC, (10 << 16 | 2) + 4), "numeric(10,2)");
        assert_eq!(d(oid::NUMERIC, -1), "numeric");
        assert_eq!(d(oid::VARCHAR, 24), "character varying(20)");
        assert_eq!(d(oid::BPCHAR, 9), "character(5)");
        assert_eq!(d(oid::TIMESTAMP, 3), "timestamp(3) without time zone");
        assert_eq!(d(oid::TIMESTAMPTZ, -1), "timestamp with time zone");
        assert_eq!(d(oid::INT4_ARRAY, -1), "integer[]");
        assert_eq!(d(oid::VARCHAR_ARRAY, 24), "character varying(20)[]");
        assert_eq!(d(oid::BIT, 3), "bit(3)");
        assert_eq!(d(oid::INTERVAL, (0x7fff << 16) | 3), "interval(3)");
        assert_eq!(
            d(oid::INTERVAL, ((4 | 2) << 16) | 0xffff),
            "interval year to month"
        );
        let arr = SourceType::pg_builtin(oid::TEXT_ARRAY, -1).unwrap();
        assert_eq!(arr.name, "_text");
        assert_eq!(arr.element.unwrap().oid, oid::TEXT);
    }

    #[test]
    fn numeric_mapping() {
        let m = |p: i32, s: i32| ((p << 16) | (s & 0x7ff)) + 4;
        assert_eq!(numeric_arrow_type(m(10, 2)), DataType::Decimal128(10, 2));
        assert_eq!(numeric_arrow_type(m(38, 0)), DataType::Decimal128(38, 0));
        assert_eq!(numeric_arrow_type(m(39, 5)), DataType::Decimal256(39, 5));
        assert_eq!(numeric_arrow_type(m(76, 76)), DataType::Decimal256(76, 76));
        assert_eq!(numeric_arrow_type(m(77, 0)), DataType::Utf8);
        assert_eq!(numeric_arrow_type(m(5, -2)), DataType::Utf8);
        assert_eq!(numeric_arrow_type(m(2, 4)), DataType::Utf8);
        assert_eq!(numeric_arrow_type(-1), DataType::Utf8);
        assert_eq!(numeric_typmod(m(5, -2)), Some((5, -2)));
    }

    #[test]
    fn array_and_extension_types() {
        let t = SourceType::pg_builtin(oid::UUID_ARRAY, -1).unwrap();
        let DataType::List(item) = arrow_type(&t) else {
            panic!("list expected")
        };
        assert_eq!(item.data_type(), &DataType::FixedSizeBinary(16));
        assert_eq!(
            item.metadata()
                .get("ARROW:extension:name")
                .map(String::as_str),
            Some("arrow.uuid")
        );
        assert_eq!(element_oid(oid::INT4_ARRAY), Some(oid::INT4));
        assert_eq!(array_oid(oid::JSONB), Some(oid::JSONB_ARRAY));
    }
}
