//! The Delta sink end to end: a real PostgreSQL → `tidemark run` → Delta tables, read back by
//! an independent reader (PyPI `deltalake`, `scripts/delta_read.py`) and compared with the
//! source tables. Skipped unless `TIDEMARK_TEST_DELTA=1` (and `TIDEMARK_TEST_PG=1`).

use std::time::Duration;

use serde_json::{json, Value};

use super::delta_support::{
    col, delta_enabled, delta_sink, read, source_checksum, source_rows, spec, Col, DeltaPipeline,
};
use super::support::{psql, TestDb};

const ALLTYPES_DDL: &str = "CREATE TABLE alltypes (
    id int PRIMARY KEY, c_bool bool, c_i2 int2, c_i4 int4, c_i8 int8, c_f4 float4, c_f8 float8,
    c_num numeric(12,3), c_numx numeric, c_money money, c_text text, c_vc varchar(20), c_ch char(5),
    c_bytea bytea, c_date date, c_time time, c_ts timestamp, c_tstz timestamptz, c_iv interval,
    c_uuid uuid, c_json json, c_jsonb jsonb, c_iarr int[], c_tarr text[], c_inet inet, c_oid oid,
    c_big text);
  CREATE TABLE big (id int PRIMARY KEY, v text);
  CREATE TABLE nopk (a int, b text);";

/// A TOAST-ed value: ~9.6 kB of incompressible text.
const BIG: &str = "(SELECT string_agg(md5(g::text), '') FROM generate_series(1, 300) g)";

fn alltypes_cols(with_vc: bool, with_added: bool) -> Vec<Col> {
    let mut v = vec![
        col("id", "int"),
        col("c_bool", "bool"),
        col("c_i2", "int"),
        col("c_i4", "int"),
        col("c_i8", "int"),
        col("c_f4", "float"),
        col("c_f8", "float"),
        col("c_num", "decimal"),
        col("c_numx", "text"),
        col("c_money", "decimal"),
        col("c_text", "text"),
        col("c_ch", "bpchar"),
        col("c_bytea", "hex"),
        col("c_date", "days"),
        col("c_time", "time"),
        col("c_ts", "micros"),
        col("c_tstz", "micros"),
        col("c_iv", "interval"),
        col("c_uuid", "text"),
        col("c_json", "text"),
        col("c_jsonb", "text"),
        col("c_iarr", "jsonlist"),
        col("c_tarr", "jsonlist"),
        col("c_inet", "bpchar"),
        col("c_oid", "int"),
        col("c_big", "text"),
    ];
    if with_vc {
        v.push(col("c_vc", "text"));
    }
    if with_added {
        v.push(col("c_added", "int"));
    }
    v
}

const ROW1: &str = "(1, true, -32768, 2147483647, -9223372036854775808, 1.5, 0.1, 123456789.125,
    '3.14159265358979323846264338327950288419716939937510', '$1,234.56', 'héllo wörld ✓', 'vc', 'ab',
    '\\x00ff10', '2024-02-29', '23:59:59.999999', '1999-12-31 23:59:59.123456', '2038-01-19 03:14:08+00',
    '1 year 2 months 3 days 04:05:06.789', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{\"k\": [1, 2]}',
    '{\"b\": 1, \"a\": \"x\"}', '{1,NULL,3}', '{\"a b\",NULL,\"c\\\"d\"}', '192.168.0.1/24', 4294967295, ";

const ROW2: &str = "(2, false, 0, 0, 0, 'NaN', 'Infinity', 'NaN', 'NaN', '-$0.01', '', 'x', 'x',
    '\\x', 'infinity', '00:00:00', '-infinity', 'infinity', '-3 days', '00000000-0000-0000-0000-000000000000',
    'null', '[]', '{}', '{}', '::1', 0, ";

/// Every supported type, inserts/updates/deletes, unchanged TOAST, several changes to one key in
/// a transaction, delete + re-insert, a primary-key change with an unchanged TOAST value, added
/// and dropped columns, a 100,000-row transaction: the mirror equals the source, the changelog
/// holds every change once.
#[test]
fn delta_mirror_and_changelog_match_the_source() {
    if !delta_enabled("delta_mirror_and_changelog_match_the_source") {
        return;
    }
    let db = TestDb::create("tm_delta");
    psql(&db.name, ALLTYPES_DDL);
    let sinks = format!(
        "{}\n[sinks.tables.\"public.nopk\"]\nmode = \"changelog\"\n\n{}",
        delta_sink("mirror", "mirror", "mirror", ""),
        delta_sink("log", "log", "changelog", "")
    );
    let mut p = DeltaPipeline::new(
        &db.name,
        &["public.alltypes", "public.big", "public.nopk"],
        &sinks,
    );
    p.start();
    let d = &db.name;
    psql(
        d,
        &format!("INSERT INTO alltypes VALUES {ROW1} {BIG}), {ROW2} {BIG})"),
    );
    psql(d, "INSERT INTO alltypes (id) VALUES (3)");
    // Unchanged TOAST: c_big is not sent.
    psql(d, "UPDATE alltypes SET c_i4 = 99 WHERE id = 1");
    // Several changes to one key, delete then re-insert, in one transaction.
    psql(
        d,
        "BEGIN; DELETE FROM alltypes WHERE id = 3; INSERT INTO alltypes (id, c_text) VALUES (3, 'again');
         UPDATE alltypes SET c_text = 'again2', c_f8 = -2.25 WHERE id = 3; COMMIT;",
    );
    // A primary-key change whose TOAST value is unchanged (the stored value moves to id 10).
    psql(d, "UPDATE alltypes SET id = 10 WHERE id = 2");
    psql(
        d,
        "INSERT INTO nopk VALUES (1, 'a'), (1, 'a'), (NULL, NULL)",
    );
    p.wait_caught_up(Duration::from_secs(120));
    // Schema changes mid-stream.
    psql(d, "ALTER TABLE alltypes ADD COLUMN c_added int");
    psql(
        d,
        "UPDATE alltypes SET c_added = 5 WHERE id = 1; INSERT INTO alltypes (id, c_added, c_vc) VALUES (4, 6, 'v4')",
    );
    psql(d, "ALTER TABLE alltypes DROP COLUMN c_vc");
    psql(
        d,
        "INSERT INTO alltypes (id, c_text) VALUES (5, 'after drop')",
    );
    // A large transaction (streamed by the source in chunks; committed whole).
    psql(
        d,
        "INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 100000) g",
    );
    psql(
        d,
        "BEGIN; UPDATE big SET v = 'u' WHERE id % 10 = 0; DELETE FROM big WHERE id % 7 = 0; COMMIT;",
    );
    p.wait_caught_up(Duration::from_secs(300));

    // Mirror = source, read by the independent reader.
    let cols = alltypes_cols(false, true);
    let mirror = read(&["rows", &p.table("mirror", "public.alltypes"), &spec(&cols)]);
    let source = source_rows(d, "alltypes", &cols);
    assert_rows_eq(&mirror, &source);
    // The dropped column stays in the Delta table, frozen (id 4 kept its value).
    let vc = read(&[
        "rows",
        &p.table("mirror", "public.alltypes"),
        &spec(&[col("id", "int"), col("c_vc", "text")]),
    ]);
    assert_eq!(vc[2], json!(["4", "v4"]), "{vc}");
    assert_eq!(vc[3], json!(["5", null]), "{vc}");
    let big_cols = [col("id", "int"), col("v", "text")];
    let big_mirror = read(&[
        "checksum",
        &p.table("mirror", "public.big"),
        &spec(&big_cols),
    ]);
    assert_eq!(big_mirror, source_checksum(d, "big", &big_cols));
    assert_eq!(big_mirror["count"], json!(100_000 - 100_000 / 7));

    // Changelog: every change exactly once.
    let log = read(&["changelog", &p.table("log", "public.alltypes")]);
    assert_eq!(
        log,
        json!({"rows": 12, "distinct_positions": 11,
               "by_type": {"insert": 6, "update_preimage": 1, "update_postimage": 4, "delete": 1}}),
        "the key change is a pre/post image pair sharing its position"
    );
    let big_log = read(&["changelog", &p.table("log", "public.big")]);
    let updates = 100_000 / 10;
    let deletes = 100_000 / 7;
    assert_eq!(
        big_log["by_type"],
        json!({"insert": 100_000, "update_postimage": updates, "delete": deletes})
    );
    assert_eq!(big_log["distinct_positions"], big_log["rows"]);
    // The table without a primary key is a changelog in both sinks (mirror refuses no key; it
    // is configured as changelog there).
    let nopk = read(&["changelog", &p.table("mirror", "public.nopk")]);
    assert_eq!(nopk["by_type"], json!({"insert": 3}));
    p.stop();
}

fn assert_rows_eq(delta: &Value, source: &Value) {
    let (d, s) = (delta.as_array().unwrap(), source.as_array().unwrap());
    assert_eq!(
        d.len(),
        s.len(),
        "row count\ndelta: {delta}\nsource: {source}"
    );
    for (dr, sr) in d.iter().zip(s) {
        assert_eq!(dr, sr, "\ndelta:  {dr}\nsource: {sr}");
    }
}

/// Delta's own change feed of a mirror table (`load_cdf`, read by the independent reader)
/// equals the captured stream (the changelog table of the same pipeline), round by round.
#[test]
fn delta_change_data_feed_equals_the_captured_stream() {
    if !delta_enabled("delta_change_data_feed_equals_the_captured_stream") {
        return;
    }
    let db = TestDb::create("tm_delta_cdf");
    let d = &db.name;
    psql(
        d,
        "CREATE TABLE t (id int PRIMARY KEY, v text, n numeric(8,2)); ALTER TABLE t REPLICA IDENTITY FULL",
    );
    let sinks = format!(
        "{}\n{}",
        delta_sink("mirror", "mirror", "mirror", ""),
        delta_sink("log", "log", "changelog", "")
    );
    let mut p = DeltaPipeline::new(d, &["public.t"], &sinks);
    p.start();
    // Each round touches a key at most once and is committed before the next, so each Delta
    // version of the mirror holds exactly one round.
    let rounds = [
        "INSERT INTO t SELECT g, 'v' || g, g / 4.0 FROM generate_series(1, 50) g",
        "UPDATE t SET v = 'u1' WHERE id % 3 = 0",
        "BEGIN; DELETE FROM t WHERE id % 5 = 0; INSERT INTO t VALUES (100, 'new', 1); COMMIT",
        "UPDATE t SET n = n + 1 WHERE id > 40",
    ];
    for r in rounds {
        psql(d, r);
        p.wait_caught_up(Duration::from_secs(60));
    }
    let cols = [col("id", "int"), col("v", "text"), col("n", "decimal")];
    let cdf = read(&["cdf", &p.table("mirror", "public.t"), &spec(&cols)]);
    // The captured stream: the changelog table's rows, `_change_type` and the image.
    let captured = read(&[
        "rows",
        &p.table("log", "public.t"),
        &spec(&[
            col("id", "int"),
            col("_change_type", "text"),
            col("v", "text"),
            col("n", "decimal"),
        ]),
    ]);
    let norm = |rows: Vec<(String, Vec<Value>)>| {
        let mut r: Vec<String> = rows
            .into_iter()
            .map(|(t, v)| format!("{t} {}", Value::Array(v)))
            .collect();
        r.sort();
        r
    };
    let from_cdf: Vec<(String, Vec<Value>)> = cdf
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let r = r.as_array().unwrap();
            (r[1].as_str().unwrap().to_owned(), r[2..].to_vec())
        })
        .collect();
    let from_log: Vec<(String, Vec<Value>)> = captured
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let r = r.as_array().unwrap();
            (
                r[1].as_str().unwrap().to_owned(),
                vec![r[0].clone(), r[2].clone(), r[3].clone()],
            )
        })
        .collect();
    assert_eq!(from_cdf.len(), 50 + 16 * 2 + 10 + 1 + 9 * 2, "{cdf}");
    assert_eq!(norm(from_cdf), norm(from_log));
    p.stop();
}

/// Mirror mode refuses a table without a primary key with an error that names the table and
/// says what to do; a type change stops the sink naming table and column.
#[test]
fn delta_refuses_what_it_cannot_mirror() {
    if !delta_enabled("delta_refuses_what_it_cannot_mirror") {
        return;
    }
    let db = TestDb::create("tm_delta_err");
    let d = &db.name;
    psql(
        d,
        "CREATE TABLE nokey (a int, b text); CREATE TABLE typed (id int PRIMARY KEY, n int)",
    );
    let mut p = DeltaPipeline::new(
        d,
        &["public.nokey"],
        &delta_sink("mirror", "mirror", "mirror", ""),
    );
    p.start();
    let log = exit_log(&mut p, d, "INSERT INTO nokey VALUES (1, 'x')")
        .expect("the pipeline stops on a table without a key");
    assert!(
        log.contains("public.nokey has no primary key") && log.contains("changelog"),
        "{log}"
    );

    let mut p = DeltaPipeline::new(
        d,
        &["public.typed"],
        &delta_sink("mirror", "mirror", "mirror", ""),
    );
    p.start();
    psql(d, "INSERT INTO typed VALUES (1, 1)");
    p.wait_caught_up(Duration::from_secs(60));
    psql(d, "ALTER TABLE typed ALTER COLUMN n TYPE bigint");
    let log = exit_log(
        &mut p,
        d,
        "INSERT INTO typed SELECT max(id) + 1, 5000000000 FROM typed",
    )
    .expect("the pipeline stops on a type change");
    assert!(
        log.contains("table public.typed, column n") && log.contains("type changed"),
        "{log}"
    );
}

/// Runs `sql` until the engine exits (its log), at most ~60 s. The engine notices a failed sink
/// when the source next hands it a transaction (see the issue note), so keep changes coming.
fn exit_log(p: &mut DeltaPipeline, db: &str, sql: &str) -> Option<String> {
    for _ in 0..20 {
        psql(db, sql);
        if let Some(log) = p.wait_exit_keep(Duration::from_secs(3)) {
            return Some(log);
        }
    }
    None
}
