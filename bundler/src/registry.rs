//! Images from registries through the OCI distribution API
//! ([`crate::distribution`]): anonymous, bearer-token and basic auth from
//! the docker config (including credential helpers); plain HTTP only for
//! loopback and `--insecure-registry`.

use std::collections::BTreeSet;
use std::io::Write;

use oci_spec::image::{ImageIndex, ImageManifest};
use tele_bundle::media_type as media;
use tele_manifests::ImageRef;

use crate::blob_store::BlobStore;
use crate::digest::Digest;
use crate::distribution::{read_bounded, Auth, Distribution, Failure};
use crate::error::BuildError;
use crate::image::{self, Blob, Origin, Platform, ResolvedImage};

pub use crate::distribution::{is_loopback, realm_refusal};

/// A registry client for one build.
pub struct Registries {
    client: Distribution,
}

/// Credentials for a registry host from the docker config, or anonymous.
fn credentials(host: &str) -> Auth {
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
            Ok(docker_credential::DockerCredential::UsernamePassword(user, password)) => {
                return Auth::Basic { user, password }
            }
            // Registries that hand out identity tokens (ACR, for one) accept them as the password.
            Ok(docker_credential::DockerCredential::IdentityToken(t)) => {
                return Auth::Basic {
                    user: "00000000-0000-0000-0000-000000000000".into(),
                    password: t,
                }
            }
            Err(_) => continue,
        }
    }
    Auth::Anonymous
}

/// The registry's host as requests name it (`docker.io` is served by `index.docker.io`).
fn host_of(r: &ImageRef) -> &str {
    match r.registry() {
        "docker.io" => "index.docker.io",
        h => h,
    }
}

fn registry_error(r: &ImageRef, what: &str, e: Failure) -> BuildError {
    let text = short(&e.words());
    let log_in = || {
        format!(
            "log in to {} (docker login writes ~/.docker/config.json, or configure a credential helper) and check the repository name",
            r.registry()
        )
    };
    let elsewhere = "check the image reference, or give the image locally with --image-source oci:PATH or docker-archive:PATH";
    let hint = match &e {
        Failure::Unauthorized => log_in(),
        Failure::RealmRefused(_) => {
            return BuildError::registry(
                text,
                "the registry's token service must use HTTPS; fix its auth configuration, or give the image with --image-source oci:PATH",
            )
        }
        Failure::TokenService(_) => format!(
            "check the token service of {} and your credentials for it",
            r.registry()
        ),
        Failure::NotFound => elsewhere.to_string(),
        Failure::Registry(codes)
            if codes.iter().any(|(c, _)| c == "DENIED" || c == "UNAUTHORIZED") =>
        {
            log_in()
        }
        Failure::Registry(codes) if codes.iter().any(|(c, _)| c.ends_with("_UNKNOWN") || c == "NOT_FOUND") => {
            elsewhere.to_string()
        }
        Failure::Status(403, _) => log_in(),
        Failure::Unreachable(_)
            if text.contains("HTTPS") || text.contains("certificate") || text.contains("tls") =>
        {
            format!(
                "if {} serves plain HTTP, pass --insecure-registry {}",
                r.registry(),
                r.registry()
            )
        }
        _ => format!(
            "check that {} is reachable from this machine, or build offline with --image-source",
            r.registry()
        ),
    };
    BuildError::registry(format!("failed to {what} {r}: {text}"), hint)
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
        Registries {
            client: Distribution::new(plain),
        }
    }

    async fn manifest_bytes(
        &self,
        r: &ImageRef,
        target: &str,
        auth: &Auth,
    ) -> Result<(Vec<u8>, Digest), BuildError> {
        let (bytes, digest) = tokio::time::timeout(
            MANIFEST_DEADLINE,
            self.pull_manifest_bounded(r, target, auth),
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
        if target.starts_with("sha256:") && target != actual.to_string() {
            return Err(BuildError::registry(
                format!("the manifest the registry sent for {r} is {actual}, not the {target} asked for"),
                "the registry or something between it and you altered the manifest; use another mirror",
            ));
        }
        Ok((bytes, actual))
    }

    /// Fetches the manifest `target` (a tag or a digest) of `r`'s
    /// repository, reading at most [`MAX_MANIFEST_BYTES`] of it (and
    /// [`crate::distribution::MAX_ERROR_BYTES`] of an error answer) however much the registry
    /// sends. Returns the body and the digest the registry gave (empty when none).
    async fn pull_manifest_bounded(
        &self,
        r: &ImageRef,
        target: &str,
        auth: &Auth,
    ) -> Result<(Vec<u8>, String), BuildError> {
        let fail = |e| registry_error(r, "fetch the manifest of", e);
        let accept = media::ACCEPTED.join(", ");
        let response = self
            .client
            .get(
                host_of(r),
                r.repository(),
                &format!("manifests/{target}"),
                Some(&accept),
                auth,
            )
            .await
            .map_err(fail)?;
        let digest = response
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let (body, over) = read_bounded(response, MAX_MANIFEST_BYTES)
            .await
            .map_err(fail)?;
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
        let target = r.digest().or(r.tag()).unwrap_or("latest");
        let (top_bytes, top_digest) = self.manifest_bytes(r, target, &auth).await?;
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
            let (bytes, d) = self.manifest_bytes(r, &m.digest.to_string(), &auth).await?;
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
        let auth = credentials(r.registry());
        let path = format!("blobs/{}", blob.digest);
        let mut last_err = None;
        for _attempt in 0..3 {
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
            let request = self
                .client
                .get(host_of(r), r.repository(), &path, None, &auth);
            let mut response = match tokio::time::timeout_at(deadline_at, request)
                .await
                .map_err(|_| too_late())?
            {
                Ok(response) => response,
                Err(e @ (Failure::Unreachable(_) | Failure::Status(500..=599, _))) => {
                    last_err = Some(registry_error(
                        r,
                        &format!("fetch blob {} of", blob.digest),
                        e,
                    ));
                    continue;
                }
                Err(e) => {
                    return Err(registry_error(
                        r,
                        &format!("fetch blob {} of", blob.digest),
                        e,
                    ))
                }
            };
            let mut w = store
                .writer()
                .map_err(|e| BuildError::io(store.path(&blob.digest), e))?;
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
                let next = tokio::time::timeout(left, response.chunk()).await;
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
                    Ok(Ok(Some(chunk))) => Ok(chunk),
                    Ok(Ok(None)) => break,
                    Ok(Err(e)) => Err(e),
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
    fn what_a_registry_said_is_shown_short() {
        let huge = "x".repeat(50 << 20);
        let shown = short(&Failure::Status(500, huge).words());
        assert!(shown.len() < 400, "{}", shown.len());
        assert!(shown.starts_with("the registry answered HTTP 500: xxx"));
        assert!(shown.ends_with("bytes in all)"));
    }

    #[test]
    fn a_refusal_to_send_credentials_says_where_and_why() {
        let r: ImageRef = "registry.example.com/shop/app:1".parse().unwrap();
        let e = registry_error(
            &r,
            "fetch the manifest of",
            Failure::RealmRefused("registry.example.com asks for your credentials, but its token service http://a is not reached over HTTPS: tele does not send them there".into()),
        );
        let text = e.to_string();
        assert!(
            text.starts_with("registry.example.com asks for your credentials"),
            "{text}"
        );
    }
}
