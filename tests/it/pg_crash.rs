//! Crash safety and resilience of the live pipeline: kill -9 at random points of a 200,000-change
//! workload, the walsender terminated under a running pipeline, missing and dropped slots, idle
//! feedback. The ground truth is an independent `test_decoding` slot created before the workload:
//! it lists every change (xid, LSN, kind) in commit order, and each transaction's end LSN.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::Value;

use super::private_servers::PrivateCluster;
use super::support::{pg_enabled, psql, suffix, Pipeline, PipelineSpec, TestDb, TIDEMARK};

/// "X/Y" → u64.
fn lsn(s: &str) -> u64 {
    let (hi, lo) = s.split_once('/').expect("X/Y lsn");
    (u64::from_str_radix(hi, 16).expect("hex") << 32) | u64::from_str_radix(lo, 16).expect("hex")
}

/// One change as the truth slot saw it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Change {
    xid: u64,
    lsn: u64,
    op: &'static str,
}

/// Every change of `table` in commit order, and each xid's end LSN, from a test_decoding slot.
fn truth(db: &str, slot: &str, table: &str) -> (Vec<Change>, HashMap<u64, u64>) {
    let out = psql(
        db,
        &format!(
            "SELECT lsn - '0/0', xid, data FROM pg_logical_slot_peek_changes('{slot}', NULL, NULL)"
        ),
    );
    let prefix = format!("table {table}: ");
    let mut changes = Vec::new();
    let mut ends = HashMap::new();
    for line in out.lines() {
        let mut parts = line.splitn(3, '|');
        let (Some(l), Some(x), Some(data)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let (l, x): (u64, u64) = (l.parse().expect("lsn"), x.parse().expect("xid"));
        if data.starts_with("COMMIT") {
            ends.insert(x, l);
        } else if let Some(rest) = data.strip_prefix(&prefix) {
            let op = match rest.split(':').next() {
                Some("INSERT") => "c",
                Some("UPDATE") => "u",
                Some("DELETE") => "d",
                other => panic!("unexpected change {other:?}"),
            };
            changes.push(Change { xid: x, lsn: l, op });
        }
    }
    (changes, ends)
}

/// A data event line as a [`Change`]; `None` for tombstones and messages.
fn change_of(line: &Value) -> Option<Change> {
    let v = &line["value"];
    let op = match v["op"].as_str()? {
        "c" => "c",
        "u" => "u",
        "d" => "d",
        _ => return None,
    };
    Some(Change {
        xid: v["source"]["txId"].as_u64()?,
        lsn: v["source"]["lsn"].as_u64()?,
        op,
    })
}

/// The end LSN of a checkpoint position `pg:<commit>:<lsn>:<index>`.
fn checkpoint_end(p: &Pipeline) -> u64 {
    let cp = p
        .checkpoint()
        .map(|c| c["position"].as_str().unwrap_or("").to_string());
    match cp.as_deref().and_then(|s| s.split(':').nth(2)) {
        Some(l) => lsn(l),
        None => 0,
    }
}

fn generate(url: &str, args: &[&str]) -> std::process::Child {
    std::process::Command::new(TIDEMARK)
        .args(["generate", "--url", url])
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("tidemark generate")
}

/// kill -9 the pipeline at random points while 200,000 changes commit, restart it each time;
/// the union of its outputs holds every change exactly once in commit order, and each restart
/// repeats only changes after the checkpoint it resumed from.
#[test]
fn kill9_loop_200k_changes_exactly_once_in_commit_order() {
    if !pg_enabled("kill9_loop_200k_changes_exactly_once_in_commit_order") {
        return;
    }
    const CHANGES: usize = 200_000;
    let db = TestDb::create("tm_crash");
    let url = format!("postgres://postgres@127.0.0.1:5432/{}", db.name);
    let status = generate(&url, &["--reset", "--changes", "0"])
        .wait()
        .expect("generate setup");
    assert!(status.success());
    let truth_slot = format!("truth_{}", suffix());
    psql(
        &db.name,
        &format!("SELECT pg_create_logical_replication_slot('{truth_slot}', 'test_decoding')"),
    );
    let mut spec = PipelineSpec::new(&db.name, &["tidemark_demo.orders"]);
    spec.checkpoint_interval = "300ms".into();
    let mut p = Pipeline::new(spec);
    p.start();
    // 400 transactions of 500 changes at 25 per second: ~16 s of workload to crash into.
    let mut workload = generate(
        &url,
        &[
            "--changes",
            &CHANGES.to_string(),
            "--batch",
            "500",
            "--rate",
            "25",
        ],
    );
    let mut rng = rand::thread_rng();
    // (complete lines in the output when killed, checkpoint end LSN the restart resumes from)
    let mut restarts: Vec<(usize, u64)> = Vec::new();
    while restarts.len() < 8 && workload.try_wait().expect("generate").is_none() {
        std::thread::sleep(Duration::from_millis(rng.gen_range(400..2500)));
        p.kill9();
        restarts.push((p.line_count(), checkpoint_end(&p)));
        p.start();
    }
    let status = workload.wait_with_output().expect("generate");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(
        restarts.len() >= 4,
        "only {} kills during the workload",
        restarts.len()
    );
    let (truth, ends) = truth(&db.name, &truth_slot, "tidemark_demo.orders");
    assert_eq!(truth.len(), CHANGES);
    let last_end = *ends.get(&truth[CHANGES - 1].xid).expect("last commit");
    let deadline = Instant::now() + Duration::from_secs(120);
    while checkpoint_end(&p) < last_end {
        assert!(
            Instant::now() < deadline,
            "not caught up:\n{}",
            p.log_text()
        );
        assert!(p.try_wait().is_none(), "tidemark exited:\n{}", p.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(p.stop().map(|s| s.success()), Some(true));

    let index: HashMap<&Change, usize> = truth.iter().enumerate().map(|(i, c)| (c, i)).collect();
    let lines = p.lines();
    let mut bounds: Vec<usize> = restarts.iter().map(|r| r.0).collect();
    bounds.push(lines.len());
    let mut seen = HashSet::new();
    let mut union = Vec::new();
    let mut duplicates = 0;
    let mut start = 0;
    for (run, &end) in bounds.iter().enumerate() {
        // The checkpoint this run resumed from (none for the first run).
        let resumed_from = if run == 0 { 0 } else { restarts[run - 1].1 };
        let mut last = None;
        for line in &lines[start..end.max(start)] {
            let Some(c) = change_of(line) else { continue };
            let i = *index
                .get(&c)
                .unwrap_or_else(|| panic!("run {run}: event not in the truth: {line}"));
            assert!(
                last.is_none_or(|l| i > l),
                "run {run}: out of commit order at truth #{i} after #{last:?}"
            );
            last = Some(i);
            assert!(
                ends[&c.xid] > resumed_from,
                "run {run}: change {c:?} (txn end {:X}) is at or before the checkpoint {resumed_from:X} it resumed from",
                ends[&c.xid]
            );
            if seen.insert(i) {
                union.push(i);
            } else {
                duplicates += 1;
            }
        }
        start = end;
    }
    assert_eq!(union.len(), CHANGES, "every change exactly once");
    assert!(
        union.windows(2).all(|w| w[0] < w[1]),
        "union in commit order"
    );
    eprintln!(
        "kill -9 loop: {} kills, {CHANGES} changes, {duplicates} repeated after checkpoints",
        restarts.len()
    );
}

/// The server terminates the walsender three times under a running pipeline: it reconnects
/// and delivers every change exactly once (same process: nothing is repeated either).
#[test]
fn reconnect_after_walsender_terminated_loses_nothing() {
    if !pg_enabled("reconnect_after_walsender_terminated_loses_nothing") {
        return;
    }
    let db = TestDb::create("tm_reconn");
    psql(&db.name, "CREATE TABLE r (id int PRIMARY KEY, v text)");
    let mut p = Pipeline::new(PipelineSpec::new(&db.name, &["public.r"]));
    p.start();
    let slot = p.spec.slot.clone();
    let mut next = 0;
    for round in 0..4 {
        for _ in 0..10 {
            psql(
                &db.name,
                &format!(
                    "INSERT INTO r SELECT g, 'v' FROM generate_series({}, {}) g",
                    next + 1,
                    next + 10
                ),
            );
            next += 10;
        }
        if round < 3 {
            // Wait for the pipeline to be streaming again (it backs off after each kill).
            let deadline = Instant::now() + Duration::from_secs(60);
            while psql(
                "postgres",
                &format!("SELECT active FROM pg_replication_slots WHERE slot_name = '{slot}'"),
            ) != "t"
            {
                assert!(
                    Instant::now() < deadline,
                    "never reconnected:\n{}",
                    p.log_text()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            let killed = psql(
                "postgres",
                &format!(
                    "SELECT count(pg_terminate_backend(active_pid)) FROM pg_replication_slots \
                     WHERE slot_name = '{slot}' AND active"
                ),
            );
            assert_eq!(killed, "1", "a walsender to terminate");
        }
    }
    let lines = p.wait_lines(next, Duration::from_secs(90));
    let ids: Vec<u64> = lines
        .iter()
        .map(|l| l["value"]["after"]["id"].as_u64().expect("id"))
        .collect();
    assert_eq!(
        ids,
        (1..=next as u64).collect::<Vec<_>>(),
        "each row once, in order"
    );
    let log = p.log_text();
    assert!(log.matches("reconnecting").count() >= 3, "{log}");
    assert_eq!(p.stop().map(|s| s.success()), Some(true));
}

/// A missing slot with `create_slot = false`, and a slot dropped while the pipeline holds a
/// checkpoint (even with `create_slot = true`), stop the pipeline at once with a definite error
/// naming the slot — no retry loop, no silently new slot that would skip changes.
#[test]
fn missing_or_dropped_slot_is_a_definite_error() {
    if !pg_enabled("missing_or_dropped_slot_is_a_definite_error") {
        return;
    }
    let db = TestDb::create("tm_slot");
    psql(&db.name, "CREATE TABLE t (id int PRIMARY KEY)");
    let mut spec = PipelineSpec::new(&db.name, &["public.t"]);
    spec.source_extra = "create_slot = false".into();
    let mut p = Pipeline::new(spec);
    p.spawn();
    let status = p.wait_exit(Duration::from_secs(30)).expect("stops at once");
    assert!(!status.success());
    let log = p.log_text();
    assert!(
        log.contains(&p.spec.slot) && log.contains("replication slot does not exist"),
        "{log}"
    );
    assert!(
        !log.contains("reconnecting"),
        "a definite error is not retried: {log}"
    );

    let mut p = Pipeline::new(PipelineSpec::new(&db.name, &["public.t"]));
    p.start();
    psql(&db.name, "INSERT INTO t VALUES (1)");
    p.wait_lines(1, Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(30);
    while checkpoint_end(&p) == 0 {
        assert!(Instant::now() < deadline, "no checkpoint");
        std::thread::sleep(Duration::from_millis(100));
    }
    p.stop();
    psql(
        &db.name,
        &format!("SELECT pg_drop_replication_slot('{}')", p.spec.slot),
    );
    psql(&db.name, "INSERT INTO t VALUES (2)");
    p.spawn();
    let status = p.wait_exit(Duration::from_secs(30)).expect("stops at once");
    assert!(!status.success());
    let log = p.log_text();
    assert!(
        log.contains("the slot does not exist but the pipeline has a checkpoint"),
        "{log}"
    );
    let slots = psql(
        &db.name,
        &format!(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{}'",
            p.spec.slot
        ),
    );
    assert_eq!(slots, "0", "no new slot was created behind the user's back");
}

/// With nothing to send for its tables while another database writes WAL, the pipeline still
/// advances the slot's `confirmed_flush_lsn` (idle feedback), so the slot does not hold WAL.
#[test]
fn idle_feedback_advances_confirmed_flush_while_other_databases_write() {
    if !pg_enabled("idle_feedback_advances_confirmed_flush_while_other_databases_write") {
        return;
    }
    let db = TestDb::create("tm_idle");
    let other = TestDb::create("tm_idle_other");
    psql(&db.name, "CREATE TABLE quiet (id int PRIMARY KEY)");
    psql(&other.name, "CREATE TABLE busy (id int, v text)");
    let mut p = Pipeline::new(PipelineSpec::new(&db.name, &["public.quiet"]));
    p.start();
    let confirmed = || {
        lsn(&psql(
            &db.name,
            &format!(
                "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '{}'",
                p.spec.slot
            ),
        ))
    };
    let before = confirmed();
    psql(
        &other.name,
        "INSERT INTO busy SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g",
    );
    let target = lsn(&psql(&other.name, "SELECT pg_current_wal_lsn()"));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = confirmed();
        if now >= target {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "confirmed_flush_lsn {now:X} (was {before:X}) never reached {target:X}:\n{}",
            p.log_text()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(p.line_count(), 0);
}

/// A slot whose WAL the server removed (`wal_status = 'lost'` after `max_slot_wal_keep_size`)
/// stops the pipeline at once with a definite error naming the slot and the fix — on a private
/// cluster, since the setting would endanger every other slot of the shared server.
#[test]
fn slot_whose_wal_was_removed_is_a_definite_error() {
    if !pg_enabled("slot_whose_wal_was_removed_is_a_definite_error") {
        return;
    }
    let Some(pg) = PrivateCluster::start(&["max_slot_wal_keep_size=1MB", "max_wal_size=64MB"])
    else {
        return;
    };
    pg.psql("CREATE TABLE t (id int PRIMARY KEY, v text)");
    let mut spec = PipelineSpec::new("postgres", &["public.t"]);
    spec.source_extra = "create_slot = false".into();
    pg.psql(&format!(
        "SELECT 1 FROM pg_create_logical_replication_slot('{}', 'pgoutput')",
        spec.slot
    ));
    // Three WAL segments past the slot, then a checkpoint: the slot is invalidated.
    for _ in 0..3 {
        pg.psql("INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g ON CONFLICT (id) DO UPDATE SET v = excluded.v");
        pg.psql("SELECT pg_switch_wal()");
    }
    pg.psql("CHECKPOINT");
    let status = pg.psql(&format!(
        "SELECT wal_status FROM pg_replication_slots WHERE slot_name = '{}'",
        spec.slot
    ));
    assert_eq!(status, "lost", "the slot should be invalidated");
    let mut p = pg.pipeline(spec);
    p.spawn();
    let exit = p.wait_exit(Duration::from_secs(30)).expect("stops at once");
    assert!(!exit.success());
    let log = p.log_text();
    assert!(
        log.contains(&p.spec.slot)
            && log.contains("WAL was removed")
            && log.contains("re-snapshot"),
        "{log}"
    );
    assert!(!log.contains("reconnecting"), "not retried: {log}");
}
