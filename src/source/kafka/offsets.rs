//! The Kafka source's own durable state beside the checkpoint, and the map from an
//! acknowledged position back to per-partition offsets.
//!
//! ```text
//! <checkpoint dir>/<pipeline>.kafka.json   {"epoch": E, "offsets": {"topic": {"0": next, …}}}
//! ```
//!
//! - `epoch` is the run number of the source: raised (and fsynced) at every start before a
//!   record is handed on, never below the Unix time in seconds, so every position of a run
//!   sorts after every position of every earlier run, even if the file was lost.
//! - `offsets` are, per partition, the next offset to read: every record before it is
//!   durable in every sink (its batch's position was checkpointed by the engine). Written
//!   after each checkpoint the engine publishes.
//!
//! # Traps
//! - A batch holds records of several partitions; it is safe only as a whole, and only with
//!   every earlier batch (positions are acknowledged as "everything up to here").
//! - A partition that had no records in the acknowledged batches keeps its offset.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tidemark_model::{KafkaPosition, Position};

/// The state file's content.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceState {
    pub epoch: u32,
    /// topic → partition → next offset to read.
    pub offsets: BTreeMap<String, BTreeMap<i32, i64>>,
}

/// Reads and writes `<pipeline>.kafka.json` atomically (temp file, fsync, rename, fsync dir).
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn new(dir: &Path, pipeline: &str) -> Self {
        StateFile {
            path: dir.join(format!("{pipeline}.kafka.json")),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored state; the default when there is none. A negative offset is refused: the
    /// consumer would take it for a logical offset (-1 end, -2 beginning, …) and skip or
    /// repeat records without a word.
    pub fn load(&self) -> std::io::Result<SourceState> {
        let invalid = |message: String| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {message}", self.path.display()),
            )
        };
        let state: SourceState = match std::fs::read(&self.path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| invalid(e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(SourceState::default()),
            Err(e) => return Err(e),
        };
        for (topic, parts) in &state.offsets {
            if let Some((p, o)) = parts.iter().find(|(_, o)| **o < 0) {
                return Err(invalid(format!(
                    "topic {topic} partition {p}: offset {o} is negative (the file is corrupt; \
                     move it away to start from the consumer group's offsets)"
                )));
            }
        }
        Ok(state)
    }

    pub fn save(&self, state: &SourceState) -> std::io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = self.path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        std::fs::File::open(dir)?.sync_all()
    }
}

/// The epoch of a new run: above the stored one and not below the clock (seconds).
pub fn next_epoch(stored: u32, now_secs: u64) -> u32 {
    let clock = u32::try_from(now_secs).unwrap_or(u32::MAX);
    stored.saturating_add(1).max(clock)
}

/// Batches handed on but not yet acknowledged, and the offsets that are safe.
/// `(topic, partition, next offset)` of one partition in a batch.
type NextOffset = (String, i32, i64);

#[derive(Debug)]
pub struct InFlight {
    pub epoch: u32,
    /// `(seq, [(topic, partition, next offset)])`, oldest first.
    batches: VecDeque<(u64, Vec<NextOffset>)>,
    safe: BTreeMap<String, BTreeMap<i32, i64>>,
}

impl InFlight {
    pub fn new(epoch: u32, safe: BTreeMap<String, BTreeMap<i32, i64>>) -> Self {
        InFlight {
            epoch,
            batches: VecDeque::new(),
            safe,
        }
    }

    /// Batch `seq` was handed on; `next` are the offsets after its last record per partition.
    pub fn sent(&mut self, seq: u64, next: Vec<(String, i32, i64)>) {
        self.batches.push_back((seq, next));
    }

    /// Unacknowledged batches.
    pub fn len(&self) -> usize {
        self.batches.len()
    }

    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// The engine checkpointed `p`: the batches it covers are durable. Returns whether the
    /// safe offsets moved. Positions of other epochs (the checkpoint the run resumed from)
    /// change nothing: that run's offsets were stored when they were acknowledged.
    pub fn acknowledge(&mut self, p: &Position) -> bool {
        let Position::Kafka(KafkaPosition { epoch, seq, index }) = *p else {
            return false;
        };
        if epoch != self.epoch {
            return false;
        }
        let mut moved = false;
        while let Some((s, _)) = self.batches.front() {
            let covered = *s < seq || (*s == seq && index == u32::MAX);
            if !covered {
                break;
            }
            let (_, next) = self.batches.pop_front().expect("front exists");
            for (topic, partition, offset) in next {
                let e = self
                    .safe
                    .entry(topic)
                    .or_default()
                    .entry(partition)
                    .or_insert(offset);
                *e = (*e).max(offset);
            }
            moved = true;
        }
        moved
    }

    /// The safe offsets: topic → partition → next offset to read.
    pub fn safe(&self) -> &BTreeMap<String, BTreeMap<i32, i64>> {
        &self.safe
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(epoch: u32, seq: u64) -> Position {
        Position::Kafka(KafkaPosition::end(epoch, seq))
    }

    #[test]
    fn only_whole_acknowledged_batches_move_offsets() {
        let mut f = InFlight::new(7, BTreeMap::new());
        f.sent(1, vec![("a".into(), 0, 10), ("a".into(), 1, 4)]);
        f.sent(2, vec![("a".into(), 0, 12)]);
        f.sent(3, vec![("a".into(), 1, 9)]);
        assert!(!f.acknowledge(&end(6, 3)), "another run's position");
        assert!(!f.acknowledge(&Position::Kafka(KafkaPosition {
            epoch: 7,
            seq: 1,
            index: 3
        })));
        assert!(f.acknowledge(&end(7, 2)));
        assert_eq!(f.safe()["a"][&0], 12);
        assert_eq!(f.safe()["a"][&1], 4);
        assert_eq!(f.len(), 1);
        assert!(f.acknowledge(&end(7, 3)));
        assert_eq!(f.safe()["a"][&1], 9);
        assert!(f.is_empty());
    }

    #[test]
    fn epochs_rise_and_state_round_trips() {
        assert_eq!(next_epoch(0, 1_700_000_000), 1_700_000_000);
        assert_eq!(next_epoch(1_700_000_005, 1_700_000_000), 1_700_000_006);
        let dir = std::env::temp_dir().join(format!("tm-kafka-state-{}", std::process::id()));
        let f = StateFile::new(&dir, "p");
        assert_eq!(f.load().unwrap(), SourceState::default());
        let mut s = SourceState {
            epoch: 3,
            ..Default::default()
        };
        s.offsets.entry("t".into()).or_default().insert(2, 99);
        f.save(&s).unwrap();
        assert_eq!(f.load().unwrap(), s);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_negative_stored_offset_is_refused() {
        let dir = std::env::temp_dir().join(format!("tm-kafka-neg-{}", std::process::id()));
        let f = StateFile::new(&dir, "p");
        let mut s = SourceState::default();
        s.offsets.entry("t".into()).or_default().insert(3, -2);
        f.save(&s).unwrap();
        let e = f.load().unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        assert!(
            e.to_string()
                .contains("topic t partition 3: offset -2 is negative"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
