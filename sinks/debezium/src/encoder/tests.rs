//! Encoder tests against the Debezium 3.6 capture in `tests/fixtures/debezium/pg/`: the
//! all-types rows are rebuilt from the Postgres text forms (`testdata/`, `SELECT col::text`
//! of the capture's workload) and every encoded field is compared with Debezium's output.

use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{json, Value};
use tidemark_model::pg_types::oid;
use tidemark_model::{
    ChangeBatch, ChangeBatchBuilder, Column, Image, LogicalMessage, Lsn, Op, PgPosition, Position,
    SourceType, TableId, TableSchema, Transaction, TxnItem,
};

use super::*;
use crate::config::{DecimalHandling, EncoderOptions};

pub(super) const COLUMNS: &[(&str, u32, i32)] = &[
    ("id", oid::INT4, -1),
    ("c_int2", oid::INT2, -1),
    ("c_int4", oid::INT4, -1),
    ("c_int8", oid::INT8, -1),
    ("c_num_10_2", oid::NUMERIC, 655_366),
    ("c_num", oid::NUMERIC, -1),
    ("c_float4", oid::FLOAT4, -1),
    ("c_float8", oid::FLOAT8, -1),
    ("c_bool", oid::BOOL, -1),
    ("c_text", oid::TEXT, -1),
    ("c_varchar", oid::VARCHAR, 24),
    ("c_char", oid::BPCHAR, 9),
    ("c_name", oid::NAME, -1),
    ("c_bytea", oid::BYTEA, -1),
    ("c_date", oid::DATE, -1),
    ("c_time", oid::TIME, -1),
    ("c_time3", oid::TIME, 3),
    ("c_timetz", oid::TIMETZ, -1),
    ("c_ts", oid::TIMESTAMP, -1),
    ("c_ts3", oid::TIMESTAMP, 3),
    ("c_tstz", oid::TIMESTAMPTZ, -1),
    ("c_interval", oid::INTERVAL, -1),
    ("c_uuid", oid::UUID, -1),
    ("c_json", oid::JSON, -1),
    ("c_jsonb", oid::JSONB, -1),
    ("c_int4_arr", oid::INT4_ARRAY, -1),
    ("c_text_arr", oid::TEXT_ARRAY, -1),
    ("c_int4_2d", oid::INT4_ARRAY, -1),
    ("c_enum", 17486, -1),
    ("c_domain", oid::INT4, -1),
    ("c_inet", oid::INET, -1),
    ("c_cidr", oid::CIDR, -1),
    ("c_macaddr", oid::MACADDR, -1),
    ("c_macaddr8", oid::MACADDR8, -1),
    ("c_money", oid::MONEY, -1),
    ("c_bit1", oid::BIT, 1),
    ("c_bit8", oid::BIT, 8),
    ("c_varbit", oid::VARBIT, -1),
    ("c_xml", oid::XML, -1),
    ("c_point", oid::POINT, -1),
    ("c_line", oid::LINE, -1),
    ("c_lseg", oid::LSEG, -1),
    ("c_box", oid::BOX, -1),
    ("c_path", oid::PATH, -1),
    ("c_polygon", oid::POLYGON, -1),
    ("c_circle", oid::CIRCLE, -1),
    ("c_int4range", oid::INT4RANGE, -1),
    ("c_numrange", oid::NUMRANGE, -1),
    ("c_tsrange", oid::TSRANGE, -1),
    ("c_tstzrange", oid::TSTZRANGE, -1),
    ("c_daterange", oid::DATERANGE, -1),
    ("c_int8range", oid::INT8RANGE, -1),
    ("c_oid", oid::OID, -1),
];

pub(super) const ROWS: &str = include_str!("testdata/all_types_default_rows.json");
const NOW_NS: i128 = 1_795_609_148_877_035_490;

fn all_types_schema() -> Arc<TableSchema> {
    let columns = COLUMNS
        .iter()
        .map(|&(name, o, m)| {
            let t = if o == 17486 {
                SourceType::pg_enum(o, "mood", vec!["sad".into(), "ok".into(), "happy".into()])
            } else {
                SourceType::pg_builtin(o, m).expect("builtin")
            };
            Column::postgres(name, t, name != "id", name == "id")
        })
        .collect();
    TableSchema::new(TableId::new("public", "all_types_default"), 1, columns)
}

fn fixture(capture: &str) -> Vec<Value> {
    let path = format!(
        "{}/../../tests/fixtures/debezium/pg/{capture}/events.jsonl",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn pos(lsn: u64, index: u32) -> Position {
    Position::pg(Lsn(lsn + 100), Lsn(lsn), index)
}

/// One insert per row of the all-types workload (rows 1..=7), from their text forms.
fn insert_batch(schema: &Arc<TableSchema>) -> ChangeBatch {
    let rows: Value = serde_json::from_str(ROWS).unwrap();
    let mut b = ChangeBatchBuilder::new(schema.clone(), 8);
    for (i, row) in rows.as_array().unwrap().iter().enumerate() {
        b.begin_row(
            Op::Insert,
            &pos(1000 + i as u64, 0),
            Some(800),
            Some(1_795_609_145_043_431),
        )
        .unwrap();
        b.image_null(Image::Before).unwrap();
        for (c, v) in row["cols"].as_array().unwrap().iter().enumerate() {
            match v.as_str() {
                Some(s) => b.append_text(Image::After, c, s.as_bytes()).unwrap(),
                None => b.append_null(Image::After, c).unwrap(),
            }
        }
        b.finish_row().unwrap();
    }
    b.finish().unwrap()
}

fn txn(items: Vec<TxnItem>) -> Transaction {
    let mut t = Transaction::new(
        Some(804),
        Some(1_795_609_145_043_431),
        Position::from(PgPosition::end(Lsn(53_206_900), Lsn(53_208_048))),
    );
    t.items = items;
    t
}

fn encode(opts: EncoderOptions, t: &Transaction) -> Vec<Record> {
    let mut enc = DebeziumEncoder::new(opts).with_clock(|| NOW_NS);
    let mut out = Vec::new();
    enc.encode_transaction(t, &mut |r| out.push(r)).unwrap();
    out
}

fn json_of(b: &Option<Vec<u8>>) -> Value {
    b.as_ref()
        .map_or(Value::Null, |b| serde_json::from_slice(b).unwrap())
}

fn opts() -> EncoderOptions {
    EncoderOptions::new("tm", "dbz_fixture")
}

/// Every column of rows 1..=7 equals Debezium's `after`, in all three decimal modes.
fn check_all_types(capture: &str, mode: DecimalHandling) {
    let o = EncoderOptions {
        decimal_handling_mode: mode,
        ..opts()
    };
    check_all_types_with(capture, o);
}

fn check_all_types_with(capture: &str, options: EncoderOptions) {
    let schema = all_types_schema();
    let expected = fixture(capture);
    let records = encode(options, &txn(vec![TxnItem::Rows(insert_batch(&schema))]));
    assert_eq!(records.len(), 7);
    for (i, r) in records.iter().enumerate() {
        let want = &expected[i];
        assert_eq!(&*r.topic, want["topic"].as_str().unwrap());
        assert_eq!(json_of(&r.key), want["key"]);
        let got = json_of(&r.value);
        let (got_after, want_after) = (&got["after"], &want["value"]["after"]);
        let got_keys: Vec<_> = got_after.as_object().unwrap().keys().collect();
        let want_keys: Vec<_> = want_after.as_object().unwrap().keys().collect();
        assert_eq!(got_keys, want_keys, "row {i}: field set and order");
        for (k, v) in want_after.as_object().unwrap() {
            assert_eq!(&got_after[k], v, "{capture} row {i} column {k}");
        }
    }
}

#[test]
fn all_types_match_debezium_precise() {
    check_all_types("all_types_default", DecimalHandling::Precise);
}

#[test]
fn all_types_match_debezium_string() {
    check_all_types("all_types_decimal_string", DecimalHandling::String);
}

#[test]
fn all_types_match_debezium_double() {
    check_all_types("all_types_decimal_double", DecimalHandling::Double);
}

#[test]
fn all_types_match_debezium_time_connect() {
    let o = EncoderOptions {
        time_precision_mode: crate::config::TimePrecision::Connect,
        ..opts()
    };
    check_all_types_with("all_types_time_connect", o);
}

#[test]
fn schemas_match_debezium_all_types_capture() {
    let schema = all_types_schema();
    let expected = fixture("all_types_schemas");
    let o = EncoderOptions {
        schemas_enable: true,
        ..opts()
    };
    let recs = encode(o, &txn(vec![TxnItem::Rows(insert_batch(&schema))]));
    let key = json_of(&recs[0].key);
    assert_eq!(key, expected[0]["key"]);
    let got = json_of(&recs[0].value);
    let want = &expected[0]["value"];
    assert_eq!(got["payload"]["after"], want["payload"]["after"]);
    let (gf, wf) = (&got["schema"]["fields"], &want["schema"]["fields"]);
    for (i, w) in wf.as_array().unwrap().iter().enumerate() {
        assert_eq!(&gf[i], w, "envelope schema field {}", w["field"]);
    }
    let strip = |mut v: Value| {
        v["fields"] = Value::Null;
        serde_json::to_string(&v).unwrap()
    };
    assert_eq!(strip(got["schema"].clone()), strip(want["schema"].clone()));
    for (g, w) in gf[1]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .zip(wf[1]["fields"].as_array().unwrap())
    {
        assert_eq!(
            serde_json::to_string(g).unwrap(),
            serde_json::to_string(w).unwrap(),
            "key order"
        );
    }
}

#[test]
fn envelope_and_source_match_debezium() {
    let schema = all_types_schema();
    let expected = fixture("all_types_default");
    let batch = insert_batch(&schema);
    // Event 1 of the capture: xid 805, lsn 53208048, previous transaction ended at 53208048.
    let one = batch.batch.slice(1, 1);
    let one = ChangeBatch::try_new(schema.clone(), one).unwrap();
    let mut t = Transaction::new(
        Some(805),
        Some(1_795_609_145_044_477),
        Position::from(PgPosition::end(Lsn(53_208_100), Lsn(53_208_200))),
    );
    t.items = vec![TxnItem::Rows(one)];
    let mut enc = DebeziumEncoder::new(opts()).with_clock(|| NOW_NS);
    enc.set_last_commit_lsn(Some(Lsn(53_208_048)));
    let mut out = Vec::new();
    enc.encode_transaction(&t, &mut |r| out.push(r)).unwrap();
    let mut got = json_of(&out[0].value);
    let mut want = expected[1]["value"].clone();
    // The rows were built with their own positions and commit times: take the fixture's.
    got["source"]["lsn"] = want["source"]["lsn"].clone();
    got["source"]["sequence"] = want["source"]["sequence"].clone();
    for k in ["txId", "ts_ms", "ts_us", "ts_ns"] {
        got["source"][k] = want["source"][k].clone();
    }
    for k in ["ts_ms", "ts_us", "ts_ns"] {
        want[k] = got[k].clone();
    }
    assert_eq!(got, want);
    assert_eq!(
        serde_json::to_string(&got["source"]).unwrap(),
        serde_json::to_string(&want["source"]).unwrap(),
        "field order"
    );
    let raw = String::from_utf8(out[0].value.clone().unwrap()).unwrap();
    assert!(
        raw.starts_with(r#"{"before":null,"after":{"id":2,"#),
        "{raw}"
    );
    assert!(raw.contains(r#""transaction":null,"op":"c","ts_ms":1795609148877,"ts_us":1795609148877035,"ts_ns":1795609148877035490}"#));
    // The next transaction's sequence starts with this one's end LSN.
    let mut out2 = Vec::new();
    enc.encode_transaction(&t, &mut |r| out2.push(r)).unwrap();
    let s2 = json_of(&out2[0].value)["source"]["sequence"].clone();
    assert!(s2.as_str().unwrap().starts_with("[\"53208200\","), "{s2}");
}

#[test]
fn key_only_delete_matches_debezium() {
    let schema = all_types_schema();
    let expected = fixture("all_types_default");
    let mut b = ChangeBatchBuilder::new(schema.clone(), 1);
    b.begin_row(Op::Delete, &pos(1, 0), Some(1), Some(0))
        .unwrap();
    b.image_null(Image::After).unwrap();
    b.append_text(Image::Before, 0, b"1").unwrap();
    for c in 1..COLUMNS.len() {
        b.append_null(Image::Before, c).unwrap();
    }
    b.finish_row().unwrap();
    let recs = encode(opts(), &txn(vec![TxnItem::Rows(b.finish().unwrap())]));
    assert_eq!(recs.len(), 2);
    assert_eq!(
        json_of(&recs[0].value)["before"],
        expected[10]["value"]["before"]
    );
    assert_eq!(json_of(&recs[0].key), expected[10]["key"]);
    assert_eq!(
        (json_of(&recs[1].key), json_of(&recs[1].value)),
        (expected[11]["key"].clone(), Value::Null)
    );
}

#[test]
fn first_sequence_is_null_and_lsn_is_decimal() {
    let schema = all_types_schema();
    let recs = encode(opts(), &txn(vec![TxnItem::Rows(insert_batch(&schema))]));
    let v = json_of(&recs[0].value);
    assert_eq!(v["source"]["sequence"], "[null,\"1000\"]");
    assert_eq!(v["source"]["lsn"], 1000);
    assert_eq!(v["source"]["txId"], 800);
    assert_eq!(v["source"]["ts_ms"], 1_795_609_145_043_i64);
    assert_eq!(v["source"]["ts_ns"], 1_795_609_145_043_431_000_i64);
}

fn small_schema(key: bool) -> Arc<TableSchema> {
    let t = |o| SourceType::pg_builtin(o, -1).unwrap();
    TableSchema::new(
        TableId::new("public", "t"),
        1,
        vec![
            Column::postgres("id", t(oid::INT4), false, key),
            Column::postgres("body", t(oid::TEXT), true, false),
            Column::postgres("blob", t(oid::BYTEA), true, false),
            Column::postgres("tags", t(oid::TEXT_ARRAY), true, false),
            Column::postgres(
                "n",
                SourceType::pg_builtin(oid::NUMERIC, 655_366).unwrap(),
                true,
                false,
            ),
            Column::postgres("qty", t(oid::INT4), false, false),
        ],
    )
}

type Cell<'a> = Option<&'a str>;
/// op, before image (None = null), after image.
type Row<'a> = (Op, Option<Vec<Cell<'a>>>, Option<Vec<Cell<'a>>>);

/// One row: op, before (None = null image), after; `Some("~")` is unchanged TOAST.
fn batch(schema: &Arc<TableSchema>, rows: &[Row]) -> ChangeBatch {
    let mut b = ChangeBatchBuilder::new(schema.clone(), rows.len());
    for (i, (op, before, after)) in rows.iter().enumerate() {
        b.begin_row(
            *op,
            &pos(5000 + i as u64, i as u32),
            Some(900),
            Some(1_000_000),
        )
        .unwrap();
        for (img, cells) in [(Image::Before, before), (Image::After, after)] {
            match cells {
                None => b.image_null(img).unwrap(),
                Some(cells) => {
                    for (c, v) in cells.iter().enumerate() {
                        match v {
                            Some("~") => b.append_unchanged(img, c).unwrap(),
                            Some(s) => b.append_text(img, c, s.as_bytes()).unwrap(),
                            None => b.append_null(img, c).unwrap(),
                        }
                    }
                }
            }
        }
        b.finish_row().unwrap();
    }
    b.finish().unwrap()
}

fn full(id: &str, body: &str) -> Vec<Cell<'static>> {
    let id: &'static str = Box::leak(id.to_owned().into_boxed_str());
    let body: &'static str = Box::leak(body.to_owned().into_boxed_str());
    vec![
        Some(id),
        Some(body),
        Some("\\x01"),
        Some("{a}"),
        Some("1.50"),
        Some("7"),
    ]
}

#[test]
fn delete_then_tombstone_and_key_only_before() {
    let s = small_schema(true);
    // The delete of id 1 with a key-only old image, under `o`.
    let delete = |o: EncoderOptions| {
        let key_only = vec![Some("1"), None, None, None, None, None];
        encode(
            o,
            &txn(vec![TxnItem::Rows(batch(
                &s,
                &[(Op::Delete, Some(key_only), None)],
            ))]),
        )
    };
    let recs = delete(opts());
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0].op, Some("d"));
    assert_eq!(json_of(&recs[0].key), json!({"id": 1}));
    let v = json_of(&recs[0].value);
    // NOT NULL non-key column missing from a key-only image: Debezium's fallback 0.
    assert_eq!(
        v["before"],
        json!({"id":1,"body":null,"blob":null,"tags":null,"n":null,"qty":0})
    );
    assert_eq!(v["after"], Value::Null);
    assert_eq!((recs[1].op, recs[1].value.is_none()), (None, true));
    assert_eq!(recs[1].key, recs[0].key);
    assert_eq!(&*recs[1].topic, "tm.public.t");
    // Lossless: the value was not sent, so no made-up 0.
    let recs = delete(EncoderOptions {
        lossless: true,
        ..opts()
    });
    assert_eq!(
        json_of(&recs[0].value)["before"],
        json!({"id":1,"body":null,"blob":null,"tags":null,"n":null,"qty":null})
    );
    let recs = delete(EncoderOptions {
        tombstones_on_delete: false,
        ..opts()
    });
    assert_eq!(recs.len(), 1);
}

#[test]
fn table_without_key_has_null_key() {
    let s = small_schema(false);
    let recs = encode(
        opts(),
        &txn(vec![TxnItem::Rows(batch(
            &s,
            &[(Op::Insert, None, Some(full("1", "x")))],
        ))]),
    );
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].key, None);
    let recs = encode(
        opts(),
        &txn(vec![TxnItem::Rows(batch(
            &s,
            &[(Op::Delete, Some(full("1", "x")), None)],
        ))]),
    );
    assert_eq!(
        recs.len(),
        2,
        "Debezium writes a tombstone even without a key"
    );
    assert_eq!((recs[1].key.clone(), recs[1].value.clone()), (None, None));
}

#[test]
fn primary_key_change_emits_delete_tombstone_create_with_headers() {
    let s = small_schema(true);
    let old = vec![Some("1"), None, None, None, None, None];
    let recs = encode(
        opts(),
        &txn(vec![TxnItem::Rows(batch(
            &s,
            &[(Op::Update, Some(old), Some(full("2", "x")))],
        ))]),
    );
    let ops: Vec<_> = recs.iter().map(|r| r.op).collect();
    assert_eq!(ops, vec![Some("d"), None, Some("c")]);
    assert_eq!(json_of(&recs[0].key), json!({"id": 1}));
    assert_eq!(
        recs[0].headers,
        vec![(HEADER_NEW_KEY.to_owned(), br#"{"id":2}"#.to_vec())]
    );
    assert_eq!(json_of(&recs[1].key), json!({"id": 1}));
    assert_eq!(json_of(&recs[2].key), json!({"id": 2}));
    assert_eq!(
        recs[2].headers,
        vec![(HEADER_OLD_KEY.to_owned(), br#"{"id":1}"#.to_vec())]
    );
    let c = json_of(&recs[2].value);
    assert_eq!(
        (c["before"].clone(), c["after"]["id"].clone()),
        (Value::Null, json!(2))
    );
    // Same key in a full old image: a plain update.
    let recs = encode(
        opts(),
        &txn(vec![TxnItem::Rows(batch(
            &s,
            &[(Op::Update, Some(full("2", "a")), Some(full("2", "b")))],
        ))]),
    );
    assert_eq!(recs.len(), 1);
    let u = json_of(&recs[0].value);
    assert_eq!(
        (u["op"].clone(), u["before"]["body"].clone()),
        (json!("u"), json!("a"))
    );
}

#[test]
fn unchanged_toast_placeholders() {
    let s = small_schema(true);
    let after = vec![
        Some("1"),
        Some("~"),
        Some("~"),
        Some("~"),
        Some("2.00"),
        Some("3"),
    ];
    let recs = encode(
        opts(),
        &txn(vec![TxnItem::Rows(batch(
            &s,
            &[(Op::Update, None, Some(after))],
        ))]),
    );
    let v = json_of(&recs[0].value);
    let p = "__debezium_unavailable_value";
    assert_eq!(v["after"]["body"], p);
    assert_eq!(v["after"]["blob"], base64(p.as_bytes()));
    assert_eq!(v["after"]["tags"], json!([p]));
    assert_eq!(v["before"], Value::Null);
    let custom = EncoderOptions {
        unavailable_value_placeholder: "??".into(),
        ..opts()
    };
    let after = vec![Some("1"), Some("~"), None, None, None, Some("3")];
    let recs = encode(
        custom,
        &txn(vec![TxnItem::Rows(batch(
            &s,
            &[(Op::Update, None, Some(after))],
        ))]),
    );
    assert_eq!(json_of(&recs[0].value)["after"]["body"], "??");
}

#[test]
fn truncate_and_message() {
    let s = small_schema(true);
    let mut t = txn(vec![TxnItem::Rows(batch(
        &s,
        &[(Op::Truncate, None, None)],
    ))]);
    t.items.push(TxnItem::Message(LogicalMessage {
        transactional: true,
        prefix: "audit".into(),
        content: b"hi".to_vec(),
        position: pos(7000, 1),
    }));
    assert_eq!(encode(opts(), &t).len(), 1, "truncate skipped by default");
    let o = EncoderOptions {
        emit_truncate: true,
        ..opts()
    };
    let recs = encode(o, &t);
    assert_eq!(recs.len(), 2);
    assert_eq!((recs[0].op, recs[0].key.clone()), (Some("t"), None));
    let v = json_of(&recs[0].value);
    assert_eq!(
        (v["before"].clone(), v["after"].clone(), v["op"].clone()),
        (Value::Null, Value::Null, json!("t"))
    );
    assert_eq!(&*recs[1].topic, "tm.message");
    assert_eq!(json_of(&recs[1].key), json!({"prefix": "audit"}));
    let m = json_of(&recs[1].value);
    assert_eq!(m["op"], "m");
    assert_eq!(m["message"], json!({"prefix": "audit", "content": "aGk="}));
    assert_eq!(m["source"]["lsn"], 7000);
    assert_eq!(m["source"]["txId"], 804);
    assert_eq!(m["source"]["table"], "");
    let keys: Vec<_> = m.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["op", "ts_ms", "source", "transaction", "message"]);
}

#[test]
fn decimal_modes_and_lossless() {
    let s = small_schema(true);
    let mut after = full("1", "x");
    after[4] = Some("NaN");
    let rows = [
        (Op::Insert, None, Some(full("1", "x"))),
        (Op::Insert, None, Some(after)),
    ];
    let go = |mode, lossless| {
        let o = EncoderOptions {
            decimal_handling_mode: mode,
            lossless,
            ..opts()
        };
        let recs = encode(o, &txn(vec![TxnItem::Rows(batch(&s, &rows))]));
        (
            json_of(&recs[0].value)["after"]["n"].clone(),
            json_of(&recs[1].value)["after"]["n"].clone(),
        )
    };
    assert_eq!(
        go(DecimalHandling::Precise, false),
        (json!("AJY="), Value::Null)
    );
    assert_eq!(
        go(DecimalHandling::Precise, true),
        (json!("AJY="), json!("NaN"))
    );
    assert_eq!(
        go(DecimalHandling::String, false),
        (json!("1.50"), json!("NAN"))
    );
    assert_eq!(
        go(DecimalHandling::Double, false),
        (json!(1.5), json!("NaN"))
    );
}

#[test]
fn lossless_mode_keeps_what_debezium_loses() {
    let schema = all_types_schema();
    let o = EncoderOptions {
        lossless: true,
        ..opts()
    };
    let recs = encode(o, &txn(vec![TxnItem::Rows(insert_batch(&schema))]));
    let after = |i: usize| json_of(&recs[i].value)["after"].clone();
    assert_eq!(after(0)["c_name"], "nm");
    assert_eq!(after(0)["c_int4_2d"], json!([[1, 2], [3, 4]]));
    assert_eq!(after(1)["c_num_10_2"], "NaN");
    assert_eq!(after(1)["c_num"], "NaN");
    assert_eq!(after(4)["c_date"], "infinity");
    assert_eq!(after(4)["c_ts"], "infinity");
    assert_eq!(after(4)["c_ts3"], "-infinity");
    assert_eq!(after(5)["c_date"], "-infinity");
    // Untouched by lossless mode.
    assert_eq!(after(4)["c_tstz"], "infinity");
}

#[test]
fn schemas_enable_wraps_key_and_value() {
    let s = small_schema(true);
    let with_schemas = || EncoderOptions {
        schemas_enable: true,
        ..opts()
    };
    let o = with_schemas();
    let recs = encode(
        o,
        &txn(vec![TxnItem::Rows(batch(
            &s,
            &[(Op::Insert, None, Some(full("1", "x")))],
        ))]),
    );
    let k = json_of(&recs[0].key);
    assert_eq!(k["payload"], json!({"id": 1}));
    assert_eq!(k["schema"]["name"], "tm.public.t.Key");
    assert_eq!(
        k["schema"]["fields"][0],
        json!({"type": "int32", "optional": false, "field": "id"})
    );
    let v = json_of(&recs[0].value);
    assert_eq!(v["schema"]["name"], "tm.public.t.Envelope");
    assert_eq!(v["schema"]["version"], 2);
    let fields: Vec<_> = v["schema"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].clone())
        .collect();
    assert_eq!(
        fields,
        json!([
            "before",
            "after",
            "source",
            "transaction",
            "op",
            "ts_ms",
            "ts_us",
            "ts_ns"
        ])
        .as_array()
        .unwrap()
        .clone()
    );
    let after = &v["schema"]["fields"][1];
    assert_eq!(after["name"], "tm.public.t.Value");
    assert_eq!(
        after["fields"][4]["name"],
        "org.apache.kafka.connect.data.Decimal"
    );
    assert_eq!(
        after["fields"][4]["parameters"],
        json!({"scale": "2", "connect.decimal.precision": "10"})
    );
    assert_eq!(v["payload"]["after"]["n"], "AJY=");
    assert_eq!(v["payload"]["op"], "c");
    // NOT NULL `qty` is required, as Debezium's; lossless mode can write null for it (a
    // key-only old image), so its schema says optional there. The key stays required.
    let qty = |v: &Value| v["schema"]["fields"][1]["fields"][5].clone();
    assert_eq!(
        (qty(&v)["field"].clone(), qty(&v)["optional"].clone()),
        (json!("qty"), json!(false))
    );
    let recs = encode(
        EncoderOptions {
            lossless: true,
            ..with_schemas()
        },
        &txn(vec![TxnItem::Rows(batch(
            &s,
            &[(Op::Insert, None, Some(full("1", "x")))],
        ))]),
    );
    let v = json_of(&recs[0].value);
    assert_eq!(qty(&v)["optional"], json!(true));
    assert_eq!(
        v["schema"]["fields"][1]["fields"][0]["optional"],
        json!(false)
    );
}

fn decode_decimal(b64: &str) -> i128 {
    let bytes = base64_decode(b64).unwrap();
    let neg = bytes.first().is_some_and(|b| b & 0x80 != 0);
    let mut buf = [if neg { 0xff } else { 0 }; 16];
    buf[16 - bytes.len()..].copy_from_slice(&bytes);
    i128::from_be_bytes(buf)
}

proptest! {
    #[test]
    fn prop_precise_decimal_round_trips(unscaled in -(10i128.pow(18))..10i128.pow(18), scale in 0u32..6) {
        let s = TableSchema::new(TableId::new("public", "d"), 1, vec![
            Column::postgres("id", SourceType::pg_builtin(oid::INT4, -1).unwrap(), false, true),
            Column::postgres("n", SourceType::pg_builtin(oid::NUMERIC, ((20 << 16) | scale as i32) + 4).unwrap(), true, false),
            Column::postgres("u", SourceType::pg_builtin(oid::NUMERIC, -1).unwrap(), true, false),
        ]);
        let text = codec::plain_string(unscaled < 0, unscaled.unsigned_abs().to_string().as_bytes(), i64::from(scale));
        let mut b = ChangeBatchBuilder::new(s.clone(), 1);
        b.begin_row(Op::Insert, &pos(1, 0), Some(1), Some(0)).unwrap();
        b.image_null(Image::Before).unwrap();
        b.append_text(Image::After, 0, b"1").unwrap();
        b.append_text(Image::After, 1, text.as_bytes()).unwrap();
        b.append_text(Image::After, 2, text.as_bytes()).unwrap();
        b.finish_row().unwrap();
        let recs = encode(opts(), &txn(vec![TxnItem::Rows(b.finish().unwrap())]));
        let after = json_of(&recs[0].value)["after"].clone();
        prop_assert_eq!(decode_decimal(after["n"].as_str().unwrap()), unscaled);
        // Variable scale: stripped trailing zeros, same value.
        let vs = after["u"]["scale"].as_i64().unwrap();
        let vu = decode_decimal(after["u"]["value"].as_str().unwrap());
        prop_assert!(vs <= i64::from(scale));
        prop_assert_eq!(vu * 10i128.pow((i64::from(scale) - vs) as u32), unscaled);
    }
}
