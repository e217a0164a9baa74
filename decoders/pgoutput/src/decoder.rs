//! pgoutput messages → the Arrow change model.
//!
//! ```text
//!  XLogData(wal_start, data) ──► Decoder::decode ──► Step::Emitted(Transaction)   rows of a committed txn
//!                                      │            Step::Buffer { xid }         streamed chunk: caller stores
//!                                      │            Step::StreamCommit(..)       caller replays via replay_stream
//!                                      │            Step::StreamAbort { .. }     caller drops what it stored
//!                                      └─ relation cache (schema versions), catalog hints from the source
//! ```
//!
//! The decoder stays sans-IO: a streamed (in-progress) transaction may be larger than memory, so
//! its raw messages are handed back to the caller, which keeps them (memory, then disk) and
//! replays them through [`Decoder::replay_stream`] once Stream Commit arrives. Only then is the
//! commit LSN — the first part of every row's [`Position`] — known.
//!
//! Long transactions are emitted in chunks of at most [`DecoderOptions::max_chunk_rows`] rows:
//! every chunk but the last has `complete == false`, so sinks may write it but nothing may be
//! acknowledged until the last chunk.
//!
//! # Traps
//! - Unchanged TOAST (`'u'`) is not NULL: it becomes `MarkerKind::Unchanged`, never a null value.
//!   Under REPLICA IDENTITY FULL the old tuple carries the value (detoasted), so the new row takes
//!   it from there and no marker is needed; only DEFAULT/INDEX identity leaves the marker.
//! - Relation messages come before the first use of a relation in a session and again after its
//!   schema changes; a Relation that differs from the cached one makes a new schema version,
//!   one that is equal keeps the version (the server resends them after every reconnect).
//! - Relation flags mark the *replica identity* columns, which under REPLICA IDENTITY FULL are
//!   all columns: the primary key comes from the catalog hint the source registers
//!   ([`Decoder::register_catalog`]). Under REPLICA IDENTITY DEFAULT the flags *are* the primary
//!   key, as of the WAL they describe, and they win over the hint: the hint is read when the
//!   Relation arrives, which may be before the transaction that redefined the key is visible
//!   to other sessions (the walsender decodes a commit once it is flushed, before the
//!   committing backend leaves the proc array) or after a later key change (a replay), and a
//!   stale key would key that transaction's deletes by columns their old tuples lack.
//! - **Catalog lookups are not historical.** The source reads `pg_attribute`/`pg_type` when a
//!   Relation message arrives, which may be long after the WAL it describes: by then a column
//!   may have another type, name or key status. The Relation message itself is authoritative for
//!   names and type oids; catalog types are used only where their oid matches
//!   ([`RelationCatalog::type_oids`]), otherwise the builtin mapping of the message's oid is used.
//! - Streamed data messages carry the xid of the *sub*transaction; Stream Abort names the
//!   subtransaction to discard (`subxid == xid` aborts everything).
//! - Two-phase messages are only sent when the slot was created with `two_phase`; Tidemark never
//!   asks for it, so they are a definite error rather than silently mis-ordered rows.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tidemark_model::{
    ChangeBatchBuilder, Column, Image, LogicalMessage as ModelMessage, Lsn, ModelError, Op,
    PgPosition, Position, SchemaVersions, SourceType, TableId, TableSchema, Transaction, TxnItem,
};

use crate::error::DecodeError;
use crate::message::{
    pg_timestamp_to_unix_micros, Message, OldTuple, Relation, ReplicaIdentity, StreamAbort,
    StreamCommit,
};
use crate::parse::ParseContext;
use crate::tuple::{TupleData, TupleValue};

/// What the source knows about a relation from the catalog (`pg_index`, `pg_type`, …).
#[derive(Debug, Clone, Default)]
pub struct RelationCatalog {
    /// Primary key columns, in key order. Empty: the table has no primary key.
    pub primary_key: Vec<String>,
    /// Resolved types by column name: domains as their base type, enums with labels, arrays
    /// of custom element types. Columns missing here are resolved from the builtin table.
    pub types: HashMap<String, SourceType>,
    /// NOT NULL columns.
    pub not_null: HashSet<String>,
    /// The declared type oid (`pg_attribute.atttypid`) each entry of `types` was resolved
    /// for. The catalog is read when the Relation message is decoded, which may be later than
    /// the WAL it describes (the table may have been altered since): an entry of `types` is used
    /// only when this oid equals the Relation message's type oid for the column (trap
    /// "catalog lookups are not historical").
    pub type_oids: HashMap<String, u32>,
}

/// Bytes of row data after which a batch is closed and the next row starts another one
/// ([`Decoder::set_max_batch_bytes`]). Arrow string and binary columns have i32 offsets: a
/// column past 2 GiB in one batch made the Arrow builder panic ("byte array offset overflow"),
/// and a few large text/bytea rows of one table in one transaction get there. A value is at
/// most 1 GB (PostgreSQL's field limit), so a batch closed at this size stays below 2 GiB.
pub const MAX_BATCH_BYTES: usize = 512 << 20;

/// Decoder settings.
#[derive(Debug, Clone)]
pub struct DecoderOptions {
    /// Negotiated pgoutput `proto_version`.
    pub protocol: u32,
    /// `streaming = parallel` was requested.
    pub parallel_streaming: bool,
    /// Rows per emitted chunk of a long transaction.
    pub max_chunk_rows: usize,
}

impl Default for DecoderOptions {
    fn default() -> Self {
        Self {
            protocol: 1,
            parallel_streaming: false,
            max_chunk_rows: 65_536,
        }
    }
}

/// What one message did.
#[derive(Debug)]
pub enum Step {
    /// Nothing for the caller (Begin, Relation, Type, Origin, a buffered row).
    Nothing,
    /// A transaction (or a chunk of one, see `complete`) is ready.
    Emitted(Transaction),
    /// A message inside a streamed block: the caller stores `(wal_start, data)` under the
    /// top-level `xid` until Stream Commit or Stream Abort.
    Buffer { xid: u32, subxid: u32 },
    /// Stream Commit: replay what was stored under `commit.xid` through [`Decoder::replay_stream`].
    StreamCommit(StreamCommit),
    /// Stream Abort: drop what was stored under `xid` for `subxid` (all of it if equal).
    StreamAbort(StreamAbort),
}

/// Decoding failed: the protocol message was malformed, or a value could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecoderError {
    #[error(transparent)]
    Protocol(#[from] DecodeError),
    #[error("pgoutput {message} at lsn {lsn}: unknown relation oid {oid} (no Relation message before it)")]
    UnknownRelation {
        message: &'static str,
        lsn: Lsn,
        oid: u32,
    },
    #[error("pgoutput {message} at lsn {lsn}, table {table}: tuple has {got} columns, the relation has {want}")]
    ColumnCount {
        message: &'static str,
        lsn: Lsn,
        table: TableId,
        got: usize,
        want: usize,
    },
    /// A value could not be read; the model error names table, image, column and type.
    #[error("pgoutput {message} at lsn {lsn}: {source}")]
    Model {
        message: &'static str,
        lsn: Lsn,
        source: Box<ModelError>,
    },
    #[error("pgoutput {message} at lsn {lsn}: {problem}")]
    Sequence {
        message: &'static str,
        lsn: Lsn,
        problem: String,
    },
}

impl DecoderError {
    /// Decoding errors are about the data: retrying the same bytes gives the same error.
    pub fn is_transient(&self) -> bool {
        false
    }
}

struct RelationEntry {
    schema: Arc<TableSchema>,
}

struct TxnState {
    xid: u32,
    final_lsn: u64,
    commit_ts_us: Option<i64>,
    items: Vec<TxnItem>,
    current: Option<(u32, ChangeBatchBuilder)>,
    index: u32,
    rows: usize,
}

/// The pgoutput → change model decoder of one replication session.
pub struct Decoder {
    options: DecoderOptions,
    ctx: ParseContext,
    /// Top-level xid of the streamed block we are in.
    stream_xid: Option<u32>,
    relations: HashMap<u32, RelationEntry>,
    /// Latest schema per table, across relation oids (a table recreated keeps counting versions).
    versions: SchemaVersions,
    catalog: HashMap<u32, RelationCatalog>,
    /// Custom types announced by Type messages: oid → `namespace.name`.
    custom_types: HashMap<u32, String>,
    txn: Option<TxnState>,
    warned: HashSet<(TableId, String)>,
    /// [`MAX_BATCH_BYTES`] unless set ([`Decoder::set_max_batch_bytes`]).
    max_batch_bytes: usize,
}

impl Decoder {
    /// A decoder for a session with `options`.
    pub fn new(options: DecoderOptions) -> Self {
        let ctx =
            ParseContext::new(options.protocol).with_parallel_streaming(options.parallel_streaming);
        Self {
            options,
            ctx,
            stream_xid: None,
            relations: HashMap::new(),
            versions: SchemaVersions::default(),
            catalog: HashMap::new(),
            custom_types: HashMap::new(),
            txn: None,
            warned: HashSet::new(),
            max_batch_bytes: MAX_BATCH_BYTES,
        }
    }

    /// Closes a table's batch once it holds `bytes` of row data (default [`MAX_BATCH_BYTES`];
    /// at most that, so no Arrow column of a batch reaches its 2 GiB offset limit).
    pub fn set_max_batch_bytes(&mut self, bytes: usize) {
        self.max_batch_bytes = bytes.min(MAX_BATCH_BYTES);
    }

    /// Continues the schema version numbering of an earlier session (from
    /// [`Decoder::take_schema_versions`]). A reconnect resends every Relation: without this the
    /// new session would number them from 1 again, and a sink that caches its encoding per
    /// table and version would take a table's version 1 of the new session (its current
    /// columns) for version 1 of the old one (its columns before the last schema change).
    pub fn with_schema_versions(mut self, versions: SchemaVersions) -> Self {
        self.versions = versions;
        self
    }

    /// The latest schema per table (for the next session's [`Decoder::with_schema_versions`]).
    pub fn take_schema_versions(&mut self) -> SchemaVersions {
        std::mem::take(&mut self.versions)
    }

    /// Registers what the catalog says about relation `oid`; call it before the Relation
    /// message is decoded (the source peeks at it with [`Self::relation_oid`]).
    pub fn register_catalog(&mut self, oid: u32, catalog: RelationCatalog) {
        self.catalog.insert(oid, catalog);
    }

    /// The relation oid of `data` if it is a Relation message. The source then looks the
    /// relation up in the catalog and calls [`Self::register_catalog`] before handing `data` to
    /// [`Self::decode`]. Every Relation is looked up again: they are rare (once per session and
    /// table, and after a schema change) and a schema change may have changed the key or types.
    pub fn relation_oid(&self, data: &[u8]) -> Option<u32> {
        match self.ctx.parse(data) {
            Ok(Message::Relation(r)) => Some(r.oid),
            _ => None,
        }
    }

    /// The table's latest schema, as the stream numbers it; when the stream has not decoded
    /// the table yet, `columns` become its version 1. An incremental snapshot reads its chunks
    /// with this schema, so chunk rows and stream rows of the table share one version sequence
    /// (a later Relation with other columns is the next version, never a second version 1).
    pub fn table_schema_or(&mut self, table: &TableId, columns: Vec<Column>) -> Arc<TableSchema> {
        self.versions.latest_or(table, columns)
    }

    /// Whether catalog information for `oid` is registered.
    pub fn has_catalog(&self, oid: u32) -> bool {
        self.catalog.contains_key(&oid)
    }

    /// True between Begin and Commit (nothing of the open transaction has been acknowledged).
    pub fn in_transaction(&self) -> bool {
        self.txn.is_some()
    }

    /// True between Stream Start and Stream Stop.
    pub fn in_stream(&self) -> bool {
        self.stream_xid.is_some()
    }

    /// The current schema of relation `oid`.
    pub fn relation_schema(&self, oid: u32) -> Option<&Arc<TableSchema>> {
        self.relations.get(&oid).map(|r| &r.schema)
    }

    /// Decodes the pgoutput message `data` that arrived in an XLogData frame at `wal_start`.
    pub fn decode(&mut self, wal_start: u64, data: &[u8]) -> Result<Step, DecoderError> {
        let message = self.ctx.parse(data)?;
        match message {
            Message::StreamStart(s) => {
                self.ctx.in_stream = true;
                self.stream_xid = Some(s.xid);
                Ok(Step::Nothing)
            }
            Message::StreamStop => {
                self.ctx.in_stream = false;
                self.stream_xid = None;
                Ok(Step::Nothing)
            }
            Message::StreamCommit(c) => Ok(Step::StreamCommit(c)),
            Message::StreamAbort(a) => Ok(Step::StreamAbort(a)),
            // Schema messages take effect at once, streamed or not: later rows need them.
            Message::Relation(r) => {
                self.relation(&r);
                Ok(Step::Nothing)
            }
            Message::Type(t) => {
                self.custom_types
                    .insert(t.oid, format!("{}.{}", t.namespace_name(), t.name));
                Ok(Step::Nothing)
            }
            other if self.ctx.in_stream => {
                let xid = self.stream_xid.unwrap_or_default();
                let subxid = data_message_xid(&other).unwrap_or(xid);
                Ok(Step::Buffer { xid, subxid })
            }
            other => self.apply(wal_start, other),
        }
    }

    /// Replays a committed streamed transaction: `messages` are the `(wal_start, data)` pairs
    /// the caller stored for `commit.xid`, in arrival order, without the aborted subtransactions.
    /// `emit` receives the chunks and finally the complete transaction.
    ///
    /// This holds every chunk the callback keeps; a caller that must stay within bounded memory
    /// drives the replay itself with [`Decoder::begin_stream_replay`],
    /// [`Decoder::replay_message`] and [`Decoder::finish_stream_replay`], handing each chunk on
    /// before reading the next message.
    pub fn replay_stream<'m>(
        &mut self,
        commit: &StreamCommit,
        messages: impl IntoIterator<Item = (u64, &'m [u8])>,
        emit: &mut dyn FnMut(Transaction),
    ) -> Result<(), DecoderError> {
        self.begin_stream_replay(commit);
        for (wal_start, data) in messages {
            if let Some(chunk) = self.replay_message(wal_start, data)? {
                emit(chunk);
            }
        }
        emit(self.finish_stream_replay(commit)?);
        Ok(())
    }

    /// Starts replaying the committed streamed transaction `commit.xid` (see
    /// [`Decoder::replay_stream`]): its rows are ordered by `commit.commit_lsn`.
    pub fn begin_stream_replay(&mut self, commit: &StreamCommit) {
        self.begin(commit.xid, commit.commit_lsn, commit.commit_timestamp);
    }

    /// Applies one stored message of the transaction being replayed; returns a chunk
    /// (`complete == false`) when [`DecoderOptions::max_chunk_rows`] rows are ready.
    pub fn replay_message(
        &mut self,
        wal_start: u64,
        data: &[u8],
    ) -> Result<Option<Transaction>, DecoderError> {
        let message = self.ctx.with_in_stream(true).parse(data)?;
        match self.apply(wal_start, message)? {
            Step::Emitted(chunk) => Ok(Some(chunk)),
            _ => Ok(None),
        }
    }

    /// Ends the replay: the last part of the transaction, `complete == true`.
    pub fn finish_stream_replay(
        &mut self,
        commit: &StreamCommit,
    ) -> Result<Transaction, DecoderError> {
        self.commit(commit.commit_lsn, commit.end_lsn, "Stream Commit")
    }

    fn apply(&mut self, wal_start: u64, message: Message<'_>) -> Result<Step, DecoderError> {
        let lsn = Lsn(wal_start);
        match message {
            Message::Begin(b) => {
                self.begin(b.xid, b.final_lsn, b.commit_timestamp);
                Ok(Step::Nothing)
            }
            Message::Commit(c) => Ok(Step::Emitted(self.commit(
                c.commit_lsn,
                c.end_lsn,
                "Commit",
            )?)),
            Message::Origin(_) => Ok(Step::Nothing),
            Message::Insert(i) => self.row(
                "Insert",
                lsn,
                i.relation_oid,
                Op::Insert,
                None,
                Some(&i.new),
            ),
            Message::Update(u) => {
                let old = u.old.as_ref().map(OldTuple::tuple);
                self.row("Update", lsn, u.relation_oid, Op::Update, old, Some(&u.new))
            }
            Message::Delete(d) => self.row(
                "Delete",
                lsn,
                d.relation_oid,
                Op::Delete,
                Some(d.old.tuple()),
                None,
            ),
            Message::Truncate(t) => {
                let mut step = Step::Nothing;
                for oid in t.relation_oids {
                    step = self.row("Truncate", lsn, oid, Op::Truncate, None, None)?;
                }
                Ok(step)
            }
            Message::LogicalMessage(m) => {
                let transactional = m.transactional();
                let message = ModelMessage {
                    transactional,
                    prefix: m.prefix.to_string(),
                    content: m.content.to_vec(),
                    position: Position::Postgres(PgPosition {
                        commit_lsn: Lsn(self.txn.as_ref().map_or(m.lsn, |t| t.final_lsn)),
                        lsn: Lsn(m.lsn),
                        index: 0,
                    }),
                };
                match (&mut self.txn, transactional) {
                    (Some(txn), true) => {
                        finish_current(txn)?;
                        let mut message = message;
                        message.position = Position::pg(Lsn(txn.final_lsn), Lsn(m.lsn), txn.index);
                        txn.index = txn.index.saturating_add(1);
                        txn.items.push(TxnItem::Message(message));
                        Ok(Step::Nothing)
                    }
                    _ => Ok(Step::Emitted(Transaction {
                        xid: None,
                        commit_ts_us: None,
                        end: Position::Postgres(PgPosition::end(Lsn(m.lsn), Lsn(m.lsn))),
                        items: vec![TxnItem::Message(message)],
                        complete: true,
                        snapshot: None,
                    })),
                }
            }
            Message::Relation(r) => {
                self.relation(&r);
                Ok(Step::Nothing)
            }
            Message::Type(_) | Message::StreamStart(_) | Message::StreamStop => Ok(Step::Nothing),
            other => Err(DecoderError::Sequence {
                message: message_name(&other),
                lsn,
                problem: "two-phase / nested stream messages are not expected: the slot must not \
                          have two_phase enabled and streams must not nest"
                    .into(),
            }),
        }
    }

    fn begin(&mut self, xid: u32, final_lsn: u64, commit_ts: i64) {
        self.txn = Some(TxnState {
            xid,
            final_lsn,
            commit_ts_us: pg_timestamp_to_unix_micros(commit_ts),
            items: Vec::new(),
            current: None,
            index: 0,
            rows: 0,
        });
    }

    fn commit(
        &mut self,
        commit_lsn: u64,
        end_lsn: u64,
        what: &'static str,
    ) -> Result<Transaction, DecoderError> {
        let Some(mut txn) = self.txn.take() else {
            return Err(DecoderError::Sequence {
                message: what,
                lsn: Lsn(commit_lsn),
                problem: "commit without a Begin".into(),
            });
        };
        finish_current(&mut txn)?;
        Ok(Transaction {
            xid: Some(u64::from(txn.xid)),
            commit_ts_us: txn.commit_ts_us,
            end: Position::Postgres(PgPosition::end(Lsn(commit_lsn), Lsn(end_lsn))),
            items: txn.items,
            complete: true,
            snapshot: None,
        })
    }

    fn row(
        &mut self,
        message: &'static str,
        lsn: Lsn,
        oid: u32,
        op: Op,
        before: Option<&TupleData<'_>>,
        after: Option<&TupleData<'_>>,
    ) -> Result<Step, DecoderError> {
        let Some(schema) = self.relations.get(&oid).map(|r| r.schema.clone()) else {
            return Err(DecoderError::UnknownRelation { message, lsn, oid });
        };
        let max_rows = self.options.max_chunk_rows.max(1);
        let max_bytes = self.max_batch_bytes;
        let Some(txn) = self.txn.as_mut() else {
            return Err(DecoderError::Sequence {
                message,
                lsn,
                problem: "row outside a transaction".into(),
            });
        };
        let same = matches!(&txn.current, Some((cur, b))
            if *cur == oid && Arc::ptr_eq(b.schema(), &schema) && b.byte_size() < max_bytes);
        if !same {
            finish_current(txn)?;
            txn.current = Some((oid, ChangeBatchBuilder::new(schema.clone(), 64)));
        }
        let position = Position::Postgres(PgPosition {
            commit_lsn: Lsn(txn.final_lsn),
            lsn,
            index: txn.index,
        });
        let commit_ts = txn.commit_ts_us;
        let xid = Some(u64::from(txn.xid));
        let Some((_, builder)) = txn.current.as_mut() else {
            unreachable!("a builder was installed above")
        };
        let model = |source| DecoderError::Model {
            message,
            lsn,
            source: Box::new(source),
        };
        builder
            .begin_row(op, &position, xid, commit_ts)
            .map_err(model)?;
        for (image, tuple) in [(Image::Before, before), (Image::After, after)] {
            // Unchanged TOAST in the new row is taken from the old row when the server sent
            // one with the value (REPLICA IDENTITY FULL), as Debezium does (module traps).
            let old = if image == Image::After { before } else { None };
            match tuple {
                None => builder.image_null(image).map_err(model)?,
                Some(tuple) => fill_image(builder, image, tuple, old, &schema, message, lsn)?,
            }
        }
        builder.finish_row().map_err(model)?;
        txn.index = txn.index.saturating_add(1);
        txn.rows += 1;
        if txn.rows >= max_rows {
            finish_current(txn)?;
            txn.rows = 0;
            let chunk = Transaction {
                xid,
                commit_ts_us: commit_ts,
                end: position,
                items: std::mem::take(&mut txn.items),
                complete: false,
                snapshot: None,
            };
            return Ok(Step::Emitted(chunk));
        }
        Ok(Step::Nothing)
    }

    fn relation(&mut self, r: &Relation<'_>) {
        let table = TableId::new(r.namespace_name(), r.name);
        let catalog = self.catalog.get(&r.oid);
        let use_flags = catalog.is_none() && r.replica_identity == ReplicaIdentity::Default;
        let mut columns = Vec::with_capacity(r.columns.len());
        for c in &r.columns {
            // Catalog lookups are not historical (module traps): trust the catalog's type only
            // when it was resolved for the type the Relation message names.
            let source_type = catalog
                .filter(|cat| {
                    cat.type_oids
                        .get(c.name)
                        .is_none_or(|&oid| oid == c.type_oid)
                })
                .and_then(|cat| cat.types.get(c.name).cloned())
                .or_else(|| SourceType::pg_builtin(c.type_oid, c.type_modifier))
                .unwrap_or_else(|| {
                    let name = self
                        .custom_types
                        .get(&c.type_oid)
                        .cloned()
                        .unwrap_or_else(|| format!("oid {}", c.type_oid));
                    if self.warned.insert((table.clone(), c.name.to_string())) {
                        tracing::warn!(table = %table, column = c.name, source_type = %name,
                            "unknown type: kept as its text form");
                    }
                    SourceType::pg_other(c.type_oid, name, c.type_modifier)
                });
            let key = match catalog {
                // REPLICA IDENTITY DEFAULT: the flags are the primary key as of this WAL; the
                // catalog is read later, and may not show yet the transaction that redefined
                // the key (module traps).
                Some(_) if r.replica_identity == ReplicaIdentity::Default => c.is_key(),
                Some(cat) => cat.primary_key.iter().any(|k| k == c.name),
                None => use_flags && c.is_key(),
            };
            let nullable = catalog.is_none_or(|cat| !cat.not_null.contains(c.name));
            columns.push(Column::postgres(c.name, source_type, nullable, key));
        }
        // Key order follows the primary key's order, not the column order.
        let schema = self.versions.next(&table, columns);
        self.relations.insert(r.oid, RelationEntry { schema });
    }
}

fn finish_current(txn: &mut TxnState) -> Result<(), DecoderError> {
    if let Some((_, builder)) = txn.current.take() {
        let mut builder = builder;
        if !builder.is_empty() {
            let batch = builder.finish().map_err(|source| DecoderError::Model {
                message: "batch",
                lsn: Lsn(txn.final_lsn),
                source: Box::new(source),
            })?;
            txn.items.push(TxnItem::Rows(batch));
        }
    }
    Ok(())
}

fn fill_image(
    builder: &mut ChangeBatchBuilder,
    image: Image,
    tuple: &TupleData<'_>,
    old: Option<&TupleData<'_>>,
    schema: &TableSchema,
    message: &'static str,
    lsn: Lsn,
) -> Result<(), DecoderError> {
    if tuple.len() != schema.columns.len() {
        return Err(DecoderError::ColumnCount {
            message,
            lsn,
            table: schema.table.clone(),
            got: tuple.len(),
            want: schema.columns.len(),
        });
    }
    let mut old_values = old.filter(|o| o.len() == tuple.len()).map(|o| o.iter());
    for (col, value) in tuple.iter().enumerate() {
        let old_value = old_values.as_mut().and_then(|it| it.next());
        let value = match (value, old_value) {
            (
                TupleValue::UnchangedToast,
                Some(v @ (TupleValue::Text(_) | TupleValue::Binary(_))),
            ) => v,
            (v, _) => v,
        };
        let result = match value {
            TupleValue::Null => builder.append_null(image, col),
            TupleValue::UnchangedToast => builder.append_unchanged(image, col),
            TupleValue::Text(bytes) => builder.append_text(image, col, bytes),
            TupleValue::Binary(bytes) => builder.append_binary(image, col, bytes),
        };
        result.map_err(|source| DecoderError::Model {
            message,
            lsn,
            source: Box::new(source),
        })?;
    }
    Ok(())
}

fn data_message_xid(message: &Message<'_>) -> Option<u32> {
    match message {
        Message::Insert(m) => m.xid,
        Message::Update(m) => m.xid,
        Message::Delete(m) => m.xid,
        Message::Truncate(m) => m.xid,
        Message::LogicalMessage(m) => m.xid,
        _ => None,
    }
}

fn message_name(message: &Message<'_>) -> &'static str {
    match message {
        Message::BeginPrepare(_) => "Begin Prepare",
        Message::Prepare(_) => "Prepare",
        Message::CommitPrepared(_) => "Commit Prepared",
        Message::RollbackPrepared(_) => "Rollback Prepared",
        Message::StreamPrepare(_) => "Stream Prepare",
        Message::StreamCommit(_) => "Stream Commit",
        Message::StreamAbort(_) => "Stream Abort",
        _ => "message",
    }
}
