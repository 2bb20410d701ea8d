//! Proof that the test harness judges correctly, before our own writer is involved: a Nydus image
//! built by the reference tools (nydus-image 2.2.0) must show umoci's tree through every real
//! reader, and a single altered byte, mode or xattr on the expected side must be reported as
//! exactly that difference.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::tree::{self, Difference, ListOptions};
use common::{mounts, reference, registry, unpack};

/// umoci's tree of the sample image, and the reference Nydus image of it, in one scratch dir.
struct Fixture {
    rootfs: std::path::PathBuf,
    nydus: reference::NydusImage,
    image: reference::OciImage,
}

fn fixture(scratch: &Path) -> Fixture {
    let sample = common::sample_image();
    let rootfs = unpack::umoci_sample(scratch);
    let image = reference::read_oci(&sample, "latest");
    let nydus = reference::build(&image, scratch, &[]);
    Fixture {
        rootfs,
        nydus,
        image,
    }
}

impl Fixture {
    /// The reference image mounted by nydusd 2.2.0 (localfs), for the harness's self-tests.
    fn mount(&self, scratch: &Path) -> mounts::Mounted {
        mounts::nydusd_localfs(
            mounts::NYDUSD[0],
            &self.nydus.bootstrap,
            &self.nydus.blob_dir,
            scratch,
            "mnt",
        )
    }
}

#[test]
fn reference_image_through_nydusd_localfs_equals_umoci() {
    let scratch = common::scratch();
    let f = fixture(scratch.path());
    let expected = tree::list(&f.rootfs, ListOptions::NYDUSD);
    for version in mounts::NYDUSD {
        let mnt = mounts::nydusd_localfs(
            version,
            &f.nydus.bootstrap,
            &f.nydus.blob_dir,
            scratch.path(),
            "mnt",
        );
        let actual = tree::list(&mnt.dir, ListOptions::NYDUSD);
        tree::assert_same_nydusd(
            &expected,
            &actual,
            &format!("nydusd {version} (localfs) of the reference image"),
        );
    }
}

#[test]
fn reference_image_through_kernel_erofs_equals_umoci() {
    let scratch = common::scratch();
    let f = fixture(scratch.path());
    let expected = tree::list(&f.rootfs, ListOptions::KERNEL);
    let mnt = mounts::erofs(&f.nydus.bootstrap, scratch.path(), "mnt");
    let actual = tree::list(&mnt.dir, ListOptions::KERNEL);
    tree::assert_same(
        &expected,
        &actual,
        "kernel EROFS mount of the reference bootstrap",
    );
    // The sample's hardlink must really be seen as one, or the comparison proved less than it says.
    let tool = &actual.entries[&b"/bin/tool".to_vec()];
    assert_eq!(tool.nlink, Some(2));
    assert_eq!(tool.hardlink.as_deref(), Some(&b"/bin/tool"[..]));
}

#[test]
fn reference_image_through_registry_equals_umoci() {
    let scratch = common::scratch();
    let f = fixture(scratch.path());
    let layout = scratch.path().join("nydus.oci");
    reference::package_oci(&f.nydus, &f.image, &layout, "nydus");
    let registry = registry::Registry::start();
    registry.push(&layout, "nydus", "sample");
    // The bootstrap comes from the pushed image's bootstrap layer; the data blobs are fetched
    // lazily by nydusd from the registry.
    let pushed = reference::read_oci(&layout, "nydus");
    let (media_type, boot_layer) = pushed.layers.last().unwrap();
    let tar_path = scratch.path().join("bootstrap.tar");
    reference::uncompressed_tar(media_type, boot_layer, &tar_path);
    let boot_dir = scratch.path().join("bootstrap");
    tar::Archive::new(fs::File::open(&tar_path).unwrap())
        .unpack(&boot_dir)
        .unwrap();
    let mnt = mounts::nydusd_registry(
        mounts::NYDUSD[0],
        &boot_dir.join("image/image.boot"),
        &registry.host,
        "sample",
        scratch.path(),
        "mnt",
    );
    let expected = tree::list(&f.rootfs, ListOptions::NYDUSD);
    let actual = tree::list(&mnt.dir, ListOptions::NYDUSD);
    tree::assert_same_nydusd(
        &expected,
        &actual,
        "nydusd (registry backend) of the pushed reference image",
    );
    drop(mnt);
    drop(registry);
}

/// Alter the expected side, list it again, and return the differences against the reader's tree.
fn diff_after(
    rootfs: &Path,
    actual: &tree::Listing,
    opts: ListOptions,
    alter: impl FnOnce(&Path),
) -> Vec<Difference> {
    let before = tree::list(rootfs, opts);
    assert!(
        before.diff(actual).is_empty(),
        "trees differ before the alteration"
    );
    alter(rootfs);
    // Editing a file also stamps it and its directory with the current time; put every mtime
    // back so that only the intended alteration remains.
    restore_mtimes(rootfs, &before);
    tree::list(rootfs, opts).diff(actual)
}

fn restore_mtimes(rootfs: &Path, listing: &tree::Listing) {
    use std::os::unix::ffi::OsStrExt;
    for (path, entry) in &listing.entries {
        let Some((secs, nsecs)) = entry.mtime else {
            continue;
        };
        let full = rootfs.join(std::ffi::OsStr::from_bytes(&path[1..]));
        let c_path = std::ffi::CString::new(full.as_os_str().as_bytes()).unwrap();
        let times = [
            libc::timespec {
                tv_sec: 0,
                tv_nsec: libc::UTIME_OMIT,
            },
            libc::timespec {
                tv_sec: secs,
                tv_nsec: nsecs,
            },
        ];
        // SAFETY: a valid NUL-terminated path and two timespecs, as utimensat requires.
        let rc = unsafe {
            libc::utimensat(
                libc::AT_FDCWD,
                c_path.as_ptr(),
                times.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        // A path the alteration removed has no time to restore.
        assert!(rc == 0 || !full.exists(), "utimensat {}", full.display());
    }
}

/// Each difference as (path, field), for exact assertions.
fn paths_and_fields(diffs: &[Difference]) -> Vec<(String, Option<&'static str>)> {
    diffs
        .iter()
        .map(|d| (String::from_utf8_lossy(&d.path).into_owned(), d.field))
        .collect()
}

fn only(diffs: &[Difference], path: &str, field: &str) {
    let fields = paths_and_fields(diffs);
    assert_eq!(
        fields,
        vec![(path.to_string(), Some(field))],
        "the harness must report exactly the one alteration:\n{}",
        tree::render(diffs)
    );
    // And the report must be readable by a person.
    let text = tree::render(diffs);
    assert!(text.contains(path) && text.contains(field), "{text}");
}

#[test]
fn harness_reports_exactly_one_altered_byte_mode_or_xattr() {
    let scratch = common::scratch();
    let f = fixture(scratch.path());
    let mnt = f.mount(scratch.path());
    let actual = tree::list(&mnt.dir, ListOptions::NYDUSD);
    let opts = ListOptions::NYDUSD;

    // One byte in the middle of a 2 MiB file: the second chunk.
    let diffs = diff_after(&f.rootfs, &actual, opts, |root| {
        let path = root.join("usr/share/data/words.txt");
        let mut bytes = fs::read(&path).unwrap();
        bytes[1_500_000] ^= 0x01;
        fs::write(&path, bytes).unwrap();
    });
    only(&diffs, "/usr/share/data/words.txt", "sha256");

    // Restore from the reader's own bytes, then one mode bit.
    fs::copy(
        mnt.dir.join("usr/share/data/words.txt"),
        f.rootfs.join("usr/share/data/words.txt"),
    )
    .unwrap();
    restore_mtimes(&f.rootfs, &actual);
    let diffs = diff_after(&f.rootfs, &actual, opts, |root| {
        fs::set_permissions(root.join("bin/su-tool"), fs::Permissions::from_mode(0o755)).unwrap();
    });
    only(&diffs, "/bin/su-tool", "mode");

    // Restore, then one xattr value.
    fs::set_permissions(
        f.rootfs.join("bin/su-tool"),
        fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    let diffs = diff_after(&f.rootfs, &actual, opts, |root| {
        xattr::set(root.join("etc/hostname"), "user.sample", b"changeD").unwrap();
    });
    only(&diffs, "/etc/hostname", "xattrs");

    // A missing file is reported as missing, not as a field difference.
    xattr::set(f.rootfs.join("etc/hostname"), "user.sample", b"changed").unwrap();
    let diffs = diff_after(&f.rootfs, &actual, opts, |root| {
        fs::remove_file(root.join("opt/new")).unwrap();
    });
    assert_eq!(diffs.len(), 1, "{}", tree::render(&diffs));
    assert_eq!(diffs[0].field, None);
    assert!(diffs[0].expected.is_none() && diffs[0].actual.is_some());
}

#[test]
fn kernel_listing_sees_an_altered_owner_and_a_broken_hardlink() {
    let scratch = common::scratch();
    let f = fixture(scratch.path());
    let mnt = mounts::erofs(&f.nydus.bootstrap, scratch.path(), "mnt");
    let actual = tree::list(&mnt.dir, ListOptions::KERNEL);

    let diffs = diff_after(&f.rootfs, &actual, ListOptions::KERNEL, |root| {
        std::os::unix::fs::lchown(root.join("etc/empty"), Some(1001), None).unwrap();
    });
    only(&diffs, "/etc/empty", "uid");

    std::os::unix::fs::lchown(f.rootfs.join("etc/empty"), Some(1000), None).unwrap();
    // Replacing one name of a hardlink pair by a copy splits the group on the expected side.
    let diffs = diff_after(&f.rootfs, &actual, ListOptions::KERNEL, |root| {
        let link = root.join("bin/tool-hardlink");
        let bytes = fs::read(&link).unwrap();
        fs::remove_file(&link).unwrap();
        fs::write(&link, bytes).unwrap();
        fs::set_permissions(&link, fs::Permissions::from_mode(0o755)).unwrap();
    });
    let fields = paths_and_fields(&diffs);
    assert_eq!(
        fields,
        vec![
            ("/bin/tool".to_string(), Some("nlink")),
            ("/bin/tool".to_string(), Some("hardlink")),
            ("/bin/tool-hardlink".to_string(), Some("nlink")),
            ("/bin/tool-hardlink".to_string(), Some("hardlink")),
        ],
        "{}",
        tree::render(&diffs)
    );
}

#[test]
fn listing_shows_every_feature_of_the_sample() {
    // Guards the other tests: if the sample or the lister lost a feature, equal trees would prove
    // less than they claim.
    let scratch = common::scratch();
    let f = fixture(scratch.path());
    let mnt = f.mount(scratch.path());
    let listing = tree::list(&mnt.dir, ListOptions::NYDUSD);
    let text = listing.lines().join("\n");
    eprintln!("{text}");
    for needle in [
        "/etc/hostname\ttype=file\tmode=0644\tuid=0\tgid=0\tsize=13\tsha256=",
        "xattrs=user.sample=changed",
        "xattrs=user.binary=\\x01\\x02\\x7f\\xff\\xfe\\x80",
        "/dev/null\ttype=char\tmode=0666\tuid=0\tgid=0\trdev=1:3",
        "/bin/tool-symlink\ttype=symlink\tmode=0777\tuid=0\tgid=0\tsize=4\tlink=tool",
        "/bin/su-tool\ttype=file\tmode=4755",
        "/bin/sg-tool\ttype=file\tmode=2711\tuid=0\tgid=50",
        "/tmp\ttype=dir\tmode=1777",
        "/home/big-ids\ttype=dir\tmode=0750\tuid=100000\tgid=200000",
        "/usr/share/data/words.txt\ttype=file\tmode=0644\tuid=0\tgid=0\tsize=2101249",
        "/opt/new",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    for gone in ["/etc/remove-me", "/opt/old", ".wh."] {
        assert!(!text.contains(gone), "{gone} should be whited out:\n{text}");
    }
}
