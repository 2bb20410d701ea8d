//! The v5 reader on the fixture nydus-image 2.2.0 wrote (`testdata/ondisk/v5.boot`), on
//! bootstraps nydus-image 2.2.0 and 2.4.4 write in the test (skipped when the binaries are
//! missing), and on damaged copies: every damage an error, never a panic or a huge allocation.

use std::path::PathBuf;
use std::process::Command;

use super::*;

fn fixture() -> Vec<u8> {
    let path = format!("{}/testdata/ondisk/v5.boot", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn open(bytes: Vec<u8>) -> BootstrapReader {
    BootstrapReader::open(bytes).unwrap()
}

#[test]
fn the_fixture_tree_is_what_layer5_py_wrote() {
    let r = open(fixture());
    let tree = r.tree().unwrap();
    let paths: Vec<&[u8]> = tree.keys().map(Vec::as_slice).collect();
    assert_eq!(
        paths,
        [
            &b"/"[..],
            b"/dir",
            b"/dir/hard",
            b"/dir/multi.bin",
            b"/dir/small.txt",
            b"/empty",
            b"/link",
            b"/null",
            b"/sub",
            b"/sub/dup",
        ]
    );
    let dir = &tree[&b"/dir".to_vec()];
    assert_eq!(
        (dir.kind, dir.uid, dir.gid, dir.nlink),
        (Kind::Dir, 70000, 70001, 2)
    );
    let (hard, small) = (
        &tree[&b"/dir/hard".to_vec()],
        &tree[&b"/dir/small.txt".to_vec()],
    );
    assert_eq!(
        (hard.nid, small.nid, small.nlink, small.size),
        (7, 7, 2, 12)
    );
    let multi = &tree[&b"/dir/multi.bin".to_vec()];
    assert_eq!((multi.size, multi.chunks.len()), (9192, 3));
    assert_eq!(
        multi.xattrs.get(&b"user.foo"[..]).map(Vec::as_slice),
        Some(&b"bar"[..])
    );
    assert!(multi.chunks.iter().all(|c| c.blob_index() == Some(0)));
    assert_eq!(&*tree[&b"/link".to_vec()].symlink, b"dir/small.txt");
    let null = &tree[&b"/null".to_vec()];
    assert_eq!((null.kind, null.rdev), (Kind::CharDevice, (1, 3)));
    assert_eq!(tree[&b"/empty".to_vec()].chunks.len(), 0);
    // `sub/dup` repeats the first chunk of `multi.bin`: the same chunk record.
    assert_eq!(tree[&b"/sub/dup".to_vec()].chunks[0], multi.chunks[0]);
    assert_eq!(tree[&b"/".to_vec()].mtime, 0);
}

#[test]
fn tables_lookup_and_chunk_records() {
    let r = open(fixture());
    assert_eq!(r.entries(), 10);
    assert_eq!(r.chunk_size(), 4096);
    assert!(!r.sha256());
    let blobs = r.blob_table();
    assert_eq!(blobs.len(), 1);
    assert_eq!(blobs[0].blob_id.len(), 64);
    let ext = r.ext_blob_table();
    assert_eq!((ext.len(), ext[0].chunk_count), (1, 4));
    assert!(r.prefetch_table().is_empty());
    let multi = r.lookup(b"/dir/multi.bin").unwrap();
    assert_eq!(multi.name, b"multi.bin");
    assert_eq!(multi.xattr_pairs, 1);
    let offsets: Vec<u64> = multi.chunks.iter().map(|c| c.file_offset).collect();
    assert_eq!(offsets, [0, 4096, 8192]);
    // Laid end to end after `small.txt`'s 12 bytes... in the order the builder met them.
    let ends: u64 = multi
        .chunks
        .iter()
        .map(|c| u64::from(c.uncompressed_size))
        .sum();
    assert_eq!(ends, 9192);
    assert_eq!(r.children(&r.record(1).unwrap()).unwrap(), 2..7);
    assert!(r.lookup(b"/dir/nothing").is_err());
    assert!(r.lookup(b"/empty/below").is_err());
    assert_eq!(r.lookup(b"/").unwrap().slot, 1);
}

/// A copy of the fixture with the `u32` at `at` set to `v`.
fn with_u32(at: usize, v: u32) -> Vec<u8> {
    let mut b = fixture();
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    b
}

/// Byte offset of the record of inode number `slot` in the fixture.
fn record_at(slot: u64) -> usize {
    open(fixture()).record_offset(slot).unwrap() as usize
}

#[test]
fn damage_is_an_error_never_a_panic() {
    let sound = fixture();
    // Truncated anywhere: the walk fails or sees less, never panics.
    for len in [
        0,
        100,
        8191,
        8192,
        8200,
        8300,
        sound.len() / 2,
        sound.len() - 1,
    ] {
        let cut = sound[..len].to_vec();
        if let Ok(r) = BootstrapReader::open(cut) {
            assert!(r.tree().is_err(), "cut at {len}");
            let _ = (r.blob_table(), r.ext_blob_table(), r.prefetch_table());
        }
    }
    let root = record_at(1);
    let dir = record_at(2);
    let multi = record_at(8);
    for (what, bytes) in [
        // inode table: past the end.
        ("table offset", {
            let mut b = fixture();
            b[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
            b
        }),
        ("record offset", with_u32(8192, u32::MAX)),
        // the root's child range past the table, and reaching itself (a cycle).
        ("child count", with_u32(root + 96, u32::MAX)),
        ("child index", with_u32(root + 92, 1)),
        ("dir's children", with_u32(dir + 92, 1)),
        // a name running past the end, a mode with no type, a huge chunk count.
        ("name size", {
            let mut b = fixture();
            b[root + 100..root + 102].copy_from_slice(&u16::MAX.to_le_bytes());
            b.truncate(root + 128 + 1000);
            b
        }),
        ("mode", with_u32(multi + 60, 0o777)),
        ("chunks", with_u32(multi + 96, u32::MAX)),
        ("xattr size", {
            let mut b = fixture();
            let at = multi + 128 + 16;
            b[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
            b
        }),
    ] {
        let r = open(bytes);
        assert!(r.tree().is_err(), "{what}");
        let _ = (r.blob_table(), r.ext_blob_table(), r.prefetch_table());
        let _ = r.lookup(b"/dir/multi.bin");
    }
    // A huge inode table count: the tree (inside the table) reads as before, the entries past
    // the end are errors.
    let r = open(with_u32(56, u32::MAX));
    assert_eq!(r.tree().unwrap().len(), 10);
    assert!(r.record(u64::from(u32::MAX)).is_err());
    assert!(r.record(0).is_err());
    // Tables claiming more than the file holds give what lies inside, no more.
    let mut b = with_u32(68, u32::MAX);
    b[60..64].copy_from_slice(&u32::MAX.to_le_bytes());
    let r = open(b);
    assert!(r.ext_blob_table().len() <= r.bytes().len() / 64);
    assert!(r.prefetch_table().is_empty());
}

#[test]
fn a_child_named_dot_dot_is_refused() {
    // `/dir`'s name is 3 bytes: make it `..` (size 2).
    let dir = record_at(2);
    let mut b = fixture();
    b[dir + 100..dir + 102].copy_from_slice(&2u16.to_le_bytes());
    b[dir + 128..dir + 130].copy_from_slice(b"..");
    let err = open(b).tree().unwrap_err();
    assert!(err.contains("no path can hold"), "{err}");
}

/// A bootstrap of `depth` nested directories, each the only child of the one before, built by
/// hand: records laid out after the tables, child index = own number + 1.
fn deep(depth: u32) -> Vec<u8> {
    let entries = depth + 1;
    let table_at = RafsV5SuperBlock::SIZE;
    let records_at = table_at + align8(4 * entries as usize);
    let record = RafsV5Inode::SIZE + 8;
    let mut sb = RafsV5SuperBlock {
        s_block_size: 4096,
        s_flags: crate::ondisk::rafs_v6::RAFS_SUPER_FLAG_HASH_BLAKE3,
        s_inode_table_entries: entries,
        s_inodes_count: u64::from(entries),
        ..RafsV5SuperBlock::default()
    };
    sb.s_prefetch_table_offset = records_at as u64;
    sb.s_blob_table_offset = records_at as u64;
    let mut out = sb.to_bytes().to_vec();
    let offsets: Vec<u32> = (0..entries)
        .map(|i| ((records_at + i as usize * record) >> 3) as u32)
        .collect();
    out.extend(encode_u32_table(&offsets));
    for ino in 1..=entries {
        let inode = RafsV5Inode {
            i_ino: u64::from(ino),
            i_parent: u64::from(ino - 1),
            i_mode: libc::S_IFDIR | 0o755,
            i_nlink: 2 + u32::from(ino < entries),
            i_child_index: if ino < entries { ino + 1 } else { 0 },
            i_child_count: u32::from(ino < entries),
            i_name_size: 1,
            i_rdev: RAFS_V5_NO_RDEV,
            ..RafsV5Inode::default()
        };
        out.extend(inode.to_bytes());
        out.extend(b"d\0\0\0\0\0\0\0");
    }
    out
}

#[test]
fn a_deep_tree_is_walked_without_recursion_within_the_budget() {
    let r = open(deep(2000));
    let tree = r.tree().unwrap();
    assert_eq!(tree.len(), 2001);
    assert!(tree.keys().any(|p| p.len() == 2 * 2000));
    // Pointing the deepest at the root makes a cycle: refused, not followed.
    let mut b = deep(50);
    let last = open(b.clone()).record_offset(51).unwrap() as usize;
    b[last + 92..last + 96].copy_from_slice(&1u32.to_le_bytes());
    b[last + 96..last + 100].copy_from_slice(&1u32.to_le_bytes());
    let err = open(b).tree().unwrap_err();
    assert!(err.contains("reached twice"), "{err}");
}

#[test]
fn directories_sharing_one_huge_child_range_are_refused_quickly() {
    // 200k directories, each naming all of them as its children: a walk following them would
    // list 4·10^10 paths; the second visit of a directory (or else the path budget) ends it.
    let n = 200_000u32;
    let sb = RafsV5SuperBlock {
        s_block_size: 4096,
        s_inode_table_entries: n,
        ..RafsV5SuperBlock::default()
    };
    let mut out = sb.to_bytes().to_vec();
    let root_at = RafsV5SuperBlock::SIZE + align8(4 * n as usize);
    let dir_at = root_at + RafsV5Inode::SIZE + 8;
    let mut table = vec![(dir_at >> 3) as u32; n as usize];
    table[0] = (root_at >> 3) as u32;
    out.extend(encode_u32_table(&table));
    let dir = |ino: u64, name: u8| {
        let inode = RafsV5Inode {
            i_ino: ino,
            i_parent: ino - 1,
            i_mode: libc::S_IFDIR | 0o755,
            i_nlink: 2,
            i_child_index: 2,
            i_child_count: n - 1,
            i_name_size: 1,
            ..RafsV5Inode::default()
        };
        let mut r = inode.to_bytes().to_vec();
        r.extend([name, 0, 0, 0, 0, 0, 0, 0]);
        r
    };
    out.extend(dir(1, b'/'));
    out.extend(dir(2, b'd'));
    let started = std::time::Instant::now();
    let err = open(out).tree().unwrap_err();
    assert!(
        err.contains("reached twice") || err.contains("exceed"),
        "{err}"
    );
    assert!(started.elapsed().as_secs() < 30);
}

/// nydus-image `version` at `/var/cache/nydus-offline`, if installed.
fn nydus_image(version: &str) -> Option<PathBuf> {
    let path = PathBuf::from(format!(
        "/var/cache/nydus-offline/nydus-{version}/bin/nydus-image"
    ));
    path.exists().then_some(path)
}

/// A layer tar: nested directories, files of several chunks, an empty file, a symlink, a hard
/// link, a fifo, a char device and an xattr on a file with one name.
fn layer_tar() -> Vec<u8> {
    let mut b = ::tar::Builder::new(Vec::new());
    let mut add = |name: &str, kind: ::tar::EntryType, data: &[u8], link: Option<&str>| {
        let mut h = ::tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(if kind == ::tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        // nydus-image reads the device fields of every entry as numbers.
        h.set_device_major(0).unwrap();
        h.set_device_minor(0).unwrap();
        if let Some(link) = link {
            b.append_link(&mut h, name, link).unwrap();
        } else {
            b.append_data(&mut h, name, data).unwrap();
        }
    };
    use ::tar::EntryType as T;
    add("a", T::Directory, b"", None);
    add("a/b", T::Directory, b"", None);
    add("a/b/c", T::Directory, b"", None);
    let big: Vec<u8> = (0..5 * 4096 + 77).map(|i| (i * 7 % 251) as u8).collect();
    add("a/b/c/big", T::Regular, &big, None);
    add("a/one", T::Regular, b"one\n", None);
    add("a/two", T::Link, b"", Some("a/one"));
    add("empty", T::Regular, b"", None);
    add("ln", T::Symlink, b"", Some("a/b/c/big"));
    add("fifo", T::Fifo, b"", None);
    let mut h = ::tar::Header::new_gnu();
    h.set_entry_type(T::Char);
    h.set_device_major(1).unwrap();
    h.set_device_minor(5).unwrap();
    h.set_mode(0o666);
    h.set_size(0);
    b.append_data(&mut h, "zero", &b""[..]).unwrap();
    b.append_pax_extensions([("SCHILY.xattr.user.k", &b"v"[..])])
        .unwrap();
    let mut h = ::tar::Header::new_gnu();
    h.set_device_major(0).unwrap();
    h.set_device_minor(0).unwrap();
    h.set_mode(0o600);
    h.set_size(3);
    b.append_data(&mut h, "x", &b"xyz"[..]).unwrap();
    b.into_inner().unwrap()
}

/// The v5 bootstrap nydus-image `version` writes for [`layer_tar`], with `digester`.
fn nydus_bootstrap(exe: &PathBuf, digester: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("layer.tar");
    std::fs::write(&tar, layer_tar()).unwrap();
    let boot = dir.path().join("boot");
    let out = Command::new(exe)
        .args(["create", "--type", "tar-rafs", "--fs-version", "5"])
        .args(["--chunk-size", "0x1000", "--digester", digester])
        .arg("--bootstrap")
        .arg(&boot)
        .arg("--blob")
        .arg(dir.path().join("blob"))
        .arg(&tar)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(&boot).unwrap()
}

#[test]
fn bootstraps_of_nydus_image_2_2_and_2_4_read_back_as_the_tar_was() {
    let mut ran = 0;
    for version in ["2.2.0", "2.4.4"] {
        let Some(exe) = nydus_image(version) else {
            eprintln!("nydus-image {version} not installed: skipped");
            continue;
        };
        for digester in ["blake3", "sha256"] {
            ran += 1;
            let r = open(nydus_bootstrap(&exe, digester));
            assert_eq!(r.sha256(), digester == "sha256");
            let tree = r.tree().unwrap();
            let get = |p: &str| &tree[&p.as_bytes().to_vec()];
            assert_eq!(get("/a/b/c/big").size, 5 * 4096 + 77);
            assert_eq!(get("/a/b/c/big").chunks.len(), 6);
            assert_eq!(get("/a/one").nid, get("/a/two").nid);
            assert_eq!(get("/a/two").nlink, 2);
            assert_eq!(&*get("/ln").symlink, b"a/b/c/big");
            assert_eq!(get("/fifo").kind, Kind::Fifo);
            assert_eq!(get("/zero").rdev, (1, 5));
            assert_eq!(get("/x").xattrs.len(), 1);
            assert_eq!(tree.len(), 12, "{version} {digester}");
            let big = r.lookup(b"/a/b/c/big").unwrap();
            let sizes: Vec<u32> = big.chunks.iter().map(|c| c.uncompressed_size).collect();
            assert_eq!(sizes, [4096, 4096, 4096, 4096, 4096, 77]);
        }
    }
    eprintln!("{ran} nydus-image bootstraps read");
}
