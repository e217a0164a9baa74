//! The sink end to end on local files (SQLite catalog, local warehouse), read back with
//! iceberg-rust's own scan: mirror semantics, restart and replay, compaction, changelog.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, RecordBatch};
use tidemark_model::{Position, Sink, TableId};

use crate::testkit::{Change::*, Workload};
use crate::{maintenance, IcebergSink, IcebergSinkConfig, Mode, TableIdent};

struct Dir(std::path::PathBuf);

impl Dir {
    fn new() -> Self {
        let d = std::env::temp_dir().join(format!("tm-ice-unit-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
    fn config(&self, mode: Mode) -> IcebergSinkConfig {
        let mut c = IcebergSinkConfig::sqlite(
            &self.0.join("catalog.db").display().to_string(),
            &self.0.join("warehouse").display().to_string(),
        );
        c.mode = mode;
        c.namespace = Some("lake".into());
        c.target_file_size_bytes = 1 << 20;
        c
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

async fn rows(sink: &IcebergSink, name: &str) -> Vec<RecordBatch> {
    let ident = TableIdent {
        namespace: "lake".into(),
        name: name.into(),
    };
    let t = sink.catalog().load(&ident).await.unwrap().unwrap();
    maintenance::scan_all(sink.catalog(), &t).await.unwrap()
}

/// id → column b.
fn table_state(batches: &[RecordBatch]) -> BTreeMap<i64, Option<String>> {
    let mut out = BTreeMap::new();
    for b in batches {
        let id = b.column_by_name("id").unwrap().as_primitive::<Int64Type>();
        let v = b.column_by_name("b").unwrap().as_string::<i32>();
        for i in 0..b.num_rows() {
            let prev = out.insert(id.value(i), v.is_valid(i).then(|| v.value(i).to_owned()));
            assert!(prev.is_none(), "duplicate key {}", id.value(i));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn mirror_applies_upserts_deletes_rekeys_truncates_and_toast() {
    mirror_semantics(2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mirror_v3_applies_upserts_deletes_rekeys_truncates_and_toast() {
    mirror_semantics(3).await;
}

async fn mirror_semantics(format_version: u8) {
    let dir = Dir::new();
    let mut cfg = dir.config(Mode::Mirror);
    cfg.format_version = format_version;
    let mut sink = IcebergSink::new(cfg).await.unwrap();
    let mut w = Workload::new(TableId::new("public", "t"));
    let t1 = w.txn(&[Insert(1), Insert(2), Insert(3), Insert(4)]);
    let lsn1 = w.lsn;
    sink.write(t1.clone()).await.unwrap();
    assert_eq!(sink.committed(), None, "nothing acked before a commit");
    assert_eq!(sink.flush().await.unwrap(), Some(t1.end));
    // Unchanged TOAST keeps the stored value; a rekey moves the row; same-txn insert+delete.
    let t2 = w.txn(&[
        Update(1, true),
        Update(2, false),
        Rekey(3, 30),
        Delete(4),
        Insert(5),
        Update(5, true),
        Insert(6),
        Delete(6),
    ]);
    let lsn2 = w.lsn;
    sink.write(t2.clone()).await.unwrap();
    sink.flush().await.unwrap();
    let got = table_state(&rows(&sink, "t").await);
    let want: BTreeMap<i64, Option<String>> = [
        (1, Some(Workload::b(1, lsn1))),
        (2, Some(Workload::b(2, lsn2))),
        (30, Some(Workload::b(30, lsn2))),
        (5, Some(Workload::b(5, lsn2))),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, want);
    // TOAST from a committed file after the file was rolled, then truncate + insert in one txn.
    sink.write(w.txn(&[Update(30, true)])).await.unwrap();
    sink.flush().await.unwrap();
    assert_eq!(
        table_state(&rows(&sink, "t").await)[&30],
        Some(Workload::b(30, lsn2))
    );
    sink.write(w.txn(&[Insert(7), Truncate, Insert(8)]))
        .await
        .unwrap();
    sink.flush().await.unwrap();
    let got = table_state(&rows(&sink, "t").await);
    assert_eq!(got.keys().copied().collect::<Vec<_>>(), vec![8]);
}

#[tokio::test(flavor = "multi_thread")]
async fn unchanged_toast_resolves_across_transactions_of_one_commit() {
    // Several source transactions before one commit (the Kafka source's batches, or a commit
    // interval): an update whose TOAST column is unchanged takes the value of the row an
    // earlier transaction of the same commit wrote, still in an open data file.
    let dir = Dir::new();
    let mut sink = IcebergSink::new(dir.config(Mode::Mirror)).await.unwrap();
    let mut w = Workload::new(TableId::new("public", "t"));
    let t1 = w.txn(&[Insert(1), Insert(2)]);
    let lsn1 = w.lsn;
    let t2 = w.txn(&[Update(1, true)]);
    let t3 = w.txn(&[Rekey(2, 20), Update(20, true), Update(1, true)]);
    let lsn3 = w.lsn;
    for t in [t1, t2, t3.clone()] {
        sink.write(t).await.unwrap();
    }
    assert_eq!(sink.flush().await.unwrap(), Some(t3.end));
    let got = table_state(&rows(&sink, "t").await);
    let want: BTreeMap<i64, Option<String>> = [
        (1, Some(Workload::b(1, lsn1))),
        (20, Some(Workload::b(20, lsn3))),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_skips_what_the_table_has_and_rebuilds_the_index() {
    let dir = Dir::new();
    let mut w = Workload::new(TableId::new("public", "t"));
    let txns: Vec<_> = (0..6)
        .map(|i| {
            w.txn(&[
                Insert(i * 10),
                Insert(i * 10 + 1),
                Update(0, i % 2 == 0),
                Delete(i * 10 + 1),
            ])
        })
        .collect();
    {
        let mut sink = IcebergSink::new(dir.config(Mode::Mirror)).await.unwrap();
        for t in &txns[..4] {
            sink.write(t.clone()).await.unwrap();
        }
        sink.flush().await.unwrap();
        // Written but never committed (a crash): files on disk, no snapshot.
        sink.write(txns[4].clone()).await.unwrap();
    }
    let mut sink = IcebergSink::new(dir.config(Mode::Mirror)).await.unwrap();
    // Replay from an older checkpoint: the first four are skipped, the rest applied once.
    for t in &txns {
        sink.write(t.clone()).await.unwrap();
    }
    let last: Option<Position> = sink.flush().await.unwrap();
    assert_eq!(last, Some(txns[5].end));
    let got = table_state(&rows(&sink, "t").await);
    assert_eq!(
        got.keys().copied().collect::<Vec<_>>(),
        vec![0, 10, 20, 30, 40, 50]
    );
    // The index rebuilt from files + deletes: updating every key leaves no duplicate.
    let all: Vec<_> = got.keys().map(|k| Update(*k, false)).collect();
    sink.write(w.txn(&all)).await.unwrap();
    sink.flush().await.unwrap();
    assert_eq!(table_state(&rows(&sink, "t").await).len(), 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn compaction_applies_deletes_and_expiry_keeps_the_table() {
    let dir = Dir::new();
    let mut sink = IcebergSink::new(dir.config(Mode::Mirror)).await.unwrap();
    let mut w = Workload::new(TableId::new("public", "t"));
    for i in 0..5 {
        sink.write(w.txn(&[Insert(i), Update(0, false), Delete(i - 1)]))
            .await
            .unwrap();
        sink.flush().await.unwrap();
    }
    let before = table_state(&rows(&sink, "t").await);
    let ident = TableIdent {
        namespace: "lake".into(),
        name: "t".into(),
    };
    let t = sink.catalog().load(&ident).await.unwrap().unwrap();
    let (t2, stats) = maintenance::compact(sink.catalog(), &t, 1 << 20)
        .await
        .unwrap()
        .unwrap();
    assert!(stats.removed_files >= 5, "{stats:?}");
    let entries = crate::commit::snapshot::live_entries(&sink.catalog().file_io, &t2)
        .await
        .unwrap();
    assert!(entries
        .iter()
        .all(|e| !crate::table::TableState::is_delete(&e.data_file)));
    assert_eq!(
        table_state(&maintenance::scan_all(sink.catalog(), &t2).await.unwrap()),
        before
    );
    let (t3, ex) = maintenance::expire(sink.catalog(), &t2, std::time::Duration::ZERO, 1)
        .await
        .unwrap();
    assert!(ex.snapshots_removed >= 4 && ex.files_deleted > 0, "{ex:?}");
    assert_eq!(
        table_state(&maintenance::scan_all(sink.catalog(), &t3).await.unwrap()),
        before
    );
    assert_eq!(
        crate::commit::snapshot::recorded_position(&t3).as_deref(),
        crate::commit::snapshot::recorded_position(&t).as_deref()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn changelog_appends_one_row_per_change() {
    let dir = Dir::new();
    let mut cfg = dir.config(Mode::Changelog);
    cfg.tables.insert(
        "public.t".into(),
        crate::config::TableConfig {
            partition: vec!["day(_commit_ts)".into()],
            ..Default::default()
        },
    );
    let mut sink = IcebergSink::new(cfg).await.unwrap();
    let mut w = Workload::new(TableId::new("public", "t"));
    sink.write(w.txn(&[Insert(1), Update(1, true), Delete(1), Truncate]))
        .await
        .unwrap();
    sink.flush().await.unwrap();
    let batches = rows(&sink, "t").await;
    let n: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(n, 4);
    let b = &batches[0];
    let ops: Vec<&str> = (0..b.num_rows())
        .map(|i| b.column_by_name("_op").unwrap().as_string::<i32>().value(i))
        .collect();
    assert_eq!(ops, vec!["c", "u", "d", "t"]);
    let unchanged = b.column_by_name("_unchanged").unwrap().as_list::<i32>();
    assert!(unchanged.is_null(0) && !unchanged.is_null(1));
    let _ = Arc::new(());
}

/// The live deletion vectors of the table: referenced data file → (Puffin path, positions).
async fn live_dvs(sink: &IcebergSink) -> BTreeMap<String, (String, Vec<u64>)> {
    let ident = TableIdent {
        namespace: "lake".into(),
        name: "t".into(),
    };
    let t = sink.catalog().load(&ident).await.unwrap().unwrap();
    assert_eq!(
        t.metadata.format_version(),
        iceberg::spec::FormatVersion::V3
    );
    let mut out = BTreeMap::new();
    for e in crate::commit::snapshot::live_entries(&sink.catalog().file_io, &t)
        .await
        .unwrap()
    {
        if crate::table::TableState::is_delete(&e.data_file) {
            assert!(
                crate::dv::is_dv(&e.data_file),
                "a Parquet delete file in v3"
            );
            let bm = crate::dv::read_dv(&sink.catalog().file_io, &e.data_file)
                .await
                .unwrap();
            let prev = out.insert(
                e.data_file.referenced_data_file().unwrap(),
                (e.file_path().to_owned(), bm.iter().collect()),
            );
            assert!(prev.is_none(), "two live DVs for one data file");
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn v3_deletion_vectors_merge_across_commits_and_restart() {
    let dir = Dir::new();
    let mut cfg = dir.config(Mode::Mirror);
    cfg.format_version = 3;
    let mut w = Workload::new(TableId::new("public", "t"));
    let mut sink = IcebergSink::new(cfg.clone()).await.unwrap();
    sink.write(w.txn(&(0..10).map(Insert).collect::<Vec<_>>()))
        .await
        .unwrap();
    sink.flush().await.unwrap();
    // Rows 0..10 are positions 0..10 of one data file; update two of them per commit.
    for i in 0..3 {
        sink.write(w.txn(&[Update(2 * i, false), Update(2 * i + 1, true)]))
            .await
            .unwrap();
        sink.flush().await.unwrap();
        let dvs = live_dvs(&sink).await;
        let first: Vec<_> = dvs
            .values()
            .filter(|(_, p)| p.len() as i64 >= 2 * (i + 1))
            .collect();
        assert_eq!(first.len(), 1, "one merged DV of the first file: {dvs:?}");
        assert_eq!(first[0].1, (0..2 * (i as u64 + 1)).collect::<Vec<_>>());
    }
    let before = table_state(&rows(&sink, "t").await);
    assert_eq!(before.len(), 10);
    drop(sink);
    // A restart reads the DVs back: more updates of rows of the same files merge with them.
    let mut sink = IcebergSink::new(cfg.clone()).await.unwrap();
    sink.write(w.txn(&[Update(9, false), Update(0, false), Delete(8)]))
        .await
        .unwrap();
    sink.flush().await.unwrap();
    let dvs = live_dvs(&sink).await;
    // The first file: positions 0..6 before the restart, then 8 and 9; the file of the
    // first update commit: row 0 (its position 0).
    let mut sizes: Vec<usize> = dvs.values().map(|(_, p)| p.len()).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, vec![1, 8], "{dvs:?}");
    // Every Puffin file that is live holds live blobs only.
    let mut per_puffin: BTreeMap<&str, usize> = BTreeMap::new();
    for (p, _) in dvs.values() {
        *per_puffin.entry(p.as_str()).or_default() += 1;
    }
    for (p, n) in per_puffin {
        let reader =
            iceberg::puffin::PuffinReader::new(sink.catalog().file_io.new_input(p).unwrap());
        assert_eq!(
            reader.file_metadata().await.unwrap().blobs().len(),
            n,
            "{p}"
        );
    }
    let got = table_state(&rows(&sink, "t").await);
    assert_eq!(got.len(), 9);
    assert!(!got.contains_key(&8));
    // Compaction applies the DVs and removes them; the table reads the same.
    let ident = TableIdent {
        namespace: "lake".into(),
        name: "t".into(),
    };
    let t = sink.catalog().load(&ident).await.unwrap().unwrap();
    let (t2, _) = maintenance::compact(sink.catalog(), &t, 1 << 20)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        table_state(&maintenance::scan_all(sink.catalog(), &t2).await.unwrap()),
        got
    );
    assert!(live_dvs(&sink).await.is_empty());
    // Row lineage: every snapshot has a row range and next-row-id is past the last one.
    let md = &t2.metadata;
    let last = md.current_snapshot().unwrap().row_range().unwrap();
    assert_eq!(md.next_row_id(), last.0 + last.1);
    assert!(md.snapshots().all(|s| s.row_range().is_some()));
}

/// Issue 8: a v2 table reopened with `format_version = 3` is upgraded in place. The first DV
/// of a data file holds its Parquet position deletes; a position delete file covering two
/// data files is replaced whole (both get a DV, its entry goes in the same snapshot).
#[tokio::test(flavor = "multi_thread")]
async fn v2_table_upgrades_to_v3_and_dvs_take_over_position_deletes() {
    let dir = Dir::new();
    let cfg = dir.config(Mode::Mirror);
    assert_eq!(cfg.format_version, 2);
    let mut w = Workload::new(TableId::new("public", "t"));
    let mut sink = IcebergSink::new(cfg.clone()).await.unwrap();
    // Two data files (rows 0..10, rows 10..20), then one position delete file for both.
    for lo in [0, 10] {
        sink.write(w.txn(&(lo..lo + 10).map(Insert).collect::<Vec<_>>()))
            .await
            .unwrap();
        sink.flush().await.unwrap();
    }
    sink.write(w.txn(&[Delete(0), Delete(10)])).await.unwrap();
    sink.flush().await.unwrap();
    drop(sink);
    let ident = TableIdent {
        namespace: "lake".into(),
        name: "t".into(),
    };
    let mut cfg3 = cfg.clone();
    cfg3.format_version = 3;
    let mut sink = IcebergSink::new(cfg3.clone()).await.unwrap();
    sink.write(w.txn(&[Update(1, false)])).await.unwrap();
    sink.flush().await.unwrap();
    let t = sink.catalog().load(&ident).await.unwrap().unwrap();
    assert_eq!(
        t.metadata.format_version(),
        iceberg::spec::FormatVersion::V3
    );
    // live_dvs also asserts that no Parquet delete file is left.
    let dvs = live_dvs(&sink).await;
    let mut got: Vec<Vec<u64>> = dvs.values().map(|(_, p)| p.clone()).collect();
    got.sort();
    assert_eq!(got, vec![vec![0], vec![0, 1]], "{dvs:?}");
    let state = table_state(&rows(&sink, "t").await);
    assert_eq!(state.len(), 18);
    assert!(!state.contains_key(&0) && !state.contains_key(&10));
    // Row lineage from the first v3 snapshot on: the v2 files' manifests got row ids too.
    let md = &t.metadata;
    let current = md.current_snapshot().unwrap();
    let (first, added) = current.row_range().unwrap();
    assert_eq!(first, 0);
    assert!(added >= 20, "{added} rows given ids");
    assert_eq!(md.next_row_id(), first + added);
    drop(sink);
    // A restart (index and DVs read back) and a v2 config: the table stays v3.
    let mut sink = IcebergSink::new(cfg.clone()).await.unwrap();
    sink.write(w.txn(&[Delete(2)])).await.unwrap();
    sink.flush().await.unwrap();
    let dvs = live_dvs(&sink).await;
    let mut got: Vec<Vec<u64>> = dvs.values().map(|(_, p)| p.clone()).collect();
    got.sort();
    assert_eq!(got, vec![vec![0], vec![0, 1, 2]], "{dvs:?}");
    assert_eq!(table_state(&rows(&sink, "t").await).len(), 17);
}
