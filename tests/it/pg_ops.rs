//! The operator's surface of a running pipeline, through the `tidemark` binary: config validation
//! errors and environment overrides, `/metrics` (events and bytes per table and op, lag),
//! `/healthz` and `/readyz`, `tidemark reset` never dropping a slot it may not drop, and the
//! binary turning transparent huge pages off for itself.

use std::process::Command;
use std::time::{Duration, Instant};

use super::support::{
    http_get, metric, pg_enabled, psql, Pipeline, PipelineSpec, TestDb, TIDEMARK,
};

fn validate(config: &std::path::Path, env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(TIDEMARK)
        .args(["validate", "--offline", "--config"])
        .arg(config)
        .envs(env.iter().copied())
        .output()
        .expect("tidemark validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Bad config: every problem at once, each with its TOML path; an unknown key by name; env
/// overrides applied before validation (their mistakes reported the same way).
#[test]
fn config_errors_and_env_overrides_through_the_cli() {
    let dir = std::env::temp_dir().join(format!("tidemark-cfg-{}", super::support::suffix()));
    std::fs::create_dir_all(&dir).expect("dir");
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        r#"[pipeline]
name = "has space"
[source]
kind = "postgres"
url = "mysql://x"
slot = "Bad-Slot"
tables = ["nodot"]
[checkpoint]
interval = "0s"
"#,
    )
    .expect("write");
    let (ok, text) = validate(&bad, &[]);
    assert!(!ok);
    for path in [
        "pipeline.name",
        "source.url",
        "source.slot",
        "source.tables[0]",
        "sinks",
        "checkpoint.interval",
    ] {
        assert!(
            text.contains(&format!("{path}:")),
            "{path} missing in:\n{text}"
        );
    }
    assert!(text.contains("6 problem(s)"), "{text}");

    let typo = dir.join("typo.toml");
    std::fs::write(
        &typo,
        "[pipeline]\nname = \"p\"\n[source]\nkind = \"postgres\"\nurl = \"postgres://u@h/d\"\nslott = \"x\"\n",
    )
    .expect("write");
    let (ok, text) = validate(&typo, &[]);
    assert!(!ok && text.contains("slott"), "{text}");

    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        "[pipeline]\nname = \"p\"\n[source]\nkind = \"postgres\"\nurl = \"postgres://u@h/d\"\n[[sinks]]\nkind = \"debezium_json\"\npath = \"-\"\n",
    )
    .expect("write");
    let (ok, text) = validate(&good, &[]);
    assert!(ok && text.contains("config ok: pipeline p"), "{text}");
    let (ok, text) = validate(&good, &[("TIDEMARK__PIPELINE__NAME", "renamed")]);
    assert!(ok && text.contains("pipeline renamed"), "{text}");
    let (ok, text) = validate(&good, &[("TIDEMARK__SOURCE__SLOT", "Not Valid")]);
    assert!(!ok && text.contains("source.slot:"), "{text}");
    let (ok, text) = validate(&good, &[("TIDEMARK__SINKS__3__PATH", "/tmp/x")]);
    assert!(!ok && text.contains("TIDEMARK__SINKS__3__PATH"), "{text}");
    let _ = std::fs::remove_dir_all(dir);
}

/// `/metrics` counts events and bytes per table and op and reports the lag; `/healthz` and
/// `/readyz` answer; an environment override reaches a running pipeline (the sink's path).
#[test]
fn metrics_health_readiness_and_env_override_of_a_running_pipeline() {
    if !pg_enabled("metrics_health_readiness_and_env_override_of_a_running_pipeline") {
        return;
    }
    let db = TestDb::create("tm_ops");
    psql(&db.name, "CREATE TABLE m (id int PRIMARY KEY, v text)");
    let mut p = Pipeline::new(PipelineSpec::new(&db.name, &["public.m"]));
    let redirected = p.dir.join("redirected.jsonl");
    p.env.push((
        "TIDEMARK__SINKS__0__PATH".into(),
        redirected.display().to_string(),
    ));
    p.start();
    assert_eq!(
        http_get(p.metrics_port, "/healthz"),
        Some((200, "ok\n".into()))
    );
    assert_eq!(http_get(p.metrics_port, "/readyz").map(|r| r.0), Some(200));
    psql(
        &db.name,
        "INSERT INTO m VALUES (1, 'a'), (2, 'b'), (3, 'c');
         UPDATE m SET v = 'x' WHERE id < 3;
         DELETE FROM m WHERE id = 3",
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let lines = loop {
        let text = std::fs::read_to_string(&redirected).unwrap_or_default();
        if text.lines().count() >= 7 {
            break text.lines().count();
        }
        assert!(Instant::now() < deadline, "{}", p.log_text());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(lines, 7, "3 c + 2 u + 1 d + 1 tombstone");
    assert_eq!(p.line_count(), 0, "the configured path was overridden");
    // Wait for a checkpoint so the lag has a value.
    let deadline = Instant::now() + Duration::from_secs(30);
    while p.checkpoint().is_none() {
        assert!(Instant::now() < deadline, "no checkpoint");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    let m = p.metrics();
    let labels = |op: &str| {
        format!(
            "{{pipeline=\"it_{}\",table=\"public.m\",op=\"{op}\"}}",
            p.spec.slot
        )
    };
    for (op, n) in [("c", 3.0), ("u", 2.0), ("d", 1.0)] {
        assert_eq!(
            metric(&m, &format!("tidemark_source_events_total{}", labels(op))),
            Some(n),
            "{op}:\n{m}"
        );
        let bytes = metric(&m, &format!("tidemark_source_bytes_total{}", labels(op)));
        assert!(bytes.is_some_and(|b| b > 0.0), "{op} bytes:\n{m}");
    }
    assert!(
        metric(&m, "tidemark_sink_events_total").is_some_and(|n| n >= 6.0),
        "{m}"
    );
    assert!(
        metric(&m, "tidemark_checkpoints_total").is_some_and(|n| n >= 1.0),
        "{m}"
    );
    let lag = metric(&m, "tidemark_lag_seconds").expect("lag gauge");
    assert!((0.0..120.0).contains(&lag), "lag {lag}:\n{m}");
    assert_eq!(p.stop().map(|s| s.success()), Some(true));
}

/// A running pipeline (extra environment `env`) whose source cannot connect (port 1: it keeps
/// retrying), once its `/healthz` answers.
fn spawn_unconnectable(env: &[(&str, &str)]) -> Pipeline {
    let mut spec = PipelineSpec::new("tidemark", &["public.t"]);
    spec.source_extra = String::new();
    let mut p = Pipeline::new(spec);
    let config = std::fs::read_to_string(&p.config).expect("config");
    std::fs::write(&p.config, config.replace("127.0.0.1:5432", "127.0.0.1:1")).expect("config");
    p.env
        .extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    p.spawn();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(p.metrics_port, "/healthz").is_none() {
        assert!(Instant::now() < deadline, "{}", p.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    p
}

/// While the source cannot connect (transient: it retries), the process is healthy but not
/// ready.
#[test]
fn readyz_is_503_while_the_source_cannot_connect() {
    let mut p = spawn_unconnectable(&[]);
    assert_eq!(http_get(p.metrics_port, "/healthz").map(|r| r.0), Some(200));
    std::thread::sleep(Duration::from_millis(1500));
    let (status, _) = http_get(p.metrics_port, "/readyz").expect("readyz");
    assert_eq!(status, 503, "{}", p.log_text());
    assert!(
        p.try_wait().is_none(),
        "a transient error is retried, not fatal"
    );
    // Before the stream starts (snapshot preparation) or after (the stream's reconnect loop).
    let log = p.log_text();
    assert!(
        log.contains("transient error at startup; retrying") || log.contains("reconnecting"),
        "{log}"
    );
}

/// `tidemark reset` removes the checkpoint and keeps the slot unless `drop_slot_on_reset`.
#[test]
fn reset_keeps_the_slot_unless_allowed_to_drop_it() {
    if !pg_enabled("reset_keeps_the_slot_unless_allowed_to_drop_it") {
        return;
    }
    let db = TestDb::create("tm_reset");
    psql(&db.name, "CREATE TABLE t (id int PRIMARY KEY)");
    let mut p = Pipeline::new(PipelineSpec::new(&db.name, &["public.t"]));
    p.start();
    psql(&db.name, "INSERT INTO t VALUES (1)");
    p.wait_lines(1, Duration::from_secs(30));
    p.stop();
    assert!(p.checkpoint().is_some());
    let slot_count = || {
        psql(
            &db.name,
            &format!(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{}'",
                p.spec.slot
            ),
        )
    };
    let reset = |config: &std::path::Path| {
        let out = Command::new(TIDEMARK)
            .args(["reset", "--config"])
            .arg(config)
            .output()
            .expect("reset");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let text = reset(&p.config);
    assert!(text.contains("kept"), "{text}");
    assert!(p.checkpoint().is_none(), "checkpoint removed");
    assert_eq!(slot_count(), "1");
    let config = std::fs::read_to_string(&p.config).expect("config");
    std::fs::write(
        &p.config,
        config.replace("[source]\n", "[source]\ndrop_slot_on_reset = true\n"),
    )
    .expect("config");
    let text = reset(&p.config);
    assert!(text.contains("dropped"), "{text}");
    assert_eq!(slot_count(), "0");
}

/// A sink's definite error (here: the JSON-lines output is `/dev/full`, every write fails
/// with ENOSPC) ends the whole pipeline with an error naming the sink — the source does not
/// keep streaming into a queue that nobody drains — and nothing is acknowledged past it.
#[test]
fn a_definite_sink_error_stops_the_pipeline() {
    if !pg_enabled("a_definite_sink_error_stops_the_pipeline") {
        return;
    }
    let db = TestDb::create("tm_ops_sinkfail");
    psql(&db.name, "CREATE TABLE t (id int PRIMARY KEY, v text);");
    let mut p = Pipeline::new(PipelineSpec::new(&db.name, &["public.t"]));
    let config = std::fs::read_to_string(&p.config).expect("config");
    let out = p.out.display().to_string();
    std::fs::write(&p.config, config.replace(&out, "/dev/full")).expect("config");
    p.start();
    // Enough changes that the queue between source and engine would fill up.
    for i in 0..20 {
        psql(
            &db.name,
            &format!(
                "INSERT INTO t SELECT g, repeat('x', 500) FROM generate_series({}, {}) g;",
                i * 5000,
                i * 5000 + 4999
            ),
        );
    }
    let status = p.wait_exit(Duration::from_secs(60));
    let log = p.log_text();
    let status = status.unwrap_or_else(|| panic!("still running after the sink failed:\n{log}"));
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("sink or checkpoint failed") && log.contains("/dev/full"),
        "{log}"
    );
    // The checkpoint, if any, is not past what the sink durably wrote (nothing).
    assert!(p.checkpoint().is_none(), "{:?}", p.checkpoint());
}

/// The binary turns transparent huge pages off for itself (`src/main.rs`, `thp_off`), unless
/// `MIMALLOC_ALLOW_THP` is set: the kernel's per-process flag says which (`THP_enabled` in
/// `/proc/<pid>/status`). A pipeline that cannot connect keeps running long enough to look.
#[cfg(target_os = "linux")]
#[test]
fn the_binary_turns_transparent_huge_pages_off_unless_told_otherwise() {
    let thp_flag = |env: &[(&str, &str)]| {
        let mut p = spawn_unconnectable(env);
        let pid = p.pid().expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        let flag = status
            .lines()
            .find_map(|l| l.strip_prefix("THP_enabled:"))
            .map(|v| v.trim().to_string());
        p.stop();
        flag
    };
    // The flag is inherited: a runner already without THP, or one told otherwise through
    // the variable, has nothing to show here.
    let own = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some()
        || !own
            .lines()
            .any(|l| l.starts_with("THP_enabled:") && l.ends_with('1'))
    {
        eprintln!("this runner has THP off already (or MIMALLOC_ALLOW_THP set): nothing to check");
        return;
    }
    let Some(default) = thp_flag(&[]) else {
        eprintln!("this kernel has no THP_enabled in /proc/<pid>/status: nothing to check");
        return;
    };
    assert_eq!(default, "0", "THP off by default");
    assert_eq!(
        thp_flag(&[("MIMALLOC_ALLOW_THP", "1")]).as_deref(),
        Some("1"),
        "MIMALLOC_ALLOW_THP=1 keeps the host's setting"
    );
}
