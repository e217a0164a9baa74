//! End-to-end tests of the `tidemark run` pipeline: a real PostgreSQL → the Debezium JSON-lines
//! sink, one child process per test, each in its own database with its own slot.
//!
//! Operations (insert, update, delete, primary-key change, truncate, unchanged TOAST, tables
//! without a primary key, replica identity DEFAULT and FULL, logical decoding messages) are
//! checked against the committed Debezium 3.6 captures `misc_*` (see `pg_types.rs` for the
//! harness); the rest (replica identity NOTHING, schema changes, the headers of a key change, a
//! 1,000,000-row streamed transaction) against what Debezium documents, by hand.

use std::time::Duration;

use serde_json::{json, Value};

use super::pg_types::replay_fixture;
use super::support::{metric, pg_enabled, psql, Pipeline, PipelineSpec, TestDb};

const MISC_TABLES: &[&str] = &[
    "public.nopk_full",
    "public.nopk_default",
    "public.pk_change",
    "public.pk_change_full",
    "public.trunc",
    "public.toast_default",
    "public.toast_full",
];

/// Insert, update, delete, primary-key change (DEFAULT and FULL), tables without a primary key,
/// unchanged TOAST (placeholder under DEFAULT, the value under FULL), logical decoding messages
/// (transactional and not), truncate skipped by default: all as Debezium emitted them.
#[test]
fn misc_operations_match_debezium() {
    if pg_enabled("misc_operations_match_debezium") {
        replay_fixture("misc_default", MISC_TABLES, "", "");
    }
}

/// TRUNCATE as `op: t` with a null key, like Debezium with `skipped.operations=none`.
#[test]
fn truncate_matches_debezium_skipped_operations_none() {
    if pg_enabled("truncate_matches_debezium_skipped_operations_none") {
        replay_fixture(
            "misc_skipped_none",
            MISC_TABLES,
            "binary = true",
            "emit_truncate = true",
        );
    }
}

fn payload(line: &Value) -> &Value {
    let v = &line["value"];
    v.get("payload").unwrap_or(v)
}

/// A primary-key change is Debezium's delete (header `__debezium.newkey`) + tombstone + create
/// (header `__debezium.oldkey`), all at the LSN of the UPDATE.
#[test]
fn primary_key_change_has_debezium_headers() {
    if !pg_enabled("primary_key_change_has_debezium_headers") {
        return;
    }
    let db = TestDb::create("tm_pk");
    psql(&db.name, "CREATE TABLE k (id int PRIMARY KEY, v text)");
    let mut p = Pipeline::new(PipelineSpec::new(&db.name, &["public.k"]));
    p.start();
    psql(
        &db.name,
        "INSERT INTO k VALUES (1, 'a'); UPDATE k SET id = 2, v = 'b' WHERE id = 1",
    );
    let lines = p.wait_lines(4, Duration::from_secs(30));
    assert_eq!(lines.len(), 4, "{lines:#?}");
    let ops: Vec<Value> = lines.iter().map(|l| payload(l)["op"].clone()).collect();
    assert_eq!(ops, vec![json!("c"), json!("d"), Value::Null, json!("c")]);
    assert_eq!(lines[1]["key"], json!({"id": 1}));
    assert_eq!(lines[1]["headers"], json!({"__debezium.newkey": {"id": 2}}));
    assert_eq!(lines[2]["key"], json!({"id": 1}));
    assert_eq!(lines[2]["value"], Value::Null, "tombstone");
    assert_eq!(lines[3]["key"], json!({"id": 2}));
    assert_eq!(lines[3]["headers"], json!({"__debezium.oldkey": {"id": 1}}));
    assert_eq!(payload(&lines[3])["after"], json!({"id": 2, "v": "b"}));
    assert_eq!(
        payload(&lines[1])["source"]["lsn"],
        payload(&lines[3])["source"]["lsn"]
    );
}

/// REPLICA IDENTITY NOTHING: inserts stream; PostgreSQL itself refuses UPDATE/DELETE on a
/// published table without identity, so nothing can be lost silently. A table without a primary
/// key under DEFAULT behaves the same; under FULL its updates and deletes carry the old row
/// and a null key (covered by `misc_operations_match_debezium`).
#[test]
fn replica_identity_nothing_streams_inserts_and_the_server_refuses_updates() {
    if !pg_enabled("replica_identity_nothing_streams_inserts_and_the_server_refuses_updates") {
        return;
    }
    let db = TestDb::create("tm_ident");
    psql(
        &db.name,
        "CREATE TABLE n (id int PRIMARY KEY, v text); ALTER TABLE n REPLICA IDENTITY NOTHING;
         CREATE TABLE nopk (a int, b text)",
    );
    let mut p = Pipeline::new(PipelineSpec::new(&db.name, &["public.n", "public.nopk"]));
    p.start();
    psql(
        &db.name,
        "INSERT INTO n VALUES (1, 'x'); INSERT INTO nopk VALUES (7, 'y')",
    );
    for sql in [
        "UPDATE n SET v = 'z'",
        "DELETE FROM n",
        "UPDATE nopk SET b = 'z'",
    ] {
        let out = std::process::Command::new("psql")
            .args([
                "-X",
                "-q",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                &db.name,
                "-c",
                sql,
            ])
            .output()
            .expect("psql");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("does not have a replica identity"),
            "{sql}: {err}"
        );
    }
    psql(&db.name, "INSERT INTO n VALUES (2, 'w')");
    let lines = p.wait_lines(3, Duration::from_secs(30));
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert_eq!(lines[0]["key"], json!({"id": 1}));
    assert_eq!(payload(&lines[0])["after"], json!({"id": 1, "v": "x"}));
    assert_eq!(lines[1]["key"], Value::Null, "no primary key: null key");
    assert_eq!(payload(&lines[1])["after"], json!({"a": 7, "b": "y"}));
    assert_eq!(payload(&lines[2])["after"], json!({"id": 2, "v": "w"}));
}

/// The field names of the `after` struct in a schemas-enabled value.
fn after_fields(line: &Value) -> Vec<(String, String)> {
    let fields = line["value"]["schema"]["fields"]
        .as_array()
        .expect("envelope fields");
    let after = fields
        .iter()
        .find(|f| f["field"] == "after")
        .expect("after field");
    after["fields"]
        .as_array()
        .expect("after struct fields")
        .iter()
        .map(|f| {
            (
                f["field"].as_str().unwrap_or_default().to_string(),
                f["type"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn names(fields: &[(String, String)]) -> Vec<&str> {
    fields.iter().map(|f| f.0.as_str()).collect()
}

/// ADD / DROP / ALTER TYPE / RENAME column and a new table, all committed before the pipeline
/// decodes them (so the catalog it reads is already the final one): every event carries the
/// schema of its own moment.
#[test]
fn schema_changes_mid_stream_make_new_schema_versions() {
    if !pg_enabled("schema_changes_mid_stream_make_new_schema_versions") {
        return;
    }
    let db = TestDb::create("tm_ddl");
    psql(
        &db.name,
        "CREATE TABLE s (id int PRIMARY KEY, a int, b text)",
    );
    let mut spec = PipelineSpec::new(&db.name, &[]);
    spec.sink_extra = "schemas_enable = true".into();
    let mut p = Pipeline::new(spec);
    p.start();
    // Hold the pipeline back: the whole DDL sequence commits before it decodes any of it.
    let pid = p.pid().expect("running");
    let _ = std::process::Command::new("kill")
        .args(["-STOP", &pid.to_string()])
        .status();
    psql(
        &db.name,
        "INSERT INTO s VALUES (1, 10, 'x');
         ALTER TABLE s ADD COLUMN c numeric(5,2);
         INSERT INTO s VALUES (2, 20, 'y', 1.5);
         ALTER TABLE s DROP COLUMN a;
         INSERT INTO s VALUES (3, 'z', 2.25);
         ALTER TABLE s ALTER COLUMN c TYPE text;
         INSERT INTO s VALUES (4, 'w', 'txt');
         ALTER TABLE s RENAME COLUMN b TO bb;
         INSERT INTO s VALUES (5, 'v', 't2');
         CREATE TABLE s2 (id int PRIMARY KEY, v text);
         INSERT INTO s2 VALUES (1, 'new');
         UPDATE s SET bb = 'u' WHERE id = 1",
    );
    let _ = std::process::Command::new("kill")
        .args(["-CONT", &pid.to_string()])
        .status();
    let lines = p.wait_lines(7, Duration::from_secs(30));
    assert_eq!(lines.len(), 7, "{lines:#?}");
    let after = |i: usize| payload(&lines[i])["after"].clone();
    assert_eq!(names(&after_fields(&lines[0])), ["id", "a", "b"]);
    assert_eq!(after(0), json!({"id": 1, "a": 10, "b": "x"}));
    // numeric(5,2) 1.50: Connect Decimal, base64 of the unscaled 150 (0x0096).
    assert_eq!(names(&after_fields(&lines[1])), ["id", "a", "b", "c"]);
    assert_eq!(after(1), json!({"id": 2, "a": 20, "b": "y", "c": "AJY="}));
    assert_eq!(names(&after_fields(&lines[2])), ["id", "b", "c"]);
    assert_eq!(after(2), json!({"id": 3, "b": "z", "c": "AOE="}));
    let f3 = after_fields(&lines[3]);
    assert_eq!(names(&f3), ["id", "b", "c"]);
    assert_eq!(f3[2].1, "string", "c is text after ALTER TYPE");
    assert_eq!(after(3), json!({"id": 4, "b": "w", "c": "txt"}));
    assert_eq!(names(&after_fields(&lines[4])), ["id", "bb", "c"]);
    assert_eq!(after(4), json!({"id": 5, "bb": "v", "c": "t2"}));
    assert_eq!(lines[5]["topic"], "tm.public.s2");
    assert_eq!(after(5), json!({"id": 1, "v": "new"}));
    assert_eq!(payload(&lines[6])["op"], "u");
    assert_eq!(after(6), json!({"id": 1, "bb": "u", "c": null}));
}

/// One transaction of 1,000,000 rows (~330 MB of pgoutput) is streamed by the server while it
/// is in progress (pgoutput streaming), spilled to disk by the source, and replayed chunk by
/// chunk after Stream Commit: every row arrives exactly once and in order, and the engine's peak
/// RSS stays far below what holding the transaction would take.
#[test]
fn million_row_transaction_streams_with_bounded_memory() {
    if !pg_enabled("million_row_transaction_streams_with_bounded_memory") {
        return;
    }
    const ROWS: usize = 1_000_000;
    let db = TestDb::create("tm_big");
    psql(
        &db.name,
        "CREATE TABLE big (id int PRIMARY KEY, payload text)",
    );
    let mut spec = PipelineSpec::new(&db.name, &["public.big"]);
    spec.sink_extra = "include_topic = false".into();
    spec.pipeline_extra = "max_queue_bytes = 16777216".into();
    let mut p = Pipeline::new(spec);
    p.start();
    let wal_before = psql(&db.name, "SELECT pg_current_wal_lsn()");
    psql(
        &db.name,
        &format!(
            "INSERT INTO big SELECT g, repeat(md5(g::text), 9) FROM generate_series(1, {ROWS}) g"
        ),
    );
    let wal_bytes: f64 = psql(
        &db.name,
        &format!("SELECT pg_current_wal_lsn() - '{wal_before}'::pg_lsn"),
    )
    .parse()
    .expect("wal bytes");
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    let mut peak = 0;
    while p.line_count() < ROWS {
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {ROWS} rows after 300 s:\n{}",
            p.line_count(),
            p.log_text()
        );
        assert!(p.try_wait().is_none(), "tidemark exited:\n{}", p.log_text());
        peak = peak.max(p.current_peak_rss_kib().unwrap_or(0));
        std::thread::sleep(Duration::from_millis(250));
    }
    peak = peak.max(p.current_peak_rss_kib().unwrap_or(0));
    let metrics = p.metrics();
    // Streamed: the server sent Stream Start/Stop blocks, the source spilled them.
    assert!(
        p.log_text().contains("streaming=true")
            && p.log_text().contains("replaying streamed transaction"),
        "{}",
        p.log_text()
    );
    assert_eq!(
        metric(&metrics, "tidemark_source_events_total{").map(|v| v as usize),
        Some(ROWS),
        "{metrics}"
    );
    p.stop();
    // Every row once, in order.
    let file = std::fs::File::open(&p.out).expect("output");
    let mut next = 1u64;
    for line in std::io::BufRead::lines(std::io::BufReader::new(file)) {
        let line = line.expect("read");
        let v: Value = serde_json::from_str(&line).expect("json");
        assert_eq!(v["op"], "c");
        assert_eq!(v["after"]["id"].as_u64(), Some(next), "row order");
        next += 1;
    }
    assert_eq!(next - 1, ROWS as u64);
    let peak_mb = peak as f64 / 1024.0;
    let wal_mb = wal_bytes / 1e6;
    eprintln!("1M-row transaction: WAL {wal_mb:.0} MB, tidemark peak RSS {peak_mb:.0} MiB");
    // Holding the transaction would take at least its wire size (~330 MB) plus the decoded
    // rows; the spill budget (64 MiB) + the queue (16 MiB) + one chunk bound the engine.
    assert!(
        peak_mb < 250.0 && peak_mb < wal_mb * 0.75,
        "peak RSS {peak_mb:.0} MiB for a {wal_mb:.0} MB transaction"
    );
}
