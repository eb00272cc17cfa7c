//! A small client of AWS's query APIs (EC2, classic ELB, IAM, STS): each
//! request is a form-encoded POST signed with Signature Version 4
//! (`aws-sigv4`), each answer an XML document read with a bound on its size
//! and the request's time. Endpoints may be overridden as the SDKs'
//! `AWS_ENDPOINT_URL*` settings say, credentials come from the SDKs' chain: the environment, the shared credentials file, then the
//! instance profile through IMDSv2. Credentials are never printed: their
//! `Debug` form hides the secret and the session token.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::time::{Duration, SystemTime};

use super::Timeouts;
use crate::health::error_chain as chain;

/// The largest answer read from an AWS API.
const MAX_ANSWER: u64 = 4 << 20;
/// How long a request to an AWS API may take, answer included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// An AWS API this client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// Elastic Compute Cloud.
    Ec2,
    /// Elastic Load Balancing, classic load balancers (what the Kubernetes
    /// 1.20 AWS provider makes for a LoadBalancer Service).
    Elb,
    /// Identity and Access Management.
    Iam,
    /// Security Token Service.
    Sts,
}

impl Service {
    /// The name requests are signed for, and IAM's prefix of its actions.
    pub fn signing_name(self) -> &'static str {
        match self {
            Service::Ec2 => "ec2",
            Service::Elb => "elasticloadbalancing",
            Service::Iam => "iam",
            Service::Sts => "sts",
        }
    }

    /// The API version the requests are written for.
    fn version(self) -> &'static str {
        match self {
            Service::Ec2 => "2016-11-15",
            Service::Elb => "2012-06-01",
            Service::Iam => "2010-05-08",
            Service::Sts => "2011-06-15",
        }
    }

    /// The service's endpoint in `region`, unless `overrides` (by
    /// [`Self::signing_name`]) names another one.
    fn endpoint(self, region: &str, overrides: &BTreeMap<String, String>) -> String {
        if let Some(url) = overrides.get(self.signing_name()) {
            return url.clone();
        }
        match self {
            Service::Iam => "https://iam.amazonaws.com".into(),
            s => format!("https://{}.{region}.amazonaws.com", s.signing_name()),
        }
    }

    /// The region requests are signed for: IAM is global, signed for
    /// us-east-1.
    fn signing_region(self, region: &str) -> &str {
        match self {
            Service::Iam => "us-east-1",
            _ => region,
        }
    }
}

/// Keys given to this process outright (by the install wizard's page), held
/// in memory only: [`Credentials::from_chain`] takes them before the rest.
static GIVEN: std::sync::Mutex<Option<Credentials>> = std::sync::Mutex::new(None);

/// Makes `credentials` the ones [`Credentials::from_chain`] gives in this process.
pub fn give(credentials: Credentials) {
    *GIVEN.lock().unwrap_or_else(|p| p.into_inner()) = Some(credentials);
}

/// An access key, and the session token that goes with a temporary one.
#[derive(Clone)]
pub struct Credentials {
    /// The access key's id (not a secret: AWS shows it in its consoles).
    pub access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
    /// Where they came from, to say so (never the values).
    pub source: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[redacted]")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "[redacted]"),
            )
            .field("source", &self.source)
            .finish()
    }
}

impl Credentials {
    /// Credentials given outright.
    pub fn new(
        access_key_id: &str,
        secret_access_key: &str,
        session_token: Option<&str>,
        source: &str,
    ) -> Credentials {
        Credentials {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: session_token.map(Into::into),
            source: source.into(),
        }
    }

    /// Keys [`give`]n to this process, else the SDKs' chain:
    /// `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`
    /// (`AWS_SESSION_TOKEN`), then the shared credentials file
    /// (`AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`; profile
    /// `AWS_PROFILE`, else `default`), then the instance profile's role from
    /// the metadata service at `imds` (None: disabled).
    pub fn from_chain(
        var: &dyn Fn(&str) -> Option<String>,
        imds: Option<&str>,
    ) -> Result<Credentials, String> {
        if let Some(given) = GIVEN.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(given);
        }
        if let (Some(id), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            return Ok(Credentials::new(
                &id,
                &secret,
                var("AWS_SESSION_TOKEN").as_deref(),
                "the environment (AWS_ACCESS_KEY_ID)",
            ));
        }
        let file = var("AWS_SHARED_CREDENTIALS_FILE")
            .map(std::path::PathBuf::from)
            .or_else(|| var("HOME").map(|h| std::path::Path::new(&h).join(".aws/credentials")));
        let profile = var("AWS_PROFILE").unwrap_or_else(|| "default".into());
        if let Some(file) = file.filter(|f| f.exists()) {
            if let Some(c) = Credentials::read_file(&file, &profile)? {
                return Ok(c);
            }
        }
        match imds {
            Some(endpoint) => instance_profile(endpoint).map_err(|e| {
                format!("no AWS credentials: none in the environment or a credentials file, and the instance profile's could not be had: {e}")
            }),
            None => Err("no AWS credentials: none in the environment or a credentials file, and the metadata service is disabled".into()),
        }
    }

    /// The keys of `profile` in the credentials file `file` (the AWS
    /// shared credentials format, read up to 1 MiB); None when the file has
    /// no such profile.
    pub fn read_file(file: &std::path::Path, profile: &str) -> Result<Option<Credentials>, String> {
        let mut text = String::new();
        std::fs::File::open(file)
            .and_then(|f| f.take(1 << 20).read_to_string(&mut text))
            .map_err(|e| format!("{}: {e}", file.display()))?;
        Ok(from_shared_file(&text, profile).map(|c| Credentials {
            source: format!("{} (profile {profile})", file.display()),
            ..c
        }))
    }

    fn identity(&self) -> aws_credential_types::Credentials {
        aws_credential_types::Credentials::new(
            &self.access_key_id,
            &self.secret_access_key,
            self.session_token.clone(),
            None,
            "tele",
        )
    }
}

/// A profile's keys in a shared credentials file (INI).
fn from_shared_file(text: &str, profile: &str) -> Option<Credentials> {
    let mut current = None::<String>;
    let (mut id, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = Some(name.trim().to_string());
            continue;
        }
        if current.as_deref() != Some(profile) {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().to_string();
            match k.trim() {
                "aws_access_key_id" => id = Some(v),
                "aws_secret_access_key" => secret = Some(v),
                "aws_session_token" => token = Some(v),
                _ => {}
            }
        }
    }
    Some(Credentials::new(&id?, &secret?, token.as_deref(), ""))
}

/// The instance profile role's temporary credentials, through IMDSv2 at
/// `endpoint`: what the Kubernetes components on the node use.
pub fn instance_profile(endpoint: &str) -> Result<Credentials, String> {
    let t = Timeouts {
        connect: Duration::from_secs(2),
        total: Duration::from_secs(10),
    };
    let imds = super::aws::Imds::open(endpoint, t)?;
    let get = |path: &str| imds.text(path);
    let roles = get("iam/security-credentials/")?;
    let role = roles
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .ok_or("the instance has no instance profile (no IAM role)")?;
    if !role
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
    {
        return Err("the metadata service named a role that is not one".into());
    }
    let doc: serde_json::Value =
        serde_json::from_str(&get(&format!("iam/security-credentials/{role}"))?)
            .map_err(|e| format!("the role's credentials are not JSON: {e}"))?;
    let field = |k: &str| doc[k].as_str().map(str::to_string);
    match (field("AccessKeyId"), field("SecretAccessKey")) {
        (Some(id), Some(secret)) => Ok(Credentials::new(
            &id,
            &secret,
            field("Token").as_deref(),
            &format!("the instance profile's role {role}"),
        )),
        _ => Err(format!("the role {role}'s credentials lack a key")),
    }
}

/// Why a call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The API answered with an error: its code and message.
    Api {
        /// The HTTP status.
        status: u16,
        /// AWS's error code (`UnauthorizedOperation`, `DryRunOperation`, ...).
        code: String,
        /// AWS's message, cut to 300 characters.
        message: String,
    },
    /// No answer: the connection, the time limit, or an unreadable answer.
    Transport(String),
}

impl CallError {
    /// AWS's error code, if the API answered.
    pub fn code(&self) -> Option<&str> {
        match self {
            CallError::Api { code, .. } => Some(code),
            CallError::Transport(_) => None,
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Api {
                status,
                code,
                message,
            } => write!(f, "{code}: {message} (HTTP {status})"),
            CallError::Transport(e) => f.write_str(e),
        }
    }
}

/// A client of the AWS APIs of one region.
pub struct Client {
    http: reqwest::blocking::Client,
    region: String,
    credentials: Credentials,
    endpoints: Vec<(Service, String)>,
}

impl Client {
    /// A client for `region` with `credentials`; `overrides` names other
    /// endpoints by the service's signing name (as
    /// [`super::aws::endpoint_overrides`] reads them from the environment).
    pub fn new(
        region: &str,
        credentials: Credentials,
        overrides: &BTreeMap<String, String>,
    ) -> Result<Client, String> {
        let http = reqwest::blocking::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| chain(&e))?;
        let endpoints = [Service::Ec2, Service::Elb, Service::Iam, Service::Sts]
            .into_iter()
            .map(|s| (s, s.endpoint(region, overrides)))
            .collect();
        Ok(Client {
            http,
            region: region.into(),
            credentials,
            endpoints,
        })
    }

    /// Where the credentials came from.
    pub fn credentials_source(&self) -> &str {
        &self.credentials.source
    }

    /// The endpoint of `service`.
    pub fn endpoint(&self, service: Service) -> &str {
        self.endpoints
            .iter()
            .find(|(s, _)| *s == service)
            .map_or("", |(_, e)| e.as_str())
    }

    /// Calls `action` of `service` with `params`; the answer's XML text.
    pub fn call(
        &self,
        service: Service,
        action: &str,
        params: &[(&str, &str)],
    ) -> Result<String, CallError> {
        let url = self.endpoint(service).trim_end_matches('/').to_string() + "/";
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("Action", action)
            .append_pair("Version", service.version())
            .extend_pairs(params.iter().copied())
            .finish();
        let content_type = "application/x-www-form-urlencoded; charset=utf-8";
        let identity = self.credentials.identity().into();
        let signing = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(service.signing_region(&self.region))
            .name(service.signing_name())
            .time(SystemTime::now())
            .settings(aws_sigv4::http_request::SigningSettings::default())
            .build()
            .map_err(|e| CallError::Transport(format!("signing the request: {e}")))?
            .into();
        let signable = aws_sigv4::http_request::SignableRequest::new(
            "POST",
            &url,
            [("content-type", content_type)].into_iter(),
            aws_sigv4::http_request::SignableBody::Bytes(body.as_bytes()),
        )
        .map_err(|e| CallError::Transport(format!("signing the request: {e}")))?;
        let (instructions, _) = aws_sigv4::http_request::sign(signable, &signing)
            .map_err(|e| CallError::Transport(format!("signing the request: {e}")))?
            .into_parts();
        let mut request = self
            .http
            .post(&url)
            .header("content-type", content_type)
            .body(body);
        for (name, value) in instructions.headers() {
            request = request.header(name, value);
        }
        let what = format!("{} {action}", service.signing_name());
        let resp = request
            .send()
            .map_err(|e| CallError::Transport(format!("{what} at {url}: {}", chain(&e))))?;
        let status = resp.status();
        let mut text = String::new();
        resp.take(MAX_ANSWER + 1)
            .read_to_string(&mut text)
            .map_err(|e| CallError::Transport(format!("{what}: reading the answer: {e}")))?;
        if text.len() as u64 > MAX_ANSWER {
            return Err(CallError::Transport(format!(
                "{what}: an answer over {MAX_ANSWER} bytes"
            )));
        }
        if status.is_success() {
            return Ok(text);
        }
        // An answer that is not AWS's error document (a proxy's page, a
        // server's crash) is known by its status alone.
        let (code, message) = error_of(&text).unwrap_or_else(|| {
            (
                format!("HTTP{}", status.as_u16()),
                "an answer that is not an AWS error".into(),
            )
        });
        Err(CallError::Api {
            status: status.as_u16(),
            code,
            message,
        })
    }
}

/// The code and message of an AWS error answer: EC2's
/// `<Response><Errors><Error>` and the other query APIs' `<ErrorResponse><Error>`
/// alike.
fn error_of(xml: &str) -> Option<(String, String)> {
    let doc = roxmltree::Document::parse(xml).ok()?;
    let code = first_text(&doc, "Code")?;
    let message: String = first_text(&doc, "Message")
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(300)
        .collect();
    Some((code, message))
}

fn first_text(doc: &roxmltree::Document<'_>, tag: &str) -> Option<String> {
    doc.descendants()
        .find(|n| n.tag_name().name() == tag)
        .and_then(|n| n.text())
        .map(|t| t.trim().to_string())
}

/// Every text of the elements named `tag` in an answer, in document order.
pub fn texts(xml: &str, tag: &str) -> Vec<String> {
    roxmltree::Document::parse(xml)
        .map(|doc| {
            doc.descendants()
                .filter(|n| n.tag_name().name() == tag)
                .filter_map(|n| n.text().map(|t| t.trim().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_of_ec2_and_of_the_other_query_apis_are_read_alike() {
        let ec2 = "<?xml version=\"1.0\"?><Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized</Message></Error></Errors><RequestID>x</RequestID></Response>";
        assert_eq!(
            error_of(ec2),
            Some((
                "UnauthorizedOperation".into(),
                "You are not authorized".into()
            ))
        );
        let elb = "<ErrorResponse xmlns=\"http://elasticloadbalancing.amazonaws.com/doc/2012-06-01/\"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>denied</Message></Error></ErrorResponse>";
        assert_eq!(
            error_of(elb),
            Some(("AccessDenied".into(), "denied".into()))
        );
        assert_eq!(error_of("not xml"), None);
    }

    #[test]
    fn credentials_come_from_the_environment_then_the_shared_file_and_never_show() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("credentials");
        std::fs::write(
            &file,
            "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = s3cret-default\n\n[ops]\naws_access_key_id=AKIDOPS\naws_secret_access_key=s3cret-ops\naws_session_token=tok\n",
        )
        .unwrap();
        let file_s = file.to_str().unwrap().to_string();
        let env = |pairs: &'static [(&'static str, &'static str)], file: String| {
            move |k: &str| {
                if k == "AWS_SHARED_CREDENTIALS_FILE" {
                    return Some(file.clone());
                }
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let c = Credentials::from_chain(
            &env(
                &[
                    ("AWS_ACCESS_KEY_ID", "AKIDENV"),
                    ("AWS_SECRET_ACCESS_KEY", "s3cret-env"),
                ],
                file_s.clone(),
            ),
            None,
        )
        .unwrap();
        assert_eq!(c.access_key_id, "AKIDENV");
        let c =
            Credentials::from_chain(&env(&[("AWS_PROFILE", "ops")], file_s.clone()), None).unwrap();
        assert_eq!(c.access_key_id, "AKIDOPS");
        assert_eq!(c.session_token.as_deref(), Some("tok"));
        assert!(c.source.contains("(profile ops)"), "{}", c.source);
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("tok\""),
            "{shown}"
        );
        let c = Credentials::from_chain(&env(&[], file_s.clone()), None).unwrap();
        assert_eq!(c.access_key_id, "AKIDDEFAULT");
        let e =
            Credentials::from_chain(&env(&[("AWS_PROFILE", "none")], file_s), None).unwrap_err();
        assert!(e.contains("no AWS credentials"), "{e}");
    }
}
