//! MySQL/MariaDB binlog row events → Arrow change batches: `tidemark_binlog::Decoder::decode`
//! over one transaction of rows events as a MySQL 8 server writes them (CRC32 footers, v2 rows,
//! ~8 KiB per rows event like `binlog_row_event_max_size`), built with the crate's test encoder.
//!
//! Cases: `narrow` (6 columns: bigint, int, decimal(10,2), varchar, timestamp(6), tinyint),
//! `wide` (30 columns of mixed types), `json` (id + 3 MySQL binary-JSON documents of ~400 bytes).
//! Throughput in rows/s (group `binlog_decode_rows`) and binlog bytes/s (`binlog_decode_bytes`).
//! `TIDEMARK_BENCH_CALLGRIND=<case>` decodes once inside `callgrind_target` for instruction
//! counts (`valgrind --tool=callgrind --toggle-collect='*callgrind_target*' <bench binary>`).

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use tidemark_binlog::encode::{bitmap_lsb, ColumnSpec, EventWriter, RowEncoder, TableMapSpec};
use tidemark_binlog::event::code;
use tidemark_binlog::table_map::ty;
use tidemark_binlog::{packed_decimal, Checksum, Decoder, DecoderOptions, Step};

#[derive(Clone, Copy)]
enum Shape {
    Narrow,
    Wide,
    Json,
}

const CASES: [(&str, Shape, usize); 3] = [
    ("narrow", Shape::Narrow, 20_000),
    ("wide", Shape::Wide, 4_000),
    ("json", Shape::Json, 4_000),
];

/// (type, meta, charset) and a value encoder for row `r`.
type Gen = (u8, u16, u16, fn(u64) -> Vec<u8>);

fn varchar(r: u64) -> Vec<u8> {
    let s = format!("customer name {r:08}");
    let mut b = vec![s.len() as u8];
    b.extend(s.as_bytes());
    b
}

fn json_doc(r: u64) -> Vec<u8> {
    let v = serde_json::json!({
        "id": r, "sku": format!("SKU-{r:06}"), "tags": ["a", "b", "c", r % 7],
        "price": 12.5, "stock": {"warehouse": "north", "qty": r % 100, "reserved": false},
        "notes": "lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor",
        "history": [{"at": 1_700_000_000u64 + r, "event": "created"}, {"at": 1_700_000_100u64 + r, "event": "shipped"}]
    });
    let b = tidemark_binlog::json::encode(&v);
    let mut out = (b.len() as u32).to_le_bytes().to_vec();
    out.extend(b);
    out
}

fn columns(shape: Shape) -> Vec<Gen> {
    let narrow: Vec<Gen> = vec![
        (ty::LONGLONG, 0, 0, |r| r.to_le_bytes().to_vec()),
        (ty::LONG, 0, 0, |r| (r as u32 % 1000).to_le_bytes().to_vec()),
        (ty::NEWDECIMAL, (10 << 8) | 2, 0, |r| {
            packed_decimal::encode(
                arrow_buffer::i256::from_i128(i128::from(r % 100_000_000)),
                10,
                2,
            )
        }),
        (ty::VARCHAR, 160, 45, varchar),
        (ty::TIMESTAMP2, 6, 0, |r| {
            let mut b = (1_700_000_000u32 + r as u32).to_be_bytes().to_vec();
            b.extend(&((r % 1_000_000) as u32).to_be_bytes()[1..]);
            b
        }),
        (ty::TINY, 0, 0, |r| vec![(r % 2) as u8]),
    ];
    match shape {
        Shape::Narrow => narrow,
        Shape::Wide => narrow.iter().cycle().take(30).cloned().collect(),
        Shape::Json => vec![
            (ty::LONGLONG, 0, 0, |r| r.to_le_bytes().to_vec()),
            (ty::JSON, 4, 0, json_doc),
            (ty::JSON, 4, 0, json_doc),
            (ty::JSON, 4, 0, json_doc),
        ],
    }
}

/// The events of one transaction of `rows` inserts, and their total size.
fn build(shape: Shape, rows: usize) -> (Vec<Vec<u8>>, usize) {
    let gens = columns(shape);
    let mut w = EventWriter::new(Checksum::Crc32);
    let table = TableMapSpec {
        table_id: 42,
        database: "shop".into(),
        table: "t".into(),
        columns: gens
            .iter()
            .enumerate()
            .map(|(i, g)| ColumnSpec::new(format!("c{i}"), g.0, g.1, g.2))
            .collect(),
        full_metadata: true,
    };
    let mut ev = vec![w.rotate(4, "binlog.000001"), w.format_description("8.0.36")];
    ev.push(w.mysql_gtid([9; 16], 1, 1_700_000_000_000_000));
    ev.push(w.query(7, "shop", "BEGIN"));
    ev.push(w.table_map(&table));
    let all = bitmap_lsb(&vec![true; gens.len()]);
    let mut re = RowEncoder::default();
    for r in 0..rows as u64 {
        let vals: Vec<Option<Vec<u8>>> = gens.iter().map(|g| Some((g.3)(r))).collect();
        re.image(&vals);
        if re.out.len() >= 8 * 1024 || r + 1 == rows as u64 {
            ev.push(w.rows(code::WRITE_ROWS_V2, 42, gens.len(), &all, None, &re.out));
            re.out.clear();
        }
    }
    ev.push(w.xid(1));
    let bytes = ev.iter().map(Vec::len).sum();
    (ev, bytes)
}

fn decode(events: &[Vec<u8>]) -> usize {
    let mut d = Decoder::new(DecoderOptions {
        max_chunk_rows: usize::MAX,
        ..Default::default()
    });
    d.set_checksum(Checksum::Crc32);
    let mut rows = 0;
    for e in events {
        for s in d.decode(e).expect("decodes") {
            if let Step::Emitted(t) = s {
                rows += t.row_count();
            }
        }
    }
    rows
}

fn bench(c: &mut Criterion) {
    for unit in ["rows", "bytes"] {
        let mut group = c.benchmark_group(format!("binlog_decode_{unit}"));
        group.sample_size(20);
        group.measurement_time(std::time::Duration::from_secs(3));
        for (name, shape, rows) in CASES {
            let (events, bytes) = build(shape, rows);
            assert_eq!(decode(&events), rows);
            group.throughput(if unit == "rows" {
                Throughput::Elements(rows as u64)
            } else {
                Throughput::Bytes(bytes as u64)
            });
            group.bench_with_input(BenchmarkId::from_parameter(name), &events, |b, ev| {
                b.iter(|| decode(ev))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);

#[inline(never)]
fn callgrind_target(events: &[Vec<u8>]) -> usize {
    decode(std::hint::black_box(events))
}

fn main() {
    if let Ok(case) = std::env::var("TIDEMARK_BENCH_CALLGRIND") {
        let (_, shape, rows) = CASES
            .into_iter()
            .find(|c| c.0 == case)
            .unwrap_or_else(|| panic!("no case {case}; one of narrow, wide, json"));
        let (events, bytes) = build(shape, rows);
        let n = callgrind_target(&events);
        println!("{case}: decoded {n} rows, {bytes} binlog bytes");
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
