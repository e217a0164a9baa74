//! The Kafka Connect schema part (`schemas.enable=true` in JsonConverter): `{"schema":..,
//! "payload":..}`. Names and versions follow Debezium's logical types (`io.debezium.time.*`,
//! `org.apache.kafka.connect.data.Decimal`, ...).
//!
//! Checked against the `all_types_schemas` capture (every type of the all-types table).
//!
//! # Traps
//! - Key order inside each schema object matters for byte equality: `type`, `fields`/`items`,
//!   `optional`, `name`, `version`, `parameters`/`doc`, `default`, `field`.
//! - `time.precision.mode=connect` uses Kafka Connect's own logical names
//!   (`org.apache.kafka.connect.data.Time` etc.); not modelled yet, Debezium's names are used.

use arrow_schema::DataType;
use serde_json::{json, Map, Value};
use tidemark_model::pg_types::numeric_typmod;
use tidemark_model::{Column, SourceType, TableSchema};

use super::values::{Conv, Unit};
use crate::config::{DecimalHandling, EncoderOptions};

fn logical(ty: &str, name: &str, optional: bool) -> Value {
    json!({"type": ty, "optional": optional, "name": name, "version": 1})
}

fn decimal(scale: i64, precision: Option<u32>, mode: DecimalHandling, optional: bool) -> Value {
    match mode {
        DecimalHandling::Precise => {
            let mut params = Map::new();
            params.insert("scale".into(), Value::from(scale.to_string()));
            if let Some(p) = precision {
                params.insert(
                    "connect.decimal.precision".into(),
                    Value::from(p.to_string()),
                );
            }
            json!({"type": "bytes", "optional": optional,
                   "name": "org.apache.kafka.connect.data.Decimal", "version": 1,
                   "parameters": params})
        }
        DecimalHandling::String => json!({"type": "string", "optional": optional}),
        DecimalHandling::Double => json!({"type": "double", "optional": optional}),
    }
}

/// The Connect schema of one column's values.
fn conv_schema(
    conv: &Conv,
    col: &Column,
    dt: &DataType,
    optional: bool,
    opts: &EncoderOptions,
) -> Value {
    let mode = opts.decimal_handling_mode;
    let plain = |ty: &str| json!({"type": ty, "optional": optional});
    match conv {
        Conv::Mysql(c) => super::mysql::schema(c, &col.source_type, optional, opts),
        Conv::Omit => Value::Null,
        Conv::Bool => plain("boolean"),
        Conv::Int => plain(match dt {
            DataType::Int16 => "int16",
            DataType::Int32 => "int32",
            _ => "int64",
        }),
        Conv::Float32 => plain("float"),
        Conv::Float64 => plain("double"),
        Conv::Decimal { scale } => {
            let p = numeric_typmod(col.source_type.modifier).map(|(p, _)| p);
            decimal(*scale, p, mode, optional)
        }
        Conv::Money => decimal(2, None, mode, optional),
        Conv::NumericText { scale: Some(s) } => decimal(*s, None, mode, optional),
        Conv::NumericText { scale: None } if mode == DecimalHandling::Precise => json!({
            "type": "struct",
            "fields": [{"type": "int32", "optional": false, "field": "scale"},
                       {"type": "bytes", "optional": false, "field": "value"}],
            "optional": optional, "name": "io.debezium.data.VariableScaleDecimal",
            "version": 1, "doc": "Variable scaled decimal"}),
        Conv::NumericText { .. } => decimal(0, None, mode, optional),
        Conv::Text | Conv::Name => match col.source_type.name.as_str() {
            "json" | "jsonb" => logical("string", "io.debezium.data.Json", optional),
            "xml" => logical("string", "io.debezium.data.Xml", optional),
            _ if !col.source_type.labels.is_empty() => json!({
                "type": "string", "optional": optional, "name": "io.debezium.data.Enum",
                "version": 1, "parameters": {"allowed": col.source_type.labels.join(",")}}),
            _ => plain("string"),
        },
        Conv::Bytes => plain("bytes"),
        Conv::Uuid => logical("string", "io.debezium.data.Uuid", optional),
        Conv::Date => logical("int32", "io.debezium.time.Date", optional),
        Conv::Time(Unit::Millis) => logical("int32", "io.debezium.time.Time", optional),
        Conv::Time(Unit::Micros) => logical("int64", "io.debezium.time.MicroTime", optional),
        Conv::Timestamp(Unit::Millis) => logical("int64", "io.debezium.time.Timestamp", optional),
        Conv::Timestamp(Unit::Micros) => {
            logical("int64", "io.debezium.time.MicroTimestamp", optional)
        }
        Conv::TimestampTz(_) => logical("string", "io.debezium.time.ZonedTimestamp", optional),
        Conv::TimeTz => logical("string", "io.debezium.time.ZonedTime", optional),
        Conv::Interval => logical("int64", "io.debezium.time.MicroDuration", optional),
        Conv::Bits { boolean: true } => plain("boolean"),
        Conv::Bits { boolean: false } => json!({
        "type": "bytes", "optional": optional, "name": "io.debezium.data.Bits", "version": 1,
        // No typmod (`bit varying`): Debezium reports the JDBC length, i32::MAX.
        "parameters": {"length": match col.source_type.modifier {
            m if m < 0 => i32::MAX.to_string(),
            m => m.to_string(),
        }}}),
        Conv::Point => json!({
            "type": "struct",
            "fields": [{"type": "double", "optional": false, "field": "x"},
                       {"type": "double", "optional": false, "field": "y"},
                       {"type": "bytes", "optional": true, "field": "wkb"},
                       {"type": "int32", "optional": true, "field": "srid"}],
            "optional": optional, "name": "io.debezium.data.geometry.Point", "version": 1,
            "doc": "Geometry (POINT)"}),
        Conv::List(element) => {
            let item_dt = match dt {
                DataType::List(f) => f.data_type().clone(),
                other => other.clone(),
            };
            let element_col = Column {
                source_type: col
                    .source_type
                    .element
                    .as_deref()
                    .cloned()
                    .unwrap_or_else(|| SourceType::pg_other(0, "unknown", -1)),
                ..col.clone()
            };
            json!({"type": "array",
                   "items": conv_schema(element, &element_col, &item_dt, true, opts),
                   "optional": optional})
        }
    }
}

fn with_field(mut schema: Value, field: &str) -> Value {
    if let Value::Object(m) = &mut schema {
        m.insert("field".into(), Value::from(field));
    }
    schema
}

/// The struct schema of the row images (`<prefix>.<schema>.<table>.Value`) or of the key.
pub fn row_schema(
    table: &TableSchema,
    convs: &[Conv],
    key_only: bool,
    opts: &EncoderOptions,
) -> Value {
    let fields: Vec<Value> = table
        .columns
        .iter()
        .zip(convs)
        .filter(|(c, conv)| **conv != Conv::Omit && (!key_only || c.key))
        .map(|(c, conv)| {
            with_field(
                // Lossless mode writes null for a NOT NULL column an old image lacks.
                conv_schema(
                    conv,
                    c,
                    &c.data_type,
                    (c.nullable || opts.lossless) && !c.key,
                    opts,
                ),
                &c.name,
            )
        })
        .collect();
    let suffix = if key_only { "Key" } else { "Value" };
    json!({"type": "struct", "fields": fields, "optional": !key_only,
           "name": format!("{}.{}.{}.{}", opts.server_name, table.table.namespace, table.table.name, suffix)})
}

/// The Postgres `source` block schema.
pub fn source_schema() -> Value {
    let f = |ty: &str, optional: bool, field: &str| json!({"type": ty, "optional": optional, "field": field});
    json!({"type": "struct", "fields": [
        f("string", false, "version"), f("string", false, "connector"), f("string", false, "name"),
        f("int64", false, "ts_ms"),
        {"type": "string", "optional": true, "name": "io.debezium.data.Enum", "version": 1,
         "parameters": {"allowed": "true,first,first_in_data_collection,last_in_data_collection,last,false,incremental"},
         "default": "false", "field": "snapshot"},
        f("string", false, "db"), f("string", true, "sequence"), f("int64", true, "ts_us"),
        f("int64", true, "ts_ns"), f("string", false, "schema"), f("string", false, "table"),
        f("int64", true, "txId"), f("int64", true, "lsn"), f("int64", true, "xmin"),
        f("string", true, "origin"), f("int64", true, "origin_lsn")],
        "optional": false, "name": "io.debezium.connector.postgresql.Source", "version": 1})
}

/// The envelope schema (`<prefix>.<schema>.<table>.Envelope`, version 2).
pub fn envelope_schema(table: &TableSchema, value: &Value, opts: &EncoderOptions) -> Value {
    let mysql = table
        .columns
        .first()
        .is_some_and(|c| tidemark_model::mysql_types::is_mysql(&c.source_type));
    let source = if mysql {
        super::mysql::source_schema(match opts.connector {
            crate::config::Connector::Mysql => "mysql",
            _ => "mariadb",
        })
    } else {
        source_schema()
    };
    let txn = json!({"type": "struct", "fields": [
        {"type": "string", "optional": false, "field": "id"},
        {"type": "int64", "optional": false, "field": "total_order"},
        {"type": "int64", "optional": false, "field": "data_collection_order"}],
        "optional": true, "name": "event.block", "version": 1, "field": "transaction"});
    json!({"type": "struct", "fields": [
        with_field(value.clone(), "before"), with_field(value.clone(), "after"),
        with_field(source, "source"), txn,
        {"type": "string", "optional": false, "field": "op"},
        {"type": "int64", "optional": true, "field": "ts_ms"},
        {"type": "int64", "optional": true, "field": "ts_us"},
        {"type": "int64", "optional": true, "field": "ts_ns"}],
        "optional": false,
        "name": format!("{}.{}.{}.Envelope", opts.server_name, table.table.namespace, table.table.name),
        "version": 2})
}
