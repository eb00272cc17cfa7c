//! The node's settings ([`NodeConfig`], saved as `install.json`) and what
//! the installer reads of the runtime and images it copied from the bundle.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Ports the node's services listen on.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ports {
    /// The bundle's image registry (TLS).
    pub registry: u16,
    /// kube-apiserver.
    pub api: u16,
    /// etcd clients.
    pub etcd_client: u16,
    /// etcd peers.
    pub etcd_peer: u16,
    /// kubelet.
    pub kubelet: u16,
    /// The masters' join service (TLS), which admits new nodes.
    #[serde(default = "default_join_port")]
    pub join: u16,
    /// The node's local API endpoint (on 127.0.0.1), which passes
    /// connections to the masters' API servers.
    #[serde(default = "default_api_proxy_port")]
    pub api_proxy: u16,
    /// The cluster DNS (UDP and TCP, on the node's address).
    #[serde(default = "default_dns_port")]
    pub dns: u16,
}

fn default_dns_port() -> u16 {
    Ports::default().dns
}

fn default_join_port() -> u16 {
    Ports::default().join
}

fn default_api_proxy_port() -> u16 {
    Ports::default().api_proxy
}

impl Default for Ports {
    fn default() -> Self {
        Ports {
            registry: 5043,
            api: 6443,
            etcd_client: 2379,
            etcd_peer: 2380,
            kubelet: 10250,
            join: 6444,
            api_proxy: 6445,
            dns: 53,
        }
    }
}

/// What a node runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum NodeRole {
    /// etcd, the API server, the controller manager and the scheduler, and
    /// what every node runs.
    #[default]
    Master,
    /// The kubelet, kube-proxy, containerd, the image registry and the
    /// health checker only.
    Worker,
}

/// Everything decided before the first phase runs, saved as `install.json`
/// so that `--resume` continues with exactly the same settings.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeConfig {
    /// The extracted bundle (its images are served from here, not copied).
    pub bundle_dir: PathBuf,
    /// Where everything the installer writes lives.
    pub state_dir: PathBuf,
    /// The node's name in Kubernetes.
    pub node_name: String,
    /// The address other nodes and the API reach this node at.
    pub node_ip: IpAddr,
    /// The cluster's pod network.
    pub pod_cidr: String,
    /// This node's share of it (the CNI bridge's subnet).
    pub node_pod_subnet: String,
    /// The service network.
    pub service_cidr: String,
    /// The cgroup under which the kubelet puts pods (None: the root).
    pub cgroup_root: Option<String>,
    /// Listening ports.
    pub ports: Ports,
    /// Node profile chosen from the manifest.
    pub profile: Option<String>,
    /// Seconds to wait for the app to become ready.
    pub app_timeout_secs: u64,
    /// Master or worker.
    #[serde(default)]
    pub role: NodeRole,
    /// The manifest's flavor the cluster is meant to have (on its first node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flavor: Option<String>,
    /// For a node that joined: the master it joined through (`ADDR:PORT`
    /// of its join service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub joined: Option<Joined>,
    /// For a master that joined: how its etcd joins the masters' etcd cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd_join: Option<EtcdJoin>,
    /// Where the node keeps its volumes' data (None: `STATE_DIR/volumes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes_dir: Option<PathBuf>,
    /// The node answers the cluster's DNS for its pods (`tele cluster-dns`,
    /// on the node's address); off when the manifest's `systemOptions.dns.disabled`.
    #[serde(default = "on")]
    pub cluster_dns: bool,
    /// How the services' logs are rotated.
    #[serde(default)]
    pub logs: crate::log_rotation::LogLimits,
    /// How long the cluster's leaf certificates and kubeconfigs are valid,
    /// in seconds; they are renewed at two thirds of it.
    #[serde(default = "default_cert_validity")]
    pub cert_validity_secs: u64,
    /// How long a CA certificate this node makes new is valid, in
    /// seconds (one it remakes at two thirds of its life keeps the life of
    /// the one it replaces).
    #[serde(default = "default_ca_validity")]
    pub ca_validity_secs: u64,
    /// The cloud machine the node runs on (None: on premises).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<crate::cloud::Instance>,
    /// How its Kubernetes components use the cloud (on AWS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_settings: Option<crate::cloud::Settings>,
}

fn default_ca_validity() -> u64 {
    crate::pki::DEFAULT_CA_VALIDITY
        .whole_seconds()
        .unsigned_abs()
}

fn default_cert_validity() -> u64 {
    crate::pki::DEFAULT_LEAF_VALIDITY
        .whole_seconds()
        .unsigned_abs()
}

fn on() -> bool {
    true
}

/// How a joining master's etcd becomes a member of the cluster's.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EtcdJoin {
    /// `--initial-cluster`: every member's name and peer URL, this one's included.
    pub initial_cluster: String,
    /// The client URLs of the members it joins (to promote it from learner).
    pub endpoints: Vec<String>,
}

/// Where a joined node's cluster is.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Joined {
    /// The join service it joined through, `ADDR:PORT`.
    pub join_addr: String,
    /// Set once the master admitted it (its certificates are in place).
    pub admitted: bool,
}

impl NodeConfig {
    /// Where the node keeps its volumes' data: one directory per claim.
    pub fn volumes_dir(&self) -> PathBuf {
        self.volumes_dir
            .clone()
            .unwrap_or_else(|| crate::state_dir::StateDir::new(&self.state_dir).volumes_dir())
    }
}

impl NodeConfig {
    /// The API server URL this node's components use: the node's local
    /// endpoint, which fails over among the masters' API servers.
    pub fn api_server(&self) -> String {
        format!("https://127.0.0.1:{}", self.ports.api_proxy)
    }

    /// This master's own API server, `ADDR:PORT`.
    pub fn own_api_server(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::new(self.node_ip, self.ports.api)
    }

    /// How long leaf certificates are valid.
    pub fn cert_validity(&self) -> time::Duration {
        time::Duration::seconds(i64::try_from(self.cert_validity_secs).unwrap_or(i64::MAX))
    }

    /// How long a CA certificate made new is valid.
    pub fn ca_validity(&self) -> time::Duration {
        time::Duration::seconds(i64::try_from(self.ca_validity_secs).unwrap_or(i64::MAX))
    }

    /// What this master's certificates must name: the node's name and
    /// address and the machine's hostname.
    pub fn pki_config(&self) -> anyhow::Result<crate::pki::PkiConfig> {
        let hostname = nix::unistd::gethostname()?.to_string_lossy().into_owned();
        Ok(crate::pki::PkiConfig {
            node_name: self.node_name.clone(),
            node_ips: vec![self.node_ip],
            hostnames: vec![hostname],
            service_cidr: self.service_cidr.clone(),
            cluster_domain: "cluster.local".into(),
            api_server: self.api_server(),
            leaf_validity: self.cert_validity(),
            ca_validity: self.ca_validity(),
        })
    }

    /// What the certificates this master issues to the worker `name` at
    /// `ip` must name; the worker reaches the API through its own local
    /// endpoint, on the same port as this node's.
    pub fn worker_pki_config(&self, name: &str, ip: IpAddr) -> crate::pki::PkiConfig {
        crate::pki::PkiConfig {
            node_name: name.to_string(),
            node_ips: vec![ip],
            hostnames: vec![],
            service_cidr: self.service_cidr.clone(),
            cluster_domain: "cluster.local".into(),
            api_server: self.api_server(),
            leaf_validity: self.cert_validity(),
            ca_validity: self.ca_validity(),
        }
    }
}

impl NodeConfig {
    /// The settings saved in `state`.
    pub fn load(state: &crate::state_dir::StateDir) -> anyhow::Result<NodeConfig> {
        let path = state.config_file();
        let bytes = std::fs::read(&path).map_err(|e| {
            anyhow::anyhow!(
                "no install in {}: {e}\nhint: give the install's --state-dir",
                state.root().display()
            )
        })?;
        serde_json::from_slice(&bytes).map_err(|e| anyhow::anyhow!("`{}`: {e}", path.display()))
    }

    /// Saves the settings crash-safely (0600).
    pub fn save(&self, state: &crate::state_dir::StateDir) -> anyhow::Result<()> {
        let mut bytes = serde_json::to_vec_pretty(self)?;
        bytes.push(b'\n');
        crate::durable::write_durably(&state.config_file(), &bytes, 0o600)?;
        Ok(())
    }
}

/// Component name -> absolute path, from the bundle's `runtime/runtime.json`.
pub fn runtime_binaries(bundle_dir: &Path) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    Ok(tele_bundle::runtime_json::binaries(bundle_dir)?)
}

/// The sandbox (pause) image the runtime carries.
pub fn sandbox_image(bundle_dir: &Path) -> anyhow::Result<String> {
    Ok(tele_bundle::runtime_json::sandbox_image(bundle_dir)?)
}

/// The registry hosts the bundle has images from (each gets a mirror entry).
pub fn image_hosts(bundle_dir: &Path) -> anyhow::Result<Vec<String>> {
    let layout = tele_bundle::bundle_json::images_dir(bundle_dir);
    let index = tele_bundle::oci_layout::Index::read(&layout)?;
    let mut hosts: Vec<String> = index
        .manifests
        .iter()
        .flat_map(|m| m.names())
        .filter_map(|r| r.parse::<tele_manifests::ImageRef>().ok())
        .map(|r| r.registry().to_string())
        .collect();
    hosts.sort();
    hosts.dedup();
    Ok(hosts)
}

/// An IP address as it appears in a URL host.
pub fn fmt_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}
