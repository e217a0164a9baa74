//! The mirror MERGE: one per table and flush, by key, from the reducer's net effect
//! ([`crate::encoder::mirror`]).
//!
//! ```sql
//! MERGE INTO target USING source ON target.k = source.k [AND ...]
//! WHEN MATCHED AND source.__tm_delete THEN DELETE
//! WHEN MATCHED THEN UPDATE SET c = CASE WHEN source.__tm_keep_c THEN target.c ELSE source.c END, ...
//! WHEN NOT MATCHED AND NOT source.__tm_delete THEN INSERT (...) VALUES (source....)
//! [WHEN NOT MATCHED BY SOURCE THEN DELETE]          -- the batch had a truncate
//! ```
//!
//! With `delta.enableChangeDataFeed = true` delta-rs writes the `_change_data` files of the
//! MERGE itself (insert, update_preimage/update_postimage, delete).

use std::sync::Arc;

use arrow_array::RecordBatch;
use deltalake::datafusion::common::{Column, JoinType};
use deltalake::datafusion::logical_expr::{when, Expr};
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::operations::merge::MergeMetrics;
use deltalake::{DeltaResult, DeltaTable, DeltaTableError};

use crate::encoder::markers::MARKERS;
use crate::encoder::mirror::{MirrorBatch, DELETE_FLAG, KEEP_PREFIX};
use crate::encoder::{Layout, POSITION};

fn source(name: &str) -> Expr {
    Expr::Column(Column::new(Some("source"), name))
}

fn target(name: &str) -> Expr {
    Expr::Column(Column::new(Some("target"), name))
}

fn plain(name: &str) -> deltalake::delta_datafusion::DeltaColumn {
    Column::new_unqualified(name).into()
}

/// Runs the MERGE; returns the new table state and delta-rs' metrics.
pub async fn merge(
    table: DeltaTable,
    layout: &Layout,
    mb: MirrorBatch,
    props: CommitProperties,
) -> DeltaResult<(DeltaTable, MergeMetrics)> {
    let ctx = SessionContext::new();
    let df = ctx.read_batch(mb.batch)?;
    let predicate = mb
        .key
        .iter()
        .map(|k| target(k).eq(source(k)))
        .reduce(Expr::and)
        .ok_or_else(|| DeltaTableError::Generic("mirror MERGE without key columns".into()))?;
    let data: Vec<&str> = layout
        .fields
        .iter()
        .map(|f| f.name().as_str())
        .filter(|n| !layout.is_system(n))
        .collect();
    let any_keep = mb
        .keep_columns
        .iter()
        .map(|c| source(&format!("{KEEP_PREFIX}{c}")))
        .reduce(Expr::or);
    let mut updates: Vec<(&str, Expr)> = Vec::with_capacity(data.len() + 2);
    for &c in &data {
        if mb.key.iter().any(|k| k == c) {
            continue;
        }
        let e = if mb.keep_columns.iter().any(|k| k == c) {
            when(source(&format!("{KEEP_PREFIX}{c}")), target(c)).otherwise(source(c))?
        } else {
            source(c)
        };
        updates.push((c, e));
    }
    updates.push((POSITION, source(POSITION)));
    let markers = match any_keep {
        // A row that kept stored values keeps the stored markers when it brings none
        // (docs/delta.md, "markers").
        Some(k) => {
            when(k.and(source(MARKERS).is_null()), target(MARKERS)).otherwise(source(MARKERS))?
        }
        None => source(MARKERS),
    };
    updates.push((MARKERS, markers));
    let mut builder = table
        .merge(df, predicate)
        .with_source_alias("source")
        .with_target_alias("target")
        .with_session_state(Arc::new(ctx.state()))
        .when_matched_delete(|d| d.predicate(source(DELETE_FLAG)))?
        .when_matched_update(|mut u| {
            for (c, e) in updates {
                u = u.update(plain(c), e);
            }
            u
        })?
        .when_not_matched_insert(|mut i| {
            i = i.predicate(!source(DELETE_FLAG));
            for &c in data.iter().chain([POSITION, MARKERS].iter()) {
                i = i.set(plain(c), source(c));
            }
            i
        })?;
    if mb.truncate {
        builder = builder.when_not_matched_by_source_delete(|d| d)?;
    }
    builder.with_commit_properties(props).await
}

/// Reads the stored rows whose key is in `keys` (for key-changed rows with unchanged values).
pub async fn stored_rows(table: &DeltaTable, keys: RecordBatch) -> DeltaResult<RecordBatch> {
    let ctx = SessionContext::new();
    table.update_datafusion_session(&ctx.state())?;
    let provider = table
        .table_provider()
        .await
        .map_err(|e| DeltaTableError::Generic(e.to_string()))?;
    let target_df = ctx.read_table(provider)?;
    let names: Vec<String> = keys
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let renamed: Vec<String> = names.iter().map(|n| format!("__tm_k_{n}")).collect();
    let keys_df = ctx.read_batch(keys)?.select(
        names
            .iter()
            .zip(&renamed)
            .map(|(n, r)| Expr::Column(Column::new_unqualified(n)).alias(r))
            .collect::<Vec<_>>(),
    )?;
    let left: Vec<&str> = names.iter().map(String::as_str).collect();
    let right: Vec<&str> = renamed.iter().map(String::as_str).collect();
    let joined = target_df.join(keys_df, JoinType::LeftSemi, &left, &right, None)?;
    let schema = Arc::new(joined.schema().as_arrow().clone());
    let batches = joined.collect().await?;
    Ok(deltalake::arrow::compute::concat_batches(
        &schema, &batches,
    )?)
}
