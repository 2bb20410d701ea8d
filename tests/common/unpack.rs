//! The expected tree of an input image, computed independently of our code: `skopeo copy` into an
//! OCI layout when the input is not one already, then `umoci unpack` (as root, so owners, device
//! nodes and every xattr namespace are kept).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::run;
use super::tree::{self, ListOptions, Listing};

/// What nydusd must show of the OCI layout `layout` (tag `latest`): umoci's unpacking of it,
/// listed as nydusd lists.
pub fn expected_nydusd(layout: &Path, scratch: &Path) -> Listing {
    let rootfs = umoci(
        &format!("oci:{}:latest", layout.display()),
        scratch,
        "expected",
        false,
    );
    tree::list(&rootfs, ListOptions::NYDUSD)
}

/// The sample image (`testdata/sample`) unpacked by umoci into `scratch/expected`: the tree
/// every reader of its conversion must show.
pub fn umoci_sample(scratch: &Path) -> PathBuf {
    let sample = super::sample_image();
    umoci(
        &format!("oci:{}:latest", sample.display()),
        scratch,
        "expected",
        false,
    )
}

/// Unpack the image named by the skopeo reference `source` (`oci:DIR:TAG`, `oci-archive:FILE:TAG`,
/// `docker-archive:FILE`) into `scratch/name` and return its rootfs.
///
/// An `oci:` layout is unpacked in place; any other form is first copied into an OCI layout by
/// skopeo, which also turns Docker media types into OCI ones (umoci reads only those). With
/// `to_gzip`, skopeo re-compresses every layer with gzip, for inputs with zstd layers, which
/// umoci 0.4.7 cannot read.
pub fn umoci(source: &str, scratch: &Path, name: &str, to_gzip: bool) -> PathBuf {
    let bundle = scratch.join(name);
    let image = match source.strip_prefix("oci:") {
        Some(rest) if !to_gzip => rest.to_string(),
        _ => {
            let layout = scratch.join(format!("{name}.oci"));
            let mut cmd = Command::new("skopeo");
            cmd.args(["copy", "--quiet"]);
            if to_gzip {
                cmd.args(["--dest-compress", "--dest-compress-format", "gzip"]);
            }
            run(cmd
                .arg(source)
                .arg(format!("oci:{}:expected", layout.display())));
            format!("{}:expected", layout.display())
        }
    };
    run(Command::new("umoci")
        .args(["unpack", "--image", &image])
        .arg(&bundle));
    bundle.join("rootfs")
}
