//! RAFS v6: the EROFS-compatible bootstrap layout, written by [`writer`] from the structures
//! [`crate::ondisk::rafs_v6`] declares.

pub mod writer;
