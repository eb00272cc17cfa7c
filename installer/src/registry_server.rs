//! The node's image registry: the bundle's `images/` OCI layout served
//! read-only over the OCI distribution pull API, straight from disk.
//!
//! containerd uses it as the mirror of every registry host the bundle has
//! images from (`hosts.toml` under its `config_path`), so pods keep their
//! image references as written and nothing is pulled from outside. When
//! containerd asks a mirror it passes the upstream host as the `ns` query
//! parameter (`/v2/library/nginx/manifests/1.25?ns=docker.io`), which, with
//! the repository and tag, gives the full reference that `index.json` names
//! the image by. Without `ns` the repository is read as a full reference
//! (`/v2/example.com/hello/web/manifests/1.0.0`), or as a Docker Hub one when
//! its first component is not a host.
//!
//! ```no_run
//! use tele_installer::registry_server::{start, RegistryConfig};
//!
//! let handle = start(RegistryConfig {
//!     layout: "/opt/bundle/images".into(),
//!     listen: "127.0.0.1:0".parse().unwrap(),
//!     tls: None,
//! })
//! .unwrap();
//! println!("serving on {}", handle.addr());
//! handle.shutdown();
//! ```
//!
//! Set `TELE_REGISTRY_ACCESS_LOG=1` for one line per request on stderr.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{self, SeekFrom, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tele_bundler::digest::Digest;
use tele_manifests::ImageRef;
use tokio::io::{AsyncRead, AsyncSeekExt, ReadBuf};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Manifests are read whole; anything bigger is not one.
const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// Blob bodies are sent in chunks of this size.
const CHUNK_BYTES: usize = 256 << 10;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long in-flight requests may run on after shutdown is asked for.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
const ACCESS_LOG_ENV: &str = "TELE_REGISTRY_ACCESS_LOG";

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// What to serve and where.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// The OCI image layout (the extracted bundle's `images/`).
    pub layout: PathBuf,
    /// The address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Serve HTTPS with these files; plain HTTP when `None`.
    pub tls: Option<TlsFiles>,
}

/// The server's certificate and key, both PEM.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain, the server's own certificate first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why the registry could not start.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A file of the layout or of the TLS configuration could not be read.
    #[error("failed to read `{}`", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// `index.json` is not an OCI image index.
    #[error("`{}` is not an OCI image index: {reason}", path.display())]
    Index {
        /// The index file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The certificate or key is unusable.
    #[error("failed to load the TLS certificate `{}` and key `{}`: {reason}", files.cert.display(), files.key.display())]
    Tls {
        /// The files given.
        files: TlsFiles,
        /// What is wrong with them.
        reason: String,
    },
    /// The listening socket could not be opened.
    #[error("failed to listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The server's threads or signal handling could not be set up.
    #[error("failed to start the registry server")]
    Runtime(#[source] io::Error),
}

impl RegistryError {
    /// How to fix it, when we can tell.
    pub fn hint(&self) -> Option<String> {
        match self {
            RegistryError::Read { path, .. } if path.ends_with("index.json") => Some(
                "the layout is the bundle's `images/` directory; run `tele verify` on the bundle"
                    .into(),
            ),
            RegistryError::Bind { addr, .. } => Some(format!(
                "another process listens on {addr}; pick another address or stop it"
            )),
            _ => None,
        }
    }
}

/// A running registry; shut it down with [`RegistryHandle::shutdown`] (also
/// done on drop).
#[derive(Debug)]
pub struct RegistryHandle {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RegistryHandle {
    /// The address the registry listens on (the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections, lets in-flight requests finish (for a
    /// few seconds at most), and waits for the server thread to end.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for RegistryHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Binds (port 0 allowed), loads index.json, and serves on a background
/// thread with its own tokio runtime.
pub fn start(config: RegistryConfig) -> Result<RegistryHandle, RegistryError> {
    let index = IndexCache::load(&config.layout)?;
    let tls = config.tls.as_ref().map(tls_acceptor).transpose()?;
    let bind_error = |source| RegistryError::Bind {
        addr: config.listen,
        source,
    };
    let listener = std::net::TcpListener::bind(config.listen).map_err(bind_error)?;
    listener.set_nonblocking(true).map_err(bind_error)?;
    let addr = listener.local_addr().map_err(bind_error)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("tele-registry")
        .enable_all()
        .build()
        .map_err(RegistryError::Runtime)?;
    let listener = {
        let _entered = runtime.enter();
        tokio::net::TcpListener::from_std(listener).map_err(bind_error)?
    };
    let state = Arc::new(State {
        layout: config.layout,
        index,
        access_log: std::env::var_os(ACCESS_LOG_ENV).is_some_and(|v| !v.is_empty() && v != "0"),
    });
    let (shutdown, stopped) = watch::channel(false);
    let thread = std::thread::Builder::new()
        .name("tele-registry".into())
        .spawn(move || {
            runtime.block_on(serve(listener, tls, state, stopped));
            runtime.shutdown_timeout(Duration::from_secs(1));
        })
        .map_err(RegistryError::Runtime)?;
    Ok(RegistryHandle {
        addr,
        shutdown,
        thread: Some(thread),
    })
}

/// Serves until SIGTERM/SIGINT (for the supervised service); blocking.
///
/// The signals are blocked in the calling thread (and so in the server's
/// threads, which inherit the mask) and taken with `sigwait`, so call this
/// before starting other threads that would leave them unblocked.
pub fn run(config: RegistryConfig) -> Result<(), RegistryError> {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal};
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    let errno = |e: nix::errno::Errno| RegistryError::Runtime(io::Error::from(e));
    let previous = signals
        .thread_swap_mask(SigmaskHow::SIG_BLOCK)
        .map_err(errno)?;
    let result = start(config).and_then(|handle| {
        let waited = signals.wait().map_err(errno);
        handle.shutdown();
        waited.map(drop)
    });
    let _ = previous.thread_set_mask();
    result
}

struct State {
    layout: PathBuf,
    index: IndexCache,
    access_log: bool,
}

impl State {
    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.layout.join("blobs/sha256").join(digest.hex())
    }
}

/// What `index.json` says: images by `registry/repository:tag`, and the
/// media type of each top-level manifest by digest.
#[derive(Debug, Default)]
struct Index {
    by_reference: HashMap<String, Digest>,
    media_types: HashMap<Digest, String>,
}

impl Index {
    fn parse(path: &Path, bytes: &[u8]) -> Result<Index, RegistryError> {
        let bad = |reason: String| RegistryError::Index {
            path: path.to_path_buf(),
            reason,
        };
        let doc: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        let entries = doc["manifests"]
            .as_array()
            .ok_or_else(|| bad("it has no `manifests` list".into()))?;
        let mut index = Index::default();
        for entry in entries {
            // An entry we cannot use is skipped rather than failing the whole node.
            let Some(digest) = entry["digest"]
                .as_str()
                .and_then(|d| d.parse::<Digest>().ok())
            else {
                continue;
            };
            let media_type = entry["mediaType"]
                .as_str()
                .unwrap_or(OCI_MANIFEST)
                .to_string();
            for key in [
                "io.containerd.image.name",
                "org.opencontainers.image.ref.name",
            ] {
                let Some(name) = entry["annotations"][key].as_str() else {
                    continue;
                };
                let Ok(image) = ImageRef::parse(name) else {
                    continue;
                };
                if let Some(tag) = image.tag() {
                    let key = format!("{}/{}:{tag}", image.registry(), image.repository());
                    index.by_reference.insert(key, digest.clone());
                }
            }
            index.media_types.insert(digest, media_type);
        }
        Ok(index)
    }
}

/// `index.json`, re-read when the file changes so the mirror follows a
/// bundle update without a restart.
struct IndexCache {
    path: PathBuf,
    loaded: Mutex<(FileStamp, Arc<Index>)>,
}

/// Enough of a file's metadata to notice it was rewritten or replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl FileStamp {
    fn of(path: &Path) -> io::Result<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path)?;
        Ok(FileStamp {
            modified: meta.modified().ok(),
            len: meta.len(),
            inode: meta.ino(),
        })
    }
}

impl IndexCache {
    fn load(layout: &Path) -> Result<IndexCache, RegistryError> {
        let path = layout.join("index.json");
        let read = |source| RegistryError::Read {
            path: path.clone(),
            source,
        };
        let stamp = FileStamp::of(&path).map_err(read)?;
        let bytes = std::fs::read(&path).map_err(read)?;
        let index = Index::parse(&path, &bytes)?;
        Ok(IndexCache {
            loaded: Mutex::new((stamp, Arc::new(index))),
            path,
        })
    }

    /// The index as it is on disk now; the last good one while the file is
    /// missing or half-written.
    fn current(&self) -> Arc<Index> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(stamp) = FileStamp::of(&self.path) {
            if stamp != loaded.0 {
                let reloaded = std::fs::read(&self.path)
                    .ok()
                    .and_then(|bytes| Index::parse(&self.path, &bytes).ok());
                if let Some(index) = reloaded {
                    *loaded = (stamp, Arc::new(index));
                }
            }
        }
        loaded.1.clone()
    }
}

fn tls_acceptor(files: &TlsFiles) -> Result<tokio_rustls::TlsAcceptor, RegistryError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let fail = |reason: String| RegistryError::Tls {
        files: files.clone(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| fail(format!("certificate: {e}")))?;
    if certs.is_empty() {
        return Err(fail("the certificate file holds no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| fail(format!("key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| fail(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<State>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    let for_connections = stopped.clone();
    loop {
        tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(connection(stream, tls.clone(), state.clone(), for_connections.clone()));
                }
                // Out of file descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let drained = async { while connections.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, drained).await;
}

async fn connection(
    stream: tokio::net::TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<State>,
    stopped: watch::Receiver<bool>,
) {
    match tls {
        None => serve_http(TokioIo::new(stream), state, stopped).await,
        Some(acceptor) => {
            if let Ok(Ok(stream)) =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
            {
                serve_http(TokioIo::new(stream), state, stopped).await;
            }
        }
    }
}

async fn serve_http<I>(io: I, state: Arc<State>, mut stopped: watch::Receiver<bool>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle(&state, request).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = stopped.wait_for(|stop| *stop) => connection.as_mut().graceful_shutdown(),
    }
    let _ = connection.await;
}

async fn handle(state: &State, request: Request<Incoming>) -> Response<ResponseBody> {
    let response = route(state, &request).await;
    if state.access_log {
        log_access(&request, &response);
    }
    response
}

/// One line per request, on stderr: the supervised service's log file.
fn log_access(request: &Request<Incoming>, response: &Response<ResponseBody>) {
    let length = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let _ = writeln!(
        io::stderr().lock(),
        "registry: {} {} {} {length}",
        request.method(),
        request.uri(),
        response.status().as_u16()
    );
}

async fn route(state: &State, request: &Request<Incoming>) -> Response<ResponseBody> {
    let head = match *request.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => {
            let mut response = error(
                StatusCode::METHOD_NOT_ALLOWED,
                "UNSUPPORTED",
                "this registry is read-only: only GET and HEAD",
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
    };
    let path = request.uri().path();
    if path == "/v2" || path == "/v2/" {
        let mut response = json_response(StatusCode::OK, Bytes::from_static(b"{}"), head);
        response.headers_mut().insert(
            "Docker-Distribution-API-Version",
            HeaderValue::from_static("registry/2.0"),
        );
        return response;
    }
    let Some((name, kind, reference)) = split_api_path(path) else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such endpoint");
    };
    let ns = request.uri().query().and_then(|q| query_param(q, "ns"));
    let Some(repository) = resolve_repository(name, ns.as_deref()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "NAME_INVALID",
            &format!("invalid repository name `{name}`"),
        );
    };
    let range = request.headers().get(header::RANGE);
    let result = match kind {
        ApiKind::Manifests => manifest(state, &repository, reference, head).await,
        ApiKind::Blobs => blob(state, reference, range, head).await,
        ApiKind::Tags => Ok(tags(state, name, &repository, request.uri().query(), head)),
    };
    result.unwrap_or_else(|e| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN",
            &format!("failed to read from the layout: {e}"),
        )
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ApiKind {
    Manifests,
    Blobs,
    /// `tags/list`, which `skopeo inspect` asks for.
    Tags,
}

/// `/v2/<name>/manifests/<ref>`, `/v2/<name>/blobs/<digest>` or `/v2/<name>/tags/list`.
fn split_api_path(path: &str) -> Option<(&str, ApiKind, &str)> {
    let rest = path.strip_prefix("/v2/")?;
    let (before, reference) = rest.rsplit_once('/')?;
    let (name, kind) = before.rsplit_once('/')?;
    let kind = match kind {
        "manifests" => ApiKind::Manifests,
        "blobs" => ApiKind::Blobs,
        "tags" if reference == "list" => ApiKind::Tags,
        _ => return None,
    };
    (!name.is_empty() && !reference.is_empty()).then_some((name, kind, reference))
}

/// The full `registry/repository` a request names, checked like an image
/// reference so it can never reach outside the layout.
fn resolve_repository(name: &str, ns: Option<&str>) -> Option<String> {
    let full = match ns {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
        _ => {
            let first = name.split('/').next().unwrap_or_default();
            let is_host = first.contains('.') || first.contains(':') || first == "localhost";
            if is_host && name.contains('/') {
                name.to_string()
            } else {
                format!("docker.io/{name}")
            }
        }
    };
    // Only the host may carry a `:` (its port); a `:` or `@` later would be
    // read as a tag or digest.
    let (host, path) = full.split_once('/')?;
    if full.contains('@') || path.contains(':') || host.contains(['?', '#']) {
        return None;
    }
    let image = ImageRef::parse(&full).ok()?;
    Some(format!("{}/{}", image.registry(), image.repository()))
}

/// A query parameter's value, percent-decoded (Go escapes the `:` of a port).
fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| percent_decode(v))?
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`
fn is_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    tag.len() <= 128
        && tag.bytes().next().is_some_and(word)
        && tag.bytes().all(|b| word(b) || b == b'.' || b == b'-')
}

async fn manifest(
    state: &State,
    repository: &str,
    reference: &str,
    head: bool,
) -> io::Result<Response<ResponseBody>> {
    let index = state.index.current();
    let unknown = || {
        error(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            &format!("manifest `{repository}` `{reference}` is not in this bundle"),
        )
    };
    let digest = if reference.contains(':') {
        match reference.parse::<Digest>() {
            Ok(digest) => digest,
            Err(e) => {
                return Ok(error(
                    StatusCode::BAD_REQUEST,
                    "DIGEST_INVALID",
                    &e.to_string(),
                ))
            }
        }
    } else if !is_tag(reference) {
        return Ok(unknown());
    } else {
        match index.by_reference.get(&format!("{repository}:{reference}")) {
            Some(digest) => digest.clone(),
            None => return Ok(unknown()),
        }
    };
    let path = state.blob_path(&digest);
    let bytes = match tokio::fs::metadata(&path).await {
        Ok(meta) if meta.is_file() && meta.len() <= MAX_MANIFEST_BYTES => {
            tokio::fs::read(&path).await?
        }
        Ok(_) => return Ok(unknown()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(unknown()),
        Err(e) => return Err(e),
    };
    let Some(media_type) = manifest_media_type(&bytes, index.media_types.get(&digest)) else {
        return Ok(unknown());
    };
    let mut response = json_response(StatusCode::OK, Bytes::from(bytes), head);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&media_type).unwrap_or(HeaderValue::from_static(OCI_MANIFEST)),
    );
    headers.insert("Docker-Content-Digest", digest_header(&digest));
    Ok(response)
}

/// The media type of `bytes` if they are an image manifest or index: from
/// the document itself, else from its `index.json` entry, else its shape.
fn manifest_media_type(bytes: &[u8], listed: Option<&String>) -> Option<String> {
    let doc: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let own = doc["mediaType"].as_str();
    let known = [
        OCI_MANIFEST,
        OCI_INDEX,
        DOCKER_MANIFEST,
        DOCKER_MANIFEST_LIST,
    ];
    let is_manifest = listed.is_some()
        || own.is_some_and(|t| known.contains(&t))
        || (doc["schemaVersion"] == 2 && (doc["manifests"].is_array() || doc["layers"].is_array()));
    if !is_manifest {
        return None;
    }
    let shape = if doc["manifests"].is_array() {
        OCI_INDEX
    } else {
        OCI_MANIFEST
    };
    Some(
        own.map(str::to_string)
            .or_else(|| listed.cloned())
            .unwrap_or(shape.into()),
    )
}

async fn blob(
    state: &State,
    reference: &str,
    range: Option<&HeaderValue>,
    head: bool,
) -> io::Result<Response<ResponseBody>> {
    let digest = match reference.parse::<Digest>() {
        Ok(digest) => digest,
        Err(e) => {
            return Ok(error(
                StatusCode::BAD_REQUEST,
                "DIGEST_INVALID",
                &e.to_string(),
            ))
        }
    };
    let unknown = || {
        error(
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
            &format!("blob `{digest}` is not in this bundle"),
        )
    };
    let mut file = match tokio::fs::File::open(state.blob_path(&digest)).await {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(unknown()),
        Err(e) => return Err(e),
    };
    let meta = file.metadata().await?;
    if !meta.is_file() {
        return Ok(unknown());
    }
    let size = meta.len();
    let (status, start, len) =
        match range.map(|r| parse_range(r.to_str().unwrap_or_default(), size)) {
            None | Some(RangeRequest::Ignore) => (StatusCode::OK, 0, size),
            Some(RangeRequest::Bytes(start, end)) => {
                (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
            }
            Some(RangeRequest::Unsatisfiable) => {
                let mut response = error(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "RANGE_INVALID",
                    &format!("the range is outside the blob's {size} bytes"),
                );
                response.headers_mut().insert(
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&format!("bytes */{size}")).expect("ascii"),
                );
                return Ok(response);
            }
        };
    let body = if head || len == 0 {
        ResponseBody::Empty
    } else {
        if start > 0 {
            file.seek(SeekFrom::Start(start)).await?;
        }
        ResponseBody::File(FileBody {
            file,
            remaining: len,
            buffer: vec![0; CHUNK_BYTES].into_boxed_slice(),
        })
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert("Docker-Content-Digest", digest_header(&digest));
    if status == StatusCode::PARTIAL_CONTENT {
        let value = format!("bytes {start}-{}/{size}", start + len - 1);
        headers.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&value).expect("ascii"),
        );
    }
    Ok(response)
}

/// The repository's tags, sorted, paginated with `n` and `last` as the
/// distribution spec has it.
fn tags(
    state: &State,
    name: &str,
    repository: &str,
    query: Option<&str>,
    head: bool,
) -> Response<ResponseBody> {
    let index = state.index.current();
    let mut tags: Vec<&str> = index
        .by_reference
        .keys()
        .filter_map(|key| key.rsplit_once(':'))
        .filter(|(repo, _)| *repo == repository)
        .map(|(_, tag)| tag)
        .collect();
    if tags.is_empty() {
        return error(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            &format!("repository `{repository}` is not in this bundle"),
        );
    }
    tags.sort_unstable();
    let param = |key| query.and_then(|q| query_param(q, key));
    if let Some(last) = param("last") {
        tags.retain(|tag| *tag > last.as_str());
    }
    if let Some(n) = param("n").and_then(|n| n.parse().ok()) {
        tags.truncate(n);
    }
    let body = serde_json::json!({ "name": name, "tags": tags });
    json_response(StatusCode::OK, Bytes::from(body.to_string()), head)
}

/// What a `Range` header asks of a blob of a given size.
#[derive(Debug, PartialEq, Eq)]
enum RangeRequest {
    /// Send the whole blob: no single byte range we understand (RFC 9110
    /// lets a server ignore such a header).
    Ignore,
    /// Bytes `start..=end`, already clamped to the blob.
    Bytes(u64, u64),
    /// Nothing of the blob is in the range.
    Unsatisfiable,
}

/// `bytes=a-b`, `bytes=a-` and `bytes=-n`.
fn parse_range(value: &str, size: u64) -> RangeRequest {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeRequest::Ignore;
    };
    if spec.contains(',') {
        return RangeRequest::Ignore;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Ignore;
    };
    let number = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (first.is_empty(), number(first), number(last)) {
        // A suffix: the last n bytes.
        (true, _, Some(0)) => RangeRequest::Unsatisfiable,
        (true, _, Some(n)) if size > 0 => RangeRequest::Bytes(size.saturating_sub(n), size - 1),
        (true, _, Some(_)) => RangeRequest::Unsatisfiable,
        (false, Some(start), _) if start >= size => RangeRequest::Unsatisfiable,
        (false, Some(start), None) if last.is_empty() => RangeRequest::Bytes(start, size - 1),
        (false, Some(start), Some(end)) if end >= start => {
            RangeRequest::Bytes(start, end.min(size - 1))
        }
        _ => RangeRequest::Ignore,
    }
}

fn digest_header(digest: &Digest) -> HeaderValue {
    HeaderValue::from_str(&digest.to_string()).expect("a digest is ascii")
}

fn json_response(status: StatusCode, bytes: Bytes, head: bool) -> Response<ResponseBody> {
    let len = bytes.len();
    let body = if head {
        ResponseBody::Empty
    } else {
        ResponseBody::Full(Full::new(bytes))
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    response
}

/// An OCI distribution error response.
fn error(status: StatusCode, code: &str, message: &str) -> Response<ResponseBody> {
    let body = serde_json::json!({ "errors": [{ "code": code, "message": message }] });
    json_response(status, Bytes::from(body.to_string()), false)
}

/// A response body: small JSON documents in memory, blobs streamed from disk.
enum ResponseBody {
    Empty,
    Full(Full<Bytes>),
    File(FileBody),
}

/// A file's next `remaining` bytes, read a chunk at a time so a layer of any
/// size costs one buffer.
struct FileBody {
    file: tokio::fs::File,
    remaining: u64,
    buffer: Box<[u8]>,
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            ResponseBody::Empty => Poll::Ready(None),
            ResponseBody::Full(full) => Pin::new(full)
                .poll_frame(cx)
                .map_err(|never| match never {}),
            ResponseBody::File(body) => {
                if body.remaining == 0 {
                    return Poll::Ready(None);
                }
                let want = body
                    .buffer
                    .len()
                    .min(usize::try_from(body.remaining).unwrap_or(usize::MAX));
                let mut buf = ReadBuf::new(&mut body.buffer[..want]);
                ready!(Pin::new(&mut body.file).poll_read(cx, &mut buf))?;
                let read = buf.filled();
                if read.is_empty() {
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the blob file is shorter than it was when the response started",
                    ))));
                }
                body.remaining -= read.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(Bytes::copy_from_slice(read)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Empty => true,
            ResponseBody::Full(full) => full.is_end_stream(),
            ResponseBody::File(body) => body.remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Empty => SizeHint::with_exact(0),
            ResponseBody::Full(full) => full.size_hint(),
            ResponseBody::File(body) => SizeHint::with_exact(body.remaining),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_paths_split_at_the_last_two_components() {
        assert_eq!(
            split_api_path("/v2/library/nginx/manifests/1.25"),
            Some(("library/nginx", ApiKind::Manifests, "1.25"))
        );
        assert_eq!(
            split_api_path("/v2/example.com/a/blobs/blobs/sha256:x"),
            Some(("example.com/a/blobs", ApiKind::Blobs, "sha256:x"))
        );
        assert_eq!(
            split_api_path("/v2/nginx/tags/list"),
            Some(("nginx", ApiKind::Tags, "list"))
        );
        assert_eq!(split_api_path("/v2/nginx/tags/all"), None);
        assert_eq!(split_api_path("/v2/manifests/1"), None);
        assert_eq!(split_api_path("/v3/nginx/manifests/1"), None);
    }

    #[test]
    fn repositories_resolve_with_and_without_ns() {
        let r = |name, ns| resolve_repository(name, ns);
        assert_eq!(
            r("library/nginx", Some("docker.io")).as_deref(),
            Some("docker.io/library/nginx")
        );
        assert_eq!(
            r("nginx", Some("docker.io")).as_deref(),
            Some("docker.io/library/nginx")
        );
        assert_eq!(r("nginx", None).as_deref(), Some("docker.io/library/nginx"));
        assert_eq!(
            r("t/base", Some("example.com")).as_deref(),
            Some("example.com/t/base")
        );
        assert_eq!(
            r("example.com/t/base", None).as_deref(),
            Some("example.com/t/base")
        );
        assert_eq!(
            r("localhost:5000/a", None).as_deref(),
            Some("localhost:5000/a")
        );
        assert_eq!(
            r("a", Some("localhost:5000")).as_deref(),
            Some("localhost:5000/a")
        );
        assert_eq!(
            r("index.docker.io/library/nginx", None).as_deref(),
            Some("docker.io/library/nginx")
        );
        for bad in [
            "../etc",
            "a/../../b",
            "A",
            "a:1",
            "a@sha256:00",
            "a//b",
            "a/.",
            "%2e%2e/x",
        ] {
            assert_eq!(r(bad, None), None, "{bad}");
            assert_eq!(r(bad, Some("example.com")), None, "{bad}");
        }
        assert_eq!(r("a", Some("bad host")), None);
    }

    #[test]
    fn ns_is_percent_decoded() {
        assert_eq!(
            query_param("ns=localhost%3A5000", "ns").as_deref(),
            Some("localhost:5000")
        );
        assert_eq!(
            query_param("x=1&ns=docker.io", "ns").as_deref(),
            Some("docker.io")
        );
        assert_eq!(query_param("x=1", "ns"), None);
        assert_eq!(query_param("ns=%zz", "ns"), None);
    }

    #[test]
    fn ranges() {
        use RangeRequest::*;
        assert_eq!(parse_range("bytes=0-9", 100), Bytes(0, 9));
        assert_eq!(parse_range("bytes=10-", 100), Bytes(10, 99));
        assert_eq!(parse_range("bytes=90-200", 100), Bytes(90, 99));
        assert_eq!(parse_range("bytes=-10", 100), Bytes(90, 99));
        assert_eq!(parse_range("bytes=-1000", 100), Bytes(0, 99));
        assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=5-1", 100), Ignore);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Ignore);
        assert_eq!(parse_range("items=0-1", 100), Ignore);
        assert_eq!(parse_range("bytes=x-1", 100), Ignore);
    }

    #[test]
    fn manifests_are_told_from_other_blobs() {
        let oci = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#;
        assert_eq!(
            manifest_media_type(oci, None).as_deref(),
            Some(OCI_MANIFEST)
        );
        let bare_index = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert_eq!(
            manifest_media_type(bare_index, None).as_deref(),
            Some(OCI_INDEX)
        );
        let listed = DOCKER_MANIFEST.to_string();
        let bare = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        assert_eq!(
            manifest_media_type(bare, Some(&listed)).as_deref(),
            Some(DOCKER_MANIFEST)
        );
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        assert_eq!(manifest_media_type(config, None), None);
        assert_eq!(manifest_media_type(b"\x1f\x8b\x08", None), None);
    }

    #[test]
    fn index_entries_are_keyed_by_normalised_reference() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let doc = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [
                { "mediaType": OCI_MANIFEST, "digest": digest, "size": 1,
                  "annotations": { "io.containerd.image.name": "docker.io/library/nginx:1.25",
                                   "org.opencontainers.image.ref.name": "docker.io/library/nginx:1.25" } },
                { "mediaType": OCI_INDEX, "digest": "sha256:bad", "size": 1,
                  "annotations": { "io.containerd.image.name": "x:1" } },
                { "mediaType": OCI_INDEX, "digest": format!("sha256:{}", "b".repeat(64)), "size": 1,
                  "annotations": { "io.containerd.image.name": "example.com/a/b:2@sha256:".to_string() + &"b".repeat(64) } },
            ]
        });
        let index = Index::parse(Path::new("index.json"), doc.to_string().as_bytes()).unwrap();
        assert_eq!(
            index.by_reference["docker.io/library/nginx:1.25"].to_string(),
            digest
        );
        assert_eq!(
            index.media_types[&index.by_reference["example.com/a/b:2"]],
            OCI_INDEX
        );
        assert_eq!(index.by_reference.len(), 2);
        assert!(Index::parse(Path::new("index.json"), b"{}").is_err());
    }

    #[test]
    fn tags() {
        assert!(is_tag("1.25"));
        assert!(is_tag("_x-Y.z"));
        assert!(!is_tag(".x"));
        assert!(!is_tag("-x"));
        assert!(!is_tag(&"a".repeat(129)));
        assert!(!is_tag(""));
    }
}
