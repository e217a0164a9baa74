//! Binlog events → the Arrow change model: the stateful part of the decoder.
//!
//! ```text
//!  event bytes ──► Decoder::decode ──► Step::Emitted(Transaction)   at XID / COMMIT (or a chunk)
//!       │                              Step::Ddl { query, end }     a statement outside a transaction
//!       │                              Step::Rotate / Heartbeat / FormatDescription / Stop
//!       └─ state: format description (checksum), file name and number, table maps by id,
//!                 schema versions by table, catalog from the source, the open transaction
//! ```
//!
//! A transaction is `GTID? (MySQL) | GTID (MariaDB, replaces BEGIN)`, `QUERY BEGIN` (MySQL),
//! `(ROWS_QUERY | ANNOTATE_ROWS)? TABLE_MAP+ ROWS+ ...`, `XID | QUERY COMMIT`. MySQL 8.0.20+
//! may wrap everything after the GTID in one zstd TRANSACTION_PAYLOAD_EVENT.
//!
//! # Traps
//! - Table ids are valid only until the next TABLE_MAP (trap "table-map ids are not stable
//!   identities"): schemas are versioned by `db.table`, never by id.
//! - MariaDB has no BEGIN query: its GTID event starts the group unless it is flagged
//!   standalone (a DDL follows, no COMMIT).
//! - Events inside a transaction payload have `log_pos` 0 and no checksum: their position is the
//!   payload event's.
//! - Resuming inside a transaction re-reads it from its first event; rows at or before the
//!   checkpoint are dropped here ([`Decoder::skip_until`]), so nothing is repeated.
//! - Long transactions are emitted in chunks of [`DecoderOptions::max_chunk_rows`] rows with
//!   `complete == false`: memory stays bounded by the chunk, not the transaction.

use std::collections::HashMap;
use std::sync::Arc;

use tidemark_model::mysql_position::binlog_file_number;
use tidemark_model::{
    ChangeBatch, ChangeBatchBuilder, Column, Gtid, GtidSet, Image, MysqlPosition, Op, Position,
    SchemaVersions, TableId, TableSchema, Transaction, TxnItem,
};

use crate::error::{DecodeError, ErrorKind};
use crate::event::{
    code, event_name, strip_checksum, Checksum, EventHeader, FormatDescription, HEADER_LEN,
};
use crate::events::{self, MariadbGtidEvent, MysqlGtidEvent, Query};
use crate::reader::Reader;
use crate::row_image::RowCtx;
use crate::rows::{rows_event, RowsHeader, RowsKind};
use crate::schema::{resolve, TableCatalog, TableEntry};
use crate::table_map::TableMap;
use crate::values::Scratch;

/// Batch-level Arrow metadata keys the decoder sets on every MySQL change batch (the model has
/// no per-row place for them; Debezium's `source` block needs them).
pub mod meta {
    /// The binlog file name (`mysql-bin.000003`).
    pub const FILE: &str = "tidemark.mysql.file";
    /// `server_id` of the server that wrote the events.
    pub const SERVER_ID: &str = "tidemark.mysql.server_id";
    /// Thread id of the BEGIN query (MySQL; MariaDB has none).
    pub const THREAD: &str = "tidemark.mysql.thread";
    /// The statement from ROWS_QUERY / ANNOTATE_ROWS, when the server logs it.
    pub const QUERY: &str = "tidemark.mysql.query";
}

/// Bytes of row data after which a batch is closed and the next row starts another one
/// ([`Decoder::set_max_batch_bytes`]). Arrow string and binary columns have i32 offsets: a
/// column past 2 GiB in one batch made the Arrow builder panic ("byte array offset overflow"),
/// and a few large BLOB/TEXT rows of one table in one transaction get there. A row event is at
/// most `max_allowed_packet` (≤ 1 GiB), so a batch closed at this size stays below 2 GiB.
pub const MAX_BATCH_BYTES: usize = 512 << 20;

/// Decoder settings.
#[derive(Debug, Clone)]
pub struct DecoderOptions {
    /// Rows per emitted chunk of a long transaction.
    pub max_chunk_rows: usize,
    /// Largest decompressed transaction payload / compressed event accepted (bytes).
    pub max_uncompressed_bytes: usize,
    /// Emit transactions that have no rows of included tables (so checkpoints advance).
    pub emit_empty_transactions: bool,
}

impl Default for DecoderOptions {
    fn default() -> Self {
        DecoderOptions {
            max_chunk_rows: 65_536,
            // MySQL's own limit for a payload is max_allowed_packet-ish; 1 GiB is its maximum.
            max_uncompressed_bytes: 1 << 30,
            emit_empty_transactions: true,
        }
    }
}

/// What one event did.
#[derive(Debug)]
pub enum Step {
    /// A transaction (or a chunk of one, see `complete`).
    Emitted(Transaction),
    /// A statement outside a transaction (DDL): the catalog was dropped; `end` is the position
    /// after it.
    Ddl {
        database: String,
        query: String,
        end: Position,
    },
    Rotate {
        file: String,
        pos: u64,
    },
    Heartbeat {
        file: String,
        pos: u64,
    },
    FormatDescription {
        server_version: String,
        checksum: Checksum,
    },
    Stop,
}

struct Txn {
    txn_pos: u64,
    gtid: Option<Gtid>,
    commit_ts_us: Option<i64>,
    thread: Option<u32>,
    items: Vec<TxnItem>,
    current: Option<(Arc<TableSchema>, ChangeBatchBuilder, BatchMeta)>,
    index: u32,
    chunk_rows: usize,
    last: Option<MysqlPosition>,
}

#[derive(Clone, PartialEq, Eq)]
struct BatchMeta {
    file: Arc<str>,
    server_id: u32,
    query: Option<Arc<str>>,
}

/// A GTID that arrived before its transaction started.
#[derive(Clone, Copy)]
struct PendingGtid {
    gtid: Option<Gtid>,
    pos: u64,
    commit_ts_us: Option<i64>,
}

type Filter = Box<dyn Fn(&TableId) -> bool + Send>;

/// The binlog → change model decoder of one replication session.
pub struct Decoder {
    options: DecoderOptions,
    fde: FormatDescription,
    checksum: Checksum,
    file: String,
    /// `file` shared by the batches of the file.
    file_arc: Arc<str>,
    file_number: u32,
    maps: HashMap<u64, Arc<TableEntry>>,
    versions: SchemaVersions,
    catalog: HashMap<TableId, TableCatalog>,
    catalog_generation: u64,
    filter: Option<Filter>,
    pending: Option<PendingGtid>,
    txn: Option<Txn>,
    query: Option<Arc<str>>,
    /// Keep ROWS_QUERY / ANNOTATE_ROWS text as [`meta::QUERY`] ([`Decoder::set_include_query`]).
    include_query: bool,
    /// [`MAX_BATCH_BYTES`] unless set ([`Decoder::set_max_batch_bytes`]).
    max_batch_bytes: usize,
    skip_until: Option<MysqlPosition>,
    /// Resume by GTID inside a transaction: rows of the transaction with this GTID up to this
    /// index were acknowledged ([`Decoder::skip_rows_of`]).
    skip_rows_of: Option<(Gtid, u32)>,
    /// The MySQL GTID set executed up to the decoder's point, once known
    /// ([`Decoder::gtid_executed`]).
    executed: Option<Arc<GtidSet>>,
    scratch: Scratch,
    before_json: Vec<Option<String>>,
    out: Vec<Step>,
}

/// Where an event is, for errors.
#[derive(Clone, Copy)]
struct At {
    pos: u64,
    event: &'static str,
}

impl Decoder {
    pub fn new(options: DecoderOptions) -> Self {
        Decoder {
            options,
            fde: FormatDescription::default(),
            checksum: Checksum::None,
            file: String::new(),
            file_arc: Arc::from(""),
            file_number: 0,
            maps: HashMap::new(),
            versions: SchemaVersions::default(),
            catalog: HashMap::new(),
            catalog_generation: 0,
            filter: None,
            pending: None,
            txn: None,
            query: None,
            include_query: true,
            max_batch_bytes: MAX_BATCH_BYTES,
            skip_until: None,
            skip_rows_of: None,
            executed: None,
            scratch: Scratch::default(),
            before_json: Vec::new(),
            out: Vec::new(),
        }
    }

    /// The checksum algorithm negotiated with `@master_binlog_checksum`, used until the format
    /// description event says otherwise (trap "checksum negotiation").
    pub fn set_checksum(&mut self, c: Checksum) {
        self.checksum = c;
    }

    /// The binlog file the stream starts in (the first ROTATE says it again).
    pub fn set_file(&mut self, name: &str) -> Result<(), DecodeError> {
        self.file_number = binlog_file_number(name).ok_or_else(|| DecodeError {
            file: name.to_owned(),
            pos: 0,
            event: "ROTATE_EVENT",
            kind: Box::new(ErrorKind::Unsupported {
                what: "a binlog file name without a numeric suffix".into(),
            }),
        })?;
        self.file = name.to_owned();
        self.file_arc = Arc::from(name);
        Ok(())
    }

    /// Whether the statement text of ROWS_QUERY (MySQL) and ANNOTATE_ROWS (MariaDB) events goes
    /// into the batches' [`meta::QUERY`] (default true). Debezium's `include.query`: off, the
    /// events are still read, their text dropped (MySQL logs them whenever
    /// `binlog_rows_query_log_events` is on, whatever the replica wants).
    pub fn set_include_query(&mut self, on: bool) {
        self.include_query = on;
        if !on {
            self.query = None;
        }
    }

    /// Closes a table's batch once it holds `bytes` of row data (default [`MAX_BATCH_BYTES`];
    /// at most that, so no Arrow column of a batch reaches its 2 GiB offset limit).
    pub fn set_max_batch_bytes(&mut self, bytes: usize) {
        self.max_batch_bytes = bytes.min(MAX_BATCH_BYTES);
    }

    /// Only tables for which `f` is true produce rows.
    pub fn set_filter(&mut self, f: impl Fn(&TableId) -> bool + Send + 'static) {
        self.filter = Some(Box::new(f));
    }

    /// Drops rows and transactions at or before `p` (resume after a checkpoint).
    pub fn skip_until(&mut self, p: MysqlPosition) {
        self.skip_until = Some(p);
    }

    /// Drops the rows, up to `index`, of the transaction whose GTID is `gtid` (a GTID resume
    /// from a checkpoint inside that transaction: the server sends it again from its start,
    /// at positions that need not compare with the checkpoint's when the server changed).
    pub fn skip_rows_of(&mut self, gtid: Gtid, index: u32) {
        self.skip_rows_of = Some((gtid, index));
    }

    /// Starts tracking the MySQL executed GTID set from `set` (the start set, the server's
    /// `Executed_Gtid_Set` at the start position, or a checkpoint's). Without it the set is
    /// learnt from the first PREVIOUS_GTIDS event (at the start of every binlog file).
    pub fn set_gtid_executed(&mut self, set: GtidSet) {
        self.executed = Some(Arc::new(set));
    }

    /// The MySQL GTID set executed up to the last decoded event: the starting set (or a
    /// PREVIOUS_GTIDS), plus the GTID of every transaction committed since, skipped ones
    /// included. `None` until known (a stream that started inside a binlog file without a
    /// starting set learns it at the next file). The set after a transaction is what a
    /// checkpoint at its end resumes with (`tidemark_model::mysql_gtid_set`).
    pub fn gtid_executed(&self) -> Option<&Arc<GtidSet>> {
        self.executed.as_ref()
    }

    /// Adds a committed transaction's MySQL GTID to the executed set (when it is known).
    fn executed_add(&mut self, gtid: Option<Gtid>) {
        if let (Some(set), Some(g @ Gtid::Mysql { .. })) = (self.executed.as_mut(), gtid) {
            if !set.contains(&g) {
                Arc::make_mut(set).insert(&g);
            }
        }
    }

    /// Registers what the catalog says about a table (before its TABLE_MAP is decoded).
    pub fn register_catalog(&mut self, table: TableId, catalog: TableCatalog) {
        self.catalog.insert(table, catalog);
        self.catalog_generation += 1;
    }

    /// Whether the source should look `table` up before decoding its table map.
    pub fn needs_catalog(&self, table: &TableId) -> bool {
        self.included(table) && !self.catalog.contains_key(table)
    }

    /// The table named by a TABLE_MAP event (whole event bytes), without decoding it.
    pub fn peek_table_map(event: &[u8]) -> Option<TableId> {
        let h = EventHeader::parse(event).ok()?;
        if h.event_type != code::TABLE_MAP {
            return None;
        }
        let mut r = Reader::new(event.get(HEADER_LEN..)?);
        r.take(8).ok()?;
        let n = usize::from(r.u8().ok()?);
        let db = String::from_utf8(r.take(n).ok()?.to_vec()).ok()?;
        r.u8().ok()?;
        let n = usize::from(r.u8().ok()?);
        let t = String::from_utf8(r.take(n).ok()?.to_vec()).ok()?;
        Some(TableId::new(db, t))
    }

    fn included(&self, t: &TableId) -> bool {
        self.filter.as_ref().is_none_or(|f| f(t))
    }

    /// True between the start of a transaction and its commit.
    pub fn in_transaction(&self) -> bool {
        self.txn.is_some()
    }

    /// The current binlog file and its number.
    pub fn file(&self) -> (&str, u32) {
        (&self.file, self.file_number)
    }

    /// The latest schema of a table.
    pub fn schema(&self, t: &TableId) -> Option<&Arc<TableSchema>> {
        self.versions.get(t)
    }

    /// Continues the schema version numbering of an earlier session (from
    /// [`Decoder::take_schema_versions`]) or of the initial snapshot. A reconnect sends every
    /// TABLE_MAP again: without this the new session would number the tables from 1 again, and
    /// a sink that caches its encoding per table and version would take a table's version 1 of
    /// the new session (its current columns) for version 1 of the old one (its columns before
    /// the last DDL).
    pub fn with_schema_versions(mut self, versions: SchemaVersions) -> Self {
        self.versions = versions;
        self
    }

    /// The latest schema per table (for the next session's [`Decoder::with_schema_versions`]).
    pub fn take_schema_versions(&mut self) -> SchemaVersions {
        std::mem::take(&mut self.versions)
    }

    /// The table's latest schema, as the stream numbers it; when the stream has not decoded
    /// the table yet, `columns` (the catalog's) become its version 1. An incremental snapshot
    /// reads its chunks with this schema, so chunk rows and stream rows of the table share one
    /// version sequence (a later TABLE_MAP with other columns is the next version, never a
    /// second version 1).
    pub fn table_schema_or(&mut self, table: &TableId, columns: Vec<Column>) -> Arc<TableSchema> {
        self.versions.latest_or(table, columns)
    }

    /// The format description in force.
    pub fn format(&self) -> &FormatDescription {
        &self.fde
    }

    /// Decodes one whole event (header, body and checksum footer as the server sent it).
    pub fn decode(&mut self, event: &[u8]) -> Result<Vec<Step>, DecodeError> {
        self.out.clear();
        let r = self.event(event, None);
        let steps = std::mem::take(&mut self.out);
        r.map(|()| steps)
    }

    fn err(&self, at: At, kind: ErrorKind) -> DecodeError {
        DecodeError {
            file: self.file.clone(),
            pos: at.pos,
            event: at.event,
            kind: Box::new(kind),
        }
    }

    /// `inner`: the payload event's position and next position for events inside a
    /// TRANSACTION_PAYLOAD (no checksum, `log_pos` 0).
    fn event(&mut self, event: &[u8], inner: Option<(u64, u64)>) -> Result<(), DecodeError> {
        let unknown = At {
            pos: 0,
            event: "event",
        };
        let h = EventHeader::parse(event).map_err(|k| self.err(unknown, k))?;
        let at = At {
            pos: inner.map_or_else(|| h.start_pos().unwrap_or(0), |i| i.0),
            event: event_name(h.event_type),
        };
        if h.event_size as usize != event.len() {
            return Err(self.err(
                at,
                ErrorKind::Invalid {
                    offset: 9,
                    reason: "event_size differs from the event's length",
                },
            ));
        }
        let next = inner.map_or(u64::from(h.log_pos), |i| i.1);
        if inner.is_some() && h.event_type == code::TRANSACTION_PAYLOAD {
            // The server never nests payloads; each level is decoded by a recursive call that
            // keeps its decompressed copy alive, so nesting ran the stack out (an abort) and
            // held memory quadratic in the event's size.
            return Err(self.err(
                at,
                ErrorKind::Sequence("a transaction payload inside a transaction payload".into()),
            ));
        }
        if h.event_type == code::FORMAT_DESCRIPTION {
            let (fde, _) = FormatDescription::parse_event(event).map_err(|k| self.err(at, k))?;
            self.checksum = fde.checksum;
            self.out.push(Step::FormatDescription {
                server_version: fde.server_version.clone(),
                checksum: fde.checksum,
            });
            self.fde = fde;
            return Ok(());
        }
        let alg = if inner.is_some() {
            Checksum::None
        } else {
            self.checksum
        };
        let data = strip_checksum(event, alg).map_err(|k| self.err(at, k))?;
        let body = &data[HEADER_LEN..];
        self.dispatch(&h, body, at, next)
            .map_err(|k| self.err(at, k))
    }

    fn dispatch(
        &mut self,
        h: &EventHeader,
        body: &[u8],
        at: At,
        next: u64,
    ) -> Result<(), ErrorKind> {
        use code::*;
        match h.event_type {
            ROTATE => {
                let (pos, name) = events::parse_rotate(body)?;
                self.file_number =
                    binlog_file_number(&name).ok_or_else(|| ErrorKind::Unsupported {
                        what: format!("binlog file name {name:?} without a numeric suffix"),
                    })?;
                self.file = name.clone();
                self.file_arc = Arc::from(name.as_str());
                self.out.push(Step::Rotate { file: name, pos });
            }
            QUERY | MARIADB_QUERY_COMPRESSED => {
                let (mut q, text) = Query::parse(body)?;
                q.query = if h.event_type == MARIADB_QUERY_COMPRESSED {
                    let raw =
                        events::mariadb_uncompress(text, self.options.max_uncompressed_bytes)?;
                    String::from_utf8_lossy(&raw).into_owned()
                } else {
                    String::from_utf8_lossy(text).into_owned()
                };
                self.on_query(h, q, at, next)?;
            }
            XID => {
                let xid = Reader::new(body).u64()?;
                self.commit(h, Some(xid), next)?;
            }
            TABLE_MAP => self.on_table_map(body)?,
            GTID | ANONYMOUS_GTID => {
                let g = MysqlGtidEvent::parse(body)?;
                self.pending = Some(PendingGtid {
                    gtid: g.gtid(),
                    pos: at.pos,
                    commit_ts_us: g.immediate_commit_ts_us.map(|t| t as i64),
                });
            }
            MARIADB_GTID => {
                let g = MariadbGtidEvent::parse(body)?;
                let pending = PendingGtid {
                    gtid: Some(Gtid::Mariadb {
                        domain: g.domain,
                        server: h.server_id,
                        seq: g.seq,
                    }),
                    pos: at.pos,
                    commit_ts_us: None,
                };
                self.pending = Some(pending);
                if !g.standalone() {
                    self.begin(h, None)?;
                }
            }
            TRANSACTION_PAYLOAD => self.on_payload(body, at, next)?,
            ROWS_QUERY => {
                let q = events::parse_rows_query(body)?;
                if self.include_query {
                    self.query = Some(q.into());
                }
            }
            MARIADB_ANNOTATE_ROWS => {
                if self.include_query {
                    self.query = Some(String::from_utf8_lossy(body).into_owned().into());
                }
            }
            HEARTBEAT => {
                let file = events::parse_heartbeat(body)?;
                self.out.push(Step::Heartbeat {
                    file,
                    pos: u64::from(h.log_pos),
                });
            }
            HEARTBEAT_V2 => {
                let (file, pos) = events::parse_heartbeat_v2(body)?;
                self.out.push(Step::Heartbeat {
                    file,
                    pos: pos.unwrap_or(u64::from(h.log_pos)),
                });
            }
            STOP => self.out.push(Step::Stop),
            PREVIOUS_GTIDS => {
                // Every transaction of the earlier files: part of what is executed before
                // anything that follows in this file.
                let prev = GtidSet::from_intervals(&events::parse_previous_gtids(body)?);
                match self.executed.as_mut() {
                    Some(set) => Arc::make_mut(set).union(&prev),
                    None => self.executed = Some(Arc::new(prev)),
                }
            }
            MARIADB_GTID_LIST => {
                events::parse_gtid_list(body)?;
            }
            MARIADB_BINLOG_CHECKPOINT => {
                events::parse_binlog_checkpoint(body)?;
            }
            INTVAR
            | RAND
            | USER_VAR
            | IGNORABLE
            | MARIADB_START_ENCRYPTION
            | TRANSACTION_CONTEXT
            | VIEW_CHANGE => {}
            XA_PREPARE => {
                return Err(ErrorKind::Unsupported {
                    what: "XA transactions (XA_PREPARE_LOG_EVENT)".into(),
                })
            }
            t => match rows_event(t) {
                Some((kind, v2, compressed)) => self.on_rows(h, body, kind, v2, compressed, at)?,
                None if matches!(t, WRITE_ROWS_V0 | UPDATE_ROWS_V0 | DELETE_ROWS_V0) => {
                    return Err(ErrorKind::Unsupported {
                        what: "pre-GA (v0) rows events".into(),
                    })
                }
                None if h.flags & 0x80 != 0 => {} // LOG_EVENT_IGNORABLE_F: may be skipped.
                None => {
                    return Err(ErrorKind::Unsupported {
                        what: format!("event type {t}"),
                    })
                }
            },
        }
        Ok(())
    }

    fn begin(&mut self, h: &EventHeader, thread: Option<u32>) -> Result<(), ErrorKind> {
        if self.txn.is_some() {
            return Err(ErrorKind::Sequence(
                "a transaction starts while another is open".into(),
            ));
        }
        let p = self.pending.take();
        let start = p.map_or(0, |p| p.pos);
        self.txn = Some(Txn {
            txn_pos: start,
            gtid: p.and_then(|p| p.gtid),
            commit_ts_us: p.and_then(|p| p.commit_ts_us),
            thread,
            items: Vec::new(),
            current: None,
            index: 0,
            chunk_rows: 0,
            last: None,
        });
        let _ = h;
        self.query = None;
        Ok(())
    }

    fn on_query(&mut self, h: &EventHeader, q: Query, at: At, next: u64) -> Result<(), ErrorKind> {
        let stmt = q.query.trim();
        let upper = stmt
            .get(..stmt.len().min(16))
            .unwrap_or("")
            .to_ascii_uppercase();
        if upper == "BEGIN" || upper.starts_with("XA START") {
            if upper.starts_with("XA") {
                return Err(ErrorKind::Unsupported {
                    what: "XA transactions".into(),
                });
            }
            if self.pending.is_none() {
                self.pending = Some(PendingGtid {
                    gtid: None,
                    pos: at.pos,
                    commit_ts_us: None,
                });
            }
            if let Some(t) = self.txn.as_mut() {
                // MariaDB after a GTID event: the BEGIN only carries the thread id.
                t.thread = Some(q.thread_id);
                return Ok(());
            }
            return self.begin(h, Some(q.thread_id));
        }
        if upper == "COMMIT" || upper == "ROLLBACK" {
            return self.commit(h, None, next);
        }
        if self.txn.is_some() {
            let dml = ["INSERT", "UPDATE", "DELETE", "REPLACE", "LOAD DATA"];
            if dml.iter().any(|d| upper.starts_with(d)) {
                return Err(ErrorKind::Unsupported {
                    what: "a statement-based DML event in the binlog; set binlog_format=ROW".into(),
                });
            }
            // SAVEPOINT, ROLLBACK TO and similar: nothing to do.
            return Ok(());
        }
        // A statement of its own (DDL): schemas may have changed under every cached table.
        let p = self.pending.take();
        let end = MysqlPosition::end(
            self.file_number,
            p.map_or(at.pos, |p| p.pos),
            next,
            p.and_then(|p| p.gtid),
        );
        self.executed_add(end.gtid);
        self.catalog.clear();
        self.catalog_generation += 1;
        self.maps.clear();
        if self.skipped(&end) {
            return Ok(());
        }
        self.out.push(Step::Ddl {
            database: q.schema,
            query: q.query,
            end: Position::Mysql(end),
        });
        Ok(())
    }

    fn skipped(&mut self, p: &MysqlPosition) -> bool {
        match self.skip_until {
            Some(s) if p <= &s => true,
            Some(_) => {
                self.skip_until = None;
                false
            }
            None => false,
        }
    }

    fn on_table_map(&mut self, body: &[u8]) -> Result<(), ErrorKind> {
        let id_len = self.fde.table_id_len(code::TABLE_MAP);
        let table_id = Reader::new(body).uint(id_len)?;
        let raw = &body[id_len..];
        if let Some(e) = self.maps.get(&table_id) {
            if e.raw == raw && e.catalog_generation == self.catalog_generation {
                return Ok(());
            }
        }
        let map = TableMap::parse(body, id_len)?;
        let table = TableId::new(map.database.clone(), map.table.clone());
        let (schema, kinds) = if self.included(&table) {
            let (columns, kinds) = resolve(&map, &table, self.catalog.get(&table))?;
            let schema = self.versions.next(&table, columns);
            (Some(schema), kinds)
        } else {
            (None, Vec::new())
        };
        self.maps.insert(
            table_id,
            Arc::new(TableEntry {
                table,
                schema,
                kinds,
                raw: raw.to_vec(),
                catalog_generation: self.catalog_generation,
            }),
        );
        Ok(())
    }

    fn on_payload(&mut self, body: &[u8], at: At, next: u64) -> Result<(), ErrorKind> {
        let (h, payload) = events::parse_transaction_payload(body)?;
        let data = match h.compression {
            0 => events::zstd_uncompress(
                payload,
                h.uncompressed_size,
                self.options.max_uncompressed_bytes,
            )?,
            255 => payload.to_vec(),
            c => {
                return Err(ErrorKind::Unsupported {
                    what: format!("transaction payload compression type {c}"),
                })
            }
        };
        let mut r = Reader::new(&data);
        while !r.is_empty() {
            let head = Reader::new(r.clone().take(HEADER_LEN)?).rest();
            let ev = EventHeader::parse(head)?;
            let inner = r.take(ev.event_size as usize)?;
            // Inner errors carry their own location; unwrap them back to a kind here.
            self.event(inner, Some((at.pos, next)))
                .map_err(|e| *e.kind)?;
        }
        Ok(())
    }

    fn commit(&mut self, h: &EventHeader, xid: Option<u64>, next: u64) -> Result<(), ErrorKind> {
        let Some(mut txn) = self.txn.take() else {
            return Err(ErrorKind::Sequence("commit without a transaction".into()));
        };
        self.query = None;
        flush_batch(&mut txn)?;
        let end = MysqlPosition::end(self.file_number, txn.txn_pos, next, txn.gtid);
        self.executed_add(txn.gtid);
        if self.skip_rows_of.is_some_and(|(g, _)| txn.gtid == Some(g)) {
            self.skip_rows_of = None;
        }
        if self.skipped(&end) {
            return Ok(());
        }
        if txn.items.is_empty() && !self.options.emit_empty_transactions && txn.index == 0 {
            return Ok(());
        }
        let mut t = Transaction::new(
            xid,
            txn.commit_ts_us
                .or(Some(i64::from(h.timestamp) * 1_000_000)),
            Position::Mysql(end),
        );
        t.items = txn.items;
        self.out.push(Step::Emitted(t));
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn on_rows(
        &mut self,
        h: &EventHeader,
        body: &[u8],
        kind: RowsKind,
        v2: bool,
        compressed: bool,
        at: At,
    ) -> Result<(), ErrorKind> {
        let id_len = self.fde.table_id_len(h.event_type);
        let rh = RowsHeader::parse(body, kind, v2, id_len)?;
        let entry = Arc::clone(self.maps.get(&rh.table_id).ok_or(ErrorKind::UnknownTable {
            table_id: rh.table_id,
        })?);
        if self.txn.is_none() {
            return Err(ErrorKind::Sequence(
                "rows event outside a transaction".into(),
            ));
        }
        let Some(schema) = entry.schema.clone() else {
            return Ok(()); // excluded table
        };
        if rh.width != entry.kinds.len() {
            return Err(ErrorKind::Sequence(format!(
                "rows event for {} has {} columns, its table map {}",
                entry.table,
                rh.width,
                entry.kinds.len()
            )));
        }
        let decompressed;
        let rows = if compressed {
            decompressed = events::mariadb_uncompress(
                &body[rh.rows_offset..],
                self.options.max_uncompressed_bytes,
            )?;
            &decompressed[..]
        } else {
            &body[rh.rows_offset..]
        };
        let bm = BatchMeta {
            file: Arc::clone(&self.file_arc),
            server_id: h.server_id,
            query: self.query.clone(),
        };
        let ts = Some(i64::from(h.timestamp) * 1_000_000);
        let mut r = Reader::new(rows);
        let mut row_in_event = 0u32;
        let mut prev_remaining = usize::MAX;
        while !r.is_empty() {
            // A row that reads no byte (no column present in either image) would be read again
            // and again: memory without bound (found by the fuzz target, tests/events.rs).
            if r.remaining() == prev_remaining {
                return Err(ErrorKind::Invalid {
                    offset: rh.rows_offset + r.offset(),
                    reason: "a row with no column in its images",
                });
            }
            prev_remaining = r.remaining();
            let txn = self.txn.as_mut().expect("checked above");
            let pos = MysqlPosition {
                file: self.file_number,
                txn_pos: txn.txn_pos,
                event_pos: at.pos,
                row: row_in_event,
                index: txn.index,
                gtid: txn.gtid,
            };
            txn.index = txn
                .index
                .checked_add(1)
                .filter(|i| *i < u32::MAX)
                .ok_or_else(|| ErrorKind::Unsupported {
                    what: "more than 2^32-2 rows in one transaction".into(),
                })?;
            row_in_event += 1;
            let skip = match self.skip_until {
                Some(s) => pos <= s,
                None => false,
            } || self
                .skip_rows_of
                .is_some_and(|(g, i)| txn.gtid == Some(g) && pos.index <= i);
            let mut ctx = RowCtx {
                entry: &entry,
                scratch: &mut self.scratch,
                before_json: &mut self.before_json,
            };
            if skip {
                ctx.skip_row(&mut r, kind, &rh)?;
                continue;
            }
            ensure_batch(txn, &schema, &bm, self.max_batch_bytes)?;
            let (_, b, _) = txn.current.as_mut().expect("ensured");
            let op = match kind {
                RowsKind::Write => Op::Insert,
                RowsKind::Delete => Op::Delete,
                RowsKind::Update | RowsKind::PartialUpdate => Op::Update,
            };
            b.begin_row(op, &Position::Mysql(pos), None, ts)?;
            match kind {
                RowsKind::Write => {
                    b.image_null(Image::Before)?;
                    ctx.image(&mut r, b, Image::After, rh.present, false)?;
                }
                RowsKind::Delete => {
                    ctx.image(&mut r, b, Image::Before, rh.present, false)?;
                    b.image_null(Image::After)?;
                }
                RowsKind::Update => {
                    ctx.image(&mut r, b, Image::Before, rh.present, false)?;
                    ctx.image(&mut r, b, Image::After, rh.present_after, false)?;
                }
                RowsKind::PartialUpdate => {
                    ctx.image(&mut r, b, Image::Before, rh.present, true)?;
                    ctx.image(&mut r, b, Image::After, rh.present_after, true)?;
                }
            }
            b.finish_row()?;
            txn.last = Some(pos);
            txn.chunk_rows += 1;
        }
        // At least 1: with 0 an event whose rows were all skipped would emit a chunk before any
        // row was added (no last position).
        let max = self.options.max_chunk_rows.max(1);
        let txn = self.txn.as_mut().expect("checked above");
        if let Some(last) = txn.last.filter(|_| txn.chunk_rows >= max) {
            flush_batch(txn)?;
            let mut chunk = Transaction::new(None, txn.commit_ts_us, Position::Mysql(last));
            chunk.items = std::mem::take(&mut txn.items);
            chunk.complete = false;
            txn.chunk_rows = 0;
            self.out.push(Step::Emitted(chunk));
        }
        Ok(())
    }
}

/// Starts a new batch when the table, version or batch metadata changes, or the batch holds
/// `max_bytes` of row data ([`MAX_BATCH_BYTES`]).
fn ensure_batch(
    txn: &mut Txn,
    schema: &Arc<TableSchema>,
    bm: &BatchMeta,
    max_bytes: usize,
) -> Result<(), ErrorKind> {
    let same = txn
        .current
        .as_ref()
        .is_some_and(|(s, b, m)| Arc::ptr_eq(s, schema) && m == bm && b.byte_size() < max_bytes);
    if !same {
        flush_batch(txn)?;
        txn.current = Some((
            Arc::clone(schema),
            ChangeBatchBuilder::new(Arc::clone(schema), 256),
            bm.clone(),
        ));
    }
    Ok(())
}

fn flush_batch(txn: &mut Txn) -> Result<(), ErrorKind> {
    if let Some((_, mut b, m)) = txn.current.take() {
        if b.is_empty() {
            return Ok(());
        }
        let cb = b.finish()?;
        txn.items
            .push(TxnItem::Rows(with_meta(cb, &m, txn.thread)?));
    }
    Ok(())
}

/// The batch with the MySQL batch metadata on its Arrow schema (fields unchanged).
fn with_meta(
    cb: ChangeBatch,
    m: &BatchMeta,
    thread: Option<u32>,
) -> Result<ChangeBatch, ErrorKind> {
    let mut md = vec![
        (meta::FILE.to_owned(), m.file.to_string()),
        (meta::SERVER_ID.to_owned(), m.server_id.to_string()),
    ];
    if let Some(t) = thread {
        md.push((meta::THREAD.to_owned(), t.to_string()));
    }
    if let Some(q) = &m.query {
        md.push((meta::QUERY.to_owned(), q.to_string()));
    }
    cb.with_metadata(md)
        .map_err(|e| ErrorKind::Sequence(format!("rebuilding the batch with metadata: {e}")))
}
