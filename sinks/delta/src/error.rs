//! The Delta sink's errors: each names the table (and column where there is one) and says
//! whether retrying can fix it.

use deltalake::DeltaTableError;
use tidemark_model::{SinkError, TableId};

/// A Delta sink failure.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    /// delta-rs or the object store failed during `op`.
    #[error("table {table} ({uri}): {op} failed: {source}")]
    Delta {
        table: TableId,
        uri: String,
        op: &'static str,
        #[source]
        source: Box<DeltaTableError>,
    },
    /// A column type that has no lossless Delta form.
    #[error("table {table}, column {column} ({data_type}): {reason}")]
    Type {
        table: TableId,
        column: String,
        data_type: String,
        reason: String,
    },
    /// A schema change the Delta table cannot follow.
    #[error("table {table}, column {column}: {message}")]
    Schema {
        table: TableId,
        column: String,
        message: String,
    },
    /// Mirror mode needs a key.
    #[error(
        "table {table} has no primary key, so mirror mode cannot find its rows: set \
         mode = \"changelog\" for it in [sinks.tables.\"{table}\"], or give key_columns = [...]"
    )]
    NoKey { table: TableId },
    /// Configured key columns that the table does not have.
    #[error("table {table}: key column {column} is not a column of the table")]
    UnknownKeyColumn { table: TableId, column: String },
    /// An update or delete without the old key (Postgres REPLICA IDENTITY NOTHING).
    #[error(
        "table {table}: {op} at {position} carries no old key (REPLICA IDENTITY NOTHING?), so \
         mirror mode cannot find the row; set REPLICA IDENTITY DEFAULT or FULL, or use changelog mode"
    )]
    MissingOldKey {
        table: TableId,
        op: &'static str,
        position: String,
    },
    /// The commit log holds a `txn` version without the commit that carries our position.
    #[error("table {table} ({uri}): {message}")]
    Log {
        table: TableId,
        uri: String,
        message: String,
    },
    /// Arrow failed to build or convert a batch (a bug or corrupt input).
    #[error("table {table}: {context}: {source}")]
    Arrow {
        table: TableId,
        context: String,
        #[source]
        source: arrow_schema::ArrowError,
    },
}

impl DeltaError {
    /// Whether a retry can fix it: object store, IO and commit conflicts are transient; schema,
    /// type and data problems are definite.
    pub fn is_transient(&self) -> bool {
        match self {
            DeltaError::Delta { source, .. } => delta_is_transient(source),
            _ => false,
        }
    }

    /// As the sink trait's error.
    pub fn into_sink_error(self, sink: &str) -> SinkError {
        let e = if self.is_transient() {
            SinkError::transient(sink, self.to_string())
        } else {
            SinkError::definite(sink, self.to_string())
        };
        e.with_source(self)
    }
}

/// delta-rs errors a retry can fix.
pub fn delta_is_transient(e: &DeltaTableError) -> bool {
    use deltalake::kernel::transaction::TransactionError;
    match e {
        DeltaTableError::ObjectStore { .. } | DeltaTableError::Io { .. } => true,
        DeltaTableError::Transaction { source } => matches!(
            source,
            TransactionError::VersionAlreadyExists(_)
                | TransactionError::MaxCommitAttempts(_)
                | TransactionError::ObjectStore { .. }
        ),
        DeltaTableError::VersionAlreadyExists(_) => true,
        _ => false,
    }
}
