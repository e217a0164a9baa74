//! Table identity and versioned table schemas.
//!
//! A [`TableSchema`] is what every change batch of one table and schema version shares: the
//! columns as the source described them, and the full Arrow schema of the batch (system columns,
//! `before`/`after` image structs, `_markers`). It is built once per schema version and shared
//! as `Arc<TableSchema>`; batches never mix versions.
//!
//! # Traps
//! - Every image field is nullable in Arrow even when the source column is `NOT NULL`: a
//!   key-only old image leaves non-key columns null, and an unchanged TOAST value is a null slot
//!   with a marker. `Column::nullable` keeps what the source said.
//! - A table without a primary key has no key columns, even with REPLICA IDENTITY FULL/INDEX
//!   (Debezium does the same).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

/// Field metadata key: the source type's SQL display form.
pub const META_SOURCE_TYPE: &str = "tidemark.source_type";
/// Field metadata key: `"true"` on primary key columns.
pub const META_KEY: &str = "tidemark.key";
/// Arrow's extension type name key.
pub const META_EXTENSION_NAME: &str = "ARROW:extension:name";
/// Arrow's extension type metadata key.
pub const META_EXTENSION_METADATA: &str = "ARROW:extension:metadata";

/// Names of the change batch columns, in order.
pub mod columns {
    pub const OP: &str = "_op";
    pub const POSITION: &str = "_position";
    pub const TXID: &str = "_txid";
    pub const COMMIT_TS: &str = "_commit_ts";
    pub const BEFORE: &str = "before";
    pub const AFTER: &str = "after";
    pub const MARKERS: &str = "_markers";
    /// Column indexes in the `RecordBatch`.
    pub const OP_INDEX: usize = 0;
    pub const POSITION_INDEX: usize = 1;
    pub const TXID_INDEX: usize = 2;
    pub const COMMIT_TS_INDEX: usize = 3;
    pub const BEFORE_INDEX: usize = 4;
    pub const AFTER_INDEX: usize = 5;
    pub const MARKERS_INDEX: usize = 6;
}

/// A table: Postgres schema + table, MySQL database + table.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct TableId {
    pub namespace: String,
    pub name: String,
}

impl TableId {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        TableId {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for TableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.namespace, self.name)
    }
}

/// What the source called a column's type. Postgres constructors are in [`crate::pg_types`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct SourceType {
    /// Base type name as in `pg_type.typname` (`int4`, `_text`, an enum's own name).
    pub name: String,
    /// Type OID (Postgres); 0 where the source has none.
    pub oid: u32,
    /// `atttypmod`, -1 if none.
    pub modifier: i32,
    /// SQL form as `format_type()` prints it (`numeric(10,2)`, `integer[]`).
    pub display: String,
    /// Element type of an array.
    pub element: Option<Box<SourceType>>,
    /// Labels of an enum, in sort order.
    pub labels: Vec<String>,
    /// What the catalog says about a user-defined range, multirange or composite type (and an
    /// array of one), needed to render its binary form as text; `None` for every other type.
    /// Absent in schemas serialised before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub structure: Option<Box<TypeStructure>>,
}

/// The structure of a user-defined type whose values are kept as their text form (Utf8) but
/// whose binary form needs the types it is made of (see `pg_value::structured`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum TypeStructure {
    /// A range type (`pg_range.rngsubtype`, domains resolved to their base type).
    Range { subtype: SourceType },
    /// A multirange type: ranges over `subtype` (the subtype of `pg_range.rngtypid` of the
    /// multirange's `rngmultitypid` entry).
    Multirange { subtype: SourceType },
    /// A composite type: its live attributes in `attnum` order (dropped ones are neither in
    /// the catalog nor in `record_send`'s output).
    Composite { fields: Vec<CompositeField> },
    /// An array of one of the above, kept as the array's text (not an Arrow list, as the text
    /// format has always given it).
    Array { element: SourceType },
}

/// One attribute of a composite type.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct CompositeField {
    pub name: String,
    /// The declared type OID (`pg_attribute.atttypid`, a domain's own OID): `record_send`
    /// writes it before each field, and it is compared with the wire's.
    pub type_oid: u32,
    /// The field's type with domains resolved.
    pub source_type: SourceType,
}

/// One column of a table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub source_type: SourceType,
    /// The Arrow type of the column's values in `before`/`after`.
    pub data_type: DataType,
    /// Whether the source allows NULL (Arrow fields are always nullable, see the module doc).
    pub nullable: bool,
    /// Part of the primary key (Debezium's message key).
    pub key: bool,
}

impl Column {
    pub fn new(
        name: impl Into<String>,
        source_type: SourceType,
        data_type: DataType,
        nullable: bool,
        key: bool,
    ) -> Self {
        Column {
            name: name.into(),
            source_type,
            data_type,
            nullable,
            key,
        }
    }

    /// A Postgres column: the Arrow type comes from [`crate::pg_types::arrow_type`].
    pub fn postgres(
        name: impl Into<String>,
        source_type: SourceType,
        nullable: bool,
        key: bool,
    ) -> Self {
        let data_type = crate::pg_types::arrow_type(&source_type);
        Column::new(name, source_type, data_type, nullable, key)
    }

    /// A MySQL/MariaDB column: the Arrow type comes from [`crate::MysqlType::arrow_type`].
    pub fn mysql(
        name: impl Into<String>,
        mysql_type: &crate::MysqlType,
        nullable: bool,
        key: bool,
    ) -> Self {
        let data_type = mysql_type.arrow_type();
        Column::new(name, mysql_type.source_type(), data_type, nullable, key)
    }

    /// The Arrow field of this column inside the image structs, with its metadata.
    pub fn image_field(&self) -> Field {
        let mut meta = HashMap::new();
        meta.insert(
            META_SOURCE_TYPE.to_owned(),
            self.source_type.display.clone(),
        );
        if self.key {
            meta.insert(META_KEY.to_owned(), "true".to_owned());
        }
        if let Some(ext) = crate::pg_types::extension_name(&self.source_type, &self.data_type) {
            add_extension(&mut meta, ext);
        }
        if let Some(ext) = crate::mysql_types::extension_name(&self.source_type) {
            add_extension(&mut meta, ext);
        }
        Field::new(&self.name, self.data_type.clone(), true).with_metadata(meta)
    }
}

/// Adds `ARROW:extension:name` (and the metadata canonical JSON requires).
pub(crate) fn add_extension(meta: &mut HashMap<String, String>, ext: &str) {
    meta.insert(META_EXTENSION_NAME.to_owned(), ext.to_owned());
    if ext == "arrow.json" {
        // arrow.json requires the metadata key (empty string); arrow.uuid forbids it.
        meta.insert(META_EXTENSION_METADATA.to_owned(), String::new());
    }
}

/// A table's columns at one schema version, plus the Arrow schema of its change batches.
#[derive(Clone, Debug, PartialEq)]
pub struct TableSchema {
    pub table: TableId,
    /// Starts at 1; +1 each time the source reports a different column set or types.
    pub version: u32,
    pub columns: Vec<Column>,
    /// The full schema of the change batches (see the crate doc).
    pub arrow: SchemaRef,
}

/// The latest schema of each table, with one version sequence per table: a decoder numbers a
/// table's schemas with it, and the sequence goes on across sessions (reconnects) and from an
/// initial snapshot's schemas. Sinks cache their encodings per table and version, so within one
/// process a version number must never stand for two column sets.
#[derive(Debug, Clone, Default)]
pub struct SchemaVersions(HashMap<TableId, Arc<TableSchema>>);

impl SchemaVersions {
    /// The table's latest schema.
    pub fn get(&self, table: &TableId) -> Option<&Arc<TableSchema>> {
        self.0.get(table)
    }

    /// The table's schema with `columns`: its latest when the columns are the same, else the
    /// next version (version 1 for a table not seen yet), which becomes the latest.
    pub fn next(&mut self, table: &TableId, columns: Vec<Column>) -> Arc<TableSchema> {
        let schema = match self.0.get(table) {
            Some(prev) if prev.same_columns(&columns) => return Arc::clone(prev),
            Some(prev) => TableSchema::new(table.clone(), prev.version + 1, columns),
            None => TableSchema::new(table.clone(), 1, columns),
        };
        self.0.insert(table.clone(), Arc::clone(&schema));
        schema
    }

    /// The table's latest schema; for a table not seen yet, `columns` become its version 1.
    pub fn latest_or(&mut self, table: &TableId, columns: Vec<Column>) -> Arc<TableSchema> {
        Arc::clone(
            self.0
                .entry(table.clone())
                .or_insert_with(|| TableSchema::new(table.clone(), 1, columns)),
        )
    }
}

impl FromIterator<Arc<TableSchema>> for SchemaVersions {
    fn from_iter<I: IntoIterator<Item = Arc<TableSchema>>>(iter: I) -> Self {
        SchemaVersions(iter.into_iter().map(|s| (s.table.clone(), s)).collect())
    }
}

impl TableSchema {
    /// Builds the schema and its Arrow form.
    pub fn new(table: TableId, version: u32, columns: Vec<Column>) -> Arc<TableSchema> {
        let arrow = Arc::new(change_schema(&columns));
        Arc::new(TableSchema {
            table,
            version,
            columns,
            arrow,
        })
    }

    /// Key columns with their indexes, in table order.
    pub fn key_columns(&self) -> impl Iterator<Item = (usize, &Column)> + '_ {
        self.columns.iter().enumerate().filter(|(_, c)| c.key)
    }

    /// Whether the table has a primary key.
    pub fn has_key(&self) -> bool {
        self.columns.iter().any(|c| c.key)
    }

    /// Index of a column by name.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// Whether `columns` describe the same columns (names, types, nullability, key) as this
    /// version, i.e. no new version is needed.
    pub fn same_columns(&self, columns: &[Column]) -> bool {
        self.columns == columns
    }

    /// The fields of the `before`/`after` structs.
    pub fn image_fields(&self) -> &Fields {
        match self.arrow.field(columns::AFTER_INDEX).data_type() {
            DataType::Struct(f) => f,
            // INVARIANT: `change_schema` builds field 5 as a struct.
            _ => unreachable!("after column is a struct by construction"),
        }
    }
}

/// The `_markers` list item: `{image, column, kind, detail}`.
pub fn marker_fields() -> Fields {
    Fields::from(vec![
        Field::new("image", DataType::UInt8, false),
        Field::new("column", DataType::UInt32, false),
        Field::new("kind", DataType::UInt8, false),
        Field::new("detail", DataType::Utf8, true),
    ])
}

/// The `_markers` column type.
pub fn markers_type() -> DataType {
    DataType::List(Arc::new(Field::new(
        "item",
        DataType::Struct(marker_fields()),
        false,
    )))
}

/// The `_commit_ts` column type.
pub fn commit_ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn change_schema(cols: &[Column]) -> Schema {
    let image = DataType::Struct(cols.iter().map(Column::image_field).collect());
    Schema::new(vec![
        Field::new(columns::OP, DataType::UInt8, false),
        Field::new(columns::POSITION, DataType::Binary, false),
        Field::new(columns::TXID, DataType::UInt64, true),
        Field::new(columns::COMMIT_TS, commit_ts_type(), true),
        Field::new(columns::BEFORE, image.clone(), true),
        Field::new(columns::AFTER, image, true),
        Field::new(columns::MARKERS, markers_type(), true),
    ])
}
