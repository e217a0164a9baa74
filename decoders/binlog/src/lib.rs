//! Sans-IO decoder of MySQL (8.x) and MariaDB (10.5+) row-based binlog events into Tidemark's
//! Arrow change model.
//!
//! A replica connection (`src/source/mysql`) reads events from `COM_BINLOG_DUMP(_GTID)` and
//! hands each one's bytes to [`Decoder::decode`]; the decoder has no socket, clock or runtime, so
//! it is fuzzed, property-tested and benchmarked on bytes.
//!
//! ```text
//!  socket ─► src/source/mysql ─► event bytes ─► Decoder::decode
//!                                                 ├ event.rs      header, CRC32, FORMAT_DESCRIPTION
//!                                                 ├ events.rs     QUERY, XID, ROTATE, GTIDs, heartbeats, payloads
//!                                                 ├ table_map.rs  TABLE_MAP + optional metadata
//!                                                 ├ rows.rs       rows event headers
//!                                                 ├ row_image.rs  row images → builder (bitmaps, JSON diffs)
//!                                                 ├ values.rs     column values (decimal.rs, json.rs, json_diff.rs, charset.rs)
//!                                                 └ schema.rs     table map + catalog → TableSchema versions
//!                                                        ▼
//!                                        Step::Emitted(Transaction { ChangeBatch… })
//! ```
//!
//! # Why not `mysql_common`'s event parser
//! `mysql_common` (under `mysql_async`, which the source uses for the connection and SQL)
//! parses binlog events too. We parse them ourselves because (1) its values come as
//! `BinlogValue`s (`Value`, `serde_json` trees, strings for decimals) that we would convert a
//! second time, while this decoder writes straight from the event's bytes into Arrow builders,
//! borrowing strings and bytes; (2) it does not decode MariaDB's GTID, GTID_LIST,
//! BINLOG_CHECKPOINT and compressed events, which we need for MariaDB GTID positions; (3) its
//! errors do not say file, position and column. The source takes the raw event bytes from the
//! stream (`Event::write`), so checksums are verified here on the server's bytes.
//!
//! # Invariants we rely on
//! - No input makes the decoder panic; no declared length or count allocates more than the
//!   input's size (decompression is capped by [`DecoderOptions::max_uncompressed_bytes`]).
//! - Every error is definite and carries binlog file, event offset and event type
//!   ([`DecodeError`]); a value error also names table, column and type.
//!
//! # Traps
//! - **Table-map ids are not stable identities.** A TABLE_MAP binds an id to `db.table` only
//!   for the events that follow it; ids are reused after a table is altered or flushed and
//!   change on restart. Schemas are versioned by name (`schema.rs`).
//! - **Column names only with `binlog_row_metadata=FULL`** (MySQL 8.0.1+, MariaDB 10.5+).
//!   Without it the table map has types only; names and keys come from `information_schema`,
//!   which is the *current* schema, not the event's. The source checks the setting.
//! - **Checksum negotiation.** A server sends CRC32 footers only to a replica that set
//!   `@master_binlog_checksum` (otherwise it refuses or strips them, depending on version); the
//!   FORMAT_DESCRIPTION_EVENT then says the algorithm for the rest of the file, and the
//!   artificial ROTATE before it already uses the negotiated one. A mismatch is a definite error
//!   naming file and position, never skipped.
//!   <https://dev.mysql.com/doc/refman/8.0/en/replication-options-binary-log.html#sysvar_binlog_checksum>
//! - **MySQL vs MariaDB GTIDs.** MySQL: `uuid:gno` in GTID_LOG_EVENT before BEGIN, sets of
//!   intervals in PREVIOUS_GTIDS; resume with `COM_BINLOG_DUMP_GTID`. MariaDB: `domain-server-seq`
//!   in its own GTID_EVENT (0xa2) which *replaces* BEGIN (flag STANDALONE: a DDL with no COMMIT),
//!   GTID_LIST (0xa3) at file start; resume with `SET @slave_connect_state`, and only after
//!   `SET @mariadb_slave_capability=4`, or the server sends dummy events instead.
//!   <https://mariadb.com/kb/en/gtid/>
//! - **Compressed payloads.** MySQL 8.0.20+ (`binlog_transaction_compression`) wraps a whole
//!   transaction after its GTID in a zstd TRANSACTION_PAYLOAD_EVENT whose inner events have no
//!   checksum and `log_pos` 0. MariaDB (`log_bin_compress`) compresses single QUERY and rows
//!   events with zlib behind a one-byte header.
//! - **TIMESTAMP vs DATETIME time zones.** TIMESTAMP is UTC seconds in the binlog whatever the
//!   session zone; DATETIME is wall-clock with no zone. Never shift one like the other
//!   (`values.rs`).
//! - **Zero dates** (`0000-00-00`) and invalid-but-stored dates are values: null slot plus an
//!   `Invalid` marker with MySQL's text.
//! - **Partial images.** `binlog_row_image=MINIMAL/NOBLOB` leave columns out of an image; they
//!   become `Unchanged` markers, never NULL. `binlog_row_value_options=PARTIAL_JSON` sends JSON
//!   diffs that are applied to the before image here (`json_diff.rs`).
//! - **Statement-based events.** A DML QUERY inside a transaction means the server is not
//!   `binlog_format=ROW` for that statement: definite error, never silently missing rows.

mod charset;
mod decimal;
pub mod decoder;
pub mod encode;
mod error;
pub mod event;
pub mod events;
pub mod json;
pub mod json_diff;
mod reader;
mod row_image;
pub mod rows;
pub mod schema;
pub mod table_map;
pub mod values;

pub use charset::{charset_of_collation, charset_of_name, Charset};
pub use decoder::{meta, Decoder, DecoderOptions, Step};
pub use error::{DecodeError, ErrorKind};
pub use event::{Checksum, EventHeader, FormatDescription, BINLOG_MAGIC};
pub use schema::{CatalogColumn, TableCatalog};

/// Packed decimal encoding (for the test encoder and benches).
pub mod packed_decimal {
    pub use crate::decimal::{binary_size, decode, encode};
}
