//! Container image references, normalised the way Docker and containerd do
//! (`distribution/reference.ParseNormalizedNamed`).

use std::fmt;
use std::str::FromStr;

const DEFAULT_REGISTRY: &str = "docker.io";
const LEGACY_REGISTRY: &str = "index.docker.io";
const OFFICIAL_NAMESPACE: &str = "library";
const DEFAULT_TAG: &str = "latest";
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A fully qualified image reference: registry, repository, and a tag and/or digest.
///
/// Parsing fills in what Docker would: `nginx` is `docker.io/library/nginx:latest`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference `{input}`: {reason}")]
pub struct ImageRefError {
    /// The string that was parsed.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
    /// How to fix it, when we can tell.
    pub hint: Option<String>,
}

impl ImageRef {
    /// Parses and normalises `s`.
    ///
    /// ```
    /// use tele_manifests::ImageRef;
    /// let image = ImageRef::parse("nginx").unwrap();
    /// assert_eq!(image.to_string(), "docker.io/library/nginx:latest");
    /// ```
    pub fn parse(s: &str) -> Result<ImageRef, ImageRefError> {
        let fail = |reason: &str, hint: Option<&str>| ImageRefError {
            input: s.to_string(),
            reason: reason.to_string(),
            hint: hint.map(str::to_string),
        };
        if s.is_empty() {
            return Err(fail("the reference is empty", None));
        }
        if s.trim() != s || s.contains(char::is_whitespace) {
            return Err(fail("the reference contains whitespace", None));
        }
        if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(fail(
                "a bare 64-character hex string is an image ID, not a reference",
                Some("write `name@sha256:<hex>` to pin by digest"),
            ));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, digest)) => {
                check_digest(digest).map_err(|(reason, hint)| fail(&reason, hint))?;
                (rest, Some(digest.to_string()))
            }
            None => (s, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                let tag = &rest[at + 1..];
                check_tag(tag).map_err(|reason| {
                    fail(
                        &reason,
                        Some("a tag is up to 128 letters, digits, `_`, `.` or `-`, not starting with `.` or `-`"),
                    )
                })?;
                (&rest[..at], Some(tag.to_string()))
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(fail("the repository name is empty", None));
        }
        let (registry, repository) = split_registry(name);
        if let Some(registry) = registry {
            check_registry(registry).map_err(|reason| fail(&reason, None))?;
        }
        let mut registry = registry.unwrap_or(DEFAULT_REGISTRY).to_string();
        if registry == LEGACY_REGISTRY {
            registry = DEFAULT_REGISTRY.to_string();
        }
        let mut repository = repository.to_string();
        if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            repository = format!("{OFFICIAL_NAMESPACE}/{repository}");
        }
        if repository.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(fail(
                "repository names must be lowercase",
                Some(&format!(
                    "write `{}`",
                    s.replace(name, &name.to_lowercase())
                )),
            ));
        }
        check_repository(&repository).map_err(|reason| {
            fail(
                &reason,
                Some("path components are lowercase letters and digits, separated by `.`, `_`, `__` or `-`"),
            )
        })?;
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(fail(
                "the repository name is longer than 255 characters",
                None,
            ));
        }
        let tag = match (&tag, &digest) {
            (None, None) => Some(DEFAULT_TAG.to_string()),
            _ => tag,
        };
        Ok(ImageRef {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The registry host (and port), e.g. `docker.io` or `localhost:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry, e.g. `library/nginx`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if any (`latest` when neither tag nor digest was given).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest (`algorithm:hex`), if any.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The same image pinned to `digest`, keeping the tag for readability.
    pub fn with_digest(&self, digest: &str) -> ImageRef {
        ImageRef {
            digest: Some(digest.to_string()),
            ..self.clone()
        }
    }
}

/// Splits off the registry using Docker's rule: the first component is a
/// registry only if it looks like a host (has `.` or `:`, or is `localhost`).
fn split_registry(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

fn check_registry(registry: &str) -> Result<(), String> {
    let (host, port) = match registry.rsplit_once(':') {
        Some((host, port)) if !registry.starts_with('[') || host.ends_with(']') => {
            (host, Some(port))
        }
        _ => (registry, None),
    };
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("registry port `{port}` is not a number"));
        }
    }
    if host.starts_with('[') && host.ends_with(']') {
        let inner = &host[1..host.len() - 1];
        if !inner.is_empty() && inner.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return Ok(());
        }
        return Err(format!("registry `{registry}` is not a valid IPv6 address"));
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if host.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(format!("registry `{registry}` is not a valid host name"))
    }
}

fn check_repository(repository: &str) -> Result<(), String> {
    for component in repository.split('/') {
        if !is_path_component(component) {
            return Err(format!(
                "repository path component `{component}` is not valid"
            ));
        }
    }
    Ok(())
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn is_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let dashes = separator.bytes().all(|b| b == b'-');
        if !(separator == "." || separator == "_" || separator == "__" || dashes) {
            return false;
        }
    }
    true
}

/// `[\w][\w.-]{0,127}`
fn check_tag(tag: &str) -> Result<(), String> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut chars = tag.chars();
    match chars.next() {
        None => return Err("the tag after `:` is empty".to_string()),
        Some(first) if !word(first) => {
            return Err(format!(
                "tag `{tag}` must start with a letter, digit or `_`"
            ))
        }
        Some(_) => {}
    }
    if tag.len() > MAX_TAG_LEN {
        return Err(format!("tag `{tag}` is longer than 128 characters"));
    }
    if let Some(bad) = chars.find(|&c| !(word(c) || c == '.' || c == '-')) {
        return Err(format!("tag `{tag}` contains `{bad}`"));
    }
    Ok(())
}

fn check_digest(digest: &str) -> Result<(), (String, Option<&'static str>)> {
    const HINT: &str = "a digest looks like `sha256:` followed by 64 lowercase hex digits";
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err((format!("digest `{digest}` has no algorithm"), Some(HINT)));
    };
    let algorithm_ok = algorithm.split(['-', '_', '+', '.']).all(|part| {
        part.starts_with(|c: char| c.is_ascii_alphabetic())
            && part.chars().all(|c| c.is_ascii_alphanumeric())
    });
    if !algorithm_ok {
        return Err((
            format!("digest algorithm `{algorithm}` is not valid"),
            Some(HINT),
        ));
    }
    let is_lower_hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let ok = match algorithm {
        "sha256" => hex.len() == 64 && is_lower_hex(hex),
        "sha384" => hex.len() == 96 && is_lower_hex(hex),
        "sha512" => hex.len() == 128 && is_lower_hex(hex),
        _ => hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
    };
    if ok {
        Ok(())
    } else {
        Err((format!("digest `{digest}` is not valid"), Some(HINT)))
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl FromStr for ImageRef {
    type Err = ImageRefError;

    fn from_str(s: &str) -> Result<ImageRef, ImageRefError> {
        ImageRef::parse(s)
    }
}

impl serde::Serialize for ImageRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ImageRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<ImageRef, D::Error> {
        let s = String::deserialize(deserializer)?;
        ImageRef::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn normalises_like_docker() {
        let digest = format!("sha256:{HEX}");
        let cases = [
            ("nginx", "docker.io/library/nginx:latest"),
            ("library/nginx", "docker.io/library/nginx:latest"),
            ("nginx:1.25", "docker.io/library/nginx:1.25"),
            ("user/app", "docker.io/user/app:latest"),
            ("quay.io/x/y:1", "quay.io/x/y:1"),
            ("localhost/a", "localhost/a:latest"),
            ("localhost:5000/a", "localhost:5000/a:latest"),
            ("host:5000/a/b:t", "host:5000/a/b:t"),
            ("index.docker.io/x", "docker.io/library/x:latest"),
            ("index.docker.io/x/y", "docker.io/x/y:latest"),
            ("docker.io/nginx", "docker.io/library/nginx:latest"),
            (
                "gcr.io/a_b/c__d/e-f--g.h:v1.2-rc_3",
                "gcr.io/a_b/c__d/e-f--g.h:v1.2-rc_3",
            ),
            ("[::1]:5000/a", "[::1]:5000/a:latest"),
        ];
        for (input, want) in cases {
            let got = ImageRef::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(got.to_string(), want, "{input}");
        }
        let pinned = ImageRef::parse(&format!("nginx@{digest}")).unwrap();
        assert_eq!(
            pinned.to_string(),
            format!("docker.io/library/nginx@{digest}")
        );
        assert_eq!(pinned.tag(), None);
        let both = ImageRef::parse(&format!("nginx:1.25@{digest}")).unwrap();
        assert_eq!(
            both.to_string(),
            format!("docker.io/library/nginx:1.25@{digest}")
        );
        assert_eq!(both.tag(), Some("1.25"));
        assert_eq!(both.digest(), Some(digest.as_str()));
        assert_eq!(both.registry(), "docker.io");
        assert_eq!(both.repository(), "library/nginx");
    }

    #[test]
    fn with_digest_keeps_tag() {
        let image = ImageRef::parse("host:5000/a/b:t").unwrap();
        let pinned = image.with_digest(&format!("sha256:{HEX}"));
        assert_eq!(pinned.to_string(), format!("host:5000/a/b:t@sha256:{HEX}"));
    }

    #[test]
    fn rejects_bad_references_with_reasons() {
        let err = ImageRef::parse("User/App:1").unwrap_err();
        assert_eq!(err.reason, "repository names must be lowercase");
        assert_eq!(err.hint.as_deref(), Some("write `user/app:1`"));

        let err = ImageRef::parse("nginx@sha256:abc").unwrap_err();
        assert_eq!(err.reason, "digest `sha256:abc` is not valid");
        assert!(err.hint.is_some());
        assert!(ImageRef::parse(&format!("nginx@sha256:{}", HEX.to_uppercase())).is_err());
        assert!(ImageRef::parse(&format!("nginx@{HEX}")).is_err());

        for bad in [
            "",
            "nginx:",
            "nginx:-x",
            "a//b",
            "-a/b",
            "nginx:a b",
            HEX,
            "host:x/a",
            "a/b_",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(
            ImageRef::parse("nginx:").unwrap_err().to_string(),
            "invalid image reference `nginx:`: the tag after `:` is empty"
        );
    }

    #[test]
    fn orders_and_round_trips_through_serde() {
        let a = ImageRef::parse("alpine").unwrap();
        let b = ImageRef::parse("busybox").unwrap();
        assert!(a < b);
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, "\"docker.io/library/alpine:latest\"");
        let back: ImageRef = serde_json::from_str(&json).unwrap();
        assert_eq!(back, a);
        assert!(serde_json::from_str::<ImageRef>("\"Bad\"").is_err());
        assert_eq!("alpine".parse::<ImageRef>().unwrap(), a);
    }
}
