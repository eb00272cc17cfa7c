//! The joining side: fetch the cluster CA, check it against the token's
//! pin, then talk to the join service over TLS checked against that CA.

use std::time::Duration;

use super::{
    BundleCredentials, JoinRequest, JoinResponse, JoinedRequest, LeaveRequest, Refusal, MAX_BODY,
};

const TIMEOUT: Duration = Duration::from_secs(20);

/// Why joining did not work.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// Nothing answered, or not as a join service.
    #[error("cannot reach the join service at {addr}: {reason}")]
    Unreachable {
        /// `ADDR:PORT`.
        addr: String,
        /// What happened.
        reason: String,
    },
    /// The CA there is not the one the token names.
    #[error("the cluster CA at {addr} does not match the token's pin (it is {found}, the token names {pinned}): this is not the cluster the token was made for")]
    PinMismatch {
        /// `ADDR:PORT`.
        addr: String,
        /// The CA's pin.
        found: String,
        /// The token's pin.
        pinned: String,
    },
    /// The service refused.
    #[error("the cluster refused to admit this node: {0}")]
    Refused(Refusal),
}

impl JoinError {
    /// What to do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            JoinError::Unreachable { .. } => Some(
                "check the address (a master's), that its join port is open from here, and that the master is installed".into(),
            ),
            JoinError::PinMismatch { .. } => Some(
                "use the join command printed on a master of your cluster; do not join a machine you do not trust".into(),
            ),
            JoinError::Refused(r) => r.hint.clone(),
        }
    }
}

fn unreachable(addr: &str, e: impl std::fmt::Display) -> JoinError {
    JoinError::Unreachable {
        addr: addr.into(),
        reason: e.to_string(),
    }
}

/// The cluster CA at `addr`, checked against `pin` (`sha256:<hex>`).
pub fn fetch_ca(addr: &str, pin: &str) -> Result<String, JoinError> {
    // Nothing is trusted yet: the pin is what decides.
    let client = reqwest::blocking::Client::builder()
        .timeout(TIMEOUT)
        .tls_danger_accept_invalid_certs(true)
        .build()
        .map_err(|e| unreachable(addr, e))?;
    let resp = client
        .get(format!("https://{addr}/v1/ca"))
        .send()
        .map_err(|e| unreachable(addr, e))?;
    if !resp.status().is_success() {
        return Err(unreachable(addr, format!("HTTP {}", resp.status())));
    }
    let pem = read_bounded(resp).map_err(|e| unreachable(addr, e))?;
    let found = crate::pki::pin_of_pem(&pem)
        .ok_or_else(|| unreachable(addr, "the answer is not a certificate"))?;
    if found != pin {
        return Err(JoinError::PinMismatch {
            addr: addr.into(),
            found,
            pinned: pin.into(),
        });
    }
    Ok(pem)
}

fn read_bounded(resp: reqwest::blocking::Response) -> std::io::Result<String> {
    use std::io::Read;
    let mut body = String::new();
    resp.take(MAX_BODY as u64 + 1).read_to_string(&mut body)?;
    if body.len() > MAX_BODY {
        return Err(std::io::Error::other("the answer is too large"));
    }
    Ok(body)
}

/// A client that trusts the cluster CA and nothing else, presenting
/// `identity` (certificate and key, PEM) when given.
fn trusting_as(
    addr: &str,
    ca_pem: &str,
    timeout: Duration,
    identity: Option<&str>,
) -> Result<reqwest::blocking::Client, JoinError> {
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).map_err(|e| unreachable(addr, e))?;
    let mut builder = reqwest::blocking::Client::builder()
        .timeout(timeout)
        .tls_certs_only([ca]);
    if let Some(pem) = identity {
        builder = builder.identity(
            reqwest::Identity::from_pem(pem.as_bytes()).map_err(|e| unreachable(addr, e))?,
        );
    }
    builder.build().map_err(|e| unreachable(addr, e))
}

fn post<T: serde::Serialize, R: serde::de::DeserializeOwned>(
    addr: &str,
    ca_pem: &str,
    path: &str,
    body: &T,
) -> Result<R, JoinError> {
    post_within(addr, ca_pem, path, body, TIMEOUT)
}

fn post_within<T: serde::Serialize, R: serde::de::DeserializeOwned>(
    addr: &str,
    ca_pem: &str,
    path: &str,
    body: &T,
    timeout: Duration,
) -> Result<R, JoinError> {
    post_as(addr, ca_pem, path, body, timeout, None)
}

fn post_as<T: serde::Serialize, R: serde::de::DeserializeOwned>(
    addr: &str,
    ca_pem: &str,
    path: &str,
    body: &T,
    timeout: Duration,
    identity: Option<&str>,
) -> Result<R, JoinError> {
    let resp = trusting_as(addr, ca_pem, timeout, identity)?
        .post(format!("https://{addr}{path}"))
        .json(body)
        .send()
        .map_err(|e| unreachable(addr, e))?;
    let ok = resp.status().is_success();
    let text = read_bounded(resp).map_err(|e| unreachable(addr, e))?;
    if ok {
        serde_json::from_str(&text).map_err(|e| unreachable(addr, e))
    } else {
        let refusal = serde_json::from_str(&text).unwrap_or(Refusal {
            error: text.chars().take(300).collect(),
            hint: None,
            retry: false,
        });
        Err(JoinError::Refused(refusal))
    }
}

/// Asks the master for a worker's certificates anew, with the kubelet's
/// client certificate and key (`identity`, PEM).
pub fn renew(
    addr: &str,
    ca_pem: &str,
    identity: &str,
    req: &super::RenewRequest,
) -> Result<super::RenewResponse, JoinError> {
    post_as(addr, ca_pem, "/v1/renew", req, TIMEOUT, Some(identity))
}

/// Asks whether the node would be admitted; nothing changes on either side.
pub fn check(addr: &str, ca_pem: &str, req: &JoinRequest) -> Result<(), JoinError> {
    post::<_, serde_json::Value>(addr, ca_pem, "/v1/check", req).map(drop)
}

/// Asks whether the cluster can take the node yet ([`super::WaitRequest`]).
pub fn wait(
    addr: &str,
    ca_pem: &str,
    req: &super::WaitRequest,
) -> Result<super::WaitAnswer, JoinError> {
    post(addr, ca_pem, "/v1/wait", req)
}

/// Asks for a short-lived client certificate to fetch the bundle with
/// ([`super::fetch`]); refused as a join would be.
pub fn bundle_credentials(
    addr: &str,
    ca_pem: &str,
    req: &JoinRequest,
) -> Result<BundleCredentials, JoinError> {
    post(addr, ca_pem, "/v1/bundle-credentials", req)
}

/// Asks the join service at `addr` (whose CA is `ca_pem`) to admit a node.
pub fn join(addr: &str, ca_pem: &str, req: &JoinRequest) -> Result<JoinResponse, JoinError> {
    post(addr, ca_pem, "/v1/join", req)
}

/// Tells the join service the node is Ready (it then labels and taints it).
pub fn joined(addr: &str, ca_pem: &str, req: &JoinedRequest) -> Result<(), JoinError> {
    post::<_, serde_json::Value>(addr, ca_pem, "/v1/joined", req).map(drop)
}

/// How long one step of leaving may take: the master's drain waits up to
/// 120 s for the node's pods to stop (their grace periods), and answers then.
const LEAVE_STEP_TIMEOUT: Duration = Duration::from_secs(150);

/// One step of leaving the cluster (see [`LeaveRequest`]).
pub fn leave(addr: &str, ca_pem: &str, req: &LeaveRequest) -> Result<(), JoinError> {
    post_within::<_, serde_json::Value>(addr, ca_pem, "/v1/leave", req, LEAVE_STEP_TIMEOUT)
        .map(drop)
}
