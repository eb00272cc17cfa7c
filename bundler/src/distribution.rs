//! The pull side of the OCI distribution API, spoken by tele itself so that
//! everything a registry or its token service sends is read with a bound:
//! the `/v2/` challenge, bearer tokens (one per repository, kept until they
//! expire), manifests and blobs. Credentials go only to the registry's own
//! host and to the token service its challenge names, and to that only over
//! HTTPS or on this machine ([`realm_refusal`]); the challenge that was
//! checked is the one used, and a later 401 that names another token service
//! is checked the same way. A redirect to another host (storage backends)
//! is followed without the credentials.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// No credentials.
    Anonymous,
    /// A user name and password (or identity token).
    Basic {
        /// The user name.
        user: String,
        /// The password; never shown.
        password: String,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Anonymous => f.write_str("Anonymous"),
            Auth::Basic { user, .. } => write!(f, "Basic({user}, [redacted])"),
        }
    }
}

/// What a registry asks for in its `WWW-Authenticate` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    /// Nothing: anonymous access.
    None,
    /// The credentials themselves, to the registry.
    Basic,
    /// A token from `realm` (for `service`).
    Bearer {
        /// The token service's URL.
        realm: String,
        /// The service the token is for.
        service: Option<String>,
    },
}

impl Challenge {
    /// Parses a `WWW-Authenticate` value: `Bearer realm="...",service="..."` or `Basic ...`.
    pub fn parse(header: &str) -> Challenge {
        let header = header.trim();
        let (scheme, params) = header.split_once(' ').unwrap_or((header, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Challenge::Basic;
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Challenge::None;
        }
        let param = |name: &str| {
            params.split(',').find_map(|p| {
                let (k, v) = p.trim().split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().trim_matches('"').to_string())
            })
        };
        match param("realm") {
            Some(realm) => Challenge::Bearer {
                realm,
                service: param("service"),
            },
            None => Challenge::None,
        }
    }
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

/// A request that did not give what was asked, in terms of what the
/// registry (or the way to it) did.
#[derive(Debug)]
pub enum Failure {
    /// The registry or its token service could not be reached.
    Unreachable(reqwest::Error),
    /// 401 even with the credentials there are (or with none).
    Unauthorized,
    /// Credentials would go to a token service that may not have them.
    RealmRefused(String),
    /// The token service refused or answered nonsense.
    TokenService(String),
    /// 404 with no error codes.
    NotFound,
    /// The registry's own error codes (`MANIFEST_UNKNOWN`, message).
    Registry(Vec<(String, String)>),
    /// Another status, with (the start of) the body.
    Status(u16, String),
}

impl Failure {
    /// What happened, in a line: the registry's codes, the HTTP status, the
    /// root cause of a connection failure; never a URL with its query.
    pub fn words(&self) -> String {
        match self {
            Failure::Unreachable(e) => {
                let mut root = None;
                let mut source = std::error::Error::source(e);
                while let Some(cause) = source {
                    root = Some(cause.to_string());
                    source = cause.source();
                }
                match root {
                    Some(r) if r.contains("InvalidContentType") => {
                        "the registry does not speak HTTPS (the TLS handshake got something else: plain HTTP?)".into()
                    }
                    Some(r) => format!("cannot reach the registry: {r}"),
                    None if e.is_timeout() => "cannot reach the registry: timed out".into(),
                    None => "cannot reach the registry".into(),
                }
            }
            Failure::Unauthorized => "the registry refused access (HTTP 401)".into(),
            Failure::RealmRefused(why) => why.clone(),
            Failure::TokenService(why) => format!("its token service {why}"),
            Failure::NotFound => "the registry has no such image".into(),
            Failure::Registry(codes) => {
                let said: Vec<String> = codes
                    .iter()
                    .map(|(code, message)| {
                        if message.is_empty() {
                            code.clone()
                        } else {
                            format!("{code} ({message})")
                        }
                    })
                    .collect();
                format!("the registry answered {}", said.join(", "))
            }
            Failure::Status(code, body) => format!("the registry answered HTTP {code}: {body}"),
        }
    }
}

/// The largest answer of a token service read (real ones hold a token of a
/// few KiB).
const MAX_TOKEN_BYTES: u64 = 64 << 10;
/// The most of an error answer read (its error codes come first).
pub const MAX_ERROR_BYTES: u64 = 64 << 10;
/// How long a token is used when the token service does not say: the
/// distribution specification's default.
const DEFAULT_TOKEN_SECONDS: u64 = 60;
/// A token is asked for again this long before it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(10);
/// The most time a challenge or a token may take, whole.
const AUTH_DEADLINE: Duration = Duration::from_secs(30);

struct Token {
    header: HeaderValue,
    until: Instant,
}

/// The client of one build.
pub struct Distribution {
    /// Hosts reached over plain HTTP.
    plain: Vec<String>,
    /// For challenges and tokens: no redirects, a deadline.
    probe: reqwest::Client,
    /// For manifests and blobs (redirects followed; credentials are dropped
    /// on a redirect to another host).
    http: reqwest::Client,
    challenges: tokio::sync::Mutex<HashMap<String, Challenge>>,
    tokens: tokio::sync::Mutex<HashMap<(String, String), Token>>,
}

impl Distribution {
    /// A client that speaks plain HTTP to the hosts in `plain` and HTTPS to the rest.
    pub fn new(plain: Vec<String>) -> Distribution {
        let probe = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(15))
            .timeout(AUTH_DEADLINE)
            .build()
            .expect("a plain reqwest client builds");
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(Duration::from_secs(60))
            .build()
            .expect("a plain reqwest client builds");
        Distribution {
            plain,
            probe,
            http,
            challenges: Default::default(),
            tokens: Default::default(),
        }
    }

    fn scheme(&self, host: &str) -> &'static str {
        if self.plain.iter().any(|p| p == host) {
            "http"
        } else {
            "https"
        }
    }

    /// The registry's challenge, asked once per host.
    async fn challenge(&self, host: &str) -> Result<Challenge, Failure> {
        if let Some(c) = self.challenges.lock().await.get(host) {
            return Ok(c.clone());
        }
        let url = format!("{}://{host}/v2/", self.scheme(host));
        let response = self
            .probe
            .get(url)
            .send()
            .await
            .map_err(Failure::Unreachable)?;
        let challenge = match response.headers().get(WWW_AUTHENTICATE) {
            Some(v) if response.status() == 401 => Challenge::parse(v.to_str().unwrap_or("")),
            _ => Challenge::None,
        };
        self.challenges
            .lock()
            .await
            .insert(host.to_string(), challenge.clone());
        Ok(challenge)
    }

    /// The `Authorization` header for pulling from `repository` on `host`, if any.
    async fn authorization(
        &self,
        host: &str,
        repository: &str,
        auth: &Auth,
    ) -> Result<Option<HeaderValue>, Failure> {
        match self.challenge(host).await? {
            Challenge::None => Ok(None),
            Challenge::Basic => Ok(basic(auth)),
            Challenge::Bearer { realm, service } => {
                let key = (host.to_string(), repository.to_string());
                if let Some(t) = self.tokens.lock().await.get(&key) {
                    if Instant::now() + TOKEN_MARGIN < t.until {
                        return Ok(Some(t.header.clone()));
                    }
                }
                if *auth != Auth::Anonymous {
                    if let Some(why) = realm_refusal(&realm) {
                        return Err(Failure::RealmRefused(format!(
                            "{host} asks for your credentials, but {why}: tele does not send them there"
                        )));
                    }
                }
                let token = self
                    .token(&realm, service.as_deref(), repository, auth)
                    .await?;
                let header = token.header.clone();
                self.tokens.lock().await.insert(key, token);
                Ok(Some(header))
            }
        }
    }

    /// Asks the token service at `realm` for a pull token of `repository`.
    async fn token(
        &self,
        realm: &str,
        service: Option<&str>,
        repository: &str,
        auth: &Auth,
    ) -> Result<Token, Failure> {
        let scope = format!("repository:{repository}:pull");
        let mut params = vec![("scope", scope.as_str())];
        if let Some(s) = service {
            params.push(("service", s));
        }
        let url = reqwest::Url::parse_with_params(realm, &params)
            .map_err(|e| Failure::TokenService(format!("`{realm}` is not a URL ({e})")))?;
        let mut request = self.probe.get(url);
        if let Some(h) = basic(auth) {
            request = request.header(AUTHORIZATION, h);
        }
        let response = request.send().await.map_err(Failure::Unreachable)?;
        let status = response.status();
        let (body, over) = read_bounded(response, MAX_TOKEN_BYTES).await?;
        if status == 401 || status == 403 {
            return Err(Failure::Unauthorized);
        }
        if !status.is_success() {
            return Err(Failure::TokenService(format!(
                "answered HTTP {}",
                status.as_u16()
            )));
        }
        if over {
            return Err(Failure::TokenService(format!(
                "sent more than the {} KiB a token takes",
                MAX_TOKEN_BYTES >> 10
            )));
        }
        #[derive(serde::Deserialize)]
        struct Answer {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let answer: Answer = serde_json::from_slice(&body)
            .map_err(|e| Failure::TokenService(format!("sent no token ({e})")))?;
        let token = answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Failure::TokenService("sent no token".into()))?;
        let mut header = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| Failure::TokenService("sent a token that is not header text".into()))?;
        header.set_sensitive(true);
        let seconds = answer.expires_in.unwrap_or(DEFAULT_TOKEN_SECONDS).max(1);
        Ok(Token {
            header,
            until: Instant::now() + Duration::from_secs(seconds.min(24 * 3600)),
        })
    }

    /// GETs `/v2/REPOSITORY/KIND/TARGET` with the credentials it needs; on a
    /// 401 whose challenge differs from the one known (another token
    /// service, a new scope), asks once more with a token of that one.
    /// A successful answer is returned for the caller to read; a failed one
    /// is read (at most [`MAX_ERROR_BYTES`]) into a [`Failure`].
    pub async fn get(
        &self,
        host: &str,
        repository: &str,
        path: &str,
        accept: Option<&str>,
        auth: &Auth,
    ) -> Result<reqwest::Response, Failure> {
        let url = format!("{}://{host}/v2/{repository}/{path}", self.scheme(host));
        let mut retried = false;
        loop {
            let mut request = self.http.get(&url);
            if let Some(a) = accept {
                request = request.header(ACCEPT, a);
            }
            if let Some(h) = self.authorization(host, repository, auth).await? {
                request = request.header(AUTHORIZATION, h);
            }
            let response = request.send().await.map_err(Failure::Unreachable)?;
            let status = response.status();
            if status.is_success() {
                return Ok(response);
            }
            if status == 401 && !retried {
                retried = true;
                let now = response
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .map(|v| Challenge::parse(v.to_str().unwrap_or("")))
                    .unwrap_or(Challenge::None);
                // A token that expired early, or a new challenge: ask again.
                self.tokens
                    .lock()
                    .await
                    .remove(&(host.to_string(), repository.to_string()));
                if now != Challenge::None {
                    self.challenges.lock().await.insert(host.to_string(), now);
                }
                continue;
            }
            let (body, _) = read_bounded(response, MAX_ERROR_BYTES).await?;
            return Err(failure_of(status.as_u16(), &body));
        }
    }
}

fn basic(auth: &Auth) -> Option<HeaderValue> {
    use base64::Engine;
    let Auth::Basic { user, password } = auth else {
        return None;
    };
    let raw = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut h = HeaderValue::from_str(&format!("Basic {raw}")).ok()?;
    h.set_sensitive(true);
    Some(h)
}

/// At most `limit` bytes of an answer's body, and whether there was more.
pub async fn read_bounded(
    mut response: reqwest::Response,
    limit: u64,
) -> Result<(Vec<u8>, bool), Failure> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(Failure::Unreachable)? {
        if body.len() as u64 + chunk.len() as u64 > limit {
            let room = (limit as usize).saturating_sub(body.len());
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

/// The failure an error answer tells of: the registry's error codes when it
/// sent them (the distribution specification's envelope), else the status.
pub fn failure_of(status: u16, body: &[u8]) -> Failure {
    #[derive(serde::Deserialize)]
    struct Envelope {
        #[serde(default)]
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let codes: Vec<(String, String)> = serde_json::from_slice::<Envelope>(body)
        .map(|e| {
            e.errors
                .into_iter()
                .filter(|e| !e.code.is_empty())
                .map(|e| (e.code, e.message))
                .collect()
        })
        .unwrap_or_default();
    match status {
        401 => Failure::Unauthorized,
        _ if !codes.is_empty() => Failure::Registry(codes),
        404 => Failure::NotFound,
        code => Failure::Status(code, String::from_utf8_lossy(body).into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_read_as_registries_send_them() {
        assert_eq!(
            Challenge::parse(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io""#
            ),
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into())
            }
        );
        assert_eq!(
            Challenge::parse(r#"Basic realm="registry""#),
            Challenge::Basic
        );
        assert_eq!(Challenge::parse("Bearer service=\"x\""), Challenge::None);
        assert_eq!(Challenge::parse(""), Challenge::None);
    }

    #[test]
    fn credentials_go_to_https_token_services_or_this_machine_only() {
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
    fn error_answers_read_as_what_the_registry_said() {
        let f = failure_of(
            404,
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
        );
        assert_eq!(
            f.words(),
            "the registry answered MANIFEST_UNKNOWN (manifest unknown)"
        );
        assert!(matches!(failure_of(404, b"nope"), Failure::NotFound));
        assert!(matches!(failure_of(401, b"{}"), Failure::Unauthorized));
        assert_eq!(
            failure_of(500, b"boom").words(),
            "the registry answered HTTP 500: boom"
        );
    }

    #[test]
    fn credentials_are_not_shown() {
        let a = Auth::Basic {
            user: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{a:?}").contains("hunter2"));
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
