//! The OCI image layout a bundle's `images/` (and a runtime's) is:
//! `oci-layout`, `index.json` naming each image, and `blobs/sha256/<hex>`.
//!
//! Each entry of a bundle's `index.json` carries the image's full normalised
//! reference twice, as [`REF_NAME`] (what OCI tools read) and as
//! [`CONTAINERD_NAME`] (what containerd reads on import).
//!
//! ```
//! use tele_bundle::oci_layout::{Descriptor, Index};
//! use tele_bundle::{digest::Digest, media_type};
//! let d = Descriptor::named(
//!     media_type::OCI_MANIFEST,
//!     Digest::of_bytes(b"{}"),
//!     2,
//!     None,
//!     "docker.io/library/nginx:1.25",
//! );
//! let index = Index::new(vec![d]);
//! let bytes = index.to_json();
//! let back = Index::parse("index.json".as_ref(), &bytes)?;
//! assert_eq!(back.find("docker.io/library/nginx:1.25").unwrap().size, 2);
//! # Ok::<(), tele_bundle::Error>(())
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::error::{parse_json, Error};
use crate::media_type;
use crate::platform::Platform;

/// The file marking a directory as a layout.
pub const OCI_LAYOUT_FILE: &str = "oci-layout";
/// The contents tele writes into [`OCI_LAYOUT_FILE`].
pub const OCI_LAYOUT_CONTENT: &[u8] = b"{\"imageLayoutVersion\":\"1.0.0\"}\n";
/// The file listing the layout's images.
pub const INDEX_FILE: &str = "index.json";
/// The directory of the blobs, relative to the layout, `/`-separated.
pub const BLOBS_DIR: &str = "blobs/sha256";
/// Annotation holding an image's reference in an OCI layout.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Annotation containerd reads on import.
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The annotations that name an image, in the order they are consulted.
pub const NAME_ANNOTATIONS: [&str; 2] = [REF_NAME, CONTAINERD_NAME];

const HINT: &str = "the layout is damaged; recreate it (or copy the bundle again)";

/// `index.json`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    #[serde(default = "schema_version")]
    pub schema_version: u32,
    /// [`media_type::OCI_INDEX`] when written by tele; optional in a layout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The images. Reading skips an entry that is not a usable descriptor
    /// (a bad digest, no size), so one bad entry does not hide the others.
    #[serde(deserialize_with = "usable_entries")]
    pub manifests: Vec<Descriptor>,
}

/// One entry of `index.json`: an image's top manifest or index.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The manifest's media type; an entry without one is taken for an OCI manifest.
    #[serde(default = "oci_manifest")]
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its length.
    pub size: u64,
    /// The platform of a manifest (not of an index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Annotations, among them the image's names ([`NAME_ANNOTATIONS`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

fn schema_version() -> u32 {
    2
}

fn oci_manifest() -> String {
    media_type::OCI_MANIFEST.into()
}

fn usable_entries<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Descriptor>, D::Error> {
    let raw: Vec<serde_json::Value> = serde::Deserialize::deserialize(d)?;
    Ok(raw
        .into_iter()
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect())
}

impl Descriptor {
    /// An entry for an image named `name` by both [`NAME_ANNOTATIONS`].
    pub fn named(
        media_type: &str,
        digest: Digest,
        size: u64,
        platform: Option<Platform>,
        name: &str,
    ) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            platform,
            annotations: NAME_ANNOTATIONS
                .iter()
                .map(|k| (k.to_string(), name.to_string()))
                .collect(),
        }
    }

    /// The image's names, as given by [`NAME_ANNOTATIONS`] (each at most once).
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = NAME_ANNOTATIONS
            .iter()
            .filter_map(|k| self.annotations.get(*k).map(String::as_str))
            .collect();
        names.dedup();
        names
    }
}

impl Index {
    /// An index of `manifests`, as tele writes it.
    pub fn new(manifests: Vec<Descriptor>) -> Index {
        Index {
            schema_version: 2,
            media_type: Some(media_type::OCI_INDEX.into()),
            manifests,
        }
    }

    /// Parses the contents of an `index.json`.
    pub fn from_slice(bytes: &[u8]) -> Result<Index, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Parses the contents of `path`, an `index.json`; errors name the file.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Index, Error> {
        parse_json(path, bytes, HINT)
    }

    /// Reads the `index.json` of the layout at `layout`.
    pub fn read(layout: &Path) -> Result<Index, Error> {
        let path = index_path(layout);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        Index::parse(&path, &bytes)
    }

    /// Serialised as tele writes it (pretty, fields in a stable order).
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("index.json serialises");
        v.push(b'\n');
        v
    }

    /// The entry named exactly `name` by one of [`NAME_ANNOTATIONS`].
    pub fn find(&self, name: &str) -> Option<&Descriptor> {
        self.manifests.iter().find(|d| d.names().contains(&name))
    }
}

/// The `index.json` of the layout at `layout`.
pub fn index_path(layout: &Path) -> PathBuf {
    layout.join(INDEX_FILE)
}

/// Where the blob `digest` is in the layout at `layout`.
pub fn blob_path(layout: &Path, digest: &Digest) -> PathBuf {
    layout.join(BLOBS_DIR).join(digest.hex())
}

/// The `blobs/sha256` directory of the layout at `layout`.
pub fn blobs_dir(layout: &Path) -> PathBuf {
    layout.join(BLOBS_DIR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_index_reads_back_and_names_both_ways() {
        let d = Digest::of_bytes(b"m");
        let index = Index::new(vec![Descriptor::named(
            media_type::OCI_MANIFEST,
            d.clone(),
            1,
            Some(Platform::default()),
            "example.com/a:1",
        )]);
        let bytes = index.to_json();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["schemaVersion"], 2);
        assert_eq!(v["mediaType"], media_type::OCI_INDEX);
        assert_eq!(
            v["manifests"][0]["annotations"][REF_NAME],
            "example.com/a:1"
        );
        assert_eq!(
            v["manifests"][0]["annotations"][CONTAINERD_NAME],
            "example.com/a:1"
        );
        let back = Index::parse(Path::new(INDEX_FILE), &bytes).unwrap();
        assert_eq!(back, index);
        assert_eq!(back.find("example.com/a:1").unwrap().digest, d);
        assert_eq!(back.manifests[0].names(), ["example.com/a:1"]);
        assert!(back.find("example.com/a:2").is_none());
    }

    #[test]
    fn unusable_entries_are_skipped_and_a_missing_list_refused() {
        let good = format!("sha256:{}", "a".repeat(64));
        let doc = serde_json::json!({"manifests": [
            {"digest": good, "size": 1, "annotations": {CONTAINERD_NAME: "x:1"}},
            {"digest": "sha256:bad", "size": 1},
            {"digest": good},
        ]});
        let index = Index::parse(Path::new(INDEX_FILE), doc.to_string().as_bytes()).unwrap();
        assert_eq!(index.schema_version, 2);
        assert_eq!(index.manifests.len(), 1);
        assert_eq!(index.manifests[0].media_type, media_type::OCI_MANIFEST);
        assert_eq!(index.manifests[0].names(), ["x:1"]);

        let err = Index::parse(Path::new(INDEX_FILE), b"{}").unwrap_err();
        assert!(err.to_string().contains("manifests"), "{err}");
        assert!(Index::parse(Path::new(INDEX_FILE), b"not json").is_err());
    }

    #[test]
    fn blob_paths_are_under_blobs_sha256() {
        let d = Digest::of_bytes(b"");
        assert_eq!(
            blob_path(Path::new("/l"), &d),
            Path::new("/l/blobs/sha256").join(d.hex())
        );
    }
}
