//! kube-scheduler.

use super::{Component, NodeContext, Probe};
use crate::service::ServiceSpec;

pub struct Scheduler;

impl Component for Scheduler {
    fn name(&self) -> &'static str {
        "kube-scheduler"
    }
    fn service(&self, n: &NodeContext) -> anyhow::Result<ServiceSpec> {
        let kc = n.pki.kubeconfig("scheduler");
        Ok(ServiceSpec::new("kube-scheduler", n.bin("kube-scheduler")?)
            .path_flag("kubeconfig", &kc)
            .path_flag("authentication-kubeconfig", &kc)
            .path_flag("authorization-kubeconfig", &kc)
            .flag("bind-address", "127.0.0.1")
            .flag("port", 0)
            .flag("leader-elect", true)
            .flag("profiling", false))
    }
    fn credentials(&self, n: &NodeContext) -> Vec<std::path::PathBuf> {
        vec![n.pki.kubeconfig("scheduler")]
    }
    fn probe(&self, _n: &NodeContext) -> Probe {
        Probe::Tcp(([127, 0, 0, 1], 10259).into())
    }
}
