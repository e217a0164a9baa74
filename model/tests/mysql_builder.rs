//! `ChangeBatchBuilder` with MySQL/MariaDB columns: typed appends, zero-date and SRID markers,
//! MINIMAL-image "unchanged" columns, and errors on mismatched values.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal256Type, DurationMicrosecondType, UInt64Type};
use arrow_array::Array;
use arrow_buffer::i256;
use arrow_schema::DataType;
use tidemark_model::mysql_types::{GeometryKind, MysqlType};
use tidemark_model::table::{META_EXTENSION_NAME, META_SOURCE_TYPE};
use tidemark_model::*;

fn schema() -> Arc<TableSchema> {
    TableSchema::new(
        TableId::new("shop", "items"),
        1,
        vec![
            Column::mysql("id", &MysqlType::BigInt { unsigned: true }, false, true),
            Column::mysql(
                "price",
                &MysqlType::Decimal {
                    precision: 65,
                    scale: 30,
                },
                true,
                false,
            ),
            Column::mysql("made", &MysqlType::Date, true, false),
            Column::mysql("doc", &MysqlType::Json, true, false),
            Column::mysql("t", &MysqlType::Time { fsp: 6 }, true, false),
            Column::mysql("g", &MysqlType::Geometry(GeometryKind::Point), true, false),
        ],
    )
}

fn pos(index: u32) -> Position {
    Position::Mysql(MysqlPosition {
        file: 1,
        txn_pos: 4,
        event_pos: 100,
        row: index,
        index,
        gtid: Some(Gtid::Mariadb {
            domain: 0,
            server: 1,
            seq: 9,
        }),
    })
}

#[test]
fn mysql_schema_metadata() {
    let s = schema();
    let f = s.image_fields();
    assert_eq!(f[0].data_type(), &DataType::UInt64);
    assert_eq!(f[0].metadata()[META_SOURCE_TYPE], "bigint unsigned");
    assert_eq!(f[1].data_type(), &DataType::Decimal256(65, 30));
    assert_eq!(f[3].metadata()[META_EXTENSION_NAME], "arrow.json");
    assert_eq!(f[5].metadata()[META_EXTENSION_NAME], "geoarrow.wkb");
}

#[test]
fn typed_rows_with_markers() {
    let s = schema();
    let mut b = ChangeBatchBuilder::new(Arc::clone(&s), 4);
    let wkb = [1u8, 1, 0, 0, 0];
    b.begin_row(Op::Insert, &pos(0), None, Some(1)).unwrap();
    b.image_null(Image::Before).unwrap();
    b.append_value(Image::After, 0, MysqlValue::UInt(u64::MAX))
        .unwrap();
    let big = i256::from_string("12345678901234567890123456789012345678901234567890").unwrap();
    b.append_value(Image::After, 1, MysqlValue::Decimal256(big))
        .unwrap();
    b.append_marked_null(Image::After, 2, MarkerKind::Invalid, Some("0000-00-00"))
        .unwrap();
    b.append_value(Image::After, 3, MysqlValue::Str("{\"a\":1}"))
        .unwrap();
    b.append_value(Image::After, 4, MysqlValue::DurationUs(-3_020_399_000_000))
        .unwrap();
    b.append_value_marked(
        Image::After,
        5,
        MysqlValue::Bytes(&wkb),
        MarkerKind::Srid,
        Some("4326"),
    )
    .unwrap();
    b.finish_row().unwrap();
    // An update with a MINIMAL before image (key only) and a partial after image.
    b.begin_row(Op::Update, &pos(1), None, Some(1)).unwrap();
    b.append_value(Image::Before, 0, MysqlValue::UInt(1))
        .unwrap();
    for c in 1..6 {
        b.append_unchanged(Image::Before, c).unwrap();
    }
    b.append_value(Image::After, 0, MysqlValue::UInt(1))
        .unwrap();
    b.append_null(Image::After, 1).unwrap();
    for c in 2..6 {
        b.append_unchanged(Image::After, c).unwrap();
    }
    b.finish_row().unwrap();
    let cb = b.finish().unwrap();
    let cb = ChangeBatch::try_new(cb.schema.clone(), cb.batch.clone()).unwrap();
    assert_eq!(cb.num_rows(), 2);
    let after = cb.batch.column(5).as_struct();
    assert_eq!(
        after.column(0).as_primitive::<UInt64Type>().value(0),
        u64::MAX
    );
    assert_eq!(
        after.column(1).as_primitive::<Decimal256Type>().value(0),
        big
    );
    assert!(after.column(2).is_null(0));
    assert_eq!(
        after
            .column(4)
            .as_primitive::<DurationMicrosecondType>()
            .value(0),
        -3_020_399_000_000
    );
    assert!(!after.column(5).is_null(0));
    let m = cb.marker(0, Image::After, 2).unwrap();
    assert_eq!(
        (m.kind, m.detail.as_deref()),
        (MarkerKind::Invalid, Some("0000-00-00"))
    );
    let m = cb.marker(0, Image::After, 5).unwrap();
    assert_eq!(
        (m.kind, m.detail.as_deref()),
        (MarkerKind::Srid, Some("4326"))
    );
    assert_eq!(
        cb.marker(1, Image::Before, 3).unwrap().kind,
        MarkerKind::Unchanged
    );
    assert_eq!(cb.position(1), pos(1));
}

#[test]
fn mismatched_values_are_errors_naming_the_column() {
    let mut b = ChangeBatchBuilder::new(schema(), 1);
    b.begin_row(Op::Insert, &pos(0), None, None).unwrap();
    let e = b
        .append_value(Image::After, 2, MysqlValue::Str("2020-01-01"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("column made (date)"), "{e}");
    let mut b = ChangeBatchBuilder::new(schema(), 1);
    b.begin_row(Op::Insert, &pos(0), None, None).unwrap();
    assert!(b.append_text(Image::After, 0, b"1").is_err());
}
