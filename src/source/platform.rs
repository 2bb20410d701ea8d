//! Platforms (`os/arch[/variant]`): parsing what the user types, reading what the image declares,
//! and deciding whether the two mean the same machine.
//!
//! Images spell one platform several ways (`arm64` and `arm64/v8`, `arm` and `arm/v7`, now and then
//! `x86_64` or `aarch64`), so both sides are normalised the way containerd does before comparing.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::common::error::{Error, one_line};

/// An operating system, CPU architecture and optional architecture variant.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    /// `linux`, `windows`, …
    pub os: String,
    /// GOARCH spelling: `amd64`, `arm64`, `arm`, `s390x`, …
    pub architecture: String,
    /// `v7`, `v8`, … when the architecture has variants.
    pub variant: Option<String>,
}

impl Platform {
    /// A platform from its parts; empty variants count as none.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.to_string(),
            architecture: architecture.to_string(),
            variant: variant.filter(|v| !v.is_empty()).map(str::to_string),
        }
    }

    /// The platform this program runs on, as an image would name it.
    pub fn host() -> Platform {
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "x86" => ("386", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
            "loongarch64" => ("loong64", None),
            other => (other, None),
        };
        Platform::new(std::env::consts::OS, arch, variant)
    }

    /// The canonical spelling: GOARCH names, and the default variant of an architecture made
    /// explicit (`arm` means `arm/v7`) or dropped (`arm64/v8` means `arm64`).
    pub fn normalized(&self) -> Platform {
        let os = self.os.to_ascii_lowercase();
        let (arch, variant) = match (self.architecture.as_str(), self.variant.as_deref()) {
            ("x86_64" | "x86-64" | "amd64", v) => ("amd64", v.filter(|v| *v != "v1")),
            ("aarch64" | "arm64", Some("v8" | "8")) | ("aarch64" | "arm64", None) => {
                ("arm64", None)
            }
            ("aarch64", v) => ("arm64", v),
            ("armhf", _) => ("arm", Some("v7")),
            ("armel", _) => ("arm", Some("v6")),
            ("arm", None) => ("arm", Some("v7")),
            ("i386" | "i686", v) => ("386", v),
            (a, v) => (a, v),
        };
        Platform::new(&os, arch, variant)
    }

    /// Whether `self` and `other` name the same platform once both are normalised.
    pub fn matches(&self, other: &Platform) -> bool {
        self.normalized() == other.normalized()
    }

    /// Whether this is the `unknown/unknown` placeholder BuildKit gives attestation manifests.
    pub fn is_unknown(&self) -> bool {
        self.os == "unknown" && self.architecture == "unknown"
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The parts come from the input; keep them on one line.
        let (os, arch) = (one_line(&self.os), one_line(&self.architecture));
        write!(f, "{os}/{arch}")?;
        if let Some(v) = &self.variant {
            write!(f, "/{}", one_line(v))?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = Error;

    /// Parse `os/arch` or `os/arch/variant`, in any case: as containerd's parser does, the parts
    /// are taken in lowercase (`Linux/AMD64` is `linux/amd64`), the spelling images use.
    fn from_str(s: &str) -> Result<Platform, Error> {
        let lower = s.to_ascii_lowercase();
        let parts: Vec<&str> = lower.split('/').collect();
        let ok = |p: &&str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(ok) {
            return Err(Error::usage(format!(
                "invalid platform {s:?}: expected os/arch or os/arch/variant, e.g. linux/arm64"
            )));
        }
        Ok(Platform::new(parts[0], parts[1], parts.get(2).copied()))
    }
}

impl Serialize for Platform {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl From<&oci_spec::image::Platform> for Platform {
    fn from(p: &oci_spec::image::Platform) -> Platform {
        Platform::new(
            &p.os().to_string(),
            &p.architecture().to_string(),
            p.variant().as_deref(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_match() {
        let p: Platform = "linux/arm64".parse().unwrap();
        assert!(p.matches(&"linux/arm64/v8".parse().unwrap()));
        assert!(!p.matches(&"linux/amd64".parse().unwrap()));
        let arm: Platform = "linux/arm".parse().unwrap();
        assert!(arm.matches(&"linux/arm/v7".parse().unwrap()));
        assert!(!arm.matches(&"linux/arm/v6".parse().unwrap()));
        assert_eq!(p.to_string(), "linux/arm64");
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux/arm64/v8/x".parse::<Platform>().is_err());
        assert!("linux//v8".parse::<Platform>().is_err());
        assert_eq!(
            "Linux/ARM64/V8".parse::<Platform>().unwrap(),
            Platform::new("linux", "arm64", Some("v8"))
        );
    }
}
