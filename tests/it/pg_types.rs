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

/// Columns whose binary send format the decoder does not read (geometric types and ranges):
/// with `binary = true` a table with them stops the pipeline with a definite error naming the
/// column (see `binary_format_unsupported_type_is_a_definite_error`).
const TEXT_ONLY_COLUMNS: &[&str] = &[
    "c_point",
    "c_line",
    "c_lseg",
    "c_box",
    "c_path",
    "c_polygon",
    "c_circle",
    "c_int4range",
    "c_numrange",
    "c_tsrange",
    "c_tstzrange",
    "c_daterange",
    "c_int8range",
];

/// The all-types workload through two pipelines at once, one asking pgoutput for the text
/// format and one for the binary format, on publications with a column list that leaves out
/// [`TEXT_ONLY_COLUMNS`]: both outputs are identical, and equal to Debezium's capture (with the
/// same columns left out).
#[test]
fn all_types_binary_format_match_text_format_and_debezium() {
    if !pg_enabled("all_types_binary_format_match_text_format_and_debezium") {
        return;
    }
    let fixture = Fixture::load("all_types_default");
    let db = TestDb::create("tm_bin");
    fixture.setup(&db.name);
    let columns: Vec<String> = psql(
        &db.name,
        "SELECT attname FROM pg_attribute WHERE attrelid = 'all_types_default'::regclass \
         AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
    )
    .lines()
    .filter(|c| !TEXT_ONLY_COLUMNS.contains(c))
    .map(str::to_string)
    .collect();
    let list = columns.join(", ");
    let mut pipelines = Vec::new();
    for (publication, extra) in [("txt_pub", ""), ("bin_pub", "binary = true")] {
        psql(
            &db.name,
            &format!("CREATE PUBLICATION {publication} FOR TABLE all_types_default ({list})"),
        );
        let mut spec = PipelineSpec::new(&db.name, &["public.all_types_default"]);
        spec.publication = publication.into();
        spec.source_extra = extra.into();
        let mut p = Pipeline::new(spec);
        p.start();
        pipelines.push(p);
    }
    fixture.workload(&db.name);
    let mut expected: Vec<_> = fixture
        .events
        .iter()
        .filter(|r| r.topic == "tm.public.all_types_default")
        .cloned()
        .collect();
    for r in &mut expected {
        for image in ["before", "after"] {
            if let Some(obj) = r.value.get_mut(image).and_then(|v| v.as_object_mut()) {
                obj.retain(|k, _| !TEXT_ONLY_COLUMNS.contains(&k.as_str()));
            }
        }
    }
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
    psql(&db.name, "CREATE TABLE g (id int PRIMARY KEY, p point)");
    let mut spec = PipelineSpec::new(&db.name, &["public.g"]);
    spec.source_extra = "binary = true".into();
    let mut p = Pipeline::new(spec);
    p.start();
    psql(&db.name, "INSERT INTO g VALUES (1, '(1,2)')");
    let status = p
        .wait_exit(Duration::from_secs(30))
        .expect("the pipeline stops");
    assert!(!status.success());
    let log = p.log_text();
    assert!(
        log.contains("public.g") && log.contains("column p (point)") && log.contains("text format"),
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
