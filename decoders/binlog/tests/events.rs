//! Event-level tests built from the documented formats: partial JSON updates, MariaDB
//! compressed events and GTIDs, heartbeats, GTID sets, chunking of long transactions and
//! resuming inside a transaction.

mod support;

use serde_json::json;
use tidemark_binlog::encode::{
    bitmap_lsb, mariadb_compress, put_packed, query_body, ColumnSpec, EventWriter, RowEncoder,
    TableMapSpec,
};
use tidemark_binlog::event::code;
use tidemark_binlog::table_map::ty;
use tidemark_binlog::{Checksum, Decoder, DecoderOptions, ErrorKind, Step};
use tidemark_model::{Gtid, MysqlPosition, Position, TxnItem};

fn col(name: &str, t: u8, meta: u16, charset: u16, key: bool) -> ColumnSpec {
    ColumnSpec {
        key,
        ..ColumnSpec::new(name, t, meta, charset)
    }
}

fn table(cols: Vec<ColumnSpec>) -> TableMapSpec {
    TableMapSpec {
        table_id: 5,
        database: "db".into(),
        table: "t".into(),
        columns: cols,
        full_metadata: true,
    }
}

fn rows_of(steps: &[Step]) -> Vec<String> {
    let mut s = String::new();
    for st in steps {
        if let Step::Emitted(t) = st {
            support::dump_txn(t, &mut s);
        }
    }
    s.lines()
        .filter(|l| l.starts_with("  "))
        .map(|l| l.trim().to_owned())
        .collect()
}

fn json_bytes(v: &serde_json::Value) -> Vec<u8> {
    let b = tidemark_binlog::json::encode(v);
    let mut out = (b.len() as u32).to_le_bytes().to_vec();
    out.extend(b);
    out
}

#[test]
fn partial_json_update_is_applied_to_the_before_image() {
    let mut w = EventWriter::new(Checksum::Crc32);
    let mut d = Decoder::new(DecoderOptions::default());
    let t = table(vec![
        col("id", ty::LONG, 0, 0, true),
        col("doc", ty::JSON, 4, 0, false),
    ]);
    let mut ev = vec![
        w.format_description("8.0.36"),
        w.mysql_gtid([1; 16], 7, 0),
        w.query(3, "db", "BEGIN"),
        w.table_map(&t),
    ];
    let before = json!({"a": 1, "list": [1, 2]});
    let mut rows = Vec::new();
    // Before image: full.
    rows.extend(bitmap_lsb(&[false, false]));
    rows.extend(1i32.to_le_bytes());
    rows.extend(json_bytes(&before));
    // After image: value_options = PARTIAL_JSON, partial bit for the JSON column, then values.
    put_packed(&mut rows, 1);
    rows.push(0b1);
    rows.extend(bitmap_lsb(&[false, false]));
    rows.extend(1i32.to_le_bytes());
    let mut diffs = Vec::new();
    tidemark_binlog::json_diff::encode_diff(0, "$.a", Some(&json!("x")), &mut diffs);
    tidemark_binlog::json_diff::encode_diff(1, "$.list[2]", Some(&json!(3)), &mut diffs);
    rows.extend((diffs.len() as u32).to_le_bytes());
    rows.extend(diffs);
    let all = bitmap_lsb(&[true, true]);
    ev.push(w.rows(code::PARTIAL_UPDATE_ROWS, 5, 2, &all, Some(&all), &rows));
    ev.push(w.xid(1));
    let steps = support::decode_all(&mut d, &ev);
    assert_eq!(
        rows_of(&steps),
        vec![
            r#"u db.t v1 my:0:127:310:0:0:01010101-0101-0101-0101-010101010101:7 | before: id=1 doc={"a": 1, "list": [1, 2]} | after: id=1 doc={"a": "x", "list": [1, 2, 3]}"#
        ]
    );
}

#[test]
fn mariadb_compressed_events_gtids_and_annotations() {
    let mut w = EventWriter::new(Checksum::Crc32);
    w.server_id = 3;
    let mut d = Decoder::new(DecoderOptions::default());
    d.set_checksum(Checksum::Crc32);
    let t = table(vec![
        col("id", ty::LONG, 0, 0, true),
        col("v", ty::VARCHAR, 40, 45, false),
    ]);
    let mut ev = vec![
        w.rotate(4, "mariadb-bin.000012"),
        w.format_description("10.11.6-MariaDB-log"),
    ];
    // GTID_LIST and BINLOG_CHECKPOINT at file start.
    let mut gl = 1u32.to_le_bytes().to_vec();
    gl.extend(0u32.to_le_bytes());
    gl.extend(3u32.to_le_bytes());
    gl.extend(99u64.to_le_bytes());
    ev.push(w.event(code::MARIADB_GTID_LIST, &gl));
    let name = b"mariadb-bin.000012";
    let mut cp = (name.len() as u32).to_le_bytes().to_vec();
    cp.extend(name);
    ev.push(w.event(code::MARIADB_BINLOG_CHECKPOINT, &cp));
    // A compressed DDL, standalone GTID.
    ev.push(w.mariadb_gtid(0, 100, true));
    let mut q = query_body(5, "db", b"");
    q.extend(mariadb_compress(
        b"CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(10))",
    ));
    ev.push(w.event(code::MARIADB_QUERY_COMPRESSED, &q));
    // A transaction with an annotate and a compressed rows event.
    ev.push(w.mariadb_gtid(0, 101, false));
    ev.push(w.event(
        code::MARIADB_ANNOTATE_ROWS,
        b"INSERT INTO t VALUES (1, 'z')",
    ));
    ev.push(w.table_map(&t));
    let mut re = RowEncoder::default();
    re.image(&[Some(1i32.to_le_bytes().to_vec()), Some(vec![1, b'z'])]);
    let all = bitmap_lsb(&[true, true]);
    // Compressed v1: post-header and bitmaps plain, rows compressed.
    let plain = w.clone().rows(code::WRITE_ROWS_V1, 5, 2, &all, None, &[]);
    let mut body = plain[19..plain.len() - 4].to_vec();
    body.extend(mariadb_compress(&re.out));
    ev.push(w.event(code::MARIADB_WRITE_ROWS_COMPRESSED_V1, &body));
    ev.push(w.xid(9));
    ev.push(w.artificial(code::HEARTBEAT, b"mariadb-bin.000012", w.pos as u32));
    ev.push(w.event(code::STOP, &[]));
    let steps = support::decode_all(&mut d, &ev);
    let ddl = steps.iter().find_map(|s| match s {
        Step::Ddl { query, end, .. } => Some((query.clone(), *end)),
        _ => None,
    });
    let (q, end) = ddl.expect("a DDL step");
    assert!(q.starts_with("CREATE TABLE t"));
    let Position::Mysql(end) = end else { panic!() };
    assert_eq!(
        end.gtid,
        Some(Gtid::Mariadb {
            domain: 0,
            server: 3,
            seq: 100
        })
    );
    assert_eq!(end.file, 12);
    let txn = steps
        .iter()
        .find_map(|s| match s {
            Step::Emitted(t) => Some(t),
            _ => None,
        })
        .unwrap();
    let TxnItem::Rows(b) = &txn.items[0] else {
        panic!()
    };
    let md = b.batch.schema().metadata().clone();
    assert_eq!(
        md[tidemark_binlog::meta::QUERY],
        "INSERT INTO t VALUES (1, 'z')"
    );
    assert_eq!(md[tidemark_binlog::meta::SERVER_ID], "3");
    assert_eq!(md[tidemark_binlog::meta::FILE], "mariadb-bin.000012");
    assert_eq!(rows_of(&steps).len(), 1);
    assert!(
        rows_of(&steps)[0].ends_with("after: id=1 v=z"),
        "{:?}",
        rows_of(&steps)
    );
    assert!(steps.iter().any(|s| matches!(s, Step::Heartbeat { .. })));
    assert!(matches!(steps.last(), Some(Step::Stop)));
}

fn long_txn(n: usize) -> Vec<Vec<u8>> {
    let mut w = EventWriter::new(Checksum::None);
    let t = table(vec![col("id", ty::LONG, 0, 0, true)]);
    let mut ev = vec![
        w.format_description("8.0.36"),
        w.query(1, "db", "BEGIN"),
        w.table_map(&t),
    ];
    for chunk in (0..n).collect::<Vec<_>>().chunks(10) {
        let mut re = RowEncoder::default();
        for i in chunk {
            re.image(&[Some((*i as i32).to_le_bytes().to_vec())]);
        }
        ev.push(w.rows(
            code::WRITE_ROWS_V2,
            5,
            1,
            &bitmap_lsb(&[true]),
            None,
            &re.out,
        ));
    }
    ev.push(w.xid(1));
    ev
}

#[test]
fn long_transactions_come_in_bounded_chunks() {
    let ev = long_txn(100);
    let mut d = Decoder::new(DecoderOptions {
        max_chunk_rows: 30,
        ..Default::default()
    });
    let steps = support::decode_all(&mut d, &ev);
    let txns: Vec<_> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Emitted(t) => Some(t),
            _ => None,
        })
        .collect();
    assert_eq!(
        txns.iter().map(|t| t.row_count()).collect::<Vec<_>>(),
        vec![30, 30, 30, 10]
    );
    assert_eq!(
        txns.iter().map(|t| t.complete).collect::<Vec<_>>(),
        vec![false, false, false, true]
    );
    assert!(txns.windows(2).all(|w| w[0].end < w[1].end));
}

/// The MySQL position of one `rows_of` line (its fourth field).
fn position_of_row(line: &str) -> MysqlPosition {
    line.split_whitespace()
        .nth(3)
        .unwrap()
        .parse::<Position>()
        .map(|p| *p.as_mysql().unwrap())
        .unwrap()
}

#[test]
fn resume_inside_a_transaction_skips_what_was_acknowledged() {
    let ev = long_txn(25);
    let mut d = Decoder::new(DecoderOptions::default());
    let all = rows_of(&support::decode_all(&mut d, &ev));
    assert_eq!(all.len(), 25);
    let pos = position_of_row(&all[14]);
    let mut d = Decoder::new(DecoderOptions::default());
    d.skip_until(pos);
    let rest = rows_of(&support::decode_all(&mut d, &ev));
    assert_eq!(rest, all[15..].to_vec());
}

#[test]
fn rows_without_a_table_map_and_dml_statements_are_definite_errors() {
    let mut w = EventWriter::new(Checksum::None);
    let mut d = Decoder::new(DecoderOptions::default());
    d.decode(&w.format_description("8.0.36")).unwrap();
    d.decode(&w.query(1, "db", "BEGIN")).unwrap();
    let e = d
        .decode(&w.rows(code::WRITE_ROWS_V2, 99, 1, &[1], None, &[0, 0, 0, 0, 0]))
        .unwrap_err();
    assert_eq!(*e.kind, ErrorKind::UnknownTable { table_id: 99 });
    assert!(e.to_string().contains("WRITE_ROWS_EVENT"), "{e}");
    let e = d
        .decode(&w.query(1, "db", "INSERT INTO t VALUES (1)"))
        .unwrap_err();
    assert!(e.to_string().contains("binlog_format=ROW"), "{e}");
}

#[test]
fn tables_outside_the_filter_are_skipped_unread() {
    let mut ev = long_txn(5);
    let mut d = Decoder::new(DecoderOptions::default());
    d.set_filter(|t| t.name != "t");
    // Corrupt the rows: an excluded table's rows are not even read.
    let i = ev.iter().position(|e| e[4] == code::WRITE_ROWS_V2).unwrap();
    let n = ev[i].len();
    ev[i].truncate(n - 1);
    let s = &mut ev[i];
    let len = s.len() as u32;
    s[9..13].copy_from_slice(&len.to_le_bytes());
    let steps = support::decode_all(&mut d, &ev);
    assert!(rows_of(&steps).is_empty());
    assert!(matches!(steps.last(), Some(Step::Emitted(t)) if t.items.is_empty()));
}

/// A MySQL transaction of `n` one-column rows under `gno`, after `pad` unrelated statements
/// (which move every offset, as on another server).
fn gtid_txns(pad: usize, n: usize) -> Vec<Vec<u8>> {
    const A: [u8; 16] = [0x3e; 16];
    let mut w = EventWriter::new(Checksum::Crc32);
    let t = table(vec![col("id", ty::LONG, 0, 0, true)]);
    let mut prev = 1u64.to_le_bytes().to_vec();
    prev.extend(A);
    prev.extend(1u64.to_le_bytes());
    prev.extend(1u64.to_le_bytes());
    prev.extend(101u64.to_le_bytes()); // A:1-100, half-open on the wire
    let mut ev = vec![
        w.rotate(4, "binlog.000003"),
        w.format_description("8.0.36"),
        w.event(code::PREVIOUS_GTIDS, &prev),
    ];
    for i in 0..pad {
        ev.push(w.mysql_gtid(A, 101 + i as u64, 0));
        ev.push(w.query(1, "db", "CREATE TABLE IF NOT EXISTS x (i int)"));
    }
    for gno in [101 + pad as u64, 102 + pad as u64] {
        ev.push(w.mysql_gtid(A, gno, 0));
        ev.push(w.query(1, "db", "BEGIN"));
        ev.push(w.table_map(&t));
        let mut re = RowEncoder::default();
        for i in 0..n {
            re.image(&[Some((i as i32).to_le_bytes().to_vec())]);
        }
        ev.push(w.rows(
            code::WRITE_ROWS_V2,
            5,
            1,
            &bitmap_lsb(&[true]),
            None,
            &re.out,
        ));
        ev.push(w.xid(gno));
    }
    ev
}

fn ids(rows: &[String]) -> Vec<String> {
    rows.iter()
        .map(|r| r.split_whitespace().last().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn executed_gtid_set_follows_previous_gtids_and_commits() {
    let ev = gtid_txns(2, 3);
    let mut d = Decoder::new(DecoderOptions::default());
    d.set_checksum(Checksum::Crc32);
    assert!(d.gtid_executed().is_none());
    let mut after = Vec::new();
    for e in &ev {
        for s in d.decode(e).unwrap() {
            match s {
                Step::Emitted(_) | Step::Ddl { .. } => {
                    after.push(d.gtid_executed().map(|s| s.to_string()))
                }
                _ => {}
            }
        }
    }
    let a = "3e3e3e3e-3e3e-3e3e-3e3e-3e3e3e3e3e3e";
    assert_eq!(
        after,
        (101..=104)
            .map(|n| Some(format!("{a}:1-{n}")))
            .collect::<Vec<_>>()
    );
    // A stream that starts with a known set adds to it (and does not need PREVIOUS_GTIDS).
    let mut d = Decoder::new(DecoderOptions::default());
    d.set_checksum(Checksum::Crc32);
    d.set_gtid_executed(
        format!("{a}:1-100,4e11fa47-71ca-11e1-9e33-c80aa9429562:7")
            .parse()
            .unwrap(),
    );
    for e in &ev[3..] {
        d.decode(e).unwrap();
    }
    assert_eq!(
        d.gtid_executed().unwrap().to_string(),
        format!("{a}:1-104,4e11fa47-71ca-11e1-9e33-c80aa9429562:7")
    );
}

/// Resume by GTID inside a transaction: its rows up to the checkpoint's index are dropped even
/// though the server (here: a stream with every offset moved) sends them at other positions.
#[test]
fn gtid_resume_inside_a_transaction_skips_acknowledged_rows_by_gtid() {
    let first = gtid_txns(0, 25);
    let mut d = Decoder::new(DecoderOptions::default());
    d.set_checksum(Checksum::Crc32);
    let all = rows_of(&support::decode_all(&mut d, &first));
    assert_eq!(all.len(), 50);
    let pos = position_of_row(&all[14]);
    let gtid = pos.gtid.expect("GTIDs on");
    // The same two transactions, re-numbered and at other offsets: 101 → 103, and the stream
    // as another server would send it after `COM_BINLOG_DUMP_GTID(A:1-102)`.
    let moved = gtid_txns(2, 25);
    let Gtid::Mysql { uuid, .. } = gtid else {
        unreachable!()
    };
    let mut d = Decoder::new(DecoderOptions::default());
    d.set_checksum(Checksum::Crc32);
    d.skip_rows_of(Gtid::Mysql { uuid, gno: 103 }, pos.index);
    let rest = rows_of(&support::decode_all(&mut d, &moved));
    assert_eq!(rest.len(), 50 - 15);
    assert_eq!(ids(&rest), ids(&all[15..]));
    // A position-based skip would have been wrong here: the moved stream's offsets are larger.
    let mut d = Decoder::new(DecoderOptions::default());
    d.set_checksum(Checksum::Crc32);
    d.skip_until(pos);
    assert_ne!(rows_of(&support::decode_all(&mut d, &moved)).len(), 35);
}

/// A MySQL transaction of two statements with ROWS_QUERY events, then one without: the
/// statement of each goes to `meta::QUERY` (`include_query`), the BEGIN's thread to
/// `meta::THREAD` in both modes; with `set_include_query(false)` the text is dropped.
fn rows_query_txns(include_query: bool) -> Vec<(Option<String>, Option<String>, usize)> {
    let mut w = EventWriter::new(Checksum::Crc32);
    let mut d = Decoder::new(DecoderOptions::default());
    d.set_include_query(include_query);
    let t = table(vec![col("id", ty::LONG, 0, 0, true)]);
    let all = bitmap_lsb(&[true]);
    let insert = |w: &mut EventWriter, id: i32| {
        let mut re = RowEncoder::default();
        re.image(&[Some(id.to_le_bytes().to_vec())]);
        w.rows(code::WRITE_ROWS_V2, 5, 1, &all, None, &re.out)
    };
    let rows_query = |w: &mut EventWriter, q: &str| {
        let mut body = vec![q.len().min(255) as u8];
        body.extend(q.as_bytes());
        w.event(code::ROWS_QUERY, &body)
    };
    let mut ev = vec![
        w.format_description("8.0.36"),
        w.query(77, "db", "BEGIN"),
        rows_query(&mut w, "INSERT INTO t VALUES (1)"),
        w.table_map(&t),
    ];
    ev.push(insert(&mut w, 1));
    ev.push(rows_query(&mut w, "INSERT INTO t VALUES (2)"));
    ev.push(w.table_map(&t));
    ev.push(insert(&mut w, 2));
    ev.push(w.xid(1));
    // The next transaction has no ROWS_QUERY: no query (Debezium clears it at commit).
    ev.push(w.query(78, "db", "BEGIN"));
    ev.push(w.table_map(&t));
    ev.push(insert(&mut w, 3));
    ev.push(w.xid(2));
    let steps = support::decode_all(&mut d, &ev);
    let mut out = Vec::new();
    for s in &steps {
        if let Step::Emitted(txn) = s {
            for item in &txn.items {
                if let TxnItem::Rows(b) = item {
                    let md = b.batch.schema().metadata().clone();
                    out.push((
                        md.get(tidemark_binlog::meta::THREAD).cloned(),
                        md.get(tidemark_binlog::meta::QUERY).cloned(),
                        b.batch.num_rows(),
                    ));
                }
            }
        }
    }
    out
}

#[test]
fn rows_query_text_is_kept_only_with_include_query() {
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        rows_query_txns(true),
        vec![
            (s("77"), s("INSERT INTO t VALUES (1)"), 1),
            (s("77"), s("INSERT INTO t VALUES (2)"), 1),
            (s("78"), None, 1),
        ]
    );
    // Off: one batch for both statements (the metadata no longer differs), no query.
    assert_eq!(
        rows_query_txns(false),
        vec![(s("77"), None, 2), (s("78"), None, 1)]
    );
}

#[test]
fn a_row_that_reads_no_bytes_is_an_error_not_an_endless_loop() {
    // A one-column table and a rows event whose present bitmap names no column: each row reads
    // zero bytes, so before the check the decoder appended rows forever (cargo fuzz: OOM).
    let mut w = EventWriter::new(Checksum::None);
    let mut d = Decoder::new(DecoderOptions::default());
    let t = table(vec![col("id", ty::LONG, 0, 0, true)]);
    let none = bitmap_lsb(&[false]);
    let ev = vec![
        w.format_description("10.11.6-MariaDB-log"),
        w.mariadb_gtid(0, 1, false),
        w.table_map(&t),
        w.rows(code::WRITE_ROWS_V1, 5, 1, &none, None, &[0]),
    ];
    let mut errors = Vec::new();
    for e in &ev {
        if let Err(e) = d.decode(e) {
            errors.push(e.to_string());
        }
    }
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("a row with no column"), "{errors:?}");
}

/// Inputs cargo fuzz found (`fuzz/fuzz_targets/binlog.rs` format: a flavour byte, then events
/// as a u16 length and bytes, each event's size patched and CRC recomputed), replayed the way
/// the target does: every one must decode to results or errors, without panic or endless loop.
#[test]
fn fuzz_regressions_replay_without_panic() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fuzz");
    let mut n = 0;
    for f in std::fs::read_dir(dir).expect("fixtures/fuzz") {
        let data = std::fs::read(f.expect("entry").path()).expect("read");
        let Some((&flavour, mut rest)) = data.split_first() else {
            continue;
        };
        let crc = flavour & 1 != 0;
        let mut d = Decoder::new(DecoderOptions {
            max_chunk_rows: 16,
            max_uncompressed_bytes: 1 << 20,
            emit_empty_transactions: true,
        });
        d.set_include_query(flavour & 4 == 0);
        let mut w = EventWriter::new(if crc { Checksum::Crc32 } else { Checksum::None });
        let version = if flavour & 2 != 0 {
            "10.11.6-MariaDB-log"
        } else {
            "8.0.36"
        };
        let _ = d.decode(&w.rotate(4, "binlog.000001"));
        let _ = d.decode(&w.format_description(version));
        while rest.len() >= 2 {
            let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
            let mut ev = rest[2..2 + len].to_vec();
            rest = &rest[2 + len..];
            if ev.len() >= 19 {
                let size = ev.len() as u32;
                ev[9..13].copy_from_slice(&size.to_le_bytes());
                if crc && ev.len() >= 23 {
                    let body = ev.len() - 4;
                    let c = crc32fast::hash(&ev[..body]);
                    ev[body..].copy_from_slice(&c.to_le_bytes());
                }
            }
            let _ = d.decode(&ev);
        }
        n += 1;
    }
    assert!(n >= 1, "no fuzz regression inputs in {dir}");
}

/// The decoder's latest (version, column count) of `db.t`.
fn version_of(d: &Decoder) -> (u32, usize) {
    let s = d
        .schema(&tidemark_model::TableId::new("db", "t"))
        .expect("table map decoded");
    (s.version, s.columns.len())
}

#[test]
fn a_new_session_continues_the_schema_versions_of_the_last() {
    let mut w = EventWriter::new(Checksum::Crc32);
    let fde = w.format_description("10.11.6-MariaDB");
    let id = || col("id", ty::LONG, 0, 0, true);
    let two = w.table_map(&table(vec![id(), col("a", ty::LONG, 0, 0, false)]));
    let three = w.table_map(&table(vec![
        id(),
        col("a", ty::LONG, 0, 0, false),
        col("b", ty::LONG, 0, 0, false),
    ]));
    let mut first = Decoder::new(DecoderOptions::default());
    first.decode(&fde).unwrap();
    first.decode(&two).unwrap();
    assert_eq!(version_of(&first), (1, 2));
    first.decode(&three).unwrap();
    assert_eq!(version_of(&first), (2, 3));

    // Reconnect: the server sends the current table map again.
    let mut second =
        Decoder::new(DecoderOptions::default()).with_schema_versions(first.take_schema_versions());
    second.decode(&fde).unwrap();
    second.decode(&three).unwrap();
    assert_eq!(
        version_of(&second),
        (2, 3),
        "same columns: same version, not 1"
    );
    second.decode(&two).unwrap();
    assert_eq!(version_of(&second), (3, 2));

    // An incremental snapshot's catalog columns for a table the stream has not decoded become
    // its version 1; the stream's table map with other columns is then version 2.
    let t = tidemark_model::TableId::new("db", "t");
    let catalog = second.schema(&t).unwrap().columns.clone();
    let mut third = Decoder::new(DecoderOptions::default());
    assert_eq!(third.table_schema_or(&t, catalog.clone()).version, 1);
    third.decode(&fde).unwrap();
    third.decode(&three).unwrap();
    assert_eq!(version_of(&third), (2, 3));
    assert_eq!(third.table_schema_or(&t, catalog).version, 2);
}

#[test]
fn a_transaction_payload_inside_a_payload_is_an_error() {
    // Each nesting level was decoded by a recursive call holding its own decompressed copy:
    // deep nesting ran the stack out (an abort, not even a panic). The server never nests.
    let mut w = EventWriter::new(Checksum::None);
    let mut d = Decoder::new(DecoderOptions::default());
    d.decode(&w.format_description("8.0.36")).unwrap();
    let inner = vec![w.query(1, "db", "BEGIN"), w.xid(1)];
    let once = w.transaction_payload(&inner);
    let steps = d.decode(&once).unwrap();
    assert!(matches!(steps.last(), Some(Step::Emitted(_))), "{steps:?}");
    let nested = w.transaction_payload(&inner);
    let twice = w.transaction_payload(&[nested]);
    let e = d.decode(&twice).unwrap_err();
    assert!(
        matches!(&*e.kind, ErrorKind::Sequence(s) if s.contains("payload inside a transaction payload")),
        "{e}"
    );
    assert!(e.to_string().contains("TRANSACTION_PAYLOAD_EVENT"), "{e}");
}

#[test]
fn payload_event_count_of_a_short_event_is_an_error() {
    // Without a checksum nothing checked the length before the header was sliced off (panic).
    for n in [0, 5, 18] {
        let e = tidemark_binlog::events::payload_event_count(&vec![0; n], Checksum::None);
        assert!(e.is_err(), "{n} bytes");
    }
    let mut w = EventWriter::new(Checksum::None);
    let inner = vec![w.query(1, "db", "BEGIN"), w.xid(1)];
    let p = w.transaction_payload(&inner);
    assert_eq!(
        tidemark_binlog::events::payload_event_count(&p, Checksum::None),
        Ok(2)
    );
}

#[test]
fn batches_are_closed_at_the_byte_limit() {
    // Arrow's string/binary offsets are i32: a table's batch past 2 GiB of one column made the
    // builder panic. The decoder closes a batch at `set_max_batch_bytes` (here: every row).
    let ev = long_txn(25);
    let mut d = Decoder::new(DecoderOptions::default());
    let all = support::decode_all(&mut d, &ev);
    let batches = |steps: &[Step]| -> Vec<usize> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Emitted(t) => Some(t),
                _ => None,
            })
            .flat_map(|t| t.items.iter())
            .filter_map(|i| match i {
                TxnItem::Rows(b) => Some(b.num_rows()),
                _ => None,
            })
            .collect()
    };
    assert_eq!(batches(&all), vec![25]);
    let mut d = Decoder::new(DecoderOptions::default());
    d.set_max_batch_bytes(1);
    let split = support::decode_all(&mut d, &ev);
    assert_eq!(batches(&split), vec![1; 25]);
    assert_eq!(rows_of(&split), rows_of(&all));
}

#[test]
fn zero_max_chunk_rows_with_skipped_rows_does_not_panic() {
    // max_chunk_rows = 0 made an event whose rows were all skipped (resume) emit a chunk with
    // no last row: `expect("rows were added")` panicked. 0 now means 1.
    let ev = long_txn(25);
    let mut d = Decoder::new(DecoderOptions::default());
    let all = rows_of(&support::decode_all(&mut d, &ev));
    let pos = position_of_row(&all[14]);
    let mut d = Decoder::new(DecoderOptions {
        max_chunk_rows: 0,
        ..Default::default()
    });
    d.skip_until(pos);
    let rest = rows_of(&support::decode_all(&mut d, &ev));
    assert_eq!(rest, all[15..].to_vec());
}
