//! The trait every sink implements, kept free of async runtimes so sinks depend only on this
//! crate: a boxed future, no tokio, no `async-trait`.
//!
//! Contract: `write` may buffer (and may commit on its own when its buffer is full); `flush`
//! makes everything written so far durable and returns the highest position that is now durably
//! committed; `committed` reports that position without IO. A position is never reported before
//! its data is durable (STYLE §10).
//!
//! The engine asks at every checkpoint tick whether a sink [`Sink::wants_flush`]: a sink whose
//! commits are expensive (a lake table version, a Kafka transaction) batches by its own
//! rows/bytes/time policy and says no until the policy is met; the engine then uses
//! [`Sink::committed`] for the checkpoint. At shutdown the engine flushes every sink regardless.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::position::Position;
use crate::txn::Transaction;

/// A `Send` boxed future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A destination of transactions.
pub trait Sink: Send {
    /// The sink's configured name (for logs and metrics).
    fn name(&self) -> &str;
    /// Accepts one transaction; awaiting is the backpressure.
    fn write<'a>(&'a mut self, txn: Arc<Transaction>) -> BoxFuture<'a, Result<(), SinkError>>;
    /// Makes everything written durable; returns the highest durably committed position.
    fn flush<'a>(&'a mut self) -> BoxFuture<'a, Result<Option<Position>, SinkError>>;
    /// Highest position durably committed.
    fn committed(&self) -> Option<Position>;
    /// Whether the engine's checkpoint tick should call [`Sink::flush`] now. Default: always
    /// (cheap commits: a file fsync, a producer flush).
    fn wants_flush(&self) -> bool {
        true
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A sink failure: transient (retry after backoff, resume from the checkpoint) or definite
/// (stop the pipeline).
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("sink {sink}: {message} (transient)")]
    Transient {
        sink: String,
        message: String,
        #[source]
        source: Option<BoxError>,
    },
    #[error("sink {sink}: {message}")]
    Definite {
        sink: String,
        message: String,
        #[source]
        source: Option<BoxError>,
    },
}

impl SinkError {
    pub fn transient(sink: impl Into<String>, message: impl Into<String>) -> Self {
        SinkError::Transient {
            sink: sink.into(),
            message: message.into(),
            source: None,
        }
    }

    pub fn definite(sink: impl Into<String>, message: impl Into<String>) -> Self {
        SinkError::Definite {
            sink: sink.into(),
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying error.
    pub fn with_source(mut self, err: impl Into<BoxError>) -> Self {
        match &mut self {
            SinkError::Transient { source, .. } | SinkError::Definite { source, .. } => {
                *source = Some(err.into())
            }
        }
        self
    }

    /// Whether a retry can fix it.
    pub fn is_transient(&self) -> bool {
        matches!(self, SinkError::Transient { .. })
    }

    /// The sink's name.
    pub fn sink(&self) -> &str {
        match self {
            SinkError::Transient { sink, .. } | SinkError::Definite { sink, .. } => sink,
        }
    }
}
