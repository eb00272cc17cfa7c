//! The Kubernetes runtime a bundle carries: Kubernetes itself and its node components.
//!
//! A runtime is a directory (or a `.tar`, `.tar.gz` or `.tar.zst` of one) holding
//! `runtime.json` ([`RuntimeMeta`]) and the files it names, plus an OCI image layout
//! `images/` with the system images (at least the pod sandbox, `pause`). Each
//! [`Component`] is either one file (`path` + `sha256`, optionally fetched from a `url`)
//! or one image (`image`). `scripts/build-runtime` makes one here from Debian's packages;
//! the format is documented in `docs/runtime.md` and its types are
//! `tele_bundle::runtime_json`'s.
//!
//! [`Runtime::load`] checks everything before a build packs it: the metadata, every
//! file's sha256, that each image is in the layout; `url` components are fetched once
//! into `<cache>/downloads/<sha256>` and verified there.
//!
//! ```no_run
//! use std::path::Path;
//! use tele_bundler::runtime::Runtime;
//! let cache = Path::new("/root/.cache/tele");
//! let dir = Runtime::default_path(cache, Some("1.20.2")).expect("run scripts/build-runtime");
//! let runtime = Runtime::load(&dir, cache)?;
//! for f in runtime.files() {
//!     println!("{} <- {}", f.bundle_path, f.source.display());
//! }
//! # Ok::<(), tele_bundler::error::BuildError>(())
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::net::IpAddr;
use std::path::{Component as PathPart, Path, PathBuf};

use tele_bundle::oci_layout;
use tele_manifests::ImageRef;

use crate::digest::{Digest, HashingWriter};
use crate::error::BuildError;

pub use tele_bundle::runtime_json::{
    Component, Patch, RunsOn, RuntimeMeta, API_VERSION, BUNDLE_DIR, IMAGES_DIR, META_FILE,
};

/// A loaded, verified runtime.
#[derive(Clone, Debug)]
pub struct Runtime {
    /// The runtime directory (the extracted copy when given as a tarball).
    pub root: PathBuf,
    /// Its `runtime.json`.
    pub meta: RuntimeMeta,
    /// Where each file component's bytes are: its `path` under `root`, or the download.
    sources: BTreeMap<String, PathBuf>,
}

/// A file to pack into the bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeFile {
    /// Path in the bundle relative to its top directory, `/`-separated
    /// (`runtime/bin/kubelet`).
    pub bundle_path: String,
    /// Where the bytes are now.
    pub source: PathBuf,
    /// File mode in the bundle: 0o755 for executables, 0o644 otherwise.
    pub mode: u32,
}

impl Runtime {
    /// Loads and verifies the runtime at `path`, a directory or a tarball
    /// (`.tar`, `.tar.gz`, `.tar.zst`; extracted once into
    /// `cache_dir/runtime-unpacked/<sha256 of the tarball>/`).
    ///
    /// `url` components are fetched into `cache_dir/downloads/<sha256>` unless
    /// already there; a download whose checksum differs is refused, naming the
    /// file, and nothing of it is kept. Every file's sha256 is checked.
    ///
    /// Blocks on network I/O; do not call it from inside an async runtime.
    pub fn load(path: &Path, cache_dir: &Path) -> Result<Runtime, BuildError> {
        let meta_path = path.symlink_metadata().map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => BuildError::input(
                format!("runtime {} does not exist", path.display()),
                "make one with scripts/build-runtime, or give --runtime PATH (or --no-runtime for an app-only bundle)",
            ),
            _ => BuildError::io(path, e),
        })?;
        let root = if path.is_dir() {
            path.to_path_buf()
        } else if meta_path.is_file() || path.is_file() {
            unpack_tarball(path, cache_dir)?
        } else {
            return Err(BuildError::input(
                format!(
                    "runtime {} is neither a directory nor a tarball",
                    path.display()
                ),
                "",
            ));
        };
        let meta = read_meta(&root)?;
        check_meta(&meta, &root)?;

        let mut sources = BTreeMap::new();
        let mut fetcher = None;
        for c in meta.components.iter().filter(|c| !c.is_image()) {
            let rel = c
                .path
                .clone()
                .expect("checked: file components have a path");
            let sha = c
                .sha256
                .as_deref()
                .expect("checked: file components have a sha256");
            let local = root.join(&rel);
            let source = match &c.url {
                Some(url) if !local.exists() => {
                    let f = fetcher.get_or_insert_with(|| Fetcher::new(cache_dir));
                    f.fetch(c, url, sha)?
                }
                _ => {
                    verify_file(&local, c, sha)?;
                    local
                }
            };
            sources.insert(rel, source);
        }
        Ok(Runtime {
            root,
            meta,
            sources,
        })
    }

    /// The system images a runtime holds, read from its runtime.json alone
    /// (its files are not checked: that is [`Runtime::load`]'s work).
    pub fn image_refs(path: &Path, cache_dir: &Path) -> Result<Vec<ImageRef>, BuildError> {
        let root = if path.is_dir() {
            path.to_path_buf()
        } else if path.is_file() {
            unpack_tarball(path, cache_dir)?
        } else {
            return Err(BuildError::input(
                format!("runtime {} does not exist", path.display()),
                "make one with scripts/build-runtime, or give --runtime PATH (or --no-runtime for an app-only bundle)",
            ));
        };
        let meta = read_meta(&root)?;
        check_meta(&meta, &root)?;
        Ok(Runtime {
            root,
            meta,
            sources: BTreeMap::new(),
        }
        .images()
        .1)
    }

    /// The runtime `scripts/build-runtime` made in the cache: `cache_dir/runtime/<version>`
    /// (a leading `v` is ignored), or the newest complete one there when `version` is
    /// `None`. Only directories holding `runtime.json` count.
    pub fn default_path(cache_dir: &Path, version: Option<&str>) -> Option<PathBuf> {
        let base = cache_dir.join("runtime");
        let complete = |p: &Path| p.join(META_FILE).is_file();
        if let Some(v) = version {
            let p = base.join(v.trim_start_matches('v'));
            return complete(&p).then_some(p);
        }
        fs::read_dir(&base)
            .ok()?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_str()?.to_string();
                let key = version_key(&name)?;
                complete(&e.path()).then_some((key, e.path()))
            })
            .max()
            .map(|(_, p)| p)
    }

    /// The files to pack under `runtime/` in the bundle: `runtime.json` and every
    /// file component, sorted by bundle path. The images are not among them (see
    /// [`Runtime::images`]).
    pub fn files(&self) -> Vec<RuntimeFile> {
        let mut files = vec![RuntimeFile {
            bundle_path: format!("{BUNDLE_DIR}/{META_FILE}"),
            source: self.root.join(META_FILE),
            mode: 0o644,
        }];
        for (rel, source) in &self.sources {
            files.push(RuntimeFile {
                bundle_path: format!("{BUNDLE_DIR}/{rel}"),
                source: source.clone(),
                mode: if is_executable(source) { 0o755 } else { 0o644 },
            });
        }
        files.sort_by(|a, b| a.bundle_path.cmp(&b.bundle_path));
        files
    }

    /// The files to pack, as [`Runtime::files`], with every file component
    /// zstd-compressed (`runtime/bin/kubelet.zst`, keeping its mode): the
    /// installer unpacks each and checks it against runtime.json. Compressed
    /// files are kept in `cache_dir/runtime-packed/<sha256>.<level>.zst`,
    /// each checked (unpacked and hashed) before it is used again; the files
    /// are compressed on every core.
    pub fn packed_files(&self, cache_dir: &Path) -> Result<Vec<RuntimeFile>, BuildError> {
        use tele_bundle::packed;
        let shas: BTreeMap<&str, &str> = self
            .meta
            .components
            .iter()
            .filter_map(|c| Some((c.path.as_deref()?, c.sha256.as_deref()?)))
            .collect();
        let dir = cache_dir.join("runtime-packed");
        let files = self.files();
        let meta_path = format!("{BUNDLE_DIR}/{META_FILE}");
        let work: Vec<(usize, &RuntimeFile, PathBuf)> = files
            .iter()
            .enumerate()
            .filter(|(_, f)| f.bundle_path != meta_path)
            .map(|(i, f)| {
                let rel = f.bundle_path.trim_start_matches(&format!("{BUNDLE_DIR}/"));
                let sha = shas.get(rel).copied().unwrap_or_default();
                (i, f, dir.join(format!("{sha}.{}.zst", packed::LEVEL)))
            })
            .collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let results: Vec<Result<(), BuildError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| {
                        let mut out = Ok(());
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some((_, f, cached)) = work.get(i) else {
                                break out;
                            };
                            let rel = f.bundle_path.trim_start_matches(&format!("{BUNDLE_DIR}/"));
                            let want = shas.get(rel).copied().unwrap_or_default();
                            let fine = packed::unpacked_digest(cached)
                                .is_ok_and(|(d, _)| d.hex() == want);
                            if fine {
                                continue;
                            }
                            match packed::pack(&f.source, cached) {
                                Ok(d) if d.hex() == want => {}
                                Ok(d) => {
                                    let _ = fs::remove_file(cached);
                                    out = Err(BuildError::input(
                                        format!("runtime file {} changed while it was packed (sha256 {}, runtime.json says {want})", f.source.display(), d.hex()),
                                        "rebuild the runtime with scripts/build-runtime",
                                    ));
                                }
                                Err(e) => out = Err(BuildError::io(cached, e)),
                            }
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a packing thread panicked"))
                .collect()
        });
        results.into_iter().collect::<Result<Vec<()>, _>>()?;
        let mut out = files.clone();
        for (i, f, cached) in work {
            out[i] = RuntimeFile {
                bundle_path: format!("{}{}", f.bundle_path, packed::SUFFIX),
                source: cached,
                mode: f.mode,
            };
        }
        out.sort_by(|a, b| a.bundle_path.cmp(&b.bundle_path));
        Ok(out)
    }

    /// The OCI layout holding the system images, and their references.
    pub fn images(&self) -> (PathBuf, Vec<ImageRef>) {
        let refs = self
            .meta
            .components
            .iter()
            .filter_map(|c| c.image.as_deref())
            .map(|s| ImageRef::parse(s).expect("checked when loaded"))
            .collect();
        (self.root.join(IMAGES_DIR), refs)
    }
}

/// Orders cache directory names that look like versions (`1.20.2`, `1.21.0-rc.1`).
fn version_key(name: &str) -> Option<(Vec<u64>, String)> {
    let core = name.split(['-', '+']).next()?;
    let nums = core
        .split('.')
        .map(|p| p.parse().ok())
        .collect::<Option<Vec<u64>>>()?;
    // a release sorts after its pre-releases: "1.20.2" > "1.20.2-rc.1"
    let pre = if core.len() == name.len() {
        "~".to_string()
    } else {
        name[core.len()..].to_string()
    };
    Some((nums, pre))
}

/// Content-based, so the bundle does not depend on the file system's modes.
fn is_executable(p: &Path) -> bool {
    let mut head = [0u8; 4];
    let n = File::open(p)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    head[..n].starts_with(b"\x7fELF") || head[..n].starts_with(b"#!")
}

fn read_meta(root: &Path) -> Result<RuntimeMeta, BuildError> {
    RuntimeMeta::read(root).map_err(|e| match e.io_kind() {
        Some(io::ErrorKind::NotFound) => BuildError::input(
            format!("{} is not a runtime: it has no {META_FILE}", root.display()),
            "make one with scripts/build-runtime (see docs/runtime.md)",
        ),
        _ => e.into(),
    })
}

fn check_meta(meta: &RuntimeMeta, root: &Path) -> Result<(), BuildError> {
    let file = root.join(META_FILE);
    let bad = |msg: String| {
        BuildError::input(format!("{}: {msg}", file.display()), "see docs/runtime.md")
    };
    if meta.api_version != API_VERSION {
        return Err(bad(format!(
            "apiVersion is `{}`, expected `{API_VERSION}`",
            meta.api_version
        )));
    }
    if meta.kubernetes_version.is_empty() {
        return Err(bad("kubernetesVersion is empty".into()));
    }
    let mut names = BTreeSet::new();
    let mut paths = BTreeSet::new();
    let mut images = Vec::new();
    for c in &meta.components {
        let what = format!("component `{}`", c.name);
        if c.name.is_empty() {
            return Err(bad("a component has an empty name".into()));
        }
        if !names.insert(c.name.as_str()) {
            return Err(bad(format!("{what} appears twice")));
        }
        if c.version.is_empty() {
            return Err(bad(format!("{what} has no version")));
        }
        if let Some(image) = &c.image {
            if c.path.is_some() || c.url.is_some() || c.sha256.is_some() {
                return Err(bad(format!(
                    "{what} is an image: it takes no path, url or sha256"
                )));
            }
            let r = ImageRef::parse(image).map_err(|e| bad(format!("{what}: {e}")))?;
            if let Some(d) = &c.digest {
                d.parse::<Digest>()
                    .map_err(|e| bad(format!("{what}: {e}")))?;
            }
            images.push((c, r));
            continue;
        }
        if c.digest.is_some() {
            return Err(bad(format!("{what}: `digest` is for image components")));
        }
        let path = c
            .path
            .as_deref()
            .ok_or_else(|| bad(format!("{what} has neither a path nor an image")))?;
        check_rel_path(path).map_err(|m| bad(format!("{what}: path `{path}` {m}")))?;
        if !paths.insert(path) {
            return Err(bad(format!(
                "{what}: path `{path}` is used by another component"
            )));
        }
        let sha = c
            .sha256
            .as_deref()
            .ok_or_else(|| bad(format!("{what} has no sha256")))?;
        if !is_sha256_hex(sha) {
            return Err(bad(format!(
                "{what}: sha256 `{sha}` is not 64 lowercase hex digits"
            )));
        }
        if let Some(url) = &c.url {
            check_url(url).map_err(|m| bad(format!("{what}: url `{url}` {m}")))?;
        }
    }
    let mut patches = BTreeSet::new();
    for patch in &meta.patches {
        let what = format!("patch `{}`", patch.name);
        if patch.name.is_empty() || patch.name.contains(['/', '\\']) {
            return Err(bad(format!(
                "a patch's name `{}` must be a file name",
                patch.name
            )));
        }
        if !patches.insert(patch.name.as_str()) {
            return Err(bad(format!("{what} appears twice")));
        }
        if patch.summary.trim().is_empty() || patch.summary.contains(['\n', '\r']) {
            return Err(bad(format!("{what}: its summary must be one line")));
        }
        if !is_sha256_hex(&patch.sha256) {
            return Err(bad(format!(
                "{what}: sha256 `{}` is not 64 lowercase hex digits",
                patch.sha256
            )));
        }
    }
    if !images.is_empty() {
        check_images(root, &images)?;
    }
    Ok(())
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn check_rel_path(path: &str) -> Result<(), &'static str> {
    let p = Path::new(path);
    if path.is_empty()
        || path.contains('\\')
        || !p.components().all(|c| matches!(c, PathPart::Normal(_)))
    {
        return Err("must be relative, '/'-separated, without `.` or `..`");
    }
    if path == META_FILE || p.starts_with(IMAGES_DIR) {
        return Err("is reserved (runtime.json, images/)");
    }
    Ok(())
}

fn check_url(url: &str) -> Result<reqwest::Url, String> {
    let u = reqwest::Url::parse(url).map_err(|e| format!("is not a URL: {e}"))?;
    let host = u.host_str().unwrap_or("");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match u.scheme() {
        "https" => Ok(u),
        "http" if loopback => Ok(u),
        "http" => Err("must be https (plain http is only allowed on loopback)".into()),
        s => Err(format!("has scheme `{s}`; only https is supported")),
    }
}

/// Every image component must be named in `images/index.json`.
fn check_images(root: &Path, images: &[(&Component, ImageRef)]) -> Result<(), BuildError> {
    let layout = root.join(IMAGES_DIR);
    let index_path = oci_layout::index_path(&layout);
    let index = oci_layout::Index::read(&layout).map_err(|e| match e.io_kind() {
        Some(io::ErrorKind::NotFound) => BuildError::input(
            format!(
                "runtime {} has image component `{}` but no OCI layout {IMAGES_DIR}/",
                root.display(),
                images[0].0.name
            ),
            "the runtime is incomplete; rebuild it with scripts/build-runtime",
        ),
        _ => e.into(),
    })?;
    for (c, r) in images {
        let full = r.to_string();
        let found = index
            .find(&full)
            .or_else(|| index.find(c.image.as_deref().unwrap_or("")));
        let Some(entry) = found else {
            return Err(BuildError::input(
                format!("component `{}`: image {full} is not in {}", c.name, index_path.display()),
                "add it to the runtime's layout (tele image build ... -o images) or fix runtime.json",
            ));
        };
        if let Some(d) = &c.digest {
            let got = entry.digest.to_string();
            if got != *d {
                return Err(BuildError::input(
                    format!("component `{}`: image {full} has digest {got} in the layout, runtime.json says {d}", c.name),
                    "the runtime was changed after runtime.json was written; rebuild it",
                ));
            }
        }
    }
    Ok(())
}

fn verify_file(path: &Path, c: &Component, want: &str) -> Result<(), BuildError> {
    let meta = path.symlink_metadata().map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => BuildError::input(
            format!(
                "runtime file {} (component `{}`) is missing",
                path.display(),
                c.name
            ),
            "the runtime is incomplete; rebuild it with scripts/build-runtime",
        ),
        _ => BuildError::io(path, e),
    })?;
    if !meta.is_file() {
        return Err(BuildError::input(
            format!(
                "runtime file {} (component `{}`) is not a regular file",
                path.display(),
                c.name
            ),
            "component files must be regular files, not links or directories",
        ));
    }
    let f = File::open(path).map_err(|e| BuildError::io(path, e))?;
    let (got, _) = Digest::of_reader(BufReader::with_capacity(1 << 20, f))
        .map_err(|e| BuildError::io(path, e))?;
    if got.hex() != want {
        return Err(BuildError::input(
            format!(
                "runtime file {} (component `{}`) has sha256 {}, runtime.json says {want}",
                path.display(),
                c.name,
                got.hex()
            ),
            "the runtime is damaged or was changed after runtime.json was written; rebuild it with scripts/build-runtime",
        ));
    }
    Ok(())
}

/// Downloads `url` components into `<cache>/downloads/<sha256>`.
struct Fetcher {
    dir: PathBuf,
    rt: Option<(tokio::runtime::Runtime, reqwest::Client)>,
}

impl Fetcher {
    fn new(cache_dir: &Path) -> Fetcher {
        Fetcher {
            dir: cache_dir.join("downloads"),
            rt: None,
        }
    }

    fn fetch(&mut self, c: &Component, url: &str, sha: &str) -> Result<PathBuf, BuildError> {
        let dest = self.dir.join(sha);
        if dest.is_file() {
            let f = File::open(&dest).map_err(|e| BuildError::io(&dest, e))?;
            let (got, _) =
                Digest::of_reader(BufReader::new(f)).map_err(|e| BuildError::io(&dest, e))?;
            if got.hex() == sha {
                return Ok(dest);
            }
            // a damaged cache entry: fetch it again
            fs::remove_file(&dest).map_err(|e| BuildError::io(&dest, e))?;
        }
        fs::create_dir_all(&self.dir).map_err(|e| BuildError::io(&self.dir, e))?;
        if self.rt.is_none() {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| BuildError::io("tokio runtime", e))?;
            let client = reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_secs(30))
                .user_agent(concat!("tele/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| {
                    BuildError::registry(format!("cannot set up an HTTP client: {e}"), "")
                })?;
            self.rt = Some((rt, client));
        }
        let (rt, client) = self.rt.as_ref().expect("just set");
        let what = format!(
            "{} (component `{}`) from {url}",
            c.path.as_deref().unwrap_or("?"),
            c.name
        );
        // the temporary file is deleted when dropped: a failed or bad download leaves nothing
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&self.dir)
            .map_err(|e| BuildError::io(&self.dir, e))?;
        let mut out = HashingWriter::new(io::BufWriter::new(tmp));
        rt.block_on(async {
            let mut resp = client.get(url).send().await.map_err(|e| {
                BuildError::registry(
                    format!("cannot download {what}: {e}"),
                    "check the URL and the network",
                )
            })?;
            if !resp.status().is_success() {
                return Err(BuildError::registry(
                    format!("cannot download {what}: HTTP {}", resp.status()),
                    "check the URL in runtime.json",
                ));
            }
            while let Some(chunk) = resp.chunk().await.map_err(|e| {
                BuildError::registry(format!("download of {what} broke off: {e}"), "try again")
            })? {
                out.write_all(&chunk)
                    .map_err(|e| BuildError::io(&self.dir, e))?;
            }
            Ok(())
        })?;
        let (got, _, w) = out.finish();
        if got.hex() != sha {
            return Err(BuildError::input(
                format!(
                    "downloaded {what} has sha256 {}, runtime.json says {sha}; refused",
                    got.hex()
                ),
                "the file at that URL is not the one runtime.json names: fix the url or the sha256",
            ));
        }
        let tmp = w
            .into_inner()
            .map_err(|e| BuildError::io(&self.dir, e.into_error()))?;
        tmp.as_file()
            .sync_all()
            .map_err(|e| BuildError::io(tmp.path(), e))?;
        tmp.persist(&dest)
            .map_err(|e| BuildError::io(&dest, e.error))?;
        Ok(dest)
    }
}

/// Extracts a runtime tarball once into `cache_dir/runtime-unpacked/<sha256>/` (via a
/// temporary directory renamed into place) and returns the runtime directory in it.
fn unpack_tarball(path: &Path, cache_dir: &Path) -> Result<PathBuf, BuildError> {
    let f = File::open(path).map_err(|e| BuildError::io(path, e))?;
    let (digest, _) = Digest::of_reader(BufReader::with_capacity(1 << 20, f))
        .map_err(|e| BuildError::io(path, e))?;
    let base = cache_dir.join("runtime-unpacked");
    let dest = base.join(digest.hex());
    if !dest.is_dir() {
        fs::create_dir_all(&base).map_err(|e| BuildError::io(&base, e))?;
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempdir_in(&base)
            .map_err(|e| BuildError::io(&base, e))?;
        let mut f = BufReader::new(File::open(path).map_err(|e| BuildError::io(path, e))?);
        let mut magic = [0u8; 4];
        let n = f.read(&mut magic).map_err(|e| BuildError::io(path, e))?;
        let head = io::Cursor::new(magic[..n].to_vec());
        let reader: Box<dyn Read> = match &magic[..n] {
            [0x1f, 0x8b, ..] => Box::new(flate2::read::GzDecoder::new(head.chain(f))),
            [0x28, 0xb5, 0x2f, 0xfd] => Box::new(
                zstd::stream::read::Decoder::new(head.chain(f))
                    .map_err(|e| BuildError::io(path, e))?,
            ),
            _ => Box::new(head.chain(f)),
        };
        let mut archive = tar::Archive::new(reader);
        archive.set_preserve_permissions(true);
        archive.unpack(tmp.path()).map_err(|e| {
            BuildError::input(
                format!("cannot extract runtime tarball {}: {e}", path.display()),
                "give a .tar, .tar.gz or .tar.zst of a runtime directory",
            )
        })?;
        let tmp = tmp.keep();
        if let Err(e) = fs::rename(&tmp, &dest) {
            let _ = fs::remove_dir_all(&tmp);
            // another build extracted the same tarball meanwhile
            if !dest.is_dir() {
                return Err(BuildError::io(&dest, e));
            }
        }
    }
    // runtime.json at the top, or in the tarball's single top directory
    if dest.join(META_FILE).is_file() {
        return Ok(dest);
    }
    let dirs: Vec<PathBuf> = fs::read_dir(&dest)
        .map_err(|e| BuildError::io(&dest, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    match dirs.as_slice() {
        [one] if one.join(META_FILE).is_file() => Ok(one.clone()),
        _ => Err(BuildError::input(
            format!("runtime tarball {} holds no {META_FILE}", path.display()),
            "pack the runtime directory itself: tar cf runtime.tar -C <runtime dir> .",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::os::unix::fs::PermissionsExt;

    const ELF_BIN: &[u8] = b"\x7fELF fake binary";

    fn sha(bytes: &[u8]) -> String {
        Digest::of_bytes(bytes).hex().to_string()
    }

    fn file_component(name: &str, path: &str, bytes: &[u8]) -> Component {
        Component {
            name: name.into(),
            version: "v1.0.0".into(),
            path: Some(path.into()),
            sha256: Some(sha(bytes)),
            url: None,
            image: None,
            digest: None,
            runs_on: RunsOn::All,
            version_source: None,
        }
    }

    /// A runtime directory with two binaries and runtime.json; no images.
    fn synthetic(dir: &Path, extra: Vec<Component>) -> RuntimeMeta {
        fs::create_dir_all(dir.join("bin")).unwrap();
        fs::write(dir.join("bin/kubelet"), ELF_BIN).unwrap();
        fs::write(dir.join("bin/notes.txt"), b"plain").unwrap();
        let mut components = vec![
            file_component("kubelet", "bin/kubelet", ELF_BIN),
            file_component("notes", "bin/notes.txt", b"plain"),
        ];
        components.extend(extra);
        let meta = RuntimeMeta {
            api_version: API_VERSION.into(),
            name: "test".into(),
            kubernetes_version: "1.0.0".into(),
            platform: None,
            components,
            patches: vec![],
        };
        fs::write(
            dir.join(META_FILE),
            serde_json::to_vec_pretty(&meta).unwrap(),
        )
        .unwrap();
        meta
    }

    /// Serves `body` over plain HTTP on 127.0.0.1 for `hits` requests.
    fn serve(body: &'static [u8], hits: usize) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(hits) {
                let mut s = stream.unwrap();
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    req.extend_from_slice(&buf[..n]);
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                s.write_all(head.as_bytes()).unwrap();
                s.write_all(body).unwrap();
            }
        });
        format!("http://127.0.0.1:{port}/files/etcd")
    }

    fn entries(dir: &Path) -> Vec<String> {
        match fs::read_dir(dir) {
            Ok(rd) => rd
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => vec![],
        }
    }

    #[test]
    fn loads_a_synthetic_runtime_and_lists_its_files_sorted() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("rt");
        let meta = synthetic(&dir, vec![]);
        let rt = Runtime::load(&dir, &t.path().join("cache")).unwrap();
        assert_eq!(rt.meta, meta);
        let files = rt.files();
        let got: Vec<(&str, u32)> = files
            .iter()
            .map(|f| (f.bundle_path.as_str(), f.mode))
            .collect();
        assert_eq!(
            got,
            [
                ("runtime/bin/kubelet", 0o755),
                ("runtime/bin/notes.txt", 0o644),
                ("runtime/runtime.json", 0o644)
            ]
        );
        assert_eq!(files[0].source, dir.join("bin/kubelet"));
        let (layout, refs) = rt.images();
        assert_eq!(layout, dir.join("images"));
        assert!(refs.is_empty());
    }

    #[test]
    fn a_sha256_mismatch_is_refused_naming_the_file() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("rt");
        synthetic(&dir, vec![]);
        fs::write(dir.join("bin/kubelet"), b"\x7fELF changed").unwrap();
        let err = Runtime::load(&dir, &t.path().join("cache")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("bin/kubelet")
                && msg.contains("`kubelet`")
                && msg.contains("runtime.json says"),
            "{msg}"
        );
        assert!(err.hint().is_some());
    }

    #[test]
    fn a_url_component_is_fetched_into_the_cache_and_verified() {
        static ETCD: &[u8] = b"\x7fELF etcd from upstream";
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("rt");
        let cache = t.path().join("cache");
        let mut c = file_component("etcd", "bin/etcd", ETCD);
        c.url = Some(serve(ETCD, 1));
        synthetic(&dir, vec![c]);
        let rt = Runtime::load(&dir, &cache).unwrap();
        let cached = cache.join("downloads").join(sha(ETCD));
        assert_eq!(fs::read(&cached).unwrap(), ETCD);
        assert_eq!(
            entries(&cache.join("downloads")),
            [sha(ETCD)],
            "no temporary files left"
        );
        let f = rt
            .files()
            .into_iter()
            .find(|f| f.bundle_path == "runtime/bin/etcd")
            .unwrap();
        assert_eq!((f.source, f.mode), (cached, 0o755));
        // the second load uses the cache: the server answers only once
        Runtime::load(&dir, &cache).unwrap();
    }

    #[test]
    fn a_url_with_a_bad_checksum_is_refused_and_leaves_nothing() {
        static SERVED: &[u8] = b"\x7fELF not what runtime.json names";
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("rt");
        let cache = t.path().join("cache");
        let mut c = file_component("etcd", "bin/etcd", b"\x7fELF the real etcd");
        c.url = Some(serve(SERVED, 1));
        synthetic(&dir, vec![c]);
        let err = Runtime::load(&dir, &cache).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("bin/etcd") && msg.contains("`etcd`") && msg.contains("refused"),
            "{msg}"
        );
        assert_eq!(entries(&cache.join("downloads")), Vec::<String>::new());
    }

    #[test]
    fn plain_http_is_refused_off_loopback() {
        assert!(check_url("https://dl.k8s.io/v1.20.2/bin/linux/amd64/kubelet").is_ok());
        assert!(check_url("http://127.0.0.1:8080/x").is_ok());
        assert!(check_url("http://[::1]:8080/x").is_ok());
        assert!(check_url("http://localhost/x").is_ok());
        assert!(check_url("http://dl.k8s.io/x")
            .unwrap_err()
            .contains("https"));
        assert!(check_url("ftp://127.0.0.1/x").is_err());
    }

    #[test]
    fn bad_metadata_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("rt");
        let mut escaping = file_component("evil", "../etc/passwd", b"x");
        escaping.version = "1".into();
        synthetic(&dir, vec![escaping]);
        let msg = Runtime::load(&dir, t.path()).unwrap_err().to_string();
        assert!(msg.contains("../etc/passwd"), "{msg}");

        let mut img = file_component("pause", "bin/pause", b"x");
        (img.path, img.sha256, img.image) = (None, None, Some("registry.k8s.io/pause:3.2".into()));
        synthetic(&dir, vec![img]);
        let msg = Runtime::load(&dir, t.path()).unwrap_err().to_string();
        assert!(msg.contains("pause") && msg.contains("images/"), "{msg}");

        fs::write(
            dir.join(META_FILE),
            br#"{"apiVersion": "runtime.tele.dev/v1", "nme": "x"}"#,
        )
        .unwrap();
        let msg = Runtime::load(&dir, t.path()).unwrap_err().to_string();
        assert!(msg.contains("runtime.json:1:"), "{msg}");
    }

    #[test]
    fn patches_are_loaded_and_bad_ones_refused() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("rt");
        let write = |patches: Vec<Patch>| {
            let mut meta = synthetic(&dir, vec![]);
            meta.patches = patches;
            fs::write(dir.join(META_FILE), serde_json::to_vec(&meta).unwrap()).unwrap();
            meta
        };
        let patch = |name: &str, summary: &str, sha256: &str| Patch {
            name: name.into(),
            summary: summary.into(),
            sha256: sha256.into(),
        };
        let good = patch("0001-fix", "Controller: a fix", &"a".repeat(64));
        let meta = write(vec![good.clone()]);
        assert_eq!(Runtime::load(&dir, t.path()).unwrap().meta, meta);

        for (patches, want) in [
            (vec![good.clone(), good.clone()], "appears twice"),
            (
                vec![patch("../x", "s", &"a".repeat(64))],
                "must be a file name",
            ),
            (
                vec![patch("0002", "two\nlines", &"a".repeat(64))],
                "one line",
            ),
            (vec![patch("0002", "s", "ABC")], "64 lowercase hex"),
        ] {
            write(patches);
            let msg = Runtime::load(&dir, t.path()).unwrap_err().to_string();
            assert!(msg.contains(want) && msg.contains(META_FILE), "{msg}");
        }
    }

    #[test]
    fn a_tarball_is_extracted_once_into_the_cache() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("rt");
        synthetic(&dir, vec![]);
        fs::set_permissions(dir.join("bin/kubelet"), fs::Permissions::from_mode(0o755)).unwrap();
        let tarball = t.path().join("rt.tar.zst");
        let enc = zstd::stream::write::Encoder::new(File::create(&tarball).unwrap(), 3).unwrap();
        let mut b = tar::Builder::new(enc);
        b.append_dir_all("kubernetes-1.0.0", &dir).unwrap();
        b.into_inner().unwrap().finish().unwrap();

        let cache = t.path().join("cache");
        let rt = Runtime::load(&tarball, &cache).unwrap();
        let f = File::open(&tarball).unwrap();
        let hex = Digest::of_reader(f).unwrap().0.hex().to_string();
        assert_eq!(
            rt.root,
            cache
                .join("runtime-unpacked")
                .join(&hex)
                .join("kubernetes-1.0.0")
        );
        assert_eq!(entries(&cache.join("runtime-unpacked")), [hex]);
        assert_eq!(rt.files().len(), 3);
        Runtime::load(&tarball, &cache).unwrap();
    }

    #[test]
    fn default_path_picks_the_version_or_the_newest_complete_one() {
        let t = tempfile::tempdir().unwrap();
        let base = t.path().join("runtime");
        for v in ["1.9.0", "1.20.2", "1.21.0-rc.1"] {
            fs::create_dir_all(base.join(v)).unwrap();
            fs::write(base.join(v).join(META_FILE), "{}").unwrap();
        }
        fs::create_dir_all(base.join("1.30.0.tmp")).unwrap();
        fs::create_dir_all(base.join("1.22.0")).unwrap(); // incomplete: no runtime.json
        fs::create_dir_all(base.join("build")).unwrap();
        assert_eq!(
            Runtime::default_path(t.path(), Some("v1.20.2")),
            Some(base.join("1.20.2"))
        );
        assert_eq!(Runtime::default_path(t.path(), Some("1.22.0")), None);
        assert_eq!(
            Runtime::default_path(t.path(), None),
            Some(base.join("1.21.0-rc.1"))
        );
        assert_eq!(Runtime::default_path(&t.path().join("nothing"), None), None);
    }
}
