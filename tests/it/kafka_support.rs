//! Helpers of the Kafka tests: a private tansu broker per test (on a free port, so a test can
//! freeze, kill or restart it without disturbing the others), and a consumer that reads topics
//! back.
//!
//! Two builds of tansu 0.6.0 (`scripts/tansu.sh`, cached; installed on first use): memory
//! storage (`scripts/tansu.sh path`, or `TIDEMARK_TANSU`), which forgets everything when the
//! process ends, and SQLite storage (`scripts/tansu.sh path sqlite`, or `TIDEMARK_TANSU_SQLITE`),
//! whose data survives a kill and restart: [`Broker::start_persistent`]. Tests run only with
//! `TIDEMARK_TEST_KAFKA=1` (set by `make test`).
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

fn tansu_binary(storage: &str) -> String {
    let var = match storage {
        "sqlite" => "TIDEMARK_TANSU_SQLITE",
        _ => "TIDEMARK_TANSU",
    };
    if let Ok(p) = std::env::var(var) {
        return p;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/tansu.sh");
    let out = Command::new(script)
        .args(["path", storage])
        .output()
        .expect("scripts/tansu.sh runs");
    assert!(
        out.status.success(),
        "scripts/tansu.sh path failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A tansu broker on 127.0.0.1, killed on drop (its SQLite directory removed).
pub struct Broker {
    pub port: u16,
    child: Option<Child>,
    bin: String,
    /// The SQLite storage's directory (the broker's working directory), or `None` for memory.
    dir: Option<std::path::PathBuf>,
}

impl Broker {
    /// A broker with memory storage (everything is lost when it stops).
    pub fn start() -> Broker {
        let mut b = Broker {
            port: free_port(),
            child: None,
            bin: tansu_binary("memory"),
            dir: None,
        };
        b.spawn();
        b
    }

    /// A broker with SQLite storage in a fresh directory: topics, records, producer state and
    /// transactions survive [`Broker::kill9`] + [`Broker::restart`].
    pub fn start_persistent() -> Broker {
        let dir = std::env::temp_dir().join(format!("tidemark-tansu-{}", super::support::suffix()));
        std::fs::create_dir_all(&dir).expect("broker dir");
        let mut b = Broker {
            port: free_port(),
            child: None,
            bin: tansu_binary("sqlite"),
            dir: Some(dir),
        };
        b.spawn();
        b
    }

    fn spawn(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let mut cmd = Command::new(&self.bin);
        // tansu resolves `sqlite://<file>` against its working directory.
        let storage = match &self.dir {
            Some(dir) => {
                cmd.current_dir(dir);
                "sqlite://tansu.db"
            }
            None => "memory://tansu/",
        };
        let log = match &self.dir {
            Some(dir) => Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join("tansu.log"))
                    .expect("broker log"),
            ),
            None => Stdio::null(),
        };
        let child = cmd
            .args(["broker", "--storage-engine", storage])
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .stdout(Stdio::null())
            .stderr(log)
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

    /// Kills the broker process (SIGKILL: no shutdown, open connections reset) and waits for it.
    pub fn kill9(&mut self) {
        let mut c = self.child.take().expect("running");
        c.kill().expect("SIGKILL the broker");
        c.wait().expect("the broker exits");
    }

    /// Starts the broker again on the same port and storage.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "kill9 first");
        self.spawn();
    }

    /// The broker's log (SQLite brokers keep one in their directory).
    pub fn log_text(&self) -> String {
        self.dir
            .as_ref()
            .and_then(|d| std::fs::read_to_string(d.join("tansu.log")).ok())
            .unwrap_or_default()
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
        if let Some(dir) = &self.dir {
            if std::thread::panicking() {
                eprintln!("broker dir kept for inspection: {}", dir.display());
            } else {
                let _ = std::fs::remove_dir_all(dir);
            }
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

/// Sum of the high watermarks of every partition of `topics` (the records they hold, on topics
/// without transactions or compaction), from the broker's metadata: no consume.
pub fn high_watermarks(bootstrap: &str, topics: &[&str]) -> i64 {
    use tidemark_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("consumer");
    let mut sum = 0;
    for t in topics {
        let n = tidemark_kafka::consume::partition_count(bootstrap, t).unwrap_or(0);
        for p in 0..n {
            let (_, high) = c
                .fetch_watermarks(t, p, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("watermarks of {t}/{p}: {e}"));
            sum += high;
        }
    }
    sum
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
    // Created up front: tansu's SQLite storage does not create topics on produce.
    {
        use tidemark_kafka::rdkafka::admin::{
            AdminClient, AdminOptions, NewTopic, TopicReplication,
        };
        use tidemark_kafka::rdkafka::client::DefaultClientContext;
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()
            .expect("admin client");
        let new = NewTopic::new(&topic, 1, TopicReplication::Fixed(1));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(admin.create_topics([&new], &AdminOptions::new()))
            .expect("create the probe topic");
    }
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
