//! The test oracle: the Value-based encoder as it was before the direct JSON writer
//! (`perf:` commit of 2026-12-01), kept verbatim so the differential tests in `../tests.rs`
//! can check that the writer produces the same bytes for random batches. Test-only; never
//! change it to make a test pass — a difference is a bug in the writer or a deliberate output
//! change that must be documented.
//!
//! Original module doc:
//!
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
//! (the Connect schema part), `codec` (base64, decimals, ISO dates).

#![allow(dead_code)] // a frozen copy: not every helper is reached from the tests

mod codec;
mod envelope;
mod mysql;
mod schema;
mod txmeta;
mod values;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};
use tidemark_model::{
    ChangeBatch, Image, LogicalMessage, Lsn, Op, TableId, TableSchema, Transaction, TxnItem,
};

pub use codec::base64;
use envelope::SourceInfo;
use txmeta::{Marker, TxMeta};
use values::Conv;

use crate::config::EncoderOptions;

pub use super::{EncodeError, Record, HEADER_NEW_KEY, HEADER_OLD_KEY};

/// Per table and schema version: conversions, topic and (with schemas) the Connect schemas.
#[derive(Debug)]
pub(crate) struct TablePlan {
    pub(crate) convs: Vec<Conv>,
    topic: String,
    has_key: bool,
    key_schema: Option<Value>,
    envelope_schema: Option<Value>,
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
}

fn system_now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

impl DebeziumEncoder {
    pub fn new(opts: EncoderOptions) -> Self {
        DebeziumEncoder {
            opts,
            plans: HashMap::new(),
            last_commit_lsn: None,
            last_commit_ts_us: None,
            clock: Box::new(system_now_ns),
            txmeta: None,
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
        let (key_schema, envelope_schema) = if self.opts.schemas_enable {
            let value = schema::row_schema(schema, &convs, false, &self.opts);
            (
                Some(schema::row_schema(schema, &convs, true, &self.opts)),
                Some(schema::envelope_schema(schema, &value, &self.opts)),
            )
        } else {
            (None, None)
        };
        let plan = Arc::new(TablePlan {
            topic: self.table_topic(&schema.table),
            has_key: schema.has_key(),
            convs,
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
        for item in &txn.items {
            match item {
                TxnItem::Rows(batch) => self.encode_batch(txn, batch, &mut tm, out)?,
                TxnItem::Message(m) => self.encode_message(txn, m, &mut tm, out)?,
            }
        }
        if let Some(t) = tm {
            if txn.complete {
                let ts_ms = txn.commit_ts_us.unwrap_or(0).div_euclid(1000);
                let end_lsn = txn.end.as_pg().map(|p| p.lsn.0);
                if let Some(m) = t.end(end_lsn, ts_ms, txn.end) {
                    out(self.marker_record(m)?);
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

    fn wrap(&self, schema: Option<&Value>, payload: Value) -> Result<Vec<u8>, EncodeError> {
        let v = match schema {
            Some(s) if self.opts.schemas_enable => json!({"schema": s, "payload": payload}),
            _ => payload,
        };
        serde_json::to_vec(&v).map_err(|e| EncodeError::Json(e.to_string()))
    }

    /// A BEGIN/END record of `provide_transaction_metadata`.
    fn marker_record(&self, m: Marker) -> Result<Record, EncodeError> {
        Ok(Record {
            topic: self
                .opts
                .transaction_topic
                .clone()
                .unwrap_or_else(|| format!("{}.transaction", self.opts.server_name))
                .into(),
            key: Some(self.wrap(Some(&m.key_schema), m.key)?),
            value: Some(self.wrap(Some(&m.value_schema), m.value)?),
            headers: Vec::new(),
            op: None,
            position: m.position,
        })
    }

    fn encode_batch(
        &mut self,
        txn: &Transaction,
        batch: &ChangeBatch,
        tm: &mut Option<TxMeta>,
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
        for row in 0..batch.num_rows() {
            let snapshot = match (txn.snapshot, batch.op(row)) {
                (Some(mark), Op::Read) => mark.debezium_value(base + row, total),
                (None, Op::Read) => "true",
                _ => "false",
            };
            self.encode_row(txn, batch, &plan, row, snapshot, tm, out)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn encode_row(
        &self,
        txn: &Transaction,
        batch: &ChangeBatch,
        plan: &TablePlan,
        row: usize,
        snapshot: &'static str,
        tm: &mut Option<TxMeta>,
        out: &mut impl FnMut(Record),
    ) -> Result<(), EncodeError> {
        let opts = &self.opts;
        let op = batch.op(row);
        let (position, lsn) = envelope::row_lsn(batch, row);
        let table = &batch.schema.table;
        let source = if let Some(my) = position.as_mysql() {
            mysql::source_block(
                opts,
                &batch.batch,
                &table.namespace,
                &table.name,
                batch.commit_ts_us(row).or(txn.commit_ts_us),
                snapshot,
                my,
            )
        } else {
            envelope::source_block(
                opts,
                &SourceInfo {
                    schema: &table.namespace,
                    table: &table.name,
                    commit_ts_us: batch.commit_ts_us(row).or(txn.commit_ts_us),
                    snapshot,
                    last_commit_lsn: self.last_commit_lsn.map(|l| l.0),
                    lsn,
                    xid: batch.txid(row).or(txn.xid),
                },
            )
        };
        let now = (self.clock)();
        let before = envelope::image(batch, plan, row, Image::Before, opts, false)?;
        let after = envelope::image(batch, plan, row, Image::After, opts, false)?;
        let key_of = |img: Image| -> Result<Option<Value>, EncodeError> {
            if !plan.has_key {
                return Ok(None);
            }
            envelope::image(batch, plan, row, img, opts, true)
        };
        let env_schema = plan.envelope_schema.as_ref();
        let key_schema = plan.key_schema.as_ref();
        let commit_ms = batch
            .commit_ts_us(row)
            .or(txn.commit_ts_us)
            .unwrap_or(0)
            .div_euclid(1000);
        let collection = format!("{}.{}", table.namespace, table.name);
        let mut emit = |key: &Option<Value>,
                        value: Option<Value>,
                        op: Option<&'static str>,
                        headers: Vec<(String, Vec<u8>)>| {
            let value = match (value, tm.as_mut()) {
                // `provide_transaction_metadata`: BEGIN before the first event, a block in each.
                (Some(mut v), Some(m)) => {
                    if let Some(begin) = m.begin(lsn, commit_ms, position) {
                        out(self.marker_record(begin)?);
                    }
                    v["transaction"] = m.block(&collection, lsn);
                    Some(v)
                }
                (v, _) => v,
            };
            out(Record {
                topic: plan.topic.as_str().into(),
                key: key.clone().map(|k| self.wrap(key_schema, k)).transpose()?,
                value: value.map(|v| self.wrap(env_schema, v)).transpose()?,
                headers,
                op,
                position,
            });
            Ok::<_, EncodeError>(())
        };
        match op {
            Op::Insert | Op::Read => {
                let key = key_of(Image::After)?;
                let v = envelope::envelope(None, after, source, op.debezium_code(), now);
                emit(&key, Some(v), Some(op.debezium_code()), Vec::new())?;
            }
            Op::Update => {
                let new_key = key_of(Image::After)?;
                let old_key = if before.is_some() {
                    key_of(Image::Before)?
                } else {
                    None
                };
                match old_key {
                    Some(old) if Some(&old) != new_key.as_ref() => {
                        let new_json = serde_json::to_vec(&new_key).unwrap_or_default();
                        let old_json = serde_json::to_vec(&old).unwrap_or_default();
                        let old = Some(old);
                        let d = envelope::envelope(before, None, source.clone(), "d", now);
                        emit(
                            &old,
                            Some(d),
                            Some("d"),
                            vec![(HEADER_NEW_KEY.into(), new_json)],
                        )?;
                        if opts.tombstones_on_delete {
                            emit(&old, None, None, Vec::new())?;
                        }
                        let c = envelope::envelope(None, after, source, "c", now);
                        emit(
                            &new_key,
                            Some(c),
                            Some("c"),
                            vec![(HEADER_OLD_KEY.into(), old_json)],
                        )?;
                    }
                    _ => {
                        let v = envelope::envelope(before, after, source, "u", now);
                        emit(&new_key, Some(v), Some("u"), Vec::new())?;
                    }
                }
            }
            Op::Delete => {
                let key = key_of(Image::Before)?;
                let v = envelope::envelope(before, None, source, "d", now);
                emit(&key, Some(v), Some("d"), Vec::new())?;
                // Debezium writes the tombstone even with a null key (no primary key).
                if opts.tombstones_on_delete {
                    emit(&key, None, None, Vec::new())?;
                }
            }
            // Debezium's default `skipped.operations=t` drops truncates.
            Op::Truncate if !opts.emit_truncate => {}
            Op::Truncate => {
                let v = envelope::envelope(None, None, source, "t", now);
                emit(&None, Some(v), Some("t"), Vec::new())?;
            }
        }
        Ok(())
    }

    fn encode_message(
        &self,
        txn: &Transaction,
        m: &LogicalMessage,
        tm: &mut Option<TxMeta>,
        out: &mut impl FnMut(Record),
    ) -> Result<(), EncodeError> {
        let lsn = m.position.as_pg().map(|p| p.lsn.0);
        let source = envelope::source_block(
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
        let mut v = Map::new();
        v.insert("op".into(), Value::from("m"));
        let ns = i64::try_from(now).unwrap_or(i64::MAX);
        v.insert("ts_ms".into(), Value::from(ns.div_euclid(1_000_000)));
        v.insert("source".into(), source);
        let block = match tm.as_mut().filter(|_| m.transactional) {
            Some(t) => {
                let ts_ms = txn.commit_ts_us.unwrap_or(0).div_euclid(1000);
                if let Some(begin) = t.begin(lsn, ts_ms, m.position) {
                    out(self.marker_record(begin)?);
                }
                // Debezium names the collection of a message by a Java object identity.
                t.block("message", lsn)
            }
            None => Value::Null,
        };
        v.insert("transaction".into(), block);
        v.insert(
            "message".into(),
            json!({"prefix": m.prefix, "content": base64(&m.content)}),
        );
        let key = json!({"prefix": m.prefix});
        out(Record {
            topic: format!("{}.message", self.opts.server_name).into(),
            key: Some(serde_json::to_vec(&key).map_err(|e| EncodeError::Json(e.to_string()))?),
            value: Some(
                serde_json::to_vec(&Value::Object(v))
                    .map_err(|e| EncodeError::Json(e.to_string()))?,
            ),
            headers: Vec::new(),
            op: Some("m"),
            position: m.position,
        });
        Ok(())
    }
}
