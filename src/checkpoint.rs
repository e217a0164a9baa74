//! Checkpoint store: the position every sink has durably committed, persisted per pipeline.
//!
//! ```text
//!  sinks ──committed()──► Checkpointer: min over sinks ──► FileCheckpointStore::save (atomic)
//!                                                           └──► source: flush LSN upstream
//! ```
//!
//! The order is fixed (ARCHITECTURE.md, Delivery): durable in every sink → durable here → reported
//! upstream. A crash between any two steps repeats work (duplicates after the last checkpoint) but
//! never skips any.
//!
//! # Traps
//! - `rename` is atomic only within one filesystem, and the new name is durable only after the
//!   *directory* is fsynced: a crash right after `rename` could otherwise bring back the old file
//!   (or none) on ext4 with `data=writeback`.
//! - A checkpoint must never move backwards: a sink that restarts reports nothing until it has
//!   committed again, so the minimum over sinks ignores nothing and regresses nothing.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tidemark_model::{GtidLedger, GtidLedgerHandle, Position};

use crate::snapshot::ledger::{Ledger, LedgerHandle, SnapshotCheckpoint};

/// What a checkpoint file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The pipeline this checkpoint belongs to.
    pub pipeline: String,
    /// Every change at or before this position is durable in every sink.
    pub position: String,
    /// Unix milliseconds of the save.
    pub saved_at_ms: i64,
    /// The tables and key ranges of a snapshot that are durable at `position`
    /// (`snapshot::ledger`); absent in checkpoints of pipelines that never snapshotted, and in
    /// files written before snapshots existed (they read as "no snapshot").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotCheckpoint>,
    /// MySQL: the GTID set executed at `position` (`tidemark_model::mysql_gtid_set`), which a
    /// restart sends with COM_BINLOG_DUMP_GTID; absent when GTIDs are off, unknown, or on
    /// other sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid_set: Option<String>,
}

impl Checkpoint {
    /// The position, parsed.
    pub fn position(&self) -> Result<Position, CheckpointError> {
        self.position.parse().map_err(|e| CheckpointError::Corrupt {
            path: PathBuf::new(),
            message: format!("position {:?}: {e}", self.position),
        })
    }
}

/// Errors of the checkpoint store. All are definite: a checkpoint we cannot read or write must
/// stop the pipeline rather than let it run without one.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "checkpoint {path} is corrupt: {message}; move it away to start from the slot's position"
    )]
    Corrupt { path: PathBuf, message: String },
}

/// One JSON file per pipeline under a directory, replaced atomically.
#[derive(Debug, Clone)]
pub struct FileCheckpointStore {
    path: PathBuf,
    pipeline: String,
    /// The running snapshot's progress, settled and written with every save (shared with
    /// the snapshot emitter; clones of the store share it).
    ledger: LedgerHandle,
    /// MySQL executed GTID sets registered by the source, settled at every save.
    gtids: GtidLedgerHandle,
}

impl FileCheckpointStore {
    /// The store for `pipeline` under `dir` (created if missing).
    pub fn open(dir: &Path, pipeline: &str) -> Result<Self, CheckpointError> {
        fs::create_dir_all(dir).map_err(|source| CheckpointError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(Self {
            path: dir.join(format!("{pipeline}.json")),
            pipeline: pipeline.to_string(),
            ledger: LedgerHandle::default(),
            gtids: GtidLedgerHandle::default(),
        })
    }

    /// The directory of the checkpoint file.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// The snapshot progress handle: set it to `Some` while a snapshot runs (or to keep a
    /// finished snapshot's record in later checkpoints).
    pub fn ledger(&self) -> LedgerHandle {
        self.ledger.clone()
    }

    /// The MySQL GTID ledger: the source registers the executed set at each transaction end;
    /// every save writes the set at the saved position (`gtid_set`).
    pub fn gtid_ledger(&self) -> GtidLedgerHandle {
        self.gtids.clone()
    }

    /// Starts the GTID ledger from a checkpoint's set (on a restart).
    pub fn track_gtids(&self, set: Option<tidemark_model::GtidSet>) {
        if let Ok(mut l) = self.gtids.lock() {
            *l = GtidLedger::new(set);
        }
    }

    /// Starts recording `state` with every save.
    pub fn track_snapshot(&self, state: SnapshotCheckpoint) {
        if let Ok(mut l) = self.ledger.lock() {
            *l = Some(Ledger::new(state));
        }
    }

    /// Path of the checkpoint file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored checkpoint, if any.
    pub fn load(&self) -> Result<Option<Checkpoint>, CheckpointError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(CheckpointError::Io {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        let cp: Checkpoint = serde_json::from_str(&text).map_err(|e| CheckpointError::Corrupt {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        cp.position().map_err(|e| match e {
            CheckpointError::Corrupt { message, .. } => CheckpointError::Corrupt {
                path: self.path.clone(),
                message,
            },
            other => other,
        })?;
        if cp.pipeline != self.pipeline {
            return Err(CheckpointError::Corrupt {
                path: self.path.clone(),
                message: format!(
                    "it belongs to pipeline {:?}, not {:?}",
                    cp.pipeline, self.pipeline
                ),
            });
        }
        Ok(Some(cp))
    }

    /// Persists `position`: write a temporary file, fsync it, rename over the old one, fsync the
    /// directory (see the module's traps).
    pub fn save(&self, position: &Position) -> Result<(), CheckpointError> {
        let snapshot = match self.ledger.lock() {
            Ok(mut l) => l.as_mut().map(|l| l.settle(position)),
            Err(_) => None,
        };
        let gtid_set = match (position.as_mysql(), self.gtids.lock()) {
            (Some(p), Ok(mut l)) => l.settle(p).map(|s| s.to_string()),
            _ => None,
        };
        let cp = Checkpoint {
            pipeline: self.pipeline.clone(),
            position: position.to_string(),
            saved_at_ms: now_ms(),
            snapshot,
            gtid_set,
        };
        let body = serde_json::to_vec_pretty(&cp).expect("a Checkpoint always serializes");
        write_atomic(&self.path, &body).map_err(|source| CheckpointError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// Removes the checkpoint (used by `tidemark reset`).
    pub fn remove(&self) -> Result<(), CheckpointError> {
        match fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(CheckpointError::Io {
                path: self.path.clone(),
                source,
            }),
        }
    }
}

/// Replaces `path` with `body` atomically and durably (the module's traps): temporary file,
/// fsync, rename, fsync of the directory.
pub(crate) fn write_atomic(path: &Path, body: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(body)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir).and_then(|d| d.sync_all())?;
    }
    Ok(())
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidemark_model::{Lsn, PgPosition};

    fn pos(commit: u64, index: u32) -> Position {
        Position::Postgres(PgPosition {
            commit_lsn: Lsn(commit),
            lsn: Lsn(commit - 8),
            index,
        })
    }

    #[test]
    fn save_then_load_round_trips() {
        let dir = std::env::temp_dir().join(format!("tidemark-cp-{}", rand::random::<u64>()));
        let store = FileCheckpointStore::open(&dir, "p1").unwrap();
        assert_eq!(store.load().unwrap(), None);
        store.save(&pos(0x1_0000_0010, 3)).unwrap();
        store.save(&pos(0x1_0000_0020, u32::MAX)).unwrap();
        let cp = store.load().unwrap().expect("saved");
        assert_eq!(cp.position().unwrap(), pos(0x1_0000_0020, u32::MAX));
        assert!(!store.path().with_extension("json.tmp").exists());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn corrupt_and_foreign_checkpoints_are_errors() {
        let dir = std::env::temp_dir().join(format!("tidemark-cp-{}", rand::random::<u64>()));
        let store = FileCheckpointStore::open(&dir, "p1").unwrap();
        fs::write(store.path(), "{not json").unwrap();
        assert!(matches!(store.load(), Err(CheckpointError::Corrupt { .. })));
        FileCheckpointStore::open(&dir, "p2")
            .unwrap()
            .save(&pos(100, 0))
            .unwrap();
        fs::rename(dir.join("p2.json"), store.path()).unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(err.contains("belongs to pipeline \"p2\""), "{err}");
        fs::remove_dir_all(dir).unwrap();
    }
}
