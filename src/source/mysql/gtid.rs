//! Where a MySQL/MariaDB binlog dump starts, and the GTID arithmetic of a resume.
//!
//! ```text
//!  no checkpoint:  start = current ─► SHOW MASTER STATUS: file, pos (+ Executed_Gtid_Set)
//!                  start = gtid:<MySQL set> ─► COM_BINLOG_DUMP_GTID(set)
//!                  start = gtid:<MariaDB GTIDs> ─► @slave_connect_state + COM_BINLOG_DUMP
//!  checkpoint P (+ its executed set S, MySQL with gtid_mode=ON):
//!     P is a transaction end          ─► COM_BINLOG_DUMP_GTID(S)          (S holds P's transaction)
//!     P is inside transaction T (gtid) ─► COM_BINLOG_DUMP_GTID(S), S ∌ T; drop T's rows ≤ P.index
//!     otherwise                       ─► COM_BINLOG_DUMP(P's file, P.resume_offset()), skip ≤ P
//! ```
//!
//! # Traps
//! - **The set must match the position.** A checkpoint's set is settled at its own position
//!   (`tidemark_model::mysql_gtid_set::GtidLedger`); a set that does not contain an end's GTID,
//!   or contains the GTID of the transaction a checkpoint is inside, is inconsistent and the
//!   resume falls back to file and offset rather than lose or repeat a transaction.
//! - **`COM_BINLOG_DUMP_GTID` ignores file and offset** when `BINLOG_THROUGH_GTID` is set: the
//!   server picks the oldest file whose `PREVIOUS_GTIDS` is contained in the set, and says
//!   which one in the first (artificial) ROTATE. We send an empty name and offset 4, as
//!   MySQL's own replica does with `SOURCE_AUTO_POSITION=1`.
//! - **`gtid_mode` must be ON** on the server for a GTID dump (`OFF` refuses it; the
//!   `*_PERMISSIVE` modes allow anonymous transactions, whose positions have no GTID): only `ON`
//!   resumes by GTID, and `start = "gtid:…"` on a server without it is a configuration error.
//! - **After a failover** to another server the set is still right, but Tidemark positions
//!   order by file number and offset, which differ between servers: positions of the new
//!   server do not sort after the old checkpoint. Resuming by GTID on *another* server is
//!   therefore not supported yet (docs/mysql.md, "Start positions and resume").
//!   <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_com_binlog_dump_gtid.html>

use mysql_async::{BinlogStreamRequest, GnoInterval, Sid};
use tidemark_model::{Gtid, GtidSet, MysqlPosition};

/// What a dump request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DumpFrom {
    /// `COM_BINLOG_DUMP` from a file and offset.
    File { name: String, pos: u64 },
    /// `COM_BINLOG_DUMP_GTID`: every transaction not in the set.
    Gtids(GtidSet),
}

/// How a restart from a checkpoint resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// By GTID set; `skip`: the transaction the checkpoint is inside and its last
    /// acknowledged row index.
    Gtids {
        set: GtidSet,
        skip: Option<(Gtid, u32)>,
    },
    /// By file and offset (the file number of the position; its name is looked up).
    Position(MysqlPosition),
}

/// The resume for checkpoint `p` whose executed set is `set` (module doc). `gtid_dump`: the
/// server is MySQL with `gtid_mode=ON`.
pub fn resume_plan(p: &MysqlPosition, set: Option<&GtidSet>, gtid_dump: bool) -> Resume {
    let Some(set) = set.filter(|_| gtid_dump) else {
        return Resume::Position(*p);
    };
    match p.gtid {
        // An end: its transaction must be in the set (it was registered after it).
        Some(g @ Gtid::Mysql { .. }) if p.is_end() && set.contains(&g) => Resume::Gtids {
            set: set.clone(),
            skip: None,
        },
        // An anonymous end (gtid_mode was not ON for it): the set is still the one after it.
        None if p.is_end() => Resume::Gtids {
            set: set.clone(),
            skip: None,
        },
        // Inside a transaction: the set is the one before it.
        Some(g @ Gtid::Mysql { .. }) if !p.is_end() && !set.contains(&g) => Resume::Gtids {
            set: set.clone(),
            skip: Some((g, p.index)),
        },
        _ => Resume::Position(*p),
    }
}

/// The SID blocks of `COM_BINLOG_DUMP_GTID` for a set (half-open intervals, as on the wire).
pub fn sids(set: &GtidSet) -> Vec<Sid<'static>> {
    set.intervals()
        .map(|(uuid, iv)| {
            Sid::new(*uuid)
                .with_intervals(iv.iter().map(|&(s, e)| GnoInterval::new(s, e)).collect())
        })
        .collect()
}

/// The binlog dump request of a replica with `server_id`.
pub fn request(server_id: u32, from: &DumpFrom) -> BinlogStreamRequest<'_> {
    let r = BinlogStreamRequest::new(server_id);
    match from {
        DumpFrom::File { name, pos } => r.with_filename(name.as_bytes()).with_pos(*pos),
        // An empty file name and offset 4 (trap "COM_BINLOG_DUMP_GTID ignores file and offset").
        DumpFrom::Gtids(set) => r
            .with_gtid()
            .with_filename(b"")
            .with_pos(4u64)
            .with_gtid_set(sids(set)),
    }
}

/// `SHOW MASTER STATUS`' `Executed_Gtid_Set` (newlines after commas) as a set.
pub fn parse_executed(text: &str) -> Result<GtidSet, String> {
    text.parse::<GtidSet>()
        .map_err(|e| format!("Executed_Gtid_Set {text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_common::packets::binlog_request::BinlogRequest;
    use mysql_common::proto::MySerialize;

    const A: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const B: &str = "4e11fa47-71ca-11e1-9e33-c80aa9429562";

    fn g(u: &str, gno: u64) -> Gtid {
        Gtid::Mysql {
            uuid: Gtid::parse_uuid(u).unwrap(),
            gno,
        }
    }

    fn set(s: &str) -> GtidSet {
        s.parse().unwrap()
    }

    /// COM_BINLOG_DUMP_GTID as the MySQL manual lays it out, written by hand.
    /// One SID block: the server UUID and its `[start, end)` intervals.
    type SidBlock<'a> = ([u8; 16], &'a [(u64, u64)]);

    fn documented_packet(server_id: u32, set: &[SidBlock<'_>]) -> Vec<u8> {
        let mut data = (set.len() as u64).to_le_bytes().to_vec();
        for (uuid, iv) in set {
            data.extend(uuid);
            data.extend((iv.len() as u64).to_le_bytes());
            for (s, e) in iv.iter() {
                data.extend(s.to_le_bytes());
                data.extend(e.to_le_bytes());
            }
        }
        let mut p = vec![0x1e]; // COM_BINLOG_DUMP_GTID
        p.extend(0x0004u16.to_le_bytes()); // flags: BINLOG_THROUGH_GTID
        p.extend(server_id.to_le_bytes());
        p.extend(0u32.to_le_bytes()); // binlog-filename-len: empty
        p.extend(4u64.to_le_bytes()); // binlog-pos
        p.extend((data.len() as u32).to_le_bytes());
        p.extend(data);
        p
    }

    /// The bytes mysql_async sends for our request: `BinlogStreamRequest` keeps a mysql_common
    /// `BinlogRequest` built by the same calls, and writes `BinlogRequest::as_cmd()`.
    fn wire(server_id: u32, s: &GtidSet) -> Vec<u8> {
        let req = BinlogRequest::new(server_id)
            .with_use_gtid(true)
            .with_filename(&b""[..])
            .with_pos(4u64)
            .with_sids(sids(s));
        let mut buf = Vec::new();
        match req.as_cmd() {
            mysql_common::misc::raw::Either::Right(cmd) => cmd.serialize(&mut buf),
            mysql_common::misc::raw::Either::Left(_) => {
                panic!("a GTID request is COM_BINLOG_DUMP_GTID")
            }
        }
        buf
    }

    #[test]
    fn dump_gtid_request_matches_the_documented_encoding() {
        let s = set(&format!("{B}:5,{A}:1-100:102-110"));
        let ua = Gtid::parse_uuid(A).unwrap();
        let ub = Gtid::parse_uuid(B).unwrap();
        assert_eq!(
            wire(6401, &s),
            documented_packet(6401, &[(ua, &[(1, 101), (102, 111)]), (ub, &[(5, 6)])])
        );
        // The empty set: no SID blocks, and no BINLOG_THROUGH_GTID (the server then streams
        // everything it has, from its first file).
        let mut empty = documented_packet(7, &[]);
        empty[1] = 0;
        let e = wire(7, &GtidSet::new());
        assert_eq!(&e[..15], &empty[..15]);
        // And the request builder accepts the same set (it owns it through the SID blocks).
        let _ = request(6401, &DumpFrom::Gtids(s));
    }

    #[test]
    fn resume_sends_the_executed_set_plus_the_transaction_of_an_end() {
        let s = set(&format!("{A}:1-102"));
        let end = MysqlPosition::end(3, 1000, 1900, Some(g(A, 102)));
        assert_eq!(
            resume_plan(&end, Some(&s), true),
            Resume::Gtids {
                set: s.clone(),
                skip: None
            }
        );
        // Inside transaction 103: the set before it, and its acknowledged rows are dropped.
        let inside = MysqlPosition {
            file: 3,
            txn_pos: 1900,
            event_pos: 2400,
            row: 3,
            index: 70_000,
            gtid: Some(g(A, 103)),
        };
        assert_eq!(
            resume_plan(&inside, Some(&s), true),
            Resume::Gtids {
                set: s.clone(),
                skip: Some((g(A, 103), 70_000))
            }
        );
        // Inconsistent sets, no set, MariaDB / gtid_mode != ON: file and offset.
        let stale = set(&format!("{A}:1-101"));
        assert_eq!(resume_plan(&end, Some(&stale), true), Resume::Position(end));
        let ahead = set(&format!("{A}:1-103"));
        assert_eq!(
            resume_plan(&inside, Some(&ahead), true),
            Resume::Position(inside)
        );
        assert_eq!(resume_plan(&end, None, true), Resume::Position(end));
        assert_eq!(resume_plan(&end, Some(&s), false), Resume::Position(end));
        let anonymous_inside = MysqlPosition {
            gtid: None,
            ..inside
        };
        assert_eq!(
            resume_plan(&anonymous_inside, Some(&s), true),
            Resume::Position(anonymous_inside)
        );
    }

    #[test]
    fn executed_gtid_set_of_show_master_status() {
        let s = parse_executed(&format!("{A}:1-5,\n{B}:1-3:7")).unwrap();
        assert_eq!(s.to_string(), format!("{A}:1-5,{B}:1-3:7"));
        assert!(parse_executed("").unwrap().is_empty());
        assert!(parse_executed("garbage").is_err());
    }
}
