//! RAFS v6: the EROFS-compatible bootstrap layout. [`ondisk`] declares its on-disk structures.

pub mod ondisk;
pub mod writer;
