//! Images on disk, consulted before any registry so a build can run offline:
//! OCI image layouts (`oci:PATH`) and `docker save` archives (`docker-archive:PATH`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use oci_spec::image::{ImageIndex, ImageManifest};
use tele_bundle::media_type as media;
use tele_bundle::oci_layout::{self, NAME_ANNOTATIONS};
use tele_manifests::ImageRef;

use crate::blob_store::BlobStore;
use crate::digest::Digest;
use crate::error::BuildError;
use crate::image::{self, Blob, Origin, Platform, ResolvedImage};

/// One `--image-source`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocalSource {
    /// `oci:PATH`
    OciLayout(PathBuf),
    /// `docker-archive:PATH`
    DockerArchive(PathBuf),
}

impl std::str::FromStr for LocalSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (kind, path) = s.split_once(':').unwrap_or(("", s));
        let path = PathBuf::from(path);
        match kind {
            "oci" => Ok(LocalSource::OciLayout(path)),
            "docker-archive" => Ok(LocalSource::DockerArchive(path)),
            _ => Err(format!(
                "`{s}` is not an image source: use oci:PATH (an OCI image layout) or docker-archive:PATH (a `docker save` tar)"
            )),
        }
    }
}

impl LocalSource {
    /// Checks that the source exists and has the expected shape.
    pub fn check(&self) -> Result<(), BuildError> {
        match self {
            LocalSource::OciLayout(p) => {
                if !oci_layout::index_path(p).is_file() {
                    return Err(BuildError::input(
                        format!("image source oci:{} is not an OCI image layout (no index.json)", p.display()),
                        "point --image-source oci:PATH at a directory made by `skopeo copy ... oci:PATH:REF` or `tele image build`",
                    ));
                }
            }
            LocalSource::DockerArchive(p) => {
                if !p.is_file() {
                    return Err(BuildError::input(
                        format!("image source docker-archive:{} does not exist", p.display()),
                        "point --image-source docker-archive:PATH at a file made by `docker save`",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Resolves `r` from this source, or `None` when the source does not have it.
    /// Manifests (and, for docker archives, every blob) are put into `store`.
    pub fn resolve(
        &self,
        r: &ImageRef,
        platform: &Platform,
        store: &BlobStore,
    ) -> Result<Option<ResolvedImage>, BuildError> {
        match self {
            LocalSource::OciLayout(p) => resolve_from_layout(p, r, platform, store),
            LocalSource::DockerArchive(p) => resolve_from_docker_archive(p, r, store),
        }
    }
}

/// Copies one blob from an OCI layout into the store, verifying it.
pub fn copy_layout_blob(layout: &Path, blob: &Blob, store: &BlobStore) -> Result<(), BuildError> {
    let src = oci_layout::blob_path(layout, &blob.digest);
    let mut f = File::open(&src).map_err(|e| BuildError::io(&src, e))?;
    let mut w = store.writer().map_err(|e| BuildError::io(&src, e))?;
    io::copy(&mut f, &mut w).map_err(|e| BuildError::io(&src, e))?;
    w.commit(Some((&blob.digest, blob.size))).map_err(|e| {
        BuildError::input(
            format!(
                "blob {} in oci:{} is corrupt: {e}",
                blob.digest,
                layout.display()
            ),
            "recreate the layout; its files no longer match their digests",
        )
    })?;
    Ok(())
}

fn read_layout_blob(layout: &Path, d: &Digest) -> Result<Vec<u8>, BuildError> {
    let p = oci_layout::blob_path(layout, d);
    let bytes = fs::read(&p).map_err(|e| BuildError::io(&p, e))?;
    if Digest::of_bytes(&bytes) != *d {
        return Err(BuildError::input(
            format!(
                "blob {d} in oci:{} does not match its digest",
                layout.display()
            ),
            "recreate the layout; its files no longer match their digests",
        ));
    }
    Ok(bytes)
}

fn names_of(d: &oci_spec::image::Descriptor) -> Vec<String> {
    let Some(a) = d.annotations() else {
        return vec![];
    };
    NAME_ANNOTATIONS
        .iter()
        .filter_map(|k| a.get(*k).cloned())
        .collect()
}

fn resolve_from_layout(
    layout: &Path,
    r: &ImageRef,
    platform: &Platform,
    store: &BlobStore,
) -> Result<Option<ResolvedImage>, BuildError> {
    let index_path = oci_layout::index_path(layout);
    let index = ImageIndex::from_file(&index_path).map_err(|e| {
        BuildError::input(
            format!("{}: not a valid OCI index: {e}", index_path.display()),
            "recreate the layout with skopeo or `tele image build`",
        )
    })?;
    let by_name = index.manifests().iter().find(|d| {
        names_of(d)
            .iter()
            .any(|n| n.parse::<ImageRef>().is_ok_and(|n| n == *r))
    });
    let top = match (by_name, r.digest()) {
        (Some(d), _) => image::descriptor_blob(d).map_err(|e| BuildError::input(e, ""))?,
        (None, Some(digest)) => {
            let Ok(digest) = digest.parse::<Digest>() else {
                return Ok(None);
            };
            let Some(size) = fs::metadata(oci_layout::blob_path(layout, &digest))
                .ok()
                .map(|m| m.len())
            else {
                return Ok(None);
            };
            let bytes = read_layout_blob(layout, &digest)?;
            let media_type =
                image::declared_media_type(&bytes).unwrap_or_else(|| media::OCI_MANIFEST.into());
            Blob {
                digest,
                size,
                media_type,
            }
        }
        (None, None) => return Ok(None),
    };
    if let Some(want) = r.digest() {
        if want != top.digest.to_string() {
            return Ok(None);
        }
    }
    let mut manifests = vec![];
    let top_bytes = read_layout_blob(layout, &top.digest)?;
    store
        .put_bytes(&top_bytes)
        .map_err(|e| BuildError::io(store.path(&top.digest), e))?;
    manifests.push(top.clone());
    let manifest_bytes = if media::is_index(&top.media_type) {
        let idx = ImageIndex::from_reader(&top_bytes[..]).map_err(|e| {
            BuildError::input(
                format!("{r}: bad index in oci:{}: {e}", layout.display()),
                "",
            )
        })?;
        let chosen =
            image::choose_platform(platform, &idx).ok_or_else(|| no_platform(r, platform, &idx))?;
        let m = image::descriptor_blob(chosen).map_err(|e| BuildError::input(e, ""))?;
        let bytes = read_layout_blob(layout, &m.digest)?;
        store
            .put_bytes(&bytes)
            .map_err(|e| BuildError::io(store.path(&m.digest), e))?;
        manifests.push(m);
        bytes
    } else {
        top_bytes
    };
    let m = ImageManifest::from_reader(&manifest_bytes[..]).map_err(|e| {
        BuildError::input(
            format!("{r}: bad manifest in oci:{}: {e}", layout.display()),
            "",
        )
    })?;
    Ok(Some(ResolvedImage {
        reference: r.clone(),
        top,
        platform: platform.clone(),
        manifests,
        content: image::manifest_content(&m).map_err(|e| BuildError::input(e, ""))?,
        origin: Origin::OciLayout(layout.to_path_buf()),
    }))
}

/// The error for an index without the wanted platform.
pub fn no_platform(r: &ImageRef, platform: &Platform, idx: &ImageIndex) -> BuildError {
    BuildError::input(
        format!(
            "{r} has no image for platform {platform} (it offers: {})",
            image::offered_platforms(idx)
        ),
        "choose one of the offered platforms with --platform",
    )
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn clean(p: &Path) -> String {
    let mut out: Vec<&std::ffi::OsStr> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out.iter()
        .map(|s| s.to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

fn archive_err(path: &Path, e: impl std::fmt::Display) -> BuildError {
    BuildError::input(
        format!("docker-archive:{}: {e}", path.display()),
        "the file should be the output of `docker save`",
    )
}

fn resolve_from_docker_archive(
    path: &Path,
    r: &ImageRef,
    store: &BlobStore,
) -> Result<Option<ResolvedImage>, BuildError> {
    if r.digest().is_some() {
        // `docker save` keeps no registry digests: a pinned reference cannot match.
        return Ok(None);
    }
    // First pass: manifest.json and the symlinks newer docker versions write.
    let mut manifest_json = None;
    let mut links = BTreeMap::new();
    let file = File::open(path).map_err(|e| BuildError::io(path, e))?;
    let mut archive = tar::Archive::new(file);
    for entry in archive.entries().map_err(|e| archive_err(path, e))? {
        let mut entry = entry.map_err(|e| archive_err(path, e))?;
        let name = clean(&entry.path().map_err(|e| archive_err(path, e))?);
        if name == "manifest.json" {
            let mut s = Vec::new();
            entry
                .read_to_end(&mut s)
                .map_err(|e| archive_err(path, e))?;
            manifest_json = Some(s);
        } else if entry.header().entry_type().is_symlink() {
            if let Ok(Some(target)) = entry.link_name() {
                let dir = Path::new(&name).parent().unwrap_or(Path::new(""));
                let resolved = clean(&dir.join(target));
                links.insert(name, resolved);
            }
        }
    }
    let manifest_json =
        manifest_json.ok_or_else(|| archive_err(path, "no manifest.json inside"))?;
    let entries: Vec<ArchiveEntry> = serde_json::from_slice(&manifest_json)
        .map_err(|e| archive_err(path, format!("manifest.json: {e}")))?;
    let Some(entry) = entries.iter().find(|e| {
        e.repo_tags
            .iter()
            .flatten()
            .any(|t| t.parse::<ImageRef>().is_ok_and(|t| t == *r))
    }) else {
        return Ok(None);
    };
    let real = |p: &str| {
        let p = clean(Path::new(p));
        links.get(&p).cloned().unwrap_or(p)
    };
    let wanted: Vec<String> = std::iter::once(&entry.config)
        .chain(entry.layers.iter())
        .map(|p| real(p))
        .collect();
    let wanted_set: BTreeSet<&String> = wanted.iter().collect();

    // Second pass: copy config and layers into the cache, hashing as they go.
    let mut found: BTreeMap<String, (Digest, u64, bool)> = BTreeMap::new();
    let file = File::open(path).map_err(|e| BuildError::io(path, e))?;
    let mut archive = tar::Archive::new(file);
    for e in archive.entries().map_err(|e| archive_err(path, e))? {
        let mut e = e.map_err(|e| archive_err(path, e))?;
        let name = clean(&e.path().map_err(|err| archive_err(path, err))?);
        if !wanted_set.contains(&name)
            || found.contains_key(&name)
            || !e.header().entry_type().is_file()
        {
            continue;
        }
        let mut w = store.writer().map_err(|err| BuildError::io(path, err))?;
        let mut head = [0u8; 2];
        let n = e.read(&mut head).map_err(|err| archive_err(path, err))?;
        io::Write::write_all(&mut w, &head[..n]).map_err(|err| BuildError::io(path, err))?;
        io::copy(&mut e, &mut w).map_err(|err| archive_err(path, err))?;
        let (d, size) = w.commit(None).map_err(|err| archive_err(path, err))?;
        found.insert(name, (d, size, n == 2 && head == [0x1f, 0x8b]));
    }
    let blob = |p: &String, media_type: &str| -> Result<Blob, BuildError> {
        let (digest, size, gz) = found.get(p).ok_or_else(|| {
            archive_err(path, format!("{p} is named in manifest.json but missing"))
        })?;
        let media_type = if media_type == media::OCI_LAYER_TAR && *gz {
            media::OCI_LAYER_GZIP
        } else {
            media_type
        };
        Ok(Blob {
            digest: digest.clone(),
            size: *size,
            media_type: media_type.into(),
        })
    };
    let config = blob(&wanted[0], media::OCI_CONFIG)?;
    let layers = wanted[1..]
        .iter()
        .map(|p| blob(p, media::OCI_LAYER_TAR))
        .collect::<Result<Vec<_>, _>>()?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": config,
        "layers": layers,
    });
    let bytes = serde_json::to_vec(&manifest).expect("json");
    let digest = store
        .put_bytes(&bytes)
        .map_err(|e| BuildError::io(path, e))?;
    let top = Blob {
        digest,
        size: bytes.len() as u64,
        media_type: media::OCI_MANIFEST.into(),
    };
    let mut content = vec![config];
    content.extend(layers);
    Ok(Some(ResolvedImage {
        reference: r.clone(),
        top: top.clone(),
        platform: Platform::default(),
        manifests: vec![top],
        content,
        origin: Origin::DockerArchive(path.to_path_buf()),
    }))
}
