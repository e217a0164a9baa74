//! The Delta sink on S3-compatible object storage: PostgreSQL → a Delta mirror and a Delta
//! changelog whose roots are `s3://…` on a real S3 API server (moto's standalone server from
//! PyPI, `scripts/s3-server.sh`), through delta-rs' AWS log store (the `delta-s3` feature;
//! commits by conditional PUT). Inserts, updates, deletes, a primary-key change and a kill -9
//! with changes while the engine is down: the mirror read back from S3 by the independent
//! reader (PyPI `deltalake`) equals PostgreSQL, its Change Data Feed is readable, the changelog
//! holds each change once (the exactly-once `txn` action is read back from S3 on restart),
//! every file is an object in the bucket and none is on the local disk.
//! Gated by `TIDEMARK_TEST_DELTA=1`.

use std::time::Duration;

use serde_json::{json, Value};

use super::delta_support::{
    col, delta_enabled, read_with_storage, source_rows, spec, DeltaPipeline,
};
use super::s3_support::S3Server;
use super::support::{psql, TestDb};

const BUCKET: &str = "tm-delta-s3";

/// A Delta sink TOML table rooted in the bucket.
fn s3_sink(name: &str, prefix: &str, mode: &str, storage: &str) -> String {
    format!(
        "[[sinks]]\nkind = \"delta\"\nname = \"{name}\"\nroot = \"s3://{BUCKET}/{prefix}\"\nmode = \"{mode}\"\n\
         flush = {{ interval = \"300ms\" }}\nstorage_options = {storage}\n"
    )
}

#[test]
fn delta_mirror_and_changelog_on_s3_match_source_across_kill9() {
    if !delta_enabled("delta_mirror_and_changelog_on_s3_match_source_across_kill9") {
        return;
    }
    let s3 = S3Server::start();
    s3.create_bucket(BUCKET);
    // The same options for the sink (TOML inline table) and the reader (JSON). moto accepts any
    // credentials; the clients still sign with them.
    let options = [
        ("AWS_ENDPOINT_URL", s3.endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "tidemark-test-key"),
        ("AWS_SECRET_ACCESS_KEY", "tidemark-test-secret"),
    ];
    let toml_options = format!(
        "{{ {} }}",
        options
            .iter()
            .map(|(k, v)| format!("{k} = \"{v}\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let json_options = Value::Object(
        options
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect(),
    )
    .to_string();

    let db = TestDb::create("tm_delta_s3");
    let d = &db.name;
    psql(
        d,
        "CREATE TABLE t (id bigint PRIMARY KEY, tx text, amount numeric(12,2), at timestamptz);",
    );
    let sinks = format!(
        "{}\n{}",
        s3_sink("mirror", "mirror", "mirror", &toml_options),
        s3_sink("log", "log", "changelog", &toml_options)
    );
    let mut p = DeltaPipeline::new(d, &["public.t"], &sinks);
    p.start();
    // Each statement is one transaction; its row count (RETURNING) is what the changelog holds
    // of it, by change type.
    let dml = |sql: &str| -> u64 {
        psql(
            d,
            &format!("WITH x AS ({sql} RETURNING 1) SELECT count(*) FROM x"),
        )
        .parse()
        .expect("row count")
    };
    let mut inserts = dml(
        "INSERT INTO t SELECT g, md5(g::text), g / 100.0, TIMESTAMPTZ '2024-01-01 00:00+00' + g * INTERVAL '1 minute' FROM generate_series(1, 3000) g",
    );
    // Updates that keep the key: a post-image only (REPLICA IDENTITY DEFAULT sends no old row).
    let mut updates = dml("UPDATE t SET tx = 'u', amount = NULL WHERE id % 3 = 0");
    let mut deletes = dml("DELETE FROM t WHERE id % 7 = 0");
    // A primary-key change: the old key is sent (a pre-image), and the mirror moves the row.
    let key_changes = dml("UPDATE t SET id = id + 100000 WHERE id % 11 = 0");
    p.wait_caught_up(Duration::from_secs(180));

    // kill -9, changes while the engine is down, restart: the commits already on S3 are not
    // applied twice (the `txn` action is read back from the table's log on the bucket).
    updates += dml("UPDATE t SET tx = 'before kill' WHERE id % 4 = 0");
    p.kill9();
    deletes += dml("DELETE FROM t WHERE id % 13 = 0");
    inserts += dml("INSERT INTO t SELECT g, 'new', -g, NULL FROM generate_series(5000, 5300) g");
    p.start();
    p.wait_caught_up(Duration::from_secs(180));
    p.stop();

    let cols = [
        col("id", "int"),
        col("tx", "text"),
        col("amount", "decimal"),
        col("at", "micros"),
    ];
    let storage = Some(json_options.as_str());
    let source = source_rows(d, "t", &cols);
    let mirror = read_with_storage(
        &[
            "rows",
            &format!("s3://{BUCKET}/mirror/public/t"),
            &spec(&cols),
        ],
        storage,
    );
    assert_eq!(
        mirror.as_array().map(Vec::len),
        source.as_array().map(Vec::len),
        "mirror on S3 vs source: row counts"
    );
    assert_eq!(mirror, source, "mirror on S3 vs source");
    // Delta's own change feed of the mirror is readable from S3 too.
    let cdf = read_with_storage(
        &[
            "cdf",
            &format!("s3://{BUCKET}/mirror/public/t"),
            &spec(&cols),
        ],
        storage,
    );
    let cdf_rows = cdf.as_array().map_or(0, Vec::len);
    assert!(cdf_rows >= 3000, "{cdf_rows} change feed rows");

    // The changelog: each change exactly once (a key change is two rows at one position).
    let log = read_with_storage(
        &["changelog", &format!("s3://{BUCKET}/log/public/t")],
        storage,
    );
    assert_eq!(
        log["by_type"],
        json!({
            "insert": inserts,
            "update_postimage": updates + key_changes,
            "update_preimage": key_changes,
            "delete": deletes,
        }),
        "changelog on S3: {log}"
    );
    assert_eq!(
        log["distinct_positions"],
        json!(inserts + updates + key_changes + deletes),
        "{log}"
    );

    // Every file is an object in the bucket; nothing of the tables is on the local disk.
    let keys = s3.keys(BUCKET);
    for prefix in ["mirror/public/t/", "log/public/t/"] {
        assert!(
            keys.iter()
                .any(|k| k.starts_with(prefix) && k.ends_with(".parquet")),
            "no data file under {prefix}: {keys:?}"
        );
        assert!(
            keys.iter()
                .any(|k| k.starts_with(&format!("{prefix}_delta_log/")) && k.ends_with(".json")),
            "no commit under {prefix}: {keys:?}"
        );
    }
    assert!(
        !p.dir.join("mirror").exists() && !p.dir.join("log").exists(),
        "files written to the local disk"
    );
    eprintln!(
        "delta on S3: {} rows equal, changelog {log}",
        mirror.as_array().map_or(0, Vec::len)
    );
}
