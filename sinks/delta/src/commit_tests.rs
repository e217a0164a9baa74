//! The sink against real Delta tables on the local file system (read back with DataFusion).

use arrow_array::cast::AsArray;
use arrow_array::types::Int32Type;
use arrow_array::Array;
use deltalake::datafusion::prelude::SessionContext;
use tidemark_model::{Lsn, Op, PgPosition, TxnItem};

use super::*;
use crate::encoder::testutil::{batch, schema, Row, V};

fn txn(lsn: u64, rows: &[Row]) -> Arc<Transaction> {
    let s = schema(1, true);
    let mut t = Transaction::new(
        Some(7),
        Some(1),
        Position::from(PgPosition::end(Lsn(lsn), Lsn(lsn + 1))),
    );
    t.items.push(TxnItem::Rows(batch(&s, lsn, rows)));
    Arc::new(t)
}

async fn rows(url: &Url) -> Vec<(i32, Option<String>)> {
    let t = deltalake::open_table(url.clone()).await.unwrap();
    let ctx = SessionContext::new();
    t.update_datafusion_session(&ctx.state()).unwrap();
    let df = ctx.read_table(t.table_provider().await.unwrap()).unwrap();
    let mut out = Vec::new();
    for b in df.collect().await.unwrap() {
        let id = b.column_by_name("id").unwrap().as_primitive::<Int32Type>();
        let v = arrow_cast::cast(
            b.column_by_name("v").unwrap(),
            &arrow_schema::DataType::Utf8,
        )
        .unwrap();
        let v = v.as_string::<i32>();
        for i in 0..b.num_rows() {
            out.push((id.value(i), v.is_valid(i).then(|| v.value(i).to_owned())));
        }
    }
    out.sort();
    out
}

fn config(dir: &std::path::Path, mode: TableMode) -> DeltaSinkConfig {
    let mut c = DeltaSinkConfig::new(dir.display().to_string());
    c.mode = mode;
    c.maintenance.optimize_every_commits = Some(2);
    c
}

#[tokio::test]
async fn mirror_merges_keeps_unchanged_values_and_skips_what_it_has_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = DeltaSink::new(config(dir.path(), TableMode::Mirror), "p").unwrap();
    let t1 = txn(
        100,
        &[
            (
                Op::Insert,
                None,
                Some(vec![V::T("1"), V::T("big"), V::T("1.00")]),
            ),
            (
                Op::Insert,
                None,
                Some(vec![V::T("2"), V::T("two"), V::Null]),
            ),
        ],
    );
    let t2 = txn(
        200,
        &[
            (
                Op::Update,
                None,
                Some(vec![V::T("1"), V::Unchanged, V::T("2.00")]),
            ),
            (Op::Delete, Some(vec![V::T("2"), V::Null, V::Null]), None),
            (
                Op::Update,
                Some(vec![V::T("1"), V::Null, V::Null]),
                Some(vec![V::T("10"), V::Unchanged, V::Null]),
            ),
        ],
    );
    sink.write(t1.clone()).await.unwrap();
    assert!(!sink.wants_flush(), "10 s interval, 2 rows: not due");
    assert_eq!(sink.flush().await.unwrap(), Some(t1.end));
    sink.write(t2.clone()).await.unwrap();
    assert_eq!(sink.flush().await.unwrap(), Some(t2.end));
    let url = sink.table_url(&TableId::new("public", "t")).unwrap();
    // id 1 kept "big" through an unchanged update and then moved to id 10 (a key change with
    // the value read from the stored row).
    assert_eq!(rows(&url).await, [(10, Some("big".into()))]);
    let stats = sink.take_stats();
    assert_eq!(stats.len(), 2);

    // Restart: the same transactions again are skipped, a new one is applied.
    let mut sink = DeltaSink::new(config(dir.path(), TableMode::Mirror), "p").unwrap();
    sink.write(t1.clone()).await.unwrap();
    sink.write(t2.clone()).await.unwrap();
    let t3 = txn(
        300,
        &[(
            Op::Insert,
            None,
            Some(vec![V::T("3"), V::T("three"), V::Null]),
        )],
    );
    sink.write(t3.clone()).await.unwrap();
    assert_eq!(sink.flush().await.unwrap(), Some(t3.end));
    assert_eq!(
        sink.table_ack(&TableId::new("public", "t"))
            .unwrap()
            .position,
        Some(t3.end)
    );
    assert_eq!(
        rows(&url).await,
        [(3, Some("three".into())), (10, Some("big".into()))]
    );
    // A different sink name does not see these commits as its own.
    let mut other = config(dir.path(), TableMode::Mirror);
    other.name = Some("other".into());
    let mut sink = DeltaSink::new(other, "p").unwrap();
    sink.write(t3.clone()).await.unwrap();
    sink.flush().await.unwrap();
    assert_eq!(
        sink.table_ack(&TableId::new("public", "t"))
            .unwrap()
            .txn_version,
        1
    );
}

#[tokio::test]
async fn changelog_appends_and_incomplete_transactions_wait() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = DeltaSink::new(config(dir.path(), TableMode::Changelog), "p").unwrap();
    let mut chunk = (*txn(
        100,
        &[(Op::Insert, None, Some(vec![V::T("1"), V::T("a"), V::Null]))],
    ))
    .clone();
    chunk.complete = false;
    sink.write(Arc::new(chunk)).await.unwrap();
    assert_eq!(
        sink.flush().await.unwrap(),
        None,
        "an incomplete transaction is not committed"
    );
    let last = txn(
        100,
        &[(Op::Insert, None, Some(vec![V::T("2"), V::T("b"), V::Null]))],
    );
    sink.write(last.clone()).await.unwrap();
    assert_eq!(sink.flush().await.unwrap(), Some(last.end));
    let url = sink.table_url(&TableId::new("public", "t")).unwrap();
    assert_eq!(
        rows(&url).await,
        [(1, Some("a".into())), (2, Some("b".into()))]
    );
}

#[tokio::test]
async fn a_table_written_in_the_other_mode_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = DeltaSink::new(config(dir.path(), TableMode::Changelog), "p").unwrap();
    sink.write(txn(
        100,
        &[(Op::Insert, None, Some(vec![V::T("1"), V::T("a"), V::Null]))],
    ))
    .await
    .unwrap();
    sink.flush().await.unwrap();
    let mut sink = DeltaSink::new(config(dir.path(), TableMode::Mirror), "p").unwrap();
    sink.write(txn(
        200,
        &[(Op::Insert, None, Some(vec![V::T("2"), V::T("a"), V::Null]))],
    ))
    .await
    .unwrap();
    let err = sink.flush().await.unwrap_err();
    assert!(!err.is_transient());
    assert!(
        err.to_string().contains("not written by a mirror sink"),
        "{err}"
    );
}

#[tokio::test]
async fn flushes_by_bytes_and_commits_on_its_own_at_twice_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    // Big enough that 1.5 transactions pass the 64 KiB floor of `flush.max_bytes`.
    let payload: &'static str = Box::leak("p".repeat(40_000).into_boxed_str());
    let row = |id: &'static str| {
        (
            Op::Insert,
            None,
            Some(vec![V::T(id), V::T(payload), V::Null]),
        )
    };
    let (t1, t2, t3) = (
        txn(100, &[row("1"), row("2")]),
        txn(200, &[row("3"), row("4")]),
        txn(300, &[row("5"), row("6")]),
    );
    let size = t1.byte_size();
    assert!(size >= 64 << 10 && t2.byte_size() == size && t3.byte_size() == size);
    // Rows and time never trigger here: only bytes (1.5 transactions' worth).
    let mut c = config(dir.path(), TableMode::Changelog);
    c.flush.max_rows = 1_000_000;
    c.flush.interval = std::time::Duration::from_secs(3600);
    c.flush.max_bytes = size + size / 2;
    let mut sink = DeltaSink::new(c, "p").unwrap();
    sink.write(t1.clone()).await.unwrap();
    assert!(!sink.wants_flush(), "below max_bytes: not due");
    sink.write(t2.clone()).await.unwrap();
    assert!(sink.wants_flush(), "max_bytes reached: due");
    assert_eq!(sink.committed(), None, "due, but the engine's tick flushes");
    // Twice the limit (the memory bound): the write itself commits everything sealed.
    sink.write(t3.clone()).await.unwrap();
    assert_eq!(sink.committed(), Some(t3.end));
    assert!(!sink.wants_flush());
    let url = sink.table_url(&TableId::new("public", "t")).unwrap();
    assert_eq!(
        rows(&url).await.iter().map(|r| r.0).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6]
    );
}

/// The table's data files on disk (not the log, not `_change_data`), by file name.
fn data_files_on_disk(url: &Url) -> std::collections::BTreeSet<String> {
    let dir = url.to_file_path().unwrap();
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".parquet"))
        .collect()
}

/// The data files the table's current version reads, by file name.
async fn active_files(url: &Url) -> std::collections::BTreeSet<String> {
    let t = deltalake::open_table(url.clone()).await.unwrap();
    t.get_file_uris()
        .unwrap()
        .map(|u| u.rsplit('/').next().unwrap_or_default().to_owned())
        .collect()
}

fn insert(lsn: u64) -> Arc<Transaction> {
    let id: &'static str = Box::leak((lsn / 100).to_string().into_boxed_str());
    txn(
        lsn,
        &[(Op::Insert, None, Some(vec![V::T(id), V::T("v"), V::Null]))],
    )
}

/// Two commits, then OPTIMIZE (every 2) and VACUUM (every 2); returns the files the compaction
/// removed (still on disk: just removed, younger than any retention).
async fn two_commits_and_maintenance(sink: &mut DeltaSink, first_lsn: u64) -> Vec<String> {
    for lsn in [first_lsn, first_lsn + 100] {
        let t = insert(lsn);
        sink.write(t.clone()).await.unwrap();
        assert_eq!(sink.flush().await.unwrap(), Some(t.end));
    }
    let url = sink.table_url(&TableId::new("public", "t")).unwrap();
    let (disk, active) = (data_files_on_disk(&url), active_files(&url).await);
    assert!(active.is_subset(&disk));
    let removed: Vec<String> = disk.difference(&active).cloned().collect();
    assert!(!removed.is_empty(), "OPTIMIZE compacted files: {disk:?}");
    removed
}

#[tokio::test]
async fn vacuum_deletes_only_files_older_than_the_retention_and_keeps_the_table_readable() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), TableMode::Mirror);
    c.maintenance.vacuum_retention = Some(std::time::Duration::from_secs(1));
    c.maintenance.vacuum_unsafe_short_retention = true;
    c.maintenance.vacuum_every_commits = 2;
    let mut sink = DeltaSink::new(c, "p").unwrap();
    let url = sink.table_url(&TableId::new("public", "t")).unwrap();
    // Versions 1-2, then OPTIMIZE; the VACUUM right after keeps what it just removed.
    let first = two_commits_and_maintenance(&mut sink, 100).await;
    assert!(first.iter().all(|f| data_files_on_disk(&url).contains(f)));
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    // Versions 3-4, OPTIMIZE, VACUUM: the first compaction's files are past the retention and
    // go; the second's are not and stay.
    let second = two_commits_and_maintenance(&mut sink, 300).await;
    let disk = data_files_on_disk(&url);
    assert!(
        first.iter().all(|f| !disk.contains(f)),
        "{first:?} in {disk:?}"
    );
    assert!(
        second.iter().all(|f| disk.contains(f)),
        "{second:?} in {disk:?}"
    );
    assert_eq!(
        rows(&url).await,
        (1..=4).map(|i| (i, Some("v".into()))).collect::<Vec<_>>()
    );
    // VACUUM and OPTIMIZE commits carry the position: a restart skips what the table has.
    let mut sink = DeltaSink::new(config(dir.path(), TableMode::Mirror), "p").unwrap();
    sink.write(insert(400)).await.unwrap();
    sink.flush().await.unwrap();
    assert_eq!(rows(&url).await.len(), 4);
}

#[tokio::test]
async fn vacuum_retention_becomes_the_table_property_and_a_longer_one_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    // 2 h: valid without the unsafe switch, shorter than the table default of a week, which
    // delta-rs' own retention check would have refused at the first VACUUM.
    let mut c = config(dir.path(), TableMode::Mirror);
    c.maintenance.vacuum_retention = Some(std::time::Duration::from_secs(7200));
    c.maintenance.vacuum_every_commits = 2;
    let mut sink = DeltaSink::new(c, "p").unwrap();
    let first = two_commits_and_maintenance(&mut sink, 100).await;
    let url = sink.table_url(&TableId::new("public", "t")).unwrap();
    let t = deltalake::open_table(url.clone()).await.unwrap();
    assert_eq!(
        t.snapshot()
            .unwrap()
            .metadata()
            .configuration()
            .get("delta.deletedFileRetentionDuration")
            .map(String::as_str),
        Some("interval 7200 seconds")
    );
    // A later configuration of 1 s on this table: the table's 2 h is longer and wins.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let mut c = config(dir.path(), TableMode::Mirror);
    c.maintenance.vacuum_retention = Some(std::time::Duration::from_secs(1));
    c.maintenance.vacuum_unsafe_short_retention = true;
    c.maintenance.vacuum_every_commits = 2;
    let mut sink = DeltaSink::new(c, "p").unwrap();
    two_commits_and_maintenance(&mut sink, 300).await;
    let disk = data_files_on_disk(&url);
    assert!(
        first.iter().all(|f| disk.contains(f)),
        "{first:?} in {disk:?}"
    );
}
