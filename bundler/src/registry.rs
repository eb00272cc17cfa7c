//! Images from registries through the OCI distribution API (oci-client):
//! anonymous, bearer-token and basic auth from the docker config (including
//! credential helpers); plain HTTP only for loopback and `--insecure-registry`.

use std::collections::BTreeSet;
use std::io::Write;

use futures_util::StreamExt;
use oci_client::client::{BlobResponse, ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use oci_spec::image::{ImageIndex, ImageManifest};
use tele_bundle::media_type as media;
use tele_manifests::ImageRef;

use crate::blob_store::BlobStore;
use crate::digest::Digest;
use crate::error::BuildError;
use crate::image::{self, Blob, Origin, Platform, ResolvedImage};

/// A registry client for one build.
pub struct Registries {
    client: Client,
    /// Hosts reached over plain HTTP.
    plain: Vec<String>,
    /// For the credentials check: no redirects, short timeouts.
    probe: reqwest::Client,
    /// For manifests, read with a bound (redirects followed; credentials are
    /// dropped on a redirect to another host).
    http: reqwest::Client,
    /// Registries whose token service was found fit for credentials.
    checked: tokio::sync::Mutex<BTreeSet<String>>,
}

/// Why credentials may not go where a registry's challenge sends them, if
/// they may not: a token service must use HTTPS, unless it is on this machine.
pub fn realm_refusal(realm: &str) -> Option<String> {
    match reqwest::Url::parse(realm) {
        Err(e) => Some(format!("its token service `{realm}` is not a URL ({e})")),
        Ok(url) if url.scheme() == "https" => None,
        Ok(url) if url.scheme() == "http" && url.host_str().is_some_and(is_loopback) => None,
        Ok(url) => Some(format!(
            "its token service {}://{} is not reached over HTTPS",
            url.scheme(),
            url.host_str().unwrap_or("")
        )),
    }
}

/// The `realm` of a `Bearer` challenge (`WWW-Authenticate: Bearer realm="...",service="..."`).
fn bearer_realm(challenge: &str) -> Option<String> {
    let (scheme, params) = challenge.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    params.split(',').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("realm")
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

/// True for hosts that only this machine can serve (plain HTTP is allowed there).
pub fn is_loopback(host: &str) -> bool {
    let name = host.rsplit_once(':').map_or(host, |(h, p)| {
        if p.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name == "localhost" || name.starts_with("127.") || name == "::1"
}

fn to_reference(r: &ImageRef) -> Reference {
    let registry = r.registry().to_string();
    let repo = r.repository().to_string();
    match (r.tag(), r.digest()) {
        (Some(t), Some(d)) => Reference::with_tag_and_digest(registry, repo, t.into(), d.into()),
        (None, Some(d)) => Reference::with_digest(registry, repo, d.into()),
        (t, None) => Reference::with_tag(registry, repo, t.unwrap_or("latest").into()),
    }
}

fn by_digest(r: &ImageRef, d: &Digest) -> Reference {
    Reference::with_digest(r.registry().into(), r.repository().into(), d.to_string())
}

/// Credentials for a registry host from the docker config, or anonymous.
fn credentials(host: &str) -> RegistryAuth {
    let candidates: Vec<&str> = if host == "docker.io" || host == "index.docker.io" {
        vec![
            "https://index.docker.io/v1/",
            "index.docker.io",
            "docker.io",
        ]
    } else {
        vec![host]
    };
    for c in candidates {
        match docker_credential::get_credential(c) {
            Ok(docker_credential::DockerCredential::UsernamePassword(u, p)) => {
                return RegistryAuth::Basic(u, p)
            }
            // Registries that hand out identity tokens (ACR, for one) accept them as the password.
            Ok(docker_credential::DockerCredential::IdentityToken(t)) => {
                return RegistryAuth::Basic("00000000-0000-0000-0000-000000000000".into(), t)
            }
            Err(_) => continue,
        }
    }
    RegistryAuth::Anonymous
}

fn registry_error(
    r: &ImageRef,
    what: &str,
    e: oci_client::errors::OciDistributionError,
) -> BuildError {
    use oci_client::errors::OciDistributionError as E;
    let text = short(&registry_words(&e));
    let lower = format!("{text} {e}").to_lowercase();
    let hint = match &e {
        E::AuthenticationFailure(_) | E::UnauthorizedError { .. } => Some(format!(
            "log in to {} (docker login writes ~/.docker/config.json, or configure a credential helper) and check the repository name",
            r.registry()
        )),
        E::DigestError(_) => Some(
            "the registry sent content that does not match its digest: the registry, or something between it and you, altered it; try another mirror".to_string(),
        ),
        E::ImageManifestNotFoundError(_) => Some(
            "check the image reference, or give the image locally with --image-source oci:PATH or docker-archive:PATH".to_string(),
        ),
        _ => None,
    };
    let hint = hint.unwrap_or_else(|| {
        if lower.contains("401") || lower.contains("403") || lower.contains("denied") || lower.contains("authoriz") {
            format!("log in to {} (docker login writes ~/.docker/config.json) and check the repository name", r.registry())
        } else if lower.contains("not found") || lower.contains("404") || lower.contains("unknown") {
            "check the image reference, or give the image locally with --image-source oci:PATH or docker-archive:PATH".to_string()
        } else if lower.contains("http") && lower.contains("https") || lower.contains("certificate") || lower.contains("tls") {
            format!("if {} serves plain HTTP, pass --insecure-registry {}", r.registry(), r.registry())
        } else {
            format!("check that {} is reachable from this machine, or build offline with --image-source", r.registry())
        }
    });
    BuildError::registry(format!("failed to {what} {r}: {text}"), hint)
}

/// What the registry said, in tele's words: its error codes and messages,
/// or the HTTP status, without the library's wrapping.
fn registry_words(e: &oci_client::errors::OciDistributionError) -> String {
    use oci_client::errors::OciDistributionError as E;
    match e {
        E::RegistryError { envelope, .. } => {
            let said: Vec<String> = envelope
                .errors
                .iter()
                .map(|o| {
                    // ManifestUnknown -> MANIFEST_UNKNOWN, as the specification spells it.
                    let mut code = String::new();
                    for (i, c) in format!("{:?}", o.code).chars().enumerate() {
                        if i > 0 && c.is_ascii_uppercase() {
                            code.push('_');
                        }
                        code.push(c.to_ascii_uppercase());
                    }
                    if o.message.is_empty() {
                        code
                    } else {
                        format!("{code} ({})", o.message)
                    }
                })
                .collect();
            format!("the registry answered {}", said.join(", "))
        }
        E::ServerError { code, message, .. } => {
            format!("the registry answered HTTP {code}: {message}")
        }
        E::UnauthorizedError { .. } => "the registry refused access (HTTP 401)".to_string(),
        E::ImageManifestNotFoundError(_) => "the registry has no such image".to_string(),
        E::RequestError(r) => {
            // The chain of causes (connection refused, DNS, TLS), not the URL.
            let mut words = vec![];
            let mut source = std::error::Error::source(r);
            while let Some(cause) = source {
                words.push(cause.to_string());
                source = cause.source();
            }
            match words.last() {
                Some(root) if root.contains("InvalidContentType") => {
                    "the registry does not speak HTTPS (the TLS handshake got something else: plain HTTP?)".to_string()
                }
                Some(root) => format!("cannot reach the registry: {root}"),
                None => format!("cannot reach the registry: {r}"),
            }
        }
        other => other.to_string(),
    }
}

/// At most 300 characters of text a registry sent, on one line.
fn short(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match one_line.char_indices().nth(300) {
        Some((at, _)) => format!("{}... ({} bytes in all)", &one_line[..at], text.len()),
        None => one_line,
    }
}

/// The most time a manifest may take, whole.
const MANIFEST_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);
/// The largest manifest read (real ones are a few KiB).
const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// The most of an error answer read (its error codes come first).
const MAX_ERROR_BYTES: u64 = 64 << 10;
/// A blob download that brings less than [`STALL_MIN_BYTES`] in a window
/// this long has stalled: 30 s, or `TELE_REGISTRY_STALL_SECONDS`.
fn stall_window() -> std::time::Duration {
    let secs = std::env::var("TELE_REGISTRY_STALL_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|s| *s > 0)
        .unwrap_or(30);
    std::time::Duration::from_secs(secs)
}
/// See [`stall_window`].
const STALL_MIN_BYTES: u64 = 16 << 10;

/// How long one blob request may take in all, however steadily it trickles:
/// 10 minutes plus 4 s per MiB (256 KiB/s on average), or
/// `TELE_REGISTRY_DEADLINE_SECONDS`.
fn blob_deadline(size: u64) -> std::time::Duration {
    let secs = std::env::var("TELE_REGISTRY_DEADLINE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|s| *s > 0)
        .unwrap_or_else(|| 600u64.saturating_add((size >> 20).saturating_mul(4)));
    std::time::Duration::from_secs(secs)
}

impl Registries {
    /// A client that speaks plain HTTP to loopback hosts among `hosts` and to `insecure`.
    pub fn new(hosts: &BTreeSet<String>, insecure: &[String]) -> Registries {
        let mut plain: Vec<String> = hosts.iter().filter(|h| is_loopback(h)).cloned().collect();
        plain.extend(insecure.iter().cloned());
        let config = ClientConfig {
            protocol: ClientProtocol::HttpsExcept(plain.clone()),
            platform_resolver: None,
            connect_timeout: Some(std::time::Duration::from_secs(15)),
            read_timeout: Some(std::time::Duration::from_secs(60)),
            ..Default::default()
        };
        let probe = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(std::time::Duration::from_secs(15))
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .expect("a plain reqwest client builds");
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(15))
            .read_timeout(std::time::Duration::from_secs(60))
            .build()
            .expect("a plain reqwest client builds");
        Registries {
            client: Client::new(config),
            plain,
            probe,
            http,
            checked: tokio::sync::Mutex::new(BTreeSet::new()),
        }
    }

    /// Before any credentials for `host` are used: asks the registry where it
    /// wants them (its `/v2/` challenge) and refuses a token service that is
    /// not reached over HTTPS (or on this machine). A `Basic` challenge keeps
    /// them with the registry itself.
    async fn check_token_service(&self, r: &ImageRef) -> Result<(), BuildError> {
        let host = r.registry();
        let mut checked = self.checked.lock().await;
        if checked.contains(host) {
            return Ok(());
        }
        let scheme = if self.plain.iter().any(|p| p == host) {
            "http"
        } else {
            "https"
        };
        let response = self
            .probe
            .get(format!("{scheme}://{host}/v2/"))
            .send()
            .await
            .map_err(|e| {
                BuildError::registry(
                    format!("cannot reach {host} to learn where its credentials go: {e}"),
                    format!("check the connection to {host}, its name, and any proxy settings"),
                )
            })?;
        let challenge = response
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if let Some(realm) = bearer_realm(challenge) {
            if let Some(why) = realm_refusal(&realm) {
                return Err(BuildError::registry(
                    format!("{host} asks for your credentials, but {why}: tele does not send them there"),
                    "the registry's token service must use HTTPS; fix its auth configuration, or give the image with --image-source oci:PATH",
                ));
            }
        }
        checked.insert(host.to_string());
        Ok(())
    }

    async fn manifest_bytes(
        &self,
        r: &ImageRef,
        reference: &Reference,
        auth: &RegistryAuth,
    ) -> Result<(Vec<u8>, Digest), BuildError> {
        let (bytes, digest) = tokio::time::timeout(
            MANIFEST_DEADLINE,
            self.pull_manifest_bounded(r, reference, auth),
        )
        .await
        .map_err(|_| {
            BuildError::registry(
                format!(
                    "the manifest of {r} did not arrive within {} s",
                    MANIFEST_DEADLINE.as_secs()
                ),
                format!(
                    "check the connection to {}; a registry that stalls is given up on",
                    r.registry()
                ),
            )
        })??;
        let actual = Digest::of_bytes(&bytes);
        if digest.parse::<Digest>().is_ok_and(|d| d != actual) {
            return Err(BuildError::registry(
                format!("manifest of {r} does not match its digest: registry said {digest}, content is {actual}"),
                "the registry or something between it and you altered the manifest; try again or use another mirror",
            ));
        }
        if let Some(want) = reference.digest() {
            if want != actual.to_string() {
                return Err(BuildError::registry(
                    format!("the manifest the registry sent for {r} is {actual}, not the {want} asked for"),
                    "the registry or something between it and you altered the manifest; use another mirror",
                ));
            }
        }
        Ok((bytes, actual))
    }

    /// Fetches a manifest, reading at most [`MAX_MANIFEST_BYTES`] of it (and
    /// [`MAX_ERROR_BYTES`] of an error answer) however much the registry
    /// sends; oci-client is asked only for the token. Returns the body and
    /// the digest the registry gave (empty when none).
    async fn pull_manifest_bounded(
        &self,
        r: &ImageRef,
        reference: &Reference,
        auth: &RegistryAuth,
    ) -> Result<(Vec<u8>, String), BuildError> {
        use oci_client::errors::{OciDistributionError as E, OciEnvelope};
        let fail = |e| registry_error(r, "fetch the manifest of", e);
        let token = self
            .client
            .auth(reference, auth, oci_client::RegistryOperation::Pull)
            .await
            .map_err(fail)?;
        let host = reference.resolve_registry();
        let scheme = if self.plain.iter().any(|p| p == host) {
            "http"
        } else {
            "https"
        };
        let target = reference.digest().or(reference.tag()).unwrap_or("latest");
        let url = format!(
            "{scheme}://{host}/v2/{}/manifests/{target}",
            reference.repository()
        );
        let mut request = self
            .http
            .get(&url)
            .header(reqwest::header::ACCEPT, media::ACCEPTED.join(", "));
        request = match (&token, auth) {
            (Some(t), _) => request.bearer_auth(t),
            (None, RegistryAuth::Basic(user, password)) => request.basic_auth(user, Some(password)),
            _ => request,
        };
        let mut response = request.send().await.map_err(|e| fail(E::RequestError(e)))?;
        let status = response.status();
        let digest = response
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let limit = if status.is_success() {
            MAX_MANIFEST_BYTES
        } else {
            MAX_ERROR_BYTES
        };
        let mut body = Vec::new();
        let mut over = false;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| fail(E::RequestError(e)))?
        {
            if body.len() as u64 + chunk.len() as u64 > limit {
                over = true;
                break;
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let e = match (
                status.as_u16(),
                serde_json::from_slice::<OciEnvelope>(&body),
            ) {
                (401, _) => E::UnauthorizedError { url },
                (_, Ok(envelope)) if !envelope.errors.is_empty() => {
                    E::RegistryError { envelope, url }
                }
                (404, _) => E::ImageManifestNotFoundError(url),
                (code, _) => E::ServerError {
                    code,
                    url,
                    message: String::from_utf8_lossy(&body).into_owned(),
                },
            };
            return Err(fail(e));
        }
        if over {
            return Err(BuildError::registry(
                format!(
                    "the manifest of {r} is more than the {} MiB any image manifest takes; stopped reading there",
                    MAX_MANIFEST_BYTES >> 20
                ),
                "the registry sends wrong content; use another mirror",
            ));
        }
        Ok((body, digest))
    }

    /// Resolves `r` to the blobs of its `platform` image; the manifests go into `store`.
    pub async fn resolve(
        &self,
        r: &ImageRef,
        platform: &Platform,
        store: &BlobStore,
    ) -> Result<ResolvedImage, BuildError> {
        let auth = credentials(r.registry());
        if !matches!(auth, RegistryAuth::Anonymous) {
            self.check_token_service(r).await?;
        }
        let (top_bytes, top_digest) = self.manifest_bytes(r, &to_reference(r), &auth).await?;
        if let Some(want) = r.digest() {
            if want != top_digest.to_string() {
                return Err(BuildError::registry(
                    format!("{r}: the registry returned content with digest {top_digest}"),
                    "the registry does not hold the pinned digest; check the reference",
                ));
            }
        }
        let put = |bytes: &[u8]| {
            store
                .put_bytes(bytes)
                .map_err(|e| BuildError::io(store.path(&Digest::of_bytes(bytes)), e))
        };
        put(&top_bytes)?;
        let top_type =
            image::declared_media_type(&top_bytes).unwrap_or_else(|| media::OCI_MANIFEST.into());
        let top_blob = Blob {
            digest: top_digest,
            size: top_bytes.len() as u64,
            media_type: top_type.clone(),
        };
        let (manifest_blob, manifest_bytes) = if media::is_index(&top_type) {
            let idx = ImageIndex::from_reader(&top_bytes[..]).map_err(|e| {
                BuildError::registry(
                    format!("{r}: the registry sent an index tele cannot read: {e}"),
                    "",
                )
            })?;
            let chosen = image::choose_platform(platform, &idx)
                .ok_or_else(|| crate::local_source::no_platform(r, platform, &idx))?;
            let m = image::descriptor_blob(chosen)
                .map_err(|e| BuildError::registry(format!("{r}: {e}"), ""))?;
            let (bytes, d) = self
                .manifest_bytes(r, &by_digest(r, &m.digest), &auth)
                .await?;
            if d != m.digest {
                return Err(BuildError::registry(
                    format!("{r}: manifest {} arrived with digest {d}", m.digest),
                    "try again; the registry sent wrong content",
                ));
            }
            put(&bytes)?;
            (m, bytes)
        } else {
            (top_blob.clone(), top_bytes)
        };
        let m = ImageManifest::from_reader(&manifest_bytes[..]).map_err(|e| {
            BuildError::registry(
                format!("{r}: the registry sent a manifest tele cannot read: {e}"),
                "",
            )
        })?;
        // The app's reference keeps its tag: pin to the index only when the app pinned one.
        let top = if r.digest().is_some() {
            top_blob
        } else {
            manifest_blob.clone()
        };
        let mut manifests = vec![top.clone()];
        if top != manifest_blob {
            manifests.push(manifest_blob);
        }
        Ok(ResolvedImage {
            reference: r.clone(),
            top,
            platform: platform.clone(),
            manifests,
            content: image::manifest_content(&m)
                .map_err(|e| BuildError::registry(format!("{r}: {e}"), ""))?,
            origin: Origin::Registry,
        })
    }

    /// Streams one blob into the store, verifying it; `progress` gets byte counts.
    pub async fn fetch_blob(
        &self,
        r: &ImageRef,
        blob: &Blob,
        store: &BlobStore,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<(), BuildError> {
        let reference = by_digest(r, &blob.digest);
        let digest = blob.digest.to_string();
        let mut last_err = None;
        for _attempt in 0..3 {
            // A ranged request for the whole blob: the store verifies the digest
            // itself, so the client need not hash it a second time.
            let length = (blob.size > 0).then_some(blob.size);
            let deadline = blob_deadline(blob.size);
            let deadline_at = tokio::time::Instant::now() + deadline;
            let too_late = || {
                BuildError::registry(
                    format!(
                        "blob {} of {r} did not arrive within {} s; nothing was stored",
                        blob.digest,
                        deadline.as_secs()
                    ),
                    format!(
                        "check the connection to {}; a larger TELE_REGISTRY_DEADLINE_SECONDS allows a slower one",
                        r.registry()
                    ),
                )
            };
            let request =
                self.client
                    .pull_blob_stream_partial(&reference, digest.as_str(), 0, length);
            let stream = match tokio::time::timeout_at(deadline_at, request)
                .await
                .map_err(|_| too_late())?
            {
                Ok(BlobResponse::Full(s) | BlobResponse::Partial(s)) => s,
                Err(e) => {
                    last_err = Some(registry_error(
                        r,
                        &format!("fetch blob {} of", blob.digest),
                        e,
                    ));
                    continue;
                }
            };
            let mut w = store
                .writer()
                .map_err(|e| BuildError::io(store.path(&blob.digest), e))?;
            let mut stream = stream.stream;
            let mut failed = None;
            // Progress is watched over windows of `stall`: a server that
            // sends less than STALL_MIN_BYTES in one is given up on.
            let stall = stall_window();
            let mut window_start = tokio::time::Instant::now();
            let mut window_bytes = 0u64;
            loop {
                if tokio::time::Instant::now() >= deadline_at {
                    return Err(too_late());
                }
                let left = stall
                    .saturating_sub(window_start.elapsed())
                    .min(deadline_at.saturating_duration_since(tokio::time::Instant::now()));
                let next = tokio::time::timeout(left, stream.next()).await;
                if window_start.elapsed() >= stall {
                    if window_bytes < STALL_MIN_BYTES {
                        failed = Some(format!(
                            "the registry stalled: less than {} KiB in {} s",
                            STALL_MIN_BYTES >> 10,
                            stall.as_secs()
                        ));
                        break;
                    }
                    window_start = tokio::time::Instant::now();
                    window_bytes = 0;
                }
                let chunk = match next {
                    Ok(Some(chunk)) => chunk,
                    Ok(None) => break,
                    // Nothing in this window yet: the check above judges it.
                    Err(_) => continue,
                };
                match chunk {
                    Ok(bytes) => {
                        // Never more than the descriptor declares.
                        if w.written() + bytes.len() as u64 > blob.size {
                            return Err(BuildError::registry(
                                format!(
                                    "blob {} of {r}: the registry sent more than the {} bytes its descriptor declares; stopped there, nothing was stored",
                                    blob.digest, blob.size
                                ),
                                "the registry sends wrong content; use another mirror",
                            ));
                        }
                        w.write_all(&bytes)
                            .map_err(|e| BuildError::io(store.path(&blob.digest), e))?;
                        window_bytes += bytes.len() as u64;
                        progress(bytes.len() as u64);
                    }
                    Err(e) => {
                        failed = Some(e.to_string());
                        break;
                    }
                }
            }
            if let Some(e) = failed {
                last_err = Some(BuildError::registry(
                    format!("download of blob {} of {r} broke off: {e}", blob.digest),
                    format!("check the connection to {}", r.registry()),
                ));
                continue;
            }
            return match w.commit(Some((&blob.digest, blob.size))) {
                Ok(_) => Ok(()),
                Err(crate::blob_store::IngestError::Io(e)) => Err(BuildError::io(store.path(&blob.digest), e)),
                Err(e) => Err(BuildError::registry(
                    format!("blob {} of {r} failed verification: {e}", blob.digest),
                    "the registry sent corrupt content; nothing was stored. Try again or use another mirror",
                )),
            };
        }
        Err(last_err.expect("at least one attempt"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_go_to_https_token_services_or_this_machine_only() {
        assert_eq!(
            bearer_realm(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io""#
            ),
            Some("https://auth.docker.io/token".to_string())
        );
        assert_eq!(bearer_realm(r#"Basic realm="registry""#), None);
        assert_eq!(realm_refusal("https://auth.example.com/token"), None);
        assert_eq!(realm_refusal("http://127.0.0.1:5000/token"), None);
        assert_eq!(realm_refusal("http://localhost/token"), None);
        assert!(realm_refusal("http://auth.example.com/token")
            .unwrap()
            .contains("not reached over HTTPS"));
        assert!(realm_refusal("ftp://x/").is_some());
        assert!(realm_refusal("not a url").is_some());
    }

    #[test]
    fn registry_errors_read_as_what_the_registry_said() {
        use oci_client::errors::{OciDistributionError as E, OciEnvelope};
        let envelope: OciEnvelope = serde_json::from_str(
            r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
        )
        .unwrap();
        let e = E::RegistryError {
            envelope,
            url: "https://r.example.com/v2/a/manifests/1".into(),
        };
        assert_eq!(
            registry_words(&e),
            "the registry answered MANIFEST_UNKNOWN (manifest unknown)"
        );
        let huge = "x".repeat(50 << 20);
        let e = E::ServerError {
            code: 500,
            url: "u".into(),
            message: huge,
        };
        let shown = short(&registry_words(&e));
        assert!(shown.len() < 400, "{}", shown.len());
        assert!(shown.starts_with("the registry answered HTTP 500: xxx"));
        assert!(shown.ends_with("bytes in all)"));
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        for h in [
            "localhost:5000",
            "127.0.0.1:5000",
            "127.0.0.1",
            "[::1]:5000",
            "localhost",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["docker.io", "registry.example.com:5000", "10.0.0.1:5000"] {
            assert!(!is_loopback(h), "{h}");
        }
    }
}
