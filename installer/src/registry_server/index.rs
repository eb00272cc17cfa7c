//! `index.json`, read at start and again whenever the file changes, and
//! telling manifests from other blobs.

use super::*;

/// What `index.json` says: images by `registry/repository:tag`, the media
/// type of each top-level manifest by digest, and every blob the layout's
/// images use (their manifests, configs and layers): only those are served.
#[derive(Debug, Default)]
pub(super) struct Index {
    pub(super) by_reference: HashMap<String, Digest>,
    pub(super) media_types: HashMap<Digest, String>,
    pub(super) blobs: std::collections::HashSet<Digest>,
}

/// Opens a file of the layout for reading without following a symbolic
/// link (a link there is refused, as `ELOOP`).
pub(super) fn open_no_follow(path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
}

/// The digests a manifest or an index (the blob `digest` of `layout`)
/// refers to: children, config and layers. Blobs that cannot be read or
/// parsed refer to nothing.
fn references(layout: &Path, digest: &Digest) -> Vec<Digest> {
    use std::io::Read as _;
    let Ok(file) = open_no_follow(&tele_bundle::oci_layout::blob_path(layout, digest)) else {
        return vec![];
    };
    let mut bytes = Vec::new();
    if file
        .take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)
        .is_err()
        || bytes.len() as u64 > MAX_MANIFEST_BYTES
    {
        return vec![];
    }
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return vec![];
    };
    let listed = |v: &serde_json::Value| -> Vec<Digest> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["digest"].as_str()?.parse().ok())
            .collect()
    };
    let mut out = listed(&doc["manifests"]);
    out.extend(listed(&doc["layers"]));
    out.extend(
        doc["config"]["digest"]
            .as_str()
            .and_then(|d| d.parse().ok()),
    );
    out
}

impl Index {
    pub(super) fn parse(path: &Path, bytes: &[u8]) -> Result<Index, RegistryError> {
        // Entries we cannot use (a bad digest, say) are skipped by the
        // reader rather than failing the whole node.
        let doc = tele_bundle::oci_layout::Index::from_slice(bytes).map_err(|e| {
            RegistryError::Index {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }
        })?;
        let mut index = Index::default();
        for entry in doc.manifests {
            for name in entry.names() {
                let Ok(image) = ImageRef::parse(name) else {
                    continue;
                };
                if let Some(tag) = image.tag() {
                    let key = format!("{}/{}:{tag}", image.registry(), image.repository());
                    index.by_reference.insert(key, entry.digest.clone());
                }
            }
            index.media_types.insert(entry.digest, entry.media_type);
        }
        // Every blob reachable from index.json: an index's manifests (three
        // levels at most), each manifest's config and layers.
        let layout = path.parent().unwrap_or(Path::new("."));
        let mut level: Vec<Digest> = index.media_types.keys().cloned().collect();
        for _ in 0..3 {
            let mut next = Vec::new();
            for d in level {
                if index.blobs.insert(d.clone()) {
                    next.extend(references(layout, &d));
                }
            }
            level = next;
        }
        index.blobs.extend(level);
        Ok(index)
    }
}

/// `index.json`, re-read when the file changes so the mirror follows a
/// bundle update without a restart.
pub(super) struct IndexCache {
    pub(super) path: PathBuf,
    pub(super) loaded: Mutex<(FileStamp, Arc<Index>)>,
}

/// Enough of a file's metadata to notice it was rewritten or replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FileStamp {
    pub(super) modified: Option<SystemTime>,
    pub(super) len: u64,
    pub(super) inode: u64,
}

impl FileStamp {
    pub(super) fn of(path: &Path) -> io::Result<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path)?;
        Ok(FileStamp {
            modified: meta.modified().ok(),
            len: meta.len(),
            inode: meta.ino(),
        })
    }
}

impl IndexCache {
    pub(super) fn load(layout: &Path) -> Result<IndexCache, RegistryError> {
        let path = tele_bundle::oci_layout::index_path(layout);
        let read = |source| RegistryError::Read {
            path: path.clone(),
            source,
        };
        let stamp = FileStamp::of(&path).map_err(read)?;
        let bytes = std::fs::read(&path).map_err(read)?;
        let index = Index::parse(&path, &bytes)?;
        Ok(IndexCache {
            loaded: Mutex::new((stamp, Arc::new(index))),
            path,
        })
    }

    /// The index as it is on disk now; the last good one while the file is
    /// missing or half-written.
    pub(super) fn current(&self) -> Arc<Index> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(stamp) = FileStamp::of(&self.path) {
            if stamp != loaded.0 {
                let reloaded = std::fs::read(&self.path)
                    .ok()
                    .and_then(|bytes| Index::parse(&self.path, &bytes).ok());
                if let Some(index) = reloaded {
                    *loaded = (stamp, Arc::new(index));
                }
            }
        }
        loaded.1.clone()
    }
}

/// The media type of `bytes` if they are an image manifest or index: from
/// the document itself, else from its `index.json` entry, else its shape.
pub(super) fn manifest_media_type(bytes: &[u8], listed: Option<&String>) -> Option<String> {
    let doc: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let own = doc["mediaType"].as_str();
    let known = [
        OCI_MANIFEST,
        OCI_INDEX,
        DOCKER_MANIFEST,
        DOCKER_MANIFEST_LIST,
    ];
    let is_manifest = listed.is_some()
        || own.is_some_and(|t| known.contains(&t))
        || (doc["schemaVersion"] == 2 && (doc["manifests"].is_array() || doc["layers"].is_array()));
    if !is_manifest {
        return None;
    }
    let shape = if doc["manifests"].is_array() {
        OCI_INDEX
    } else {
        OCI_MANIFEST
    };
    Some(
        own.map(str::to_string)
            .or_else(|| listed.cloned())
            .unwrap_or(shape.into()),
    )
}
