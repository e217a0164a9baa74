//! The COPY framing: XLogData, keepalive, standby status update.

use tidemark_pgoutput::{
    encode, encode_standby_status_update, DecodeErrorKind, Field, MessageKind, PrimaryKeepalive,
    ReplicationMessage, StandbyStatusUpdate, XLogData,
};

#[test]
fn xlog_data_carries_the_message_bytes() {
    let bytes = encode::xlog_data(0x16_B374_D848, 0x16_B374_D900, -5, b"E");
    assert_eq!(bytes.len(), 25 + 1);
    let parsed = ReplicationMessage::parse(&bytes).unwrap();
    assert_eq!(
        parsed,
        ReplicationMessage::XLogData(XLogData {
            wal_start: 0x16_B374_D848,
            wal_end: 0x16_B374_D900,
            server_time: -5,
            data: b"E",
        })
    );
    // Empty data is allowed by the framing (the pgoutput parser rejects it later).
    let empty = encode::xlog_data(1, 2, 3, b"");
    assert!(
        matches!(ReplicationMessage::parse(&empty), Ok(ReplicationMessage::XLogData(x)) if x.data.is_empty())
    );
    let e = ReplicationMessage::parse(&bytes[..20]).unwrap_err();
    assert_eq!((e.tag, e.offset), (MessageKind::XLogData, 17));
    assert_eq!(
        e.kind,
        DecodeErrorKind::Truncated(Field::Named("server time"))
    );
}

#[test]
fn keepalive_round_trip_and_exact_length() {
    let bytes = encode::primary_keepalive(0xABCD, 777, true);
    assert_eq!(bytes.len(), 18);
    assert_eq!(
        ReplicationMessage::parse(&bytes).unwrap(),
        ReplicationMessage::PrimaryKeepalive(PrimaryKeepalive {
            wal_end: 0xABCD,
            server_time: 777,
            reply_requested: true,
        })
    );
    let mut long = bytes.clone();
    long.push(0);
    assert_eq!(
        ReplicationMessage::parse(&long).unwrap_err().kind,
        DecodeErrorKind::TrailingBytes(1)
    );
    for len in 0..bytes.len() {
        assert!(
            ReplicationMessage::parse(&bytes[..len]).is_err(),
            "prefix {len}"
        );
    }
    let e = ReplicationMessage::parse(b"r").unwrap_err();
    assert_eq!(e.kind, DecodeErrorKind::UnknownTag(b'r'));
}

#[test]
fn standby_status_update_layout() {
    let bytes = encode_standby_status_update(0x0102_0304_0506_0708, 2, 3, 4, true);
    let mut expected = vec![b'r'];
    expected.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    expected.extend_from_slice(&2u64.to_be_bytes());
    expected.extend_from_slice(&3u64.to_be_bytes());
    expected.extend_from_slice(&4i64.to_be_bytes());
    expected.push(1);
    assert_eq!(bytes.to_vec(), expected);
    let parsed = StandbyStatusUpdate::parse(&bytes).unwrap();
    assert_eq!(
        parsed,
        StandbyStatusUpdate {
            write_lsn: 0x0102_0304_0506_0708,
            flush_lsn: 2,
            apply_lsn: 3,
            client_time: 4,
            reply_requested: true
        }
    );
    assert_eq!(parsed.encode(), bytes);
    assert!(StandbyStatusUpdate::parse(&bytes[..33]).is_err());
    let e = StandbyStatusUpdate::parse(b"w").unwrap_err();
    assert_eq!(
        (e.tag, e.kind),
        (
            MessageKind::StandbyStatusUpdate,
            DecodeErrorKind::UnknownTag(b'w')
        )
    );
}
