//! The signal/watermark table of MySQL/MariaDB incremental snapshots
//! (`snapshot.signal_table`, Debezium's shape `id, type, data`) and the chunk reader that
//! writes the watermarks around its SELECT; the driver is `snapshot_incremental.rs`.
//!
//! ```text
//!  execute-snapshot       {"pipeline":"p","data-collections":["db.t"]}   (any client)
//!  snapshot-window-open   {"pipeline":"p","run":…,"chunk":n,"table":"db.t"}   (upsert, one row
//!  snapshot-window-close  {"pipeline":"p","run":…,"chunk":n,"table":"db.t"}    per pipeline)
//! ```
//!
//! # Traps
//! - **An upsert that changes nothing is not logged**: every watermark write changes `type`
//!   or `data` (the chunk number), so each one is a row event.
//! - **One statement per chunk read**: a single SELECT in autocommit is one consistent read;
//!   its last row's key (`TableShape::key_text`) is where the next chunk starts.
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
use super::snapshot::{client, SnapshotError};
use super::snapshot_rows::{append_row, qualified, quote_ident, quote_literal, TableShape};
use crate::config::Config;
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalData {
    /// The pipeline that should act (`None`: every pipeline reading this server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
    /// Tables to snapshot incrementally (`db.table`).
    #[serde(rename = "data-collections")]
    pub data_collections: Vec<String>,
    /// `incremental` (the default; Debezium's `blocking` is not supported).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

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

/// `tidemark snapshot --table …` for a MySQL source: inserts an `execute-snapshot` row.
pub async fn request(
    config: &Config,
    m: &MysqlSourceConfig,
    tables: &[String],
) -> anyhow::Result<String> {
    let signal = signal_table(&config.snapshot);
    for t in tables {
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
    }
    let mut ctl = MysqlControl::connect(&control::opts(m)?).await?;
    ensure_signal_table(&mut ctl, &signal).await?;
    let id = format!("tidemark-{:016x}", rand::random::<u64>());
    let data = serde_json::to_string(&SignalData {
        pipeline: Some(config.pipeline.name.clone()),
        data_collections: tables.to_vec(),
        kind: Some("incremental".into()),
    })
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
        tables.join(", ")
    ))
}

/// A chunk read between two watermarks.
pub(super) struct ChunkRead {
    pub(super) batch: Option<ChangeBatch>,
    /// The chunk's last key; `None`: the chunk was the table's last.
    pub(super) last_key: Option<Vec<String>>,
    pub(super) ctl: MysqlControl,
}

/// Reads one chunk between its two watermarks, on its own connection.
pub(super) struct ChunkJob {
    pub(super) ctl: MysqlControl,
    pub(super) shape: TableShape,
    pub(super) last_key: Option<Vec<String>>,
    pub(super) rows: usize,
    pub(super) signal: TableId,
    pub(super) watermark_id: String,
    pub(super) mark: Watermark,
}

impl ChunkJob {
    pub(super) async fn run(mut self) -> R<ChunkRead> {
        let addr = self.ctl.addr.clone();
        self.watermark(WINDOW_OPEN).await?;
        let cond = self
            .last_key
            .as_deref()
            .map(|k| format!(" WHERE {}", self.shape.after(k)))
            .unwrap_or_default();
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
                .map_err(client(&addr, "incremental chunk SELECT"))?;
            while let Some(row) = result
                .next()
                .await
                .map_err(client(&addr, "reading incremental chunk rows"))?
            {
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
        Ok(ChunkRead {
            batch,
            // A chunk shorter than asked is the table's last.
            last_key: if n >= self.rows { last_key } else { None },
            ctl: self.ctl,
        })
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
        let text = serde_json::to_string(&SignalData {
            pipeline: Some("p".into()),
            data_collections: vec!["db.a".into()],
            kind: None,
        })
        .unwrap();
        assert_eq!(text, r#"{"pipeline":"p","data-collections":["db.a"]}"#);
        assert!(serde_json::from_str::<SignalData>(r#"{"tables": []}"#).is_err());
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
