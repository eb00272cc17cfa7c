//! What `tele inspect` shows: `bundle.json` and the blobs a tarball holds,
//! read in one pass without extracting it.

use std::collections::BTreeMap;
use std::path::Path;

use crate::bundle_json::{self, BundleMeta, BUNDLE_JSON};
use crate::error::Error;
use crate::tarball::{self, Compression};
use crate::verify::parse_meta;

/// A bundle's metadata and how much its images share.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inspection {
    /// The bundle's metadata.
    #[serde(flatten)]
    pub meta: BundleMeta,
    /// Outer compression of the tarball.
    pub compression: Compression,
    /// Blobs found in the tarball.
    pub unique_blobs: usize,
    /// Their bytes.
    pub unique_blob_bytes: u64,
    /// Bytes the images would take without sharing, minus what they take.
    /// None when bundle.json's image sizes add up to more than a u64
    /// holds: no real bundle's do.
    pub bytes_saved_by_sharing: Option<u64>,
}

/// Reads bundle.json and the blob sizes from the tarball at `path`.
pub fn inspect(path: &Path) -> Result<Inspection, Error> {
    let mut meta_bytes = None;
    let mut blobs: BTreeMap<String, u64> = BTreeMap::new();
    let walked = tarball::walk(path, |rel, r, size| {
        if rel == BUNDLE_JSON {
            meta_bytes = Some(crate::error::read_bounded(
                r,
                crate::error::MAX_METADATA_BYTES,
            )?);
        } else if let Some(hex) = bundle_json::blob_hex_of_entry(rel) {
            blobs.insert(hex.to_string(), size);
        }
        Ok(())
    })?;
    let meta = parse_meta(path, meta_bytes)?;
    let expected_top = format!("{}-{}", meta.name, meta.version);
    if walked.top != expected_top {
        return Err(crate::tarball::not_a_bundle(
            path,
            format!(
                "its top directory is {}/, but bundle.json names the bundle {expected_top}",
                walked.top
            ),
        ));
    }
    let compression = walked.compression;
    // Sizes from the tar headers: a crafted one must not wrap around.
    let unique_blob_bytes = blobs.values().fold(0u64, |t, s| t.saturating_add(*s));
    Ok(Inspection {
        bytes_saved_by_sharing: meta
            .images
            .iter()
            .try_fold(0u64, |t, i| t.checked_add(i.size))
            .map(|total| total.saturating_sub(unique_blob_bytes)),
        meta,
        compression,
        unique_blobs: blobs.len(),
        unique_blob_bytes,
    })
}
