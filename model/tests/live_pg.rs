//! Against the real server (only with `TIDEMARK_TEST_PG=1`): for tricky values, the server's
//! text output (what the type's output function prints, as pgoutput sends it) and its binary
//! send form (`<type>_send(expr)`) must both parse, and to the same Arrow value and markers.
//!
//! Trap: `expr::text` is *not* the output function for every type: `inet::text` always adds
//! `/32`/`/128`, `char(n)::text` drops the padding. Select the plain value instead.
//!
//! Runs `psql -h 127.0.0.1 -U postgres` (override the host with `TIDEMARK_TEST_PG_HOST`).

use std::process::Command;

use arrow_array::{Array, ArrayRef};
use tidemark_model::pg_types::{self, oid};
use tidemark_model::{ColumnBuilder, SourceType, ValueError, ValueMarker};

fn enabled() -> bool {
    std::env::var("TIDEMARK_TEST_PG").is_ok_and(|v| v == "1")
}

/// Runs one query returning one row of fields separated by 0x1f.
fn psql(sql: &str) -> Vec<String> {
    let host = std::env::var("TIDEMARK_TEST_PG_HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let out = Command::new("psql")
        .args([
            "-X", "-h", &host, "-U", "postgres", "-At", "-F", "\x1f", "-c",
        ])
        .arg(format!(
            "set timezone='UTC'; set intervalstyle='postgres'; set datestyle='ISO'; {sql}"
        ))
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = String::from_utf8(out.stdout).expect("utf8");
    // The SET commands print "SET" lines first.
    let last = s
        .trim_end_matches('\n')
        .rsplit('\n')
        .next()
        .unwrap_or("")
        .to_owned();
    last.split('\x1f').map(str::to_owned).collect()
}

fn unhex(h: &str) -> Vec<u8> {
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
        .collect()
}

type Parsed = Result<(ArrayRef, Option<ValueMarker>), ValueError>;

fn run(t: &SourceType, text: &str, bin: &[u8]) -> (Parsed, Parsed) {
    let dt = pg_types::arrow_type(t);
    let mut a = ColumnBuilder::new(t, &dt, 1);
    let mut b = ColumnBuilder::new(t, &dt, 1);
    let ta = a.append_text(text.as_bytes()).map(|m| (a.finish(), m));
    let tb = b.append_binary(bin).map(|m| (b.finish(), m));
    (ta, tb)
}

/// `(expression, type oid, typmod, send function)`.
const CASES: &[(&str, u32, i32, &str)] = &[
    (
        "'12.50'::numeric(10,2)",
        oid::NUMERIC,
        (10 << 16 | 2) + 4,
        "numeric_send",
    ),
    (
        "'NaN'::numeric(10,2)",
        oid::NUMERIC,
        (10 << 16 | 2) + 4,
        "numeric_send",
    ),
    ("'-Infinity'::numeric", oid::NUMERIC, -1, "numeric_send"),
    ("'0.000001234'::numeric", oid::NUMERIC, -1, "numeric_send"),
    ("'-1000000'::numeric", oid::NUMERIC, -1, "numeric_send"),
    (
        "'123456789012345678901234567890.123456789'::numeric(40,9)",
        oid::NUMERIC,
        (40 << 16 | 9) + 4,
        "numeric_send",
    ),
    (
        "'-92233720368547758.08'::money",
        oid::MONEY,
        -1,
        "cash_send",
    ),
    ("'1234567.891'::money", oid::MONEY, -1, "cash_send"),
    (
        "'0044-03-15 12:00:00.5 BC'::timestamp",
        oid::TIMESTAMP,
        -1,
        "timestamp_send",
    ),
    (
        "'1900-01-01 00:00:00+05:53:28'::timestamptz",
        oid::TIMESTAMPTZ,
        -1,
        "timestamptz_send",
    ),
    (
        "'2262-04-12 00:00:00.000001'::timestamptz",
        oid::TIMESTAMPTZ,
        -1,
        "timestamptz_send",
    ),
    (
        "'infinity'::timestamptz",
        oid::TIMESTAMPTZ,
        -1,
        "timestamptz_send",
    ),
    (
        "'4713-11-24 00:00:00 BC'::timestamp",
        oid::TIMESTAMP,
        -1,
        "timestamp_send",
    ),
    ("'-infinity'::date", oid::DATE, -1, "date_send"),
    ("'5874897-12-31'::date", oid::DATE, -1, "date_send"),
    ("'4713-01-01 BC'::date", oid::DATE, -1, "date_send"),
    ("'24:00:00'::time", oid::TIME, -1, "time_send"),
    ("'12:34:56.5+05:30'::timetz", oid::TIMETZ, -1, "timetz_send"),
    (
        "'00:00:00.000001-03:30:52'::timetz",
        oid::TIMETZ,
        -1,
        "timetz_send",
    ),
    (
        "'-1 year 2 mons -3 days 04:05:06.789'::interval",
        oid::INTERVAL,
        -1,
        "interval_send",
    ),
    (
        "'1 day -00:00:01'::interval",
        oid::INTERVAL,
        -1,
        "interval_send",
    ),
    (
        "'-178000000 years'::interval",
        oid::INTERVAL,
        -1,
        "interval_send",
    ),
    (
        "'2000000 hours'::interval",
        oid::INTERVAL,
        -1,
        "interval_send",
    ),
    ("'::ffff:1.2.3.4'::inet", oid::INET, -1, "inet_send"),
    ("'::1.2.3.4'::inet", oid::INET, -1, "inet_send"),
    ("'fe80::1:0:0:0:1'::inet", oid::INET, -1, "inet_send"),
    ("'1:0:0:1:0:0:0:1'::inet", oid::INET, -1, "inet_send"),
    ("'192.168.1.5/24'::inet", oid::INET, -1, "inet_send"),
    ("'10.1'::cidr", oid::CIDR, -1, "cidr_send"),
    ("'2001:db8::/32'::cidr", oid::CIDR, -1, "cidr_send"),
    (
        "'08:00:2b:01:02:03'::macaddr",
        oid::MACADDR,
        -1,
        "macaddr_send",
    ),
    (
        "'08:00:2b:01:02:03:04:05'::macaddr8",
        oid::MACADDR8,
        -1,
        "macaddr8_send",
    ),
    ("B'1010000011'::varbit", oid::VARBIT, -1, "varbit_send"),
    ("B'101'::bit(3)", oid::BIT, 3, "bit_send"),
    ("'x'::\"char\"", oid::CHAR, -1, "charsend"),
    ("'\\x00ff'::bytea", oid::BYTEA, -1, "byteasend"),
    ("''::bytea", oid::BYTEA, -1, "byteasend"),
    (
        "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid",
        oid::UUID,
        -1,
        "uuid_send",
    ),
    (
        "'{\"b\":1,  \"a\":[1,2]}'::jsonb",
        oid::JSONB,
        -1,
        "jsonb_send",
    ),
    (
        "'{\"b\":1,  \"a\":[1,2]}'::json",
        oid::JSON,
        -1,
        "json_send",
    ),
    ("'Ünïcödé ☃'::text", oid::TEXT, -1, "textsend"),
    ("'a'::char(5)", oid::BPCHAR, 9, "bpcharsend"),
    ("'-0'::float8", oid::FLOAT8, -1, "float8send"),
    ("'1e-310'::float8", oid::FLOAT8, -1, "float8send"),
    (
        "'0.1'::float8 + '0.2'::float8",
        oid::FLOAT8,
        -1,
        "float8send",
    ),
    ("'NaN'::float4", oid::FLOAT4, -1, "float4send"),
    ("'3.4028235e38'::float4", oid::FLOAT4, -1, "float4send"),
    ("'-32768'::int2", oid::INT2, -1, "int2send"),
    ("4294967295::oid", oid::OID, -1, "oidsend"),
    ("array[1,null,3]", oid::INT4_ARRAY, -1, "array_send"),
    (
        "'[0:1][1:2]={{1,2},{3,4}}'::int[]",
        oid::INT4_ARRAY,
        -1,
        "array_send",
    ),
    (
        "array['a b','NULL',null,'','x\"y','b\\c','{}']",
        oid::TEXT_ARRAY,
        -1,
        "array_send",
    ),
    (
        "'{1.50,NaN}'::numeric(10,2)[]",
        oid::NUMERIC_ARRAY,
        (10 << 16 | 2) + 4,
        "array_send",
    ),
    (
        "'{1.50,NaN,-Infinity}'::numeric[]",
        oid::NUMERIC_ARRAY,
        -1,
        "array_send",
    ),
    (
        "array['2020-01-01 00:00'::timestamptz, 'infinity']",
        oid::TIMESTAMPTZ_ARRAY,
        -1,
        "array_send",
    ),
    (
        "array['::1'::inet, '10.0.0.0/8']",
        oid::INET_ARRAY,
        -1,
        "array_send",
    ),
    ("'{}'::text[]", oid::TEXT_ARRAY, -1, "array_send"),
    (
        "array[[true,false],[null,true]]",
        oid::BOOL_ARRAY,
        -1,
        "array_send",
    ),
    (
        "array['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid]",
        oid::UUID_ARRAY,
        -1,
        "array_send",
    ),
    (
        "array['1 day'::interval, '-00:00:00.000001']",
        oid::INTERVAL_ARRAY,
        -1,
        "array_send",
    ),
];

#[test]
fn server_text_and_binary_agree() {
    if !enabled() {
        eprintln!("skipped: set TIDEMARK_TEST_PG=1");
        return;
    }
    let mut failures = Vec::new();
    for &(expr, type_oid, typmod, send) in CASES {
        let row = psql(&format!("select ({expr}), encode({send}({expr}), 'hex')"));
        let [text, hex] = &row[..] else {
            panic!("{expr}: unexpected psql output {row:?}")
        };
        let t = SourceType::pg_builtin(type_oid, typmod).unwrap();
        match run(&t, text, &unhex(hex)) {
            (Ok((a, ma)), Ok((b, mb))) => {
                if a.to_data() != b.to_data() || ma != mb {
                    failures.push(format!(
                        "{expr}: text {text:?} -> {a:?} {ma:?}; binary -> {b:?} {mb:?}"
                    ));
                }
            }
            (ra, rb) => failures.push(format!(
                "{expr}: text {text:?} -> {ra:?}; binary {hex} -> {rb:?}"
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Values at the edges of Arrow's range fail the same way in both forms (no garbage).
#[test]
fn server_out_of_range_fails_both_ways() {
    if !enabled() {
        return;
    }
    for (expr, type_oid, send) in [
        (
            "'294276-12-31 23:59:59.999999'::timestamp",
            oid::TIMESTAMP,
            "timestamp_send",
        ),
        ("'3000000 hours'::interval", oid::INTERVAL, "interval_send"),
    ] {
        let row = psql(&format!("select ({expr}), encode({send}({expr}), 'hex')"));
        let t = SourceType::pg_builtin(type_oid, -1).unwrap();
        let (a, b) = run(&t, &row[0], &unhex(&row[1]));
        assert!(
            matches!(a, Err(ValueError::OutOfRange { .. })),
            "{expr}: {a:?}"
        );
        assert!(
            matches!(b, Err(ValueError::OutOfRange { .. })),
            "{expr}: {b:?}"
        );
    }
}

/// Known values the server prints, parsed to what we expect.
#[test]
fn server_known_values() {
    if !enabled() {
        return;
    }
    use arrow_array::cast::AsArray;
    use arrow_array::types::*;
    let parse = |expr: &str, o: u32, m: i32| {
        let text = psql(&format!("select ({expr})")).remove(0);
        let t = SourceType::pg_builtin(o, m).unwrap();
        let mut b = ColumnBuilder::new(&t, &pg_types::arrow_type(&t), 1);
        b.append_text(text.as_bytes()).unwrap();
        b.finish()
    };
    let a = parse(
        "'1969-07-20 20:17:40+00'::timestamptz",
        oid::TIMESTAMPTZ,
        -1,
    );
    assert_eq!(
        a.as_primitive::<TimestampMicrosecondType>().value(0),
        -14_182_940_000_000
    );
    let epoch =
        psql("select extract(epoch from '0044-03-15 12:00:00 BC'::timestamp)::bigint").remove(0);
    let a = parse("'0044-03-15 12:00:00 BC'::timestamp", oid::TIMESTAMP, -1);
    assert_eq!(
        a.as_primitive::<TimestampMicrosecondType>().value(0),
        epoch.parse::<i64>().unwrap() * 1_000_000
    );
    let days = psql("select '2999-12-31'::date - '1970-01-01'::date").remove(0);
    let a = parse("'2999-12-31'::date", oid::DATE, -1);
    assert_eq!(
        a.as_primitive::<Date32Type>().value(0),
        days.parse::<i32>().unwrap()
    );
    let a = parse("'$1,234.56'::money", oid::MONEY, -1);
    assert_eq!(a.as_primitive::<Decimal128Type>().value(0), 123_456);
    assert!(a.is_valid(0));
}
