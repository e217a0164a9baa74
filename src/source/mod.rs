#[cfg(feature = "mysql")]
pub mod mysql;
pub mod postgres;
