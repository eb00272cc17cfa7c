//! Writes the bundle tarball in one pass: sorted entries, fixed metadata, into
//! a temporary file beside the output that is renamed only when complete.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use tele_bundle::bundle_json::{blob_entry, BlobInfo, BundleMeta, FileInfo, BUNDLE_JSON};
use tele_bundle::signature::{SigningKey, SIGNATURE_FILE};

use crate::blob_store::BlobStore;
use crate::digest::Digest;
use crate::error::BuildError;
use crate::reporter::{Reporter, Stage};
use crate::tar_writer::{Compression, TarWriter};

/// Where a file's content comes from.
pub enum Content {
    /// Held in memory.
    Bytes(Vec<u8>),
    /// A file on disk.
    File(PathBuf),
}

/// A file to put in the bundle (other than blobs and bundle.json).
pub struct BundleFile {
    /// Path relative to the top directory, `/`-separated.
    pub path: String,
    /// Its content.
    pub content: Content,
    /// Unix mode.
    pub mode: u32,
}

enum Entry<'a> {
    Dir,
    File(&'a BundleFile, u64),
    Blob(&'a BlobInfo),
    Meta,
    Signature,
}

/// Hashes each file, completes `meta.files`, and writes the tarball to
/// `output`, with the signature of its bundle.json when there is a `signer`.
/// Returns the size of the tarball.
#[allow(clippy::too_many_arguments)]
pub fn write_bundle(
    output: &Path,
    compression: Compression,
    mtime: u64,
    top: &str,
    files: &[BundleFile],
    meta: &mut BundleMeta,
    store: &BlobStore,
    signer: Option<&SigningKey>,
    reporter: &dyn Reporter,
) -> Result<u64, BuildError> {
    let mut sizes = Vec::with_capacity(files.len());
    meta.files.clear();
    for f in files {
        let (sha, size) = match &f.content {
            Content::Bytes(b) => (Digest::of_bytes(b), b.len() as u64),
            Content::File(p) => Digest::of_reader(File::open(p).map_err(|e| BuildError::io(p, e))?)
                .map_err(|e| BuildError::io(p, e))?,
        };
        sizes.push(size);
        meta.files.push(FileInfo {
            path: f.path.clone(),
            size,
            sha256: sha.hex().to_string(),
        });
    }
    meta.files.sort_by(|a, b| a.path.cmp(&b.path));
    let meta_json = meta.to_json();
    let signature = signer.map(|k| k.sign(&meta_json));

    // Every entry with its path; parents get directory entries.
    let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
    entries.insert(BUNDLE_JSON.into(), Entry::Meta);
    if signature.is_some() {
        entries.insert(SIGNATURE_FILE.into(), Entry::Signature);
    }
    for (f, size) in files.iter().zip(&sizes) {
        entries.insert(f.path.clone(), Entry::File(f, *size));
    }
    for b in &meta.blobs {
        entries.insert(blob_entry(&b.digest), Entry::Blob(b));
    }
    let paths: Vec<String> = entries.keys().cloned().collect();
    for p in paths {
        let mut dir = Path::new(&p).parent();
        while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
            entries
                .entry(d.to_string_lossy().into_owned())
                .or_insert(Entry::Dir);
            dir = d.parent();
        }
    }

    let total: u64 = sizes.iter().sum::<u64>() + meta.unique_blob_bytes() + meta_json.len() as u64;
    reporter.start(Stage::Write, total);
    let out_dir = match output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !out_dir.is_dir() {
        return Err(BuildError::input(
            format!(
                "cannot write {}: the directory {} does not exist",
                output.display(),
                out_dir.display()
            ),
            "create it first, or give another path with -o",
        ));
    }
    let file_name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{file_name}.partial-"))
        .tempfile_in(&out_dir)
        .map_err(|e| BuildError::io(&out_dir, e))?;
    let (file, tmp_path) = tmp.into_parts();
    let io_err = |e| BuildError::io(&tmp_path, e);
    let mut tar = TarWriter::new(file, compression, mtime).map_err(io_err)?;
    let mut advance = |n| reporter.advance(Stage::Write, n);
    tar.add_dir(top).map_err(io_err)?;
    for (path, entry) in &entries {
        let full = format!("{top}/{path}");
        match entry {
            Entry::Dir => tar.add_dir(&full),
            Entry::Meta => {
                advance(meta_json.len() as u64);
                tar.add_bytes(&full, 0o644, &meta_json)
            }
            Entry::Signature => {
                tar.add_bytes(&full, 0o644, signature.as_deref().unwrap_or_default())
            }
            Entry::File(f, size) => match &f.content {
                Content::Bytes(b) => {
                    advance(b.len() as u64);
                    tar.add_bytes(&full, f.mode, b)
                }
                Content::File(p) => tar.add_file(&full, f.mode, p, *size, &mut advance),
            },
            Entry::Blob(b) => {
                tar.add_file(&full, 0o644, &store.path(&b.digest), b.size, &mut advance)
            }
        }
        .map_err(io_err)?;
    }
    let file = tar.finish().map_err(io_err)?;
    let len = file.metadata().map_err(io_err)?.len();
    // Readable by all, as a file copied to the machines should be.
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(fs::Permissions::from_mode(0o644))
            .map_err(io_err)?;
    }
    // On disk for good before it is called done: fsync, rename, fsync of the directory.
    tele_bundle::durable::persist(&file, tmp_path, output)
        .map_err(|e| BuildError::io(output, e))?;
    reporter.finish(Stage::Write);
    Ok(len)
}
