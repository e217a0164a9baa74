//! Pure encoding (no IO): the Iceberg schema of a source table and its evolution
//! ([`schema`]), and change rows as Arrow batches in that schema ([`rows`]).

pub mod rows;
pub mod schema;

pub use rows::RowEncoder;
