//! The Iceberg sink against the real PostgreSQL, read back by independent readers.
//!
//! Gated by `TIDEMARK_TEST_ICEBERG=1` (set by `make test`). Every test has its own database,
//! slot, publication, catalog file and warehouse directory.

use std::time::Duration;

use rand::{Rng, SeedableRng};

use crate::iceberg_support::{self as ice, SinkSpec};
use crate::support::{psql, TestDb};

/// Every type of the table, Postgres → Iceberg (docs/iceberg.md, "Type mapping").
const CREATE: &str = "CREATE TABLE t (
  id bigint PRIMARY KEY,
  i2 smallint, i4 integer, i8 bigint,
  n numeric(12,3), nu numeric, f4 real, f8 double precision,
  b boolean, tx text, vc varchar(20), ch char(5), by bytea,
  d date, tm time, ts timestamp, tstz timestamptz, iv interval,
  u uuid, js json, jb jsonb, ia integer[], ta text[], ip inet,
  big text);
ALTER TABLE t ALTER COLUMN big SET STORAGE EXTERNAL;";

/// Values for row `g` (server-side randomness: the comparison reads Postgres' final state).
fn values(g: &str) -> String {
    format!(
        "{g}, (random()*60000-30000)::int2, CASE WHEN random() < 0.1 THEN NULL ELSE (random()*2e9-1e9)::int4 END,
         (random()*9e18-4.5e18)::int8, round((random()*1e6)::numeric, 3),
         CASE WHEN random() < 0.05 THEN 'NaN'::numeric ELSE (random()*1e6)::numeric / 7 END,
         random()::real, CASE WHEN random() < 0.05 THEN 'Infinity'::float8 ELSE random()*1e10 END,
         random() > 0.5, md5(random()::text), left(md5({g}::text), 10), 'ab',
         decode(md5({g}::text), 'hex'), date '2000-01-01' + (random()*10000)::int - 12000,
         time '00:00' + random() * interval '23 hours', timestamp '1960-01-01' + random() * interval '80 years',
         timestamptz '2020-01-01 00:00+00' + random() * interval '1000 days',
         make_interval(days => (random()*100)::int, secs => round((random()*86400)::numeric, 3)::float8),
         gen_random_uuid(), json_build_object('a', {g}, 'b', md5({g}::text)),
         jsonb_build_object('k', {g}, 'arr', jsonb_build_array(1, 2, {g})),
         ARRAY[{g}::int, NULL, 3], ARRAY['x', md5({g}::text)],
         ('10.0.' || ({g} % 256) || '.' || (({g} / 256) % 256))::inet,
         CASE WHEN random() < 0.3 THEN repeat(md5(random()::text), 150) ELSE 'small' END"
    )
}

fn insert(lo: i64, hi: i64) -> String {
    format!(
        "INSERT INTO t SELECT {} FROM generate_series({lo}, {hi}) g;",
        values("g")
    )
}

/// One random transaction of the workload.
fn random_txn(rng: &mut rand::rngs::StdRng, next_id: &mut i64, round: usize) -> String {
    let mut sql = String::from("BEGIN;");
    for _ in 0..rng.gen_range(1..4) {
        match rng.gen_range(0..100) {
            0..=34 => {
                let n = rng.gen_range(1..200);
                sql += &insert(*next_id, *next_id + n - 1);
                *next_id += n;
            }
            35..=59 => {
                // Non-key update: `big` is not touched, so toasted values arrive unchanged.
                let (k, r) = (rng.gen_range(3..9), rng.gen_range(0..3));
                sql += &format!(
                    "UPDATE t SET i4 = (random()*1000)::int, tx = md5(random()::text), f8 = random() WHERE id % {k} = {r};"
                );
            }
            60..=69 => {
                // Primary key change (old key sent in the old image).
                sql += &format!(
                    "UPDATE t SET id = id + 100000000 * {} WHERE id IN (SELECT id FROM t ORDER BY random() LIMIT 5);",
                    round + 1
                );
            }
            70..=84 => {
                sql += "DELETE FROM t WHERE id IN (SELECT id FROM t ORDER BY random() LIMIT 20);";
            }
            85..=94 => {
                // Insert, update and delete the same rows inside one transaction.
                let lo = *next_id;
                sql += &insert(lo, lo + 9);
                sql += &format!(
                    "UPDATE t SET tx = 'changed' WHERE id BETWEEN {lo} AND {};",
                    lo + 5
                );
                sql += &format!("DELETE FROM t WHERE id BETWEEN {lo} AND {};", lo + 2);
                *next_id += 10;
            }
            _ => {
                sql += "UPDATE t SET big = repeat(md5(random()::text), 160) WHERE id IN (SELECT id FROM t ORDER BY random() LIMIT 3);";
            }
        }
    }
    sql + "COMMIT;"
}

fn seed() -> u64 {
    let s = std::env::var("TIDEMARK_TEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("iceberg workload seed {s} (TIDEMARK_TEST_SEED to repeat)");
    s
}

/// A test database with the all-types table, a running pipeline into a lake, and the
/// workload's random state.
struct Run {
    db: TestDb,
    p: crate::support::Pipeline,
    lake: ice::Lake,
    rng: rand::rngs::StdRng,
    next_id: i64,
}

impl Run {
    /// Creates the database and table, starts the pipeline, inserts `initial` rows.
    fn start(prefix: &str, sink: SinkSpec<'_>, initial: i64) -> Run {
        let db = TestDb::create(prefix);
        psql(&db.name, CREATE);
        let (mut p, lake) = ice::pipeline(&db.name, &["public.t"], sink);
        p.start();
        psql(&db.name, &insert(1, initial));
        Run {
            db,
            p,
            lake,
            rng: rand::rngs::StdRng::seed_from_u64(seed()),
            next_id: initial + 1,
        }
    }

    /// `n` random transactions.
    fn txns(&mut self, n: usize, round: usize) {
        for _ in 0..n {
            psql(
                &self.db.name,
                &random_txn(&mut self.rng, &mut self.next_id, round),
            );
        }
    }

    /// Waits until pyiceberg reads the source table.
    fn wait_equal(&mut self, timeout: Duration) -> serde_json::Value {
        ice::wait_equal(
            &mut self.p,
            &self.lake,
            &self.db.name,
            "public.t",
            "t",
            timeout,
        )
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn iceberg_mirror_randomized_workload_matches_source() {
    if !ice::enabled("iceberg_mirror_randomized_workload_matches_source") {
        return;
    }
    let mut run = Run::start(
        "tm_ice_mirror",
        SinkSpec {
            mode: "mirror",
            extra: "commit = { max_rows = 5000, interval = \"500ms\" }",
            jsonl: false,
            pg_catalog: false,
        },
        500,
    );
    for round in 0..4 {
        run.txns(8, round);
        // Schema changes mid-stream, each followed by changes so Postgres sends the
        // new Relation: add, rename, widen, drop.
        let ddl = match round {
            0 => "ALTER TABLE t ADD COLUMN extra integer; UPDATE t SET extra = 7 WHERE id % 4 = 0;",
            1 => "ALTER TABLE t RENAME COLUMN vc TO vc2; UPDATE t SET vc2 = 'renamed' WHERE id % 5 = 0;",
            2 => "ALTER TABLE t ALTER COLUMN i4 TYPE bigint; UPDATE t SET i4 = 5000000000 WHERE id % 6 = 0;",
            _ => "ALTER TABLE t DROP COLUMN ch; UPDATE t SET tx = 'after drop' WHERE id % 7 = 0;",
        };
        psql(&run.db.name, ddl);
        if round == 1 {
            let lo = run.next_id;
            psql(
                &run.db.name,
                &format!("BEGIN; TRUNCATE t; {} COMMIT;", insert(lo, lo + 299)),
            );
            run.next_id += 300;
        }
    }
    let r = run.wait_equal(Duration::from_secs(120));
    eprintln!("pyiceberg: {r}");
    let Run {
        db, mut p, lake, ..
    } = run;
    // The same table through the other readers.
    for reader in ["polars", "duckdb"] {
        let r = ice::compare(&lake, reader, &db.name, "public.t", "t");
        eprintln!("{reader}: {r}");
        assert_eq!(r["equal"], true, "{reader} reads a different table: {r}");
    }
    let rows = ice::iceberg_rust_rows(&lake, "t").await;
    assert_eq!(
        ice::ids_of(&rows),
        ice::pg_ids(&db.name, "t"),
        "iceberg-rust sees other keys"
    );
    p.stop();
    // Maintenance from the CLI: the table reads the same after compaction and expiry.
    ice::compact(&p);
    let out = ice::expire_all_ok(&p);
    eprintln!("{out}");
    let r = ice::compare(&lake, "pyiceberg", &db.name, "public.t", "t");
    assert_eq!(r["equal"], true, "after compaction and expiry: {r}");
    assert_eq!(ice::orphan_files(&lake, "t").await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn iceberg_changelog_matches_captured_stream() {
    if !ice::enabled("iceberg_changelog_matches_captured_stream") {
        return;
    }
    let mut run = Run::start(
        "tm_ice_log",
        SinkSpec {
            mode: "changelog",
            extra: "commit = { interval = \"300ms\" }\n[sinks.tables.\"public.t\"]\npartition = [\"day(_commit_ts)\"]",
            jsonl: true,
            pg_catalog: false,
        },
        200,
    );
    run.txns(6, 0);
    run.txns(6, 1);
    psql(&run.db.name, "TRUNCATE t");
    psql(&run.db.name, &insert(run.next_id, run.next_id + 9));
    let Run {
        db: _db,
        mut p,
        lake,
        ..
    } = run;
    // The Debezium JSON sink of the same pipeline is the captured stream.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let expected: Vec<(String, String, Option<i64>)> = loop {
        let lines = p.lines();
        // Debezium emits a primary-key change as delete (header newkey) + create (header
        // oldkey); the changelog holds it as one `u` row with the new image.
        let ev: Vec<_> = lines
            .iter()
            .filter(|l| !l["value"].is_null() && l["headers"]["__debezium.newkey"].is_null())
            .map(|l| {
                let v = &l["value"];
                let mut op = v["op"].as_str().unwrap_or("").to_owned();
                if !l["headers"]["__debezium.oldkey"].is_null() {
                    op = "u".into();
                }
                let id = if op == "d" {
                    v["before"]["id"].as_i64()
                } else {
                    v["after"]["id"].as_i64()
                };
                (op, v["source"]["lsn"].to_string(), id)
            })
            .collect();
        let log = ice::changelog_rows(&lake, "t");
        if log.len() >= ev.len()
            && !ev.is_empty()
            && ev.last().is_some_and(|e| e.0 == "c")
            && log.len() == ev.len()
        {
            break ev;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "changelog has {} rows, stream {}\n{}",
            log.len(),
            ev.len(),
            ice::tail(&p.log_text(), 40)
        );
        std::thread::sleep(Duration::from_millis(700));
    };
    let mut log = ice::changelog_rows(&lake, "t");
    // Order by source position: `_position` is pg:<commit_lsn>:<lsn>:<index>.
    let key = |r: &serde_json::Value| -> (u64, u32) {
        let s = r["_position"].as_str().unwrap_or("");
        let parts: Vec<&str> = s.split(':').collect();
        let lsn = |x: &str| {
            let (h, l) = x.split_once('/').unwrap_or(("0", "0"));
            (u64::from_str_radix(h, 16).unwrap_or(0) << 32)
                | u64::from_str_radix(l, 16).unwrap_or(0)
        };
        (
            lsn(parts.get(1).unwrap_or(&"0/0")),
            parts.get(3).and_then(|i| i.parse().ok()).unwrap_or(0),
        )
    };
    log.sort_by_key(key);
    let actual: Vec<(String, Option<i64>)> = log
        .iter()
        .map(|r| (r["_op"].as_str().unwrap_or("").to_owned(), r["id"].as_i64()))
        .collect();
    let expected: Vec<(String, Option<i64>)> =
        expected.into_iter().map(|(op, _, id)| (op, id)).collect();
    assert_eq!(actual.len(), expected.len());
    assert_eq!(
        actual, expected,
        "changelog (op, id) sequence differs from the captured stream"
    );
    assert!(log
        .iter()
        .all(|r| r["_txid"].as_i64().is_some() && r["_commit_ts"].is_string()));
    assert!(
        log.iter().any(|r| r["_op"] == "t"),
        "the truncate is a changelog row"
    );
    p.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn iceberg_kill9_loop_no_loss_no_duplicates() {
    if !ice::enabled("iceberg_kill9_loop_no_loss_no_duplicates") {
        return;
    }
    let mut run = Run::start(
        "tm_ice_kill",
        SinkSpec {
            mode: "mirror",
            // Small, frequent commits: kills land while files are written and mid-commit.
            extra: "commit = { max_rows = 300, interval = \"150ms\" }",
            jsonl: false,
            pg_catalog: false,
        },
        300,
    );
    let cycles = 20;
    for cycle in 0..cycles {
        let mut batch = String::new();
        for _ in 0..6 {
            batch += &random_txn(&mut run.rng, &mut run.next_id, cycle);
        }
        let dbn = run.db.name.clone();
        let load = std::thread::spawn(move || psql(&dbn, &batch));
        std::thread::sleep(Duration::from_millis(run.rng.gen_range(100..900)));
        run.p.kill9();
        load.join().expect("workload thread");
        if cycle % 5 == 4 {
            psql(
                &run.db.name,
                "UPDATE t SET tx = 'between kills' WHERE id % 3 = 0",
            );
        }
        run.p.start();
    }
    let r = run.wait_equal(Duration::from_secs(120));
    let Run {
        db: _db,
        mut p,
        lake,
        ..
    } = run;
    eprintln!("after {cycles} kill -9 cycles: {r}");
    assert_eq!(r["duplicates"], 0);
    p.stop();
    let log = p.log_text();
    let cleanups = log
        .matches("cleaned files of an uncommitted snapshot")
        .count();
    eprintln!("restarts that found an uncommitted snapshot's files: {cleanups}");
    assert!(
        cleanups > 0,
        "no kill landed between writing files and committing"
    );
    let orphans = ice::orphan_files(&lake, "t").await;
    assert!(orphans.is_empty(), "orphan files left: {orphans:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn iceberg_million_row_transaction_bounded_memory() {
    if !ice::enabled("iceberg_million_row_transaction_bounded_memory") {
        return;
    }
    let db = TestDb::create("tm_ice_big");
    psql(
        &db.name,
        "CREATE TABLE big (id bigint PRIMARY KEY, v text, n integer)",
    );
    let (mut p, lake) = ice::pipeline(
        &db.name,
        &["public.big"],
        SinkSpec {
            mode: "mirror",
            extra: "",
            jsonl: false,
            pg_catalog: false,
        },
    );
    p.start();
    psql(
        &db.name,
        "INSERT INTO big SELECT g, md5(g::text), g % 1000 FROM generate_series(1, 1000000) g",
    );
    psql(&db.name, "UPDATE big SET n = -1 WHERE id % 100000 = 0");
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    loop {
        let r = ice::compare(&lake, "pyiceberg", &db.name, "public.big", "big");
        if r["equal"] == true {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{r}\n{}",
            ice::tail(&p.log_text(), 40)
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    let peak = p.current_peak_rss_kib().unwrap_or(0);
    eprintln!("1,000,000-row transaction: peak RSS {} MiB", peak / 1024);
    // The index holds 1M keys (~60 MiB); Parquet row groups and the source's spill are bounded.
    assert!(peak < 512 * 1024, "peak RSS {} MiB", peak / 1024);
    p.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn iceberg_sql_catalog_on_postgresql() {
    if !ice::enabled("iceberg_sql_catalog_on_postgresql") {
        return;
    }
    // The catalog tables live in the test database itself (not in the publication).
    let mut run = Run::start(
        "tm_ice_pgcat",
        SinkSpec {
            mode: "mirror",
            extra: "commit = { interval = \"300ms\" }",
            jsonl: false,
            pg_catalog: true,
        },
        200,
    );
    run.txns(6, 0);
    let r = run.wait_equal(Duration::from_secs(90));
    eprintln!("PostgreSQL catalog, pyiceberg: {r}");
    let Run { db, mut p, .. } = run;
    let n = psql(
        &db.name,
        "SELECT count(*) FROM iceberg_tables WHERE catalog_name = 'tidemark' AND table_namespace = 'lake'",
    );
    assert_eq!(n, "1");
    p.stop();
}

/// What a format v3 table's metadata says about its deletion vectors and row lineage.
struct V3Facts {
    live_dvs: usize,
    distinct_dv_targets: usize,
    parquet_deletes: usize,
    dvs_written: usize,
}

/// `upgraded`: the table was v2 before (its v2 snapshots have no row range).
async fn v3_facts(lake: &ice::Lake, upgraded: bool) -> V3Facts {
    use tidemark_iceberg::iceberg::spec::{
        DataContentType, DataFileFormat, FormatVersion, ManifestContentType,
    };
    let (catalog, t) = ice::load_table(lake, "t").await;
    let md = &t.metadata;
    assert_eq!(md.format_version(), FormatVersion::V3);
    // Row lineage: every snapshot has a row range (an upgraded table's v2 ones before the
    // first v3 one excepted), and the next-row-id is past the last one.
    let mut snaps: Vec<_> = md.snapshots().collect();
    snaps.sort_by_key(|s| s.sequence_number());
    let mut next = 0;
    let mut dvs_written = 0;
    let mut lineage = false;
    for s in &snaps {
        let (first, added) = match s.row_range() {
            Some(r) => r,
            None if upgraded && !lineage => continue,
            None => panic!("snapshot {} without first-row-id", s.snapshot_id()),
        };
        lineage = true;
        assert!(first >= next, "first-row-id {first} behind {next}");
        next = first + added;
        dvs_written += s
            .summary()
            .additional_properties
            .get("added-dvs")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
    }
    assert_eq!(md.next_row_id(), next, "next-row-id");
    // Every data manifest of the current manifest list has a first_row_id (those carried
    // from v2 get one in the first v3 snapshot), their ranges (added + existing rows) are
    // disjoint and below next-row-id.
    let mut ranges = Vec::new();
    for m in tidemark_iceberg::commit::snapshot::current_manifests(&catalog.file_io, &t)
        .await
        .expect("manifests")
    {
        if m.content != ManifestContentType::Data {
            assert_eq!(m.first_row_id, None, "{}", m.manifest_path);
            continue;
        }
        let first = m
            .first_row_id
            .unwrap_or_else(|| panic!("data manifest {} without first_row_id", m.manifest_path));
        let rows = m.added_rows_count.unwrap_or(0) + m.existing_rows_count.unwrap_or(0);
        ranges.push((first, first + rows));
    }
    ranges.sort_unstable();
    for w in ranges.windows(2) {
        assert!(
            w[0].1 <= w[1].0,
            "overlapping manifest row id ranges {ranges:?}"
        );
    }
    if let Some(last) = ranges.last() {
        assert!(last.1 <= md.next_row_id(), "{ranges:?} past next-row-id");
    }
    let entries = tidemark_iceberg::commit::snapshot::live_entries(&catalog.file_io, &t)
        .await
        .expect("live entries");
    let mut targets = std::collections::HashSet::new();
    let mut per_puffin: std::collections::HashMap<String, usize> = Default::default();
    let (mut live_dvs, mut parquet_deletes) = (0, 0);
    for e in &entries {
        let f = &e.data_file;
        if f.content_type() != DataContentType::PositionDeletes {
            continue;
        }
        if f.file_format() == DataFileFormat::Puffin {
            live_dvs += 1;
            *per_puffin.entry(f.file_path().to_owned()).or_default() += 1;
            let r = f.referenced_data_file().expect("referenced_data_file");
            targets.insert(r);
            assert!(f.content_offset().is_some() && f.content_size_in_bytes().is_some());
            let bm = tidemark_iceberg::dv::read_dv(&catalog.file_io, f)
                .await
                .expect("read dv");
            assert_eq!(bm.len(), f.record_count());
        } else {
            parquet_deletes += 1;
        }
    }
    // A live Puffin file holds live blobs only (no reader meets a superseded DV).
    for (path, live) in &per_puffin {
        let input = catalog.file_io.new_input(path).expect("puffin input");
        let reader = tidemark_iceberg::iceberg::puffin::PuffinReader::new(input);
        let blobs = reader
            .file_metadata()
            .await
            .expect("puffin footer")
            .blobs()
            .len();
        assert_eq!(blobs, *live, "{path}: {blobs} blobs, {live} live entries");
    }
    V3Facts {
        live_dvs,
        distinct_dv_targets: targets.len(),
        parquet_deletes,
        dvs_written,
    }
}

/// [`v3_facts`] of a table with deletion vectors, printed: at least one live DV, and at most
/// one for a data file.
async fn v3_facts_with_dvs(lake: &ice::Lake, upgraded: bool) -> V3Facts {
    let facts = v3_facts(lake, upgraded).await;
    eprintln!(
        "live DVs {}, data files with a DV {}, DVs written {}, Parquet delete files {}",
        facts.live_dvs, facts.distinct_dv_targets, facts.dvs_written, facts.parquet_deletes
    );
    assert!(facts.live_dvs > 0, "no deletion vector written");
    assert_eq!(
        facts.live_dvs, facts.distinct_dv_targets,
        "more than one live DV for a data file"
    );
    facts
}

/// `scripts/iceberg_dv_check.py` on table `t` with `args` (`--upgraded`, `--v2-snapshot ID`:
/// see the script): the blobs checked byte by byte by another decoder (zlib CRC-32,
/// CRoaring). Asserts a v3 table, no errors and `live_dvs` DVs; its JSON answer.
fn dv_check(lake: &ice::Lake, args: &[&str], live_dvs: usize) -> serde_json::Value {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/iceberg_dv_check.py");
    let mut cmd = std::process::Command::new(ice::python());
    cmd.arg(script)
        .args(["--catalog-uri", &lake.catalog_uri_sqlalchemy()])
        .args(["--table", &format!("{}.t", lake.namespace)]);
    cmd.args(args);
    let out = cmd.output().expect("run iceberg_dv_check.py");
    let check: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    eprintln!("DV check: {check}");
    assert_eq!(check["format_version"], 3);
    assert_eq!(check["errors"], serde_json::json!([]), "{check}");
    assert_eq!(check["dvs"], live_dvs, "{check}");
    check
}

/// The readers of a v3 table (`upgraded`: from v2) against PostgreSQL, then maintenance:
/// the sink's own scan (iceberg-rust with the DVs and any position deletes applied), polars
/// and DuckDB read the same rows; compaction rewrites them with the deletes applied, expiry
/// removes the old files, and then pyiceberg reads the same rows, no delete is left and no
/// file is orphaned.
async fn v3_readers_compaction_and_expiry(
    db: &str,
    p: &crate::support::Pipeline,
    lake: &ice::Lake,
    upgraded: bool,
) {
    let rows = ice::iceberg_rust_rows(lake, "t").await;
    assert_eq!(
        ice::ids_of(&rows),
        ice::pg_ids(db, "t"),
        "iceberg-rust + DVs"
    );
    for reader in ["polars", "duckdb"] {
        let r = ice::compare(lake, reader, db, "public.t", "t");
        eprintln!("{reader} on v3: {r}");
        assert_eq!(r["equal"], true, "{reader} reads a different v3 table: {r}");
    }
    ice::compact(p);
    ice::expire_all_ok(p);
    let r = ice::compare(lake, "pyiceberg", db, "public.t", "t");
    assert_eq!(r["equal"], true, "after compaction and expiry: {r}");
    let facts = v3_facts(lake, upgraded).await;
    assert_eq!(facts.live_dvs, 0, "compaction leaves no deletion vector");
    assert_eq!(
        facts.parquet_deletes, 0,
        "compaction leaves no position delete file"
    );
    assert_eq!(ice::orphan_files(lake, "t").await, Vec::<String>::new());
}

/// Format v3: deletion vectors instead of position delete files, merged across commits.
#[tokio::test(flavor = "multi_thread")]
async fn iceberg_v3_deletion_vectors_match_source() {
    if !ice::enabled("iceberg_v3_deletion_vectors_match_source") {
        return;
    }
    let mut run = Run::start(
        "tm_ice_v3",
        SinkSpec {
            mode: "mirror",
            extra: "format_version = 3\ncommit = { max_rows = 3000, interval = \"300ms\" }",
            jsonl: false,
            pg_catalog: false,
        },
        600,
    );
    // The same rows updated and deleted across several commits: each commit's DV of a data
    // file must merge the previous one.
    for round in 0..6 {
        psql(
            &run.db.name,
            &format!(
                "UPDATE t SET tx = 'round {round}', i4 = {round} WHERE id % 10 = {}",
                round % 3
            ),
        );
        psql(
            &run.db.name,
            &format!(
                "DELETE FROM t WHERE id IN (SELECT id FROM t WHERE id % 17 = {round} LIMIT 4)"
            ),
        );
        run.txns(3, round);
        std::thread::sleep(Duration::from_millis(500));
    }
    let r = run.wait_equal(Duration::from_secs(120));
    eprintln!("pyiceberg (v3, before restart): {r}");
    // A kill -9 and restart: the key index and the DVs are rebuilt from the table, and the
    // next DVs of the same data files merge the ones read back.
    run.p.kill9();
    run.p.start();
    for round in 6..9 {
        psql(
            &run.db.name,
            &format!(
                "UPDATE t SET tx = 'after restart {round}' WHERE id % 10 = {}",
                round % 3
            ),
        );
        run.txns(3, round);
        std::thread::sleep(Duration::from_millis(500));
    }
    let r = run.wait_equal(Duration::from_secs(120));
    eprintln!("pyiceberg (v3, after restart): {r}");
    assert_eq!(r["duplicates"], 0);
    let Run {
        db, mut p, lake, ..
    } = run;
    p.stop();
    let facts = v3_facts_with_dvs(&lake, false).await;
    assert_eq!(
        facts.parquet_deletes, 0,
        "a v3 table gets no Parquet position deletes"
    );
    assert!(
        facts.dvs_written > facts.live_dvs,
        "no DV was ever replaced by a merged one"
    );
    dv_check(&lake, &[], facts.live_dvs);
    v3_readers_compaction_and_expiry(&db.name, &p, &lake, false).await;
}

/// The live Parquet position delete files of table `t` and their positions by data file;
/// the live deletion vectors by data file.
async fn live_deletes(
    lake: &ice::Lake,
) -> (
    std::collections::BTreeSet<String>,
    std::collections::HashMap<String, std::collections::BTreeSet<u64>>,
    std::collections::HashMap<String, std::collections::BTreeSet<u64>>,
) {
    use tidemark_iceberg::iceberg::metadata_columns::{
        RESERVED_FIELD_ID_DELETE_FILE_PATH, RESERVED_FIELD_ID_DELETE_FILE_POS,
    };
    use tidemark_iceberg::iceberg::spec::DataContentType;
    use tidemark_iceberg::mirror::index::{position_delete_rows, read_columns, read_file};
    let (catalog, t) = ice::load_table(lake, "t").await;
    let io = &catalog.file_io;
    let mut files = std::collections::BTreeSet::new();
    let mut old: std::collections::HashMap<String, std::collections::BTreeSet<u64>> =
        Default::default();
    let mut dvs = std::collections::HashMap::new();
    for e in tidemark_iceberg::commit::snapshot::live_entries(io, &t)
        .await
        .expect("live entries")
    {
        let f = &e.data_file;
        if f.content_type() != DataContentType::PositionDeletes {
            continue;
        }
        if tidemark_iceberg::dv::is_dv(f) {
            let bm = tidemark_iceberg::dv::read_dv(io, f).await.expect("read dv");
            let target = f.referenced_data_file().expect("referenced_data_file");
            dvs.insert(target, bm.iter().collect());
            continue;
        }
        files.insert(f.file_path().to_owned());
        let bytes = read_file(io, f.file_path())
            .await
            .expect("read delete file");
        let cols = read_columns(
            bytes,
            &[
                RESERVED_FIELD_ID_DELETE_FILE_PATH,
                RESERVED_FIELD_ID_DELETE_FILE_POS,
            ],
            f.file_path(),
        )
        .expect("delete file columns");
        if cols.is_empty() {
            continue;
        }
        for (data, pos) in position_delete_rows(&cols, f.file_path()).expect("delete rows") {
            old.entry(data).or_default().insert(pos);
        }
    }
    (files, old, dvs)
}

/// Issue 8: an existing format v2 mirror restarted with `format_version = 3` is upgraded in
/// place; deletes then go into deletion vectors, the first DV of a data file with Parquet
/// position deletes holds those positions too (the old delete file stays valid until DVs
/// take it over whole), row lineage starts, and every reader (and compaction, expiry) agrees
/// with PostgreSQL.
#[tokio::test(flavor = "multi_thread")]
async fn iceberg_v2_table_upgrades_to_v3_and_merges_old_deletes() {
    use tidemark_iceberg::iceberg::spec::FormatVersion;
    if !ice::enabled("iceberg_v2_table_upgrades_to_v3_and_merges_old_deletes") {
        return;
    }
    const COMMIT: &str = "commit = { max_rows = 3000, interval = \"300ms\" }";
    let mut run = Run::start(
        "tm_ice_up",
        SinkSpec {
            mode: "mirror",
            extra: COMMIT,
            jsonl: false,
            pg_catalog: false,
        },
        600,
    );
    // Format v2: updates and deletes over several commits, so the first data files get
    // Parquet position deletes.
    for round in 0..3 {
        psql(
            &run.db.name,
            &format!("UPDATE t SET tx = 'v2 {round}' WHERE id % 10 = {round}"),
        );
        psql(
            &run.db.name,
            &format!(
                "DELETE FROM t WHERE id IN (SELECT id FROM t WHERE id % 17 = {round} LIMIT 4)"
            ),
        );
        run.txns(2, round);
        std::thread::sleep(Duration::from_millis(500));
    }
    run.wait_equal(Duration::from_secs(120));
    // Cold rows (ids from COLD on, never touched after the upgrade): a data file and a
    // position delete file of their own (one commit each), which stay as they are after the
    // upgrade, next to the DVs.
    const COLD: i64 = 2_000_000_000;
    psql(&run.db.name, &insert(COLD, COLD + 59));
    std::thread::sleep(Duration::from_millis(800));
    psql(
        &run.db.name,
        &format!("DELETE FROM t WHERE id BETWEEN {COLD} AND {}", COLD + 9),
    );
    let r = run.wait_equal(Duration::from_secs(120));
    eprintln!("pyiceberg (v2): {r}");
    run.p.stop();
    let (_, t) = ice::load_table(&run.lake, "t").await;
    assert_eq!(t.metadata.format_version(), FormatVersion::V2);
    let v2_snapshot = t.metadata.current_snapshot_id().expect("a v2 snapshot");
    let (v2_files, v2_deleted, v2_dvs) = live_deletes(&run.lake).await;
    assert!(v2_dvs.is_empty());
    assert!(
        !v2_files.is_empty(),
        "the v2 mirror wrote no position deletes"
    );
    eprintln!(
        "v2: {} position delete files over {} data files",
        v2_files.len(),
        v2_deleted.len()
    );

    // The same pipeline with `format_version = 3`.
    ice::set_format_version_3(&run.p, COMMIT);
    run.p.start();
    // Updates over every id residue touch rows of every old data file (those with position
    // deletes too), deletes of old and new rows, inserts, primary key changes; never a cold
    // row.
    for round in 3..7 {
        psql(
            &run.db.name,
            &format!(
                "UPDATE t SET tx = 'v3 {round}', i4 = {round} WHERE id < {COLD} AND id % 10 = {}",
                round % 3
            ),
        );
        psql(
            &run.db.name,
            &format!(
                "DELETE FROM t WHERE id IN (SELECT id FROM t WHERE id < {COLD} AND id % 13 = {round} LIMIT 5)"
            ),
        );
        let lo = run.next_id;
        run.next_id += 40;
        psql(
            &run.db.name,
            &format!(
                "BEGIN; {} UPDATE t SET id = id + 500000000 WHERE id IN \
                 (SELECT id FROM t WHERE id < 500000000 ORDER BY random() LIMIT 5); \
                 DELETE FROM t WHERE id BETWEEN {lo} AND {}; COMMIT;",
                insert(lo, lo + 39),
                lo + 3
            ),
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let r = run.wait_equal(Duration::from_secs(120));
    eprintln!("pyiceberg (upgraded to v3): {r}");
    assert_eq!(r["duplicates"], 0);
    let log = run.p.log_text();
    assert!(
        log.contains("upgrading the iceberg table's format version"),
        "no upgrade logged:\n{}",
        ice::tail(&log, 40)
    );
    let Run {
        db, mut p, lake, ..
    } = run;
    p.stop();
    let facts = v3_facts_with_dvs(&lake, true).await;
    // No position delete file is added to the v3 table; the old ones stay valid until DVs
    // take them over: each goes whole, when one of its data files gets a DV (all of them
    // get one), so no data file has both.
    let (files, deleted, dvs) = live_deletes(&lake).await;
    assert!(files.is_subset(&v2_files), "{files:?} not of {v2_files:?}");
    for data in deleted.keys() {
        assert!(
            !dvs.contains_key(data),
            "{data}: a DV and a position delete file"
        );
        assert_eq!(deleted[data], v2_deleted[data]);
    }
    assert!(
        files.len() < v2_files.len(),
        "no position delete file was taken over"
    );
    assert!(
        !files.is_empty(),
        "the cold rows' position delete file was taken over"
    );
    // The first DV of an old data file with position deletes merged them.
    let mut merged = 0;
    for (data, old) in &v2_deleted {
        if let Some(dv) = dvs.get(data) {
            assert!(
                dv.is_superset(old),
                "{data}: DV {dv:?} lacks old position deletes {:?}",
                old.difference(dv).collect::<Vec<_>>()
            );
            merged += 1;
        }
    }
    assert!(
        merged > 0,
        "no old data file with position deletes got a DV"
    );
    eprintln!("{merged} DVs merged old position deletes");
    let v2_snapshot = v2_snapshot.to_string();
    let check = dv_check(
        &lake,
        &["--upgraded", "--v2-snapshot", &v2_snapshot],
        facts.live_dvs,
    );
    assert_eq!(check["merged"], merged, "{check}");
    assert_eq!(check["parquet_deletes"], files.len(), "{check}");
    v3_readers_compaction_and_expiry(&db.name, &p, &lake, true).await;
    // The pipeline goes on after the compaction.
    p.start();
    psql(
        &db.name,
        "UPDATE t SET tx = 'after compaction' WHERE id % 7 = 0",
    );
    let r = ice::wait_equal(
        &mut p,
        &lake,
        &db.name,
        "public.t",
        "t",
        Duration::from_secs(120),
    );
    eprintln!("pyiceberg (after compaction): {r}");
    p.stop();
}
