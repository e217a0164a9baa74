//! Snapshots against the real MariaDB (`TIDEMARK_TEST_MYSQL=1`): modes and Debezium marks,
//! snapshot values equal the binlog's for every type, a 1,000,000-row table (and a wide
//! all-types sibling) read while a workload changes it, kill -9 in the middle of a snapshot,
//! and the clear error when the lock is refused.
//!
//! "The sink's state equals the table" is checked as in `snapshot_pg.rs`: the JSON-lines output
//! replayed into a key → row map, compared row by row (count and checksum) with the map of a
//! quiescent `initial_only` snapshot of the final table, and the count with `SELECT`.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::mysql_support::{
    mysql_enabled, payload, pipeline as my_pipeline, port, sql, MyDb, MySpec, MyUser,
};
use super::snapshot_support::{
    assert_same_state, initial_only_state, output, range_bounds, replay, replay_file, wait_for,
    wait_mysql_marker, Replay,
};
use super::support::Pipeline;

fn pipeline(db: &str, snapshot: &str) -> Pipeline {
    let mut spec = MySpec::new(db);
    spec.pipeline_extra = format!("max_queue_bytes = 33554432\n\n[snapshot]\n{snapshot}\n");
    my_pipeline(spec)
}

/// The quiescent state of `table`: an `initial_only` snapshot of it, replayed.
fn reference_state(db: &str, table: &str) -> Replay {
    let p = pipeline(db, "mode = \"initial_only\"\nprogress = \"off\"");
    initial_only_state(p, table, Duration::from_secs(600))
}

fn lines_of(text: &str, table: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| {
            v["topic"]
                .as_str()
                .is_some_and(|t| t.ends_with(&format!(".{table}")))
        })
        .collect()
}

fn op(v: &Value) -> String {
    payload(&v["value"])["op"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// `initial` snapshots tables (with and without a key, one empty) with Debezium's
/// `source.snapshot` marks and the lock-free consistent point, then streams from exactly the
/// snapshot's position; a restart does not snapshot again; `no_data` reads nothing;
/// `initial_only` stops after the snapshot.
#[test]
fn snapshot_mysql_modes_marks_and_restart() {
    if !mysql_enabled("snapshot_mysql_modes_marks_and_restart") {
        return;
    }
    let db = MyDb::create("tm_msnap_modes");
    sql(
        &db.name,
        "CREATE TABLE a (id INT PRIMARY KEY, v VARCHAR(10)); INSERT INTO a VALUES (1,'x'),(2,'y'),(3,'z');
         CREATE TABLE b (n INT, s VARCHAR(5)); INSERT INTO b VALUES (1,'p'),(1,'p');
         CREATE TABLE e (id INT PRIMARY KEY)",
    );
    let mut p = pipeline(&db.name, "progress = \"log\"");
    p.start();
    sql(
        &db.name,
        "INSERT INTO a VALUES (4,'new'); UPDATE a SET v = 'y2' WHERE id = 2",
    );
    wait_mysql_marker(&mut p, &db.name, Duration::from_secs(60));
    let log = p.log_text();
    assert!(
        log.contains("lock-free"),
        "the log says which way was used:\n{log}"
    );
    let text = output(&p);
    let a = lines_of(&text, "a");
    let ops: Vec<String> = a.iter().map(op).collect();
    assert_eq!(ops, ["r", "r", "r", "c", "u"], "{text}");
    let b = lines_of(&text, "b");
    assert_eq!(b.iter().map(op).collect::<Vec<_>>(), ["r", "r"]);
    assert!(lines_of(&text, "e").is_empty());
    // In output order over both tables (readers interleave tables).
    let marks: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| op(l) == "r")
        .map(|l| {
            payload(&l["value"])["source"]["snapshot"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    // One chunk per table: a's is the snapshot's first (and its table's last), b's the last.
    assert_eq!(
        marks.first().map(String::as_str),
        Some("first"),
        "{marks:?}"
    );
    assert_eq!(marks.last().map(String::as_str), Some("last"), "{marks:?}");
    wait_for(
        "the snapshot recorded complete",
        &mut p,
        Duration::from_secs(30),
        |p| {
            p.checkpoint()
                .is_some_and(|c| c["snapshot"]["complete"] == true)
        },
    );
    p.stop();
    // A restart streams on, no snapshot again.
    let before = output(&p).len();
    p.start();
    sql(&db.name, "DELETE FROM a WHERE id = 1");
    wait_for("the delete", &mut p, Duration::from_secs(60), |p| {
        lines_of(&output(p)[before..], "a")
            .iter()
            .any(|l| op(l) == "d")
    });
    p.stop();
    let again = lines_of(&output(&p)[before..], "a");
    assert!(
        again.iter().all(|l| op(l) != "r"),
        "a restart read again: {again:?}"
    );
    assert!(p.log_text().contains("streaming from the checkpoint"));

    // no_data: nothing read.
    let mut nd = pipeline(&db.name, "mode = \"no_data\"");
    nd.start();
    sql(&db.name, "INSERT INTO a VALUES (5,'nd')");
    wait_for("the insert", &mut nd, Duration::from_secs(60), |p| {
        output(p).contains("\"nd\"")
    });
    nd.stop();
    assert!(lines_of(&output(&nd), "a").iter().all(|l| op(l) == "c"));

    // initial_only: the rows, then exit.
    let mut io = pipeline(&db.name, "mode = \"initial_only\"");
    io.spawn();
    let status = io
        .wait_exit(Duration::from_secs(60))
        .expect("initial_only exits");
    assert!(status.success(), "{}", io.log_text());
    let rows = lines_of(&output(&io), "a");
    assert_eq!(rows.len(), 4);
    assert!(rows.iter().all(|l| op(l) == "r"));
}

/// Every type: the snapshot's `after` of each row equals the binlog stream's final image of
/// it (the same encoder; the snapshot reads SQL results, the stream decodes row events).
#[test]
fn snapshot_mysql_values_equal_the_binlog_for_every_type() {
    if !mysql_enabled("snapshot_mysql_values_equal_the_binlog_for_every_type") {
        return;
    }
    let db = MyDb::create("tm_msnap_types");
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/debezium/workloads/mariadb");
    let create = std::fs::read_to_string(dir.join("all_types_setup.sql")).expect("setup");
    let rows = std::fs::read_to_string(dir.join("all_types.sql")).expect("workload");
    sql(&db.name, &create);
    let mut stream = pipeline(&db.name, "mode = \"no_data\"");
    stream.start();
    sql(&db.name, &rows);
    // BINARY(n) with trailing zero bytes: the binlog strips them, the decoder pads them back.
    sql(
        &db.name,
        "INSERT INTO all_types (id, bn, c) VALUES (10, x'0100', 'pad ')",
    );
    wait_mysql_marker(&mut stream, &db.name, Duration::from_secs(60));
    stream.stop();
    let streamed = replay(&output(&stream), "all_types");
    let mut snap = pipeline(&db.name, "mode = \"initial_only\"");
    snap.spawn();
    let status = snap
        .wait_exit(Duration::from_secs(60))
        .expect("initial_only exits");
    assert!(status.success(), "{}", snap.log_text());
    let text = output(&snap);
    let read = replay(&text, "all_types");
    assert!(read.rows.len() >= 3, "{text}");
    if streamed.rows != read.rows {
        let s = lines_of(&output(&stream), "all_types");
        let r = lines_of(&text, "all_types");
        panic!(
            "snapshot values differ from the binlog's:\nstream: {}\nsnapshot: {}",
            s.iter()
                .map(|l| payload(&l["value"])["after"].to_string())
                .collect::<Vec<_>>()
                .join("\n"),
            r.iter()
                .map(|l| payload(&l["value"])["after"].to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// The wide sibling: every supported type, `n` rows.
fn wide_rows(n: u32) -> String {
    format!(
        "INSERT INTO wide SELECT seq, seq % 128, seq % 256, seq % 32768, seq % 65536, seq, seq, -seq, seq, seq * 1000003, seq * 7,
           seq / 3, seq / 7, (seq % 100000) / 100, seq / 1000, seq % 99999, seq % 2, seq % 1024, seq, 1901 + seq % 255,
           DATE('2000-01-01') + INTERVAL (seq % 20000) DAY, SEC_TO_TIME(seq % 86400), SEC_TO_TIME((seq % 3600) + 0.123456),
           TIMESTAMP('2001-01-01') + INTERVAL seq MINUTE, TIMESTAMP('1960-01-01 00:00:00.001') + INTERVAL seq SECOND,
           FROM_UNIXTIME(1600000000 + seq), FROM_UNIXTIME(1600000000 + seq + 0.5),
           CONCAT('c', seq % 100), CONCAT('vc é ', seq), CONCAT('l', seq % 10), REPEAT('t', seq % 50), CONCAT('long ', seq),
           UNHEX(LPAD(HEX(seq), 8, '0')), UNHEX(LPAD(HEX(seq), 6, '0')), UNHEX(MD5(seq)), NULL,
           ELT(seq % 3 + 1, 'a', 'b', 'c'), ELT(seq % 3 + 1, 'x', 'y,z', 'x,z'), JSON_OBJECT('i', seq, 'a', JSON_ARRAY(1, 2)),
           IF(seq % 5 = 0, NULL, ST_GeomFromText(CONCAT('POINT(', seq, ' 1)'))), POINT(seq, -seq), 'w'
         FROM seq_1_to_{n}"
    )
}

/// 1,000,000 rows (and 50,000 rows of every type in a wide sibling), snapshotted while a
/// workload updates, deletes and inserts rows all over the key space: the sink's state equals
/// the tables, no key is read twice, memory stays bounded.
#[test]
fn snapshot_mysql_million_rows_with_concurrent_workload() {
    if !mysql_enabled("snapshot_mysql_million_rows_with_concurrent_workload") {
        return;
    }
    let db = MyDb::create("tm_msnap_big");
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/debezium/workloads/mariadb");
    let setup = std::fs::read_to_string(dir.join("all_types_setup.sql")).expect("setup");
    let (create, _) = setup.split_once(';').expect("CREATE TABLE first");
    sql(
        &db.name,
        &create.replace("CREATE TABLE all_types", "CREATE TABLE wide"),
    );
    sql(&db.name, &wide_rows(50_000));
    sql(
        &db.name,
        "CREATE TABLE big (id INT PRIMARY KEY, n BIGINT, v VARCHAR(40), d DECIMAL(12,2), t DATETIME(3));
         INSERT INTO big SELECT seq, seq * 31, CONCAT('value ', seq), seq / 100, TIMESTAMP('2020-01-01') + INTERVAL seq SECOND FROM seq_1_to_1000000;
         ANALYZE TABLE big, wide",
    );
    let mut p = pipeline(
        &db.name,
        "parallelism = 2\nrange_rows = 50000\nprogress = \"log\"\nprogress_interval = \"2s\"",
    );
    p.spawn();
    wait_for(
        "the snapshot to start",
        &mut p,
        Duration::from_secs(120),
        |p| p.log_text().contains("snapshot started"),
    );
    // 300 transactions over the whole key space of both tables (ranges read, being read, not
    // yet read), while the snapshot reads.
    let mut stmts = String::from("SET time_zone = '+00:00';");
    for n in 1..=300u32 {
        stmts.push_str(&format!(
            "BEGIN; UPDATE big SET v = 'updated {n}', n = -{n} WHERE id IN ({a}, {b});
             DELETE FROM big WHERE id = {c}; INSERT INTO big (id, v) VALUES ({i}, 'inserted');
             UPDATE big SET id = {m} WHERE id = {k};
             UPDATE wide SET vc = 'upd {n}', j = JSON_OBJECT('n', {n}) WHERE id = {w}; DELETE FROM wide WHERE id = {wd};
             COMMIT; DO SLEEP(0.02);",
            a = n * 2497 % 1_000_000 + 1,
            b = n * 1231 % 1_000_000 + 1,
            c = n * 3301 % 1_000_000 + 1,
            i = 1_000_000 + n,
            m = 2_000_000 + n,
            k = n * 4099 % 1_000_000 + 1,
            w = n * 163 % 50_000 + 1,
            wd = n * 97 % 50_000 + 1,
        ));
    }
    let workload = Command::new("mariadb")
        .args([
            "-uroot",
            "-h127.0.0.1",
            &format!("-P{}", port()),
            &db.name,
            "-e",
            &stmts,
        ])
        .status()
        .expect("workload");
    assert!(workload.success(), "workload failed");
    wait_for(
        "the snapshot to finish",
        &mut p,
        Duration::from_secs(900),
        |p| {
            p.checkpoint()
                .is_some_and(|c| c["snapshot"]["complete"] == true)
        },
    );
    wait_mysql_marker(&mut p, &db.name, Duration::from_secs(300));
    let rss = p.current_peak_rss_kib().unwrap_or(0);
    p.stop();
    let log = p.log_text();
    for table in ["big", "wide"] {
        let state = replay_file(&p.out, table);
        let dup = state.keys_read_twice();
        assert!(
            dup.is_empty(),
            "{table}: keys read twice inside one consistent snapshot: {dup:?}"
        );
        let count: usize = sql(&db.name, &format!("SELECT count(*) FROM {table}"))
            .parse()
            .unwrap();
        assert_eq!(state.rows.len(), count, "{table}");
        let reference = reference_state(&db.name, table);
        assert_same_state(
            &format!("{table}: snapshot under a workload"),
            &reference,
            &state,
        );
        eprintln!(
            "snapshot_mysql_million_rows {table}: ops {:?}, marks {:?}",
            state.ops, state.marks
        );
    }
    assert!(rss > 0 && rss < 768 * 1024, "peak RSS {rss} KiB");
    let line = log
        .lines()
        .find(|l| l.contains("snapshot read;"))
        .unwrap_or_default()
        .to_string();
    eprintln!(
        "snapshot_mysql_million_rows: peak RSS {} MiB; {line}",
        rss / 1024
    );
}

/// kill -9 in the middle of a snapshot: the restart resumes from the last completed range
/// (ranges recorded as done are not read again) and the final state is exact, with rows
/// changed between the two runs.
#[test]
fn snapshot_mysql_kill9_resumes_from_last_range() {
    if !mysql_enabled("snapshot_mysql_kill9_resumes_from_last_range") {
        return;
    }
    let db = MyDb::create("tm_msnap_kill");
    sql(
        &db.name,
        "CREATE TABLE k (id INT PRIMARY KEY, v INT, pad VARCHAR(300));
         INSERT INTO k SELECT seq, 0, REPEAT('p', 250) FROM seq_1_to_300000; ANALYZE TABLE k",
    );
    let cfg = "parallelism = 1\nrange_rows = 5000\nchunk_rows = 1000\nprogress = \"log\"\nprogress_interval = \"1s\"";
    let mut p = pipeline(&db.name, cfg);
    p.spawn();
    wait_for("a few ranges done", &mut p, Duration::from_secs(120), |p| {
        p.checkpoint()
            .and_then(|c| {
                c["snapshot"]["tables"][0]["done"]
                    .as_array()
                    .map(|d| d.len())
            })
            .is_some_and(|n| n >= 3)
    });
    p.kill9();
    let cp = p.checkpoint().expect("checkpoint");
    let snap = &cp["snapshot"];
    assert_eq!(
        snap["complete"], false,
        "the kill must land mid-snapshot: {cp}"
    );
    let done: Vec<u64> = snap["tables"][0]["done"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let bounds: Vec<i64> = snap["tables"][0]["bounds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b[0].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(bounds.len() >= 50, "{bounds:?}");
    let first_run = output(&p);
    sql(
        &db.name,
        "UPDATE k SET v = 1 WHERE id % 1000 = 7; DELETE FROM k WHERE id % 1000 = 9;
         INSERT INTO k SELECT 300000 + seq, 2, 'new' FROM seq_1_to_100",
    );
    p.spawn();
    wait_for(
        "the snapshot to finish",
        &mut p,
        Duration::from_secs(300),
        |p| {
            p.checkpoint()
                .is_some_and(|c| c["snapshot"]["complete"] == true)
        },
    );
    wait_mysql_marker(&mut p, &db.name, Duration::from_secs(60));
    p.stop();
    let log = p.log_text();
    assert!(
        log.contains("resuming it from the last completed range"),
        "{log}"
    );
    let all = output(&p);
    let second = replay(&all[first_run.len()..], "k");
    let in_done = |id: i64| {
        done.iter().any(|&r| {
            let (lo, hi) = range_bounds(&bounds, r as usize);
            id >= lo && id < hi
        })
    };
    let reread: Vec<&String> = second
        .reads
        .keys()
        .filter(|k| {
            in_done(
                serde_json::from_str::<Value>(k).unwrap()["id"]
                    .as_i64()
                    .unwrap(),
            )
        })
        .take(5)
        .collect();
    assert!(
        reread.is_empty(),
        "the restart re-read rows of ranges recorded as done: {reread:?}"
    );
    assert!(
        second.ops.get("r").copied().unwrap_or(0) > 0,
        "the restart read the remaining ranges"
    );
    let state = replay(&all, "k");
    let count: usize = sql(&db.name, "SELECT count(*) FROM k").parse().unwrap();
    assert_eq!(state.rows.len(), count);
    let reference = reference_state(&db.name, "k");
    assert_same_state("state after kill -9 and resume", &reference, &state);
}

/// Without the RELOAD privilege and with the global lock required, the pipeline stops with
/// a message that says what to grant and what else to do.
#[test]
fn snapshot_mysql_lock_refused_is_a_clear_error() {
    if !mysql_enabled("snapshot_mysql_lock_refused_is_a_clear_error") {
        return;
    }
    let db = MyDb::create("tm_msnap_lock");
    sql(
        &db.name,
        "CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1)",
    );
    let user = MyUser::create();
    sql(
        "",
        &format!("REVOKE RELOAD ON *.* FROM '{}'@'%'", user.name),
    );
    let mut spec = MySpec::new(&db.name);
    spec.user = Some((user.name.clone(), user.password.clone()));
    spec.pipeline_extra = "\n[snapshot]\nmysql_lock = \"global\"\n".into();
    let mut p = my_pipeline(spec);
    p.spawn();
    let status = p.wait_exit(Duration::from_secs(60)).expect("exits");
    assert!(!status.success());
    let log = p.log_text();
    assert!(
        log.contains("FLUSH TABLES WITH READ LOCK was refused") && log.contains("GRANT RELOAD"),
        "{log}"
    );
    assert!(
        log.contains("snapshot.mysql_lock = \\\"auto\\\"")
            || log.contains("snapshot.mysql_lock = \"auto\""),
        "{log}"
    );
}

/// `mysql_lock = "global"`: FLUSH TABLES WITH READ LOCK around the readers' snapshot start,
/// released at once; every reader shares the one snapshot (no key read twice, all rows).
#[test]
fn snapshot_mysql_global_lock_parallel_readers() {
    if !mysql_enabled("snapshot_mysql_global_lock_parallel_readers") {
        return;
    }
    let db = MyDb::create("tm_msnap_global");
    sql(
        &db.name,
        "CREATE TABLE g (id INT PRIMARY KEY, v VARCHAR(20));
         INSERT INTO g SELECT seq, CONCAT('v', seq) FROM seq_1_to_30000; ANALYZE TABLE g",
    );
    let mut p = pipeline(
        &db.name,
        "mode = \"initial_only\"\nmysql_lock = \"global\"\nparallelism = 3\nrange_rows = 2000\nchunk_rows = 500",
    );
    p.spawn();
    let status = p.wait_exit(Duration::from_secs(120)).expect("exits");
    let log = p.log_text();
    assert!(status.success(), "{log}");
    assert!(
        log.contains("FLUSH TABLES WITH READ LOCK around") && log.contains("lock_held_ms"),
        "{log}"
    );
    assert!(
        log.contains("readers=3"),
        "three readers under the lock:\n{log}"
    );
    let state = replay(&output(&p), "g");
    assert_eq!(state.rows.len(), 30_000);
    assert!(state.reads.values().all(|n| *n == 1));
}

/// Key ranges are cut two ways: a dense integer key (here BIGINT UNSIGNED up to 2^64 − 1) by
/// arithmetic on MIN and MAX, a sparse integer key and a text key by walking the key
/// (`LIMIT 1 OFFSET range_rows`): the debug log says which way, walked bounds are keys of the
/// table, and each table is read exactly once either way. A nullable `snapshot.key_columns`
/// key is not cut at all (a NULL key is in no range): its NULL-key rows are read too.
#[test]
fn snapshot_mysql_cuts_dense_sparse_and_text_keys() {
    if !mysql_enabled("snapshot_mysql_cuts_dense_sparse_and_text_keys") {
        return;
    }
    let db = MyDb::create("tm_msnap_cut");
    sql(
        &db.name,
        "CREATE TABLE d (id BIGINT UNSIGNED PRIMARY KEY, v INT);
         INSERT INTO d SELECT 18446744073709551615 - 6000 + seq, seq FROM seq_1_to_6000;
         CREATE TABLE s (id BIGINT PRIMARY KEY, v INT);
         INSERT INTO s SELECT seq * 1000, seq FROM seq_1_to_6000;
         CREATE TABLE t (k VARCHAR(20) PRIMARY KEY, v INT);
         INSERT INTO t SELECT CONCAT('key-', seq), seq FROM seq_1_to_6000;
         CREATE TABLE n (id INT NULL, v INT, KEY (id));
         INSERT INTO n SELECT IF(seq % 10 = 0, NULL, seq), seq FROM seq_1_to_6000;
         ANALYZE TABLE d, s, t, n",
    );
    let mut p = pipeline(
        &db.name,
        &format!(
            "mode = \"initial_only\"\nparallelism = 2\nrange_rows = 1000\nchunk_rows = 500\nprogress = \"off\"\nkey_columns = {{ \"{}.n\" = [\"id\"] }}",
            db.name
        ),
    );
    p.spawn();
    let status = p.wait_exit(Duration::from_secs(120)).expect("exits");
    let log = p.log_text();
    assert!(status.success(), "{log}");
    let cp = p.checkpoint().expect("checkpoint");
    let bounds = |table: &str| -> Vec<String> {
        let name = format!("{}.{table}", db.name);
        let t = cp["snapshot"]["tables"]
            .as_array()
            .expect("snapshot tables")
            .iter()
            .find(|t| t["table"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} in {cp}"));
        t["bounds"]
            .as_array()
            .expect("bounds")
            .iter()
            .map(|b| b[0].as_str().expect("text bound").to_string())
            .collect()
    };
    let all = output(&p);
    for table in ["d", "s", "t"] {
        let b = bounds(table);
        // About one range per 1,000 estimated rows (InnoDB's estimate, not the exact count).
        assert!((3..=9).contains(&b.len()), "{table}: {b:?}");
        let state = replay(&all, table);
        assert_eq!(state.rows.len(), 6000, "{table}");
        assert!(state.reads.values().all(|n| *n == 1), "{table}");
    }
    // Which way each was cut, from the debug log.
    let cut_line = |table: &str| {
        let name = format!("{}.{table}", db.name);
        log.lines()
            .find(|l| l.contains("key ranges:") && l.contains(&name))
            .unwrap_or_else(|| panic!("no key-range line for {name}:\n{log}"))
            .to_string()
    };
    assert!(
        cut_line("d").contains("by arithmetic on MIN and MAX"),
        "{}",
        cut_line("d")
    );
    assert!(
        cut_line("s").contains("walking the key"),
        "{}",
        cut_line("s")
    );
    // Dense: evenly spaced integers above MIN, increasing (parsed as u64: none beyond MAX).
    let d: Vec<u64> = bounds("d").iter().map(|v| v.parse().unwrap()).collect();
    let lo = u64::MAX - 5999;
    assert!(d.windows(2).all(|w| w[0] < w[1]), "{d:?}");
    assert!(d.iter().all(|v| *v > lo), "{d:?}");
    let step = (d[1] - d[0]) as i64;
    assert!(
        d.windows(2)
            .all(|w| ((w[1] - w[0]) as i64 - step).abs() <= 1),
        "{d:?}"
    );
    // Sparse (span 6,000,000 for 6,000 keys) and text: walked, so every bound is a key.
    assert!(bounds("s")
        .iter()
        .all(|v| v.parse::<i64>().unwrap() % 1000 == 0));
    assert!(bounds("t").iter().all(|v| v.starts_with("key-")));
    // Nullable user-given key: one range, every row (600 with a NULL key) read once.
    assert!(bounds("n").is_empty(), "{:?}", bounds("n"));
    assert!(
        log.contains("nullable columns: the table is read in one range"),
        "{log}"
    );
    let reads: Vec<Value> = lines_of(&all, "n")
        .into_iter()
        .filter(|v| op(v) == "r")
        .collect();
    assert_eq!(reads.len(), 6000);
    let null_ids = reads
        .iter()
        .filter(|v| payload(&v["value"])["after"]["id"].is_null())
        .count();
    assert_eq!(null_ids, 600);
}
