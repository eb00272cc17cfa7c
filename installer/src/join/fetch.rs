//! Joining with the tele binary alone: the node fetches the part of the
//! bundle it runs (`app.yaml`, `runtime/`, `images/` and its blobs, see
//! [`tele_bundle::bundle_json::is_node_file`]) from a master's join service,
//! over TLS checked against the pinned cluster CA and with a short-lived
//! client certificate the master issued for the token ([`super::client::bundle_credentials`]).
//!
//! `bundle.json` comes first; every other file is written to a temporary
//! file while it is hashed, and kept only when its size and sha256 are the
//! ones `bundle.json` names. `bundle.json` itself is written last, so a
//! directory holding it is a whole fetch. A fetch that stopped is resumed:
//! files already there with the right digest are kept.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Component, Path};
use std::time::Duration;

use tele_bundle::bundle_json::{self, BundleMeta, BUNDLE_JSON};
use tele_bundle::digest::{Digest, HashingWriter};

use super::server::{MAX_BUNDLE_JSON, MODE_HEADER};
use super::BundleCredentials;

/// A read that waits longer than this for the next bytes gives up.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// What a fetch did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fetched {
    /// Files the node runs (blobs included).
    pub files: usize,
    /// Of them, the ones already there from an earlier, stopped fetch.
    pub kept: usize,
    /// Bytes downloaded.
    pub bytes: u64,
}

/// Why a fetch did not work.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The master could not be asked, or did not answer as one.
    #[error("fetching `{path}` from {addr}: {reason}")]
    Transfer {
        /// `ADDR:PORT`.
        addr: String,
        /// The bundle file.
        path: String,
        /// What happened.
        reason: String,
    },
    /// What came is not what `bundle.json` names: nothing of it was kept.
    #[error("`{path}` from {addr} is not the bundle's: {reason}; it was not kept")]
    Mismatch {
        /// `ADDR:PORT`.
        addr: String,
        /// The bundle file.
        path: String,
        /// Which of size and digest differ.
        reason: String,
    },
    /// `bundle.json` names a path outside the bundle.
    #[error("the bundle.json from {addr} names `{path}`, which is not a path inside a bundle")]
    BadPath {
        /// `ADDR:PORT`.
        addr: String,
        /// The path.
        path: String,
    },
    /// Writing here failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

impl FetchError {
    /// What to do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            FetchError::Transfer { .. } => "check that the master is up and reachable, then run the join again: what was fetched is kept",
            FetchError::Mismatch { .. } | FetchError::BadPath { .. } => "the master's copy of the bundle is damaged: join through another master, or from the extracted bundle (`./install join ...`)",
            FetchError::Io { .. } => "check the state directory's disk (space, permissions), then run the join again",
        }
    }
}

/// One file to fetch: its path in the bundle, size and sha256.
struct Wanted {
    path: String,
    size: u64,
    sha256: String,
}

/// The files of `meta` a node runs: the node files it lists and every blob.
fn wanted(meta: &BundleMeta) -> Vec<Wanted> {
    let files = meta
        .files
        .iter()
        .filter(|f| bundle_json::is_node_file(&f.path))
        .map(|f| Wanted {
            path: f.path.clone(),
            size: f.size,
            sha256: f.sha256.clone(),
        });
    let blobs = meta.blobs.iter().map(|b| Wanted {
        path: bundle_json::blob_entry(&b.digest),
        size: b.size,
        sha256: b.digest.hex().to_string(),
    });
    files.chain(blobs).collect()
}

/// A relative path of plain components only.
fn is_inside(path: &str) -> bool {
    !path.is_empty()
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

/// A client for the master at `addr`: its CA only, and the credentials.
fn client(
    addr: &str,
    ca_pem: &str,
    creds: &BundleCredentials,
) -> Result<reqwest::blocking::Client, FetchError> {
    let fail = |e: reqwest::Error| FetchError::Transfer {
        addr: addr.into(),
        path: BUNDLE_JSON.into(),
        reason: e.to_string(),
    };
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).map_err(fail)?;
    let identity = reqwest::Identity::from_pem(format!("{}\n{}", creds.cert, creds.key).as_bytes())
        .map_err(fail)?;
    reqwest::blocking::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(READ_TIMEOUT)
        .tls_certs_only([ca])
        .identity(identity)
        .build()
        .map_err(fail)
}

fn get(
    http: &reqwest::blocking::Client,
    addr: &str,
    path: &str,
) -> Result<reqwest::blocking::Response, FetchError> {
    let fail = |reason: String| FetchError::Transfer {
        addr: addr.into(),
        path: path.into(),
        reason,
    };
    let resp = http
        .get(format!("https://{addr}/v1/bundle/{path}"))
        .send()
        .map_err(|e| fail(e.to_string()))?;
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status();
    let mut text = String::new();
    let _ = resp.take(4096).read_to_string(&mut text);
    let why = serde_json::from_str::<super::Refusal>(&text)
        .map(|r| r.error)
        .unwrap_or_else(|_| text.chars().filter(|c| !c.is_control()).take(300).collect());
    Err(fail(format!("HTTP {status}: {why}")))
}

/// The sha256 and size of the file at `path`, if it is one.
fn digest_of(path: &Path) -> Option<(Digest, u64)> {
    Digest::of_reader(std::fs::File::open(path).ok()?).ok()
}

/// Fetches the part of the bundle a node runs from the master at `addr`
/// into `dest`, checking every byte against the master's `bundle.json`;
/// returns that `bundle.json` and what was done. `progress` is told, now
/// and then, how far it got.
pub fn fetch(
    addr: &str,
    ca_pem: &str,
    creds: &BundleCredentials,
    dest: &Path,
    progress: &dyn Fn(&str),
) -> Result<(BundleMeta, Fetched), FetchError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| FetchError::Io { path, source }
    };
    let http = client(addr, ca_pem, creds)?;
    let mut meta_bytes = Vec::new();
    get(&http, addr, BUNDLE_JSON)?
        .take(MAX_BUNDLE_JSON + 1)
        .read_to_end(&mut meta_bytes)
        .map_err(|e| FetchError::Transfer {
            addr: addr.into(),
            path: BUNDLE_JSON.into(),
            reason: e.to_string(),
        })?;
    let bad_meta = |reason: String| FetchError::Mismatch {
        addr: addr.into(),
        path: BUNDLE_JSON.into(),
        reason,
    };
    if meta_bytes.len() as u64 > MAX_BUNDLE_JSON {
        return Err(bad_meta(format!(
            "it is larger than {MAX_BUNDLE_JSON} bytes"
        )));
    }
    let meta: BundleMeta =
        serde_json::from_slice(&meta_bytes).map_err(|e| bad_meta(e.to_string()))?;
    let wanted = wanted(&meta);
    if let Some(w) = wanted.iter().find(|w| !is_inside(&w.path)) {
        return Err(FetchError::BadPath {
            addr: addr.into(),
            path: w.path.clone(),
        });
    }
    std::fs::create_dir_all(dest).map_err(io(dest))?;
    // What an earlier fetch of another bundle left is not this bundle's.
    let names: BTreeSet<&str> = wanted.iter().map(|w| w.path.as_str()).collect();
    for entry in walkdir::WalkDir::new(dest)
        .min_depth(1)
        .contents_first(true)
    {
        let Ok(entry) = entry else { continue };
        let rel = entry.path().strip_prefix(dest).unwrap_or(entry.path());
        let rel = rel.to_string_lossy();
        if entry.file_type().is_dir() {
            // Left only when empty.
            let _ = std::fs::remove_dir(entry.path());
        } else if !names.contains(rel.as_ref()) {
            std::fs::remove_file(entry.path()).map_err(io(entry.path()))?;
        }
    }
    let total: u64 = wanted.iter().map(|w| w.size).sum();
    progress(&format!(
        "fetching the bundle {} {} from {addr}: {} files, {} MiB",
        meta.name,
        meta.version,
        wanted.len(),
        total >> 20
    ));
    let mut done = Fetched {
        files: wanted.len(),
        ..Fetched::default()
    };
    let (mut seen, mut told) = (0u64, 0u64);
    for w in &wanted {
        let to = dest.join(&w.path);
        let there = digest_of(&to);
        if there.is_some_and(|(d, n)| n == w.size && d.hex() == w.sha256) {
            done.kept += 1;
        } else {
            fetch_file(&http, addr, w, &to)?;
            done.bytes += w.size;
        }
        seen += w.size;
        // A line at each fifth of the way.
        let step = seen * 5 / total.max(1);
        if step > told {
            told = step;
            progress(&format!(
                "  {}% ({} of {} MiB)",
                seen * 100 / total.max(1),
                seen >> 20,
                total >> 20
            ));
        }
    }
    let meta_file = dest.join(BUNDLE_JSON);
    crate::durable::write_durably(&meta_file, &meta_bytes, 0o644).map_err(io(&meta_file))?;
    Ok((meta, done))
}

/// Fetches one file into `to`, kept only when it is exactly what `w` names.
fn fetch_file(
    http: &reqwest::blocking::Client,
    addr: &str,
    w: &Wanted,
    to: &Path,
) -> Result<(), FetchError> {
    let io = |source| FetchError::Io {
        path: to.display().to_string(),
        source,
    };
    let resp = get(http, addr, &w.path)?;
    let mode = resp
        .headers()
        .get(MODE_HEADER)
        .and_then(|v| u32::from_str_radix(v.to_str().ok()?, 8).ok())
        .unwrap_or(0o644)
        & 0o755;
    let dir = to.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    let (file, tmp_path) = tmp.into_parts();
    let mut out = HashingWriter::new(std::io::BufWriter::with_capacity(1 << 20, file));
    // One byte more than expected is enough to tell it is too long.
    std::io::copy(&mut resp.take(w.size + 1), &mut out).map_err(|e| FetchError::Transfer {
        addr: addr.into(),
        path: w.path.clone(),
        reason: e.to_string(),
    })?;
    let (digest, len, buffered) = out.finish();
    let mismatch = |reason: String| FetchError::Mismatch {
        addr: addr.into(),
        path: w.path.clone(),
        reason,
    };
    if len != w.size {
        return Err(mismatch(format!(
            "{} bytes came{}, bundle.json says {}",
            len,
            if len > w.size { " (at least)" } else { "" },
            w.size
        )));
    }
    if digest.hex() != w.sha256 {
        return Err(mismatch(format!(
            "its sha256 is {}, bundle.json says {}",
            digest.hex(),
            w.sha256
        )));
    }
    let mut file = buffered.into_inner().map_err(|e| io(e.into_error()))?;
    file.flush().map_err(io)?;
    crate::durable::set_mode(tmp_path.as_ref(), mode).map_err(io)?;
    crate::durable::persist(&file, tmp_path, to).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::join::{client, JoinRequest};
    use crate::state_dir::StateDir;
    use std::fs;
    use tele_bundle::bundle_json::{BlobInfo, FileInfo, InstallerInfo};

    /// A master's state directory: its PKI, settings, a token, and its copy
    /// of the bundle's node part. Returns the token.
    fn master(state: &StateDir) -> crate::token::Token {
        crate::pki::ensure_service_cert(
            &state.pki_dir(),
            "join-server",
            &["127.0.0.1".into()],
            crate::pki::DEFAULT_LEAF_VALIDITY,
            false,
        )
        .unwrap();
        let cfg: crate::node::NodeConfig = serde_json::from_value(serde_json::json!({
            "bundleDir": "/b", "stateDir": state.root(), "nodeName": "m1", "nodeIp": "192.0.2.1",
            "podCidr": "10.244.0.0/16", "nodePodSubnet": "10.244.0.0/24",
            "serviceCidr": "10.100.0.0/16", "cgroupRoot": null,
            "ports": {"registry": 5043, "api": 6443, "etcdClient": 2379, "etcdPeer": 2380, "kubelet": 10250},
            "profile": null, "appTimeoutSecs": 60
        }))
        .unwrap();
        cfg.save(state).unwrap();
        let blob = b"a layer";
        let digest = Digest::of_bytes(blob);
        let file = |path: &str, bytes: &[u8]| FileInfo {
            path: path.into(),
            size: bytes.len() as u64,
            sha256: Digest::of_bytes(bytes).hex().into(),
        };
        fs::create_dir_all(state.runtime_dir().join("bin")).unwrap();
        fs::create_dir_all(state.images_dir().join("blobs/sha256")).unwrap();
        fs::write(state.runtime_dir().join("bin/etcd"), b"etcd!").unwrap();
        crate::durable::set_mode(&state.runtime_dir().join("bin/etcd"), 0o755).unwrap();
        fs::write(state.images_dir().join("index.json"), b"{}").unwrap();
        fs::write(
            state.images_dir().join("blobs/sha256").join(digest.hex()),
            blob,
        )
        .unwrap();
        fs::write(state.manifest_file(), b"kind: Bundle\n").unwrap();
        let meta = BundleMeta {
            api_version: bundle_json::API_VERSION.into(),
            name: "hello".into(),
            version: "1.0.0".into(),
            description: None,
            tele_version: env!("CARGO_PKG_VERSION").into(),
            installer: InstallerInfo {
                linkage: "static".into(),
            },
            images: vec![],
            blobs: vec![BlobInfo {
                digest,
                size: blob.len() as u64,
            }],
            files: vec![
                file("app.yaml", b"kind: Bundle\n"),
                file("images/index.json", b"{}"),
                // The installer and the resources stay with the bundle.
                file("install", b"ELF"),
                file("runtime/bin/etcd", b"etcd!"),
            ],
            runtime: None,
            monitoring: None,
        };
        fs::write(state.bundle_meta_file(), meta.to_json()).unwrap();
        let pin = crate::pki::ca_pin(&state.pki()).unwrap();
        crate::token::TokenStore::new(state)
            .create(None, Duration::from_secs(600), &pin)
            .unwrap()
            .0
    }

    /// The master's join service on a free port, until the sender is dropped.
    fn serve(state: &StateDir) -> (String, tokio::sync::oneshot::Sender<()>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        listener.set_nonblocking(true).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let root = state.root().to_path_buf();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let stop = async move {
                    let _ = stopped.await;
                };
                super::super::server::serve(&root, listener, stop)
                    .await
                    .unwrap();
            });
        });
        (addr, stop)
    }

    #[test]
    fn a_master_s_join_service_takes_a_node_in_line_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("master"));
        let token = master(&state);
        let (addr, _stop) = serve(&state);
        let ca = client::fetch_ca(&addr, &token.ca_pin).unwrap();
        let mut joiner = crate::join::wait::Joiner {
            request: JoinRequest {
                token: token.credential(),
                node_name: "w1".into(),
                node_ip: "192.0.2.2".parse().unwrap(),
                role: None,
            },
            token: token.clone(),
        };
        // A token the master does not know is refused, as a join would be.
        let mut stranger = joiner.request.clone();
        stranger.token = "abcdef.0123456789abcdef0123456789abcdef".into();
        let e = client::wait(
            &addr,
            &ca,
            &crate::join::WaitRequest {
                join: stranger,
                checks: None,
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("does not know this token"), "{e}");
        let ask = |joiner: &mut crate::join::wait::Joiner| {
            crate::join::wait::wait_for_cluster(
                &addr,
                &ca,
                joiner,
                &|_| Ok(None),
                &crate::reporter::Silent,
            )
            .unwrap()
        };
        let answer = ask(&mut joiner);
        assert_eq!(joiner.token, token);
        assert_eq!(answer.cluster_name, None);
        // A master on a cloud names its cluster there, for the node's provider.
        let mut cfg = crate::node::NodeConfig::load(&state).unwrap();
        cfg.cloud_settings = Some(crate::cloud::Settings {
            cluster_id: "shop".into(),
            ..Default::default()
        });
        cfg.save(&state).unwrap();
        let answer = ask(&mut joiner);
        assert_eq!(answer.cluster_name.as_deref(), Some("shop"));
    }

    #[test]
    fn a_node_fetches_what_it_runs_over_mutual_tls_and_keeps_no_changed_byte() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("master"));
        let token = master(&state);
        let (addr, _stop) = serve(&state);
        let ca = client::fetch_ca(&addr, &token.ca_pin).unwrap();
        let mut request = JoinRequest {
            token: token.credential(),
            node_name: "w1".into(),
            node_ip: "192.0.2.2".parse().unwrap(),
            role: None,
        };
        // Without a client certificate, nothing of the bundle is served.
        let anonymous = reqwest::blocking::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes()).unwrap()])
            .build()
            .unwrap();
        let r = anonymous
            .get(format!("https://{addr}/v1/bundle/bundle.json"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 403);
        // A node that would not be admitted gets no certificate.
        request.node_name = "m1".into();
        let e = client::bundle_credentials(&addr, &ca, &request).unwrap_err();
        assert!(e.to_string().contains("the master's own name"), "{e}");
        request.node_name = "w1".into();
        let creds = client::bundle_credentials(&addr, &ca, &request).unwrap();

        let dest = dir.path().join("node");
        let lines = std::cell::RefCell::new(Vec::new());
        let progress = |l: &str| lines.borrow_mut().push(l.to_string());
        let (meta, done) = fetch(&addr, &ca, &creds, &dest, &progress).unwrap();
        assert_eq!(meta.name, "hello");
        assert_eq!((done.files, done.kept), (4, 0));
        assert!(
            lines.borrow()[0].contains("4 files"),
            "{:?}",
            lines.borrow()
        );
        let v = tele_bundle::verify::verify_node_part(&dest).unwrap();
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        assert!(!dest.join("install").exists());
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &fs::metadata(dest.join("runtime/bin/etcd"))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o755);

        // Run again (a fetch that was stopped): what is there is kept.
        let (_, again) = fetch(&addr, &ca, &creds, &dest, &progress).unwrap();
        assert_eq!((again.kept, again.bytes), (4, 0));

        // A byte changed on the master's side is refused, and not kept.
        fs::write(state.runtime_dir().join("bin/etcd"), b"etcd?").unwrap();
        fs::remove_file(dest.join("runtime/bin/etcd")).unwrap();
        let e = fetch(&addr, &ca, &creds, &dest, &progress).unwrap_err();
        assert!(matches!(e, FetchError::Mismatch { .. }), "{e}");
        assert!(e.to_string().contains("runtime/bin/etcd"), "{e}");
        assert!(!dest.join("runtime/bin/etcd").exists());
        let leftovers: Vec<_> = fs::read_dir(dest.join("runtime/bin")).unwrap().collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");

        // Only the node part is served: not the installer, nor anything else.
        let http = super::client(&addr, &ca, &creds).unwrap();
        for path in [
            "install",
            "../pki/ca.key",
            "runtime/../pki/ca.key",
            "install.json",
        ] {
            let e = get(&http, &addr, path).unwrap_err();
            assert!(e.to_string().contains("HTTP 404"), "{path}: {e}");
        }
    }

    #[test]
    fn only_plain_relative_paths_are_inside_a_bundle() {
        assert!(is_inside("runtime/bin/etcd"));
        assert!(is_inside("images/blobs/sha256/ab"));
        for bad in ["", "/etc/shadow", "../x", "runtime/../../x", "./a"] {
            assert!(!is_inside(bad), "{bad}");
        }
    }
}
