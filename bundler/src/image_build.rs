//! `tele image build`: a one-layer OCI image from a directory, deterministically,
//! optionally on top of a base image from the same layout.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use oci_spec::image::{ImageIndex, ImageManifest};
use tele_bundle::media_type as media;
use tele_bundle::oci_layout::{self, CONTAINERD_NAME, REF_NAME};
use tele_manifests::ImageRef;

use crate::blob_store::BlobStore;
use crate::digest::{Digest, HashingWriter};
use crate::error::BuildError;
use crate::image::{Blob, Platform};

/// What to build.
#[derive(Clone, Debug)]
pub struct ImageBuildOptions {
    /// The directory that becomes the image's new layer (its root is `/`).
    pub dir: PathBuf,
    /// The reference to name the image by.
    pub reference: ImageRef,
    /// The OCI layout to add the image to (created if missing).
    pub layout: PathBuf,
    /// A base image already in `layout`, whose layers come first.
    pub base: Option<ImageRef>,
    /// Entrypoint; empty keeps the base's.
    pub entrypoint: Vec<String>,
    /// Cmd; empty keeps the base's.
    pub cmd: Vec<String>,
    /// Extra `KEY=VALUE` environment.
    pub env: Vec<String>,
    /// Platform recorded in the config.
    pub platform: Platform,
    /// mtime of every file in the layer.
    pub mtime: u64,
}

/// What was built.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BuiltImage {
    /// The image's reference.
    pub reference: String,
    /// Its manifest digest.
    pub digest: Digest,
    /// The new layer (gzip).
    pub layer: Blob,
    /// Number of layers in the image.
    pub layers: usize,
}

fn io_err(p: &Path) -> impl Fn(io::Error) -> BuildError + '_ {
    move |e| BuildError::io(p, e)
}

/// Writes the layer tar of `dir` through `out`.
fn write_layer<W: Write>(dir: &Path, mtime: u64, out: W) -> Result<W, BuildError> {
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    for entry in walkdir::WalkDir::new(dir).min_depth(1).sort_by_file_name() {
        let entry = entry
            .map_err(|e| BuildError::input(format!("cannot read {}: {e}", dir.display()), ""))?;
        let rel = entry.path().strip_prefix(dir).expect("under dir");
        let meta = entry
            .path()
            .symlink_metadata()
            .map_err(io_err(entry.path()))?;
        let mut h = tar::Header::new_gnu();
        h.set_mtime(mtime);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mode(meta.permissions().mode() & 0o7777);
        let ft = meta.file_type();
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            tar.append_data(&mut h, rel, io::empty())
                .map_err(io_err(entry.path()))?;
        } else if ft.is_symlink() {
            let target = fs::read_link(entry.path()).map_err(io_err(entry.path()))?;
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            tar.append_link(&mut h, rel, target)
                .map_err(io_err(entry.path()))?;
        } else if ft.is_file() {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(meta.size());
            let f = File::open(entry.path()).map_err(io_err(entry.path()))?;
            tar.append_data(&mut h, rel, f)
                .map_err(io_err(entry.path()))?;
        }
        // Sockets, fifos and devices are not image content.
    }
    tar.into_inner().map_err(io_err(dir))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, BuildError> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| BuildError::input(format!("{}: {e}", path.display()), ""))
}

/// Builds the image and adds it to the layout (replacing an image of the same name).
pub fn build_image(opts: &ImageBuildOptions) -> Result<BuiltImage, BuildError> {
    if !opts.dir.is_dir() {
        return Err(BuildError::input(
            format!("{} is not a directory", opts.dir.display()),
            "give the directory whose files make the image",
        ));
    }
    let store = BlobStore::in_layout(&opts.layout).map_err(io_err(&opts.layout))?;
    // Edited as JSON, so that whatever else another tool put there is kept.
    let index_path = oci_layout::index_path(&opts.layout);
    let mut index: serde_json::Value = if index_path.is_file() {
        read_json(&index_path)?
    } else {
        serde_json::json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": []})
    };

    // The base image's layers and config, when there is one.
    let (mut layers, mut config) = match &opts.base {
        None => (
            vec![],
            serde_json::json!({"config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}, "rootfs": {"type": "layers", "diff_ids": []}, "history": []}),
        ),
        Some(base) => {
            let idx = ImageIndex::from_file(&index_path)
                .map_err(|e| BuildError::input(format!("{}: {e}", index_path.display()), ""))?;
            let d = idx
                .manifests()
                .iter()
                .find(|d| {
                    d.annotations()
                        .as_ref()
                        .and_then(|a| a.get(REF_NAME))
                        .is_some_and(|n| n.parse::<ImageRef>().is_ok_and(|n| n == *base))
                })
                .ok_or_else(|| {
                    BuildError::input(
                        format!("base image {base} is not in {}", opts.layout.display()),
                        "build the base image into the same layout first",
                    )
                })?;
            let m = ImageManifest::from_file(
                store.path(
                    &d.digest()
                        .to_string()
                        .parse()
                        .map_err(|e| BuildError::input(format!("{e}"), ""))?,
                ),
            )
            .map_err(|e| BuildError::input(format!("base image {base}: {e}"), ""))?;
            let cfg: serde_json::Value = read_json(
                &store.path(
                    &m.config()
                        .digest()
                        .to_string()
                        .parse()
                        .map_err(|e| BuildError::input(format!("{e}"), ""))?,
                ),
            )?;
            let layers: Vec<serde_json::Value> = m.layers().iter().map(|l| serde_json::json!({"mediaType": l.media_type().to_string(), "digest": l.digest().to_string(), "size": l.size()})).collect();
            (layers, cfg)
        }
    };

    // The new layer: tar -> sha256 (diff id) -> gzip -> blob.
    let blob = store.writer().map_err(io_err(&opts.layout))?;
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(blob, flate2::Compression::new(6));
    let hashed = write_layer(&opts.dir, opts.mtime, HashingWriter::new(gz))?;
    let (diff_id, _, gz) = hashed.finish();
    let blob = gz.finish().map_err(io_err(&opts.layout))?;
    let (layer_digest, layer_size) = blob
        .commit(None)
        .map_err(|e| BuildError::input(format!("{e}"), ""))?;
    let layer = Blob {
        digest: layer_digest,
        size: layer_size,
        media_type: media::OCI_LAYER_GZIP.into(),
    };
    layers.push(serde_json::json!({"mediaType": layer.media_type, "digest": layer.digest, "size": layer.size}));

    config["architecture"] = opts.platform.architecture.clone().into();
    config["os"] = opts.platform.os.clone().into();
    if let Some(v) = &opts.platform.variant {
        config["variant"] = v.clone().into();
    }
    let c = &mut config["config"];
    if !c.is_object() {
        *c = serde_json::json!({});
    }
    if !opts.entrypoint.is_empty() {
        c["Entrypoint"] = opts.entrypoint.clone().into();
    }
    if !opts.cmd.is_empty() {
        c["Cmd"] = opts.cmd.clone().into();
    }
    if !opts.env.is_empty() {
        let mut env: Vec<serde_json::Value> = c["Env"].as_array().cloned().unwrap_or_default();
        env.extend(opts.env.iter().map(|e| e.clone().into()));
        c["Env"] = env.into();
    }
    let mut diff_ids = config["rootfs"]["diff_ids"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    diff_ids.push(diff_id.to_string().into());
    config["rootfs"] = serde_json::json!({"type": "layers", "diff_ids": diff_ids});
    let mut history = config["history"].as_array().cloned().unwrap_or_default();
    history.push(serde_json::json!({"created_by": format!("tele image build {}", opts.dir.file_name().map(|n| n.to_string_lossy()).unwrap_or_default())}));
    config["history"] = history.into();
    config.as_object_mut().expect("object").remove("created");

    let config_bytes = serde_json::to_vec(&config).expect("json");
    let config_digest = store
        .put_bytes(&config_bytes)
        .map_err(io_err(&opts.layout))?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::OCI_CONFIG, "digest": config_digest, "size": config_bytes.len()},
        "layers": layers,
    });
    let manifest_bytes = serde_json::to_vec(&manifest).expect("json");
    let manifest_digest = store
        .put_bytes(&manifest_bytes)
        .map_err(io_err(&opts.layout))?;

    let name = opts.reference.to_string();
    let entries = index["manifests"].as_array_mut().ok_or_else(|| {
        BuildError::input(format!("{}: no manifests list", index_path.display()), "")
    })?;
    entries.retain(|e| e["annotations"][REF_NAME].as_str() != Some(name.as_str()));
    entries.push(serde_json::json!({
        "mediaType": media::OCI_MANIFEST,
        "digest": manifest_digest,
        "size": manifest_bytes.len(),
        "platform": opts.platform,
        "annotations": {REF_NAME: name, CONTAINERD_NAME: name},
    }));
    entries.sort_by(|a, b| {
        a["annotations"][REF_NAME]
            .as_str()
            .cmp(&b["annotations"][REF_NAME].as_str())
    });
    write_atomically(
        &opts.layout.join(oci_layout::OCI_LAYOUT_FILE),
        oci_layout::OCI_LAYOUT_CONTENT,
    )?;
    let mut bytes = serde_json::to_vec_pretty(&index).expect("json");
    bytes.push(b'\n');
    write_atomically(&index_path, &bytes)?;
    Ok(BuiltImage {
        reference: name,
        digest: manifest_digest,
        layer,
        layers: layers.len(),
    })
}

/// Writes `path` crash-safely (temporary file, fsync, rename).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    tele_bundle::durable::write_durably(path, bytes, 0o644).map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(dir: &Path, layout: &Path, r: &str, base: Option<&str>) -> ImageBuildOptions {
        ImageBuildOptions {
            dir: dir.into(),
            reference: r.parse().unwrap(),
            layout: layout.into(),
            base: base.map(|b| b.parse().unwrap()),
            entrypoint: vec![],
            cmd: vec!["/bin/sh".into()],
            env: vec![],
            platform: Platform::default(),
            mtime: 0,
        }
    }

    #[test]
    fn same_directory_gives_same_digest_and_base_layers_are_shared() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        fs::create_dir_all(src.join("bin")).unwrap();
        fs::write(src.join("bin/hello"), b"#!/bin/sh\necho hi\n").unwrap();
        let a = build_image(&opts(
            &src,
            &t.path().join("l1"),
            "example.com/base:1",
            None,
        ))
        .unwrap();
        let b = build_image(&opts(
            &src,
            &t.path().join("l2"),
            "example.com/base:1",
            None,
        ))
        .unwrap();
        assert_eq!(a.digest, b.digest, "deterministic across layouts");
        let top = t.path().join("top");
        fs::create_dir_all(&top).unwrap();
        fs::write(top.join("app"), b"app").unwrap();
        let c = build_image(&opts(
            &top,
            &t.path().join("l1"),
            "example.com/app:1",
            Some("example.com/base:1"),
        ))
        .unwrap();
        assert_eq!(c.layers, 2);
        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(t.path().join("l1/index.json")).unwrap()).unwrap();
        assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
        // Rebuilding replaces the entry instead of adding one.
        build_image(&opts(
            &top,
            &t.path().join("l1"),
            "example.com/app:1",
            Some("example.com/base:1"),
        ))
        .unwrap();
        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(t.path().join("l1/index.json")).unwrap()).unwrap();
        assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
    }
}
