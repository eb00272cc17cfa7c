//! `bundle.json`: what a bundle holds, with the size and sha256 of every file,
//! and the names of the bundle's top-level entries.
//!
//! A bundle is one directory `<name>-<version>/` (a tarball of it, or that
//! directory extracted) holding `bundle.json`, `install`, `app.yaml`,
//! `resources/`, the OCI image layout `images/` and, when it carries one, the
//! Kubernetes runtime `runtime/` (see [`crate::runtime_json`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::error::{read_json, Error};
use crate::oci_layout::BLOBS_DIR;
use crate::platform::Platform;

/// The file name of the metadata inside the bundle's top directory.
pub const BUNDLE_JSON: &str = "bundle.json";
/// The bundle's OCI image layout, relative to its top directory.
pub const IMAGES_DIR: &str = "images";

/// The contents of `bundle.json`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleMeta {
    /// Format of this file.
    pub api_version: String,
    /// The app's name (`metadata.name`).
    pub name: String,
    /// The app's version (`metadata.resourceVersion`).
    pub version: String,
    /// The app's description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Version of the tele that built the bundle.
    pub tele_version: String,
    /// The installer binary packed as `install`.
    pub installer: InstallerInfo,
    /// Every image, sorted by reference.
    pub images: Vec<ImageInfo>,
    /// Every blob under `images/blobs/sha256`, sorted by digest.
    pub blobs: Vec<BlobInfo>,
    /// Every other file, sorted by path (relative to the top directory).
    pub files: Vec<FileInfo>,
    /// The Kubernetes runtime packed under `runtime/`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeInfo>,
    /// The monitoring components packed under `monitoring/`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<Vec<String>>,
}

/// The runtime in a bundle, for `tele inspect`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeInfo {
    /// The runtime's name.
    pub name: String,
    /// Kubernetes version.
    pub kubernetes_version: String,
    /// Each component and the version it reports.
    pub components: Vec<ComponentInfo>,
    /// The fixes its Kubernetes carries on top of the upstream source
    /// (`runtime.json`'s `patches`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<crate::runtime_json::Patch>,
}

/// One runtime component.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ComponentInfo {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
}

/// Current `apiVersion` of bundle.json.
pub const API_VERSION: &str = "bundle.tele.dev/v1";

/// Which binary `install` is.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstallerInfo {
    /// `static` when statically linked, else `dynamic`.
    pub linkage: String,
}

/// One image of the bundle.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageInfo {
    /// Full normalised reference.
    pub reference: String,
    /// Digest the reference is pinned to (index.json points at it).
    pub digest: Digest,
    /// Media type of that manifest or index.
    pub media_type: String,
    /// The platform chosen.
    pub platform: Platform,
    /// Bytes of all its blobs (manifests, config, layers).
    pub size: u64,
    /// Its blobs.
    pub blobs: Vec<Digest>,
}

/// One blob.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct BlobInfo {
    /// Content digest.
    pub digest: Digest,
    /// Length.
    pub size: u64,
}

/// One file other than blobs and bundle.json itself.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileInfo {
    /// Path relative to the top directory.
    pub path: String,
    /// Length.
    pub size: u64,
    /// sha256, hex.
    pub sha256: String,
}

impl BundleMeta {
    /// Sum of every image's size: what the bundle would weigh without sharing.
    pub fn bytes_without_sharing(&self) -> u64 {
        // Sizes come from the file: a crafted one must not wrap around.
        self.images
            .iter()
            .fold(0u64, |t, i| t.saturating_add(i.size))
    }

    /// Bytes of the unique blobs.
    pub fn unique_blob_bytes(&self) -> u64 {
        self.blobs
            .iter()
            .fold(0u64, |t, b| t.saturating_add(b.size))
    }

    /// Sizes of blobs by digest.
    pub fn blob_sizes(&self) -> BTreeMap<&Digest, u64> {
        self.blobs.iter().map(|b| (&b.digest, b.size)).collect()
    }

    /// Serialised as written into the bundle (pretty, stable order).
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("bundle.json serialises");
        v.push(b'\n');
        v
    }

    /// Reads `bundle.json` of the extracted bundle at `bundle_dir`.
    pub fn read(bundle_dir: &Path) -> Result<BundleMeta, Error> {
        read_json(&bundle_dir.join(BUNDLE_JSON), HINT)
    }
}

pub(crate) const HINT: &str = "the bundle is damaged; copy it again from the vendor";

/// The bundle's image layout, in the extracted bundle at `bundle_dir`.
pub fn images_dir(bundle_dir: &Path) -> PathBuf {
    bundle_dir.join(IMAGES_DIR)
}

/// Where the blob `digest` is in a bundle, relative to its top directory,
/// `/`-separated (`images/blobs/sha256/<hex>`), as tar entries and
/// [`FileInfo::path`] name files.
pub fn blob_entry(digest: &Digest) -> String {
    format!("{IMAGES_DIR}/{BLOBS_DIR}/{}", digest.hex())
}

/// Whether `path` (relative to the top directory) is part of what a node
/// runs: the app manifest, the runtime and the images. A node that joins
/// without the bundle fetches exactly these (and the blobs) from a master,
/// which keeps them in its state directory.
pub fn is_node_file(path: &str) -> bool {
    path == "app.yaml"
        || path.starts_with("runtime/")
        || path.starts_with(&format!("{IMAGES_DIR}/"))
}

/// The hex digest of a blob named by its entry path, the inverse of [`blob_entry`].
pub fn blob_hex_of_entry(path: &str) -> Option<&str> {
    path.strip_prefix(IMAGES_DIR)?
        .strip_prefix('/')?
        .strip_prefix(BLOBS_DIR)?
        .strip_prefix('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BundleMeta {
        let layer = Digest::of_bytes(b"layer");
        let manifest = Digest::of_bytes(b"manifest");
        BundleMeta {
            api_version: API_VERSION.into(),
            name: "shop".into(),
            version: "1.0.0".into(),
            description: Some("a shop".into()),
            tele_version: "0.1.0".into(),
            installer: InstallerInfo {
                linkage: "static".into(),
            },
            images: vec![ImageInfo {
                reference: "docker.io/library/nginx:1.25".into(),
                digest: manifest.clone(),
                media_type: crate::media_type::OCI_MANIFEST.into(),
                platform: Platform::default(),
                size: 15,
                blobs: vec![manifest.clone(), layer.clone()],
            }],
            blobs: vec![
                BlobInfo {
                    digest: layer,
                    size: 5,
                },
                BlobInfo {
                    digest: manifest,
                    size: 8,
                },
            ],
            files: vec![FileInfo {
                path: "app.yaml".into(),
                size: 3,
                sha256: Digest::of_bytes(b"app").hex().into(),
            }],
            runtime: Some(RuntimeInfo {
                name: "kubernetes-1.20.2".into(),
                kubernetes_version: "1.20.2".into(),
                components: vec![ComponentInfo {
                    name: "kubelet".into(),
                    version: "v1.20.2".into(),
                }],
                patches: vec![],
            }),
            monitoring: Some(vec!["influxdb".into()]),
        }
    }

    #[test]
    fn round_trips_through_the_file() {
        let meta = sample();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(BUNDLE_JSON), meta.to_json()).unwrap();
        assert_eq!(BundleMeta::read(dir.path()).unwrap(), meta);
        let v: serde_json::Value = serde_json::from_slice(&meta.to_json()).unwrap();
        assert_eq!(v["apiVersion"], API_VERSION);
        assert_eq!(v["teleVersion"], "0.1.0");
        assert_eq!(v["images"][0]["mediaType"], crate::media_type::OCI_MANIFEST);
        assert_eq!(meta.unique_blob_bytes(), 13);
        assert_eq!(meta.bytes_without_sharing(), 15);
    }

    #[test]
    fn optional_sections_are_left_out_and_read_as_none() {
        let mut meta = sample();
        (meta.description, meta.runtime, meta.monitoring) = (None, None, None);
        let v: serde_json::Value = serde_json::from_slice(&meta.to_json()).unwrap();
        assert!(v.get("runtime").is_none() && v.get("monitoring").is_none());
        let back: BundleMeta = serde_json::from_value(v).unwrap();
        assert_eq!(back, meta);
    }

    #[test]
    fn a_broken_file_is_named_with_its_position() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(BUNDLE_JSON), "{\n  \"name\": 1\n}").unwrap();
        let err = BundleMeta::read(dir.path()).unwrap_err();
        assert!(err.to_string().contains("bundle.json:2:"), "{err}");
        assert!(err.hint().is_some());
    }

    #[test]
    fn blob_entries_name_the_layout_blob() {
        let d = Digest::of_bytes(b"x");
        let entry = blob_entry(&d);
        assert_eq!(entry, format!("images/blobs/sha256/{}", d.hex()));
        assert_eq!(blob_hex_of_entry(&entry), Some(d.hex()));
        assert_eq!(blob_hex_of_entry("images/index.json"), None);
    }
}
