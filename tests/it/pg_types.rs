//! Every PostgreSQL type of issue 2 round-trips through the live pipeline: a value in
//! PostgreSQL → pgoutput (text and binary format) → the Arrow change model → the Debezium JSON
//! sink, and the line equals what the real Debezium 3.6 emitted for the same workload (the
//! committed captures in `tests/fixtures/debezium/pg/all_types_*`, see
//! `docs/debezium-compatibility.md` §5 for each type's encoding).
//!
//! Each test creates its own database, runs the fixture's `setup.sql` (tables
//! `all_types_default` with REPLICA IDENTITY DEFAULT and `all_types_full` with FULL, publication
//! `dbz_pub`), starts `tidemark run` on a fresh slot, runs the fixture's `workload.sql` (inserts
//! of ordinary and edge values, updates, deletes) and diffs the output with the capture. Only
//! the fields that differ on every run (timestamps, txId, LSNs, `source.db`) are ignored.

use std::time::Duration;

use tidemark::diff::{diff, DiffOptions};

use super::support::{
    assert_clean, pg_enabled, psql, records, Fixture, Pipeline, PipelineSpec, TestDb,
};

const TABLES: &[&str] = &["public.all_types_default", "public.all_types_full"];

/// Replays fixture `name` through a live pipeline with the given extra TOML and diffs.
pub(crate) fn replay_fixture(name: &str, tables: &[&str], source_extra: &str, sink_extra: &str) {
    let fixture = Fixture::load(name);
    let db = TestDb::create("tm_types");
    fixture.setup(&db.name);
    let mut spec = PipelineSpec::new(&db.name, tables);
    spec.publication = "dbz_pub".into();
    spec.source_extra = source_extra.into();
    spec.sink_extra = sink_extra.into();
    let mut p = Pipeline::new(spec);
    p.start();
    fixture.workload(&db.name);
    let lines = p.wait_lines(fixture.events.len(), Duration::from_secs(60));
    let actual = records(&lines);
    // The captures carry no Kafka headers (the embedded engine does not pass them on, see
    // capture.py); ours are checked by `primary_key_change_has_debezium_headers`.
    let options = DiffOptions::run_dependent().ignore([
        "value.source.db",
        "value.payload.source.db",
        "headers",
    ]);
    let report = diff(&fixture.events, &actual, &options);
    assert_clean(name, &report, &fixture.events, &actual);
    assert_eq!(
        p.stop().map(|s| s.success()),
        Some(true),
        "{}",
        p.log_text()
    );
}

#[test]
fn all_types_text_format_match_debezium() {
    if pg_enabled("all_types_text_format_match_debezium") {
        replay_fixture("all_types_default", TABLES, "", "");
    }
}

/// The all-types workload through two pipelines at once, one asking pgoutput for the text
/// format and one for the binary format (every column, geometric types and ranges included):
/// both outputs are identical, and equal to Debezium's capture.
#[test]
fn all_types_binary_format_match_text_format_and_debezium() {
    if !pg_enabled("all_types_binary_format_match_text_format_and_debezium") {
        return;
    }
    let fixture = Fixture::load("all_types_default");
    let db = TestDb::create("tm_bin");
    fixture.setup(&db.name);
    let mut pipelines = Vec::new();
    for extra in ["", "binary = true"] {
        let mut spec = PipelineSpec::new(&db.name, &["public.all_types_default"]);
        spec.source_extra = extra.into();
        let mut p = Pipeline::new(spec);
        p.start();
        pipelines.push(p);
    }
    fixture.workload(&db.name);
    let expected: Vec<_> = fixture
        .events
        .iter()
        .filter(|r| r.topic == "tm.public.all_types_default")
        .cloned()
        .collect();
    let text = records(&pipelines[0].wait_lines(expected.len(), Duration::from_secs(60)));
    let binary = records(&pipelines[1].wait_lines(expected.len(), Duration::from_secs(60)));
    let same_wal = DiffOptions {
        match_lsn: true,
        ..DiffOptions::run_dependent()
    }
    .ignore(["value.source.db"]);
    let report = diff(&text, &binary, &same_wal);
    assert_clean("binary vs text", &report, &text, &binary);
    let options = DiffOptions::run_dependent().ignore(["value.source.db"]);
    let report = diff(&expected, &binary, &options);
    assert_clean("binary vs Debezium", &report, &expected, &binary);
}

/// A type whose binary format is not supported stops the pipeline with a definite error that
/// names the table, the column and the fix — never a silent NULL or a skipped row.
#[test]
fn binary_format_unsupported_type_is_a_definite_error() {
    if !pg_enabled("binary_format_unsupported_type_is_a_definite_error") {
        return;
    }
    let db = TestDb::create("tm_binerr");
    // A composite with a tsvector field: the model has no binary renderer for tsvector (user
    // ranges and composites of known types are rendered, see `user_types_*` below).
    psql(
        &db.name,
        "CREATE TYPE doc AS (title text, words tsvector); \
         CREATE TABLE g (id int PRIMARY KEY, p doc)",
    );
    let mut spec = PipelineSpec::new(&db.name, &["public.g"]);
    spec.source_extra = "binary = true".into();
    let mut p = Pipeline::new(spec);
    p.start();
    psql(&db.name, "INSERT INTO g VALUES (1, ROW('t', 'a b')::doc)");
    let status = p
        .wait_exit(Duration::from_secs(30))
        .expect("the pipeline stops");
    assert!(!status.success());
    let log = p.log_text();
    assert!(
        log.contains("public.g")
            && log.contains("column p (public.doc)")
            && log.contains("tsvector")
            && log.contains("text format"),
        "{log}"
    );
    assert_eq!(p.line_count(), 0);
}

#[test]
fn all_types_decimal_string_match_debezium() {
    if pg_enabled("all_types_decimal_string_match_debezium") {
        replay_fixture(
            "all_types_decimal_string",
            TABLES,
            "",
            "decimal_handling_mode = \"string\"",
        );
    }
}

#[test]
fn all_types_decimal_double_match_debezium() {
    if pg_enabled("all_types_decimal_double_match_debezium") {
        replay_fixture(
            "all_types_decimal_double",
            TABLES,
            "",
            "decimal_handling_mode = \"double\"",
        );
    }
}

#[test]
fn all_types_time_connect_match_debezium() {
    if pg_enabled("all_types_time_connect_match_debezium") {
        replay_fixture(
            "all_types_time_connect",
            TABLES,
            "",
            "time_precision_mode = \"connect\"",
        );
    }
}

#[test]
fn all_types_schemas_enable_match_debezium() {
    if pg_enabled("all_types_schemas_enable_match_debezium") {
        replay_fixture("all_types_schemas", TABLES, "", "schemas_enable = true");
    }
}

/// Every geometric type, every builtin range and multirange, and arrays of some.
const GEO_RANGE_TABLE: &str = r#"
CREATE TABLE geo_ranges (
  id int PRIMARY KEY,
  c_point point, c_line line, c_lseg lseg, c_box box, c_path path, c_polygon polygon, c_circle circle,
  c_int4range int4range, c_int8range int8range, c_numrange numrange, c_daterange daterange,
  c_tsrange tsrange, c_tstzrange tstzrange,
  c_int4multirange int4multirange, c_int8multirange int8multirange, c_nummultirange nummultirange,
  c_datemultirange datemultirange, c_tsmultirange tsmultirange, c_tstzmultirange tstzmultirange,
  c_point_arr point[], c_box_arr box[], c_tstzrange_arr tstzrange[]
);
"#;

/// Hand-picked values (written as the server prints them where that is the point): float8
/// `-0`, `NaN`, `±Infinity`, subnormals, both exponent thresholds (`1e-05`, `1e+15`), 17-digit
/// round trips; empty, unbounded, inclusive/exclusive ranges, `±infinity` bounds, BC dates and
/// timestamps (quoted: they contain a space), numeric `NaN` bounds; NULLs and NULL array elements.
const GEO_RANGE_ROWS: &str = r#"
INSERT INTO geo_ranges VALUES
 (1, '(1.5,2.5)', '{1,-1,0.5}', '[(1.5,2.5),(-3,4)]', '(3,4),(1,2)', '[(0,0),(1,1),(2,0)]', '((0,0),(10,0),(10,10))', '<(0.5,-0.5),100.25>',
  '[1,10)', '[-9223372036854775808,0]', '[1.50,2.5]', '[2020-01-01,2020-02-01)',
  '["2024-01-01 00:00","2024-12-31 23:59:59.5")', '[2024-01-01 00:00+00,2024-06-01 00:00+02)',
  '{[1,3),[5,7)}', '{(,0],[10,)}', '{[1.5,2.5],(3,NaN]}', '{[2020-01-01,2020-01-05),[2021-01-01,infinity)}',
  '{[-infinity,"2000-01-01 00:00:00.000001")}', '{}',
  '{"(1,2)","(-0,1e-07)"}', '{(1,1),(0,0);(2,2),(1,1)}', '{"[2020-01-01 00:00+00,)",empty,NULL}'),
 (2, '(-0,NaN)', '{1e+20,-1.5e-07,Infinity}', '[(0,0),(0,0)]', '(Infinity,Infinity),(-Infinity,-Infinity)', '((0,0))', '((0,0))', '<(0,0),0>',
  'empty', '(,)', '(,)', 'empty', '(,)', 'empty',
  '{}', '{[1,2]}', '{(,)}', '{}', '{}', '{[1999-12-31 23:59:59.999999+00,2000-01-01 00:00:00+00]}',
  '{}', '{}', '{}'),
 (3, '(1e+15,100000000000000)', '{0.0001,1e-05,-0}', '[(5e-324,1.7976931348623157e+308),(-1e-300,1e+300)]', '(1,1),(1,1)', '((1.2345678901234568e+17,0.1),(0.3333333333333333,2))', '((1,1),(1,1),(1,1),(1,1))', '<(NaN,Infinity),Infinity>',
  '(,0)', '(0,)', '(-0.001,100)', '(,2000-01-01)', '(-infinity,infinity)', '[2000-01-01 00:00+00,)',
  '{[-2147483648,2147483647)}', '{[-9223372036854775808,9223372036854775807)}', '{[0.000000000000000000001,1e20)}', '{[0044-03-15 BC,0045-01-01)}', '{["0001-01-01 00:00 BC","1583-01-01 00:00:00.5")}', '{[-infinity,infinity]}',
  NULL, NULL, NULL),
 (4, '(12345.678,-98765.4321)', '{3,4,5}', '[(1,2),(3,4)]', '(0.1,0.2),(0.01,0.02)', '[(0.1,0.2),(0.3,0.4),(1e-10,1e10)]', '((-1,-1),(1,1),(0,2))', '<(1e-20,1e20),1e-07>',
  '[5,6)', '[1,2)', '[1e-20,1e20]', '[0044-03-15 BC,0045-01-01)', '["0044-03-15 12:00:00 BC","294276-12-31 23:59:59.999999")', '["4713-11-24 00:00:00+00 BC","1969-12-31 23:59:59.999999+00"]',
  '{[1,2),[3,4),[5,6)}', '{}', '{}', '{}', '{}', '{}', '{"(NaN,-Infinity)"}', '{(0,0),(0,0)}', '{"[,\"2000-01-01 00:00:00+00\")"}'),
 (5, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
"#;

/// 400 rows of random doubles (magnitudes 1e-300..1e300, full 52-bit mantissas, integers up to
/// 2^62, exact quarters) through every geometric constructor, and random numeric/date/timestamp ranges (microseconds, centuries).
const GEO_RANGE_RANDOM_ROWS: &str = r#"
INSERT INTO geo_ranges (id, c_point, c_lseg, c_box, c_circle, c_line, c_path, c_polygon,
                        c_numrange, c_daterange, c_tsrange, c_tstzrange, c_point_arr)
SELECT 1000 + i, point(a, b), lseg(point(a, b), point(c, d)), box(point(a, b), point(c, d)),
       circle(point(a, b), abs(c)), line(point(e, f), point(e + 1 + abs(g), h)),
       path(polygon(3, circle(point(e, f), abs(g) + 1e-3))), polygon(4, circle(point(g, h), abs(e) + 1e-3)),
       numrange(least(n1, n2), greatest(n1, n2), '[]'),
       daterange(least(t1, t2)::date, greatest(t1, t2)::date),
       tsrange(least(t1, t2), greatest(t1, t2), '(]'),
       tstzrange(least(t1, t2)::timestamptz, greatest(t1, t2)::timestamptz),
       ARRAY[point(e, h), point(round(random() * 2 ^ 62), round((random() - 0.5) * 10 ^ (random() * 20)) / 4)]
FROM (SELECT i,
        (random() - 0.5) * 10 ^ (random() * 600 - 300) AS a,
        (random() - 0.5) * 10 ^ (random() * 600 - 300) AS b,
        (random() - 0.5) * 10 ^ (random() * 40 - 20) AS c,
        random() * 10 ^ (random() * 32 - 16) AS d,
        (random() - 0.5) * 10 ^ (random() * 20 - 10) AS e,
        (random() - 0.5) * 10 ^ (random() * 20 - 10) AS f,
        (random() - 0.5) * 10 ^ (random() * 20 - 10) AS g,
        random() * 2 ^ (random() * 64 - 32) AS h,
        round(((random() - 0.5) * 1e12)::numeric, (random() * 12)::int) AS n1,
        round(((random() - 0.5) * 1e6)::numeric, (random() * 12)::int) AS n2,
        timestamp '2000-01-01' + (random() - 0.5) * interval '3000000 days' AS t1,
        timestamp '2000-01-01' + (random() - 0.5) * interval '300000 days' AS t2
      FROM generate_series(1, 400) AS i OFFSET 0) AS s;
"#;

fn unhex(h: &str) -> Vec<u8> {
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).expect("hex from encode()"))
        .collect()
}

/// The model's value from each column's binary send form (`<typsend>(col)`, the function
/// pgoutput and binary COPY call) equals its value from the server's text (`col::text`, in the
/// source's session settings), for every value of [`GEO_RANGE_ROWS`] and
/// [`GEO_RANGE_RANDOM_ROWS`]; the Utf8 text is the server's, byte for byte.
#[test]
fn geometric_and_range_binary_values_equal_server_text() {
    use arrow_array::cast::AsArray;
    use tidemark_model::{pg_types, ColumnBuilder, SourceType};

    if !pg_enabled("geometric_and_range_binary_values_equal_server_text") {
        return;
    }
    let db = TestDb::create("tm_geobin");
    psql(&db.name, GEO_RANGE_TABLE);
    psql(&db.name, GEO_RANGE_ROWS);
    psql(&db.name, GEO_RANGE_RANDOM_ROWS);
    let columns = psql(
        &db.name,
        "SELECT a.attname, a.atttypid, t.typsend FROM pg_attribute a \
         JOIN pg_type t ON t.oid = a.atttypid \
         WHERE a.attrelid = 'geo_ranges'::regclass AND a.attnum > 1 AND NOT a.attisdropped \
         ORDER BY a.attnum",
    );
    let mut checked = 0;
    for column in columns.lines() {
        let f: Vec<&str> = column.split('|').collect();
        let (name, type_oid, send) = (f[0], f[1].parse().expect("oid"), f[2]);
        let t = SourceType::pg_builtin(type_oid, -1).expect("a builtin type");
        let data_type = pg_types::arrow_type(&t);
        assert!(
            ColumnBuilder::new(&t, &data_type, 0).binary_supported(),
            "{name}"
        );
        // The walsender's settings (src/source/postgres/wire.rs).
        let rows = psql(
            &db.name,
            &format!(
                "SET extra_float_digits = 3; SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'; \
                 SELECT id, encode({send}({name}), 'hex'), {name}::text FROM geo_ranges \
                 WHERE {name} IS NOT NULL ORDER BY id"
            ),
        );
        for row in rows.lines() {
            let mut f = row.splitn(3, '|');
            let (id, hex, text) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
            let mut from_binary = ColumnBuilder::new(&t, &data_type, 1);
            if let Err(e) = from_binary.append_binary(&unhex(hex)) {
                panic!("{name} id {id:?} ({text}): {e}");
            }
            let mut from_text = ColumnBuilder::new(&t, &data_type, 1);
            from_text.append_text(text.as_bytes()).expect("text form");
            let (b, t) = (from_binary.finish(), from_text.finish());
            assert_eq!(&b, &t, "{name} id {id:?}: the server printed {text}");
            if let Some(s) = b.as_string_opt::<i32>() {
                assert_eq!(s.value(0), text, "{name} id {id:?}");
            }
            checked += 1;
        }
    }
    // 22 columns × 4 non-NULL hand-picked rows (3 for the arrays) + 12 columns × 400 random.
    assert!(
        checked >= 19 * 4 + 3 * 3 + 12 * 400,
        "{checked} values checked"
    );
}

/// The same values through two live pipelines, pgoutput text format and binary format: an
/// initial snapshot (binary COPY in both), then inserts, updates and deletes streamed. The
/// outputs are identical, and each snapshot row equals the streamed copy of the same values.
/// (The Debezium JSON has point as a struct and ranges/multiranges as their text; Debezium drops
/// line, lseg, box, path, polygon and circle, and so does our encoder: those are compared by
/// `geometric_and_range_binary_values_equal_server_text`.)
#[test]
fn geometric_and_range_binary_format_match_text_format() {
    if !pg_enabled("geometric_and_range_binary_format_match_text_format") {
        return;
    }
    let db = TestDb::create("tm_geopipe");
    psql(&db.name, GEO_RANGE_TABLE);
    psql(&db.name, GEO_RANGE_ROWS);
    let mut pipelines = Vec::new();
    for extra in ["", "binary = true"] {
        let mut spec = PipelineSpec::new(&db.name, &["public.geo_ranges"]);
        spec.source_extra = extra.into();
        let mut p = Pipeline::new(spec);
        p.start();
        pipelines.push(p);
    }
    // Streamed: a copy of every hand-picked row (ids 11..15), the random rows, updates, deletes.
    psql(
        &db.name,
        "INSERT INTO geo_ranges SELECT id + 10, c_point, c_line, c_lseg, c_box, c_path, \
         c_polygon, c_circle, c_int4range, c_int8range, c_numrange, c_daterange, c_tsrange, \
         c_tstzrange, c_int4multirange, c_int8multirange, c_nummultirange, c_datemultirange, \
         c_tsmultirange, c_tstzmultirange, c_point_arr, c_box_arr, c_tstzrange_arr \
         FROM geo_ranges WHERE id <= 5 ORDER BY id",
    );
    psql(&db.name, GEO_RANGE_RANDOM_ROWS);
    psql(
        &db.name,
        "UPDATE geo_ranges SET c_point = '(-1e-07,3e+300)', c_tstzrange = '(,\"2030-01-01 00:00:00.25+00\"]', \
         c_numrange = '(-1.5,)' WHERE id IN (11, 15)",
    );
    psql(&db.name, "DELETE FROM geo_ranges WHERE id IN (12, 1001)");
    // Snapshot, inserts, random rows, updates, deletes with their tombstones.
    let n = 5 + 5 + 400 + 2 + 2 * 2;
    let text = records(&pipelines[0].wait_lines(n, Duration::from_secs(90)));
    let binary = records(&pipelines[1].wait_lines(n, Duration::from_secs(90)));
    let options = DiffOptions::run_dependent().ignore(["value.source.db"]);
    let report = diff(&text, &binary, &options);
    assert_clean("binary vs text", &report, &text, &binary);
    // Snapshot row k (binary COPY) against the streamed row k + 10 (pgoutput text).
    let after = |id: i64| {
        let r = text
            .iter()
            .find(|r| r.value["after"]["id"] == id)
            .unwrap_or_else(|| panic!("row {id} in the output"));
        let mut a = r.value["after"].clone();
        a.as_object_mut().expect("after").remove("id");
        a
    };
    for id in 1..=5 {
        assert_eq!(after(id), after(id + 10), "snapshot row {id}");
    }
    assert_eq!(
        text.iter().filter(|r| r.value["op"] == "r").count(),
        5,
        "snapshot rows"
    );
    for p in &mut pipelines {
        assert_eq!(
            p.stop().map(|s| s.success()),
            Some(true),
            "{}",
            p.log_text()
        );
    }
}

/// User-defined ranges (over float8, over a domain, over text with a collation), a multirange,
/// enums, domains, composites nesting composites, ranges, arrays, enums and domains, a domain
/// over a composite, and arrays of all of them.
const USER_TYPES: &str = r#"
CREATE TYPE floatrange AS RANGE (subtype = float8);
CREATE DOMAIN posint AS int4 CHECK (VALUE > 0);
CREATE TYPE posrange AS RANGE (subtype = posint);
CREATE TYPE textrange AS RANGE (subtype = text, collation = "C");
CREATE TYPE mood AS ENUM ('sad', 'so so', 'happy');
CREATE TYPE inner_t AS (a int, b text, m mood, d posint, gone int);
ALTER TYPE inner_t DROP ATTRIBUTE gone;
CREATE TYPE outer_t AS (i inner_t, r floatrange, arr int[], t timestamptz, mo money, iv interval,
                        f4 real, n numeric, tr textrange, ia inner_t[], bx box, tags text[],
                        d date, ms mood[]);
CREATE DOMAIN outer_d AS outer_t;
CREATE TABLE utypes (
  id int PRIMARY KEY,
  fr floatrange, fra floatrange[], frm floatmultirange, frma floatmultirange[],
  pr posrange, tr textrange, i inner_t, o outer_t, od outer_d, oa outer_t[], oda outer_d[]
);
"#;

/// Edge values: empty strings, spaces, quotes, backslashes, parentheses and commas in text
/// fields; NULL fields, NULL array elements, empty and unbounded ranges, float8 `-0`, `NaN`,
/// `±Infinity`, tiny and huge floats, BC dates, negative intervals and money.
const USER_TYPE_ROWS: &str = r#"
INSERT INTO utypes VALUES
 (1, '[1.5,2)', '{"[1,2)",empty,NULL}', '{[1,2),[3,4]}', '{"{[1,2)}","{}",NULL}',
  '[1,10)', '["a b","z\"]")', ROW(1, '', 'so so', 5),
  ROW(ROW(1, 'a b', 'sad', 1), '(,)', '{1,NULL,3}', '2020-01-01 00:00:00.5+00', '-1234.56',
      '1 year -2 mons 3 days -04:05:06.5', 1234567, 'NaN', '["",)',
      ARRAY[ROW(NULL, '', NULL, NULL)::inner_t, NULL], '(1,2),(0,0)', '{"a,b","","NULL",NULL}',
      '0044-03-15 BC', '{happy,"so so"}'),
  ROW(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  ARRAY[ROW(ROW(2, 'x"y\z', 'happy', 2), 'empty', '{}', '-infinity', '0', '0', '-0', 1e-20,
            '(a,b]', '{}', '(0,0),(0,0)', '{}', 'infinity', '{}')::outer_t, NULL],
  '{}'),
 (2, 'empty', '{}', '{}', '{}', 'empty', 'empty', ROW(NULL, NULL, NULL, NULL),
  ROW(ROW(NULL, ' ', NULL, NULL), '[-0,1e+300]', NULL, NULL, NULL, NULL, 'Infinity', NULL,
      NULL, NULL, NULL, NULL, NULL, NULL),
  NULL, NULL,
  ARRAY[NULL::outer_d]),
 (3, '(-Infinity,NaN]', NULL, '{(,0],[1e-300,1e-299)}', NULL, '(,)', '(,"(x)")',
  ROW(-2147483648, E'tab\there\nnewline', 'happy', 2147483647),
  NULL, ROW(ROW(7, '(,)', 'sad', 7), '[0.1,0.30000000000000004)', '{{1,2},{3,4}}',
            '1999-12-31 23:59:59.999999+00', '92233720368547758.07', '-00:00:00.000001',
            '3.4028235e38', -1.5e-10, '[A,a)', NULL, NULL, '{"\\","\""}', NULL, '{}')::outer_d,
  '{}', NULL),
 (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
"#;

/// 200 rows of random values through every column that takes them.
const USER_TYPE_RANDOM_ROWS: &str = r#"
INSERT INTO utypes (id, fr, frm, pr, tr, i, o, oa)
SELECT 1000 + i, floatrange(least(a, b), greatest(a, b)),
       floatmultirange(floatrange(least(a, b), greatest(a, b)), floatrange(greatest(a, b) + abs(c) + 1, NULL)),
       posrange(1 + (random() * 1000)::int, 2000 + (random() * 1e6)::int, '[]'),
       textrange(least(s1 COLLATE "C", s2), greatest(s1 COLLATE "C", s2), '(]'),
       ROW((random() * 2e9 - 1e9)::int, s1, (ARRAY['sad', 'so so', 'happy'])[1 + i % 3]::mood, 1 + i)::inner_t,
       ROW(ROW(i, s2, NULL, NULL)::inner_t, floatrange(least(c, d), greatest(c, d), '(]'),
           ARRAY[i, -i], t, round(((random() - 0.5) * 1e12)::numeric, 2)::money,
           (random() - 0.5) * 1e9 * interval '1 second' + (i % 40 - 20) * interval '1 month',
           c::real, round((d * 1e9)::numeric, (i % 12)), textrange(NULL, s1),
           ARRAY[ROW(i, s1, NULL, NULL)::inner_t], box(point(a, b), point(c, d)), ARRAY[s1, s2],
           t::date, NULL)::outer_t,
       ARRAY[ROW(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)::outer_t]
FROM (SELECT i,
        (random() - 0.5) * 10 ^ (random() * 600 - 300) AS a,
        (random() - 0.5) * 10 ^ (random() * 600 - 300) AS b,
        (random() - 0.5) * 10 ^ (random() * 40 - 20) AS c,
        random() * 10 ^ (random() * 32 - 16) AS d,
        timestamptz '2000-01-01 00:00+00' + (random() - 0.5) * interval '3000000 days' AS t,
        (ARRAY['', ' ', 'a', 'a b', 'x"y', 'back\slash', '(p)', 'c,d', 'é', 'NULL'])[1 + (random() * 9)::int]
          || repeat('z', (random() * 3)::int) AS s1,
        md5(random()::text) AS s2
      FROM generate_series(1, 200) AS i OFFSET 0) AS s;
"#;

const USER_TYPE_COLUMNS: &str = "fr, fra, frm, frma, pr, tr, i, o, od, oa, oda";

/// The model's value from each column's binary send form (`<typsend>(col)`: what pgoutput and
/// binary COPY send) equals its value from the server's text (`col::text`), byte for byte, with
/// the column types as the source resolves them from the catalog.
#[tokio::test(flavor = "multi_thread")]
async fn user_types_binary_values_equal_server_text() {
    use arrow_array::cast::AsArray;
    use tidemark::source::postgres::config::PgConnectConfig;
    use tidemark::source::postgres::config::TlsMode;
    use tidemark::source::postgres::control::PgControl;
    use tidemark_model::{ColumnBuilder, TableId};

    if !pg_enabled("user_types_binary_values_equal_server_text") {
        return;
    }
    let db = TestDb::create("tm_ubin");
    psql(&db.name, USER_TYPES);
    psql(&db.name, USER_TYPE_ROWS);
    psql(&db.name, USER_TYPE_RANDOM_ROWS);
    let mut cfg = PgConnectConfig::new("127.0.0.1", "postgres", db.name.clone());
    cfg.tls = TlsMode::Disable;
    let control = PgControl::connect(&cfg).await.expect("connect");
    let oid: u32 = control
        .client
        .query_one("SELECT 'utypes'::regclass::oid", &[])
        .await
        .expect("oid")
        .get(0);
    let catalog = control.relation_catalog(oid).await.expect("catalog");
    let schema = tidemark::source::postgres::snapshot_plan::schema_of(
        &TableId::new("public", "utypes"),
        &catalog,
    );
    let mut checked = 0;
    for column in USER_TYPE_COLUMNS.split(", ") {
        let col = &schema.columns[schema.column_index(column).expect("column")];
        assert!(col.source_type.is_structured(), "{column}");
        let send = psql(
            &db.name,
            &format!(
                "SELECT t.typsend FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
                      WHERE a.attrelid = 'utypes'::regclass AND a.attname = '{column}'"
            ),
        );
        let rows = psql(
            &db.name,
            &format!(
                "SET extra_float_digits = 3; SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'; \
                 SET IntervalStyle = postgres; \
                 SELECT id, encode({}({column}), 'hex'), \
                        encode(convert_to({column}::text, 'UTF8'), 'hex') FROM utypes \
                 ORDER BY id",
                send.trim()
            ),
        );
        for row in rows.lines() {
            let mut f = row.splitn(3, '|');
            let (id, hex, text) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
            // Not `WHERE col IS NOT NULL`: that is false for a composite with a NULL field.
            if hex.is_empty() {
                continue;
            }
            // Hex: the text may hold newlines.
            let text = String::from_utf8(unhex(text)).expect("UTF-8");
            let mut from_binary = ColumnBuilder::new(&col.source_type, &col.data_type, 1);
            assert!(from_binary.binary_supported(), "{column}");
            if let Err(e) = from_binary.append_binary(&unhex(hex)) {
                panic!("{column} id {id:?} ({text}): {e}");
            }
            let b = from_binary.finish();
            assert_eq!(b.as_string::<i32>().value(0), text, "{column} id {id:?}");
            checked += 1;
        }
    }
    // 11 columns with 1..3 hand-picked rows each, and 200 random rows in 6 of them.
    assert!(checked >= 20 + 6 * 200, "{checked} values checked");
}

/// The same user-typed values through two live pipelines, pgoutput text and binary format: the
/// initial snapshot (binary COPY), then inserts, updates and deletes streamed, and a composite
/// type altered mid-stream (`ADD ATTRIBUTE` of a builtin and of an enum, `DROP ATTRIBUTE`: no
/// Relation message follows, so the binary pipeline renders by the OIDs on the wire and
/// re-reads the catalog once). The outputs are identical, and each snapshot row equals the
/// streamed copy of the same values.
#[test]
fn user_types_binary_format_match_text_format() {
    if !pg_enabled("user_types_binary_format_match_text_format") {
        return;
    }
    let db = TestDb::create("tm_upipe");
    psql(&db.name, USER_TYPES);
    psql(&db.name, USER_TYPE_ROWS);
    // Read now: after the ALTER TYPEs below the server prints stored values differently.
    let server_o1 = psql(
        &db.name,
        "SET extra_float_digits = 3; SELECT o::text FROM utypes WHERE id = 1",
    );
    let mut pipelines = Vec::new();
    for extra in ["", "binary = true"] {
        let mut spec = PipelineSpec::new(&db.name, &["public.utypes"]);
        spec.source_extra = extra.into();
        let mut p = Pipeline::new(spec);
        p.start();
        pipelines.push(p);
    }
    let cols = USER_TYPE_COLUMNS;
    psql(
        &db.name,
        &format!("INSERT INTO utypes SELECT id + 10, {cols} FROM utypes WHERE id <= 4 ORDER BY id"),
    );
    psql(&db.name, USER_TYPE_RANDOM_ROWS);
    psql(
        &db.name,
        "UPDATE utypes SET i = ROW(9, 'upd ated', 'happy', 9), fr = '[3,4]' WHERE id IN (11, 13); \
         DELETE FROM utypes WHERE id IN (12, 1001)",
    );
    // Altered under the running pipelines: a builtin attribute, an attribute of a type the
    // catalog read at the start does not know (the binary pipeline reconnects once to re-read
    // it), and a dropped attribute (the others move).
    psql(
        &db.name,
        "ALTER TYPE inner_t ADD ATTRIBUTE extra int8; \
         INSERT INTO utypes (id, i, o) VALUES (100, ROW(1, 'x', 'sad', 1, 42), \
           ROW(ROW(2, 'y', NULL, 2, -1), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)); \
         CREATE TYPE color AS ENUM ('red', 'dark blue'); \
         ALTER TYPE inner_t ADD ATTRIBUTE c color; \
         INSERT INTO utypes (id, i) VALUES (101, ROW(1, 'x', 'sad', 1, 42, 'dark blue')); \
         ALTER TYPE inner_t DROP ATTRIBUTE a; \
         INSERT INTO utypes (id, i, oa) VALUES (102, ROW('x', 'sad', 1, 42, 'red'), \
           ARRAY[ROW(ROW('z', NULL, NULL, 7, 'red'), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)::outer_t])",
    );
    // Snapshot, copies, random rows, updates, deletes with their tombstones, altered rows.
    let n = 4 + 4 + 200 + 2 + 2 * 2 + 3;
    let text = records(&pipelines[0].wait_lines(n, Duration::from_secs(90)));
    let binary = records(&pipelines[1].wait_lines(n, Duration::from_secs(90)));
    let options = DiffOptions::run_dependent().ignore(["value.source.db"]);
    let report = diff(&text, &binary, &options);
    assert_clean("binary vs text", &report, &text, &binary);
    let after = |id: i64| {
        let r = text
            .iter()
            .find(|r| r.value["after"]["id"] == id)
            .unwrap_or_else(|| panic!("row {id} in the output"));
        let mut a = r.value["after"].clone();
        a.as_object_mut().expect("after").remove("id");
        a
    };
    for id in 1..=4 {
        assert_eq!(after(id), after(id + 10), "snapshot row {id}");
    }
    // The values are the server's text (one spot check per kind; the rest is the diff above
    // and `user_types_binary_values_equal_server_text`).
    assert_eq!(after(1)["o"].as_str(), Some(server_o1.as_str()));
    assert_eq!(
        after(101)["i"].as_str(),
        Some("(1,x,sad,1,42,\"dark blue\")")
    );
    assert_eq!(after(102)["i"].as_str(), Some("(x,sad,1,42,red)"));
    // The `color` attribute was unknown to the catalog read at the start: one reconnect.
    assert!(
        pipelines[1]
            .log_text()
            .contains("reconnecting to re-read it"),
        "{}",
        pipelines[1].log_text()
    );
    for p in &mut pipelines {
        assert_eq!(
            p.stop().map(|s| s.success()),
            Some(true),
            "{}",
            p.log_text()
        );
    }
}
