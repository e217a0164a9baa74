//! Postgres arrays: the text form (`array_out`) and the binary form (`array_send`).
//!
//! Text: `{1,2,NULL,"a b"}`; elements are quoted when empty, equal to `NULL` (any case), or
//! containing `{}",\` , whitespace or the delimiter; inside quotes `\` escapes the next char.
//! Multi-dimensional arrays nest braces `{{1,2},{3,4}}`; lower bounds other than 1 are written
//! as a decoration before `=`: `[0:2]={1,2,3}`.
//!
//! Binary: `ndim: i32, flags: i32, elemtype: u32`, `ndim × (len: i32, lbound: i32)`, then every
//! element as `len: i32` (-1 = NULL) + bytes, row-major.
//!
//! # Traps
//! - Unquoted `NULL` is null, quoted `"NULL"` is the string.
//! - `box[]` uses `;` as the delimiter because a box's text contains commas.
//! - `{}` is an empty array with zero dimensions.

use std::borrow::Cow;

use super::ValueMarker;
use crate::batch::MarkerKind;
use crate::error::ValueError;

/// Postgres' MAXDIM.
const MAX_DIMS: usize = 6;

/// One array dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Dim {
    pub lower: i32,
    pub len: i32,
}

/// A parsed text array: dimensions and the elements row-major (None = NULL).
#[derive(Debug)]
pub(crate) struct TextArray<'a> {
    pub dims: Vec<Dim>,
    pub elements: Vec<Option<Cow<'a, str>>>,
}

/// A parsed binary array.
#[derive(Debug)]
pub(crate) struct BinaryArray<'a> {
    pub dims: Vec<Dim>,
    pub elements: Vec<Option<&'a [u8]>>,
}

fn text_err(offset: usize, reason: &'static str) -> ValueError {
    ValueError::InvalidText {
        type_name: "array",
        offset,
        reason,
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

struct Parser<'a> {
    s: &'a str,
    i: usize,
    delim: u8,
    /// Length of each nesting level, fixed by the first sub-array seen.
    lens: Vec<Option<i32>>,
    /// Depth at which scalars sit (ndim − 1).
    scalar_depth: Option<usize>,
    elements: Vec<Option<Cow<'a, str>>>,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(is_ws) {
            self.i += 1;
        }
    }

    fn int(&mut self) -> Result<i32, ValueError> {
        let start = self.i;
        if matches!(self.peek(), Some(b'-' | b'+')) {
            self.i += 1;
        }
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.i += 1;
        }
        self.s[start..self.i]
            .parse()
            .map_err(|_| text_err(start, "invalid dimension bound"))
    }

    /// `[l:u][l:u]...` (or `[u]`), followed by `=`.
    fn decoration(&mut self) -> Result<Vec<Dim>, ValueError> {
        let mut dims = Vec::new();
        while self.peek() == Some(b'[') {
            self.i += 1;
            let first = self.int()?;
            let (lower, upper) = if self.peek() == Some(b':') {
                self.i += 1;
                (first, self.int()?)
            } else {
                (1, first)
            };
            if self.peek() != Some(b']') {
                return Err(text_err(self.i, "expected ']'"));
            }
            self.i += 1;
            let len = (upper as i64 - lower as i64 + 1)
                .try_into()
                .ok()
                .filter(|l: &i32| *l >= 0)
                .ok_or_else(|| text_err(self.i, "upper bound below lower bound"))?;
            dims.push(Dim { lower, len });
        }
        self.skip_ws();
        if self.peek() != Some(b'=') {
            return Err(text_err(self.i, "expected '=' after dimensions"));
        }
        self.i += 1;
        self.skip_ws();
        Ok(dims)
    }

    /// After a consumed `{` at `depth`.
    fn level(&mut self, depth: usize) -> Result<(), ValueError> {
        if depth >= MAX_DIMS {
            return Err(text_err(self.i, "more than 6 dimensions"));
        }
        if self.lens.len() <= depth {
            self.lens.push(None);
        }
        self.skip_ws();
        let mut count: i32 = 0;
        if self.peek() == Some(b'}') {
            self.i += 1;
            if depth > 0 {
                return Err(text_err(self.i, "empty sub-array"));
            }
            return Ok(());
        }
        loop {
            self.skip_ws();
            if self.peek() == Some(b'{') {
                self.i += 1;
                self.level(depth + 1)?;
                if self.scalar_depth.is_some_and(|d| d <= depth) {
                    return Err(text_err(self.i, "sub-arrays and elements mixed"));
                }
            } else {
                if self.scalar_depth.is_some_and(|d| d != depth) {
                    return Err(text_err(self.i, "sub-arrays must have matching dimensions"));
                }
                self.scalar_depth = Some(depth);
                let e = self.element()?;
                self.elements.push(e);
            }
            count += 1;
            self.skip_ws();
            match self.peek() {
                Some(b'}') => {
                    self.i += 1;
                    break;
                }
                Some(c) if c == self.delim => self.i += 1,
                _ => return Err(text_err(self.i, "expected delimiter or '}'")),
            }
        }
        match self.lens[depth] {
            Some(l) if l != count => Err(text_err(self.i, "sub-arrays of different lengths")),
            _ => {
                self.lens[depth] = Some(count);
                Ok(())
            }
        }
    }

    fn element(&mut self) -> Result<Option<Cow<'a, str>>, ValueError> {
        let b = self.s.as_bytes();
        if self.peek() == Some(b'"') {
            self.i += 1;
            let start = self.i;
            let mut owned: Option<String> = None;
            loop {
                match b.get(self.i) {
                    None => return Err(text_err(self.i, "unterminated quoted element")),
                    Some(b'"') => break,
                    Some(b'\\') => {
                        let o = owned.get_or_insert_with(|| self.s[start..self.i].to_owned());
                        self.i += 1;
                        let c = self.s[self.i..]
                            .chars()
                            .next()
                            .ok_or_else(|| text_err(self.i, "dangling backslash"))?;
                        o.push(c);
                        self.i += c.len_utf8();
                    }
                    Some(_) => {
                        let c = self.s[self.i..].chars().next().expect("in bounds");
                        if let Some(o) = owned.as_mut() {
                            o.push(c);
                        }
                        self.i += c.len_utf8();
                    }
                }
            }
            let end = self.i;
            self.i += 1;
            return Ok(Some(match owned {
                Some(o) => Cow::Owned(o),
                None => Cow::Borrowed(&self.s[start..end]),
            }));
        }
        self.unquoted()
    }

    fn unquoted(&mut self) -> Result<Option<Cow<'a, str>>, ValueError> {
        let b = self.s.as_bytes();
        let start = self.i;
        let mut escaped = false;
        // End of the element without trailing unescaped whitespace.
        let mut end = start;
        while let Some(&c) = b.get(self.i) {
            if c == self.delim || c == b'}' {
                break;
            }
            if c == b'{' || c == b'"' {
                return Err(text_err(self.i, "unexpected character in unquoted element"));
            }
            if c == b'\\' {
                escaped = true;
                self.i += 1;
                let ch = self.s[self.i..]
                    .chars()
                    .next()
                    .ok_or_else(|| text_err(self.i, "dangling backslash"))?;
                self.i += ch.len_utf8();
                end = self.i;
                continue;
            }
            self.i += 1;
            if !is_ws(c) {
                end = self.i;
            }
        }
        let raw = &self.s[start..end];
        if raw.is_empty() {
            return Err(text_err(start, "empty unquoted element"));
        }
        if !escaped {
            if raw.eq_ignore_ascii_case("NULL") {
                return Ok(None);
            }
            return Ok(Some(Cow::Borrowed(raw)));
        }
        let mut out = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            } else {
                out.push(c);
            }
        }
        Ok(Some(Cow::Owned(out)))
    }
}

/// Parses `array_out` text.
pub(crate) fn parse_text_array(s: &str, delim: u8) -> Result<TextArray<'_>, ValueError> {
    let mut p = Parser {
        s,
        i: 0,
        delim,
        lens: Vec::new(),
        scalar_depth: None,
        elements: Vec::new(),
    };
    p.skip_ws();
    let declared = if p.peek() == Some(b'[') {
        Some(p.decoration()?)
    } else {
        None
    };
    if p.peek() != Some(b'{') {
        return Err(text_err(p.i, "expected '{'"));
    }
    p.i += 1;
    p.level(0)?;
    p.skip_ws();
    if p.i != s.len() {
        return Err(text_err(p.i, "trailing characters"));
    }
    let ndim = p.scalar_depth.map_or(0, |d| d + 1);
    let mut dims: Vec<Dim> = p.lens[..ndim]
        .iter()
        .map(|l| Dim {
            lower: 1,
            len: l.unwrap_or(0),
        })
        .collect();
    if let Some(decl) = declared {
        let same = decl.len() == dims.len() && decl.iter().zip(&dims).all(|(a, b)| a.len == b.len);
        if !same {
            return Err(text_err(0, "dimensions do not match the elements"));
        }
        dims = decl;
    }
    Ok(TextArray {
        dims,
        elements: p.elements,
    })
}

/// Parses `array_send` bytes.
pub(crate) fn parse_binary_array(b: &[u8]) -> Result<BinaryArray<'_>, ValueError> {
    let err = |offset, reason| ValueError::InvalidBinary {
        type_name: "array",
        offset,
        reason,
    };
    let i32_at = |at: usize| -> Result<i32, ValueError> {
        b.get(at..at + 4)
            .map(|s| i32::from_be_bytes([s[0], s[1], s[2], s[3]]))
            .ok_or_else(|| err(at, "truncated"))
    };
    let ndim = i32_at(0)?;
    let flags = i32_at(4)?;
    let _elem_oid = i32_at(8)?;
    if !(0..=MAX_DIMS as i32).contains(&ndim) {
        return Err(err(0, "invalid number of dimensions"));
    }
    if flags & !1 != 0 {
        return Err(err(4, "invalid flags"));
    }
    let mut at = 12;
    let mut dims = Vec::with_capacity(ndim as usize);
    let mut total: usize = if ndim == 0 { 0 } else { 1 };
    for _ in 0..ndim {
        let len = i32_at(at)?;
        let lower = i32_at(at + 4)?;
        if len < 0 {
            return Err(err(at, "negative dimension"));
        }
        // `array_send` writes an array without elements with 0 dimensions. A dimension of
        // length 0 next to a long one made the text rendering loop over the long one (28
        // bytes `[2147483647, 0]` printed `{{},{},…}`: gigabytes, for nothing).
        if len == 0 {
            return Err(err(
                at,
                "a dimension of length 0 (an empty array has no dimensions)",
            ));
        }
        total = total
            .checked_mul(len as usize)
            .ok_or_else(|| err(at, "too many elements"))?;
        dims.push(Dim { lower, len });
        at += 8;
    }
    // Every element takes at least 4 bytes: bounds the allocation by the input size.
    if total > b.len().saturating_sub(at) / 4 {
        return Err(err(at, "more elements than bytes"));
    }
    let mut elements = Vec::with_capacity(total);
    for _ in 0..total {
        let len = i32_at(at)?;
        at += 4;
        if len == -1 {
            elements.push(None);
            continue;
        }
        let len = usize::try_from(len).map_err(|_| err(at - 4, "negative element length"))?;
        let e = b
            .get(at..at + len)
            .ok_or_else(|| err(at, "truncated element"))?;
        elements.push(Some(e));
        at += len;
    }
    if at != b.len() {
        return Err(err(at, "trailing bytes"));
    }
    Ok(BinaryArray { dims, elements })
}

/// `[l:u][l:u]` of the dimensions.
pub(crate) fn decoration(dims: &[Dim]) -> String {
    dims.iter()
        .map(|d| format!("[{}:{}]", d.lower, d.lower as i64 + d.len as i64 - 1))
        .collect()
}

/// The `ArrayDims` marker, when the shape is not a plain 1-based 1-D array.
pub(crate) fn dims_marker(dims: &[Dim]) -> Option<ValueMarker> {
    (dims.len() > 1 || dims.iter().any(|d| d.lower != 1)).then(|| ValueMarker {
        kind: MarkerKind::ArrayDims,
        detail: Some(decoration(dims)),
    })
}

fn needs_quotes(s: &str, delim: u8) -> bool {
    s.is_empty()
        || s.eq_ignore_ascii_case("NULL")
        || s.bytes()
            .any(|b| matches!(b, b'{' | b'}' | b'"' | b'\\') || is_ws(b) || b == delim)
}

/// Renders elements (already text) as `array_out` would.
pub(crate) fn render_text_array(
    dims: &[Dim],
    elements: &[Option<Cow<'_, str>>],
    delim: u8,
) -> String {
    let mut out = String::new();
    // `array_out` decorates only when a lower bound is not 1 (not for every multi-dimensional
    // array, unlike the `ArrayDims` marker).
    if dims.iter().any(|d| d.lower != 1) {
        out.push_str(&decoration(dims));
        out.push('=');
    }
    if dims.is_empty() {
        out.push_str("{}");
        return out;
    }
    let mut idx = 0;
    render_level(&mut out, dims, elements, &mut idx, delim);
    out
}

fn render_level(
    out: &mut String,
    dims: &[Dim],
    elements: &[Option<Cow<'_, str>>],
    idx: &mut usize,
    delim: u8,
) {
    out.push('{');
    let Some((first, rest)) = dims.split_first() else {
        return;
    };
    for k in 0..first.len {
        if k > 0 {
            out.push(delim as char);
        }
        if rest.is_empty() {
            match elements.get(*idx) {
                Some(Some(e)) if needs_quotes(e, delim) => {
                    out.push('"');
                    for c in e.chars() {
                        if c == '"' || c == '\\' {
                            out.push('\\');
                        }
                        out.push(c);
                    }
                    out.push('"');
                }
                Some(Some(e)) => out.push_str(e),
                _ => out.push_str("NULL"),
            }
            *idx += 1;
        } else {
            render_level(out, rest, elements, idx, delim);
        }
    }
    out.push('}');
}

/// Renders a binary array's text form, each element through `render`.
pub(crate) fn render_binary_array_text<'b>(
    arr: &BinaryArray<'b>,
    delim: u8,
    render: impl Fn(&'b [u8]) -> Result<Cow<'b, str>, ValueError>,
) -> Result<String, ValueError> {
    let texts = arr
        .elements
        .iter()
        .map(|e| e.map(&render).transpose())
        .collect::<Result<Vec<_>, _>>()?;
    Ok(render_text_array(&arr.dims, &texts, delim))
}
