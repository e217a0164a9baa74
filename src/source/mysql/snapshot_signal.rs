//! The signal/watermark table of MySQL/MariaDB incremental snapshots
//! (`snapshot.signal_table`, Debezium's shape `id, type, data`) and the chunk reader that
//! writes the watermarks around its SELECT; the driver is `snapshot_incremental.rs`.
//!
//! ```text
//!  execute-snapshot       {"pipeline":"p","data-collections":["db.t"],   (any client; Debezium's
//!                          "additional-conditions":[{"data-collection":"db.t","filter":"…"}]}  data)
//!  snapshot-window-open   {"pipeline":"p","run":…,"chunk":n,"table":"db.t"}   (upsert, one row
//!  snapshot-window-close  {"pipeline":"p","run":…,"chunk":n,"table":"db.t"}    per pipeline)
//! ```
//!
//! # Traps
//! - **An upsert that changes nothing is not logged**: every watermark write changes `type`
//!   or `data` (the chunk number), so each one is a row event.
//! - **One statement per chunk read**: a single SELECT in autocommit is one consistent read;
//!   its last row's key (`TableShape::key_text`) is where the next chunk starts. A row filter
//!   is AND-ed in parenthesised (`snapshot/filter.rs`); the statement is prepared, so the
//!   server runs exactly one. The EXPLAIN of a filtered table's estimate ([`filter_estimate`])
//!   runs in the text protocol, and only for a filter the prepared check accepted.
//! - **A server error of the chunk SELECT** (a filter the server refuses, a dropped table) is
//!   definite for that table; lock waits, timeouts and shutdowns are transient
//!   ([`chunk_select_error`]).
//! - **A refused write** (no INSERT/UPDATE/CREATE on the signal table, a read-only server) is
//!   definite, with the grant that fixes it: retrying cannot help.

use arrow_array::cast::AsArray;
use arrow_array::Array;
use arrow_schema::DataType;
use mysql_async::prelude::*;
use mysql_async::Value;
use serde::{Deserialize, Serialize};
use tidemark_model::{ChangeBatch, ChangeBatchBuilder, Image, MysqlPosition, Position, TableId};

use super::config::MysqlSourceConfig;
use super::control::{self, MysqlControl};
use super::error::TRANSIENT_QUERY_CODES;
use super::snapshot::{client, SnapshotError};
use super::snapshot_rows::{append_row, qualified, quote_ident, quote_literal, TableShape};
use crate::config::Config;
use crate::snapshot::filter::{self, Dialect, FilterError, TableRequest};
use crate::snapshot::SnapshotConfig;

type R<T> = Result<T, SnapshotError>;

/// `snapshot.signal_table` when not set.
pub const DEFAULT_SIGNAL_TABLE: &str = "tidemark.signal";
/// `type` of a signal row asking for an incremental snapshot (Debezium's name).
pub const EXECUTE_SNAPSHOT: &str = "execute-snapshot";
/// `type` of a low watermark row (Debezium's name).
pub const WINDOW_OPEN: &str = "snapshot-window-open";
/// `type` of a high watermark row (Debezium's name).
pub const WINDOW_CLOSE: &str = "snapshot-window-close";

/// The signal table of a configuration.
pub fn signal_table(cfg: &SnapshotConfig) -> TableId {
    cfg.signal_table
        .as_deref()
        .and_then(crate::config::parse_table)
        .unwrap_or_else(|| TableId::new("tidemark", "signal"))
}

/// `data` of an `execute-snapshot` row: Debezium's shape, plus the pipeline it is for.
pub use crate::snapshot::filter::SnapshotSignal as SignalData;

/// `data` of a watermark row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Watermark {
    pub(super) pipeline: String,
    pub(super) run: u32,
    pub(super) chunk: u64,
    pub(super) table: String,
}

/// Creates the signal table (Debezium's shape) and its database if the table is missing.
pub async fn ensure_signal_table(ctl: &mut MysqlControl, t: &TableId) -> R<()> {
    let addr = ctl.addr.clone();
    let n: Option<u64> = ctl
        .conn
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (&t.namespace, &t.name),
        )
        .await
        .map_err(client(&addr, "looking up the signal table"))?;
    if n.unwrap_or(0) > 0 {
        return Ok(());
    }
    for q in [
        format!(
            "CREATE DATABASE IF NOT EXISTS {}",
            quote_ident(&t.namespace)
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (id VARCHAR(64) NOT NULL PRIMARY KEY, \
             type VARCHAR(32) NOT NULL, data VARCHAR(2048) NULL) \
             ENGINE = InnoDB DEFAULT CHARSET = utf8mb4",
            qualified(t)
        ),
    ] {
        ctl.conn
            .query_drop(q)
            .await
            .map_err(|e| signal_write_error(&addr, t, "creating the signal table", e))?;
    }
    tracing::info!(table = %t, "created the signal table (snapshot.signal_table)");
    Ok(())
}

/// A refused write to the signal table is definite, with the grant that fixes it.
fn signal_write_error(
    addr: &str,
    t: &TableId,
    context: &'static str,
    e: mysql_async::Error,
) -> SnapshotError {
    match &e {
        mysql_async::Error::Server(s) if matches!(s.code, 1044 | 1142 | 1227 | 1290 | 1036) => {
            SnapshotError::Setup(format!(
                "{context} {t} was refused ({}: {}): incremental snapshots write signal and watermark rows there. Fix: GRANT INSERT, UPDATE{} ON {}.* TO the user, or point snapshot.signal_table at a table it may write",
                s.code,
                s.message,
                if context.starts_with("creating") { ", CREATE" } else { "" },
                quote_ident(&t.namespace),
            ))
        }
        _ => client(addr, context)(e),
    }
}

/// `tidemark snapshot --table … [--filter …]` for a MySQL source: checks every filter with
/// the server, then inserts an `execute-snapshot` row.
pub async fn request(
    config: &Config,
    m: &MysqlSourceConfig,
    requests: &[TableRequest],
) -> anyhow::Result<String> {
    let signal = signal_table(&config.snapshot);
    let mut ids = Vec::with_capacity(requests.len());
    for r in requests {
        let t = &r.table;
        let id = crate::config::parse_table(t)
            .ok_or_else(|| anyhow::anyhow!("--table {t:?} is not \"db.table\""))?;
        if id == signal {
            anyhow::bail!("--table {t}: that is the signal table (snapshot.signal_table)");
        }
        if !m.includes(&id) {
            anyhow::bail!(
                "--table {t}: not captured by this pipeline (source.databases / tables / exclude_*)"
            );
        }
        if let Some(f) = &r.filter {
            filter::check(t, f, Dialect::Mysql)?;
        }
        ids.push(id);
    }
    let mut ctl = MysqlControl::connect(&control::opts(m)?).await?;
    for (r, id) in requests.iter().zip(&ids) {
        let Some(f) = &r.filter else { continue };
        if let Err(reason) = check_filter(&mut ctl, id, f).await? {
            return Err(FilterError::Invalid {
                table: r.table.clone(),
                filter: f.clone(),
                reason: format!("the server refused it: {reason}"),
            }
            .into());
        }
    }
    ensure_signal_table(&mut ctl, &signal).await?;
    let id = format!("tidemark-{:016x}", rand::random::<u64>());
    let data = serde_json::to_string(&SignalData::new(&config.pipeline.name, requests))
        .expect("SignalData serializes");
    ctl.conn
        .exec_drop(
            format!(
                "INSERT INTO {} (id, type, data) VALUES (?, ?, ?)",
                qualified(&signal)
            ),
            (&id, EXECUTE_SNAPSHOT, &data),
        )
        .await
        .map_err(|e| signal_write_error(&ctl.addr, &signal, "inserting the signal into", e))?;
    let (file, pos) = ctl.current_position().await?;
    Ok(format!(
        "incremental snapshot of {} requested (signal row {id} in {signal}, binlog at {file}:{pos}); the pipeline starts it when its stream reaches the signal; follow it with `tidemark status`",
        filter::describe(requests)
    ))
}

/// Asks the server whether `filter` is a valid condition on `id` (prepared, no row read):
/// `Ok(Err(message))` when the server refuses it (definite: the user's SQL), `Err` when it
/// could not be asked.
pub(super) async fn check_filter(
    ctl: &mut MysqlControl,
    id: &TableId,
    filter: &str,
) -> R<Result<(), String>> {
    let sql = format!(
        "SELECT 1 FROM {} WHERE {} LIMIT 0",
        qualified(id),
        filter::sql(filter)
    );
    match ctl.conn.exec_drop(sql, ()).await {
        Ok(()) => Ok(Ok(())),
        Err(mysql_async::Error::Server(s)) => Ok(Err(format!("{} ({})", s.message, s.code))),
        Err(e) => Err(client(&ctl.addr, "checking a snapshot filter")(e)),
    }
}

/// The optimizer's estimate of the rows `filter` matches in `id` (`EXPLAIN FORMAT=JSON SELECT
/// 1 FROM t WHERE (filter)`, read by `snapshot/estimate.rs`), for a filter [`check_filter`]
/// accepted: `Ok(Err(why))` when the answer cannot be read or the server refuses the EXPLAIN
/// (the caller keeps the table's estimate and logs why); `Err` when the server could not be
/// asked. A second round trip after the check, in the text protocol: whether MySQL prepares
/// an EXPLAIN is not documented for every version, and the prepared check already proved the
/// filter is one statement's condition (module traps).
pub(super) async fn filter_estimate(
    ctl: &mut MysqlControl,
    id: &TableId,
    filter: &str,
) -> R<Result<u64, String>> {
    let sql = format!(
        "EXPLAIN FORMAT=JSON SELECT 1 FROM {} WHERE {}",
        qualified(id),
        filter::sql(filter)
    );
    let row: Option<mysql_async::Row> = match ctl.conn.query_first(sql).await {
        Ok(row) => row,
        Err(mysql_async::Error::Server(s)) => {
            return Ok(Err(format!(
                "the server refused EXPLAIN: {} ({})",
                s.message, s.code
            )))
        }
        Err(e) => return Err(client(&ctl.addr, "estimating a snapshot filter's rows")(e)),
    };
    let json = match row.as_ref().and_then(|r| r.get_opt::<String, usize>(0)) {
        Some(Ok(json)) => json,
        _ => return Ok(Err("EXPLAIN returned no JSON".into())),
    };
    Ok(
        crate::snapshot::estimate::mysql_plan_rows(&json).ok_or_else(|| {
            let start: String = json.chars().take(400).collect();
            format!("EXPLAIN's JSON has no row estimate in a known shape: {start}")
        }),
    )
}

/// A failed chunk SELECT: a server error (other than [`TRANSIENT_QUERY_CODES`], the initial
/// snapshot's list of errors a retry may fix: lock wait timeout, deadlock, too many
/// connections, shutdown, interrupted or killed, statement time limits) is the
/// statement's own fault, definite for the table; anything else keeps the connection error's
/// kind.
fn chunk_select_error(
    addr: &str,
    table: &str,
    context: &'static str,
    e: mysql_async::Error,
) -> SnapshotError {
    match &e {
        mysql_async::Error::Server(s) if !TRANSIENT_QUERY_CODES.contains(&s.code) => {
            SnapshotError::Query {
                table: table.to_string(),
                range: 0,
                context,
                source: e,
            }
        }
        _ => client(addr, context)(e),
    }
}

/// A chunk read between two watermarks.
pub(super) struct ChunkRead {
    pub(super) batch: Option<ChangeBatch>,
    /// The chunk's last key; `None`: the chunk was the table's last.
    pub(super) last_key: Option<Vec<String>>,
    /// The table's primary key is not the job's `pk` any more (these columns now): nothing
    /// was read.
    pub(super) key_changed: Option<Vec<String>>,
    pub(super) ctl: MysqlControl,
}

/// Reads one chunk between its two watermarks, on its own connection.
pub(super) struct ChunkJob {
    pub(super) ctl: MysqlControl,
    pub(super) shape: TableShape,
    pub(super) last_key: Option<Vec<String>>,
    /// The table's row filter (AND-ed into the SELECT).
    pub(super) filter: Option<String>,
    pub(super) rows: usize,
    /// The primary key the chunks are cut on, checked against the catalog's inside the window
    /// before the SELECT; `None`: a user-given key (`snapshot.key_columns`), not checked.
    pub(super) pk: Option<Vec<String>>,
    pub(super) signal: TableId,
    pub(super) watermark_id: String,
    pub(super) mark: Watermark,
}

impl ChunkJob {
    /// Reads the chunk between its watermarks; on failure still writes the window-close
    /// (best effort), so the stream gets a transaction that hands the failure to the engine
    /// and its checkpoint.
    pub(super) async fn run(mut self) -> R<ChunkRead> {
        match self.read().await {
            Ok((batch, last_key, key_changed)) => Ok(ChunkRead {
                batch,
                last_key,
                key_changed,
                ctl: self.ctl,
            }),
            Err(e) => {
                let _ = self.watermark(WINDOW_CLOSE).await;
                Err(e)
            }
        }
    }

    /// The chunk's rows and last key, or the catalog's primary key when it is no longer the
    /// one the chunks are cut on.
    #[allow(clippy::type_complexity)]
    async fn read(
        &mut self,
    ) -> R<(
        Option<ChangeBatch>,
        Option<Vec<String>>,
        Option<Vec<String>>,
    )> {
        let addr = self.ctl.addr.clone();
        self.watermark(WINDOW_OPEN).await?;
        if let Some(pk) = &self.pk {
            let now = super::snapshot_rows::primary_key(&mut self.ctl, &self.shape.id).await?;
            if &now != pk {
                self.watermark(WINDOW_CLOSE).await?;
                return Ok((None, None, Some(now)));
            }
        }
        let after = self.last_key.as_deref().map(|k| self.shape.after(k));
        let filter = self.filter.as_deref().map(filter::sql);
        let cond = filter::where_clause([after.as_deref(), filter.as_deref()]);
        let sql = format!(
            "SELECT {} FROM {}{cond} ORDER BY {} LIMIT {}",
            self.shape.select_list(),
            qualified(&self.shape.id),
            self.shape.key_order(),
            self.rows
        );
        let name = self.shape.id.to_string();
        let mut builder = ChangeBatchBuilder::new(self.shape.schema.clone(), self.rows);
        // Rewritten to the window-close's position when the window closes.
        let placeholder: Position = MysqlPosition::snapshot(0, 0, 0).into();
        let ts = Some(crate::checkpoint::now_ms() * 1000);
        let mut text = String::new();
        let mut last: Option<Vec<Value>> = None;
        let mut n = 0usize;
        {
            let mut result = self
                .ctl
                .conn
                .exec_iter(sql, ())
                .await
                .map_err(|e| chunk_select_error(&addr, &name, "incremental chunk SELECT", e))?;
            while let Some(row) = result.next().await.map_err(|e| {
                chunk_select_error(&addr, &name, "reading incremental chunk rows", e)
            })? {
                let values = row.unwrap();
                append_row(
                    &mut builder,
                    &self.shape,
                    &values,
                    &placeholder,
                    ts,
                    &mut text,
                )
                .map_err(|source| SnapshotError::Read {
                    table: name.clone(),
                    range: 0,
                    source,
                })?;
                n += 1;
                last = Some(values);
            }
        }
        let last_key = match last {
            Some(v) => Some(self.shape.key_text(&v).map_err(|e| {
                SnapshotError::Setup(format!("incremental snapshot of {name}: {e}"))
            })?),
            None => None,
        };
        self.watermark(WINDOW_CLOSE).await?;
        let batch = if builder.is_empty() {
            None
        } else {
            Some(builder.finish()?)
        };
        // A chunk shorter than asked is the table's last.
        Ok((batch, if n >= self.rows { last_key } else { None }, None))
    }

    /// Upserts this pipeline's watermark row (its own autocommit transaction).
    async fn watermark(&mut self, kind: &'static str) -> R<()> {
        let data = serde_json::to_string(&self.mark).expect("a Watermark serializes");
        let q = format!(
            "INSERT INTO {} (id, type, data) VALUES ({}, {}, {}) \
             ON DUPLICATE KEY UPDATE type = VALUES(type), data = VALUES(data)",
            qualified(&self.signal),
            quote_literal(&self.watermark_id),
            quote_literal(kind),
            quote_literal(&data)
        );
        let addr = self.ctl.addr.clone();
        self.ctl
            .conn
            .query_drop(q)
            .await
            .map_err(|e| signal_write_error(&addr, &self.signal, "writing a watermark into", e))
    }
}

/// The text of column `name` of `b`'s after image at `row`.
pub(super) fn text_at(b: &ChangeBatch, name: &str, row: usize) -> Option<String> {
    let col = b
        .image(Image::After)
        .column(b.schema.column_index(name)?)
        .clone();
    if col.is_null(row) {
        return None;
    }
    match col.data_type() {
        DataType::Utf8 => Some(col.as_string::<i32>().value(row).to_string()),
        DataType::LargeUtf8 => Some(col.as_string::<i64>().value(row).to_string()),
        DataType::Utf8View => Some(col.as_string_view().value(row).to_string()),
        DataType::Binary => String::from_utf8(col.as_binary::<i32>().value(row).to_vec()).ok(),
        DataType::LargeBinary => String::from_utf8(col.as_binary::<i64>().value(row).to_vec()).ok(),
        _ => None,
    }
}

/// 64-bit FNV-1a (a short, stable watermark row id per pipeline).
pub(super) fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_data_is_debeziums_shape() {
        let s: SignalData =
            serde_json::from_str(r#"{"data-collections": ["db.t"], "type": "incremental"}"#)
                .unwrap();
        assert_eq!(s.data_collections, vec!["db.t"]);
        assert_eq!(s.pipeline, None);
        let text =
            serde_json::to_string(&SignalData::new("p", &[TableRequest::whole("db.a")])).unwrap();
        assert_eq!(
            text,
            r#"{"pipeline":"p","data-collections":["db.a"],"type":"incremental"}"#
        );
        assert!(serde_json::from_str::<SignalData>(r#"{"tables": []}"#).is_err());
        // A row a Debezium user writes, additional-conditions and all.
        let s: SignalData = serde_json::from_str(
            r#"{"data-collections": ["db1.products"], "type": "INCREMENTAL",
                "additional-conditions": [{"data-collection": "db1.products", "filter": "color='blue'"}]}"#,
        )
        .unwrap();
        let r = s.requests(Dialect::Mysql).unwrap();
        assert_eq!(r[0].filter.as_deref(), Some("color='blue'"));
    }

    #[test]
    fn chunk_select_server_errors_are_definite_for_the_table() {
        let server = |code: u16| {
            mysql_async::Error::Server(mysql_async::ServerError {
                code,
                message: "m".into(),
                state: "42000".into(),
            })
        };
        // 1054: unknown column (a filter naming a dropped column); 1064: syntax.
        for code in [1054, 1064, 1146] {
            assert!(!chunk_select_error("a", "db.t", "c", server(code)).is_transient());
        }
        for code in TRANSIENT_QUERY_CODES {
            assert!(chunk_select_error("a", "db.t", "c", server(*code)).is_transient());
        }
    }

    #[test]
    fn default_signal_table_and_watermark_ids() {
        assert_eq!(
            signal_table(&SnapshotConfig::default()).to_string(),
            DEFAULT_SIGNAL_TABLE
        );
        let id = format!("tidemark-wm-{:016x}", fnv("a pipeline with a long name"));
        // Fits Debezium's signal table shape (id VARCHAR(42)).
        assert!(id.len() <= 42, "{id}");
        assert_ne!(fnv("a"), fnv("b"));
    }
}
