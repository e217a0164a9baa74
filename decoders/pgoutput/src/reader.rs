//! A bounds-checked big-endian cursor over one message.
//!
//! Every read goes through `take`, which checks the remaining length before slicing, so no input
//! can make the parser panic. Lengths and counts declared by the message are validated against
//! the bytes actually present *before* anything is allocated for them.

use crate::error::{DecodeError, DecodeErrorKind, Field, MessageKind};

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    tag: MessageKind,
}

impl<'a> Reader<'a> {
    /// A reader positioned at `pos` (usually 1, just after the tag byte).
    pub(crate) fn new(buf: &'a [u8], pos: usize, tag: MessageKind) -> Self {
        Self { buf, pos, tag }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub(crate) fn error_at(&self, offset: usize, kind: DecodeErrorKind) -> DecodeError {
        DecodeError {
            tag: self.tag,
            offset,
            kind,
        }
    }

    pub(crate) fn error(&self, kind: DecodeErrorKind) -> DecodeError {
        self.error_at(self.pos, kind)
    }

    /// The bytes from `start` up to the current position.
    pub(crate) fn since(&self, start: usize) -> &'a [u8] {
        self.buf.get(start..self.pos).unwrap_or_default()
    }

    pub(crate) fn take(&mut self, n: usize, field: Field) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or_else(|| self.error(DecodeErrorKind::Truncated(field)))?;
        let out = self.buf.get(self.pos..end).unwrap_or_default();
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, field: Field) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(N, field)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: Field) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(crate) fn i16(&mut self, field: Field) -> Result<i16, DecodeError> {
        self.array(field).map(i16::from_be_bytes)
    }

    pub(crate) fn i32(&mut self, field: Field) -> Result<i32, DecodeError> {
        self.array(field).map(i32::from_be_bytes)
    }

    pub(crate) fn u32(&mut self, field: Field) -> Result<u32, DecodeError> {
        self.array(field).map(u32::from_be_bytes)
    }

    pub(crate) fn u64(&mut self, field: Field) -> Result<u64, DecodeError> {
        self.array(field).map(u64::from_be_bytes)
    }

    pub(crate) fn i64(&mut self, field: Field) -> Result<i64, DecodeError> {
        self.array(field).map(i64::from_be_bytes)
    }

    /// A 0/1 byte as a bool; anything else is an error rather than a guess.
    pub(crate) fn bool(&mut self, field: Field) -> Result<bool, DecodeError> {
        let start = self.pos;
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            byte => Err(self.error_at(
                start,
                DecodeErrorKind::UnexpectedByte {
                    field,
                    byte,
                    expected: "0 or 1",
                },
            )),
        }
    }

    /// An Int32 length that must be non-negative, returned as usize.
    pub(crate) fn len_i32(&mut self, field: Field) -> Result<usize, DecodeError> {
        let start = self.pos;
        let value = self.i32(field)?;
        usize::try_from(value)
            .map_err(|_| self.error_at(start, DecodeErrorKind::NegativeLength { field, value }))
    }

    /// An Int16 count that must be non-negative.
    pub(crate) fn count_i16(&mut self, field: Field) -> Result<u16, DecodeError> {
        let start = self.pos;
        let value = self.i16(field)?;
        u16::try_from(value).map_err(|_| {
            self.error_at(
                start,
                DecodeErrorKind::NegativeLength {
                    field,
                    value: value.into(),
                },
            )
        })
    }

    /// A NUL-terminated string in the server encoding, which we require to be UTF-8.
    pub(crate) fn cstr(&mut self, field: Field) -> Result<&'a str, DecodeError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let len = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| self.error(DecodeErrorKind::UnterminatedString(field)))?;
        let bytes = rest.get(..len).unwrap_or_default();
        let s = std::str::from_utf8(bytes).map_err(|e| {
            self.error_at(
                self.pos + e.valid_up_to(),
                DecodeErrorKind::InvalidUtf8(field),
            )
        })?;
        self.pos += len + 1;
        Ok(s)
    }

    /// Succeeds only if the whole message was consumed.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(self.error(DecodeErrorKind::TrailingBytes(n))),
        }
    }
}
