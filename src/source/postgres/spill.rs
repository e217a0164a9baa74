//! Storage for streamed (in-progress) transactions until they commit or abort.
//!
//! With pgoutput protocol 2+ and `streaming = on`, the server sends a large transaction in
//! blocks while it is still running, interleaved with other transactions. Nothing of it may reach
//! a sink before Stream Commit (it may still abort), and the commit LSN that orders its rows is
//! only known then. So the raw messages are kept here — in memory up to a budget, then appended
//! to a file per transaction in the spill directory — and replayed through the decoder at commit.
//!
//! Aborted subtransactions are remembered as a set and filtered out at replay, so an abort never
//! rewrites the file.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// One stored message: the subtransaction it belongs to, where it was in the WAL, its bytes.
pub type StoredMessage = (u32, u64, Vec<u8>);

#[derive(Default)]
struct StreamedTxn {
    memory: Vec<StoredMessage>,
    file: Option<(PathBuf, BufWriter<File>)>,
    aborted: HashSet<u32>,
}

/// Every streamed transaction of one replication session.
pub struct SpillStore {
    dir: PathBuf,
    memory_budget: usize,
    memory_used: usize,
    txns: HashMap<u32, StreamedTxn>,
}

impl SpillStore {
    /// Keeps up to `memory_budget` bytes in memory, then spills to files under `dir`.
    pub fn new(dir: &Path, memory_budget: usize) -> Self {
        Self {
            dir: dir.to_path_buf(),
            memory_budget,
            memory_used: 0,
            txns: HashMap::new(),
        }
    }

    /// True when no streamed transaction is open.
    pub fn is_empty(&self) -> bool {
        self.txns.is_empty()
    }

    /// Stores a message of top-level transaction `xid`.
    pub fn push(
        &mut self,
        xid: u32,
        subxid: u32,
        wal_start: u64,
        data: &[u8],
    ) -> std::io::Result<()> {
        let over_budget = self.memory_used + data.len() > self.memory_budget;
        let txn = self.txns.entry(xid).or_default();
        if over_budget || txn.file.is_some() {
            if txn.file.is_none() {
                std::fs::create_dir_all(&self.dir)?;
                let path = self
                    .dir
                    .join(format!("stream-{xid}-{}.spill", std::process::id()));
                let file = OpenOptions::new()
                    .create(true)
                    .truncate(true)
                    .read(true)
                    .write(true)
                    .open(&path)?;
                txn.file = Some((path, BufWriter::with_capacity(1 << 20, file)));
            }
            if let Some((_, w)) = txn.file.as_mut() {
                w.write_all(&subxid.to_be_bytes())?;
                w.write_all(&wal_start.to_be_bytes())?;
                w.write_all(&(data.len() as u32).to_be_bytes())?;
                w.write_all(data)?;
            }
        } else {
            self.memory_used += data.len();
            txn.memory.push((subxid, wal_start, data.to_vec()));
        }
        Ok(())
    }

    /// Marks subtransaction `subxid` of `xid` aborted; `subxid == xid` drops the whole transaction.
    pub fn abort(&mut self, xid: u32, subxid: u32) {
        if xid == subxid {
            if let Some(txn) = self.txns.remove(&xid) {
                self.release(txn);
            }
        } else if let Some(txn) = self.txns.get_mut(&xid) {
            txn.aborted.insert(subxid);
        }
    }

    /// Takes the committed transaction `xid`: a reader of its messages in arrival order,
    /// aborted subtransactions left out. Spilled messages come after the in-memory ones (memory
    /// holds the oldest: spilling starts when the budget runs out and never stops for that
    /// transaction). The reader reads the file one message at a time, so replaying a
    /// transaction larger than memory needs no more memory than its largest message.
    pub fn take(&mut self, xid: u32) -> std::io::Result<SpillReader> {
        let Some(mut txn) = self.txns.remove(&xid) else {
            return Ok(SpillReader::default());
        };
        let memory = std::mem::take(&mut txn.memory);
        self.memory_used = self
            .memory_used
            .saturating_sub(memory.iter().map(|m| m.2.len()).sum());
        let mut file = None;
        if let Some((path, mut w)) = txn.file.take() {
            w.flush()?;
            drop(w.into_inner().map_err(|e| e.into_error())?);
            let reader = BufReader::with_capacity(1 << 20, File::open(&path)?);
            file = Some((path, reader));
        }
        Ok(SpillReader {
            memory: memory.into_iter(),
            file,
            aborted: std::mem::take(&mut txn.aborted),
        })
    }

    fn release(&mut self, txn: StreamedTxn) {
        self.memory_used = self
            .memory_used
            .saturating_sub(txn.memory.iter().map(|m| m.2.len()).sum());
        if let Some((path, w)) = txn.file {
            drop(w);
            let _ = std::fs::remove_file(path);
        }
    }

    /// Drops everything (the session ended; the server resends open transactions).
    pub fn clear(&mut self) {
        for (_, txn) in std::mem::take(&mut self.txns) {
            self.release(txn);
        }
        self.memory_used = 0;
    }
}

/// The messages of one committed streamed transaction, from memory and then from its spill
/// file (removed when the reader is dropped).
#[derive(Default)]
pub struct SpillReader {
    memory: std::vec::IntoIter<StoredMessage>,
    file: Option<(PathBuf, BufReader<File>)>,
    aborted: HashSet<u32>,
}

impl SpillReader {
    /// The next `(wal_start, data)` of a subtransaction that did not abort; `None` at the end.
    pub fn next_message(&mut self) -> std::io::Result<Option<(u64, Vec<u8>)>> {
        for (subxid, wal_start, data) in self.memory.by_ref() {
            if !self.aborted.contains(&subxid) {
                return Ok(Some((wal_start, data)));
            }
        }
        let Some((_, r)) = self.file.as_mut() else {
            return Ok(None);
        };
        let mut header = [0u8; 16];
        loop {
            match r.read_exact(&mut header) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
                Err(e) => return Err(e),
            }
            let subxid = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
            let mut wal = [0u8; 8];
            wal.copy_from_slice(&header[4..12]);
            let len = u32::from_be_bytes([header[12], header[13], header[14], header[15]]);
            let mut data = vec![0u8; len as usize];
            r.read_exact(&mut data)?;
            if !self.aborted.contains(&subxid) {
                return Ok(Some((u64::from_be_bytes(wal), data)));
            }
        }
    }
}

impl Drop for SpillReader {
    fn drop(&mut self) {
        if let Some((path, r)) = self.file.take() {
            drop(r);
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for SpillStore {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spills_past_the_budget_and_replays_in_order_without_aborted_subxacts() {
        let dir = std::env::temp_dir().join(format!("tidemark-spill-{}", rand::random::<u64>()));
        let mut store = SpillStore::new(&dir, 10);
        store.push(7, 7, 1, b"aaaa").unwrap();
        store.push(7, 8, 2, b"bbbb").unwrap();
        store.push(7, 7, 3, b"cccc").unwrap(); // over budget: to the file
        store.push(7, 8, 4, b"dddd").unwrap();
        store.push(9, 9, 5, b"eeee").unwrap();
        store.abort(7, 8);
        let mut reader = store.take(7).unwrap();
        let mut got = Vec::new();
        while let Some(m) = reader.next_message().unwrap() {
            got.push(m);
        }
        drop(reader);
        assert_eq!(got, vec![(1, b"aaaa".to_vec()), (3, b"cccc".to_vec())]);
        store.abort(9, 9);
        assert!(store.is_empty());
        assert_eq!(std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0), 0);
        let _ = std::fs::remove_dir_all(dir);
    }
}
