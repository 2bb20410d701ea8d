//! An entry's extended attributes: read from its PAX records (`SCHILY.xattr.*` with raw bytes,
//! `LIBARCHIVE.xattr.*` with a percent-encoded name and a base64 value), those outside the
//! namespaces a Linux filesystem holds set aside, and the rest held to what RAFS v6 (EROFS)
//! stores. The limits are checked here, at parse time, where the error can name the entry,
//! rather than when the bootstrap is written.

use std::collections::BTreeMap;

use crate::common::error::shown;
use crate::ondisk::rafs_v6::{
    RafsV6XattrEntry, RafsV6XattrIbodyHeader, xattr_ibody_size, xattr_split_name,
};

/// PAX keys that hold extended attributes: SCHILY's carry raw bytes, libarchive's carry a
/// percent-encoded name and a base64 value.
const SCHILY_XATTR: &[u8] = b"SCHILY.xattr.";
const LIBARCHIVE_XATTR: &[u8] = b"LIBARCHIVE.xattr.";

/// The longest xattr name Linux takes (`XATTR_NAME_MAX`), prefix included.
pub const XATTR_NAME_MAX: usize = 255;

/// Name to value.
pub type Xattrs = BTreeMap<Vec<u8>, Vec<u8>>;

/// The xattrs of an entry's PAX records: those to keep, and the names of those skipped because
/// no Linux filesystem holds them (macOS tar writes `com.apple.*`; containerd and Docker skip
/// what the filesystem refuses, their unpack ignoring `ENOTSUP`). RAFS v6 stores exactly the
/// namespaces Linux filesystems do (`user.`, `trusted.`, `security.` and the POSIX ACLs), so
/// what it cannot store is what is skipped.
pub fn from_pax(pax: &BTreeMap<Vec<u8>, Vec<u8>>) -> Result<(Xattrs, Vec<Vec<u8>>), String> {
    let mut xattrs = BTreeMap::new();
    for (key, value) in pax {
        if let Some(name) = key.strip_prefix(SCHILY_XATTR) {
            xattrs.insert(name.to_vec(), value.clone());
        }
    }
    // libarchive writes each xattr twice, as SCHILY and as LIBARCHIVE records; its own spelling
    // (which can carry any name) wins.
    for (key, value) in pax {
        if let Some(name) = key.strip_prefix(LIBARCHIVE_XATTR) {
            let name = percent_decode(name).ok_or("bad LIBARCHIVE.xattr name")?;
            let value = base64_decode(value).ok_or("bad LIBARCHIVE.xattr value (not base64)")?;
            xattrs.insert(name, value);
        }
    }
    let skipped: Vec<Vec<u8>> = xattrs
        .keys()
        .filter(|name| xattr_split_name(name).is_none())
        .cloned()
        .collect();
    for name in &skipped {
        xattrs.remove(name);
    }
    check_limits(&xattrs)?;
    Ok((xattrs, skipped))
}

/// Linux's and RAFS v6's limits: a name of at most 255 bytes, a value of at most 65535 (EROFS
/// keeps its size in 16 bits), and all of an inode's xattrs in the inline area its 16-bit
/// `i_xattr_icount` can describe (about 256 KiB).
fn check_limits(xattrs: &Xattrs) -> Result<(), String> {
    let mut area = RafsV6XattrIbodyHeader::SIZE;
    for (name, value) in xattrs {
        let (index, suffix) = xattr_split_name(name).expect("only names RAFS v6 stores are kept");
        if name.len() > XATTR_NAME_MAX {
            return Err(format!(
                "xattr '{}': its name is {} bytes, more than the {XATTR_NAME_MAX} Linux allows",
                shown(name),
                name.len()
            ));
        }
        let e_value_size = u16::try_from(value.len()).map_err(|_| {
            format!(
                "xattr '{}': its value is {} bytes, more than the 65535 RAFS v6 stores",
                shown(name),
                value.len()
            )
        })?;
        area += RafsV6XattrEntry {
            e_name_len: suffix.len() as u8,
            e_name_index: index,
            e_value_size,
        }
        .record_size();
    }
    let max = xattr_ibody_size(u16::MAX);
    if area > max {
        return Err(format!(
            "its {} xattrs take {area} bytes, more than the {max} an inode holds in RAFS v6",
            xattrs.len()
        ));
    }
    Ok(())
}

fn percent_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hex = std::str::from_utf8(s.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Some(out)
}

fn base64_decode(s: &[u8]) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    // libarchive writes base64 without padding; accept it with padding too.
    let s: Vec<u8> = s.iter().copied().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for group in s.chunks(4) {
        if group.len() == 1 {
            return None;
        }
        let mut acc = 0u32;
        for (i, &c) in group.iter().enumerate() {
            acc |= value(c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..group.len()]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pax(records: &[(&str, &[u8])]) -> BTreeMap<Vec<u8>, Vec<u8>> {
        records
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.to_vec()))
            .collect()
    }

    #[test]
    fn names_outside_the_linux_namespaces_are_set_aside() {
        let (kept, skipped) = from_pax(&pax(&[
            ("SCHILY.xattr.user.a", b"1"),
            ("SCHILY.xattr.com.apple.quarantine", b"q"),
            ("SCHILY.xattr.system.posix_acl_access", b"\x02\0\0\0"),
            ("SCHILY.xattr.system.other", b"o"),
        ]))
        .unwrap();
        let kept: Vec<&[u8]> = kept.keys().map(Vec::as_slice).collect();
        assert_eq!(kept, [&b"system.posix_acl_access"[..], b"user.a"]);
        assert_eq!(
            skipped,
            [b"com.apple.quarantine".to_vec(), b"system.other".to_vec()]
        );
    }

    #[test]
    fn linux_and_rafs_limits_hold_at_parse_time() {
        let long_name = format!("SCHILY.xattr.user.{}", "n".repeat(250));
        assert!(from_pax(&pax(&[(&long_name, b"v")])).is_ok(), "255 bytes");
        let too_long = format!("SCHILY.xattr.user.{}", "n".repeat(251));
        let e = from_pax(&pax(&[(&too_long, b"v")])).unwrap_err();
        assert!(e.contains("256 bytes"), "{e}");

        let value = vec![7u8; 65535];
        assert!(from_pax(&pax(&[("SCHILY.xattr.user.v", &value)])).is_ok());
        let value = vec![7u8; 65536];
        let e = from_pax(&pax(&[("SCHILY.xattr.user.v", &value)])).unwrap_err();
        assert!(e.contains("65536 bytes"), "{e}");

        // Five values of 60,000 bytes: each fits, together they do not.
        let value = vec![7u8; 60_000];
        let names: Vec<String> = (0..5).map(|i| format!("SCHILY.xattr.user.{i}")).collect();
        let records: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &value[..])).collect();
        let e = from_pax(&pax(&records)).unwrap_err();
        assert!(e.contains("an inode holds"), "{e}");
        assert!(from_pax(&pax(&records[..4])).is_ok());
    }

    #[test]
    fn base64_with_and_without_padding() {
        assert_eq!(base64_decode(b"aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(base64_decode(b"aGVsbG8"), Some(b"hello".to_vec()));
        assert_eq!(base64_decode(b"a"), None);
    }
}
