//! Errors of the MySQL source: definite (stop the pipeline with the fix) or transient (back
//! off, reconnect, resume from the last position handed to the engine).

use tidemark_binlog::DecodeError;

/// Server error codes that a retry cannot fix.
const DEFINITE_CODES: &[(u16, &str)] = &[
    (1044, "grant the user access to the database"),
    (1045, "check source.url's user and source.password"),
    (1049, "the database does not exist"),
    (1227, "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO the user"),
    (1236, "the binlog file or position is gone (purged, or a GTID the server no longer has): run `tidemark reset` and re-snapshot"),
    (1698, "check source.url's user and source.password"),
    (4052, "another replica uses this server_id; set source.server_id to a unique value"),
];

/// Server errors of a query (not of connecting) that a new connection may not meet again: too
/// many connections, shutdown, lock wait timeout, deadlock, interrupted, the connection killed
/// (`KILL`: MariaDB 1927), statement time limits. Every other server error of a query is the
/// statement's own fault, definite. The incremental snapshot's chunk SELECT
/// uses the same list (`snapshot_signal.rs`).
pub(crate) const TRANSIENT_QUERY_CODES: &[u16] = &[1040, 1053, 1205, 1213, 1317, 1927, 1969, 3024];

#[derive(Debug, thiserror::Error)]
pub enum MysqlSourceError {
    /// Talking to the server failed.
    #[error("mysql {addr}: {context}: {source}{}", fix_for(source).map(|f| format!(" (fix: {f})")).unwrap_or_default())]
    Client {
        addr: String,
        context: &'static str,
        #[source]
        source: mysql_async::Error,
    },
    /// The server's settings do not allow CDC; each entry says what to change.
    #[error("mysql {addr}: server settings: {}", .problems.join("; "))]
    Settings { addr: String, problems: Vec<String> },
    /// The binlog could not be decoded (names file and position).
    #[error("mysql {addr}: {source}")]
    Decode {
        addr: String,
        #[source]
        source: Box<DecodeError>,
    },
    /// The checkpoint's binlog file is no longer on the server.
    #[error("mysql {addr}: binlog file number {number} of the checkpoint {position} is not on the server any more (purged by binlog_expire_logs_seconds / expire_logs_days); run `tidemark reset` and re-snapshot")]
    Purged {
        addr: String,
        number: u32,
        position: String,
    },
    /// No event (not even a heartbeat) for too long.
    #[error("mysql {addr}: no event for {seconds} s (three heartbeat periods); the connection is presumed dead")]
    Timeout { addr: String, seconds: u64 },
    /// The stream ended although the server should keep it open.
    #[error("mysql {addr}: the binlog stream ended")]
    Eof { addr: String },
    /// A configuration problem found at start (see the message).
    #[error("mysql source: {0}")]
    Config(String),
    /// The engine is gone (it failed; its own error says why).
    #[error("the engine stopped; the queue is closed")]
    QueueClosed,
}

fn fix_for(e: &mysql_async::Error) -> Option<&'static str> {
    match e {
        mysql_async::Error::Server(s) => DEFINITE_CODES
            .iter()
            .find(|(c, _)| *c == s.code)
            .map(|(_, f)| *f),
        _ => None,
    }
}

impl MysqlSourceError {
    /// Whether backing off and reconnecting may fix it.
    pub fn is_transient(&self) -> bool {
        match self {
            MysqlSourceError::Client { source, .. } => match source {
                mysql_async::Error::Server(s) => !DEFINITE_CODES.iter().any(|(c, _)| *c == s.code),
                mysql_async::Error::Url(_) => false,
                // I/O, driver (unexpected packets, connection state) and others: retry, capped
                // by the backoff (STYLE §2: unknown means transient).
                _ => true,
            },
            MysqlSourceError::Timeout { .. } | MysqlSourceError::Eof { .. } => true,
            MysqlSourceError::Settings { .. }
            | MysqlSourceError::Decode { .. }
            | MysqlSourceError::Purged { .. }
            | MysqlSourceError::Config(_)
            | MysqlSourceError::QueueClosed => false,
        }
    }
}
