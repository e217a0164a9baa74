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

/// VACUUM files unreferenced for longer than `retention`, or longer than the table's own
/// `delta.deletedFileRetentionDuration` where that is set and longer (someone asked for it; the
/// longer one is the safe one). The returned stats say which retention ran.
///
/// delta-rs' own retention check is off: it compares with the table property, which defaults
/// to a week whether set or not, so a configured `24h` on a table created before
/// `vacuum_retention` was set would fail every time. The sink's configuration check (at least
/// 1 h unless `vacuum_unsafe_short_retention`) takes its place.
pub async fn vacuum(
    table: DeltaTable,
    retention: Duration,
    props: CommitProperties,
) -> DeltaResult<(DeltaTable, MaintenanceStats, Duration)> {
    let table_own = table
        .snapshot()?
        .table_config()
        .deleted_file_retention_duration;
    let effective = table_own.map_or(retention, |t| t.max(retention));
    let period = chrono::Duration::from_std(effective).unwrap_or(chrono::Duration::MAX);
    let (t, m) = table
        .vacuum()
        .with_retention_period(period)
        .with_enforce_retention_duration(false)
        .with_commit_properties(props)
        .await?;
    Ok((
        t,
        MaintenanceStats {
            files_vacuumed: m.files_deleted.len() as u64,
            ..Default::default()
        },
        effective,
    ))
}
