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
//!     client_ca: None,
//!     max_connections: 256,
//! })
//! .unwrap();
//! println!("serving on {}", handle.addr());
//! handle.shutdown();
//! ```
//!
//! Set `TELE_REGISTRY_ACCESS_LOG=1` for one line per request on stderr.
//!
//! Bounded: at most `max_connections` connections at once (more are closed
//! as they come, so a flood of idle clients cannot hold the memory of
//! thousands), a TLS handshake must end within 10 s and a request's headers
//! arrive within 30 s. With a client CA, only clients with a certificate it
//! signed get past the handshake (the node's containerd).

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
use tele_bundle::digest::Digest;
use tele_manifests::ImageRef;
use tokio::io::{AsyncRead, AsyncSeekExt, ReadBuf};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Manifests are read whole; anything bigger is not one.
const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// Blob bodies are sent in chunks of this size.
pub(crate) const CHUNK_BYTES: usize = 256 << 10;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The default bound on connections served at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 128;
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long in-flight requests may run on after shutdown is asked for.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
const ACCESS_LOG_ENV: &str = "TELE_REGISTRY_ACCESS_LOG";

use tele_bundle::media_type::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};

/// What to serve and where.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// The OCI image layout (the extracted bundle's `images/`).
    pub layout: PathBuf,
    /// The address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Serve HTTPS with these files; plain HTTP when `None`.
    pub tls: Option<TlsFiles>,
    /// With TLS: require a client certificate signed by this CA (PEM).
    pub client_ca: Option<PathBuf>,
    /// Connections served at once; more are closed as they come.
    pub max_connections: usize,
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
    let tls = config
        .tls
        .as_ref()
        .map(|files| match &config.client_ca {
            Some(ca) => tls_acceptor_requiring_clients(files, ca),
            None => tls_acceptor(files),
        })
        .transpose()?;
    let max_connections = config.max_connections.max(1);
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
            runtime.block_on(serve(listener, tls, state, stopped, max_connections));
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
        tele_bundle::oci_layout::blob_path(&self.layout, digest)
    }
}

mod api;
pub(crate) mod body;
mod index;

use api::*;
use body::*;
use index::*;

/// A TLS acceptor for a certificate and key in PEM files (also used by the join service).
pub(crate) fn tls_acceptor(files: &TlsFiles) -> Result<tokio_rustls::TlsAcceptor, RegistryError> {
    tls_acceptor_with_clients(files, None)
}

/// [`tls_acceptor`] that lets in only clients with a certificate that
/// `client_ca` (a PEM file) signed.
pub(crate) fn tls_acceptor_requiring_clients(
    files: &TlsFiles,
    client_ca: &Path,
) -> Result<tokio_rustls::TlsAcceptor, RegistryError> {
    tls_acceptor_for(files, Some((client_ca, true)))
}

/// [`tls_acceptor`] that also asks clients for a certificate and, when one
/// is shown, accepts it only if `client_ca` (a PEM file) signed it. Clients
/// without one are still served: what they may do is the server's to judge.
pub(crate) fn tls_acceptor_with_clients(
    files: &TlsFiles,
    client_ca: Option<&Path>,
) -> Result<tokio_rustls::TlsAcceptor, RegistryError> {
    tls_acceptor_for(files, client_ca.map(|ca| (ca, false)))
}

/// The acceptor; `clients`: the CA client certificates are checked against,
/// and whether one is required.
fn tls_acceptor_for(
    files: &TlsFiles,
    clients: Option<(&Path, bool)>,
) -> Result<tokio_rustls::TlsAcceptor, RegistryError> {
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
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?;
    let builder = match clients {
        None => builder.with_no_client_auth(),
        Some((ca, required)) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| fail(format!("client CA: {e}")))?
            {
                roots
                    .add(cert)
                    .map_err(|e| fail(format!("client CA: {e}")))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            let verifier = if required {
                verifier
            } else {
                verifier.allow_unauthenticated()
            }
            .build()
            .map_err(|e| fail(format!("client CA: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
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
    max_connections: usize,
) {
    let mut connections = JoinSet::new();
    let for_connections = stopped.clone();
    loop {
        tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => break,
            accepted = listener.accept() => match accepted {
                // Full: closed at once, so idle clients cannot pile up;
                // a real client retries and gets in as others finish.
                Ok(_) if connections.len() >= max_connections => {}
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
