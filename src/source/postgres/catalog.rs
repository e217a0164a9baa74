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
        Ok(catalog)
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
    }))
}
