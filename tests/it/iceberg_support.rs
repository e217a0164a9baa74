//! Helpers of the Iceberg integration tests: a pipeline from the real PostgreSQL into an
//! Iceberg sink (SQLite catalog, local warehouse under the pipeline's temp dir), and the
//! independent readers of `scripts/iceberg_compare.py` (pyiceberg, polars, DuckDB).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::support::{Pipeline, PipelineSpec};

/// True when the Iceberg tests should run (`make test` sets `TIDEMARK_TEST_ICEBERG=1`).
pub fn enabled(test: &str) -> bool {
    if std::env::var("TIDEMARK_TEST_ICEBERG").as_deref() == Ok("1") {
        true
    } else {
        eprintln!("skipping {test}: set TIDEMARK_TEST_ICEBERG=1 (make test does) to run it");
        false
    }
}

/// The lake-readers venv's python (set up once by `scripts/lake-readers.sh`).
pub fn python() -> &'static str {
    static PY: OnceLock<String> = OnceLock::new();
    PY.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/lake-readers.sh");
        let out = Command::new("bash")
            .arg(script)
            .output()
            .expect("run lake-readers.sh");
        assert!(
            out.status.success(),
            "lake-readers.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    })
}

/// Where a test's Iceberg sink keeps its catalog and warehouse.
#[derive(Clone, Debug)]
pub struct Lake {
    pub catalog_db: PathBuf,
    pub warehouse: PathBuf,
    pub namespace: String,
    /// A PostgreSQL catalog instead of the SQLite file: (sqlx URI, SQLAlchemy URI).
    pub pg_catalog: Option<(String, String)>,
}

impl Lake {
    pub fn catalog_uri_sqlx(&self) -> String {
        match &self.pg_catalog {
            Some((sqlx, _)) => sqlx.clone(),
            None => format!("sqlite://{}", self.catalog_db.display()),
        }
    }
    /// SQLAlchemy's form (pyiceberg).
    pub fn catalog_uri_sqlalchemy(&self) -> String {
        match &self.pg_catalog {
            Some((_, sa)) => sa.clone(),
            None => format!("sqlite:///{}", self.catalog_db.display()),
        }
    }

    /// The sink config pointing at this lake.
    pub fn config(&self) -> tidemark_iceberg::IcebergSinkConfig {
        let mut cfg = tidemark_iceberg::IcebergSinkConfig::sqlite(
            &self.catalog_db.display().to_string(),
            &self.warehouse.display().to_string(),
        );
        if let tidemark_iceberg::CatalogConfig::Sql(c) = &mut cfg.catalog {
            c.uri = self.catalog_uri_sqlx();
        }
        cfg
    }
}

/// What sink(s) the pipeline gets.
pub struct SinkSpec<'a> {
    pub mode: &'a str,
    /// Extra TOML lines inside the iceberg `[[sinks]]` table.
    pub extra: &'a str,
    /// Also a Debezium JSON sink into `Pipeline::out` (to compare a changelog against).
    pub jsonl: bool,
    /// Use the SQL catalog on PostgreSQL (in the test database) instead of SQLite.
    pub pg_catalog: bool,
}

/// The sink's `storage` line for moto's S3 server at `endpoint` (credentials from the
/// environment variables `key_env` / `secret_env`, path-style addressing).
pub fn s3_storage_toml(endpoint: &str, key_env: &str, secret_env: &str) -> String {
    format!(
        "storage = {{ endpoint = \"{endpoint}\", region = \"us-east-1\", access_key_id = {{ env = \"{key_env}\" }}, secret_access_key = {{ env = \"{secret_env}\" }}, path_style = true }}"
    )
}

/// A pipeline whose sink is an Iceberg table (config rewritten from `Pipeline::new`'s).
pub fn pipeline(db: &str, tables: &[&str], sink: SinkSpec<'_>) -> (Pipeline, Lake) {
    let mut spec = PipelineSpec::new(db, tables);
    spec.checkpoint_interval = "300ms".into();
    let p = Pipeline::new(spec);
    let lake = Lake {
        catalog_db: p.dir.join("catalog.db"),
        warehouse: p.dir.join("warehouse"),
        namespace: "lake".into(),
        pg_catalog: sink.pg_catalog.then(|| {
            (
                format!("postgres://postgres@127.0.0.1:5432/{db}"),
                format!("postgresql+psycopg2://postgres@127.0.0.1:5432/{db}"),
            )
        }),
    };
    let tables = p
        .spec
        .tables
        .iter()
        .map(|t| format!("{t:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let jsonl = if sink.jsonl {
        format!(
            "[[sinks]]\nkind = \"debezium_json\"\npath = \"{}\"\nfsync = false\nemit_truncate = true\n",
            p.out.display()
        )
    } else {
        String::new()
    };
    let toml = format!(
        r#"[pipeline]
name = "it_{slot}"

[source]
kind = "postgres"
url = "postgres://postgres@127.0.0.1:5432/{db}"
slot = "{slot}"
publication = "{publication}"
tables = [{tables}]
status_interval = "1s"

[[sinks]]
kind = "iceberg"
mode = "{mode}"
namespace = "{ns}"
target_file_size_bytes = 8388608
catalog = {{ kind = "sql", uri = "{catalog}", warehouse = "{warehouse}" }}
{extra}

{jsonl}
[checkpoint]
dir = "{cp}"
interval = "300ms"

[metrics]
listen = "127.0.0.1:{port}"
"#,
        slot = p.spec.slot,
        db = p.spec.db,
        publication = p.spec.publication,
        mode = sink.mode,
        ns = lake.namespace,
        catalog = lake.catalog_uri_sqlx(),
        warehouse = lake.warehouse.display(),
        extra = sink.extra,
        cp = p.dir.join("checkpoints").display(),
        port = p.metrics_port,
    );
    std::fs::write(&p.config, toml).expect("write config");
    (p, lake)
}

/// Runs the compare script; its JSON answer.
pub fn compare(
    lake: &Lake,
    reader: &str,
    db: &str,
    pg_table: &str,
    table: &str,
) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/iceberg_compare.py");
    let out = Command::new(python())
        .arg(script)
        .args(["--catalog-uri", &lake.catalog_uri_sqlalchemy()])
        .args(["--table", &format!("{}.{table}", lake.namespace)])
        .args(["--reader", reader])
        .args([
            "--pg-dsn",
            &format!("host=127.0.0.1 user=postgres dbname={db}"),
        ])
        .args(["--pg-table", pg_table])
        .output()
        .expect("run iceberg_compare.py");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        serde_json::json!({"error": format!("{e}: {text} {}", String::from_utf8_lossy(&out.stderr))})
    })
}

/// The changelog table's rows (pyiceberg), values canonicalised.
pub fn changelog_rows(lake: &Lake, table: &str) -> Vec<serde_json::Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/iceberg_compare.py");
    let out = Command::new(python())
        .arg(script)
        .args(["--catalog-uri", &lake.catalog_uri_sqlalchemy()])
        .args(["--table", &format!("{}.{table}", lake.namespace)])
        .arg("--changelog")
        .output()
        .expect("run iceberg_compare.py");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    v["rows"].as_array().cloned().unwrap_or_default()
}

/// Polls the pyiceberg comparison until it is equal (or panics after `timeout` with the last
/// answer and the pipeline log).
pub fn wait_equal(
    p: &mut Pipeline,
    lake: &Lake,
    db: &str,
    pg_table: &str,
    table: &str,
    timeout: Duration,
) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    loop {
        let r = compare(lake, "pyiceberg", db, pg_table, table);
        if r["equal"] == true {
            return r;
        }
        if let Some(status) = p.try_wait() {
            panic!(
                "tidemark exited ({status}); last compare {r}\n{}",
                p.log_text()
            );
        }
        if Instant::now() > deadline {
            panic!(
                "not equal after {timeout:?}: {r}\n{}",
                tail(&p.log_text(), 60)
            );
        }
        std::thread::sleep(Duration::from_millis(700));
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The sink's config as the CLI reads it (for `tidemark iceberg compact|expire`).
pub fn tidemark(args: &[&str]) -> (bool, String) {
    let out = Command::new(crate::support::TIDEMARK)
        .args(args)
        .output()
        .expect("run tidemark");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `tidemark iceberg compact` on the pipeline's config; asserts that it compacted.
pub fn compact(p: &Pipeline) {
    let config = p.config.display().to_string();
    let (ok, out) = tidemark(&["iceberg", "compact", "--config", &config]);
    assert!(ok && out.contains("compacted"), "{out}");
}

/// `tidemark iceberg expire --older-than 0s --keep 1` on the pipeline's config (every
/// snapshot but the current one): whether it succeeded, and its output.
pub fn expire_all(p: &Pipeline) -> (bool, String) {
    let config = p.config.display().to_string();
    tidemark(&[
        "iceberg",
        "expire",
        "--config",
        &config,
        "--older-than",
        "0s",
        "--keep",
        "1",
    ])
}

/// [`expire_all`], asserting that it expired; its output.
pub fn expire_all_ok(p: &Pipeline) -> String {
    let (ok, out) = expire_all(p);
    assert!(ok && out.contains("expired"), "{out}");
    out
}

/// Rewrites the (stopped) pipeline's config so its Iceberg sink gets `format_version = 3`,
/// put before the sink's `commit` line (which must be in the config as given).
pub fn set_format_version_3(p: &Pipeline, commit: &str) {
    let config = std::fs::read_to_string(&p.config).expect("read config");
    assert!(config.contains(commit));
    let config = config.replace(commit, &format!("format_version = 3\n{commit}"));
    std::fs::write(&p.config, config).expect("write config");
}

/// The lake's catalog and one of its tables, through the sink crate (iceberg-rust).
pub async fn load_table(
    lake: &Lake,
    table: &str,
) -> (tidemark_iceberg::Catalog, tidemark_iceberg::LoadedTable) {
    let cfg = lake.config();
    let catalog = tidemark_iceberg::Catalog::connect(&cfg.catalog, &cfg.storage)
        .await
        .expect("catalog");
    let ident = tidemark_iceberg::TableIdent {
        namespace: lake.namespace.clone(),
        name: table.to_owned(),
    };
    let t = catalog
        .load(&ident)
        .await
        .expect("load")
        .expect("table exists");
    (catalog, t)
}

/// The table's rows as iceberg-rust's own scan reads them.
pub async fn iceberg_rust_rows(lake: &Lake, table: &str) -> Vec<arrow_array::RecordBatch> {
    let (catalog, t) = load_table(lake, table).await;
    tidemark_iceberg::maintenance::scan_all(&catalog, &t)
        .await
        .expect("iceberg-rust scan")
}

/// Primary keys (`id` bigint) in PostgreSQL.
pub fn pg_ids(db: &str, table: &str) -> Vec<i64> {
    let text = crate::support::psql(db, &format!("SELECT id FROM {table} ORDER BY id"));
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.parse().expect("id"))
        .collect()
}

/// The `id` column of iceberg-rust's scan, sorted.
pub fn ids_of(batches: &[arrow_array::RecordBatch]) -> Vec<i64> {
    use arrow_array::cast::AsArray;
    let mut out = Vec::new();
    for b in batches {
        let col = b.column_by_name("id").expect("id column");
        out.extend(
            col.as_primitive::<arrow_array::types::Int64Type>()
                .values()
                .iter()
                .copied(),
        );
    }
    out.sort_unstable();
    out
}

/// Data and delete files (Parquet, Puffin) under the warehouse that no snapshot references
/// (orphans).
pub async fn orphan_files(lake: &Lake, table: &str) -> Vec<String> {
    let (catalog, t) = load_table(lake, table).await;
    let referenced = tidemark_iceberg::maintenance::referenced_files(&catalog, &t)
        .await
        .expect("referenced files");
    let mut out = Vec::new();
    let mut stack = vec![lake.warehouse.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .extension()
                .is_some_and(|x| x == "parquet" || x == "puffin")
            {
                let uri = format!("file://{}", p.display());
                if !referenced.contains(&uri) {
                    out.push(uri);
                }
            }
        }
    }
    out
}
