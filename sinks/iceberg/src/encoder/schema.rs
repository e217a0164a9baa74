//! Source columns → Iceberg schema, and schema evolution that keeps field ids.
//!
//! An Iceberg field is identified by its id, never its name: data files store ids, so a
//! renamed column keeps reading its old files and a dropped-then-re-added column does not.
//!
//! # Traps
//! - The model has column *names* only. A rename is recognised when a column disappears and a
//!   new one appears at the same ordinal with the same type (Postgres `RENAME COLUMN` keeps the
//!   ordinal); anything else is a drop plus an add (new field id, old values not visible).
//! - Identifier fields (the primary key) must be required in Iceberg and cannot be
//!   float/double; such a key column is still used by the sink's index but not declared.
//! - Widening follows the Iceberg spec only: int → long, float → double, decimal(P,S) →
//!   decimal(P',S) with P' > P. Everything else is a definite error naming table and column.

use std::sync::Arc;

use arrow_schema::DataType;
use iceberg::spec::{
    ListType, NestedField, NestedFieldRef, NullOrder, PrimitiveType, Schema, SortDirection,
    SortField, SortOrder, Transform, Type, UnboundPartitionSpec,
};
use tidemark_model::{Column, TableSchema};

use crate::error::IcebergError;

/// Changelog system columns, in order.
pub const CHANGELOG_OP: &str = "_op";
pub const CHANGELOG_POSITION: &str = "_position";
pub const CHANGELOG_TXID: &str = "_txid";
pub const CHANGELOG_COMMIT_TS: &str = "_commit_ts";
/// Names of the columns the source did not send (unchanged TOAST); null when none.
pub const CHANGELOG_UNCHANGED: &str = "_unchanged";
/// Every changelog system column.
pub const CHANGELOG_SYSTEM: [&str; 5] = [
    CHANGELOG_OP,
    CHANGELOG_POSITION,
    CHANGELOG_TXID,
    CHANGELOG_COMMIT_TS,
    CHANGELOG_UNCHANGED,
];

/// The Iceberg type of an Arrow image column, fresh nested ids from `next_id`.
pub fn iceberg_type(dt: &DataType, is_uuid: bool, next_id: &mut i32) -> Result<Type, String> {
    use PrimitiveType as P;
    let p = |t: PrimitiveType| Ok(Type::Primitive(t));
    match dt {
        DataType::Boolean => p(P::Boolean),
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::UInt8 | DataType::UInt16 => {
            p(P::Int)
        }
        DataType::Int64 | DataType::UInt32 => p(P::Long),
        DataType::UInt64 => p(P::Decimal {
            precision: 20,
            scale: 0,
        }),
        DataType::Float16 | DataType::Float32 => p(P::Float),
        DataType::Float64 => p(P::Double),
        DataType::Decimal128(pr, s) if *s >= 0 => p(P::Decimal {
            precision: *pr as u32,
            scale: *s as u32,
        }),
        DataType::Decimal256(pr, s) if *pr <= 38 && *s >= 0 => p(P::Decimal {
            precision: *pr as u32,
            scale: *s as u32,
        }),
        // Iceberg decimals stop at 38 digits; the exact text keeps every digit.
        DataType::Decimal256(..) => p(P::String),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => p(P::String),
        // Iceberg has no interval type: the text form (see docs/iceberg.md).
        DataType::Interval(_) => p(P::String),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => p(P::Binary),
        DataType::FixedSizeBinary(16) if is_uuid => p(P::Uuid),
        DataType::FixedSizeBinary(n) => p(P::Fixed(*n as u64)),
        DataType::Date32 | DataType::Date64 => p(P::Date),
        DataType::Time32(_) | DataType::Time64(_) => p(P::Time),
        DataType::Timestamp(_, None) => p(P::Timestamp),
        DataType::Timestamp(_, Some(_)) => p(P::Timestamptz),
        DataType::Duration(_) => p(P::Long),
        DataType::List(f) | DataType::LargeList(f) => {
            let id = *next_id;
            *next_id += 1;
            let inner = iceberg_type(f.data_type(), false, next_id)?;
            Ok(Type::List(ListType::new(Arc::new(
                NestedField::list_element(id, inner, false),
            ))))
        }
        other => Err(format!("Arrow type {other} has no Iceberg equivalent")),
    }
}

fn is_uuid(c: &Column) -> bool {
    c.image_field()
        .metadata()
        .get(tidemark_model::table::META_EXTENSION_NAME)
        .is_some_and(|v| v == "arrow.uuid")
}

/// Whether two types have the same shape (ignoring nested ids).
fn same_shape(a: &Type, b: &Type) -> bool {
    match (a, b) {
        (Type::Primitive(x), Type::Primitive(y)) => x == y,
        (Type::List(x), Type::List(y)) => {
            same_shape(&x.element_field.field_type, &y.element_field.field_type)
        }
        _ => false,
    }
}

/// Whether Iceberg allows promoting `from` to `to`.
fn promotable(from: &Type, to: &Type) -> bool {
    use PrimitiveType as P;
    match (from, to) {
        (Type::Primitive(P::Int), Type::Primitive(P::Long))
        | (Type::Primitive(P::Float), Type::Primitive(P::Double)) => true,
        (
            Type::Primitive(P::Decimal {
                precision: p1,
                scale: s1,
            }),
            Type::Primitive(P::Decimal {
                precision: p2,
                scale: s2,
            }),
        ) => s1 == s2 && p2 >= p1,
        _ => false,
    }
}

fn identifier_ok(t: &Type) -> bool {
    !matches!(
        t,
        Type::Primitive(PrimitiveType::Float | PrimitiveType::Double) | Type::List(_)
    )
}

/// What [`evolve`] decided.
#[derive(Debug)]
pub struct Evolved {
    /// The new schema (schema id not yet assigned: 0); `None` when nothing changed.
    pub schema: Option<Schema>,
    /// Field id of every source column, in source order.
    pub field_ids: Vec<i32>,
}

/// Builds the schema of a new table (`changelog`: with the system columns first).
pub fn initial_schema(
    ts: &TableSchema,
    changelog: bool,
) -> Result<(Schema, Vec<i32>), IcebergError> {
    let mut next = 1;
    let mut fields: Vec<NestedFieldRef> = Vec::new();
    let mut unchanged_slot = None;
    if changelog {
        for (name, t, required) in [
            (CHANGELOG_OP, PrimitiveType::String, true),
            (CHANGELOG_POSITION, PrimitiveType::String, true),
            (CHANGELOG_TXID, PrimitiveType::Long, false),
            (CHANGELOG_COMMIT_TS, PrimitiveType::Timestamptz, false),
        ] {
            let f = if required {
                NestedField::required(next, name, Type::Primitive(t))
            } else {
                NestedField::optional(next, name, Type::Primitive(t))
            };
            next += 1;
            fields.push(Arc::new(f));
        }
        unchanged_slot = Some(next);
        next += 1;
    }
    // Top-level ids first (as Iceberg's own writers do), nested ids after them.
    let top_start = next;
    next += ts.columns.len() as i32;
    let mut ids = Vec::new();
    let mut identifier = Vec::new();
    for (i, c) in ts.columns.iter().enumerate() {
        let id = top_start + i as i32;
        let t = iceberg_type(&c.data_type, is_uuid(c), &mut next)
            .map_err(|e| IcebergError::unsupported(&ts.table, &c.name, e))?;
        let key = !changelog && c.key && identifier_ok(&t);
        let f = if key {
            identifier.push(id);
            NestedField::required(id, &c.name, t)
        } else {
            NestedField::optional(id, &c.name, t)
        };
        fields.push(Arc::new(f));
        ids.push(id);
    }
    if let Some(id) = unchanged_slot {
        let element = Arc::new(NestedField::list_element(
            next,
            Type::Primitive(PrimitiveType::String),
            true,
        ));
        fields.insert(
            4,
            Arc::new(NestedField::optional(
                id,
                CHANGELOG_UNCHANGED,
                Type::List(ListType::new(element)),
            )),
        );
    }
    let schema = Schema::builder()
        .with_fields(fields)
        .with_identifier_field_ids(identifier)
        .build()
        .map_err(|e| IcebergError::schema(&ts.table, e.to_string()))?;
    Ok((schema, ids))
}

/// Maps a new source schema onto the table's current Iceberg schema.
///
/// `previous` is the source schema the sink saw last for this table (to recognise renames);
/// `last_column_id` the table metadata's highest id ever assigned.
pub fn evolve(
    current: &Schema,
    previous: Option<&TableSchema>,
    ts: &TableSchema,
    changelog: bool,
    last_column_id: i32,
) -> Result<Evolved, IcebergError> {
    let mut next = last_column_id.max(current.highest_field_id()) + 1;
    let system: Vec<NestedFieldRef> = if changelog {
        CHANGELOG_SYSTEM
            .iter()
            .filter_map(|n| current.field_by_name(n).cloned())
            .collect()
    } else {
        Vec::new()
    };
    let mut fields = system.clone();
    let mut ids = Vec::new();
    let mut changed = false;
    let mut identifier = Vec::new();
    for (i, c) in ts.columns.iter().enumerate() {
        let mut scratch = 1_000_000_000;
        let wanted = iceberg_type(&c.data_type, is_uuid(c), &mut scratch)
            .map_err(|e| IcebergError::unsupported(&ts.table, &c.name, e))?;
        let existing = current.field_by_name(&c.name).cloned().or_else(|| {
            // A rename: same ordinal, old name gone from the new columns, same type.
            let prev = previous?.columns.get(i)?;
            if ts.column_index(&prev.name).is_some() || prev.data_type != c.data_type {
                return None;
            }
            current.field_by_name(&prev.name).cloned()
        });
        let field: NestedFieldRef = match existing {
            Some(f) if same_shape(&f.field_type, &wanted) => {
                if f.name != c.name {
                    changed = true;
                    let mut g = (*f).clone();
                    g.name = c.name.clone();
                    Arc::new(g)
                } else {
                    f
                }
            }
            Some(f) if promotable(&f.field_type, &wanted) => {
                changed = true;
                let mut g = (*f).clone();
                g.name = c.name.clone();
                g.field_type = Box::new(wanted.clone());
                Arc::new(g)
            }
            Some(f) => {
                return Err(IcebergError::schema(
                    &ts.table,
                    format!(
                        "column {}: type change {} → {} ({}) cannot be expressed in Iceberg \
                         (allowed: int→long, float→double, decimal precision widening)",
                        c.name, f.field_type, wanted, c.source_type.display
                    ),
                ))
            }
            None => {
                changed = true;
                let id = next;
                next += 1;
                let t = iceberg_type(&c.data_type, is_uuid(c), &mut next)
                    .map_err(|e| IcebergError::unsupported(&ts.table, &c.name, e))?;
                Arc::new(NestedField::optional(id, &c.name, t))
            }
        };
        if !changelog && c.key && field.required && identifier_ok(&field.field_type) {
            identifier.push(field.id);
        }
        ids.push(field.id);
        fields.push(field);
    }
    if fields.len() != current.as_struct().fields().len() {
        changed = true; // a dropped column
    }
    let old_ident: Vec<i32> = current.identifier_field_ids().collect();
    if old_ident != identifier {
        changed = true;
    }
    let schema = if changed {
        Some(
            Schema::builder()
                .with_fields(fields)
                .with_identifier_field_ids(identifier)
                .build()
                .map_err(|e| IcebergError::schema(&ts.table, e.to_string()))?,
        )
    } else {
        None
    };
    Ok(Evolved {
        schema,
        field_ids: ids,
    })
}

/// Parses `col`, `day(col)`, `bucket(16, col)`, `truncate(4, col)` into (transform, column).
pub fn parse_partition_field(s: &str) -> Result<(Transform, String), String> {
    let s = s.trim();
    let Some((func, rest)) = s.split_once('(') else {
        if s.is_empty() || s.contains([' ', ',', ')']) {
            return Err(format!("{s:?} is not a column or transform(column)"));
        }
        return Ok((Transform::Identity, s.to_owned()));
    };
    let args = rest
        .strip_suffix(')')
        .ok_or_else(|| format!("{s:?}: missing ')'"))?;
    let parts: Vec<&str> = args.split(',').map(str::trim).collect();
    let col = |p: &str| -> Result<String, String> {
        if p.is_empty() {
            Err(format!("{s:?}: missing column"))
        } else {
            Ok(p.to_owned())
        }
    };
    let num = |p: &str| -> Result<u32, String> {
        p.parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{s:?}: {p:?} is not a positive number"))
    };
    match (func.trim(), parts.as_slice()) {
        ("year", [c]) => Ok((Transform::Year, col(c)?)),
        ("month", [c]) => Ok((Transform::Month, col(c)?)),
        ("day", [c]) => Ok((Transform::Day, col(c)?)),
        ("hour", [c]) => Ok((Transform::Hour, col(c)?)),
        ("identity", [c]) => Ok((Transform::Identity, col(c)?)),
        ("bucket", [n, c]) => Ok((Transform::Bucket(num(n)?), col(c)?)),
        ("truncate", [n, c]) => Ok((Transform::Truncate(num(n)?), col(c)?)),
        _ => Err(format!(
            "{s:?}: expected col, year(col), month(col), day(col), hour(col), bucket(N, col) or truncate(W, col)"
        )),
    }
}

/// Parses `col [asc|desc] [nulls first|nulls last]`.
pub fn parse_sort_field(s: &str) -> Result<(String, SortDirection, NullOrder), String> {
    let words: Vec<String> = s
        .split_whitespace()
        .map(|w| w.to_ascii_lowercase())
        .collect();
    let orig: Vec<&str> = s.split_whitespace().collect();
    let (col, rest) = orig
        .split_first()
        .ok_or_else(|| "empty sort field".to_string())?;
    let rest_l = &words[1..];
    let dir = match rest_l.first().map(String::as_str) {
        Some("desc") => SortDirection::Descending,
        Some("asc") | None | Some("nulls") => SortDirection::Ascending,
        Some(w) => return Err(format!("{s:?}: {w:?} is not asc/desc")),
    };
    let nulls_at = rest_l.iter().position(|w| w == "nulls");
    let nulls = match nulls_at.map(|i| rest_l.get(i + 1).map(String::as_str)) {
        None => match dir {
            SortDirection::Ascending => NullOrder::First,
            SortDirection::Descending => NullOrder::Last,
        },
        Some(Some("first")) => NullOrder::First,
        Some(Some("last")) => NullOrder::Last,
        Some(_) => return Err(format!("{s:?}: expected nulls first|last")),
    };
    let expected = match (rest_l.first().map(String::as_str), nulls_at) {
        (Some("asc" | "desc"), Some(_)) => 4,
        (Some("asc" | "desc"), None) => 2,
        (_, Some(_)) => 3,
        (_, None) => 1,
    };
    if rest.len() + 1 != expected {
        return Err(format!("{s:?}: expected col [asc|desc] [nulls first|last]"));
    }
    Ok(((*col).to_owned(), dir, nulls))
}

/// The partition spec of a new table from the configured fields.
pub fn partition_spec(
    schema: &Schema,
    table: &tidemark_model::TableId,
    fields: &[String],
) -> Result<UnboundPartitionSpec, IcebergError> {
    let mut b = UnboundPartitionSpec::builder().with_spec_id(0);
    for f in fields {
        let (t, col) = parse_partition_field(f).map_err(|e| IcebergError::schema(table, e))?;
        let id = schema.field_id_by_name(&col).ok_or_else(|| {
            IcebergError::schema(table, format!("partition column {col} does not exist"))
        })?;
        let name = match t {
            Transform::Identity => col.clone(),
            Transform::Bucket(n) => format!("{col}_bucket_{n}"),
            Transform::Truncate(w) => format!("{col}_trunc_{w}"),
            other => format!("{col}_{other}"),
        };
        b = b
            .add_partition_field(id, name, t)
            .map_err(|e| IcebergError::schema(table, format!("partition {f}: {e}")))?;
    }
    Ok(b.build())
}

/// The sort order of a new table.
pub fn sort_order(
    schema: &Schema,
    table: &tidemark_model::TableId,
    fields: &[String],
) -> Result<Option<SortOrder>, IcebergError> {
    if fields.is_empty() {
        return Ok(None);
    }
    let mut b = SortOrder::builder();
    b.with_order_id(1);
    for f in fields {
        let (col, direction, null_order) =
            parse_sort_field(f).map_err(|e| IcebergError::schema(table, e))?;
        let source_id = schema.field_id_by_name(&col).ok_or_else(|| {
            IcebergError::schema(table, format!("sort column {col} does not exist"))
        })?;
        b.with_sort_field(SortField {
            source_id,
            transform: Transform::Identity,
            direction,
            null_order,
        });
    }
    b.build(schema)
        .map(Some)
        .map_err(|e| IcebergError::schema(table, format!("sort order: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidemark_model::pg_types::oid;
    use tidemark_model::{SourceType, TableId};

    fn col(name: &str, ty: &str, key: bool) -> Column {
        let o = match ty {
            "int4" => oid::INT4,
            "int8" => oid::INT8,
            "text" => oid::TEXT,
            "bool" => oid::BOOL,
            other => panic!("test type {other}"),
        };
        Column::postgres(name, SourceType::pg_builtin(o, -1).unwrap(), !key, key)
    }

    #[test]
    fn evolution_keeps_ids_adds_drops_renames_widens() {
        let t = TableId::new("public", "t");
        let v1 = TableSchema::new(
            t.clone(),
            1,
            vec![
                col("id", "int4", true),
                col("a", "int4", false),
                col("b", "text", false),
            ],
        );
        let (s1, ids1) = initial_schema(&v1, false).unwrap();
        assert_eq!(ids1, vec![1, 2, 3]);
        assert_eq!(s1.identifier_field_ids().collect::<Vec<_>>(), vec![1]);
        // widen a, rename b → c, add d
        let v2 = TableSchema::new(
            t.clone(),
            2,
            vec![
                col("id", "int4", true),
                col("a", "int8", false),
                col("c", "text", false),
                col("d", "bool", false),
            ],
        );
        let e = evolve(&s1, Some(&v1), &v2, false, 3).unwrap();
        assert_eq!(e.field_ids, vec![1, 2, 3, 4]);
        let s2 = e.schema.unwrap();
        assert_eq!(s2.field_by_id(3).unwrap().name, "c");
        assert_eq!(
            *s2.field_by_id(2).unwrap().field_type,
            Type::Primitive(PrimitiveType::Long)
        );
        // drop a
        let v3 = TableSchema::new(
            t.clone(),
            3,
            vec![
                col("id", "int4", true),
                col("c", "text", false),
                col("d", "bool", false),
            ],
        );
        let e = evolve(&s2, Some(&v2), &v3, false, 4).unwrap();
        assert_eq!(e.field_ids, vec![1, 3, 4]);
        // narrowing is an error naming the column
        let v4 = TableSchema::new(
            t,
            4,
            vec![
                col("id", "int4", true),
                col("c", "int4", false),
                col("d", "bool", false),
            ],
        );
        let err = evolve(&e.schema.unwrap(), Some(&v3), &v4, false, 4).unwrap_err();
        assert!(err.to_string().contains("column c"), "{err}");
        assert!(err.to_string().contains("public.t"), "{err}");
    }

    #[test]
    fn partition_and_sort_parse() {
        assert_eq!(
            parse_partition_field("bucket(16, id)").unwrap(),
            (Transform::Bucket(16), "id".into())
        );
        assert_eq!(
            parse_partition_field("day(_commit_ts)").unwrap(),
            (Transform::Day, "_commit_ts".into())
        );
        assert!(parse_partition_field("week(x)").is_err());
        assert!(parse_partition_field("bucket(0, x)").is_err());
        let (c, d, n) = parse_sort_field("id desc nulls first").unwrap();
        assert_eq!(
            (c.as_str(), d, n),
            ("id", SortDirection::Descending, NullOrder::First)
        );
        assert!(parse_sort_field("id sideways").is_err());
    }
}
