//! The node's cluster DNS (`tele cluster-dns`, see [`crate::cluster_dns`]):
//! the nameserver the kubelet gives the node's pods.

use super::{Component, NodeContext, Probe};
use crate::service::ServiceSpec;

pub struct ClusterDns;

impl Component for ClusterDns {
    fn name(&self) -> &'static str {
        "cluster-dns"
    }
    fn service(&self, n: &NodeContext) -> anyhow::Result<ServiceSpec> {
        Ok(ServiceSpec::new("cluster-dns", n.state.tele())
            .arg("cluster-dns")
            .arg("--state-dir")
            .arg(n.state.root().display().to_string())
            .flag("listen", format!("{}:{}", n.host(), n.cfg.ports.dns)))
    }
    fn credentials(&self, n: &NodeContext) -> Vec<std::path::PathBuf> {
        vec![n.pki.kubeconfig("kube-proxy")]
    }
    fn probe(&self, n: &NodeContext) -> Probe {
        Probe::Tcp((n.cfg.node_ip, n.cfg.ports.dns).into())
    }
}
