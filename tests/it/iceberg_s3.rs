//! The Iceberg sink on S3-compatible object storage: a PostgreSQL → Iceberg mirror whose
//! warehouse is `s3://…` on a real S3 API server (moto's standalone server from PyPI,
//! `scripts/s3-server.sh`), with the SQLite catalog. A workload of inserts, updates, deletes
//! and a kill -9: the table read back by iceberg-rust through the same storage settings equals
//! PostgreSQL, its files are objects in the bucket, and nothing lands on the local disk.
//! Gated by `TIDEMARK_TEST_ICEBERG=1`.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::iceberg_support::{self as ice, SinkSpec};
use crate::s3_support::S3Server;
use crate::support::{psql, TestDb};

const BUCKET: &str = "tm-iceberg-s3";
const KEY_ENV: &str = "TM_IT_S3_KEY";
const SECRET_ENV: &str = "TM_IT_S3_SECRET";

/// The sink's config with the S3 storage settings (for reading the table back).
fn config(catalog_db: &Path, endpoint: &str) -> tidemark_iceberg::IcebergSinkConfig {
    let mut cfg = tidemark_iceberg::IcebergSinkConfig::sqlite(
        &catalog_db.display().to_string(),
        &format!("s3://{BUCKET}/wh"),
    );
    cfg.namespace = Some("lake".into());
    cfg.storage.endpoint = Some(endpoint.to_owned());
    cfg.storage.region = Some("us-east-1".into());
    cfg.storage.access_key_id = Some(tidemark_iceberg::config::Secret::Env(KEY_ENV.into()));
    cfg.storage.secret_access_key = Some(tidemark_iceberg::config::Secret::Env(SECRET_ENV.into()));
    cfg.storage.path_style = true;
    cfg
}

/// `id|tx|i4` of every row of the lake table as iceberg-rust's scan reads it, sorted.
async fn lake_rows(cfg: &tidemark_iceberg::IcebergSinkConfig) -> Option<Vec<String>> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int32Type, Int64Type};
    use arrow_array::Array;
    let catalog = tidemark_iceberg::Catalog::connect(&cfg.catalog, &cfg.storage)
        .await
        .expect("catalog");
    let ident = tidemark_iceberg::TableIdent {
        namespace: "lake".into(),
        name: "t".into(),
    };
    let t = catalog.load(&ident).await.expect("load")?;
    let batches = tidemark_iceberg::maintenance::scan_all(&catalog, &t)
        .await
        .expect("iceberg-rust scan over S3");
    let mut out = Vec::new();
    for b in &batches {
        let id = b.column_by_name("id")?.as_primitive::<Int64Type>();
        let tx = b.column_by_name("tx")?.as_string::<i32>();
        let i4 = b.column_by_name("i4")?.as_primitive::<Int32Type>();
        for i in 0..b.num_rows() {
            out.push(format!(
                "{}|{}|{}",
                id.value(i),
                if tx.is_null(i) { "<null>" } else { tx.value(i) },
                if i4.is_null(i) {
                    "<null>".to_owned()
                } else {
                    i4.value(i).to_string()
                }
            ));
        }
    }
    out.sort();
    Some(out)
}

fn pg_rows(db: &str) -> Vec<String> {
    let mut out: Vec<String> = psql(
        db,
        "SELECT id || '|' || coalesce(tx, '<null>') || '|' || coalesce(i4::text, '<null>') FROM t",
    )
    .lines()
    .filter(|l| !l.is_empty())
    .map(str::to_owned)
    .collect();
    out.sort();
    out
}

async fn wait_equal(
    p: &mut crate::support::Pipeline,
    cfg: &tidemark_iceberg::IcebergSinkConfig,
    db: &str,
) -> usize {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let want = pg_rows(db);
        let got = lake_rows(cfg).await;
        if got.as_ref() == Some(&want) {
            return want.len();
        }
        if let Some(status) = p.try_wait() {
            panic!("tidemark exited ({status}):\n{}", p.log_text());
        }
        assert!(
            Instant::now() < deadline,
            "lake over S3 ({:?} rows) differs from PostgreSQL ({} rows)\n{}",
            got.as_ref().map(Vec::len),
            want.len(),
            ice::tail(&p.log_text(), 40)
        );
        std::thread::sleep(Duration::from_millis(700));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn iceberg_mirror_on_s3_storage_matches_source_across_kill9() {
    if !ice::enabled("iceberg_mirror_on_s3_storage_matches_source_across_kill9") {
        return;
    }
    let s3 = S3Server::start();
    s3.create_bucket(BUCKET);
    std::env::set_var(KEY_ENV, "tidemark-test-key");
    std::env::set_var(SECRET_ENV, "tidemark-test-secret");
    let db = TestDb::create("tm_ice_s3");
    psql(
        &db.name,
        "CREATE TABLE t (id bigint PRIMARY KEY, tx text, i4 integer, big text);",
    );
    let storage = format!(
        "{}\ncommit = {{ max_rows = 500, interval = \"300ms\" }}",
        ice::s3_storage_toml(&s3.endpoint, KEY_ENV, SECRET_ENV)
    );
    let (mut p, lake) = ice::pipeline(
        &db.name,
        &["public.t"],
        SinkSpec {
            mode: "mirror",
            extra: &storage,
            jsonl: false,
            pg_catalog: false,
        },
    );
    // The warehouse on S3 instead of the local directory.
    let toml = std::fs::read_to_string(&p.config).expect("config");
    let local = lake.warehouse.display().to_string();
    assert!(toml.contains(&local), "{toml}");
    std::fs::write(
        &p.config,
        toml.replace(&local, &format!("s3://{BUCKET}/wh")),
    )
    .expect("write config");
    let cfg = config(&lake.catalog_db, &s3.endpoint);
    p.start();
    psql(
        &db.name,
        "INSERT INTO t SELECT g, md5(g::text), g, CASE WHEN g % 5 = 0 THEN repeat(md5(g::text), 300) END FROM generate_series(1, 2000) g;",
    );
    psql(
        &db.name,
        "BEGIN; UPDATE t SET tx = 'u', i4 = NULL WHERE id % 3 = 0; DELETE FROM t WHERE id % 7 = 0; UPDATE t SET id = id + 100000 WHERE id % 11 = 0; COMMIT;",
    );
    let n = wait_equal(&mut p, &cfg, &db.name).await;
    assert!(n > 1000, "{n} rows");
    // kill -9, changes while it is down, restart: equal again, no key twice.
    psql(
        &db.name,
        "UPDATE t SET tx = 'before kill' WHERE id % 4 = 0;",
    );
    p.kill9();
    psql(
        &db.name,
        "DELETE FROM t WHERE id % 13 = 0; INSERT INTO t SELECT g, 'new', -g, NULL FROM generate_series(5000, 5300) g;",
    );
    p.start();
    let n = wait_equal(&mut p, &cfg, &db.name).await;
    eprintln!("iceberg on S3: {n} rows equal after a kill -9");
    p.stop();
    // The table's files are objects in the bucket; nothing of it is on the local disk.
    let keys = s3.keys(BUCKET);
    assert!(
        keys.iter()
            .any(|k| k.starts_with("wh/") && k.ends_with(".parquet")),
        "{keys:?}"
    );
    assert!(
        keys.iter().any(|k| k.ends_with(".metadata.json")),
        "{keys:?}"
    );
    assert!(
        !lake.warehouse.exists(),
        "files written to the local warehouse"
    );
}
