//! Tidemark's change model: the contract between sources, decoders and sinks
//! (`docs/design/change-model.md`).
//!
//! ```text
//! source bytes ──► ChangeBatchBuilder (pg_value parses text/binary into Arrow)
//!                        │ finish()
//!                        ▼
//!   Transaction { xid, commit_ts_us, end: Position, items: [Rows(ChangeBatch) | Message] }
//!                        │ Arc
//!                        ▼
//!                  Sink::write / flush / committed
//! ```
//!
//! - [`position`]: `Lsn`, `PgPosition`, `Position` (checkpoint strings, order-preserving bytes).
//! - [`table`]: `TableId`, `SourceType`, `Column`, `TableSchema` (versioned, with its Arrow
//!   schema).
//! - [`pg_types`]: the Postgres → Arrow type mapping; [`pg_value`]: value parsing.
//! - [`mysql_types`], [`mysql_value`], [`mysql_position`]: the same for MySQL/MariaDB binlogs;
//!   [`mysql_gtid_set`]: MySQL GTID sets and the ledger that checkpoints them.
//! - [`batch`] / [`builder`]: `ChangeBatch` and its row-by-row builder.
//! - [`txn`], [`sink`]: transactions and the sink trait.
//!
//! # Traps
//! - An unchanged TOAST value is a null slot *with an `Unchanged` marker*; never read it as
//!   NULL (see [`batch`]).
//! - Positions order by `(commit_lsn, index, lsn)`, not by WAL order of the rows.

pub mod batch;
pub mod builder;
pub mod error;
pub mod mysql_gtid_set;
pub mod mysql_position;
pub mod mysql_types;
pub mod mysql_value;
pub mod pg_types;
pub mod pg_value;
pub mod position;
pub mod sink;
pub mod table;
pub mod txn;

pub use batch::{ChangeBatch, Image, Marker, MarkerKind, Op};
pub use builder::ChangeBatchBuilder;
pub use error::{ModelError, ValueError};
pub use mysql_gtid_set::{GtidLedger, GtidLedgerHandle, GtidSet};
pub use mysql_types::MysqlType;
pub use mysql_value::{MysqlColumnBuilder, MysqlValue};
pub use pg_value::{ColumnBuilder, ValueMarker};
pub use position::{
    DeltaPosition, Gtid, IcebergPosition, KafkaPosition, Lsn, MysqlPosition, PgPosition, Position,
    PositionError,
};
pub use sink::{BoxFuture, Sink, SinkError};
pub use table::{
    Column, CompositeField, SchemaVersions, SourceType, TableId, TableSchema, TypeStructure,
};
pub use txn::{LogicalMessage, SnapshotMark, Transaction, TxnItem};
