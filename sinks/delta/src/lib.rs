//! Delta Lake sink for Tidemark: mirror and changelog tables with Change Data Feed and exactly-once commits.
//!
//! Work in progress: nothing here yet.
