//! Content digests (`sha256:<64 hex>`) and a writer that hashes what passes through it.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// A sha256 content digest, the only algorithm bundles use.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest {
    hex: String,
}

/// A string that is not a `sha256:<64 lowercase hex>` digest.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a sha256 digest (expected sha256:<64 lowercase hex digits>)")]
pub struct BadDigest(pub String);

impl Digest {
    /// The 64 hex digits, which are also the blob's file name in a layout.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// Digest of a byte slice.
    pub fn of_bytes(bytes: &[u8]) -> Digest {
        Digest {
            hex: hex::encode(Sha256::digest(bytes)),
        }
    }

    /// Digest and length of everything `reader` yields.
    pub fn of_reader(mut reader: impl Read) -> io::Result<(Digest, u64)> {
        let mut w = HashingWriter::new(io::sink());
        io::copy(&mut reader, &mut w)?;
        let (d, n, _) = w.finish();
        Ok((d, n))
    }

    /// Parses the hex file name of a blob (`blobs/sha256/<hex>`).
    pub fn from_hex(hex: &str) -> Result<Digest, BadDigest> {
        format!("sha256:{hex}").parse()
    }
}

impl FromStr for Digest {
    type Err = BadDigest;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s
            .strip_prefix("sha256:")
            .ok_or_else(|| BadDigest(s.into()))?;
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(BadDigest(s.into()));
        }
        Ok(Digest { hex: hex.into() })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Passes writes through to `inner` while hashing and counting them.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest and length of everything written, and the inner writer.
    pub fn finish(self) -> (Digest, u64, W) {
        let hex = hex::encode(self.hasher.finalize());
        (Digest { hex }, self.len, self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_round_trip() {
        let d = Digest::of_bytes(b"");
        assert_eq!(
            d.to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
    }

    #[test]
    fn rejects_malformed_digests() {
        for bad in [
            "sha256:abc",
            "md5:00",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad}");
        }
    }

    #[test]
    fn rejects_bad_input_everywhere_a_digest_is_read() {
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        for bad in [
            String::new(),
            "sha256:".into(),
            hex.into(),
            format!("sha512:{hex}"),
            format!("SHA256:{hex}"),
            format!("sha256:{}", &hex[1..]),
            format!("sha256:{hex}0"),
            format!("sha256:{}g", &hex[1..]),
            format!(" sha256:{hex}"),
            format!("sha256:{hex}\n"),
            format!("sha256:../{}", &hex[3..]),
        ] {
            let err = bad.parse::<Digest>().unwrap_err();
            assert_eq!(err.0, bad);
            assert!(err.to_string().contains("is not a sha256 digest"), "{err}");
            let json = serde_json::to_string(&bad).unwrap();
            assert!(serde_json::from_str::<Digest>(&json).is_err(), "{bad:?}");
        }
        assert!(Digest::from_hex(&hex[1..]).is_err());
        assert!(Digest::from_hex("../../index.json").is_err());
        assert_eq!(Digest::from_hex(hex).unwrap(), Digest::of_bytes(b""));
        let json = serde_json::to_string(&Digest::of_bytes(b"")).unwrap();
        assert_eq!(json, format!("\"sha256:{hex}\""));
        assert_eq!(
            serde_json::from_str::<Digest>(&json).unwrap(),
            Digest::of_bytes(b"")
        );
    }

    #[test]
    fn hashing_writer_matches_one_shot_digest() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"hello ").unwrap();
        w.write_all(b"world").unwrap();
        let (d, n, inner) = w.finish();
        assert_eq!(n, 11);
        assert_eq!(inner, b"hello world");
        assert_eq!(d, Digest::of_bytes(b"hello world"));
    }
}
