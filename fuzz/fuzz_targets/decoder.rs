//! Feeds arbitrary column values to the pgoutput `Decoder` (decode into the Arrow change model):
//! the value parsers of every builtin type, in text and binary format, inside Insert, Update
//! (with an old full row) and Delete messages.
//!
//! Input layout: byte 0 = number of columns (1..=8); then per column one byte choosing the type
//! (index into `TYPES`, high bit = binary format) and one byte choosing the typmod; the rest is
//! split at 0xFF bytes into the column values (fewer pieces than columns: NULLs; a piece
//! starting with 0xFE: unchanged TOAST). The bar: no panic, whatever the bytes; errors are fine.
//!
//! Run: `cargo +nightly fuzz run decoder` from `fuzz/` (see docs/fuzzing.md).

#![no_main]

use libfuzzer_sys::fuzz_target;
use tidemark_pgoutput::decoder::{Decoder, DecoderOptions};
use tidemark_pgoutput::encode::OldImage;
use tidemark_pgoutput::{
    encode, Begin, Commit, Message, Relation, RelationColumn, ReplicaIdentity, TupleValue,
};

/// Builtin type oids with their own parsers (pg_types.rs), arrays included.
const TYPES: &[u32] = &[
    16, 17, 18, 19, 20, 21, 23, 25, 26, 114, 142, 600, 601, 602, 603, 604, 628, 650, 700, 701, 718,
    774, 790, 829, 869, 1042, 1043, 1082, 1083, 1114, 1184, 1186, 1266, 1560, 1562, 1700, 2950,
    3802, 3904, 3906, 3908, 3910, 3912, 3926, 1000, 1001, 1005, 1007, 1009, 1016, 1021, 1022, 1115,
    1182, 1185, 1231, 2951, 3807, 199,
];
const TYPMODS: &[i32] = &[
    -1,
    4,
    5,
    9,
    (10 << 16 | 2) + 4,
    (38 << 16 | 10) + 4,
    3,
    6,
    0,
];

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = (n % 8 + 1) as usize;
    if rest.len() < 2 * n {
        return;
    }
    let (spec, values) = rest.split_at(2 * n);
    let names: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
    let mut binary = Vec::with_capacity(n);
    let columns = (0..n)
        .map(|i| {
            let t = spec[2 * i];
            binary.push(t & 0x80 != 0);
            RelationColumn {
                flags: u8::from(i == 0),
                name: &names[i],
                type_oid: TYPES[(t & 0x7f) as usize % TYPES.len()],
                type_modifier: TYPMODS[spec[2 * i + 1] as usize % TYPMODS.len()],
            }
        })
        .collect();
    let relation = encode::message(&Message::Relation(Relation {
        xid: None,
        oid: 1,
        namespace: "public",
        name: "f",
        replica_identity: ReplicaIdentity::Full,
        columns,
    }));
    let mut pieces = values.split(|&b| b == 0xff);
    let tuple: Vec<TupleValue<'_>> = (0..n)
        .map(|i| match pieces.next() {
            None => TupleValue::Null,
            Some([0xfe, ..]) => TupleValue::UnchangedToast,
            Some(v) if binary[i] => TupleValue::Binary(v),
            Some(v) => TupleValue::Text(v),
        })
        .collect();
    let mut decoder = Decoder::new(DecoderOptions {
        protocol: 1,
        ..DecoderOptions::default()
    });
    let begin = encode::message(&Message::Begin(Begin {
        final_lsn: 100,
        commit_timestamp: 0,
        xid: 7,
    }));
    let commit = encode::message(&Message::Commit(Commit {
        flags: 0,
        commit_lsn: 100,
        end_lsn: 108,
        commit_timestamp: 0,
    }));
    for data in [
        relation,
        begin,
        encode::insert(None, 1, &tuple),
        encode::update(None, 1, Some((OldImage::Full, &tuple)), &tuple),
        encode::delete(None, 1, OldImage::Full, &tuple),
        commit,
    ] {
        if decoder.decode(10, &data).is_err() {
            return;
        }
    }
});
