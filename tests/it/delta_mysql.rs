//! MariaDB → Delta Lake: a randomized workload (inserts, updates, primary-key changes,
//! deletes) through the MySQL source into a Delta mirror and a Delta changelog, read back by
//! delta-rs' Python binding (`scripts/delta_read.py`), also across a kill -9 and restart: the
//! mirror equals the MariaDB table value for value, and the changelog holds every change
//! exactly once. Gated by `TIDEMARK_TEST_DELTA=1` and `TIDEMARK_TEST_MYSQL=1`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use serde_json::Value;

use crate::delta_support::{delta_enabled, delta_sink, read};
use crate::mysql_support::{mysql_enabled, payload, pipeline, random_txn, sql, MyDb, MySpec};

/// `(column, delta_read.py kind)` of table `t`, and the MariaDB expression of the same text.
const COLS: [(&str, &str, &str); 6] = [
    ("id", "int", "id"),
    ("v", "text", "v"),
    ("n", "int", "n"),
    ("amount", "decimal", "amount"),
    ("d", "days", "DATEDIFF(d, '1970-01-01')"),
    (
        "ts",
        "micros",
        "TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', ts)",
    ),
];

/// The MariaDB rows in the reader's canonical text form, ordered by id.
fn mariadb_rows(db: &str) -> Value {
    let exprs: Vec<String> = COLS
        .iter()
        .map(|(_, _, e)| format!("COALESCE(CAST({e} AS CHAR), '<null>')"))
        .collect();
    let out = sql(
        db,
        &format!("SELECT {} FROM t ORDER BY id", exprs.join(", ")),
    );
    let rows: Vec<Value> = out
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            Value::Array(
                l.split('\t')
                    .map(|v| match v {
                        "<null>" => Value::Null,
                        v => Value::String(v.to_owned()),
                    })
                    .collect(),
            )
        })
        .collect();
    Value::Array(rows)
}

fn spec() -> String {
    let v: Vec<Value> = COLS
        .iter()
        .map(|(c, k, _)| serde_json::json!([c, k]))
        .collect();
    Value::Array(v).to_string()
}

fn is_table(path: &str) -> bool {
    std::path::Path::new(path).join("_delta_log").is_dir()
}

/// Distinct source positions of the data events of the JSON-lines sink (which may repeat
/// events after a kill -9, but never loses one): the number of changes captured.
fn captured_changes(out: &std::path::Path) -> usize {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    let mut positions = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).expect("json line");
        let p = payload(&v);
        if p.is_null() || p.get("op").is_none() {
            continue; // a tombstone
        }
        let s = &p["source"];
        positions.insert((
            s["file"].as_str().unwrap_or_default().to_owned(),
            s["pos"].as_i64().unwrap_or_default(),
            s["row"].as_i64().unwrap_or_default(),
        ));
    }
    positions.len()
}

fn wait_mirror_equal(p: &mut crate::support::Pipeline, mirror: &str, db: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let want = mariadb_rows(db);
        let got = if is_table(mirror) {
            read(&["rows", mirror, &spec()])
        } else {
            Value::Array(Vec::new())
        };
        if got == want {
            return;
        }
        if let Some(status) = p.try_wait() {
            panic!("tidemark exited ({status}):\n{}", p.log_text());
        }
        assert!(
            Instant::now() < deadline,
            "Delta mirror differs from MariaDB after 120 s: {} vs {} rows; first Delta {:?}, first MariaDB {:?}",
            got.as_array().map_or(0, Vec::len),
            want.as_array().map_or(0, Vec::len),
            got.as_array().map(|a| a.iter().take(3).collect::<Vec<_>>()),
            want.as_array().map(|a| a.iter().take(3).collect::<Vec<_>>()),
        );
        std::thread::sleep(Duration::from_millis(700));
    }
}

#[test]
fn delta_mirror_and_changelog_of_mariadb_match_source_across_kill9() {
    let name = "delta_mirror_and_changelog_of_mariadb_match_source_across_kill9";
    if !delta_enabled(name) || !mysql_enabled(name) {
        return;
    }
    let db = MyDb::create("tm_delta_my");
    sql(
        &db.name,
        "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(40), n BIGINT, amount DECIMAL(12,3), \
         d DATE, ts DATETIME(6))",
    );
    let dir = std::env::temp_dir().join(format!("tm-delta-my-{}", crate::support::suffix()));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut spec_ = MySpec::new(&db.name);
    spec_.sink_extra = format!(
        "\n{}\n{}",
        delta_sink("mirror", "mirror", "mirror", ""),
        delta_sink("log", "log", "changelog", "")
    )
    .replace("{dir}", &dir.display().to_string());
    let mut p = pipeline(spec_);
    let mirror = dir.join("mirror").join(&db.name).join("t");
    let log = dir.join("log").join(&db.name).join("t");
    let (mirror, log) = (mirror.display().to_string(), log.display().to_string());
    p.start();
    let seed: u64 = rand::random();
    eprintln!("mariadb → delta seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut next = 1i64;
    for _ in 0..25 {
        sql(&db.name, &random_txn(&mut rng, &mut next));
    }
    wait_mirror_equal(&mut p, &mirror, &db.name);
    let rows = mariadb_rows(&db.name).as_array().map_or(0, Vec::len);
    assert!(rows > 0, "the workload left no rows to compare");
    // kill -9 mid-stream, more changes while it is down, restart.
    for _ in 0..10 {
        sql(&db.name, &random_txn(&mut rng, &mut next));
    }
    p.kill9();
    for _ in 0..10 {
        sql(&db.name, &random_txn(&mut rng, &mut next));
    }
    sql(&db.name, "DELETE FROM t WHERE id % 2 = 0");
    p.start();
    wait_mirror_equal(&mut p, &mirror, &db.name);
    for _ in 0..5 {
        sql(&db.name, &random_txn(&mut rng, &mut next));
    }
    wait_mirror_equal(&mut p, &mirror, &db.name);
    p.stop();
    // The changelog: every captured change once, none twice.
    let changes = captured_changes(&p.out);
    let got = read(&["changelog", &log]);
    eprintln!("{rows} rows mirrored; {changes} changes; changelog {got}");
    assert!(changes > 0);
    // One row per change, two for an update (`update_preimage` + `update_postimage`, as
    // Delta's change feed): at as many distinct positions as changes were captured.
    let pre = got["by_type"]["update_preimage"].as_u64().unwrap_or(0);
    assert_eq!(
        got["by_type"]["update_postimage"].as_u64().unwrap_or(0),
        pre,
        "{got}"
    );
    assert_eq!(
        got["distinct_positions"],
        serde_json::json!(changes),
        "{got}"
    );
    assert_eq!(
        got["rows"],
        serde_json::json!(changes as u64 + pre),
        "{got}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
