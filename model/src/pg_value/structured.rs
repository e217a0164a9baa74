//! User-defined ranges, multiranges and composite types, and arrays of them: their binary
//! (send) forms rendered as the server's text (`range_out`, `multirange_out`, `record_out`,
//! `array_out`), with the types they are made of from the catalog
//! ([`TypeStructure`], filled in by the source from `pg_range` and `pg_attribute`).
//!
//! These columns are Utf8 and keep the server's text in the text format; in the binary format
//! the same text is rebuilt here, recursively: each bound, field or element through the
//! renderer of its own type (builtins through [`binary::render_text`]).
//!
//! `record_send`: int32 count of live attributes, then per attribute its declared type OID
//! (u32; a domain's own OID), an int32 length (-1 = NULL) and the bytes. `record_out`: `(a,b)`,
//! NULL as nothing (`(,b)`), a value double-quoted when it is empty or contains `"` `\` `(` `)`
//! `,` or white space, with `"` and `\` doubled inside the quotes.
//!
//! # Traps
//! - **Stale attribute lists.** `ALTER TYPE ... ADD/DROP ATTRIBUTE` is allowed while a table
//!   column uses the type, and pgoutput sends no Relation message for it (the table did not
//!   change), so the catalog's attribute list may be older or newer than the value's. Each
//!   field's wire OID decides: the catalog's type is used where its attribute at that place
//!   has that OID; another builtin OID renders by itself (a builtin needs no catalog); a user
//!   type is looked up by OID among the attributes of the whole column type; anything else
//!   is [`ValueError::StaleComposite`] (the source then re-reads the catalog once), never a
//!   guess. Same OID means same rendering: a domain's base, a range's subtype and an enum's
//!   binary form (its label) cannot change, and a nested composite is checked field by field
//!   the same way.
//! - Dropped attributes are neither in the catalog list nor in `record_send`'s output.
//! - Error offsets are relative to the column's whole value, also inside nested values.

use std::borrow::Cow;

use super::{array, binary, range, Kind};
use crate::error::ValueError;
use crate::pg_types::oid;
use crate::table::{CompositeField, SourceType, TypeStructure};

/// Whether [`render`] can render every value of `t` (every type it is made of has a binary
/// renderer).
pub(crate) fn supported(t: &SourceType) -> bool {
    if let Some(s) = &t.structure {
        return match &**s {
            TypeStructure::Range { subtype } | TypeStructure::Multirange { subtype } => {
                supported(subtype)
            }
            TypeStructure::Composite { fields } => fields.iter().all(|f| supported(&f.source_type)),
            TypeStructure::Array { element } => supported(element),
        };
    }
    match &t.element {
        Some(e) => supported(e),
        None => Kind::of(t) != Kind::Other,
    }
}

/// The server's text form of a value of `t` given in its binary form.
pub(crate) fn render(t: &SourceType, b: &[u8]) -> Result<String, ValueError> {
    render_in(t, b, t)
}

/// `t`'s text inside the column type `root` (where a stale composite looks for types).
fn render_in(t: &SourceType, b: &[u8], root: &SourceType) -> Result<String, ValueError> {
    let mut out = String::with_capacity(b.len() * 2);
    push(&mut out, t, b, root)?;
    Ok(out)
}

fn push(out: &mut String, t: &SourceType, b: &[u8], root: &SourceType) -> Result<(), ValueError> {
    if let Some(s) = &t.structure {
        return match &**s {
            TypeStructure::Range { subtype } => {
                range::push_range(out, b, "range", &|v| render_in(subtype, v, root))
            }
            TypeStructure::Multirange { subtype } => {
                range::push_multirange(out, b, "multirange", &|v| render_in(subtype, v, root))
            }
            TypeStructure::Composite { fields } => push_record(out, t, fields, b, root),
            TypeStructure::Array { element } => push_array(out, element, b, root),
        };
    }
    if let Some(e) = &t.element {
        return push_array(out, e, b, root);
    }
    let kind = Kind::of(t);
    match binary::render_text(kind, b) {
        Ok(s) => {
            out.push_str(&s);
            Ok(())
        }
        Err(ValueError::BinaryUnsupported { .. }) => Err(ValueError::BinaryUnsupported {
            type_name: t.display.clone(),
        }),
        Err(e) => Err(e),
    }
}

fn push_array(
    out: &mut String,
    element: &SourceType,
    b: &[u8],
    root: &SourceType,
) -> Result<(), ValueError> {
    let arr = array::parse_binary_array(b)?;
    // `box` is the one type whose array delimiter is not a comma (pg_types traps).
    let delim = if element.oid == oid::BOX { b';' } else { b',' };
    let base = b.as_ptr() as usize;
    let text = array::render_binary_array_text(&arr, delim, |v| {
        // The element's offset in `b`, for errors (elements are subslices of `b`).
        let at = (v.as_ptr() as usize).saturating_sub(base);
        render_in(element, v, root)
            .map(Cow::Owned)
            .map_err(|e| range::shift_offset(e, at))
    })?;
    out.push_str(&text);
    Ok(())
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn err(&self, reason: &'static str) -> ValueError {
        ValueError::InvalidBinary {
            type_name: "record",
            offset: self.at,
            reason,
        }
    }

    fn word(&mut self) -> Result<[u8; 4], ValueError> {
        let w = self
            .b
            .get(self.at..self.at + 4)
            .map(|s| [s[0], s[1], s[2], s[3]])
            .ok_or_else(|| self.err("truncated"))?;
        self.at += 4;
        Ok(w)
    }
}

/// `record_out` of a `record_send` value (module doc).
fn push_record(
    out: &mut String,
    t: &SourceType,
    fields: &[CompositeField],
    b: &[u8],
    root: &SourceType,
) -> Result<(), ValueError> {
    let mut r = Reader { b, at: 0 };
    let n = i32::from_be_bytes(r.word()?);
    let n = usize::try_from(n).map_err(|_| ValueError::InvalidBinary {
        type_name: "record",
        offset: 0,
        reason: "negative field count",
    })?;
    out.push('(');
    for i in 0..n {
        if i > 0 {
            out.push(',');
        }
        let wire_oid = u32::from_be_bytes(r.word()?);
        let len_at = r.at;
        let len = i32::from_be_bytes(r.word()?);
        if len == -1 {
            continue;
        }
        let len = usize::try_from(len).map_err(|_| ValueError::InvalidBinary {
            type_name: "record",
            offset: len_at,
            reason: "negative field length",
        })?;
        let at = r.at;
        let v = b
            .get(at..at.saturating_add(len))
            .ok_or_else(|| r.err("truncated field"))?;
        r.at += len;
        let field_type = field_type(t, fields, i, wire_oid, root)?;
        let text = render_in(&field_type, v, root).map_err(|e| range::shift_offset(e, at))?;
        push_field(out, &text);
    }
    out.push(')');
    if r.at != b.len() {
        return Err(r.err("trailing bytes"));
    }
    Ok(())
}

/// The type to render field `i` with (trap "stale attribute lists"): the catalog's attribute
/// at that place if its OID is the wire's, else the builtin of that OID, else any attribute of
/// that OID anywhere in the column's type (an attribute moved by a DROP ATTRIBUTE, or added
/// with a type the column already uses).
fn field_type<'a>(
    t: &SourceType,
    fields: &'a [CompositeField],
    i: usize,
    wire_oid: u32,
    root: &'a SourceType,
) -> Result<Cow<'a, SourceType>, ValueError> {
    if let Some(f) = fields.get(i).filter(|f| f.type_oid == wire_oid) {
        return Ok(Cow::Borrowed(&f.source_type));
    }
    if let Some(builtin) = SourceType::pg_builtin(wire_oid, -1) {
        return Ok(Cow::Owned(builtin));
    }
    if let Some(found) = find_field_type(root, wire_oid, 0) {
        return Ok(Cow::Borrowed(found));
    }
    Err(ValueError::StaleComposite {
        type_name: t.display.clone(),
        field: i,
        wire_oid,
        expected: match fields.get(i) {
            Some(f) => format!("{} (oid {})", f.name, f.type_oid),
            None => "no attribute".into(),
        },
    })
}

/// A composite attribute's type declared as `type_oid` anywhere inside `t`.
fn find_field_type(t: &SourceType, type_oid: u32, depth: usize) -> Option<&SourceType> {
    // The catalog bounds the nesting (catalog.rs `MAX_TYPE_DEPTH`); so does this.
    if depth > 64 {
        return None;
    }
    let next = depth + 1;
    if let Some(e) = &t.element {
        return find_field_type(e, type_oid, next);
    }
    match t.structure.as_deref()? {
        TypeStructure::Range { subtype } | TypeStructure::Multirange { subtype } => {
            find_field_type(subtype, type_oid, next)
        }
        TypeStructure::Array { element } => find_field_type(element, type_oid, next),
        TypeStructure::Composite { fields } => fields.iter().find_map(|f| {
            if f.type_oid == type_oid {
                Some(&f.source_type)
            } else {
                find_field_type(&f.source_type, type_oid, next)
            }
        }),
    }
}

/// `record_out`'s quoting of one non-NULL field.
fn push_field(out: &mut String, v: &str) {
    range::push_quoted(out, v, b"\"\\(),");
}
