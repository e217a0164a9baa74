//! Change batches: one Arrow `RecordBatch` of rows of one table and schema version.
//!
//! The layout (column order, types, marker semantics) is the contract of
//! `docs/design/change-model.md`; [`ChangeBatch::try_new`] checks it so the accessors here can
//! rely on it.
//!
//! # Traps
//! - A null slot in `before`/`after` with an `Unchanged` marker is *not* NULL: the source did
//!   not send the value (Postgres unchanged TOAST). Sinks must keep the stored value.
//! - `ArrayDims` is the one marker whose slot is not null: the list holds the elements in
//!   row-major order and the marker's `detail` their dimensions (`[1:2][1:3]`).

use std::fmt;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{TimestampMicrosecondType, UInt32Type, UInt64Type, UInt8Type};
use arrow_array::{Array, RecordBatch, StructArray};

use crate::error::ModelError;
use crate::position::Position;
use crate::table::{columns, TableSchema};

/// The kind of change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Op {
    /// A snapshot row (Debezium `r`).
    Read = 0,
    Insert = 1,
    Update = 2,
    Delete = 3,
    Truncate = 4,
}

impl Op {
    /// Debezium's `op` field: `r`, `c`, `u`, `d`, `t`.
    pub fn debezium_code(self) -> &'static str {
        match self {
            Op::Read => "r",
            Op::Insert => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Truncate => "t",
        }
    }

    /// The `_op` value.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// Inverse of [`Op::as_u8`].
    pub fn from_u8(v: u8) -> Option<Op> {
        Some(match v {
            0 => Op::Read,
            1 => Op::Insert,
            2 => Op::Update,
            3 => Op::Delete,
            4 => Op::Truncate,
            _ => return None,
        })
    }
}

impl TryFrom<u8> for Op {
    type Error = u8;
    fn try_from(v: u8) -> Result<Self, u8> {
        Op::from_u8(v).ok_or(v)
    }
}

/// Which row image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Image {
    Before = 0,
    After = 1,
}

impl Image {
    pub fn from_u8(v: u8) -> Option<Image> {
        match v {
            0 => Some(Image::Before),
            1 => Some(Image::After),
            _ => None,
        }
    }
}

impl fmt::Display for Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Image::Before => "before",
            Image::After => "after",
        })
    }
}

/// Why a value is marked (see the design doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MarkerKind {
    /// Not sent by the source (unchanged TOAST): keep the stored value, never read as NULL.
    Unchanged = 0,
    NaN = 1,
    PosInfinity = 2,
    NegInfinity = 3,
    /// A multi-dimensional array or one with lower bounds other than 1; `detail` holds the
    /// dimension decoration, the list holds the elements row-major.
    ArrayDims = 4,
    /// A value the source stored that its type cannot hold (MySQL zero or partial dates such
    /// as `0000-00-00`): the slot is null, `detail` holds the source's text form.
    Invalid = 5,
    /// A MySQL geometry's non-zero SRID: the slot holds the WKB (not null), `detail` the SRID.
    Srid = 6,
}

impl MarkerKind {
    pub fn from_u8(v: u8) -> Option<MarkerKind> {
        Some(match v {
            0 => MarkerKind::Unchanged,
            1 => MarkerKind::NaN,
            2 => MarkerKind::PosInfinity,
            3 => MarkerKind::NegInfinity,
            4 => MarkerKind::ArrayDims,
            5 => MarkerKind::Invalid,
            6 => MarkerKind::Srid,
            _ => return None,
        })
    }
}

/// One `_markers` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Marker {
    pub image: Image,
    /// Index into `TableSchema::columns`.
    pub column: u32,
    pub kind: MarkerKind,
    /// `ArrayDims`: the decoration (`[1:2][1:3]`). A special numeric inside an array: the
    /// array's Postgres text form (the slot is null).
    pub detail: Option<String>,
}

/// Rows of one table and schema version.
#[derive(Clone, Debug)]
pub struct ChangeBatch {
    pub schema: Arc<TableSchema>,
    pub batch: RecordBatch,
}

impl ChangeBatch {
    /// This batch with `entries` added to its Arrow schema's metadata (source details the
    /// encoders read, such as the MySQL binlog file). The columns are unchanged, so nothing is
    /// validated again.
    pub fn with_metadata(
        self,
        entries: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ModelError> {
        let mut md = self.batch.schema().metadata().clone();
        md.extend(entries);
        let arrow = Arc::new(self.batch.schema().as_ref().clone().with_metadata(md));
        let batch = RecordBatch::try_new(arrow, self.batch.columns().to_vec()).map_err(|e| {
            ModelError::InvalidBatch {
                table: self.schema.table.clone(),
                reason: format!("schema metadata: {e}"),
            }
        })?;
        Ok(ChangeBatch {
            schema: self.schema,
            batch,
        })
    }

    /// Checks that `batch` has the change batch layout of `schema` (the exact Arrow schema,
    /// valid ops, decodable positions, valid markers).
    pub fn try_new(schema: Arc<TableSchema>, batch: RecordBatch) -> Result<Self, ModelError> {
        let table = schema.table.clone();
        let bad = |reason: String| ModelError::InvalidBatch {
            table: table.clone(),
            reason,
        };
        if batch.schema().fields() != schema.arrow.fields() {
            return Err(bad("Arrow schema differs from the table schema".into()));
        }
        let ops = batch.column(columns::OP_INDEX).as_primitive::<UInt8Type>();
        let pos = batch.column(columns::POSITION_INDEX).as_binary::<i32>();
        for i in 0..batch.num_rows() {
            if ops.is_null(i) || Op::from_u8(ops.value(i)).is_none() {
                return Err(bad(format!("row {i}: invalid _op")));
            }
            if pos.is_null(i) {
                return Err(bad(format!("row {i}: null _position")));
            }
            Position::from_bytes(pos.value(i)).map_err(|e| bad(format!("row {i}: {e}")))?;
        }
        let cb = ChangeBatch { schema, batch };
        cb.check_markers().map_err(bad)?;
        Ok(cb)
    }

    fn check_markers(&self) -> Result<(), String> {
        let list = self.batch.column(columns::MARKERS_INDEX).as_list::<i32>();
        let entries = list.values().as_struct();
        let image = entries.column(0).as_primitive::<UInt8Type>();
        let column = entries.column(1).as_primitive::<UInt32Type>();
        let kind = entries.column(2).as_primitive::<UInt8Type>();
        let ncols = self.schema.columns.len();
        for i in 0..entries.len() {
            if Image::from_u8(image.value(i)).is_none()
                || MarkerKind::from_u8(kind.value(i)).is_none()
                || column.value(i) as usize >= ncols
            {
                return Err(format!("marker entry {i} is invalid"));
            }
        }
        Ok(())
    }

    pub fn num_rows(&self) -> usize {
        self.batch.num_rows()
    }

    pub fn is_empty(&self) -> bool {
        self.batch.num_rows() == 0
    }

    /// The op of row `i`. Panics if `i >= num_rows()`.
    pub fn op(&self, i: usize) -> Op {
        let v = self
            .batch
            .column(columns::OP_INDEX)
            .as_primitive::<UInt8Type>()
            .value(i);
        Op::from_u8(v).expect("ops are validated when the batch is built")
    }

    /// The position of row `i`. Panics if `i >= num_rows()`.
    pub fn position(&self, i: usize) -> Position {
        let bytes = self
            .batch
            .column(columns::POSITION_INDEX)
            .as_binary::<i32>()
            .value(i);
        Position::from_bytes(bytes).expect("positions are validated when the batch is built")
    }

    /// Position of the first row, `None` when empty.
    pub fn first_position(&self) -> Option<Position> {
        (!self.is_empty()).then(|| self.position(0))
    }

    /// Position of the last row, `None` when empty.
    pub fn last_position(&self) -> Option<Position> {
        self.num_rows().checked_sub(1).map(|i| self.position(i))
    }

    /// The source transaction id of row `i`.
    pub fn txid(&self, i: usize) -> Option<u64> {
        let a = self
            .batch
            .column(columns::TXID_INDEX)
            .as_primitive::<UInt64Type>();
        a.is_valid(i).then(|| a.value(i))
    }

    /// The commit time of row `i`, µs since the Unix epoch.
    pub fn commit_ts_us(&self, i: usize) -> Option<i64> {
        let a = self
            .batch
            .column(columns::COMMIT_TS_INDEX)
            .as_primitive::<TimestampMicrosecondType>();
        a.is_valid(i).then(|| a.value(i))
    }

    /// The `before` struct column.
    pub fn before(&self) -> &StructArray {
        self.batch.column(columns::BEFORE_INDEX).as_struct()
    }

    /// The `after` struct column.
    pub fn after(&self) -> &StructArray {
        self.batch.column(columns::AFTER_INDEX).as_struct()
    }

    /// The struct column of an image.
    pub fn image(&self, image: Image) -> &StructArray {
        match image {
            Image::Before => self.before(),
            Image::After => self.after(),
        }
    }

    /// Whether row `i` has any markers.
    pub fn has_markers(&self, i: usize) -> bool {
        self.batch.column(columns::MARKERS_INDEX).is_valid(i)
    }

    /// The markers of row `i` (empty when none).
    pub fn markers(&self, i: usize) -> Vec<Marker> {
        let list = self.batch.column(columns::MARKERS_INDEX).as_list::<i32>();
        if list.is_null(i) {
            return Vec::new();
        }
        let offsets = list.value_offsets();
        let (start, end) = (offsets[i] as usize, offsets[i + 1] as usize);
        let entries = list.values().as_struct();
        let image = entries.column(0).as_primitive::<UInt8Type>();
        let column = entries.column(1).as_primitive::<UInt32Type>();
        let kind = entries.column(2).as_primitive::<UInt8Type>();
        let detail = entries.column(3).as_string::<i32>();
        (start..end)
            .map(|j| Marker {
                image: Image::from_u8(image.value(j)).expect("validated marker image"),
                column: column.value(j),
                kind: MarkerKind::from_u8(kind.value(j)).expect("validated marker kind"),
                detail: detail.is_valid(j).then(|| detail.value(j).to_owned()),
            })
            .collect()
    }

    /// The marker of one value, if any.
    pub fn marker(&self, i: usize, image: Image, column: usize) -> Option<Marker> {
        if !self.has_markers(i) {
            return None;
        }
        self.markers(i)
            .into_iter()
            .find(|m| m.image == image && m.column as usize == column)
    }

    /// Whether the value was not sent by the source (unchanged TOAST).
    pub fn is_unchanged(&self, i: usize, image: Image, column: usize) -> bool {
        self.marker(i, image, column)
            .is_some_and(|m| m.kind == MarkerKind::Unchanged)
    }

    /// Approximate memory size of the batch in bytes.
    pub fn byte_size(&self) -> usize {
        self.batch.get_array_memory_size()
    }
}
