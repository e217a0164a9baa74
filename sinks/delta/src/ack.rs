//! What each Delta table has durably committed, and how a restart finds out.
//!
//! Every data commit of the sink carries
//! - a Delta `txn` action `{appId: "tidemark:<pipeline>:<sink>", version: n}` with `n` one more
//!   than the table's previous one (delta-rs' conflict checker then refuses a second writer
//!   with the same application id racing us), and
//! - commit info `tidemark.app_id`, `tidemark.txn_version = n`, `tidemark.position` (the end
//!   of the last source transaction in the commit, in its checkpoint text form).
//!
//! On restart [`read_committed`] takes `n` from the table's snapshot (`txn` actions survive
//! checkpoints) and the position from the newest commit info with that `n` (maintenance
//! commits repeat it, so it is always among the newest commits). A change whose position is at
//! or below it is already in the table and is skipped.
//!
//! # Traps
//! - The position is per table: a flush commits tables one after another, so a crash between
//!   two commits leaves one table ahead of the other. The engine's checkpoint (the minimum
//!   over sinks, saved only after `flush` returned) replays from before both; the table that
//!   is ahead skips what it has.
//! - A Delta `txn` version must increase, but a position does not fit an `i64` (a Postgres
//!   position is 20 bytes, MySQL's has a file name): the version is a counter and the position
//!   lives in the commit info.

use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::Transaction as TxnAction;
use tidemark_model::Position;

use crate::error::DeltaError;
use crate::writer::TableWriter;

/// Commit info key: the application id.
pub const META_APP_ID: &str = "tidemark.app_id";
/// Commit info key: the `txn` version of the commit (or of the last data commit).
pub const META_TXN_VERSION: &str = "tidemark.txn_version";
/// Commit info key: the position the table holds everything up to.
pub const META_POSITION: &str = "tidemark.position";

/// How many of the newest commits are searched before the whole log is.
const HISTORY_WINDOW: usize = 64;

/// The `txn` application id of a sink.
pub fn app_id(pipeline: &str, sink: &str) -> String {
    format!("tidemark:{pipeline}:{sink}")
}

/// What one table holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableAck {
    /// The `txn` version of our last data commit (0: none).
    pub txn_version: i64,
    /// Everything at or below this position is in the table.
    pub position: Option<Position>,
}

impl TableAck {
    /// Whether a change at `p` is already in the table.
    pub fn has(&self, p: &Position) -> bool {
        self.position.as_ref().is_some_and(|c| p <= c)
    }
}

/// Commit properties carrying `position`; `txn_version` adds the `txn` action (data commits).
pub fn commit_properties(
    app_id: &str,
    txn_version: i64,
    data_commit: bool,
    position: Option<&Position>,
) -> CommitProperties {
    let mut meta = vec![
        (META_APP_ID.to_owned(), serde_json::json!(app_id)),
        (META_TXN_VERSION.to_owned(), serde_json::json!(txn_version)),
    ];
    if let Some(p) = position {
        meta.push((META_POSITION.to_owned(), serde_json::json!(p.to_string())));
    }
    let mut props = CommitProperties::default().with_metadata(meta);
    if data_commit {
        props = props.with_application_transaction(TxnAction::new(app_id, txn_version));
    }
    props
}

/// Reads what `w`'s table holds for `app_id` (nothing for a new table).
pub async fn read_committed(w: &TableWriter, app_id: &str) -> Result<TableAck, DeltaError> {
    if w.table.version().is_none() {
        return Ok(TableAck::default());
    }
    let err = |op: &'static str| {
        move |source| DeltaError::Delta {
            table: w.id.clone(),
            uri: w.url.to_string(),
            op,
            source: Box::new(source),
        }
    };
    let snapshot = w.table.snapshot().map_err(err("read snapshot"))?;
    let Some(version) = snapshot
        .transaction_version(w.table.log_store().as_ref(), app_id)
        .await
        .map_err(err("read txn version"))?
    else {
        return Ok(TableAck::default());
    };
    for limit in [Some(HISTORY_WINDOW), None] {
        let history = w.table.history(limit).await.map_err(err("read history"))?;
        let mut found: Option<Position> = None;
        for info in history {
            let ours = info.info.get(META_APP_ID).and_then(|v| v.as_str()) == Some(app_id);
            let same = info.info.get(META_TXN_VERSION).and_then(|v| v.as_i64()) == Some(version);
            if !(ours && same) {
                continue;
            }
            let Some(text) = info.info.get(META_POSITION).and_then(|v| v.as_str()) else {
                continue;
            };
            let p: Position = text.parse().map_err(|e| DeltaError::Log {
                table: w.id.clone(),
                uri: w.url.to_string(),
                message: format!("commit info {META_POSITION} {text:?} is not a position: {e}"),
            })?;
            if found.is_none_or(|f| p > f) {
                found = Some(p);
            }
        }
        if let Some(p) = found {
            return Ok(TableAck {
                txn_version: version,
                position: Some(p),
            });
        }
    }
    Err(DeltaError::Log {
        table: w.id.clone(),
        uri: w.url.to_string(),
        message: format!(
            "the log has txn version {version} of {app_id} but no commit info with its position \
             (log entries removed by log retention?); the position cannot be recovered"
        ),
    })
}
