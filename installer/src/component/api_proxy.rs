//! The node's local API endpoint (`tele api-proxy`, see
//! [`crate::api_proxy`]): every kubeconfig of the node points to it.

use super::{Component, NodeContext, Probe};
use crate::node::NodeRole;
use crate::service::ServiceSpec;

pub struct ApiProxy;

impl Component for ApiProxy {
    fn name(&self) -> &'static str {
        "api-proxy"
    }
    fn write_files(&self, n: &NodeContext) -> anyhow::Result<()> {
        // A master's own API server is always one of them.
        let mut servers = crate::api_proxy::read(&n.state);
        if n.cfg.role == NodeRole::Master && !servers.contains(&n.cfg.own_api_server()) {
            servers.push(n.cfg.own_api_server());
            servers.sort();
            crate::api_proxy::write(&n.state, &servers)?;
        }
        anyhow::ensure!(
            !servers.is_empty(),
            "no API servers are known (`{}`)",
            n.state.api_servers_file().display()
        );
        Ok(())
    }
    fn service(&self, n: &NodeContext) -> anyhow::Result<ServiceSpec> {
        let mut spec = ServiceSpec::new("api-proxy", n.state.tele())
            .arg("api-proxy")
            .arg("--state-dir")
            .arg(n.state.root().display().to_string())
            .flag("listen", format!("127.0.0.1:{}", n.cfg.ports.api_proxy));
        if n.cfg.role == NodeRole::Master {
            spec = spec.flag("prefer", n.cfg.own_api_server());
        }
        Ok(spec)
    }
    fn probe(&self, n: &NodeContext) -> Probe {
        Probe::Tcp(([127, 0, 0, 1], n.cfg.ports.api_proxy).into())
    }
}
