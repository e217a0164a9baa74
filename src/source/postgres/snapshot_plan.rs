//! Planning a Postgres snapshot: which tables, their schema as the stream will see it, the
//! key to cut ranges on, a row estimate, and the range boundaries.
//!
//! Boundaries come from a sample of the key (`TABLESAMPLE SYSTEM`), sorted by the server
//! (so they follow the key's own btree order and collation) and cut into ranges of about
//! `snapshot.range_rows` rows. A range is `key >= lo AND key < hi` with row comparison on a
//! composite key; the first range has no lower bound and the last no upper bound, so every
//! row falls in exactly one range whatever the sample missed.
//!
//! # Traps
//! - Boundaries are key *values* (their text form, cast back to the column's type), never
//!   ctids: a resumed snapshot reads in a new MVCC snapshot where rows may have moved.
//! - `reltuples` is -1 for a table never vacuumed or analyzed (PG 14+): then we count.
//! - A filtered incremental snapshot's estimate is the planner's for the filter
//!   ([`check_filter`], `snapshot/estimate.rs`), not the table's.
//! - A user-given key (`snapshot.key_columns`) must be NOT NULL: a NULL key is in no range.

use std::sync::Arc;

use tidemark_model::{Column, SourceType, TableId, TableSchema};
use tokio_postgres::Client;

use super::catalog::RelationCatalog;
use super::control::PgControl;
use super::error::PgSourceError;
use super::{quote_ident, quote_literal};
use crate::snapshot::ledger::TableProgress;
use crate::snapshot::SnapshotConfig;

/// A table to snapshot, with what readers need.
#[derive(Debug, Clone)]
pub struct PlannedTable {
    pub id: TableId,
    pub schema: Arc<TableSchema>,
    /// Per column: read its binary form (else `::text`).
    pub binary: Vec<bool>,
    /// Key columns' SQL types (`format_type`), for casting boundaries.
    pub key_types: Vec<String>,
    pub progress: TableProgress,
}

/// Why planning failed (definite: a config or schema problem).
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Postgres(#[from] PgSourceError),
    #[error("snapshot of {table}: {message}")]
    Table { table: String, message: String },
}

fn q<'a>(
    at: &'a PgControl,
    what: &'static str,
) -> impl Fn(tokio_postgres::Error) -> PgSourceError + 'a {
    move |e| PgSourceError::control(at.at(), what, e)
}

/// The tables of the publication (or the configured list).
pub async fn tables(
    control: &PgControl,
    publication: &str,
    configured: &[TableId],
) -> Result<Vec<TableId>, PgSourceError> {
    if !configured.is_empty() {
        return Ok(configured.to_vec());
    }
    let rows = control
        .client
        .query(
            "SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1, 2",
            &[&publication],
        )
        .await
        .map_err(q(control, "snapshot tables"))?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(TableId::new(
            r.try_get::<_, String>(0)
                .map_err(q(control, "snapshot tables"))?,
            r.try_get::<_, String>(1)
                .map_err(q(control, "snapshot tables"))?,
        ));
    }
    Ok(out)
}

/// `"schema"."table"`.
pub fn qualified(id: &TableId) -> String {
    format!("{}.{}", quote_ident(&id.namespace), quote_ident(&id.name))
}

/// Schema, key and estimate of `id` (no boundaries yet).
pub async fn describe(
    control: &PgControl,
    id: &TableId,
    cfg: &SnapshotConfig,
) -> Result<PlannedTable, PlanError> {
    let table = id.to_string();
    let terr = |message: String| PlanError::Table {
        table: table.clone(),
        message,
    };
    let row = control
        .client
        .query_opt(
            "SELECT c.oid, c.reltuples::float8 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname = $2",
            &[&id.namespace, &id.name],
        )
        .await
        .map_err(q(control, "snapshot describe"))?
        .ok_or_else(|| terr("the table does not exist".into()))?;
    let oid: u32 = row.try_get(0).map_err(q(control, "snapshot describe"))?;
    let reltuples: f64 = row.try_get(1).map_err(q(control, "snapshot describe"))?;
    let catalog = control.relation_catalog(oid).await?;
    let schema = schema_of(id, &catalog);
    let binary = binary_columns(&schema);
    let key = match cfg.key_columns.get(&table) {
        Some(cols) => {
            for c in cols {
                match catalog.columns.iter().find(|x| &x.name == c) {
                    None => return Err(terr(format!("snapshot.key_columns names {c:?}, which the table does not have"))),
                    Some(x) if x.nullable => {
                        return Err(terr(format!(
                            "snapshot.key_columns column {c:?} is nullable; a key column must be NOT NULL (rows with a NULL key would be in no range)"
                        )))
                    }
                    Some(_) => {}
                }
            }
            cols.clone()
        }
        None => catalog.primary_key.clone(),
    };
    let key_types = key
        .iter()
        .map(|k| {
            catalog
                .columns
                .iter()
                .find(|c| &c.name == k)
                .map(|c| c.formatted_type.clone())
                .unwrap_or_else(|| "text".into())
        })
        .collect();
    let estimate = if reltuples >= 0.0 {
        reltuples as u64
    } else {
        let n: i64 = control
            .client
            .query_one(&format!("SELECT count(*) FROM ONLY {}", qualified(id)), &[])
            .await
            .map_err(q(control, "snapshot count"))?
            .try_get(0)
            .map_err(q(control, "snapshot count"))?;
        n.max(0) as u64
    };
    Ok(PlannedTable {
        id: id.clone(),
        schema,
        binary,
        key_types,
        progress: TableProgress {
            table,
            key,
            bounds: Vec::new(),
            done: Vec::new(),
            last_key: None,
            rows: 0,
            estimate,
            complete: false,
            filter: None,
            error: None,
        },
    })
}

/// Asks the server whether `filter` is a valid condition on `id` and how many rows the
/// planner expects it to match, in one round trip: `EXPLAIN (FORMAT JSON) SELECT 1 FROM ONLY
/// t WHERE (filter)` parses, analyzes and plans the query (what a `SELECT … LIMIT 0` would
/// check) and reads no row. `Ok(Ok(Some(rows)))`: accepted, with the top plan's `Plan Rows`;
/// `Ok(Ok(None))`: accepted, the plan unreadable (the caller keeps the table's estimate);
/// `Ok(Err(message))`: the server refuses it (definite: the user's SQL); `Err`: the server
/// could not be asked (transient).
pub async fn check_filter(
    control: &PgControl,
    id: &TableId,
    filter: &str,
) -> Result<Result<Option<u64>, String>, PgSourceError> {
    let sql = format!(
        "EXPLAIN (FORMAT JSON) SELECT 1 FROM ONLY {} WHERE {}",
        qualified(id),
        crate::snapshot::filter::sql(filter)
    );
    // `query` prepares the statement: one statement only, whatever the filter holds.
    match control.client.query(sql.as_str(), &[]).await {
        Ok(rows) => Ok(Ok(rows
            .first()
            .and_then(|r| r.try_get::<_, PlanJson>(0).ok())
            .and_then(|j| crate::snapshot::estimate::postgres_plan_rows(&j.0)))),
        Err(e) => match e.as_db_error() {
            Some(db) => Ok(Err(format!("{} ({})", db.message(), db.code().code()))),
            None => Err(PgSourceError::control(
                control.at(),
                "snapshot filter check",
                e,
            )),
        },
    }
}

/// `EXPLAIN (FORMAT JSON)`'s one value, type `json` (whose binary form is its text), which
/// tokio-postgres reads as a `String` only with its serde_json feature.
struct PlanJson(String);

impl<'a> tokio_postgres::types::FromSql<'a> for PlanJson {
    fn from_sql(
        _: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(PlanJson(std::str::from_utf8(raw)?.to_string()))
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        use tokio_postgres::types::Type;
        matches!(*ty, Type::JSON | Type::TEXT)
    }
}

/// Per column of `schema`: whether COPY reads it in binary (its value can be built from the
/// binary form; the rest are read as text).
pub(super) fn binary_columns(schema: &TableSchema) -> Vec<bool> {
    schema
        .columns
        .iter()
        .map(|c| {
            tidemark_model::ColumnBuilder::new(&c.source_type, &c.data_type, 0).binary_supported()
        })
        .collect()
}

/// The table's schema as the stream's decoder builds it from the Relation message and the
/// catalog (version 1, key = primary key), so snapshot and stream rows share one schema.
pub fn schema_of(id: &TableId, catalog: &RelationCatalog) -> Arc<TableSchema> {
    let columns = catalog
        .columns
        .iter()
        .map(|c| {
            let source_type = super::stream::resolve_type(c).unwrap_or_else(|| {
                tracing::warn!(table = %id, column = %c.name, source_type = %c.formatted_type,
                    "unknown type: kept as its text form");
                SourceType::pg_other(c.type_oid, c.type_name.clone(), c.typmod)
            });
            let key = catalog.primary_key.iter().any(|k| k == &c.name);
            Column::postgres(&c.name, source_type, c.nullable, key)
        })
        .collect();
    TableSchema::new(id.clone(), 1, columns)
}

/// Cuts the table into ranges of about `range_rows` rows (sets `progress.bounds`).
pub async fn cut(client: &Client, t: &mut PlannedTable, range_rows: u64) -> Result<(), PlanError> {
    let ranges = t.progress.estimate.div_ceil(range_rows.max(1));
    if t.progress.key.is_empty() || ranges <= 1 {
        return Ok(());
    }
    // ~64 sample rows per range; SYSTEM samples whole pages, so ask for a little more.
    let want = (ranges * 64) as f64;
    let pct = (want * 100.0 / t.progress.estimate.max(1) as f64 * 1.5).clamp(0.0001, 100.0);
    let keys: Vec<String> = t.progress.key.iter().map(|k| quote_ident(k)).collect();
    // Sorted by the key itself, not its text (an output column `id::text` is also named
    // `id`: the ORDER BY names the subquery's columns explicitly).
    let texts: Vec<String> = keys.iter().map(|k| format!("s.{k}::text")).collect();
    let order: Vec<String> = keys.iter().map(|k| format!("s.{k}")).collect();
    let sql = format!(
        "SELECT {} FROM (SELECT {} FROM ONLY {} TABLESAMPLE SYSTEM ({pct})) s ORDER BY {}",
        texts.join(", "),
        keys.join(", "),
        qualified(&t.id),
        order.join(", ")
    );
    let rows = client
        .query(&sql, &[])
        .await
        .map_err(|e| PlanError::Table {
            table: t.progress.table.clone(),
            message: format!("sampling the key for ranges: {e}"),
        })?;
    let sample: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            (0..keys.len())
                .map(|i| r.try_get::<_, String>(i).unwrap_or_default())
                .collect()
        })
        .collect();
    let step = sample.len() as u64 / ranges;
    if step == 0 {
        return Ok(());
    }
    let mut bounds: Vec<Vec<String>> = Vec::new();
    for i in 1..ranges {
        let b = &sample[(i * step) as usize];
        if bounds.last() != Some(b) {
            bounds.push(b.clone());
        }
    }
    t.progress.bounds = bounds;
    Ok(())
}

/// The `WHERE` condition of range `range` (empty: the whole table).
pub fn range_condition(t: &PlannedTable, range: u32) -> String {
    let p = &t.progress;
    if p.key.is_empty() || p.bounds.is_empty() {
        return String::new();
    }
    let cols: Vec<String> = p.key.iter().map(|k| quote_ident(k)).collect();
    let lhs = if cols.len() == 1 {
        cols[0].clone()
    } else {
        format!("({})", cols.join(", "))
    };
    let literal = |b: &[String]| -> String {
        let parts: Vec<String> = b
            .iter()
            .zip(&t.key_types)
            .map(|(v, ty)| format!("{}::{ty}", quote_literal(v)))
            .collect();
        if parts.len() == 1 {
            parts[0].clone()
        } else {
            format!("ROW({})", parts.join(", "))
        }
    };
    let r = range as usize;
    let mut conds = Vec::new();
    if r > 0 {
        conds.push(format!("{lhs} >= {}", literal(&p.bounds[r - 1])));
    }
    if r < p.bounds.len() {
        conds.push(format!("{lhs} < {}", literal(&p.bounds[r])));
    }
    conds.join(" AND ")
}

/// An incremental chunk: the `COPY` of the next `rows` rows by key after `after` (that match
/// the table's `progress.filter`, if any), and the query of the chunk's last key (text forms),
/// both to run in one REPEATABLE READ transaction.
pub fn chunk_sql(t: &PlannedTable, after: Option<&[String]>, rows: usize) -> (String, String) {
    let p = &t.progress;
    let cols: Vec<String> = p.key.iter().map(|k| quote_ident(k)).collect();
    let lhs = if cols.len() == 1 {
        cols[0].clone()
    } else {
        format!("({})", cols.join(", "))
    };
    let cond = match after {
        Some(b) => {
            let parts: Vec<String> = b
                .iter()
                .zip(&t.key_types)
                .map(|(v, ty)| format!("{}::{ty}", quote_literal(v)))
                .collect();
            let rhs = if parts.len() == 1 {
                parts[0].clone()
            } else {
                format!("ROW({})", parts.join(", "))
            };
            Some(format!("{lhs} > {rhs}"))
        }
        None => None,
    };
    // The user's row filter, parenthesised (`snapshot/filter.rs`): the same rows for the COPY
    // and for the last-key query, so the next chunk starts after this one's last row.
    let filter = p.filter.as_deref().map(crate::snapshot::filter::sql);
    let cond = crate::snapshot::filter::where_clause([cond.as_deref(), filter.as_deref()]);
    let order = cols.join(", ");
    let select: Vec<String> = t
        .schema
        .columns
        .iter()
        .zip(&t.binary)
        .map(|(c, &bin)| {
            if bin {
                quote_ident(&c.name)
            } else {
                format!("{}::text", quote_ident(&c.name))
            }
        })
        .collect();
    let from = format!("FROM ONLY {}{cond}", qualified(&t.id));
    let copy = format!(
        "COPY (SELECT {} {from} ORDER BY {order} LIMIT {rows}) TO STDOUT (FORMAT binary)",
        if select.is_empty() {
            "NULL".to_string()
        } else {
            select.join(", ")
        }
    );
    let texts: Vec<String> = cols.iter().map(|k| format!("s.{k}::text")).collect();
    let desc: Vec<String> = cols.iter().map(|k| format!("s.{k} DESC")).collect();
    let last = format!(
        "SELECT {} FROM (SELECT {order} {from} ORDER BY {order} LIMIT {rows}) s ORDER BY {} LIMIT 1",
        texts.join(", "),
        desc.join(", ")
    );
    (copy, last)
}

/// The `COPY (SELECT …) TO STDOUT (FORMAT binary)` of range `range`; `extra` is an optional
/// further condition (ctid ranges of a keyless table).
pub fn copy_sql(t: &PlannedTable, range: u32, extra: Option<&str>) -> String {
    let cols: Vec<String> = t
        .schema
        .columns
        .iter()
        .zip(&t.binary)
        .map(|(c, &bin)| {
            let q = quote_ident(&c.name);
            if bin {
                q
            } else {
                format!("{q}::text")
            }
        })
        .collect();
    let mut conds = vec![range_condition(t, range)];
    conds.extend(extra.map(str::to_string));
    conds.retain(|c| !c.is_empty());
    let select = if cols.is_empty() {
        "NULL".to_string()
    } else {
        cols.join(", ")
    };
    let mut sql = format!("COPY (SELECT {select} FROM ONLY {}", qualified(&t.id));
    if !conds.is_empty() {
        sql.push_str(&format!(" WHERE {}", conds.join(" AND ")));
    }
    sql.push_str(") TO STDOUT (FORMAT binary)");
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(key: &[&str], bounds: Vec<Vec<&str>>) -> PlannedTable {
        let id = TableId::new("public", "t");
        PlannedTable {
            schema: TableSchema::new(
                id.clone(),
                1,
                vec![Column::postgres(
                    "id",
                    SourceType::pg_builtin(23, -1).unwrap(),
                    false,
                    true,
                )],
            ),
            id,
            binary: vec![true],
            key_types: key.iter().map(|_| "integer".to_string()).collect(),
            progress: TableProgress {
                table: "public.t".into(),
                key: key.iter().map(|s| s.to_string()).collect(),
                bounds: bounds
                    .into_iter()
                    .map(|b| b.into_iter().map(String::from).collect())
                    .collect(),
                done: vec![],
                last_key: None,
                rows: 0,
                estimate: 0,
                complete: false,
                filter: None,
                error: None,
            },
        }
    }

    #[test]
    fn ranges_cover_the_key_space_without_overlap() {
        let t = planned(&["id"], vec![vec!["10"], vec!["20"]]);
        assert_eq!(range_condition(&t, 0), "\"id\" < '10'::integer");
        assert_eq!(
            range_condition(&t, 1),
            "\"id\" >= '10'::integer AND \"id\" < '20'::integer"
        );
        assert_eq!(range_condition(&t, 2), "\"id\" >= '20'::integer");
        let c = planned(&["a", "b"], vec![vec!["1", "x'y"]]);
        assert_eq!(
            range_condition(&c, 1),
            "(\"a\", \"b\") >= ROW('1'::integer, 'x''y'::integer)"
        );
        assert_eq!(
            copy_sql(&t, 2, None),
            "COPY (SELECT \"id\" FROM ONLY \"public\".\"t\" WHERE \"id\" >= '20'::integer) TO STDOUT (FORMAT binary)"
        );
        assert_eq!(range_condition(&planned(&[], vec![]), 0), "");
    }

    #[test]
    fn incremental_chunks_and_their_filter() {
        let mut t = planned(&["id"], vec![]);
        let (copy, last) = chunk_sql(&t, Some(&["7".to_string()]), 10);
        assert_eq!(
            copy,
            "COPY (SELECT \"id\" FROM ONLY \"public\".\"t\" WHERE \"id\" > '7'::integer ORDER BY \"id\" LIMIT 10) TO STDOUT (FORMAT binary)"
        );
        assert!(
            last.contains("WHERE \"id\" > '7'::integer ORDER BY"),
            "{last}"
        );
        t.progress.filter = Some("id % 3 = 0 OR id < 2".into());
        let (copy, last) = chunk_sql(&t, Some(&["7".to_string()]), 10);
        assert!(
            copy.contains("WHERE \"id\" > '7'::integer AND (id % 3 = 0 OR id < 2) ORDER BY"),
            "{copy}"
        );
        assert!(
            last.contains("AND (id % 3 = 0 OR id < 2) ORDER BY"),
            "{last}"
        );
        let (copy, _) = chunk_sql(&t, None, 10);
        assert!(
            copy.contains("FROM ONLY \"public\".\"t\" WHERE (id % 3 = 0 OR id < 2) ORDER BY"),
            "{copy}"
        );
    }
}
