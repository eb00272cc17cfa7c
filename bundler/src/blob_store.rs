//! The content-addressed blob cache shared by every build (`<cache>/blobs/sha256/<hex>`).
//!
//! A blob is written to a temporary file beside the store, its digest and size
//! are checked, and only then is it renamed to its content address. A build
//! killed at any moment therefore leaves at most a stray temporary file, never
//! a partial blob under a digest name. Blobs are fsynced before the rename
//! and are 0644, like the bundles made of them.
//!
//! A cached blob counts as present only once its content has been checked
//! against its digest: at commit, or by hashing it again when the record of
//! that check (`<cache>/checked/<hex>`: size, inode, change and modification
//! times) no longer matches the file. Any write to the file changes its
//! change time, which no tool can set back, so a blob altered in the cache,
//! even to the same size, is hashed again, found bad, removed and fetched
//! again.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::digest::{Digest, HashingWriter};

/// Temporary files older than this are left-overs of killed builds.
const STALE_TEMP_AGE: Duration = Duration::from_secs(24 * 3600);

/// A directory of blobs named by their sha256 digest.
#[derive(Clone, Debug)]
pub struct BlobStore {
    blobs: PathBuf,
    tmp: PathBuf,
    /// Records of checked blobs; None (an image layout): hash every time.
    checked: Option<PathBuf>,
}

/// What a check of a blob file is valid for: its size, inode, and change
/// and modification times.
fn stamp(meta: &fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt as _;
    format!(
        "{} {} {}.{} {}.{}\n",
        meta.len(),
        meta.ino(),
        meta.ctime(),
        meta.ctime_nsec(),
        meta.mtime(),
        meta.mtime_nsec()
    )
}

/// The digest of the file at `path`.
fn hash_file(path: &Path) -> io::Result<Digest> {
    let mut w = HashingWriter::new(io::sink());
    io::copy(&mut File::open(path)?, &mut w)?;
    Ok(w.finish().0)
}

/// Why a blob could not be added to the store.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The content did not hash to the digest it was fetched as.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The digest the blob was asked for by.
        expected: Digest,
        /// The digest of what arrived.
        actual: Digest,
    },
    /// The content had another length than its descriptor says.
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// Size from the descriptor.
        expected: u64,
        /// Size that arrived.
        actual: u64,
    },
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl BlobStore {
    /// Opens (creating if needed) the store under `cache_dir`.
    pub fn open(cache_dir: &Path) -> io::Result<BlobStore> {
        let blobs = cache_dir.join("blobs").join("sha256");
        let tmp = cache_dir.join("tmp");
        let checked = cache_dir.join("checked");
        fs::create_dir_all(&blobs)?;
        fs::create_dir_all(&tmp)?;
        fs::create_dir_all(&checked)?;
        remove_stale_temp_files(&tmp);
        Ok(BlobStore {
            blobs,
            tmp,
            checked: Some(checked),
        })
    }

    /// A store over an OCI layout's `blobs/sha256`, with temporary files kept
    /// beside the blobs (hidden) so that renames stay within one directory.
    pub fn in_layout(layout: &Path) -> io::Result<BlobStore> {
        let blobs = tele_bundle::oci_layout::blobs_dir(layout);
        fs::create_dir_all(&blobs)?;
        Ok(BlobStore {
            tmp: blobs.clone(),
            blobs,
            checked: None,
        })
    }

    /// Where the blob lives (whether or not it is present).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    /// True when the blob is present with the expected size and content
    /// (see the module's documentation); a blob whose content is not what
    /// its digest says is removed.
    pub fn has(&self, digest: &Digest, size: u64) -> bool {
        let path = self.path(digest);
        let Ok(meta) = fs::symlink_metadata(&path) else {
            return false;
        };
        if !meta.is_file() || meta.len() != size {
            return false;
        }
        let record = self.checked.as_ref().map(|c| c.join(digest.hex()));
        if let Some(r) = &record {
            if fs::read_to_string(r).is_ok_and(|s| s == stamp(&meta)) {
                return true;
            }
        }
        match hash_file(&path) {
            Ok(actual) if actual == *digest => {
                if let Some(r) = &record {
                    let _ = fs::write(r, stamp(&meta));
                }
                true
            }
            Ok(_) => {
                let _ = fs::remove_file(&path);
                if let Some(r) = &record {
                    let _ = fs::remove_file(r);
                }
                false
            }
            Err(_) => false,
        }
    }

    /// Size of the blob when present.
    pub fn size_of(&self, digest: &Digest) -> Option<u64> {
        fs::metadata(self.path(digest))
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
    }

    /// Starts writing a new blob; nothing is visible until [`BlobWriter::commit`].
    pub fn writer(&self) -> io::Result<BlobWriter> {
        let file = tempfile::Builder::new()
            .prefix(".partial-")
            .tempfile_in(&self.tmp)?;
        let (file, path) = file.into_parts();
        Ok(BlobWriter {
            out: HashingWriter::new(BufWriter::with_capacity(256 * 1024, file)),
            tmp: path,
            blobs: self.blobs.clone(),
            checked: self.checked.clone(),
        })
    }

    /// Stores a small blob held in memory and returns its digest.
    pub fn put_bytes(&self, bytes: &[u8]) -> io::Result<Digest> {
        let digest = Digest::of_bytes(bytes);
        if !self.has(&digest, bytes.len() as u64) {
            let mut w = self.writer()?;
            w.write_all(bytes)?;
            w.commit(Some((&digest, bytes.len() as u64)))
                .map_err(io::Error::other)?;
        }
        Ok(digest)
    }
}

/// A blob being written; dropped without commit, its temporary file is removed.
pub struct BlobWriter {
    out: HashingWriter<BufWriter<File>>,
    tmp: tempfile::TempPath,
    blobs: PathBuf,
    checked: Option<PathBuf>,
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.out.len()
    }

    /// Checks the content against `expected` (digest and size) when given, then
    /// renames it to its content address.
    pub fn commit(self, expected: Option<(&Digest, u64)>) -> Result<(Digest, u64), IngestError> {
        let (digest, len, buf) = self.out.finish();
        let file = buf.into_inner().map_err(|e| e.into_error())?;
        if let Some((want, want_len)) = expected {
            if *want != digest {
                return Err(IngestError::DigestMismatch {
                    expected: want.clone(),
                    actual: digest,
                });
            }
            if want_len != len {
                return Err(IngestError::SizeMismatch {
                    digest,
                    expected: want_len,
                    actual: len,
                });
            }
        }
        // On disk for good, readable by all, before it counts as cached.
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(fs::Permissions::from_mode(0o644))?;
        file.sync_all()?;
        let dest = self.blobs.join(digest.hex());
        self.tmp.persist(&dest).map_err(|e| e.error)?;
        File::open(&self.blobs)?.sync_all()?;
        if let Some(c) = &self.checked {
            let _ = fs::write(c.join(digest.hex()), stamp(&file.metadata()?));
        }
        Ok((digest, len))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

fn remove_stale_temp_files(tmp: &Path) {
    let Ok(entries) = fs::read_dir(tmp) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > STALE_TEMP_AGE);
        if old {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_blob_is_found_by_digest_and_size() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let d = store.put_bytes(b"layer").unwrap();
        assert!(store.has(&d, 5));
        assert!(!store.has(&d, 4), "a blob of the wrong size is not present");
        assert_eq!(fs::read(store.path(&d)).unwrap(), b"layer");
    }

    #[test]
    fn a_blob_changed_in_the_cache_is_found_out_even_at_the_same_size() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let d = store.put_bytes(b"layer").unwrap();
        let mode = fs::metadata(store.path(&d)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        assert!(store.has(&d, 5));
        // Same size, other bytes, its times set back as they were.
        let before = fs::metadata(store.path(&d)).unwrap();
        fs::write(store.path(&d), b"LAYER").unwrap();
        let f = File::options().write(true).open(store.path(&d)).unwrap();
        f.set_modified(before.modified().unwrap()).unwrap();
        assert!(!store.has(&d, 5), "an altered blob counts as missing");
        assert!(!store.path(&d).exists(), "and is removed");
        // Fetched again, it is there.
        store.put_bytes(b"layer").unwrap();
        assert!(store.has(&d, 5));
        // A blob put there by hand, right, is checked once and then trusted.
        let other = Digest::of_bytes(b"config");
        fs::write(store.path(&other), b"config").unwrap();
        assert!(store.has(&other, 6));
        assert!(dir.path().join("checked").join(other.hex()).is_file());
    }

    #[test]
    fn mismatched_blob_is_refused_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let want = Digest::of_bytes(b"expected");
        let mut w = store.writer().unwrap();
        w.write_all(b"tampered").unwrap();
        let err = w.commit(Some((&want, 8))).unwrap_err();
        assert!(matches!(err, IngestError::DigestMismatch { .. }));
        assert!(!store.path(&want).exists());
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn abandoned_writer_leaves_no_partial_blob() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let mut w = store.writer().unwrap();
        w.write_all(b"half a layer").unwrap();
        drop(w);
        assert_eq!(
            fs::read_dir(dir.path().join("blobs/sha256"))
                .unwrap()
                .count(),
            0
        );
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }
}
