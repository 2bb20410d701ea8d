//! Tar entry names, normalised once, here.
//!
//! The same file may be spelled `./a/b`, `a/b`, `/a/b` or `a/b/` in different layers, and names
//! need not be UTF-8, so paths stay bytes. A name that climbs above the root (`a/../../b`) is an
//! error: unlike a symlink *target*, an entry *name* outside the image has no meaning.

use std::fmt;

/// A normalised path inside the image: its components, none empty, `.` or `..`, joined by `/`
/// without a leading one (the root is the empty path). One allocation per path, since a layer of
/// 200,000 files holds 200,000 of them, and no capacity beside its length; ordered component by
/// component.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ImagePath {
    joined: Box<[u8]>,
}

impl Ord for ImagePath {
    fn cmp(&self, other: &ImagePath) -> std::cmp::Ordering {
        self.components().cmp(other.components())
    }
}

impl PartialOrd for ImagePath {
    fn partial_cmp(&self, other: &ImagePath) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Why a name could not be normalised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathError {
    /// A `..` component would leave the root.
    EscapesRoot,
    /// A component is longer than the 255 bytes every Linux filesystem allows.
    NameTooLong,
    /// The name holds a NUL byte, which no filesystem can store.
    Nul,
    /// More than [`MAX_DEPTH`] components.
    TooDeep,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::EscapesRoot => "the path escapes the image root through '..'",
            PathError::NameTooLong => "a path component is longer than 255 bytes",
            PathError::Nul => "the path contains a NUL byte",
            PathError::TooDeep => "the path has more than 4096 components",
        })
    }
}

/// The longest file name Linux filesystems (and EROFS dirents) accept.
pub const NAME_MAX: usize = 255;

/// The most components a path may have. A path Linux can open (`PATH_MAX`, 4096 bytes) has at
/// most 2048; deeper ones are refused so that nothing downstream (the trees, `check`, a reader
/// walking the image) can be made to work per component per entry on 100,000-deep paths.
pub const MAX_DEPTH: usize = 4096;

impl ImagePath {
    /// The root directory.
    pub fn root() -> ImagePath {
        ImagePath::default()
    }

    /// Normalise a raw tar name: leading `/` and `./`, repeated and trailing slashes, and `.`
    /// components go; `..` removes the previous component and may not climb above the root.
    /// The result has at most [`MAX_DEPTH`] components.
    pub fn parse(raw: &[u8]) -> Result<ImagePath, PathError> {
        if raw.contains(&0) {
            return Err(PathError::Nul);
        }
        let mut joined: Vec<u8> = Vec::with_capacity(raw.len());
        let mut depth = 0usize;
        for part in raw.split(|&b| b == b'/') {
            match part {
                b"" | b"." => {}
                b".." => {
                    if joined.is_empty() {
                        return Err(PathError::EscapesRoot);
                    }
                    let cut = joined.iter().rposition(|&b| b == b'/').unwrap_or(0);
                    joined.truncate(cut);
                    depth -= 1;
                }
                name if name.len() > NAME_MAX => return Err(PathError::NameTooLong),
                name => {
                    if !joined.is_empty() {
                        joined.push(b'/');
                    }
                    joined.extend_from_slice(name);
                    depth += 1;
                }
            }
        }
        if depth > MAX_DEPTH {
            return Err(PathError::TooDeep);
        }
        Ok(ImagePath {
            joined: joined.into_boxed_slice(),
        })
    }

    /// Whether this is the root.
    pub fn is_root(&self) -> bool {
        self.joined.is_empty()
    }

    /// The components, outermost first.
    pub fn components(&self) -> impl Iterator<Item = &[u8]> {
        self.joined.split(|&b| b == b'/').filter(|c| !c.is_empty())
    }

    /// The last component (`None` for the root).
    pub fn file_name(&self) -> Option<&[u8]> {
        self.components().last()
    }

    /// The parent directory (the root is its own parent).
    pub fn parent(&self) -> ImagePath {
        let cut = self.joined.iter().rposition(|&b| b == b'/').unwrap_or(0);
        ImagePath {
            joined: self.joined[..cut].into(),
        }
    }

    /// This path with one more component.
    pub fn join(&self, name: &[u8]) -> ImagePath {
        let mut joined = Vec::with_capacity(self.joined.len() + 1 + name.len());
        joined.extend_from_slice(&self.joined);
        if !joined.is_empty() {
            joined.push(b'/');
        }
        joined.extend_from_slice(name);
        ImagePath {
            joined: joined.into_boxed_slice(),
        }
    }

    /// The normalised bytes: components joined by `/`, no leading one.
    pub(crate) fn joined(&self) -> &[u8] {
        &self.joined
    }

    /// A path from bytes [`joined`](ImagePath::joined) gave (already normalised: no parsing).
    pub(crate) fn from_joined(joined: &[u8]) -> ImagePath {
        debug_assert_eq!(
            ImagePath::parse(joined).as_ref().map(|p| p.joined()),
            Ok(joined)
        );
        ImagePath {
            joined: joined.into(),
        }
    }

    /// The path as bytes, `/`-separated with a leading `/`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.joined.len() + 1);
        out.push(b'/');
        out.extend_from_slice(&self.joined);
        out
    }
}

impl fmt::Display for ImagePath {
    /// Shows the path with non-UTF-8 bytes escaped (and a very long one cut), for messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::common::error::shown(&self.to_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(raw: &[u8]) -> Vec<u8> {
        ImagePath::parse(raw).unwrap().to_bytes()
    }

    #[test]
    fn spellings_of_one_name_agree() {
        for raw in [
            &b"a/b"[..],
            b"./a/b",
            b"/a/b",
            b"a/b/",
            b"a//b",
            b"./a/./b/",
            b"a/c/../b",
        ] {
            assert_eq!(p(raw), b"/a/b", "{}", raw.escape_ascii());
        }
        for raw in [&b"."[..], b"./", b"/", b""] {
            assert!(ImagePath::parse(raw).unwrap().is_root());
        }
    }

    #[test]
    fn escaping_names_are_refused() {
        assert_eq!(ImagePath::parse(b"../etc"), Err(PathError::EscapesRoot));
        assert_eq!(
            ImagePath::parse(b"a/../../etc"),
            Err(PathError::EscapesRoot)
        );
        assert_eq!(ImagePath::parse(b"a\0b"), Err(PathError::Nul));
        assert_eq!(ImagePath::parse(&[b'x'; 256]), Err(PathError::NameTooLong));
        assert!(ImagePath::parse(&[b'x'; 255]).is_ok());
    }

    #[test]
    fn depth_is_counted_after_normalising() {
        let deep = "a/".repeat(MAX_DEPTH);
        assert_eq!(
            ImagePath::parse(deep.as_bytes())
                .unwrap()
                .components()
                .count(),
            MAX_DEPTH
        );
        let deeper = format!("{deep}b");
        assert_eq!(ImagePath::parse(deeper.as_bytes()), Err(PathError::TooDeep));
        // Climbing back up on the way is no depth.
        let back = format!("{deep}../b");
        assert!(ImagePath::parse(back.as_bytes()).is_ok());
    }

    #[test]
    fn non_utf8_names_survive() {
        let path = ImagePath::parse(b"dir/\xff\xfe").unwrap();
        assert_eq!(path.file_name(), Some(&b"\xff\xfe"[..]));
        assert_eq!(path.to_string(), "/dir/\\xff\\xfe");
    }
}
