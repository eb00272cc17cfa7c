//! containerd with its CRI plugin: its configuration, the registry mirror
//! entries that send every image host of the bundle to the node's registry,
//! and the CNI bridge network.

use super::{Component, NodeContext, Probe};
use crate::durable::write_if_changed;
use crate::node::NodeConfig;
use crate::service::ServiceSpec;
use crate::state_dir::StateDir;

pub struct Containerd;

impl Component for Containerd {
    fn name(&self) -> &'static str {
        "containerd"
    }
    fn write_files(&self, n: &NodeContext) -> anyhow::Result<()> {
        let sandbox = crate::node::sandbox_image(n.state.root())?;
        write_if_changed(
            &n.state.containerd_config(),
            containerd_config(&n.state, &n.bins, &sandbox).as_bytes(),
            0o644,
        )?;
        let ca = n.pki.ca_cert();
        let registry = format!("https://{}", super::registry::registry_addr(n));
        let client = (n.pki.cert("registry-client"), n.pki.key("registry-client"));
        for host in crate::node::image_hosts(n.state.root())? {
            write_if_changed(
                &n.state.certs_d().join(&host).join("hosts.toml"),
                hosts_toml(&host, &registry, &ca, Some((&client.0, &client.1))).as_bytes(),
                0o644,
            )?;
        }
        write_if_changed(
            &n.state.cni_conf().join("10-tele.conflist"),
            cni_conflist(&n.cfg, &n.state).as_bytes(),
            0o644,
        )?;
        Ok(())
    }
    fn service(&self, n: &NodeContext) -> anyhow::Result<ServiceSpec> {
        Ok(ServiceSpec::new("containerd", n.bin("containerd")?)
            .arg("--config")
            .arg(n.state.containerd_config().display().to_string())
            .env("PATH", n.path_env()?)
            // The shims keep the pods running across containerd's restarts.
            .keep_children())
    }
    fn credentials(&self, n: &NodeContext) -> Vec<std::path::PathBuf> {
        vec![n.pki.ca_cert(), n.pki.cert("registry-client")]
    }
    fn probe(&self, n: &NodeContext) -> Probe {
        Probe::Unix(n.state.containerd_sock())
    }
}

/// containerd's configuration (version 2, CRI enabled).
pub fn containerd_config(
    state: &StateDir,
    bins: &std::collections::BTreeMap<String, std::path::PathBuf>,
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
state = "{cstate}"

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
        root = state.containerd_dir().join("root").display(),
        cstate = state.containerd_dir().join("state").display(),
        sock = state.containerd_sock().display(),
        cni_conf = state.cni_conf().display(),
        certs_d = state.certs_d().display(),
    )
}

/// `hosts.toml` sending pulls for `host` to the node's registry, over TLS
/// (`registry`, its URL) checked against the cluster CA, with `client`'s
/// certificate and key when given, and nowhere else: `server`, which
/// containerd tries when the mirrors fail, is the node's registry too, never
/// `host` itself, so a node with internet access cannot run an image that
/// is not the bundle's.
pub fn hosts_toml(
    host: &str,
    registry: &str,
    ca: &std::path::Path,
    client: Option<(&std::path::Path, &std::path::Path)>,
) -> String {
    let client = client
        .map(|(cert, key)| {
            format!(
                "client = [[\"{}\", \"{}\"]]\n",
                cert.display(),
                key.display()
            )
        })
        .unwrap_or_default();
    format!(
        "# Written by tele: images of {host} come from the bundle, through the node's registry only.\nserver = \"{registry}\"\nca = \"{ca}\"\n{client}capabilities = [\"pull\", \"resolve\"]\n\n[host.\"{registry}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = \"{ca}\"\n  {client}",
        ca = ca.display(),
    )
}

/// The CNI bridge network for this node.
pub fn cni_conflist(cfg: &NodeConfig, state: &StateDir) -> String {
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
                    "dataDir": state.cni_ipam().display().to_string(),
                }
            },
            {"type": "portmap", "capabilities": {"portMappings": true}},
            {"type": "loopback"}
        ]
    }))
    .expect("json")
}
