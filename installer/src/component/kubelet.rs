//! The kubelet: its configuration file (webhook authorization, TLS with a
//! certificate from the cluster CA, the cgroup root for shared machines)
//! and its client certificate, which it rotates itself
//! ([`crate::kubelet_client`]).

use super::{Component, NodeContext, Probe};
use crate::durable::write_if_changed;
use crate::node::NodeConfig;
use crate::pki::Pki;
use crate::service::ServiceSpec;

pub struct Kubelet;

impl Component for Kubelet {
    fn name(&self) -> &'static str {
        "kubelet"
    }
    fn write_files(&self, n: &NodeContext) -> anyhow::Result<()> {
        write_if_changed(
            &n.state.kubelet_config(),
            kubelet_config(&n.cfg, &n.pki).as_bytes(),
            0o644,
        )?;
        std::fs::create_dir_all(n.state.kubelet_root())?;
        crate::kubelet_client::seed(&n.pki, crate::renew::now(), false)?;
        n.write_cloud_config()?;
        if let Some(root) = &n.cfg.cgroup_root {
            create_cgroup_root(root)?;
        }
        Ok(())
    }
    fn service(&self, n: &NodeContext) -> anyhow::Result<ServiceSpec> {
        Ok(n.with_cloud(ServiceSpec::new("kubelet", n.bin("kubelet")?))
            .path_flag("config", &n.state.kubelet_config())
            .path_flag("kubeconfig", &n.pki.kubeconfig("kubelet"))
            .path_flag("cert-dir", &n.pki.kubelet_cert_dir())
            .flag("container-runtime", "remote")
            .flag(
                "container-runtime-endpoint",
                format!("unix://{}", n.state.containerd_sock().display()),
            )
            .path_flag("root-dir", &n.state.kubelet_root())
            .flag("hostname-override", &n.cfg.node_name)
            .flag("node-ip", n.cfg.node_ip)
            .flag(
                "pod-infra-container-image",
                crate::node::sandbox_image(n.state.root())?,
            )
            .env("PATH", n.path_env()?))
    }
    fn credentials(&self, n: &NodeContext) -> Vec<std::path::PathBuf> {
        vec![
            n.pki.ca_cert(),
            n.pki.cert("kubelet-server"),
            n.pki.kubeconfig("kubelet"),
            crate::kubelet_client::seed_file(&n.pki),
        ]
    }
    fn probe(&self, _n: &NodeContext) -> Probe {
        Probe::HttpOk("http://127.0.0.1:10248/healthz".into())
    }
}

/// The kubelet's configuration file.
pub fn kubelet_config(cfg: &NodeConfig, pki: &Pki) -> String {
    let cgroup_root = cfg
        .cgroup_root
        .as_deref()
        .map(|r| format!("cgroupRoot: {r}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\naddress: {ip}\nport: {port}\nreadOnlyPort: 0\nhealthzBindAddress: 127.0.0.1\nhealthzPort: 10248\nauthentication:\n  anonymous:\n    enabled: false\n  webhook:\n    enabled: true\n  x509:\n    clientCAFile: {ca}\nauthorization:\n  mode: Webhook\ntlsCertFile: {cert}\ntlsPrivateKeyFile: {key}\nrotateCertificates: true\ncgroupDriver: cgroupfs\n{cgroup_root}failSwapOn: false\nresolvConf: /etc/resolv.conf\nclusterDomain: cluster.local\n{cluster_dns}serializeImagePulls: false\nevictionHard:\n  memory.available: 100Mi\n  nodefs.available: 2%\n  imagefs.available: 2%\n",
        ip = cfg.node_ip,
        port = cfg.ports.kubelet,
        // The node's own cluster DNS, on its address.
        cluster_dns = if cfg.cluster_dns {
            format!("clusterDNS:\n  - {}\n", cfg.node_ip)
        } else {
            String::new()
        },
        ca = pki.ca_cert().display(),
        cert = pki.cert("kubelet-server").display(),
        key = pki.key("kubelet-server").display(),
    )
}

/// Creates the cgroup `root` in every controller hierarchy (cgroup v1), as
/// the kubelet expects its `cgroupRoot` to exist.
fn create_cgroup_root(root: &str) -> anyhow::Result<()> {
    let base = std::path::Path::new("/sys/fs/cgroup");
    let rel = root.trim_start_matches('/');
    for entry in std::fs::read_dir(base)? {
        let dir = entry?.path();
        if dir.join("cgroup.procs").exists() || dir.join("tasks").exists() {
            std::fs::create_dir_all(dir.join(rel))?;
        }
    }
    if base.join("cgroup.controllers").exists() {
        std::fs::create_dir_all(base.join(rel))?;
    }
    Ok(())
}
