//! `ChangeBatchBuilder` → `ChangeBatch`: layout, markers, row protocol errors.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Int32Type};
use arrow_array::Array;
use arrow_schema::DataType;
use tidemark_model::pg_types::oid;
use tidemark_model::table::{META_EXTENSION_NAME, META_KEY, META_SOURCE_TYPE};
use tidemark_model::*;

fn schema() -> Arc<TableSchema> {
    let col = |name: &str, o: u32, m: i32, key: bool| {
        Column::postgres(name, SourceType::pg_builtin(o, m).unwrap(), !key, key)
    };
    TableSchema::new(
        TableId::new("public", "orders"),
        1,
        vec![
            col("id", oid::INT4, -1, true),
            col("total", oid::NUMERIC, ((10 << 16) | 2) + 4, false),
            col("note", oid::TEXT, -1, false),
            col("ref", oid::UUID, -1, false),
            col("tags", oid::INT4_ARRAY, -1, false),
        ],
    )
}

fn pos(i: u32) -> Position {
    Position::pg(Lsn(0x100), Lsn(0x80 + i as u64), i)
}

#[test]
fn arrow_schema_shape_and_metadata() {
    let s = schema();
    let names: Vec<&str> = s.arrow.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        [
            "_op",
            "_position",
            "_txid",
            "_commit_ts",
            "before",
            "after",
            "_markers"
        ]
    );
    let fields = s.image_fields();
    assert_eq!(
        fields[0].metadata().get(META_KEY).map(String::as_str),
        Some("true")
    );
    assert_eq!(fields[1].metadata().get(META_KEY), None);
    assert_eq!(fields[1].data_type(), &DataType::Decimal128(10, 2));
    assert_eq!(fields[1].metadata()[META_SOURCE_TYPE], "numeric(10,2)");
    assert_eq!(fields[3].metadata()[META_EXTENSION_NAME], "arrow.uuid");
    assert!(fields.iter().all(|f| f.is_nullable()));
    assert_eq!(s.key_columns().map(|(i, _)| i).collect::<Vec<_>>(), vec![0]);
    assert_eq!(s.column_index("note"), Some(2));
    assert_eq!(s.column_index("nope"), None);
}

#[test]
fn builds_rows_with_markers() {
    let s = schema();
    let mut b = ChangeBatchBuilder::new(Arc::clone(&s), 8);
    // Insert.
    b.begin_row(Op::Insert, &pos(0), Some(7), Some(1_700_000_000_000_000))
        .unwrap();
    b.image_null(Image::Before).unwrap();
    b.append_text(Image::After, 0, b"1").unwrap();
    b.append_text(Image::After, 1, b"12.50").unwrap();
    b.append_text(Image::After, 2, b"hello").unwrap();
    b.append_text(Image::After, 3, b"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
        .unwrap();
    b.append_text(Image::After, 4, b"{{1,2},{3,4}}").unwrap();
    b.finish_row().unwrap();
    // Update with unchanged TOAST and a NaN, key-only old image (columns in any order).
    b.begin_row(Op::Update, &pos(1), Some(7), Some(1_700_000_000_000_000))
        .unwrap();
    b.append_text(Image::Before, 0, b"1").unwrap();
    for c in 1..5 {
        b.append_null(Image::Before, c).unwrap();
    }
    b.append_text(Image::After, 4, b"{5}").unwrap();
    b.append_unchanged(Image::After, 2).unwrap();
    b.append_text(Image::After, 1, b"NaN").unwrap();
    b.append_binary(Image::After, 0, &1i32.to_be_bytes())
        .unwrap();
    b.append_null(Image::After, 3).unwrap();
    b.finish_row().unwrap();
    // Delete: after untouched = null.
    b.begin_row(Op::Delete, &pos(2), None, None).unwrap();
    for c in 0..5 {
        b.append_null(Image::Before, c).unwrap();
    }
    b.append_text(Image::Before, 0, b"1").unwrap_err(); // duplicate → error, poisoned
    assert!(b.finish_row().is_err());
    // Start over: a poisoned builder stays unusable.
    assert!(b.finish().is_err());

    let mut b = ChangeBatchBuilder::new(Arc::clone(&s), 8);
    b.begin_row(Op::Insert, &pos(0), Some(7), Some(5)).unwrap();
    for (c, v) in [
        &b"1"[..],
        b"12.50",
        b"hello",
        b"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        b"{{1,2},{3,4}}",
    ]
    .iter()
    .enumerate()
    {
        b.append_text(Image::After, c, v).unwrap();
    }
    b.finish_row().unwrap();
    b.begin_row(Op::Update, &pos(1), Some(7), Some(5)).unwrap();
    b.append_text(Image::Before, 0, b"1").unwrap();
    for c in 1..5 {
        b.append_null(Image::Before, c).unwrap();
    }
    b.append_text(Image::After, 4, b"{5}").unwrap();
    b.append_unchanged(Image::After, 2).unwrap();
    b.append_text(Image::After, 1, b"NaN").unwrap();
    b.append_binary(Image::After, 0, &1i32.to_be_bytes())
        .unwrap();
    b.append_null(Image::After, 3).unwrap();
    b.finish_row().unwrap();
    b.begin_row(Op::Delete, &pos(2), None, None).unwrap();
    b.append_text(Image::Before, 0, b"1").unwrap();
    for c in 1..5 {
        b.append_null(Image::Before, c).unwrap();
    }
    b.finish_row().unwrap();
    assert_eq!(b.len(), 3);
    assert!(b.byte_size() > 0);
    let cb = b.finish().unwrap();
    assert_eq!(b.len(), 0);

    assert_eq!(cb.batch.schema(), s.arrow);
    assert_eq!(cb.num_rows(), 3);
    assert_eq!(
        [cb.op(0), cb.op(1), cb.op(2)],
        [Op::Insert, Op::Update, Op::Delete]
    );
    assert_eq!(cb.op(1).debezium_code(), "u");
    assert_eq!(cb.position(2), pos(2));
    assert_eq!(cb.txid(0), Some(7));
    assert_eq!(cb.txid(2), None);
    assert_eq!(cb.commit_ts_us(0), Some(5));
    assert!(cb.before().is_null(0));
    assert!(cb.after().is_null(2));
    assert!(cb.before().is_valid(1));
    let total = cb.after().column(1).as_primitive::<Decimal128Type>();
    assert_eq!(total.value(0), 1250);
    assert!(total.is_null(1));
    assert_eq!(cb.after().column(0).as_primitive::<Int32Type>().value(1), 1);

    let m0 = cb.markers(0);
    assert_eq!(m0.len(), 1);
    assert_eq!(
        (m0[0].kind, m0[0].column, m0[0].detail.as_deref()),
        (MarkerKind::ArrayDims, 4, Some("[1:2][1:2]"))
    );
    assert!(cb.after().column(4).is_valid(0), "ArrayDims keeps the list");
    let m1 = cb.markers(1);
    assert_eq!(m1.len(), 2);
    assert!(cb.is_unchanged(1, Image::After, 2));
    assert!(!cb.is_unchanged(1, Image::After, 3));
    assert_eq!(cb.marker(1, Image::After, 1).unwrap().kind, MarkerKind::NaN);
    assert!(cb.markers(2).is_empty());
    assert!(!cb.has_markers(2));

    // The batch re-validates.
    let again = ChangeBatch::try_new(Arc::clone(&s), cb.batch.clone()).unwrap();
    assert_eq!(again.num_rows(), 3);
    assert_eq!(cb.first_position(), Some(pos(0)));
    assert_eq!(cb.last_position(), Some(pos(2)));
}

#[test]
fn errors_name_table_column_and_type() {
    let mut b = ChangeBatchBuilder::new(schema(), 1);
    b.begin_row(Op::Insert, &pos(0), None, None).unwrap();
    let e = b.append_text(Image::After, 1, b"12.345").unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("public.orders"), "{msg}");
    assert!(msg.contains("total"), "{msg}");
    assert!(msg.contains("numeric(10,2)"), "{msg}");

    let mut b = ChangeBatchBuilder::new(schema(), 1);
    b.begin_row(Op::Insert, &pos(0), None, None).unwrap();
    b.append_text(Image::After, 0, b"1").unwrap();
    let e = b.finish_row().unwrap_err();
    assert!(
        matches!(e, ModelError::MissingValue { ref column, .. } if column == "total"),
        "{e}"
    );

    let mut b = ChangeBatchBuilder::new(schema(), 1);
    assert!(b.append_null(Image::After, 0).is_err(), "outside a row");
    let mut b = ChangeBatchBuilder::new(schema(), 1);
    b.begin_row(Op::Insert, &pos(0), None, None).unwrap();
    assert!(matches!(
        b.append_null(Image::After, 9),
        Err(ModelError::ColumnOutOfRange { .. })
    ));
}

#[test]
fn empty_and_columnless_tables() {
    let s = TableSchema::new(TableId::new("public", "nothing"), 1, vec![]);
    let mut b = ChangeBatchBuilder::new(Arc::clone(&s), 1);
    b.begin_row(Op::Truncate, &pos(0), Some(1), None).unwrap();
    b.finish_row().unwrap();
    let cb = b.finish().unwrap();
    assert_eq!(cb.num_rows(), 1);
    assert_eq!(cb.op(0), Op::Truncate);
    let empty = ChangeBatchBuilder::new(schema(), 0).finish().unwrap();
    assert!(empty.is_empty());
    assert_eq!(empty.first_position(), None);
}

#[test]
fn mismatched_arrow_type_is_an_error_not_a_panic() {
    let t = SourceType::pg_builtin(oid::INT4, -1).unwrap();
    let s = TableSchema::new(
        TableId::new("public", "odd"),
        1,
        vec![Column::new("x", t, DataType::Float64, true, false)],
    );
    let mut b = ChangeBatchBuilder::new(s, 1);
    b.begin_row(Op::Insert, &pos(0), None, None).unwrap();
    let e = b.append_text(Image::After, 0, b"1").unwrap_err();
    assert!(
        matches!(e, ModelError::Value { ref error, .. } if matches!(**error, ValueError::TypeMismatch { .. }))
    );
}

#[test]
fn transaction_helpers() {
    let mut b = ChangeBatchBuilder::new(schema(), 1);
    b.begin_row(Op::Delete, &pos(0), Some(3), None).unwrap();
    b.append_text(Image::Before, 0, b"9").unwrap();
    for c in 1..5 {
        b.append_null(Image::Before, c).unwrap();
    }
    b.finish_row().unwrap();
    let end = Position::from(PgPosition::end(Lsn(0x100), Lsn(0x200)));
    let mut t = Transaction::new(Some(3), None, end);
    t.items.push(TxnItem::Rows(b.finish().unwrap()));
    t.items.push(TxnItem::Message(LogicalMessage {
        transactional: true,
        prefix: "p".into(),
        content: b"x".to_vec(),
        position: pos(1),
    }));
    assert_eq!(t.row_count(), 1);
    assert_eq!(t.commit_lsn(), Some(Lsn(0x100)));
    assert!(t.byte_size() > 0);
    assert!(pos(1) < t.end);
    let e = SinkError::transient("kafka", "broker down");
    assert!(e.is_transient());
    assert!(!SinkError::definite("kafka", "bad topic").is_transient());
}

/// Runs of null images (appended to the column builders lazily, in bulk) and values between
/// them land at the right rows.
#[test]
fn runs_of_null_images_keep_their_rows() {
    let s = schema();
    let mut b = ChangeBatchBuilder::new(Arc::clone(&s), 2);
    let row = |b: &mut ChangeBatchBuilder, i: u32, before: bool| {
        b.begin_row(Op::Update, &pos(i), None, None).unwrap();
        let id = i.to_string();
        if before {
            b.append_text(Image::Before, 0, id.as_bytes()).unwrap();
            for c in 1..5 {
                b.append_null(Image::Before, c).unwrap();
            }
        }
        for c in 0..5 {
            if c == 0 {
                b.append_text(Image::After, 0, id.as_bytes()).unwrap();
            } else {
                b.append_null(Image::After, c).unwrap();
            }
        }
        b.finish_row().unwrap();
    };
    for (i, before) in [false, false, false, true, false, false, true]
        .into_iter()
        .enumerate()
    {
        row(&mut b, i as u32, before);
    }
    let batch = b.finish().unwrap();
    let before = batch.image(Image::Before);
    assert_eq!(before.len(), 7);
    let valid: Vec<bool> = (0..7).map(|r| before.is_valid(r)).collect();
    assert_eq!(valid, [false, false, false, true, false, false, true]);
    let ids = before.column(0).as_primitive::<Int32Type>();
    assert_eq!(ids.len(), 7);
    assert_eq!((ids.value(3), ids.value(6)), (3, 6));
    assert!(ids.is_null(0) && ids.is_null(5));
    assert!(before.columns().iter().all(|c| c.len() == 7));
    // The builder is reused: a batch of only null images.
    row(&mut b, 7, false);
    row(&mut b, 8, false);
    let batch = b.finish().unwrap();
    let before = batch.image(Image::Before);
    assert!(before
        .columns()
        .iter()
        .all(|c| c.len() == 2 && c.null_count() == 2));
}
