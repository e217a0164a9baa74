//! Delta Lake sink for Tidemark: one Delta table per source table, in `mirror` mode (the
//! current rows, one MERGE per flush, Change Data Feed on) or `changelog` mode (every change
//! appended, in the shape of Delta's CDF), with exactly-once commits.
//!
//! ```text
//! Transaction ─► DeltaSink::write (commit.rs: buffer whole transactions)
//!                   │ flush: rows / bytes / time (config.rs)
//!                   ▼
//!   per table: encoder/ (pure: type mapping, changelog rows, mirror net effect per key)
//!                   ▼
//!              writer/ (IO: create / add columns, MERGE or append, optimize / vacuum)
//!                   ▼
//!              commit with txn action + position in commit info (ack.rs)
//!                   ▼
//!              Sink::flush returns the end of the last committed transaction
//! ```
//!
//! Tables are created on first use under `root` at `<namespace>/<table>`. Mirror tables have
//! the source columns plus `_position` and `_markers`; changelog tables the source columns plus
//! `_change_type`, `_position`, `_position_key`, `_txid`, `_commit_ts`, `_markers`
//! (docs/delta.md has the full reference).
//!
//! # Traps
//! - **Unchanged TOAST is not NULL.** The model marks a value the source did not send; the
//!   mirror keeps the stored value (`encoder/mirror.rs`), the changelog records a marker of
//!   kind `unchanged` with a null slot.
//! - **A MERGE needs one source row per target row.** Several changes to one key in a flush
//!   are reduced to their net effect first, in source order (delete then re-insert, key
//!   changes, truncate).
//! - **No column mapping writes in delta-rs 0.32.4** (create, write, MERGE and ADD COLUMN all
//!   refuse it), so dropped/renamed source columns stay in the Delta table, frozen; a type
//!   change stops the sink with an error naming the table and column (no type widening
//!   writes either). See docs/architecture.md for why we are on 0.32.4.
//! - **Tables commit one after another**, not atomically together: positions are per table
//!   (`ack.rs`) and a restart skips, per table, what is already there.
//! - **A mirror needs a key.** A table without a primary key is refused in mirror mode with an
//!   error that says to use changelog mode or configure `key_columns`.
//! - `delta.enableChangeDataFeed` makes delta-rs write `_change_data` for MERGE; a plain append
//!   (changelog mode) needs none, and changelog tables cannot have CDF on anyway: their
//!   `_change_type` column is a name the change feed reserves.

pub mod ack;
pub mod commit;
pub mod config;
pub mod encoder;
pub mod error;
pub mod writer;

pub use ack::{app_id, TableAck};
pub use commit::{CommitStats, DeltaSink};
pub use config::{DeltaSinkConfig, DeltaTableConfig, FlushConfig, MaintenanceConfig, TableMode};
pub use error::DeltaError;

pub use chrono;
/// The `deltalake` crate this sink is built on (for readers in tests and the CDF source).
pub use deltalake;
