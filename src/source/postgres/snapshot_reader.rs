//! One reader connection of a Postgres snapshot (`snapshot.rs`): imports the exported snapshot,
//! then takes key ranges off the shared queue and streams each range's binary COPY into
//! `Op::Read` batches for the emitter.
//!
//! # Traps
//! - `SET TRANSACTION SNAPSHOT` must be the first statement of the REPEATABLE READ
//!   transaction, and is reported (`imported`) before any range is read so the exporting
//!   connection can be closed as early as possible.
//! - A range is reported done (`RangeDone`) only after its COPY ended with the trailer: a
//!   COPY cut short is an error, never a short range.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use tidemark_model::{ChangeBatchBuilder, Position};
use tokio::sync::mpsc;

use super::config::PgConnectConfig;
use super::control::PgControl;
use super::error::PgSourceError;
use super::quote_literal;
use super::snapshot::SnapshotError;
use super::snapshot_copy::{CopyReader, RowError};
use super::snapshot_plan::{self, PlannedTable};
use crate::snapshot::emit::ReaderMsg;

/// The ctid condition of range `range` of a keyless table cut by pages.
fn ctid_condition(t: &PlannedTable, range: u32) -> Option<String> {
    let p = &t.progress;
    if !p.key.is_empty() || p.bounds.is_empty() {
        return None;
    }
    let r = range as usize;
    let mut c = Vec::new();
    if r > 0 {
        c.push(format!(
            "ctid >= {}::tid",
            quote_literal(&p.bounds[r - 1][0])
        ));
    }
    if r < p.bounds.len() {
        c.push(format!("ctid < {}::tid", quote_literal(&p.bounds[r][0])));
    }
    Some(c.join(" AND "))
}

/// One reader connection.
pub(crate) struct Reader {
    pub(crate) connect: PgConnectConfig,
    pub(crate) snapshot_name: Option<String>,
    pub(crate) work: Arc<Mutex<VecDeque<(usize, u32)>>>,
    pub(crate) tables: Arc<Vec<PlannedTable>>,
    pub(crate) tx: mpsc::Sender<Result<ReaderMsg, SnapshotError>>,
    pub(crate) imported: mpsc::Sender<()>,
    pub(crate) chunk_rows: usize,
    pub(crate) max_bytes: usize,
    pub(crate) placeholder: Position,
    pub(crate) commit_ts_us: Option<i64>,
}

impl Reader {
    pub(crate) async fn run(self) -> Result<(), SnapshotError> {
        let result = self.read().await;
        if let Err(e) = result {
            let msg = e.to_string();
            // The emitter stops at the first error; the task result carries it too.
            let _ = self.tx.send(Err(e)).await;
            return Err(SnapshotError::Setup(msg));
        }
        Ok(())
    }

    async fn read(&self) -> Result<(), SnapshotError> {
        let control = PgControl::connect(&self.connect).await?;
        let at = control.at().clone();
        let exec = |what: &'static str| {
            let at = at.clone();
            move |e| PgSourceError::control(&at, what, e)
        };
        control
            .client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(exec("snapshot begin"))?;
        if let Some(name) = &self.snapshot_name {
            control
                .client
                .batch_execute(&format!("SET TRANSACTION SNAPSHOT {}", quote_literal(name)))
                .await
                .map_err(exec("SET TRANSACTION SNAPSHOT"))?;
        }
        let _ = self.imported.send(()).await;
        loop {
            let next = self.work.lock().ok().and_then(|mut w| w.pop_front());
            let Some((t, range)) = next else { break };
            self.read_range(&control, t, range).await?;
        }
        control
            .client
            .batch_execute("COMMIT")
            .await
            .map_err(exec("snapshot commit"))?;
        Ok(())
    }

    async fn read_range(
        &self,
        control: &PgControl,
        t: usize,
        range: u32,
    ) -> Result<(), SnapshotError> {
        let table = &self.tables[t];
        let name = table.progress.table.clone();
        let sql = snapshot_plan::copy_sql(table, range, ctid_condition(table, range).as_deref());
        tracing::debug!(table = %name, range, %sql, "snapshot range");
        let query_err = |message: String| SnapshotError::Query {
            table: name.clone(),
            range,
            message,
        };
        let read_err = |source: RowError| SnapshotError::Read {
            table: name.clone(),
            range,
            source,
        };
        // Keeps the client error: a killed or closed connection is transient (a retry
        // resumes the snapshot, `snapshot/retry.rs`), a refused query is not.
        let copy_err = |e: tokio_postgres::Error| SnapshotError::Copy {
            table: name.clone(),
            range,
            source: PgSourceError::control(control.at(), "snapshot COPY", e),
        };
        let stream = control
            .client
            .copy_out(sql.as_str())
            .await
            .map_err(copy_err)?;
        let mut stream = std::pin::pin!(stream);
        let mut reader = CopyReader::new(
            table.binary.clone(),
            self.placeholder,
            None,
            self.commit_ts_us,
        );
        let mut builder = ChangeBatchBuilder::new(table.schema.clone(), self.chunk_rows);
        let mut rows = 0u64;
        while let Some(data) = stream.next().await {
            reader.push(data.map_err(copy_err)?);
            loop {
                let room = self.chunk_rows - builder.len();
                let n = reader.read_rows(&mut builder, room).map_err(read_err)?;
                rows += n as u64;
                if builder.len() >= self.chunk_rows || builder.byte_size() >= self.max_bytes {
                    self.piece(t, &mut builder).await?;
                } else if n == 0 || n < room {
                    break;
                }
            }
        }
        if !reader.finished() {
            return Err(query_err("COPY ended without its trailer".into()));
        }
        if !builder.is_empty() {
            self.piece(t, &mut builder).await?;
        }
        self.send(ReaderMsg::RangeDone {
            table: t,
            range,
            rows,
        })
        .await
    }

    async fn piece(&self, t: usize, builder: &mut ChangeBatchBuilder) -> Result<(), SnapshotError> {
        let batch = builder.finish().map_err(|e| SnapshotError::Read {
            table: self.tables[t].progress.table.clone(),
            range: 0,
            source: RowError::Model(e),
        })?;
        self.send(ReaderMsg::Piece { table: t, batch }).await
    }

    async fn send(&self, msg: ReaderMsg) -> Result<(), SnapshotError> {
        self.tx
            .send(Ok(msg))
            .await
            .map_err(|_| SnapshotError::Setup("the snapshot emitter stopped".into()))
    }
}
