//! Decode errors. Every one is *definite* (the same bytes fail the same way on a retry) and
//! says where: binlog file, event offset, event type, and for values table, column and type.
//!
//! ```text
//! binlog mysql-bin.000003:4567 UPDATE_ROWS_EVENT_V1: table shop.items, column price (decimal(10,2)): invalid decimal digits
//! ```

use tidemark_model::ModelError;

use crate::reader::Truncated;

/// What went wrong, without the location (parsers return this; [`DecodeError`] adds where).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    #[error("truncated: {wanted} more bytes needed at body offset {offset}")]
    Truncated { offset: usize, wanted: usize },
    /// The CRC32 in the event footer does not match its bytes.
    #[error("checksum mismatch: event says {expected:#010x}, bytes give {actual:#010x}")]
    Checksum { expected: u32, actual: u32 },
    #[error("invalid event at body offset {offset}: {reason}")]
    Invalid { offset: usize, reason: &'static str },
    /// A well-formed feature this decoder does not read (named).
    #[error("unsupported: {what}")]
    Unsupported { what: String },
    /// A rows event whose table id has no preceding TABLE_MAP_EVENT.
    #[error("rows event for table id {table_id} without a table map")]
    UnknownTable { table_id: u64 },
    /// A value could not be decoded.
    #[error("table {table}, column {column} ({source_type}): {reason}")]
    Value {
        table: String,
        column: String,
        source_type: String,
        reason: String,
    },
    /// The change model refused a value or row (it names table, image and column).
    #[error(transparent)]
    Model(Box<ModelError>),
    /// A compressed payload could not be decompressed.
    #[error("decompression failed: {0}")]
    Decompress(String),
    /// Events in an order the protocol does not allow (rows outside a transaction, ...).
    #[error("{0}")]
    Sequence(String),
}

impl From<Truncated> for ErrorKind {
    fn from(t: Truncated) -> Self {
        ErrorKind::Truncated {
            offset: t.offset,
            wanted: t.wanted,
        }
    }
}

impl From<ModelError> for ErrorKind {
    fn from(e: ModelError) -> Self {
        ErrorKind::Model(Box::new(e))
    }
}

/// A decode error with its location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("binlog {file}:{pos} {event}: {kind}")]
pub struct DecodeError {
    /// Binlog file name (empty before the first ROTATE_EVENT).
    pub file: String,
    /// Offset of the event in the file.
    pub pos: u64,
    /// Event type name (`WRITE_ROWS_EVENT`, ...).
    pub event: &'static str,
    /// Boxed: errors are rare and the `Result` of every decode stays small.
    pub kind: Box<ErrorKind>,
}

impl DecodeError {
    /// Always false: decoding is a function of the bytes.
    pub fn is_transient(&self) -> bool {
        false
    }
}

/// `Invalid` at an offset.
pub(crate) fn invalid(offset: usize, reason: &'static str) -> ErrorKind {
    ErrorKind::Invalid { offset, reason }
}
