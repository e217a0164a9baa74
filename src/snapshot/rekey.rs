//! A table's primary key changed during its incremental snapshot (the `rekey` of
//! `source/postgres/snapshot_incremental.rs` and `source/mysql/snapshot_incremental.rs`, whose
//! module traps explain why the chunks must start again): the one wording of the reasons
//! both sources log, record and show in `status`, and the restart they register. How a source
//! reads the table's new key and resets its chunk state stays with that source.

use tidemark_model::Position;

use super::ledger::{Completion, LedgerHandle};

/// The key change of one table: its name and the key its chunks were cut on.
pub struct KeyChange {
    table: String,
    was: String,
}

impl KeyChange {
    /// `table`'s chunks were cut on `was`.
    pub fn new(table: &str, was: &[String]) -> Self {
        KeyChange {
            table: table.to_string(),
            was: was.join(", "),
        }
    }

    /// "primary key of `table` changed from (was) to (`key`) during its incremental snapshot".
    pub fn changed(&self, key: &[String]) -> String {
        format!(
            "primary key of {} changed from ({}) to ({}) during its incremental snapshot",
            self.table,
            self.was,
            key.join(", ")
        )
    }

    /// What the user does once the cause is fixed.
    pub fn again(&self) -> String {
        format!(
            "request it again with tidemark snapshot --table {}",
            self.table
        )
    }

    /// Why the table's snapshot stops when reading its new `what` (shape, plan) failed.
    pub fn unreadable(&self, now: &[String], what: &str, error: &dyn std::fmt::Display) -> String {
        format!(
            "{}; reading the table's {what} failed ({error}); {}",
            self.changed(now),
            self.again()
        )
    }

    /// Why the table's snapshot stops when it has no primary key now.
    pub fn no_key(&self) -> String {
        format!(
            "{}; the table has no primary key now: give it one or set snapshot.key_columns, then {}",
            self.changed(&[]),
            self.again()
        )
    }

    /// `key` is the old one again (changed and changed back): logged; the chunk is read again,
    /// from the same key.
    pub fn is_back(&self, key: &[String]) -> bool {
        let back = key.join(", ") == self.was;
        if back {
            tracing::info!(table = %self.table, key = %self.was, "incremental snapshot: the table's primary key changed and is back; the chunk is read again");
        }
        back
    }

    /// The table (`index` in the ledger's record, `rows_so_far` read on the old key) starts
    /// again from its first key, cut on `key`: logged, and registered in the ledger at `end`
    /// (after the old key's chunks, so a chunk settling later cannot put an old `last_key`
    /// back).
    pub fn restart(
        &self,
        ledger: &LedgerHandle,
        end: Position,
        index: usize,
        key: &[String],
        rows_so_far: u64,
    ) {
        tracing::warn!(table = %self.table, old_key = %self.was, new_key = %key.join(", "), rows_so_far,
            "incremental snapshot: {}; the table's snapshot starts again from its first key, chunked by the new key", self.changed(key));
        if let Ok(mut l) = ledger.lock() {
            if let Some(l) = l.as_mut() {
                l.register(
                    end,
                    Completion::Restart {
                        table: index,
                        key: key.to_vec(),
                    },
                );
            }
        }
    }
}
