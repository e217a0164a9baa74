//! The Kafka source (`source.kind = "kafka"`) against a private tansu broker: PostgreSQL →
//! Kafka (Tidemark's Kafka sink) → Iceberg gives the same table as PostgreSQL → Iceberg; a
//! topic holding real Debezium's records (the committed capture) gives the table PostgreSQL
//! ends with; a restart resumes from the stored offsets.
//!
//! Gated by `TIDEMARK_TEST_KAFKA=1`, `TIDEMARK_TEST_PG=1` and `TIDEMARK_TEST_ICEBERG=1`.

use std::path::Path;
use std::time::{Duration, Instant};

use tidemark_kafka::rdkafka::config::ClientConfig;
use tidemark_kafka::rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::iceberg_support::{self as ice, Lake, SinkSpec};
use crate::kafka_support::{kafka_enabled, Broker};
use crate::support::{psql, Pipeline, PipelineSpec, TestDb};

fn enabled(test: &str) -> bool {
    kafka_enabled(test) && ice::enabled(test)
}

/// Types the Debezium envelope carries without loss (docs/iceberg.md, "Kafka source").
const CREATE: &str = "CREATE TABLE t (
  id bigint PRIMARY KEY, i2 smallint, i4 integer, i8 bigint, n numeric(12,3),
  f4 real, f8 double precision, b boolean, tx text, vc varchar(20), ch char(5), by bytea,
  d date, tm time, ts timestamp, tstz timestamptz, iv interval, u uuid, js json, jb jsonb,
  ia integer[], ta text[], ip inet, big text);
ALTER TABLE t ALTER COLUMN big SET STORAGE EXTERNAL;";

fn insert(lo: i64, hi: i64) -> String {
    format!(
        "INSERT INTO t SELECT g, (g % 30000)::int2, CASE WHEN g % 10 = 0 THEN NULL ELSE g * 7 END,
           g::bigint * 1000000007, round((random()*1e6)::numeric, 3), random()::real,
           CASE WHEN g % 17 = 0 THEN 'Infinity'::float8 ELSE random()*1e10 END, g % 2 = 0,
           md5(g::text), left(md5(g::text), 10), 'ab', decode(md5(g::text), 'hex'),
           date '1950-01-01' + (g % 30000), time '00:00' + (g % 86400) * interval '1 second' + interval '0.25 s',
           timestamp '1960-01-01' + g * interval '1 hour 7 minutes', timestamptz '2020-01-01 00:00+00' + g * interval '13 minutes',
           make_interval(days => (g % 40)::int, secs => (g % 86000) + 0.5), gen_random_uuid(),
           json_build_object('a', g), jsonb_build_object('k', g, 'arr', jsonb_build_array(1, g)),
           ARRAY[g::int, NULL, 3], ARRAY['x', md5(g::text), 'q\"uote'],
           ('10.0.' || (g % 256) || '.1')::inet,
           CASE WHEN g % 3 = 0 THEN repeat(md5(g::text), 150) ELSE 'small' END
         FROM generate_series({lo}, {hi}) g;"
    )
}

/// Inserts, updates (toasted `big` untouched), primary-key changes, deletes, a truncate.
fn workload(db: &str) {
    psql(db, &insert(1, 400));
    psql(db, "BEGIN; UPDATE t SET i4 = -1, tx = 'upd' WHERE id % 4 = 0; UPDATE t SET id = id + 100000 WHERE id % 25 = 0; COMMIT;");
    psql(db, "DELETE FROM t WHERE id % 9 = 0;");
    psql(db, "BEGIN; TRUNCATE t; COMMIT;");
    psql(db, &insert(1000, 1300));
    psql(db, "BEGIN; UPDATE t SET f8 = 1.5, ta = ARRAY['after'] WHERE id % 5 = 0; DELETE FROM t WHERE id % 7 = 0; COMMIT;");
    psql(
        db,
        "UPDATE t SET big = repeat('z', 5000) WHERE id % 11 = 0;",
    );
    psql(db, &insert(2000, 2100));
}

/// A pipeline (own directory, metrics port) whose source is the Kafka topics, into a lake.
fn kafka_to_lake(bootstrap: &str, topics: &[&str], source_extra: &str) -> (Pipeline, Lake) {
    let mut p = Pipeline::new(PipelineSpec::new("unused", &[]));
    let lake = Lake {
        catalog_db: p.dir.join("catalog.db"),
        warehouse: p.dir.join("warehouse"),
        namespace: "lake".into(),
        pg_catalog: None,
    };
    let topics = topics
        .iter()
        .map(|t| format!("{t:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let toml = format!(
        r#"[pipeline]
name = "it_ks_{suffix}"

[source]
kind = "kafka"
bootstrap_servers = "{bootstrap}"
topics = [{topics}]
batch_linger = "50ms"
{source_extra}

[[sinks]]
kind = "iceberg"
mode = "mirror"
namespace = "lake"
catalog = {{ kind = "sql", uri = "{catalog}", warehouse = "{warehouse}" }}
commit = {{ interval = "300ms" }}

[checkpoint]
dir = "{cp}"
interval = "300ms"

[metrics]
listen = "127.0.0.1:{port}"
"#,
        suffix = crate::support::suffix(),
        catalog = lake.catalog_uri_sqlx(),
        warehouse = lake.warehouse.display(),
        cp = p.dir.join("checkpoints").display(),
        port = p.metrics_port,
    );
    std::fs::write(&p.config, toml).expect("write config");
    p.env.push(("RUST_LOG".into(), "info".into()));
    (p, lake)
}

/// `(name, type, required)` of the table's current Iceberg schema.
async fn iceberg_fields(lake: &Lake, table: &str) -> Vec<(String, String, bool)> {
    let (_, t) = ice::load_table(lake, table).await;
    t.metadata
        .current_schema()
        .as_struct()
        .fields()
        .iter()
        .map(|f| (f.name.clone(), f.field_type.to_string(), f.required))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_source_pg_to_kafka_to_iceberg_equals_pg_to_iceberg() {
    if !enabled("kafka_source_pg_to_kafka_to_iceberg_equals_pg_to_iceberg") {
        return;
    }
    let broker = Broker::start();
    let db = TestDb::create("tm_ks_eq");
    psql(&db.name, CREATE);
    // Pipeline A: PostgreSQL → Iceberg (directly) and → Kafka (schemas, truncates).
    let kafka_sink = format!(
        "commit = {{ interval = \"300ms\" }}\n\n[[sinks]]\nkind = \"kafka\"\nbootstrap_servers = \"{}\"\nschemas_enable = true\nemit_truncate = true\n",
        broker.bootstrap()
    );
    let (mut direct, lake_direct) = ice::pipeline(
        &db.name,
        &["public.t"],
        SinkSpec {
            mode: "mirror",
            extra: &kafka_sink,
            jsonl: false,
            pg_catalog: false,
        },
    );
    direct.start();
    let topic = format!("it_{}.public.t", direct.spec.slot);
    workload(&db.name);
    // Pipeline B: Kafka → Iceberg. Started while A still writes: the topic appears on the way.
    let (mut via, lake_via) = kafka_to_lake(&broker.bootstrap(), &[&topic], "");
    via.spawn();
    psql(&db.name, &insert(3000, 3050));
    let r = ice::wait_equal(
        &mut direct,
        &lake_direct,
        &db.name,
        "public.t",
        "t",
        Duration::from_secs(120),
    );
    eprintln!("PG → Iceberg: {r}");
    let r = ice::wait_equal(
        &mut via,
        &lake_via,
        &db.name,
        "public.t",
        "t",
        Duration::from_secs(120),
    );
    eprintln!("PG → Kafka → Iceberg: {r}");
    assert_eq!(r["duplicates"], 0);
    assert_eq!(
        iceberg_fields(&lake_via, "t").await,
        iceberg_fields(&lake_direct, "t").await,
        "the Kafka-sourced table has other Iceberg types"
    );
    // Restart B (clean stop: offsets stored), more changes, then kill -9 and more: resumes from
    // the stored offsets; the mirror converges on the replayed window.
    via.stop();
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            via.dir
                .join("checkpoints")
                .join(format!("{}.kafka.json", pipeline_name(&via.config))),
        )
        .expect("state file"),
    )
    .expect("state json");
    assert!(
        state["offsets"][&topic]["0"].as_i64().unwrap_or(0) > 0,
        "{state}"
    );
    psql(
        &db.name,
        "UPDATE t SET tx = 'after restart' WHERE id % 3 = 0;",
    );
    via.spawn();
    std::thread::sleep(Duration::from_millis(1500));
    via.kill9();
    psql(&db.name, "DELETE FROM t WHERE id % 13 = 0;");
    psql(&db.name, &insert(4000, 4040));
    via.spawn();
    let r = ice::wait_equal(
        &mut via,
        &lake_via,
        &db.name,
        "public.t",
        "t",
        Duration::from_secs(120),
    );
    eprintln!("after a restart and a kill -9: {r}");
    assert_eq!(r["duplicates"], 0);
    for reader in ["polars", "duckdb"] {
        let r = ice::compare(&lake_via, reader, &db.name, "public.t", "t");
        assert_eq!(r["equal"], true, "{reader}: {r}");
    }
    via.stop();
    direct.stop();
}

/// The pipeline name in a config file.
fn pipeline_name(config: &Path) -> String {
    let text = std::fs::read_to_string(config).expect("config");
    let v: toml::Value = toml::from_str(&text).expect("toml");
    v["pipeline"]["name"].as_str().expect("name").to_owned()
}

/// Produces `(key, value)` records (raw bytes) to `topic`, in order, one partition.
fn produce(bootstrap: &str, topic: &str, records: &[(Option<String>, Option<String>)]) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    for (k, v) in records {
        let mut r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).partition(0);
        if let Some(k) = k {
            r = r.key(k.as_bytes());
        }
        if let Some(v) = v {
            r = r.payload(v.as_bytes());
        }
        p.send(r).map_err(|(e, _)| e).expect("send");
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(30)).expect("flush");
}

/// Creates `topic` with one partition.
async fn create_topic(bootstrap: &str, topic: &str) {
    use tidemark_kafka::rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<_> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin");
    let t = NewTopic::new(topic, 1, TopicReplication::Fixed(1));
    let r = admin
        .create_topics([&t], &AdminOptions::new())
        .await
        .expect("create topics");
    assert!(r.iter().all(|x| x.is_ok()), "{r:?}");
}

/// The table of every column of `table` except `skip`, as pyiceberg reads it and as
/// PostgreSQL has it, through the compare script.
fn compare_columns(lake: &Lake, db: &str, table: &str, columns: &[&str]) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/iceberg_compare.py");
    let out = std::process::Command::new(ice::python())
        .arg(script)
        .args(["--catalog-uri", &lake.catalog_uri_sqlalchemy()])
        .args(["--table", &format!("{}.{table}", lake.namespace)])
        .args([
            "--pg-dsn",
            &format!("host=127.0.0.1 user=postgres dbname={db}"),
        ])
        .args(["--pg-table", &format!("public.{table}")])
        .args(["--columns", &columns.join(",")])
        .output()
        .expect("compare script");
    serde_json::from_slice(&out.stdout).unwrap_or_else(
        |e| serde_json::json!({"error": format!("{e}: {}", String::from_utf8_lossy(&out.stderr))}),
    )
}

/// The columns of the all-types capture that Debezium 3.6 carries without loss into a form
/// PostgreSQL's final state can be compared with (docs/iceberg.md lists the others and why).
const DEBEZIUM_EXACT: &[&str] = &[
    "id",
    "c_int2",
    "c_int4",
    "c_int8",
    "c_num_10_2",
    "c_float4",
    "c_float8",
    "c_bool",
    "c_text",
    "c_varchar",
    "c_char",
    "c_name",
    "c_bytea",
    "c_time3",
    "c_uuid",
    "c_jsonb",
    "c_int4_arr",
    "c_text_arr",
    "c_enum",
    "c_domain",
    "c_inet",
    "c_cidr",
    "c_macaddr",
    "c_macaddr8",
    "c_bit8",
    "c_varbit",
    "c_xml",
    "c_oid",
];

#[tokio::test(flavor = "multi_thread")]
async fn kafka_source_reads_real_debezium_topics_into_iceberg() {
    if !enabled("kafka_source_reads_real_debezium_topics_into_iceberg") {
        return;
    }
    // Real Debezium 3.6's records of the all-types workload (schemas.enable=true), as it
    // wrote them, produced to a topic; the database gets the same setup and workload.
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/debezium/pg/all_types_schemas");
    let text = std::fs::read_to_string(fixture.join("events.jsonl")).expect("capture");
    let broker = Broker::start();
    let topic = "tm.public.all_types_default";
    let records: Vec<(Option<String>, Option<String>)> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
        .filter(|e| e["topic"] == topic)
        .map(|e| {
            (
                e["key_raw"].as_str().map(str::to_owned),
                e["value_raw"].as_str().map(str::to_owned),
            )
        })
        .collect();
    assert!(records.len() > 10);
    create_topic(&broker.bootstrap(), topic).await;
    produce(&broker.bootstrap(), topic, &records);
    let db = TestDb::create("tm_ks_dbz");
    crate::support::psql_file(&db.name, &fixture.join("setup.sql"));
    crate::support::psql_file(&db.name, &fixture.join("workload.sql"));
    let (mut p, lake) = kafka_to_lake(&broker.bootstrap(), &[topic], "");
    p.spawn();
    let deadline = Instant::now() + Duration::from_secs(90);
    let r = loop {
        let r = compare_columns(&lake, &db.name, "all_types_default", DEBEZIUM_EXACT);
        if r["equal"] == true {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "{r}\n{}",
            ice::tail(&p.log_text(), 40)
        );
        std::thread::sleep(Duration::from_millis(700));
    };
    eprintln!("real Debezium topic → Iceberg: {r}");
    p.stop();
}
