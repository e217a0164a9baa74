//! `tidemark compare EXPECTED ACTUAL`: two event streams, event by event.
//!
//! Each side is a JSON-lines file in the capture format (`{"topic","key","value"[,"headers"]}`
//! per line: what `tests/debezium/capture.py` records from real Debezium and what the
//! `debezium_json` sink writes), or Kafka topics read from the beginning to their current end:
//! `kafka://HOST:PORT/TOPIC[,TOPIC…]`. The report (from [`crate::diff`]) gives matched, missing,
//! extra and differing events, the first differences field by field.
//!
//! ```text
//! file.jsonl ─────────────┐
//!                         ├─► diff::Record ─► diff::diff (pair by topic, key, op) ─► report
//! kafka://b:9092/t1,t2 ───┘
//! ```
//!
//! # Traps
//! - Run-dependent fields (processing time `ts_*`, commit time, `txId`, `lsn`, `sequence`, the
//!   transaction block) differ between two captures of the same workload and are ignored unless
//!   `--keep-run-dependent`; `--ignore PATH` adds more (`value.source.*`, a `*` matches one key).
//! - Tidemark's own Kafka headers (`tidemark.*`) are dropped from Kafka records: Debezium has
//!   none. `__debezium.*` headers are kept and compared.
//! - Kafka orders records within a partition only, so when a side is Kafka both sides are put in
//!   (topic, key) order first (stably: each key keeps its own order) and then compared; records
//!   without a key (spread over partitions at random) are ordered by `source.lsn`. The
//!   "out of order" count then means one key's events came in another order.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Map, Value};

use crate::diff::{self, DiffOptions, DiffReport, Record};

/// `tidemark compare` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    /// The reference stream (e.g. Debezium's): a JSON-lines file, or
    /// `kafka://HOST:PORT/TOPIC[,TOPIC…]`.
    pub expected: String,
    /// The stream under test, in the same forms.
    pub actual: String,
    /// A field path to leave out of the comparison (repeatable), dotted from the record:
    /// `value.source.db`, `value.after.updated_at`, `value.*.ts_ms`.
    #[arg(long)]
    pub ignore: Vec<String>,
    /// Also compare the fields that differ on every run (timestamps, txId, lsn, sequence, the
    /// transaction block); by default they are ignored.
    #[arg(long)]
    pub keep_run_dependent: bool,
    /// Pair events by `source.lsn` too (both sides read the same WAL).
    #[arg(long)]
    pub match_lsn: bool,
    /// How many differing, missing and extra events to show.
    #[arg(long, default_value_t = 10)]
    pub limit: usize,
    /// Read Kafka topics with `isolation.level=read_committed`.
    #[arg(long)]
    pub read_committed: bool,
    /// Only compare records of these topics (repeatable; default: all).
    #[arg(long)]
    pub topic: Vec<String>,
    /// How long reading a Kafka side may take.
    #[arg(long, default_value = "60s", value_parser = humantime_serde::re::humantime::parse_duration)]
    pub kafka_timeout: Duration,
}

/// One side of a comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stream {
    File(String),
    Kafka {
        bootstrap: String,
        topics: Vec<String>,
    },
}

impl Stream {
    /// `kafka://HOST:PORT/T1,T2` or a file path.
    pub fn parse(spec: &str) -> anyhow::Result<Stream> {
        let Some(rest) = spec.strip_prefix("kafka://") else {
            return Ok(Stream::File(spec.to_owned()));
        };
        let (bootstrap, topics) = rest
            .split_once('/')
            .with_context(|| format!("{spec:?}: expected kafka://HOST:PORT/TOPIC[,TOPIC…]"))?;
        let topics: Vec<String> = topics
            .split(',')
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        anyhow::ensure!(
            !bootstrap.is_empty() && !topics.is_empty(),
            "{spec:?}: expected kafka://HOST:PORT/TOPIC[,TOPIC…]"
        );
        Ok(Stream::Kafka {
            bootstrap: bootstrap.to_owned(),
            topics,
        })
    }
}

/// Reads a stream's records.
pub fn load(
    stream: &Stream,
    read_committed: bool,
    timeout: Duration,
) -> anyhow::Result<Vec<Record>> {
    match stream {
        Stream::File(path) => {
            let text = std::fs::read_to_string(Path::new(path))
                .with_context(|| format!("cannot read {path}"))?;
            Record::parse_lines(&text).map_err(|e| anyhow::anyhow!("{path}: {e}"))
        }
        Stream::Kafka { bootstrap, topics } => {
            load_kafka(bootstrap, topics, read_committed, timeout)
        }
    }
}

#[cfg(feature = "kafka")]
fn load_kafka(
    bootstrap: &str,
    topics: &[String],
    read_committed: bool,
    timeout: Duration,
) -> anyhow::Result<Vec<Record>> {
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let records = tidemark_kafka::consume::read_topics(bootstrap, &names, read_committed, timeout)
        .map_err(|e| anyhow::anyhow!(e))?;
    records
        .into_iter()
        .map(|r| {
            let json = |b: &Option<Vec<u8>>, what: &str| -> anyhow::Result<Value> {
                b.as_ref().map_or(Ok(Value::Null), |b| {
                    serde_json::from_slice(b).with_context(|| {
                        format!(
                            "{} partition {} offset {}: {what} is not JSON",
                            r.topic, r.partition, r.offset
                        )
                    })
                })
            };
            let mut headers = Map::new();
            for (k, v) in &r.headers {
                if k.starts_with("tidemark.") {
                    continue;
                }
                let v = serde_json::from_slice(v)
                    .unwrap_or_else(|_| Value::from(String::from_utf8_lossy(v).into_owned()));
                headers.insert(k.clone(), v);
            }
            Ok(Record {
                key: json(&r.key, "key")?,
                value: json(&r.value, "value")?,
                headers: if headers.is_empty() {
                    Value::Null
                } else {
                    Value::Object(headers)
                },
                topic: r.topic,
            })
        })
        .collect()
}

#[cfg(not(feature = "kafka"))]
fn load_kafka(_: &str, _: &[String], _: bool, _: Duration) -> anyhow::Result<Vec<Record>> {
    anyhow::bail!("this tidemark was built without the `kafka` feature")
}

/// The options of a comparison.
pub fn options(args: &CompareArgs) -> DiffOptions {
    let base = if args.keep_run_dependent {
        DiffOptions::default()
    } else {
        DiffOptions::run_dependent()
    };
    let mut o = base.ignore(args.ignore.iter().cloned());
    o.match_lsn = args.match_lsn;
    o
}

/// Stable (topic, key) order; keyless records by `source.lsn`.
fn per_key_order(records: &mut [Record]) {
    records.sort_by_cached_key(|r| {
        let lsn = if r.key.is_null() {
            r.lsn().unwrap_or(0)
        } else {
            0
        };
        (r.topic.clone(), r.key.to_string(), lsn)
    });
}

/// Loads both sides and diffs them: (the report text, whether the streams are equal).
pub fn run(args: &CompareArgs) -> anyhow::Result<(String, bool)> {
    let keep = |mut v: Vec<Record>| {
        if !args.topic.is_empty() {
            v.retain(|r| args.topic.contains(&r.topic));
        }
        v
    };
    let expected = keep(
        load(
            &Stream::parse(&args.expected)?,
            args.read_committed,
            args.kafka_timeout,
        )
        .context("expected stream")?,
    );
    let actual = keep(
        load(
            &Stream::parse(&args.actual)?,
            args.read_committed,
            args.kafka_timeout,
        )
        .context("actual stream")?,
    );
    let (mut expected, mut actual) = (expected, actual);
    if args.expected.starts_with("kafka://") || args.actual.starts_with("kafka://") {
        per_key_order(&mut expected);
        per_key_order(&mut actual);
    }
    let report: DiffReport = diff::diff(&expected, &actual, &options(args));
    let text = format!(
        "expected {} record(s) from {}, actual {} from {}\n{}",
        expected.len(),
        args.expected,
        actual.len(),
        args.actual,
        report.render(&expected, &actual, args.limit)
    );
    Ok((text, report.is_clean()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_specs() {
        assert_eq!(
            Stream::parse("out.jsonl").unwrap(),
            Stream::File("out.jsonl".into())
        );
        assert_eq!(
            Stream::parse("kafka://127.0.0.1:9092/tm.public.a,tm.public.b").unwrap(),
            Stream::Kafka {
                bootstrap: "127.0.0.1:9092".into(),
                topics: vec!["tm.public.a".into(), "tm.public.b".into()]
            }
        );
        assert!(Stream::parse("kafka://127.0.0.1:9092").is_err());
        assert!(Stream::parse("kafka:///t").is_err());
    }
}
