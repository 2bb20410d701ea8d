//! RAFS bootstrap writers: the merged tree laid out as RAFS v6 (EROFS-compatible, the default) or
//! RAFS v5 metadata.

pub mod v6;
