#[cfg(feature = "delta")]
pub mod delta;
#[cfg(feature = "mysql")]
pub mod mysql;
pub mod postgres;
