//! `bundle.json`: what a bundle holds, with the size and sha256 of every file.

use std::collections::BTreeMap;

use crate::digest::Digest;
use crate::image::Platform;

/// The file name of the metadata inside the bundle's top directory.
pub const BUNDLE_JSON: &str = "bundle.json";

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
        self.images.iter().map(|i| i.size).sum()
    }

    /// Bytes of the unique blobs.
    pub fn unique_blob_bytes(&self) -> u64 {
        self.blobs.iter().map(|b| b.size).sum()
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
}
