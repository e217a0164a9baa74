//! Postgres values → Arrow: parsing the TEXT output form and the BINARY (send/recv) form of
//! every type of the mapping into Arrow builders.
//!
//! A [`ColumnBuilder`] is made for one column from its [`SourceType`] and Arrow type. Each
//! append parses the whole value *before* touching the Arrow builder, so a failed append
//! leaves the builder unchanged (arrays are parsed into a scratch list first). Values Arrow
//! cannot hold come back as a [`ValueMarker`] and the slot is null (see the design doc).
//!
//! Columns mapped to Utf8 keep the server's text form; when the wire gave the binary form it is
//! rendered to the same text (numeric, timetz, inet/cidr, macaddr, bit, text types, jsonb,
//! geometric types, builtin ranges and multiranges...). User-defined ranges, multiranges and
//! composite types (and arrays of them) render through the types the catalog says they are
//! made of ([`SourceType::structure`], see `structured.rs`). Binary forms of unknown types
//! (extension types other than citext, and structured types containing one) are not rendered:
//! they fail with [`ValueError::BinaryUnsupported`] and the source must use the text format.
//!
//! # Traps
//! - The text forms depend on session settings. The source must run with `DateStyle=ISO`,
//!   `IntervalStyle=postgres`, `TimeZone=UTC` (any offset is parsed, but UTC avoids
//!   seconds-precision LMT offsets), `extra_float_digits=3` (PG < 12 rounds floats otherwise),
//!   `bytea_output=hex` (the escape form is parsed too) and a `lc_monetary` whose money format
//!   is `$1,234.56` (C or en_US).
//! - Timestamps use µs since 2000-01-01 on the wire; Arrow uses the Unix epoch. The last
//!   ~30 years before Postgres' maximum (294276 AD) do not fit i64 µs since 1970: error.
//! - Interval microseconds × 1000 must fit i64 nanoseconds (|time part| < ~106 751 days): error
//!   otherwise.
//! - numeric NaN/±Infinity in a decimal column: null + marker. Inside an array, the whole array
//!   is null and the marker's `detail` holds the array's text form.

mod array;
mod binary;
mod datetime;
mod geometric;
mod net;
mod numeric;
mod range;
mod ryu;
mod storage;
mod structured;
mod text;

use std::borrow::Cow;
use std::sync::Arc;

use arrow_array::ArrayRef;
use arrow_buffer::{i256, IntervalMonthDayNano, NullBufferBuilder};
use arrow_schema::{DataType, FieldRef};

use storage::{fits_offsets, Storage};

use crate::batch::MarkerKind;
use crate::error::ValueError;
use crate::pg_types::{self, oid};
use crate::table::SourceType;

pub use datetime::{civil_from_days, days_from_civil, PG_EPOCH_DAYS, PG_EPOCH_US};
pub use numeric::render_numeric_binary;

/// A marker produced by an append: the slot is null (except `ArrayDims`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueMarker {
    pub kind: MarkerKind,
    pub detail: Option<String>,
}

/// How a source type's values are parsed (by OID; enums and citext are text).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    Int2,
    Int4,
    Int8,
    Oid,
    Float4,
    Float8,
    Numeric,
    Money,
    Text,
    Char,
    Bytea,
    Uuid,
    Json,
    Jsonb,
    Date,
    Time,
    TimeTz,
    Timestamp,
    TimestampTz,
    Interval,
    Inet,
    Cidr,
    MacAddr,
    MacAddr8,
    Bit,
    /// Geometric types (Utf8, the text form).
    Geo(Geo),
    /// Builtin ranges (Utf8, the text form).
    Range(RangeSub),
    /// Builtin multiranges (Utf8, the text form).
    Multirange(RangeSub),
    /// Unknown types: text only. (User-defined ranges, multiranges and composites are this
    /// kind too; their binary form is rendered by `structured` from [`SourceType::structure`].)
    Other,
}

/// The geometric types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Geo {
    Point,
    Line,
    Lseg,
    Box,
    Path,
    Polygon,
    Circle,
}

/// The subtypes of the builtin ranges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RangeSub {
    Int4,
    Int8,
    Numeric,
    Date,
    Timestamp,
    TimestampTz,
}

impl Kind {
    pub(crate) fn of(t: &SourceType) -> Kind {
        match t.oid {
            oid::BOOL => Kind::Bool,
            oid::INT2 => Kind::Int2,
            oid::INT4 => Kind::Int4,
            oid::INT8 => Kind::Int8,
            oid::OID | oid::XID => Kind::Oid,
            oid::FLOAT4 => Kind::Float4,
            oid::FLOAT8 => Kind::Float8,
            oid::NUMERIC => Kind::Numeric,
            oid::MONEY => Kind::Money,
            oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME | oid::XML | oid::UNKNOWN => {
                Kind::Text
            }
            oid::CHAR => Kind::Char,
            oid::BYTEA => Kind::Bytea,
            oid::UUID => Kind::Uuid,
            oid::JSON => Kind::Json,
            oid::JSONB => Kind::Jsonb,
            oid::DATE => Kind::Date,
            oid::TIME => Kind::Time,
            oid::TIMETZ => Kind::TimeTz,
            oid::TIMESTAMP => Kind::Timestamp,
            oid::TIMESTAMPTZ => Kind::TimestampTz,
            oid::INTERVAL => Kind::Interval,
            oid::INET => Kind::Inet,
            oid::CIDR => Kind::Cidr,
            oid::MACADDR => Kind::MacAddr,
            oid::MACADDR8 => Kind::MacAddr8,
            oid::BIT | oid::VARBIT => Kind::Bit,
            oid::POINT => Kind::Geo(Geo::Point),
            oid::LINE => Kind::Geo(Geo::Line),
            oid::LSEG => Kind::Geo(Geo::Lseg),
            oid::BOX => Kind::Geo(Geo::Box),
            oid::PATH => Kind::Geo(Geo::Path),
            oid::POLYGON => Kind::Geo(Geo::Polygon),
            oid::CIRCLE => Kind::Geo(Geo::Circle),
            oid::INT4RANGE => Kind::Range(RangeSub::Int4),
            oid::INT8RANGE => Kind::Range(RangeSub::Int8),
            oid::NUMRANGE => Kind::Range(RangeSub::Numeric),
            oid::DATERANGE => Kind::Range(RangeSub::Date),
            oid::TSRANGE => Kind::Range(RangeSub::Timestamp),
            oid::TSTZRANGE => Kind::Range(RangeSub::TimestampTz),
            oid::INT4MULTIRANGE => Kind::Multirange(RangeSub::Int4),
            oid::INT8MULTIRANGE => Kind::Multirange(RangeSub::Int8),
            oid::NUMMULTIRANGE => Kind::Multirange(RangeSub::Numeric),
            oid::DATEMULTIRANGE => Kind::Multirange(RangeSub::Date),
            oid::TSMULTIRANGE => Kind::Multirange(RangeSub::Timestamp),
            oid::TSTZMULTIRANGE => Kind::Multirange(RangeSub::TimestampTz),
            // Enums and citext send their text in binary too (citext by its name, bare or
            // `schema.citext` as the catalog and pgoutput's Type message qualify it).
            _ if !t.labels.is_empty() || t.name.rsplit('.').next() == Some("citext") => Kind::Text,
            _ => Kind::Other,
        }
    }

    /// Name used in errors.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Bool => "bool",
            Kind::Int2 => "int2",
            Kind::Int4 => "int4",
            Kind::Int8 => "int8",
            Kind::Oid => "oid",
            Kind::Float4 => "float4",
            Kind::Float8 => "float8",
            Kind::Numeric => "numeric",
            Kind::Money => "money",
            Kind::Text => "text",
            Kind::Char => "char",
            Kind::Bytea => "bytea",
            Kind::Uuid => "uuid",
            Kind::Json => "json",
            Kind::Jsonb => "jsonb",
            Kind::Date => "date",
            Kind::Time => "time",
            Kind::TimeTz => "timetz",
            Kind::Timestamp => "timestamp",
            Kind::TimestampTz => "timestamptz",
            Kind::Interval => "interval",
            Kind::Inet => "inet",
            Kind::Cidr => "cidr",
            Kind::MacAddr => "macaddr",
            Kind::MacAddr8 => "macaddr8",
            Kind::Bit => "bit",
            Kind::Geo(g) => g.name(),
            Kind::Range(r) => r.range_name(),
            Kind::Multirange(r) => r.multirange_name(),
            Kind::Other => "other",
        }
    }
}

/// What the column stores a value as, where parsing depends on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// The type's own Arrow mapping.
    Native,
    /// Utf8: keep (or render) the text form.
    Text,
    Decimal128 {
        precision: u8,
        scale: i8,
    },
    Decimal256 {
        precision: u8,
        scale: i8,
    },
}

/// A parsed value, ready to append.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Scalar<'a> {
    Bool(bool),
    I16(i16),
    I32(i32),
    I64(i64),
    U32(u32),
    F32(f32),
    F64(f64),
    Dec128(i128),
    Dec256(i256),
    Str(Cow<'a, str>),
    Bytes(Cow<'a, [u8]>),
    Uuid([u8; 16]),
    /// Days since 1970-01-01.
    Date(i32),
    /// µs since midnight.
    Time(i64),
    /// µs since the Unix epoch.
    Timestamp(i64),
    Interval(IntervalMonthDayNano),
}

/// A value or a special that Arrow cannot hold.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Parsed<'a> {
    Value(Scalar<'a>),
    Special(MarkerKind),
}

impl Scalar<'_> {
    /// Bytes a string or binary value adds to its column (0 for the others).
    fn byte_len(&self) -> usize {
        match self {
            Scalar::Str(s) => s.len(),
            Scalar::Bytes(b) => b.len(),
            _ => 0,
        }
    }
}

impl Parsed<'_> {
    fn byte_len(&self) -> usize {
        match self {
            Parsed::Value(v) => v.byte_len(),
            Parsed::Special(_) => 0,
        }
    }
}

/// A string/binary column of one batch would pass 2 GiB: Arrow's i32 offsets cannot hold it
/// (its builder panics). The decoders close batches well before ([`crate::ChangeBatchBuilder`]
/// byte sizes), so this is reached only by a single batch built past that by hand.
fn too_many_bytes() -> ValueError {
    ValueError::OutOfRange {
        type_name: "string or binary",
        target: "an Arrow Utf8/Binary column (i32 offsets)".into(),
        reason: "more than 2 GiB of data in one column of one batch",
    }
}

#[derive(Debug)]
struct ListStorage {
    field: FieldRef,
    offsets: Vec<i32>,
    nulls: NullBufferBuilder,
    values: ColumnBuilder,
}

/// Builds one Arrow column from Postgres values.
#[derive(Debug)]
pub struct ColumnBuilder {
    kind: Kind,
    target: Target,
    storage: Storage,
    /// Box delimiter `;` for `box[]`, else `,`.
    delimiter: u8,
    /// `Some` when the Arrow type cannot hold this source type: every non-null append fails.
    mismatch: Option<ValueError>,
    type_display: String,
    /// A user-defined range, multirange or composite (or array of one) kept as text: its
    /// binary form is rendered through the types it is made of.
    structured: Option<Arc<SourceType>>,
}

impl ColumnBuilder {
    /// A builder for values of `source_type` stored as `data_type`.
    pub fn new(source_type: &SourceType, data_type: &DataType, capacity: usize) -> Self {
        let kind = Kind::of(source_type);
        let storage = Storage::new(source_type, data_type, capacity);
        let target = match data_type {
            DataType::Utf8 => Target::Text,
            DataType::Decimal128(p, s) => Target::Decimal128 {
                precision: *p,
                scale: *s,
            },
            DataType::Decimal256(p, s) => Target::Decimal256 {
                precision: *p,
                scale: *s,
            },
            _ => Target::Native,
        };
        let supported = !matches!(storage, Storage::Null { .. })
            && pg_types::is_supported_mapping(source_type, data_type)
            && !(matches!(storage, Storage::List(_)) && source_type.element.is_none());
        let mismatch = (!supported).then(|| ValueError::TypeMismatch {
            type_name: source_type.display.clone(),
            data_type: data_type.to_string(),
        });
        let delimiter = match source_type.element.as_deref() {
            Some(e) if e.oid == oid::BOX => b';',
            _ => b',',
        };
        ColumnBuilder {
            kind,
            target,
            storage,
            delimiter,
            mismatch,
            type_display: source_type.display.clone(),
            structured: source_type
                .structure
                .is_some()
                .then(|| Arc::new(source_type.clone())),
        }
    }

    /// Whether [`append_binary`](Self::append_binary) parses this column's binary form (for
    /// arrays: the element's). Readers that can choose (a snapshot's `COPY ... (FORMAT
    /// binary)`) send the other columns as text (`col::text`, then `append_text`).
    pub fn binary_supported(&self) -> bool {
        if self.mismatch.is_some() {
            return false;
        }
        match (&self.storage, &self.structured) {
            (Storage::List(list), _) => list.values.binary_supported(),
            (_, Some(t)) => self.target == Target::Text && structured::supported(t),
            _ => binary::supported(self.kind, self.target),
        }
    }

    /// The source type's display form (for errors).
    pub fn type_display(&self) -> &str {
        &self.type_display
    }

    /// Appends a value given in the text output form.
    pub fn append_text(&mut self, bytes: &[u8]) -> Result<Option<ValueMarker>, ValueError> {
        if let Some(e) = &self.mismatch {
            return Err(e.clone());
        }
        if let Storage::List(list) = &mut self.storage {
            return list.append_text(bytes, self.delimiter);
        }
        let parsed = text::parse(self.kind, self.target, bytes)?;
        self.push(parsed)
    }

    /// Appends a value given in the binary (send/recv) form.
    pub fn append_binary(&mut self, bytes: &[u8]) -> Result<Option<ValueMarker>, ValueError> {
        if let Some(e) = &self.mismatch {
            return Err(e.clone());
        }
        if let Storage::List(list) = &mut self.storage {
            return list.append_binary(bytes);
        }
        let parsed = self.parse_binary(bytes)?;
        self.push(parsed)
    }

    /// One value's binary form parsed for this column (no append).
    fn parse_binary<'a>(&self, bytes: &'a [u8]) -> Result<Parsed<'a>, ValueError> {
        match &self.structured {
            // Structured types map to Utf8 only (`mismatch` catches any other Arrow type).
            Some(t) => Ok(Parsed::Value(Scalar::Str(Cow::Owned(structured::render(
                t, bytes,
            )?)))),
            None => {
                binary::parse(self.kind, self.target, bytes).map_err(|e| self.with_type_name(e))
            }
        }
    }

    /// Puts the source type's display name into a [`ValueError::BinaryUnsupported`].
    fn with_type_name(&self, e: ValueError) -> ValueError {
        match e {
            ValueError::BinaryUnsupported { .. } => ValueError::BinaryUnsupported {
                type_name: self.type_display.clone(),
            },
            e => e,
        }
    }

    /// Appends a NULL (also used for unchanged and special values).
    pub fn append_null(&mut self) {
        self.storage.append_null();
    }

    /// Number of values appended since the last `finish`.
    pub fn len(&self) -> usize {
        self.storage.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The built array; the builder is reset.
    pub fn finish(&mut self) -> ArrayRef {
        self.storage.finish()
    }

    fn push(&mut self, parsed: Parsed<'_>) -> Result<Option<ValueMarker>, ValueError> {
        match parsed {
            Parsed::Special(kind) => {
                self.storage.append_null();
                Ok(Some(ValueMarker { kind, detail: None }))
            }
            Parsed::Value(v) => {
                if !fits_offsets(self.storage.value_bytes(), v.byte_len()) {
                    return Err(too_many_bytes());
                }
                self.storage
                    .append(v)
                    .map_err(|()| ValueError::TypeMismatch {
                        type_name: self.type_display.clone(),
                        data_type: self.storage.type_name(),
                    })?;
                Ok(None)
            }
        }
    }

    /// Parses one array element given as text (no append).
    fn parse_element_text<'a>(&self, s: &'a str) -> Result<Parsed<'a>, ValueError> {
        if let Some(e) = &self.mismatch {
            return Err(e.clone());
        }
        text::parse(self.kind, self.target, s.as_bytes())
    }

    fn parse_element_binary<'a>(&self, b: &'a [u8]) -> Result<Parsed<'a>, ValueError> {
        if let Some(e) = &self.mismatch {
            return Err(e.clone());
        }
        self.parse_binary(b)
    }
}

impl ListStorage {
    fn append_text(&mut self, bytes: &[u8], delim: u8) -> Result<Option<ValueMarker>, ValueError> {
        let s = text::utf8(bytes)?;
        let arr = array::parse_text_array(s, delim)?;
        let mut parsed = Vec::with_capacity(arr.elements.len());
        for e in &arr.elements {
            parsed.push(match e {
                Some(v) => Some(self.values.parse_element_text(v)?),
                None => None,
            });
        }
        self.finish_value(parsed, &arr.dims, || s.to_owned())
    }

    fn append_binary(&mut self, bytes: &[u8]) -> Result<Option<ValueMarker>, ValueError> {
        let arr = array::parse_binary_array(bytes)?;
        let mut parsed = Vec::with_capacity(arr.elements.len());
        for e in &arr.elements {
            parsed.push(match e {
                Some(v) => Some(self.values.parse_element_binary(v)?),
                None => None,
            });
        }
        let kind = self.values.kind;
        let structured = self.values.structured.clone();
        let delim = b',';
        let render = || {
            array::render_binary_array_text(&arr, delim, |b| match structured.as_deref() {
                Some(t) => structured::render(t, b).map(Cow::Owned),
                None => binary::render_text(kind, b),
            })
            .unwrap_or_default()
        };
        self.finish_value(parsed, &arr.dims, render)
    }

    /// Appends parsed elements (or a null list with a marker if one is special).
    fn finish_value(
        &mut self,
        parsed: Vec<Option<Parsed<'_>>>,
        dims: &[array::Dim],
        render: impl FnOnce() -> String,
    ) -> Result<Option<ValueMarker>, ValueError> {
        let special = parsed.iter().find_map(|p| match p {
            Some(Parsed::Special(k)) => Some(*k),
            _ => None,
        });
        if let Some(kind) = special {
            self.append_null();
            return Ok(Some(ValueMarker {
                kind,
                detail: Some(render()),
            }));
        }
        // All elements or none: a failed push would leave the list's offsets behind its values.
        let bytes: usize = parsed.iter().flatten().map(Parsed::byte_len).sum();
        if !fits_offsets(self.values.storage.value_bytes(), bytes) {
            return Err(too_many_bytes());
        }
        let last = self.offsets.last().copied().unwrap_or(0);
        let end = i32::try_from(parsed.len())
            .ok()
            .and_then(|n| last.checked_add(n))
            .ok_or_else(|| ValueError::OutOfRange {
                type_name: "array",
                target: "a List batch".into(),
                reason: "more than 2^31 elements in one batch",
            })?;
        for p in parsed {
            match p {
                Some(p) => {
                    self.values.push(p)?;
                }
                None => self.values.append_null(),
            }
        }
        self.offsets.push(end);
        self.nulls.append_non_null();
        Ok(array::dims_marker(dims))
    }

    fn append_null(&mut self) {
        let last = self.offsets.last().copied().unwrap_or(0);
        self.offsets.push(last);
        self.nulls.append_null();
    }
}
