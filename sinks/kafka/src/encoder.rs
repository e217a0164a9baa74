//! [`KafkaEncoder`]: transactions → Kafka records. Pure and deterministic (but for Debezium's
//! processing-time `ts_ms`), no IO.
//!
//! The envelope, keys, tombstones, the primary-key-change sequence and the transaction metadata
//! come from the shared [`DebeziumEncoder`]; this layer only
//! - routes each table's records to the topic of the [`TopicTemplate`] (Debezium's naming by
//!   default: the encoder's `<prefix>.<schema|database>.<table>`, which is what a MySQL source's
//!   `TableId { namespace: database }` gives too),
//! - adds the `tidemark.table` / `tidemark.op` / `tidemark.position` headers.
//!
//! # Traps
//! - Routing is keyed by the Debezium topic the encoder chose, which is computed from the
//!   `TableId` ([`DebeziumEncoder::table_topic`]); never parse a topic back into schema and table
//!   (names may contain dots).
//! - A tombstone carries no `tidemark.op` header (Debezium gives it no op either) but keeps the
//!   table and position headers, so a consumer can still place it.

use std::collections::HashMap;
use std::sync::Arc;

use tidemark_debezium::{DebeziumEncoder, EncodeError, EncoderOptions, Record};
use tidemark_model::{TableId, Transaction};

/// Header with the source table, `schema.table` (MySQL: `database.table`).
pub const HEADER_TABLE: &str = "tidemark.table";
/// Header with Debezium's op code.
pub const HEADER_OP: &str = "tidemark.op";
/// Header with the source position of the event (the checkpoint format).
pub const HEADER_POSITION: &str = "tidemark.position";

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    Prefix,
    Schema,
    Table,
}

/// A topic routing template: `{prefix}`, `{schema}` (alias `{database}`) and `{table}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicTemplate {
    parts: Vec<Part>,
}

impl TopicTemplate {
    /// Parses a template; the error names the bad placeholder.
    pub fn parse(template: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("{template:?}: '{{' without a closing '}}'"))?;
            parts.push(match &after[..close] {
                "prefix" => Part::Prefix,
                "schema" | "database" => Part::Schema,
                "table" => Part::Table,
                other => {
                    return Err(format!(
                        "{template:?}: unknown placeholder {{{other}}}; use {{prefix}}, {{schema}}, {{database}} or {{table}}"
                    ))
                }
            });
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        if parts.is_empty() {
            return Err("is empty; e.g. \"{prefix}.{schema}.{table}\"".into());
        }
        Ok(TopicTemplate { parts })
    }

    /// The topic of `table` under `prefix`.
    pub fn render(&self, prefix: &str, table: &TableId) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Literal(s) => out.push_str(s),
                Part::Prefix => out.push_str(prefix),
                Part::Schema => out.push_str(&table.namespace),
                Part::Table => out.push_str(&table.name),
            }
        }
        out
    }
}

/// Where one table's records go.
#[derive(Debug)]
struct Route {
    topic: Arc<str>,
    table: Vec<u8>,
}

/// Encodes transactions into Kafka records.
pub struct KafkaEncoder {
    dbz: DebeziumEncoder,
    template: TopicTemplate,
    position_headers: bool,
    /// Debezium topic → route, filled from each transaction's tables.
    routes: HashMap<String, Route>,
}

impl KafkaEncoder {
    pub fn new(opts: EncoderOptions, template: TopicTemplate, position_headers: bool) -> Self {
        KafkaEncoder {
            dbz: DebeziumEncoder::new(opts),
            template,
            position_headers,
            routes: HashMap::new(),
        }
    }

    /// The Debezium encoder (e.g. to restore `source.sequence`, or a test clock).
    pub fn debezium_mut(&mut self) -> &mut DebeziumEncoder {
        &mut self.dbz
    }

    /// Replaces the Debezium encoder (keeps routing); for tests with a fixed clock.
    pub fn with_debezium(mut self, dbz: DebeziumEncoder) -> Self {
        self.dbz = dbz;
        self
    }

    /// The topic `table`'s records go to.
    pub fn topic_of(&self, table: &TableId) -> String {
        self.template.render(&self.dbz.options().server_name, table)
    }

    fn learn_routes(&mut self, txn: &Transaction) {
        for batch in txn.batches() {
            let table = &batch.schema.table;
            let dbz_topic = self.dbz.table_topic(table);
            if !self.routes.contains_key(&dbz_topic) {
                let route = Route {
                    topic: self.topic_of(table).into(),
                    table: format!("{}.{}", table.namespace, table.name).into_bytes(),
                };
                self.routes.insert(dbz_topic, route);
            }
        }
    }

    /// Encodes every item of `txn` in order, handing each record to `out`.
    pub fn encode_transaction(
        &mut self,
        txn: &Transaction,
        out: &mut impl FnMut(Record),
    ) -> Result<(), EncodeError> {
        self.learn_routes(txn);
        let routes = &self.routes;
        let position_headers = self.position_headers;
        self.dbz.encode_transaction(txn, &mut |mut r: Record| {
            let route = routes.get(&*r.topic);
            if let Some(route) = route {
                if route.topic != r.topic {
                    r.topic = Arc::clone(&route.topic);
                }
            }
            if position_headers {
                if let Some(route) = route {
                    r.headers
                        .push((HEADER_TABLE.to_owned(), route.table.clone()));
                }
                if let Some(op) = r.op {
                    r.headers
                        .push((HEADER_OP.to_owned(), op.as_bytes().to_vec()));
                }
                r.headers.push((
                    HEADER_POSITION.to_owned(),
                    r.position.to_string().into_bytes(),
                ));
            }
            out(r);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render_and_reject_unknown_placeholders() {
        let t = TopicTemplate::parse("{prefix}.{schema}.{table}").unwrap();
        assert_eq!(
            t.render("tm", &TableId::new("public", "orders")),
            "tm.public.orders"
        );
        let mysql = TopicTemplate::parse("{prefix}.{database}.{table}").unwrap();
        assert_eq!(
            mysql.render("tm", &TableId::new("shop", "orders")),
            "tm.shop.orders"
        );
        let flat = TopicTemplate::parse("cdc-{table}-v1").unwrap();
        assert_eq!(flat.render("tm", &TableId::new("s", "t")), "cdc-t-v1");
        assert_eq!(
            TopicTemplate::parse("all")
                .unwrap()
                .render("tm", &TableId::new("s", "t")),
            "all"
        );
        assert!(TopicTemplate::parse("{prefix}.{tabel}")
            .unwrap_err()
            .contains("{tabel}"));
        assert!(TopicTemplate::parse("{prefix").is_err());
        assert!(TopicTemplate::parse("").is_err());
    }
}
