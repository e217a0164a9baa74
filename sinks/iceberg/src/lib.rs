//! Apache Iceberg sink for Tidemark: mirror tables with position deletes, changelog tables, exactly-once commits.
//!
//! Work in progress: nothing here yet.
