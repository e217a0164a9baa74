//! Value parsing through the public `ColumnBuilder`: text forms, binary forms (written here with
//! small encoders) and their agreement.

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef};
use arrow_buffer::{i256, IntervalMonthDayNano};
use proptest::prelude::*;
use tidemark_model::pg_types::{self, oid};
use tidemark_model::{
    ColumnBuilder, CompositeField, MarkerKind, SourceType, ValueError, ValueMarker,
};

fn builder(type_oid: u32, typmod: i32) -> ColumnBuilder {
    let t = SourceType::pg_builtin(type_oid, typmod).expect("builtin");
    ColumnBuilder::new(&t, &pg_types::arrow_type(&t), 4)
}

fn numeric_mod(p: i32, s: i32) -> i32 {
    ((p << 16) | (s & 0x7ff)) + 4
}

/// Parses one text value, returns the array of one element and the marker.
fn text1(
    type_oid: u32,
    typmod: i32,
    v: &str,
) -> Result<(ArrayRef, Option<ValueMarker>), ValueError> {
    let mut b = builder(type_oid, typmod);
    let m = b.append_text(v.as_bytes())?;
    Ok((b.finish(), m))
}

fn bin1(
    type_oid: u32,
    typmod: i32,
    v: &[u8],
) -> Result<(ArrayRef, Option<ValueMarker>), ValueError> {
    let mut b = builder(type_oid, typmod);
    let m = b.append_binary(v)?;
    Ok((b.finish(), m))
}

fn ts(v: &str) -> i64 {
    let (a, _) = text1(oid::TIMESTAMP, -1, v).unwrap();
    a.as_primitive::<TimestampMicrosecondType>().value(0)
}

fn tstz(v: &str) -> i64 {
    let (a, _) = text1(oid::TIMESTAMPTZ, -1, v).unwrap();
    a.as_primitive::<TimestampMicrosecondType>().value(0)
}

fn date(v: &str) -> i32 {
    let (a, _) = text1(oid::DATE, -1, v).unwrap();
    a.as_primitive::<Date32Type>().value(0)
}

fn dec128(v: &str, p: i32, s: i32) -> Result<i128, ValueError> {
    let (a, m) = text1(oid::NUMERIC, numeric_mod(p, s), v)?;
    assert!(m.is_none());
    Ok(a.as_primitive::<Decimal128Type>().value(0))
}

fn interval(v: &str) -> IntervalMonthDayNano {
    let (a, _) = text1(oid::INTERVAL, -1, v).unwrap();
    a.as_primitive::<IntervalMonthDayNanoType>().value(0)
}

fn utf8_of(a: &ArrayRef) -> String {
    a.as_string::<i32>().value(0).to_owned()
}

// ---- small binary encoders (the send forms) ----

fn numeric_send(text: &str) -> Vec<u8> {
    let (neg, t) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text),
    };
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    let dscale = frac.len();
    let int = int.trim_start_matches('0');
    // Pad the integer part on the left and the fraction on the right to groups of 4.
    let int_pad = (4 - int.len() % 4) % 4;
    let frac_pad = (4 - frac.len() % 4) % 4;
    let all = format!(
        "{}{}{}{}",
        "0".repeat(int_pad),
        int,
        frac,
        "0".repeat(frac_pad)
    );
    let int_groups = (int.len() + int_pad) / 4;
    let mut digits: Vec<u16> = all
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap().parse().unwrap())
        .collect();
    let mut weight = int_groups as i16 - 1;
    while digits.first() == Some(&0) {
        digits.remove(0);
        weight -= 1;
    }
    while digits.last() == Some(&0) {
        digits.pop();
    }
    if digits.is_empty() {
        weight = 0;
    }
    let mut out = Vec::new();
    out.extend((digits.len() as i16).to_be_bytes());
    out.extend(weight.to_be_bytes());
    out.extend(
        (if neg && !digits.is_empty() {
            0x4000u16
        } else {
            0
        })
        .to_be_bytes(),
    );
    out.extend((dscale as u16).to_be_bytes());
    for d in digits {
        out.extend(d.to_be_bytes());
    }
    out
}

fn array_send(elem_oid: u32, dims: &[(i32, i32)], elems: &[Option<Vec<u8>>]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend((dims.len() as i32).to_be_bytes());
    out.extend((elems.iter().any(Option::is_none) as i32).to_be_bytes());
    out.extend(elem_oid.to_be_bytes());
    for (len, lower) in dims {
        out.extend(len.to_be_bytes());
        out.extend(lower.to_be_bytes());
    }
    for e in elems {
        match e {
            None => out.extend((-1i32).to_be_bytes()),
            Some(b) => {
                out.extend((b.len() as i32).to_be_bytes());
                out.extend(b);
            }
        }
    }
    out
}

const PG_EPOCH_US: i64 = 946_684_800_000_000;

// ---- scalars ----

#[test]
fn ints_bools_floats() {
    let (a, _) = text1(oid::INT2, -1, "-32768").unwrap();
    assert_eq!(a.as_primitive::<Int16Type>().value(0), i16::MIN);
    let (a, _) = text1(oid::INT8, -1, "9223372036854775807").unwrap();
    assert_eq!(a.as_primitive::<Int64Type>().value(0), i64::MAX);
    assert!(text1(oid::INT4, -1, "2147483648").is_err());
    let (a, _) = text1(oid::OID, -1, "4294967295").unwrap();
    assert_eq!(a.as_primitive::<UInt32Type>().value(0), u32::MAX);
    let (a, _) = text1(oid::BOOL, -1, "t").unwrap();
    assert!(a.as_boolean().value(0));
    let (a, _) = text1(oid::FLOAT8, -1, "-Infinity").unwrap();
    assert_eq!(a.as_primitive::<Float64Type>().value(0), f64::NEG_INFINITY);
    let (a, _) = text1(oid::FLOAT8, -1, "NaN").unwrap();
    assert!(a.as_primitive::<Float64Type>().value(0).is_nan());
    let (a, _) = text1(oid::FLOAT4, -1, "1.17549435e-38").unwrap();
    assert_eq!(a.as_primitive::<Float32Type>().value(0), 1.175_494_4e-38);
    let (a, _) = text1(oid::FLOAT8, -1, "0.30000000000000004").unwrap();
    assert_eq!(a.as_primitive::<Float64Type>().value(0), 0.1 + 0.2);
    assert!(text1(oid::FLOAT8, -1, "inf").is_err());
}

#[test]
fn numeric_text_exact() {
    assert_eq!(dec128("1.50", 10, 2).unwrap(), 150);
    assert_eq!(dec128("-0.01", 10, 2).unwrap(), -1);
    assert_eq!(dec128("12345678.9", 10, 2).unwrap(), 1_234_567_890);
    assert_eq!(
        dec128("1.500", 10, 2).unwrap(),
        150,
        "extra zero digits are fine"
    );
    assert!(dec128("1.505", 10, 2).is_err(), "would lose a digit");
    assert!(
        dec128("123456789", 10, 2).is_err(),
        "too many integer digits"
    );
    assert!(dec128("1e5", 10, 2).is_err());
    assert!(dec128("", 10, 2).is_err());
    let max = "9".repeat(38);
    assert_eq!(dec128(&max, 38, 0).unwrap(), 10i128.pow(38) - 1);
    for (s, k) in [
        ("NaN", MarkerKind::NaN),
        ("Infinity", MarkerKind::PosInfinity),
        ("-Infinity", MarkerKind::NegInfinity),
    ] {
        let (a, m) = text1(oid::NUMERIC, numeric_mod(10, 2), s).unwrap();
        assert!(a.is_null(0));
        assert_eq!(m.unwrap().kind, k);
    }
}

#[test]
fn numeric_wide_and_unbounded() {
    let v = format!("-{}.{}", "1".repeat(40), "2".repeat(20));
    let (a, _) = text1(oid::NUMERIC, numeric_mod(60, 20), &v).unwrap();
    let got = a.as_primitive::<Decimal256Type>().value(0);
    let expect = i256::from_string(&format!("-{}{}", "1".repeat(40), "2".repeat(20))).unwrap();
    assert_eq!(got, expect);
    // No typmod: the server's text, exactly.
    let (a, m) = text1(oid::NUMERIC, -1, "NaN").unwrap();
    assert_eq!((utf8_of(&a).as_str(), m), ("NaN", None));
    let (a, _) = bin1(oid::NUMERIC, -1, &numeric_send("-1234.5000")).unwrap();
    assert_eq!(utf8_of(&a), "-1234.5000");
}

#[test]
fn numeric_binary_matches_text() {
    for v in [
        "0",
        "0.00",
        "1",
        "-1",
        "10000",
        "0.0001",
        "12345.6789",
        "-0.5",
        "99999999.99",
        "100000000",
        "0.000001",
        "123456789012345678.12",
    ] {
        let (a, _) = bin1(oid::NUMERIC, -1, &numeric_send(v)).unwrap();
        assert_eq!(utf8_of(&a), v, "render of {v}");
    }
    let (a, _) = bin1(oid::NUMERIC, numeric_mod(12, 4), &numeric_send("-12.5")).unwrap();
    assert_eq!(a.as_primitive::<Decimal128Type>().value(0), -125_000);
    let specials = [
        (0xC000u16, MarkerKind::NaN),
        (0xD000, MarkerKind::PosInfinity),
        (0xF000, MarkerKind::NegInfinity),
    ];
    for (sign, kind) in specials {
        let mut b = vec![0, 0, 0, 0];
        b.extend(sign.to_be_bytes());
        b.extend([0, 0]);
        let (a, m) = bin1(oid::NUMERIC, numeric_mod(10, 2), &b).unwrap();
        assert!(a.is_null(0));
        assert_eq!(m.unwrap().kind, kind);
    }
    assert!(
        bin1(oid::NUMERIC, -1, &[0, 1, 0, 0, 0, 0, 0, 0]).is_err(),
        "truncated"
    );
}

#[test]
fn money() {
    let cents = |s: &str| {
        let (a, _) = text1(oid::MONEY, -1, s).unwrap();
        a.as_primitive::<Decimal128Type>().value(0)
    };
    assert_eq!(cents("$1,234.56"), 123_456);
    assert_eq!(cents("-$1.00"), -100);
    assert_eq!(cents("($1.00)"), -100);
    assert_eq!(cents("$0.01"), 1);
    assert_eq!(cents("-$92,233,720,368,547,758.08"), i64::MIN as i128);
    let (a, _) = bin1(oid::MONEY, -1, &(-1250i64).to_be_bytes()).unwrap();
    assert_eq!(a.as_primitive::<Decimal128Type>().value(0), -1250);
    assert!(text1(oid::MONEY, -1, "€1").is_err());
}

#[test]
fn bytea_uuid_json() {
    let (a, _) = text1(oid::BYTEA, -1, "\\x0a0bff").unwrap();
    assert_eq!(a.as_binary::<i32>().value(0), &[0x0a, 0x0b, 0xff]);
    let (a, _) = text1(oid::BYTEA, -1, "a\\000\\\\b\\377").unwrap();
    assert_eq!(a.as_binary::<i32>().value(0), b"a\0\\b\xff");
    assert!(text1(oid::BYTEA, -1, "\\x0").is_err());
    let (a, _) = bin1(oid::BYTEA, -1, &[1, 2, 3]).unwrap();
    assert_eq!(a.as_binary::<i32>().value(0), &[1, 2, 3]);

    let u = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
    let (a, _) = text1(oid::UUID, -1, u).unwrap();
    let bytes = a.as_fixed_size_binary().value(0).to_vec();
    assert_eq!(bytes[0], 0xa0);
    let (b, _) = bin1(oid::UUID, -1, &bytes).unwrap();
    assert_eq!(b.as_fixed_size_binary().value(0), &bytes[..]);

    let (a, _) = bin1(oid::JSONB, -1, b"\x01{\"a\": 1}").unwrap();
    assert_eq!(utf8_of(&a), "{\"a\": 1}");
    assert!(bin1(oid::JSONB, -1, b"\x02{}").is_err());
}

// ---- dates and times ----

#[test]
fn dates() {
    assert_eq!(date("1970-01-01"), 0);
    assert_eq!(date("2000-01-01"), 10_957);
    assert_eq!(date("1969-12-31"), -1);
    assert_eq!(date("0001-01-01"), -719_162);
    assert_eq!(date("0001-12-31 BC"), -719_163, "1 BC is year 0");
    assert_eq!(date("2000-02-29"), 11_016);
    assert_eq!(date("infinity"), i32::MAX);
    assert_eq!(date("-infinity"), i32::MIN);
    assert!(text1(oid::DATE, -1, "2001-02-29").is_err());
    assert!(text1(oid::DATE, -1, "2001-13-01").is_err());
    let (a, _) = bin1(oid::DATE, -1, &(-10_957i32).to_be_bytes()).unwrap();
    assert_eq!(a.as_primitive::<Date32Type>().value(0), 0);
    let (a, _) = bin1(oid::DATE, -1, &i32::MAX.to_be_bytes()).unwrap();
    assert_eq!(a.as_primitive::<Date32Type>().value(0), i32::MAX);
}

#[test]
fn timestamps() {
    assert_eq!(ts("1970-01-01 00:00:00"), 0);
    assert_eq!(ts("2024-01-02 03:04:05.123456"), 1_704_164_645_123_456);
    assert_eq!(ts("1969-12-31 23:59:59.5"), -500_000);
    assert_eq!(ts("1900-01-01 00:00:00"), -2_208_988_800_000_000);
    assert_eq!(
        ts("2100-01-01 00:00:00"),
        4_102_444_800_000_000,
        "after 2038"
    );
    assert_eq!(ts("0001-01-01 00:00:00 BC"), -62_167_219_200_000_000);
    assert_eq!(ts("infinity"), i64::MAX);
    assert_eq!(ts("-infinity"), i64::MIN);
    assert_eq!(
        tstz("2024-01-01 10:00:00+05:30"),
        tstz("2024-01-01 04:30:00+00")
    );
    assert_eq!(
        tstz("1900-01-01 00:00:00-03:30:52"),
        ts("1900-01-01 03:30:52")
    );
    assert_eq!(
        tstz("0044-03-15 00:00:00-03:30:52 BC"),
        ts("0044-03-15 03:30:52 BC")
    );
    assert_eq!(ts("10000-01-01 00:00:00"), 253_402_300_800_000_000);
    assert!(text1(oid::TIMESTAMP, -1, "2024-01-02").is_err());
    assert!(text1(oid::TIMESTAMP, -1, "2024-01-02 25:00:00").is_err());
    // Binary: µs since 2000-01-01.
    let (a, _) = bin1(oid::TIMESTAMPTZ, -1, &0i64.to_be_bytes()).unwrap();
    assert_eq!(
        a.as_primitive::<TimestampMicrosecondType>().value(0),
        PG_EPOCH_US
    );
    let (a, _) = bin1(oid::TIMESTAMP, -1, &i64::MIN.to_be_bytes()).unwrap();
    assert_eq!(
        a.as_primitive::<TimestampMicrosecondType>().value(0),
        i64::MIN
    );
    // Near Postgres' maximum the Unix-epoch value overflows: an error, not garbage.
    assert!(bin1(oid::TIMESTAMP, -1, &(i64::MAX - 1).to_be_bytes()).is_err());
}

#[test]
fn times() {
    let t = |s: &str| {
        let (a, _) = text1(oid::TIME, -1, s).unwrap();
        a.as_primitive::<Time64MicrosecondType>().value(0)
    };
    assert_eq!(t("00:00:00"), 0);
    assert_eq!(t("24:00:00"), 86_400_000_000);
    assert_eq!(t("12:34:56.789"), 45_296_789_000);
    assert!(text1(oid::TIME, -1, "24:00:01").is_err());
    // timetz: text kept, binary rendered.
    let mut b = 45_296_500_000i64.to_be_bytes().to_vec();
    b.extend((-19_800i32).to_be_bytes());
    let (a, _) = bin1(oid::TIMETZ, -1, &b).unwrap();
    assert_eq!(utf8_of(&a), "12:34:56.5+05:30");
    let mut b = 0i64.to_be_bytes().to_vec();
    b.extend(12_652i32.to_be_bytes());
    let (a, _) = bin1(oid::TIMETZ, -1, &b).unwrap();
    assert_eq!(utf8_of(&a), "00:00:00-03:30:52");
}

#[test]
fn intervals() {
    let us = 1000i64;
    assert_eq!(
        interval("1 year 2 mons 3 days 04:05:06.789"),
        IntervalMonthDayNano::new(
            14,
            3,
            (4 * 3600 + 5 * 60 + 6) * 1_000_000 * us + 789_000 * us
        )
    );
    assert_eq!(
        interval("-10 mons -3 days +04:05:06.789"),
        IntervalMonthDayNano::new(-10, -3, 14_706_789_000 * us)
    );
    assert_eq!(
        interval("-1 years -2 mons"),
        IntervalMonthDayNano::new(-14, 0, 0)
    );
    assert_eq!(
        interval("1 day -00:00:01"),
        IntervalMonthDayNano::new(0, 1, -1_000_000 * us)
    );
    assert_eq!(interval("00:00:00"), IntervalMonthDayNano::new(0, 0, 0));
    assert_eq!(
        interval("2000000:00:00"),
        IntervalMonthDayNano::new(0, 0, 2_000_000 * 3_600_000_000 * us)
    );
    // Beyond ~106 751 days of time part, i64 nanoseconds overflow: an error, never garbage.
    assert!(matches!(
        text1(oid::INTERVAL, -1, "3000000:00:00"),
        Err(ValueError::OutOfRange { .. })
    ));
    assert_eq!(
        interval("00:00:01.5"),
        IntervalMonthDayNano::new(0, 0, 1_500_000 * us)
    );
    assert!(text1(oid::INTERVAL, -1, "P1Y").is_err());
    assert!(text1(oid::INTERVAL, -1, "3 hours").is_err());
    let mut b = (-1_000_000i64).to_be_bytes().to_vec();
    b.extend(1i32.to_be_bytes());
    b.extend(14i32.to_be_bytes());
    let (a, _) = bin1(oid::INTERVAL, -1, &b).unwrap();
    assert_eq!(
        a.as_primitive::<IntervalMonthDayNanoType>().value(0),
        IntervalMonthDayNano::new(14, 1, -1_000_000 * us)
    );
}

#[test]
fn interval_minutes_and_seconds_that_overflow_are_an_error_not_a_panic() {
    // Minutes and seconds are digit strings of any length: `m * 60 * 1e6` overflowed i64 (a
    // panic in debug builds, a wrapped value in release).
    for v in [
        "00:99999999999999:00",
        "00:00:99999999999999",
        "01:9223372036854775807:00",
    ] {
        let e = text1(oid::INTERVAL, -1, v).unwrap_err();
        assert!(
            matches!(
                e,
                ValueError::InvalidText {
                    reason: "time out of range",
                    ..
                }
            ),
            "{v}: {e:?}"
        );
    }
    // Large but representable fields still add up.
    assert_eq!(
        interval("00:600:600"),
        IntervalMonthDayNano::new(0, 0, (600 * 60 + 600) * 1_000_000_000)
    );
}

// ---- network, bits, char ----

fn inet_send(family: u8, bits: u8, cidr: bool, addr: &[u8]) -> Vec<u8> {
    let mut v = vec![family, bits, cidr as u8, addr.len() as u8];
    v.extend(addr);
    v
}

#[test]
fn network_binary_renders() {
    let r = |o, b: Vec<u8>| utf8_of(&bin1(o, -1, &b).unwrap().0);
    assert_eq!(
        r(oid::INET, inet_send(2, 32, false, &[192, 168, 0, 1])),
        "192.168.0.1"
    );
    assert_eq!(
        r(oid::INET, inet_send(2, 24, false, &[192, 168, 0, 1])),
        "192.168.0.1/24"
    );
    assert_eq!(
        r(oid::CIDR, inet_send(2, 32, true, &[10, 0, 0, 1])),
        "10.0.0.1/32"
    );
    let mut v6 = [0u8; 16];
    v6[15] = 1;
    assert_eq!(r(oid::INET, inet_send(3, 128, false, &v6)), "::1");
    let mut mapped = [0u8; 16];
    mapped[10] = 0xff;
    mapped[11] = 0xff;
    mapped[12..].copy_from_slice(&[1, 2, 3, 4]);
    assert_eq!(
        r(oid::INET, inet_send(3, 128, false, &mapped)),
        "::ffff:1.2.3.4"
    );
    let mut compat = [0u8; 16];
    compat[12..].copy_from_slice(&[1, 2, 3, 4]);
    assert_eq!(r(oid::INET, inet_send(3, 128, false, &compat)), "::1.2.3.4");
    let doc = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1];
    assert_eq!(
        r(oid::CIDR, inet_send(3, 128, true, &doc)),
        "2001:db8::1:0:0:1/128"
    );
    assert_eq!(
        r(oid::MACADDR, vec![8, 0, 0x2b, 1, 2, 3]),
        "08:00:2b:01:02:03"
    );
    assert_eq!(
        r(oid::MACADDR8, vec![8, 0, 0x2b, 1, 2, 3, 4, 5]),
        "08:00:2b:01:02:03:04:05"
    );
    let mut bits = 10i32.to_be_bytes().to_vec();
    bits.extend([0b1010_0000, 0b1100_0000]);
    assert_eq!(r(oid::VARBIT, bits), "1010000011");
    assert_eq!(r(oid::CHAR, vec![b'x']), "x");
    assert_eq!(r(oid::CHAR, vec![0x80]), "\\200");
    // Types without a binary renderer (unknown types, and user-defined ranges or composites
    // whose structure the catalog did not give) say so, naming the type.
    let t = SourceType {
        name: "floatrange".into(),
        oid: 16_400,
        modifier: -1,
        display: "floatrange".into(),
        element: None,
        labels: vec![],
        structure: None,
    };
    let mut b = ColumnBuilder::new(&t, &pg_types::arrow_type(&t), 1);
    let e = b.append_binary(&[0x18]).unwrap_err();
    assert_eq!(
        e,
        ValueError::BinaryUnsupported {
            type_name: "floatrange".into()
        }
    );
    assert!(!b.binary_supported());
    b.append_text(b"[1.5,2)").unwrap();
    assert_eq!(utf8_of(&b.finish()), "[1.5,2)");
}

// ---- geometric types, ranges, multiranges (binary → the server's text) ----

fn f8s(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_be_bytes()).collect()
}

/// The binary value rendered, and checked against the text path for the same server text.
fn bin_text(type_oid: u32, b: &[u8]) -> String {
    let (a, m) = bin1(type_oid, -1, b).unwrap();
    assert_eq!(m, None);
    let s = utf8_of(&a);
    let (t, _) = text1(type_oid, -1, &s).unwrap();
    assert_eq!(&a, &t, "binary and text columns differ for {s}");
    s
}

/// `path_send`: closed flag byte, int32 count, points.
fn path_send(closed: bool, pts: &[f64]) -> Vec<u8> {
    let mut v = vec![closed as u8];
    v.extend(((pts.len() / 2) as i32).to_be_bytes());
    v.extend(f8s(pts));
    v
}

fn polygon_send(pts: &[f64]) -> Vec<u8> {
    let mut v = ((pts.len() / 2) as i32).to_be_bytes().to_vec();
    v.extend(f8s(pts));
    v
}

/// Every expected string is what PostgreSQL 15 prints for the same value (extra_float_digits 3).
#[test]
fn geometric_binary_renders() {
    let nan = f64::NAN;
    let inf = f64::INFINITY;
    assert_eq!(bin_text(oid::POINT, &f8s(&[1.5, 2.5])), "(1.5,2.5)");
    assert_eq!(bin_text(oid::POINT, &f8s(&[-0.0, nan])), "(-0,NaN)");
    assert_eq!(
        bin_text(oid::POINT, &f8s(&[inf, -inf])),
        "(Infinity,-Infinity)"
    );
    assert_eq!(
        bin_text(oid::POINT, &f8s(&[1e20, 1.5e-7])),
        "(1e+20,1.5e-07)"
    );
    assert_eq!(
        bin_text(oid::POINT, &f8s(&[1e15, 1e14])),
        "(1e+15,100000000000000)"
    );
    assert_eq!(
        bin_text(oid::POINT, &f8s(&[0.0001, 0.00001])),
        "(0.0001,1e-05)"
    );
    assert_eq!(
        bin_text(oid::POINT, &f8s(&[123456789012345678.0, 0.1])),
        "(1.2345678901234568e+17,0.1)"
    );
    assert_eq!(
        bin_text(oid::POINT, &f8s(&[-1e300, 1e-300])),
        "(-1e+300,1e-300)"
    );
    assert_eq!(
        bin_text(oid::POINT, &f8s(&[5e-324, f64::MAX])),
        "(5e-324,1.7976931348623157e+308)"
    );
    assert_eq!(bin_text(oid::LINE, &f8s(&[1.0, -1.0, 0.5])), "{1,-1,0.5}");
    assert_eq!(
        bin_text(oid::LSEG, &f8s(&[1.5, 2.5, -3.0, 4.0])),
        "[(1.5,2.5),(-3,4)]"
    );
    // box_send sends the high corner first, box_out prints it first.
    assert_eq!(
        bin_text(oid::BOX, &f8s(&[3.0, 4.0, 1.0, 2.0])),
        "(3,4),(1,2)"
    );
    assert_eq!(
        bin_text(
            oid::PATH,
            &path_send(false, &[0.0, 0.0, 1.0, 1.0, 2.0, 0.0])
        ),
        "[(0,0),(1,1),(2,0)]"
    );
    assert_eq!(
        bin_text(oid::PATH, &path_send(true, &[0.0, 0.0, 1.0, 0.0])),
        "((0,0),(1,0))"
    );
    assert_eq!(
        bin_text(oid::PATH, &path_send(false, &[0.0, 0.0])),
        "[(0,0)]"
    );
    assert_eq!(
        bin_text(
            oid::POLYGON,
            &polygon_send(&[0.0, 0.0, 10.0, 0.0, 10.0, 10.0])
        ),
        "((0,0),(10,0),(10,10))"
    );
    assert_eq!(
        bin_text(oid::POLYGON, &polygon_send(&[1.0, 1.0])),
        "((1,1))"
    );
    assert_eq!(
        bin_text(oid::CIRCLE, &f8s(&[0.5, -0.5, 100.25])),
        "<(0.5,-0.5),100.25>"
    );
    // Malformed: short, trailing bytes, counts that do not match the length.
    let bad = |o, b: &[u8]| match bin1(o, -1, b) {
        Err(ValueError::InvalidBinary { .. }) => {}
        other => panic!("{other:?}"),
    };
    bad(oid::POINT, &[0; 15]);
    bad(oid::POINT, &[0; 17]);
    bad(oid::LINE, &[0; 16]);
    bad(oid::CIRCLE, &[]);
    let mut p = path_send(true, &[0.0, 0.0, 1.0, 1.0]);
    p.pop();
    bad(oid::PATH, &p);
    let mut p = polygon_send(&[0.0, 0.0]);
    p[0..4].copy_from_slice(&(-1i32).to_be_bytes());
    bad(oid::POLYGON, &p);
    let mut p = polygon_send(&[0.0, 0.0]);
    p[0..4].copy_from_slice(&i32::MAX.to_be_bytes());
    bad(oid::POLYGON, &p);
    bad(oid::PATH, &[1]);
}

/// Doubles whose shortest digits PostgreSQL picks differently from the `ryu` crate (a
/// 16-digit decimal exactly on the midpoint to the next double, which Postgres never prints),
/// powers of two and their neighbours around 2^53..2^60, decimal powers, subnormals and the
/// extremes: each expected string is what PostgreSQL 15.20 prints for the input text
/// (`extra_float_digits = 3`).
#[test]
fn geometric_float8_shortest_digits_like_server() {
    for (input, server) in [
        ("1.728533187041428e17", "1.7285331870414278e+17"),
        ("-5.646037433568386e16", "-5.6460374335683856e+16"),
        ("1.008383628736344e18", "1.0083836287363441e+18"),
        ("5.34346114344225e16", "5.3434611434422496e+16"),
        ("2.009706185423033e16", "2.0097061854230328e+16"),
        ("24949147085203248", "2.4949147085203248e+16"),
        ("975283358446769.25", "975283358446769.2"),
        ("9007199254740991", "9.007199254740991e+15"),
        ("9007199254740992", "9.007199254740992e+15"),
        ("9007199254740994", "9.007199254740994e+15"),
        ("18014398509481982", "1.8014398509481982e+16"),
        ("18014398509481984", "1.8014398509481984e+16"),
        ("36028797018963968", "3.602879701896397e+16"),
        ("72057594037927936", "7.205759403792794e+16"),
        ("144115188075855856", "1.4411518807585586e+17"),
        ("144115188075855872", "1.4411518807585587e+17"),
        ("288230376151711744", "2.8823037615171174e+17"),
        ("576460752303423488", "5.764607523034235e+17"),
        ("1152921504606846720", "1.1529215046068467e+18"),
        ("1152921504606846976", "1.152921504606847e+18"),
        ("1152921504606847232", "1.1529215046068472e+18"),
        ("1e15", "1e+15"),
        ("999999999999999.9", "999999999999999.9"),
        ("1e16", "1e+16"),
        ("9999999999999998", "9.999999999999998e+15"),
        ("10000000000000002", "1.0000000000000002e+16"),
        ("1e17", "1e+17"),
        ("99999999999999984", "9.999999999999998e+16"),
        ("100000000000000016", "1.0000000000000002e+17"),
        ("2.2250738585072014e-308", "2.2250738585072014e-308"),
        ("2.225073858507201e-308", "2.225073858507201e-308"),
        ("1e-323", "1e-323"),
        ("1.7976931348623155e308", "1.7976931348623155e+308"),
    ] {
        let v: f64 = input.parse().unwrap();
        let y = -v;
        let expected = match server.strip_prefix('-') {
            Some(abs) => format!("({server},{abs})"),
            None => format!("({server},-{server})"),
        };
        assert_eq!(bin_text(oid::POINT, &f8s(&[v, y])), expected, "{input}");
    }
}

/// The snapshot reads these columns in binary (`COPY ... (FORMAT binary)`) when this says so.
#[test]
fn geometric_and_range_binary_supported() {
    for o in [
        oid::POINT,
        oid::LINE,
        oid::LSEG,
        oid::BOX,
        oid::PATH,
        oid::POLYGON,
        oid::CIRCLE,
        oid::INT4RANGE,
        oid::INT8RANGE,
        oid::NUMRANGE,
        oid::DATERANGE,
        oid::TSRANGE,
        oid::TSTZRANGE,
        oid::INT4MULTIRANGE,
        oid::TSTZMULTIRANGE,
        oid::BOX_ARRAY,
        oid::TSTZRANGE_ARRAY,
    ] {
        assert!(builder(o, -1).binary_supported(), "{o}");
    }
}

#[test]
fn geometric_arrays_binary_match_text() {
    let elems = vec![
        Some(f8s(&[1.0, 1.0, 0.0, 0.0])),
        None,
        Some(f8s(&[2.0, 2.0, 1.0, 1.0])),
    ];
    let (a, _) = bin1(oid::BOX_ARRAY, -1, &array_send(oid::BOX, &[(3, 1)], &elems)).unwrap();
    let (t, _) = text1(oid::BOX_ARRAY, -1, "{(1,1),(0,0);NULL;(2,2),(1,1)}").unwrap();
    assert_eq!(&a, &t);
    let elems = vec![Some(f8s(&[1e-7, -0.0]))];
    let (a, _) = bin1(
        oid::POINT_ARRAY,
        -1,
        &array_send(oid::POINT, &[(1, 1)], &elems),
    )
    .unwrap();
    let (t, _) = text1(oid::POINT_ARRAY, -1, "{\"(1e-07,-0)\"}").unwrap();
    assert_eq!(&a, &t);
}

/// `range_send`: flags, then each finite bound as int32 length + bytes.
fn range_send(flags: u8, lower: Option<Vec<u8>>, upper: Option<Vec<u8>>) -> Vec<u8> {
    let mut v = vec![flags];
    for b in [lower, upper].into_iter().flatten() {
        v.extend((b.len() as i32).to_be_bytes());
        v.extend(b);
    }
    v
}

fn multirange_send(ranges: &[Vec<u8>]) -> Vec<u8> {
    let mut v = (ranges.len() as i32).to_be_bytes().to_vec();
    for r in ranges {
        v.extend((r.len() as i32).to_be_bytes());
        v.extend(r);
    }
    v
}

const EMPTY: u8 = 0x01;
const LB_INC: u8 = 0x02;
const UB_INC: u8 = 0x04;
const LB_INF: u8 = 0x08;
const UB_INF: u8 = 0x10;

fn i4(v: i32) -> Option<Vec<u8>> {
    Some(v.to_be_bytes().to_vec())
}

fn i8b(v: i64) -> Option<Vec<u8>> {
    Some(v.to_be_bytes().to_vec())
}

/// Binary date (days since 2000) of a date text.
fn date_b(v: &str) -> Option<Vec<u8>> {
    i4(date(v) - 10_957)
}

fn ts_b(v: &str) -> Option<Vec<u8>> {
    i8b(ts(v) - PG_EPOCH_US)
}

fn tstz_b(v: &str) -> Option<Vec<u8>> {
    i8b(tstz(v) - PG_EPOCH_US)
}

/// Every expected string is what PostgreSQL 15 prints (DateStyle ISO, TimeZone UTC).
#[test]
fn range_binary_renders() {
    let r = |o, f, l, u| bin_text(o, &range_send(f, l, u));
    assert_eq!(r(oid::INT4RANGE, LB_INC, i4(1), i4(10)), "[1,10)");
    assert_eq!(r(oid::INT4RANGE, EMPTY, None, None), "empty");
    assert_eq!(r(oid::INT4RANGE, LB_INF | UB_INF, None, None), "(,)");
    assert_eq!(r(oid::INT4RANGE, LB_INF, None, i4(0)), "(,0)");
    assert_eq!(r(oid::INT4RANGE, LB_INC | UB_INF, i4(-5), None), "[-5,)");
    assert_eq!(
        r(oid::INT8RANGE, LB_INC | UB_INC, i8b(i64::MIN), i8b(0)),
        "[-9223372036854775808,0]"
    );
    let n = |v: &str| Some(numeric_send(v));
    assert_eq!(
        r(oid::NUMRANGE, LB_INC | UB_INC, n("1.50"), n("2.5")),
        "[1.50,2.5]"
    );
    assert_eq!(r(oid::NUMRANGE, 0, n("-0.001"), n("100")), "(-0.001,100)");
    let nan = vec![0, 0, 0, 0, 0xC0, 0, 0, 0];
    assert_eq!(
        r(oid::NUMRANGE, LB_INC | UB_INC, n("1"), Some(nan)),
        "[1,NaN]"
    );
    assert_eq!(
        r(
            oid::DATERANGE,
            LB_INC,
            date_b("2020-01-01"),
            date_b("2020-02-01")
        ),
        "[2020-01-01,2020-02-01)"
    );
    // A BC date has a space: quoted. infinity is a bound value here, not the infinite flag.
    assert_eq!(
        r(
            oid::DATERANGE,
            LB_INC,
            date_b("0044-03-15 BC"),
            date_b("0045-01-01")
        ),
        "[\"0044-03-15 BC\",0045-01-01)"
    );
    assert_eq!(
        r(oid::DATERANGE, 0, date_b("2000-01-01"), i4(i32::MAX)),
        "(2000-01-01,infinity)"
    );
    assert_eq!(
        r(
            oid::DATERANGE,
            LB_INC | UB_INC,
            date_b("10000-01-01"),
            i4(i32::MAX)
        ),
        "[10000-01-01,infinity]"
    );
    assert_eq!(
        r(
            oid::TSRANGE,
            LB_INC,
            ts_b("2024-01-01 00:00:00"),
            ts_b("2024-12-31 23:59:59.5")
        ),
        "[\"2024-01-01 00:00:00\",\"2024-12-31 23:59:59.5\")"
    );
    assert_eq!(
        r(
            oid::TSRANGE,
            LB_INC,
            ts_b("2020-01-01 00:00:00.5 BC"),
            ts_b("1583-01-01 00:00:00.000001")
        ),
        "[\"2020-01-01 00:00:00.5 BC\",\"1583-01-01 00:00:00.000001\")"
    );
    assert_eq!(
        r(oid::TSRANGE, LB_INC, i8b(i64::MIN), i8b(i64::MAX)),
        "[-infinity,infinity)"
    );
    assert_eq!(
        r(
            oid::TSTZRANGE,
            LB_INC | UB_INF,
            tstz_b("2000-01-01 00:00:00+00"),
            None
        ),
        "[\"2000-01-01 00:00:00+00\",)"
    );
    assert_eq!(
        r(
            oid::TSTZRANGE,
            LB_INC,
            tstz_b("2024-01-01 00:00:00+00"),
            tstz_b("2024-06-01 00:00:00+02")
        ),
        "[\"2024-01-01 00:00:00+00\",\"2024-05-31 22:00:00+00\")"
    );
    assert_eq!(
        r(
            oid::TSTZRANGE,
            LB_INC,
            tstz_b("0001-01-01 00:00:00+00 BC"),
            tstz_b("1969-12-31 23:59:59.999999+00")
        ),
        "[\"0001-01-01 00:00:00+00 BC\",\"1969-12-31 23:59:59.999999+00\")"
    );
    // Flags the server never sets with a bound (contains-empty 0x80) do not change the text.
    assert_eq!(r(oid::INT4RANGE, 0x80 | LB_INC, i4(1), i4(2)), "[1,2)");
    // Multiranges.
    let m = |o, rs: &[Vec<u8>]| bin_text(o, &multirange_send(rs));
    assert_eq!(m(oid::INT4MULTIRANGE, &[]), "{}");
    assert_eq!(
        m(
            oid::INT4MULTIRANGE,
            &[
                range_send(LB_INC, i4(1), i4(3)),
                range_send(LB_INC, i4(5), i4(7))
            ]
        ),
        "{[1,3),[5,7)}"
    );
    assert_eq!(
        m(
            oid::TSTZMULTIRANGE,
            &[range_send(
                LB_INF | UB_INC,
                None,
                tstz_b("2000-01-01 00:00:00+00")
            )]
        ),
        "{(,\"2000-01-01 00:00:00+00\"]}"
    );
    // Malformed.
    let bad = |o, b: &[u8]| match bin1(o, -1, b) {
        Err(ValueError::InvalidBinary { .. }) => {}
        other => panic!("{other:?}"),
    };
    bad(oid::INT4RANGE, &[]);
    bad(oid::INT4RANGE, &[EMPTY, 0]);
    bad(oid::INT4RANGE, &range_send(LB_INC, i4(1), None));
    bad(oid::INT4RANGE, &range_send(LB_INC, i8b(1), i8b(2)));
    let mut t = range_send(LB_INC, i4(1), i4(2));
    t.push(0);
    bad(oid::INT4RANGE, &t);
    let mut neg = vec![LB_INC];
    neg.extend((-1i32).to_be_bytes());
    bad(oid::INT4RANGE, &neg);
    bad(oid::INT4MULTIRANGE, &[0, 0, 0, 1]);
    bad(oid::INT4MULTIRANGE, &[0xff, 0xff, 0xff, 0xff]);
}

#[test]
fn range_arrays_binary_match_text() {
    let elems = vec![
        Some(range_send(LB_INC, i4(1), i4(3))),
        None,
        Some(range_send(EMPTY, None, None)),
    ];
    let (a, _) = bin1(
        oid::INT4RANGE_ARRAY,
        -1,
        &array_send(oid::INT4RANGE, &[(3, 1)], &elems),
    )
    .unwrap();
    let (t, _) = text1(oid::INT4RANGE_ARRAY, -1, "{\"[1,3)\",NULL,empty}").unwrap();
    assert_eq!(&a, &t);
}

// ---- arrays ----

fn int_list(v: &str) -> (Vec<Option<i32>>, Option<ValueMarker>) {
    let (a, m) = text1(oid::INT4_ARRAY, -1, v).unwrap();
    let l = a.as_list::<i32>();
    let vals = l.value(0);
    let p = vals.as_primitive::<Int32Type>();
    (
        (0..p.len())
            .map(|i| p.is_valid(i).then(|| p.value(i)))
            .collect(),
        m,
    )
}

fn text_list(v: &str) -> Vec<Option<String>> {
    let (a, _) = text1(oid::TEXT_ARRAY, -1, v).unwrap();
    let l = a.as_list::<i32>();
    let vals = l.value(0);
    let s = vals.as_string::<i32>();
    (0..s.len())
        .map(|i| s.is_valid(i).then(|| s.value(i).to_owned()))
        .collect()
}

#[test]
fn arrays_text() {
    assert_eq!(
        int_list("{1,2,NULL,-3}"),
        (vec![Some(1), Some(2), None, Some(-3)], None)
    );
    assert_eq!(int_list("{}"), (vec![], None));
    let (v, m) = int_list("{{1,2},{3,4}}");
    assert_eq!(v, vec![Some(1), Some(2), Some(3), Some(4)]);
    let m = m.unwrap();
    assert_eq!(
        (m.kind, m.detail.as_deref()),
        (MarkerKind::ArrayDims, Some("[1:2][1:2]"))
    );
    let (v, m) = int_list("[0:2]={1,2,3}");
    assert_eq!(v.len(), 3);
    assert_eq!(m.unwrap().detail.as_deref(), Some("[0:2]"));
    assert_eq!(
        text_list(r#"{"a b","NULL",NULL,"","x\"y","b\\c","{"," s",plain,Ünïcödé}"#),
        vec![
            Some("a b".into()),
            Some("NULL".into()),
            None,
            Some("".into()),
            Some("x\"y".into()),
            Some("b\\c".into()),
            Some("{".into()),
            Some(" s".into()),
            Some("plain".into()),
            Some("Ünïcödé".into()),
        ]
    );
    for bad in [
        "{1,2",
        "{{1,2},{3}}",
        "{{1},2}",
        "1,2",
        "{1,,2}",
        "[1:2]={1}",
        "{\"a}",
    ] {
        assert!(text1(oid::INT4_ARRAY, -1, bad).is_err(), "{bad} must fail");
    }
    assert!(
        text1(oid::INT4_ARRAY, -1, "{1,x}").is_err(),
        "element error propagates"
    );
}

#[test]
fn box_array_uses_semicolon() {
    let (a, _) = text1(oid::BOX_ARRAY, -1, "{(1,1),(0,0);(2,2),(1,1)}").unwrap();
    let vals = a.as_list::<i32>().value(0);
    let s = vals.as_string::<i32>();
    assert_eq!((s.value(0), s.value(1)), ("(1,1),(0,0)", "(2,2),(1,1)"));
}

#[test]
fn arrays_binary_match_text() {
    let elems: Vec<Option<Vec<u8>>> = vec![
        Some(1i32.to_be_bytes().to_vec()),
        None,
        Some((-3i32).to_be_bytes().to_vec()),
    ];
    let (a, m) = bin1(
        oid::INT4_ARRAY,
        -1,
        &array_send(oid::INT4, &[(3, 1)], &elems),
    )
    .unwrap();
    let (t, tm) = text1(oid::INT4_ARRAY, -1, "{1,NULL,-3}").unwrap();
    assert_eq!(&a, &t);
    assert_eq!((m, tm), (None, None));
    // 2x2 with lower bound 0 in the first dimension.
    let four: Vec<Option<Vec<u8>>> = (1..=4)
        .map(|i: i32| Some(i.to_be_bytes().to_vec()))
        .collect();
    let (a, m) = bin1(
        oid::INT4_ARRAY,
        -1,
        &array_send(oid::INT4, &[(2, 0), (2, 1)], &four),
    )
    .unwrap();
    let (t, tm) = text1(oid::INT4_ARRAY, -1, "[0:1][1:2]={{1,2},{3,4}}").unwrap();
    assert_eq!(&a, &t);
    assert_eq!(m, tm);
    assert_eq!(m.unwrap().detail.as_deref(), Some("[0:1][1:2]"));
    // Empty.
    let (a, _) = bin1(oid::INT4_ARRAY, -1, &array_send(oid::INT4, &[], &[])).unwrap();
    assert_eq!(a.as_list::<i32>().value_length(0), 0);
    // Hostile sizes fail without allocating.
    assert!(bin1(
        oid::INT4_ARRAY,
        -1,
        &array_send(oid::INT4, &[(i32::MAX, 1), (i32::MAX, 1)], &[])
    )
    .is_err());
}

#[test]
fn a_zero_length_array_dimension_is_an_error_not_a_huge_rendering() {
    // `array_send` writes an empty array with 0 dimensions. `[2147483647, 0]` has no element,
    // so it passed the element-count bound, and rendering its text (user-defined range arrays
    // are kept as text) looped 2^31 times building `{{},{},…}`: gigabytes from 28 bytes.
    let hostile = array_send(16_393, &[(i32::MAX, 1), (0, 1)], &[]);
    let ranges = SourceType::pg_structured_array(16_390, "public._floatrange", floatrange());
    let dt = pg_types::arrow_type(&ranges);
    let mut b = ColumnBuilder::new(&ranges, &dt, 1);
    let e = b.append_binary(&hostile).unwrap_err();
    assert!(
        matches!(
            e,
            ValueError::InvalidBinary {
                type_name: "array",
                offset: 20,
                ..
            }
        ),
        "{e:?}"
    );
    // The same for a builtin array, and a single zero-length dimension.
    for dims in [&[(i32::MAX, 1), (0, 1)][..], &[(0, 1)][..]] {
        let e = bin1(oid::INT4_ARRAY, -1, &array_send(oid::INT4, dims, &[])).unwrap_err();
        assert!(matches!(e, ValueError::InvalidBinary { .. }), "{e:?}");
    }
}

#[test]
fn numeric_array_with_nan_is_marked() {
    let t = numeric_mod(10, 2);
    let (a, m) = text1(oid::NUMERIC_ARRAY, t, "{1.00,NaN}").unwrap();
    assert!(a.is_null(0));
    let m = m.unwrap();
    assert_eq!(
        (m.kind, m.detail.as_deref()),
        (MarkerKind::NaN, Some("{1.00,NaN}"))
    );
    let mut nan = vec![0, 0, 0, 0];
    nan.extend(0xC000u16.to_be_bytes());
    nan.extend([0, 0]);
    let elems = vec![Some(numeric_send("1.00")), Some(nan), None];
    let (a, m) = bin1(
        oid::NUMERIC_ARRAY,
        t,
        &array_send(oid::NUMERIC, &[(3, 1)], &elems),
    )
    .unwrap();
    assert!(a.is_null(0));
    assert_eq!(m.unwrap().detail.as_deref(), Some("{1.00,NaN,NULL}"));
}

#[test]
fn failed_append_leaves_builder_unchanged() {
    let mut b = builder(oid::INT4_ARRAY, -1);
    b.append_text(b"{1,2}").unwrap();
    assert!(b.append_text(b"{3,oops}").is_err());
    b.append_text(b"{4}").unwrap();
    let a = b.finish();
    let l = a.as_list::<i32>();
    assert_eq!(l.len(), 2);
    assert_eq!(
        l.value(1).as_primitive::<Int32Type>().values().to_vec(),
        vec![4]
    );
}

// ---- properties ----

proptest! {
    /// Any digit string at precision/scale parses to exactly its digits.
    #[test]
    fn prop_numeric_text_lossless(int in "[0-9]{0,8}", frac in "[0-9]{0,10}", neg in any::<bool>(), scale in 0i32..12) {
        let p = 8 + scale;
        let frac_fits = frac.len() <= scale as usize || frac[scale as usize..].bytes().all(|b| b == b'0');
        prop_assume!(!(int.is_empty() && frac.is_empty()));
        let text = format!("{}{}{}{}", if neg { "-" } else { "" }, int, if frac.is_empty() { "" } else { "." }, frac);
        let r = dec128(&text, p, scale);
        if !frac_fits {
            prop_assert!(r.is_err());
        } else {
            let mut digits = format!("{}{}", int, &frac[..frac.len().min(scale as usize)]);
            digits.push_str(&"0".repeat((scale as usize).saturating_sub(frac.len())));
            let mut want: i128 = digits.parse().unwrap_or(0);
            if neg { want = -want; }
            prop_assert_eq!(r.unwrap(), want);
        }
    }

    /// Binary numeric renders to the same text `numeric_out` would print, and parses the same.
    #[test]
    fn prop_numeric_binary_agrees(int in "[1-9][0-9]{0,20}|0", frac in "[0-9]{0,12}", neg in any::<bool>()) {
        let text = format!("{}{}{}{}", if neg && int != "0" { "-" } else { "" }, int, if frac.is_empty() { "" } else { "." }, frac);
        let (a, _) = bin1(oid::NUMERIC, -1, &numeric_send(&text)).unwrap();
        prop_assert_eq!(utf8_of(&a), text.clone());
        let m = numeric_mod(34, 12);
        let (t, _) = text1(oid::NUMERIC, m, &text).unwrap();
        let (b, _) = bin1(oid::NUMERIC, m, &numeric_send(&text)).unwrap();
        prop_assert_eq!(&t, &b);
    }

    /// Timestamp text and binary agree for any date in years 1..=9999 and BC.
    #[test]
    fn prop_timestamp_text_binary_agree(days in -3_000_000i64..2_900_000, us in 0i64..86_400_000_000) {
        let (y, m, d) = tidemark_model::pg_value::civil_from_days(days);
        let (year, bc) = if y <= 0 { (1 - y, " BC") } else { (y, "") };
        let frac = us % 1_000_000;
        let secs = us / 1_000_000;
        let text = format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}{}", year, m, d, secs / 3600, secs / 60 % 60, secs % 60, frac, bc);
        let want = days * 86_400_000_000 + us;
        prop_assert_eq!(ts(&text), want);
        let (a, _) = bin1(oid::TIMESTAMP, -1, &(want - PG_EPOCH_US).to_be_bytes()).unwrap();
        prop_assert_eq!(a.as_primitive::<TimestampMicrosecondType>().value(0), want);
        prop_assert_eq!(tidemark_model::pg_value::days_from_civil(y, m, d), days);
    }

    /// Text arrays of arbitrary strings round-trip through quoting.
    #[test]
    fn prop_text_array_quoting(elems in proptest::collection::vec(proptest::option::of("[a-zA-Z0-9 ,{}\"\\\\é]{0,6}"), 0..6)) {
        let quoted: Vec<String> = elems.iter().map(|e| match e {
            None => "NULL".to_owned(),
            Some(s) => format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")),
        }).collect();
        let text = format!("{{{}}}", quoted.join(","));
        prop_assert_eq!(text_list(&text), elems);
    }
}

// ---- user-defined ranges, multiranges, composites (binary → the server's text) ----

fn st(type_oid: u32) -> SourceType {
    SourceType::pg_builtin(type_oid, -1).expect("builtin")
}

fn field(name: &str, type_oid: u32, source_type: SourceType) -> CompositeField {
    CompositeField {
        name: name.into(),
        type_oid,
        source_type,
    }
}

/// `record_send`: the field count, then per field its type OID, length (-1 = NULL), bytes.
fn record_send(fields: &[(u32, Option<Vec<u8>>)]) -> Vec<u8> {
    let mut out = (fields.len() as i32).to_be_bytes().to_vec();
    for (type_oid, v) in fields {
        out.extend(type_oid.to_be_bytes());
        match v {
            None => out.extend((-1i32).to_be_bytes()),
            Some(b) => {
                out.extend((b.len() as i32).to_be_bytes());
                out.extend(b);
            }
        }
    }
    out
}

fn txt(v: &str) -> Option<Vec<u8>> {
    Some(v.as_bytes().to_vec())
}

fn f8b(v: f64) -> Option<Vec<u8>> {
    Some(v.to_be_bytes().to_vec())
}

/// The column value of `t` from binary `b`: Utf8, supported, and equal to the text path's
/// value for the same text.
fn render_structured(t: &SourceType, b: &[u8]) -> String {
    let dt = pg_types::arrow_type(t);
    assert_eq!(dt, arrow_schema::DataType::Utf8, "{}", t.display);
    let mut from_binary = ColumnBuilder::new(t, &dt, 1);
    assert!(from_binary.binary_supported(), "{}", t.display);
    assert_eq!(from_binary.append_binary(b), Ok(None));
    let a = from_binary.finish();
    let s = utf8_of(&a);
    let mut from_text = ColumnBuilder::new(t, &dt, 1);
    from_text.append_text(s.as_bytes()).unwrap();
    assert_eq!(&a, &from_text.finish());
    s
}

fn text_composite(n: usize) -> SourceType {
    let fields = (0..n)
        .map(|i| field(&format!("f{i}"), oid::TEXT, st(oid::TEXT)))
        .collect();
    SourceType::pg_composite(20_000, "public.q", fields)
}

/// Every expected string is what PostgreSQL 15 prints for `ROW(...)::text`.
#[test]
fn composite_binary_quotes_like_record_out() {
    let values = [
        Some(""),
        None,
        Some(" "),
        Some("a\"b\\c"),
        Some("x(y)"),
        Some("plain"),
        Some("5"),
        Some("tab\there"),
        Some("a,b"),
        Some("[x]"),
        Some("{}"),
        Some("é"),
        Some("NULL"),
    ];
    let t = text_composite(values.len());
    let wire: Vec<_> = values
        .iter()
        .map(|v| (oid::TEXT, v.and_then(txt)))
        .collect();
    assert_eq!(
        render_structured(&t, &record_send(&wire)),
        "(\"\",,\" \",\"a\"\"b\\\\c\",\"x(y)\",plain,5,\"tab\there\",\"a,b\",[x],{},é,NULL)"
    );
    // All NULL, and no fields at all (`CREATE TYPE e AS ()`).
    assert_eq!(
        render_structured(&t, &record_send(&vec![(oid::TEXT, None); values.len()])),
        format!("({})", ",".repeat(values.len() - 1))
    );
    let empty = SourceType::pg_composite(20_001, "public.e", vec![]);
    assert_eq!(render_structured(&empty, &record_send(&[])), "()");
}

fn floatrange() -> SourceType {
    SourceType::pg_range(16_393, "public.floatrange", st(oid::FLOAT8))
}

/// `inner_t (b text, c int8)` (after `DROP ATTRIBUTE a`, `ADD ATTRIBUTE c int8`) and
/// `outer_t (i inner_t, r floatrange, arr int[], t timestamptz, m money, iv interval, f4 real)`.
fn outer_t(inner_fields: Vec<CompositeField>) -> SourceType {
    let inner = SourceType::pg_composite(16_402, "public.inner_t", inner_fields);
    SourceType::pg_composite(
        16_405,
        "public.outer_t",
        vec![
            field("i", 16_402, inner),
            field("r", 16_393, floatrange()),
            field("arr", oid::INT4_ARRAY, st(oid::INT4_ARRAY)),
            field("t", oid::TIMESTAMPTZ, st(oid::TIMESTAMPTZ)),
            field("m", oid::MONEY, st(oid::MONEY)),
            field("iv", oid::INTERVAL, st(oid::INTERVAL)),
            field("f4", oid::FLOAT4, st(oid::FLOAT4)),
        ],
    )
}

fn unhex(h: &str) -> Vec<u8> {
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
        .collect()
}

/// `record_send(o)` captured from PostgreSQL 15 for
/// `ROW(ROW('a b', NULL), '[1.5,2)', '{1,2}', '2020-01-01 00:00+00', -1234.56,
/// '1 year -2 mons 3 days -04:05:06.5', 1234567)::outer_t`.
const OUTER_SEND: &str = "00000007000040120000001700000002000000190000000361206200000014ffffffff000040090000001902000000083ff8000000000000000000084000000000000000000003ef00000024000000010000000000000017000000020000000100000004000000010000000400000002000004a00000000800023e0786c260000000031600000008fffffffffffe1dc0000004a200000010fffffffc936c9e60000000030000000a000002bc000000044996b438";
const OUTER_TEXT: &str = "(\"(\"\"a b\"\",)\",\"[1.5,2)\",\"{1,2}\",\"2020-01-01 00:00:00+00\",\"-$1,234.56\",\"10 mons 3 days -04:05:06.5\",1.234567e+06)";

#[test]
fn nested_composite_from_server_bytes() {
    let current = vec![
        field("b", oid::TEXT, st(oid::TEXT)),
        field("c", oid::INT8, st(oid::INT8)),
    ];
    assert_eq!(
        render_structured(&outer_t(current), &unhex(OUTER_SEND)),
        OUTER_TEXT
    );
    // The catalog read before the ALTER TYPEs (`a int4, b text`): every field's OID is on the
    // wire, and builtins render without the catalog, so the value is still exact.
    let stale = vec![
        field("a", oid::INT4, st(oid::INT4)),
        field("b", oid::TEXT, st(oid::TEXT)),
    ];
    assert_eq!(
        render_structured(&outer_t(stale), &unhex(OUTER_SEND)),
        OUTER_TEXT
    );
}

#[test]
fn arrays_of_composites_and_ranges() {
    let inner = vec![
        field("a", oid::INT4, st(oid::INT4)),
        field("b", oid::TEXT, st(oid::TEXT)),
    ];
    let outer = outer_t(inner);
    let arr = SourceType::pg_structured_array(16_404, "public._outer_t", outer);
    let element = record_send(&[
        (
            16_402,
            Some(record_send(&[(oid::INT4, None), (oid::TEXT, txt(""))])),
        ),
        (16_393, None),
        (oid::INT4_ARRAY, None),
        (oid::TIMESTAMPTZ, None),
        (oid::MONEY, None),
        (oid::INTERVAL, None),
        (oid::FLOAT4, None),
    ]);
    let b = array_send(16_405, &[(2, 1)], &[Some(element), None]);
    assert_eq!(
        render_structured(&arr, &b),
        r#"{"(\"(,\"\"\"\")\",,,,,,)",NULL}"#
    );
    let ranges = SourceType::pg_structured_array(16_390, "public._floatrange", floatrange());
    let b = array_send(
        16_393,
        &[(2, 1)],
        &[
            Some(range_send(LB_INC, f8b(1.0), f8b(2.0))),
            Some(range_send(EMPTY, None, None)),
        ],
    );
    assert_eq!(render_structured(&ranges, &b), r#"{"[1,2)",empty}"#);
    // Lower bounds other than 1 print as the decoration, as array_out does.
    let b = array_send(16_393, &[(1, 0)], &[Some(range_send(EMPTY, None, None))]);
    assert_eq!(render_structured(&ranges, &b), "[0:0]={empty}");
    // Multi-dimensional with lower bounds 1: no decoration (array_out), inside a composite.
    let t = SourceType::pg_composite(
        20_002,
        "public.m",
        vec![field("a", oid::INT4_ARRAY, st(oid::INT4_ARRAY))],
    );
    let two_d = array_send(oid::INT4, &[(2, 1), (2, 1)], &[i4(1), i4(2), i4(3), None]);
    assert_eq!(
        render_structured(&t, &record_send(&[(oid::INT4_ARRAY, Some(two_d))])),
        "(\"{{1,2},{3,NULL}}\")"
    );
    let shifted = array_send(oid::INT4, &[(1, -2)], &[i4(1)]);
    assert_eq!(
        render_structured(&t, &record_send(&[(oid::INT4_ARRAY, Some(shifted))])),
        "([-2:-2]={1})"
    );
}

#[test]
fn user_ranges_and_multiranges() {
    let r = floatrange();
    let cases = [
        (range_send(LB_INC, f8b(1.5), f8b(2.0)), "[1.5,2)"),
        (range_send(LB_INF | UB_INF, None, None), "(,)"),
        (range_send(EMPTY, None, None), "empty"),
        (
            range_send(LB_INC | UB_INC, f8b(-0.0), f8b(1e300)),
            "[-0,1e+300]",
        ),
        (
            range_send(UB_INF, f8b(f64::NEG_INFINITY), None),
            "(-Infinity,)",
        ),
        (range_send(UB_INC | LB_INF, None, f8b(0.1)), "(,0.1]"),
    ];
    for (b, expected) in &cases {
        assert_eq!(render_structured(&r, b), *expected);
    }
    // A range over text quotes its bounds as range_out does (a domain subtype is resolved to
    // its base by the catalog: the model only sees the base).
    let textrange = SourceType::pg_range(20_010, "public.textrange", st(oid::TEXT));
    let b = range_send(LB_INC, txt("a b"), txt("z\"]"));
    assert_eq!(render_structured(&textrange, &b), r#"["a b","z""]")"#);
    let b = range_send(LB_INC, txt(""), txt("b"));
    assert_eq!(render_structured(&textrange, &b), r#"["",b)"#);
    let dom = SourceType::pg_range(20_011, "public.posrange", st(oid::INT4));
    assert_eq!(
        render_structured(&dom, &range_send(LB_INC, i4(1), i4(10))),
        "[1,10)"
    );
    let mr = SourceType::pg_multirange(16_391, "public.floatmultirange", st(oid::FLOAT8));
    let b = multirange_send(&[
        range_send(LB_INC, f8b(1.0), f8b(2.0)),
        range_send(LB_INC | UB_INC, f8b(3.0), f8b(4.0)),
    ]);
    assert_eq!(render_structured(&mr, &b), "{[1,2),[3,4]}");
    assert_eq!(render_structured(&mr, &multirange_send(&[])), "{}");
    // A composite inside a range (ranges over composites are allowed when they sort).
    let pair = SourceType::pg_composite(
        20_012,
        "public.pair",
        vec![
            field("a", oid::INT4, st(oid::INT4)),
            field("b", oid::TEXT, st(oid::TEXT)),
        ],
    );
    let pr = SourceType::pg_range(20_013, "public.pairrange", pair);
    let lo = record_send(&[(oid::INT4, i4(1)), (oid::TEXT, txt("x y"))]);
    let b = range_send(LB_INC | UB_INF, Some(lo), None);
    assert_eq!(render_structured(&pr, &b), r#"["(1,""x y"")",)"#);
}

/// Golden strings from PostgreSQL 15 (`::text` with the source's session settings).
#[test]
fn builtin_fields_render_like_their_output_functions() {
    let render_one = |type_oid: u32, v: Vec<u8>| {
        let t = SourceType::pg_composite(
            20_020,
            "public.one",
            vec![field("v", type_oid, st(type_oid))],
        );
        let s = render_structured(&t, &record_send(&[(type_oid, Some(v))]));
        let inner = &s[1..s.len() - 1];
        inner
            .strip_prefix('"')
            .and_then(|x| x.strip_suffix('"'))
            .unwrap_or(inner)
            .to_owned()
    };
    let floats: [(f32, &str); 15] = [
        (1234567.0, "1.234567e+06"),
        (123456.0, "123456"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (16777216.0, "1.6777216e+07"),
        (3.4028235e38, "3.4028235e+38"),
        (f32::NAN, "NaN"),
        (f32::NEG_INFINITY, "-Infinity"),
        (-0.0, "-0"),
        (f32::MIN_POSITIVE, "1.1754944e-38"),
        (1e-45, "1e-45"),
        (0.1, "0.1"),
        (std::f32::consts::PI, "3.1415927"),
        (999999.94, "999999.94"),
        (1000000.0, "1e+06"),
    ];
    for (v, expected) in floats {
        assert_eq!(
            render_one(oid::FLOAT4, v.to_be_bytes().to_vec()),
            expected,
            "{v}"
        );
    }
    let intervals = [
        ("00000000000000000000000000000000", "00:00:00"),
        ("0000000000000000000000000000000e", "1 year 2 mons"),
        ("00000001ad274800ffffffff00000000", "-1 days +02:00:00"),
        ("fffffffffff0bdc00000000100000000", "1 day -00:00:01"),
        (
            "000000000000000000000003fffffff2",
            "-1 years -2 mons +3 days",
        ),
        ("00000000000000010000000000000000", "00:00:00.000001"),
        ("fffffffffff85ee00000000000000000", "-00:00:00.5"),
        (
            "00000000d693a400ffffffff00000001",
            "1 mon -1 days +01:00:00",
        ),
        ("00000000000000000000000080af3a00", "-178000000 years"),
        ("0000000000000000000000000000000c", "1 year"),
        (
            "7fffffffffffffff0000000000000000",
            "2562047788:00:54.775807",
        ),
        ("000000000000000000000000ffffffff", "-1 mons"),
        ("00000000000000000000000100000000", "1 day"),
        ("ffffffff296c5c00ffffffff00000000", "-1 days -01:00:00"),
        ("0000000000000000ffffffff0000000c", "1 year -1 days"),
    ];
    for (hex, expected) in intervals {
        assert_eq!(render_one(oid::INTERVAL, unhex(hex)), expected);
    }
    let money: [(i64, &str); 8] = [
        (0, "$0.00"),
        (-1, "-$0.01"),
        (100, "$1.00"),
        (99_999, "$999.99"),
        (100_000, "$1,000.00"),
        (i64::MIN, "-$92,233,720,368,547,758.08"),
        (i64::MAX, "$92,233,720,368,547,758.07"),
        (12_345_670, "$123,456.70"),
    ];
    for (v, expected) in money {
        assert_eq!(render_one(oid::MONEY, v.to_be_bytes().to_vec()), expected);
    }
    assert_eq!(
        render_one(oid::DATE, date_b("0044-03-15 BC").unwrap()),
        "0044-03-15 BC"
    );
    assert_eq!(
        render_one(oid::DATE, i32::MAX.to_be_bytes().to_vec()),
        "infinity"
    );
    assert_eq!(
        render_one(oid::TIMESTAMP, ts_b("2024-01-01 00:00:00.25").unwrap()),
        "2024-01-01 00:00:00.25"
    );
    assert_eq!(render_one(oid::BOOL, vec![1]), "t");
    assert_eq!(
        render_one(oid::FLOAT8, 0.1f64.to_be_bytes().to_vec()),
        "0.1"
    );
    // citext (an extension type, named as the catalog qualifies it) sends its text.
    let citext = SourceType::pg_other(20_032, "public.citext", -1);
    let t = SourceType::pg_composite(20_033, "public.ci", vec![field("c", 20_032, citext)]);
    assert_eq!(
        render_structured(&t, &record_send(&[(20_032, txt("Mixed Case"))])),
        "(\"Mixed Case\")"
    );
    // An enum field is its label (enums send their label in binary too).
    let mood = SourceType::pg_enum(20_030, "public.mood", vec!["sad".into(), "so so".into()]);
    let t = SourceType::pg_composite(20_031, "public.m", vec![field("m", 20_030, mood)]);
    assert_eq!(
        render_structured(&t, &record_send(&[(20_030, txt("so so"))])),
        "(\"so so\")"
    );
}

#[test]
fn stale_or_malformed_composites_are_errors() {
    let t = SourceType::pg_composite(
        20_040,
        "public.c",
        vec![
            field("a", oid::INT4, st(oid::INT4)),
            field("b", oid::TEXT, st(oid::TEXT)),
        ],
    );
    let dt = pg_types::arrow_type(&t);
    let bin = |b: &[u8]| ColumnBuilder::new(&t, &dt, 1).append_binary(b);
    // An attribute added since the catalog was read: a builtin renders by its own OID ...
    let added = record_send(&[
        (oid::INT4, i4(1)),
        (oid::TEXT, txt("x")),
        (oid::INT8, i8b(7)),
    ]);
    assert_eq!(render_structured(&t, &added), "(1,x,7)");
    // ... a user-defined type cannot be guessed.
    let user = record_send(&[
        (oid::INT4, i4(1)),
        (oid::TEXT, txt("x")),
        (30_000, txt("?")),
    ]);
    assert_eq!(
        bin(&user),
        Err(ValueError::StaleComposite {
            type_name: "public.c".into(),
            field: 2,
            wire_oid: 30_000,
            expected: "no attribute".into(),
        })
    );
    let moved = record_send(&[(30_000, txt("?"))]);
    let e = bin(&moved).unwrap_err();
    assert!(e.to_string().contains("a (oid 23)"), "{e}");
    // Malformed bytes: typed errors with the offset in the column's value, never a panic.
    let good = record_send(&[(oid::INT4, i4(1)), (oid::TEXT, txt("x"))]);
    for cut in 0..good.len() {
        assert!(
            matches!(bin(&good[..cut]), Err(ValueError::InvalidBinary { .. })),
            "{cut}"
        );
    }
    let mut trailing = good.clone();
    trailing.push(0);
    assert_eq!(
        bin(&trailing),
        Err(ValueError::InvalidBinary {
            type_name: "record",
            offset: good.len(),
            reason: "trailing bytes"
        })
    );
    assert!(matches!(
        bin(&(-1i32).to_be_bytes()),
        Err(ValueError::InvalidBinary {
            reason: "negative field count",
            ..
        })
    ));
    // A wrong-length int4 inside: the int4's error, at its offset in the whole value.
    let short = record_send(&[(oid::INT4, Some(vec![0, 1])), (oid::TEXT, None)]);
    assert_eq!(
        bin(&short),
        Err(ValueError::InvalidBinary {
            type_name: "int4",
            offset: 12 + 2,
            reason: "wrong length"
        })
    );
    // A composite with a type the model cannot render from binary: not supported, and an
    // error naming that type (the snapshot reads such columns as text).
    let tsv = SourceType::pg_other(3614, "tsvector", -1);
    let u = SourceType::pg_composite(20_041, "public.u", vec![field("v", 3614, tsv)]);
    let mut b = ColumnBuilder::new(&u, &dt, 1);
    assert!(!b.binary_supported());
    assert_eq!(
        b.append_binary(&record_send(&[(3614, Some(vec![0; 4]))])),
        Err(ValueError::BinaryUnsupported {
            type_name: "tsvector".into()
        })
    );
    b.append_text(b"('a':1)").unwrap();
    assert_eq!(utf8_of(&b.finish()), "('a':1)");
}

proptest! {
    /// Hostile bytes never panic the structured renderers.
    #[test]
    fn structured_binary_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
        let inner = vec![
            field("b", oid::TEXT, st(oid::TEXT)),
            field("c", oid::INT8, st(oid::INT8)),
        ];
        let outer = outer_t(inner);
        for t in [
            outer.clone(),
            floatrange(),
            SourceType::pg_multirange(16_391, "public.floatmultirange", st(oid::FLOAT8)),
            SourceType::pg_structured_array(16_404, "public._outer_t", outer),
        ] {
            let mut b = ColumnBuilder::new(&t, &pg_types::arrow_type(&t), 1);
            let _ = b.append_binary(&bytes);
            // Valid prefixes of a real value too.
            let real = unhex(OUTER_SEND);
            let cut = bytes.first().map_or(0, |&c| c as usize % real.len());
            let mut spliced = real[..cut].to_vec();
            spliced.extend(&bytes);
            let _ = b.append_binary(&spliced);
        }
    }
}
