//! Filtered incremental snapshots: which rows of a table an incremental snapshot re-reads,
//! as Debezium's `additional-conditions` of the `execute-snapshot` signal. Pure: no IO.
//!
//! ```text
//!  signal data  {"data-collections": ["public.t"], "type": "incremental",
//!                "additional-conditions": [{"data-collection": "public.t", "filter": "color = 'blue'"}]}
//!  CLI          tidemark snapshot --table public.t --filter "color = 'blue'"
//!      ──► TableRequest {table: "public.t", filter: Some("color = 'blue'")}
//!      ──► ledger (TableProgress.filter: a resume after kill -9 keeps it)
//!      ──► every chunk: WHERE <key after last> AND (color = 'blue') ORDER BY key LIMIT n
//! ```
//!
//! The filter is user-supplied SQL on purpose (as in Debezium, and anyone who can write a
//! signal can already read the table): it is checked here only for what would make it escape
//! its parentheses or the statement (an unbalanced `)`, a `;`, a comment), then by the server
//! (`SELECT 1 FROM t WHERE (filter) LIMIT 0`) before the first chunk.
//!
//! # Semantics (Debezium 3.x, `ExecuteSnapshot` / `AbstractIncrementalSnapshotContext`)
//! - `additional-conditions` is an array of `{"data-collection", "filter"}`; a table takes the
//!   first entry that names it; an empty filter means the whole table.
//! - The one-string `additional-condition` of Debezium before 2.5 is ignored by 3.x (the whole
//!   table is read). We refuse it with the new form instead: reading every row when the user
//!   asked for some is the surprise worth an error.
//! - Debezium compiles `data-collection` as a case-insensitive regex. Tidemark names tables
//!   literally everywhere (`data-collections` too), so it compares names case-insensitively
//!   and refuses an entry that names none of the signal's tables (a typo would otherwise
//!   snapshot the whole table).
//! - Only the chunk queries are filtered: stream events of rows outside the filter pass
//!   through as always, and the watermark window still drops chunk rows changed in the
//!   stream.

use serde::{Deserialize, Serialize};

/// One table asked for, with its optional row filter (SQL boolean expression).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRequest {
    /// `schema.table` / `db.table`.
    pub table: String,
    pub filter: Option<String>,
}

impl TableRequest {
    pub fn whole(table: impl Into<String>) -> Self {
        TableRequest {
            table: table.into(),
            filter: None,
        }
    }
}

/// One entry of Debezium's `additional-conditions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdditionalCondition {
    /// The table the filter applies to (`schema.table` / `db.table`).
    #[serde(rename = "data-collection")]
    pub data_collection: String,
    /// A SQL boolean expression over the table's columns.
    pub filter: String,
}

/// The `data` of an `execute-snapshot` signal: Debezium's shape plus the pipeline it is for.
/// The Postgres signal message and the MySQL signal table row carry the same JSON.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SnapshotSignal {
    /// The pipeline that should act (`None`: every pipeline reading this server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
    /// Tables to snapshot incrementally. `snapshot` is the key of Postgres signals written
    /// before filters existed (still in old WAL).
    #[serde(rename = "data-collections", alias = "snapshot")]
    pub data_collections: Vec<String>,
    /// `incremental` (the default; Debezium's `blocking` is not supported). Any case, as
    /// Debezium's `INCREMENTAL`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Row filters per table.
    #[serde(
        default,
        rename = "additional-conditions",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub additional_conditions: Vec<AdditionalCondition>,
    /// Debezium < 2.5's one condition for every table: read only to refuse it (module docs).
    #[serde(default, rename = "additional-condition", skip_serializing)]
    pub legacy_condition: Option<String>,
}

/// Why a signal or a filter is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("snapshot filter {filter:?} for {table}: {reason}")]
    Invalid {
        table: String,
        filter: String,
        reason: String,
    },
    #[error(
        "additional-conditions names {data_collection:?}, which is not one of the signal's \
         data-collections {tables:?} (names are compared literally, ignoring case)"
    )]
    Unmatched {
        data_collection: String,
        tables: Vec<String>,
    },
    #[error(
        "\"additional-condition\" (one string for every table) is Debezium's form before 2.5 \
         and is not supported: use \"additional-conditions\": [{{\"data-collection\": \
         \"schema.table\", \"filter\": \"...\"}}]"
    )]
    Legacy,
    #[error(
        "execute-snapshot type {0:?} is not supported: only \"incremental\" (Debezium's \
         blocking snapshots are not)"
    )]
    Kind(String),
    #[error("execute-snapshot without data-collections")]
    NoTables,
    #[error(
        "--filter {0:?} comes before any --table: put each --filter after the --table it filters"
    )]
    FilterWithoutTable(String),
    #[error("--table {0} has two --filter: give one filter per table (combine them with AND)")]
    TwoFilters(String),
}

impl SnapshotSignal {
    /// A signal for `pipeline` asking for `requests` (`tidemark snapshot`).
    pub fn new(pipeline: &str, requests: &[TableRequest]) -> Self {
        SnapshotSignal {
            pipeline: Some(pipeline.to_string()),
            data_collections: requests.iter().map(|r| r.table.clone()).collect(),
            kind: Some("incremental".into()),
            additional_conditions: requests
                .iter()
                .filter_map(|r| {
                    Some(AdditionalCondition {
                        data_collection: r.table.clone(),
                        filter: r.filter.clone()?,
                    })
                })
                .collect(),
            legacy_condition: None,
        }
    }

    /// Whether the pipeline named `pipeline` should act on it.
    pub fn is_for(&self, pipeline: &str) -> bool {
        self.pipeline.as_deref().is_none_or(|p| p == pipeline)
    }

    /// The tables with their filters, or why the signal is refused (as a whole: a partly
    /// understood signal must not snapshot more than asked).
    pub fn requests(&self, dialect: Dialect) -> Result<Vec<TableRequest>, FilterError> {
        if let Some(k) = self
            .kind
            .as_deref()
            .filter(|k| !k.eq_ignore_ascii_case("incremental"))
        {
            return Err(FilterError::Kind(k.to_string()));
        }
        if self
            .legacy_condition
            .as_deref()
            .is_some_and(|c| !c.trim().is_empty())
        {
            return Err(FilterError::Legacy);
        }
        let tables: Vec<String> = self
            .data_collections
            .iter()
            .map(|t| t.trim().to_string())
            .collect();
        if tables.is_empty() {
            return Err(FilterError::NoTables);
        }
        for c in &self.additional_conditions {
            let named = c.data_collection.trim();
            if !tables.iter().any(|t| t.eq_ignore_ascii_case(named)) {
                return Err(FilterError::Unmatched {
                    data_collection: named.to_string(),
                    tables,
                });
            }
        }
        tables
            .iter()
            .map(|t| {
                // The first entry naming the table wins, as in Debezium.
                let filter = self
                    .additional_conditions
                    .iter()
                    .find(|c| c.data_collection.trim().eq_ignore_ascii_case(t))
                    .map(|c| c.filter.trim())
                    .filter(|f| !f.is_empty());
                if let Some(f) = filter {
                    check(t, f, dialect)?;
                }
                Ok(TableRequest {
                    table: t.clone(),
                    filter: filter.map(str::to_string),
                })
            })
            .collect()
    }
}

/// Pairs `--table` and `--filter` arguments by their position on the command line: each
/// filter belongs to the table given just before it.
pub fn pair_cli(
    tables: &[(usize, String)],
    filters: &[(usize, String)],
) -> Result<Vec<TableRequest>, FilterError> {
    let mut out: Vec<(usize, TableRequest)> = tables
        .iter()
        .map(|(i, t)| (*i, TableRequest::whole(t.clone())))
        .collect();
    out.sort_by_key(|(i, _)| *i);
    for (at, f) in filters {
        let Some((_, r)) = out.iter_mut().rev().find(|(i, _)| i < at) else {
            return Err(FilterError::FilterWithoutTable(f.clone()));
        };
        if r.filter.is_some() {
            return Err(FilterError::TwoFilters(r.table.clone()));
        }
        r.filter = Some(f.trim().to_string()).filter(|f| !f.is_empty());
    }
    Ok(out.into_iter().map(|(_, r)| r).collect())
}

/// `public.t (filter: x = 1), public.u`: the requests, for messages.
pub fn describe(requests: &[TableRequest]) -> String {
    requests
        .iter()
        .map(|r| match &r.filter {
            Some(f) => format!("{} (filter: {f})", r.table),
            None => r.table.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Quoting and comment rules of the filter's SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `'…'` with `''` (backslash escapes only in `E'…'`), `"…"` identifiers, `--` and `/* */`.
    Postgres,
    /// `'…'` and `"…"` with `\` escapes, `` `…` `` identifiers, `#`, `-- ` and `/* */`.
    Mysql,
}

/// Refuses a filter that could not stay inside `( … )` of one statement: unbalanced
/// parentheses or quotes, `;`, comments. The server checks the rest.
pub fn check(table: &str, filter: &str, dialect: Dialect) -> Result<(), FilterError> {
    lex(filter, dialect).map_err(|reason| FilterError::Invalid {
        table: table.to_string(),
        filter: filter.to_string(),
        reason: reason.to_string(),
    })
}

fn lex(filter: &str, dialect: Dialect) -> Result<(), &'static str> {
    if filter.trim().is_empty() {
        return Err("the filter is empty");
    }
    let b = filter.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        match c {
            b'\'' | b'"' | b'`' => {
                if c == b'`' && dialect == Dialect::Postgres {
                    i += 1;
                    continue;
                }
                // Backslash escapes: MySQL strings (not identifiers), Postgres E'…' strings.
                let escapes = match dialect {
                    Dialect::Mysql => c != b'`',
                    Dialect::Postgres => {
                        c == b'\''
                            && i > 0
                            && matches!(b[i - 1], b'e' | b'E')
                            && (i < 2 || !(b[i - 2].is_ascii_alphanumeric() || b[i - 2] == b'_'))
                    }
                };
                i = close_quote(b, i + 1, c, escapes).ok_or("a quote is not closed")?;
            }
            b'(' => depth += 1,
            b')' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or("a ')' closes more than it opened")?
            }
            b';' => return Err("';' is not allowed (one expression, not statements)"),
            b'-' if next == Some(b'-') => return Err("comments ('--') are not allowed"),
            b'/' if next == Some(b'*') => return Err("comments ('/*') are not allowed"),
            b'#' if dialect == Dialect::Mysql => return Err("comments ('#') are not allowed"),
            _ => {}
        }
        i += 1;
    }
    if depth > 0 {
        return Err("a '(' is not closed");
    }
    Ok(())
}

/// The index of the quote closing the one opened before `from` (a doubled quote is part of
/// the text), or `None`.
fn close_quote(b: &[u8], mut from: usize, quote: u8, escapes: bool) -> Option<usize> {
    while from < b.len() {
        match b[from] {
            b'\\' if escapes => from += 2,
            c if c == quote => {
                if b.get(from + 1) == Some(&quote) {
                    from += 2;
                } else {
                    return Some(from);
                }
            }
            _ => from += 1,
        }
    }
    None
}

/// `(filter)`, for AND-ing with the chunk's key condition.
pub fn sql(filter: &str) -> String {
    format!("({})", filter.trim())
}

/// The `WHERE` clause of `conditions` (empty ones skipped; none: an empty string).
pub fn where_clause<'a>(conditions: impl IntoIterator<Item = Option<&'a str>>) -> String {
    let parts: Vec<&str> = conditions
        .into_iter()
        .flatten()
        .filter(|c| !c.is_empty())
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", parts.join(" AND "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> SnapshotSignal {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn debezium_signal_with_additional_conditions() {
        // The example of Debezium's signalling docs (3.x), plus a second, unfiltered table.
        let s = parse(
            r#"{"data-collections": ["public.MyFirstTable", "public.other"], "type": "INCREMENTAL",
                "additional-conditions": [{"data-collection": "public.MyFirstTable",
                                           "filter": "color='blue' AND brand='MyBrand'"}]}"#,
        );
        assert!(s.is_for("any pipeline"));
        assert_eq!(
            s.requests(Dialect::Postgres).unwrap(),
            vec![
                TableRequest {
                    table: "public.MyFirstTable".into(),
                    filter: Some("color='blue' AND brand='MyBrand'".into()),
                },
                TableRequest::whole("public.other"),
            ]
        );
        // Names ignore case, the first entry wins, an empty filter is the whole table.
        let s = parse(
            r#"{"pipeline": "p", "data-collections": ["db.t", "db.u"],
                "additional-conditions": [{"data-collection": "DB.T", "filter": " id > 5 "},
                                          {"data-collection": "db.t", "filter": "id > 9"},
                                          {"data-collection": "db.u", "filter": ""}]}"#,
        );
        assert!(s.is_for("p") && !s.is_for("q"));
        let r = s.requests(Dialect::Mysql).unwrap();
        assert_eq!(r[0].filter.as_deref(), Some("id > 5"));
        assert_eq!(r[1].filter, None);
    }

    #[test]
    fn signals_refused_as_a_whole() {
        let err = |json: &str| parse(json).requests(Dialect::Postgres).unwrap_err();
        assert_eq!(
            err(r#"{"data-collections": ["public.t"], "additional-condition": "id > 1"}"#),
            FilterError::Legacy
        );
        assert!(matches!(
            err(r#"{"data-collections": ["public.t"],
                    "additional-conditions": [{"data-collection": "public.tt", "filter": "id > 1"}]}"#),
            FilterError::Unmatched { .. }
        ));
        assert_eq!(
            err(r#"{"data-collections": ["public.t"], "type": "blocking"}"#),
            FilterError::Kind("blocking".into())
        );
        assert_eq!(err(r#"{"data-collections": []}"#), FilterError::NoTables);
        let e = err(r#"{"data-collections": ["public.t"],
                        "additional-conditions": [{"data-collection": "public.t", "filter": "1=1) OR (1=1"}]}"#);
        assert!(
            e.to_string().contains("public.t") && e.to_string().contains("1=1) OR (1=1"),
            "{e}"
        );
        // A malformed entry is a JSON error (the caller logs and ignores the signal).
        assert!(serde_json::from_str::<SnapshotSignal>(
            r#"{"data-collections": ["t"], "additional-conditions": [{"filter": "x"}]}"#
        )
        .is_err());
        assert!(serde_json::from_str::<SnapshotSignal>(r#"{"tables": []}"#).is_err());
    }

    #[test]
    fn written_signals_round_trip_and_old_postgres_signals_load() {
        let s = SnapshotSignal::new(
            "p",
            &[
                TableRequest {
                    table: "public.t".into(),
                    filter: Some("color = 'blue'".into()),
                },
                TableRequest::whole("public.u"),
            ],
        );
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(
            text,
            r#"{"pipeline":"p","data-collections":["public.t","public.u"],"type":"incremental","additional-conditions":[{"data-collection":"public.t","filter":"color = 'blue'"}]}"#
        );
        let back: SnapshotSignal = serde_json::from_str(&text).unwrap();
        assert_eq!(back, s);
        assert_eq!(
            back.requests(Dialect::Postgres).unwrap()[0]
                .filter
                .as_deref(),
            Some("color = 'blue'")
        );
        let old = parse(r#"{"pipeline":"p","snapshot":["public.t"]}"#);
        assert_eq!(
            old.requests(Dialect::Postgres).unwrap(),
            vec![TableRequest::whole("public.t")]
        );
    }

    #[test]
    fn filters_that_would_leave_their_parentheses_are_refused() {
        let ok = |f: &str, d| lex(f, d).is_ok();
        for d in [Dialect::Postgres, Dialect::Mysql] {
            assert!(ok("color = 'blue'", d));
            assert!(ok("(a > 1 OR b < 2) AND c IN (1, 2)", d));
            assert!(ok("name = 'it''s (not) ; a -- comment'", d));
            assert!(ok("x - -1 > 0 AND y / 2 < 3", d));
            assert!(!ok("1=1) OR (1=1", d));
            assert!(!ok("(a = 1", d));
            assert!(!ok("a = 1; DROP TABLE t", d));
            assert!(!ok("a = 1 -- )", d));
            assert!(!ok("a = 1 /* ) */", d));
            assert!(!ok("a = 'open", d));
            assert!(!ok("  ", d));
        }
        // Quoted identifiers may hold anything.
        assert!(ok(r#""odd)name" = 1"#, Dialect::Postgres));
        assert!(ok("`odd)name` = 1", Dialect::Mysql));
        // Backslashes: MySQL escapes, Postgres only in E'' strings.
        assert!(ok(r"p = 'a\')' AND q = 1", Dialect::Mysql));
        assert!(!ok(r"p = 'a\')'", Dialect::Postgres));
        assert!(ok(r"p = 'C:\' AND q = 1", Dialect::Postgres));
        assert!(ok(r"p = E'a\')' AND q = 1", Dialect::Postgres));
        assert!(!ok("a = 1 # )", Dialect::Mysql));
        assert!(ok("a = '#1'", Dialect::Mysql));
    }

    #[test]
    fn cli_filters_belong_to_the_table_before_them() {
        let t = |v: &[(usize, &str)]| -> Vec<(usize, String)> {
            v.iter().map(|(i, s)| (*i, s.to_string())).collect()
        };
        let r = pair_cli(
            &t(&[(1, "public.a"), (5, "public.b"), (7, "public.c")]),
            &t(&[(3, "x = 1"), (9, "y = 2")]),
        )
        .unwrap();
        assert_eq!(r[0].filter.as_deref(), Some("x = 1"));
        assert_eq!(r[1].filter, None);
        assert_eq!(r[2].filter.as_deref(), Some("y = 2"));
        assert_eq!(
            pair_cli(&t(&[(3, "public.a")]), &t(&[(1, "x = 1")])).unwrap_err(),
            FilterError::FilterWithoutTable("x = 1".into())
        );
        assert_eq!(
            pair_cli(&t(&[(1, "public.a")]), &t(&[(3, "x = 1"), (5, "y = 1")])).unwrap_err(),
            FilterError::TwoFilters("public.a".into())
        );
    }

    #[test]
    fn where_clause_joins_the_present_conditions() {
        assert_eq!(where_clause([None, None]), "");
        let f = sql(" color = 'blue' ");
        assert_eq!(
            where_clause([Some("id > 5"), Some(f.as_str())]),
            " WHERE id > 5 AND (color = 'blue')"
        );
        assert_eq!(
            where_clause([None, Some(f.as_str())]),
            " WHERE (color = 'blue')"
        );
    }
}
