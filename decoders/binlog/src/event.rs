//! Event framing: the 19-byte v4 common header, event type codes (MySQL and MariaDB), the
//! CRC32 footer, and the FORMAT_DESCRIPTION_EVENT that says how to read the rest.
//!
//! ```text
//! | timestamp u32 | type u8 | server_id u32 | event_size u32 | log_pos u32 | flags u16 | body ... | crc32 u32? |
//!   event_size counts header + body + checksum; log_pos is the offset of the *next* event.
//! ```

use crate::error::{invalid, ErrorKind};
use crate::reader::Reader;

/// Length of the v4 common header.
pub const HEADER_LEN: usize = 19;
/// Length of the CRC32 footer.
pub const CHECKSUM_LEN: usize = 4;
/// The magic bytes at offset 0 of every binlog file; the first event is at offset 4.
pub const BINLOG_MAGIC: &[u8; 4] = b"\xfebin";

/// Event type codes (`Log_event_type` in MySQL, plus MariaDB's 160+).
pub mod code {
    pub const UNKNOWN: u8 = 0;
    pub const START_V3: u8 = 1;
    pub const QUERY: u8 = 2;
    pub const STOP: u8 = 3;
    pub const ROTATE: u8 = 4;
    pub const INTVAR: u8 = 5;
    pub const SLAVE: u8 = 7;
    pub const APPEND_BLOCK: u8 = 9;
    pub const DELETE_FILE: u8 = 11;
    pub const RAND: u8 = 13;
    pub const USER_VAR: u8 = 14;
    pub const FORMAT_DESCRIPTION: u8 = 15;
    pub const XID: u8 = 16;
    pub const BEGIN_LOAD_QUERY: u8 = 17;
    pub const EXECUTE_LOAD_QUERY: u8 = 18;
    pub const TABLE_MAP: u8 = 19;
    pub const WRITE_ROWS_V0: u8 = 20;
    pub const UPDATE_ROWS_V0: u8 = 21;
    pub const DELETE_ROWS_V0: u8 = 22;
    pub const WRITE_ROWS_V1: u8 = 23;
    pub const UPDATE_ROWS_V1: u8 = 24;
    pub const DELETE_ROWS_V1: u8 = 25;
    pub const INCIDENT: u8 = 26;
    pub const HEARTBEAT: u8 = 27;
    pub const IGNORABLE: u8 = 28;
    pub const ROWS_QUERY: u8 = 29;
    pub const WRITE_ROWS_V2: u8 = 30;
    pub const UPDATE_ROWS_V2: u8 = 31;
    pub const DELETE_ROWS_V2: u8 = 32;
    pub const GTID: u8 = 33;
    pub const ANONYMOUS_GTID: u8 = 34;
    pub const PREVIOUS_GTIDS: u8 = 35;
    pub const TRANSACTION_CONTEXT: u8 = 36;
    pub const VIEW_CHANGE: u8 = 37;
    pub const XA_PREPARE: u8 = 38;
    pub const PARTIAL_UPDATE_ROWS: u8 = 39;
    pub const TRANSACTION_PAYLOAD: u8 = 40;
    pub const HEARTBEAT_V2: u8 = 41;
    pub const GTID_TAGGED: u8 = 42;
    // MariaDB.
    pub const MARIADB_ANNOTATE_ROWS: u8 = 160;
    pub const MARIADB_BINLOG_CHECKPOINT: u8 = 161;
    pub const MARIADB_GTID: u8 = 162;
    pub const MARIADB_GTID_LIST: u8 = 163;
    pub const MARIADB_START_ENCRYPTION: u8 = 164;
    pub const MARIADB_QUERY_COMPRESSED: u8 = 165;
    pub const MARIADB_WRITE_ROWS_COMPRESSED_V1: u8 = 166;
    pub const MARIADB_UPDATE_ROWS_COMPRESSED_V1: u8 = 167;
    pub const MARIADB_DELETE_ROWS_COMPRESSED_V1: u8 = 168;
    pub const MARIADB_WRITE_ROWS_COMPRESSED: u8 = 169;
    pub const MARIADB_UPDATE_ROWS_COMPRESSED: u8 = 170;
    pub const MARIADB_DELETE_ROWS_COMPRESSED: u8 = 171;
}

/// The manual's name of an event type (for errors and logs).
pub fn event_name(t: u8) -> &'static str {
    use code::*;
    match t {
        START_V3 => "START_EVENT_V3",
        QUERY => "QUERY_EVENT",
        STOP => "STOP_EVENT",
        ROTATE => "ROTATE_EVENT",
        INTVAR => "INTVAR_EVENT",
        RAND => "RAND_EVENT",
        USER_VAR => "USER_VAR_EVENT",
        FORMAT_DESCRIPTION => "FORMAT_DESCRIPTION_EVENT",
        XID => "XID_EVENT",
        TABLE_MAP => "TABLE_MAP_EVENT",
        WRITE_ROWS_V0 => "WRITE_ROWS_EVENT_V0",
        UPDATE_ROWS_V0 => "UPDATE_ROWS_EVENT_V0",
        DELETE_ROWS_V0 => "DELETE_ROWS_EVENT_V0",
        WRITE_ROWS_V1 => "WRITE_ROWS_EVENT_V1",
        UPDATE_ROWS_V1 => "UPDATE_ROWS_EVENT_V1",
        DELETE_ROWS_V1 => "DELETE_ROWS_EVENT_V1",
        INCIDENT => "INCIDENT_EVENT",
        HEARTBEAT => "HEARTBEAT_LOG_EVENT",
        IGNORABLE => "IGNORABLE_LOG_EVENT",
        ROWS_QUERY => "ROWS_QUERY_LOG_EVENT",
        WRITE_ROWS_V2 => "WRITE_ROWS_EVENT",
        UPDATE_ROWS_V2 => "UPDATE_ROWS_EVENT",
        DELETE_ROWS_V2 => "DELETE_ROWS_EVENT",
        GTID => "GTID_LOG_EVENT",
        ANONYMOUS_GTID => "ANONYMOUS_GTID_LOG_EVENT",
        PREVIOUS_GTIDS => "PREVIOUS_GTIDS_LOG_EVENT",
        TRANSACTION_CONTEXT => "TRANSACTION_CONTEXT_EVENT",
        VIEW_CHANGE => "VIEW_CHANGE_EVENT",
        XA_PREPARE => "XA_PREPARE_LOG_EVENT",
        PARTIAL_UPDATE_ROWS => "PARTIAL_UPDATE_ROWS_EVENT",
        TRANSACTION_PAYLOAD => "TRANSACTION_PAYLOAD_EVENT",
        HEARTBEAT_V2 => "HEARTBEAT_LOG_EVENT_V2",
        GTID_TAGGED => "GTID_TAGGED_LOG_EVENT",
        MARIADB_ANNOTATE_ROWS => "ANNOTATE_ROWS_EVENT",
        MARIADB_BINLOG_CHECKPOINT => "BINLOG_CHECKPOINT_EVENT",
        MARIADB_GTID => "GTID_EVENT",
        MARIADB_GTID_LIST => "GTID_LIST_EVENT",
        MARIADB_START_ENCRYPTION => "START_ENCRYPTION_EVENT",
        MARIADB_QUERY_COMPRESSED => "QUERY_COMPRESSED_EVENT",
        MARIADB_WRITE_ROWS_COMPRESSED_V1 => "WRITE_ROWS_COMPRESSED_EVENT_V1",
        MARIADB_UPDATE_ROWS_COMPRESSED_V1 => "UPDATE_ROWS_COMPRESSED_EVENT_V1",
        MARIADB_DELETE_ROWS_COMPRESSED_V1 => "DELETE_ROWS_COMPRESSED_EVENT_V1",
        MARIADB_WRITE_ROWS_COMPRESSED => "WRITE_ROWS_COMPRESSED_EVENT",
        MARIADB_UPDATE_ROWS_COMPRESSED => "UPDATE_ROWS_COMPRESSED_EVENT",
        MARIADB_DELETE_ROWS_COMPRESSED => "DELETE_ROWS_COMPRESSED_EVENT",
        _ => "UNKNOWN_EVENT",
    }
}

/// The common header of every event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventHeader {
    /// Seconds since the epoch when the statement started (the transaction's commit time for
    /// the events of a transaction, roughly).
    pub timestamp: u32,
    pub event_type: u8,
    pub server_id: u32,
    /// Header + body + checksum.
    pub event_size: u32,
    /// Offset of the next event (0 for some artificial events; in a transaction payload, 0).
    pub log_pos: u32,
    pub flags: u16,
}

/// `LOG_EVENT_ARTIFICIAL_F`: an event the server made up for the dump (the first ROTATE).
pub const FLAG_ARTIFICIAL: u16 = 0x20;

impl EventHeader {
    pub fn parse(b: &[u8]) -> Result<EventHeader, ErrorKind> {
        let mut r = Reader::new(b);
        let h = EventHeader {
            timestamp: r.u32()?,
            event_type: r.u8()?,
            server_id: r.u32()?,
            event_size: r.u32()?,
            log_pos: r.u32()?,
            flags: r.u16()?,
        };
        if (h.event_size as usize) < HEADER_LEN {
            return Err(invalid(9, "event_size smaller than the header"));
        }
        Ok(h)
    }

    /// Offset of this event in its file (`log_pos - event_size`), when known.
    pub fn start_pos(&self) -> Option<u64> {
        (self.log_pos >= self.event_size && self.log_pos != 0)
            .then(|| u64::from(self.log_pos - self.event_size))
    }
}

/// Checksum algorithm of a binlog (`binlog_checksum`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum {
    None,
    Crc32,
}

/// Checks the CRC32 footer of `event` (whole event bytes) and returns the event without it.
pub fn strip_checksum(event: &[u8], alg: Checksum) -> Result<&[u8], ErrorKind> {
    match alg {
        Checksum::None => Ok(event),
        Checksum::Crc32 => {
            if event.len() < HEADER_LEN + CHECKSUM_LEN {
                return Err(invalid(0, "event too short for its checksum"));
            }
            let (data, tail) = event.split_at(event.len() - CHECKSUM_LEN);
            let expected = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
            let actual = crc32fast::hash(data);
            if expected != actual {
                return Err(ErrorKind::Checksum { expected, actual });
            }
            Ok(data)
        }
    }
}

/// `LOG_EVENT_BINLOG_IN_USE_F`: set in the FDE of the binlog file the server is writing.
pub const FLAG_BINLOG_IN_USE: u16 = 0x1;

/// The FDE's checksum. Trap: the server sets `LOG_EVENT_BINLOG_IN_USE_F` in the FDE of the
/// file it is writing *after* computing the CRC (and clears it on close), so a file read while
/// active has a CRC over the flags without that bit (mysqlbinlog does the same check).
fn fde_checksum(event: &[u8]) -> Result<&[u8], ErrorKind> {
    match strip_checksum(event, Checksum::Crc32) {
        Err(ErrorKind::Checksum { expected, actual }) if event.len() > 18 && event[17] & 1 != 0 => {
            let mut copy = event.to_vec();
            copy[17] &= !1;
            strip_checksum(&copy, Checksum::Crc32)
                .map_err(|_| ErrorKind::Checksum { expected, actual })?;
            Ok(&event[..event.len() - CHECKSUM_LEN])
        }
        other => other,
    }
}

/// FORMAT_DESCRIPTION_EVENT: binlog version, server version, post-header lengths and the
/// checksum algorithm of the events that follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatDescription {
    pub binlog_version: u16,
    pub server_version: String,
    pub create_timestamp: u32,
    pub header_length: u8,
    /// Post-header length of event type `i + 1`.
    pub post_header_lengths: Vec<u8>,
    pub checksum: Checksum,
}

/// Server version as numbers, for the checksum-capable test (MariaDB's `5.5.5-10.x` prefix is
/// not stripped: 5.5.5 < 5.6.1, but MariaDB names itself in the string).
fn checksum_capable(version: &str) -> bool {
    if version.contains("MariaDB") {
        return true;
    }
    let mut nums = version
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u32>().unwrap_or(0));
    let v = (
        nums.next().unwrap_or(0),
        nums.next().unwrap_or(0),
        nums.next().unwrap_or(0),
    );
    v >= (5, 6, 1)
}

impl FormatDescription {
    /// Parses the whole event (header included, checksum footer *not* yet stripped: the FDE
    /// says itself whether it has one).
    pub fn parse_event(event: &[u8]) -> Result<(FormatDescription, &[u8]), ErrorKind> {
        let body = event
            .get(HEADER_LEN..)
            .ok_or_else(|| invalid(0, "shorter than a header"))?;
        let mut r = Reader::new(body);
        let binlog_version = r.u16()?;
        let raw = r.take(50)?;
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        let server_version = String::from_utf8_lossy(&raw[..end]).into_owned();
        let create_timestamp = r.u32()?;
        let header_length = r.u8()?;
        if binlog_version != 4 || usize::from(header_length) != HEADER_LEN {
            return Err(ErrorKind::Unsupported {
                what: format!(
                    "binlog version {binlog_version} with header length {header_length} (only v4 with 19-byte headers)"
                ),
            });
        }
        let rest = r.rest();
        let (lengths, checksum, data) = if checksum_capable(&server_version) {
            if rest.len() < 1 + CHECKSUM_LEN {
                return Err(invalid(r.offset(), "no room for the checksum algorithm"));
            }
            let alg_at = rest.len() - 1 - CHECKSUM_LEN;
            let alg = match rest[alg_at] {
                0 => Checksum::None,
                1 => Checksum::Crc32,
                _ => return Err(invalid(57 + alg_at, "unknown checksum algorithm")),
            };
            // The FDE carries a checksum footer exactly when its algorithm is CRC32.
            let data = if alg == Checksum::Crc32 {
                fde_checksum(event)?
            } else {
                &event[..event.len() - CHECKSUM_LEN]
            };
            (&rest[..alg_at], alg, data)
        } else {
            (rest, Checksum::None, event)
        };
        Ok((
            FormatDescription {
                binlog_version,
                server_version,
                create_timestamp,
                header_length,
                post_header_lengths: lengths.to_vec(),
                checksum,
            },
            data,
        ))
    }

    /// Post-header length of an event type (0 if the FDE does not list it).
    pub fn post_header_len(&self, event_type: u8) -> usize {
        usize::from(event_type)
            .checked_sub(1)
            .and_then(|i| self.post_header_lengths.get(i))
            .map_or(0, |&l| usize::from(l))
    }

    /// Bytes of a table id in TABLE_MAP and rows events: 6, or 4 for an old post-header of 6.
    pub fn table_id_len(&self, event_type: u8) -> usize {
        if self.post_header_len(event_type) == 6 {
            4
        } else {
            6
        }
    }

    /// Whether the server is MariaDB.
    pub fn is_mariadb(&self) -> bool {
        self.server_version.contains("MariaDB")
    }
}

impl Default for FormatDescription {
    /// What a v4 binlog of MySQL 8 announces, used until the real FDE arrives.
    fn default() -> Self {
        FormatDescription {
            binlog_version: 4,
            server_version: String::new(),
            create_timestamp: 0,
            header_length: HEADER_LEN as u8,
            post_header_lengths: Vec::new(),
            checksum: Checksum::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert!(checksum_capable("8.0.36"));
        assert!(checksum_capable("5.6.1-log"));
        assert!(!checksum_capable("5.5.62"));
        assert!(checksum_capable("10.11.6-MariaDB-0+deb12u1-log"));
    }

    #[test]
    fn checksum_mismatch_is_an_error() {
        let mut ev = vec![0u8; HEADER_LEN];
        let crc = crc32fast::hash(&ev);
        ev.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(
            strip_checksum(&ev, Checksum::Crc32).unwrap().len(),
            HEADER_LEN
        );
        ev[3] ^= 1;
        assert!(matches!(
            strip_checksum(&ev, Checksum::Crc32),
            Err(ErrorKind::Checksum { .. })
        ));
    }
}
