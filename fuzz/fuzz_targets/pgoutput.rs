//! Feeds arbitrary bytes to every parse entry point of the pgoutput protocol layer, under every
//! protocol version / parallel streaming / in-stream combination.
//!
//! The bar (STYLE.md §6): no panic, no unbounded allocation, and an error instead of garbage:
//! whatever parses must re-encode to exactly the input bytes.
//!
//! Run: `cargo +nightly fuzz run pgoutput` from the repository root (seed the corpus with the
//! frames of `decoders/pgoutput/tests/fixtures/*.bin`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use tidemark_pgoutput::{encode, ParseContext, ReplicationMessage, StandbyStatusUpdate, TupleData};

fn parse_all_contexts(data: &[u8]) {
    for protocol in 0..=5 {
        for parallel in [false, true] {
            for in_stream in [false, true] {
                let ctx = ParseContext::new(protocol)
                    .with_parallel_streaming(parallel)
                    .with_in_stream(in_stream);
                if let Ok(message) = ctx.parse(data) {
                    assert_eq!(encode::message(&message), data, "non-canonical parse");
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    parse_all_contexts(data);
    if let Ok(tuple) = TupleData::parse(data) {
        let values: Vec<_> = tuple.iter().collect();
        assert_eq!(values.len(), tuple.len());
        assert_eq!(encode::tuple(&values), data, "non-canonical tuple");
    }
    let _ = StandbyStatusUpdate::parse(data);
    if let Ok(ReplicationMessage::XLogData(x)) = ReplicationMessage::parse(data) {
        parse_all_contexts(x.data);
    }
});
