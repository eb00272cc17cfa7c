//! Property tests of the bundle reader on generated input: a small valid
//! bundle tarball (plain, zstd, gzip) with bytes overwritten, cut short or
//! inserted at random, and random bytes. `verify` and `inspect` return a
//! result or an error, never panic. A fixed number of cases per run
//! (PROPTEST_CASES to change it), so CI time stays bounded.

use std::io::Write;

use proptest::prelude::*;
use tele_bundle::{inspect, verify};

/// A valid little bundle tarball, compressed as `how` (0 none, 1 zstd, 2 gzip).
fn bundle(how: u8) -> Vec<u8> {
    let meta = br#"{"apiVersion":"bundle.tele.dev/v1","name":"shop","version":"1.0.0","teleVersion":"0.1.0","installer":{"linkage":"static"},"images":[],"blobs":[],"files":[{"path":"app.yaml","size":5,"sha256":"0000000000000000000000000000000000000000000000000000000000000000"}]}"#;
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("shop-1.0.0/app.yaml", &b"kind\n"[..]),
        ("shop-1.0.0/bundle.json", &meta[..]),
        ("shop-1.0.0/images/blobs/sha256/ab", &b"blob"[..]),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data).unwrap();
    }
    let plain = b.into_inner().unwrap();
    match how {
        1 => zstd::encode_all(&plain[..], 3).unwrap(),
        2 => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&plain).unwrap();
            e.finish().unwrap()
        }
        _ => plain,
    }
}

fn check(bytes: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.tar");
    std::fs::write(&path, bytes).unwrap();
    let _ = verify::verify(&path);
    let _ = inspect::inspect(&path);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256),
        // Nothing written into the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn damaged_bundles_never_panic(
        how in 0u8..3,
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let mut bytes = bundle(how);
        for (at, byte, op) in edits {
            if bytes.is_empty() {
                break;
            }
            let at = at % bytes.len();
            match op {
                0 => bytes[at] = byte,
                1 => bytes.truncate(at),
                _ => bytes.insert(at, byte),
            }
        }
        check(&bytes);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        check(&bytes);
    }
}
