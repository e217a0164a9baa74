//! [`read_topics`]: read whole topics back (for `tidemark compare` and the tests).
//!
//! # Traps
//! - Partitions are *assigned*, not subscribed: no consumer-group join (tansu's first join takes
//!   about 20 s) and no committed offsets left behind.
//! - "The end" is each partition's end when it was reached (`enable.partition.eof`); records
//!   produced later are not read.
//! - `read_committed` waits at the last stable offset: an open transaction holds a partition's
//!   end back until it commits or aborts (or the timeout passes).

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

/// One record read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

fn consumer(bootstrap: &str, read_committed: bool) -> Result<BaseConsumer, String> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "tidemark-read-topics")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set(
            "isolation.level",
            if read_committed {
                "read_committed"
            } else {
                "read_uncommitted"
            },
        )
        .create()
        .map_err(|e| format!("kafka consumer for {bootstrap}: {e}"))
}

/// Number of partitions of `topic` (0 if it does not exist).
pub fn partition_count(bootstrap: &str, topic: &str) -> Result<i32, String> {
    let c = consumer(bootstrap, false)?;
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| format!("metadata of {topic} from {bootstrap}: {e}"))?;
    Ok(md
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map_or(0, |t| t.partitions().len() as i32))
}

/// Reads every partition of `topics` from the beginning to its end. Records keep offset order
/// within a partition; partitions follow one another in the order they were read.
pub fn read_topics(
    bootstrap: &str,
    topics: &[&str],
    read_committed: bool,
    timeout: Duration,
) -> Result<Vec<ConsumedRecord>, String> {
    let c = consumer(bootstrap, read_committed)?;
    let mut tpl = TopicPartitionList::new();
    let mut open = 0;
    for t in topics {
        for p in 0..partition_count(bootstrap, t)? {
            tpl.add_partition_offset(t, p, Offset::Beginning)
                .map_err(|e| e.to_string())?;
            open += 1;
        }
    }
    if open == 0 {
        return Ok(Vec::new());
    }
    c.assign(&tpl).map_err(|e| format!("assign: {e}"))?;
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while open > 0 {
        if Instant::now() > deadline {
            return Err(format!(
                "{open} partition(s) of {topics:?} not read to the end within {timeout:?}"
            ));
        }
        match c.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(_))) => open -= 1,
            Some(Err(e)) => return Err(format!("consume {topics:?}: {e}")),
            Some(Ok(m)) => {
                let headers = m.headers().map_or_else(Vec::new, |h| {
                    h.iter()
                        .map(|hd| (hd.key.to_owned(), hd.value.unwrap_or(&[]).to_vec()))
                        .collect()
                });
                out.push(ConsumedRecord {
                    topic: m.topic().to_owned(),
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                    headers,
                });
            }
        }
    }
    Ok(out)
}
