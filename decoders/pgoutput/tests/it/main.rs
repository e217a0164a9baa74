//! Tests of the pgoutput protocol layer: one binary (one link) with a module per concern.

mod errors;
mod golden;
mod replication;
mod roundtrip;
mod versions;
