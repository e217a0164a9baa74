//! A batch of consumed records → one [`Transaction`] of the change model. Pure.
//!
//! Each table keeps its current schema version: built from the row struct's Connect schema
//! (`columns.rs`) and the key's field names, and replaced by the next version when a record
//! brings a different one (a column added upstream shows up in the envelope's schema).
//! Consecutive rows of one table and version share a `ChangeBatch`. Row `i` of batch `seq` is
//! at `kafka:<epoch>:<seq>:<i>`; the transaction ends at `kafka:<epoch>:<seq>:4294967295`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::{Map, Value};
use tidemark_model::{
    ChangeBatchBuilder, Image, KafkaPosition, LogicalMessage, Op, Position, TableId, TableSchema,
    Transaction, TxnItem,
};

use super::columns::{self, ColumnPlan};
use super::config::Schemaless;
use super::envelope::{self, Change, EnvelopeError, Event, PkChange, RecordAt};

/// One consumed record, borrowed.
pub struct RawRecord<'a> {
    pub at: RecordAt<'a>,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// The record's primary-key-change headers.
    pub pk: PkChange<'a>,
}

struct TablePlan {
    schema: Arc<TableSchema>,
    plans: Vec<ColumnPlan>,
    /// What the plan was built from: the row schema, or the schemaless column names.
    row_schema: Option<Value>,
    names: Vec<String>,
    key_fields: Vec<String>,
}

/// Converts batches; keeps each table's current schema version.
pub struct Converter {
    tables: HashMap<TableId, TablePlan>,
    schemaless: Schemaless,
    placeholder: String,
    warned: HashSet<(TableId, String)>,
}

/// What a batch produced besides the transaction.
#[derive(Debug, Default)]
pub struct BatchStats {
    pub skipped: u64,
}

impl Converter {
    pub fn new(schemaless: Schemaless, placeholder: impl Into<String>) -> Self {
        Converter {
            tables: HashMap::new(),
            schemaless,
            placeholder: placeholder.into(),
            warned: HashSet::new(),
        }
    }

    /// The transaction of batch `seq` of run `epoch`.
    pub fn transaction<'a>(
        &mut self,
        epoch: u32,
        seq: u64,
        records: impl IntoIterator<Item = RawRecord<'a>>,
    ) -> Result<(Transaction, BatchStats), EnvelopeError> {
        let mut txn = Transaction::new(None, None, Position::Kafka(KafkaPosition::end(epoch, seq)));
        let mut stats = BatchStats::default();
        let mut current: Option<ChangeBatchBuilder> = None;
        let mut index: u32 = 0;
        let mut txids: HashSet<Option<u64>> = HashSet::new();
        for r in records {
            let position = Position::Kafka(KafkaPosition { epoch, seq, index });
            match envelope::decode(&r.at, r.key, r.value, r.pk)? {
                Event::Skip(_) => stats.skipped += 1,
                Event::Message {
                    prefix,
                    content,
                    transactional,
                } => {
                    flush(&mut current, &mut txn, &r.at)?;
                    txn.items.push(TxnItem::Message(LogicalMessage {
                        transactional,
                        prefix,
                        content,
                        position,
                    }));
                    index += 1;
                }
                Event::Change(c) => {
                    let schema = self.plan_for(&r.at, &c)?;
                    if current
                        .as_ref()
                        .is_some_and(|b| !Arc::ptr_eq(b.schema(), &schema))
                    {
                        flush(&mut current, &mut txn, &r.at)?;
                    }
                    let b = current.get_or_insert_with(|| ChangeBatchBuilder::new(schema, 64));
                    let plan = &self.tables[&c.table];
                    append_row(b, plan, &c, &position, &self.placeholder)
                        .map_err(|reason| r.at.err(reason))?;
                    txn.commit_ts_us = txn.commit_ts_us.max(c.commit_ts_us);
                    txids.insert(c.txid);
                    index += 1;
                }
            }
        }
        if let Some(b) = current.as_mut() {
            let at = RecordAt {
                topic: "",
                partition: -1,
                offset: -1,
            };
            let batch = b.finish().map_err(|e| at.err(e.to_string()))?;
            txn.items.push(TxnItem::Rows(batch));
        }
        if txids.len() == 1 {
            txn.xid = txids.into_iter().next().flatten();
        }
        Ok((txn, stats))
    }

    /// The table's plan for this change, a new schema version if it changed.
    fn plan_for(
        &mut self,
        at: &RecordAt<'_>,
        c: &Change,
    ) -> Result<Arc<TableSchema>, EnvelopeError> {
        let names: Vec<String> = match (&c.row_schema, c.after.as_ref().or(c.before.as_ref())) {
            (None, Some(img)) => img.keys().cloned().collect(),
            _ => Vec::new(),
        };
        if let Some(p) = self.tables.get(&c.table) {
            let same = p.key_fields == c.key_fields
                && match &c.row_schema {
                    Some(s) => p.row_schema.as_ref() == Some(s),
                    // A truncate has no image: it keeps the current version.
                    None => names.is_empty() || p.names == names,
                };
            // A truncate has no key (its record key is null) and no image: it keeps the
            // current version whatever schema its envelope carries.
            if same || c.op == Op::Truncate {
                return Ok(p.schema.clone());
            }
        }
        let plans: Vec<ColumnPlan> = match &c.row_schema {
            Some(s) => s
                .get("fields")
                .and_then(Value::as_array)
                .ok_or_else(|| at.err(format!("table {}: the row schema has no fields", c.table)))?
                .iter()
                .map(|f| {
                    let name = f.get("field").and_then(Value::as_str).unwrap_or_default();
                    columns::plan_column(f, c.key_fields.iter().any(|k| k == name))
                        .ok_or_else(|| at.err(format!("table {}: a field without a name", c.table)))
                })
                .collect::<Result<_, _>>()?,
            None if c.op == Op::Truncate => Vec::new(),
            None => match self.schemaless {
                Schemaless::Reject => {
                    return Err(at.err(format!(
                        "table {}: the record has no Connect schema; write the topic with schemas.enable=true (key.converter.schemas.enable / value.converter.schemas.enable, or the Kafka sink's schemas_enable = true), or set source.schemaless = \"text\" to read every column as text",
                        c.table
                    )))
                }
                Schemaless::Text => names
                    .iter()
                    .map(|n| columns::text_column(n, c.key_fields.contains(n)))
                    .collect(),
            },
        };
        for p in plans.iter().filter(|p| p.fallback) {
            if self.warned.insert((c.table.clone(), p.column.name.clone())) {
                tracing::warn!(table = %c.table, column = %p.column.name, topic = at.topic,
                    "kafka source: no model type for this Connect schema; the column is kept as the JSON text of its values");
            }
        }
        let cols: Vec<_> = plans.iter().map(|p| p.column.clone()).collect();
        let version = match self.tables.get(&c.table) {
            Some(p) if p.schema.same_columns(&cols) => p.schema.version,
            Some(p) => p.schema.version + 1,
            None => 1,
        };
        let schema = match self.tables.get(&c.table) {
            Some(p) if p.schema.version == version => p.schema.clone(),
            _ => TableSchema::new(c.table.clone(), version, cols),
        };
        self.tables.insert(
            c.table.clone(),
            TablePlan {
                schema: schema.clone(),
                plans,
                row_schema: c.row_schema.clone(),
                names,
                key_fields: c.key_fields.clone(),
            },
        );
        Ok(schema)
    }
}

fn flush(
    current: &mut Option<ChangeBatchBuilder>,
    txn: &mut Transaction,
    at: &RecordAt<'_>,
) -> Result<(), EnvelopeError> {
    if let Some(mut b) = current.take() {
        let batch = b.finish().map_err(|e| at.err(e.to_string()))?;
        txn.items.push(TxnItem::Rows(batch));
    }
    Ok(())
}

fn append_row(
    b: &mut ChangeBatchBuilder,
    plan: &TablePlan,
    c: &Change,
    position: &Position,
    placeholder: &str,
) -> Result<(), String> {
    let model = |e: tidemark_model::ModelError| e.to_string();
    b.begin_row(c.op, position, c.txid, c.commit_ts_us)
        .map_err(model)?;
    let (before, after) = match c.op {
        Op::Insert | Op::Read => (None, c.after.as_ref()),
        Op::Update => (c.before.as_ref(), c.after.as_ref()),
        Op::Delete => (c.before.as_ref(), None),
        Op::Truncate => (None, None),
    };
    if matches!(c.op, Op::Insert | Op::Read | Op::Update) && after.is_none() {
        return Err(format!(
            "table {}: op {} without \"after\"",
            c.table,
            c.op.debezium_code()
        ));
    }
    if c.op == Op::Delete && before.is_none() {
        return Err(format!("table {}: a delete without \"before\"", c.table));
    }
    for (image, obj) in [(Image::Before, before), (Image::After, after)] {
        let Some(obj) = obj else {
            b.image_null(image).map_err(model)?;
            continue;
        };
        fill_image(b, plan, image, obj, placeholder)
            .map_err(|(col, e)| format!("table {}, column {col}: {e}", c.table))?;
    }
    b.finish_row().map_err(model)
}

fn fill_image(
    b: &mut ChangeBatchBuilder,
    plan: &TablePlan,
    image: Image,
    obj: &Map<String, Value>,
    placeholder: &str,
) -> Result<(), (String, String)> {
    for (i, p) in plan.plans.iter().enumerate() {
        let name = &p.column.name;
        let at = |e: String| (format!("{name} ({})", p.column.source_type.display), e);
        let r = match obj.get(name) {
            None | Some(Value::Null) => b.append_null(image, i),
            Some(v) if columns::is_unavailable(&p.conv, v, placeholder) => {
                b.append_unchanged(image, i)
            }
            Some(v) => {
                let text = columns::to_text(&p.conv, v).map_err(at)?;
                b.append_text(image, i, text.as_bytes())
            }
        };
        r.map_err(|e| at(e.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidemark_model::MarkerKind;

    fn rec<'a>(offset: i64, key: &'a str, value: &'a str) -> RawRecord<'a> {
        RawRecord {
            at: RecordAt {
                topic: "tm.public.t",
                partition: 0,
                offset,
            },
            key: Some(key.as_bytes()),
            value: Some(value.as_bytes()),
            pk: PkChange::default(),
        }
    }

    const SCHEMA: &str = r#"{"type":"struct","fields":[
        {"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"},{"type":"string","optional":true,"field":"v"},
          {"type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"2","connect.decimal.precision":"10"},"field":"n"}],"optional":true,"field":"before"},
        {"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"},{"type":"string","optional":true,"field":"v"},
          {"type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"2","connect.decimal.precision":"10"},"field":"n"}],"optional":true,"field":"after"}]}"#;
    const KEY: &str = r#"{"schema":{"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"}]},"payload":{"id":1}}"#;

    fn value(op: &str, before: &str, after: &str) -> String {
        format!(
            r#"{{"schema":{SCHEMA},"payload":{{"before":{before},"after":{after},"source":{{"connector":"postgresql","schema":"public","table":"t","ts_ms":1000,"txId":9}},"op":"{op}"}}}}"#
        )
    }

    #[test]
    fn a_batch_becomes_one_transaction_with_typed_columns() {
        let mut c = Converter::new(Schemaless::Reject, "__debezium_unavailable_value");
        let v1 = value("c", "null", r#"{"id":1,"v":"a","n":"MDk="}"#);
        let v2 = value(
            "u",
            "null",
            r#"{"id":1,"v":"__debezium_unavailable_value","n":null}"#,
        );
        let v3 = value("d", r#"{"id":1,"v":null,"n":null}"#, "null");
        let recs = vec![
            rec(0, KEY, &v1),
            rec(1, KEY, &v2),
            rec(2, KEY, &v3),
            RawRecord {
                value: None,
                ..rec(3, KEY, "")
            },
        ];
        let (txn, stats) = c.transaction(5, 7, recs).unwrap();
        assert_eq!(stats.skipped, 1);
        assert_eq!(txn.end, Position::Kafka(KafkaPosition::end(5, 7)));
        assert_eq!(txn.xid, Some(9));
        assert_eq!(txn.commit_ts_us, Some(1_000_000));
        let b = txn.batches().next().unwrap();
        assert_eq!(b.num_rows(), 3);
        assert_eq!(b.schema.columns[2].source_type.display, "numeric(10,2)");
        assert!(b.schema.columns[0].key);
        assert_eq!(
            (b.op(0), b.op(1), b.op(2)),
            (Op::Insert, Op::Update, Op::Delete)
        );
        assert!(b.is_unchanged(1, Image::After, 1));
        assert!(b
            .marker(1, Image::After, 1)
            .is_some_and(|m| m.kind == MarkerKind::Unchanged));
        assert_eq!(
            b.position(2),
            Position::Kafka(KafkaPosition {
                epoch: 5,
                seq: 7,
                index: 2
            })
        );
        let n = b
            .after()
            .column(2)
            .as_any()
            .downcast_ref::<arrow_array::Decimal128Array>()
            .unwrap();
        assert_eq!(n.value(0), 12345);
    }

    #[test]
    fn a_primary_key_change_pair_becomes_one_update_from_the_old_key() {
        let mut c = Converter::new(Schemaless::Reject, "__debezium_unavailable_value");
        let key2 = KEY.replace(r#""payload":{"id":1}"#, r#""payload":{"id":2}"#);
        let del = value("d", r#"{"id":1,"v":"a","n":null}"#, "null");
        let create = value(
            "c",
            "null",
            r#"{"id":2,"v":"__debezium_unavailable_value","n":null}"#,
        );
        let recs = vec![
            RawRecord {
                pk: PkChange {
                    old_key: None,
                    new_key: true,
                },
                ..rec(0, KEY, &del)
            },
            RawRecord {
                value: None,
                ..rec(1, KEY, "")
            },
            RawRecord {
                pk: PkChange {
                    old_key: Some(br#"{"id":1}"#),
                    new_key: false,
                },
                ..rec(2, &key2, &create)
            },
        ];
        let (txn, stats) = c.transaction(1, 1, recs).unwrap();
        assert_eq!(stats.skipped, 2, "the delete half and the tombstone");
        let b = txn.batches().next().unwrap();
        assert_eq!((b.num_rows(), b.op(0)), (1, Op::Update));
        let id = |img: &arrow_array::StructArray| {
            img.column(0)
                .as_any()
                .downcast_ref::<arrow_array::Int32Array>()
                .unwrap()
                .value(0)
        };
        assert_eq!((id(b.before()), id(b.after())), (1, 2));
        assert!(b.before().column(1).is_null(0), "a key-only old image");
        assert!(b.is_unchanged(0, Image::After, 1));
        // A truncate (null key, the envelope's schema) keeps the version and its key.
        let t = value("t", "null", "null");
        let (txn, _) = c
            .transaction(
                1,
                2,
                vec![RawRecord {
                    key: None,
                    ..rec(3, KEY, &t)
                }],
            )
            .unwrap();
        let tb = txn.batches().next().unwrap();
        assert_eq!(tb.op(0), Op::Truncate);
        assert!(Arc::ptr_eq(&tb.schema, &b.schema), "a new schema version");
    }

    #[test]
    fn schemaless_records_are_rejected_or_text() {
        let v = r#"{"before":null,"after":{"id":1,"v":2.5},"source":{"schema":"public","table":"t","ts_ms":1},"op":"c"}"#;
        let mut c = Converter::new(Schemaless::Reject, "p");
        let err = c
            .transaction(1, 1, vec![rec(4, r#"{"id":1}"#, v)])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("offset 4") && err.contains("schemas.enable"),
            "{err}"
        );
        let mut c = Converter::new(Schemaless::Text, "p");
        let (txn, _) = c.transaction(1, 1, vec![rec(4, r#"{"id":1}"#, v)]).unwrap();
        let b = txn.batches().next().unwrap();
        assert_eq!(b.schema.columns.len(), 2);
        assert!(b.schema.columns[0].key && b.schema.columns[1].source_type.name == "text");
    }

    #[test]
    fn a_changed_schema_is_a_new_version() {
        let mut c = Converter::new(Schemaless::Reject, "p");
        let v1 = value("c", "null", r#"{"id":1,"v":"a","n":null}"#);
        let extra = SCHEMA.replace(
            r#"{"type":"string","optional":true,"field":"v"}"#,
            r#"{"type":"string","optional":true,"field":"v"},{"type":"int64","optional":true,"field":"w"}"#,
        );
        let v2 = value("c", "null", r#"{"id":2,"v":"b","n":null,"w":3}"#).replace(SCHEMA, &extra);
        let (txn, _) = c
            .transaction(1, 1, vec![rec(0, KEY, &v1), rec(1, KEY, &v2)])
            .unwrap();
        let versions: Vec<u32> = txn.batches().map(|b| b.schema.version).collect();
        assert_eq!(versions, vec![1, 2]);
    }

    /// Every event of the real Debezium captures (tests/fixtures/debezium: Postgres in every
    /// captured mode, MariaDB) converts; schema-enabled ones get typed columns.
    #[test]
    fn real_debezium_captures_convert() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/debezium");
        let mut files = 0;
        for conn in ["pg", "mariadb"] {
            for dir in std::fs::read_dir(root.join(conn)).unwrap().flatten() {
                let text = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap();
                let lines: Vec<serde_json::Value> = text
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect();
                let raw: Vec<(Option<String>, Option<String>, String)> = lines
                    .iter()
                    .map(|e| {
                        // The MariaDB capture keeps the parsed JSON only.
                        let raw = |k: &str, parsed: &serde_json::Value| {
                            e[k].as_str()
                                .map(str::to_owned)
                                .or_else(|| (!parsed.is_null()).then(|| parsed.to_string()))
                        };
                        (
                            raw("key_raw", &e["key"]),
                            raw("value_raw", &e["value"]),
                            e["topic"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect();
                let records = raw.iter().enumerate().map(|(i, (k, v, t))| RawRecord {
                    at: RecordAt {
                        topic: t,
                        partition: 0,
                        offset: i as i64,
                    },
                    key: k.as_deref().map(str::as_bytes),
                    value: v.as_deref().map(str::as_bytes),
                    pk: PkChange::default(),
                });
                let schemas = std::fs::read_to_string(dir.path().join("capture.json"))
                    .is_ok_and(|c| c.contains("--schemas-enable"));
                let mut c = Converter::new(Schemaless::Text, "__debezium_unavailable_value");
                let (txn, _) = c
                    .transaction(1, 1, records)
                    .unwrap_or_else(|e| panic!("{}: {e}", dir.path().display()));
                assert!(txn.row_count() > 0, "{}", dir.path().display());
                if schemas {
                    let b = txn.batches().next().unwrap();
                    assert!(
                        b.schema
                            .columns
                            .iter()
                            .any(|c| c.data_type != arrow_schema::DataType::Utf8),
                        "{}: typed columns expected",
                        dir.path().display()
                    );
                }
                files += 1;
            }
        }
        assert!(files >= 9, "{files} captures");
    }
}
