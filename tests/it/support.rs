//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::process::Command;

/// True when the server tests should run; prints why not otherwise.
pub fn pg_enabled(test: &str) -> bool {
    if std::env::var("TIDEMARK_TEST_PG").as_deref() == Ok("1") {
        true
    } else {
        eprintln!(
            "skipping {test}: set TIDEMARK_TEST_PG=1 (make test does) to run it against PostgreSQL"
        );
        false
    }
}

/// A random lowercase suffix for databases, slots and publications.
pub fn suffix() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// Runs SQL as `postgres` in `db` with psql; panics with psql's stderr on failure.
pub fn psql(db: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-At",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            db,
            "-c",
            sql,
        ])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "psql failed: {}\n{sql}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs an SQL file as `postgres` in `db`.
pub fn psql_file(db: &str, path: &std::path::Path) {
    let out = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            db,
            "-f",
        ])
        .arg(path)
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "psql -f {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh database dropped (with its slots) when the guard goes out of scope.
pub struct TestDb {
    pub name: String,
}

impl TestDb {
    pub fn create(prefix: &str) -> Self {
        let name = format!("{prefix}_{}", suffix());
        psql("postgres", &format!("CREATE DATABASE {name}"));
        TestDb { name }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args(["-X", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c"])
            .arg(format!(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = '{0}' AND active; \
                 SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '{0}'",
                self.name
            ))
            .output();
        let _ = Command::new("psql")
            .args([
                "-X",
                "-q",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
            ])
            .arg(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .output();
    }
}
