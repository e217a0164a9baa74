//! MySQL GTID sets (`3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7-9,…`) and the ledger that
//! records, for each acknowledged position, the set of transactions executed up to it.
//!
//! A MySQL replica resumes with `COM_BINLOG_DUMP_GTID` and the set of transactions it already
//! has; the server then streams every transaction not in the set, from the oldest binlog file
//! whose `PREVIOUS_GTIDS` is contained in it. A [`MysqlPosition`] carries one GTID (the
//! transaction's), not the set, so the set travels beside the position:
//!
//! ```text
//!  decoder: executed set  (PREVIOUS_GTIDS ∪ start set ∪ GTID of every committed transaction)
//!      │ after each complete transaction: register(end position, set)
//!      ▼
//!  GtidLedger ──settle(checkpoint position)──► the set at the newest end ≤ that position
//!      └──► checkpoint file `gtid_set` ──► next start: COM_BINLOG_DUMP_GTID(set)
//! ```
//!
//! Resume arithmetic: a checkpoint at a transaction end `E` of transaction `T` resumes with the
//! set after `T` (`T` included: the server does not send it again). A checkpoint *inside* `T`
//! (a chunk of a long transaction) resumes with the set before `T`; the server sends `T` again
//! and the decoder drops its rows up to the checkpoint's `index`
//! (`tidemark_binlog::Decoder::skip_rows_of`).
//!
//! # Traps
//! - Intervals are half-open on the wire (`COM_BINLOG_DUMP_GTID`, `PREVIOUS_GTIDS_LOG_EVENT`:
//!   `[start, end)`) and closed in text (`1-5` is 1..=5). [`GtidSet::intervals`] is half-open.
//! - `@@gtid_executed` and `SHOW MASTER STATUS` print the set with a newline after each comma;
//!   parsing accepts any whitespace around the parts.
//! - MySQL 8.4 tagged GTIDs (`uuid:tag:1-5`) are not held here (nor in [`Gtid`]): a tagged set
//!   is a clear parse error.
//! - GTID number 0 does not exist (numbers start at 1); `uuid:0` is rejected like MySQL does.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use crate::mysql_position::{Gtid, MysqlPosition};
use crate::position::PositionError;

/// One server UUID's half-open GTID intervals, as `PREVIOUS_GTIDS_LOG_EVENT` lists them.
pub type SidIntervals = ([u8; 16], Vec<(u64, u64)>);

/// A set of MySQL GTIDs: per server UUID, disjoint sorted half-open intervals of numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct GtidSet {
    sids: BTreeMap<[u8; 16], Vec<(u64, u64)>>,
}

impl GtidSet {
    /// The empty set.
    pub fn new() -> Self {
        GtidSet::default()
    }

    /// Whether no GTID is in the set.
    pub fn is_empty(&self) -> bool {
        self.sids.is_empty()
    }

    /// Adds the half-open interval `[start, end)` of `uuid` (no-op when empty).
    pub fn insert_interval(&mut self, uuid: [u8; 16], start: u64, end: u64) {
        if start >= end {
            return;
        }
        let iv = self.sids.entry(uuid).or_default();
        // Merge with every interval that overlaps or touches [start, end).
        let first = iv.partition_point(|&(_, e)| e < start);
        let mut last = first;
        let (mut s, mut e) = (start, end);
        while last < iv.len() && iv[last].0 <= e {
            s = s.min(iv[last].0);
            e = e.max(iv[last].1);
            last += 1;
        }
        iv.splice(first..last, [(s, e)]);
    }

    /// Adds one GTID (MariaDB GTIDs are not MySQL set members and are ignored).
    pub fn insert(&mut self, gtid: &Gtid) {
        if let Gtid::Mysql { uuid, gno } = *gtid {
            self.insert_interval(uuid, gno, gno.saturating_add(1));
        }
    }

    /// Whether `gtid` is in the set.
    pub fn contains(&self, gtid: &Gtid) -> bool {
        let Gtid::Mysql { uuid, gno } = *gtid else {
            return false;
        };
        self.sids.get(&uuid).is_some_and(|iv| {
            let i = iv.partition_point(|&(_, e)| e <= gno);
            iv.get(i).is_some_and(|&(s, _)| s <= gno)
        })
    }

    /// Adds every GTID of `other`.
    pub fn union(&mut self, other: &GtidSet) {
        for (uuid, iv) in &other.sids {
            for &(s, e) in iv {
                self.insert_interval(*uuid, s, e);
            }
        }
    }

    /// Per server UUID (ascending), its half-open intervals `[start, end)` (ascending, disjoint),
    /// as `COM_BINLOG_DUMP_GTID` sends them.
    pub fn intervals(&self) -> impl Iterator<Item = (&[u8; 16], &[(u64, u64)])> {
        self.sids.iter().map(|(u, iv)| (u, iv.as_slice()))
    }

    /// The set from half-open intervals as a `PREVIOUS_GTIDS_LOG_EVENT` carries them (empty or
    /// reversed intervals are dropped; overlaps merge).
    pub fn from_intervals(sids: &[SidIntervals]) -> Self {
        let mut set = GtidSet::new();
        for (uuid, iv) in sids {
            for &(s, e) in iv {
                set.insert_interval(*uuid, s, e);
            }
        }
        set
    }
}

impl fmt::Display for GtidSet {
    /// MySQL's text form without the newlines: `uuid:1-5:7,uuid2:3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (uuid, iv)) in self.sids.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(&Gtid::uuid_string(uuid))?;
            for &(s, e) in iv {
                if e == s + 1 {
                    write!(f, ":{s}")?;
                } else {
                    write!(f, ":{s}-{}", e - 1)?;
                }
            }
        }
        Ok(())
    }
}

impl FromStr for GtidSet {
    type Err = PositionError;

    /// `uuid:a-b[:c[-d]…][,uuid:…]`; whitespace around parts is ignored; `""` is the empty set.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| PositionError::InvalidPosition {
            input: s.to_owned(),
            reason,
        };
        let number = |t: &str| -> Result<u64, PositionError> {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err("a GTID interval is n or n-m with decimal n, m"));
            }
            t.parse().map_err(|_| err("GTID number out of range"))
        };
        let mut set = GtidSet::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut fields = part.split(':').map(str::trim);
            let uuid = fields
                .next()
                .and_then(Gtid::parse_uuid)
                .ok_or_else(|| err("expected uuid:intervals"))?;
            let mut any = false;
            for iv in fields {
                if iv.bytes().next().is_some_and(|b| !b.is_ascii_digit()) {
                    return Err(err("tagged GTIDs (MySQL 8.4 uuid:tag:n) are not supported"));
                }
                let (a, b) = match iv.split_once('-') {
                    Some((a, b)) => (number(a)?, number(b)?),
                    None => {
                        let a = number(iv)?;
                        (a, a)
                    }
                };
                if a == 0 || b < a {
                    return Err(err(
                        "GTID intervals start at 1 and do not run backwards (n-m with n <= m)",
                    ));
                }
                let end = b
                    .checked_add(1)
                    .ok_or_else(|| err("GTID number out of range"))?;
                set.insert_interval(uuid, a, end);
                any = true;
            }
            if !any {
                return Err(err("a server UUID without intervals"));
            }
        }
        Ok(set)
    }
}

/// Executed sets registered at transaction ends, settled at checkpoint positions (module doc).
#[derive(Debug, Default)]
pub struct GtidLedger {
    settled: Option<Arc<GtidSet>>,
    pending: VecDeque<(MysqlPosition, Option<Arc<GtidSet>>)>,
}

/// The ledger shared by a MySQL source (registers) and the checkpoint store (settles).
pub type GtidLedgerHandle = Arc<Mutex<GtidLedger>>;

impl GtidLedger {
    /// A ledger whose settled set is `set` (the checkpoint's, on a restart).
    pub fn new(set: Option<GtidSet>) -> Self {
        GtidLedger {
            settled: set.map(Arc::new),
            pending: VecDeque::new(),
        }
    }

    /// Records that every change up to `end` (a transaction end) leaves `after` executed
    /// (`None`: not known, e.g. a session that started inside a binlog file without a set; a
    /// checkpoint there must not reuse an older set). Call it before the transaction is handed
    /// to the engine, so a checkpoint at `end` can never be saved without its set.
    pub fn register(&mut self, end: MysqlPosition, after: Option<Arc<GtidSet>>) {
        // A session that restarts behind what is pending (a reconnect resends nothing older
        // than the last handed-over position, but be safe): newer registrations win.
        while self.pending.back().is_some_and(|(p, _)| *p >= end) {
            self.pending.pop_back();
        }
        self.pending.push_back((end, after));
    }

    /// The set at checkpoint position `p`: the newest registered set whose end is at or before
    /// `p` (registrations up to `p` are consumed). `None` while no set is known.
    pub fn settle(&mut self, p: &MysqlPosition) -> Option<&GtidSet> {
        while self.pending.front().is_some_and(|(e, _)| e <= p) {
            self.settled = self.pending.pop_front().and_then(|(_, s)| s);
        }
        self.settled.as_deref()
    }

    /// Registrations not yet settled (for tests and metrics).
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const A: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const B: &str = "4e11fa47-71ca-11e1-9e33-c80aa9429562";

    fn uuid(s: &str) -> [u8; 16] {
        Gtid::parse_uuid(s).unwrap()
    }

    fn g(u: &str, gno: u64) -> Gtid {
        Gtid::Mysql { uuid: uuid(u), gno }
    }

    fn end(txn_pos: u64, next: u64, gtid: Option<Gtid>) -> MysqlPosition {
        MysqlPosition::end(1, txn_pos, next, gtid)
    }

    #[test]
    fn parse_display_and_members() {
        let s: GtidSet = format!("{B}:3,\n{A}:1-5:7-9 ,{A}:6").parse().unwrap();
        assert_eq!(s.to_string(), format!("{A}:1-9,{B}:3"));
        assert!(s.contains(&g(A, 1)) && s.contains(&g(A, 9)) && s.contains(&g(B, 3)));
        assert!(!s.contains(&g(A, 10)) && !s.contains(&g(B, 2)) && !s.contains(&g(B, 4)));
        assert_eq!(
            s.intervals().map(|(_, iv)| iv.to_vec()).collect::<Vec<_>>(),
            vec![vec![(1, 10)], vec![(3, 4)]]
        );
        assert!("".parse::<GtidSet>().unwrap().is_empty());
        for bad in [
            "nope:1",
            A,
            &format!("{A}:0"),
            &format!("{A}:5-3"),
            &format!("{A}:x"),
            &format!("{A}:tag:1-5"),
            &format!("{A}:1-18446744073709551615"),
        ] {
            assert!(bad.parse::<GtidSet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn inserts_merge_adjacent_and_overlapping_intervals() {
        let mut s = GtidSet::new();
        for n in [5, 3, 4, 10, 1] {
            s.insert(&g(A, n));
        }
        assert_eq!(s.to_string(), format!("{A}:1:3-5:10"));
        s.insert_interval(uuid(A), 2, 11);
        assert_eq!(s.to_string(), format!("{A}:1-10"));
        s.insert(&Gtid::Mariadb {
            domain: 0,
            server: 1,
            seq: 2,
        });
        assert_eq!(s.to_string(), format!("{A}:1-10"));
        let prev = GtidSet::from_intervals(&[(uuid(B), vec![(1, 4), (9, 9)])]);
        s.union(&prev);
        assert_eq!(s.to_string(), format!("{A}:1-10,{B}:1-3"));
    }

    /// The resume arithmetic of the module doc: end → set after the transaction; inside a
    /// transaction → set before it.
    #[test]
    fn ledger_settles_the_set_at_a_checkpoint() {
        let start: GtidSet = format!("{A}:1-100").parse().unwrap();
        let mut ledger = GtidLedger::new(Some(start.clone()));
        let mut set = start;
        let mut ends = Vec::new();
        for (i, gno) in (101..=103).enumerate() {
            set.insert(&g(A, gno));
            let e = end(
                1000 * (i as u64 + 1),
                1000 * (i as u64 + 1) + 900,
                Some(g(A, gno)),
            );
            ledger.register(e, Some(Arc::new(set.clone())));
            ends.push(e);
        }
        // Before any registered end: the starting set.
        let early = end(500, 600, None);
        assert_eq!(
            ledger.settle(&early).unwrap().to_string(),
            format!("{A}:1-100")
        );
        // Inside transaction 102 (a chunk acknowledged): 101 is executed, 102 is not.
        let inside = MysqlPosition {
            file: 1,
            txn_pos: 2000,
            event_pos: 2300,
            row: 4,
            index: 4,
            gtid: Some(g(A, 102)),
        };
        assert!(inside > ends[0] && inside < ends[1]);
        let s = ledger.settle(&inside).unwrap().clone();
        assert!(s.contains(&g(A, 101)) && !s.contains(&g(A, 102)));
        // At the end of 102: 102 is executed, the server must not send it again.
        assert_eq!(
            ledger.settle(&ends[1]).unwrap().to_string(),
            format!("{A}:1-102")
        );
        assert_eq!(ledger.pending(), 1);
        assert_eq!(
            ledger.settle(&ends[2]).unwrap().to_string(),
            format!("{A}:1-103")
        );
        assert_eq!(ledger.pending(), 0);
        // A ledger without a known set says so, and an unknown set replaces a known one.
        assert!(GtidLedger::new(None).settle(&ends[0]).is_none());
        let later = end(9000, 9900, Some(g(A, 104)));
        ledger.register(later, None);
        assert!(ledger.settle(&later).is_none());
    }

    fn arb_set() -> impl Strategy<Value = GtidSet> {
        proptest::collection::vec((0usize..3, 1u64..60, 0u64..8), 0..12).prop_map(|v| {
            let uuids = [uuid(A), uuid(B), [7; 16]];
            let mut s = GtidSet::new();
            for (u, start, len) in v {
                s.insert_interval(uuids[u], start, start + len);
            }
            s
        })
    }

    proptest! {
        #[test]
        fn prop_text_round_trip_and_union_is_membership_or(a in arb_set(), b in arb_set()) {
            prop_assert_eq!(a.to_string().parse::<GtidSet>().unwrap(), a.clone());
            let mut u = a.clone();
            u.union(&b);
            for uu in [uuid(A), uuid(B), [7; 16]] {
                for gno in 1..70 {
                    let x = Gtid::Mysql { uuid: uu, gno };
                    prop_assert_eq!(u.contains(&x), a.contains(&x) || b.contains(&x));
                }
            }
            // Intervals stay sorted, disjoint and non-adjacent.
            for (_, iv) in u.intervals() {
                for w in iv.windows(2) {
                    prop_assert!(w[0].1 < w[1].0);
                }
            }
        }
    }
}
