//! An initial snapshot survives a transient error in the same process (`src/snapshot/retry.rs`):
//! the test kills the snapshot's reader connections while they read (PostgreSQL:
//! `pg_terminate_backend` on the backends running the snapshot's COPY; MariaDB: `KILL` on the
//! connections running its SELECT), and checks that the same process logs the retry, counts it
//! in `/metrics`, finishes the snapshot from its last completed ranges, and leaves the table's
//! exact state in the sink (duplicates only of the ranges in flight at the kill).

use std::time::Duration;

use super::snapshot_support::{
    assert_same_state, initial_only_state, output, range_bounds, replay, wait_for, wait_for_every,
    Replay,
};
use super::support::{metric, Pipeline};

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
    let cp = p.checkpoint().expect("a checkpoint before the kill");
    assert_eq!(
        cp["snapshot"]["complete"], false,
        "the kill must land mid-snapshot: {cp}"
    );
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

mod postgres {
    use super::super::snapshot_support::replay_file;
    use super::super::support::{pg_enabled, psql, PipelineSpec, TestDb};
    use super::*;

    fn pipeline(db: &str, snapshot: &str) -> Pipeline {
        let mut spec = PipelineSpec::new(db, &["public.k"]);
        spec.pipeline_extra = format!("\n[snapshot]\n{snapshot}\n");
        Pipeline::new(spec)
    }

    /// Terminates the backends of `db` whose last query is the snapshot's COPY.
    fn terminate_readers(db: &str) -> usize {
        psql(
            "postgres",
            &format!(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = '{db}' AND pid <> pg_backend_pid() AND query LIKE 'COPY (SELECT%'"
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
}

#[cfg(feature = "mysql")]
mod mysql {
    use super::super::mysql_support::{
        mysql_enabled, pipeline as my_pipeline, port, sql, MyDb, MySpec, MyUser,
    };
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
}
