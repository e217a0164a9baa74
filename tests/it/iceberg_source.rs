//! The Iceberg incremental source: PostgreSQL → Iceberg mirror (pipeline A, the sink), then
//! that table → Debezium JSON lines and a second Iceberg mirror (pipeline B, the source).
//! B's events per snapshot must be the net effect of the PostgreSQL transaction A committed
//! as that snapshot (inserts, updates, deletes, primary-key changes, a truncate), B's mirror
//! must equal the PostgreSQL table (pyiceberg), and a restart of B resumes without repeating
//! a change. The same for a format-v3 mirror (deletion vectors replaced by merged ones over
//! many snapshots) followed into JSON and a second v3 mirror. Gated by
//! `TIDEMARK_TEST_ICEBERG=1` and `TIDEMARK_TEST_PG=1`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::iceberg_support::{self as ice, Lake, SinkSpec};
use crate::support::{pg_enabled, psql, Pipeline, PipelineSpec, TestDb};

const CREATE: &str = "CREATE TABLE t (id bigint PRIMARY KEY, v text, n integer,
  amount numeric(12,3), ok boolean, d date, at timestamptz, raw bytea);";

fn insert(lo: i64, hi: i64) -> String {
    format!(
        "INSERT INTO t SELECT g, md5(g::text), g * 3, g * 1.125, g % 2 = 0, date '2024-01-01' + g::int,
         timestamptz '2024-01-01 00:00+00' + g * interval '1 minute', decode(md5(g::text), 'hex')
         FROM generate_series({lo}, {hi}) g;"
    )
}

/// The workload before (`first`) and after (`!first`) the restart of pipeline B.
fn workload(first: bool) -> Vec<String> {
    if first {
        vec![
            insert(1, 50),
            "UPDATE t SET v = 'five' WHERE id % 5 = 0;".into(),
            "DELETE FROM t WHERE id % 7 = 0;".into(),
            "UPDATE t SET id = id + 1000 WHERE id IN (1, 2);".into(),
            format!(
                "BEGIN; {} UPDATE t SET v = 'changed' WHERE id BETWEEN 100 AND 105;
                 DELETE FROM t WHERE id BETWEEN 100 AND 102; UPDATE t SET n = -1 WHERE id = 3; COMMIT;",
                insert(100, 110)
            ),
            format!("BEGIN; TRUNCATE t; {} COMMIT;", insert(200, 220)),
            format!("BEGIN; {} DELETE FROM t WHERE id BETWEEN 200 AND 205; COMMIT;", insert(300, 310)),
        ]
    } else {
        vec![
            "UPDATE t SET n = n + 1, amount = NULL WHERE id % 3 = 0;".into(),
            format!(
                "BEGIN; DELETE FROM t WHERE id BETWEEN 300 AND 303; {} COMMIT;",
                insert(400, 402)
            ),
            "UPDATE t SET id = id + 5000 WHERE id = 400;".into(),
            // Schema evolution of the followed table: a new column, then rows using it.
            "ALTER TABLE t ADD COLUMN extra integer;".into(),
            "UPDATE t SET extra = 7 WHERE id % 4 = 0;".into(),
            // Missing trailing columns of INSERT ... SELECT take their default (NULL).
            format!(
                "BEGIN; {} UPDATE t SET extra = -1 WHERE id >= 500; COMMIT;",
                insert(500, 505)
            ),
        ]
    }
}

/// One expected or observed change: op, key, new image.
type Ev = (String, Option<i64>, Value);

fn id_of(image: &Value) -> Option<i64> {
    image.get("id").and_then(Value::as_i64)
}

/// Groups change lines by `source.txId`, in order (tombstones left out).
fn by_txn(lines: &[Value]) -> Vec<(Value, Vec<Value>)> {
    let mut out: Vec<(Value, Vec<Value>)> = Vec::new();
    for l in lines.iter().filter(|l| !l["value"].is_null()) {
        let tx = l["value"]["source"]["txId"].clone();
        match out.last_mut() {
            Some((t, evs)) if *t == tx => evs.push(l["value"].clone()),
            _ => out.push((tx, vec![l["value"].clone()])),
        }
    }
    out
}

/// The net effect of each captured PostgreSQL transaction (what one mirror snapshot holds).
fn expected(pg_lines: &[Value]) -> Vec<Vec<Ev>> {
    let mut state: BTreeMap<i64, Value> = BTreeMap::new();
    let mut out = Vec::new();
    for (_, evs) in by_txn(pg_lines) {
        let start = state.clone();
        let mut truncated = false;
        let mut touched = Vec::new();
        for v in &evs {
            let op = v["op"].as_str().unwrap_or("");
            if let Some(b) = id_of(&v["before"]) {
                if op != "t" {
                    state.remove(&b);
                    touched.push(b);
                }
            }
            match op {
                "c" | "r" | "u" => {
                    let a = id_of(&v["after"]).expect("after id");
                    state.insert(a, v["after"].clone());
                    touched.push(a);
                }
                "t" => {
                    state.clear();
                    truncated = true;
                }
                _ => {}
            }
        }
        let mut txn: Vec<Ev> = Vec::new();
        if truncated {
            txn.push(("t".into(), None, Value::Null));
            for (k, v) in &state {
                txn.push(("c".into(), Some(*k), v.clone()));
            }
        } else {
            touched.sort_unstable();
            touched.dedup();
            for k in touched {
                match (start.get(&k), state.get(&k)) {
                    (Some(_), Some(v)) => txn.push(("u".into(), Some(k), v.clone())),
                    (None, Some(v)) => txn.push(("c".into(), Some(k), v.clone())),
                    (Some(_), None) => txn.push(("d".into(), Some(k), Value::Null)),
                    (None, None) => {}
                }
            }
        }
        if !txn.is_empty() {
            txn.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
            out.push(txn);
        }
    }
    out
}

/// The Iceberg source's events per snapshot.
fn observed(lines: &[Value]) -> Vec<Vec<Ev>> {
    by_txn(lines)
        .into_iter()
        .map(|(_, evs)| {
            let mut txn: Vec<Ev> = evs
                .iter()
                .map(|v| {
                    let op = v["op"].as_str().unwrap_or("").to_string();
                    let key = id_of(&v["after"]).or_else(|| id_of(&v["before"]));
                    let after = v["after"].clone();
                    (op, key, after)
                })
                .collect();
            txn.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
            txn
        })
        .collect()
}

/// Pipeline B: the Iceberg source on A's table into JSON lines and, with `mirror` (extra
/// lines of its sink table), a mirror in `back`.
fn source_pipeline(db: &str, lake: &Lake, source_extra: &str, mirror: Option<&str>) -> Pipeline {
    let mut spec = PipelineSpec::new(db, &["public.t"]);
    spec.checkpoint_interval = "300ms".into();
    let p = Pipeline::new(spec);
    let toml = format!(
        r#"[pipeline]
name = "it_back_{slot}"

[source]
kind = "iceberg"
table = "{ns}.t"
poll_interval = "200ms"
catalog = {{ kind = "sql", uri = "{catalog}", warehouse = "{warehouse}" }}
{source_extra}

[[sinks]]
kind = "debezium_json"
path = "{out}"
fsync = false
emit_truncate = true
{mirror}

[checkpoint]
dir = "{cp}"
interval = "300ms"

[metrics]
listen = "127.0.0.1:{port}"
"#,
        slot = p.spec.slot,
        ns = lake.namespace,
        catalog = lake.catalog_uri_sqlx(),
        warehouse = lake.warehouse.display(),
        out = p.out.display(),
        cp = p.dir.join("checkpoints").display(),
        port = p.metrics_port,
        mirror = match mirror {
            Some(extra) => format!(
                "[[sinks]]\nkind = \"iceberg\"\nmode = \"mirror\"\nnamespace = \"back\"\n\
                 catalog = {{ kind = \"sql\", uri = \"{}\", warehouse = \"{}\" }}\n\
                 commit = {{ max_rows = 1000, interval = \"200ms\" }}\n{extra}\n",
                lake.catalog_uri_sqlx(),
                lake.warehouse.display()
            ),
            None => String::new(),
        },
    );
    std::fs::write(&p.config, toml).expect("write config");
    p
}

/// Waits until B's events cover every expected snapshot and its mirror equals PostgreSQL.
fn wait_caught_up(b: &mut Pipeline, back: &Lake, db: &str, want: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got = observed(&b.lines()).len();
        if got >= want {
            let r = ice::compare(back, "pyiceberg", db, "public.t", "t");
            if r["equal"] == true {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "back mirror differs: {r}\n{}",
                ice::tail(&b.log_text(), 60)
            );
        }
        if let Some(status) = b.try_wait() {
            panic!("pipeline B exited ({status}):\n{}", b.log_text());
        }
        assert!(
            Instant::now() < deadline,
            "{got} of {want} snapshots after 120 s:\n{}",
            ice::tail(&b.log_text(), 60)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn assert_same(pg_lines: &[Value], b_lines: &[Value]) {
    let want = expected(pg_lines);
    let got = observed(b_lines);
    assert_eq!(
        got.len(),
        want.len(),
        "snapshots: got {got:#?}\nwant {want:#?}"
    );
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "snapshot #{i} differs");
    }
}

/// A test database with table `t`, and pipeline A started on it: PostgreSQL into an Iceberg
/// mirror (`extra`: lines of its sink table) and JSON lines.
fn start_a(prefix: &str, extra: &str) -> (TestDb, Pipeline, Lake) {
    let db = TestDb::create(prefix);
    psql(&db.name, CREATE);
    let (mut a, lake) = ice::pipeline(
        &db.name,
        &["public.t"],
        SinkSpec {
            mode: "mirror",
            extra,
            jsonl: true,
            pg_catalog: false,
        },
    );
    a.start();
    (db, a, lake)
}

/// Runs `sqls` in PostgreSQL, then waits until A's mirror equals the table.
fn run_on_a(a: &mut Pipeline, lake: &Lake, db: &str, sqls: impl IntoIterator<Item = String>) {
    for sql in sqls {
        psql(db, &sql);
    }
    ice::wait_equal(a, lake, db, "public.t", "t", Duration::from_secs(90));
}

/// Where B's mirror goes: A's catalog and warehouse, namespace `back`.
fn back_of(lake: &Lake) -> Lake {
    Lake {
        namespace: "back".into(),
        ..lake.clone()
    }
}

/// Waits until B has caught up with everything A captured, `settle` more, then asserts that
/// B's events per snapshot are the net effects of A's PostgreSQL transactions; B's lines.
fn assert_b_replays_a(
    a: &Pipeline,
    b: &mut Pipeline,
    back: &Lake,
    db: &str,
    settle: Duration,
) -> Vec<Value> {
    let want = expected(&a.lines()).len();
    wait_caught_up(b, back, db, want);
    std::thread::sleep(settle);
    let lines = b.lines();
    assert_same(&a.lines(), &lines);
    lines
}

#[tokio::test(flavor = "multi_thread")]
async fn iceberg_source_replays_a_pg_mirror_into_json_and_a_second_mirror() {
    if !ice::enabled("iceberg_source_replays_a_pg_mirror_into_json_and_a_second_mirror")
        || !pg_enabled("iceberg_source_replays_a_pg_mirror_into_json_and_a_second_mirror")
    {
        return;
    }
    // One PostgreSQL transaction per snapshot: commit after every transaction.
    let (db, mut a, lake) = start_a(
        "tm_ice_src",
        "commit = { max_rows = 1, interval = \"100ms\" }",
    );
    run_on_a(&mut a, &lake, &db.name, workload(true));
    let back = back_of(&lake);
    let mut b = source_pipeline(&db.name, &lake, "", Some(""));
    b.start();
    assert_b_replays_a(&a, &mut b, &back, &db.name, Duration::ZERO);
    let ops: Vec<String> = observed(&b.lines())
        .concat()
        .into_iter()
        .map(|e| e.0)
        .collect();
    for op in ["c", "u", "d", "t"] {
        assert!(ops.iter().any(|o| o == op), "no {op} event in {ops:?}");
    }
    // Starting at a snapshot id, or at a snapshot's commit time: the same events from there.
    let (_, t) = ice::load_table(&lake, "t").await;
    let mut snaps: Vec<(i64, i64, i64)> = t
        .metadata
        .snapshots()
        .map(|s| (s.sequence_number(), s.snapshot_id(), s.timestamp_ms()))
        .collect();
    snaps.sort_unstable();
    let all = observed(&b.lines());
    assert_eq!(
        snaps.len(),
        all.len(),
        "one snapshot per PostgreSQL transaction"
    );
    let (_, id, ms) = snaps[3];
    let ts = humantime_serde::re::humantime::format_rfc3339_millis(
        std::time::UNIX_EPOCH + Duration::from_millis(ms as u64),
    );
    // Snapshots committed within the same millisecond start together.
    let first_at_ms = snaps.iter().position(|s| s.2 >= ms).unwrap_or(3);
    for (extra, from) in [
        (format!("starting_snapshot_id = {id}"), 3),
        (format!("starting_timestamp = \"{ts}\""), first_at_ms),
    ] {
        let mut c = source_pipeline(&db.name, &lake, &extra, None);
        c.start();
        let want = &all[from..];
        let deadline = Instant::now() + Duration::from_secs(60);
        while observed(&c.lines()).len() < want.len() {
            assert!(Instant::now() < deadline, "{extra}: {}", c.log_text());
            std::thread::sleep(Duration::from_millis(300));
        }
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(observed(&c.lines()), want, "{extra}");
        c.stop();
    }
    // B stops (checkpoint), A goes on, B resumes where it stopped.
    b.stop();
    let before = b.lines().len();
    run_on_a(&mut a, &lake, &db.name, workload(false));
    // A compaction (a `replace` snapshot) changes files, not rows: no events.
    a.stop();
    ice::compact(&a);
    b.start();
    let lines = assert_b_replays_a(&a, &mut b, &back, &db.name, Duration::from_secs(1));
    assert!(lines.len() > before);
    b.stop();
    // Expired history is a definite error, never a silent gap: a new source from the
    // first snapshot cannot start once the first snapshots are gone.
    ice::expire_all_ok(&a);
    let mut c = source_pipeline(&db.name, &lake, "", None);
    c.spawn();
    let status = c
        .wait_exit(Duration::from_secs(60))
        .expect("the source stops");
    assert!(!status.success());
    assert!(
        c.log_text().contains("were expired"),
        "{}",
        ice::tail(&c.log_text(), 20)
    );
}

/// A v3 workload: rows of the same data files updated and deleted over many snapshots, so
/// each snapshot's deletion vectors replace (and merge) the previous ones; before
/// (`first`) and after (`!first`) a compaction.
fn v3_workload(first: bool) -> Vec<String> {
    if first {
        vec![
            insert(1, 200),
            "DELETE FROM t WHERE id IN (3, 4);".into(),
            "UPDATE t SET v = 'u1' WHERE id % 10 = 1;".into(),
            "DELETE FROM t WHERE id IN (5, 50, 150);".into(),
            // The rows updated before, again (their rows are in the second file now).
            "UPDATE t SET n = -n WHERE id % 10 = 1;".into(),
            "BEGIN; DELETE FROM t WHERE id BETWEEN 60 AND 65; \
             UPDATE t SET v = 'u2' WHERE id BETWEEN 100 AND 110; COMMIT;"
                .into(),
            // Rows inserted and deleted again in one snapshot, next to an older file's delete.
            format!(
                "BEGIN; {} DELETE FROM t WHERE id IN (201, 7); UPDATE t SET v = 'x' WHERE id = 202; COMMIT;",
                insert(201, 220)
            ),
            "UPDATE t SET id = id + 1000 WHERE id IN (8, 9);".into(),
            "DELETE FROM t WHERE id % 13 = 0;".into(),
            "DELETE FROM t WHERE id = 11;".into(),
        ]
    } else {
        vec![
            "DELETE FROM t WHERE id IN (12, 14);".into(),
            "UPDATE t SET v = 'after compaction' WHERE id % 10 = 2;".into(),
            "DELETE FROM t WHERE id % 10 = 2 AND id > 100;".into(),
            format!("BEGIN; TRUNCATE t; {} COMMIT;", insert(300, 320)),
            "DELETE FROM t WHERE id IN (301, 302);".into(),
            "DELETE FROM t WHERE id = 303;".into(),
        ]
    }
}

/// How many deletion vectors the table's snapshots added and removed (summary counts).
async fn dvs_added_removed(lake: &Lake) -> (usize, usize) {
    let (_, t) = ice::load_table(lake, "t").await;
    let count = |s: &tidemark_iceberg::iceberg::spec::Snapshot, k: &str| {
        s.summary()
            .additional_properties
            .get(k)
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0)
    };
    t.metadata.snapshots().fold((0, 0), |(a, r), s| {
        (a + count(s, "added-dvs"), r + count(s, "removed-dvs"))
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn iceberg_source_replays_a_v3_mirror_with_deletion_vectors() {
    let name = "iceberg_source_replays_a_v3_mirror_with_deletion_vectors";
    if !ice::enabled(name) || !pg_enabled(name) {
        return;
    }
    let (db, mut a, lake) = start_a(
        "tm_ice_src3",
        "format_version = 3\ncommit = { max_rows = 1, interval = \"100ms\" }",
    );
    run_on_a(&mut a, &lake, &db.name, v3_workload(true));
    // The mirror did write deletion vectors and replace them by merged ones.
    let (added, removed) = dvs_added_removed(&lake).await;
    assert!(
        added > 0 && removed > 0,
        "DVs added {added}, removed {removed}"
    );
    let back = back_of(&lake);
    let mut b = source_pipeline(&db.name, &lake, "", Some("format_version = 3"));
    b.start();
    assert_b_replays_a(&a, &mut b, &back, &db.name, Duration::from_millis(500));
    let ops: Vec<String> = observed(&b.lines())
        .concat()
        .into_iter()
        .map(|e| e.0)
        .collect();
    for op in ["c", "u", "d"] {
        assert!(ops.iter().any(|o| o == op), "no {op} event in {ops:?}");
    }
    // A compaction (files rewritten, DVs applied and dropped: a `replace` snapshot, no
    // events), then deletes and a truncate on the compacted files.
    b.stop();
    a.stop();
    ice::compact(&a);
    a.start();
    run_on_a(&mut a, &lake, &db.name, v3_workload(false));
    a.stop();
    b.start();
    assert_b_replays_a(&a, &mut b, &back, &db.name, Duration::from_secs(1));
    b.stop();
    let (added_after, removed_after) = dvs_added_removed(&lake).await;
    assert!(added_after > added && removed_after > removed);
    // The second mirror is v3 too, with its own deletion vectors.
    let (back_added, _) = dvs_added_removed(&back).await;
    assert!(back_added > 0, "the second mirror wrote no DV");
}

/// Issue 8: a format v2 mirror (Parquet position deletes) restarted with `format_version = 3`
/// is upgraded in place; then DVs whose first version merges a file's position deletes and
/// takes over the position delete file. The source replays the whole history across the
/// upgrade: each snapshot's events are the PostgreSQL transaction's net effect.
#[tokio::test(flavor = "multi_thread")]
async fn iceberg_source_replays_a_mirror_across_the_v2_to_v3_upgrade() {
    let name = "iceberg_source_replays_a_mirror_across_the_v2_to_v3_upgrade";
    if !ice::enabled(name) || !pg_enabled(name) {
        return;
    }
    use tidemark_iceberg::iceberg::spec::FormatVersion;
    const COMMIT: &str = "commit = { max_rows = 1, interval = \"100ms\" }";
    let (db, mut a, lake) = start_a("tm_ice_srcup", COMMIT);
    run_on_a(&mut a, &lake, &db.name, v3_workload(true));
    a.stop();
    let (_, t) = ice::load_table(&lake, "t").await;
    assert_eq!(t.metadata.format_version(), FormatVersion::V2);
    ice::set_format_version_3(&a, COMMIT);
    a.start();
    let upgraded = [
        // Rows of every old data file (files with position deletes among them), twice.
        "UPDATE t SET v = 'upgraded' WHERE id % 10 = 3;".to_string(),
        "DELETE FROM t WHERE id IN (20, 21, 120);".into(),
        "UPDATE t SET n = -n WHERE id % 10 = 3;".into(),
        format!(
            "BEGIN; DELETE FROM t WHERE id BETWEEN 30 AND 33; {} COMMIT;",
            insert(400, 410)
        ),
        "UPDATE t SET id = id + 2000 WHERE id IN (40, 41);".into(),
        "DELETE FROM t WHERE id % 17 = 0;".into(),
    ];
    run_on_a(&mut a, &lake, &db.name, upgraded);
    a.stop();
    let (_, t) = ice::load_table(&lake, "t").await;
    assert_eq!(t.metadata.format_version(), FormatVersion::V3);
    let (added, removed) = dvs_added_removed(&lake).await;
    assert!(
        added > 0 && removed > 0,
        "DVs added {added}, removed {removed}"
    );
    // Position delete files taken over by DVs (removed in a v3 snapshot).
    let taken_over = t.metadata.snapshots().any(|s| {
        let p = &s.summary().additional_properties;
        let n = |k: &str| p.get(k).and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
        n("removed-delete-files") > n("removed-dvs")
    });
    assert!(taken_over, "no position delete file was taken over by DVs");
    let back = back_of(&lake);
    let mut b = source_pipeline(&db.name, &lake, "", Some("format_version = 3"));
    b.start();
    assert_b_replays_a(&a, &mut b, &back, &db.name, Duration::from_millis(500));
    b.stop();
}
