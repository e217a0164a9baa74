//! A bounds-checked little-endian cursor over one event's bytes: every read either succeeds or
//! returns [`Truncated`] with the offset, never panics.

/// Not enough bytes at `offset` for `wanted` more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncated {
    pub offset: usize,
    pub wanted: usize,
}

#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Offset of the next byte.
    pub fn offset(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Truncated> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(Truncated {
                offset: self.pos,
                wanted: n,
            }),
        }
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }

    pub fn u8(&mut self) -> Result<u8, Truncated> {
        Ok(self.take(1)?[0])
    }

    pub fn u16(&mut self) -> Result<u16, Truncated> {
        Ok(u16::from_le_bytes([self.u8()?, self.u8()?]))
    }

    pub fn u32(&mut self) -> Result<u32, Truncated> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self) -> Result<u64, Truncated> {
        self.uint(8)
    }

    /// An unsigned little-endian integer of `n` ≤ 8 bytes.
    pub fn uint(&mut self, n: usize) -> Result<u64, Truncated> {
        let b = self.take(n.min(8))?;
        Ok(le_uint(b))
    }

    /// MySQL's length-encoded integer (`net_field_length`): < 251 one byte, 0xfc u16, 0xfd u24,
    /// 0xfe u64. 0xfb (NULL) and 0xff are invalid here and returned as `None`.
    pub fn packed(&mut self) -> Result<Option<u64>, Truncated> {
        Ok(match self.u8()? {
            b @ 0..=250 => Some(u64::from(b)),
            0xfc => Some(self.uint(2)?),
            0xfd => Some(self.uint(3)?),
            0xfe => Some(self.uint(8)?),
            _ => None,
        })
    }
}

/// Little-endian unsigned integer of up to 8 bytes.
pub fn le_uint(b: &[u8]) -> u64 {
    b.iter()
        .take(8)
        .rev()
        .fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
}

/// Big-endian unsigned integer of up to 8 bytes.
pub fn be_uint(b: &[u8]) -> u64 {
    b.iter()
        .take(8)
        .fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_bounds() {
        let mut r = Reader::new(&[1, 2, 0, 0xfc, 0x34, 0x12, 0xfb]);
        assert_eq!(r.u8().unwrap(), 1);
        assert_eq!(r.u16().unwrap(), 2);
        assert_eq!(r.packed().unwrap(), Some(0x1234));
        assert_eq!(r.packed().unwrap(), None);
        assert_eq!(
            r.u8().unwrap_err(),
            Truncated {
                offset: 7,
                wanted: 1
            }
        );
        let mut r = Reader::new(&[0xfe, 1]);
        assert!(r.packed().is_err());
        assert!(Reader::new(&[]).take(usize::MAX).is_err());
        assert_eq!(be_uint(&[1, 0]), 256);
        assert_eq!(le_uint(&[1, 0]), 1);
    }
}
