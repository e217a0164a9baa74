//! `[source]` with `kind = "mysql"`: a MySQL 8.x or MariaDB 10.5+ server read as a replica.

use std::time::Duration;

use serde::Deserialize;
use tidemark_model::{Gtid, GtidSet, TableId};

use crate::config::Secret;

/// `[source]` with `kind = "mysql"` (MySQL or MariaDB).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlSourceConfig {
    /// `mysql://user@host:port` (mysql_async URL; `?require_ssl=true&verify_ca=true` for TLS).
    /// Put the password in `password`, not here.
    pub url: String,
    /// The password, from the environment or a file (never inline, never logged).
    #[serde(default)]
    pub password: Option<Secret>,
    /// The replica `server_id` Tidemark registers with; must differ from the server's and every
    /// other replica's. Default 6401 (outside Debezium's random 5400–6400).
    #[serde(default = "default_server_id")]
    pub server_id: u32,
    /// Where to start when there is no checkpoint: `"current"` (default: the server's current
    /// binlog position), `"earliest"` (the oldest binlog file), `"<file>:<pos>"`
    /// (`mysql-bin.000003:4`), or `"gtid:<set>"` (MariaDB `0-1-100[,1-1-7]`, MySQL
    /// `uuid:1-100[,uuid:1-5]`: the transactions already seen).
    #[serde(default = "default_start")]
    pub start: String,
    /// Databases to capture. Empty: every database except the system ones.
    #[serde(default)]
    pub databases: Vec<String>,
    /// Tables to capture, as `db.table`. Empty: every table of the captured databases.
    #[serde(default)]
    pub tables: Vec<String>,
    /// Databases never captured (checked after `databases`).
    #[serde(default)]
    pub exclude_databases: Vec<String>,
    /// Tables never captured, as `db.table`.
    #[serde(default)]
    pub exclude_tables: Vec<String>,
    /// Heartbeat period asked of the server (`@master_heartbeat_period`). No event for three
    /// periods means the connection is dead: reconnect. Default 10 s.
    #[serde(default = "default_heartbeat", with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// Longest wait between reconnect attempts (exponential backoff from 500 ms). Default 30 s.
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Accept `binlog_row_image=MINIMAL/NOBLOB` (columns not logged become "unchanged" markers;
    /// Debezium output then lacks them). Default false: FULL is required.
    #[serde(default)]
    pub allow_partial_images: bool,
    /// Rows per chunk of a long transaction (bounded memory). Default 65 536.
    #[serde(default = "default_chunk_rows")]
    pub max_chunk_rows: usize,
    /// Debezium's `topic.prefix`-like logical name (`source.name`). Default: the pipeline name.
    #[serde(default)]
    pub server_name: Option<String>,
    /// Debezium's `include.query`: `source.query` carries the SQL statement behind each row
    /// change. MySQL logs it with `binlog_rows_query_log_events = ON` (ROWS_QUERY events);
    /// MariaDB with `binlog_annotate_row_events = ON` (the default; ANNOTATE_ROWS events, which
    /// Tidemark then asks the server for). Default false: `source.query` is null.
    #[serde(default)]
    pub include_query: bool,
}

const fn default_server_id() -> u32 {
    6401
}
fn default_start() -> String {
    "current".into()
}
/// MySQL's `slave_net_timeout` is 60 s and a replica's default heartbeat half of it; 10 s keeps
/// lag metrics fresh.
const fn default_heartbeat() -> Duration {
    Duration::from_secs(10)
}
const fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}
/// The decoder's default chunk.
const fn default_chunk_rows() -> usize {
    65_536
}

/// Where to start without a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    Current,
    Earliest,
    File {
        file: String,
        pos: u64,
    },
    /// MariaDB GTIDs (one per domain) for `@slave_connect_state`.
    MariadbGtids(Vec<Gtid>),
    /// The MySQL GTIDs already seen, for `COM_BINLOG_DUMP_GTID`.
    MysqlGtidSet(GtidSet),
}

/// System databases never captured.
pub const SYSTEM_DATABASES: &[&str] = &["mysql", "information_schema", "performance_schema", "sys"];

impl MysqlSourceConfig {
    /// Parses `start`.
    pub fn start(&self) -> Result<Start, String> {
        let s = self.start.trim();
        match s {
            "current" => return Ok(Start::Current),
            "earliest" => return Ok(Start::Earliest),
            _ => {}
        }
        if let Some(set) = s.strip_prefix("gtid:") {
            let parts: Vec<&str> = set
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .collect();
            if parts.is_empty() {
                return Err("an empty GTID set".into());
            }
            if parts
                .iter()
                .all(|p| p.split('-').count() == 3 && !p.contains(':'))
            {
                return parts
                    .iter()
                    .map(|p| p.parse::<Gtid>().map_err(|e| e.to_string()))
                    .collect::<Result<_, _>>()
                    .map(Start::MariadbGtids);
            }
            return set
                .parse::<GtidSet>()
                .map(Start::MysqlGtidSet)
                .map_err(|e| e.to_string());
        }
        let (file, pos) = s
            .rsplit_once(':')
            .ok_or("expected current, earliest, <file>:<pos> or gtid:<set>")?;
        if tidemark_model::mysql_position::binlog_file_number(file).is_none() {
            return Err(format!(
                "{file:?} is not a binlog file name like mysql-bin.000003"
            ));
        }
        let pos = pos
            .parse()
            .map_err(|_| format!("{pos:?} is not a byte offset"))?;
        if pos < 4 {
            return Err("a binlog position is at least 4".into());
        }
        Ok(Start::File {
            file: file.into(),
            pos,
        })
    }

    /// Whether a table's changes are captured.
    pub fn includes(&self, t: &TableId) -> bool {
        let full = format!("{}.{}", t.namespace, t.name);
        if SYSTEM_DATABASES.contains(&t.namespace.as_str())
            && !self.databases.contains(&t.namespace)
        {
            return false;
        }
        if !self.databases.is_empty() && !self.databases.contains(&t.namespace) {
            return false;
        }
        if !self.tables.is_empty() && !self.tables.contains(&full) {
            return false;
        }
        !(self.exclude_databases.contains(&t.namespace) || self.exclude_tables.contains(&full))
    }

    /// Checks without IO; reports each problem with its key.
    pub fn validate(&self, problem: &mut impl FnMut(&str, String)) {
        if !self.url.starts_with("mysql://") {
            problem(
                "source.url",
                format!("{:?} must start with mysql://", self.url),
            );
        } else if let Ok(o) = mysql_async::Opts::from_url(&self.url) {
            if o.pass().is_some() {
                problem(
                    "source.url",
                    "contains a password; move it to source.password (env or file)".into(),
                );
            }
        } else {
            problem(
                "source.url",
                format!("{:?} is not a valid mysql:// URL", self.url),
            );
        }
        if self.server_id == 0 {
            problem(
                "source.server_id",
                "0 is not allowed for a replica; pick a unique id, e.g. 6401".into(),
            );
        }
        if let Err(e) = self.start() {
            problem("source.start", format!("{:?}: {e}", self.start));
        }
        for (key, list) in [
            ("source.tables", &self.tables),
            ("source.exclude_tables", &self.exclude_tables),
        ] {
            for (i, t) in list.iter().enumerate() {
                if t.split('.').count() != 2 || t.starts_with('.') || t.ends_with('.') {
                    problem(&format!("{key}[{i}]"), format!("{t:?} must be db.table"));
                }
            }
        }
        if self.heartbeat_interval.is_zero()
            || self.heartbeat_interval > Duration::from_secs(4_294_967)
        {
            problem(
                "source.heartbeat_interval",
                "must be between 1 ms and 4294967 s, e.g. \"10s\"".into(),
            );
        }
        if self.max_chunk_rows == 0 {
            problem("source.max_chunk_rows", "must be at least 1".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(start: &str) -> MysqlSourceConfig {
        toml::from_str(&format!(
            "url = \"mysql://root@127.0.0.1:3306\"\nstart = \"{start}\""
        ))
        .unwrap()
    }

    #[test]
    fn starts() {
        assert_eq!(cfg("current").start(), Ok(Start::Current));
        assert_eq!(
            cfg("mariadb-bin.000003:389").start(),
            Ok(Start::File {
                file: "mariadb-bin.000003".into(),
                pos: 389
            })
        );
        assert!(
            matches!(cfg("gtid:0-1-100,1-2-3").start(), Ok(Start::MariadbGtids(g)) if g.len() == 2)
        );
        assert!(matches!(
            cfg("gtid:3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7-9").start(),
            Ok(Start::MysqlGtidSet(s)) if s.to_string() == "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7-9"
        ));
        assert!(cfg("gtid:3e11fa47-71ca-11e1-9e33-c80aa9429562:tag:1-5")
            .start()
            .is_err());
        assert!(cfg("gtid:3e11fa47-71ca-11e1-9e33-c80aa9429562:0")
            .start()
            .is_err());
        assert!(cfg("gtid:").start().is_err());
        assert!(cfg("bin:4").start().is_err());
        assert!(cfg("mysql-bin.000001:2").start().is_err());
    }

    #[test]
    fn include_query_is_off_by_default() {
        assert!(!cfg("current").include_query);
        let on: MysqlSourceConfig =
            toml::from_str("url = \"mysql://root@127.0.0.1:3306\"\ninclude_query = true").unwrap();
        assert!(on.include_query);
    }

    #[test]
    fn filters_and_validation() {
        let mut c = cfg("current");
        c.databases = vec!["shop".into()];
        c.exclude_tables = vec!["shop.audit".into()];
        assert!(c.includes(&TableId::new("shop", "orders")));
        assert!(!c.includes(&TableId::new("shop", "audit")));
        assert!(!c.includes(&TableId::new("other", "x")));
        let c2 = cfg("current");
        assert!(!c2.includes(&TableId::new("mysql", "user")));
        let mut bad = cfg("nope");
        bad.url = "mysql://root:secret@h".into();
        bad.server_id = 0;
        bad.tables = vec!["notqualified".into()];
        let mut problems = Vec::new();
        bad.validate(&mut |k, m| problems.push(format!("{k}: {m}")));
        assert_eq!(problems.len(), 4, "{problems:?}");
    }
}
