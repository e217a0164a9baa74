//! TupleData: the row images inside Insert, Update and Delete.
//!
//! ```text
//! Int16 ncols, then per column one of:
//!   'n'                      NULL
//!   'u'                      unchanged TOASTed value (the server did not send it)
//!   't' Int32 len, len bytes value in the type's text output format
//!   'b' Int32 len, len bytes value in the type's binary send format ("binary" option, PG14+)
//! ```
//!
//! # Traps
//! - **Unchanged TOAST is not NULL.** `'u'` means "the value did not change and was not sent";
//!   treating it as NULL silently wipes out large values downstream. See the manual, "Logical
//!   Replication Message Formats", TupleData.
//! - The column count is the number of *live* attributes of the relation (dropped and generated
//!   columns are skipped by the server), matching the last Relation message.
//! - Text values are in the server encoding, not necessarily UTF-8; they are handed out as bytes.
//!
//! [`TupleData`] is validated once when the message is parsed, then iterated without allocating
//! and without further error checks.

use crate::error::{DecodeError, DecodeErrorKind, Field, MessageKind};
use crate::reader::Reader;

/// One column value of a TupleData, borrowing from the message bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TupleValue<'a> {
    /// `'n'`: SQL NULL.
    Null,
    /// `'u'`: unchanged TOASTed value; the value exists but was not sent. **Not** NULL.
    UnchangedToast,
    /// `'t'`: text output format of the column's type.
    Text(&'a [u8]),
    /// `'b'`: binary send format of the column's type.
    Binary(&'a [u8]),
}

/// A validated TupleData. Cheap to copy; iterate it with [`TupleData::iter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TupleData<'a> {
    columns: u16,
    // INVARIANT: `raw` holds exactly `columns` well-formed column encodings (checked by `read`).
    raw: &'a [u8],
}

impl<'a> TupleData<'a> {
    /// Parses a standalone TupleData (Int16 count and columns) that must fill `bytes` exactly.
    /// Errors report [`MessageKind::Unknown`] and offsets relative to `bytes`.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(bytes, 0, MessageKind::Unknown);
        let tuple = Self::read(&mut reader)?;
        reader.finish()?;
        Ok(tuple)
    }

    /// Reads and validates a TupleData at the reader's position.
    pub(crate) fn read(reader: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let columns = reader.count_i16(Field::Named("tuple column count"))?;
        let start = reader.pos();
        for column in 0..columns {
            let field = Field::TupleColumn(column);
            let kind_at = reader.pos();
            match reader.u8(field)? {
                b'n' | b'u' => {}
                b't' | b'b' => {
                    // A huge declared length fails in `take` before anything is allocated.
                    let len = reader.len_i32(field)?;
                    reader.take(len, field)?;
                }
                byte => {
                    return Err(reader.error_at(
                        kind_at,
                        DecodeErrorKind::UnexpectedByte {
                            field,
                            byte,
                            expected: "'n', 'u', 't' or 'b'",
                        },
                    ))
                }
            }
        }
        Ok(Self {
            columns,
            raw: reader.since(start),
        })
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        usize::from(self.columns)
    }

    /// True if the tuple has no columns.
    pub fn is_empty(&self) -> bool {
        self.columns == 0
    }

    /// The encoded columns (everything after the Int16 count).
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The values, in column order, without allocating.
    pub fn iter(&self) -> TupleIter<'a> {
        TupleIter {
            rest: self.raw,
            remaining: self.columns,
        }
    }

    /// The value of column `index` (a linear walk; prefer [`iter`](Self::iter) for whole rows).
    pub fn get(&self, index: usize) -> Option<TupleValue<'a>> {
        self.iter().nth(index)
    }
}

impl<'a> IntoIterator for TupleData<'a> {
    type Item = TupleValue<'a>;
    type IntoIter = TupleIter<'a>;
    fn into_iter(self) -> TupleIter<'a> {
        self.iter()
    }
}

impl<'a> IntoIterator for &TupleData<'a> {
    type Item = TupleValue<'a>;
    type IntoIter = TupleIter<'a>;
    fn into_iter(self) -> TupleIter<'a> {
        self.iter()
    }
}

/// Iterator over the values of a [`TupleData`].
#[derive(Debug, Clone)]
pub struct TupleIter<'a> {
    rest: &'a [u8],
    remaining: u16,
}

impl<'a> TupleIter<'a> {
    fn next_value(&mut self) -> Option<TupleValue<'a>> {
        let (&kind, rest) = self.rest.split_first()?;
        self.rest = rest;
        match kind {
            b'n' => Some(TupleValue::Null),
            b'u' => Some(TupleValue::UnchangedToast),
            b't' | b'b' => {
                let (len, rest) = self.rest.split_first_chunk::<4>()?;
                let len = usize::try_from(i32::from_be_bytes(*len)).ok()?;
                let value = rest.get(..len)?;
                self.rest = rest.get(len..)?;
                Some(if kind == b't' {
                    TupleValue::Text(value)
                } else {
                    TupleValue::Binary(value)
                })
            }
            _ => None,
        }
    }
}

impl<'a> Iterator for TupleIter<'a> {
    type Item = TupleValue<'a>;

    fn next(&mut self) -> Option<TupleValue<'a>> {
        if self.remaining == 0 {
            return None;
        }
        // By the TupleData invariant this never fails; if it did, stop rather than panic.
        match self.next_value() {
            Some(value) => {
                self.remaining -= 1;
                Some(value)
            }
            None => {
                self.remaining = 0;
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::from(self.remaining);
        (n, Some(n))
    }
}

impl ExactSizeIterator for TupleIter<'_> {}
impl std::iter::FusedIterator for TupleIter<'_> {}
