//! What a resolved image is: the blobs it needs, by digest, and where to get them.

use std::fmt;
use std::path::PathBuf;

use oci_spec::image::{ImageIndex, ImageManifest};
use tele_manifests::ImageRef;

use crate::digest::Digest;

/// Media types tele understands for manifests and indexes.
pub mod media {
    /// OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// Docker schema 2 manifest.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker manifest list.
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    /// OCI image config.
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// Uncompressed OCI layer.
    pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
    /// gzip-compressed OCI layer.
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    /// Every manifest type, in the order a registry should prefer them.
    pub const ACCEPTED: [&str; 4] = [OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

    /// True for an index or manifest list.
    pub fn is_index(media_type: &str) -> bool {
        media_type == OCI_INDEX || media_type == DOCKER_LIST
    }
}

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

/// An `os/architecture[/variant]` platform, as `--platform` gives it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Platform {
    /// For example `linux`.
    pub os: String,
    /// For example `amd64`.
    pub architecture: String,
    /// For example `v8` for arm64.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub variant: Option<String>,
}

impl Platform {
    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, variant] if !os.is_empty() && !arch.is_empty() && !variant.is_empty() => {
                Ok(Platform {
                    os: os.to_string(),
                    architecture: arch.to_string(),
                    variant: Some(variant.to_string()),
                })
            }
            _ => Err(format!(
                "`{s}` is not a platform: expected OS/ARCH[/VARIANT], e.g. linux/amd64"
            )),
        }
    }

    /// Picks the manifest for this platform from an index.
    pub fn choose<'a>(&self, index: &'a ImageIndex) -> Option<&'a oci_spec::image::Descriptor> {
        index.manifests().iter().find(|d| {
            d.platform().as_ref().is_some_and(|p| {
                p.os().to_string() == self.os
                    && p.architecture().to_string() == self.architecture
                    && (self.variant.is_none() || p.variant().as_deref() == self.variant.as_deref())
            })
        })
    }

    /// The platforms an index offers, for error messages.
    pub fn offered(index: &ImageIndex) -> String {
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
}

impl Default for Platform {
    fn default() -> Self {
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
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
                media::OCI_INDEX
            } else {
                media::OCI_MANIFEST
            }
            .into(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_parses_with_and_without_variant() {
        assert_eq!(Platform::parse("linux/amd64").unwrap(), Platform::default());
        assert_eq!(
            Platform::parse("linux/arm64/v8")
                .unwrap()
                .variant
                .as_deref(),
            Some("v8")
        );
        assert!(Platform::parse("amd64").is_err());
        assert!(Platform::parse("linux/").is_err());
    }
}
