//! The Kafka encoder against real Debezium 3.6 output (no server): the transactions of the
//! `misc_tx_metadata` capture (`tests/fixtures/debezium/pg/misc_tx_metadata/`, captured with
//! `provide.transaction.metadata=true`) are rebuilt row by row and every record is compared with
//! Debezium's: topic, key, value (processing-time `ts_*` aside), BEGIN/END records, the
//! primary-key-change sequence and its headers; plus topic routing and Tidemark's headers.

use std::sync::Arc;

use serde_json::Value;
use tidemark_debezium::{DebeziumEncoder, EncoderOptions, Record};
use tidemark_kafka::{KafkaEncoder, TopicTemplate, HEADER_OP, HEADER_POSITION, HEADER_TABLE};
use tidemark_model::pg_types::oid;
use tidemark_model::{
    ChangeBatchBuilder, Column, Image, Lsn, Op, PgPosition, Position, SourceType, TableId,
    TableSchema, Transaction, TxnItem,
};

fn fixture() -> Vec<Value> {
    let path = format!(
        "{}/../../tests/fixtures/debezium/pg/misc_tx_metadata/events.jsonl",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn schema(table: &str, cols: &[(&str, u32, bool)]) -> Arc<TableSchema> {
    let columns = cols
        .iter()
        .map(|&(name, o, key)| {
            Column::postgres(name, SourceType::pg_builtin(o, -1).unwrap(), !key, key)
        })
        .collect();
    TableSchema::new(TableId::new("public", table), 1, columns)
}

type Image2<'a> = (Option<[Option<&'a str>; 2]>, Option<[Option<&'a str>; 2]>);

/// One transaction of two-column rows: (op, event lsn, before, after).
fn txn(
    schema: &Arc<TableSchema>,
    xid: u64,
    ts_us: i64,
    commit: (u64, u64),
    rows: &[(Op, u64, Image2<'_>)],
) -> Transaction {
    let mut b = ChangeBatchBuilder::new(schema.clone(), rows.len());
    for (i, (op, lsn, (before, after))) in rows.iter().enumerate() {
        let pos = Position::pg(Lsn(commit.0), Lsn(*lsn), i as u32);
        b.begin_row(*op, &pos, Some(xid), Some(ts_us)).unwrap();
        for (img, vals) in [(Image::Before, before), (Image::After, after)] {
            match vals {
                None => b.image_null(img).unwrap(),
                Some(vals) => {
                    for (c, v) in vals.iter().enumerate() {
                        match v {
                            Some(s) => b.append_text(img, c, s.as_bytes()).unwrap(),
                            None => b.append_null(img, c).unwrap(),
                        }
                    }
                }
            }
        }
        b.finish_row().unwrap();
    }
    let mut t = Transaction::new(
        Some(xid),
        Some(ts_us),
        Position::from(PgPosition::end(Lsn(commit.0), Lsn(commit.1))),
    );
    t.items.push(TxnItem::Rows(b.finish().unwrap()));
    t
}

fn encoder(template: &str) -> KafkaEncoder {
    let mut opts = EncoderOptions::new("tm", "dbz_fixture");
    opts.provide_transaction_metadata = true;
    let dbz = DebeziumEncoder::new(opts.clone()).with_clock(|| 1_795_609_355_891_562_021);
    KafkaEncoder::new(opts, TopicTemplate::parse(template).unwrap(), true).with_debezium(dbz)
}

fn json(b: &Option<Vec<u8>>) -> Value {
    b.as_ref()
        .map_or(Value::Null, |b| serde_json::from_slice(b).unwrap())
}

/// A value without the envelope's processing-time fields.
fn strip_now(mut v: Value) -> Value {
    if let Some(m) = v.as_object_mut() {
        if m.contains_key("source") {
            for k in ["ts_ms", "ts_us", "ts_ns"] {
                m.remove(k);
            }
        }
    }
    v
}

fn header<'a>(r: &'a Record, name: &str) -> Option<&'a [u8]> {
    r.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_slice())
}

fn encode(enc: &mut KafkaEncoder, t: &Transaction) -> Vec<Record> {
    let mut out = Vec::new();
    enc.encode_transaction(t, &mut |r| out.push(r)).unwrap();
    out
}

fn assert_matches(ours: &[Record], theirs: &[Value]) {
    assert_eq!(ours.len(), theirs.len(), "record count");
    for (i, (o, t)) in ours.iter().zip(theirs).enumerate() {
        assert_eq!(&*o.topic, t["topic"].as_str().unwrap(), "record {i} topic");
        assert_eq!(json(&o.key), t["key"], "record {i} key");
        assert_eq!(
            strip_now(json(&o.value)),
            strip_now(t["value"].clone()),
            "record {i} value"
        );
    }
}

#[test]
fn no_primary_key_transaction_with_metadata_matches_debezium() {
    let fx = fixture();
    let nopk = schema(
        "nopk_full",
        &[("a", oid::INT4, false), ("b", oid::TEXT, false)],
    );
    let t = txn(
        &nopk,
        1468,
        1_795_609_352_937_093,
        (145_154_664, 145_154_712),
        &[
            (
                Op::Insert,
                145_154_536,
                (None, Some([Some("1"), Some("a")])),
            ),
            (
                Op::Insert,
                145_154_600,
                (None, Some([Some("2"), Some("b")])),
            ),
        ],
    );
    let mut enc = encoder("{prefix}.{schema}.{table}");
    let ours = encode(&mut enc, &t);
    assert_matches(&ours, &fx[0..4]);
    // Tidemark's headers: on change events, not on BEGIN/END (no table).
    let row = &ours[1];
    assert_eq!(header(row, HEADER_TABLE), Some(&b"public.nopk_full"[..]));
    assert_eq!(header(row, HEADER_OP), Some(&b"c"[..]));
    let pos: Position = std::str::from_utf8(header(row, HEADER_POSITION).unwrap())
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(pos, row.position);
    assert_eq!(header(&ours[0], HEADER_TABLE), None);
    assert_eq!(header(&ours[0], HEADER_OP), None);
}

#[test]
fn primary_key_change_with_metadata_matches_debezium() {
    let fx = fixture();
    let start = fx
        .iter()
        .position(|e| e["key"]["id"] == "1473:145155352")
        .expect("BEGIN of 1473");
    let pk = schema(
        "pk_change",
        &[("id", oid::INT4, true), ("v", oid::TEXT, false)],
    );
    let t = txn(
        &pk,
        1473,
        1_795_609_352_939_734,
        (145_155_504, 145_155_552),
        &[(
            Op::Update,
            145_155_352,
            (Some([Some("1"), None]), Some([Some("2"), Some("one")])),
        )],
    );
    let mut enc = encoder("{prefix}.{schema}.{table}");
    enc.debezium_mut()
        .set_last_commit_lsn(Some(Lsn(145_155_352)));
    let ours = encode(&mut enc, &t);
    // BEGIN, delete under the old key, its tombstone, create under the new key, END.
    assert_matches(&ours, &fx[start..start + 5]);
    assert_eq!(ours[2].value, None, "tombstone");
    assert_eq!(
        header(&ours[1], "__debezium.newkey"),
        Some(&br#"{"id":2}"#[..])
    );
    assert_eq!(
        header(&ours[3], "__debezium.oldkey"),
        Some(&br#"{"id":1}"#[..])
    );
    assert_eq!(header(&ours[2], HEADER_OP), None, "a tombstone has no op");
    assert_eq!(
        header(&ours[2], HEADER_TABLE),
        Some(&b"public.pk_change"[..])
    );
}

#[test]
fn routing_template_moves_table_topics_only() {
    let pk = schema(
        "pk_change",
        &[("id", oid::INT4, true), ("v", oid::TEXT, false)],
    );
    let t = txn(
        &pk,
        9,
        1_000_000,
        (200, 300),
        &[(Op::Insert, 100, (None, Some([Some("1"), Some("x")])))],
    );
    let mut enc = encoder("cdc.{table}");
    let topics: Vec<String> = encode(&mut enc, &t)
        .into_iter()
        .map(|r| r.topic.to_string())
        .collect();
    assert_eq!(
        topics,
        ["tm.transaction", "cdc.pk_change", "tm.transaction"]
    );
    assert_eq!(enc.topic_of(&TableId::new("shop", "orders")), "cdc.orders");
}

#[test]
fn transaction_topic_schemas_match_debezium() {
    // Debezium's BEGIN/END with schemas.enable=true (captured for this crate).
    let path = format!(
        "{}/tests/fixtures/debezium_txmeta_schemas.jsonl",
        env!("CARGO_MANIFEST_DIR")
    );
    let fx: Vec<Value> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let begin = &fx[0];
    assert_eq!(begin["topic"], "tm.transaction");
    let mut opts = EncoderOptions::new("tm", "kafka_txschema");
    opts.provide_transaction_metadata = true;
    opts.schemas_enable = true;
    let mut enc = KafkaEncoder::new(
        opts,
        TopicTemplate::parse("{prefix}.{schema}.{table}").unwrap(),
        false,
    );
    let t_schema = schema("t", &[("id", oid::INT4, true), ("v", oid::TEXT, false)]);
    let t = txn(
        &t_schema,
        752,
        1_796_118_762_594_000,
        (42_651_600, 42_651_680),
        &[(Op::Insert, 42_651_280, (None, Some([Some("1"), Some("a")])))],
    );
    let ours = encode(&mut enc, &t);
    assert_eq!(json(&ours[0].key), begin["key"]);
    assert_eq!(json(&ours[0].value), begin["value"]);
    let theirs_block_schema = fx[1]["value"]["schema"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["field"] == "transaction")
        .cloned();
    let ours_block_schema = json(&ours[1].value)["schema"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["field"] == "transaction")
        .cloned();
    assert_eq!(ours_block_schema, theirs_block_schema);
    let end = ours.last().unwrap();
    assert_eq!(json(&end.value)["schema"], fx[3]["value"]["schema"]);
    assert_eq!(json(&end.value)["payload"]["status"], "END");
}
