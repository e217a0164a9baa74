//! Integration tests on the real local servers: one test binary, one link (STYLE.md §6).
//!
//! Server-dependent tests run only with `TIDEMARK_TEST_PG=1` (set by `make test`), and print a
//! note otherwise, so `cargo test` works on a laptop without the services.

#[cfg(feature = "delta")]
mod delta_crash;
#[cfg(all(feature = "delta", feature = "mysql"))]
mod delta_mysql;
#[cfg(feature = "delta-s3")]
mod delta_s3;
#[cfg(feature = "delta")]
mod delta_sink;
#[cfg(feature = "delta")]
mod delta_source;
#[cfg(feature = "delta")]
mod delta_support;
#[cfg(all(feature = "iceberg", feature = "mysql"))]
mod iceberg_mysql;
#[cfg(feature = "iceberg")]
mod iceberg_rest;
#[cfg(feature = "iceberg")]
mod iceberg_s3;
#[cfg(feature = "iceberg")]
mod iceberg_sink;
#[cfg(feature = "iceberg")]
mod iceberg_source;
#[cfg(feature = "iceberg")]
mod iceberg_support;
#[cfg(feature = "kafka")]
mod kafka_compare;
#[cfg(feature = "kafka")]
mod kafka_sink;
#[cfg(all(feature = "kafka", feature = "iceberg"))]
mod kafka_source;
#[cfg(feature = "kafka")]
mod kafka_support;
#[cfg(feature = "mysql")]
mod mysql_debezium;
#[cfg(feature = "mysql")]
mod mysql_pipeline;
#[cfg(feature = "mysql")]
mod mysql_support;
mod pg_crash;
mod pg_debezium;
mod pg_ops;
mod pg_pipeline;
mod pg_replication;
mod pg_types;
mod private_servers;
#[cfg(any(feature = "iceberg", feature = "delta-s3"))]
mod s3_support;
#[cfg(feature = "mysql")]
mod snapshot_mysql;
#[cfg(feature = "mysql")]
mod snapshot_mysql_incremental;
mod snapshot_pg;
mod snapshot_retry;
mod snapshot_support;
mod support;
