//! A deterministic tar writer: the caller adds entries in sorted order, every
//! header carries the same mtime, uid/gid 0 and no user or group names.
//!
//! Headers come from the `tar` crate; file data is copied with `std::io::copy`
//! straight from file to file when the output is uncompressed, which lets Linux
//! use `copy_file_range` instead of moving every byte through user space.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use tar::{EntryType, Header};

/// How the outer tarball is compressed: zstd level 3 or gzip level 6 (with a
/// fixed header so output stays byte-identical) when not plain.
pub use tele_bundle::tarball::Compression;

enum Sink {
    Plain(File),
    Zstd(zstd::Encoder<'static, File>),
    Gzip(flate2::write::GzEncoder<File>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Plain(f) => f.write(buf),
            Sink::Zstd(z) => z.write(buf),
            Sink::Gzip(g) => g.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Plain(f) => f.flush(),
            Sink::Zstd(z) => z.flush(),
            Sink::Gzip(g) => g.flush(),
        }
    }
}

/// Writes a tar stream with fixed metadata.
pub struct TarWriter {
    sink: Sink,
    mtime: u64,
}

impl TarWriter {
    /// Starts a tarball in `file`, compressed as asked.
    pub fn new(file: File, compression: Compression, mtime: u64) -> io::Result<TarWriter> {
        let sink = match compression {
            Compression::None => Sink::Plain(file),
            Compression::Zstd => Sink::Zstd(zstd::Encoder::new(file, 3)?),
            Compression::Gzip => Sink::Gzip(
                flate2::GzBuilder::new()
                    .mtime(0)
                    .operating_system(255)
                    .write(file, flate2::Compression::new(6)),
            ),
        };
        Ok(TarWriter { sink, mtime })
    }

    /// Adds a directory entry (mode 0755).
    pub fn add_dir(&mut self, path: &str) -> io::Result<()> {
        let path = format!("{}/", path.trim_end_matches('/'));
        let mut h = self.header(EntryType::Directory, 0o755, 0);
        self.write_header(&mut h, &path)
    }

    /// Adds a file whose content is in memory.
    pub fn add_bytes(&mut self, path: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        let mut h = self.header(EntryType::Regular, mode, data.len() as u64);
        self.write_header(&mut h, path)?;
        self.sink.write_all(data)?;
        self.pad(data.len() as u64)
    }

    /// Adds a file copied from `src`, which must still be `size` bytes long;
    /// `progress` is told how many bytes were copied.
    pub fn add_file(
        &mut self,
        path: &str,
        mode: u32,
        src: &Path,
        size: u64,
        progress: &mut dyn FnMut(u64),
    ) -> io::Result<()> {
        let mut h = self.header(EntryType::Regular, mode, size);
        self.write_header(&mut h, path)?;
        let mut file = File::open(src)?.take(size);
        let copied = match &mut self.sink {
            // File to file: the kernel copies (copy_file_range / sendfile).
            Sink::Plain(out) => copy_in_chunks(&mut file, out, progress)?,
            other => copy_in_chunks(&mut file, other, progress)?,
        };
        if copied != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{} changed while being written: expected {size} bytes, read {copied}",
                    src.display()
                ),
            ));
        }
        self.pad(size)
    }

    /// Writes the end-of-archive marker and flushes everything to the file.
    pub fn finish(mut self) -> io::Result<File> {
        self.sink.write_all(&[0u8; 1024])?;
        let file = match self.sink {
            Sink::Plain(f) => f,
            Sink::Zstd(z) => z.finish()?,
            Sink::Gzip(g) => g.finish()?,
        };
        Ok(file)
    }

    fn header(&self, kind: EntryType, mode: u32, size: u64) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(self.mtime);
        h.set_uid(0);
        h.set_gid(0);
        h
    }

    fn write_header(&mut self, h: &mut Header, path: &str) -> io::Result<()> {
        let bytes = path.as_bytes();
        // GNU header name field is 100 bytes; longer names get a ././@LongLink entry.
        if bytes.len() > 100 {
            let mut long = self.header(EntryType::GNULongName, 0o644, bytes.len() as u64 + 1);
            long.as_gnu_mut().expect("gnu header").name[..13].copy_from_slice(b"././@LongLink");
            long.set_cksum();
            self.sink.write_all(long.as_bytes())?;
            self.sink.write_all(bytes)?;
            self.sink.write_all(&[0])?;
            self.pad(bytes.len() as u64 + 1)?;
        }
        let name = &mut h.as_gnu_mut().expect("gnu header").name;
        let n = bytes.len().min(100);
        name[..n].copy_from_slice(&bytes[..n]);
        h.set_cksum();
        self.sink.write_all(h.as_bytes())
    }

    fn pad(&mut self, len: u64) -> io::Result<()> {
        let rem = (512 - (len % 512) as usize) % 512;
        self.sink.write_all(&[0u8; 512][..rem])
    }
}

/// Copies in 8 MiB steps so progress can be reported; each step is one
/// `io::copy`, which stays in the kernel for file-to-file copies.
fn copy_in_chunks<W: Write>(
    src: &mut io::Take<File>,
    dst: &mut W,
    progress: &mut dyn FnMut(u64),
) -> io::Result<u64> {
    const STEP: u64 = 8 << 20;
    let mut total = 0;
    loop {
        let limit = src.limit();
        let mut step = src.by_ref().take(STEP.min(limit));
        let n = io::copy(&mut step, dst)?;
        if n == 0 {
            return Ok(total);
        }
        total += n;
        progress(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(file: &Path) -> Vec<(String, u64, u32, u64, Vec<u8>)> {
        let mut a = tar::Archive::new(File::open(file).unwrap());
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.mtime().unwrap(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    data,
                )
            })
            .collect()
    }

    #[test]
    fn writes_a_tar_that_the_tar_crate_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::write(&src, vec![7u8; 1000]).unwrap();
        let out = dir.path().join("out.tar");
        let mut w = TarWriter::new(File::create(&out).unwrap(), Compression::None, 42).unwrap();
        w.add_dir("app-1.0.0").unwrap();
        w.add_bytes("app-1.0.0/a.txt", 0o644, b"hello").unwrap();
        let long = format!("app-1.0.0/{}/file", "d".repeat(120));
        let mut seen = 0;
        w.add_file(&long, 0o755, &src, 1000, &mut |n| seen += n)
            .unwrap();
        w.finish().unwrap();
        assert_eq!(seen, 1000);
        let e = entries(&out);
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].0, "app-1.0.0/");
        assert_eq!(
            (e[1].0.as_str(), e[1].1, e[1].2, e[1].3),
            ("app-1.0.0/a.txt", 42, 0o644, 0)
        );
        assert_eq!(e[1].4, b"hello");
        assert_eq!(e[2].0, long);
        assert_eq!(e[2].2, 0o755);
        assert_eq!(e[2].4, vec![7u8; 1000]);
    }

    #[test]
    fn same_input_gives_identical_bytes_in_every_compression() {
        let dir = tempfile::tempdir().unwrap();
        for c in [Compression::None, Compression::Zstd, Compression::Gzip] {
            let mut outs = Vec::new();
            for i in 0..2 {
                let p = dir.path().join(format!("{c:?}{i}"));
                let mut w = TarWriter::new(File::create(&p).unwrap(), c, 0).unwrap();
                w.add_bytes("x/y", 0o644, b"same").unwrap();
                w.finish().unwrap();
                outs.push(std::fs::read(&p).unwrap());
            }
            assert_eq!(outs[0], outs[1], "{c:?}");
        }
    }
}
