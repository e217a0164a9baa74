//! The Delta Change Data Feed source: a table written by an independent writer (delta-rs'
//! Python binding) is followed into Debezium JSON lines and into a Delta mirror, keeps being
//! followed, and resumes after a restart without repeating a version. Skipped unless
//! `TIDEMARK_TEST_DELTA=1`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::delta_support::{col, delta_enabled, read, spec};
use super::support::suffix;

struct Run {
    child: Child,
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(config: &Path, log: &Path) -> Run {
    let log = std::fs::File::create(log).expect("log");
    Run {
        child: Command::new(env!("CARGO_BIN_EXE_tidemark"))
            .args(["run", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn tidemark"),
    }
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

fn wait_lines(path: &Path, n: usize, log: &Path) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let l = lines(path);
        if l.len() >= n {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} lines; log:\n{}",
            l.len(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn op(line: &Value) -> Value {
    line["value"]["op"].clone()
}

#[test]
fn delta_source_follows_the_change_feed_into_json_and_delta() {
    if !delta_enabled("delta_source_follows_the_change_feed_into_json_and_delta") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("tm-delta-src-{}", suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let table = dir.join("source_table");
    let t = table.display().to_string();
    for step in 0..4 {
        read(&["write", &t, &step.to_string()]);
    }
    let out = dir.join("out.jsonl");
    let config = dir.join("pipeline.toml");
    std::fs::write(
        &config,
        format!(
            "[pipeline]\nname = \"dsrc\"\n[source]\nkind = \"delta\"\nuri = \"{t}\"\ntable = \"lake.items\"\n\
             key_columns = [\"id\"]\npoll_interval = \"200ms\"\n\
             [[sinks]]\nkind = \"debezium_json\"\npath = \"{}\"\n\
             [[sinks]]\nkind = \"delta\"\nroot = \"{}\"\nflush = {{ interval = \"200ms\" }}\n\
             [checkpoint]\ndir = \"{}\"\ninterval = \"200ms\"\n[metrics]\nenabled = false\n",
            out.display(),
            dir.join("mirror").display(),
            dir.join("cp").display()
        ),
    )
    .unwrap();
    let log = dir.join("tidemark.log");
    let run = start(&config, &log);
    // v0: 5 inserts; v1: 1 update; v2: 1 delete + tombstone; v3: 1 insert.
    let l = wait_lines(&out, 9, &log);
    let ops: Vec<Value> = l.iter().map(op).collect();
    assert_eq!(
        ops,
        [
            json!("c"),
            json!("c"),
            json!("c"),
            json!("c"),
            json!("c"),
            json!("u"),
            json!("d"),
            Value::Null,
            json!("c")
        ],
        "{l:#?}"
    );
    assert_eq!(l[0]["topic"], json!("dsrc.lake.items"));
    assert_eq!(l[5]["key"], json!({"id": 2}));
    assert_eq!(l[5]["value"]["after"]["v"], json!("b2"));
    // Keeps following: a new version arrives while it runs.
    read(&["write", &t, "4"]);
    let l = wait_lines(&out, 10, &log);
    assert_eq!(
        l[9]["value"]["after"],
        json!({"id": 1, "v": "a2", "amount": 10.0})
    );
    // Delta → Delta: the mirror equals the source table.
    let cols = [col("id", "int"), col("v", "text"), col("amount", "float")];
    let deadline = Instant::now() + Duration::from_secs(30);
    let mirror_path = dir.join("mirror/lake/items").display().to_string();
    loop {
        if Path::new(&mirror_path).join("_delta_log").exists() {
            let m = read(&["rows", &mirror_path, &spec(&cols)]);
            if m == read(&["rows", &t, &spec(&cols)]) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "mirror {m} differs from the source"
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    // A clean stop (SIGTERM) checkpoints; a restart resumes after the last version.
    let _ = Command::new("kill")
        .args(["-TERM", &run.child.id().to_string()])
        .status();
    let mut run = run;
    let _ = run.child.wait();
    drop(run);
    // A restart resumes after the last checkpointed version: nothing is repeated.
    std::thread::sleep(Duration::from_millis(300));
    let before = lines(&out).len();
    let _run = start(&config, &log);
    std::thread::sleep(Duration::from_secs(3));
    let after = lines(&out);
    assert!(after.len() >= before);
    let positions: Vec<String> = after
        .iter()
        .filter(|l| !l["value"].is_null())
        .map(|l| format!("{} {}", l["value"]["source"]["txId"], l["key"]))
        .collect();
    let mut dedup = positions.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(
        dedup.len(),
        positions.len(),
        "a change was emitted twice: {positions:#?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
