//! Arrow change batches → Debezium JSON records: `DebeziumEncoder::encode_transaction` (key and
//! value documents, default Debezium settings, schemas off) over the transactions that
//! `pgoutput_decode` decodes (narrow: 6 columns, wide: 30 columns; `narrow_schemas`: the narrow
//! transaction with `schemas.enable=true`, each key and value wrapped with its Connect schema).
//! Throughput in rows/s
//! (group `debezium_encode_rows`) and JSON bytes/s (`debezium_encode_bytes`). The same
//! `TIDEMARK_BENCH_CALLGRIND=<case>` switch as `pgoutput_decode` runs one encode inside
//! `callgrind_target` for instruction counts.

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use tidemark_debezium::{DebeziumEncoder, EncoderOptions};
use tidemark_model::Transaction;

#[path = "pgoutput/input.rs"]
mod input;

use input::{build, decode, Format, Shape};

/// (name, table shape, rows, `schemas.enable`).
const CASES: [(&str, Shape, usize, bool); 3] = [
    ("narrow", Shape::Narrow, 10_000, false),
    ("wide", Shape::Wide, 2_000, false),
    ("narrow_schemas", Shape::Narrow, 10_000, true),
];

fn encode(encoder: &mut DebeziumEncoder, txn: &Transaction) -> usize {
    let mut bytes = 0;
    encoder
        .encode_transaction(txn, &mut |r| {
            bytes += r.key.as_ref().map_or(0, Vec::len) + r.value.as_ref().map_or(0, Vec::len)
        })
        .expect("encodes");
    bytes
}

fn encoder(schemas_enable: bool) -> DebeziumEncoder {
    let opts = EncoderOptions {
        schemas_enable,
        ..EncoderOptions::new("tm", "shop")
    };
    DebeziumEncoder::new(opts).with_clock(|| 1_700_000_000_000_000_000)
}

fn bench(c: &mut Criterion) {
    for unit in ["rows", "bytes"] {
        let mut group = c.benchmark_group(format!("debezium_encode_{unit}"));
        group.sample_size(20);
        group.measurement_time(std::time::Duration::from_secs(3));
        for (name, shape, rows, schemas) in CASES {
            let txn = decode(&build(shape, Format::Text, rows));
            let mut enc = encoder(schemas);
            let json_bytes = encode(&mut enc, &txn);
            group.throughput(if unit == "rows" {
                Throughput::Elements(txn.row_count() as u64)
            } else {
                Throughput::Bytes(json_bytes as u64)
            });
            group.bench_with_input(BenchmarkId::from_parameter(name), &txn, |b, txn| {
                b.iter(|| encode(&mut enc, txn))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);

#[inline(never)]
fn callgrind_target(enc: &mut DebeziumEncoder, txn: &Transaction) -> usize {
    std::hint::black_box(encode(enc, std::hint::black_box(txn)))
}

fn main() {
    if let Ok(case) = std::env::var("TIDEMARK_BENCH_CALLGRIND") {
        let (_, shape, rows, schemas) = CASES
            .into_iter()
            .find(|c| c.0 == case)
            .unwrap_or_else(|| panic!("no case {case}; one of narrow, wide, narrow_schemas"));
        let txn = decode(&build(shape, Format::Text, rows));
        let mut enc = encoder(schemas);
        let n = callgrind_target(&mut enc, &txn);
        println!(
            "{case}: encoded {} rows into {n} JSON bytes",
            txn.row_count()
        );
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
