//! Errors of the PostgreSQL source, split into definite and transient (STYLE.md §2).
//!
//! A *definite* error is something a reconnect cannot fix (bad password, missing database,
//! `wal_level` not logical, a slot whose WAL is gone, a missing publication): the pipeline stops
//! and shows the message. Everything else (connection refused/reset, EOF, timeouts, server
//! shutdown, a slot still held by a dying walsender) is *transient*: back off, reconnect and
//! resume from the checkpoint. When we cannot tell, we say transient and the caller caps retries.
//!
//! Every variant carries a [`Location`] (`host:port`, and the slot and LSN when known) and the
//! display form ends with what to do about it.

use std::fmt;
use std::time::Duration;

use super::format_lsn;

/// Where an error happened: the server address and, when known, the slot and the LSN.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    /// `host:port` (or the Unix socket path) of the server.
    pub addr: String,
    /// The replication slot involved, if any.
    pub slot: Option<String>,
    /// The WAL position involved, if any.
    pub lsn: Option<u64>,
}

impl Location {
    /// A location naming only the server.
    pub fn server(addr: impl Into<String>) -> Self {
        Location {
            addr: addr.into(),
            slot: None,
            lsn: None,
        }
    }

    /// The same location with a slot name.
    pub fn with_slot(mut self, slot: impl Into<String>) -> Self {
        self.slot = Some(slot.into());
        self
    }

    /// The same location with an LSN.
    pub fn with_lsn(mut self, lsn: u64) -> Self {
        self.lsn = Some(lsn);
        self
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "postgres {}", self.addr)?;
        if let Some(slot) = &self.slot {
            write!(f, ", slot {slot}")?;
        }
        if let Some(lsn) = self.lsn {
            write!(f, ", lsn {}", format_lsn(lsn))?;
        }
        Ok(())
    }
}

/// An `ErrorResponse` from the server, with the fields we use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerError {
    /// `ERROR`, `FATAL`, `PANIC`.
    pub severity: String,
    /// Five-character SQLSTATE.
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.severity, self.code, self.message)?;
        if let Some(d) = &self.detail {
            write!(f, " (detail: {d})")?;
        }
        if let Some(h) = &self.hint {
            write!(f, " (hint: {h})")?;
        }
        Ok(())
    }
}

impl ServerError {
    /// Whether a retry can fix this server error, by SQLSTATE class. Definite: 28 (auth),
    /// 3D (no database), 3F (no schema), 42 (syntax, undefined object, privileges), 0A (not
    /// supported), 22 (data), 55000 about `wal_level`, and the WAL-removed / invalidated-slot
    /// errors. Everything else (08, 53, 57, 40, XX, ...) is transient "unless proven otherwise".
    pub fn is_transient(&self) -> bool {
        if self.is_wal_removed() || self.is_wal_level() {
            return false;
        }
        let class = self.code.get(..2).unwrap_or("");
        !matches!(class, "28" | "3D" | "3F" | "42" | "0A" | "22")
    }

    /// `requested WAL segment ... has already been removed`, or a slot invalidated because it
    /// exceeded `max_slot_wal_keep_size` (PG 13+).
    pub fn is_wal_removed(&self) -> bool {
        self.message.contains("has already been removed")
            || self.message.contains("has been invalidated")
            || self
                .detail
                .as_deref()
                .is_some_and(|d| d.contains("has been invalidated"))
    }

    /// `logical decoding requires wal_level >= logical` (55000).
    pub fn is_wal_level(&self) -> bool {
        self.code == "55000" && self.message.contains("wal_level")
    }
}

/// Error of the PostgreSQL source (replication connection and control plane).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgSourceError {
    /// The connection configuration is invalid (bad URL, bad option). Definite.
    #[error("postgres config: {message}; fix the source connection settings")]
    Config { message: String },

    /// A socket operation failed (refused, reset, unreachable). Transient.
    #[error("{at}: {op} failed: {source}; will reconnect")]
    Io {
        at: Location,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// The server closed the connection. Transient.
    #[error("{at}: connection closed by the server during {op}; will reconnect")]
    Closed { at: Location, op: &'static str },

    /// An operation did not finish in time. Transient.
    #[error("{at}: {op} timed out after {after:?}; will reconnect")]
    Timeout {
        at: Location,
        op: &'static str,
        after: Duration,
    },

    /// TLS was required but the server refused it, or the handshake / certificate check
    /// failed. Definite when `definite` (refused, certificate), transient otherwise.
    #[error("{at}: TLS: {message}")]
    Tls {
        at: Location,
        message: String,
        definite: bool,
    },

    /// Authentication failed or needs a method we do not implement. Definite.
    #[error("{at}: authentication of user {user:?} failed: {message}; check the user, password and pg_hba.conf")]
    Auth {
        at: Location,
        user: String,
        message: String,
    },

    /// The server answered with an error. Transient or definite by SQLSTATE.
    #[error("{at}: {error}{}", hint_for(.error))]
    Server {
        at: Location,
        error: Box<ServerError>,
    },

    /// The slot is streaming to another backend (SQLSTATE 55006). Transient: the holder is
    /// often our own previous, dying walsender; `terminate_stale` kills it.
    #[error("{at}: replication slot is active for PID {}; stop the other consumer or set terminate_stale = true",
        .active_pid.map_or_else(|| "?".to_string(), |p| p.to_string()))]
    SlotInUse {
        at: Location,
        active_pid: Option<i32>,
    },

    /// The WAL the slot needs was removed (`wal_status = 'lost'` or the "requested WAL
    /// segment has already been removed" error). Definite: the slot must be dropped and the
    /// table re-snapshotted.
    #[error("{at}: the slot's WAL was removed ({reason}); drop the slot and re-snapshot, and raise max_slot_wal_keep_size")]
    SlotLost { at: Location, reason: String },

    /// The slot does not exist and the config does not allow creating it. Definite.
    #[error("{at}: replication slot does not exist; create it or set create_slot = true")]
    SlotMissing { at: Location },

    /// The slot exists but is not a logical pgoutput slot of this database. Definite.
    #[error("{at}: replication slot is unusable: {reason}")]
    SlotUnusable { at: Location, reason: String },

    /// A publication is missing or does not cover all configured tables. Definite.
    #[error("{at}: publication {name:?} {problem}")]
    Publication {
        at: Location,
        name: String,
        problem: String,
    },

    /// The server is not set up for logical replication (one line per problem). Definite.
    #[error("{at}: server not ready for logical replication: {}", .problems.join("; "))]
    ServerSetup { at: Location, problems: Vec<String> },

    /// The server sent something we did not expect. Transient (capped by the caller).
    #[error("{at}: protocol error: {message}")]
    Protocol { at: Location, message: String },

    /// The control connection (tokio-postgres) failed.
    #[error("{at}: control query {what} failed: {source}")]
    Control {
        at: Location,
        what: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
}

fn hint_for(e: &ServerError) -> &'static str {
    match e.code.get(..2) {
        Some("28") => "; check the user, password and pg_hba.conf",
        Some("3D") => "; create the database or fix dbname",
        Some("42") if e.code == "42704" => "; create the missing object (publication or slot)",
        Some("42") if e.code == "42501" => "; grant the privilege or the REPLICATION attribute",
        Some("55") if e.is_wal_level() => "; set wal_level = logical and restart PostgreSQL",
        _ if e.is_transient() => "; will reconnect",
        _ => "",
    }
}

impl PgSourceError {
    /// Whether a reconnect-and-resume can fix this error.
    pub fn is_transient(&self) -> bool {
        match self {
            PgSourceError::Io { .. }
            | PgSourceError::Closed { .. }
            | PgSourceError::Timeout { .. }
            | PgSourceError::SlotInUse { .. }
            | PgSourceError::Protocol { .. } => true,
            PgSourceError::Tls { definite, .. } => !definite,
            PgSourceError::Server { error, .. } => error.is_transient(),
            PgSourceError::Control { source, .. } => match source.as_db_error() {
                Some(db) => server_error_from_db(db).is_transient(),
                // Closed, IO, timeouts: no SQLSTATE, a reconnect may help.
                None => true,
            },
            PgSourceError::Config { .. }
            | PgSourceError::Auth { .. }
            | PgSourceError::SlotLost { .. }
            | PgSourceError::SlotMissing { .. }
            | PgSourceError::SlotUnusable { .. }
            | PgSourceError::Publication { .. }
            | PgSourceError::ServerSetup { .. } => false,
        }
    }

    /// The SQLSTATE, when the server sent one.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            PgSourceError::Server { error, .. } => Some(&error.code),
            PgSourceError::SlotInUse { .. } => Some("55006"),
            PgSourceError::Control { source, .. } => source.code().map(|c| c.code()),
            _ => None,
        }
    }

    /// Maps a server error to the specific variants (slot in use, slot lost, missing slot,
    /// auth) or [`PgSourceError::Server`].
    pub(crate) fn from_server(at: Location, error: ServerError) -> Self {
        if error.code == "55006" {
            let active_pid = parse_active_pid(&error.message);
            return PgSourceError::SlotInUse { at, active_pid };
        }
        if error.is_wal_removed() {
            return PgSourceError::SlotLost {
                at,
                reason: error.to_string(),
            };
        }
        if error.code == "42704" && error.message.contains("replication slot") {
            return PgSourceError::SlotMissing { at };
        }
        if error.code.starts_with("28") {
            return PgSourceError::Auth {
                at,
                user: String::new(),
                message: error.to_string(),
            };
        }
        PgSourceError::Server {
            at,
            error: Box::new(error),
        }
    }

    /// Wraps a tokio-postgres error from the control connection.
    pub(crate) fn control(
        at: &Location,
        what: &'static str,
        source: tokio_postgres::Error,
    ) -> Self {
        if let Some(db) = source.as_db_error() {
            let se = server_error_from_db(db);
            if se.code == "55006" || se.is_wal_removed() || se.code.starts_with("28") {
                return Self::from_server(at.clone(), se);
            }
        }
        PgSourceError::Control {
            at: at.clone(),
            what,
            source,
        }
    }
}

/// Converts a tokio-postgres server error into our [`ServerError`].
pub(crate) fn server_error_from_db(db: &tokio_postgres::error::DbError) -> ServerError {
    ServerError {
        severity: db.severity().to_string(),
        code: db.code().code().to_string(),
        message: db.message().to_string(),
        detail: db.detail().map(str::to_string),
        hint: db.hint().map(str::to_string),
    }
}

/// `replication slot "x" is active for PID 1234` -> 1234.
pub(crate) fn parse_active_pid(message: &str) -> Option<i32> {
    let rest = &message[message.find("PID ")? + 4..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn se(code: &str, message: &str) -> ServerError {
        ServerError {
            severity: "ERROR".into(),
            code: code.into(),
            message: message.into(),
            ..Default::default()
        }
    }

    #[test]
    fn classifies_sqlstates() {
        let at = Location::server("h:5432");
        let t = |code, msg| PgSourceError::from_server(at.clone(), se(code, msg)).is_transient();
        assert!(t(
            "57P01",
            "terminating connection due to administrator command"
        ));
        assert!(t("57P03", "the database system is starting up"));
        assert!(t("08006", "connection failure"));
        assert!(t("55006", "replication slot \"s\" is active for PID 42"));
        assert!(!t("28P01", "password authentication failed for user \"x\""));
        assert!(!t("3D000", "database \"x\" does not exist"));
        assert!(!t("42704", "publication \"p\" does not exist"));
        assert!(!t("42704", "replication slot \"s\" does not exist"));
        assert!(!t(
            "55000",
            "logical decoding requires wal_level >= logical"
        ));
        assert!(t("55000", "some other prerequisite"));
        assert!(!t(
            "58P01",
            "requested WAL segment 000000010000000000000001 has already been removed"
        ));
    }

    #[test]
    fn maps_specific_variants() {
        let at = Location::server("h:1")
            .with_slot("s")
            .with_lsn(0x1_0000_0010);
        let e = PgSourceError::from_server(
            at,
            se("55006", "replication slot \"s\" is active for PID 4242"),
        );
        assert!(matches!(
            e,
            PgSourceError::SlotInUse {
                active_pid: Some(4242),
                ..
            }
        ));
        let text = e.to_string();
        assert!(
            text.contains("slot s") && text.contains("lsn 1/10") && text.contains("4242"),
            "{text}"
        );
        let e = PgSourceError::from_server(
            Location::default(),
            se("42704", "replication slot \"s\" does not exist"),
        );
        assert!(matches!(e, PgSourceError::SlotMissing { .. }));
        assert_eq!(parse_active_pid("no pid here"), None);
    }
}
