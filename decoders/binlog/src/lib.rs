//! Sans-IO decoder of MySQL/MariaDB row-based binlog events into Tidemark's Arrow change model.
//!
//! Work in progress: nothing here yet.
