//! The on-disk formats, in one place (as erofs-utils keeps EROFS in `erofs_fs.h`): every
//! structure of a Nydus data blob and of a RAFS v5 or v6 bootstrap declared once, with its size
//! asserted at compile time and its encoding and decoding beside it. The writers (`blob`,
//! `rafs`), the reader and `check` all use these; `docs/format.md` describes them.

pub mod blob;
pub mod bootstrap;
pub mod rafs_v5;
pub mod rafs_v6;
