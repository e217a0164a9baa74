//! Incremental snapshots while streaming against the real MariaDB (`TIDEMARK_TEST_MYSQL=1`):
//! the watermark method with a signal table (`src/source/mysql/snapshot_incremental.rs`) under a
//! concurrent workload, kill -9 in the middle of one, and the fallback to it when the initial
//! snapshot's lock is refused (no RELOAD).
//!
//! "The sink's state equals the table" is checked as in `snapshot_mysql.rs`: the JSON-lines
//! output replayed into a key → row map, compared row by row (count and checksum) with the map
//! of a quiescent `initial_only` snapshot of the final table, and the count with `SELECT`.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::mysql_support::{
    mysql_enabled, pipeline as my_pipeline, port, sql, MyDb, MySpec, MyUser,
};
use super::snapshot_support::{
    assert_filtered_estimate, assert_no_rows_remaining, assert_same_state, ddl_mid_snapshot,
    initial_only_state, key_changed, kill9_after_rekey, output, reads, rekeyed_mid_snapshot,
    replay, replay_file, snapshot_cli, snapshot_until_complete, status_text, wait_entry, wait_for,
    wait_mysql_marker, DdlReplay, FilteredReads, RekeyReplay, RekeySource, Replay, TypeReplay,
};
use super::support::{Pipeline, TIDEMARK};

/// A MySQL pipeline on `db` with `[snapshot]` settings and the signal table in `db`.
fn pipeline(db: &str, snapshot: &str) -> Pipeline {
    let mut spec = MySpec::new(db);
    spec.pipeline_extra = format!(
        "max_queue_bytes = 33554432\n\n[snapshot]\nsignal_table = \"{db}.tm_signal\"\n{snapshot}\n"
    );
    my_pipeline(spec)
}

/// The quiescent state of `table`: an `initial_only` snapshot of it, replayed.
fn reference_state(db: &str, table: &str) -> Replay {
    let p = pipeline(db, "mode = \"initial_only\"\nprogress = \"off\"");
    initial_only_state(p, table, Duration::from_secs(300))
}

/// `tidemark snapshot --table …` for the pipeline.
fn request(p: &Pipeline, tables: &[&str]) {
    let mut c = Command::new(TIDEMARK);
    c.args(["snapshot", "--config"]).arg(&p.config);
    for t in tables {
        c.args(["--table", t]);
    }
    let out = c.output().expect("tidemark snapshot");
    assert!(
        out.status.success(),
        "tidemark snapshot failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The durable `last_key` of the incremental snapshot's table `i` (an integer key).
fn last_key(p: &Pipeline, i: usize) -> Option<i64> {
    p.checkpoint()?["snapshot"]["tables"][i]["last_key"][0]
        .as_str()?
        .parse()
        .ok()
}

fn table_complete(p: &Pipeline, table: &str) -> bool {
    p.checkpoint().is_some_and(|c| {
        c["snapshot"]["kind"] == "incremental"
            && c["snapshot"]["tables"].as_array().is_some_and(|ts| {
                ts.iter()
                    .any(|t| t["table"] == table && t["complete"] == true)
            })
    })
}

/// Rows the windows dropped from chunks (`dropped=` of the `incremental chunk` debug lines).
fn dropped_in_windows(log: &str) -> u64 {
    log.lines()
        .filter(|l| l.contains("incremental chunk"))
        .filter_map(|l| l.split("dropped=").nth(1))
        .filter_map(|r| {
            r.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// A `mariadb` client running `statements` in `db`, in the background.
fn spawn_sql(db: &str, statements: &str) -> std::process::Child {
    Command::new("mariadb")
        .args([
            "-uroot",
            "-h127.0.0.1",
            &format!("-P{}", port()),
            db,
            "-e",
            statements,
        ])
        .spawn()
        .expect("mariadb client")
}

/// An incremental snapshot of a 120,000-row table (`tidemark snapshot --table`) while a workload
/// updates, deletes and inserts rows all over the key space (chunks read, not yet read) and,
/// following the snapshot's progress, just ahead of its last durable key (the chunk being read):
/// the sink's state equals the table, the chunks are `source.snapshot = incremental`, signal and
/// watermark rows never reach the sink, the keyless table is refused with the options, and the
/// progress is in the checkpoint, `tidemark status` and the metrics.
#[test]
fn snapshot_mysql_incremental_while_streaming() {
    if !mysql_enabled("snapshot_mysql_incremental_while_streaming") {
        return;
    }
    let db = MyDb::create("tm_mincr");
    sql(
        &db.name,
        "CREATE TABLE t (id INT PRIMARY KEY, v INT, pad VARCHAR(64), d DECIMAL(10,2), at DATETIME(3));
         INSERT INTO t SELECT seq, 0, CONCAT('p', seq), seq / 100, TIMESTAMP('2021-01-01') + INTERVAL seq SECOND
           FROM seq_1_to_120000;
         CREATE TABLE nokey (x INT); INSERT INTO nokey VALUES (1), (2);
         ANALYZE TABLE t",
    );
    let mut p = pipeline(
        &db.name,
        "mode = \"no_data\"\nincremental_chunk_rows = 1000\nprogress_interval = \"1s\"",
    );
    p.start();
    // 400 transactions over the whole key space (changes of chunks already read and not yet
    // read), a key change and inserts above the current maximum.
    let mut stmts = String::new();
    for n in 1..=400u32 {
        stmts.push_str(&format!(
            "BEGIN; UPDATE t SET v = {n}, pad = 'upd' WHERE id IN ({a}, {b}); DELETE FROM t WHERE id = {c};
             INSERT INTO t (id, v, pad) VALUES ({i}, -1, 'new'); UPDATE t SET id = {m} WHERE id = {k};
             COMMIT; DO SLEEP(0.01);",
            a = n * 2497 % 120_000 + 1,
            b = n * 1231 % 120_000 + 1,
            c = n * 3301 % 120_000 + 1,
            i = 200_000 + n,
            m = 300_000 + n,
            k = n * 4099 % 120_000 + 1,
        ));
    }
    let mut workload = spawn_sql(&db.name, &stmts);
    request(
        &p,
        &[&format!("{}.t", db.name), &format!("{}.nokey", db.name)],
    );
    // Changes just ahead of the durable progress: inside the chunk being read or the next ones.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut ahead = 0u32;
    while !table_complete(&p, &format!("{}.t", db.name)) && Instant::now() < deadline {
        if let Some(k) = last_key(&p, 0) {
            ahead += 1;
            sql(
                &db.name,
                &format!(
                    "UPDATE t SET v = v + 1000 WHERE id IN ({}, {}, {}); DELETE FROM t WHERE id = {}",
                    k + 1,
                    k + 400,
                    k + 1500,
                    k + 700
                ),
            );
        }
        if let Some(status) = p.try_wait() {
            panic!("tidemark exited ({status}):\n{}", p.log_text());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        workload.wait().expect("workload").success(),
        "workload failed"
    );
    wait_for(
        "the incremental snapshot to finish",
        &mut p,
        Duration::from_secs(120),
        |p| table_complete(p, &format!("{}.t", db.name)),
    );
    let status = status_text(&p);
    assert!(status.contains("snapshot (incremental"), "{status}");
    let metrics = p.metrics();
    assert!(
        metrics.contains("tidemark_snapshot_rows_total{")
            && metrics.contains("tidemark_snapshot_chunks_total{"),
        "{metrics}"
    );
    wait_mysql_marker(&mut p, &db.name, Duration::from_secs(60));
    p.stop();
    let log = p.log_text();
    assert!(
        log.contains("incremental snapshot refused: the table has no primary key"),
        "{log}"
    );
    let text = output(&p);
    assert!(
        !text.contains("tm_signal") && !text.contains("snapshot-window-"),
        "signal or watermark rows reached the sink"
    );
    // The chunks' `source` block names the binlog file of their watermark, as streamed rows do.
    let reads_without_file = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| super::mysql_support::payload(v)["op"] == "r")
        .filter(|v| {
            !super::mysql_support::payload(v)["source"]["file"]
                .as_str()
                .is_some_and(|f| f.contains("-bin."))
        })
        .count();
    assert_eq!(reads_without_file, 0, "op r rows without source.file");
    let state = replay_file(&p.out, "t");
    assert_eq!(
        state.marks.keys().collect::<Vec<_>>(),
        vec!["incremental"],
        "{:?}",
        state.marks
    );
    assert!(state.ops["r"] >= 110_000, "{:?}", state.ops);
    let dup = state.keys_read_twice();
    assert!(
        dup.is_empty(),
        "keys read twice by one incremental snapshot: {dup:?}"
    );
    let count: usize = sql(&db.name, "SELECT count(*) FROM t").parse().unwrap();
    assert_eq!(state.rows.len(), count);
    let reference = reference_state(&db.name, "t");
    assert_same_state(
        "state after an incremental snapshot under a workload",
        &reference,
        &state,
    );
    eprintln!(
        "snapshot_mysql_incremental: ops {:?}; {ahead} rounds of changes ahead of the progress; {} chunk rows dropped by windows",
        state.ops,
        dropped_in_windows(&log)
    );
}

/// kill -9 in the middle of an incremental snapshot: the restart continues after the last
/// chunk recorded in the checkpoint (no key at or below it is read again, far fewer reads
/// than the table) and the final state is exact, with rows changed between the two runs.
#[test]
fn snapshot_mysql_incremental_kill9_resumes_after_last_chunk() {
    if !mysql_enabled("snapshot_mysql_incremental_kill9_resumes_after_last_chunk") {
        return;
    }
    let db = MyDb::create("tm_mincr_kill");
    sql(
        &db.name,
        "CREATE TABLE t (id INT PRIMARY KEY, v INT, pad VARCHAR(200));
         INSERT INTO t SELECT seq, 0, REPEAT('p', 150) FROM seq_1_to_100000; ANALYZE TABLE t",
    );
    let table = format!("{}.t", db.name);
    let mut p = pipeline(&db.name, "mode = \"no_data\"\nincremental_chunk_rows = 500");
    p.start();
    request(&p, &[&table]);
    wait_for(
        "a few chunks durable",
        &mut p,
        Duration::from_secs(120),
        |p| last_key(p, 0).is_some_and(|k| k >= 5_000),
    );
    p.kill9();
    let cp = p.checkpoint().expect("checkpoint");
    assert_eq!(
        cp["snapshot"]["complete"], false,
        "the kill must land mid-snapshot: {cp}"
    );
    let durable = last_key(&p, 0).expect("last key");
    let status = status_text(&p);
    assert!(
        status.contains("snapshot (incremental")
            && status.contains(&format!("after key {durable}")),
        "{status}"
    );
    let first_run = output(&p);
    sql(
        &db.name,
        "UPDATE t SET v = 1 WHERE id % 997 = 0; DELETE FROM t WHERE id % 991 = 0;
         INSERT INTO t SELECT 100000 + seq, 2, 'new' FROM seq_1_to_100",
    );
    p.start();
    wait_for(
        "the incremental snapshot to finish",
        &mut p,
        Duration::from_secs(120),
        |p| table_complete(p, &table),
    );
    wait_mysql_marker(&mut p, &db.name, Duration::from_secs(60));
    p.stop();
    let log = p.log_text();
    assert!(log.contains("resuming the incremental snapshot"), "{log}");
    let all = output(&p);
    let second = replay(&all[first_run.len()..], "t");
    let reread: Vec<&String> = second
        .reads
        .keys()
        .filter(|k| {
            serde_json::from_str::<Value>(k).unwrap()["id"]
                .as_i64()
                .is_some_and(|id| id <= durable)
        })
        .take(5)
        .collect();
    assert!(
        reread.is_empty(),
        "keys up to the durable last key {durable} read again: {reread:?}"
    );
    let reads_after = second.ops.get("r").copied().unwrap_or(0);
    assert!(reads_after > 0, "the restart read the rest");
    assert!(
        reads_after <= 100_100 - durable as u64 + 500,
        "the restart read {reads_after} rows: it started over instead of after key {durable}"
    );
    let state = replay(&all, "t");
    let count: usize = sql(&db.name, "SELECT count(*) FROM t").parse().unwrap();
    assert_eq!(state.rows.len(), count);
    let reference = reference_state(&db.name, "t");
    assert_same_state(
        "state after kill -9 during an incremental snapshot",
        &reference,
        &state,
    );
}

/// The initial snapshot needs FLUSH TABLES WITH READ LOCK (here: the lock-free MariaDB way
/// switched off, as on MySQL) and the user lacks RELOAD: the pipeline says so, streams from the
/// current position and snapshots every captured table incrementally; the final state is exact.
#[test]
fn snapshot_mysql_no_reload_falls_back_to_incremental() {
    if !mysql_enabled("snapshot_mysql_no_reload_falls_back_to_incremental") {
        return;
    }
    let db = MyDb::create("tm_mincr_nolock");
    sql(
        &db.name,
        "CREATE TABLE a (id INT PRIMARY KEY, v VARCHAR(20));
         INSERT INTO a SELECT seq, CONCAT('a', seq) FROM seq_1_to_20000;
         CREATE TABLE b (k VARCHAR(20) PRIMARY KEY, n INT);
         INSERT INTO b SELECT CONCAT('key', seq), seq FROM seq_1_to_3000",
    );
    let user = MyUser::create();
    sql(
        "",
        &format!(
            "REVOKE RELOAD ON *.* FROM '{u}'@'%'; GRANT INSERT, UPDATE, CREATE ON {db}.* TO '{u}'@'%'",
            u = user.name,
            db = db.name
        ),
    );
    let mut spec = MySpec::new(&db.name);
    spec.user = Some((user.name.clone(), user.password.clone()));
    spec.pipeline_extra = format!(
        "\n[snapshot]\nsignal_table = \"{}.tm_signal\"\nincremental_chunk_rows = 2000\n",
        db.name
    );
    let mut p = my_pipeline(spec);
    p.env
        .push(("TIDEMARK_MYSQL_LOCK_FREE".into(), "off".into()));
    p.start();
    let mut workload = spawn_sql(
        &db.name,
        &(1..=100u32)
            .map(|n| {
                format!(
                    "UPDATE a SET v = 'u{n}' WHERE id = {}; DELETE FROM a WHERE id = {}; INSERT INTO b VALUES ('new{n}', {n}); DO SLEEP(0.01);",
                    n * 197 % 20_000 + 1,
                    n * 89 % 20_000 + 1
                )
            })
            .collect::<String>(),
    );
    wait_for(
        "both tables snapshotted",
        &mut p,
        Duration::from_secs(120),
        |p| {
            table_complete(p, &format!("{}.a", db.name))
                && table_complete(p, &format!("{}.b", db.name))
        },
    );
    assert!(workload.wait().expect("workload").success());
    wait_mysql_marker(&mut p, &db.name, Duration::from_secs(60));
    p.stop();
    let log = p.log_text();
    assert!(
        log.contains("FLUSH TABLES WITH READ LOCK was refused")
            && log.contains("falling back to an incremental snapshot while streaming"),
        "{log}"
    );
    assert!(
        !output(&p).contains("tm_signal"),
        "signal rows reached the sink"
    );
    for (table, rows) in [("a", 20_000u64), ("b", 3_000)] {
        let state = replay_file(&p.out, table);
        assert_eq!(
            state.marks.keys().collect::<Vec<_>>(),
            vec!["incremental"],
            "{table}: {:?}",
            state.marks
        );
        assert!(state.ops["r"] >= rows - 100, "{table}: {:?}", state.ops);
        let count: usize = sql(&db.name, &format!("SELECT count(*) FROM {table}"))
            .parse()
            .unwrap();
        assert_eq!(state.rows.len(), count, "{table}");
        let reference = reference_state(&db.name, table);
        assert_same_state(&format!("{table}: no-RELOAD fallback"), &reference, &state);
    }
}

/// Inserts an `execute-snapshot` row with `data` (Debezium's shape) into the signal table.
fn signal_row(db: &str, data: &str) {
    sql(
        db,
        &format!(
            "INSERT INTO tm_signal (id, type, data) VALUES (UUID(), 'execute-snapshot', '{}')",
            data.replace('\'', "''")
        ),
    );
}

fn ids(db: &str, query: &str) -> Vec<i64> {
    sql(db, query)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Filtered incremental snapshots on MariaDB (Debezium's `additional-conditions` in a signal
/// table row): under a concurrent workload, `op: r` events for exactly the matching rows and
/// their state equal to the table; by `tidemark snapshot --filter` at rest, exactly the
/// matching rows; a refused filter fails the CLI naming table and filter; through the signal
/// table, a refused filter or one that fails mid-way stops that table's snapshot with the error
/// in the checkpoint and `status` while the stream goes on; Debezium's pre-2.5
/// `additional-condition` is refused, not read as "every row".
#[test]
fn snapshot_mysql_incremental_filtered() {
    if !mysql_enabled("snapshot_mysql_incremental_filtered") {
        return;
    }
    let db = MyDb::create("tm_mfilter");
    sql(
        &db.name,
        "CREATE TABLE t (id INT PRIMARY KEY, color VARCHAR(8) NOT NULL, v INT, pad VARCHAR(64));
         INSERT INTO t SELECT seq, IF(seq % 3 = 0, 'blue', 'red'), 0, CONCAT('p', seq) FROM seq_1_to_30000;
         CREATE TABLE dup (id INT, x INT); INSERT INTO dup VALUES (15000, 1), (15000, 2);
         CREATE TABLE tm_signal (id VARCHAR(42) PRIMARY KEY, type VARCHAR(32) NOT NULL, data VARCHAR(2048) NULL);
         ANALYZE TABLE t",
    );
    let table = format!("{}.t", db.name);
    let mut p = pipeline(&db.name, "mode = \"no_data\"\nincremental_chunk_rows = 500");
    p.start();
    let mut stmts = String::new();
    for n in 1..=300u32 {
        stmts.push_str(&format!(
            "BEGIN; UPDATE t SET v = {n} WHERE id IN ({a}, {b}); DELETE FROM t WHERE id = {c};
             INSERT INTO t VALUES ({i}, '{color}', -1, 'new'); COMMIT; DO SLEEP(0.01);",
            a = n * 2497 % 30_000 + 1,
            b = n * 1231 % 30_000 + 1,
            c = n * 3301 % 30_000 + 1,
            i = 100_000 + n,
            color = if n % 2 == 0 { "blue" } else { "red" },
        ));
    }
    let mut workload = spawn_sql(&db.name, &stmts);
    signal_row(
        &db.name,
        &format!(
            r#"{{"data-collections": ["{table}"], "type": "INCREMENTAL",
                "additional-conditions": [{{"data-collection": "{table}", "filter": "color = 'blue'"}}]}}"#
        ),
    );
    assert!(
        workload.wait().expect("workload").success(),
        "workload failed"
    );
    wait_entry(&mut p, "the filtered snapshot to finish", |t| {
        t["filter"] == "color = 'blue'" && t["complete"] == true
    });
    let status = status_text(&p);
    assert!(status.contains("filter: color = 'blue'"), "{status}");
    wait_mysql_marker(&mut p, &db.name, Duration::from_secs(60));
    let log = p.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("incremental snapshot: table started")
                && l.contains("color = 'blue'")),
        "{log}"
    );
    let first = output(&p);
    let reads = FilteredReads::of(&first, "t");
    let blue = ids(
        &db.name,
        "SELECT id FROM t WHERE color = 'blue' ORDER BY id",
    );
    reads.assert_exactly("signal row, under a workload", &blue, |a| {
        a["color"] == "blue"
    });
    assert!(reads.reads.len() > 9000, "{} reads", reads.reads.len());
    let state = replay(&first, "t");
    let reference = reference_state(&db.name, "t");
    let differ: Vec<String> = blue
        .iter()
        .map(|id| format!("{{\"id\":{id}}}"))
        .filter(|k| state.rows.get(k) != reference.rows.get(k))
        .take(5)
        .collect();
    assert!(
        differ.is_empty(),
        "matching rows that differ from the table: {differ:?}"
    );

    // The CLI, at rest: exactly the matching rows.
    let (ok, text) = snapshot_cli(&p, &["--table", &table, "--filter", "id % 1000 = 0"]);
    assert!(ok, "{text}");
    wait_entry(&mut p, "the CLI's filtered snapshot to finish", |t| {
        t["filter"] == "id % 1000 = 0" && t["complete"] == true
    });
    wait_mysql_marker(&mut p, &db.name, Duration::from_secs(60));
    let all = output(&p);
    let cli = FilteredReads::of(&all[first.len()..], "t");
    assert!(cli.touched.is_empty(), "the table changed at rest");
    assert_eq!(
        cli.reads.keys().copied().collect::<Vec<_>>(),
        ids(&db.name, "SELECT id FROM t WHERE id % 1000 = 0 ORDER BY id")
    );

    // Refused by the server: the CLI fails naming table and filter.
    let (ok, text) = snapshot_cli(&p, &["--table", &table, "--filter", "no_such_col > 0"]);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&table)
            && text.contains("no_such_col > 0")
            && text.contains("Unknown column"),
        "{text}"
    );

    // Through the signal table: mid-way (a subquery that returns two rows only for id 15000),
    // then at the start (unknown column); the stream goes on.
    let at_cli = output(&p).len();
    signal_row(
        &db.name,
        &format!(
            r#"{{"data-collections": ["{table}"], "additional-conditions": [{{"data-collection": "{table}",
                "filter": "COALESCE((SELECT d.x FROM {db}.dup d WHERE d.id = t.id), 1) = 1"}}]}}"#,
            db = db.name
        ),
    );
    wait_entry(&mut p, "the failing subquery to stop the snapshot", |t| {
        t["error"]
            .as_str()
            .is_some_and(|e| e.contains("more than 1 row"))
            && t["complete"] == true
    });
    let status = status_text(&p);
    assert!(
        status.contains("FAILED") && status.contains("more than 1 row"),
        "{status}"
    );
    signal_row(
        &db.name,
        &format!(
            r#"{{"data-collections": ["{table}"], "additional-conditions": [{{"data-collection": "{table}", "filter": "no_such_col > 0"}}]}}"#
        ),
    );
    wait_entry(&mut p, "the refused filter to stop the snapshot", |t| {
        t["error"]
            .as_str()
            .is_some_and(|e| e.contains("no_such_col") && e.contains("Unknown column"))
    });
    signal_row(
        &db.name,
        &format!(r#"{{"data-collections": ["{table}"], "additional-condition": "id > 1"}}"#),
    );
    sql(
        &db.name,
        "INSERT INTO t VALUES (99999, 'blue', 1, 'after the failures')",
    );
    wait_mysql_marker(&mut p, &db.name, Duration::from_secs(60));
    let all = output(&p);
    assert!(
        all[at_cli..].contains("after the failures"),
        "the stream stopped"
    );
    assert!(p.try_wait().is_none(), "the pipeline stopped");
    let mid = FilteredReads::of(&all[at_cli..], "t");
    assert!(
        !mid.reads.is_empty() && mid.reads.keys().all(|k| *k < 15000),
        "reads of the failing snapshot: {:?}..",
        mid.reads.keys().take(3).collect::<Vec<_>>()
    );
    p.stop();
    let log = p.log_text();
    assert!(log.contains("is Debezium's form before 2.5"), "{log}");
}

/// The row estimate of a filtered incremental snapshot is the optimizer's for the filter
/// (`EXPLAIN FORMAT=JSON`), not `TABLE_ROWS`: for 20,000 rows of which 2,000 match, after
/// `ANALYZE TABLE … PERSISTENT FOR ALL` (MariaDB's histograms), the estimate in the checkpoint,
/// `status` and the log is near 2,000; an unfiltered request of the same table is back to the
/// table's estimate; at the end no rows remain.
#[test]
fn snapshot_mysql_incremental_filtered_estimate() {
    if !mysql_enabled("snapshot_mysql_incremental_filtered_estimate") {
        return;
    }
    let db = MyDb::create("tm_mfest");
    sql(
        &db.name,
        "CREATE TABLE t (id INT PRIMARY KEY, color VARCHAR(8) NOT NULL, pad VARCHAR(64));
         INSERT INTO t SELECT seq, IF(seq % 10 = 0, 'blue', 'red'), CONCAT('p', seq) FROM seq_1_to_20000;
         CREATE TABLE tm_signal (id VARCHAR(42) PRIMARY KEY, type VARCHAR(32) NOT NULL, data VARCHAR(2048) NULL);
         ANALYZE TABLE t PERSISTENT FOR ALL",
    );
    let table = format!("{}.t", db.name);
    let mut p = pipeline(&db.name, "mode = \"no_data\"\nincremental_chunk_rows = 500");
    p.start();
    let t = snapshot_until_complete(&mut p, &table, Some("color = 'blue'"));
    assert_filtered_estimate(
        &p,
        &t,
        (&table, "color = 'blue'"),
        2000,
        1000..=4000,
        "the optimizer's for the filter",
    );
    assert_no_rows_remaining(&p, &table);

    // Unfiltered: TABLE_ROWS again (InnoDB's sampled estimate: a generous range).
    let t = snapshot_until_complete(&mut p, &table, None);
    assert_eq!(t["rows"], 20000, "{t}");
    let whole = t["estimate"].as_u64().expect("an estimate");
    assert!((10000..=40000).contains(&whole), "table estimate {whole}");
    p.stop();
}

/// kill -9 in the middle of a filtered incremental snapshot: the checkpoint holds the filter,
/// the restart resumes with it after the last durable chunk, and both runs together read
/// exactly the matching rows.
#[test]
fn snapshot_mysql_incremental_filtered_kill9_resumes_with_the_filter() {
    if !mysql_enabled("snapshot_mysql_incremental_filtered_kill9_resumes_with_the_filter") {
        return;
    }
    let db = MyDb::create("tm_mfilter_kill");
    sql(
        &db.name,
        "CREATE TABLE t (id INT PRIMARY KEY, v INT, pad VARCHAR(200));
         INSERT INTO t SELECT seq, 0, REPEAT('p', 150) FROM seq_1_to_100000; ANALYZE TABLE t",
    );
    let table = format!("{}.t", db.name);
    let mut p = pipeline(&db.name, "mode = \"no_data\"\nincremental_chunk_rows = 500");
    p.start();
    let (ok, text) = snapshot_cli(&p, &["--table", &table, "--filter", "id % 2 = 0"]);
    assert!(ok, "{text}");
    wait_for(
        "a few chunks durable",
        &mut p,
        Duration::from_secs(120),
        |p| last_key(p, 0).is_some_and(|k| k >= 10_000),
    );
    p.kill9();
    let cp = p.checkpoint().expect("checkpoint");
    assert_eq!(
        cp["snapshot"]["complete"], false,
        "the kill must land mid-snapshot: {cp}"
    );
    assert_eq!(cp["snapshot"]["tables"][0]["filter"], "id % 2 = 0", "{cp}");
    let durable = last_key(&p, 0).expect("last key");
    let first_run = output(&p);
    p.start();
    wait_for(
        "the snapshot to finish",
        &mut p,
        Duration::from_secs(240),
        |p| table_complete(p, &table),
    );
    wait_mysql_marker(&mut p, &db.name, Duration::from_secs(60));
    p.stop();
    let log = p.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("resuming the incremental snapshot") && l.contains("id % 2 = 0")),
        "{log}"
    );
    let all = output(&p);
    let second = FilteredReads::of(&all[first_run.len()..], "t");
    assert!(
        !second.reads.is_empty() && second.reads.keys().all(|k| *k > durable && k % 2 == 0),
        "the restart read keys at or below {durable}, or odd ones"
    );
    let reads = FilteredReads::of(&all, "t");
    let even: Vec<i64> = (1..=100_000).filter(|i| i % 2 == 0).collect();
    assert_eq!(reads.reads.keys().copied().collect::<Vec<_>>(), even);
}

/// DDL on a table during its incremental snapshot, MariaDB: as
/// `snapshot_pg_incremental_ddl_mid_snapshot` (`ADD COLUMN extra INT DEFAULT 7`, later
/// `DROP COLUMN pad`, then `MODIFY v BIGINT`, DML around them): the column set and `v`'s type
/// in the table's events never go back, every read after the ADD COLUMN carries `extra = 7`,
/// and the final rows equal the table's.
#[test]
fn snapshot_mysql_incremental_ddl_mid_snapshot() {
    if !mysql_enabled("snapshot_mysql_incremental_ddl_mid_snapshot") {
        return;
    }
    let db = MyDb::create("tm_mddl");
    sql(
        &db.name,
        "CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL, pad VARCHAR(64));
         INSERT INTO t SELECT seq, 0, CONCAT('p', seq) FROM seq_1_to_60000;
         ANALYZE TABLE t",
    );
    let mut spec = MySpec::new(&db.name);
    spec.pipeline_extra = format!(
        "max_queue_bytes = 33554432\n\n[snapshot]\nsignal_table = \"{}.tm_signal\"\nmode = \"no_data\"\nincremental_chunk_rows = 100\n",
        db.name
    );
    spec.sink_extra = "schemas_enable = true".into();
    let mut p = my_pipeline(spec);
    p.start();
    request(&p, &[&format!("{}.t", db.name)]);
    wait_for("the first chunks", &mut p, Duration::from_secs(120), |p| {
        reads(p) >= 2000
    });
    sql(
        &db.name,
        "ALTER TABLE t ADD COLUMN extra INT DEFAULT 7;
         UPDATE t SET v = 1 WHERE id IN (5, 30000, 59999);
         INSERT INTO t (id, v) VALUES (60001, 2);
         DELETE FROM t WHERE id = 40000;",
    );
    let at_add = reads(&p);
    wait_for(
        "chunks after the ADD COLUMN",
        &mut p,
        Duration::from_secs(120),
        |p| reads(p) >= at_add + 2000,
    );
    sql(
        &db.name,
        "ALTER TABLE t DROP COLUMN pad;
         UPDATE t SET v = 3 WHERE id IN (6, 50000);
         INSERT INTO t (id, v) VALUES (60002, 4);",
    );
    let at_drop = reads(&p);
    wait_for(
        "chunks after the DROP COLUMN",
        &mut p,
        Duration::from_secs(120),
        |p| reads(p) >= at_drop + 2000,
    );
    sql(
        &db.name,
        "ALTER TABLE t MODIFY COLUMN v BIGINT NOT NULL;
         UPDATE t SET v = 5 WHERE id IN (7, 55000);
         INSERT INTO t (id, v) VALUES (60003, 6);",
    );
    let table = format!("{}.t", db.name);
    wait_for(
        "the incremental snapshot to finish",
        &mut p,
        Duration::from_secs(180),
        |p| table_complete(p, &table),
    );
    wait_mysql_marker(&mut p, &db.name, Duration::from_secs(60));
    p.stop();
    let text = output(&p);
    let replay = DdlReplay::of(&text, "t", "extra", 7, "pad");
    let retyped = TypeReplay::of(&text, "t", "v", "int64");
    eprintln!(
        "ddl: {} reads with extra, {} backwards; {} reads with v int64, {} backwards",
        replay.reads_with_added,
        replay.backwards.len(),
        retyped.reads_with_new,
        retyped.backwards.len()
    );
    let expected = sql(&db.name, "SELECT id, v, extra FROM t ORDER BY id")
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t').map(|x| x.trim().parse::<i64>().ok());
            Some((f.next()??, (f.next()??, f.next()??)))
        })
        .collect();
    replay.assert_matches(&expected, "extra");
    retyped.assert_forward("v");
}

/// A table `t (id PRIMARY KEY, code, v)` of `rows` rows (`code = 100000 - id`) whose
/// incremental snapshot (chunks of 100) has read its first 1,000 rows: the database, the
/// running pipeline, `db.t`.
fn table_mid_snapshot(name: &str, rows: i64) -> (MyDb, Pipeline, String) {
    let db = MyDb::create(name);
    sql(
        &db.name,
        &format!(
            "CREATE TABLE t (id INT PRIMARY KEY, code INT NOT NULL, v INT NOT NULL);
             INSERT INTO t SELECT seq, 100000 - seq, 0 FROM seq_1_to_{rows};
             ANALYZE TABLE t"
        ),
    );
    let mut p = pipeline(&db.name, "mode = \"no_data\"\nincremental_chunk_rows = 100");
    p.start();
    let table = format!("{}.t", db.name);
    request(&p, &[&table]);
    wait_for("the first chunks", &mut p, Duration::from_secs(120), |p| {
        reads(p) >= 1000
    });
    (db, p, table)
}

/// The primary key redefined during the table's incremental snapshot, MariaDB: as
/// `snapshot_pg_incremental_primary_key_redefined` (`DROP PRIMARY KEY, ADD PRIMARY KEY
/// (code)` while chunks are being read, DML before and after it): the table's snapshot starts
/// again from its first key, chunked by `code` (logged with the reason; the checkpoint's key
/// is `code`), rows read before the change are read again, and the final rows equal the
/// table's.
#[test]
fn snapshot_mysql_incremental_primary_key_redefined() {
    if !mysql_enabled("snapshot_mysql_incremental_primary_key_redefined") {
        return;
    }
    let rows = 20_000;
    let (db, mut p, table) = table_mid_snapshot("tm_mrekey", rows);
    rekeyed_mid_snapshot(
        &mut p,
        &RekeySource {
            table: &table,
            rows,
            sql: &|text| sql(&db.name, text),
            sep: '\t',
            redefine: &redefine_key,
            marker: &|p| wait_mysql_marker(p, &db.name, Duration::from_secs(60)),
        },
    );
}

/// The DDL that makes `column` the primary key of `t` instead of the current one.
fn redefine_key(column: &str) -> String {
    format!("ALTER TABLE t DROP PRIMARY KEY, ADD PRIMARY KEY ({column})")
}

/// kill -9 right after the primary key is redefined mid incremental snapshot, MariaDB: as
/// `snapshot_pg_incremental_kill9_after_primary_key_redefined` (90,000 rows, chunks of 100:
/// MariaDB reads them several times faster, and each kill must land before the snapshot ends;
/// `snapshot_support::kill9_after_rekey`): (a) `id` → `code`, killed once a checkpoint holds
/// the restart and a `code` last key: the next run goes on after it, without restarting;
/// (b) in that run (no checkpoint after its start) `code` → `id`, killed as soon as the log
/// says so: the checkpoint still holds `code` and its last key, and the next run starts the
/// table again from its first `id` (logged), reading every row. The snapshot ends complete
/// on `id` (checkpoint, `status`) and the sink's rows equal the table's.
#[test]
fn snapshot_mysql_incremental_kill9_after_primary_key_redefined() {
    if !mysql_enabled("snapshot_mysql_incremental_kill9_after_primary_key_redefined") {
        return;
    }
    let rows = 90_000;
    let (db, mut p, table) = table_mid_snapshot("tm_mrekey_kill", rows);
    kill9_after_rekey(
        &mut p,
        &RekeySource {
            table: &table,
            rows,
            sql: &|text| sql(&db.name, text),
            sep: '\t',
            redefine: &redefine_key,
            marker: &|p| wait_mysql_marker(p, &db.name, Duration::from_secs(60)),
        },
    );
}

/// The primary key dropped during the table's incremental snapshot, MariaDB: as
/// `snapshot_pg_incremental_primary_key_dropped` (`DROP PRIMARY KEY`, no new one, while chunks
/// are being read, DML before and after it): no key to cut chunks on, so that table's snapshot
/// stops with the reason in the checkpoint and `tidemark status`, and the stream goes on.
#[test]
fn snapshot_mysql_incremental_primary_key_dropped() {
    if !mysql_enabled("snapshot_mysql_incremental_primary_key_dropped") {
        return;
    }
    let (db, mut p, table) = table_mid_snapshot("tm_mnokey", 20_000);
    ddl_mid_snapshot(
        &p,
        &|text| sql(&db.name, text),
        "UPDATE t SET v = 1 WHERE id IN (5, 19999);
         ALTER TABLE t DROP PRIMARY KEY;
         INSERT INTO t VALUES (20001, 50, 2);",
    );
    let why = format!(
        "{}; the table has no primary key now",
        key_changed(&table, "id", "")
    );
    wait_entry(&mut p, "the table's snapshot to stop", |t| {
        t["table"] == table.as_str() && t["error"].as_str().is_some_and(|e| e.contains(&why))
    });
    let status = status_text(&p);
    assert!(status.contains(&why), "{status}");
    sql(
        &db.name,
        "INSERT INTO t VALUES (20002, 60, 4);
         UPDATE t SET v = 3 WHERE id = 8;",
    );
    wait_mysql_marker(&mut p, &db.name, Duration::from_secs(60));
    p.stop();
    let rows = RekeyReplay::of(&output(&p), "t").rows;
    for (id, row) in [
        (5, (99995, 1)),
        (20001, (50, 2)),
        (20002, (60, 4)),
        (8, (99992, 3)),
    ] {
        assert_eq!(
            rows.get(&id),
            Some(&row),
            "the change of id {id} did not stream"
        );
    }
    assert!(
        reads(&p) < 20_000,
        "the snapshot went on after the key was dropped"
    );
}
