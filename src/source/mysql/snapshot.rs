//! The MySQL/MariaDB initial snapshot: existing rows, consistent with the binlog stream that
//! follows.
//!
//! ```text
//!  prepare ─ snapshot.mode + checkpoint + binlog files ─► decide (snapshot/mod.rs)
//!     ├─ plan: tables (source filters), schema from information_schema (snapshot_rows.rs),
//!     │        key ranges: a dense integer key by arithmetic on MIN and MAX, any other
//!     │        key by stepping it (LIMIT 1 OFFSET range_rows)
//!     └─ consistent point, one of:
//!        lock-free (MariaDB): START TRANSACTION WITH CONSISTENT SNAPSHOT
//!                             → SHOW STATUS LIKE 'binlog_snapshot_%' = file:pos of that snapshot
//!        global lock:         FLUSH TABLES WITH READ LOCK
//!                             → START TRANSACTION WITH CONSISTENT SNAPSHOT on every reader
//!                             → SHOW MASTER STATUS (file, pos, MySQL GTID set) → UNLOCK TABLES
//!  run ─ N readers, each inside its snapshot transaction:
//!        next (table, range) → SELECT cols FROM t WHERE key range (binary protocol)
//!        → rows → ChangeBatchBuilder (Op::Read, chunk_rows a batch) → Piece ─► Emitter ─► queue
//!     └─ then the stream starts at file:pos (MysqlPosition::snapshot_resume): nothing before,
//!        nothing twice
//! ```
//!
//! # Why these two ways, and which readers may run in parallel
//! A consistent-snapshot transaction sees exactly the transactions committed before it, but
//! MySQL does not say at which binlog position that is. Holding `FLUSH TABLES WITH READ LOCK`
//! stops every commit: snapshots started under it, and `SHOW MASTER STATUS` read under it,
//! agree. The lock is held only for those statements (milliseconds; the log says how long),
//! but taking it waits for running statements and needs the `RELOAD` privilege. MariaDB's
//! `Binlog_snapshot_file` / `Binlog_snapshot_position` status variables report the position of
//! the session's consistent snapshot itself (the binlog and InnoDB commit in one order), with
//! no lock at all: `auto` uses them where the server has them.
//!
//! Each connection's consistent snapshot is its own: two readers started at different moments
//! see different data. Under the global lock every reader's snapshot is started while nothing
//! can commit, so all are the same. Without the lock, a reader is kept only when its
//! `Binlog_snapshot_position` equals the first reader's (no commit in between, which is
//! checked, not assumed); under a busy workload that leaves one reader, and the log says so.
//!
//! # No lock privilege
//! Where the lock-free way is missing (MySQL) or not allowed and `FLUSH TABLES WITH READ LOCK`
//! is refused (no `RELOAD`; `mysql_lock = "auto"`), or locking is not allowed at all
//! (`"none"`), there is no consistent point: [`Startup::Incremental`] streams from the current
//! position and queues an incremental snapshot of every captured table
//! (`snapshot_incremental.rs`), and the log says so and why. `"global"` asked for the lock and
//! stops with the grant that fixes it. `TIDEMARK_MYSQL_LOCK_FREE=off` in the environment makes
//! MariaDB look like MySQL here (tests of the lock and fallback paths).
//!
//! # Traps
//! - **The stream starts at the snapshot's `file:pos`** through `snapshot_resume(file, pos)`, an
//!   end position that sorts after every chunk; a checkpoint still at a chunk when the snapshot
//!   is complete resumes the stream there too (`Startup::Stream`).
//! - **A resumed snapshot** (restart after a crash) reads the remaining ranges in new
//!   snapshots, without a lock, then streams from the original start: rows changed meanwhile
//!   arrive as a read and again as the change (at-least-once, like Debezium after a restart);
//!   the final state is exact (`snapshot/mod.rs` traps). Readers need not agree then.
//! - **Non-InnoDB tables** (MyISAM, Aria) ignore consistent snapshots: they are read as they
//!   are at that moment, with a warning.
//! - **Keyless tables** (no primary key, no `snapshot.key_columns`), keys of binary, float or
//!   bit columns, and a `snapshot.key_columns` key with a nullable column (a NULL key is in no
//!   range) are read in one range: a restart reads them again from the start.
//! - Readers set `time_zone = '+00:00'` (TIMESTAMP as UTC), `sql_mode = ''` (CHAR without
//!   padding, backslash escapes in literals), `net_write_timeout = 3600` (a stalled sink must
//!   not make the server drop a reader mid-range).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mysql_async::prelude::*;
use mysql_async::{Conn, Opts, Row};
use tidemark_model::mysql_position::binlog_file_number;
use tidemark_model::{
    ChangeBatchBuilder, GtidSet, MysqlPosition, Position, SchemaVersions, TableId, Transaction,
};
use tokio::sync::mpsc;

use super::config::MysqlSourceConfig;
use super::control::{self, MysqlControl};
use super::error::MysqlSourceError;
use super::snapshot_rows::{self, append_row, qualified, Conv, RowError, TableShape};
use crate::checkpoint::{Checkpoint, FileCheckpointStore};
use crate::config::Config;
use crate::engine::queue::QueueSender;
use crate::metrics::Metrics;
use crate::snapshot::emit::{ChunkNumbers, EmitError, Emitter, ReaderMsg};
use crate::snapshot::ledger::{SnapshotCheckpoint, SnapshotKind, TableProgress};
use crate::snapshot::progress::Progress;
use crate::snapshot::{decide, Decision, Found, MysqlLock};

/// Why a snapshot failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Source(#[from] MysqlSourceError),
    /// No way to take a consistent position: the lock was refused and the lock-free way is
    /// not available (or not allowed).
    #[error("mysql {addr}: snapshot: {message}")]
    NoConsistentPoint { addr: String, message: String },
    #[error("snapshot of {table}, range {range}: {source}")]
    Read {
        table: String,
        range: u32,
        source: RowError,
    },
    #[error("snapshot of {table}, range {range}: {context}: {source}")]
    Query {
        table: String,
        range: u32,
        context: &'static str,
        source: mysql_async::Error,
    },
    #[error(transparent)]
    Emit(#[from] EmitError),
    #[error("snapshot chunk: {0}")]
    Model(#[from] tidemark_model::ModelError),
    #[error("snapshot: {0}")]
    Setup(String),
}

impl SnapshotError {
    /// As an error of the stream (incremental snapshots run inside it): server and
    /// connection errors keep their kind; the others are definite.
    pub fn into_source(self) -> MysqlSourceError {
        match self {
            SnapshotError::Source(e) => e,
            other => MysqlSourceError::Config(format!("incremental snapshot: {other}")),
        }
    }

    /// Whether a retry (new connections) may fix it.
    pub fn is_transient(&self) -> bool {
        match self {
            SnapshotError::Source(e) => e.is_transient(),
            // A reader's connection killed mid-SELECT is transient: the snapshot retries
            // (`snapshot/retry.rs`); a refused statement is not.
            SnapshotError::Query { source, .. } => match source {
                mysql_async::Error::Server(s) => {
                    super::error::TRANSIENT_QUERY_CODES.contains(&s.code)
                }
                mysql_async::Error::Url(_) => false,
                _ => true,
            },
            _ => false,
        }
    }
}

/// What startup decided for a MySQL pipeline.
pub enum Startup {
    /// Stream from the checkpoint, or from the given position (a finished snapshot whose
    /// checkpoint is still at one of its chunks).
    Stream(Option<Position>),
    /// `initial_only` with a finished snapshot.
    Done,
    /// Snapshot first.
    Snapshot(Box<Prepared>),
    /// No lock is available for a consistent initial snapshot (module doc, "No lock
    /// privilege"): stream from the current position and snapshot these tables
    /// incrementally while streaming (`snapshot_incremental.rs`).
    Incremental {
        tables: Vec<TableId>,
        /// The checkpoint's position is gone (`when_needed`): start without it.
        discard_checkpoint: bool,
    },
}

struct Planned {
    shape: TableShape,
    progress: TableProgress,
}

/// A snapshot ready to run: reader connections inside their snapshot transactions.
pub struct Prepared {
    readers: Vec<Conn>,
    file: String,
    file_no: u32,
    pos: u64,
    /// MySQL (`gtid_mode = ON`): the GTID set executed at the start (the stream's resume set).
    pub gtids: Option<GtidSet>,
    tables: Vec<Planned>,
    state: SnapshotCheckpoint,
    /// Stop after the snapshot (`initial_only`).
    pub stop: bool,
    /// The checkpoint's position is gone (`when_needed`): start without it.
    pub discard_checkpoint: bool,
}

/// `file:pos` of a start, as the checkpoint's `snapshot.start` holds it.
fn parse_start(s: &str) -> Option<(String, u32, u64)> {
    let (file, pos) = s.rsplit_once(':')?;
    Some((
        file.to_string(),
        binlog_file_number(file)?,
        pos.parse().ok()?,
    ))
}

type R<T> = Result<T, SnapshotError>;

pub(super) fn client(
    addr: &str,
    context: &'static str,
) -> impl FnOnce(mysql_async::Error) -> SnapshotError {
    let addr = addr.to_string();
    move |source| {
        SnapshotError::Source(MysqlSourceError::Client {
            addr,
            context,
            source,
        })
    }
}

/// Decides what to do at startup (logged with the reason) and, for a snapshot, plans the
/// tables and opens the readers at a consistent point.
pub async fn prepare(
    config: &Config,
    m: &MysqlSourceConfig,
    checkpoint: Option<&Checkpoint>,
) -> R<Startup> {
    let pipeline = &config.pipeline.name;
    let opts = control::opts(m)?;
    let mut ctl = MysqlControl::connect(&opts).await?;
    let info = ctl.check_server(m.allow_partial_images).await?;
    let snap = checkpoint
        .and_then(|c| c.snapshot.as_ref())
        .filter(|s| s.kind == SnapshotKind::Initial);
    let cp_position = match checkpoint {
        Some(c) => Some(
            c.position()
                .map_err(|e| SnapshotError::Setup(format!("checkpoint: {e}")))?,
        ),
        None => None,
    };
    let position_available = match cp_position.as_ref().and_then(|p| p.as_mysql()) {
        Some(p) => {
            let logs = ctl.binary_logs().await?;
            logs.iter()
                .any(|(n, _)| binlog_file_number(n) == Some(p.file))
        }
        None => false,
    };
    let found = Found {
        checkpoint: checkpoint.is_some(),
        unfinished_snapshot: snap.is_some_and(|s| !s.complete),
        finished_snapshot: snap.is_some_and(|s| s.complete),
        position_available,
    };
    let mode = config.snapshot.mode;
    if checkpoint.is_none() && m.start != "current" && mode != crate::snapshot::SnapshotMode::NoData
    {
        // An explicit start position asks for the stream from there: a snapshot (at another
        // position) would contradict it.
        tracing::info!(pipeline = %pipeline, mode = mode.as_str(), start = %m.start,
            "source.start is set and there is no checkpoint: streaming from it, no snapshot (a snapshot streams from its own position; leave source.start at \"current\" to snapshot first)");
        return Ok(Startup::Stream(None));
    }
    let (decision, reason) = decide(mode, found);
    tracing::info!(pipeline = %pipeline, mode = mode.as_str(), decision = ?decision, "{reason}");
    let (resume, stop, discard) = match decision {
        Decision::Done => return Ok(Startup::Done),
        Decision::Stream => {
            let after = snap
                .filter(|s| s.complete)
                .and_then(|s| parse_start(&s.start))
                .map(|(_, n, pos)| Position::Mysql(MysqlPosition::snapshot_resume(n, pos)));
            return Ok(Startup::Stream(match (after, cp_position) {
                (Some(a), Some(cp)) if cp < a => Some(a),
                _ => None,
            }));
        }
        Decision::Snapshot { resume: true, stop } => (snap.cloned(), stop, false),
        Decision::Snapshot {
            resume: false,
            stop,
        } => (None, stop, false),
        Decision::Resnapshot { stop } => (None, stop, true),
    };
    // Range bounds as text in the readers' session settings.
    ctl.conn
        .query_drop("SET time_zone = '+00:00', sql_mode = ''")
        .await
        .map_err(client(&ctl.addr, "snapshot session settings"))?;
    let snap_cfg = &config.snapshot;
    let parallelism = snap_cfg.parallelism.max(1);
    if let Some(state) = resume {
        let (file, file_no, pos) = parse_start(&state.start).ok_or_else(|| {
            SnapshotError::Setup(format!(
                "checkpoint snapshot start {:?} is not <binlog file>:<pos>",
                state.start
            ))
        })?;
        let mut tables = Vec::new();
        for tp in &state.tables {
            let id = crate::config::parse_table(&tp.table).ok_or_else(|| {
                SnapshotError::Setup(format!("checkpoint names table {:?}", tp.table))
            })?;
            let shape =
                snapshot_rows::describe(&mut ctl, &id, snap_cfg.key_columns.get(&tp.table)).await?;
            tables.push(Planned {
                shape,
                progress: tp.clone(),
            });
        }
        let n = parallelism.min(remaining_ranges(&tables)).max(1);
        let mut readers = Vec::with_capacity(n);
        for _ in 0..n {
            let mut c = open_reader(&opts, &ctl.addr).await?;
            begin(&mut c, &ctl.addr).await?;
            readers.push(c);
        }
        tracing::info!(%pipeline, start = %state.start, readers = n,
            "resuming the snapshot in new consistent snapshots (no lock needed: the stream replays every change since the start; rows changed in between may arrive twice, the final state is exact)");
        return Ok(Startup::Snapshot(Box::new(Prepared {
            readers,
            file,
            file_no,
            pos,
            gtids: None,
            tables,
            state,
            stop,
            discard_checkpoint: false,
        })));
    }
    let mut tables = Vec::new();
    let signal = super::snapshot_incremental::signal_table(snap_cfg);
    for id in list_tables(&mut ctl, m, &signal).await? {
        let name = id.to_string();
        let shape = snapshot_rows::describe(&mut ctl, &id, snap_cfg.key_columns.get(&name)).await?;
        if !shape.engine.eq_ignore_ascii_case("InnoDB") {
            tracing::warn!(table = %id, engine = %shape.engine,
                "not InnoDB: consistent snapshots do not cover this engine; its rows are read as they are when read, not as of the snapshot's binlog position");
        }
        if shape.key.is_empty() {
            tracing::warn!(table = %id,
                "no primary key (and no snapshot.key_columns): the table is read in one piece; an interrupted read starts the table over");
        } else if !shape.rangeable {
            tracing::warn!(table = %id,
                "the key has binary, float, bit or nullable columns: the table is read in one range");
        }
        let bounds = if shape.rangeable && shape.estimate > snap_cfg.range_rows {
            cut(&mut ctl, &shape, snap_cfg.range_rows).await?
        } else {
            Vec::new()
        };
        let progress = TableProgress {
            table: name,
            key: shape
                .key
                .iter()
                .map(|&i| shape.schema.columns[i].name.clone())
                .collect(),
            bounds,
            done: Vec::new(),
            last_key: None,
            rows: 0,
            estimate: shape.estimate,
            complete: false,
            filter: None,
            error: None,
        };
        tables.push(Planned { shape, progress });
    }
    if discard {
        tracing::warn!(%pipeline, "the checkpoint's binlog file was purged: snapshotting again (when_needed)");
    }
    let n = parallelism.min(remaining_ranges(&tables)).max(1);
    let point = match consistent_point(&opts, &mut ctl, info.mariadb, snap_cfg.mysql_lock, n)
        .await?
    {
        Consistent::Point(p) => p,
        Consistent::NoLock(why) => {
            if stop {
                return Err(SnapshotError::NoConsistentPoint {
                    addr: ctl.addr.clone(),
                    message: format!("{why}; snapshot.mode = \"initial_only\" needs a consistent initial snapshot (the incremental fallback streams): GRANT RELOAD ON *.* TO the user"),
                });
            }
            tracing::warn!(%pipeline, tables = tables.len(),
                "{why}: falling back to an incremental snapshot while streaming: the stream starts at the current binlog position and every captured table is read chunk by chunk between watermarks in {signal} (no lock; docs/snapshots.md, \"Incremental snapshots while streaming (MySQL/MariaDB)\"). For a consistent initial snapshot instead: GRANT RELOAD ON *.* TO the user");
            return Ok(Startup::Incremental {
                tables: tables.into_iter().map(|t| t.shape.id).collect(),
                discard_checkpoint: discard,
            });
        }
    };
    let file_no = binlog_file_number(&point.file).ok_or_else(|| {
        SnapshotError::Setup(format!(
            "binlog file name {:?} has no number suffix",
            point.file
        ))
    })?;
    let gtids = match point.gtid_text.as_deref().filter(|t| !t.trim().is_empty()) {
        Some(t) if !info.mariadb && info.gtid.eq_ignore_ascii_case("ON") => Some(
            super::gtid::parse_executed(t)
                .map_err(|e| SnapshotError::Setup(format!("SHOW MASTER STATUS: {e}")))?,
        ),
        _ => None,
    };
    let start = format!("{}:{}", point.file, point.pos);
    let state = SnapshotCheckpoint {
        kind: SnapshotKind::Initial,
        start,
        complete: false,
        tables: tables.iter().map(|t| t.progress.clone()).collect(),
        started_at_ms: crate::checkpoint::now_ms(),
        finished_at_ms: None,
    };
    Ok(Startup::Snapshot(Box::new(Prepared {
        readers: point.readers,
        file: point.file,
        file_no,
        pos: point.pos,
        gtids,
        tables,
        state,
        stop,
        discard_checkpoint: discard,
    })))
}

fn remaining_ranges(tables: &[Planned]) -> usize {
    tables.iter().map(|t| t.progress.remaining().len()).sum()
}

/// Base tables of the source's databases that its filters include.
/// The signal table (`snapshot.signal_table`) is never one of them.
pub(super) async fn list_tables(
    ctl: &mut MysqlControl,
    m: &MysqlSourceConfig,
    signal: &TableId,
) -> R<Vec<TableId>> {
    const CONTEXT: &str = "listing tables (snapshot)";
    let rows: Vec<Row> = ctl
        .conn
        .query(
            "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES \
             WHERE TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_SCHEMA, TABLE_NAME",
        )
        .await
        .map_err(client(&ctl.addr, CONTEXT))?;
    let rows: Vec<(String, String)> = control::typed_rows(&ctl.addr, CONTEXT, rows)?;
    Ok(rows
        .into_iter()
        .map(|(s, t)| TableId::new(s, t))
        .filter(|t| m.includes(t) && t != signal)
        .collect())
}

/// Inner range bounds of `shape`, about `range_rows` keys apart. A single integer key is cut
/// by arithmetic on its MIN and MAX (two index dives) when its values fill at least half of
/// that span ([`even_bounds`]); any other key by walking it, `LIMIT 1 OFFSET range_rows` from
/// each bound: an index-only scan of the whole key, ~80 ms of server time for 1,000,000 rows
/// here, about a tenth of the whole snapshot's time (docs/benchmarks.md).
async fn cut(ctl: &mut MysqlControl, shape: &TableShape, range_rows: u64) -> R<Vec<Vec<String>>> {
    if let Some(bounds) = cut_integer(ctl, shape, range_rows).await? {
        return Ok(bounds);
    }
    let keys: Vec<String> = shape
        .key
        .iter()
        .map(|&i| snapshot_rows::quote_ident(&shape.schema.columns[i].name))
        .collect();
    let mut bounds: Vec<Vec<String>> = Vec::new();
    loop {
        let cond = match bounds.last() {
            Some(b) => format!("WHERE {}", shape.lower_bound(b)),
            None => String::new(),
        };
        let q = format!(
            "SELECT {} FROM {} {cond} ORDER BY {} LIMIT 1 OFFSET {range_rows}",
            keys.join(", "),
            qualified(&shape.id),
            shape.key_order()
        );
        let row: Option<Row> = ctl
            .conn
            .query_first(q)
            .await
            .map_err(client(&ctl.addr, "cutting key ranges (snapshot)"))?;
        let Some(row) = row else { break };
        let mut bound = Vec::with_capacity(keys.len());
        for i in 0..keys.len() {
            match row.as_ref(i).and_then(key_text) {
                Some(text) => bound.push(text),
                // A NULL in a user-given key: ranges cannot be cut on it.
                None => return Ok(Vec::new()),
            }
        }
        bounds.push(bound);
    }
    Ok(bounds)
}

/// [`cut`] for a single integer key: `None` when the key is not one, or too sparse.
async fn cut_integer(
    ctl: &mut MysqlControl,
    shape: &TableShape,
    range_rows: u64,
) -> R<Option<Vec<Vec<String>>>> {
    let [k] = shape.key[..] else {
        return Ok(None);
    };
    // (A nullable key is not `rangeable`: `cut` is not called for it.)
    if !matches!(shape.convs.get(k), Some(Conv::Int | Conv::UInt)) {
        return Ok(None);
    }
    let name = snapshot_rows::quote_ident(&shape.schema.columns[k].name);
    let q = format!(
        "SELECT MIN({name}), MAX({name}) FROM {}",
        qualified(&shape.id)
    );
    // A `Row`, not a tuple: mysql_async's tuple conversion panics on a value it cannot convert.
    let row: Option<Row> = ctl
        .conn
        .query_first(q)
        .await
        .map_err(client(&ctl.addr, "key MIN and MAX (snapshot)"))?;
    // BIGINT UNSIGNED fits an i128.
    let int = |i: usize| {
        row.as_ref()
            .and_then(|r| r.as_ref(i))
            .and_then(key_text)?
            .parse::<i128>()
            .ok()
    };
    let (lo, hi) = match (int(0), int(1)) {
        (Some(lo), Some(hi)) => (lo, hi),
        // No rows now (MIN and MAX are NULL): one range.
        _ if row.as_ref().and_then(|r| r.as_ref(0)) == Some(&mysql_async::Value::NULL) => {
            return Ok(Some(Vec::new()))
        }
        _ => return Ok(None),
    };
    let bounds = even_bounds(lo, hi, shape.estimate, range_rows);
    tracing::debug!(table = %shape.id, lo = %lo, hi = %hi, estimate = shape.estimate,
        ranges = bounds.as_ref().map(|b| b.len() + 1),
        "key ranges: {}", if bounds.is_some() { "by arithmetic on MIN and MAX" } else { "too sparse for arithmetic; walking the key" });
    Ok(bounds.map(|b| b.into_iter().map(|v| vec![v.to_string()]).collect()))
}

/// A key value of a text-protocol row as the text range bounds are kept in (the text
/// protocol sends numbers as their decimal text); `None` for NULL.
fn key_text(v: &mysql_async::Value) -> Option<String> {
    match v {
        mysql_async::Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        mysql_async::Value::Int(v) => Some(v.to_string()),
        mysql_async::Value::UInt(v) => Some(v.to_string()),
        _ => None,
    }
}

/// Inner bounds cutting the integer keys `lo..=hi` of about `estimate` rows into ranges of
/// about `range_rows` rows: `None` when fewer than half the integers of the span are expected
/// to be keys (a sparse key; the walk cuts it evenly). A range is at most `span / n + 1` keys
/// wide, so it never holds more than about twice `range_rows` rows whatever the estimate says;
/// a wrong estimate only makes ranges uneven, and every row is in exactly one range as with
/// any bounds (the first range has no lower bound, the last no upper one).
fn even_bounds(lo: i128, hi: i128, estimate: u64, range_rows: u64) -> Option<Vec<i128>> {
    if hi < lo || estimate == 0 {
        return None;
    }
    let span = hi - lo + 1;
    if span > 2 * i128::from(estimate) {
        return None;
    }
    let n = i128::from(estimate.div_ceil(range_rows.max(1))).min(span);
    // `span * i` fits an i128 for any u64 span and count (< 2^65 · 2^64).
    (1..n)
        .map(|i| span.checked_mul(i).map(|x| lo + x / n))
        .collect()
}

/// A reader connection with the snapshot's session settings (module traps).
pub(super) async fn open_reader(opts: &Opts, addr: &str) -> R<Conn> {
    let mut c = Conn::new(opts.clone())
        .await
        .map_err(client(addr, "connect (snapshot reader)"))?;
    for q in [
        "SET NAMES utf8mb4, time_zone = '+00:00', sql_mode = '', net_write_timeout = 3600",
        "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
    ] {
        c.query_drop(q)
            .await
            .map_err(client(addr, "snapshot reader session settings"))?;
    }
    Ok(c)
}

async fn begin(c: &mut Conn, addr: &str) -> R<()> {
    c.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        .await
        .map_err(client(addr, "START TRANSACTION WITH CONSISTENT SNAPSHOT"))
}

/// MariaDB: the binlog position of this session's consistent snapshot.
async fn snapshot_status(c: &mut Conn, addr: &str) -> R<Option<(String, u64)>> {
    const CONTEXT: &str = "SHOW STATUS LIKE 'binlog_snapshot_%'";
    let rows: Vec<Row> = c
        .query("SHOW SESSION STATUS LIKE 'binlog_snapshot_%'")
        .await
        .map_err(client(addr, CONTEXT))?;
    let rows: Vec<(String, String)> = control::typed_rows(addr, CONTEXT, rows)?;
    let get = |n: &str| {
        rows.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    Ok(
        match (get("Binlog_snapshot_file"), get("Binlog_snapshot_position")) {
            (Some(f), Some(p)) if !f.is_empty() => p.parse().ok().map(|p| (f, p)),
            _ => None,
        },
    )
}

/// What [`consistent_point`] found.
enum Consistent {
    Point(Point),
    /// No lock is allowed or granted and the server has no lock-free way: why.
    NoLock(String),
}

struct Point {
    readers: Vec<Conn>,
    file: String,
    pos: u64,
    gtid_text: Option<String>,
}

/// Opens up to `n` readers inside one consistent snapshot and returns its binlog position
/// (module doc: which way, and why readers may be fewer).
async fn consistent_point(
    opts: &Opts,
    ctl: &mut MysqlControl,
    mariadb: bool,
    lock: MysqlLock,
    n: usize,
) -> R<Consistent> {
    let addr = ctl.addr.clone();
    // TIDEMARK_MYSQL_LOCK_FREE=off: behave as on a server without the lock-free status
    // variables (MySQL), so the lock and fallback paths can be tested on MariaDB.
    let lock_free_allowed = std::env::var("TIDEMARK_MYSQL_LOCK_FREE").as_deref() != Ok("off");
    let lock_free = mariadb && lock != MysqlLock::Global && lock_free_allowed && {
        let r: Option<Row> = ctl
            .conn
            .query_first("SHOW GLOBAL STATUS LIKE 'binlog_snapshot_file'")
            .await
            .map_err(client(&addr, "SHOW STATUS"))?;
        r.is_some()
    };
    if lock_free {
        let started = Instant::now();
        let mut first = open_reader(opts, &addr).await?;
        begin(&mut first, &addr).await?;
        let (file, pos) = snapshot_status(&mut first, &addr).await?.ok_or_else(|| {
            SnapshotError::NoConsistentPoint {
                addr: addr.clone(),
                message: "Binlog_snapshot_file is empty inside a consistent snapshot (is the binary log on?)".into(),
            }
        })?;
        let mut readers = vec![first];
        for _ in 1..n {
            let mut c = open_reader(opts, &addr).await?;
            let mut same = false;
            for _ in 0..3 {
                begin(&mut c, &addr).await?;
                if snapshot_status(&mut c, &addr).await?.as_ref() == Some(&(file.clone(), pos)) {
                    same = true;
                    break;
                }
                c.query_drop("ROLLBACK")
                    .await
                    .map_err(client(&addr, "ROLLBACK"))?;
            }
            if same {
                readers.push(c);
            }
        }
        tracing::info!(%addr, file = %file, pos, readers = readers.len(), wanted = n,
            ms = started.elapsed().as_millis() as u64,
            "snapshot consistent point: MariaDB Binlog_snapshot_file/position of START TRANSACTION WITH CONSISTENT SNAPSHOT (lock-free); readers whose snapshot is at another position were not kept");
        return Ok(Consistent::Point(Point {
            readers,
            file,
            pos,
            gtid_text: None,
        }));
    }
    if lock == MysqlLock::None {
        return Ok(Consistent::NoLock(format!(
            "snapshot.mysql_lock = \"none\" and this server has no lock-free way to read a consistent snapshot's binlog position ({})",
            if mariadb { "no Binlog_snapshot_file status variable" } else { "MySQL has none; MariaDB reports Binlog_snapshot_file/position" }
        )));
    }
    let mut readers = Vec::with_capacity(n);
    for _ in 0..n {
        readers.push(open_reader(opts, &addr).await?);
    }
    ctl.conn
        .query_drop("SET SESSION lock_wait_timeout = 30")
        .await
        .map_err(client(&addr, "SET lock_wait_timeout"))?;
    let started = Instant::now();
    if let Err(e) = ctl.conn.query_drop("FLUSH TABLES WITH READ LOCK").await {
        return Err(match e {
            // `auto`: fall back to the incremental method (module doc, "No lock privilege").
            mysql_async::Error::Server(s)
                if matches!(s.code, 1044 | 1045 | 1227) && lock == MysqlLock::Auto =>
            {
                return Ok(Consistent::NoLock(format!(
                    "FLUSH TABLES WITH READ LOCK was refused ({}: {}): the user lacks the RELOAD privilege and {} has no lock-free way to read a consistent snapshot's binlog position",
                    s.code,
                    s.message,
                    if mariadb { "this server" } else { "MySQL" }
                )));
            }
            mysql_async::Error::Server(s) if matches!(s.code, 1044 | 1045 | 1227) => {
                SnapshotError::NoConsistentPoint {
                    addr,
                    message: format!(
                        "FLUSH TABLES WITH READ LOCK was refused ({}: {}): the user lacks the RELOAD privilege and snapshot.mysql_lock = \"global\" requires the lock. Fix: GRANT RELOAD ON *.* TO the user; or snapshot.mysql_lock = \"auto\" ({}); or stream only (snapshot.mode = \"no_data\")",
                        s.code,
                        s.message,
                        if mariadb {
                            "on MariaDB it takes the position without a lock"
                        } else {
                            "without the lock it snapshots incrementally while streaming"
                        }
                    ),
                }
            }
            e => client(&addr, "FLUSH TABLES WITH READ LOCK")(e),
        });
    }
    let mut result = Ok(());
    for c in readers.iter_mut() {
        if let Err(e) = begin(c, &addr).await {
            result = Err(e);
            break;
        }
    }
    let status = match &result {
        Ok(()) => Some(ctl.master_status().await),
        Err(_) => None,
    };
    let unlocked = ctl.conn.query_drop("UNLOCK TABLES").await;
    let held = started.elapsed();
    result?;
    unlocked.map_err(client(&addr, "UNLOCK TABLES"))?;
    let st = status.ok_or_else(|| SnapshotError::Setup("no master status".into()))??;
    tracing::info!(%addr, file = %st.file, pos = st.pos, readers = readers.len(),
        lock_held_ms = format!("{:.1}", held.as_secs_f64() * 1000.0),
        "snapshot consistent point: FLUSH TABLES WITH READ LOCK around START TRANSACTION WITH CONSISTENT SNAPSHOT and SHOW MASTER STATUS, released at once");
    Ok(Consistent::Point(Point {
        readers,
        file: st.file,
        pos: st.pos,
        gtid_text: st.executed_gtid_set,
    }))
}

/// Everything a snapshot run needs from the pipeline.
pub struct RunContext<'a> {
    pub config: &'a Config,
    pub store: &'a FileCheckpointStore,
    pub metrics: Arc<Metrics>,
    pub queue: QueueSender<Arc<Transaction>>,
}

impl Prepared {
    /// Where the stream starts after this snapshot.
    pub fn stream_from(&self) -> Position {
        Position::Mysql(MysqlPosition::snapshot_resume(self.file_no, self.pos))
    }

    /// Reads every table (or what a resumed snapshot has left) onto the queue; returns the
    /// position of the last chunk sent, if any.
    /// The schema of every table the snapshot reads (version 1): the stream that follows
    /// numbers its versions on from them (`MysqlSource::versions`).
    pub fn schemas(&self) -> SchemaVersions {
        self.tables
            .iter()
            .map(|t| Arc::clone(&t.shape.schema))
            .collect()
    }

    pub async fn run(self, cx: RunContext<'_>) -> R<Option<Position>> {
        let Prepared {
            readers,
            file,
            file_no,
            pos,
            tables,
            state,
            ..
        } = self;
        let snap_cfg = &cx.config.snapshot;
        cx.store.track_snapshot(state.clone());
        let total_rows: u64 = tables.iter().map(|t| t.progress.estimate).sum();
        tracing::info!(tables = tables.len(), estimate_rows = total_rows, start = %state.start,
            readers = readers.len(), "snapshot started");
        cx.metrics.set_snapshot_running(1);
        let mut work = VecDeque::new();
        for (i, t) in tables.iter().enumerate() {
            for r in t.progress.remaining() {
                work.push_back((i, r));
            }
        }
        let stats: Vec<(String, u64, u64)> = tables
            .iter()
            .map(|t| {
                (
                    t.progress.table.clone(),
                    t.progress.estimate,
                    t.progress.rows,
                )
            })
            .collect();
        let progress = Progress::new(cx.metrics.clone(), &stats);
        let display = progress.spawn_display(snap_cfg.progress, snap_cfg.progress_interval);
        let mut emitter = Emitter::new(
            cx.queue.clone(),
            cx.store.ledger(),
            Box::new(move |chunk| MysqlPosition::snapshot(file_no, pos, chunk).into()),
            ChunkNumbers {
                dir: cx.store.dir().to_path_buf(),
                pipeline: cx.config.pipeline.name.clone(),
                start: format!("{file}:{pos}"),
            },
            Some(crate::checkpoint::now_ms() * 1000),
            tables.iter().map(|t| t.progress.table.clone()).collect(),
            tables
                .iter()
                .map(|t| t.progress.remaining().len() as u32)
                .collect(),
            progress.clone(),
            cx.metrics.clone(),
        );
        let n = readers.len().max(1);
        let work = Arc::new(Mutex::new(work));
        let tables = Arc::new(tables);
        let (tx, mut rx) = mpsc::channel::<Result<ReaderMsg, SnapshotError>>(n * 2);
        let max_bytes = (cx.config.pipeline.max_queue_bytes / 8).max(1 << 20) as usize;
        let mut handles = Vec::new();
        for conn in readers {
            let reader = Reader {
                work: work.clone(),
                tables: tables.clone(),
                tx: tx.clone(),
                chunk_rows: snap_cfg.chunk_rows,
                max_bytes,
                placeholder: MysqlPosition::snapshot(file_no, pos, 0).into(),
                commit_ts_us: Some(crate::checkpoint::now_ms() * 1000),
                file: file.clone().into(),
            };
            handles.push(tokio::spawn(reader.run(conn)));
        }
        drop(tx);
        let result = async {
            while let Some(msg) = rx.recv().await {
                emitter.handle(msg?).await?;
            }
            for h in handles {
                h.await
                    .map_err(|e| SnapshotError::Setup(format!("reader task: {e}")))??;
            }
            emitter.flush().await?;
            Ok::<_, SnapshotError>(())
        }
        .await;
        cx.metrics.set_snapshot_running(0);
        result?;
        let elapsed = display.finish().await;
        let rows = progress.total_rows();
        tracing::info!(
            rows,
            seconds = format!("{:.3}", elapsed.as_secs_f64()),
            rows_per_s = (rows as f64 / elapsed.as_secs_f64().max(1e-3)) as u64,
            "snapshot read; streaming continues from the snapshot's binlog position"
        );
        Ok(emitter.last_sent())
    }
}

/// One reader connection, inside its snapshot transaction.
struct Reader {
    work: Arc<Mutex<VecDeque<(usize, u32)>>>,
    tables: Arc<Vec<Planned>>,
    tx: mpsc::Sender<Result<ReaderMsg, SnapshotError>>,
    chunk_rows: usize,
    max_bytes: usize,
    placeholder: Position,
    commit_ts_us: Option<i64>,
    /// The consistent point's binlog file: `source.file` of every snapshot row, as Debezium.
    file: Arc<str>,
}

impl Reader {
    async fn run(self, mut conn: Conn) -> R<()> {
        let result = self.read(&mut conn).await;
        // The snapshot transaction ends with the reader (a read-only transaction: nothing to
        // commit); the connection is closed.
        let _ = conn.query_drop("ROLLBACK").await;
        let _ = conn.disconnect().await;
        if let Err(e) = result {
            let msg = e.to_string();
            let _ = self.tx.send(Err(e)).await;
            return Err(SnapshotError::Setup(msg));
        }
        Ok(())
    }

    fn next(&self) -> Option<(usize, u32)> {
        self.work.lock().ok().and_then(|mut w| w.pop_front())
    }

    async fn read(&self, conn: &mut Conn) -> R<()> {
        let mut text = String::new();
        while let Some((t, r)) = self.next() {
            let table = &self.tables[t];
            let shape = &table.shape;
            let name = &table.progress.table;
            let cond = shape
                .range_condition(&table.progress.bounds, r)
                .map(|c| format!(" WHERE {c}"))
                .unwrap_or_default();
            let sql = format!(
                "SELECT {} FROM {}{cond}",
                shape.select_list(),
                qualified(&shape.id)
            );
            let query_err = |context| {
                move |source| SnapshotError::Query {
                    table: name.clone(),
                    range: r,
                    context,
                    source,
                }
            };
            let mut result = conn.exec_iter(sql, ()).await.map_err(query_err("SELECT"))?;
            let mut builder = ChangeBatchBuilder::new(shape.schema.clone(), self.chunk_rows);
            let mut rows = 0u64;
            while let Some(row) = result.next().await.map_err(query_err("reading rows"))? {
                let values = row.unwrap();
                append_row(
                    &mut builder,
                    shape,
                    &values,
                    &self.placeholder,
                    self.commit_ts_us,
                    &mut text,
                )
                .map_err(|source| SnapshotError::Read {
                    table: name.clone(),
                    range: r,
                    source,
                })?;
                rows += 1;
                if builder.len() >= self.chunk_rows || builder.byte_size() >= self.max_bytes {
                    self.piece(t, builder.finish()?).await?;
                }
            }
            drop(result);
            if !builder.is_empty() {
                self.piece(t, builder.finish()?).await?;
            }
            self.send(ReaderMsg::RangeDone {
                table: t,
                range: r,
                rows,
            })
            .await?;
        }
        Ok(())
    }

    async fn piece(&self, table: usize, batch: tidemark_model::ChangeBatch) -> R<()> {
        // The binlog file, on the batch's Arrow schema as the binlog decoder puts it on its
        // batches (`tidemark_binlog::meta::FILE`): the Debezium encoder's `source.file`.
        let batch =
            batch.with_metadata([(tidemark_binlog::meta::FILE.into(), self.file.to_string())])?;
        self.send(ReaderMsg::Piece { table, batch }).await
    }

    async fn send(&self, msg: ReaderMsg) -> R<()> {
        self.tx
            .send(Ok(msg))
            .await
            .map_err(|_| SnapshotError::Setup("the snapshot emitter stopped".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::even_bounds;

    /// Strictly increasing, inside `lo..=hi`, gaps differing by at most one.
    fn check(b: &[i128], lo: i128, hi: i128) {
        assert!(b.windows(2).all(|w| w[0] < w[1]), "{b:?}");
        assert!(b.iter().all(|v| *v > lo && *v <= hi), "{b:?}");
        let gaps: Vec<i128> = std::iter::once(lo)
            .chain(b.iter().copied())
            .chain(std::iter::once(hi + 1))
            .collect::<Vec<_>>()
            .windows(2)
            .map(|w| w[1] - w[0])
            .collect();
        let (min, max) = (gaps.iter().min().unwrap(), gaps.iter().max().unwrap());
        assert!(max - min <= 1, "{gaps:?}");
    }

    #[test]
    fn a_dense_key_is_cut_evenly() {
        let b = even_bounds(1, 1_000_000, 994_021, 100_000).unwrap();
        assert_eq!(b.len(), 9);
        assert_eq!(b[0], 100_001);
        check(&b, 1, 1_000_000);
        // Half full still counts as dense; the ranges follow the estimate.
        let b = even_bounds(1, 2_000_000, 1_000_000, 100_000).unwrap();
        assert_eq!(b.len(), 9);
        check(&b, 1, 2_000_000);
    }

    #[test]
    fn a_sparse_key_or_no_estimate_is_walked() {
        assert_eq!(even_bounds(1, 2_000_001, 1_000_000, 100_000), None);
        assert_eq!(even_bounds(1, 10, 0, 100), None);
        assert_eq!(even_bounds(10, 1, 5, 100), None);
    }

    #[test]
    fn few_rows_or_few_keys_make_few_ranges() {
        assert_eq!(even_bounds(1, 50_000, 50_000, 100_000), Some(vec![]));
        // More ranges asked for than there are keys: one key per range.
        let b = even_bounds(5, 7, 3, 1).unwrap();
        assert_eq!(b, vec![6, 7]);
        assert_eq!(even_bounds(9, 9, 1, 1), Some(vec![]));
    }

    #[test]
    fn the_ends_of_the_integer_types() {
        let (lo, hi) = (i128::from(u64::MAX) - 5_999, i128::from(u64::MAX));
        let b = even_bounds(lo, hi, 6_000, 1_000).unwrap();
        assert_eq!(b.len(), 5);
        check(&b, lo, hi);
        let (lo, hi) = (i128::from(i64::MIN), i128::from(i64::MIN) + 9_999);
        let b = even_bounds(lo, hi, 10_000, 1_000).unwrap();
        check(&b, lo, hi);
        assert!(b.iter().all(|v| i64::try_from(*v).is_ok()));
    }
}
