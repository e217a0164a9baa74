//! MySQL/MariaDB source, network side: a replica connection reading the row-based binlog.
//!
//! ```text
//!   control (mysql_async, SQL)                    replica (mysql_async binlog stream)
//!   ──────────────────────────                    ────────────────────────────────────
//!   check_server: log_bin, binlog_format,         SET @master_heartbeat_period,
//!     binlog_row_image, binlog_row_metadata         @mariadb_slave_capability=4, (@slave_connect_state)
//!   SHOW BINARY LOGS / MASTER STATUS              COM_REGISTER_SLAVE(server_id),
//!   information_schema: columns, keys, charsets     @master_binlog_checksum, COM_BINLOG_DUMP(file, pos)
//!                                                   ──> events ──> tidemark-binlog Decoder
//! ```
//!
//! `mysql_async` does authentication (mysql_native_password, caching_sha2_password with RSA or
//! TLS, MariaDB client_ed25519), TLS (rustls) and the dump command; events are decoded by
//! `decoders/binlog` from the bytes the server sent (see its crate doc for why not
//! mysql_common's parser).
//!
//! # Traps
//! - **No slot**: the server keeps binlogs by age (`binlog_expire_logs_seconds`), not for us. A
//!   checkpoint older than the oldest file cannot resume: [`MysqlSourceError::Purged`], definite.
//! - **The position is (file number, offset)**; the basename is looked up with
//!   `SHOW BINARY LOGS` on every (re)connect, so a renamed basename is a clear "purged" error.
//! - **Resuming inside a transaction** starts at the transaction's first event and the decoder
//!   drops the rows already handed over (a chunk of a long transaction may be acknowledged).
//! - **Checksum negotiation**: mysql_async sets `@master_binlog_checksum`; the decoder is told
//!   the server's `binlog_checksum` and then follows the FORMAT_DESCRIPTION_EVENT.
//! - **MariaDB GTIDs need `@mariadb_slave_capability = 4`**, else GTID events come as dummy
//!   QUERY events and positions lose their GTID.
//! - **MariaDB sends ANNOTATE_ROWS only when asked** (`BINLOG_SEND_ANNOTATE_ROWS_EVENT` in
//!   COM_BINLOG_DUMP), which mysql_async cannot: with `include_query` the replica connection
//!   goes through a loopback relay that sets the flag ([`annotate`]). MySQL sends ROWS_QUERY
//!   whenever `binlog_rows_query_log_events` is on; the decoder drops the text unless
//!   `include_query`.
//! - **Heartbeats**: the server sends one per `@master_heartbeat_period` when idle; three
//!   silent periods mean a dead TCP connection (no RST after a network cut), so reconnect.
//! - **Transaction payloads** are yielded twice by mysql_async (the payload event, then its
//!   inner events, decompressed by it): the decoder reads the payload, the copies are skipped.
//! - **DDL** drops the catalog cache: the next TABLE_MAP of a table re-reads
//!   `information_schema`, which FULL row metadata makes a fallback only (names and keys come
//!   from the table map).
//!
//! # Errors
//! [`MysqlSourceError::is_transient`]: I/O, timeouts, server shutdown and unknown server errors
//! are transient; access denied (1044/1045/1227), unknown database (1049), binlog gone (1236),
//! duplicate server id, wrong settings, decode errors and a purged checkpoint are definite.

pub mod annotate;
pub mod config;
pub mod control;
pub mod error;
pub mod gtid;
pub mod pipeline;
pub mod snapshot;
pub mod snapshot_incremental;
pub mod snapshot_rows;
pub mod snapshot_signal;
pub mod stream;

pub use config::MysqlSourceConfig;
pub use control::MysqlControl;
pub use error::MysqlSourceError;
pub use stream::MysqlSource;
