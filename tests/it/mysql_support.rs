//! Helpers for the MySQL/MariaDB integration tests: SQL through the `mariadb` client, a
//! throw-away database per test, and a `tidemark run` child configured for a MySQL source
//! (the generic [`Pipeline`] with a MySQL config written over its Postgres one).

#![allow(dead_code)]

use rand::Rng;
use std::process::Command;

use super::support::{suffix, Pipeline, PipelineSpec};

/// Port of the MySQL server under test (`TIDEMARK_MYSQL_PORT`, default 3306; `make test-mysql8`
/// points it at the compose MySQL 8 service).
pub fn port() -> u16 {
    std::env::var("TIDEMARK_MYSQL_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3306)
}

/// True when the MySQL tests should run; prints why not otherwise.
pub fn mysql_enabled(test: &str) -> bool {
    if std::env::var("TIDEMARK_TEST_MYSQL").as_deref() == Ok("1") {
        true
    } else {
        eprintln!("skipping {test}: set TIDEMARK_TEST_MYSQL=1 (make test does) to run it against MariaDB/MySQL");
        false
    }
}

/// Runs SQL as root (utf8mb4, UTC session); panics with the client's stderr on failure.
pub fn sql(db: &str, statements: &str) -> String {
    try_sql_at(port(), db, statements).unwrap_or_else(|e| {
        panic!(
            "mariadb failed: {e}\n{}",
            statements.chars().take(2000).collect::<String>()
        )
    })
}

/// [`sql`] on the server listening on `port`, in `db` (none when empty): its output, or the
/// client's stderr.
pub fn try_sql_at(port: u16, db: &str, statements: &str) -> Result<String, String> {
    let out = Command::new("mariadb")
        .args([
            "-uroot",
            "-h127.0.0.1",
            "-N",
            "-B",
            "--default-character-set=utf8mb4",
        ])
        .arg(format!("-P{port}"))
        .arg("--init-command=SET time_zone='+00:00'")
        .args((!db.is_empty()).then_some(db))
        .arg("-e")
        .arg(statements)
        .output()
        .expect("mariadb client runs");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A database dropped when the guard goes out of scope.
pub struct MyDb {
    pub name: String,
}

impl MyDb {
    pub fn create(prefix: &str) -> Self {
        let name = format!("{prefix}_{}", suffix());
        sql(
            "",
            &format!("CREATE DATABASE {name} DEFAULT CHARSET utf8mb4"),
        );
        MyDb { name }
    }
}

impl Drop for MyDb {
    fn drop(&mut self) {
        let _ = Command::new("mariadb")
            .args(["-uroot", "-h127.0.0.1"])
            .arg(format!("-P{}", port()))
            .arg("-e")
            .arg(format!("DROP DATABASE IF EXISTS {}", self.name))
            .output();
    }
}

/// A replication user with a password (dropped on drop), to test auth and to find our
/// connections in the process list.
pub struct MyUser {
    pub name: String,
    pub password: String,
}

impl MyUser {
    pub fn create() -> Self {
        let name = format!("tm_{}", suffix());
        let password = format!("pw-{}", suffix());
        sql(
            "",
            &format!(
                "CREATE USER '{name}'@'%' IDENTIFIED BY '{password}'; \
                 GRANT SELECT, RELOAD, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '{name}'@'%'"
            ),
        );
        MyUser { name, password }
    }

    /// Kills every connection of this user (the binlog dump included).
    pub fn kill_connections(&self) -> usize {
        let ids = sql(
            "",
            &format!(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = '{}'",
                self.name
            ),
        );
        let ids: Vec<&str> = ids.lines().filter(|l| !l.is_empty()).collect();
        for id in &ids {
            let _ = Command::new("mariadb")
                .args(["-uroot", "-h127.0.0.1", "-e"])
                .arg(format!("KILL {id}"))
                .output();
        }
        ids.len()
    }
}

impl Drop for MyUser {
    fn drop(&mut self) {
        self.kill_connections();
        let _ = Command::new("mariadb")
            .args(["-uroot", "-h127.0.0.1", "-e"])
            .arg(format!("DROP USER IF EXISTS '{}'@'%'", self.name))
            .output();
    }
}

/// Options of a MySQL pipeline.
pub struct MySpec {
    pub db: String,
    /// `user` (root without password when `None`).
    pub user: Option<(String, String)>,
    pub source_extra: String,
    pub sink_extra: String,
    pub pipeline_extra: String,
    pub checkpoint_interval: String,
    /// Port of the server to read (`port()` unless a test runs its own server).
    pub port: u16,
}

impl MySpec {
    pub fn new(db: &str) -> Self {
        MySpec {
            db: db.into(),
            user: None,
            source_extra: String::new(),
            sink_extra: String::new(),
            pipeline_extra: String::new(),
            checkpoint_interval: "200ms".into(),
            port: port(),
        }
    }
}

/// A `tidemark run` pipeline on the MySQL server, starting at its current position.
pub fn pipeline(spec: MySpec) -> Pipeline {
    let p = Pipeline::new(PipelineSpec::new("unused", &[]));
    let (user, password) = match &spec.user {
        Some((u, _)) => (
            u.clone(),
            format!("password = {{ env = \"TM_MY_PW_{}\" }}", suffix()),
        ),
        None => ("root".into(), String::new()),
    };
    let pw_env = password.split('"').nth(1).map(str::to_owned);
    let toml = format!(
        r#"[pipeline]
name = "it_my_{s}"
{pipeline_extra}

[source]
kind = "mysql"
url = "mysql://{user}@127.0.0.1:{port}"
{password}
server_id = {server_id}
databases = ["{db}"]
heartbeat_interval = "1s"
max_backoff = "2s"
server_name = "tm"
{source_extra}

[[sinks]]
kind = "debezium_json"
path = "{out}"
fsync = false
{sink_extra}

[checkpoint]
dir = "{cp}"
interval = "{interval}"

[metrics]
listen = "127.0.0.1:{metrics_port}"
"#,
        s = suffix(),
        pipeline_extra = spec.pipeline_extra,
        port = spec.port,
        server_id = 10_000 + rand::random::<u32>() % 1_000_000,
        db = spec.db,
        source_extra = spec.source_extra,
        sink_extra = spec.sink_extra,
        out = p.out.display(),
        cp = p.dir.join("checkpoints").display(),
        interval = spec.checkpoint_interval,
        metrics_port = p.metrics_port,
    );
    std::fs::write(&p.config, toml).expect("write config");
    if let (Some(env), Some((_, pw))) = (pw_env, &spec.user) {
        // The child inherits the environment.
        std::env::set_var(env, pw);
    }
    p
}

/// The `payload` of a line written with or without the schema envelope.
pub fn payload(v: &serde_json::Value) -> &serde_json::Value {
    v.get("value").map_or(v, |x| x.get("payload").unwrap_or(x))
}

/// One random transaction on table `t (id INT PRIMARY KEY, v VARCHAR, n BIGINT, amount
/// DECIMAL(12,3), d DATE, ts DATETIME(6))`: inserts of new ids from `next`, updates, primary-key
/// changes and deletes.
pub fn random_txn(rng: &mut rand::rngs::StdRng, next: &mut i64) -> String {
    let mut s = String::from("BEGIN;");
    for _ in 0..rng.gen_range(1..4) {
        match rng.gen_range(0..100) {
            0..=39 => {
                let n = rng.gen_range(1..50);
                let rows: Vec<String> = (*next..*next + n)
                    .map(|i| {
                        format!(
                            "({i}, MD5(RAND()), FLOOR(RAND() * 1e6), RAND() * 1000, CURDATE(), NOW(6))"
                        )
                    })
                    .collect();
                s += &format!("INSERT INTO t VALUES {};", rows.join(","));
                *next += n;
            }
            40..=64 => {
                let (k, r) = (rng.gen_range(2..7), rng.gen_range(0..2));
                s += &format!("UPDATE t SET v = MD5(RAND()), n = NULL WHERE id % {k} = {r};");
            }
            65..=74 => {
                // Primary key change.
                let off = rng.gen_range(1_000_000..2_000_000);
                s += &format!(
                    "UPDATE t SET id = id + {off} WHERE id < 1000000 ORDER BY RAND() LIMIT 3;"
                );
            }
            _ => s += "DELETE FROM t ORDER BY RAND() LIMIT 10;",
        }
    }
    s + "COMMIT;"
}
