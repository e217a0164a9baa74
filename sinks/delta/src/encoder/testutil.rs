//! Change batches for unit tests: table `public.t (id int4 primary key, v text, n numeric(10,2))`.

use std::sync::Arc;

use tidemark_model::{
    ChangeBatch, ChangeBatchBuilder, Column, Image, Lsn, Op, Position, SourceType, TableId,
    TableSchema,
};

/// One change: op, old image, new image.
pub type Row = (Op, Option<Vec<V>>, Option<Vec<V>>);

/// A value in the Postgres text form, NULL, or unchanged TOAST.
#[derive(Clone, Copy)]
pub enum V {
    T(&'static str),
    Null,
    Unchanged,
}

pub fn schema(version: u32, with_n: bool) -> Arc<TableSchema> {
    let mut cols = vec![
        Column::postgres("id", SourceType::pg(23, "int4", -1), false, true),
        Column::postgres("v", SourceType::pg(25, "text", -1), true, false),
    ];
    if with_n {
        cols.push(Column::postgres(
            "n",
            SourceType::pg(1700, "numeric", ((10 << 16) | 2) + 4),
            true,
            false,
        ));
    }
    TableSchema::new(TableId::new("public", "t"), version, cols)
}

fn image(b: &mut ChangeBatchBuilder, img: Image, vals: &[V]) {
    for (c, v) in vals.iter().enumerate() {
        match v {
            V::T(t) => b.append_text(img, c, t.as_bytes()).unwrap(),
            V::Null => b.append_null(img, c).unwrap(),
            V::Unchanged => b.append_unchanged(img, c).unwrap(),
        }
    }
}

/// Rows `(op, before, after)`; positions `pg:<lsn>:<lsn>:<i>` from `lsn`.
pub fn batch(schema: &Arc<TableSchema>, lsn: u64, rows: &[Row]) -> ChangeBatch {
    let mut b = ChangeBatchBuilder::new(schema.clone(), rows.len());
    for (i, (op, before, after)) in rows.iter().enumerate() {
        let p = Position::pg(Lsn(lsn), Lsn(lsn), i as u32);
        b.begin_row(*op, &p, Some(7), Some(1_700_000_000_000_000))
            .unwrap();
        match before {
            Some(v) => image(&mut b, Image::Before, v),
            None => b.image_null(Image::Before).unwrap(),
        }
        match after {
            Some(v) => image(&mut b, Image::After, v),
            None => b.image_null(Image::After).unwrap(),
        }
        b.finish_row().unwrap();
    }
    b.finish().unwrap()
}
