//! The MySQL/MariaDB source end to end against the local server: operations, tables without a
//! primary key, DDL mid-stream, a 1,000,000-row transaction in bounded memory, dropped
//! connections and kill -9 restarts without loss or reordering.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::Value;

use super::mysql_support::{mysql_enabled, payload, pipeline, sql, MyDb, MySpec, MyUser};

fn ops(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| !l["value"].is_null())
        .map(|l| {
            let p = payload(l);
            let row = if p["op"] == "d" {
                &p["before"]
            } else {
                &p["after"]
            };
            format!("{} {}", p["op"].as_str().unwrap_or("?"), row)
        })
        .collect()
}

#[test]
fn mysql_inserts_updates_deletes_and_tables_without_keys() {
    if !mysql_enabled("mysql_inserts_updates_deletes_and_tables_without_keys") {
        return;
    }
    let db = MyDb::create("tm_ops");
    sql(&db.name, "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20)); CREATE TABLE nopk (a INT, b VARCHAR(5))");
    let mut p = pipeline(MySpec::new(&db.name));
    p.start();
    sql(
        &db.name,
        "INSERT INTO t VALUES (1,'a'),(2,'b'),(3,'c'); \
         UPDATE t SET v = CONCAT(v, '!') WHERE id <= 2; \
         UPDATE t SET id = 10 WHERE id = 3; \
         DELETE FROM t WHERE id IN (1, 2); \
         INSERT INTO nopk VALUES (1,'x'),(1,'x'); UPDATE nopk SET b = 'y'; DELETE FROM nopk",
    );
    // 3 inserts, 2 updates, key change (delete + tombstone + create), 2 deletes (+ tombstones),
    // no-PK: 2 inserts, 2 updates, 2 deletes (+ tombstones).
    let lines = p.wait_lines(3 + 2 + 3 + 4 + 2 + 2 + 4, Duration::from_secs(60));
    let got = ops(&lines);
    let want = [
        r#"c {"id":1,"v":"a"}"#,
        r#"c {"id":2,"v":"b"}"#,
        r#"c {"id":3,"v":"c"}"#,
        r#"u {"id":1,"v":"a!"}"#,
        r#"u {"id":2,"v":"b!"}"#,
        r#"d {"id":3,"v":"c"}"#,
        r#"c {"id":10,"v":"c"}"#,
        r#"d {"id":1,"v":"a!"}"#,
        r#"d {"id":2,"v":"b!"}"#,
        r#"c {"a":1,"b":"x"}"#,
        r#"c {"a":1,"b":"x"}"#,
        r#"u {"a":1,"b":"y"}"#,
        r#"u {"a":1,"b":"y"}"#,
        r#"d {"a":1,"b":"y"}"#,
        r#"d {"a":1,"b":"y"}"#,
    ];
    assert_eq!(got, want, "{}", p.log_text());
    // Keys: the primary key, none for the table without one.
    assert_eq!(lines[0]["key"], serde_json::json!({"id": 1}));
    let nopk: Vec<&Value> = lines
        .iter()
        .filter(|l| l["topic"].as_str().is_some_and(|t| t.ends_with(".nopk")))
        .collect();
    assert!(nopk.iter().all(|l| l["key"].is_null()));
    // The before image of an update is the full old row.
    let u = payload(&lines[3]);
    assert_eq!(u["before"], serde_json::json!({"id": 1, "v": "a"}));
    p.stop();
}

/// `(op, source.thread, source.query)` of every data event (tombstones left out).
fn queries(lines: &[Value]) -> Vec<(String, Value, Value)> {
    lines
        .iter()
        .filter(|l| !l["value"].is_null())
        .map(|l| {
            let p = payload(l);
            (
                p["op"].as_str().unwrap_or("?").to_string(),
                p["source"]["thread"].clone(),
                p["source"]["query"].clone(),
            )
        })
        .collect()
}

#[test]
fn mysql_include_query_puts_the_statement_in_source_query() {
    if !mysql_enabled("mysql_include_query_puts_the_statement_in_source_query") {
        return;
    }
    let db = MyDb::create("tm_query");
    sql(
        &db.name,
        "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(40))",
    );
    let mut spec = MySpec::new(&db.name);
    spec.source_extra = "include_query = true".into();
    let mut on = pipeline(spec);
    on.start();
    // The default (include_query = false) on the same statements: source.query stays null.
    let mut off = pipeline(MySpec::new(&db.name));
    off.start();
    let q1 = "INSERT INTO t VALUES (1, 'a'), (2, 'it''s \"quoted\"')";
    let q2 = "UPDATE t SET v = CONCAT(v, '!') WHERE id <= 2";
    let q3 = "DELETE FROM t WHERE id = 1";
    let (t1, t2, t3) = (
        "INSERT INTO t VALUES (3, 'é😀')",
        "UPDATE t SET v = 'z' WHERE id = 3",
        "DELETE FROM t WHERE id = 2",
    );
    for q in [q1, q2, q3] {
        sql(&db.name, q);
    }
    sql(&db.name, &format!("BEGIN; {t1}; {t2}; {t3}; COMMIT"));
    // c c u u d(+tombstone) | c u d(+tombstone)
    let want: Vec<(String, Value, Value)> = [
        ("c", q1),
        ("c", q1),
        ("u", q2),
        ("u", q2),
        ("d", q3),
        ("c", t1),
        ("u", t2),
        ("d", t3),
    ]
    .iter()
    .map(|(op, q)| (op.to_string(), Value::Null, Value::from(*q)))
    .collect();
    let got = queries(&on.wait_lines(10, Duration::from_secs(60)));
    // MariaDB starts transactions with a GTID event, not a BEGIN query: no thread id (as
    // Debezium's MariaDB connector: null).
    assert_eq!(got, want, "{}", on.log_text());
    let got_off = queries(&off.wait_lines(10, Duration::from_secs(60)));
    assert_eq!(got_off.len(), want.len());
    assert!(
        got_off.iter().all(|(_, t, q)| t.is_null() && q.is_null()),
        "{got_off:?}"
    );
    on.stop();
    off.stop();
}

#[test]
fn mysql_ddl_mid_stream_renames_and_new_tables() {
    if !mysql_enabled("mysql_ddl_mid_stream_renames_and_new_tables") {
        return;
    }
    let db = MyDb::create("tm_ddl");
    sql(
        &db.name,
        "CREATE TABLE t (id INT PRIMARY KEY, a VARCHAR(10))",
    );
    let mut p = pipeline(MySpec::new(&db.name));
    p.start();
    sql(
        &db.name,
        "INSERT INTO t VALUES (1, 'x'); \
         ALTER TABLE t ADD COLUMN b INT; INSERT INTO t VALUES (2, 'y', 5); \
         ALTER TABLE t DROP COLUMN a; INSERT INTO t VALUES (3, 6); \
         ALTER TABLE t CHANGE b c INT; INSERT INTO t VALUES (4, 7); \
         ALTER TABLE t MODIFY c VARCHAR(10); INSERT INTO t VALUES (5, 'eight'); \
         CREATE TABLE u (k INT PRIMARY KEY); INSERT INTO u VALUES (1); DROP TABLE u; \
         INSERT INTO t VALUES (6, 'nine')",
    );
    let lines = p.wait_lines(7, Duration::from_secs(60));
    assert_eq!(
        ops(&lines),
        [
            r#"c {"id":1,"a":"x"}"#,
            r#"c {"id":2,"a":"y","b":5}"#,
            r#"c {"id":3,"b":6}"#,
            r#"c {"id":4,"c":7}"#,
            r#"c {"id":5,"c":"eight"}"#,
            r#"c {"k":1}"#,
            r#"c {"id":6,"c":"nine"}"#,
        ],
        "{}",
        p.log_text()
    );
    p.stop();
}

/// Numbers of the rows in the output, in order.
fn ids(lines: &[Value]) -> Vec<i64> {
    lines
        .iter()
        .filter(|l| !l["value"].is_null())
        .filter_map(|l| payload(l)["after"]["id"].as_i64())
        .collect()
}

#[test]
fn mysql_dropped_connections_lose_nothing() {
    if !mysql_enabled("mysql_dropped_connections_lose_nothing") {
        return;
    }
    let db = MyDb::create("tm_drop");
    let user = MyUser::create();
    sql(&db.name, "CREATE TABLE t (id INT PRIMARY KEY, v INT)");
    let mut spec = MySpec::new(&db.name);
    spec.user = Some((user.name.clone(), user.password.clone()));
    let mut p = pipeline(spec);
    p.start();
    let mut next = 1;
    for round in 0..5 {
        let stmts: Vec<String> = (0..20)
            .map(|i| format!("INSERT INTO t VALUES ({}, {round})", next + i))
            .collect();
        next += 20;
        sql(&db.name, &stmts.join(";"));
        // Wait for the (re)connected session, then cut it.
        let deadline = Instant::now() + Duration::from_secs(20);
        while user.kill_connections() == 0 {
            assert!(
                Instant::now() < deadline,
                "no connection of {} to kill:\n{}",
                user.name,
                p.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let lines = p.wait_lines(100, Duration::from_secs(90));
    assert_eq!(
        ids(&lines),
        (1..=100).collect::<Vec<_>>(),
        "{}",
        p.log_text()
    );
    assert!(p.log_text().contains("reconnecting"), "{}", p.log_text());
    p.stop();
}

#[test]
fn mysql_kill9_restarts_lose_and_reorder_nothing() {
    if !mysql_enabled("mysql_kill9_restarts_lose_and_reorder_nothing") {
        return;
    }
    const TXNS: i64 = 400;
    const ROWS: i64 = 50;
    let db = MyDb::create("tm_kill");
    sql(&db.name, "CREATE TABLE t (id INT PRIMARY KEY, v INT)");
    let mut p = pipeline(MySpec::new(&db.name));
    p.start();
    // The workload runs in the background while the pipeline is killed and restarted.
    let name = db.name.clone();
    let writer = std::thread::spawn(move || {
        for t in 0..TXNS {
            let values: Vec<String> = (0..ROWS)
                .map(|r| format!("({}, {t})", t * ROWS + r + 1))
                .collect();
            sql(
                &name,
                &format!("BEGIN; INSERT INTO t VALUES {}; COMMIT", values.join(",")),
            );
        }
    });
    let mut rng = rand::thread_rng();
    let mut kills = 0;
    let deadline = Instant::now() + Duration::from_secs(240);
    while !writer.is_finished() || p.line_count() < (TXNS * ROWS) as usize {
        assert!(
            Instant::now() < deadline,
            "{} lines after 240 s:\n{}",
            p.line_count(),
            p.log_text()
        );
        std::thread::sleep(Duration::from_millis(rng.gen_range(100..700)));
        if kills < 8 {
            p.kill9();
            kills += 1;
            p.start();
        }
        if writer.is_finished() && p.line_count() >= (TXNS * ROWS) as usize {
            break;
        }
    }
    writer.join().expect("writer");
    let lines = p.wait_lines((TXNS * ROWS) as usize, Duration::from_secs(120));
    p.stop();
    let got = ids(&lines);
    // Every row, first appearances in commit order; repeats only replay a suffix after a
    // restart (duplicates after the last checkpoint), never skip.
    let mut seen = HashSet::new();
    let mut first = Vec::new();
    let mut max = 0;
    for &id in &got {
        if seen.insert(id) {
            assert_eq!(id, max + 1, "row {id} out of order after {max}");
            max = id;
            first.push(id);
        } else {
            assert!(id <= max);
        }
    }
    assert_eq!(first.len() as i64, TXNS * ROWS, "rows lost ({kills} kills)");
    eprintln!(
        "{kills} kills, {} lines for {} rows",
        got.len(),
        TXNS * ROWS
    );
}

#[test]
fn mysql_million_row_transaction_in_bounded_memory() {
    if !mysql_enabled("mysql_million_row_transaction_in_bounded_memory") {
        return;
    }
    const ROWS: usize = 1_000_000;
    let db = MyDb::create("tm_big");
    sql(
        &db.name,
        "CREATE TABLE big (id INT PRIMARY KEY, payload VARCHAR(64))",
    );
    let mut spec = MySpec::new(&db.name);
    spec.sink_extra = "include_topic = false".into();
    spec.pipeline_extra = "max_queue_bytes = 16777216".into();
    spec.source_extra = "max_chunk_rows = 20000".into();
    let mut p = pipeline(spec);
    p.start();
    // MariaDB's Sequence engine; MySQL 8 needs a recursive CTE (and a deeper recursion limit).
    if sql("", "SELECT VERSION()").contains("MariaDB") {
        sql(
            &db.name,
            &format!("INSERT INTO big SELECT seq, MD5(seq) FROM seq_1_to_{ROWS}"),
        );
    } else {
        sql(&db.name, &format!("SET SESSION cte_max_recursion_depth = {ROWS}; INSERT INTO big WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {ROWS}) SELECT n, MD5(n) FROM s"));
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut peak = 0;
    while p.line_count() < ROWS {
        assert!(
            Instant::now() < deadline,
            "{} of {ROWS} after 300 s:\n{}",
            p.line_count(),
            p.log_text()
        );
        assert!(p.try_wait().is_none(), "tidemark exited:\n{}", p.log_text());
        peak = peak.max(p.current_peak_rss_kib().unwrap_or(0));
        std::thread::sleep(Duration::from_millis(250));
    }
    peak = peak.max(p.current_peak_rss_kib().unwrap_or(0));
    p.stop();
    let file = std::fs::File::open(&p.out).expect("output");
    let mut next = 1u64;
    for line in std::io::BufRead::lines(std::io::BufReader::new(file)) {
        let v: Value = serde_json::from_str(&line.expect("read")).expect("json");
        assert_eq!(v["after"]["id"].as_u64(), Some(next), "row order");
        next += 1;
    }
    assert_eq!(next as usize, ROWS + 1);
    // The transaction's binlog alone is ~100 MB and its JSON ~450 MB: memory stays far below.
    eprintln!("peak RSS {} MiB", peak / 1024);
    assert!(peak < 400 * 1024, "peak RSS {} MiB", peak / 1024);
}

/// While the server cannot be reached at startup (transient: the startup decision retries with
/// the streams' backoff, as the PostgreSQL source's does), the process is healthy but not
/// ready, and a shutdown during the wait is a clean exit.
#[test]
fn mysql_readyz_is_503_while_the_server_cannot_be_reached() {
    if !mysql_enabled("mysql_readyz_is_503_while_the_server_cannot_be_reached") {
        return;
    }
    let mut p = pipeline(MySpec::new("test"));
    let config = std::fs::read_to_string(&p.config).expect("config");
    let port = format!("127.0.0.1:{}", super::mysql_support::port());
    assert!(config.contains(&port), "{config}");
    // Nothing listens on port 1.
    std::fs::write(&p.config, config.replace(&port, "127.0.0.1:1")).expect("config");
    p.spawn();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !p
        .log_text()
        .contains("transient error at startup; retrying")
    {
        assert!(
            Instant::now() < deadline,
            "no retry logged:\n{}",
            p.log_text()
        );
        assert!(
            p.try_wait().is_none(),
            "a transient error is retried, not fatal:\n{}",
            p.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        p.log_text()
            .contains("mysql source: transient error at startup"),
        "{}",
        p.log_text()
    );
    while super::support::http_get(p.metrics_port, "/healthz").is_none() {
        assert!(Instant::now() < deadline, "no /healthz:\n{}", p.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        super::support::http_get(p.metrics_port, "/healthz").map(|r| r.0),
        Some(200)
    );
    let (status, _) = super::support::http_get(p.metrics_port, "/readyz").expect("readyz");
    assert_eq!(status, 503, "{}", p.log_text());
    std::thread::sleep(Duration::from_millis(1500));
    assert!(p.try_wait().is_none(), "still retrying:\n{}", p.log_text());
    assert_eq!(
        p.stop().map(|s| s.success()),
        Some(true),
        "a shutdown while waiting to retry ends cleanly:\n{}",
        p.log_text()
    );
}
