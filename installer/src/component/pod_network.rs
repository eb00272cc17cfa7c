//! The pod network's routes (`tele pod-network`): every other node's pod
//! subnet through that node.

use super::{Component, NodeContext, Probe};
use crate::service::ServiceSpec;

pub struct PodNetwork;

impl Component for PodNetwork {
    fn name(&self) -> &'static str {
        "pod-network"
    }
    fn service(&self, n: &NodeContext) -> anyhow::Result<ServiceSpec> {
        Ok(ServiceSpec::new("pod-network", n.state.tele())
            .arg("pod-network")
            .arg("--state-dir")
            .arg(n.state.root().display().to_string())
            .env("PATH", n.path_env()?))
    }
    fn probe(&self, _n: &NodeContext) -> Probe {
        Probe::Running
    }
}
