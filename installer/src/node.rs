//! The node's settings and every path the installer writes, all under the
//! state directory so that several nodes can share one machine (each in its
//! own network namespace) in tests.

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
}

impl Default for Ports {
    fn default() -> Self {
        Ports {
            registry: 5043,
            api: 6443,
            etcd_client: 2379,
            etcd_peer: 2380,
            kubelet: 10250,
        }
    }
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
}

/// The paths under the state directory.
#[derive(Clone, Debug)]
pub struct Layout {
    /// The state directory.
    pub state: PathBuf,
}

impl Layout {
    /// Paths under `state`.
    pub fn new(state: &Path) -> Layout {
        Layout {
            state: state.to_path_buf(),
        }
    }
    /// Certificates, keys and kubeconfigs.
    pub fn pki(&self) -> PathBuf {
        self.state.join("pki")
    }
    /// The admin kubeconfig.
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.pki().join("kubeconfig").join("admin.conf")
    }
    /// The settings of this install.
    pub fn config_file(&self) -> PathBuf {
        self.state.join("install.json")
    }
    /// etcd's data.
    pub fn etcd_data(&self) -> PathBuf {
        self.state.join("etcd")
    }
    /// containerd's directory (config, root, state, socket, registry hosts).
    pub fn containerd(&self) -> PathBuf {
        self.state.join("containerd")
    }
    /// containerd's socket.
    pub fn containerd_sock(&self) -> PathBuf {
        self.containerd().join("containerd.sock")
    }
    /// containerd's registry host configuration (`config_path`).
    pub fn certs_d(&self) -> PathBuf {
        self.containerd().join("certs.d")
    }
    /// CNI network configuration.
    pub fn cni_conf(&self) -> PathBuf {
        self.state.join("cni").join("net.d")
    }
    /// The kubelet's root directory.
    pub fn kubelet_root(&self) -> PathBuf {
        self.state.join("kubelet")
    }
    /// Configuration files of the Kubernetes components.
    pub fn kube_config_dir(&self) -> PathBuf {
        self.state.join("kubernetes")
    }
    /// The copy of tele that runs the agent and the registry.
    pub fn tele(&self) -> PathBuf {
        self.state.join("bin").join("tele")
    }
    /// Service logs.
    pub fn logs(&self) -> PathBuf {
        self.state.join("logs")
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

/// containerd's configuration (version 2, CRI enabled).
pub fn containerd_config(
    layout: &Layout,
    bins: &BTreeMap<String, PathBuf>,
    sandbox: &str,
) -> String {
    let runc = bins
        .get("runc")
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "runc".into());
    let cni_bin = bins
        .get("cni-bridge")
        .and_then(|p| p.parent())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "/opt/cni/bin".into());
    format!(
        r#"# Written by tele; every path is under the state directory.
version = 2
root = "{root}"
state = "{state}"

[grpc]
  address = "{sock}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox}"
  # Pods may not lower their OOM score below containerd's own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{runc}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni_conf}"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{certs_d}"
"#,
        root = layout.containerd().join("root").display(),
        state = layout.containerd().join("state").display(),
        sock = layout.containerd_sock().display(),
        cni_conf = layout.cni_conf().display(),
        certs_d = layout.certs_d().display(),
    )
}

/// `hosts.toml` sending pulls for `host` to the node's registry, over TLS
/// checked against the cluster CA. Nothing falls through to the internet:
/// the upstream `server` is only reached if the mirror lacks an image.
pub fn hosts_toml(host: &str, cfg: &NodeConfig, ca: &Path) -> String {
    let upstream = if host == "docker.io" {
        "https://registry-1.docker.io".to_string()
    } else {
        format!("https://{host}")
    };
    format!(
        "# Written by tele: images of {host} come from the bundle.\nserver = \"{upstream}\"\n\n[host.\"https://{ip}:{port}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = \"{ca}\"\n",
        ip = fmt_host(cfg.node_ip),
        port = cfg.ports.registry,
        ca = ca.display(),
    )
}

/// An IP address as it appears in a URL host.
pub fn fmt_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// The CNI bridge network for this node.
pub fn cni_conflist(cfg: &NodeConfig) -> String {
    serde_json::to_string_pretty(&serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "tele",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "tele0",
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": cfg.node_pod_subnet}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": cfg.state_dir.join("cni").join("ipam").display().to_string(),
                }
            },
            {"type": "portmap", "capabilities": {"portMappings": true}},
            {"type": "loopback"}
        ]
    }))
    .expect("json")
}

/// The kubelet's configuration file.
pub fn kubelet_config(cfg: &NodeConfig, layout: &Layout) -> String {
    let pki = layout.pki();
    let cgroup_root = cfg
        .cgroup_root
        .as_deref()
        .map(|r| format!("cgroupRoot: {r}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\naddress: {ip}\nport: {port}\nreadOnlyPort: 0\nhealthzBindAddress: 127.0.0.1\nhealthzPort: 10248\nauthentication:\n  anonymous:\n    enabled: false\n  webhook:\n    enabled: true\n  x509:\n    clientCAFile: {ca}\nauthorization:\n  mode: Webhook\ntlsCertFile: {cert}\ntlsPrivateKeyFile: {key}\ncgroupDriver: cgroupfs\n{cgroup_root}failSwapOn: false\nresolvConf: /etc/resolv.conf\nclusterDomain: cluster.local\nserializeImagePulls: false\nevictionHard:\n  memory.available: 100Mi\n  nodefs.available: 2%\n  imagefs.available: 2%\n",
        ip = cfg.node_ip,
        port = cfg.ports.kubelet,
        ca = pki.join("ca.crt").display(),
        cert = pki.join("kubelet-server.crt").display(),
        key = pki.join("kubelet-server.key").display(),
    )
}
