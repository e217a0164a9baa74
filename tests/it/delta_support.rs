//! Helpers of the Delta tests: a `tidemark run` child with Delta sinks, the independent Python
//! reader (`scripts/delta_read.py` in the lake venv), and canonical text forms of PostgreSQL
//! values that match the reader's.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::support::{psql, suffix};

/// True when the Delta tests should run (they need PostgreSQL and the lake venv).
pub fn delta_enabled(test: &str) -> bool {
    let ok = std::env::var("TIDEMARK_TEST_DELTA").as_deref() == Ok("1")
        && std::env::var("TIDEMARK_TEST_PG").as_deref() == Ok("1");
    if !ok {
        eprintln!(
            "skipping {test}: set TIDEMARK_TEST_DELTA=1 and TIDEMARK_TEST_PG=1 (make test does)"
        );
    }
    ok
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The lake venv's python (set up once by `scripts/lake-readers.sh`, idempotent).
pub fn python() -> &'static str {
    static PY: OnceLock<String> = OnceLock::new();
    PY.get_or_init(|| {
        let out = Command::new("bash")
            .arg(repo().join("scripts/lake-readers.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/lake-readers.sh");
        assert!(out.status.success(), "scripts/lake-readers.sh failed");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    })
}

/// Runs `scripts/delta_read.py <args>` and parses its JSON.
pub fn read(args: &[&str]) -> Value {
    read_with_storage(args, None)
}

/// [`read`] of a table on an object store: `storage` (a JSON object) is delta-rs' storage
/// options, as the sink's `storage_options`.
pub fn read_with_storage(args: &[&str], storage: Option<&str>) -> Value {
    let mut cmd = Command::new(python());
    if let Some(s) = storage {
        cmd.env("TM_DELTA_STORAGE", s);
    }
    let out = cmd
        .arg(repo().join("scripts/delta_read.py"))
        .args(args)
        .output()
        .expect("run delta_read.py");
    assert!(
        out.status.success(),
        "delta_read.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("delta_read.py prints JSON")
}

/// A column of a comparison: name, the reader's kind, and the SQL giving the same text.
pub struct Col {
    pub name: &'static str,
    pub kind: &'static str,
    pub sql: String,
}

/// The canonical SQL text of `c` for a reader kind (`delta_read.py`'s docstring).
pub fn col(name: &'static str, kind: &'static str) -> Col {
    let c = name;
    let sql = match kind {
        "float" => format!("{c}::float8::text"),
        "decimal" => format!("{c}::numeric::text"),
        "hex" => format!("encode({c}, 'hex')"),
        "days" => format!(
            "CASE WHEN {c} = 'infinity' THEN '2147483647' WHEN {c} = '-infinity' THEN '-2147483648' \
             ELSE ({c} - date '1970-01-01')::text END"
        ),
        "micros" => format!(
            "CASE WHEN {c} = 'infinity' THEN '9223372036854775807' \
             WHEN {c} = '-infinity' THEN '-9223372036854775808' \
             ELSE (extract(epoch from {c}) * 1000000)::bigint::text END"
        ),
        "time" => format!("(extract(epoch from {c}) * 1000000)::bigint::text"),
        "interval" => format!(
            "format('%s/%s/%s', (extract(year from {c}) * 12 + extract(month from {c}))::int, \
             extract(day from {c})::int, ((extract(hour from {c}) * 3600 + extract(minute from {c}) * 60) \
             * 1000000 + extract(microseconds from {c}))::bigint)"
        ),
        "jsonlist" => format!("array_to_json({c})::text"),
        // The output function's text: char(n) keeps its padding and inet its form, which
        // `::text` would change.
        "bpchar" => format!("format('%s', {c})"),
        _ => format!("{c}::text"),
    };
    // format() turns NULL into text; keep NULL NULL.
    let sql = format!("CASE WHEN {c} IS NULL THEN NULL ELSE {sql} END");
    // The reader prints times (Delta long) like ints.
    let kind = match kind {
        "time" => "int",
        "bpchar" => "text",
        k => k,
    };
    Col { name, kind, sql }
}

/// The reader's spec argument.
pub fn spec(cols: &[Col]) -> String {
    let v: Vec<Value> = cols
        .iter()
        .map(|c| serde_json::json!([c.name, c.kind]))
        .collect();
    Value::Array(v).to_string()
}

/// The source rows of `table` in canonical form, ordered by the first column.
pub fn source_rows(db: &str, table: &str, cols: &[Col]) -> Value {
    let exprs: Vec<&str> = cols.iter().map(|c| c.sql.as_str()).collect();
    let sql = format!(
        "SELECT coalesce(json_agg(json_build_array({}) ORDER BY {}), '[]') FROM {table}",
        exprs.join(", "),
        cols[0].name
    );
    serde_json::from_str(&psql(db, &sql)).expect("json_agg")
}

/// `count` and md5 of the canonical source rows (same form as `delta_read.py checksum`).
pub fn source_checksum(db: &str, table: &str, cols: &[Col]) -> Value {
    let parts: Vec<String> = cols
        .iter()
        .map(|c| format!("coalesce({}, 'N')", c.sql))
        .collect();
    let sql = format!(
        "SELECT json_build_object('count', count(*), 'md5', md5(coalesce(string_agg(concat_ws('|', {}), ',' ORDER BY {}), ''))) FROM {table}",
        parts.join(", "),
        cols[0].name
    );
    serde_json::from_str(&psql(db, &sql)).expect("checksum json")
}

/// A pipeline (`tidemark run` child) from `db` into Delta sinks under `dir`.
pub struct DeltaPipeline {
    pub name: String,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub db: String,
    pub slot: String,
    child: Option<Child>,
    log: PathBuf,
}

impl DeltaPipeline {
    /// `sinks` are full `[[sinks]]` TOML tables (their `root` relative to `dir` as `{dir}`).
    pub fn new(db: &str, tables: &[&str], sinks: &str) -> Self {
        let s = suffix();
        let name = format!("delta_{s}");
        let dir = std::env::temp_dir().join(format!("tm-delta-{s}"));
        std::fs::create_dir_all(&dir).expect("test dir");
        let tables: Vec<String> = tables.iter().map(|t| format!("{t:?}")).collect();
        let slot = format!("tm_delta_{s}");
        let config = dir.join("pipeline.toml");
        let text = format!(
            "[pipeline]\nname = \"{name}\"\n\n[source]\nkind = \"postgres\"\n\
             url = \"postgres://postgres@127.0.0.1:5432/{db}\"\nslot = \"{slot}\"\n\
             publication = \"{slot}\"\ntables = [{}]\nstatus_interval = \"1s\"\nterminate_stale = true\n\n{}\n\n\
             [checkpoint]\ndir = \"{}\"\ninterval = \"200ms\"\n\n[metrics]\nenabled = false\n",
            tables.join(", "),
            sinks.replace("{dir}", &dir.display().to_string()),
            dir.join("checkpoints").display()
        );
        std::fs::write(&config, text).expect("write config");
        DeltaPipeline {
            name,
            log: dir.join("tidemark.log"),
            dir,
            config,
            db: db.to_owned(),
            slot,
            child: None,
        }
    }

    /// Starts (or restarts) the engine.
    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_tidemark"))
            .args(["run", "--config"])
            .arg(&self.config)
            .env("TIDEMARK_LOG", "info,tidemark_delta=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn tidemark");
        self.child = Some(child);
        // Changes are streamed only once the slot is consistent (the engine creates it at
        // start). The slot is listed while it waits for running transactions to end, with no
        // `confirmed_flush_lsn` yet: a transaction committed then is in the exported snapshot
        // (an `op: r` row at the snapshot's position), not in the stream.
        let deadline = Instant::now() + Duration::from_secs(60);
        while psql(
            &self.db,
            &format!(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{}' \
                 AND confirmed_flush_lsn IS NOT NULL",
                self.slot
            ),
        ) != "1"
        {
            assert!(
                Instant::now() < deadline,
                "no consistent slot after 60 s:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// kill -9.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (a clean stop flushes every sink).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for the engine to exit on its own (a definite error); its log.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<String> {
        let mut c = self.child.take()?;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return Some(self.log_text());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }

    /// Like [`Self::wait_exit`] but keeps the engine running when it has not exited.
    pub fn wait_exit_keep(&mut self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(_)) = c.try_wait() {
                    self.child = None;
                    return Some(self.log_text());
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the slot confirmed everything up to the current WAL end (every sink
    /// committed every change made before this call).
    pub fn wait_caught_up(&mut self, timeout: Duration) {
        let target = psql(&self.db, "SELECT pg_current_wal_lsn()");
        let deadline = Instant::now() + timeout;
        loop {
            let done = psql(
                &self.db,
                &format!(
                    "SELECT coalesce(confirmed_flush_lsn >= '{target}'::pg_lsn, false) FROM pg_replication_slots WHERE slot_name = '{}'",
                    self.slot
                ),
            );
            if done == "t" {
                return;
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!("tidemark exited ({status}):\n{}", self.log_text());
                }
            }
            assert!(
                Instant::now() < deadline,
                "not caught up to {target} in {timeout:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Path of a Delta table under a sink root.
    pub fn table(&self, root: &str, table: &str) -> String {
        let (ns, name) = table.split_once('.').expect("schema.table");
        self.dir
            .join(root)
            .join(ns)
            .join(name)
            .display()
            .to_string()
    }
}

impl Drop for DeltaPipeline {
    fn drop(&mut self) {
        self.kill9();
        let _ = Command::new("psql")
            .args(["-X", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c"])
            .arg(format!(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{}' AND NOT active",
                self.slot
            ))
            .output();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A Delta sink TOML table.
pub fn delta_sink(name: &str, root: &str, mode: &str, extra: &str) -> String {
    format!(
        "[[sinks]]\nkind = \"delta\"\nname = \"{name}\"\nroot = \"{{dir}}/{root}\"\nmode = \"{mode}\"\n\
         flush = {{ interval = \"500ms\" }}\n{extra}\n"
    )
}

/// Whether `p` exists (a Delta table directory with a log).
pub fn is_delta_table(p: &str) -> bool {
    Path::new(p).join("_delta_log").is_dir()
}
