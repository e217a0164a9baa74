//! Row estimates of *filtered* incremental snapshots: the planner's estimate of the rows a
//! filter matches, read from `EXPLAIN`'s JSON. Pure: the sources run the statement
//! (`check_filter` in `source/postgres/snapshot_plan.rs`, `filter_estimate` in
//! `source/mysql/snapshot_signal.rs`) and hand the text here.
//!
//! ```text
//!  PostgreSQL     EXPLAIN (FORMAT JSON) SELECT 1 FROM ONLY t WHERE (filter)
//!                 [{"Plan": {"Node Type": "Seq Scan", "Plan Rows": 2000, …}}]   → 2000
//!  MariaDB        EXPLAIN FORMAT=JSON SELECT 1 FROM t WHERE (filter)
//!                 {"query_block": {"nested_loop": [{"table": {"rows": 10000, "filtered": 9.375}}]}}
//!                 (10.x single table without `nested_loop`: {"query_block": {"table": {…}}})
//!  MySQL 8        {"query_block": {"table": {"rows_examined_per_scan": 10000, "filtered": "10.00"}}}
//!                 → rows × filtered / 100
//!  MySQL 8.3+     explain_json_format_version = 2: {"estimated_rows": 1000.0, "inputs": […]}
//!  "Impossible WHERE" / "no matching row in const table" (either dialect) → 0
//! ```
//!
//! Without the filter the estimate stays the table's (`pg_class.reltuples`,
//! `information_schema.TABLES.TABLE_ROWS`): no EXPLAIN is run for an unfiltered table.
//!
//! # Traps
//! - An estimate is a guess from the server's statistics, never a count: progress clamps
//!   "remaining" at zero and shows `max(estimate, rows)` as the total (`progress.rs`,
//!   `snapshot::status_text`).
//! - MariaDB estimates a condition on a non-indexed column only from its engine-independent
//!   statistics (`ANALYZE TABLE t PERSISTENT FOR ALL` collects histograms); without them
//!   `filtered` is 100 and the estimate is the table's (or the index range's) rows. MySQL 8
//!   guesses a fixed selectivity without a histogram (`ANALYZE TABLE t UPDATE HISTOGRAM ON c`).
//! - MySQL prints `filtered` as a string (`"10.00"`), MariaDB as a number: both are read.
//! - An answer in none of these shapes is `None`: the caller keeps the table's estimate and
//!   says so in its log; it never fails the snapshot.

use serde_json::Value;

/// The planner's rows of PostgreSQL's `EXPLAIN (FORMAT JSON)` answer: the top plan's
/// `Plan Rows`.
pub fn postgres_plan_rows(json: &str) -> Option<u64> {
    let v: Value = serde_json::from_str(json).ok()?;
    let plan = v.as_array()?.first()?.get("Plan")?;
    rows(number(plan.get("Plan Rows")?)?)
}

/// The optimizer's rows of MySQL's or MariaDB's `EXPLAIN FORMAT=JSON` answer for a
/// one-table `SELECT … WHERE (filter)` (module docs: the shapes).
pub fn mysql_plan_rows(json: &str) -> Option<u64> {
    let v: Value = serde_json::from_str(json).ok()?;
    if let Some(n) = v.get("estimated_rows") {
        // MySQL 8.3+'s format version 2: the root iterator's estimate.
        return rows(number(n)?);
    }
    let block = v.get("query_block")?;
    if nothing_matches(block) {
        return Some(0);
    }
    let table = match block.get("table") {
        Some(t) => t,
        None => block
            .get("nested_loop")?
            .as_array()?
            .first()?
            .get("table")?,
    };
    if nothing_matches(table) {
        return Some(0);
    }
    let examined = table
        .get("rows_examined_per_scan")
        .or_else(|| table.get("rows"))
        .and_then(number)?;
    let filtered = match table.get("filtered") {
        Some(f) => number(f)?,
        None => 100.0,
    };
    rows(examined * filtered.clamp(0.0, 100.0) / 100.0)
}

/// The optimizer's messages for a condition no row can meet (`Impossible WHERE`, `Impossible
/// WHERE noticed after reading const tables`, `no matching row in const table`).
fn nothing_matches(node: &Value) -> bool {
    node.get("message")
        .and_then(Value::as_str)
        .is_some_and(|m| {
            let m = m.to_ascii_lowercase();
            m.contains("impossible where") || m.contains("no matching row")
        })
}

/// A JSON number, or a string holding one (MySQL's `"filtered": "10.00"`).
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|n: &f64| n.is_finite())
}

/// A row count from the planner's float (rounded, never negative).
fn rows(n: f64) -> Option<u64> {
    n.is_finite().then(|| n.max(0.0).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_top_plan_rows() {
        // PostgreSQL 15, `EXPLAIN (FORMAT JSON) SELECT 1 FROM ONLY "public"."t" WHERE (color = 'blue')`.
        let json = r#"[
          {
            "Plan": {
              "Node Type": "Seq Scan",
              "Parallel Aware": false,
              "Async Capable": false,
              "Relation Name": "t",
              "Alias": "t",
              "Startup Cost": 0.00,
              "Total Cost": 358.00,
              "Plan Rows": 2013,
              "Plan Width": 4,
              "Filter": "(color = 'blue'::text)"
            }
          }
        ]"#;
        assert_eq!(postgres_plan_rows(json), Some(2013));
        // The top plan counts, not its children.
        let nested = r#"[{"Plan": {"Node Type": "Bitmap Heap Scan", "Plan Rows": 40,
            "Plans": [{"Node Type": "Bitmap Index Scan", "Plan Rows": 9000}]}}]"#;
        assert_eq!(postgres_plan_rows(nested), Some(40));
        for bad in [
            "",
            "not json",
            "{}",
            "[]",
            r#"[{"Plan": {}}]"#,
            r#"[{"Plan": {"Plan Rows": "many"}}]"#,
            r#"[{"Plan": {"Plan Rows": -3}}]"#,
        ] {
            let got = postgres_plan_rows(bad);
            assert!(got.is_none() || got == Some(0), "{bad}: {got:?}");
        }
    }

    #[test]
    fn mariadb_shapes() {
        // MariaDB 10.11 (the local server), after ANALYZE TABLE t PERSISTENT FOR ALL.
        let json = r#"{
          "query_block": {
            "select_id": 1,
            "nested_loop": [
              {
                "table": {
                  "table_name": "t",
                  "access_type": "ALL",
                  "rows": 10000,
                  "filtered": 9.375,
                  "attached_condition": "t.color = 'blue'"
                }
              }
            ]
          }
        }"#;
        assert_eq!(mysql_plan_rows(json), Some(938));
        // A range on the key: `rows` is already the range's.
        let range = r#"{"query_block": {"select_id": 1, "nested_loop": [{"table": {"table_name": "t",
            "access_type": "range", "key": "PRIMARY", "rows": 499, "filtered": 100,
            "attached_condition": "t.`id` < 500", "using_index": true}}]}}"#;
        assert_eq!(mysql_plan_rows(range), Some(499));
        // MariaDB 10.x before `nested_loop` for one table.
        let old = r#"{"query_block": {"select_id": 1, "table": {"table_name": "t1",
            "access_type": "ALL", "rows": 1000, "filtered": 100, "attached_condition": "(t1.col1 = 1)"}}}"#;
        assert_eq!(mysql_plan_rows(old), Some(1000));
        // The local server on `WHERE (1=0)`, and an empty const table.
        let impossible =
            r#"{"query_block": {"select_id": 1, "table": {"message": "Impossible WHERE"}}}"#;
        assert_eq!(mysql_plan_rows(impossible), Some(0));
        let no_row = r#"{"query_block": {"select_id": 1, "table": {"table_name": "t1",
            "access_type": "system", "rows": 0, "filtered": 0, "const_row_not_found": true}}}"#;
        assert_eq!(mysql_plan_rows(no_row), Some(0));
    }

    #[test]
    fn mysql8_shapes() {
        // MySQL 8.0: rows_examined_per_scan and `filtered` as a string.
        let json = r#"{
          "query_block": {
            "select_id": 1,
            "cost_info": {"query_cost": "1015.25"},
            "table": {
              "table_name": "t",
              "access_type": "ALL",
              "rows_examined_per_scan": 10000,
              "rows_produced_per_join": 1000,
              "filtered": "10.00",
              "cost_info": {"read_cost": "915.25", "eval_cost": "100.00", "prefix_cost": "1015.25", "data_read_per_join": "398K"},
              "used_columns": ["id", "color"],
              "attached_condition": "(`db`.`t`.`color` = 'blue')"
            }
          }
        }"#;
        assert_eq!(mysql_plan_rows(json), Some(1000));
        let impossible = r#"{"query_block": {"select_id": 1, "message": "Impossible WHERE"}}"#;
        assert_eq!(mysql_plan_rows(impossible), Some(0));
        let const_table = r#"{"query_block": {"select_id": 1,
            "message": "no matching row in const table"}}"#;
        assert_eq!(mysql_plan_rows(const_table), Some(0));
        // MySQL 8.3+, explain_json_format_version = 2.
        let v2 = r#"{"query": "/* select#1 */ select 1 AS `1` from `db`.`t` where (`db`.`t`.`color` = 'blue')",
            "inputs": [{"operation": "Table scan on t", "estimated_rows": 10000.0, "access_type": "table"}],
            "condition": "(t.color = 'blue')", "operation": "Filter: (t.color = 'blue')",
            "access_type": "filter", "estimated_rows": 1000.0, "filter_columns": ["db.t.color"]}"#;
        assert_eq!(mysql_plan_rows(v2), Some(1000));
    }

    #[test]
    fn unreadable_mysql_answers_are_none() {
        for bad in [
            "",
            "[]",
            "{}",
            r#"{"query_block": {}}"#,
            r#"{"query_block": {"nested_loop": []}}"#,
            r#"{"query_block": {"table": {"table_name": "t"}}}"#,
            r#"{"query_block": {"table": {"rows": "lots"}}}"#,
            r#"{"query_block": {"table": {"rows": 10, "filtered": null}}}"#,
            r#"{"query_block": {"select_id": 1, "message": "No tables used"}}"#,
        ] {
            assert_eq!(mysql_plan_rows(bad), None, "{bad}");
        }
        // `filtered` missing: all examined rows.
        assert_eq!(
            mysql_plan_rows(r#"{"query_block": {"table": {"rows": 10}}}"#),
            Some(10)
        );
    }
}
