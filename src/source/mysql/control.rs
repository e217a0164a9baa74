//! The SQL side of the MySQL source: server checks with exact fixes, binlog files and the
//! current position, and the catalog (`information_schema`) of a table.

use mysql_async::prelude::*;
use mysql_async::{Conn, Opts, OptsBuilder, Row};
use tidemark_binlog::{CatalogColumn, TableCatalog};
use tidemark_model::mysql_types::GeometryKind;
use tidemark_model::TableId;

use super::config::MysqlSourceConfig;
use super::error::MysqlSourceError;
use crate::config::Secret;

/// What `check_server` found.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub version: String,
    pub mariadb: bool,
    pub server_id: u32,
    pub binlog_format: String,
    pub binlog_row_image: String,
    pub binlog_row_metadata: String,
    pub binlog_checksum: String,
    /// MySQL `gtid_mode` / MariaDB `gtid_current_pos`.
    pub gtid: String,
}

/// One row of `SHOW MASTER STATUS`.
#[derive(Debug, Clone)]
pub struct MasterStatus {
    pub file: String,
    pub pos: u64,
    /// MySQL's `Executed_Gtid_Set` (newlines after commas; empty with GTIDs off).
    pub executed_gtid_set: Option<String>,
}

/// Connection options of a source, password included.
pub fn opts(c: &MysqlSourceConfig) -> Result<Opts, MysqlSourceError> {
    let base =
        Opts::from_url(&c.url).map_err(|e| MysqlSourceError::Config(format!("source.url: {e}")))?;
    let password = match &c.password {
        Some(s) => Some(read_secret(s)?),
        None => None,
    };
    let mut b = OptsBuilder::from_opts(base).prefer_socket(false);
    if password.is_some() {
        b = b.pass(password);
    }
    Ok(b.into())
}

fn read_secret(s: &Secret) -> Result<String, MysqlSourceError> {
    s.read()
        .map_err(|e| MysqlSourceError::Config(format!("source.password: {e}")))
}

/// `host:port` for messages.
pub fn addr(o: &Opts) -> String {
    format!("{}:{}", o.ip_or_hostname(), o.tcp_port())
}

/// A SQL connection to the source.
pub struct MysqlControl {
    pub conn: Conn,
    pub addr: String,
}

type R<T> = Result<T, MysqlSourceError>;

/// `COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, CHARACTER_SET_NAME, COLUMN_KEY, CHARACTER_MAXIMUM_LENGTH`.
type ColumnRow = (String, String, String, Option<String>, String, Option<u64>);

/// Result rows converted to `T`, a row whose values do not fit `T` (a NULL where text is
/// expected, a number that is not one) an error naming `context`. mysql_async's typed
/// `exec`/`query` (`Vec<(String, …)>`) and `Row::take` *panic* on such a value, and these rows
/// are the server's (or a proxy's) replies: read `Row`s and convert them here instead.
/// Transient like the driver's other unexpected replies (STYLE §2: unknown means transient).
pub(crate) fn typed_rows<T: FromRow>(
    addr: &str,
    context: &'static str,
    rows: Vec<Row>,
) -> R<Vec<T>> {
    rows.into_iter()
        .map(|r| typed_row(addr, context, r))
        .collect()
}

/// One row as [`typed_rows`] converts it.
pub(crate) fn typed_row<T: FromRow>(addr: &str, context: &'static str, row: Row) -> R<T> {
    mysql_async::from_row_opt::<T>(row).map_err(|e| MysqlSourceError::Client {
        addr: addr.to_owned(),
        context,
        source: mysql_async::Error::Other(Box::new(e)),
    })
}

/// Column `i` of a `SHOW …` row as `T`: `None` when the row is shorter or the value is NULL or
/// does not fit (never `Row::take`'s panic).
fn cell<T: FromValue>(r: &mut Row, i: usize) -> Option<T> {
    match r.take_opt::<Option<T>, _>(i) {
        Some(Ok(v)) => v,
        _ => None,
    }
}

impl MysqlControl {
    pub async fn connect(o: &Opts) -> R<Self> {
        let addr = addr(o);
        let conn = Conn::new(o.clone())
            .await
            .map_err(|source| MysqlSourceError::Client {
                addr: addr.clone(),
                context: "connect",
                source,
            })?;
        Ok(MysqlControl { conn, addr })
    }

    fn err(
        &self,
        context: &'static str,
    ) -> impl FnOnce(mysql_async::Error) -> MysqlSourceError + '_ {
        move |source| MysqlSourceError::Client {
            addr: self.addr.clone(),
            context,
            source,
        }
    }

    /// `SELECT @@GLOBAL.<name>`; `None` when the server does not know the variable.
    pub async fn var(&mut self, name: &str) -> R<Option<String>> {
        let q = format!("SELECT @@GLOBAL.{name}");
        match self.conn.query_first::<Row, _>(q).await {
            Ok(None) => Ok(None),
            Ok(Some(r)) => {
                Ok(typed_row::<(Option<String>,)>(&self.addr, "reading server variables", r)?.0)
            }
            // 1193: unknown system variable (older server or the other flavour).
            Err(mysql_async::Error::Server(s)) if s.code == 1193 => Ok(None),
            Err(source) => Err(MysqlSourceError::Client {
                addr: self.addr.clone(),
                context: "reading server variables",
                source,
            }),
        }
    }

    /// Reads the settings CDC needs; every wrong one is reported with the exact fix.
    pub async fn check_server(&mut self, allow_partial_images: bool) -> R<ServerInfo> {
        let version = self.var("version").await?.unwrap_or_default();
        let mariadb = version.contains("MariaDB");
        let get = |v: Option<String>| v.unwrap_or_default();
        let info = ServerInfo {
            mariadb,
            server_id: get(self.var("server_id").await?).parse().unwrap_or(0),
            binlog_format: get(self.var("binlog_format").await?),
            binlog_row_image: get(self.var("binlog_row_image").await?),
            binlog_row_metadata: get(self.var("binlog_row_metadata").await?),
            binlog_checksum: get(self.var("binlog_checksum").await?),
            gtid: get(if mariadb {
                self.var("gtid_current_pos").await?
            } else {
                self.var("gtid_mode").await?
            }),
            version,
        };
        let log_bin = get(self.var("log_bin").await?);
        let (cnf, section) = if mariadb {
            ("my.cnf", "[mariadbd]")
        } else {
            ("my.cnf", "[mysqld]")
        };
        let mut problems = Vec::new();
        if log_bin != "1" && !log_bin.eq_ignore_ascii_case("ON") {
            problems.push(format!(
                "log_bin is off: add `log_bin = {}` under {section} in {cnf} and restart the server",
                if mariadb { "mariadb-bin" } else { "mysql-bin" }
            ));
        }
        if !info.binlog_format.eq_ignore_ascii_case("ROW") {
            problems.push(format!(
                "binlog_format is {:?}: run SET GLOBAL binlog_format = 'ROW' and add `binlog_format = ROW` under {section} (existing sessions keep the old format until they reconnect)",
                info.binlog_format
            ));
        }
        if !info.binlog_row_image.eq_ignore_ascii_case("FULL") && !allow_partial_images {
            problems.push(format!(
                "binlog_row_image is {:?}: run SET GLOBAL binlog_row_image = 'FULL' and add `binlog_row_image = FULL` under {section} (or set source.allow_partial_images = true)",
                info.binlog_row_image
            ));
        }
        if !info.binlog_row_metadata.eq_ignore_ascii_case("FULL") {
            problems.push(format!(
                "binlog_row_metadata is {:?}: run SET GLOBAL binlog_row_metadata = 'FULL' and add `binlog_row_metadata = FULL` under {section} (MySQL 8.0.1+ / MariaDB 10.5+; column names come from it)",
                if info.binlog_row_metadata.is_empty() { "unsupported by this server" } else { &info.binlog_row_metadata }
            ));
        }
        if problems.is_empty() {
            Ok(info)
        } else {
            Err(MysqlSourceError::Settings {
                addr: self.addr.clone(),
                problems,
            })
        }
    }

    /// `SHOW BINARY LOGS`: file names and sizes.
    pub async fn binary_logs(&mut self) -> R<Vec<(String, u64)>> {
        let rows: Vec<mysql_async::Row> = self
            .conn
            .query("SHOW BINARY LOGS")
            .await
            .map_err(self.err("SHOW BINARY LOGS"))?;
        Ok(rows
            .into_iter()
            .filter_map(|mut r| {
                Some((
                    cell::<String>(&mut r, 0)?,
                    cell::<u64>(&mut r, 1).unwrap_or(0),
                ))
            })
            .collect())
    }

    /// The current binlog file and position (`SHOW MASTER STATUS`, or MySQL 8.4's `SHOW BINARY
    /// LOG STATUS`).
    pub async fn current_position(&mut self) -> R<(String, u64)> {
        let s = self.master_status().await?;
        Ok((s.file, s.pos))
    }

    /// `SHOW MASTER STATUS` (MySQL 8.4: `SHOW BINARY LOG STATUS`): file, position and, on
    /// MySQL, the GTID set executed at that position (one row, read under the server's lock,
    /// so position and set agree).
    pub async fn master_status(&mut self) -> R<MasterStatus> {
        let mut row: Option<mysql_async::Row> =
            match self.conn.query_first("SHOW MASTER STATUS").await {
                Ok(r) => r,
                Err(mysql_async::Error::Server(s)) if s.code == 1064 => self
                    .conn
                    .query_first("SHOW BINARY LOG STATUS")
                    .await
                    .map_err(self.err("SHOW BINARY LOG STATUS"))?,
                Err(source) => {
                    return Err(MysqlSourceError::Client {
                        addr: self.addr.clone(),
                        context: "SHOW MASTER STATUS",
                        source,
                    })
                }
            };
        let r = row.as_mut().ok_or_else(|| MysqlSourceError::Settings {
            addr: self.addr.clone(),
            problems: vec!["SHOW MASTER STATUS is empty: the binary log is off (log_bin)".into()],
        })?;
        Ok(MasterStatus {
            file: cell::<String>(r, 0).unwrap_or_default(),
            pos: cell::<u64>(r, 1).unwrap_or(4),
            // MariaDB has four columns; MySQL's fifth is Executed_Gtid_Set.
            executed_gtid_set: cell::<String>(r, 4),
        })
    }

    /// Columns, key, charsets, labels and JSON-ness of a table, in column order.
    pub async fn catalog(&mut self, t: &TableId) -> R<TableCatalog> {
        const COLUMNS: &str = "reading information_schema.COLUMNS";
        let rows: Vec<Row> = self
            .conn
            .exec(
                "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, CHARACTER_SET_NAME, COLUMN_KEY, CHARACTER_MAXIMUM_LENGTH \
                 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                (&t.namespace, &t.name),
            )
            .await
            .map_err(self.err(COLUMNS))?;
        let rows: Vec<ColumnRow> = typed_rows(&self.addr, COLUMNS, rows)?;
        // MariaDB's JSON is LONGTEXT with a json_valid() check constraint.
        const CHECKS: &str = "reading CHECK_CONSTRAINTS";
        let checks: Vec<Row> = match self
            .conn
            .exec(
                "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ?",
                (&t.namespace, &t.name),
            )
            .await
        {
            Ok(c) => c,
            Err(mysql_async::Error::Server(s)) if s.code == 1109 => Vec::new(), // no such table (old MySQL)
            Err(source) => {
                return Err(MysqlSourceError::Client { addr: self.addr.clone(), context: CHECKS, source })
            }
        };
        let checks: Vec<String> = typed_rows::<(String,)>(&self.addr, CHECKS, checks)?
            .into_iter()
            .map(|(c,)| c)
            .collect();
        let columns = rows
            .into_iter()
            .map(|(name, data_type, column_type, charset, key, length)| {
                let dt = data_type.to_ascii_lowercase();
                let json = dt == "json"
                    || checks
                        .iter()
                        .any(|c| c.replace(' ', "") == format!("json_valid(`{name}`)"));
                CatalogColumn {
                    unsigned: column_type.contains("unsigned"),
                    key: key == "PRI",
                    json,
                    labels: if dt == "enum" || dt == "set" {
                        parse_labels(&column_type)
                    } else {
                        Vec::new()
                    },
                    geometry: geometry_kind(&dt),
                    length: length.and_then(|l| u32::try_from(l).ok()),
                    charset,
                    name,
                }
            })
            .collect();
        Ok(TableCatalog { columns })
    }
}

fn geometry_kind(dt: &str) -> Option<GeometryKind> {
    Some(match dt {
        "geometry" => GeometryKind::Geometry,
        "point" => GeometryKind::Point,
        "linestring" => GeometryKind::LineString,
        "polygon" => GeometryKind::Polygon,
        "multipoint" => GeometryKind::MultiPoint,
        "multilinestring" => GeometryKind::MultiLineString,
        "multipolygon" => GeometryKind::MultiPolygon,
        "geometrycollection" | "geomcollection" => GeometryKind::GeometryCollection,
        _ => return None,
    })
}

/// Labels of `enum('a','it''s')` / `set(...)`.
pub fn parse_labels(column_type: &str) -> Vec<String> {
    let Some(start) = column_type.find('(') else {
        return Vec::new();
    };
    // `get`: a `)` before the `(` (not a server's COLUMN_TYPE, but not a panic either).
    let end = column_type.rfind(')').unwrap_or(column_type.len());
    let body = column_type.get(start + 1..end).unwrap_or_default();
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = body.chars().peekable();
    let mut in_quote = false;
    while let Some(c) = chars.next() {
        match (c, in_quote) {
            ('\'', false) => in_quote = true,
            ('\'', true) if chars.peek() == Some(&'\'') => {
                chars.next();
                cur.push('\'');
            }
            ('\'', true) => {
                in_quote = false;
                out.push(std::mem::take(&mut cur));
            }
            ('\\', true) => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            (c, true) => cur.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn labels() {
        assert_eq!(
            super::parse_labels("enum('a','it''s','x,y')"),
            vec!["a", "it's", "x,y"]
        );
        assert_eq!(super::parse_labels("set('')"), vec![""]);
        assert!(super::parse_labels("enum)'a'(").is_empty());
    }
}
