//! An initial snapshot survives a transient error in the same process (`src/snapshot/retry.rs`):
//! the test kills the snapshot's reader connections while they read (PostgreSQL:
//! `pg_terminate_backend` on the backends running the snapshot's COPY; MariaDB: `KILL` on the
//! connections running its SELECT), and checks that the same process logs the retry, counts it
//! in `/metrics`, finishes the snapshot from its last completed ranges, and leaves the table's
//! exact state in the sink (duplicates only of the ranges in flight at the kill).
//!
//! The `*_across_server_*` tests go further: the whole server goes away mid-snapshot (a clean
//! stop, or a crash: PostgreSQL `-m immediate`, MariaDB SIGKILL) and refuses connections for a
//! few seconds before it comes back on the same port. That is what an operator's restart or a
//! failover looks like, and what killing connections cannot show: every attempt of the retry
//! fails while the server is down (the engine must keep backing off, not give up, and say so
//! in `/readyz`), the exported snapshot and the readers' transactions are gone when it returns
//! (PostgreSQL's slot survives, crash recovery included), and the stream must start from the
//! snapshot's position on the restarted server. Those tests use private servers
//! (`private_servers.rs`): the shared ones serve every other test in parallel.

use std::time::{Duration, Instant};

use super::snapshot_support::{
    assert_same_state, initial_only_state, output, range_bounds, replay, wait_for, wait_for_every,
    Replay,
};
use super::support::{http_get, metric, Pipeline};

/// Rows of the snapshotted table.
const ROWS: usize = 200_000;
/// Output bytes before the kill (about 20,000 of the 200,000 rows): the snapshot reads in about
/// a second here, so the test watches the output's size, not the checkpoint's ranges.
const OUTPUT_BEFORE_KILL: u64 = 16 << 20;
const RANGE_ROWS: usize = 5_000;
const PARALLELISM: usize = 2;

fn snapshot_config() -> String {
    format!(
        "parallelism = {PARALLELISM}\nrange_rows = {RANGE_ROWS}\nchunk_rows = 1000\nprogress = \"log\"\nprogress_interval = \"1s\""
    )
}

fn snapshot_complete(p: &Pipeline) -> bool {
    p.checkpoint()
        .is_some_and(|c| c["snapshot"]["complete"] == true)
}

fn output_len(p: &Pipeline) -> u64 {
    std::fs::metadata(&p.out).map_or(0, |m| m.len())
}

/// Polls `done` every few milliseconds (the windows here are short), failing with the log when
/// the process exits or `timeout` passes.
fn poll(what: &str, p: &mut Pipeline, timeout: Duration, done: impl FnMut(&Pipeline) -> bool) {
    wait_for_every(what, p, timeout, Duration::from_millis(5), done);
}

/// What the test saw around the kill.
struct Kill {
    /// Connections killed.
    killed: usize,
    /// The output's length in bytes right after the kill.
    output_at_kill: usize,
    /// The output's length once the retry was logged (after its forced checkpoint, before
    /// the resumed run): what follows is the resumed run's.
    output_at_retry: usize,
    /// `(lo, hi)` key bounds of the ranges the forced checkpoint recorded as done.
    done: Vec<(i64, i64)>,
}

/// The key bounds of the ranges a checkpoint records as done (integer single-column keys).
fn done_ranges(cp: &serde_json::Value) -> Vec<(i64, i64)> {
    let t = &cp["snapshot"]["tables"][0];
    let bounds: Vec<i64> = t["bounds"]
        .as_array()
        .map(|b| {
            b.iter()
                .filter_map(|b| b[0].as_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let done = t["done"].as_array().cloned().unwrap_or_default();
    done.iter()
        .filter_map(|r| r.as_u64())
        .map(|r| range_bounds(&bounds, r as usize))
        .collect()
}

/// Waits until the snapshot has written `OUTPUT_BEFORE_KILL` bytes, calls `kill` (which kills
/// the reader connections it finds and says how many) until it killed one while the snapshot
/// is incomplete, then waits for the retry's warning and reads its forced checkpoint.
fn kill_mid_snapshot(p: &mut Pipeline, mut kill: impl FnMut() -> usize) -> Kill {
    poll(
        "snapshot rows before the kill",
        p,
        Duration::from_secs(180),
        |p| output_len(p) >= OUTPUT_BEFORE_KILL,
    );
    let killed = loop {
        assert!(
            !snapshot_complete(p),
            "the snapshot finished before a reader could be killed:\n{}",
            p.log_text()
        );
        let killed = kill();
        if killed > 0 {
            break killed;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let output_at_kill = output(p).len();
    // Under load the first checkpoint can come after the kill (none yet is mid-snapshot too);
    // waiting for one let a fast snapshot finish first. The forced checkpoint below is the
    // real check: it comes only after a reader's error.
    if let Some(cp) = p.checkpoint() {
        assert_eq!(
            cp["snapshot"]["complete"], false,
            "the kill must land mid-snapshot: {cp}"
        );
    }
    // The warning comes after the forced checkpoint and 1 s before the resumed run.
    poll("the retry warning", p, Duration::from_secs(60), |p| {
        p.log_text().contains("initial snapshot: transient error")
    });
    let cp = p.checkpoint().expect("the forced checkpoint");
    assert_eq!(cp["snapshot"]["complete"], false, "{cp}");
    Kill {
        killed,
        output_at_kill,
        output_at_retry: output(p).len(),
        done: done_ranges(&cp),
    }
}

fn key_id(key: &str) -> i64 {
    serde_json::from_str::<serde_json::Value>(key).expect("a JSON key")["id"]
        .as_i64()
        .expect("an integer id")
}

/// After the kill: the same process retries and finishes; checks the log, the metrics, the
/// rows read before and after the kill, that ranges the forced checkpoint recorded as done are
/// not read again, and the duplicates; returns the whole output replayed.
fn assert_retried(p: &mut Pipeline, kill: &Kill, table: &str) -> Replay {
    assert!(kill.killed >= 1);
    let pid = p.pid().expect("running");
    // `wait_for` fails if the process exits: the retry happens in it.
    wait_for(
        "the snapshot to finish after the kill",
        p,
        Duration::from_secs(300),
        snapshot_complete,
    );
    assert_eq!(p.pid(), Some(pid), "the same process finished the snapshot");
    let retries = metric(&p.metrics(), "tidemark_snapshot_retries_total").unwrap_or(0.0);
    assert!(
        retries >= 1.0,
        "tidemark_snapshot_retries_total = {retries}"
    );
    // The stream starts after the snapshot: ready, in the same process.
    p.wait_ready();
    let log = p.log_text();
    assert!(log.contains("retry_in"), "{log}");
    for line in log.lines().filter(|l| l.contains("initial snapshot:")) {
        eprintln!("{table}: {line}");
    }
    assert!(
        log.contains("resuming it from the last completed range"),
        "the retry takes the restart's decision:\n{log}"
    );
    assert!(
        p.try_wait().is_none(),
        "the pipeline keeps streaming:\n{log}"
    );
    let all = output(p);
    let before = replay(&all[..kill.output_at_kill], table);
    let resumed = replay(&all[kill.output_at_retry..], table);
    let read_before = before.ops.get("r").copied().unwrap_or(0);
    let read_after = resumed.ops.get("r").copied().unwrap_or(0);
    assert!(
        read_before > 0 && read_after > 0,
        "rows read before ({read_before}) and after ({read_after}) the kill"
    );
    assert!(
        before.reads.len() < ROWS,
        "the first run had not read every row at the kill"
    );
    assert!(
        resumed.reads.keys().any(|k| !before.reads.contains_key(k)),
        "the resumed run read rows the first run had not sent"
    );
    let reread: Vec<&String> = resumed
        .reads
        .keys()
        .filter(|k| {
            let id = key_id(k);
            kill.done.iter().any(|&(lo, hi)| id >= lo && id < hi)
        })
        .take(5)
        .collect();
    assert!(
        reread.is_empty(),
        "the retry re-read rows of ranges its checkpoint recorded as done ({:?}): {reread:?}",
        kill.done
    );
    let state = replay(&all, table);
    // Duplicates only of what was in flight at each error: the ranges being read (one per
    // reader) and the held-back chunk's (the emitter's), never the whole table again (ranges
    // are cut by sampling: half a range of slack).
    let twice: u64 = state.reads.values().map(|&n| u64::from(n - 1)).sum();
    let bound = (retries as u64) * ((PARALLELISM + 2) * RANGE_ROWS * 3 / 2) as u64;
    assert!(
        twice <= bound,
        "{twice} duplicate reads after {retries} retries (at most {bound}: the ranges in flight); e.g. {:?}",
        state.keys_read_twice()
    );
    state
}

/// Spawns `p`, kills its snapshot's readers mid-snapshot with `kill` ([`kill_mid_snapshot`]),
/// checks the retry ([`assert_retried`]), stops `p`, and checks that the sink holds every row
/// of `k`, exactly the state an `initial_only` run of `reference()` leaves.
fn assert_retry_ends_exact(
    p: &mut Pipeline,
    kill: impl FnMut() -> usize,
    reference: impl FnOnce() -> Pipeline,
) {
    p.spawn();
    let kill = kill_mid_snapshot(p, kill);
    let state = assert_retried(p, &kill, "k");
    p.stop();
    assert_eq!(state.rows.len(), ROWS);
    let reference = initial_only_state(reference(), "k", Duration::from_secs(300));
    assert_same_state("state after the in-process retry", &reference, &state);
}

/// How long a stopped server stays down: several attempts of the retry fail meanwhile (they
/// back off 1 s, 2 s, …).
const DOWN_FOR: Duration = Duration::from_secs(5);

/// The stream's changes after the snapshot, the same SQL for both servers: an insert, an
/// update and a delete of `k`.
const STREAM_DML: &str = "INSERT INTO k VALUES (200001, 1, 'new'); UPDATE k SET v = 100 WHERE id = 1; DELETE FROM k WHERE id = 2";

/// While the server is down (after [`kill_mid_snapshot`] saw the retry's warning), for
/// [`DOWN_FOR`]: the process keeps running, `/readyz` answers 503 naming the retry, and the
/// snapshot stays incomplete; then the retry is counted and the log shows that more attempts
/// failed meanwhile (the retry's decision, or a second retry, met the server still down).
fn assert_retrying_while_down(p: &mut Pipeline) {
    let until = Instant::now() + DOWN_FOR;
    while Instant::now() < until {
        assert!(
            p.try_wait().is_none(),
            "tidemark exited while the server was down:\n{}",
            p.log_text()
        );
        let ready = http_get(p.metrics_port, "/readyz");
        assert!(
            matches!(&ready, Some((503, body)) if body.contains("retrying the snapshot")),
            "/readyz while the server is down: {ready:?}"
        );
        assert!(
            !snapshot_complete(p),
            "the snapshot completed while the server was down"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let retries = metric(&p.metrics(), "tidemark_snapshot_retries_total").unwrap_or(0.0);
    assert!(
        retries >= 1.0,
        "tidemark_snapshot_retries_total = {retries} while the server is down"
    );
    let log = p.log_text();
    assert!(
        log.matches("transient error").count() >= 2,
        "no attempt after the first error while the server was down {DOWN_FOR:?}:\n{log}"
    );
}

/// After the snapshot (`p` streaming, `state` its replayed output so far): its state equals
/// an `initial_only` run's of `reference()`; then `dml` (on the source: [`STREAM_DML`])
/// reaches the sink exactly once, and the sink's state equals the table's again.
fn assert_exact_then_streams(
    p: &mut Pipeline,
    state: &Replay,
    dml: impl FnOnce(),
    reference: impl Fn() -> Pipeline,
) {
    assert_eq!(
        state.rows.len(),
        ROWS,
        "rows in the sink after the snapshot"
    );
    // Only the run the stop cut was reading; the attempts while the server was down read
    // nothing: duplicates of the ranges in flight at that one error at most, however many
    // retries were counted.
    let twice: u64 = state.reads.values().map(|&n| u64::from(n - 1)).sum();
    let bound = ((PARALLELISM + 2) * RANGE_ROWS * 3 / 2) as u64;
    assert!(
        twice <= bound,
        "{twice} duplicate reads after one interrupted run (at most {bound}); e.g. {:?}",
        state.keys_read_twice()
    );
    eprintln!("server stop mid-snapshot: {twice} rows read twice");
    let expected = initial_only_state(reference(), "k", Duration::from_secs(300));
    assert_same_state("state after the server restart", &expected, state);
    dml();
    let streamed = |p: &Pipeline| {
        let r = replay(&output(p), "k");
        ["c", "u", "d"].iter().all(|op| r.ops.contains_key(*op))
    };
    wait_for(
        "the insert, update and delete after the snapshot",
        p,
        Duration::from_secs(120),
        streamed,
    );
    // A moment more, so a change delivered twice would show.
    std::thread::sleep(Duration::from_secs(1));
    let after = replay(&output(p), "k");
    for op in ["c", "u", "d"] {
        assert_eq!(
            after.ops.get(op).copied(),
            Some(1),
            "`{op}` events after the snapshot (ops {:?})",
            after.ops
        );
    }
    let expected = initial_only_state(reference(), "k", Duration::from_secs(300));
    assert_same_state("state after the stream's changes", &expected, &after);
    assert!(
        p.try_wait().is_none(),
        "the pipeline keeps streaming:\n{}",
        p.log_text()
    );
}

/// The server-stop sequence both sources share: `p` (not yet running) starts, its private
/// server is stopped mid-snapshot (`stop`) and started again (`start`) a few seconds later;
/// the same process retries throughout, resumes from the last completed ranges, ends with
/// the table `k`'s exact state (`reference`: the pipeline replayed against), then streams
/// `dml` and stops cleanly. Every step gets the server through `server`.
fn assert_survives_stop<S>(
    server: &mut S,
    p: &mut Pipeline,
    mut stop: impl FnMut(&mut S),
    start: impl FnOnce(&mut S),
    dml: impl FnOnce(&S),
    reference: impl Fn(&S) -> Pipeline,
) {
    p.spawn();
    let kill = kill_mid_snapshot(p, || {
        stop(server);
        1
    });
    assert_retrying_while_down(p);
    start(server);
    let state = assert_retried(p, &kill, "k");
    let server = &*server;
    assert_exact_then_streams(p, &state, || dml(server), || reference(server));
    assert_eq!(
        p.stop().map(|s| s.success()),
        Some(true),
        "{}",
        p.log_text()
    );
}

mod postgres {
    use super::super::private_servers::{PgStop, PrivateCluster};
    use super::super::snapshot_support::replay_file;
    use super::super::support::{pg_enabled, psql, PipelineSpec, TestDb};
    use super::*;

    fn pipeline(db: &str, snapshot: &str) -> Pipeline {
        let mut spec = PipelineSpec::new(db, &["public.k"]);
        spec.pipeline_extra = format!("\n[snapshot]\n{snapshot}\n");
        Pipeline::new(spec)
    }

    /// Terminates the snapshot's readers: backends of `db` whose last query is a COPY and that
    /// are still inside their snapshot transaction (`active`, or `idle in transaction` while
    /// the engine drains what the server already sent; a bare `idle` one finished its last
    /// range, and killing it after the snapshot completed failed the test).
    fn terminate_readers(db: &str) -> usize {
        psql(
            "postgres",
            &format!(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = '{db}' AND pid <> pg_backend_pid() \
                 AND state IN ('active', 'idle in transaction') AND query LIKE 'COPY (SELECT%'"
            ),
        )
        .trim()
        .parse()
        .unwrap_or(0)
    }

    /// `pg_terminate_backend` on the readers mid-snapshot: the same process retries, resumes
    /// from the last completed ranges and ends with the table's exact state.
    #[test]
    fn snapshot_pg_retries_after_readers_are_terminated() {
        if !pg_enabled("snapshot_pg_retries_after_readers_are_terminated") {
            return;
        }
        let db = TestDb::create("tm_snap_retry");
        psql(
            &db.name,
            &format!(
                "CREATE TABLE k (id int PRIMARY KEY, v int, pad text);
                 INSERT INTO k SELECT i, i % 7, repeat('p', 200) FROM generate_series(1, {ROWS}) i;
                 ANALYZE k;"
            ),
        );
        let mut p = pipeline(&db.name, &snapshot_config());
        assert_retry_ends_exact(
            &mut p,
            || terminate_readers(&db.name),
            || pipeline(&db.name, "mode = \"initial_only\"\nprogress = \"off\""),
        );
        // The sink's file is what `replay` read.
        assert_eq!(replay_file(&p.out, "k").rows.len(), ROWS);
    }

    /// A private cluster's server stopped (`mode`) mid-snapshot and started again a few
    /// seconds later: the same process retries throughout, resumes from the last completed
    /// ranges, ends with the table's exact state, and streams from the slot afterwards.
    fn assert_survives_server_stop(test: &str, mode: PgStop) {
        if !pg_enabled(test) {
            return;
        }
        let Some(mut pg) = PrivateCluster::start(&["max_replication_slots=8", "max_wal_senders=8"])
        else {
            return;
        };
        pg.psql(&format!(
            "CREATE TABLE k (id int PRIMARY KEY, v int, pad text);
             INSERT INTO k SELECT i, i % 7, repeat('p', 200) FROM generate_series(1, {ROWS}) i;
             ANALYZE k;"
        ));
        let pipeline = |pg: &PrivateCluster, snapshot: &str| {
            let mut spec = PipelineSpec::new("postgres", &["public.k"]);
            spec.pipeline_extra = format!("\n[snapshot]\n{snapshot}\n");
            pg.pipeline(spec)
        };
        let mut p = pipeline(&pg, &snapshot_config());
        assert_survives_stop(
            &mut pg,
            &mut p,
            |pg| pg.stop(mode),
            |pg| pg.start_again(),
            |pg| {
                pg.psql(STREAM_DML);
            },
            |pg| pipeline(pg, "mode = \"initial_only\"\nprogress = \"off\""),
        );
    }

    /// `pg_ctl stop -m fast` mid-snapshot, started again after a few seconds.
    #[test]
    fn snapshot_pg_retries_across_server_restart() {
        assert_survives_server_stop("snapshot_pg_retries_across_server_restart", PgStop::Fast);
    }

    /// `pg_ctl stop -m immediate` (a crash: recovery at the next start) mid-snapshot.
    #[test]
    fn snapshot_pg_retries_across_server_crash() {
        assert_survives_server_stop("snapshot_pg_retries_across_server_crash", PgStop::Immediate);
    }
}

#[cfg(feature = "mysql")]
mod mysql {
    use super::super::mysql_support::{
        mysql_enabled, pipeline as my_pipeline, port, sql, MyDb, MySpec, MyUser,
    };
    use super::super::private_servers::{MyStop, PrivateMariadb};
    use super::*;

    fn pipeline(db: &str, snapshot: &str) -> Pipeline {
        let mut spec = MySpec::new(db);
        spec.pipeline_extra = format!("max_queue_bytes = 33554432\n\n[snapshot]\n{snapshot}\n");
        my_pipeline(spec)
    }

    /// `KILL`s the connections of `user` (the pipeline's own): during the snapshot, its
    /// readers. They are found by user, not by their SELECT, because a reader is mostly
    /// `Sleep` in the process list: the server has sent the range's rows and the reader is
    /// still consuming them from its socket.
    fn kill_readers(user: &str) -> usize {
        let ids = sql(
            "",
            &format!(
                "SELECT ID FROM information_schema.PROCESSLIST \
                 WHERE USER = '{user}' AND COMMAND <> 'Binlog Dump' AND ID <> CONNECTION_ID()"
            ),
        );
        let mut killed = 0;
        for id in ids.lines().filter(|l| !l.trim().is_empty()) {
            // The connection may be gone already: a failed KILL is not counted.
            let out = std::process::Command::new("mariadb")
                .args(["-uroot", "-h127.0.0.1"])
                .arg(format!("-P{}", port()))
                .arg("-e")
                .arg(format!("KILL CONNECTION {}", id.trim()))
                .output()
                .expect("mariadb client runs");
            if out.status.success() {
                killed += 1;
            }
        }
        killed
    }

    /// `KILL` on the readers mid-snapshot: the same process retries, resumes from the last
    /// completed ranges and ends with the table's exact state.
    #[test]
    fn snapshot_mysql_retries_after_readers_are_killed() {
        if !mysql_enabled("snapshot_mysql_retries_after_readers_are_killed") {
            return;
        }
        let db = MyDb::create("tm_msnap_retry");
        sql(
            &db.name,
            &format!(
                "CREATE TABLE k (id INT PRIMARY KEY, v INT, pad VARCHAR(300));
                 INSERT INTO k SELECT seq, seq % 7, REPEAT('p', 250) FROM seq_1_to_{ROWS}; ANALYZE TABLE k"
            ),
        );
        // Its own user, so the test finds the pipeline's connections among everyone's.
        let user = MyUser::create();
        let mut spec = MySpec::new(&db.name);
        spec.user = Some((user.name.clone(), user.password.clone()));
        spec.pipeline_extra = format!(
            "max_queue_bytes = 33554432\n\n[snapshot]\n{}\n",
            snapshot_config()
        );
        let mut p = my_pipeline(spec);
        assert_retry_ends_exact(
            &mut p,
            || kill_readers(&user.name),
            || pipeline(&db.name, "mode = \"initial_only\"\nprogress = \"off\""),
        );
    }

    /// A private MariaDB stopped (`mode`) mid-snapshot and started again a few seconds later
    /// on the same data directory and port: the same process retries throughout, resumes
    /// from the last completed ranges in new consistent snapshots, ends with the table's exact
    /// state, and streams from the snapshot's binlog position on the restarted server.
    fn assert_survives_server_stop(test: &str, mode: MyStop) {
        if !mysql_enabled(test) {
            return;
        }
        let Some(mut my) = PrivateMariadb::start() else {
            return;
        };
        my.sql("", "CREATE DATABASE tm DEFAULT CHARSET utf8mb4");
        my.sql(
            "tm",
            &format!(
                "CREATE TABLE k (id INT PRIMARY KEY, v INT, pad VARCHAR(300));
                 INSERT INTO k SELECT seq, seq % 7, REPEAT('p', 250) FROM seq_1_to_{ROWS}; ANALYZE TABLE k"
            ),
        );
        let port = my.port;
        let pipeline = |snapshot: &str| {
            let mut spec = MySpec::new("tm");
            spec.port = port;
            spec.pipeline_extra = format!("max_queue_bytes = 33554432\n\n[snapshot]\n{snapshot}\n");
            my_pipeline(spec)
        };
        let mut p = pipeline(&snapshot_config());
        assert_survives_stop(
            &mut my,
            &mut p,
            |my| my.stop(mode),
            |my| my.start_again(),
            |my| {
                my.sql("tm", STREAM_DML);
            },
            |_| pipeline("mode = \"initial_only\"\nprogress = \"off\""),
        );
    }

    /// A clean shutdown (SIGTERM, as `SHUTDOWN`) mid-snapshot, started again after a few
    /// seconds.
    #[test]
    fn snapshot_mysql_retries_across_server_restart() {
        assert_survives_server_stop(
            "snapshot_mysql_retries_across_server_restart",
            MyStop::Clean,
        );
    }

    /// SIGKILL (a crash: InnoDB and binlog recovery at the next start) mid-snapshot.
    #[test]
    fn snapshot_mysql_retries_across_server_crash() {
        assert_survives_server_stop("snapshot_mysql_retries_across_server_crash", MyStop::Kill);
    }
}
