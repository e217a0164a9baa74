//! Golden frames captured from a real PostgreSQL 15 (see `tests/fixtures/capture.sh` and
//! `manifest.txt`). Every frame must parse, re-encode to the identical bytes, and the fields the
//! workload determines must come out right.

use std::collections::HashMap;
use std::path::PathBuf;

use tidemark_pgoutput::{
    encode, pg_timestamp_to_unix_micros, Message, OldTuple, ParseContext, ReplicaIdentity,
    TupleValue,
};

struct Frame {
    lsn: u64,
    xid: u32,
    data: Vec<u8>,
}

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read_frames(name: &str) -> Vec<Frame> {
    let bytes = std::fs::read(fixtures_dir().join(name)).expect("fixture file is committed");
    let mut frames = Vec::new();
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        let (head, tail) = rest.split_at(16);
        let lsn = u64::from_be_bytes(head[0..8].try_into().unwrap());
        let xid = u32::from_be_bytes(head[8..12].try_into().unwrap());
        let len = u32::from_be_bytes(head[12..16].try_into().unwrap()) as usize;
        let (data, tail) = tail.split_at(len);
        frames.push(Frame {
            lsn,
            xid,
            data: data.to_vec(),
        });
        rest = tail;
    }
    frames
}

/// (file, options) from manifest.txt.
fn manifest() -> Vec<(String, HashMap<String, String>)> {
    let text = std::fs::read_to_string(fixtures_dir().join("manifest.txt")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|line| {
            let mut parts = line.split_whitespace();
            let file = parts.next().unwrap().to_string();
            let opts = parts
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap();
                    (k.to_string(), v.to_string())
                })
                .collect();
            (file, opts)
        })
        .collect()
}

fn context_for(opts: &HashMap<String, String>) -> ParseContext {
    ParseContext::new(opts["proto_version"].parse().unwrap())
}

/// Parses a whole session, checking the byte-exact round trip of every frame.
fn parse_session<'a>(frames: &'a [Frame], mut ctx: ParseContext) -> Vec<Message<'a>> {
    frames
        .iter()
        .enumerate()
        .map(|(i, frame)| {
            let msg = ctx
                .parse_next(&frame.data)
                .unwrap_or_else(|e| panic!("frame {i} at lsn {:X}: {e}", frame.lsn));
            assert_eq!(encode::message(&msg), frame.data, "frame {i} re-encodes");
            msg
        })
        .collect()
}

/// Kind letters of a session, with runs of Insert collapsed to `I*` (the run lengths depend on
/// the server's memory accounting, not on the protocol).
fn shape(messages: &[Message<'_>]) -> String {
    let mut out = String::new();
    for m in messages {
        let tag = m.tag() as char;
        if tag == 'I' && out.ends_with('I') {
            continue;
        }
        out.push(tag);
    }
    out.replace('I', "I*")
}

fn text(v: &str) -> TupleValue<'_> {
    TupleValue::Text(v.as_bytes())
}

#[test]
fn every_fixture_in_the_manifest_parses_and_round_trips() {
    let manifest = manifest();
    assert_eq!(manifest.len(), 4);
    for (file, opts) in manifest {
        let frames = read_frames(&file);
        assert!(!frames.is_empty(), "{file}");
        let messages = parse_session(&frames, context_for(&opts));
        for (frame, msg) in frames.iter().zip(&messages) {
            check_transaction_boundaries(frame, msg);
        }
    }
}

fn check_transaction_boundaries(frame: &Frame, msg: &Message<'_>) {
    // 2024-01-01 in Unix µs: every capture is later than that.
    let recent = |ts: i64| pg_timestamp_to_unix_micros(ts).unwrap() > 1_704_067_200_000_000;
    match msg {
        Message::Begin(b) => {
            assert_eq!(b.xid, frame.xid);
            assert!(b.final_lsn >= frame.lsn && recent(b.commit_timestamp));
        }
        Message::Commit(c) => {
            assert_eq!(c.flags, 0);
            assert!(c.end_lsn > c.commit_lsn && recent(c.commit_timestamp));
        }
        Message::StreamCommit(c) => {
            assert_eq!(c.xid, frame.xid);
            assert!(c.end_lsn > c.commit_lsn && recent(c.commit_timestamp));
        }
        Message::StreamStart(s) => assert_eq!(s.xid, frame.xid),
        // The frame xid is the top-level one; in streams the message may carry a subxact's
        // xid, which is assigned after (is greater than) the top-level xid.
        Message::Insert(m) => assert!(m.xid.is_none_or(|x| x >= frame.xid)),
        _ => {}
    }
}

const V1_SHAPE: &str = "BYRI*CBRI*CBUCBUCBUCBDCBDCBRI*CBYRRTCBMCMBOI*C";

#[test]
fn v1_text_session() {
    let frames = read_frames("v1_text.bin");
    let msgs = parse_session(&frames, ParseContext::new(1));
    assert_eq!(shape(&msgs), V1_SHAPE);

    // Begin / Commit of the first transaction agree.
    let (Message::Begin(begin), Message::Commit(commit)) = (&msgs[0], &msgs[5]) else {
        panic!("first transaction is Begin .. Commit")
    };
    assert_eq!(begin.final_lsn, commit.commit_lsn);
    assert_eq!(begin.commit_timestamp, commit.commit_timestamp);

    let Message::Type(ty) = &msgs[1] else {
        panic!("Type")
    };
    assert_eq!(
        (ty.namespace, ty.name, ty.xid),
        ("public", "golden_mood", None)
    );
    let Message::Relation(rel) = &msgs[2] else {
        panic!("Relation")
    };
    assert_eq!((rel.namespace_name(), rel.name), ("public", "golden_items"));
    assert_eq!(rel.replica_identity, ReplicaIdentity::Default);
    let cols: Vec<_> = rel
        .columns
        .iter()
        .map(|c| (c.name, c.type_oid, c.type_modifier, c.is_key()))
        .collect();
    assert_eq!(
        cols,
        [
            ("id", 23, -1, true),
            ("name", 25, -1, false),
            ("note", 25, -1, false),
            ("mood", ty.oid, -1, false),
            ("amount", 1700, (10 << 16 | 2) + 4, false),
            ("raw", 17, -1, false),
        ]
    );
    let items_oid = rel.oid;

    let Message::Insert(ins) = &msgs[3] else {
        panic!("Insert")
    };
    assert_eq!(ins.relation_oid, items_oid);
    let note = "9dd4e461268c8034f5c8564e155c67a6".repeat(100);
    let first: Vec<_> = ins.new.iter().collect();
    assert_eq!(
        first,
        [
            text("1"),
            text("hello"),
            text(&note),
            text("happy"),
            text("12.50"),
            text("\\x00ff")
        ]
    );
    let Message::Insert(ins) = &msgs[4] else {
        panic!("Insert")
    };
    let second: Vec<_> = ins.new.iter().collect();
    use TupleValue::Null;
    assert_eq!(
        second,
        [
            text("2"),
            Null,
            text("short"),
            text("sad"),
            text("-1.25"),
            Null
        ]
    );

    // golden_full, REPLICA IDENTITY FULL
    let Message::Relation(full) = &msgs[7] else {
        panic!("Relation")
    };
    assert_eq!(
        (full.name, full.replica_identity),
        ("golden_full", ReplicaIdentity::Full)
    );
    assert!(
        full.columns.iter().all(|c| c.is_key()),
        "FULL marks every column as key"
    );

    // UPDATE name: the TOASTed note was not sent, and is not NULL.
    let Message::Update(up) = &msgs[12] else {
        panic!("Update")
    };
    assert_eq!(up.old, None);
    assert_eq!(up.new.get(1), Some(text("world")));
    assert_eq!(up.new.get(2), Some(TupleValue::UnchangedToast));

    // UPDATE id: old key only.
    let Message::Update(up) = &msgs[15] else {
        panic!("Update")
    };
    let Some(OldTuple::Key(key)) = up.old else {
        panic!("old key")
    };
    assert_eq!(
        key.iter().collect::<Vec<_>>(),
        [text("2"), Null, Null, Null, Null, Null]
    );
    assert_eq!(up.new.get(0), Some(text("20")));

    // UPDATE on REPLICA IDENTITY FULL: the whole old row.
    let Message::Update(up) = &msgs[18] else {
        panic!("Update")
    };
    let Some(OldTuple::Full(old)) = up.old else {
        panic!("old row")
    };
    assert_eq!(old.iter().collect::<Vec<_>>(), [text("1"), text("a")]);
    assert_eq!(up.new.iter().collect::<Vec<_>>(), [text("1"), text("c")]);

    let Message::Delete(del) = &msgs[21] else {
        panic!("Delete")
    };
    assert_eq!(
        (del.relation_oid, del.old.tuple().get(0)),
        (items_oid, Some(text("20")))
    );
    assert!(matches!(del.old, OldTuple::Key(_)));
    let Message::Delete(del) = &msgs[24] else {
        panic!("Delete")
    };
    let OldTuple::Full(old) = del.old else {
        panic!("old row")
    };
    assert_eq!(old.iter().collect::<Vec<_>>(), [text("2"), text("b")]);

    let Message::Relation(child) = &msgs[27] else {
        panic!("Relation")
    };
    assert_eq!(child.name, "golden_child");
    let Message::Truncate(tr) = &msgs[34] else {
        panic!("Truncate")
    };
    assert!(tr.cascade() && tr.restart_identity());
    let mut oids = tr.relation_oids.clone();
    oids.sort_unstable();
    let mut expected = vec![items_oid, child.oid];
    expected.sort_unstable();
    assert_eq!(oids, expected);

    let Message::LogicalMessage(m) = &msgs[37] else {
        panic!("Message")
    };
    assert!(m.transactional());
    assert_eq!(
        (m.prefix, m.content, m.xid),
        ("tidemark", &b"transactional payload"[..], None)
    );
    let Message::LogicalMessage(m) = &msgs[39] else {
        panic!("Message")
    };
    assert!(!m.transactional());
    assert_eq!(m.content, b"non-transactional payload");

    let Message::Origin(origin) = &msgs[41] else {
        panic!("Origin")
    };
    assert!(
        origin.name.starts_with("tm_golden_origin_"),
        "{}",
        origin.name
    );
    assert_eq!(origin.commit_lsn, 0x0ABC_DEF0);
}

#[test]
fn v1_binary_session_sends_binary_values() {
    let frames = read_frames("v1_binary.bin");
    let msgs = parse_session(&frames, ParseContext::new(1));
    assert_eq!(shape(&msgs), V1_SHAPE);
    let Message::Insert(ins) = &msgs[3] else {
        panic!("Insert")
    };
    let values: Vec<_> = ins.new.iter().collect();
    assert_eq!(
        values[0],
        TupleValue::Binary(&[0, 0, 0, 1]),
        "int4 send format"
    );
    assert_eq!(
        values[1],
        TupleValue::Binary(b"hello"),
        "text send format is the bytes"
    );
    assert_eq!(
        values[5],
        TupleValue::Binary(&[0x00, 0xff]),
        "bytea send format is raw"
    );
    // numeric send format: ndigits=2, weight=0, sign=+, dscale=2, digits 12, 5000
    assert_eq!(
        values[4],
        TupleValue::Binary(&[0, 2, 0, 0, 0, 0, 0, 2, 0, 12, 0x13, 0x88])
    );
    let Message::Update(up) = &msgs[12] else {
        panic!("Update")
    };
    assert_eq!(up.new.get(2), Some(TupleValue::UnchangedToast));
}

#[test]
fn v2_without_streaming_is_the_v1_format() {
    let v1 = read_frames("v1_text.bin");
    let v2 = read_frames("v2_text.bin");
    let msgs = parse_session(&v2, ParseContext::new(2));
    assert_eq!(shape(&msgs), V1_SHAPE);
    let same: Vec<bool> = v1.iter().zip(&v2).map(|(a, b)| a.data == b.data).collect();
    assert!(
        same.iter().all(|&s| s),
        "proto 2 sends the same bytes as proto 1 outside streams"
    );
}

#[test]
fn v2_streamed_transactions() {
    let frames = read_frames("v2_stream.bin");
    let msgs = parse_session(&frames, ParseContext::new(2));
    assert_eq!(
        shape(&msgs),
        "SRI*ESI*MYRI*UDRTEcSRI*ESI*EASRI*EcSRI*EABRI*C"
    );

    let mut open: Option<u32> = None;
    let mut seen_xids: Vec<u32> = Vec::new();
    // (top-level xid of the block, xid carried by the message) for in-stream data messages.
    let mut carried: Vec<(u32, u32)> = Vec::new();
    let mut in_block = |top: Option<u32>, xid: Option<u32>| {
        let (Some(top), Some(xid)) = (top, xid) else {
            assert_eq!((top, xid), (None, None), "xid iff inside a stream block");
            return;
        };
        assert!(
            xid >= top,
            "message xid {xid} is the block's {top} or one of its subxacts"
        );
        carried.push((top, xid));
    };
    let mut aborts = Vec::new();
    let mut commits = Vec::new();
    for (frame, msg) in frames.iter().zip(&msgs) {
        match msg {
            Message::StreamStart(s) => {
                assert_eq!(open, None);
                assert_eq!(
                    s.first_segment,
                    !seen_xids.contains(&s.xid),
                    "first segment flag"
                );
                seen_xids.push(s.xid);
                open = Some(s.xid);
            }
            Message::StreamStop => open = None,
            Message::StreamAbort(a) => aborts.push(*a),
            Message::StreamCommit(c) => commits.push(c.xid),
            Message::Insert(m) => in_block(open, m.xid),
            Message::Relation(m) => in_block(open, m.xid),
            Message::Type(m) => in_block(open, m.xid),
            Message::Update(m) => in_block(open, m.xid),
            Message::Delete(m) => in_block(open, m.xid),
            Message::Truncate(m) => in_block(open, m.xid),
            Message::LogicalMessage(m) => {
                in_block(open, m.xid);
                assert_eq!(m.content, b"streamed payload");
            }
            Message::Begin(b) => assert_eq!(b.xid, frame.xid),
            _ => {}
        }
    }
    seen_xids.dedup();
    assert_eq!(seen_xids.len(), 3, "three large transactions were streamed");
    assert_eq!(commits, [seen_xids[0], seen_xids[1]]);
    // A rolled-back savepoint aborts a subtransaction; a ROLLBACK aborts the whole transaction.
    assert_eq!(aborts.len(), 2);
    assert_eq!(aborts[0].xid, seen_xids[1]);
    assert_ne!(aborts[0].subxid, aborts[0].xid);
    assert_eq!(
        (aborts[1].xid, aborts[1].subxid),
        (seen_xids[2], seen_xids[2])
    );
    assert!(
        aborts.iter().all(|a| a.abort.is_none()),
        "no abort lsn below protocol 4"
    );
    // Trap: inside a stream the xid is the *subtransaction's* when the change was made in one.
    // The rolled-back savepoint's inserts carried the aborted subxid, and the row inserted after
    // it carried another subxid of the same top-level transaction.
    let subxids: Vec<u32> = carried
        .iter()
        .filter(|(top, xid)| top != xid)
        .map(|&(_, xid)| xid)
        .collect();
    assert!(subxids.contains(&aborts[0].subxid));
    assert!(subxids.iter().any(|&x| x != aborts[0].subxid));
    assert!(carried
        .iter()
        .filter(|(top, xid)| top != xid)
        .all(|&(top, _)| top == seen_xids[1]));

    // Inside the stream, the inserted golden_items row uses the enum type sent just before.
    let Some(Message::Update(up)) = msgs.iter().find(|m| matches!(m, Message::Update(_))) else {
        panic!("Update in stream")
    };
    assert_eq!(
        up.new.iter().collect::<Vec<_>>(),
        [text("1"), text("updated")]
    );
}

#[test]
fn streamed_frames_misparse_without_the_stream_flag() {
    // The trap this layer guards: reading an in-stream Insert without `in_stream` either fails
    // or is rejected, never silently taking the xid for the relation oid.
    let frames = read_frames("v2_stream.bin");
    let insert = frames.iter().find(|f| f.data[0] == b'I').unwrap();
    assert!(ParseContext::new(2).parse(&insert.data).is_err());
    assert!(ParseContext::new(2)
        .with_in_stream(true)
        .parse(&insert.data)
        .is_ok());
}

#[test]
fn every_truncation_of_every_golden_frame_fails() {
    for (file, opts) in manifest() {
        let frames = read_frames(&file);
        let mut ctx = context_for(&opts);
        for (i, frame) in frames.iter().enumerate() {
            for len in 0..frame.data.len() {
                let result = ctx.parse(&frame.data[..len]);
                assert!(result.is_err(), "{file} frame {i} cut at {len} parsed");
            }
            let mut longer = frame.data.clone();
            longer.push(b'n');
            assert!(
                ctx.parse(&longer).is_err(),
                "{file} frame {i} with a trailing byte"
            );
            ctx.parse_next(&frame.data).unwrap();
        }
    }
}
