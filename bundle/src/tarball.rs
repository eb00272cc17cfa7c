//! A bundle as one tarball: its outer compression, told by magic bytes, and
//! its files read in one pass without extracting them.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek};
use std::path::Path;

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

/// Calls `visit(path relative to the bundle's top directory, entry, size)`
/// for each regular file of the tarball at `path`; returns its compression.
pub fn walk(
    path: &Path,
    mut visit: impl FnMut(&str, &mut dyn Read, u64) -> io::Result<()>,
) -> Result<Compression, Error> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let compression = Compression::detect(&mut file).map_err(|e| Error::io(path, e))?;
    let reader: Box<dyn Read> = match compression {
        Compression::None => Box::new(file),
        Compression::Zstd => Box::new(zstd::Decoder::new(file).map_err(|e| not_a_bundle(path, e))?),
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(BufReader::new(file))),
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(|e| not_a_bundle(path, e))? {
        let mut entry = entry.map_err(|e| not_a_bundle(path, e))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()
            .map_err(|e| not_a_bundle(path, e))?
            .to_string_lossy()
            .into_owned();
        let rel = name
            .split_once('/')
            .map(|(_, r)| r.to_string())
            .unwrap_or_default();
        let size = entry.size();
        visit(&rel, &mut entry, size).map_err(|e| not_a_bundle(path, e))?;
    }
    Ok(compression)
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
        let c = walk(&p, |rel, r, size| {
            let mut s = String::new();
            r.read_to_string(&mut s)?;
            seen.push((rel.to_string(), s, size));
            Ok(())
        })
        .unwrap();
        assert_eq!(c, Compression::Gzip);
        assert_eq!(seen, [("app.yaml".to_string(), "a\n".to_string(), 2)]);

        std::fs::write(&p, b"\x1f\x8bnot gzip").unwrap();
        let err = walk(&p, |_, _, _| Ok(())).unwrap_err();
        assert!(matches!(err, Error::NotABundle { .. }), "{err:?}");
    }
}
