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
    psql_at(None, db, sql)
}

/// [`psql`] on the server listening on `port` (the shared server's when `None`).
pub fn psql_at(port: Option<u16>, db: &str, sql: &str) -> String {
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
        ])
        .args(port.map(|p| format!("-p{p}")))
        .args(["-d", db, "-c", sql])
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

/// The `tidemark` binary built for these tests.
pub const TIDEMARK: &str = env!("CARGO_BIN_EXE_tidemark");

/// A TCP port free right now on 127.0.0.1 (for a pipeline's metrics endpoint).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// `GET path` on 127.0.0.1:`port`: (status code, body), or `None` if nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    Some((status, body.to_string()))
}

/// The value of one Prometheus sample (`name{labels}` exactly as exposed, or a prefix of the
/// line before the value), summed over matching lines.
pub fn metric(text: &str, prefix: &str) -> Option<f64> {
    let mut total = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        if let Some((name, value)) = line.rsplit_once(' ') {
            if name.starts_with(prefix) {
                *total.get_or_insert(0.0) += value.parse::<f64>().ok()?;
            }
        }
    }
    total
}

/// What a test pipeline looks like; [`PipelineSpec::new`] gives a Debezium-JSON sink into a
/// file, a fresh slot and publication, a 200 ms checkpoint interval.
#[derive(Clone, Debug)]
pub struct PipelineSpec {
    /// Database to stream from (the `postgres` role, trust auth).
    pub db: String,
    /// `source.tables`; empty = FOR ALL TABLES.
    pub tables: Vec<String>,
    /// Publication name (created by the pipeline unless it exists).
    pub publication: String,
    /// Slot name.
    pub slot: String,
    /// Extra TOML lines for `[source]`.
    pub source_extra: String,
    /// Extra TOML lines for the `[[sinks]]` table.
    pub sink_extra: String,
    /// Extra TOML lines for `[pipeline]`.
    pub pipeline_extra: String,
    /// `checkpoint.interval`.
    pub checkpoint_interval: String,
    /// `source.server_name` (Debezium's topic.prefix); the captures use `tm`.
    pub server_name: String,
}

impl PipelineSpec {
    pub fn new(db: &str, tables: &[&str]) -> Self {
        let s = suffix();
        PipelineSpec {
            db: db.to_string(),
            tables: tables.iter().map(|t| t.to_string()).collect(),
            publication: format!("tm_pub_{s}"),
            slot: format!("tm_slot_{s}"),
            source_extra: String::new(),
            sink_extra: String::new(),
            pipeline_extra: String::new(),
            checkpoint_interval: "200ms".into(),
            server_name: "tm".into(),
        }
    }
}

/// A `tidemark run` child process with its own config, output file, checkpoint directory and
/// metrics port, all under a temporary directory removed on drop (the child is killed then).
pub struct Pipeline {
    pub spec: PipelineSpec,
    pub dir: std::path::PathBuf,
    pub out: std::path::PathBuf,
    pub config: std::path::PathBuf,
    pub log: std::path::PathBuf,
    pub metrics_port: u16,
    child: Option<std::process::Child>,
    /// Peak RSS (VmHWM, KiB) of every child this pipeline ran, sampled at exit.
    pub peak_rss_kib: u64,
    /// Extra environment of the child (e.g. `TIDEMARK__…` config overrides).
    pub env: Vec<(String, String)>,
}

impl Pipeline {
    /// Writes the config; does not start anything.
    pub fn new(spec: PipelineSpec) -> Self {
        let dir = std::env::temp_dir().join(format!("tidemark-it-{}", suffix()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let out = dir.join("out.jsonl");
        let config = dir.join("pipeline.toml");
        let log = dir.join("tidemark.log");
        let metrics_port = free_port();
        let tables = spec
            .tables
            .iter()
            .map(|t| format!("{t:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let toml = format!(
            r#"[pipeline]
name = "it_{slot}"
{pipeline_extra}

[source]
kind = "postgres"
url = "postgres://postgres@127.0.0.1:5432/{db}"
slot = "{slot}"
publication = "{publication}"
tables = [{tables}]
server_name = "{server}"
status_interval = "1s"
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
            slot = spec.slot,
            db = spec.db,
            publication = spec.publication,
            server = spec.server_name,
            source_extra = spec.source_extra,
            sink_extra = spec.sink_extra,
            pipeline_extra = spec.pipeline_extra,
            out = out.display(),
            cp = dir.join("checkpoints").display(),
            interval = spec.checkpoint_interval,
        );
        std::fs::write(&config, toml).expect("write config");
        Pipeline {
            spec,
            dir,
            out,
            config,
            log,
            metrics_port,
            child: None,
            peak_rss_kib: 0,
            env: Vec::new(),
        }
    }

    /// Starts `tidemark run` and waits until `/readyz` says it streams.
    pub fn start(&mut self) {
        self.spawn();
        self.wait_ready();
    }

    /// Starts `tidemark run` without waiting.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "pipeline already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(TIDEMARK)
            .args(["run", "--config"])
            .arg(&self.config)
            .env("TIDEMARK_LOG", "info,tidemark=debug")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn tidemark");
        self.child = Some(child);
    }

    /// Waits up to 60 s for `/readyz` to answer 200; panics with the log otherwise.
    pub fn wait_ready(&mut self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if let Some((200, _)) = http_get(self.metrics_port, "/readyz") {
                return;
            }
            if let Some(status) = self.try_wait() {
                panic!(
                    "tidemark exited ({status}) before it was ready:\n{}",
                    self.log_text()
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "tidemark not ready after 60 s:\n{}",
                self.log_text()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// The child's exit status if it has ended.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(status)
    }

    /// The child's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Peak resident set of the running child (VmHWM, KiB).
    pub fn current_peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    fn sample_rss(&mut self) {
        if let Some(kib) = self.current_peak_rss_kib() {
            self.peak_rss_kib = self.peak_rss_kib.max(kib);
        }
    }

    /// kill -9: no checkpoint, no flush.
    pub fn kill9(&mut self) {
        self.sample_rss();
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (the pipeline checkpoints on the way out); returns its exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        self.sample_rss();
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() > deadline {
                let _ = c.kill();
                return c.wait().ok();
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Waits for the child to exit by itself (up to `timeout`); `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: std::time::Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// The pipeline's log so far, without terminal colour codes.
    pub fn log_text(&self) -> String {
        strip_ansi(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// Complete lines of the output so far (a torn last line is left out), parsed.
    pub fn lines(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        complete_lines(&text)
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("output line is not JSON ({e}): {l}"))
            })
            .collect()
    }

    /// Number of complete output lines so far.
    pub fn line_count(&self) -> usize {
        let text = std::fs::read(&self.out).unwrap_or_default();
        text.iter().filter(|&&b| b == b'\n').count()
    }

    /// Waits until the output has at least `n` complete lines (panics with the log after
    /// `timeout`), then a moment more so any extra line would show, and returns them all.
    pub fn wait_lines(&mut self, n: usize, timeout: std::time::Duration) -> Vec<serde_json::Value> {
        let deadline = std::time::Instant::now() + timeout;
        while self.line_count() < n {
            if let Some(status) = self.try_wait() {
                panic!(
                    "tidemark exited ({status}) with {} of {n} lines:\n{}",
                    self.line_count(),
                    self.log_text()
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} of {n} lines after {timeout:?}:\n{}",
                self.line_count(),
                self.log_text()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
        self.lines()
    }

    /// `/metrics` text (retried: a busy 2-core machine may be slow to answer).
    pub fn metrics(&self) -> String {
        for _ in 0..5 {
            if let Some((200, body)) = http_get(self.metrics_port, "/metrics") {
                return body;
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        panic!("/metrics does not answer:\n{}", self.log_text())
    }

    /// The checkpoint file's JSON, if one was saved. Panics if the file exists but is not a
    /// whole JSON document: checkpoints are written atomically, even under kill -9.
    pub fn checkpoint(&self) -> Option<serde_json::Value> {
        let dir = self.dir.join("checkpoints");
        let path = std::fs::read_dir(dir)
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "json"))?;
        let text = std::fs::read_to_string(&path).ok()?;
        Some(
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("torn checkpoint {} ({e}): {text:?}", path.display())),
        )
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "pipeline dir kept for inspection: {} (log {})",
                self.dir.display(),
                self.log.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// `text` without ANSI escape sequences (`ESC [ … letter`).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The complete (newline-terminated) lines of `text`.
pub fn complete_lines(text: &str) -> impl Iterator<Item = &str> {
    let end = text.rfind('\n').map_or(0, |i| i + 1);
    text[..end].lines().filter(|l| !l.is_empty())
}

/// The committed Debezium capture `tests/fixtures/debezium/pg/<name>/`.
pub struct Fixture {
    pub dir: std::path::PathBuf,
    pub events: Vec<tidemark::diff::Record>,
}

impl Fixture {
    pub fn load(name: &str) -> Self {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/debezium/pg")
            .join(name);
        let text = std::fs::read_to_string(dir.join("events.jsonl")).expect("fixture events");
        let events = tidemark::diff::Record::parse_lines(&text).expect("fixture parses");
        Fixture { dir, events }
    }

    /// Runs the fixture's `setup.sql` in `db` (it creates publication `dbz_pub`).
    pub fn setup(&self, db: &str) {
        psql_file(db, &self.dir.join("setup.sql"));
    }

    /// Runs the fixture's `workload.sql` in `db`.
    pub fn workload(&self, db: &str) {
        psql_file(db, &self.dir.join("workload.sql"));
    }
}

/// Parses the records of a pipeline's output lines.
pub fn records(lines: &[serde_json::Value]) -> Vec<tidemark::diff::Record> {
    lines
        .iter()
        .map(|l| tidemark::diff::Record::from_value(l).expect("record line"))
        .collect()
}

/// Panics with a readable report unless `report` is clean.
pub fn assert_clean(
    what: &str,
    report: &tidemark::diff::DiffReport,
    expected: &[tidemark::diff::Record],
    actual: &[tidemark::diff::Record],
) {
    assert!(
        report.is_clean(),
        "{what}: {}",
        report.render(expected, actual, 10)
    );
}
