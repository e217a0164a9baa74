//! PostgreSQL source, network side: the logical replication connection and the control plane.
//!
//! Two connections per source:
//!
//! ```text
//!   control (tokio-postgres, normal)            replication (ours, replication=database)
//!   ─────────────────────────────────           ────────────────────────────────────────
//!   check_server: version, wal_level,           startup + auth (trust/cleartext/md5/SCRAM)
//!     max_replication_slots, REPLICATION        CREATE_REPLICATION_SLOT .. LOGICAL pgoutput
//!   ensure_publication / ensure_slot            START_REPLICATION SLOT s LOGICAL lsn (opts)
//!   slot_info, drop_slot, terminate_backend       ──> CopyBoth: 'w' XLogData, 'k' keepalive
//!   relation_catalog (types, PK, enums)           <── 'r' standby status (flush = durable LSN)
//! ```
//!
//! The replication connection is hand-written on `postgres-protocol` because tokio-postgres has
//! no CopyBoth/replication support and `pgwire-replication` hard-codes pgoutput
//! `proto_version '1'` (no streaming of in-progress transactions; see
//! `shared/research/crates.md` §1). The pgoutput payloads are decoded by
//! `decoders/pgoutput` (sans-IO); this module only frames them ([`parse_stream_message`]).
//! Metadata queries run on the separate control connection, like Materialize does, because
//! some managed servers refuse plain SQL (`SHOW`) on a replication connection.
//!
//! # Traps
//! - **Keepalive `wal_end` is the last position the server *sent*, not the end of WAL.**
//!   The protocol docs call it "the current end of WAL on the server"; the walsender fills it
//!   with `sentPtr` (see Materialize `replication.rs` and
//!   <https://www.postgresql.org/message-id/flat/CAMsr%2BYE2dSfHVr7iEv1GSPZihitWX-PMkD9QALEGcTYa%2Bsdsgg%40mail.gmail.com>).
//!   When we have no transaction in flight and everything sent is durable, we may confirm it
//!   (idle feedback), otherwise WAL written by other databases keeps the slot's restart_lsn
//!   back forever (PG 15+ also skips empty transactions, so no commit ever arrives).
//! - **Feedback at least every `wal_sender_timeout / 2`** (default 60 s, so ≤ 30 s; we
//!   recommend 10 s). Without it the walsender drops the connection with "terminating walsender
//!   process due to replication timeout".
//! - **`reply_requested` in a keepalive means answer now**: the server is about to time us out.
//! - **pgoutput options depend on the server version** ([`PgOutputOptions::to_options`]):
//!   `proto_version` 1 for PG ≤ 13, 2 for 14, 3 for 15, 4 for 16+; `streaming 'on'` needs proto
//!   ≥ 2 and PG ≥ 14 (in-progress transactions arrive as Stream Start/Stop/Commit/Abort with
//!   xids, so large transactions pass with bounded memory); `messages` and `binary` need PG ≥
//!   14; `origin` needs PG 16. An unknown option fails START_REPLICATION.
//! - **Slot active for another PID** (SQLSTATE 55006 `object_in_use`): often our own previous
//!   walsender that has not noticed the dead TCP connection yet. [`PgControl::start_replication_reclaiming`]
//!   looks up `active_pid` in `pg_replication_slots` and, with `terminate_stale`, runs
//!   `pg_terminate_backend` and retries. The risk: if the other holder is a live second
//!   Tidemark, we steal its slot (it will then fail the same way), so it is opt-in.
//! - **WAL removed**: "requested WAL segment ... has already been removed", a slot invalidated
//!   by `max_slot_wal_keep_size`, or `wal_status = 'lost'` → [`PgSourceError::SlotLost`],
//!   definite: the slot must be recreated and the tables re-snapshotted.
//! - **Missing slot** is definite unless the config allows creating it; a missing publication
//!   is reported by pgoutput only when the first change is decoded (42704), not at START.
//! - **START_REPLICATION at an LSN below `confirmed_flush_lsn` silently starts at
//!   `confirmed_flush_lsn`**; callers that need to know re-check the slot after starting.
//! - **`flush_lsn` in the standby status becomes `confirmed_flush_lsn`**: send only positions
//!   that are durable in every sink and the checkpoint store (STYLE.md §10); the server then
//!   may recycle the WAL before it. The commit's *end* LSN is what to confirm for a commit.
//! - **A slot created with `EXPORT_SNAPSHOT`** keeps its snapshot only until the next command
//!   on that replication connection; the snapshot reader must import it first (`snapshot.rs`
//!   keeps the connection idle until every reader ran `SET TRANSACTION SNAPSHOT`).
//! - **TLS**: see `tls.rs` (libpq `require` does not check certificates; no SCRAM `-PLUS`).
//!
//! # Errors
//! [`PgSourceError::is_transient`]: connection refused/reset/EOF/timeouts and server shutdown
//! (57P01/57P02/57P03, 08xxx) are transient; auth (28xxx), missing database (3D000),
//! `wal_level` not logical (55000), slot lost, missing slot, missing publication (42704) are
//! definite. Each error names `host:port`, the slot and the LSN when known, and the fix.

pub mod catalog;
pub mod config;
pub mod control;
pub mod error;
pub mod pipeline;
pub mod replication;
pub mod snapshot;
pub mod snapshot_copy;
pub mod snapshot_incremental;
pub mod snapshot_plan;
mod snapshot_reader;
mod spill;
pub mod stream;
pub mod tls;
mod wire;

pub use catalog::{CatalogColumn, RelationCatalog};
pub use config::{PgConnectConfig, TlsMode};
pub use control::{EnsuredSlot, PgControl, PublicationTables, ServerInfo, SlotInfo};
pub use error::{Location, PgSourceError, ServerError};
pub use replication::{
    parse_stream_message, CreatedSlot, ReplicationConnection, SnapshotAction, StreamMessage,
    SystemIdentity,
};
pub use wire::StartupInfo;

/// Formats an LSN the way PostgreSQL does: `16/B374D848`.
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// Parses `16/B374D848`.
pub fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.trim().split_once('/')?;
    let hi = u32::from_str_radix(hi, 16).ok()?;
    let lo = u32::from_str_radix(lo, 16).ok()?;
    Some((u64::from(hi) << 32) | u64::from(lo))
}

/// Quotes an identifier for SQL and replication commands: `"a""b"`.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Quotes a string literal: `'it''s'` (standard_conforming_strings is on since PG 9.1).
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// What to ask pgoutput for; [`to_options`](Self::to_options) clamps it to the server version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgOutputOptions {
    /// Publications to decode.
    pub publications: Vec<String>,
    /// Stream in-progress transactions (PG 14+, proto ≥ 2).
    pub streaming: bool,
    /// Include `pg_logical_emit_message` messages (PG 14+).
    pub messages: bool,
    /// Binary column values (PG 14+); the decoder must then parse the binary formats.
    pub binary: bool,
    /// `origin` filter (`none` or `any`, PG 16+); `None` leaves the server default (`any`).
    pub origin: Option<String>,
    /// Upper bound for `proto_version`; `None` takes the highest the server supports.
    pub max_proto_version: Option<u32>,
}

impl PgOutputOptions {
    /// Options for publications with the defaults: streaming and messages on, text values.
    pub fn new(publications: Vec<String>) -> Self {
        PgOutputOptions {
            publications,
            streaming: true,
            messages: true,
            binary: false,
            origin: None,
            max_proto_version: None,
        }
    }

    /// The highest pgoutput protocol version of a server (`server_version_num`).
    pub fn server_proto_version(server_version_num: u32) -> u32 {
        match server_version_num {
            v if v >= 160000 => 4,
            v if v >= 150000 => 3,
            v if v >= 140000 => 2,
            _ => 1,
        }
    }

    /// START_REPLICATION options for this server.
    pub fn to_options(&self, server_version_num: u32) -> Vec<(String, String)> {
        let proto = Self::server_proto_version(server_version_num)
            .min(self.max_proto_version.unwrap_or(u32::MAX))
            .max(1);
        let pubs: Vec<String> = self.publications.iter().map(|p| quote_ident(p)).collect();
        let mut opts = vec![
            ("proto_version".to_string(), proto.to_string()),
            ("publication_names".to_string(), pubs.join(",")),
        ];
        let pg14 = server_version_num >= 140000;
        if self.streaming && pg14 && proto >= 2 {
            opts.push(("streaming".into(), "on".into()));
        }
        if self.messages && pg14 {
            opts.push(("messages".into(), "true".into()));
        }
        if self.binary && pg14 {
            opts.push(("binary".into(), "true".into()));
        }
        if let (Some(origin), true) = (&self.origin, server_version_num >= 160000) {
            opts.push(("origin".into(), origin.clone()));
        }
        opts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_round_trip() {
        assert_eq!(format_lsn(0x16_B374_D848), "16/B374D848");
        assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("x"), None);
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    #[test]
    fn pgoutput_options_by_version() {
        let o = PgOutputOptions {
            origin: Some("none".into()),
            binary: true,
            ..PgOutputOptions::new(vec!["p".into()])
        };
        let get = |v: u32| {
            o.to_options(v)
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(get(130011), "proto_version=1 publication_names=\"p\"");
        assert_eq!(
            get(140005),
            "proto_version=2 publication_names=\"p\" streaming=on messages=true binary=true"
        );
        assert_eq!(
            get(150020),
            "proto_version=3 publication_names=\"p\" streaming=on messages=true binary=true"
        );
        assert!(get(160001).starts_with("proto_version=4") && get(160001).ends_with("origin=none"));
        let capped = PgOutputOptions {
            max_proto_version: Some(1),
            ..o.clone()
        };
        assert!(!capped
            .to_options(150000)
            .iter()
            .any(|(k, _)| k == "streaming"));
    }
}
