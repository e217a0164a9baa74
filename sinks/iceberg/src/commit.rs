//! Making data durable and idempotent: the catalog's atomic commit ([`catalog`]: the SQL
//! catalog's compare-and-swap, or the REST catalog's requirements in [`rest`]) and snapshots
//! written on the iceberg crate's public spec types ([`snapshot`]).

pub mod catalog;
pub mod rest;
pub mod snapshot;
