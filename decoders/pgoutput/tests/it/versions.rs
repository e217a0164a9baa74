//! Schema versions across sessions: a reconnect resends every Relation, and the numbering must
//! go on from the previous session's (sinks cache their encodings per table and version).

use tidemark_pgoutput::decoder::{Decoder, DecoderOptions};
use tidemark_pgoutput::encode;
use tidemark_pgoutput::{Message, Relation, RelationColumn, ReplicaIdentity};

fn relation(columns: &[&'static str]) -> Vec<u8> {
    encode::message(&Message::Relation(Relation {
        xid: None,
        oid: 16384,
        namespace: "public",
        name: "t",
        replica_identity: ReplicaIdentity::Default,
        columns: columns
            .iter()
            .enumerate()
            .map(|(i, name)| RelationColumn {
                flags: u8::from(i == 0),
                name,
                type_oid: 23,
                type_modifier: -1,
            })
            .collect(),
    }))
}

fn version(d: &Decoder) -> (u32, usize) {
    let s = d.relation_schema(16384).expect("relation decoded");
    (s.version, s.columns.len())
}

#[test]
fn a_new_session_continues_the_schema_versions_of_the_last() {
    let mut first = Decoder::new(DecoderOptions::default());
    first.decode(0, &relation(&["id", "a"])).unwrap();
    assert_eq!(version(&first), (1, 2));
    first.decode(0, &relation(&["id", "a", "b"])).unwrap();
    assert_eq!(version(&first), (2, 3));

    // Reconnect: the server resends the current Relation.
    let mut second =
        Decoder::new(DecoderOptions::default()).with_schema_versions(first.take_schema_versions());
    second.decode(0, &relation(&["id", "a", "b"])).unwrap();
    assert_eq!(
        version(&second),
        (2, 3),
        "same columns: same version, not 1"
    );
    second.decode(0, &relation(&["id", "b"])).unwrap();
    assert_eq!(version(&second), (3, 2));

    // Without the carried versions a fresh session starts at 1 (what a restarted process does:
    // its sinks start with empty caches too).
    let mut fresh = Decoder::new(DecoderOptions::default());
    fresh.decode(0, &relation(&["id", "b"])).unwrap();
    assert_eq!(version(&fresh), (1, 2));
}

/// Batches are closed at the byte limit: Arrow's string/binary offsets are i32, and a table's
/// batch past 2 GiB of one column made the builder panic ("byte array offset overflow").
#[test]
fn batches_are_closed_at_the_byte_limit() {
    use tidemark_model::TxnItem;
    use tidemark_pgoutput::decoder::Step;
    use tidemark_pgoutput::{Begin, Commit, TupleValue};

    let run = |max_bytes: Option<usize>| -> Vec<usize> {
        let mut d = Decoder::new(DecoderOptions::default());
        if let Some(n) = max_bytes {
            d.set_max_batch_bytes(n);
        }
        d.decode(0, &relation(&["id", "a"])).unwrap();
        d.decode(
            0,
            &encode::message(&Message::Begin(Begin {
                final_lsn: 100,
                commit_timestamp: 0,
                xid: 7,
            })),
        )
        .unwrap();
        for i in 0..5u8 {
            let id = [b'0' + i];
            let row = [TupleValue::Text(&id), TupleValue::Text(b"42")];
            d.decode(10 + u64::from(i), &encode::insert(None, 16384, &row))
                .unwrap();
        }
        let commit = encode::message(&Message::Commit(Commit {
            flags: 0,
            commit_lsn: 100,
            end_lsn: 108,
            commit_timestamp: 0,
        }));
        let Step::Emitted(t) = d.decode(100, &commit).unwrap() else {
            panic!("commit emits the transaction");
        };
        t.items
            .iter()
            .filter_map(|i| match i {
                TxnItem::Rows(b) => Some(b.num_rows()),
                _ => None,
            })
            .collect()
    };
    assert_eq!(run(None), vec![5]);
    assert_eq!(run(Some(1)), vec![1; 5]);
}
