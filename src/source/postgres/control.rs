//! The control plane: a normal (non-replication) tokio-postgres connection for setup checks,
//! publications, slot inspection/creation/removal and catalog lookups.
//!
//! TLS on this connection uses the same rustls config as the replication connection
//! ([`RustlsConnector`](super::tls::RustlsConnector)); `TlsMode::Disable` uses `NoTls`.
//! Slot *creation* goes through the replication connection (`CREATE_REPLICATION_SLOT ...
//! LOGICAL pgoutput`), because only that returns the consistent point (and can export a
//! snapshot); `pg_create_logical_replication_slot()` cannot export one.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio_postgres::config::{ChannelBinding, SslMode};
use tokio_postgres::{Client, NoTls};

use super::config::{PgConnectConfig, TlsMode};
use super::error::{Location, PgSourceError};
use super::replication::{ReplicationConnection, SnapshotAction};
use super::tls::{self, RustlsConnector};
use super::{format_lsn, parse_lsn, quote_ident};

/// How long to wait for a terminated walsender to release its slot.
const RELEASE_WAIT: Duration = Duration::from_secs(10);

/// A control connection plus its location for error messages.
pub struct PgControl {
    /// The tokio-postgres client; usable for other queries (e.g. snapshot reads).
    pub client: Client,
    at: Location,
    cfg: PgConnectConfig,
}

/// Result of [`PgControl::check_server`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    pub server_version_num: u32,
    pub wal_level: String,
    pub max_replication_slots: i32,
    pub used_replication_slots: i32,
    pub max_wal_senders: i32,
    pub role: String,
    pub is_superuser: bool,
    pub has_replication: bool,
}

/// Tables a publication must cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicationTables {
    /// `FOR ALL TABLES`.
    All,
    /// `(schema, table)` pairs.
    Tables(Vec<(String, String)>),
}

/// A row of `pg_replication_slots`, plus lag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    pub slot_name: String,
    pub plugin: Option<String>,
    pub slot_type: String,
    pub database: Option<String>,
    pub active: bool,
    pub active_pid: Option<i32>,
    pub confirmed_flush_lsn: Option<u64>,
    pub restart_lsn: Option<u64>,
    /// `reserved`, `extended`, `unreserved`, `lost` (PG 13+; `None` before).
    pub wal_status: Option<String>,
    /// `pg_current_wal_lsn() - confirmed_flush_lsn` in bytes (replay LSN on a standby).
    pub lag_bytes: Option<i64>,
}

/// Result of [`PgControl::ensure_slot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnsuredSlot {
    /// Where streaming resumes: the slot's `confirmed_flush_lsn`, or the consistent point of a
    /// slot we just created.
    pub confirmed_flush_lsn: u64,
    pub created: bool,
}

impl PgControl {
    /// Opens the control connection (same host, user, database and TLS mode as `cfg`).
    pub async fn connect(cfg: &PgConnectConfig) -> Result<Self, PgSourceError> {
        let at = Location::server(cfg.addr());
        let mut pg = tokio_postgres::Config::new();
        pg.host(&cfg.host)
            .port(cfg.port)
            .user(&cfg.user)
            .dbname(&cfg.dbname)
            .application_name(format!("{}-control", cfg.application_name))
            .connect_timeout(cfg.connect_timeout)
            // We provide no tls-server-end-point data (see tls.rs traps).
            .channel_binding(ChannelBinding::Disable);
        if let Some(p) = &cfg.password {
            pg.password(p);
        }
        let client = match tls::client_config(cfg)? {
            Some(c) if !cfg.is_unix_socket() => {
                pg.ssl_mode(if cfg.tls == TlsMode::Prefer {
                    SslMode::Prefer
                } else {
                    SslMode::Require
                });
                let (client, conn) = pg
                    .connect(RustlsConnector(c))
                    .await
                    .map_err(|e| connect_error(&at, cfg, e))?;
                spawn_connection(conn, at.clone());
                client
            }
            _ => {
                pg.ssl_mode(SslMode::Disable);
                let (client, conn) = pg
                    .connect(NoTls)
                    .await
                    .map_err(|e| connect_error(&at, cfg, e))?;
                spawn_connection(conn, at.clone());
                client
            }
        };
        Ok(PgControl {
            client,
            at,
            cfg: cfg.clone(),
        })
    }

    pub(crate) fn at(&self) -> &Location {
        &self.at
    }

    /// Checks that the server can serve logical replication to this role; every problem found
    /// is listed with what to change.
    pub async fn check_server(&self) -> Result<ServerInfo, PgSourceError> {
        let row = self
            .client
            .query_one(
                "SELECT current_setting('server_version_num')::int4, current_setting('wal_level'),
                        current_setting('max_replication_slots')::int4,
                        (SELECT count(*) FROM pg_replication_slots)::int4,
                        current_setting('max_wal_senders')::int4, r.rolname::text, r.rolsuper, r.rolreplication
                 FROM pg_roles r WHERE r.rolname = current_user",
                &[],
            )
            .await
            .map_err(|e| PgSourceError::control(&self.at, "check_server", e))?;
        let get_err = |e| PgSourceError::control(&self.at, "check_server", e);
        let info = ServerInfo {
            server_version_num: row.try_get::<_, i32>(0).map_err(get_err)?.max(0) as u32,
            wal_level: row.try_get(1).map_err(get_err)?,
            max_replication_slots: row.try_get(2).map_err(get_err)?,
            used_replication_slots: row.try_get(3).map_err(get_err)?,
            max_wal_senders: row.try_get(4).map_err(get_err)?,
            role: row.try_get(5).map_err(get_err)?,
            is_superuser: row.try_get(6).map_err(get_err)?,
            has_replication: row.try_get(7).map_err(get_err)?,
        };
        let problems = server_problems(&info);
        if problems.is_empty() {
            Ok(info)
        } else {
            Err(PgSourceError::ServerSetup {
                at: self.at.clone(),
                problems,
            })
        }
    }

    /// Makes sure publication `name` exists and covers `tables`. Returns whether it was created.
    pub async fn ensure_publication(
        &self,
        name: &str,
        tables: &PublicationTables,
        create: bool,
    ) -> Result<bool, PgSourceError> {
        let q = |e| PgSourceError::control(&self.at, "ensure_publication", e);
        let problem = |problem: String| PgSourceError::Publication {
            at: self.at.clone(),
            name: name.to_string(),
            problem,
        };
        let existing = self
            .client
            .query_opt(
                "SELECT puballtables FROM pg_publication WHERE pubname = $1",
                &[&name],
            )
            .await
            .map_err(q)?;
        let Some(row) = existing else {
            if !create {
                return Err(problem(format!(
                    "does not exist; run `{}` or set create_publication = true",
                    create_publication_sql(name, tables)
                )));
            }
            self.client
                .batch_execute(&create_publication_sql(name, tables))
                .await
                .map_err(q)?;
            tracing::info!(publication = name, "publication created");
            return Ok(true);
        };
        let all_tables: bool = row.try_get(0).map_err(q)?;
        let wanted = match (tables, all_tables) {
            (_, true) => return Ok(false),
            (PublicationTables::All, false) => {
                return Err(problem("is not FOR ALL TABLES but all tables are configured; recreate it FOR ALL TABLES or list the tables".into()))
            }
            (PublicationTables::Tables(t), false) => t,
        };
        let rows = self
            .client
            .query("SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1", &[&name])
            .await
            .map_err(q)?;
        let mut covered = BTreeSet::new();
        for r in rows {
            covered.insert((
                r.try_get::<_, String>(0).map_err(q)?,
                r.try_get::<_, String>(1).map_err(q)?,
            ));
        }
        let missing: Vec<String> = wanted
            .iter()
            .filter(|t| !covered.contains(*t))
            .map(|(s, t)| format!("{}.{}", quote_ident(s), quote_ident(t)))
            .collect();
        if missing.is_empty() {
            Ok(false)
        } else {
            Err(problem(format!(
                "does not cover {}; run `ALTER PUBLICATION {} ADD TABLE {}`",
                missing.join(", "),
                quote_ident(name),
                missing.join(", ")
            )))
        }
    }

    /// Reads `pg_replication_slots` for `name`.
    pub async fn slot_info(&self, name: &str) -> Result<Option<SlotInfo>, PgSourceError> {
        let q = |e| PgSourceError::control(&self.at, "slot_info", e);
        // row_to_json: wal_status exists only on PG 13+; on a standby pg_current_wal_lsn() fails.
        let row = self
            .client
            .query_opt(
                "SELECT s.slot_name::text, s.plugin::text, s.slot_type, s.database::text, s.active, s.active_pid,
                        s.confirmed_flush_lsn::text, s.restart_lsn::text, row_to_json(s)->>'wal_status',
                        pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
                                             ELSE pg_current_wal_lsn() END, s.confirmed_flush_lsn)::int8
                 FROM pg_replication_slots s WHERE s.slot_name = $1",
                &[&name],
            )
            .await
            .map_err(q)?;
        let Some(r) = row else { return Ok(None) };
        let lsn = |i: usize| -> Result<Option<u64>, PgSourceError> {
            Ok(r.try_get::<_, Option<String>>(i)
                .map_err(q)?
                .and_then(|s| parse_lsn(&s)))
        };
        Ok(Some(SlotInfo {
            slot_name: r.try_get(0).map_err(q)?,
            plugin: r.try_get(1).map_err(q)?,
            slot_type: r.try_get(2).map_err(q)?,
            database: r.try_get(3).map_err(q)?,
            active: r.try_get(4).map_err(q)?,
            active_pid: r.try_get(5).map_err(q)?,
            confirmed_flush_lsn: lsn(6)?,
            restart_lsn: lsn(7)?,
            wal_status: r.try_get(8).map_err(q)?,
            lag_bytes: r.try_get(9).map_err(q)?,
        }))
    }

    /// Makes sure the logical pgoutput slot `name` exists in this database and is usable.
    /// A missing slot is created (when `create`) on a fresh replication connection with
    /// `NOEXPORT_SNAPSHOT`; callers that need a snapshot create it themselves with
    /// [`ReplicationConnection::create_logical_slot`] and `SnapshotAction::Export`.
    pub async fn ensure_slot(
        &self,
        name: &str,
        create: bool,
    ) -> Result<EnsuredSlot, PgSourceError> {
        let at = self.at.clone().with_slot(name);
        match self.slot_info(name).await? {
            Some(info) => {
                let confirmed_flush_lsn = check_slot_usable(&info, &self.cfg.dbname, &at)?;
                Ok(EnsuredSlot {
                    confirmed_flush_lsn,
                    created: false,
                })
            }
            None if !create => Err(PgSourceError::SlotMissing { at }),
            None => {
                let mut conn = ReplicationConnection::connect(&self.cfg).await?;
                let created = conn
                    .create_logical_slot(name, false, SnapshotAction::NoExport)
                    .await;
                conn.close().await;
                let created = created?;
                tracing::info!(slot = name, lsn = %format_lsn(created.consistent_point), "replication slot created");
                Ok(EnsuredSlot {
                    confirmed_flush_lsn: created.consistent_point,
                    created: true,
                })
            }
        }
    }

    /// Drops the slot. Returns false when it did not exist. Fails with `SlotInUse` while a
    /// walsender streams from it.
    pub async fn drop_slot(&self, name: &str) -> Result<bool, PgSourceError> {
        let at = self.at.clone().with_slot(name);
        let q = |e| PgSourceError::control(&at, "drop_slot", e);
        let n = self
            .client
            .execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
                &[&name],
            )
            .await
            .map_err(q)?;
        if n > 0 {
            tracing::info!(slot = name, "replication slot dropped");
        }
        Ok(n > 0)
    }

    /// `pg_terminate_backend(pid)`; true when the signal was sent.
    pub async fn terminate_backend(&self, pid: i32) -> Result<bool, PgSourceError> {
        let row = self
            .client
            .query_one("SELECT pg_terminate_backend($1)", &[&pid])
            .await
            .map_err(|e| PgSourceError::control(&self.at, "terminate_backend", e))?;
        row.try_get(0)
            .map_err(|e| PgSourceError::control(&self.at, "terminate_backend", e))
    }

    /// START_REPLICATION with the slot checks of the module traps: a missing slot or one whose
    /// WAL is lost fails definitely before starting; a slot held by another PID (55006) is
    /// reclaimed with `pg_terminate_backend` when `terminate_stale`, then retried once.
    pub async fn start_replication_reclaiming(
        &self,
        conn: &mut ReplicationConnection,
        slot: &str,
        start_lsn: u64,
        options: &[(&str, &str)],
        terminate_stale: bool,
    ) -> Result<(), PgSourceError> {
        let at = self.at.clone().with_slot(slot).with_lsn(start_lsn);
        let info = self
            .slot_info(slot)
            .await?
            .ok_or_else(|| PgSourceError::SlotMissing { at: at.clone() })?;
        check_slot_usable(&info, &self.cfg.dbname, &at)?;
        let active_pid = match conn.start_replication(slot, start_lsn, options).await {
            Err(PgSourceError::SlotInUse { active_pid, .. }) if terminate_stale => active_pid,
            other => return other,
        };
        // The PID from pg_replication_slots is authoritative; the message's PID is a fallback.
        let pid = self
            .slot_info(slot)
            .await?
            .and_then(|s| s.active_pid)
            .or(active_pid);
        if let Some(pid) = pid {
            tracing::warn!(
                slot,
                active_pid = pid,
                "replication slot held by another backend; terminating it"
            );
            self.terminate_backend(pid).await?;
            self.wait_slot_released(slot).await?;
        }
        conn.start_replication(slot, start_lsn, options).await
    }

    async fn wait_slot_released(&self, slot: &str) -> Result<(), PgSourceError> {
        let deadline = tokio::time::Instant::now() + RELEASE_WAIT;
        while tokio::time::Instant::now() < deadline {
            match self.slot_info(slot).await? {
                Some(s) if s.active => tokio::time::sleep(Duration::from_millis(50)).await,
                _ => return Ok(()),
            }
        }
        // Let START_REPLICATION report SlotInUse again: transient, the caller backs off.
        Ok(())
    }
}

fn spawn_connection<S, T>(conn: tokio_postgres::Connection<S, T>, at: Location)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!(addr = %at.addr, error = %e, "control connection ended");
        }
    });
}

fn connect_error(at: &Location, cfg: &PgConnectConfig, e: tokio_postgres::Error) -> PgSourceError {
    match PgSourceError::control(at, "connect", e) {
        PgSourceError::Auth { at, message, .. } => PgSourceError::Auth {
            at,
            user: cfg.user.clone(),
            message,
        },
        other => other,
    }
}

fn server_problems(info: &ServerInfo) -> Vec<String> {
    let mut problems = Vec::new();
    if info.server_version_num < 100000 {
        problems.push(format!(
            "server_version_num is {}; pgoutput needs PostgreSQL 10 or newer",
            info.server_version_num
        ));
    }
    if info.wal_level != "logical" {
        problems.push(format!(
            "wal_level is {}; set wal_level = logical in postgresql.conf and restart",
            info.wal_level
        ));
    }
    if info.max_replication_slots < 1 {
        problems.push("max_replication_slots is 0; set it to at least 1 (plus one per other consumer) and restart".into());
    }
    if info.max_wal_senders < 1 {
        problems.push("max_wal_senders is 0; set it to at least 1 and restart".into());
    }
    if !info.is_superuser && !info.has_replication {
        problems.push(format!(
            "role {} has neither REPLICATION nor superuser; run `ALTER ROLE {} REPLICATION` (on RDS: GRANT rds_replication TO {})",
            info.role,
            quote_ident(&info.role),
            quote_ident(&info.role)
        ));
    }
    problems
}

fn create_publication_sql(name: &str, tables: &PublicationTables) -> String {
    match tables {
        PublicationTables::All => {
            format!("CREATE PUBLICATION {} FOR ALL TABLES", quote_ident(name))
        }
        PublicationTables::Tables(t) => {
            let list: Vec<String> = t
                .iter()
                .map(|(s, t)| format!("{}.{}", quote_ident(s), quote_ident(t)))
                .collect();
            format!(
                "CREATE PUBLICATION {} FOR TABLE {}",
                quote_ident(name),
                list.join(", ")
            )
        }
    }
}

/// A slot is usable when it is a logical pgoutput slot of our database with WAL available.
fn check_slot_usable(info: &SlotInfo, dbname: &str, at: &Location) -> Result<u64, PgSourceError> {
    let unusable = |reason: String| PgSourceError::SlotUnusable {
        at: at.clone(),
        reason,
    };
    if info.slot_type != "logical" || info.plugin.as_deref() != Some("pgoutput") {
        return Err(unusable(format!(
            "it is a {} slot with plugin {:?}; drop it or use another slot name",
            info.slot_type, info.plugin
        )));
    }
    if info.database.as_deref() != Some(dbname) {
        return Err(unusable(format!(
            "it belongs to database {:?}, not {dbname:?}",
            info.database
        )));
    }
    if info.wal_status.as_deref() == Some("lost") {
        return Err(PgSourceError::SlotLost {
            at: at.clone(),
            reason: "wal_status = 'lost' in pg_replication_slots".into(),
        });
    }
    info.confirmed_flush_lsn
        .ok_or_else(|| unusable("confirmed_flush_lsn is NULL (slot still being created?)".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_all_setup_problems() {
        let info = ServerInfo {
            server_version_num: 150000,
            wal_level: "replica".into(),
            max_replication_slots: 0,
            used_replication_slots: 0,
            max_wal_senders: 10,
            role: "app".into(),
            is_superuser: false,
            has_replication: false,
        };
        let p = server_problems(&info);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].contains("wal_level = logical"));
        assert!(p[2].contains("ALTER ROLE \"app\" REPLICATION"));
    }

    #[test]
    fn slot_checks() {
        let at = Location::server("h:1").with_slot("s");
        let mut info = SlotInfo {
            slot_name: "s".into(),
            plugin: Some("pgoutput".into()),
            slot_type: "logical".into(),
            database: Some("db".into()),
            active: false,
            active_pid: None,
            confirmed_flush_lsn: Some(42),
            restart_lsn: Some(40),
            wal_status: Some("reserved".into()),
            lag_bytes: Some(0),
        };
        assert_eq!(check_slot_usable(&info, "db", &at).ok(), Some(42));
        assert!(matches!(
            check_slot_usable(&info, "other", &at),
            Err(PgSourceError::SlotUnusable { .. })
        ));
        info.wal_status = Some("lost".into());
        let e = check_slot_usable(&info, "db", &at).expect_err("lost slot");
        assert!(matches!(e, PgSourceError::SlotLost { .. }) && !e.is_transient());
        info.plugin = Some("wal2json".into());
        assert!(matches!(
            check_slot_usable(&info, "db", &at),
            Err(PgSourceError::SlotUnusable { .. })
        ));
    }

    #[test]
    fn publication_sql() {
        let t = PublicationTables::Tables(vec![("public".into(), "a\"b".into())]);
        assert_eq!(
            create_publication_sql("p", &t),
            "CREATE PUBLICATION \"p\" FOR TABLE \"public\".\"a\"\"b\""
        );
    }
}
