//! What a resolved image is: the blobs it needs, by digest, and where to get them.

use std::fmt;
use std::path::PathBuf;

use oci_spec::image::{ImageIndex, ImageManifest};
use tele_bundle::media_type;
use tele_manifests::ImageRef;

use crate::digest::Digest;

/// An `os/architecture[/variant]` platform, as `--platform` gives it.
pub use tele_bundle::platform::Platform;

/// One content-addressed blob as a descriptor names it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Blob {
    /// Content digest.
    pub digest: Digest,
    /// Length in bytes.
    pub size: u64,
    /// Media type from the descriptor.
    #[serde(rename = "mediaType")]
    pub media_type: String,
}

/// Picks the manifest for `platform` from an index.
pub fn choose_platform<'a>(
    platform: &Platform,
    index: &'a ImageIndex,
) -> Option<&'a oci_spec::image::Descriptor> {
    index.manifests().iter().find(|d| {
        d.platform().as_ref().is_some_and(|p| {
            p.os().to_string() == platform.os
                && p.architecture().to_string() == platform.architecture
                && (platform.variant.is_none()
                    || p.variant().as_deref() == platform.variant.as_deref())
        })
    })
}

/// The platforms an index offers, for error messages.
pub fn offered_platforms(index: &ImageIndex) -> String {
    let all: Vec<String> = index
        .manifests()
        .iter()
        .filter_map(|d| d.platform().as_ref())
        .map(|p| {
            let mut s = format!("{}/{}", p.os(), p.architecture());
            if let Some(v) = p.variant() {
                s = format!("{s}/{v}");
            }
            s
        })
        .collect();
    if all.is_empty() {
        "none".into()
    } else {
        all.join(", ")
    }
}

/// Where an image's blobs come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A registry, through the OCI distribution API.
    Registry,
    /// An OCI image layout on disk.
    OciLayout(PathBuf),
    /// A `docker save` archive; its blobs were copied into the cache while resolving.
    DockerArchive(PathBuf),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Registry => write!(f, "registry"),
            Origin::OciLayout(p) => write!(f, "oci:{}", p.display()),
            Origin::DockerArchive(p) => write!(f, "docker-archive:{}", p.display()),
        }
    }
}

/// An image reference resolved to the exact blobs it needs.
#[derive(Clone, Debug)]
pub struct ResolvedImage {
    /// The normalised reference as the app names it.
    pub reference: ImageRef,
    /// What the layout's index.json points to: the reference's own digest
    /// (an index when the app pinned one) or the platform's manifest.
    pub top: Blob,
    /// The platform chosen.
    pub platform: Platform,
    /// Manifest and index blobs (already in the cache after resolving).
    pub manifests: Vec<Blob>,
    /// Config and layer blobs.
    pub content: Vec<Blob>,
    /// Where the content blobs come from.
    pub origin: Origin,
}

impl ResolvedImage {
    /// Every blob of the image, manifests first.
    pub fn blobs(&self) -> impl Iterator<Item = &Blob> {
        self.manifests.iter().chain(self.content.iter())
    }

    /// Bytes of all blobs of this image.
    pub fn size(&self) -> u64 {
        self.blobs().map(|b| b.size).sum()
    }
}

/// Blobs a parsed manifest needs: its config, then its layers.
pub fn manifest_content(m: &ImageManifest) -> Result<Vec<Blob>, String> {
    std::iter::once(m.config())
        .chain(m.layers().iter())
        .map(|d| {
            Ok(Blob {
                digest: d.digest().to_string().parse().map_err(|e| format!("{e}"))?,
                size: d.size(),
                media_type: d.media_type().to_string(),
            })
        })
        .collect()
}

/// The descriptor of a manifest-or-index in an index, as a [`Blob`].
pub fn descriptor_blob(d: &oci_spec::image::Descriptor) -> Result<Blob, String> {
    Ok(Blob {
        digest: d.digest().to_string().parse().map_err(|e| format!("{e}"))?,
        size: d.size(),
        media_type: d.media_type().to_string(),
    })
}

/// The `mediaType` a manifest or index document declares about itself.
pub fn declared_media_type(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let p: Probe = serde_json::from_slice(bytes).ok()?;
    p.media_type.or_else(|| {
        Some(
            if p.manifests.is_some() {
                media_type::OCI_INDEX
            } else {
                media_type::OCI_MANIFEST
            }
            .into(),
        )
    })
}
