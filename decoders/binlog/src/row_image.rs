//! Reading the row images of a rows event into a change batch builder: present-column and
//! null bitmaps, partial JSON diffs, and skipping rows before a resume point.
//!
//! # Traps
//! - A column absent from the image's bitmap (`binlog_row_image=MINIMAL/NOBLOB`) is
//!   `Unchanged`, never NULL (crate doc, "Partial images").
//! - A partial JSON update (`PARTIAL_UPDATE_ROWS_EVENT`) diffs against the *before* image of the
//!   same row, which is kept as text while the before image is read.

use tidemark_model::{ChangeBatchBuilder, Image, MarkerKind};

use crate::error::ErrorKind;
use crate::reader::Reader;
use crate::rows::{bit, RowsHeader, RowsKind};
use crate::schema::TableEntry;
use crate::values::{self, Decoded, Kind, Scratch};

/// Borrowed state for reading one row's images.
pub(crate) struct RowCtx<'e> {
    pub(crate) entry: &'e TableEntry,
    pub(crate) scratch: &'e mut Scratch,
    pub(crate) before_json: &'e mut Vec<Option<String>>,
}

fn popcount(map: &[u8], width: usize) -> usize {
    (0..width).filter(|&i| bit(map, i)).count()
}

fn value_err(entry: &TableEntry, col: usize, reason: String) -> ErrorKind {
    let c = entry.schema.as_ref().map(|s| &s.columns[col]);
    ErrorKind::Value {
        table: entry.table.to_string(),
        column: c.map_or_else(|| col.to_string(), |c| c.name.clone()),
        source_type: c.map_or_else(String::new, |c| c.source_type.display.clone()),
        reason,
    }
}

impl RowCtx<'_> {
    /// Reads one image into `b`; columns absent from `present` are `Unchanged`.
    pub(crate) fn image(
        &mut self,
        r: &mut Reader<'_>,
        b: &mut ChangeBatchBuilder,
        image: Image,
        present: &[u8],
        partial: bool,
    ) -> Result<(), ErrorKind> {
        let width = self.entry.kinds.len();
        let mut partial_bits: &[u8] = &[];
        if partial && image == Image::After {
            let opts = r.packed()?.unwrap_or(0);
            if opts & 1 != 0 {
                let n_json = (0..width)
                    .filter(|&i| {
                        bit(present, i) && matches!(self.entry.kinds[i], Kind::Json { .. })
                    })
                    .count();
                partial_bits = r.take(n_json.div_ceil(8))?;
            }
        }
        if partial && image == Image::Before {
            self.before_json.clear();
            self.before_json.resize(width, None);
        }
        let nulls = r.take(popcount(present, width).div_ceil(8))?;
        let (mut k, mut json_i) = (0usize, 0usize);
        for col in 0..width {
            if !bit(present, col) {
                b.append_unchanged(image, col)?;
                continue;
            }
            let is_null = bit(nulls, k);
            k += 1;
            let kind = &self.entry.kinds[col];
            let is_json = matches!(kind, Kind::Json { .. });
            let diff = is_json && bit(partial_bits, json_i);
            if is_json {
                json_i += 1;
            }
            if is_null {
                b.append_null(image, col)?;
                continue;
            }
            if diff {
                let len = r.uint(4)? as usize;
                let diffs = r.take(len)?;
                let entry = self.entry;
                let before = self
                    .before_json
                    .get(col)
                    .and_then(|v| v.as_deref())
                    .ok_or_else(|| {
                        value_err(
                            entry,
                            col,
                            "partial JSON update without a before image".into(),
                        )
                    })?;
                crate::json_diff::apply(before, diffs, &mut self.scratch.text)
                    .map_err(|e| value_err(entry, col, e))?;
                b.append_value(
                    image,
                    col,
                    tidemark_model::MysqlValue::Str(&self.scratch.text),
                )?;
                continue;
            }
            let entry = self.entry;
            let v = values::decode(r, kind, self.scratch).map_err(|e| value_err(entry, col, e))?;
            if partial && image == Image::Before && is_json {
                if let Decoded::Value(tidemark_model::MysqlValue::Str(s)) = v {
                    self.before_json[col] = Some(s.to_owned());
                }
            }
            match v {
                Decoded::Value(v) => b.append_value(image, col, v)?,
                Decoded::Invalid(t) => {
                    b.append_marked_null(image, col, MarkerKind::Invalid, Some(t))?
                }
                Decoded::Srid(v, d) => {
                    b.append_value_marked(image, col, v, MarkerKind::Srid, Some(d))?
                }
            }
        }
        Ok(())
    }

    /// Reads past one row without building it (rows before the resume point).
    pub(crate) fn skip_row(
        &mut self,
        r: &mut Reader<'_>,
        kind: RowsKind,
        rh: &RowsHeader<'_>,
    ) -> Result<(), ErrorKind> {
        let images: &[(&[u8], bool)] = match kind {
            RowsKind::Write | RowsKind::Delete => &[(rh.present, false)],
            RowsKind::Update => &[(rh.present, false), (rh.present_after, false)],
            RowsKind::PartialUpdate => &[(rh.present, false), (rh.present_after, true)],
        };
        let width = self.entry.kinds.len();
        for &(present, after_partial) in images {
            let mut partial_bits: &[u8] = &[];
            if after_partial && r.packed()?.unwrap_or(0) & 1 != 0 {
                let n = (0..width)
                    .filter(|&i| {
                        bit(present, i) && matches!(self.entry.kinds[i], Kind::Json { .. })
                    })
                    .count();
                partial_bits = r.take(n.div_ceil(8))?;
            }
            let nulls = r.take(popcount(present, width).div_ceil(8))?;
            let (mut k, mut j) = (0, 0);
            for col in 0..width {
                if !bit(present, col) {
                    continue;
                }
                let null = bit(nulls, k);
                k += 1;
                let kind = &self.entry.kinds[col];
                let is_json = matches!(kind, Kind::Json { .. });
                let diff = is_json && bit(partial_bits, j);
                j += usize::from(is_json);
                if null {
                    continue;
                }
                if diff {
                    let len = r.uint(4)? as usize;
                    r.take(len)?;
                } else {
                    let entry = self.entry;
                    values::decode(r, kind, self.scratch).map_err(|e| value_err(entry, col, e))?;
                }
            }
        }
        Ok(())
    }
}
