//! Helpers of the Kafka tests: a private tansu broker per test (on a free port, so a test can
//! freeze or kill it without disturbing the others), and a consumer that reads topics back.
//!
//! The broker binary comes from `scripts/tansu.sh path` (cached; installed on first use) unless
//! `TIDEMARK_TANSU` names it. Tests run only with `TIDEMARK_TEST_KAFKA=1` (set by `make test`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tidemark_kafka::rdkafka::config::ClientConfig;

use super::support::free_port;

/// True when the Kafka tests should run (they need PostgreSQL too); prints why not otherwise.
pub fn kafka_enabled(test: &str) -> bool {
    let kafka = std::env::var("TIDEMARK_TEST_KAFKA").as_deref() == Ok("1");
    let pg = std::env::var("TIDEMARK_TEST_PG").as_deref() == Ok("1");
    if kafka && pg {
        true
    } else {
        eprintln!(
            "skipping {test}: set TIDEMARK_TEST_KAFKA=1 and TIDEMARK_TEST_PG=1 (make test does) to run it against tansu and PostgreSQL"
        );
        false
    }
}

fn tansu_binary() -> String {
    if let Ok(p) = std::env::var("TIDEMARK_TANSU") {
        return p;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/tansu.sh");
    let out = Command::new(script)
        .arg("path")
        .output()
        .expect("scripts/tansu.sh runs");
    assert!(
        out.status.success(),
        "scripts/tansu.sh path failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A tansu broker (memory storage) on 127.0.0.1, killed on drop.
pub struct Broker {
    pub port: u16,
    child: Option<Child>,
    bin: String,
}

impl Broker {
    pub fn start() -> Broker {
        let mut b = Broker {
            port: free_port(),
            child: None,
            bin: tansu_binary(),
        };
        b.spawn();
        b
    }

    fn spawn(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new(&self.bin)
            .args(["broker", "--storage-engine", "memory://tansu/"])
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill {sig} {pid}");
    }

    /// Freezes the broker (SIGSTOP): connections stay open, nothing is answered.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Resumes a frozen broker (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-CONT", &c.id().to_string()])
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One consumed record.
#[derive(Clone, Debug)]
pub struct Consumed {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: BTreeMap<String, Vec<u8>>,
}

impl Consumed {
    pub fn key_json(&self) -> serde_json::Value {
        self.key.as_ref().map_or(serde_json::Value::Null, |k| {
            serde_json::from_slice(k).expect("JSON key")
        })
    }

    pub fn value_json(&self) -> serde_json::Value {
        self.value.as_ref().map_or(serde_json::Value::Null, |v| {
            serde_json::from_slice(v).expect("JSON value")
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| std::str::from_utf8(v).expect("UTF-8 header"))
    }
}

/// Reads every partition of `topics` from the beginning to its end (assigned partitions: no
/// group join, which takes ~20 s on tansu).
pub fn consume_all(
    bootstrap: &str,
    topics: &[&str],
    read_committed: bool,
    timeout: Duration,
) -> Vec<Consumed> {
    tidemark_kafka::consume::read_topics(bootstrap, topics, read_committed, timeout)
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|r| Consumed {
            topic: r.topic,
            partition: r.partition,
            offset: r.offset,
            key: r.key,
            value: r.value,
            headers: r.headers.into_iter().collect(),
        })
        .collect()
}

/// Waits until `topics` hold at least `n` records; returns them.
pub fn wait_records(
    bootstrap: &str,
    topics: &[&str],
    n: usize,
    timeout: Duration,
) -> Vec<Consumed> {
    let deadline = Instant::now() + timeout;
    loop {
        let got = consume_all(bootstrap, topics, false, Duration::from_secs(20));
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The Java client's murmur2 (Kafka `Utils.murmur2`), for checking key partitioning.
pub fn murmur2(data: &[u8]) -> i32 {
    let seed: u32 = 0x9747_b28c;
    let m: u32 = 0x5bd1_e995;
    let r = 24;
    let len = data.len() as u32;
    let mut h: u32 = seed ^ len;
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(m);
        k ^= k >> r;
        k = k.wrapping_mul(m);
        h = h.wrapping_mul(m);
        h ^= k;
    }
    match tail.len() {
        3 => {
            h ^= (tail[2] as u32) << 16;
            h ^= (tail[1] as u32) << 8;
            h ^= tail[0] as u32;
            h = h.wrapping_mul(m);
        }
        2 => {
            h ^= (tail[1] as u32) << 8;
            h ^= tail[0] as u32;
            h = h.wrapping_mul(m);
        }
        1 => {
            h ^= tail[0] as u32;
            h = h.wrapping_mul(m);
        }
        _ => {}
    }
    h ^= h >> 13;
    h = h.wrapping_mul(m);
    h ^= h >> 15;
    h as i32
}

/// The partition the Java client picks for `key` among `n`.
pub fn java_partition(key: &[u8], n: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % n
}

/// Whether the broker hides records of aborted transactions from read_committed consumers
/// (Apache Kafka does; tansu 0.6.0 does not: its Fetch responses list no aborted transactions).
pub fn broker_hides_aborted(bootstrap: &str) -> bool {
    use tidemark_kafka::rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let topic = format!("tm-probe-{}", super::support::suffix());
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", &topic)
        .create()
        .expect("transactional producer");
    let t = Duration::from_secs(30);
    p.init_transactions(t).expect("init_transactions");
    for (payload, commit) in [("aborted", false), ("committed", true)] {
        p.begin_transaction().expect("begin");
        p.send(BaseRecord::<[u8], [u8]>::to(&topic).payload(payload.as_bytes()))
            .map_err(|(e, _)| e)
            .expect("send");
        p.flush(t).expect("flush");
        if commit {
            p.commit_transaction(t).expect("commit");
        } else {
            p.abort_transaction(t).expect("abort");
        }
    }
    let got = consume_all(bootstrap, &[&topic], true, Duration::from_secs(20));
    let payloads: Vec<&[u8]> = got.iter().filter_map(|c| c.value.as_deref()).collect();
    assert!(
        payloads.contains(&&b"committed"[..]),
        "the committed record is visible"
    );
    !payloads.contains(&&b"aborted"[..])
}

/// A transaction of `rows` inserts into `public.t (id int4 key, v int4)`.
pub fn insert_txn(
    xid: u64,
    commit_lsn: u64,
    first_id: i32,
    rows: i32,
) -> tidemark_model::Transaction {
    use tidemark_model::pg_types::oid;
    use tidemark_model::{
        ChangeBatchBuilder, Column, Image, Lsn, Op, PgPosition, Position, SourceType, TableId,
        TableSchema, Transaction, TxnItem,
    };
    let columns = [("id", true), ("v", false)]
        .iter()
        .map(|&(n, key)| {
            Column::postgres(n, SourceType::pg_builtin(oid::INT4, -1).unwrap(), !key, key)
        })
        .collect();
    let schema = TableSchema::new(TableId::new("public", "t"), 1, columns);
    let mut b = ChangeBatchBuilder::new(schema, rows as usize);
    for i in 0..rows {
        let pos = Position::pg(Lsn(commit_lsn), Lsn(commit_lsn - 100 + i as u64), i as u32);
        b.begin_row(Op::Insert, &pos, Some(xid), Some(1_000_000))
            .unwrap();
        b.image_null(Image::Before).unwrap();
        b.append_text(Image::After, 0, (first_id + i).to_string().as_bytes())
            .unwrap();
        b.append_text(Image::After, 1, xid.to_string().as_bytes())
            .unwrap();
        b.finish_row().unwrap();
    }
    let mut t = Transaction::new(
        Some(xid),
        Some(1_000_000),
        Position::from(PgPosition::end(Lsn(commit_lsn), Lsn(commit_lsn + 8))),
    );
    t.items.push(TxnItem::Rows(b.finish().unwrap()));
    t
}
