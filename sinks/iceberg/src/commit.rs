//! Making data durable and idempotent: the SQL catalog's compare-and-swap ([`catalog`]) and
//! snapshots written on the iceberg crate's public spec types ([`snapshot`]).

pub mod catalog;
pub mod snapshot;
