//! Source positions: where a change came from, and what a checkpoint acknowledges.
//!
//! A position must totally order every change of a source, because sinks acknowledge "everything
//! up to here" and the checkpointer takes the minimum over sinks. For Postgres that order is not
//! the WAL order of the rows: transactions are decoded in *commit* order, so a row's place in
//! the stream is `(commit_lsn, index)` and its own WAL location `lsn` only breaks ties (it never
//! does in practice, `index` is unique inside a transaction).
//!
//! # Traps
//! - Rows of one COPY or multi-row INSERT can share an `lsn`; that is why `index` exists.
//! - The end of a transaction is `index: u32::MAX` so it sorts after all its rows; acknowledging
//!   it acknowledges the whole transaction.
//! - `Lsn` prints like Postgres (`%X/%X`, no zero padding): lexical order of the string is *not*
//!   the LSN order. Use [`Position::to_bytes`] where bytes must sort.

use std::fmt;
use std::str::FromStr;

pub use crate::mysql_position::{Gtid, MysqlPosition};

/// Errors parsing or decoding a position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PositionError {
    /// A string that is not an LSN (`16/B374D848`).
    #[error("invalid LSN {input:?}: {reason}")]
    InvalidLsn { input: String, reason: &'static str },
    /// A string that is not a checkpoint position (`pg:0/16B3748:0/16B3700:12`).
    #[error("invalid position {input:?}: {reason}")]
    InvalidPosition { input: String, reason: &'static str },
    /// Bytes that are not a [`Position::to_bytes`] encoding.
    #[error("invalid position bytes (length {len}): {reason}")]
    InvalidBytes { len: usize, reason: &'static str },
}

/// A PostgreSQL WAL location (`pg_lsn`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    /// `0/0`, Postgres' `InvalidXLogRecPtr`.
    pub const INVALID: Lsn = Lsn(0);
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl FromStr for Lsn {
    type Err = PositionError;

    /// Parses `%X/%X` as `pg_lsn_in` does: 1 to 8 hex digits each side, either case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| PositionError::InvalidLsn {
            input: s.to_owned(),
            reason,
        };
        let (hi, lo) = s.split_once('/').ok_or_else(|| err("missing '/'"))?;
        let half = |h: &str| -> Result<u64, PositionError> {
            if h.is_empty() || h.len() > 8 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err("each half must be 1 to 8 hex digits"));
            }
            u64::from_str_radix(h, 16).map_err(|_| err("not hex"))
        };
        Ok(Lsn((half(hi)? << 32) | half(lo)?))
    }
}

impl From<u64> for Lsn {
    fn from(v: u64) -> Self {
        Lsn(v)
    }
}

/// A Postgres change position; see the module doc for the order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PgPosition {
    /// LSN of the transaction's Commit message.
    pub commit_lsn: Lsn,
    /// The event's own WAL position (XLogData `wal_start`).
    pub lsn: Lsn,
    /// 0-based ordinal of the event in its transaction; `u32::MAX` for the transaction's end.
    pub index: u32,
}

impl PgPosition {
    /// The end of a transaction: sorts after every event of it.
    pub fn end(commit_lsn: Lsn, end_lsn: Lsn) -> Self {
        PgPosition {
            commit_lsn,
            lsn: end_lsn,
            index: u32::MAX,
        }
    }

    /// Whether this is a transaction end (acknowledges the whole transaction).
    pub fn is_end(&self) -> bool {
        self.index == u32::MAX
    }

    /// The position of every row, and the end, of chunk `chunk` of an initial snapshot taken
    /// at `consistent_point` (the slot's consistent point, where streaming starts):
    /// `commit_lsn = consistent_point - 1`, `index = chunk`, `lsn = consistent_point`.
    ///
    /// It sorts after everything committed before the consistent point (an older slot's
    /// stream: WAL records start 8-byte aligned, so no commit is at `consistent_point - 1`)
    /// and before everything streamed from it (commits at or after the consistent point);
    /// chunks sort by their number (`docs/design/change-model.md`, "Snapshot positions").
    /// `lsn` is what Debezium reports as `source.lsn` of a snapshot row, and what a source
    /// may confirm upstream when this is acknowledged: the slot is already there.
    pub fn snapshot(consistent_point: Lsn, chunk: u32) -> Self {
        PgPosition {
            commit_lsn: Lsn(consistent_point.0.saturating_sub(1)),
            lsn: consistent_point,
            index: chunk,
        }
    }

    /// The chunk number if this is a [`PgPosition::snapshot`] position.
    pub fn snapshot_chunk(&self) -> Option<u32> {
        (self.lsn.0 > 0 && self.commit_lsn.0 == self.lsn.0 - 1 && !self.is_end())
            .then_some(self.index)
    }
}

impl Ord for PgPosition {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.commit_lsn, self.index, self.lsn).cmp(&(other.commit_lsn, other.index, other.lsn))
    }
}

impl PartialOrd for PgPosition {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// A position in a Delta table's change feed: the table version and the row's index among the
/// version's changes (`u32::MAX` is the version's end). Ordered by `(version, index)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeltaPosition {
    pub version: u64,
    pub index: u32,
}

impl DeltaPosition {
    /// The end of a table version: sorts after every row of it.
    pub fn end(version: u64) -> Self {
        DeltaPosition {
            version,
            index: u32::MAX,
        }
    }
}

/// A position of the Kafka source (`src/source/kafka`): Kafka offsets are ordered per
/// partition only, so the source numbers what it emits itself. `epoch` is raised at every
/// start of the source (persisted before use, never below the Unix time in seconds), `seq`
/// numbers the consumed batches of one run, `index` is the row inside the batch (`u32::MAX`
/// = the batch's end). Ordered by `(epoch, seq, index)`; the per-partition offsets that are
/// safe to resume from are kept by the source beside the checkpoint
/// (`docs/design/change-model.md`, "Kafka positions").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KafkaPosition {
    pub epoch: u32,
    pub seq: u64,
    pub index: u32,
}

impl KafkaPosition {
    /// The end of batch `seq`: sorts after every row of it.
    pub fn end(epoch: u32, seq: u64) -> Self {
        KafkaPosition {
            epoch,
            seq,
            index: u32::MAX,
        }
    }
}

/// A position in an Iceberg table's history (`src/source/iceberg`): the snapshot's sequence
/// number and the change's index among the snapshot's changes (`u64::MAX` = the snapshot's
/// end). Ordered by `(sequence, index)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IcebergPosition {
    pub sequence: u64,
    pub index: u64,
}

impl IcebergPosition {
    /// The end of the snapshot with sequence number `sequence`.
    pub fn end(sequence: u64) -> Self {
        IcebergPosition {
            sequence,
            index: u64::MAX,
        }
    }
}

/// Tag byte of a Delta change-feed position.
const TAG_DELTA: u8 = 3;
/// Tag byte of a Kafka-source position: tag, epoch (4 BE), seq (8 BE), index (4 BE).
const TAG_KAFKA: u8 = 4;
const KAFKA_BYTES_LEN: usize = 1 + 4 + 8 + 4;
/// Tag byte of an Iceberg-source position: tag, sequence (8 BE), index (8 BE).
const TAG_ICEBERG: u8 = 5;
const ICEBERG_BYTES_LEN: usize = 1 + 8 + 8;
/// Length of the Delta byte encoding: tag, version (8 BE), index (4 BE).
const DELTA_BYTES_LEN: usize = 1 + 8 + 4;

/// A source-neutral position. Ordered within one source kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Position {
    Postgres(PgPosition),
    /// MySQL/MariaDB binlog (`crate::mysql_position`).
    Mysql(MysqlPosition),
    /// A Delta table's change feed (`delta:<version>:<index>`).
    Delta(DeltaPosition),
    /// Debezium-format Kafka topics (`kafka:<epoch>:<seq>:<index>`).
    Kafka(KafkaPosition),
    /// An Iceberg table's snapshots (`iceberg:<sequence>:<index>`).
    Iceberg(IcebergPosition),
}

/// Tag byte of [`Position::to_bytes`]; new sources take new tags, never reuse one.
const TAG_POSTGRES: u8 = 1;
/// Tag byte of a MySQL/MariaDB position.
const TAG_MYSQL: u8 = 2;
/// Length of the Postgres byte encoding: tag, commit_lsn, index, lsn.
const PG_BYTES_LEN: usize = 1 + 8 + 4 + 8;

impl Position {
    /// Shorthand for a Postgres position.
    pub fn pg(commit_lsn: Lsn, lsn: Lsn, index: u32) -> Self {
        Position::Postgres(PgPosition {
            commit_lsn,
            lsn,
            index,
        })
    }

    /// The Postgres position, if this is one.
    pub fn as_pg(&self) -> Option<&PgPosition> {
        match self {
            Position::Postgres(p) => Some(p),
            _ => None,
        }
    }

    /// The MySQL/MariaDB position, if this is one.
    pub fn as_mysql(&self) -> Option<&MysqlPosition> {
        match self {
            Position::Mysql(p) => Some(p),
            _ => None,
        }
    }

    /// Order-preserving encoding: comparing the bytes gives the same order as `Ord`.
    /// Postgres: `0x01`, `commit_lsn` (8 bytes BE), `index` (4 BE), `lsn` (8 BE).
    /// MySQL: `0x02`, then see [`crate::mysql_position`].
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(crate::mysql_position::MYSQL_BYTES_LEN);
        self.write_bytes(&mut out);
        out
    }

    /// Appends [`Position::to_bytes`] to `out` (no allocation when `out` has room).
    pub fn write_bytes(&self, out: &mut Vec<u8>) {
        match self {
            Position::Postgres(p) => {
                out.push(TAG_POSTGRES);
                out.extend_from_slice(&p.commit_lsn.0.to_be_bytes());
                out.extend_from_slice(&p.index.to_be_bytes());
                out.extend_from_slice(&p.lsn.0.to_be_bytes());
            }
            Position::Mysql(p) => {
                out.push(TAG_MYSQL);
                crate::mysql_position::write_bytes(p, out);
            }
            Position::Delta(p) => {
                out.push(TAG_DELTA);
                out.extend_from_slice(&p.version.to_be_bytes());
                out.extend_from_slice(&p.index.to_be_bytes());
            }
            Position::Kafka(p) => {
                out.push(TAG_KAFKA);
                out.extend_from_slice(&p.epoch.to_be_bytes());
                out.extend_from_slice(&p.seq.to_be_bytes());
                out.extend_from_slice(&p.index.to_be_bytes());
            }
            Position::Iceberg(p) => {
                out.push(TAG_ICEBERG);
                out.extend_from_slice(&p.sequence.to_be_bytes());
                out.extend_from_slice(&p.index.to_be_bytes());
            }
        }
    }

    /// Inverse of [`Position::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PositionError> {
        let err = |reason| PositionError::InvalidBytes {
            len: bytes.len(),
            reason,
        };
        match bytes.first() {
            Some(&TAG_POSTGRES) => {
                if bytes.len() != PG_BYTES_LEN {
                    return Err(err("a Postgres position is 21 bytes"));
                }
                let u64_at = |at: usize| -> Result<u64, PositionError> {
                    let b = bytes.get(at..at + 8).ok_or_else(|| err("truncated"))?;
                    Ok(u64::from_be_bytes(
                        b.try_into().map_err(|_| err("truncated"))?,
                    ))
                };
                let idx = bytes.get(9..13).ok_or_else(|| err("truncated"))?;
                let index = u32::from_be_bytes(idx.try_into().map_err(|_| err("truncated"))?);
                Ok(Position::pg(Lsn(u64_at(1)?), Lsn(u64_at(13)?), index))
            }
            Some(&TAG_MYSQL) => Ok(Position::Mysql(crate::mysql_position::from_bytes(bytes)?)),
            Some(&TAG_DELTA) => {
                let (Some(v), Some(i), DELTA_BYTES_LEN) =
                    (bytes.get(1..9), bytes.get(9..13), bytes.len())
                else {
                    return Err(err("a Delta position is 13 bytes"));
                };
                Ok(Position::Delta(DeltaPosition {
                    version: u64::from_be_bytes(v.try_into().map_err(|_| err("truncated"))?),
                    index: u32::from_be_bytes(i.try_into().map_err(|_| err("truncated"))?),
                }))
            }
            Some(&TAG_KAFKA) => {
                let (Some(e), Some(s), Some(i), KAFKA_BYTES_LEN) = (
                    bytes.get(1..5),
                    bytes.get(5..13),
                    bytes.get(13..17),
                    bytes.len(),
                ) else {
                    return Err(err("a Kafka position is 17 bytes"));
                };
                Ok(Position::Kafka(KafkaPosition {
                    epoch: u32::from_be_bytes(e.try_into().map_err(|_| err("truncated"))?),
                    seq: u64::from_be_bytes(s.try_into().map_err(|_| err("truncated"))?),
                    index: u32::from_be_bytes(i.try_into().map_err(|_| err("truncated"))?),
                }))
            }
            Some(&TAG_ICEBERG) => {
                let (Some(s), Some(i), ICEBERG_BYTES_LEN) =
                    (bytes.get(1..9), bytes.get(9..17), bytes.len())
                else {
                    return Err(err("an Iceberg position is 17 bytes"));
                };
                Ok(Position::Iceberg(IcebergPosition {
                    sequence: u64::from_be_bytes(s.try_into().map_err(|_| err("truncated"))?),
                    index: u64::from_be_bytes(i.try_into().map_err(|_| err("truncated"))?),
                }))
            }
            Some(_) => Err(err("unknown source tag")),
            None => Err(err("empty")),
        }
    }
}

impl From<PgPosition> for Position {
    fn from(p: PgPosition) -> Self {
        Position::Postgres(p)
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Postgres(p) => write!(f, "pg:{}:{}:{}", p.commit_lsn, p.lsn, p.index),
            Position::Mysql(p) => write!(f, "{p}"),
            Position::Delta(p) => write!(f, "delta:{}:{}", p.version, p.index),
            Position::Kafka(p) => write!(f, "kafka:{}:{}:{}", p.epoch, p.seq, p.index),
            Position::Iceberg(p) => write!(f, "iceberg:{}:{}", p.sequence, p.index),
        }
    }
}

impl FromStr for Position {
    type Err = PositionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| PositionError::InvalidPosition {
            input: s.to_owned(),
            reason,
        };
        if let Some(rest) = s.strip_prefix("delta:") {
            let (v, i) = rest
                .split_once(':')
                .ok_or_else(|| err("expected delta:<version>:<index>"))?;
            let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
            if !digits(v) || !digits(i) {
                return Err(err("version and index must be decimal numbers"));
            }
            return Ok(Position::Delta(DeltaPosition {
                version: v.parse().map_err(|_| err("version out of range"))?,
                index: i.parse().map_err(|_| err("index out of range"))?,
            }));
        }
        let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
        if let Some(rest) = s.strip_prefix("kafka:") {
            let mut it = rest.split(':');
            let (Some(e), Some(q), Some(i), None) = (it.next(), it.next(), it.next(), it.next())
            else {
                return Err(err("expected kafka:<epoch>:<seq>:<index>"));
            };
            if !digits(e) || !digits(q) || !digits(i) {
                return Err(err("epoch, seq and index must be decimal numbers"));
            }
            return Ok(Position::Kafka(KafkaPosition {
                epoch: e.parse().map_err(|_| err("epoch out of range"))?,
                seq: q.parse().map_err(|_| err("seq out of range"))?,
                index: i.parse().map_err(|_| err("index out of range"))?,
            }));
        }
        if let Some(rest) = s.strip_prefix("iceberg:") {
            let (q, i) = rest
                .split_once(':')
                .ok_or_else(|| err("expected iceberg:<sequence>:<index>"))?;
            if !digits(q) || !digits(i) {
                return Err(err("sequence and index must be decimal numbers"));
            }
            return Ok(Position::Iceberg(IcebergPosition {
                sequence: q.parse().map_err(|_| err("sequence out of range"))?,
                index: i.parse().map_err(|_| err("index out of range"))?,
            }));
        }
        if let Some(rest) = s.strip_prefix("my:") {
            return Ok(Position::Mysql(crate::mysql_position::parse(s, rest)?));
        }
        let rest = s
            .strip_prefix("pg:")
            .ok_or_else(|| err("expected prefix 'pg:', 'my:', 'delta:', 'kafka:' or 'iceberg:'"))?;
        let mut parts = rest.split(':');
        let (Some(c), Some(l), Some(i), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(err("expected pg:<commit_lsn>:<lsn>:<index>"));
        };
        let commit_lsn = c.parse().map_err(|_| err("invalid commit LSN"))?;
        let lsn = l.parse().map_err(|_| err("invalid LSN"))?;
        if i.is_empty() || !i.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("index must be a decimal number"));
        }
        let index = i.parse().map_err(|_| err("index out of range"))?;
        Ok(Position::pg(commit_lsn, lsn, index))
    }
}

macro_rules! serde_as_string {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
serde_as_string!(Lsn);
serde_as_string!(Position);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lsn_display_parse() {
        assert_eq!(Lsn(0x16_B374_D848).to_string(), "16/B374D848");
        assert_eq!(Lsn(0).to_string(), "0/0");
        assert_eq!("16/b374d848".parse::<Lsn>().unwrap(), Lsn(0x16_B374_D848));
        assert!("16".parse::<Lsn>().is_err());
        assert!("/1".parse::<Lsn>().is_err());
        assert!("123456789/0".parse::<Lsn>().is_err());
        assert!("1/+2".parse::<Lsn>().is_err());
    }

    #[test]
    fn position_display_parse() {
        let p = Position::pg(Lsn(0x16B3748), Lsn(0x16B3700), 12);
        assert_eq!(p.to_string(), "pg:0/16B3748:0/16B3700:12");
        assert_eq!("pg:0/16B3748:0/16B3700:12".parse::<Position>().unwrap(), p);
        assert!("pg:0/1:0/1".parse::<Position>().is_err());
        assert!("pg:0/1:0/1:1:2".parse::<Position>().is_err());
        assert!("my:0/1:0/1:1".parse::<Position>().is_err());
        assert!("pg:0/1:0/1:-1".parse::<Position>().is_err());
    }

    #[test]
    fn end_sorts_after_rows() {
        let c = Lsn(100);
        let end = Position::from(PgPosition::end(c, Lsn(120)));
        let row = Position::pg(c, Lsn(200), 5);
        assert!(row < end);
        assert!(end < Position::pg(Lsn(101), Lsn(0), 0));
    }

    #[test]
    fn snapshot_positions_sit_between_old_and_new_stream() {
        let c = Lsn(0x1_0000_0100);
        let before = Position::from(PgPosition::end(Lsn(0x1_0000_00F8), Lsn(0x1_0000_0120)));
        let chunks: Vec<Position> = (0..3).map(|i| PgPosition::snapshot(c, i).into()).collect();
        let streamed = Position::pg(c, Lsn(0x1_0000_00A0), 0);
        assert!(before < chunks[0] && chunks[0] < chunks[1] && chunks[1] < chunks[2]);
        assert!(chunks[2] < streamed);
        assert!(chunks[2] < Position::from(PgPosition::end(c, c)));
        assert_eq!(PgPosition::snapshot(c, 7).snapshot_chunk(), Some(7));
        assert_eq!(PgPosition::end(c, c).snapshot_chunk(), None);
        let p: Position = PgPosition::snapshot(c, 7).into();
        assert_eq!(p.to_string().parse::<Position>().unwrap(), p);
    }

    #[test]
    fn from_bytes_rejects_garbage() {
        assert!(Position::from_bytes(&[]).is_err());
        assert!(Position::from_bytes(&[2; 21]).is_err());
        assert!(Position::from_bytes(&[1; 20]).is_err());
    }

    fn arb_delta() -> impl Strategy<Value = Position> {
        (any::<u64>(), any::<u32>())
            .prop_map(|(version, index)| Position::Delta(DeltaPosition { version, index }))
    }

    #[test]
    fn delta_position_forms() {
        let p = Position::Delta(DeltaPosition {
            version: 7,
            index: 3,
        });
        assert_eq!(p.to_string(), "delta:7:3");
        assert_eq!("delta:7:3".parse::<Position>().unwrap(), p);
        assert!("delta:7".parse::<Position>().is_err());
        assert!("delta:x:1".parse::<Position>().is_err());
        assert!(Position::from_bytes(&[3; 12]).is_err());
        assert!(p < Position::Delta(DeltaPosition::end(7)));
    }

    fn arb_kafka_iceberg() -> impl Strategy<Value = Position> {
        prop_oneof![
            (any::<u32>(), any::<u64>(), any::<u32>()).prop_map(|(epoch, seq, index)| {
                Position::Kafka(KafkaPosition { epoch, seq, index })
            }),
            (any::<u64>(), any::<u64>()).prop_map(|(sequence, index)| Position::Iceberg(
                IcebergPosition { sequence, index }
            )),
        ]
    }

    #[test]
    fn kafka_and_iceberg_position_forms() {
        let k = Position::Kafka(KafkaPosition {
            epoch: 1_700_000_000,
            seq: 5,
            index: 2,
        });
        assert_eq!(k.to_string(), "kafka:1700000000:5:2");
        assert_eq!("kafka:1700000000:5:2".parse::<Position>().unwrap(), k);
        assert!(k < Position::Kafka(KafkaPosition::end(1_700_000_000, 5)));
        assert!(
            Position::Kafka(KafkaPosition::end(1, u64::MAX))
                < Position::Kafka(KafkaPosition {
                    epoch: 2,
                    seq: 0,
                    index: 0
                })
        );
        let i = Position::Iceberg(IcebergPosition {
            sequence: 3,
            index: 9,
        });
        assert_eq!(i.to_string(), "iceberg:3:9");
        assert_eq!("iceberg:3:9".parse::<Position>().unwrap(), i);
        assert!("kafka:1:2".parse::<Position>().is_err());
        assert!("iceberg:x:1".parse::<Position>().is_err());
        assert!(Position::from_bytes(&[4; 16]).is_err());
        assert!(Position::from_bytes(&[5; 18]).is_err());
    }

    proptest! {
        #[test]
        fn prop_kafka_iceberg_positions_round_trip_and_order(a in arb_kafka_iceberg(), b in arb_kafka_iceberg()) {
            prop_assert_eq!(a.to_string().parse::<Position>().unwrap(), a);
            prop_assert_eq!(Position::from_bytes(&a.to_bytes()).unwrap(), a);
            prop_assert_eq!(a.to_bytes().cmp(&b.to_bytes()), a.cmp(&b));
        }

        #[test]
        fn prop_delta_position_round_trips_and_orders(a in arb_delta(), b in arb_delta()) {
            prop_assert_eq!(a.to_string().parse::<Position>().unwrap(), a);
            prop_assert_eq!(Position::from_bytes(&a.to_bytes()).unwrap(), a);
            prop_assert_eq!(a.to_bytes().cmp(&b.to_bytes()), a.cmp(&b));
        }
    }

    fn arb_position() -> impl Strategy<Value = Position> {
        (any::<u64>(), any::<u64>(), any::<u32>())
            .prop_map(|(c, l, i)| Position::pg(Lsn(c), Lsn(l), i))
    }

    proptest! {
        #[test]
        fn prop_position_string_round_trip(p in arb_position()) {
            prop_assert_eq!(p.to_string().parse::<Position>().unwrap(), p);
        }

        #[test]
        fn prop_position_bytes_round_trip_and_order(a in arb_position(), b in arb_position()) {
            prop_assert_eq!(Position::from_bytes(&a.to_bytes()).unwrap(), a);
            prop_assert_eq!(a.to_bytes().cmp(&b.to_bytes()), a.cmp(&b));
        }

        #[test]
        fn prop_lsn_round_trip(v in any::<u64>()) {
            prop_assert_eq!(Lsn(v).to_string().parse::<Lsn>().unwrap(), Lsn(v));
        }
    }
}
