//! Reading a bundle without extracting it: `tele inspect` and `tele verify`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek};
use std::path::{Path, PathBuf};

use tele_bundle::bundle_json::{BundleMeta, BUNDLE_JSON};

use crate::digest::{Digest, HashingWriter};
use crate::error::BuildError;
use crate::tar_writer::Compression;

/// What `tele inspect` shows.
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
    pub bytes_saved_by_sharing: u64,
}

/// The outcome of `tele verify`.
#[derive(Clone, Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    /// Files checked against bundle.json.
    pub files_checked: usize,
    /// Blobs checked against their digests.
    pub blobs_checked: usize,
    /// Everything wrong, one line each, naming the file or blob.
    pub problems: Vec<String>,
}

fn detect(file: &mut File) -> io::Result<Compression> {
    let mut magic = [0u8; 4];
    let n = file.read(&mut magic)?;
    file.rewind()?;
    Ok(match &magic[..n] {
        [0x28, 0xb5, 0x2f, 0xfd] => Compression::Zstd,
        [0x1f, 0x8b, ..] => Compression::Gzip,
        _ => Compression::None,
    })
}

fn bad_bundle(path: &Path, e: impl std::fmt::Display) -> BuildError {
    BuildError::input(
        format!("{} is not a readable tele bundle: {e}", path.display()),
        "give the .tar written by `tele build` (or its extracted directory for verify)",
    )
}

/// Calls `visit(relative path, entry)` for each regular file of the tarball;
/// returns the compression found.
fn walk_tar(
    path: &Path,
    mut visit: impl FnMut(&str, &mut dyn Read, u64) -> io::Result<()>,
) -> Result<Compression, BuildError> {
    let mut file = File::open(path).map_err(|e| BuildError::io(path, e))?;
    let compression = detect(&mut file).map_err(|e| BuildError::io(path, e))?;
    let reader: Box<dyn Read> = match compression {
        Compression::None => Box::new(file),
        Compression::Zstd => Box::new(zstd::Decoder::new(file).map_err(|e| bad_bundle(path, e))?),
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(BufReader::new(file))),
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(|e| bad_bundle(path, e))? {
        let mut entry = entry.map_err(|e| bad_bundle(path, e))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()
            .map_err(|e| bad_bundle(path, e))?
            .to_string_lossy()
            .into_owned();
        let rel = name
            .split_once('/')
            .map(|(_, r)| r.to_string())
            .unwrap_or_default();
        let size = entry.size();
        visit(&rel, &mut entry, size).map_err(|e| bad_bundle(path, e))?;
    }
    Ok(compression)
}

fn blob_name(rel: &str) -> Option<&str> {
    rel.strip_prefix("images/blobs/sha256/")
}

/// Reads bundle.json and the blob sizes from a tarball without extracting it.
pub fn inspect(path: &Path) -> Result<Inspection, BuildError> {
    let mut meta_bytes = None;
    let mut blobs: BTreeMap<String, u64> = BTreeMap::new();
    let compression = walk_tar(path, |rel, r, size| {
        if rel == BUNDLE_JSON {
            let mut v = Vec::new();
            r.read_to_end(&mut v)?;
            meta_bytes = Some(v);
        } else if let Some(hex) = blob_name(rel) {
            blobs.insert(hex.to_string(), size);
        }
        Ok(())
    })?;
    let meta = parse_meta(path, meta_bytes)?;
    let unique_blob_bytes: u64 = blobs.values().sum();
    Ok(Inspection {
        bytes_saved_by_sharing: meta
            .bytes_without_sharing()
            .saturating_sub(unique_blob_bytes),
        meta,
        compression,
        unique_blobs: blobs.len(),
        unique_blob_bytes,
    })
}

fn parse_meta(path: &Path, bytes: Option<Vec<u8>>) -> Result<BundleMeta, BuildError> {
    let bytes = bytes.ok_or_else(|| bad_bundle(path, "it has no bundle.json"))?;
    serde_json::from_slice(&bytes).map_err(|e| bad_bundle(path, format!("bundle.json: {e}")))
}

fn hash(r: &mut dyn Read) -> io::Result<(Digest, u64)> {
    let mut w = HashingWriter::new(io::sink());
    io::copy(r, &mut w)?;
    let (d, n, _) = w.finish();
    Ok((d, n))
}

/// Checks every file of a bundle (tarball or extracted directory) against
/// bundle.json and every blob against its digest.
pub fn verify(path: &Path) -> Result<Verification, BuildError> {
    let mut seen: BTreeMap<String, (Digest, u64)> = BTreeMap::new();
    let mut meta_bytes = None;
    if path.is_dir() {
        let top = if path.join(BUNDLE_JSON).is_file() {
            path.to_path_buf()
        } else {
            return Err(bad_bundle(path, "the directory has no bundle.json"));
        };
        for entry in walkdir::WalkDir::new(&top).sort_by_file_name() {
            let entry = entry.map_err(|e| bad_bundle(path, e))?;
            if !entry.file_type().is_file() {
                continue;
            }
            let rel = entry.path().strip_prefix(&top).expect("under top");
            let rel = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            let p: PathBuf = entry.path().to_path_buf();
            if rel == BUNDLE_JSON {
                meta_bytes = Some(std::fs::read(&p).map_err(|e| BuildError::io(&p, e))?);
                continue;
            }
            let mut f = File::open(&p).map_err(|e| BuildError::io(&p, e))?;
            seen.insert(rel, hash(&mut f).map_err(|e| BuildError::io(&p, e))?);
        }
    } else {
        walk_tar(path, |rel, r, _| {
            if rel == BUNDLE_JSON {
                let mut v = Vec::new();
                r.read_to_end(&mut v)?;
                meta_bytes = Some(v);
            } else {
                seen.insert(rel.to_string(), hash(r)?);
            }
            Ok(())
        })?;
    }
    let meta = parse_meta(path, meta_bytes)?;
    Ok(compare(&meta, seen))
}

fn compare(meta: &BundleMeta, mut seen: BTreeMap<String, (Digest, u64)>) -> Verification {
    let mut v = Verification::default();
    for f in &meta.files {
        v.files_checked += 1;
        match seen.remove(&f.path) {
            None => v.problems.push(format!("{}: missing", f.path)),
            Some((_, n)) if n != f.size => v.problems.push(format!(
                "{}: size is {n} bytes, bundle.json says {}",
                f.path, f.size
            )),
            Some((d, _)) if d.hex() != f.sha256 => v.problems.push(format!(
                "{}: sha256 is {}, bundle.json says {}",
                f.path,
                d.hex(),
                f.sha256
            )),
            Some(_) => {}
        }
    }
    for b in &meta.blobs {
        v.blobs_checked += 1;
        let rel = format!("images/blobs/sha256/{}", b.digest.hex());
        match seen.remove(&rel) {
            None => v.problems.push(format!("blob {}: missing", b.digest)),
            Some((d, _)) if d != b.digest => v.problems.push(format!(
                "blob {}: corrupt, its content hashes to {d}",
                b.digest
            )),
            Some((_, n)) if n != b.size => v.problems.push(format!(
                "blob {}: size is {n} bytes, bundle.json says {}",
                b.digest, b.size
            )),
            Some(_) => {}
        }
    }
    for extra in seen.keys() {
        v.problems
            .push(format!("{extra}: not listed in bundle.json"));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_compression_by_magic() {
        let dir = tempfile::tempdir().unwrap();
        for (bytes, want) in [
            (&[0x28u8, 0xb5, 0x2f, 0xfd][..], Compression::Zstd),
            (&[0x1f, 0x8b, 8, 0][..], Compression::Gzip),
            (&b"app-"[..], Compression::None),
        ] {
            let p = dir.path().join("f");
            std::fs::write(&p, bytes).unwrap();
            assert_eq!(detect(&mut File::open(&p).unwrap()).unwrap(), want);
        }
    }
}
