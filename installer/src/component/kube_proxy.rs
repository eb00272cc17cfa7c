//! kube-proxy in iptables mode.

use super::{Component, NodeContext, Probe};
use crate::service::ServiceSpec;

pub struct KubeProxy;

impl Component for KubeProxy {
    fn name(&self) -> &'static str {
        "kube-proxy"
    }
    fn service(&self, n: &NodeContext) -> anyhow::Result<ServiceSpec> {
        Ok(ServiceSpec::new("kube-proxy", n.bin("kube-proxy")?)
            .path_flag("kubeconfig", &n.pki.kubeconfig("kube-proxy"))
            .flag("proxy-mode", "iptables")
            .flag("hostname-override", &n.cfg.node_name)
            .flag("cluster-cidr", &n.cfg.pod_cidr)
            // The kernel's conntrack table is the machine's; leave its size alone.
            .flag("conntrack-max-per-core", 0)
            .flag("metrics-bind-address", "127.0.0.1:10249")
            .flag("healthz-bind-address", "127.0.0.1:10256"))
    }
    fn credentials(&self, n: &NodeContext) -> Vec<std::path::PathBuf> {
        vec![n.pki.kubeconfig("kube-proxy")]
    }
    fn probe(&self, _n: &NodeContext) -> Probe {
        Probe::Tcp(([127, 0, 0, 1], 10256).into())
    }
}
