//! pgoutput → Arrow change batches: `Decoder::decode` over one transaction of N inserts (the
//! bytes a walsender sends, built by the decoder's own test encoder), for a narrow (6 columns)
//! and a wide (30 columns) table, with values in pgoutput's text and binary format.
//!
//! Two throughputs per case: rows/s (group `pgoutput_decode_rows`) and pgoutput bytes/s
//! (group `pgoutput_decode_bytes`). Each iteration starts a fresh decoder (Relation first), as
//! after a connect. Figures and how to read them: `docs/benchmarks.md`.
//!
//! Instruction counts (repeatable, unlike times on a shared 2-core machine): run the bench
//! binary under callgrind with `TIDEMARK_BENCH_CALLGRIND=<case>` (e.g. `narrow_text`); it then
//! decodes the input once outside criterion inside `callgrind_target`, and
//! `--toggle-collect='*callgrind_target*'` counts only that (see `docs/benchmarks.md`).

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};

#[path = "pgoutput/input.rs"]
mod input;

use input::{build, decode, Format, Shape};

const CASES: [(&str, Shape, Format, usize); 4] = [
    ("narrow_text", Shape::Narrow, Format::Text, 10_000),
    ("narrow_binary", Shape::Narrow, Format::Binary, 10_000),
    ("wide_text", Shape::Wide, Format::Text, 2_000),
    ("wide_binary", Shape::Wide, Format::Binary, 2_000),
];

fn bench(c: &mut Criterion) {
    for (unit, group_name) in [
        ("rows", "pgoutput_decode_rows"),
        ("bytes", "pgoutput_decode_bytes"),
    ] {
        let mut group = c.benchmark_group(group_name);
        group.sample_size(20);
        group.measurement_time(std::time::Duration::from_secs(3));
        for (name, shape, format, rows) in CASES {
            let input = build(shape, format, rows);
            group.throughput(if unit == "rows" {
                Throughput::Elements(input.rows as u64)
            } else {
                Throughput::Bytes(input.bytes as u64)
            });
            group.bench_with_input(BenchmarkId::from_parameter(name), &input, |b, input| {
                b.iter(|| decode(input))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);

#[inline(never)]
fn callgrind_target(input: &input::Input) -> usize {
    std::hint::black_box(decode(std::hint::black_box(input))).row_count()
}

fn main() {
    if let Ok(case) = std::env::var("TIDEMARK_BENCH_CALLGRIND") {
        let (_, shape, format, rows) =
            CASES.into_iter().find(|c| c.0 == case).unwrap_or_else(|| {
                panic!("no case {case}; one of narrow_text, narrow_binary, wide_text, wide_binary")
            });
        let input = build(shape, format, rows);
        let n = callgrind_target(&input);
        println!("{case}: decoded {n} rows, {} pgoutput bytes", input.bytes);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
