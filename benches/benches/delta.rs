//! The Delta sink's real write path on the local file system: `DeltaSink::write` + `flush`
//! (encode, MERGE or append, Parquet files, a Delta commit with the `txn` action), one
//! transaction per iteration.
//!
//! - `delta/changelog_append/{100,10000}`: a transaction of N inserts appended to a changelog
//!   table. Time per iteration = commit latency for N rows; throughput = rows/s.
//! - `delta/mirror_merge/{100,10000}`: N changes (70 % updates of existing keys, 20 % inserts,
//!   10 % deletes) MERGEd into a mirror table of 100 000 rows with Change Data Feed on.
//!
//! Run: `cargo bench -p tidemark-benches --bench delta`; figures in docs/benchmarks.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tidemark_delta::{DeltaSink, DeltaSinkConfig, TableMode};
use tidemark_model::{
    ChangeBatchBuilder, Column, Image, Lsn, Op, PgPosition, Position, Sink, SourceType, TableId,
    TableSchema, Transaction, TxnItem,
};

const TABLE_ROWS: i64 = 100_000;

fn schema() -> Arc<TableSchema> {
    TableSchema::new(
        TableId::new("bench", "orders"),
        1,
        vec![
            Column::postgres("id", SourceType::pg(20, "int8", -1), false, true),
            Column::postgres("status", SourceType::pg(25, "text", -1), false, false),
            Column::postgres(
                "amount",
                SourceType::pg(1700, "numeric", ((12 << 16) | 2) + 4),
                false,
                false,
            ),
            Column::postgres("payload", SourceType::pg(25, "text", -1), true, false),
        ],
    )
}

/// One transaction at `lsn` of `(op, id)` rows.
fn txn(schema: &Arc<TableSchema>, lsn: u64, rows: &[(Op, i64)]) -> Arc<Transaction> {
    let mut b = ChangeBatchBuilder::new(schema.clone(), rows.len());
    let payload = "x".repeat(64);
    for (i, (op, id)) in rows.iter().enumerate() {
        let p = Position::pg(Lsn(lsn), Lsn(lsn), i as u32);
        b.begin_row(*op, &p, Some(lsn), Some(1_700_000_000_000_000))
            .unwrap();
        let id_text = id.to_string();
        let amount = format!("{}.{:02}", id % 1000, id % 100);
        match op {
            Op::Delete => {
                b.append_text(Image::Before, 0, id_text.as_bytes()).unwrap();
                for c in 1..4 {
                    b.append_null(Image::Before, c).unwrap();
                }
                b.image_null(Image::After).unwrap();
            }
            _ => {
                b.image_null(Image::Before).unwrap();
                b.append_text(Image::After, 0, id_text.as_bytes()).unwrap();
                b.append_text(Image::After, 1, b"paid").unwrap();
                b.append_text(Image::After, 2, amount.as_bytes()).unwrap();
                b.append_text(Image::After, 3, payload.as_bytes()).unwrap();
            }
        }
        b.finish_row().unwrap();
    }
    let mut t = Transaction::new(
        Some(lsn),
        Some(1_700_000_000_000_000),
        Position::from(PgPosition::end(Lsn(lsn), Lsn(lsn + 1))),
    );
    t.items.push(TxnItem::Rows(b.finish().unwrap()));
    Arc::new(t)
}

fn sink(dir: &std::path::Path, mode: TableMode) -> DeltaSink {
    let mut c = DeltaSinkConfig::new(dir.display().to_string());
    c.mode = mode;
    c.flush.max_rows = usize::MAX;
    c.flush.interval = Duration::from_secs(3600);
    DeltaSink::new(c, "bench").unwrap()
}

/// Writes and commits one transaction; the time it took.
fn commit(rt: &tokio::runtime::Runtime, sink: &mut DeltaSink, t: Arc<Transaction>) -> Duration {
    let start = Instant::now();
    rt.block_on(async {
        sink.write(t).await.unwrap();
        sink.flush().await.unwrap();
    });
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = schema();
    let mut g = c.benchmark_group("delta");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    for n in [100usize, 10_000] {
        g.throughput(Throughput::Elements(n as u64));
        let dir = tempfile::tempdir().unwrap();
        let mut log = sink(dir.path(), TableMode::Changelog);
        let mut lsn = 1u64;
        let mut next_id = 0i64;
        g.bench_with_input(BenchmarkId::new("changelog_append", n), &n, |b, &n| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let rows: Vec<(Op, i64)> =
                        (0..n as i64).map(|k| (Op::Insert, next_id + k)).collect();
                    next_id += n as i64;
                    lsn += 10;
                    total += commit(&rt, &mut log, txn(&s, lsn, &rows));
                }
                total
            })
        });

        let dir = tempfile::tempdir().unwrap();
        let mut mirror = sink(dir.path(), TableMode::Mirror);
        let initial: Vec<(Op, i64)> = (0..TABLE_ROWS).map(|k| (Op::Insert, k)).collect();
        rt.block_on(async {
            mirror.write(txn(&s, 1, &initial)).await.unwrap();
            mirror.flush().await.unwrap();
        });
        let mut lsn = 10u64;
        let mut next_id = TABLE_ROWS;
        let mut cursor = 0i64;
        g.bench_with_input(BenchmarkId::new("mirror_merge", n), &n, |b, &n| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let mut rows = Vec::with_capacity(n);
                    for k in 0..n {
                        let op = match k % 10 {
                            0 => Op::Delete,
                            1 | 2 => Op::Insert,
                            _ => Op::Update,
                        };
                        let id = if op == Op::Insert {
                            next_id += 1;
                            next_id
                        } else {
                            cursor = (cursor + 7919) % next_id;
                            cursor
                        };
                        rows.push((op, id));
                    }
                    lsn += 10;
                    total += commit(&rt, &mut mirror, txn(&s, lsn, &rows));
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
