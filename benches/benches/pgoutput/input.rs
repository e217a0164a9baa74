//! Inputs shared by `pgoutput_decode.rs` and `debezium_encode.rs`: one transaction of pgoutput
//! messages (Relation, Begin, N Inserts, Commit) for a narrow and a wide table, with the tuple
//! values in pgoutput's text or binary format, built with the decoder crate's own test encoder
//! (`tidemark_pgoutput::encode`), i.e. the bytes a PostgreSQL 15 walsender sends.

#![allow(dead_code)] // each bench file uses part of it

use tidemark_model::Transaction;
use tidemark_pgoutput::decoder::{Decoder, DecoderOptions, Step};
use tidemark_pgoutput::{
    encode, Begin, Commit, Message, Relation, RelationColumn, ReplicaIdentity, TupleValue,
};

/// Value format of the tuples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Binary,
}

/// The table shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// 6 columns like `tidemark generate`'s orders: int8, int8, text, numeric(12,2), int4,
    /// timestamptz.
    Narrow,
    /// 30 columns: 3 × (int4, int8, text, float8, bool, timestamptz, numeric(12,2), uuid, date,
    /// jsonb).
    Wide,
}

/// One encoded transaction.
pub struct Input {
    /// `(wal_start, pgoutput message)` in stream order.
    pub messages: Vec<(u64, Vec<u8>)>,
    pub rows: usize,
    /// pgoutput bytes of the whole transaction.
    pub bytes: usize,
}

const INT8: u32 = 20;
const INT4: u32 = 23;
const TEXT: u32 = 25;
const FLOAT8: u32 = 701;
const BOOL: u32 = 16;
const TIMESTAMPTZ: u32 = 1184;
const NUMERIC: u32 = 1700;
const UUID: u32 = 2950;
const DATE: u32 = 1082;
const JSONB: u32 = 3802;
/// numeric(12,2): ((12 << 16) | 2) + 4.
const NUMERIC_12_2: i32 = (12 << 16 | 2) + 4;

fn columns(shape: Shape) -> Vec<(String, u32, i32)> {
    match shape {
        Shape::Narrow => vec![
            ("id".into(), INT8, -1),
            ("customer_id".into(), INT8, -1),
            ("status".into(), TEXT, -1),
            ("amount".into(), NUMERIC, NUMERIC_12_2),
            ("quantity".into(), INT4, -1),
            ("created_at".into(), TIMESTAMPTZ, -1),
        ],
        Shape::Wide => {
            let mut cols = vec![("id".to_string(), INT8, -1)];
            let group = [
                ("i", INT4, -1),
                ("b", INT8, -1),
                ("t", TEXT, -1),
                ("f", FLOAT8, -1),
                ("o", BOOL, -1),
                ("ts", TIMESTAMPTZ, -1),
                ("n", NUMERIC, NUMERIC_12_2),
                ("u", UUID, -1),
                ("d", DATE, -1),
                ("j", JSONB, -1),
            ];
            for g in 0..3 {
                for (name, oid, typmod) in group {
                    cols.push((format!("{name}{g}"), oid, typmod));
                }
            }
            cols.truncate(30);
            cols
        }
    }
}

/// The value of column `oid` in row `row`, in `format`.
fn value(oid: u32, row: u64, format: Format) -> Vec<u8> {
    // µs since 2000-01-01 for 2024-02-29 13:45:30.123456 UTC, moved by the row number.
    let ts = 762_529_530_123_456i64 + row as i64 * 1_000_017;
    match (format, oid) {
        (Format::Text, INT8) => row.to_string().into_bytes(),
        (Format::Text, INT4) => ((row % 100_000) as i32).to_string().into_bytes(),
        (Format::Text, TEXT) => format!("status {} {}", row % 7, "x".repeat(24)).into_bytes(),
        (Format::Text, FLOAT8) => format!("{}", row as f64 * 0.25 + 0.125).into_bytes(),
        (Format::Text, BOOL) => {
            if row.is_multiple_of(2) {
                b"t".to_vec()
            } else {
                b"f".to_vec()
            }
        }
        (Format::Text, TIMESTAMPTZ) => format!(
            "2024-02-29 13:{:02}:{:02}.{:06}+00",
            row / 60 % 60,
            row % 60,
            row % 1_000_000
        )
        .into_bytes(),
        (Format::Text, NUMERIC) => format!("{}.{:02}", row % 100_000, row % 100).into_bytes(),
        (Format::Text, UUID) => format!("a0eebc99-9c0b-4ef8-bb6d-{:012x}", row).into_bytes(),
        (Format::Text, DATE) => {
            format!("2024-{:02}-{:02}", row % 12 + 1, row % 28 + 1).into_bytes()
        }
        (Format::Text, JSONB) => format!("{{\"k\": {}, \"v\": \"abc\"}}", row % 1000).into_bytes(),
        (Format::Binary, INT8) => (row as i64).to_be_bytes().to_vec(),
        (Format::Binary, INT4) => ((row % 100_000) as i32).to_be_bytes().to_vec(),
        (Format::Binary, TEXT) => value(TEXT, row, Format::Text),
        (Format::Binary, FLOAT8) => (row as f64 * 0.25 + 0.125).to_be_bytes().to_vec(),
        (Format::Binary, BOOL) => vec![u8::from(row.is_multiple_of(2))],
        (Format::Binary, TIMESTAMPTZ) => ts.to_be_bytes().to_vec(),
        (Format::Binary, NUMERIC) => {
            // ndigits, weight, sign, dscale, base-10000 digits: (row % 100000).(row % 100).
            let int = (row % 100_000) as i16;
            let frac = ((row % 100) * 100) as i16;
            let mut b = Vec::with_capacity(14);
            let digits: Vec<i16> = if int >= 10_000 {
                vec![int / 10_000, int % 10_000, frac]
            } else {
                vec![int, frac]
            };
            b.extend_from_slice(&(digits.len() as i16).to_be_bytes());
            b.extend_from_slice(&((digits.len() as i16) - 2).to_be_bytes());
            b.extend_from_slice(&0u16.to_be_bytes());
            b.extend_from_slice(&2u16.to_be_bytes());
            for d in digits {
                b.extend_from_slice(&d.to_be_bytes());
            }
            b
        }
        (Format::Binary, UUID) => {
            let mut u = [0xa0u8; 16];
            u[8..].copy_from_slice(&row.to_be_bytes());
            u.to_vec()
        }
        (Format::Binary, DATE) => (8_825i32 + (row % 365) as i32).to_be_bytes().to_vec(),
        (Format::Binary, JSONB) => {
            let mut b = vec![1u8];
            b.extend(value(JSONB, row, Format::Text));
            b
        }
        (_, other) => panic!("no bench value for oid {other}"),
    }
}

/// One transaction of `rows` inserts into a `shape` table, values in `format`.
pub fn build(shape: Shape, format: Format, rows: usize) -> Input {
    let cols = columns(shape);
    let relation = Relation {
        xid: None,
        oid: 16_384,
        namespace: "public",
        name: match shape {
            Shape::Narrow => "orders",
            Shape::Wide => "wide",
        },
        replica_identity: ReplicaIdentity::Default,
        columns: cols
            .iter()
            .enumerate()
            .map(|(i, (name, oid, typmod))| RelationColumn {
                flags: u8::from(i == 0),
                name,
                type_oid: *oid,
                type_modifier: *typmod,
            })
            .collect(),
    };
    let mut lsn = 0x1_0000_0000u64;
    let mut messages = vec![(lsn, encode::message(&Message::Relation(relation)))];
    let final_lsn = lsn + 1_000 * rows as u64;
    messages.push((
        lsn,
        encode::message(&Message::Begin(Begin {
            final_lsn,
            commit_timestamp: 762_529_530_123_456,
            xid: 4_242,
        })),
    ));
    for row in 0..rows as u64 {
        let values: Vec<Vec<u8>> = cols
            .iter()
            .map(|(_, oid, _)| value(*oid, row, format))
            .collect();
        let tuple: Vec<TupleValue<'_>> = values
            .iter()
            .map(|v| match format {
                Format::Text => TupleValue::Text(v),
                Format::Binary => TupleValue::Binary(v),
            })
            .collect();
        lsn += 200;
        messages.push((lsn, encode::insert(None, 16_384, &tuple)));
    }
    messages.push((
        final_lsn,
        encode::message(&Message::Commit(Commit {
            flags: 0,
            commit_lsn: final_lsn,
            end_lsn: final_lsn + 48,
            commit_timestamp: 762_529_530_123_456,
        })),
    ));
    let bytes = messages.iter().map(|(_, m)| m.len()).sum();
    Input {
        messages,
        rows,
        bytes,
    }
}

/// Decodes `input` with a fresh decoder (as after a connect: Relation first) into its
/// transaction: the measured path of `pgoutput_decode`.
pub fn decode(input: &Input) -> Transaction {
    let mut decoder = Decoder::new(DecoderOptions {
        protocol: 3,
        ..DecoderOptions::default()
    });
    let mut out = None;
    for (lsn, data) in &input.messages {
        match decoder.decode(*lsn, data).expect("bench input decodes") {
            Step::Emitted(txn) => out = Some(txn),
            Step::Nothing => {}
            _ => panic!("unexpected step"),
        }
    }
    out.expect("the commit emits the transaction")
}
