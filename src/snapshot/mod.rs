//! Snapshots, source-neutral: the `[snapshot]` configuration, the choice of what to do at
//! startup, the checkpointed progress ([`ledger`]), the chunk emitter shared by the sources
//! ([`emit`]), progress display and metrics ([`progress`]), in-process retries after a transient
//! error ([`retry`]), the wording and ledger restart of a primary key changed mid-snapshot
//! ([`rekey`]). The source-specific readers live in `source/postgres/snapshot*.rs` and
//! `source/mysql/snapshot*.rs`.
//!
//! ```text
//!  startup ─ decide(mode, checkpoint, position available?) ─► Stream | Snapshot{resume} | Done
//!  source reader (N connections, one consistent snapshot)
//!      ── ranges of a table (by key, or by ctid without a key) ──► batches of Op::Read rows
//!      ──► Emitter: chunk position, Debezium first/last marks, queue.send(bytes).await
//!      ──► engine ──► sinks ──► checkpoint {position, snapshot: ranges done ≤ position}
//!  then streaming from the snapshot's start (slot consistent point / binlog position)
//! ```
//!
//! # Invariants
//! - Every snapshot row and chunk end has a position that sorts after everything streamed
//!   before the snapshot's start and before everything streamed from it
//!   (`PgPosition::snapshot`, `MysqlPosition::snapshot`; `docs/design/change-model.md`).
//! - A key range is recorded as done only in a checkpoint whose position is at or after the
//!   end of the range's last chunk: a restart re-reads at most the ranges in flight.
//! - Chunk numbers never repeat for one snapshot start, across restarts ([`ledger::reserve`]):
//!   a sink that skips what it already has (Delta, Iceberg) never mistakes a re-read chunk
//!   for one it committed.
//!
//! # Traps
//! - A resumed snapshot reads the remaining ranges in a *new* snapshot (the exported one died
//!   with the connection), then streams from the original start: rows changed in between
//!   arrive as a read and again as the change (at-least-once, like Debezium after a restart);
//!   the final state is exact because the stream replays every change since the start.
//! - Ranges are by key value, never by physical location, when a key exists: a row that moves
//!   (UPDATE, VACUUM FULL) between two snapshots keeps its key, so a resumed read neither
//!   misses nor doubles it. Keyless tables are read by ctid range inside one snapshot and
//!   restart from their beginning.

pub mod emit;
pub mod estimate;
pub mod filter;
pub mod ledger;
pub mod progress;
pub mod rekey;
pub mod retry;
pub mod window;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// `snapshot.mode`, as Debezium's `snapshot.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotMode {
    /// Snapshot when the pipeline has no checkpoint (or an unfinished snapshot), then stream.
    #[default]
    Initial,
    /// Never read existing rows: stream only (Debezium `no_data`, formerly `never`).
    NoData,
    /// As `initial`, and snapshot again when the checkpoint's position is no longer available
    /// (the slot is gone or lost its WAL, the binlog was purged).
    WhenNeeded,
    /// Snapshot (or finish an unfinished one), then stop without streaming.
    InitialOnly,
}

impl SnapshotMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotMode::Initial => "initial",
            SnapshotMode::NoData => "no_data",
            SnapshotMode::WhenNeeded => "when_needed",
            SnapshotMode::InitialOnly => "initial_only",
        }
    }
}

/// How progress is shown while a snapshot runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ProgressDisplay {
    /// A live display when stderr is a terminal, log lines otherwise.
    #[default]
    Auto,
    /// Log lines only (every `progress_interval`).
    Log,
    /// Neither (metrics and `tidemark status` still report progress).
    Off,
}

/// How a MySQL/MariaDB snapshot takes its binlog position (`source/mysql/snapshot.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MysqlLock {
    /// MariaDB's lock-free `Binlog_snapshot_file/position` where the server has it, else
    /// `FLUSH TABLES WITH READ LOCK` held only while the readers start their snapshots; if
    /// the lock is refused (no `RELOAD`), an incremental snapshot while streaming instead.
    #[default]
    Auto,
    /// Always the global read lock (every reader then shares one snapshot); refused: an error.
    Global,
    /// Never lock: the lock-free way, else an incremental snapshot while streaming.
    None,
}

/// `[snapshot]`: how existing rows are copied before (initial) or while (incremental)
/// streaming. See `docs/snapshots.md`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    /// What to do at startup: `initial` (default), `no_data`, `when_needed`, `initial_only`.
    #[serde(default)]
    pub mode: SnapshotMode,
    /// Connections reading in parallel, all inside the same consistent snapshot. Default 4.
    #[serde(default = "default_parallelism")]
    pub parallelism: usize,
    /// Target rows per key range: the unit of parallel work and of resumption after a
    /// restart (a restart re-reads at most the ranges in flight). Default 100,000.
    #[serde(default = "default_range_rows")]
    pub range_rows: u64,
    /// Rows per chunk handed to the sinks (one transaction each; every chunk is a few MB
    /// of Arrow, so the queue bounds memory whatever the table size). Default 16,384.
    #[serde(default = "default_chunk_rows")]
    pub chunk_rows: usize,
    /// Rows per chunk of an incremental snapshot (one watermark window each). Smaller
    /// windows hold fewer stream events in memory; Debezium's default is 1,024. Default 8,192.
    #[serde(default = "default_incremental_chunk_rows")]
    pub incremental_chunk_rows: usize,
    /// Key columns for tables without a primary key, `"schema.table" = ["col", ...]`: the
    /// columns must identify a row (a unique NOT NULL index); used for key ranges,
    /// resumption and incremental snapshots of that table.
    #[serde(default)]
    pub key_columns: BTreeMap<String, Vec<String>>,
    /// `auto` (default), `log` or `off`.
    #[serde(default)]
    pub progress: ProgressDisplay,
    /// How often progress is logged when not on a terminal. Default 10 s.
    #[serde(default = "default_progress_interval", with = "humantime_serde")]
    pub progress_interval: Duration,
    /// MySQL/MariaDB: the signal and watermark table Tidemark writes to and reads back from
    /// the binlog for incremental snapshots (`db.table`, created if missing). Default
    /// `tidemark.signal`; Postgres uses logical decoding messages instead.
    #[serde(default)]
    pub signal_table: Option<String>,
    /// MySQL/MariaDB: `auto` (default), `global` or `none` ([`MysqlLock`]).
    #[serde(default)]
    pub mysql_lock: MysqlLock,
}

/// 4 connections: the server's COPY and our parsing overlap; more helps little on 2 cores
/// (docs/benchmarks.md, snapshot section).
const fn default_parallelism() -> usize {
    4
}
const fn default_range_rows() -> u64 {
    100_000
}
/// The same as the Postgres source's chunks of long transactions (`stream.rs`).
const fn default_chunk_rows() -> usize {
    16_384
}
const fn default_incremental_chunk_rows() -> usize {
    8_192
}
const fn default_progress_interval() -> Duration {
    Duration::from_secs(10)
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        SnapshotConfig {
            mode: SnapshotMode::default(),
            parallelism: default_parallelism(),
            range_rows: default_range_rows(),
            chunk_rows: default_chunk_rows(),
            incremental_chunk_rows: default_incremental_chunk_rows(),
            key_columns: BTreeMap::new(),
            progress: ProgressDisplay::default(),
            progress_interval: default_progress_interval(),
            signal_table: None,
            mysql_lock: MysqlLock::default(),
        }
    }
}

impl SnapshotConfig {
    /// Collects every problem (no IO), with its TOML path.
    pub fn validate(&self, problem: &mut impl FnMut(&str, String)) {
        if !(1..=64).contains(&self.parallelism) {
            problem(
                "snapshot.parallelism",
                format!("{} must be between 1 and 64", self.parallelism),
            );
        }
        if self.range_rows < 1_000 {
            problem(
                "snapshot.range_rows",
                format!(
                    "{} is below 1,000; ranges that small cost more in queries than they save",
                    self.range_rows
                ),
            );
        }
        for (key, v) in [
            ("snapshot.chunk_rows", self.chunk_rows),
            (
                "snapshot.incremental_chunk_rows",
                self.incremental_chunk_rows,
            ),
        ] {
            if !(1..=1_000_000).contains(&v) {
                problem(key, format!("{v} must be between 1 and 1,000,000"));
            }
        }
        for (table, cols) in &self.key_columns {
            if crate::config::parse_table(table).is_none() {
                problem(
                    &format!("snapshot.key_columns.{table:?}"),
                    "the key must be \"schema.table\" (\"db.table\" for MySQL)".into(),
                );
            }
            if cols.is_empty() || cols.iter().any(|c| c.is_empty()) {
                problem(
                    &format!("snapshot.key_columns.{table:?}"),
                    "give at least one non-empty column name".into(),
                );
            }
        }
        if let Some(t) = &self.signal_table {
            if crate::config::parse_table(t).is_none() {
                problem(
                    "snapshot.signal_table",
                    format!("{t:?} is not \"db.table\""),
                );
            }
        }
        if self.progress_interval.is_zero() {
            problem(
                "snapshot.progress_interval",
                "must be greater than zero, e.g. \"10s\"".into(),
            );
        }
    }
}

/// An error with its sources, for the log and `status` (a client error's own text, e.g.
/// tokio-postgres' `db error`, often leaves the server's message to its source).
pub fn error_text(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// `tidemark status` lines of a checkpoint's snapshot section.
pub fn status_lines(s: &ledger::SnapshotCheckpoint) -> String {
    let kind = match s.kind {
        ledger::SnapshotKind::Initial => "initial",
        ledger::SnapshotKind::Incremental => "incremental",
    };
    let mut out = format!(
        "snapshot ({kind}, start {}): {}\n",
        s.start,
        if s.complete {
            "complete"
        } else {
            "in progress (a restart resumes it)"
        }
    );
    for t in &s.tables {
        let at = match s.kind {
            // Incremental: chunks follow the last durable key.
            ledger::SnapshotKind::Incremental => match (&t.last_key, t.complete) {
                (_, true) if t.error.is_some() => {
                    format!("FAILED: {}", t.error.as_deref().unwrap_or_default())
                }
                (_, true) => "done".to_string(),
                (Some(k), false) => format!("after key {}", k.join(", ")),
                (None, false) => "from the start".to_string(),
            },
            ledger::SnapshotKind::Initial => format!(
                "ranges {}/{}{}",
                t.done.len(),
                t.ranges(),
                if t.complete { ", done" } else { "" }
            ),
        };
        let filter = match &t.filter {
            // The estimate is the planner's of the filter's rows (`estimate`).
            Some(f) => format!(" (filter: {f})"),
            None => String::new(),
        };
        // An estimate is a guess: never fewer rows in all than durable ones.
        out.push_str(&format!(
            "  {}: {} of ~{} rows durable{filter}, {at}\n",
            t.table,
            t.rows,
            t.estimate.max(t.rows),
        ));
    }
    out
}

/// What the pipeline does at startup, from the mode and what it finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Stream from the checkpoint (or the slot/binlog position).
    Stream,
    /// Snapshot, resuming an unfinished one when `resume` is true; then stream unless `stop`.
    Snapshot { resume: bool, stop: bool },
    /// The discarded checkpoint's position is gone: snapshot anew (`when_needed`).
    Resnapshot { stop: bool },
    /// `initial_only` and the snapshot is complete: nothing to do.
    Done,
}

/// What startup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// A checkpoint exists.
    pub checkpoint: bool,
    /// The checkpoint holds an unfinished initial snapshot.
    pub unfinished_snapshot: bool,
    /// The checkpoint holds a finished initial snapshot.
    pub finished_snapshot: bool,
    /// The position to stream from is still available on the server (slot present and not
    /// lost; binlog not purged). Only meaningful with a checkpoint.
    pub position_available: bool,
}

/// Chooses what to do, and says why (logged at startup).
pub fn decide(mode: SnapshotMode, f: Found) -> (Decision, String) {
    use SnapshotMode::*;
    let stop = mode == InitialOnly;
    match (mode, f.checkpoint) {
        (NoData, _) => (Decision::Stream, "snapshot.mode = no_data: streaming only".into()),
        (WhenNeeded, true) if !f.position_available => (
            Decision::Resnapshot { stop: false },
            "snapshot.mode = when_needed and the checkpoint's position is no longer available on \
             the server: snapshotting again"
                .into(),
        ),
        (_, false) => (
            Decision::Snapshot { resume: false, stop },
            format!("snapshot.mode = {} and no checkpoint: snapshotting existing rows", mode.as_str()),
        ),
        (_, true) if f.unfinished_snapshot => (
            Decision::Snapshot { resume: true, stop },
            "the checkpoint holds an unfinished snapshot: resuming it from the last completed range"
                .into(),
        ),
        (InitialOnly, true) => (
            Decision::Done,
            "snapshot.mode = initial_only and the snapshot is complete: nothing to do".into(),
        ),
        (_, true) => (
            Decision::Stream,
            if f.finished_snapshot {
                "the checkpoint's snapshot is complete: streaming from the checkpoint".into()
            } else {
                "a checkpoint exists: streaming from it".into()
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(checkpoint: bool, unfinished: bool, available: bool) -> Found {
        Found {
            checkpoint,
            unfinished_snapshot: unfinished,
            finished_snapshot: checkpoint && !unfinished,
            position_available: available,
        }
    }

    #[test]
    fn modes_decide_like_debezium() {
        use SnapshotMode::*;
        let d = |m, f| decide(m, f).0;
        assert_eq!(
            d(Initial, found(false, false, false)),
            Decision::Snapshot {
                resume: false,
                stop: false
            }
        );
        assert_eq!(d(Initial, found(true, false, true)), Decision::Stream);
        assert_eq!(
            d(Initial, found(true, true, true)),
            Decision::Snapshot {
                resume: true,
                stop: false
            }
        );
        // `initial` never re-snapshots on its own: the source reports the lost position.
        assert_eq!(d(Initial, found(true, false, false)), Decision::Stream);
        assert_eq!(d(NoData, found(false, false, false)), Decision::Stream);
        assert_eq!(
            d(WhenNeeded, found(true, false, false)),
            Decision::Resnapshot { stop: false }
        );
        assert_eq!(d(WhenNeeded, found(true, false, true)), Decision::Stream);
        assert_eq!(
            d(InitialOnly, found(false, false, false)),
            Decision::Snapshot {
                resume: false,
                stop: true
            }
        );
        assert_eq!(d(InitialOnly, found(true, false, true)), Decision::Done);
        assert_eq!(
            d(InitialOnly, found(true, true, true)),
            Decision::Snapshot {
                resume: true,
                stop: true
            }
        );
    }

    #[test]
    fn status_shows_filters_and_failed_tables() {
        let t = |table: &str, filter: Option<&str>, error: Option<&str>| ledger::TableProgress {
            table: table.into(),
            key: vec!["id".into()],
            last_key: Some(vec!["9".into()]).filter(|_| error.is_none()),
            rows: 3,
            estimate: 10,
            complete: error.is_some(),
            filter: filter.map(String::from),
            error: error.map(String::from),
            ..Default::default()
        };
        let s = ledger::SnapshotCheckpoint {
            kind: ledger::SnapshotKind::Incremental,
            start: String::new(),
            complete: false,
            tables: vec![
                t("public.a", Some("color = 'blue'"), None),
                t("public.b", Some("1/0 > 1"), Some("division by zero")),
                ledger::TableProgress {
                    rows: 12,
                    ..t("public.c", Some("id > 5"), None)
                },
            ],
            started_at_ms: 0,
            finished_at_ms: None,
        };
        let text = status_lines(&s);
        assert!(
            text.contains("public.a: 3 of ~10 rows durable (filter: color = 'blue'), after key 9"),
            "{text}"
        );
        assert!(
            text.contains(
                "public.b: 3 of ~10 rows durable (filter: 1/0 > 1), FAILED: division by zero"
            ),
            "{text}"
        );
        // More rows than the planner guessed: the total follows the rows.
        assert!(
            text.contains("public.c: 12 of ~12 rows durable (filter: id > 5), after key 9"),
            "{text}"
        );
    }

    #[test]
    fn config_validates_and_rejects_unknown_keys() {
        let c: SnapshotConfig =
            toml::from_str("mode = \"when_needed\"\nparallelism = 0\nchunk_rows = 0").unwrap();
        let mut problems = Vec::new();
        c.validate(&mut |p: &str, m: String| problems.push(format!("{p}: {m}")));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(toml::from_str::<SnapshotConfig>("mod = \"initial\"").is_err());
        assert!(toml::from_str::<SnapshotConfig>("mode = \"always\"").is_err());
    }
}
