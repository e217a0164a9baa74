//! Golden fixtures captured from the real MariaDB 10.11 (`tests/fixtures/capture.sh`): every
//! event decodes, checksums verify, and the decoded rows match the reviewed `.expected` text.

mod support;

use support::*;

fn golden(name: &str) {
    let f = load(name);
    let mut d = decoder_for(&f, "tidemark_fx");
    let steps = decode_all(&mut d, &f.events);
    let got = dump(&steps);
    let path = format!(
        "{}/tests/fixtures/{name}.expected",
        env!("CARGO_MANIFEST_DIR")
    );
    if std::env::var_os("TIDEMARK_BLESS").is_some() {
        std::fs::write(&path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        got, want,
        "decoded {name} differs from {path} (TIDEMARK_BLESS=1 to rewrite)"
    );
}

#[test]
fn all_types() {
    golden("all_types");
}

#[test]
fn ddl_minimal_noblob_nopk() {
    golden("ddl");
}

#[test]
fn corrupt_checksum_is_a_definite_error_naming_file_and_position() {
    let f = load("all_types");
    let mut d = decoder_for(&f, "tidemark_fx");
    let mut events = f.events.clone();
    let i = events.iter().position(|e| e[4] == 19).expect("a table map");
    let n = events[i].len();
    events[i][n - 10] ^= 0x40;
    for e in &events[..i] {
        d.decode(e).unwrap();
    }
    let err = d.decode(&events[i]).unwrap_err();
    assert!(!err.is_transient());
    let msg = err.to_string();
    assert!(msg.starts_with(&format!("binlog {}:", f.file)), "{msg}");
    assert!(msg.contains("TABLE_MAP_EVENT: checksum mismatch"), "{msg}");
}
