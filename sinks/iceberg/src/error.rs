//! Errors of the Iceberg sink: definite (bad data, a schema change Iceberg cannot express, a
//! corrupt table) or transient (storage or catalog unavailable, a lost commit race).

use tidemark_model::{SinkError, TableId};

/// An Iceberg sink failure; every variant names where.
#[derive(Debug, thiserror::Error)]
pub enum IcebergError {
    /// A value or type the table cannot hold (definite).
    #[error("iceberg table for {table}, column {column}: {reason}")]
    Unsupported {
        table: TableId,
        column: String,
        reason: String,
    },
    /// A schema the table cannot take (definite).
    #[error("iceberg table for {table}: {reason}")]
    Schema { table: TableId, reason: String },
    /// The table's files or metadata are not what this sink wrote (definite).
    #[error("iceberg table {table}: {reason}")]
    Corrupt { table: String, reason: String },
    /// Storage or catalog IO (transient).
    #[error("iceberg {what} {location}: {source}")]
    Io {
        what: &'static str,
        location: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Another writer committed first (transient: reload and retry).
    #[error(
        "iceberg table {table}: commit conflict, the catalog's metadata moved from {expected}"
    )]
    Conflict { table: String, expected: String },
    /// The REST catalog answered an error: transient for 5xx, 408 and 429 (a 5xx to a commit
    /// means its outcome is unknown; the reload after the restart tells), definite otherwise.
    #[error(transparent)]
    Rest(Box<RestError>),
    /// Bad configuration (definite).
    #[error("iceberg sink config: {0}")]
    Config(String),
    /// A resource limit reached (definite: raise the limit).
    #[error("iceberg sink: {0}")]
    Limit(String),
}

impl IcebergError {
    pub fn unsupported(table: &TableId, column: &str, reason: impl Into<String>) -> Self {
        IcebergError::Unsupported {
            table: table.clone(),
            column: column.to_owned(),
            reason: reason.into(),
        }
    }

    pub fn schema(table: &TableId, reason: impl Into<String>) -> Self {
        IcebergError::Schema {
            table: table.clone(),
            reason: reason.into(),
        }
    }

    pub fn corrupt(table: impl Into<String>, reason: impl Into<String>) -> Self {
        IcebergError::Corrupt {
            table: table.into(),
            reason: reason.into(),
        }
    }

    pub fn io(
        what: &'static str,
        location: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        IcebergError::Io {
            what,
            location: location.into(),
            source: source.into(),
        }
    }

    /// Whether a retry (after reloading the table) can fix it.
    pub fn is_transient(&self) -> bool {
        match self {
            IcebergError::Io { .. } | IcebergError::Conflict { .. } => true,
            IcebergError::Rest(e) => e.is_transient(),
            _ => false,
        }
    }

    /// As the sink trait's error.
    pub fn into_sink_error(self, sink: &str) -> SinkError {
        let msg = self.to_string();
        if self.is_transient() {
            SinkError::transient(sink, msg).with_source(self)
        } else {
            SinkError::definite(sink, msg).with_source(self)
        }
    }
}

/// An error answer of the REST catalog (boxed in [`IcebergError::Rest`]).
#[derive(Debug, thiserror::Error)]
#[error("iceberg REST catalog {what} {location}: HTTP {status} {kind}: {message}")]
pub struct RestError {
    pub what: &'static str,
    pub location: String,
    pub status: u16,
    /// The error model's `type` (`NoSuchTableException`, `CommitFailedException`, …).
    pub kind: String,
    pub message: String,
}

impl RestError {
    /// 5xx, 408 and 429: the server may answer differently later.
    pub fn is_transient(&self) -> bool {
        self.status >= 500 || self.status == 408 || self.status == 429
    }
}

/// Shorthand for mapping `iceberg::Error`s of one operation.
pub(crate) trait IoContext<T> {
    fn io_ctx(self, what: &'static str, location: &str) -> Result<T, IcebergError>;
}

impl<T, E: std::error::Error + Send + Sync + 'static> IoContext<T> for Result<T, E> {
    fn io_ctx(self, what: &'static str, location: &str) -> Result<T, IcebergError> {
        self.map_err(|e| IcebergError::io(what, location, e))
    }
}
