//! Shared helpers: feed event streams to a decoder, and print decoded transactions as text.

#![allow(dead_code)]

use arrow_array::Array;
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use tidemark_binlog::{Decoder, DecoderOptions, Step};
use tidemark_model::{Image, Transaction, TxnItem};

/// A fixture: binlog file name, start offset, FDE + events.
pub struct Fixture {
    pub file: String,
    pub start: u64,
    pub events: Vec<Vec<u8>>,
}

pub fn load(name: &str) -> Fixture {
    let path = format!("{}/tests/fixtures/{name}.bin", env!("CARGO_MANIFEST_DIR"));
    let b = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let n = u16::from_le_bytes([b[0], b[1]]) as usize;
    let file = String::from_utf8(b[2..2 + n].to_vec()).unwrap();
    let start = u64::from_le_bytes(b[2 + n..10 + n].try_into().unwrap());
    Fixture {
        file,
        start,
        events: split_events(&b[10 + n..]),
    }
}

/// Splits concatenated events by their `event_size`.
pub fn split_events(mut b: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while b.len() >= 19 {
        let size = u32::from_le_bytes(b[9..13].try_into().unwrap()) as usize;
        let (ev, rest) = b.split_at(size.min(b.len()));
        out.push(ev.to_vec());
        b = rest;
    }
    out
}

/// Decodes every event; returns the steps.
pub fn decode_all(d: &mut Decoder, events: &[Vec<u8>]) -> Vec<Step> {
    let mut out = Vec::new();
    for e in events {
        out.extend(d.decode(e).unwrap_or_else(|err| panic!("{err}")));
    }
    out
}

pub fn decoder_for(f: &Fixture, db: &'static str) -> Decoder {
    let mut d = Decoder::new(DecoderOptions::default());
    d.set_file(&f.file).unwrap();
    d.set_filter(move |t| t.namespace == db);
    d
}

/// One line per row: `op table vN position | before | after | markers`, plus DDL lines.
pub fn dump(steps: &[Step]) -> String {
    let mut s = String::new();
    for st in steps {
        match st {
            Step::Emitted(t) => dump_txn(t, &mut s),
            Step::Ddl {
                database,
                query,
                end,
            } if database.starts_with("tidemark") => {
                s.push_str(&format!(
                    "DDL {database} {end}: {}\n",
                    query.replace('\n', " ")
                ));
            }
            _ => {}
        }
    }
    s
}

pub fn dump_txn(t: &Transaction, s: &mut String) {
    if t.items.is_empty() {
        return;
    }
    s.push_str(&format!("TXN end={} complete={}\n", t.end, t.complete));
    let opts = FormatOptions::default().with_null("NULL");
    for item in &t.items {
        let TxnItem::Rows(b) = item else { continue };
        for row in 0..b.num_rows() {
            s.push_str(&format!(
                "  {} {} v{} {}",
                b.op(row).debezium_code(),
                b.schema.table,
                b.schema.version,
                b.position(row)
            ));
            for (img, col) in [(Image::Before, 4), (Image::After, 5)] {
                let st = b
                    .batch
                    .column(col)
                    .as_any()
                    .downcast_ref::<arrow_array::StructArray>()
                    .unwrap();
                s.push_str(&format!(" | {img}:"));
                if st.is_null(row) {
                    s.push_str(" NULL");
                    continue;
                }
                for (i, f) in b.schema.columns.iter().enumerate() {
                    let mut arr = st.column(i).clone();
                    if let arrow_schema::DataType::Timestamp(u, Some(_)) = arr.data_type() {
                        // Print UTC instants as naive + Z (no chrono-tz here).
                        arr = arrow_cast::cast(&arr, &arrow_schema::DataType::Timestamp(*u, None))
                            .unwrap();
                    }
                    let fmt = ArrayFormatter::try_new(arr.as_ref(), &opts).unwrap();
                    let m = b.marker(row, img, i);
                    let v = match m {
                        Some(m) => format!(
                            "{}<{:?} {}>",
                            fmt.value(row),
                            m.kind,
                            m.detail.unwrap_or_default()
                        ),
                        None => fmt.value(row).to_string(),
                    };
                    s.push_str(&format!(" {}={}", f.name, v));
                }
            }
            s.push('\n');
        }
    }
}
