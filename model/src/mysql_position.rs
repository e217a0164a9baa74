//! MySQL/MariaDB binlog positions: the [`MysqlPosition`] variant of [`Position`] and [`Gtid`].
//!
//! A binlog is a sequence of files `<basename>.000001`, `<basename>.000002`, ...; every event
//! has a byte offset in its file, and the server writes a transaction's events contiguously at
//! commit time, so binlog order *is* commit order (unlike Postgres WAL). A row's place in the
//! stream is therefore `(file, txn_pos, index)`:
//!
//! ```text
//!  file 7: ... | GTID/BEGIN @4000 | TABLE_MAP | WRITE_ROWS @4200 (rows 0..2) | UPDATE_ROWS @4500 | XID | ...
//!                 txn_pos = 4000                 event_pos 4200, row 0..2         event_pos 4500, row 0
//!                                                 index 0..2                      index 3          end: index u32::MAX,
//!                                                                                                       event_pos = XID end
//! ```
//!
//! - `file`: the numeric suffix of the binlog file name (`mysql-bin.000007` → 7). The basename
//!   is server state, not position: the source looks it up (`SHOW BINARY LOGS`) and formats the
//!   name again. Keeping a number keeps [`Position`] `Copy` and totally ordered.
//! - `txn_pos`: offset of the transaction's first event (the GTID event, or BEGIN when GTIDs
//!   are off). A restart from a checkpoint *inside* a transaction re-reads from here and skips
//!   rows up to `index`.
//! - `event_pos`: offset of the rows event that carried the row (Debezium's `source.pos`); for a
//!   transaction end, the offset right after the commit event, where the next transaction starts.
//! - `row`: ordinal of the row inside its rows event (Debezium's `source.row`).
//! - `index`: ordinal of the row inside its transaction; `u32::MAX` for the end.
//! - `gtid`: the transaction's GTID when the server has GTIDs on.
//!
//! # Traps
//! - Order is `(file, txn_pos, index)`, then the other fields. Two servers (a failover) have
//!   unrelated files and offsets: positions only compare within one server's binlog. GTIDs
//!   survive a failover; file/offset do not.
//! - A binlog file name can have more than 6 digits (`.1000000` after `.999999`): the number is
//!   parsed, never compared as text.
//! - MySQL GTIDs (`uuid:gno`) and MariaDB GTIDs (`domain-server-seq`) are different things; a
//!   MySQL 8.4 tagged GTID (`uuid:tag:gno`) is not held here (the tag is not `Copy`): the source
//!   keeps tagged GTID sets in its own state.

use std::fmt;
use std::str::FromStr;

use crate::position::{Position, PositionError};

/// A transaction's global id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Gtid {
    /// MySQL: source server UUID and transaction number (`3E11FA47-71CA-11E1-9E33-C80AA9429562:23`).
    Mysql { uuid: [u8; 16], gno: u64 },
    /// MariaDB: domain id, server id and sequence number (`0-1-100`).
    Mariadb { domain: u32, server: u32, seq: u64 },
}

impl Gtid {
    /// The server UUID in MySQL's text form (lower-case, dashed).
    pub fn uuid_string(uuid: &[u8; 16]) -> String {
        let mut s = String::with_capacity(36);
        for (i, b) in uuid.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                s.push('-');
            }
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    /// Parses a dashed or undashed 32-hex-digit UUID.
    pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
        let hex: Vec<u8> = s.bytes().filter(|&b| b != b'-').collect();
        if hex.len() != 32 || s.len() > 36 {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, pair) in hex.chunks(2).enumerate() {
            let txt = std::str::from_utf8(pair).ok()?;
            out[i] = u8::from_str_radix(txt, 16).ok()?;
        }
        Some(out)
    }
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Gtid::Mysql { uuid, gno } => write!(f, "{}:{gno}", Gtid::uuid_string(uuid)),
            Gtid::Mariadb {
                domain,
                server,
                seq,
            } => write!(f, "{domain}-{server}-{seq}"),
        }
    }
}

impl FromStr for Gtid {
    type Err = PositionError;

    /// `uuid:gno` (MySQL) or `domain-server-seq` (MariaDB).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| PositionError::InvalidPosition {
            input: s.to_owned(),
            reason,
        };
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if let Some((u, n)) = s.split_once(':') {
            let uuid = Gtid::parse_uuid(u).ok_or_else(|| err("invalid server UUID"))?;
            if !digits(n) {
                return Err(err("GTID number must be decimal"));
            }
            let gno = n.parse().map_err(|_| err("GTID number out of range"))?;
            return Ok(Gtid::Mysql { uuid, gno });
        }
        let mut parts = s.split('-');
        let (Some(d), Some(sv), Some(q), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(err("expected uuid:gno or domain-server-seq"));
        };
        if !(digits(d) && digits(sv) && digits(q)) {
            return Err(err("MariaDB GTID parts must be decimal"));
        }
        Ok(Gtid::Mariadb {
            domain: d.parse().map_err(|_| err("domain out of range"))?,
            server: sv.parse().map_err(|_| err("server id out of range"))?,
            seq: q.parse().map_err(|_| err("sequence out of range"))?,
        })
    }
}

/// A MySQL/MariaDB change position; see the module doc.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MysqlPosition {
    /// Numeric suffix of the binlog file name.
    pub file: u32,
    /// Offset of the transaction's first event.
    pub txn_pos: u64,
    /// Offset of the row's rows event; for an end, the offset after the commit event.
    pub event_pos: u64,
    /// Ordinal of the row inside its rows event.
    pub row: u32,
    /// Ordinal of the row inside its transaction; `u32::MAX` for the end.
    pub index: u32,
    /// The transaction's GTID, if GTIDs are on.
    pub gtid: Option<Gtid>,
}

impl MysqlPosition {
    /// Every row, and the end, of chunk `chunk` of a snapshot taken at binlog `file:pos`
    /// (where streaming starts): `txn_pos = pos - 1`, `index = chunk`, `event_pos = pos`
    /// (Debezium's `source.pos` of a snapshot row). It sorts after the transaction that ended
    /// at `pos` and before the one starting there (`docs/design/change-model.md`, "Snapshot
    /// positions"). Streaming resumes from [`MysqlPosition::snapshot_resume`], never from
    /// this (it is not a transaction end).
    pub fn snapshot(file: u32, pos: u64, chunk: u32) -> Self {
        MysqlPosition {
            file,
            txn_pos: pos.saturating_sub(1),
            event_pos: pos,
            row: 0,
            index: chunk,
            gtid: None,
        }
    }

    /// Where streaming resumes after a snapshot at `file:pos`: an end that sorts after every
    /// chunk of it and resumes reading at `pos`.
    pub fn snapshot_resume(file: u32, pos: u64) -> Self {
        MysqlPosition::end(file, pos.saturating_sub(1), pos, None)
    }

    /// The end of a transaction that started at `txn_pos` and whose commit event ends at
    /// `next_pos` (where the next transaction starts).
    pub fn end(file: u32, txn_pos: u64, next_pos: u64, gtid: Option<Gtid>) -> Self {
        MysqlPosition {
            file,
            txn_pos,
            event_pos: next_pos,
            row: 0,
            index: u32::MAX,
            gtid,
        }
    }

    /// Whether this is a transaction end (acknowledges the whole transaction).
    pub fn is_end(&self) -> bool {
        self.index == u32::MAX
    }

    /// Where a restart reads from: after the transaction for an end, else its first event
    /// (rows with `index` up to this one's are then skipped).
    pub fn resume_offset(&self) -> u64 {
        if self.is_end() {
            self.event_pos
        } else {
            self.txn_pos
        }
    }

    fn key(&self) -> (u32, u64, u32, u64, u32, Option<Gtid>) {
        (
            self.file,
            self.txn_pos,
            self.index,
            self.event_pos,
            self.row,
            self.gtid,
        )
    }
}

impl Ord for MysqlPosition {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

impl PartialOrd for MysqlPosition {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl From<MysqlPosition> for Position {
    fn from(p: MysqlPosition) -> Self {
        Position::Mysql(p)
    }
}

/// Length of the MySQL byte encoding: tag, file, txn_pos, index, event_pos, row, gtid kind,
/// 24 GTID bytes.
pub(crate) const MYSQL_BYTES_LEN: usize = 1 + 4 + 8 + 4 + 8 + 4 + 1 + 24;

/// Appends the order-preserving bytes (after the tag byte, which the caller writes).
pub(crate) fn write_bytes(p: &MysqlPosition, out: &mut Vec<u8>) {
    out.extend_from_slice(&p.file.to_be_bytes());
    out.extend_from_slice(&p.txn_pos.to_be_bytes());
    out.extend_from_slice(&p.index.to_be_bytes());
    out.extend_from_slice(&p.event_pos.to_be_bytes());
    out.extend_from_slice(&p.row.to_be_bytes());
    match p.gtid {
        None => {
            out.push(0);
            out.extend_from_slice(&[0; 24]);
        }
        Some(Gtid::Mysql { uuid, gno }) => {
            out.push(1);
            out.extend_from_slice(&uuid);
            out.extend_from_slice(&gno.to_be_bytes());
        }
        Some(Gtid::Mariadb {
            domain,
            server,
            seq,
        }) => {
            out.push(2);
            out.extend_from_slice(&domain.to_be_bytes());
            out.extend_from_slice(&server.to_be_bytes());
            out.extend_from_slice(&seq.to_be_bytes());
            out.extend_from_slice(&[0; 8]);
        }
    }
}

/// Inverse of [`write_bytes`]; `bytes` includes the tag.
pub(crate) fn from_bytes(bytes: &[u8]) -> Result<MysqlPosition, PositionError> {
    let err = |reason| PositionError::InvalidBytes {
        len: bytes.len(),
        reason,
    };
    if bytes.len() != MYSQL_BYTES_LEN {
        return Err(err("a MySQL position is 54 bytes"));
    }
    let take = |at: usize, n: usize| bytes.get(at..at + n).ok_or_else(|| err("truncated"));
    let u32_at = |at| -> Result<u32, PositionError> {
        Ok(u32::from_be_bytes(
            take(at, 4)?.try_into().map_err(|_| err("truncated"))?,
        ))
    };
    let u64_at = |at| -> Result<u64, PositionError> {
        Ok(u64::from_be_bytes(
            take(at, 8)?.try_into().map_err(|_| err("truncated"))?,
        ))
    };
    let gtid = match bytes[29] {
        0 if take(30, 24)?.iter().all(|&b| b == 0) => None,
        1 => Some(Gtid::Mysql {
            uuid: take(30, 16)?.try_into().map_err(|_| err("truncated"))?,
            gno: u64_at(46)?,
        }),
        2 if take(46, 8)?.iter().all(|&b| b == 0) => Some(Gtid::Mariadb {
            domain: u32_at(30)?,
            server: u32_at(34)?,
            seq: u64_at(38)?,
        }),
        _ => return Err(err("invalid GTID bytes")),
    };
    Ok(MysqlPosition {
        file: u32_at(1)?,
        txn_pos: u64_at(5)?,
        index: u32_at(13)?,
        event_pos: u64_at(17)?,
        row: u32_at(25)?,
        gtid,
    })
}

impl fmt::Display for MysqlPosition {
    /// `my:<file>:<txn_pos>:<event_pos>:<row>:<index>:<gtid or ->`; the GTID comes last because
    /// a MySQL GTID contains `:`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "my:{}:{}:{}:{}:{}:",
            self.file, self.txn_pos, self.event_pos, self.row, self.index
        )?;
        match &self.gtid {
            Some(g) => write!(f, "{g}"),
            None => f.write_str("-"),
        }
    }
}

/// Parses the part after `my:`.
pub(crate) fn parse(s: &str, rest: &str) -> Result<MysqlPosition, PositionError> {
    let err = |reason| PositionError::InvalidPosition {
        input: s.to_owned(),
        reason,
    };
    let mut parts = rest.splitn(6, ':');
    let mut num = |what| -> Result<u64, PositionError> {
        let t = parts.next().ok_or_else(|| err(what))?;
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err(what));
        }
        t.parse().map_err(|_| err(what))
    };
    let expected = "expected my:<file>:<txn_pos>:<event_pos>:<row>:<index>:<gtid|->";
    let file = u32::try_from(num(expected)?).map_err(|_| err("file number out of range"))?;
    let txn_pos = num(expected)?;
    let event_pos = num(expected)?;
    let row = u32::try_from(num(expected)?).map_err(|_| err("row out of range"))?;
    let index = u32::try_from(num(expected)?).map_err(|_| err("index out of range"))?;
    let gtid = match parts.next() {
        Some("-") => None,
        Some(g) => Some(g.parse()?),
        None => return Err(err(expected)),
    };
    Ok(MysqlPosition {
        file,
        txn_pos,
        event_pos,
        row,
        index,
        gtid,
    })
}

/// The numeric suffix of a binlog file name (`mysql-bin.000042` → 42).
pub fn binlog_file_number(name: &str) -> Option<u32> {
    let (_, n) = name.rsplit_once('.')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// The binlog file name for a basename and number, formatted as the server does (at least six
/// digits, zero padded).
pub fn binlog_file_name(basename: &str, number: u32) -> String {
    format!("{basename}.{number:06}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const UUID: [u8; 16] = [
        0x3e, 0x11, 0xfa, 0x47, 0x71, 0xca, 0x11, 0xe1, 0x9e, 0x33, 0xc8, 0x0a, 0xa9, 0x42, 0x95,
        0x62,
    ];

    fn my(file: u32, txn_pos: u64, event_pos: u64, row: u32, index: u32) -> Position {
        Position::Mysql(MysqlPosition {
            file,
            txn_pos,
            event_pos,
            row,
            index,
            gtid: None,
        })
    }

    #[test]
    fn gtid_display_parse() {
        let g = Gtid::Mysql {
            uuid: UUID,
            gno: 23,
        };
        assert_eq!(g.to_string(), "3e11fa47-71ca-11e1-9e33-c80aa9429562:23");
        assert_eq!(
            "3E11FA47-71CA-11E1-9E33-C80AA9429562:23"
                .parse::<Gtid>()
                .unwrap(),
            g
        );
        let m = Gtid::Mariadb {
            domain: 0,
            server: 1,
            seq: 100,
        };
        assert_eq!(m.to_string(), "0-1-100");
        assert_eq!("0-1-100".parse::<Gtid>().unwrap(), m);
        assert!("0-1".parse::<Gtid>().is_err());
        assert!("0-1-x".parse::<Gtid>().is_err());
        assert!("nope:1".parse::<Gtid>().is_err());
        assert!("3e11fa47-71ca-11e1-9e33-c80aa9429562:-1"
            .parse::<Gtid>()
            .is_err());
    }

    #[test]
    fn position_display_parse() {
        let p = Position::Mysql(MysqlPosition {
            file: 7,
            txn_pos: 4000,
            event_pos: 4200,
            row: 2,
            index: 2,
            gtid: Some(Gtid::Mysql {
                uuid: UUID,
                gno: 23,
            }),
        });
        let s = "my:7:4000:4200:2:2:3e11fa47-71ca-11e1-9e33-c80aa9429562:23";
        assert_eq!(p.to_string(), s);
        assert_eq!(s.parse::<Position>().unwrap(), p);
        let q = my(1, 4, 4, 0, u32::MAX);
        assert_eq!(q.to_string(), "my:1:4:4:0:4294967295:-");
        assert_eq!(q.to_string().parse::<Position>().unwrap(), q);
        assert!("my:1:4:4:0".parse::<Position>().is_err());
        assert!("my:1:4:4:0:1".parse::<Position>().is_err());
        assert!("my:1:4:4:0:1:x-y-z".parse::<Position>().is_err());
        assert!("my:-1:4:4:0:1:-".parse::<Position>().is_err());
        assert!("my:99999999999:4:4:0:1:-".parse::<Position>().is_err());
    }

    #[test]
    fn order_is_file_txn_index() {
        let end = my(3, 100, 900, 0, u32::MAX);
        assert!(my(3, 100, 800, 7, 12) < end);
        assert!(end < my(3, 900, 950, 0, 0));
        assert!(my(3, 900, 950, 0, 0) < my(4, 4, 120, 0, 0));
        // index decides inside a transaction even if event offsets disagree.
        assert!(my(3, 100, 800, 0, 1) < my(3, 100, 500, 0, 2));
        // Postgres sorts before MySQL (tags), but they never meet in one pipeline.
        assert!(Position::pg(crate::Lsn(u64::MAX), crate::Lsn(0), 0) < my(0, 0, 0, 0, 0));
    }

    #[test]
    fn resume_offsets() {
        let Position::Mysql(end) = my(3, 100, 900, 0, u32::MAX) else {
            unreachable!()
        };
        assert_eq!(end.resume_offset(), 900);
        let Position::Mysql(row) = my(3, 100, 800, 1, 4) else {
            unreachable!()
        };
        assert_eq!(row.resume_offset(), 100);
    }

    #[test]
    fn file_names() {
        assert_eq!(binlog_file_number("mysql-bin.000042"), Some(42));
        assert_eq!(binlog_file_number("a.b.1000000"), Some(1_000_000));
        assert_eq!(binlog_file_number("mysql-bin"), None);
        assert_eq!(binlog_file_number("mysql-bin.00x"), None);
        assert_eq!(binlog_file_name("mysql-bin", 42), "mysql-bin.000042");
        assert_eq!(binlog_file_name("b", 1_234_567), "b.1234567");
    }

    #[test]
    fn from_bytes_rejects_garbage() {
        let good = my(1, 2, 3, 4, 5).to_bytes();
        assert_eq!(good.len(), MYSQL_BYTES_LEN);
        assert!(Position::from_bytes(&good[..53]).is_err());
        let mut bad = good.clone();
        bad[29] = 9;
        assert!(Position::from_bytes(&bad).is_err());
        let mut bad = good;
        bad[40] = 1; // GTID bytes without a GTID kind
        assert!(Position::from_bytes(&bad).is_err());
    }

    fn arb_gtid() -> impl Strategy<Value = Option<Gtid>> {
        prop_oneof![
            Just(None),
            (any::<[u8; 16]>(), any::<u64>())
                .prop_map(|(uuid, gno)| Some(Gtid::Mysql { uuid, gno })),
            (any::<u32>(), any::<u32>(), any::<u64>()).prop_map(|(domain, server, seq)| Some(
                Gtid::Mariadb {
                    domain,
                    server,
                    seq
                }
            )),
        ]
    }

    fn arb_position() -> impl Strategy<Value = Position> {
        (
            0u32..4,
            0u64..4,
            any::<u64>(),
            any::<u32>(),
            prop_oneof![0u32..4, Just(u32::MAX)],
            arb_gtid(),
        )
            .prop_map(|(file, txn_pos, event_pos, row, index, gtid)| {
                Position::Mysql(MysqlPosition {
                    file,
                    txn_pos,
                    event_pos,
                    row,
                    index,
                    gtid,
                })
            })
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
    }
}
