//! `tidemark iceberg compact|expire`: table maintenance from the command line, on the tables
//! of a pipeline's Iceberg sinks (or one of them with `--table namespace.name`).

use std::time::Duration;

use anyhow::Context;
use tidemark_iceberg::maintenance;

use crate::config::{Config, SinkConfig};

/// Which maintenance to run.
#[derive(Clone, Copy, Debug)]
pub enum Action {
    /// Rewrite data files with their deletes applied.
    Compact,
    /// Remove snapshots older than the age, keeping at least `keep`.
    Expire {
        older_than: Option<Duration>,
        keep: Option<u32>,
    },
}

/// Runs `action` on every table of every Iceberg sink of `config`; one report line per table.
pub async fn run(config: &Config, action: Action, table: Option<&str>) -> anyhow::Result<String> {
    let mut out = Vec::new();
    for (i, sink) in config.sinks.iter().enumerate() {
        #[allow(irrefutable_let_patterns)]
        let SinkConfig::Iceberg(cfg) = sink
        else {
            continue;
        };
        let catalog = tidemark_iceberg::Catalog::connect(&cfg.catalog, &cfg.storage)
            .await
            .with_context(|| format!("sinks[{i}].catalog"))?;
        for ident in catalog.list().await? {
            if table.is_some_and(|t| t != ident.to_string()) {
                continue;
            }
            let Some(t) = catalog.load(&ident).await? else {
                continue;
            };
            let line = match action {
                Action::Compact => {
                    match maintenance::compact(&catalog, &t, cfg.target_file_size_bytes).await? {
                        Some((_, s)) => format!(
                            "{ident}: compacted {} files into {} ({} rows), snapshot {}",
                            s.removed_files, s.data_files, s.records, s.snapshot_id
                        ),
                        None => format!("{ident}: nothing to compact"),
                    }
                }
                Action::Expire { older_than, keep } => {
                    let m = &cfg.maintenance;
                    let (_, s) = maintenance::expire(
                        &catalog,
                        &t,
                        older_than.unwrap_or(m.max_snapshot_age),
                        keep.unwrap_or(m.keep_snapshots),
                    )
                    .await?;
                    format!(
                        "{ident}: expired {} snapshots, deleted {} files",
                        s.snapshots_removed, s.files_deleted
                    )
                }
            };
            out.push(line);
        }
    }
    if out.is_empty() {
        anyhow::bail!("no Iceberg table found (is there a [[sinks]] kind = \"iceberg\" with committed tables?)");
    }
    Ok(out.join("\n"))
}
