//! Property tests: encode → parse round trips for every message kind, protocol version and
//! stream state; every truncation fails; random and mutated bytes never panic, and whatever does
//! parse re-encodes to the same bytes (the parser is canonical: no input is silently
//! reinterpreted).
//!
//! Generated messages borrow `'static` data, so strategies leak their strings and buffers; the
//! leak is bounded by the number of cases and fine in a test process.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::strategy::Union;

use tidemark_pgoutput::replication::ReplicationMessage;
use tidemark_pgoutput::{
    encode, AbortInfo, Begin, BeginPrepare, Commit, CommitPrepared, Delete, Insert, LogicalMessage,
    Message, OldTuple, Origin, ParseContext, Prepare, Relation, RelationColumn, ReplicaIdentity,
    RollbackPrepared, StandbyStatusUpdate, StreamAbort, StreamCommit, StreamStart, Truncate,
    TupleData, TupleValue, Type, Update,
};

fn leak_str(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn leak_bytes(v: Vec<u8>) -> &'static [u8] {
    Box::leak(v.into_boxed_slice())
}

/// Names: any non-control characters (no NUL), including multi-byte UTF-8, and empty.
fn name() -> BoxedStrategy<&'static str> {
    "\\PC{0,12}".prop_map(leak_str).boxed()
}

fn payload() -> BoxedStrategy<&'static [u8]> {
    prop_oneof![
        8 => vec(any::<u8>(), 0..48),
        1 => vec(any::<u8>(), 60_000..70_000),
    ]
    .prop_map(leak_bytes)
    .boxed()
}

fn value() -> BoxedStrategy<TupleValue<'static>> {
    prop_oneof![
        Just(TupleValue::Null),
        Just(TupleValue::UnchangedToast),
        payload().prop_map(TupleValue::Text),
        payload().prop_map(TupleValue::Binary),
    ]
    .boxed()
}

/// A TupleData together with the values it was built from.
fn tuple() -> BoxedStrategy<(TupleData<'static>, Vec<TupleValue<'static>>)> {
    prop_oneof![vec(value(), 0..4), vec(value(), 0..40)]
        .prop_map(|values| {
            let bytes = leak_bytes(encode::tuple(&values));
            (
                TupleData::parse(bytes).expect("encoded tuple parses"),
                values,
            )
        })
        .boxed()
}

fn old_tuple() -> BoxedStrategy<OldTuple<'static>> {
    (any::<bool>(), tuple())
        .prop_map(|(key, (t, _))| {
            if key {
                OldTuple::Key(t)
            } else {
                OldTuple::Full(t)
            }
        })
        .boxed()
}

fn context() -> BoxedStrategy<ParseContext> {
    (1u32..=4, any::<bool>(), any::<bool>())
        .prop_map(|(protocol, parallel, in_stream)| {
            ParseContext::new(protocol)
                .with_parallel_streaming(parallel)
                .with_in_stream(in_stream && protocol >= 2)
        })
        .boxed()
}

fn replica_identity() -> impl Strategy<Value = ReplicaIdentity> {
    prop_oneof![
        Just(ReplicaIdentity::Default),
        Just(ReplicaIdentity::Nothing),
        Just(ReplicaIdentity::Full),
        Just(ReplicaIdentity::Index),
    ]
}

fn relation(xid: Option<u32>) -> BoxedStrategy<Message<'static>> {
    let column = (any::<u8>(), name(), any::<u32>(), any::<i32>()).prop_map(
        |(flags, name, type_oid, type_modifier)| RelationColumn {
            flags,
            name,
            type_oid,
            type_modifier,
        },
    );
    (
        any::<u32>(),
        name(),
        name(),
        replica_identity(),
        vec(column, 0..20),
    )
        .prop_map(move |(oid, namespace, name, replica_identity, columns)| {
            Message::Relation(Relation {
                xid,
                oid,
                namespace,
                name,
                replica_identity,
                columns,
            })
        })
        .boxed()
}

/// Messages that may appear inside a streamed block (xid is Some) or outside (xid is None).
fn data_messages(xid: Option<u32>) -> Vec<BoxedStrategy<Message<'static>>> {
    vec![
        (any::<u8>(), any::<u64>(), name(), payload())
            .prop_map(move |(flags, lsn, prefix, content)| {
                Message::LogicalMessage(LogicalMessage {
                    xid,
                    flags,
                    lsn,
                    prefix,
                    content,
                })
            })
            .boxed(),
        (any::<u64>(), name())
            .prop_map(|(commit_lsn, name)| Message::Origin(Origin { commit_lsn, name }))
            .boxed(),
        relation(xid),
        (any::<u32>(), name(), name())
            .prop_map(move |(oid, namespace, name)| {
                Message::Type(Type {
                    xid,
                    oid,
                    namespace,
                    name,
                })
            })
            .boxed(),
        (any::<u32>(), tuple())
            .prop_map(move |(relation_oid, (new, _))| {
                Message::Insert(Insert {
                    xid,
                    relation_oid,
                    new,
                })
            })
            .boxed(),
        (any::<u32>(), proptest::option::of(old_tuple()), tuple())
            .prop_map(move |(relation_oid, old, (new, _))| {
                Message::Update(Update {
                    xid,
                    relation_oid,
                    old,
                    new,
                })
            })
            .boxed(),
        (any::<u32>(), old_tuple())
            .prop_map(move |(relation_oid, old)| {
                Message::Delete(Delete {
                    xid,
                    relation_oid,
                    old,
                })
            })
            .boxed(),
        (any::<u8>(), vec(any::<u32>(), 0..10))
            .prop_map(move |(options, relation_oids)| {
                Message::Truncate(Truncate {
                    xid,
                    options,
                    relation_oids,
                })
            })
            .boxed(),
    ]
}

fn prepare() -> impl Strategy<Value = Prepare<'static>> {
    (
        any::<u8>(),
        any::<u64>(),
        any::<u64>(),
        any::<i64>(),
        any::<u32>(),
        name(),
    )
        .prop_map(
            |(flags, prepare_lsn, end_lsn, prepare_timestamp, xid, gid)| Prepare {
                flags,
                prepare_lsn,
                end_lsn,
                prepare_timestamp,
                xid,
                gid,
            },
        )
}

fn transaction_messages(ctx: ParseContext) -> Vec<BoxedStrategy<Message<'static>>> {
    let mut out = vec![
        (any::<u64>(), any::<i64>(), any::<u32>())
            .prop_map(|(final_lsn, commit_timestamp, xid)| {
                Message::Begin(Begin {
                    final_lsn,
                    commit_timestamp,
                    xid,
                })
            })
            .boxed(),
        (any::<u8>(), any::<u64>(), any::<u64>(), any::<i64>())
            .prop_map(|(flags, commit_lsn, end_lsn, commit_timestamp)| {
                Message::Commit(Commit {
                    flags,
                    commit_lsn,
                    end_lsn,
                    commit_timestamp,
                })
            })
            .boxed(),
    ];
    if ctx.protocol >= 2 {
        let with_info = ctx.stream_abort_has_lsn();
        out.push(
            (any::<u32>(), any::<bool>())
                .prop_map(|(xid, first_segment)| {
                    Message::StreamStart(StreamStart { xid, first_segment })
                })
                .boxed(),
        );
        out.push(
            (
                any::<u32>(),
                any::<u8>(),
                any::<u64>(),
                any::<u64>(),
                any::<i64>(),
            )
                .prop_map(|(xid, flags, commit_lsn, end_lsn, commit_timestamp)| {
                    Message::StreamCommit(StreamCommit {
                        xid,
                        flags,
                        commit_lsn,
                        end_lsn,
                        commit_timestamp,
                    })
                })
                .boxed(),
        );
        out.push(
            (any::<u32>(), any::<u32>(), any::<u64>(), any::<i64>())
                .prop_map(move |(xid, subxid, abort_lsn, abort_timestamp)| {
                    let abort = with_info.then_some(AbortInfo {
                        abort_lsn,
                        abort_timestamp,
                    });
                    Message::StreamAbort(StreamAbort { xid, subxid, abort })
                })
                .boxed(),
        );
    }
    if ctx.protocol >= 3 {
        out.push(prepare().prop_map(Message::Prepare).boxed());
        out.push(prepare().prop_map(Message::StreamPrepare).boxed());
        out.push(
            prepare()
                .prop_map(|p| {
                    Message::BeginPrepare(BeginPrepare {
                        prepare_lsn: p.prepare_lsn,
                        end_lsn: p.end_lsn,
                        prepare_timestamp: p.prepare_timestamp,
                        xid: p.xid,
                        gid: p.gid,
                    })
                })
                .boxed(),
        );
        out.push(
            (prepare(), any::<i64>())
                .prop_map(|(p, rollback_timestamp)| {
                    Message::RollbackPrepared(RollbackPrepared {
                        flags: p.flags,
                        prepare_end_lsn: p.prepare_lsn,
                        rollback_end_lsn: p.end_lsn,
                        prepare_timestamp: p.prepare_timestamp,
                        rollback_timestamp,
                        xid: p.xid,
                        gid: p.gid,
                    })
                })
                .boxed(),
        );
        out.push(
            prepare()
                .prop_map(|p| {
                    Message::CommitPrepared(CommitPrepared {
                        flags: p.flags,
                        commit_lsn: p.prepare_lsn,
                        end_lsn: p.end_lsn,
                        commit_timestamp: p.prepare_timestamp,
                        xid: p.xid,
                        gid: p.gid,
                    })
                })
                .boxed(),
        );
    }
    out
}

/// Every message that is valid in `ctx`.
fn message_for(ctx: ParseContext) -> BoxedStrategy<Message<'static>> {
    if ctx.in_stream {
        any::<u32>()
            .prop_flat_map(|xid| {
                let mut options = data_messages(Some(xid));
                options.push(Just(Message::StreamStop).boxed());
                Union::new(options)
            })
            .boxed()
    } else {
        let mut options = data_messages(None);
        options.extend(transaction_messages(ctx));
        Union::new(options).boxed()
    }
}

fn context_and_message() -> BoxedStrategy<(ParseContext, Message<'static>)> {
    context()
        .prop_flat_map(|ctx| (Just(ctx), message_for(ctx)))
        .boxed()
}

fn tuples_of(message: &Message<'_>) -> Vec<TupleData<'static>> {
    // Re-parse the tuple bytes to compare value by value through the iterator.
    let collect = |t: &TupleData<'_>| {
        TupleData::parse(leak_bytes(encode_tuple_data(t))).expect("tuple bytes parse")
    };
    match message {
        Message::Insert(m) => vec![collect(&m.new)],
        Message::Update(m) => m
            .old
            .iter()
            .map(|o| collect(o.tuple()))
            .chain([collect(&m.new)])
            .collect(),
        Message::Delete(m) => vec![collect(m.old.tuple())],
        _ => vec![],
    }
}

fn encode_tuple_data(t: &TupleData<'_>) -> Vec<u8> {
    let values: Vec<_> = t.iter().collect();
    encode::tuple(&values)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn encode_then_parse_is_identity((ctx, message) in context_and_message()) {
        let bytes = encode::message(&message);
        let parsed = ctx.parse(&bytes);
        prop_assert_eq!(parsed.as_ref(), Ok(&message));
        // Iterating the tuples and re-encoding the values gives the same tuples back.
        let parsed = parsed.unwrap();
        let original: Vec<_> = tuples_of(&message);
        prop_assert_eq!(tuples_of(&parsed), original);
    }

    #[test]
    fn tuple_values_survive_the_round_trip((tuple, values) in tuple()) {
        prop_assert_eq!(tuple.len(), values.len());
        prop_assert_eq!(tuple.iter().collect::<Vec<_>>(), values);
    }

    #[test]
    fn every_truncation_and_extension_is_an_error((ctx, message) in context_and_message()) {
        let bytes = encode::message(&message);
        // Large messages: check every cut near both ends and a sample in between.
        let step = (bytes.len() / 200).max(1);
        let cuts = (0..bytes.len()).filter(|&n| n < 64 || n + 64 > bytes.len() || n % step == 0);
        for n in cuts {
            let err = ctx.parse(&bytes[..n]);
            prop_assert!(err.is_err(), "prefix of {} bytes parsed: {:?}", n, err);
            let err = err.unwrap_err();
            prop_assert!(err.offset <= n, "offset {} beyond input {}", err.offset, n);
        }
        let mut longer = bytes.clone();
        longer.push(0);
        prop_assert!(ctx.parse(&longer).is_err());
    }

    #[test]
    fn random_bytes_never_panic(ctx in context(), bytes in vec(any::<u8>(), 0..96)) {
        if let Ok(message) = ctx.parse(&bytes) {
            prop_assert_eq!(encode::message(&message), bytes.clone());
        }
        let _ = TupleData::parse(&bytes);
        let _ = StandbyStatusUpdate::parse(&bytes);
        let _ = ReplicationMessage::parse(&bytes);
    }

    #[test]
    fn tagged_random_bytes_never_panic(
        ctx in context(),
        tag in proptest::sample::select(b"BMCORYIUDTSEcAbPKrpwk".to_vec()),
        body in vec(any::<u8>(), 0..64),
    ) {
        let mut bytes = vec![tag];
        bytes.extend_from_slice(&body);
        if let Ok(message) = ctx.parse(&bytes) {
            prop_assert_eq!(encode::message(&message), bytes.clone());
        }
        let _ = ReplicationMessage::parse(&bytes);
    }

    #[test]
    fn mutated_messages_never_panic_and_parse_canonically(
        (ctx, message) in context_and_message(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = encode::message(&message);
        for (index, byte) in edits {
            let i = index.index(bytes.len());
            bytes[i] = byte;
        }
        if let Ok(parsed) = ctx.parse(&bytes) {
            prop_assert_eq!(encode::message(&parsed), bytes.clone());
        }
    }
}

#[test]
fn message_kind_and_tag_agree_with_the_parser() {
    let messages = [
        (
            ParseContext::new(2).with_in_stream(true),
            Message::StreamStop,
        ),
        (
            ParseContext::new(1),
            Message::Truncate(Truncate {
                xid: None,
                options: 3,
                relation_oids: vec![1, 2],
            }),
        ),
    ];
    for (ctx, m) in messages {
        let bytes = encode::message(&m);
        assert_eq!(bytes[0], m.tag());
        assert_eq!(ctx.parse(&bytes).unwrap().kind(), m.kind());
    }
}
