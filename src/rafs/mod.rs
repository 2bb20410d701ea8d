//! RAFS bootstrap writers: the merged tree laid out as RAFS v6 metadata (EROFS-compatible, what
//! nydusd and the kernel mount). v6 is the only version written today.

pub mod v6;
