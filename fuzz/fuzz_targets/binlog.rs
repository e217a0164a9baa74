//! Feeds arbitrary event sequences to the binlog decoder, in MySQL and MariaDB flavour, with and
//! without CRC32 checksums.
//!
//! The bar (STYLE.md §6): no panic, no unbounded allocation (decompression is capped), an error
//! instead of garbage. Input: one flavour byte (bit 0: CRC32, bit 1: MariaDB, bit 2: drop the
//! ROWS_QUERY / ANNOTATE_ROWS text, i.e. `include_query = false`), then events, each a 2-byte
//! length and its bytes;
//! the event's `event_size` field is patched to the length so the body parsers are reached, and
//! with checksums on the CRC is recomputed so the parsers past it are reached too.
//!
//! Run: `make fuzz` (docs/fuzzing.md); it seeds `fuzz/corpus/binlog` from the captured fixtures
//! `decoders/binlog/tests/fixtures/*.bin` with `fuzz/seed_binlog.py`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tidemark_binlog::encode::EventWriter;
use tidemark_binlog::{Checksum, Decoder, DecoderOptions};

fuzz_target!(|data: &[u8]| {
    let Some((&flavour, mut rest)) = data.split_first() else {
        return;
    };
    let crc = flavour & 1 != 0;
    let checksum = if crc { Checksum::Crc32 } else { Checksum::None };
    let mut d = Decoder::new(DecoderOptions {
        max_chunk_rows: 16,
        max_uncompressed_bytes: 1 << 20,
        emit_empty_transactions: true,
    });
    d.set_include_query(flavour & 4 == 0);
    let mut w = EventWriter::new(checksum);
    let version = if flavour & 2 != 0 {
        "10.11.6-MariaDB-log"
    } else {
        "8.0.36"
    };
    let _ = d.decode(&w.rotate(4, "binlog.000001"));
    let _ = d.decode(&w.format_description(version));
    while rest.len() >= 2 {
        let n = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
        let n = n.min(rest.len() - 2);
        let mut ev = rest[2..2 + n].to_vec();
        rest = &rest[2 + n..];
        if ev.len() >= 19 {
            let len = ev.len() as u32;
            ev[9..13].copy_from_slice(&len.to_le_bytes());
            if crc && ev.len() >= 23 {
                let body = ev.len() - 4;
                let c = crc32fast_hash(&ev[..body]);
                ev[body..].copy_from_slice(&c.to_le_bytes());
            }
        }
        let _ = d.decode(&ev);
    }
});

/// CRC32 (IEEE), bitwise: the fuzz crate does not depend on crc32fast.
fn crc32fast_hash(b: &[u8]) -> u32 {
    let mut c = !0u32;
    for &x in b {
        c ^= u32::from(x);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}
