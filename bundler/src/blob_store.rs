//! The content-addressed blob cache shared by every build (`<cache>/blobs/sha256/<hex>`).
//!
//! A blob is written to a temporary file beside the store, its digest and size
//! are checked, and only then is it renamed to its content address. A build
//! killed at any moment therefore leaves at most a stray temporary file, never
//! a partial blob under a digest name. Lookups also compare the size, so a
//! blob truncated by something outside tele does not count as present.

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
        fs::create_dir_all(&blobs)?;
        fs::create_dir_all(&tmp)?;
        remove_stale_temp_files(&tmp);
        Ok(BlobStore { blobs, tmp })
    }

    /// A store over an OCI layout's `blobs/sha256`, with temporary files kept
    /// beside the blobs (hidden) so that renames stay within one directory.
    pub fn in_layout(layout: &Path) -> io::Result<BlobStore> {
        let blobs = tele_bundle::oci_layout::blobs_dir(layout);
        fs::create_dir_all(&blobs)?;
        Ok(BlobStore {
            tmp: blobs.clone(),
            blobs,
        })
    }

    /// Where the blob lives (whether or not it is present).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    /// True when the blob is present with the expected size.
    pub fn has(&self, digest: &Digest, size: u64) -> bool {
        fs::metadata(self.path(digest)).is_ok_and(|m| m.is_file() && m.len() == size)
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
        buf.into_inner().map_err(|e| e.into_error())?;
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
        self.tmp
            .persist(self.blobs.join(digest.hex()))
            .map_err(|e| e.error)?;
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
