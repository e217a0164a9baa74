//! Snapshot progress as the checkpoint records it: which tables and key ranges are durable in
//! every sink.
//!
//! The emitter registers "range R of table T is complete once position P is acknowledged";
//! the engine's checkpoint store settles the registrations at the position it saves and
//! writes the result in the same atomic file (`checkpoint.rs`), so position and progress can
//! never disagree.
//!
//! ```json
//! "snapshot": {"kind": "initial", "start": "0/1A2B3C8", "complete": false,
//!   "tables": [{"table": "public.t", "key": ["id"], "bounds": [["100000"], ["200000"]],
//!               "done": [0, 2], "rows": 200000, "estimate": 300000, "complete": false}]}
//! ```
//!
//! # Traps
//! - Chunk numbers must be new for every run of a snapshot (module docs of `snapshot`):
//!   [`reserve`] hands out blocks from a counter file next to the checkpoint, bumped before
//!   any chunk of the block is sent.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tidemark_model::Position;

/// Initial or incremental.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotKind {
    Initial,
    Incremental,
}

/// The `snapshot` section of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotCheckpoint {
    pub kind: SnapshotKind,
    /// Where streaming starts after an initial snapshot: the slot's consistent point (an LSN)
    /// or the binlog position, in the source's own text form.
    pub start: String,
    /// Every table is complete and durable.
    pub complete: bool,
    pub tables: Vec<TableProgress>,
    /// Unix ms when the snapshot started / finished.
    #[serde(default)]
    pub started_at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<i64>,
}

/// One table of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TableProgress {
    /// `schema.table` / `db.table`.
    pub table: String,
    /// Columns the ranges are cut on; empty: one range by physical order (no key).
    pub key: Vec<String>,
    /// Inner range boundaries, each a key in its columns' text form: `n` bounds make `n + 1`
    /// ranges `(-inf, b0) [b0, b1) … [b(n-1), +inf)`.
    #[serde(default)]
    pub bounds: Vec<Vec<String>>,
    /// Ranges durable in every sink, ascending.
    #[serde(default)]
    pub done: Vec<u32>,
    /// Incremental snapshots: the last key durable in every sink (chunks follow it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_key: Option<Vec<String>>,
    /// Rows durable in every sink.
    #[serde(default)]
    pub rows: u64,
    /// Row count estimate at planning time: the table's, or with a `filter` the planner's
    /// estimate of the rows it matches (`snapshot/estimate.rs`; the table's when the server's
    /// plan could not be read). A guess: `rows` may pass it.
    #[serde(default)]
    pub estimate: u64,
    pub complete: bool,
    /// Incremental snapshots: the SQL row filter every chunk query ANDs in (`snapshot/filter.rs`);
    /// kept here so a resumed snapshot reads with the same filter. Absent in older checkpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Incremental snapshots: why the table's snapshot stopped before its end (a refused
    /// filter, a definite error of a chunk query). The table is then `complete`: a restart
    /// does not try it again; a new request does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl TableProgress {
    /// Number of ranges.
    pub fn ranges(&self) -> u32 {
        self.bounds.len() as u32 + 1
    }

    /// Ranges not yet durable.
    pub fn remaining(&self) -> Vec<u32> {
        (0..self.ranges())
            .filter(|r| self.done.binary_search(r).is_err())
            .collect()
    }
}

/// What completes when a position is acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// Range `range` of table `table` (index into `tables`), with its rows.
    Range { table: usize, range: u32, rows: u64 },
    /// Incremental: the table's chunks up to `last_key` (`None`: the table is finished).
    Key {
        table: usize,
        last_key: Option<Vec<String>>,
        rows: u64,
    },
    /// Incremental: the table's snapshot starts again from its first key, chunked by `key`
    /// (its primary key was redefined mid-snapshot). Registered after the table's chunks, so
    /// a chunk of the old key that settles later cannot put its `last_key` back.
    Restart { table: usize, key: Vec<String> },
}

/// The in-memory progress of the running snapshot, shared by the emitter and the store.
#[derive(Debug)]
pub struct Ledger {
    pub state: SnapshotCheckpoint,
    pending: VecDeque<(Position, Completion)>,
}

/// Shared handle (the store and the emitter each hold one).
pub type LedgerHandle = Arc<Mutex<Option<Ledger>>>;

/// The incremental-snapshot record `slot` holds (a fresh one when it holds none or another
/// kind), marked as not complete: where an incremental snapshot puts a table it starts.
pub fn incremental_record(slot: &mut Option<Ledger>) -> &mut SnapshotCheckpoint {
    let fresh = || {
        Ledger::new(SnapshotCheckpoint {
            kind: SnapshotKind::Incremental,
            start: String::new(),
            complete: false,
            tables: Vec::new(),
            started_at_ms: crate::checkpoint::now_ms(),
            finished_at_ms: None,
        })
    };
    let ledger = slot.get_or_insert_with(fresh);
    if ledger.state.kind != SnapshotKind::Incremental {
        *ledger = fresh();
    }
    let state = &mut ledger.state;
    state.complete = false;
    state.finished_at_ms = None;
    state
}

/// Ends the snapshot of `table` in `state` now, with the reason when it failed: the table is
/// `complete` (a restart does not try it again), and so is the snapshot when it was the last.
pub fn close_table(state: &mut SnapshotCheckpoint, table: &str, error: Option<String>) {
    if let Some(t) = state.tables.iter_mut().find(|t| t.table == table) {
        t.complete = true;
        t.last_key = None;
        t.error = error;
    }
    if state.tables.iter().all(|t| t.complete) && !state.complete {
        state.complete = true;
        state.finished_at_ms = Some(crate::checkpoint::now_ms());
    }
}

/// Stops the incremental snapshot of `table` with `why`: logged with its filter, recorded in
/// the ledger (`tidemark status` shows it); the stream and the other tables go on.
pub fn fail_table(ledger: &LedgerHandle, table: &str, filter: Option<&str>, why: &str) {
    tracing::error!(table = %table, filter = ?filter,
        "incremental snapshot of the table stopped: {why}; the stream goes on. Fix the cause and ask again (tidemark snapshot --table {table})");
    if let Ok(mut l) = ledger.lock() {
        if let Some(l) = l.as_mut() {
            close_table(&mut l.state, table, Some(why.to_string()));
        }
    }
}

/// The key the incremental-snapshot record of `table` was cut on (`None`: no such record).
pub fn recorded_key(ledger: &LedgerHandle, table: &str) -> Option<Vec<String>> {
    let l = ledger.lock().ok()?;
    let l = l
        .as_ref()
        .filter(|l| l.state.kind == SnapshotKind::Incremental)?;
    l.state
        .tables
        .iter()
        .find(|t| t.table == table)
        .map(|t| t.key.clone())
}

impl Ledger {
    pub fn new(state: SnapshotCheckpoint) -> Self {
        Ledger {
            state,
            pending: VecDeque::new(),
        }
    }

    /// `completion` holds once `at` is acknowledged (registrations come in position order).
    pub fn register(&mut self, at: Position, completion: Completion) {
        self.pending.push_back((at, completion));
    }

    /// Applies a completion that needs no acknowledgement (an empty range).
    pub fn complete_now(&mut self, completion: Completion) {
        self.apply(completion);
    }

    /// Applies every registration at or before `saved`; returns the state to persist.
    pub fn settle(&mut self, saved: &Position) -> SnapshotCheckpoint {
        while self.pending.front().is_some_and(|(p, _)| p <= saved) {
            if let Some((_, c)) = self.pending.pop_front() {
                self.apply(c);
            }
        }
        self.state.clone()
    }

    fn apply(&mut self, c: Completion) {
        match c {
            Completion::Range { table, range, rows } => {
                if let Some(t) = self.state.tables.get_mut(table) {
                    if let Err(i) = t.done.binary_search(&range) {
                        t.done.insert(i, range);
                        t.rows += rows;
                    }
                    t.complete = t.done.len() as u32 == t.ranges();
                }
            }
            Completion::Key {
                table,
                last_key,
                rows,
            } => {
                if let Some(t) = self.state.tables.get_mut(table) {
                    t.rows += rows;
                    // A table that failed after this chunk was read stays failed.
                    if t.error.is_none() {
                        t.complete = last_key.is_none();
                        t.last_key = last_key;
                    }
                }
            }
            Completion::Restart { table, key } => {
                if let Some(t) = self.state.tables.get_mut(table) {
                    if t.error.is_none() {
                        t.key = key;
                        t.last_key = None;
                        t.rows = 0;
                        t.complete = false;
                    }
                }
            }
        }
        let all = self.state.tables.iter().all(|t| t.complete);
        if all && !self.state.complete {
            self.state.complete = true;
            self.state.finished_at_ms = Some(crate::checkpoint::now_ms());
        }
    }
}

/// Chunks reserved per [`reserve`] call.
pub const RESERVE_BLOCK: u32 = 1 << 20;

/// Reserves `RESERVE_BLOCK` fresh chunk numbers for snapshot `start` of `pipeline`: returns
/// the first. The counter file is replaced atomically before the numbers are used.
pub fn reserve(dir: &Path, pipeline: &str, start: &str) -> std::io::Result<u32> {
    let path = counter_path(dir, pipeline);
    #[derive(Serialize, Deserialize)]
    struct Counter {
        start: String,
        next: u32,
    }
    let current = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str::<Counter>(&t).ok())
        .filter(|c| c.start == start)
        .map_or(0, |c| c.next);
    let next = current.checked_add(RESERVE_BLOCK).ok_or_else(|| {
        std::io::Error::other(format!(
            "{}: snapshot chunk numbers exhausted for start {start} (over 4,000 restarts); run \
             `tidemark reset` and snapshot again",
            path.display()
        ))
    })?;
    let body = serde_json::to_vec(&Counter {
        start: start.to_string(),
        next,
    })
    .map_err(std::io::Error::other)?;
    crate::checkpoint::write_atomic(&path, &body)?;
    Ok(current)
}

fn counter_path(dir: &Path, pipeline: &str) -> PathBuf {
    dir.join(format!("{pipeline}.snapshot-chunks"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidemark_model::{Lsn, PgPosition};

    fn table(ranges: usize) -> TableProgress {
        TableProgress {
            table: "public.t".into(),
            key: vec!["id".into()],
            bounds: (1..ranges).map(|i| vec![(i * 10).to_string()]).collect(),
            done: vec![],
            last_key: None,
            rows: 0,
            estimate: 30,
            complete: false,
            filter: None,
            error: None,
        }
    }

    #[test]
    fn ranges_settle_only_when_acknowledged() {
        let mut l = Ledger::new(SnapshotCheckpoint {
            kind: SnapshotKind::Initial,
            start: "0/100".into(),
            complete: false,
            tables: vec![table(3)],
            started_at_ms: 0,
            finished_at_ms: None,
        });
        let p = |i| Position::from(PgPosition::snapshot(Lsn(0x100), i));
        l.register(
            p(1),
            Completion::Range {
                table: 0,
                range: 2,
                rows: 5,
            },
        );
        l.register(
            p(4),
            Completion::Range {
                table: 0,
                range: 0,
                rows: 7,
            },
        );
        l.complete_now(Completion::Range {
            table: 0,
            range: 1,
            rows: 0,
        });
        let s = l.settle(&p(3));
        assert_eq!(s.tables[0].done, vec![1, 2]);
        assert_eq!(s.tables[0].remaining(), vec![0]);
        assert!(!s.complete);
        let s = l.settle(&p(4));
        assert!(s.complete && s.tables[0].complete);
        assert_eq!(s.tables[0].rows, 12);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(
            serde_json::from_str::<SnapshotCheckpoint>(&json).unwrap(),
            s
        );
    }

    #[test]
    fn filters_round_trip_and_old_checkpoints_load() {
        let mut t = table(1);
        t.filter = Some("color = 'blue'".into());
        t.last_key = Some(vec!["42".into()]);
        let s = SnapshotCheckpoint {
            kind: SnapshotKind::Incremental,
            start: String::new(),
            complete: false,
            tables: vec![t, table(1)],
            started_at_ms: 1,
            finished_at_ms: None,
        };
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains(r#""filter":"color = 'blue'""#), "{json}");
        let back: SnapshotCheckpoint = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.tables[0].filter.as_deref(), Some("color = 'blue'"));
        // A checkpoint written before filters (and errors) existed.
        let old = r#"{"kind":"incremental","start":"","complete":false,
            "tables":[{"table":"public.t","key":["id"],"last_key":["7"],"rows":7,"estimate":9,"complete":false}]}"#;
        let old: SnapshotCheckpoint = serde_json::from_str(old).unwrap();
        assert_eq!(
            (old.tables[0].filter.as_ref(), old.tables[0].error.as_ref()),
            (None, None)
        );
    }

    /// A ledger of an incremental snapshot of `tables`, nothing registered.
    fn incremental(tables: Vec<TableProgress>) -> Ledger {
        Ledger::new(SnapshotCheckpoint {
            kind: SnapshotKind::Incremental,
            start: String::new(),
            complete: false,
            tables,
            started_at_ms: 0,
            finished_at_ms: None,
        })
    }

    /// The position of snapshot chunk `i`.
    fn chunk(i: u32) -> Position {
        Position::from(PgPosition::snapshot(Lsn(0x100), i))
    }

    /// Registers table 0's first chunk (10 rows, up to key 10), ending at `chunk(1)`.
    fn register_first_chunk(l: &mut Ledger) {
        l.register(
            chunk(1),
            Completion::Key {
                table: 0,
                last_key: Some(vec!["10".into()]),
                rows: 10,
            },
        );
    }

    #[test]
    fn a_failed_table_stays_failed_when_its_last_chunk_settles() {
        let mut l = incremental(vec![
            table(1),
            TableProgress {
                table: "public.u".into(),
                ..table(1)
            },
        ]);
        register_first_chunk(&mut l);
        close_table(&mut l.state, "public.t", Some("division by zero".into()));
        assert!(!l.state.complete, "the second table is still running");
        let s = l.settle(&chunk(1));
        let t = &s.tables[0];
        assert!(t.complete && t.last_key.is_none() && t.rows == 10, "{t:?}");
        assert_eq!(t.error.as_deref(), Some("division by zero"));
    }

    #[test]
    fn a_restart_settles_after_the_old_keys_chunks() {
        let mut l = incremental(vec![table(1)]);
        register_first_chunk(&mut l);
        l.register(
            chunk(2),
            Completion::Restart {
                table: 0,
                key: vec!["code".into()],
            },
        );
        let s = l.settle(&chunk(1));
        assert_eq!(s.tables[0].last_key, Some(vec!["10".into()]));
        let s = l.settle(&chunk(2));
        let t = &s.tables[0];
        assert!(!t.complete && t.last_key.is_none() && t.rows == 0, "{t:?}");
        assert_eq!(t.key, vec!["code".to_string()]);
    }

    #[test]
    fn reserve_hands_out_fresh_blocks_per_start() {
        let dir = std::env::temp_dir().join(format!("tidemark-res-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(reserve(&dir, "p", "0/1").unwrap(), 0);
        assert_eq!(reserve(&dir, "p", "0/1").unwrap(), RESERVE_BLOCK);
        assert_eq!(reserve(&dir, "p", "0/2").unwrap(), 0);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
