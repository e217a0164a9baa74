//! Iceberg sink throughput on the standard workload (100k inserts, 50k updates, 25k deletes)
//! into a mirror table and a changelog table, and the read cost the deletes leave (pyiceberg
//! scan time before and after compaction).
//!
//! Not a criterion loop: one run of the whole workload is seconds long and the figure we want
//! is rows/s of the real sink path (encode → Parquet → manifests → SQLite catalog commit), so
//! it runs the workload `RUNS` times and prints the best and median. Transactions of 1,000
//! changes; a commit every 20,000 changes (the sink's own policy). Run with
//! `cargo bench -p tidemark-benches --bench iceberg`; figures go to docs/benchmarks.md.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use tidemark_iceberg::testkit::{Change, Workload};
use tidemark_iceberg::{maintenance, IcebergSink, IcebergSinkConfig, Mode, TableIdent};
use tidemark_model::{Sink, TableId, Transaction};

const RUNS: usize = 3;
const TXN: i64 = 1_000;

fn workload() -> Vec<Arc<Transaction>> {
    let mut w = Workload::new(TableId::new("public", "bench"));
    let mut out = Vec::new();
    for s in (0..100_000).step_by(TXN as usize) {
        out.push(w.txn(&(s..s + TXN).map(Change::Insert).collect::<Vec<_>>()));
    }
    for s in (0..50_000).step_by(TXN as usize) {
        out.push(
            w.txn(
                &(s..s + TXN)
                    .map(|i| Change::Update(i * 2, false))
                    .collect::<Vec<_>>(),
            ),
        );
    }
    for s in (0..25_000).step_by(TXN as usize) {
        out.push(
            w.txn(
                &(s..s + TXN)
                    .map(|i| Change::Delete(i * 4 + 1))
                    .collect::<Vec<_>>(),
            ),
        );
    }
    out
}

fn config(dir: &Path, mode: Mode) -> IcebergSinkConfig {
    let mut c = IcebergSinkConfig::sqlite(
        &dir.join("catalog.db").display().to_string(),
        &dir.join("warehouse").display().to_string(),
    );
    c.mode = mode;
    c.namespace = Some("bench".into());
    c.commit.max_rows = 20_000;
    c
}

fn pyiceberg_scan_seconds(dir: &Path) -> Option<f64> {
    let py = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scripts/lake-readers.sh"
        ))
        .output()
        .ok()?;
    let py = String::from_utf8_lossy(&py.stdout).trim().to_string();
    let out = Command::new(py)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scripts/iceberg_compare.py"
        ))
        .args([
            "--catalog-uri",
            &format!("sqlite:///{}", dir.join("catalog.db").display()),
        ])
        .args(["--table", "bench.bench"])
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["seconds"].as_f64()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let txns = workload();
    let changes: usize = txns.iter().map(|t| t.row_count()).sum();
    for mode in [Mode::Mirror, Mode::Changelog] {
        let mut secs = Vec::new();
        let mut last_dir = None;
        for _ in 0..RUNS {
            let dir = std::env::temp_dir().join(format!("tm-ice-bench-{}", rand_suffix()));
            std::fs::create_dir_all(&dir).expect("dir");
            let t = rt.block_on(async {
                let mut sink = IcebergSink::new(config(&dir, mode)).await.expect("sink");
                let start = Instant::now();
                for t in &txns {
                    sink.write(t.clone()).await.expect("write");
                }
                sink.flush().await.expect("flush");
                start.elapsed().as_secs_f64()
            });
            secs.push(t);
            if let Some(old) = last_dir.replace(dir) {
                let _ = std::fs::remove_dir_all(old);
            }
        }
        secs.sort_by(|a, b| a.total_cmp(b));
        println!(
            "iceberg {mode:?}: {changes} changes, best {:.2}s ({:.0} changes/s), median {:.2}s ({:.0} changes/s)",
            secs[0],
            changes as f64 / secs[0],
            secs[RUNS / 2],
            changes as f64 / secs[RUNS / 2]
        );
        let dir = last_dir.expect("a run");
        if mode == Mode::Mirror {
            let before = pyiceberg_scan_seconds(&dir);
            rt.block_on(async {
                let sink = IcebergSink::new(config(&dir, mode)).await.expect("sink");
                let ident = TableIdent {
                    namespace: "bench".into(),
                    name: "bench".into(),
                };
                let t = sink
                    .catalog()
                    .load(&ident)
                    .await
                    .expect("load")
                    .expect("table");
                let start = Instant::now();
                maintenance::compact(sink.catalog(), &t, 128 << 20)
                    .await
                    .expect("compact");
                println!("iceberg compaction: {:.2}s", start.elapsed().as_secs_f64());
            });
            let after = pyiceberg_scan_seconds(&dir);
            println!("pyiceberg scan of the mirror (75k rows): before compaction {before:?} s, after {after:?} s");
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn rand_suffix() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    )
}
