//! [`DebeziumEncoder`]: transactions → Debezium records (topic, JSON key, JSON value, headers).
//! Pure and deterministic except for the processing-time fields (`ts_ms`/`ts_us`/`ts_ns` of the
//! envelope), whose clock is injectable ([`DebeziumEncoder::with_clock`]).
//!
//! ```text
//! Transaction ─┬─ Rows(ChangeBatch) ─ per row ─ op c/u/d/t/r ─► Record(s) on <prefix>.<schema>.<table>
//!              └─ Message ────────────────────── op m ────────► Record on <prefix>.message
//! ```
//!
//! Submodules: `values` (one column value), `envelope` (rows, keys, source block), `schema`
//! (the Connect schema part), `codec` (base64, decimals, ISO dates), `json` (scalars).
//!
//! # How the bytes are written
//! Records are written as JSON bytes directly, never built as a `serde_json::Value`: the
//! parts of one row (source block, before/after images, key images) go into one scratch
//! buffer reused across rows, and each record's key and value are then assembled from those
//! parts into a `Vec<u8>` sized for them. Per plan (table and schema version) the escaped
//! `"<column>":` keys and, with `schemas_enable`, the serialised Connect schemas are kept.
//! The output is byte for byte what the earlier Value-based encoder wrote (serde_json with
//! `preserve_order`): `differential.rs` checks that against a frozen copy of it (`oracle/`)
//! for random batches, and a golden file pins the bytes of the all-types workload.

mod codec;
mod envelope;
mod json;
mod mysql;
mod schema;
mod txmeta;
mod values;

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arrow_array::cast::AsArray;
use arrow_array::{Array, TimestampMicrosecondArray, UInt64Array, UInt8Array};
use serde_json::Value;
use tidemark_model::{
    ChangeBatch, Image, LogicalMessage, Lsn, Op, Position, TableId, TableSchema, Transaction,
    TxnItem,
};

pub use codec::{base64, base64_decode, digits_to_twos_complement};
use envelope::SourceInfo;
use txmeta::{Marker, TxMeta};
use values::Conv;

use crate::config::EncoderOptions;

/// Header on the delete of a primary key change: the new key (JSON).
pub const HEADER_NEW_KEY: &str = "__debezium.newkey";
/// Header on the create of a primary key change: the old key (JSON).
pub const HEADER_OLD_KEY: &str = "__debezium.oldkey";

/// One Kafka-style record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// `<prefix>.<schema>.<table>` or `<prefix>.message` (shared: every record of a table
    /// names the same topic, so it is one allocation per table, not per record).
    pub topic: Arc<str>,
    /// The JSON key; `None` for tables without a primary key and for truncates.
    pub key: Option<Vec<u8>>,
    /// The JSON value; `None` is a tombstone.
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    /// Debezium's `op` (`c`, `u`, `d`, `t`, `r`, `m`); `None` for a tombstone.
    pub op: Option<&'static str>,
    /// The source position of the event.
    pub position: Position,
}

/// What a `source` block varies by within one batch (its table and the batch's metadata are the
/// same for all rows).
#[derive(Clone, Copy, PartialEq, Eq)]
enum SourceKey {
    /// Commit time, `source.snapshot`, rows event position, row, GTID.
    Mysql(
        Option<i64>,
        &'static str,
        u64,
        u32,
        Option<tidemark_model::Gtid>,
    ),
    /// Commit time, `source.snapshot`, last commit LSN, LSN, xid.
    Pg(
        Option<i64>,
        &'static str,
        Option<u64>,
        Option<u64>,
        Option<u64>,
    ),
}

/// The last `source` block of a batch and what it was made of: the rows of one batch mostly
/// share it (every row of a snapshot chunk; a rows event's rows differ in `row` only), so the
/// last one is reused when nothing it is made of changed.
#[derive(Default)]
struct SourceMemo {
    key: Option<SourceKey>,
    block: Vec<u8>,
}

/// Encoding failed for a value (an Arrow type the plan does not expect, malformed text).
/// Definite: the same batch fails the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("debezium encoder: table {table}, column {column} ({source_type}): {reason}")]
    Value {
        table: String,
        column: String,
        source_type: String,
        reason: String,
    },
    #[error("debezium encoder: JSON serialisation failed: {0}")]
    Json(String),
}

/// Per table and schema version: conversions, topic, the escaped field names and (with
/// schemas) the Connect schemas, serialised once.
#[derive(Debug)]
pub(crate) struct TablePlan {
    pub(crate) convs: Vec<Conv>,
    /// `"<column name>":` per column, escaped.
    pub(crate) field_keys: Vec<Vec<u8>>,
    topic: Arc<str>,
    /// `<schema>.<table>`: the data collection of `provide_transaction_metadata`.
    collection: String,
    has_key: bool,
    key_schema: Option<Vec<u8>>,
    envelope_schema: Option<Vec<u8>>,
}

type Clock = Box<dyn Fn() -> i128 + Send>;

/// Encodes transactions as Debezium records. Keeps per-table plans and the end LSN of the
/// previous transaction (`source.sequence`).
pub struct DebeziumEncoder {
    opts: EncoderOptions,
    plans: HashMap<(TableId, u32), Arc<TablePlan>>,
    last_commit_lsn: Option<Lsn>,
    last_commit_ts_us: Option<i64>,
    clock: Clock,
    /// `provide_transaction_metadata`: the transaction whose END is still due (chunks).
    txmeta: Option<TxMeta>,
    /// The transaction metadata key and value schemas, serialised (with `schemas_enable`).
    txmeta_schemas: Option<(Vec<u8>, Vec<u8>)>,
    /// Scratch for the parts of one row (source block, images, keys), reused across rows.
    buf: Vec<u8>,
}

fn system_now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// A row of a batch with what `encode_row` reads of its system columns (read by
/// `encode_batch`).
#[derive(Clone, Copy)]
struct RowAt {
    row: usize,
    op: Op,
    position: Position,
    txid: Option<u64>,
    commit_ts_us: Option<i64>,
    has_markers: bool,
}

/// A batch's system columns downcast once. Each accessor returns what the `ChangeBatch`
/// accessor of the same name returns, and falls back to it when a column is not of the
/// expected type (which fails there as it always did).
struct SystemColumns<'a> {
    batch: &'a ChangeBatch,
    ops: Option<&'a UInt8Array>,
    txids: Option<&'a UInt64Array>,
    commit_ts: Option<&'a TimestampMicrosecondArray>,
    markers: &'a dyn Array,
}

impl<'a> SystemColumns<'a> {
    fn new(batch: &'a ChangeBatch) -> Self {
        use tidemark_model::table::columns;
        let col = |i: usize| batch.batch.column(i);
        SystemColumns {
            batch,
            ops: col(columns::OP_INDEX).as_primitive_opt(),
            txids: col(columns::TXID_INDEX).as_primitive_opt(),
            commit_ts: col(columns::COMMIT_TS_INDEX).as_primitive_opt(),
            markers: col(columns::MARKERS_INDEX).as_ref(),
        }
    }

    #[inline]
    fn op(&self, row: usize) -> Op {
        match self.ops.and_then(|a| Op::from_u8(a.value(row))) {
            Some(op) => op,
            None => self.batch.op(row),
        }
    }

    #[inline]
    fn txid(&self, row: usize) -> Option<u64> {
        match self.txids {
            Some(a) => a.is_valid(row).then(|| a.value(row)),
            None => self.batch.txid(row),
        }
    }

    #[inline]
    fn commit_ts_us(&self, row: usize) -> Option<i64> {
        match self.commit_ts {
            Some(a) => a.is_valid(row).then(|| a.value(row)),
            None => self.batch.commit_ts_us(row),
        }
    }

    #[inline]
    fn has_markers(&self, row: usize) -> bool {
        self.markers.is_valid(row)
    }
}

/// Byte ranges of one row's parts inside the scratch buffer.
struct RowParts {
    source: Range<usize>,
    before: Option<Range<usize>>,
    after: Option<Range<usize>>,
    now_ns: i128,
}

/// `{"schema":<schema>,"payload":` … `}` around `payload` when `schema` is set.
fn wrapped(schema: Option<&[u8]>, payload_len: usize, write: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    match schema {
        Some(s) => {
            let mut v = Vec::with_capacity(s.len() + payload_len + 24);
            v.extend_from_slice(b"{\"schema\":");
            v.extend_from_slice(s);
            v.extend_from_slice(b",\"payload\":");
            write(&mut v);
            v.push(b'}');
            v
        }
        None => {
            let mut v = Vec::with_capacity(payload_len);
            write(&mut v);
            v
        }
    }
}

/// Whether two key documents are the same key. Equal bytes are; different bytes are compared
/// as JSON values, as the Value-based encoder did (`0.0` equals `-0.0`).
fn same_key(a: &[u8], b: &[u8]) -> bool {
    a == b
        || matches!(
            (serde_json::from_slice::<Value>(a), serde_json::from_slice::<Value>(b)),
            (Ok(x), Ok(y)) if x == y
        )
}

impl DebeziumEncoder {
    pub fn new(opts: EncoderOptions) -> Self {
        let txmeta_schemas = opts.schemas_enable.then(|| {
            (
                serde_json::to_vec(&txmeta::key_schema()).unwrap_or_default(),
                serde_json::to_vec(&txmeta::value_schema()).unwrap_or_default(),
            )
        });
        DebeziumEncoder {
            opts,
            plans: HashMap::new(),
            last_commit_lsn: None,
            last_commit_ts_us: None,
            clock: Box::new(system_now_ns),
            txmeta: None,
            txmeta_schemas,
            buf: Vec::with_capacity(4096),
        }
    }

    /// Replaces the processing-time clock (ns since the epoch); for tests.
    pub fn with_clock(mut self, clock: impl Fn() -> i128 + Send + 'static) -> Self {
        self.clock = Box::new(clock);
        self
    }

    pub fn options(&self) -> &EncoderOptions {
        &self.opts
    }

    /// Sets the end LSN of the last transaction before the next one (after a restart), so the
    /// first `source.sequence` is not `[null, ..]`.
    pub fn set_last_commit_lsn(&mut self, lsn: Option<Lsn>) {
        self.last_commit_lsn = lsn;
    }

    /// Debezium's topic of a table: `<topic.prefix>.<schema>.<table>` (Postgres) or
    /// `<topic.prefix>.<database>.<table>` (MySQL, whose `TableId::namespace` is the database).
    /// The Kafka sink routes by it.
    pub fn table_topic(&self, table: &TableId) -> String {
        format!(
            "{}.{}.{}",
            self.opts.server_name, table.namespace, table.name
        )
    }

    fn plan(&mut self, schema: &Arc<TableSchema>) -> Arc<TablePlan> {
        let id = (schema.table.clone(), schema.version);
        if let Some(p) = self.plans.get(&id) {
            return p.clone();
        }
        let convs: Vec<Conv> = schema
            .columns
            .iter()
            .map(|c| values::plan(&c.source_type, &c.data_type, &self.opts))
            .collect();
        let field_keys = schema
            .columns
            .iter()
            .map(|c| {
                let mut k = Vec::with_capacity(c.name.len() + 3);
                json::str(&mut k, &c.name);
                k.push(b':');
                k
            })
            .collect();
        let (key_schema, envelope_schema) = if self.opts.schemas_enable {
            let value = schema::row_schema(schema, &convs, false, &self.opts);
            let key = schema::row_schema(schema, &convs, true, &self.opts);
            let envelope = schema::envelope_schema(schema, &value, &self.opts);
            (
                Some(serde_json::to_vec(&key).unwrap_or_default()),
                Some(serde_json::to_vec(&envelope).unwrap_or_default()),
            )
        } else {
            (None, None)
        };
        let plan = Arc::new(TablePlan {
            topic: self.table_topic(&schema.table).into(),
            collection: format!("{}.{}", schema.table.namespace, schema.table.name),
            has_key: schema.has_key(),
            convs,
            field_keys,
            key_schema,
            envelope_schema,
        });
        self.plans.insert(id, plan.clone());
        plan
    }

    /// Encodes every item of `txn` in order, handing each record to `out`.
    pub fn encode_transaction(
        &mut self,
        txn: &Transaction,
        out: &mut impl FnMut(Record),
    ) -> Result<(), EncodeError> {
        let meta_on = self.opts.provide_transaction_metadata && txn.xid.is_some();
        let mut tm = match (meta_on, self.txmeta.take()) {
            (false, kept) => {
                self.txmeta = kept;
                None
            }
            (true, Some(t)) if Some(t.xid()) == txn.xid => Some(t),
            (true, _) => Some(TxMeta::new(txn.xid.unwrap_or_default())),
        };
        // A non-transactional logical message is "processed" before it is encoded: Debezium's
        // `sequence[0]` is its own LSN, and stays so for the events after it (observed live by
        // the differential test; docs/debezium-compatibility.md §3).
        if txn.xid.is_none() && txn.complete {
            if let Some(pg) = txn.end.as_pg() {
                self.last_commit_lsn = Some(pg.lsn);
            }
        }
        let mut buf = std::mem::take(&mut self.buf);
        let mut result = Ok(());
        for item in &txn.items {
            result = match item {
                TxnItem::Rows(batch) => self.encode_batch(txn, batch, &mut tm, &mut buf, out),
                TxnItem::Message(m) => self.encode_message(txn, m, &mut tm, &mut buf, out),
            };
            if result.is_err() {
                break;
            }
        }
        self.buf = buf;
        result?;
        if let Some(t) = tm {
            if txn.complete {
                let ts_ms = txn.commit_ts_us.unwrap_or(0).div_euclid(1000);
                let end_lsn = txn.end.as_pg().map(|p| p.lsn.0);
                if let Some(m) = t.end(end_lsn, ts_ms, txn.end) {
                    out(self.marker_record(m));
                }
            } else {
                self.txmeta = Some(t);
            }
        }
        // A chunk of a long transaction (`complete == false`) has not committed yet.
        if txn.xid.is_some() && txn.complete {
            if let Some(pg) = txn.end.as_pg() {
                self.last_commit_lsn = Some(pg.lsn);
            }
            self.last_commit_ts_us = txn.commit_ts_us.or(self.last_commit_ts_us);
        }
        Ok(())
    }

    /// A BEGIN/END record of `provide_transaction_metadata`.
    fn marker_record(&self, m: Marker) -> Record {
        let (key_schema, value_schema) = match &self.txmeta_schemas {
            Some((k, v)) => (Some(k.as_slice()), Some(v.as_slice())),
            None => (None, None),
        };
        Record {
            topic: self
                .opts
                .transaction_topic
                .clone()
                .unwrap_or_else(|| format!("{}.transaction", self.opts.server_name))
                .into(),
            key: Some(wrapped(key_schema, m.key.len(), |v| {
                v.extend_from_slice(&m.key)
            })),
            value: Some(wrapped(value_schema, m.value.len(), |v| {
                v.extend_from_slice(&m.value)
            })),
            headers: Vec::new(),
            op: None,
            position: m.position,
        }
    }

    fn encode_batch(
        &mut self,
        txn: &Transaction,
        batch: &ChangeBatch,
        tm: &mut Option<TxMeta>,
        buf: &mut Vec<u8>,
        out: &mut impl FnMut(Record),
    ) -> Result<(), EncodeError> {
        let plan = self.plan(&batch.schema);
        // Debezium's `source.snapshot` of a snapshot row depends on its place in the chunk
        // (first/last of table or snapshot), counted over the whole transaction.
        let (base, total) = match txn.snapshot {
            Some(_) => {
                let base: usize = txn
                    .batches()
                    .take_while(|b| !std::ptr::eq(*b, batch))
                    .map(ChangeBatch::num_rows)
                    .sum();
                (base, txn.row_count())
            }
            None => (0, 0),
        };
        let meta = mysql::BatchMeta::of(&batch.batch);
        let mut memo = SourceMemo::default();
        // Each image's columns resolved (downcast) once for the whole batch.
        let images = [
            envelope::ImageColumns::new(batch, &plan, Image::Before, &self.opts),
            envelope::ImageColumns::new(batch, &plan, Image::After, &self.opts),
        ];
        // The rows of a batch mostly share their position (every row of a snapshot chunk):
        // it is decoded again only when its bytes change.
        let positions = batch
            .batch
            .column(tidemark_model::table::columns::POSITION_INDEX)
            .as_binary_opt::<i32>();
        let mut last: Option<(&[u8], Position)> = None;
        let system = SystemColumns::new(batch);
        for row in 0..batch.num_rows() {
            let op = system.op(row);
            let position = match positions.filter(|p| row < p.len()).map(|p| p.value(row)) {
                Some(bytes) => match last {
                    Some((b, p)) if b == bytes => p,
                    _ => {
                        let p = batch.position(row);
                        last = Some((bytes, p));
                        p
                    }
                },
                None => batch.position(row),
            };
            let snapshot = match (txn.snapshot, op) {
                (Some(mark), Op::Read) => mark.debezium_value(base + row, total),
                (None, Op::Read) => "true",
                _ => "false",
            };
            let at = RowAt {
                row,
                op,
                position,
                txid: system.txid(row),
                commit_ts_us: system.commit_ts_us(row),
                has_markers: system.has_markers(row),
            };
            self.encode_row(
                txn, batch, &plan, &images, &meta, &mut memo, at, snapshot, tm, buf, out,
            )?;
        }
        Ok(())
    }

    /// Writes the key image (`image` with key columns only) into `buf`; `None` without a
    /// primary key or when the image is null.
    fn key_part(
        &self,
        buf: &mut Vec<u8>,
        plan: &TablePlan,
        image: &envelope::ImageColumns<'_>,
        row: usize,
        markers: &[tidemark_model::Marker],
    ) -> Result<Option<Range<usize>>, EncodeError> {
        if !plan.has_key {
            return Ok(None);
        }
        let start = buf.len();
        let some = envelope::write_image(buf, image, row, &self.opts, true, markers)?;
        Ok(some.then_some(start..buf.len()))
    }

    /// The value of one change event: the envelope (with its schema when enabled), and the
    /// `transaction` block with `provide_transaction_metadata` (BEGIN emitted first).
    #[allow(clippy::too_many_arguments)]
    fn event_value(
        &self,
        plan: &TablePlan,
        buf: &[u8],
        parts: &RowParts,
        before: bool,
        after: bool,
        op: &'static str,
        txn_block: Option<(&mut TxMeta, Option<u64>)>,
    ) -> Vec<u8> {
        let part = |r: &Option<Range<usize>>, on: bool| match r {
            Some(r) if on => &buf[r.clone()],
            _ => &b"null"[..],
        };
        let (b, a) = (part(&parts.before, before), part(&parts.after, after));
        let s = &buf[parts.source.clone()];
        let schema = plan
            .envelope_schema
            .as_deref()
            .filter(|_| self.opts.schemas_enable);
        wrapped(schema, b.len() + a.len() + s.len() + 200, |v| {
            v.extend_from_slice(b"{\"before\":");
            v.extend_from_slice(b);
            v.extend_from_slice(b",\"after\":");
            v.extend_from_slice(a);
            v.extend_from_slice(b",\"source\":");
            v.extend_from_slice(s);
            v.extend_from_slice(b",\"transaction\":");
            match txn_block {
                Some((m, lsn)) => m.write_block(v, &plan.collection, lsn),
                None => json::null(v),
            }
            v.extend_from_slice(b",\"op\":");
            json::plain_str(v, op);
            envelope::write_now(v, parts.now_ns);
            v.push(b'}');
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn encode_row(
        &self,
        txn: &Transaction,
        batch: &ChangeBatch,
        plan: &TablePlan,
        images: &[envelope::ImageColumns<'_>; 2],
        meta: &mysql::BatchMeta<'_>,
        memo: &mut SourceMemo,
        at: RowAt,
        snapshot: &'static str,
        tm: &mut Option<TxMeta>,
        buf: &mut Vec<u8>,
        out: &mut impl FnMut(Record),
    ) -> Result<(), EncodeError> {
        let opts = &self.opts;
        let RowAt {
            row, op, position, ..
        } = at;
        let lsn = position.as_pg().map(|p| p.lsn.0);
        let table = &batch.schema.table;
        buf.clear();
        let commit_ts_us = at.commit_ts_us.or(txn.commit_ts_us);
        let last_commit_lsn = self.last_commit_lsn.map(|l| l.0);
        let xid = at.txid.or(txn.xid);
        let key = match position.as_mysql() {
            Some(my) => SourceKey::Mysql(commit_ts_us, snapshot, my.event_pos, my.row, my.gtid),
            None => SourceKey::Pg(commit_ts_us, snapshot, last_commit_lsn, lsn, xid),
        };
        if memo.key == Some(key) {
            buf.extend_from_slice(&memo.block);
        } else {
            if let Some(my) = position.as_mysql() {
                mysql::write_source_block(
                    buf,
                    opts,
                    meta,
                    &table.namespace,
                    &table.name,
                    commit_ts_us,
                    snapshot,
                    my,
                );
            } else {
                envelope::write_source_block(
                    buf,
                    opts,
                    &SourceInfo {
                        schema: &table.namespace,
                        table: &table.name,
                        commit_ts_us,
                        snapshot,
                        last_commit_lsn,
                        lsn,
                        xid,
                    },
                );
            }
            memo.block.clear();
            memo.block.extend_from_slice(buf);
            memo.key = Some(key);
        }
        let source = 0..buf.len();
        let now_ns = (self.clock)();
        let markers = if at.has_markers {
            batch.markers(row)
        } else {
            Vec::new()
        };
        let [before_cols, after_cols] = images;
        let image = |buf: &mut Vec<u8>,
                     img: &envelope::ImageColumns<'_>|
         -> Result<Option<Range<usize>>, EncodeError> {
            let start = buf.len();
            let some = envelope::write_image(buf, img, row, opts, false, &markers)?;
            Ok(some.then_some(start..buf.len()))
        };
        let before = image(buf, before_cols)?;
        let after = image(buf, after_cols)?;
        let parts = RowParts {
            source,
            before,
            after,
            now_ns,
        };
        let commit_ms = commit_ts_us.unwrap_or(0).div_euclid(1000);
        let key_schema = plan.key_schema.as_deref().filter(|_| opts.schemas_enable);
        let key_bytes = |buf: &[u8], key: &Option<Range<usize>>| {
            key.as_ref().map(|r| {
                let k = &buf[r.clone()];
                wrapped(key_schema, k.len(), |v| v.extend_from_slice(k))
            })
        };
        // An event (`Some((before?, after?, op))`: BEGIN first with
        // `provide_transaction_metadata`, then the record) or a tombstone (`None`).
        let mut emit = |tm: &mut Option<TxMeta>,
                        buf: &[u8],
                        key: Option<Vec<u8>>,
                        what: Option<(bool, bool, &'static str)>,
                        headers: Vec<(String, Vec<u8>)>| {
            let Some((before, after, code)) = what else {
                out(Record {
                    topic: plan.topic.clone(),
                    key,
                    value: None,
                    headers,
                    op: None,
                    position,
                });
                return;
            };
            let block = match tm.as_mut() {
                Some(m) => {
                    if let Some(begin) = m.begin(lsn, commit_ms, position) {
                        out(self.marker_record(begin));
                    }
                    Some((m, lsn))
                }
                None => None,
            };
            let value = self.event_value(plan, buf, &parts, before, after, code, block);
            out(Record {
                topic: plan.topic.clone(),
                key,
                value: Some(value),
                headers,
                op: Some(code),
                position,
            });
        };
        match op {
            Op::Insert | Op::Read => {
                let key = self.key_part(buf, plan, after_cols, row, &markers)?;
                let code = op.debezium_code();
                emit(
                    tm,
                    buf,
                    key_bytes(buf, &key),
                    Some((false, true, code)),
                    Vec::new(),
                );
            }
            Op::Update => {
                let new_key = self.key_part(buf, plan, after_cols, row, &markers)?;
                let old_key = if parts.before.is_some() {
                    self.key_part(buf, plan, before_cols, row, &markers)?
                } else {
                    None
                };
                let changed = match (&old_key, &new_key) {
                    (Some(o), Some(n)) => !same_key(&buf[o.clone()], &buf[n.clone()]),
                    (Some(_), None) => true,
                    (None, _) => false,
                };
                match old_key {
                    Some(old) if changed => {
                        let new_json = new_key
                            .as_ref()
                            .map_or(b"null".to_vec(), |r| buf[r.clone()].to_vec());
                        let old_json = buf[old.clone()].to_vec();
                        let old_key = Some(old);
                        emit(
                            tm,
                            buf,
                            key_bytes(buf, &old_key),
                            Some((true, false, "d")),
                            vec![(HEADER_NEW_KEY.into(), new_json)],
                        );
                        if opts.tombstones_on_delete {
                            emit(tm, buf, key_bytes(buf, &old_key), None, Vec::new());
                        }
                        emit(
                            tm,
                            buf,
                            key_bytes(buf, &new_key),
                            Some((false, true, "c")),
                            vec![(HEADER_OLD_KEY.into(), old_json)],
                        );
                    }
                    _ => emit(
                        tm,
                        buf,
                        key_bytes(buf, &new_key),
                        Some((true, true, "u")),
                        Vec::new(),
                    ),
                }
            }
            Op::Delete => {
                let key = self.key_part(buf, plan, before_cols, row, &markers)?;
                emit(
                    tm,
                    buf,
                    key_bytes(buf, &key),
                    Some((true, false, "d")),
                    Vec::new(),
                );
                // Debezium writes the tombstone even with a null key (no primary key).
                if opts.tombstones_on_delete {
                    emit(tm, buf, key_bytes(buf, &key), None, Vec::new());
                }
            }
            // Debezium's default `skipped.operations=t` drops truncates.
            Op::Truncate if !opts.emit_truncate => {}
            Op::Truncate => emit(tm, buf, None, Some((false, false, "t")), Vec::new()),
        }
        Ok(())
    }

    fn encode_message(
        &self,
        txn: &Transaction,
        m: &LogicalMessage,
        tm: &mut Option<TxMeta>,
        buf: &mut Vec<u8>,
        out: &mut impl FnMut(Record),
    ) -> Result<(), EncodeError> {
        let lsn = m.position.as_pg().map(|p| p.lsn.0);
        buf.clear();
        envelope::write_source_block(
            buf,
            &self.opts,
            &SourceInfo {
                schema: "",
                table: "",
                // A non-transactional message has no commit: Debezium shows the last one's.
                commit_ts_us: txn.commit_ts_us.or(self.last_commit_ts_us),
                snapshot: "false",
                last_commit_lsn: self.last_commit_lsn.map(|l| l.0),
                lsn,
                xid: if m.transactional { txn.xid } else { None },
            },
        );
        let now = (self.clock)();
        let ns = i64::try_from(now).unwrap_or(i64::MAX);
        let mut v = Vec::with_capacity(buf.len() + m.content.len() * 4 / 3 + 128);
        v.extend_from_slice(b"{\"op\":\"m\",\"ts_ms\":");
        json::i64(&mut v, ns.div_euclid(1_000_000));
        v.extend_from_slice(b",\"source\":");
        v.extend_from_slice(buf);
        v.extend_from_slice(b",\"transaction\":");
        match tm.as_mut().filter(|_| m.transactional) {
            Some(t) => {
                let ts_ms = txn.commit_ts_us.unwrap_or(0).div_euclid(1000);
                if let Some(begin) = t.begin(lsn, ts_ms, m.position) {
                    out(self.marker_record(begin));
                }
                // Debezium names the collection of a message by a Java object identity.
                t.write_block(&mut v, "message", lsn);
            }
            None => json::null(&mut v),
        }
        v.extend_from_slice(b",\"message\":{\"prefix\":");
        json::str(&mut v, &m.prefix);
        v.extend_from_slice(b",\"content\":");
        json::base64(&mut v, &m.content);
        v.extend_from_slice(b"}}");
        let mut key = Vec::with_capacity(m.prefix.len() + 16);
        key.extend_from_slice(b"{\"prefix\":");
        json::str(&mut key, &m.prefix);
        key.push(b'}');
        out(Record {
            topic: format!("{}.message", self.opts.server_name).into(),
            key: Some(key),
            value: Some(v),
            headers: Vec::new(),
            op: Some("m"),
            position: m.position,
        });
        Ok(())
    }
}

#[cfg(test)]
mod differential;
#[cfg(test)]
mod oracle;
#[cfg(test)]
mod tests;
