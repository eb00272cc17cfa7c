//! A bundle as one tarball: its outer compression, told by magic bytes, and
//! its files read in one pass without extracting them.

use std::cell::Cell;
use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek};
use std::path::Path;
use std::rc::Rc;

use crate::error::Error;

/// How the outer tarball is compressed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// A plain tar: layers are already compressed, so this is the default.
    #[default]
    None,
    /// zstd (`tele build` writes level 3).
    Zstd,
    /// gzip (`tele build` writes level 6, with a fixed header so output stays
    /// byte-identical).
    Gzip,
}

impl Compression {
    /// The compression `head`, the first bytes of a file, starts with.
    pub fn of_magic(head: &[u8]) -> Compression {
        match head {
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
            [0x1f, 0x8b, ..] => Compression::Gzip,
            _ => Compression::None,
        }
    }

    /// The compression of `file`, which is left at its start.
    pub fn detect(file: &mut File) -> io::Result<Compression> {
        let mut magic = [0u8; 4];
        let mut n = 0;
        while n < magic.len() {
            match file.read(&mut magic[n..])? {
                0 => break,
                k => n += k,
            }
        }
        file.rewind()?;
        Ok(Compression::of_magic(&magic[..n]))
    }
}

pub(crate) fn not_a_bundle(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::NotABundle {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Decompressed bytes always allowed, whatever the ratio.
const FREE_BYTES: u64 = 256 << 20;
/// The most a compressed bundle may grow past [`FREE_BYTES`]: its layers
/// are compressed already and its binaries shrink about fourfold, so a
/// larger ratio is a decompression bomb.
pub const MAX_RATIO: u64 = 50;
/// The most bytes a compressed bundle may decompress to.
pub const MAX_DECOMPRESSED_BYTES: u64 = 256 << 30;

/// Counts the bytes read through it.
struct Counting<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// A decompressor that stops, with an error, once its output outgrows its
/// input by more than [`MAX_RATIO`] or reaches [`MAX_DECOMPRESSED_BYTES`].
struct Bounded<R> {
    inner: R,
    read_in: Rc<Cell<u64>>,
    produced: u64,
}

impl<R: Read> Bounded<R> {
    fn new(inner: R, read_in: Rc<Cell<u64>>) -> Bounded<R> {
        Bounded {
            inner,
            read_in,
            produced: 0,
        }
    }
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.produced += n as u64;
        let limit = FREE_BYTES.max(self.read_in.get().saturating_mul(MAX_RATIO));
        if self.produced > limit.min(MAX_DECOMPRESSED_BYTES) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "it decompresses to more than {} ({} times its compressed size, or {} GiB): a decompression bomb, not a bundle",
                    self.produced,
                    MAX_RATIO,
                    MAX_DECOMPRESSED_BYTES >> 30
                ),
            ));
        }
        Ok(n)
    }
}

/// What a walk of a tarball found besides its files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Walked {
    /// The outer compression.
    pub compression: Compression,
    /// The name of the one top directory every entry is under.
    pub top: String,
}

/// Calls `visit(path relative to the bundle's top directory, entry, size)`
/// for each regular file of the tarball at `path`.
///
/// The tarball must be what `tele build` writes, so that what is checked
/// is exactly the tree `tar xf` makes of it: every entry under one top
/// directory, only regular files and directories (no symlinks, hard links,
/// devices or fifos), no absolute paths and no `.` or `..` components, and
/// no path twice (`tar xf` would keep the last one). Anything else is an
/// error that names the entry.
pub fn walk(
    path: &Path,
    mut visit: impl FnMut(&str, &mut dyn Read, u64) -> io::Result<()>,
) -> Result<Walked, Error> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let compression = Compression::detect(&mut file).map_err(|e| Error::io(path, e))?;
    let read_in = Rc::new(Cell::new(0u64));
    let file = Counting {
        inner: file,
        count: read_in.clone(),
    };
    let reader: Box<dyn Read> = match compression {
        Compression::None => Box::new(file),
        Compression::Zstd => Box::new(Bounded::new(
            zstd::Decoder::new(file).map_err(|e| not_a_bundle(path, e))?,
            read_in,
        )),
        Compression::Gzip => Box::new(Bounded::new(
            flate2::read::GzDecoder::new(BufReader::new(file)),
            read_in,
        )),
    };
    let mut archive = tar::Archive::new(reader);
    let mut top: Option<String> = None;
    let mut seen: HashSet<String> = HashSet::new();
    for entry in archive.entries().map_err(|e| not_a_bundle(path, e))? {
        let mut entry = entry.map_err(|e| not_a_bundle(path, e))?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).escape_debug().to_string();
        let bad = |why: &str| not_a_bundle(path, format!("entry \"{shown}\" {why}"));
        let name = std::str::from_utf8(&raw).map_err(|_| bad("is not UTF-8"))?;
        let kind = entry.header().entry_type();
        let is_dir = kind.is_dir();
        if !is_dir && !kind.is_file() {
            let what = match kind {
                tar::EntryType::Symlink => "a symbolic link",
                tar::EntryType::Link => "a hard link",
                tar::EntryType::Char | tar::EntryType::Block => "a device",
                tar::EntryType::Fifo => "a fifo",
                _ => "of a kind other than file or directory",
            };
            return Err(bad(&format!(
                "is {what}: a bundle holds only files and directories"
            )));
        }
        let trimmed = name.strip_suffix('/').unwrap_or(name);
        let mut parts = trimmed.split('/');
        let first = parts.next().unwrap_or_default();
        if name.starts_with('/') {
            return Err(bad("is an absolute path"));
        }
        if trimmed
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(bad("has an empty, `.` or `..` component"));
        }
        match &top {
            None => top = Some(first.to_string()),
            Some(t) if t != first => {
                return Err(bad(&format!("is outside the bundle's top directory {t}/")))
            }
            Some(_) => {}
        }
        let rel = parts.collect::<Vec<_>>().join("/");
        if rel.is_empty() && !is_dir {
            return Err(bad("is a file where the top directory belongs"));
        }
        if !seen.insert(trimmed.to_string()) {
            return Err(bad(
                "appears twice (tar xf would keep the last one, which was not checked first)",
            ));
        }
        if is_dir {
            continue;
        }
        let size = entry.size();
        visit(&rel, &mut entry, size).map_err(|e| not_a_bundle(path, e))?;
    }
    let top = top.ok_or_else(|| not_a_bundle(path, "the tarball is empty"))?;
    Ok(Walked { compression, top })
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
            (&b""[..], Compression::None),
        ] {
            let p = dir.path().join("f");
            std::fs::write(&p, bytes).unwrap();
            assert_eq!(
                Compression::detect(&mut File::open(&p).unwrap()).unwrap(),
                want
            );
        }
    }

    #[test]
    fn walks_files_relative_to_the_top_directory() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.tar.gz");
        let gz =
            flate2::write::GzEncoder::new(File::create(&p).unwrap(), flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        b.append_data(&mut h, "shop-1.0.0/app.yaml", &b"a\n"[..])
            .unwrap();
        b.into_inner().unwrap().finish().unwrap();

        let mut seen = vec![];
        let w = walk(&p, |rel, r, size| {
            let mut s = String::new();
            r.read_to_string(&mut s)?;
            seen.push((rel.to_string(), s, size));
            Ok(())
        })
        .unwrap();
        assert_eq!(w.compression, Compression::Gzip);
        assert_eq!(w.top, "shop-1.0.0");
        assert_eq!(seen, [("app.yaml".to_string(), "a\n".to_string(), 2)]);

        std::fs::write(&p, b"\x1f\x8bnot gzip").unwrap();
        let err = walk(&p, |_, _, _| Ok(())).unwrap_err();
        assert!(matches!(err, Error::NotABundle { .. }), "{err:?}");
    }

    /// A tar of `entries` (raw name, kind, content), names written as they
    /// are (the tar crate's own checks would refuse some of them).
    fn raw_tar(p: &Path, entries: &[(&str, tar::EntryType, &[u8])]) {
        let mut b = tar::Builder::new(File::create(p).unwrap());
        for (name, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            h.set_size(if kind.is_file() { data.len() as u64 } else { 0 });
            if matches!(kind, tar::EntryType::Symlink | tar::EntryType::Link) {
                h.set_link_name("/etc/shadow").unwrap();
            }
            h.set_cksum();
            b.append(&h, if kind.is_file() { *data } else { &b""[..] })
                .unwrap();
        }
        b.into_inner().unwrap();
    }

    #[test]
    fn only_the_tree_tar_xf_makes_plainly_is_a_bundle() {
        use tar::EntryType::{Block, Directory, Fifo, Link, Regular, Symlink};
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.tar");
        let top: (&str, tar::EntryType, &[u8]) = ("shop-1.0.0/", Directory, b"");
        let file: (&str, tar::EntryType, &[u8]) = ("shop-1.0.0/app.yaml", Regular, b"a");
        raw_tar(&p, &[top, file]);
        assert_eq!(walk(&p, |_, _, _| Ok(())).unwrap().top, "shop-1.0.0");
        for (entries, want) in [
            (
                vec![
                    top,
                    ("shop-1.0.0/images/blobs/sha256/ab", Symlink, &b""[..]),
                ],
                "is a symbolic link",
            ),
            (
                vec![top, ("shop-1.0.0/install", Link, &b""[..])],
                "is a hard link",
            ),
            (
                vec![top, ("shop-1.0.0/dev", Block, &b""[..])],
                "is a device",
            ),
            (vec![top, ("shop-1.0.0/pipe", Fifo, &b""[..])], "is a fifo"),
            (
                vec![top, ("/etc/cron.d/x", Regular, &b"x"[..])],
                "is an absolute path",
            ),
            (
                vec![top, ("shop-1.0.0/../../x", Regular, &b"x"[..])],
                "`..` component",
            ),
            (
                vec![top, ("shop-1.0.0/./app.yaml", Regular, &b"x"[..])],
                "`.` or `..`",
            ),
            (
                vec![top, file, ("other-1.0/app.yaml", Regular, &b"x"[..])],
                "outside the bundle's top directory shop-1.0.0/",
            ),
            (
                vec![top, file, ("shop-1.0.0/app.yaml", Regular, &b"evil"[..])],
                "appears twice",
            ),
            (
                vec![("evil", Regular, &b"x"[..])],
                "is a file where the top directory belongs",
            ),
            (vec![], "the tarball is empty"),
        ] {
            raw_tar(&p, &entries);
            let e = walk(&p, |_, _, _| Ok(())).unwrap_err().to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
    }

    #[test]
    fn a_decompression_bomb_stops_early() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bomb.tar.zst");
        let mut b = tar::Builder::new(zstd::Encoder::new(File::create(&p).unwrap(), 19).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_size(1 << 30);
        h.set_mode(0o644);
        b.append_data(
            &mut h,
            "shop-1.0.0/bundle.json",
            io::repeat(b' ').take(1 << 30),
        )
        .unwrap();
        b.into_inner().unwrap().finish().unwrap();
        assert!(std::fs::metadata(&p).unwrap().len() < 1 << 20);
        let mut read = 0u64;
        let e = walk(&p, |_, r, _| {
            read += io::copy(r, &mut io::sink())?;
            Ok(())
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("a decompression bomb"), "{e}");
        assert!(read <= FREE_BYTES, "{read}");
    }
}
