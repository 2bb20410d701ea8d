//! RAFS v5: Nydus's own bootstrap format (nydusd only, no kernel reader), written by
//! [`writer`] from the structures [`crate::ondisk::rafs_v5`] declares.

pub mod writer;
