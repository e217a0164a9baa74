//! Hand-built malformed messages: each error says which message, where, and what.

use tidemark_pgoutput::{
    encode, pg_timestamp_to_unix_micros, unix_micros_to_pg_timestamp, DecodeError, DecodeErrorKind,
    Field, Insert, Message, MessageKind, ParseContext, Relation, StreamStart, TupleData,
    TupleValue, PG_EPOCH_UNIX_MICROS,
};

fn v1() -> ParseContext {
    ParseContext::new(1)
}

fn err(bytes: &[u8], ctx: ParseContext) -> DecodeError {
    ctx.parse(bytes).expect_err("malformed input must fail")
}

#[test]
fn display_names_message_offset_and_column() {
    // 'U', oid, 'N', 4 columns: 'n', 'u', 't' len 1 "x", then column 3 is cut off.
    let mut bytes = vec![
        b'U', 0, 0, 0, 7, b'N', 0, 4, b'n', b'u', b't', 0, 0, 0, 1, b'x',
    ];
    bytes.push(b't');
    let e = err(&bytes, v1());
    assert_eq!(
        e.to_string(),
        "pgoutput Update at offset 17: truncated tuple column 3"
    );
    assert_eq!(e.tag, MessageKind::Update);
    assert_eq!(e.kind, DecodeErrorKind::Truncated(Field::TupleColumn(3)));
    assert!(!e.is_transient());
}

#[test]
fn empty_and_unknown_tags() {
    let e = err(&[], v1());
    assert_eq!(
        e.to_string(),
        "pgoutput message at offset 0: truncated message tag"
    );
    let e = err(b"Z", v1());
    assert_eq!(e.kind, DecodeErrorKind::UnknownTag(b'Z'));
    assert_eq!(
        e.to_string(),
        "pgoutput message at offset 0: unknown message tag 0x5a"
    );
    // 'w' and 'k' are framing, not pgoutput.
    assert_eq!(err(b"w", v1()).kind, DecodeErrorKind::UnknownTag(b'w'));
}

#[test]
fn trailing_bytes_are_an_error() {
    let mut bytes = encode::message(&Message::StreamStop);
    bytes.push(0);
    let e = err(&bytes, ParseContext::new(2).with_in_stream(true));
    assert_eq!((e.offset, e.kind), (1, DecodeErrorKind::TrailingBytes(1)));
}

#[test]
fn negative_lengths_are_rejected_not_cast() {
    let bytes = [b'I', 0, 0, 0, 1, b'N', 0, 1, b't', 0xff, 0xff, 0xff, 0xfe];
    let e = err(&bytes, v1());
    assert_eq!(
        e.kind,
        DecodeErrorKind::NegativeLength {
            field: Field::TupleColumn(0),
            value: -2
        }
    );
    assert_eq!(e.offset, 9);
    let bytes = [b'I', 0, 0, 0, 1, b'N', 0x80, 0x00];
    assert!(matches!(
        err(&bytes, v1()).kind,
        DecodeErrorKind::NegativeLength { .. }
    ));
}

#[test]
fn huge_declared_lengths_and_counts_fail_without_allocating() {
    // A value claiming 2 GiB.
    let bytes = [
        b'I', 0, 0, 0, 1, b'N', 0, 1, b'b', 0x7f, 0xff, 0xff, 0xff, 1, 2,
    ];
    assert_eq!(
        err(&bytes, v1()).kind,
        DecodeErrorKind::Truncated(Field::TupleColumn(0))
    );
    // A Truncate claiming i32::MAX relations.
    let bytes = [b'T', 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1];
    let e = err(&bytes, v1());
    assert_eq!(
        e.kind,
        DecodeErrorKind::Truncated(Field::TruncateRelation(1))
    );
    assert_eq!(e.offset, 10);
    // A Relation claiming 32767 columns with one present.
    let mut bytes = vec![b'R', 0, 0, 0, 1, b'p', 0, b't', 0, b'd', 0x7f, 0xff];
    bytes.extend_from_slice(&[1, b'a', 0, 0, 0, 0, 23, 0xff, 0xff, 0xff, 0xff]);
    assert_eq!(
        err(&bytes, v1()).kind,
        DecodeErrorKind::Truncated(Field::RelationColumn(1))
    );
    // A Message content claiming i32::MAX bytes.
    let mut bytes = vec![b'M', 1, 0, 0, 0, 0, 0, 0, 0, 1, b'p', 0];
    bytes.extend_from_slice(&i32::MAX.to_be_bytes());
    assert_eq!(
        err(&bytes, v1()).kind,
        DecodeErrorKind::Truncated(Field::Named("content"))
    );
}

#[test]
fn invalid_utf8_reports_the_first_bad_byte() {
    let bytes = [b'Y', 0, 0, 0, 1, b'o', b'k', 0, b'a', 0xc3, 0x28, 0];
    let e = err(&bytes, v1());
    assert_eq!(
        (e.offset, e.kind),
        (9, DecodeErrorKind::InvalidUtf8(Field::Named("type name")))
    );
    let bytes = [b'Y', 0, 0, 0, 1, b'n', b's', 0, b'x'];
    let e = err(&bytes, v1());
    assert_eq!(
        e.kind,
        DecodeErrorKind::UnterminatedString(Field::Named("type name"))
    );
}

#[test]
fn unexpected_marker_bytes() {
    let bytes = [b'I', 0, 0, 0, 1, b'K', 0, 0];
    let e = err(&bytes, v1());
    assert_eq!(e.offset, 5);
    assert!(matches!(
        e.kind,
        DecodeErrorKind::UnexpectedByte { byte: b'K', .. }
    ));
    let bytes = [b'I', 0, 0, 0, 1, b'N', 0, 1, b'x'];
    let e = err(&bytes, v1());
    assert!(
        e.to_string()
            .ends_with("unexpected byte 0x78 in tuple column 0, expected 'n', 'u', 't' or 'b'"),
        "{e}"
    );
    // Update: old tuple must be followed by 'N'.
    let bytes = [b'U', 0, 0, 0, 1, b'K', 0, 0, b'K', 0, 0];
    assert!(matches!(
        err(&bytes, v1()).kind,
        DecodeErrorKind::UnexpectedByte { byte: b'K', .. }
    ));
    // Relation replica identity.
    let bytes = [b'R', 0, 0, 0, 1, 0, b't', 0, b'x', 0, 0];
    assert!(matches!(
        err(&bytes, v1()).kind,
        DecodeErrorKind::UnexpectedByte { byte: b'x', .. }
    ));
    // Stream Start first-segment flag is 0 or 1.
    let bytes = [b'S', 0, 0, 0, 1, 2];
    assert!(matches!(
        err(&bytes, ParseContext::new(2)).kind,
        DecodeErrorKind::UnexpectedByte { byte: 2, .. }
    ));
}

#[test]
fn protocol_version_gates_messages() {
    let start = encode::message(&Message::StreamStart(StreamStart {
        xid: 5,
        first_segment: true,
    }));
    let e = err(&start, v1());
    assert_eq!(
        e.kind,
        DecodeErrorKind::NotInProtocol {
            required: 2,
            negotiated: 1
        }
    );
    assert_eq!(
        e.to_string(),
        "pgoutput Stream Start at offset 0: message requires protocol version 2, negotiated 1"
    );
    assert!(ParseContext::new(2).parse(&start).is_ok());
    let prepare = [b'P', 0];
    assert_eq!(
        err(&prepare, ParseContext::new(2)).kind,
        DecodeErrorKind::NotInProtocol {
            required: 3,
            negotiated: 2
        }
    );
    assert_eq!(
        err(&start, ParseContext::new(0)).kind,
        DecodeErrorKind::UnsupportedProtocol(0)
    );
    assert_eq!(
        err(&start, ParseContext::new(5)).kind,
        DecodeErrorKind::UnsupportedProtocol(5)
    );
    // in_stream needs protocol 2.
    let insert = encode::insert(Some(1), 2, &[]);
    assert!(matches!(
        err(&insert, v1().with_in_stream(true)).kind,
        DecodeErrorKind::NotInProtocol { required: 2, .. }
    ));
}

#[test]
fn stream_state_is_checked_and_tracked() {
    let mut ctx = ParseContext::new(2);
    assert_eq!(
        err(b"E", ctx).kind,
        DecodeErrorKind::StreamState { in_stream: false }
    );
    let start = encode::message(&Message::StreamStart(StreamStart {
        xid: 9,
        first_segment: false,
    }));
    ctx.parse_next(&start).unwrap();
    assert!(ctx.in_stream);
    assert_eq!(
        err(&start, ctx).kind,
        DecodeErrorKind::StreamState { in_stream: true }
    );
    assert_eq!(
        err(&[b'B'; 21], ctx).kind,
        DecodeErrorKind::StreamState { in_stream: true }
    );
    // Inside the block the xid comes first.
    let insert = encode::insert(Some(9), 1234, &[TupleValue::Text(b"v")]);
    let Message::Insert(ins) = ctx.parse_next(&insert).unwrap() else {
        panic!("Insert")
    };
    assert_eq!((ins.xid, ins.relation_oid), (Some(9), 1234));
    // Origin inside a block has no xid.
    let origin = [b'O', 0, 0, 0, 0, 0, 0, 0, 7, b'o', 0];
    assert!(matches!(ctx.parse_next(&origin).unwrap(), Message::Origin(o) if o.name == "o"));
    ctx.parse_next(b"E").unwrap();
    assert!(!ctx.in_stream);
    // A failed parse leaves the state alone.
    assert!(ctx.parse_next(b"E").is_err());
    assert!(!ctx.in_stream);
}

#[test]
fn stream_abort_lsn_depends_on_protocol_and_parallel() {
    let mut bytes = vec![b'A', 0, 0, 0, 1, 0, 0, 0, 2];
    assert!(ParseContext::new(4).parse(&bytes).is_ok());
    let parallel = ParseContext::new(4).with_parallel_streaming(true);
    assert_eq!(
        err(&bytes, parallel).kind,
        DecodeErrorKind::Truncated(Field::Named("abort lsn"))
    );
    bytes.extend_from_slice(&0x10u64.to_be_bytes());
    bytes.extend_from_slice(&42i64.to_be_bytes());
    let Message::StreamAbort(a) = parallel.parse(&bytes).unwrap() else {
        panic!("Stream Abort")
    };
    assert_eq!(
        a.abort.map(|i| (i.abort_lsn, i.abort_timestamp)),
        Some((0x10, 42))
    );
    // Parallel is a protocol 4 feature: ignored below.
    let v3 = ParseContext::new(3).with_parallel_streaming(true);
    assert_eq!(err(&bytes, v3).kind, DecodeErrorKind::TrailingBytes(16));
}

#[test]
fn empty_namespace_means_pg_catalog() {
    let rel = Relation {
        xid: None,
        oid: 1259,
        namespace: "",
        name: "pg_class",
        replica_identity: tidemark_pgoutput::ReplicaIdentity::Nothing,
        columns: vec![],
    };
    let bytes = encode::message(&Message::Relation(rel.clone()));
    let Message::Relation(parsed) = v1().parse(&bytes).unwrap() else {
        panic!("Relation")
    };
    assert_eq!(parsed, rel);
    assert_eq!(
        (parsed.namespace, parsed.namespace_name()),
        ("", "pg_catalog")
    );
}

#[test]
fn tuple_data_standalone_and_iteration() {
    let values = [
        TupleValue::Null,
        TupleValue::UnchangedToast,
        TupleValue::Text(b""),
        TupleValue::Binary(&[0, 1, 2]),
    ];
    let bytes = encode::tuple(&values);
    let tuple = TupleData::parse(&bytes).unwrap();
    assert_eq!(tuple.len(), 4);
    assert_eq!(tuple.iter().len(), 4);
    assert_eq!(tuple.iter().collect::<Vec<_>>(), values);
    assert_eq!(tuple.get(3), Some(values[3]));
    assert_eq!(tuple.get(4), None);
    assert!(TupleData::parse(&bytes[..bytes.len() - 1]).is_err());
    let empty = encode::tuple(&[]);
    assert!(TupleData::parse(&empty).unwrap().is_empty());
}

#[test]
fn shortcut_encoders_match_message_encoder() {
    let values = [TupleValue::Text(b"1")];
    let tuple_bytes = encode::tuple(&values);
    let new = TupleData::parse(&tuple_bytes).unwrap();
    let msg = Message::Insert(Insert {
        xid: None,
        relation_oid: 77,
        new,
    });
    assert_eq!(encode::message(&msg), encode::insert(None, 77, &values));
    let upd = encode::update(None, 77, Some((encode::OldImage::Full, &values)), &values);
    assert!(matches!(v1().parse(&upd).unwrap(), Message::Update(u) if u.old.is_some()));
    let del = encode::delete(None, 77, encode::OldImage::Key, &values);
    assert!(matches!(v1().parse(&del).unwrap(), Message::Delete(_)));
}

#[test]
fn timestamps_convert_between_epochs() {
    assert_eq!(pg_timestamp_to_unix_micros(0), Some(946_684_800_000_000));
    assert_eq!(PG_EPOCH_UNIX_MICROS, 946_684_800_000_000);
    assert_eq!(unix_micros_to_pg_timestamp(946_684_800_000_001), Some(1));
    assert_eq!(pg_timestamp_to_unix_micros(i64::MAX), None);
    assert_eq!(unix_micros_to_pg_timestamp(i64::MIN), None);
}
