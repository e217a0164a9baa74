#[cfg(feature = "delta")]
pub mod delta;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "mysql")]
pub mod mysql;
pub mod postgres;
