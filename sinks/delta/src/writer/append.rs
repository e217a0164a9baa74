//! The changelog append: one Delta commit of new files per table and flush (no CDF files are
//! needed: a reader derives `insert` rows of an append from its `add` actions).

use arrow_array::RecordBatch;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaResult, DeltaTable};

/// Appends `batches` (already in the table's layout) in one commit.
pub async fn append(
    table: DeltaTable,
    batches: Vec<RecordBatch>,
    props: CommitProperties,
) -> DeltaResult<DeltaTable> {
    table
        .write(batches)
        .with_save_mode(SaveMode::Append)
        .with_commit_properties(props)
        .await
}
