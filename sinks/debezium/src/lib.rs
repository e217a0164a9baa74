//! Debezium-compatible output for Tidemark: the JSON envelope encoder (also used by the Kafka
//! sink) and a JSON-lines sink that writes one record per line to a file or stdout.
//!
//! ```text
//! Transaction ──► DebeziumEncoder (encoder.rs: pure) ──► Record {topic, key, value, headers}
//!                                                          │
//! JsonlSink::write ─► JsonlWriter (writer.rs: buffered IO) ┘
//! JsonlSink::flush ─► flush + fsync ─► committed position (commit.rs)
//! ```
//!
//! The reference is real Debezium 3.6 output captured into `tests/fixtures/debezium/pg/`
//! (`events.jsonl` per capture); the tests in `encoder/tests.rs` copy its values. Debezium's
//! choices per Postgres type live in `encoder/values.rs`.
//!
//! # What matches Debezium
//! Topic names, key documents (`{"id":1}`, `null` without a primary key), the envelope and
//! `source` block field order (3.6: `..., xmin, origin, origin_lsn`), `source.sequence`,
//! tombstones, the primary-key-change sequence with `__debezium.newkey`/`__debezium.oldkey`
//! headers, every value type of the all-types capture in all three `decimal.handling.mode`s,
//! omitted columns (geometric types other than point, `pg_lsn`, unsupported array types),
//! unchanged TOAST placeholders.
//!
//! # Lossless mode (`lossless = true`, opt-in)
//! Where Debezium loses information Tidemark writes the true value instead; such fields no
//! longer match Debezium byte for byte (the documented allowed diff of `tidemark compare`):
//! - NaN/±Infinity numerics in `precise` mode: `"NaN"`, `"Infinity"`, `"-Infinity"`
//!   (Debezium: `null`).
//! - `date`/`timestamp` ±infinity: `"infinity"`/`"-infinity"` (Debezium: odd numbers derived from
//!   pgjdbc's sentinels, e.g. `-2147472692` for a date).
//! - `name` columns: the text (Debezium 3.6: always `null`).
//! - multi-dimensional arrays: nested lists (Debezium: a list of nulls).
//! - NOT NULL columns a key-only old image does not carry: `null` (Debezium: a made-up `0`,
//!   `""`, `false`, ...).
//!
//! # Traps
//! - Envelope `ts_ms`/`ts_us`/`ts_ns` are processing time: comparisons must ignore them.
//! - `source.sequence[0]` is the end LSN of the previous transaction; after a restart it is
//!   `null` until [`DebeziumEncoder::set_last_commit_lsn`] is called (Debezium keeps it in its
//!   offsets).
//! - Floats are printed the Rust way (`1e-300`), Debezium's Jackson prints `1.0E-300`: equal
//!   as JSON numbers, not as bytes.
//! - Debezium skips truncates by default (`skipped.operations=t`); so does this encoder unless
//!   `emit_truncate` (then op `t`, null key, no tombstone).
//! - A delete on a table without a primary key is still followed by a tombstone (null key).
//! - A non-transactional logical message carries `txId: null` and the *previous* commit's time
//!   in `source.ts_ms`; it does not advance `source.sequence[0]`.

pub mod commit;
pub mod config;
pub mod encoder;
pub mod writer;

pub use commit::JsonlSink;
pub use config::{
    Connector, DecimalHandling, EncoderOptions, JsonlSinkConfig, TimePrecision,
    DEFAULT_UNAVAILABLE_VALUE_PLACEHOLDER,
};
pub use encoder::{DebeziumEncoder, EncodeError, Record, HEADER_NEW_KEY, HEADER_OLD_KEY};
pub use writer::JsonlWriter;

/// `source.version`: the Debezium release whose output this crate reproduces (the captures'
/// value).
pub const DEBEZIUM_VERSION: &str = "3.6.3.Final";
