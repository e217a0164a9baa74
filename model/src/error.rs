//! Errors of the change model.
//!
//! Two layers: [`ValueError`] says what is wrong with one value's bytes (it knows the type and the
//! byte offset, not the table), [`ModelError`] adds where it happened (table, image, column and
//! source type). Neither carries row values: errors end up in `status` and logs, and row values
//! must not be logged above `debug` (STYLE §9).
//!
//! Every error here is *definite*: the same bytes fail the same way on a retry. Sources must stop
//! the pipeline on them, never skip the row or turn the value into NULL.

use crate::batch::Image;
use crate::table::TableId;

/// A value could not be decoded from its Postgres text or binary form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// The text form is malformed.
    #[error("invalid {type_name} text at byte {offset}: {reason}")]
    InvalidText {
        type_name: &'static str,
        offset: usize,
        reason: &'static str,
    },
    /// The binary (send/recv) form is malformed.
    #[error("invalid {type_name} binary value at byte {offset}: {reason}")]
    InvalidBinary {
        type_name: &'static str,
        offset: usize,
        reason: &'static str,
    },
    /// The value is well-formed but does not fit the column's Arrow type without loss
    /// (e.g. more fraction digits than the decimal's scale).
    #[error("{type_name} value does not fit {target}: {reason}")]
    OutOfRange {
        type_name: &'static str,
        target: String,
        reason: &'static str,
    },
    /// The binary form of this type is not decoded (unknown types such as extension types, and
    /// composites or ranges made of them); the source must request the text format.
    /// `type_name` is the column's type (and the unknown field's, inside a composite).
    #[error("binary format of type {type_name} is not supported; use the text format")]
    BinaryUnsupported { type_name: String },
    /// A composite value's field has a type the catalog's attribute list does not have at
    /// that place and that is no builtin (whose binary form needs no catalog): the type was
    /// altered (`ALTER TYPE ... ADD/DROP ATTRIBUTE`, which sends no Relation message) after
    /// the catalog was read. Never guessed: the source re-reads the catalog or stops.
    #[error(
        "composite type {type_name}: field {field} has type OID {wire_oid} on the wire, the \
         catalog has {expected}; the type was altered after the catalog was read"
    )]
    StaleComposite {
        type_name: String,
        /// 0-based position among the live attributes.
        field: usize,
        wire_oid: u32,
        /// `name (oid N)` of the catalog's attribute there, or `no attribute`.
        expected: String,
    },
    /// The bytes are not valid UTF-8 (Tidemark requires a UTF-8 server encoding).
    #[error("invalid UTF-8 at byte {offset}")]
    InvalidUtf8 { offset: usize },
    /// The column's Arrow type cannot hold a value of this source type (a schema built by hand
    /// with a data type the Postgres mapping does not produce).
    #[error("source type {type_name} cannot be stored as Arrow {data_type}")]
    TypeMismatch {
        type_name: String,
        data_type: String,
    },
}

/// An error building or reading change batches.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// A value failed to decode; says where.
    #[error("table {table}, {image} column {column} ({source_type}): {error}")]
    Value {
        table: TableId,
        image: Image,
        column: String,
        source_type: String,
        #[source]
        error: Box<ValueError>,
    },
    /// A column index that the table does not have.
    #[error("table {table}: column index {index} out of range ({count} columns)")]
    ColumnOutOfRange {
        table: TableId,
        index: usize,
        count: usize,
    },
    /// The same column was given twice in one image of one row.
    #[error("table {table}: {image} column {column} given twice in one row")]
    DuplicateValue {
        table: TableId,
        image: Image,
        column: String,
    },
    /// An image was started but a column was never given (neither value, null nor unchanged).
    #[error("table {table}: {image} image is missing column {column}")]
    MissingValue {
        table: TableId,
        image: Image,
        column: String,
    },
    /// Builder calls out of order (a value outside `begin_row`/`finish_row`, ...).
    #[error("table {table}: {detail}")]
    RowState {
        table: TableId,
        detail: &'static str,
    },
    /// A `RecordBatch` that does not have the shape of a change batch.
    #[error("table {table}: invalid change batch: {reason}")]
    InvalidBatch { table: TableId, reason: String },
}

impl ModelError {
    /// Whether a value did not match the catalog's description of its type
    /// ([`ValueError::StaleComposite`]): the bytes are fine, and re-reading the catalog (a new
    /// replication session) may fix it; the same error after that is definite.
    pub fn is_stale_catalog(&self) -> bool {
        matches!(self, ModelError::Value { error, .. } if matches!(**error, ValueError::StaleComposite { .. }))
    }
}
