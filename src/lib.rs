//! The `tidemark` engine: configuration, sources (the network side of each replication protocol),
//! the engine (router, checkpointer, backpressure), metrics and the CLI's subcommands.
//!
//! The decoders (`tidemark-pgoutput`) and sinks (`tidemark-debezium`, …) are separate crates; this
//! crate wires them together. See `docs/` and `../shared/ARCHITECTURE.md` for the data flow.

pub mod checkpoint;
pub mod compare;
pub mod config;
pub mod diff;
pub mod engine;
pub mod generate;
#[cfg(feature = "iceberg")]
pub mod iceberg_cli;
pub mod metrics;
pub mod pipeline;
pub mod snapshot;
pub mod source;
