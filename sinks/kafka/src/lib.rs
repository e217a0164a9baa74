//! Kafka sink for Tidemark: Debezium-compatible topics, keys, envelopes and tombstones.
//!
//! Work in progress: nothing here yet.
