//! Change batches → Arrow batches in a Delta table's schema. Pure: no IO, no clock.
//!
//! - [`types`]: the lossless type mapping and value conversion.
//! - [`markers`]: the `_markers` column.
//! - [`changelog`]: one row per change image, with `_change_type`, `_position`, ….
//! - [`mirror`]: the batch's net effect per key (one row per key) for the mirror MERGE.
//!
//! A [`Layout`] is the Delta table's column list: the data columns (every column the source
//! table ever had, by name, in Delta types) and the mode's system columns. Schema versions of
//! the source map onto it by column name; a column a version does not have is absent (null in
//! the changelog, the stored value kept in the mirror).

pub mod changelog;
pub mod markers;
pub mod mirror;
pub mod types;

use std::sync::Arc;

use arrow_array::ArrayRef;
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use tidemark_model::{ChangeBatch, Image, TableId, TableSchema};

use crate::config::TableMode;
use crate::error::DeltaError;

/// System column: the change's kind (changelog).
pub const CHANGE_TYPE: &str = "_change_type";
/// System column: the source position, in its checkpoint text form (`pg:0/16B3748:0/16B3700:12`).
pub const POSITION: &str = "_position";
/// System column: the order-preserving bytes of the position (sort by it).
pub const POSITION_KEY: &str = "_position_key";
/// System column: the source transaction id.
pub const TXID: &str = "_txid";
/// System column: the source commit time.
pub const COMMIT_TS: &str = "_commit_ts";

/// The system columns of a mode, in table order.
pub fn system_fields(mode: TableMode) -> Vec<Field> {
    match mode {
        TableMode::Mirror => vec![
            Field::new(POSITION, DataType::Utf8, true),
            markers::markers_field(),
        ],
        TableMode::Changelog => vec![
            Field::new(CHANGE_TYPE, DataType::Utf8, true),
            Field::new(POSITION, DataType::Utf8, true),
            Field::new(POSITION_KEY, DataType::Binary, true),
            Field::new(TXID, DataType::Int64, true),
            Field::new(
                COMMIT_TS,
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            markers::markers_field(),
        ],
    }
}

/// Names Delta reserves for its change feed: a mirror table (CDF on) cannot have them.
const CDF_RESERVED: [&str; 3] = ["_change_type", "_commit_version", "_commit_timestamp"];

/// The columns of one Delta table.
#[derive(Clone, Debug)]
pub struct Layout {
    pub table: TableId,
    pub mode: TableMode,
    /// Every column in table order (data and system).
    pub fields: Vec<Field>,
    /// Mirror: the key columns (data column names).
    pub key: Vec<String>,
}

impl Layout {
    /// The layout of a new table for `schema`.
    pub fn new(
        schema: &TableSchema,
        mode: TableMode,
        key: Vec<String>,
    ) -> Result<Self, DeltaError> {
        let mut fields = data_fields(schema, mode)?;
        fields.extend(system_fields(mode));
        let layout = Layout {
            table: schema.table.clone(),
            mode,
            fields,
            key,
        };
        layout.check_key()?;
        Ok(layout)
    }

    /// The layout of an existing table with these (Delta) columns.
    pub fn existing(
        table: TableId,
        mode: TableMode,
        fields: Vec<Field>,
        key: Vec<String>,
    ) -> Result<Self, DeltaError> {
        let layout = Layout {
            table,
            mode,
            fields,
            key,
        };
        layout.check_key()?;
        Ok(layout)
    }

    fn check_key(&self) -> Result<(), DeltaError> {
        for k in &self.key {
            if self.data_index(k).is_none() {
                return Err(DeltaError::UnknownKeyColumn {
                    table: self.table.clone(),
                    column: k.clone(),
                });
            }
        }
        Ok(())
    }

    /// The Arrow schema of the table.
    pub fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(self.fields.clone()))
    }

    /// Whether `name` is a system column of this mode.
    pub fn is_system(&self, name: &str) -> bool {
        system_fields(self.mode).iter().any(|f| f.name() == name)
    }

    /// Index of a data column by name.
    pub fn data_index(&self, name: &str) -> Option<usize> {
        self.fields
            .iter()
            .position(|f| f.name() == name && !self.is_system(name))
    }

    /// Follows a new source schema version: returns the columns to add to the table; a type
    /// change of an existing column is an error naming it.
    pub fn evolve(&mut self, schema: &TableSchema) -> Result<Vec<Field>, DeltaError> {
        let mut added = Vec::new();
        for f in data_fields(schema, self.mode)? {
            match self.fields.iter().find(|e| e.name() == f.name()) {
                Some(existing) if same_type(existing.data_type(), f.data_type()) => {}
                Some(existing) => {
                    return Err(DeltaError::Schema {
                        table: self.table.clone(),
                        column: f.name().clone(),
                        message: format!(
                            "type changed from Delta {} to {} ({}); delta-rs 0.32 cannot widen a \
                             column type (no typeWidening writes), so the table cannot follow. \
                             Write the table under a new path or recreate it",
                            existing.data_type(),
                            f.data_type(),
                            f.metadata()
                                .get(tidemark_model::table::META_SOURCE_TYPE)
                                .map(String::as_str)
                                .unwrap_or("?")
                        ),
                    })
                }
                None => {
                    self.fields.push(f.clone());
                    added.push(f);
                }
            }
        }
        Ok(added)
    }
}

/// Two Delta-side types are the same (list element names do not matter: Delta calls them
/// `element`, Arrow `item`).
pub fn same_type(a: &DataType, b: &DataType) -> bool {
    match (a, b) {
        (DataType::List(x), DataType::List(y)) | (DataType::LargeList(x), DataType::List(y)) => {
            same_type(x.data_type(), y.data_type())
        }
        (DataType::Struct(x), DataType::Struct(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y.iter())
                    .all(|(p, q)| p.name() == q.name() && same_type(p.data_type(), q.data_type()))
        }
        (DataType::Timestamp(u, Some(_)), DataType::Timestamp(v, Some(_))) => u == v,
        _ => a == b,
    }
}

/// The Delta data fields of a source schema version.
fn data_fields(schema: &TableSchema, mode: TableMode) -> Result<Vec<Field>, DeltaError> {
    let image = schema.image_fields();
    let system = system_fields(mode);
    let mut out = Vec::with_capacity(image.len());
    for (col, f) in schema.columns.iter().zip(image.iter()) {
        if system.iter().any(|s| s.name() == &col.name)
            || (mode == TableMode::Mirror && CDF_RESERVED.contains(&col.name.as_str()))
        {
            return Err(DeltaError::Schema {
                table: schema.table.clone(),
                column: col.name.clone(),
                message: format!(
                    "the name is reserved in {} tables (a Tidemark system column or a Delta \
                     change-feed column); rename the source column or use the other mode",
                    mode.as_str()
                ),
            });
        }
        let df = types::delta_field(f).map_err(|u| DeltaError::Type {
            table: schema.table.clone(),
            column: col.name.clone(),
            data_type: format!("{} / Arrow {}", col.source_type.display, col.data_type),
            reason: u.0,
        })?;
        out.push(df);
    }
    Ok(out)
}

/// One image of a change batch converted to Delta types, indexed by layout column (`None`
/// where this schema version has no such column, and for system columns).
pub fn convert_image(
    layout: &Layout,
    cb: &ChangeBatch,
    image: Image,
) -> Result<Vec<Option<ArrayRef>>, DeltaError> {
    let arrays = cb.image(image);
    let fields = cb.schema.image_fields();
    let mut out: Vec<Option<ArrayRef>> = vec![None; layout.fields.len()];
    for (i, f) in fields.iter().enumerate() {
        let Some(li) = layout.data_index(f.name()) else {
            continue;
        };
        let uuid = f
            .metadata()
            .get(tidemark_model::table::META_EXTENSION_NAME)
            .is_some_and(|n| n == "arrow.uuid");
        let conv = types::to_delta(arrays.column(i), uuid).map_err(|source| DeltaError::Arrow {
            table: layout.table.clone(),
            context: format!("converting column {} of the {image} image", f.name()),
            source,
        })?;
        out[li] = Some(conv);
    }
    Ok(out)
}

/// Layout indexes of the model columns of `schema` (None for a column the layout lacks).
pub fn column_map(layout: &Layout, schema: &TableSchema) -> Vec<Option<usize>> {
    schema
        .columns
        .iter()
        .map(|c| layout.data_index(&c.name))
        .collect()
}

/// The key columns of a source schema: configured ones, else the primary key.
pub fn key_columns(schema: &TableSchema, configured: &[String]) -> Vec<String> {
    if !configured.is_empty() {
        return configured.to_vec();
    }
    schema
        .columns
        .iter()
        .filter(|c| c.key)
        .map(|c| c.name.clone())
        .collect()
}

#[cfg(test)]
pub(crate) mod testutil;
