//! The `_markers` column of Delta tables: the model's markers (values an Arrow slot cannot hold:
//! NaN/±Infinity numerics, multi-dimensional array bounds, unchanged TOAST in the changelog),
//! with the column *name* instead of the model's column index, so they stay meaningful across
//! schema versions.
//!
//! Type: `array<struct<image: string, column: string, kind: string, detail: string>>`, null
//! for a row without markers. `kind` is one of `unchanged`, `nan`, `infinity`, `-infinity`,
//! `array_dims`, `invalid` (a MySQL zero date: `detail` is its text), `srid` (a MySQL geometry's
//! SRID in `detail`); `image` is `before` or `after`.

use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder, StructBuilder};
use arrow_array::ArrayRef;
use arrow_schema::{DataType, Field, Fields};
use tidemark_model::{Image, MarkerKind};

/// Name of the column.
pub const MARKERS: &str = "_markers";

/// One marker as stored in Delta.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeltaMarker {
    pub image: Image,
    pub column: String,
    pub kind: MarkerKind,
    pub detail: Option<String>,
}

/// `kind` as written.
pub fn kind_name(kind: MarkerKind) -> &'static str {
    match kind {
        MarkerKind::Unchanged => "unchanged",
        MarkerKind::NaN => "nan",
        MarkerKind::PosInfinity => "infinity",
        MarkerKind::NegInfinity => "-infinity",
        MarkerKind::ArrayDims => "array_dims",
        MarkerKind::Invalid => "invalid",
        MarkerKind::Srid => "srid",
    }
}

/// Inverse of [`kind_name`].
pub fn kind_from_name(name: &str) -> Option<MarkerKind> {
    Some(match name {
        "unchanged" => MarkerKind::Unchanged,
        "nan" => MarkerKind::NaN,
        "infinity" => MarkerKind::PosInfinity,
        "-infinity" => MarkerKind::NegInfinity,
        "array_dims" => MarkerKind::ArrayDims,
        "invalid" => MarkerKind::Invalid,
        "srid" => MarkerKind::Srid,
        _ => return None,
    })
}

fn entry_fields() -> Fields {
    Fields::from(vec![
        Field::new("image", DataType::Utf8, true),
        Field::new("column", DataType::Utf8, true),
        Field::new("kind", DataType::Utf8, true),
        Field::new("detail", DataType::Utf8, true),
    ])
}

/// The `_markers` field.
pub fn markers_field() -> Field {
    Field::new(
        MARKERS,
        DataType::List(Arc::new(Field::new(
            "element",
            DataType::Struct(entry_fields()),
            true,
        ))),
        true,
    )
}

/// Builds a `_markers` column row by row.
pub struct MarkersBuilder {
    inner: ListBuilder<StructBuilder>,
}

impl Default for MarkersBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl MarkersBuilder {
    pub fn new() -> Self {
        let fields = entry_fields();
        let values = StructBuilder::from_fields(fields.clone(), 0);
        let field = Arc::new(Field::new("element", DataType::Struct(fields), true));
        MarkersBuilder {
            inner: ListBuilder::new(values).with_field(field),
        }
    }

    /// Appends one row: null when `markers` is empty.
    pub fn append<'a>(&mut self, markers: impl IntoIterator<Item = &'a DeltaMarker>) {
        let mut any = false;
        for m in markers {
            any = true;
            let s = self.inner.values();
            let image = match m.image {
                Image::Before => "before",
                Image::After => "after",
            };
            string_field(s, 0).append_value(image);
            string_field(s, 1).append_value(&m.column);
            string_field(s, 2).append_value(kind_name(m.kind));
            string_field(s, 3).append_option(m.detail.as_deref());
            s.append(true);
        }
        self.inner.append(any);
    }

    pub fn finish(&mut self) -> ArrayRef {
        Arc::new(self.inner.finish())
    }
}

fn string_field(s: &mut StructBuilder, i: usize) -> &mut StringBuilder {
    // INVARIANT: every field of `entry_fields` is Utf8.
    s.field_builder::<StringBuilder>(i)
        .expect("marker entry fields are strings")
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::Array;

    #[test]
    fn builds_null_for_no_markers() {
        let mut b = MarkersBuilder::new();
        b.append(&[]);
        b.append(&[DeltaMarker {
            image: Image::After,
            column: "n".into(),
            kind: MarkerKind::NaN,
            detail: None,
        }]);
        let a = b.finish();
        assert_eq!(a.data_type(), markers_field().data_type());
        assert!(a.is_null(0));
        let l = a.as_list::<i32>();
        let v = l.value(1);
        let s = v.as_struct();
        assert_eq!(s.column(2).as_string::<i32>().value(0), "nan");
        for k in [
            MarkerKind::Unchanged,
            MarkerKind::NaN,
            MarkerKind::PosInfinity,
            MarkerKind::NegInfinity,
            MarkerKind::ArrayDims,
            MarkerKind::Invalid,
            MarkerKind::Srid,
        ] {
            assert_eq!(kind_from_name(kind_name(k)), Some(k));
        }
    }
}
