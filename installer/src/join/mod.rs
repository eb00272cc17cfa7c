//! Admitting nodes to a cluster. A master runs the join service
//! ([`server`], `tele join-server`): a node that shows a valid token
//! ([`crate::token`]) gets its credentials from the cluster CA and the
//! cluster's settings (API server, networks, its pod subnet). The joining
//! side ([`client`]) first fetches the CA and checks it against the pin the
//! token carries, and from then on trusts that CA only.

pub mod client;
pub mod fetch;
pub mod server;
pub mod wait;

/// What a joining node asks.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinRequest {
    /// The token's `ID.SECRET` (the pin stays with the client).
    pub token: String,
    /// The node's name.
    pub node_name: String,
    /// The node's address.
    pub node_ip: std::net::IpAddr,
    /// The node profile it joins as.
    pub role: Option<String>,
}

/// What the cluster tells a node it admits.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinResponse {
    /// The masters' API servers (`ADDR:PORT`), for the node's local API endpoint.
    pub api_servers: Vec<std::net::SocketAddr>,
    /// For a master: how its etcd joins the cluster's (it was added as a learner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd: Option<crate::node::EtcdJoin>,
    /// The cluster's pod network.
    pub pod_cidr: String,
    /// The node's share of it.
    pub node_pod_subnet: String,
    /// The service network.
    pub service_cidr: String,
    /// The node's credentials, paths relative to its PKI directory: a
    /// worker's own certificates and kubeconfigs; for a master, the cluster
    /// CA and the service-account keys, from which it makes its own.
    pub files: Vec<NodeFile>,
    /// What the node shows when it leaves (the master keeps only a hash).
    pub leave_secret: String,
    /// How long the cluster's leaf certificates are valid, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_validity_secs: Option<u64>,
}

/// A node leaving: first `drain` (its pods evicted), then, once its
/// services stopped, `forget` (its Node deleted, its pod subnet freed).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaveRequest {
    /// The node's name.
    pub node_name: String,
    /// The secret it was given when admitted.
    pub leave_secret: String,
    /// `drain` or `forget`.
    pub step: String,
}

/// One credential file for the joining node.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NodeFile {
    /// Path under the PKI directory, e.g. `kubeconfig/kubelet.conf`.
    pub path: String,
    /// Permission bits.
    pub mode: u32,
    /// Content (PEM or YAML).
    pub content: String,
}

/// A worker asking for its certificates anew (`/v1/renew`), with its
/// kubelet's client certificate.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RenewRequest {
    /// The node's name; it must be the one its certificate names.
    pub node_name: String,
}

/// A worker's renewed certificates and kubeconfigs.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RenewResponse {
    /// Paths relative to its PKI directory, as at its admission.
    pub files: Vec<NodeFile>,
}

/// A client certificate (and its key, PEM) that lets a node that would be
/// admitted fetch the part of the bundle it runs from the masters' join
/// service; valid for an hour.
#[derive(Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BundleCredentials {
    /// The certificate, signed by the cluster CA.
    pub cert: String,
    /// Its private key.
    pub key: String,
}

impl std::fmt::Debug for BundleCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BundleCredentials").finish_non_exhaustive()
    }
}

/// Told once the node is Ready, so that the master puts the profile's labels and taints on it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinedRequest {
    /// The token's `ID.SECRET`.
    pub token: String,
    /// The node's name.
    pub node_name: String,
    /// The node profile it joined as.
    pub role: Option<String>,
}

/// A node asking, before it joins, whether the cluster can take it yet.
/// A master's join service answers ready once its install is done; the
/// install wizard, before the first node is installed, answers not yet and
/// shows the node (with its preflight results) in its CAPACITY step, where
/// the admin may give it another profile.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaitRequest {
    /// The node, as it will ask to join.
    pub join: JoinRequest,
    /// Its preflight results for that profile (None: not run yet, as on a
    /// node that fetches the bundle from the cluster).
    #[serde(default)]
    pub checks: Option<Vec<crate::preflight::CheckResult>>,
}

/// The answer to a [`WaitRequest`].
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaitAnswer {
    /// The cluster can take the node now.
    pub ready: bool,
    /// What the node waits for.
    #[serde(default)]
    pub message: String,
    /// The profile the admin gave the node, when it is not the one asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// A token (`ID.SECRET`) for that profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The cluster's name on its cloud (the tag `kubernetes.io/cluster/NAME`
    /// of what its cloud provider uses and makes), when the master runs on
    /// one: the joining node's provider takes the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
}

/// A refusal, as the service sends it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, thiserror::Error)]
#[error("{error}")]
pub struct Refusal {
    /// What is wrong.
    pub error: String,
    /// What to do.
    pub hint: Option<String>,
    /// The same request may succeed a little later (another master is
    /// joining etcd); the joining side waits and asks again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retry: bool,
}

/// The most a request or response body may hold.
pub const MAX_BODY: usize = 1 << 20;
