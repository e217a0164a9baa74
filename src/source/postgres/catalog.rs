//! Catalog lookup for one relation: columns with resolved types, primary key, replica identity.
//!
//! pgoutput's Relation message carries column names, type OIDs and typmods, but not domains'
//! base types, enum labels, nullability or the primary key. The engine needs those to pick
//! Arrow types and Debezium schemas, so it asks here once per relation OID (and again after a
//! new Relation message, i.e. a schema change) and caches the answer.
//!
//! One query per relation. Domains are resolved through `pg_type.typbasetype` recursively
//! (domains over domains); arrays are recognised by `typlen = -1 AND typelem <> 0` (fixed-size
//! "arrays" such as `name` or `point` also have a `typelem` but are not arrays), and their
//! element type is resolved the same way, so an array of a domain over an enum ends at the
//! enum, whose labels are returned in `enumsortorder`.
//!
//! User-defined ranges, multiranges and composite types are kept as their text form, but in
//! the binary format (`binary = true`, and the snapshot's binary COPY) their values arrive as
//! `range_send`/`record_send` bytes, which need the types they are made of. When a relation
//! has columns of user-defined types, a second query ([`TYPE_GRAPH_SQL`]) reads every type
//! reachable from them (domain bases, array elements, `pg_range.rngsubtype`, a multirange's
//! range through `pg_range.rngmultitypid`, the live attributes of a composite's `typrelid` in
//! `attnum` order) and [`TypeGraph::source_type`] builds the model type from it
//! ([`CatalogColumn::structured`]).
//!
//! # Traps
//! - `ALTER TYPE ... ADD/DROP ATTRIBUTE` on a composite a table uses changes no table, so no
//!   Relation message follows and the attribute list read here may be stale: the renderer
//!   checks every field's type OID on the wire (`model/src/pg_value/structured.rs`) and a
//!   mismatch it cannot resolve by itself is `ValueError::StaleComposite`, on which the
//!   source reconnects once, which re-reads the catalog (`stream.rs`).

use std::collections::HashMap;

use tidemark_model::{CompositeField, SourceType};
use tokio_postgres::Row;

use super::control::PgControl;
use super::error::PgSourceError;

/// One column of a relation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogColumn {
    pub name: String,
    /// `pg_attribute.attnum` (1-based; gaps where columns were dropped).
    pub attnum: i16,
    /// The declared type (may be a domain).
    pub type_oid: u32,
    pub typmod: i32,
    /// `pg_type.typname` of the declared type (`int4`, `_text`, `mydomain`).
    pub type_name: String,
    /// `format_type(type, typmod)` (`character varying(20)`, `numeric(10,2)`).
    pub formatted_type: String,
    /// The declared type with domains resolved (for an array: the array type itself).
    pub base_type_oid: u32,
    /// Labels when the (element) base type is an enum, in sort order.
    pub enum_labels: Option<Vec<String>>,
    pub is_array: bool,
    /// For arrays: the element type with domains resolved.
    pub element_type_oid: Option<u32>,
    /// `NOT attnotnull`.
    pub nullable: bool,
    /// The column's type when it is a user-defined range, multirange or composite type (or a
    /// domain over one, or an array of one), with everything it is made of resolved.
    pub structured: Option<SourceType>,
}

/// The catalog view of one relation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationCatalog {
    pub oid: u32,
    pub schema: String,
    pub table: String,
    /// Primary key columns in key order; empty without a primary key.
    pub primary_key: Vec<String>,
    /// `d` default (primary key), `n` nothing, `f` full, `i` index.
    pub replica_identity: char,
    /// Live columns in `attnum` order.
    pub columns: Vec<CatalogColumn>,
}

const RELATION_CATALOG_SQL: &str = "
WITH RECURSIVE
cols AS (
  SELECT a.attnum, a.attname::text AS attname, a.atttypid, a.atttypmod, a.attnotnull
  FROM pg_attribute a WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
),
dom(attnum, oid, typtype, typbasetype, depth) AS (
  SELECT c.attnum, t.oid, t.typtype, t.typbasetype, 0 FROM cols c JOIN pg_type t ON t.oid = c.atttypid
  UNION ALL
  SELECT d.attnum, t.oid, t.typtype, t.typbasetype, d.depth + 1
  FROM dom d JOIN pg_type t ON t.oid = d.typbasetype WHERE d.typtype = 'd' AND d.depth < 32
),
base AS (SELECT attnum, oid AS base_oid FROM dom WHERE typtype <> 'd'),
elem(attnum, oid, typtype, typbasetype, depth) AS (
  SELECT b.attnum, e.oid, e.typtype, e.typbasetype, 0
  FROM base b JOIN pg_type bt ON bt.oid = b.base_oid JOIN pg_type e ON e.oid = bt.typelem
  WHERE bt.typlen = -1 AND bt.typelem <> 0
  UNION ALL
  SELECT x.attnum, t.oid, t.typtype, t.typbasetype, x.depth + 1
  FROM elem x JOIN pg_type t ON t.oid = x.typbasetype WHERE x.typtype = 'd' AND x.depth < 32
),
elem_base AS (SELECT attnum, oid AS elem_oid FROM elem WHERE typtype <> 'd')
SELECT n.nspname::text, c.relname::text, c.relreplident::text,
       ARRAY(SELECT a.attname::text
             FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             WHERE i.indrelid = c.oid AND i.indisprimary ORDER BY k.ord) AS pk,
       col.attname, col.attnum, col.atttypid, col.atttypmod, t.typname::text,
       format_type(col.atttypid, col.atttypmod), NOT col.attnotnull,
       b.base_oid, eb.elem_oid,
       (SELECT array_agg(e.enumlabel::text ORDER BY e.enumsortorder) FROM pg_enum e
        WHERE e.enumtypid = coalesce(eb.elem_oid, b.base_oid)) AS labels
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN cols col ON true
LEFT JOIN pg_type t ON t.oid = col.atttypid
LEFT JOIN base b ON b.attnum = col.attnum
LEFT JOIN elem_base eb ON eb.attnum = col.attnum
WHERE c.oid = $1
ORDER BY col.attnum";

impl PgControl {
    /// Looks up relation `oid` (the `Relation` message's OID). Errors with a definite
    /// `Server`-like error when the relation does not exist (dropped since the change).
    pub async fn relation_catalog(&self, oid: u32) -> Result<RelationCatalog, PgSourceError> {
        let q = |e| PgSourceError::control(self.at(), "relation_catalog", e);
        let rows = self
            .client
            .query(RELATION_CATALOG_SQL, &[&oid])
            .await
            .map_err(q)?;
        let first = rows.first().ok_or_else(|| PgSourceError::Protocol {
            at: self.at().clone(),
            message: format!("relation with OID {oid} not found in pg_class (dropped?)"),
        })?;
        let replident: String = first.try_get(2).map_err(q)?;
        let mut catalog = RelationCatalog {
            oid,
            schema: first.try_get(0).map_err(q)?,
            table: first.try_get(1).map_err(q)?,
            primary_key: first.try_get(3).map_err(q)?,
            replica_identity: replident.chars().next().unwrap_or('d'),
            columns: Vec::with_capacity(rows.len()),
        };
        for row in &rows {
            // A relation without columns yields one row with NULL column fields.
            if let Some(col) = column_from_row(row).map_err(q)? {
                catalog.columns.push(col);
            }
        }
        let user_types: Vec<u32> = catalog
            .columns
            .iter()
            .map(|c| c.type_oid)
            .filter(|&o| o >= FIRST_NORMAL_OID)
            .collect();
        if !user_types.is_empty() {
            let graph = self.type_graph(&user_types).await?;
            for c in &mut catalog.columns {
                let t = graph.source_type(c.type_oid, c.typmod, 0);
                if t.as_ref().is_some_and(SourceType::is_structured) {
                    c.structured = t;
                }
            }
        }
        Ok(catalog)
    }

    /// Every type reachable from `roots` (module doc).
    pub async fn type_graph(&self, roots: &[u32]) -> Result<TypeGraph, PgSourceError> {
        let q = |e| PgSourceError::control(self.at(), "type_graph", e);
        let rows = self
            .client
            .query(TYPE_GRAPH_SQL, &[&roots])
            .await
            .map_err(q)?;
        let mut types = HashMap::with_capacity(rows.len());
        for row in &rows {
            let t = type_from_row(row).map_err(q)?;
            types.insert(t.oid, t);
        }
        Ok(TypeGraph { types })
    }
}

/// `FirstNormalObjectId`: OIDs below are built in (`pg_types` knows the ones it maps).
const FIRST_NORMAL_OID: u32 = 16_384;

/// Nesting limit of user-defined types (domains over composites of ranges ...): the catalog
/// cannot express cycles (a composite cannot contain itself), this only bounds the work.
const MAX_TYPE_DEPTH: usize = 32;

const TYPE_GRAPH_SQL: &str = "
WITH RECURSIVE reach(oid, depth) AS (
  SELECT r, 0 FROM unnest($1::oid[]) AS r
  UNION ALL
  SELECT x.child, r.depth + 1
  FROM reach r JOIN pg_type t ON t.oid = r.oid
  CROSS JOIN LATERAL (
    SELECT t.typbasetype WHERE t.typtype = 'd'
    UNION ALL SELECT t.typelem WHERE t.typlen = -1 AND t.typelem <> 0
    UNION ALL SELECT g.rngsubtype FROM pg_range g WHERE g.rngtypid = t.oid
    UNION ALL SELECT g.rngtypid FROM pg_range g WHERE g.rngmultitypid = t.oid
    UNION ALL SELECT a.atttypid FROM pg_attribute a
      WHERE t.typtype = 'c' AND a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped
  ) x(child)
  WHERE r.depth < 32 AND r.oid >= 16384
),
attrs AS (
  SELECT t.oid,
         array_agg(a.attname::text ORDER BY a.attnum) AS names,
         array_agg(a.atttypid ORDER BY a.attnum) AS types,
         array_agg(a.atttypmod ORDER BY a.attnum) AS typmods,
         array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum) AS formatted
  FROM pg_type t JOIN pg_attribute a ON a.attrelid = t.typrelid
  WHERE t.typtype = 'c' AND a.attnum > 0 AND NOT a.attisdropped
    AND t.oid IN (SELECT oid FROM reach)
  GROUP BY t.oid
)
SELECT t.oid, n.nspname::text, t.typname::text, t.typtype::text, t.typbasetype, t.typtypmod,
       CASE WHEN t.typlen = -1 AND t.typelem <> 0 THEN t.typelem END,
       g.rngsubtype, m.rngtypid,
       (SELECT array_agg(e.enumlabel::text ORDER BY e.enumsortorder) FROM pg_enum e
        WHERE e.enumtypid = t.oid),
       at.names, at.types, at.typmods, at.formatted
FROM (SELECT DISTINCT oid FROM reach WHERE oid >= 16384) r
JOIN pg_type t ON t.oid = r.oid
JOIN pg_namespace n ON n.oid = t.typnamespace
LEFT JOIN pg_range g ON g.rngtypid = t.oid
LEFT JOIN pg_range m ON m.rngmultitypid = t.oid
LEFT JOIN attrs at ON at.oid = t.oid";

/// One user-defined type of a [`TypeGraph`].
#[derive(Debug, Clone)]
struct TypeInfo {
    oid: u32,
    /// `schema.name`, as pgoutput's Type message names a type.
    qualified: String,
    typtype: char,
    /// A domain's base type and `typtypmod`.
    base: u32,
    base_typmod: i32,
    /// An array's element type.
    element: Option<u32>,
    range_subtype: Option<u32>,
    /// A multirange's range type.
    multirange_of: Option<u32>,
    labels: Option<Vec<String>>,
    /// A composite's live attributes: name, type OID, typmod, `format_type()`.
    attributes: Vec<(String, u32, i32, String)>,
}

fn type_from_row(row: &Row) -> Result<TypeInfo, tokio_postgres::Error> {
    let namespace: String = row.try_get(1)?;
    let name: String = row.try_get(2)?;
    let typtype: String = row.try_get(3)?;
    let names: Option<Vec<String>> = row.try_get(10)?;
    let types: Option<Vec<u32>> = row.try_get(11)?;
    let typmods: Option<Vec<i32>> = row.try_get(12)?;
    let formatted: Option<Vec<String>> = row.try_get(13)?;
    let attributes = names
        .unwrap_or_default()
        .into_iter()
        .zip(types.unwrap_or_default())
        .zip(typmods.unwrap_or_default())
        .zip(formatted.unwrap_or_default())
        .map(|(((n, t), m), f)| (n, t, m, f))
        .collect();
    Ok(TypeInfo {
        oid: row.try_get(0)?,
        qualified: format!("{namespace}.{name}"),
        typtype: typtype.chars().next().unwrap_or('b'),
        base: row.try_get(4)?,
        base_typmod: row.try_get(5)?,
        element: row.try_get(6)?,
        range_subtype: row.try_get(7)?,
        multirange_of: row.try_get(8)?,
        labels: row.try_get(9)?,
        attributes,
    })
}

/// The user-defined types reachable from a relation's columns (module doc).
#[derive(Debug, Clone, Default)]
pub struct TypeGraph {
    types: HashMap<u32, TypeInfo>,
}

impl TypeGraph {
    /// The model type of `oid` (with `typmod`): builtins from the builtin table, domains as
    /// their base type, enums with labels, structured types with what they are made of.
    /// `None` for a type the graph does not hold (a builtin the model does not know, or a
    /// type dropped since).
    pub fn source_type(&self, oid: u32, typmod: i32, depth: usize) -> Option<SourceType> {
        if let Some(t) = SourceType::pg_builtin(oid, typmod) {
            return Some(t);
        }
        let info = self.types.get(&oid)?;
        if depth > MAX_TYPE_DEPTH {
            return Some(SourceType::pg_other(oid, info.qualified.clone(), typmod));
        }
        let next = depth + 1;
        let t = match info.typtype {
            'd' => {
                // A domain column's typmod is -1; the domain's own typtypmod applies.
                let m = if typmod >= 0 {
                    typmod
                } else {
                    info.base_typmod
                };
                return self.source_type(info.base, m, next);
            }
            'e' => SourceType::pg_enum(
                oid,
                info.qualified.clone(),
                info.labels.clone().unwrap_or_default(),
            ),
            'r' => {
                let sub = self.source_type(info.range_subtype?, -1, next)?;
                SourceType::pg_range(oid, info.qualified.clone(), sub)
            }
            'm' => {
                let range = self.types.get(&info.multirange_of?)?;
                let sub = self.source_type(range.range_subtype?, -1, next)?;
                SourceType::pg_multirange(oid, info.qualified.clone(), sub)
            }
            'c' => {
                let mut fields = Vec::with_capacity(info.attributes.len());
                for (name, type_oid, m, formatted) in &info.attributes {
                    // Unknown to the model: kept by name, so that an error can say which.
                    let source_type = self
                        .source_type(*type_oid, *m, next)
                        .unwrap_or_else(|| SourceType::pg_other(*type_oid, formatted, *m));
                    fields.push(CompositeField {
                        name: name.clone(),
                        type_oid: *type_oid,
                        source_type,
                    });
                }
                SourceType::pg_composite(oid, info.qualified.clone(), fields)
            }
            _ => match info.element {
                Some(e) => {
                    let element = self.source_type(e, typmod, next)?;
                    if element.is_structured() {
                        SourceType::pg_structured_array(oid, info.qualified.clone(), element)
                    } else {
                        SourceType::pg_array(oid, info.qualified.clone(), element)
                    }
                }
                None => SourceType::pg_other(oid, info.qualified.clone(), typmod),
            },
        };
        Some(t)
    }
}

fn column_from_row(row: &Row) -> Result<Option<CatalogColumn>, tokio_postgres::Error> {
    let Some(name) = row.try_get::<_, Option<String>>(4)? else {
        return Ok(None);
    };
    let type_oid: u32 = row.try_get(6)?;
    let element: Option<u32> = row.try_get(12)?;
    Ok(Some(CatalogColumn {
        name,
        attnum: row.try_get(5)?,
        type_oid,
        typmod: row.try_get(7)?,
        type_name: row.try_get(8)?,
        formatted_type: row.try_get(9)?,
        nullable: row.try_get(10)?,
        base_type_oid: row.try_get::<_, Option<u32>>(11)?.unwrap_or(type_oid),
        is_array: element.is_some(),
        element_type_oid: element,
        enum_labels: row.try_get(13)?,
        structured: None,
    }))
}
