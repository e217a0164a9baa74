//! Snapshots against the real PostgreSQL (`TIDEMARK_TEST_PG=1`): modes and Debezium marks, a
//! 1,000,000-row all-types table read while a workload changes it, kill -9 in the middle of
//! a snapshot, and the events against real Debezium's `snapshot.mode=initial`.
//!
//! "The sink's state equals the source table" is checked by replaying the JSON-lines output
//! into a key → row map and comparing it, row by row (count and checksum), with the map of a
//! second, quiescent `initial_only` snapshot of the final table (same encoder, read at rest),
//! and the key set and count with `SELECT` directly.

use std::process::Command;
use std::time::Duration;

use super::snapshot_support::{
    assert_filtered_estimate, assert_no_rows_remaining, assert_same_state, ddl_mid_snapshot,
    initial_only_state, int_triples, key_changed, kill9_after_rekey, output, range_bounds, reads,
    rekeyed_mid_snapshot, replay, replay_file, snapshot_cli, snapshot_until_complete, status_text,
    wait_entry, wait_for, DdlReplay, FilteredReads, RekeySource, Replay, TypeReplay,
};
use super::support::{pg_enabled, psql, Pipeline, PipelineSpec, TestDb};

/// A pipeline with snapshot settings and a compact JSON output (no schemas).
fn pipeline(db: &str, tables: &[&str], snapshot: &str) -> Pipeline {
    let mut spec = PipelineSpec::new(db, tables);
    spec.pipeline_extra = format!("\n[snapshot]\n{snapshot}\n");
    // `[snapshot]` follows `[pipeline]` in the generated TOML; keep the source keys in order.
    spec.sink_extra = String::new();
    Pipeline::new(spec)
}

/// Waits for the logical decoding message `done` in the output (everything before it is in).
fn wait_marker(p: &mut Pipeline, db: &str, timeout: Duration) {
    // Counted, so a test may wait for a marker more than once.
    let markers = |p: &Pipeline| output(p).matches("\"op\":\"m\"").count();
    let before = markers(p);
    psql(
        db,
        "SELECT pg_logical_emit_message(false, 'tidemark-test', 'done')",
    );
    wait_for("the end marker", p, timeout, |p| markers(p) > before);
}

/// The quiescent state of `table`: an `initial_only` snapshot of it, replayed.
fn reference_state(db: &str, table: &str) -> Replay {
    let p = pipeline(db, &[table], "mode = \"initial_only\"\nprogress = \"off\"");
    let name = table.rsplit_once('.').map_or(table, |(_, t)| t);
    initial_only_state(p, name, Duration::from_secs(300))
}

fn keys_in_db(db: &str, sql: &str) -> Vec<String> {
    psql(db, sql)
        .lines()
        .map(|l| format!("{{\"id\":{l}}}"))
        .collect()
}

/// `initial` snapshots tables (with and without a key, one empty) with Debezium's
/// `source.snapshot` marks, then streams; a restart does not snapshot again; `no_data` reads
/// nothing; `initial_only` stops after the snapshot.
#[test]
fn snapshot_pg_modes_marks_and_restart() {
    if !pg_enabled("snapshot_pg_modes_marks_and_restart") {
        return;
    }
    let db = TestDb::create("tm_snap_modes");
    psql(
        &db.name,
        "CREATE TABLE a (id int PRIMARY KEY, v text);
         INSERT INTO a SELECT i, 'a' || i FROM generate_series(1, 5) i;
         CREATE TABLE b (id int PRIMARY KEY);
         CREATE TABLE c (x int, y text);
         INSERT INTO c SELECT i, 'c' || i FROM generate_series(1, 3) i;",
    );
    let tables = ["public.a", "public.b", "public.c"];
    let mut p = pipeline(&db.name, &tables, "parallelism = 1\nprogress = \"log\"");
    p.spawn();
    let lines = p.wait_lines(8, Duration::from_secs(60));
    let reads: Vec<(String, String)> = lines
        .iter()
        .filter_map(|l| {
            let v = &l["value"];
            let pl = v.get("payload").unwrap_or(v);
            (pl["op"] == "r").then(|| {
                (
                    pl["source"]["table"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    pl["source"]["snapshot"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            })
        })
        .collect();
    assert_eq!(reads.len(), 8, "{reads:?}");
    // One reader, tables in order: a's first row is the snapshot's first, c's last the last.
    assert_eq!(reads[0], ("a".into(), "first".into()));
    assert_eq!(reads[4], ("a".into(), "last_in_data_collection".into()));
    assert_eq!(reads[5], ("c".into(), "first_in_data_collection".into()));
    assert_eq!(reads[6], ("c".into(), "true".into()));
    assert_eq!(reads[7], ("c".into(), "last".into()));
    wait_for(
        "the checkpoint of the finished snapshot",
        &mut p,
        Duration::from_secs(30),
        |p| {
            p.checkpoint()
                .is_some_and(|c| c["snapshot"]["complete"] == true)
        },
    );
    psql(&db.name, "INSERT INTO a VALUES (6, 'streamed')");
    let lines = p.wait_lines(9, Duration::from_secs(30));
    let last = &lines[8]["value"];
    let last = last.get("payload").unwrap_or(last);
    assert_eq!(last["op"], "c");
    assert_eq!(last["source"]["snapshot"], "false");
    let metrics = p.metrics();
    assert!(
        metrics.contains("table=\"public.a\"} 5")
            && metrics.contains("tidemark_snapshot_chunks_total")
            && metrics.contains("tidemark_snapshot_rows_remaining"),
        "{metrics}"
    );
    let log = p.log_text();
    assert!(
        log.contains("snapshot.mode = initial and no checkpoint"),
        "{log}"
    );
    assert!(
        log.contains("snapshot progress") || log.contains("snapshot: table done"),
        "{log}"
    );
    p.stop();
    // A restart streams from the checkpoint: no second snapshot.
    p.spawn();
    psql(&db.name, "INSERT INTO a VALUES (7, 'after restart')");
    let lines = p.wait_lines(10, Duration::from_secs(60));
    assert_eq!(lines.len(), 10, "a restart must not snapshot again");
    assert!(
        p.log_text().contains("snapshot is complete: streaming"),
        "{}",
        p.log_text()
    );
    p.stop();
    let status = status_text(&p);
    assert!(
        status.contains("snapshot (initial") && status.contains(": complete"),
        "{status}"
    );
    assert!(
        status.contains("public.a: 5 of ~5 rows durable, ranges 1/1, done"),
        "{status}"
    );

    let mut none = pipeline(&db.name, &tables, "mode = \"no_data\"");
    none.start();
    psql(&db.name, "INSERT INTO a VALUES (8, 'only this')");
    let lines = none.wait_lines(1, Duration::from_secs(30));
    assert_eq!(lines.len(), 1);
    assert!(none.log_text().contains("no_data: streaming only"));
    none.stop();

    let mut only = pipeline(&db.name, &tables, "mode = \"initial_only\"");
    only.spawn();
    let status = only
        .wait_exit(Duration::from_secs(60))
        .expect("initial_only exits");
    assert!(status.success(), "{}", only.log_text());
    let r = replay_file(&only.out, "a");
    assert_eq!(r.rows.len(), 8);
    assert!(only.log_text().contains("not streaming"));
}

/// kill -9 in the middle of a snapshot: the restart resumes from the last completed range
/// (ranges recorded as done are not read again) and the final state is exact, with rows
/// changed between the two runs.
#[test]
fn snapshot_pg_kill9_resumes_from_last_range() {
    if !pg_enabled("snapshot_pg_kill9_resumes_from_last_range") {
        return;
    }
    let db = TestDb::create("tm_snap_kill");
    psql(
        &db.name,
        "CREATE TABLE k (id int PRIMARY KEY, v int, pad text);
         INSERT INTO k SELECT i, 0, repeat('p', 200) FROM generate_series(1, 200000) i;
         ANALYZE k;",
    );
    let cfg = "parallelism = 2\nrange_rows = 5000\nchunk_rows = 1000\nprogress = \"log\"\nprogress_interval = \"1s\"";
    let mut p = pipeline(&db.name, &["public.k"], cfg);
    p.spawn();
    wait_for("a few ranges done", &mut p, Duration::from_secs(120), |p| {
        p.checkpoint()
            .and_then(|c| {
                c["snapshot"]["tables"][0]["done"]
                    .as_array()
                    .map(|d| d.len())
            })
            .is_some_and(|n| n >= 3)
    });
    p.kill9();
    let cp = p.checkpoint().expect("checkpoint");
    let snap = &cp["snapshot"];
    assert_eq!(
        snap["complete"], false,
        "the kill must land mid-snapshot: {cp}"
    );
    let done: Vec<u64> = snap["tables"][0]["done"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let bounds: Vec<i64> = snap["tables"][0]["bounds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b[0].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(bounds.len() >= 20, "{bounds:?}");
    let first_run = output(&p);
    let status = status_text(&p);
    assert!(
        status.contains("in progress (a restart resumes it)"),
        "{status}"
    );
    // Changes between the runs: in done ranges, in ranges not read yet, new and deleted rows.
    psql(
        &db.name,
        "UPDATE k SET v = 1 WHERE id % 1000 = 7;
         DELETE FROM k WHERE id % 1000 = 9;
         INSERT INTO k SELECT i, 2, 'new' FROM generate_series(200001, 200100) i;",
    );
    p.spawn();
    wait_for(
        "the snapshot to finish",
        &mut p,
        Duration::from_secs(180),
        |p| {
            p.checkpoint()
                .is_some_and(|c| c["snapshot"]["complete"] == true)
        },
    );
    wait_marker(&mut p, &db.name, Duration::from_secs(60));
    p.stop();
    let log = p.log_text();
    assert!(
        log.contains("resuming it from the last completed range"),
        "{log}"
    );
    // Keys of the ranges done before the kill are read in the first run only.
    let all = output(&p);
    let second_run = &all[first_run.len()..];
    let in_done = |id: i64| {
        done.iter().any(|&r| {
            let (lo, hi) = range_bounds(&bounds, r as usize);
            id >= lo && id < hi
        })
    };
    let second = replay(second_run, "k");
    let reread: Vec<&String> = second
        .reads
        .keys()
        .filter(|k| {
            let id: i64 = serde_json::from_str::<serde_json::Value>(k).unwrap()["id"]
                .as_i64()
                .unwrap();
            in_done(id)
        })
        .take(5)
        .collect();
    assert!(
        reread.is_empty(),
        "the restart re-read rows of ranges recorded as done: {reread:?}"
    );
    assert!(
        second.ops.get("r").copied().unwrap_or(0) > 0,
        "the restart read the remaining ranges"
    );
    let state = replay(&all, "k");
    let keys = keys_in_db(&db.name, "SELECT id FROM k ORDER BY id");
    assert_eq!(state.rows.len(), keys.len());
    let reference = reference_state(&db.name, "public.k");
    assert_same_state("state after kill -9 and resume", &reference, &state);
}

/// The SQL of a 1,000,000-row table with (nearly) every supported type.
const ALL_TYPES_ROWS: &str = "
INSERT INTO big SELECT i,
  (i % 30000)::int2, i, i::int8 * 1000003, (i % 99999) / 100.0, i / 7.0, i / 3.0, i / 9.0, i % 2 = 0,
  'text ' || i, 'vc' || (i % 1000), 'c' || (i % 100), 'n' || i, int4send(i),
  DATE '2000-01-01' + (i % 20000), TIME '00:00' + (i % 86400) * INTERVAL '1 second', TIME '12:00:00.123',
  '13:45:30.5+05:30', TIMESTAMP '2001-01-01' + i * INTERVAL '1 minute', TIMESTAMP '1960-01-01 00:00:00.001',
  TIMESTAMPTZ '2020-01-01 00:00+00' + i * INTERVAL '1 second', (i % 1000) * INTERVAL '1 day 1 second',
  md5(i::text)::uuid, json_build_object('i', i), jsonb_build_object('i', i, 'a', ARRAY[1, 2]),
  ARRAY[i, i + 1], ARRAY['x' || i, NULL], ARRAY[[i, 1], [2, 3]], (ARRAY['sad','ok','happy'])[i % 3 + 1]::mood,
  i % 1000 + 1, ('10.0.' || (i % 256) || '.1')::inet, '10.0.0.0/8', '08:00:2b:01:02:03', '08:00:2b:01:02:03:04:05',
  (i % 10000) / 100.0, (i % 2)::bit(1), (i % 256)::bit(8), B'101', ('<a>' || i || '</a>')::xml,
  point(i, -i), '{1,2,3}', lseg(point(0, 0), point(i, i)), box(point(0, 0), point(i, i)), '[(0,0),(1,1)]',
  '((0,0),(1,1),(1,0))', circle(point(i, 0), 2), int4range(i, i + 10), numrange(i, i + 1.5),
  tsrange('2024-01-01', '2024-12-31'), tstzrange('2024-01-01 00:00+00', NULL), daterange('2024-01-01', '2024-02-01'),
  int8range(i, NULL), i::oid
FROM generate_series(1, 1000000) i";

/// 1,000,000 rows of every type, snapshotted while a workload updates, deletes and inserts
/// rows all over the key space (ranges already read, being read and not yet read): the sink's
/// state equals the table, no key is read twice (one exported snapshot), and memory stays
/// bounded by the queue and chunk sizes.
#[test]
fn snapshot_pg_million_rows_with_concurrent_workload() {
    if !pg_enabled("snapshot_pg_million_rows_with_concurrent_workload") {
        return;
    }
    let db = TestDb::create("tm_snap_big");
    let setup = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/debezium/workloads/all_types/setup.sql"),
    )
    .expect("all_types setup.sql");
    psql(&db.name, &setup);
    psql(
        &db.name,
        "CREATE TABLE big (LIKE all_types_default INCLUDING ALL)",
    );
    psql(&db.name, ALL_TYPES_ROWS);
    psql(&db.name, "ANALYZE big");
    let mut p = pipeline(
        &db.name,
        &["public.big"],
        "parallelism = 4\nrange_rows = 50000\nprogress = \"log\"\nprogress_interval = \"2s\"",
    );
    p.spawn();
    wait_for(
        "the snapshot to start",
        &mut p,
        Duration::from_secs(120),
        |p| p.log_text().contains("snapshot started"),
    );
    // The workload: 400 transactions, each updating, deleting and inserting rows spread over
    // the whole key range, while the snapshot reads it.
    let workload = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres", "-d", &db.name, "-c"])
        .arg(
            "DO $$ BEGIN FOR n IN 1..400 LOOP
               UPDATE big SET c_text = 'updated ' || n, c_int4 = -n WHERE id IN (n * 2497 % 1000000 + 1, n * 1231 % 1000000 + 1);
               DELETE FROM big WHERE id = n * 3301 % 1000000 + 1;
               INSERT INTO big (id, c_text, c_jsonb) VALUES (1000000 + n, 'inserted', '{\"n\": 1}');
               UPDATE big SET id = 2000000 + n WHERE id = n * 4099 % 1000000 + 1;
               COMMIT; PERFORM pg_sleep(0.02);
             END LOOP; END $$",
        )
        .spawn()
        .expect("workload psql");
    let mut workload = workload;
    let status = workload.wait().expect("workload ends");
    assert!(status.success(), "workload failed");
    wait_for(
        "the snapshot to finish",
        &mut p,
        Duration::from_secs(600),
        |p| {
            p.checkpoint()
                .is_some_and(|c| c["snapshot"]["complete"] == true)
        },
    );
    wait_marker(&mut p, &db.name, Duration::from_secs(300));
    let rss = p.current_peak_rss_kib().unwrap_or(0);
    p.stop();
    let state = replay_file(&p.out, "big");
    let dup = state.keys_read_twice();
    assert!(
        dup.is_empty(),
        "keys read twice inside one exported snapshot: {dup:?}"
    );
    let count: usize = psql(&db.name, "SELECT count(*) FROM big").parse().unwrap();
    assert_eq!(state.rows.len(), count);
    let mut keys = keys_in_db(&db.name, "SELECT id FROM big");
    keys.sort();
    let mut have: Vec<String> = state.rows.keys().cloned().collect();
    have.sort();
    assert!(keys == have, "key sets differ");
    let reference = reference_state(&db.name, "public.big");
    assert_same_state("1M-row snapshot under a workload", &reference, &state);
    // Bounded memory: 64 MiB queue, 4 readers × 16,384-row chunks; far below the table size.
    assert!(rss > 0 && rss < 768 * 1024, "peak RSS {rss} KiB");
    eprintln!(
        "snapshot_pg_million_rows: peak RSS {} MiB, ops {:?}, marks {:?}",
        rss / 1024,
        state.ops,
        state.marks
    );
}

/// The snapshot events of two all-types tables (every type, edge values, NULLs) equal real
/// Debezium 3.6's with `snapshot.mode=initial`: op `r`, key, after, and `source.snapshot`
/// (`first`, `true`, `last_in_data_collection`, `first_in_data_collection`, `last`), every
/// field but the run-dependent ones (snapshot time, LSN and txId of each tool's own slot).
#[test]
fn snapshot_pg_matches_debezium_initial() {
    if !pg_enabled("snapshot_pg_matches_debezium_initial") {
        return;
    }
    use super::support::{psql_file, records, suffix};
    use tidemark::diff::{diff, DiffOptions, Record};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let py = super::pg_debezium::debezium_python();
    let db = TestDb::create("tm_snap_dbz");
    let dir = root.join("tests/debezium/workloads/all_types");
    let mut sql = std::fs::read_to_string(dir.join("setup.sql"))
        .expect("setup.sql")
        .lines()
        .filter(|l| !l.starts_with("CREATE PUBLICATION"))
        .collect::<Vec<_>>()
        .join("\n");
    let tmpl = std::fs::read_to_string(dir.join("workload.tmpl.sql")).expect("tmpl");
    for t in ["all_types_default", "all_types_full"] {
        sql.push_str(&tmpl.replace("@T@", t));
        sql.push('\n');
    }
    // More rows than one chunk of each table, so `true` rows sit between first and last.
    sql.push_str(
        "INSERT INTO all_types_default (id, c_text, c_int8) SELECT i, 'row ' || i, i * 7 FROM generate_series(10, 2000) i;
         CREATE PUBLICATION dbz_pub FOR TABLE all_types_default, all_types_full;\n",
    );
    let work = std::env::temp_dir().join(format!("tidemark-snapdbz-{}", suffix()));
    std::fs::create_dir_all(&work).expect("work dir");
    std::fs::write(work.join("setup.sql"), sql).expect("write setup");
    psql_file(&db.name, &work.join("setup.sql"));

    let out = work.join("debezium.jsonl");
    let capture = Command::new(&py)
        .arg(root.join("tests/debezium/capture.py"))
        .args([
            "--dbname",
            &db.name,
            "--slot",
            &format!("dbz_{}", suffix()),
            "--publication",
            "dbz_pub",
        ])
        .args(["--tables", "public.all_types_default,public.all_types_full"])
        .args([
            "--snapshot-mode",
            "initial",
            "--idle-timeout",
            "8",
            "--start-timeout",
            "240",
            "--drop-slot",
        ])
        .arg("--out")
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
    assert_eq!(expected.len(), 2 * 4 + 1991, "Debezium's snapshot");

    let mut spec = PipelineSpec::new(
        &db.name,
        &["public.all_types_default", "public.all_types_full"],
    );
    spec.publication = "dbz_pub".into();
    spec.pipeline_extra =
        "\n[snapshot]\nmode = \"initial_only\"\nparallelism = 1\nchunk_rows = 500\n".into();
    let mut p = Pipeline::new(spec);
    p.spawn();
    let status = p
        .wait_exit(Duration::from_secs(120))
        .expect("initial_only exits");
    assert!(status.success(), "{}", p.log_text());
    let mut actual = records(&p.lines());
    // Debezium's snapshot reads dates through JDBC, which turns `infinity`/`-infinity` into
    // 292278994-08-17 / -292275055-05-16 and `0001-01-01 BC` into 0001-01-01 AD; its streaming
    // (and Tidemark's snapshot and streaming) give the pgoutput values. The one documented
    // difference (docs/debezium-compatibility.md, snapshots): rows 5-7's `c_date` is not compared.
    let mut expected = expected;
    for r in expected.iter_mut().chain(actual.iter_mut()) {
        if matches!(r.key["id"].as_i64(), Some(5..=7)) {
            if let Some(after) = r.value.get_mut("after").and_then(|a| a.as_object_mut()) {
                after.remove("c_date");
            }
        }
    }
    let report = diff(&expected, &actual, &DiffOptions::run_dependent());
    eprintln!("snapshot differential vs Debezium 3.6: {report}");
    super::support::assert_clean(
        "tidemark snapshot vs Debezium snapshot",
        &report,
        &expected,
        &actual,
    );
    let marks = |rs: &[Record]| -> Vec<String> {
        rs.iter()
            .map(|r| r.value["source"]["snapshot"].to_string())
            .filter(|m| m != "\"true\"")
            .collect()
    };
    assert_eq!(
        marks(&expected),
        marks(&actual),
        "first/last marks in the same places"
    );
    let _ = std::fs::remove_dir_all(&work);
}

/// An incremental snapshot while streaming (`tidemark snapshot --table`, DBLog watermarks):
/// a workload changes rows of chunks already read, being read and not read yet; the sink's state
/// equals the table, the chunks are `source.snapshot = incremental`, the watermark and signal
/// messages never reach the sink, and the progress is in the checkpoint and `tidemark status`.
#[test]
fn snapshot_pg_incremental_while_streaming() {
    if !pg_enabled("snapshot_pg_incremental_while_streaming") {
        return;
    }
    let db = TestDb::create("tm_snap_incr");
    psql(
        &db.name,
        "CREATE TABLE t (id int PRIMARY KEY, v int, pad text);
         INSERT INTO t SELECT i, 0, 'p' || i FROM generate_series(1, 30000) i;
         CREATE TABLE nokey (x int);",
    );
    let mut p = pipeline(
        &db.name,
        &["public.t", "public.nokey"],
        "mode = \"no_data\"\nincremental_chunk_rows = 1000",
    );
    p.start();
    let workload = Command::new("psql")
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
            &db.name,
            "-c",
        ])
        .arg(
            "DO $$ BEGIN FOR n IN 1..300 LOOP
               UPDATE t SET v = n WHERE id IN (n * 97 % 30000 + 1, n * 13 % 30000 + 1);
               DELETE FROM t WHERE id = n * 71 % 30000 + 1;
               INSERT INTO t VALUES (30000 + n, -1, 'new');
               UPDATE t SET id = 40000 + n WHERE id = n * 53 % 30000 + 1;
               COMMIT; PERFORM pg_sleep(0.01);
             END LOOP; END $$",
        )
        .spawn()
        .expect("workload psql");
    let signal = Command::new(super::support::TIDEMARK)
        .args(["snapshot", "--config"])
        .arg(&p.config)
        .args(["--table", "public.t", "--table", "public.nokey"])
        .output()
        .expect("tidemark snapshot");
    assert!(
        signal.status.success(),
        "{}",
        String::from_utf8_lossy(&signal.stderr)
    );
    let mut workload = workload;
    assert!(workload.wait().expect("workload").success());
    wait_for(
        "the incremental snapshot to finish",
        &mut p,
        Duration::from_secs(180),
        |p| {
            p.checkpoint().is_some_and(|c| {
                c["snapshot"]["kind"] == "incremental"
                    && c["snapshot"]["tables"][0]["complete"] == true
            })
        },
    );
    let status = status_text(&p);
    assert!(status.contains("snapshot (incremental"), "{status}");
    wait_marker(&mut p, &db.name, Duration::from_secs(60));
    let log = p.log_text();
    assert!(
        log.contains("incremental snapshot refused: the table has no primary key"),
        "{log}"
    );
    p.stop();
    let text = output(&p);
    assert!(
        !text.contains("tidemark.watermark") && !text.contains("tidemark.signal"),
        "watermarks leaked"
    );
    let state = replay_file(&p.out, "t");
    assert_eq!(
        state.marks.keys().collect::<Vec<_>>(),
        vec!["incremental"],
        "{:?}",
        state.marks
    );
    assert!(state.ops["r"] >= 29_000, "{:?}", state.ops);
    let count: usize = psql(&db.name, "SELECT count(*) FROM t").parse().unwrap();
    let reference = reference_state(&db.name, "public.t");
    assert_same_state(
        "state after an incremental snapshot under a workload",
        &reference,
        &state,
    );
    assert_eq!(state.rows.len(), count);
    eprintln!("incremental: ops {:?}", state.ops);
}

/// kill -9 in the middle of an incremental snapshot: the restart continues after the last
/// chunk recorded in the checkpoint (no key at or below it is read again) and the final state
/// is exact.
#[test]
fn snapshot_pg_incremental_kill9_resumes_after_last_chunk() {
    if !pg_enabled("snapshot_pg_incremental_kill9_resumes_after_last_chunk") {
        return;
    }
    let db = TestDb::create("tm_snap_incr_kill");
    psql(
        &db.name,
        "CREATE TABLE t (id int PRIMARY KEY, v int, pad text);
         INSERT INTO t SELECT i, 0, repeat('p', 100) FROM generate_series(1, 100000) i;",
    );
    let mut p = pipeline(
        &db.name,
        &["public.t"],
        "mode = \"no_data\"\nincremental_chunk_rows = 500",
    );
    p.start();
    let signal = Command::new(super::support::TIDEMARK)
        .args(["snapshot", "--config"])
        .arg(&p.config)
        .args(["--table", "public.t"])
        .output()
        .expect("tidemark snapshot");
    assert!(
        signal.status.success(),
        "{}",
        String::from_utf8_lossy(&signal.stderr)
    );
    let last_key = |p: &Pipeline| -> Option<i64> {
        p.checkpoint()?["snapshot"]["tables"][0]["last_key"][0]
            .as_str()?
            .parse()
            .ok()
    };
    wait_for(
        "a few chunks durable",
        &mut p,
        Duration::from_secs(120),
        |p| last_key(p).is_some_and(|k| k >= 5_000),
    );
    p.kill9();
    let cp = p.checkpoint().expect("checkpoint");
    assert_eq!(
        cp["snapshot"]["complete"], false,
        "the kill must land mid-snapshot: {cp}"
    );
    let durable = last_key(&p).expect("last key");
    let first_run = output(&p);
    psql(
        &db.name,
        "UPDATE t SET v = 1 WHERE id % 997 = 0; DELETE FROM t WHERE id % 991 = 0;",
    );
    p.start();
    wait_for(
        "the incremental snapshot to finish",
        &mut p,
        Duration::from_secs(240),
        |p| {
            p.checkpoint()
                .is_some_and(|c| c["snapshot"]["complete"] == true)
        },
    );
    wait_marker(&mut p, &db.name, Duration::from_secs(60));
    p.stop();
    assert!(
        p.log_text().contains("resuming the incremental snapshot"),
        "{}",
        p.log_text()
    );
    let all = output(&p);
    let second = replay(&all[first_run.len()..], "t");
    let reread: Vec<&String> = second
        .reads
        .keys()
        .filter(|k| {
            serde_json::from_str::<serde_json::Value>(k).unwrap()["id"]
                .as_i64()
                .is_some_and(|id| id <= durable)
        })
        .take(5)
        .collect();
    assert!(
        reread.is_empty(),
        "keys up to the durable last key {durable} read again: {reread:?}"
    );
    let state = replay(&all, "t");
    let reference = reference_state(&db.name, "public.t");
    assert_same_state(
        "state after kill -9 during an incremental snapshot",
        &reference,
        &state,
    );
}

/// Emits a `tidemark.signal` message with `data` (Debezium's execute-snapshot data).
fn emit_signal(db: &str, data: &str) {
    psql(
        db,
        &format!(
            "SELECT pg_logical_emit_message(false, 'tidemark.signal', '{}')",
            data.replace('\'', "''")
        ),
    );
}

fn ids_in_db(db: &str, sql: &str) -> Vec<i64> {
    psql(db, sql)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Filtered incremental snapshots (Debezium's `additional-conditions`): by a signal message
/// under a concurrent workload, `op: r` events for exactly the rows matching the filter (the
/// rows changed in the stream win, as without a filter) and the matching rows' state equals
/// the table; by `tidemark snapshot --filter` at rest, exactly the matching rows; a filter
/// the server refuses fails the CLI with the table and the filter named; through a signal
/// (no CLI check) it stops that table's snapshot with the error in the checkpoint and
/// `status`, at the start (unknown column) or mid-way (division by zero), and the stream
/// goes on.
#[test]
fn snapshot_pg_incremental_filtered() {
    if !pg_enabled("snapshot_pg_incremental_filtered") {
        return;
    }
    let db = TestDb::create("tm_snap_filter");
    psql(
        &db.name,
        "CREATE TABLE t (id int PRIMARY KEY, color text NOT NULL, v int, pad text);
         INSERT INTO t SELECT i, CASE WHEN i % 3 = 0 THEN 'blue' ELSE 'red' END, 0, 'p' || i
           FROM generate_series(1, 20000) i;",
    );
    // Index scans only (every connection the pipeline opens), so the mid-way failure below
    // meets its failing row in key order, not in a first chunk's sequential scan.
    for setting in ["enable_seqscan", "enable_bitmapscan"] {
        psql(
            &db.name,
            &format!("ALTER DATABASE {} SET {setting} = off", db.name),
        );
    }
    let mut p = pipeline(
        &db.name,
        &["public.t"],
        "mode = \"no_data\"\nincremental_chunk_rows = 500",
    );
    p.start();
    // The workload changes `v` all over the key space, deletes and inserts rows of both colors.
    let workload = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres", "-d", &db.name, "-c"])
        .arg(
            "DO $$ BEGIN FOR n IN 1..300 LOOP
               UPDATE t SET v = n WHERE id IN (n * 97 % 20000 + 1, n * 13 % 20000 + 1);
               DELETE FROM t WHERE id = n * 71 % 20000 + 1;
               INSERT INTO t VALUES (30000 + n, CASE WHEN n % 2 = 0 THEN 'blue' ELSE 'red' END, -1, 'new');
               COMMIT; PERFORM pg_sleep(0.01);
             END LOOP; END $$",
        )
        .spawn()
        .expect("workload psql");
    emit_signal(
        &db.name,
        r#"{"data-collections": ["public.t"], "type": "INCREMENTAL",
            "additional-conditions": [{"data-collection": "public.t", "filter": "color = 'blue'"}]}"#,
    );
    let mut workload = workload;
    assert!(workload.wait().expect("workload").success());
    wait_entry(&mut p, "the filtered snapshot to finish", |t| {
        t["filter"] == "color = 'blue'" && t["complete"] == true
    });
    let status = status_text(&p);
    assert!(status.contains("filter: color = 'blue'"), "{status}");
    wait_marker(&mut p, &db.name, Duration::from_secs(60));
    let log = p.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("incremental snapshot: table started")
                && l.contains("color = 'blue'")),
        "{log}"
    );
    let first = output(&p);
    let reads = FilteredReads::of(&first, "t");
    let blue = ids_in_db(
        &db.name,
        "SELECT id FROM t WHERE color = 'blue' ORDER BY id",
    );
    reads.assert_exactly("signal, under a workload", &blue, |a| a["color"] == "blue");
    assert!(reads.reads.len() > 6000, "{} reads", reads.reads.len());
    // The matching rows' state is the table's.
    let state = replay(&first, "t");
    let reference = reference_state(&db.name, "public.t");
    let differ: Vec<String> = keys_in_db(&db.name, "SELECT id FROM t WHERE color = 'blue'")
        .into_iter()
        .filter(|k| state.rows.get(k) != reference.rows.get(k))
        .take(5)
        .collect();
    assert!(
        differ.is_empty(),
        "matching rows that differ from the table: {differ:?}"
    );

    // The CLI, at rest: exactly the matching rows.
    let (ok, text) = snapshot_cli(&p, &["--table", "public.t", "--filter", "id % 1000 = 0"]);
    assert!(ok, "{text}");
    assert!(text.contains("filter: id % 1000 = 0"), "{text}");
    wait_entry(&mut p, "the CLI's filtered snapshot to finish", |t| {
        t["filter"] == "id % 1000 = 0" && t["complete"] == true
    });
    wait_marker(&mut p, &db.name, Duration::from_secs(60));
    let all = output(&p);
    let reads = FilteredReads::of(&all[first.len()..], "t");
    assert!(reads.touched.is_empty(), "the table changed at rest");
    assert_eq!(
        reads.reads.keys().copied().collect::<Vec<_>>(),
        ids_in_db(&db.name, "SELECT id FROM t WHERE id % 1000 = 0 ORDER BY id")
    );

    // A filter the server refuses: the CLI fails, naming table and filter; nothing is sent.
    let (ok, text) = snapshot_cli(&p, &["--table", "public.t", "--filter", "no_such_col > 0"]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("public.t")
            && text.contains("no_such_col > 0")
            && text.contains("does not exist"),
        "{text}"
    );
    let (ok, text) = snapshot_cli(&p, &["--table", "public.t", "--filter", "1=1) OR (1=1"]);
    assert!(!ok && text.contains("closes more than it opened"), "{text}");

    // Through a signal (no CLI check): the table's snapshot stops with the error, mid-way
    // for an error only some rows raise; the stream goes on.
    emit_signal(
        &db.name,
        r#"{"data-collections": ["public.t"],
            "additional-conditions": [{"data-collection": "public.t", "filter": "(id - 15000) / (id - 15000) = 1"}]}"#,
    );
    wait_entry(&mut p, "the division by zero to stop the snapshot", |t| {
        t["error"]
            .as_str()
            .is_some_and(|e| e.contains("division by zero"))
            && t["complete"] == true
    });
    let status = status_text(&p);
    assert!(
        status.contains("FAILED") && status.contains("division by zero"),
        "{status}"
    );
    emit_signal(
        &db.name,
        r#"{"data-collections": ["public.t"],
            "additional-conditions": [{"data-collection": "public.t", "filter": "no_such_col > 0"}]}"#,
    );
    wait_entry(&mut p, "the refused filter to stop the snapshot", |t| {
        t["error"]
            .as_str()
            .is_some_and(|e| e.contains("no_such_col") && e.contains("does not exist"))
    });
    let before = output(&p).len();
    psql(
        &db.name,
        "INSERT INTO t VALUES (99999, 'blue', 1, 'after the failures')",
    );
    wait_marker(&mut p, &db.name, Duration::from_secs(60));
    assert!(
        output(&p)[before..].contains("after the failures"),
        "the stream stopped after a failed snapshot"
    );
    assert!(p.try_wait().is_none(), "the pipeline stopped");
    let all = output(&p);
    let mid = FilteredReads::of(&all[first.len()..], "t");
    assert!(
        mid.reads.keys().any(|k| *k < 15000 && k % 1000 != 0),
        "the chunks before the failing row went out"
    );
    assert!(mid.reads.keys().all(|k| *k < 15000 || k % 1000 == 0));
    p.stop();
}

/// The row estimate of a filtered incremental snapshot is the planner's for the filter, not
/// the table's: for 20,000 rows of which 2,000 match, after ANALYZE, the estimate in the
/// checkpoint and `status` is near 2,000; an unfiltered request of the same table is back to
/// the table's estimate; a filter the planner underestimates (`id % 10 = 0`: a default
/// selectivity) still ends with every matching row counted and no negative rows remaining.
#[test]
fn snapshot_pg_incremental_filtered_estimate() {
    if !pg_enabled("snapshot_pg_incremental_filtered_estimate") {
        return;
    }
    let db = TestDb::create("tm_snap_fest");
    psql(
        &db.name,
        "CREATE TABLE t (id int PRIMARY KEY, color text NOT NULL, pad text);
         INSERT INTO t SELECT i, CASE WHEN i % 10 = 0 THEN 'blue' ELSE 'red' END, 'p' || i
           FROM generate_series(1, 20000) i;
         ANALYZE t;",
    );
    let mut p = pipeline(
        &db.name,
        &["public.t"],
        "mode = \"no_data\"\nincremental_chunk_rows = 500",
    );
    p.start();
    let t = snapshot_until_complete(&mut p, "public.t", Some("color = 'blue'"));
    assert_filtered_estimate(
        &p,
        &t,
        ("public.t", "color = 'blue'"),
        2000,
        1000..=4000,
        "the planner's for the filter",
    );

    // Unfiltered: the table's estimate again (reltuples; exact after ANALYZE of 20,000 rows).
    let t = snapshot_until_complete(&mut p, "public.t", None);
    assert_eq!(t["rows"], 20000, "{t}");
    let whole = t["estimate"].as_u64().expect("an estimate");
    assert!((19000..=21000).contains(&whole), "table estimate {whole}");

    // Underestimated by the planner: more rows than the estimate; nothing goes negative.
    let t = snapshot_until_complete(&mut p, "public.t", Some("id % 10 = 0"));
    let low = t["estimate"].as_u64().expect("an estimate");
    assert_eq!(t["rows"], 2000, "{t}");
    assert!(
        low < 2000,
        "the planner was expected to underestimate: {low}"
    );
    let status = status_text(&p);
    assert!(
        status.contains("public.t: 2000 of ~2000 rows durable (filter: id % 10 = 0), done"),
        "{status}"
    );
    assert_no_rows_remaining(&p, "public.t");
    p.stop();
}

/// kill -9 in the middle of a filtered incremental snapshot: the checkpoint holds the filter,
/// the restart resumes with it (after the last durable chunk) and the union of both runs'
/// reads is exactly the matching rows.
#[test]
fn snapshot_pg_incremental_filtered_kill9_resumes_with_the_filter() {
    if !pg_enabled("snapshot_pg_incremental_filtered_kill9_resumes_with_the_filter") {
        return;
    }
    let db = TestDb::create("tm_snap_filter_kill");
    psql(
        &db.name,
        "CREATE TABLE t (id int PRIMARY KEY, v int, pad text);
         INSERT INTO t SELECT i, 0, repeat('p', 100) FROM generate_series(1, 100000) i;",
    );
    let mut p = pipeline(
        &db.name,
        &["public.t"],
        "mode = \"no_data\"\nincremental_chunk_rows = 500",
    );
    p.start();
    let (ok, text) = snapshot_cli(&p, &["--table", "public.t", "--filter", "id % 2 = 0"]);
    assert!(ok, "{text}");
    let last_key = |p: &Pipeline| -> Option<i64> {
        p.checkpoint()?["snapshot"]["tables"][0]["last_key"][0]
            .as_str()?
            .parse()
            .ok()
    };
    wait_for(
        "a few chunks durable",
        &mut p,
        Duration::from_secs(120),
        |p| last_key(p).is_some_and(|k| k >= 10_000),
    );
    p.kill9();
    let cp = p.checkpoint().expect("checkpoint");
    assert_eq!(
        cp["snapshot"]["complete"], false,
        "the kill must land mid-snapshot: {cp}"
    );
    assert_eq!(cp["snapshot"]["tables"][0]["filter"], "id % 2 = 0", "{cp}");
    let durable = last_key(&p).expect("last key");
    let first_run = output(&p);
    p.start();
    wait_for(
        "the snapshot to finish",
        &mut p,
        Duration::from_secs(240),
        |p| {
            p.checkpoint()
                .is_some_and(|c| c["snapshot"]["complete"] == true)
        },
    );
    wait_marker(&mut p, &db.name, Duration::from_secs(60));
    p.stop();
    let log = p.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("resuming the incremental snapshot") && l.contains("id % 2 = 0")),
        "{log}"
    );
    let all = output(&p);
    let second = FilteredReads::of(&all[first_run.len()..], "t");
    assert!(
        second.reads.keys().all(|k| *k > durable && k % 2 == 0),
        "the restart read keys at or below {durable}, or odd ones"
    );
    let reads = FilteredReads::of(&all, "t");
    let even: Vec<i64> = (1..=100_000).filter(|i| i % 2 == 0).collect();
    assert_eq!(reads.reads.keys().copied().collect::<Vec<_>>(), even);
}

/// The rows of `query` (three integer columns) by their first column, from the database.
fn int_triples_in_db(db: &str, query: &str) -> std::collections::BTreeMap<i64, (i64, i64)> {
    int_triples(&psql(db, query), '|')
}

/// DDL on a table during its incremental snapshot: `ADD COLUMN extra int DEFAULT 7`, later
/// `DROP COLUMN pad`, then `ALTER COLUMN v TYPE bigint` while chunks are being read, with DML
/// around them. The column set of the table's events never goes back to an older one after a
/// newer one (the chunk in flight is read again with the stream's schema), nor `v`'s type
/// (the output's `schema` parts), every read after the ADD COLUMN carries `extra = 7`, and the
/// final rows equal the table's.
#[test]
fn snapshot_pg_incremental_ddl_mid_snapshot() {
    if !pg_enabled("snapshot_pg_incremental_ddl_mid_snapshot") {
        return;
    }
    let db = TestDb::create("tm_snap_ddl");
    psql(
        &db.name,
        "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL, pad text);
         INSERT INTO t SELECT i, 0, 'p' || i FROM generate_series(1, 60000) i;",
    );
    let mut spec = PipelineSpec::new(&db.name, &["public.t"]);
    spec.pipeline_extra = "\n[snapshot]\nmode = \"no_data\"\nincremental_chunk_rows = 100\n".into();
    spec.sink_extra = "schemas_enable = true".into();
    let mut p = Pipeline::new(spec);
    p.start();
    let (ok, text) = snapshot_cli(&p, &["--table", "public.t"]);
    assert!(ok, "{text}");
    wait_for("the first chunks", &mut p, Duration::from_secs(120), |p| {
        reads(p) >= 2000
    });
    psql(
        &db.name,
        "ALTER TABLE t ADD COLUMN extra int DEFAULT 7;
         UPDATE t SET v = 1 WHERE id IN (5, 30000, 59999);
         INSERT INTO t (id, v) VALUES (60001, 2);
         DELETE FROM t WHERE id = 40000;",
    );
    let at_add = reads(&p);
    wait_for(
        "chunks after the ADD COLUMN",
        &mut p,
        Duration::from_secs(120),
        |p| reads(p) >= at_add + 2000,
    );
    psql(
        &db.name,
        "ALTER TABLE t DROP COLUMN pad;
         UPDATE t SET v = 3 WHERE id IN (6, 50000);
         INSERT INTO t (id, v) VALUES (60002, 4);",
    );
    let at_drop = reads(&p);
    wait_for(
        "chunks after the DROP COLUMN",
        &mut p,
        Duration::from_secs(120),
        |p| reads(p) >= at_drop + 2000,
    );
    psql(
        &db.name,
        "ALTER TABLE t ALTER COLUMN v TYPE bigint;
         UPDATE t SET v = 5 WHERE id IN (7, 55000);
         INSERT INTO t (id, v) VALUES (60003, 6);",
    );
    wait_entry(&mut p, "the incremental snapshot to finish", |t| {
        t["complete"] == true
    });
    wait_marker(&mut p, &db.name, Duration::from_secs(60));
    p.stop();
    let text = output(&p);
    let replay = DdlReplay::of(&text, "t", "extra", 7, "pad");
    let retyped = TypeReplay::of(&text, "t", "v", "int64");
    eprintln!(
        "ddl: {} reads with extra, {} backwards; {} reads with v int64, {} backwards",
        replay.reads_with_added,
        replay.backwards.len(),
        retyped.reads_with_new,
        retyped.backwards.len()
    );
    replay.assert_matches(
        &int_triples_in_db(&db.name, "SELECT id, v, extra FROM t ORDER BY id"),
        "extra",
    );
    retyped.assert_forward("v");
}

/// A new database (`name` its prefix) with a table `t (id PRIMARY KEY, code, v)` of `rows`
/// rows (`code = 100000 - id`), and a started pipeline whose incremental snapshot of it
/// (chunks of 100) has read its first 1,000 rows.
fn table_mid_snapshot(name: &str, rows: i64) -> (TestDb, Pipeline) {
    let db = TestDb::create(name);
    psql(
        &db.name,
        &format!(
            "CREATE TABLE t (id int PRIMARY KEY, code int NOT NULL, v int NOT NULL);
             INSERT INTO t SELECT i, 100000 - i, 0 FROM generate_series(1, {rows}) i;"
        ),
    );
    let mut spec = PipelineSpec::new(&db.name, &["public.t"]);
    spec.pipeline_extra = "\n[snapshot]\nmode = \"no_data\"\nincremental_chunk_rows = 100\n".into();
    let mut p = Pipeline::new(spec);
    p.start();
    let (ok, text) = snapshot_cli(&p, &["--table", "public.t"]);
    assert!(ok, "{text}");
    wait_for("the first chunks", &mut p, Duration::from_secs(120), |p| {
        reads(p) >= 1000
    });
    (db, p)
}

/// The primary key redefined during the table's incremental snapshot (`DROP CONSTRAINT
/// t_pkey, ADD PRIMARY KEY (code)`, the old key column kept) while chunks are being read, DML
/// before and after it (a delete then carries only `code`): the next chunk sees the new key,
/// the table's snapshot starts again from its first key, chunked by `code` (logged with the
/// reason; the checkpoint's key is `code`), rows read before the change are read again, and
/// the final rows equal the table's.
#[test]
fn snapshot_pg_incremental_primary_key_redefined() {
    if !pg_enabled("snapshot_pg_incremental_primary_key_redefined") {
        return;
    }
    let rows = 20_000;
    let (db, mut p) = table_mid_snapshot("tm_snap_rekey", rows);
    rekeyed_mid_snapshot(
        &mut p,
        &RekeySource {
            table: "public.t",
            rows,
            sql: &|text| psql(&db.name, text),
            sep: '|',
            redefine: &redefine_key,
            marker: &|p| wait_marker(p, &db.name, Duration::from_secs(60)),
        },
    );
}

/// The DDL that makes `column` the primary key of `t` instead of the current one.
fn redefine_key(column: &str) -> String {
    format!("ALTER TABLE t DROP CONSTRAINT t_pkey, ADD PRIMARY KEY ({column})")
}

/// kill -9 right after the primary key is redefined mid incremental snapshot (30,000 rows,
/// chunks of 100, DML before, with and after each DDL and while the engine is down;
/// `snapshot_support::kill9_after_rekey`): (a) `id` → `code`, killed once a checkpoint holds
/// the restart and a `code` last key: the next run goes on after it, without restarting;
/// (b) in that run (no checkpoint after its start) `code` → `id`, killed as soon as the log
/// says so: the checkpoint still holds `code` and its last key, and the next run starts the
/// table again from its first `id` (logged), reading every row. The snapshot ends complete
/// on `id` (checkpoint, `status`) and the sink's rows equal the table's.
#[test]
fn snapshot_pg_incremental_kill9_after_primary_key_redefined() {
    if !pg_enabled("snapshot_pg_incremental_kill9_after_primary_key_redefined") {
        return;
    }
    let rows = 30_000;
    let (db, mut p) = table_mid_snapshot("tm_snap_rekey_kill", rows);
    kill9_after_rekey(
        &mut p,
        &RekeySource {
            table: "public.t",
            rows,
            sql: &|text| psql(&db.name, text),
            sep: '|',
            redefine: &redefine_key,
            marker: &|p| wait_marker(p, &db.name, Duration::from_secs(60)),
        },
    );
}

/// The primary key dropped during the table's incremental snapshot (`DROP CONSTRAINT t_pkey`,
/// no new one): no key to cut chunks on, so that table's snapshot stops with the reason in the
/// checkpoint and `tidemark status`, and the stream goes on.
#[test]
fn snapshot_pg_incremental_primary_key_dropped() {
    if !pg_enabled("snapshot_pg_incremental_primary_key_dropped") {
        return;
    }
    let (db, mut p) = table_mid_snapshot("tm_snap_nokey", 20_000);
    ddl_mid_snapshot(
        &p,
        &|text| psql(&db.name, text),
        "ALTER TABLE t DROP CONSTRAINT t_pkey; INSERT INTO t VALUES (20001, 50, 2);",
    );
    let why = format!(
        "{}; the table has no primary key now",
        key_changed("public.t", "id", "")
    );
    wait_entry(&mut p, "the table's snapshot to stop", |t| {
        t["error"].as_str().is_some_and(|e| e.contains(&why))
    });
    let status = status_text(&p);
    assert!(status.contains(&why), "{status}");
    psql(&db.name, "INSERT INTO t VALUES (20002, 60, 4);");
    wait_marker(&mut p, &db.name, Duration::from_secs(60));
    p.stop();
    let out = output(&p);
    for id in [20001, 20002] {
        assert!(
            out.contains(&format!("\"after\":{{\"id\":{id},")),
            "the insert of {id} did not stream"
        );
    }
    assert!(
        reads(&p) < 20_000,
        "the snapshot went on after the key was dropped"
    );
}
