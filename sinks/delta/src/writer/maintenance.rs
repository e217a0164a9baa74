//! Table maintenance after data commits: compaction (OPTIMIZE) and VACUUM, each every N data
//! commits of a table when configured. Checkpoints are written by delta-rs' post-commit hook
//! every `delta.checkpointInterval` commits (set when the table is created).
//!
//! Both operations are commits of their own; they carry the same position metadata as the data
//! commit before them, so the newest commit of a table always says how far it is (`ack.rs`).
//!
//! # Traps
//! - VACUUM deletes the files of old versions: readers (and `table_changes` over those
//!   versions) fail once they are gone. Keep `vacuum_retention` longer than any reader's lag.
//! - OPTIMIZE rewrites files with `dataChange = false`; the change feed does not see it.

use std::num::NonZeroU64;
use std::time::Duration;

use deltalake::kernel::transaction::CommitProperties;
use deltalake::{DeltaResult, DeltaTable};

/// What one maintenance run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MaintenanceStats {
    pub files_compacted: u64,
    pub files_written: u64,
    pub files_vacuumed: u64,
}

/// OPTIMIZE (bin-packing compaction) to `target_size` bytes per file.
pub async fn optimize(
    table: DeltaTable,
    target_size: u64,
    props: CommitProperties,
) -> DeltaResult<(DeltaTable, MaintenanceStats)> {
    let size = NonZeroU64::new(target_size).unwrap_or(NonZeroU64::MIN);
    let (t, m) = table
        .optimize()
        .with_target_size(size)
        .with_commit_properties(props)
        .await?;
    Ok((
        t,
        MaintenanceStats {
            files_compacted: m.num_files_removed,
            files_written: m.num_files_added,
            files_vacuumed: 0,
        },
    ))
}

/// VACUUM files unreferenced for longer than `retention`.
pub async fn vacuum(
    table: DeltaTable,
    retention: Duration,
    enforce_retention: bool,
    props: CommitProperties,
) -> DeltaResult<(DeltaTable, MaintenanceStats)> {
    let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let (t, m) = table
        .vacuum()
        .with_retention_period(retention)
        .with_enforce_retention_duration(enforce_retention)
        .with_commit_properties(props)
        .await?;
    Ok((
        t,
        MaintenanceStats {
            files_vacuumed: m.files_deleted.len() as u64,
            ..Default::default()
        },
    ))
}
