//! The Iceberg sink on a real Iceberg REST catalog server (lakana-server from PyPI, started
//! per test by `scripts/iceberg-rest.sh` on a free port with its own SQLite metadata and
//! warehouse), PostgreSQL → Iceberg mirror, read back by pyiceberg's `RestCatalog` and by
//! iceberg-rust through the sink's REST client; and the same with the warehouse in a bucket of
//! moto's S3 server (lakana writes the metadata files there, the sink the data and manifests).
//!
//! Gated by `TIDEMARK_TEST_ICEBERG=1` (set by `make test`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use crate::iceberg_support::{self as ice, SinkSpec};
use crate::s3_support::S3Server;
use crate::support::{free_port, psql, TestDb};

/// One lakana-server, stopped on drop.
struct RestServer {
    port: u16,
    uri: String,
    prefix: String,
    token: String,
    /// The token in a file, for the pipeline's `token = { file = … }`.
    token_file: PathBuf,
    /// pyiceberg `RestCatalog` properties beyond uri/prefix/token (JSON): the S3 settings of
    /// an S3 warehouse, `{}` otherwise.
    py_props: String,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/iceberg-rest.sh")
}

impl RestServer {
    /// Starts a server whose state lives in `dir`, warehouse `dir/warehouse`.
    fn start(dir: &Path) -> RestServer {
        RestServer::start_with(dir, None)
    }

    /// Starts a server whose state lives in `dir` and whose warehouse is `root`
    /// (`s3://bucket/prefix`) on `s3` (signing with `S3_KEY`/`S3_SECRET`).
    fn start_on_s3(dir: &Path, root: &str, s3: &S3Server) -> RestServer {
        RestServer::start_with(dir, Some((root, s3)))
    }

    fn start_with(dir: &Path, s3_root: Option<(&str, &S3Server)>) -> RestServer {
        let port = free_port();
        let mut cmd = Command::new("bash");
        cmd.arg(script())
            .args(["start", &port.to_string()])
            .arg(dir);
        let mut py_props = "{}".to_string();
        if let Some((root, s3)) = s3_root {
            cmd.arg(root)
                .env("ICEBERG_REST_S3_ENDPOINT", &s3.endpoint)
                .env("ICEBERG_REST_S3_ACCESS_KEY_ID", S3_KEY)
                .env("ICEBERG_REST_S3_SECRET_ACCESS_KEY", S3_SECRET)
                .env("ICEBERG_REST_S3_REGION", "us-east-1");
            py_props = serde_json::json!({
                "s3.endpoint": s3.endpoint,
                "s3.access-key-id": S3_KEY,
                "s3.secret-access-key": S3_SECRET,
                "s3.region": "us-east-1",
            })
            .to_string();
        }
        let out = cmd.output().expect("run iceberg-rest.sh");
        assert!(
            out.status.success(),
            "iceberg-rest.sh start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .unwrap_or_else(|| panic!("no {k}= in {text}"))
                .to_string()
        };
        let token_file = dir.join("token");
        std::fs::write(&token_file, field("token")).expect("token file");
        RestServer {
            port,
            uri: field("uri"),
            prefix: field("prefix"),
            token: field("token"),
            token_file,
            py_props,
        }
    }

    /// The sink's (and source's) catalog block.
    fn catalog_toml(&self) -> String {
        format!(
            "catalog = {{ kind = \"rest\", uri = \"{}\", prefix = \"{}\", token = {{ file = \"{}\" }} }}",
            self.uri,
            self.prefix,
            self.token_file.display()
        )
    }

    fn catalog_config(&self) -> tidemark_iceberg::CatalogConfig {
        tidemark_iceberg::CatalogConfig::Rest(Box::new(tidemark_iceberg::RestCatalogConfig {
            uri: self.uri.clone(),
            warehouse: None,
            prefix: Some(self.prefix.clone()),
            token: Some(tidemark_iceberg::config::Secret::File(
                self.token_file.clone(),
            )),
            credential: None,
            oauth2_server_uri: None,
            scope: "catalog".into(),
            timeout: Duration::from_secs(30),
        }))
    }
}

impl Drop for RestServer {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .args(["stop", &self.port.to_string()])
            .output();
    }
}

/// pyiceberg's `RestCatalog` in place of the `SqlCatalog` of `scripts/iceberg_compare.py`
/// (same canonical values and comparison).
const REST_COMPARE: &str = r#"
import json, os, sys
sys.path.insert(0, sys.argv[1])
uri, prefix, token = sys.argv[2:5]
props = json.loads(os.environ.get("TM_REST_PROPS") or "{}")
import iceberg_compare
import pyiceberg.catalog.sql
from pyiceberg.catalog.rest import RestCatalog
pyiceberg.catalog.sql.SqlCatalog = lambda name, uri_=None, **kw: RestCatalog(name, uri=uri, prefix=prefix, token=token, **props)
sys.argv = ["iceberg_compare.py", "--catalog-uri", uri] + sys.argv[5:]
try:
    iceberg_compare.main()
except Exception as e:
    print(json.dumps({"error": "%s: %s" % (type(e).__name__, e)}))
"#;

fn compare(server: &RestServer, reader: &str, db: &str, table: &str) -> serde_json::Value {
    compare_in(server, NS, reader, db, table)
}

/// `compare` for the table `ns.table` of the catalog.
fn compare_in(
    server: &RestServer,
    ns: &str,
    reader: &str,
    db: &str,
    table: &str,
) -> serde_json::Value {
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts");
    let out = Command::new(ice::python())
        .arg("-c")
        .arg(REST_COMPARE)
        .env("TM_REST_PROPS", &server.py_props)
        .arg(&scripts)
        .args([&server.uri, &server.prefix, &server.token])
        .args(["--table", &format!("{ns}.{table}")])
        .args(["--reader", reader])
        .args([
            "--pg-dsn",
            &format!("host=127.0.0.1 user=postgres dbname={db}"),
        ])
        .args(["--pg-table", &format!("public.{table}")])
        .output()
        .expect("run the REST compare");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        serde_json::json!({"error": format!("{e}: {text} {}", String::from_utf8_lossy(&out.stderr))})
    })
}

fn wait_equal(
    p: &mut crate::support::Pipeline,
    server: &RestServer,
    db: &str,
    timeout: Duration,
) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    loop {
        let r = compare(server, "pyiceberg", db, "t");
        if r["equal"] == true {
            return r;
        }
        if let Some(status) = p.try_wait() {
            panic!(
                "tidemark exited ({status}); last compare {r}\n{}",
                p.log_text()
            );
        }
        assert!(
            Instant::now() < deadline,
            "not equal after {timeout:?}: {r}\n{}",
            ice::tail(&p.log_text(), 60)
        );
        std::thread::sleep(Duration::from_millis(700));
    }
}

/// The S3 warehouse test's bucket and the fixed key pair everyone signs with (moto accepts
/// any); the sink reads the pair from these environment variables.
const S3_BUCKET: &str = "tm-iceberg-rest-s3";
const S3_KEY: &str = "tidemark-test-key";
const S3_SECRET: &str = "tidemark-test-secret";
const S3_KEY_ENV: &str = "TM_IT_REST_S3_KEY";
const S3_SECRET_ENV: &str = "TM_IT_REST_S3_SECRET";

/// The namespace: lakana-server takes tables only under `bronze`, `silver` or `gold`.
const NS: &str = "bronze";

const CREATE: &str = "CREATE TABLE t (
  id bigint PRIMARY KEY, i4 integer, n numeric(12,3), f8 double precision, b boolean,
  tx text, d date, tstz timestamptz, u uuid, jb jsonb, ta text[], big text);
ALTER TABLE t ALTER COLUMN big SET STORAGE EXTERNAL;";

fn insert(lo: i64, hi: i64) -> String {
    format!(
        "INSERT INTO t SELECT g, (random()*2e9-1e9)::int4, round((random()*1e6)::numeric, 3),
           random()*1e10, random() > 0.5, md5(random()::text),
           date '2000-01-01' + (random()*10000)::int,
           timestamptz '2020-01-01 00:00+00' + random() * interval '1000 days',
           gen_random_uuid(), jsonb_build_object('k', g), ARRAY['x', md5(g::text)],
           CASE WHEN random() < 0.3 THEN repeat(md5(random()::text), 150) ELSE 'small' END
         FROM generate_series({lo}, {hi}) g;"
    )
}

/// Inserts, updates (TOAST unchanged), key changes, deletes, and all of them on the same
/// rows in one transaction.
/// kill -9 of `p` while `txns` random transactions of `round` run on another connection, then
/// four of `round + 1` while it is down (the caller restarts it).
fn kill9_under_load(
    p: &mut crate::support::Pipeline,
    db: &str,
    rng: &mut rand::rngs::StdRng,
    next_id: &mut i64,
    txns: usize,
    round: usize,
) {
    let mut batch = String::new();
    for _ in 0..txns {
        batch += &random_txn(rng, next_id, round);
    }
    let dbn = db.to_owned();
    let load_thread = std::thread::spawn(move || psql(&dbn, &batch));
    std::thread::sleep(Duration::from_millis(rng.gen_range(150..700)));
    p.kill9();
    load_thread.join().expect("workload thread");
    for _ in 0..4 {
        psql(db, &random_txn(rng, next_id, round + 1));
    }
}

fn random_txn(rng: &mut rand::rngs::StdRng, next_id: &mut i64, round: usize) -> String {
    let mut sql = String::from("BEGIN;");
    for _ in 0..rng.gen_range(1..4) {
        match rng.gen_range(0..100) {
            0..=34 => {
                let n = rng.gen_range(1..150);
                sql += &insert(*next_id, *next_id + n - 1);
                *next_id += n;
            }
            35..=59 => {
                let (k, r) = (rng.gen_range(3..9), rng.gen_range(0..3));
                sql += &format!(
                    "UPDATE t SET i4 = (random()*1000)::int, tx = md5(random()::text) WHERE id % {k} = {r};"
                );
            }
            60..=69 => {
                sql += &format!(
                    "UPDATE t SET id = id + 100000000 * {} WHERE id IN (SELECT id FROM t ORDER BY random() LIMIT 5);",
                    round + 1
                );
            }
            70..=84 => {
                sql += "DELETE FROM t WHERE id IN (SELECT id FROM t ORDER BY random() LIMIT 15);";
            }
            _ => {
                let lo = *next_id;
                sql += &insert(lo, lo + 9);
                sql += &format!(
                    "UPDATE t SET tx = 'changed' WHERE id BETWEEN {lo} AND {};",
                    lo + 5
                );
                sql += &format!("DELETE FROM t WHERE id BETWEEN {lo} AND {};", lo + 2);
                *next_id += 10;
            }
        }
    }
    sql + "COMMIT;"
}

/// The SQL catalog line and namespace of the shared pipeline config, made REST.
fn use_rest_catalog(p: &crate::support::Pipeline, server: &RestServer) {
    let toml = std::fs::read_to_string(&p.config).expect("config");
    let toml = toml
        .lines()
        .map(|l| {
            if l.starts_with("catalog = { kind = \"sql\"") {
                server.catalog_toml()
            } else if l.starts_with("namespace = ") {
                format!("namespace = \"{NS}\"")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&p.config, toml).expect("write config");
}

/// The table through the sink's REST client and iceberg-rust's scan.
async fn load(server: &RestServer) -> (tidemark_iceberg::Catalog, tidemark_iceberg::LoadedTable) {
    load_with(server, &Default::default()).await
}

/// `load` with the files on `storage`.
async fn load_with(
    server: &RestServer,
    storage: &tidemark_iceberg::config::StorageConfig,
) -> (tidemark_iceberg::Catalog, tidemark_iceberg::LoadedTable) {
    let catalog = tidemark_iceberg::Catalog::connect(&server.catalog_config(), storage)
        .await
        .expect("REST catalog");
    let t = catalog
        .load(&tidemark_iceberg::TableIdent {
            namespace: NS.into(),
            name: "t".into(),
        })
        .await
        .expect("load")
        .expect("the table exists");
    (catalog, t)
}

/// `tidemark.position` of every snapshot in commit order (maintenance snapshots have none).
fn positions(t: &tidemark_iceberg::LoadedTable) -> Vec<tidemark_model::Position> {
    let mut snaps: Vec<_> = t.metadata.snapshots().collect();
    snaps.sort_by_key(|s| s.sequence_number());
    snaps
        .iter()
        .filter_map(|s| {
            s.summary()
                .additional_properties
                .get(tidemark_iceberg::SUMMARY_POSITION)
        })
        .map(|p| p.parse().expect("a position"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn iceberg_rest_catalog_mirror_matches_source_and_resumes_exactly_once() {
    if !ice::enabled("iceberg_rest_catalog_mirror_matches_source_and_resumes_exactly_once") {
        return;
    }
    let db = TestDb::create("tm_ice_rest");
    psql(&db.name, CREATE);
    let (mut p, _) = ice::pipeline(
        &db.name,
        &["public.t"],
        SinkSpec {
            mode: "mirror",
            extra: "commit = { max_rows = 400, interval = \"200ms\" }",
            jsonl: false,
            pg_catalog: false,
        },
    );
    let server = RestServer::start(&p.dir.join("rest-catalog"));
    use_rest_catalog(&p, &server);

    let seed: u64 = std::env::var("TIDEMARK_TEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("iceberg REST workload seed {seed} (TIDEMARK_TEST_SEED to repeat)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut next_id = 301;
    p.start();
    psql(&db.name, &insert(1, 300));
    for _ in 0..8 {
        psql(&db.name, &random_txn(&mut rng, &mut next_id, 0));
    }
    // Schema evolution: add-schema + set-current-schema through the REST commit.
    psql(
        &db.name,
        "ALTER TABLE t ADD COLUMN extra integer; UPDATE t SET extra = 7 WHERE id % 4 = 0;",
    );
    for _ in 0..6 {
        psql(&db.name, &random_txn(&mut rng, &mut next_id, 1));
    }
    let r = wait_equal(&mut p, &server, &db.name, Duration::from_secs(120));
    eprintln!("before the restart, pyiceberg RestCatalog: {r}");

    // kill -9 while a workload runs, more changes while it is down, then resume.
    kill9_under_load(&mut p, &db.name, &mut rng, &mut next_id, 8, 2);
    p.start();
    let lo = next_id;
    psql(
        &db.name,
        &format!("BEGIN; TRUNCATE t; {} COMMIT;", insert(lo, lo + 199)),
    );
    next_id += 200;
    for _ in 0..6 {
        psql(&db.name, &random_txn(&mut rng, &mut next_id, 4));
    }
    let r = wait_equal(&mut p, &server, &db.name, Duration::from_secs(120));
    eprintln!("after kill -9 and restart, pyiceberg RestCatalog: {r}");
    assert_eq!(r["duplicates"], 0, "{r}");

    // iceberg-rust's scan through the sink's REST client sees the same keys.
    let (catalog, t) = load(&server).await;
    let rows = tidemark_iceberg::maintenance::scan_all(&catalog, &t)
        .await
        .expect("iceberg-rust scan");
    assert_eq!(
        ice::ids_of(&rows),
        ice::pg_ids(&db.name, "t"),
        "iceberg-rust sees other keys"
    );
    // Exactly once: every snapshot holds changes after the previous one's (a replayed
    // transaction committed again would repeat or go back).
    let pos = positions(&t);
    assert!(pos.len() > 3, "{} snapshots with positions", pos.len());
    assert!(
        pos.windows(2).all(|w| w[0] < w[1]),
        "snapshot positions not strictly increasing: {pos:?}"
    );
    assert!(
        t.metadata.location().starts_with("file://"),
        "server-assigned location {}",
        t.metadata.location()
    );
    p.stop();

    // Maintenance from the CLI through the REST catalog: compaction commits a `replace`
    // snapshot; expiry's `remove-snapshots` is refused by lakana-server's policy (403, a
    // definite error naming the server's reason) and changes nothing.
    ice::compact(&p);
    let before = load(&server).await.1.metadata.snapshots().count();
    let (ok, out) = ice::expire_all(&p);
    assert!(
        !ok && out.contains("HTTP 403") && out.contains("cannot remove snapshots"),
        "{out}"
    );
    assert_eq!(load(&server).await.1.metadata.snapshots().count(), before);
    for reader in ["pyiceberg", "polars", "duckdb"] {
        let r = compare(&server, reader, &db.name, "t");
        eprintln!("after compaction, {reader}: {r}");
        assert_eq!(r["equal"], true, "{reader} after compaction: {r}");
    }

    // A restart after maintenance resumes from the recorded position: nothing twice. Now with
    // automatic maintenance every 2 commits: lakana-server refuses the expiry after each
    // compaction (403), which must not stop the pipeline.
    let toml = std::fs::read_to_string(&p.config).expect("config");
    let toml = toml.replace(
        "commit = { max_rows = 400, interval = \"200ms\" }",
        "commit = { max_rows = 400, interval = \"200ms\" }\nmaintenance = { compact_every_snapshots = 2, max_snapshot_age = \"1ms\", keep_snapshots = 1 }",
    );
    assert!(toml.contains("compact_every_snapshots"), "{toml}");
    std::fs::write(&p.config, toml).expect("write config");
    p.start();
    for _ in 0..3 {
        psql(&db.name, &random_txn(&mut rng, &mut next_id, 5));
        std::thread::sleep(Duration::from_millis(500));
    }
    let r = wait_equal(&mut p, &server, &db.name, Duration::from_secs(90));
    assert_eq!(r["duplicates"], 0, "{r}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !p
        .log_text()
        .contains("snapshot expiry refused by the catalog")
    {
        assert!(
            Instant::now() < deadline && p.try_wait().is_none(),
            "no automatic compaction with a refused expiry:\n{}",
            ice::tail(&p.log_text(), 40)
        );
        psql(&db.name, &random_txn(&mut rng, &mut next_id, 5));
        std::thread::sleep(Duration::from_millis(500));
    }
    let r = wait_equal(&mut p, &server, &db.name, Duration::from_secs(90));
    assert_eq!(r["duplicates"], 0, "after automatic maintenance: {r}");
    p.stop();

    // The Iceberg source through the same REST catalog: `bronze.t`'s snapshots, replayed from
    // the first one into a second mirror `silver.t` (same catalog), end equal to PostgreSQL.
    let mut spec = crate::support::PipelineSpec::new(&db.name, &["public.t"]);
    spec.checkpoint_interval = "300ms".into();
    let mut b = crate::support::Pipeline::new(spec);
    let toml = format!(
        r#"[pipeline]
name = "it_back_{slot}"

[source]
kind = "iceberg"
table = "{NS}.t"
poll_interval = "200ms"
{catalog}

[[sinks]]
kind = "iceberg"
mode = "mirror"
namespace = "silver"
{catalog}
commit = {{ max_rows = 1000, interval = "200ms" }}

[checkpoint]
dir = "{cp}"
interval = "300ms"

[metrics]
listen = "127.0.0.1:{port}"
"#,
        slot = b.spec.slot,
        catalog = server.catalog_toml(),
        cp = b.dir.join("checkpoints").display(),
        port = b.metrics_port,
    );
    std::fs::write(&b.config, toml).expect("write config");
    b.start();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = compare_in(&server, "silver", "pyiceberg", &db.name, "t");
        if r["equal"] == true {
            eprintln!("Iceberg source over REST → silver.t: {r}");
            break;
        }
        if let Some(status) = b.try_wait() {
            panic!("source pipeline exited ({status}): {r}\n{}", b.log_text());
        }
        assert!(
            Instant::now() < deadline,
            "silver.t not equal: {r}\n{}",
            ice::tail(&b.log_text(), 60)
        );
        std::thread::sleep(Duration::from_millis(700));
    }
    b.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn iceberg_rest_catalog_conflict_and_errors() {
    if !ice::enabled("iceberg_rest_catalog_conflict_and_errors") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("tidemark-it-{}", crate::support::suffix()));
    let server = RestServer::start(&dir.join("rest-catalog"));
    let catalog = tidemark_iceberg::Catalog::connect(&server.catalog_config(), &Default::default())
        .await
        .expect("REST catalog");
    let ident = tidemark_iceberg::TableIdent {
        namespace: NS.into(),
        name: "c".into(),
    };
    assert!(catalog.load(&ident).await.expect("load").is_none());
    use tidemark_iceberg::iceberg::spec::{NestedField, PrimitiveType, Schema, Type};
    let schema = Schema::builder()
        .with_fields(vec![NestedField::required(
            1,
            "id",
            Type::Primitive(PrimitiveType::Long),
        )
        .into()])
        .with_identifier_field_ids(vec![1])
        .build()
        .expect("schema");
    let creation = || {
        tidemark_iceberg::iceberg::TableCreation::builder()
            .name("c".into())
            .schema(schema.clone())
            .build()
    };
    let t = catalog.create(&ident, creation()).await.expect("create");
    // Created twice: the second loads the first.
    let again = catalog
        .create(&ident, creation())
        .await
        .expect("create again");
    assert_eq!(again.metadata.uuid(), t.metadata.uuid());
    assert_eq!(catalog.list().await.expect("list"), vec![ident.clone()]);
    use tidemark_iceberg::iceberg::TableUpdate;
    let set = |k: &str| TableUpdate::SetProperties {
        updates: [(k.to_string(), "1".to_string())].into(),
    };
    let first = catalog.commit(&t, vec![set("a")]).await.expect("commit");
    assert_eq!(
        first.metadata.properties().get("a").map(String::as_str),
        Some("1")
    );
    assert_ne!(first.metadata_location, t.metadata_location);
    // A base whose `main` is not the server's (another writer moved it): the server's 409 is
    // the SQL catalog's lost compare-and-swap.
    let stale = |edit: &dyn Fn(&mut serde_json::Map<String, serde_json::Value>)| {
        let mut v = serde_json::to_value(&first.metadata).expect("metadata json");
        edit(v.as_object_mut().expect("object"));
        tidemark_iceberg::LoadedTable {
            ident: ident.clone(),
            metadata_location: first.metadata_location.clone(),
            metadata: serde_json::from_value(v).expect("metadata"),
        }
    };
    let moved = stale(&|m| {
        m.insert("current-snapshot-id".into(), 1.into());
        m.insert(
            "snapshots".into(),
            serde_json::json!([{"snapshot-id": 1, "sequence-number": 1, "timestamp-ms": 1,
                "summary": {"operation": "append"}, "manifest-list": "file:///nowhere.avro", "schema-id": 0}]),
        );
        m.insert(
            "refs".into(),
            serde_json::json!({"main": {"snapshot-id": 1, "type": "branch"}}),
        );
        m.insert("last-sequence-number".into(), 1.into());
    });
    let err = catalog
        .commit(&moved, vec![set("b")])
        .await
        .expect_err("main moved: conflict");
    assert!(
        matches!(err, tidemark_iceberg::IcebergError::Conflict { .. }),
        "{err}"
    );
    assert!(err.is_transient(), "{err}");
    // A base of another table that had the same name (dropped and created again).
    let replaced = stale(&|m| {
        m.insert(
            "table-uuid".into(),
            "00000000-0000-4000-8000-000000000000".into(),
        );
    });
    let err = catalog
        .commit(&replaced, vec![set("b")])
        .await
        .expect_err("another table: conflict");
    assert!(
        matches!(err, tidemark_iceberg::IcebergError::Conflict { .. }),
        "{err}"
    );
    let now = catalog.load(&ident).await.expect("load").expect("exists");
    assert_eq!(
        now.metadata_location, first.metadata_location,
        "nothing applied"
    );
    // A definite 4xx: a namespace the server refuses.
    let bad = tidemark_iceberg::TableIdent {
        namespace: "public".into(),
        name: "x".into(),
    };
    let err = catalog
        .create(&bad, creation())
        .await
        .expect_err("lakana refuses namespaces outside bronze/silver/gold");
    assert!(!err.is_transient(), "{err}");
    assert!(err.to_string().contains("HTTP 4"), "{err}");
    // A wrong token: 401, definite.
    std::fs::write(&server.token_file, "lakana_pat_0000000000000000_wrong").expect("token");
    let err =
        match tidemark_iceberg::Catalog::connect(&server.catalog_config(), &Default::default())
            .await
        {
            Ok(c) => c.load(&ident).await.expect_err("a wrong token is refused"),
            Err(e) => e,
        };
    assert!(err.to_string().contains("401"), "{err}");
    assert!(!err.is_transient(), "{err}");
}

/// The REST catalog with the warehouse on S3: lakana-server's environment rooted at
/// `s3://bucket/wh` on moto, which places the table there and writes each metadata.json to the
/// bucket itself; the sink writes data files and manifests with its own `storage` settings.
/// Inserts, updates, key changes, deletes, a kill -9 mid-workload with more changes while it is
/// down: pyiceberg's `RestCatalog` (S3 FileIO) and iceberg-rust's scan through the sink's REST
/// client both read what PostgreSQL has, and every file of the table is an object in the bucket.
#[tokio::test(flavor = "multi_thread")]
async fn iceberg_rest_catalog_with_s3_warehouse_matches_source_across_kill9() {
    if !ice::enabled("iceberg_rest_catalog_with_s3_warehouse_matches_source_across_kill9") {
        return;
    }
    let s3 = S3Server::start();
    s3.create_bucket(S3_BUCKET);
    std::env::set_var(S3_KEY_ENV, S3_KEY);
    std::env::set_var(S3_SECRET_ENV, S3_SECRET);
    let db = TestDb::create("tm_ice_rest_s3");
    psql(&db.name, CREATE);
    let extra = format!(
        "{}\ncommit = {{ max_rows = 400, interval = \"200ms\" }}",
        ice::s3_storage_toml(&s3.endpoint, S3_KEY_ENV, S3_SECRET_ENV)
    );
    let (mut p, lake) = ice::pipeline(
        &db.name,
        &["public.t"],
        SinkSpec {
            mode: "mirror",
            extra: &extra,
            jsonl: false,
            pg_catalog: false,
        },
    );
    let rest_dir = p.dir.join("rest-catalog");
    let server = RestServer::start_on_s3(&rest_dir, &format!("s3://{S3_BUCKET}/wh"), &s3);
    use_rest_catalog(&p, &server);

    let seed: u64 = std::env::var("TIDEMARK_TEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("iceberg REST on S3 workload seed {seed} (TIDEMARK_TEST_SEED to repeat)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut next_id = 301;
    p.start();
    psql(&db.name, &insert(1, 300));
    for _ in 0..6 {
        psql(&db.name, &random_txn(&mut rng, &mut next_id, 0));
    }
    let r = wait_equal(&mut p, &server, &db.name, Duration::from_secs(120));
    eprintln!("before the restart, pyiceberg RestCatalog on S3: {r}");

    // kill -9 while a workload runs, more changes while it is down, then resume.
    kill9_under_load(&mut p, &db.name, &mut rng, &mut next_id, 6, 1);
    p.start();
    for _ in 0..4 {
        psql(&db.name, &random_txn(&mut rng, &mut next_id, 3));
    }
    let r = wait_equal(&mut p, &server, &db.name, Duration::from_secs(120));
    eprintln!("after kill -9 and restart, pyiceberg RestCatalog on S3: {r}");
    assert_eq!(r["duplicates"], 0, "{r}");
    p.stop();

    // iceberg-rust's scan through the sink's REST client and S3 storage: the same keys.
    let storage = tidemark_iceberg::config::StorageConfig {
        endpoint: Some(s3.endpoint.clone()),
        region: Some("us-east-1".into()),
        access_key_id: Some(tidemark_iceberg::config::Secret::Env(S3_KEY_ENV.into())),
        secret_access_key: Some(tidemark_iceberg::config::Secret::Env(S3_SECRET_ENV.into())),
        path_style: true,
    };
    let (catalog, t) = load_with(&server, &storage).await;
    let rows = tidemark_iceberg::maintenance::scan_all(&catalog, &t)
        .await
        .expect("iceberg-rust scan over S3");
    assert_eq!(
        ice::ids_of(&rows),
        ice::pg_ids(&db.name, "t"),
        "iceberg-rust sees other keys"
    );
    let pos = positions(&t);
    assert!(
        pos.windows(2).all(|w| w[0] < w[1]),
        "snapshot positions not strictly increasing: {pos:?}"
    );
    let location = t.metadata.location().to_owned();
    let prefix = format!("s3://{S3_BUCKET}/wh/managed/{NS}/t-");
    assert!(
        location.starts_with(&prefix),
        "server-assigned location {location}"
    );

    // Every file of the table is an object in the bucket: the server's metadata.json files
    // (the current one included), the sink's data files and manifests; none on the local disk.
    let keys = s3.keys(S3_BUCKET);
    let dir = location[format!("s3://{S3_BUCKET}/").len()..].to_owned();
    let current = t.metadata_location.clone();
    assert!(
        keys.iter()
            .any(|k| k.starts_with(&format!("{dir}/data/")) && k.ends_with(".parquet")),
        "{keys:?}"
    );
    assert!(
        keys.iter()
            .filter(|k| k.ends_with(".metadata.json"))
            .count()
            > 2,
        "{keys:?}"
    );
    assert!(
        keys.iter().any(|k| k.ends_with(".avro")),
        "no manifests: {keys:?}"
    );
    assert!(
        keys.iter()
            .any(|k| current.ends_with(&format!("{S3_BUCKET}/{k}"))),
        "current metadata {current} not in the bucket: {keys:?}"
    );
    assert!(
        !lake.warehouse.exists() && !rest_dir.join("warehouse").exists(),
        "files written to a local warehouse"
    );
}
