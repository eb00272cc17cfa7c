//! Runtime files stored zstd-compressed in a bundle (`runtime/bin/kubelet.zst`)
//! and unpacked at install, each checked against the sha256 that
//! `runtime.json` gives for the file it unpacks to.
//!
//! bundle.json lists the compressed files (their own sha256 and size), so a
//! bundle verifies as it always did; unpacking checks what comes out, so the
//! files root runs are the ones the runtime was built with.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::digest::{Digest, HashingWriter};

/// The suffix of a compressed runtime file in a bundle.
pub const SUFFIX: &str = ".zst";

/// The compression level: most of the gain of the slow levels at a few
/// seconds a runtime (the build keeps the result in its cache).
pub const LEVEL: i32 = 6;

/// Largest size a runtime file may unpack to (the biggest Kubernetes binary
/// is a few hundred MB): a bound on a hostile bundle's decompression.
pub const MAX_UNPACKED: u64 = 4 << 30;

/// Compresses `from` into `to` (temp file, fsync, rename); returns the digest
/// of what was read.
pub fn pack(from: &Path, to: &Path) -> io::Result<Digest> {
    let dir = to.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".packing-")
        .tempfile_in(dir)?;
    let mut input = HashingReader::new(BufReader::with_capacity(1 << 20, File::open(from)?));
    let mut encoder = zstd::stream::write::Encoder::new(tmp.as_file_mut(), LEVEL)?;
    encoder.include_checksum(true)?;
    io::copy(&mut input, &mut encoder)?;
    encoder.finish()?;
    tmp.as_file().sync_all()?;
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o644))?;
    tmp.persist(to).map_err(|e| e.error)?;
    Ok(input.finish())
}

/// The digest and size of what `packed` unpacks to, reading at most
/// [`MAX_UNPACKED`] bytes of it.
pub fn unpacked_digest(packed: &Path) -> io::Result<(Digest, u64)> {
    let mut w = HashingWriter::new(io::sink());
    copy_bounded(packed, &mut w)?;
    let (d, n, _) = w.finish();
    Ok((d, n))
}

/// Unpacks `packed` into `dest` with `mode`, only if what comes out has
/// sha256 `want` (hex): written to a temp file beside `dest`, fsynced, then
/// renamed, so `dest` is either the right file or untouched.
pub fn unpack(packed: &Path, dest: &Path, want: &str, mode: u32) -> io::Result<()> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".unpacking-")
        .tempfile_in(dir)?;
    let mut w = HashingWriter::new(io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut()));
    copy_bounded(packed, &mut w)?;
    let (got, _, mut inner) = w.finish();
    inner.flush()?;
    drop(inner);
    if got.hex() != want {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} unpacks to content with sha256 {}, runtime.json says {want}",
                packed.display(),
                got.hex()
            ),
        ));
    }
    tmp.as_file().sync_all()?;
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(mode))?;
    tmp.persist(dest).map_err(|e| e.error)?;
    Ok(())
}

/// The path a packed file unpacks to: `bin/kubelet.zst` -> `bin/kubelet`.
pub fn unpacked_path(packed: &Path) -> Option<PathBuf> {
    let name = packed.file_name()?.to_str()?;
    let stem = name.strip_suffix(SUFFIX).filter(|s| !s.is_empty())?;
    Some(packed.with_file_name(stem))
}

fn copy_bounded(packed: &Path, w: &mut impl Write) -> io::Result<u64> {
    let file = BufReader::with_capacity(1 << 20, File::open(packed)?);
    let decoder = zstd::stream::read::Decoder::with_buffer(file)?;
    let mut limited = decoder.take(MAX_UNPACKED + 1);
    let n = io::copy(&mut limited, w)?;
    if n > MAX_UNPACKED {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} unpacks to more than {} GiB: refused",
                packed.display(),
                MAX_UNPACKED >> 30
            ),
        ));
    }
    Ok(n)
}

/// A reader that hashes what passes through it.
struct HashingReader<R> {
    inner: R,
    hash: HashingWriter<io::Sink>,
}

impl<R: Read> HashingReader<R> {
    fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hash: HashingWriter::new(io::sink()),
        }
    }
    fn finish(self) -> Digest {
        self.hash.finish().0
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.write_all(&buf[..n])?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_and_unpacks_only_the_content_runtime_json_names() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("kubelet");
        let content = b"kubelet binary ".repeat(10_000);
        fs::write(&plain, &content).unwrap();
        let packed = dir.path().join("bin/kubelet.zst");
        let d = pack(&plain, &packed).unwrap();
        assert_eq!(d, Digest::of_bytes(&content));
        assert!(fs::metadata(&packed).unwrap().len() < content.len() as u64 / 10);
        assert_eq!(
            unpacked_digest(&packed).unwrap(),
            (d.clone(), content.len() as u64)
        );
        assert_eq!(
            unpacked_path(&packed).unwrap(),
            dir.path().join("bin/kubelet")
        );
        assert_eq!(unpacked_path(Path::new(".zst")), None);

        let out = dir.path().join("state/bin/kubelet");
        unpack(&packed, &out, d.hex(), 0o755).unwrap();
        assert_eq!(fs::read(&out).unwrap(), content);
        assert_eq!(
            fs::metadata(&out).unwrap().permissions().mode() & 0o777,
            0o755
        );

        // Another sha256: refused, and what was there stays.
        let other = Digest::of_bytes(b"other");
        let e = unpack(&packed, &out, other.hex(), 0o755).unwrap_err();
        assert!(e.to_string().contains("runtime.json says"), "{e}");
        assert_eq!(fs::read(&out).unwrap(), content);
        let left: Vec<_> = fs::read_dir(out.parent().unwrap()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temp file left");

        // Damaged compressed data is an error, not a panic.
        fs::write(&packed, b"\x28\xb5\x2f\xfdgarbage").unwrap();
        assert!(unpack(&packed, &out, d.hex(), 0o755).is_err());
    }
}
