//! The filesystem tree: what the image shows once its layers are stacked, built by applying each
//! layer's entries, in order, onto the tree of the layers below.
//!
//! Names and inodes are kept apart, as in a real filesystem: a node ([`NodeId`]) is a name in a
//! directory, an inode ([`InodeId`]) is what the name points at. Hardlinks are several nodes sharing one inode, so an
//! upper layer that deletes or replaces one name of a hardlinked file leaves the other names
//! pointing at the old inode, exactly as a container runtime unpacking the layers would.
//!
//! Whiteouts follow the OCI image spec: `.wh.NAME` removes `NAME` from the layers below, and
//! `.wh..wh..opq` empties its directory of everything the layers below put there; neither appears
//! in the tree. Within one layer all whiteouts are applied before any entry is added, so a layer
//! may mark a directory opaque and fill it again, in any order.
//!
//! An image may hold hundreds of thousands of names, so the tree is packed: a node is 24 bytes
//! (its name in one arena shared by all names, found through one hash index by directory and
//! name), an inode 48 bytes (a file's chunks, almost always one run of the chunk table, are two
//! numbers); symlink targets, other chunk lists and xattrs sit in side tables. Readers get
//! borrowed views ([`InodeRef`]) and sorted listings ([`Tree::children`]).
//!
//! A layer's entries need not be held all at once: [`LayerBuilder`] builds a layer's trees as its
//! entries stream out of the tar, and [`PackedEntries`] keeps a layer's entries in a few dozen
//! bytes each where they are needed twice.

mod merge;
mod packed;
mod store;
mod stream;

pub use merge::LowerCopies;
pub use packed::PackedEntries;
pub use store::{Chunks, DataRef, Inode, InodeId, InodeRef, MetaRef, NodeId, Tree};
pub use stream::{BuiltLayer, LayerBuilder};
