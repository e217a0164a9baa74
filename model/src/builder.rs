//! [`ChangeBatchBuilder`]: decoders fill a change batch row by row, straight from the bytes of
//! the wire (text or binary), without intermediate row structs.
//!
//! ```text
//! begin_row(op, position, txid, commit_ts)
//!   before: image_null | untouched (= null) | every column once: append_{text,binary,null,unchanged}
//!   after:  same
//! finish_row()            ... repeat ...            finish() -> ChangeBatch
//! ```
//!
//! An image that was started must get every column exactly once (in any order). After any
//! error the builder is *poisoned*: values of the failed row may already sit in the column
//! builders, so every later call fails. Errors are definite anyway; the decoder stops.

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, StringBuilder, TimestampMicrosecondBuilder, UInt32Builder, UInt64Builder,
    UInt8Builder,
};
use arrow_array::{ArrayRef, ListArray, RecordBatch, StructArray};
use arrow_buffer::{NullBufferBuilder, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field};

use crate::batch::{ChangeBatch, Image, MarkerKind, Op};
use crate::error::{ModelError, ValueError};
use crate::mysql_value::{MysqlColumnBuilder, MysqlValue};
use crate::pg_value::{ColumnBuilder, ValueMarker};
use crate::position::Position;
use crate::table::{commit_ts_type, marker_fields, TableSchema};

/// Per-value overhead used by [`ChangeBatchBuilder::byte_size`] (offsets, validity, slack).
const VALUE_OVERHEAD: usize = 8;
/// Per-row overhead: system columns.
const ROW_OVERHEAD: usize = 48;

struct ImageBuilder {
    columns: Vec<AnyColumn>,
    validity: NullBufferBuilder,
    /// Columns given in the current row.
    set: Vec<bool>,
    filled: usize,
    explicit_null: bool,
    /// Null rows not yet appended to the column builders: a run of null images (every
    /// snapshot row's `before`, every delete's `after`) goes in with one `append_nulls` per
    /// column when the next value or `finish` needs it, not one call per column and row.
    pending_nulls: usize,
}

impl ImageBuilder {
    fn new(schema: &TableSchema, capacity: usize) -> Self {
        ImageBuilder {
            columns: schema
                .columns
                .iter()
                .map(|c| AnyColumn::new(c, capacity))
                .collect(),
            validity: NullBufferBuilder::new(capacity),
            set: vec![false; schema.columns.len()],
            filled: 0,
            explicit_null: false,
            pending_nulls: 0,
        }
    }

    /// Appends the pending null rows to the column builders.
    fn flush_nulls(&mut self) {
        let n = std::mem::take(&mut self.pending_nulls);
        if n > 0 {
            self.columns.iter_mut().for_each(|c| c.append_nulls(n));
        }
    }

    fn touched(&self) -> bool {
        self.filled > 0
    }

    fn finish_row(&mut self) {
        if self.explicit_null || !self.touched() {
            self.pending_nulls += 1;
            self.validity.append_null();
        } else {
            self.validity.append_non_null();
        }
        self.set.iter_mut().for_each(|s| *s = false);
        self.filled = 0;
        self.explicit_null = false;
    }
}

struct MarkersBuilder {
    image: UInt8Builder,
    column: UInt32Builder,
    kind: UInt8Builder,
    detail: StringBuilder,
    offsets: Vec<i32>,
    validity: NullBufferBuilder,
    in_row: usize,
}

impl MarkersBuilder {
    fn push(&mut self, image: Image, column: usize, m: ValueMarker) {
        self.image.append_value(image as u8);
        // INVARIANT: column < number of columns, checked by the caller; tables have < 2^32.
        self.column.append_value(column as u32);
        self.kind.append_value(m.kind as u8);
        self.detail.append_option(m.detail);
        self.in_row += 1;
    }

    fn finish_row(&mut self) {
        let last = self.offsets.last().copied().unwrap_or(0);
        // INVARIANT: fewer than 2^31 markers per batch (at most 2 per column per row).
        self.offsets.push(last + self.in_row as i32);
        if self.in_row > 0 {
            self.validity.append_non_null();
        } else {
            self.validity.append_null();
        }
        self.in_row = 0;
    }

    fn finish(&mut self) -> Result<ArrayRef, arrow_schema::ArrowError> {
        let entries = StructArray::try_new(
            marker_fields(),
            vec![
                Arc::new(self.image.finish()),
                Arc::new(self.column.finish()),
                Arc::new(self.kind.finish()),
                Arc::new(self.detail.finish()),
            ],
            None,
        )?;
        let offsets = std::mem::replace(&mut self.offsets, vec![0]);
        let item = Field::new("item", DataType::Struct(marker_fields()), false);
        Ok(Arc::new(ListArray::try_new(
            Arc::new(item),
            OffsetBuffer::new(ScalarBuffer::from(offsets)),
            Arc::new(entries),
            self.validity.finish(),
        )?))
    }
}

struct PendingRow {
    op: Op,
    position: Position,
    txid: Option<u64>,
    commit_ts_us: Option<i64>,
}

/// Builds a [`ChangeBatch`] row by row (see the module doc).
pub struct ChangeBatchBuilder {
    schema: Arc<TableSchema>,
    ops: UInt8Builder,
    positions: BinaryBuilder,
    txids: UInt64Builder,
    commit_ts: TimestampMicrosecondBuilder,
    images: [ImageBuilder; 2],
    markers: MarkersBuilder,
    row: Option<PendingRow>,
    position_buf: Vec<u8>,
    /// The position `position_buf` holds the bytes of: the rows of a snapshot chunk share
    /// one, written once.
    position_of_buf: Option<Position>,
    rows: usize,
    bytes: usize,
    poisoned: bool,
}

impl ChangeBatchBuilder {
    pub fn new(schema: Arc<TableSchema>, capacity: usize) -> Self {
        ChangeBatchBuilder {
            ops: UInt8Builder::with_capacity(capacity),
            positions: BinaryBuilder::with_capacity(capacity, capacity * 21),
            txids: UInt64Builder::with_capacity(capacity),
            commit_ts: TimestampMicrosecondBuilder::with_capacity(capacity)
                .with_data_type(commit_ts_type()),
            images: [
                ImageBuilder::new(&schema, capacity),
                ImageBuilder::new(&schema, capacity),
            ],
            markers: MarkersBuilder {
                image: UInt8Builder::new(),
                column: UInt32Builder::new(),
                kind: UInt8Builder::new(),
                detail: StringBuilder::new(),
                offsets: vec![0],
                validity: NullBufferBuilder::new(capacity),
                in_row: 0,
            },
            row: None,
            position_buf: Vec::with_capacity(21),
            position_of_buf: None,
            rows: 0,
            bytes: 0,
            poisoned: false,
            schema,
        }
    }

    pub fn schema(&self) -> &Arc<TableSchema> {
        &self.schema
    }

    /// Finished rows since the last `finish`.
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Approximate size in bytes of the rows so far (input bytes plus overhead).
    pub fn byte_size(&self) -> usize {
        self.bytes
    }

    fn state_err(&self, detail: &'static str) -> ModelError {
        ModelError::RowState {
            table: self.schema.table.clone(),
            detail,
        }
    }

    fn check_usable(&self) -> Result<(), ModelError> {
        if self.poisoned {
            return Err(self.state_err("builder unusable after an earlier error"));
        }
        Ok(())
    }

    /// Starts a row.
    pub fn begin_row(
        &mut self,
        op: Op,
        position: &Position,
        txid: Option<u64>,
        commit_ts_us: Option<i64>,
    ) -> Result<(), ModelError> {
        self.check_usable()?;
        if self.row.is_some() {
            self.poisoned = true;
            return Err(self.state_err("begin_row while a row is open"));
        }
        self.row = Some(PendingRow {
            op,
            position: *position,
            txid,
            commit_ts_us,
        });
        Ok(())
    }

    /// Declares an image null (e.g. the old image of an insert; also the default when an
    /// image is never touched).
    pub fn image_null(&mut self, image: Image) -> Result<(), ModelError> {
        self.check_usable()?;
        if self.row.is_none() {
            return Err(self.fail("image_null outside a row"));
        }
        let ib = &mut self.images[image as usize];
        if ib.touched() {
            return Err(self.fail("image_null after values of the same image"));
        }
        ib.explicit_null = true;
        Ok(())
    }

    fn fail(&mut self, detail: &'static str) -> ModelError {
        self.poisoned = true;
        self.state_err(detail)
    }

    /// Checks the row state and the column; marks the column as set.
    #[inline]
    fn claim(&mut self, image: Image, col: usize) -> Result<(), ModelError> {
        if self.claim_fast(image, col) {
            return Ok(());
        }
        self.claim_checked(image, col)
    }

    /// The common case of [`Self::claim`] without building an error: a usable builder, an
    /// open row, an image not declared null and a column in range not given yet. `false`
    /// (nothing changed) otherwise; [`Self::claim_checked`] then finds the error.
    #[inline]
    fn claim_fast(&mut self, image: Image, col: usize) -> bool {
        if self.poisoned || self.row.is_none() {
            return false;
        }
        let ib = &mut self.images[image as usize];
        if ib.explicit_null {
            return false;
        }
        match ib.set.get_mut(col) {
            Some(s) if !*s => {
                *s = true;
                ib.filled += 1;
                if ib.pending_nulls > 0 {
                    ib.flush_nulls();
                }
                self.bytes += VALUE_OVERHEAD;
                true
            }
            _ => false,
        }
    }

    /// [`Self::claim`] with every check in order, naming the first that fails.
    #[cold]
    #[inline(never)]
    fn claim_checked(&mut self, image: Image, col: usize) -> Result<(), ModelError> {
        self.check_usable()?;
        if self.row.is_none() {
            return Err(self.fail("value outside a row"));
        }
        let count = self.schema.columns.len();
        let ib = &mut self.images[image as usize];
        if ib.explicit_null {
            return Err(self.fail("value for an image declared null"));
        }
        match ib.set.get_mut(col) {
            None => {
                self.poisoned = true;
                Err(ModelError::ColumnOutOfRange {
                    table: self.schema.table.clone(),
                    index: col,
                    count,
                })
            }
            Some(true) => {
                self.poisoned = true;
                Err(ModelError::DuplicateValue {
                    table: self.schema.table.clone(),
                    image,
                    column: self.schema.columns[col].name.clone(),
                })
            }
            Some(s) => {
                *s = true;
                ib.filled += 1;
                if ib.pending_nulls > 0 {
                    ib.flush_nulls();
                }
                self.bytes += VALUE_OVERHEAD;
                Ok(())
            }
        }
    }

    #[inline]
    fn value_result(
        &mut self,
        image: Image,
        col: usize,
        r: Result<Option<ValueMarker>, ValueError>,
    ) -> Result<(), ModelError> {
        match r {
            Ok(Some(m)) => {
                self.markers.push(image, col, m);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(error) => Err(self.value_error(image, col, error)),
        }
    }

    /// A value the column builder refused: poisons the builder, names table and column.
    #[cold]
    #[inline(never)]
    fn value_error(&mut self, image: Image, col: usize, error: ValueError) -> ModelError {
        self.poisoned = true;
        let c = &self.schema.columns[col];
        ModelError::Value {
            table: self.schema.table.clone(),
            image,
            column: c.name.clone(),
            source_type: c.source_type.display.clone(),
            error: Box::new(error),
        }
    }

    /// A value in the Postgres text output form.
    pub fn append_text(
        &mut self,
        image: Image,
        col: usize,
        bytes: &[u8],
    ) -> Result<(), ModelError> {
        self.claim(image, col)?;
        self.bytes += bytes.len();
        let r = self.images[image as usize].columns[col].append_text(bytes);
        self.value_result(image, col, r)
    }

    /// A value in the Postgres binary (send/recv) form.
    pub fn append_binary(
        &mut self,
        image: Image,
        col: usize,
        bytes: &[u8],
    ) -> Result<(), ModelError> {
        self.claim(image, col)?;
        self.bytes += bytes.len();
        let r = self.images[image as usize].columns[col].append_binary(bytes);
        self.value_result(image, col, r)
    }

    /// A NULL value.
    pub fn append_null(&mut self, image: Image, col: usize) -> Result<(), ModelError> {
        self.claim(image, col)?;
        self.images[image as usize].columns[col].append_null();
        Ok(())
    }

    /// A value the source did not send (unchanged TOAST): null slot + `Unchanged` marker.
    pub fn append_unchanged(&mut self, image: Image, col: usize) -> Result<(), ModelError> {
        self.claim(image, col)?;
        self.images[image as usize].columns[col].append_null();
        let m = ValueMarker {
            kind: MarkerKind::Unchanged,
            detail: None,
        };
        self.markers.push(image, col, m);
        Ok(())
    }

    /// A typed value decoded from a MySQL/MariaDB binlog (the column must be a MySQL one).
    pub fn append_value(
        &mut self,
        image: Image,
        col: usize,
        value: MysqlValue<'_>,
    ) -> Result<(), ModelError> {
        self.claim(image, col)?;
        self.bytes += value.byte_len();
        match self.images[image as usize].columns[col].append_value(value) {
            Ok(()) => Ok(()),
            Err(error) => Err(self.value_error(image, col, error)),
        }
    }

    /// A typed value with a marker on its (non-null) slot, e.g. a geometry's `Srid`.
    pub fn append_value_marked(
        &mut self,
        image: Image,
        col: usize,
        value: MysqlValue<'_>,
        kind: MarkerKind,
        detail: Option<&str>,
    ) -> Result<(), ModelError> {
        self.claim(image, col)?;
        self.bytes += value.byte_len();
        let marker = ValueMarker {
            kind,
            detail: detail.map(str::to_owned),
        };
        let r = self.images[image as usize].columns[col]
            .append_value(value)
            .map(|()| Some(marker));
        self.value_result(image, col, r)
    }

    /// A null slot with a marker: a value the Arrow type cannot hold (`Invalid` for a MySQL
    /// zero date, with its text in `detail`).
    pub fn append_marked_null(
        &mut self,
        image: Image,
        col: usize,
        kind: MarkerKind,
        detail: Option<&str>,
    ) -> Result<(), ModelError> {
        self.claim(image, col)?;
        self.bytes += detail.map_or(0, str::len);
        self.images[image as usize].columns[col].append_null();
        let m = ValueMarker {
            kind,
            detail: detail.map(str::to_owned),
        };
        self.markers.push(image, col, m);
        Ok(())
    }

    /// Ends the row: checks that started images are complete, appends the system columns.
    pub fn finish_row(&mut self) -> Result<(), ModelError> {
        self.check_usable()?;
        let Some(row) = self.row.take() else {
            return Err(self.fail("finish_row without begin_row"));
        };
        for image in [Image::Before, Image::After] {
            let ib = &self.images[image as usize];
            if ib.touched() && ib.filled != ib.set.len() {
                let missing = ib.set.iter().position(|s| !s).unwrap_or(0);
                self.poisoned = true;
                return Err(ModelError::MissingValue {
                    table: self.schema.table.clone(),
                    image,
                    column: self.schema.columns[missing].name.clone(),
                });
            }
        }
        self.images.iter_mut().for_each(ImageBuilder::finish_row);
        self.markers.finish_row();
        self.ops.append_value(row.op.as_u8());
        if self.position_of_buf != Some(row.position) {
            self.position_buf.clear();
            row.position.write_bytes(&mut self.position_buf);
            self.position_of_buf = Some(row.position);
        }
        self.positions.append_value(&self.position_buf);
        self.txids.append_option(row.txid);
        self.commit_ts.append_option(row.commit_ts_us);
        self.rows += 1;
        self.bytes += ROW_OVERHEAD;
        Ok(())
    }

    /// The batch of all finished rows; the builder is reset and can be reused.
    pub fn finish(&mut self) -> Result<ChangeBatch, ModelError> {
        self.check_usable()?;
        if self.row.is_some() {
            return Err(self.fail("finish while a row is open"));
        }
        let table = self.schema.table.clone();
        let arrow_err = |e: arrow_schema::ArrowError| ModelError::InvalidBatch {
            table: table.clone(),
            reason: e.to_string(),
        };
        let rows = self.rows;
        let fields = self.schema.image_fields().clone();
        let mut images = Vec::with_capacity(2);
        for ib in &mut self.images {
            ib.flush_nulls();
            let arrays: Vec<ArrayRef> = ib.columns.iter_mut().map(AnyColumn::finish).collect();
            let nulls = ib.validity.finish();
            let s = if fields.is_empty() {
                StructArray::new_empty_fields(rows, nulls)
            } else {
                StructArray::try_new(fields.clone(), arrays, nulls).map_err(arrow_err)?
            };
            images.push(Arc::new(s) as ArrayRef);
        }
        let after = images.pop().expect("two images");
        let before = images.pop().expect("two images");
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.ops.finish()),
            Arc::new(self.positions.finish()),
            Arc::new(self.txids.finish()),
            Arc::new(self.commit_ts.finish()),
            before,
            after,
            self.markers.finish().map_err(arrow_err)?,
        ];
        let batch =
            RecordBatch::try_new(Arc::clone(&self.schema.arrow), columns).map_err(arrow_err)?;
        self.rows = 0;
        self.bytes = 0;
        Ok(ChangeBatch {
            schema: Arc::clone(&self.schema),
            batch,
        })
    }
}

/// The column builder of one image column: Postgres wire forms or typed MySQL values.
enum AnyColumn {
    Pg(ColumnBuilder),
    Mysql(MysqlColumnBuilder),
}

impl AnyColumn {
    fn new(c: &crate::table::Column, capacity: usize) -> Self {
        if crate::mysql_types::is_mysql(&c.source_type) {
            AnyColumn::Mysql(MysqlColumnBuilder::new(
                &c.source_type.display,
                &c.data_type,
                capacity,
            ))
        } else {
            AnyColumn::Pg(ColumnBuilder::new(&c.source_type, &c.data_type, capacity))
        }
    }

    fn wire_mismatch(m: &MysqlColumnBuilder, form: &str) -> ValueError {
        ValueError::TypeMismatch {
            type_name: format!("MySQL column given a Postgres {form} value"),
            data_type: m.data_type().to_string(),
        }
    }

    fn append_text(&mut self, bytes: &[u8]) -> Result<Option<ValueMarker>, ValueError> {
        match self {
            AnyColumn::Pg(c) => c.append_text(bytes),
            AnyColumn::Mysql(m) => Err(Self::wire_mismatch(m, "text")),
        }
    }

    fn append_binary(&mut self, bytes: &[u8]) -> Result<Option<ValueMarker>, ValueError> {
        match self {
            AnyColumn::Pg(c) => c.append_binary(bytes),
            AnyColumn::Mysql(m) => Err(Self::wire_mismatch(m, "binary")),
        }
    }

    #[inline]
    fn append_value(&mut self, v: MysqlValue<'_>) -> Result<(), ValueError> {
        match self {
            AnyColumn::Mysql(m) => m.append(v),
            AnyColumn::Pg(c) => Err(ValueError::TypeMismatch {
                type_name: format!("{} given a MySQL value", c.type_display()),
                data_type: "a Postgres column".into(),
            }),
        }
    }

    #[inline]
    fn append_null(&mut self) {
        match self {
            AnyColumn::Pg(c) => c.append_null(),
            AnyColumn::Mysql(m) => m.append_null(),
        }
    }

    fn append_nulls(&mut self, n: usize) {
        match self {
            AnyColumn::Pg(c) => (0..n).for_each(|_| c.append_null()),
            AnyColumn::Mysql(m) => m.append_nulls(n),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            AnyColumn::Pg(c) => c.finish(),
            AnyColumn::Mysql(m) => m.finish(),
        }
    }
}
