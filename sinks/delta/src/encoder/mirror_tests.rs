use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Int32Type};
use tidemark_model::Op;

use super::*;
use crate::config::TableMode;
use crate::encoder::testutil::{batch, schema, V};
use crate::encoder::Layout;

fn reducer() -> MirrorReducer {
    let s = schema(1, true);
    MirrorReducer::new(Layout::new(&s, TableMode::Mirror, vec!["id".into()]).unwrap()).unwrap()
}

fn rows(mb: &MirrorBatch) -> Vec<(i32, Option<String>, bool, bool)> {
    let b = &mb.batch;
    let id = b.column_by_name("id").unwrap().as_primitive::<Int32Type>();
    let v = b.column_by_name("v").unwrap().as_string::<i32>();
    let del = b.column_by_name(DELETE_FLAG).unwrap().as_boolean();
    let keep = b.column_by_name(&format!("{KEEP_PREFIX}v"));
    (0..b.num_rows())
        .map(|i| {
            (
                id.value(i),
                v.is_valid(i).then(|| v.value(i).to_owned()),
                del.value(i),
                keep.is_some_and(|k| k.as_boolean().value(i)),
            )
        })
        .collect()
}

#[test]
fn several_changes_to_one_key_reduce_in_order() {
    let s = schema(1, true);
    let mut r = reducer();
    r.push(&batch(
        &s,
        100,
        &[
            (
                Op::Insert,
                None,
                Some(vec![V::T("1"), V::T("a"), V::T("1.50")]),
            ),
            (
                Op::Update,
                None,
                Some(vec![V::T("1"), V::T("b"), V::T("NaN")]),
            ),
            (Op::Insert, None, Some(vec![V::T("2"), V::T("x"), V::Null])),
            (Op::Delete, Some(vec![V::T("2"), V::Null, V::Null]), None),
            (Op::Insert, None, Some(vec![V::T("2"), V::T("y"), V::Null])),
            (Op::Delete, Some(vec![V::T("3"), V::Null, V::Null]), None),
        ],
    ))
    .unwrap();
    assert_eq!(r.rows_in(), 6);
    let mb = r.finish(None).unwrap();
    assert_eq!(
        rows(&mb),
        [
            (1, Some("b".into()), false, false),
            (2, Some("y".into()), false, false),
            (3, None, true, false)
        ]
    );
    // The NaN marker of row 1 travels in _markers.
    let m = mb
        .batch
        .column_by_name("_markers")
        .unwrap()
        .as_list::<i32>();
    assert!(m.is_valid(0) && m.is_null(1));
    assert!(!mb.truncate);
}

#[test]
fn unchanged_toast_copies_from_the_batch_or_keeps_the_stored_value() {
    let s = schema(1, true);
    let mut r = reducer();
    r.push(&batch(
        &s,
        100,
        &[
            (
                Op::Insert,
                None,
                Some(vec![V::T("1"), V::T("big"), V::T("1.00")]),
            ),
            (
                Op::Update,
                None,
                Some(vec![V::T("1"), V::Unchanged, V::T("2.00")]),
            ),
            (
                Op::Update,
                None,
                Some(vec![V::T("5"), V::Unchanged, V::T("3.00")]),
            ),
        ],
    ))
    .unwrap();
    let mb = r.finish(None).unwrap();
    assert_eq!(mb.keep_columns, ["v"]);
    assert_eq!(
        rows(&mb),
        [
            (1, Some("big".into()), false, false),
            (5, None, false, true)
        ]
    );
    let n = mb
        .batch
        .column_by_name("n")
        .unwrap()
        .as_primitive::<Decimal128Type>();
    assert_eq!(n.value(0), 200);
}

#[test]
fn key_change_deletes_the_old_key_and_asks_for_stored_values() {
    let s = schema(1, true);
    let mut r = reducer();
    r.push(&batch(
        &s,
        100,
        &[
            (
                Op::Update,
                Some(vec![V::T("1"), V::Null, V::Null]),
                Some(vec![V::T("10"), V::Unchanged, V::T("1.00")]),
            ),
            (
                Op::Insert,
                None,
                Some(vec![V::T("2"), V::T("two"), V::Null]),
            ),
            (
                Op::Update,
                Some(vec![V::T("2"), V::Null, V::Null]),
                Some(vec![V::T("20"), V::Unchanged, V::Null]),
            ),
        ],
    ))
    .unwrap();
    let lookup = r
        .lookup()
        .unwrap()
        .expect("row 10 needs the stored v of key 1");
    assert_eq!(lookup.keys.num_rows(), 1);
    assert_eq!(
        lookup.keys.column(0).as_primitive::<Int32Type>().value(0),
        1
    );
    // The stored row of key 1.
    let stored = arrow_array::RecordBatch::try_from_iter([
        (
            "id",
            std::sync::Arc::new(arrow_array::Int32Array::from(vec![1])) as ArrayRef,
        ),
        (
            "v",
            std::sync::Arc::new(arrow_array::StringArray::from(vec!["old"])) as ArrayRef,
        ),
    ])
    .unwrap();
    let mb = r.finish(Some(stored)).unwrap();
    assert_eq!(
        rows(&mb),
        [
            (1, None, true, false),
            (10, Some("old".into()), false, false),
            (2, None, true, false),
            (20, Some("two".into()), false, false)
        ]
    );
}

#[test]
fn truncate_forgets_earlier_changes_and_delete_needs_a_key() {
    let s = schema(1, true);
    let mut r = reducer();
    r.push(&batch(
        &s,
        100,
        &[
            (Op::Insert, None, Some(vec![V::T("1"), V::T("a"), V::Null])),
            (Op::Truncate, None, None),
            (Op::Insert, None, Some(vec![V::T("2"), V::T("b"), V::Null])),
        ],
    ))
    .unwrap();
    let mb = r.finish(None).unwrap();
    assert!(mb.truncate);
    assert_eq!(rows(&mb), [(2, Some("b".into()), false, false)]);
    let mut r = reducer();
    let err = r
        .push(&batch(&s, 100, &[(Op::Delete, None, None)]))
        .err()
        .unwrap();
    assert!(err.to_string().contains("REPLICA IDENTITY"), "{err}");
}

#[test]
fn a_column_missing_from_an_older_version_keeps_its_stored_value() {
    let old = schema(1, false);
    let new = schema(2, true);
    let mut layout = Layout::new(&old, TableMode::Mirror, vec!["id".into()]).unwrap();
    let added = layout.evolve(&new).unwrap();
    assert_eq!(added.len(), 1);
    let mut r = MirrorReducer::new(layout).unwrap();
    r.push(&batch(
        &old,
        100,
        &[(Op::Insert, None, Some(vec![V::T("1"), V::T("a")]))],
    ))
    .unwrap();
    r.push(&batch(
        &new,
        200,
        &[(
            Op::Update,
            None,
            Some(vec![V::T("3"), V::T("c"), V::T("9.99")]),
        )],
    ))
    .unwrap();
    let mb = r.finish(None).unwrap();
    assert_eq!(mb.keep_columns, ["n"]);
    let keep = mb.batch.column_by_name("__tm_keep_n").unwrap().as_boolean();
    assert!(keep.value(0) && !keep.value(1));
}

#[test]
fn no_key_is_refused_with_advice() {
    let s = schema(1, true);
    let layout = Layout::new(&s, TableMode::Mirror, vec![]).unwrap();
    let err = MirrorReducer::new(layout).err().unwrap().to_string();
    assert!(
        err.contains("public.t") && err.contains("changelog") && err.contains("key_columns"),
        "{err}"
    );
}
