//! Checking a bundle against its `bundle.json`: every file's size and sha256,
//! every blob against its digest, and nothing unlisted. What `tele verify`
//! and the installer (before it changes anything) run.
//!
//! ```no_run
//! use std::path::Path;
//! let v = tele_bundle::verify::verify(Path::new("shop-1.0.0.tar"))?;
//! for problem in &v.problems {
//!     eprintln!("{problem}");
//! }
//! # Ok::<(), tele_bundle::Error>(())
//! ```

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use crate::bundle_json::{self, BundleMeta, BUNDLE_JSON};
use crate::digest::{Digest, HashingWriter};
use crate::error::{read_bounded, Error, MAX_METADATA_BYTES};
use crate::signature::{PublicKey, MAX_KEY_OR_SIGNATURE_BYTES, SIGNATURE_FILE};
use crate::tarball::{self, not_a_bundle};

/// The outcome of checking a bundle.
#[derive(Clone, Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    /// Files checked against bundle.json.
    pub files_checked: usize,
    /// Blobs checked against their digests.
    pub blobs_checked: usize,
    /// Everything wrong, one line each, naming the file or blob (and the
    /// signature, when a key was given).
    pub problems: Vec<String>,
    /// What the bundle's signature is.
    pub signature: SignatureStatus,
}

/// A bundle's signature, as far as it was checked.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase", tag = "status")]
pub enum SignatureStatus {
    /// The bundle has no signature.
    #[default]
    Unsigned,
    /// Signed, not checked: no key was given.
    NotChecked,
    /// Signed by the key given.
    Valid {
        /// The key's fingerprint.
        key: String,
    },
    /// Unsigned, or not signed by the key given: listed in the problems.
    Invalid {
        /// Why.
        reason: String,
    },
}

/// What a bundle read gives to [`compare`]: every file's digest and size,
/// and the bytes of `bundle.json` and of the signature.
#[derive(Default)]
struct Contents {
    /// A tarball's top directory.
    top: Option<String>,
    /// What is there that a bundle never holds (links, devices).
    strays: Vec<String>,
    seen: Seen,
    meta: Option<Vec<u8>>,
    signature: Option<Vec<u8>>,
}

/// Reads at most [`MAX_KEY_OR_SIGNATURE_BYTES`] of a signature file.
fn read_signature(r: &mut dyn io::Read) -> io::Result<Vec<u8>> {
    let mut v = Vec::new();
    r.take(MAX_KEY_OR_SIGNATURE_BYTES + 1).read_to_end(&mut v)?;
    Ok(v)
}

/// What was found in a bundle: each file's digest and size by its path
/// relative to the top directory.
type Seen = BTreeMap<String, (Digest, u64)>;

fn hash(r: &mut dyn Read) -> io::Result<(Digest, u64)> {
    let mut w = HashingWriter::new(io::sink());
    io::copy(r, &mut w)?;
    let (d, n, _) = w.finish();
    Ok((d, n))
}

pub(crate) fn parse_meta(path: &Path, bytes: Option<Vec<u8>>) -> Result<BundleMeta, Error> {
    let bytes = bytes.ok_or_else(|| not_a_bundle(path, "it has no bundle.json"))?;
    serde_json::from_slice(&bytes).map_err(|e| not_a_bundle(path, format!("bundle.json: {e}")))
}

/// Checks a bundle, tarball or extracted directory (see [`verify_dir`] and
/// [`verify_tarball`]). Problems with the contents are listed in the
/// [`Verification`]; an error means the bundle could not be read at all.
pub fn verify(path: &Path) -> Result<Verification, Error> {
    verify_signed(path, None)
}

/// [`verify`], and the signature checked against `key` when one is given:
/// a bundle that is unsigned or signed by another key then has a problem.
pub fn verify_signed(path: &Path, key: Option<&PublicKey>) -> Result<Verification, Error> {
    if path.is_dir() {
        if !path.join(BUNDLE_JSON).is_file() {
            return Err(not_a_bundle(path, "the directory has no bundle.json"));
        }
        check(path, read_dir(path, true)?, key, false)
    } else {
        check(path, read_tarball(path)?, key, false)
    }
}

/// Compares what was read with its bundle.json (only the node part with
/// `node_part`) and checks the signature.
fn check(
    path: &Path,
    read: Contents,
    key: Option<&PublicKey>,
    node_part: bool,
) -> Result<Verification, Error> {
    let meta_bytes = read.meta.clone();
    let mut meta = parse_meta(path, read.meta)?;
    if node_part {
        meta.files.retain(|f| bundle_json::is_node_file(&f.path));
    }
    let mut v = compare(&meta, read.seen);
    v.problems.extend(read.strays);
    let expected_top = format!("{}-{}", meta.name, meta.version);
    if let Some(top) = read.top.filter(|t| *t != expected_top) {
        v.problems.push(format!(
            "the top directory is {top}/, bundle.json names the bundle {expected_top}"
        ));
    }
    let meta_bytes = meta_bytes.unwrap_or_default();
    v.signature = match (&read.signature, key) {
        (None, None) => SignatureStatus::Unsigned,
        (Some(_), None) => SignatureStatus::NotChecked,
        (None, Some(_)) => SignatureStatus::Invalid {
            reason: format!("the bundle is not signed (it has no {SIGNATURE_FILE})"),
        },
        (Some(sig), Some(key)) => match key.verify(&meta_bytes, sig) {
            Ok(()) => SignatureStatus::Valid {
                key: key.fingerprint(),
            },
            Err(e) => SignatureStatus::Invalid {
                reason: e.to_string(),
            },
        },
    };
    if let SignatureStatus::Invalid { reason } = &v.signature {
        v.problems.push(format!("signature: {reason}"));
    }
    Ok(v)
}

/// Checks the extracted bundle at `dir`, the directory holding `bundle.json`.
pub fn verify_dir(dir: &Path) -> Result<Verification, Error> {
    if !dir.join(BUNDLE_JSON).is_file() {
        return Err(not_a_bundle(dir, "the directory has no bundle.json"));
    }
    check(dir, read_dir(dir, true)?, None, false)
}

/// Checks the part of an extracted bundle that a node runs (see
/// [`bundle_json::is_node_file`]): what a node that joined without the
/// bundle fetched from a master. Every such file and every blob is checked
/// as [`verify_dir`] does, and nothing unlisted may be there.
pub fn verify_node_part(dir: &Path) -> Result<Verification, Error> {
    // The fetched bundle is tele's own, in the root-owned state directory,
    // and the runtime phase hard-links its files into place.
    check(dir, read_dir(dir, false)?, None, true)
}

/// Every regular file under `dir` hashed, by its `/`-separated path, and
/// the bytes of its `bundle.json` and signature. Symbolic links, devices,
/// fifos and sockets are strays (never followed), and so are files with
/// other hard links when `no_hard_links`: `tar xf` of a bundle makes none
/// of them.
fn read_dir(dir: &Path, no_hard_links: bool) -> Result<Contents, Error> {
    use std::os::unix::fs::MetadataExt as _;
    let mut read = Contents::default();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.map_err(|e| not_a_bundle(dir, e))?;
        let rel = entry.path().strip_prefix(dir).expect("under the top");
        let rel = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        let ft = entry.file_type();
        if ft.is_dir() {
            continue;
        }
        if !ft.is_file() {
            let what = if ft.is_symlink() {
                "a symbolic link"
            } else {
                "a device, fifo or socket"
            };
            read.strays.push(format!(
                "{rel}: {what}; a bundle holds only files and directories"
            ));
            continue;
        }
        if no_hard_links {
            let meta = entry.metadata().map_err(|e| not_a_bundle(dir, e))?;
            if meta.nlink() > 1 {
                read.strays.push(format!(
                    "{rel}: has {} hard links; a bundle's files have none (tar xf makes none)",
                    meta.nlink()
                ));
                continue;
            }
        }
        let p = entry.path();
        if rel == BUNDLE_JSON {
            let f = File::open(p).map_err(|e| Error::io(p, e))?;
            read.meta = Some(read_bounded(f, MAX_METADATA_BYTES).map_err(|e| Error::io(p, e))?);
            continue;
        }
        let mut f = File::open(p).map_err(|e| Error::io(p, e))?;
        if rel == SIGNATURE_FILE {
            read.signature = Some(read_signature(&mut f).map_err(|e| Error::io(p, e))?);
            continue;
        }
        read.seen
            .insert(rel, hash(&mut f).map_err(|e| Error::io(p, e))?);
    }
    Ok(read)
}

/// Checks the bundle tarball at `path` (plain, zstd or gzip) in one pass,
/// without extracting it.
pub fn verify_tarball(path: &Path) -> Result<Verification, Error> {
    check(path, read_tarball(path)?, None, false)
}

fn read_tarball(path: &Path) -> Result<Contents, Error> {
    let mut read = Contents::default();
    let walked = tarball::walk(path, |rel, r, _| {
        if rel == BUNDLE_JSON {
            read.meta = Some(read_bounded(r, MAX_METADATA_BYTES)?);
        } else if rel == SIGNATURE_FILE {
            read.signature = Some(read_signature(r)?);
        } else {
            read.seen.insert(rel.to_string(), hash(r)?);
        }
        Ok(())
    })?;
    read.top = Some(walked.top);
    Ok(read)
}

fn compare(meta: &BundleMeta, mut seen: Seen) -> Verification {
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
        match seen.remove(&bundle_json::blob_entry(&b.digest)) {
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
    use crate::bundle_json::{BlobInfo, FileInfo, InstallerInfo, API_VERSION};
    use std::fs;

    /// An extracted bundle with one file and one blob, and its bundle.json.
    fn bundle(dir: &Path) {
        let blob = b"layer bytes";
        let d = Digest::of_bytes(blob);
        fs::create_dir_all(dir.join("images/blobs/sha256")).unwrap();
        fs::write(dir.join(bundle_json::blob_entry(&d)), blob).unwrap();
        fs::write(dir.join("app.yaml"), "kind: App\n").unwrap();
        let meta = BundleMeta {
            api_version: API_VERSION.into(),
            name: "shop".into(),
            version: "1.0.0".into(),
            description: None,
            tele_version: "0.1.0".into(),
            installer: InstallerInfo {
                linkage: "static".into(),
            },
            images: vec![],
            blobs: vec![BlobInfo {
                digest: d,
                size: blob.len() as u64,
            }],
            files: vec![FileInfo {
                path: "app.yaml".into(),
                size: 10,
                sha256: Digest::of_bytes(b"kind: App\n").hex().into(),
            }],
            runtime: None,
            monitoring: None,
        };
        fs::write(dir.join(BUNDLE_JSON), meta.to_json()).unwrap();
    }

    fn tar_of(dir: &Path, out: &Path) {
        let mut b = tar::Builder::new(File::create(out).unwrap());
        b.append_dir_all("shop-1.0.0", dir).unwrap();
        b.into_inner().unwrap();
    }

    #[test]
    fn an_intact_bundle_passes_as_directory_and_tarball() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("shop-1.0.0");
        bundle(&dir);
        let v = verify(&dir).unwrap();
        assert_eq!((v.files_checked, v.blobs_checked), (1, 1));
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        tar_of(&dir, &t.path().join("b.tar"));
        let v = verify(&t.path().join("b.tar")).unwrap();
        assert!(v.problems.is_empty(), "{:?}", v.problems);
    }

    #[test]
    fn a_signature_is_checked_against_the_key_given() {
        use crate::signature::SigningKey;
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("shop-1.0.0");
        bundle(&dir);
        let vendor = SigningKey::generate();
        let key = vendor.public_key();
        // Unsigned: fine without a key, a problem with one.
        let v = verify_signed(&dir, None).unwrap();
        assert_eq!(v.signature, SignatureStatus::Unsigned);
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        let v = verify_signed(&dir, Some(&key)).unwrap();
        assert_eq!(
            v.problems,
            ["signature: the bundle is not signed (it has no bundle.sigstore.json)"]
        );
        // Signed: the signature file is no unlisted file, and the key matches.
        let meta = fs::read(dir.join(BUNDLE_JSON)).unwrap();
        fs::write(dir.join(SIGNATURE_FILE), vendor.sign(&meta)).unwrap();
        let v = verify_signed(&dir, None).unwrap();
        assert_eq!(v.signature, SignatureStatus::NotChecked);
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        for path in [dir.clone(), t.path().join("b.tar")] {
            tar_of(&dir, &t.path().join("b.tar"));
            let v = verify_signed(&path, Some(&key)).unwrap();
            assert!(v.problems.is_empty(), "{:?}", v.problems);
            assert_eq!(
                v.signature,
                SignatureStatus::Valid {
                    key: key.fingerprint()
                }
            );
        }
        // Another vendor's key; a bundle.json changed after signing (its
        // files changed with it, so that only the signature tells).
        let other = SigningKey::generate().public_key();
        let v = verify_signed(&dir, Some(&other)).unwrap();
        assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
        assert!(
            v.problems[0].contains("does not match the key"),
            "{:?}",
            v.problems
        );
        let mut m = BundleMeta::read(&dir).unwrap();
        m.name = "evil".into();
        fs::write(dir.join(BUNDLE_JSON), m.to_json()).unwrap();
        let v = verify_signed(&dir, Some(&key)).unwrap();
        assert_eq!(
            v.problems,
            ["signature: bundle.json is not what was signed: its sha256 differs from the signed digest"]
        );
    }

    #[test]
    fn links_in_an_extracted_bundle_are_named_and_never_followed() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("shop-1.0.0");
        bundle(&dir);
        let shadow = t.path().join("shadow");
        fs::write(&shadow, "root:secret").unwrap();
        let blobs = dir.join("images/blobs/sha256");
        std::os::unix::fs::symlink(&shadow, blobs.join("aa")).unwrap();
        fs::hard_link(&shadow, dir.join("notes")).unwrap();
        let v = verify(&dir).unwrap();
        assert_eq!(
            v.problems,
            [
                "images/blobs/sha256/aa: a symbolic link; a bundle holds only files and directories",
                "notes: has 2 hard links; a bundle's files have none (tar xf makes none)",
            ]
        );
    }

    #[test]
    fn a_tarball_whose_top_directory_is_not_the_bundles_is_a_problem() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("shop-1.0.0");
        bundle(&dir);
        let mut b = tar::Builder::new(File::create(t.path().join("b.tar")).unwrap());
        b.append_dir_all("shop-2.0.0", &dir).unwrap();
        b.into_inner().unwrap();
        let v = verify(&t.path().join("b.tar")).unwrap();
        assert_eq!(
            v.problems,
            ["the top directory is shop-2.0.0/, bundle.json names the bundle shop-1.0.0"]
        );
    }

    #[test]
    fn the_node_part_is_what_a_node_runs_and_is_checked_as_strictly() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("shop-1.0.0");
        bundle(&dir);
        // A node that joined without the bundle has no `install`.
        let mut meta = BundleMeta::read(&dir).unwrap();
        meta.files.push(FileInfo {
            path: "install".into(),
            size: 3,
            sha256: Digest::of_bytes(b"elf").hex().into(),
        });
        fs::write(dir.join(BUNDLE_JSON), meta.to_json()).unwrap();
        assert_eq!(verify(&dir).unwrap().problems, ["install: missing"]);
        let v = verify_node_part(&dir).unwrap();
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        assert_eq!((v.files_checked, v.blobs_checked), (1, 1));
        // Nothing else may be there, and every byte of it counts.
        fs::create_dir_all(dir.join("runtime")).unwrap();
        fs::write(dir.join("runtime/etcd"), "x").unwrap();
        fs::write(dir.join("app.yaml"), "kind: Tampered\n").unwrap();
        let v = verify_node_part(&dir).unwrap();
        assert_eq!(v.problems.len(), 2, "{:?}", v.problems);
        assert!(v.problems[0].starts_with("app.yaml: "), "{:?}", v.problems);
        assert_eq!(v.problems[1], "runtime/etcd: not listed in bundle.json");
    }

    #[test]
    fn each_damaged_missing_or_extra_file_is_named() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("shop-1.0.0");
        bundle(&dir);
        fs::write(dir.join("app.yaml"), "kind: Tampered\n").unwrap();
        fs::write(dir.join("extra"), "x").unwrap();
        let blobs = dir.join("images/blobs/sha256");
        let blob = fs::read_dir(&blobs)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        fs::write(&blob, b"layer bytez").unwrap();
        for v in [verify(&dir).unwrap(), {
            tar_of(&dir, &t.path().join("b.tar"));
            verify(&t.path().join("b.tar")).unwrap()
        }] {
            let all = v.problems.join("\n");
            assert_eq!(v.problems.len(), 3, "{all}");
            assert!(all.contains("app.yaml: size is 15 bytes"), "{all}");
            assert!(all.contains("corrupt, its content hashes to"), "{all}");
            assert!(all.contains("extra: not listed in bundle.json"), "{all}");
        }
        fs::remove_file(&blob).unwrap();
        let v = verify(&dir).unwrap();
        assert!(
            v.problems.iter().any(|p| p.ends_with(": missing")),
            "{:?}",
            v.problems
        );
    }

    #[test]
    fn something_that_is_no_bundle_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        let err = verify(t.path()).unwrap_err();
        assert!(err.to_string().contains("no bundle.json"), "{err}");
        assert!(err.hint().is_some());
        let empty = t.path().join("empty.tar");
        tar::Builder::new(File::create(&empty).unwrap())
            .into_inner()
            .unwrap();
        let err = verify(&empty).unwrap_err();
        assert!(
            err.to_string().contains("not a readable tele bundle"),
            "{err}"
        );
        assert!(matches!(
            verify(&t.path().join("nothing.tar")).unwrap_err(),
            Error::Io { .. }
        ));
    }
}
