//! Choosing which images and platforms of an input to work on, from `--image`, `--platform` and
//! `--all-platforms`.
//!
//! The rules, in order:
//! 1. `--image REF` picks the image whose name (tag) or digest is REF: a full name
//!    (`docker.io/library/app:1.0`), a shorter suffix of it (`app:1.0`), the bare tag (`1.0`), a
//!    name without tag meaning `:latest`, or the digest of its index, manifest or (for legacy
//!    docker tarballs) config. A manifest digest also pins that one platform.
//!    Without `--image`, an input with several images is an error that lists them.
//! 2. `--all-platforms` takes every platform of the image. `--platform P` takes the manifest for
//!    P; a list (`--platform linux/amd64,linux/arm64`) takes the manifest of each, in the order
//!    the image lists them, every one required to be there. With neither, an image with one platform is taken whatever it is (converting an arm64
//!    image on an amd64 machine is fine offline); with several, the host's platform is taken.
//!    A platform that is not there is an error listing those that are.

use crate::common::error::{Error, Result};
use crate::source::ImageSource;
use crate::source::image::{Image, ImageEntry, ManifestEntry};
use crate::source::platform::Platform;

/// Which platforms to take.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PlatformChoice {
    /// The host's platform when the image has several; its only one otherwise.
    #[default]
    Host,
    /// Exactly this platform.
    Only(Platform),
    /// Each of these platforms (at least two; one is [`Only`](PlatformChoice::Only)), taken in
    /// the image's order; the same manifest named twice is taken once.
    List(Vec<Platform>),
    /// Every platform the image has.
    All,
}

/// What to take from an input.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// `--image`: a tag, name or digest.
    pub image: Option<String>,
    /// `--platform` / `--all-platforms`.
    pub platform: PlatformChoice,
}

/// An image entry and the manifests chosen from it.
pub type Chosen<'a> = (&'a ImageEntry, Vec<&'a ManifestEntry>);

/// Load every image `selection` chooses from `source`, verified (see [`ImageSource::load`]).
pub fn select(source: &dyn ImageSource, selection: &Selection) -> Result<Vec<Image>> {
    let mut images = Vec::new();
    for (entry, manifests) in choose(source, selection, false)? {
        for m in manifests {
            images.push(source.load(entry, m)?);
        }
    }
    Ok(images)
}

/// Choose image entries and manifests without loading them. With `list_all`, several images and
/// no `--image` is not an error: every image is taken (what `inspect` wants).
pub fn choose<'a>(
    source: &'a dyn ImageSource,
    selection: &Selection,
    list_all: bool,
) -> Result<Vec<Chosen<'a>>> {
    let input = source.path().display().to_string();
    let images = source.images();
    let listing = || {
        images
            .iter()
            .map(ImageEntry::label)
            .collect::<Vec<_>>()
            .join("; ")
    };
    let mut chosen: Vec<Chosen<'a>> = Vec::new();
    match &selection.image {
        Some(wanted) => {
            for image in images {
                if let Some(pinned) = image
                    .manifests
                    .iter()
                    .find(|m| m.digest.to_string() == *wanted)
                {
                    chosen.push((image, vec![pinned]));
                } else if image.digest.to_string() == *wanted
                    || image.names.iter().any(|n| name_matches(n, wanted))
                {
                    chosen.push((image, Vec::new()));
                }
            }
            if chosen.is_empty() {
                return Err(Error::bad_input(
                    input,
                    format!(
                        "no image matches --image {wanted}; the images are: {}",
                        listing()
                    ),
                ));
            }
            if chosen.len() > 1 {
                let matched: Vec<String> = chosen.iter().map(|(i, _)| i.label()).collect();
                return Err(Error::bad_input(
                    input,
                    format!(
                        "--image {wanted} matches {} images: {}; give a full name or a digest",
                        chosen.len(),
                        matched.join("; ")
                    ),
                ));
            }
        }
        None => {
            if images.len() > 1 && !list_all {
                return Err(Error::bad_input(
                    input,
                    format!(
                        "holds {} images; choose one with --image: {}",
                        images.len(),
                        listing()
                    ),
                ));
            }
            chosen.extend(images.iter().map(|i| (i, Vec::new())));
        }
    }
    for (image, manifests) in chosen.iter_mut() {
        if manifests.is_empty() {
            *manifests = choose_platforms(&input, image, &selection.platform)?;
        }
    }
    Ok(chosen)
}

/// Whether image name `name` is what the user meant by `wanted`.
fn name_matches(name: &str, wanted: &str) -> bool {
    let tag = tag_of(name);
    let wanted_latest = format!("{wanted}:latest");
    let candidates: &[&str] = if tag_of(wanted).is_none() && !wanted.contains('@') {
        &[wanted, &wanted_latest]
    } else {
        &[wanted]
    };
    candidates
        .iter()
        .any(|w| name == *w || name.ends_with(&format!("/{w}")))
        || tag == Some(wanted)
}

/// The tag of `name:tag` (a colon after the last slash; a registry port is not a tag).
fn tag_of(name: &str) -> Option<&str> {
    let last = name.rsplit('/').next()?;
    last.rsplit_once(':').map(|(_, t)| t)
}

fn choose_platforms<'a>(
    input: &str,
    image: &'a ImageEntry,
    choice: &PlatformChoice,
) -> Result<Vec<&'a ManifestEntry>> {
    let all: Vec<&ManifestEntry> = image.manifests.iter().collect();
    let wanted = match choice {
        PlatformChoice::All => return Ok(all),
        PlatformChoice::Host if all.len() == 1 => return Ok(all),
        PlatformChoice::Host => Platform::host(),
        PlatformChoice::Only(p) => p.clone(),
        PlatformChoice::List(list) => {
            let mut chosen: Vec<&ManifestEntry> = Vec::new();
            for p in list {
                let one = choose_platforms(input, image, &PlatformChoice::Only(p.clone()))?;
                for m in one {
                    if !chosen.iter().any(|c| c.digest == m.digest) {
                        chosen.push(m);
                    }
                }
            }
            // The image's order, whatever order the list was typed in: stable output.
            chosen.sort_by_key(|m| all.iter().position(|a| a.digest == m.digest));
            return Ok(chosen);
        }
    };
    let matching: Vec<&ManifestEntry> = all
        .iter()
        .copied()
        .filter(|m| m.platform.as_ref().is_some_and(|p| p.matches(&wanted)))
        .collect();
    let image_label = image.label();
    let present = || {
        all.iter()
            .map(|m| {
                let p = m
                    .platform
                    .as_ref()
                    .map_or_else(|| "unknown".to_string(), Platform::to_string);
                if m.present {
                    p
                } else {
                    format!("{p} (not in the input)")
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    match matching.len() {
        0 => {
            let whose = if *choice == PlatformChoice::Host {
                format!("this machine's platform {wanted}")
            } else {
                format!("platform {wanted}")
            };
            Err(Error::bad_input(
                input,
                format!(
                    "image {image_label} has no manifest for {whose}; platforms present: {}; \
                     choose with --platform or --all-platforms",
                    present()
                ),
            ))
        }
        1 => Ok(matching),
        _ => {
            // Prefer the one spelled exactly as asked (arm64/v8 over arm64) before giving up.
            let exact: Vec<&ManifestEntry> = matching
                .iter()
                .copied()
                .filter(|m| m.platform.as_ref() == Some(&wanted))
                .collect();
            if exact.len() == 1 {
                return Ok(exact);
            }
            let digests: Vec<String> = matching.iter().map(|m| m.digest.to_string()).collect();
            Err(Error::bad_input(
                input,
                format!(
                    "image {image_label} has {} manifests for platform {wanted}: {}; choose one \
                     with --image DIGEST",
                    matching.len(),
                    digests.join(", ")
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::name_matches;

    #[test]
    fn names_match_tags_and_suffixes() {
        assert!(name_matches("docker.io/library/app:1.0", "app:1.0"));
        assert!(name_matches("docker.io/library/app:1.0", "1.0"));
        assert!(name_matches("docker.io/library/app:latest", "app"));
        assert!(name_matches("latest", "latest"));
        assert!(!name_matches("docker.io/library/app:1.0", "pp:1.0"));
        assert!(!name_matches("localhost:5000/app", "5000/app"));
    }
}
