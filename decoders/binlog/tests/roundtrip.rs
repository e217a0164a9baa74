//! Property tests: random tables and rows are encoded as the server would write them (test
//! encoder), in MySQL or MariaDB flavour, with or without CRC32 and zstd transaction payloads,
//! then decoded; every value must come back exactly.

mod support;

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef};
use arrow_buffer::i256;
use arrow_schema::{DataType, TimeUnit};
use proptest::prelude::*;
use tidemark_binlog::encode::{bitmap_lsb, ColumnSpec, EventWriter, RowEncoder, TableMapSpec};
use tidemark_binlog::event::code;
use tidemark_binlog::table_map::ty;
use tidemark_binlog::{packed_decimal, Checksum, Decoder, DecoderOptions, Step};
use tidemark_model::pg_value::days_from_civil;
use tidemark_model::{Image, MarkerKind, Op, TxnItem};

/// An expected value in the model.
#[derive(Debug, Clone, PartialEq)]
enum V {
    Null,
    Int(i64),
    UInt(u64),
    F32(u32),
    F64(u64),
    Dec(i256),
    Str(String),
    Bytes(Vec<u8>),
    Bool(bool),
    Date(i32),
    Dur(i64),
    Ts(i64),
    Invalid(String),
}

/// One column type and how to generate/encode its values.
#[derive(Debug, Clone)]
enum T {
    Int { len: usize, unsigned: bool },
    Float,
    Double,
    Decimal { p: u8, s: u8 },
    Year,
    Date,
    Time2 { fsp: u8 },
    DateTime2 { fsp: u8 },
    Timestamp2 { fsp: u8 },
    VarChar { latin1: bool },
    Char,
    Blob,
    VarBinary,
    Enum,
    Set,
    Bit { bits: u16 },
    Json,
}

const LABELS: [&str; 4] = ["a", "bb", "c c", "é"];

fn arb_type() -> impl Strategy<Value = T> {
    prop_oneof![
        (
            prop_oneof![Just(1usize), Just(2), Just(3), Just(4), Just(8)],
            any::<bool>()
        )
            .prop_map(|(len, unsigned)| T::Int { len, unsigned }),
        Just(T::Float),
        Just(T::Double),
        (1u8..=65)
            .prop_flat_map(|p| (Just(p), 0..=p.min(30)))
            .prop_map(|(p, s)| T::Decimal { p, s }),
        Just(T::Year),
        Just(T::Date),
        (0u8..=6).prop_map(|fsp| T::Time2 { fsp }),
        (0u8..=6).prop_map(|fsp| T::DateTime2 { fsp }),
        (0u8..=6).prop_map(|fsp| T::Timestamp2 { fsp }),
        any::<bool>().prop_map(|latin1| T::VarChar { latin1 }),
        Just(T::Char),
        Just(T::Blob),
        Just(T::VarBinary),
        Just(T::Enum),
        Just(T::Set),
        (1u16..=64).prop_map(|bits| T::Bit { bits }),
        Just(T::Json),
    ]
}

fn spec(t: &T, i: usize) -> ColumnSpec {
    let (tyc, meta, charset) = match t {
        T::Int { len, .. } => (
            [
                ty::TINY,
                ty::SHORT,
                ty::INT24,
                ty::LONG,
                0,
                0,
                0,
                ty::LONGLONG,
            ][len - 1],
            0,
            0,
        ),
        T::Float => (ty::FLOAT, 4, 0),
        T::Double => (ty::DOUBLE, 8, 0),
        T::Decimal { p, s } => (ty::NEWDECIMAL, (u16::from(*p) << 8) | u16::from(*s), 0),
        T::Year => (ty::YEAR, 0, 0),
        T::Date => (ty::DATE, 0, 0),
        T::Time2 { fsp } => (ty::TIME2, u16::from(*fsp), 0),
        T::DateTime2 { fsp } => (ty::DATETIME2, u16::from(*fsp), 0),
        T::Timestamp2 { fsp } => (ty::TIMESTAMP2, u16::from(*fsp), 0),
        T::VarChar { latin1: false } => (ty::VARCHAR, 400, 45),
        T::VarChar { latin1: true } => (ty::VARCHAR, 100, 8),
        T::Char => (ty::STRING, (u16::from(ty::STRING) << 8) | 40, 45),
        T::Blob => (ty::BLOB, 2, 63),
        T::VarBinary => (ty::VARCHAR, 1000, 63),
        T::Enum => (ty::STRING, (u16::from(ty::ENUM) << 8) | 1, 0),
        T::Set => (ty::STRING, (u16::from(ty::SET) << 8) | 1, 0),
        T::Bit { bits } => (ty::BIT, ((bits % 8) << 8) | (bits / 8), 0),
        T::Json => (ty::JSON, 4, 0),
    };
    ColumnSpec {
        name: format!("c{i}"),
        ty: tyc,
        meta,
        nullable: true,
        unsigned: matches!(t, T::Int { unsigned: true, .. }),
        charset,
        labels: if matches!(t, T::Enum | T::Set) {
            LABELS.iter().map(|s| s.to_string()).collect()
        } else {
            vec![]
        },
        key: false,
    }
}

fn be(v: u64, n: usize) -> Vec<u8> {
    v.to_be_bytes()[8 - n..].to_vec()
}

fn frac_bytes(us: u32, fsp: u8) -> Vec<u8> {
    match fsp {
        0 => vec![],
        1 | 2 => vec![(us / 10_000) as u8],
        3 | 4 => be(u64::from(us / 100), 2),
        _ => be(u64::from(us), 3),
    }
}

fn trunc_us(us: u32, fsp: u8) -> u32 {
    let keep = 10u32.pow(6 - u32::from(fsp));
    // fsp 1/3/5 keep the same storage as 2/4/6; generate values that fit the digits.
    us / keep * keep
}

/// A random value of `t`: (encoded bytes, expected model value). `r` is entropy.
fn value(t: &T, r: u64, r2: u64) -> (Vec<u8>, V) {
    match t {
        T::Int { len, unsigned } => {
            let bits = 8 * *len as u32;
            let raw = if bits == 64 {
                r
            } else {
                r & ((1u64 << bits) - 1)
            };
            let v = if *unsigned {
                V::UInt(raw)
            } else {
                let shift = 64 - bits;
                V::Int(((raw << shift) as i64) >> shift)
            };
            (raw.to_le_bytes()[..*len].to_vec(), v)
        }
        T::Float => {
            let f = (r as u32 as f32) / 7.0 - 1e6;
            (f.to_bits().to_le_bytes().to_vec(), V::F32(f.to_bits()))
        }
        T::Double => {
            let f = f64::from_bits(r);
            let f = if f.is_nan() { 0.5 } else { f };
            (f.to_bits().to_le_bytes().to_vec(), V::F64(f.to_bits()))
        }
        T::Decimal { p, s } => {
            let max = i256::from_i128(10).wrapping_pow(u32::from(*p));
            let mut v = i256::from_i128(r as i128)
                .wrapping_mul(i256::from_i128(r2 as i128 | 1))
                .wrapping_rem(max);
            if r2.is_multiple_of(3) {
                v = max.wrapping_sub(i256::ONE);
            }
            if r.is_multiple_of(2) {
                v = v.wrapping_neg();
            }
            (packed_decimal::encode(v, *p, *s), V::Dec(v))
        }
        T::Year => {
            let y = (r % 256) as u8;
            (
                vec![y],
                V::Int(if y == 0 { 0 } else { 1900 + i64::from(y) }),
            )
        }
        T::Date => {
            let (y, m, d) = (
                (r % 10_000) as u32,
                ((r >> 16) % 13) as u32,
                ((r >> 24) % 32) as u32,
            );
            let raw = (y << 9) | (m << 5) | d;
            let dim = [
                31,
                if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 {
                    29
                } else {
                    28
                },
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ];
            let v = if m >= 1 && d >= 1 && d <= dim[m as usize - 1] {
                V::Date(days_from_civil(i64::from(y), m, d) as i32)
            } else {
                V::Invalid(format!("{y:04}-{m:02}-{d:02}"))
            };
            (raw.to_le_bytes()[..3].to_vec(), v)
        }
        T::Time2 { fsp } => {
            let secs = (r % (839 * 3600)) as i64;
            let us = trunc_us((r2 % 1_000_000) as u32, *fsp);
            let neg = r2.is_multiple_of(2);
            let total = secs * 1_000_000 + i64::from(us);
            let signed = if neg { -total } else { total };
            let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
            let hms = (h << 12) | (m << 6) | s;
            let enc = if *fsp >= 5 {
                let packed = (hms << 24) + i64::from(us);
                let packed = if neg { -packed } else { packed };
                be((packed + 0x8000_0000_0000) as u64, 6)
            } else {
                let n = usize::from(*fsp).div_ceil(2);
                let unit = match n {
                    1 => 10_000,
                    2 => 100,
                    _ => 1,
                };
                let frac = i64::from(us) / unit;
                let (mut int, mut fr) = if neg { (-hms, -frac) } else { (hms, frac) };
                if int < 0 && fr != 0 {
                    // The inverse of the decoder's borrow.
                    int -= 1;
                    fr += 1 << (8 * n);
                }
                let mut b = be((int + 0x80_0000) as u64, 3);
                if n > 0 {
                    b.extend(be(fr as u64, n));
                }
                b
            };
            (enc, V::Dur(signed))
        }
        T::DateTime2 { fsp } => {
            let days = (r % 3_000_000) as i64 - 719_162 + 365; // years ~1..9999 around the epoch
            let days = days.clamp(days_from_civil(1000, 1, 1), days_from_civil(9999, 12, 31));
            let (y, m, d) = tidemark_model::pg_value::civil_from_days(days);
            let secs = (r2 % 86_400) as i64;
            let us = trunc_us((r2 % 1_000_000) as u32, *fsp);
            let ym = y * 13 + i64::from(m);
            let ymd = (ym << 5) | i64::from(d);
            let hms = ((secs / 3600) << 12) | (((secs / 60) % 60) << 6) | (secs % 60);
            let int = (ymd << 17) | hms;
            let mut b = be((int + 0x80_0000_0000) as u64, 5);
            b.extend(frac_bytes(us, *fsp));
            (
                b,
                V::Ts(days * 86_400_000_000 + secs * 1_000_000 + i64::from(us)),
            )
        }
        T::Timestamp2 { fsp } => {
            let secs = r % (1u64 << 32);
            let us = trunc_us((r2 % 1_000_000) as u32, *fsp);
            let mut b = be(secs, 4);
            b.extend(frac_bytes(us, *fsp));
            let v = if secs == 0 && us == 0 {
                V::Invalid(if *fsp == 0 {
                    "0000-00-00 00:00:00".into()
                } else {
                    format!("0000-00-00 00:00:00.{}", "0".repeat(usize::from(*fsp)))
                })
            } else {
                V::Ts(secs as i64 * 1_000_000 + i64::from(us))
            };
            (b, v)
        }
        T::VarChar { latin1 } => {
            let pool = ["", "a", "héllo", "😀 4-byte", "tab\tquote\"", "ÿ€"];
            let s = pool[(r % pool.len() as u64) as usize].repeat((r2 % 5) as usize);
            if *latin1 {
                // Only characters cp1252 has.
                let s: String = s
                    .chars()
                    .filter(|c| (*c as u32) < 0x80 || *c == 'é' || *c == 'ÿ' || *c == '€')
                    .collect();
                let bytes: Vec<u8> = s
                    .chars()
                    .map(|c| match c {
                        '€' => 0x80,
                        c => c as u32 as u8,
                    })
                    .collect();
                let mut b = vec![bytes.len() as u8];
                b.extend(&bytes);
                (b, V::Str(s))
            } else {
                let mut b = (s.len() as u16).to_le_bytes().to_vec();
                b.extend(s.as_bytes());
                (b, V::Str(s))
            }
        }
        T::Char => {
            let s = "xyz".repeat((r % 4) as usize);
            let mut b = vec![s.len() as u8];
            b.extend(s.as_bytes());
            (b, V::Str(s))
        }
        T::Blob | T::VarBinary => {
            let bytes: Vec<u8> = (0..(r % 40))
                .map(|i| (r2 >> (i % 8)) as u8 ^ i as u8)
                .collect();
            let mut b = (bytes.len() as u16).to_le_bytes().to_vec();
            b.extend(&bytes);
            (b, V::Bytes(bytes))
        }
        T::Enum => {
            let i = (r % 5) as u8;
            (
                vec![i],
                V::Str(if i == 0 {
                    String::new()
                } else {
                    LABELS[usize::from(i) - 1].into()
                }),
            )
        }
        T::Set => {
            let bits = (r % 16) as u8;
            let s: Vec<&str> = (0..4)
                .filter(|i| bits & (1 << i) != 0)
                .map(|i| LABELS[i])
                .collect();
            (vec![bits], V::Str(s.join(",")))
        }
        T::Bit { bits } => {
            let v = if *bits == 64 {
                r
            } else {
                r & ((1u64 << bits) - 1)
            };
            let n = usize::from(*bits).div_ceil(8);
            (
                be(v, n),
                if *bits == 1 {
                    V::Bool(v == 1)
                } else {
                    V::UInt(v)
                },
            )
        }
        T::Json => {
            let docs = [
                r#"{"a": 1, "bb": [true, false, null], "c": {"d": "e"}}"#,
                "[]",
                r#"[-1, 18446744073709551615, 1.5, "x\"y"]"#,
                r#""plain""#,
                "{}",
            ];
            let d = docs[(r % docs.len() as u64) as usize];
            let v: serde_json::Value = serde_json::from_str(d).unwrap();
            let bin = tidemark_binlog::json::encode(&v);
            let mut b = (bin.len() as u32).to_le_bytes().to_vec();
            b.extend(&bin);
            let mut text = String::new();
            tidemark_binlog::json_diff::print(&v, &mut text);
            (b, V::Str(text))
        }
    }
}

fn read(a: &ArrayRef, i: usize) -> V {
    if a.is_null(i) {
        return V::Null;
    }
    match a.data_type() {
        DataType::Int8 => V::Int(a.as_primitive::<Int8Type>().value(i).into()),
        DataType::Int16 => V::Int(a.as_primitive::<Int16Type>().value(i).into()),
        DataType::Int32 => V::Int(a.as_primitive::<Int32Type>().value(i).into()),
        DataType::Int64 => V::Int(a.as_primitive::<Int64Type>().value(i)),
        DataType::UInt8 => V::UInt(a.as_primitive::<UInt8Type>().value(i).into()),
        DataType::UInt16 => V::UInt(a.as_primitive::<UInt16Type>().value(i).into()),
        DataType::UInt32 => V::UInt(a.as_primitive::<UInt32Type>().value(i).into()),
        DataType::UInt64 => V::UInt(a.as_primitive::<UInt64Type>().value(i)),
        DataType::Float32 => V::F32(a.as_primitive::<Float32Type>().value(i).to_bits()),
        DataType::Float64 => V::F64(a.as_primitive::<Float64Type>().value(i).to_bits()),
        DataType::Decimal128(..) => {
            V::Dec(i256::from_i128(a.as_primitive::<Decimal128Type>().value(i)))
        }
        DataType::Decimal256(..) => V::Dec(a.as_primitive::<Decimal256Type>().value(i)),
        DataType::Utf8 => V::Str(a.as_string::<i32>().value(i).into()),
        DataType::Binary => V::Bytes(a.as_binary::<i32>().value(i).into()),
        DataType::Boolean => V::Bool(a.as_boolean().value(i)),
        DataType::Date32 => V::Date(a.as_primitive::<Date32Type>().value(i)),
        DataType::Duration(TimeUnit::Microsecond) => {
            V::Dur(a.as_primitive::<DurationMicrosecondType>().value(i))
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            V::Ts(a.as_primitive::<TimestampMicrosecondType>().value(i))
        }
        other => panic!("unexpected {other}"),
    }
}

/// Entropy of one image: per column (value bits, more bits, is null).
type ImageSpec = Vec<(u64, u64, bool)>;
/// op (0 insert, 1 update, 2 delete), before/after entropy.
type RowSpec = (u8, ImageSpec, ImageSpec);

#[derive(Debug, Clone)]
struct Case {
    types: Vec<T>,
    rows: Vec<RowSpec>,
    mariadb: bool,
    crc: bool,
    payload: bool,
}

fn arb_case() -> impl Strategy<Value = Case> {
    prop::collection::vec(arb_type(), 1..12).prop_flat_map(|types| {
        let n = types.len();
        let img =
            prop::collection::vec((any::<u64>(), any::<u64>(), prop::bool::weighted(0.15)), n);
        (
            Just(types),
            prop::collection::vec((0u8..3, img.clone(), img), 1..12),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(types, rows, mariadb, crc, payload)| Case {
                types,
                rows,
                mariadb,
                crc,
                payload,
            })
    })
}

fn encode_image(types: &[T], vals: &[(u64, u64, bool)]) -> (Vec<Option<Vec<u8>>>, Vec<V>) {
    types
        .iter()
        .zip(vals)
        .map(|(t, &(r, r2, null))| {
            if null {
                (None, V::Null)
            } else {
                let (b, v) = value(t, r, r2);
                (Some(b), v)
            }
        })
        .unzip()
}

fn run(case: &Case) -> Result<(), TestCaseError> {
    let mut w = EventWriter::new(if case.crc {
        Checksum::Crc32
    } else {
        Checksum::None
    });
    let mut events = vec![w.rotate(4, "binlog.000009")];
    events.push(w.format_description(if case.mariadb {
        "10.11.6-MariaDB-log"
    } else {
        "8.0.36"
    }));
    let table = TableMapSpec {
        table_id: 77,
        database: "db".into(),
        table: "t".into(),
        columns: case
            .types
            .iter()
            .enumerate()
            .map(|(i, t)| spec(t, i))
            .collect(),
        full_metadata: true,
    };
    let width = case.types.len();
    let all = bitmap_lsb(&vec![true; width]);
    let mut expected = Vec::new();
    let mut body = Vec::new();
    let mut inner_w = EventWriter {
        checksum: Checksum::None,
        ..w.clone()
    };
    // The GTID goes first, outside any payload.
    let gtid = if case.mariadb {
        w.mariadb_gtid(0, 42, false)
    } else {
        w.mysql_gtid([7; 16], 42, 1_700_000_000_123_456)
    };
    events.push(gtid);
    let into: &mut EventWriter = if case.payload && !case.mariadb {
        &mut inner_w
    } else {
        &mut w
    };
    if !case.mariadb {
        body.push(into.query(9, "db", "BEGIN"));
    }
    body.push(into.table_map(&table));
    for (op, a, b) in &case.rows {
        let (ba, va) = encode_image(&case.types, a);
        let (bb, vb) = encode_image(&case.types, b);
        let mut re = RowEncoder::default();
        let (t, after) = match (op, case.mariadb) {
            (0, m) => {
                re.image(&ba);
                (
                    if m {
                        code::WRITE_ROWS_V1
                    } else {
                        code::WRITE_ROWS_V2
                    },
                    None,
                )
            }
            (1, m) => {
                re.image(&ba);
                re.image(&bb);
                (
                    if m {
                        code::UPDATE_ROWS_V1
                    } else {
                        code::UPDATE_ROWS_V2
                    },
                    Some(all.as_slice()),
                )
            }
            (_, m) => {
                re.image(&ba);
                (
                    if m {
                        code::DELETE_ROWS_V1
                    } else {
                        code::DELETE_ROWS_V2
                    },
                    None,
                )
            }
        };
        body.push(into.rows(t, 77, width, &all, after, &re.out));
        expected.push((*op, va, vb));
    }
    body.push(into.xid(5));
    if case.payload && !case.mariadb {
        events.push(w.transaction_payload(&body));
    } else {
        events.extend(body);
    }
    let mut d = Decoder::new(DecoderOptions::default());
    d.set_checksum(if case.crc {
        Checksum::Crc32
    } else {
        Checksum::None
    });
    let mut rows = Vec::new();
    for e in &events {
        for s in d
            .decode(e)
            .map_err(|e| TestCaseError::fail(e.to_string()))?
        {
            if let Step::Emitted(t) = s {
                prop_assert!(t.complete);
                for item in t.items {
                    let TxnItem::Rows(b) = item else { continue };
                    for r in 0..b.num_rows() {
                        let img = |image: Image, col: usize| -> Vec<V> {
                            let st = b.batch.column(col).as_struct();
                            if st.is_null(r) {
                                return vec![];
                            }
                            (0..width)
                                .map(|c| match b.marker(r, image, c) {
                                    Some(m) if m.kind == MarkerKind::Invalid => {
                                        V::Invalid(m.detail.unwrap_or_default())
                                    }
                                    _ => read(st.column(c), r),
                                })
                                .collect()
                        };
                        rows.push((b.op(r), img(Image::Before, 4), img(Image::After, 5)));
                    }
                }
            }
        }
    }
    prop_assert_eq!(rows.len(), expected.len());
    for ((op, before, after), (eop, va, vb)) in rows.into_iter().zip(expected) {
        match eop {
            0 => {
                prop_assert_eq!(op, Op::Insert);
                prop_assert!(before.is_empty());
                prop_assert_eq!(after, va);
            }
            1 => {
                prop_assert_eq!(op, Op::Update);
                prop_assert_eq!(before, va);
                prop_assert_eq!(after, vb);
            }
            _ => {
                prop_assert_eq!(op, Op::Delete);
                prop_assert_eq!(before, va);
                prop_assert!(after.is_empty());
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
    #[test]
    fn prop_rows_round_trip(case in arb_case()) {
        run(&case)?;
    }

    /// Garbage, truncations and bit flips of valid events: errors, never panics.
    #[test]
    fn prop_never_panics(case in arb_case(), cut in any::<prop::sample::Index>(), flip in any::<u8>(), at in any::<prop::sample::Index>()) {
        let _ = run(&case);
        let mut w = EventWriter::new(Checksum::None);
        let mut d = Decoder::new(DecoderOptions::default());
        let fde = w.format_description("8.0.36");
        d.decode(&fde).unwrap();
        let table = TableMapSpec { table_id: 1, database: "d".into(), table: "t".into(),
            columns: case.types.iter().enumerate().map(|(i, t)| spec(t, i)).collect(), full_metadata: true };
        let mut ev = w.table_map(&table);
        let i = at.index(ev.len());
        ev[i] ^= flip;
        let n = cut.index(ev.len() + 1);
        let _ = d.decode(&ev[..n]);
        let _ = d.decode(&ev);
    }
}
