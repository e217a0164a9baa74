//! MariaDB → Iceberg mirror: a randomized workload (inserts, updates, primary-key changes,
//! deletes, a delete of every row) through the MySQL source into the Iceberg sink, then the
//! table as iceberg-rust's own scan reads it equals the MariaDB table, also after a kill -9
//! and restart. Gated by `TIDEMARK_TEST_ICEBERG=1` and `TIDEMARK_TEST_MYSQL=1`.

use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::Array;
use rand::SeedableRng;

use crate::iceberg_support::{self as ice, Lake};
use crate::mysql_support::{mysql_enabled, pipeline, random_txn, sql, MyDb, MySpec};

/// `id|v|n` lines of the MariaDB table, sorted by id.
fn mariadb_rows(db: &str) -> Vec<String> {
    sql(
        db,
        "SELECT id, COALESCE(v, '<null>'), COALESCE(n, -999999) FROM t ORDER BY id",
    )
    .lines()
    .filter(|l| !l.is_empty())
    .map(|l| l.replace('\t', "|"))
    .collect()
}

/// The same lines from the Iceberg table (iceberg-rust scan, deletes applied).
async fn lake_rows(lake: &Lake) -> Vec<String> {
    let mut out = Vec::new();
    for b in ice::iceberg_rust_rows(lake, "t").await {
        let id = b.column_by_name("id").expect("id");
        let v = b.column_by_name("v").expect("v");
        let n = b.column_by_name("n").expect("n");
        let v = arrow_cast::cast(v, &arrow_schema::DataType::Utf8).expect("v as text");
        let v = v.as_string::<i32>();
        let n = arrow_cast::cast(n, &arrow_schema::DataType::Int64).expect("n as long");
        let n = n.as_primitive::<Int64Type>();
        let id = arrow_cast::cast(id, &arrow_schema::DataType::Int32).expect("id as int");
        let id = id.as_primitive::<Int32Type>();
        for i in 0..b.num_rows() {
            out.push((
                id.value(i),
                format!(
                    "{}|{}|{}",
                    id.value(i),
                    if v.is_null(i) { "<null>" } else { v.value(i) },
                    if n.is_null(i) { -999999 } else { n.value(i) }
                ),
            ));
        }
    }
    out.sort();
    out.into_iter().map(|(_, l)| l).collect()
}

async fn wait_equal(p: &mut crate::support::Pipeline, lake: &Lake, db: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let want = mariadb_rows(db);
        let exists = lake.catalog_db.exists();
        let got = if exists {
            lake_rows(lake).await
        } else {
            Vec::new()
        };
        if exists && got == want {
            return;
        }
        if let Some(status) = p.try_wait() {
            panic!("tidemark exited ({status}):\n{}", p.log_text());
        }
        assert!(
            Instant::now() < deadline,
            "lake ({} rows) differs from MariaDB ({} rows): first lake {:?}, first MariaDB {:?}\n{}",
            got.len(),
            want.len(),
            got.iter().take(5).collect::<Vec<_>>(),
            want.iter().take(5).collect::<Vec<_>>(),
            ice::tail(&p.log_text(), 40)
        );
        std::thread::sleep(Duration::from_millis(700));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn iceberg_mirror_of_mariadb_matches_source() {
    if !ice::enabled("iceberg_mirror_of_mariadb_matches_source")
        || !mysql_enabled("iceberg_mirror_of_mariadb_matches_source")
    {
        return;
    }
    let db = MyDb::create("tm_ice_my");
    sql(
        &db.name,
        "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(40), n BIGINT, amount DECIMAL(12,3), \
         d DATE, ts DATETIME(6))",
    );
    let mut spec = MySpec::new(&db.name);
    // A second sink after the JSON one: the Iceberg mirror.
    let dir = std::env::temp_dir().join(format!("tm-ice-my-{}", crate::support::suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let lake = Lake {
        catalog_db: dir.join("catalog.db"),
        warehouse: dir.join("warehouse"),
        namespace: "lake".into(),
        pg_catalog: None,
    };
    spec.sink_extra = format!(
        "\n[[sinks]]\nkind = \"iceberg\"\nmode = \"mirror\"\nnamespace = \"lake\"\n\
         catalog = {{ kind = \"sql\", uri = \"{}\", warehouse = \"{}\" }}\n\
         commit = {{ max_rows = 2000, interval = \"300ms\" }}\n",
        lake.catalog_uri_sqlx(),
        lake.warehouse.display()
    );
    let mut p = pipeline(spec);
    p.start();
    let seed: u64 = rand::random();
    eprintln!("mariadb → iceberg seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut next = 1i64;
    for _ in 0..25 {
        sql(&db.name, &random_txn(&mut rng, &mut next));
    }
    wait_equal(&mut p, &lake, &db.name).await;
    let rows = mariadb_rows(&db.name).len();
    eprintln!("{rows} rows mirrored");
    assert!(rows > 0, "the workload left no rows to compare");
    // kill -9 mid-stream, more changes, restart: still equal, no duplicate keys.
    for _ in 0..10 {
        sql(&db.name, &random_txn(&mut rng, &mut next));
    }
    p.kill9();
    for _ in 0..10 {
        sql(&db.name, &random_txn(&mut rng, &mut next));
    }
    // Every row deleted (MariaDB's TRUNCATE is DDL the source does not turn into an event).
    sql(&db.name, "DELETE FROM t WHERE id % 2 = 0");
    p.start();
    wait_equal(&mut p, &lake, &db.name).await;
    sql(&db.name, "DELETE FROM t");
    sql(&db.name, &random_txn(&mut rng, &mut next));
    wait_equal(&mut p, &lake, &db.name).await;
    p.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
